"""bag.py with real rosbags files: sqlite3 and MCAP round trips, ROS 1 reading, bad bags."""
from __future__ import annotations

import numpy as np
import pytest

from stereonet_ros.tools import bag

T0 = 1_650_000_000_000_000_000
PERIOD = 100_000_000  # 10 Hz
W, H = 10, 6


def frame_arrays(i: int):
    rng = np.random.default_rng(i)
    left = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    gt = rng.uniform(1, 20, (H, W)).astype(np.float32)
    gt[0, 0] = np.nan  # unknown pixel survives the trip
    return left, right, gt


def write_frames(path, storage, n=4, encoding="rgb8", topics=None, infos_after=False):
    topics = topics or bag.StereoTopics()
    with bag.BagWriter(path, storage) as w:
        for i in range(n):
            left, right, gt = frame_arrays(i)
            s = T0 + i * PERIOD
            li = bag.make_camera_info(W, H, 100.0 + i, 0.1)
            ri = bag.make_camera_info(W, H, 100.0 + i, 0.1, right=True)
            if infos_after:  # camera_info recorded after the images (still attached)
                w.write(topics.left, bag.make_image(left, encoding, s, "l"), s)
                w.write(topics.right, bag.make_image(right, encoding, s, "r"), s)
                li.header, ri.header = bag.make_header(s, "l"), bag.make_header(s, "r")
                w.write(topics.left_info, li, s + 1)
                w.write(topics.right_info, ri, s + 1)
            else:
                bag.write_stereo_frame(w, topics, s, left, right, encoding, li, ri, gt_disparity=gt,
                                       gt_depth=10.0 / gt)
    return topics


@pytest.mark.parametrize("storage", bag.STORAGES)
def test_round_trip_counts_stamps_pixels_and_ground_truth(tmp_path, storage):
    write_frames(tmp_path / "b", storage, n=4)
    counts = {}
    for topic, _t, _m in bag.read_messages(tmp_path / "b"):
        counts[topic] = counts.get(topic, 0) + 1
    assert counts == {t: 4 for t in ("/left/image_rect", "/right/image_rect", "/left/camera_info",
                                     "/right/camera_info", "/gt/disparity", "/gt/depth")}
    rep = bag.PairingReport()
    frames = list(bag.read_stereo_frames(tmp_path / "b", report=rep))
    assert [f.stamp for f in frames] == [T0 + i * PERIOD for i in range(4)]
    for i, f in enumerate(frames):
        left, right, gt = frame_arrays(i)
        np.testing.assert_array_equal(np.asarray(f.left.data).reshape(H, W, 3), left)
        np.testing.assert_array_equal(np.asarray(f.right.data).reshape(H, W, 3), right)
        assert f.left.encoding == "rgb8" and (f.left.width, f.left.height, f.left.step) == (W, H, 3 * W)
        assert f.left.header.frame_id == "left_optical" and f.right.header.frame_id == "right_optical"
        assert f.left_info.p[0] == 100.0 + i and f.right_info.p[3] == pytest.approx(-(100.0 + i) * 0.1)
        np.testing.assert_array_equal(f.gt_disparity, gt)        # NaN in the same place
        np.testing.assert_allclose(f.gt_depth, 10.0 / gt, rtol=1e-6)
        assert not f.problems
    assert (rep.pairs, rep.left_images, rep.right_images, rep.gt_frames) == (4, 4, 4, 4)
    assert rep.warnings() == []


def test_camera_info_after_images_and_latest_info_is_attached(tmp_path):
    write_frames(tmp_path / "b", "mcap", n=3, infos_after=True)
    frames = list(bag.read_stereo_frames(tmp_path / "b"))
    # each frame gets the camera_info of its own stamp, not the first or the last one
    assert [f.left_info.p[0] for f in frames] == [100.0, 101.0, 102.0]
    assert all(f.gt_disparity is None for f in frames)


def test_missing_topics_error_lists_what_the_bag_has(tmp_path):
    write_frames(tmp_path / "b", "sqlite3", n=1)
    topics = bag.StereoTopics(left="/cam/left/image", right="/cam/right/image")
    with pytest.raises(bag.BagError) as err:
        list(bag.read_stereo_frames(tmp_path / "b", topics))
    text = str(err.value)
    assert "missing: /cam/left/image, /cam/right/image" in text
    for t in ("/left/image_rect", "/right/image_rect", "/left/camera_info", "/gt/disparity"):
        assert t in text
    assert "sensor_msgs/msg/Image" in text


def test_a_topic_of_the_wrong_type_is_reported(tmp_path):
    write_frames(tmp_path / "b", "sqlite3", n=1)
    topics = bag.StereoTopics(left_info="/left/image_rect")
    with pytest.raises(bag.BagError, match="/left/image_rect is sensor_msgs/msg/Image, expected sensor_msgs/msg/CameraInfo"):
        list(bag.read_stereo_frames(tmp_path / "b", topics))


def test_mismatched_left_right_counts_pair_what_can_be_paired(tmp_path):
    topics = bag.StereoTopics()
    with bag.BagWriter(tmp_path / "b", "sqlite3") as w:
        for i in range(6):
            s = T0 + i * PERIOD
            left, right, _ = frame_arrays(i)
            w.write(topics.left_info, bag.make_camera_info(W, H, 100, 0.1, stamp=s), s)
            w.write(topics.right_info, bag.make_camera_info(W, H, 100, 0.1, right=True, stamp=s), s)
            w.write(topics.left, bag.make_image(left, "rgb8", s, "l"), s)
            if i not in (1, 4):          # two right images lost
                w.write(topics.right, bag.make_image(right, "rgb8", s, "r"), s)
        s = T0 + 99 * PERIOD            # a right image whose left never came
        w.write(topics.right, bag.make_image(right, "rgb8", s, "r"), s)
    rep = bag.PairingReport()
    frames = list(bag.read_stereo_frames(tmp_path / "b", report=rep))
    assert [f.stamp for f in frames] == [T0 + i * PERIOD for i in (0, 2, 3, 5)]
    assert (rep.left_images, rep.right_images, rep.pairs, rep.unpaired_left, rep.unpaired_right) == (6, 5, 4, 2, 1)
    assert "6 left and 5 right images, 4 pairs" in rep.warnings()[0]


def test_unpaired_queue_is_bounded(tmp_path):
    topics = bag.StereoTopics()
    with bag.BagWriter(tmp_path / "b", "mcap") as w:
        w.write(topics.left_info, bag.make_camera_info(W, H, 100, 0.1), T0)
        w.write(topics.right_info, bag.make_camera_info(W, H, 100, 0.1, right=True), T0)
        for i in range(20):  # right stamps all shifted by 1 ns: nothing pairs exactly
            s = T0 + i * PERIOD
            w.write(topics.left, bag.make_image(np.zeros((H, W), np.uint8), "mono8", s, "l"), s)
            w.write(topics.right, bag.make_image(np.zeros((H, W), np.uint8), "mono8", s + 1, "r"), s)
    rep = bag.PairingReport()
    assert list(bag.read_stereo_frames(tmp_path / "b", report=rep, queue_size=5)) == []
    assert (rep.pairs, rep.unpaired_left, rep.unpaired_right) == (0, 20, 20)


def _frame_with_gt(path, storage, topics, left, right, gt_msg) -> None:
    """A bag of one stereo frame at T0 whose ground-truth topic holds ``gt_msg``."""
    with bag.BagWriter(path, storage) as w:
        bag.write_stereo_frame(w, topics, T0, left, right, "rgb8", bag.make_camera_info(W, H, 100, 0.1),
                               bag.make_camera_info(W, H, 100, 0.1, right=True))
        w.write(topics.gt_disparity, gt_msg, T0)


def test_unreadable_ground_truth_is_a_frame_problem_not_an_error(tmp_path):
    topics = bag.StereoTopics()
    left, right, _ = frame_arrays(0)
    _frame_with_gt(tmp_path / "b", "sqlite3", topics, left, right,
                   bag.make_image(np.zeros((H, W), np.uint8), "mono8", T0, "l"))
    rep = bag.PairingReport()
    (f,) = bag.read_stereo_frames(tmp_path / "b", report=rep)
    assert f.gt_disparity is None and "not 32FC1" in f.problems[0] and rep.gt_problems == 1


def test_kitti_style_16bit_ground_truth():
    arr = np.array([[0, 256, 512 + 128]], np.uint16)
    d = bag.gt_disparity_from_image(bag.make_image(arr, "16UC1", 0, "l"))
    np.testing.assert_array_equal(d, np.array([[np.nan, 1.0, 2.5]], np.float32))


def test_ros1_bag_is_read_with_ros2_field_names(tmp_path):
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS1_NOETIC)
    Image, Info = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CameraInfo"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    Roi = ts.types["sensor_msgs/msg/RegionOfInterest"]
    path = tmp_path / "old.bag"
    left, right, _ = frame_arrays(0)
    with Writer(path) as w:
        conns = {t: w.add_connection(t, ty.__msgtype__, typestore=ts) for t, ty in
                 (("/left/image_rect", Image), ("/right/image_rect", Image),
                  ("/left/camera_info", Info), ("/right/camera_info", Info))}
        for i in range(2):
            s = T0 + i * PERIOD
            hdr = Header(seq=i, stamp=Time(sec=s // 10**9, nanosec=s % 10**9), frame_id="l")
            for side, tx in (("left", 0.0), ("right", -10.0)):
                info = Info(header=hdr, height=H, width=W, distortion_model="plumb_bob", D=np.zeros(5),
                            K=np.array([100, 0, 4.5, 0, 100, 2.5, 0, 0, 1.0]), R=np.eye(3).ravel(),
                            P=np.array([100, 0, 4.5, tx, 0, 100, 2.5, 0, 0, 0, 1, 0.0]), binning_x=0, binning_y=0,
                            roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
                w.write(conns[f"/{side}/camera_info"], s, ts.serialize_ros1(info, info.__msgtype__))
                img = Image(header=hdr, height=H, width=W, encoding="rgb8", is_bigendian=0, step=3 * W,
                            data=(left if side == "left" else right).reshape(-1))
                w.write(conns[f"/{side}/image_rect"], s, ts.serialize_ros1(img, img.__msgtype__))
    frames = list(bag.read_stereo_frames(path))
    assert len(frames) == 2 and frames[1].stamp == T0 + PERIOD
    assert list(frames[0].right_info.p[:4]) == [100, 0, 4.5, -10.0]
    np.testing.assert_array_equal(np.asarray(frames[0].left.data).reshape(H, W, 3), left)
    # and the pipeline's geometry check accepts the adapted ROS 1 camera_info
    from stereonet_ros.pipeline import check_camera_info
    geom, _ = check_camera_info(frames[0].left_info, frames[0].right_info, W, H)
    assert geom.baseline == pytest.approx(0.1)


def test_writer_refuses_unknown_storage_and_type_change(tmp_path):
    with pytest.raises(ValueError, match="storage"):
        bag.BagWriter(tmp_path / "x", "rosbag3")
    with bag.BagWriter(tmp_path / "b", "sqlite3") as w:
        w.write("/a", bag.make_image(np.zeros((2, 2), np.uint8), "mono8", 0, "f"), 0)
        with pytest.raises(bag.BagError, match="is sensor_msgs/msg/Image"):
            w.write("/a", bag.make_camera_info(2, 2, 1, 0.1), 1)


def test_disparity_image_ground_truth_follows_its_own_validity_rules(tmp_path):
    """A DisparityImage (what stereonet-eval writes) is accepted as ground truth: values below
    min_disparity and pixels outside valid_window are unknown, the rest is d as published."""
    topics = bag.StereoTopics()
    left, right, gt = frame_arrays(0)
    gt[2, 5] = -3.0                                   # below min_disparity 0: invalid
    msg = bag.make_disparity(gt, T0, "l", 100.0, 0.1, 0.0, 64.0, 1 / 16, valid_window=(2, 1, W - 2, H - 1))
    _frame_with_gt(tmp_path / "b", "mcap", topics, left, right, msg)
    (f,) = bag.read_stereo_frames(tmp_path / "b")
    assert not f.problems
    known = np.ones((H, W), bool)
    known[:, :2] = known[:1, :] = False               # outside the window
    known[2, 5] = known[0, 0] = False                 # below min_disparity; NaN in the message
    np.testing.assert_array_equal(np.isfinite(f.gt_disparity), known)
    np.testing.assert_array_equal(f.gt_disparity[known], gt[known])


def test_ground_truth_of_another_type_is_refused_naming_topic_and_type(tmp_path):
    topics = bag.StereoTopics()
    left, right, _ = frame_arrays(0)
    _frame_with_gt(tmp_path / "b", "sqlite3", topics, left, right, bag.make_camera_info(W, H, 100, 0.1))
    with pytest.raises(bag.BagError) as info:
        list(bag.read_stereo_frames(tmp_path / "b"))
    text = str(info.value)
    assert "'/gt/disparity' is sensor_msgs/msg/CameraInfo" in text
    assert "sensor_msgs/msg/Image" in text and "stereo_msgs/msg/DisparityImage" in text
