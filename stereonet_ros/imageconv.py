"""sensor_msgs/Image and CompressedImage <-> numpy without ROS imports (works on any object
with the messages' fields: rclpy messages, rosbags dataclasses, plain objects).

Decoding an Image is zero-copy where the row stride allows it (a view over the message
buffer); encoding copies the array once into the message's ``array('B')``. A CompressedImage
(image_transport's ``compressed`` transport: JPEG or PNG) is decoded with OpenCV into a
``DecodedImage``, which has the fields of an Image, so everything downstream reads both
alike. Validation raises ``ImageFormatError`` with a message naming the inconsistency, so the
node can count and report the frame instead of crashing on it.
"""
from __future__ import annotations

import array
import struct
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

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


def image_fields(arr: np.ndarray, encoding: str, strict: bool = True) -> Tuple[Dict[str, Any], np.ndarray]:
    """The Image fields (height, width, encoding, is_bigendian, step) of ``arr`` written in
    ``encoding``, and ``arr`` as the contiguous array whose bytes are its ``data``.

    Rows are unpadded and little-endian. An encoding not in ``ENCODINGS`` raises
    ``ImageFormatError`` unless not ``strict``: then ``arr``'s own bytes are taken as they are
    (tests of malformed input), ``step`` the byte length of one row.
    """
    if encoding not in ENCODINGS:
        if strict:
            raise ImageFormatError(f"cannot write encoding '{encoding}'", "bad_encoding")
        a = np.ascontiguousarray(arr)
        step = a.nbytes // max(a.shape[0], 1)
    else:
        dtype, ch, _ = ENCODINGS[encoding]
        a = np.ascontiguousarray(arr, dtype=dtype)
        if (a.ndim == 2 and ch != 1) or (a.ndim == 3 and a.shape[2] != ch) or a.ndim not in (2, 3):
            raise ImageFormatError(f"array of shape {a.shape} does not fit encoding '{encoding}'")
        step = a.shape[1] * ch * dtype.itemsize
    fields = {"height": int(a.shape[0]), "width": int(a.shape[1]), "encoding": encoding, "is_bigendian": 0,
              "step": int(step)}
    return fields, a


def byte_array(a: np.ndarray) -> array.array:
    """The bytes of a contiguous array as the ``array('B')`` an rclpy ``uint8[]`` field keeps
    without a per-element check; one copy."""
    data = array.array("B")
    if a.size:  # memoryview cannot cast an empty shape; an empty image has no bytes anyway
        data.frombytes(memoryview(a).cast("B"))
    return data


def fill_image(msg: Any, arr: np.ndarray, encoding: str) -> Any:
    """Write ``arr`` into an Image message (height, width, encoding, step, data); one copy."""
    fields, a = image_fields(arr, encoding)
    for name, value in fields.items():
        setattr(msg, name, value)
    msg.data = byte_array(a)
    return msg


# ----------------------------------------------------------------------------- CompressedImage

#: Codecs of image_transport's ``compressed`` transport that are decoded (sensor_msgs/CompressedImage).
COMPRESSED_CODECS = ("jpeg", "png")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class DecodedImage:
    """A CompressedImage decoded into the fields of sensor_msgs/Image (little-endian, rows
    unpadded), so ``image_to_numpy`` and the pipeline read it like an Image. ``header`` is the
    compressed message's own (stamp and frame of the left or right optical frame)."""

    header: Any
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray          # uint8, step * height bytes
    format: str = ""          # the CompressedImage's format string, for messages


def is_compressed(msg: Any) -> bool:
    """True for a sensor_msgs/CompressedImage (it has ``format`` and no ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def _codec_of(fmt: str, head: bytes) -> str:
    """'png' or 'jpeg' from the stream's magic bytes (what is really there); the format
    string only names the error. image_transport writes e.g. 'rgb8; jpeg compressed bgr8'."""
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    low = fmt.lower()
    if "compresseddepth" in low:
        raise ImageFormatError(f"format '{fmt}' is the compressedDepth transport (for depth images), not a "
                               "camera image: subscribe to the camera's 'compressed' topic", "bad_encoding")
    named = [c for c in ("jpeg", "jpg", "png") if c in low]
    if low and not named:
        raise ImageFormatError(f"compressed format '{fmt}' is not one of {', '.join(COMPRESSED_CODECS)}",
                               "bad_encoding")
    raise ImageFormatError(f"data ({len(head)}+ bytes) is not a PNG or JPEG stream (format '{fmt}'): "
                           "corrupt or not an image", "bad_data")


def compressed_size(data: bytes | memoryview, codec: str) -> Optional[Tuple[int, int]]:
    """(width, height) px from a PNG's IHDR or a JPEG's start-of-frame header, without
    decoding; None when the header cannot be found (the decoder then decides)."""
    buf = bytes(data[:65536]) if codec == "jpeg" else bytes(data[:24])
    if codec == "png":
        if len(buf) >= 24 and buf[12:16] == b"IHDR":
            w, h = struct.unpack(">II", buf[16:24])
            return int(w), int(h)
        return None
    i = 2
    while i + 9 <= len(buf):  # JPEG markers: FF xx, then a 2-byte big-endian length
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        seg = struct.unpack(">H", buf[i + 2:i + 4])[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC): precision, height, width
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", buf[i + 5:i + 9])
            return int(w), int(h)
        i += 2 + seg
    return None


def decode_compressed(msg: Any, max_pixels: int | None = None) -> DecodedImage:
    """Decode a CompressedImage (JPEG or PNG; mono, colour, 8 or 16 bit) with OpenCV.

    Result encodings: mono8, mono16 (16-bit grey PNG), bgr8, bgra8 (OpenCV's channel order;
    16-bit colour PNG is reduced to 8 bits). The size in the stream's header is checked
    against ``max_pixels`` before decoding, so a huge image costs no memory. Raises
    ``ImageFormatError`` (bad_encoding: not JPEG/PNG or compressedDepth; bad_data: empty,
    corrupt or truncated; bad_size: zero or over-limit size).
    """
    import cv2
    fmt = msg.format if isinstance(getattr(msg, "format", None), str) else ""
    try:
        raw = np.frombuffer(msg.data, dtype=np.uint8)
    except (TypeError, ValueError):
        try:  # a plain list of ints (tools, tests)
            raw = np.asarray(msg.data, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageFormatError(f"compressed data is not a byte sequence: {exc}", "bad_data") from exc
        if raw.ndim != 1 or (raw.size and (raw.min() < 0 or raw.max() > 255)):
            raise ImageFormatError("compressed data is not a sequence of byte values 0..255", "bad_data")
        raw = raw.astype(np.uint8)
    if raw.size == 0:
        raise ImageFormatError(f"compressed image (format '{fmt}') has no data", "bad_data")
    codec = _codec_of(fmt, raw[:16].tobytes())
    size = compressed_size(memoryview(raw), codec)
    if size is not None:
        _check_size(*size, max_pixels)
    try:
        img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)  # UNCHANGED: keep 16 bit, ignore EXIF rotation
    except cv2.error as exc:
        raise ImageFormatError(f"{codec} data could not be decoded: {str(exc).strip()}", "bad_data") from exc
    if img is None or img.size == 0:
        raise ImageFormatError(f"{codec} data ({raw.size} bytes, format '{fmt}') could not be decoded: "
                               "corrupt or truncated", "bad_data")
    h, w = img.shape[:2]
    _check_size(w, h, max_pixels)
    ch = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype == np.uint16 and ch > 1:
        img = (img >> 8).astype(np.uint8)
    encodings = {(np.dtype(np.uint8), 1): "mono8", (np.dtype(np.uint16), 1): "mono16",
                 (np.dtype(np.uint8), 3): "bgr8", (np.dtype(np.uint8), 4): "bgra8"}
    enc = encodings.get((img.dtype, ch))
    if enc is None:
        raise ImageFormatError(f"{codec} image of {ch} channel(s) of {img.dtype} is not a camera image this node "
                               "reads", "bad_encoding")
    img = np.ascontiguousarray(img)
    return DecodedImage(header=getattr(msg, "header", None), height=int(h), width=int(w), encoding=enc,
                        is_bigendian=0, step=int(w * ch * img.dtype.itemsize), data=img.reshape(-1).view(np.uint8),
                        format=fmt)


def _check_size(w: int, h: int, max_pixels: int | None) -> None:
    if h <= 0 or w <= 0:
        raise ImageFormatError(f"image has zero size {w}x{h}", "bad_size")
    if max_pixels is not None and h * w > max_pixels:
        raise ImageFormatError(f"image {w}x{h} exceeds the limit of {max_pixels} pixels (max_image_pixels)",
                               "bad_size")


def as_image(msg: Any, max_pixels: int | None = None) -> Any:
    """``msg`` itself when it is an Image; its ``DecodedImage`` when it is a CompressedImage."""
    return decode_compressed(msg, max_pixels) if is_compressed(msg) else msg


def compress_image(arr: np.ndarray, encoding: str, codec: str = "png", quality: int = 95) -> Tuple[str, bytes]:
    """(format, data) of a CompressedImage holding ``arr`` (``encoding``'s layout), as
    image_transport's compressed publisher writes them: format '<encoding>; <codec>
    compressed <stored encoding>'. PNG is lossless (8 or 16 bit); JPEG is 8-bit, lossy at
    ``quality`` (0-100). Colour is stored in OpenCV's BGR order."""
    import cv2
    if codec not in COMPRESSED_CODECS:
        raise ImageFormatError(f"codec '{codec}' is not one of {', '.join(COMPRESSED_CODECS)}", "bad_encoding")
    if encoding not in ENCODINGS or ENCODINGS[encoding][0] == np.float32:
        raise ImageFormatError(f"cannot compress encoding '{encoding}'", "bad_encoding")
    dtype, ch, order = ENCODINGS[encoding]
    a = np.ascontiguousarray(arr, dtype=dtype)
    if order == "rgb":
        a = np.ascontiguousarray(a[..., [2, 1, 0, 3][:ch]])
    if codec == "jpeg" and dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if codec == "jpeg" and ch == 4:
        a = np.ascontiguousarray(a[..., :3])   # JPEG has no alpha
    channels = a.shape[2] if a.ndim == 3 else 1
    stored = {1: "mono", 3: "bgr", 4: "bgra"}[channels] + ("16" if a.dtype == np.uint16 else "8")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", a, params)
    if not ok:  # pragma: no cover - OpenCV refuses only shapes checked above
        raise ImageFormatError(f"OpenCV could not encode a {a.shape} {a.dtype} array as {codec}", "bad_data")
    return f"{encoding}; {codec} compressed {stored}", buf.tobytes()
