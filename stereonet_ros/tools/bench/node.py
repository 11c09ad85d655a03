"""The node section: the real ``StereoNetNode`` in this process over real DDS (a private
domain and context), fed by an rclpy publisher and read by a subscriber, with the network
replaced by a replay of its own output, so the per-frame times (ms) are the node's overhead."""
from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import torch

from ...engine import StereoEngine
from ...messages import CAMERA_INFO, CLOUD, DISPARITY, IMAGE, make_camera_info, make_header, make_image, ros_type
from .inputs import make_frames
from .timing import summarize

if TYPE_CHECKING:  # the session imports this module
    from .session import Bench

OUTPUT_TOPICS = ("disparity", "depth", "points2", "confidence", "disparity/color")
#: the message type of each output topic subscribed to
OUTPUT_TYPES = {"disparity": DISPARITY, "depth": IMAGE, "points2": CLOUD, "confidence": IMAGE,
                "disparity/color": IMAGE}
#: the input topics published to, and their types
INPUT_TYPES = {"left/image_rect": IMAGE, "right/image_rect": IMAGE, "left/camera_info": CAMERA_INFO,
               "right/camera_info": CAMERA_INFO}
FRAME_ID = "left_optical"  # of every input message (the node publishes in the left frame)
FOCAL_PER_WIDTH = 0.8      # fx = 0.8 * width px (a ~64 degree horizontal field of view)
BASELINE_M = 0.12          # metres
#: stages summarised per frame (``NodeStats`` stage names, ms)
STAGES = ("decode", "preprocess", "postprocess", "postprocess_numpy", "publish", "model", "total")


def run_node(bench: Bench) -> List[Dict[str, Any]]:
    """Per size, one row of the node's stage times and overhead (ms) over DDS: a fresh node
    in namespace ``/bench<i>`` with the run's checkpoint, device and base knob settings."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

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
                rows.append(_node_one_size(bench, node, io, ctx, (w, h)))
            finally:
                node.shutdown()
                node.destroy_node()
                io.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
    return rows


def replay_network(engine: StereoEngine, cached: Optional[Dict[str, Any]]) -> None:
    """Make ``engine.forward`` return ``cached`` (the model section's output for this size)
    instead of running the network; with none yet, or for a left-right check (which needs the
    right disparity too), the first call runs the network for real and is replayed after.

    The node builds its engine itself from its parameters, and the network time is known
    from the model section, so replacing this one method on the node's own engine instance
    is what leaves exactly the node's overhead to measure. It is never undone: the node is
    destroyed after its size."""
    def replay(left: torch.Tensor, right: torch.Tensor, with_right: bool, with_conf: bool) -> Dict[str, Any]:
        nonlocal cached
        if cached is None or with_right:
            cached = StereoEngine.forward(engine, left, right, with_right, with_conf)
        return cached

    engine.forward = replay  # type: ignore[method-assign]  # an instance attribute shadows the method


def _node_one_size(bench: Bench, node: Any, io: Any, ctx: Any, size: Tuple[int, int]) -> Dict[str, Any]:
    """Send 1 + warmup + node_frames pairs of ``size`` (width, height) px through ``node``
    one at a time, each after the previous one's outputs all came back, and summarise the
    measured ones (see ``node_row``)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    w, h = size
    engine = node.engine
    replay_network(engine, bench.cached_out.get(size))
    got: Dict[Tuple[int, int], Dict[str, float]] = {}  # stamp -> topic -> receive time
    lock = threading.Lock()

    def on_out(topic: str, msg: Any) -> None:
        t = time.perf_counter()
        hdr = msg.header
        with lock:
            got.setdefault((hdr.stamp.sec, hdr.stamp.nanosec), {})[topic] = t

    rel = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    subs = [io.create_subscription(ros_type(OUTPUT_TYPES[t]), t, lambda m, t=t: on_out(t, m), rel)
            for t in OUTPUT_TOPICS]
    pubs = {k: io.create_publisher(ros_type(t), k, rel) for k, t in INPUT_TYPES.items()}
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                            daemon=True)
    spin.start()
    lost = 0
    e2e: List[float] = []                 # ms from publishing the pair to its last output
    measured: List[Dict[str, float]] = []  # the node's stage times (ms) of those frames
    try:
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and not (
                all(p.get_subscription_count() >= 1 for p in pubs.values())
                and all(s.get_publisher_count() >= 1 for s in subs)):
            time.sleep(0.02)
        lf, rf = bench.frames.get(size) or make_frames(w, h)
        fx = FOCAL_PER_WIDTH * w
        for i in range(1 + bench.cfg.warmup + bench.cfg.node_frames):
            header = make_header(time.time_ns(), FRAME_ID)
            # One rectified pair: the right eye's P[0,3] = -fx * baseline (the codec's convention).
            for side in ("left", "right"):
                pubs[f"{side}/camera_info"].publish(make_camera_info(header, w, h, fx, BASELINE_M,
                                                                     right=side == "right"))
            if i == 0:
                time.sleep(0.2)  # let camera_info arrive before the first pair
            msgs = [make_image(header, arr, "rgb8") for arr in (lf, rf)]
            n_before = node.stats.processed
            t0 = time.perf_counter()
            pubs["left/image_rect"].publish(msgs[0])
            pubs["right/image_rect"].publish(msgs[1])
            key = (header.stamp.sec, header.stamp.nanosec)
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
            if i > bench.cfg.warmup and node.stats.processed > n_before:
                # Frames go one at a time: the newest frame the node counted is this one.
                measured.append(node.stats.recent_frames()[-1])
                with lock:
                    e2e.append(1e3 * (max(got[key].values()) - t0))
            elif i > bench.cfg.warmup:
                lost += 1
    finally:
        stop.set()
        spin.join(5)
        ex.shutdown()
    return node_row(bench, size, engine.precision_name, measured, e2e, lost)


def node_row(bench: Bench, size: Tuple[int, int], precision: str, measured: List[Dict[str, float]],
             e2e: List[float], lost: int) -> Dict[str, Any]:
    """The report row of one size from the measured frames' stage times and end-to-end
    times (ms): mean and p95 per stage, the overhead (total - model), the DDS and executor
    time (end-to-end - total), and with the model section's time the share of a frame and
    the node's estimated rate (Hz) and latency (ms)."""
    w, h = size
    st = {k: summarize([s.get(k, 0.0) for s in measured]) if measured else None for k in STAGES}
    overhead = [s["total"] - s.get("model", 0.0) for s in measured]
    row: Dict[str, Any] = {"size": f"{w}x{h}", "frames": len(measured), "lost": lost,
                           "precision": precision,
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
