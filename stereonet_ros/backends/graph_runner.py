"""What every exported-graph backend of the engine shares: one compiled graph per network
input size and outputs, built from ``graph_cache`` (exported there on a miss), torch tensors
in and out in the engine's layout so the engine keeps one pre- and post-processing.

A backend subclasses ``GraphRunner`` with how to open a graph file (``_open``) and how to run
the opened graph on numpy inputs (``_infer``).
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Dict, List, Tuple

import numpy as np
import torch

from ..engine import EngineConfigError
from ..model import StereoNet
from .graph_cache import GraphCache, GraphKey, weights_digest
from .onnx_export import DEFAULT_OPSET, EXPORT_VERSION, export_onnx

log = logging.getLogger("stereonet_ros.backends.graph_runner")

#: Outputs of the graphs the engine runs: confidence is always in (a few ms of the coarse
#: distribution), the right view only in the with_right graph (a second cost volume).
LEFT_OUTPUTS = ("disparity", "confidence")
LR_OUTPUTS = ("disparity", "confidence", "right_disparity")


class GraphRunner:
    """Runs a StereoNet as exported graphs (fp32 ONNX files from the cache).

    ``model``: the network with the refiners to keep (copied; the caller may fold or change
    its own). ``weights``: its ``weights_digest`` when already known. ``device``: where the
    engine's tensors live (outputs are returned there). ``num_threads``: the backend's
    intra-op threads (0 = its default). Subclasses set ``precision`` ('fp32' | 'fp16' |
    'bf16': what the backend computes in; the graph itself is always fp32).
    """

    #: the engine's ``backend`` value, for messages
    name = ""
    precision = "fp32"

    def __init__(self, model: StereoNet, candidates: int, device: torch.device, num_threads: int = 0,
                 cache: GraphCache | None = None, weights: str | None = None,
                 opset: int = DEFAULT_OPSET) -> None:
        self.model = copy.deepcopy(model).cpu().eval()
        self.candidates = int(candidates)
        self.device = device
        self.cache = cache if cache is not None else GraphCache()
        self.weights = weights or weights_digest(model)
        self.opset = opset
        self.num_threads = int(num_threads)
        self._graphs: Dict[Tuple[int, int, bool], object] = {}
        self.exports = 0  # graphs this runner exported (cache misses)

    @property
    def provider_names(self) -> List[str]:
        """What the graph runs on, in priority order (execution providers, devices)."""
        return []

    def key(self, height: int, width: int, with_right: bool) -> GraphKey:
        """The cache key of the graph for a (height, width) network input, in pixels."""
        return GraphKey(weights=self.weights, height=int(height), width=int(width),
                        candidates=self.candidates, refiners=len(self.model.refiners),
                        # graphs are fp32; reduced precision is a compile/session option
                        precision="fp32", outputs=LR_OUTPUTS if with_right else LEFT_OUTPUTS,
                        opset=self.opset, export_version=EXPORT_VERSION,
                        torch_version=torch.__version__.split("+")[0])

    # ----- what a backend provides --------------------------------------------------------
    def _open(self, path: str) -> object:
        """The backend's runnable graph from an ONNX file; ``EngineConfigError`` for a problem
        of the backend's set-up (not the file's), which is raised as it is."""
        raise NotImplementedError

    def _infer(self, graph: object, left: np.ndarray, right: np.ndarray) -> List[np.ndarray]:
        """The graph's outputs, in its output order, as arrays the caller may keep."""
        raise NotImplementedError

    # ----- shared ---------------------------------------------------------------------------
    def prepare(self, height: int, width: int, with_right: bool = False) -> object:
        """The graph for a padded network input of (height, width) pixels: from the cache,
        else exported into it first. Called by ``run`` on a new size, or ahead of time."""
        k = (int(height), int(width), bool(with_right))
        graph = self._graphs.get(k)
        if graph is not None:
            return graph
        key = self.key(height, width, with_right)
        path = self.cache.lookup(key)
        if path is not None:
            try:
                graph = self._open(str(path))
                log.info("%s: ONNX graph for %dx%d from the cache: %s", self.name, width, height, path)
            except EngineConfigError:
                raise  # a set-up problem, not the file's
            except Exception as exc:  # noqa: BLE001 - a damaged file raises the backend's own types
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
            graph = self._open(str(path))
            log.info("%s: exported ONNX graph for %dx%d in %.1f s: %s", self.name, width, height,
                     time.perf_counter() - t0, path)
        self._graphs[k] = graph
        return graph

    def run(self, left: torch.Tensor, right: torch.Tensor, with_right: bool,
            with_confidence: bool) -> Dict[str, object]:
        """Same keys as ``StereoNet.forward`` for what the engine reads: ``disparity``,
        ``confidence`` and ``right_disparity`` (when asked), all at full network resolution."""
        h, w = left.shape[-2:]
        graph = self.prepare(h, w, with_right)

        def host(t: torch.Tensor) -> np.ndarray:
            # the graph's input layout is NCHW
            return t.detach().to("cpu", torch.float32).contiguous().numpy()

        outs = self._infer(graph, host(left), host(right))

        def back(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.device)

        result: Dict[str, object] = {"disparity": back(outs[0])}
        if with_confidence:
            result["confidence"] = back(outs[1])
        if with_right:
            result["right_disparity"] = back(outs[2])
        return result
