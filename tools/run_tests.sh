#!/usr/bin/env bash
# The test command (README, CI): sets up .venv, then runs pytest in a private network
# namespace so DDS traffic stays inside the test run and large images cross reliably
# (Fast DDS's LARGE_DATA builtin transport, discovery on the namespace's loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# The wheels of a robot install (package.xml stand-ins + requirements-robot.txt) for
# test_install's fresh-environment check, fetched here: inside the namespace there is no
# registry. Only when they changed; a failed download fails that test, not the others.
if ! .venv/bin/python tools/robot_wheelhouse.py 2> >(grep -v "is ignored: it is neither" >&2); then
  echo "[test] could not download the robot wheelhouse: test_install's fresh-environment check will fail" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA
export PYTHONUNBUFFERED=1
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' sh "$@"
fi
echo "[test] no private network namespace (needs root + unshare): running on the host network" >&2
exec .venv/bin/python -m pytest "$@"
