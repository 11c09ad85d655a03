"""Barron's general robust loss: closed forms, limits, gradients."""
import math

import pytest
import torch

from training.loss import RobustLoss, robust_loss

X = torch.linspace(-20, 20, 401, dtype=torch.float64)


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_closed_forms(c):
    z = (X / c) ** 2
    torch.testing.assert_close(robust_loss(X, 2.0, c), 0.5 * z)
    torch.testing.assert_close(robust_loss(X, 0.0, c), torch.log(0.5 * z + 1))
    torch.testing.assert_close(robust_loss(X, 1.0, c), torch.sqrt(z + 1) - 1)
    torch.testing.assert_close(robust_loss(X, -math.inf, c), 1 - torch.exp(-0.5 * z))
    torch.testing.assert_close(robust_loss(X, -2.0, c), 2 * (1 - 1 / (0.25 * z + 1)))  # Geman-McClure


def test_continuous_in_alpha_near_limits():
    for a0 in (0.0, 2.0):
        for eps in (1e-3, -1e-3):
            torch.testing.assert_close(robust_loss(X, a0 + eps, 2.0), robust_loss(X, a0, 2.0),
                                       atol=0.02, rtol=5e-3)


@pytest.mark.parametrize("alpha", [-math.inf, -2.0, 0.0, 0.5, 1.0, 2.0, 4.0])
def test_zero_at_zero_nonnegative_finite_gradient(alpha):
    x = torch.tensor([0.0, 1e-6, -3.0, 50.0, 1e4], dtype=torch.float64, requires_grad=True)
    y = robust_loss(x, alpha, 2.0)
    assert y[0].item() == 0.0 and (y >= 0).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0].item() == 0.0


def test_alpha1_c2_is_linear_in_the_tail_and_module_form():
    # slope -> 1/c for large errors: big outliers do not dominate
    g = torch.autograd.functional.jacobian(lambda t: robust_loss(t, 1.0, 2.0).sum(),
                                           torch.tensor([1000.0], dtype=torch.float64))
    assert abs(g.item() - 0.5) < 1e-3
    m = RobustLoss(1.0, 2.0)
    torch.testing.assert_close(m(X), robust_loss(X, 1.0, 2.0))
    with pytest.raises(ValueError):
        robust_loss(X, 1.0, 0.0)
