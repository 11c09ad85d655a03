"""Offline evaluation with the real engine (tiny random checkpoint) over real bag files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import shifted_pair, to_encoding
from stereonet_ros.tools import bag
from stereonet_ros.engine import StereoEngine
from stereonet_ros.tools.evaluate import EvalOptions, evaluate_frames, main, render_cloud
from stereonet_ros.pipeline import OutputOptions, process_pair

W, H, FX, B = 64, 48, 120.0, 0.1
T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return StereoEngine(str(tiny_checkpoint), "cpu")


def pair(i):
    left, right = shifted_pair(H, W, 4 + i, seed=i)
    return to_encoding(left, "rgb8"), to_encoding(right, "rgb8")


def infos():
    return bag.make_camera_info(W, H, FX, B), bag.make_camera_info(W, H, FX, B, right=True)


def reference(engine, i):
    """What the node computes for frame i (the same function on the same messages)."""
    left, right = pair(i)
    li, ri = infos()
    return process_pair(engine, bag.make_image(left, "rgb8", 0, "l"), bag.make_image(right, "rgb8", 0, "r"),
                        li, ri, OutputOptions())


def test_metrics_are_exact_against_a_known_prediction(engine, tmp_path):
    """gt = the node's own output minus known offsets: EPE/bad-N/D1/density are known exactly."""
    topics = bag.StereoTopics()
    offsets, gts = {}, {}
    with bag.BagWriter(tmp_path / "b", "sqlite3") as w:
        for i in range(3):
            out = reference(engine, i)
            assert out.valid.sum() > 100
            # pixel-wise offsets: 1/4 of valid pixels off by 0.25, 1/4 by 1.5, 1/4 by 3.5, 1/4 exact
            off = np.zeros((H, W), np.float32)
            idx = np.flatnonzero(out.valid)
            for k, v in enumerate((0.25, 1.5, 3.5, 0.0)):
                off.flat[idx[k::4]] = v
            gt = np.where(out.valid, out.disparity - off, np.nan).astype(np.float32)
            gt[~out.valid] = np.nan
            offsets[i] = off[out.valid]
            gts[i] = gt[out.valid].astype(np.float64)
            left, right = pair(i)
            li, ri = infos()
            bag.write_stereo_frame(w, topics, T0 + i * 10**8, left, right, "rgb8", li, ri, gt_disparity=gt)
    rep = evaluate_frames(engine, bag.read_stereo_frames(tmp_path / "b"), EvalOptions(out_dir=tmp_path / "r",
                                                                                       figures=1, progress=False))
    assert rep["frames"] == {"total": 3, "processed": 3, "failed": 0, "with_gt": 3}
    for i, rec in enumerate(rep["per_frame"]):
        o = offsets[i].astype(np.float64)
        m = rec["metrics"]
        assert m["valid_pixels"] == o.size
        assert m["epe"] == pytest.approx(o.mean(), abs=1e-5)
        assert m["bad0.5"] == pytest.approx(100 * np.mean(o > 0.5), abs=1e-9)
        assert m["bad2"] == pytest.approx(100 * np.mean(o > 2), abs=1e-9)
        assert m["bad4"] == 0.0 and m["density"] == 100.0
        assert m["d1"] == pytest.approx(100 * np.mean((o > 3) & (o > 0.05 * np.abs(gts[i]))), abs=1e-9)
        assert m["bad0.5"] > 0  # the test can fail: offsets exist
    all_o = np.concatenate([offsets[i] for i in range(3)]).astype(np.float64)
    assert rep["metrics"]["epe"] == pytest.approx(all_o.mean(), abs=1e-5)
    assert rep["metrics"]["frames"] == 3
    lat = rep["latency_ms"]
    assert lat["count"] == 3 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert rep["throughput_fps"] > 0 and rep["random_weights"] is True
    # written report and figures
    on_disk = json.loads((tmp_path / "r" / "report.json").read_text())
    assert on_disk["metrics"]["epe"] == pytest.approx(rep["metrics"]["epe"])
    pngs = sorted(p.name for p in (tmp_path / "r").glob("*.png"))
    assert pngs == ["frame_000000_cloud.png", "frame_000000_panel.png"]


def test_a_wrong_prediction_is_measured_as_wrong(engine, tmp_path):
    """The same bag with gt shifted by 2 px everywhere: EPE 2, bad1 100 %, bad4 0 %."""
    out = reference(engine, 0)
    gt = np.where(out.valid, out.disparity + 2.0, np.nan).astype(np.float32)
    gt[gt >= out.max_disparity] = np.nan
    with bag.BagWriter(tmp_path / "b", "mcap") as w:
        left, right = pair(0)
        bag.write_stereo_frame(w, bag.StereoTopics(), T0, left, right, "rgb8", *infos(), gt_disparity=gt)
    rep = evaluate_frames(engine, bag.read_stereo_frames(tmp_path / "b"), EvalOptions(out_dir=None, progress=False))
    m = rep["metrics"]
    assert m["epe"] == pytest.approx(2.0, abs=1e-4) and m["bad1"] == 100.0 and m["bad4"] == 0.0


def test_output_bag_decodes_to_the_computed_arrays(engine, tmp_path):
    with bag.BagWriter(tmp_path / "b", "sqlite3") as w:
        for i in range(2):
            left, right = pair(i)
            bag.write_stereo_frame(w, bag.StereoTopics(), T0 + i * 10**8, left, right, "rgb8", *infos())
    opts = EvalOptions(out_dir=None, output_bag=tmp_path / "pred", storage="mcap", progress=False)
    evaluate_frames(engine, bag.read_stereo_frames(tmp_path / "b"), opts)
    got = {}
    for topic, t, msg in bag.read_messages(tmp_path / "pred"):
        got.setdefault(topic, []).append((t, msg))
    assert {k: len(v) for k, v in got.items()} == {"/stereonet/disparity": 2, "/stereonet/depth": 2,
                                                   "/stereonet/points2": 2}
    for i in range(2):
        ref = reference(engine, i)
        _, dmsg = got["/stereonet/disparity"][i]
        assert bag.stamp_ns(dmsg) == T0 + i * 10**8 and dmsg.header.frame_id == "left_optical"
        d = np.frombuffer(dmsg.image.data, np.float32).reshape(H, W)
        np.testing.assert_array_equal(d, ref.disparity)
        assert dmsg.f == pytest.approx(FX) and dmsg.t == pytest.approx(B)
        assert dmsg.min_disparity == ref.min_disparity and dmsg.max_disparity == pytest.approx(ref.max_disparity)
        np.testing.assert_array_equal(d >= dmsg.min_disparity, ref.valid)
        z = np.frombuffer(got["/stereonet/depth"][i][1].data, np.float32).reshape(H, W)
        np.testing.assert_array_equal(z, ref.depth)  # NaNs in the same places
        cloud = got["/stereonet/points2"][i][1]
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"] and (cloud.height, cloud.width) == (H, W)
        pts = bag.cloud_to_numpy(cloud)
        np.testing.assert_array_equal(pts[..., :3], ref.points)
        rgb = pts[..., 3].copy().view(np.uint32)
        c = ref.rgb8.astype(np.uint32)
        np.testing.assert_array_equal(rgb, (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2])


def test_bad_frames_are_reported_and_the_rest_is_evaluated(engine, tmp_path):
    topics = bag.StereoTopics()
    with bag.BagWriter(tmp_path / "b", "sqlite3") as w:
        for i in range(5):
            s = T0 + i * 10**8
            left, right = pair(i)
            li, ri = infos()
            enc = "yuv_weird" if i == 1 else "rgb8"          # unknown encoding on frame 1
            li.header, ri.header = bag.make_header(s, "l"), bag.make_header(s, "r")
            w.write(topics.left_info, li, s)
            w.write(topics.right_info, ri, s)
            w.write(topics.left, bag.make_image(left, enc, s, "l"), s)
            if i != 3:                                        # right image of frame 3 lost
                w.write(topics.right, bag.make_image(right, enc, s, "r"), s)
    pairing = bag.PairingReport()
    rep = evaluate_frames(engine, bag.read_stereo_frames(tmp_path / "b", report=pairing),
                          EvalOptions(out_dir=None, progress=False), pairing)
    assert rep["frames"]["total"] == 4 and rep["frames"]["processed"] == 3
    assert rep["failures_by_reason"] == {"bad_encoding": 1}
    bad = [r for r in rep["per_frame"] if r["status"] == "failed"]
    assert bad[0]["stamp_ns"] == T0 + 10**8 and "yuv_weird" in bad[0]["message"]
    assert rep["pairing"]["unpaired_left"] == 1 and "5 left and 4 right" in rep["pairing"]["warnings"][0]
    assert rep["latency_ms"]["count"] == 3


def test_cli_reports_missing_topics_and_runs_on_a_bag(tiny_checkpoint, tmp_path, capsys):
    with bag.BagWriter(tmp_path / "b", "mcap") as w:
        left, right = pair(0)
        bag.write_stereo_frame(w, bag.StereoTopics(), T0, left, right, "rgb8", *infos(),
                               gt_disparity=np.full((H, W), 4.0, np.float32))
    code = main([str(tmp_path / "b"), "--checkpoint", str(tiny_checkpoint), "--left-topic", "/cam/left",
                 "--out", "", "--no-progress", "--output-bag", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code == 2 and "missing: /cam/left" in err and "/left/image_rect  [sensor_msgs/msg/Image]" in err
    assert not (tmp_path / "never").exists()
    code = main([str(tmp_path / "b"), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "r"),
                 "--no-progress", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "EPE" in out and "RANDOM" in out
    assert json.loads((tmp_path / "r" / "report.json").read_text())["frames"]["processed"] == 1


def test_folder_of_pairs(tiny_checkpoint, tmp_path, capsys):
    import cv2
    for sub in ("left", "right", "disparity"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    for i in range(2):
        left, right = pair(i)
        cv2.imwrite(str(tmp_path / "pairs" / "left" / f"{i:03d}.png"), left[..., ::-1])
        cv2.imwrite(str(tmp_path / "pairs" / "right" / f"{i:03d}.png"), right[..., ::-1])
        np.save(tmp_path / "pairs" / "disparity" / f"{i:03d}.npy", np.full((H, W), 4.0 + i, np.float32))
    code = main([str(tmp_path / "pairs"), "--checkpoint", str(tiny_checkpoint), "--fx", str(FX),
                 "--baseline", str(B), "--out", str(tmp_path / "r"), "--no-progress", "--figures", "0"])
    assert code == 0
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["frames"]["processed"] == 2 and rep["frames"]["with_gt"] == 2


def test_render_cloud_draws_near_points_over_far_ones():
    pts = np.full((4, 1, 3), np.nan, np.float32)   # the NaN point is skipped
    pts[0, 0] = (0, 0, 1.0)      # near, red
    pts[1, 0] = (0, 0, 2.0)      # far, behind it on the same ray, green
    pts[2, 0] = (0.5, 0, 1.5)    # off-axis, blue
    rgb = np.array([[[255, 0, 0]], [[0, 255, 0]], [[0, 0, 255]], [[9, 9, 9]]], np.uint8)
    img = render_cloud(pts, rgb, (40, 30), yaw_deg=0, pitch_deg=0, splat=1)
    assert tuple(img[15, 20]) == (0, 0, 255)  # bgr: red wins


def test_published_and_dense_accuracy_are_both_reported_and_labelled(engine, tmp_path, capsys):
    """Pixels the node marks invalid (here: below a confidence threshold) count as errors of
    |gt| in the published numbers; the dense numbers judge the network at every pixel."""
    from stereonet_ros.tools.evaluate import METRICS_CONVENTION, summary_text
    left, right = pair(0)
    li, ri = infos()
    lm, rm = bag.make_image(left, "rgb8", 0, "l"), bag.make_image(right, "rgb8", 0, "r")
    thr = float(np.median(process_pair(engine, lm, rm, li, ri, OutputOptions()).confidence))
    opts = OutputOptions(confidence_threshold=thr)
    ref = process_pair(engine, lm, rm, li, ri, opts)
    assert 0 < ref.valid.sum() < ref.valid.size, "the threshold must invalidate some pixels, not all"
    off = np.where(np.arange(H * W).reshape(H, W) % 3 == 0, 1.5, 0.25).astype(np.float32)
    gt = (ref.dense_disparity + off).astype(np.float32)
    gt[gt >= ref.max_disparity] = np.nan
    known = np.isfinite(gt)
    with bag.BagWriter(tmp_path / "b", "sqlite3") as w:
        bag.write_stereo_frame(w, bag.StereoTopics(), T0, left, right, "rgb8", *infos(), gt_disparity=gt)
    rep = evaluate_frames(engine, bag.read_stereo_frames(tmp_path / "b"),
                          EvalOptions(out_dir=None, progress=False, output=opts))
    pub, dense = rep["metrics"], rep["metrics_dense"]
    ok = ref.valid[known]
    err_pub = np.where(ok, off[known], np.abs(gt[known]))
    assert pub["epe"] == pytest.approx(err_pub.mean(), rel=1e-5)
    assert pub["density"] == pytest.approx(100 * ok.mean())
    assert pub["bad1"] == pytest.approx(100 * np.mean(~ok | (off[known] > 1)))
    assert dense["epe"] == pytest.approx(off[known].mean(), rel=1e-5) and dense["density"] == 100.0
    assert dense["bad1"] == pytest.approx(100 * np.mean(off[known] > 1))
    assert rep["per_frame"][0]["metrics_dense"]["epe"] == pytest.approx(dense["epe"])
    assert rep["metrics_convention"] == METRICS_CONVENTION and "published" in METRICS_CONVENTION
    text = summary_text(rep)
    assert "published output (invalid pixels count as errors)" in text and "dense network output" in text
    assert "convention:" in text


def test_disparity_image_ground_truth_and_wrong_types(tiny_checkpoint, tmp_path, capsys):
    """The CLI accepts a DisparityImage gt topic and refuses one of another type, naming it."""
    topics = bag.StereoTopics()
    left, right = pair(0)
    gt = np.full((H, W), 4.0, np.float32)
    with bag.BagWriter(tmp_path / "ok", "mcap") as w:
        bag.write_stereo_frame(w, topics, T0, left, right, "rgb8", *infos())
        w.write(topics.gt_disparity, bag.make_disparity(gt, T0, "l", FX, B, 0.0, 64.0, 1 / 16,
                                                        valid_window=(8, 0, W - 8, H)), T0)
    code = main([str(tmp_path / "ok"), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "r"),
                 "--no-progress", "--device", "cpu", "--figures", "0"])
    assert code == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["frames"]["with_gt"] == 1
    assert rep["metrics"]["valid_pixels"] == (W - 8) * H  # the window's columns only
    with bag.BagWriter(tmp_path / "bad", "sqlite3") as w:
        bag.write_stereo_frame(w, topics, T0, left, right, "rgb8", *infos())
        w.write("/gt/points", bag.make_cloud(np.zeros((H, W, 3), np.float32), T0, "l"), T0)
    code = main([str(tmp_path / "bad"), "--checkpoint", str(tiny_checkpoint), "--out", "", "--no-progress",
                 "--gt-topic", "/gt/points"])
    err = capsys.readouterr().err
    assert code == 2 and "'/gt/points' is sensor_msgs/msg/PointCloud2" in err, err
