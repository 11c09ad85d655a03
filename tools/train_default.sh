#!/usr/bin/env bash
# Reproduce the shipped default model from scratch: eleven training stages, export, measurement.
#   make train-default            (CPU: about 6 h 40 min on 2 cores; add --trainer.accelerator=gpu
#                                  through STEREONET_TRAIN_ARGS for a GPU)
# Stage 1: config/train_default.yaml (matching layers only, cheap steps). Stage 2: the whole
# network from stage 1's weights (config/train_default_stage2.yaml). Stage 3: SGBM-labelled
# real pairs of other domains join (config/train_default_stage3.yaml). Stage 4: the refiners
# also see the right view warped by their disparity (config/train_default_stage4.yaml). Stage 5:
# stage 4 continued down a longer, lower cosine (config/train_default_stage5.yaml). Stage 6: stage 5
# continued, the refiners also seeing residuals at neighbouring disparities
# (config/train_default_stage6.yaml). Stages 7-8: stage 6 continued down two more short, low
# cosines (config/train_default_stage7.yaml, _stage8.yaml). Stage 9: on data upsampled 1.25x,
# the scale of the weights' operating point (config/train_default_stage9.yaml); stage 10 continues
# it (config/train_default_stage10.yaml), stage 11 on larger crops (config/train_default_stage11.yaml). Needs ../shared/data
# (the project's real pairs) or data.root / data.label_root pointed at pairs of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
py=.venv/bin/python
extra=(${STEREONET_TRAIN_ARGS:-})
for d in runs/default runs/default_stage{1,2,3,4,5,6,7,8,9,10}; do
  if [ -e "$d" ]; then echo "[train-default] $d exists: move it away first" >&2; exit 1; fi
done
# Each stage adds its config on top of the previous ones and starts from the previous stage's
# final checkpoint (model.init_weights: runs/default_stage<N-1>/checkpoints/final.ckpt).
cfg=(--config config/train_default.yaml)
for n in 1 2 3 4 5 6 7 8 9 10 11; do
  if [ "$n" -gt 1 ]; then cfg+=(--config "config/train_default_stage$n.yaml"); fi
  $py -m training.cli fit "${cfg[@]}" "${extra[@]}"
  if [ "$n" -lt 11 ]; then mv runs/default "runs/default_stage$n"; fi
done
# The operating point the node runs the weights at (model card, "Operating point": chosen on the
# validation pairs from training.measure --input-scale/--refiners and the bench).
$py -m training.cli export --checkpoint runs/default/checkpoints/final.ckpt --output runs/default/stereonet_default.pt \
    --input-scale 1.25 --refiners 1
$py -m training.measure --checkpoint runs/default/stereonet_default.pt --num-threads 1 \
    --figures runs/default/figures --json runs/default/measure.json
echo "[train-default] weights: runs/default/stereonet_default.pt (copy to stereonet_ros/weights/ to ship)"
