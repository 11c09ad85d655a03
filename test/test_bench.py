"""Smoke test of ``stereonet-bench``: every report section is produced on a tiny run.

No timing assertions: speed is measured by the benchmark itself, never by unit tests.
"""
from __future__ import annotations

import json

from stereonet_ros.tools import bench


def test_bench_report_has_every_section(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--checkpoint", str(tiny_checkpoint), "--sizes", "64x48", "--iters", "1",
                       "--warmup", "0", "--node-frames", "1", "--max-disparity", "0", "32",
                       "--input-scale", "1", "0.5", "--refiners", "1", "0", "--settings", "1.5:all",
                       "--micro", "--stream-seconds", "1.5",
                       "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for section in ("meta", "model", "memory", "peak", "node", "stream", "sgbm", "knobs", "micro"):
        assert report.get(section), f"section '{section}' missing or empty"
    assert report["meta"]["config"]["features"] == 8
    precisions = {r["precision"] for r in report["model"]}
    assert "fp32" in precisions and precisions <= {"fp32", "bf16"}  # CPU-only test machine
    for key in ("mean_ms", "p50_ms", "p95_ms", "hz"):
        assert key in report["model"][0]
    mem = report["memory"][0]
    assert mem["host_peak_rss_mib"] > 0 and "gpu_peak_allocated_mib" in mem
    peak = report["peak"][0]
    assert peak["model_gflop"] > 0 and peak["peak_gflops"] > 0 and 0 < peak["pct_of_peak"]
    assert set(peak["gflop_by_part"]) == {"features", "cost_filter", "refiners"}
    node = report["node"][0]
    assert node["frames"] == 1, node  # the frame crossed DDS both ways
    for stage in ("decode", "preprocess", "postprocess", "postprocess_numpy", "publish", "total"):
        assert node["stages_ms"][stage] is not None
    assert "overhead_ms" in node and "overhead_pct_of_frame" in node
    assert 0 < node["serial_overhead_ms"] < node["overhead_ms"]  # publishing is not in the inference thread
    assert report["sgbm"][0]["ratio_model_over_sgbm"] is not None and report["sgbm"][0]["stereobm_mean_ms"] > 0
    stream = report["stream"]
    assert stream[0]["num_threads"] == 0 and stream[0]["engine_threads"] >= 1  # the node's default first
    for row in stream:  # a tiny model keeps up with 30 Hz: pairs came out, each a computed frame
        assert row["frames"] >= 5 and row["period_ms"] > 0 and row["period_over_sgbm"] > 0, row
        assert row["stages_ms"]["model"] > 0 and row["stages_ms"]["handoff"] >= 0
    knobs = {(k["knob"], str(k["value"])) for k in report["knobs"]}
    # 'all' is the tiny model's one refiner; each row is timed against SGBM in the same rounds
    assert knobs == {("base", ""), ("input_scale", "0.5"), ("max_disparity", "32.0"), ("refiners", "0"),
                     ("backend", "torch"), ("backend", "onnxruntime"), ("setting", "1.5:1")}
    assert "via openvino" in report["meta"]["engine"]  # the node's default, auto, on a CPU with openvino
    assert next(k for k in report["knobs"] if k["value"] == "onnxruntime")["precision"] == "fp32"  # its CPU graph
    setting = next(k for k in report["knobs"] if k["knob"] == "setting")
    assert (setting["input_scale"], setting["refiners"]) == (1.5, 1) and setting["ratio_vs_sgbm"] > 0
    micro = report["micro"]
    assert micro["cost_volume"][0]["max_abs_diff"] < 1e-5  # the loop reference agrees
    assert "channels_last" in micro and "threads" in micro and "fold_bn" in micro
    assert micro["fold_bn"]["max_abs_disparity_diff_px"] < 1e-2  # folding keeps the outputs
    assert "Model only" in capsys.readouterr().out


def test_conv_flops_counts_every_convolution_of_the_forward():
    """The peak section's work count on a module whose count is known by hand: 2 FLOP per
    multiply-add, grouped by the top-level child holding the convolution."""
    import torch

    from stereonet_ros.tools.bench.peak import conv_flops

    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)                   # -> (1, 4, 8, 16)
            self.volume = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1))       # -> (1, 2, 3, 16, 32)

        def forward(self, left, right):
            return self.image(left), self.volume(right.unsqueeze(1)[:, :, :3])

    got = conv_flops(Two(), torch.rand(1, 3, 16, 32), torch.rand(1, 3, 16, 32))
    assert got["image"] == 2 * (4 * 8 * 16) * 3 * 9
    assert got["volume"] == 2 * (2 * 3 * 16 * 32) * 1 * 27
    assert got["total"] == got["image"] + got["volume"]


def test_fold_batchnorm_keeps_outputs_with_trained_statistics():
    """Folding BN into the convolutions is exact up to float rounding, also with non-trivial
    running statistics and affine parameters (a random init has mean 0, var 1: too easy)."""
    import copy

    import torch

    from stereonet_ros.model import StereoNet, StereoNetConfig, fold_batchnorm
    torch.manual_seed(0)
    model = StereoNet(StereoNetConfig(k=3, max_disparity=64, features=8, refinement_levels=2)).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for m in folded.modules())
    x, y = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        a = model(x, y, with_confidence=True, with_right=True)
        b = folded(x, y, with_confidence=True, with_right=True)
    torch.testing.assert_close(b["disparity"], a["disparity"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(b["confidence"], a["confidence"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b["right_disparities"][-1], a["right_disparities"][-1], atol=1e-3, rtol=1e-4)


def test_engine_uint8_input_equals_float_input(tiny_checkpoint):
    """The uint8 fast path (conversion fused into normalisation) gives the float path's
    disparity, also for a flipped (bgr) view, a padded size and input_scale < 1."""
    import numpy as np

    from stereonet_ros.engine import StereoEngine
    rng = np.random.default_rng(1)
    left = rng.integers(0, 256, (44, 70, 3), dtype=np.uint8)  # not a multiple of 8: padded
    right = np.roll(left, -3, axis=1)
    for scale in (1.0, 0.5):
        eng = StereoEngine(str(tiny_checkpoint), device="cpu", input_scale=scale)
        ref = eng.infer(left.astype(np.float32) / 255, right.astype(np.float32) / 255)
        fast = eng.infer(left, right)
        np.testing.assert_allclose(fast.disparity, ref.disparity, atol=1e-3)
        np.testing.assert_allclose(fast.confidence, ref.confidence, atol=1e-4)
        bgr_l, bgr_r = left[..., ::-1], right[..., ::-1]  # views with negative strides
        np.testing.assert_allclose(eng.infer(bgr_l, bgr_r).disparity,
                                   eng.infer(np.ascontiguousarray(bgr_l), np.ascontiguousarray(bgr_r)).disparity)


def test_engine_compile_in_background_never_stalls_and_swaps_in(tiny_checkpoint):
    """Opt-in torch.compile: the first frame runs eagerly at once, the compiled function is
    used once ready, outputs agree. The 'eager' backend exercises the mechanism in seconds
    (inductor needs a C++ toolchain and minutes on a small CPU; the bench measures it)."""
    import numpy as np

    from stereonet_ros.engine import StereoEngine
    rng = np.random.default_rng(2)
    left = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    right = np.roll(left, -2, axis=1)
    eng = StereoEngine(str(tiny_checkpoint), device="cpu", compile_backend="eager")
    first = eng.infer(left, right)
    assert eng.compiled_calls == 0  # served eagerly while the compile runs
    assert eng.wait_compiled(120), eng.compile_errors
    again = eng.infer(left, right)
    assert eng.compiled_calls == 1 and eng.compile_state == "ready"
    np.testing.assert_allclose(again.disparity, first.disparity, atol=1e-4)
    bad = StereoEngine(str(tiny_checkpoint), device="cpu", compile_backend="no_such_backend")
    bad.infer(left, right)  # an unusable backend must not break inference
    assert not bad.wait_compiled(60) and bad.compile_state == "failed"
    assert bad.infer(left, right).disparity.shape == (48, 64)


def test_cpu_bf16_only_where_the_cpu_has_it():
    import pytest
    import torch

    from stereonet_ros.engine import EngineConfigError, cpu_has_native_bf16, resolve_precision
    cpu = torch.device("cpu")
    if cpu_has_native_bf16():
        assert resolve_precision("bf16", cpu) == torch.bfloat16
    else:
        with pytest.raises(EngineConfigError, match="no native bf16"):
            resolve_precision("bf16", cpu)
    with pytest.raises(EngineConfigError, match="precision 'fp16' needs a CUDA device"):
        resolve_precision("fp16", cpu)
    # auto takes bf16 where it is native (its accuracy cost is in the model card), else fp32
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)


def test_bench_runs_its_sections_on_another_backend(tiny_checkpoint, tmp_path):
    """--backends openvino,torch: the node and the knobs' base run OpenVINO, torch is a knob row."""
    out = tmp_path / "bench.json"
    assert bench.main(["--checkpoint", str(tiny_checkpoint), "--sizes", "64x48", "--iters", "1",
                       "--warmup", "0", "--node-frames", "1", "--input-scale", "1", "--max-disparity", "0",
                       "--refiners", "-1", "--settings", "", "--sections", "model,node,knobs",
                       "--backends", "openvino,torch", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "via openvino" in report["meta"]["engine"]
    assert report["node"][0]["frames"] == 1
    assert [(k["knob"], str(k["value"])) for k in report["knobs"]] == [("base", ""), ("backend", "torch")]
    assert bench.main(["--backends", "tensorflow", "--sections", "none"]) == 2
