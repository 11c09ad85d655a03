"""The node's ``/diagnostics``: a stats snapshot and the camera report in, a DiagnosticArray out.

Three statuses per node, named ``<node full name>: pipeline | camera_info | device`` so that two
nodes in two namespaces never overwrite each other in monitoring tools. The pipeline's level
comes from what happened since the previous report (``DiagnosticsReport`` remembers it):
input faults with nothing processed is an error (no output at all); any drop, overload
included, is a warning.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .stats import DROP_REASONS, EVENTS, status_name

#: The four inputs, relative names (remappable), in the order the no-input warning lists them.
INPUT_TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")
_LEVELS = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)


def fell_back_to_cpu(requested: str, engine: Any) -> bool:
    """CUDA was asked for, but the engine runs on the CPU (``resolve_device``'s fallback)."""
    return requested.strip().lower() not in ("auto", "cpu") and engine.device.type == "cpu"


def no_input_text(idle_s: float, topics: Dict[str, str], received: Dict[str, int], sync_mode: str,
                  sync_slop: float) -> str:
    """The no-input warning: no pair for ``idle_s`` seconds. Names the resolved inputs
    (``topics``: INPUT_TOPICS key -> resolved name) and those never received (``received``:
    counts by key), the first-day questions being 'is it remapped right?' and 'does the
    camera publish at all?'."""
    never = [topics[t] for t in INPUT_TOPICS if not received.get(t)]
    text = (f"no stereo pair for {idle_s:.0f} s on {topics['left/image_rect']} + {topics['right/image_rect']} "
            f"(camera_info {topics['left/camera_info']}, {topics['right/camera_info']}); ")
    if never:
        return text + (f"never received: {', '.join(never)} (check the remappings, the namespace and that "
                       "the camera publishes: ros2 topic info -v <topic>)")
    return text + ("every input has been received, but no left/right images paired lately: the camera "
                   f"stopped, or left/right stamps differ (sync_mode {sync_mode}, sync_slop {sync_slop:g} s)")


def _kv(key: Any, value: Any) -> KeyValue:
    return KeyValue(key=str(key), value=str(value))


class DiagnosticsReport:
    """Builds the node's DiagnosticArray; holds the drop counts of the previous report."""

    def __init__(self) -> None:
        self._last_drops: Dict[str, int] = {}
        self._processed_reported = 0

    def array(self, stamp: Any, node_name: str, engine: Any, snap: Dict[str, Any],
              camera: Tuple[int, str, Dict[str, Any]], requested_device: str) -> DiagnosticArray:
        """All three statuses. ``snap``: ``NodeStats.snapshot()``; ``camera``: (level 0/1/2,
        text, values) of the camera_info check; ``requested_device``: the parameter value."""
        arr = DiagnosticArray()
        arr.header.stamp = stamp
        arr.status = [self.pipeline(node_name, engine, snap), camera_status(node_name, engine, *camera),
                      device_status(node_name, engine, snap, requested_device)]
        return arr

    def pipeline(self, node_name: str, engine: Any, snap: Dict[str, Any]) -> DiagnosticStatus:
        """Rates, counts, drops by reason, events, per-stage latency and last errors."""
        pipe = DiagnosticStatus(name=status_name(node_name, "pipeline"), hardware_id=str(engine.device))
        values: List[KeyValue] = [
            _kv("device", engine.device), _kv("precision", engine.precision_name),
            _kv("model", engine.describe()), _kv("processed", snap["processed"]),
            _kv("output_rate_hz", f"{snap['rates'].get('output', 0.0):.2f}")]
        for topic in INPUT_TOPICS:
            values.append(_kv(f"input_rate_hz {topic}", f"{snap['rates'].get(topic, 0.0):.2f}"))
            values.append(_kv(f"received {topic}", snap["received"].get(topic, 0)))
        drops = snap["drops"]
        values += [_kv(f"dropped {reason}", drops.get(reason, 0)) for reason in DROP_REASONS]
        values.append(_kv("dropped total", sum(drops.values())))
        values += [_kv(f"event {name}", snap["events"].get(name, 0)) for name in EVENTS]
        for stage, (mean, p50, p95) in sorted(snap["latency_ms"].items()):
            values.append(_kv(f"latency_ms {stage}", f"mean {mean:.2f} p50 {p50:.2f} p95 {p95:.2f}"))
        values += [_kv(f"last {reason}", text[:300]) for reason, text in snap["last_error"].items()]
        pipe.values = values
        new_drops = {r: n - self._last_drops.get(r, 0) for r, n in drops.items() if n > self._last_drops.get(r, 0)}
        new_processed = snap["processed"] - self._processed_reported
        self._last_drops, self._processed_reported = dict(drops), snap["processed"]
        faults = {r: n for r, n in new_drops.items() if r not in ("overrun", "unpaired")}
        if faults and new_processed == 0:
            pipe.level = DiagnosticStatus.ERROR
            pipe.message = "no output: every pair dropped (" + ", ".join(f"{r} {n}" for r, n in faults.items()) + ")"
        elif new_drops:
            pipe.level = DiagnosticStatus.WARN
            pipe.message = (f"{sum(new_drops.values())} frame(s) dropped since last report ("
                            + ", ".join(f"{r} {n}" for r, n in new_drops.items()) + ")")
        else:
            pipe.level, pipe.message = DiagnosticStatus.OK, "ok"
        return pipe


def camera_status(node_name: str, engine: Any, level: int, text: str, values: Dict[str, Any]) -> DiagnosticStatus:
    """The camera_info status from the node's report (level 0 ok, 1 warn, 2 error)."""
    cam = DiagnosticStatus(name=status_name(node_name, "camera_info"), hardware_id=str(engine.device))
    cam.level = _LEVELS[level]
    cam.message = text[:500]
    cam.values = [_kv(k, v) for k, v in values.items()]
    return cam


def device_status(node_name: str, engine: Any, snap: Dict[str, Any], requested: str) -> DiagnosticStatus:
    """Requested vs actual device, backend, precision, scale, out-of-memory drops; WARN on a CPU
    fallback."""
    st = DiagnosticStatus(name=status_name(node_name, "device"), hardware_id=str(engine.device))
    st.values = [_kv("requested", requested), _kv("device", engine.device),
                 _kv("backend", engine.backend), _kv("precision", engine.precision_name),
                 _kv("input_scale", engine.input_scale), _kv("refiners", engine.config.num_refiners),
                 _kv("out_of_memory drops", snap["drops"].get("out_of_memory", 0))]
    if fell_back_to_cpu(requested, engine):
        st.level, st.message = DiagnosticStatus.WARN, f"'{requested}' unavailable: running on the CPU"
    else:
        st.level, st.message = DiagnosticStatus.OK, f"{engine.device} {engine.backend} {engine.precision_name}"
    return st
