"""Re-measure the numbers of the model card.

    python -m training.measure --checkpoint stereonet_ros/weights/stereonet_default.pt [--json out.json]

1. Synthetic validation: scenes ``val_seed_base + i`` (never used for training, whose seeds
   are 0 .. train_size-1) rendered at ``--synthetic-size``; metrics over gt < max_disparity.
2. Held-out real photographs: ``skimage.data.stereo_motorcycle()`` (Middlebury 2014
   Motorcycle, 741x500, gt 7-60 px, inf = unknown), StereoNet vs OpenCV StereoSGBM with
   fixed, generic parameters (numDisparities = the model's range rounded up to 16). SGBM's
   invalid pixels count as errors (``stereonet_ros.metrics`` rule, density reported); its
   accuracy on its own valid pixels is printed too.
3. CPU latency: median ms of a 640x480 forward (``torch.inference_mode``, current threads).
4. With ``--knobs``: the node's speed/accuracy knobs (``input_scale``, ``refiners``,
   ``max_disparity``) run through the node's own ``StereoEngine`` (fp32, CPU), each scored on
   the synthetic scenes and the motorcycle, with its time per motorcycle frame.

All errors in pixels of the evaluated resolution. Nothing here is tuned on the motorcycle.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stereonet_ros.checkpoint import LoadedCheckpoint, load_checkpoint
from stereonet_ros.engine import StereoEngine
from stereonet_ros.metrics import disparity_metrics, mean_metrics

KEYS = ("epe", "d1", "bad0.5", "bad1", "bad2", "bad4", "density")


def predict(ck: LoadedCheckpoint, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Disparity (H, W) in pixels for float RGB [0, 1] (H, W, 3) images; pads (replicate) to
    a multiple of 2^k at the bottom/right and crops back."""
    model = ck.model.eval()
    c = ck.config.in_channels
    mean = torch.tensor(ck.normalization.mean).view(1, -1, 1, 1)
    std = torch.tensor(ck.normalization.std).view(1, -1, 1, 1)

    def prep(img: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(img, np.float32)).permute(2, 0, 1)[None]
        if c == 1 and t.shape[1] == 3:
            t = (t * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return (t - mean) / std

    lt, rt = prep(left), prep(right)
    h, w = lt.shape[-2:]
    div = 2 ** ck.config.k
    ph, pw = (-h) % div, (-w) % div
    if ph or pw:
        lt = F.pad(lt, (0, pw, 0, ph), mode="replicate")
        rt = F.pad(rt, (0, pw, 0, ph), mode="replicate")
    with torch.inference_mode():
        d = model(lt, rt)["disparity"][0, 0, :h, :w]
    return d.float().numpy()


def sgbm(left: np.ndarray, right: np.ndarray, num_disparities: int, block_size: int = 5) -> np.ndarray:
    """OpenCV StereoSGBM with standard parameters (OpenCV sample values); invalid -> NaN."""
    nd = int(np.ceil(num_disparities / 16.0) * 16)
    cn = 3
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=nd, blockSize=block_size,
        P1=8 * cn * block_size ** 2, P2=32 * cn * block_size ** 2, disp12MaxDiff=1,
        uniquenessRatio=10, speckleWindowSize=100, speckleRange=2, preFilterCap=63,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    l8 = (np.clip(left, 0, 1) * 255).astype(np.uint8)[..., ::-1]
    r8 = (np.clip(right, 0, 1) * 255).astype(np.uint8)[..., ::-1]
    d = matcher.compute(np.ascontiguousarray(l8), np.ascontiguousarray(r8)).astype(np.float32) / 16.0
    d[d < 0] = np.nan
    return d


def synthetic_val(ck: LoadedCheckpoint, n: int, seed_base: int,
                  size: Tuple[int, int]) -> Tuple[Dict[str, float], Dict[str, float]]:
    """(StereoNet, SGBM) mean metrics over ``n`` held-out synthetic scenes."""
    from .synthetic import SyntheticConfig, render_scene

    maxd = ck.config.max_disparity
    cfg = SyntheticConfig(height=size[0], width=size[1], max_disparity=float(maxd))
    frames, frames_sgbm = [], []
    for i in range(n):
        s = render_scene(seed_base + i, cfg)
        pred = predict(ck, s["left"], s["right"])
        frames.append(disparity_metrics(pred, s["disp"], max_disparity=maxd))
        frames_sgbm.append(disparity_metrics(sgbm(s["left"], s["right"], maxd), s["disp"],
                                             max_disparity=maxd))
    return mean_metrics(frames), mean_metrics(frames_sgbm)


def motorcycle(ck: LoadedCheckpoint, sgbm_ranges: Tuple[int, ...] = (64,)) -> Dict[str, Dict[str, float]]:
    """StereoNet vs SGBM at each ``sgbm_ranges`` numDisparities (64 = just covers the
    motorcycle's 7-60 px gt, the strongest SGBM setting; the model's own range is added)."""
    import skimage.data

    l8, r8, gt = skimage.data.stereo_motorcycle()
    left, right = l8.astype(np.float32) / 255.0, r8.astype(np.float32) / 255.0
    gt = gt.astype(np.float32)
    maxd = ck.config.max_disparity
    t = time.perf_counter()
    pred = predict(ck, left, right)
    t_net = time.perf_counter() - t
    out = {"stereonet": disparity_metrics(pred, gt, max_disparity=maxd)}
    out["stereonet"]["seconds"] = t_net
    for nd in sorted(set(tuple(sgbm_ranges) + (maxd,))):
        t = time.perf_counter()
        sg = sgbm(left, right, nd)
        t_sgbm = time.perf_counter() - t
        out[f"sgbm{nd}"] = disparity_metrics(sg, gt, max_disparity=maxd)
        out[f"sgbm{nd}"]["seconds"] = t_sgbm
        # SGBM scored on its own valid pixels only (ignores its holes; for reference).
        out[f"sgbm{nd}_valid_only"] = disparity_metrics(sg, np.where(np.isfinite(sg), gt, np.nan),
                                                        max_disparity=maxd)
    return out


def latency_ms(ck: LoadedCheckpoint, height: int = 480, width: int = 640,
               runs: int = 5) -> Tuple[float, float]:
    """(median, min) milliseconds of one forward; min is the least disturbed by other load."""
    model = ck.model.eval()
    c = ck.config.in_channels
    x = torch.rand(1, c, height, width)
    y = torch.rand(1, c, height, width)
    times = []
    with torch.inference_mode():
        model(x, y)  # warm-up (allocator, oneDNN primitive cache)
        for _ in range(runs):
            t = time.perf_counter()
            model(x, y)
            times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times)), 1000.0 * float(np.min(times))


#: Node parameter settings measured by ``--knobs`` (name, StereoEngine keyword arguments).
KNOBS: Tuple[Tuple[str, Dict[str, Any]], ...] = (
    ("base", {}), ("input_scale=0.5", {"input_scale": 0.5}), ("refiners=1", {"refiners": 1}),
    ("refiners=0", {"refiners": 0}), ("max_disparity=64", {"max_disparity": 64.0}))


def knob_costs(ck: LoadedCheckpoint, n_synthetic: int, seed_base: int, size: Tuple[int, int],
               runs: int = 3) -> List[Dict[str, Any]]:
    """Accuracy and CPU time of each ``KNOBS`` setting through the node's engine.

    Synthetic: mean metrics over ``n_synthetic`` held-out scenes of ``size`` (gt up to the
    model's range, so a shorter ``max_disparity`` pays for what it no longer searches).
    Motorcycle: metrics and the median ms of ``runs`` frames (741x500, uint8 input as the node
    feeds it). All disparities in native pixels.
    """
    import skimage.data

    from .synthetic import SyntheticConfig, render_scene

    maxd = ck.config.max_disparity
    cfg = SyntheticConfig(height=size[0], width=size[1], max_disparity=float(maxd))
    scenes = [render_scene(seed_base + i, cfg) for i in range(n_synthetic)]
    l8, r8, gt = skimage.data.stereo_motorcycle()
    gt = gt.astype(np.float32)
    rows = []
    for name, kw in KNOBS:
        eng = StereoEngine(loaded=ck, device="cpu", precision="fp32", **kw)
        syn = [disparity_metrics(eng.infer(sc["left"], sc["right"], with_confidence=False).disparity,
                                 sc["disp"], max_disparity=maxd) for sc in scenes]
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


def _row(name: str, m: Dict[str, float]) -> str:
    vals = "".join(f"{m.get(k, float('nan')):>9.3f}" for k in KEYS)
    return f"{name:<28}{vals}"


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="weights file or Lightning .ckpt (default: bundled)")
    p.add_argument("--synthetic-count", type=int, default=64)
    p.add_argument("--synthetic-seed-base", type=int, default=1_000_000_000)
    p.add_argument("--synthetic-size", default="192x384", help="HxW of synthetic val scenes")
    p.add_argument("--sgbm-ranges", default="64", help="comma-separated SGBM numDisparities "
                   "(the model's max_disparity is always added)")
    p.add_argument("--latency-runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--knobs", action="store_true", help="also score the node's speed knobs "
                   "(input_scale, refiners, max_disparity) through its engine")
    p.add_argument("--knob-scenes", type=int, default=16, help="synthetic scenes per knob setting")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    ck = load_checkpoint(a.checkpoint)
    h, w = (int(v) for v in a.synthetic_size.lower().split("x"))
    res: Dict[str, Any] = {"checkpoint": ck.path, "config": ck.config.to_dict(),
                           "torch_threads": torch.get_num_threads()}
    if a.synthetic_count > 0:
        res["synthetic_val"], res["synthetic_val_sgbm"] = synthetic_val(
            ck, a.synthetic_count, a.synthetic_seed_base, (h, w))
    res["motorcycle"] = motorcycle(ck, tuple(int(v) for v in a.sgbm_ranges.split(",") if v))
    if a.latency_runs > 0:
        res["cpu_ms_640x480"], res["cpu_ms_640x480_min"] = latency_ms(ck, runs=a.latency_runs)
    print(f"checkpoint: {ck.path}  config: {ck.config.to_dict()}")
    print(f"{'':<28}" + "".join(f"{k:>9}" for k in KEYS))
    if "synthetic_val" in res:
        print(_row("synthetic val StereoNet", res["synthetic_val"]))
        print(_row(f"synthetic val SGBM-{ck.config.max_disparity}", res["synthetic_val_sgbm"]))
        print(f"  ({a.synthetic_count} scenes {h}x{w}, seeds {a.synthetic_seed_base}+i, never trained on)")
    mc = res["motorcycle"]
    print(_row("motorcycle StereoNet", mc["stereonet"]))
    for key in mc:
        if key.startswith("sgbm") and not key.endswith("_valid_only"):
            nd = key[4:]
            print(_row(f"motorcycle SGBM-{nd}", mc[key]))
            print(_row(f"  (SGBM-{nd}, own valid px)", mc[key + "_valid_only"]))
    print("(EPE in px; D1, bad-N, density in %; invalid predictions count as errors)")
    if "cpu_ms_640x480" in res:
        sg = ", ".join(f"SGBM-{k[4:]} {1000 * v['seconds']:.0f} ms" for k, v in mc.items()
                       if k.startswith("sgbm") and "seconds" in v)
        print(f"CPU forward 640x480: median {res['cpu_ms_640x480']:.0f} ms, min "
              f"{res['cpu_ms_640x480_min']:.0f} ms ({res['torch_threads']} threads); "
              f"motorcycle 741x500: StereoNet {1000 * mc['stereonet']['seconds']:.0f} ms, {sg}")
    if a.knobs:
        res["knobs"] = knob_costs(ck, a.knob_scenes, a.synthetic_seed_base, (h, w))
        print(f"\nknobs through the node's engine (fp32, {torch.get_num_threads()} threads; synthetic: "
              f"{a.knob_scenes} scenes {h}x{w}; motorcycle 741x500):")
        print(f"{'knob':<18}{'syn EPE':>9}{'syn D1':>9}{'moto EPE':>9}{'moto D1':>9}{'moto bad2':>10}{'ms':>8}"
              f"{'x base':>8}")
        base_ms = res["knobs"][0]["motorcycle_ms"]
        for r in res["knobs"]:
            sy, mo = r["synthetic"], r["motorcycle"]
            print(f"{r['knob']:<18}{sy.get('epe', float('nan')):>9.2f}{sy.get('d1', float('nan')):>9.1f}"
                  f"{mo['epe']:>9.2f}{mo['d1']:>9.1f}{mo['bad2']:>10.1f}{r['motorcycle_ms']:>8.0f}"
                  f"{r['motorcycle_ms'] / base_ms:>8.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
