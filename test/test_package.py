"""Packaging: colcon build of the ament_python package, and launch/config/RViz consistency.

launch/launch_ros are not installable here, so launch files are checked statically (their
AST) against setup.py's console scripts, config/ files and the node's parameters/topics.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stereonet_ros.params import SPECS

ROOT = Path(__file__).resolve().parents[1]
NODE_INPUTS = {"left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info"}
NODE_OUTPUTS = {"disparity", "depth", "depth/camera_info", "points2", "confidence", "confidence/camera_info",
                "disparity/color"}


def console_scripts() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    return dict(s.value.split(" = ") for s in v.elts)
    raise AssertionError("setup.py declares no console_scripts")


def launch_calls(path: Path, func: str):
    """Calls of ``func`` with their keywords, ``**name`` expanded where ``name = dict(...)``."""
    tree = ast.parse(path.read_text())
    dicts, consts = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and len(node.targets) == 1:
            consts[getattr(node.targets[0], "id", None)] = node.value
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "id", None) == "dict" and len(node.targets) == 1:
            dicts[getattr(node.targets[0], "id", None)] = node.value.keywords
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == func:
            kws = []
            for k in node.keywords:
                kws += dicts.get(getattr(k.value, "id", None), []) if k.arg is None else [k]
            # module constants (PACKAGE = "stereonet_ros") resolve to their literal
            node.keywords = [ast.keyword(arg=k.arg, value=consts.get(getattr(k.value, "id", None), k.value))
                             for k in kws]
            yield node


def kw(call: ast.Call, name: str, required: bool = True):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    if not required:
        return None
    raise AssertionError(f"launch call without a literal '{name}'")


def test_console_scripts_resolve_to_functions():
    import importlib
    scripts = console_scripts()
    assert "stereonet_node" in scripts and "stereonet-train" in scripts
    for name, target in scripts.items():
        mod, func = target.split(":")
        path = ROOT / mod.replace(".", "/")
        if not (path.with_suffix(".py").exists() or (path / "__init__.py").exists()):
            pytest.fail(f"console script {name} points to missing module {mod}")
        assert callable(getattr(importlib.import_module(mod), func)), name


def test_launch_files_match_setup_config_and_node():
    scripts = console_scripts()
    files = sorted((ROOT / "launch").glob("*.launch.py"))
    assert (ROOT / "launch/stereonet.launch.py") in files
    for path in files:
        compile(path.read_text(), str(path), "exec")
        text = path.read_text()
        assert "def generate_launch_description" in text, path
        for call in launch_calls(path, "Node"):
            pkg = kw(call, "package").value
            exe = kw(call, "executable").value
            if pkg == "stereonet_ros":
                assert exe in scripts, f"{path.name}: executable {exe} not in setup.py"
                params = kw(call, "parameters", required=False)
                for elt in getattr(params, "elts", []):
                    if isinstance(elt, ast.Dict):
                        for k in elt.keys:
                            assert k.value in SPECS, f"{path.name}: unknown parameter {k.value}"
                for pair in getattr(kw(call, "remappings", required=False), "elts", []):
                    assert pair.elts[0].value in NODE_INPUTS | NODE_OUTPUTS, pair.elts[0].value
        for ref in re.findall(r'"config",\s*"([^"]+)"', text):
            assert (ROOT / "config" / ref).exists(), f"{path.name} refers to missing config/{ref}"


def test_launch_overrides_are_node_parameters_that_default_to_the_params_file():
    """stereonet.launch.py's optional overrides name real parameters, and none is passed
    unless given: a launch default would otherwise silently replace the YAML's value."""
    tree = ast.parse((ROOT / "launch/stereonet.launch.py").read_text())
    overrides = next(ast.literal_eval(n.value) for n in tree.body
                     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "OVERRIDES")
    assert overrides and set(overrides) <= set(SPECS), set(overrides) - set(SPECS)
    assert {"checkpoint", "device", "refiners"} <= set(overrides)
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_stereonet_node")
    source = ast.unparse(func)
    assert "perform(context) != ''" in source, "overrides must be left out when not given"
    declared = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"]
    generic = [c for c in declared if isinstance(c.args[0], ast.Name)]  # the loop over OVERRIDES
    assert generic and all(kw(c, "default_value").value == "" for c in generic)


def test_rviz_config_shows_node_outputs():
    """The RViz template names the node's outputs relative to its namespace (the launch file
    puts them under camera:=..., see test_rviz.py)."""
    doc = yaml.safe_load((ROOT / "config/stereonet.rviz").read_text())
    displays = doc["Visualization Manager"]["Displays"]
    shown = {(d["Class"], d["Topic"]["Value"]) for d in displays if "Topic" in d}
    assert ("rviz_default_plugins/PointCloud2", "points2") in shown
    assert ("rviz_default_plugins/Image", "disparity/color") in shown
    assert {t for _, t in shown} <= NODE_OUTPUTS


def copy_checkout(dst: Path) -> None:
    """The repository's files (tracked and untracked-not-ignored) into ``dst``, as colcon or
    pip would see a checkout."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)


def test_colcon_build_installs_node_launch_and_config(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent))
    assert colcon, "colcon is installed by tools/setup_env.sh (colcon-common-extensions)"
    src = tmp_path / "src" / "stereonet_ros"
    copy_checkout(src)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run([colcon, "build", "--packages-select", "stereonet_ros"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    inst = tmp_path / "install" / "stereonet_ros"
    for exe in console_scripts():
        assert (inst / "lib" / "stereonet_ros" / exe).exists(), exe
    share = inst / "share" / "stereonet_ros"
    assert (share / "package.xml").exists()
    assert (share / "launch" / "stereonet.launch.py").exists()
    assert (share / "config" / "stereonet.yaml").exists() and (share / "config" / "stereonet.rviz").exists()
    assert (inst / "share" / "ament_index" / "resource_index" / "packages" / "stereonet_ros").exists()
    # The installed node starts (as after `source install/setup.bash`), validates its
    # parameters and says what is wrong.
    site = next((inst / "lib").glob("python3*/site-packages"))
    env["PYTHONPATH"] = f"{site}:{env.get('PYTHONPATH', '')}"
    r = subprocess.run([str(inst / "lib" / "stereonet_ros" / "stereonet_node"), "--ros-args", "-p",
                        "input_scale:=3.0"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "input_scale" in r.stdout + r.stderr and "Traceback" not in r.stderr
