"""``stereonet_node``: rectified stereo in, disparity / depth / point cloud out (rclpy).

Threads: the executor thread runs subscription callbacks, which only pair images and drop
them in a one-slot mailbox; a worker thread takes the newest pair, runs the network and
publishes. So when inference is slower than the camera the node works on the newest pair
and the older one is dropped (counted as 'overrun'): latency stays bounded, memory flat.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
import signal
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

_early_stop: List[int] = []


def _record_early_signal(signum: int, _frame: Any) -> None:
    """SIGINT/SIGTERM before rclpy is up: remember it, main() exits 0 once it can.

    Raising KeyboardInterrupt instead is unreliable: ``import torch`` swallows one that
    arrives while it loads, and the node would then run on as if never asked to stop.
    """
    _early_stop.append(signum)


if __name__ == "__main__":  # set before the heavy imports below (seconds of torch)
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _record_early_signal)

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult  # noqa: E402
from rclpy.event_handler import SubscriptionEventCallbacks  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data  # noqa: E402
from rclpy.qos_overriding_options import QoSOverridingOptions  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from . import messages  # noqa: E402
from .checkpoint import CheckpointError  # noqa: E402
from .diagnostics import DiagnosticsReport, fell_back_to_cpu  # noqa: E402
from .engine import EngineConfigError, EngineOutOfMemory, StereoEngine  # noqa: E402
from .params import (QOS_PREFIX, ROS_BUILTIN_PARAMETERS, SPECS, unknown_parameter_errors,  # noqa: E402
                     validate, validate_all)
from .pipeline import (FrameError, FrameOutput, OutputOptions, camera_info_report, process_pair,  # noqa: E402
                       uncompressed_pair)
from .stats import NodeStats  # noqa: E402
from .sync import StereoPairer, stamp_ns  # noqa: E402

try:  # On a robot message_filters comes from the ROS install; the built-in pairer otherwise.
    import message_filters  # type: ignore
except ImportError:  # pragma: no cover - depends on the installation
    message_filters = None

_DIGITS = re.compile(r"\d+")
ENGINE_PARAMS = tuple(n for n, s in SPECS.items() if s.engine)
SYNC_PARAMS = ("sync_mode", "sync_slop", "queue_size", "sync_backend", "image_transport")
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


def _qos(profile: QoSProfile) -> QoSProfile:
    """A copy of a shared profile for one subscription/publisher: rclpy applies the
    qos_overrides parameters to the profile object it is given, in place, so passing the
    module-level profile let one topic's override leak into every topic (and node) created
    after it in the process."""
    return copy.copy(profile)
#: The four inputs, relative names (remappable), in the order the no-input warning lists them.
INPUT_TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")


class StartupError(RuntimeError):
    """A configuration problem that prevents the node from starting (logged, exit code 2)."""


def default_threads() -> int:
    """num_threads 0: every core but one, which stays free for the executor thread that
    receives images (2 busy threads on 2 cores measured ~4x slower than 1)."""
    return max(1, (os.cpu_count() or 2) - 1)


def build_engine(values: Dict[str, Any]) -> StereoEngine:
    return StereoEngine(checkpoint=values["checkpoint"], device=values["device"],
                        precision=values["precision"], input_scale=values["input_scale"],
                        max_disparity=values["max_disparity"], refiners=values["refiners"],
                        num_threads=values["num_threads"] or default_threads(),
                        strict_device=values["strict_device"], backend=values["backend"],
                        onnx_providers=values["onnx_providers"])


def output_options(v: Dict[str, Any]) -> OutputOptions:
    return OutputOptions(confidence_threshold=v["confidence_threshold"], lr_check=v["lr_check"],
                         lr_threshold=v["lr_threshold"], min_depth=v["min_depth"],
                         max_depth=v["max_depth"], cloud_decimation=v["cloud_decimation"],
                         want_confidence=v["publish_confidence"], want_points=v["publish_points"],
                         want_color=v["cloud_color"])


def _coerce(values: Dict[str, Any]) -> Dict[str, Any]:
    """Integers given for float parameters (``-p max_disparity:=64``) become floats."""
    return {n: float(v) if isinstance(SPECS[n].default, float) and isinstance(v, int)
            and not isinstance(v, bool) else v for n, v in values.items()}


class StereoNetNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        # Undeclared overrides stay undeclared (rclpy's defaults, spelt out because the
        # unknown-parameter check relies on them): a name that is not in params.SPECS is
        # then visible as an override without a parameter, and refused at start.
        kwargs.setdefault("allow_undeclared_parameters", False)
        kwargs.setdefault("automatically_declare_parameters_from_overrides", False)
        super().__init__("stereonet", **kwargs)
        try:
            self._configure()
        except StartupError as exc:
            # Logged here, before any DDS teardown: the reason must reach the log even if the
            # process dies in the middleware (CI once saw a failed start abort inside Fast DDS
            # with no reason logged).
            self.get_logger().fatal(f"cannot start: {exc}")
            self.destroy_node()  # no half-built node left in the caller's context
            raise

    def _configure(self) -> None:
        for name, spec in SPECS.items():
            # dynamic_typing: a value of the wrong ROS type reaches validate(), which names
            # the parameter and the expected type, instead of an rclpy exception/traceback.
            desc = ParameterDescriptor(description=spec.description, dynamic_typing=True)
            try:
                self.declare_parameter(name, spec.default, desc)
            except ParameterException as exc:
                raise StartupError(f"parameter '{name}': {exc}") from exc
        # Before the model loads (seconds): a misspelt name fails at once. QoS override
        # names are checked once the subscriptions and publishers have declared theirs.
        self._refuse_unknown_parameters(qos=False)
        raw = {n: self.get_parameter(n).value for n in SPECS}
        errors = validate_all(raw)
        if errors:
            raise StartupError("invalid parameters: " + "; ".join(errors))
        self.values: Dict[str, Any] = _coerce(raw)
        self.stats = NodeStats()
        try:
            self.engine = build_engine(self.values)
        except (CheckpointError, EngineConfigError) as exc:
            raise StartupError(str(exc)) from exc
        self._note_device_fallback(self.engine, self.values)
        self.get_logger().info(self.engine.describe())
        if "random" in str(self.engine.ckpt.info.get("weights", "")):
            self.get_logger().warning("THE CHECKPOINT HOLDS RANDOMLY INITIALISED WEIGHTS: outputs are meaningless")
        self.options = output_options(self.values)
        self._lock = threading.Lock()         # guards engine/options swaps
        self._slot_cv = threading.Condition()
        self._slot: Optional[Tuple[Any, Any, float]] = None   # (left, right, perf_counter when paired)
        self._running = True
        self._last_stamp: Optional[int] = None
        self._side_stamp: Dict[str, int] = {}  # newest image stamp per side (bag-loop detection)
        self._image_size: Optional[Tuple[int, int]] = None   # (w, h) of the last pair
        self._infos: Dict[str, Tuple[Optional[CameraInfo], float]] = {"left": (None, 0.0), "right": (None, 0.0)}
        self._camera_status: Tuple[int, str] = (2, "no camera_info received yet")
        self._warned: Dict[str, Tuple[float, int]] = {}   # key -> (last logged, suppressed since)
        self._diagnostics = DiagnosticsReport()
        self._last_pair_time = time.monotonic()   # start counts as the last pair (no-input warning)
        self._last_cloud_stamp: Optional[int] = None   # header stamp of the last points2 (cloud_rate)
        self._topics = self._resolved_inputs()
        self._idle_without_subscribers = False   # logged once when it starts and when it ends

        sub_events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        qos_opts = QoSOverridingOptions.with_default_policies
        self._info_subs = [
            self.create_subscription(CameraInfo, f"{side}/camera_info",
                                     lambda m, s=side: self._on_info(s, m), _qos(qos_profile_sensor_data),
                                     event_callbacks=sub_events, qos_overriding_options=qos_opts())
            for side in ("left", "right")]
        self._image_subs: List[Any] = []
        self._setup_sync()

        def pub(msg_type: Any, topic: str) -> Any:
            return self.create_publisher(msg_type, topic, _qos(OUTPUT_QOS), qos_overriding_options=qos_opts())
        self.pub_disp = pub(DisparityImage, "disparity")
        self.pub_depth = pub(Image, "depth")
        # The camera model of the depth and confidence images (same pixels as the left
        # rectified image), so depth_image_proc and RViz's DepthCloud can use them directly.
        self.pub_depth_info = pub(CameraInfo, "depth/camera_info")
        self.pub_points = pub(PointCloud2, "points2")
        self.pub_conf = pub(Image, "confidence")
        self.pub_conf_info = pub(CameraInfo, "confidence/camera_info")
        self.pub_color = pub(Image, "disparity/color")
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._refuse_unknown_parameters(qos=True)
        self._diag_timer = self.create_timer(self.values["diagnostics_period"], self.publish_diagnostics)
        self._input_timer: Optional[Any] = None
        self._set_input_timer()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        outputs = [p.topic_name for p in (self.pub_disp, self.pub_depth, self.pub_depth_info, self.pub_points,
                                          self.pub_conf, self.pub_conf_info, self.pub_color, self.pub_diag)]
        self.get_logger().info(
            f"{self.get_fully_qualified_name()} ready: inputs {', '.join(self._topics.values())}; outputs "
            f"{', '.join(outputs)}; model {self.engine.describe()}; device {self.engine.device} "
            f"{self.engine.precision_name}")
        self._worker = threading.Thread(target=self._work, name="stereonet-inference", daemon=True)
        self._worker.start()

    def _refuse_unknown_parameters(self, qos: bool) -> None:
        """StartupError naming every override (command line, params file, constructor) that
        is no parameter of this node, with the closest valid name.

        ``qos`` False checks the node's own names, True the ``qos_overrides.*`` ones (declared
        by rclpy when a subscription or publisher is created with QoS overriding options).
        rclpy keeps the overrides for this node (global and node-specific ``-p``, params
        file entries for its name or a wildcard) in ``_parameter_overrides``; it has no
        public accessor for them.
        """
        given = [n for n in self._parameter_overrides if n.startswith(QOS_PREFIX) == qos]
        known = set(SPECS) | set(ROS_BUILTIN_PARAMETERS) | set(self.list_parameters([], 0).names)
        errors = unknown_parameter_errors(given, known)
        if errors:
            raise StartupError("; ".join(errors))

    def _set_input_timer(self) -> None:
        """(Re)start the no-input check at the period of input_timeout_warning (0 = none)."""
        if self._input_timer is not None:
            self._input_timer.cancel()
            self.destroy_timer(self._input_timer)
            self._input_timer = None
        period = self.values["input_timeout_warning"]
        if period > 0:
            self._input_timer = self.create_timer(period, self._check_input)

    def _check_input(self) -> None:
        """Warn (once per input_timeout_warning seconds) while no stereo pair arrives, naming
        the resolved input topics and those never received: the first-day questions are
        'is it remapped right?' and 'does the camera publish at all?'."""
        timeout = self.values["input_timeout_warning"]
        idle = time.monotonic() - self._last_pair_time
        if timeout <= 0 or idle < timeout:
            return
        received = self.stats.snapshot()["received"]
        never = [self._topics[t] for t in INPUT_TOPICS if not received.get(t)]
        t = self._topics
        text = (f"no stereo pair for {idle:.0f} s on {t['left/image_rect']} + {t['right/image_rect']} "
                f"(camera_info {t['left/camera_info']}, {t['right/camera_info']}); ")
        if never:
            text += (f"never received: {', '.join(never)} (check the remappings, the namespace and that "
                     "the camera publishes: ros2 topic info -v <topic>)")
        else:
            text += ("every input has been received, but no left/right images paired lately: the camera "
                     f"stopped, or left/right stamps differ (sync_mode {self.values['sync_mode']}, "
                     f"sync_slop {self.values['sync_slop']:g} s)")
        self.get_logger().warning(text)

    # ----- input ---------------------------------------------------------------------------
    def _image_topic(self, side: str) -> str:
        """The name this node subscribes to for one side's images under image_transport.

        raw: the relative name (remappable as is). compressed: '<resolved image topic>/compressed',
        the image topic resolved with the node's namespace and remappings first, as
        image_transport does, so a launch file's left/image_rect:=... remap moves both.
        """
        base = f"{side}/image_rect"
        if self.values["image_transport"] == "compressed":
            return self.resolve_topic_name(base) + "/compressed"
        return base

    def _resolved_inputs(self) -> Dict[str, str]:
        """Input key (INPUT_TOPICS) -> fully resolved topic name, for the log and warnings."""
        out = {t: self.resolve_topic_name(t) for t in INPUT_TOPICS}
        for side in ("left", "right"):
            out[f"{side}/image_rect"] = self.resolve_topic_name(self._image_topic(side))
        return out

    def _setup_sync(self) -> None:
        old = getattr(self, "pairer", None)
        if old is not None:
            old.reset()  # images still waiting for a partner are counted as 'unpaired', not lost
        for sub in self._image_subs:
            self.destroy_subscription(getattr(sub, "sub", sub))
        self._image_subs = []
        v = self.values
        self._topics = self._resolved_inputs()
        msg_type = CompressedImage if v["image_transport"] == "compressed" else Image
        backend = v["sync_backend"]
        if backend == "message_filters" and message_filters is None:
            self.get_logger().warning("sync_backend 'message_filters' is not importable; using the built-in pairer")
        use_mf = message_filters is not None and backend in ("auto", "message_filters")
        qos_opts = QoSOverridingOptions.with_default_policies
        if use_mf:  # pragma: no cover - message_filters is not installable in CI
            subs = [message_filters.Subscriber(self, msg_type, self._image_topic(s),
                                               qos_profile=_qos(qos_profile_sensor_data))
                    for s in ("left", "right")]
            if v["sync_mode"] == "exact":
                sync = message_filters.TimeSynchronizer(subs, v["queue_size"])
            else:
                sync = message_filters.ApproximateTimeSynchronizer(subs, v["queue_size"], v["sync_slop"])
            sync.registerCallback(self._on_pair)
            for side, sub in zip(("left", "right"), subs):  # input counts and rates on /diagnostics
                sub.registerCallback(lambda _msg, t=f"{side}/image_rect": self.stats.received_msg(t))
            self._image_subs = subs
            self._mf_sync = sync
            self.pairer = None
            return
        self.pairer = StereoPairer(v["sync_mode"], v["sync_slop"], v["queue_size"],
                                   on_discard=lambda n: self.stats.drop("unpaired", count=n))
        for side, add in (("left", self.pairer.add_left), ("right", self.pairer.add_right)):
            events = SubscriptionEventCallbacks(
                incompatible_qos=self._on_incompatible_qos,
                message_lost=lambda info, topic=f"{side}/image_rect": self._on_message_lost(topic, info))

            def cb(msg: Any, side: str = side, add: Any = add) -> None:
                self.stats.received_msg(f"{side}/image_rect")
                self._check_side_stamp(side, msg)
                pair = add(msg)
                if pair is not None:
                    self._on_pair(*pair)
            self._image_subs.append(self.create_subscription(
                msg_type, self._image_topic(side), cb, _qos(qos_profile_sensor_data), event_callbacks=events,
                qos_overriding_options=qos_opts()))

    def _check_side_stamp(self, side: str, msg: Image) -> None:
        """A side's stamp going back means a new timeline (bag loop, clock jump): what that
        side still queues is from the old one and would never pair (or pair with the wrong
        loop), so it is discarded now and counted as 'unpaired'."""
        t = stamp_ns(msg)
        last = self._side_stamp.get(side)
        self._side_stamp[side] = t
        if last is not None and t < last and self.pairer is not None:
            self.pairer.discard_newer(0 if side == "left" else 1, t)

    def _note_device_fallback(self, engine: StereoEngine, values: Dict[str, Any]) -> None:
        if fell_back_to_cpu(values["device"], engine):
            text = f"device '{values['device']}' requested but CUDA is unavailable: running on the CPU"
            self.stats.event("device_fallback", text)
            self.get_logger().warning(text + " (set strict_device to fail instead)")

    def _on_info(self, side: str, msg: CameraInfo) -> None:
        self.stats.received_msg(f"{side}/camera_info")
        self._infos[side] = (msg, time.monotonic())

    def _on_message_lost(self, topic: str, info: Any) -> None:
        """The middleware reports images that never arrived (e.g. large images over UDP)."""
        n = int(info.total_count_change)
        if n <= 0:
            return
        self.stats.drop("transport_lost", f"{n} on {topic}", count=n)
        self._warn("transport_lost", f"{n} image(s) on {topic} lost in DDS transport before reaching the "
                   "node; for large images use shared memory / FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA "
                   "(README: Transport for big images)")

    def _on_incompatible_qos(self, info: Any) -> None:
        self.get_logger().error(
            f"a publisher's QoS is incompatible with this node's subscription (policy "
            f"{info.last_policy_kind}); set qos_overrides.<topic>.subscription.reliability "
            "to match the camera driver")

    def _on_pair(self, left: Image, right: Image) -> None:
        self._last_pair_time = time.monotonic()
        t = stamp_ns(left)
        if self._last_stamp is not None and t < self._last_stamp:
            back = (self._last_stamp - t) / 1e9
            self.stats.event("stamp_backwards", f"stamp went back by {back:.3f} s")
            self._warn("stamp_backwards", f"stereo stamps went backwards by {back:.3f} s (bag loop or clock "
                       "jump); continuing with the new timeline")
        self._last_stamp = t
        with self._slot_cv:
            if self._slot is not None:
                self.stats.drop("overrun")
            self._slot = (left, right, time.perf_counter())
            self._slot_cv.notify()

    # ----- processing ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._slot_cv:
                while self._slot is None and self._running:
                    self._slot_cv.wait(0.5)
                if not self._running:
                    return
                left, right, t_paired = self._slot
                self._slot = None
            try:
                self.process(left, right, t_paired)
            except Exception as exc:  # never let one frame kill the worker
                if not self.context.ok():
                    # SIGINT/SIGTERM shut the context down while this frame was publishing:
                    # not a frame fault, and logging would fail too. Stop quietly.
                    return
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

    def wanted_outputs(self, v: Dict[str, Any]) -> Dict[str, bool]:
        """Output -> whether it is enabled (publish_*) and has a subscriber now.

        Outputs nobody listens to are neither computed nor published: the cloud and the
        confidence cost real time on a CPU, and a robot often runs the node long before
        RViz or a planner subscribes. An image and its camera_info count together.
        """
        subs = lambda *pubs: sum(p.get_subscription_count() for p in pubs) > 0  # noqa: E731
        return {"disparity": v["publish_disparity"] and subs(self.pub_disp),
                "depth": v["publish_depth"] and subs(self.pub_depth, self.pub_depth_info),
                "points": v["publish_points"] and subs(self.pub_points),
                "confidence": v["publish_confidence"] and subs(self.pub_conf, self.pub_conf_info),
                "color": v["publish_color"] and subs(self.pub_color)}

    def _note_subscribers(self, any_wanted: bool) -> None:
        """Log the change between 'no output has a subscriber' and processing (info, once each)."""
        if any_wanted == (not self._idle_without_subscribers):
            return
        self._idle_without_subscribers = not any_wanted
        if any_wanted:
            self.get_logger().info("an output has a subscriber: processing pairs")
        else:
            self.get_logger().info("no output has a subscriber: pairs are received but not processed until one "
                                   "subscribes (counted as 'event no_subscriber' on /diagnostics)")

    def process(self, left: Image, right: Image, t_paired: Optional[float] = None) -> Optional[FrameOutput]:
        """Process one pair and publish its outputs; a bad pair is counted and reported.

        Returns None for a dropped pair and for one left unprocessed because no output has
        a subscriber (counted as the event 'no_subscriber')."""
        t_recv = time.perf_counter()
        with self._lock:
            engine, opts, v = self.engine, self.options, self.values
        wanted = self.wanted_outputs(v)
        self._note_subscribers(any(wanted.values()))
        if not any(wanted.values()):
            self.stats.event("no_subscriber", f"pair {stamp_ns(left)} not processed: no output has a subscriber")
            return None
        # Only what is published is computed: the cloud (also under cloud_rate) and the
        # confidence (still computed when confidence_threshold needs it).
        want_points = opts.want_points and wanted["points"] and self._cloud_due(stamp_ns(left), v)
        want_conf = opts.want_confidence and wanted["confidence"]
        if (want_points, want_conf) != (opts.want_points, opts.want_confidence):
            opts = dataclasses.replace(opts, want_points=want_points, want_confidence=want_conf)
        try:
            # A CompressedImage pair is decoded here, in the inference thread: the executor
            # thread stays free to receive, and an overrun drops a pair before its decode.
            left, right = uncompressed_pair(left, right, v["max_image_pixels"])
            self._image_size = (int(left.width), int(left.height))
            linfo, rinfo = self._camera_infos()
            out = process_pair(engine, left, right, linfo, rinfo, opts, v["max_image_pixels"])
        except FrameError as exc:
            self.stats.drop(exc.reason, str(exc))
            if exc.reason in ("bad_geometry", "camera_info_missing"):
                self._camera_status = (2, str(exc))
            # A broken calibration repeats on every frame: log it once, then rarely.
            period = 30.0 if exc.reason in ("bad_geometry", "camera_info_missing") else 5.0
            self._warn(exc.reason, f"frame dropped ({exc.reason}): {exc}", period,
                       error=exc.reason == "bad_geometry")
            return None
        except EngineOutOfMemory as exc:
            self.stats.drop("out_of_memory", str(exc))
            self._warn("out_of_memory", f"frame dropped (out_of_memory): {exc}; lower input_scale "
                       "or max_disparity if this repeats")
            return None
        if self._camera_status[0] == 2 and self._camera_status[1] != "no camera_info received yet":
            self.get_logger().info("camera_info usable again: processing resumed")
        self._camera_status = (1, "; ".join(out.warnings)) if out.warnings else (0, "ok")
        if out.warnings:
            self.stats.event("camera_info_warning", out.warnings[0])
            self._warn("camera_info_warning", "camera_info looks wrong (frame still processed): "
                       + "; ".join(out.warnings), 30.0)
        t_pub = time.perf_counter()
        if out.points is not None:
            self._last_cloud_stamp = stamp_ns(left)
        self.publish(left.header, out, v, linfo, wanted)
        t_done = time.perf_counter()
        stamp_age = (self.get_clock().now().nanoseconds - stamp_ns(left)) / 1e6
        stages = dict(out.timings_ms)
        stages["publish"] = 1e3 * (t_done - t_pub)
        stages["total"] = 1e3 * (t_done - t_recv)
        if t_paired is not None:
            stages["queue_wait"] = 1e3 * (t_recv - t_paired)
        stages["stamp_to_publish"] = stamp_age
        self.stats.processed_frame(stages)
        return out

    def _cloud_due(self, stamp: int, v: Dict[str, Any]) -> bool:
        """Whether this frame's points2 is published under cloud_rate (Hz, 0 = every frame).

        Spacing is measured on image stamps, so a bag replayed slower or faster keeps the
        recording's cloud rate. 10 % tolerance: camera stamps jitter, and a frame arriving
        a little early would otherwise push the next cloud one whole camera period later.
        A stamp going back (bag loop) starts over.
        """
        rate = v["cloud_rate"]
        last = self._last_cloud_stamp
        if rate <= 0 or last is None or stamp < last:
            return True
        return stamp - last >= 0.9e9 / rate

    def publish(self, header: Any, out: FrameOutput, v: Dict[str, Any], info: Optional[CameraInfo] = None,
                wanted: Optional[Dict[str, bool]] = None) -> None:
        """Publish one frame's outputs under ``header`` (the left image's); ``info`` is the
        left camera_info the frame was computed with (for depth/ and confidence/camera_info);
        ``wanted`` (``wanted_outputs``) leaves out what nobody subscribes to (None: all enabled)."""
        g = out.geometry
        if wanted is not None:
            v = {**v, **{f"publish_{k}": on for k, on in wanted.items()}}
        if v["publish_disparity"]:
            self.pub_disp.publish(messages.make_disparity(header, out.disparity, g.fx, g.baseline,
                                                          out.min_disparity, out.max_disparity, out.delta_d,
                                                          out.valid_window))
        if v["publish_depth"]:
            self.pub_depth.publish(messages.make_depth(header, out.depth, v["depth_format"]))
            if info is not None:
                self.pub_depth_info.publish(messages.camera_info_with_header(info, header))
        if v["publish_points"] and out.points is not None:
            self.pub_points.publish(messages.make_cloud(header, out.points, out.rgb8, v["cloud_organized"]))
        if v["publish_confidence"] and out.confidence is not None:
            self.pub_conf.publish(messages.make_image(header, out.confidence.astype("float32", copy=False), "32FC1"))
            if info is not None:
                self.pub_conf_info.publish(messages.camera_info_with_header(info, header))
        if v["publish_color"]:
            lo = max(out.min_disparity, 0.0)
            color = messages.colorize_disparity(out.disparity, out.valid, lo, out.max_disparity)
            self.pub_color.publish(messages.make_image(header, color, "bgr8"))

    # ----- parameters ----------------------------------------------------------------------
    def _reject(self, reason: str) -> SetParametersResult:
        self.stats.event("parameter_rejected", reason)
        self.get_logger().error(f"parameter change rejected: {reason}")
        return SetParametersResult(successful=False, reason=reason)

    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in SPECS}
        for name, value in changes.items():
            err = validate(name, value)
            if err:
                return self._reject(err)
        new = _coerce({**self.values, **changes})
        errors = validate_all(new)
        if errors:
            return self._reject("; ".join(errors))
        engine = self.engine
        if any(new[n] != self.values[n] for n in ENGINE_PARAMS if n in changes):
            try:
                engine = build_engine(new)
            except Exception as exc:  # noqa: BLE001 - any failure must leave the old model running
                text = str(exc) if isinstance(exc, (CheckpointError, EngineConfigError)) \
                    else f"{type(exc).__name__}: {exc}"
                return self._reject(f"{text}; the current model keeps running")
            self._note_device_fallback(engine, new)
            self.get_logger().info("switched to " + engine.describe())
        with self._lock:
            self.engine, self.values, self.options = engine, new, output_options(new)
        if any(n in changes for n in SYNC_PARAMS):
            self._setup_sync()
        if "input_timeout_warning" in changes:
            self._set_input_timer()
        if "diagnostics_period" in changes:
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(new["diagnostics_period"], self.publish_diagnostics)
        return SetParametersResult(successful=True)

    # ----- reporting -----------------------------------------------------------------------
    def _warn(self, key: str, text: str, period: float = 5.0, error: bool = False) -> None:
        """Log at most once per ``period`` seconds per kind of problem (every occurrence is
        counted in /diagnostics); a repeat says how many were not logged in between.

        The kind is ``key`` plus the text with its numbers masked: a new kind of problem is
        reported at once, the same one on every frame only once per period.
        """
        key = key + ":" + _DIGITS.sub("#", text.split("\n", 1)[0])
        if len(self._warned) > 256 and key not in self._warned:  # bound the memory of kinds
            self._warned.clear()
        now = time.monotonic()
        last, suppressed = self._warned.get(key, (-1e18, 0))
        if now - last < period:
            self._warned[key] = (last, suppressed + 1)
            return
        self._warned[key] = (now, 0)
        if suppressed:
            text += f" [{suppressed} more since the last report, counted in /diagnostics]"
        # Two call sites: rclpy refuses one call site logging at two severities.
        if error:
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def _camera_report(self) -> Tuple[int, str, Dict[str, Any]]:
        """(level 0/1/2, text, values) of the camera_info status: the geometry report of the
        latest camera_infos, their age against camera_info_timeout, and the last frame's
        finding when that is worse."""
        linfo, rinfo = self._infos["left"][0], self._infos["right"][0]
        level, text, values = camera_info_report(linfo, rinfo, self._image_size)
        timeout = self.values["camera_info_timeout"]
        now = time.monotonic()
        for side in ("left", "right"):
            msg, t = self._infos[side]
            if msg is not None:
                age = now - t
                values[f"age_s {side}"] = f"{age:.2f}"
                if timeout > 0 and age > timeout:
                    level, text = 2, f"{side}/camera_info is stale ({age:.1f} s old); " + text
        flevel, ftext = self._camera_status
        if flevel > level and linfo is not None:
            level, text = flevel, ftext
        return level, text, values

    def publish_diagnostics(self) -> None:
        try:
            arr = self._diagnostics.array(self.get_clock().now().to_msg(), self.get_fully_qualified_name(),
                                          self.engine, self.stats.snapshot(), self._camera_report(),
                                          str(self.values["device"]))
            self.pub_diag.publish(arr)
        except Exception as exc:  # noqa: BLE001 - reporting must never take the node down
            self._warn("diagnostics", f"/diagnostics not published: {type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        """Stop the worker thread (idempotent); the frame in progress finishes first."""
        worker = getattr(self, "_worker", None)
        if worker is None:
            return
        with self._slot_cv:
            self._running = False
            self._slot = None
            self._slot_cv.notify_all()
        worker.join(timeout=10.0)
        if worker.is_alive():  # pragma: no cover - a frame stuck for 10 s
            self.get_logger().error("inference thread did not stop within 10 s")

    def destroy_node(self) -> None:
        self.shutdown()
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """Console entry point ``stereonet_node``; exit code 2 on a configuration error.

    SIGINT and SIGTERM (rclpy's handlers) end the spin; the worker is joined and 0 returned.
    """
    from .node_main import own_arguments_exit
    code = own_arguments_exit(args)  # --help, or a stray argument outside --ros-args
    if code is not None:
        return code
    if _early_stop:  # stopped while still importing
        return 0
    try:
        rclpy.init(args=args)  # installs rclpy's SIGINT/SIGTERM handling from here on
    except Exception as exc:  # noqa: BLE001 - e.g. an unreadable --params-file
        print(f"[FATAL] [stereonet]: cannot start: bad command line or parameters file: "
              f"{type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
        return 2
    node = None
    try:
        if _early_stop:
            return 0
        node = StereoNetNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except StartupError:  # the constructor has logged the reason
        # Nothing was started, so nothing needs an orderly stop: leave at once with 2 and
        # skip the DDS participant teardown (CI once saw a failed start abort inside Fast
        # DDS's TCP transport, "local_endpoint: Bad file descriptor": SIGABRT instead of 2).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise  # a bug, not a stop request: keep the traceback
        # SIGINT/SIGTERM shut the context down while the node was being built; whatever
        # rcl call failed on the invalid context is the stop request itself. Exit 0.
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
