"""Geometric and photometric transforms on stereo samples (numpy, before tensor conversion).

A sample is a dict of float32 arrays: ``left``/``right`` (H, W, C) in [0, 1], ``disp`` and
optionally ``disp_right`` (H, W) in pixels, NaN where invalid. Every geometric transform
applies the same window / scale to all of them, so the geometry stays consistent; disparity
*values* are rescaled with the image width (a disparity is a horizontal distance).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

Sample = Dict[str, np.ndarray]
IMAGE_KEYS = ("left", "right")
DISP_KEYS = ("disp", "disp_right")


def resize(sample: Sample, height: int, width: int) -> Sample:
    """Resize images (area/linear) and disparities (nearest, so invalid/edge pixels are not
    blended), multiplying disparity values by ``width / old_width``."""
    out = dict(sample)
    h0, w0 = sample["left"].shape[:2]
    if (h0, w0) == (height, width):
        return out
    interp = cv2.INTER_AREA if width < w0 else cv2.INTER_LINEAR
    for k in IMAGE_KEYS:
        img = cv2.resize(sample[k], (width, height), interpolation=interp)
        out[k] = img[..., None] if img.ndim == 2 else img
    sx = width / w0
    for k in DISP_KEYS:
        if k in sample and sample[k] is not None:
            out[k] = cv2.resize(sample[k], (width, height), interpolation=cv2.INTER_NEAREST) * np.float32(sx)
    return out


def scale(sample: Sample, factor: float) -> Sample:
    """Resize by ``factor`` (rounded to whole pixels); disparity values scale accordingly."""
    h0, w0 = sample["left"].shape[:2]
    return resize(sample, max(1, int(round(h0 * factor))), max(1, int(round(w0 * factor))))


def crop(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """The same window of every image and disparity map (values unchanged)."""
    out = dict(sample)
    for k in IMAGE_KEYS + DISP_KEYS:
        if k in sample and sample[k] is not None:
            out[k] = np.ascontiguousarray(sample[k][top:top + height, left:left + width])
    return out


def random_crop(sample: Sample, height: int, width: int, rng: np.random.Generator) -> Sample:
    """A uniformly placed ``height x width`` window, identical for both views and both maps.
    Raises if the sample is smaller than the crop (resize first)."""
    h0, w0 = sample["left"].shape[:2]
    if h0 < height or w0 < width:
        raise ValueError(f"sample {h0}x{w0} is smaller than the crop {height}x{width}")
    top = int(rng.integers(0, h0 - height + 1))
    left = int(rng.integers(0, w0 - width + 1))
    return crop(sample, top, left, height, width)


def center_crop_to_multiple(sample: Sample, divisor: int) -> Sample:
    """Largest centred crop whose sides are multiples of ``divisor`` (network input rule)."""
    h0, w0 = sample["left"].shape[:2]
    h, w = h0 - h0 % divisor, w0 - w0 % divisor
    return crop(sample, (h0 - h) // 2, (w0 - w) // 2, h, w)


def photometric(sample: Sample, rng: np.random.Generator, strength: float = 1.0,
                grey_prob: float = 0.0) -> Sample:
    """Asymmetric colour augmentation: per-eye brightness, contrast, gamma, channel gains,
    Gaussian noise; with ``grey_prob`` both views become grey (replicated to all channels),
    so an RGB model also works on monochrome cameras fed as replicated grey."""
    out = dict(sample)
    grey = rng.random() < grey_prob
    for k in IMAGE_KEYS:
        img = sample[k].astype(np.float32)
        if grey and img.shape[-1] == 3:
            img = np.repeat(img.mean(-1, keepdims=True), 3, axis=-1)
        s = strength
        gain = 1.0 + s * rng.uniform(-0.2, 0.2)
        contrast = 1.0 + s * rng.uniform(-0.2, 0.2)
        gamma = 1.0 + s * rng.uniform(-0.2, 0.2)
        if img.shape[-1] == 3 and not grey:
            img = img * (1.0 + s * rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
        img = np.clip((img - 0.5) * contrast + 0.5, 0, 1) * gain
        img = np.clip(img, 0, 1) ** gamma
        if s > 0:
            img = img + rng.normal(0, s * rng.uniform(0, 0.02), img.shape).astype(np.float32)
        out[k] = np.clip(img, 0, 1).astype(np.float32)
    return out


def flip_swap(sample: Sample) -> Sample:
    """Mirror the rig: the left view becomes the mirrored right view and vice versa, and the
    right disparity map (mirrored) becomes the left one. A right-view training signal
    without running the network's second (right) pass. Needs ``disp_right``."""
    if sample.get("disp_right") is None:
        raise ValueError("flip_swap needs the right-view disparity (disp_right)")
    out = dict(sample)
    m = lambda a: np.ascontiguousarray(a[:, ::-1])  # noqa: E731
    out["left"], out["right"] = m(sample["right"]), m(sample["left"])
    out["disp"], out["disp_right"] = m(sample["disp_right"]), m(sample["disp"])
    return out


def to_grey(sample: Sample) -> Sample:
    """Single-channel luminance images (for in_channels = 1 models)."""
    out = dict(sample)
    w = np.array([0.299, 0.587, 0.114], np.float32)
    for k in IMAGE_KEYS:
        img = sample[k]
        if img.shape[-1] == 3:
            out[k] = (img @ w)[..., None].astype(np.float32)
    return out


def to_tensors(sample: Sample) -> Dict[str, torch.Tensor]:
    """(H,W,C) images -> (C,H,W) float tensors; (H,W) disparities -> (1,H,W)."""
    out: Dict[str, torch.Tensor] = {}
    for k in IMAGE_KEYS:
        out[k] = torch.from_numpy(np.ascontiguousarray(sample[k].transpose(2, 0, 1), np.float32))
    for k in DISP_KEYS:
        if k in sample and sample[k] is not None:
            out[k] = torch.from_numpy(np.ascontiguousarray(sample[k][None], np.float32))
    return out


class StereoTransform:
    """The per-sample pipeline used by the datasets.

    Order: optional scale -> optional random crop (training) or centred crop to a multiple of
    ``divisor`` (evaluation) -> optional flip-and-swap (training samples that carry a right
    disparity, with probability ``flip_swap_prob``) -> optional photometric augmentation ->
    optional grey.
    """

    def __init__(self, crop_size: Optional[Sequence[int]] = None, scale_factor: float = 1.0,
                 augment: bool = False, photometric_strength: float = 1.0, grey_prob: float = 0.0,
                 grey: bool = False, divisor: int = 1, flip_swap_prob: float = 0.0) -> None:
        self.crop_size: Optional[Tuple[int, int]] = tuple(crop_size) if crop_size else None  # type: ignore[assignment]
        self.scale_factor = float(scale_factor)
        self.augment = augment
        self.photometric_strength = photometric_strength
        self.grey_prob = grey_prob
        self.grey = grey
        self.divisor = divisor
        self.flip_swap_prob = float(flip_swap_prob)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.scale_factor != 1.0:
            sample = scale(sample, self.scale_factor)
        if self.crop_size is not None:
            h, w = self.crop_size
            if self.augment:
                h0, w0 = sample["left"].shape[:2]
                if h0 < h or w0 < w:  # small images are enlarged to fit the crop
                    f = max(h / h0, w / w0)
                    sample = resize(sample, max(h, int(np.ceil(h0 * f))), max(w, int(np.ceil(w0 * f))))
                sample = random_crop(sample, h, w, rng)
            else:  # deterministic evaluation crop
                h0, w0 = sample["left"].shape[:2]
                h, w = min(h, h0), min(w, w0)
                sample = crop(sample, (h0 - h) // 2, (w0 - w) // 2, h, w)
        sample = center_crop_to_multiple(sample, self.divisor)
        if self.augment and self.flip_swap_prob > 0 and sample.get("disp_right") is not None \
                and rng.random() < self.flip_swap_prob:
            sample = flip_swap(sample)
        if self.augment:
            sample = photometric(sample, rng, self.photometric_strength, self.grey_prob)
        if self.grey:
            sample = to_grey(sample)
        return sample
