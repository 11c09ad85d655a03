"""RViz for any camera namespace: the config template rendered for camera:= and fixed_frame:=.

The rendering is a pure function (stereonet_ros/rviz_config.py), tested here on the shipped
template; launch is not installable here, so stereonet_rviz.launch.py is checked from its
AST for using it, as test_package checks the other launch files.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from stereonet_ros import rviz_config
from test_package import NODE_OUTPUTS, launch_calls

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "config" / "stereonet.rviz"


def shown(text: str) -> dict:
    doc = yaml.safe_load(text)
    vm = doc["Visualization Manager"]
    return {"topics": {d["Name"]: d["Topic"]["Value"] for d in vm["Displays"] if "Topic" in d},
            "frame": vm["Global Options"]["Fixed Frame"], "doc": doc}


@pytest.mark.parametrize("camera, ns", [("front", "/front"), ("/robot/front_stereo/", "/robot/front_stereo"),
                                        ("", ""), ("/", "")])
def test_every_display_follows_the_camera_namespace_and_frame(camera, ns):
    out = shown(rviz_config.render(TEMPLATE.read_text(), camera, "front_left_optical_frame"))
    template = shown(TEMPLATE.read_text())
    assert out["frame"] == "front_left_optical_frame"
    assert set(out["topics"]) == set(template["topics"]) and len(out["topics"]) >= 3
    for name, topic in out["topics"].items():
        assert topic == f"{ns}/{template['topics'][name]}", (name, topic)
        assert topic.split("/")[-1] and topic[len(ns) + 1:] in NODE_OUTPUTS
    assert out["topics"]["Point cloud"] == f"{ns}/points2"
    # everything else of the template is kept (views, QoS, colour transformer...)
    t, o = template["doc"], out["doc"]
    assert o["Visualization Manager"]["Views"] == t["Visualization Manager"]["Views"]
    assert [d["Class"] for d in o["Visualization Manager"]["Displays"]] == \
        [d["Class"] for d in t["Visualization Manager"]["Displays"]]


def test_absolute_topics_and_display_groups():
    doc = {"Visualization Manager": {"Displays": [
        {"Class": "rviz_common/Group", "Name": "g", "Displays": [{"Name": "c", "Topic": {"Value": "points2"}}]},
        {"Name": "d", "Topic": {"Value": "/diagnostics_agg"}}]}}
    out = yaml.safe_load(rviz_config.render(doc, "cam", "base_link"))
    vm = out["Visualization Manager"]
    assert vm["Displays"][0]["Displays"][0]["Topic"]["Value"] == "/cam/points2"
    assert vm["Displays"][1]["Topic"]["Value"] == "/diagnostics_agg"
    assert vm["Global Options"]["Fixed Frame"] == "base_link"
    assert doc["Visualization Manager"]["Displays"][1]["Topic"]["Value"] == "/diagnostics_agg"  # input untouched


@pytest.mark.parametrize("camera", ["9cam", "a//b", "cam-1", "my cam"])
def test_a_bad_namespace_or_frame_is_refused_with_the_reason(camera):
    with pytest.raises(ValueError, match="is not a ROS namespace"):
        rviz_config.render(TEMPLATE.read_text(), camera, "left_optical")
    with pytest.raises(ValueError, match="fixed frame is empty"):
        rviz_config.render(TEMPLATE.read_text(), "cam", " ")


def test_write_puts_one_file_per_camera(tmp_path):
    a = rviz_config.write(TEMPLATE, "left_rig", "l", tmp_path)
    b = rviz_config.write(TEMPLATE, "/right_rig", "r", tmp_path)
    assert a != b and a.parent == tmp_path
    assert shown(b.read_text())["topics"]["Point cloud"] == "/right_rig/points2"
    assert shown(a.read_text())["frame"] == "l"


def test_rviz_launch_renders_the_template_for_its_camera_and_frame():
    path = ROOT / "launch" / "stereonet_rviz.launch.py"
    tree = ast.parse(path.read_text())
    declared = {c.args[0].value: c for c in ast.walk(tree)
                if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    assert {"camera", "fixed_frame", "rviz_template"} <= set(declared)
    default_ns = next(k.value.value for k in declared["camera"].keywords if k.arg == "default_value")
    # the node's launch file and this one agree on the default namespace
    node_tree = ast.parse((ROOT / "launch" / "stereonet.launch.py").read_text())
    node_default = next(k.value.value for c in ast.walk(node_tree) if isinstance(c, ast.Call)
                        and getattr(c.func, "id", "") == "DeclareLaunchArgument" and c.args[0].value == "camera"
                        for k in c.keywords if k.arg == "default_value")
    assert default_ns == node_default
    # RViz is started by the OpaqueFunction that renders the config: -d on write()'s result
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_rviz")
    src = ast.unparse(func)
    assert "from stereonet_ros.rviz_config import write" in src
    for arg in ("rviz_template", "camera", "fixed_frame"):
        assert f"LaunchConfiguration('{arg}').perform(context)" in src, arg
    (rviz,) = [c for c in launch_calls(path, "Node")]
    assert next(k.value.value for k in rviz.keywords if k.arg == "package") == "rviz2"
    args = next(k.value for k in rviz.keywords if k.arg == "arguments")
    assert ast.unparse(args) == "['-d', str(path)]"
    assert any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "OpaqueFunction"
               and any(k.arg == "function" and getattr(k.value, "id", "") == "_rviz" for k in n.keywords)
               for n in ast.walk(tree))
    # the included node launch gets the same camera
    include = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                   and getattr(n.func, "id", "") == "IncludeLaunchDescription")
    assert "'camera': LaunchConfiguration('camera')" in ast.unparse(include)
    # no hard-coded namespace or frame left in the template
    text = TEMPLATE.read_text()
    assert "/stereo" not in text
