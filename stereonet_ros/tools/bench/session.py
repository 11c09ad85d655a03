"""``Bench``: one benchmark run - the resolved options, the checkpoint, device and frames every
section shares, the engines they time, and the run of the sections into one report."""
from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...allocator import keep_large_allocations
from ...engine import StereoEngine, resolve_device
from . import baselines, micro, model, node, peak, stream
from .inputs import load_or_random, make_frames
from .micro import MICRO_PARTS
from .timing import synchronizer

SECTIONS = ("model", "memory", "peak", "node", "stream", "sgbm", "knobs")


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
    compile_timeout: float = 900.0  # seconds
    micro_parts: Tuple[str, ...] = MICRO_PARTS
    stream_seconds: float = 10.0    # measured per stream row, after a few seconds' warm-up
    #: (input_scale, refiners) combinations the knobs section also times
    settings: List[Tuple[float, int]] = dataclasses.field(default_factory=list)
    #: engine backends: the first is every section's, the others are knob values
    backends: List[str] = dataclasses.field(default_factory=lambda: ["auto"])


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Bench:
    """Runs the sections and collects one JSON-able report."""

    def __init__(self, cfg: BenchConfig, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.log = log
        keep_large_allocations()  # as the node does: its frames are what is timed
        self.ckpt, self.note = load_or_random(cfg.checkpoint)
        if self.note:
            log("\n" + "!" * 100 + "\n" + self.note + "\n" + "!" * 100 + "\n")
        # refiners kept in every section but the knobs table (-1 = the checkpoint's operating point)
        self.refiners = -1 if cfg.refiners[0] is None else int(cfg.refiners[0])
        self.device = resolve_device(cfg.device)
        self.sync = synchronizer(self.device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.frames = {s: make_frames(*s) for s in cfg.sizes}
        # Filled by the model section, read by the node (replayed output) and SGBM (ratios).
        self.cached_out: Dict[Tuple[int, int], Dict[str, Any]] = {}   # size -> auto-precision output
        self.model_ms: Dict[Tuple[int, int], Dict[str, float]] = {}    # size -> precision -> mean ms

    def engine(self, precision: str = "auto", input_scale: Optional[float] = None,
               max_disparity: Optional[float] = None, refiners: Optional[int] = None,
               **kw: Any) -> StereoEngine:
        """An engine of the run's checkpoint and device; unset knobs take the base setting
        (the first of each command-line list). ``kw`` go to ``StereoEngine``."""
        c = self.cfg
        kw.setdefault("backend", c.backends[0])
        # torch's threads are set for the process above; a graph backend needs its own count
        kw.setdefault("num_threads", c.num_threads)
        return StereoEngine(device=str(self.device), precision=precision,
                            input_scale=c.input_scales[0] if input_scale is None else input_scale,
                            max_disparity=c.max_disparities[0] if max_disparity is None else max_disparity,
                            refiners=self.refiners if refiners is None else refiners, loaded=self.ckpt, **kw)

    @staticmethod
    def prepared(engine: StereoEngine, frames: Tuple[np.ndarray, np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The uint8 (H, W, 3) pair as ``engine.forward``'s inputs (on the device, padded)."""
        l, r = (f.astype(np.float32) / 255.0 for f in frames)
        return engine.prepare(engine.to_tensor(l)), engine.prepare(engine.to_tensor(r))

    def best_model_ms(self, size: Tuple[int, int]) -> Optional[float]:
        """Fastest precision's mean model time for ``size`` (ms), if the model section ran."""
        d = self.model_ms.get(size)
        return min(d.values()) if d else None

    def auto_model_ms(self, size: Tuple[int, int]) -> Optional[float]:
        """Mean model time for ``size`` (ms) at the 'auto' precision, if the model section ran."""
        d = self.model_ms.get(size)
        return d.get(self.engine().precision_name) if d else None

    def meta(self) -> Dict[str, Any]:
        """The report's ``meta``: machine, software, load, checkpoint and engine of the run."""
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

    def run(self) -> Dict[str, Any]:
        """All selected sections, in this order (the node and SGBM use the model's numbers)."""
        c = self.cfg
        report: Dict[str, Any] = {"meta": self.meta()}
        t_start = time.perf_counter()
        if "model" in c.sections or "memory" in c.sections:
            self.log("[model + memory]")
            report["model"], report["memory"] = model.run_model(self)
        if "peak" in c.sections and self.model_ms:
            self.log("[convolution work vs the measured peak]")
            report["peak"] = peak.run_peak(self)
        if "node" in c.sections:
            self.log("[node over DDS, network replayed]")
            report["node"] = node.run_node(self)
        if "stream" in c.sections:
            self.log("[node with its network, fed faster than it keeps up]")
            report["stream"] = stream.run_stream(self, seconds=c.stream_seconds)
        if "sgbm" in c.sections:
            self.log("[OpenCV StereoSGBM]")
            report["sgbm"] = baselines.run_sgbm(self)
            if report.get("stream"):
                stream.add_sgbm_ratios(report["stream"], report["sgbm"])
        if "knobs" in c.sections:
            self.log(f"[knobs at {c.knob_size[0]}x{c.knob_size[1]}, full engine.infer]")
            report["knobs"] = model.run_knobs(self)
        report["micro"] = micro.micro_benchmarks(self) if c.micro else None
        report["meta"]["wall_s"] = time.perf_counter() - t_start
        return report
