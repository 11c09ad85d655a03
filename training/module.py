"""LightningModule around ``stereonet_ros.model.StereoNet`` (the network is never redefined).

Training supervises every level of the left AND right disparity pyramids (paper Sec. 3.4):
each level (full-resolution pixels already) is bilinearly upsampled to the ground truth's
size and compared with Barron's robust loss, over valid ground truth only (finite, >= 0,
< max_disparity; KITTI's zeros are NaN after loading). Validation/test report the metrics of
``stereonet_ros.metrics`` on the final disparity.

Checkpoints carry ``checkpoint["stereonet"] = stereonet_ros.checkpoint.metadata(...)`` so the
ROS node loads a Lightning checkpoint as is; hyper-parameters are plain numbers/strings/lists
(the loader uses ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from stereonet_ros.checkpoint import Normalization, load_checkpoint, metadata
from stereonet_ros.metrics import disparity_metrics, mean_metrics
from stereonet_ros.model import StereoNet, StereoNetConfig, widen_refiner_heads

from .loss import (distribution_cross_entropy, left_right_consistency_loss, photometric_loss,
                   robust_loss, smoothness_loss)

LOGGED_METRICS = ("epe", "d1", "bad0.5", "bad1", "bad2", "bad4")


def valid_mask(gt: torch.Tensor, max_disparity: float, zero_is_invalid: bool = False) -> torch.Tensor:
    """Ground-truth pixels that supervise: finite, >= 0 (> 0 for KITTI-style), < max_disparity."""
    m = torch.isfinite(gt) & (gt >= 0) & (gt < max_disparity)
    if zero_is_invalid:
        m &= gt > 0
    return m


def pyramid_loss(levels: Sequence[torch.Tensor], gt: torch.Tensor, max_disparity: float,
                 alpha: float = 1.0, c: float = 2.0, weights: Optional[Sequence[float]] = None,
                 zero_is_invalid: bool = False, upsample: Optional[Any] = None) -> torch.Tensor:
    """Sum over pyramid levels of the mean robust loss at ground-truth resolution.

    ``levels``: (B,1,h_i,w_i) disparities in full-resolution pixels (no value rescaling when
    upsampling). ``gt``: (B,1,H,W) pixels, invalid = non-finite. ``upsample(d, level, size)``
    brings level ``level`` to the ground truth's size (default: plain bilinear; the module
    passes ``StereoNet.upsample_level``, which knows each level's grid). Returns a scalar; 0
    (with a graph) when no pixel is valid.
    """
    mask = valid_mask(gt, max_disparity, zero_is_invalid)
    n = mask.sum()
    gt0 = torch.where(mask, gt, torch.zeros_like(gt))
    total = levels[0].new_zeros(())
    for i, d in enumerate(levels):
        if upsample is not None:
            d = upsample(d, i, tuple(gt.shape[-2:]))
        elif d.shape[-2:] != gt.shape[-2:]:
            d = F.interpolate(d, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        rho = robust_loss(d - gt0, alpha, c)
        lvl = (rho * mask).sum() / n.clamp(min=1)
        total = total + (1.0 if weights is None else float(weights[i])) * lvl
    return total


def colorize(disp: np.ndarray, vmax: float) -> np.ndarray:
    """(H,W) pixels -> (3,H,W) uint8 RGB for TensorBoard, with the node's colour map
    (``stereonet_ros.messages.colorize_disparity``, 0..vmax; non-finite = black)."""
    from stereonet_ros.messages import colorize_disparity

    d = np.asarray(disp, np.float32)
    bgr = colorize_disparity(np.nan_to_num(d, nan=0.0), np.isfinite(d), 0.0, vmax)
    return np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))


def lr_factor_fn(scheduler: str, *, warmup_steps: int, total_steps: int, min_ratio: float,
                 gamma: float) -> Any:
    """Learning-rate multiplier as a function of the step (or epoch) index.

    Linear warm-up from ~0 to 1 over ``warmup_steps``, then ``cosine`` (1 -> ``min_ratio`` at
    ``total_steps``, held after), ``exponential`` (``gamma`` per index after warm-up) or
    ``none`` (1).
    """
    def factor(i: int) -> float:
        if i < warmup_steps:
            return (i + 1) / (warmup_steps + 1)
        if scheduler == "cosine":
            span = max(1, total_steps - warmup_steps)
            t = min(1.0, (i - warmup_steps) / span)
            return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
        if scheduler == "exponential":
            return gamma ** (i - warmup_steps)
        return 1.0
    return factor


class StereoNetModule(pl.LightningModule):
    """Thin Lightning wrapper: ``self.model`` is a plain :class:`StereoNet`.

    Args (all plain values, stored as hyper-parameters):
        in_channels, k, max_disparity, features, refinement_levels, aligned_coarse,
        warp_refinement, warp_offsets:
            ``StereoNetConfig`` (max_disparity in full-resolution pixels, exclusive).
        mean, std: input normalisation per channel on [0, 1] pixels (None = 0.5 / 0.25).
        loss_alpha, loss_c: Barron loss shape and scale (pixels); paper: 1 and 2.
        right_weight: weight of the right-view pyramid loss (0 disables the right pass).
        level_weights: per-level loss weights coarse->fine (None = all 1).
        zero_is_invalid: also mask gt == 0 (sparse KITTI-style maps loaded without NaN).
        ce_weight: weight of the cross-entropy between the coarse matching distribution and
            a target built from the ground truth (0 disables); ce_target 'twohot' | 'laplace',
            ce_laplace_scale in candidate bins. Logged as ``train/loss_ce``.
        coarse_only: train the matching layers alone (no refiners run): cheap steps that
            teach matching first; a later stage starts from these weights.
        matching_lr_scale: learning-rate factor of the feature extractor and cost filter
            (e.g. 0.1 while refiners learn on top of an already trained matcher).
        self_supervised: learn from pairs without ground truth (adapt to a camera): the
            photometric reconstruction of the left view from the right through every pyramid
            level (SSIM + L1, ``photo_weight``), edge-aware smoothness (``smooth_weight``) and
            left-right consistency (``lr_weight``, runs the right view too). Any finite
            ``disp`` in the batch (e.g. left-right-checked SGBM labels from the data module's
            ``sgbm_labels``) adds the robust loss times ``label_weight``.
        optimizer: 'adamw' | 'adam' | 'rmsprop' | 'sgd'; lr, weight_decay.
        scheduler: 'cosine' | 'exponential' | 'none'. ``warmup_steps`` ramps the rate
            linearly from 0 (any scheduler): adaptive optimisers start with no gradient
            statistics, so full-rate first steps are far larger than intended. cosine anneals
            to lr*min_lr_ratio at ``cosine_steps`` (steps, warm-up included); exponential
            multiplies by lr_gamma per ``scheduler_interval`` ('step' or 'epoch').
        num_log_images: validation samples sent to TensorBoard per epoch.
    """

    def __init__(self, in_channels: int = 3, k: int = 3, max_disparity: int = 192,
                 features: int = 16, refinement_levels: Optional[int] = None,
                 aligned_coarse: bool = True, warp_refinement: bool = True, warp_offsets: int = 0,
                 mean: Optional[List[float]] = None, std: Optional[List[float]] = None,
                 loss_alpha: float = 1.0, loss_c: float = 2.0, right_weight: float = 1.0,
                 level_weights: Optional[List[float]] = None, zero_is_invalid: bool = False,
                 ce_weight: float = 0.0, ce_target: str = "twohot", ce_laplace_scale: float = 1.0,
                 coarse_only: bool = False, matching_lr_scale: float = 1.0,
                 self_supervised: bool = False, photo_weight: float = 1.0,
                 smooth_weight: float = 0.05, lr_weight: float = 0.05, label_weight: float = 0.1,
                 optimizer: str = "adamw", lr: float = 5e-4, weight_decay: float = 1e-4,
                 scheduler: str = "cosine", lr_gamma: float = 0.9998,
                 scheduler_interval: str = "step", cosine_steps: int = 10000,
                 min_lr_ratio: float = 0.02, warmup_steps: int = 100, num_log_images: int = 2,
                 init_weights: Optional[str] = None) -> None:
        """``init_weights``: start from the weights of this checkpoint (exported ``.pt`` or
        Lightning ``.ckpt``; architecture and normalisation must match) with a fresh
        optimiser and schedule, e.g. to fine-tune the shipped model on KITTI. To continue an
        interrupted run with its optimiser state, use ``--ckpt_path`` instead."""
        super().__init__()
        self.save_hyperparameters()
        self.config = StereoNetConfig(in_channels=in_channels, k=k, max_disparity=max_disparity,
                                      features=features, refinement_levels=refinement_levels,
                                      aligned_coarse=aligned_coarse, warp_refinement=warp_refinement,
                                      warp_offsets=warp_offsets)
        self.model = StereoNet(self.config)
        default = Normalization()
        self.normalization = Normalization(
            mean=list(mean) if mean is not None else default.mean[:in_channels],
            std=list(std) if std is not None else default.std[:in_channels])
        if len(self.normalization.mean) != in_channels or len(self.normalization.std) != in_channels:
            raise ValueError(f"mean/std need {in_channels} values, got {self.normalization.to_dict()}")
        self.register_buffer("_mean", torch.tensor(self.normalization.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.normalization.std).view(1, -1, 1, 1), persistent=False)
        if ce_target not in ("twohot", "laplace"):
            raise ValueError(f"ce_target must be 'twohot' or 'laplace', got {ce_target!r}")
        self._val_frames: List[Dict[str, float]] = []
        self._last_val: Dict[str, float] = {}
        if init_weights:
            self._load_init_weights(init_weights)

    def _load_init_weights(self, path: str) -> None:
        loaded = load_checkpoint(path)  # CheckpointError names the file and the problem
        # aligned_coarse changes no weight (only how the coarse level is resampled), so a
        # stage may switch it on over weights trained without it.
        if loaded.config.aligned_coarse != self.config.aligned_coarse:
            from lightning.pytorch.utilities import rank_zero_warn
            rank_zero_warn(f"init_weights '{path}' was trained with aligned_coarse={loaded.config.aligned_coarse}; "
                           f"this run uses {self.config.aligned_coarse} (the coarse level moves by 3.5 px at "
                           "k=3, which the refiners re-learn): set model.aligned_coarse to choose")
        # Residual channels may be added over weights trained with fewer (warp_refinement
        # switched on, more warp_offsets): the new input channels start at zero weight, so
        # training starts from the loaded model. Dropping trained channels is refused.
        have, want = loaded.config, self.config
        adds_only = have.warp_offsets <= want.warp_offsets and have.warp_refinement <= want.warp_refinement
        if not adds_only or replace(have, aligned_coarse=want.aligned_coarse, warp_refinement=want.warp_refinement,
                                    warp_offsets=want.warp_offsets) != want:
            raise ValueError(f"init_weights '{path}' has architecture {have.to_dict()}, "
                             f"but the model is configured as {want.to_dict()}")
        if loaded.normalization.to_dict() != self.normalization.to_dict():
            raise ValueError(f"init_weights '{path}' was trained with normalisation "
                             f"{loaded.normalization.to_dict()}, the model uses {self.normalization.to_dict()}")
        state = loaded.model.state_dict()
        if have.refiner_inputs < want.refiner_inputs:
            state = widen_refiner_heads(state, refiner_inputs=want.refiner_inputs)
        self.model.load_state_dict(state)

    # ------------------------------------------------------------------ forward
    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self._mean) / self._std

    def forward(self, left: torch.Tensor, right: torch.Tensor, with_right: bool = False,
                **kwargs: Any) -> Dict[str, Any]:
        """``left``/``right`` in [0, 1]; returns the StereoNet output dict (``kwargs`` go to
        :meth:`StereoNet.forward`)."""
        return self.model(self.normalize(left), self.normalize(right), with_right=with_right, **kwargs)

    def _ce(self, cost: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        mask = valid_mask(gt, float(hp.max_disparity), hp.zero_is_invalid)
        full = self.model.upsample_level(cost, 0, tuple(gt.shape[-2:]))
        return distribution_cross_entropy(full, gt, mask, float(self.model.divisor), hp.ce_target,
                                          hp.ce_laplace_scale)

    def self_supervised_loss(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Losses without ground truth (see the class docstring), on [0, 1] images."""
        hp = self.hparams
        left, right = batch["left"], batch["right"]
        use_lr = hp.lr_weight > 0
        out = self(left, right, with_right=use_lr, refine=not hp.coarse_only)
        size = left.shape[-2:]
        photo = left.new_zeros(())
        for i, d in enumerate(out["disparities"]):
            photo = photo + photometric_loss(left, right, self.model.upsample_level(d, i, tuple(size)))
        final = out["disparity"]
        smooth = smoothness_loss(final, left)
        losses = {"loss_photo": photo, "loss_smooth": smooth,
                  "loss": hp.photo_weight * photo + hp.smooth_weight * smooth, "disparity": final}
        if use_lr:
            losses["loss_lr"] = left_right_consistency_loss(final, out["right_disparity"])
            losses["loss"] = losses["loss"] + hp.lr_weight * losses["loss_lr"]
        labels = batch.get("disp")
        if hp.label_weight > 0 and labels is not None and bool(torch.isfinite(labels).any()):
            lab = pyramid_loss(out["disparities"], labels, float(hp.max_disparity), hp.loss_alpha, hp.loss_c,
                               upsample=self.model.upsample_level)
            losses["loss_labels"] = lab
            losses["loss"] = losses["loss"] + hp.label_weight * lab
        return losses

    def compute_loss(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        hp = self.hparams
        if hp.self_supervised:
            return self.self_supervised_loss(batch)
        use_right = hp.right_weight > 0 and "disp_right" in batch
        use_ce = hp.ce_weight > 0
        out = self(batch["left"], batch["right"], with_right=use_right,
                   refine=not hp.coarse_only, with_cost=use_ce)
        kw = dict(max_disparity=float(hp.max_disparity), alpha=hp.loss_alpha, c=hp.loss_c,
                  weights=hp.level_weights, zero_is_invalid=hp.zero_is_invalid,
                  upsample=self.model.upsample_level)
        loss_l = pyramid_loss(out["disparities"], batch["disp"], **kw)
        losses = {"loss_left": loss_l, "loss": loss_l}
        if use_ce:
            ce = self._ce(out["cost"], batch["disp"])
            if use_right:
                ce = ce + hp.right_weight * self._ce(out["right_cost"], batch["disp_right"])
            losses["loss_ce"] = ce
            losses["loss"] = losses["loss"] + hp.ce_weight * ce
        if use_right:
            loss_r = pyramid_loss(out["right_disparities"], batch["disp_right"], **kw)
            losses["loss_right"] = loss_r
            losses["loss"] = losses["loss"] + hp.right_weight * loss_r
        losses["disparity"] = out["disparity"]
        return losses

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.compute_loss(batch)
        bs = batch["left"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        for key in ("loss_left", "loss_right", "loss_ce", "loss_photo", "loss_smooth", "loss_lr", "loss_labels"):
            if key in losses:
                self.log(f"train/{key}", losses[key], batch_size=bs)
        with torch.no_grad():
            pred, gt = losses["disparity"], batch["disp"]
            m = valid_mask(gt, float(self.hparams.max_disparity), self.hparams.zero_is_invalid)
            if m.any():
                self.log("train/epe", (pred - gt)[m].abs().mean(), prog_bar=True, batch_size=bs)
        return losses["loss"]

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: Dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        out = self(batch["left"], batch["right"], refine=not self.hparams.coarse_only)
        pred = out["disparity"]
        gt = batch["disp"]
        for i in range(pred.shape[0]):
            self._val_frames.append(disparity_metrics(
                pred[i, 0], gt[i, 0], max_disparity=float(self.hparams.max_disparity),
                zero_is_invalid=self.hparams.zero_is_invalid))
        if batch_idx == 0:
            self._log_images(batch, pred, stage)

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _epoch_end(self, stage: str) -> None:
        m = mean_metrics(self._val_frames)
        self._val_frames = []
        if not m:
            return
        for key in LOGGED_METRICS:
            if key in m and math.isfinite(m[key]):
                self.log(f"{stage}/{key}", float(m[key]), prog_bar=key in ("epe", "d1"),
                         sync_dist=True)
        self._last_val = {k: float(v) for k, v in m.items()}

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _log_images(self, batch: Dict[str, torch.Tensor], pred: torch.Tensor, stage: str) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        n = min(int(self.hparams.num_log_images), pred.shape[0])
        loggers = [lg for lg in (self.loggers or []) if isinstance(lg, TensorBoardLogger)]
        if not loggers or n <= 0 or self.trainer.sanity_checking:
            return
        vmax = float(self.hparams.max_disparity)
        for i in range(n):
            gt = batch["disp"][i, 0].float().cpu().numpy()
            pd = pred[i, 0].float().cpu().numpy()
            err = np.abs(pd - gt)
            left = batch["left"][i].float().cpu().clamp(0, 1)
            if left.shape[0] == 1:
                left = left.repeat(3, 1, 1)
            panels = {"left": (left.numpy() * 255).astype(np.uint8), "gt": colorize(gt, vmax),
                      "prediction": colorize(pd, vmax), "error": colorize(err, 8.0)}  # error: 0..8 px
            for lg in loggers:
                for name, img in panels.items():
                    lg.experiment.add_image(f"{stage}/{i}/{name}", img, self.global_step)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        matching = list(self.model.features.parameters()) + list(self.model.cost_filter.parameters())
        ids = {id(p) for p in matching}
        rest = [p for p in self.model.parameters() if id(p) not in ids]
        params = [{"params": matching, "lr": hp.lr * hp.matching_lr_scale}]
        if rest:
            params.append({"params": rest, "lr": hp.lr})
        name = hp.optimizer.lower()
        if name == "rmsprop":
            opt = torch.optim.RMSprop(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif name == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif name == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif name == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {hp.optimizer!r} (rmsprop, adam, adamw, sgd)")
        sched_name = hp.scheduler.lower()
        if sched_name not in ("none", "exponential", "cosine"):
            raise ValueError(f"unknown scheduler {hp.scheduler!r} (cosine, exponential, none)")
        interval = "step" if sched_name != "exponential" else hp.scheduler_interval
        if interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {interval!r}")
        factor = lr_factor_fn(sched_name, warmup_steps=int(hp.warmup_steps),
                              total_steps=int(hp.cosine_steps), min_ratio=float(hp.min_lr_ratio),
                              gamma=float(hp.lr_gamma))
        if sched_name == "none" and hp.warmup_steps <= 0:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}

    # ------------------------------------------------------------------ checkpoints
    def export_info(self) -> Dict[str, Any]:
        """Free-form, plain info stored in checkpoints / exported files."""
        info: Dict[str, Any] = {"global_step": int(self.global_step)}
        if self._last_val:
            info["val"] = dict(self._last_val)
        dm = getattr(getattr(self, "_trainer", None), "datamodule", None)
        if dm is not None and hasattr(dm, "describe"):
            info["data"] = dm.describe()
        return info

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["stereonet"] = metadata(self.config, self.normalization, self.export_info())
