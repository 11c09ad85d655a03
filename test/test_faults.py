"""Fault injection: every kind of bad input, interleaved with good pairs, into the real node.

The node runs in this process (so a fault-injecting engine subclass can stand in for a CUDA
out-of-memory), but everything is observed the way an operator would: outputs and
/diagnostics (DiagnosticArray) through real subscriptions, and the node's log lines through
/rosout (rcl_interfaces/Log). Each bad pair must be dropped and counted under its reason,
logged with a message naming the problem, and never stop the good pairs that follow from
producing the same outputs as the pipeline computes offline.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any, List, Optional

import numpy as np
import pytest
import torch
from rclpy.parameter import Parameter

from helpers import Collector, Spinner, camera_infos, image_msg, shifted_pair, to_encoding, wait_for
from robust_helpers import DiagReader, RosoutReader, input_publishers
from stereonet_ros.engine import StereoEngine
from stereonet_ros.node import StereoNetNode, build_engine
from stereonet_ros.pipeline import process_pair
from stereonet_ros.stats import DROP_REASONS

W, H, FX, BASELINE = 96, 64, 200.0, 0.1
ERROR = 40  # rcl_interfaces/Log.ERROR


class FaultyEngine(StereoEngine):
    """A real engine whose network stage raises the armed exception on its next frame (fault
    injection: a CUDA OOM cannot be provoked on a CPU-only machine); ``infer`` handles it as
    it would a real one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.armed: List[BaseException] = []

    def forward(self, *args: Any, **kwargs: Any):
        if self.armed:
            raise self.armed.pop(0)
        return super().forward(*args, **kwargs)


class Suite:
    """One node, its publishers and readers, and the expected counters."""

    def __init__(self, ros: Any, ckpt: Any) -> None:
        self.ns = "/faults"
        over = [Parameter("checkpoint", value=str(ckpt)), Parameter("diagnostics_period", value=0.1),
                Parameter("max_image_pixels", value=10_000), Parameter("camera_info_timeout", value=1.0)]
        self.node = StereoNetNode(namespace=self.ns, parameter_overrides=over)
        self.test = ros.create_node("fault_tester", namespace=self.ns)
        self.out = Collector(self.test, self.ns)
        self.diag = DiagReader(self.test)
        self.log = RosoutReader(self.test)
        self.pubs = input_publishers(self.test, self.ns, reliable=True)
        self.spin = Spinner(self.node, self.test)
        self.stamp = 1_000 * 10**9
        self.expect: Counter = Counter()
        self.good: List[tuple] = []      # (stamp, left msg, right msg, infos) of good pairs
        self.left_rgb, self.right_rgb = shifted_pair(H, W, 6, seed=11)
        assert wait_for(lambda: all(p.get_subscription_count() >= 1 for p in self.pubs.values()), 10)
        assert wait_for(lambda: self.diag.status() is not None, 10)

    def next_stamp(self, step: float = 0.1) -> int:
        self.stamp += int(step * 1e9)
        return self.stamp

    def infos(self, stamp: int, **kw: Any):
        return camera_infos(kw.pop("w", W), kw.pop("h", H), kw.pop("fx", FX), kw.pop("baseline", BASELINE),
                            stamp_ns=stamp, **kw)

    def send_infos(self, infos: Any) -> None:
        """Publish a camera_info pair and wait until the node holds it, so the next pair
        is judged against it (the topics are independent)."""
        def held() -> bool:  # by stamp (unique per send): a NaN field never compares equal
            return all(m is not None and m.header.stamp == i.header.stamp
                       for m, i in zip((self.node.cameras.latest("left"), self.node.cameras.latest("right")), infos))

        for _ in range(10):  # the inputs are best effort: re-send if one was lost
            self.pubs["left/camera_info"].publish(infos[0])
            self.pubs["right/camera_info"].publish(infos[1])
            if wait_for(held, 1.0):
                return
        raise AssertionError("camera_info never reached the node")

    def send(self, left: Any, right: Any, infos: Optional[Any] = None) -> None:
        if infos is not None:
            self.send_infos(infos)
        self.pubs["left/image_rect"].publish(left)
        self.pubs["right/image_rect"].publish(right)

    def good_pair(self, enc: str = "rgb8") -> int:
        s = self.next_stamp()
        left = image_msg(to_encoding(self.left_rgb, enc), enc, s)
        right = image_msg(to_encoding(self.right_rgb, enc), enc, s, "right_optical")
        infos = self.infos(s)
        self.send(left, right, infos)
        assert wait_for(lambda: s in self.out_stamps(), 20), f"no output for a good pair\n{self.diag.values()}"
        self.good.append((s, left, right, infos))
        return s

    def camera_level(self, level: int, infos: Any, **values: str) -> bool:
        """Wait for the camera_info status ``level`` (and key/values) while ``infos`` stay
        current: re-sent, so a slow machine never sees them go stale (camera_info_timeout 1 s)."""
        def ok() -> bool:
            v = self.diag.values("camera_info")
            return self.diag.level("camera_info") == level and all(v.get(k) == x for k, x in values.items())

        for _ in range(10):
            self.send_infos(infos)
            if wait_for(ok, 0.5):
                return True
        return False

    def out_stamps(self) -> List[int]:
        with self.out.lock:
            return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in self.out.msgs["disparity"]]

    def bad_pair(self, reason: str, log_text: str, left: Any, right: Any, infos: Optional[Any] = None) -> None:
        self.send(left, right, infos)
        self.expect[reason] += 1
        want = self.expect[reason]
        assert self.diag.wait_value(f"dropped {reason}", lambda v: int(v) == want), \
            (reason, self.diag.values())
        assert self.log.wait(log_text), (log_text, [m.msg for m in self.log.lines][-5:])

    def close(self) -> None:
        self.spin.close()
        self.node.destroy_node()
        self.test.destroy_node()


def _msg(arr: np.ndarray, enc: str, stamp: int, **fields: Any):
    m = image_msg(arr, enc, stamp)
    for k, v in fields.items():
        setattr(m, k, v)
    return m


@pytest.fixture
def suite(ros, tiny_checkpoint):
    s = Suite(ros, tiny_checkpoint)
    yield s
    s.close()


def test_bad_inputs_are_counted_logged_and_never_stop_good_pairs(suite):
    s = suite
    rgb_l, rgb_r = to_encoding(s.left_rgb, "rgb8"), to_encoding(s.right_rgb, "rgb8")
    workers_before = [t for t in threading.enumerate() if t.name in ("stereonet-inference", "stereonet-publish")]
    assert len(workers_before) == 2

    # No camera_info ever received: dropped, and the camera_info status says so.
    t = s.next_stamp()
    s.bad_pair("camera_info_missing", "no left/camera_info received yet", image_msg(rgb_l, "rgb8", t),
               image_msg(rgb_r, "rgb8", t))
    assert s.diag.level("camera_info") == 2  # ERROR
    s.good_pair()

    # Encodings: unsupported, and left/right disagreeing.
    t = s.next_stamp()
    bayer = np.zeros((H, W), np.uint8)
    s.bad_pair("bad_encoding", "unsupported encoding 'bayer_rggb8'",
               _msg(bayer, "mono8", t, encoding="bayer_rggb8"), _msg(bayer, "mono8", t, encoding="bayer_rggb8"),
               s.infos(t))
    s.good_pair()
    t = s.next_stamp()
    s.bad_pair("bad_encoding", "left encoding 'rgb8' differs from right 'mono8'", image_msg(rgb_l, "rgb8", t),
               image_msg(to_encoding(s.right_rgb, "mono8"), "mono8", t), s.infos(t))

    # Sizes: left/right, image/camera_info, zero, over max_image_pixels.
    t = s.next_stamp()
    s.bad_pair("bad_size", "left image 96x64 and right 80x64 differ in size", image_msg(rgb_l, "rgb8", t),
               image_msg(rgb_r[:, :80], "rgb8", t), s.infos(t))
    s.good_pair("mono16")
    t = s.next_stamp()
    s.bad_pair("bad_size", "camera_info is 128x96 but the images are 96x64", image_msg(rgb_l, "rgb8", t),
               image_msg(rgb_r, "rgb8", t), s.infos(t, w=128, h=96))
    t = s.next_stamp()
    empty = np.zeros((0, 0, 3), np.uint8)
    s.bad_pair("bad_size", "image has zero size 0x0", image_msg(empty, "rgb8", t), image_msg(empty, "rgb8", t),
               s.infos(t))
    t = s.next_stamp()
    big = np.zeros((100, 200, 3), np.uint8)
    s.bad_pair("bad_size", "image 200x100 exceeds the limit of 10000 pixels", image_msg(big, "rgb8", t),
               image_msg(big, "rgb8", t), s.infos(t, w=200, h=100))
    s.good_pair()

    # Step and data length inconsistent with height x width x channels.
    t = s.next_stamp()
    short = image_msg(rgb_l, "rgb8", t)
    short.data = short.data[:-100]
    s.bad_pair("bad_data", f"data has {W * H * 3 - 100} bytes, expected step*height", short,
               image_msg(rgb_r, "rgb8", t), s.infos(t))
    t = s.next_stamp()
    narrow = [_msg(a, "rgb8", t) for a in (rgb_l, rgb_r)]
    for m in narrow:
        m.step, m.data = W * 3 - 3, m.data[: (W * 3 - 3) * H]
    s.bad_pair("bad_data", f"step {W * 3 - 3} is smaller than one row", *narrow, s.infos(t))
    s.good_pair("bgr8")

    # NaN / inf in a float image.
    t = s.next_stamp()
    grey = to_encoding(s.left_rgb, "32FC1")
    nan = grey.copy()
    nan[3, 4], nan[10, 10] = np.nan, np.inf
    s.bad_pair("bad_values", "32FC1 image contains 2 NaN/inf value(s)", image_msg(nan, "32FC1", t),
               image_msg(to_encoding(s.right_rgb, "32FC1"), "32FC1", t), s.infos(t))
    s.good_pair("32FC1")

    # Rectified images with the raw calibration in camera_info (D != 0, R != I: what
    # image_proc's rectify republishes) and a valid P: processed, no warning, camera OK.
    t = s.next_stamp()
    li, ri = s.infos(t)
    li.d = [0.1, -0.05, 0.0, 0.0, 0.0]
    c, sn = math.cos(0.1), math.sin(0.1)
    ri.r = [c, 0.0, sn, 0.0, 1.0, 0.0, -sn, 0.0, c]
    s.send(image_msg(rgb_l, "rgb8", t), image_msg(rgb_r, "rgb8", t), (li, ri))
    assert wait_for(lambda: t in s.out_stamps(), 20), "a raw calibration next to rectified images must not drop"
    assert s.camera_level(0, (li, ri), **{"raw D/R left": "True", "raw D/R right": "True"}), \
        s.diag.status("camera_info")
    assert s.diag.int_value("event camera_info_warning") == 0
    assert not s.log.matching("camera_info looks wrong") and not s.log.matching("distortion"), \
        [m.msg for m in s.log.lines][-5:]
    s.good_pair()

    # Left/right rectified intrinsics that disagree (cy 3 px apart): a warning and an
    # event, the frame is still processed.
    t = s.next_stamp()
    li, ri = s.infos(t)
    ri.p = list(ri.p[:6]) + [ri.p[6] + 3.0] + list(ri.p[7:])
    s.send(image_msg(rgb_l, "rgb8", t), image_msg(rgb_r, "rgb8", t), (li, ri))
    assert wait_for(lambda: t in s.out_stamps(), 20), "disagreeing intrinsics must not drop the frame"
    assert s.log.wait("left/right rectified fy, cy disagree")
    assert s.diag.wait_value("event camera_info_warning", lambda v: int(v) == 1)
    assert s.camera_level(1, (li, ri), **{"intrinsics agree": "False"}), s.diag.status("camera_info")
    s.good_pair()

    # Bad geometry: the same broken calibration on many frames is logged once, as an error.
    for _ in range(4):
        t = s.next_stamp()
        s.bad_pair("bad_geometry", "baseline 0 m from right P[0,3]",
                   image_msg(rgb_l, "rgb8", t), image_msg(rgb_r, "rgb8", t), s.infos(t, baseline=0.0))
    assert len(s.log.matching("baseline 0 m from right", min_level=ERROR)) == 1
    # Report periods with only dropped pairs and no output are an ERROR, naming the reason.
    with s.diag.lock:
        assert any(n == "pipeline" and lv == 2 and "no output" in m and "bad_geometry" in m
                   for n, lv, m in s.diag.history), s.diag.history[-5:]
    assert s.camera_level(2, s.infos(t, baseline=0.0), **{"baseline plausible": "False",
                                                          "baseline sign": "zero/invalid"})
    for kw, text in (({"baseline": -0.1}, "baseline -0.1 m from right"), ({"fx": float("nan")}, "NaN or inf"),
                     ({"fx": 0.0}, "focal length must be positive"), ({"baseline": 120.0}, "implausible")):
        t = s.next_stamp()
        s.bad_pair("bad_geometry", text, image_msg(rgb_l, "rgb8", t), image_msg(rgb_r, "rgb8", t), s.infos(t, **kw))
    s.good_pair()
    assert s.camera_level(0, s.good[-1][3], **{"baseline_m": f"{BASELINE:.6f}", "intrinsics agree": "True",
                                               "resolution matches images": "True"})
    assert s.log.wait("camera_info usable again")

    # camera_info stops arriving: pairs are dropped once it is older than camera_info_timeout.
    time.sleep(1.3)
    t = s.next_stamp()
    s.bad_pair("camera_info_missing", "left/camera_info is", image_msg(rgb_l, "rgb8", t),
               image_msg(rgb_r, "rgb8", t))
    assert "camera_info_timeout 1 s" in s.log.matching("left/camera_info is")[-1]
    assert wait_for(lambda: "stale" in s.diag.status("camera_info").message, 5)
    s.good_pair()

    # Stamps go backwards (bag loop): processed, an event, and the old timeline's waiting
    # image (a left without partner) is discarded and counted as unpaired.
    t_end = s.next_stamp(5.0)
    s.pubs["left/image_rect"].publish(image_msg(rgb_l, "rgb8", t_end))
    assert wait_for(lambda: s.node.inputs.pairer.pending() == (1, 0), 5)
    s.stamp -= 60 * 10**9
    before = s.diag.int_value("event stamp_backwards")
    s.good_pair()
    s.expect["unpaired"] += 1
    assert s.diag.wait_value("dropped unpaired", lambda v: int(v) == s.expect["unpaired"])
    assert s.diag.wait_value("event stamp_backwards", lambda v: int(v) == before + 1)
    assert s.log.wait("stereo stamps went backwards")
    assert s.node.inputs.pairer.pending() == (0, 0)

    # A CUDA out-of-memory on a frame (injected) drops that frame only; so does any other
    # network failure. The injected engine is the real one otherwise.
    with s.node.switch.lock:
        s.node.switch.engine = FaultyEngine(checkpoint=str(s.node.engine.ckpt.path), loaded=s.node.engine.ckpt,
                                            backend=s.node.engine.backend, num_threads=s.node.engine.num_threads)
    s.node.engine.armed.append(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    t = s.next_stamp()
    s.bad_pair("out_of_memory", "CUDA out of memory. Tried to allocate 2.00 GiB", image_msg(rgb_l, "rgb8", t),
               image_msg(rgb_r, "rgb8", t), s.infos(t))
    s.good_pair()
    s.node.engine.armed.append(RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"))
    t = s.next_stamp()
    s.bad_pair("inference_error", "CUDNN_STATUS_INTERNAL_ERROR", image_msg(rgb_l, "rgb8", t),
               image_msg(rgb_r, "rgb8", t), s.infos(t))
    s.good_pair("rgba8")

    # A failure while building or sending a computed frame's messages (injected, in the
    # publishing thread) drops that frame only; both threads live on.
    publish = s.node.outputs.publish

    def publish_fails_once(*args: Any, **kwargs: Any) -> None:
        s.node.outputs.publish = publish
        raise RuntimeError("injected: publisher gone")

    s.node.outputs.publish = publish_fails_once
    t = s.next_stamp()
    s.bad_pair("publish_error", "injected: publisher gone", image_msg(rgb_l, "rgb8", t),
               image_msg(rgb_r, "rgb8", t), s.infos(t))
    s.good_pair()

    # The node is alive, every counter is exact, and the good pairs' outputs are right.
    assert all(t.is_alive() for t in workers_before)
    n_good = len(s.good)
    assert s.diag.wait_value("processed", lambda v: int(v) == n_good + 2)  # + raw D/R and cy-disagree frames
    values = s.diag.values()
    for reason in DROP_REASONS:
        assert int(values[f"dropped {reason}"]) == s.expect[reason], (reason, values)
    assert int(values["dropped total"]) == sum(s.expect.values())
    for stage in ("decode", "model", "publish", "handoff", "total", "queue_wait"):
        assert f"latency_ms {stage}" in values
    by_stamp = {}
    with s.out.lock:
        for d, z in zip(s.out.msgs["disparity"], s.out.msgs["depth"]):
            by_stamp[d.header.stamp.sec * 10**9 + d.header.stamp.nanosec] = (d, z)
    # built as the node builds its engine (backend, precision, threads): bf16 results of two
    # backends, or of one with other thread counts, differ by the last bf16 bit (1/8 px at 30)
    engine = build_engine(s.node.switch.current()[1])
    for stamp, left, right, infos in s.good:
        d, z = by_stamp[stamp]
        expect = process_pair(engine, left, right, infos[0], infos[1], s.node.options, 10_000)
        got = np.frombuffer(d.image.data, np.float32).reshape(H, W)
        np.testing.assert_allclose(got, expect.disparity, atol=1e-4, err_msg=f"stamp {stamp}")
        depth = np.frombuffer(z.data, np.float32).reshape(H, W)
        np.testing.assert_array_equal(np.isnan(depth), np.isnan(expect.depth))
        ok = ~np.isnan(depth)
        np.testing.assert_allclose(depth[ok], FX * BASELINE / got[ok], rtol=1e-5)

    # Clean stop: the worker thread ends with the node.
    s.close()
    assert wait_for(lambda: not any(t.is_alive() for t in workers_before), 5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_falls_back_to_cpu_with_a_warning(ros, tiny_checkpoint):
    ns = "/fallback"
    test = ros.create_node("fallback_tester", namespace=ns)
    log = RosoutReader(test)
    diag = DiagReader(test)
    node = StereoNetNode(namespace=ns, parameter_overrides=[
        Parameter("checkpoint", value=str(tiny_checkpoint)), Parameter("device", value="cuda"),
        Parameter("diagnostics_period", value=0.1)])
    spin = Spinner(node, test)
    try:
        assert node.engine.device.type == "cpu"
        assert log.wait("device 'cuda' requested but CUDA is unavailable: running on the CPU")
        assert wait_for(lambda: diag.level("device") == 1, 10), diag.status("device")
        dev = diag.values("device")
        from stereonet_ros.engine import cpu_has_native_bf16
        cpu_auto = "bf16" if cpu_has_native_bf16() else "fp32"   # precision auto on the CPU
        assert (dev["requested"], dev["device"], dev["precision"]) == ("cuda", "cpu", cpu_auto)
        assert dev["backend"] == "openvino"  # backend auto on the CPU it fell back to
        assert diag.wait_value("event device_fallback", lambda v: int(v) == 1)
    finally:
        spin.close()
        node.destroy_node()
        test.destroy_node()


def test_cpu_or_auto_in_any_spelling_is_no_fallback(tiny_checkpoint):
    """The device parameter is validated case- and space-insensitively; 'CPU' is not a
    CUDA request that fell back (no false warning / device_fallback event)."""
    from stereonet_ros.engine import StereoEngine
    from stereonet_ros.diagnostics import fell_back_to_cpu
    engine = StereoEngine(str(tiny_checkpoint), device="cpu")
    assert not any(fell_back_to_cpu(v, engine) for v in ("cpu", " CPU ", "Auto", "auto"))
    assert fell_back_to_cpu("cuda", engine) and fell_back_to_cpu("CUDA:0", engine)
