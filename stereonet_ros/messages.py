"""Builders for the node's output messages (DisparityImage, depth, PointCloud2, images).

The numbers come from ``geometry`` (pure numpy); this module only packs them, so the
depth image and the point cloud carry exactly the same Z values.
"""
from __future__ import annotations

import array
from typing import Optional

import cv2
import numpy as np
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from .imageconv import fill_image


def make_image(header: Header, arr: np.ndarray, encoding: str) -> Image:
    msg = Image()
    msg.header = header
    return fill_image(msg, arr, encoding)


def make_disparity(header: Header, disp: np.ndarray, f: float, t: float, min_disparity: float,
                   max_disparity: float, delta_d: float) -> DisparityImage:
    """DisparityImage with 32FC1 ``disp`` (invalid pixels already below min_disparity).

    ``valid_window`` spans the whole image: the network predicts every pixel and invalid
    ones are flagged individually (a value below ``min_disparity``).
    """
    msg = DisparityImage()
    msg.header = header
    msg.image = make_image(header, disp, "32FC1")
    msg.f = float(f)
    msg.t = float(t)
    msg.valid_window.x_offset = 0
    msg.valid_window.y_offset = 0
    msg.valid_window.height = int(disp.shape[0])
    msg.valid_window.width = int(disp.shape[1])
    msg.valid_window.do_rectify = False
    msg.min_disparity = float(min_disparity)
    msg.max_disparity = float(max_disparity)
    msg.delta_d = float(delta_d)
    return msg


def pack_rgb(rgb8: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) float32 whose bits are 0x00RRGGBB (PCL's packed 'rgb')."""
    c = rgb8.astype(np.uint32)
    return ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).view(np.float32)


_XYZ_FIELDS = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
               for i, n in enumerate("xyz")]
_RGB_FIELD = PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1)


def make_cloud(header: Header, points: np.ndarray, rgb8: Optional[np.ndarray] = None,
               organized: bool = True) -> PointCloud2:
    """PointCloud2 from (H, W, 3) float32 xyz (NaN = invalid) and optional (H, W, 3) uint8 RGB.

    Organized: H x W points, invalid ones NaN, ``is_dense`` False. Dense: only finite
    points, height 1, ``is_dense`` True.
    """
    h, w = points.shape[:2]
    nfields = 4 if rgb8 is not None else 3
    buf = np.empty((h, w, nfields), dtype=np.float32)
    buf[..., :3] = points
    if rgb8 is not None:
        buf[..., 3] = pack_rgb(rgb8)
    if not organized:
        buf = buf[np.isfinite(points[..., 2])].reshape(1, -1, nfields)
        h, w = buf.shape[:2]
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(h), int(w)
    msg.fields = list(_XYZ_FIELDS) + ([_RGB_FIELD] if rgb8 is not None else [])
    msg.is_bigendian = False
    msg.point_step = 4 * nfields
    msg.row_step = msg.point_step * int(w)
    msg.is_dense = not organized
    data = array.array("B")
    data.frombytes(memoryview(np.ascontiguousarray(buf)).cast("B"))
    msg.data = data
    return msg


def cloud_to_numpy(msg: PointCloud2) -> np.ndarray:
    """Decode a cloud written by ``make_cloud`` to (H, W, nfields) float32 (tests, tools)."""
    n = msg.point_step // 4
    return np.frombuffer(msg.data, dtype=np.float32).reshape(msg.height, msg.width, n)


def colorize_disparity(disp: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """bgr8 colour map of disparity over [lo, hi] (near = warm); invalid pixels black."""
    scale = 255.0 / max(hi - lo, 1e-6)
    d8 = np.clip((np.nan_to_num(disp, nan=lo) - lo) * scale, 0, 255).astype(np.uint8)
    color = cv2.applyColorMap(d8, cv2.COLORMAP_TURBO)
    color[~valid] = 0
    return color
