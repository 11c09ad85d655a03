"""Disparity accuracy metrics: the one implementation used by training, evaluation and
benchmarks. Pure numpy; torch tensors are accepted and moved to the CPU.

All errors are in pixels of the ground truth's resolution and are computed over *valid
ground truth only*:

- KITTI (``dataset="kitti"``): gt > 0 (zero encodes "no measurement");
- Middlebury / SceneFlow / synthetic: gt finite (Middlebury encodes unknown as inf), and,
  when ``max_disparity`` is given, gt < max_disparity (outside the searched range).

A prediction that is not finite (or is flagged invalid through ``pred_valid``) counts as
an error of the full magnitude |gt| for EPE and as bad for every threshold, so a sparse
output cannot look better by dropping hard pixels; ``density`` reports the fraction of
valid-gt pixels that have a valid prediction.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

import numpy as np

BAD_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def valid_gt_mask(gt: Any, max_disparity: Optional[float] = None,
                  zero_is_invalid: bool = False) -> np.ndarray:
    """Boolean mask of pixels whose ground truth counts (see module docstring)."""
    g = _np(gt)
    mask = np.isfinite(g)
    if zero_is_invalid:
        mask &= g > 0
    if max_disparity is not None:
        mask &= g < max_disparity
    return mask


def disparity_metrics(pred: Any, gt: Any, max_disparity: Optional[float] = None,
                      zero_is_invalid: bool = False, pred_valid: Any = None,
                      thresholds: Iterable[float] = BAD_THRESHOLDS) -> Dict[str, float]:
    """EPE, D1 (KITTI: error > 3 px and > 5 % of gt), bad-t (% with error > t px), density.

    Returns percentages for D1/bad-* and density, pixels for EPE, and ``valid_pixels``.
    With no valid ground-truth pixel every metric is NaN (never a misleading 0).
    """
    p = _np(pred)
    g = _np(gt)
    if p.shape != g.shape:
        p = np.squeeze(p)
        g = np.squeeze(g)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    mask = valid_gt_mask(g, max_disparity, zero_is_invalid)
    n = int(mask.sum())
    thresholds = tuple(thresholds)
    if n == 0:
        out = {"epe": float("nan"), "d1": float("nan"), "density": float("nan"), "valid_pixels": 0}
        out.update({f"bad{t:g}": float("nan") for t in thresholds})
        return out
    pv = np.isfinite(p)
    if pred_valid is not None:
        pv &= _np(pred_valid).astype(bool).reshape(pv.shape)
    gm = g[mask]
    pvm = pv[mask]
    err = np.where(pvm, np.abs(np.where(pv, p, 0.0)[mask] - gm), np.abs(gm))
    bad_always = ~pvm
    out = {
        "epe": float(err.mean()),
        "d1": float(100.0 * np.mean(((err > 3.0) & (err > 0.05 * np.abs(gm))) | bad_always)),
        "density": float(100.0 * pvm.mean()),
        "valid_pixels": n,
    }
    for t in thresholds:
        out[f"bad{t:g}"] = float(100.0 * np.mean((err > t) | bad_always))
    return out


def mean_metrics(per_frame: Iterable[Dict[str, float]]) -> Dict[str, float]:
    """Pixel-weighted mean of per-frame metric dicts (frames without valid gt are skipped)."""
    frames = [m for m in per_frame if m.get("valid_pixels", 0) > 0]
    if not frames:
        return {}
    w = np.array([m["valid_pixels"] for m in frames], dtype=np.float64)
    keys = [k for k in frames[0] if k != "valid_pixels"]
    out = {k: float(np.sum(w * np.array([m[k] for m in frames])) / w.sum()) for k in keys}
    out["valid_pixels"] = int(w.sum())
    out["frames"] = len(frames)
    return out


def metrics_line(m: Dict[str, float]) -> str:
    """One human line of a ``mean_metrics`` result (terminal summaries of demo and eval)."""
    if not m:
        return "accuracy: no frame with ground truth"
    return (f"accuracy vs gt ({m['frames']} frames): EPE {m['epe']:.2f} px, D1 {m['d1']:.1f} %, "
            f"bad1 {m['bad1']:.1f} %, bad2 {m['bad2']:.1f} %, bad4 {m['bad4']:.1f} %, "
            f"density {m['density']:.1f} %")
