"""``stereonet_node``: rectified stereo in, disparity / depth / point cloud out (rclpy).

Wiring only: parameters (``params``), inputs (``node_inputs``), one frame's work
(``pipeline.infer_pair`` through the ``engine``, then ``pipeline.finish_pair``), outputs
(``node_outputs``), reporting (``diagnostics``). Threads: the executor thread runs
subscription callbacks, which only pair images and drop them in a one-slot mailbox; the
inference thread takes the newest pair and runs the network, so when inference is slower than
the camera the older pair is dropped (counted as 'overrun'): latency stays bounded, memory
flat. It hands each inferred frame to a publishing thread and goes on with the next pair, so
the numpy outputs (depth, cloud) and building and sending the messages overlap the next
frame's network instead of adding to the frame period. A new model (a runtime change of
checkpoint, device, backend, ...) warms up in a thread of its own while the old one serves.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

if __name__ == "__main__":  # python -m stereonet_ros.node: what the console script runs, which
    # installs its stop handling before this module's heavy imports (rclpy, torch: seconds)
    from stereonet_ros.node_main import main as _main
    sys.exit(_main())

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from .allocator import keep_large_allocations  # noqa: E402
from .camera_infos import CameraInfoCache  # noqa: E402
from .checkpoint import CheckpointError  # noqa: E402
from .diagnostics import DiagnosticsReport, fell_back_to_cpu, no_input_text  # noqa: E402
from .engine import EngineConfigError, EngineOutOfMemory, StereoEngine  # noqa: E402
from .engine_config import EngineConfig, default_threads  # noqa: E402
from .engine_switch import EngineSwitch  # noqa: E402
from .log_throttle import KindThrottle  # noqa: E402
from .newest_worker import NewestWorker  # noqa: E402
from .node_inputs import StereoInputs  # noqa: E402
from .node_outputs import OutputPublishers  # noqa: E402
from .params import (QOS_PREFIX, ROS_BUILTIN_PARAMETERS, SPECS, coerce,  # noqa: E402
                     unknown_parameter_errors, validate, validate_all)
from .pipeline import (FrameError, FrameOutput, InferredPair, OutputOptions, finish_pair,  # noqa: E402
                       infer_pair, uncompressed_pair)
from .stats import NodeStats  # noqa: E402
from .messages import header_ns, stamp_ns  # noqa: E402

SYNC_PARAMS = ("sync_mode", "sync_slop", "queue_size", "image_transport")
CALIBRATION_DROPS = ("bad_geometry", "camera_info_missing")


class StartupError(RuntimeError):
    """A configuration problem that prevents the node from starting (logged, exit code 2)."""


def build_engine(values: Dict[str, Any]) -> StereoEngine:
    """The node's engine: num_threads 0 is ``engine_config.default_threads()``."""
    config = EngineConfig.from_params(values)
    return dataclasses.replace(config, num_threads=config.num_threads or default_threads()).build()


@dataclasses.dataclass(frozen=True)
class _Computed:
    """One pair through the network, waiting for its numpy outputs and messages (perf_counter
    times, s)."""
    header: Any
    pair: InferredPair
    opts: OutputOptions         # what it was inferred for (``pipeline.finish_pair`` needs it)
    values: Dict[str, Any]      # the parameters it was computed with
    linfo: Any                  # left CameraInfo
    wanted: Dict[str, bool]     # which outputs to publish
    t_recv: float               # the inference thread took the pair
    t_paired: Optional[float]   # the pair was complete (None: process() called directly)
    t_computed: float           # ready to publish


class StereoNetNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        # Undeclared overrides stay undeclared (rclpy's defaults, spelt out because the
        # unknown-parameter check relies on them).
        kwargs.setdefault("allow_undeclared_parameters", False)
        kwargs.setdefault("automatically_declare_parameters_from_overrides", False)
        super().__init__("stereonet", **kwargs)
        try:
            self._configure()
        except StartupError as exc:
            # Logged before any DDS teardown: the reason must reach the log even if the
            # process then dies in the middleware.
            self.get_logger().fatal(f"cannot start: {exc}")
            self.destroy_node()
            raise

    def _configure(self) -> None:
        for name, spec in SPECS.items():
            # dynamic_typing: a value of the wrong ROS type reaches validate(), which names
            # the parameter and the expected type, instead of an rclpy traceback.
            try:
                self.declare_parameter(name, spec.default,
                                       ParameterDescriptor(description=spec.description, dynamic_typing=True))
            except ParameterException as exc:
                raise StartupError(f"parameter '{name}': {exc}") from exc
        self._refuse_unknown_parameters(qos=False)  # before the model loads: fail at once
        raw = {n: self.get_parameter(n).value for n in SPECS}
        errors = validate_all(raw)
        if errors:
            raise StartupError("invalid parameters: " + "; ".join(errors))
        self.stats = NodeStats()
        keep_large_allocations()  # a frame's MB-sized buffers reused, not re-faulted (allocator.py)
        try:
            self.switch = EngineSwitch(coerce(raw), build_engine, on_switched=self._switched,
                                       on_failed=self._switch_failed)
        except (CheckpointError, EngineConfigError) as exc:
            raise StartupError(str(exc)) from exc
        self._note_device_fallback(self.engine, self.values)
        self.get_logger().info(self.engine.describe())
        if self.engine.ckpt.random_weights:
            self.get_logger().warning("THE CHECKPOINT HOLDS RANDOMLY INITIALISED WEIGHTS: outputs are meaningless")
        self._last_stamp: Optional[int] = None
        self._image_size: Optional[Tuple[int, int]] = None    # (w, h) of the last pair
        self._last_pair_time = time.monotonic()  # start counts as the last pair (no-input warning)
        self._throttle = KindThrottle()
        self._diagnostics = DiagnosticsReport()
        self.cameras = CameraInfoCache(self.values["camera_info_timeout"])
        self.inputs = StereoInputs(self, self.stats, self.cameras, self._on_pair, self._on_lost)
        self.inputs.configure(self.values)
        self.outputs = OutputPublishers(self)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._refuse_unknown_parameters(qos=True)  # the qos_overrides the topics declared
        self._diag_timer = self.create_timer(self.values["diagnostics_period"], self.publish_diagnostics)
        self._input_timer: Optional[Any] = None
        self._set_input_timer()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        outputs = [p.topic_name for p in self.outputs.all() + [self.pub_diag]]
        self.get_logger().info(
            f"{self.get_fully_qualified_name()} ready: inputs {', '.join(self.inputs.resolved().values())}; "
            f"outputs {', '.join(outputs)}; model {self.engine.describe()}; device {self.engine.device} "
            f"{self.engine.precision_name}")
        self._publisher = NewestWorker(self._publish_work, on_replaced=lambda: None, name="stereonet-publish")
        self._worker = NewestWorker(self._work, on_replaced=lambda: self.stats.drop("overrun"),
                                    name="stereonet-inference")

    @property
    def engine(self) -> StereoEngine:
        return self.switch.engine

    @property
    def values(self) -> Dict[str, Any]:
        """Parameter values in effect (the engine ones: the running engine's)."""
        return self.switch.values

    @property
    def options(self) -> OutputOptions:
        return OutputOptions.from_params(self.values)

    def _refuse_unknown_parameters(self, qos: bool) -> None:
        """StartupError naming every override (command line, params file, constructor) that is
        no parameter of this node, with the closest valid name. ``qos`` False checks the node's
        own names, True the ``qos_overrides.*`` ones. rclpy has no public accessor for the
        overrides given to this node, hence ``_parameter_overrides``."""
        given = [n for n in self._parameter_overrides if n.startswith(QOS_PREFIX) == qos]
        known = set(SPECS) | set(ROS_BUILTIN_PARAMETERS) | set(self.list_parameters([], 0).names)
        errors = unknown_parameter_errors(given, known)
        if errors:
            raise StartupError("; ".join(errors))

    def _set_input_timer(self) -> None:
        """(Re)start the no-input check at the period of input_timeout_warning (0 = none)."""
        if self._input_timer is not None:
            self.destroy_timer(self._input_timer)
            self._input_timer = None
        if self.values["input_timeout_warning"] > 0:
            self._input_timer = self.create_timer(self.values["input_timeout_warning"], self._check_input)

    def _check_input(self) -> None:
        idle = time.monotonic() - self._last_pair_time
        if idle >= self.values["input_timeout_warning"] > 0:
            self.get_logger().warning(no_input_text(idle, self.inputs.resolved(), self.stats.snapshot()["received"],
                                                    self.values["sync_mode"], self.values["sync_slop"]))

    # ----- input ---------------------------------------------------------------------------
    def _on_lost(self, topic: str, n: int) -> None:
        self._warn("transport_lost", f"{n} image(s) on {topic} lost in DDS transport before reaching the "
                   "node; for large images use shared memory / FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA "
                   "(README: Transport for big images)")

    def _on_pair(self, left: Image, right: Image) -> None:
        self._last_pair_time = time.monotonic()
        t = stamp_ns(left)
        if self._last_stamp is not None and t < self._last_stamp:
            back = (self._last_stamp - t) / 1e9
            self.stats.event("stamp_backwards", f"stamp went back by {back:.3f} s")
            self._warn("stamp_backwards", f"stereo stamps went backwards by {back:.3f} s (bag loop or clock "
                       "jump); continuing with the new timeline")
        self._last_stamp = t
        self._worker.put((left, right))

    # ----- processing ----------------------------------------------------------------------
    def _work(self, pair: Tuple[Image, Image], t_paired: float) -> None:
        """The inference thread: compute a pair, hand it to the publishing thread and go on
        with the next pair while its messages are built and sent (two stages in flight, so a
        frame's publishing costs no network time; the hand-off waits, it never drops)."""
        try:
            frame = self._compute(*pair, t_paired)
        except Exception as exc:  # never let one frame kill the worker
            self._unexpected("inference_error", exc)
            return
        if frame is not None:
            self._publisher.put_waiting(frame)

    def _publish_work(self, frame: "_Computed", t_put: float) -> None:
        try:
            self._publish(frame)
        except Exception as exc:  # never let one frame kill the publishing thread
            self._unexpected("publish_error", exc)

    def _unexpected(self, reason: str, exc: Exception) -> None:
        if not self.context.ok():
            return  # SIGINT/SIGTERM shut the context down mid-frame: stop quietly
        self.stats.drop(reason, f"{type(exc).__name__}: {exc}")
        self._warn(reason, f"frame dropped, unexpected error: {type(exc).__name__}: {exc}\n"
                   + traceback.format_exc(limit=3))

    def process(self, left: Image, right: Image, t_paired: Optional[float] = None) -> Optional[FrameOutput]:
        """Process one pair and publish its outputs, both in the calling thread; a bad pair is
        counted and reported.

        Returns None for a dropped pair and for one left unprocessed because no output has a
        subscriber (counted as the event 'no_subscriber')."""
        frame = self._compute(left, right, t_paired)
        if frame is None:
            return None
        return self._publish(frame)

    def _compute(self, left: Image, right: Image, t_paired: Optional[float]) -> Optional["_Computed"]:
        """Decode and infer one pair (None: dropped or not wanted, counted)."""
        t_recv = time.perf_counter()
        engine, v = self.switch.current()
        opts = OutputOptions.from_params(v)
        wanted = self.outputs.wanted(v, stamp_ns(left))
        if not any(wanted.values()):  # nobody listens, or only to points2 and it is not due
            if self.outputs.idle:
                self.stats.event("no_subscriber", f"pair {stamp_ns(left)} not processed: no output has a subscriber")
            return None
        # Only what is published is computed: the cloud (also under cloud_rate) and the confidence.
        opts = dataclasses.replace(opts, want_points=opts.want_points and wanted["points"],
                                   want_confidence=opts.want_confidence and wanted["confidence"])
        try:
            # A CompressedImage pair is decoded here, in the inference thread: the executor
            # stays free to receive, and an overrun drops a pair before its decode.
            left, right = uncompressed_pair(left, right, v["max_image_pixels"])
            self._image_size = (int(left.width), int(left.height))
            linfo, rinfo = self.cameras.pair()
            pair = infer_pair(engine, left, right, linfo, rinfo, opts, v["max_image_pixels"])
        except (FrameError, EngineOutOfMemory) as exc:
            reason = exc.reason if isinstance(exc, FrameError) else "out_of_memory"
            self.stats.drop(reason, str(exc))
            if reason in CALIBRATION_DROPS:
                self.cameras.frame_failed(str(exc))
            hint = "; lower input_scale or max_disparity if this repeats" if reason == "out_of_memory" else ""
            # A broken calibration repeats on every frame: log it once, then rarely.
            self._warn(reason, f"frame dropped ({reason}): {exc}{hint}", 30.0 if reason in CALIBRATION_DROPS else 5.0,
                       error=reason == "bad_geometry")
            return None
        if self.cameras.frame_done(pair.warnings):
            self.get_logger().info("camera_info usable again: processing resumed")
        if pair.warnings:
            self.stats.event("camera_info_warning", pair.warnings[0])
            self._warn("camera_info_warning", "camera_info looks wrong (frame still processed): "
                       + "; ".join(pair.warnings), 30.0)
        return _Computed(left.header, pair, opts, v, linfo, wanted, t_recv, t_paired, time.perf_counter())

    def _publish(self, frame: "_Computed") -> FrameOutput:
        """Build one computed frame's arrays and messages, publish them and record its stage
        times (ms): ``handoff`` its wait for the publishing thread, ``postprocess_numpy`` the
        arrays (depth, cloud), ``publish`` the building and sending of the messages, ``total``
        from the pair's start to its last message."""
        t_start = time.perf_counter()
        out = finish_pair(frame.pair, frame.opts)
        t_pub = time.perf_counter()
        self.outputs.publish(frame.header, out, frame.values, frame.linfo, frame.wanted)
        t_done = time.perf_counter()
        stages = dict(out.timings_ms, publish=1e3 * (t_done - t_pub), handoff=1e3 * (t_start - frame.t_computed),
                      total=1e3 * (t_done - frame.t_recv),
                      stamp_to_publish=(self.get_clock().now().nanoseconds - header_ns(frame.header)) / 1e6)
        if frame.t_paired is not None:
            stages["queue_wait"] = 1e3 * (frame.t_recv - frame.t_paired)
        self.stats.processed_frame(stages)
        return out

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
        new = coerce({**self.switch.requested_values(), **changes})
        errors = validate_all(new)
        if errors:
            return self._reject("; ".join(errors))
        size = None if self._image_size is None else (self._image_size[1], self._image_size[0])
        try:  # a new engine is built here (cheap: a bad value is refused), warmed up off this thread
            self.switch.request(new, size, with_right=new["lr_check"])
        except Exception as exc:  # noqa: BLE001 - any failure must leave the old model running
            text = str(exc) if isinstance(exc, (CheckpointError, EngineConfigError)) else f"{type(exc).__name__}: {exc}"
            return self._reject(f"{text}; the current model keeps running")
        self.cameras.timeout = new["camera_info_timeout"]
        if any(n in changes for n in SYNC_PARAMS):
            self.inputs.configure(new)
        if "input_timeout_warning" in changes:
            self._set_input_timer()
        if "diagnostics_period" in changes:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(new["diagnostics_period"], self.publish_diagnostics)
        return SetParametersResult(successful=True)

    def _switched(self, engine: StereoEngine, values: Dict[str, Any]) -> None:
        self._note_device_fallback(engine, values)
        self.get_logger().info("switched to " + engine.describe())

    def _switch_failed(self, text: str, restore: Dict[str, Any]) -> None:
        self.stats.event("engine_swap_failed", text)
        self.get_logger().error(f"new model failed to start ({text}); the current model keeps running "
                                "and its parameters are restored")
        # On the executor, after the parameter callback that started this warm-up has returned:
        # rclpy stores a change's values only then, and would overwrite an earlier restore.
        def restore_once() -> None:
            self.destroy_timer(timer)
            self.set_parameters([Parameter(n, value=v) for n, v in restore.items()])
        timer = self.create_timer(0.001, restore_once)

    def _note_device_fallback(self, engine: StereoEngine, values: Dict[str, Any]) -> None:
        if fell_back_to_cpu(values["device"], engine):
            text = f"device '{values['device']}' requested but CUDA is unavailable: running on the CPU"
            self.stats.event("device_fallback", text)
            self.get_logger().warning(text + " (set strict_device to fail instead)")

    # ----- reporting -----------------------------------------------------------------------
    def _warn(self, key: str, text: str, period: float = 5.0, error: bool = False) -> None:
        """Log once per ``period`` seconds per kind of problem (``log_throttle``)."""
        line = self._throttle.admit(key, text, period)
        if line is None:
            return
        if error:  # two call sites: rclpy refuses one call site logging at two severities
            self.get_logger().error(line)
        else:
            self.get_logger().warning(line)

    def publish_diagnostics(self) -> None:
        try:
            self.pub_diag.publish(self._diagnostics.array(
                self.get_clock().now().to_msg(), self.get_fully_qualified_name(), self.engine,
                self.stats.snapshot(), self.cameras.report(self._image_size), str(self.values["device"])))
        except Exception as exc:  # noqa: BLE001 - reporting must never take the node down
            self._warn("diagnostics", f"/diagnostics not published: {type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        """Stop the worker threads (idempotent); the frame in progress finishes first."""
        for attr, what in (("_worker", "inference"), ("_publisher", "publishing")):
            worker = getattr(self, attr, None)
            if worker is not None and not worker.stop(10.0):  # pragma: no cover - a frame stuck for 10 s
                self.get_logger().error(f"{what} thread did not stop within 10 s")
        switch = getattr(self, "switch", None)
        if switch is not None and not switch.close(10.0):  # pragma: no cover - an export stuck for 10 s
            self.get_logger().error("a new model's warm-up did not end within 10 s")

    def destroy_node(self) -> None:
        self.shutdown()
        super().destroy_node()

