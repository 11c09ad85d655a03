#!/usr/bin/env bash
# Reproduce the shipped default model from scratch: both training stages, export, measurement.
#   make train-default            (CPU: a few hours on 2 cores; add --trainer.accelerator=gpu
#                                  through STEREONET_TRAIN_ARGS for a GPU)
# Stage 1: config/train_default.yaml (matching layers only, cheap steps). Stage 2: the whole
# network from stage 1's weights, config/train_default_stage2.yaml. Needs ../shared/data (the
# project's real pairs) or data.root pointed at pairs of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
py=.venv/bin/python
extra=(${STEREONET_TRAIN_ARGS:-})
if [ -e runs/default ] || [ -e runs/default_stage1 ]; then
  echo "[train-default] runs/default or runs/default_stage1 exists: move it away first" >&2
  exit 1
fi
$py -m training.cli fit --config config/train_default.yaml "${extra[@]}"
mv runs/default runs/default_stage1
$py -m training.cli fit --config config/train_default.yaml --config config/train_default_stage2.yaml "${extra[@]}"
$py -m training.cli export --checkpoint runs/default/checkpoints/final.ckpt --output runs/default/stereonet_default.pt
$py -m training.measure --checkpoint runs/default/stereonet_default.pt --knobs --threads 1 --json runs/default/measure.json
echo "[train-default] weights: runs/default/stereonet_default.pt (copy to stereonet_ros/weights/ to ship)"
