"""Wall-clock timing of repeated calls and the summary every section reports (ms, Hz)."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Sequence

import torch

from ...stats import percentiles


def summarize(ms: Sequence[float]) -> Dict[str, float]:
    """mean/p50/p95/min in ms and the throughput in Hz (1000 / mean) of a list of timings
    (the percentiles are ``stats.percentiles``, as in the node's and the evaluator's reports)."""
    p = percentiles(ms)
    mean = p["mean"]
    return {"mean_ms": mean, "p50_ms": p["p50"], "p95_ms": p["p95"], "min_ms": float(min(ms)),
            "hz": 1e3 / mean if mean > 0 else math.inf, "n": p["count"]}


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A no-op on the CPU; waits for queued kernels on CUDA so timings are real GPU time."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_calls(fn: Callable[[], Any], iters: int, warmup: int, sync: Callable[[], None]) -> List[float]:
    """Run ``fn`` warmup + iters times; per-call wall time in ms of the last ``iters``."""
    for _ in range(warmup):
        fn()
        sync()
    out = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(1e3 * (time.perf_counter() - t0))
    return out
