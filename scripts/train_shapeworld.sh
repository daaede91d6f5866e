#!/usr/bin/env bash
# Train every ShapeWorld part from scratch, then assemble models/shapeworld (fp16).
# Resumable: a stage with an export is skipped; one with checkpoints continues with --resume.
# One torch thread per process: on 2 shared cores two threads ran several times slower
# (benchmarks/results/train.md).
set -euo pipefail
cd "$(dirname "$0")/.."
EVEDIT=${EVEDIT:-.venv/bin/evedit}
RUNS=runs  # the recipes in configs/ read their inputs from runs/<stage>/export
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
for stage in codec t2i edit-adapter video-adapter clip task-classifier; do
  if [ -f "$RUNS/$stage/export/train_summary.json" ]; then
    echo "== $stage: already trained ($RUNS/$stage/export)"; continue
  fi
  resume=""
  if compgen -G "$RUNS/$stage/checkpoints/step_*" > /dev/null; then resume="--resume"; fi
  echo "== $stage ${resume:+(resuming)}"
  "$EVEDIT" train "$stage" --config "configs/$stage.yaml" --out "$RUNS/$stage" $resume
done
"$EVEDIT" model assemble --runs "$RUNS" --out models/shapeworld
