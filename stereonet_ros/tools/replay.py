"""``stereonet-replay``: play a bag onto the ROS graph (like ``ros2 bag play``) and measure
the live node: end-to-end latency, output rate, dropped frames, accuracy vs ground truth.

Playback: every message goes out at its recorded log time, scaled by ``--rate``, after
``--start-offset`` seconds, optionally in a loop. A ROS 2 bag already holds each message
in CDR, the wire format, so it is published as is (``Publisher.publish(bytes)``): exact
and without a Python-side deserialization of big images.

Restamping (``--restamp``, default on): a message whose first field is a std_msgs/Header
gets ``header.stamp = now`` (system clock, ns) written into its CDR bytes. All messages
that shared an original stamp in one pass of the bag get the *same* new stamp, so
left/right/camera_info still pair exactly; ``BagPlayer.stamp_map`` maps new -> original
stamps for ground-truth lookup. The node stamps its outputs with the input stamp, so
``arrival - header.stamp`` at the recorder is the end-to-end latency on one clock.

Recording (``--record``): ``OutputRecorder`` subscribes to the node's disparity, depth,
points2 and /diagnostics and keeps arrival times (the middleware's reception timestamp).

Examples::

    stereonet-replay recording/ --rate 0.5 --loop
    stereonet-replay demo_bag/ --rate 0.2 --record --report out/replay/report.json
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import bag
from ..stats import percentiles, status_name
from .bag import _cdr_endian, cdr_stamp  # noqa: F401 (re-exported)
from ..imageconv import image_to_numpy
from ..messages import ros_type

#: Node output topics the recorder listens to (relative to its namespace) and their types.
RECORD_TOPICS = {"disparity": "stereo_msgs/msg/DisparityImage", "depth": "sensor_msgs/msg/Image",
                 "points2": "sensor_msgs/msg/PointCloud2"}
DIAG_TOPIC = "/diagnostics"
NODE_NAME = "stereonet"   # the node's default name; its /diagnostics statuses carry its full name


def pipeline_status_name(namespace: str = "", node_name: str = NODE_NAME) -> str:
    """Name of the node's 'pipeline' DiagnosticStatus for a node in ``namespace``."""
    ns = namespace.strip("/")
    return status_name(f"/{ns}/{node_name}" if ns else f"/{node_name}", "pipeline")


# ----------------------------------------------------------------------------- CDR stamps

def cdr_restamp(raw: bytes | memoryview, stamp: int) -> bytes:
    """Copy of a CDR message with header.stamp set to ``stamp`` ns (first field a Header).

    Header.stamp.sec (int32) and .nanosec (uint32) are the first 8 bytes after the 4-byte
    encapsulation header, 4-aligned, in every message that starts with a Header.
    """
    out = bytearray(raw)
    sec, nsec = divmod(int(stamp), 1_000_000_000)
    struct.pack_into(_cdr_endian(raw) + "iI", out, 4, sec, nsec)
    return bytes(out)


def starts_with_header(store: Any, msgtype: str) -> bool:
    """Whether ``msgtype``'s first field is a std_msgs/Header (so its stamp can be patched)."""
    fields = store.fielddefs.get(msgtype, ((), []))[1]
    return bool(fields) and fields[0][0] == "header" and fields[0][1][1] == "std_msgs/msg/Header"


# ----------------------------------------------------------------------------- player

@dataclass
class PlayStats:
    """What a playback published."""

    published: Counter = field(default_factory=Counter)        # per output topic name
    late_ms: List[float] = field(default_factory=list)          # publish time - schedule, ms
    log: List[Tuple[str, int, int, int]] = field(default_factory=list)  # (topic, wall ns, new, orig stamp)
    wall_s: float = 0.0
    loops: int = 0


class BagPlayer:
    """Publishes a ROS 2 bag's messages with their recorded timing from an rclpy node.

    ``topics``: bag topics to play (default all); ``remap``: bag topic -> published topic;
    ``qos``: the publishers' QoS (reliable, keep-last 10 by default, which also matches the
    node's best-effort subscriptions). ``play`` blocks until the end (or ``stop()``).
    """

    def __init__(self, node: Any, path: str | Path, rate: float = 1.0, loop: bool = False,
                 start_offset: float = 0.0, restamp: bool = True, topics: Optional[Sequence[str]] = None,
                 remap: Optional[Dict[str, str]] = None, qos: Any = None, keep_log: bool = False) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if start_offset < 0:
            raise ValueError(f"start offset must be >= 0 s, got {start_offset}")
        self.path, self.rate, self.loop, self.offset_ns = Path(path), rate, loop, int(start_offset * 1e9)
        self.restamp, self.keep_log = restamp, keep_log
        self._stop = threading.Event()
        self.stamp_map: Dict[int, int] = {}   # new stamp -> original stamp (restamp only)
        self.stats = PlayStats()
        reader = bag.open_bag(self.path)
        try:
            if not reader.is2:
                raise bag.BagError(f"'{path}' is a ROS 1 bag: replay needs ROS 2 (CDR) messages; convert it "
                                   "with 'rosbags-convert --src in.bag --dst out_dir'")
            have = bag.bag_topics(reader)
            missing = [t for t in (topics or []) if t not in have]
            if missing:
                listing = ", ".join(f"{t} [{ty}]" for t, ty in sorted(have.items()))
                raise bag.BagError(f"topic(s) not in the bag: {', '.join(missing)}; the bag has: {listing}")
            self.topics = {t: ty for t, ty in have.items() if not topics or t in topics}
            self.patchable = {t for t, ty in self.topics.items() if starts_with_header(reader.typestore, ty)}
            self.start_ns, self.end_ns = reader.start_time, reader.end_time
        finally:
            reader.close()
        remap = remap or {}
        qos = qos or QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = {t: node.create_publisher(ros_type(ty), remap.get(t, t), qos) for t, ty in self.topics.items()}

    @property
    def duration_s(self) -> float:
        """Seconds of bag that one pass plays (after the start offset), at rate 1."""
        return max(0, self.end_ns - self.start_ns - self.offset_ns) / 1e9

    def wait_for_subscribers(self, topics: Sequence[str], timeout: float = 30.0) -> bool:
        """Block until each given (bag) topic has a subscriber, so the first frames are not lost."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(self.publishers[t].get_subscription_count() > 0 for t in topics):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()

    def play(self) -> PlayStats:
        """Play the bag (all loops); returns the statistics (also in ``self.stats``)."""
        t_begin = time.monotonic()
        while not self._stop.is_set():
            self._play_once()
            self.stats.loops += 1
            if not self.loop:
                break
        self.stats.wall_s = time.monotonic() - t_begin
        return self.stats

    def _play_once(self) -> None:
        reader = bag.open_bag(self.path)
        first = self.start_ns + self.offset_ns
        stamps: Dict[int, int] = {}   # original -> new stamp, for this pass
        wall0: Optional[float] = None
        try:
            conns = [c for c in reader.connections if c.topic in self.topics]
            for conn, t_log, raw in reader.messages(connections=conns, start=first):
                if wall0 is None:
                    # The clock starts at the first message, not before the reader's set-up
                    # (in one clean-clone CI run the first second of an mcap bag was played
                    # 450 ms late: a stall before the first message, then catching up).
                    wall0 = time.monotonic() - (t_log - first) / 1e9 / self.rate
                due = wall0 + (t_log - first) / 1e9 / self.rate
                if self._wait_until(due):
                    return
                data = bytes(raw)
                orig = new = -1
                if conn.topic in self.patchable:
                    orig = new = cdr_stamp(data)
                    if self.restamp:
                        new = stamps.setdefault(orig, time.time_ns())
                        self.stamp_map[new] = orig
                        data = cdr_restamp(data, new)
                self.publishers[conn.topic].publish(data)
                self.stats.published[conn.topic] += 1
                self.stats.late_ms.append(1e3 * (time.monotonic() - due))
                if self.keep_log:
                    self.stats.log.append((conn.topic, time.time_ns(), new, orig))
        finally:
            reader.close()

    def _wait_until(self, due: float) -> bool:
        """Sleep until monotonic time ``due``; True when stopped meanwhile."""
        while True:
            left = due - time.monotonic()
            if left <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(left, 0.1)):
                return True


# ----------------------------------------------------------------------------- recorder

@dataclass
class Arrival:
    topic: str
    stamp: int          # header stamp, ns (restamped: the publish time of the input pair)
    arrival: int        # reception time, ns, system clock


class OutputRecorder:
    """Records the node's outputs: arrival times, header stamps, disparities, diagnostics.

    ``namespace``: the node's namespace ('' = root), ``node_name`` its name (its
    /diagnostics status is told from other nodes' by the full name). Disparities are kept decoded as
    (disparity (H, W) float32, valid mask, max_disparity) per stamp when ``keep_disparity``;
    depth and points2 are subscribed raw (only their stamps are read) to keep the
    recorder cheap on a small CPU. With ``bag_writer`` every received message (outputs and
    /diagnostics) is also stored, in CDR, at its arrival time, like ``ros2 bag record``.
    """

    def __init__(self, node: Any, namespace: str = "", keep_disparity: bool = True,
                 topics: Sequence[str] = tuple(RECORD_TOPICS), bag_writer: Optional[bag.BagWriter] = None,
                 node_name: str = NODE_NAME) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.lock = threading.Lock()
        self.arrivals: List[Arrival] = []
        self.disparities: Dict[int, Tuple[np.ndarray, np.ndarray, float]] = {}
        self.diagnostics: List[Tuple[int, Dict[str, str]]] = []  # (arrival ns, pipeline values)
        self.keep_disparity = keep_disparity
        self.pipeline_status = pipeline_status_name(namespace, node_name)
        self.bag_writer = bag_writer  # written from executor callbacks only (one thread)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        ns = namespace.rstrip("/")
        self.subs = []
        for t in topics:
            name = f"{ns}/{t}" if ns else t
            raw = t != "disparity"
            self.subs.append(node.create_subscription(
                ros_type(RECORD_TOPICS[t]), name, self._callback(t, raw, name), qos, raw=raw))
        self.subs.append(node.create_subscription(ros_type("diagnostic_msgs/msg/DiagnosticArray"), DIAG_TOPIC,
                                                  self._on_diag, 50))

    def _store(self, topic: str, msgtype: str, msg: Any, arrival: int) -> None:
        if self.bag_writer is None:
            return
        from rclpy.serialization import serialize_message
        data = msg if isinstance(msg, bytes) else serialize_message(msg)
        self.bag_writer.write_raw(topic, msgtype, data, arrival)

    def _callback(self, topic: str, raw: bool, full_name: str) -> Callable[[Any, Any], None]:
        def cb(msg: Any, info: Any) -> None:
            arrival = int(info.get("received_timestamp") or 0) or time.time_ns()
            stamp = cdr_stamp(msg) if raw else bag.stamp_ns(msg)
            self._store(full_name, RECORD_TOPICS[topic], msg, arrival)
            kept = None
            if topic == "disparity" and self.keep_disparity:
                d = image_to_numpy(msg.image)  # the codec's decoder: a view, step and byte order honoured
                kept = (d, d >= msg.min_disparity, float(msg.max_disparity))
            with self.lock:
                self.arrivals.append(Arrival(topic, stamp, arrival))
                if kept is not None:
                    self.disparities[stamp] = kept
        return cb

    def _on_diag(self, msg: Any) -> None:
        self._store(DIAG_TOPIC, bag.DIAGNOSTICS, msg, time.time_ns())
        for st in msg.status:
            if st.name == self.pipeline_status:
                with self.lock:
                    self.diagnostics.append((time.time_ns(), {kv.key: kv.value for kv in st.values}))

    def count(self, topic: str) -> int:
        with self.lock:
            return sum(1 for a in self.arrivals if a.topic == topic)

    def latest_diagnostics(self) -> Dict[str, str]:
        with self.lock:
            return dict(self.diagnostics[-1][1]) if self.diagnostics else {}

    def wait_settled(self, expected: int, quiet_s: float = 3.0, timeout: float = 60.0,
                     need_diag_after: bool = True) -> None:
        """Wait until ``expected`` disparities arrived, or none arrived for ``quiet_s`` s
        (the node's drops mean fewer come), then for one more /diagnostics (final counters)."""
        end = time.monotonic() + timeout
        last_n, last_change = -1, time.monotonic()
        while time.monotonic() < end:
            n = self.count("disparity")
            if n >= expected:
                break
            if n != last_n:
                last_n, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                break
            time.sleep(0.05)
        if need_diag_after:
            t0 = time.time_ns()
            while time.monotonic() < end:
                with self.lock:
                    if self.diagnostics and self.diagnostics[-1][0] > t0:
                        return
                time.sleep(0.05)


class Spinner:
    """Spins a SingleThreadedExecutor in a daemon thread (start with ``thread.start()``).

    Single-threaded on purpose: the multi-threaded executor lost messages and the events
    executor deadlocked when another thread published (this package's measurements).
    """

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, name="stereonet-replay-spin", daemon=True)

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.executor.shutdown()


# ----------------------------------------------------------------------------- live report

def node_drops(diag: Dict[str, str]) -> Dict[str, int]:
    """The node's own drop counters ('dropped <reason>' keys of its /diagnostics)."""
    out = {}
    for k, v in diag.items():
        if k.startswith("dropped ") and k != "dropped total":
            try:
                if int(v):
                    out[k[len("dropped "):]] = int(v)
            except ValueError:
                pass
    return out


def live_report(player: Optional[BagPlayer], recorder: OutputRecorder, left_topic: str,
                gt: Optional[Dict[int, np.ndarray]] = None) -> Dict[str, Any]:
    """Latency, output rate, drops and (with ``gt``: original stamp -> disparity) accuracy.

    Dropped = pairs published (left images) - distinct disparity stamps received; the node's
    reasons come from its last /diagnostics (they can differ by frames lost in transport, and
    the node's 'unpaired' counts images, not pairs).
    Without a ``player`` (record-only, e.g. behind ``ros2 bag play``) the published count is
    the node's own count of received left images, and latency is only meaningful if the
    player stamped the headers with the publish time.
    """
    from ..metrics import disparity_metrics, mean_metrics
    with recorder.lock:
        arrivals = list(recorder.arrivals)
        disps = dict(recorder.disparities)
    diag = recorder.latest_diagnostics()
    pub_stamps = {new for (t, _w, new, _o) in player.stats.log if t == left_topic} \
        if player is not None and player.stats.log else None
    if player is not None:
        published = player.stats.published.get(left_topic, 0)
    else:
        published = int(diag.get("received left/image_rect", 0) or 0)
    stamp_map = player.stamp_map if player is not None else {}
    by_topic: Dict[str, Any] = {}
    for topic in RECORD_TOPICS:
        arr = sorted((a for a in arrivals if a.topic == topic), key=lambda a: a.arrival)
        lat = [(a.arrival - a.stamp) / 1e6 for a in arr]
        span = (arr[-1].arrival - arr[0].arrival) / 1e9 if len(arr) > 1 else 0.0
        by_topic[topic] = {"received": len(arr), "latency_ms": percentiles(lat),
                           "rate_hz": (len(arr) - 1) / span if span > 0 else 0.0}
    got = {a.stamp for a in arrivals if a.topic == "disparity"}
    if pub_stamps is not None:
        got &= pub_stamps
    per_frame, metrics = [], []
    for stamp, (d, valid, maxd) in sorted(disps.items()):
        orig = stamp_map.get(stamp, stamp)
        g = gt.get(orig) if gt else None
        if g is not None and g.shape == d.shape:
            m = disparity_metrics(d, g, max_disparity=maxd, pred_valid=valid)
            metrics.append(m)
            per_frame.append({"stamp_ns": stamp, "original_stamp_ns": orig, "metrics": m})
    return {
        "pairs_published": published,
        "disparities_received": len(got),
        "dropped": max(0, published - len(got)),
        "node_drops_by_reason": node_drops(diag),
        "node_processed": int(diag.get("processed", 0) or 0),
        "topics": by_topic,
        "output_rate_hz": by_topic["disparity"]["rate_hz"],
        "latency_ms": by_topic["disparity"]["latency_ms"],
        "publish_late_ms": percentiles(player.stats.late_ms if player else []),
        "play_wall_s": player.stats.wall_s if player else None,
        "restamped": bool(player and player.restamp),
        "metrics": mean_metrics(metrics),
        "per_frame": per_frame,
        "node_diagnostics": diag,
    }


def load_gt(path: str | Path, topic: str) -> Dict[int, np.ndarray]:
    """original stamp -> ground-truth disparity (float32, NaN unknown) of a bag's gt topic."""
    out: Dict[int, np.ndarray] = {}
    reader = bag.open_bag(path)
    try:
        have = bag.bag_topics(reader)
        if topic not in have:
            return out
        bag.check_gt_topic_types(have, topic, None)  # BagError naming the topic and its type
    finally:
        reader.close()
    for _t, _ns, msg in bag.read_messages(path, [topic]):
        try:
            out[bag.stamp_ns(msg)] = bag.gt_disparity_from_message(msg)
        except ValueError:
            continue
    return out


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stereonet-replay", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="ROS 2 bag (sqlite3 or mcap); with --record-only: only its ground truth is read")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--start-offset", type=float, default=0.0, help="skip the first S seconds of the bag")
    p.add_argument("--topics", nargs="*", default=None, help="bag topics to play (default: all)")
    p.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    p.add_argument("--restamp", dest="restamp", action="store_true", default=True,
                   help="stamp headers with the publish time (default; needed for latency)")
    p.add_argument("--no-restamp", dest="restamp", action="store_false")
    p.add_argument("--record", action="store_true", help="record the node's outputs and report")
    p.add_argument("--record-only", action="store_true",
                   help="do not play: record the node's outputs while another player (ros2 bag play) "
                        "runs, until Ctrl-C, --duration, or --settle s without output after the first")
    p.add_argument("--duration", type=float, default=0.0, help="record-only: stop after S seconds (0 = no limit)")
    p.add_argument("--namespace", default="", help="the node's namespace (recorder)")
    p.add_argument("--node-name", default=NODE_NAME, help="the node's name (its /diagnostics status names)")
    p.add_argument("--left-topic", default="/left/image_rect",
                   help="bag topic counted as published pairs (its /compressed when only that is in the bag)")
    p.add_argument("--gt-topic", default="/gt/disparity", help="ground truth for accuracy ('' = none)")
    p.add_argument("--wait-subscribers", type=float, default=30.0,
                   help="seconds to wait for the node's subscriptions before playing (0 = don't)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds without output that end recording")
    p.add_argument("--report", default="out/replay/report.json")
    p.add_argument("--record-bag", default="", help="also store the received outputs and /diagnostics in this new bag")
    p.add_argument("--storage", default="sqlite3", choices=bag.STORAGES, help="of --record-bag")
    return p


def write_report(path: str, rep: Dict[str, Any]) -> None:
    """Write the JSON report and print its summary."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rep, indent=2, default=float))
    lat = rep["latency_ms"]
    print(f"received {rep['disparities_received']}/{rep['pairs_published']} disparities "
          f"({rep['dropped']} dropped; node: {rep['node_drops_by_reason'] or 'none'}), "
          f"{rep['output_rate_hz']:.2f} Hz" + (f", latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms"
                                               if rep["restamped"] else " (latency needs --restamp playback)"))
    if rep["metrics"]:
        print(f"accuracy: EPE {rep['metrics']['epe']:.3f} px, bad2 {rep['metrics']['bad2']:.2f} %")
    print(f"report: {path}")


def record_only(a: argparse.Namespace, node: Any, spinner: "Spinner", writer: Optional[bag.BagWriter]) -> int:
    """Record the node's outputs while another process plays the bag; then report."""
    recorder = OutputRecorder(node, a.namespace, bag_writer=writer, node_name=a.node_name)
    spinner.thread.start()
    print("recording the node's outputs (Ctrl-C ends)")
    t0 = time.monotonic()
    try:
        while not a.duration or time.monotonic() - t0 < a.duration:
            time.sleep(0.2)
            with recorder.lock:
                last = recorder.arrivals[-1].arrival if recorder.arrivals else None
            if last is not None and (time.time_ns() - last) / 1e9 > max(a.settle, 0.5):
                break
    except KeyboardInterrupt:
        pass
    gt = load_gt(a.bag, a.gt_topic) if a.gt_topic and Path(a.bag).exists() else {}
    write_report(a.report, live_report(None, recorder, a.left_topic, gt))
    return 0


def counted_image_topic(topics: Sequence[str] | Dict[str, Any], left_topic: str) -> str:
    """The bag topic whose messages count as published pairs: ``left_topic``, or
    ``<left_topic>/compressed`` when only that is in the bag (a compressed recording, played to
    a node with image_transport compressed)."""
    if left_topic not in topics and f"{left_topic}/compressed" in topics:
        return f"{left_topic}/compressed"
    return left_topic


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry ``stereonet-replay`` (also started by launch files: ROS args are accepted)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.utilities import remove_ros_args
    full = list(sys.argv) if argv is None else ["stereonet-replay", *argv]
    a = build_parser().parse_args(remove_ros_args(full)[1:])
    a.record = a.record or (bool(a.record_bag) and not a.record_only)  # a record bag implies recording
    remap = {}
    for r in a.remap:
        src, _, dst = r.partition(":=")
        if not dst:
            print(f"stereonet-replay: bad remap '{r}' (use FROM:=TO)", file=sys.stderr)
            return 2
        remap[src] = dst
    rclpy.init(args=full)
    node = rclpy.create_node("stereonet_replay")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = Spinner(executor)
    writer: Optional[bag.BagWriter] = None
    try:
        if a.record_bag:
            writer = bag.BagWriter(a.record_bag, a.storage).__enter__()
        if a.record_only:
            return record_only(a, node, spinner, writer)
        player = BagPlayer(node, a.bag, a.rate, a.loop, a.start_offset, a.restamp, a.topics, remap,
                           keep_log=a.record)
        recorder = OutputRecorder(node, a.namespace, bag_writer=writer, node_name=a.node_name) if a.record else None
        a.left_topic = counted_image_topic(player.publishers, a.left_topic)
        spinner.thread.start()
        if a.wait_subscribers > 0 and a.left_topic in player.publishers:
            if not player.wait_for_subscribers([a.left_topic], a.wait_subscribers):
                print(f"stereonet-replay: no subscriber on {a.left_topic} after {a.wait_subscribers:g} s; "
                      "playing anyway", file=sys.stderr)
        print(f"playing {a.bag}: {sum(1 for _ in player.topics)} topics, {player.duration_s:.1f} s at rate {a.rate:g}"
              + (" (loop; Ctrl-C stops)" if a.loop else ""))
        try:
            stats = player.play()
        except KeyboardInterrupt:
            stats = player.stats
        print(f"published {sum(stats.published.values())} messages in {stats.wall_s:.1f} s")
        if recorder is not None:
            recorder.wait_settled(stats.published.get(a.left_topic, 0), a.settle)
            gt = load_gt(a.bag, a.gt_topic) if a.gt_topic else {}
            write_report(a.report, live_report(player, recorder, a.left_topic, gt))
        return 0
    except (bag.BagError, ValueError) as exc:
        print(f"stereonet-replay: {exc}", file=sys.stderr)
        return 2
    finally:
        spinner.close()  # no callback writes after this
        if writer is not None:
            writer.close()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
