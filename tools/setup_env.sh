#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv from requirements.txt.
# Idempotent: reinstalls only when requirements.txt changed. Needs python3 >= 3.10 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${STEREONET_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.requirements.sha"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing requirements (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/python" -c "import torch, rclpy, sensor_msgs.msg, stereo_msgs.msg, diagnostic_msgs.msg, lightning, rosbags, cv2, skimage, onnx, onnxruntime, openvino" \
    || { echo "[setup] installation incomplete, see messages above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
