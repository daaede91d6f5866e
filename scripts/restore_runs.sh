#!/usr/bin/env bash
# Put the shipped ShapeWorld parts back into runs/<stage>/export, with each stage's run record
# (models/parts/<stage>/{train_summary.json,config.yaml}), so `make train-shapeworld` skips the
# stages already trained and a stage can be continued from its weights (`init_from`).
# Never overwrites: a stage whose export already exists is left alone.
#   scripts/restore_runs.sh [STAGE...]     (default: every stage with a record)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/shapeworld
declare -A PARTS=([codec]="vae" [codec-decoder]="vae" [codec-decoder-noise]="vae"
                  [t2i]="unet" [edit-adapter]="controlnet" [video-adapter]="motion_adapter first_frame"
                  [clip]="shapeclip" [task-classifier]="task_classifier")
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(codec codec-decoder codec-decoder-noise t2i edit-adapter video-adapter clip task-classifier)
for stage in "${stages[@]}"; do
  parts=${PARTS[$stage]:-}
  if [ -z "$parts" ]; then echo "Unknown stage '$stage'; stages: ${!PARTS[*]}." >&2; exit 2; fi
  record=models/parts/$stage out=runs/$stage/export
  if [ ! -f "$record/train_summary.json" ]; then echo "== $stage: no run record in $record, skipped"; continue; fi
  if [ -e "$out" ]; then echo "== $stage: $out exists, left alone"; continue; fi
  mkdir -p "$out.partial"
  for part in $parts; do cp -r "$MODEL/$part" "$out.partial/"; done
  cp "$record/train_summary.json" "$record/config.yaml" "$out.partial/"
  mv "$out.partial" "$out"
  echo "== $stage: restored $out ($parts)"
done
