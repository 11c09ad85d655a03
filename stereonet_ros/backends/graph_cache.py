"""Exported ONNX graphs on disk, one file per everything that changes the graph.

Where: ``$STEREONET_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/stereonet_ros``, else
``~/.cache/stereonet_ros``; graphs live in its ``onnx/`` folder, each with a ``.json`` beside
it that spells out its key. Nothing is ever overwritten in place: a changed key is a new file,
and files are written under a temporary name and renamed, so a node that starts while another
one exports never reads half a graph. Old files are not pruned (a few MB each); delete the
folder to reclaim the space.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

log = logging.getLogger("stereonet_ros.backends.graph_cache")

CACHE_ENV = "STEREONET_CACHE_DIR"


def cache_dir(env: Optional[Mapping[str, str]] = None) -> Path:
    """The package's user cache folder (not created here); see the module docstring."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(os.path.expanduser(env[CACHE_ENV]))
    xdg = env.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "stereonet_ros"


def weights_digest(model: nn.Module) -> str:
    """sha256 (hex) of a model's architecture and weights: every state_dict entry's name,
    dtype, shape and bytes, in name order, after the model's config.

    The content that defines the graph, not the checkpoint file's bytes: re-saving the same
    weights with other metadata (``info``) keeps the cached graph, any changed weight does not.
    """
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())  # raw bytes of any dtype, bf16 too
    return h.hexdigest()


@dataclass(frozen=True)
class GraphKey:
    """Everything an exported graph depends on. Sizes in pixels of the network input
    (after ``input_scale`` and padding to multiples of 2^k)."""

    weights: str            # weights_digest of the checkpoint's model
    height: int
    width: int
    candidates: int         # cost-volume disparity count
    refiners: int           # refinement levels kept
    precision: str          # dtype of the graph's tensors: 'fp32'
    outputs: Tuple[str, ...]
    opset: int
    export_version: int     # onnx_export.EXPORT_VERSION
    torch_version: str      # the exporter's behaviour follows torch releases

    def digest(self) -> str:
        """sha256 (hex) of the whole key."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def file_name(self) -> str:
        """Readable parts for whoever lists the folder, then the digest that makes it unique."""
        outs = "".join(o[0] for o in self.outputs)  # d, c, r
        return (f"stereonet_{self.weights[:12]}_{self.height}x{self.width}_d{self.candidates}"
                f"_r{self.refiners}_{self.precision}_{outs}_{self.digest()[:12]}.onnx")


class GraphCache:
    """Looks up and writes graph files under ``root`` (default ``cache_dir()/'onnx'``).

    When the folder cannot be created or written (read-only home on a robot), graphs go to a
    temporary folder for this process instead, with a warning: the engine still runs, it
    only exports again after a restart.
    """

    def __init__(self, root: Optional[Path] = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "onnx"
        self.hits = 0    # lookups answered by a file already there
        self.builds = 0  # graphs exported into the cache
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            fallback = Path(tempfile.mkdtemp(prefix="stereonet_onnx_"))
            log.warning("ONNX graph cache %s is not writable (%s); using %s for this process. "
                        "Set %s to a writable folder to keep exported graphs between runs.",
                        self.root, exc, fallback, CACHE_ENV)
            self.root = fallback

    def path_for(self, key: GraphKey) -> Path:
        return self.root / key.file_name()

    def lookup(self, key: GraphKey) -> Optional[Path]:
        """The cached graph for ``key``, or None (a zero-byte file counts as absent)."""
        p = self.path_for(key)
        if p.is_file() and p.stat().st_size > 0:
            self.hits += 1
            return p
        return None

    def build(self, key: GraphKey, export: Callable[[Path], object]) -> Path:
        """Run ``export(tmp_path)`` and move the file into place atomically; returns its path."""
        final = self.path_for(key)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            export(tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        meta: Dict[str, object] = dict(asdict(key), file=final.name)
        final.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        self.builds += 1
        return final

    def discard(self, key: GraphKey) -> None:
        """Remove ``key``'s file (a cached graph that failed to load)."""
        for p in (self.path_for(key), self.path_for(key).with_suffix(".json")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
