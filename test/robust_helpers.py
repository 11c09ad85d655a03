"""Helpers of the robustness tests: the node as a subprocess, /diagnostics and /rosout readers,
input publishers and bad-input builders. Real rclpy everywhere; nothing of ROS is mocked."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from helpers import camera_infos, image_msg, to_encoding, wait_for

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
PARAMS_FILE = str(ROOT / "config" / "stereonet.yaml")


class NodeProcess:
    """``python -m stereonet_ros.node`` in a child process with stdout+stderr in a file.

    The child inherits this process's environment, so ROS_DOMAIN_ID (set by the
    ``ros_domain`` fixture) and the DDS transport settings are the test's own.
    """

    def __init__(self, log_path: Path, params: Dict[str, Any], namespace: str = "",
                 params_file: Optional[str] = PARAMS_FILE, extra_args: Sequence[str] = (),
                 module: str = "stereonet_ros.node", env: Optional[Dict[str, str]] = None) -> None:
        # module "stereonet_ros.node_main" runs what the stereonet_node console script runs
        args = [PYTHON, "-m", module, "--ros-args"]
        if params_file:
            args += ["--params-file", params_file]
        for k, v in params.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            args += ["-p", f"{k}:={v}"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        args += list(extra_args)
        self.args = args
        self.log_path = log_path
        env = dict(os.environ, **(env or {}), PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.flush()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        """Resident memory of the child (VmRSS from /proc/<pid>/status) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def close(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover - only on a hung child
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class DiagReader:
    """Keeps the newest /diagnostics status per part of one node's report (real messages).

    The node names its statuses '<fully qualified node name>: <part>' (part: pipeline,
    camera_info, device); ``node_fqn`` defaults to a node 'stereonet' in the namespace of
    ``node`` (the tests put their tester node there). Other nodes' statuses are ignored.
    """

    def __init__(self, node: Any, node_fqn: Optional[str] = None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.lock = threading.Lock()
        self.latest: Dict[str, Any] = {}
        self.history: List[tuple] = []   # (part, level, message) of every status received
        self.count = 0
        self.node_fqn = node_fqn or node.get_namespace().rstrip("/") + "/stereonet"
        self.prefix = self.node_fqn + ": "
        self.sub = node.create_subscription(DiagnosticArray, "/diagnostics", self._cb,
                                            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))

    def _cb(self, arr: Any) -> None:
        with self.lock:
            self.count += 1
            for st in arr.status:
                if st.name.startswith(self.prefix):
                    part = st.name[len(self.prefix):]
                    self.latest[part] = st
                    lv = st.level[0] if isinstance(st.level, (bytes, bytearray)) else int(st.level)
                    self.history.append((part, lv, st.message))

    def status(self, part: str = "pipeline") -> Any:
        with self.lock:
            return self.latest.get(part)

    def level(self, part: str = "pipeline") -> int:
        """0 OK, 1 WARN, 2 ERROR (the message field is a byte), -1 before any message."""
        st = self.status(part)
        if st is None:
            return -1
        return st.level[0] if isinstance(st.level, (bytes, bytearray)) else int(st.level)

    def values(self, part: str = "pipeline") -> Dict[str, str]:
        st = self.status(part)
        return {kv.key: kv.value for kv in st.values} if st is not None else {}

    def int_value(self, key: str, part: str = "pipeline") -> int:
        return int(self.values(part).get(key, "0"))

    def wait_value(self, key: str, pred: Any, timeout: float = 10.0, part: str = "pipeline") -> bool:
        return wait_for(lambda: key in self.values(part) and pred(self.values(part)[key]), timeout)


class RosoutReader:
    """Log lines the node published on /rosout (rcl_interfaces/Log), for its logger only."""

    def __init__(self, node: Any, logger_suffix: str = "stereonet") -> None:
        from rcl_interfaces.msg import Log
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        self.lock = threading.Lock()
        self.lines: List[Any] = []
        self.suffix = logger_suffix
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.sub = node.create_subscription(Log, "/rosout", self._cb, qos)

    def _cb(self, msg: Any) -> None:
        if msg.name.endswith(self.suffix):
            with self.lock:
                self.lines.append(msg)

    def matching(self, text: str, min_level: int = 0) -> List[str]:
        with self.lock:
            return [m.msg for m in self.lines if text in m.msg and m.level >= min_level]

    def wait(self, text: str, timeout: float = 10.0, min_level: int = 0) -> bool:
        return wait_for(lambda: bool(self.matching(text, min_level)), timeout)


def input_publishers(node: Any, namespace: str = "", reliable: bool = True, depth: int = 10) -> Dict[str, Any]:
    """Publishers of the node's four inputs, under ``namespace``."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
    pre = f"{namespace}/" if namespace else ""
    return {k: node.create_publisher(t, pre + k, qos) for k, t in (
        ("left/image_rect", Image), ("right/image_rect", Image),
        ("left/camera_info", CameraInfo), ("right/camera_info", CameraInfo))}


def subscribed_input_publishers(node: Any, namespace: str = "", timeout: float = 10.0,
                                **kw: Any) -> Dict[str, Any]:
    """``input_publishers`` once an in-process node has subscribed to all four (asserted)."""
    pubs = input_publishers(node, namespace, **kw)
    assert wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), timeout), \
        f"no subscriber on some of {[p.topic_name for p in pubs.values()]}"
    return pubs


def wait_node_subscribed(pubs: Dict[str, Any], proc: "NodeProcess", timeout: float = 90.0) -> None:
    """Wait until the node process subscribes to every input publisher.

    The bound is generous: a cold start imports torch, which on a loaded 2-core machine
    took over 30 s. A process that exits meanwhile fails at once with its output.
    """
    ok = wait_for(lambda: not proc.alive() or all(p.get_subscription_count() >= 1 for p in pubs.values()),
                  timeout)
    assert ok and proc.alive(), f"node not subscribed (alive={proc.alive()}):\n{proc.output()}"


def publish_infos(pubs: Dict[str, Any], infos: Any) -> None:
    pubs["left/camera_info"].publish(infos[0])
    pubs["right/camera_info"].publish(infos[1])


def publish_images(pubs: Dict[str, Any], left: Any, right: Any) -> None:
    pubs["left/image_rect"].publish(left)
    pubs["right/image_rect"].publish(right)


def good_images(left_rgb: np.ndarray, right_rgb: np.ndarray, stamp: int, enc: str = "rgb8"):
    return (image_msg(to_encoding(left_rgb, enc), enc, stamp),
            image_msg(to_encoding(right_rgb, enc), enc, stamp, "right_optical"))


def good_infos(w: int, h: int, fx: float, baseline: float, stamp: int = 0):
    return camera_infos(w, h, fx, baseline, stamp_ns=stamp)


def wall_stamp() -> int:
    """Now as a header stamp (ns): the node's clock is the system clock."""
    return time.time_ns()
