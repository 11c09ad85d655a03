"""StereoNet -> ONNX graph: one export function for the engine's onnxruntime backend and for
``stereonet-train export --onnx``.

The graph takes *normalised*, padded ``left``/``right`` (B, C, H, W) float32 (H and W multiples
of 2^k; the normalisation is the checkpoint's) and returns, by name, any of ``disparity``
(B, 1, H, W) and ``confidence`` (B, 1, H, W) in [0, 1] at full resolution and
``right_disparity`` (B, 1, H, W) at full resolution; disparities are pixels of the
graph's input resolution (x_l - x_r).
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..model import StereoNet

#: Names of the graph outputs that can be asked for, in the order they are returned.
OUTPUTS = ("disparity", "confidence", "right_disparity")
DEFAULT_OPSET = 17
#: Bump when the graph exported for the same model and inputs changes (invalidates caches).
EXPORT_VERSION = 1


class OnnxExportError(RuntimeError):
    """The ONNX graph cannot be written: exporter dependency missing, bad size or outputs,
    or the exportable cost volume disagrees with the model's."""


class _GraphOutputs(nn.Module):
    """Wraps StereoNet so the traced forward takes two tensors and returns a tuple."""

    def __init__(self, net: StereoNet, outputs: Tuple[str, ...], candidates: Optional[int]) -> None:
        super().__init__()
        self.net = net
        self.outputs = outputs
        self.candidates = candidates

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.net(left, right, with_right="right_disparity" in self.outputs,
                       with_confidence="confidence" in self.outputs, candidates=self.candidates)
        pick = {"disparity": lambda: out["disparity"], "confidence": lambda: out["confidence"],
                "right_disparity": lambda: out["right_disparity"]}
        return tuple(pick[name]() for name in self.outputs)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401  (torch's TorchScript exporter serialises through it)
    except ImportError as exc:
        raise OnnxExportError(
            "ONNX export needs the 'onnx' Python package, which is not installed in this "
            "environment (pip install onnx; it is in requirements.txt)") from exc


def export_onnx(model: StereoNet, path: Union[str, Path], height: int = 480, width: int = 640,
                outputs: Sequence[str] = ("disparity",), candidates: Optional[int] = None,
                opset: int = DEFAULT_OPSET, dynamic: bool = False) -> Path:
    """Write ``model`` as an ONNX graph for (``height``, ``width``) pixel inputs; returns the path.

    ``outputs``: names from ``OUTPUTS``. ``candidates``: cost-volume disparity count (None =
    the model's). ``dynamic``: batch, height and width as dynamic axes (any multiple of 2^k;
    the training CLI's file) instead of fixed (the engine's cache: one graph per size, which
    lets ONNX Runtime and TensorRT plan for the exact shapes).

    ``model`` itself is not touched: a float32 eval-mode copy with the slice-based cost volume
    is traced, after checking on a random sample that it gives the same outputs as the model's
    own cost volume (raises ``OnnxExportError`` otherwise, and writes nothing).
    """
    _require_onnx()
    names = tuple(outputs)
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names or len(set(names)) != len(names):
        raise OnnxExportError(f"outputs must be distinct names from {OUTPUTS}, got {names}")
    div = model.divisor
    if height <= 0 or width <= 0 or height % div or width % div:
        raise OnnxExportError(f"ONNX input size {height}x{width} must be positive multiples of {div}")
    d = model.config.candidates if candidates is None else int(candidates)
    if dynamic and width // div < d:
        # slice_cost_volume zeroes candidates wider than the sample in Python: the traced
        # graph would keep those zeros for wider inputs too.
        raise OnnxExportError(f"a dynamic-size graph needs a sample at least {d * div} px wide "
                              f"({d} candidates at 1/{div}), got {width}")
    # A copy: export switches the cost volume and the mode, and the caller's model may be
    # training. The wrapper must be in eval mode too: torch.onnx.export restores the mode of
    # the module it is given afterwards, recursively, which would put a training-mode
    # wrapper's BatchNorms into training mode.
    net = copy.deepcopy(model).float().cpu().eval()
    wrapper = _GraphOutputs(net, names, candidates).eval()
    g = torch.Generator().manual_seed(0)
    c = model.config.in_channels
    sample = (torch.rand(1, c, height, width, generator=g), torch.rand(1, c, height, width, generator=g))
    with torch.no_grad():
        net.cost_volume = "unfold"
        reference = wrapper(*sample)
        net.cost_volume = "slices"
        exported = wrapper(*sample)
    for name, a, b in zip(names, reference, exported):
        if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
            raise OnnxExportError(f"slice cost volume differs from the model's in '{name}' "
                                  f"(max {float((a - b).abs().max()):.3g}); not exporting")
    path_p = Path(path)
    path_p.parent.mkdir(parents=True, exist_ok=True)
    kwargs: Dict[str, object] = dict(input_names=["left", "right"], output_names=list(names),
                                     opset_version=opset, do_constant_folding=True)
    if dynamic:
        axes = {0: "batch", 2: "height", 3: "width"}
        kwargs["dynamic_axes"] = {n: axes for n in ("left", "right") + names}
    with warnings.catch_warnings():
        # The TorchScript exporter warns per traced shape test and that it is deprecated
        # (torch >= 2.9); the sample check above is what says the graph is right.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            try:
                torch.onnx.export(wrapper, sample, str(path_p), dynamo=False, **kwargs)
            except TypeError:  # older torch without the dynamo switch
                torch.onnx.export(wrapper, sample, str(path_p), **kwargs)
    return path_p
