"""Stereo datasets for training and evaluation.

Every dataset returns a dict of tensors::

    left, right   (C, H, W) float32 in [0, 1]
    disp          (1, H, W) float32 left disparity in pixels; NaN where unknown
    disp_right    (1, H, W) right disparity, only for datasets that provide it

Invalid ground truth is always NaN after loading (KITTI's zeros and Middlebury's inf
become NaN), so one rule masks it downstream: finite and < max_disparity.

File formats: PFM (SceneFlow, Middlebury; rows stored bottom-up, the scale's sign gives the
byte order), 16-bit PNG / 256 (KITTI; 0 = no measurement), ``.npy``.

A missing or malformed dataset root raises :class:`DatasetError` naming the path and the
layout that was expected; an empty dataset is an error, never zero samples.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stereonet_ros.tools.synthetic import SyntheticConfig, render_scene
from .transforms import Sample, StereoTransform, to_tensors

PathLike = Union[str, Path]
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


class DatasetError(RuntimeError):
    """A dataset root is missing, has an unexpected layout, or holds no usable sample."""


# ----------------------------------------------------------------------------- file formats

def read_pfm(path: PathLike) -> np.ndarray:
    """Read a PFM file as float32, rows top-down: (H, W) for 'Pf' or (H, W, 3) for 'PF'.

    PFM stores rows bottom-up; a negative scale means little-endian data.
    """
    with open(path, "rb") as f:
        header = f.readline().rstrip()
        if header not in (b"PF", b"Pf"):
            raise DatasetError(f"'{path}' is not a PFM file (header {header[:8]!r})")
        dims = f.readline()
        while dims.startswith(b"#"):
            dims = f.readline()
        m = re.match(rb"^\s*(\d+)\s+(\d+)\s*$", dims)
        if not m:
            raise DatasetError(f"'{path}': malformed PFM dimensions line {dims[:40]!r}")
        w, h = int(m.group(1)), int(m.group(2))
        scale = float(f.readline().strip())
        endian = "<" if scale < 0 else ">"
        ch = 3 if header == b"PF" else 1
        data = np.fromfile(f, dtype=endian + "f4", count=w * h * ch)
    if data.size != w * h * ch:
        raise DatasetError(f"'{path}': truncated PFM ({data.size} of {w * h * ch} values)")
    shape = (h, w, 3) if ch == 3 else (h, w)
    return np.ascontiguousarray(np.flipud(data.reshape(shape))).astype(np.float32)


def write_pfm(path: PathLike, data: np.ndarray, little_endian: bool = True) -> None:
    """Write (H, W) or (H, W, 3) float data as PFM (bottom-up rows, signed scale = endianness)."""
    data = np.asarray(data, np.float32)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] != 3):
        raise ValueError(f"PFM holds (H, W) or (H, W, 3) data, got {data.shape}")
    header = b"PF\n" if data.ndim == 3 else b"Pf\n"
    h, w = data.shape[:2]
    scale = -1.0 if little_endian else 1.0
    body = np.flipud(data).astype("<f4" if little_endian else ">f4")
    with open(path, "wb") as f:
        f.write(header)
        f.write(f"{w} {h}\n".encode())
        f.write(f"{scale}\n".encode())
        f.write(body.tobytes())


def read_png16_disparity(path: PathLike, scale: float = 256.0) -> np.ndarray:
    """KITTI-style disparity: uint16 PNG / ``scale``; 0 (no measurement) -> NaN."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DatasetError(f"cannot read disparity PNG '{path}'")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DatasetError(f"'{path}' is not a single-channel 16-bit PNG "
                           f"(dtype {raw.dtype}, shape {raw.shape}); KITTI stores disparity*256 as uint16")
    disp = raw.astype(np.float32) / np.float32(scale)
    disp[raw == 0] = np.nan
    return disp


def write_png16_disparity(path: PathLike, disp: np.ndarray, scale: float = 256.0) -> None:
    """Inverse of :func:`read_png16_disparity` (non-finite -> 0)."""
    d = np.nan_to_num(np.asarray(disp, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    cv2.imwrite(str(path), np.clip(np.round(d * scale), 0, 65535).astype(np.uint16))


def read_disparity(path: PathLike, png_scale: float = 256.0) -> np.ndarray:
    """Any supported disparity file -> (H, W) float32 pixels, NaN where invalid."""
    p = str(path)
    ext = os.path.splitext(p)[1].lower()
    if ext == ".pfm":
        d = read_pfm(p)
        d = d[..., 0] if d.ndim == 3 else d
    elif ext == ".png":
        d = read_png16_disparity(p, png_scale)
    elif ext == ".npy":
        d = np.load(p).astype(np.float32)
        if d.ndim == 3:
            d = d.squeeze()
    else:
        raise DatasetError(f"unsupported disparity file '{p}' (expected .pfm, .png, .npy)")
    d = np.abs(d)  # some exporters store left disparity as a negative offset (x_r - x_l)
    d[~np.isfinite(d)] = np.nan
    return d.astype(np.float32)


def read_image(path: PathLike) -> np.ndarray:
    """RGB float32 (H, W, 3) in [0, 1] (grey images are replicated to 3 channels)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image '{path}'")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img.astype(np.float32) / np.float32(scale)


def read_middlebury_calib(path: PathLike) -> Dict[str, str]:
    """``calib.txt`` (key=value lines: cam0, cam1, doffs, baseline, width, height, ndisp, ...)."""
    out: Dict[str, str] = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


# ----------------------------------------------------------------------------- base class

class StereoDataset(Dataset):
    """Base: a list of (left, right, disp, disp_right) paths + a :class:`StereoTransform`."""

    name = "stereo"

    def __init__(self, transform: Optional[StereoTransform] = None) -> None:
        self.transform = transform or StereoTransform()
        self.items: List[Tuple[str, str, Optional[str], Optional[str]]] = []

    def __len__(self) -> int:
        return len(self.items)

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only these items, in this order (a train/val split)."""
        self.items = [self.items[i] for i in indices]

    def _check_nonempty(self, root: PathLike, expected: str) -> None:
        if not self.items:
            raise DatasetError(f"{self.name}: no samples found under '{root}'; expected {expected}")

    def load(self, index: int) -> Sample:
        """The raw sample (numpy, untransformed)."""
        left, right, disp, disp_r = self.items[index]
        s: Sample = {"left": read_image(left), "right": read_image(right)}
        if s["left"].shape != s["right"].shape:
            raise DatasetError(f"{self.name}: '{left}' {s['left'].shape} and '{right}' "
                               f"{s['right'].shape} differ in size")
        s["disp"] = read_disparity(disp, self.png_scale) if disp else \
            np.full(s["left"].shape[:2], np.nan, np.float32)
        if disp_r:
            s["disp_right"] = read_disparity(disp_r, self.png_scale)
        return s

    png_scale = 256.0

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        # Augmentation randomness comes from torch's RNG, so seed_everything and per-worker
        # seeding govern it.
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))
        return to_tensors(self.transform(self.load(index), rng))


def _require_dir(root: PathLike, what: str) -> Path:
    p = Path(os.path.expanduser(str(root))) if root else None
    if p is None or not p.is_dir():
        raise DatasetError(f"dataset root '{root}' does not exist or is not a directory; "
                           f"expected {what}")
    return p


def _find_child(parent: Path, *names: str) -> Optional[Path]:
    """Case-insensitive child lookup (datasets are unpacked with varying capitalisation)."""
    if not parent.is_dir():
        return None
    want = {n.lower() for n in names}
    for child in sorted(parent.iterdir()):
        if child.name.lower() in want:
            return child
    return None


# ----------------------------------------------------------------------------- SceneFlow

class SceneFlow(StereoDataset):
    """SceneFlow (Mayer et al. 2016): FlyingThings3D, Monkaa, Driving.

    Layout (as unpacked on Linux)::

        root/FlyingThings3D/frames_cleanpass/TRAIN/A/0000/left/0006.png
        root/FlyingThings3D/disparity/TRAIN/A/0000/left/0006.pfm   (and .../right/)
        root/Monkaa/frames_cleanpass/<scene>/left/0000.png
        root/Monkaa/disparity/<scene>/left/0000.pfm
        root/Driving/frames_cleanpass/15mm_focallength/scene_forwards/fast/left/0000.png
        root/Driving/disparity/15mm_focallength/scene_forwards/fast/left/0000.pfm

    ``split='train'`` = FlyingThings3D TRAIN + Monkaa + Driving; ``'test'`` = FlyingThings3D
    TEST. ``render_pass`` is ``frames_cleanpass`` or ``frames_finalpass``.
    """

    name = "sceneflow"
    SUBSETS = ("flyingthings3d", "monkaa", "driving")

    def __init__(self, root: PathLike, split: str = "train", subsets: Sequence[str] = SUBSETS,
                 render_pass: str = "frames_cleanpass", transform: Optional[StereoTransform] = None,
                 with_right: bool = True) -> None:
        super().__init__(transform)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        base = _require_dir(root, "SceneFlow subsets FlyingThings3D/ Monkaa/ Driving/ each with "
                                  f"{render_pass}/ and disparity/")
        for subset in subsets:
            if subset.lower() not in self.SUBSETS:
                raise ValueError(f"unknown SceneFlow subset {subset!r}; choose from {self.SUBSETS}")
            if split == "test" and subset.lower() != "flyingthings3d":
                continue
            sdir = _find_child(base, subset)
            if sdir is None:
                continue
            frames = _find_child(sdir, render_pass)
            disp_root = _find_child(sdir, "disparity")
            if frames is None or disp_root is None:
                raise DatasetError(f"SceneFlow subset '{sdir}' lacks {render_pass}/ or disparity/")
            if subset.lower() == "flyingthings3d":
                part = _find_child(frames, split.upper())
                if part is None:
                    raise DatasetError(f"'{frames}' has no {split.upper()}/ folder")
                frames = part
            for left in sorted(frames.rglob("left/*")):
                if left.suffix.lower() not in IMAGE_EXTS:
                    continue
                rel = left.relative_to(sdir / frames.relative_to(sdir).parts[0])
                right = left.parent.parent / "right" / left.name
                disp = disp_root / rel.with_suffix(".pfm")
                disp_r = disp_root / rel.parent.parent / "right" / (left.stem + ".pfm")
                if not right.exists() or not disp.exists():
                    continue
                self.items.append((str(left), str(right), str(disp),
                                   str(disp_r) if with_right and disp_r.exists() else None))
        self._check_nonempty(root, f"<subset>/{render_pass}/.../left/*.png with matching right/ "
                                   f"images and <subset>/disparity/.../left/*.pfm for subsets {list(subsets)}")
        if with_right and any(i[3] is None for i in self.items):
            # Batches need a uniform set of keys: use right maps only if every sample has one.
            self.items = [(a, b, c, None) for a, b, c, _ in self.items]


# ----------------------------------------------------------------------------- KITTI

class KITTI(StereoDataset):
    """KITTI stereo 2012 / 2015 (``training`` split has ground truth).

    Layout::

        2015: root/training/image_2/000000_10.png, image_3/..., disp_occ_0/000000_10.png
        2012: root/training/colored_0/000000_10.png, colored_1/..., disp_occ/000000_10.png

    Disparity = uint16 PNG / 256; 0 = no measurement (-> NaN). ``occluded=False`` uses the
    non-occluded maps (disp_noc*). ``indices`` selects frames (train/val split).
    """

    name = "kitti"

    def __init__(self, root: PathLike, year: int = 2015, split: str = "training",
                 occluded: bool = True, indices: Optional[Sequence[int]] = None,
                 transform: Optional[StereoTransform] = None) -> None:
        super().__init__(transform)
        if year not in (2012, 2015):
            raise ValueError(f"KITTI year must be 2012 or 2015, got {year}")
        left_dir, right_dir = ("image_2", "image_3") if year == 2015 else ("colored_0", "colored_1")
        disp_dir = ("disp_occ_0" if occluded else "disp_noc_0") if year == 2015 else \
            ("disp_occ" if occluded else "disp_noc")
        expected = f"KITTI {year}: {split}/{left_dir}/*_10.png, {split}/{right_dir}/, {split}/{disp_dir}/"
        base = _require_dir(root, expected)
        sdir = base / split
        if not (sdir / left_dir).is_dir() or not (sdir / right_dir).is_dir():
            raise DatasetError(f"'{root}' is not a KITTI {year} root; expected {expected}")
        has_gt = (sdir / disp_dir).is_dir()
        for left in sorted((sdir / left_dir).glob("*_10.png")):
            right = sdir / right_dir / left.name
            disp = sdir / disp_dir / left.name
            if right.exists():
                self.items.append((str(left), str(right), str(disp) if has_gt and disp.exists() else None, None))
        if indices is not None:
            self.items = [self.items[i] for i in indices if 0 <= i < len(self.items)]
        self._check_nonempty(root, expected)


# ----------------------------------------------------------------------------- Middlebury

class Middlebury(StereoDataset):
    """Middlebury 2014 (and 2021) scenes.

    Layout: ``root/<scene>/im0.png, im1.png, disp0.pfm (inf = unknown), calib.txt``
    (optionally ``disp1.pfm``). ``scale`` resizes (e.g. 0.25 for quarter resolution of the
    ~3000 px full-size scenes); disparity values scale with it. ``ndisp`` from calib.txt
    (the scene's disparity bound, pixels at full size) is kept in :attr:`ndisp`.
    """

    name = "middlebury"

    def __init__(self, root: PathLike, scenes: Optional[Sequence[str]] = None,
                 transform: Optional[StereoTransform] = None, with_right: bool = False) -> None:
        super().__init__(transform)
        expected = "<scene>/im0.png, <scene>/im1.png, <scene>/disp0.pfm, <scene>/calib.txt"
        base = _require_dir(root, expected)
        self.ndisp: List[int] = []
        for sdir in sorted(p for p in base.iterdir() if p.is_dir()):
            if scenes is not None and sdir.name not in scenes:
                continue
            im0, im1, d0 = sdir / "im0.png", sdir / "im1.png", sdir / "disp0.pfm"
            if not (im0.exists() and im1.exists()):
                continue
            calib = sdir / "calib.txt"
            if not calib.exists():
                raise DatasetError(f"Middlebury scene '{sdir}' has no calib.txt")
            c = read_middlebury_calib(calib)
            if "ndisp" not in c:
                raise DatasetError(f"'{calib}' has no ndisp= line")
            d1 = sdir / "disp1.pfm"
            self.items.append((str(im0), str(im1), str(d0) if d0.exists() else None,
                               str(d1) if with_right and d1.exists() else None))
            self.ndisp.append(int(float(c["ndisp"])))
        self._check_nonempty(root, expected)


# ----------------------------------------------------------------------------- folder

class FolderPairs(StereoDataset):
    """A folder of rectified pairs, in either of two layouts:

    - flat: ``root/left/<name>.<img>``, ``root/right/<name>.<img>`` and optional
      ``root/disp/<stem>.pfm|.png|.npy``;
    - one folder per pair (the layout of the project's shared data and of
      ``stereonet-eval`` exports): ``root/<pair>/left.<img>``, ``right.<img>``, optional
      ``disparity.png|.pfm|.npy`` and ``meta.json`` whose ``family`` (else the pair folder's
      name up to its first ``_``) names the pair's source, e.g. ``kitti2012``.

    PNG disparity = uint16 / ``png_scale``, 0 = invalid. ``families`` keeps only pairs of
    those families (per-pair layout). :attr:`families` lists each item's family.
    """

    name = "folder"

    def __init__(self, root: PathLike, transform: Optional[StereoTransform] = None,
                 png_scale: float = 256.0, require_disp: bool = False,
                 families: Optional[Sequence[str]] = None) -> None:
        super().__init__(transform)
        expected = ("left/ and right/ folders with images of the same names (optional disp/), "
                    "or one folder per pair with left.png, right.png (optional disparity.png)")
        base = _require_dir(root, expected)
        self.png_scale = png_scale
        self.families: List[str] = []
        ldir, rdir = base / "left", base / "right"
        if ldir.is_dir() and rdir.is_dir():
            self._flat(base, require_disp)
        else:
            self._per_pair(base, require_disp, families)
        if not self.items and families is not None:
            raise DatasetError(f"folder dataset '{root}' has no pair of families {list(families)}")
        self._check_nonempty(root, expected)

    def keep(self, indices: Sequence[int]) -> None:
        super().keep(indices)
        self.families = [self.families[i] for i in indices]

    def _flat(self, base: Path, require_disp: bool) -> None:
        ldir, rdir, ddir = base / "left", base / "right", base / "disp"
        for left in sorted(ldir.iterdir()):
            if left.suffix.lower() not in IMAGE_EXTS:
                continue
            right = rdir / left.name
            if not right.exists():
                raise DatasetError(f"'{left}' has no right image '{right}'")
            disp = _first_existing(ddir, left.stem, (".pfm", ".png", ".npy"))
            if require_disp and disp is None:
                raise DatasetError(f"'{left}' has no disparity in '{ddir}' (.pfm/.png/.npy)")
            self.items.append((str(left), str(right), disp, None))
            self.families.append(base.name)

    def _per_pair(self, base: Path, require_disp: bool, families: Optional[Sequence[str]]) -> None:
        import json

        for pdir in sorted(p for p in base.iterdir() if p.is_dir()):
            left = _first_existing(pdir, "left", IMAGE_EXTS)
            right = _first_existing(pdir, "right", IMAGE_EXTS)
            if left is None:
                continue
            if right is None:
                raise DatasetError(f"pair folder '{pdir}' has a left image but no right.<img>")
            family = pdir.name.split("_")[0]
            meta = pdir / "meta.json"
            if meta.exists():
                family = str(json.loads(meta.read_text()).get("family", family))
            if families is not None and family not in families:
                continue
            disp = _first_existing(pdir, "disparity", (".png", ".pfm", ".npy"))
            if require_disp and disp is None:
                raise DatasetError(f"pair folder '{pdir}' has no disparity.png/.pfm/.npy")
            self.items.append((left, right, disp, None))
            self.families.append(family)


def family_split(families: Sequence[str], train_families: Sequence[str], val_every: int,
                 role: str) -> List[int]:
    """Indices of the ``role`` ('train' or 'val') split of items whose families are given.

    Every ``val_every``-th item (counted within its family, in order) of a training family is
    validation; items of any other family are validation only. The rule is deterministic, so
    training (``StereoDataModule``) and measurement (``training.measure``) agree on it.
    """
    if role not in ("train", "val"):
        raise ValueError(f"role must be 'train' or 'val', got {role!r}")
    if val_every < 1:
        raise ValueError(f"val_every must be >= 1, got {val_every}")
    train_fams = set(train_families)
    seen: Dict[str, int] = {}
    keep = []
    for i, fam in enumerate(families):
        j = seen.get(fam, 0)
        seen[fam] = j + 1
        is_val = fam not in train_fams or j % val_every == 0
        if is_val == (role == "val"):
            keep.append(i)
    return keep


def _first_existing(folder: Path, stem: str, exts: Sequence[str]) -> Optional[str]:
    for ext in exts:
        if (folder / (stem + ext)).exists():
            return str(folder / (stem + ext))
    return None


class BagPairs(Dataset):
    """The stereo pairs of a rosbag (ROS 2 sqlite3/MCAP or ROS 1), read with the project's
    bag reader (left/right paired by exact stamp), for fine-tuning on one's own camera.

    Images are decoded once into memory (``limit`` caps the pair count; ``every`` keeps
    every n-th pair: consecutive video frames are near duplicates). Ground truth is used
    where the bag has it, else ``disp`` is NaN (self-supervised training).
    """

    name = "bag"

    def __init__(self, path: PathLike, transform: Optional[StereoTransform] = None,
                 topics: Optional[Dict[str, str]] = None, limit: Optional[int] = None,
                 every: int = 1) -> None:
        from stereonet_ros.tools.bag import BagError, StereoTopics, read_stereo_frames
        from stereonet_ros.imageconv import image_to_numpy, is_compressed, to_rgb_float

        self.transform = transform or StereoTransform()
        try:
            tp = StereoTopics(**(topics or {}))
        except TypeError as exc:
            raise DatasetError(f"bag topics {topics}: {exc}") from exc
        self.samples: List[Sample] = []
        self.skipped: List[str] = []   # pairs left out, with the reason
        try:
            for i, fr in enumerate(read_stereo_frames(path, tp)):
                if i % max(1, every):
                    continue
                if is_compressed(fr.left) or is_compressed(fr.right):
                    # the reader keeps a compressed image it could not decode (fr.problems)
                    self.skipped.append(f"pair {i}: {'; '.join(fr.problems) or 'undecodable image'}")
                    continue
                left = to_rgb_float(image_to_numpy(fr.left), fr.left.encoding)
                right = to_rgb_float(image_to_numpy(fr.right), fr.right.encoding)
                disp = fr.gt_disparity if fr.gt_disparity is not None else \
                    np.full(left.shape[:2], np.nan, np.float32)
                self.samples.append({"left": left, "right": right, "disp": disp})
                if limit and len(self.samples) >= limit:
                    break
        except BagError as exc:
            raise DatasetError(f"bag '{path}': {exc}") from exc
        if not self.samples:
            raise DatasetError(f"bag '{path}' holds no stereo pair on {tp.left} / {tp.right}")

    def __len__(self) -> int:
        return len(self.samples)

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only these pairs, in this order (a train/val split)."""
        self.samples = [self.samples[i] for i in indices]

    def load(self, index: int) -> Sample:
        return dict(self.samples[index])

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))
        return to_tensors(self.transform(self.load(index), rng))


class SgbmLabels(Dataset):
    """Wraps a dataset of pairs without ground truth (anything with ``load(i)`` and a
    ``transform``): ``disp`` becomes sparse labels from the project's SGBM baseline (its own
    left-right check, uniqueness and speckle filters; holes NaN), computed once per pair on
    the full image before cropping (cached) so a crop is not robbed of SGBM's left border.
    Pixels with real ground truth keep it."""

    def __init__(self, base: Dataset, max_disparity: float) -> None:
        if not hasattr(base, "load") or not hasattr(base, "transform"):
            raise TypeError(f"SgbmLabels needs a dataset with load() and transform, got {type(base).__name__}")
        self.base = base
        self.max_disparity = float(max_disparity)
        self._labels: Dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def load(self, index: int) -> Sample:
        from stereonet_ros.tools.baseline import sgbm_disparity

        s = dict(self.base.load(index))  # type: ignore[attr-defined]
        if index not in self._labels:
            self._labels[index] = sgbm_disparity(s["left"], s["right"], self.max_disparity)
        gt = s.get("disp")
        lab = self._labels[index]
        s["disp"] = lab if gt is None else np.where(np.isfinite(gt), gt, lab).astype(np.float32)
        return s

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))
        return to_tensors(self.base.transform(self.load(index), rng))  # type: ignore[attr-defined]


class MixedStereo(Dataset):
    """Several training sources mixed by weight: sample ``i`` comes from source ``k`` with
    probability ``weights[k] / sum(weights)`` (decided by a hash of ``i``, so fixed per index;
    the loader's shuffling mixes them) and is that source's item ``i mod len(source)``.
    ``length`` sets the epoch size, independent of the (small) real sets. Only the keys all
    sources share are kept, so they collate into one batch."""

    def __init__(self, sources: Sequence[Dataset], weights: Sequence[float], length: int) -> None:
        if len(sources) != len(weights) or not sources:
            raise ValueError(f"need one weight per source, got {len(sources)} sources and {len(weights)} weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
        self.sources = list(sources)
        total = float(sum(weights))
        self.bounds = np.cumsum([w / total for w in weights])
        self.length = int(length)
        self.keys: Optional[Tuple[str, ...]] = None

    def __len__(self) -> int:
        return self.length

    def source_of(self, index: int) -> int:
        u = ((index * 2654435761) % 2 ** 32) / 2 ** 32   # Knuth's multiplicative hash
        return int(min(np.searchsorted(self.bounds, u, side="right"), len(self.sources) - 1))

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        src = self.sources[self.source_of(index)]
        s = src[index % len(src)]  # type: ignore[arg-type]
        if self.keys is None:  # the keys every source gives, from one sample of each
            keys = set(s)
            for other in self.sources:
                keys &= set(other[0])  # type: ignore[index]
            self.keys = tuple(sorted(keys))
        return {k: s[k] for k in self.keys}


# ----------------------------------------------------------------------------- synthetic

class SyntheticStereo(Dataset):
    """Index-addressable procedural scenes: sample ``i`` is ``render_scene(seed_base + i)``.

    Disjoint ``seed_base`` ranges give disjoint train / val splits. Samples carry exact
    ``disp`` and ``disp_right``. The transform (crop / photometric) is optional: scenes are
    rendered at ``config.height x config.width`` already.
    """

    name = "synthetic"

    def __init__(self, length: int, seed_base: int = 0, config: Optional[SyntheticConfig] = None,
                 transform: Optional[StereoTransform] = None) -> None:
        if length <= 0:
            raise DatasetError(f"synthetic dataset length must be > 0, got {length}")
        self.length = int(length)
        self.seed_base = int(seed_base)
        self.config = config or SyntheticConfig()
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return render_scene(self.seed_base + index, self.config)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        s = self.load(index)
        if self.transform is not None:
            # Seeded by the sample so validation is deterministic; training varies the
            # augmentation via the scene itself (every index is a new scene).
            s = self.transform(s, np.random.default_rng(self.seed_base + index + 7919))
        return to_tensors(s)


DATASETS: Dict[str, Callable[..., Dataset]] = {  # noqa: E305
    "synthetic": SyntheticStereo, "sceneflow": SceneFlow, "kitti": KITTI,
    "middlebury": Middlebury, "folder": FolderPairs,
}
