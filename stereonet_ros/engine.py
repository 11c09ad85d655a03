"""Inference engine: checkpoint -> configured model on a device; numpy images in, disparity out.

No ROS and no Lightning here. Units: disparities are *native input* pixels (x_l - x_r,
before the principal-point correction of ``geometry``), whatever ``input_scale`` is.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from .model import StereoNet, fold_batchnorm, keep_refiners, to_channels_last, use_onednn_conv3d
from .params import DEVICES_HELP, MAX_INPUT_SCALE, PRECISIONS  # defined with the parameter table, torch-free

if TYPE_CHECKING:
    from .backends.graph_runner import GraphRunner

log = logging.getLogger("stereonet_ros.engine")


class EngineOutOfMemory(RuntimeError):
    """The device ran out of memory for this frame (CUDA OOM). The engine has released its
    cached blocks; the next frame may fit. The message is the first line of torch's."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (torch.cuda.OutOfMemoryError or its message)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    # onnxruntime's allocator failures arrive as its own exception types with this text
    text = str(exc)
    return "CUDA out of memory" in text or (type(exc).__module__.startswith("onnxruntime")
                                           and "Failed to allocate memory" in text)


class EngineConfigError(ValueError):
    """An engine setting that cannot be honoured (bad device, precision, scale, range)."""


@dataclass
class EngineResult:
    disparity: np.ndarray                 # (H, W) float32, native pixels, x_l - x_r
    confidence: Optional[np.ndarray]      # (H, W) float32 in [0, 1], or None
    right_disparity: Optional[np.ndarray]  # (H, W) float32, for the left-right check, or None
    timings_ms: Dict[str, float] = field(default_factory=dict)


def resolve_device(name: str, strict: bool = False) -> torch.device:
    """'auto' -> cuda if available else cpu. A CUDA request without CUDA falls back to the
    CPU with a warning, or raises ``EngineConfigError`` when ``strict``."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise EngineConfigError(f"device '{name}' is not valid ({DEVICES_HELP})") from exc
        ok = torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count())
        if ok:
            return dev
        msg = (f"device '{name}' requested but CUDA is not available"
               if not torch.cuda.is_available() else
               f"device '{name}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        if strict:
            raise EngineConfigError(msg + " (strict_device is set)")
        log.warning("%s: falling back to the CPU", msg)
        return torch.device("cpu")
    raise EngineConfigError(f"device '{name}' is not one of {DEVICES_HELP}")


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16) and oneDNN
    uses it; without those instructions bf16 is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    try:
        mkldnn_ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn_ok = False
    return mkldnn_ok and ("avx512_bf16" in flags or "amx_bf16" in flags)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> fp16 on CUDA; on the CPU bf16 where the CPU has native bf16 (AVX512-BF16 /
    AMX: 2.4x faster than fp32 for the default model at 640x480, and the accuracy cost on the
    real validation pairs is within noise - EPE 1.66 vs 1.65 px, bad-2 14.75 vs 14.73 %, see
    the model card), else fp32. On the CPU fp16 is refused (slow and inaccurate there) and bf16
    is allowed only where it is native; bf16 on a GPU without bf16 support is refused too."""
    name = (name or "auto").strip().lower()
    if name not in PRECISIONS:
        raise EngineConfigError(f"precision '{name}' is not one of {' | '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if name == "fp32":
        return torch.float32
    if device.type != "cuda":
        if name == "bf16" and cpu_has_native_bf16():
            return torch.bfloat16
        raise EngineConfigError(f"precision '{name}' needs a CUDA device; on the CPU use fp32 or auto"
                                + ("" if name == "fp16" else " (this CPU has no native bf16: AVX512-BF16/AMX)"))
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        raise EngineConfigError("precision 'bf16' is not supported by this GPU; use fp16")
    return torch.float16 if name == "fp16" else torch.bfloat16


def resize_bilinear_cpu(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode='bilinear', align_corners=False)`` of a (1, C, H, W)
    float32 or uint8 CPU tensor (any layout), done by OpenCV on the HWC image and returned as
    a channels-last (1, C, h, w) view of the same dtype. ``size`` is (h, w) pixels.

    Why: OpenCV resized a 640x480 RGB float image to 800x600 in 0.2-0.3 ms against torch's 3-4
    ms (one or two threads), the largest part of the node's pre-processing at the 1.25x
    operating point; both use half-pixel centres without antialiasing, and agree to 5e-5 on
    floats (uint8 results are rounded to whole levels)."""
    import cv2  # the run-time package's image codec needs it too (compressed input)
    hwc = x[0].permute(1, 2, 0)  # a view; contiguous when x is channels-last
    a = np.ascontiguousarray(hwc.numpy())
    r = cv2.resize(a, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(r.reshape(int(size[0]), int(size[1]), x.shape[1])).permute(2, 0, 1).unsqueeze(0)


def resolve_backend(name: str, device: torch.device, compile_backend: str = "") -> str:
    """The backend an engine runs: 'auto' is 'openvino' on a CPU device where the openvino and
    onnx packages are installed and no torch.compile is asked for (OpenVINO's CPU plugin ran
    the default model 1.3x faster than torch in fp32 and 1.7x in bf16 here, same outputs:
    docs/PERFORMANCE.md), else 'torch' (CUDA: torch's fp16 autocast; onnxruntime's TensorRT
    is the other GPU path). Any other name is returned as given (checked by the caller)."""
    from importlib.util import find_spec
    name = (name or "auto").strip().lower()
    if name != "auto":
        return name
    if device.type != "cpu" or (compile_backend or "").strip():
        return "torch"
    missing = [m for m in ("openvino", "onnx") if find_spec(m) is None]
    if missing:
        log.warning("backend 'auto' runs torch: %s not installed (pip install %s for the faster "
                    "OpenVINO CPU path)", " and ".join(missing), " ".join(missing))
        return "torch"
    return "openvino"


class StereoEngine:
    """Runs StereoNet on rectified pairs.

    Parameters: ``checkpoint`` ('' = bundled default), ``device``, ``precision``,
    ``input_scale`` (0 < s <= 2: resize before the network; outputs come back at native
    resolution with disparities divided by s; s < 1 is faster, s > 1 slower and more precise,
    see ``params.MAX_INPUT_SCALE``; 0 = the checkpoint's ``OperatingPoint``), ``max_disparity``
    (native pixels searched; 0 = the checkpoint's range, in native pixels when upsampling, in
    candidates when downsampling), ``refiners`` (refinement levels kept, -1 = the checkpoint's
    operating point, all unless it names fewer; fewer is faster, the last refined level is
    upsampled bilinearly),
    ``num_threads`` (CPU intra-op threads; 0 = leave torch's default),
    ``fold_bn`` (fold BatchNorm into the convolutions: same outputs to float rounding, faster),
    ``channels_last`` (NHWC 2D convolutions; None = auto: on the CPU, where it measured faster),
    ``compile_backend`` ('' = off; e.g. 'inductor': torch.compile in a background thread per
    input shape, swapped in when ready - the first frames run eagerly, never stalled) and
    ``compile_mode`` (passed to torch.compile, e.g. 'max-autotune'; unmeasured here),
    ``backend`` ('torch'; 'onnxruntime' or 'openvino': the same checkpoint exported to ONNX,
    cached per network input size in the user cache dir, see ``backends.graph_cache``, and run
    by that runtime - openvino on the CPU only; same outputs, confidence and right view
    included; 'auto', the node's default: see ``resolve_backend``; this class defaults to
    plain 'torch'), ``onnx_providers`` (onnxruntime execution providers,
    e.g. 'tensorrt,cuda' or 'cpu'; '' = from the device; see ``backends.ort_providers``) and
    ``input_size`` ((height, width) native pixels: prepare that size's graph now instead of on
    the first frame; graph backends only).
    """

    def __init__(self, checkpoint: str = "", device: str = "auto", precision: str = "auto",
                 input_scale: float = 0.0, max_disparity: float = 0.0, num_threads: int = 0,
                 strict_device: bool = False, loaded: Optional[LoadedCheckpoint] = None,
                 refiners: int = -1,
                 fold_bn: bool = True, channels_last: Optional[bool] = None,
                 compile_backend: str = "", compile_mode: Optional[str] = None,
                 backend: str = "torch", onnx_providers: Union[str, Sequence[str]] = "",
                 input_size: Optional[Tuple[int, int]] = None) -> None:
        from .backends import BACKENDS
        if not (0.0 <= float(input_scale) <= MAX_INPUT_SCALE) or not math.isfinite(float(input_scale)):
            raise EngineConfigError(f"input_scale must be 0 (the checkpoint's operating point) or a "
                                    f"number in (0, {MAX_INPUT_SCALE:g}], got {input_scale}")
        requested = (backend or "torch").strip().lower()
        if requested not in BACKENDS:
            raise EngineConfigError(f"backend '{backend}' is not one of {' | '.join(BACKENDS)}")
        if requested not in ("torch", "auto") and (compile_backend or "").strip():
            raise EngineConfigError("compile_backend applies to backend 'torch' only; "
                                    f"set it to '' with backend '{requested}'")
        self.device = resolve_device(device, strict_device)
        self.backend = resolve_backend(requested, self.device, compile_backend)
        # a graph backend resolves its precision itself (providers, CPU), below
        self.dtype = resolve_precision(precision, self.device) if self.backend == "torch" else torch.float32
        # OpenMP's thread count is per calling thread: set here, and again by infer() in
        # whichever thread runs frames (the node builds a new engine in its executor thread).
        self.num_threads = int(num_threads) if num_threads and self.device.type == "cpu" else 0
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.ckpt = loaded if loaded is not None else load_checkpoint(checkpoint)
        self.config = self.ckpt.config
        run = self.ckpt.inference.resolve(input_scale, refiners)
        self.input_scale, refiners = float(run.input_scale), run.refiners
        step = 2 ** self.config.k
        if max_disparity and max_disparity < 0:
            raise EngineConfigError(f"max_disparity must be >= 0, got {max_disparity}")
        # 0: the trained range, and never fewer candidates than trained (the 3D filter learnt
        # on that many): upsampled, the same native range needs more of them.
        net_max = (self.config.max_disparity * max(1.0, self.input_scale) if not max_disparity
                   else max_disparity * self.input_scale)
        # Round the network's range up to whole cost-volume candidates (>= 2 of them).
        self.candidates = max(2, int(math.ceil(net_max / step)))
        # The engine's own copy: folding BatchNorm into the convolutions rewrites modules, and
        # the checkpoint's model must stay trainable/exportable for whoever else holds it.
        model = copy.deepcopy(self.ckpt.model).eval()
        if int(refiners) != -1:
            try:
                keep_refiners(model, int(refiners))
            except ValueError as exc:
                raise EngineConfigError(f"refiners must be -1 (the checkpoint's operating point) or "
                                        f"0..{self.config.num_refiners}, got {refiners} "
                                        f"(checkpoint '{self.ckpt.path}')") from exc
        self.config = model.config
        # Graph backends are built from the model before folding and layout changes: the
        # export traces a plain copy (the oneDNN Conv3d swap below has no ONNX form).
        self._graph: Optional["GraphRunner"] = None
        if self.backend == "onnxruntime":
            from .backends.ort_runner import OnnxRuntimeRunner
            self._graph = OnnxRuntimeRunner(model, self.candidates, self.device, onnx_providers,
                                            precision, self.num_threads)
        elif self.backend == "openvino":
            from .backends.ov_runner import OpenVinoRunner
            self._graph = OpenVinoRunner(model, self.candidates, self.device, precision, self.num_threads)
        if self._graph is not None:  # what the graph computes in (reported; inputs stay fp32)
            self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self._graph.precision, torch.float32)
        self.model: StereoNet = (fold_batchnorm(model) if fold_bn else model).to(self.device)
        # NHWC 2D convolutions: measured faster on the CPU (docs/PERFORMANCE.md); not yet
        # measured on CUDA, so 'auto' keeps NCHW there until a GPU run says otherwise. The
        # exported graphs take NCHW, so there 'auto' is NCHW (no layout copy per frame).
        if channels_last is None:
            channels_last = self.device.type == "cpu" and self._graph is None
        self.channels_last = bool(channels_last)
        self._fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.channels_last:
            to_channels_last(self.model)
        if self.device.type == "cpu":
            use_onednn_conv3d(self.model)  # short cost volumes: see model._OneDNNConv3d
        mean = torch.tensor(self.ckpt.normalization.mean, dtype=torch.float32)
        std = torch.tensor(self.ckpt.normalization.std, dtype=torch.float32)
        self._mean = mean.view(1, -1, 1, 1).to(self.device)
        self._inv_std = (1.0 / std).view(1, -1, 1, 1).to(self.device)
        # (x - mean) / std as one multiply-add x * scale + shift; for uint8 input the 1/255
        # goes into the scale, so conversion and normalisation are a single pass.
        self._shift = (-mean / std).view(1, -1, 1, 1).to(self.device)
        self._inv_std_u8 = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(self.device)
        # RGB -> luma for 1-channel checkpoints (ITU-R BT.601 weights)
        self._grey_weights = torch.tensor([0.299, 0.587, 0.114], device=self.device).view(1, 3, 1, 1)
        self._pin = self.device.type == "cuda"
        # Opt-in torch.compile, done in a background thread per input shape: frames keep
        # running eagerly meanwhile (a compile takes minutes on a small CPU), the compiled
        # function is swapped in once it has produced one output, and a failure only logs.
        self.compile_backend = (compile_backend or "").strip()
        self.compile_mode = compile_mode or None
        self._compiled: Dict[Tuple, object] = {}     # key -> compiled module (ready to run)
        self._compile_failed: Dict[Tuple, str] = {}  # key -> error text
        self._compiling: Optional[Tuple] = None
        self._compile_lock = threading.Lock()
        self.compiled_calls = 0                      # frames served by a compiled function
        if input_size is not None:
            if self._graph is None:
                raise EngineConfigError("input_size prepares an exported graph; it needs "
                                        "backend 'onnxruntime' or 'openvino'")
            self._graph.prepare(*self.padded_network_size(*input_size))

    # ----- derived facts the node publishes ---------------------------------------------
    @property
    def max_disparity(self) -> float:
        """Largest disparity the cost volume searches, in native pixels (exclusive)."""
        return self.candidates * 2 ** self.config.k / self.input_scale

    @property
    def precision_name(self) -> str:
        return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def network_size(self, height: int, width: int) -> Tuple[int, int]:
        """(height, width) in pixels of an input of that size after ``input_scale``."""
        if self.input_scale == 1.0:
            return height, width
        return max(1, round(height * self.input_scale)), max(1, round(width * self.input_scale))

    def padded_network_size(self, height: int, width: int) -> Tuple[int, int]:
        """(height, width) in pixels of the network input for a native image of that size:
        after ``input_scale``, padded up to multiples of 2^k (what an ONNX graph is made for)."""
        h, w = self.network_size(height, width)
        step = 2 ** self.config.k
        return h + (-h) % step, w + (-w) % step

    @property
    def onnx_providers(self) -> List[str]:
        """What a graph backend runs on, in priority order: onnxruntime's active execution
        providers, openvino's device and precision ([] for backend torch)."""
        return self._graph.provider_names if self._graph is not None else []

    def describe(self) -> str:
        c = self.config
        via = f" via {self.backend} ({', '.join(self.onnx_providers)})" if self._graph is not None else ""
        return (f"StereoNet k={c.k} features={c.features} refiners={c.num_refiners} "
                f"in_channels={c.in_channels} on {self.device} {self.precision_name}{via}, "
                f"input_scale={self.input_scale:g}, searching 0..{self.max_disparity:g} px "
                f"({self.candidates} candidates) from '{self.ckpt.path}'")

    # ----- processing --------------------------------------------------------------------
    def to_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 or float numpy -> (1, 3, H, W) tensor on the device, same dtype
        (uint8 stays uint8: a quarter of the host-to-device bytes, converted on the device)."""
        if rgb.dtype == np.uint8:
            a = np.ascontiguousarray(rgb)  # copies only a flipped (bgr) or padded view
        else:
            a = np.ascontiguousarray(rgb, dtype=np.float32)
        if a.flags.writeable:
            t = torch.from_numpy(a)
        else:
            # A view of a read-only message buffer (bags, bytes): torch warns because it could
            # write through it; the engine only reads its input, so silence just this case.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                t = torch.from_numpy(a)
        t = t.permute(2, 0, 1).unsqueeze(0)
        if self._pin:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def prepare(self, rgb: torch.Tensor) -> torch.Tensor:
        """Stage 1: a (1, 3, H, W) uint8/float image tensor on the device -> the normalised,
        padded float32 network input in the model's layout (see the comments below)."""
        x = rgb
        scale = self._inv_std_u8 if x.dtype == torch.uint8 else self._inv_std
        if self.config.in_channels == 1:  # a grey checkpoint: luma of [0, 1] floats first
            x = (x.float().mul_(1.0 / 255.0) if x.dtype == torch.uint8 else x)
            x = (x * self._grey_weights).sum(1, keepdim=True)
            scale = self._inv_std
        n, c, h, w_ = x.shape
        if self.input_scale == 1.0:
            # One fused pass, (x - mean) / std (and /255 for uint8), written straight into the
            # padded float32 tensor in the model's layout (the input may be an HWC view): no
            # separate conversion, pad and layout passes.
            out = self._padded(n, c, h, w_, x.device)
            torch.addcmul(self._shift, x, scale, out=out[:, :, :h, :w_])
            return self._replicate_border(out, h, w_)
        sh, sw = self.network_size(h, w_)
        if self.input_scale < 1.0:
            # Shrinking: area averages of [0, 1] floats, then the fused pass on the fewer pixels.
            if x.dtype == torch.uint8:
                x, scale = x.float().mul_(1.0 / 255.0), self._inv_std
            x = F.interpolate(x, size=(sh, sw), mode="area")
            out = self._padded(n, c, sh, sw, x.device)
            torch.addcmul(self._shift, x, scale, out=out[:, :, :sh, :sw])
            return self._replicate_border(out, sh, sw)
        cpu = x.device.type == "cpu" and n == 1
        if cpu and x.dtype == torch.uint8:
            # Growing a uint8 image on the CPU (the node's usual case): OpenCV resizes the bytes
            # (``resize_bilinear_cpu``; ~0.1 ms at 640x480 -> 800x600, torch's float resize took
            # 3-4 ms), rounding to whole grey levels (+-0.5 of 255, below camera noise), then
            # the fused pass writes the padded network input in the model's layout.
            x = resize_bilinear_cpu(x, (sh, sw))
            out = self._padded(n, c, sh, sw, x.device)
            torch.addcmul(self._shift, x, scale, out=out[:, :, :sh, :sw])
            return self._replicate_border(out, sh, sw)
        # Growing floats: normalising commutes with the resize (it is affine per channel), so
        # it runs first, on the smaller native image; bilinear interpolation (area would
        # repeat pixels) then runs on the HWC floats (OpenCV on the CPU), and a copy gives the
        # model's layout.
        fmt = torch.channels_last if cpu else self._fmt
        y = torch.empty((n, c, h, w_), dtype=torch.float32, device=x.device, memory_format=fmt)
        torch.addcmul(self._shift, x, scale, out=y)
        y = resize_bilinear_cpu(y, (sh, sw)) if cpu else F.interpolate(y, size=(sh, sw), mode="bilinear")
        step = 2 ** self.config.k
        if sh % step == 0 and sw % step == 0 and y.is_contiguous(memory_format=self._fmt):
            return y  # nothing to pad (e.g. 640x480 at 1.25x: 800x600) nor to re-lay out
        out = self._padded(n, c, sh, sw, x.device)
        out[:, :, :sh, :sw] = y  # the padding and the layout change in one copy
        return self._replicate_border(out, sh, sw)

    def _padded(self, n: int, c: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        """An uninitialised float32 (n, c, H, W) tensor in the model's layout, H and W the
        image's h and w rounded up to multiples of 2^k (the cost volume's 1/2^k grid)."""
        step = 2 ** self.config.k
        return torch.empty((n, c, h + (-h) % step, w + (-w) % step), dtype=torch.float32,
                           device=device, memory_format=self._fmt)

    @staticmethod
    def _replicate_border(out: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Fill ``out`` below row h and right of column w with the last row/column: zero
        padding would create a strong false edge to match."""
        if out.shape[-2] > h:
            out[:, :, h:, :w] = out[:, :, h - 1:h, :w]
        if out.shape[-1] > w:
            out[:, :, :, w:] = out[:, :, :, w - 1:w]
        return out

    # ----- optional torch.compile ---------------------------------------------------------
    @property
    def compile_state(self) -> str:
        """'off', 'compiling', 'ready' (some shape compiled), 'failed' (and none ready) or 'idle'."""
        if not self.compile_backend:
            return "off"
        if self._compiling is not None:
            return "compiling"
        if self._compiled:
            return "ready"
        return "failed" if self._compile_failed else "idle"

    def wait_compiled(self, timeout: float) -> bool:
        """Block up to ``timeout`` s until no compile is running; True if one is ready."""
        end = time.monotonic() + timeout
        while self._compiling is not None and time.monotonic() < end:
            time.sleep(0.01)
        return bool(self._compiled)

    def _start_compile(self, key: Tuple, left: torch.Tensor, right: torch.Tensor, with_right: bool,
                       with_confidence: bool) -> None:
        with self._compile_lock:
            if self._compiling is not None or key in self._compiled or key in self._compile_failed:
                return  # one compile at a time; the next new shape starts on a later frame
            self._compiling = key
        args = (key, left.detach().clone(), right.detach().clone(), with_right, with_confidence)
        threading.Thread(target=self._compile_worker, args=args, name="stereonet-compile",
                         daemon=True).start()

    def _compile_worker(self, key: Tuple, left: torch.Tensor, right: torch.Tensor, with_right: bool,
                        with_confidence: bool) -> None:
        t0 = time.perf_counter()
        try:
            fn = torch.compile(self.model, backend=self.compile_backend, mode=self.compile_mode,
                               dynamic=False)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype,
                                                        enabled=self.dtype != torch.float32):
                fn(left, right, with_right=with_right, with_confidence=with_confidence,
                   candidates=self.candidates)  # compiles; the result is discarded
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._compiled[key] = fn
            log.info("torch.compile(%s) ready for input %s after %.1f s", self.compile_backend,
                     tuple(key[0]), time.perf_counter() - t0)
        except Exception as exc:  # any backend/toolchain problem: stay eager, say why
            self._compile_failed[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("torch.compile(%s) failed for input %s, staying eager: %s", self.compile_backend,
                        tuple(key[0]), self._compile_failed[key])
        finally:
            self._compiling = None

    @property
    def compile_errors(self) -> Dict[Tuple, str]:
        """torch.compile failures by input key (shape, layout, flags) -> error text."""
        return dict(self._compile_failed)

    @property
    def graph(self) -> Optional["GraphRunner"]:
        """The graph backend's runner (compiled graphs, export counts, cache) or None on torch."""
        return self._graph

    def forward(self, left: torch.Tensor, right: torch.Tensor, with_right: bool,
                with_confidence: bool) -> Dict[str, object]:
        """Stage 2: prepared inputs (``prepare``) -> the model's output dict (``disparity``,
        ``confidence``, ``right_disparity``) at network resolution, padded."""
        if self._graph is not None:
            return self._graph.run(left, right, with_right, with_confidence)
        fn = self.model
        if self.compile_backend:
            key = (tuple(left.shape), left.is_contiguous(memory_format=torch.channels_last),
                   with_right, with_confidence, self.candidates)
            compiled = self._compiled.get(key)
            if compiled is None:
                self._start_compile(key, left, right, with_right, with_confidence)
            else:
                fn = compiled  # type: ignore[assignment]
                self.compiled_calls += 1
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype,
                                                    enabled=self.dtype != torch.float32):
            return fn(left, right, with_right=with_right, with_confidence=with_confidence,
                      candidates=self.candidates)

    def warm_up(self, height: int, width: int, *, with_right: bool = False) -> None:
        """Run one grey frame of (height, width) native pixels, so that the first real frame of
        that size pays no one-time cost (oneDNN kernel selection, a graph backend's export
        or cache load, CUDA context). Raises what :meth:`infer` raises."""
        grey = np.full((int(height), int(width), 3), 128, np.uint8)
        self.infer(grey, grey, with_confidence=True, with_right=with_right)

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray, with_confidence: bool = True,
              with_right: bool = False) -> EngineResult:
        """Disparity for one rectified pair of (H, W, 3) RGB images: float32 in [0, 1], or
        uint8 in [0, 255] (cheaper: converted and normalised in one pass on the device).
        Raises :class:`EngineOutOfMemory` when the device runs out of memory at any stage
        (upload, network, resize back)."""
        if left_rgb.shape != right_rgb.shape:
            raise ValueError(f"left {left_rgb.shape} and right {right_rgb.shape} differ in size")
        try:
            return self._infer(left_rgb, right_rgb, with_confidence, with_right)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the next frame the memory this one held
            raise EngineOutOfMemory(str(exc).splitlines()[0] if str(exc) else "out of memory") from exc

    def _infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray, with_confidence: bool,
               with_right: bool) -> EngineResult:
        h, w = left_rgb.shape[:2]
        if self.num_threads and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        left = self.prepare(self.to_tensor(left_rgb))
        right = self.prepare(self.to_tensor(right_rgb))
        sync()
        t1 = time.perf_counter()
        out = self.forward(left, right, with_right, with_confidence)
        sync()
        t2 = time.perf_counter()
        sh, sw = self.network_size(h, w)

        def native(t: torch.Tensor, is_disp: bool) -> np.ndarray:
            t = t[..., :sh, :sw].float()
            if (sh, sw) != (h, w):
                t = (resize_bilinear_cpu(t, (h, w)) if t.device.type == "cpu"
                     else F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False))
                if is_disp:
                    t = t * (w / sw)  # disparities are horizontal pixel distances
            return t[0, 0].cpu().numpy()

        disp = native(out["disparity"], True)  # type: ignore[arg-type]
        conf = native(out["confidence"], False).clip(0, 1) if with_confidence else None  # type: ignore[arg-type]
        right_disp = None
        if with_right:
            rd = out["right_disparity"]  # full network resolution, like "disparity"
            right_disp = native(rd, True)
        t3 = time.perf_counter()
        return EngineResult(disp, conf, right_disp, {
            "preprocess": 1e3 * (t1 - t0), "model": 1e3 * (t2 - t1), "postprocess": 1e3 * (t3 - t2)})
