"""Serving benchmark: CityTwin's tiles and features vs tipg, on the same PostGIS tables.

Not a test. Loads the sample city into a scratch database, starts three servers on localhost —
the twin with its tile cache off (uncached), the twin with its cache warmed (cached), and tipg
(``pip install tipg`` into ``bench/.tipg-venv``) — and drives each with ``wrk`` (Debian's
package) over the same list of vector tiles (the ``buildings`` collection, every tile over the
city at z12-z16) at concurrency 1, 8 and 32, then ``items?limit=1000``. Prints tiles/s, p50 and
p99 and the ratios against tipg.

Usage: ``python bench/serving.py [--seconds 8]``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIPG = HERE / ".tipg-venv" / "bin" / "python"
BBOX = (7.409, 43.724, 7.439, 43.752)
os.environ.setdefault("TWIN_CITY_BBOX", "[6.5, 43.0, 9.5, 45.5]")  # room for the point table

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
import geopandas as gpd  # noqa: E402
from ingest import make_file  # noqa: E402  (bench/ingest.py: the 200k real footprints)

from layers.database import database_url, drop_database, get_engine, upgrade  # noqa: E402
from layers.ingest import ingest_frame  # noqa: E402
from twin.sample import load_sample  # noqa: E402

LUA = """
local paths = {}
for line in io.lines(os.getenv("TILE_PATHS")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def tiles(
    zooms: range, bbox: tuple[float, float, float, float] = BBOX
) -> list[tuple[int, int, int]]:
    out = []
    for z in zooms:
        n = 2**z

        def col(lon: float, n: int = n) -> int:
            return int((lon + 180) / 360 * n)

        def row(lat: float, n: int = n) -> int:
            return int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)

        for x in range(col(bbox[0]), col(bbox[2]) + 1):
            for y in range(row(bbox[3]), row(bbox[1]) + 1):
                out.append((z, x, y))
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(command: list[str], env: dict[str, str], health: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command,
        env=os.environ | env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(health, timeout=2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"server did not start: {' '.join(command)}")


def wrk(base: str, paths: list[str], connections: int, seconds: int) -> tuple[float, float, float]:
    listing = HERE / "out" / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = HERE / "out" / "paths.lua"
    script.write_text(LUA)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"TILE_PATHS": str(listing)},
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rate, percentile("50"), percentile("99")


def compare(addresses: dict[str, str], paths: dict[str, list[str]], seconds: int) -> None:
    """Run every server's tile list at concurrency 1, 8 and 32; print rates against tipg."""
    for connections in (1, 8, 32):
        results = {
            name: wrk(addresses[name], tile_paths, connections, seconds)
            for name, tile_paths in paths.items()
        }
        for name, (rate, p50, p99) in results.items():
            ratio = rate / results["tipg"][0]
            print(f"{name:15} {connections:3d} {rate:9.1f} {p50:8.2f} {p99:8.2f} {ratio:7.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    (HERE / "out").mkdir(exist_ok=True)
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    target = base.set(database=f"{base.database}_bench_serve")
    url = target.render_as_string(hide_password=False)
    drop_database(url)
    upgrade(url)
    load_sample(url=url)
    # a 200,000-point table, the regime the issue measured tipg in: one supply point per real
    # building footprint (bench/ingest.py's file), as power_nodes consumers
    footprints = gpd.read_file(make_file(200_000), engine="pyogrio")
    points = gpd.GeoDataFrame(
        {"id": "point/" + footprints["id"], "kind": "consumer"},
        geometry=footprints.geometry.representative_point(),
        crs=footprints.crs,
    )
    ingest_frame("power_nodes", points, source="bench-points", url=url)
    minx, miny, maxx, maxy = (float(v) for v in points.total_bounds)
    get_engine(url).dispose()
    libpq = target.set(drivername="postgresql").render_as_string(hide_password=False)
    addresses, processes = {}, []
    for name, cache_mb in (("twin uncached", "0"), ("twin cached", "512")):
        port = free_port()
        addresses[name] = f"http://127.0.0.1:{port}"
        processes.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api.app:create_app",
                    "--factory",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                {"TWIN_DATABASE_URL": url, "TWIN_TILE_CACHE_MB": cache_mb},
                f"{addresses[name]}/health",
            )
        )
    port = free_port()
    addresses["tipg"] = f"http://127.0.0.1:{port}"
    processes.append(
        start(
            [
                str(TIPG),
                "-m",
                "uvicorn",
                "tipg.main:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            {
                "DATABASE_URL": libpq,
                "TIPG_DB_SCHEMAS": '["public"]',
                "TIPG_TABLE_CONFIG__public_buildings__geomcol": "geom",
                "TIPG_TABLE_CONFIG__public_power_nodes__geomcol": "geom",
            },
            f"{addresses['tipg']}/collections",
        )
    )
    try:
        addresses_tiles = {
            "twin uncached": [
                f"/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}"
                for z, x, y in tiles(range(12, 17))
            ],
            "twin cached": [
                f"/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}"
                for z, x, y in tiles(range(12, 17))
            ],
            "tipg": [
                f"/collections/public.buildings/tiles/WebMercatorQuad/{z}/{x}/{y}"
                for z, x, y in tiles(range(12, 17))
            ],
        }
        for path in addresses_tiles["twin cached"]:  # warm the cache
            urllib.request.urlopen(addresses["twin cached"] + path).read()
        print(
            f"{len(addresses_tiles['tipg'])} buildings tiles over the sample city, z12-z16; "
            f"wrk {args.seconds} s per run"
        )
        print(f"{'server':15} {'c':>3} {'tiles/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs tipg':>8}")
        compare(addresses, addresses_tiles, args.seconds)
        z14 = tiles(range(14, 15), (minx, miny, maxx, maxy))
        points_tiles = {
            "twin uncached": [
                f"/collections/power_nodes/tiles/WebMercatorQuad/{z}/{y}/{x}" for z, x, y in z14
            ],
            "twin cached": [
                f"/collections/power_nodes/tiles/WebMercatorQuad/{z}/{y}/{x}" for z, x, y in z14
            ],
            "tipg": [
                f"/collections/public.power_nodes/tiles/WebMercatorQuad/{z}/{x}/{y}"
                for z, x, y in z14
            ],
        }
        for path in points_tiles["twin cached"]:
            urllib.request.urlopen(addresses["twin cached"] + path).read()
        print(f"\n{len(z14)} z14 tiles over a table of {len(points) + 1713:,} points (power_nodes)")
        compare(addresses, points_tiles, args.seconds)
        print()
        items = {
            "twin uncached": ["/collections/buildings/items?limit=1000"],
            "tipg": ["/collections/public.buildings/items?limit=1000"],
        }
        results = {
            name: wrk(addresses[name], paths, 8, args.seconds) for name, paths in items.items()
        }
        for name, (rate, p50, p99) in results.items():
            ratio = rate / results["tipg"][0]
            print(
                f"items?limit=1000 {name:15} c=8 {rate:8.1f}/s p50 {p50:7.2f} ms "
                f"p99 {p99:7.2f} ms {ratio:5.1f}x"
            )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
