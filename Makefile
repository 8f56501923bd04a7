# Every target sets up what is missing first (scripts/setup.sh is idempotent), then works.
# The two commands for a fresh Debian 12 machine: `make demo` and `make test`.

PY := .venv/bin/python
SAMPLE := sample
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test bench zip qgis clean

setup:
	@scripts/setup.sh

## Make the built-in sample (once), train CSSMamba on its ROIs, classify it, print the accuracy and output paths.
demo: setup
	$(PY) -m engine demo --out $(SAMPLE)

## The whole test suite (QGIS offscreen, real data from ../shared/data).
test: setup
	$(PY) -m pytest

## Benchmarks; tables and JSON land in bench/results/.
bench: setup
	$(PY) bench/scan.py

## An installable plugin zip in dist/ (only what QGIS needs).
zip: setup
	$(PY) scripts/make_zip.py --out dist

## QGIS desktop with the plugin enabled, the venv on the path, and the sample loaded if made.
qgis: setup
	scripts/run_qgis.sh $(wildcard $(SAMPLE)/sample.tif $(SAMPLE)/sample_rois.gpkg)

clean:
	rm -rf build dist .pytest_cache .qgis-profile
