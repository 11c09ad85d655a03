"""Barron's general and adaptive robust loss (J. T. Barron, CVPR 2019, arXiv 1701.03077).

    rho(x, alpha, c) = |alpha - 2| / alpha * (((x / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1)

with its limits: alpha = 2 -> 0.5 (x/c)^2 (L2), alpha = 0 -> log(0.5 (x/c)^2 + 1) (Cauchy),
alpha -> -inf -> 1 - exp(-0.5 (x/c)^2) (Welsch); alpha = 1 -> sqrt((x/c)^2 + 1) - 1
(pseudo-Huber / smooth L1). StereoNet uses alpha = 1, c = 2: quadratic below ~2 px of error
and linear (slope 1/c) beyond, so large early errors do not dominate.
"""
from __future__ import annotations

import math

import torch

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
