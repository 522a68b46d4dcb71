"""One-map, utility, incident, camera and raster endpoints over HTTP, and their problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient

import twin
from api.app import create_app
from api.geojson import feature_collection
from layers.onemap import OneMap
from layers.settings import TwinSettings
from tests.assertions import problem, sql_scalar

CASINO = {"lon": 7.4280, "lat": 43.7395}
BURST = [7.4103408, 43.7335484]  # the sample's burst main


def current(city: twin.City, table: str, where: str = "") -> int:
    return sql_scalar(city.url, f"SELECT count(*) FROM {table} WHERE valid_to IS NULL {where}")


@pytest.fixture
def client(city: twin.City) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=city.url))) as test_client:
        yield test_client


def test_around(client: TestClient, city: twin.City) -> None:
    body = client.get(
        "/onemap/around",
        params={**CASINO, "radius_m": 300, "layers": "buildings,cameras,pipelines", "limit": 5},
    ).json()
    expected = city.around(
        (CASINO["lon"], CASINO["lat"]), 300, layers=["buildings", "cameras", "pipelines"]
    )
    assert set(body["layers"]) == {"buildings", "cameras", "pipelines"}
    buildings = body["layers"]["buildings"]
    assert buildings["numberMatched"] == len(expected.features["buildings"]) > 5
    assert buildings["numberReturned"] == len(buildings["features"]) == 5
    distances = [f["properties"]["distance_m"] for f in buildings["features"]]
    assert distances == sorted(distances)
    assert body["summary"]["counts"] == expected.summary["counts"]
    assert body["area"]["type"] == "Polygon"


def test_around_with_a_filter_and_a_moment(client: TestClient) -> None:
    body = client.get(
        "/onemap/around",
        params={
            **CASINO,
            "radius_m": 800,
            "layers": "buildings",
            "filter": "buildings:height_m > 40",
        },
    ).json()
    heights = [f["properties"]["height_m"] for f in body["layers"]["buildings"]["features"]]
    assert heights and min(heights) > 40
    old = client.get(
        "/onemap/around", params={**CASINO, "radius_m": 800, "datetime": "2001-01-01T00:00:00Z"}
    ).json()
    assert sum(old["summary"]["counts"].values()) == 0


def test_within_along_and_districts(client: TestClient, city: twin.City) -> None:
    box = shapely.geometry.mapping(shapely.box(7.420, 43.730, 7.426, 43.736))
    body = client.post("/onemap/within", json={"geometry": box, "layers": ["roads"]}).json()
    assert body["summary"]["counts"]["roads"] > 0
    line = {"type": "LineString", "coordinates": [[7.42, 43.733], [7.426, 43.735]]}
    body = client.post(
        "/onemap/along", json={"geometry": line, "buffer_m": 25, "layers": ["pipe_nodes"]}
    ).json()
    assert body["summary"]["counts"]["pipe_nodes"] > 0
    districts = client.get("/onemap/districts").json()["districts"]
    assert len(districts) == current(city, "districts")
    assert all(0 <= d["camera_road_share"] <= 1 for d in districts)
    wards = [d for d in districts if d["level"] == 10]  # OSM admin_level 10: the quarters
    assert len(wards) == current(city, "districts", "AND level = 10") > 0
    assert all(0 <= d["fire_station_8min_population_share"] <= 1 for d in wards)
    coverage = client.get("/routing/coverage", params={"kind": "fire_station", "minutes": 8}).json()
    by_name = {d["district"]: d["population_share"] for d in coverage["districts"]}
    assert {d["name"]: d["fire_station_8min_population_share"] for d in wards} == pytest.approx(
        {d["name"]: by_name[d["name"]] for d in wards}
    )


def same_answer(body: dict[str, Any], expected: OneMap, limit: int) -> None:
    """The answer PostgreSQL wrote equals the library's, feature by feature, value by value."""
    assert body["shape"] == expected.shape
    assert body["summary"] == expected.summary
    assert list(body["layers"]) == list(expected.features)
    for layer, collection in body["layers"].items():
        frame = expected.features[layer]
        assert list(collection) == ["type", "features", "numberMatched", "numberReturned"]
        assert collection["numberMatched"] == expected.summary["counts"][layer] == len(frame)
        assert collection["numberReturned"] == len(collection["features"]) == min(limit, len(frame))
        encoded = feature_collection(frame, limit=limit)["features"]
        for got, want in zip(collection["features"], encoded, strict=True):
            assert list(got["properties"]) == list(want["properties"])  # the columns' order
            assert got["properties"] == want["properties"], (layer, got["properties"]["id"])
            assert shapely.equals_exact(
                shapely.geometry.shape(got["geometry"]),
                shapely.geometry.shape(want["geometry"]),
                tolerance=1e-12,
            )


def test_answers_written_by_postgresql_equal_the_library(
    client: TestClient, city: twin.City
) -> None:
    body = client.get(
        "/onemap/around",
        params={**CASINO, "radius_m": 400, "limit": 7, "filter": "buildings:height_m > 10"},
    ).json()
    point = (CASINO["lon"], CASINO["lat"])
    same_answer(body, city.around(point, 400, filters={"buildings": "height_m > 10"}), 7)
    box = shapely.box(7.420, 43.730, 7.426, 43.736)
    body = client.post(
        "/onemap/within",
        json={"geometry": shapely.geometry.mapping(box), "layers": ["roads", "buildings"]},
    ).json()
    same_answer(body, city.within(box, layers=["roads", "buildings"]), 100)
    street = shapely.LineString([(7.4200, 43.7330), (7.4260, 43.7350)])
    body = client.post(
        "/onemap/along",
        json={
            "geometry": shapely.geometry.mapping(street),
            "buffer_m": 30,
            "limit": 0,
            "datetime": "2030-01-01T00:00:00Z",
        },
    ).json()
    same_answer(body, city.along(street, 30, at="2030-01-01T00:00:00Z"), 0)


@pytest.mark.parametrize(
    ("request_args", "parameter"),
    [
        (("get", "/onemap/around", {"params": {**CASINO, "radius_m": 0}}), "radius_m"),
        (("get", "/onemap/around", {"params": {**CASINO, "radius_m": 1e7}}), "radius_m"),
        (
            ("get", "/onemap/around", {"params": {**CASINO, "radius_m": 50, "layers": "lakes"}}),
            "layers",
        ),
        (
            ("get", "/onemap/around", {"params": {**CASINO, "radius_m": 50, "filter": "nocolon"}}),
            "filter",
        ),
        (("get", "/onemap/around", {"params": {"lon": 7.4, "radius_m": 50}}), "lat"),
        (
            (
                "post",
                "/onemap/within",
                {
                    "json": {
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                        }
                    }
                },
            ),
            "geometry",
        ),
        (("post", "/onemap/within", {"json": {"geometry": {"type": "Blob"}}}), "geometry"),
        (
            (
                "post",
                "/onemap/within",
                {
                    "json": {
                        "geometry": {
                            "type": "MultiPolygon",
                            "coordinates": [
                                [[[7.42, 43.73], [7.43, 43.73], [7.43, 43.74], [7.42, 43.73]]],
                                [],
                            ],
                        }
                    }
                },
            ),
            "geometry",
        ),
        (
            (
                "post",
                "/onemap/within",
                {
                    "json": {
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[7.3, 43.6], [97, 0], [7.5, 43.9], [7.3, 43.6]]],
                        }
                    }
                },
            ),
            "geometry",
        ),
        (
            (
                "post",
                "/onemap/along",
                {
                    "json": {
                        "buffer_m": 10,
                        "geometry": {
                            "type": "MultiLineString",
                            "coordinates": [[[7.42, 43.73], [7.43, 43.74]], []],
                        },
                    }
                },
            ),
            "geometry",
        ),
        (
            (
                "get",
                "/onemap/around",
                {"params": {**CASINO, "radius_m": 50, "datetime": "garbage"}},
            ),
            "datetime",
        ),
        (("get", "/onemap/districts", {"params": {"datetime": "+99:00"}}), "datetime"),
        (("post", "/utilities/heat/outage", {"json": {}}), "network"),
        (
            ("post", "/utilities/sewer/isolate", {"json": {"point": [7.4103408, 43.7335484]}}),
            "network",
        ),
        (
            (
                "post",
                "/utilities/water/isolate",
                {
                    "json": {
                        "point": [7.4103408, 43.7335484],
                        "inoperable": ["water/source/reservoir"],
                    }
                },
            ),
            "inoperable",
        ),
        (
            (
                "post",
                "/incidents/impact",
                {"json": {"geometry": {"type": "Point", "coordinates": []}, "kind": "fire"}},
            ),
            "geometry",
        ),
        (
            (
                "post",
                "/rasters/dem/zonal",
                {"json": {"geometry": {"type": "Polygon", "coordinates": []}}},
            ),
            "geometry",
        ),
        (
            (
                "post",
                "/onemap/along",
                {
                    "json": {
                        "geometry": {
                            "type": "LineString",
                            "coordinates": [[7.42, 43.73], [7.43, 43.74]],
                        }
                    }
                },
            ),
            "buffer_m",
        ),
        (("post", "/utilities/water/isolate", {"json": {"point": [7.0, 43.0]}}), "point"),
        (("post", "/utilities/water/isolate", {"json": {}}), "point"),
        (
            ("post", "/utilities/water/outage", {"json": {"operate": ["water/source/reservoir"]}}),
            "operate",
        ),
        (("post", "/utilities/power/outage", {"json": {"operate": ["no/such"]}}), "operate"),
        (("post", "/utilities/power/outage", {"json": {"out": ["no/such"]}}), "out"),
        (
            ("post", "/utilities/water/isolate", {"json": {"point": BURST, "inoperable": ["x"]}}),
            "inoperable",
        ),
        (
            (
                "post",
                "/incidents/impact",
                {
                    "json": {
                        "geometry": {
                            "type": "LineString",
                            "coordinates": [[7.42, 43.73], [7.43, 43.74]],
                        },
                        "kind": "fire",
                    }
                },
            ),
            "geometry",
        ),
    ],
)
def test_bad_input_is_a_problem(client: TestClient, request_args, parameter: str) -> None:
    method, path, kwargs = request_args
    # the sample city has no heat pipes: an input the city lacks is a 409 naming it
    status = 409 if path == "/utilities/heat/outage" else 400
    problem(getattr(client, method)(path, **kwargs), status, parameter)


def test_unknown_network_is_404(client: TestClient) -> None:
    problem(client.get("/utilities/steam"), 404, "network")


def test_network_and_isolation(client: TestClient, city: twin.City) -> None:
    water = client.get("/utilities/water").json()
    water_nodes = "AND network = 'water' AND kind = "
    assert water["devices"] == current(city, "pipe_nodes", water_nodes + "'valve'")
    assert water["sources"] == current(city, "pipe_nodes", water_nodes + "'source'") > 0
    assert water["problems"] == {}
    body = client.post("/utilities/water/isolate", json={"point": BURST}).json()
    expected = city.isolate(tuple(BURST), network="water")
    assert [d["id"] for d in body["operate"]] == expected.operate
    assert all({"lon", "lat", "kind"} <= set(d) for d in body["operate"])
    assert body["summary"] == expected.summary()
    assert body["isolated"]["type"] == "FeatureCollection"
    stuck = body["operate"][0]["id"]
    again = client.post(
        "/utilities/water/isolate", json={"point": BURST, "inoperable": [stuck]}
    ).json()
    assert [d["id"] for d in again["unable"]] == [stuck]


def test_grid_outage_cascades(client: TestClient, city: twin.City) -> None:
    deps = city.utilities.dependents()
    transformer = deps.loc[deps["layer"] == "signals", "fed_by"].iloc[0]
    switch = "switch/" + transformer.removeprefix("transformer/")
    body = client.post("/utilities/power/outage", json={"operate": [switch]}).json()
    assert {n["id"] for n in body["nodes"] if n["kind"] == "transformer"} == {transformer}
    dark = {d["id"] for d in body["cascade"]["dark"]}
    assert set(deps.loc[deps["fed_by"] == transformer, "id"]) == dark


def test_incident_impact_of_the_burst_main(client: TestClient, city: twin.City) -> None:
    body = client.post(
        "/incidents/impact",
        json={"geometry": {"type": "Point", "coordinates": BURST}, "kind": "burst_main"},
    ).json()
    isolation = city.isolate(tuple(BURST), network="water")
    assert [d["id"] for d in body["utility"]["operate"]] == isolation.operate
    assert body["summary"]["utility"]["buildings"] == len(isolation.buildings)
    assert body["closures"]["road_ids"], "the works area closes the roads over the isolated main"
    # the sample's burst main lies on a one-way street leaving the extract: no unit reaches it
    assert body["units"]["features"] == [] == city.nearest_units(tuple(BURST), k=3)
    # and no unit kind is assigned to a burst main (the viewer says so, not "none reaches it")
    assert body["summary"]["unit_kind"] is None
    collision = client.post(
        "/incidents/impact",
        json={
            "geometry": {"type": "Point", "coordinates": [7.4182804, 43.7319223]},
            "kind": "collision",
        },
    ).json()
    units = collision["units"]["features"]
    # as many units as an impact asks for by default (3, api/incidents.py), of the kind that
    # answers a collision (README: "collision → hospitals")
    assert len(units) == 3 and {u["properties"]["kind"] for u in units} == {"hospital"}
    assert collision["summary"]["unit_kind"] == "hospital"
    assert collision["closures"]["road_ids"]  # the roads within 25 m
    fire = client.post(
        "/incidents/impact",
        json={
            "geometry": {"type": "Point", "coordinates": [7.430966, 43.748488]},
            "kind": "fire",
            "units": 1,
        },
    ).json()
    assert fire["utility"] is None
    assert fire["units"]["features"][0]["properties"]["kind"] == "fire_station"
    assert fire["summary"]["assets"]["buildings"] >= 1


def test_cameras_and_rasters(client: TestClient, city: twin.City) -> None:
    cameras = client.get("/cameras/coverage").json()
    assert cameras["cones"]["numberMatched"] == current(city, "cameras", "AND status = 'active'")
    rasters = client.get("/rasters").json()["rasters"]
    assert [r["name"] for r in rasters] == ["dem"]  # the one raster the sample city ships
    districts = client.get("/rasters/dem/districts").json()["districts"]
    assert len(districts) == current(city, "districts")
    assert all(d["max"] >= d["min"] for d in districts)
    zone = shapely.geometry.mapping(shapely.box(7.420, 43.730, 7.426, 43.736))
    stats = client.post("/rasters/dem/zonal", json={"geometry": zone}).json()["zones"][0]
    assert stats["count"] > 0
    problem(client.get("/rasters/nosuch/districts"), 400, "name")


@pytest.mark.parametrize("moment", ["", "yesterday", "2024-13-01", "2024-05-01T25:00:00Z"])
def test_a_moment_that_is_not_rfc3339_is_a_400(client: TestClient, moment: str) -> None:
    at = {"datetime": moment}
    for path in ("/onemap/districts", "/cameras/coverage", "/rasters", "/rasters/dem/districts"):
        problem(client.get(path, params=at), 400, "datetime")
    around = {"lon": 7.4215, "lat": 43.735, "radius_m": 100, **at}
    problem(client.get("/onemap/around", params=around), 400, "datetime")
    zone = shapely.geometry.mapping(shapely.box(7.420, 43.730, 7.426, 43.736))
    problem(client.post("/rasters/dem/zonal", params=at, json={"geometry": zone}), 400, "datetime")
    body = {"geometry": zone, "datetime": moment}
    problem(client.post("/onemap/within", json=body), 400, "datetime")
