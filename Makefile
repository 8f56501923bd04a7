# Every target sets up what is missing first (scripts/setup.sh is idempotent), then works.
# The two commands for a fresh Debian 12 machine: `make demo` and `make test`.

PY := .venv/bin/python
SAMPLE := sample
export QT_QPA_PLATFORM ?= offscreen
LRELEASE := /usr/lib/qt5/bin/lrelease
QM := $(patsubst %.ts,%.qm,$(wildcard i18n/*.ts))

.PHONY: setup i18n demo demo-cli test bench zip qgis screenshot clean

setup:
	@scripts/setup.sh

## Compile the translations (i18n/*.ts, see scripts/update_translations.py) to the .qm files QGIS loads.
i18n: setup $(QM)

i18n/%.qm: i18n/%.ts
	$(LRELEASE) -silent $< -qm $@

## Through qgis_process: make the built-in sample (once), train CSSMamba on its ROIs, classify it,
## assess the class map against the sample's reference labels, print the accuracy and output paths.
## DEMO_THREADS=N caps torch's CPU threads (1 on a busy machine), DEMO_EPOCHS=N trains longer (default 50):
## `make demo DEMO_THREADS=2` or `DEMO_THREADS=2 make demo`.
demo: setup i18n
	scripts/demo.sh $(SAMPLE)

## The same job through the engine's command line, without QGIS.
demo-cli: setup
	$(PY) -m engine demo --out $(SAMPLE)

## The whole test suite (QGIS offscreen, real data from ../shared/data).
test: setup i18n
	$(PY) -m pytest

## Benchmarks; tables and JSON land in bench/results/.
bench: setup
	$(PY) bench/scan.py

## An installable plugin zip in dist/ (only what QGIS needs).
zip: setup i18n
	$(PY) scripts/make_zip.py --out dist

## QGIS desktop with the plugin enabled, the sample raster and its ROIs (made if missing), the demo's
## class and cluster maps when `make demo` ran, and the Processing Toolbox showing the CSSMamba tools.
qgis: setup i18n
	@[ -f $(SAMPLE)/sample.tif ] || scripts/qgis_process.sh run cssmamba:createsample -- OUTPUT_FOLDER=$(CURDIR)/$(SAMPLE)
	scripts/run_qgis.sh --code $(CURDIR)/scripts/qgis_startup.py $(SAMPLE)/sample.tif \
	    $(wildcard $(SAMPLE)/demo_classes.tif $(SAMPLE)/demo_clusters.tif) $(SAMPLE)/sample_rois.gpkg

## docs/screenshot.png: QGIS under Xvfb with the EnMAP Potsdam mosaic, a quickly trained CSSMamba's styled
## class map and its cluster map (MODEL=path.pt reuses a trained model instead of training).
screenshot: setup i18n
	$(PY) scripts/screenshot.py --out docs/screenshot.png $(if $(MODEL),--model $(MODEL))

clean:
	rm -rf build dist .pytest_cache .qgis-profile .qgis-profile-desktop $(QM)
