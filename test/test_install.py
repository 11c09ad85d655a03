"""The robot install story: package.xml (rosdep) + requirements-robot.txt (pip) declare every
third-party module the console scripts import, and a fresh environment built from exactly
those two runs every console script's ``--help``.

The imports are found by reading the code (``ast``), transitively within this repository's
packages, not from a list kept by hand: a new ``import`` anywhere a console script reaches
fails here until it is declared.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import importlib.util

import pytest

from test_package import console_scripts, copy_checkout, launch_calls

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("robot_wheelhouse", ROOT / "tools" / "robot_wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheelhouse)
OWN_PACKAGES = ("stereonet_ros", "training")

#: rosdep keys of Python libraries -> the module they provide. A key's name does not say it
#: (python3-opencv is cv2), so it is spelt out; ``test_every_python_rosdep_key_is_known`` keeps
#: this table in step with package.xml.
ROSDEP_PYTHON_MODULES = {"python3-numpy": "numpy", "python3-opencv": "cv2", "python3-yaml": "yaml",
                         "python3-pytest": "pytest"}

#: Keys whose module may be missing at run time: the code imports it inside try/except ImportError.
OPTIONAL_MODULES: set = set()


package_xml_keys = wheelhouse.package_xml_keys


def robot_requirements() -> Dict[str, str]:
    """Normalised distribution name -> requirement line of requirements-robot.txt."""
    out = {}
    for line in (ROOT / "requirements-robot.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0)
            out[normalise(name)] = line
    return out


def normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _module_file(name: str) -> Optional[Path]:
    p = ROOT / name.replace(".", "/")
    if (p / "__init__.py").exists():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").exists() else None


def third_party_imports(entry: str) -> Dict[str, Set[str]]:
    """Top-level third-party module -> the repository modules importing it, for everything
    ``entry`` reaches through this repository's own imports (at module level or inside
    functions: a lazy import runs too, only later). Package ``__init__`` files count."""
    return _scan_imports(entry)[0]


def repository_modules_reached(entry: str) -> Set[str]:
    """This repository's modules ``entry`` reaches (itself included), as the scan sees them."""
    return {m for m in _scan_imports(entry)[1] if _module_file(m) is not None}


def _scan_imports(entry: str) -> Tuple[Dict[str, Set[str]], Set[str]]:
    found: Dict[str, Set[str]] = {}
    seen: Set[str] = set()
    todo = [entry]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod)
        if path is None:
            continue
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]   # parent packages run first
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                names = [stem] + [f"{stem}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in OWN_PACKAGES:
                    if _module_file(name):
                        todo.append(name)
                elif top and top != "__future__" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(mod)
    return found, seen


def declared_by(module: str) -> Optional[str]:
    """Where ``module`` is declared: 'package.xml <key>', 'requirements-robot.txt <line>', or None."""
    keys = package_xml_keys()
    if module in keys:  # a ROS package: its Python module has the package's name
        return f"package.xml {module}"
    for key, mod in ROSDEP_PYTHON_MODULES.items():
        if mod == module and key in keys:
            return f"package.xml {key}"
    reqs = robot_requirements()
    # The installed distributions that provide the module (cv2 <- opencv-python-headless).
    for dist in importlib.metadata.packages_distributions().get(module, []):
        if normalise(dist) in reqs:
            return f"requirements-robot.txt {reqs[normalise(dist)]}"
    return None


def entry_modules() -> Dict[str, str]:
    return {name: target.split(":")[0] for name, target in console_scripts().items()}


def test_the_scan_sees_lazy_and_relative_imports():
    """The scanner itself: evaluate imports tqdm inside a function and bag via ``from . import``;
    the node reaches torch only through its own modules (engine, model)."""
    ev = third_party_imports("stereonet_ros.tools.evaluate")
    assert "stereonet_ros.tools.evaluate" in ev["tqdm"]
    assert "rosbags" in ev and "stereonet_ros.tools.bag" in ev["rosbags"]
    node = third_party_imports("stereonet_ros.node_main")
    assert {"rclpy", "torch", "cv2", "numpy"} <= set(node)
    assert not {"os", "typing", "stereonet_ros", "training"} & set(node)
    assert "lightning" in third_party_imports("training.cli")


def test_the_run_time_core_never_reaches_the_tools_or_training():
    """The node (and the engine it builds) imports nothing of stereonet_ros.tools or training/:
    the tools depend on the core, never the reverse."""
    reached = repository_modules_reached("stereonet_ros.node_main")
    assert {"stereonet_ros.node", "stereonet_ros.engine", "stereonet_ros.messages"} <= reached
    assert not {m for m in reached if m.startswith(("stereonet_ros.tools", "training"))}, sorted(reached)
    assert "stereonet_ros.tools.bag" in repository_modules_reached("stereonet_ros.tools.evaluate")


@pytest.mark.parametrize("script", sorted(console_scripts()))
def test_every_module_a_console_script_imports_is_declared(script):
    missing = []
    for module, users in sorted(third_party_imports(entry_modules()[script]).items()):
        if declared_by(module) is None:
            missing.append(f"{module} (imported by {', '.join(sorted(users))})")
    assert not missing, (f"{script} imports modules that neither package.xml (rosdep) nor "
                         f"requirements-robot.txt (pip) declares: {'; '.join(missing)}")


def test_every_python_rosdep_key_is_known():
    """A python3-* key in package.xml must be in ROSDEP_PYTHON_MODULES (which module it gives),
    or the declared-imports check above could not credit it; cv_bridge, which nothing imports,
    is not declared."""
    keys = package_xml_keys() + package_xml_keys("test_depend")
    unknown = [k for k in keys if k.startswith("python3-") and k not in ROSDEP_PYTHON_MODULES]
    assert not unknown, unknown
    assert "cv_bridge" not in keys
    wheelhouse.stand_in_requirements()  # KeyError: a key without a stand-in for pip-only machines


def test_launch_files_run_only_declared_packages():
    """Every package a launch file starts a node of, and ``ros2 bag``, is an exec_depend."""
    keys = set(package_xml_keys())
    for path in sorted((ROOT / "launch").glob("*.launch.py")):
        for call in launch_calls(path, "Node"):
            pkg = next(k.value.value for k in call.keywords if k.arg == "package")
            assert pkg == "stereonet_ros" or pkg in keys, f"{path.name} starts {pkg}, not in package.xml"
        text = path.read_text()
        if "launch_ros" in text:
            assert {"launch", "launch_ros"} <= keys
        if re.search(r'\[\s*"ros2",\s*"bag"', text):
            assert "rosbag2" in keys, f"{path.name} runs 'ros2 bag'"


def test_a_fresh_robot_environment_runs_every_console_script(tmp_path):
    """A new virtual environment gets exactly the robot install: the pip stand-ins of
    package.xml's keys (what rosdep installs on a robot), ``-r requirements-robot.txt`` and
    the package (--no-deps), offline from the wheelhouse that tools/robot_wheelhouse.py
    downloaded from the registry (the tests run without a network). Then every console
    script answers --help with exit 0, and every third-party module the scripts import (the
    scan above) imports there. Measured on the shared 2-core machine: 85-125 s in all, most of it
    pip unpacking torch."""
    assert wheelhouse.is_current(), ("the robot wheelhouse .whl/ is missing or stale: tools/run_tests.sh "
                                     "downloads it before entering the network namespace "
                                     "(python tools/robot_wheelhouse.py); did the download fail?")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_FIND_LINKS")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["PIP_CONFIG_FILE"] = os.devnull   # the machine's pip config adds local indexes; only .whl counts
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index",
                        "--find-links", str(wheelhouse.DEFAULT_DEST),
                        "-r", str(ROOT / "requirements-robot.txt"), *wheelhouse.stand_in_requirements()],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    src = tmp_path / "src"
    copy_checkout(src)
    # --no-deps: the package's own install_requires must not bring in what the two files miss
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                        str(src)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    work = tmp_path / "cwd"   # not the repository: the installed package must be what runs
    work.mkdir()
    for script in sorted(console_scripts()):
        exe = venv / "bin" / script
        assert exe.exists(), f"pip did not install the console script {script}"
        r = subprocess.run([str(exe), "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0 and "usage" in r.stdout.lower(), \
            f"{script} --help:\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
    modules = set()
    for entry in entry_modules().values():
        modules |= set(third_party_imports(entry))
    modules -= OPTIONAL_MODULES
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in sorted(modules)) + \
        "import stereonet_ros; print(stereonet_ros.__file__)"
    r = subprocess.run([str(py), "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert str(venv) in r.stdout, f"the package came from {r.stdout.strip()}, not the fresh environment"
