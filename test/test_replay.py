"""Live replay with real rclpy: every message arrives, in order, on time; restamping is exact."""
from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from helpers import Spinner, wait_for
from stereonet_ros.tools import bag
from stereonet_ros.tools.replay import BagPlayer, cdr_restamp, cdr_stamp, live_report, OutputRecorder

_ns = itertools.count()
N, PERIOD_NS = 12, 100_000_000   # 12 frames recorded 100 ms apart (10 Hz)
T0 = 1_600_000_000_000_000_000


def write_bag(path, storage="sqlite3"):
    topics = bag.StereoTopics()
    with bag.BagWriter(path, storage) as w:
        for i in range(N):
            left = np.full((6, 8), i, np.uint8)
            li, ri = bag.make_camera_info(8, 6, 50, 0.1), bag.make_camera_info(8, 6, 50, 0.1, right=True)
            bag.write_stereo_frame(w, topics, T0 + i * PERIOD_NS, left, left + 100, "mono8", li, ri)
    return topics


class Sub:
    """Keeps (arrival monotonic s, message) per topic."""

    def __init__(self, node, topics):
        from sensor_msgs.msg import CameraInfo, Image
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.got = {t: [] for t in topics}
        self.lock = threading.Lock()
        self.subs = [node.create_subscription(CameraInfo if "info" in t else Image, t,
                                              lambda m, t=t: self._cb(t, m), qos) for t in topics]

    def _cb(self, t, m):
        with self.lock:
            self.got[t].append((time.monotonic(), m))


@pytest.mark.parametrize("storage", bag.STORAGES)
def test_replay_delivers_everything_in_order_with_recorded_timing(ros, tmp_path, storage):
    topics = write_bag(tmp_path / "b", storage)
    ns = f"/rp{next(_ns)}"
    node = ros.create_node(f"player{next(_ns)}")
    rx = ros.create_node(f"rx{next(_ns)}")
    remap = {t: ns + t for t in topics.required}
    sub = Sub(rx, list(remap.values()))
    spin = Spinner(node, rx)
    try:
        player = BagPlayer(node, tmp_path / "b", rate=2.0, restamp=True, remap=remap, keep_log=True)
        assert player.wait_for_subscribers(list(topics.required), 10)
        t_start = time.monotonic()
        stats = player.play()
        assert wait_for(lambda: all(len(v) == N for v in sub.got.values()), 10), {k: len(v) for k, v in sub.got.items()}
        assert all(stats.published[t] == N for t in topics.required)
        # rate 2: 11 periods of 100 ms play in 550 ms; tolerances allow a loaded 2-core CI machine
        assert stats.wall_s == pytest.approx((N - 1) * PERIOD_NS / 2e9, abs=0.15)
        assert np.median(stats.late_ms) < 20 and max(stats.late_ms) < 150, stats.late_ms
        left = sub.got[ns + topics.left]
        # in order, the exact pixels, and the same new stamp as the right image and camera_infos
        assert [int(m.data[0]) for _, m in left] == list(range(N))
        new = [bag.stamp_ns(m) for _, m in left]
        assert new == sorted(new) and len(set(new)) == N
        for t in (topics.right, topics.left_info, topics.right_info):
            assert [bag.stamp_ns(m) for _, m in sub.got[ns + t]] == new
        assert [player.stamp_map[s] for s in new] == [T0 + i * PERIOD_NS for i in range(N)]
        # restamped to the publish time: within a few ms of the wall clock at publishing
        pub_wall = [w for (t, w, _n, _o) in stats.log if t == topics.left]
        assert np.max(np.abs(np.array(pub_wall) - np.array(new))) < 100e6
        # arrival spacing follows the recording at rate 2 (50 ms) within tolerance
        arr = np.array([a for a, _ in left]) - t_start
        expect = np.arange(N) * PERIOD_NS / 2e9
        err = np.abs((arr - arr[0]) - expect)
        assert np.median(err) < 0.03 and np.max(err) < 0.15, arr - arr[0]
    finally:
        spin.close()
        node.destroy_node()
        rx.destroy_node()


def test_no_restamp_start_offset_and_loop(ros, tmp_path):
    topics = write_bag(tmp_path / "b")
    ns = f"/rp{next(_ns)}"
    node = ros.create_node(f"player{next(_ns)}")
    rx = ros.create_node(f"rx{next(_ns)}")
    remap = {topics.left: ns + topics.left}
    sub = Sub(rx, [ns + topics.left])
    spin = Spinner(node, rx)
    try:
        # skip the first 6 frames (0.6 s), play 8x fast, two passes
        player = BagPlayer(node, tmp_path / "b", rate=8.0, loop=True, start_offset=0.6 - 1e-6, restamp=False,
                           topics=[topics.left], remap=remap)
        assert player.wait_for_subscribers([topics.left], 10)
        th = threading.Thread(target=player.play)
        th.start()
        assert wait_for(lambda: len(sub.got[ns + topics.left]) >= 12, 10)
        player.stop()
        th.join(5)
        assert not th.is_alive()
        stamps = [bag.stamp_ns(m) for _, m in sub.got[ns + topics.left]][:12]
        one_pass = [T0 + i * PERIOD_NS for i in range(6, N)]
        assert stamps == one_pass + one_pass   # original stamps, twice
    finally:
        spin.close()
        node.destroy_node()
        rx.destroy_node()


def test_cdr_restamp_is_exact_for_rclpy():
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    msg = bag.make_image(np.arange(12, dtype=np.uint8).reshape(3, 4), "mono8", 5 * 10**9 + 7, "cam")
    raw = bag.typestore().serialize_cdr(msg, bag.IMAGE)
    assert cdr_stamp(raw) == 5 * 10**9 + 7
    out = deserialize_message(cdr_restamp(raw, 123 * 10**9 + 456), Image)
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (123, 456, "cam")
    assert list(out.data) == list(range(12)) and out.encoding == "mono8"


def test_missing_topic_and_bad_rate_are_clear(ros, tmp_path):
    write_bag(tmp_path / "b")
    node = ros.create_node(f"player{next(_ns)}")
    try:
        with pytest.raises(bag.BagError, match=r"/nope.*the bag has.*/left/image_rect"):
            BagPlayer(node, tmp_path / "b", topics=["/nope"])
        with pytest.raises(ValueError, match="rate"):
            BagPlayer(node, tmp_path / "b", rate=0)
    finally:
        node.destroy_node()


def test_cli_plays_and_accepts_ros_arguments(tmp_path, ros_domain):
    """As a launch file starts it: trailing --ros-args must not upset the argument parser."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    write_bag(tmp_path / "b", "mcap")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain), PYTHONPATH=str(root))
    res = subprocess.run([sys.executable, "-m", "stereonet_ros.tools.replay", str(tmp_path / "b"), "--rate", "8",
                          "--wait-subscribers", "0", "--ros-args", "-r", "__node:=replay_cli_test"],
                         capture_output=True, text=True, timeout=60, cwd=root, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"published {4 * N} messages" in res.stdout


def test_recorder_stores_outputs_and_diagnostics_in_a_bag(ros, tmp_path):
    """What the recorder receives (node-style messages) re-reads from its bag as the same arrays."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import Header
    from stereo_msgs.msg import DisparityImage
    from stereonet_ros import messages
    ns = f"/rec{next(_ns)}"
    tx, node = ros.create_node(f"tx{next(_ns)}"), ros.create_node(f"rec{next(_ns)}")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {"disparity": tx.create_publisher(DisparityImage, ns + "/disparity", qos),
            "depth": tx.create_publisher(Image, ns + "/depth", qos),
            "points2": tx.create_publisher(PointCloud2, ns + "/points2", qos),
            "diag": tx.create_publisher(DiagnosticArray, "/diagnostics", 10)}
    writer = bag.BagWriter(tmp_path / "rec", "mcap").__enter__()
    rec = OutputRecorder(node, ns, bag_writer=writer)
    spin = Spinner(tx, node)
    rng = np.random.default_rng(0)
    disp = rng.uniform(1, 30, (6, 8)).astype(np.float32)
    pts = rng.normal(size=(6, 8, 3)).astype(np.float32)
    try:
        assert wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 10)
        hdr = Header(frame_id="left_optical")
        hdr.stamp.sec, hdr.stamp.nanosec = 42, 7
        pubs["disparity"].publish(messages.make_disparity(hdr, disp, 300.0, 0.12, 0.0, 64.0, 1e-5))
        pubs["depth"].publish(messages.make_image(hdr, 36.0 / disp, "32FC1"))
        pubs["points2"].publish(messages.make_cloud(hdr, pts, None, True))
        # The recorder keeps its node's status (by full name), not that of a node elsewhere.
        other = DiagnosticStatus(name="/elsewhere/stereonet: pipeline",
                                 values=[KeyValue(key="dropped overrun", value="99")])
        st = DiagnosticStatus(name=f"{ns}/stereonet: pipeline", values=[KeyValue(key="dropped overrun", value="3")])
        pubs["diag"].publish(DiagnosticArray(status=[st, other]))
        assert wait_for(lambda: rec.count("points2") == 1 and rec.count("depth") == 1 and rec.count("disparity") == 1
                        and rec.latest_diagnostics(), 10)
    finally:
        spin.close()
        writer.close()
        tx.destroy_node()
        node.destroy_node()
    got = {t: m for t, _ns, m in bag.read_messages(tmp_path / "rec")}
    assert set(got) >= {ns + "/disparity", ns + "/depth", ns + "/points2", "/diagnostics"}
    d = got[ns + "/disparity"]
    assert bag.stamp_ns(d) == 42 * 10**9 + 7 and d.f == pytest.approx(300.0) and d.max_disparity == 64.0
    np.testing.assert_array_equal(np.frombuffer(d.image.data, np.float32).reshape(6, 8), disp)
    np.testing.assert_array_equal(np.frombuffer(got[ns + "/depth"].data, np.float32).reshape(6, 8), 36.0 / disp)
    np.testing.assert_array_equal(bag.cloud_to_numpy(got[ns + "/points2"]), pts)
    assert got["/diagnostics"].status[0].values[0].value == "3"
    assert rec.latest_diagnostics() == {"dropped overrun": "3"}
    assert rec.disparities[42 * 10**9 + 7][0].shape == (6, 8)
