"""OGC API - Features, read by GDAL's own client and checked against SQL."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer

from api.app import create_app
from layers.catalog import COLLECTIONS, LAYERS
from layers.settings import TwinSettings
from tests.assertions import sql_scalar


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as test_client:
        yield test_client


def ids(body: dict) -> list[str]:
    return sorted(f["id"] for f in body["features"])


def sql_ids(url: str, query: str) -> list[str]:
    import sqlalchemy as sa

    from layers.database import get_engine

    with get_engine(url).connect() as conn:
        return sorted(str(r[0]) for r in conn.execute(sa.text(query)))


def test_ogrinfo_lists_every_collection(sample_server: str) -> None:
    out = subprocess.run(
        ["ogrinfo", "-ro", "-q", f"OAPIF:{sample_server}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    listed = [
        line.split(":")[1].split("(")[0].strip() for line in out.stdout.splitlines() if ":" in line
    ]
    assert listed == list(COLLECTIONS)  # the stored layers, then the live ones


def ogr_fields(path: str, layer: str) -> dict[str, str]:
    """Field name to OGR type, as ogrinfo lists a layer's schema."""
    out = subprocess.run(
        ["ogrinfo", "-ro", "-so", "-nomd", path, layer], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    fields = {}
    for line in out.stdout.splitlines():
        name, _, kind = line.partition(": ")
        if (
            kind
            and " (" in kind
            and not line.startswith(("Layer", "Geometry", "Feature", "Extent"))
        ):
            fields[name.strip()] = kind.split(" (")[0]
    return fields


def test_ogrinfo_reads_field_types_from_the_schema(sample_server: str) -> None:
    # before: GDAL guessed from the first page (an all-null column became String)
    resources = ogr_fields(f"OAPIF:{sample_server}", "resources")
    assert resources["capacity"] == "Integer" and resources["valid_from"] == "DateTime"
    incidents = ogr_fields(f"OAPIF:{sample_server}", "incidents")
    assert incidents["starts_at"] == "DateTime" and incidents["ends_at"] == "DateTime"
    assert incidents["severity"] == "Integer"
    roads = ogr_fields(f"OAPIF:{sample_server}", "roads")
    # 64-bit ids: GDAL types a JSON-schema "integer" as 32-bit whatever its format, so they are
    # published as numbers (Real: exact to 2^53), never guessed from the first page
    assert roads["source_node"] == "Real" and roads["maxspeed"] == "Real"
    assert ogr_fields(f"OAPIF:{sample_server}", "signals")["node_id"] == "Real"
    assert roads["oneway"] in ("Integer(Boolean)", "Integer")


def test_ogr2ogr_copies_every_layer_with_no_options(
    sample_server: str, sample_db: str, tmp_path: Path
) -> None:
    target = tmp_path / "city.gpkg"
    out = subprocess.run(
        ["ogr2ogr", "-f", "GPKG", str(target), f"OAPIF:{sample_server}", "--debug", "on"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # GDAL 3.6 pages with its own fixed size (10) and follows the next links to the end; the
    # OpenAPI document declares limit's default (100) and maximum (10000) for clients that read it
    assert re.findall(r"/items\?[^ ]*limit=(\d+)", out.stderr)
    for layer in LAYERS:
        info = subprocess.run(
            ["ogrinfo", "-ro", "-so", str(target), layer],
            capture_output=True,
            text=True,
            timeout=60,
        )
        count = int(
            next(line for line in info.stdout.splitlines() if "Feature Count" in line).split(":")[1]
        )
        assert count == sql_scalar(
            sample_db, f"SELECT count(*) FROM {layer} WHERE valid_to IS NULL"
        ), layer
    copied = ogr_fields(str(target), "resources")
    assert copied["capacity"] == "Integer"


def test_paging_links_walk_every_feature(client: TestClient, sample_db: str) -> None:
    seen, url = [], "/collections/roads/items?limit=400"
    while url:
        body = client.get(url).json()
        assert body["numberReturned"] == len(body["features"])
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert sorted(seen) == sql_ids(sample_db, "SELECT id FROM roads WHERE valid_to IS NULL")
    assert body["numberMatched"] == len(seen)


def test_bbox_and_filter_equal_sql(client: TestClient, sample_db: str) -> None:
    bbox = "7.415,43.728,7.425,43.736"
    got = client.get("/collections/roads/items", params={"bbox": bbox, "limit": 10000}).json()
    assert ids(got) == sql_ids(
        sample_db,
        "SELECT id FROM roads WHERE valid_to IS NULL AND ST_Intersects(geom, ST_MakeEnvelope(7.415,43.728,7.425,43.736,4326))",
    )
    cql = "class IN ('primary','secondary') AND (lanes >= 2 OR maxspeed IS NULL) AND name LIKE 'Boulevard%'"
    got = client.get("/collections/roads/items", params={"filter": cql, "limit": 10000}).json()
    expected = sql_ids(
        sample_db,
        "SELECT id FROM roads WHERE valid_to IS NULL AND class IN ('primary','secondary') AND (lanes >= 2 OR maxspeed IS NULL) AND name LIKE 'Boulevard%'",
    )
    assert ids(got) == expected and expected
    spatial = "S_INTERSECTS(geometry, POLYGON((7.415 43.728, 7.425 43.728, 7.425 43.736, 7.415 43.736, 7.415 43.728))) AND population > 50"
    got = client.get(
        "/collections/buildings/items", params={"filter": spatial, "limit": 10000}
    ).json()
    expected = sql_ids(
        sample_db,
        "SELECT id FROM buildings WHERE valid_to IS NULL AND population > 50 AND ST_Intersects(geom, ST_MakeEnvelope(7.415,43.728,7.425,43.736,4326))",
    )
    assert ids(got) == expected and expected


def test_output_crs_and_axis_order(client: TestClient) -> None:
    crs84 = client.get("/collections/cameras/items", params={"limit": 1}).json()["features"][0]
    lon, lat = crs84["geometry"]["coordinates"]
    response = client.get(
        "/collections/cameras/items",
        params={"limit": 1, "crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
    )
    assert response.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4326>"
    assert response.json()["features"][0]["geometry"]["coordinates"] == [lat, lon]
    # projected coordinates as PROJ's own transformer (pyproj) gives them; the API writes
    # metres to the centimetre (layers/features.py: 2 decimals for projected CRSs)
    for epsg in (3857, 32632):
        projected = client.get(
            "/collections/cameras/items", params={"limit": 1, "crs": f"EPSG:{epsg}"}
        ).json()
        expected = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
        assert projected["features"][0]["geometry"]["coordinates"] == pytest.approx(
            list(expected), abs=0.005 + 1e-6
        )
    cgcs = client.get("/collections/cameras/items", params={"limit": 1, "crs": "EPSG:4490"}).json()
    assert cgcs["features"][0]["geometry"]["coordinates"] == pytest.approx([lat, lon], abs=1e-6)
    in_4326 = client.get(
        "/collections/cameras/items",
        params={
            "bbox": f"{lat - 1e-6},{lon - 1e-6},{lat + 1e-6},{lon + 1e-6}",
            "bbox-crs": "EPSG:4326",
        },
    ).json()
    assert crs84["id"] in ids(in_4326)


def test_one_feature_with_a_slash_in_its_id(client: TestClient, sample_db: str) -> None:
    fid = "way/1000930347/0"  # README's example: OSM way 1000930347, its first piece
    feature = client.get(f"/collections/roads/items/{fid}").json()
    assert feature["id"] == fid
    assert feature["properties"]["class"] == sql_scalar(
        sample_db, "SELECT class FROM roads WHERE valid_to IS NULL AND id = :fid", fid=fid
    )
    assert client.get("/collections/roads/items/nope").status_code == 404


def test_queryables_and_conformance(client: TestClient) -> None:
    schema = client.get("/collections/roads/queryables").json()
    assert {"class", "lanes", "maxspeed", "geometry", "valid_from"} <= set(schema["properties"])
    assert (
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text"
        in client.get("/conformance").json()["conformsTo"]
    )
    landing = client.get("/", headers={"accept": "application/json"}).json()
    assert {link["rel"] for link in landing["links"]} >= {"conformance", "data", "service-desc"}


@pytest.mark.parametrize(
    ("path", "params", "status", "parameter"),
    [
        ("/collections/streets/items", {}, 404, "collectionId"),
        ("/collections/roads/items", {"bbox": "7.41,43.74,7.43,43.72"}, 400, "bbox"),
        ("/collections/roads/items", {"bbox": "7.41,43.72,10,7.43,43.74,0"}, 400, "bbox"),
        ("/collections/roads/items", {"bbox": "1,2,3,4,5"}, 400, "bbox"),
        ("/collections/roads/items", {"datetime": "../.."}, 400, "datetime"),
        ("/collections/roads/items", {"datetime": "/"}, 400, "datetime"),
        ("/collections/roads/items", {"class": "primary"}, 400, "class"),
        ("/collections/roads/items", {"bbox": "1,2,3"}, 400, "bbox"),
        ("/collections/roads/items", {"bbox": "-200,0,10,10"}, 400, "bbox"),
        ("/collections/roads/items", {"limit": 0}, 400, "limit"),
        ("/collections/roads/items", {"limit": 20000}, 400, "limit"),
        ("/collections/roads/items", {"filter": "class = "}, 400, "filter"),
        ("/collections/roads/items", {"filter": "colour = 'red'"}, 400, "filter"),
        ("/collections/roads/items", {"filter": "lanes = 'many'"}, 400, "filter"),
        ("/collections/roads/items", {"crs": "EPSG:2154"}, 400, "crs"),
        ("/collections/roads/items", {"datetime": "yesterday"}, 400, "datetime"),
        ("/collections/roads/items", {"filter-lang": "ecql"}, 400, "filter-lang"),
        ("/collections/roads/items", {"filter": "{", "filter-lang": "cql2-json"}, 400, "filter"),
    ],
)
def test_bad_input_is_a_problem(
    client: TestClient, path: str, params: dict, status: int, parameter: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["parameter"] == parameter
    assert "Traceback" not in response.text


def test_datetime_before_an_edit_returns_the_old_version(city) -> None:
    import geopandas as gpd

    from layers.ingest import ingest_frame

    camera = city.layer("cameras").iloc[0]
    moment = sql_scalar(city.url, "SELECT now()")

    def version(heading: float) -> gpd.GeoDataFrame:
        fields = {name: [camera[name]] for name in LAYERS["cameras"].field_names}
        extra = {key: [value] for key, value in camera["props"].items()}
        frame = gpd.GeoDataFrame(
            {"id": [camera["id"]], **fields, **extra}, geometry=[camera.geometry], crs=4326
        )
        frame["heading"] = heading
        return frame

    ingest_frame(
        "cameras", version(123.0), source="sample:cameras", retire_missing=False, url=city.url
    )
    try:
        with TestClient(create_app(TwinSettings(database_url=city.url))) as client:
            now = client.get(f"/collections/cameras/items/{camera['id']}").json()
            assert now["properties"]["heading"] == 123.0
            params = {"datetime": moment.isoformat(), "filter": f"id = '{camera['id']}'"}
            old = client.get("/collections/cameras/items", params=params).json()
            assert [f["properties"]["heading"] for f in old["features"]] == [camera["heading"]]
            both = client.get(
                "/collections/cameras/items",
                params={"datetime": f"{moment.isoformat()}/..", "filter": f"id = '{camera['id']}'"},
            ).json()
            assert sorted(f["properties"]["heading"] for f in both["features"]) == sorted(
                [camera["heading"], 123.0]
            )
    finally:
        ingest_frame(
            "cameras",
            version(float(camera["heading"])),
            source="sample:cameras",
            retire_missing=False,
            url=city.url,
        )


def test_geoarrow_output(client: TestClient, sample_db: str) -> None:
    import geopandas as gpd
    import pyarrow as pa

    response = client.get(
        "/collections/buildings/items",
        params={"f": "arrow", "limit": 500, "bbox": "7.415,43.728,7.425,43.736"},
    )
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.schema.field("geometry").metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    frame = gpd.GeoDataFrame.from_arrow(table)
    assert frame.crs.to_epsg() == 4326
    expected = client.get(
        "/collections/buildings/items", params={"limit": 500, "bbox": "7.415,43.728,7.425,43.736"}
    ).json()
    assert list(frame["id"]) == [f["id"] for f in expected["features"]]
    first = shapely.geometry.shape(expected["features"][0]["geometry"])
    assert frame.geometry.iloc[0].equals_exact(first, 1e-7)
    assert frame["population"].iloc[0] == expected["features"][0]["properties"]["population"]


@pytest.mark.parametrize(
    ("params", "parameter", "reason"),
    [
        (
            {"filter": "lanes = 'many'"},
            "filter",
            "property 'lanes' is integer; cannot compare it with a string",
        ),
        ({"filter": "name = 5"}, "filter", "property 'name' is string"),
        ({"filter": "lanes LIKE '2%'"}, "filter", "LIKE needs a text property"),
        ({"offset": 2**63}, "offset", "less than or equal to"),
        ({"bbox": "nan,nan,nan,nan", "bbox-crs": "EPSG:3857"}, "bbox", "finite"),
        ({"datetime": "20200101"}, "datetime", "RFC 3339"),
        ({"filter": "x" * 20_001}, "filter", "longer than"),
    ],
)
def test_more_bad_input(client: TestClient, params: dict, parameter: str, reason: str) -> None:
    response = client.get("/collections/roads/items", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == parameter
    assert reason in body["detail"]


def test_long_filters_and_filter_crs(client: TestClient, sample_db: str) -> None:
    chain = " AND ".join(["lanes >= 1"] * 1000)  # 15k characters, under the 20 000 allowed
    assert len(chain) < 20_001  # the length test_more_bad_input shows refused
    assert client.get("/collections/roads/items", params={"filter": chain}).status_code == 200
    everything = client.get("/collections/roads/items", params={"limit": 1}).json()["numberMatched"]
    lonlat = "POLYGON((7.3 43.6, 7.6 43.6, 7.6 43.9, 7.3 43.9, 7.3 43.6))"
    latlon = "POLYGON((43.6 7.3, 43.6 7.6, 43.9 7.6, 43.9 7.3, 43.6 7.3))"
    mercator = (
        "POLYGON((812000 5410000, 846000 5410000, 846000 5450000, 812000 5450000, 812000 5410000))"
    )
    for params in (
        {"filter": f"S_INTERSECTS(geometry, {lonlat})"},
        {
            "filter": f"S_INTERSECTS(geometry, {latlon})",
            "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4326",
        },
        {"filter": f"S_INTERSECTS(geometry, {mercator})", "filter-crs": "EPSG:3857"},
    ):
        assert (
            client.get("/collections/roads/items", params={**params, "limit": 1}).json()[
                "numberMatched"
            ]
            == everything
        )
    assert (
        client.get(
            "/collections/roads/items", params={"datetime": "2026-01-01t00:00:00z"}
        ).status_code
        == 200
    )


def test_bbox_forms(client: TestClient, sample_db: str) -> None:
    flat = ids(
        client.get(
            "/collections/roads/items", params={"bbox": "7.415,43.728,7.425,43.736", "limit": 10000}
        ).json()
    )
    # six numbers: a 3D box; the layers are 2D, so the same features (before: 400)
    deep = client.get(
        "/collections/roads/items",
        params={"bbox": "7.415,43.728,-100,7.425,43.736,9000", "limit": 10000},
    )
    assert deep.status_code == 200, deep.text
    assert ids(deep.json()) == flat and flat
    # minx > maxx crosses the antimeridian: from 179°E eastwards round to 7.42°E
    across = client.get(
        "/collections/roads/items", params={"bbox": "179,43.7,7.42,43.76", "limit": 10000}
    ).json()
    assert ids(across) == sql_ids(
        sample_db,
        "SELECT id FROM roads WHERE valid_to IS NULL AND ST_Intersects(geom, ST_MakeEnvelope(-180,43.7,7.42,43.76,4326))",
    )
    assert 0 < len(ids(across)) < across["numberMatched"] + 1
    # in EPSG:4326 (latitude first) a six-number box too
    latlon = client.get(
        "/collections/roads/items",
        params={"bbox": "43.728,7.415,0,43.736,7.425,10", "bbox-crs": "EPSG:4326", "limit": 10000},
    ).json()
    assert ids(latlon) == flat


def test_datetime_forms(client: TestClient) -> None:
    everything = client.get("/collections/roads/items", params={"limit": 1}).json()["numberMatched"]
    for value, expected in (
        ("2000-01-01T00:00:00Z/2999-01-01T00:00:00Z", everything),
        ("../2999-01-01T00:00:00Z", everything),
        ("/2999-01-01T00:00:00Z", everything),
        ("2000-01-01T00:00:00Z/..", everything),
        ("2000-01-01T00:00:00Z/", everything),
        ("2000-01-01/2999-12-31", everything),
        ("../2000-01-01T00:00:00Z", 0),
        ("2000-01-01T00:00:00Z", 0),
        ("2000-01-01", 0),
    ):
        response = client.get("/collections/roads/items", params={"datetime": value, "limit": 1})
        assert response.status_code == 200, (value, response.text)
        assert response.json()["numberMatched"] == expected, value


@pytest.mark.parametrize(
    ("collection", "text", "expected"),
    [
        ("incidents", "kind = 'O''Brien'", []),  # before: 400 "malformed"
        ("roads", "name = 'Route de l''Hôpital'", "name = 'Route de l''Hôpital'"),
        ("roads", "name LIKE '%l''H%'", "name LIKE '%l''H%'"),
        (
            "incidents",
            "T_EQUALS(starts_at, TIMESTAMP('2026-01-15T09:10:00Z'))",
            ["incident/building-fire"],
        ),
        ("incidents", "starts_at = TIMESTAMP('2026-01-15T09:10:00Z')", ["incident/building-fire"]),
        ("incidents", "starts_at < TIMESTAMP('2026-01-15T00:00:00+01:00')", ["incident/collision"]),
        ("incidents", "T_BEFORE(starts_at, DATE('2026-01-15'))", ["incident/collision"]),
        ("incidents", "severity IN (4, 5) AND kind <> 'fire'", ["incident/burst-main"]),
        ("incidents", "severity = -1 OR severity >= 4.5", ["incident/building-fire"]),
        (
            "incidents",
            "ends_at IS NULL AND S_WITHIN(geometry, BBOX(7.3, 43.6, 7.6, 43.9))",
            ["incident/building-fire", "incident/burst-main"],
        ),
    ],
)
def test_cql2_escapes_and_literals(
    client: TestClient, sample_db: str, collection: str, text: str, expected
) -> None:
    response = client.get(
        f"/collections/{collection}/items", params={"filter": text, "limit": 10000}
    )
    assert response.status_code == 200, response.text
    if isinstance(expected, str):
        expected = sql_ids(
            sample_db, f"SELECT id FROM {collection} WHERE valid_to IS NULL AND {expected}"
        )
        assert expected
    assert ids(response.json()) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("lower(name) = 'x'", "lower"),
        ("class = ", "ends early"),
        ("class = 'primary' AND", "ends early"),
        ("class == 'a'", "character 8"),
        ("S_INTERSECTS(lanes, POINT(1 2))", "geometries"),
        ("T_AFTER(name, TIMESTAMP('2026-01-01T00:00:00Z'))", "name"),
        ("valid_from = TIMESTAMP('yesterday')", "timestamp"),
        ("A_CONTAINS(name, ('a'))", "array"),
        ("lanes LIKE '2%'", "LIKE"),
    ],
)
def test_filter_errors_say_what_is_wrong_in_cql2_terms(
    client: TestClient, text: str, says: str
) -> None:
    response = client.get("/collections/roads/items", params={"filter": text})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == "filter" and says in body["detail"], body["detail"]
    for internal in ("Function(", "Token", "$END", "-->", "Expr", "GEOMETRY,", "pest", "Rule"):
        assert internal not in body["detail"], body["detail"]


def test_docs_render_offline(sample_server: str, browser) -> None:
    from urllib.parse import urlparse

    outside: list[str] = []

    def guard(route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page = browser.new_page()
    try:
        page.route("**/*", guard)
        page.goto(f"{sample_server}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/collections/{collectionId}/items" in p.replace("\u200b", "") for p in paths)
        page.goto(f"{sample_server}/redoc")
        page.wait_for_selector("[data-section-id]", timeout=30_000)
        assert "Features, filtered and paged" in page.content()
    finally:
        page.close()
    assert outside == []


# -- a client's review: requests that killed the server, 500s, wrong answers -------------------


def get_json(url: str) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000 + "TRUE" + ")" * 5000,  # before: the parser overflowed its stack (rc 139)
        "(" * 2000 + "TRUE" + ")" * 2000,
        "NOT " * 4000 + "TRUE",
        "lanes = " + "-" * 5000 + "1",
        "lanes = " + "1+" * 5000 + "1",
        "lanes = " + "1^" * 5000 + "1",
        "lanes = 1 AND " + "(NOT " * 300 + "lanes = -1" + ")" * 300,
    ],
)
def test_deeply_nested_filters_are_refused_and_the_server_lives(
    sample_server: str, text: str
) -> None:
    from urllib.parse import urlencode

    query = urlencode({"filter": text})
    status, body = get_json(f"{sample_server}/collections/roads/items?{query}")
    assert status == 400 and body["parameter"] == "filter", body
    assert "nest" in body["detail"], body["detail"]
    assert get_json(f"{sample_server}/collections/roads/items?limit=1")[0] == 200


def test_nesting_within_the_limits_still_parses(client: TestClient) -> None:
    for text in (
        "(" * 150 + "lanes = 1" + ")" * 150,
        "lanes IN (" + ", ".join(f"-{i}" for i in range(2000)) + ")",  # signs are not operators
        "lanes = 1e-5 + 1",
    ):
        response = client.get("/collections/roads/items", params={"filter": text, "limit": 1})
        assert response.status_code == 200, response.text
    deep = '{"op":"not","args":[' * 300 + "true" + "]}" * 300
    response = client.get(
        "/collections/roads/items", params={"filter": deep, "filter-lang": "cql2-json"}
    )
    assert response.status_code == 400 and "nest" in response.json()["detail"]


@pytest.mark.parametrize(
    ("collection", "cql2_json", "says"),
    [
        (
            "roads",
            {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, {"type": "Polygon", "coordinates": "x"}],
            },
            "Polygon",
        ),
        (
            "roads",
            {"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "Point"}]},
            "Point",
        ),
        (
            "roads",
            {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, {"type": "LineString", "coordinates": [[1, 2]]}],
            },
            "LineString",
        ),
        (
            "roads",
            {
                "op": "s_within",
                "args": [
                    {"property": "geometry"},
                    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
                ],
            },
            "not a valid geometry",
        ),
        (
            "roads",
            {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [1, "a"]}],
            },
            "Point",
        ),
        (
            "incidents",
            {"op": "t_intersects", "args": [{"property": "starts_at"}, {"timestamp": 123}]},
            "timestamp",
        ),
        (
            "incidents",
            {"op": "t_intersects", "args": [{"property": "starts_at"}, {"timestamp": None}]},
            "timestamp",
        ),
        (
            "incidents",
            {"op": "=", "args": [{"property": "starts_at"}, {"timestamp": ["x"]}]},
            "timestamp",
        ),
        ("incidents", {"op": "=", "args": [{"property": "starts_at"}, {"date": {"a": 1}}]}, "date"),
        (
            "incidents",
            {"op": "t_during", "args": [{"property": "starts_at"}, {"interval": [5, ".."]}]},
            "T_",
        ),
        ("incidents", {"op": "=", "args": [{"property": "starts_at"}, "tomorrow"]}, "timestamp"),
        ("incidents", {"op": "a_contains", "args": [{"property": "starts_at"}, [1]]}, "array"),
    ],
)
def test_malformed_cql2_json_literals_are_400_not_500(
    client: TestClient, collection: str, cql2_json: dict, says: str
) -> None:
    import json

    response = client.get(
        f"/collections/{collection}/items",
        params={"filter": json.dumps(cql2_json), "filter-lang": "cql2-json"},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == "filter" and says in body["detail"], body["detail"]


def test_database_refusals_are_400_in_our_words(client: TestClient) -> None:
    # a geometry PROJ cannot move into the data's CRS, a power out of range: PostgreSQL refuses
    # them; the client gets a 400 naming the parameter, never PostgreSQL's wording
    utm = "http://www.opengis.net/def/crs/EPSG/0/32632"
    for params, parameter in (
        (
            {
                "filter": "S_INTERSECTS(geometry, POINT(1000000000000 1000000000000))",
                "filter-crs": utm,
            },
            "filter",
        ),
        ({"filter": "lanes ^ 1000000000 > 1"}, "filter"),
        (
            {"bbox": "1000000000000,1000000000000,2000000000000,2000000000000", "bbox-crs": utm},
            "bbox",
        ),
    ):
        response = client.get("/collections/roads/items", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["parameter"] == parameter
        for wording in ("ERROR", "transform", "out of range:", "numeric", "operator", "function"):
            assert wording not in response.json()["detail"], response.json()["detail"]


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("lanes / 2 = 0.5", "lanes::numeric / 2 = 0.5"),  # before: integer division, none
        ("lanes / 2 = 0", "lanes = 0"),  # before: every one-lane road
        ("maxspeed % 2 = 0", "maxspeed::numeric % 2 = 0"),  # before: 400 operator does not exist
        ("maxspeed div 2 = 25", "div(maxspeed::numeric, 2) = 25"),  # before: 400 no div(float)
        ("lanes * 1.5 > 2", "lanes * 1.5 > 2"),
        ("lanes ^ 2 = 4", "lanes = 2"),
        ("lanes + 40000 > 40001", "lanes > 1"),  # smallint + integer: no overflow
        ("lanes / 0 = 1 OR lanes % 0 = 1", "FALSE"),  # no value, so no match: not an error
    ],
)
def test_cql2_arithmetic_equals_sql(
    client: TestClient, sample_db: str, text: str, condition: str
) -> None:
    response = client.get("/collections/roads/items", params={"filter": text, "limit": 10000})
    assert response.status_code == 200, response.text
    assert ids(response.json()) == sql_ids(
        sample_db, f"SELECT id FROM roads WHERE valid_to IS NULL AND ({condition})"
    )


@pytest.mark.parametrize(
    "text",
    [
        "valid_from = 'foo'",  # before: PostgreSQL's "invalid input syntax for type timestamp"
        "valid_from > 'yesterday'",  # before: accepted (PostgreSQL's special words)
        "valid_from > 'now'",
        "valid_from > 'epoch'",
        "valid_from < 'infinity'",
        "valid_from > '2026-01-15 09:10'",
        "valid_from > '2026-01-15T09:10:00'",  # no offset
        "valid_from > TIMESTAMP('2026-01-15T09:10:00')",
        "valid_from > '2026-02-30'",
        "valid_from IN ('2026-01-15T09:10:00Z', 'soon')",
        "valid_from = source",  # a text property is no timestamp
        "T_INTERSECTS(valid_from, INTERVAL('2026-01-02', '2026-01-01'))",  # reversed
        "T_INTERSECTS(valid_from, INTERVAL('2026-01-02T00:00:00Z', '2026-01-01T23:00:00Z'))",
        "T_INTERSECTS(valid_from, INTERVAL('2026-01-02T00:00:00', '..'))",
    ],
)
def test_timestamps_in_filters_are_rfc3339_checked_here(client: TestClient, text: str) -> None:
    response = client.get("/collections/roads/items", params={"filter": text})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["parameter"] == "filter"
    for wording in ("invalid input syntax", "timestamp with time zone", "ERROR"):
        assert wording not in body["detail"], body["detail"]


def test_timestamps_with_offsets_and_dates_still_compare(
    client: TestClient, sample_db: str
) -> None:
    for text, condition in (
        ("valid_from > '2000-01-01T00:00:00Z'", "valid_from > '2000-01-01T00:00:00Z'"),
        ("valid_from > '2000-01-01'", "valid_from > '2000-01-01T00:00:00Z'"),
        ("valid_from < '2000-01-01T00:00:00+02:00'", "valid_from < '2000-01-01T00:00:00+02:00'"),
    ):
        response = client.get("/collections/roads/items", params={"filter": text, "limit": 10000})
        assert response.status_code == 200, response.text
        assert ids(response.json()) == sql_ids(
            sample_db, f"SELECT id FROM roads WHERE valid_to IS NULL AND {condition}"
        )


@pytest.mark.parametrize(
    ("west", "south", "east", "north"),
    [(170, 43.72, 7.44, 43.75), (7.43, 43.0, 7.41, 44.0), (-170, 43, 7.42, 44)],
)
def test_cql2_bbox_across_the_antimeridian_is_the_bbox_parameter(
    client: TestClient, west: float, south: float, east: float, north: float
) -> None:
    parameter = client.get(
        "/collections/buildings/items",
        params={"bbox": f"{west},{south},{east},{north}", "limit": 10000},
    ).json()
    for text in (
        f"S_INTERSECTS(geometry, BBOX({west}, {south}, {east}, {north}))",
        f"S_INTERSECTS(geometry, BBOX({west}, {south}, 0, {east}, {north}, 10))",
    ):
        response = client.get(
            "/collections/buildings/items", params={"filter": text, "limit": 10000}
        )
        assert response.status_code == 200, response.text
        assert ids(response.json()) == ids(parameter), text
    assert parameter["numberMatched"] > 0


@pytest.mark.parametrize(
    "params",
    [
        {"filter": ""},  # before: 200 unfiltered
        {"filter": "   "},
        {"filter": "", "filter-lang": "cql2-json"},
        {"filter": "S_INTERSECTS(geometry, BBOX(1, 50, 2, 40))"},  # south of north
        {"filter": "S_INTERSECTS(geometry, BBOX(1, 40, 200, 50))"},
        {"filter": "S_INTERSECTS(geometry, BBOX(1, 40, 5, 2, 50, 0))"},  # bottom above top
    ],
)
def test_empty_filters_and_bad_bboxes_in_filters_are_400(client: TestClient, params: dict) -> None:
    response = client.get("/collections/roads/items", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == "filter"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("bbox=7,43,8,44&bbox=0,0,1,1", "bbox"),  # before: the last one won silently
        ("filter=lanes=1&filter=lanes=2", "filter"),
        ("datetime=2026-01-01T00:00:00Z&datetime=..%2F2026-01-01", "datetime"),
        ("limit=1&limit=2", "limit"),
        ("datetime=2026-01-15T09:10:00", "datetime"),  # no offset: RFC 3339 requires one
        ("datetime=2026-01-15T09:10:00%2F..", "datetime"),
    ],
)
def test_repeated_parameters_and_offsetless_datetimes_are_400(
    client: TestClient, query: str, parameter: str
) -> None:
    response = client.get(f"/collections/roads/items?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter


@pytest.mark.parametrize(("layer", "column"), [("signals", "node_id"), ("roads", "target_node")])
def test_ogr2ogr_keeps_every_64_bit_id(
    sample_server: str, sample_db: str, tmp_path: Path, layer: str, column: str
) -> None:
    # before: signals.node_id came out a 32-bit Integer (from the first page of 10), and 6 of
    # 19 ids were stored as 2147483647 with "Integer overflow occurred" warnings
    import sqlite3

    target = tmp_path / "copy.gpkg"
    out = subprocess.run(
        ["ogr2ogr", "-f", "GPKG", str(target), f"OAPIF:{sample_server}", layer],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "overflow" not in out.stderr, out.stderr[-3000:]
    with sqlite3.connect(target) as conn:
        copied = dict(conn.execute(f'SELECT "id", "{column}" FROM "{layer}"').fetchall())
    stored = dict(
        (str(i), v)
        for i, v in sql_rows(sample_db, f"SELECT id, {column} FROM {layer} WHERE valid_to IS NULL")
    )
    assert max(v for v in stored.values() if v is not None) > 2**31  # the case that overflowed
    assert {k: (None if v is None else int(v)) for k, v in copied.items()} == stored


def sql_rows(url: str, query: str) -> list[tuple]:
    import sqlalchemy as sa

    from layers.database import get_engine

    with get_engine(url).connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query))]


def test_collections_have_a_temporal_extent_from_the_versions(
    client: TestClient, sample_db: str
) -> None:
    # before: no temporal extent, though datetime selects on valid_from/valid_to
    from datetime import datetime

    for layer in ("roads", "incidents"):
        temporal = client.get(f"/collections/{layer}").json()["extent"]["temporal"]
        assert temporal["trs"] == "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
        (start, end), *_ = temporal["interval"]
        first = datetime.fromisoformat(start.replace("Z", "+00:00"))
        assert first == sql_rows(sample_db, f"SELECT min(valid_from) FROM {layer}")[0][0]
        assert end is None  # current versions: open
        everything = client.get(f"/collections/{layer}/items", params={"limit": 1}).json()
        inside = client.get(
            f"/collections/{layer}/items", params={"datetime": f"{start}/..", "limit": 1}
        ).json()
        assert inside["numberMatched"] >= everything["numberMatched"]
