"""``stereonet-bench``: how fast is StereoNet here, and what does the ROS node add?

Sections of the report (table on stdout, everything in ``--json``):

- ``model``: network forward only (inputs already on the device), per size and per precision
  available on the device (fp32 on CPU; fp32/fp16/bf16 on CUDA): mean/p50/p95 ms and Hz.
  CUDA timings synchronise before reading the clock, so they are real GPU time.
- ``memory``: per size, host peak RSS (``VmHWM`` of /proc/self/status, reset through
  /proc/self/clear_refs) and GPU peak (``torch.cuda.max_memory_allocated``), MiB.
- ``node``: the real ``StereoNetNode`` in this process, fed by a real rclpy publisher and
  read by a real subscriber over DDS (private ROS domain and context). The network call is
  replaced by a replay of its own output (computed once, for real), so what is measured is
  the node's own overhead: decode, engine pre/post-processing, numpy post-processing,
  message building and publishing, and the DDS transport.
- ``stream``: the same node with its real network and default threads (and every core,
  where that differs), fed pairs faster than it keeps up for ``--stream-seconds``: how often
  a disparity comes out (period ms, Hz), its drops, and the period over SGBM's time on the
  same frames from the same run - the rate a camera user sees.
- ``sgbm``: OpenCV StereoSGBM on the same frames, the classical reference; ``ratio`` is
  StereoNet model time / SGBM time measured in the same run.
- ``knobs``: full ``engine.infer`` cost of input_scale, max_disparity and the number of
  refinement levels, each varied alone from the base setting, then of each combined
  ``--settings`` input_scale:refiners row; interleaved round by round with SGBM on the same
  pair (ratios to the base and to SGBM). uint8 frames, as the node feeds them.
- ``micro`` (``--micro``): cost volume vectorised vs a Python loop over disparities,
  channels_last vs contiguous, conv-BN folding, CPU threads 1 vs 2 with a ROS executor busy.

All times are milliseconds of wall clock. On a shared machine compare *ratios* from one run.

Modules, one concern each: ``timing`` (clock, summaries), ``inputs`` (the frames and the
checkpoint benchmarked), ``session`` (``Bench``: configuration, engines, the run of the
sections), ``model`` (model, memory and knobs sections), ``baselines`` (SGBM, StereoBM),
``node`` (the in-process node over DDS), ``stream`` (that node with its network, at a camera's
rate), ``micro`` (the A/B micro benchmarks), ``report`` (the tables) and ``cli`` (the
command line; ``python -m stereonet_ros.tools.bench``).
"""
from __future__ import annotations

from .cli import build_parser, main, parse_sizes
from .inputs import load_or_random, make_frames
from .report import format_report
from .session import Bench, BenchConfig
from .timing import summarize, time_calls

__all__ = ["Bench", "BenchConfig", "build_parser", "format_report", "load_or_random", "main", "make_frames",
           "parse_sizes", "summarize", "time_calls"]
