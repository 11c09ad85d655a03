"""The node section: the real ``StereoNetNode`` in this process over real DDS (a private
domain and context), fed by an rclpy publisher and read by a subscriber, with the network
replaced by a replay of its own output, so the per-frame times (ms) are the node's overhead."""
from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

import torch

from ...engine import StereoEngine
from .inputs import make_frames
from .timing import summarize

if TYPE_CHECKING:  # the session imports this module
    from .session import Bench

OUTPUT_TOPICS = ("disparity", "depth", "points2", "confidence", "disparity/color")


def run_node(bench: Bench) -> List[Dict[str, Any]]:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from stereo_msgs.msg import DisparityImage
    from sensor_msgs.msg import PointCloud2
    from ...imageconv import fill_image
    from ...node import StereoNetNode

    domain = random.randint(100, 200)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    rows: List[Dict[str, Any]] = []
    try:
        for idx, (w, h) in enumerate(bench.cfg.sizes):
            ns = f"/bench{idx}"
            params = [Parameter("checkpoint", value=bench.ckpt.path),
                      Parameter("device", value=str(bench.device)),
                      Parameter("refiners", value=bench.refiners),
                      Parameter("input_scale", value=float(bench.cfg.input_scales[0])),
                      Parameter("max_disparity", value=float(bench.cfg.max_disparities[0]))]
            node = StereoNetNode(namespace=ns, context=ctx, parameter_overrides=params)
            io = rclpy.create_node("bench_io", namespace=ns, context=ctx)
            try:
                rows.append(_node_one_size(bench, node, io, ctx, (w, h), SingleThreadedExecutor,
                                                QoSProfile, ReliabilityPolicy, CameraInfo, Image,
                                                DisparityImage, PointCloud2, fill_image))
            finally:
                node.shutdown()
                node.destroy_node()
                io.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
    return rows

def _node_one_size(bench: Bench, node: Any, io: Any, ctx: Any, size: Tuple[int, int], Executor: Any,
                   QoSProfile: Any, Rel: Any, CameraInfo: Any, Image: Any, DisparityImage: Any,
                   PointCloud2: Any, fill_image: Callable) -> Dict[str, Any]:
    w, h = size
    engine = node.engine
    cached = bench.cached_out.get(size)
    real_ms: List[float] = []

    def replay(left: torch.Tensor, right: torch.Tensor, with_right: bool, with_conf: bool) -> Dict[str, Any]:
        nonlocal cached
        if cached is None or with_right:  # first call (or an unexpected flag): run it for real
            t0 = time.perf_counter()
            cached = StereoEngine.forward(engine, left, right, with_right, with_conf)
            real_ms.append(1e3 * (time.perf_counter() - t0))
        return cached

    engine.forward = replay  # instance attribute shadows the method
    stages: List[Dict[str, float]] = []
    orig = node.stats.processed_frame
    node.stats.processed_frame = lambda st: (stages.append(dict(st)), orig(st))

    got: Dict[Tuple[int, int], Dict[str, float]] = {}  # stamp -> topic -> receive time
    lock = threading.Lock()

    def on_out(topic: str, msg: Any) -> None:
        t = time.perf_counter()
        hdr = msg.header
        with lock:
            got.setdefault((hdr.stamp.sec, hdr.stamp.nanosec), {})[topic] = t

    types = {"disparity": DisparityImage, "depth": Image, "points2": PointCloud2,
             "confidence": Image, "disparity/color": Image}
    rel = QoSProfile(depth=5, reliability=Rel.RELIABLE)
    subs = [io.create_subscription(types[t], t, lambda m, t=t: on_out(t, m), rel) for t in OUTPUT_TOPICS]
    pubs = {k: io.create_publisher(t, k, rel) for k, t in (("left/image_rect", Image),
                                                            ("right/image_rect", Image),
                                                            ("left/camera_info", CameraInfo),
                                                            ("right/camera_info", CameraInfo))}
    ex = Executor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                            daemon=True)
    spin.start()
    lost = 0
    e2e: List[float] = []
    try:
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and not (
                all(p.get_subscription_count() >= 1 for p in pubs.values())
                and all(s.get_publisher_count() >= 1 for s in subs)):
            time.sleep(0.02)
        lf, rf = bench.frames.get(size) or make_frames(w, h)
        fx, base = 0.8 * w, 0.12
        for i in range(1 + bench.cfg.warmup + bench.cfg.node_frames):
            stamp_ns = time.time_ns()
            sec, nsec = divmod(stamp_ns, 1_000_000_000)
            for side, tx in (("left", 0.0), ("right", -fx * base)):
                info = CameraInfo()
                info.header.stamp.sec, info.header.stamp.nanosec = sec, nsec
                info.header.frame_id = "left_optical"
                info.width, info.height = w, h
                info.d = [0.0] * 5
                info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
                info.p = [fx, 0.0, (w - 1) / 2, tx, 0.0, fx, (h - 1) / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
                pubs[f"{side}/camera_info"].publish(info)
            if i == 0:
                time.sleep(0.2)  # let camera_info arrive before the first pair
            msgs = []
            for side, arr in (("left", lf), ("right", rf)):
                m = Image()
                m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
                m.header.frame_id = "left_optical"
                msgs.append(fill_image(m, arr, "rgb8"))
            n_before = len(stages)
            t0 = time.perf_counter()
            pubs["left/image_rect"].publish(msgs[0])
            pubs["right/image_rect"].publish(msgs[1])
            key = (sec, nsec)
            end = time.monotonic() + 30.0
            done = False
            while time.monotonic() < end:
                with lock:
                    done = len(got.get(key, {})) == len(OUTPUT_TOPICS)
                if done:
                    break
                time.sleep(0.0005)
            if not done:
                lost += 1
                continue
            if i > bench.cfg.warmup and len(stages) > n_before:
                with lock:
                    e2e.append(1e3 * (max(got[key].values()) - t0))
            elif i > bench.cfg.warmup:
                lost += 1
    finally:
        stop.set()
        spin.join(5)
        ex.shutdown()
    measured = stages[-len(e2e):] if e2e else []
    keys = ("decode", "preprocess", "postprocess", "postprocess_numpy", "publish", "model", "total")
    st = {k: summarize([s.get(k, 0.0) for s in measured]) if measured else None for k in keys}
    overhead = [s["total"] - s.get("model", 0.0) for s in measured]
    row: Dict[str, Any] = {"size": f"{w}x{h}", "frames": len(measured), "lost": lost,
                           "precision": engine.precision_name,
                           "stages_ms": {k: (v["mean_ms"] if v else None) for k, v in st.items()},
                           "stages_p95_ms": {k: (v["p95_ms"] if v else None) for k, v in st.items()}}
    if measured:
        ov = summarize(overhead)
        ee = summarize(e2e)
        model = bench.auto_model_ms(size)
        row.update({"overhead_ms": ov["mean_ms"], "overhead_p95_ms": ov["p95_ms"],
                    "e2e_without_model_ms": ee["mean_ms"], "e2e_without_model_p95_ms": ee["p95_ms"],
                    "transport_ms": ee["mean_ms"] - st["total"]["mean_ms"],  # DDS in + out, executor
                    "model_ms": model})
        if model:
            frame = model + ov["mean_ms"]
            row["overhead_pct_of_frame"] = 100.0 * ov["mean_ms"] / frame
            row["est_node_hz"] = 1e3 / frame
            row["est_e2e_latency_ms"] = model + ee["mean_ms"]
        bench.log(f"  node {w}x{h}: overhead {ov['mean_ms']:.1f} ms/frame "
                 f"(decode {st['decode']['mean_ms']:.1f}, engine pre {st['preprocess']['mean_ms']:.1f}, "
                 f"engine post {st['postprocess']['mean_ms']:.1f}, numpy post "
                 f"{st['postprocess_numpy']['mean_ms']:.1f}, publish {st['publish']['mean_ms']:.1f}); "
                 f"DDS+executor {row['transport_ms']:.1f} ms" +
                 (f"; {row['overhead_pct_of_frame']:.1f}% of a frame" if model else ""))
    return row
