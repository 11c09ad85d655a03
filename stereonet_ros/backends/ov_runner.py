"""The engine's OpenVINO path (CPU): the cached ONNX graph compiled by OpenVINO, one compiled
model and infer request per network input size and outputs (``graph_runner.GraphRunner``).

Why a second graph backend: on the 2-core AVX512-BF16 CPU OpenVINO's bf16 CPU plugin ran the
default model at its operating point 1.4-1.6x faster than torch's bf16 autocast (see
docs/PERFORMANCE.md, "OpenVINO"). Only OpenVINO's CPU device is offered: Intel GPUs and NPUs
are unmeasured here, and NVIDIA GPUs are onnxruntime's (CUDA / TensorRT providers).
"""
from __future__ import annotations

from types import ModuleType
from typing import List, Optional

import numpy as np
import torch

from ..engine import EngineConfigError, resolve_precision
from ..model import StereoNet
from .graph_cache import GraphCache
from .graph_runner import GraphRunner
from .onnx_export import DEFAULT_OPSET


def import_openvino() -> ModuleType:
    """``import openvino``, or an ``EngineConfigError`` that says what to install."""
    try:
        import openvino
    except ImportError as exc:
        raise EngineConfigError(
            "backend 'openvino' needs the openvino Python package, which is not installed in "
            "this environment: pip install openvino (it is in requirements.txt); or use backend "
            "'torch'") from exc
    return openvino


class OpenVinoRunner(GraphRunner):
    """Runs a StereoNet through OpenVINO's CPU plugin on graphs from the cache.

    See ``GraphRunner`` for ``model``, ``candidates``, ``device``, ``num_threads``, ``cache``
    and ``weights``. ``precision``: the engine's request, resolved as for torch on the CPU
    (``engine.resolve_precision``: 'auto' is bf16 where the CPU computes bf16 natively, else
    fp32; fp16, and bf16 without native support, are refused).
    """

    name = "openvino"

    def __init__(self, model: StereoNet, candidates: int, device: torch.device, precision: str = "auto",
                 num_threads: int = 0, cache: Optional[GraphCache] = None,
                 weights: Optional[str] = None, opset: int = DEFAULT_OPSET) -> None:
        if device.type != "cpu":
            raise EngineConfigError(f"backend 'openvino' runs on the CPU (device cpu), not '{device}'; "
                                    "on an NVIDIA GPU use backend 'onnxruntime' (CUDA / TensorRT) or 'torch'")
        self.ov = import_openvino()
        super().__init__(model, candidates, device, num_threads, cache, weights, opset)
        self.precision = "bf16" if resolve_precision(precision, device) == torch.bfloat16 else "fp32"
        self.core = self.ov.Core()

    @property
    def provider_names(self) -> List[str]:
        return [f"CPU {self.precision}"]

    def _open(self, path: str) -> object:
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                  # one frame at a time, as fast as possible: one stream, latency mode
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if self.num_threads:
            config["INFERENCE_NUM_THREADS"] = self.num_threads
        compiled = self.core.compile_model(path, "CPU", config)
        return compiled.create_infer_request()

    def _infer(self, graph: object, left: np.ndarray, right: np.ndarray) -> List[np.ndarray]:
        req = graph
        req.infer({"left": left, "right": right})  # type: ignore[attr-defined]
        # The request's output buffers are reused by its next inference, and the node may
        # still be publishing this frame then: copies (a few hundred kB).
        return [np.array(t.data, copy=True) for t in req.output_tensors]  # type: ignore[attr-defined]
