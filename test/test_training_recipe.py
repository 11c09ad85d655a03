"""The default training recipe's parts: the coarse-distribution cross-entropy, warm-up and
cosine schedule, staged (coarse-only) training, real pairs in the shared one-folder-per-pair
layout mixed with synthetic scenes, self-supervised fine-tuning, and two-process DDP."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

from training.datamodule import StereoDataModule
from training.datasets import FolderPairs, SgbmLabels, SyntheticStereo, family_split
from training.loss import (distribution_cross_entropy, distribution_target, photometric_loss,
                           warp_by_disparity)
from training.module import StereoNetModule, lr_factor_fn
from stereonet_ros.tools.synthetic import SyntheticConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(k=2, features=8, max_disparity=16)


def _batch(n=2, h=32, w=64, maxd=16.0):
    ds = SyntheticStereo(n, 0, SyntheticConfig(height=h, width=w, max_disparity=maxd))
    return default_collate([ds[i] for i in range(n)])


# ------------------------------------------------------------------ cross-entropy term

def test_twohot_target_expectation_is_the_ground_truth_and_laplace_peaks_there():
    gt = torch.tensor([0.0, 3.0, 13.0, 27.5, 40.0]).view(1, 1, 1, 5)  # px, step 4, 8 bins
    t = distribution_target(gt, candidates=8, step=4.0, kind="twohot")
    torch.testing.assert_close(t.sum(1), torch.ones(1, 1, 5))
    expect = (t * torch.arange(8.0).view(1, -1, 1, 1) * 4.0).sum(1).flatten()
    torch.testing.assert_close(expect, torch.tensor([0.0, 3.0, 13.0, 27.5, 28.0]))  # 40 clamps to the top bin
    assert (t > 0).sum(1).max() <= 2
    lap = distribution_target(gt, candidates=8, step=4.0, kind="laplace", laplace_scale=0.5)
    torch.testing.assert_close(lap.sum(1), torch.ones(1, 1, 5))
    assert lap.argmax(1).flatten().tolist() == [0, 1, 3, 7, 7]
    with pytest.raises(ValueError, match="unknown distribution target"):
        distribution_target(gt, 8, 4.0, kind="gauss")


def test_cross_entropy_on_a_hand_made_distribution():
    # One pixel, gt 5 px with step 4: two-hot target (0, 0.75, 0.25, 0).
    gt = torch.full((1, 1, 1, 1), 5.0)
    mask = torch.ones_like(gt, dtype=torch.bool)
    target = torch.tensor([0.0, 0.75, 0.25, 0.0])
    # A cost whose softmax(-cost) is exactly the target (up to the zero bins): CE = entropy.
    exact = -torch.log(torch.tensor([1e-9, 0.75, 0.25, 1e-9])).view(1, 4, 1, 1)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert distribution_cross_entropy(exact, gt, mask, 4.0).item() == pytest.approx(entropy, abs=1e-4)
    # A uniform distribution: CE = log(4); a confident wrong one: far larger.
    flat = torch.zeros(1, 4, 1, 1)
    assert distribution_cross_entropy(flat, gt, mask, 4.0).item() == pytest.approx(math.log(4), abs=1e-6)
    wrong = torch.tensor([0.0, 20.0, 20.0, 20.0]).view(1, 4, 1, 1)  # all mass on bin 0
    assert distribution_cross_entropy(wrong, gt, mask, 4.0).item() > 10.0
    # Masked pixels do not count; no valid pixel -> 0 with a graph.
    none = torch.zeros_like(mask)
    c = flat.clone().requires_grad_(True)
    z = distribution_cross_entropy(c, gt, none, 4.0)
    z.backward()
    assert z.item() == 0.0 and torch.isfinite(c.grad).all()
    torch.testing.assert_close(distribution_target(gt, 4, 4.0).flatten(), target)


def test_cross_entropy_gradient_survives_where_the_soft_argmin_gradient_vanishes():
    """The diagnosed defect: a distribution collapsed on one bin gives the disparity loss
    (almost) no gradient, so matching stops learning; the cross-entropy still pulls."""
    from stereonet_ros.model import soft_argmin
    gt = torch.full((1, 1, 1, 1), 6.0)                       # between bins 1 (4 px) and 2 (8 px)
    cost = torch.tensor([30.0, 0.0, 30.0, 30.0]).view(1, 4, 1, 1).requires_grad_(True)
    disp, _ = soft_argmin(cost, 4)
    (disp - gt).abs().sum().backward()
    g_disp = cost.grad.abs().max().item()
    cost.grad = None
    distribution_cross_entropy(cost, gt, torch.ones_like(gt, dtype=torch.bool), 4.0).backward()
    g_ce = cost.grad.abs().max().item()
    assert g_disp < 1e-9 < 0.1 < g_ce


# ------------------------------------------------------------------ schedule and stages

def test_warmup_then_cosine_schedule():
    f = lr_factor_fn("cosine", warmup_steps=10, total_steps=110, min_ratio=0.1, gamma=1.0)
    assert f(0) < 0.1 and f(4) < f(9) < 1.0
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    e = lr_factor_fn("exponential", warmup_steps=0, total_steps=0, min_ratio=0.0, gamma=0.5)
    assert e(0) == 1.0 and e(2) == 0.25
    module = StereoNetModule(**TINY, lr=1e-3, warmup_steps=10, matching_lr_scale=0.1)
    opt = module.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    lrs = [g["lr"] for g in opt.param_groups]
    # matching layers at a tenth of the rate; both start warm-up near zero
    assert lrs[0] == pytest.approx(0.1 * lrs[1]) and lrs[1] < 1e-3 / 5


def test_coarse_only_step_with_cross_entropy_lowers_the_combined_loss_and_skips_refiners():
    torch.manual_seed(0)
    module = StereoNetModule(**TINY, ce_weight=1.0, coarse_only=True, right_weight=0.0,
                             warmup_steps=0, scheduler="none", lr=2e-3)
    module.train()
    batch = _batch()
    opt = module.configure_optimizers()
    first = None
    for _ in range(5):
        losses = module.compute_loss(batch)
        first = first if first is not None else {k: v.item() for k, v in losses.items() if v.dim() == 0}
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    assert "loss_ce" in first and first["loss"] == pytest.approx(first["loss_left"] + first["loss_ce"], rel=1e-5)
    assert all(p.grad is None for p in module.model.refiners.parameters())
    with torch.no_grad():
        after = module.compute_loss(batch)
    assert after["loss"].item() < first["loss"]
    assert after["disparity"].shape == (2, 1, 32, 64)


# ------------------------------------------------------------------ real pairs (shared layout)

def _pair_folder(root: Path, name: str, family: str, seed: int, h=40, w=72, grey=False):
    from helpers import shifted_pair
    left, right = shifted_pair(h, w, 5, seed)
    p = root / name
    p.mkdir(parents=True)
    to8 = lambda a: (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    if grey:
        cv2.imwrite(str(p / "left.png"), to8(left.mean(-1)))
        cv2.imwrite(str(p / "right.png"), to8(right.mean(-1)))
    else:
        cv2.imwrite(str(p / "left.png"), to8(left)[..., ::-1])
        cv2.imwrite(str(p / "right.png"), to8(right)[..., ::-1])
    d = np.full((h, w), 5.0)
    d[:, :5] = 0  # no ground truth where the match leaves the right image (0 = none)
    cv2.imwrite(str(p / "disparity.png"), np.round(d * 256).astype(np.uint16))
    (p / "meta.json").write_text(json.dumps({"family": family}))


@pytest.fixture()
def shared_layout(tmp_path):
    root = tmp_path / "real_stereo"
    for i in range(11):
        _pair_folder(root, f"kitti2012_{i:06d}", "kitti2012", i, grey=True)
    _pair_folder(root, "mb2001_Venus", "mb2001", 99)
    return root


def test_folder_loader_reads_the_shared_per_pair_layout(shared_layout):
    ds = FolderPairs(shared_layout)
    assert len(ds) == 12 and ds.families.count("kitti2012") == 11 and ds.families[-1] == "mb2001"
    s = ds[0]
    assert s["left"].shape == (3, 40, 72)             # grey PNG replicated to 3 channels
    d = s["disp"][0].numpy()
    assert np.isnan(d[:, :5]).all() and np.allclose(d[:, 5:], 5.0)   # 0 -> NaN, /256
    assert len(FolderPairs(shared_layout, families=["mb2001"])) == 1
    from training.datasets import DatasetError
    with pytest.raises(DatasetError, match="families"):
        FolderPairs(shared_layout, families=["eth3d"])
    val = family_split(ds.families, ["kitti2012"], 10, "val")
    train = family_split(ds.families, ["kitti2012"], 10, "train")
    assert val == [0, 10, 11] and sorted(train + val) == list(range(12))


def test_datamodule_mixes_synthetic_scenes_into_real_pairs(shared_layout):
    dm = StereoDataModule(dataset="folder", root=str(shared_layout), families=["kitti2012"],
                          val_every=10, synthetic_fraction=0.5, epoch_size=16, crop_height=32,
                          crop_width=64, max_disparity=16, batch_size=4, val_batch_size=1,
                          num_workers=0, synthetic={"max_disparity": 12.0})
    dm.setup("fit")
    assert len(dm.train_set) == 16
    kinds = [dm.train_set.source_of(i) for i in range(16)]
    assert 3 <= sum(kinds) <= 13                      # both sources present (0 real, 1 synthetic)
    assert len(dm.train_set.sources[0]) == 9          # 11 kitti minus 2 held out
    assert sorted(dm.val_set.families) == ["kitti2012", "kitti2012", "mb2001"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["left"].shape == (4, 3, 32, 64) and "disp_right" not in batch


# ------------------------------------------------------------------ self-supervision

def _photo_pair(h=64, w=128, d=6.0):
    """A real photograph (scikit-image's 'coffee', never the held-out motorcycle) as the left
    view and the right view it implies for a plane at ``d`` px."""
    import skimage.data
    img = cv2.resize(skimage.data.coffee(), (w + 16, h)).astype(np.float32) / 255.0
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    left = np.ascontiguousarray(img[:, 8:8 + w])
    right = cv2.remap(img, xs + 8 + d, ys, cv2.INTER_LINEAR)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    return t(left), t(right)


def test_photometric_loss_is_lowest_at_the_true_disparity():
    left, right = _photo_pair(d=6.0)
    losses = {d: photometric_loss(left, right, torch.full((1, 1, 64, 128), d)).item()
              for d in (0.0, 3.0, 6.0, 9.0)}
    assert min(losses, key=losses.get) == 6.0 and losses[6.0] < 0.5 * losses[0.0]
    warped, inside = warp_by_disparity(right, torch.full((1, 1, 64, 128), 6.0))
    assert torch.allclose(warped[..., 10:-10], left[..., 10:-10], atol=1e-4)
    assert inside[..., :6].sum() == 0 and inside[..., 6:].all()


def test_self_supervised_steps_lower_the_photometric_loss_without_ground_truth():
    torch.manual_seed(0)
    left, right = _photo_pair(d=6.0)
    batch = {"left": left, "right": right, "disp": torch.full((1, 1, 64, 128), float("nan"))}
    module = StereoNetModule(**TINY, self_supervised=True, warmup_steps=0, scheduler="none", lr=2e-3)
    module.train()
    opt = module.configure_optimizers()
    first = module.compute_loss(batch)
    assert {"loss_photo", "loss_smooth", "loss_lr"} <= set(first) and "loss_labels" not in first
    p0 = first["loss_photo"].item()
    for _ in range(8):
        losses = module.compute_loss(batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        p1 = module.compute_loss(batch)["loss_photo"].item()
    assert p1 < p0


def test_sgbm_labels_are_sparse_left_right_checked_and_mixed_in_as_a_third_source(tmp_path, shared_layout):
    left, right = _photo_pair(h=64, w=160, d=6.0)
    to8 = lambda t: (t[0].permute(1, 2, 0).numpy()[..., ::-1] * 255 + 0.5).astype(np.uint8)  # noqa: E731
    root = tmp_path / "nogt"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "left.png"), to8(left))
        cv2.imwrite(str(root / name / "right.png"), to8(right))
    s = SgbmLabels(FolderPairs(root), max_disparity=16)[0]
    lab = s["disp"][0].numpy()
    good = np.isfinite(lab)
    assert 0.2 < good.mean() < 1.0 and not good[:, :16].any()   # holes, and none left of the range
    assert np.median(lab[good]) == pytest.approx(6.0, abs=0.5)
    dm = StereoDataModule(dataset="folder", root=str(shared_layout), families=["kitti2012"],
                          synthetic_fraction=0.25, label_root=str(root), label_fraction=0.25,
                          epoch_size=40, crop_height=32, crop_width=64, max_disparity=16,
                          batch_size=2, num_workers=0)
    dm.setup("fit")
    used = {dm.train_set.source_of(i) for i in range(40)}
    assert used == {0, 1, 2}
    i = next(i for i in range(40) if dm.train_set.source_of(i) == 2)
    assert torch.isfinite(dm.train_set[i]["disp"]).any()
    with pytest.raises(ValueError, match="<= 1"):
        StereoDataModule(dataset="folder", root=str(shared_layout), families=["kitti2012"],
                         synthetic_fraction=0.7, label_root=str(root), label_fraction=0.5,
                         crop_height=32, crop_width=64, max_disparity=16).setup("fit")


def test_flip_swap_turns_the_right_view_into_a_consistent_left_view():
    from stereonet_ros.tools.synthetic import left_right_consistent, render_scene, warp_right_to_left
    from training.transforms import StereoTransform, flip_swap
    s = render_scene(3, SyntheticConfig(height=48, width=96, max_disparity=12.0, integer_disparity=True,
                                        noise_max=0.0, photometric=0.0, blur_max=0.0))
    f = flip_swap(s)
    for sample in (s, f):
        vis = left_right_consistent(sample["disp"], sample["disp_right"])
        err = np.abs(warp_right_to_left(sample["right"], sample["disp"]) - sample["left"]).mean(-1)
        assert vis.mean() > 0.5 and np.nanmedian(err[vis]) < 0.02
    np.testing.assert_array_equal(f["disp"], s["disp_right"][:, ::-1])
    always = StereoTransform(augment=True, photometric_strength=0.0, flip_swap_prob=1.0)
    np.testing.assert_allclose(always(s, np.random.default_rng(0))["left"], f["left"], atol=1e-5)
    with pytest.raises(ValueError, match="disp_right"):
        flip_swap({k: v for k, v in s.items() if k != "disp_right"})


def test_small_training_images_are_enlarged_to_the_crop():
    from training.transforms import StereoTransform
    s = {"left": np.zeros((20, 30, 3), np.float32), "right": np.zeros((20, 30, 3), np.float32),
         "disp": np.full((20, 30), 3.0, np.float32)}
    out = StereoTransform((32, 64), augment=True, photometric_strength=0.0)(s, np.random.default_rng(0))
    assert out["left"].shape == (32, 64, 3)
    assert np.allclose(out["disp"], 3.0 * 64 / 30, rtol=0.05)   # disparity scaled with the width


# ------------------------------------------------------------------ multi-process (DDP)

def test_lightning_ddp_two_cpu_processes_take_a_step(tmp_path):
    """The multi-GPU/multi-node path: Lightning's DDP strategy with two CPU processes (gloo),
    launched as a user would (the CLI re-launches itself for rank 1)."""
    pytest.importorskip("jsonargparse")
    cfg = {
        "seed_everything": 1,
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_steps": 1,
                    "limit_val_batches": 0, "enable_progress_bar": False,
                    "enable_model_summary": False, "logger": False,
                    "default_root_dir": str(tmp_path),
                    "callbacks": [{"class_path": "training.callbacks.FinalCheckpoint",
                                   "init_args": {"dirpath": str(tmp_path / "ckpt")}}]},
        "model": dict(TINY, ce_weight=1.0, warmup_steps=0),
        "data": {"dataset": "synthetic", "crop_height": 32, "crop_width": 64, "batch_size": 1,
                 "num_workers": 0, "train_size": 50, "val_size": 1, "val_seed_base": 10_000},
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(20000 + os.getpid() % 20000))
    proc = subprocess.run([sys.executable, "-m", "training.cli", "fit", "--config", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "MEMBER: 2/2" in out and "gloo" in out.lower(), out[-3000:]
    raw = torch.load(tmp_path / "ckpt" / "final.ckpt", map_location="cpu", weights_only=True)
    assert raw["global_step"] == 1


def test_self_supervised_fine_tuning_on_a_rosbag_without_ground_truth(tmp_path):
    """`stereonet-train fit` on a bag of raw pairs (no gt topic): the bag is read with the
    project's reader, SGBM labels are added, and a real optimisation step runs."""
    pytest.importorskip("jsonargparse")
    from stereonet_ros.tools import bag
    from training.cli import main
    topics = bag.StereoTopics(gt_disparity=None, gt_depth=None)
    left, right = _photo_pair(h=48, w=96, d=5.0)
    to8 = lambda t: (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    path = tmp_path / "cam"
    with bag.BagWriter(path, "sqlite3") as w:
        for i in range(3):
            li = bag.make_camera_info(96, 48, fx=200.0, baseline=0.1)
            ri = bag.make_camera_info(96, 48, fx=200.0, baseline=0.1)
            bag.write_stereo_frame(w, topics, (i + 1) * 10**8, to8(left), to8(right), "rgb8", li, ri)
    cfg = yaml.safe_load((ROOT / "config" / "finetune_self_supervised.yaml").read_text())
    cfg["trainer"].update({"max_steps": 2, "limit_val_batches": 0, "enable_progress_bar": False,
                           "logger": False, "default_root_dir": str(tmp_path)})
    cfg["trainer"]["callbacks"] = [{"class_path": "training.callbacks.FinalCheckpoint",
                                    "init_args": {"dirpath": str(tmp_path / "ckpt")}}]
    cfg["model"].update(TINY, init_weights=None)
    cfg["data"].update({"root": str(path), "crop_height": 32, "crop_width": 64, "batch_size": 1,
                        "num_workers": 0, "val_every": 3, "bag_every": 1})
    p = tmp_path / "ft.yaml"
    p.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(p)])
    raw = torch.load(tmp_path / "ckpt" / "final.ckpt", map_location="cpu", weights_only=True)
    assert raw["global_step"] == 2
    assert raw["hyper_parameters"]["self_supervised"] is True


def test_measure_scores_held_out_pairs_four_ways_through_the_engine(shared_layout, tiny_checkpoint, tmp_path):
    from stereonet_ros.engine import StereoEngine
    from training.measure import METHODS, markdown, real_validation
    eng = StereoEngine(checkpoint=str(tiny_checkpoint), device="cpu", precision="fp32")
    res = real_validation(eng, str(shared_layout), ["kitti2012"], 10, figures=str(tmp_path / "fig"))
    assert [p["pair"] for p in res["pairs"]] == ["kitti2012_000000", "kitti2012_000010", "mb2001_Venus"]
    fam = res["families"]
    assert set(fam) == {"kitti2012", "mb2001", "all"} and fam["kitti2012"]["sgbm_filled"]["frames"] == 2
    for block in fam.values():
        assert set(block) == set(METHODS)
        assert block["sgbm_filled"]["density"] == 100.0 and block["stereonet_dense"]["density"] == 100.0
        assert block["sgbm_published"]["density"] < 100.0          # SGBM's holes are counted
    # the published convention counts every pixel the node drops as bad: never fewer bad pixels
    for pair in res["pairs"]:
        assert pair["stereonet_published"]["bad2"] >= pair["stereonet_dense"]["bad2"]
    figs = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert figs == ["kitti2012_000000.png", "kitti2012_000010.png", "mb2001_Venus.png"]
    assert cv2.imread(str(tmp_path / "fig" / figs[0])).shape[0] == 2 * 40   # two rows of panels
    md = markdown({"real_validation": res})
    assert "**mb2001** (1 pair)" in md and "SGBM, as published" in md


def test_mixed_sources_keep_every_key_they_share(shared_layout):
    """Right-view ground truth survives mixing when every source has it (synthetic +
    synthetic), and is dropped, not half-present, when one source lacks it (real pairs)."""
    from training.datasets import MixedStereo
    cfg = SyntheticConfig(height=32, width=64, max_disparity=12.0)
    a, b = SyntheticStereo(4, 0, cfg), SyntheticStereo(4, 100, cfg)
    both = MixedStereo([a, b], [1.0, 1.0], 8)
    assert "disp_right" in both[0] and "disp_right" in both[1]
    real = FolderPairs(shared_layout)
    mixed = MixedStereo([real, a], [1.0, 1.0], 8)
    assert all(set(mixed[i]) == {"left", "right", "disp"} for i in range(8))


def test_the_default_recipe_chains_its_stages_and_names_only_real_arguments():
    """tools/train_default.sh runs config/train_default.yaml then each stage file on top; every
    stage after the first starts from the previous stage's final checkpoint, and every model /
    data key is an argument of the module / datamodule (a typo would only fail hours in)."""
    import inspect
    import re
    script = (ROOT / "tools" / "train_default.sh").read_text()
    stages = [int(n) for n in re.search(r"for n in ([\d ]+); do", script).group(1).split()]
    assert stages == list(range(1, len(stages) + 1)) and len(stages) >= 2
    model_args = set(inspect.signature(StereoNetModule.__init__).parameters) - {"self"}
    data_args = set(inspect.signature(StereoDataModule.__init__).parameters) - {"self"}
    for n in stages:
        path = ROOT / "config" / ("train_default.yaml" if n == 1 else f"train_default_stage{n}.yaml")
        cfg = yaml.safe_load(path.read_text())
        assert set(cfg.get("model", {})) <= model_args, (path.name, set(cfg["model"]) - model_args)
        assert set(cfg.get("data", {})) <= data_args, (path.name, set(cfg["data"]) - data_args)
        if n > 1:
            assert cfg["model"]["init_weights"] == f"runs/default_stage{n - 1}/checkpoints/final.ckpt", path.name
    assert f'"$n" -lt {stages[-1]}' in script  # the last stage stays in runs/default for the export
