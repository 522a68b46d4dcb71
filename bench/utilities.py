"""Utility traces and one-map benchmark: CityTwin vs WNTR, pandapower and plain PostGIS.

Not a test. In one run, on a scratch database ``<TWIN_DATABASE_URL's name>_bench_utilities``
(created here and dropped at the end):

1. segmentation of a whole water network: WNTR's shipped networks (Net3, ky10, ky4, Net6)
   with WNTR's strategic valve layer (seed 123), converted into twin layers by the oracle
   script (``tests/routing/utility_oracles.py``, run in ``.venv-oracles``, which also times
   WNTR's ``valve_segments`` on a ready graph, best of N) and loaded with ``ingest_frame``.
   The twin is timed three ways, best of N: the segmentation alone on the built topology
   (``_segments``: the step WNTR's function does, from a ready graph and valve layer), the
   whole topology build from the layers' frames (``build_network``), and the load from the
   database (``Utilities(url).network("water")``, first call). Segment counts must agree;
2. isolating a break on every 5th water main of the sample city: ``Utilities.isolate`` on a
   warm ``Utilities`` (the network cached; each call still reads the layers' versions), and
   the in-memory ``routing.traces.isolate``. No peer: WNTR has no isolation trace;
3. a power outage per switch on pandapower's ``mv_oberrhein``: pandapower's
   ``unsupplied_buses`` after opening each closed switch (316 calls, timed by the oracle
   script) vs the twin's ``outage(grid, operate=[switch])`` over the same switches;
4. one-map: ``layers.onemap.around(point, 1000)`` over every layer at 20 points of the
   sample city vs the same question as one plain PostGIS query per layer fetched with
   psycopg; and ``district_stats()``.

Usage: ``python bench/utilities.py [--repeat 5]``. Prints the figures (ms) and the ratios.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import psycopg
import sqlalchemy as sa
import timing  # bench/timing.py
from psycopg import sql
from sqlalchemy.engine import make_url

from layers import onemap
from layers.catalog import LAYERS
from layers.database import database_url, drop_database, get_engine, upgrade
from layers.ingest import ingest_frame
from layers.queries import read_layer
from layers.settings import get_settings
from routing.traces import Utilities, isolate, locate, outage
from routing.utility_network import _segments, build_network
from twin.sample import SAMPLE_DIR, load_sample

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORACLES = ROOT / ".venv-oracles" / "bin" / "python"
SCRIPT = ROOT / "tests" / "routing" / "utility_oracles.py"
WNTR_NETWORKS = ("Net3.inp", "ky10.inp", "ky4.inp", "Net6.inp")
RADIUS_M = 1000.0


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` calls, after one call to warm up."""
    function()
    return timing.timed(function, repeat)


def each(function: Callable[[Any], object], items: list[Any]) -> list[float]:
    """Milliseconds of one call per item, after one call to warm up."""
    function(items[0])
    out = []
    for item in items:
        started = time.perf_counter()
        function(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def p50_p95(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def oracle(args: list[str], repeat: int) -> dict[str, Any]:
    """Run the oracle script in its own environment, timing its answer best of ``repeat``."""
    assert ORACLES.exists(), "the oracles' environment is missing: run `make setup`"
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.json"
        subprocess.run(
            [str(ORACLES), str(SCRIPT), *args, str(out)],
            check=True,
            env=os.environ | {"ORACLE_REPEAT": str(repeat)},
            stderr=subprocess.DEVNULL,  # pandapower's note that numba is not installed
        )
        return json.loads(out.read_text())


def empty(url: str) -> None:
    tables = ", ".join(layer.table for layer in LAYERS.values())
    with get_engine(url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY"))


def load(url: str, layer: str, collection: dict[str, Any], source: str) -> None:
    frame = gpd.GeoDataFrame.from_features(collection["features"], crs="EPSG:4326")
    ingest_frame(layer, frame, source=source, url=url)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --- 1. segmentation vs WNTR -----------------------------------------------------------------


def segmentation(url: str, repeat: int) -> None:
    print("\n== 1. valve segments of a whole network: twin vs WNTR valve_segments")
    print(f"best of {repeat}; WNTR on a ready graph (to_graph not counted), in .venv-oracles")
    header = (
        f"{'network':9} {'nodes':>6} {'links':>6} {'valves':>6} {'segments':>8} "
        f"{'WNTR ms':>9} {'twin seg ms':>11} {'build ms':>9} {'load ms':>8} "
        f"{'WNTR/seg':>9} {'WNTR/build':>10}"
    )
    print(header)
    for inp in WNTR_NETWORKS:
        segment_network(inp, url, repeat)
    print(
        "(twin graph: the pipes cut at each valve; load = read the layers + build; "
        "segment counts equal WNTR's on every network)"
    )


def segment_network(inp: str, url: str, repeat: int) -> None:
    """One WNTR network: its layers loaded, WNTR's and the twin's segmentation timed."""
    answer = oracle(["wntr", inp], repeat)
    empty(url)
    load(url, "pipelines", answer["pipelines"], "wntr")
    load(url, "pipe_nodes", answer["pipe_nodes"], "wntr")
    net = Utilities(url).network("water")
    assert net.problems.empty, net.problems
    assert int(net.device.sum()) == answer["valves"]
    wntr_segments = set(answer["node_segments"].values()) | set(answer["link_segments"].values())
    ours = np.unique(
        np.concatenate([net.segment_of_edge, net.segment_of_vertex[net.segment_of_vertex >= 0]])
    )
    assert len(ours) == len(wntr_segments), (inp, len(ours), len(wntr_segments))
    segment_ms = min(
        timed(lambda: _segments(net.edge_u, net.edge_v, net.device, net.n_vertices), repeat)
    )
    lines = read_layer("pipelines", url=url)
    nodes = read_layer("pipe_nodes", url=url)
    buildings = read_layer("buildings", url=url)
    lines = lines[lines["network"] == "water"]
    nodes = nodes[nodes["network"] == "water"]
    crs = get_settings().metric_crs
    build_ms = min(
        timed(lambda: build_network("water", lines, nodes, buildings=buildings, crs=crs), repeat)
    )
    load_ms = min(timed(lambda: Utilities(url).network("water"), repeat))
    wntr_ms = answer["best_seconds"] * 1000
    print(
        f"{inp.removesuffix('.inp'):9} {answer['nodes']:6,} {answer['links']:6,} "
        f"{answer['valves']:6,} {len(ours):8,} {wntr_ms:9.1f} {segment_ms:11.3f} "
        f"{build_ms:9.1f} {load_ms:8.1f} {wntr_ms / segment_ms:8.0f}x "
        f"{wntr_ms / build_ms:9.1f}x"
    )


# --- 3. outage per switch vs pandapower --------------------------------------------------------


def power_outages(url: str, repeat: int) -> None:
    print("\n== 3. power outage per switch: twin outage() vs pandapower unsupplied_buses")
    answer = oracle(["pandapower"], repeat)
    empty(url)
    load(url, "power_lines", answer["power_lines"], "pandapower")
    load(url, "power_nodes", answer["power_nodes"], "pandapower")
    grid = Utilities(url).network("power")
    assert grid.problems.empty, grid.problems
    switches = list(answer["opened"])
    buses = set(grid.nodes.loc[grid.nodes["kind"].isin(["bus", "substation"]), "id"])
    vertex_ok, _ = grid.base_supply
    base = {b for b in buses if not vertex_ok[grid.node_vertex(b)]}
    for switch in switches:  # the same answers, checked once, untimed
        lost = set(outage(grid, operate=[switch]).nodes["id"]) & buses
        assert lost | base == set(answer["opened"][switch]), switch
    runs = [sum(each(lambda s: outage(grid, operate=[s]), switches)) for _ in range(repeat)]
    per_switch = each(lambda s: outage(grid, operate=[s]), switches)
    # the trace alone, answering what unsupplied_buses answers: the buses without supply
    bus_ids = np.array(sorted(buses), dtype=object)
    bus_vertex = np.array([grid.node_vertex(b) for b in bus_ids])
    switch_vertex = [grid.node_vertex(s) for s in switches]

    def trace(vertex: int) -> set[str]:
        blocked = np.zeros(grid.n_vertices, dtype=bool)
        blocked[vertex] = True
        vertex_ok, _ = grid.supply(blocked=blocked)
        return set(bus_ids[~vertex_ok[bus_vertex]])

    for switch, vertex in zip(switches, switch_vertex, strict=True):
        assert trace(vertex) == set(answer["opened"][switch]), switch
    trace_ms = min(sum(each(trace, switch_vertex)) for _ in range(repeat))
    twin_ms = min(runs)
    pp_ms = answer["best_seconds"] * 1000
    n = len(switches)
    p50, p95 = p50_p95(per_switch)
    print(
        f"mv_oberrhein: {len(buses):,} buses, {len(grid.lines):,} lines and transformers, "
        f"{n} closed switches opened one at a time; best of {repeat}"
    )
    print(
        f"{'pandapower unsupplied_buses':30} total {pp_ms:9.1f} ms  per switch {pp_ms / n:7.2f} ms"
    )
    print(
        f"{'twin outage()':30} total {twin_ms:9.1f} ms  per switch {twin_ms / n:7.2f} ms"
        f"  (p50 {p50:.2f}, p95 {p95:.2f})"
    )
    print(
        f"{'twin supply trace alone':30} total {trace_ms:9.1f} ms  "
        f"per switch {trace_ms / n:7.2f} ms"
    )
    print(
        f"ratio pandapower / twin: outage() {pp_ms / twin_ms:.2f}x, trace alone "
        f"{pp_ms / trace_ms:.1f}x (same unsupplied buses on every switch)"
    )


# --- 2. isolation per break on the sample city -------------------------------------------------


def isolation(url: str) -> None:
    print("\n== 2. isolating a break on every 5th water main of the sample city")
    utilities = Utilities(url)
    water = utilities.network("water")
    mains = [str(i) for i in water.lines["id"].iloc[::5]]
    api = each(lambda line: utilities.isolate(line=line, network="water"), mains)
    pieces = []
    for line in mains:
        found = locate(water, line=line)
        assert found is not None
        pieces.append((found[1], found[2]))
    memory = each(lambda at: isolate(water, edge=at[0], position_m=at[1]), pieces)
    versions = each(lambda _: utilities.network("water"), mains[:100])
    print(
        f"water network: {len(water.lines):,} mains, {water.n_edges:,} pieces, "
        f"{int(water.device.sum()):,} valves, {water.n_segments:,} segments; {len(mains)} breaks"
    )
    for label, values in (
        ("Utilities.isolate (warm, API path)", api),
        ("traces.isolate (in memory)", memory),
        ("Utilities.network (cached: versions read)", versions),
    ):
        p50, p95 = p50_p95(values)
        print(f"{label:42} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  max {max(values):7.2f} ms")
    print("peer: none (WNTR has valve segments but no isolation trace)")


# --- 4. one-map -------------------------------------------------------------------------------


def points_over_city(url: str) -> list[tuple[float, float]]:
    """20 points on a 5 x 4 grid over the buildings' extent, inset by a tenth."""
    xmin, ymin, xmax, ymax = read_layer("buildings", url=url).total_bounds
    dx, dy = (xmax - xmin) / 10, (ymax - ymin) / 10
    xs = np.linspace(xmin + dx, xmax - dx, 5)
    ys = np.linspace(ymin + dy, ymax - dy, 4)
    return [(float(x), float(y)) for y in ys for x in xs]


def one_map(url: str, repeat: int) -> None:
    print(f"\n== 4. one-map: everything within {RADIUS_M:g} m of a point, every layer")
    points = points_over_city(url)
    twin = each(lambda p: onemap.around(p, RADIUS_M, url=url), points)
    found = [sum(onemap.around(p, RADIUS_M, url=url).summary["counts"].values()) for p in points]
    conn = psycopg.connect(libpq(url), autocommit=True)
    plain = [
        sql.SQL(
            "SELECT * FROM {} WHERE valid_to IS NULL AND ST_DWithin(geom::geography, "
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s)"
        ).format(sql.Identifier(layer.table))
        for layer in LAYERS.values()
    ]

    def peer(point: tuple[float, float]) -> int:
        return sum(len(conn.execute(q, (*point, RADIUS_M)).fetchall()) for q in plain)

    peer_ms = each(peer, points)
    peer_found = [peer(p) for p in points]
    assert peer_found == found, (peer_found, found)

    # the twin's query per layer (its columns, the index-backed envelope, then the exact
    # distance on the ellipsoid), fetched in turn on one connection: one-map's SQL alone
    own = [
        sql.SQL(
            "SELECT {}, ST_AsBinary(geom) FROM {} WHERE valid_to IS NULL "
            "AND geom && ST_Expand(ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s) "
            "AND ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s)"
        ).format(
            sql.SQL(", ").join(
                map(
                    sql.Identifier,
                    ["id", "source", "valid_from", "valid_to", *layer.field_names, "props"],
                )
            ),
            sql.Identifier(layer.table),
        )
        for layer in LAYERS.values()
    ]

    def own_sql(point: tuple[float, float]) -> int:
        # degrees enough to hold 1,000 m in any direction at the city's latitude
        reach = RADIUS_M / (111_320 * np.cos(np.radians(point[1]))) * 1.01
        return sum(len(conn.execute(q, (*point, reach, *point, RADIUS_M)).fetchall()) for q in own)

    assert [own_sql(p) for p in points] == found
    own_ms = each(own_sql, points)
    conn.close()
    print(
        f"{len(points)} points on a 5 x 4 grid over the sample city, {len(LAYERS)} layers, "
        f"{int(np.mean(found)):,} features per answer on average"
    )
    rows: tuple[tuple[str, list[float]], ...] = (
        ("twin onemap.around", twin),
        ("its queries alone (one connection)", own_ms),
        ("plain PostGIS, one query per layer", peer_ms),
    )
    if "limit" in inspect.signature(onemap.around).parameters:  # nearest 100 per layer
        limited = each(lambda p: onemap.around(p, RADIUS_M, url=url, limit=100), points)
        rows = (*rows[:1], ("twin onemap.around, limit=100", limited), *rows[1:])
    for label, values in rows:
        p50, p95 = p50_p95(values)
        print(f"{label:36} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
    ratio = p50_p95(peer_ms)[0] / p50_p95(twin)[0]
    print(f"ratio plain PostGIS / twin (p50): {ratio:.2f}x (same feature counts)")
    stats = timed(lambda: onemap.district_stats(url=url), repeat)
    districts = len(onemap.district_stats(url=url))
    p50, p95 = p50_p95(stats)
    print(
        f"district_stats() over {districts} districts: p50 {p50:.1f} ms, best {min(stats):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (best of)")
    args = parser.parse_args()
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    target = base.set(database=f"{base.database}_bench_utilities")
    url = target.render_as_string(hide_password=False)
    drop_database(url)
    upgrade(url)
    try:
        segmentation(url, args.repeat)
        power_outages(url, args.repeat)
        empty(url)
        load_sample(directory=SAMPLE_DIR, url=url)
        isolation(url)
        one_map(url, args.repeat)
    finally:
        get_engine(url).dispose()
        drop_database(url)


if __name__ == "__main__":
    main()
