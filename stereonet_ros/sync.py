"""Stereo pairing by header stamp, with every unmatched image counted (no ROS imports).

``StereoPairer`` is the built-in equivalent of message_filters' TimeSynchronizer (exact)
and ApproximateTimeSynchronizer (approximate, within ``slop`` seconds) for two image
streams. Unlike message_filters, it reports how many images it discarded, so the node's
/diagnostics can account for every frame.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Optional, Tuple

from .messages import stamp_ns  # the codec's; node.py imports it from here too

Pair = Tuple[Any, Any]


class StereoPairer:
    """Pairs left/right messages by stamp.

    - ``exact``: stamps must be identical.
    - ``approximate``: the partner with the nearest stamp within ``slop`` seconds is taken
      as soon as it is present (greedy; cameras with a common trigger differ by far less
      than a frame period).
    When a pair forms, every older message still waiting on either side can never pair
    any more and is discarded; ``on_discard(n)`` is called with their number. Each side
    keeps at most ``queue_size`` messages; overflowing ones are discarded too.
    """

    def __init__(self, mode: str = "exact", slop: float = 0.01, queue_size: int = 10,
                 on_discard: Optional[Callable[[int], None]] = None) -> None:
        if mode not in ("exact", "approximate"):
            raise ValueError(f"sync mode must be 'exact' or 'approximate', got '{mode}'")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 s, got {slop}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.mode = mode
        self.slop_ns = int(round(slop * 1e9))
        self.queue_size = int(queue_size)
        self.on_discard = on_discard or (lambda n: None)
        self._q: Tuple["OrderedDict[int, Any]", "OrderedDict[int, Any]"] = (OrderedDict(), OrderedDict())
        self._lock = threading.Lock()

    def add_left(self, msg: Any) -> Optional[Pair]:
        return self._add(0, msg)

    def add_right(self, msg: Any) -> Optional[Pair]:
        return self._add(1, msg)

    def pending(self) -> Tuple[int, int]:
        with self._lock:
            return len(self._q[0]), len(self._q[1])

    def _add(self, side: int, msg: Any) -> Optional[Pair]:
        t = stamp_ns(msg)
        discarded = 0
        with self._lock:
            mine, other = self._q[side], self._q[1 - side]
            match = self._find(other, t)
            if match is None:
                if t in mine:
                    discarded += 1  # duplicate stamp on one side: keep the newest
                mine[t] = msg
                mine.move_to_end(t)
                while len(mine) > self.queue_size:
                    mine.popitem(last=False)
                    discarded += 1
                result = None
            else:
                partner = other.pop(match)
                discarded += self._drop_older(mine, t) + self._drop_older(other, match)
                result = (msg, partner) if side == 0 else (partner, msg)
        if discarded:
            self.on_discard(discarded)
        return result

    def _find(self, other: "OrderedDict[int, Any]", t: int) -> Optional[int]:
        if self.mode == "exact":
            return t if t in other else None
        best, best_dt = None, self.slop_ns + 1
        for s in other:
            dt = abs(s - t)
            if dt < best_dt:
                best, best_dt = s, dt
        return best

    @staticmethod
    def _drop_older(q: "OrderedDict[int, Any]", t: int) -> int:
        old = [s for s in q if s < t]
        for s in old:
            del q[s]
        return len(old)

    def discard_newer(self, side: int, t: int) -> int:
        """Discard side ``side``'s (0 left, 1 right) waiting messages stamped after ``t``.

        Called when that side's stamps jump back (bag loop): its waiting messages belong to
        the old timeline and could otherwise wait forever, or pair with the wrong loop.
        Returns how many; they are reported through ``on_discard``.
        """
        with self._lock:
            q = self._q[side]
            newer = [s for s in q if s > t]
            for s in newer:
                del q[s]
        if newer:
            self.on_discard(len(newer))
        return len(newer)

    def reset(self) -> int:
        """Forget everything waiting (e.g. after stamps jumped back); returns how many."""
        with self._lock:
            n = len(self._q[0]) + len(self._q[1])
            self._q[0].clear()
            self._q[1].clear()
        if n:
            self.on_discard(n)
        return n
