#!/usr/bin/env bash
# The test suite on a loaded machine: one CPU-bound process per core runs beside pytest for the
# whole run, so that a test racing a server, a browser or SUMO fails here rather than in CI.
#   STRESS_RUNS   how many whole-suite runs in a row (default 2); the first red one stops it
#   STRESS_LOAD   how many busy processes (default: one per core)
#   PYTEST_ARGS   extra pytest arguments (e.g. "tests/api/test_viewer.py")
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${STRESS_RUNS:-2}
load=${STRESS_LOAD:-$(nproc)}

say() { printf '\033[1m[test-stress]\033[0m %s\n' "$*"; }

pids=()
stop_load() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap stop_load EXIT INT TERM
for _ in $(seq 1 "$load"); do
    # bounded: a busy loop that ends by itself after two hours even if this script is killed -9
    timeout 7200 .venv/bin/python -c 'while True: pass' &
    pids+=($!)
done
say "$load CPU-bound processes started beside the tests"

for run in $(seq 1 "$runs"); do
    say "run $run of $runs"
    started=$(date +%s)
    # shellcheck disable=SC2086
    .venv/bin/pytest -p no:cacheprovider ${PYTEST_ARGS:-}
    say "run $run of $runs passed in $(( $(date +%s) - started )) s"
done
