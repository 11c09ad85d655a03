"""``EngineConfig``: the engine's settings, one definition for the node and every tool.

Its fields are the node's engine parameters (``params.SPECS`` entries marked ``engine``), with
the same names, defaults and checks; the tools' command-line flags are made from the same
table (``--input-scale`` for ``input_scale``), so a setting measured with a tool is the setting
the node runs with. No ROS here.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional

from .params import SPECS, validate_all

ENGINE_PARAMS = tuple(n for n, s in SPECS.items() if s.engine)


def default_threads() -> int:
    """The node's num_threads 0: every core on a computer of one or two cores, every core but
    one (free for the executor thread that receives images) on a larger one.

    Measured on 2 cores with the node fed 30 Hz (docs/PERFORMANCE.md): both cores for
    inference delivered a disparity 31 % sooner at 640x480 in fp32 (AVX2 CPU), 23-29 % sooner
    at 960x544 and 1280x720 in bf16, and tied or lost 6 % at 640x480 in bf16. (The old "2 busy
    threads are 4x slower" was OpenMP spin-waiting, which the node turns off.) Larger
    computers keep the previous rule: unmeasured here."""
    cores = os.cpu_count() or 1
    return cores if cores <= 2 else cores - 1


@dataclass(frozen=True)
class EngineConfig:
    """Settings of one :class:`~stereonet_ros.engine.StereoEngine` (units as the node's
    parameters: ``max_disparity`` in native pixels, 0 = the checkpoint's; ``num_threads`` 0 =
    torch's default in a tool, ``default_threads()`` in the node)."""

    checkpoint: str = SPECS["checkpoint"].default
    device: str = SPECS["device"].default
    strict_device: bool = SPECS["strict_device"].default
    precision: str = SPECS["precision"].default
    num_threads: int = SPECS["num_threads"].default
    max_disparity: float = SPECS["max_disparity"].default
    input_scale: float = SPECS["input_scale"].default
    refiners: int = SPECS["refiners"].default
    backend: str = SPECS["backend"].default
    onnx_providers: str = SPECS["onnx_providers"].default

    @classmethod
    def from_params(cls, values: Dict[str, Any]) -> "EngineConfig":
        """From the node's parameter values (other parameters are ignored)."""
        return cls(**{n: values[n] for n in ENGINE_PARAMS})

    def build(self, **extra: Any) -> Any:
        """The engine (CheckpointError / EngineConfigError on a bad setting); ``extra`` goes to
        StereoEngine as is (``loaded``, ``input_size``, ``fold_bn``...)."""
        from .engine import StereoEngine  # torch: only when an engine is built
        return StereoEngine(**dataclasses.asdict(self), **extra)

    # ----- command line --------------------------------------------------------------------
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, *, only: Optional[Iterable[str]] = None,
                      **defaults: Any) -> None:
        """Add ``--<name>`` flags (underscores as dashes) for the engine parameters (``only``:
        a subset), with the node parameter's help and default (``defaults`` overrides one)."""
        group = parser.add_argument_group("engine (the node's parameters of the same names)")
        for name in (ENGINE_PARAMS if only is None else tuple(only)):
            spec = SPECS[name]
            default = defaults.get(name, spec.default)
            flag = "--" + name.replace("_", "-")
            if isinstance(spec.default, bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=spec.description)
            else:
                group.add_argument(flag, type=type(spec.default), default=default,
                                   help=f"{spec.description} (default {default!r})")

    @classmethod
    def from_args(cls, args: argparse.Namespace, **fixed: Any) -> "EngineConfig":
        """From parsed flags (those not added keep their defaults; ``fixed`` sets fields a tool
        does not expose). Raises ValueError naming every invalid value, as the node would."""
        values = {n: getattr(args, n) for n in ENGINE_PARAMS if hasattr(args, n)}
        config = cls(**{**values, **fixed})
        errors = validate_all(dataclasses.asdict(config))
        if errors:
            raise ValueError("; ".join(errors))
        return config
