"""Demo smoke test: synthetic bag -> the real node *process* -> replay/record -> report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stereonet_ros.tools import bag, demo

ROOT = Path(__file__).resolve().parents[1]


def test_demo_bag_has_exact_ground_truth_and_is_cached(tmp_path):
    spec = demo.SceneSpec(frames=2, width=48, height=32, max_disparity=12)
    path, reused = demo.cached_bag(tmp_path, spec, progress=False)
    assert not reused
    frames = list(bag.read_stereo_frames(path))
    assert len(frames) == 2
    for f in frames:
        assert f.gt_disparity.shape == (32, 48) and np.all(np.isfinite(f.gt_disparity))
        assert 0 <= f.gt_disparity.min() and f.gt_disparity.max() < 12
        # gt depth is f*T/d of the same disparity
        np.testing.assert_allclose(f.gt_depth, spec.fx * spec.baseline / f.gt_disparity, rtol=1e-5)
    assert demo.cached_bag(tmp_path, spec, progress=False) == (path, True)


@pytest.mark.skipif(not demo.netns_available() and os.environ.get(demo.NETNS_MARK) != "1",
                    reason="needs root and a working 'unshare -n' for reliable large-image DDS")
def test_demo_end_to_end_with_the_node_process(tiny_checkpoint, tmp_path, ros_domain):
    env = dict(os.environ, STEREONET_DEMO_DOMAIN=str(ros_domain), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "stereonet_ros.tools.demo", "--checkpoint", str(tiny_checkpoint), "--frames", "4",
           "--width", "64", "--height", "48", "--max-disparity", "16", "--fps", "10", "--rate", "1.0",
           "--input-scale", "1.0", "--settle", "2", "--out", str(tmp_path / "demo"), "--no-progress"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)  # a hang guard: on a loaded 2-core machine it took > 90 s
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-3000:]
    rep = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert rep["transport"].startswith("private network namespace")
    assert rep["pairs_published"] == 4
    # every published pair is either received or counted as dropped, and the node saw them
    assert rep["disparities_received"] >= 1
    assert rep["disparities_received"] + rep["dropped"] == 4
    assert rep["node_processed"] == rep["disparities_received"]
    # the node accounts for every lost pair ('unpaired' counts images, so >= rather than ==)
    assert sum(rep["node_drops_by_reason"].values()) >= rep["dropped"]
    from stereonet_ros.stats import DROP_REASONS
    assert set(rep["node_drops_by_reason"]) <= set(DROP_REASONS)
    assert rep["metrics"]["frames"] == rep["disparities_received"] and np.isfinite(rep["metrics"]["epe"])
    lat = rep["latency_ms"]
    assert 0 < lat["p50"] < 10_000
    assert rep["node_stop"]["exit_code"] == 0 and rep["node_stop"]["clean"]
    assert rep["random_weights"] is True and "RANDOM WEIGHTS" in text
    assert "EPE" in res.stdout and "latency" in res.stdout and "dropped" in res.stdout
    assert rep["figures"] and all(Path(p).exists() for p in rep["figures"])
    # step 5, the real photographs, with the node's settings, on the embedded defaults
    assert [p["name"] for p in rep["photos"]] == ["motorcycle", "oakd_desk", "oakd_cycles"]
    assert all(Path(p["figure"]).exists() for p in rep["photos"])
    assert "photo motorcycle: EPE StereoNet" in res.stdout


def test_demo_scene_disparity_maps_left_onto_right():
    """The demo's bag scenes come from the one generator (tools.synthetic) at the spec's size
    and range, with left disparities: left(x) matches right(x - d(x)). The views differ
    photometrically (per-eye gain and noise, the generator's realism), so the check is
    relative: d explains the right view far better than no shift or the opposite shift."""
    import cv2
    spec = demo.SceneSpec(width=256, height=160, max_disparity=32)
    sc = demo.render(3, spec)
    assert sc["left"].shape == (160, 256, 3) and 0 < sc["disp"].min() and sc["disp"].max() <= 32
    yy, xx = np.mgrid[0:160, 0:256].astype(np.float32)
    z = lambda a: (a - a.mean()) / a.std()  # noqa: E731 - gain and offset removed
    err = {sign: np.median(np.abs(z(cv2.remap(sc["right"], xx + sign * sc["disp"], yy, cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_REPLICATE)) - z(sc["left"])))
           for sign in (-1, 0, 1)}
    assert err[-1] < 0.6 * err[0] and err[-1] < 0.6 * err[1], err


def test_photos_show_stereonet_beside_the_sgbm_baseline_with_bars_depth_confidence_and_cloud(tiny_checkpoint,
                                                                                             tmp_path):
    """Step 5 of the demo on the real pairs: the SGBM column is baseline.sgbm_disparity, the
    colours are the node's map, the motorcycle's calibration gives Middlebury's depth range,
    and the figure has its three rows and the numbers."""
    import cv2
    from stereonet_ros.tools import demo_photos as dp
    from stereonet_ros.tools.baseline import fill_holes_from_left, sgbm_disparity
    from stereonet_ros.engine import StereoEngine
    from stereonet_ros.geometry import disparity_to_depth
    from stereonet_ros.messages import colorize_disparity
    pairs = dp.sample_pairs()
    assert [p.name for p in pairs] == ["motorcycle", "oakd_desk", "oakd_cycles"]
    moto = pairs[0]
    engine = StereoEngine(str(tiny_checkpoint), "cpu", max_disparity=96.0, refiners=1)
    r = dp.run_pair(engine, moto)
    g = r["out"].geometry
    # Middlebury: Z = baseline * f / (d + doffs) spans 2.08-5.21 m over its vmin..vmax; the
    # scaled calibration must give the same range from the ground truth.
    z = disparity_to_depth(np.nan_to_num(r["gt"], nan=-1.0), g, np.isfinite(r["gt"]))
    assert 1.9 < np.nanpercentile(z, 1) and np.nanpercentile(z, 99) < 5.4
    assert g.cx_offset == pytest.approx((1244.772 - 1369.115) / 4, abs=1e-3)
    raw = sgbm_disparity(moto.left, moto.right, 96.0)
    np.testing.assert_array_equal(r["sgbm"], raw - np.float32(g.cx_offset))
    np.testing.assert_array_equal(r["sgbm_filled"], fill_holes_from_left(r["sgbm"]))
    m = r["metrics"]
    assert set(m) == {"stereonet", "stereonet_dense", "sgbm", "sgbm_filled"}
    assert m["sgbm_filled"]["epe"] < m["sgbm"]["epe"] and m["sgbm_filled"]["epe"] < 6.0  # SGBM works on it
    # a tile is the node's colour map plus a bar that spans lo..hi
    h, w = r["out"].disparity.shape
    tile = dp.colour_tile(r["out"].disparity, r["out"].valid, 40.0, 90.0, "t", "px")
    want = colorize_disparity(r["out"].disparity, r["out"].valid, 40.0, 90.0)
    np.testing.assert_array_equal(tile[40:, :w], want[40:])
    bar = tile[:, w + 4:w + 18]   # top = 90 px, bottom = 40 px, linear
    row = h // 2 + 5
    at = np.float32(90.0 - 50.0 * row / (h - 1))
    np.testing.assert_array_equal(bar[row, 0], colorize_disparity(np.array([[at]], np.float32),
                                                                  np.ones((1, 1), bool), 40.0, 90.0)[0, 0])
    rows = dp.run(engine, tmp_path, pairs[:2])
    assert [x["name"] for x in rows] == ["motorcycle", "oakd_desk"] and rows[1]["metrics"] is None
    fig = cv2.imread(rows[0]["figure"])
    assert fig.shape[1] == 3 * (w + 56) and fig.shape[0] > 3 * h
    assert fig[:h, :w].std() > 10 and fig[2 * h:3 * h, w + 56:].any()   # left image; cloud views drawn
    text = "\n".join(dp.summary_lines(rows))
    assert "motorcycle: EPE StereoNet" in text and "oakd_desk: no ground truth" in text
