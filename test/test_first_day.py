"""What a ROS 2 user meets on the first day (issue 11), with the real node and real rclpy.

``--help``; unknown parameter names; the start-up line with the resolved topics; the
warning while no pair arrives; /diagnostics names per node; depth/ and confidence/
camera_info and 16-bit depth; cloud_rate. Nothing of ROS is mocked: the node runs in this
process (or as its console script) and is observed through topics and /rosout.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import time
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
from rclpy.parameter import Parameter

from helpers import Collector, Spinner, camera_infos, image_msg, shifted_pair, to_encoding, wait_for
from robust_helpers import PYTHON, ROOT, DiagReader, RosoutReader, subscribed_input_publishers
from stereonet_ros.params import SPECS

W, H, FX, BASELINE = 96, 64, 200.0, 0.1
WARN = 30  # rcl_interfaces/Log.WARN
_ids = itertools.count()


def _start(ros: Any, ckpt: Any, ns: str, cli_args: Optional[List[str]] = None, **params: Any):
    """The node in ``ns`` with a tester node (collector, /rosout reader) in the same namespace.

    The /rosout reader exists before the node, so its start-up lines are not missed."""
    from stereonet_ros.node import StereoNetNode
    test = ros.create_node(f"first_day_tester{next(_ids)}", namespace=ns)
    log = RosoutReader(test, logger_suffix=f"{ns.strip('/').replace('/', '.')}.stereonet")
    col = Collector(test, ns)
    over = [Parameter("checkpoint", value=str(ckpt)), Parameter("diagnostics_period", value=0.2)]
    over += [Parameter(k, value=v) for k, v in params.items()]
    node = StereoNetNode(namespace=ns, parameter_overrides=over, cli_args=cli_args)
    spin = Spinner(node, test)
    return node, test, log, col, spin


def _stop(node: Any, test: Any, spin: Spinner) -> None:
    spin.close()
    node.destroy_node()
    test.destroy_node()


def _send_pair(pubs: Dict[str, Any], stamp: int, info_stamp: Optional[int] = None, seed: int = 3) -> None:
    left, right = shifted_pair(H, W, 6, seed=seed)
    li, ri = camera_infos(W, H, FX, BASELINE, stamp_ns=stamp if info_stamp is None else info_stamp)
    pubs["left/camera_info"].publish(li)
    pubs["right/camera_info"].publish(ri)
    time.sleep(0.02)  # camera_info first, so the pair is not 'camera_info_missing'
    pubs["left/image_rect"].publish(image_msg(to_encoding(left, "rgb8"), "rgb8", stamp))
    pubs["right/image_rect"].publish(image_msg(to_encoding(right, "rgb8"), "rgb8", stamp, "right_optical"))


def _stamps(col: Collector, topic: str) -> List[int]:
    with col.lock:
        return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in col.msgs[topic]]


def _run_module(args: List[str], code: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    cmd = [PYTHON, "-c", code, *args] if code else [PYTHON, "-m", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(ROOT), env=env)


# ----- item 1: --help, stray arguments, unknown parameters ---------------------------------
def test_help_prints_every_parameter_and_exits_0_without_starting_ros():
    # What the console script runs, asked in the same process whether rclpy was ever loaded.
    probe = ("import sys; from stereonet_ros import node_main; code = node_main.main(sys.argv); "
             "print('RCLPY LOADED' if 'rclpy' in sys.modules else 'NO RCLPY'); sys.exit(code)")
    for flag in ("--help", "-h"):
        r = _run_module([flag], code=probe)
        assert r.returncode == 0, r.stderr
        assert r.stdout.rstrip().endswith("NO RCLPY"), r.stdout[-300:]
        for name, spec in SPECS.items():
            assert f"  {name} ({spec.type_name}, default" in r.stdout, name
            assert spec.description.split()[0] in r.stdout, name
        assert "valid: 32FC1 | 16UC1" in r.stdout and "--ros-args" in r.stdout
    # `python -m stereonet_ros.node --help` and `--help` after ROS arguments behave the same
    r = _run_module(["stereonet_ros.node", "--ros-args", "-p", "refiners:=1", "--", "--help"])
    assert r.returncode == 0 and "  refiners (int, default -1; valid: integer in [-1, 16])" in r.stdout, r.stderr


def test_a_stray_argument_outside_ros_args_is_a_startup_error():
    r = _run_module(["stereonet_ros.node_main", "-p", "refiners:=1"])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unknown argument(s) -p refiners:=1" in r.stderr and "--ros-args" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_name_on_the_command_line_is_refused_in_process(ros, tiny_checkpoint):
    """``--ros-args -p refiner:=1`` through the node's own command-line arguments."""
    from stereonet_ros.node import StartupError, StereoNetNode
    with pytest.raises(StartupError) as info:
        StereoNetNode(namespace="/fd_unknown_cli", cli_args=["--ros-args", "-p", f"checkpoint:={tiny_checkpoint}",
                                                             "-p", "refiner:=1", "-p", "lr_chek:=true"])
    text = str(info.value)
    assert "unknown parameter 'refiner': did you mean 'refiners'?" in text
    assert "unknown parameter 'lr_chek': did you mean 'lr_check'?" in text


def test_known_qos_override_and_use_sim_time_are_accepted_and_stay_on_their_topic(ros, tiny_checkpoint):
    """rclpy's own names are no 'unknown parameter': QoS overrides of a real topic, use_sim_time.

    An override changes its own topic only: rclpy writes it into the profile object it is
    given, which used to be the shared sensor-data profile of every input of every node."""
    ns = "/fd_qos_ok"
    qos = f"qos_overrides.{ns}/left/camera_info.subscription.reliability"
    node, test, log, col, spin = _start(ros, tiny_checkpoint, ns, **{qos: "reliable", "use_sim_time": False})
    try:
        assert node.get_parameter(qos).value == "reliable"
        left_info, right_info = node.inputs.info_subs
        assert left_info.qos_profile.reliability.name == "RELIABLE"
        others = [right_info, *node.inputs.image_subs]
        assert [s.qos_profile.reliability.name for s in others] == ["BEST_EFFORT"] * 3
    finally:
        _stop(node, test, spin)
    later = _start(ros, tiny_checkpoint, "/fd_qos_later")   # a node created after it in this process
    try:
        subs = [*later[0].inputs.info_subs, *later[0].inputs.image_subs]
        assert [s.qos_profile.reliability.name for s in subs] == ["BEST_EFFORT"] * 4
    finally:
        _stop(later[0], later[1], later[4])


# ----- item 2: start-up line, no-input warning ------------------------------------------------
def test_startup_line_names_resolved_topics_model_and_device(ros, tiny_checkpoint):
    ns = "/fd_line"
    node, test, log, col, spin = _start(ros, tiny_checkpoint, ns,
                                        cli_args=["--ros-args", "-r", "left/image_rect:=/cam/left/image_color_rect",
                                                  "-r", "depth:=depth_registered"])
    try:
        assert log.wait(" ready: inputs ", 10), [m.msg for m in log.lines]
        (line,) = log.matching(" ready: inputs ")
        assert line.startswith(f"{ns}/stereonet ready")
        assert "inputs /cam/left/image_color_rect, /fd_line/right/image_rect, /fd_line/left/camera_info, " \
               "/fd_line/right/camera_info;" in line
        for out in ("/fd_line/disparity", "/fd_line/depth_registered", "/fd_line/depth/camera_info",
                    "/fd_line/points2", "/fd_line/confidence", "/fd_line/confidence/camera_info", "/diagnostics"):
            assert out in line, (out, line)
        assert f"model {node.engine.describe()}" in line and line.endswith(f"device cpu {node.engine.precision_name}")
    finally:
        _stop(node, test, spin)


def test_no_input_warning_names_the_topics_never_received_and_stops_when_pairs_flow(ros, tiny_checkpoint):
    ns = "/fd_quiet"
    node, test, log, col, spin = _start(ros, tiny_checkpoint, ns, input_timeout_warning=1.0)
    try:
        pubs = subscribed_input_publishers(test, ns)
        left, _ = shifted_pair(H, W, 6, seed=1)
        li, _ = camera_infos(W, H, FX, BASELINE)
        pubs["left/camera_info"].publish(li)
        pubs["left/image_rect"].publish(image_msg(to_encoding(left, "rgb8"), "rgb8", 10**9))
        want = f"never received: {ns}/right/image_rect, {ns}/right/camera_info ("
        assert log.wait(want, 10, WARN), [m.msg for m in log.lines][-3:]
        line = log.matching(want)[0]
        assert line.startswith(f"no stereo pair for ") and f"on {ns}/left/image_rect + {ns}/right/image_rect" in line
        # throttled: once per input_timeout_warning (1 s), not on every check or message
        n0 = len(log.matching("no stereo pair for"))
        time.sleep(3.2)
        repeats = len(log.matching("no stereo pair for")) - n0
        assert 2 <= repeats <= 4, repeats
        # pairs every 0.2 s: no warning from the first output on (plus one check period of slack)
        stamp = 2 * 10**9
        _send_pair(pubs, stamp)
        assert wait_for(lambda: col.count("disparity") >= 1, 20)
        n1 = len(log.matching("no stereo pair for"))
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            stamp += 2 * 10**8
            _send_pair(pubs, stamp)
            time.sleep(0.2)
        assert len(log.matching("no stereo pair for")) - n1 <= 1
        assert col.count("disparity") >= 5
        n2 = len(log.matching("no stereo pair for"))
        time.sleep(1.0)
        assert len(log.matching("no stereo pair for")) == n2, "no warning while pairs flow"
        # the camera stops: every input has been seen, so the warning says so
        assert log.wait("every input has been received, but no left/right images paired lately", 10, WARN)
    finally:
        _stop(node, test, spin)


# ----- item 4: /diagnostics names --------------------------------------------------------------
def test_two_nodes_in_two_namespaces_keep_their_own_diagnostics(ros, tiny_checkpoint):
    a = _start(ros, tiny_checkpoint, "/fd_diag_a")
    b = _start(ros, tiny_checkpoint, "/fd_diag_b")
    diag_a, diag_b = DiagReader(a[1]), DiagReader(b[1])
    try:
        assert diag_a.node_fqn == "/fd_diag_a/stereonet" and diag_b.node_fqn == "/fd_diag_b/stereonet"
        pubs = subscribed_input_publishers(a[1], "/fd_diag_a")
        stamp = 5 * 10**9
        while not a[3].count("disparity") and stamp < 5 * 10**9 + 20 * 10**8:  # re-sent until discovered
            _send_pair(pubs, stamp)
            wait_for(lambda: a[3].count("disparity") >= 1, 1.0)
            stamp += 10**8
        assert a[3].count("disparity") >= 1
        n = a[3].count("disparity")
        assert diag_a.wait_value("processed", lambda v: int(v) == n)
        assert diag_b.wait_value("processed", lambda v: v == "0"), diag_b.values()
        for part in ("pipeline", "camera_info", "device"):
            assert diag_a.status(part).name == f"/fd_diag_a/stereonet: {part}"
            assert diag_b.status(part).name == f"/fd_diag_b/stereonet: {part}"
        assert diag_a.level("camera_info") == 0 and diag_b.level("camera_info") == 2  # b saw none
    finally:
        _stop(a[0], a[1], a[4])
        _stop(b[0], b[1], b[4])


# ----- item 5: depth/ and confidence/camera_info, 16UC1 depth -----------------------------------
def test_16bit_depth_and_camera_infos_with_the_image_header(ros, tiny_checkpoint):
    ns = "/fd_depth16"
    node, test, log, col, spin = _start(ros, tiny_checkpoint, ns, depth_format="16UC1")
    try:
        pubs = subscribed_input_publishers(test, ns)
        stamp = 7 * 10**9
        # the camera_info is older than the images (drivers send it on its own): the copies
        # carry the image's stamp, so they pair with depth/confidence by exact stamp
        _send_pair(pubs, stamp, info_stamp=stamp - 5_000_000)
        outs = ("disparity", "depth", "depth/camera_info", "confidence", "confidence/camera_info")
        assert wait_for(lambda: all(col.count(t) >= 1 for t in outs), 20)
        dmsg, depth = col.latest("disparity"), col.latest("depth")
        assert depth.encoding == "16UC1" and depth.step == 2 * W
        mm = np.frombuffer(depth.data, np.uint16).reshape(H, W)
        d = np.frombuffer(dmsg.image.data, np.float32).reshape(H, W)
        valid = d >= dmsg.min_disparity
        assert valid.any()
        with np.errstate(divide="ignore"):
            z_mm = FX * BASELINE / d.astype(np.float64) * 1000.0
        ok = valid & (z_mm < 65535.5)
        assert ok.any()
        np.testing.assert_allclose(mm[ok], np.rint(z_mm[ok]), atol=1)  # atol: float32 rounding of Z
        assert np.all(mm[~ok] == 0)  # invalid and beyond 65.535 m
        sent, _ = camera_infos(W, H, FX, BASELINE)
        for t in ("depth/camera_info", "confidence/camera_info"):
            info = col.latest(t)
            assert info.header.stamp.sec * 10**9 + info.header.stamp.nanosec == stamp
            assert info.header == depth.header == col.latest("confidence").header
            np.testing.assert_array_equal(info.p, sent.p)
            assert (info.width, info.height, info.distortion_model) == (W, H, "plumb_bob")
    finally:
        _stop(node, test, spin)


# ----- cloud_rate ------------------------------------------------------------------------------
def test_cloud_rate_limits_points2_by_image_stamp(ros, tiny_checkpoint):
    ns = "/fd_cloud"
    node, test, log, col, spin = _start(ros, tiny_checkpoint, ns, cloud_rate=2.0)
    try:
        pubs = subscribed_input_publishers(test, ns)
        t0 = 100 * 10**9
        sent = [t0 + k * 10**8 for k in range(11)] + [t0 - 10**9]   # 0.0 .. 1.0 s, then a bag loop
        for s in sent:  # one at a time: none is dropped as an overrun
            for _ in range(10):
                _send_pair(pubs, s)
                if wait_for(lambda: s in _stamps(col, "disparity"), 2.0):
                    break
            assert s in _stamps(col, "disparity"), s
        assert wait_for(lambda: col.count("points2") >= 4, 5)
        time.sleep(0.3)
        # 2 Hz: clouds 0.5 s apart by stamp; disparity and depth of every frame
        assert _stamps(col, "points2") == [t0, t0 + 5 * 10**8, t0 + 10**9, t0 - 10**9]
        assert sorted(set(_stamps(col, "depth"))) == sorted(sent)
        assert node.stats.total_drops == 0
    finally:
        _stop(node, test, spin)


# ----- item 8: outputs computed and published only when subscribed ------------------------------
def test_outputs_are_computed_only_for_subscribers(ros, tiny_checkpoint):
    from sensor_msgs.msg import Image, PointCloud2
    from stereo_msgs.msg import DisparityImage
    from stereonet_ros.node import StereoNetNode
    ns = "/fd_lazy"
    node = StereoNetNode(namespace=ns, parameter_overrides=[
        Parameter("checkpoint", value=str(tiny_checkpoint)), Parameter("diagnostics_period", value=0.2)])
    test = ros.create_node("fd_lazy_tester", namespace=ns)
    diag = DiagReader(test)   # /diagnostics is no output: it does not make the network run
    log = RosoutReader(test, logger_suffix="fd_lazy.stereonet")
    spin = Spinner(node, test)
    try:
        pubs = subscribed_input_publishers(test, ns)
        stamp = 3 * 10**9
        _send_pair(pubs, stamp)
        assert diag.wait_value("event no_subscriber", lambda v: int(v) >= 1), diag.values()
        assert diag.values()["processed"] == "0" and diag.values()["dropped total"] == "0"
        assert log.wait("no output has a subscriber", 5)
        # the real pair, processed by hand: with only 'disparity' subscribed there is no
        # cloud and no confidence computed
        left, right = shifted_pair(H, W, 6, seed=3)
        lmsg = image_msg(to_encoding(left, "rgb8"), "rgb8", stamp)
        rmsg = image_msg(to_encoding(right, "rgb8"), "rgb8", stamp, "right_optical")
        got: Dict[str, List[Any]] = {"disparity": [], "points2": [], "confidence": []}
        test.create_subscription(DisparityImage, f"{ns}/disparity", got["disparity"].append, 10)
        assert wait_for(lambda: node.outputs.disp.get_subscription_count() == 1, 10)
        out = node.process(lmsg, rmsg)
        assert out is not None and out.points is None and out.confidence is None
        assert log.wait("an output has a subscriber: processing pairs", 5)
        test.create_subscription(PointCloud2, f"{ns}/points2", got["points2"].append, 10)
        test.create_subscription(Image, f"{ns}/confidence", got["confidence"].append, 10)
        assert wait_for(lambda: node.outputs.points.get_subscription_count() == 1
                        and node.outputs.conf.get_subscription_count() == 1, 10)
        out = node.process(lmsg, rmsg)
        assert out is not None and out.points is not None and out.confidence is not None
        assert wait_for(lambda: len(got["points2"]) == 1 and len(got["confidence"]) == 1, 10)
        assert len(got["disparity"]) == 2
    finally:
        spin.close()
        node.destroy_node()
        test.destroy_node()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_node_runs_a_graph_backend_with_the_torch_backends_output(ros, tiny_checkpoint, private_onnx_cache, backend):
    """backend:=onnxruntime / openvino through the node parameter: the node publishes what the
    torch engine (fp32, the graph's precision) computes for the same pair."""
    pytest.importorskip(backend)
    from stereonet_ros.engine import StereoEngine
    ns = f"/fd_backend_{backend}"
    node, test, log, col, spin = _start(ros, tiny_checkpoint, ns, backend=backend, precision="fp32")
    try:
        assert f"via {backend}" in node.engine.describe()
        pubs = subscribed_input_publishers(test, ns)
        _send_pair(pubs, 10**9)
        assert wait_for(lambda: col.count("disparity") >= 1, 60), node.stats.snapshot()
        msg = col.msgs["disparity"][0]
        got = np.frombuffer(msg.image.data, np.float32).reshape(H, W)
        left, right = shifted_pair(H, W, 6, seed=3)
        ref = StereoEngine(str(tiny_checkpoint), device="cpu", precision="fp32").infer(
            to_encoding(left, "rgb8"), to_encoding(right, "rgb8")).disparity
        valid = got >= msg.min_disparity
        assert valid.mean() > 0.5
        np.testing.assert_allclose(got[valid], ref[valid], atol=1e-3)
    finally:
        _stop(node, test, spin)
