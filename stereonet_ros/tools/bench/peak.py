"""The peak section: how close the network's convolutions come to what this machine's
convolution library can do.

Peak: the best throughput of a large 3x3 convolution (64 -> 64 channels, 1/2 of 640x480, NHWC
on the CPU) at each precision, with the run's thread count - the regime oneDNN is built for.
The network's work: the multiply-adds of every Conv2d/Conv3d of one forward at each size,
counted by forward hooks (2 FLOP per multiply-add; the soft-argmin, upsampling and warps are
not convolutions and are left out, so the percentage is a lower bound of the busy time).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List

import torch
import torch.nn as nn

from .timing import summarize, synchronizer, time_calls

if TYPE_CHECKING:  # the session imports this module
    from .session import Bench

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def conv_flops(model: nn.Module, left: torch.Tensor, right: torch.Tensor, **forward_kw: Any) -> Dict[str, float]:
    """FLOP (2 per multiply-add) of the convolutions of one ``model(left, right)``, by the
    top-level child that holds them ('features', 'cost_filter', 'refiners', ...) and 'total'."""
    out: Dict[str, float] = {}
    hooks = []
    for top, child in model.named_children():
        for m in child.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                def hook(mod: nn.Module, _inp: Any, y: torch.Tensor, top: str = top) -> None:
                    k = 1
                    for s in mod.kernel_size:
                        k *= s
                    out[top] = out.get(top, 0.0) + 2.0 * y.numel() * (mod.in_channels // mod.groups) * k
                hooks.append(m.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(left, right, **forward_kw)
    finally:
        for h in hooks:
            h.remove()
    out["total"] = sum(out.values())
    return out


def conv_peak_gflops(device: torch.device, precision: str, iters: int = 5) -> float:
    """GFLOP/s of a 64->64 3x3 convolution on (1, 64, 240, 320) at ``precision`` (best run)."""
    dtype = _DTYPES[precision]
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(1, 64, 240, 320, device=device)
    fmt = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    conv, x = conv.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    flop = 2.0 * 64 * 64 * 9 * 240 * 320

    def once() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            conv(x)
    s = summarize(time_calls(once, iters=iters, warmup=2, sync=synchronizer(device)))
    return flop / (s["min_ms"] * 1e-3) / 1e9


def run_peak(bench: Bench) -> List[Dict[str, Any]]:
    """Per size and timed precision: the network's conv GFLOP per frame, its GFLOP/s at the
    model section's mean time, the measured peak and the ratio (%)."""
    rows: List[Dict[str, Any]] = []
    peaks: Dict[str, float] = {}
    engine = bench.engine(precision="fp32")
    for size in bench.cfg.sizes:
        left, right = bench.prepared(engine, bench.frames[size])
        flops = conv_flops(engine.model, left, right, candidates=engine.candidates)
        for precision, ms in sorted(bench.model_ms.get(size, {}).items()):
            if precision not in peaks:
                peaks[precision] = conv_peak_gflops(bench.device, precision)
            achieved = flops["total"] / (ms * 1e-3) / 1e9
            rows.append({"size": f"{size[0]}x{size[1]}", "precision": precision,
                         "model_gflop": flops["total"] / 1e9,
                         "gflop_by_part": {k: v / 1e9 for k, v in flops.items() if k != "total"},
                         "model_ms": ms, "achieved_gflops": achieved, "peak_gflops": peaks[precision],
                         "pct_of_peak": 100.0 * achieved / peaks[precision]})
            bench.log(f"  {size[0]}x{size[1]} {precision}: {flops['total'] / 1e9:.1f} GFLOP in {ms:.0f} ms = "
                      f"{achieved:.0f} GFLOP/s, {100.0 * achieved / peaks[precision]:.0f} % of the measured "
                      f"{peaks[precision]:.0f} GFLOP/s peak")
    return rows
