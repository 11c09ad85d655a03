"""Inference backends: the slice cost volume, ONNX export, the graph backends' engine paths
(onnxruntime, openvino) vs torch, the graph cache, provider selection, precision and the
missing-package errors.

Tolerances: the exported graph is the same fp32 network as the torch engine; measured
differences are ~1e-5 px in disparity and ~1e-6 in confidence (float summation order), so
1e-3 px and 1e-4 leave two orders of magnitude and still catch any real divergence (a wrong
cost-volume candidate or a BatchNorm in training mode moves disparities by pixels).
"""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch

from helpers import shifted_pair
from stereonet_ros.backends import graph_cache, graph_runner
from stereonet_ros.backends.graph_cache import CACHE_ENV, GraphCache, cache_dir, weights_digest
from stereonet_ros.backends.onnx_export import OnnxExportError, export_onnx
from stereonet_ros.backends.ort_providers import (CPU, CUDA, OPENVINO, TENSORRT, parse_providers,
                                                  resolve_onnx_precision, select_providers)
from stereonet_ros.checkpoint import load_checkpoint, save_weights
from stereonet_ros.engine import EngineConfigError, StereoEngine
from stereonet_ros.model import StereoNet, StereoNetConfig, difference_cost_volume, slice_cost_volume

DISP_ATOL = 1e-3  # px, see the module docstring
CONF_ATOL = 1e-4

ort = pytest.importorskip("onnxruntime", reason="requirements.txt installs onnxruntime")
pytest.importorskip("openvino", reason="requirements.txt installs openvino")
#: the engine's backends that run exported graphs
GRAPH_BACKENDS = ["onnxruntime", "openvino"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test exports into its own folder, never into the user's ~/.cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root / "onnx"


def _engines(ckpt, backend="onnxruntime", **kw):
    """(torch engine, ``backend`` engine) on the CPU, both fp32 unless told otherwise."""
    kw.setdefault("precision", "fp32")  # auto is bf16 on CPUs with native bf16; graphs are fp32
    common = dict(device="cpu", num_threads=1, **kw)
    return StereoEngine(str(ckpt), **common), StereoEngine(str(ckpt), backend=backend, **common)


def _assert_same(a, b, right=True):
    np.testing.assert_allclose(b.disparity, a.disparity, rtol=0, atol=DISP_ATOL)
    np.testing.assert_allclose(b.confidence, a.confidence, rtol=0, atol=CONF_ATOL)
    if right:
        np.testing.assert_allclose(b.right_disparity, a.right_disparity, rtol=0, atol=DISP_ATOL)


# ----- the model option -----------------------------------------------------------------------
@pytest.mark.parametrize("direction", [-1, 1])
@pytest.mark.parametrize("width,candidates", [(19, 7), (5, 9)])  # also more candidates than columns
def test_slice_cost_volume_equals_unfold_volume(direction, width, candidates):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 4, 5, width, generator=g), torch.randn(2, 4, 5, width, generator=g)
    torch.testing.assert_close(slice_cost_volume(a, b, candidates, direction),
                               difference_cost_volume(a, b, candidates, direction), rtol=0, atol=0)


def test_model_cost_volume_option_selects_the_volume_with_the_same_outputs():
    torch.manual_seed(0)
    m = StereoNet(StereoNetConfig(k=2, max_disparity=16, features=8)).eval()
    x, y = torch.rand(1, 3, 16, 32), torch.rand(1, 3, 16, 32)
    with torch.no_grad():
        ref = m(x, y, with_right=True, with_confidence=True, with_cost=True)
        m.cost_volume = "slices"
        got = m(x, y, with_right=True, with_confidence=True, with_cost=True)
        for key in ("disparity", "confidence", "cost", "right_cost"):
            torch.testing.assert_close(got[key], ref[key], rtol=0, atol=0)
        m.cost_volume = "loop"
        with pytest.raises(ValueError, match="cost_volume must be one of"):
            m(x, y)
    assert "cost_volume" not in str(list(m.state_dict()))  # not a parameter: checkpoints unchanged


def test_export_leaves_the_callers_model_as_it_was(tmp_path):
    """The exporter traces a copy: a training-mode model stays in training mode (a BatchNorm
    switched by torch.onnx.export's mode restore once made a reference comparison wrong)."""
    m = StereoNet(StereoNetConfig(k=2, max_disparity=16, features=8)).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    export_onnx(m, tmp_path / "m.onnx", 16, 32)
    assert m.training and all(mod.training for mod in m.modules())
    assert m.cost_volume == "unfold"
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_export_refuses_bad_sizes_and_outputs(tmp_path):
    m = StereoNet(StereoNetConfig(k=2, max_disparity=16, features=8)).eval()
    with pytest.raises(OnnxExportError, match="multiples of 4"):
        export_onnx(m, tmp_path / "a.onnx", 18, 32)
    with pytest.raises(OnnxExportError, match="outputs must be"):
        export_onnx(m, tmp_path / "b.onnx", 16, 32, outputs=("depth",))
    with pytest.raises(OnnxExportError, match="at least 16 px wide"):  # 4 candidates at 1/4
        export_onnx(m, tmp_path / "c.onnx", 16, 8, dynamic=True)
    assert not list(tmp_path.iterdir())


def test_training_cli_export_uses_the_package_exporter(tmp_path, tiny_checkpoint, monkeypatch):
    """`stereonet-train export --onnx` writes a dynamic-size graph through
    stereonet_ros.backends.onnx_export; it runs at a size other than its sample's and agrees
    with the torch model there."""
    from stereonet_ros.backends import onnx_export
    from training.cli import main
    calls = []
    real = onnx_export.export_onnx
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: calls.append(k) or real(*a, **k))
    path = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "w.pt"),
                 "--onnx", str(path), "--onnx-size", "64x128"]) == 0
    assert calls and calls[0]["dynamic"] is True
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = load_checkpoint(tiny_checkpoint).model.eval()
    x, y = torch.rand(1, 3, 96, 192), torch.rand(1, 3, 96, 192)
    (got,) = sess.run(None, {"left": x.numpy(), "right": y.numpy()})
    with torch.no_grad():
        ref = net(x, y)["disparity"].numpy()
    assert got.shape == (1, 1, 96, 192)
    np.testing.assert_allclose(got, ref, rtol=0, atol=DISP_ATOL)


# ----- onnxruntime engine vs torch engine -----------------------------------------------------
@pytest.mark.parametrize("size,scale", [((64, 128), 1.0), ((61, 125), 1.0), ((122, 250), 0.5), ((64, 128), 1.5)])
@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_graph_engine_matches_torch_on_tiny_checkpoint(backend, tiny_checkpoint, size, scale):
    left, right = shifted_pair(*size, disparity=10, seed=3)
    t, o = _engines(tiny_checkpoint, input_scale=scale, backend=backend)
    _assert_same(t.infer(left, right, with_right=True), o.infer(left, right, with_right=True))
    # the left-only graph (what the node runs without lr_check) agrees too
    _assert_same(t.infer(left, right), o.infer(left, right), right=False)
    assert o.graph.exports == 2  # one graph per outputs set at this size
    assert {"onnxruntime": "via onnxruntime (CPUExecutionProvider)",
            "openvino": "via openvino (CPU fp32)"}[backend] in o.describe()


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_graph_engine_matches_torch_with_the_aligned_coarse_grid(backend, tmp_path):
    """aligned_coarse resamples the coarse level with grid_sample; the graph must too."""
    from stereonet_ros.checkpoint import Normalization
    torch.manual_seed(2)
    m = StereoNet(StereoNetConfig(k=3, max_disparity=64, features=8, refinement_levels=0, aligned_coarse=True))
    ckpt = save_weights(tmp_path / "aligned.pt", m, Normalization(), {"weights": "random (test)"})
    left, right = shifted_pair(64, 128, disparity=12, seed=4)
    t, o = _engines(ckpt, backend=backend)
    _assert_same(t.infer(left, right, with_right=True), o.infer(left, right, with_right=True))


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_graph_engine_matches_torch_on_default_model(backend):
    left, right = shifted_pair(128, 256, disparity=24, seed=5)
    t, o = _engines("", backend=backend)
    a, b = t.infer(left, right), o.infer(left, right)
    assert float(np.median(a.disparity[:, 40:-8])) == pytest.approx(24, abs=1.0)  # a trained model reads the plane
    _assert_same(a, b, right=False)
    assert b.disparity.dtype == np.float32 and b.disparity.shape == (128, 256)


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_graph_engine_without_confidence_returns_none(backend, tiny_checkpoint):
    left, right = shifted_pair(64, 128, disparity=8)
    _, o = _engines(tiny_checkpoint, backend=backend)
    res = o.infer(left, right, with_confidence=False)
    assert res.confidence is None and res.right_disparity is None
    assert set(res.timings_ms) == {"preprocess", "model", "postprocess"}


# ----- the graph cache ------------------------------------------------------------------------
def test_cache_dir_follows_env_then_xdg_then_home(tmp_path):
    assert cache_dir({CACHE_ENV: "/x/y", "XDG_CACHE_HOME": "/c"}) == graph_cache.Path("/x/y")
    assert cache_dir({"XDG_CACHE_HOME": "/c"}) == graph_cache.Path("/c/stereonet_ros")
    home = graph_cache.Path.home() / ".cache" / "stereonet_ros"
    assert cache_dir({"XDG_CACHE_HOME": "relative/dir"}) == home  # XDG: relative is invalid
    assert cache_dir({}) == home


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_cache_hit_miss_and_rebuild(backend, tiny_checkpoint, tmp_path, private_cache, monkeypatch, caplog):
    left, right = shifted_pair(64, 128, disparity=8)
    _, first = _engines(tiny_checkpoint, backend=backend)
    ref = first.infer(left, right)
    assert first.graph.exports == 1
    graphs = sorted(private_cache.glob("*.onnx"))
    assert len(graphs) == 1
    key = json.loads(graphs[0].with_suffix(".json").read_text())
    assert (key["height"], key["width"], key["candidates"], key["refiners"]) == (64, 128, 8, 1)

    # hit: a second engine (a node restart) loads the file and exports nothing
    def no_export(*a, **k):
        raise AssertionError("exported although the graph is cached")
    with monkeypatch.context() as m:
        m.setattr(graph_runner, "export_onnx", no_export)
        _, again = _engines(tiny_checkpoint, backend=backend)
        np.testing.assert_array_equal(again.infer(left, right).disparity, ref.disparity)
        assert again.graph.exports == 0 and again.graph.cache.hits == 1
        # same weights re-saved with other metadata: the key is the weights, still a hit
        ck = load_checkpoint(tiny_checkpoint)
        resaved = save_weights(tmp_path / "resaved.pt", ck.model, ck.normalization, {"note": "other"})
        _, same = _engines(resaved, backend=backend)
        same.infer(left, right)
        assert same.graph.exports == 0

    # misses: a new size, fewer refiners, a shorter search range, changed weights
    _, eng = _engines(tiny_checkpoint, backend=backend)
    eng.infer(*shifted_pair(64, 160, disparity=8))
    _, coarse = _engines(tiny_checkpoint, refiners=0, backend=backend)
    coarse.infer(left, right)
    _, short = _engines(tiny_checkpoint, max_disparity=32, backend=backend)
    short.infer(left, right)
    with torch.no_grad():
        ck.model.features.net[0].weight.mul_(1.5)
    changed_path = save_weights(tmp_path / "changed.pt", ck.model, ck.normalization)
    t_changed, changed = _engines(changed_path, backend=backend)
    assert changed.graph.weights != first.graph.weights
    np.testing.assert_allclose(changed.infer(left, right).disparity,
                               t_changed.infer(left, right).disparity, rtol=0, atol=DISP_ATOL)
    assert [e.graph.exports for e in (eng, coarse, short, changed)] == [1, 1, 1, 1]
    assert len(list(private_cache.glob("*.onnx"))) == 5

    # a damaged cached file is exported again, with a warning, not a failure
    graphs[0].write_bytes(b"not an onnx graph")
    with caplog.at_level(logging.WARNING, logger="stereonet_ros.backends.graph_runner"):
        _, repaired = _engines(tiny_checkpoint, backend=backend)
        np.testing.assert_array_equal(repaired.infer(left, right).disparity, ref.disparity)
    assert repaired.graph.exports == 1 and "does not load" in caplog.text
    assert not list(private_cache.glob(".*.tmp"))  # no temporary files left behind


def test_input_size_exports_at_construction(tiny_checkpoint):
    eng = StereoEngine(str(tiny_checkpoint), device="cpu", num_threads=1, backend="onnxruntime",
                       input_size=(61, 125))
    assert eng.graph.exports == 1  # 61x125 pads to 64x128
    eng.infer(*shifted_pair(61, 125, disparity=8))
    assert eng.graph.exports == 1
    with pytest.raises(EngineConfigError, match="needs backend 'onnxruntime'"):
        StereoEngine(str(tiny_checkpoint), device="cpu", input_size=(64, 128))


def test_unwritable_cache_dir_falls_back_to_a_temporary_one(tmp_path, monkeypatch, caplog, tiny_checkpoint):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "below"))  # cannot make a folder under a file
    with caplog.at_level(logging.WARNING, logger="stereonet_ros.backends.graph_cache"):
        cache = GraphCache()
    assert "not writable" in caplog.text and CACHE_ENV in caplog.text
    assert cache.root.is_dir() and blocker not in cache.root.parents
    _, o = _engines(tiny_checkpoint)
    assert o.infer(*shifted_pair(64, 128, disparity=8)).disparity.shape == (64, 128)


def test_weights_digest_depends_on_weights_and_architecture_only():
    torch.manual_seed(0)
    a = StereoNet(StereoNetConfig(k=2, max_disparity=16, features=8))
    b = StereoNet(StereoNetConfig(k=2, max_disparity=16, features=8))
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.cost_filter.net[0].weight[0, 0, 0, 0, 0] += 1e-3
    assert weights_digest(a) != weights_digest(b)


# ----- errors and provider selection ----------------------------------------------------------
def test_missing_onnxruntime_is_a_clear_config_error(tiny_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(EngineConfigError, match=r"pip install onnxruntime.*onnxruntime-gpu"):
        StereoEngine(str(tiny_checkpoint), device="cpu", backend="onnxruntime")
    StereoEngine(str(tiny_checkpoint), device="cpu")  # the torch backend does not need it


def test_missing_openvino_is_a_clear_config_error(tiny_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(EngineConfigError, match=r"backend 'openvino' needs.*pip install openvino"):
        StereoEngine(str(tiny_checkpoint), device="cpu", backend="openvino")


def test_openvino_runs_on_the_cpu_only(tiny_checkpoint):
    from stereonet_ros.backends.ov_runner import OpenVinoRunner
    model = load_checkpoint(tiny_checkpoint).model
    with pytest.raises(EngineConfigError, match=r"runs on the CPU.*'onnxruntime'"):
        OpenVinoRunner(model, 8, torch.device("cuda"))


def test_openvino_precision_is_torchs_rule_on_the_cpu(tiny_checkpoint):
    """One precision rule on the CPU for both: fp16 refused with torch's message, fp32 honoured."""
    with pytest.raises(EngineConfigError, match="precision 'fp16' needs a CUDA device"):
        StereoEngine(str(tiny_checkpoint), device="cpu", backend="openvino", precision="fp16")
    assert StereoEngine(str(tiny_checkpoint), device="cpu", backend="openvino", precision="fp32").precision_name == "fp32"


def test_openvino_bf16_reads_a_plane_like_torch_fp32():
    """Where the CPU has native bf16, 'auto' runs OpenVINO in bf16 (the fast path): not equal
    to fp32 to float rounding, but a trained model must read the same plane to a small
    fraction of a pixel."""
    from stereonet_ros.engine import cpu_has_native_bf16
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 / AMX): openvino 'auto' is fp32 here")
    left, right = shifted_pair(128, 256, disparity=24, seed=5)
    t, o = _engines("", backend="openvino", precision="auto")
    assert o.precision_name == "bf16" and "CPU bf16" in o.describe()
    a = StereoEngine("", device="cpu", num_threads=1, precision="fp32").infer(left, right)
    b = o.infer(left, right)
    inner = (slice(8, -8), slice(40, -8))
    assert float(np.median(b.disparity[inner])) == pytest.approx(float(np.median(a.disparity[inner])), abs=0.05)
    assert float(np.mean(np.abs(b.disparity[inner] - a.disparity[inner]))) < 0.1


def test_auto_backend_is_openvino_on_the_cpu_and_torch_elsewhere(tiny_checkpoint, monkeypatch, caplog):
    """The node's default 'auto': openvino on a CPU (installed here), torch when a torch.compile
    is asked for, on CUDA, and - with a warning naming the package - when openvino is missing."""
    from stereonet_ros.engine import resolve_backend
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == "openvino"
    assert resolve_backend("auto", cpu, compile_backend="inductor") == "torch"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("onnxruntime", cpu) == "onnxruntime"
    eng = StereoEngine(str(tiny_checkpoint), device="cpu", backend="auto", precision="fp32")
    assert eng.backend == "openvino" and "via openvino" in eng.describe()
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="stereonet_ros.engine"):
        assert resolve_backend("auto", cpu) == "torch"
    assert "pip install openvino" in caplog.text


def test_engine_rejects_settings_the_backend_cannot_honour(tiny_checkpoint):
    ck = str(tiny_checkpoint)
    with pytest.raises(EngineConfigError, match=r"is not one of auto \| torch \| onnxruntime \| openvino"):
        StereoEngine(ck, device="cpu", backend="tensorflow")
    with pytest.raises(EngineConfigError, match="compile_backend applies to backend 'torch'"):
        StereoEngine(ck, device="cpu", backend="onnxruntime", compile_backend="inductor")
    with pytest.raises(EngineConfigError, match="precision 'bf16' is not available"):
        StereoEngine(ck, device="cpu", backend="onnxruntime", precision="bf16")
    if CUDA not in ort.get_available_providers():
        with pytest.raises(EngineConfigError, match=r"CUDAExecutionProvider requested.*offers only"):
            StereoEngine(ck, device="cpu", backend="onnxruntime", onnx_providers="cuda")


def test_providers_derived_from_the_device():
    assert select_providers(torch.device("cpu"), "", [CPU]) == [(CPU, {})]
    assert select_providers(torch.device("cuda:1"), None, [TENSORRT, CUDA, CPU]) == \
        [(CUDA, {"device_id": "1"}), (CPU, {})]
    assert select_providers(torch.device("cuda"), [], [CUDA, CPU]) == [(CUDA, {}), (CPU, {})]


def test_requested_providers_in_order_with_options():
    got = select_providers(torch.device("cuda:0"), "tensorrt, cuda,TRT", [TENSORRT, CUDA, CPU],
                           trt_cache_dir="/c/trt", fp16=True)
    assert [n for n, _ in got] == [TENSORRT, CUDA, CPU]
    assert got[0][1] == {"device_id": "0", "trt_engine_cache_enable": "True",
                         "trt_engine_cache_path": "/c/trt", "trt_fp16_enable": "True"}
    assert got[1][1] == {"device_id": "0"}
    assert select_providers(torch.device("cpu"), ["CPUExecutionProvider"], [CPU]) == [(CPU, {})]
    assert parse_providers("openvino,cpu") == [OPENVINO, CPU]


def test_unavailable_or_unknown_providers_name_what_is_installed():
    with pytest.raises(EngineConfigError) as e:
        select_providers(torch.device("cuda:0"), "", [CPU])
    msg = str(e.value)
    assert "CUDAExecutionProvider derived from device 'cuda:0'" in msg
    assert "offers only CPUExecutionProvider" in msg and "onnxruntime-gpu" in msg and "device to cpu" in msg
    with pytest.raises(EngineConfigError, match=r"TensorrtExecutionProvider requested.*onnxruntime-gpu"):
        select_providers(torch.device("cpu"), "tensorrt,cpu", [CUDA, CPU])
    with pytest.raises(EngineConfigError, match="onnxruntime-openvino"):
        select_providers(torch.device("cpu"), "openvino", [CPU])
    with pytest.raises(EngineConfigError, match=r"offers only CPUExecutionProvider$"):
        select_providers(torch.device("cpu"), "ROCMExecutionProvider", [CPU])
    with pytest.raises(EngineConfigError, match=r"'gpu' is not one of cpu \| cuda"):
        parse_providers("gpu")


def test_onnx_precision_follows_the_providers():
    assert resolve_onnx_precision("auto", [CPU]) == "fp32"
    assert resolve_onnx_precision("auto", [CUDA, CPU]) == "fp32"
    assert resolve_onnx_precision("auto", [TENSORRT, CUDA, CPU]) == "fp16"
    assert resolve_onnx_precision("fp32", [TENSORRT, CPU]) == "fp32"
    assert resolve_onnx_precision("fp16", [TENSORRT, CPU]) == "fp16"
    with pytest.raises(EngineConfigError, match="fp16 with the TensorRT provider"):
        resolve_onnx_precision("fp16", [CUDA, CPU])
    with pytest.raises(EngineConfigError, match="precision 'bf16'"):
        resolve_onnx_precision("bf16", [TENSORRT, CPU])


# ----- the timing hook ------------------------------------------------------------------------
def test_time_backends_reports_every_backend(tiny_checkpoint):
    """Structure and agreement only: timings from this test mean nothing."""
    from stereonet_ros.backends.compare import time_backends
    r = time_backends(str(tiny_checkpoint), width=128, height=64, iters=1, warmup=1)
    assert r["backends"] == ["torch", "onnxruntime", "openvino"]
    for b in r["backends"]:
        assert r[b]["model"]["mean_ms"] > 0 and r[b]["first_frame_ms"] > 0 and r[b]["model_ratio_to_torch"] > 0
        assert r[b]["max_abs_disparity_diff_px"] < DISP_ATOL and r[b]["precision"] == "fp32"
    assert "via onnxruntime" in r["onnxruntime"]["engine"] and "via openvino" in r["openvino"]["engine"]


@pytest.mark.parametrize("offsets", [0, 2])
@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_graph_engine_matches_torch_with_warp_refinement(backend, tmp_path, offsets):
    """warp_refinement warps the other view with a gather in each refiner (at d +- offsets too);
    the graph must too."""
    from stereonet_ros.checkpoint import Normalization
    torch.manual_seed(3)
    m = StereoNet(StereoNetConfig(k=3, max_disparity=64, features=8, refinement_levels=2,
                                  aligned_coarse=True, warp_refinement=True, warp_offsets=offsets))
    ckpt = save_weights(tmp_path / "warp.pt", m, Normalization(), {"weights": "random (test)"})
    left, right = shifted_pair(64, 128, disparity=12, seed=4)
    t, o = _engines(ckpt, backend=backend)
    _assert_same(t.infer(left, right, with_right=True), o.infer(left, right, with_right=True))
