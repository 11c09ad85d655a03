"""Rate limit for log lines of the same kind of problem (pure; no ROS).

rclpy's ``throttle_duration_sec`` limits one call site; the node logs every dropped frame from
one call site with texts of many kinds (a bad encoding, a stale camera_info, ...), and a new
kind must be logged at once while the same kind on every frame is logged rarely, saying how
many repeats were left out. Every occurrence is still counted on /diagnostics.
"""
from __future__ import annotations

import re
import time
from typing import Dict, Optional, Tuple

_DIGITS = re.compile(r"\d+")


class KindThrottle:
    """Admits at most one log line per ``period`` seconds for each kind of problem.

    The kind is a caller's key plus the text's first line with its numbers masked, so
    'frame 17 dropped' and 'frame 18 dropped' are one kind. ``max_kinds`` bounds memory: when
    exceeded, the memory of kinds starts over (at worst a repeat is logged early).
    """

    def __init__(self, max_kinds: int = 256) -> None:
        self.max_kinds = max_kinds
        self._seen: Dict[str, Tuple[float, int]] = {}   # kind -> (last logged, suppressed since)

    def admit(self, key: str, text: str, period: float, now: Optional[float] = None) -> Optional[str]:
        """The line to log now (``text``, plus how many were left out since the last one), or
        None when this kind was logged less than ``period`` seconds ago (monotonic clock)."""
        kind = key + ":" + _DIGITS.sub("#", text.split("\n", 1)[0])
        if len(self._seen) > self.max_kinds and kind not in self._seen:
            self._seen.clear()
        now = time.monotonic() if now is None else now
        last, suppressed = self._seen.get(kind, (-1e18, 0))
        if now - last < period:
            self._seen[kind] = (last, suppressed + 1)
            return None
        self._seen[kind] = (now, 0)
        if suppressed:
            text += f" [{suppressed} more since the last report, counted in /diagnostics]"
        return text
