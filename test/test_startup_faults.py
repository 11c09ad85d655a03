"""Start-up and runtime configuration faults of the real node process.

Each bad checkpoint / parameter value must end the process with exit code 2 and one fatal
line that names the problem, never a Python traceback. At runtime a bad value is rejected
through the real SetParameters service and the node keeps producing output with the old
model. SIGINT and SIGTERM end the node cleanly (exit 0, no traceback).
"""
from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Dict, Tuple

import pytest

from helpers import Spinner, shifted_pair, wait_for
from robust_helpers import (PARAMS_FILE, DiagReader, NodeProcess, good_images, good_infos, input_publishers,
                            publish_images, publish_infos, wait_node_subscribed)

W, H, FX, BASELINE = 96, 64, 200.0, 0.1


def _bad_checkpoints(tiny: Path, d: Path) -> Dict[str, Tuple[Path, str]]:
    """name -> (file, text the fatal message must contain)."""
    import torch
    from stereonet_ros.checkpoint import META_KEY, Normalization, metadata
    from stereonet_ros.model import StereoNet, StereoNetConfig
    data = tiny.read_bytes()
    out: Dict[str, Tuple[Path, str]] = {"missing": (d / "missing.pt", "does not exist")}
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    out["truncated"] = (d / "truncated.pt", "cannot be read as a torch file")
    (d / "empty.pt").write_bytes(b"")
    out["empty"] = (d / "empty.pt", "is empty")
    (d / "text.pt").write_text("this is not a checkpoint\n")
    out["text_file"] = (d / "text.pt", "cannot be read as a torch file")
    torch.save(torch.zeros(3), d / "tensor.pt")
    out["tensor_file"] = (d / "tensor.pt", "holds a Tensor, not a dict")
    small = StereoNet(StereoNetConfig(in_channels=3, k=3, max_disparity=64, features=8, refinement_levels=1))
    torch.save({"state_dict": small.state_dict()}, d / "no_meta.pt")
    out["no_metadata"] = (d / "no_meta.pt", "has no 'stereonet' metadata")
    # Wrong architecture: the metadata promises 16 features, the weights have 8.
    cfg16 = StereoNetConfig(in_channels=3, k=3, max_disparity=64, features=16, refinement_levels=1)
    torch.save({META_KEY: metadata(cfg16, Normalization()), "state_dict": small.state_dict()}, d / "arch.pt")
    out["wrong_architecture"] = (d / "arch.pt", "weights do not match its architecture")
    # Wrong channels: grey (1-channel) metadata over RGB weights, and an impossible count.
    cfg1 = StereoNetConfig(in_channels=1, k=3, max_disparity=64, features=8, refinement_levels=1)
    torch.save({META_KEY: metadata(cfg1, Normalization([0.5], [0.25])), "state_dict": small.state_dict()},
               d / "channels.pt")
    out["wrong_channels"] = (d / "channels.pt", "weights do not match its architecture")
    meta2 = metadata(small.config, Normalization())
    meta2["config"]["in_channels"] = 2
    torch.save({META_KEY: meta2, "state_dict": small.state_dict()}, d / "two_channels.pt")
    out["two_channels"] = (d / "two_channels.pt", "in_channels must be 1 or 3")
    return out


BAD_PARAMS: Dict[str, Tuple[Dict[str, object], str]] = {
    "input_scale_above_2": ({"input_scale": 3.0}, "parameter 'input_scale' = 3.0 must be a finite number in [0, 2]"),
    "unknown_device": ({"device": "tpu"}, "parameter 'device' = 'tpu' must be"),
    "unknown_sync_mode": ({"sync_mode": "nearest"}, "parameter 'sync_mode' = 'nearest' must be one of"),
    "zero_queue": ({"queue_size": 0}, "parameter 'queue_size' = 0"),
    "negative_max_disparity": ({"max_disparity": -5.0}, "parameter 'max_disparity' = -5.0"),
    "depth_range_inverted": ({"min_depth": 5.0, "max_depth": 1.0}, "max_depth 1.0 must be greater than min_depth 5.0"),
    "fp16_on_cpu": ({"device": "cpu", "precision": "fp16"}, "precision 'fp16' needs a CUDA device"),
    "wrong_type": ({"queue_size": "many"}, "parameter 'queue_size' = 'many' must be an integer"),
    # A misspelt name is not silently ignored (the node would run with the default).
    "unknown_name": ({"refiner": 1}, "unknown parameter 'refiner': did you mean 'refiners'?"),
    "unknown_qos_policy": ({"qos_overrides./startup_param_unknown_qos_policy/left/image_rect.subscription.relability":
                            "reliable"}, "did you mean 'qos_overrides./startup_param_unknown_qos_policy/left/"
                                         "image_rect.subscription.reliability'?"),
}
#: The cases also run as a real process (each costs a torch import, so not all of them).
PROCESS_CASES = ("ckpt_missing", "ckpt_truncated", "ckpt_text_file", "ckpt_wrong_architecture",
                 "ckpt_wrong_channels", "param_input_scale_above_2", "param_wrong_type", "param_unknown_name")
#: A misspelt key in a params file (a copy of config/stereonet.yaml with one more line).
TYPO_IN_FILE = ("    max_disparty: 64.0\n", "unknown parameter 'max_disparty': did you mean 'max_disparity'?")


def _all_cases(tiny: Path, d: Path) -> Dict[str, Tuple[Dict[str, object], str]]:
    cases = {"ckpt_" + n: ({"checkpoint": str(p)}, t) for n, (p, t) in _bad_checkpoints(tiny, d).items()}
    cases.update({"param_" + n: ({"checkpoint": str(tiny), **p}, t) for n, (p, t) in BAD_PARAMS.items()})
    import torch
    if not torch.cuda.is_available():
        cases["param_strict_device_without_cuda"] = (
            {"checkpoint": str(tiny), "device": "cuda", "strict_device": True},
            "CUDA is not available (strict_device is set)")
    return cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory, tiny_checkpoint):
    return _all_cases(tiny_checkpoint, tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def process_runs(tmp_path_factory, cases, ros_domain):
    """Start the process cases at once (they overlap on the cores) -> (exit code, output)."""
    d = tmp_path_factory.mktemp("logs")
    procs = {}
    # Each process on a DDS domain of its own (201.., outside the suite's 30..200): these
    # processes start and exit together, and CI once saw one abort inside Fast DDS's TCP
    # transport while peers came and went. They need no peers to fail their start.
    for i, name in enumerate(PROCESS_CASES):
        # Without the params file for the wrong type: rcl keeps the file's value over a
        # differently typed -p, so the bad value would never reach the node.
        kw = {"params_file": None} if name == "param_wrong_type" else {}
        procs[name] = NodeProcess(d / f"{name}.log", cases[name][0], env={"ROS_DOMAIN_ID": str(201 + i)}, **kw)
    procs["params_file_missing"] = NodeProcess(d / "pf.log", {}, params_file=str(d / "nope.yaml"),
                                               env={"ROS_DOMAIN_ID": str(201 + len(PROCESS_CASES))})
    typo = d / "typo.yaml"
    typo.write_text(Path(PARAMS_FILE).read_text() + TYPO_IN_FILE[0])
    # Refused before the model would load: the file's checkpoint '' (bundled model) is never read.
    procs["params_file_unknown_name"] = NodeProcess(d / "typo.log", {}, params_file=str(typo),
                                                    env={"ROS_DOMAIN_ID": str(202 + len(PROCESS_CASES))})
    results = {}
    for name, p in procs.items():
        try:
            results[name] = (p.wait(120), p.output())
        finally:
            p.close()
    return results


CASE_NAMES = ([f"ckpt_{n}" for n in ("missing", "truncated", "empty", "text_file", "tensor_file", "no_metadata",
                                     "wrong_architecture", "wrong_channels", "two_channels")]
              + [f"param_{n}" for n in BAD_PARAMS] + ["param_strict_device_without_cuda"])


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_configuration_is_a_startup_error_naming_it(ros, cases, case):
    """In-process: the constructor raises StartupError whose text names the problem."""
    from rclpy.parameter import Parameter
    from stereonet_ros.node import StartupError, StereoNetNode
    if case not in cases:
        pytest.skip("CUDA is available here")
    params, text = cases[case]
    with pytest.raises(StartupError) as info:
        StereoNetNode(namespace=f"/startup_{case}",
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    assert text in str(info.value)
    if case.startswith("ckpt_"):
        assert params["checkpoint"] in str(info.value), "the message names the checkpoint file"


@pytest.mark.parametrize("case", list(PROCESS_CASES) + ["params_file_missing", "params_file_unknown_name"])
def test_bad_configuration_exits_2_without_traceback(process_runs, cases, case):
    code, out = process_runs[case]
    text = cases[case][1] if case in cases else \
        TYPO_IN_FILE[1] if case == "params_file_unknown_name" else "Couldn't parse params file"
    assert code == 2, out
    assert "Traceback" not in out, out
    assert "cannot start" in out and text in out, out
    if case.startswith("ckpt_"):
        assert cases[case][0]["checkpoint"] in out, "the message names the checkpoint file"


# ----- runtime --------------------------------------------------------------------------------
def _set(client, params, timeout=20.0):
    """SetParameters through the real service; the per-parameter results."""
    fut = client.set_parameters(params)
    assert wait_for(fut.done, timeout), "SetParameters service did not answer"
    return fut.result().results


def test_runtime_bad_values_are_rejected_and_output_continues(ros, tmp_path, tiny_checkpoint):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from stereo_msgs.msg import DisparityImage
    ns = "/rt_params"
    proc = NodeProcess(tmp_path / "node.log", {"checkpoint": str(tiny_checkpoint), "diagnostics_period": 0.2},
                       namespace=ns)
    test = ros.create_node("rt_param_tester", namespace=ns)
    got = []
    test.create_subscription(DisparityImage, f"{ns}/disparity", got.append, 10)
    diag = DiagReader(test)
    client = AsyncParameterClient(test, f"{ns}/stereonet")
    spin = Spinner(test)
    try:
        pubs = input_publishers(test, ns)
        wait_node_subscribed(pubs, proc)
        left, right = shifted_pair(H, W, 4, seed=5)
        stamp = [1_000_000_000]

        def frame() -> int:
            stamp[0] += 1_000_000_000
            publish_infos(pubs, good_infos(W, H, FX, BASELINE, stamp[0]))
            time.sleep(0.05)  # camera_info first, so the pair is never 'camera_info_missing'
            publish_images(pubs, *good_images(left, right, stamp[0]))
            return stamp[0]

        def produces() -> None:
            # Re-sent until output comes: the first frames may precede DDS discovery.
            end = time.monotonic() + 30
            while time.monotonic() < end:
                s = frame()
                if wait_for(lambda: any(m.header.stamp.sec == s // 10**9 for m in got), 2):
                    return
            raise AssertionError("no output\n" + proc.output())

        produces()
        assert client.wait_for_services(10)
        bad = tmp_path / "corrupt.pt"
        bad.write_bytes(tiny_checkpoint.read_bytes()[:1000])
        rejected = [
            ([Parameter("checkpoint", value=str(bad))], "cannot be read as a torch file"),
            ([Parameter("checkpoint", value=str(tmp_path / "missing.pt"))], "does not exist"),
            ([Parameter("input_scale", value=-1.0)], "input_scale"),
            ([Parameter("refiners", value=2)], "refiners must be -1 (the checkpoint's operating point) or 0..1, got 2"),
            ([Parameter("device", value="gpu0")], "device"),
            ([Parameter("queue_size", value="ten")], "must be an integer"),
            ([Parameter("max_depth", value=1.0), Parameter("min_depth", value=2.0)],
             "max_depth 1.0 must be greater than min_depth 2.0"),
        ]
        for params, text in rejected:
            # SetParameters (non-atomic) answers per parameter: the depth pair's max_depth
            # alone is fine, then min_depth above it is refused by the cross-check.
            failed = [r for r in _set(client, params) if not r.successful]
            assert len(failed) == 1, params
            assert text in failed[0].reason and "Traceback" not in failed[0].reason, failed[0].reason
            produces()  # the old model and values keep working
        assert "cannot be read as a torch file" in proc.output()  # the log names the problem too
        assert diag.wait_value("event parameter_rejected", lambda v: int(v) == len(rejected)), diag.values()
        assert diag.values()["model"].endswith(f"'{tiny_checkpoint}'")
        # A good change is accepted and takes effect.
        results = _set(client, [Parameter("input_scale", value=0.5), Parameter("refiners", value=0)])
        assert all(r.successful for r in results), [r.reason for r in results]
        produces()
        assert diag.wait_value("model", lambda v: "input_scale=0.5" in v and "refiners=0" in v), diag.values()
        assert proc.alive()
    finally:
        spin.close()
        test.destroy_node()
        proc.close()
    assert proc.proc.returncode == 0
    assert "Traceback" not in proc.output()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_processing_exits_cleanly(ros, tmp_path, tiny_checkpoint, sig):
    from stereo_msgs.msg import DisparityImage
    ns = f"/sig_{sig.name}"
    proc = NodeProcess(tmp_path / "node.log", {"checkpoint": str(tiny_checkpoint)}, namespace=ns)
    test = ros.create_node(f"sig_tester_{sig.name}", namespace=ns)
    got = []
    test.create_subscription(DisparityImage, f"{ns}/disparity", got.append, 10)
    spin = Spinner(test)
    try:
        pubs = input_publishers(test, ns)
        wait_node_subscribed(pubs, proc)
        left, right = shifted_pair(H, W, 4, seed=6)
        s = 10**9
        end = time.monotonic() + 20
        while not got and time.monotonic() < end:  # keep the worker busy until output flows
            s += 10**8
            publish_infos(pubs, good_infos(W, H, FX, BASELINE, s))
            publish_images(pubs, *good_images(left, right, s))
            time.sleep(0.02)
        assert got, proc.output()
        for _ in range(5):  # the signal lands while frames are still arriving
            s += 10**8
            publish_infos(pubs, good_infos(W, H, FX, BASELINE, s))
            publish_images(pubs, *good_images(left, right, s))
        proc.signal(sig)
        code = proc.wait(20)
    finally:
        spin.close()
        test.destroy_node()
        proc.close()
    out = proc.output()
    assert code == 0, out
    assert "Traceback" not in out and "Exception" not in out, out


def test_signal_during_startup_exits_cleanly(ros_domain, tmp_path, tiny_checkpoint):
    """A stop request while torch is still importing, or while the node is being built,
    ends the process with 0 and no traceback (it used to be swallowed by torch's import:
    the node then ran on; or to surface as an RCLError from the shut-down context)."""
    cases = {"SIGINT_importing": (signal.SIGINT, None), "SIGTERM_importing": (signal.SIGTERM, None),
             "SIGINT_building": (signal.SIGINT, "StereoNet k="),
             # the stereonet_node console script's entry point (setup.py), not `-m ...node`
             "SIGINT_importing_console_script": (signal.SIGINT, None)}
    procs = {n: NodeProcess(tmp_path / f"{n}.log", {"checkpoint": str(tiny_checkpoint)}, namespace=f"/early_{i}",
                            module="stereonet_ros.node_main" if n.endswith("console_script") else "stereonet_ros.node")
             for i, n in enumerate(cases)}

    def loading_rclpy(p: NodeProcess) -> bool:
        """The node module runs (it imports rclpy right after its early handlers, torch
        after that); before, the signal would hit the interpreter's own start-up."""
        try:
            return "_rclpy_pybind11" in Path(f"/proc/{p.pid}/maps").read_text()
        except OSError:
            return False
    try:
        for name, (sig, after) in cases.items():
            p = procs[name]
            if after is None:
                assert wait_for(lambda: loading_rclpy(p), 60, 0.005), p.output()
            else:  # the engine is loaded: subscriptions and timers come next
                assert wait_for(lambda: after in p.output(), 60, 0.005), p.output()
            p.signal(sig)
        codes = {n: p.wait(30) for n, p in procs.items()}
    finally:
        for p in procs.values():
            p.close()
    for name, p in procs.items():
        assert codes[name] == 0, (name, p.output())
        assert "Traceback" not in p.output(), (name, p.output())
