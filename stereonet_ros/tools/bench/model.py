"""The model, memory and knobs sections: the network forward per size and precision, the
host and GPU peak memory meanwhile, and the full ``engine.infer`` cost of each knob and
setting."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...engine import EngineConfigError, cpu_has_native_bf16
from .inputs import make_frames
from .timing import summarize, time_calls

if TYPE_CHECKING:  # the session imports this module
    from .session import Bench


def precisions_for(device: torch.device) -> List[str]:
    """Precisions worth timing on ``device``: fp32 on the CPU (and bf16 where the CPU has it
    natively); fp32, fp16 (and bf16) on CUDA. A backend may refuse one (onnxruntime's CPU graph
    is fp32 only): the model section skips what the engine refuses."""
    if device.type != "cuda":
        return ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    out = ["fp32", "fp16"]
    if torch.cuda.is_bf16_supported():
        out.append("bf16")
    return out


def _proc_status_mib(field: str) -> Optional[float]:
    """A kB field of /proc/self/status (VmRSS, VmHWM) in MiB; None where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return None


def reset_host_peak() -> bool:
    """Reset VmHWM to the current RSS ('5' > clear_refs, Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_model(bench: Bench) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(model rows, memory rows): forward-only timings (ms, Hz) per size and precision, and
    per size the host RSS before and peak and the GPU peak allocation (MiB). Records the
    mean times and the auto precision's output on ``bench`` for the later sections."""
    rows, mem = [], []
    auto = bench.engine().precision_name
    for (w, h) in bench.cfg.sizes:
        peak_ok = reset_host_peak()
        rss_before = _proc_status_mib("VmRSS")
        if bench.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(bench.device)
        for prec in precisions_for(bench.device):
            try:
                eng = bench.engine(prec)
            except EngineConfigError as exc:  # the backend's own precision rule
                bench.log(f"  model {w}x{h} {prec}: skipped ({exc})")
                continue
            left, right = bench.prepared(eng, bench.frames[(w, h)])
            out: Dict[str, Any] = {}

            def fwd() -> None:
                # The node's default flags: confidence on, no left-right check.
                out["o"] = eng.forward(left, right, False, True)

            ms = time_calls(fwd, bench.cfg.iters, bench.cfg.warmup, bench.sync)
            s = summarize(ms)
            rows.append({"size": f"{w}x{h}", "precision": prec, **s})
            bench.model_ms.setdefault((w, h), {})[prec] = s["mean_ms"]
            if prec == auto:
                bench.cached_out[(w, h)] = out["o"]
            bench.log(f"  model {w}x{h} {prec}: {s['mean_ms']:.1f} ms mean, {s['hz']:.2f} Hz")
        m = {"size": f"{w}x{h}", "host_rss_before_mib": rss_before,
             "host_peak_rss_mib": _proc_status_mib("VmHWM"),
             "host_peak_note": "" if peak_ok else "clear_refs refused: VmHWM is the process-lifetime peak",
             "gpu_peak_allocated_mib": (torch.cuda.max_memory_allocated(bench.device) / 2 ** 20
                                        if bench.device.type == "cuda" else None)}
        mem.append(m)
    return rows, mem


def run_knobs(bench: Bench) -> List[Dict[str, Any]]:
    """Full ``engine.infer`` timings (ms) at the knob size: the base setting, each knob value
    alone (input_scale, max_disparity px, refiners, backend), then each combined
    ``input_scale:refiners`` setting, with the ratios to the base and to SGBM on the same pair.

    Interleaved: every round times each variant once, and SGBM, so that this machine's drift
    (its load moves timings by tens of % within minutes) hits every row alike."""
    from ..baseline import make_sgbm, num_disparities_for, to_grey_u8
    c = bench.cfg
    size = c.knob_size
    frames = bench.frames.get(size) or make_frames(*size)
    variants: List[Tuple[str, Any, Dict[str, Any]]] = [("base", "", {})]
    variants += [("input_scale", s, {"input_scale": s}) for s in c.input_scales[1:]]
    variants += [("max_disparity", d, {"max_disparity": d}) for d in c.max_disparities[1:]]
    variants += [("refiners", n, {"refiners": n}) for n in c.refiners[1:]]
    variants += [("backend", b, {"backend": b}) for b in c.backends[1:]]
    variants += [("setting", f"{s:g}:{n}", {"input_scale": s, "refiners": n}) for s, n in c.settings]
    engines = [bench.engine(**kw) for _, _, kw in variants]
    sgbm = make_sgbm(num_disparities_for(engines[0].max_disparity, size[0]))
    grey = [to_grey_u8(f) for f in frames]
    # One warm-up per engine even on the CPU: a new cost-volume depth or input size needs
    # new oneDNN primitives, and that first call measured up to 2x a steady frame.
    cpu = bench.device.type == "cpu"
    iters, warmup = (max(1, c.iters - 1), max(1, c.warmup)) if cpu else (c.iters, c.warmup)
    calls = [(lambda e=e: e.infer(*frames, with_confidence=True)) for e in engines]
    for call in calls:
        time_calls(call, 0, warmup, bench.sync)
    ms: List[List[float]] = [[] for _ in calls]
    sgbm_ms: List[float] = []
    for _ in range(iters):
        for call, out in zip(calls, ms):
            out += time_calls(call, 1, 0, bench.sync)
        sgbm_ms += time_calls(lambda: sgbm.compute(*grey), 1, 0, lambda: None)
    base_ms = summarize(ms[0])["mean_ms"]
    sgbm_mean = summarize(sgbm_ms)["mean_ms"]
    rows: List[Dict[str, Any]] = []
    for (name, value, _), eng, t in zip(variants, engines, ms):
        s = summarize(t)
        rows.append({"knob": name, "value": value, "size": f"{size[0]}x{size[1]}",
                     "precision": eng.precision_name, "input_scale": eng.input_scale,
                     "max_disparity_px": eng.max_disparity, "candidates": eng.candidates,
                     "refiners": eng.config.num_refiners, **s, "ratio_vs_base": s["mean_ms"] / base_ms,
                     "sgbm_mean_ms": sgbm_mean, "ratio_vs_sgbm": s["mean_ms"] / sgbm_mean})
        bench.log(f"  knob {name}={value} ({eng.precision_name}): {s['mean_ms']:.1f} ms ({s['mean_ms'] / base_ms:.2f}x base, "
                  f"{s['mean_ms'] / sgbm_mean:.2f}x SGBM)")
    return rows
