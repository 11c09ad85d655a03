"""ONNX Runtime: importing it with a clear error, choosing execution providers, precision.

Pure functions of (device, request, what the installed onnxruntime offers), so the choice is
testable on a machine that has only the CPU provider.
"""
from __future__ import annotations

from types import ModuleType
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..engine import EngineConfigError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
#: Short names accepted in ``onnx_providers`` (full ONNX Runtime names are accepted too).
ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT, "openvino": OPENVINO}
_GPU = (CUDA, TENSORRT)
#: Where each non-CPU provider comes from (they are separate wheels of one module name).
_PACKAGE = {CUDA: "onnxruntime-gpu (with CUDA 12 and cuDNN 9 libraries)",
            TENSORRT: "onnxruntime-gpu (with CUDA, cuDNN and TensorRT libraries)",
            OPENVINO: "onnxruntime-openvino"}

ProviderSpec = Tuple[str, Dict[str, str]]


def import_onnxruntime() -> ModuleType:
    """``import onnxruntime``, or an ``EngineConfigError`` that says what to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineConfigError(
            "backend 'onnxruntime' needs the onnxruntime Python package, which is not installed "
            "in this environment: pip install onnxruntime (CPU), or onnxruntime-gpu for the CUDA "
            "and TensorRT execution providers (install one of the two, not both); or use "
            "backend 'torch'") from exc
    return onnxruntime


def parse_providers(request: Union[str, Sequence[str], None]) -> List[str]:
    """'cuda,cpu' or ['tensorrt', 'cuda'] -> full provider names, in order, without repeats.

    Empty means "derive from the device". A name ending in ``ExecutionProvider`` passes
    through as it is (any provider ONNX Runtime has); other unknown names are refused.
    """
    items = request.split(",") if isinstance(request, str) else list(request or [])
    out: List[str] = []
    for raw in items:
        name = str(raw).strip()
        if not name:
            continue
        full = ALIASES.get(name.lower(), name if name.endswith("ExecutionProvider") else None)
        if full is None:
            raise EngineConfigError(
                f"onnx_providers entry '{name}' is not one of {' | '.join(ALIASES)} "
                f"or an ONNX Runtime provider name (…ExecutionProvider)")
        if full not in out:
            out.append(full)
    return out


def select_providers(device: torch.device, request: Union[str, Sequence[str], None],
                     available: Sequence[str], trt_cache_dir: Optional[str] = None,
                     fp16: bool = False) -> List[ProviderSpec]:
    """Execution providers, with their options, for an InferenceSession.

    ``request`` empty: derived from ``device`` (cuda -> CUDA then CPU, cpu -> CPU). Every
    requested provider must be in ``available`` (``onnxruntime.get_available_providers()``),
    else ``EngineConfigError`` naming what is installed and what to install. The CPU provider
    is always appended last: ONNX Runtime places there whatever the others cannot run.
    CUDA and TensorRT get ``device_id`` from ``cuda:N``; TensorRT caches its engines in
    ``trt_cache_dir`` (building one takes minutes) and uses fp16 when ``fp16``.
    """
    names = parse_providers(request)
    derived = not names
    if derived:
        names = [CUDA, CPU] if device.type == "cuda" else [CPU]
    missing = [n for n in names if n not in available]
    if missing:
        why = f"derived from device '{device}'" if derived else "requested in onnx_providers"
        hints = sorted({_PACKAGE[n] for n in missing if n in _PACKAGE})
        raise EngineConfigError(
            f"ONNX Runtime execution provider(s) {', '.join(missing)} {why}, but the installed "
            f"onnxruntime offers only {', '.join(available) or 'none'}"
            + (f"; install {' / '.join(hints)} in place of onnxruntime" if hints else "")
            + (", or set device to cpu" if derived and device.type == "cuda" else ""))
    if CPU not in names:
        names.append(CPU)
    specs: List[ProviderSpec] = []
    for n in names:
        opts: Dict[str, str] = {}
        if n in _GPU and device.type == "cuda" and device.index is not None:
            opts["device_id"] = str(device.index)
        if n == TENSORRT:
            if trt_cache_dir:
                opts.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(trt_cache_dir))
            if fp16:
                opts["trt_fp16_enable"] = "True"
        specs.append((n, opts))
    return specs


def resolve_onnx_precision(name: str, providers: Sequence[str]) -> str:
    """The onnxruntime backend's precision: 'fp32' or 'fp16'.

    Graphs are always exported in fp32. fp16 means TensorRT's own fp16 mode (it chooses per
    layer), so it needs the TensorRT provider; 'auto' is fp16 there and fp32 elsewhere. The
    CUDA and CPU providers run the fp32 graph (use backend 'torch' for autocast fp16/bf16).
    """
    name = (name or "auto").strip().lower()
    trt = TENSORRT in providers
    if name == "auto":
        return "fp16" if trt else "fp32"
    if name == "fp32":
        return "fp32"
    if name == "fp16" and trt:
        return "fp16"
    raise EngineConfigError(
        f"precision '{name}' is not available with backend 'onnxruntime' and providers "
        f"{', '.join(providers)}: use fp32 or auto"
        + (", or fp16 with the TensorRT provider" if name == "fp16" else "")
        + " (backend 'torch' has fp16/bf16 autocast)")
