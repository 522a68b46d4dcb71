"""Vector tiles: decoded with mapbox-vector-tile and GDAL, checked against the feature API."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from layers.catalog import LAYERS
from layers.database import get_engine
from layers.settings import TwinSettings
from layers.tiles import tile_etag
from tests.conftest import SAMPLE

LON, LAT = 7.4215, 43.7350  # La Condamine


def tile_of(z: int, lon: float = LON, lat: float = LAT) -> tuple[int, int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, y, x


def tile_bbox(z: int, y: int, x: int, margin: float = 0.0) -> tuple[float, float, float, float]:
    n = 2**z

    def lon(col: float) -> float:
        return col / n * 360 - 180

    def lat(row: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return lon(x - margin), lat(y + 1 + margin), lon(x + 1 + margin), lat(y - margin)


def buffered_envelope(z: int, y: int, x: int) -> str:
    """SQL of the tile's extent and its 64-pixel buffer (of 4096), in lon/lat (EPSG:4326)."""
    west, south, east, north = tile_bbox(z, y, x, margin=64 / 4096)
    return f"ST_MakeEnvelope({west}, {south}, {east}, {north}, 4326)"


def sql_rows(url: str, query: str, **params: Any) -> list[tuple]:
    with get_engine(url).connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query), params)]


def sql_ids(url: str, query: str, **params: Any) -> set[str]:
    return {str(row[0]) for row in sql_rows(url, query, **params)}


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as test_client:
        yield test_client


def decode(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(response.content)


@pytest.mark.parametrize("layer", ["cameras", "resources", "intersections", "signals"])
def test_point_tiles_hold_exactly_the_features_in_the_tile(client: TestClient, layer: str) -> None:
    z, y, x = tile_of(15)
    tile = decode(client.get(f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}"))
    found = {f["properties"]["id"] for f in tile.get(layer, {"features": []})["features"]}

    def within(margin: float) -> set[str]:
        bbox = ",".join(map(str, tile_bbox(z, y, x, margin=margin / 4096)))
        items = client.get(
            f"/collections/{layer}/items", params={"bbox": bbox, "limit": 10000}
        ).json()
        return {f["id"] for f in items["features"]}

    # the tile holds every point within its 64-pixel buffer (give or take a pixel at the edge)
    assert within(63) <= found <= within(65) and found


def test_lines_and_polygons_at_z15_are_all_there(client: TestClient, sample_db: str) -> None:
    z, y, x = tile_of(15)
    envelope = buffered_envelope(z, y, x)
    for layer in ("roads", "buildings", "pipelines"):
        tile = decode(client.get(f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}"))
        found = {f["properties"]["id"] for f in tile[layer]["features"]}
        # from z15 nothing is simplified or left out: every feature that meets the tile or its
        # 64-pixel buffer, as PostGIS's own intersection test says
        expected = sql_ids(
            sample_db,
            f"SELECT id FROM {layer} WHERE valid_to IS NULL AND ST_Intersects(geom, {envelope})",
        )
        assert found == expected and found, layer
        assert all(isinstance(f["id"], int) for f in tile[layer]["features"])  # the version id


def test_one_map_tile_has_a_layer_per_collection(client: TestClient, sample_db: str) -> None:
    z, y, x = tile_of(15)
    tile = decode(
        client.get(
            f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}",
            params={"collections": "roads,buildings,cameras"},
        )
    )
    assert set(tile) == {"roads", "buildings", "cameras"}
    everything = decode(client.get(f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}"))
    envelope = buffered_envelope(z, y, x)
    # every layer with a feature in the tile or its buffer, and no other (empty layers are left out)
    assert set(everything) == {
        layer.id
        for layer in LAYERS.values()
        if sql_ids(
            sample_db,
            f"SELECT id FROM {layer.table} WHERE valid_to IS NULL AND ST_Intersects(geom, {envelope})",
        )
    }


def test_gdal_reads_a_one_map_tile(client: TestClient, tmp_path: Path) -> None:
    z, y, x = tile_of(14)
    content = client.get(f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}").content
    folder = tmp_path / str(z) / str(x)
    folder.mkdir(parents=True)
    (folder / f"{y}.pbf").write_bytes(content)
    out = subprocess.run(
        ["ogrinfo", "-ro", "-q", f"MVT:{folder / f'{y}.pbf'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "roads" in out.stdout and "buildings" in out.stdout


# What a tile below z15 shows, by the rules layers/tiles.py documents (its module docstring).
MAJOR_ROADS = {"motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link"}
MIDDLE_ROADS = {"secondary", "secondary_link", "tertiary", "tertiary_link"}
SHOWN_FROM = {"buildings": 13, "pipelines": 12, "power_lines": 12}
CLUSTERED = {"intersections", "pipe_nodes", "power_nodes"}
# tippecanoe's default --maximum-tile-bytes: the usual budget of one vector tile
MAX_TILE_BYTES = 500_000


@pytest.mark.parametrize("z", [8, 10, 11, 12])
def test_low_zoom_tiles_hold_what_their_zoom_shows(
    client: TestClient, sample_db: str, z: int
) -> None:
    zz, y, x = tile_of(z)
    response = client.get(f"/map/tiles/WebMercatorQuad/{zz}/{y}/{x}")
    assert len(response.content) <= MAX_TILE_BYTES
    tile = decode(response)
    envelope = buffered_envelope(zz, y, x)
    shown_roads = MAJOR_ROADS if z < 11 else MAJOR_ROADS | MIDDLE_ROADS

    def stored(table: str, where: str = "", **params: Any) -> set[str]:
        query = f"SELECT id FROM {table} WHERE valid_to IS NULL AND geom && {envelope} {where}"
        return sql_ids(sample_db, query, **params)

    # each layer has features here (the whole city lies in these tiles), and more than a
    # low zoom shows: what is missing from a tile is missing by the zoom's rules
    present = {layer.id: stored(layer.table) for layer in LAYERS.values()}
    assert all(present.values())
    road_classes = {
        c
        for (c,) in sql_rows(
            sample_db,
            f"SELECT DISTINCT class FROM roads WHERE valid_to IS NULL AND geom && {envelope}",
        )
    }
    assert road_classes - shown_roads, "minor roads a low zoom leaves out"
    assert stored("power_lines", "AND kind = 'service'"), "service lines a low zoom leaves out"
    expected = {
        **present,
        "roads": stored("roads", "AND class = ANY(:classes)", classes=sorted(shown_roads)),
        "power_lines": stored("power_lines", "AND kind <> 'service'"),
    }
    hidden = {layer_id for layer_id, shown_from in SHOWN_FROM.items() if z < shown_from}
    assert set(tile) == set(LAYERS) - hidden

    checked = {"clustered": 0, "points": 0, "simplified": 0}
    for layer_id, layer in tile.items():
        features = layer["features"]
        ids = {f["properties"].get("id") for f in features}
        if layer_id in CLUSTERED:  # one point per cell, counting every point of the layer
            assert sum(f["properties"]["count"] for f in features) == len(expected[layer_id])
            checked["clustered"] += 1
        elif LAYERS[layer_id].storage_type == "Point":  # points are never simplified away
            assert ids == expected[layer_id], layer_id
            checked["points"] += 1
        else:  # simplified to a quarter pixel: a feature smaller than that may vanish
            assert ids <= expected[layer_id] and ids, layer_id
            checked["simplified"] += 1
    points = {i for i, la in LAYERS.items() if la.storage_type == "Point"} - CLUSTERED
    assert checked == {
        "clustered": len(CLUSTERED),
        "points": len(points),
        "simplified": len(set(LAYERS) - hidden - CLUSTERED - points),
    }
    shown_classes = {f["properties"]["class"] for f in tile["roads"]["features"]}
    assert shown_classes == road_classes & shown_roads


def test_cache_etag_and_gzip(client: TestClient) -> None:
    z, y, x = tile_of(14)
    path = f"/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}"
    first = client.get(path)
    second = client.get(path)
    assert second.headers["x-tile-cache"] == "hit" and second.content == first.content
    etag = second.headers["etag"]
    assert client.get(path, headers={"if-none-match": etag}).status_code == 304
    raw = client.get(path, headers={"accept-encoding": "gzip"})
    assert raw.headers.get("content-encoding") == "gzip"


def test_an_edit_changes_the_tile_version(city) -> None:
    import geopandas as gpd
    import shapely

    from layers.ingest import ingest_frame

    z, y, x = tile_of(16)
    path = f"/collections/cameras/tiles/WebMercatorQuad/{z}/{y}/{x}"
    with TestClient(create_app(TwinSettings(database_url=city.url))) as client:
        before = client.get(path)
        frame = gpd.GeoDataFrame(
            {"id": ["tile-test"], "heading": [90.0]}, geometry=[shapely.Point(LON, LAT)], crs=4326
        )
        ingest_frame("cameras", frame, source="tile-test", url=city.url)
        try:
            after = client.get(path)
            assert after.headers["etag"] != before.headers["etag"]
            assert after.headers["x-tile-cache"] == "miss"
            ids = {
                f["properties"]["id"]
                for f in mapbox_vector_tile.decode(after.content)["cameras"]["features"]
            }
            assert "tile-test" in ids
        finally:
            ingest_frame("cameras", frame.iloc[0:0], source="tile-test", url=city.url)


def test_redis_cache_is_shared(sample_db: str) -> None:
    import redis

    # the configured Redis (TWIN_REDIS_URL), or the local one set-up starts; keys carry this
    # run's database, so another run sharing the Redis never reads or removes them
    redis_url = os.environ.get("TWIN_REDIS_URL", "redis://127.0.0.1:6379/15")
    settings = TwinSettings(database_url=sample_db, redis_url=redis_url)
    store = redis.Redis.from_url(redis_url)
    z, y, x = tile_of(15)
    key = f"twin:tile:{tile_etag(['roads'], z, x, y, url=sample_db)}"
    store.delete(key)
    path = f"/collections/roads/tiles/WebMercatorQuad/{z}/{y}/{x}"
    try:
        with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
            assert one.get(path).headers["x-tile-cache"] == "miss"
            shared = two.get(path)
            assert shared.headers["x-tile-cache"] == "hit"
            assert shared.headers["etag"].strip('"') in key
        assert store.exists(key)
    finally:
        store.delete(key)


def test_tilejson(client: TestClient) -> None:
    doc = client.get("/collections/roads/tiles/WebMercatorQuad/tilejson.json").json()
    assert doc["tilejson"] == "3.0.0" and doc["tiles"][0].endswith(
        "/collections/roads/tiles/WebMercatorQuad/{z}/{y}/{x}"
    )
    assert doc["vector_layers"][0]["id"] == "roads" and "class" in doc["vector_layers"][0]["fields"]
    combined = client.get(
        "/map/tiles/WebMercatorQuad/tilejson.json", params={"collections": "roads,cameras"}
    ).json()
    assert [v["id"] for v in combined["vector_layers"]] == ["roads", "cameras"]
    # the bounds of both layers: the extremes of the coordinates the sample city ships
    lons, lats = [], []
    for layer in ("roads", "cameras"):
        for feature in json.loads((SAMPLE / f"{layer}.geojson").read_text())["features"]:
            points = np.asarray(feature["geometry"]["coordinates"], dtype=float).reshape(-1, 2)
            lons += list(points[:, 0])
            lats += list(points[:, 1])
    assert combined["bounds"] == pytest.approx(
        [min(lons), min(lats), max(lons), max(lats)], abs=1e-7
    )


@pytest.mark.parametrize(
    ("path", "status", "parameter"),
    [
        ("/collections/roads/tiles/WebMercatorQuad/30/0/0", 400, "tileMatrix"),
        ("/collections/roads/tiles/WebMercatorQuad/2/0/9", 400, "tileCol"),
        ("/collections/roads/tiles/WebMercatorQuad/2/-1/0", 400, "tileRow"),
        ("/collections/streets/tiles/WebMercatorQuad/2/0/0", 404, "collectionId"),
        ("/collections/streets/tiles", 404, "collectionId"),
        ("/collections/roads/tiles/WorldCRS84Quad/2/0/0", 404, "tileMatrixSetId"),
        ("/map/tiles/WebMercatorQuad/2/0/0?collections=roads,foo", 400, "collections"),
    ],
)
def test_bad_tile_requests(client: TestClient, path: str, status: int, parameter: str) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["parameter"] == parameter


def test_a_collections_tilesets_link_to_its_real_tiles(client: TestClient, sample_db: str) -> None:
    for layer in LAYERS.values():
        (tileset,) = client.get(f"/collections/{layer.id}/tiles").json()["tilesets"]
        assert tileset["dataType"] == "vector"
        assert tileset["tileMatrixSetURI"].endswith("/WebMercatorQuad")
        links = {link["rel"]: link for link in tileset["links"]}
        metadata = client.get(links["self"]["href"])
        assert metadata.status_code == 200, links["self"]["href"]
        assert [la["id"] for la in metadata.json()["layers"]] == [layer.id]
        # a stored feature of the collection, and the z15 tile (every feature shown) under a
        # point of it: the tile the link names holds that feature
        feature_id, lon, lat = sql_rows(
            sample_db,
            f"SELECT id, ST_X(p), ST_Y(p) FROM (SELECT id, ST_PointOnSurface(geom) AS p "
            f"FROM {layer.table} WHERE valid_to IS NULL ORDER BY id LIMIT 1) AS f",
        )[0]
        z, y, x = tile_of(15, lon, lat)
        assert links["item"]["templated"] is True
        href = links["item"]["href"].format(tileMatrix=z, tileRow=y, tileCol=x)
        tile = decode(client.get(href))
        assert feature_id in {f["properties"]["id"] for f in tile[layer.id]["features"]}, href


def test_tileset_metadata(client: TestClient) -> None:
    tileset = client.get("/collections/buildings/tiles/WebMercatorQuad").json()
    assert tileset["dataType"] == "vector" and tileset["layers"][0]["id"] == "buildings"
    template = next(link["href"] for link in tileset["links"] if link["rel"] == "item")
    z, y, x = tile_of(15)
    path = template.split("testserver")[1].format(tileMatrix=z, tileRow=y, tileCol=x)
    assert "buildings" in decode(client.get(path))
    combined = client.get(
        "/map/tiles/WebMercatorQuad", params={"collections": "roads,cameras"}
    ).json()
    assert [layer["id"] for layer in combined["layers"]] == ["roads", "cameras"]


def test_collections_repeated_or_empty_and_weak_etags(client: TestClient) -> None:
    z, y, x = tile_of(15)
    tile = client.get(
        f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}", params={"collections": "roads,roads"}
    )
    assert list(mapbox_vector_tile.decode(tile.content)) == ["roads"]
    assert (
        client.get(
            f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}", params={"collections": ","}
        ).status_code
        == 400
    )
    etag = tile.headers["etag"]
    weak = client.get(
        f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}",
        params={"collections": "roads"},
        headers={"if-none-match": f'"other", W/{etag}'},
    )
    assert weak.status_code == 304
