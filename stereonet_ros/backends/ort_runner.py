"""The engine's onnxruntime path: one InferenceSession per network input size and outputs
(``graph_runner.GraphRunner``: graphs from ``graph_cache``, exported there on a miss)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from ..engine import EngineConfigError
from ..model import StereoNet
from .graph_cache import GraphCache
from .graph_runner import GraphRunner
from .onnx_export import DEFAULT_OPSET
from .ort_providers import ProviderSpec, import_onnxruntime, resolve_onnx_precision, select_providers


class OnnxRuntimeRunner(GraphRunner):
    """Runs a StereoNet through ONNX Runtime sessions built from cached graphs.

    See ``GraphRunner`` for ``model``, ``candidates``, ``device``, ``num_threads``, ``cache``
    and ``weights``. ``providers``: the ``onnx_providers`` request ('' = from the device).
    ``precision``: the engine's request ('auto' | 'fp32' | 'fp16').
    """

    name = "onnxruntime"

    def __init__(self, model: StereoNet, candidates: int, device: torch.device,
                 providers: Union[str, Sequence[str], None] = "", precision: str = "auto",
                 num_threads: int = 0, cache: Optional[GraphCache] = None,
                 weights: Optional[str] = None, opset: int = DEFAULT_OPSET) -> None:
        self.ort = import_onnxruntime()
        super().__init__(model, candidates, device, num_threads, cache, weights, opset)
        available = self.ort.get_available_providers()
        names = [n for n, _ in select_providers(device, providers, available)]
        self.precision = resolve_onnx_precision(precision, names)
        # Options follow from the names and the precision: select again with them.
        self.providers: List[ProviderSpec] = select_providers(
            device, providers, available, trt_cache_dir=str(self.cache.root / "tensorrt"),
            fp16=self.precision == "fp16")

    @property
    def provider_names(self) -> List[str]:
        return [n for n, _ in self.providers]

    def _session_options(self) -> object:
        so = self.ort.SessionOptions()
        if self.num_threads:
            so.intra_op_num_threads = self.num_threads
        so.inter_op_num_threads = 1  # one sequential graph: parallelism is within ops
        # Idle worker threads sleep instead of spinning between frames, as OMP_WAIT_POLICY=
        # PASSIVE does for torch: the node shares the cores with its ROS executor (not timed).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
        return so

    def _open(self, path: str) -> object:
        sess = self.ort.InferenceSession(path, self._session_options(), providers=self.providers)
        active = sess.get_providers()
        first = self.provider_names[0]
        if first not in active:
            # ONNX Runtime drops a provider whose libraries fail to load and carries on with
            # the CPU; running a GPU request on the CPU unannounced is worse than failing.
            raise EngineConfigError(
                f"ONNX Runtime could not enable {first} (installed, but its libraries did not "
                f"load: CUDA / cuDNN / TensorRT versions?); active providers: {', '.join(active)}")
        return sess

    def _infer(self, graph: object, left: np.ndarray, right: np.ndarray) -> List[np.ndarray]:
        return graph.run(None, {"left": left, "right": right})  # type: ignore[attr-defined]
