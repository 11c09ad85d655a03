"""Procedural stereo generator: determinism, exact geometry, occlusion consistency."""
import numpy as np
import pytest

from stereonet_ros.tools.synthetic import (TEXTURE_FILES, SyntheticConfig, left_right_consistent,
                                render_scene, texture_bank, warp_right_to_left)

SMALL = dict(height=64, width=128, max_disparity=48.0)


def test_reproducible_from_seed():
    cfg = SyntheticConfig(**SMALL)
    a, b = render_scene(7, cfg), render_scene(7, cfg)
    for k in ("left", "right", "disp", "disp_right"):
        assert np.array_equal(a[k], b[k]), k
    c = render_scene(8, cfg)
    assert not np.array_equal(a["left"], c["left"])


def test_shapes_types_and_range():
    cfg = SyntheticConfig(**SMALL)
    s = render_scene(3, cfg)
    assert s["left"].shape == s["right"].shape == (64, 128, 3)
    assert s["disp"].shape == s["disp_right"].shape == (64, 128)
    for k in s:
        assert s[k].dtype == np.float32
    assert 0.0 <= s["left"].min() and s["left"].max() <= 1.0
    for k in ("disp", "disp_right"):
        assert np.isfinite(s[k]).all()
        assert s[k].min() >= cfg.min_disparity - 1e-4 and s[k].max() < cfg.max_disparity


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integer_disparity_warp_is_exact_where_visible(seed):
    # Fronto-parallel layers at integer disparity, no camera effects: sampling the right image
    # at x - d(x) must reproduce the left image exactly wherever the point is visible in both.
    cfg = SyntheticConfig(**SMALL, integer_disparity=True, noise_max=0.0, photometric=0.0, blur_max=0.0)
    s = render_scene(seed, cfg)
    warped = warp_right_to_left(s["right"], s["disp"])
    visible = left_right_consistent(s["disp"], s["disp_right"]) & np.isfinite(warped).all(-1)
    assert visible.mean() > 0.5
    assert np.abs(warped - s["left"])[visible].max() < 1e-5


def test_slanted_scene_warp_consistent():
    cfg = SyntheticConfig(**SMALL, slant_prob=1.0, noise_max=0.0, photometric=0.0, blur_max=0.0)
    s = render_scene(11, cfg)
    assert not np.allclose(np.diff(s["disp"], axis=1), 0)  # really slanted somewhere
    warped = warp_right_to_left(s["right"], s["disp"])
    visible = left_right_consistent(s["disp"], s["disp_right"]) & np.isfinite(warped).all(-1)
    # Interior pixels (away from layer edges) match up to bilinear re-interpolation.
    err = np.abs(warped - s["left"]).max(-1)[visible]
    assert np.median(err) < 0.01 and np.mean(err) < 0.03


def test_right_disparity_consistent_with_left():
    cfg = SyntheticConfig(**SMALL)
    s = render_scene(5, cfg)
    h, w = s["disp"].shape
    # For each right pixel x_r, the left pixel x_l = x_r + disp_right sees the same surface
    # unless it is occluded in the left view (then its disparity is larger, i.e. nearer).
    ys, xs = np.mgrid[0:h, 0:w]
    xl = np.rint(xs + s["disp_right"]).astype(int)
    inside = xl < w
    dl = s["disp"][ys[inside], xl[inside]]
    dr = s["disp_right"][inside]
    same = np.abs(dl - dr) < 0.6
    assert same.mean() > 0.5
    # otherwise an occluder in front (up to rounding at layer edges)
    assert np.mean(dl[~same] > dr[~same] - 0.6) > 0.97


def test_occlusion_is_nearest_wins():
    # A layer hidden in the left view is hidden by something nearer: disparity is the max
    # over layers; the right view never shows a farther surface at a left-visible point.
    cfg = SyntheticConfig(**SMALL, min_layers=8, max_layers=8)
    s = render_scene(21, cfg)
    vis = left_right_consistent(s["disp"], s["disp_right"])
    assert 0.3 < vis.mean() < 1.0  # some occlusion present, most pixels visible


def test_motorcycle_never_a_texture():
    assert not any("motorcycle" in n for n in TEXTURE_FILES)
    assert len(texture_bank()) >= 10


def test_detail_and_vignette_keep_the_geometry_exact_and_change_the_views():
    """The realism knobs alter appearance only: the disparity maps are those of the plain
    scene, the left view gains high-frequency energy, and vignetting darkens the corners."""
    import numpy as np
    from stereonet_ros.tools.synthetic import SyntheticConfig, render_scene
    base = SyntheticConfig(height=64, width=128, max_disparity=24.0, noise_max=0.0, photometric=0.0)
    plain = render_scene(5, base)
    rich = render_scene(5, SyntheticConfig(**{**base.to_dict(), "detail": 0.15, "vignette": 0.5}))
    np.testing.assert_array_equal(plain["disp"], rich["disp"])
    np.testing.assert_array_equal(plain["disp_right"], rich["disp_right"])
    hf = lambda im: np.abs(np.diff(im.mean(-1), axis=1)).mean()  # noqa: E731
    assert hf(rich["left"]) > 1.2 * hf(plain["left"])
    corner = lambda im: im[:8, :8].mean() / max(im[28:36, 60:68].mean(), 1e-6)  # noqa: E731
    assert corner(rich["right"]) < corner(plain["right"]) + 0.05
