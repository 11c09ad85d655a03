"""image_transport 'compressed' inputs: the codec, the live node (real rclpy, real DDS), bags
of CompressedImage read by the bag tools and played by the replay player."""
from __future__ import annotations

import array
import itertools

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from helpers import Collector, Spinner, camera_infos, image_msg, shifted_pair, to_encoding, wait_for
from stereonet_ros import imageconv
from stereonet_ros.tools import bag
from stereonet_ros.imageconv import ImageFormatError, compress_image, decode_compressed, image_to_numpy

_ns = itertools.count()
W, H = 96, 64
FX, BASELINE = 200.0, 0.1


class Msg:
    """A CompressedImage-shaped object (the codec needs no ROS)."""

    def __init__(self, fmt: str, data: bytes, header=None) -> None:
        self.format, self.data, self.header = fmt, data, header


# ----------------------------------------------------------------------------- codec

@pytest.mark.parametrize("enc", ["mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8"])
def test_png_is_exact_and_jpeg_close_for_every_input_encoding(enc):
    left, _ = shifted_pair(H, W, 4, seed=3)
    arr = to_encoding(left, enc)
    ref = imageconv.to_rgb_float(arr, enc)
    for codec, tol in (("png", 0.0), ("jpeg", 0.06)):
        fmt, data = compress_image(arr, enc, codec)
        assert fmt.startswith(f"{enc}; {codec} compressed ")
        assert imageconv.compressed_size(data, codec) == (W, H)   # read from the header, not decoded
        d = decode_compressed(Msg(fmt, data))
        assert (d.width, d.height) == (W, H) and d.step * d.height == d.data.size
        got = imageconv.to_rgb_float(image_to_numpy(d), d.encoding)
        if codec == "png":
            np.testing.assert_array_equal(got, ref)
        else:
            assert np.abs(got - ref).mean() < tol, np.abs(got - ref).mean()


def test_bad_compressed_data_is_refused_with_a_reason_and_a_clear_message():
    fmt, png = compress_image(np.zeros((8, 8), np.uint8), "mono8", "png")
    cases = {
        "bad_data": [Msg("png", b""), Msg("jpeg", b"\xff\xd8\xff" + b"\x00" * 64), Msg(fmt, png[:40]),
                     Msg("", b"not an image at all")],
        "bad_encoding": [Msg("h264", b"\x00\x00\x01" * 10), Msg("16UC1; compressedDepth png", b"\x00" * 12 + png)],
    }
    for reason, msgs in cases.items():
        for m in msgs:
            with pytest.raises(ImageFormatError) as e:
                decode_compressed(m)
            assert e.value.reason == reason, (m.format, str(e.value))
            assert str(e.value)
    with pytest.raises(ImageFormatError, match="compressedDepth"):
        decode_compressed(Msg("16UC1; compressedDepth png", b"\x00" * 12 + png))
    # the header's size is checked before decoding: a huge image costs no memory
    fmt, big = compress_image(np.zeros((400, 500), np.uint8), "mono8", "png")
    with pytest.raises(ImageFormatError, match="500x400 exceeds") as e:
        decode_compressed(Msg(fmt, big), max_pixels=1000)
    assert e.value.reason == "bad_size"


# ----------------------------------------------------------------------------- live node

def compressed_msg(arr: np.ndarray, enc: str, stamp: int, codec: str, frame_id: str):
    from sensor_msgs.msg import CompressedImage
    m = CompressedImage()
    m.header.stamp.sec, m.header.stamp.nanosec = divmod(int(stamp), 1_000_000_000)
    m.header.frame_id = frame_id
    fmt, data = compress_image(arr, enc, codec)
    m.format, m.data = fmt, array.array("B", data)
    return m


def start(ros, ckpt, cli_args=None, **params):
    from stereonet_ros.node import StereoNetNode
    ns = f"/cz{next(_ns)}"
    over = [Parameter("checkpoint", value=str(ckpt)), Parameter("diagnostics_period", value=0.2),
            Parameter("publish_points", value=False), Parameter("publish_color", value=False)]
    over += [Parameter(k, value=v) for k, v in params.items()]
    node = StereoNetNode(namespace=ns, parameter_overrides=over, cli_args=cli_args)
    test = ros.create_node(f"ctester{next(_ns)}", namespace=ns)
    return node, test, Collector(test, ns), Spinner(node, test), ns


def stop(node, test, spin):
    spin.close()
    node.shutdown()
    node.destroy_node()
    test.destroy_node()


def test_node_decodes_png_and_jpeg_counts_undecodable_pairs_and_follows_remaps(ros, tiny_checkpoint):
    """image_transport compressed: the node subscribes to '<remapped image topic>/compressed';
    a PNG pair gives exactly the raw pair's disparity (lossless), a JPEG pair is processed, a
    corrupt one is dropped as bad_data with the reason logged and the node goes on; switching
    back to raw at run time moves the subscriptions."""
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from stereonet_ros.pipeline import process_pair
    remap = ["--ros-args", "-r", "left/image_rect:=cam_left/image_rect", "-r", "right/image_rect:=cam_right/image_rect"]
    node, test, col, spin, ns = start(ros, tiny_checkpoint, cli_args=remap, image_transport="compressed")
    try:
        assert node.inputs.resolved()["left/image_rect"] == f"{ns}/cam_left/image_rect/compressed"
        subscribed = {name for name, types in node.get_topic_names_and_types()
                      if "sensor_msgs/msg/CompressedImage" in types}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        pubs = {"l": test.create_publisher(CompressedImage, f"{ns}/cam_left/image_rect/compressed", qos),
                "r": test.create_publisher(CompressedImage, f"{ns}/cam_right/image_rect/compressed", qos),
                "li": test.create_publisher(CameraInfo, "left/camera_info", qos),
                "ri": test.create_publisher(CameraInfo, "right/camera_info", qos)}
        assert wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 10), subscribed
        left, right = shifted_pair(H, W, 6, seed=5)
        l8, r8 = to_encoding(left, "rgb8"), to_encoding(right, "rgb8")

        def send(stamp, codec, corrupt=False):
            li, ri = camera_infos(W, H, FX, BASELINE, stamp_ns=stamp)
            pubs["li"].publish(li)
            pubs["ri"].publish(ri)
            lm = compressed_msg(l8, "rgb8", stamp, codec, "left_optical")
            if corrupt:
                lm.data = array.array("B", bytes(lm.data)[:60])   # truncated PNG
            pubs["l"].publish(lm)
            pubs["r"].publish(compressed_msg(r8, "rgb8", stamp, codec, "right_optical"))

        send(10**9, "png")
        assert wait_for(lambda: col.count("disparity") >= 1, 30), node.stats.snapshot()
        got = col.latest("disparity")
        li, ri = camera_infos(W, H, FX, BASELINE)
        want = process_pair(node.engine, image_msg(l8, "rgb8"), image_msg(r8, "rgb8"), li, ri, node.options)
        np.testing.assert_array_equal(np.frombuffer(got.image.data, np.float32).reshape(H, W), want.disparity)
        assert got.header.frame_id == "left_optical" and got.header.stamp.sec == 1

        send(2 * 10**9, "jpeg")
        assert wait_for(lambda: col.count("disparity") >= 2, 30), node.stats.snapshot()
        send(3 * 10**9, "png", corrupt=True)
        assert wait_for(lambda: node.stats.snapshot()["drops"].get("bad_data", 0) == 1, 20), node.stats.snapshot()
        assert "left compressed image" in node.stats.snapshot()["last_error"]["bad_data"]
        send(4 * 10**9, "png")  # still running
        assert wait_for(lambda: col.count("disparity") >= 3, 30), node.stats.snapshot()
        assert wait_for(lambda: col.diag_values().get("dropped bad_data") == "1", 10)
        assert node.stats.total_drops == 1

        # back to raw at run time: Image on the remapped raw topics
        assert node.set_parameters([Parameter("image_transport", value="raw")])[0].successful
        assert node.inputs.resolved()["left/image_rect"] == f"{ns}/cam_left/image_rect"
        raw = {"l": test.create_publisher(Image, f"{ns}/cam_left/image_rect", qos),
               "r": test.create_publisher(Image, f"{ns}/cam_right/image_rect", qos)}
        assert wait_for(lambda: all(p.get_subscription_count() >= 1 for p in raw.values()), 10)
        assert wait_for(lambda: pubs["l"].get_subscription_count() == 0, 10)   # the compressed one is gone
        li, ri = camera_infos(W, H, FX, BASELINE, stamp_ns=5 * 10**9)
        pubs["li"].publish(li)
        pubs["ri"].publish(ri)
        raw["l"].publish(image_msg(l8, "rgb8", 5 * 10**9))
        raw["r"].publish(image_msg(r8, "rgb8", 5 * 10**9, "right_optical"))
        assert wait_for(lambda: col.count("disparity") >= 4, 30), node.stats.snapshot()
        np.testing.assert_array_equal(np.frombuffer(col.latest("disparity").image.data, np.float32).reshape(H, W),
                                      want.disparity)
    finally:
        stop(node, test, spin)


def test_image_transport_is_validated(ros, tiny_checkpoint):
    from stereonet_ros.node import StartupError
    from stereonet_ros.params import validate
    assert validate("image_transport", "compressed") is None
    assert "must be one of raw, compressed" in str(validate("image_transport", "theora"))
    with pytest.raises(StartupError, match="image_transport"):
        start(ros, tiny_checkpoint, image_transport="theora")


# ----------------------------------------------------------------------------- bags

BW, BH = 64, 48


def write_compressed_bag(path, codec, n=3, storage="sqlite3"):
    topics = bag.StereoTopics()
    pairs = []
    with bag.BagWriter(path, storage) as w:
        for i in range(n):
            left, right = shifted_pair(BH, BW, 4 + i, seed=i)
            l8, r8 = to_encoding(left, "rgb8"), to_encoding(right, "rgb8")
            pairs.append((l8, r8))
            s = 10**18 + i * 10**8
            li, ri = bag.make_camera_info(BW, BH, 120.0, 0.1), bag.make_camera_info(BW, BH, 120.0, 0.1, right=True)
            bag.write_stereo_frame(w, topics, s, l8, r8, "rgb8", li, ri, codec=codec,
                                   gt_disparity=np.full((BH, BW), 4.0 + i, np.float32))
    return pairs


@pytest.mark.parametrize("storage", bag.STORAGES)
def test_bag_reader_decodes_compressed_images_found_under_the_compressed_topic(tmp_path, storage):
    pairs = write_compressed_bag(tmp_path / "b", "png", storage=storage)
    topics = dict(bag.bag_topics(bag.open_bag(tmp_path / "b")))
    assert topics["/left/image_rect/compressed"] == bag.COMPRESSED_IMAGE and "/left/image_rect" not in topics
    rep = bag.PairingReport()
    frames = list(bag.read_stereo_frames(tmp_path / "b", report=rep))   # default topics: /left/image_rect
    assert rep.image_topics == ("/left/image_rect/compressed", "/right/image_rect/compressed")
    assert len(frames) == 3 and rep.compressed_images == 6 and rep.undecodable_images == 0
    for f, (l8, r8) in zip(frames, pairs):
        assert f.left.__msgtype__ == bag.IMAGE and f.left.header.frame_id == "left_optical"
        np.testing.assert_array_equal(imageconv.to_rgb8(image_to_numpy(f.left), f.left.encoding), l8)
        np.testing.assert_array_equal(imageconv.to_rgb8(image_to_numpy(f.right), f.right.encoding), r8)
        assert f.gt_disparity is not None and not f.problems
    # JPEG bags read too (lossy), and a wrong type is still named
    write_compressed_bag(tmp_path / "j", "jpeg", n=1, storage=storage)
    (f,) = bag.read_stereo_frames(tmp_path / "j")
    assert np.abs(imageconv.to_rgb8(image_to_numpy(f.left), f.left.encoding).astype(int) - pairs[0][0]).mean() < 12


def test_evaluate_on_a_compressed_bag_counts_an_undecodable_frame_and_evaluates_the_rest(tiny_checkpoint, tmp_path):
    from stereonet_ros.engine import StereoEngine
    from stereonet_ros.tools.evaluate import EvalOptions, evaluate_frames
    pairs = write_compressed_bag(tmp_path / "b", "png")
    # the same frames again with frame 1's left image corrupted
    with bag.BagWriter(tmp_path / "bad", "sqlite3") as w:
        for conn_topic, t_ns, msg in bag.read_messages(tmp_path / "b"):
            if conn_topic == "/left/image_rect/compressed" and t_ns == 10**18 + 10**8:
                msg.data = msg.data[:50]
            w.write(conn_topic, msg, t_ns)
    engine = StereoEngine(str(tiny_checkpoint), "cpu")
    rep = bag.PairingReport()
    result = evaluate_frames(engine, bag.read_stereo_frames(tmp_path / "bad", report=rep),
                             EvalOptions(progress=False, warmup=False), rep)
    assert rep.undecodable_images == 1 and any("did not decode" in w for w in rep.warnings())
    statuses = [r["status"] for r in result["per_frame"]]
    assert statuses == ["ok", "failed", "ok"], result["per_frame"]
    bad = result["per_frame"][1]
    assert bad["reason"] == "bad_data" and "left compressed image" in bad["message"]
    # the decoded frames give what the raw images give
    from stereonet_ros.pipeline import OutputOptions, process_pair
    li, ri = bag.make_camera_info(BW, BH, 120.0, 0.1), bag.make_camera_info(BW, BH, 120.0, 0.1, right=True)
    (f0, *_) = bag.read_stereo_frames(tmp_path / "b")
    a = process_pair(engine, f0.left, f0.right, li, ri, OutputOptions())
    b = process_pair(engine, bag.make_image(pairs[0][0], "rgb8", 0, "l"), bag.make_image(pairs[0][1], "rgb8", 0, "r"),
                     li, ri, OutputOptions())
    np.testing.assert_array_equal(a.disparity, b.disparity)


def test_replay_plays_a_compressed_bag_into_the_node(ros, tiny_checkpoint, tmp_path):
    """BagPlayer publishes the bag's CompressedImage topics as they are; the node with
    image_transport compressed in the root namespace pairs and processes every frame."""
    from stereonet_ros.node import StereoNetNode
    from stereonet_ros.tools.replay import BagPlayer, counted_image_topic
    write_compressed_bag(tmp_path / "b", "jpeg", n=3)
    ns = f"/czr{next(_ns)}"
    node = StereoNetNode(namespace=ns, parameter_overrides=[
        Parameter("checkpoint", value=str(tiny_checkpoint)), Parameter("image_transport", value="compressed"),
        Parameter("publish_points", value=False)])
    test = ros.create_node(f"cplayer{next(_ns)}")
    col = Collector(test, ns)
    spin = Spinner(node, test)
    try:
        remap = {t: f"{ns}{t}" for t in ("/left/image_rect/compressed", "/right/image_rect/compressed",
                                         "/left/camera_info", "/right/camera_info")}
        player = BagPlayer(test, tmp_path / "b", rate=5.0, topics=list(remap), remap=remap)
        left = counted_image_topic(player.publishers, "/left/image_rect")
        assert left == "/left/image_rect/compressed"
        assert player.wait_for_subscribers([left], 10)
        stats = player.play()
        assert stats.published[left] == 3
        assert wait_for(lambda: node.stats.snapshot()["processed"] + node.stats.total_drops >= 3, 30), \
            node.stats.snapshot()
        snap = node.stats.snapshot()
        assert snap["processed"] >= 1 and not {"bad_data", "bad_encoding"} & set(snap["drops"])
        assert col.count("disparity") == snap["processed"]
    finally:
        spin.close()
        node.shutdown()
        node.destroy_node()
        test.destroy_node()
