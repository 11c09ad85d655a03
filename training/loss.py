"""Barron's general and adaptive robust loss (J. T. Barron, CVPR 2019, arXiv 1701.03077).

    rho(x, alpha, c) = |alpha - 2| / alpha * (((x / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1)

with its limits: alpha = 2 -> 0.5 (x/c)^2 (L2), alpha = 0 -> log(0.5 (x/c)^2 + 1) (Cauchy),
alpha -> -inf -> 1 - exp(-0.5 (x/c)^2) (Welsch); alpha = 1 -> sqrt((x/c)^2 + 1) - 1
(pseudo-Huber / smooth L1). StereoNet uses alpha = 1, c = 2: quadratic below ~2 px of error
and linear (slope 1/c) beyond, so large early errors do not dominate.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F

from stereonet_ros.model import warp_horizontal

# Within this distance of alpha = 0 or 2 the general formula loses precision (0/0); use the
# closed-form limit there instead (the function is continuous in alpha).
_ALPHA_EPS = 1e-6


def robust_loss(x: torch.Tensor, alpha: float = 1.0, c: float = 2.0) -> torch.Tensor:
    """Elementwise rho(x, alpha, c); x is a residual (e.g. disparity error in pixels).

    ``c > 0`` is the scale (same units as x) of the quadratic bowl; ``alpha`` the shape.
    Differentiable with finite gradients for every finite x (including x = 0).
    """
    if not c > 0:
        raise ValueError(f"scale c must be > 0, got {c}")
    alpha = float(alpha)
    z = (x / c) ** 2
    if abs(alpha - 2.0) < _ALPHA_EPS:
        return 0.5 * z
    if abs(alpha) < _ALPHA_EPS:
        return torch.log1p(0.5 * z)
    if math.isinf(alpha) and alpha < 0:
        return -torch.expm1(-0.5 * z)
    b = abs(alpha - 2.0)
    return (b / alpha) * (torch.pow(z / b + 1.0, 0.5 * alpha) - 1.0)


class RobustLoss(torch.nn.Module):
    """Module form of :func:`robust_loss` with fixed ``alpha`` and ``c``."""

    def __init__(self, alpha: float = 1.0, c: float = 2.0) -> None:
        super().__init__()
        if not c > 0:
            raise ValueError(f"scale c must be > 0, got {c}")
        self.alpha = float(alpha)
        self.c = float(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return robust_loss(x, self.alpha, self.c)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, c={self.c}"


def distribution_target(gt: torch.Tensor, candidates: int, step: float, kind: str = "twohot",
                        laplace_scale: float = 1.0) -> torch.Tensor:
    """Target distribution over the ``candidates`` disparity bins for ground truth ``gt``.

    ``gt``: (B, 1, H, W) disparities in full-resolution pixels (invalid pixels may hold any
    finite value; mask them in the loss). Bin ``i`` stands for disparity ``i * step``.
    ``twohot`` splits each pixel's mass between its two nearest bins so that the expectation
    over bins is exactly ``gt`` (the soft-argmin's own read-out); ``laplace`` puts
    ``exp(-|i - gt/step| / laplace_scale)`` (scale in bins) on every bin, normalised.
    Returns (B, D, H, W), summing to 1 over D.
    """
    g = (gt / step).clamp(0.0, candidates - 1.0)
    if kind == "twohot":
        lo = g.floor().clamp(max=candidates - 2)
        w_hi = g - lo
        bins = torch.arange(candidates, device=gt.device, dtype=gt.dtype).view(1, -1, 1, 1)
        return (bins == lo).to(gt.dtype) * (1.0 - w_hi) + (bins == lo + 1).to(gt.dtype) * w_hi
    if kind == "laplace":
        if not laplace_scale > 0:
            raise ValueError(f"laplace_scale must be > 0 bins, got {laplace_scale}")
        bins = torch.arange(candidates, device=gt.device, dtype=gt.dtype).view(1, -1, 1, 1)
        return torch.softmax(-(bins - g).abs() / laplace_scale, dim=1)
    raise ValueError(f"unknown distribution target {kind!r} (twohot, laplace)")


def distribution_cross_entropy(cost: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
                               step: float, kind: str = "twohot",
                               laplace_scale: float = 1.0) -> torch.Tensor:
    """Mean cross-entropy between the matching distribution ``softmax(-cost)`` and the target
    of :func:`distribution_target`, over ``mask`` pixels.

    Why: the soft-argmin's gradient ``p_i (d_i - E[d])`` vanishes once the distribution
    collapses onto one bin, so a disparity loss alone leaves the coarse output stuck on the
    ``step``-pixel grid; this term keeps mass on both neighbouring bins, i.e. sub-bin
    precision. ``cost``: (B, D, H, W), the coarse cost already resampled to the ground
    truth's (B, 1, H, W) grid by the caller (``StereoNet.upsample_level`` knows where the
    coarse pixels sit; sparse ground truth is then used exactly). Returns a scalar (0 with a
    graph when no pixel is valid).
    """
    if cost.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f"cost {tuple(cost.shape[-2:])} and ground truth {tuple(gt.shape[-2:])} differ in "
                         "size: resample the cost with StereoNet.upsample_level first")
    logp = torch.log_softmax(-cost, dim=1)
    gt0 = torch.where(mask, gt, torch.zeros_like(gt))
    target = distribution_target(gt0, cost.shape[1], step, kind, laplace_scale)
    ce = -(target * logp).sum(1, keepdim=True)
    return (ce * mask).sum() / mask.sum().clamp(min=1)


# ----------------------------------------------------------------------------- self-supervision

def warp_by_disparity(source: torch.Tensor, disp: torch.Tensor, direction: int = -1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sample ``source`` (B, C, H, W) at ``x + direction * disp`` (bilinear, border padded).

    ``direction=-1`` reconstructs the left view from the right one with a left disparity
    (x_r = x_l - d); ``+1`` the right view from the left with a right disparity. Returns the
    warped image and the (B, 1, H, W) mask of pixels whose source column is inside the image.
    """
    w = source.shape[-1]
    warped = warp_horizontal(source, disp, direction=direction)
    x_src = torch.arange(w, device=source.device, dtype=disp.dtype).view(1, 1, 1, w) + direction * disp
    inside = ((x_src >= 0) & (x_src <= w - 1)).to(source.dtype)
    return warped, inside


def ssim_dissimilarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel over 3x3 windows (B, C, H, W) -> (B, 1, H, W), in [0, 1]."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pad = lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    mu_x, mu_y = F.avg_pool2d(pad(x), 3, 1), F.avg_pool2d(pad(y), 3, 1)
    sx = F.avg_pool2d(pad(x * x), 3, 1) - mu_x ** 2
    sy = F.avg_pool2d(pad(y * y), 3, 1) - mu_y ** 2
    sxy = F.avg_pool2d(pad(x * y), 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sx + sy + c2))
    return ((1.0 - ssim) / 2.0).clamp(0.0, 1.0).mean(1, keepdim=True)


def photometric_loss(left: torch.Tensor, right: torch.Tensor, disp: torch.Tensor,
                     ssim_weight: float = 0.85) -> torch.Tensor:
    """Mean reconstruction error of the left view rebuilt from the right one with ``disp``
    (B, 1, H, W, px): ``ssim_weight`` * SSIM dissimilarity + (1 - ``ssim_weight``) * L1, on
    images in [0, 1], over pixels whose match lies inside the right image."""
    warped, inside = warp_by_disparity(right, disp, -1)
    err = ssim_weight * ssim_dissimilarity(left, warped) + \
        (1.0 - ssim_weight) * (left - warped).abs().mean(1, keepdim=True)
    return (err * inside).sum() / inside.sum().clamp(min=1)


def smoothness_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness: disparity gradients (scale-normalised by the mean
    disparity) weighted by exp(-|image gradient|), so depth may jump where the image does."""
    d = disp / disp.mean(dim=(2, 3), keepdim=True).clamp(min=1e-3)
    dx, dy = (d[..., :, 1:] - d[..., :, :-1]).abs(), (d[..., 1:, :] - d[..., :-1, :]).abs()
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-10.0 * ix)).mean() + (dy * torch.exp(-10.0 * iy)).mean()


def left_right_consistency_loss(disp_left: torch.Tensor, disp_right: torch.Tensor) -> torch.Tensor:
    """Mean |d_l(x) - d_r(x - d_l(x))| (px) over pixels whose match is inside the image."""
    right_at_match, inside = warp_by_disparity(disp_right, disp_left, -1)
    return ((disp_left - right_at_match).abs() * inside).sum() / inside.sum().clamp(min=1)
