"""``stereonet_node``: rectified stereo in, disparity / depth / point cloud out (rclpy).

Threads: the executor thread runs subscription callbacks, which only pair images and drop
them in a one-slot mailbox; a worker thread takes the newest pair, runs the network and
publishes. So when inference is slower than the camera the node works on the newest pair
and the older one is dropped (counted as 'overrun'): latency stays bounded, memory flat.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from . import messages
from .checkpoint import CheckpointError
from .engine import EngineConfigError, StereoEngine
from .params import SPECS, validate, validate_all
from .pipeline import FrameError, FrameOutput, OutputOptions, process_pair
from .stats import DROP_REASONS, NodeStats
from .sync import StereoPairer, stamp_ns

try:  # On a robot message_filters comes from the ROS install; the built-in pairer otherwise.
    import message_filters  # type: ignore
except ImportError:  # pragma: no cover - depends on the installation
    message_filters = None

ENGINE_PARAMS = tuple(n for n, s in SPECS.items() if s.engine)
SYNC_PARAMS = ("sync_mode", "sync_slop", "queue_size", "sync_backend")
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


class StartupError(RuntimeError):
    """A configuration problem that prevents the node from starting (logged, exit code 2)."""


def build_engine(values: Dict[str, Any]) -> StereoEngine:
    return StereoEngine(checkpoint=values["checkpoint"], device=values["device"],
                        precision=values["precision"], input_scale=values["input_scale"],
                        max_disparity=values["max_disparity"], num_threads=values["num_threads"],
                        strict_device=values["strict_device"])


def output_options(v: Dict[str, Any]) -> OutputOptions:
    return OutputOptions(confidence_threshold=v["confidence_threshold"], lr_check=v["lr_check"],
                         lr_threshold=v["lr_threshold"], min_depth=v["min_depth"],
                         max_depth=v["max_depth"], cloud_decimation=v["cloud_decimation"],
                         want_confidence=v["publish_confidence"], want_points=v["publish_points"],
                         want_color=v["cloud_color"])


class StereoNetNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("stereonet", **kwargs)
        for name, spec in SPECS.items():
            self.declare_parameter(name, spec.default, ParameterDescriptor(description=spec.description))
        self.values: Dict[str, Any] = {n: self.get_parameter(n).value for n in SPECS}
        errors = validate_all(self.values)
        if errors:
            raise StartupError("invalid parameters: " + "; ".join(errors))
        self.stats = NodeStats()
        try:
            self.engine = build_engine(self.values)
        except (CheckpointError, EngineConfigError) as exc:
            raise StartupError(str(exc)) from exc
        if self.values["device"] not in ("auto", "cpu") and self.engine.device.type == "cpu":
            self.stats.event("device_fallback", f"device '{self.values['device']}' unavailable")
        self.get_logger().info(self.engine.describe())
        if "random" in str(self.engine.ckpt.info.get("weights", "")):
            self.get_logger().warning("THE CHECKPOINT HOLDS RANDOMLY INITIALISED WEIGHTS: outputs are meaningless")
        self.options = output_options(self.values)
        self._lock = threading.Lock()         # guards engine/options swaps
        self._slot_cv = threading.Condition()
        self._slot: Optional[Tuple[Any, Any]] = None
        self._running = True
        self._last_stamp: Optional[int] = None
        self._infos: Dict[str, Tuple[Optional[CameraInfo], float]] = {"left": (None, 0.0), "right": (None, 0.0)}
        self._camera_status: Tuple[int, str] = (2, "no camera_info received yet")
        self._warned: Dict[str, float] = {}

        sub_events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        qos_opts = QoSOverridingOptions.with_default_policies
        self._info_subs = [
            self.create_subscription(CameraInfo, f"{side}/camera_info",
                                     lambda m, s=side: self._on_info(s, m), qos_profile_sensor_data,
                                     event_callbacks=sub_events, qos_overriding_options=qos_opts())
            for side in ("left", "right")]
        self._image_subs: List[Any] = []
        self._setup_sync()

        pub = lambda t, n: self.create_publisher(t, n, OUTPUT_QOS, qos_overriding_options=qos_opts())  # noqa: E731
        self.pub_disp = pub(DisparityImage, "disparity")
        self.pub_depth = pub(Image, "depth")
        self.pub_points = pub(PointCloud2, "points2")
        self.pub_conf = pub(Image, "confidence")
        self.pub_color = pub(Image, "disparity/color")
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.values["diagnostics_period"], self.publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name="stereonet-inference", daemon=True)
        self._worker.start()

    # ----- input ---------------------------------------------------------------------------
    def _setup_sync(self) -> None:
        for sub in self._image_subs:
            self.destroy_subscription(getattr(sub, "sub", sub))
        self._image_subs = []
        v = self.values
        backend = v["sync_backend"]
        if backend == "message_filters" and message_filters is None:
            self.get_logger().warning("sync_backend 'message_filters' is not importable; using the built-in pairer")
        use_mf = message_filters is not None and backend in ("auto", "message_filters")
        qos_opts = QoSOverridingOptions.with_default_policies
        if use_mf:  # pragma: no cover - message_filters is not installable in CI
            subs = [message_filters.Subscriber(self, Image, f"{s}/image_rect", qos_profile=qos_profile_sensor_data)
                    for s in ("left", "right")]
            if v["sync_mode"] == "exact":
                sync = message_filters.TimeSynchronizer(subs, v["queue_size"])
            else:
                sync = message_filters.ApproximateTimeSynchronizer(subs, v["queue_size"], v["sync_slop"])
            sync.registerCallback(self._on_pair)
            self._image_subs = subs
            self._mf_sync = sync
            self.pairer = None
            return
        self.pairer = StereoPairer(v["sync_mode"], v["sync_slop"], v["queue_size"],
                                   on_discard=lambda n: self.stats.drop("unpaired", count=n))
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        for side, add in (("left", self.pairer.add_left), ("right", self.pairer.add_right)):
            def cb(msg: Image, side: str = side, add: Any = add) -> None:
                self.stats.received_msg(f"{side}/image_rect")
                pair = add(msg)
                if pair is not None:
                    self._on_pair(*pair)
            self._image_subs.append(self.create_subscription(
                Image, f"{side}/image_rect", cb, qos_profile_sensor_data, event_callbacks=events,
                qos_overriding_options=qos_opts()))

    def _on_info(self, side: str, msg: CameraInfo) -> None:
        self.stats.received_msg(f"{side}/camera_info")
        self._infos[side] = (msg, time.monotonic())

    def _on_incompatible_qos(self, info: Any) -> None:
        self.get_logger().error(
            f"a publisher's QoS is incompatible with this node's subscription (policy "
            f"{info.last_policy_kind}); set qos_overrides.<topic>.subscription.reliability "
            "to match the camera driver")

    def _on_pair(self, left: Image, right: Image) -> None:
        t = stamp_ns(left)
        if self._last_stamp is not None and t < self._last_stamp:
            self.stats.event("stamp_backwards", f"stamp went back by {(self._last_stamp - t) / 1e9:.3f} s")
            self._warn("stamp_backwards", "stereo stamps went backwards (bag loop or clock jump); continuing "
                       "with the new timeline")
        self._last_stamp = t
        with self._slot_cv:
            if self._slot is not None:
                self.stats.drop("overrun")
            self._slot = (left, right)
            self._slot_cv.notify()

    # ----- processing ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._slot_cv:
                while self._slot is None and self._running:
                    self._slot_cv.wait(0.5)
                if not self._running:
                    return
                left, right = self._slot
                self._slot = None
            try:
                self.process(left, right)
            except Exception as exc:  # never let one frame kill the worker
                self.stats.drop("inference_error", f"{type(exc).__name__}: {exc}")
                self._warn("inference_error", f"frame dropped, unexpected error: {type(exc).__name__}: {exc}\n"
                           + traceback.format_exc(limit=3))

    def _camera_infos(self) -> Tuple[CameraInfo, CameraInfo]:
        timeout = self.values["camera_info_timeout"]
        now = time.monotonic()
        out = []
        for side in ("left", "right"):
            msg, t = self._infos[side]
            if msg is None:
                raise FrameError("camera_info_missing", f"no {side}/camera_info received yet")
            if timeout > 0 and now - t > timeout:
                raise FrameError("camera_info_missing", f"{side}/camera_info is {now - t:.1f} s old "
                                                        f"(camera_info_timeout {timeout:g} s)")
            out.append(msg)
        return out[0], out[1]

    def process(self, left: Image, right: Image) -> Optional[FrameOutput]:
        """Process one pair and publish its outputs; a bad pair is counted and reported."""
        t_recv = time.perf_counter()
        with self._lock:
            engine, opts, v = self.engine, self.options, self.values
        try:
            linfo, rinfo = self._camera_infos()
            out = process_pair(engine, left, right, linfo, rinfo, opts, v["max_image_pixels"])
        except FrameError as exc:
            self.stats.drop(exc.reason, str(exc))
            if exc.reason == "bad_geometry":
                self._camera_status = (2, str(exc))
            self._warn(exc.reason, f"frame dropped ({exc.reason}): {exc}")
            return None
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError":
                self.stats.drop("out_of_memory", str(exc).splitlines()[0])
                self._warn("out_of_memory", "CUDA out of memory: frame dropped (lower input_scale or max_disparity)")
                try:
                    import torch
                    torch.cuda.empty_cache()
                except Exception:  # pragma: no cover
                    pass
                return None
            raise
        self._camera_status = (1, "; ".join(out.warnings)) if out.warnings else (0, "ok")
        if out.warnings:
            self.stats.event("camera_info_warning", out.warnings[0])
            self._warn("camera_info_warning", "camera_info: " + "; ".join(out.warnings))
        t_pub = time.perf_counter()
        self.publish(left.header, out, v)
        t_done = time.perf_counter()
        stamp_age = (self.get_clock().now().nanoseconds - stamp_ns(left)) / 1e6
        stages = dict(out.timings_ms)
        stages["publish"] = 1e3 * (t_done - t_pub)
        stages["total"] = 1e3 * (t_done - t_recv)
        stages["stamp_to_publish"] = stamp_age
        self.stats.processed_frame(stages)
        return out

    def publish(self, header: Any, out: FrameOutput, v: Dict[str, Any]) -> None:
        g = out.geometry
        if v["publish_disparity"]:
            self.pub_disp.publish(messages.make_disparity(header, out.disparity, g.fx, g.baseline,
                                                          out.min_disparity, out.max_disparity, out.delta_d))
        if v["publish_depth"]:
            self.pub_depth.publish(messages.make_image(header, out.depth, "32FC1"))
        if v["publish_points"] and out.points is not None:
            self.pub_points.publish(messages.make_cloud(header, out.points, out.rgb8, v["cloud_organized"]))
        if v["publish_confidence"] and out.confidence is not None:
            self.pub_conf.publish(messages.make_image(header, out.confidence.astype("float32"), "32FC1"))
        if v["publish_color"]:
            lo = max(out.min_disparity, 0.0)
            color = messages.colorize_disparity(out.disparity, out.valid, lo, out.max_disparity)
            self.pub_color.publish(messages.make_image(header, color, "bgr8"))

    # ----- parameters ----------------------------------------------------------------------
    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in SPECS}
        for name, value in changes.items():
            err = validate(name, value)
            if err:
                self.get_logger().error(f"rejected: {err}")
                return SetParametersResult(successful=False, reason=err)
        new = {**self.values, **changes}
        errors = validate_all(new)
        if errors:
            return SetParametersResult(successful=False, reason="; ".join(errors))
        engine = self.engine
        if any(new[n] != self.values[n] for n in ENGINE_PARAMS if n in changes):
            try:
                engine = build_engine(new)
            except (CheckpointError, EngineConfigError, OSError) as exc:
                reason = f"rejected, the current model keeps running: {exc}"
                self.get_logger().error(reason)
                return SetParametersResult(successful=False, reason=reason)
            self.get_logger().info("switched to " + engine.describe())
        with self._lock:
            self.engine, self.values, self.options = engine, new, output_options(new)
        if any(n in changes for n in SYNC_PARAMS):
            self._setup_sync()
        if "diagnostics_period" in changes:
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(new["diagnostics_period"], self.publish_diagnostics)
        return SetParametersResult(successful=True)

    # ----- reporting -----------------------------------------------------------------------
    def _warn(self, key: str, text: str, period: float = 5.0) -> None:
        """Log at most once per ``period`` seconds per key (counts are in /diagnostics)."""
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            self.get_logger().warning(text)

    def publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        kv = lambda k, v: KeyValue(key=str(k), value=str(v))  # noqa: E731
        pipe = DiagnosticStatus(name="stereonet: pipeline", hardware_id=str(self.engine.device))
        values = [kv("device", self.engine.device), kv("precision", self.engine.precision_name),
                  kv("model", self.engine.describe()), kv("processed", snap["processed"]),
                  kv("output_rate_hz", f"{snap['rates'].get('output', 0.0):.2f}")]
        for topic in ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info"):
            values.append(kv(f"input_rate_hz {topic}", f"{snap['rates'].get(topic, 0.0):.2f}"))
            values.append(kv(f"received {topic}", snap["received"].get(topic, 0)))
        drops = snap["drops"]
        for reason in DROP_REASONS:
            values.append(kv(f"dropped {reason}", drops.get(reason, 0)))
        values.append(kv("dropped total", sum(drops.values())))
        for name, n in snap["events"].items():
            values.append(kv(f"event {name}", n))
        for stage, (mean, p50, p95) in sorted(snap["latency_ms"].items()):
            values.append(kv(f"latency_ms {stage}", f"mean {mean:.2f} p50 {p50:.2f} p95 {p95:.2f}"))
        for reason, text in snap["last_error"].items():
            values.append(kv(f"last {reason}", text[:300]))
        pipe.values = values
        recent = sum(drops.values()) - getattr(self, "_drops_reported", 0)
        self._drops_reported = sum(drops.values())
        if recent:
            pipe.level, pipe.message = DiagnosticStatus.WARN, f"{recent} frame(s) dropped since last report"
        else:
            pipe.level, pipe.message = DiagnosticStatus.OK, "ok"
        cam = DiagnosticStatus(name="stereonet: camera_info", hardware_id=str(self.engine.device))
        level, text = self._camera_status
        cam.level = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)[level]
        cam.message = text
        linfo = self._infos["left"][0]
        if linfo is not None:
            p = list(linfo.p)
            cam.values = [kv("resolution", f"{linfo.width}x{linfo.height}"), kv("fx", p[0])]
            rinfo = self._infos["right"][0]
            if rinfo is not None and rinfo.p[0]:
                cam.values.append(kv("baseline_m", f"{-rinfo.p[3] / rinfo.p[0]:.6f}"))
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [pipe, cam]
        self.pub_diag.publish(arr)

    def shutdown(self) -> None:
        with self._slot_cv:
            self._running = False
            self._slot_cv.notify_all()
        self._worker.join(timeout=10.0)


def main(args: Optional[List[str]] = None) -> int:
    """Console entry point ``stereonet_node``; exit code 2 on a configuration error."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = StereoNetNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except StartupError as exc:
        rclpy.logging.get_logger("stereonet").fatal(f"cannot start: {exc}")
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
