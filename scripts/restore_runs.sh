#!/usr/bin/env bash
# Put the 0.3.0 ShapeWorld parts (the recipe's 4-channel KL design) back into runs/<stage>/export,
# with each stage's run record (models/parts/<stage>/{train_summary.json,config.yaml}), so
# `make train-shapeworld` skips the stages already trained and a stage can be continued from its
# weights (`init_from`). Since 0.4.0 models/shapeworld holds the DC parts (scripts/assemble_dc.sh);
# 0.3.0's weights come from git history into MODEL (default models/shapeworld-0.3.0):
#   mkdir -p models/shapeworld-0.3.0 && git archive 4f274de8418a models/shapeworld | tar -x --strip-components=2 -C models/shapeworld-0.3.0
# Never overwrites: a stage whose export already exists is left alone.
#   scripts/restore_runs.sh [STAGE...]     (default: every stage with a record)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/shapeworld-0.3.0}
if [ ! -f "$MODEL/evedit_model.json" ]; then
  echo "No 0.3.0 model folder at $MODEL; extract it from git history first (see the head of $0)." >&2; exit 2
fi
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
