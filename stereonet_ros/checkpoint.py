"""Checkpoint format shared by training and inference (no Lightning import).

A checkpoint is a ``torch.save`` dict holding, under the key ``"stereonet"``, the metadata
the node configures itself from::

    {"format": 1,
     "config": StereoNetConfig.to_dict(),        # architecture, in_channels, max_disparity
     "normalization": {"mean": [...], "std": [...]},  # per channel, applied to [0,1] pixels
     "inference": {"input_scale": 1.25, "refiners": 1},  # optional: OperatingPoint
     "info": {...}}                               # free-form: data, steps, metrics

and the weights either under ``"state_dict"`` (exported files) or under Lightning's
``"state_dict"`` with every key prefixed ``"model."`` (Lightning checkpoints written by
``training/``). Both load here without importing Lightning.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from .model import StereoNet, StereoNetConfig
from .params import MAX_INPUT_SCALE

FORMAT_VERSION = 1
META_KEY = "stereonet"
LIGHTNING_PREFIX = "model."
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "stereonet_default.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not describe a usable StereoNet."""


@dataclass
class Normalization:
    """Per-channel ``(x - mean) / std`` applied to pixels scaled to [0, 1]."""

    mean: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: List[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])

    def to_dict(self) -> Dict[str, List[float]]:
        return {"mean": list(map(float, self.mean)), "std": list(map(float, self.std))}


@dataclass(frozen=True)
class OperatingPoint:
    """The engine settings a trained model is meant to run at: what the node's ``input_scale``
    0 and ``refiners`` -1 resolve to. A property of the weights, chosen from their measured
    accuracy and cost (the default model's card: running it 1.25x upsampled with one refiner is
    more accurate and no slower than native size with both). Absent = native size, all refiners.

    ``input_scale`` in (0, ``MAX_INPUT_SCALE``]; ``refiners`` -1 (all) or 0..the model's."""

    input_scale: float = 1.0
    refiners: int = -1

    def to_dict(self) -> Dict[str, Any]:
        return {"input_scale": float(self.input_scale), "refiners": int(self.refiners)}

    def resolve(self, input_scale: float = 0.0, refiners: int = -1) -> "OperatingPoint":
        """The settings an engine runs: explicit values (``input_scale`` > 0, ``refiners`` other
        than -1) win, the node's defaults 0 and -1 take this point's."""
        return OperatingPoint(input_scale=float(input_scale) if input_scale else self.input_scale,
                              refiners=self.refiners if int(refiners) == -1 else int(refiners))

    def refiners_of(self, total: int) -> int:
        """The number of refiners these settings keep of a model that has ``total``."""
        return total if self.refiners == -1 else self.refiners


class OperatingPointError(ValueError):
    """An operating point a model cannot run (a scale out of range, refiners it lacks)."""


@dataclass
class LoadedCheckpoint:
    model: StereoNet
    config: StereoNetConfig
    normalization: Normalization
    info: Dict[str, Any]
    path: str
    inference: OperatingPoint = field(default_factory=OperatingPoint)

    @property
    def random_weights(self) -> bool:
        """The weights were never trained (``info['weights']`` says 'random', as the test and
        bench fixtures and an untrained export write): outputs are meaningless."""
        return "random" in str(self.info.get("weights", "")).lower()


def metadata(config: StereoNetConfig, normalization: Normalization,
             info: Optional[Dict[str, Any]] = None,
             inference: Optional[OperatingPoint] = None) -> Dict[str, Any]:
    """The ``"stereonet"`` entry every checkpoint carries (``inference`` only when given)."""
    meta = {"format": FORMAT_VERSION, "config": config.to_dict(),
            "normalization": normalization.to_dict(), "info": dict(info or {})}
    if inference is not None:
        meta["inference"] = inference.to_dict()
    return meta


def save_weights(path: Union[str, Path], model: StereoNet, normalization: Normalization,
                 info: Optional[Dict[str, Any]] = None, half: bool = False,
                 inference: Optional[OperatingPoint] = None) -> Path:
    """Write a small exported weights file (optionally fp16 tensors, restored to fp32 on load)."""
    if inference is not None:
        problem = operating_point_problem(inference, model.config)
        if problem:
            raise OperatingPointError(f"operating point {inference.to_dict()}: {problem}")
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({META_KEY: metadata(model.config, normalization, info, inference), "state_dict": state}, path)
    return path


def operating_point_problem(point: OperatingPoint, config: StereoNetConfig) -> Optional[str]:
    """Why ``point`` cannot run a model of ``config``, or None."""
    s = point.input_scale
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0 < s <= MAX_INPUT_SCALE:
        return f"input_scale must be a number in (0, {MAX_INPUT_SCALE:g}], got {s!r}"
    n = point.refiners
    if isinstance(n, bool) or not isinstance(n, int) or not -1 <= n <= config.num_refiners:
        return f"refiners must be -1 (all) or 0..{config.num_refiners}, got {n!r}"
    return None


def _read(path: Path) -> Dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes)")
    try:
        # weights_only: a checkpoint is data, never code to execute.
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - garbage input makes the unpickler raise anything
        # (IndexError for a text file, KeyError, ...): every failure here means "unreadable".
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read as a torch file (truncated or not a "
            f"checkpoint?): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a dict")
    return obj


def load_checkpoint(path: Union[str, Path, None] = None,
                    expect_in_channels: Optional[int] = None) -> LoadedCheckpoint:
    """Load a StereoNet from an exported weights file or a Lightning checkpoint.

    ``path`` None or '' means the bundled default. Raises ``CheckpointError`` naming the
    file and the problem: missing, unreadable, without metadata, bad hyper-parameters,
    weights that do not fit the architecture, or the wrong number of input channels.
    """
    p = DEFAULT_CHECKPOINT if not path else Path(os.path.expanduser(str(path)))
    obj = _read(p)
    meta = obj.get(META_KEY)
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(
            f"checkpoint '{p}' has no '{META_KEY}' metadata (architecture and normalisation); "
            f"it was not written by stereonet_ros/training (keys: {sorted(obj)[:8]})")
    if meta.get("format", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint '{p}' has format {meta.get('format')}, newer than "
                              f"this stereonet_ros understands ({FORMAT_VERSION})")
    try:
        config = StereoNetConfig.from_dict(dict(meta["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint '{p}' has invalid hyper-parameters: {exc}") from exc
    if expect_in_channels is not None and config.in_channels != expect_in_channels:
        raise CheckpointError(f"checkpoint '{p}' expects {config.in_channels}-channel input, "
                              f"but {expect_in_channels} channels were required")
    norm_d = meta.get("normalization") or {}
    norm = Normalization(**norm_d) if norm_d else Normalization()
    if len(norm.mean) != config.in_channels or len(norm.std) != config.in_channels \
            or any(s <= 0 for s in norm.std):
        raise CheckpointError(f"checkpoint '{p}' has a normalisation {norm.to_dict()} that does not "
                              f"fit {config.in_channels} input channel(s)")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"checkpoint '{p}' has no weights ('state_dict')")
    if all(k.startswith(LIGHTNING_PREFIX) for k in state):
        state = {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items()}
    model = StereoNet(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shape_bad = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shape_bad:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape_bad:
            k = shape_bad[0]
            detail.append(f"{len(shape_bad)} of wrong shape (e.g. {k}: {tuple(state[k].shape)} "
                          f"vs {tuple(expected[k].shape)})")
        raise CheckpointError(f"checkpoint '{p}' weights do not match its architecture "
                              f"{config.to_dict()}: " + "; ".join(detail))
    inference = OperatingPoint()
    if meta.get("inference") is not None:
        raw = meta["inference"]
        try:
            inference = OperatingPoint(**raw)
        except TypeError as exc:
            raise CheckpointError(f"checkpoint '{p}' has an invalid 'inference' entry {raw!r}: {exc}") from exc
        problem = operating_point_problem(inference, config)
        if problem:
            raise CheckpointError(f"checkpoint '{p}' has an invalid 'inference' entry: {problem}")
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state)
    model.eval()
    return LoadedCheckpoint(model, config, norm, dict(meta.get("info") or {}), str(p), inference)
