"""Torch vs the graph backends on one input size: time per frame and how far the outputs differ.

A hook for ``stereonet-bench``-style runs, not run by the test suite for its numbers::

    python -m stereonet_ros.backends.compare --size 640x480 --threads 2 --precision auto --json out/backends.json

Every engine gets the same checkpoint, device, threads, precision request and textured pair
(``bench.make_frames``); they are timed in interleaved rounds (every backend once per round),
because on a shared machine the load drifts between runs. Each is warmed up first, so a graph
export (first frame of a size, or a cache load) is reported separately as ``first_frame_ms``
and not mixed into the per-frame times.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import BACKENDS, RUNTIMES


def time_backends(checkpoint: str = "", width: int = 640, height: int = 480, iters: int = 10,
                  warmup: int = 2, num_threads: int = 1, device: str = "cpu", refiners: int = -1,
                  onnx_providers: str = "", backends: Sequence[str] = RUNTIMES,
                  precision: str = "fp32") -> Dict[str, Any]:
    """Per backend (``backends``, torch first as the reference) ``bench.summarize`` of whole
    ``engine.infer`` calls (ms) and of the ``model`` stage alone, the time of the first frame
    (export or cache load), the engine's precision, and against torch: the ratio of the mean
    model times (``model_ratio_to_torch``) and the largest and mean disparity difference in
    native pixels. ``precision`` 'fp32' compares backends alone (graphs are fp32); 'auto'
    compares what each runs by default (e.g. bf16 where the CPU has it)."""
    from ..tools.bench import make_frames, summarize
    from ..engine import StereoEngine

    names = ["torch"] + [b for b in backends if b != "torch"]
    left, right = make_frames(width, height)
    out: Dict[str, Any] = {"size": f"{width}x{height}", "iters": iters, "warmup": warmup,
                           "num_threads": num_threads, "device": device, "refiners": refiners,
                           "precision_request": precision, "backends": names}
    engines, first = {}, {}
    for b in names:
        kw: Dict[str, Any] = {"onnx_providers": onnx_providers} if b == "onnxruntime" else {}
        eng = StereoEngine(checkpoint, device=device, num_threads=num_threads, refiners=refiners,
                           backend=b, precision=precision, **kw)
        t0 = time.perf_counter()
        first[b] = eng.infer(left, right).disparity
        out[b] = {"engine": eng.describe(), "precision": eng.precision_name,
                  "first_frame_ms": 1e3 * (time.perf_counter() - t0)}
        for _ in range(max(0, warmup - 1)):
            eng.infer(left, right)
        engines[b] = eng
    total: Dict[str, List[float]] = {b: [] for b in names}
    model: Dict[str, List[float]] = {b: [] for b in names}
    for _ in range(max(1, iters)):
        for b in names:
            t0 = time.perf_counter()
            res = engines[b].infer(left, right)
            total[b].append(1e3 * (time.perf_counter() - t0))
            model[b].append(res.timings_ms["model"])
    for b in names:
        out[b].update(infer=summarize(total[b]), model=summarize(model[b]))
        diff = np.abs(first[b] - first["torch"])
        out[b].update(model_ratio_to_torch=out[b]["model"]["mean_ms"] / out["torch"]["model"]["mean_ms"],
                      max_abs_disparity_diff_px=float(diff.max()), mean_abs_disparity_diff_px=float(diff.mean()))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stereonet_ros.backends.compare",
                                description="Time torch against the graph backends for one input size.")
    p.add_argument("--checkpoint", default="", help="'' = bundled default")
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT in pixels")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of every backend")
    p.add_argument("--device", default="cpu")
    p.add_argument("--refiners", type=int, default=-1)
    p.add_argument("--precision", default="fp32",
                   help="fp32 (backends alone: graphs are fp32) or auto (each backend's default)")
    p.add_argument("--backends", default=",".join(RUNTIMES), help=f"comma-separated, of {', '.join(BACKENDS)}")
    p.add_argument("--onnx-providers", default="", help="e.g. tensorrt,cuda ('' = from the device)")
    p.add_argument("--json", default=None, help="write the report here too")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    w, h = (int(v) for v in a.size.lower().split("x"))
    r = time_backends(a.checkpoint, w, h, a.iters, a.warmup, a.threads, a.device, a.refiners,
                      a.onnx_providers, [b.strip() for b in a.backends.split(",") if b.strip()], a.precision)
    for b in r["backends"]:
        m = r[b]["model"]
        print(f"{b:12s} {r[b]['precision']:5s} model mean {m['mean_ms']:8.1f} ms  p95 {m['p95_ms']:8.1f} ms  "
              f"x torch {r[b]['model_ratio_to_torch']:5.2f}  first frame {r[b]['first_frame_ms']:8.1f} ms  "
              f"|disparity - torch's| max {r[b]['max_abs_disparity_diff_px']:.2g} mean "
              f"{r[b]['mean_abs_disparity_diff_px']:.2g} px")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
