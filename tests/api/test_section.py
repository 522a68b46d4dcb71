"""``POST /utilities/section``: the pipeline section over HTTP, against the store and the DEM file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient

from api.app import create_app
from layers.settings import TwinSettings
from tests.layers.test_section import ACROSS, DEM, NO_PIPES, across, nearest, oracle, table

LAYERS = ("pipelines", "power_lines")


def geojson(line: shapely.Geometry) -> dict[str, Any]:
    return json.loads(shapely.to_geojson(line))


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    """The API over the sample city; the tests' anonymous caller holds the administrator role."""
    settings = TwinSettings(database_url=sample_db, mqtt_url="")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def public(sample_db: str) -> Iterator[TestClient]:
    """The same API with the real default: an anonymous caller has the ``public`` role."""
    settings = TwinSettings(database_url=sample_db, auth_anonymous_role="public", mqtt_url="")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_the_section_across_a_street(client: TestClient, sample_db: str) -> None:
    pipes = table(sample_db, "pipelines")
    pipe = pipes[pipes["network"] == "sewer"].geometry.iloc[10]
    line = across(pipe, half_m=30)
    answer = client.post("/utilities/section", json={"geometry": geojson(line)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["crs_used"] == "EPSG:32632" and body["dem"] == "dem"
    assert body["length_m"] == pytest.approx(60, abs=1e-3)
    assert body["layers"] == list(LAYERS)
    expected = oracle(sample_db, line, LAYERS)
    crossings = body["crossings"]
    assert len(crossings) == len(expected) > 0
    assert [c["id"] for c in crossings] == list(expected["id"])
    assert np.allclose([c["distance_m"] for c in crossings], expected["distance_m"], atol=2e-3)
    assert "sewer" in {c["network"] for c in crossings}
    for crossing in crossings:
        assert crossing["elevation_m"] == pytest.approx(
            crossing["ground_m"] - crossing["depth_m"], abs=2e-3
        )
        assert crossing["end_distance_m"] is None and crossing["invert_m"] is None
    distances = [g["distance_m"] for g in body["ground"]]
    assert distances[0] == 0 and distances[-1] == pytest.approx(60, abs=1e-3)
    assert distances == sorted(distances)
    assert all(isinstance(g["elevation_m"], float) for g in body["ground"])


def test_ground_is_rasterio_sample_of_the_dem_file(client: TestClient) -> None:
    answer = client.post(
        "/utilities/section",
        json={"geometry": geojson(ACROSS), "interpolation": "nearest", "step_m": 25},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["step_m"] == 25 and body["interpolation"] == "nearest"
    lon = np.array([g["lon"] for g in body["ground"]])
    lat = np.array([g["lat"] for g in body["ground"]])
    elevation = np.array([g["elevation_m"] for g in body["ground"]])
    # lon/lat come to 7 decimals (1 cm): a point that close to a cell's edge may fall either side
    with rasterio.open(DEM) as dem:
        cols, rows = ~dem.transform @ (lon, lat)
        res = dem.res[0]
    edge = np.minimum(np.abs(cols - np.round(cols)), np.abs(rows - np.round(rows))) * res
    same = nearest(lon, lat) == elevation
    assert (same | (edge < 1e-7)).all() and same.mean() > 0.9
    assert {"water", "sewer", "gas"} <= {c["network"] for c in body["crossings"]}


def test_a_line_crossing_no_pipe_gives_none(client: TestClient, sample_db: str) -> None:
    assert oracle(sample_db, NO_PIPES, LAYERS).empty
    body = client.post("/utilities/section", json={"geometry": geojson(NO_PIPES)}).json()
    assert body["crossings"] == [] and len(body["ground"]) >= 101


def test_a_public_caller_sees_the_ground_and_no_crossings(
    client: TestClient, public: TestClient
) -> None:
    request = {"geometry": geojson(ACROSS)}
    seen = public.post("/utilities/section", json=request)
    assert seen.status_code == 200, seen.text
    whole = client.post("/utilities/section", json=request).json()
    body = seen.json()
    assert body["layers"] == [] and body["crossings"] == []
    assert whole["crossings"]  # the same line, for a caller who reads the pipes
    crossing_at = {c["distance_m"] for c in whole["crossings"]}
    assert [g for g in whole["ground"] if g["distance_m"] not in crossing_at] == body["ground"]


@pytest.mark.parametrize(
    ("request_body", "parameter"),
    [
        ({"geometry": {"type": "Point", "coordinates": [7.42, 43.74]}}, "geometry"),
        (
            {
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[7.42, 43.74], [7.43, 43.74], [7.43, 43.75], [7.42, 43.74]]],
                }
            },
            "geometry",
        ),
        (
            {"geometry": {"type": "LineString", "coordinates": [[7.40, 43.73], [7.46, 43.76]]}},
            "geometry",
        ),
        ({"geometry": {"type": "LineString", "coordinates": [[1, 1], [1.001, 1.001]]}}, "geometry"),
        ({"geometry": {"type": "LineString", "coordinates": [[7.42, 43.74]]}}, "geometry"),
        (
            {"geometry": {"type": "LineString", "coordinates": [[7.42, 43.74], [7.42, 43.74]]}},
            "geometry",
        ),
        (
            {"geometry": {"type": "LineString", "coordinates": [[700, 43.74], [701, 43.74]]}},
            "geometry",
        ),
        ({"geometry": "LINESTRING (7.42 43.74, 7.43 43.74)"}, "geometry"),
        ({}, "geometry"),
        ({"geometry": geojson(NO_PIPES), "step_m": 0}, "step_m"),
        ({"geometry": geojson(NO_PIPES), "step_m": 0.05}, "step_m"),
        ({"geometry": geojson(NO_PIPES), "interpolation": "cubic"}, "interpolation"),
        ({"geometry": geojson(NO_PIPES), "dem": "nope"}, "dem"),
        ({"geometry": geojson(NO_PIPES), "datetime": "yesterday"}, "datetime"),
    ],
)
def test_bad_input_is_a_400_problem_naming_the_field(
    client: TestClient, request_body: dict[str, Any], parameter: str
) -> None:
    answer = client.post("/utilities/section", json=request_body)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["parameter"] == parameter
    assert "Exception" not in answer.json()["detail"], "GEOS's own words, not the reason"


def test_a_one_position_line_says_a_line_needs_two(client: TestClient) -> None:
    one = {"geometry": {"type": "LineString", "coordinates": [[7.42, 43.74]]}}
    detail = client.post("/utilities/section", json=one).json()["detail"]
    assert detail == (
        "geometry: not a GeoJSON geometry: a line needs at least two positions, a ring at least four"
    )


def points(line: shapely.LineString) -> str:
    return ";".join(f"{x!r},{y!r}" for x, y in line.coords)


def test_get_with_the_line_as_points_answers_as_post(client: TestClient) -> None:
    posted = client.post(
        "/utilities/section", json={"geometry": geojson(ACROSS), "step_m": 40}
    ).json()
    got = client.get("/utilities/section", params={"line": points(ACROSS), "step_m": 40})
    assert got.status_code == 200, got.text
    assert got.json() == posted and posted["crossings"]
    # the networks' own path is still served beside it, and the path lists both methods
    assert client.get("/utilities/water").json()["network"] == "water"
    refused = client.request("OPTIONS", "/utilities/section")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"line": "7.42,43.74"}, "line"),
        ({"line": "7.42,43.74;7.43"}, "line"),
        ({"line": "7.42,43.74;nan,43.74"}, "line"),
        ({"line": "7.40,43.73;7.46,43.76"}, "line"),
        ({"line": "1,1;1.001,1.001"}, "line"),
        ({"line": "7.42,43.74;7.42,43.74"}, "line"),
        ({}, "line"),
        ({"line": points(NO_PIPES), "step_m": "-3"}, "step_m"),
        ({"line": points(NO_PIPES), "interpolation": "cubic"}, "interpolation"),
        ({"line": points(NO_PIPES), "datetime": "yesterday"}, "datetime"),
    ],
)
def test_bad_get_parameters_are_a_400_naming_them(
    client: TestClient, params: dict[str, str], parameter: str
) -> None:
    answer = client.get("/utilities/section", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["parameter"] == parameter


def test_no_dem_is_a_409_naming_it(raster_db: str) -> None:
    settings = TwinSettings(database_url=raster_db, mqtt_url="")
    with TestClient(create_app(settings)) as empty:
        answer = empty.post("/utilities/section", json={"geometry": geojson(NO_PIPES)})
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["missing"] == "dem" and "twin raster ingest" in problem["detail"]


def test_a_moment_before_the_city_has_no_dem(client: TestClient) -> None:
    answer = client.post(
        "/utilities/section",
        json={"geometry": geojson(NO_PIPES), "datetime": "2000-01-01T00:00:00Z"},
    )
    assert answer.status_code == 409 and answer.json()["missing"] == "dem"


def test_the_openapi_document_describes_the_section(client: TestClient) -> None:
    path = client.get("/api").json()["paths"]["/utilities/section"]
    assert set(path) == {"get", "post"}
    for operation in path.values():
        assert {"200", "400", "409"} <= set(operation["responses"])
        assert "section" in operation["summary"]
