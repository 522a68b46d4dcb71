"""The API over a primary and a streaming replica (TWIN_DATABASE_READ_URLS).

A real uvicorn serves a database of the test server with the module's replica as its read URL.
Whether the API read from the replica is told by pausing the replica's WAL replay: a feature
written on the primary by another process is then invisible through the API until replay
resumes. Writes through the API land on the primary, and its reads go on when the replica stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from layers import editing
from layers.database import get_engine
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT
from tests.replica_cluster import Replica, streaming_replica

HERE = {"type": "Point", "coordinates": [7.4246, 43.7384]}  # Monaco, inside the city extent
GEOJSON = "application/geo+json"


@pytest.fixture(scope="module")
def replica(db_url: str) -> Iterator[Replica]:
    """A replica of the test server, for this module."""
    with streaming_replica(db_url) as running:
        yield running


@pytest.fixture(scope="module")
def api(db_url: str, replica: Replica) -> Iterator[str]:
    """The API over the write database, reading from the replica."""
    env = {"TWIN_DATABASE_READ_URLS": replica.read_url, "TWIN_MQTT_URL": ""}
    with api_server(db_url, root=ROOT, env=env, timeout_s=180) as address:
        yield address


def incident(feature_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": feature_id,
        "geometry": HERE,
        "properties": {"kind": "fire", "severity": 2, "status": "open", **properties},
    }


def item(api: str, feature_id: str) -> httpx.Response:
    return httpx.get(f"{api}/collections/incidents/items/{feature_id}", timeout=30)


def current_on(url: str, feature_id: str) -> int:
    with get_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM incidents WHERE id = :id AND valid_to IS NULL"),
                {"id": feature_id},
            ).scalar_one()
        )


def test_the_api_reads_from_the_replica_and_sees_a_write_within_its_lag(
    api: str, db_url: str, replica: Replica, record_property: Callable[[str, object], None]
) -> None:
    assert item(api, "warm-up").status_code == 404  # the API is serving
    replica.caught_up(db_url)  # with what the API wrote as it started (its reads wait for it)
    with replica.paused(db_url):
        editing.create("incidents", incident("made-elsewhere"), url=db_url)  # another process
        assert current_on(db_url, "made-elsewhere") == 1
        # the primary has it; the API answers from the replica, which has not replayed it
        assert item(api, "made-elsewhere").status_code == 404
        resumed = time.perf_counter()
    seen = wait_until(
        lambda: item(api, "made-elsewhere").status_code == 200,
        timeout_s=180,
        what="the API serving the primary's write once the replica replays",
        every_s=0.005,
    )
    assert seen
    lag_s = time.perf_counter() - resumed
    record_property("visible_through_the_api_s", round(lag_s, 4))  # bench/replica.py: p50/p95


def test_writes_through_the_api_go_to_the_primary_and_read_back_at_once(
    api: str, db_url: str, replica: Replica
) -> None:
    with replica.paused(db_url):
        posted = httpx.post(
            f"{api}/collections/incidents/items",
            json=incident("made-through-the-api", note="smoke"),
            headers={"content-type": GEOJSON},
            timeout=30,
        )
        assert posted.status_code == 201, posted.text
        assert current_on(db_url, "made-through-the-api") == 1  # on the primary
        assert current_on(replica.url(db_url), "made-through-the-api") == 0  # not replayed
        # the API wrote it: its own reads go to the primary until the replica has it
        read = item(api, "made-through-the-api")
        assert read.status_code == 200 and read.headers["ETag"] == posted.headers["ETag"]
        changed = httpx.put(
            f"{api}/collections/incidents/items/made-through-the-api",
            json=incident("made-through-the-api", note="fire"),
            headers={"content-type": GEOJSON, "If-Match": posted.headers["ETag"]},
            timeout=30,
        )
        assert changed.status_code in (200, 204), changed.text
        assert item(api, "made-through-the-api").json()["properties"]["note"] == "fire"
    replica.caught_up(db_url)
    assert current_on(replica.url(db_url), "made-through-the-api") == 1


def test_the_api_answers_reads_with_the_replica_stopped(
    api: str, db_url: str, replica: Replica
) -> None:
    editing.create("incidents", incident("while-down"), url=db_url)
    replica.run("stop")
    try:
        read = item(api, "while-down")
        assert read.status_code == 200, read.text  # from the primary
        listed = httpx.get(f"{api}/collections/incidents/items", timeout=30)
        assert listed.status_code == 200 and listed.json()["features"]
        assert httpx.get(f"{api}/layers", timeout=30).status_code == 200
        tile = httpx.get(
            f"{api}/collections/incidents/tiles/WebMercatorQuad/14/5974/8529", timeout=30
        )
        assert tile.status_code in (200, 204), tile.text
        assert httpx.get(f"{api}/health", timeout=30).status_code == 200
        for _ in range(10):  # again and again, the replica left alone (tests/layers shows how)
            assert item(api, "while-down").status_code == 200
    finally:
        replica.run("start")
