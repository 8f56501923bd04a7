#!/bin/sh
# The prepared GPU check (bench/README.md, bench/gpu.py): on a CUDA machine, times the scan backends and
# the three models at the plugin's and the papers' widths, checks bf16 against fp32, and writes
# bench/results/gpu.md and gpu.json; its time budget is meant for 8 minutes on one H100. Arguments go to
# bench/gpu.py.
set -e
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || python=python3   # a GPU machine without the project's venv: its own Python
# A hard stop at 9 minutes: --budget-s (6 min) only keeps new rows from starting.
exec timeout 540 "$python" bench/gpu.py "$@"
