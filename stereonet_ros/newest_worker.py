"""A worker thread that always takes the newest item (no ROS).

The camera may deliver pairs faster than the network computes them. Queueing them would grow
latency and memory without bound; this keeps one slot: a newer item replaces a waiting one
(``on_replaced`` counts it, the node's 'overrun'), so the worker always computes the freshest
pair and latency stays bounded by one frame.

``put_waiting`` is the other hand-off, for a stage that must not lose items (the node's
publishing of computed frames): it waits while an item is still waiting, so a producer runs at
most one item ahead of the consumer.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Tuple


class NewestWorker:
    """Runs ``handle(item, t_put)`` in a thread of its own for the newest ``put`` item;
    ``t_put`` is ``time.perf_counter()`` when it was put (its queue wait starts there).
    ``handle`` must not raise (the caller counts its own errors)."""

    def __init__(self, handle: Callable[[Any, float], None], on_replaced: Callable[[], None],
                 name: str = "worker") -> None:
        self._handle, self._on_replaced = handle, on_replaced
        self._cv = threading.Condition()
        self._slot: Optional[Tuple[Any, float]] = None
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        with self._cv:
            if self._slot is not None:
                self._on_replaced()
            self._slot = (item, time.perf_counter())
            self._cv.notify()

    def put_waiting(self, item: Any) -> bool:
        """Put ``item`` once the slot is free (the item before it was taken): nothing is
        replaced. False, and ``item`` dropped, when the worker was stopped meanwhile."""
        with self._cv:
            while self._slot is not None and self._running:
                self._cv.wait(0.5)
            if not self._running:
                return False
            self._slot = (item, time.perf_counter())
            self._cv.notify_all()
            return True

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._slot is None and self._running:
                    self._cv.wait(0.5)
                if not self._running:
                    return
                item, t_put = self._slot
                self._slot = None
                self._cv.notify_all()  # a put_waiting producer may go on
            self._handle(item, t_put)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop (idempotent): a waiting item is dropped, the one in progress finishes first.
        False when the thread is still busy after ``timeout`` seconds."""
        with self._cv:
            self._running = False
            self._slot = None
            self._cv.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()
