"""sensor_msgs/Image <-> numpy without ROS imports (works on any object with the Image fields).

Decoding is zero-copy where the row stride allows it (a view over the message buffer);
encoding copies the array once into the message's ``array('B')``. Validation raises
``ImageFormatError`` with a message naming the inconsistency, so the node can count and
report the frame instead of crashing on it.
"""
from __future__ import annotations

import array
from typing import Any, Dict, Tuple

import numpy as np

# encoding -> (numpy dtype, channels, channel order of a colour image or None)
ENCODINGS: Dict[str, Tuple[np.dtype, int, str | None]] = {
    "mono8": (np.dtype(np.uint8), 1, None),
    "8UC1": (np.dtype(np.uint8), 1, None),
    "mono16": (np.dtype(np.uint16), 1, None),
    "16UC1": (np.dtype(np.uint16), 1, None),
    "rgb8": (np.dtype(np.uint8), 3, "rgb"),
    "bgr8": (np.dtype(np.uint8), 3, "bgr"),
    "rgba8": (np.dtype(np.uint8), 4, "rgb"),
    "bgra8": (np.dtype(np.uint8), 4, "bgr"),
    "8UC3": (np.dtype(np.uint8), 3, "bgr"),
    "32FC1": (np.dtype(np.float32), 1, None),
}
#: Encodings the stereo node accepts as camera input (plus float mono for simulators).
INPUT_ENCODINGS = ("mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8", "8UC1", "8UC3", "16UC1", "32FC1")


class ImageFormatError(ValueError):
    """The Image message's encoding, size, step or data length is inconsistent.

    ``reason`` classifies the problem with a ``stats.DROP_REASONS`` key ('bad_encoding',
    'bad_size', 'bad_data' or 'bad_values') so callers never parse the message text.
    """

    def __init__(self, message: str, reason: str = "bad_data") -> None:
        super().__init__(message)
        self.reason = reason


def image_to_numpy(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Decode an Image to (H, W) or (H, W, C) numpy, a view of ``msg.data`` when possible.

    Honours ``step`` (row padding) and ``is_bigendian``. Raises ``ImageFormatError`` for an
    unknown encoding, zero or over-limit size, a step smaller than a row, or data whose
    length is not ``step * height``.
    """
    enc = msg.encoding
    if not isinstance(enc, str) or enc not in ENCODINGS:
        raise ImageFormatError(f"unsupported encoding '{enc}' (supported: {', '.join(INPUT_ENCODINGS)})",
                               "bad_encoding")
    dtype, ch, _ = ENCODINGS[enc]
    try:
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
    except (TypeError, ValueError) as exc:
        raise ImageFormatError(f"height/width/step are not integers: {exc}", "bad_data") from exc
    if h <= 0 or w <= 0:
        raise ImageFormatError(f"image has zero size {w}x{h}", "bad_size")
    if max_pixels is not None and h * w > max_pixels:
        raise ImageFormatError(f"image {w}x{h} exceeds the limit of {max_pixels} pixels (max_image_pixels)",
                               "bad_size")
    row = w * ch * dtype.itemsize
    if step < row:
        raise ImageFormatError(f"step {step} is smaller than one row of {w} px x {ch} ch x "
                               f"{dtype.itemsize} B = {row} B for '{enc}'", "bad_data")
    buf = msg.data
    try:
        n = len(buf)
    except TypeError as exc:
        raise ImageFormatError(f"data is a {type(buf).__name__}, not a byte buffer", "bad_data") from exc
    if n != step * h:
        raise ImageFormatError(f"data has {n} bytes, expected step*height = {step}*{h} = {step * h} "
                               "(truncated or padded message)", "bad_data")
    try:
        raw = np.frombuffer(buf, dtype=np.uint8)
    except (TypeError, ValueError):
        # A plain list of ints (tools, tests): copy it, rejecting values that are not bytes.
        try:
            raw = np.asarray(buf, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageFormatError(f"data is not a byte sequence: {exc}", "bad_data") from exc
        if raw.ndim != 1 or raw.size != n or (n and (raw.min() < 0 or raw.max() > 255)):
            raise ImageFormatError("data is not a sequence of byte values 0..255", "bad_data")
        raw = raw.astype(np.uint8)
    if raw.size != n:  # a buffer of wider items (e.g. array('H')): len() counted items
        raise ImageFormatError(f"data has {raw.size} bytes, expected step*height = {step * h}", "bad_data")
    rows = raw.reshape(h, step)[:, :row]
    big = bool(msg.is_bigendian) and dtype.itemsize > 1
    dt = dtype.newbyteorder(">") if big else dtype
    if step % dtype.itemsize == 0:
        img = rows.view(dt)
    else:  # odd stride: realign by copying
        img = np.ascontiguousarray(rows).view(dt)
    img = img.reshape(h, w, ch) if ch > 1 else img.reshape(h, w)
    if big:
        img = img.astype(dtype)
    return img


def to_rgb_float(img: np.ndarray, encoding: str) -> np.ndarray:
    """Decoded image -> (H, W, 3) float32 RGB in [0, 1] (mono is replicated, alpha dropped).

    mono16/16UC1 are scaled by 65535; 32FC1 is taken as already in [0, 1] and clipped.
    NaN/inf in float images raise ``ImageFormatError`` (the network would spread them).
    """
    dtype, ch, order = ENCODINGS[encoding]
    if dtype == np.uint8:
        f = img.astype(np.float32) * np.float32(1.0 / 255.0)
    elif dtype == np.uint16:
        f = img.astype(np.float32) * np.float32(1.0 / 65535.0)
    else:
        finite = np.isfinite(img)
        if not finite.all():
            raise ImageFormatError(f"{encoding} image contains {int(finite.size - finite.sum())} NaN/inf "
                                   "value(s)", "bad_values")
        f = np.clip(img.astype(np.float32), 0.0, 1.0)
    if ch == 1:
        return np.repeat(f[..., None], 3, axis=2)
    f = f[..., :3]
    return f[..., ::-1] if order == "bgr" else f


def to_rgb8(img: np.ndarray, encoding: str) -> np.ndarray:
    """Decoded image -> (H, W, 3) uint8 RGB (for point-cloud colour)."""
    dtype, ch, order = ENCODINGS[encoding]
    if dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif dtype == np.float32:
        img = (np.clip(np.nan_to_num(img), 0, 1) * 255).astype(np.uint8)
    if ch == 1:
        return np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    return img[..., ::-1] if order == "bgr" else img


def fill_image(msg: Any, arr: np.ndarray, encoding: str) -> Any:
    """Write ``arr`` into an Image message (height, width, encoding, step, data); one copy."""
    if encoding not in ENCODINGS:
        raise ImageFormatError(f"cannot write encoding '{encoding}'", "bad_encoding")
    dtype, ch, _ = ENCODINGS[encoding]
    a = np.ascontiguousarray(arr, dtype=dtype)
    if (a.ndim == 2 and ch != 1) or (a.ndim == 3 and a.shape[2] != ch) or a.ndim not in (2, 3):
        raise ImageFormatError(f"array of shape {a.shape} does not fit encoding '{encoding}'")
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(a.shape[1] * ch * dtype.itemsize)
    data = array.array("B")
    if a.size:  # memoryview cannot cast an empty shape; an empty image has no bytes anyway
        data.frombytes(memoryview(a).cast("B"))
    msg.data = data
    return msg
