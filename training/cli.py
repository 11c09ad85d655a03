"""``stereonet-train``: train, evaluate and export StereoNet (``python -m training.cli`` too).

Subcommands (LightningCLI conventions)::

    stereonet-train fit      --config config/train_synthetic.yaml [--ckpt_path last.ckpt]
    stereonet-train validate --config config/train_synthetic.yaml --ckpt_path model.ckpt
    stereonet-train test     --config config/train_synthetic.yaml --ckpt_path model.ckpt
    stereonet-train export   --checkpoint model.ckpt --output weights.pt [--half] [--onnx m.onnx]

A config YAML has the sections ``seed_everything``, ``trainer`` (``lightning.Trainer``
arguments; callbacks/loggers as ``{class_path, init_args}``), ``model``
(:class:`training.module.StereoNetModule`), ``data`` (:class:`training.datamodule.StereoDataModule`)
and optionally ``ckpt_path``. Dotted overrides follow it: ``--trainer.max_steps=100``,
``--model.lr 5e-4``, ``--data.batch_size=8``. Multi-GPU / multi-node DDP is configured in
the trainer section only (``accelerator: gpu``, ``devices: 4``, ``num_nodes: 2``,
``strategy: ddp``); launch one process per node (torchrun / SLURM) as Lightning documents.

``data.max_disparity``, ``data.in_channels`` and ``data.divisor`` are linked from the model
(``max_disparity``, ``in_channels``, ``2**k``) and must not be set in ``data``.

When ``jsonargparse`` (Lightning's CLI dependency) is installed, fit/validate/test run through
``lightning.pytorch.cli.LightningCLI``; otherwise a small built-in parser reads the same YAML
files and overrides (so training works in a minimal environment).
"""
from __future__ import annotations

import argparse
import copy
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

SUBCOMMANDS = ("fit", "validate", "test", "predict")
LINKS = (("model.max_disparity", "data.max_disparity"), ("model.in_channels", "data.in_channels"))


# ----------------------------------------------------------------------------- export

def export(checkpoint: str, output: str, half: bool = False, onnx: Optional[str] = None,
           onnx_height: int = 480, onnx_width: int = 640, opset: int = 17,
           info: Optional[Dict[str, Any]] = None) -> Path:
    """Write a small weights file (``stereonet_ros.checkpoint.save_weights``) and optionally
    an ONNX graph of the same network.

    The ONNX graph (``stereonet_ros.backends.onnx_export``, the exporter the engine's
    onnxruntime backend uses) takes *normalised* ``left``/``right`` (B, C, H, W) (normalisation
    stored in the weights file's metadata) and returns ``disparity`` (B, 1, H, W) in input
    pixels; H and W are exported as dynamic but must stay multiples of 2^k.
    """
    from stereonet_ros.backends.onnx_export import OnnxExportError, export_onnx
    from stereonet_ros.checkpoint import load_checkpoint, save_weights

    loaded = load_checkpoint(checkpoint)
    meta_info = dict(loaded.info)
    meta_info.setdefault("exported_from", os.path.basename(str(checkpoint)))
    meta_info.update(info or {})
    path = save_weights(output, loaded.model, loaded.normalization, meta_info, half=half)
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
    a = p.parse_args(list(argv))
    h, w = (int(v) for v in a.onnx_size.lower().split("x"))
    out = export(a.checkpoint, a.output, half=a.half, onnx=a.onnx, onnx_height=h, onnx_width=w,
                 opset=a.opset)
    size_kb = out.stat().st_size / 1024
    print(f"wrote {out} ({size_kb:.0f} KiB){' and ' + a.onnx if a.onnx else ''}")
    return 0


# ----------------------------------------------------------------------------- fit / validate / test

def _have_jsonargparse() -> bool:
    if os.environ.get("STEREONET_TRAIN_BUILTIN_CLI"):
        return False
    try:
        import jsonargparse  # noqa: F401
        return True
    except ImportError:
        return False


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


def _deep_merge(base: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (new or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set_dotted(cfg: Dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested config; integer parts index lists (``trainer.callbacks.0``)."""
    parts = key.split(".")
    node: Any = cfg
    for p in parts[:-1]:
        if isinstance(node, list) and p.isdigit() and int(p) < len(node):
            node = node[int(p)]
        elif isinstance(node, dict):
            node = node.setdefault(p, {})
        else:
            raise SystemExit(f"cannot set --{key}: '{p}' is not a section")
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise SystemExit(f"cannot set --{key}")


def _parse_builtin(argv: Sequence[str]) -> Tuple[str, Dict[str, Any]]:
    """Parse ``<subcommand> [--config F]... [--a.b=v | --a.b v]...`` into a merged config."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0)
    cmd = args.pop(0)
    if cmd not in SUBCOMMANDS:
        raise SystemExit(f"unknown subcommand {cmd!r}; expected one of {SUBCOMMANDS + ('export',)}")
    cfg: Dict[str, Any] = {}
    overrides: List[Tuple[str, Any]] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if not a.startswith("--"):
            raise SystemExit(f"unexpected argument {a!r}")
        key, eq, val = a[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise SystemExit(f"--{key} needs a value")
            val = args[i + 1]
            i += 1
        i += 1
        if key in ("config", "c"):
            path = Path(val)
            if not path.is_file():
                raise SystemExit(f"config file '{val}' does not exist")
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise SystemExit(f"config file '{val}' is not a mapping")
            cfg = _deep_merge(cfg, loaded)
        else:
            overrides.append((key, yaml.safe_load(val) if val != "" else None))
    for key, val in overrides:
        _set_dotted(cfg, key, val)
    return cmd, cfg


def _instantiate(spec: Any) -> Any:
    """``{class_path, init_args}`` -> object (recursively); other values pass through."""
    if isinstance(spec, list):
        return [_instantiate(s) for s in spec]
    if isinstance(spec, dict) and "class_path" in spec:
        mod_name, _, cls_name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        init = {k: _instantiate(v) for k, v in (spec.get("init_args") or {}).items()}
        return cls(**init)
    return spec


def _builtin_cli(argv: Sequence[str]) -> Any:
    import lightning.pytorch as pl

    from .datamodule import StereoDataModule
    from .module import StereoNetModule

    cmd, cfg = _parse_builtin(argv)
    unknown = set(cfg) - {"seed_everything", "trainer", "model", "data", "ckpt_path"}
    if unknown:
        raise SystemExit(f"unknown config sections {sorted(unknown)}")
    model_cfg = dict(cfg.get("model") or {})
    data_cfg = dict(cfg.get("data") or {})
    for key in ("max_disparity", "in_channels", "divisor"):
        if key in data_cfg:
            raise SystemExit(f"data.{key} is linked from the model; set model.* instead")
    seed = cfg.get("seed_everything", True)
    if seed is not None and seed is not False:
        pl.seed_everything(None if seed is True else int(seed), workers=True)
    model = StereoNetModule(**model_cfg)
    data_cfg["max_disparity"] = model.config.max_disparity
    data_cfg["in_channels"] = model.config.in_channels
    data_cfg["divisor"] = 2 ** model.config.k
    datamodule = StereoDataModule(**data_cfg)
    trainer_cfg = {k: _instantiate(v) for k, v in (cfg.get("trainer") or {}).items()}
    trainer = pl.Trainer(**trainer_cfg)
    if trainer.is_global_zero and trainer.log_dir:
        os.makedirs(trainer.log_dir, exist_ok=True)
        with open(os.path.join(trainer.log_dir, "config.yaml"), "w") as f:
            yaml.safe_dump(_deep_merge(cfg, {"data": data_cfg}), f, sort_keys=False)
    ckpt = cfg.get("ckpt_path")
    getattr(trainer, cmd)(model, datamodule=datamodule, ckpt_path=ckpt)
    return trainer


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``stereonet-train`` (console script) and ``python -m training.cli``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "export":
        return _export_main(args[1:])
    if _have_jsonargparse():
        _lightning_cli(args)
    else:
        _builtin_cli(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
