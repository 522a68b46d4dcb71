"""Scenarios over HTTP: made and edited by a signed-in planner, read with ``?scenario=``.

Every read route answers in the scenario a request names and the same route without it answers
for the base exactly as before; a request that would write the base refuses a scenario; bad
input is a problem+json naming the field.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient

from api.app import create_app
from layers.identity import add_user
from layers.queries import read_layer
from layers.settings import TwinSettings
from layers.tiles import WEB_MERCATOR_QUAD
from tests.assertions import problem

PASSWORD = "scenario-tests-1"
A, B = "7.4165,43.7315", "7.4290,43.7400"
TOWER = shapely.box(7.4205, 43.7340, 7.4208, 43.7343)
Z = 15
X, Y = WEB_MERCATOR_QUAD.tile(7.4206, 43.7341, Z)[:2]


@pytest.fixture(scope="module")
def client(routing_db: str) -> Iterator[TestClient]:
    """The API with the real guard (anonymous = public, who edits nothing)."""
    settings = TwinSettings(database_url=routing_db, mqtt_url="", auth_anonymous_role="public")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def sign_in(client: TestClient, url: str, role: str) -> dict[str, str]:
    """Sign-in headers of a new user of a role."""
    name = f"{role}-{secrets.token_hex(3)}"
    add_user(name, roles=[role], password=PASSWORD, url=url)
    token = client.post(
        "/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture(scope="module")
def planner(client: TestClient, routing_db: str) -> dict[str, str]:
    """A planner (who edits no layer of the base, and makes scenarios); the client's caller."""
    headers = sign_in(client, routing_db, "planner")
    client.headers.update(headers)
    return headers


@pytest.fixture
def scenario(client: TestClient, planner: dict[str, str]) -> Iterator[str]:
    """A fresh scenario, deleted afterwards."""
    name = f"api-{secrets.token_hex(4)}"
    made = client.post("/scenarios", json={"name": name, "title": "桥梁施工"}, headers=planner)
    assert made.status_code == 201, made.text
    assert made.headers["location"].endswith(f"/scenarios/{name}")
    yield name
    client.delete(f"/scenarios/{name}", headers=planner)


def feature(geometry: shapely.Geometry, **properties: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": shapely.geometry.mapping(geometry),
        "properties": properties,
    }


def test_a_planner_makes_and_edits_a_scenario_that_reads_apart_from_the_base(
    client: TestClient, planner: dict[str, str], scenario: str
) -> None:
    put = client.put(
        f"/scenarios/{scenario}/edits/buildings/tower-1",
        json=feature(TOWER, height_m=90.0, use="residential"),
        headers=planner,
    )
    assert put.status_code == 200, put.text
    assert put.json()["op"] == "add" and put.json()["revision"] == 1
    described = client.get(f"/scenarios/{scenario}").json()
    assert described["edits"] == {"buildings": 1} and described["author"].startswith("planner-")
    assert any(link["rel"] == "tiles" for link in described["links"])
    inside = client.get(f"/collections/buildings/items/tower-1?scenario={scenario}")
    assert inside.status_code == 200 and inside.json()["properties"]["height_m"] == 90.0
    assert client.get("/collections/buildings/items/tower-1").status_code == 404
    edits = client.get(f"/scenarios/{scenario}/edits").json()
    assert [(e["layer"], e["feature_id"], e["op"]) for e in edits["edits"]] == [
        ("buildings", "tower-1", "add")
    ]
    assert scenario in {s["name"] for s in client.get("/scenarios").json()["scenarios"]}


def test_tiles_and_one_map_answer_in_the_scenario_and_the_base_as_before(
    client: TestClient, planner: dict[str, str], scenario: str
) -> None:
    tile = f"/map/tiles/WebMercatorQuad/{Z}/{Y}/{X}?collections=buildings"
    base = client.get(tile)
    assert base.status_code == 200
    client.put(
        f"/scenarios/{scenario}/edits/buildings/tower-2",
        json=feature(TOWER, height_m=60.0),
        headers=planner,
    )
    inside = client.get(f"{tile}&scenario={scenario}")
    assert inside.status_code == 200 and inside.content != base.content
    assert inside.headers["etag"] != base.headers["etag"]
    again = client.get(tile)
    assert again.content == base.content and again.headers["etag"] == base.headers["etag"]
    template = client.get(f"/map/tiles/WebMercatorQuad/tilejson.json?scenario={scenario}")
    assert template.json()["tiles"][0].endswith(f"scenario={scenario}")
    around = "/onemap/around?lon=7.42065&lat=43.73415&radius_m=30&layers=buildings"

    def found(query: str) -> set[str]:
        layer = client.get(query).json()["layers"]["buildings"]
        return {f["properties"]["id"] for f in layer["features"]}

    ids_in, ids_base = found(f"{around}&scenario={scenario}"), found(around)
    assert "tower-2" in ids_in and "tower-2" not in ids_base


def test_a_closure_in_the_scenario_reroutes_it_and_not_the_base(
    client: TestClient, planner: dict[str, str], scenario: str
) -> None:
    base = client.get(f"/routing/route?from={A}&to={B}").json()
    road = base["properties"]["road_ids"][len(base["properties"]["road_ids"]) // 2]
    closure = feature(shapely.Point(7.4165, 43.7315), kind="works", road_ids=[road])
    put = client.put(f"/scenarios/{scenario}/edits/closures/works-1", json=closure, headers=planner)
    assert put.status_code == 200, put.text
    inside = client.get(f"/routing/route?from={A}&to={B}&scenario={scenario}").json()
    assert road not in inside["properties"]["road_ids"]
    assert inside["properties"]["duration_s"] > base["properties"]["duration_s"]
    assert client.get(f"/routing/route?from={A}&to={B}").json() == base


def test_an_out_of_service_station_is_not_sent_in_the_scenario(
    client: TestClient, planner: dict[str, str], scenario: str, routing_db: str
) -> None:
    nearest = "/routing/nearest?incident=7.4203,43.7349&kind=fire_station&k=1"
    first = client.get(nearest).json()["features"][0]["properties"]["unit"]
    station = read_layer("resources", url=routing_db).set_index("id").loc[first]
    out = feature(
        station.geometry, kind="fire_station", name=station["name"], status="out_of_service"
    )
    assert (
        client.put(
            f"/scenarios/{scenario}/edits/resources/{first}", json=out, headers=planner
        ).status_code
        == 200
    )
    inside = client.get(f"{nearest}&scenario={scenario}").json()["features"][0]["properties"][
        "unit"
    ]
    assert inside != first
    assert client.get(nearest).json()["features"][0]["properties"]["unit"] == first


def test_bad_requests_are_problems_naming_the_field(
    client: TestClient, planner: dict[str, str], scenario: str
) -> None:
    problem(client.get("/collections/buildings/items?scenario=nope"), 404, "scenario")
    problem(client.get("/scenarios/nope"), 404, "scenario")
    problem(
        client.get(f"/collections/buildings/items?scenario={scenario}&scenario=x"), 400, "scenario"
    )
    body = feature(shapely.Point(7.42, 43.73), kind="works")
    problem(
        client.post(f"/collections/closures/items?scenario={scenario}", json=body), 400, "scenario"
    )
    problem(client.post("/scenarios", json={"name": "Bad Name"}, headers=planner), 400, "name")
    problem(client.post("/scenarios", json={"name": scenario}, headers=planner), 409, "name")
    problem(
        client.post("/scenarios", json={"name": "x", "colour": 1}, headers=planner), 400, "colour"
    )
    problem(
        client.post("/scenarios", json={"name": "x", "settings": {"broken": 3}}, headers=planner),
        400,
        "settings.broken",
    )
    anonymous = TestClient(client.app)
    problem(anonymous.post("/scenarios", json={"name": "anonymous-one"}), 401, "scenario")
    problem(anonymous.get(f"/scenarios/{scenario}"), 401, "scenario")
    problem(anonymous.get(f"/collections/buildings/items?scenario={scenario}"), 401, "scenario")
    problem(
        client.patch(f"/scenarios/{scenario}", json={"status": "done"}, headers=planner),
        400,
        "status",
    )
    edits = f"/scenarios/{scenario}/edits"
    problem(client.put(f"{edits}/castles/c1", json=body, headers=planner), 400, "layer")
    problem(
        client.put(f"{edits}/closures/c1", json={**body, "id": "c2"}, headers=planner), 400, "id"
    )
    problem(
        client.put(
            f"{edits}/closures/c1", json=feature(shapely.Point(7.42, 43.73)), headers=planner
        ),
        400,
        "kind",
    )
    problem(
        client.put(
            f"{edits}/closures/c1",
            content=b"{",
            headers={**planner, "content-type": "application/json"},
        ),
        400,
        "body",
    )
    problem(client.delete(f"{edits}/buildings/no-such", headers=planner), 400, "featureId")
    problem(client.get(f"/map/tiles/WebMercatorQuad/{Z}/{Y}/{X}?at=yesterday"), 400, "at")
    # moments that are not moments in UTC (a tile's ETag is written in UTC)
    for edge in ("0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00"):
        problem(client.get(f"/map/tiles/WebMercatorQuad/{Z}/{Y}/{X}?at={edge}"), 400, "at")
        problem(
            client.get(f"/collections/resources/tiles/WebMercatorQuad/{Z}/{Y}/{X}?at={edge}"),
            400,
            "at",
        )
    problem(
        client.get(
            f"/map/tiles/WebMercatorQuad/{Z}/{Y}/{X}?collections=live_congestion&at=2026-01-01T00:00:00Z"
        ),
        400,
        "at",
    )
    assert client.get(f"/scenarios/{scenario}").json()["revision"] == 0


def test_status_settings_revisions_and_who_may_change_a_scenario(
    client: TestClient, planner: dict[str, str], routing_db: str
) -> None:
    name = f"api-{secrets.token_hex(4)}"
    made = client.post("/scenarios", json={"name": name, "author": "someone-else"})
    assert made.status_code == 201 and made.headers["etag"] == '"r0"'
    assert made.json()["author"].startswith("planner-")  # the caller, whatever the body says
    water = read_layer("pipelines", url=routing_db).query("network == 'water'").id.iloc[0]
    broken = {"broken": [{"layer": "pipelines", "id": water}]}
    changed = client.patch(
        f"/scenarios/{name}",
        json={"status": "active", "settings": broken},
        headers={"If-Match": '"r0"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["revision"] == 1 and changed.headers["etag"] == '"r1"'
    assert changed.json()["settings"]["broken"] == broken["broken"]
    # a change made from an older revision is refused, and says the current one
    stale = client.put(
        f"/scenarios/{name}/edits/closures/c1",
        json=feature(shapely.Point(7.42, 43.73), kind="works"),
        headers={"If-Match": '"r0"'},
    )
    problem(stale, 412, "If-Match")
    assert stale.headers["etag"] == '"r1"'
    problem(
        client.patch(f"/scenarios/{name}", json={}, headers={"If-Match": "r1"}), 400, "If-Match"
    )
    # settings name what the store holds
    for settings, parameter in [
        ({"broken": [{"layer": "pipelines", "id": "no-such-pipe"}]}, "settings.broken[0].id"),
        ({"flood": {"raster": "no-such-raster"}}, "settings.flood.raster"),
        ({"flood": {"raster": "dem"}}, "settings.flood.raster"),
        ({"signal_plan": "no-such-plan"}, "settings.signal_plan"),
        ({"deep": [[[[[[[[[[1]]]]]]]]]]}, "settings"),
        ({"big": "x" * 70_000}, "settings"),
    ]:
        problem(client.patch(f"/scenarios/{name}", json={"settings": settings}), 400, parameter)
    # another user may read it, not change it; a commander's own is his
    other = sign_in(client, routing_db, "emergency_commander")
    assert client.get(f"/scenarios/{name}", headers=other).status_code == 200
    problem(client.delete(f"/scenarios/{name}", headers=other), 403, "scenario")
    problem(
        client.put(
            f"/scenarios/{name}/edits/closures/c1",
            json=feature(shapely.Point(7.42, 43.73), kind="works"),
            headers=other,
        ),
        403,
        "scenario",
    )
    analyst = sign_in(client, routing_db, "analyst")
    assert client.get(f"/scenarios/{name}", headers=analyst).status_code == 200
    problem(client.post("/scenarios", json={"name": f"{name}-a"}, headers=analyst), 403, "scenario")
    # archived: kept, read, not edited until brought back
    assert client.patch(f"/scenarios/{name}", json={"status": "archived"}).status_code == 200
    closure = feature(shapely.Point(7.42, 43.73), kind="works")
    problem(client.put(f"/scenarios/{name}/edits/closures/c1", json=closure), 409, "scenario")
    assert client.patch(f"/scenarios/{name}", json={"status": "draft"}).status_code == 200
    assert client.put(f"/scenarios/{name}/edits/closures/c1", json=closure).status_code == 200
    assert client.delete(f"/scenarios/{name}").status_code == 204
    problem(client.get(f"/scenarios/{name}"), 404, "scenario")


def test_links_of_answers_in_a_scenario_keep_it(client: TestClient, scenario: str) -> None:
    page = client.get(f"/collections/roads/items?limit=2&scenario={scenario}").json()
    hrefs = [link["href"] for link in page["links"] if link["rel"] in ("self", "next")]
    assert hrefs and all(f"scenario={scenario}" in href for href in hrefs)
    tile = client.get(f"/map/tiles/WebMercatorQuad/{Z}/{Y}/{X}?scenario={scenario}")
    assert tile.headers["cache-control"] == "no-cache"


def test_figures_and_compare_over_http_agree_with_each_other(
    client: TestClient, planner: dict[str, str], scenario: str
) -> None:
    station = feature(shapely.Point(7.4180, 43.7330), kind="fire_station", name="新站")
    put = client.put(f"/scenarios/{scenario}/edits/resources/new-st", json=station, headers=planner)
    assert put.status_code == 200, put.text
    query = "minutes=4,8&kinds=fire_station"
    base = client.get(f"/scenarios/base/figures?{query}")
    inside = client.get(f"/scenarios/{scenario}/figures?{query}")
    compared = client.get(f"/scenarios/compare?a=base&b={scenario}&{query}")
    assert base.status_code == inside.status_code == compared.status_code == 200, compared.text

    def values(answer: Any) -> dict[tuple[str, str | None], Any]:
        return {(f["key"], f["district"]): f["value"] for f in answer.json()["figures"]}

    a, b = values(base), values(inside)
    rows = compared.json()["figures"]
    assert rows and {(r["key"], r["district"]) for r in rows} == set(a) | set(b)
    for row in rows:
        key = (row["key"], row["district"])
        assert row["a"] == a.get(key) and row["b"] == b.get(key)
        if row["a"] is not None and row["b"] is not None:
            assert row["difference"] == pytest.approx(row["b"] - row["a"])
    reached = ("reach.fire_station.4.buildings", None)
    assert b[reached] >= a[reached]
    assert compared.json()["features"]["resources"]["added"] == ["new-st"]
    problem(client.get(f"/scenarios/{scenario}/figures?minutes=soon"), 400, "minutes")
    problem(client.get(f"/scenarios/{scenario}/figures?kinds=castle"), 400, "kinds")
    problem(client.get("/scenarios/compare?b=nope"), 404, "b")
    problem(client.get("/scenarios/compare?a=nope&b=base"), 404, "a")
    problem(client.get("/scenarios/compare?b="), 400, "b")


def test_search_finds_what_the_scenario_adds_and_only_there(
    client: TestClient, scenario: str
) -> None:
    tower = feature(TOWER, height_m=40.0, name="Tour Zyxwvut")
    assert client.put(f"/scenarios/{scenario}/edits/buildings/zyx-1", json=tower).status_code == 200
    inside = client.get(f"/search?q=Zyxwvut&scenario={scenario}")
    base = client.get("/search?q=Zyxwvut")
    assert inside.status_code == base.status_code == 200, inside.text
    assert "zyx-1" in inside.text and "zyx-1" not in base.text


def test_coverage_service_areas_and_incident_impact_answer_in_the_scenario(
    client: TestClient, scenario: str, routing_db: str
) -> None:
    # the scenario's first station goes out of service and a new one opens in Fontvieille
    incident = {"geometry": {"type": "Point", "coordinates": [7.4203, 43.7349]}, "kind": "fire"}
    base_impact = client.post("/incidents/impact", json=incident).json()["summary"]
    first = base_impact["units"][0]["id"]
    station = read_layer("resources", url=routing_db).set_index("id").loc[first]
    out = feature(
        station.geometry, kind="fire_station", name=station["name"], status="out_of_service"
    )
    new = feature(
        shapely.Point(7.4160, 43.7290), kind="fire_station", name="新站", status="available"
    )
    for fid, body in ((first, out), ("new-station", new)):
        assert (
            client.put(f"/scenarios/{scenario}/edits/resources/{fid}", json=body).status_code == 200
        )
    impact = client.post(f"/incidents/impact?scenario={scenario}", json=incident).json()["summary"]
    assert first not in {u["id"] for u in impact["units"]}
    assert first in {
        u["id"] for u in client.post("/incidents/impact", json=incident).json()["summary"]["units"]
    }
    coverage = "/routing/coverage?kind=fire_station&minutes=4"
    in_scenario = client.get(f"{coverage}&scenario={scenario}").json()["total"]
    base = client.get(coverage).json()["total"]
    assert in_scenario["covered_buildings"] != base["covered_buildings"]
    areas = "/routing/isochrones?facilities=7.4203,43.7349&breaks=2"
    closure = feature(shapely.Point(7.4203, 43.7349).buffer(0.0015), kind="works")
    assert client.put(f"/scenarios/{scenario}/edits/closures/ring", json=closure).status_code == 200
    reached = client.get(f"{areas}&scenario={scenario}").json()["features"][0]["properties"]
    base_reached = client.get(areas).json()["features"][0]["properties"]
    assert reached["reached_length_m"] < base_reached["reached_length_m"]


def test_the_scenario_parameter_however_written_and_what_a_clearance_hides(
    client: TestClient, scenario: str, routing_db: str
) -> None:
    closure = feature(shapely.Point(7.4200, 43.7320), kind="works")
    assert (
        client.put(f"/scenarios/{scenario}/edits/closures/enc-1", json=closure).status_code == 200
    )
    # a key written with a percent escape is the same parameter, for reads and for refusals
    ids = {
        f["id"]
        for f in client.get(f"/collections/closures/items?scen%61rio={scenario}").json()["features"]
    }
    assert "enc-1" in ids
    problem(
        client.post(f"/routing/closures?scen%61rio={scenario}", json={"road_ids": ["x"]}),
        400,
        "scenario",
    )
    preflight = client.options(f"/collections/roads/items?scenario={scenario}")
    assert preflight.status_code != 400 or preflight.json().get("parameter") != "scenario"
    # a commander's broken power line (a layer above an analyst's clearance) is not the
    # analyst's to see: not in the scenario, not in its figures, not in a comparison
    commander = sign_in(client, routing_db, "emergency_commander")
    line = read_layer("power_lines", url=routing_db).id.iloc[0]
    name = f"api-{secrets.token_hex(4)}"
    made = client.post(
        "/scenarios",
        json={"name": name, "settings": {"broken": [{"layer": "power_lines", "id": line}]}},
        headers=commander,
    )
    assert made.status_code == 201, made.text
    try:
        analyst = sign_in(client, routing_db, "analyst")
        seen = [
            client.get(f"/scenarios/{name}", headers=analyst).text,
            client.get(
                f"/scenarios/{name}/figures?kinds=fire_station&minutes=4", headers=analyst
            ).text,
            client.get(
                f"/scenarios/compare?b={name}&kinds=fire_station&minutes=4", headers=analyst
            ).text,
        ]
        assert all(line not in text for text in seen)
        assert line in client.get(f"/scenarios/{name}", headers=commander).text
    finally:
        client.delete(f"/scenarios/{name}", headers=commander)
