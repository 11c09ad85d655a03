"""LightningDataModule: picks a dataset by name and builds train / val / test loaders.

Datasets (``dataset`` / ``val_dataset``): ``synthetic`` (no files), ``sceneflow``, ``kitti2012``,
``kitti2015``, ``middlebury``, ``folder``. Real datasets read ``root`` (and ``val_root`` if
given, else a deterministic split of ``root``: every ``val_every``-th frame is validation).
Training samples are randomly cropped to ``crop_height x crop_width`` (identical window for
both views and both disparity maps) with photometric augmentation; evaluation samples are
centre-cropped to multiples of the network divisor.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .datasets import (KITTI, BagPairs, FolderPairs, Middlebury, MixedStereo, SceneFlow, SgbmLabels,
                       SyntheticStereo, family_split)
from stereonet_ros.tools.synthetic import SyntheticConfig
from .transforms import StereoTransform

NAMES = ("synthetic", "sceneflow", "kitti2012", "kitti2015", "middlebury", "folder", "bag")


class StereoDataModule(pl.LightningDataModule):
    """All arguments are plain values (they are stored in checkpoints).

    Args:
        dataset: training dataset name (see module docstring).
        root: its root folder (not used by ``synthetic``).
        val_dataset / val_root: validation set (default: same dataset, held-out split).
        crop_height, crop_width: training crop (pixels; multiples of 2^k). For ``synthetic``
            scenes are rendered at this size.
        val_height, val_width: synthetic validation scene size (default: the crop size);
            for real data an optional centred evaluation crop.
        scale: resize factor applied before cropping (disparity values scale with it).
        batch_size, val_batch_size, num_workers: loaders.
        train_size / val_size: number of synthetic scenes (train seeds ``seed_base + i``,
            val seeds ``val_seed_base + i``; the ranges must not overlap).
        max_disparity: synthetic scenes sample disparities in [0, max_disparity) (pixels).
        synthetic: overrides of :class:`stereonet_ros.tools.synthetic.SyntheticConfig` fields.
        augment, photometric_strength, grey_prob: training augmentation.
        flip_swap_prob: probability of mirroring a training sample that has a right disparity
            into a swapped pair (right-view supervision without the network's right pass;
            use with the model's right_weight 0).
        in_channels: 1 converts images to grey.
        divisor: network input multiple (2^k).
        sceneflow_pass, kitti_occluded, val_every: dataset options.
        families: ``folder`` datasets in the one-folder-per-pair layout: train on these
            families only (e.g. ``[kitti2012]``); the others are validation-only.
        val_families: families in the validation set (None = all). Validation holds every
            ``val_every``-th pair of each training family and all pairs of other families;
            training never sees a validation pair.
        synthetic_fraction: share of training samples that are synthetic scenes (rendered at
            the crop size with ``synthetic`` overrides) mixed into a real dataset.
        epoch_size: samples per training epoch of a mixed set (real sets are small).
        bag_topics: ``bag`` datasets: topic names (keys of ``stereonet_ros.tools.bag.StereoTopics``);
            bag_every keeps every n-th pair, bag_limit caps how many are loaded.
        sgbm_labels: training pairs without ground truth get sparse, left-right-checked SGBM
            labels (for self-supervised fine-tuning).
        label_root / label_fraction: a further folder of real pairs *without* ground truth
            (either folder layout), trained on with SGBM labels, as this share of the mixed
            training samples (real pairs of other domains than the labelled set).
    """

    def __init__(self, dataset: str = "synthetic", root: Optional[str] = None,
                 val_dataset: Optional[str] = None, val_root: Optional[str] = None,
                 crop_height: int = 192, crop_width: int = 384,
                 val_height: Optional[int] = None, val_width: Optional[int] = None,
                 scale: float = 1.0, batch_size: int = 4, val_batch_size: int = 2,
                 num_workers: int = 1, train_size: int = 1_000_000, val_size: int = 64,
                 seed_base: int = 0, val_seed_base: int = 1_000_000_000,
                 max_disparity: int = 192, synthetic: Optional[Dict[str, Any]] = None,
                 augment: bool = True, photometric_strength: float = 0.5, grey_prob: float = 0.1,
                 flip_swap_prob: float = 0.0,
                 in_channels: int = 3, divisor: int = 8, sceneflow_pass: str = "frames_cleanpass",
                 kitti_occluded: bool = True, val_every: int = 10,
                 families: Optional[List[str]] = None, val_families: Optional[List[str]] = None,
                 synthetic_fraction: float = 0.0, epoch_size: int = 10000,
                 bag_topics: Optional[Dict[str, str]] = None, bag_every: int = 1,
                 bag_limit: Optional[int] = None, sgbm_labels: bool = False,
                 label_root: Optional[str] = None, label_fraction: float = 0.0) -> None:
        super().__init__()
        for n in (dataset, val_dataset):
            if n is not None and n not in NAMES:
                raise ValueError(f"unknown dataset {n!r}; choose from {NAMES}")
        if crop_height % divisor or crop_width % divisor:
            raise ValueError(f"crop {crop_height}x{crop_width} must be a multiple of {divisor}")
        if dataset == "synthetic" and seed_base < val_seed_base < seed_base + train_size:
            raise ValueError("synthetic train and val seed ranges overlap: "
                             f"[{seed_base}, {seed_base + train_size}) contains {val_seed_base}")
        self.save_hyperparameters()
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None

    # ------------------------------------------------------------------ builders
    def _synthetic_config(self, height: int, width: int) -> SyntheticConfig:
        hp = self.hparams
        kw = dict(hp.synthetic or {})
        kw.setdefault("max_disparity", float(hp.max_disparity))
        return SyntheticConfig(height=height, width=width, **kw)

    def _synthetic_transform(self) -> Optional[StereoTransform]:
        hp = self.hparams
        if not hp.augment:
            return None
        return StereoTransform(None, 1.0, augment=True, photometric_strength=hp.photometric_strength,
                               grey_prob=hp.grey_prob, grey=hp.in_channels == 1, divisor=hp.divisor,
                               flip_swap_prob=hp.flip_swap_prob)

    def _train_transform(self) -> StereoTransform:
        hp = self.hparams
        return StereoTransform((hp.crop_height, hp.crop_width), hp.scale, augment=hp.augment,
                               photometric_strength=hp.photometric_strength, grey_prob=hp.grey_prob,
                               grey=hp.in_channels == 1, divisor=hp.divisor,
                               flip_swap_prob=hp.flip_swap_prob)

    def _real(self, name: str, root: Optional[str], train: bool, split_role: Optional[str]) -> Dataset:
        """A real dataset; ``split_role`` 'train'/'val' takes a deterministic split of root."""
        hp = self.hparams
        if not root:
            raise ValueError(f"dataset {name!r} needs a root folder (data.root / data.val_root)")
        if train:
            tf = self._train_transform()
        else:
            size = (hp.val_height, hp.val_width) if hp.val_height and hp.val_width else None
            tf = StereoTransform(size, hp.scale, augment=False, grey=hp.in_channels == 1,
                                 divisor=hp.divisor)
        if name == "sceneflow":
            return SceneFlow(root, split="train" if train else "test", render_pass=hp.sceneflow_pass,
                             transform=tf)
        if name in ("kitti2012", "kitti2015"):
            ds = KITTI(root, year=int(name[-4:]), occluded=hp.kitti_occluded, transform=tf)
        elif name == "middlebury":
            ds = Middlebury(root, transform=tf)
        elif name == "bag":
            ds = BagPairs(root, transform=tf, topics=hp.bag_topics, limit=hp.bag_limit, every=hp.bag_every)
        else:
            ds = FolderPairs(root, transform=tf,
                             families=hp.families if train else hp.val_families)
        if split_role is not None:
            # One rule for every dataset (training.datasets.family_split). Without data.families
            # all items count as one family: every val_every-th item is validation.
            n = len(ds)
            by_family = hp.families is not None and hasattr(ds, "families")  # folder datasets
            fams = list(ds.families) if by_family else [name] * n  # type: ignore[attr-defined]
            keep = family_split(fams, hp.families if by_family else [name], hp.val_every, split_role)
            if not keep:
                raise ValueError(f"{name} split '{split_role}' of '{root}' is empty ({n} frames)")
            ds.keep(keep)  # type: ignore[attr-defined]
        return ds

    def setup(self, stage: Optional[str] = None) -> None:
        hp = self.hparams
        vname = hp.val_dataset or hp.dataset
        if stage in (None, "fit") and self.train_set is None:
            if hp.dataset == "synthetic":
                self.train_set = SyntheticStereo(hp.train_size, hp.seed_base,
                                                 self._synthetic_config(hp.crop_height, hp.crop_width),
                                                 self._synthetic_transform())
            else:
                split = "train" if (hp.dataset != "sceneflow" and not hp.val_root
                                    and vname == hp.dataset) else None
                self.train_set = self._real(hp.dataset, hp.root, True, split)
                if hp.sgbm_labels:
                    self.train_set = SgbmLabels(self.train_set, float(hp.max_disparity))
                sources, weights = [self.train_set], [1.0 - hp.synthetic_fraction - hp.label_fraction]
                if hp.synthetic_fraction > 0:
                    sources.append(SyntheticStereo(hp.train_size, hp.seed_base,
                                                   self._synthetic_config(hp.crop_height, hp.crop_width),
                                                   self._synthetic_transform()))
                    weights.append(hp.synthetic_fraction)
                if hp.label_fraction > 0:
                    if not hp.label_root:
                        raise ValueError("data.label_fraction > 0 needs data.label_root (pairs without gt)")
                    unlabelled = FolderPairs(hp.label_root, transform=self._train_transform())
                    sources.append(SgbmLabels(unlabelled, float(hp.max_disparity)))
                    weights.append(hp.label_fraction)
                if len(sources) > 1:
                    if weights[0] < 0:
                        raise ValueError("data.synthetic_fraction + data.label_fraction must be <= 1")
                    self.train_set = MixedStereo(sources, weights, hp.epoch_size)
        if self.val_set is None:
            if vname == "synthetic":
                tf = StereoTransform(None, grey=hp.in_channels == 1, divisor=hp.divisor)
                self.val_set = SyntheticStereo(hp.val_size, hp.val_seed_base, self._synthetic_config(
                    hp.val_height or hp.crop_height, hp.val_width or hp.crop_width), tf)
            else:
                root = hp.val_root or hp.root
                split = "val" if (vname != "sceneflow" and not hp.val_root) else None
                self.val_set = self._real(vname, root, False, split)

    # ------------------------------------------------------------------ loaders
    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        hp = self.hparams
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, drop_last=shuffle,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return self._loader(self.train_set, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return self._loader(self.val_set, self.hparams.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def describe(self) -> Dict[str, Any]:
        """Plain summary stored in checkpoints (what the model was trained on)."""
        hp = self.hparams
        return {"dataset": hp.dataset, "root": hp.root, "val_dataset": hp.val_dataset or hp.dataset,
                "crop": [hp.crop_height, hp.crop_width], "batch_size": hp.batch_size,
                "seed_base": hp.seed_base, "val_seed_base": hp.val_seed_base,
                "synthetic": dict(hp.synthetic or {}), "families": hp.families,
                "synthetic_fraction": hp.synthetic_fraction,
                "label_root": hp.label_root, "label_fraction": hp.label_fraction}
