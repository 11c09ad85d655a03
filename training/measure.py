"""Re-measure the numbers of the model card, through the node's own engine.

    python -m training.measure [--checkpoint W.pt] [--data ../shared/data/real_stereo] \
        [--figures out/measure] [--json out/measure/measure.json]

Every prediction comes from :class:`stereonet_ros.engine.StereoEngine` fed 8-bit RGB, as the
node feeds it (grey pairs replicated to three channels), and every comparison is against
:mod:`stereonet_ros.tools.baseline` (the bench's SGBM too).

1. Real validation pairs (``--data``, one folder per pair): the validation split of
   ``training.datasets.family_split`` (every ``--val-every``-th pair of the training
   families, all pairs of other families), never trained on. Per family and overall:
   StereoNet dense (every pixel), StereoNet published (pixels the node marks invalid - no
   match inside the right image - count as errors), SGBM with holes filled from the left,
   SGBM as published (holes count as errors); SGBM searches each pair's ground-truth range
   (:func:`sgbm_range`, in its favour). ``--figures`` writes one PNG per pair: left,
   ground truth, StereoNet, SGBM, and both error maps.
2. Synthetic validation scenes (seeds never used for training), visible and occluded
   pixels reported apart (occluded: no consistent match in the right view).
3. The scikit-image motorcycle pair (Middlebury 2014, held out, never trained or selected
   on), for continuity with earlier model cards.
4. ``--knobs``: the node's speed knobs, each scored through the engine with its time.

All errors in pixels of the evaluated resolution; D1 and bad-N in %.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from stereonet_ros.tools.baseline import fill_holes_from_left, sgbm_disparity
from stereonet_ros.checkpoint import LoadedCheckpoint, load_checkpoint
from stereonet_ros.engine import StereoEngine
from stereonet_ros.engine_config import EngineConfig
from stereonet_ros.tools.figures import label
from stereonet_ros.tools.synthetic import (SyntheticConfig, fronto_parallel_pair, left_right_consistent,
                                           render_scene, to_uint8)
from stereonet_ros.messages import colorize_disparity
from stereonet_ros.metrics import disparity_metrics, mean_metrics
from stereonet_ros.pipeline import match_in_view

KEYS = ("epe", "d1", "bad0.5", "bad1", "bad2", "bad4", "density")
#: The four ways every real pair is scored (see the module docstring).
METHODS = ("stereonet_dense", "stereonet_published", "sgbm_filled", "sgbm_published")


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """(H, W) grey, (H, W, 3) RGB uint8 or float [0, 1] -> (H, W, 3) uint8 RGB, as the node
    hands images to the engine."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = to_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def predict(engine: StereoEngine, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Dense network disparity (H, W) in native pixels, through the node's engine."""
    return engine.infer(to_rgb8(left), to_rgb8(right), with_confidence=False).disparity


def sgbm_range(gt: np.ndarray, max_disparity: float) -> float:
    """SGBM's searched range for a pair: the ground truth's largest disparity (rounded up to
    SGBM's 16 by the baseline), capped at the model's range. An oracle choice in SGBM's
    favour: a range wider than the scene only adds columns SGBM leaves empty at the left
    border (x < numDisparities) and more chances of a false match."""
    finite = gt[np.isfinite(gt) & (gt < max_disparity)]
    return float(min(max_disparity, max(16.0, float(finite.max()) + 1.0))) if finite.size else max_disparity


def score_pair(engine: StereoEngine, left: np.ndarray, right: np.ndarray, gt: np.ndarray,
               max_disparity: float, *, sgbm_mode: str = "gt"
               ) -> Tuple[Dict[str, Dict[str, float]], Dict[str, np.ndarray]]:
    """Metrics of the four :data:`METHODS` on one pair (gt NaN = unknown) and the maps.
    Ground truth at or above ``max_disparity`` (the node's searched range) is not scored.
    ``sgbm_mode``: SGBM's numDisparities from each pair's ground truth (``'gt'``,
    :func:`sgbm_range`, its best case) or the node's range (``'model'``, what one configures
    once for a camera)."""
    if sgbm_mode not in ("gt", "model"):
        raise ValueError(f"sgbm_mode must be 'gt' or 'model', got {sgbm_mode!r}")
    pred = predict(engine, left, right)
    nd = sgbm_range(gt, max_disparity) if sgbm_mode == "gt" else max_disparity
    sg = sgbm_disparity(left, right, nd)
    maps = {"stereonet": pred, "sgbm": sg, "sgbm_filled": fill_holes_from_left(sg)}
    kw = dict(max_disparity=max_disparity)
    out = {
        "stereonet_dense": disparity_metrics(pred, gt, **kw),
        "stereonet_published": disparity_metrics(pred, gt, pred_valid=match_in_view(pred), **kw),
        "sgbm_filled": disparity_metrics(maps["sgbm_filled"], gt, **kw),
        "sgbm_published": disparity_metrics(sg, gt, **kw),
    }
    return out, maps


def validation_pairs(root: str, train_families: Sequence[str], val_every: int
                     ) -> Iterator[Tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """(family, pair name, left RGB uint8, right RGB uint8, gt px with NaN = unknown) of every
    validation pair under ``root``, read by the training loader (``FolderPairs``) and split
    by the training rule (``family_split``)."""
    from .datasets import FolderPairs, family_split

    ds = FolderPairs(root, require_disp=True)
    for i in family_split(ds.families, train_families, val_every, "val"):
        s = ds.load(i)
        yield ds.families[i], Path(ds.items[i][0]).parent.name, to_rgb8(s["left"]), to_rgb8(s["right"]), s["disp"]


def figure(left: np.ndarray, gt: np.ndarray, maps: Dict[str, np.ndarray], max_disparity: float,
           title: str) -> np.ndarray:
    """One BGR panel strip: left | gt | StereoNet | SGBM (holes black) over the top row,
    |error| maps (0..8 px) of StereoNet and SGBM-filled below, a label on each panel."""
    finite_gt = gt[np.isfinite(gt)]
    hi = float(np.percentile(finite_gt, 99)) if finite_gt.size else max_disparity

    def col(d: np.ndarray) -> np.ndarray:
        return colorize_disparity(np.nan_to_num(d, nan=0.0), np.isfinite(d), 0.0, hi)

    def err(d: np.ndarray) -> np.ndarray:
        e = np.abs(d - gt)
        return colorize_disparity(np.nan_to_num(e, nan=0.0), np.isfinite(e), 0.0, 8.0)

    grey = cv2.cvtColor(left, cv2.COLOR_RGB2BGR)
    top = [(grey, title), (col(gt), "ground truth"), (col(maps["stereonet"]), "StereoNet"),
           (col(maps["sgbm"]), "SGBM (holes black)")]
    bottom = [(np.zeros_like(grey), f"disparity 0..{hi:.0f} px, error 0..8 px"),
              (err(maps["stereonet"]), "|error| StereoNet"), (err(maps["sgbm_filled"]), "|error| SGBM filled"),
              (col(maps["sgbm_filled"]), "SGBM filled")]
    rows = [np.concatenate([label(np.ascontiguousarray(img), text) for img, text in panels], axis=1)
            for panels in (top, bottom)]
    return np.concatenate(rows, axis=0)


def real_validation(engine: StereoEngine, root: str, train_families: Sequence[str], val_every: int,
                    figures: Optional[str] = None, sgbm_mode: str = "gt") -> Dict[str, Any]:
    """Per-pair, per-family and overall metrics of :data:`METHODS` on the validation pairs."""
    maxd = float(engine.max_disparity)
    per_pair: List[Dict[str, Any]] = []
    for fam, name, left, right, gt in validation_pairs(root, train_families, val_every):
        m, maps = score_pair(engine, left, right, gt, maxd, sgbm_mode=sgbm_mode)
        per_pair.append({"family": fam, "pair": name, **m})
        if figures:
            os.makedirs(figures, exist_ok=True)
            cv2.imwrite(os.path.join(figures, f"{name}.png"), figure(left, gt, maps, maxd, name))
    fams = sorted({p["family"] for p in per_pair})
    summary = {fam: {k: _pair_mean([p[k] for p in per_pair if p["family"] == fam]) for k in METHODS}
               for fam in fams}
    summary["all"] = {k: _pair_mean([p[k] for p in per_pair]) for k in METHODS}
    return {"pairs": per_pair, "families": summary}


def _pair_mean(frames: List[Dict[str, float]]) -> Dict[str, float]:
    """Mean over pairs, each pair weighted equally (a dense Middlebury map must not outvote
    a sparse KITTI one); ``frames`` counts the pairs."""
    frames = [f for f in frames if f.get("valid_pixels", 0) > 0]
    if not frames:
        return {}
    out = {k: float(np.mean([f[k] for f in frames])) for k in frames[0] if k != "valid_pixels"}
    out["frames"] = len(frames)
    return out


def synthetic_val(engine: StereoEngine, n: int, seed_base: int, size: Tuple[int, int]) -> Dict[str, Dict[str, float]]:
    """StereoNet and SGBM (holes filled) on ``n`` held-out synthetic scenes, over all,
    visible and occluded ground-truth pixels apart (occluded: the left pixel has no
    consistent match in the right view, or it falls outside it)."""
    maxd = float(engine.max_disparity)
    cfg = SyntheticConfig(height=size[0], width=size[1], max_disparity=min(maxd, 0.25 * size[1]))
    acc: Dict[str, List[Dict[str, float]]] = {}
    for i in range(n):
        s = render_scene(seed_base + i, cfg)
        visible = left_right_consistent(s["disp"], s["disp_right"])
        pred = predict(engine, s["left"], s["right"])
        sg = fill_holes_from_left(sgbm_disparity(s["left"], s["right"], sgbm_range(s["disp"], maxd)))
        for name, d in (("stereonet", pred), ("sgbm_filled", sg)):
            for part, mask in (("all", None), ("visible", visible), ("occluded", ~visible)):
                gt = s["disp"] if mask is None else np.where(mask, s["disp"], np.nan)
                acc.setdefault(f"{name}_{part}", []).append(disparity_metrics(d, gt, max_disparity=maxd))
    return {k: mean_metrics(v) for k, v in acc.items()}


def plane_sweep(engine: StereoEngine, disparities: Sequence[float], size: Tuple[int, int] = (240, 320),
                seed: int = 0) -> List[Dict[str, float]]:
    """Median disparity read on the central region of textured fronto-parallel planes at
    each true disparity (px): the sub-pixel precision of the node's output."""
    rows = []
    for d in disparities:
        left, right = fronto_parallel_pair(float(d), size, seed)
        pred = predict(engine, left, right)
        h, w = size
        centre = pred[h // 4: 3 * h // 4, max(int(d) + 8, w // 4): 3 * w // 4]
        rows.append({"true": float(d), "median": float(np.median(centre)),
                     "error": float(np.median(centre) - d)})
    return rows


def motorcycle(engine: StereoEngine, sgbm_mode: str = "gt") -> Dict[str, Dict[str, float]]:
    """The scikit-image motorcycle pair (741x500, gt 7-60 px): the four METHODS."""
    import skimage.data

    l8, r8, gt = skimage.data.stereo_motorcycle()
    m, _ = score_pair(engine, l8, r8, gt.astype(np.float32), float(engine.max_disparity),
                      sgbm_mode=sgbm_mode)
    return m


#: Node parameter settings measured by ``--knobs`` (name, StereoEngine keyword arguments):
#: the checkpoint's operating point (the node's default), native size with every refiner
#: ("all" = the checkpoint's count), then one knob at a time from the operating point.
KNOBS: Tuple[Tuple[str, Dict[str, Any]], ...] = (
    ("operating point", {}), ("input_scale=1,refiners=all", {"input_scale": 1.0, "refiners": "all"}),
    ("input_scale=0.5", {"input_scale": 0.5}), ("refiners=0", {"refiners": 0}),
    ("max_disparity=64", {"max_disparity": 64.0}))


def knob_costs(ck: LoadedCheckpoint, n_synthetic: int, seed_base: int, size: Tuple[int, int],
               runs: int = 3) -> List[Dict[str, Any]]:
    """Accuracy and CPU time of each ``KNOBS`` setting through the node's engine.

    Synthetic: mean metrics over ``n_synthetic`` held-out scenes of ``size``. Motorcycle:
    dense metrics and the median ms of ``runs`` frames (741x500, uint8 input as the node
    feeds it). All disparities in native pixels.
    """
    import skimage.data

    maxd = ck.config.max_disparity
    cfg = SyntheticConfig(height=size[0], width=size[1], max_disparity=min(float(maxd), 0.25 * size[1]))
    scenes = [render_scene(seed_base + i, cfg) for i in range(n_synthetic)]
    l8, r8, gt = skimage.data.stereo_motorcycle()
    gt = gt.astype(np.float32)
    rows = []
    for name, kw in KNOBS:
        kw = {k: (ck.config.num_refiners if v == "all" else v) for k, v in kw.items()}
        eng = StereoEngine(loaded=ck, device="cpu", precision="fp32", **kw)
        syn = [disparity_metrics(predict(eng, sc["left"], sc["right"]), sc["disp"], max_disparity=maxd)
               for sc in scenes]
        eng.infer(l8, r8, with_confidence=False)  # warm-up: oneDNN primitives for this shape
        times = []
        for _ in range(max(1, runs)):
            t = time.perf_counter()
            pred = eng.infer(l8, r8, with_confidence=False).disparity
            times.append(1000.0 * (time.perf_counter() - t))
        rows.append({"knob": name, "engine": eng.describe(), "synthetic": mean_metrics(syn) if syn else {},
                     "motorcycle": disparity_metrics(pred, gt, max_disparity=maxd),
                     "motorcycle_ms": float(np.median(times))})
    return rows


LABELS = {"stereonet_dense": "StereoNet, dense", "stereonet_published": "StereoNet, as published",
          "sgbm_filled": "SGBM, holes filled", "sgbm_published": "SGBM, as published (holes = errors)"}


def markdown(res: Dict[str, Any]) -> str:
    """The model card's tables from a result dict of :func:`main` (so numbers are pasted,
    never retyped)."""
    cols = ("epe", "bad1", "bad2", "d1", "density")
    head = "| method | " + " | ".join(("EPE px", "bad-1 %", "bad-2 %", "D1 %", "density %")) + " |\n" + \
        "|---" * (len(cols) + 1) + "|\n"
    out: List[str] = []

    def table(block: Dict[str, Dict[str, float]]) -> str:
        best = {c: min(block[m].get(c, float("inf")) for m in METHODS if m in block) for c in cols if c != "density"}
        rows = []
        for m in METHODS:
            if m not in block or not block[m]:
                continue
            cells = []
            for c in cols:
                v = block[m].get(c, float("nan"))
                txt = f"{v:.2f}" if c == "epe" else f"{v:.1f}"
                cells.append(f"**{txt}**" if c in best and v == best[c] else txt)
            rows.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
        return head + "\n".join(rows) + "\n"

    rv = res.get("real_validation")
    if rv:
        for fam, block in rv["families"].items():
            n = next(iter(block.values()), {}).get("frames", 0)
            out.append(f"**{fam}** ({n} pair{'s' if n != 1 else ''})\n\n" + table(block))
    if "motorcycle" in res:
        out.append("**motorcycle** (held out)\n\n" + table(res["motorcycle"]))
    if "planes" in res:
        out.append("| true px | " + " | ".join(f"{r['true']:g}" for r in res["planes"]) + " |\n" +
                   "|---" * (len(res["planes"]) + 1) + "|\n| read px | " +
                   " | ".join(f"{r['median']:.2f}" for r in res["planes"]) + " |\n")
    return "\n".join(out)


def _row(name: str, m: Dict[str, float]) -> str:
    vals = "".join(f"{m.get(k, float('nan')):>9.2f}" for k in KEYS)
    return f"{name:<34}{vals}"


def _header() -> str:
    return f"{'':<34}" + "".join(f"{k:>9}" for k in KEYS)


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/real_stereo",
                   help="folder of real pairs with ground truth, one folder per pair ('' = skip)")
    p.add_argument("--train-families", default="kitti2012",
                   help="comma-separated families the model trained on (their split is held out)")
    p.add_argument("--val-every", type=int, default=10)
    p.add_argument("--figures", default=None, help="write one PNG per real validation pair here "
                   "(default: figures/ beside --json)")
    p.add_argument("--synthetic-count", type=int, default=32)
    p.add_argument("--synthetic-seed-base", type=int, default=1_000_000_000)
    p.add_argument("--synthetic-size", default="256x512", help="HxW of synthetic val scenes")
    p.add_argument("--planes", default="4,6,12,20,28,36,44,52,60,75,90,105,120",
                   help="true disparities of the fronto-parallel plane sweep ('' = skip)")
    p.add_argument("--sgbm-range", choices=("gt", "model"), default="gt",
                   help="SGBM's numDisparities: each pair's ground-truth range (its best case, "
                        "default) or the node's searched range")
    # The node's engine settings; default precision fp32 (the node's auto is bf16 on CPUs with
    # native bf16): the model card's tables, comparable across machines.
    EngineConfig.add_arguments(p, only=("checkpoint", "precision", "num_threads", "input_scale", "max_disparity", "refiners",
                                     "backend"),
                               precision="fp32")
    p.add_argument("--knobs", action="store_true", help="also score the node's speed knobs")
    p.add_argument("--knob-scenes", type=int, default=16, help="synthetic scenes per knob setting")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    p.add_argument("--markdown", default=None, help="also write the model card's tables here")
    a = p.parse_args(argv)
    if a.figures is None and a.json:
        a.figures = os.path.join(os.path.dirname(os.path.abspath(a.json)), "figures")
    ck = load_checkpoint(a.checkpoint)
    engine = EngineConfig.from_args(a, device="cpu").build(loaded=ck)
    res: Dict[str, Any] = {"checkpoint": ck.path, "config": ck.config.to_dict(), "engine": engine.describe(),
                           "sgbm_range": a.sgbm_range}
    print(f"engine: {engine.describe()}")
    if a.data:
        fams = [f for f in a.train_families.split(",") if f]
        res["real_validation"] = real_validation(engine, a.data, fams, a.val_every, a.figures, a.sgbm_range)
        print(f"\nreal validation pairs ({a.data}; held out: every {a.val_every}th of {fams}, all of the rest)")
        print(_header())
        for fam, block in res["real_validation"]["families"].items():
            n = next(iter(block.values()), {}).get("frames", 0)
            for meth in METHODS:
                print(_row(f"{fam} ({n}) {meth}", block[meth]))
    h, w = (int(v) for v in a.synthetic_size.lower().split("x"))
    if a.synthetic_count > 0:
        res["synthetic_val"] = synthetic_val(engine, a.synthetic_count, a.synthetic_seed_base, (h, w))
        print(f"\nsynthetic validation ({a.synthetic_count} scenes {h}x{w}, seeds {a.synthetic_seed_base}+i)")
        print(_header())
        for k, m in res["synthetic_val"].items():
            print(_row(k, m))
    if a.planes:
        res["planes"] = plane_sweep(engine, [float(v) for v in a.planes.split(",")])
        print("\nfronto-parallel planes: true -> median read (error)")
        print("  " + ", ".join(f"{r['true']:g} -> {r['median']:.2f} ({r['error']:+.2f})" for r in res["planes"]))
    res["motorcycle"] = motorcycle(engine, a.sgbm_range)
    print("\nmotorcycle (held out, never trained or selected on)")
    print(_header())
    for meth in METHODS:
        print(_row(meth, res["motorcycle"][meth]))
    if a.knobs:
        res["knobs"] = knob_costs(ck, a.knob_scenes, a.synthetic_seed_base, (h, w))
        print(f"\nknobs through the node's engine (fp32; synthetic {a.knob_scenes} scenes {h}x{w}; motorcycle):")
        print(f"{'knob':<28}{'syn EPE':>9}{'syn D1':>9}{'moto EPE':>9}{'moto D1':>9}{'moto bad2':>10}{'ms':>8}{'x base':>8}")
        base_ms = res["knobs"][0]["motorcycle_ms"]
        for r in res["knobs"]:
            sy, mo = r["synthetic"], r["motorcycle"]
            print(f"{r['knob']:<28}{sy.get('epe', float('nan')):>9.2f}{sy.get('d1', float('nan')):>9.1f}"
                  f"{mo['epe']:>9.2f}{mo['d1']:>9.1f}{mo['bad2']:>10.1f}{r['motorcycle_ms']:>8.0f}"
                  f"{r['motorcycle_ms'] / base_ms:>8.2f}")
    print("(EPE px; D1, bad-N, density %; 'published' counts the node's invalid pixels, and SGBM's holes, as errors)")
    if a.markdown:
        Path(a.markdown).write_text(markdown(res))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
