"""Live congestion as a read-only layer: an OGC API Features collection and vector tiles.

Speeds come in through the twin's feed (:class:`twin.live.feed.Feed` with its processors) and
the layer is read back over HTTP, features and tiles checked against the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import mapbox_vector_tile
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from layers.database import get_engine
from layers.observations import Reading
from layers.settings import TwinSettings, get_settings
from tests.conditions import wait_until
from twin.live.feed import Feed
from twin.live.processors import default_processors
from twin.live.registry import register
from twin.live.traffic import RoadSpeeds, expire, expire_speeds

LAYER = "live_congestion"
MVT = "application/vnd.mapbox-vector-tile"


@pytest.fixture
def client(live_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=live_db))) as test_client:
        yield test_client
    with get_engine(live_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM live_speeds"))


def a_road(url: str) -> tuple[str, float, float, float, list[list[float]]]:
    """A primary road: id, free-flow speed (the routing view's), a point on it, its line."""
    with get_engine(url).connect() as conn:
        road, free, lon, lat, line = conn.execute(
            sa.text(
                "SELECT r.id, e.free_flow_kmh, ST_X(p), ST_Y(p), ST_AsGeoJSON(r.geom, 7) "
                "FROM roads r JOIN routing_edges_all e ON e.road_id = r.id AND e.profile = 'car' "
                "CROSS JOIN LATERAL ST_LineInterpolatePoint(r.geom, 0.5) AS p "
                "WHERE r.valid_to IS NULL AND r.class = 'primary' ORDER BY r.id LIMIT 1"
            )
        ).one()
    return str(road), float(free), float(lon), float(lat), json.loads(line)["coordinates"]


def tile_of(z: int, lon: float, lat: float) -> tuple[int, int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, y, x


def detector(url: str, road: str) -> tuple[int, int]:
    common: dict[str, Any] = {"thing": f"loop {road}", "layer": "roads", "feature_id": road}
    return (
        register(f"loop {road}/speed", observed_property="speed", url=url, **common),
        register(f"loop {road}/flow", observed_property="flow", url=url, **common),
    )


def items(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(f"/collections/{LAYER}/items", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    body: dict[str, Any] = response.json()
    return body


def test_a_congested_road_is_a_feature_and_a_tile_whose_etag_follows_the_speeds(
    client: TestClient, live_db: str
) -> None:
    road, free, lon, lat, line = a_road(live_db)
    listed = {c["id"]: c for c in client.get("/collections").json()["collections"]}
    collection = listed[LAYER]
    assert collection == client.get(f"/collections/{LAYER}").json()
    # where its features can be: the roads' extent, also while there are none
    assert collection["extent"]["spatial"]["bbox"] == listed["roads"]["extent"]["spatial"]["bbox"]
    assert any(link["href"].endswith(f"/collections/{LAYER}/tiles") for link in collection["links"])
    assert items(client)["numberMatched"] == 0
    z, y, x = tile_of(15, lon, lat)
    tile_url = f"/collections/{LAYER}/tiles/WebMercatorQuad/{z}/{y}/{x}"
    empty = client.get(tile_url)
    assert empty.status_code == 200 and mapbox_vector_tile.decode(empty.content) == {}
    assert empty.headers["cache-control"] == "no-cache"  # revalidated: it changes any second

    speed, flow = detector(live_db, road)
    feed = Feed(url=live_db, processors=default_processors())
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    feed.ingest([Reading(speed, at, 10.0), Reading(flow, at, 300.0)])

    body = items(client)
    [feature] = body["features"]
    assert body["numberMatched"] == 1 and feature["id"] == road
    props = feature["properties"]
    assert props["speed_kmh"] == 10.0 and props["free_flow_kmh"] == pytest.approx(free)
    assert props["congestion"] == pytest.approx(10.0 / free)
    assert datetime.fromisoformat(props["observed_at"]) == at
    assert datetime.fromisoformat(props["valid_from"]) == at and props["valid_to"] is None
    assert feature["geometry"] == {"type": "LineString", "coordinates": line}
    one = client.get(f"/collections/{LAYER}/items/{road}").json()
    assert one["id"] == road and one["properties"]["congestion"] == props["congestion"]
    # CQL2 filters work on the live attributes as on any layer's
    assert items(client, filter="congestion < 0.5")["numberMatched"] == 1
    assert items(client, filter="congestion > 2 OR class = 'residential'")["numberMatched"] == 0
    queryables = client.get(f"/collections/{LAYER}/queryables").json()["properties"]
    assert queryables["congestion"]["type"] == "number"

    first = client.get(tile_url)
    decoded = mapbox_vector_tile.decode(first.content)
    [drawn] = decoded[LAYER]["features"]
    assert drawn["properties"]["id"] == road
    assert drawn["properties"]["congestion"] == pytest.approx(10.0 / free)
    etag = first.headers["etag"]
    assert etag != empty.headers["etag"]
    assert client.get(tile_url, headers={"If-None-Match": etag}).status_code == 304
    # the one-map draws it beside the roads when asked
    both = client.get(
        f"/tiles/WebMercatorQuad/{z}/{y}/{x}", params={"collections": f"roads,{LAYER}"}
    )
    assert {"roads", LAYER} <= set(mapbox_vector_tile.decode(both.content))

    # a newer speed: new ETag, new content
    later = at + timedelta(seconds=10)
    feed.ingest([Reading(speed, later, 40.0), Reading(flow, later, 900.0)])
    second = client.get(tile_url, headers={"If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag
    [drawn] = mapbox_vector_tile.decode(second.content)[LAYER]["features"]
    assert drawn["properties"]["speed_kmh"] == 40.0

    # expired: gone from the features and the tile, and the ETag moved again
    stale_s = get_settings().live_stale_s
    assert expire_speeds(live_db, now=later + timedelta(seconds=stale_s)) == 1
    assert items(client)["numberMatched"] == 0
    third = client.get(tile_url, headers={"If-None-Match": second.headers["etag"]})
    assert third.status_code == 200 and mapbox_vector_tile.decode(third.content) == {}
    assert third.headers["etag"] not in (etag, second.headers["etag"])


def test_a_stale_speed_vanishes_when_it_expires(client: TestClient, live_db: str) -> None:
    road, *_ = a_road(live_db)
    speed, flow = detector(live_db, road)
    feed = Feed(url=live_db, processors=[RoadSpeeds(stale_s=2)])
    at = datetime.now(UTC)
    feed.ingest([Reading(speed, at, 15.0), Reading(flow, at, 300.0)])
    assert [f["id"] for f in items(client)["features"]] == [road]
    wait_until(
        lambda: items(client)["numberMatched"] == 0,
        timeout_s=10,
        what="the live speed leaving live_congestion once it is 2 s old",
    )
    # expiring it deletes it, moves the layer's counter (tile ETags), and says so once
    [event] = expire(url=live_db)
    assert event["road"] == road and event["expired"] is True
    assert expire(url=live_db) == []


def test_the_live_tileset_is_described_and_the_layer_is_read_only(
    client: TestClient, live_db: str
) -> None:
    metadata = client.get(f"/collections/{LAYER}/tiles/WebMercatorQuad").json()
    [layer] = metadata["layers"]
    assert layer["id"] == LAYER and layer["geometryDimension"] == 1
    schema = layer["propertiesSchema"]["properties"]
    assert {"id", "name", "class", "speed_kmh", "free_flow_kmh", "congestion"} == set(schema)
    assert metadata["tileMatrixSetLimits"]  # the roads' extent: tiles answer before any speed
    assert not [link for link in metadata["links"] if link["rel"] == "stylesheet"]
    tilejson = client.get(f"/collections/{LAYER}/tiles/WebMercatorQuad/tilejson.json").json()
    assert tilejson["vector_layers"][0]["fields"]["congestion"] == "Number"
    # it is not a stored layer: not listed as one, and nothing can be imported into it
    assert LAYER not in [layer["id"] for layer in client.get("/layers").json()]
    assert client.get(f"/layers/{LAYER}").status_code == 404
    problem = client.get("/collections/live_nothing/items")
    assert problem.status_code == 404 and "live_congestion" in problem.json()["detail"]
