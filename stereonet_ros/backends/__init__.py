"""Inference backends of the engine besides plain torch, one concern per module.

- ``onnx_export``: StereoNet -> ONNX graph (used by the engine and ``stereonet-train export``);
- ``graph_cache``: exported graphs on disk, keyed by weights, input size and outputs;
- ``ort_providers``: importing onnxruntime, choosing execution providers and precision;
- ``ort_runner``: the engine's onnxruntime path (a session per network input size);
- ``graph_runner``: what the graph backends share (a compiled graph per network input size);
- ``ov_runner``: the engine's openvino path (OpenVINO's CPU plugin);
- ``compare``: a timing and agreement hook, torch vs the graph backends, for one size.
"""
from __future__ import annotations

#: What an engine can run on.
RUNTIMES = ("torch", "onnxruntime", "openvino")
#: Values of the engine's ``backend`` setting ('auto' picks a runtime: ``engine.resolve_backend``).
BACKENDS = ("auto",) + RUNTIMES
