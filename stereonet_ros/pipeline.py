"""Per-frame processing without ROS: validate a stereo pair, run the engine, post-process.

Inputs are objects with the fields of sensor_msgs/Image and sensor_msgs/CameraInfo (real
messages in the node, real messages or plain objects in tools and tests). Every rejection
is a ``FrameError`` whose ``reason`` is a key of ``stats.DROP_REASONS``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .engine import EngineResult, StereoEngine
from .geometry import (GeometryError, StereoGeometry, depth_to_points, disparity_to_depth,
                       geometry_from_projections, left_right_consistent, raw_calibration,
                       raw_to_published_disparity)
from .imageconv import INPUT_ENCODINGS, ImageFormatError, as_image, image_to_numpy, to_rgb8, to_rgb_float


#: DisparityImage.delta_d, px. The network's disparity is continuous: a soft-argmin (expected
#: value over the coarse cost volume's distribution), upsampled and corrected by the
#: refiners' convolutional residuals, so it has no quantisation step of its own (the float32
#: spacing, ~4e-6 px at 64 px, says nothing about it). Its precision is coarser than 1/16 px
#: (the bundled model's errors are pixels, see the model card; well-trained stereo networks
#: reach tenths of a pixel), so 1/16 px claims no finer steps than the output resolves, and
#: it is what stereo_image_proc publishes (OpenCV block matching's 4 fractional bits):
#: consumers that bin disparities by delta_d treat both nodes alike.
DISPARITY_RESOLUTION_PX = 1.0 / 16.0


def match_window(width: int, height: int, max_disparity: float) -> Tuple[int, int, int, int]:
    """DisparityImage.valid_window (x_offset, y_offset, width, height) in pixels of the left
    image: every row, without the left columns x < min(max_disparity, width), whose match
    for the searched range (x_r = x - d, d up to max_disparity raw px) would lie left of
    the right image. Pixels there can still be valid (small disparities) and are flagged
    one by one; the window says where the whole range could be searched.
    """
    x0 = int(min(math.ceil(max(max_disparity, 0.0)), width))
    return x0, 0, int(width) - x0, int(height)


class FrameError(Exception):
    """A pair that cannot be processed; ``reason`` is a DROP_REASONS key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class OutputOptions:
    """Post-processing knobs (node parameters of the same names)."""

    confidence_threshold: float = 0.0   # pixels below are invalid (0 keeps all)
    lr_check: bool = False              # left-right consistency check (costs a 2nd volume)
    lr_threshold: float = 1.0           # pixels
    min_depth: float = 0.0              # metres; depth/cloud only
    max_depth: float = 0.0              # metres; 0 = no limit
    cloud_decimation: int = 1           # every n-th pixel in x and y
    want_confidence: bool = True
    want_points: bool = True
    want_color: bool = True             # rgb in the cloud

    @classmethod
    def from_params(cls, v: Dict[str, Any]) -> "OutputOptions":
        """From the node's parameter values (``publish_confidence`` / ``publish_points`` /
        ``cloud_color`` are the want_* fields)."""
        return cls(confidence_threshold=v["confidence_threshold"], lr_check=v["lr_check"],
                   lr_threshold=v["lr_threshold"], min_depth=v["min_depth"], max_depth=v["max_depth"],
                   cloud_decimation=v["cloud_decimation"], want_confidence=v["publish_confidence"],
                   want_points=v["publish_points"], want_color=v["cloud_color"])


@dataclass
class FrameOutput:
    """Everything the node publishes for one pair, at native left resolution."""

    disparity: np.ndarray      # (H, W) float32 published d; invalid = min_disparity - 1
    valid: np.ndarray          # (H, W) bool
    depth: np.ndarray          # (H, W) float32 metres, NaN invalid
    points: Optional[np.ndarray]  # (H', W', 3) float32, left optical frame
    rgb8: Optional[np.ndarray]    # (H', W', 3) uint8 for the cloud
    confidence: Optional[np.ndarray]
    geometry: StereoGeometry
    min_disparity: float
    max_disparity: float
    delta_d: float
    timings_ms: Dict[str, float]
    warnings: List[str]
    #: DisparityImage.valid_window (x, y, w, h) px, see ``match_window``
    valid_window: Tuple[int, int, int, int] = (0, 0, 0, 0)
    #: (H, W) float32 published-convention d of the network at every pixel, before any
    #: validity rule (accuracy of the dense output; the published one is ``disparity``)
    dense_disparity: Optional[np.ndarray] = None


def _both_sides(convert: Any, what: str, left: Any, right: Any) -> Tuple[Any, Any]:
    """``convert`` applied to each side; an ImageFormatError becomes a FrameError of its
    reason that names the side (``"<side> <what>: ..."``)."""
    out = []
    for side, m in (("left", left), ("right", right)):
        try:
            out.append(convert(m))
        except ImageFormatError as exc:
            raise FrameError(exc.reason, f"{side} {what}: {exc}") from exc
    return out[0], out[1]


def uncompressed_pair(left: Any, right: Any, max_pixels: Optional[int] = None) -> Tuple[Any, Any]:
    """The pair as Image-shaped messages: a sensor_msgs/CompressedImage (JPEG or PNG) is
    decoded (``imageconv.decode_compressed``), an Image passes through untouched. Raises
    FrameError (bad_data, bad_encoding, bad_size) naming the side and what is wrong."""
    return _both_sides(lambda m: as_image(m, max_pixels), "compressed image", left, right)


def decode_pair(left: Any, right: Any, max_pixels: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode and cross-check two Image messages; raises FrameError."""
    for side, m in (("left", left), ("right", right)):
        if m.encoding not in INPUT_ENCODINGS:
            raise FrameError("bad_encoding", f"{side} image: unsupported encoding '{m.encoding}' "
                                             f"(supported: {', '.join(INPUT_ENCODINGS)})")
    if left.encoding != right.encoding:
        raise FrameError("bad_encoding", f"left encoding '{left.encoding}' differs from right "
                                         f"'{right.encoding}'")
    if (left.width, left.height) != (right.width, right.height):
        raise FrameError("bad_size", f"left image {left.width}x{left.height} and right "
                                     f"{right.width}x{right.height} differ in size")
    return _both_sides(lambda m: image_to_numpy(m, max_pixels), "image", left, right)


def check_camera_info(linfo: Any, rinfo: Any, width: int, height: int) -> tuple[StereoGeometry, List[str]]:
    """Geometry from the two CameraInfos after checking they fit the images; raises FrameError.

    Returns the geometry and warnings (left/right intrinsics that disagree). D and R are
    not looked at: P describes the rectified images (see ``geometry.raw_calibration``).
    """
    for side, info in (("left", linfo), ("right", rinfo)):
        # 0x0 is what an uncalibrated driver sends; the projection check below catches it.
        if (info.width, info.height) != (width, height) and (info.width or info.height):
            raise FrameError("bad_size", f"{side} camera_info is {info.width}x{info.height} but the "
                                         f"images are {width}x{height}")
    try:
        geom = geometry_from_projections(linfo.p, rinfo.p, width, height)
    except GeometryError as exc:
        raise FrameError("bad_geometry", str(exc)) from exc
    return geom, intrinsics_disagreement(linfo.p, rinfo.p)


def intrinsics_disagreement(p_left: Any, p_right: Any) -> List[str]:
    """Warnings when two rectified projections do not share fy and cy (not one rectified pair)."""
    pl, pr = np.asarray(p_left, float).ravel(), np.asarray(p_right, float).ravel()
    if pl.size != 12 or pr.size != 12:
        return []
    if not (abs(pl[5] - pr[5]) <= 1e-3 * abs(pl[5]) and abs(pl[6] - pr[6]) <= 0.5):
        return [f"left/right rectified fy, cy disagree ({pl[5]:g},{pl[6]:g} vs {pr[5]:g},{pr[6]:g})"]
    return []


def camera_info_report(linfo: Any, rinfo: Any,
                       image_size: Optional[Tuple[int, int]] = None) -> Tuple[int, str, Dict[str, str]]:
    """Sanity of the current camera_info pair for /diagnostics, independent of any frame.

    Returns (level 0 ok / 1 warn / 2 error, summary, key/values): resolution and whether it
    matches the images (``image_size`` = (width, height) of the last pair), baseline sign
    and magnitude, whether left/right intrinsics agree; and, for information only, whether
    the camera_infos carry a raw calibration (D != 0 or R != I, as image_proc republishes).
    """
    if linfo is None or rinfo is None:
        missing = " and ".join(s for s, m in (("left", linfo), ("right", rinfo)) if m is None)
        return 2, f"no {missing} camera_info received", {}
    kv: Dict[str, str] = {}
    problems: List[Tuple[int, str]] = []
    kv["resolution left"] = f"{linfo.width}x{linfo.height}"
    kv["resolution right"] = f"{rinfo.width}x{rinfo.height}"
    same = (linfo.width, linfo.height) == (rinfo.width, rinfo.height)
    if not same:
        problems.append((2, "left/right camera_info resolutions differ"))
    if image_size is not None:
        match = same and (linfo.width, linfo.height) in (tuple(image_size), (0, 0))
        kv["resolution matches images"] = str(match)
        if not match:
            problems.append((2, f"camera_info resolution differs from the images "
                                f"{image_size[0]}x{image_size[1]}"))
    pl, pr = np.asarray(linfo.p, float).ravel(), np.asarray(rinfo.p, float).ravel()
    if pl.size == 12 and pr.size == 12:
        kv["fx left"], kv["fx right"] = f"{pl[0]:g}", f"{pr[0]:g}"
        with np.errstate(divide="ignore", invalid="ignore"):
            b = float(-pr[3] / pr[0]) if pr[0] else float("nan")
        kv["baseline_m"] = f"{b:.6f}"
        kv["baseline sign"] = "positive" if b > 0 else "negative" if b < 0 else "zero/invalid"
    try:
        geometry_from_projections(linfo.p, rinfo.p, max(1, linfo.width), max(1, linfo.height))
        kv["baseline plausible"] = "True"
    except GeometryError as exc:
        kv["baseline plausible"] = "False"
        problems.append((2, str(exc)))
    disagree = intrinsics_disagreement(linfo.p, rinfo.p)
    kv["intrinsics agree"] = str(not disagree and pl.size == 12 and pr.size == 12
                                 and abs(pl[0] - pr[0]) <= 1e-3 * abs(pl[0]))
    problems += [(1, t) for t in disagree]
    for side, info in (("left", linfo), ("right", rinfo)):
        try:
            kv[f"raw D/R {side}"] = str(raw_calibration(info.d, info.r))
        except (TypeError, ValueError) as exc:  # reported, not judged: the geometry uses P only
            kv[f"raw D/R {side}"] = f"unreadable: {exc}"
    if not problems:
        return 0, "ok", kv
    level = max(lv for lv, _ in problems)
    return level, "; ".join(t for _, t in problems), kv


def match_in_view(raw: np.ndarray) -> np.ndarray:
    """Pixels whose network disparity (x_l - x_r, px) is finite and lands inside the right
    image (x - d >= -0.5): the node's first validity rule, before confidence, left-right
    and depth checks. Accuracy reports use it for the 'published' convention."""
    w = raw.shape[-1]
    return np.isfinite(raw) & (np.arange(w, dtype=np.float32)[None, :] - raw >= -0.5)


@dataclass
class InferredPair:
    """One pair through the network, before the numpy outputs (``finish_pair``): what the
    node's inference thread hands to its publishing thread."""

    result: EngineResult       # native-resolution network disparity (x_l - x_r, px), confidence
    geometry: StereoGeometry
    warnings: List[str]        # camera_info problems that did not stop the frame
    limg: np.ndarray           # decoded left image, for the cloud colour
    encoding: str              # its encoding
    rgb8_left: Optional[np.ndarray]  # the left image as rgb8 when it already exists
    max_disparity: float       # the engine's searched range, native px (exclusive)
    timings_ms: Dict[str, float]


def infer_pair(engine: StereoEngine, left: Any, right: Any, linfo: Any, rinfo: Any,
               opts: OutputOptions, max_pixels: Optional[int] = None) -> InferredPair:
    """Validate one stereo pair and run the network on it (raises FrameError).

    ``left``/``right``: sensor_msgs/Image or CompressedImage (decoded here; 'decode' timing)."""
    t0 = time.perf_counter()
    left, right = uncompressed_pair(left, right, max_pixels)
    limg, rimg = decode_pair(left, right, max_pixels)
    h, w = limg.shape[:2]
    geom, warns = check_camera_info(linfo, rinfo, w, h)
    rgb8_left: Optional[np.ndarray] = None
    try:
        if limg.dtype == np.uint8:
            # 8-bit input goes to the engine as uint8 views (no float copy on the host, a
            # quarter of the bytes to the GPU); the left view doubles as the cloud colour.
            rgb8_left = to_rgb8(limg, left.encoding)
            lrgb, rrgb = rgb8_left, to_rgb8(rimg, right.encoding)
        else:
            lrgb = to_rgb_float(limg, left.encoding)
            rrgb = to_rgb_float(rimg, right.encoding)
    except ImageFormatError as exc:
        raise FrameError("bad_values", str(exc)) from exc
    t1 = time.perf_counter()
    res = engine.infer(lrgb, rrgb, with_confidence=opts.want_confidence or opts.confidence_threshold > 0,
                       with_right=opts.lr_check)
    t2 = time.perf_counter()
    timings = {"decode": 1e3 * (t1 - t0), **res.timings_ms, "network_total": 1e3 * (t2 - t1)}
    return InferredPair(res, geom, warns, limg, left.encoding, rgb8_left, engine.max_disparity, timings)


def finish_pair(pair: InferredPair, opts: OutputOptions) -> FrameOutput:
    """Every output array of an inferred pair: validity, published disparity, depth, cloud
    (numpy only, no engine: the node runs it in its publishing thread, beside the next
    pair's network). ``opts`` must be the ones ``infer_pair`` ran with."""
    t2 = time.perf_counter()
    res, geom = pair.result, pair.geometry
    raw = res.disparity
    h, w = raw.shape
    valid = match_in_view(raw)
    if res.confidence is not None and opts.confidence_threshold > 0:
        valid &= res.confidence >= opts.confidence_threshold
    if opts.lr_check and res.right_disparity is not None:
        valid &= left_right_consistent(raw, res.right_disparity, opts.lr_threshold)
    disp = raw_to_published_disparity(raw, geom)
    valid &= disp > 0  # Z = fT/d needs d > 0
    min_d = -geom.cx_offset
    max_d = pair.max_disparity - geom.cx_offset
    disp_out = np.where(valid, disp, np.float32(min_d - 1.0)).astype(np.float32, copy=False)
    max_depth = opts.max_depth if opts.max_depth > 0 else math.inf
    depth = disparity_to_depth(disp, geom, valid, opts.min_depth, max_depth)
    points = rgb8 = None
    step = max(1, int(opts.cloud_decimation))
    if opts.want_points:
        points = depth_to_points(depth, geom, step)
        if opts.want_color:
            src = pair.rgb8_left if pair.rgb8_left is not None else to_rgb8(pair.limg, pair.encoding)
            rgb8 = np.ascontiguousarray(src[::step, ::step])
    t3 = time.perf_counter()
    timings = {**pair.timings_ms, "postprocess_numpy": 1e3 * (t3 - t2)}
    return FrameOutput(disp_out, valid, depth, points, rgb8, res.confidence, geom, float(min_d),
                       float(max_d), DISPARITY_RESOLUTION_PX, timings, pair.warnings,
                       match_window(w, h, pair.max_disparity), disp)


def process_pair(engine: StereoEngine, left: Any, right: Any, linfo: Any, rinfo: Any,
                 opts: OutputOptions, max_pixels: Optional[int] = None) -> FrameOutput:
    """Validate, run the network and build every output array for one stereo pair
    (``infer_pair`` then ``finish_pair``; raises FrameError).

    ``left``/``right``: sensor_msgs/Image or CompressedImage (decoded here; 'decode' timing)."""
    return finish_pair(infer_pair(engine, left, right, linfo, rinfo, opts, max_pixels), opts)
