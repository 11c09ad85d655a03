"""StereoNet model: shapes, cost volume vs a slow reference, soft-argmin, gradients."""
from __future__ import annotations

import math
import re

import pytest
import torch

from stereonet_ros.model import (StereoNet, StereoNetConfig, difference_cost_volume,
                                 distribution_confidence, fold_batchnorm, soft_argmin,
                                 to_channels_last, use_onednn_conv3d)


def slow_cost_volume(ref, other, d_count, direction):
    b, c, h, w = ref.shape
    out = torch.zeros(b, c, d_count, h, w)
    for d in range(d_count):
        for x in range(w):
            xo = x + direction * d
            if 0 <= xo < w:
                out[:, :, d, :, x] = ref[:, :, :, x] - other[:, :, :, xo]
    return out


@pytest.mark.parametrize("direction", [-1, 1])
def test_cost_volume_equals_slow_reference(direction):
    g = torch.Generator().manual_seed(0)
    ref, other = torch.randn(2, 3, 4, 9, generator=g), torch.randn(2, 3, 4, 9, generator=g)
    fast = difference_cost_volume(ref, other, 5, direction)
    torch.testing.assert_close(fast, slow_cost_volume(ref, other, 5, direction))


@pytest.mark.parametrize("direction", [-1, 1])
def test_cost_volume_built_channels_last_has_the_same_values(direction):
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(1, 4, 3, 10, generator=g).contiguous(memory_format=torch.channels_last)
    other = torch.randn(1, 4, 3, 10, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ndhwc = difference_cost_volume(ref, other, 6, direction, memory_format=torch.channels_last_3d)
    assert ndhwc.is_contiguous(memory_format=torch.channels_last_3d) and not ndhwc.is_contiguous()
    torch.testing.assert_close(ndhwc, slow_cost_volume(ref, other, 6, direction), rtol=0, atol=0)


def test_the_inference_layouts_change_no_output():
    """What the engine does to a model on the CPU (BatchNorm folded, NHWC 2D and NDHWC 3D
    weights, oneDNN Conv3d) keeps its outputs: the 3D filter's input follows its weights."""
    torch.manual_seed(0)
    m = StereoNet(StereoNetConfig(k=2, max_disparity=24, features=8, refinement_levels=1)).eval()
    for bn in m.modules():  # non-trivial statistics, so folding has something to fold
        if isinstance(bn, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
    x, y = torch.rand(1, 3, 16, 32), torch.rand(1, 3, 16, 32)
    with torch.inference_mode():
        plain = m(x, y, with_right=True)
        assert m.cost_filter.memory_format == torch.contiguous_format
        fast = use_onednn_conv3d(to_channels_last(fold_batchnorm(m)))
        assert fast.cost_filter.memory_format == torch.channels_last_3d
        out = fast(x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last),
                   with_right=True)
    for key in ("disparity", "right_disparity"):
        torch.testing.assert_close(out[key], plain[key], rtol=1e-4, atol=1e-4)


def test_soft_argmin_of_one_hot_cost_is_exact():
    d_count, step = 12, 8
    target = torch.tensor([[0, 3], [7, 11]])
    cost = torch.full((1, d_count, 2, 2), 1e4)
    for y in range(2):
        for x in range(2):
            cost[0, target[y, x], y, x] = 0.0
    disp, prob = soft_argmin(cost, step)
    torch.testing.assert_close(disp[0, 0], (target * step).float())
    conf = distribution_confidence(prob, disp, step)
    torch.testing.assert_close(conf, torch.ones_like(conf))
    flat = distribution_confidence(torch.full((1, d_count, 1, 1), 1 / d_count), disp[..., :1, :1], step)
    assert flat.item() < 0.3


@pytest.mark.parametrize("k,refiners,cin", [(3, None, 3), (4, 2, 1), (2, 0, 3)])
def test_output_shapes(k, refiners, cin):
    cfg = StereoNetConfig(in_channels=cin, k=k, max_disparity=2 ** k * 4, features=8, refinement_levels=refiners)
    m = StereoNet(cfg).eval()
    h, w = 2 ** k * 3, 2 ** k * 5
    x = torch.rand(2, cin, h, w)
    with torch.no_grad():
        out = m(x, x, with_right=True, with_confidence=True)
    n = cfg.num_refiners
    assert len(out["disparities"]) == n + 1 and len(out["right_disparities"]) == n + 1
    assert out["disparities"][0].shape == (2, 1, h // 2 ** k, w // 2 ** k)
    assert out["disparities"][-1].shape == (2, 1, h // 2 ** (k - n), w // 2 ** (k - n))
    assert out["disparity"].shape == (2, 1, h, w) and out["confidence"].shape == (2, 1, h, w)
    assert float(out["disparity"].min()) >= 0.0
    assert 0.0 <= float(out["confidence"].min()) and float(out["confidence"].max()) <= 1.0


def test_odd_sizes_are_rejected_by_the_model_and_padded_by_the_engine(tiny_checkpoint):
    import numpy as np
    from stereonet_ros.engine import StereoEngine
    m = StereoNet(StereoNetConfig(features=8, max_disparity=64))
    with pytest.raises(ValueError, match="multiple of 8"):
        m(torch.rand(1, 3, 33, 47), torch.rand(1, 3, 33, 47))
    eng = StereoEngine(str(tiny_checkpoint))
    for h, w in ((33, 47), (61, 101), (8, 9)):
        img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
        res = eng.infer(img, img)
        assert res.disparity.shape == (h, w) and res.confidence.shape == (h, w)


def test_gradient_flows_through_both_views_and_both_volumes():
    cfg = StereoNetConfig(k=3, max_disparity=32, features=8, refinement_levels=1)
    m = StereoNet(cfg).train()
    left = torch.rand(1, 3, 32, 48, requires_grad=True)
    right = torch.rand(1, 3, 32, 48, requires_grad=True)
    out = m(left, right, with_right=True)
    loss = sum(d.mean() for d in out["disparities"]) + sum(d.mean() for d in out["right_disparities"])
    loss.backward()
    for t in (left, right):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.features.parameters())
    assert all(p.grad is not None for p in m.cost_filter.parameters())


def test_config_validation_messages():
    with pytest.raises(ValueError, match="in_channels"):
        StereoNetConfig(in_channels=2)
    with pytest.raises(ValueError, match="multiple of 2\\^k"):
        StereoNetConfig(k=3, max_disparity=100)
    with pytest.raises(ValueError, match="refinement_levels"):
        StereoNetConfig(k=3, refinement_levels=4)
    with pytest.raises(ValueError, match="unknown"):
        StereoNetConfig.from_dict({"k": 3, "bogus": 1})


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("src,dst", [((48, 64), (60, 80)), ((61, 93), (127, 201)), ((60, 80), (48, 64))],
                         ids=["grow", "grow-odd", "shrink"])
def test_opencv_resize_is_torchs_bilinear(channels, src, dst):
    """The engine's CPU resize (OpenCV) is F.interpolate's bilinear, half-pixel centres, no
    antialiasing, for its pre-processing (growing images) and post-processing (shrinking
    disparities), whatever the input's layout."""
    from stereonet_ros.engine import resize_bilinear_cpu
    x = torch.rand(1, channels, *src, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.interpolate(x, size=dst, mode="bilinear", align_corners=False)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = resize_bilinear_cpu(x.contiguous(memory_format=layout), dst)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("scale,size,mode", [(0.5, (32, 48), "area"), (1.5, (96, 144), "bilinear"),
                                              (1.3, (83, 125), "bilinear")], ids=["down", "up", "up-padded"])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_engine_rescales_disparity_with_input_scale(tiny_checkpoint, scale, size, mode, dtype):
    """Resized inference returns native-resolution disparities (the reference code did not):
    the network runs on the image resized by s (area when shrinking, bilinear when growing),
    padded by replicating its border up to the cost volume's grid, and its disparities come
    back divided by s. The engine normalises before or after resizing, whichever is cheaper;
    the result must be the by-hand order's, for float and uint8 images alike."""
    import numpy as np
    from stereonet_ros.engine import StereoEngine
    full = StereoEngine(str(tiny_checkpoint), input_scale=1.0, precision="fp32")
    eng = StereoEngine(str(tiny_checkpoint), input_scale=scale, precision="fp32")
    # the trained candidates when shrinking (a wider native range), the trained native range
    # when growing (more candidates, whole ones: the range rounds up)
    assert eng.candidates == math.ceil(full.candidates * max(scale, 1.0) - 1e-9)
    assert eng.max_disparity == pytest.approx(eng.candidates * 2 ** eng.config.k / scale)
    assert eng.max_disparity >= full.max_disparity / min(scale, 1.0) - 1e-9
    img = np.random.default_rng(1).random((64, 96, 3), dtype=np.float32)
    if dtype == "uint8":
        img = (img * 255).round().astype(np.uint8)
    res = eng.infer(img, img, with_confidence=False)
    assert res.disparity.shape == (64, 96)
    # against running the network by hand at the resized, padded size
    x = torch.from_numpy(img.astype(np.float32) / (255.0 if dtype == "uint8" else 1.0)).permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(x, size=size, mode=mode)
    step = 2 ** eng.config.k
    pad = (0, -size[1] % step, 0, -size[0] % step)
    x = (torch.nn.functional.pad(x, pad, mode="replicate") - 0.5) / 0.25
    # the stage, by hand; OpenCV resizes on the CPU (engine.resize_bilinear_cpu): its bilinear
    # weights agree with torch's to ~5e-5 of a [0, 1] image (2.5e-4 normalised), and a uint8
    # image grown is rounded to whole grey levels (1 level = 1/255/0.25 normalised)
    prepared = eng.prepare(eng.to_tensor(img))
    rounded = dtype == "uint8" and scale > 1
    torch.testing.assert_close(prepared, x, rtol=0, atol=1.01 / 255 / 0.25 if rounded else 1e-3)
    # the rest of the path on the stage's output: network, crop, resize back, rescale
    with torch.no_grad():
        d = eng.model(prepared, prepared, candidates=eng.candidates)["disparity"][..., :size[0], :size[1]]
    d = torch.nn.functional.interpolate(d, size=(64, 96), mode="bilinear", align_corners=False) * (96 / size[1])
    np.testing.assert_allclose(res.disparity, d[0, 0].numpy(), rtol=1e-4, atol=1e-4)


def test_checkpoint_operating_point_is_the_engines_default_and_explicit_settings_win(tiny_checkpoint, tmp_path):
    """A weights file may name the settings it runs best at (input_scale, refiners): the
    engine's input_scale 0 and refiners -1 take them; explicit values override them; 0 keeps
    the trained range in native pixels when upsampling. `stereonet-train export` writes them."""
    import numpy as np
    from stereonet_ros.checkpoint import OperatingPoint, load_checkpoint
    from stereonet_ros.engine import StereoEngine
    from training.cli import main
    path = tmp_path / "op.pt"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--output", str(path),
                 "--input-scale", "1.5", "--refiners", "0"]) == 0
    assert load_checkpoint(path).inference == OperatingPoint(input_scale=1.5, refiners=0)
    assert load_checkpoint(tiny_checkpoint).inference == OperatingPoint()  # none stored: 1, all
    default = StereoEngine(str(path), precision="fp32")
    assert (default.input_scale, default.config.num_refiners) == (1.5, 0)
    assert default.max_disparity == pytest.approx(64)  # the trained 64 px, now 12 candidates
    assert default.candidates == 12
    explicit = StereoEngine(str(path), precision="fp32", input_scale=1.5, refiners=0, max_disparity=64)
    img = np.random.default_rng(3).random((64, 96, 3), dtype=np.float32)
    np.testing.assert_array_equal(default.infer(img, img).disparity, explicit.infer(img, img).disparity)
    native = StereoEngine(str(path), precision="fp32", input_scale=1.0, refiners=1)
    assert (native.input_scale, native.config.num_refiners, native.candidates) == (1.0, 1, 8)
    # re-exporting keeps the point unless told otherwise
    again = tmp_path / "again.pt"
    assert main(["export", "--checkpoint", str(path), "--output", str(again), "--refiners", "-1"]) == 0
    assert load_checkpoint(again).inference == OperatingPoint(input_scale=1.5, refiners=-1)


@pytest.mark.parametrize("entry,fragment", [
    ({"input_scale": 3.0, "refiners": -1}, "input_scale must be a number in (0, 2]"),
    ({"input_scale": 1.0, "refiners": 2}, "refiners must be -1 (all) or 0..1"),
    ({"input_scale": 1.0, "speed": "max"}, "invalid 'inference' entry"),
], ids=["scale", "refiners", "unknown_key"])
def test_checkpoint_with_a_bad_operating_point_is_refused_by_name(tiny_checkpoint, tmp_path, entry, fragment):
    from stereonet_ros.checkpoint import CheckpointError, load_checkpoint
    obj = torch.load(str(tiny_checkpoint), weights_only=True)
    obj["stereonet"]["inference"] = entry
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=re.escape(fragment)) as err:
        load_checkpoint(tmp_path / "bad.pt")
    assert "bad.pt" in str(err.value)


def test_engine_refiners_knob_keeps_the_first_levels(tiny_checkpoint):
    """refiners=0: the coarse cost-volume disparity, upsampled bilinearly to full size."""
    import numpy as np
    from stereonet_ros.engine import EngineConfigError, StereoEngine
    full = StereoEngine(str(tiny_checkpoint), precision="fp32")
    coarse = StereoEngine(str(tiny_checkpoint), refiners=0, precision="fp32")
    assert (full.config.num_refiners, coarse.config.num_refiners) == (1, 0)
    assert "refiners=0" in coarse.describe()
    rng = np.random.default_rng(2)
    left, right = (rng.random((64, 96, 3), dtype=np.float32) for _ in range(2))
    got = coarse.infer(left, right, with_confidence=False).disparity
    xl, xr = ((torch.from_numpy(a).permute(2, 0, 1)[None] - 0.5) / 0.25 for a in (left, right))
    with torch.no_grad():
        pyr = full.model(xl, xr, candidates=full.candidates)["disparities"]
        ref = full.model.upsample_level(pyr[0], 0, (64, 96))
    np.testing.assert_allclose(got, ref[0, 0].numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(got, full.infer(left, right, with_confidence=False).disparity, atol=1e-3)
    with pytest.raises(EngineConfigError, match=r"-1 \(the checkpoint.s operating point\) or 0\.\.1, got 2"):
        StereoEngine(str(tiny_checkpoint), refiners=2)


def test_engine_sets_its_cpu_threads_in_the_thread_that_runs_frames(tiny_checkpoint):
    """OpenMP's thread count is per thread: the node builds a new engine in its executor
    thread (runtime num_threads change) while its worker thread keeps the count it had, so
    infer() must apply the engine's count in the thread that runs the frame."""
    import threading

    import numpy as np
    from stereonet_ros.engine import StereoEngine
    before = torch.get_num_threads()
    engine = StereoEngine(str(tiny_checkpoint), device="cpu", num_threads=1)  # built in this thread
    seen = {}

    def worker():
        torch.set_num_threads(2)  # the worker's own count, e.g. left by the previous engine
        img = np.zeros((64, 96, 3), np.float32)
        engine.infer(img, img, with_confidence=False)
        seen["threads"] = torch.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    torch.set_num_threads(before)
    assert seen["threads"] == 1


def test_coarse_level_is_resampled_on_the_grid_the_strided_convolutions_produce():
    """The k stride-2 5x5 convolutions (padding 2) centre coarse pixel j on input pixel 2^k j.
    With centre-tap weights the extractor's strided part samples an x-ramp at exactly those
    pixels; upsampling that map with the model's own level grid must give the ramp back
    (aligned_coarse) - a plain bilinear upsampling is 3.5 px off at k = 3."""
    import torch.nn.functional as F
    from stereonet_ros.model import StereoNet, StereoNetConfig, resample
    h, w = 32, 96
    ramp = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 3, h, w).contiguous()
    for aligned, offset in ((True, 0.0), (False, -3.5)):
        m = StereoNet(StereoNetConfig(k=3, features=4, max_disparity=64, aligned_coarse=aligned)).eval()
        strided = m.features.net[:3]
        with torch.no_grad():
            for conv in strided:
                conv.weight.zero_()
                conv.weight[:, 0, 2, 2] = 1.0
                conv.bias.zero_()
            coarse = strided(ramp)[:, :1]
            assert torch.equal(coarse[0, 0, 0], torch.arange(0, w, 8, dtype=torch.float32))
            full = m.upsample_level(coarse, 0, (h, w))
        inner = slice(8, w - 16)   # away from the borders, where the edge value is held
        torch.testing.assert_close(full[0, 0, :, inner], ramp[0, 0, :, inner] + offset, atol=1e-4, rtol=0)
    # with the standard offset resample is exactly F.interpolate(align_corners=False)
    x = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(resample(x, (20, 28), src_stride=4, src_offset=1.5),
                               F.interpolate(x, size=(20, 28), mode="bilinear", align_corners=False))
    torch.testing.assert_close(resample(x, (10, 14), src_stride=4, src_offset=0.0, dst_stride=2).shape,
                               torch.Size([2, 3, 10, 14]))


def test_engine_turns_a_device_out_of_memory_into_its_typed_error(tiny_checkpoint):
    """A CUDA OOM inside the network stage leaves infer() as EngineOutOfMemory (first line of
    torch's message), other errors pass through unchanged."""
    import numpy as np
    from stereonet_ros.engine import EngineOutOfMemory, StereoEngine

    class Boom(StereoEngine):
        error: BaseException = RuntimeError("x")

        def forward(self, *args, **kwargs):
            raise self.error

    eng = Boom(str(tiny_checkpoint), device="cpu")
    img = np.zeros((32, 64, 3), np.uint8)
    eng.error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
    with pytest.raises(EngineOutOfMemory, match=r"^CUDA out of memory\. Tried to allocate 2\.00 GiB$"):
        eng.infer(img, img)
    eng.error = RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")
    with pytest.raises(RuntimeError, match="CUDNN") as info:
        eng.infer(img, img)
    assert not isinstance(info.value, EngineOutOfMemory)


@pytest.mark.parametrize("direction", [-1, 1])
def test_warp_horizontal_undoes_a_known_sub_pixel_shift(direction):
    """A row of sin(x / 3) seen d = 4.3 px further along: warping it back by d gives the row
    (linear interpolation of sin(x/3): within 1/8 * 1/9 = 0.014), and positions past the border hold
    the border column."""
    from stereonet_ros.model import warp_horizontal
    w, d = 64, 4.3
    x = torch.arange(w, dtype=torch.float32)
    ref = torch.sin(x / 3).view(1, 1, 1, w).expand(2, 3, 5, w)
    other = torch.sin((x - direction * d) / 3).view(1, 1, 1, w).expand(2, 3, 5, w).contiguous()
    back = warp_horizontal(other, torch.full((2, 1, 5, w), d), direction=direction)
    inner = slice(6, w - 6)
    torch.testing.assert_close(back[..., inner], ref[..., inner], atol=0.014, rtol=0)
    edge = 0 if direction < 0 else w - 1
    assert torch.equal(back[..., edge], other[..., edge])
    # bf16 input: positions stay fp32 (bf16 spaces columns near x = 600 by 4 px, a sin(x/3)
    # read there would be off by up to ~0.6); only the values' bf16 rounding (1/128) remains
    x = torch.arange(640, dtype=torch.float32)
    row = torch.sin(x / 3).view(1, 1, 1, 640)
    disp = torch.full((1, 1, 1, 640), 4.3)
    fp32 = warp_horizontal(row, disp, direction=-1)
    bf16 = warp_horizontal(row.bfloat16(), disp.bfloat16(), direction=-1)
    assert bf16.dtype == torch.bfloat16
    assert float((bf16.float() - fp32)[..., 500:].abs().max()) < 0.03

@pytest.mark.parametrize("fewer, more", [
    ({"warp_refinement": False}, {"warp_refinement": True}),                      # residual switched on
    ({"warp_refinement": True}, {"warp_refinement": True, "warp_offsets": 2}),    # neighbours added
], ids=["warp_refinement", "warp_offsets"])
def test_refiners_widened_from_fewer_residuals_compute_the_same_and_learn(fewer, more):
    """Zero weights on the new residual channels: the widened model equals the one it was
    widened from at the start, and the new channels get a gradient (training can use them)."""
    from stereonet_ros.model import widen_refiner_heads
    torch.manual_seed(0)
    base = dict(k=3, features=8, max_disparity=64, refinement_levels=2)
    small, large = StereoNetConfig(**base, **fewer), StereoNetConfig(**base, **more)
    a, b = StereoNet(small).eval(), StereoNet(large).eval()
    with pytest.raises(RuntimeError):  # the smaller heads do not fit without widening
        b.load_state_dict(a.state_dict())
    b.load_state_dict(widen_refiner_heads(a.state_dict(), refiner_inputs=large.refiner_inputs))
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        got, want = b(left, right, with_right=True), a(left, right, with_right=True)
    for key in ("disparity", "right_disparity"):
        torch.testing.assert_close(got[key], want[key])
    b.train()
    b(left, right)["disparity"].mean().backward()
    for refiner in b.refiners:
        head = refiner.head[0].weight
        assert head.shape[1] == 1 + large.refiner_inputs
        assert float(head.grad[:, 1 + small.refiner_inputs:].abs().sum()) > 0


def test_warp_offsets_are_residuals_at_neighbouring_disparities_and_need_warp_refinement():
    """warp_offsets=n: residuals at d, d-1, d+1, ..., d+-n (level pixels), after the image."""
    cfg = StereoNetConfig(k=3, features=8, max_disparity=64, warp_refinement=True, warp_offsets=2)
    assert cfg.residual_offsets == (0, -1, 1, -2, 2) and cfg.refiner_inputs == 3 * 6
    assert StereoNetConfig(k=3, features=8, max_disparity=64, warp_refinement=True).refiner_inputs == 3 * 2
    with pytest.raises(ValueError, match="warp_refinement"):
        StereoNetConfig(k=3, features=8, max_disparity=64, warp_refinement=False, warp_offsets=1)
