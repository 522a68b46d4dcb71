"""One-map and district figures benchmark: CityTwin vs plain PostGIS, on the sample city.

Not a test. On a scratch database ``<TWIN_DATABASE_URL's name>_bench_onemap`` (created here,
the sample city loaded, dropped at the end), in one run:

1. ``layers.onemap.around(point, 1000)`` over every layer at 20 points on a 5 x 4 grid over
   the sample city: every feature as GeoDataFrames, and with ``limit=100`` (what the API
   asks);
2. the HTTP answer ``GET /onemap/around?lon=..&lat=..&radius_m=1000`` (limit 100 per layer,
   the API's default) through the FastAPI app in process (``TestClient``): the summary and
   13 FeatureCollections as JSON bytes;
3. the peer: the same question as one plain PostGIS query per layer
   (``SELECT * ... WHERE valid_to IS NULL AND ST_DWithin(geom::geography, point::geography,
   1000)``) fetched with psycopg on one connection; the feature counts must agree;
4. ``layers.onemap.district_stats()`` over the sample's 10 districts.

Goals (issue 14 part 5): one-map within 1 km p95 <= 100 ms; ``district_stats`` <= 300 ms.

Usage: ``python bench/onemap.py [--repeat 5] [--keep]``. Prints the figures (ms) and ratios.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import psycopg
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy.engine import make_url

from api.app import create_app
from layers import onemap
from layers.catalog import LAYERS
from layers.database import database_url, drop_database, get_engine, upgrade
from layers.queries import read_layer
from layers.settings import TwinSettings
from twin.sample import SAMPLE_DIR, load_sample

RADIUS_M = 1000.0
LIMIT = 100


def p50_p95(values: list[float]) -> tuple[float, float]:
    """The median and 95th percentile."""
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def libpq(url: str) -> str:
    """A SQLAlchemy URL as libpq takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def points_over_city(url: str) -> list[tuple[float, float]]:
    """20 points on a 5 x 4 grid over the buildings' extent, inset by a tenth."""
    xmin, ymin, xmax, ymax = read_layer("buildings", url=url).total_bounds
    dx, dy = (xmax - xmin) / 10, (ymax - ymin) / 10
    xs = np.linspace(xmin + dx, xmax - dx, 5)
    ys = np.linspace(ymin + dy, ymax - dy, 4)
    return [(float(x), float(y)) for y in ys for x in xs]


def one_map(url: str, repeat: int) -> None:
    """Time one-map around 1 km (library, HTTP) against plain PostGIS, and district_stats.

    The contenders take turns at every point (and ``district_stats`` between rounds), so that
    a change in the machine's load falls on all of them alike.
    """
    print(f"== one-map: everything within {RADIUS_M:g} m of a point, every layer")
    points = points_over_city(url)
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

    peer_found = [peer(p) for p in points]
    assert peer_found == found, (peer_found, found)
    settings = TwinSettings(database_url=url, auth_anonymous_role="administrator", mqtt_url="")
    with TestClient(create_app(settings)) as client:

        def http(point: tuple[float, float]) -> bytes:
            response = client.get(
                "/onemap/around",
                params={"lon": point[0], "lat": point[1], "radius_m": RADIUS_M, "limit": LIMIT},
            )
            assert response.status_code == 200, response.text
            return response.content

        contenders: dict[str, Callable[[tuple[float, float]], object]] = {
            "twin onemap.around (every feature)": lambda p: onemap.around(p, RADIUS_M, url=url),
            f"twin onemap.around, limit={LIMIT}": lambda p: onemap.around(
                p, RADIUS_M, url=url, limit=LIMIT
            ),
            f"twin GET /onemap/around (limit {LIMIT}), as administrator": http,
            "plain PostGIS, one query per layer": peer,
        }
        times: dict[str, list[float]] = {label: [] for label in contenders}
        stats: list[float] = []
        for function in contenders.values():
            function(points[0])  # warm up
        onemap.district_stats(url=url)
        for _ in range(repeat):
            for point in points:
                for label, function in contenders.items():
                    started = time.perf_counter()
                    function(point)
                    times[label].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            onemap.district_stats(url=url)
            stats.append((time.perf_counter() - started) * 1000)
        sizes = [len(http(p)) for p in points]
    conn.close()
    print(
        f"{len(points)} points on a 5 x 4 grid over the sample city, {len(LAYERS)} layers, "
        f"{int(np.mean(found)):,} features per answer on average; {repeat} rounds, taking "
        f"turns; HTTP answer {np.mean(sizes) / 1024:,.0f} KiB on average"
    )
    for label, values in times.items():
        p50, p95 = p50_p95(values)
        print(f"{label:58} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
    peer_ms = times["plain PostGIS, one query per layer"]
    for label, values in list(times.items())[:3]:
        ratio = p50_p95(peer_ms)[0] / p50_p95(values)[0]
        verdict = "met" if p50_p95(values)[1] <= 100 else "NOT met"
        print(f"plain PostGIS / {label} (p50): {ratio:.2f}x; p95 <= 100 ms: {verdict}")
    districts = len(onemap.district_stats(url=url))
    p50, p95 = p50_p95(stats)
    verdict = "met" if p95 <= 300 else "NOT met"
    print(
        f"district_stats() over {districts} districts: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
        f"best {min(stats):.1f} ms; <= 300 ms: {verdict}"
    )
    print(f"load average after the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


def main() -> None:
    """Make the scratch database, load the sample city, run, drop it."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds over the 20 points")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    args = parser.parse_args()
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    target = base.set(database=f"{base.database}_bench_onemap")
    url = target.render_as_string(hide_password=False)
    reuse = args.keep and _has_sample(url)
    if not reuse:
        drop_database(url)
        upgrade(url)
        load_sample(directory=SAMPLE_DIR, url=url)
    try:
        one_map(url, args.repeat)
    finally:
        get_engine(url).dispose()
        if not args.keep:
            drop_database(url)


def _has_sample(url: str) -> bool:
    try:
        with psycopg.connect(libpq(url)) as conn:
            row = conn.execute("SELECT count(*) FROM buildings").fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


if __name__ == "__main__":
    main()
