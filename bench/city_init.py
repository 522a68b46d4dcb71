"""City set-up benchmark (issue 18): ``twin city init`` vs per-layer imports vs ogr2ogr.

Not a test. Loads the same OpenStreetMap extract, ``../shared/data/malta/malta-latest.osm.pbf``
(Malta, 3.9 MB), each run into a fresh database of its own (``<name>_bench_cityinit_<pid>_<n>``,
made by :func:`layers.database.upgrade` and dropped afterwards; making it is not timed), and
prints the medians and the ratios against the issue's goals:

- ``init``: :func:`twin.founding.init_city` with ``estimate_population=False``: one pass over
  the file (libosmium), the features clipped at the extent, every layer validated and loaded
  in one transaction; ``init + population`` the same with the population estimated from the
  buildings' floor area (printed separately, not used in the ratios);
- ``per-layer``: what a user did before, :func:`layers.ingest.ingest` of the file once per
  layer of :data:`layers.osm.MAPPED_LAYERS`, each reading the whole file again (the city's
  extent set in the environment to the file header's box, widened to take the Malta-Sicily
  power cable the extract holds whole, so every feature is accepted);
  goal: ``init`` at least 3x faster than their sum;
- ``ogr2ogr``: GDAL's OSM driver, all its layers (points, lines, multilinestrings,
  multipolygons, other_relations) into PostGIS with ``PG_USE_COPY=YES``, no validation, no
  history, no mapping to the catalog; goal: ``init`` no slower.

Each loader runs ``--rounds`` times (3 by default), the order rotating every round. The
breakdown of ``init``'s steps is timed from its ``progress`` callback, which reports ``read``
(at the end of the pass, and every 50,000 objects), ``clip``, then ``<layer> validate`` for
every layer, then ``<layer> copy`` inside the transaction: "read (libosmium pass)" runs to the
last read report, "read (areas, extent)" from there to the clip (the extract's areas and
boundaries, the extent), "missing inputs, population" from the clip to the first validation
(the population estimate when asked, the report of missing inputs, the look for other
sources), a layer's validation from its first report to its last, and "<layer> write" from
the previous layer's last report to its own last copy report: its COPY plus the index rebuild
of the layer written before it (the callback reports no index step); the last layer's index
rebuild, the settings row and the commit come last.

Usage: ``python bench/city_init.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import osmium
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
MALTA = HERE.parent.parent / "shared" / "data" / "malta" / "malta-latest.osm.pbf"
#: Malta's box for the per-layer imports: the file header's (13.8154, 35.5199, 14.8561, 36.3330)
#: rounded outward and widened north to 36.8 deg: the extract holds the Malta-Sicily
#: interconnector whole (a power line reaching 36.78 deg N), and a per-layer import cannot clip.
MALTA_BBOX = (13.8, 35.5, 14.9, 36.8)
# The per-layer imports check features against the configured city: set it before the settings
# are first read. init_city sets its own extent and CRS and is not affected by these.
os.environ["TWIN_CITY_BBOX"] = "[" + ", ".join(str(v) for v in MALTA_BBOX) + "]"
os.environ["TWIN_METRIC_CRS"] = "EPSG:32633"

from layers.database import database_url, drop_database, get_engine, upgrade  # noqa: E402
from layers.ingest import ingest  # noqa: E402
from layers.osm import MAPPED_LAYERS  # noqa: E402
from twin.founding import init_city  # noqa: E402

GOAL_PER_LAYER = 3.0  # init at least 3x faster than the sum of per-layer imports
GOAL_OGR2OGR = 1.0  # init no slower than ogr2ogr
OGR_TABLES = ("points", "lines", "multilinestrings", "multipolygons", "other_relations")


class Scratch:
    """Fresh scratch databases, one per run, named after this process and a counter."""

    def __init__(self) -> None:
        self.base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
        self.made = 0

    def new(self, tag: str) -> str:
        """Create and migrate a new database; return its URL (not timed)."""
        self.made += 1
        name = f"{self.base.database}_bench_cityinit_{os.getpid()}_{self.made}{tag}"
        url = self.base.set(database=name).render_as_string(hide_password=False)
        drop_database(url)
        upgrade(url)
        get_engine(url).dispose()
        return url


class Stages:
    """A ``progress`` callback that keeps each stage's first and last report time."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        self.first.setdefault(stage, now)
        self.last[stage] = now

    def durations(self, ended: float) -> dict[str, float]:
        """Seconds per step of ``init_city``, in order (see the module's docstring)."""
        stages = list(self.first)  # in the order first reported
        validates = [s for s in stages if s.endswith(" validate")]
        copies = [s for s in stages if s.endswith(" copy")]
        out = {
            "read (libosmium pass)": self.last["read"] - self.started,
            "read (areas, extent)": self.first["clip"] - self.last["read"],
            "clip": self.last["clip"] - self.first["clip"],
            "missing inputs, population": self.first[validates[0]] - self.last["clip"],
        }
        for stage in validates:
            out[stage] = self.last[stage] - self.first[stage]
        out["validate (between layers)"] = (
            self.last[validates[-1]] - self.first[validates[0]] - sum(out[s] for s in validates)
        )
        previous = self.last[validates[-1]]
        for stage in copies:
            out[stage.replace(" copy", " write")] = self.last[stage] - previous
            previous = self.last[stage]
        out["last index rebuild, settings, commit"] = ended - previous
        return out


def run_init(url: str, *, population: bool) -> tuple[float, dict[str, float], int]:
    """Time ``init_city`` on Malta; return seconds, stage durations and features loaded."""
    stages = Stages()
    plan = init_city(MALTA, url=url, estimate_population=population, progress=stages)
    ended = time.perf_counter()
    get_engine(url).dispose()
    return ended - stages.started, stages.durations(ended), sum(x.features for x in plan.layers)


def run_per_layer(url: str) -> tuple[float, dict[str, float], int]:
    """Time one ``ingest`` of the file per mapped layer; return the sum, each and features."""
    each: dict[str, float] = {}
    features = 0
    for layer in MAPPED_LAYERS:
        started = time.perf_counter()
        report = ingest(layer, MALTA, url=url)
        each[layer] = time.perf_counter() - started
        features += report.added
    get_engine(url).dispose()
    return sum(each.values()), each, features


def run_ogr2ogr(url: str) -> tuple[float, dict[str, float], int]:
    """Time ``ogr2ogr`` of the whole file (GDAL's OSM driver) into PostGIS; return rows too."""
    target = make_url(url)
    pg = (
        f"PG:dbname={target.database} host={target.host} port={target.port or 5432} "
        f"user={target.username}"
    )
    command = ["ogr2ogr", "-f", "PostgreSQL", pg, str(MALTA)]
    command += ["--config", "PG_USE_COPY", "YES", "-overwrite"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    with get_engine(url).connect() as conn:
        rows = sum(
            int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())  # noqa: S608
            for table in OGR_TABLES
        )
    get_engine(url).dispose()
    return elapsed, {}, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="Runs per loader, median kept.")
    args = parser.parse_args()
    header = osmium.io.Reader(str(MALTA), osmium.osm.osm_entity_bits.NOTHING)
    box = header.header().box()
    header.close()
    print(
        f"file: {MALTA.name}, {MALTA.stat().st_size / 1e6:.1f} MB, header box {box}; "
        f"TWIN_CITY_BBOX {list(MALTA_BBOX)}, TWIN_METRIC_CRS EPSG:32633 (per-layer imports)"
    )
    scratch = Scratch()
    loaders: dict[str, Callable[[str], tuple[float, dict[str, float], int]]] = {
        "init": lambda url: run_init(url, population=False),
        "per-layer (sum)": run_per_layer,
        "ogr2ogr": run_ogr2ogr,
        "init + population": lambda url: run_init(url, population=True),
    }
    names = list(loaders)
    times: dict[str, list[float]] = {name: [] for name in names}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    counts: dict[str, int] = {}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            url = scratch.new("x")
            try:
                seconds, detail, features = loaders[name](url)
            finally:
                drop_database(url)
            times[name].append(seconds)
            parts[name].append(detail)
            counts[name] = features
            print(f"  round {round_ + 1}: {name:18} {seconds:7.2f} s", flush=True)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{'loader':20} {'median s':>9} {'min s':>7} {'max s':>7} {'features/rows':>14}")
    for name in names:
        values = times[name]
        print(
            f"{name:20} {median[name]:9.2f} {min(values):7.2f} {max(values):7.2f} "
            f"{counts[name]:14,}"
        )
    per_layer = median["per-layer (sum)"] / median["init"]
    ogr = median["ogr2ogr"] / median["init"]
    print(
        f"\nper-layer sum / init: {per_layer:5.2f}x  (goal >= {GOAL_PER_LAYER:g}x: "
        f"{'met' if per_layer >= GOAL_PER_LAYER else 'NOT met'})"
    )
    print(
        f"ogr2ogr / init:       {ogr:5.2f}x  (goal >= {GOAL_OGR2OGR:g}x, init no slower: "
        f"{'met' if ogr >= GOAL_OGR2OGR else 'NOT met'}; init takes {1 / ogr:.1f}x ogr2ogr's time)"
    )

    for name in ("per-layer (sum)", "init", "init + population"):
        print(f"\n{name}: median seconds per {'layer' if name.startswith('per') else 'stage'}")
        keys = list(parts[name][0])
        for key in keys:
            value = statistics.median(run.get(key, 0.0) for run in parts[name])
            print(f"  {key:36} {value:7.2f}")
        if name.startswith("init"):
            kinds: dict[str, list[float]] = {}
            for run in parts[name]:
                totals: dict[str, float] = {}
                for key, value in run.items():
                    kind = key.split(" (")[0] if key.startswith("read") else key
                    if key.endswith((" validate", "(between layers)")):
                        kind = "validate"
                    elif key.endswith(" write") or key.startswith("last index"):
                        kind = "write and commit"
                    totals[kind] = totals.get(kind, 0.0) + value
                for kind, value in totals.items():
                    kinds.setdefault(kind, []).append(value)
            summary = ", ".join(
                f"{kind} {statistics.median(values):.2f}" for kind, values in kinds.items()
            )
            print(f"  by kind (s): {summary}")


if __name__ == "__main__":
    main()
