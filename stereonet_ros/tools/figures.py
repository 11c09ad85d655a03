"""Small drawing helpers shared by every figure the tools write (eval, demo, measure).

BGR uint8 images in, new images out (inputs are never drawn on). The one colour map for
disparity is ``messages.colorize_disparity``.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label(img: np.ndarray, text: str, scale: float = 0.45) -> np.ndarray:
    """Copy of ``img`` with ``text`` in white on a black box at the top left."""
    out = img.copy()
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 8, th + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (4, th + 4), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def text_tile(h: int, w: int, lines: Sequence[str], scale: float = 0.42) -> np.ndarray:
    """A black (h, w) BGR tile with ``lines`` of white text, top to bottom."""
    img = np.zeros((h, w, 3), np.uint8)
    step = int(round(43 * scale))
    for i, line in enumerate(lines):
        cv2.putText(img, line, (6, 20 + step * i), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img
