"""The micro section (``--micro``): interleaved A/B pairs behind the optimisation decisions
(docs/PERFORMANCE.md): cost volume vectorised vs a Python loop, BatchNorm folded vs separate,
channels_last vs contiguous, torch.compile vs eager, and 1 vs 2 torch threads beside a busy
ROS executor. Each pair reports both means (ms) and the speed-up A / B."""
from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

import numpy as np
import torch

from ...engine import StereoEngine
from ...model import difference_cost_volume
from .timing import summarize, time_calls

if TYPE_CHECKING:  # the session imports this module
    from .session import Bench

MICRO_PARTS = ("cost_volume", "fold_bn", "channels_last", "threads")


def loop_cost_volume(ref: torch.Tensor, other: torch.Tensor, candidates: int) -> torch.Tensor:
    """Reference: one Python iteration per disparity (the published StereoNet code's shape),
    left reference, zeros where x - d < 0. (B, C, D, H, W)."""
    b, c, h, w = ref.shape
    out = ref.new_zeros(b, c, candidates, h, w)
    for d in range(candidates):
        if d == 0:
            out[:, :, 0] = ref - other
        else:
            out[:, :, d, :, d:] = ref[..., d:] - other[..., :-d]
    return out


def _ab(fa: Callable[[], Any], fb: Callable[[], Any], iters: int, sync: Callable[[], None]) -> Tuple[List[float], List[float]]:
    """Time two variants interleaved (a, b, a, b, ...) so drifting load hits both alike."""
    fa(); fb(); sync()
    ta, tb = [], []
    for _ in range(max(1, iters)):
        ta += time_calls(fa, 1, 0, sync)
        tb += time_calls(fb, 1, 0, sync)
    return ta, tb


def _pair(name: str, a: str, b: str, ta: List[float], tb: List[float], **extra: Any) -> Dict[str, Any]:
    """One A/B row: both variants' mean and p50 (ms), the speed-up A / B, and ``extra``."""
    sa, sb = summarize(ta), summarize(tb)
    return {"name": name, "a": a, "b": b, "a_mean_ms": sa["mean_ms"], "b_mean_ms": sb["mean_ms"],
            "a_p50_ms": sa["p50_ms"], "b_p50_ms": sb["p50_ms"], "speedup_b_over_a": sa["mean_ms"] / sb["mean_ms"],
            **extra}


def micro_benchmarks(bench: Bench) -> Dict[str, Any]:
    """Before/after pairs for the optimisation decisions (see docs/PERFORMANCE.md)."""
    log = bench.log
    dev, sync = bench.device, bench.sync
    cfg = bench.ckpt.config
    iters = max(2, bench.cfg.iters)
    out: Dict[str, Any] = {}
    size = bench.cfg.sizes[0]

    parts = bench.cfg.micro_parts
    frames = bench.frames[size]
    eng = bench.engine("fp32")
    left, right = bench.prepared(eng, frames)
    rows = []
    if "cost_volume" in parts:
        log("[micro: cost volume, vectorised vs Python loop over disparities]")
    for (w, h) in (bench.cfg.sizes if "cost_volume" in parts else []):
        fh, fw = -(-h // 2 ** cfg.k), -(-w // 2 ** cfg.k)
        g = torch.Generator().manual_seed(0)
        ref = torch.randn(1, cfg.features, fh, fw, generator=g).to(dev)
        oth = torch.randn(1, cfg.features, fh, fw, generator=g).to(dev)
        d = cfg.candidates
        err = float((difference_cost_volume(ref, oth, d, -1) - loop_cost_volume(ref, oth, d)).abs().max())
        with torch.inference_mode():
            ta, tb = _ab(lambda: loop_cost_volume(ref, oth, d), lambda: difference_cost_volume(ref, oth, d, -1),
                         max(5, iters * 3), sync)
        rows.append(_pair("cost_volume", "python_loop", "vectorised", ta, tb, size=f"{w}x{h}",
                          volume=[1, cfg.features, d, fh, fw], max_abs_diff=err))
        log(f"  {w}x{h}: loop {rows[-1]['a_mean_ms']:.2f} ms, vectorised {rows[-1]['b_mean_ms']:.2f} ms")
    if rows:
        out["cost_volume"] = rows

    if "fold_bn" in parts:
        out["fold_bn"] = micro_fold_bn(bench, eng, left, right, iters)
    if "channels_last" in parts:
        out["channels_last"] = micro_channels_last(bench, frames, iters)
    if bench.cfg.compile_backend:
        out["compile"] = micro_compile(bench, frames, iters)
    if dev.type == "cpu" and "threads" in parts:
        out["threads"] = micro_threads(bench, eng, left, right, iters)
    return out


def micro_fold_bn(bench: Bench, eng: StereoEngine, left: torch.Tensor, right: torch.Tensor,
                  iters: int) -> Dict[str, Any]:
    """Engine with BatchNorm folded (default) vs separate BatchNorm, model forward fp32."""
    log, sync, size = bench.log, bench.sync, bench.cfg.sizes[0]
    out: Dict[str, Any] = {}
    log(f"[micro: BatchNorm folded into the convolutions vs separate, fp32 forward at {size[0]}x{size[1]}]")
    plain = bench.engine("fp32", fold_bn=False)
    fwd = lambda e: lambda: e.model(left, right, with_confidence=True, candidates=e.candidates)  # noqa: E731
    with torch.inference_mode():
        diff = float((fwd(plain)()["disparity"] - fwd(eng)()["disparity"]).abs().max())
        ta, tb = _ab(fwd(plain), fwd(eng), iters, sync)
    out["fold_bn"] = _pair("fold_bn", "conv+bn", "folded", ta, tb, size=f"{size[0]}x{size[1]}",
                           max_abs_disparity_diff_px=diff)
    log(f"  separate {out['fold_bn']['a_mean_ms']:.1f} ms, folded {out['fold_bn']['b_mean_ms']:.1f} ms, "
        f"max |diff| {diff:.2e} px")
    return out["fold_bn"]


def micro_channels_last(bench: Bench, frames: Tuple[np.ndarray, np.ndarray], iters: int) -> Dict[str, Any]:
    """Engine with NHWC vs NCHW 2D convolutions, model forward fp32."""
    log, sync, size = bench.log, bench.sync, bench.cfg.sizes[0]
    out: Dict[str, Any] = {}
    log(f"[micro: channels_last (NHWC) vs contiguous (NCHW), fp32 forward at {size[0]}x{size[1]}]")
    nchw, nhwc = bench.engine("fp32", channels_last=False), bench.engine("fp32", channels_last=True)
    (l1, r1), (l2, r2) = bench.prepared(nchw, frames), bench.prepared(nhwc, frames)
    with torch.inference_mode():
        diff = float((nchw.model(l1, r1, candidates=nchw.candidates)["disparity"]
                      - nhwc.model(l2, r2, candidates=nhwc.candidates)["disparity"]).abs().max())
        ta, tb = _ab(lambda: nchw.model(l1, r1, with_confidence=True, candidates=nchw.candidates),
                     lambda: nhwc.model(l2, r2, with_confidence=True, candidates=nhwc.candidates), iters, sync)
    out["channels_last"] = _pair("channels_last", "contiguous", "channels_last", ta, tb,
                                 size=f"{size[0]}x{size[1]}", max_abs_disparity_diff_px=diff)
    log(f"  contiguous {out['channels_last']['a_mean_ms']:.1f} ms, channels_last "
        f"{out['channels_last']['b_mean_ms']:.1f} ms, max |diff| {diff:.2e} px")
    return out["channels_last"]


def micro_compile(bench: Bench, frames: Tuple[np.ndarray, np.ndarray], iters: int) -> Dict[str, Any]:
    """Eager vs torch.compile (``--compile BACKEND``): background compile time (the first
    frame is served eagerly meanwhile), then interleaved model-only A/B."""
    be = bench.cfg.compile_backend
    eng = bench.engine(compile_backend=be)
    left, right = bench.prepared(eng, frames)
    bench.log(f"[micro: torch.compile backend={be}, compiling in the background]")
    t0 = time.perf_counter()
    eng.forward(left, right, False, True)  # eager frame; starts the compile
    first_ms = 1e3 * (time.perf_counter() - t0)
    ok = eng.wait_compiled(bench.cfg.compile_timeout)
    compile_s = time.perf_counter() - t0
    res: Dict[str, Any] = {"name": "compile", "backend": be, "first_frame_ms": first_ms,
                           "compile_s": compile_s, "state": eng.compile_state,
                           "error": next(iter(eng.compile_errors.values()), "")}
    if ok:
        with torch.inference_mode():
            ta, tb = _ab(lambda: eng.model(left, right, with_confidence=True, candidates=eng.candidates),
                         lambda: eng.forward(left, right, False, True), iters, bench.sync)
        res.update(_pair("compile", "eager", f"compiled_{be}", ta, tb, size="x".join(map(str, frames[0].shape[1::-1]))))
        res.update(compile_s=compile_s, first_frame_ms=first_ms, backend=be)
        bench.log(f"  compiled after {compile_s:.0f} s (first frame eager: {first_ms:.0f} ms); eager "
                  f"{res['a_mean_ms']:.1f} ms vs compiled {res['b_mean_ms']:.1f} ms")
    else:
        bench.log(f"  not ready after {compile_s:.0f} s: {eng.compile_state} {res['error']}")
    return res


def micro_threads(bench: Bench, eng: StereoEngine, left: torch.Tensor, right: torch.Tensor,
                  iters: int) -> Dict[str, Any]:
    """Model forward with torch using 1 vs 2 intra-op threads while a ROS executor spins in
    another thread and a 30 Hz camera-sized publisher feeds a subscriber (DDS + GIL load)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from ...messages import make_header, make_image

    w, h = bench.cfg.sizes[0]
    bench.log(f"[micro: torch threads 1 vs 2 with a ROS executor receiving {w}x{h} rgb8 at 30 Hz]")
    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(100, 200))
    node = rclpy.create_node("bench_threads", context=ctx)
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    received = [0]
    node.create_subscription(Image, "load", lambda m: received.__setitem__(0, received[0] + 1), qos)
    pub = node.create_publisher(Image, "load", qos)
    msg = make_image(make_header(0, ""), bench.frames[(w, h)][0], "rgb8")
    node.create_timer(1 / 30.0, lambda: pub.publish(msg))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()
    th = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                          daemon=True)
    th.start()
    before = torch.get_num_threads()
    res: Dict[str, Any]
    try:
        def run(n: int) -> Callable[[], None]:
            def f() -> None:
                torch.set_num_threads(n)
                with torch.inference_mode():
                    eng.model(left, right, with_confidence=True, candidates=eng.candidates)
            return f
        t_start, r0 = time.perf_counter(), received[0]
        ta, tb = _ab(run(1), run(2), iters, lambda: None)
        rate = (received[0] - r0) / (time.perf_counter() - t_start)
        res = _pair("threads", "1_thread", "2_threads", ta, tb, size=f"{w}x{h}", ros_msgs_per_s=rate)
        bench.log(f"  1 thread {res['a_mean_ms']:.1f} ms, 2 threads {res['b_mean_ms']:.1f} ms; "
                  f"executor received {rate:.1f} msg/s meanwhile")
    finally:
        torch.set_num_threads(before)
        stop.set()
        th.join(5)
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return res
