"""Serving on several workers: cached tiles with 1 and 2 workers, and against tipg at each.

Not a test. Loads the sample city into a scratch database and starts, one after the other on
localhost: ``twin serve --workers N`` (the Redis tile cache shared by the workers, warmed by a
first pass; layer versions pushed by LISTEN/NOTIFY, so a cached tile reads nothing from the
store) and tipg 1.6.1 (``bench/.tipg-venv``, as ``bench/serving.py`` runs it, plus uvicorn
0.54.0 in that venv) with the same number of uvicorn workers, for N = 1 and 2. ``wrk``
(Debian's package) cycles through the same list of vector tiles (the ``buildings``
collection, every tile of its tileset over the city at z12-z16) at concurrency 8 and 32.
Prints tiles/s, p50 and p99, the twin's 2-worker/1-worker ratio (goal >= 1.8x), the twin's
cached tiles against tipg at the same worker count (goal >= 10x), and how many store
transactions the twin's workers ran per cached tile (``pg_stat_database``; the goal of
LISTEN/NOTIFY is none).

Usage: ``python bench/serving_workers.py [--seconds 8] [--section FILE.md]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from serving import TIPG, free_port, start, tiles, wrk  # noqa: E402  (bench/serving.py)

from layers.database import database_url, drop_database, get_engine, upgrade  # noqa: E402
from twin.sample import load_sample  # noqa: E402

CONCURRENCY = (8, 32)
#: tipg under uvicorn in tipg's venv, its workers given the socket ``twin serve`` gives its own
#: (twin/serving.py: protocol IPPROTO_TCP, so TCP_NODELAY is set; uvicorn's own ``--workers``
#: socket leaves Nagle on and costs every kept-alive reply ~40 ms), so neither is handicapped.
TIPG_SERVER = """
import socket, sys, uvicorn
from uvicorn.supervisors import Multiprocess
port, workers = int(sys.argv[1]), int(sys.argv[2])
config = uvicorn.Config(
    "tipg.main:app", host="127.0.0.1", port=port, workers=workers, log_level="warning"
)
sock = config.bind_socket()
sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
if workers > 1:
    Multiprocess(config, sockets=[sock]).run()
else:
    uvicorn.Server(config).run(sockets=[sock])
"""
GOAL_SCALING = 1.8
GOAL_VS_TIPG = 10.0


def transactions(libpq: str) -> int:
    """Committed and rolled-back transactions of the database so far (all backends)."""
    import psycopg

    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def served_tiles(url: str, grid: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The tiles of the grid inside the buildings tileset's limits (the API 404s the others)."""
    from layers.errors import ParameterError
    from layers.tiles import check_in_limits

    kept = []
    for z, x, y in grid:
        try:
            check_in_limits(["buildings"], z, x, y, url=url)
        except ParameterError:
            continue
        kept.append((z, x, y))
    return kept


def stopped(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--section", type=Path, help="also write the figures as markdown here")
    args = parser.parse_args()
    (HERE / "out").mkdir(exist_ok=True)
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    target = base.set(database=f"{base.database}_bench_workers")
    url = target.render_as_string(hide_password=False)
    libpq = target.set(drivername="postgresql").render_as_string(hide_password=False)
    drop_database(url)
    upgrade(url)
    load_sample(url=url)
    get_engine(url).dispose()
    redis_url = os.environ.get("TWIN_REDIS_URL", "redis://127.0.0.1:6379/15")
    grid = served_tiles(url, tiles(range(12, 17)))
    twin_paths = [f"/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}" for z, x, y in grid]
    tipg_paths = [
        f"/collections/public.buildings/tiles/WebMercatorQuad/{z}/{x}/{y}" for z, x, y in grid
    ]
    results: dict[tuple[str, int, int], tuple[float, float, float]] = {}
    per_tile: dict[int, float] = {}
    for workers in (1, 2):
        port = free_port()
        address = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "twin", "serve", "--port", str(port)]
        command += ["--workers", str(workers)]
        env = {"TWIN_DATABASE_URL": url, "TWIN_REDIS_URL": redis_url, "TWIN_MQTT_URL": ""}
        process = start(command, env, f"{address}/health")
        try:
            for _ in range(2 * workers):  # warm the shared cache and every worker's listener
                for path in twin_paths:
                    urllib.request.urlopen(address + path).read()
            time.sleep(1.5)  # housekeeping's first round done: count tiles only (not a test)
            before = transactions(libpq)
            started = time.monotonic()
            rate, _, _ = wrk(address, twin_paths, 8, args.seconds)
            served = rate * (time.monotonic() - started)
            after = transactions(libpq)
            per_tile[workers] = (after - before - 2) / served  # less this probe's own two
            for connections in CONCURRENCY:
                results[("twin cached", workers, connections)] = wrk(
                    address, twin_paths, connections, args.seconds
                )
        finally:
            stopped(process)
        port = free_port()
        address = f"http://127.0.0.1:{port}"
        process = start(
            [str(TIPG), "-c", TIPG_SERVER, str(port), str(workers)],
            {
                "DATABASE_URL": libpq,
                "TIPG_DB_SCHEMAS": '["public"]',
                "TIPG_TABLE_CONFIG__public_buildings__geomcol": "geom",
            },
            f"{address}/collections",
        )
        try:
            for path in tipg_paths:
                urllib.request.urlopen(address + path).read()
            for connections in CONCURRENCY:
                results[("tipg", workers, connections)] = wrk(
                    address, tipg_paths, connections, args.seconds
                )
        finally:
            stopped(process)
    drop_database(url)

    lines = [
        f"{len(grid)} buildings tiles over the sample city, z12-z16, cycled by wrk "
        f"({args.seconds} s per run, {os.cpu_count()} cores); twin: Redis cache warmed",
        "",
        f"{'server':12} {'workers':>7} {'c':>3} {'tiles/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'vs tipg':>8}",
    ]
    for (name, workers, connections), (rate, p50, p99) in results.items():
        ratio = rate / results[("tipg", workers, connections)][0]
        lines.append(
            f"{name:12} {workers:7d} {connections:3d} {rate:9.1f} {p50:8.2f} {p99:8.2f} "
            f"{ratio:7.1f}x"
        )
    lines.append("")
    for connections in CONCURRENCY:
        one = results[("twin cached", 1, connections)][0]
        two = results[("twin cached", 2, connections)][0]
        scaling = two / one
        met = "met" if scaling >= GOAL_SCALING else "NOT met"
        lines.append(
            f"c={connections}: twin 2 workers / 1 worker = {scaling:.2f}x "
            f"(goal >= {GOAL_SCALING}x: {met})"
        )
        for workers in (1, 2):
            ratio = (
                results[("twin cached", workers, connections)][0]
                / results[("tipg", workers, connections)][0]
            )
            met = "met" if ratio >= GOAL_VS_TIPG else "NOT met"
            lines.append(
                f"c={connections}: twin cached / tipg, {workers} worker(s) = {ratio:.1f}x "
                f"(goal >= {GOAL_VS_TIPG:.0f}x: {met})"
            )
    for workers, count in per_tile.items():
        lines.append(
            f"store transactions per cached tile, {workers} worker(s): {max(count, 0.0):.4f}"
        )
    text = "\n".join(lines)
    print(text)
    if args.section:
        args.section.write_text(
            f"## Serving on several workers — `bench/serving_workers.py`\n\n```\n{text}\n```\n"
        )


if __name__ == "__main__":
    main()
