"""``stereonet-train``: train, evaluate and export StereoNet (``python -m training.cli`` too).

Subcommands (LightningCLI conventions)::

    stereonet-train fit      --config config/train_synthetic.yaml [--ckpt_path last.ckpt]
    stereonet-train validate --config config/train_synthetic.yaml --ckpt_path model.ckpt
    stereonet-train test     --config config/train_synthetic.yaml --ckpt_path model.ckpt
    stereonet-train export   --checkpoint model.ckpt --output weights.pt [--half] [--onnx m.onnx]
                             [--input-scale S --refiners N]   (the operating point the node runs it at)

A config YAML has the sections ``seed_everything``, ``trainer`` (``lightning.Trainer``
arguments; callbacks/loggers as ``{class_path, init_args}``), ``model``
(:class:`training.module.StereoNetModule`), ``data`` (:class:`training.datamodule.StereoDataModule`)
and optionally ``ckpt_path``. Dotted overrides follow it: ``--trainer.max_steps=100``,
``--model.lr 5e-4``, ``--data.batch_size=8``. Multi-GPU / multi-node DDP is configured in
the trainer section only (``accelerator: gpu``, ``devices: 4``, ``num_nodes: 2``,
``strategy: ddp``); launch one process per node (torchrun / SLURM) as Lightning documents.

``data.max_disparity``, ``data.in_channels`` and ``data.divisor`` are linked from the model
(``max_disparity``, ``in_channels``, ``2**k``) and must not be set in ``data``.

fit/validate/test run through ``lightning.pytorch.cli.LightningCLI`` (it needs
``jsonargparse[signatures]``, in requirements.txt); ``export`` is this module's own.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from stereonet_ros.allocator import keep_large_allocations

LINKS = (("model.max_disparity", "data.max_disparity"), ("model.in_channels", "data.in_channels"))


# ----------------------------------------------------------------------------- export

def export(checkpoint: str, output: str, half: bool = False, onnx: Optional[str] = None,
           onnx_height: int = 480, onnx_width: int = 640, opset: int = 17,
           info: Optional[Dict[str, Any]] = None, input_scale: float = 0.0,
           refiners: Optional[int] = None) -> Path:
    """Write a small weights file (``stereonet_ros.checkpoint.save_weights``) and optionally
    an ONNX graph of the same network.

    ``input_scale`` (> 0) and ``refiners`` (not None) set the file's operating point, the
    settings the node runs it at by default (``checkpoint.OperatingPoint``: choose them from
    ``training.measure`` and the bench); otherwise the source's is kept (a Lightning ``.ckpt``
    has none: native size, all refiners). An operating point the model cannot run is a
    ``checkpoint.OperatingPointError`` (nothing is written). The
    ONNX graph is the whole network at the trained candidates, whatever the operating point
    (the engine's onnxruntime backend builds its own graph for the settings it runs).

    The ONNX graph (``stereonet_ros.backends.onnx_export``, the exporter the engine's
    onnxruntime backend uses) takes *normalised* ``left``/``right`` (B, C, H, W) (normalisation
    stored in the weights file's metadata) and returns ``disparity`` (B, 1, H, W) in input
    pixels; H and W are exported as dynamic but must stay multiples of 2^k.
    """
    from stereonet_ros.backends.onnx_export import OnnxExportError, export_onnx
    from stereonet_ros.checkpoint import OperatingPoint, load_checkpoint, save_weights

    loaded = load_checkpoint(checkpoint)
    meta_info = dict(loaded.info)
    meta_info.setdefault("exported_from", os.path.basename(str(checkpoint)))
    meta_info.update(info or {})
    point = OperatingPoint(input_scale=float(input_scale) if input_scale else loaded.inference.input_scale,
                           refiners=int(refiners) if refiners is not None else loaded.inference.refiners)
    path = save_weights(output, loaded.model, loaded.normalization, meta_info, half=half,
                        inference=point if point != OperatingPoint() else None)
    if onnx:
        try:
            export_onnx(loaded.model, onnx, onnx_height, onnx_width, outputs=("disparity",),
                        opset=opset, dynamic=True)
        except OnnxExportError as exc:
            raise OnnxExportError(f"{exc}. The weights file {path} was written; rerun export "
                                  "with --onnx once that is fixed.") from exc
    return path


def _export_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="stereonet-train export",
                                description="Export a Lightning checkpoint (or weights file) to a "
                                            "small weights file for the node, optionally ONNX.")
    p.add_argument("--checkpoint", "--ckpt_path", dest="checkpoint", required=True,
                   help="Lightning .ckpt or exported .pt")
    p.add_argument("--output", required=True, help="weights file to write (.pt)")
    p.add_argument("--half", action="store_true", help="store tensors as fp16 (half the size)")
    p.add_argument("--onnx", default=None, help="also write an ONNX graph here")
    p.add_argument("--onnx-size", default="480x640", help="ONNX sample input HxW (default 480x640)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--input-scale", type=float, default=0.0,
                   help="operating point: the node's default input_scale for these weights "
                        "(0 = keep the source's; none = 1)")
    p.add_argument("--refiners", type=int, default=None,
                   help="operating point: the node's default refiners for these weights "
                        "(-1 = all; default: keep the source's)")
    a = p.parse_args(list(argv))
    h, w = (int(v) for v in a.onnx_size.lower().split("x"))
    from stereonet_ros.checkpoint import OperatingPointError
    try:
        out = export(a.checkpoint, a.output, half=a.half, onnx=a.onnx, onnx_height=h, onnx_width=w,
                     opset=a.opset, input_scale=a.input_scale, refiners=a.refiners)
    except OperatingPointError as exc:  # a scale out of range, refiners the model lacks
        p.error(str(exc))
    size_kb = out.stat().st_size / 1024
    print(f"wrote {out} ({size_kb:.0f} KiB){' and ' + a.onnx if a.onnx else ''}")
    return 0


# ----------------------------------------------------------------------------- fit / validate / test

def _lightning_cli(argv: Sequence[str]) -> None:
    from lightning.pytorch.cli import LightningCLI

    from .datamodule import StereoDataModule
    from .module import StereoNetModule

    class StereoCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: Any) -> None:
            for src, dst in LINKS:
                parser.link_arguments(src, dst)
            parser.link_arguments("model.k", "data.divisor", compute_fn=lambda k: 2 ** k)

    StereoCLI(StereoNetModule, StereoDataModule, args=list(argv),
              save_config_kwargs={"overwrite": True})


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``stereonet-train`` (console script) and ``python -m training.cli``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "export":
        return _export_main(args[1:])
    # Every step allocates MB-sized activations: keep them in the heap instead of a fresh
    # mmap (and its page faults) per step, as the node does (stereonet_ros/allocator.py).
    keep_large_allocations()
    _lightning_cli(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
