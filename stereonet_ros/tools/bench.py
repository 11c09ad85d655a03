"""``stereonet-bench``: how fast is StereoNet here, and what does the ROS node add?

Sections of the report (table on stdout, everything in ``--json``):

- ``model``: network forward only (inputs already on the device), per size and per precision
  available on the device (fp32 on CPU; fp32/fp16/bf16 on CUDA): mean/p50/p95 ms and Hz.
  CUDA timings synchronise before reading the clock, so they are real GPU time.
- ``memory``: per size, host peak RSS (``VmHWM`` of /proc/self/status, reset through
  /proc/self/clear_refs) and GPU peak (``torch.cuda.max_memory_allocated``), MiB.
- ``node``: the real ``StereoNetNode`` in this process, fed by a real rclpy publisher and
  read by a real subscriber over DDS (private ROS domain and context). The network call is
  replaced by a replay of its own output (computed once, for real), so what is measured is
  the node's own overhead: decode, engine pre/post-processing, numpy post-processing,
  message building and publishing, and the DDS transport.
- ``sgbm``: OpenCV StereoSGBM on the same frames, the classical reference; ``ratio`` is
  StereoNet model time / SGBM time measured in the same run.
- ``knobs``: full ``engine.infer`` cost of input_scale, max_disparity and the number of
  refinement levels, each varied alone from the base setting (ratio to the base).
- ``micro`` (``--micro``): cost volume vectorised vs a Python loop over disparities,
  channels_last vs contiguous, conv-BN folding, CPU threads 1 vs 2 with a ROS executor busy.

All times are milliseconds of wall clock. On a shared machine compare *ratios* from one run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..checkpoint import DEFAULT_CHECKPOINT, LoadedCheckpoint, Normalization, load_checkpoint, save_weights
from ..engine import StereoEngine, cpu_has_native_bf16, resolve_device
from ..model import StereoNet, StereoNetConfig, difference_cost_volume
from ..stats import percentiles

DEFAULT_SIZES = "640x480,960x540,1280x720"
SECTIONS = ("model", "memory", "node", "sgbm", "knobs")
MICRO_PARTS = ("cost_volume", "fold_bn", "channels_last", "threads")
OUTPUT_TOPICS = ("disparity", "depth", "points2", "confidence", "disparity/color")
SCENE_DISPARITY = 24  # px, the synthetic plane's shift (well inside every searched range)


# ----- small utilities ------------------------------------------------------------------------
def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """'640x480,960x540' -> [(640, 480), (960, 540)] as (width, height) in pixels."""
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            w, h = (int(v) for v in item.split("x"))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"size '{item}' is not WIDTHxHEIGHT") from exc
        if w < 16 or h < 16:
            raise argparse.ArgumentTypeError(f"size '{item}' is too small (>= 16x16)")
        out.append((w, h))
    if not out:
        raise argparse.ArgumentTypeError("no sizes given")
    return out


def summarize(ms: Sequence[float]) -> Dict[str, float]:
    """mean/p50/p95/min in ms and the throughput in Hz (1000 / mean) of a list of timings
    (the percentiles are ``stats.percentiles``, as in the node's and the evaluator's reports)."""
    p = percentiles(ms)
    mean = p["mean"]
    return {"mean_ms": mean, "p50_ms": p["p50"], "p95_ms": p["p95"], "min_ms": float(min(ms)),
            "hz": 1e3 / mean if mean > 0 else math.inf, "n": p["count"]}


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A no-op on the CPU; waits for queued kernels on CUDA so timings are real GPU time."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_calls(fn: Callable[[], Any], iters: int, warmup: int, sync: Callable[[], None]) -> List[float]:
    """Run ``fn`` warmup + iters times; per-call wall time in ms of the last ``iters``."""
    for _ in range(warmup):
        fn()
        sync()
    out = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def _proc_status_mib(field: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return None


def reset_host_peak() -> bool:
    """Reset VmHWM to the current RSS ('5' > clear_refs, Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_frames(width: int, height: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A textured fronto-parallel plane: (H, W, 3) uint8 left/right, right(x) = left(x + d)."""
    import cv2
    rng = np.random.default_rng(seed)
    d = SCENE_DISPARITY
    big = np.zeros((height, width + d, 3), np.float32)
    for cell in (3, 11, 37):  # several texture scales, so both the coarse and fine levels match
        small = rng.random((height // cell + 2, (width + d) // cell + 2, 3)).astype(np.float32)
        big += cv2.resize(small, (width + d + 2 * cell, height + 2 * cell),
                          interpolation=cv2.INTER_LINEAR)[:height, :width + d]
    big = (255 * (big - big.min()) / (big.max() - big.min())).astype(np.uint8)
    return np.ascontiguousarray(big[:, :width]), np.ascontiguousarray(big[:, d:d + width])


#: The recipe the bundled default checkpoint is trained from (its ``model:`` section).
DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "config" / "train_default.yaml"


def default_architecture() -> Tuple[StereoNetConfig, str]:
    """Architecture of the bundled default model: the ``model:`` section of the training
    recipe when it is available (source tree), else ``StereoNetConfig()`` (the paper's)."""
    try:
        import yaml
        with open(DEFAULT_RECIPE) as f:
            model = (yaml.safe_load(f) or {}).get("model") or {}
        fields = set(StereoNetConfig.__dataclass_fields__)
        return StereoNetConfig(**{k: v for k, v in model.items() if k in fields}), str(DEFAULT_RECIPE)
    except (OSError, ImportError, TypeError, ValueError, AttributeError):
        return StereoNetConfig(), "StereoNetConfig() defaults"


def load_or_random(path: str) -> Tuple[LoadedCheckpoint, str]:
    """Load ``path`` ('' = the bundled default). If the bundled default does not exist yet,
    a random model of the default architecture (timings are identical; outputs meaningless)
    is saved to a temporary file so the node can load it too. Returns (checkpoint, note)."""
    if path or DEFAULT_CHECKPOINT.exists():
        return load_checkpoint(path or None), ""
    config, source = default_architecture()
    torch.manual_seed(0)
    model = StereoNet(config).eval()
    tmp = Path(tempfile.mkdtemp(prefix="stereonet_bench_")) / "random_default.pt"
    save_weights(tmp, model, Normalization(), {"weights": "random (bench fallback)"})
    note = (f"NOTE: the bundled checkpoint {DEFAULT_CHECKPOINT} does not exist yet; benchmarking a "
            f"RANDOMLY INITIALISED model of the default architecture (from {source}: "
            f"{config.to_dict()}) saved at {tmp}. Speed is the same as for trained weights; the "
            "disparities are meaningless.")
    return load_checkpoint(tmp), note


def precisions_for(device: torch.device) -> List[str]:
    """Precisions worth timing on ``device``: fp32 on the CPU (and bf16 where the CPU has it
    natively); fp32, fp16 (and bf16) on CUDA."""
    if device.type != "cuda":
        return ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    out = ["fp32", "fp16"]
    if torch.cuda.is_bf16_supported():
        out.append("bf16")
    return out


@dataclasses.dataclass
class BenchConfig:
    """Resolved command-line options (sizes are (width, height) in pixels)."""

    checkpoint: str
    device: str
    sizes: List[Tuple[int, int]]
    iters: int
    warmup: int
    input_scales: List[float]
    max_disparities: List[float]
    refiners: List[Optional[int]]
    num_threads: int
    node_frames: int
    knob_size: Tuple[int, int]
    sections: List[str]
    micro: bool
    compile_backend: str = ""
    compile_timeout: float = 900.0
    micro_parts: Tuple[str, ...] = MICRO_PARTS


# ----- sections ------------------------------------------------------------------------------
class Bench:
    """Runs the sections and collects one JSON-able report."""

    def __init__(self, cfg: BenchConfig, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.log = log
        self.ckpt, self.note = load_or_random(cfg.checkpoint)
        if self.note:
            log("\n" + "!" * 100 + "\n" + self.note + "\n" + "!" * 100 + "\n")
        # refiners kept in every section but the knobs table (-1 = all the checkpoint's)
        self.refiners = -1 if cfg.refiners[0] is None else int(cfg.refiners[0])
        self.device = resolve_device(cfg.device)
        self.sync = synchronizer(self.device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.frames = {s: make_frames(*s) for s in cfg.sizes}
        self._cached_out: Dict[Tuple[int, int], Dict[str, Any]] = {}   # size -> auto-precision output
        self.model_ms: Dict[Tuple[int, int], Dict[str, float]] = {}     # size -> precision -> mean ms

    def engine(self, precision: str = "auto", input_scale: Optional[float] = None,
               max_disparity: Optional[float] = None, refiners: Optional[int] = None,
               **kw: Any) -> StereoEngine:
        c = self.cfg
        return StereoEngine(device=str(self.device), precision=precision,
                            input_scale=c.input_scales[0] if input_scale is None else input_scale,
                            max_disparity=c.max_disparities[0] if max_disparity is None else max_disparity,
                            refiners=self.refiners if refiners is None else refiners, loaded=self.ckpt, **kw)

    @staticmethod
    def _prepared(engine: StereoEngine, frames: Tuple[np.ndarray, np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
        l, r = (f.astype(np.float32) / 255.0 for f in frames)
        return engine.prepare(engine.to_tensor(l)), engine.prepare(engine.to_tensor(r))

    def meta(self) -> Dict[str, Any]:
        c = self.ckpt
        e = self.engine()
        gpu = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
                "cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpu": gpu,
                "device": str(self.device), "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp default, spins)"),
                "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
                "checkpoint": c.path, "checkpoint_note": self.note, "config": e.config.to_dict(),
                "engine": e.describe(), "iters": self.cfg.iters, "warmup": self.cfg.warmup,
                "sizes": [f"{w}x{h}" for w, h in self.cfg.sizes]}

    # -- model + memory ---------------------------------------------------------------------
    def run_model(self) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
        rows, mem = [], []
        auto = self.engine().precision_name
        for (w, h) in self.cfg.sizes:
            peak_ok = reset_host_peak()
            rss_before = _proc_status_mib("VmRSS")
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            for prec in precisions_for(self.device):
                eng = self.engine(prec)
                left, right = self._prepared(eng, self.frames[(w, h)])
                out: Dict[str, Any] = {}

                def fwd() -> None:
                    # The node's default flags: confidence on, no left-right check.
                    out["o"] = eng.forward(left, right, False, True)

                ms = time_calls(fwd, self.cfg.iters, self.cfg.warmup, self.sync)
                s = summarize(ms)
                rows.append({"size": f"{w}x{h}", "precision": prec, **s})
                self.model_ms.setdefault((w, h), {})[prec] = s["mean_ms"]
                if prec == auto:
                    self._cached_out[(w, h)] = out["o"]
                self.log(f"  model {w}x{h} {prec}: {s['mean_ms']:.1f} ms mean, {s['hz']:.2f} Hz")
            m = {"size": f"{w}x{h}", "host_rss_before_mib": rss_before,
                 "host_peak_rss_mib": _proc_status_mib("VmHWM"),
                 "host_peak_note": "" if peak_ok else "clear_refs refused: VmHWM is the process-lifetime peak",
                 "gpu_peak_allocated_mib": (torch.cuda.max_memory_allocated(self.device) / 2 ** 20
                                            if self.device.type == "cuda" else None)}
            mem.append(m)
        return rows, mem

    def best_model_ms(self, size: Tuple[int, int]) -> Optional[float]:
        """Fastest precision's mean model time for ``size`` (ms), if the model section ran."""
        d = self.model_ms.get(size)
        return min(d.values()) if d else None

    def auto_model_ms(self, size: Tuple[int, int]) -> Optional[float]:
        d = self.model_ms.get(size)
        return d.get(self.engine().precision_name) if d else None

    # -- classical reference ------------------------------------------------------------------
    def run_sgbm(self) -> List[Dict[str, Any]]:
        from .baseline import BLOCK_SIZE, make_sgbm, num_disparities_for, to_grey_u8
        rows = []
        block = BLOCK_SIZE
        for (w, h) in self.cfg.sizes:
            # The network's searched range, in SGBM's multiples of 16 (the one baseline of
            # training.measure's accuracy numbers, so speed and accuracy compare one matcher).
            ndisp = num_disparities_for(self.engine().max_disparity, w)
            sgbm = make_sgbm(ndisp)
            lg, rg = (to_grey_u8(f) for f in self.frames[(w, h)])
            ms = time_calls(lambda: sgbm.compute(lg, rg), max(self.cfg.iters, 3), 1, lambda: None)
            s = summarize(ms)
            model, best = self.auto_model_ms((w, h)), self.best_model_ms((w, h))
            rows.append({"size": f"{w}x{h}", "num_disparities": ndisp, "block_size": block,
                         "mode": "MODE_SGBM_3WAY", **s, "model_mean_ms": model,
                         "model_precision": self.engine().precision_name,
                         "ratio_model_over_sgbm": (model / s["mean_ms"]) if model else None,
                         "ratio_best_precision_over_sgbm": (best / s["mean_ms"]) if best else None})
            self.log(f"  sgbm {w}x{h}: {s['mean_ms']:.1f} ms" +
                     (f" (StereoNet/SGBM = {model / s['mean_ms']:.2f}x)" if model else ""))
        return rows

    # -- knobs --------------------------------------------------------------------------------
    def run_knobs(self) -> List[Dict[str, Any]]:
        c = self.cfg
        size = c.knob_size
        frames = self.frames.get(size) or make_frames(*size)
        lf, rf = (f.astype(np.float32) / 255.0 for f in frames)
        variants: List[Tuple[str, Any, Dict[str, Any]]] = [("base", "", {})]
        variants += [("input_scale", s, {"input_scale": s}) for s in c.input_scales[1:]]
        variants += [("max_disparity", d, {"max_disparity": d}) for d in c.max_disparities[1:]]
        variants += [("refiners", n, {"refiners": n}) for n in c.refiners[1:]]
        rows: List[Dict[str, Any]] = []
        base_ms = None
        # One warm-up per knob even on the CPU: a new cost-volume depth or input size needs
        # new oneDNN primitives, and that first call measured up to 2x a steady frame.
        cpu = self.device.type == "cpu"
        iters, warmup = (max(1, c.iters - 1), max(1, c.warmup)) if cpu else (c.iters, c.warmup)
        for name, value, kw in variants:
            eng = self.engine(**kw)
            ms = time_calls(lambda: eng.infer(lf, rf, with_confidence=True), iters, warmup, self.sync)
            s = summarize(ms)
            base_ms = s["mean_ms"] if base_ms is None else base_ms
            rows.append({"knob": name, "value": value, "size": f"{size[0]}x{size[1]}",
                         "precision": eng.precision_name, "input_scale": eng.input_scale,
                         "max_disparity_px": eng.max_disparity, "candidates": eng.candidates,
                         "refiners": eng.config.num_refiners, **s, "ratio_vs_base": s["mean_ms"] / base_ms})
            self.log(f"  knob {name}={value}: {s['mean_ms']:.1f} ms ({s['mean_ms'] / base_ms:.2f}x base)")
        return rows

    # -- node over DDS -----------------------------------------------------------------------
    def run_node(self) -> List[Dict[str, Any]]:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from stereo_msgs.msg import DisparityImage
        from sensor_msgs.msg import PointCloud2
        from ..imageconv import fill_image
        from ..node import StereoNetNode

        domain = random.randint(100, 200)
        ctx = Context()
        rclpy.init(context=ctx, domain_id=domain)
        rows: List[Dict[str, Any]] = []
        try:
            for idx, (w, h) in enumerate(self.cfg.sizes):
                ns = f"/bench{idx}"
                params = [Parameter("checkpoint", value=self.ckpt.path),
                          Parameter("device", value=str(self.device)),
                          Parameter("refiners", value=self.refiners),
                          Parameter("input_scale", value=float(self.cfg.input_scales[0])),
                          Parameter("max_disparity", value=float(self.cfg.max_disparities[0]))]
                node = StereoNetNode(namespace=ns, context=ctx, parameter_overrides=params)
                io = rclpy.create_node("bench_io", namespace=ns, context=ctx)
                try:
                    rows.append(self._node_one_size(node, io, ctx, (w, h), SingleThreadedExecutor,
                                                    QoSProfile, ReliabilityPolicy, CameraInfo, Image,
                                                    DisparityImage, PointCloud2, fill_image))
                finally:
                    node.shutdown()
                    node.destroy_node()
                    io.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)
        return rows

    def _node_one_size(self, node: Any, io: Any, ctx: Any, size: Tuple[int, int], Executor: Any,
                       QoSProfile: Any, Rel: Any, CameraInfo: Any, Image: Any, DisparityImage: Any,
                       PointCloud2: Any, fill_image: Callable) -> Dict[str, Any]:
        w, h = size
        engine = node.engine
        cached = self._cached_out.get(size)
        real_ms: List[float] = []

        def replay(left: torch.Tensor, right: torch.Tensor, with_right: bool, with_conf: bool) -> Dict[str, Any]:
            nonlocal cached
            if cached is None or with_right:  # first call (or an unexpected flag): run it for real
                t0 = time.perf_counter()
                cached = StereoEngine.forward(engine, left, right, with_right, with_conf)
                real_ms.append(1e3 * (time.perf_counter() - t0))
            return cached

        engine.forward = replay  # instance attribute shadows the method
        stages: List[Dict[str, float]] = []
        orig = node.stats.processed_frame
        node.stats.processed_frame = lambda st: (stages.append(dict(st)), orig(st))

        got: Dict[Tuple[int, int], Dict[str, float]] = {}  # stamp -> topic -> receive time
        lock = threading.Lock()

        def on_out(topic: str, msg: Any) -> None:
            t = time.perf_counter()
            hdr = msg.header
            with lock:
                got.setdefault((hdr.stamp.sec, hdr.stamp.nanosec), {})[topic] = t

        types = {"disparity": DisparityImage, "depth": Image, "points2": PointCloud2,
                 "confidence": Image, "disparity/color": Image}
        rel = QoSProfile(depth=5, reliability=Rel.RELIABLE)
        subs = [io.create_subscription(types[t], t, lambda m, t=t: on_out(t, m), rel) for t in OUTPUT_TOPICS]
        pubs = {k: io.create_publisher(t, k, rel) for k, t in (("left/image_rect", Image),
                                                                ("right/image_rect", Image),
                                                                ("left/camera_info", CameraInfo),
                                                                ("right/camera_info", CameraInfo))}
        ex = Executor(context=ctx)
        ex.add_node(node)
        ex.add_node(io)
        stop = threading.Event()
        spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                                daemon=True)
        spin.start()
        lost = 0
        e2e: List[float] = []
        try:
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline and not (
                    all(p.get_subscription_count() >= 1 for p in pubs.values())
                    and all(s.get_publisher_count() >= 1 for s in subs)):
                time.sleep(0.02)
            lf, rf = self.frames.get(size) or make_frames(w, h)
            fx, base = 0.8 * w, 0.12
            for i in range(1 + self.cfg.warmup + self.cfg.node_frames):
                stamp_ns = time.time_ns()
                sec, nsec = divmod(stamp_ns, 1_000_000_000)
                for side, tx in (("left", 0.0), ("right", -fx * base)):
                    info = CameraInfo()
                    info.header.stamp.sec, info.header.stamp.nanosec = sec, nsec
                    info.header.frame_id = "left_optical"
                    info.width, info.height = w, h
                    info.d = [0.0] * 5
                    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
                    info.p = [fx, 0.0, (w - 1) / 2, tx, 0.0, fx, (h - 1) / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
                    pubs[f"{side}/camera_info"].publish(info)
                if i == 0:
                    time.sleep(0.2)  # let camera_info arrive before the first pair
                msgs = []
                for side, arr in (("left", lf), ("right", rf)):
                    m = Image()
                    m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
                    m.header.frame_id = "left_optical"
                    msgs.append(fill_image(m, arr, "rgb8"))
                n_before = len(stages)
                t0 = time.perf_counter()
                pubs["left/image_rect"].publish(msgs[0])
                pubs["right/image_rect"].publish(msgs[1])
                key = (sec, nsec)
                end = time.monotonic() + 30.0
                done = False
                while time.monotonic() < end:
                    with lock:
                        done = len(got.get(key, {})) == len(OUTPUT_TOPICS)
                    if done:
                        break
                    time.sleep(0.0005)
                if not done:
                    lost += 1
                    continue
                if i > self.cfg.warmup and len(stages) > n_before:
                    with lock:
                        e2e.append(1e3 * (max(got[key].values()) - t0))
                elif i > self.cfg.warmup:
                    lost += 1
        finally:
            stop.set()
            spin.join(5)
            ex.shutdown()
        measured = stages[-len(e2e):] if e2e else []
        keys = ("decode", "preprocess", "postprocess", "postprocess_numpy", "publish", "model", "total")
        st = {k: summarize([s.get(k, 0.0) for s in measured]) if measured else None for k in keys}
        overhead = [s["total"] - s.get("model", 0.0) for s in measured]
        row: Dict[str, Any] = {"size": f"{w}x{h}", "frames": len(measured), "lost": lost,
                               "precision": engine.precision_name,
                               "stages_ms": {k: (v["mean_ms"] if v else None) for k, v in st.items()},
                               "stages_p95_ms": {k: (v["p95_ms"] if v else None) for k, v in st.items()}}
        if measured:
            ov = summarize(overhead)
            ee = summarize(e2e)
            model = self.auto_model_ms(size)
            row.update({"overhead_ms": ov["mean_ms"], "overhead_p95_ms": ov["p95_ms"],
                        "e2e_without_model_ms": ee["mean_ms"], "e2e_without_model_p95_ms": ee["p95_ms"],
                        "transport_ms": ee["mean_ms"] - st["total"]["mean_ms"],  # DDS in + out, executor
                        "model_ms": model})
            if model:
                frame = model + ov["mean_ms"]
                row["overhead_pct_of_frame"] = 100.0 * ov["mean_ms"] / frame
                row["est_node_hz"] = 1e3 / frame
                row["est_e2e_latency_ms"] = model + ee["mean_ms"]
            self.log(f"  node {w}x{h}: overhead {ov['mean_ms']:.1f} ms/frame "
                     f"(decode {st['decode']['mean_ms']:.1f}, engine pre {st['preprocess']['mean_ms']:.1f}, "
                     f"engine post {st['postprocess']['mean_ms']:.1f}, numpy post "
                     f"{st['postprocess_numpy']['mean_ms']:.1f}, publish {st['publish']['mean_ms']:.1f}); "
                     f"DDS+executor {row['transport_ms']:.1f} ms" +
                     (f"; {row['overhead_pct_of_frame']:.1f}% of a frame" if model else ""))
        return row

    # -- micro ---------------------------------------------------------------------------------
    def run_micro(self) -> Dict[str, Any]:
        return micro_benchmarks(self)

    def run(self) -> Dict[str, Any]:
        c = self.cfg
        report: Dict[str, Any] = {"meta": self.meta()}
        t_start = time.perf_counter()
        if "model" in c.sections or "memory" in c.sections:
            self.log("[model + memory]")
            report["model"], report["memory"] = self.run_model()
        if "node" in c.sections:
            self.log("[node over DDS, network replayed]")
            report["node"] = self.run_node()
        if "sgbm" in c.sections:
            self.log("[OpenCV StereoSGBM]")
            report["sgbm"] = self.run_sgbm()
        if "knobs" in c.sections:
            self.log(f"[knobs at {c.knob_size[0]}x{c.knob_size[1]}, full engine.infer]")
            report["knobs"] = self.run_knobs()
        report["micro"] = self.run_micro() if c.micro else None
        report["meta"]["wall_s"] = time.perf_counter() - t_start
        return report


# ----- micro benchmarks ------------------------------------------------------------------------
def loop_cost_volume(ref: torch.Tensor, other: torch.Tensor, candidates: int) -> torch.Tensor:
    """Reference: one Python iteration per disparity (the published StereoNet code's shape),
    left reference, zeros where x - d < 0. (B, C, D, H, W)."""
    b, c, h, w = ref.shape
    out = ref.new_zeros(b, c, candidates, h, w)
    for d in range(candidates):
        if d == 0:
            out[:, :, 0] = ref - other
        else:
            out[:, :, d, :, d:] = ref[..., d:] - other[..., :-d]
    return out


def _ab(fa: Callable[[], Any], fb: Callable[[], Any], iters: int, sync: Callable[[], None]) -> Tuple[List[float], List[float]]:
    """Time two variants interleaved (a, b, a, b, ...) so drifting load hits both alike."""
    fa(); fb(); sync()
    ta, tb = [], []
    for _ in range(max(1, iters)):
        ta += time_calls(fa, 1, 0, sync)
        tb += time_calls(fb, 1, 0, sync)
    return ta, tb


def _pair(name: str, a: str, b: str, ta: List[float], tb: List[float], **extra: Any) -> Dict[str, Any]:
    sa, sb = summarize(ta), summarize(tb)
    return {"name": name, "a": a, "b": b, "a_mean_ms": sa["mean_ms"], "b_mean_ms": sb["mean_ms"],
            "a_p50_ms": sa["p50_ms"], "b_p50_ms": sb["p50_ms"], "speedup_b_over_a": sa["mean_ms"] / sb["mean_ms"],
            **extra}


def micro_benchmarks(bench: Bench) -> Dict[str, Any]:
    """Before/after pairs for the optimisation decisions (see docs/PERFORMANCE.md)."""
    log = bench.log
    dev, sync = bench.device, bench.sync
    cfg = bench.ckpt.config
    iters = max(2, bench.cfg.iters)
    out: Dict[str, Any] = {}
    size = bench.cfg.sizes[0]

    parts = bench.cfg.micro_parts
    frames = bench.frames[size]
    eng = bench.engine("fp32")
    left, right = bench._prepared(eng, frames)
    rows = []
    if "cost_volume" in parts:
        log("[micro: cost volume, vectorised vs Python loop over disparities]")
    for (w, h) in (bench.cfg.sizes if "cost_volume" in parts else []):
        fh, fw = -(-h // 2 ** cfg.k), -(-w // 2 ** cfg.k)
        g = torch.Generator().manual_seed(0)
        ref = torch.randn(1, cfg.features, fh, fw, generator=g).to(dev)
        oth = torch.randn(1, cfg.features, fh, fw, generator=g).to(dev)
        d = cfg.candidates
        err = float((difference_cost_volume(ref, oth, d, -1) - loop_cost_volume(ref, oth, d)).abs().max())
        with torch.inference_mode():
            ta, tb = _ab(lambda: loop_cost_volume(ref, oth, d), lambda: difference_cost_volume(ref, oth, d, -1),
                         max(5, iters * 3), sync)
        rows.append(_pair("cost_volume", "python_loop", "vectorised", ta, tb, size=f"{w}x{h}",
                          volume=[1, cfg.features, d, fh, fw], max_abs_diff=err))
        log(f"  {w}x{h}: loop {rows[-1]['a_mean_ms']:.2f} ms, vectorised {rows[-1]['b_mean_ms']:.2f} ms")
    if rows:
        out["cost_volume"] = rows

    if "fold_bn" in parts:
        out["fold_bn"] = micro_fold_bn(bench, eng, left, right, iters)
    if "channels_last" in parts:
        out["channels_last"] = micro_channels_last(bench, frames, iters)
    if bench.cfg.compile_backend:
        out["compile"] = micro_compile(bench, frames, iters)
    if dev.type == "cpu" and "threads" in parts:
        out["threads"] = micro_threads(bench, eng, left, right, iters)
    return out


def micro_fold_bn(bench: Bench, eng: StereoEngine, left: torch.Tensor, right: torch.Tensor,
                  iters: int) -> Dict[str, Any]:
    """Engine with BatchNorm folded (default) vs separate BatchNorm, model forward fp32."""
    log, sync, size = bench.log, bench.sync, bench.cfg.sizes[0]
    out: Dict[str, Any] = {}
    log(f"[micro: BatchNorm folded into the convolutions vs separate, fp32 forward at {size[0]}x{size[1]}]")
    plain = bench.engine("fp32", fold_bn=False)
    fwd = lambda e: lambda: e.model(left, right, with_confidence=True, candidates=e.candidates)  # noqa: E731
    with torch.inference_mode():
        diff = float((fwd(plain)()["disparity"] - fwd(eng)()["disparity"]).abs().max())
        ta, tb = _ab(fwd(plain), fwd(eng), iters, sync)
    out["fold_bn"] = _pair("fold_bn", "conv+bn", "folded", ta, tb, size=f"{size[0]}x{size[1]}",
                           max_abs_disparity_diff_px=diff)
    log(f"  separate {out['fold_bn']['a_mean_ms']:.1f} ms, folded {out['fold_bn']['b_mean_ms']:.1f} ms, "
        f"max |diff| {diff:.2e} px")
    return out["fold_bn"]


def micro_channels_last(bench: Bench, frames: Tuple[np.ndarray, np.ndarray], iters: int) -> Dict[str, Any]:
    """Engine with NHWC vs NCHW 2D convolutions, model forward fp32."""
    log, sync, size = bench.log, bench.sync, bench.cfg.sizes[0]
    out: Dict[str, Any] = {}
    log(f"[micro: channels_last (NHWC) vs contiguous (NCHW), fp32 forward at {size[0]}x{size[1]}]")
    nchw, nhwc = bench.engine("fp32", channels_last=False), bench.engine("fp32", channels_last=True)
    (l1, r1), (l2, r2) = bench._prepared(nchw, frames), bench._prepared(nhwc, frames)
    with torch.inference_mode():
        diff = float((nchw.model(l1, r1, candidates=nchw.candidates)["disparity"]
                      - nhwc.model(l2, r2, candidates=nhwc.candidates)["disparity"]).abs().max())
        ta, tb = _ab(lambda: nchw.model(l1, r1, with_confidence=True, candidates=nchw.candidates),
                     lambda: nhwc.model(l2, r2, with_confidence=True, candidates=nhwc.candidates), iters, sync)
    out["channels_last"] = _pair("channels_last", "contiguous", "channels_last", ta, tb,
                                 size=f"{size[0]}x{size[1]}", max_abs_disparity_diff_px=diff)
    log(f"  contiguous {out['channels_last']['a_mean_ms']:.1f} ms, channels_last "
        f"{out['channels_last']['b_mean_ms']:.1f} ms, max |diff| {diff:.2e} px")
    return out["channels_last"]


def micro_compile(bench: Bench, frames: Tuple[np.ndarray, np.ndarray], iters: int) -> Dict[str, Any]:
    """Eager vs torch.compile (``--compile BACKEND``): background compile time (the first
    frame is served eagerly meanwhile), then interleaved model-only A/B."""
    be = bench.cfg.compile_backend
    eng = bench.engine(compile_backend=be)
    left, right = bench._prepared(eng, frames)
    bench.log(f"[micro: torch.compile backend={be}, compiling in the background]")
    t0 = time.perf_counter()
    eng.forward(left, right, False, True)  # eager frame; starts the compile
    first_ms = 1e3 * (time.perf_counter() - t0)
    ok = eng.wait_compiled(bench.cfg.compile_timeout)
    compile_s = time.perf_counter() - t0
    res: Dict[str, Any] = {"name": "compile", "backend": be, "first_frame_ms": first_ms,
                           "compile_s": compile_s, "state": eng.compile_state,
                           "error": next(iter(eng.compile_errors.values()), "")}
    if ok:
        with torch.inference_mode():
            ta, tb = _ab(lambda: eng.model(left, right, with_confidence=True, candidates=eng.candidates),
                         lambda: eng.forward(left, right, False, True), iters, bench.sync)
        res.update(_pair("compile", "eager", f"compiled_{be}", ta, tb, size="x".join(map(str, frames[0].shape[1::-1]))))
        res.update(compile_s=compile_s, first_frame_ms=first_ms, backend=be)
        bench.log(f"  compiled after {compile_s:.0f} s (first frame eager: {first_ms:.0f} ms); eager "
                  f"{res['a_mean_ms']:.1f} ms vs compiled {res['b_mean_ms']:.1f} ms")
    else:
        bench.log(f"  not ready after {compile_s:.0f} s: {eng.compile_state} {res['error']}")
    return res


def micro_threads(bench: Bench, eng: StereoEngine, left: torch.Tensor, right: torch.Tensor,
                  iters: int) -> Dict[str, Any]:
    """Model forward with torch using 1 vs 2 intra-op threads while a ROS executor spins in
    another thread and a 30 Hz camera-sized publisher feeds a subscriber (DDS + GIL load)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from ..imageconv import fill_image

    w, h = bench.cfg.sizes[0]
    bench.log(f"[micro: torch threads 1 vs 2 with a ROS executor receiving {w}x{h} rgb8 at 30 Hz]")
    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(100, 200))
    node = rclpy.create_node("bench_threads", context=ctx)
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    received = [0]
    node.create_subscription(Image, "load", lambda m: received.__setitem__(0, received[0] + 1), qos)
    pub = node.create_publisher(Image, "load", qos)
    msg = fill_image(Image(), bench.frames[(w, h)][0], "rgb8")
    node.create_timer(1 / 30.0, lambda: pub.publish(msg))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()
    th = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                          daemon=True)
    th.start()
    before = torch.get_num_threads()
    res: Dict[str, Any]
    try:
        def run(n: int) -> Callable[[], None]:
            def f() -> None:
                torch.set_num_threads(n)
                with torch.inference_mode():
                    eng.model(left, right, with_confidence=True, candidates=eng.candidates)
            return f
        t_start, r0 = time.perf_counter(), received[0]
        ta, tb = _ab(run(1), run(2), iters, lambda: None)
        rate = (received[0] - r0) / (time.perf_counter() - t_start)
        res = _pair("threads", "1_thread", "2_threads", ta, tb, size=f"{w}x{h}", ros_msgs_per_s=rate)
        bench.log(f"  1 thread {res['a_mean_ms']:.1f} ms, 2 threads {res['b_mean_ms']:.1f} ms; "
                  f"executor received {rate:.1f} msg/s meanwhile")
    finally:
        torch.set_num_threads(before)
        stop.set()
        th.join(5)
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return res


# ----- report ----------------------------------------------------------------------------------
def format_report(r: Dict[str, Any]) -> str:
    """Human-readable tables of a report dict (what ``main`` prints)."""
    m = r["meta"]
    lines = [f"stereonet-bench  {m['date_utc']}  device {m['device']}"
             + (f" ({m['gpu']})" if m.get("gpu") else "")
             + f"  CPU {m['cpu']} x{m['cpu_count']}  torch {m['torch']} ({m['torch_threads']} threads, "
             f"OMP_WAIT_POLICY {m['omp_wait_policy']}, load average "
             f"{'?' if not m.get('load_average') else format(m['load_average'][0], '.1f')})",
             f"model: {m['engine']}"]
    if m.get("checkpoint_note"):
        lines.append("!!! " + m["checkpoint_note"])
    if r.get("model"):
        lines += ["", "Model only (forward, inputs on the device)",
                  f"{'size':>10} {'prec':>5} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'Hz':>8}"]
        lines += [f"{x['size']:>10} {x['precision']:>5} {x['mean_ms']:9.1f} {x['p50_ms']:9.1f} "
                  f"{x['p95_ms']:9.1f} {x['hz']:8.2f}" for x in r["model"]]
    if r.get("memory"):
        lines += ["", "Peak memory (MiB)", f"{'size':>10} {'host RSS before':>16} {'host peak':>10} {'GPU peak':>9}"]
        for x in r["memory"]:
            g = x["gpu_peak_allocated_mib"]
            lines.append(f"{x['size']:>10} {x['host_rss_before_mib'] or 0:16.0f} {x['host_peak_rss_mib'] or 0:10.0f} "
                         f"{'-' if g is None else f'{g:.0f}':>9}")
    if r.get("node"):
        lines += ["", "Node overhead per frame over DDS (ms; the network replayed)",
                  f"{'size':>10} {'decode':>7} {'pre':>6} {'post':>6} {'numpy':>6} {'publish':>8} "
                  f"{'overhead':>9} {'DDS':>6} {'% frame':>8} {'est Hz':>7}"]
        for x in r["node"]:
            s = x["stages_ms"]
            if x.get("overhead_ms") is None:
                lines.append(f"{x['size']:>10}  no frame came back ({x['lost']} lost)")
                continue
            pct = x.get("overhead_pct_of_frame")
            lines.append(f"{x['size']:>10} {s['decode']:7.1f} {s['preprocess']:6.1f} {s['postprocess']:6.1f} "
                         f"{s['postprocess_numpy']:6.1f} {s['publish']:8.1f} {x['overhead_ms']:9.1f} "
                         f"{x['transport_ms']:6.1f} {'-' if pct is None else f'{pct:.1f}':>8} "
                         f"{x.get('est_node_hz') or 0:7.2f}")
    if r.get("sgbm"):
        lines += ["", "OpenCV StereoSGBM on the same frames",
                  f"{'size':>10} {'ndisp':>6} {'mean ms':>9} {'Hz':>7} {'StereoNet/SGBM':>15} {'best prec/SGBM':>15}"]
        fmt = lambda v: "-" if v is None else format(v, ".2f")  # noqa: E731
        lines += [f"{x['size']:>10} {x['num_disparities']:6d} {x['mean_ms']:9.1f} {x['hz']:7.2f} "
                  f"{fmt(x['ratio_model_over_sgbm']):>15} {fmt(x['ratio_best_precision_over_sgbm']):>15}"
                  for x in r["sgbm"]]
    if r.get("knobs"):
        lines += ["", "Knobs (full engine.infer, one varied at a time)",
                  f"{'knob':>14} {'value':>6} {'size':>10} {'cands':>5} {'refs':>4} {'mean ms':>9} {'x base':>7}"]
        lines += [f"{x['knob']:>14} {str(x['value']):>6} {x['size']:>10} {x['candidates']:5d} {x['refiners']:4d} "
                  f"{x['mean_ms']:9.1f} {x['ratio_vs_base']:7.2f}" for x in r["knobs"]]
    mi = r.get("micro")
    if mi:
        lines += ["", "Micro (interleaved A/B, speed-up = A / B)"]
        pairs = list(mi.get("cost_volume", [])) + [mi[k] for k in ("fold_bn", "channels_last", "compile", "threads")
                                                   if k in mi and "a_mean_ms" in mi[k]]
        for p in pairs:
            lines.append(f"  {p['name']:>14} {p.get('size', ''):>10}: {p['a']} {p['a_mean_ms']:.2f} ms vs "
                         f"{p['b']} {p['b_mean_ms']:.2f} ms -> x{p['speedup_b_over_a']:.2f}")
        if mi.get("compile"):
            c = mi["compile"]
            lines.append(f"  compile ({c['backend']}): {c['state']} after {c['compile_s']:.0f} s in the background, "
                         f"first frame served eagerly in {c['first_frame_ms']:.0f} ms {c.get('error') or ''}")
    lines.append(f"\n(wall time {m.get('wall_s', 0):.0f} s)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stereonet-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default="", help="checkpoint ('' = bundled default; random model if absent)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES), help="WxH,WxH,...")
    p.add_argument("--iters", type=int, default=0, help="timed iterations (0 = 2 on CPU, 100 on CUDA)")
    p.add_argument("--warmup", type=int, default=-1, help="untimed iterations (-1 = 1 on CPU, 20 on CUDA)")
    p.add_argument("--input-scale", type=float, nargs="+", default=[1.0, 0.5],
                   help="first = base setting, others = knob values to cost")
    p.add_argument("--max-disparity", type=float, nargs="+", default=[0.0, 96.0],
                   help="native px (0 = checkpoint's); first = base, others = knob values")
    p.add_argument("--refiners", type=int, nargs="+", default=None,
                   help="refinement levels kept; first = base, others = knob values (default: all, 1, 0)")
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--node-frames", type=int, default=0, help="frames through the node (0 = 5 CPU, 50 CUDA)")
    p.add_argument("--knob-size", type=parse_sizes, default=None, help="size for the knobs (default: first size)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="subset of " + ",".join(SECTIONS) + " ('none' with --micro: only the micro benchmarks)")
    p.add_argument("--micro", action="store_true", help="also run the micro benchmarks (cost volume, "
                                                         "channels_last, threads)")
    p.add_argument("--micro-parts", default=",".join(MICRO_PARTS), help="subset of " + ",".join(MICRO_PARTS))
    p.add_argument("--compile", default="", metavar="BACKEND",
                   help="with --micro: also time torch.compile(backend=BACKEND), e.g. inductor")
    p.add_argument("--compile-timeout", type=float, default=900.0, help="seconds to wait for the compile")
    p.add_argument("--json", default="", help="write the full report here")
    p.add_argument("--quiet", action="store_true", help="only the final tables")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point ``stereonet-bench``; returns the exit code."""
    args = build_parser().parse_args(argv)
    # DDS for the in-process node: large messages over shared memory / TCP, discovery kept
    # on this host, unless the caller configured otherwise (restored afterwards, so a caller
    # in the same process - a test session - keeps its own settings).
    saved = {k: os.environ.get(k) for k in ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        return _main(args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    sections = [s.strip() for s in args.sections.split(",") if s.strip() and s.strip() != "none"]
    bad = set(sections) - set(SECTIONS)
    if bad:
        print(f"unknown sections {sorted(bad)}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    cfg = BenchConfig(checkpoint=args.checkpoint, device=str(device), sizes=args.sizes,
                      iters=args.iters or (100 if cuda else 2),
                      warmup=args.warmup if args.warmup >= 0 else (20 if cuda else 1),
                      input_scales=args.input_scale, max_disparities=args.max_disparity,
                      refiners=[], num_threads=args.num_threads,
                      node_frames=args.node_frames or (50 if cuda else 5),
                      knob_size=(args.knob_size or args.sizes)[0], sections=sections, micro=args.micro,
                      compile_backend=args.compile, compile_timeout=args.compile_timeout,
                      micro_parts=tuple(x.strip() for x in args.micro_parts.split(",") if x.strip()))
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    # Refiner defaults depend on the checkpoint: all of them, then 1 and 0.
    probe, _ = load_or_random(args.checkpoint) if args.refiners is None else (None, "")
    if args.refiners is None:
        k = probe.config.num_refiners
        cfg.refiners = [k] + [n for n in (1, 0) if n < k]
    else:
        cfg.refiners = list(args.refiners)
    report = Bench(cfg, log).run()
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"report written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
