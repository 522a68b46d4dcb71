"""Hardening (issue 13): NUL characters, a database that goes away, body and vertex limits.

Every case here answered 500 (or read 60 MB, or tied a worker up) before: each is a class
closed in one place (api/limits.py, api/errors.py, layers/onemap.check_vertices).
"""

from __future__ import annotations

import contextlib
import json
import math
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app import create_app
from layers.database import get_engine
from layers.settings import TwinSettings, get_settings
from tests.assertions import problem
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT

NUL = "text must not contain a NUL character"
AREA = {
    "type": "Polygon",
    "coordinates": [[[7.41, 43.73], [7.43, 43.73], [7.43, 43.74], [7.41, 43.74], [7.41, 43.73]]],
}


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=sample_db, mqtt_url=""))) as test:
        yield test


# --- NUL characters: refused before PostgreSQL, naming the parameter ----------------------


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/collections/roads/items/a%00b", "featureId"),
        ("/collections/ro%00ads/items", "collectionId"),
        ("/signals/plans/a%00b", "name"),
        ("/signals/plans/a%00b/sumo", "name"),
        ("/rasters/a%00b/districts", "name"),
        ("/layers/ro%00ads", "layer_id"),
        ("/utilities/wa%00ter", "network_name"),
    ],
)
def test_nul_in_a_path_parameter_is_a_400_naming_it(
    client: TestClient, path: str, parameter: str
) -> None:
    body = problem(client.get(path), 400, parameter)
    assert NUL in body["detail"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/collections/roads/items?filter=name%3D%27a%00b%27", "filter"),
        ("/onemap/around?lon=7.42&lat=43.73&radius_m=100&filter=buildings:name%3D%27a%00%27", "filter"),
        ("/routing/nearest?incident=7.42,43.73&kind=fire%00", "kind"),
        ("/routing/coverage?kind=fire%00", "kind"),
        ("/v1.1/Things?$filter=name%20eq%20%27a%00%27", "$filter"),
        ("/layers?at=2026%00", "at"),
    ],
)  # fmt: skip
def test_nul_in_a_query_parameter_is_a_400_naming_it(
    client: TestClient, path: str, parameter: str
) -> None:
    body = problem(client.get(path), 400, parameter)
    assert NUL in body["detail"]


@pytest.mark.parametrize(
    ("path", "body", "parameter", "where"),
    [
        ("/routing/closures", {"road_ids": ["a\u0000b"]}, "road_ids", "road_ids[0]"),
        ("/onemap/within", {"geometry": AREA, "filters": {"buildings": "name='a\u0000'"}},
         "filters", "filters.buildings"),
        ("/signals/plans", {"name": "plan\u0000", "area": AREA}, "name", "name"),
        ("/rasters/dem/zonal", {"geometry": AREA, "x\u0000": 1}, "x\\u0000", "x\\u0000"),
        ("/incidents/impact", {"geometry": AREA, "kind": "fire\u0000"}, "kind", "kind"),
    ],
)  # fmt: skip
def test_nul_in_a_json_string_is_a_400_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], parameter: str, where: str
) -> None:
    answer = problem(client.post(path, json=body), 400, parameter)
    assert answer["detail"].startswith(f"{where}: {NUL}")


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(client: TestClient) -> None:
    # the JSON text "a\\u0000b" is the six characters a, \, u, 0, 0, 0, 0, b: no NUL in it
    response = client.post(
        "/routing/closures",
        content=b'{"road_ids": ["a\\\\u0000b"]}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert NUL not in response.json()["detail"]


# --- body size and vertex limits -------------------------------------------------------------


def _raw_request(address: str, head: str, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request head and body chunks until the server answers; return answer, bytes sent."""
    url = httpx.URL(address)
    sent = 0
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed
                break
            sent += len(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer, sent


def test_a_body_declared_too_large_is_a_413_before_it_is_sent(sample_server: str) -> None:
    head = (
        "POST /onemap/within HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {60 * 1024 * 1024}\r\n\r\n"
    )
    answer, sent = _raw_request(sample_server, head, iter([b"{"]))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"application/problem+json" in answer
    assert sent <= 1


def test_a_chunked_body_is_read_only_up_to_the_limit(sample_server: str) -> None:
    limit = TwinSettings().max_body_bytes
    head = (
        "POST /routing/flood HTTP/1.1\r\nHost: test\r\nContent-Type: image/tiff\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"\0" * (1 << 20)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer, sent = _raw_request(sample_server, head, iter([chunk] * 64))  # 64 MiB offered
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert sent < limit + 16 * len(chunk), "the server stopped reading near the limit"


def _circle(vertices: int) -> dict[str, Any]:
    ring = [
        [7.42 + 0.005 * math.cos(2 * math.pi * i / vertices),
         43.735 + 0.005 * math.sin(2 * math.pi * i / vertices)]
        for i in range(vertices)
    ]  # fmt: skip
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def test_a_300000_vertex_polygon_is_a_400_naming_the_limit(client: TestClient) -> None:
    response = client.post("/onemap/within", json={"geometry": _circle(300_000)})
    body = problem(response, 400, "geometry")
    assert "300,001 vertices, more than the 20,000 allowed" in body["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/onemap/along", {"geometry": {"type": "LineString", "coordinates": _circle(20_001)[
            "coordinates"][0]}, "buffer_m": 10}),
        ("/routing/closures", {"geometry": _circle(20_001)}),
        ("/incidents/impact", {"geometry": _circle(20_001), "kind": "fire"}),
        ("/rasters/dem/zonal", {"geometry": _circle(20_001)}),
    ],
)  # fmt: skip
def test_every_client_geometry_has_the_vertex_limit(
    client: TestClient, path: str, body: dict[str, Any]
) -> None:
    assert (
        "more than the 20,000 allowed"
        in problem(client.post(path, json=body), 400, "geometry")["detail"]
    )


def test_a_cql2_filter_geometry_has_the_vertex_limit(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CQL2 text is itself bounded (20,000 characters): a lower vertex limit shows the check
    monkeypatch.setenv("TWIN_MAX_VERTICES", "100")
    get_settings.cache_clear()
    try:
        ring = _circle(150)["coordinates"][0]
        wkt = "POLYGON((" + ", ".join(f"{x:.6f} {y:.6f}" for x, y in ring) + "))"
        response = client.post(
            "/onemap/within",
            json={"geometry": AREA, "filters": {"buildings": f"S_INTERSECTS(geometry, {wkt})"}},
        )
        body = problem(response, 400, "filter")
        assert "151 vertices, more than the 100 allowed" in body["detail"]
        items = client.get(
            "/collections/buildings/items", params={"filter": f"S_INTERSECTS(geometry, {wkt})"}
        )
        assert "more than the 100 allowed" in problem(items, 400, "filter")["detail"]
        small = "POLYGON((7.41 43.73, 7.43 43.73, 7.43 43.74, 7.41 43.73))"
        within = client.post(
            "/onemap/within",
            json={"geometry": AREA, "layers": ["buildings"],
                  "filters": {"buildings": f"S_INTERSECTS(geometry, {small})"}},
        )  # fmt: skip
        assert within.status_code == 200, within.text
    finally:
        monkeypatch.delenv("TWIN_MAX_VERTICES")
        get_settings.cache_clear()


# --- the database goes away ------------------------------------------------------------------


class Proxy:
    """A TCP proxy to PostgreSQL that a test can stop (the database unreachable) and restart."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        assert self.listener is not None
        with contextlib.suppress(OSError):  # wakes the accepting thread, or it listens on
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_an_unreachable_database_is_a_503_then_200_when_it_is_back(sample_db: str) -> None:
    real = make_url(sample_db)
    proxy = Proxy((real.host or "127.0.0.1", real.port or 5432))
    proxy.start()
    url = real.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with TestClient(create_app(TwinSettings(database_url=url, mqtt_url=""))) as app:
            assert app.get("/collections/roads/items?limit=2").status_code == 200
            proxy.stop()
            for path in ("/onemap/districts", "/layers?at=2026-01-01T00:00:00Z", "/health"):
                response = app.get(path)
                body = problem(response, 503, None)
                assert response.headers["retry-after"] == "5"
                assert body["title"] == "Service unavailable"
            proxy.start()  # the same port: the app is not restarted
            assert app.get("/onemap/districts").status_code == 200
            assert app.get("/health").json() == {"status": "ok"}
    finally:
        proxy.stop()
        get_engine(url).dispose()


def _terminate_backends(url: str) -> int:
    """Terminate every other session on the database (what a restart does to a pool)."""
    name = make_url(url).database
    with get_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            ).scalar_one()
        )


@pytest.fixture(scope="module")
def own_server(sample_db: str) -> Iterator[str]:
    """A served API of this module's own: its database sessions are terminated here."""
    with api_server(sample_db, root=ROOT, env={"TWIN_MQTT_URL": ""}) as address:
        yield address


def test_terminated_backends_are_replaced_and_reads_answer_200(
    own_server: str, sample_db: str
) -> None:
    paths = ["/collections/roads/items?limit=3", "/onemap/districts", "/layers", "/health"]
    with httpx.Client(base_url=own_server, timeout=60) as http:
        for _ in range(3):
            assert all(http.get(p).status_code == 200 for p in paths)  # connections pooled
            assert _terminate_backends(sample_db) > 0
            for path in paths:
                response = http.get(path)
                assert response.status_code == 200, (path, response.text)


def test_reads_under_load_survive_terminated_backends(own_server: str, sample_db: str) -> None:
    statuses: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=own_server, timeout=60) as http:  # keep-alive
            while not stop.is_set():
                try:
                    response = http.get("/collections/buildings/items?limit=200")
                    statuses.append(response.status_code)
                except httpx.HTTPError as exc:  # a dropped connection with no answer
                    failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for kill in range(5):
            wait_until(
                lambda kill=kill: len(statuses) >= 20 * (kill + 1),
                timeout_s=60,
                what="reads answered between two terminations",
            )
            _terminate_backends(sample_db)
        done = len(statuses)
        wait_until(lambda: len(statuses) >= done + 20, timeout_s=60, what="reads after the last")
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=60)
    assert not failures, failures[:3]
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def test_health_is_a_truthful_503_without_the_database() -> None:
    settings = TwinSettings(database_url="postgresql://postgres@127.0.0.1:1/none", mqtt_url="")
    with TestClient(create_app(settings)) as offline:
        response = offline.get("/health")
    body = problem(response, 503, None)
    assert body["title"] == "Service unavailable" and response.headers["retry-after"] == "5"


def test_json_bodies_still_reach_the_routes_whole(client: TestClient) -> None:
    # the body read for the NUL check is handed on: a normal request still works
    response = client.post("/onemap/within", json={"geometry": AREA, "layers": ["districts"]})
    assert response.status_code == 200, response.text
    assert json.loads(response.content)["layers"]["districts"]["numberMatched"] > 0
