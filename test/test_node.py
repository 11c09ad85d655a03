"""The real node in this process with real rclpy publishers/subscribers on a private domain."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from helpers import Collector, Spinner, camera_infos, image_msg, shifted_pair, to_encoding, wait_for
from stereonet_ros.geometry import project_points
from stereonet_ros.messages import cloud_to_numpy
from stereonet_ros.node import StereoNetNode

_ns = itertools.count()
W, H = 96, 64
FX, BASELINE = 200.0, 0.1


def start(ros, ckpt, **params):
    ns = f"/cam{next(_ns)}"
    over = [Parameter("checkpoint", value=str(ckpt)), Parameter("diagnostics_period", value=0.2)]
    over += [Parameter(k, value=v) for k, v in params.items()]
    node = StereoNetNode(namespace=ns, parameter_overrides=over)
    test = ros.create_node(f"tester{next(_ns)}", namespace=ns)
    col = Collector(test, ns)
    spin = Spinner(node, test)
    return node, test, col, spin, ns


def publishers(test, reliable=False):
    from sensor_msgs.msg import CameraInfo, Image
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
    return {k: test.create_publisher(t, k, qos) for k, t in (("left/image_rect", Image), ("right/image_rect", Image),
                                                              ("left/camera_info", CameraInfo),
                                                              ("right/camera_info", CameraInfo))}


def wait_connected(pubs, n=1):
    assert wait_for(lambda: all(p.get_subscription_count() >= n for k, p in pubs.items()), 10)


def send(pubs, left, right, stamp, enc="rgb8", cx_r=None, right_stamp=None):
    li, ri = camera_infos(W, H, FX, BASELINE, cx_r=cx_r, stamp_ns=stamp)
    pubs["left/camera_info"].publish(li)
    pubs["right/camera_info"].publish(ri)
    pubs["left/image_rect"].publish(image_msg(to_encoding(left, enc), enc, stamp))
    pubs["right/image_rect"].publish(image_msg(to_encoding(right, enc), enc,
                                               stamp if right_stamp is None else right_stamp, "right_optical"))


def stop(node, test, spin):
    spin.close()
    node.shutdown()
    node.destroy_node()
    test.destroy_node()


def test_outputs_geometry_and_headers(ros, tiny_checkpoint):
    node, test, col, spin, ns = start(ros, tiny_checkpoint)
    try:
        pubs = publishers(test)
        wait_connected(pubs)
        left, right = shifted_pair(H, W, 8, seed=1)
        cx_r = (W - 1) / 2 - 3.0  # verged rectification: cx_l - cx_r = 3 px
        stamp = 1_700_000_000_123_456_789
        # camera_info first so the first pair is not dropped for a missing one
        send(pubs, left, right, stamp, cx_r=cx_r)
        outputs = ("disparity", "depth", "points2", "confidence", "disparity/color", "depth/camera_info",
                   "confidence/camera_info")
        assert wait_for(lambda: all(col.count(t) >= 1 for t in outputs), 30)
        dmsg, depth_msg, cloud = col.latest("disparity"), col.latest("depth"), col.latest("points2")
        for m in (col.latest(t) for t in outputs):
            assert m.header.frame_id == "left_optical"
            assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp
        assert dmsg.f == pytest.approx(FX)
        assert dmsg.t == pytest.approx(BASELINE)
        assert dmsg.image.encoding == "32FC1" and (dmsg.image.width, dmsg.image.height) == (W, H)
        assert dmsg.min_disparity == pytest.approx(-3.0)   # -(cx_l - cx_r)
        assert dmsg.max_disparity == pytest.approx(node.engine.max_disparity - 3.0)
        assert dmsg.delta_d == 1.0 / 16.0  # the resolution the model claims (pipeline.DISPARITY_RESOLUTION_PX)
        # valid_window: the 64 left columns, where a 64 px search leaves the right image, are out
        assert node.engine.max_disparity == 64
        vw = dmsg.valid_window
        assert (vw.x_offset, vw.y_offset, vw.width, vw.height) == (64, 0, W - 64, H)
        # depth/ and confidence/camera_info: the left camera_info that was sent, under the image's header
        sent_left, _ = camera_infos(W, H, FX, BASELINE, cx_r=cx_r, stamp_ns=stamp)
        for t in ("depth/camera_info", "confidence/camera_info"):
            info = col.latest(t)
            assert (info.width, info.height) == (W, H) and info.header == depth_msg.header
            np.testing.assert_array_equal(info.p, sent_left.p)
            np.testing.assert_array_equal(info.k, sent_left.k)
        d = np.frombuffer(dmsg.image.data, np.float32).reshape(H, W)
        z = np.frombuffer(depth_msg.data, np.float32).reshape(H, W)
        valid = d >= dmsg.min_disparity
        invalid = ~valid
        # invalid pixels are encoded below min_disparity and have NaN depth
        assert np.all(d[invalid] < dmsg.min_disparity)
        assert np.all(np.isnan(z[invalid]))
        assert valid.any(), "random weights still give some positive disparities"
        np.testing.assert_allclose(z[valid], FX * BASELINE / d[valid], rtol=1e-5)
        # cloud: organized, same Z as depth, projects back to its pixel, colour of the left image
        pts = cloud_to_numpy(cloud)
        assert (cloud.height, cloud.width) == (H, W) and [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
        np.testing.assert_array_equal(np.isnan(pts[..., 2]), np.isnan(z))
        np.testing.assert_allclose(pts[..., 2][valid], z[valid], rtol=1e-6)
        from stereonet_ros.geometry import StereoGeometry
        g = StereoGeometry(FX, FX, (W - 1) / 2, (H - 1) / 2, cx_r, BASELINE, W, H)
        vv, uu = np.nonzero(valid)
        u, v = project_points(pts[vv, uu, :3], g)
        np.testing.assert_allclose(u, uu, atol=1e-3)
        np.testing.assert_allclose(v, vv, atol=1e-3)
        rgb = pts[..., 3].copy().view(np.uint32)
        expect = to_encoding(left, "rgb8").astype(np.uint32)
        np.testing.assert_array_equal(rgb, (expect[..., 0] << 16) | (expect[..., 1] << 8) | expect[..., 2])
        conf = np.frombuffer(col.latest("confidence").data, np.float32)
        assert conf.min() >= 0 and conf.max() <= 1
        color = col.latest("disparity/color")
        assert color.encoding == "bgr8" and (color.width, color.height) == (W, H)
        assert wait_for(lambda: col.diag_values().get("processed", "0") != "0", 5)
        diag = col.diag_values()
        from stereonet_ros.engine import cpu_has_native_bf16
        assert diag["device"] == "cpu" and diag["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    finally:
        stop(node, test, spin)


@pytest.mark.parametrize("enc", ["mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8"])
def test_every_input_encoding_is_processed(ros, tiny_checkpoint, enc):
    node, test, col, spin, ns = start(ros, tiny_checkpoint, publish_points=False, publish_color=False)
    try:
        pubs = publishers(test)
        wait_connected(pubs)
        left, right = shifted_pair(H, W, 4, seed=2)
        send(pubs, left, right, 10**9, enc=enc)
        assert wait_for(lambda: col.count("disparity") >= 1, 20), node.stats.snapshot()
        assert node.stats.total_drops == 0
    finally:
        stop(node, test, spin)


def test_reliable_publishers_connect(ros, tiny_checkpoint):
    node, test, col, spin, ns = start(ros, tiny_checkpoint)
    try:
        pubs = publishers(test, reliable=True)
        wait_connected(pubs)
        left, right = shifted_pair(H, W, 4, seed=3)
        send(pubs, left, right, 2 * 10**9)
        assert wait_for(lambda: col.count("disparity") >= 1, 20)
    finally:
        stop(node, test, spin)


def test_exact_sync_rejects_mismatched_stamps_and_approximate_accepts_within_slop(ros, tiny_checkpoint):
    left, right = shifted_pair(H, W, 4, seed=4)
    node, test, col, spin, ns = start(ros, tiny_checkpoint)
    try:
        pubs = publishers(test, reliable=True)
        wait_connected(pubs)
        send(pubs, left, right, 3 * 10**9, right_stamp=3 * 10**9 + 2_000_000)  # 2 ms apart
        send(pubs, left, right, 4 * 10**9)  # exact: pairs, and the older left is discarded
        assert wait_for(lambda: col.count("disparity") >= 1, 20)
        assert wait_for(lambda: node.stats.snapshot()["drops"].get("unpaired", 0) >= 2, 5)
        stamps = [m.header.stamp.sec for m in col.msgs["disparity"]]
        assert stamps == [4]
    finally:
        stop(node, test, spin)
    node, test, col, spin, ns = start(ros, tiny_checkpoint, sync_mode="approximate", sync_slop=0.005)
    try:
        pubs = publishers(test, reliable=True)
        wait_connected(pubs)
        send(pubs, left, right, 5 * 10**9, right_stamp=5 * 10**9 + 2_000_000)   # within 5 ms slop
        assert wait_for(lambda: col.count("disparity") >= 1, 20)
        send(pubs, left, right, 6 * 10**9, right_stamp=6 * 10**9 + 20_000_000)  # 20 ms: not paired
        send(pubs, left, right, 7 * 10**9)
        assert wait_for(lambda: col.count("disparity") >= 2, 20)
        assert [m.header.stamp.sec for m in col.msgs["disparity"]] == [5, 7]
    finally:
        stop(node, test, spin)


def test_changing_sync_parameters_counts_the_images_still_waiting(ros, tiny_checkpoint):
    """Rebuilding the pairer on a runtime sync change must not lose queued images silently:
    they are counted as 'unpaired'."""
    from rclpy.parameter_client import AsyncParameterClient
    left, _ = shifted_pair(H, W, 4, seed=7)
    node, test, col, spin, ns = start(ros, tiny_checkpoint)
    try:
        pubs = publishers(test, reliable=True)
        wait_connected(pubs)
        for i in range(3):  # left images only: they wait for partners that never come
            pubs["left/image_rect"].publish(image_msg(to_encoding(left, "rgb8"), "rgb8", (10 + i) * 10**9))
        assert wait_for(lambda: node.stats.snapshot()["received"].get("left/image_rect", 0) == 3, 10)
        assert node.stats.snapshot()["drops"].get("unpaired", 0) == 0
        client = AsyncParameterClient(test, f"{ns}/stereonet")
        assert client.wait_for_services(10)
        fut = client.set_parameters([Parameter("sync_mode", value="approximate")])
        assert wait_for(fut.done, 10) and fut.result().results[0].successful
        assert node.stats.snapshot()["drops"].get("unpaired", 0) == 3
    finally:
        stop(node, test, spin)
