"""Shared fixtures: a tiny random checkpoint and a ROS context on a private domain."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small random-weight StereoNet (k=3, 8 features) for fast plumbing tests."""
    import torch
    from stereonet_ros.checkpoint import Normalization, save_weights
    from stereonet_ros.model import StereoNet, StereoNetConfig
    torch.manual_seed(0)
    model = StereoNet(StereoNetConfig(in_channels=3, k=3, max_disparity=64, features=8, refinement_levels=1))
    return save_weights(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, Normalization(),
                        {"weights": "random (test fixture)"})


@pytest.fixture(scope="session")
def ros_domain() -> int:
    """A domain id for this test session, so parallel runs on one host do not cross-talk."""
    dom = int(os.environ.get("STEREONET_TEST_DOMAIN", random.randint(30, 200)))
    os.environ["ROS_DOMAIN_ID"] = str(dom)
    return dom


@pytest.fixture(scope="session")
def ros(ros_domain):
    """rclpy initialised once for the session (real DDS, private domain)."""
    import rclpy
    rclpy.init(domain_id=ros_domain)
    yield rclpy
    rclpy.try_shutdown()


@pytest.fixture()
def private_onnx_cache(tmp_path, monkeypatch):
    """onnxruntime graphs of this test in its own cache directory."""
    from stereonet_ros.backends.graph_cache import CACHE_ENV
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
