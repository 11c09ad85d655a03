"""The engine's onnxruntime path: one InferenceSession per network input size and outputs.

Takes and returns torch tensors in the engine's layout, so the engine keeps one set of pre-
and post-processing for both backends. Graphs come from ``graph_cache``; a size seen for the
first time is exported there (seconds for the default model) unless a graph is cached.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..engine import EngineConfigError
from ..model import StereoNet
from .graph_cache import GraphCache, GraphKey, weights_digest
from .onnx_export import DEFAULT_OPSET, EXPORT_VERSION, export_onnx
from .ort_providers import ProviderSpec, import_onnxruntime, resolve_onnx_precision, select_providers

log = logging.getLogger("stereonet_ros.backends.ort_runner")

#: Outputs of the graphs the engine runs: confidence is always in (a few ms of the coarse
#: distribution), the right view only in the with_right graph (a second cost volume).
LEFT_OUTPUTS = ("disparity", "confidence")
LR_OUTPUTS = ("disparity", "confidence", "right_disparity")


class OnnxRuntimeRunner:
    """Runs a StereoNet through ONNX Runtime sessions built from cached graphs.

    ``model``: the network with the refiners to keep (copied; the caller may fold or change
    its own). ``weights``: its ``weights_digest`` when already known. ``device``: where the
    engine's tensors live (outputs are returned there). ``providers``: the ``onnx_providers``
    request ('' = from the device). ``precision``: the engine's request ('auto' | 'fp32' |
    'fp16'). ``num_threads``: ONNX Runtime intra-op threads (0 = its default).
    """

    def __init__(self, model: StereoNet, candidates: int, device: torch.device,
                 providers: Union[str, Sequence[str], None] = "", precision: str = "auto",
                 num_threads: int = 0, cache: Optional[GraphCache] = None,
                 weights: Optional[str] = None, opset: int = DEFAULT_OPSET) -> None:
        self.ort = import_onnxruntime()
        self.model = copy.deepcopy(model).cpu().eval()
        self.candidates = int(candidates)
        self.device = device
        self.cache = cache if cache is not None else GraphCache()
        self.weights = weights or weights_digest(model)
        self.opset = opset
        self.num_threads = int(num_threads)
        available = self.ort.get_available_providers()
        names = [n for n, _ in select_providers(device, providers, available)]
        self.precision = resolve_onnx_precision(precision, names)
        # Options follow from the names and the precision: select again with them.
        self.providers: List[ProviderSpec] = select_providers(
            device, providers, available, trt_cache_dir=str(self.cache.root / "tensorrt"),
            fp16=self.precision == "fp16")
        self._sessions: Dict[Tuple[int, int, bool], object] = {}
        self.exports = 0  # graphs this runner exported (cache misses)

    @property
    def provider_names(self) -> List[str]:
        return [n for n, _ in self.providers]

    def key(self, height: int, width: int, with_right: bool) -> GraphKey:
        """The cache key of the graph for a (height, width) network input, in pixels."""
        return GraphKey(weights=self.weights, height=int(height), width=int(width),
                        candidates=self.candidates, refiners=len(self.model.refiners),
                        # graphs are fp32; TensorRT's fp16 is a session option, not a graph
                        precision="fp32", outputs=LR_OUTPUTS if with_right else LEFT_OUTPUTS,
                        opset=self.opset, export_version=EXPORT_VERSION,
                        torch_version=torch.__version__.split("+")[0])

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

    def prepare(self, height: int, width: int, with_right: bool = False) -> object:
        """The session for a padded network input of (height, width) pixels: from the cache,
        else exported into it first. Called by ``run`` on a new size, or ahead of time."""
        k = (int(height), int(width), bool(with_right))
        sess = self._sessions.get(k)
        if sess is not None:
            return sess
        key = self.key(height, width, with_right)
        path = self.cache.lookup(key)
        if path is not None:
            try:
                sess = self._open(str(path))
                log.info("ONNX graph for %dx%d from the cache: %s", width, height, path)
            except EngineConfigError:
                raise  # a provider problem, not the file's
            except Exception as exc:  # noqa: BLE001 - a damaged file raises ORT's own types
                log.warning("cached ONNX graph %s does not load (%s: %s); exporting it again",
                            path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                self.cache.discard(key)
                path = None
        if path is None:
            t0 = time.perf_counter()
            path = self.cache.build(key, lambda p: export_onnx(
                self.model, p, height, width, outputs=key.outputs, candidates=self.candidates,
                opset=self.opset))
            self.exports += 1
            sess = self._open(str(path))
            log.info("exported ONNX graph for %dx%d in %.1f s: %s", width, height,
                     time.perf_counter() - t0, path)
        self._sessions[k] = sess
        return sess

    def run(self, left: torch.Tensor, right: torch.Tensor, with_right: bool,
            with_confidence: bool) -> Dict[str, object]:
        """Same keys as ``StereoNet.forward`` for what the engine reads: ``disparity``,
        ``confidence`` and ``right_disparity`` (when asked), all at full network resolution."""
        h, w = left.shape[-2:]
        sess = self.prepare(h, w, with_right)

        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float32).contiguous().numpy()

        outs = sess.run(None, {"left": host(left), "right": host(right)})  # type: ignore[attr-defined]

        def back(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.device)

        result: Dict[str, object] = {"disparity": back(outs[0])}
        if with_confidence:
            result["confidence"] = back(outs[1])
        if with_right:
            result["right_disparity"] = back(outs[2])
        return result
