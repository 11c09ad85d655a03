"""The ``stereonet-bench`` command line: options -> ``BenchConfig``, the run, the tables on
stdout and the JSON report."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ...backends import BACKENDS, RUNTIMES
from ...engine import resolve_backend, resolve_device
from ...params import MAX_INPUT_SCALE
from .inputs import load_or_random
from .micro import MICRO_PARTS
from .report import format_report
from .session import SECTIONS, Bench, BenchConfig

DEFAULT_SIZES = "640x480,960x540,1280x720"


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """'640x480,960x540' -> [(640, 480), (960, 540)] as (width, height) in pixels."""
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            w, h = (int(v) for v in item.split("x"))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"size '{item}' is not WIDTHxHEIGHT") from exc
        if w < 16 or h < 16:
            raise argparse.ArgumentTypeError(f"size '{item}' is too small (>= 16x16)")
        out.append((w, h))
    if not out:
        raise argparse.ArgumentTypeError("no sizes given")
    return out


def _package_doc() -> str:
    """The package's docstring, which describes the report."""
    # Looked up, not imported: the package imports this module while it is itself importing.
    return sys.modules[__package__].__doc__ or ""


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (sizes in pixels, times in seconds)."""
    p = argparse.ArgumentParser(prog="stereonet-bench", description=_package_doc().split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default="", help="checkpoint ('' = bundled default; random model if absent)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES), help="WxH,WxH,...")
    p.add_argument("--iters", type=int, default=0, help="timed iterations (0 = 2 on CPU, 100 on CUDA)")
    p.add_argument("--warmup", type=int, default=-1, help="untimed iterations (-1 = 1 on CPU, 20 on CUDA)")
    p.add_argument("--input-scale", type=float, nargs="+", default=[0.0, 1.0, 0.5],
                   help="first = base setting (0 = the checkpoint's operating point, the node's "
                        "default), others = knob values to cost")
    p.add_argument("--max-disparity", type=float, nargs="+", default=[0.0, 96.0],
                   help="native px (0 = checkpoint's); first = base, others = knob values")
    p.add_argument("--refiners", type=int, nargs="+", default=None,
                   help="refinement levels kept; first = base, others = knob values (default: -1 = the checkpoint's "
                        "operating point, then each other count of all, 1 and 0)")
    p.add_argument("--backends", default="",
                   help="engine backends, comma-separated: the first is every section's, the others are timed "
                        "as knob values ('' = the node's default, auto, then every runtime it does not pick)")
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--node-frames", type=int, default=0, help="frames through the node (0 = 5 CPU, 50 CUDA)")
    p.add_argument("--stream-seconds", type=float, default=10.0,
                   help="seconds measured per stream row (after 3 s of warm-up)")
    p.add_argument("--settings", type=parse_settings, default=parse_settings("1:all,1:1,1.25:1,1.25:all"),
                   help="input_scale:refiners combinations the knobs section also times ('all' = every "
                        "refiner; '' = none)")
    p.add_argument("--knob-size", type=parse_sizes, default=None, help="size for the knobs (default: first size)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="subset of " + ",".join(SECTIONS) + " ('none' with --micro: only the micro benchmarks)")
    p.add_argument("--micro", action="store_true", help="also run the micro benchmarks (cost volume, "
                                                         "channels_last, threads)")
    p.add_argument("--micro-parts", default=",".join(MICRO_PARTS), help="subset of " + ",".join(MICRO_PARTS))
    p.add_argument("--compile", default="", metavar="BACKEND",
                   help="with --micro: also time torch.compile(backend=BACKEND), e.g. inductor")
    p.add_argument("--compile-timeout", type=float, default=900.0, help="seconds to wait for the compile")
    p.add_argument("--json", default="", help="write the full report here")
    p.add_argument("--quiet", action="store_true", help="only the final tables")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point ``stereonet-bench``; returns the exit code."""
    args = build_parser().parse_args(argv)
    # DDS for the in-process node: large messages over shared memory / TCP, discovery kept
    # on this host, unless the caller configured otherwise (restored afterwards, so a caller
    # in the same process - a test session - keeps its own settings).
    saved = {k: os.environ.get(k) for k in ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        return _main(args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def parse_settings(text: str) -> List[Tuple[float, Optional[int]]]:
    """'1.25:1,1:all' -> [(1.25, 1), (1.0, None)] (None = every refiner of the checkpoint)."""
    out: List[Tuple[float, Optional[int]]] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            scale, refiners = item.split(":")
            s, n = float(scale), None if refiners.strip() == "all" else int(refiners)
        except ValueError:
            raise argparse.ArgumentTypeError(f"setting {item!r} is not input_scale:refiners "
                                             "(e.g. 1.25:1 or 1:all)") from None
        if not 0 <= s <= MAX_INPUT_SCALE or (n is not None and n < -1):
            raise argparse.ArgumentTypeError(f"setting {item!r}: input_scale must be in [0, {MAX_INPUT_SCALE:g}] "
                                             "and refiners -1, 'all' or a count")
        out.append((s, n))
    return out


def _main(args: argparse.Namespace) -> int:
    """The run for parsed options: the tables on stdout, the report to ``--json``; exit code."""
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    sections = [s.strip() for s in args.sections.split(",") if s.strip() and s.strip() != "none"]
    bad = set(sections) - set(SECTIONS)
    if bad:
        print(f"unknown sections {sorted(bad)}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    backends = list(dict.fromkeys(b.strip() for b in args.backends.split(",") if b.strip()))
    if not backends:
        picked = resolve_backend("auto", device)
        backends = ["auto"] + [b for b in RUNTIMES if b != picked]
    if set(backends) - set(BACKENDS):
        print(f"--backends {args.backends!r}: choose from {', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    cfg = BenchConfig(checkpoint=args.checkpoint, device=str(device), sizes=args.sizes,
                      iters=args.iters or (100 if cuda else 2),
                      warmup=args.warmup if args.warmup >= 0 else (20 if cuda else 1),
                      input_scales=args.input_scale, max_disparities=args.max_disparity,
                      refiners=[], num_threads=args.num_threads,
                      node_frames=args.node_frames or (50 if cuda else 5),
                      knob_size=(args.knob_size or args.sizes)[0], sections=sections, micro=args.micro,
                      compile_backend=args.compile, compile_timeout=args.compile_timeout,
                      micro_parts=tuple(x.strip() for x in args.micro_parts.split(",") if x.strip()),
                      stream_seconds=args.stream_seconds, backends=backends)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    probe, _ = load_or_random(args.checkpoint)
    k = probe.config.num_refiners
    # 'all' is the checkpoint's count; a count it lacks is its count (a 1-refiner model's 1:2 is 1:1)
    cfg.settings = list(dict.fromkeys((s, k if n is None else min(n, k)) for s, n in args.settings))
    # Refiner defaults depend on the checkpoint: its operating point (the node's default),
    # then each other count of all, 1 and 0.
    if args.refiners is None:
        base = probe.inference.refiners_of(k)
        cfg.refiners = [-1] + [n for n in dict.fromkeys((k, 1, 0)) if n != base and n <= k]
    else:
        cfg.refiners = list(args.refiners)
    report = Bench(cfg, log).run()
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"report written to {args.json}")
    return 0
