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


class NodeHarness:
    """A real ``StereoNetNode`` in namespace ``ns`` of ``ctx`` and a bench-side node that
    publishes its inputs and subscribes to every output (reliable), both spun by one executor
    in a thread. ``on_out(topic, stamp, t)`` is called on each output message (perf_counter
    time ``t``)."""

    def __init__(self, ctx: Any, ns: str, params: List[Any], on_out: Any) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from ...node import StereoNetNode

        self.node = StereoNetNode(namespace=ns, context=ctx, parameter_overrides=params)
        self.io = rclpy.create_node("bench_io", namespace=ns, context=ctx)

        def cb(topic: str, msg: Any) -> None:
            t = time.perf_counter()
            on_out(topic, (msg.header.stamp.sec, msg.header.stamp.nanosec), t)

        rel = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = [self.io.create_subscription(ros_type(OUTPUT_TYPES[t]), t, lambda m, t=t: cb(t, m), rel)
                     for t in OUTPUT_TOPICS]
        self.pubs = {k: self.io.create_publisher(ros_type(t), k, rel) for k, t in INPUT_TYPES.items()}
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.io)
        self._stop = threading.Event()
        self._spin = threading.Thread(
            target=lambda: [self.ex.spin_once(timeout_sec=0.05) for _ in iter(self._stop.is_set, True)], daemon=True)
        self._spin.start()
        self._images: Dict[Tuple[int, int], List[Any]] = {}

    def matched(self, timeout: float = 15.0) -> bool:
        """Wait until every input has the node as subscriber and every output a publisher."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() >= 1 for p in self.pubs.values()) \
                    and all(s.get_publisher_count() >= 1 for s in self.subs):
                return True
            time.sleep(0.02)
        return False

    def send(self, frames: Tuple[Any, Any], first: bool = False) -> Tuple[int, int]:
        """Publish camera_info and one rgb8 pair stamped now; returns the stamp (sec, nanosec).
        The image messages are built once per size and re-stamped (building 2 MB messages in
        Python is the bench's cost, not the node's)."""
        h, w = frames[0].shape[:2]
        header = make_header(time.time_ns(), FRAME_ID)
        fx = FOCAL_PER_WIDTH * w
        # One rectified pair: the right eye's P[0,3] = -fx * baseline (the codec's convention).
        for side in ("left", "right"):
            self.pubs[f"{side}/camera_info"].publish(make_camera_info(header, w, h, fx, BASELINE_M,
                                                                      right=side == "right"))
        if first:
            time.sleep(0.2)  # let camera_info arrive before the first pair
        msgs = self._images.get((w, h))
        if msgs is None:
            msgs = self._images[(w, h)] = [make_image(header, arr, "rgb8") for arr in frames]
        for m in msgs:
            m.header = header
        self.pubs["left/image_rect"].publish(msgs[0])
        self.pubs["right/image_rect"].publish(msgs[1])
        return header.stamp.sec, header.stamp.nanosec

    def close(self) -> None:
        self._stop.set()
        self._spin.join(5)
        self.ex.shutdown()
        self.node.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()


def node_params(bench: Bench, **extra: Any) -> List[Any]:
    """The node's parameters for the run's checkpoint, device and base knob settings."""
    from rclpy.parameter import Parameter
    values = {"checkpoint": bench.ckpt.path, "device": str(bench.device), "refiners": bench.refiners,
              "backend": bench.cfg.backends[0],
              "input_scale": float(bench.cfg.input_scales[0]),
              "max_disparity": float(bench.cfg.max_disparities[0]), **extra}
    return [Parameter(k, value=v) for k, v in values.items()]


def in_private_domain(run: Any) -> Any:
    """``run(ctx)`` with a fresh rclpy context on a random private ROS domain, shut after."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(100, 200))
    try:
        return run(ctx)
    finally:
        rclpy.try_shutdown(context=ctx)


def run_node(bench: Bench) -> List[Dict[str, Any]]:
    """Per size, one row of the node's stage times and overhead (ms) over DDS: a fresh node
    in namespace ``/bench<i>`` with the run's checkpoint, device and base knob settings."""
    def sizes(ctx: Any) -> List[Dict[str, Any]]:
        return [_node_one_size(bench, ctx, f"/bench{idx}", size) for idx, size in enumerate(bench.cfg.sizes)]
    return in_private_domain(sizes)


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


def _node_one_size(bench: Bench, ctx: Any, ns: str, size: Tuple[int, int]) -> Dict[str, Any]:
    """Send 1 + warmup + node_frames pairs of ``size`` (width, height) px through a fresh node
    one at a time, each after the previous one's outputs all came back, and summarise the
    measured ones (see ``node_row``)."""
    w, h = size
    got: Dict[Tuple[int, int], Dict[str, float]] = {}  # stamp -> topic -> receive time
    lock = threading.Lock()

    def on_out(topic: str, stamp: Tuple[int, int], t: float) -> None:
        with lock:
            got.setdefault(stamp, {})[topic] = t

    rig = NodeHarness(ctx, ns, node_params(bench), on_out)
    node = rig.node
    engine = node.engine
    replay_network(engine, bench.cached_out.get(size))
    lost = 0
    e2e: List[float] = []                 # ms from publishing the pair to its last output
    measured: List[Dict[str, float]] = []  # the node's stage times (ms) of those frames
    try:
        rig.matched()
        frames = bench.frames.get(size) or make_frames(w, h)
        for i in range(1 + bench.cfg.warmup + bench.cfg.node_frames):
            n_before = node.stats.processed
            t0 = time.perf_counter()
            key = rig.send(frames, first=i == 0)
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
        rig.close()
    return node_row(bench, size, engine.precision_name, measured, e2e, lost)


def node_row(bench: Bench, size: Tuple[int, int], precision: str, measured: List[Dict[str, float]],
             e2e: List[float], lost: int) -> Dict[str, Any]:
    """The report row of one size from the measured frames' stage times and end-to-end
    times (ms): mean and p95 per stage, the overhead (total - model), the part of it in the
    inference thread (``serial_overhead_ms``: total - model - handoff - postprocess_numpy -
    publish; the numpy outputs and the messages are built in a thread of their own, beside the
    next frame's network, so only this part adds to the frame period), the DDS and executor time (end-to-end - total), and with the model
    section's time the shares of a frame and the node's estimated rate (Hz) and latency (ms)."""
    w, h = size
    st = {k: summarize([s.get(k, 0.0) for s in measured]) if measured else None for k in STAGES}
    overhead = [s["total"] - s.get("model", 0.0) for s in measured]
    serial = [s["total"] - s.get("model", 0.0) - s.get("publish", 0.0) - s.get("handoff", 0.0)
              - s.get("postprocess_numpy", 0.0) for s in measured]
    row: Dict[str, Any] = {"size": f"{w}x{h}", "frames": len(measured), "lost": lost,
                           "precision": precision,
                           "stages_ms": {k: (v["mean_ms"] if v else None) for k, v in st.items()},
                           "stages_p95_ms": {k: (v["p95_ms"] if v else None) for k, v in st.items()}}
    if measured:
        ov, se = summarize(overhead), summarize(serial)
        ee = summarize(e2e)
        model = bench.auto_model_ms(size)
        row.update({"overhead_ms": ov["mean_ms"], "overhead_p95_ms": ov["p95_ms"],
                    "serial_overhead_ms": se["mean_ms"],
                    "e2e_without_model_ms": ee["mean_ms"], "e2e_without_model_p95_ms": ee["p95_ms"],
                    "transport_ms": ee["mean_ms"] - st["total"]["mean_ms"],  # DDS in + out, executor
                    "model_ms": model})
        if model:
            frame = model + ov["mean_ms"]
            row["overhead_pct_of_frame"] = 100.0 * ov["mean_ms"] / frame
            period = max(model + se["mean_ms"], ov["mean_ms"] - se["mean_ms"])  # two stages in flight
            row["serial_overhead_pct_of_period"] = 100.0 * se["mean_ms"] / period
            row["est_node_hz"] = 1e3 / period
            row["est_e2e_latency_ms"] = model + ee["mean_ms"]
        bench.log(f"  node {w}x{h}: overhead {ov['mean_ms']:.1f} ms/frame "
                  f"(decode {st['decode']['mean_ms']:.1f}, engine pre {st['preprocess']['mean_ms']:.1f}, "
                  f"engine post {st['postprocess']['mean_ms']:.1f}, numpy post "
                  f"{st['postprocess_numpy']['mean_ms']:.1f}, publish {st['publish']['mean_ms']:.1f}); "
                  f"DDS+executor {row['transport_ms']:.1f} ms; in the inference thread {se['mean_ms']:.1f} ms" +
                  (f" ({row['serial_overhead_pct_of_period']:.1f}% of the frame period)" if model else ""))
    return row
