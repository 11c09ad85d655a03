"""Live replay with real rclpy: every message arrives, in order, on time; restamping is exact."""
from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from helpers import Spinner, wait_for
from stereonet_ros import bag
from stereonet_ros.replay import BagPlayer, cdr_restamp, cdr_stamp, live_report, OutputRecorder

_ns = itertools.count()
N, PERIOD_NS = 12, 50_000_000   # 12 frames recorded 50 ms apart (20 Hz)
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
        # rate 2: 11 periods of 50 ms play in 275 ms
        assert stats.wall_s == pytest.approx((N - 1) * PERIOD_NS / 2e9, abs=0.1)
        assert max(stats.late_ms) < 50
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
        assert np.max(np.abs(np.array(pub_wall) - np.array(new))) < 20e6
        # arrival spacing follows the recording (25 ms at rate 2) within tolerance
        arr = np.array([a for a, _ in left]) - t_start
        expect = np.arange(N) * PERIOD_NS / 2e9
        assert np.max(np.abs((arr - arr[0]) - expect)) < 0.06, arr - arr[0]
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
        # skip the first 6 frames (0.3 s), play 4x fast, two passes
        player = BagPlayer(node, tmp_path / "b", rate=4.0, loop=True, start_offset=0.3 - 1e-6, restamp=False,
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
    res = subprocess.run([sys.executable, "-m", "stereonet_ros.replay", str(tmp_path / "b"), "--rate", "4",
                          "--wait-subscribers", "0", "--ros-args", "-r", "__node:=replay_cli_test"],
                         capture_output=True, text=True, timeout=60, cwd=root, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"published {4 * N + 0} messages" in res.stdout
