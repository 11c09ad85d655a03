"""Demo smoke test: synthetic bag -> the real node *process* -> replay/record -> report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stereonet_ros import bag, demo

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
    cmd = [sys.executable, "-m", "stereonet_ros.demo", "--checkpoint", str(tiny_checkpoint), "--frames", "4",
           "--width", "64", "--height", "48", "--max-disparity", "16", "--fps", "10", "--rate", "1.0",
           "--input-scale", "1.0", "--settle", "2", "--out", str(tmp_path / "demo"), "--no-progress"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
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


def test_fallback_scene_is_an_exact_correspondence():
    """Without training/ the demo renders its own scene: left(x) must equal right(x - d(x))."""
    import cv2
    spec = demo.SceneSpec(width=64, height=40, max_disparity=16)
    sc = demo._fallback_scene(3, spec)
    yy, xx = np.mgrid[0:40, 0:64].astype(np.float32)
    warped = cv2.remap(sc["right"], xx - sc["disp"], yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = xx - sc["disp"] >= 1
    assert inside.mean() > 0.5 and 0 < sc["disp"].min() and sc["disp"].max() < 16
    np.testing.assert_allclose(warped[inside], sc["left"][inside], atol=2e-2)
