"""Stereo geometry: CameraInfo -> rectified intrinsics and baseline; disparity -> depth -> xyz.

Conventions (REP 103/104/118, sensor_msgs/CameraInfo, stereo_msgs/DisparityImage):
- All intrinsics come from the *rectified* projection matrices P (3x4, row-major).
- Baseline ``T = -P_right[0,3] / P_right[0,0]`` in metres (P_right[0,3] = -fx' * T).
- Published disparity ``d = (x_l - x_r) - (cx_l - cx_r)`` in pixels, so that ``Z = f * T / d``
  holds even for verged rectification where the principal points differ.
- Points are in the left camera's *optical* frame: x right, y down, z forward, metres.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

# A baseline outside this range is almost certainly a unit error (mm instead of m) or a
# broken calibration; the node reports it instead of publishing a silently wrong cloud.
MIN_BASELINE_M = 1e-3
MAX_BASELINE_M = 10.0


class GeometryError(ValueError):
    """Camera parameters that cannot give metric depth."""


@dataclass(frozen=True)
class StereoGeometry:
    """Rectified stereo intrinsics in pixels and baseline in metres (left camera frame)."""

    fx: float
    fy: float
    cx: float          # left principal point x (pixels)
    cy: float          # left principal point y (pixels)
    cx_right: float    # right principal point x (pixels)
    baseline: float    # metres, positive when the right camera is to the right
    width: int
    height: int

    @property
    def cx_offset(self) -> float:
        """cx_l - cx_r: subtracted from the raw pixel shift to get DisparityImage's d."""
        return self.cx - self.cx_right


def _finite(*vals: float) -> bool:
    return all(math.isfinite(v) for v in vals)


def geometry_from_projections(p_left: Sequence[float], p_right: Sequence[float], width: int,
                              height: int, min_baseline: float = MIN_BASELINE_M,
                              max_baseline: float = MAX_BASELINE_M) -> StereoGeometry:
    """Build ``StereoGeometry`` from two row-major 3x4 rectified projection matrices.

    Raises ``GeometryError`` with the reason for: wrong length, non-finite values, zero or
    negative focal length, left/right focal lengths that disagree (not one rectified pair),
    a non-positive, NaN, or implausible baseline (outside [min_baseline, max_baseline] m).
    """
    pl = np.asarray(p_left, dtype=np.float64).ravel()
    pr = np.asarray(p_right, dtype=np.float64).ravel()
    if pl.size != 12 or pr.size != 12:
        raise GeometryError(f"projection matrices must have 12 elements, got {pl.size} and {pr.size}")
    if not np.all(np.isfinite(pl)) or not np.all(np.isfinite(pr)):
        raise GeometryError("projection matrix contains NaN or inf")
    fx, fy, cx, cy = pl[0], pl[5], pl[2], pl[6]
    fxr, cxr, txr = pr[0], pr[2], pr[3]
    if fx <= 0 or fy <= 0 or fxr <= 0:
        raise GeometryError(f"focal length must be positive (left fx={fx:g}, fy={fy:g}, right fx={fxr:g}); "
                            "is the camera calibrated (P all zeros)?")
    if abs(fx - fxr) > 1e-3 * fx:
        raise GeometryError(f"left fx={fx:g} and right fx={fxr:g} differ: not a rectified pair")
    baseline = -txr / fxr
    if not _finite(baseline) or baseline <= 0:
        raise GeometryError(
            f"baseline {baseline:g} m from right P[0,3]={txr:g} is not positive: "
            "P_right[0,3] must be -fx*T (are left and right swapped, or right P uncalibrated?)")
    if not min_baseline <= baseline <= max_baseline:
        raise GeometryError(f"baseline {baseline:g} m is implausible (expected {min_baseline:g}.."
                            f"{max_baseline:g} m; was the translation given in mm?)")
    if width <= 0 or height <= 0:
        raise GeometryError(f"camera_info size {width}x{height} is not positive")
    return StereoGeometry(float(fx), float(fy), float(cx), float(cy), float(cxr), float(baseline),
                          int(width), int(height))


def raw_calibration(d: Sequence[float], r: Sequence[float]) -> bool:
    """True when a camera_info carries a raw calibration: distortion D != 0 or R != I.

    Not a warning: image_proc's rectify (and most stereo drivers) republish the camera's
    raw camera_info unchanged next to the rectified image; its P is the projection of the
    rectified image and is all the node uses. Nothing in a camera_info tells raw images
    from rectified ones, so D and R are reported (diagnostics) but never judged.
    Raises ValueError/TypeError for arrays that are not numbers.
    """
    dd = np.asarray(d, dtype=np.float64).ravel()
    rr = np.asarray(r, dtype=np.float64).ravel()
    distorted = bool(dd.size and np.any(~np.isfinite(dd) | (np.abs(dd) > 1e-9)))  # NaN is not "zero"
    rotated = bool(rr.size == 9 and np.any(rr) and not np.allclose(rr.reshape(3, 3), np.eye(3), atol=1e-6))
    return distorted or rotated


def depth_to_millimetres(depth: np.ndarray) -> np.ndarray:
    """32FC1 metres (NaN invalid) -> 16UC1 millimetres, REP 118's integer depth.

    0 marks invalid pixels; depths that round outside 1..65535 mm (nearer than 0.5 mm or
    beyond 65.535 m) cannot be represented and become 0 (invalid) rather than wrap or clip.
    """
    z = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        mm = np.rint(z * np.float32(1000.0))
        ok = np.isfinite(mm) & (mm >= 1) & (mm <= 65535)
    return np.where(ok, mm, 0).astype(np.uint16)


def raw_to_published_disparity(raw: np.ndarray, geom: StereoGeometry) -> np.ndarray:
    """Network output (x_l - x_r, pixels) -> DisparityImage d = raw - (cx_l - cx_r)."""
    return raw - np.float32(geom.cx_offset)


def disparity_to_depth(disp: np.ndarray, geom: StereoGeometry, valid: Optional[np.ndarray] = None,
                       min_depth: float = 0.0, max_depth: float = math.inf) -> np.ndarray:
    """Z = f*T/d in metres (float32), NaN where invalid, d <= 0, or Z outside [min, max]."""
    d = np.asarray(disp, dtype=np.float32)
    ok = np.isfinite(d) & (d > 0)
    if valid is not None:
        ok &= valid
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.float32(geom.fx * geom.baseline) / d
    ok &= (z >= min_depth) & (z <= max_depth)
    return np.where(ok, z, np.float32(np.nan)).astype(np.float32, copy=False)


def depth_to_points(depth: np.ndarray, geom: StereoGeometry, step: int = 1) -> np.ndarray:
    """Back-project a depth image (metres) to (H', W', 3) float32 xyz in the left optical frame.

    X = (u - cx) Z / fx, Y = (v - cy) Z / fy, with u, v the pixel *centres* of the sampled
    grid (every ``step``-th pixel). NaN depth gives NaN points.
    """
    z = np.asarray(depth, dtype=np.float32)[::step, ::step]
    h, w = z.shape
    u = (np.arange(w, dtype=np.float32) * step - np.float32(geom.cx)) / np.float32(geom.fx)
    v = (np.arange(h, dtype=np.float32) * step - np.float32(geom.cy)) / np.float32(geom.fy)
    pts = np.empty((h, w, 3), dtype=np.float32)
    np.multiply(u[None, :], z, out=pts[..., 0])
    np.multiply(v[:, None], z, out=pts[..., 1])
    pts[..., 2] = z
    return pts


def project_points(points: np.ndarray, geom: StereoGeometry) -> Tuple[np.ndarray, np.ndarray]:
    """Inverse of ``depth_to_points``: (N, 3) xyz -> pixel (u, v) in the left image."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return geom.fx * p[:, 0] / p[:, 2] + geom.cx, geom.fy * p[:, 1] / p[:, 2] + geom.cy


def left_right_consistent(disp_left: np.ndarray, disp_right: np.ndarray,
                          threshold: float = 1.0) -> np.ndarray:
    """Mask of left pixels whose disparity agrees with the right view's at x - d.

    Both in pixels (x_l - x_r). Pixels whose match falls outside the right image fail.
    """
    h, w = disp_left.shape
    xs = np.arange(w, dtype=np.float32)[None, :] - disp_left
    xr = np.rint(xs).astype(np.int64)
    inside = (xr >= 0) & (xr < w) & np.isfinite(disp_left)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    dr = disp_right[rows, np.clip(xr, 0, w - 1)]
    return inside & (np.abs(dr - disp_left) <= threshold)
