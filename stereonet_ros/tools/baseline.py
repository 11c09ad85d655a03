"""The classical reference: OpenCV StereoSGBM, the matcher stereo_image_proc runs.

One definition for every comparison the project makes (``training.measure`` for accuracy,
``stereonet_ros.tools.bench`` for speed), so speed and accuracy are quoted against the same
matcher. Settings are OpenCV's documented sample values, fixed and generic (not tuned to
any image): 5x5 blocks, P1 = 8·bs², P2 = 32·bs², uniqueness 10, speckle filter 100 / 2,
left-right check 1 px, 3-way dynamic programming, on grey images.

SGBM leaves holes (occlusions, low texture, failed checks). Accuracy is quoted both ways:
holes counted as errors (what a consumer of its output gets) and holes filled from the
left (:func:`fill_holes_from_left`, the usual background interpolation), the fairest dense
comparison.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

BLOCK_SIZE = 5


def num_disparities_for(max_disparity: float, width: int) -> int:
    """SGBM's numDisparities for a searched range of ``max_disparity`` px: a multiple of 16
    (SGBM's rule), at least 16, below the image width."""
    nd = int(16 * math.ceil(float(max_disparity) / 16.0))
    return max(16, min(nd, 16 * max(1, (int(width) - 1) // 16)))


def make_sgbm(num_disparities: int, block_size: int = BLOCK_SIZE) -> "cv2.StereoSGBM":
    """The project's StereoSGBM matcher (grey input) searching ``0..num_disparities-1`` px."""
    if num_disparities <= 0 or num_disparities % 16:
        raise ValueError(f"num_disparities must be a positive multiple of 16, got {num_disparities}")
    return cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=int(num_disparities), blockSize=block_size,
        P1=8 * block_size ** 2, P2=32 * block_size ** 2, disp12MaxDiff=1, uniquenessRatio=10,
        speckleWindowSize=100, speckleRange=2, preFilterCap=63, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)


def make_bm(num_disparities: int, block_size: int = 15) -> "cv2.StereoBM":
    """OpenCV's block matcher (stereo_image_proc's other algorithm), for speed comparisons
    only: ``0..num_disparities-1`` px, grey input, its default 15x15 window."""
    if num_disparities <= 0 or num_disparities % 16:
        raise ValueError(f"num_disparities must be a positive multiple of 16, got {num_disparities}")
    return cv2.StereoBM_create(numDisparities=int(num_disparities), blockSize=block_size)


def to_grey_u8(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) RGB image, uint8 or float in [0, 1] -> (H, W) uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(a)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, max_disparity: float,
                   matcher: "cv2.StereoSGBM | None" = None) -> np.ndarray:
    """SGBM disparity (H, W) float32 in pixels of the input; NaN where SGBM gives none.

    ``max_disparity``: searched range in px (rounded by :func:`num_disparities_for`);
    ignored when a prepared ``matcher`` is given (benchmarks reuse one).
    """
    lg, rg = to_grey_u8(left), to_grey_u8(right)
    if matcher is None:
        matcher = make_sgbm(num_disparities_for(max_disparity, lg.shape[1]))
    d = matcher.compute(lg, rg).astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    d[d < 0] = np.nan   # SGBM marks invalid as minDisparity - 1 (scaled): negative here
    return d


def fill_holes_from_left(disp: np.ndarray) -> np.ndarray:
    """Each non-finite pixel takes the nearest finite value to its left in its row (the
    background side for a left-view map); holes at a row's start take the first finite value
    to their right. Rows with no finite value stay NaN. Returns a new float32 array."""
    d = np.asarray(disp, np.float32)
    h, w = d.shape
    valid = np.isfinite(d)
    cols = np.where(valid, np.arange(w)[None, :], -1)
    last = np.maximum.accumulate(cols, axis=1)                 # last valid column at or left of x
    rev = np.where(valid, np.arange(w)[None, :], w)[:, ::-1]
    nxt = np.minimum.accumulate(rev, axis=1)[:, ::-1]           # first valid column at or right of x
    src = np.where(last >= 0, last, nxt)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    ok = src < w
    out = np.full_like(d, np.nan)
    out[ok] = d[rows[ok], src[ok]]
    return out
