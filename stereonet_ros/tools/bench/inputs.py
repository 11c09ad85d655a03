"""What is benchmarked: the synthetic stereo frames and the checkpoint (a random model of
the default architecture when the bundled one does not exist yet)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

from ...checkpoint import DEFAULT_CHECKPOINT, LoadedCheckpoint, Normalization, load_checkpoint, save_weights
from ...model import StereoNet, StereoNetConfig
from ..synthetic import fronto_parallel_pair, to_uint8

SCENE_DISPARITY = 24  # px, the synthetic plane's shift (well inside every searched range)

#: The recipe the bundled default checkpoint is trained from (its ``model:`` section).
DEFAULT_RECIPE = Path(__file__).resolve().parents[3] / "config" / "train_default.yaml"


def make_frames(width: int, height: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A textured fronto-parallel plane at SCENE_DISPARITY px (the project's one synthetic plane,
    ``synthetic.fronto_parallel_pair``): (H, W, 3) uint8 left/right, right(x) = left(x + d)."""
    left, right = fronto_parallel_pair(SCENE_DISPARITY, (height, width), seed)
    return to_uint8(left), to_uint8(right)


def default_architecture() -> Tuple[StereoNetConfig, str]:
    """Architecture of the bundled default model: the ``model:`` section of the training
    recipe when it is available (source tree), else ``StereoNetConfig()`` (the paper's)."""
    try:
        import yaml
        with open(DEFAULT_RECIPE) as f:
            model = (yaml.safe_load(f) or {}).get("model") or {}
        fields = set(StereoNetConfig.__dataclass_fields__)
        return StereoNetConfig(**{k: v for k, v in model.items() if k in fields}), str(DEFAULT_RECIPE)
    except (OSError, ImportError, TypeError, ValueError, AttributeError):
        return StereoNetConfig(), "StereoNetConfig() defaults"


def load_or_random(path: str) -> Tuple[LoadedCheckpoint, str]:
    """Load ``path`` ('' = the bundled default). If the bundled default does not exist yet,
    a random model of the default architecture (timings are identical; outputs meaningless)
    is saved to a temporary file so the node can load it too. Returns (checkpoint, note)."""
    if path or DEFAULT_CHECKPOINT.exists():
        return load_checkpoint(path or None), ""
    config, source = default_architecture()
    torch.manual_seed(0)
    model = StereoNet(config).eval()
    tmp = Path(tempfile.mkdtemp(prefix="stereonet_bench_")) / "random_default.pt"
    save_weights(tmp, model, Normalization(), {"weights": "random (bench fallback)"})
    note = (f"NOTE: the bundled checkpoint {DEFAULT_CHECKPOINT} does not exist yet; benchmarking a "
            f"RANDOMLY INITIALISED model of the default architecture (from {source}: "
            f"{config.to_dict()}) saved at {tmp}. Speed is the same as for trained weights; the "
            "disparities are meaningless.")
    return load_checkpoint(tmp), note
