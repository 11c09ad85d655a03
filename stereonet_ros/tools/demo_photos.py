"""Real photographs in the demo: StereoNet beside SGBM on rectified pairs with real calibration.

The pairs (``sample_pairs``):

- Middlebury 2014 *Motorcycle* as scikit-image ships it (``skimage.data.stereo_motorcycle``,
  741x500, a quarter of the original) with its ground-truth disparity; the calibration is
  the dataset's (fx 3979.911 px, principal points 1244.772 / 1369.115 px, baseline 193.001
  mm at 2964 px width) scaled by 1/4, so depth is metric to within the rescale's rounding;
- two OAK-D pairs (640x480 grey, no ground truth) from the MIT-licensed ``stereodemo``
  wheel, shipped in ``stereonet_ros/samples/oakd`` with their calibration and licence.

Each goes through the node's own per-frame code (``pipeline.process_pair``: the engine,
validity rules, depth, cloud; the node process minus transport) and through the project's
one SGBM baseline (``baseline.sgbm_disparity``, holes filled by ``fill_holes_from_left`` for
the dense comparison). The figure per pair: left image; StereoNet, SGBM (filled) and ground
truth (or SGBM with its holes) on one disparity colour scale with a colour bar; StereoNet's
depth (metres) and confidence with their bars; the point cloud with the camera axes; the
numbers. All colours are ``messages.colorize_disparity``, the node's disparity/color map.
Disparities are in the DisparityImage convention ``d = x_l - x_r - (cx_l - cx_r)`` (px).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from .figures import label, text_tile

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
OAKD_PAIRS = ("desk", "cycles")


@dataclass
class PhotoPair:
    """A rectified pair with the calibration of its images (pixels of these images, metres)."""

    name: str
    left: np.ndarray                 # (H, W) mono8 or (H, W, 3) rgb8
    right: np.ndarray
    fx: float                        # px (= fy)
    cx_left: float                   # px
    cx_right: float                  # px; cx_left - cx_right is the verged offset
    cy: float                        # px
    baseline: float                  # m
    gt_raw: Optional[np.ndarray]     # (H, W) float32 x_l - x_r px, NaN unknown; None = no ground truth
    source: str                      # where the pair comes from, and its licence

    @property
    def encoding(self) -> str:
        return "mono8" if self.left.ndim == 2 else "rgb8"


def motorcycle() -> Optional[PhotoPair]:
    """Middlebury 2014 Motorcycle from scikit-image (None when scikit-image is missing)."""
    try:
        import skimage.data
    except ImportError:
        return None
    left, right, gt = skimage.data.stereo_motorcycle()
    s = left.shape[1] / 2964.0          # the dataset's full width -> this copy's
    gt = np.where(np.isfinite(gt), gt, np.nan).astype(np.float32)
    return PhotoPair("motorcycle", left, right, 3979.911 * s, 1244.772 * s, 1369.115 * s, 1019.507 * s,
                     0.193001, gt, "Middlebury 2014 Motorcycle (Scharstein et al., GCPR 2014), via "
                     "scikit-image's stereo_motorcycle; calibration of the dataset scaled by 1/4")


def oakd_pair(name: str, root: Path = SAMPLES / "oakd") -> PhotoPair:
    """One of the shipped OAK-D pairs (``OAKD_PAIRS``) with the calibration shipped beside them."""
    cal = json.loads((root / "stereodemo_calibration.json").read_text())
    left = cv2.imread(str(root / f"{name}_left.png"), cv2.IMREAD_GRAYSCALE)
    right = cv2.imread(str(root / f"{name}_right.png"), cv2.IMREAD_GRAYSCALE)
    if left is None or right is None:
        raise FileNotFoundError(f"OAK-D sample '{name}' not found in {root}")
    return PhotoPair(f"oakd_{name}", left, right, float(cal["fx"]), float(cal["cx0"]), float(cal["cx1"]),
                     float(cal["cy"]), float(cal["baseline_meters"]), None,
                     "Luxonis OAK-D sample from the stereodemo wheel (Nicolas Burrus, MIT licence)")


def sample_pairs() -> List[PhotoPair]:
    """The demo's real pairs: the motorcycle (when scikit-image is there) and the OAK-D pairs."""
    pairs = [p for p in [motorcycle()] if p is not None]
    return pairs + [oakd_pair(n) for n in OAKD_PAIRS]


# ----------------------------------------------------------------------------- figure parts

def colour_tile(values: np.ndarray, valid: np.ndarray, lo: float, hi: float, title: str, unit: str,
                near_warm_low: bool = False, bar_width: int = 56) -> np.ndarray:
    """bgr8 tile: ``values`` coloured over [lo, hi] with ``messages.colorize_disparity`` (the
    node's map, high = warm; ``near_warm_low`` flips it so small values are warm, for depth),
    invalid black, a colour bar with its end values and ``unit`` at the right, ``title`` on top."""
    from ..messages import colorize_disparity
    h, w = values.shape
    v = np.asarray(values, np.float32)
    shown = (lo + hi - v) if near_warm_low else v
    img = colorize_disparity(np.nan_to_num(shown, nan=lo), valid & np.isfinite(v), lo, hi)
    ramp = np.linspace(hi, lo, h, dtype=np.float32)[:, None].repeat(14, 1)   # top = hi
    bar = colorize_disparity(ramp, np.ones_like(ramp, bool), lo, hi)
    side = np.zeros((h, bar_width, 3), np.uint8)
    side[:, 4:18] = bar
    top, bottom = (lo, hi) if near_warm_low else (hi, lo)
    for y, val in ((14, top), (h // 2, (lo + hi) / 2), (h - 18, bottom)):
        cv2.putText(side, f"{val:.3g}", (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(side, unit, (20, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (200, 200, 200), 1, cv2.LINE_AA)
    return label(np.hstack([img, side]), title)


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pad (black) or crop to w x h, so tiles of a row line up."""
    out = np.zeros((h, w, 3), np.uint8)
    hh, ww = min(h, img.shape[0]), min(w, img.shape[1])
    out[:hh, :ww] = img[:hh, :ww]
    return out


# ----------------------------------------------------------------------------- one pair

def run_pair(engine: Any, pair: PhotoPair) -> Dict[str, Any]:
    """StereoNet (through ``pipeline.process_pair``) and SGBM on one pair: arrays and metrics.

    Returns ``out`` (the FrameOutput), ``sgbm`` (published-convention px, NaN holes),
    ``sgbm_filled``, ``gt`` (published convention or None), ``metrics`` per method (None
    without gt) and ``ms`` per method (wall time on this machine).
    """
    from . import bag
    from .baseline import fill_holes_from_left, sgbm_disparity
    from .evaluate import frame_metrics
    from ..geometry import raw_to_published_disparity
    from ..metrics import disparity_metrics
    from ..pipeline import OutputOptions, process_pair
    h, w = pair.left.shape[:2]
    li = bag.make_camera_info(w, h, pair.fx, pair.baseline, cx=pair.cx_left, cy=pair.cy)
    ri = bag.make_camera_info(w, h, pair.fx, pair.baseline, cx=pair.cx_left, cy=pair.cy, right=True,
                              cx_right=pair.cx_right)
    lm = bag.make_image(pair.left, pair.encoding, 0, "left_optical")
    rm = bag.make_image(pair.right, pair.encoding, 0, "right_optical")
    opts = OutputOptions(want_confidence=True, want_points=True, want_color=True)
    process_pair(engine, lm, rm, li, ri, opts)   # warm-up: the first run of a size allocates
    t0 = time.perf_counter()
    out = process_pair(engine, lm, rm, li, ri, opts)
    net_ms = 1e3 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    # SGBM searches the node's raw range (x_l - x_r up to the engine's max_disparity)
    sgbm_raw = sgbm_disparity(pair.left, pair.right, float(engine.max_disparity))
    sgbm_ms = 1e3 * (time.perf_counter() - t0)
    sgbm = raw_to_published_disparity(sgbm_raw, out.geometry)
    filled = fill_holes_from_left(sgbm)
    gt = raw_to_published_disparity(pair.gt_raw, out.geometry) if pair.gt_raw is not None else None
    metrics = None
    if gt is not None:
        both = frame_metrics(out, gt)
        metrics = {"stereonet": both["published"], "stereonet_dense": both["dense"],
                   "sgbm": disparity_metrics(np.nan_to_num(sgbm, nan=-1.0), gt, max_disparity=out.max_disparity,
                                             pred_valid=np.isfinite(sgbm)),
                   "sgbm_filled": disparity_metrics(np.nan_to_num(filled, nan=-1.0), gt,
                                                    max_disparity=out.max_disparity)}
    return {"out": out, "sgbm": sgbm, "sgbm_filled": filled, "gt": gt, "metrics": metrics,
            "ms": {"stereonet": net_ms, "sgbm": sgbm_ms}, "sgbm_holes": float(np.mean(~np.isfinite(sgbm)))}


def pair_figure(pair: PhotoPair, r: Dict[str, Any]) -> np.ndarray:
    """The bgr8 figure of one pair: left | StereoNet | SGBM filled; ground truth (or SGBM with its
    holes) | StereoNet depth | SGBM depth; confidence | point cloud with axes; the numbers."""
    from .evaluate import render_cloud
    from ..geometry import disparity_to_depth
    out = r["out"]
    h, w = out.disparity.shape
    valid = out.valid
    ref = [out.disparity[valid]] + ([r["gt"][np.isfinite(r["gt"])]] if r["gt"] is not None else [])
    vals = np.concatenate(ref) if sum(a.size for a in ref) else np.array([0.0, 1.0], np.float32)
    lo, hi = (float(x) for x in np.percentile(vals, (1, 99)))
    hi = max(hi, lo + 1.0)
    left = pair.left if pair.left.ndim == 3 else np.repeat(pair.left[..., None], 3, 2)
    left_tile = label(np.hstack([left[..., ::-1], np.zeros((h, 56, 3), np.uint8)]), f"{pair.name}: left")
    net = colour_tile(out.disparity, valid, lo, hi, "StereoNet disparity (published)", "px")
    sg = colour_tile(r["sgbm_filled"], np.isfinite(r["sgbm_filled"]), lo, hi, "SGBM, holes filled from left", "px")
    if r["gt"] is not None:
        third = colour_tile(r["gt"], np.isfinite(r["gt"]), lo, hi, "ground truth", "px")
    else:
        third = colour_tile(r["sgbm"], np.isfinite(r["sgbm"]), lo, hi,
                            f"SGBM as computed ({100 * r['sgbm_holes']:.0f} % holes)", "px")
    depth = out.depth
    ok = np.isfinite(depth)
    zlo, zhi = (float(x) for x in np.percentile(depth[ok], (1, 99))) if ok.any() else (0.0, 1.0)
    dep = colour_tile(depth, ok, zlo, max(zhi, zlo + 0.1), "StereoNet depth (near = warm)", "m", near_warm_low=True)
    conf = out.confidence if out.confidence is not None else np.zeros((h, w), np.float32)
    con = colour_tile(conf, np.ones((h, w), bool), 0.0, 1.0, "StereoNet confidence", "0-1")
    sgbm_depth_ok = np.isfinite(r["sgbm"])
    sgbm_depth = disparity_to_depth(np.nan_to_num(r["sgbm"], nan=-1.0), out.geometry, sgbm_depth_ok)
    sdep = colour_tile(sgbm_depth, np.isfinite(sgbm_depth), zlo, max(zhi, zlo + 0.1), "SGBM depth (holes black)",
                       "m", near_warm_low=True)
    tw = w + 56
    # Two views of the cloud: near the camera's (shapes recognisable) and from the side (depth
    # errors visible as surfaces off their place).
    views = [label(render_cloud(out.points, out.rgb8, (tw, h), yaw_deg=yaw, pitch_deg=pitch, axes=True), title)
             for yaw, pitch, title in ((15.0, -10.0, "StereoNet cloud, 15 deg left"),
                                       (65.0, -15.0, "StereoNet cloud, from the side"))]
    lines = [pair.name, f"{w}x{h}, fx {pair.fx:.1f} px, baseline {pair.baseline:.3f} m",
             f"StereoNet {r['ms']['stereonet']:.0f} ms, SGBM {r['ms']['sgbm']:.0f} ms (this CPU)",
             f"SGBM holes {100 * r['sgbm_holes']:.1f} %"]
    m = r["metrics"]
    if m:
        for key, what in (("stereonet", "StereoNet published (invalid = errors)"),
                           ("stereonet_dense", "StereoNet dense"), ("sgbm", "SGBM (holes = errors)"),
                           ("sgbm_filled", "SGBM filled")):
            lines.append(f"{what}: EPE {m[key]['epe']:.2f} px, bad2 {m[key]['bad2']:.1f} %, D1 {m[key]['d1']:.1f} %")
    else:
        lines.append("no ground truth: compare by eye")
    lines.append(pair.source)
    text = text_tile(28 + 20 * len(lines), 3 * tw, lines)
    rows = [[left_tile, net, sg], [third, dep, sdep], [con, *views]]
    return np.vstack([np.hstack([_fit(t, t.shape[1], h) for t in row]) for row in rows] + [text])


def run(engine: Any, out_dir: Path, pairs: Optional[Sequence[PhotoPair]] = None) -> List[Dict[str, Any]]:
    """Every pair through ``run_pair``; figures ``photo_<name>.png`` in ``out_dir``; the report rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for pair in (sample_pairs() if pairs is None else pairs):
        r = run_pair(engine, pair)
        path = out_dir / f"photo_{pair.name}.png"
        cv2.imwrite(str(path), pair_figure(pair, r))
        rows.append({"name": pair.name, "source": pair.source, "size": list(pair.left.shape[1::-1]),
                     "figure": str(path), "metrics": r["metrics"], "ms": r["ms"], "sgbm_holes": r["sgbm_holes"],
                     "valid_fraction": float(r["out"].valid.mean())})
    return rows


def summary_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """One terminal line per pair (accuracy where there is ground truth)."""
    out = []
    for r in rows:
        m = r["metrics"]
        acc = (f"EPE StereoNet {m['stereonet']['epe']:.2f} px (dense {m['stereonet_dense']['epe']:.2f}) vs SGBM "
               f"{m['sgbm']['epe']:.2f} px (filled {m['sgbm_filled']['epe']:.2f})" if m else "no ground truth")
        out.append(f"  photo {r['name']}: {acc}; {r['ms']['stereonet']:.0f} ms vs {r['ms']['sgbm']:.0f} ms; "
                   f"{r['figure']}")
    return out
