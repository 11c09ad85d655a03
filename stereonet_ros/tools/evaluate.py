"""``stereonet-eval``: offline evaluation of StereoNet over a bag or a folder of pairs.

No ROS runtime: frames are read with ``rosbags`` (``stereonet_ros.tools.bag``) and go through the
node's own per-frame code (``pipeline.process_pair``), so the numbers are the node's minus
transport. Reports accuracy against ground truth (``stereonet_ros.metrics``; a 32FC1 Image
or a stereo_msgs/DisparityImage topic), for the published output (pixels the node marks
invalid count as errors) and the dense network output, labelled, with the convention
(``METRICS_CONVENTION``) in the report; per-frame
latency percentiles and throughput, failed frames by reason (keys of
``stats.DROP_REASONS``), PNG figures, and optionally an output bag with DisparityImage,
depth and PointCloud2.

Examples::

    stereonet-eval recording/ --checkpoint model.pt --out out/eval
    stereonet-eval demo.mcap --input-scale 0.5 --output-bag out/eval/pred --storage mcap
    stereonet-eval pairs/ --fx 721.5 --baseline 0.54   # pairs/left/*.png, pairs/right/*.png
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import cv2
import numpy as np

from . import bag
from ..allocator import keep_large_allocations
from ..engine_config import EngineConfig
from .figures import label, text_tile
from ..metrics import disparity_metrics, mean_metrics, metrics_line
from ..pipeline import FrameError, FrameOutput, OutputOptions, process_pair, uncompressed_pair
from ..stats import percentiles

OUTPUT_TOPICS = {"disparity": "/stereonet/disparity", "depth": "/stereonet/depth", "points": "/stereonet/points2"}


# ----------------------------------------------------------------------------- figures

def colorize(values: np.ndarray, valid: np.ndarray, lo: float, hi: float,
             cmap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """bgr8 colour map of ``values`` over [lo, hi]; pixels not ``valid`` are black."""
    scale = 255.0 / max(hi - lo, 1e-6)
    v = np.clip((np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo) - lo) * scale, 0, 255).astype(np.uint8)
    out = cv2.applyColorMap(v, cmap)
    out[~valid] = 0
    return out


def render_cloud(points: np.ndarray, rgb8: Optional[np.ndarray], size: tuple[int, int] = (320, 240),
                 yaw_deg: float = 30.0, pitch_deg: float = -20.0, splat: int = 2, axes: bool = False) -> np.ndarray:
    """Perspective view (bgr8, ``size`` = (w, h)) of an (H, W, 3) cloud in the optical frame.

    The cloud is rotated about its median point (yaw about y, pitch about x) and seen by a
    virtual pinhole looking along +z from behind the original camera; a z-buffer by
    painter's order (far points drawn first) keeps near surfaces on top. NaN points and,
    in clouds of 100+ points, the nearest 1 % and farthest 3 % by depth are skipped;
    without colour, points are shaded by depth. ``axes``: the optical frame's x (red), y
    (green) and z (blue) axes, of a round length in metres, drawn at the camera (at the
    cloud's median point when the camera is out of view), with their length written below.
    """
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    pts = points.reshape(-1, 3)
    ok = np.all(np.isfinite(pts), axis=1)
    if ok.sum() < 3:
        cv2.putText(img, "no valid points", (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        return img
    if ok.sum() >= 100:  # a few far outliers (d near 0) would shrink the rest to a speck
        lo, hi = np.percentile(pts[ok, 2], (1, 97))
        ok &= (pts[:, 2] >= lo) & (pts[:, 2] <= hi)
    p = pts[ok].astype(np.float64)
    centre = np.median(p, axis=0)
    ya, pa = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(ya), 0, math.sin(ya)], [0, 1, 0], [-math.sin(ya), 0, math.cos(ya)]])
    rx = np.array([[1, 0, 0], [0, math.cos(pa), -math.sin(pa)], [0, math.sin(pa), math.cos(pa)]])
    q = (p - centre) @ (rx @ ry).T
    extent = np.percentile(np.abs(q[:, :2]), 98, axis=0).max() + 1e-6
    q[:, 2] += 2.2 * extent  # step back until the bulk of the cloud fills ~90 % of the view
    front = q[:, 2] > 1e-3
    f = 0.45 * min(w, h) * 2.2
    u = (f * q[front, 0] / q[front, 2] + w / 2).astype(np.int64)
    v = (f * q[front, 1] / q[front, 2] + h / 2).astype(np.int64)
    z = q[front, 2]
    if rgb8 is not None:
        col = rgb8.reshape(-1, 3)[ok][front][:, ::-1]
    else:
        zs = (z - z.min()) / max(float(np.ptp(z)), 1e-6)
        col = cv2.applyColorMap((255 * (1 - zs)).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_TURBO).reshape(-1, 3)
    order = np.argsort(-z)  # far first; numpy fancy assignment keeps the last write
    u, v, col = u[order], v[order], col[order]
    for dy in range(splat):
        for dx in range(splat):
            uu, vv = u + dx, v + dy
            inside = (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
            img[vv[inside], uu[inside]] = col[inside]
    if axes:
        _draw_axes(img, centre, rx @ ry, 2.2 * extent, f, extent)
    return img


def _draw_axes(img: np.ndarray, centre: np.ndarray, rot: np.ndarray, back: float, f: float, extent: float) -> None:
    """The optical frame's axes in ``render_cloud``'s view (same rotation about ``centre``,
    virtual camera ``back`` m behind it, focal ``f`` px), x/y/z in red/green/blue."""
    h, w = img.shape[:2]

    def project(p: np.ndarray) -> Optional[tuple[int, int]]:
        q = (p - centre) @ rot.T
        q[2] += back
        if q[2] <= 1e-3:
            return None
        return int(round(f * q[0] / q[2] + w / 2)), int(round(f * q[1] / q[2] + h / 2))

    # A round length (1, 2 or 5 x 10^k m) up to 30 % of the cloud's extent: readable as a scale.
    raw = max(0.3 * extent, 1e-6)
    k = 10.0 ** math.floor(math.log10(raw))
    length = max(m * k for m in (1.0, 2.0, 5.0) if m * k <= raw)
    origin, where = np.zeros(3), "camera"
    o = project(origin)
    if o is None or not (0 <= o[0] < w and 0 <= o[1] < h):
        origin, where = centre.copy(), "cloud centre"
        o = project(origin)
    if o is None:  # pragma: no cover - the centre is always in front of the virtual camera
        return
    for axis, (name, colour) in enumerate((("x", (0, 0, 255)), ("y", (0, 200, 0)), ("z", (255, 80, 0)))):
        tip = project(origin + length * np.eye(3)[axis])
        if tip is None:
            continue
        cv2.arrowedLine(img, o, tip, colour, 2, cv2.LINE_AA, tipLength=0.15)
        cv2.putText(img, name, (tip[0] + 3, tip[1] + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    text = f"axes at the {where}: {length:g} m (x right, y down, z forward)"
    cv2.putText(img, text, (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)


def disparity_scale(disparity: np.ndarray, valid: np.ndarray, gt: Optional[np.ndarray], fallback: float) -> float:
    """Top of the colour scale shared by gt and prediction: the 99th percentile of gt (else of
    the valid prediction), so a wide searched range does not wash the images out."""
    ref = gt[np.isfinite(gt)] if gt is not None else disparity[valid]
    return float(np.percentile(ref, 99)) * 1.05 if ref.size else float(fallback)


def frame_panel(left_rgb8: np.ndarray, disparity: np.ndarray, valid: np.ndarray, max_disparity: float,
                gt: Optional[np.ndarray], points: Optional[np.ndarray], rgb8: Optional[np.ndarray] = None,
                confidence: Optional[np.ndarray] = None, info: Sequence[str] = (),
                error_scale_px: float = 5.0) -> Dict[str, np.ndarray]:
    """The figures of one frame (bgr8 images): left, gt, prediction, error, cloud, panel.

    ``disparity`` in px with its ``valid`` mask; gt and prediction share one colour scale
    (``disparity_scale``); the error map shows |pred - gt| over [0, ``error_scale_px``] px
    (an invalid prediction counts as |gt|, as in the metrics), black where gt is unknown.
    ``info``: text lines for the last tile (when there is no confidence image).
    """
    h, w = disparity.shape
    hi = disparity_scale(disparity, valid, gt, max_disparity)
    blank = np.zeros((h, w, 3), np.uint8)
    figs = {"left": left_rgb8[..., ::-1].copy(), "prediction": colorize(disparity, valid, 0.0, hi)}
    if gt is not None:
        gt_ok = np.isfinite(gt)
        figs["gt"] = colorize(gt, gt_ok, 0.0, hi)
        err = np.where(valid, np.abs(disparity - np.nan_to_num(gt)), np.abs(np.nan_to_num(gt)))
        figs["error"] = colorize(err, gt_ok, 0.0, error_scale_px, cv2.COLORMAP_INFERNO)
    else:
        figs["gt"], figs["error"] = label(blank, "no ground truth"), blank
    figs["cloud"] = render_cloud(points, rgb8, (w, h)) if points is not None else label(blank, "points disabled")
    last = (label(colorize(confidence, np.ones((h, w), bool), 0, 1, cv2.COLORMAP_VIRIDIS), "confidence")
            if confidence is not None else text_tile(h, w, info))
    tiles = [label(figs["left"], "left"), label(figs["gt"], f"ground truth (0-{hi:.0f} px)"),
             label(figs["prediction"], "prediction"), label(figs["error"], f"|error| 0-{error_scale_px:g} px"),
             label(cv2.resize(figs["cloud"], (w, h)), "point cloud"), last]
    figs["panel"] = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])
    return figs


# ----------------------------------------------------------------------------- inputs

def frames_from_folder(folder: str | Path, fx: float, baseline: float, limit: Optional[int] = None,
                       report: Optional[bag.PairingReport] = None) -> Iterator[bag.StereoFrame]:
    """Stereo frames from ``folder/left/*.png`` + ``folder/right/*`` (same file names).

    Optional ground truth: ``folder/disparity/<stem>.npy`` (float px, non-finite unknown) or
    ``<stem>.png`` 16-bit KITTI-style (value / 256, 0 unknown). Rectified cameras with focal
    length ``fx`` px, principal point at the image centre and ``baseline`` m are assumed.
    Pairs are stamped 1 s apart (index + 1 s).
    """
    root = Path(folder)
    lefts = sorted(p for p in (root / "left").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"))
    if not lefts:
        raise bag.BagError(f"folder '{root}' has no left/*.png|jpg images (expected left/ and right/ subfolders)")
    report = report if report is not None else bag.PairingReport()
    report.topics_in_bag = {"left/": "files", "right/": "files"}
    for i, lp in enumerate(lefts[:limit] if limit else lefts):
        rp = next((p for p in (root / "right").glob(lp.stem + ".*")), None)
        report.left_images += 1
        if rp is None:
            report.unpaired_left += 1
            continue
        report.right_images += 1
        li, ri = cv2.imread(str(lp), cv2.IMREAD_UNCHANGED), cv2.imread(str(rp), cv2.IMREAD_UNCHANGED)
        enc = "mono8" if li.ndim == 2 else "bgr8"
        stamp = (i + 1) * 1_000_000_000
        h, w = li.shape[:2]
        frame = bag.StereoFrame(report.pairs, stamp, bag.make_image(li, enc, stamp, "left_optical"),
                                bag.make_image(ri, "mono8" if ri.ndim == 2 else "bgr8", stamp, "right_optical"),
                                bag.make_camera_info(w, h, fx, baseline, stamp=stamp),
                                bag.make_camera_info(w, h, fx, baseline, right=True, stamp=stamp))
        report.pairs += 1
        npy, png = root / "disparity" / f"{lp.stem}.npy", root / "disparity" / f"{lp.stem}.png"
        if npy.exists():
            frame.gt_disparity = np.load(npy).astype(np.float32)
        elif png.exists():
            d = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            frame.gt_disparity = np.where(d > 0, d.astype(np.float32) / 256.0, np.float32(np.nan))
        report.gt_frames += frame.gt_disparity is not None
        yield frame


# ----------------------------------------------------------------------------- evaluation

@dataclass
class EvalOptions:
    out_dir: Optional[Path] = Path("out/eval")    # report.json + figures; None = no files
    figures: int = 3                               # frames with PNG figures (the first N)
    output_bag: Optional[Path] = None              # write DisparityImage/depth/PointCloud2 here
    storage: str = "sqlite3"                       # of the output bag
    progress: bool = True                          # tqdm bar on stderr
    warmup: bool = True                            # one untimed frame per new image size
    max_pixels: Optional[int] = 4096 * 4096
    output: OutputOptions = field(default_factory=OutputOptions)


def gt_for(frame: bag.StereoFrame, out: FrameOutput) -> Optional[np.ndarray]:
    """Ground-truth disparity of a frame; from gt depth (d = f T / Z) when only depth exists."""
    if frame.gt_disparity is not None:
        return frame.gt_disparity
    if frame.gt_depth is not None:
        z = frame.gt_depth.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = out.geometry.fx * out.geometry.baseline / z
        return np.where(np.isfinite(d) & (z > 0), d, np.nan).astype(np.float32)
    return None


#: What the accuracy numbers of a report mean (written into every report and summary).
METRICS_CONVENTION = (
    "disparity errors in px of the input resolution, DisparityImage convention d = x_l - x_r - (cx_l - cx_r), "
    "over pixels with finite ground truth below the searched max_disparity; "
    "'published': what the node publishes, pixels it marks invalid (disparity below min_disparity) count as "
    "errors of |gt| and as bad (density = share of gt pixels with a valid output); "
    "'dense': the network's disparity at every pixel, before any validity rule")


def frame_metrics(out: FrameOutput, gt: Optional[np.ndarray]) -> Optional[Dict[str, Dict[str, float]]]:
    """{'published': ..., 'dense': ...} metrics against gt (``METRICS_CONVENTION``); gt beyond
    the searched range is excluded from both. None without gt."""
    if gt is None:
        return None
    if gt.shape != out.disparity.shape:
        raise FrameError("bad_size", f"ground truth {gt.shape[1]}x{gt.shape[0]} differs from the image "
                                     f"{out.disparity.shape[1]}x{out.disparity.shape[0]}")
    published = disparity_metrics(out.disparity, gt, max_disparity=out.max_disparity, pred_valid=out.valid)
    dense = out.dense_disparity if out.dense_disparity is not None else out.disparity
    return {"published": published, "dense": disparity_metrics(dense, gt, max_disparity=out.max_disparity)}


def write_outputs(writer: bag.BagWriter, frame: bag.StereoFrame, out: FrameOutput) -> None:
    """DisparityImage, depth (32FC1 m) and organized PointCloud2 of one frame, at its stamp."""
    s, fid, g = frame.stamp, frame.left.header.frame_id, out.geometry
    writer.write(OUTPUT_TOPICS["disparity"], bag.make_disparity(out.disparity, s, fid, g.fx, g.baseline,
                                                                out.min_disparity, out.max_disparity,
                                                                out.delta_d, out.valid_window), s)
    writer.write(OUTPUT_TOPICS["depth"], bag.make_image(out.depth, "32FC1", s, fid), s)
    if out.points is not None:
        writer.write(OUTPUT_TOPICS["points"], bag.make_cloud(out.points, s, fid, out.rgb8), s)


def evaluate_frames(engine: Any, frames: Iterable[bag.StereoFrame], opts: EvalOptions,
                    pairing: Optional[bag.PairingReport] = None, source: str = "") -> Dict[str, Any]:
    """Run the engine over ``frames``; returns (and writes, with ``out_dir``) the JSON report.

    A frame that fails is recorded with its reason and the evaluation goes on.
    """
    from tqdm import tqdm
    out_dir = Path(opts.out_dir) if opts.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    writer: Optional[bag.BagWriter] = None  # opened at the first output: no empty bag on a bad input
    per_frame: List[Dict[str, Any]] = []
    failures: Counter = Counter()
    latencies: List[float] = []
    stage_ms: Dict[str, List[float]] = {}
    warmup_ms: Dict[str, float] = {}
    figures_written = 0
    t_start = time.perf_counter()
    try:
        for frame in tqdm(frames, disable=not opts.progress, unit="frame", desc="stereonet-eval", file=sys.stderr):
            rec: Dict[str, Any] = {"index": frame.index, "stamp_ns": frame.stamp}
            if frame.problems:
                rec["problems"] = list(frame.problems)
            per_frame.append(rec)
            try:
                if frame.left_info is None or frame.right_info is None:
                    raise FrameError("camera_info_missing", "no camera_info for this pair in the bag")
                # The bag reader decodes CompressedImage pairs; one it could not decode is still
                # compressed here and fails with the node's reason (bad_data, bad_encoding).
                left, right = uncompressed_pair(frame.left, frame.right, opts.max_pixels)
                shape = f"{left.width}x{left.height}"
                if opts.warmup and shape not in warmup_ms and left.encoding == right.encoding:
                    try:  # the first run of a size allocates and tunes: keep it out of the percentiles
                        t0 = time.perf_counter()
                        process_pair(engine, left, right, frame.left_info, frame.right_info,
                                     opts.output, opts.max_pixels)
                        warmup_ms[shape] = 1e3 * (time.perf_counter() - t0)
                    except FrameError:
                        pass  # reported by the timed run below
                t0 = time.perf_counter()
                out = process_pair(engine, left, right, frame.left_info, frame.right_info,
                                   opts.output, opts.max_pixels)
                ms = 1e3 * (time.perf_counter() - t0)
                gt = gt_for(frame, out)
                both = frame_metrics(out, gt)
                m = both["published"] if both else None
            except FrameError as exc:
                failures[exc.reason] += 1
                rec.update(status="failed", reason=exc.reason, message=str(exc))
                continue
            except Exception as exc:  # a broken frame must not end the evaluation
                failures["inference_error"] += 1
                rec.update(status="failed", reason="inference_error", message=f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(ms)
            for k, v in out.timings_ms.items():
                stage_ms.setdefault(k, []).append(v)
            rec.update(status="ok", latency_ms=ms, metrics=m, metrics_dense=both["dense"] if both else None,
                       valid_fraction=float(out.valid.mean()), warnings=out.warnings or None)
            if opts.output_bag:
                if writer is None:
                    writer = bag.BagWriter(opts.output_bag, opts.storage).__enter__()
                write_outputs(writer, frame, out)
            if out_dir and figures_written < opts.figures:
                save_figures(out_dir, frame, out, gt, m)
                figures_written += 1
    finally:
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - t_start
    report = summarize(per_frame, latencies, stage_ms, warmup_ms, failures, wall, pairing, engine, source, opts)
    if out_dir:
        (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def save_figures(out_dir: Path, frame: bag.StereoFrame, out: FrameOutput, gt: Optional[np.ndarray],
                 m: Optional[Dict[str, float]]) -> None:
    from ..imageconv import image_to_numpy, to_rgb8
    left = to_rgb8(image_to_numpy(frame.left), frame.left.encoding)
    text = [f"EPE {m['epe']:.2f} px, bad2 {m['bad2']:.1f} %"] if m else ["no ground truth"]
    figs = frame_panel(left, out.disparity, out.valid, out.max_disparity, gt, out.points, out.rgb8,
                       None, text + [f"latency {sum(out.timings_ms.get(k, 0) for k in ('decode', 'network_total', 'postprocess_numpy')):.0f} ms"])
    for name in ("panel", "cloud"):
        cv2.imwrite(str(out_dir / f"frame_{frame.index:06d}_{name}.png"), figs[name])


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def summarize(per_frame: List[Dict[str, Any]], latencies: List[float], stage_ms: Dict[str, List[float]],
              warmup_ms: Dict[str, float], failures: Counter, wall_s: float,
              pairing: Optional[bag.PairingReport], engine: Any, source: str, opts: EvalOptions) -> Dict[str, Any]:
    """The JSON report: summary metrics, latency, throughput, failures, pairing, per-frame."""
    ok = [r for r in per_frame if r.get("status") == "ok"]
    metrics = mean_metrics([r["metrics"] for r in ok if r.get("metrics")])
    dense = mean_metrics([r["metrics_dense"] for r in ok if r.get("metrics_dense")])
    ckpt = getattr(engine, "ckpt", None)
    info = getattr(ckpt, "info", {}) or {}
    return {
        "source": source,
        "model": engine.describe() if hasattr(engine, "describe") else str(engine),
        "checkpoint_info": info,
        "random_weights": bool(getattr(ckpt, "random_weights", False)),
        "frames": {"total": len(per_frame), "processed": len(ok), "failed": sum(failures.values()),
                   "with_gt": sum(1 for r in ok if r.get("metrics"))},
        "failures_by_reason": dict(failures),
        "metrics_convention": METRICS_CONVENTION,
        "metrics": metrics,              # published output (per frame: 'metrics')
        "metrics_dense": dense,          # dense network output (per frame: 'metrics_dense')
        "latency_ms": percentiles(latencies),
        "stage_latency_ms": {k: percentiles(v) for k, v in stage_ms.items()},
        "warmup_ms": warmup_ms,
        # end to end (bag reading, figures and output bag included) and network+pipeline only
        "throughput_fps": len(ok) / wall_s if wall_s > 0 else float("nan"),
        "compute_fps": 1e3 / float(np.mean(latencies)) if latencies else float("nan"),
        "wall_s": wall_s,
        "pairing": pairing.to_dict() if pairing else None,
        "output_bag": str(opts.output_bag) if opts.output_bag else None,
        "per_frame": per_frame,
    }


def summary_text(report: Dict[str, Any]) -> str:
    """A few human lines of a report (terminal summary)."""
    fr, m, lat = report["frames"], report["metrics"], report["latency_ms"]
    lines = [f"frames: {fr['processed']}/{fr['total']} processed, {fr['failed']} failed "
             f"{report['failures_by_reason'] or ''}"]
    lines.append("published output (invalid pixels count as errors): " + metrics_line(m))
    lines.append("dense network output (every pixel): " + metrics_line(report.get("metrics_dense") or {}))
    lines.append("convention: " + report.get("metrics_convention", METRICS_CONVENTION))
    lines.append(f"latency per frame: p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms; "
                 f"throughput {report['throughput_fps']:.2f} frames/s end to end, {report['compute_fps']:.2f} frames/s "
                 "pipeline only")
    for w in (report.get("pairing") or {}).get("warnings", []):
        lines.append("warning: " + w)
    if report.get("random_weights"):
        lines.append("WARNING: the checkpoint holds RANDOM weights: the accuracy numbers are meaningless")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def add_topic_args(p: argparse.ArgumentParser) -> None:
    d = bag.StereoTopics()
    p.add_argument("--left-topic", default=d.left)
    p.add_argument("--right-topic", default=d.right)
    p.add_argument("--left-info-topic", default=d.left_info)
    p.add_argument("--right-info-topic", default=d.right_info)
    p.add_argument("--gt-topic", default=d.gt_disparity,
                   help="ground-truth disparity: 32FC1 Image or stereo_msgs/DisparityImage ('' = none)")
    p.add_argument("--gt-depth-topic", default=d.gt_depth, help="32FC1 ground-truth depth in m ('' = none)")


def topics_from_args(a: argparse.Namespace) -> bag.StereoTopics:
    return bag.StereoTopics(a.left_topic, a.right_topic, a.left_info_topic, a.right_info_topic,
                            a.gt_topic or None, a.gt_depth_topic or None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stereonet-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="ROS 2 bag (sqlite3/mcap folder or file), ROS 1 .bag, or folder with left/ right/")
    EngineConfig.add_arguments(p)
    add_topic_args(p)
    p.add_argument("--fx", type=float, default=0.0, help="folder input: focal length in px")
    p.add_argument("--baseline", type=float, default=0.0, help="folder input: baseline in m")
    p.add_argument("--out", default="out/eval", help="report directory ('' = none)")
    p.add_argument("--figures", type=int, default=3, help="frames with PNG figures")
    p.add_argument("--output-bag", default="", help="write DisparityImage/depth/PointCloud2 to this new bag")
    p.add_argument("--storage", default="sqlite3", choices=bag.STORAGES)
    p.add_argument("--max-frames", type=int, default=0)
    p.add_argument("--confidence-threshold", type=float, default=0.0)
    p.add_argument("--lr-check", action="store_true")
    p.add_argument("--no-points", action="store_true", help="skip point clouds (faster)")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry ``stereonet-eval``; exit 2 on a bad input/config, 1 if no frame processed."""
    a = build_parser().parse_args(argv)
    from ..checkpoint import CheckpointError
    from ..engine import EngineConfigError
    keep_large_allocations()  # as the node does (allocator.py)
    try:
        engine = EngineConfig.from_args(a).build()
    except (ValueError, CheckpointError, EngineConfigError) as exc:
        print(f"stereonet-eval: cannot load the model: {exc}", file=sys.stderr)
        return 2
    pairing = bag.PairingReport()
    src = Path(a.source)
    limit = a.max_frames or None
    if src.is_dir() and (src / "left").is_dir():
        if a.fx <= 0 or a.baseline <= 0:
            print("stereonet-eval: folder input needs --fx and --baseline", file=sys.stderr)
            return 2
        frames: Iterable[bag.StereoFrame] = frames_from_folder(src, a.fx, a.baseline, limit, pairing)
    else:
        frames = bag.read_stereo_frames(src, topics_from_args(a), pairing, limit=limit)
    opts = EvalOptions(out_dir=Path(a.out) if a.out else None, figures=a.figures,
                       output_bag=Path(a.output_bag) if a.output_bag else None, storage=a.storage,
                       progress=not a.no_progress, warmup=not a.no_warmup,
                       output=OutputOptions(confidence_threshold=a.confidence_threshold, lr_check=a.lr_check,
                                            want_points=not a.no_points))
    try:
        report = evaluate_frames(engine, frames, opts, pairing, str(src))
    except bag.BagError as exc:
        print(f"stereonet-eval: {exc}", file=sys.stderr)
        return 2
    print(engine.describe())
    print(summary_text(report))
    if opts.out_dir:
        print(f"report: {opts.out_dir / 'report.json'}")
    return 0 if report["frames"]["processed"] else 1


if __name__ == "__main__":
    sys.exit(main())
