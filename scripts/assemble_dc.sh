#!/usr/bin/env bash
# Assemble the teachers of the DC retrain (not the shipped model) from models/parts into one model
# folder: the 16-channel DC codec with its noise-trained decoder, the backbone on it, the edit and
# video adapters trained on that backbone; ShapeCLIP from models/parts/clip-20k (0.4.1's), the task
# classifier from models/shapeworld.
# The parts' runs lie under runs/dc/<stage>/export as links, so `evedit model assemble` reads them
# as it reads a recipe's runs; measured in benchmarks/results/edit_fidelity.md ("The DC retrain").
#   scripts/assemble_dc.sh [OUT]            (default OUT: runs/dc/teachers)
# EDIT_ADAPTER=FOLDER takes another edit adapter (a part folder or a run's export with controlnet/),
# T2I=FOLDER another backbone (with unet/), VIDEO_ADAPTER=FOLDER another video adapter (with
# motion_adapter/ and first_frame/), SHAPECLIP=FOLDER another ShapeCLIP (with shapeclip/); RUNS=FOLDER
# another place for the links (default runs/dc):
#   RUNS=runs/dc-c128 EDIT_ADAPTER=models/parts/edit-adapter-dc-c128 scripts/assemble_dc.sh runs/dc-c128/teachers
set -euo pipefail
cd "$(dirname "$0")/.."
EVEDIT=${EVEDIT:-.venv/bin/evedit}
OUT=${1:-runs/dc/teachers}
RUNS=${RUNS:-runs/dc}
P=$PWD/models/parts M=$PWD/models/shapeworld
EDIT=$(realpath "${EDIT_ADAPTER:-$P/edit-adapter-dc}")
T2I=$(realpath "${T2I:-$P/t2i-dc}")
VIDEO=$(realpath "${VIDEO_ADAPTER:-$P/video-adapter-dc}")
CLIP=$(realpath "${SHAPECLIP:-$P/clip-20k}")
link() {  # link STAGE RECORD PART_SOURCE...: runs/dc/STAGE/export with the parts and the run record
  local stage=$1 record=$2; shift 2
  mkdir -p "$RUNS/$stage/export"
  for part in "$@"; do ln -sfn "$part" "$RUNS/$stage/export/$(basename "$part")"; done
  cp "$record/train_summary.json" "$record/config.yaml" "$RUNS/$stage/export/"
}
link codec "$P/codec-dc" "$P/codec-dc/vae"
link codec-decoder-noise "$P/codec-dc-decoder-noise" "$P/codec-dc-decoder-noise/vae"
link t2i "$T2I" "$T2I/unet"
link edit-adapter "$EDIT" "$EDIT/controlnet"
link video-adapter "$VIDEO" "$VIDEO/motion_adapter" "$VIDEO/first_frame"
link clip "$CLIP" "$CLIP/shapeclip"
link task-classifier "$P/task-classifier" "$M/task_classifier"
HF_HUB_OFFLINE=1 "$EVEDIT" model assemble --runs "$RUNS" --out "$OUT"
