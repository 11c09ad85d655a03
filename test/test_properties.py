"""Property tests (hypothesis) of image conversion and stereo geometry.

imageconv: any image written with any supported encoding, size, row padding and byte order
decodes back to the same pixels; any malformed message raises ImageFormatError and never
another exception. geometry: depth, points and projection invert each other for random
rectified cameras; geometry_from_projections either raises GeometryError or returns a
usable geometry (positive, finite baseline and focal length), whatever P holds.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stereonet_ros.geometry import (MAX_BASELINE_M, MIN_BASELINE_M, GeometryError, StereoGeometry,
                                    depth_to_points, disparity_to_depth, geometry_from_projections,
                                    project_points)
from stereonet_ros.imageconv import (ENCODINGS, ImageFormatError, fill_image, image_to_numpy,
                                     to_rgb8, to_rgb_float)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENC = sorted(ENCODINGS)


def _shape(enc: str, h: int, w: int) -> tuple:
    ch = ENCODINGS[enc][1]
    return (h, w) if ch == 1 else (h, w, ch)


@st.composite
def images(draw: Any, min_side: int = 1) -> tuple:
    enc = draw(st.sampled_from(ENC))
    h = draw(st.integers(min_side, 12))
    w = draw(st.integers(min_side, 12))
    dtype = ENCODINGS[enc][0]
    if dtype == np.float32:
        elements = st.floats(-1e6, 1e6, width=32, allow_nan=False)
    else:
        elements = st.integers(0, np.iinfo(dtype).max)
    return enc, draw(arrays(dtype, _shape(enc, h, w), elements=elements))


def _pack(arr: np.ndarray, enc: str, pad: int, big: bool) -> SimpleNamespace:
    """An Image-like message with ``pad`` bytes after each row and the given byte order."""
    dtype, ch, _ = ENCODINGS[enc]
    h, w = arr.shape[:2]
    a = arr.astype(dtype.newbyteorder(">") if big else dtype.newbyteorder("<"))
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, w * ch * dtype.itemsize)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(encoding=enc, height=h, width=w, step=rows.shape[1] + pad,
                           is_bigendian=int(big), data=padded.tobytes())


@SETTINGS
@given(images(), st.integers(0, 9), st.booleans())
def test_decode_honours_step_padding_and_byte_order(img, pad, big):
    enc, arr = img
    out = image_to_numpy(_pack(arr, enc, pad, big))
    assert out.shape == arr.shape
    assert out.dtype == ENCODINGS[enc][0]
    np.testing.assert_array_equal(out, arr)


@SETTINGS
@given(images())
def test_fill_then_decode_round_trip_with_real_messages(img):
    from sensor_msgs.msg import Image
    enc, arr = img
    msg = fill_image(Image(), arr, enc)
    assert msg.step == arr.shape[1] * ENCODINGS[enc][1] * ENCODINGS[enc][0].itemsize
    assert len(msg.data) == msg.step * msg.height
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


@SETTINGS
@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 65535))
def test_big_endian_mono16_values(h, w, v):
    """A big-endian mono16 pixel 0xABCD is 0xABCD, not 0xCDAB, and scales to v / 65535."""
    arr = np.full((h, w), v, np.uint16)
    msg = _pack(arr, "mono16", 0, True)
    assert msg.data[:2] == bytes([v >> 8, v & 0xFF])
    out = image_to_numpy(msg)
    assert int(out[0, 0]) == v
    np.testing.assert_allclose(to_rgb_float(out, "mono16")[0, 0], v / 65535.0, rtol=1e-6)
    assert to_rgb8(out, "mono16")[0, 0, 0] == v >> 8


@SETTINGS
@given(enc=st.one_of(st.sampled_from(ENC), st.text(max_size=8)), h=st.integers(-2, 40), w=st.integers(-2, 40),
       step=st.integers(-4, 200), n=st.integers(0, 3000), big=st.booleans(),
       max_pixels=st.one_of(st.none(), st.integers(1, 2000)))
def test_malformed_messages_raise_image_format_error_only(enc, h, w, step, n, big, max_pixels):
    msg = SimpleNamespace(encoding=enc, height=h, width=w, step=step, is_bigendian=int(big), data=bytes(n))
    valid = (enc in ENCODINGS and h > 0 and w > 0 and (max_pixels is None or h * w <= max_pixels)
             and step >= w * ENCODINGS[enc][1] * ENCODINGS[enc][0].itemsize and n == step * h)
    if valid:
        assert image_to_numpy(msg, max_pixels).shape == _shape(enc, h, w)
    else:
        with pytest.raises(ImageFormatError) as info:
            image_to_numpy(msg, max_pixels)
        assert info.value.reason in ("bad_encoding", "bad_size", "bad_data")


@SETTINGS
@given(images(), st.integers(1, 50), st.sampled_from(["truncate", "extend", "narrow_step", "list", "none"]))
def test_corrupted_real_layout_raises_image_format_error(img, k, how):
    """Start from a consistent message and break one thing: always ImageFormatError."""
    enc, arr = img
    msg = _pack(arr, enc, 0, False)
    if how == "truncate":
        msg.data = msg.data[:-min(k, len(msg.data))]
    elif how == "extend":
        msg.data = msg.data + bytes(k)
    elif how == "narrow_step":
        msg.step = max(0, msg.step - k)
        msg.data = bytes(msg.step * msg.height)
    elif how == "list":
        msg.data = [300] * len(msg.data)  # not byte values
    else:
        msg.data = None
    with pytest.raises(ImageFormatError):
        image_to_numpy(msg)


@SETTINGS
@given(arrays(np.float32, (4, 5), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_float_images_with_nan_or_inf_raise_bad_values(arr):
    if np.all(np.isfinite(arr)):
        out = to_rgb_float(arr, "32FC1")
        assert out.min() >= 0 and out.max() <= 1
    else:
        with pytest.raises(ImageFormatError) as info:
            to_rgb_float(arr, "32FC1")
        assert info.value.reason == "bad_values"


# ----- geometry ---------------------------------------------------------------------------
@st.composite
def cameras(draw: Any) -> tuple:
    w = draw(st.integers(8, 64))
    h = draw(st.integers(8, 48))
    fx = draw(st.floats(50.0, 3000.0))
    fy = fx * draw(st.floats(0.8, 1.25))
    cx = draw(st.floats(0.0, w - 1.0))
    cy = draw(st.floats(0.0, h - 1.0))
    cx_r = cx + draw(st.floats(-20.0, 20.0))  # verged rectification
    b = draw(st.floats(MIN_BASELINE_M * 1.001, MAX_BASELINE_M * 0.999))  # -(-fx*b)/fx may round
    pl = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    pr = [fx, 0.0, cx_r, -fx * b, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return pl, pr, w, h, b


@SETTINGS
@given(cameras(), st.integers(1, 4), st.data())
def test_depth_points_projection_round_trip(cam, step, data):
    pl, pr, w, h, b = cam
    g = geometry_from_projections(pl, pr, w, h)
    assert g.baseline == pytest.approx(b, rel=1e-9)
    assert (g.fx, g.fy, g.cx, g.cy, g.cx_right) == pytest.approx((pl[0], pl[5], pl[2], pl[6], pr[2]))
    disp = data.draw(arrays(np.float32, (h, w), elements=st.floats(0.5, 300.0, width=32)))
    depth = disparity_to_depth(disp, g)
    np.testing.assert_allclose(depth, g.fx * g.baseline / disp.astype(np.float64), rtol=1e-5)
    # Depth -> disparity again.
    np.testing.assert_allclose(g.fx * g.baseline / depth, disp, rtol=1e-5)
    pts = depth_to_points(depth, g, step)
    sub = depth[::step, ::step]
    assert pts.shape == sub.shape + (3,)
    np.testing.assert_array_equal(pts[..., 2], sub)
    u, v = project_points(pts.reshape(-1, 3), g)
    vv, uu = np.meshgrid(np.arange(0, h, step), np.arange(0, w, step), indexing="ij")
    np.testing.assert_allclose(u, uu.ravel(), atol=1e-3 * max(1.0, w))
    np.testing.assert_allclose(v, vv.ravel(), atol=1e-3 * max(1.0, h))


@SETTINGS
@given(cameras(), st.floats(0.0, 100.0), st.floats(0.0, 100.0))
def test_depth_limits_mark_outside_as_nan(cam, lo, span):
    pl, pr, w, h, _ = cam
    g = geometry_from_projections(pl, pr, w, h)
    disp = np.linspace(0.5, 200.0, w * h, dtype=np.float32).reshape(h, w)
    hi = lo + span
    z = disparity_to_depth(disp, g, min_depth=lo, max_depth=hi)
    full = g.fx * g.baseline / disp
    inside = (full >= lo) & (full <= hi)
    assert np.all(np.isnan(z[~inside]))
    np.testing.assert_allclose(z[inside], full[inside], rtol=1e-5)
    assert np.all(np.isnan(disparity_to_depth(-disp, g)))  # d <= 0 never gives a depth


_P_VALUE = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.0, -1.0]))


@SETTINGS
@given(pl=st.lists(_P_VALUE, min_size=0, max_size=14), pr=st.lists(_P_VALUE, min_size=0, max_size=14),
       w=st.integers(-2, 100), h=st.integers(-2, 100))
def test_bad_projections_raise_geometry_error_or_give_a_positive_baseline(pl, pr, w, h):
    try:
        g = geometry_from_projections(pl, pr, w, h)
    except GeometryError as exc:
        assert str(exc)
        return
    assert isinstance(g, StereoGeometry)
    assert math.isfinite(g.baseline) and MIN_BASELINE_M <= g.baseline <= MAX_BASELINE_M
    assert g.fx > 0 and g.fy > 0 and g.width > 0 and g.height > 0


@SETTINGS
@given(cameras(), st.sampled_from(["zero_tx", "positive_tx", "nan", "inf", "zero_fx", "neg_fy", "mm",
                                   "fx_mismatch", "short"]))
def test_each_broken_calibration_is_a_geometry_error(cam, how):
    pl, pr, w, h, b = cam
    pl, pr = list(pl), list(pr)
    if how == "zero_tx":
        pr[3] = 0.0
    elif how == "positive_tx":
        pr[3] = abs(pr[3])          # left and right swapped: negative baseline
    elif how == "nan":
        pl[0] = float("nan")
    elif how == "inf":
        pr[3] = float("-inf")
    elif how == "zero_fx":
        pl[0] = pr[0] = 0.0
    elif how == "neg_fy":
        pl[5] = -pl[5]
    elif how == "mm":
        pr[3] = -pr[0] * b * 1000.0 if b * 1000 > MAX_BASELINE_M else -pr[0] * MAX_BASELINE_M * 2
    elif how == "fx_mismatch":
        pr[0] *= 1.5
    else:
        pr = pr[:9]
    with pytest.raises(GeometryError):
        geometry_from_projections(pl, pr, w, h)
