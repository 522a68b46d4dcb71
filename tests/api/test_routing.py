"""The routing API: answers, closures through HTTP, floods, and problem+json for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from fastapi.testclient import TestClient

import twin
from api.app import create_app
from layers.settings import TwinSettings
from tests.assertions import problem, sql_scalar
from tests.routing.test_closures import flood_raster

A, B = "7.4165,43.7315", "7.4290,43.7400"


@pytest.fixture
def client(city: twin.City) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=city.url))) as test_client:
        yield test_client


def test_route(client: TestClient, city: twin.City) -> None:
    feature = client.get("/routing/route", params={"from": A, "to": B}).json()
    expected = city.route((7.4165, 43.7315), (7.4290, 43.7400))
    assert feature["properties"]["reachable"] is True
    assert feature["properties"]["duration_s"] == pytest.approx(expected.duration_s, abs=1e-3)
    assert feature["geometry"]["type"] == "LineString"
    assert feature["properties"]["steps"][0]["maneuver"] == "depart"
    emergency = client.get(
        "/routing/route", params={"from": A, "to": B, "profile": "emergency"}
    ).json()
    assert emergency["properties"]["duration_s"] < feature["properties"]["duration_s"]


def test_nearest_units(client: TestClient) -> None:
    body = client.get(
        "/routing/nearest", params={"incident": B, "kind": "fire_station", "k": 2}
    ).json()
    ranks = [f["properties"] for f in body["features"]]
    assert [r["rank"] for r in ranks] == [1, 2]
    assert ranks[0]["total_s"] <= ranks[1]["total_s"]
    # a fire crew turns out in 80 s (README, "Nearest units")
    assert all(r["kind"] == "fire_station" and r["turnout_s"] == 80.0 for r in ranks)


def test_isochrones(client: TestClient) -> None:
    body = client.get(
        "/routing/isochrones", params={"facilities": "7.4203,43.7349", "breaks": "2,4"}
    ).json()
    polygons = [shapely.geometry.shape(f["geometry"]) for f in body["features"]]
    assert [f["properties"]["minutes"] for f in body["features"]] == [2, 4]
    assert polygons[0].area < polygons[1].area


def test_coverage_and_matrix(client: TestClient, city: twin.City) -> None:
    body = client.get(
        "/routing/coverage", params={"kind": "hospital", "minutes": 4, "suggest": 1}
    ).json()
    assert 0 < body["total"]["population_share"] < 1  # hospitals leave people beyond 4 min
    # the API answers what the facade answers (checked against a brute-force search over every
    # candidate site in tests/routing/test_coverage.py): one site, adding people
    _, sites = city.coverage(kind="hospital", minutes=4, suggest=1)
    assert len(sites) == len(body["suggested_sites"]) == 1
    assert body["suggested_sites"][0]["added_population"] == pytest.approx(
        sites[0]["added_population"]
    )
    assert body["suggested_sites"][0]["added_population"] > 0
    # districts partition the city: every building is counted once
    assert sum(d["buildings"] for d in body["districts"]) == sql_scalar(
        city.url, "SELECT count(*) FROM buildings WHERE valid_to IS NULL"
    )
    matrix = client.post(
        "/routing/matrix",
        json={
            "origins": [[7.4165, 43.7315]],
            "destinations": [[7.4290, 43.7400], [7.4165, 43.7315]],
        },
    ).json()
    assert matrix["durations_s"][0][1] == 0 and matrix["durations_s"][0][0] > 0


def test_closure_through_the_api_changes_the_next_route(
    client: TestClient, city: twin.City
) -> None:
    first = client.get("/routing/route", params={"from": A, "to": B}).json()["properties"]
    road = first["road_ids"][len(first["road_ids"]) // 2]
    created = client.post("/routing/closures", json={"road_ids": [road], "kind": "incident"})
    assert created.status_code == 201 and created.json()["id"].startswith("api/")
    second = client.get("/routing/route", params={"from": A, "to": B}).json()["properties"]
    assert road not in second["road_ids"]


def test_flood_through_the_api(client: TestClient, tmp_path: Path) -> None:
    raster = flood_raster(tmp_path / "f.tif", (7.4200, 43.7340, 7.4210, 43.7350), 1.5)
    body = client.post(
        "/routing/flood", content=raster.read_bytes(), headers={"content-type": "image/tiff"}
    ).json()
    assert body["closed_road_ids"]
    assert client.delete("/routing/flood").status_code == 204


def test_unreachable_is_a_normal_answer(client: TestClient, city: twin.City) -> None:
    ring = (
        shapely.Point(7.4290, 43.7400)
        .buffer(0.0025)
        .difference(shapely.Point(7.4290, 43.7400).buffer(0.0015))
    )
    assert (
        client.post(
            "/routing/closures", json={"geometry": shapely.geometry.mapping(ring), "kind": "event"}
        ).status_code
        == 201
    )
    response = client.get("/routing/route", params={"from": A, "to": B})
    assert response.status_code == 200
    assert response.json()["properties"] == {
        "reachable": False,
        "reason": "no route",
        "profile": "car",
    }


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/routing/route", {"from": A, "to": "2.35,48.85"}, "to"),
        ("/routing/route", {"from": "east", "to": B}, "from"),
        ("/routing/route", {"from": A, "to": B, "profile": "bike"}, "profile"),
        ("/routing/route", {"from": A, "to": "7.455,43.715"}, "to"),  # at sea
        ("/routing/nearest", {"incident": B, "k": 0}, "k"),
        ("/routing/nearest", {"incident": B, "kind": "ambulance"}, "kind"),
        ("/routing/isochrones", {"facilities": A, "breaks": "1e308"}, "breaks"),
        ("/routing/isochrones", {"facilities": A, "breaks": "4,x"}, "breaks"),
        ("/routing/isochrones", {"facilities": A, "breaks": "-4"}, "breaks"),
        ("/routing/coverage", {"minutes": 0}, "minutes"),
        ("/routing/coverage", {"minutes": "inf"}, "minutes"),
        ("/routing/isochrones", {"facilities": A, "breaks": "4,nan,8"}, "breaks"),
        ("/routing/isochrones", {"facilities": A, "breaks": ",".join(["1"] * 13)}, "breaks"),
        ("/routing/route", {"from": "1,2,3", "to": B}, "from"),
        ("/routing/route", {"from": A}, "to"),
    ],
)
def test_bad_input_is_a_400_problem(
    client: TestClient, path: str, params: dict, parameter: str
) -> None:
    problem(client.get(path, params=params), 400, parameter)


def test_bad_closures(client: TestClient) -> None:
    problem(
        client.post(
            "/routing/closures", json={"geometry": {"type": "Polygon", "coordinates": [[1, 2]]}}
        ),
        400,
        "geometry",
    )
    problem(client.post("/routing/closures", json={"road_ids": ["nope"]}), 400, "road_ids")
    problem(client.post("/routing/closures", json={}), 400, "road_ids")
    problem(
        client.post("/routing/closures", json={"geometry": {"type": "Foo", "coordinates": [1, 2]}}),
        400,
        "geometry",
    )
    window = {
        "road_ids": [],
        "geometry": {"type": "Point", "coordinates": [7.42, 43.73]},
        "starts_at": "2026-02-01T00:00:00Z",
        "ends_at": "2026-01-01T00:00:00Z",
    }
    problem(client.post("/routing/closures", json=window), 400, "ends_at")
    far = {"type": "Point", "coordinates": [2.35, 48.85]}
    body = problem(client.post("/routing/closures", json={"geometry": far}), 400, "geometry")
    assert "outside the city's extent" in body["detail"]
    problem(
        client.post("/routing/matrix", json={"origins": [], "destinations": [[7.42, 43.73]]}),
        400,
        "origins",
    )
    problem(
        client.post("/routing/flood", content=b"", headers={"content-type": "image/tiff"}),
        400,
        "raster",
    )
