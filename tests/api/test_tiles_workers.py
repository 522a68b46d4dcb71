"""Tiles on several workers: layer versions pushed by LISTEN/NOTIFY, the Redis cache shared.

The real ``twin serve --workers 2`` in its own process group, a real Redis and PostgreSQL; which
worker answered a request is read from the worker processes' own sockets (psutil), never from
the API.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import httpx2 as httpx
import mapbox_vector_tile
import morecantile
import psutil
import psycopg
import pytest
import shapely
import uvicorn

from layers.ingest import ingest_frame
from layers.tiles import check_in_limits, tile_etag
from layers.versions import VersionWatcher, watched_versions, watcher
from tests.conditions import answers, served, wait_until
from tests.conftest import ROOT
from twin.serving import APP, tcp_socket

LON, LAT = 7.4215, 43.7350  # La Condamine
TILE = morecantile.tms.get("WebMercatorQuad").tile(LON, LAT, 15)
Z, X, Y = TILE.z, TILE.x, TILE.y
PATH = f"/collections/cameras/tiles/WebMercatorQuad/{Z}/{Y}/{X}"
TWIN = [sys.executable, "-m", "twin"]


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _camera(name: str) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": [name], "heading": [90.0]}, geometry=[shapely.Point(LON, LAT)], crs=4326
    )


@pytest.fixture
def camera(city) -> Iterator[tuple[str, gpd.GeoDataFrame]]:
    """A camera in the tile, not yet stored; removed (its source emptied) afterwards."""
    frame = _camera("workers-test")
    yield city.url, frame
    ingest_frame("cameras", frame.iloc[0:0], source="workers-test", url=city.url)


def _listening(w: VersionWatcher) -> bool:
    return w.live


def test_versions_come_from_memory_not_the_table(camera) -> None:
    url, frame = camera
    w = watcher(url)
    wait_until(lambda: _listening(w), timeout_s=20, what="the layer versions listener listening")
    before = tile_etag(["cameras"], Z, X, Y, url=url)
    check_in_limits(["cameras"], Z, X, Y, url=url)  # the limits are read once per version
    # with the counters' table locked, a request that read it would wait: none does
    with psycopg.connect(_libpq(url)) as locker:
        locker.execute("LOCK TABLE layer_versions IN ACCESS EXCLUSIVE MODE")
        locker.execute("SET LOCAL lock_timeout = '30s'")
        assert tile_etag(["cameras"], Z, X, Y, url=url) == before
        check_in_limits(["cameras"], Z, X, Y, url=url)
        locker.rollback()
    ingest_frame("cameras", frame, source="workers-test", url=url)
    stored = watched_versions(["cameras"], url=url)
    with psycopg.connect(_libpq(url)) as conn:
        row = conn.execute("SELECT version FROM layer_versions WHERE layer = 'cameras'").fetchone()
    assert row is not None and stored == (row[0],)  # this process sees its own write at once
    assert tile_etag(["cameras"], Z, X, Y, url=url) != before


def test_a_lost_listener_reconnects_and_reads_again(camera) -> None:
    url, _ = camera
    w = watcher(url)
    wait_until(lambda: _listening(w), timeout_s=20, what="the layer versions listener listening")
    connects = w.connects
    # one transaction kills the listening connection, then moves a counter: its notification
    # goes to nobody, so only the full read after reconnecting can bring it (a raw connection:
    # not a commit of this process's engines, which would make the next answer read the table)
    with psycopg.connect(_libpq(url)) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (f"twin layer versions {os.getpid()}",),
        ).fetchall()
        assert killed, "no listening connection of this process"
        truth = admin.execute(
            "UPDATE layer_versions SET version = version + 1 WHERE layer = 'cameras' "
            "RETURNING version"
        ).fetchone()
        admin.commit()
    assert truth is not None
    wait_until(
        lambda: w.connects > connects and w.versions(["cameras"]) == (truth[0],),
        timeout_s=20,
        what="the listener reconnecting and reading the counters again",
    )
    assert watched_versions(["cameras"], url=url) == (truth[0],)


def _workers(server: psutil.Process) -> list[psutil.Process]:
    return [p for p in server.children(recursive=True) if p.is_running()]


def _worker_of(response: httpx.Response, workers: list[psutil.Process]) -> int | None:
    """The pid of the worker holding the server end of the response's connection."""
    port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    for process in workers:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.raddr and c.raddr.port == port for c in connections):
            return process.pid
    return None


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    layer = mapbox_vector_tile.decode(response.content).get("cameras", {"features": []})
    return {f["properties"]["id"] for f in layer["features"]}


def _showing(client: httpx.Client) -> httpx.Response | None:
    """The client's tile if it shows the test's camera, else None."""
    response = client.get(PATH)
    return response if "workers-test" in _ids(response) else None


def test_two_workers_share_the_cache_and_see_an_edit_at_once(camera, tmp_path: Path) -> None:
    url, frame = camera
    redis_url = os.environ.get("TWIN_REDIS_URL", "redis://127.0.0.1:6379/15")
    # no MQTT bridge: the live twin is not what this test is about
    env = os.environ | {"TWIN_DATABASE_URL": url, "TWIN_REDIS_URL": redis_url, "TWIN_MQTT_URL": ""}
    command = [*TWIN, "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2"]
    log = tmp_path / "serve.log"
    with served(command, env=env, log=log, timeout_s=90, cwd=ROOT) as address:
        clients: dict[int, httpx.Client] = {}  # one kept-alive connection per worker
        spare: list[httpx.Client] = []
        try:
            parent = next(
                p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == command
            )

            # the parent binds the socket; it listens once a worker serves
            wait_until(
                lambda: answers(f"{address}/health"),
                timeout_s=60,
                what="a worker answering /health",
                ignore=(OSError,),
            )

            def both_workers() -> bool:
                client = httpx.Client(base_url=address, timeout=30)
                response = client.get(PATH)
                pid = _worker_of(response, _workers(parent))
                if pid is None or pid in clients:
                    spare.append(client)
                else:
                    clients[pid] = client
                return len(clients) == 2

            wait_until(both_workers, timeout_s=60, what="connections to both workers", every_s=0)
            first, second = clients.values()
            before = first.get(PATH)
            assert "workers-test" not in _ids(before)
            assert second.get(PATH).headers["etag"] == before.headers["etag"]

            ingest_frame("cameras", frame, source="workers-test", url=url)

            seen = wait_until(
                lambda: _showing(first),
                timeout_s=10,
                what="the first worker's tile showing the edit",
            )
            assert seen.headers["etag"] != before.headers["etag"]
            shared = wait_until(
                lambda: _showing(second),
                timeout_s=10,
                what="the second worker's tile showing the edit",
            )
            # the second worker serves the tile the first cut (Redis), under the same ETag
            assert shared.headers["etag"] == seen.headers["etag"]
            assert shared.headers["x-tile-cache"] == "hit"
            revalidated = second.get(PATH, headers={"If-None-Match": seen.headers["etag"]})
            assert revalidated.status_code == 304
            assert (
                first.get(PATH, headers={"If-None-Match": before.headers["etag"]}).status_code
                == 200
            )
        finally:
            for client in [*clients.values(), *spare]:
                client.close()


def test_serve_refuses_no_workers() -> None:
    done = subprocess.run(
        [*TWIN, "serve", "--workers", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "--workers" in done.stderr


def test_the_workers_socket_turns_nagle_off() -> None:
    """The socket ``twin serve --workers N`` hands its workers gives connections TCP_NODELAY
    (uvicorn's own has protocol 0: asyncio then leaves Nagle on, ~40 ms per kept-alive reply)."""
    config = uvicorn.Config(APP, factory=True, host="127.0.0.1", port=0, workers=2)
    bound = config.bind_socket()
    assert bound.proto == 0  # what uvicorn makes (if this fails, uvicorn fixed it itself)
    sock = tcp_socket(bound)
    assert sock.proto == socket.IPPROTO_TCP

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        # a worker rebuilds the socket from its descriptor with the same protocol
        copy = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
        server = await asyncio.start_server(handle, sock=copy)
        _, writer = await asyncio.open_connection(*copy.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    try:
        assert asyncio.run(accepted_nodelay()) != 0
    finally:
        sock.close()
