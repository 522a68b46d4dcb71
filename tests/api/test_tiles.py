"""Vector tiles: decoded with mapbox-vector-tile and GDAL, checked against the feature API."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from layers.settings import TwinSettings

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


def test_lines_and_polygons_at_z15_are_all_there(client: TestClient) -> None:
    z, y, x = tile_of(15)
    bbox = ",".join(map(str, tile_bbox(z, y, x, margin=64 / 4096)))
    for layer in ("roads", "buildings", "pipelines"):
        tile = decode(client.get(f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}"))
        found = {f["properties"]["id"] for f in tile[layer]["features"]}
        items = {
            f["id"]
            for f in client.get(
                f"/collections/{layer}/items", params={"bbox": bbox, "limit": 10000}
            ).json()["features"]
        }
        assert found <= items  # bbox matches can miss the clipped tile by a corner
        assert len(found) >= 0.95 * len(items)
        assert all(isinstance(f["id"], int) for f in tile[layer]["features"])  # the version id


def test_one_map_tile_has_a_layer_per_collection(client: TestClient) -> None:
    z, y, x = tile_of(15)
    tile = decode(
        client.get(
            f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}",
            params={"collections": "roads,buildings,cameras"},
        )
    )
    assert set(tile) == {"roads", "buildings", "cameras"}
    everything = decode(client.get(f"/map/tiles/WebMercatorQuad/{z}/{y}/{x}"))
    assert {"roads", "buildings", "pipelines", "power_lines", "resources"} <= set(everything)


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


@pytest.mark.parametrize("z", [8, 10, 11, 12])
def test_low_zoom_tiles_stay_small(client: TestClient, z: int) -> None:
    zz, y, x = tile_of(z)
    response = client.get(f"/map/tiles/WebMercatorQuad/{zz}/{y}/{x}")
    assert len(response.content) <= 500 * 1024
    tile = mapbox_vector_tile.decode(response.content)
    if "roads" in tile:
        classes = {f["properties"]["class"] for f in tile["roads"]["features"]}
        assert not classes & {"residential", "service", "living_street"}
    assert "buildings" not in tile
    if "intersections" in tile and z < 15:
        assert all("count" in f["properties"] for f in tile["intersections"]["features"])


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

    settings = TwinSettings(database_url=sample_db, redis_url="redis://127.0.0.1:6379/15")
    store = redis.Redis.from_url(settings.redis_url)
    store.flushdb()
    z, y, x = tile_of(15)
    path = f"/collections/roads/tiles/WebMercatorQuad/{z}/{y}/{x}"
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        assert one.get(path).headers["x-tile-cache"] == "miss"
        shared = two.get(path)
        assert shared.headers["x-tile-cache"] == "hit"
    assert any(True for _ in store.scan_iter("twin:tile:*"))
    store.flushdb()


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
    assert 7.40 < combined["bounds"][0] < combined["bounds"][2] < 7.45


@pytest.mark.parametrize(
    ("path", "status", "parameter"),
    [
        ("/collections/roads/tiles/WebMercatorQuad/30/0/0", 400, "tileMatrix"),
        ("/collections/roads/tiles/WebMercatorQuad/2/0/9", 400, "tileCol"),
        ("/collections/roads/tiles/WebMercatorQuad/2/-1/0", 400, "tileRow"),
        ("/collections/streets/tiles/WebMercatorQuad/2/0/0", 404, "collectionId"),
        ("/collections/roads/tiles/WorldCRS84Quad/2/0/0", 404, "tileMatrixSetId"),
        ("/map/tiles/WebMercatorQuad/2/0/0?collections=roads,foo", 400, "collections"),
    ],
)
def test_bad_tile_requests(client: TestClient, path: str, status: int, parameter: str) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["parameter"] == parameter


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
