# CityTwin: `make demo` serves the sample city, `make test` runs every check.
# Both set up what is missing first (scripts/setup.sh) and are safe to run again.
BIN := .venv/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup demo live-demo test test-stress lint sample bench lock bundle

setup:
	@bash scripts/setup.sh

# anonymous visitors see the public layers; sign in (the viewer's form) as admin for the rest
demo: setup
	$(BIN)/twin sample load
	$(BIN)/twin auth user add admin --role administrator --generate-password --exist-ok
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
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/access.py
	$(BIN)/python bench/city_init.py
	$(BIN)/python bench/city_scale_routing.py
	$(BIN)/python bench/serving_workers.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/replica.py
	$(BIN)/python bench/onemap.py
	$(BIN)/python bench/scenarios.py

# Re-lock after a change to pyproject.toml's dependencies (or tests/oracles-requirements.txt):
# requirements/lock.txt and requirements/oracles.lock.txt with every file's hash, resolved against
# PyPI itself for CPython 3.11 (any local pip configuration is ignored), keeping the pins already
# there unless UPGRADE=1; and package-lock.json for the viewer's npm packages (bundled at set-up
# by scripts/build-viewer.mjs).
UV_COMPILE := $(BIN)/uv pip compile --quiet --no-config --index-url https://pypi.org/simple \
	--universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" \
	$(if $(UPGRADE),--upgrade)
NPM_REGISTRY ?= https://registry.npmjs.org/

lock:
	@test -x $(BIN)/python || bash scripts/setup.sh
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q uv
	env -u UV_EXTRA_INDEX_URL -u UV_FIND_LINKS -u UV_CONSTRAINT $(UV_COMPILE) \
		--extra dev pyproject.toml requirements/build.in -o requirements/lock.txt
	env -u UV_EXTRA_INDEX_URL -u UV_FIND_LINKS -u UV_CONSTRAINT $(UV_COMPILE) \
		tests/oracles-requirements.txt -o requirements/oracles.lock.txt
	npm install --package-lock-only --ignore-scripts --no-audit --no-fund \
		--omit-lockfile-registry-resolved=false --registry=$(NPM_REGISTRY)
	@echo "[lock] requirements/lock.txt, requirements/oracles.lock.txt, package-lock.json"

# One archive, dist/citytwin-bundle.tar, from which set-up installs with no registry at all:
# the wheels of both locks, the viewer's npm packages (an npm cache) and the Debian packages set-up installs
# (with what they need on top of a minimal Debian). TWIN_BUNDLE=path make demo uses it.
bundle:
	@bash scripts/bundle.sh

# A streaming read replica of the store on this machine (scripts/replica.sh: pg_basebackup -R,
# port REPLICA_PORT, default 5433); serve with TWIN_DATABASE_READ_URLS=postgresql://postgres@127.0.0.1:5433.
# REPLICA=stop|status|remove to stop, report or delete it. The primary is never restarted.
.PHONY: replica
REPLICA ?= start

replica:
	@bash scripts/replica.sh $(REPLICA)
