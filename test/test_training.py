"""Training pipeline end to end on tiny synthetic data: optimisation, fit, checkpoint, export."""
import importlib.util

import pytest
import torch
import yaml
from torch.utils.data import default_collate

from stereonet_ros.checkpoint import load_checkpoint
from training.cli import main
from training.datamodule import StereoDataModule
from training.datasets import SyntheticStereo
from training.module import StereoNetModule, pyramid_loss
from stereonet_ros.tools.synthetic import SyntheticConfig

TINY = dict(k=2, features=8, max_disparity=16)


def _batch(n=2, h=32, w=64):
    ds = SyntheticStereo(n, 0, SyntheticConfig(height=h, width=w, max_disparity=16.0))
    return default_collate([ds[i] for i in range(n)])


def test_one_optimisation_step_lowers_loss():
    torch.manual_seed(0)
    module = StereoNetModule(**TINY, optimizer="adam", lr=1e-3)
    module.train()
    batch = _batch()
    opt = module.configure_optimizers()["optimizer"]
    loss0 = module.compute_loss(batch)
    assert "loss_right" in loss0  # both views are supervised
    opt.zero_grad()
    loss0["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    opt.step()
    with torch.no_grad():
        loss1 = module.compute_loss(batch)["loss"]
    assert loss1.item() < loss0["loss"].item()


def test_pyramid_loss_masks_invalid_gt():
    gt = torch.full((1, 1, 8, 8), 5.0)
    gt[..., :2, :] = float("nan")     # unknown
    gt[..., 2:4, :] = float("inf")    # Middlebury unknown
    gt[..., 4:6, :] = 40.0            # beyond max_disparity
    pred = torch.full((1, 1, 4, 4), 5.0, requires_grad=True)  # coarse level, upsampled
    loss = pyramid_loss([pred], gt, max_disparity=16)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    # zero_is_invalid (sparse maps stored with 0 = no measurement)
    gt0 = torch.zeros(1, 1, 8, 8)
    assert pyramid_loss([pred], gt0, 16, zero_is_invalid=True).item() == 0.0
    assert pyramid_loss([pred], gt0, 16).item() > 0.0


def _config(tmp_path):
    cfg = {
        "seed_everything": 1,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_steps": 2, "limit_val_batches": 1,
            "val_check_interval": 2, "check_val_every_n_epoch": None, "num_sanity_val_steps": 0,
            "enable_progress_bar": False, "enable_model_summary": False,
            "default_root_dir": str(tmp_path),
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": str(tmp_path / "tb"), "name": "t"}},
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}},
                          {"class_path": "training.callbacks.FinalCheckpoint",
                           "init_args": {"dirpath": str(tmp_path / "ckpt")}}],
        },
        "model": dict(TINY, lr=1e-3),
        "data": {"dataset": "synthetic", "crop_height": 32, "crop_width": 64, "batch_size": 2,
                 "val_batch_size": 2, "num_workers": 0, "train_size": 100, "val_size": 2,
                 "val_seed_base": 10_000},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fit_checkpoint_loads_in_node_format_and_exports(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    assert main(["fit", "--config", str(cfg)]) == 0
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file() and (tmp_path / "ckpt" / "final.ckpt").is_file()
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain, safe to load
    assert raw["stereonet"]["config"]["features"] == 8
    assert raw["global_step"] == 2
    assert "val" in raw["stereonet"]["info"]  # validation metrics recorded
    loaded = load_checkpoint(ckpt)
    assert loaded.config.k == 2 and loaded.config.max_disparity == 16
    left, right = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    with torch.inference_mode():
        ref = loaded.model(left, right)["disparity"]
    assert ref.shape == (1, 1, 32, 64) and torch.isfinite(ref).all()

    # validate subcommand resumes from the checkpoint
    assert main(["validate", "--config", str(cfg), "--ckpt_path", str(ckpt)]) == 0

    out = tmp_path / "weights.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(out), "--half"]) == 0
    small = load_checkpoint(out)
    assert out.stat().st_size < ckpt.stat().st_size
    with torch.inference_mode():
        got = small.model(left, right)["disparity"]
    torch.testing.assert_close(got, ref, atol=0.05 * 16, rtol=0.05)
    assert small.normalization.to_dict() == loaded.normalization.to_dict()

    onnx_path = tmp_path / "m.onnx"
    if importlib.util.find_spec("onnx") is None:
        with pytest.raises(RuntimeError, match="onnx"):
            main(["export", "--checkpoint", str(ckpt), "--output", str(out),
                  "--onnx", str(onnx_path), "--onnx-size", "32x64"])
    else:
        main(["export", "--checkpoint", str(ckpt), "--output", str(out),
              "--onnx", str(onnx_path), "--onnx-size", "32x64"])
        import onnx
        onnx.checker.check_model(onnx.load(str(onnx_path)))


def test_cli_rejects_linked_data_keys(tmp_path, capsys):
    cfg = _config(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--data.max_disparity=64"])
    assert "max_disparity" in capsys.readouterr().err


def test_datamodule_seed_ranges_disjoint():
    with pytest.raises(ValueError, match="overlap"):
        StereoDataModule(train_size=100, seed_base=0, val_seed_base=50)
    dm = StereoDataModule(crop_height=32, crop_width=64, max_disparity=16, train_size=10,
                          val_size=2, val_seed_base=1000)
    dm.setup("fit")
    assert dm.train_set.seed_base == 0 and dm.val_set.seed_base == 1000
    b = dm.train_set[0]
    assert b["left"].shape == (3, 32, 64) and b["disp_right"].shape == (1, 32, 64)


def test_init_weights_starts_from_a_checkpoint_and_rejects_another_architecture(tmp_path):
    from stereonet_ros.checkpoint import save_weights
    torch.manual_seed(3)
    trained = StereoNetModule(**TINY)
    path = save_weights(tmp_path / "w.pt", trained.model, trained.normalization, {"note": "test"})
    torch.manual_seed(4)  # a different random init, overwritten by the checkpoint
    module = StereoNetModule(**TINY, init_weights=str(path))
    for (name, a), b in zip(trained.model.state_dict().items(), module.model.state_dict().values()):
        torch.testing.assert_close(b, a, msg=name)
    assert StereoNetModule(**TINY).model.state_dict()["features.net.0.weight"].ne(
        module.model.state_dict()["features.net.0.weight"]).any()
    with pytest.raises(ValueError, match="architecture"):
        StereoNetModule(**dict(TINY, features=16), init_weights=str(path))
    with pytest.raises(ValueError, match="normalisation"):
        StereoNetModule(**TINY, mean=[0.4] * 3, init_weights=str(path))


def test_init_weights_switches_warp_refinement_on_without_changing_the_model(tmp_path):
    """A checkpoint trained without warp_refinement starts a run with it: the refiners' new
    input channels are zero-weighted, so the first forward equals the loaded model's; the
    reverse (dropping trained residual channels) is refused."""
    from stereonet_ros.checkpoint import save_weights
    torch.manual_seed(3)
    plain = StereoNetModule(**TINY, warp_refinement=False).eval()
    path = save_weights(tmp_path / "plain.pt", plain.model, plain.normalization, {"note": "test"})
    widened = StereoNetModule(**TINY, warp_refinement=True, init_weights=str(path)).eval()
    left, right = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(widened(left, right)["disparity"], plain(left, right)["disparity"])
    wpath = save_weights(tmp_path / "warp.pt", widened.model, widened.normalization, {"note": "test"})
    with pytest.raises(ValueError, match="architecture"):
        StereoNetModule(**TINY, warp_refinement=False, init_weights=str(wpath))
    # more offsets over fewer: the same again; fewer over more is refused
    offsets = StereoNetModule(**TINY, warp_refinement=True, warp_offsets=1, init_weights=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(offsets(left, right)["disparity"], plain(left, right)["disparity"])
    opath = save_weights(tmp_path / "offsets.pt", offsets.model, offsets.normalization, {"note": "test"})
    with pytest.raises(ValueError, match="architecture"):
        StereoNetModule(**TINY, warp_refinement=True, warp_offsets=0, init_weights=str(opath))


def test_measure_knobs_score_each_node_setting_through_the_engine(tiny_checkpoint):
    from training.measure import KNOBS, knob_costs
    rows = knob_costs(load_checkpoint(tiny_checkpoint), n_synthetic=1, seed_base=10**9, size=(64, 128), runs=1)
    assert [r["knob"] for r in rows] == [name for name, _ in KNOBS]
    by = {r["knob"]: r for r in rows}
    assert "refiners=0" in by["refiners=0"]["engine"] and "input_scale=0.5" in by["input_scale=0.5"]["engine"]
    for r in rows:
        for m in (r["synthetic"], r["motorcycle"]):
            assert m["density"] == 100.0 and 0.0 <= m["epe"] < 64.0
        assert r["motorcycle_ms"] > 0
    # different settings give different disparities (the knob reached the network)
    assert by["refiners=0"]["motorcycle"]["epe"] != by["operating point"]["motorcycle"]["epe"]
    assert "input_scale=1," in by["input_scale=1,refiners=all"]["engine"] and "refiners=1" in by["input_scale=1,refiners=all"]["engine"]
