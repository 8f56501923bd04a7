#!/usr/bin/env bash
# Train CSSMamba on the GPUs of one Slurm node with torchrun (README: "On a GPU, or several").
# Submit from the repository (or the unpacked plugin) folder, e.g.
#   sbatch --gres=gpu:4 scripts/slurm_train.sh scene.tif rois.gpkg class_id model.pt
# One process per GPU; rank 0 writes the model file and the report. A time limit's SIGTERM cancels
# cleanly on every rank (no half-written model); give --signal=B:TERM@120 (to this batch shell, which
# runs torchrun) for two minutes of warning.
#SBATCH --job-name=cssmamba-train
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
set -euo pipefail
raster=${1:?usage: slurm_train.sh RASTER ROIS CLASS_FIELD OUT_MODEL [more 'engine train' options]}
rois=${2:?ROI file missing}
field=${3:?class field missing}
out=${4:?output model missing}
shift 4
gpus=${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}
python=${CSSMAMBA_PYTHON:-.venv/bin/python}
exec "$python" -m torch.distributed.run --standalone --nproc_per_node="$gpus" -m engine train \
    --raster "$raster" --rois "$rois" --class-field "$field" --out "$out" --report "${out%.*}.json" \
    --device cuda "$@"
