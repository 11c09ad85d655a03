#!/usr/bin/env bash
# The test command (README, CI): sets up .venv, then runs pytest in a private network
# namespace so DDS traffic stays inside the test run and large images cross reliably
# (Fast DDS's LARGE_DATA builtin transport, discovery on the namespace's loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA
export PYTHONUNBUFFERED=1
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' sh "$@"
fi
echo "[test] no private network namespace (needs root + unshare): running on the host network" >&2
exec .venv/bin/python -m pytest "$@"
