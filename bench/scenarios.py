"""What-if scenarios benchmark (issue 16): reads in a scenario of 100 edits vs the same in the base.

Not a test. The peer is the base twin itself, in the same run, on the same data: the goal is
that a route, a tile and a one-map query in a scenario with 100 edits cost at most 1.2x the same
read in the base. On a scratch database ``<TWIN_DATABASE_URL's name>_scratch_bench`` (made
here, the sample city loaded, dropped at the end unless ``--keep``) a scenario ``bench-100``
gets 100 edits spread over the city: 40 buildings (15 changed, 15 added, 10 retired), 20 roads
(10 retired, 10 with a new speed limit), 20 closures added (10 by road id, 10 by line), 10
resources (5 moved, 5 out of service) and 10 water mains retired. Then, warm (every cache
filled; the first, cold calls are reported on their own), base and scenario taking turns on
every item (the order alternating by round) so that a change in the machine's load falls on
both:

1. routes between random pairs of building centroids: ``city.route(a, b)`` against
   ``city.scenarios["bench-100"].route(a, b)`` (which looks the scenario up on every call), the
   same inside one ``with layers.scenarios.using(scenario)`` block (no look-up), and
   ``GET /routing/route`` through the app in process (FastAPI ``TestClient``) without and with
   ``?scenario=``;
2. tiles covering the city at z14-z16, cut uncached by ``layers.tiles.render_tile``: the
   one-map tile (every stored layer) and a buildings tile; and ``GET /tiles/...`` answered from
   the tile cache (the cached path: ETag, scenario look-up, cache hit);
3. one-map queries at 20 places on a 5 x 4 grid: ``layers.onemap.around`` (500 m, every
   feature, what ``city.around`` runs), ``layers.onemap.within`` (a 600 m square) and
   ``GET /onemap/around`` (the API's limit of 100 per layer);
4. cold costs: the first route after an edit of a road in the scenario (it builds the
   scenario's network again), and the first water-main isolation after an edit of a pipe
   (it builds the scenario's water network again), against the base's warm query.

Each figure is the median with a 95% bootstrap interval (of the median, resampling the
measured calls); a ratio is scenario / base medians with a paired bootstrap interval
(resampling the items with both of their times). When a tile ratio is above the goal, the
slowest layer of the worst tile is run under ``EXPLAIN (ANALYZE, BUFFERS)`` in both states.

``--malta`` adds routes at city scale: Malta's road network (``../shared/data/malta``,
33,582 roads, 57,061 directed edges) in a second scratch database
``<name>_scratch_bench_malta`` (imported as ``tests/malta.py`` does, about a minute), with a
scenario of 100 edits on roads, closures and resources.

Usage: ``python bench/scenarios.py [--pairs 50] [--repeat 3] [--malta] [--keep]``. Progress
goes to stderr, the figures to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import geopandas as gpd
import morecantile
import numpy as np
import psycopg
import shapely
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy.engine import make_url

import twin
from api.app import create_app
from layers import onemap
from layers import scenarios as store
from layers import tiles as tiling
from layers.catalog import LAYERS
from layers.database import database_url, drop_database, get_engine, upgrade
from layers.queries import read_layer
from layers.scenarios import Scenario
from layers.settings import TwinSettings
from twin.city import City
from twin.sample import SAMPLE_DIR, load_sample

NAME = "bench-100"
GOAL = 1.2
ZOOMS = (14, 15, 16)
AROUND_M = 500.0
SQUARE_M = 600.0
#: Every stored layer: the one-map tile the viewer asks for (``GET /tiles/...``).
ONE_MAP = list(LAYERS)
#: A 100 m step in degrees of latitude (and roughly of longitude at Monaco's and Malta's
#: latitudes, scaled by cos(lat) where it matters).
DEGREE_M = 111_320.0


def say(message: str) -> None:
    """Write a progress line to stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """A median with its 95% bootstrap interval.

    Attributes
    ----------
    median, low, high
        The median and the interval's ends (same unit as the values, here ms).
    n
        How many values.
    """

    median: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 2) -> str:
        """Return ``median [low, high]``."""
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def spread(values: Sequence[float] | np.ndarray, *, seed: int = 0, draws: int = 2000) -> Spread:
    """Return the median of some timings and its 95% percentile-bootstrap interval.

    Parameters
    ----------
    values
        Timings (ms), at least one.
    seed
        Seed of the resampling.
    draws
        Bootstrap resamples (Efron & Tibshirani 1993, percentile interval).

    Returns
    -------
    Spread
        Median and interval.
    """
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(data[rng.integers(0, len(data), (draws, len(data)))], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return Spread(float(np.median(data)), float(low), float(high), len(data))


def ratio_spread(
    base: np.ndarray, scenario: np.ndarray, *, seed: int = 0, draws: int = 2000
) -> Spread:
    """Return scenario / base medians with a paired 95% bootstrap interval.

    Parameters
    ----------
    base, scenario
        Timings (ms), shape ``(rounds, items)``: the same items, measured in turn.
    seed
        Seed of the resampling.
    draws
        Bootstrap resamples; each draws items with replacement and keeps all of each item's
        rounds in both states (the pairing).

    Returns
    -------
    Spread
        The ratio of medians and its interval (dimensionless).
    """
    rng = np.random.default_rng(seed)
    items = base.shape[1]
    picks = rng.integers(0, items, (draws, items))
    ratios = np.array(
        [np.median(scenario[:, pick]) / np.median(base[:, pick]) for pick in picks], dtype=float
    )
    low, high = np.percentile(ratios, [2.5, 97.5])
    return Spread(float(np.median(scenario) / np.median(base)), float(low), float(high), items)


@dataclass
class Pair:
    """One read measured in the base and in the scenario, item by item, round by round."""

    label: str
    base: np.ndarray
    scenario: np.ndarray
    goal: bool = True

    def ratio(self) -> Spread:
        """Scenario / base (see :func:`ratio_spread`)."""
        return ratio_spread(self.base, self.scenario)


def take_turns(
    items: Sequence[Any],
    base: Callable[[Any], object],
    scenario: Callable[[Any], object],
    rounds: int,
    label: str,
) -> Pair:
    """Time ``base(item)`` and ``scenario(item)`` on every item, in turn, for some rounds.

    The first of the two alternates with the round, so that neither always runs on what the
    other just warmed.

    Parameters
    ----------
    items
        What to ask (O/D pairs, tiles, places).
    base, scenario
        The read in each state.
    rounds
        Rounds over the items.
    label
        The read's name (for progress and the table).

    Returns
    -------
    Pair
        Milliseconds, shape ``(rounds, items)`` each.
    """
    times = {"base": np.zeros((rounds, len(items))), "scenario": np.zeros((rounds, len(items)))}
    calls = {"base": base, "scenario": scenario}
    for r in range(rounds):
        order = ("base", "scenario") if r % 2 == 0 else ("scenario", "base")
        for i, item in enumerate(items):
            for state in order:
                started = time.perf_counter()
                calls[state](item)
                times[state][r, i] = (time.perf_counter() - started) * 1000
        say(f"  {label}: round {r + 1}/{rounds}")
    return Pair(label, times["base"], times["scenario"])


def table(pairs: Sequence[Pair]) -> None:
    """Print the base, the scenario and their ratio per read, with intervals and the verdict."""
    print(f"{'read':52} {'n':>5}  {'base ms':>24}  {'scenario ms':>24}  {'ratio':>20}  goal")
    for pair in pairs:
        b, s, r = spread(pair.base.ravel()), spread(pair.scenario.ravel()), pair.ratio()
        if not pair.goal:
            verdict = "-"
        elif r.median <= GOAL:
            verdict = "met" if r.high <= GOAL else "met (interval crosses 1.2)"
        else:
            verdict = "NOT met"
        print(
            f"{pair.label:52} {pair.base.size:>5}  {b.text():>24}  {s.text():>24}  "
            f"{r.median:5.2f}x [{r.low:.2f}, {r.high:.2f}]  {verdict}"
        )


# -- the machine, the store ------------------------------------------------------------------------


def libpq(url: str) -> str:
    """A SQLAlchemy URL as libpq takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def machine(url: str) -> str:
    """Return one line naming the machine: cores, CPU, load, Python, PostgreSQL and PostGIS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute("SELECT current_setting('server_version'), postgis_lib_version()")
        pg, postgis = row.fetchone() or ("?", "?")
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), load average {load:.1f}, Python "
        f"{platform.python_version()}, PostgreSQL {pg}, PostGIS {postgis}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def scratch(suffix: str) -> str:
    """Return the URL of a scratch database next to the configured one."""
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    return base.set(database=f"{base.database}_scratch_{suffix}").render_as_string(
        hide_password=False
    )


def _count(url: str, table_name: str) -> int:
    try:
        with psycopg.connect(libpq(url)) as conn:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table_name))
            row = conn.execute(query).fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


# -- the scenario's 100 edits ------------------------------------------------------------------


def feature(row: Any, geometry: shapely.Geometry, **changes: Any) -> dict[str, Any]:
    """Return a base feature (a GeoDataFrame row) as a GeoJSON Feature, with some changes."""
    skip = {"id", "source", "valid_from", "valid_to", "geometry", "props"}
    properties: dict[str, Any] = {}
    for key, value in row.items():
        if key in skip or value is None:
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        properties[key] = value
    properties.update(changes)
    return {
        "type": "Feature",
        "id": row["id"],
        "geometry": json.loads(shapely.to_geojson(geometry)),
        "properties": properties,
    }


def shifted(geometry: shapely.Geometry, east_m: float, north_m: float) -> shapely.Geometry:
    """Return a lon/lat geometry moved by some metres (equirectangular; fine over 300 m)."""
    lat = shapely.get_coordinates(geometry)[:, 1].mean()
    dx = east_m / (DEGREE_M * math.cos(math.radians(lat)))
    return shapely.affinity.translate(geometry, dx, north_m / DEGREE_M)


def square(centre: tuple[float, float], side_m: float) -> shapely.Polygon:
    """Return a square of ``side_m`` metres around a lon/lat point."""
    lon, lat = centre
    half_y = side_m / 2 / DEGREE_M
    half_x = side_m / 2 / (DEGREE_M * math.cos(math.radians(lat)))
    return shapely.box(lon - half_x, lat - half_y, lon + half_x, lat + half_y)


def road_edits(
    name: str, roads: gpd.GeoDataFrame, rng: np.random.Generator, counts: dict[str, int], url: str
) -> list[str]:
    """Retire some roads, change others' speed limit, close others; return the changed ids."""
    picked = roads.iloc[rng.permutation(len(roads))]
    retire, slow, close_id, close_line = (counts[k] for k in ("retire", "slow", "by_id", "line"))
    cursor = 0

    def take(n: int) -> gpd.GeoDataFrame:
        nonlocal cursor
        part = picked.iloc[cursor : cursor + n]
        cursor += n
        return part

    for _, row in take(retire).iterrows():
        store.retire_feature(name, "roads", row["id"], author="bench", note="retired", url=url)
    changed = []
    for _, row in take(slow).iterrows():
        store.put_feature(name, "roads", feature(row, row.geometry, maxspeed=20.0), url=url)
        changed.append(str(row["id"]))
    for i, (_, row) in enumerate(take(close_id).iterrows()):
        closure = {
            "type": "Feature",
            "id": f"closure/bench-id-{i}",
            "geometry": shapely.geometry.mapping(
                shapely.line_interpolate_point(row.geometry, 0.5, normalized=True)
            ),
            "properties": {"kind": "works", "road_ids": [row["id"]]},
        }
        store.put_feature(name, "closures", closure, url=url)
    for i, (_, row) in enumerate(take(close_line).iterrows()):
        closure = {
            "type": "Feature",
            "id": f"closure/bench-line-{i}",
            "geometry": shapely.geometry.mapping(row.geometry),
            "properties": {"kind": "works"},
        }
        store.put_feature(name, "closures", closure, url=url)
    return changed


def resource_edits(
    name: str, resources: gpd.GeoDataFrame, rng: np.random.Generator, moved: int, out: int, url: str
) -> None:
    """Move some resources 150-400 m and put others out of service."""
    picked = resources.iloc[rng.permutation(len(resources))[: moved + out]]
    for i, (_, row) in enumerate(picked.iterrows()):
        if i < moved:
            east, north = rng.uniform(-400, 400, 2)
            moved_to = shifted(row.geometry, float(east), float(north))
            store.put_feature(name, "resources", feature(row, moved_to), url=url)
        else:
            changed = feature(row, row.geometry, status="out_of_service")
            store.put_feature(name, "resources", changed, url=url)


@dataclass
class Edited:
    """What the sample city's scenario edits (to edit again for the cold costs)."""

    scenario: Scenario
    roads: list[str]
    pipes: list[str]


def sample_scenario(url: str, seed: int) -> Edited:
    """Make the scenario of 100 edits on the sample city (replacing one left from a run)."""
    rng = np.random.default_rng(seed)
    with suppress(store.ScenarioNotFoundError):
        store.delete(NAME, url=url)
    store.create(NAME, title="100 edits over the city", author="bench", url=url)
    buildings = read_layer("buildings", url=url)
    picked = buildings.iloc[rng.permutation(len(buildings))]
    for _, row in picked.iloc[:15].iterrows():  # 15 raised by two floors
        height = float(row["height_m"]) if row["height_m"] == row["height_m"] else 10.0
        raised = feature(row, row.geometry, height_m=height + 6.0)
        store.put_feature(NAME, "buildings", raised, url=url)
    for i, (_, row) in enumerate(picked.iloc[15:30].iterrows()):  # 15 new, 60 m from one
        centroid = shapely.get_coordinates(shifted(row.geometry.centroid, 60.0, 0.0))[0]
        new = {
            "type": "Feature",
            "id": f"bench/new-{i}",
            "geometry": shapely.geometry.mapping(square((centroid[0], centroid[1]), 14.0)),
            "properties": {"height_m": 18.0, "levels": 6, "use": "residential"},
        }
        store.put_feature(NAME, "buildings", new, url=url)
    for _, row in picked.iloc[30:40].iterrows():
        store.retire_feature(NAME, "buildings", row["id"], note="demolished", url=url)
    roads = read_layer("roads", url=url)
    changed = road_edits(NAME, roads, rng, {"retire": 10, "slow": 10, "by_id": 10, "line": 10}, url)
    resource_edits(NAME, read_layer("resources", url=url), rng, 5, 5, url)
    pipes = read_layer("pipelines", url=url)
    water = pipes[pipes["network"] == "water"]
    retired = [str(i) for i in water.iloc[rng.permutation(len(water))[:10]]["id"]]
    for pipe in retired:
        store.retire_feature(NAME, "pipelines", pipe, note="burst", url=url)
    scenario = store.get(NAME, url=url)
    total = sum(scenario.edits.values())
    assert total == 100, scenario.edits
    return Edited(scenario, changed, retired)


# -- the reads ---------------------------------------------------------------------------------


@contextmanager
def app_client(url: str) -> Iterator[TestClient]:
    """The API in process, as an administrator, its tile cache in memory."""
    settings = TwinSettings(
        database_url=url, auth_anonymous_role="administrator", mqtt_url="", redis_url=None
    )
    with TestClient(create_app(settings)) as client:
        yield client


def od_pairs(points: np.ndarray, n: int, rng: np.random.Generator) -> list[tuple[Any, Any]]:
    """Return ``n`` random origin/destination pairs of distinct points (lon, lat)."""
    out: list[tuple[Any, Any]] = []
    while len(out) < n:
        a, b = rng.choice(len(points), 2, replace=False)
        out.append((tuple(map(float, points[a])), tuple(map(float, points[b]))))
    return out


def cold_route(city: City, scenario: City, pair: tuple[Any, Any]) -> tuple[float, float]:
    """The first route of a fresh router in the base and then in the scenario (ms)."""
    a, b = pair
    started = time.perf_counter()
    city.route(a, b)
    base = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    scenario.route(a, b)
    return base, (time.perf_counter() - started) * 1000


def routes(
    url: str, city: City, pairs: list[tuple[Any, Any]], rounds: int, http: bool
) -> tuple[list[Pair], tuple[float, float]]:
    """Time routes in the base and in the scenario: facade, in a block, over HTTP."""
    scenario_city = city.scenarios[NAME]
    first = cold_route(city, scenario_city, pairs[0])
    found = sum(
        (city.route(a, b) is not None) + (scenario_city.route(a, b) is not None) for a, b in pairs
    )
    say(f"routes: {found} of {2 * len(pairs)} found (base + scenario); cold {first}")
    scenario = store.get(NAME, url=url)

    def in_block(pair: tuple[Any, Any]) -> object:
        with store.using(scenario, url=url):
            return city.route(*pair)

    out = [
        take_turns(
            pairs,
            lambda p: city.route(*p),
            lambda p: scenario_city.route(*p),
            rounds,
            "route, facade (city.scenarios[name].route)",
        ),
        take_turns(
            pairs,
            lambda p: city.route(*p),
            in_block,
            rounds,
            "route, in one using() block",
        ),
    ]
    if http:
        with app_client(url) as client:

            def get(pair: tuple[Any, Any], extra: dict[str, str]) -> object:
                (ax, ay), (bx, by) = pair
                params = {"from": f"{ax},{ay}", "to": f"{bx},{by}", **extra}
                response = client.get("/routing/route", params=params)
                assert response.status_code in (200, 404), response.text
                return response

            for pair in pairs[:3]:
                get(pair, {})
                get(pair, {"scenario": NAME})
            out.append(
                take_turns(
                    pairs,
                    lambda p: get(p, {}),
                    lambda p: get(p, {"scenario": NAME}),
                    rounds,
                    "GET /routing/route (?scenario=)",
                )
            )
    return out, first


def city_tiles(bounds: Sequence[float], zooms: Sequence[int]) -> list[tuple[int, int, int]]:
    """Return the WebMercatorQuad tiles covering a lon/lat box at some zooms, as (z, x, y)."""
    tms = morecantile.tms.get("WebMercatorQuad")
    west, south, east, north = bounds
    return [(t.z, t.x, t.y) for t in tms.tiles(west, south, east, north, list(zooms))]


def tile_reads(
    url: str, tiles: list[tuple[int, int, int]], rounds: int, scenario: Scenario
) -> list[Pair]:
    """Time uncached tile cuts (one-map and buildings) per zoom, base against scenario."""

    def cut(layer_ids: list[str], in_scenario: bool) -> Callable[[Any], object]:
        def run(tile: tuple[int, int, int]) -> object:
            with store.using(scenario if in_scenario else None, url=url):
                return tiling.render_tile(layer_ids, *tile, url=url)

        return run

    out: list[Pair] = []
    for layer_ids, label in ((ONE_MAP, "one-map tile (13 layers)"), (["buildings"], "buildings")):
        for tile in tiles[:2]:  # warm up
            cut(layer_ids, False)(tile)
            cut(layer_ids, True)(tile)
        for z in sorted({t[0] for t in tiles}):
            at_z = [t for t in tiles if t[0] == z]
            out.append(
                take_turns(
                    at_z,
                    cut(layer_ids, False),
                    cut(layer_ids, True),
                    rounds,
                    f"tile cut uncached, {label}, z{z} ({len(at_z)} tiles)",
                )
            )
    return out


def cached_tiles(url: str, tiles: list[tuple[int, int, int]], rounds: int) -> Pair:
    """Time ``GET /tiles/WebMercatorQuad/{z}/{y}/{x}`` answered from the cache, base vs scenario."""
    with app_client(url) as client:

        def get(tile: tuple[int, int, int], extra: dict[str, str]) -> object:
            z, x, y = tile
            response = client.get(f"/tiles/WebMercatorQuad/{z}/{y}/{x}", params=extra)
            assert response.status_code in (200, 204), response.text
            return response

        for tile in tiles:  # fill the cache: every tile cut once in each state
            get(tile, {})
            get(tile, {"scenario": NAME})
        return take_turns(
            tiles,
            lambda t: get(t, {}),
            lambda t: get(t, {"scenario": NAME}),
            rounds,
            f"GET one-map tile, cached ({len(tiles)} tiles z14-15)",
        )


def places(bounds: Sequence[float]) -> list[tuple[float, float]]:
    """20 places on a 5 x 4 grid over a lon/lat box, inset by a tenth (as bench/onemap.py)."""
    xmin, ymin, xmax, ymax = bounds
    dx, dy = (xmax - xmin) / 10, (ymax - ymin) / 10
    xs = np.linspace(xmin + dx, xmax - dx, 5)
    ys = np.linspace(ymin + dy, ymax - dy, 4)
    return [(float(x), float(y)) for y in ys for x in xs]


def onemap_reads(
    url: str, spots: list[tuple[float, float]], rounds: int, scenario: Scenario, http: bool
) -> list[Pair]:
    """Time one-map around/within at every place, base vs scenario (library and HTTP)."""

    def read(ask: Callable[[Any], object], in_scenario: bool) -> Callable[[Any], object]:
        def run(spot: Any) -> object:
            with store.using(scenario if in_scenario else None, url=url):
                return ask(spot)

        return run

    def around(spot: tuple[float, float]) -> object:
        return onemap.around(spot, AROUND_M, url=url)

    def within(spot: tuple[float, float]) -> object:
        return onemap.within(square(spot, SQUARE_M), url=url)

    out: list[Pair] = []
    for ask, label in (
        (around, f"onemap.around {AROUND_M:g} m, every feature"),
        (within, f"onemap.within a {SQUARE_M:g} m square"),
    ):
        read(ask, False)(spots[0])
        read(ask, True)(spots[0])
        out.append(take_turns(spots, read(ask, False), read(ask, True), rounds, label))
    if http:
        with app_client(url) as client:

            def get(spot: tuple[float, float], extra: dict[str, str]) -> object:
                params: dict[str, str | float] = {
                    "lon": spot[0],
                    "lat": spot[1],
                    "radius_m": AROUND_M,
                    **extra,
                }
                response = client.get("/onemap/around", params=params)
                assert response.status_code == 200, response.text
                return response

            get(spots[0], {})
            get(spots[0], {"scenario": NAME})
            out.append(
                take_turns(
                    spots,
                    lambda s: get(s, {}),
                    lambda s: get(s, {"scenario": NAME}),
                    rounds,
                    f"GET /onemap/around {AROUND_M:g} m (limit 100)",
                )
            )
    return out


# -- cold costs --------------------------------------------------------------------------------


def cold_costs(
    url: str,
    city: City,
    edited: Edited,
    pairs: list[tuple[Any, Any]],
    base_route_ms: float,
    times: int,
) -> None:
    """The first route after a road edit and the first trace after a pipe edit, in the scenario."""
    scenario_city = city.scenarios[NAME]
    roads = read_layer("roads", url=url).set_index("id")
    after_edit = []
    for i in range(times):
        road = edited.roads[i % len(edited.roads)]
        row = roads.loc[road].copy()
        row["id"] = road
        speed = 20.0 if i % 2 else 25.0
        store.put_feature(NAME, "roads", feature(row, row.geometry, maxspeed=speed), url=url)
        started = time.perf_counter()
        scenario_city.route(*pairs[i % len(pairs)])
        after_edit.append((time.perf_counter() - started) * 1000)
    warm = [timed_once(partial(scenario_city.route, *p)) for p in pairs[:20]]
    print(
        f"route after an edit of a road in the scenario (its network rebuilt), {times} edits: "
        f"{spread(after_edit).text(1)} ms; warm scenario route {spread(warm).text(2)} ms; "
        f"base warm route {base_route_ms:.2f} ms: {np.median(after_edit) / base_route_ms:.0f}x"
    )
    pipes = read_layer("pipelines", url=url)
    water = pipes[(pipes["network"] == "water") & ~pipes["id"].isin(edited.pipes)]
    lines = water.geometry.values[:: max(1, len(water) // 10)]
    middles = shapely.line_interpolate_point(lines, 0.5, normalized=True)
    breaks = [(float(x), float(y)) for x, y in shapely.get_coordinates(middles)][:10]
    for spot in breaks[:2]:
        city.isolate(spot, network="water")
    base = [timed_once(partial(city.isolate, s, network="water")) for s in breaks]
    first = []
    for i in range(times):
        pipe = edited.pipes[i % len(edited.pipes)]
        store.drop_edit(NAME, "pipelines", pipe, url=url)  # two revisions: undo, retire again
        store.retire_feature(NAME, "pipelines", pipe, note="burst", url=url)
        started = time.perf_counter()
        scenario_city.isolate(breaks[i % len(breaks)], network="water")
        first.append((time.perf_counter() - started) * 1000)
    warm = [timed_once(partial(scenario_city.isolate, s, network="water")) for s in breaks]
    b = spread(base)
    print(
        f"water-main isolation after an edit of a pipe in the scenario (its water network "
        f"rebuilt), {times} edits: {spread(first).text(1)} ms; warm scenario isolation "
        f"{spread(warm).text(1)} ms; base warm isolation {b.text(1)} ms: "
        f"{np.median(first) / b.median:.0f}x"
    )


def timed_once(function: Callable[[], object]) -> float:
    """Milliseconds of one call."""
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


# -- why a tile is slower ----------------------------------------------------------------------


def explain_tile(url: str, tile: tuple[int, int, int], scenario: Scenario) -> None:
    """Run a one-map tile under ``EXPLAIN ANALYZE`` in both states; print times and scans.

    Only the plan's scans are printed (an index scan reads the tile's rows, a sequential scan
    the whole layer), with the planning and execution times of each state. In the scenario
    the read is planned serially, as :func:`layers.database.cursor` sets it for a scenario.
    """
    z, x, y = tile
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        for in_scenario in (False, True):
            with store.using(scenario if in_scenario else None, url=url):
                query = tile_query(ONE_MAP, z, x, y)
            workers = "0" if in_scenario else "DEFAULT"
            conn.execute(f"SET max_parallel_workers_per_gather = {workers}")
            for _ in range(3):  # warm: plans and PROJ set up in this backend
                conn.execute(query).fetchall()
            rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + query).fetchall()
            state = f"scenario {scenario.name!r}" if in_scenario else "base"
            lines = [str(line) for (line,) in rows]
            times = ", ".join(line for line in lines if line.startswith(("Planning Time", "Exec")))
            print(f"-- EXPLAIN ANALYZE of the one-map tile {z}/{x}/{y}, {state}: {times}")
            for line in lines:
                if re.search(r"(Seq|Index|Index Only|Bitmap Heap) Scan ", line):
                    scan = line.strip().removeprefix("->  ")
                    ran = scan.split("(actual ")[-1][:-1] if "(actual " in scan else "never run"
                    print(f"   {scan.split('  (cost')[0]:64} {ran}")


def tile_query(layer_ids: list[str], z: int, x: int, y: int) -> sql.Composed:
    """The SQL :func:`layers.tiles.render_tile` runs for a tile (in the scenario in force).

    Its composition (bounds in a ``NOT MATERIALIZED`` CTE, one ``ST_AsMVT`` per layer,
    concatenated), to run under ``EXPLAIN``; the current versions, no moment.
    """
    body = tiling._tile_layers(layer_ids, z, None)
    assert body is not None, layer_ids
    return tiling._tile_bounds(z, x, y) + body


# -- Malta -------------------------------------------------------------------------------------


def malta(args: argparse.Namespace) -> None:
    """Routes at city scale: Malta's roads, base against a scenario of 100 road edits."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import malta as fixture

    extract = args.shared / "malta" / "malta-latest.osm.pbf"
    if not extract.is_file():
        raise SystemExit(f"no Malta extract at {extract}: name the shared data with --shared")
    fixture.MALTA = extract  # read by its _build
    _build, malta_settings = fixture._build, fixture.malta_settings
    url = scratch("bench_malta")
    with malta_settings():
        if not (args.keep and _count(url, "roads") > 30_000):
            say("Malta: importing its roads into a scratch database (about a minute)")
            _build(url)
        rng = np.random.default_rng(args.seed + 1)
        with suppress(store.ScenarioNotFoundError):
            store.delete(NAME, url=url)
        store.create(NAME, title="100 edits on Malta's roads", author="bench", url=url)
        roads = read_layer("roads", url=url)
        counts = {"retire": 20, "slow": 40, "by_id": 10, "line": 10}
        road_edits(NAME, roads, rng, counts, url)
        resource_edits(NAME, read_layer("resources", url=url), rng, 10, 10, url)
        scenario = store.get(NAME, url=url)
        assert sum(scenario.edits.values()) == 100, scenario.edits
        analyze(url)
        # origins and destinations: the middles of random roads (each within 250 m of a road)
        middles = shapely.line_interpolate_point(roads.geometry.values, 0.5, normalized=True)
        points = shapely.get_coordinates(middles)
        pairs = od_pairs(points, args.pairs, rng)
        city = twin.connect(url)
        scenario_city = city.scenarios[NAME]
        first = cold_route(city, scenario_city, pairs[0])
        found = sum(
            (city.route(a, b) is not None) + (scenario_city.route(a, b) is not None)
            for a, b in pairs
        )
        say(f"Malta routes: {found} of {2 * len(pairs)} found; cold {first}")
        pair = take_turns(
            pairs,
            lambda p: city.route(*p),
            lambda p: scenario_city.route(*p),
            args.repeat,
            "Malta route, facade",
        )
        scenario = store.get(NAME, url=url)

        def in_block(pair: tuple[Any, Any]) -> object:
            with store.using(scenario, url=url):
                return city.route(*pair)

        block = take_turns(
            pairs,
            lambda p: city.route(*p),
            in_block,
            args.repeat,
            "Malta route, in one using() block",
        )
        print(
            f"\n== Malta (57,061 directed edges): {len(pairs)} random O/D pairs, "
            f"{args.repeat} rounds, {found} of {2 * len(pairs)} routes found"
        )
        print(
            f"first route of a fresh router: base {first[0]:.0f} ms (loads the base network), "
            f"then scenario {first[1]:.0f} ms (builds its own network from its roads)"
        )
        table([pair, block])
    get_engine(url).dispose()
    if not args.keep:
        drop_database(url)


def analyze(url: str) -> None:
    """``ANALYZE`` the store: the sample's loader leaves no statistics, autovacuum would."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("ANALYZE")


# -- the run -----------------------------------------------------------------------------------


def run(url: str, args: argparse.Namespace) -> None:
    """Make the scenario, time every read in both states, print the table."""
    say("making the scenario of 100 edits")
    started = time.perf_counter()
    edited = sample_scenario(url, args.seed)
    made_s = time.perf_counter() - started
    scenario = edited.scenario
    analyze(url)
    rng = np.random.default_rng(args.seed)
    buildings = read_layer("buildings", url=url)
    bounds = tuple(float(v) for v in buildings.total_bounds)
    centroids = buildings.geometry.representative_point()
    points = np.column_stack([centroids.x, centroids.y])
    pairs = od_pairs(points, args.pairs, rng)
    city = twin.connect(url)
    print("== what-if scenarios (issue 16): reads in a scenario of 100 edits vs the base")
    print(f"machine: {machine(url)}")
    print(
        f"scenario {NAME!r}: {scenario.edits} ({sum(scenario.edits.values())} edits, made in "
        f"{made_s:.1f} s); the sample city, {len(buildings):,} buildings"
    )
    lookup = [timed_once(lambda: store.get(NAME, url=url)) for _ in range(50)]
    say("routes")
    route_pairs, first = routes(url, city, pairs, args.repeat, not args.no_http)
    say("tiles")
    tiles = city_tiles(bounds, ZOOMS)
    tile_pairs = tile_reads(url, tiles, args.repeat, scenario)
    if not args.no_http:
        served = [t for t in tiles if t[0] <= tiling.ALL_FEATURES_ZOOM]  # the API overzooms
        tile_pairs.append(cached_tiles(url, served, args.repeat))
    say("one-map")
    spots = places(bounds)
    map_pairs = onemap_reads(url, spots, args.repeat, scenario, not args.no_http)
    print(
        f"\nmedian ms [95% bootstrap interval]; ratio = scenario / base medians [paired "
        f"bootstrap over items]; {args.repeat} rounds, base and scenario in turn; goal <= {GOAL}x"
    )
    print(f"\n-- routes: {len(pairs)} random pairs of building centroids")
    table(route_pairs)
    print(
        f"first route of a fresh router: base {first[0]:.0f} ms (loads the base network), then "
        f"scenario {first[1]:.0f} ms (builds its own network from its roads: it edits 20)"
    )
    print(f"\n-- tiles: {len(tiles)} tiles covering the city at z{ZOOMS[0]}-z{ZOOMS[-1]}")
    table(tile_pairs)
    print(f"\n-- one-map: {len(spots)} places on a 5 x 4 grid over the city")
    table(map_pairs)
    print(
        f"\nscenario look-up (layers.scenarios.get, on every facade call and request): "
        f"{spread(lookup).text(2)} ms"
    )
    say("cold costs")
    print("\n-- cold costs")
    base_route = float(np.median(route_pairs[0].base))
    cold_costs(url, city, edited, pairs, base_route, args.cold)
    scenario = store.get(NAME, url=url)
    one_map = [p for p in tile_pairs if p.label.startswith("tile cut uncached, one-map")]
    worst = max(one_map, key=lambda p: p.ratio().median)
    if args.explain or worst.ratio().median > GOAL:
        say("explaining the worst tile")
        ratios = np.median(worst.scenario, axis=0) / np.median(worst.base, axis=0)
        z = int(worst.label.split(", z")[1].split(" ")[0])
        tile = [t for t in tiles if t[0] == z][int(np.argmax(ratios))]
        print(f"\n-- the worst one-map ratio: {worst.label}; its worst tile {tile}")
        explain_tile(url, tile, scenario)
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


def main() -> None:
    """Make the scratch database, load the sample city, run, drop it."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pairs", type=int, default=50, help="random O/D pairs (>= 50)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every item")
    parser.add_argument("--cold", type=int, default=5, help="edits timed for the cold costs")
    parser.add_argument("--seed", type=int, default=16, help="seed of the edits and pairs")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP reads")
    parser.add_argument("--explain", action="store_true", help="explain the worst tile anyway")
    parser.add_argument("--malta", action="store_true", help="also route on Malta's roads")
    parser.add_argument("--only-malta", action="store_true", help="route on Malta's roads only")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the databases")
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(__file__).resolve().parent.parent.parent / "shared" / "data",
        help="the shared data folder (Malta's extract is under malta/)",
    )
    args = parser.parse_args()
    if args.pairs < 1 or args.repeat < 1 or args.cold < 1:
        parser.error("--pairs, --repeat and --cold take a positive number")
    if not args.only_malta:
        url = scratch("bench")
        if not (args.keep and _count(url, "buildings") > 0):
            say(f"loading the sample city into {make_url(url).database}")
            drop_database(url)
            upgrade(url)
            load_sample(directory=SAMPLE_DIR, url=url)
        try:
            run(url, args)
        finally:
            get_engine(url).dispose()
            if not args.keep:
                drop_database(url)
    if args.malta or args.only_malta:
        malta(args)


if __name__ == "__main__":
    main()
