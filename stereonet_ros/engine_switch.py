"""``EngineSwitch``: the running engine and a change of it at run time, without a stall (no ROS).

A change of an engine parameter (checkpoint, device, backend, ...) builds the new engine at
once, which is cheap and refuses a bad value with its typed error, then warms it up in a
thread of its own (kernel selection, an ONNX export: seconds) while the old engine keeps
serving, and swaps. A newer change supersedes a pending one; a failed warm-up keeps the old
engine and hands back the parameter values to restore.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Tuple

from .engine_config import ENGINE_PARAMS


class EngineSwitch:
    """``values``: parameter values in effect (engine ones: the running engine's);
    ``requested``: as last accepted (what the ROS parameters hold). ``build(values)`` makes an
    engine; ``on_switched(engine, values)`` and ``on_failed(text, restore)`` are called from
    the warm-up thread (``restore``: engine parameter -> the running engine's value)."""

    def __init__(self, values: Dict[str, Any], build: Callable[[Dict[str, Any]], Any], *,
                 on_switched: Callable[[Any, Dict[str, Any]], None],
                 on_failed: Callable[[str, Dict[str, Any]], None]) -> None:
        self._build, self._on_switched, self._on_failed = build, on_switched, on_failed
        self.lock = threading.Lock()
        self.engine = build(values)
        self.values = dict(values)
        self.requested = dict(values)
        self._generation = 0
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def requested_values(self) -> Dict[str, Any]:
        """A copy of the values as last accepted (what a new change is applied on top of)."""
        with self.lock:
            return dict(self.requested)

    def close(self, timeout: float = 10.0) -> bool:
        """No callback after this; wait up to ``timeout`` s for a pending warm-up (an engine being
        exported must not outlive its node). True when none is left running."""
        with self.lock:
            self._closed = True
        return self.wait(timeout)

    def current(self) -> Tuple[Any, Dict[str, Any]]:
        """(engine, values) of one moment, for a frame."""
        with self.lock:
            return self.engine, self.values

    def request(self, new: Dict[str, Any], warm_size: Optional[Tuple[int, int]] = None,
                with_right: bool = False) -> bool:
        """Accept a full set of parameter values. Non-engine values take effect now; a change of
        an engine value builds its engine (raising what ``build`` raises: the change is
        refused, nothing changes) and warms it up for ``warm_size`` (height, width) in the
        background. True when a new engine is on its way."""
        engine = self._build(new) if any(new[n] != self.requested[n] for n in ENGINE_PARAMS) else None
        with self.lock:
            self.requested = dict(new)
            self.values = {**new, **{n: self.values[n] for n in ENGINE_PARAMS}}
            if engine is None:
                return False
            self._generation += 1
            self._thread = threading.Thread(target=self._swap_in, name="stereonet-engine-swap", daemon=True,
                                            args=(engine, dict(new), self._generation, warm_size, with_right))
            self._thread.start()
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the newest pending switch; True when none is pending any more."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    def _swap_in(self, engine: Any, values: Dict[str, Any], generation: int,
                 warm_size: Optional[Tuple[int, int]], with_right: bool) -> None:
        try:
            if warm_size is not None:
                engine.warm_up(*warm_size, with_right=with_right)
        except Exception as exc:  # noqa: BLE001 - a failed switch must leave the old model running
            with self.lock:
                if generation != self._generation or self._closed:
                    return  # a newer change is on its way, or the owner has gone
                restore = {n: self.values[n] for n in ENGINE_PARAMS if self.requested[n] != self.values[n]}
                self.requested = {**self.requested, **restore}
            self._on_failed(f"{type(exc).__name__}: {exc}", restore)
            return
        with self.lock:
            if generation != self._generation or self._closed:
                return
            self.engine = engine
            self.values = {**self.values, **{n: values[n] for n in ENGINE_PARAMS}}
        self._on_switched(engine, values)
