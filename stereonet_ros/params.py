"""The node's parameters: names, defaults, descriptions and validation (no ROS imports).

config/stereonet.yaml sets them for a robot; the node declares every one of these with its
default, validates all values at start (a bad one is a fatal error naming the parameter and
the reason) and validates runtime changes (a bad one is rejected, the old value stays).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from .engine import DEVICES_HELP, PRECISIONS


@dataclass(frozen=True)
class ParamSpec:
    default: Any
    description: str
    check: Optional[Callable[[Any], Optional[str]]] = None
    #: changing it rebuilds the engine (checkpoint load, device move)
    engine: bool = False


def _choice(*options: str) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _range(lo: float, hi: float = math.inf, lo_open: bool = False) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return "must be a number"
        if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or v > hi:
            return f"must be a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
        return None
    return check


def _device(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return "must be a string"
    v = v.strip().lower()
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return None
    return f"must be {DEVICES_HELP}"


SPECS: Dict[str, ParamSpec] = {
    "checkpoint": ParamSpec("", "StereoNet checkpoint ('' = bundled default); Lightning .ckpt or exported .pt", None, True),
    "device": ParamSpec("auto", f"inference device: {DEVICES_HELP}", _device, True),
    "strict_device": ParamSpec(False, "fail instead of falling back to the CPU when CUDA is unavailable", None, True),
    "precision": ParamSpec("auto", "auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16", _choice(*PRECISIONS), True),
    "num_threads": ParamSpec(0, "CPU inference threads (0 = all cores but one, left to the ROS executor)", _range(0, 256), True),
    "max_disparity": ParamSpec(0.0, "searched disparity range in native pixels (0 = checkpoint's)", _range(0, 4096), True),
    "input_scale": ParamSpec(1.0, "downscale factor before the network, (0, 1]; outputs return to native size", _range(0.0, 1.0, lo_open=True), True),
    "refiners": ParamSpec(-1, "refinement levels kept (-1 = all the checkpoint's); fewer is faster, the last refined level is upsampled", _range(-1, 16), True),
    "sync_mode": ParamSpec("exact", "exact | approximate stamp matching of left/right images", _choice("exact", "approximate")),
    "sync_slop": ParamSpec(0.01, "approximate-sync tolerance in seconds", _range(0.0, 10.0)),
    "queue_size": ParamSpec(10, "images kept per side while waiting for a partner", _range(1, 1000)),
    "sync_backend": ParamSpec("builtin", "builtin (counts every unpaired image as a drop) | message_filters (ROS synchronizer when installed; does not count unpaired images) | auto (message_filters when importable)", _choice("auto", "message_filters", "builtin")),
    "camera_info_timeout": ParamSpec(5.0, "seconds after which a camera_info is stale (0 = never)", _range(0.0)),
    "publish_disparity": ParamSpec(True, "publish stereo_msgs/DisparityImage on 'disparity'"),
    "publish_depth": ParamSpec(True, "publish 32FC1 metres on 'depth'"),
    "publish_points": ParamSpec(True, "publish sensor_msgs/PointCloud2 on 'points2'"),
    "publish_confidence": ParamSpec(True, "publish 32FC1 [0,1] on 'confidence'"),
    "publish_color": ParamSpec(True, "publish a bgr8 colour map on 'disparity/color'"),
    "cloud_color": ParamSpec(True, "add packed rgb from the left image to the cloud"),
    "cloud_organized": ParamSpec(True, "organized cloud (H x W with NaN) instead of dense valid points"),
    "cloud_decimation": ParamSpec(1, "use every n-th pixel in x and y for the cloud", _range(1, 64)),
    "min_depth": ParamSpec(0.0, "metres; nearer points are invalid in depth and cloud", _range(0.0)),
    "max_depth": ParamSpec(0.0, "metres; farther points are invalid (0 = no limit)", _range(0.0)),
    "confidence_threshold": ParamSpec(0.0, "pixels with lower confidence are invalid (0 keeps all)", _range(0.0, 1.0)),
    "lr_check": ParamSpec(False, "left-right consistency check (costs a second cost volume)"),
    "lr_threshold": ParamSpec(1.0, "left-right check tolerance in pixels", _range(0.0, 1000.0, lo_open=True)),
    "max_image_pixels": ParamSpec(4096 * 4096, "larger images are rejected", _range(1, 1 << 30)),
    "diagnostics_period": ParamSpec(1.0, "seconds between /diagnostics messages", _range(0.05, 60.0)),
}

#: Types must match the defaults' types (ROS parameters are typed); ints accepted for floats.
def _type_error(name: str, value: Any) -> Optional[str]:
    d = SPECS[name].default
    if isinstance(d, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(d, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if isinstance(d, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    if isinstance(d, str):
        return None if isinstance(value, str) else "must be a string"
    return None


def validate(name: str, value: Any) -> Optional[str]:
    """Reason why ``value`` is not acceptable for parameter ``name``, or None if it is."""
    if name not in SPECS:
        return f"unknown parameter '{name}'"
    err = _type_error(name, value)
    if err is None and SPECS[name].check is not None:
        err = SPECS[name].check(value)
    return None if err is None else f"parameter '{name}' = {value!r} {err}"


def validate_all(values: Dict[str, Any]) -> List[str]:
    """Every problem in a full set of values, including cross-parameter ones."""
    errors = [e for n, v in values.items() if (e := validate(n, v))]
    mx, mn = values.get("max_depth", 0.0), values.get("min_depth", 0.0)
    if not errors and mx and mx <= mn:
        errors.append(f"max_depth {mx} must be greater than min_depth {mn} (or 0 for no limit)")
    return errors
