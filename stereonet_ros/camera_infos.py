"""The node's view of its two camera_info streams (pure; no ROS): the latest message per side,
its age, and the calibration status /diagnostics reports."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

from .pipeline import FrameError, camera_info_report

NO_INFO_YET = "no camera_info received yet"


class CameraInfoCache:
    """Latest left/right camera_info with their arrival times (monotonic seconds), and the
    calibration finding of the last frame (level 0 ok / 1 warning / 2 error, text).

    ``timeout`` (seconds, 0 = never) is camera_info_timeout: an older camera_info is stale,
    frames are dropped as 'camera_info_missing' rather than computed with an old calibration.
    """

    SIDES = ("left", "right")

    def __init__(self, timeout: float = 0.0) -> None:
        self.timeout = timeout
        self._latest: Dict[str, Tuple[Optional[Any], float]] = {s: (None, 0.0) for s in self.SIDES}
        self.frame_status: Tuple[int, str] = (2, NO_INFO_YET)

    def update(self, side: str, msg: Any, now: Optional[float] = None) -> None:
        self._latest[side] = (msg, time.monotonic() if now is None else now)

    def latest(self, side: str) -> Optional[Any]:
        return self._latest[side][0]

    def pair(self, now: Optional[float] = None) -> Tuple[Any, Any]:
        """(left, right) camera_info for a frame now; FrameError('camera_info_missing') when
        one is missing or stale."""
        now = time.monotonic() if now is None else now
        out = []
        for side in self.SIDES:
            msg, t = self._latest[side]
            if msg is None:
                raise FrameError("camera_info_missing", f"no {side}/camera_info received yet")
            if self.timeout > 0 and now - t > self.timeout:
                raise FrameError("camera_info_missing", f"{side}/camera_info is {now - t:.1f} s old "
                                                        f"(camera_info_timeout {self.timeout:g} s)")
            out.append(msg)
        return out[0], out[1]

    def frame_failed(self, text: str) -> None:
        """A frame was dropped for its calibration (bad_geometry, camera_info_missing)."""
        self.frame_status = (2, text)

    def frame_done(self, warnings: Tuple[str, ...] | list) -> bool:
        """A frame was computed (with these camera_info warnings). True when this ends a
        period of frames dropped for their calibration (worth one log line)."""
        recovered = self.frame_status[0] == 2 and self.frame_status[1] != NO_INFO_YET
        self.frame_status = (1, "; ".join(warnings)) if warnings else (0, "ok")
        return recovered

    def report(self, image_size: Optional[Tuple[int, int]],
               now: Optional[float] = None) -> Tuple[int, str, Dict[str, Any]]:
        """(level, text, values) of the camera_info status for /diagnostics: the geometry of the
        latest pair (``image_size`` = (width, height) of the last images), their ages against
        the timeout, and the last frame's finding when that is worse."""
        linfo, rinfo = self.latest("left"), self.latest("right")
        level, text, values = camera_info_report(linfo, rinfo, image_size)
        now = time.monotonic() if now is None else now
        for side in self.SIDES:
            msg, t = self._latest[side]
            if msg is not None:
                age = now - t
                values[f"age_s {side}"] = f"{age:.2f}"
                if self.timeout > 0 and age > self.timeout:
                    level, text = 2, f"{side}/camera_info is stale ({age:.1f} s old); " + text
        flevel, ftext = self.frame_status
        if flevel > level and linfo is not None:
            level, text = flevel, ftext
        return level, text, values
