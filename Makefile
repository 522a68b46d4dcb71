# CityTwin: `make demo` serves the sample city, `make test` runs every check.
# Both set up what is missing first (scripts/setup.sh) and are safe to run again.
BIN := .venv/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup demo live-demo test test-stress lint sample bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/twin sample load
	$(BIN)/twin serve --host $(HOST) --port $(PORT)

# Bologna live: the Acosta scenario's network in its own database, served beside SUMO publishing
# its real detectors and buses over MQTT (twin live simulate). Ctrl-C stops both.
BOLOGNA ?= ../shared/data/bologna/acosta/run.sumocfg
LIVE_DB ?= postgresql://postgres@127.0.0.1:5432/twin_bologna
LIVE_ENV := TWIN_DATABASE_URL=$(LIVE_DB) TWIN_CITY_NAME=Bologna \
	TWIN_CITY_BBOX='[11.29, 44.48, 11.35, 44.52]' TWIN_METRIC_CRS=EPSG:32632
SPEED ?= 5

live-demo: setup
	$(LIVE_ENV) $(BIN)/twin db upgrade
	$(LIVE_ENV) $(BIN)/twin signals import $(BOLOGNA)
	$(LIVE_ENV) bash -c 'trap "kill 0" EXIT; \
		$(BIN)/twin live simulate $(BOLOGNA) --speed $(SPEED) --no-import & \
		$(BIN)/twin serve --host $(HOST) --port $(PORT)'

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The suite beside one CPU-bound process per core, STRESS_RUNS times (default 2): flake hunting.
test-stress: setup
	@bash scripts/test-stress.sh

# Rebuild data_samples/monaco from ../shared/data/monaco (the files are committed).
sample: setup
	$(BIN)/python data_samples/build_monaco.py

bench: setup
	@command -v wrk >/dev/null || apt-get install -y -q wrk
	@test -x bench/.tipg-venv/bin/python || \
		(python3 -m venv bench/.tipg-venv && bench/.tipg-venv/bin/pip install -q tipg uvicorn)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/routing_peers.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/utilities.py
	$(BIN)/python bench/viewer.py
	$(BIN)/python bench/signals.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/live_routing.py
	$(BIN)/python bench/incidents.py
