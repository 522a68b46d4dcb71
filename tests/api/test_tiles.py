"""Vector tiles and OGC API - Tiles: decoded with mapbox-vector-tile and GDAL, checked against
the feature API, morecantile's tile matrix set and tile arithmetic of their own."""

from __future__ import annotations

import json
import math
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from layers.catalog import LAYERS
from layers.database import get_engine
from layers.settings import TwinSettings
from layers.tiles import render_tile, tile_etag
from tests.conftest import SAMPLE

LON, LAT = 7.4215, 43.7350  # La Condamine
TILES = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf"
TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
MVT = "application/vnd.mapbox-vector-tile"


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


@pytest.mark.conformance(f"{TILES}/mvt")
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

    z, y, x = tile_of(15)
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


@pytest.mark.conformance(f"{TILES}/core")
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
        # outside the tile matrix set: no such tile (OGC 20-057 /req/tileset/tc-success D)
        ("/collections/roads/tiles/WebMercatorQuad/30/0/0", 404, "tileMatrix"),
        ("/collections/roads/tiles/WebMercatorQuad/2/0/9", 404, "tileCol"),
        ("/collections/roads/tiles/WebMercatorQuad/2/-1/0", 404, "tileRow"),
        ("/tiles/WebMercatorQuad/2/4/0", 404, "tileRow"),
        ("/collections/roads/tiles/WebMercatorQuad/x/0/0", 400, "z"),
        ("/tileMatrixSets/WorldCRS84Quad", 404, "tileMatrixSetId"),
        ("/collections/streets/tiles", 404, "collectionId"),
        ("/collections/streets/tiles/WebMercatorQuad/2/0/0", 404, "collectionId"),
        ("/collections/streets/tiles", 404, "collectionId"),
        ("/collections/roads/tiles/WorldCRS84Quad/2/0/0", 404, "tileMatrixSetId"),
        ("/map/tiles/WebMercatorQuad/2/0/0?collections=roads,foo", 400, "collections"),
    ],
)
@pytest.mark.conformance(f"{TILES}/core")
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


@pytest.mark.conformance(f"{TILES}/tileset")
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


# --- OGC API - Tiles: what a client finds by following links ------------------------------


def link(doc: dict, rel: str, media_type: str | None = None) -> dict:
    found = [
        item
        for item in doc["links"]
        if item["rel"] == rel and (media_type is None or item.get("type") == media_type)
    ]
    assert found, f"no {rel} link ({media_type}) in {doc['links']}"
    return found[0]


def local(href: str) -> str:
    return href.split("testserver", 1)[1]


def decode_down(content: bytes) -> dict:
    """Decode a tile keeping its own coordinates (y down, 0 to 4096)."""
    return mapbox_vector_tile.decode(content, default_options={"y_coord_down": True})


@pytest.mark.conformance(f"{TILES}/tilesets-list")
@pytest.mark.conformance(f"{TILES}/dataset-tilesets")
def test_dataset_tilesets_lead_to_the_one_map_tiles(client: TestClient) -> None:
    listing = client.get("/tiles")
    assert listing.status_code == 200
    [tileset] = listing.json()["tilesets"]
    assert tileset["dataType"] == "vector"
    assert tileset["crs"] == "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert tileset["tileMatrixSetURI"] == morecantile.tms.get("WebMercatorQuad").uri
    assert local(link(tileset, TILING_SCHEME)["href"]) == "/tileMatrixSets/WebMercatorQuad"
    metadata = client.get(local(link(tileset, "self", "application/json")["href"])).json()
    template = link(metadata, "item", MVT)
    assert template["templated"] is True
    z, y, x = tile_of(15)
    found = client.get(local(template["href"]).format(tileMatrix=z, tileRow=y, tileCol=x))
    assert found.content == client.get(f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}").content
    assert {"roads", "buildings", "cameras"} <= set(decode(found))
    assert [layer["id"] for layer in metadata["layers"]] == list(LAYERS)


@pytest.mark.conformance(f"{TILES}/geodata-tilesets")
@pytest.mark.conformance(f"{TILES}/tileset")
@pytest.mark.parametrize("layer", ["roads", "buildings", "cameras", "resources", "signals"])
def test_a_collections_tileset_describes_its_tiles(client: TestClient, layer: str) -> None:
    [tileset] = client.get(f"/collections/{layer}/tiles").json()["tilesets"]
    metadata = client.get(local(link(tileset, "self", "application/json")["href"])).json()
    assert metadata["dataType"] == "vector"
    assert metadata["tileMatrixSetURI"] == tileset["tileMatrixSetURI"]
    assert local(link(metadata, TILING_SCHEME, "application/json")["href"]) == (
        "/tileMatrixSets/WebMercatorQuad"
    )
    template = link(metadata, "item", MVT)["href"]
    assert all(f"{{{name}}}" in template for name in ("tileMatrix", "tileRow", "tileCol"))
    [described] = metadata["layers"]
    storage = client.get(f"/layers/{layer}").json()["geometry"]
    dimension = {"Point": 0, "LineString": 1, "Polygon": 2}[storage.removeprefix("Multi")]
    assert described["geometryDimension"] == dimension
    # the property schema names what the tiles carry, with JSON types matching the values
    z, y, x = tile_of(15)
    tile = decode(client.get(local(template).format(tileMatrix=z, tileRow=y, tileCol=x)))
    schema = described["propertiesSchema"]["properties"]
    python = {"string": str, "integer": int, "number": (int, float), "boolean": (bool, int)}
    seen: set[str] = set()
    for feature in tile[layer]["features"]:
        for name, value in feature["properties"].items():
            assert name in schema, f"{name} is in the tiles but not in the schema"
            assert isinstance(value, python[schema[name]["type"]]), (name, value)
            seen.add(name)
    assert seen <= set(schema) and "id" in seen
    # the style drawing these tiles is linked
    assert local(link(metadata, "stylesheet")["href"]) == f"/styles/{layer}?f=mapbox"


@pytest.mark.conformance(f"{TILES}/tileset")
def test_tile_matrix_set_is_morecantiles_and_gdal_36_reads_it(
    client: TestClient, tmp_path: Path
) -> None:
    listing = client.get("/tileMatrixSets").json()
    [entry] = listing["tileMatrixSets"]
    assert entry["id"] == "WebMercatorQuad"
    served = client.get(local(link(entry, "self")["href"]))
    assert served.status_code == 200
    doc = served.json()
    # the TMS 2.0 members are morecantile's WebMercatorQuad ...
    tms2 = {
        k: v
        for k, v in doc.items()
        if k not in ("type", "identifier", "supportedCRS", "tileMatrix", "links")
    }
    assert morecantile.TileMatrixSet.model_validate(tms2) == morecantile.tms.get("WebMercatorQuad")
    # ... and GDAL 3.6, which reads only TMS 1.0 names, tiles a raster on it as on its own
    # built-in GoogleMapsCompatible
    (tmp_path / "tms.json").write_text(served.text)
    source = tmp_path / "source.tif"
    run(
        [
            "gdal_create",
            "-of",
            "GTiff",
            "-outsize",
            "64",
            "64",
            "-bands",
            "1",
            "-a_srs",
            "EPSG:3857",
            "-a_ullr",
            "824000",
            "5428000",
            "829000",
            "5422000",
            str(source),
        ]
    )
    infos = []
    for scheme in (str(tmp_path / "tms.json"), "GoogleMapsCompatible"):
        out = tmp_path / f"cog-{len(infos)}.tif"
        run(
            [
                "gdal_translate",
                "-q",
                "-of",
                "COG",
                "-co",
                f"TILING_SCHEME={scheme}",
                str(source),
                str(out),
            ]
        )
        infos.append(run(["gdalinfo", str(out)]).splitlines()[2:8])
    assert infos[0] == infos[1]


def run(command: list[str]) -> str:
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{command[0]}: {out.stderr}"
    return out.stdout


@pytest.mark.conformance(f"{TILES}/tileset")
@pytest.mark.parametrize("layer", ["cameras", "roads", "buildings"])
def test_tile_matrix_set_limits_cover_the_data(client: TestClient, layer: str) -> None:
    metadata = client.get(f"/collections/{layer}/tiles/WebMercatorQuad").json()
    tilejson = client.get(f"/collections/{layer}/tiles/WebMercatorQuad/tilejson.json").json()
    limits = metadata["tileMatrixSetLimits"]
    assert [int(limit["tileMatrix"]) for limit in limits] == list(
        range(tilejson["minzoom"], tilejson["maxzoom"] + 1)
    )
    west, south, east, north = client.get(f"/collections/{layer}").json()["extent"]["spatial"][
        "bbox"
    ][0]
    for limit in limits:
        z = int(limit["tileMatrix"])
        _, top, left = tile_of(z, west, north)
        _, bottom, right = tile_of(z, east, south)
        assert (limit["minTileRow"], limit["maxTileRow"]) == (top, bottom)
        assert (limit["minTileCol"], limit["maxTileCol"]) == (left, right)
    # a tile outside the limits is no tile of the tileset: 404 (OGC 20-057 /req/core/tc-error),
    # at every zoom: beside the data, below the first zoom and past the last (clients overzoom)
    deepest = limits[-1]
    z = int(deepest["tileMatrix"])
    path = f"/collections/{layer}/tiles/WebMercatorQuad"
    for address, parameter in (
        ((z, deepest["minTileRow"] - 1, deepest["minTileCol"]), "tileRow"),
        ((z, deepest["maxTileRow"] + 1, deepest["maxTileCol"]), "tileRow"),
        ((z, deepest["minTileRow"], deepest["maxTileCol"] + 1), "tileCol"),
        ((z, deepest["minTileRow"], deepest["minTileCol"] - 1), "tileCol"),
        ((z, 0, 0), "tileRow"),
        ((z + 1, 2 * deepest["minTileRow"], 2 * deepest["minTileCol"]), "tileMatrix"),
        ((22, *tile_of(22, west, north)[1:]), "tileMatrix"),
    ):
        problem(client.get(f"{path}/{'/'.join(map(str, address))}"), 404, parameter)
    first = limits[0]
    if int(first["tileMatrix"]) > 0:
        _, y, x = tile_of(int(first["tileMatrix"]) - 1, west, north)
        problem(client.get(f"{path}/{int(first['tileMatrix']) - 1}/{y}/{x}"), 404, "tileMatrix")
    # and every tile inside them is served
    for limit in limits:
        corner = f"{limit['tileMatrix']}/{limit['maxTileRow']}/{limit['maxTileCol']}"
        assert client.get(f"{path}/{corner}").status_code == 200, corner


def problem(response, status: int, parameter: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["parameter"] == parameter, response.json()


@pytest.mark.parametrize("layer", ["intersections", "cameras", "roads", "buildings"])
def test_tilejson_maxzoom_is_where_the_tiles_stop_changing(
    client: TestClient, sample_db: str, layer: str
) -> None:
    tilejson = client.get(f"/collections/{layer}/tiles/WebMercatorQuad/tilejson.json").json()
    maxzoom = tilejson["maxzoom"]
    assert maxzoom == 15 and tilejson["minzoom"] == {"buildings": 13}.get(layer, 0)
    assert tilejson["vector_layers"][0]["maxzoom"] == maxzoom
    path = f"/collections/{layer}/tiles/WebMercatorQuad"
    z, y, x = tile_of(maxzoom)
    parent = decode_down(client.get(f"{path}/{z}/{y}/{x}").content)[layer]["features"]
    assert parent, f"the z{z} tile under La Condamine holds no {layer}"
    by_id = {f["properties"]["id"]: f for f in parent}
    children: set[str] = set()
    for dy in (0, 1):
        for dx in (0, 1):
            # past maxzoom the API serves no tile (clients overzoom): cut by the same code
            content = render_tile([layer], z + 1, 2 * x + dx, 2 * y + dy, url=sample_db)
            for feature in decode_down(content).get(layer, {"features": []})["features"]:
                children.add(feature["properties"]["id"])
                # a deeper tile holds nothing the maxzoom tile lacks ...
                assert feature["properties"]["id"] in by_id
                # ... and points only gain precision: overzoomed, the maxzoom tile is the same
                if feature["geometry"]["type"] == "Point":
                    cx, cy = feature["geometry"]["coordinates"]
                    px, py = by_id[feature["properties"]["id"]]["geometry"]["coordinates"]
                    assert abs((cx + 4096 * dx) / 2 - px) <= 1
                    assert abs((cy + 4096 * dy) / 2 - py) <= 1
    # ... and every feature of the maxzoom tile proper (not its buffer) is in one of them
    inside = {
        f["properties"]["id"]
        for f in parent
        if f["geometry"]["type"] != "Point"
        or all(0 <= c < 4096 for c in f["geometry"]["coordinates"])
    }
    assert len(inside & children) >= (
        len(inside) if layer in ("intersections", "cameras") else 0.9 * len(inside)
    )
    # one zoom out the tiles do change (clustered, filtered or simplified): overzooming from
    # there would lose data
    if layer in ("intersections", "roads", "buildings"):
        z, y, x = tile_of(maxzoom - 1)
        coarse = decode_down(client.get(f"{path}/{z}/{y}/{x}").content)
        features = coarse.get(layer, {"features": []})["features"]
        if layer == "intersections":
            assert all("count" in f["properties"] for f in features)
        else:
            finer = sum(
                len(
                    decode_down(
                        client.get(f"{path}/{z + 1}/{2 * y + dy}/{2 * x + dx}").content
                    ).get(layer, {"features": []})["features"]
                )
                for dy in (0, 1)
                for dx in (0, 1)
            )
            assert finer > 0 and features  # present at both; geometry simplified below 15


@pytest.mark.conformance(f"{TILES}/collections-selection")
def test_collections_select_and_order_the_one_map_layers(client: TestClient) -> None:
    z, y, x = tile_of(15)
    tile = decode(client.get(f"/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=cameras,roads"))
    assert list(tile) == ["cameras", "roads"]  # leftmost first
    metadata = client.get("/tiles/WebMercatorQuad?collections=cameras,roads").json()
    assert [layer["id"] for layer in metadata["layers"]] == ["cameras", "roads"]
    template = local(link(metadata, "item", MVT)["href"])
    assert template.endswith("?collections=cameras,roads")
    again = client.get(template.format(tileMatrix=z, tileRow=y, tileCol=x))
    assert (
        again.content
        == client.get(f"/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=cameras,roads").content
    )


@pytest.mark.conformance(f"{TILES}/mvt")
def test_tiles_are_mapbox_vector_tiles_gdal_reads(client: TestClient, tmp_path: Path) -> None:
    z, y, x = tile_of(15)
    response = client.get(f"/collections/cameras/tiles/WebMercatorQuad/{z}/{y}/{x}")
    assert response.headers["content-type"] == MVT
    path = tmp_path / str(z) / str(x) / f"{y}.pbf"
    path.parent.mkdir(parents=True)
    path.write_bytes(response.content)
    out = run(["ogrinfo", "-ro", "-al", "-so", f"MVT:{path}"])
    count = len(decode(response)["cameras"]["features"])
    assert f"Feature Count: {count}" in out and count > 0


@pytest.mark.conformance(f"{TILES}/oas30")
def test_the_openapi_document_describes_the_tiles(client: TestClient) -> None:
    paths = client.get("/api").json()["paths"]
    for path in (
        "/tileMatrixSets",
        "/tileMatrixSets/{tileMatrixSetId}",
        "/tiles",
        "/tiles/{tileMatrixSetId}",
        "/tiles/{tileMatrixSetId}/{z}/{y}/{x}",
        "/collections/{collectionId}/tiles",
        "/collections/{collectionId}/tiles/{tileMatrixSetId}",
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{y}/{x}",
    ):
        assert "get" in paths[path], path
    operations = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operations) == len(set(operations))


def test_gdal_reads_a_tile_found_by_following_links(sample_server: str, tmp_path: Path) -> None:
    """GDAL's MVT driver reads the tile a client finds from /tiles, link by link."""

    def get(url: str) -> dict:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    tileset = get(f"{sample_server}/tiles")["tilesets"][0]
    metadata = get(link(tileset, "self", "application/json")["href"])
    limit = next(item for item in metadata["tileMatrixSetLimits"] if item["tileMatrix"] == "14")
    z, y, x = tile_of(14)
    assert limit["minTileRow"] <= y <= limit["maxTileRow"]
    assert limit["minTileCol"] <= x <= limit["maxTileCol"]
    url = link(metadata, "item", MVT)["href"].format(tileMatrix=z, tileRow=y, tileCol=x)
    # GDAL's HTTP driver downloads it and hands it to the MVT driver, which knows it by content
    out = run(["ogrinfo", "-ro", "-so", "-al", url])
    assert "using driver `MVT'" in out
    assert "Layer name: roads" in out and "Layer name: buildings" in out


@pytest.mark.conformance(f"{TILES}/dataset-tilesets")
@pytest.mark.conformance(f"{TILES}/geodata-tilesets")
def test_landing_page_and_collections_link_their_tilesets(client: TestClient) -> None:
    landing = client.get("/?f=json").json()
    vector = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
    assert local(link(landing, vector, "application/json")["href"]) == "/tiles"
    collection = client.get("/collections/roads").json()
    assert local(link(collection, vector, "application/json")["href"]) == "/collections/roads/tiles"
