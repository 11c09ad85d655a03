"""Torch vs onnxruntime on one input size: time per frame and how far the outputs differ.

A hook for ``stereonet-bench``-style runs, not run by the test suite for its numbers::

    python -m stereonet_ros.backends.compare --size 640x480 --threads 1 --json out/backends.json

Both engines get the same checkpoint, device, threads and textured pair (``bench.make_frames``);
each is warmed up first, so the onnxruntime export (first frame of a size, or a cache hit)
is reported separately as ``first_frame_ms`` and not mixed into the per-frame times.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def time_backends(checkpoint: str = "", width: int = 640, height: int = 480, iters: int = 10,
                  warmup: int = 2, num_threads: int = 1, device: str = "cpu", refiners: int = -1,
                  onnx_providers: str = "") -> Dict[str, Any]:
    """Per-backend ``bench.summarize`` of whole ``engine.infer`` calls (ms) and of the
    ``model`` stage alone, the ratio onnxruntime / torch of the mean model time, the time of
    the first onnxruntime frame (export or cache load) and the largest disparity difference
    between the two backends in native pixels."""
    from ..tools.bench import make_frames, summarize
    from ..engine import StereoEngine

    left, right = make_frames(width, height)
    out: Dict[str, Any] = {"size": f"{width}x{height}", "iters": iters, "warmup": warmup,
                           "num_threads": num_threads, "device": device, "refiners": refiners}
    disparities = {}
    for backend in ("torch", "onnxruntime"):
        kw: Dict[str, Any] = {"onnx_providers": onnx_providers} if backend == "onnxruntime" else {}
        # fp32 on both sides: the graph is fp32, so this compares backends, not precisions
        eng = StereoEngine(checkpoint, device=device, num_threads=num_threads, refiners=refiners,
                           backend=backend, precision="fp32", **kw)
        t0 = time.perf_counter()
        first = eng.infer(left, right)
        first_ms = 1e3 * (time.perf_counter() - t0)
        for _ in range(max(0, warmup - 1)):
            eng.infer(left, right)
        total: List[float] = []
        model: List[float] = []
        for _ in range(max(1, iters)):
            t0 = time.perf_counter()
            res = eng.infer(left, right)
            total.append(1e3 * (time.perf_counter() - t0))
            model.append(res.timings_ms["model"])
        disparities[backend] = first.disparity
        out[backend] = {"engine": eng.describe(), "first_frame_ms": first_ms,
                        "infer": summarize(total), "model": summarize(model)}
    out["model_ratio_onnxruntime_to_torch"] = (out["onnxruntime"]["model"]["mean_ms"]
                                               / out["torch"]["model"]["mean_ms"])
    out["max_abs_disparity_diff_px"] = float(np.abs(disparities["torch"] - disparities["onnxruntime"]).max())
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stereonet_ros.backends.compare",
                                description="Time torch vs onnxruntime for one input size.")
    p.add_argument("--checkpoint", default="", help="'' = bundled default")
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT in pixels")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of both backends")
    p.add_argument("--device", default="cpu")
    p.add_argument("--refiners", type=int, default=-1)
    p.add_argument("--onnx-providers", default="", help="e.g. tensorrt,cuda ('' = from the device)")
    p.add_argument("--json", default=None, help="write the report here too")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    w, h = (int(v) for v in a.size.lower().split("x"))
    r = time_backends(a.checkpoint, w, h, a.iters, a.warmup, a.threads, a.device, a.refiners,
                      a.onnx_providers)
    for b in ("torch", "onnxruntime"):
        m = r[b]["model"]
        print(f"{b:12s} model mean {m['mean_ms']:8.1f} ms  p95 {m['p95_ms']:8.1f} ms  "
              f"first frame {r[b]['first_frame_ms']:8.1f} ms")
    print(f"onnxruntime / torch model time: {r['model_ratio_onnxruntime_to_torch']:.2f}; "
          f"max |disparity difference| {r['max_abs_disparity_diff_px']:.2g} px")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
