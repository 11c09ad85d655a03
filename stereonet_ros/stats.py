"""Thread-safe counters, rate meters and latency statistics behind /diagnostics.

No ROS imports: the node turns a ``snapshot()`` into a DiagnosticArray.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Every reason a frame can be dropped; each has a counter and a human description.
DROP_REASONS: Dict[str, str] = {
    "transport_lost": "images lost by DDS before reaching the node, as the middleware reports (large images over UDP)",
    "unpaired": "no partner image with a matching stamp (sync queue overflow or mismatched stamps)",
    "overrun": "a newer pair arrived while this one waited (inference slower than the camera)",
    "camera_info_missing": "no camera_info received yet (or it is older than camera_info_timeout)",
    "bad_encoding": "unsupported or mismatched image encoding",
    "bad_size": "left/right or image/camera_info size mismatch, or zero/huge image",
    "bad_data": "data length inconsistent with step and height, or a compressed image that does not decode",
    "bad_values": "NaN or inf in a float image",
    "bad_geometry": "camera_info cannot give metric depth (baseline/focal length)",
    "inference_error": "the network failed on this frame",
    "publish_error": "the frame was computed but building or publishing its messages failed",
    "out_of_memory": "CUDA out of memory on this frame",
}


#: Noteworthy events that do not lose a frame.
EVENTS: Dict[str, str] = {
    "stamp_backwards": "stamp older than the previous pair (bag loop or clock jump); old-timeline images discarded",
    "camera_info_warning": "left/right rectified intrinsics (fy, cy) disagree: not one rectified pair",
    "device_fallback": "CUDA requested but unavailable; running on the CPU",
    "parameter_rejected": "a runtime parameter change was rejected (the old value stays in use)",
    "engine_swap_failed": "a new model (checkpoint, device, backend...) was accepted but failed to start; "
                          "the old one keeps running and its parameters are restored",
    "no_subscriber": "a pair left unprocessed: no output has a subscriber (not a drop; the network runs "
                     "again as soon as one subscribes)",
}


LATENCY_PERCENTILES = (50, 90, 95, 99)

#: The parts of the node's /diagnostics, one DiagnosticStatus each.
STATUS_PARTS = ("pipeline", "camera_info", "device")


def status_name(node_fqn: str, part: str) -> str:
    """DiagnosticStatus name of one part of a node's report: ``'/ns/stereonet: pipeline'``.

    The fully qualified node name makes two nodes in two namespaces distinguishable on the
    one /diagnostics topic (aggregators and readers key on the name).
    """
    return f"{node_fqn}: {part}"


def percentiles(values_ms: Sequence[float]) -> Dict[str, float]:
    """mean and p50/p90/p95/p99 of latencies in ms (NaN when empty)."""
    a = np.asarray(values_ms, dtype=np.float64)
    if a.size == 0:
        return {"mean": float("nan"), **{f"p{p}": float("nan") for p in LATENCY_PERCENTILES}, "max": float("nan"),
                "count": 0}
    return {"mean": float(a.mean()), **{f"p{p}": float(np.percentile(a, p)) for p in LATENCY_PERCENTILES},
            "max": float(a.max()), "count": int(a.size)}


class RateMeter:
    """Events per second over a sliding window of the last ``window`` seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._t: Deque[float] = deque()

    def tick(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        self._t.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._t and now - self._t[0] > self.window:
            self._t.popleft()

    def rate(self, now: Optional[float] = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._t) < 2:
            return 0.0
        span = max(now - self._t[0], self._t[-1] - self._t[0])
        return (len(self._t) - 1) / span if span > 0 else 0.0


class NodeStats:
    """Counters of received/processed/dropped frames and per-stage latencies (ms)."""

    def __init__(self, latency_window: int = 200) -> None:
        self._lock = threading.Lock()
        self.received: Counter = Counter()     # per input topic
        self.drops: Counter = Counter()        # per reason (keys of DROP_REASONS)
        self.events: Counter = Counter()       # per name (keys of EVENTS)
        self.processed = 0
        self.rates: Dict[str, RateMeter] = {}
        self._lat: Dict[str, Deque[float]] = {}
        self._window = latency_window
        # per-frame stage dicts, so a reader can tell which stages belong to which frame
        self._frames: Deque[Dict[str, float]] = deque(maxlen=latency_window)
        self.last_error: Dict[str, str] = {}

    def received_msg(self, topic: str) -> None:
        with self._lock:
            self.received[topic] += 1
            self.rates.setdefault(topic, RateMeter()).tick()

    def drop(self, reason: str, message: str = "", count: int = 1) -> None:
        if reason not in DROP_REASONS:
            raise KeyError(f"unknown drop reason '{reason}'")
        with self._lock:
            self.drops[reason] += count
            if message:
                self.last_error[reason] = message

    def event(self, name: str, message: str = "") -> None:
        if name not in EVENTS:
            raise KeyError(f"unknown event '{name}'")
        with self._lock:
            self.events[name] += 1
            if message:
                self.last_error[name] = message

    def processed_frame(self, stages_ms: Dict[str, float]) -> None:
        with self._lock:
            self.processed += 1
            self.rates.setdefault("output", RateMeter()).tick()
            for k, v in stages_ms.items():
                self._lat.setdefault(k, deque(maxlen=self._window)).append(float(v))
            self._frames.append({k: float(v) for k, v in stages_ms.items()})

    def recent_frames(self) -> List[Dict[str, float]]:
        """Stage times (stage -> ms) of each of the last ``latency_window`` processed frames,
        oldest first; copies, so the caller may keep or change them."""
        with self._lock:
            return [dict(f) for f in self._frames]

    def latency(self) -> Dict[str, Tuple[float, float, float]]:
        """stage -> (mean, p50, p95) in ms over the recent window."""
        with self._lock:
            items = {k: list(v) for k, v in self._lat.items() if v}
        stats = {k: percentiles(v) for k, v in items.items()}
        return {k: (s["mean"], s["p50"], s["p95"]) for k, s in stats.items()}

    def snapshot(self) -> Dict[str, object]:
        with self._lock:
            rates = {k: m.rate() for k, m in self.rates.items()}
            snap = {"received": dict(self.received), "drops": dict(self.drops),
                    "events": dict(self.events),
                    "processed": self.processed, "rates": rates,
                    "last_error": dict(self.last_error)}
        snap["latency_ms"] = self.latency()
        return snap

    @property
    def total_drops(self) -> int:
        with self._lock:
            return sum(self.drops.values())
