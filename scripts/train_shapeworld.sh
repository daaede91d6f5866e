#!/usr/bin/env bash
# Train every ShapeWorld part from scratch, align them by FDD, then assemble models/shapeworld (fp16)
# and measure it on the held-out test split (quality.json and the model card).
# Resumable: a stage with an export is skipped; one with checkpoints continues with --resume.
# One torch thread per process: on 2 shared cores two threads ran several times slower
# (benchmarks/results/train.md). Stages that do not depend on each other run two at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
EVEDIT=${EVEDIT:-.venv/bin/evedit}
RUNS=runs  # the recipes in configs/ read their inputs from runs/<stage>/export
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

stage() {  # stage NAME [STAGE]: train configs/NAME.yaml (stage STAGE, default NAME) into runs/NAME
  local name=$1 kind=${2:-$1} resume=""
  if [ -f "$RUNS/$name/export/train_summary.json" ]; then
    echo "== $name: already trained ($RUNS/$name/export)"; return
  fi
  if compgen -G "$RUNS/$name/checkpoints/step_*" > /dev/null; then resume="--resume"; fi
  echo "== $name ${resume:+(resuming)}"
  "$EVEDIT" train "$kind" --config "configs/$name.yaml" --out "$RUNS/$name" $resume
}

store() {  # store KIND ITEMS VAE: encode ITEMS train items once into stores/KIND (resumes if cut)
  if [ -f "stores/$1/store.json" ]; then echo "== store $1: already built"; return; fi
  echo "== store $1"
  "$EVEDIT" data build "$1" -o "stores/$1" -n "$2" --vae "$3"
}

parallel() {  # parallel NAME...: train stages side by side; fail if any fails
  local pids=() pid
  for name in "$@"; do stage "$name" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
}

stage codec
# The diffusion stages read encoded stores (configs/<stage>.yaml data: kind store): no codec or
# MiniLM inside a step. Two lanes, about 22 and 17 min (benchmarks/results/recipe.md).
(store image 20000 runs/codec/export/vae && store video 5000 runs/codec/export/vae) & lane_pid=$!
store edit 20000 runs/codec/export/vae
wait "$lane_pid"
parallel t2i clip            # ShapeCLIP and the task classifier need no other part
stage task-classifier
stage edit-adapter & edit_pid=$!   # the longest stage; beside it, the video adapter, then the
stage video-adapter                # codec's two decoder fine-tunes (encoder frozen: the latents
stage codec-decoder codec          # the other stages trained on stay the same), whose VAE
stage codec-decoder-noise codec    # assembly prefers
wait "$edit_pid"

"$EVEDIT" model assemble --runs "$RUNS" --out "$RUNS/teachers"
store align 128 "$RUNS/teachers"   # the teachers' own (fp16) codec: a store is tied to its codec
if [ ! -f "$RUNS/align/align_summary.json" ]; then
  resume=""; compgen -G "$RUNS/align/checkpoints/step_*" > /dev/null && resume="--resume"
  # SDS terms alone on the guided student: what ships (benchmarks/results/guided_fdd.md)
  "$EVEDIT" align --config configs/align.yaml --ablation no-adv --model "$RUNS/teachers" --out "$RUNS/align" $resume
fi
"$EVEDIT" model assemble --runs "$RUNS" --aligned "$RUNS/align/model" --out models/shapeworld
# The LoRA's default strength, chosen on the val split with the student guided as the teachers
# (benchmarks/results/lora_scale.md, guide_distill.md; ~15 min; started afresh: its records belong
# to the model just assembled); --write records both in the manifest
rm -rf "$RUNS/eval/lora-scale-val"
"$(dirname "$EVEDIT")/python" benchmarks/lora_scale.py --model models/shapeworld --scales 0,0.25,0.5,0.75,1 \
  --guidance 2 --limit 56 --out "$RUNS/eval/lora-scale-val" --write
"$EVEDIT" model report --model models/shapeworld
