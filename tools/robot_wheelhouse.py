"""Download the wheels of a robot install into ``.whl/`` so a test can build a fresh one offline.

A robot gets its dependencies from two places: ``rosdep`` (package.xml) and
``pip install -r requirements-robot.txt``. The test suite runs in a private network
namespace (tools/run_tests.sh) where the package registry cannot be reached, so this
script, run by run_tests.sh before entering it, fetches the wheels of exactly those two
sources (package.xml's keys through ``STAND_INS``) from the registry with ``pip download``;
test/test_install.py then installs them with ``--no-index`` into a new virtual environment
and runs every console script there. It downloads again only when what it would fetch
changed (a stamp of the requirement lines).

    python tools/robot_wheelhouse.py [--dest .whl] [--force]
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / ".whl"
STAMP = "wheelhouse.sha256"

#: What stands in for each package.xml exec_depend key where there is no ROS apt repository
#: (this project's machines and CI): the registry's ros-kilted-* wheels for ROS packages, the
#: PyPI builds for rosdep's Python libraries. None: nothing installable without a ROS install;
#: its users must cope (launch, launch_ros, rviz2 and rosbag2 serve the launch files, which
#: test_package checks statically).
STAND_INS: Dict[str, Optional[str]] = {
    "rclpy": "ros-kilted-rclpy[fastrtps]",
    "rcl_interfaces": "ros-kilted-rcl-interfaces",
    "sensor_msgs": "ros-kilted-sensor-msgs",
    "stereo_msgs": "ros-kilted-stereo-msgs",
    "std_msgs": "ros-kilted-std-msgs",
    "diagnostic_msgs": "ros-kilted-diagnostic-msgs",
    "python3-numpy": "numpy",
    "python3-opencv": "opencv-python-headless",
    "python3-yaml": "pyyaml",
    "launch": None,
    "launch_ros": None,
    "rviz2": None,
    "rosbag2": None,
}


def package_xml_keys(tag: str = "exec_depend", path: Path = ROOT / "package.xml") -> List[str]:
    """The rosdep keys of one dependency tag of package.xml, in file order."""
    return [e.text.strip() for e in ET.parse(path).getroot().iter(tag) if e.text and e.text.strip()]


def stand_in_requirements() -> List[str]:
    """pip requirements standing in for package.xml's exec_depends; KeyError names a key
    that ``STAND_INS`` does not cover (a new dependency must say what replaces it here)."""
    missing = [k for k in package_xml_keys() if k not in STAND_INS]
    if missing:
        raise KeyError(f"package.xml keys without an entry in tools/robot_wheelhouse.py STAND_INS: {missing}")
    return [STAND_INS[k] for k in package_xml_keys() if STAND_INS[k]]


def wanted_stamp() -> str:
    """Hash of everything that decides the wheelhouse's contents."""
    text = (ROOT / "requirements-robot.txt").read_text() + "\n".join(stand_in_requirements()) + sys.version
    return hashlib.sha256(text.encode()).hexdigest()


def is_current(dest: Path = DEFAULT_DEST) -> bool:
    return (dest / STAMP).exists() and (dest / STAMP).read_text().strip() == wanted_stamp()


def download(dest: Path = DEFAULT_DEST, force: bool = False) -> int:
    """``pip download`` the robot install into ``dest`` (exit status of pip, 0 when current)."""
    if is_current(dest) and not force:
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    (dest / STAMP).unlink(missing_ok=True)
    print(f"[wheelhouse] downloading the robot install's wheels into {dest} (first run: a minute)", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(dest),
           "-r", str(ROOT / "requirements-robot.txt"), *stand_in_requirements()]
    r = subprocess.run(cmd)
    # Source-only distributions (empy, for the ROS wheels) are built into wheels here, where the
    # registry's build tools can be fetched; offline, pip could not build them.
    for sdist in sorted(p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip"))):
        if r.returncode == 0:
            r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                                "--no-deps", "-w", str(dest), str(sdist)])
        if r.returncode == 0:
            sdist.unlink()
    if r.returncode == 0:
        (dest / STAMP).write_text(wanted_stamp() + "\n")
    return r.returncode


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    p.add_argument("--force", action="store_true", help="download even when the stamp says current")
    a = p.parse_args(argv)
    return download(a.dest, a.force)


if __name__ == "__main__":
    sys.exit(main())
