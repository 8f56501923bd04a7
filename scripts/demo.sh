#!/usr/bin/env bash
# `make demo`: the main job through qgis_process, the same algorithms an analyst runs from the Processing
# Toolbox: the built-in sample (made once) -> Train CSSMamba on its ROIs -> Classify raster -> Accuracy
# assessment against the sample's full reference map; then where the outputs are.
# Usage: scripts/demo.sh [FOLDER]   (default: sample/ in the repository)
# DEMO_EPOCHS overrides the 50 epochs of engine/cli.py's DEMO_EPOCHS (the CLI demo trains as long);
# DEMO_THREADS caps torch's CPU threads (e.g. 1 on a machine busy with other work).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(realpath -m "${1:-$root/sample}")
epochs="${DEMO_EPOCHS:-50}"
if [ -n "${DEMO_THREADS:-}" ]; then
  export OMP_NUM_THREADS="$DEMO_THREADS" MKL_NUM_THREADS="$DEMO_THREADS"  # torch's thread pool size at start-up
fi

step() { printf '\n== %s\n' "$*"; }
# QGIS's own Python start-up warns about sip.setapi; it says nothing about this job. qgis_process prints
# its progress as ticks ("0", ".", "10", …) without line breaks, which ran into the log lines
# (".epoch 38/50", "80epoch 42/50"); scripts/progress_ticks.sed drops ticks at the start of a line
# (pipefail keeps the status).
run() {
  PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}" "$root/scripts/qgis_process.sh" run "$@" |
    sed -u -E -f "$root/scripts/progress_ticks.sed"
}

if [ -f "$out/sample.tif" ]; then
  step "using the existing sample in $out (delete it to make a new one)"
else
  step "cssmamba:createsample: the built-in synthetic scene in $out"
  run cssmamba:createsample -- "OUTPUT_FOLDER=$out"
fi

step "cssmamba:train: CSSMamba on the sample's ROIs, $epochs epochs"
run cssmamba:train -- "INPUT=$out/sample.tif" "ROIS=$out/sample_rois.gpkg" CLASS_FIELD=class_id \
  NAME_FIELD=class_name "EPOCHS=$epochs" "OUTPUT_MODEL=$out/demo_cssmamba.pt" \
  "OUTPUT_REPORT=$out/demo_training.html"

step "cssmamba:classify: the whole scene"
run cssmamba:classify -- "INPUT=$out/sample.tif" "MODEL=$out/demo_cssmamba.pt" "OUTPUT=$out/demo_classes.tif" \
  "OUTPUT_CONFIDENCE=$out/demo_confidence.tif" "OUTPUT_CLUSTERS=$out/demo_clusters.tif"

step "cssmamba:accuracy: the class map against the sample's full reference map (ROI pixels included)"
run cssmamba:accuracy -- "INPUT=$out/demo_classes.tif" "REFERENCE_RASTER=$out/sample_labels.tif" \
  "OUTPUT_REPORT=$out/demo_accuracy.html" "OUTPUT_CSV=$out/demo_accuracy.csv" "OUTPUT_JSON=$out/demo_accuracy.json"

step "outputs (the class, confidence and cluster maps carry .qml styles; 'make qgis' opens those of sample/)"
for path in demo_cssmamba.pt demo_training.html demo_classes.tif demo_confidence.tif demo_clusters.tif \
            demo_accuracy.html demo_accuracy.csv demo_accuracy.json; do
  [ -e "$out/$path" ] || { echo "demo: $out/$path was not written" >&2; exit 1; }
  printf '%-20s %s\n' "$path" "$out/$path"
done
