"""Test helpers: synthetic rectified pairs with known disparity, CameraInfo, spinning."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) float32 in [0,1]: multi-scale random texture (matchable everywhere)."""
    import cv2
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cell in (2, 5, 13):
        small = rng.random((h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        img += cv2.resize(small, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)[:h, :w]
    img -= img.min()
    return img / img.max()


def shifted_pair(h: int, w: int, disparity: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Fronto-parallel plane at integer ``disparity`` px: right(x) = left(x + d)."""
    d = int(round(disparity))
    big = texture(h, w + d, seed)
    left = big[:, :w]
    right = big[:, d:d + w] if d else left.copy()
    # right(x) = big(x + d) = left(x + d) for x + d < w
    return left, right


def to_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """float RGB [0,1] -> array in ``encoding``'s layout and dtype."""
    u8 = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    grey = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))
    if encoding in ("mono8", "8UC1"):
        return (np.clip(grey, 0, 1) * 255 + 0.5).astype(np.uint8)
    if encoding in ("mono16", "16UC1"):
        return (np.clip(grey, 0, 1) * 65535 + 0.5).astype(np.uint16)
    if encoding == "rgb8":
        return u8
    if encoding in ("bgr8", "8UC3"):
        return u8[..., ::-1].copy()
    if encoding == "rgba8":
        return np.concatenate([u8, np.full(u8.shape[:2] + (1,), 255, np.uint8)], 2)
    if encoding == "bgra8":
        return np.concatenate([u8[..., ::-1], np.full(u8.shape[:2] + (1,), 255, np.uint8)], 2)
    if encoding == "32FC1":
        return grey.astype(np.float32)
    raise ValueError(encoding)


def image_msg(arr: np.ndarray, encoding: str, stamp_ns: int = 0, frame_id: str = "left_optical"):
    from sensor_msgs.msg import Image
    from stereonet_ros.imageconv import fill_image
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    return fill_image(msg, arr, encoding)


def camera_infos(w: int, h: int, fx: float = 300.0, baseline: float = 0.12, cx_l: Optional[float] = None,
                 cx_r: Optional[float] = None, stamp_ns: int = 0, frame_id: str = "left_optical"):
    from sensor_msgs.msg import CameraInfo
    cx_l = (w - 1) / 2 if cx_l is None else cx_l
    cx_r = cx_l if cx_r is None else cx_r
    cy = (h - 1) / 2
    out = []
    for tx, cx in ((0.0, cx_l), (-fx * baseline, cx_r)):
        m = CameraInfo()
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        m.header.frame_id = frame_id
        m.width, m.height = w, h
        m.distortion_model = "plumb_bob"
        m.d = [0.0] * 5
        m.k = [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0]
        m.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
        m.p = [fx, 0.0, cx, tx, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        out.append(m)
    return out[0], out[1]


class Spinner:
    """A SingleThreadedExecutor spinning the given nodes in a background thread."""

    def __init__(self, *nodes: Any) -> None:
        from rclpy.executors import SingleThreadedExecutor
        self.executor = SingleThreadedExecutor()
        for n in nodes:
            self.executor.add_node(n)
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        self.executor.shutdown()


def wait_for(pred: Callable[[], bool], timeout: float = 20.0, period: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(period)
    return pred()


class Collector:
    """Subscribes to the node's outputs and keeps every message received, by topic."""

    TOPICS = {"disparity": "stereo_msgs.msg.DisparityImage", "depth": "sensor_msgs.msg.Image",
              "points2": "sensor_msgs.msg.PointCloud2", "confidence": "sensor_msgs.msg.Image",
              "disparity/color": "sensor_msgs.msg.Image", "/diagnostics": "diagnostic_msgs.msg.DiagnosticArray",
              "depth/camera_info": "sensor_msgs.msg.CameraInfo", "confidence/camera_info": "sensor_msgs.msg.CameraInfo"}

    def __init__(self, node: Any, namespace: str = "", reliable: bool = True) -> None:
        import importlib
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.msgs: Dict[str, List[Any]] = {t: [] for t in self.TOPICS}
        self.lock = threading.Lock()
        self.pipeline_status = f"{namespace.rstrip('/')}/stereonet: pipeline"
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        self.subs = []
        for topic, tname in self.TOPICS.items():
            mod, cls = tname.rsplit(".", 1)
            t = getattr(importlib.import_module(mod), cls)
            full = topic if topic.startswith("/") else f"{namespace}/{topic}" if namespace else topic
            self.subs.append(node.create_subscription(t, full, lambda m, k=topic: self._cb(k, m), qos))

    def _cb(self, topic: str, msg: Any) -> None:
        with self.lock:
            self.msgs[topic].append(msg)

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.msgs[topic])

    def latest(self, topic: str) -> Any:
        with self.lock:
            return self.msgs[topic][-1]

    def diag_values(self) -> Dict[str, str]:
        """Key/values of the newest '<ns>/stereonet: pipeline' status (this node's, by full name)."""
        with self.lock:
            for arr in reversed(self.msgs["/diagnostics"]):
                for st in arr.status:
                    if st.name == self.pipeline_status:
                        return {kv.key: kv.value for kv in st.values}
        return {}
