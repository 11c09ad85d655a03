"""The node's parameters: names, defaults, descriptions and validation (no ROS imports).

config/stereonet.yaml sets them for a robot; the node declares every one of these with its
default, validates all values at start (a bad one is a fatal error naming the parameter and
the reason; so is a name that is not in this table) and validates runtime changes (a bad
one is rejected, the old value stays). ``stereonet_node --help`` prints this table.
"""
from __future__ import annotations

import difflib
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from .backends import BACKENDS

# Defined here, not in engine.py, so that reading the parameter table (``--help``, validation
# of a params file) does not import torch.
DEVICES_HELP = "auto | cpu | cuda | cuda:N"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class Check:
    """A value check with the human text of what it accepts (for --help and the YAML).

    Calling it returns the reason a value is refused, or None when it is accepted.
    """

    def __init__(self, fn: Callable[[Any], Optional[str]], valid: str) -> None:
        self.fn, self.valid = fn, valid

    def __call__(self, value: Any) -> Optional[str]:
        return self.fn(value)


@dataclass(frozen=True)
class ParamSpec:
    default: Any
    description: str
    check: Optional[Callable[[Any], Optional[str]]] = None
    #: changing it rebuilds the engine (checkpoint load, device move)
    engine: bool = False

    @property
    def type_name(self) -> str:
        """ROS parameter type of the default (bool is tested first: it is an int in Python)."""
        d = self.default
        return ("bool" if isinstance(d, bool) else "int" if isinstance(d, int) else
                "double" if isinstance(d, float) else "string")

    @property
    def valid(self) -> str:
        """What values are accepted, in words."""
        if isinstance(self.check, Check):
            if self.check.valid[:1] in "[(" and self.type_name in ("int", "double"):
                return ("integer in " if self.type_name == "int" else "number in ") + self.check.valid
            return self.check.valid
        return {"bool": "true | false", "int": "any integer", "double": "any number",
                "string": "any string"}[self.type_name]


def _choice(*options: str) -> Check:
    return Check(lambda v: None if v in options else f"must be one of {', '.join(options)}",
                 " | ".join(options))


def _num(x: float) -> str:
    """A bound in words: integers in full (1073741824, not 1.07374e+09), inf as 'inf'."""
    return str(int(x)) if math.isfinite(x) and float(x).is_integer() else f"{x:g}"


#: Largest ``input_scale``. Upsampling gives the network more pixels per disparity step: its
#: error stays about constant in network pixels, so in native pixels it shrinks by about 1/s,
#: at s^2 the cost (model card: with both refiners, 1.25 and 1.5 lowered bad-1 in every
#: validation family). Beyond 2 the images hold no more detail to find.
MAX_INPUT_SCALE = 2.0


def _range(lo: float, hi: float = math.inf, lo_open: bool = False) -> Check:
    interval = f"{'(' if lo_open else '['}{_num(lo)}, {_num(hi)}]"

    def check(v: Any) -> Optional[str]:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return "must be a number"
        if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or v > hi:
            return f"must be a finite number in {interval}"
        return None
    return Check(check, interval)


def _check_device(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return "must be a string"
    v = v.strip().lower()
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return None
    return f"must be {DEVICES_HELP}"


_device = Check(_check_device, DEVICES_HELP)


def _check_providers(v: Any) -> Optional[str]:
    from .backends.ort_providers import parse_providers
    from .engine import EngineConfigError
    try:
        parse_providers(v)
    except EngineConfigError as exc:
        return str(exc)
    return None


SPECS: Dict[str, ParamSpec] = {
    "checkpoint": ParamSpec("", "StereoNet checkpoint ('' = bundled default); Lightning .ckpt or exported .pt",
                            Check(lambda v: None, "file path, or '' for the bundled default"), True),
    "device": ParamSpec("auto", f"inference device: {DEVICES_HELP}", _device, True),
    "strict_device": ParamSpec(False, "fail instead of falling back to the CPU when CUDA is unavailable", None, True),
    "precision": ParamSpec("auto", "auto (fp16 on CUDA; on the CPU bf16 where native - AVX512-BF16/AMX - else fp32) | fp32 | fp16 | bf16; backend onnxruntime: fp32 (auto), fp16 only with the TensorRT provider; backend openvino: as on the CPU (bf16 where native, else fp32)", _choice(*PRECISIONS), True),
    "num_threads": ParamSpec(0, "CPU inference threads (0 = every core on a 1-2 core computer, else all cores but one, left to the ROS executor)", _range(0, 256), True),
    "max_disparity": ParamSpec(0.0, "searched disparity range in native pixels (0 = checkpoint's)", _range(0, 4096), True),
    "input_scale": ParamSpec(0.0, "resize factor before the network, (0, 2]: below 1 faster and coarser, above 1 slower (x s^2) and more precise; outputs return to native size (0 = the checkpoint's operating point: 1.25 for the default model, else 1)", _range(0.0, MAX_INPUT_SCALE), True),
    "refiners": ParamSpec(-1, "refinement levels kept (-1 = the checkpoint's operating point: 1 for the default model, else all); fewer is faster, the last refined level is upsampled", _range(-1, 16), True),
    "backend": ParamSpec("auto", "inference backend: auto (openvino on the CPU when installed - the fastest CPU path measured - else torch) | torch | onnxruntime | openvino (the last two: the same checkpoint exported to ONNX, cached per input size in $STEREONET_CACHE_DIR, else ~/.cache/stereonet_ros; the first frame of a new size exports it, seconds; openvino runs on the CPU only)", _choice(*BACKENDS), True),
    "onnx_providers": ParamSpec("", "onnxruntime execution providers in priority order, comma-separated ('' = from device: cuda -> cuda,cpu; cpu -> cpu); CUDA/TensorRT need onnxruntime-gpu", Check(_check_providers, "'' or comma-separated cpu | cuda | tensorrt | openvino | <Name>ExecutionProvider"), True),
    "image_transport": ParamSpec("raw", "transport of the input images: raw (sensor_msgs/Image on left/image_rect, "
                                 "right/image_rect) | compressed (sensor_msgs/CompressedImage, JPEG or PNG, on "
                                 "<image topic>/compressed, decoded with OpenCV; remap the image topics, the "
                                 "/compressed suffix follows, as with image_transport)", _choice("raw", "compressed")),
    "sync_mode": ParamSpec("exact", "exact | approximate stamp matching of left/right images", _choice("exact", "approximate")),
    "sync_slop": ParamSpec(0.01, "approximate-sync tolerance in seconds", _range(0.0, 10.0)),
    "queue_size": ParamSpec(10, "images kept per side while waiting for a partner", _range(1, 1000)),
    "camera_info_timeout": ParamSpec(5.0, "seconds after which a camera_info is stale (0 = never)", _range(0.0)),
    "publish_disparity": ParamSpec(True, "publish stereo_msgs/DisparityImage on 'disparity'"),
    "publish_depth": ParamSpec(True, "publish depth on 'depth' (format: depth_format) with 'depth/camera_info'"),
    "depth_format": ParamSpec("32FC1", "depth image encoding (REP 118): 32FC1 metres, NaN invalid; 16UC1 "
                              "millimetres, 0 invalid (and beyond 65.535 m)", _choice("32FC1", "16UC1")),
    "publish_points": ParamSpec(True, "publish sensor_msgs/PointCloud2 on 'points2'"),
    "publish_confidence": ParamSpec(True, "publish 32FC1 [0,1] on 'confidence' with 'confidence/camera_info'"),
    "publish_color": ParamSpec(True, "publish a bgr8 colour map on 'disparity/color'"),
    "cloud_color": ParamSpec(True, "add packed rgb from the left image to the cloud"),
    "cloud_organized": ParamSpec(True, "organized cloud (H x W with NaN) instead of dense valid points"),
    "cloud_decimation": ParamSpec(1, "use every n-th pixel in x and y for the cloud", _range(1, 64)),
    "cloud_rate": ParamSpec(0.0, "most points2 messages per second, by image stamp (0 = every frame); "
                            "frames in between skip the cloud", _range(0.0, 1000.0)),
    "min_depth": ParamSpec(0.0, "metres; nearer points are invalid in depth and cloud", _range(0.0)),
    "max_depth": ParamSpec(0.0, "metres; farther points are invalid (0 = no limit)", _range(0.0)),
    "confidence_threshold": ParamSpec(0.0, "pixels with lower confidence are invalid (0 keeps all)", _range(0.0, 1.0)),
    "lr_check": ParamSpec(False, "left-right consistency check (costs a second cost volume)"),
    "lr_threshold": ParamSpec(1.0, "left-right check tolerance in pixels", _range(0.0, 1000.0, lo_open=True)),
    "max_image_pixels": ParamSpec(4096 * 4096, "larger images are rejected", _range(1, 1 << 30)),
    "diagnostics_period": ParamSpec(1.0, "seconds between /diagnostics messages", _range(0.05, 60.0)),
    "input_timeout_warning": ParamSpec(5.0, "seconds without a stereo pair after which a warning names the input "
                                       "topics and those never received, repeated as long as it lasts (0 = off)",
                                       _range(0.0, 3600.0)),
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


def coerce(values: Dict[str, Any]) -> Dict[str, Any]:
    """Integers given for float parameters (``-p max_disparity:=64``) become floats."""
    return {n: float(v) if isinstance(SPECS[n].default, float) and isinstance(v, int)
            and not isinstance(v, bool) else v for n, v in values.items()}


def validate_all(values: Dict[str, Any]) -> List[str]:
    """Every problem in a full set of values, including cross-parameter ones."""
    errors = [e for n, v in values.items() if (e := validate(n, v))]
    mx, mn = values.get("max_depth", 0.0), values.get("min_depth", 0.0)
    if not errors and mx and mx <= mn:
        errors.append(f"max_depth {mx} must be greater than min_depth {mn} (or 0 for no limit)")
    return errors


#: Names the node has besides this table: rclpy's own (declared by every rclpy Node).
ROS_BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")
#: The prefix of rclpy's QoS override parameters (declared per subscription/publisher).
QOS_PREFIX = "qos_overrides."


def closest_name(name: str, known: Iterable[str]) -> Optional[str]:
    """The known name most like ``name`` (difflib ratio >= 0.6), or None."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_parameter_errors(given: Iterable[str], known: Iterable[str]) -> List[str]:
    """One message per name in ``given`` that is not in ``known``, with the closest valid name.

    A misspelt parameter would otherwise be silently ignored and the node run with the
    default: on a robot that is a wrong model or a wrong depth range nobody notices.
    """
    known = sorted(set(known))
    out = []
    for name in sorted(set(given) - set(known)):
        # QoS overrides are compared with the QoS names, node parameters with the table.
        pool = [k for k in known if k.startswith(QOS_PREFIX) == name.startswith(QOS_PREFIX)]
        hint = closest_name(name, pool)
        out.append(f"unknown parameter '{name}': "
                   + (f"did you mean '{hint}'?" if hint else "no parameter has a similar name")
                   + " (stereonet_node --help lists every parameter)")
    return out


def split_ros_args(argv: Sequence[str]) -> tuple[List[str], List[str]]:
    """(user arguments, ROS arguments) of a command line without the program name.

    ROS arguments are those between ``--ros-args`` and ``--`` (or the end), as rcl parses them;
    everything else is the program's own.
    """
    user: List[str] = []
    ros: List[str] = []
    in_ros = False
    for a in argv:
        if a == "--ros-args":
            in_ros = True
            ros.append(a)
        elif a == "--" and in_ros:
            in_ros = False
        elif in_ros:
            ros.append(a)
        else:
            user.append(a)
    return user, ros


def help_text(prog: str = "stereonet_node") -> str:
    """``--help``: usage, every parameter with its type, default, valid values and meaning."""
    lines = [
        f"usage: {prog} [-h] [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] [-r FROM:=TO ...]]",
        "",
        "StereoNet dense stereo for ROS 2: rectified left/right images and their camera_info in,",
        "disparity, depth, point cloud and confidence out. Inputs (relative, remappable):",
        "left/image_rect, right/image_rect, left/camera_info, right/camera_info.",
        "Outputs: disparity, depth, depth/camera_info, points2, confidence, confidence/camera_info,",
        "disparity/color, /diagnostics. An output is computed only while it has a subscriber.",
        "",
        "An unknown parameter name or an invalid value ends the start with exit code 2.",
        "",
        "parameters (config/stereonet.yaml documents the same):",
    ]
    for name, spec in SPECS.items():
        default = repr(spec.default) if isinstance(spec.default, str) else str(spec.default).lower() \
            if isinstance(spec.default, bool) else str(spec.default)
        lines.append(f"  {name} ({spec.type_name}, default {default}; valid: {spec.valid})")
        lines += textwrap.wrap(spec.description, 92, initial_indent="      ", subsequent_indent="      ")
    lines += ["", "QoS of the inputs and outputs: qos_overrides.<topic>.<subscription|publisher>.<policy>",
              "(reliability, history, depth; see config/stereonet.yaml). rclpy's use_sim_time is accepted."]
    return "\n".join(lines) + "\n"
