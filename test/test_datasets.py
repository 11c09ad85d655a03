"""Dataset loaders read fixtures written in the true on-disk formats; transforms keep geometry."""
import struct

import cv2
import numpy as np
import pytest
import torch

from training.datasets import (KITTI, DatasetError, FolderPairs, Middlebury, SceneFlow,
                               SyntheticStereo, read_pfm, read_png16_disparity, write_pfm)
from stereonet_ros.tools.synthetic import SyntheticConfig
from training.transforms import StereoTransform, crop, random_crop, resize, scale

H, W = 8, 12


def _img(path, seed, h=H, w=W):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return img[..., ::-1].astype(np.float32) / 255.0  # RGB as the loader returns it


def _raw_pfm(path, data, little_endian=True):
    """Write a PFM by hand (independent of write_pfm): bottom-up rows, signed scale."""
    h, w = data.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n%s\n" % (w, h, b"-1.0" if little_endian else b"1.0"))
        fmt = "<" if little_endian else ">"
        for row in data[::-1]:  # bottom row first
            f.write(struct.pack(fmt + "%df" % w, *row))


def _disp(seed, h=H, w=W):
    return np.random.default_rng(seed).uniform(0.5, 40, (h, w)).astype(np.float32)


# ------------------------------------------------------------------ PFM

@pytest.mark.parametrize("little", [True, False])
def test_pfm_reads_bottom_up_and_endianness(tmp_path, little):
    d = _disp(0)
    _raw_pfm(tmp_path / "d.pfm", d, little)
    out = read_pfm(tmp_path / "d.pfm")
    assert out.dtype == np.float32 and out.shape == (H, W)
    np.testing.assert_array_equal(out, d)  # row 0 = top row


def test_pfm_roundtrip_and_color(tmp_path):
    d = _disp(1)
    d[0, 0] = np.inf
    write_pfm(tmp_path / "a.pfm", d)
    assert np.array_equal(read_pfm(tmp_path / "a.pfm"), d)
    rgb = np.random.default_rng(2).random((H, W, 3)).astype(np.float32)
    write_pfm(tmp_path / "c.pfm", rgb, little_endian=False)
    np.testing.assert_array_equal(read_pfm(tmp_path / "c.pfm"), rgb)
    (tmp_path / "bad.pfm").write_bytes(b"P6\n1 1\n")
    with pytest.raises(DatasetError, match="bad.pfm"):
        read_pfm(tmp_path / "bad.pfm")


# ------------------------------------------------------------------ SceneFlow

def test_sceneflow(tmp_path):
    root = tmp_path / "sf"
    ft = root / "FlyingThings3D"
    rel = "TRAIN/A/0000"
    left = _img(ft / "frames_cleanpass" / rel / "left" / "0006.png", 1)
    right = _img(ft / "frames_cleanpass" / rel / "right" / "0006.png", 2)
    dl, dr = _disp(3), _disp(4)
    _raw_pfm(ft / "disparity" / rel / "left" / "0006.pfm", dl)
    _raw_pfm(ft / "disparity" / rel / "right" / "0006.pfm", dr)
    _img(ft / "frames_cleanpass" / "TEST/A/0001/left/0007.png", 5)
    _img(ft / "frames_cleanpass" / "TEST/A/0001/right/0007.png", 6)
    _raw_pfm(ft / "disparity" / "TEST/A/0001/left/0007.pfm", _disp(7))
    mk = root / "Monkaa"
    _img(mk / "frames_cleanpass/a_rain/left/0000.png", 8)
    _img(mk / "frames_cleanpass/a_rain/right/0000.png", 9)
    _raw_pfm(mk / "disparity/a_rain/left/0000.pfm", _disp(10))
    _raw_pfm(mk / "disparity/a_rain/right/0000.pfm", _disp(11))

    train = SceneFlow(root, split="train")
    assert len(train) == 2
    s = train[0]
    assert set(s) == {"left", "right", "disp", "disp_right"}
    assert s["left"].shape == (3, H, W) and s["disp"].shape == (1, H, W)
    np.testing.assert_allclose(s["left"].permute(1, 2, 0).numpy(), left, atol=1e-6)
    np.testing.assert_allclose(s["right"].permute(1, 2, 0).numpy(), right, atol=1e-6)
    np.testing.assert_array_equal(s["disp"][0].numpy(), dl)
    np.testing.assert_array_equal(s["disp_right"][0].numpy(), dr)
    test = SceneFlow(root, split="test")
    assert len(test) == 1 and "disp_right" not in test[0]


# ------------------------------------------------------------------ KITTI

@pytest.mark.parametrize("year", [2012, 2015])
def test_kitti_png16_with_zeros(tmp_path, year):
    names = ("image_2", "image_3", "disp_occ_0") if year == 2015 else ("colored_0", "colored_1", "disp_occ")
    root = tmp_path / f"kitti{year}"
    left = _img(root / "training" / names[0] / "000000_10.png", 1)
    _img(root / "training" / names[1] / "000000_10.png", 2)
    _img(root / "training" / names[0] / "000000_11.png", 3)  # flow frame: ignored
    raw = np.random.default_rng(4).integers(1, 60000, (H, W)).astype(np.uint16)
    raw[::3, ::2] = 0  # no measurement
    (root / "training" / names[2]).mkdir(parents=True)
    cv2.imwrite(str(root / "training" / names[2] / "000000_10.png"), raw)
    ds = KITTI(root, year=year)
    assert len(ds) == 1
    s = ds[0]
    np.testing.assert_allclose(s["left"].permute(1, 2, 0).numpy(), left, atol=1e-6)
    d = s["disp"][0].numpy()
    assert np.isnan(d[raw == 0]).all()
    np.testing.assert_allclose(d[raw > 0], raw[raw > 0] / 256.0, rtol=1e-6)
    with pytest.raises(DatasetError, match="KITTI"):
        KITTI(root, year=2015 if year == 2012 else 2012)


def test_png16_reader_rejects_8bit(tmp_path):
    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match="16-bit"):
        read_png16_disparity(tmp_path / "d.png")


# ------------------------------------------------------------------ Middlebury

def test_middlebury_inf_and_calib(tmp_path):
    root = tmp_path / "mb"
    scene = root / "Motorcycle-perfect"
    left = _img(scene / "im0.png", 1)
    _img(scene / "im1.png", 2)
    d = _disp(3)
    d[2:4, 5:9] = np.inf  # unknown
    _raw_pfm(scene / "disp0.pfm", d)
    (scene / "calib.txt").write_text(
        "cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]\n"
        "cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]\n"
        "doffs=124.343\nbaseline=193.001\nwidth=12\nheight=8\nndisp=270\nvmin=23\nvmax=245\n")
    ds = Middlebury(root)
    assert len(ds) == 1 and ds.ndisp == [270]
    s = ds[0]
    out = s["disp"][0].numpy()
    assert np.isnan(out[2:4, 5:9]).all()
    fin = np.isfinite(d)
    np.testing.assert_array_equal(out[fin], d[fin])
    np.testing.assert_allclose(s["left"].permute(1, 2, 0).numpy(), left, atol=1e-6)
    (scene / "calib.txt").write_text("width=12\n")
    with pytest.raises(DatasetError, match="ndisp"):
        Middlebury(root)


# ------------------------------------------------------------------ folder

@pytest.mark.parametrize("fmt", ["pfm", "png", "npy"])
def test_folder_pairs(tmp_path, fmt):
    root = tmp_path / "f"
    _img(root / "left" / "a.png", 1)
    _img(root / "right" / "a.png", 2)
    d = np.round(_disp(3) * 256) / 256  # exactly representable in png16
    (root / "disp").mkdir()
    if fmt == "pfm":
        _raw_pfm(root / "disp" / "a.pfm", d)
    elif fmt == "png":
        cv2.imwrite(str(root / "disp" / "a.png"), (d * 256).astype(np.uint16))
    else:
        np.save(root / "disp" / "a.npy", d)
    s = FolderPairs(root)[0]
    np.testing.assert_allclose(s["disp"][0].numpy(), d, rtol=1e-6)


def test_folder_without_disp_and_mismatch(tmp_path):
    root = tmp_path / "f"
    _img(root / "left" / "a.png", 1)
    _img(root / "right" / "a.png", 2)
    assert torch.isnan(FolderPairs(root)[0]["disp"]).all()
    _img(root / "left" / "b.png", 3)
    with pytest.raises(DatasetError, match="b.png"):
        FolderPairs(root)


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("cls", [SceneFlow, KITTI, Middlebury, FolderPairs])
def test_missing_root_names_path(tmp_path, cls):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match="nope.*expected"):
        cls(missing)


@pytest.mark.parametrize("cls", [SceneFlow, Middlebury])
def test_empty_root_is_an_error(tmp_path, cls):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no samples found"):
        cls(tmp_path / "empty")


# ------------------------------------------------------------------ synthetic dataset

def test_synthetic_dataset_index_addressable():
    cfg = SyntheticConfig(height=32, width=64, max_disparity=24.0)
    ds = SyntheticStereo(4, seed_base=100, config=cfg)
    other = SyntheticStereo(4, seed_base=101, config=cfg)
    assert torch.equal(ds[1]["left"], other[0]["left"])  # sample i = seed_base + i
    assert torch.equal(ds[2]["disp"], ds[2]["disp"])
    assert set(ds[0]) == {"left", "right", "disp", "disp_right"}
    with pytest.raises(IndexError):
        ds[4]


# ------------------------------------------------------------------ transforms

def _sample(h=20, w=40):
    rng = np.random.default_rng(0)
    return {"left": rng.random((h, w, 3), dtype=np.float32),
            "right": rng.random((h, w, 3), dtype=np.float32),
            "disp": rng.uniform(1, 10, (h, w)).astype(np.float32),
            "disp_right": rng.uniform(1, 10, (h, w)).astype(np.float32)}


def test_resize_rescales_disparity_values():
    s = _sample()
    s["disp"][:] = 8.0
    s["disp_right"][:] = 4.0
    half = resize(s, 10, 20)
    assert half["left"].shape == (10, 20, 3)
    assert np.allclose(half["disp"], 4.0) and np.allclose(half["disp_right"], 2.0)
    dbl = scale(s, 2.0)
    assert dbl["disp"].shape == (40, 80) and np.allclose(dbl["disp"], 16.0)


def test_random_crop_identical_across_views():
    s = _sample()
    # Encode the column/row index so the crop window can be recovered from each map.
    yy, xx = np.mgrid[0:20, 0:40].astype(np.float32)
    s["left"][..., 0] = xx
    s["right"][..., 0] = xx
    s["disp"], s["disp_right"] = xx.copy(), yy.copy()
    c = random_crop(s, 8, 16, np.random.default_rng(5))
    x0, y0 = c["disp"][0, 0], c["disp_right"][0, 0]
    assert c["left"].shape == (8, 16, 3) and c["disp"].shape == (8, 16)
    assert c["left"][0, 0, 0] == x0 and c["right"][0, 0, 0] == x0
    np.testing.assert_array_equal(c["disp"], xx[int(y0):int(y0) + 8, int(x0):int(x0) + 16])
    np.testing.assert_array_equal(c["disp_right"], yy[int(y0):int(y0) + 8, int(x0):int(x0) + 16])
    with pytest.raises(ValueError):
        random_crop(s, 30, 16, np.random.default_rng(0))


def test_stereo_transform_eval_crop_to_multiple():
    s = _sample(21, 43)
    out = StereoTransform(divisor=8)(s, np.random.default_rng(0))
    assert out["left"].shape == (16, 40, 3) and out["disp"].shape == (16, 40)
    np.testing.assert_array_equal(out["disp"], crop(s, 2, 1, 16, 40)["disp"])
