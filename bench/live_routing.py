"""Live speeds into routes: how long from a speed observation to a route that reflects it.

Not a test. For each real road network — the sample city (Monaco, ``data_samples/monaco``)
and the largest one in ../shared/data (Malta, ``malta-latest.osm.pbf``, 57k directed edges) —
the roads are loaded into a scratch database ``<TWIN_DATABASE_URL's name>_bench_live_<net>``, a
detector (a Thing with ``speed`` and ``flow`` datastreams) is registered on roads, and each
round:

1. takes the current fastest route between two nodes and the road in its middle;
2. stores a speed observation of 3 km/h on that road through the twin's one path,
   :meth:`twin.live.feed.Feed.ingest` with :func:`twin.live.processors.default_processors`
   (store, ``RoadSpeeds`` combining and upserting ``live_speeds``);
3. asks the :class:`routing.Router` for the next route (as the API does): it sees the
   ``live_speeds`` counter move, reads the live speeds and recomputes the edge costs by the
   routing view's formula, recompiles the graph and routes; the new route must avoid the
   road or take longer.

Printed, p50 / p95 in ms: the ingest, the next route, their sum (the goal is at most 2 s),
the cost update alone (``RoadNetwork.with_live_speeds``), what a change cost before (reading
the whole network from the view again, ``RoadNetwork.load``), and ``pgr_dijkstra`` over the
live view (``routing_edges``) for the same node pairs.

Usage: ``python bench/live_routing.py [--rounds 30] [--networks sample,malta]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "data_samples" / "monaco"
MALTA = ROOT.parent / "shared" / "data" / "malta" / "malta-latest.osm.pbf"
#: Per network: how to load it, and the settings it needs (extent, metric CRS).
NETWORKS: dict[str, dict[str, Any]] = {
    "sample": {"label": "sample city (Monaco)", "env": {}},
    "malta": {
        "label": "largest (Malta, OSM 2018)",
        "env": {
            "TWIN_CITY_BBOX": json.dumps([14.1, 35.7, 14.7, 36.15]),
            "TWIN_METRIC_CRS": "EPSG:32633",
        },
    },
}


def apply_env(env: dict[str, str]) -> None:
    """Set a network's settings (:data:`NETWORKS` ``env``) in the environment, afresh."""
    from layers.settings import get_settings

    for name in ("TWIN_CITY_BBOX", "TWIN_METRIC_CRS"):
        os.environ.pop(name, None)
    os.environ.update(env)
    get_settings.cache_clear()


def load_network(name: str, url: str, *, layers: tuple[str, ...] = ("roads",)) -> None:
    """Make the database at ``url`` again and load a network into it.

    ``sample``: the whole sample city; ``malta``: ``layers`` read from :data:`MALTA`.
    """
    from layers.database import drop_database, upgrade

    drop_database(url)
    upgrade(url)
    if name == "sample":
        from twin.sample import load_sample

        load_sample(directory=SAMPLE, url=url)
        return
    from layers.ingest import ingest_frame
    from layers.osm import read_osm

    frames = read_osm(MALTA, list(layers))
    for layer in layers:
        ingest_frame(layer, frames[layer], source=MALTA.name, url=url)


def _percentiles(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):9.1f} ms  p95 {np.percentile(values, 95):9.1f} ms"


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = function()
    return out, (time.perf_counter() - started) * 1000


def benchmark(name: str, *, rounds: int = 30, url: str | None = None) -> dict[str, list[float]]:
    """Measure observation-to-route latency on one network and print it.

    Parameters
    ----------
    name
        ``sample`` or ``malta`` (:data:`NETWORKS`).
    rounds
        Speed observations to time.
    url
        Scratch database URL; ``<TWIN_DATABASE_URL's name>_bench_live_<name>`` by default
        (dropped and made again).

    Returns
    -------
    dict
        The timings in ms by measure.
    """
    apply_env(NETWORKS[name]["env"])
    import psycopg
    from sqlalchemy.engine import make_url

    from layers.database import database_url, get_engine
    from layers.observations import Reading
    from routing import RoadNetwork
    from twin.city import City
    from twin.live.feed import Feed
    from twin.live.processors import default_processors
    from twin.live.registry import register

    if url is None:
        base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
        # a database per network: the store caches what it created per URL (partitions)
        database = f"{base.database}_bench_live_{name}"
        url = base.set(database=database).render_as_string(hide_password=False)
    started = time.perf_counter()
    load_network(name, url)
    load_s = time.perf_counter() - started
    city = City(url)
    network = city.router.network("car")
    print(
        f"\n== {NETWORKS[name]['label']}: {len(network.edge_id):,} edges, "
        f"{len(network.node_ids):,} nodes (loaded in {load_s:.0f} s)"
    )
    position: dict[int, tuple[float, float]] = {}
    for i in range(len(network.edge_id)):
        line = network.geometry[i]
        position[int(network.node_ids[network.source[i]])] = line.coords[0]
        position[int(network.node_ids[network.target[i]])] = line.coords[-1]
    rng = np.random.default_rng(3)
    feed = Feed(url=url, processors=default_processors())
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    edges_sql = "SELECT id, source, target, cost, reverse_cost FROM routing_edges"
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "ingest (store + RoadSpeeds)",
            "next route (Router: costs updated + route)",
            "observation -> route reflecting it",
            "cost update alone (with_live_speeds)",
            "before: reload the network (RoadNetwork.load)",
            "pgr_dijkstra over the live view",
            "twin route, warm (same pair)",
        )
    }
    reflected = 0
    start = datetime.now(UTC) - timedelta(seconds=rounds + 60)
    with psycopg.connect(libpq, autocommit=True) as conn:
        done = 0
        while done < rounds:
            a, b = (int(n) for n in rng.choice(network.node_ids, 2, replace=False))
            before = city.route(position[a], position[b])
            if before is None or len(before.road_ids) < 3:
                continue
            road = before.road_ids[len(before.road_ids) // 2]
            thing: dict[str, Any] = {"thing": f"loop {road}", "layer": "roads", "feature_id": road}
            speed = register(f"loop {road}/speed", observed_property="speed", url=url, **thing)
            flow = register(f"loop {road}/flow", observed_property="flow", url=url, **thing)
            at = start + timedelta(seconds=done)
            _, warm_ms = _timed(lambda: city.route(position[a], position[b]))  # noqa: B023
            results["twin route, warm (same pair)"].append(warm_ms)
            report, ingest_ms = _timed(
                lambda: feed.ingest([Reading(speed, at, 3.0), Reading(flow, at, 120.0)])  # noqa: B023
            )
            assert len(report.stored) == 2, report
            after, route_ms = _timed(lambda: city.route(position[a], position[b]))  # noqa: B023
            results["ingest (store + RoadSpeeds)"].append(ingest_ms)
            results["next route (Router: costs updated + route)"].append(route_ms)
            results["observation -> route reflecting it"].append(ingest_ms + route_ms)
            if after is not None and (
                road not in after.road_ids or after.duration_s > before.duration_s
            ):
                reflected += 1
            _, pgr_ms = _timed(
                lambda: conn.execute(
                    "SELECT * FROM pgr_dijkstra(%s, %s::bigint, %s::bigint)",
                    (edges_sql, a, b),  # noqa: B023
                ).fetchall()
            )
            results["pgr_dijkstra over the live view"].append(pgr_ms)
            done += 1
        live = city.router.network("car").live_speeds or {}
        for _ in range(min(rounds, 10)):
            _, ms = _timed(lambda: network.with_live_speeds(live))
            results["cost update alone (with_live_speeds)"].append(ms)
        for _ in range(3):
            _, ms = _timed(lambda: RoadNetwork.load(profile="car", url=url))
            results["before: reload the network (RoadNetwork.load)"].append(ms)
    for measure, values in results.items():
        print(f"{measure:48} {_percentiles(values)}")
    total = results["observation -> route reflecting it"]
    print(
        f"routes reflecting their observation: {reflected}/{rounds}; slowest observation -> "
        f"route {max(total):.0f} ms (goal 2000 ms); pgr_dijkstra over the view is "
        f"{np.median(results['pgr_dijkstra over the live view']) / np.median(total):.1f}x "
        "the whole observation -> route"
    )
    get_engine(url).dispose()
    return results


def main() -> None:
    """Run :func:`benchmark` on the networks named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--networks", default="sample,malta")
    args = parser.parse_args()
    for name in args.networks.split(","):
        benchmark(name, rounds=args.rounds)


if __name__ == "__main__":
    main()
