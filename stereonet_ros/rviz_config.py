"""The RViz configuration for one camera: config/stereonet.rviz with its namespace and frame.

config/stereonet.rviz is a template: its displays name the node's outputs by their names
relative to the node's namespace (``points2``, ``disparity/color``, ...). RViz runs in the
root namespace and would resolve those there, so ``stereonet_rviz.launch.py`` renders the
template at launch time with ``render`` for ``camera:=<namespace>`` (topics become
``/<namespace>/points2``, ...) and the fixed frame, writes it with ``write`` and starts RViz on
the result. No ROS or launch imports: testable anywhere.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import yaml

#: A ROS 2 namespace: '/'-separated tokens of letters, digits and '_', none starting with a digit.
_NAMESPACE = re.compile(r"^/?([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?/?$")


def normalise_namespace(namespace: str) -> str:
    """'stereo', '/stereo', '/stereo/' -> '/stereo'; '' or '/' -> '' (the root namespace).

    Raises ValueError for a name ROS would refuse (so RViz is not started on topics that
    cannot exist).
    """
    ns = namespace.strip()
    if not _NAMESPACE.match(ns) or "//" in ns:
        raise ValueError(f"'{namespace}' is not a ROS namespace (tokens of letters, digits and '_', "
                         "separated by '/', not starting with a digit)")
    ns = ns.strip("/")
    return f"/{ns}" if ns else ""


def topic_in(namespace: str, topic: str) -> str:
    """``topic`` as RViz (root namespace) must name it: relative names go under ``namespace``,
    absolute ones ('/diagnostics', '/tf') stay as they are."""
    if topic.startswith("/"):
        return topic
    return f"{normalise_namespace(namespace)}/{topic}"


def _displays(node: Any) -> Iterator[Dict[str, Any]]:
    """Every display of a config, including those inside display groups."""
    for d in node or []:
        if isinstance(d, dict):
            yield d
            yield from _displays(d.get("Displays"))


def render(template: str | Dict[str, Any], namespace: str, fixed_frame: str) -> str:
    """The RViz config (YAML text) of ``template`` (text or parsed) for a node in ``namespace``
    whose outputs are stamped in ``fixed_frame``.

    Every display's ``Topic.Value`` that is relative is prefixed with the namespace; the
    global ``Fixed Frame`` becomes ``fixed_frame`` (with no TF tree it must be the frame_id
    of the camera's left images: the cloud and images are in that frame). Raises ValueError
    for a bad namespace or an empty frame.
    """
    frame = fixed_frame.strip()
    if not frame:
        raise ValueError("the fixed frame is empty: give the frame_id of the camera's left images "
                         "(ros2 topic echo --once <camera>/left/camera_info --field header.frame_id) or a TF frame")
    doc = yaml.safe_load(template) if isinstance(template, str) else yaml.safe_load(yaml.safe_dump(template))
    manager = doc["Visualization Manager"]
    for d in _displays(manager.get("Displays")):
        topic = d.get("Topic")
        if isinstance(topic, dict) and isinstance(topic.get("Value"), str):
            topic["Value"] = topic_in(namespace, topic["Value"])
    manager.setdefault("Global Options", {})["Fixed Frame"] = frame
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def write(template_path: str | Path, namespace: str, fixed_frame: str, out_dir: Optional[str | Path] = None) -> Path:
    """Render ``template_path`` (``render``) into ``out_dir`` (default: a new temporary
    folder) and return the file's path, for ``rviz2 -d``."""
    text = render(Path(template_path).read_text(), namespace, fixed_frame)
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="stereonet_rviz_"))
    folder.mkdir(parents=True, exist_ok=True)
    ns = normalise_namespace(namespace).strip("/").replace("/", "_") or "root"
    path = folder / f"stereonet_{ns}.rviz"
    path.write_text(text)
    return path
