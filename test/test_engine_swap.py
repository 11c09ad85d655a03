"""A runtime model change while pairs stream in (real rclpy, in-process node): the old model
answers until the new one is ready, the switch happens once, and every pair is accounted for."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from helpers import Collector, Spinner, camera_infos, image_msg, shifted_pair, to_encoding, wait_for
from robust_helpers import subscribed_input_publishers

W, H, FX, BASELINE = 96, 64, 200.0, 0.1


def _second_checkpoint(path):
    """Same architecture as the tiny fixture, other weights: outputs tell the models apart."""
    from stereonet_ros.checkpoint import Normalization, save_weights
    from stereonet_ros.model import StereoNet, StereoNetConfig
    torch.manual_seed(1)
    model = StereoNet(StereoNetConfig(in_channels=3, k=3, max_disparity=64, features=8, refinement_levels=1))
    return save_weights(path, model, Normalization(), {"weights": "random (test, second model)"})


def test_checkpoint_and_backend_change_swaps_models_while_pairs_stream(ros, tiny_checkpoint, tmp_path,
                                                                       private_onnx_cache):
    """Model B runs through onnxruntime: its warm-up exports a graph (seconds), off the
    executor thread, while model A keeps publishing."""
    pytest.importorskip("onnxruntime")
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from stereonet_ros.engine import StereoEngine
    from stereonet_ros.node import StereoNetNode
    ckpt_b = _second_checkpoint(tmp_path / "b.pt")
    left, right = (to_encoding(x, "rgb8") for x in shifted_pair(H, W, 6, seed=3))
    ref = {name: StereoEngine(str(c), device="cpu", precision="fp32").infer(left, right).disparity
           for name, c in (("A", tiny_checkpoint), ("B", ckpt_b))}
    assert np.abs(ref["A"] - ref["B"]).max() > 0.5

    ns = "/swap"
    node = StereoNetNode(namespace=ns, parameter_overrides=[
        Parameter("checkpoint", value=str(tiny_checkpoint)), Parameter("precision", value="fp32")])
    test = ros.create_node("swap_tester", namespace=ns)
    col = Collector(test, ns)
    spin = Spinner(node, test)
    sent, stop, lock = [], threading.Event(), threading.Lock()

    def stream() -> None:
        stamp = 10**9
        while not stop.is_set():
            stamp += 40_000_000
            li, ri = camera_infos(W, H, FX, BASELINE, stamp_ns=stamp)
            pubs["left/camera_info"].publish(li)
            pubs["right/camera_info"].publish(ri)
            pubs["left/image_rect"].publish(image_msg(left, "rgb8", stamp))
            pubs["right/image_rect"].publish(image_msg(right, "rgb8", stamp, "right_optical"))
            with lock:
                sent.append(stamp)
            stop.wait(0.04)

    try:
        pubs = subscribed_input_publishers(test, ns)
        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        assert wait_for(lambda: col.count("disparity") >= 3, 30), node.stats.snapshot()
        client = AsyncParameterClient(test, f"{ns}/stereonet")
        assert client.wait_for_services(10)
        fut = client.set_parameters_atomically([Parameter("checkpoint", value=str(ckpt_b)),
                                                Parameter("backend", value="onnxruntime")])
        assert wait_for(fut.done, 20), "SetParameters did not answer"
        with lock:
            accepted_at = sent[-1]   # the newest pair sent when the change was accepted
        assert fut.result().result.successful, fut.result().result.reason
        assert wait_for(lambda: "via onnxruntime" in node.engine.describe(), 120), node.stats.snapshot()
        n = col.count("disparity")
        assert wait_for(lambda: col.count("disparity") >= n + 3, 30)  # B answers too
        stop.set()
        streamer.join(5)
        # every pair is answered or counted: wait until the node has settled
        snap = lambda: node.stats.snapshot()  # noqa: E731
        settled = lambda: snap()["processed"] + sum(snap()["drops"].values()) == len(sent)  # noqa: E731
        assert wait_for(settled, 30), (len(sent), snap()["received"], snap()["processed"], snap()["drops"])
        assert wait_for(lambda: col.count("disparity") == snap()["processed"], 10)
        assert set(snap()["drops"]) <= {"overrun"}, snap()["drops"]
    finally:
        stop.set()
        spin.close()
        node.destroy_node()
        test.destroy_node()
    with col.lock:
        msgs = sorted(col.msgs["disparity"], key=lambda m: (m.header.stamp.sec, m.header.stamp.nanosec))
    labels = []
    for m in msgs:
        got = np.frombuffer(m.image.data, np.float32).reshape(H, W)
        valid = got >= m.min_disparity   # published invalid pixels are below the range
        assert valid.mean() > 0.5
        err = {name: float(np.abs(got - r)[valid].max()) for name, r in ref.items()}
        match = [name for name, e in err.items() if e < 1e-3]
        assert len(match) == 1, err   # exactly one of the two models computed it
        labels.append((m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, match[0]))
    order = [name for _, name in labels]
    assert order == sorted(order), "A and B interleave: the switch happened more than once"
    assert order[0] == "A" and order[-1] == "B"
    # the old model kept serving while the new one was exported and warmed up
    assert any(name == "A" and stamp > accepted_at for stamp, name in labels), labels
