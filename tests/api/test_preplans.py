"""Pre-plans and drills over HTTP: list, show, apply, drills and their reviews; problems naming
the field; the signed-in caller recorded; refusals of the scenarios' own guard answered."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import twin
from api.app import create_app
from layers import access, scenarios
from layers.database import get_engine
from layers.identity import add_user, update_user
from layers.settings import TwinSettings
from tests.assertions import problem
from tests.conditions import wait_until
from twin.scenarios import preplans

A, B = (7.4165, 43.7315), (7.4290, 43.7400)  # as tests/routing/test_closures.py
PASSWORD = "preplan-tests-1"


def ago(seconds: float) -> str:
    """The moment ``seconds`` ago, RFC 3339 (a replayed drill's start)."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def forget_preplan_scenarios(url: str) -> None:
    """Delete the drills and the scenarios pre-plans made (a drilled scenario is kept)."""
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("DELETE FROM drills"))
        conn.execute(sa.text("DELETE FROM scenarios WHERE settings ? 'preplan'"))


@pytest.fixture(scope="module")
def client(routing_db: str) -> Iterator[TestClient]:
    """The API over the sample city with the built-in pre-plans."""
    preplans.seed(url=routing_db)
    app = create_app(TwinSettings(database_url=routing_db))
    with TestClient(app) as test_client:
        yield test_client
    forget_preplan_scenarios(routing_db)


@pytest.fixture(scope="module")
def guarded(routing_db: str) -> Iterator[TestClient]:
    """The API with the real guard (anonymous = public, who edits nothing)."""
    preplans.seed(url=routing_db)
    settings = TwinSettings(database_url=routing_db, mqtt_url="", auth_anonymous_role="public")
    with TestClient(create_app(settings)) as test_client:
        yield test_client
    forget_preplan_scenarios(routing_db)


def sign_in(client: TestClient, url: str, role: str) -> tuple[str, dict[str, str]]:
    """Add a user of a role; return its name and sign-in headers."""
    name = f"{role}-{secrets.token_hex(3)}"
    add_user(name, roles=[role], password=PASSWORD, url=url)
    token = client.post(
        "/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text
    return name, {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture(scope="module")
def place(routing_db: str) -> tuple[float, float]:
    """A place in the middle of the base route from A to B."""
    trip = twin.connect(routing_db).route(A, B)
    assert trip is not None
    middle = trip.geometry.interpolate(0.5, normalized=True)
    return middle.x, middle.y


def test_preplans_are_listed_and_shown(client: TestClient) -> None:
    listed = client.get("/preplans")
    assert listed.status_code == 200
    names = {p["name"]: p for p in listed.json()}
    assert len(names) >= 12 and names["fire"]["title"] == {"en": "Building fire", "zh": "建筑火灾"}
    one = client.get("/preplans/fire").json()
    assert one == names["fire"] and one["version"] >= 1 and one["builtin"] is True
    assert client.get("/preplans/burst_main").json()["name"] == "water_main_burst"
    problem(client.get("/preplans/volcano"), 404, "name")


def test_apply_makes_a_scenario_whose_dispatch_is_nearest_units_in_it(
    client: TestClient, routing_db: str, place: tuple[float, float]
) -> None:
    answer = client.post(
        "/preplans/fire/apply", json={"place": list(place), "name": "pp-api", "author": "cmd"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == "/scenarios/pp-api"
    body = answer.json()
    assert body["name"] == "pp-api" and body["author"] == "cmd"
    city = twin.connect(routing_db)
    with scenarios.using("pp-api", url=routing_db):
        for group in body["settings"]["dispatch"]:
            expected = city.nearest_units(place, kind=group["kind"], k=group["requested"])
            assert [u["id"] for u in group["units"]] == [u.id for u in expected]
    assert body["edits"] == {"closures": 1, "incidents": 1}
    # a GeoJSON Point is a place too
    point = {"type": "Point", "coordinates": list(place)}
    assert client.post("/preplans/collision/apply", json={"place": point}).status_code == 201


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({}, "place"),
        ({"place": [8.5, 47.4]}, "place"),
        ({"place": "7.42,43.73"}, "place"),
        ({"place": [7.42]}, "place"),
        ({"place": {"type": "LineString", "coordinates": [[7.42, 43.73], [7.43, 43.74]]}}, "place"),
        ({"place": [7.455, 43.705]}, "place"),  # at sea: no unit can be routed there
        ({"place": [7.42, 43.73], "name": "Not A Slug"}, "name"),
        ({"place": [7.42, 43.73], "colour": "red"}, "colour"),
    ],
)
def test_bad_apply_requests_are_problems_naming_the_field(
    client: TestClient, body: dict, parameter: str
) -> None:
    problem(client.post("/preplans/fire/apply", json=body), 400, parameter)


def test_apply_refuses_an_unknown_preplan_and_a_taken_name(
    client: TestClient, place: tuple[float, float]
) -> None:
    problem(client.post("/preplans/volcano/apply", json={"place": list(place)}), 404, "name")
    body = {"place": list(place), "name": "pp-api-twice"}
    assert client.post("/preplans/snow_ice/apply", json=body).status_code == 201
    problem(client.post("/preplans/snow_ice/apply", json=body), 409, "name")


def test_a_drill_is_started_logged_ended_and_reviewed(
    client: TestClient, place: tuple[float, float]
) -> None:
    started = client.post(
        "/drills",
        json={
            "preplan": "traffic_accident",
            "place": list(place),
            "lead": "chief",
            "started_at": ago(4000),  # held earlier, replayed from its log
        },
    )
    assert started.status_code == 201, started.text
    drill = started.json()
    assert started.headers["location"] == f"/drills/{drill['id']}"
    assert drill["preplan"] == "traffic_accident" and drill["ended_at"] is None
    for actor, step, at in [
        ("dispatcher", "dispatch", 60),  # target 64
        ("ambulance 3", "ambulance_on_scene", 700),  # target 604
        ("police", "scene_secured", 850),  # target 900
    ]:
        logged = client.post(
            f"/drills/{drill['id']}/actions", json={"actor": actor, "step": step, "elapsed_s": at}
        )
        assert logged.status_code == 201, logged.text
        assert logged.json()["elapsed_s"] == at
    running = client.get(f"/drills/{drill['id']}").json()
    assert running["summary"]["ended"] is False and running["summary"]["elapsed_s"] >= 4000
    assert running["summary"]["overdue"] == 2 and running["summary"]["pending"] == 0
    overdue = {s["step"]: s for s in running["steps"] if s["status"] == "overdue"}
    assert set(overdue) == {"casualties_transported", "road_cleared"}
    assert overdue["road_cleared"]["late_s"] >= 4000 - 3600
    ended = client.post(f"/drills/{drill['id']}/end", json={"elapsed_s": 3000})
    assert ended.status_code == 200
    review = client.get(f"/drills/{drill['id']}").json()
    assert review == ended.json()
    assert {s["step"]: s["status"] for s in review["steps"]} == {
        "dispatch": "on_time",
        "ambulance_on_scene": "late",
        "scene_secured": "on_time",
        "casualties_transported": "missed",
        "road_cleared": "missed",
    }
    assert review["drill"]["duration_s"] == 3000
    assert drill["id"] in [d["id"] for d in client.get("/drills").json()]
    # ended: nothing more is logged, nor is it ended again
    problem(client.post(f"/drills/{drill['id']}/actions", json={"actor": "x"}), 409, "drill_id")
    problem(client.post(f"/drills/{drill['id']}/end"), 409, "drill_id")


def test_a_drill_runs_on_an_applied_scenario_and_ends_by_the_clock(
    client: TestClient, place: tuple[float, float]
) -> None:
    made = client.post("/preplans/gas_leak/apply", json={"place": list(place)}).json()
    started = client.post("/drills", json={"scenario": made["name"]})
    assert started.status_code == 201 and started.json()["scenario"] == made["name"]
    drill_id = started.json()["id"]
    logged = client.post(f"/drills/{drill_id}/actions", json={"actor": "crew", "step": "cordon"})
    assert logged.status_code == 201 and logged.json()["elapsed_s"] >= 0
    ended = client.post(f"/drills/{drill_id}/end")
    assert ended.status_code == 200 and ended.json()["drill"]["duration_s"] >= 0


def test_bad_drill_requests_are_problems_naming_the_field(
    client: TestClient, place: tuple[float, float]
) -> None:
    problem(client.post("/drills", json={}), 400, "preplan")
    problem(client.post("/drills", json={"preplan": "fire"}), 400, "place")
    problem(
        client.post("/drills", json={"preplan": "volcano", "place": list(place)}), 404, "preplan"
    )
    problem(client.post("/drills", json={"scenario": "pp-nowhere"}), 404, "scenario")
    problem(client.post("/drills", json={"preplan": "fire", "place": [8.5, 47.4]}), 400, "place")
    problem(
        client.post("/drills", json={"preplan": "snow_ice", "place": list(place), "started_at": 5}),
        400,
        "started_at",
    )
    for began in (
        (datetime.now(UTC) + timedelta(hours=1)).isoformat(),  # not yet
        "2026-12-01T09:00:00",  # no offset
    ):
        body = {"preplan": "snow_ice", "place": list(place), "started_at": began}
        problem(client.post("/drills", json=body), 400, "started_at")
    body = {"preplan": "snow_ice", "place": list(place), "started_at": ago(1000)}
    drill_id = client.post("/drills", json=body).json()["id"]
    actions = f"/drills/{drill_id}/actions"
    problem(client.post(actions, json={"actor": "x", "step": "nonsense"}), 400, "step")
    problem(client.post(actions, json={"step": "gritted"}), 400, "actor")
    problem(client.post(actions, json={"actor": " "}), 400, "actor")
    problem(client.post(actions, json={"actor": "x", "elapsed_s": -5}), 400, "elapsed_s")
    problem(client.post(actions, json={"actor": "x", "elapsed_s": "soon"}), 400, "elapsed_s")
    assert client.post(actions, json={"actor": "x", "elapsed_s": 500}).status_code == 201
    problem(client.post(f"/drills/{drill_id}/end", json={"elapsed_s": 100}), 400, "elapsed_s")
    problem(client.post(actions, json={"actor": "x", "elapsed_s": 600_000}), 400, "elapsed_s")
    problem(client.post(f"/drills/{drill_id}/end", json={"elapsed_s": 600_000}), 400, "elapsed_s")
    problem(client.get("/drills/999999"), 404, "drill_id")
    problem(client.get("/drills/abc"), 400, "drill_id")
    problem(client.post("/drills/999999/actions", json={"actor": "x"}), 404, "drill_id")
    problem(client.post("/drills/999999/end"), 404, "drill_id")


def test_a_moment_that_has_not_come_is_refused_and_the_drill_still_ends(
    client: TestClient, place: tuple[float, float]
) -> None:
    drill_id = client.post("/drills", json={"preplan": "fire", "place": list(place)}).json()["id"]
    late = {"actor": "x", "step": "dispatch", "elapsed_s": 600_000}
    refused = problem(client.post(f"/drills/{drill_id}/actions", json=late), 400, "elapsed_s")
    assert "future" in refused["detail"]
    problem(client.post(f"/drills/{drill_id}/end", json={"elapsed_s": 600_000}), 400, "elapsed_s")
    ended = client.post(f"/drills/{drill_id}/end")
    assert ended.status_code == 200 and ended.json()["summary"]["ended"] is True
    assert ended.json()["summary"]["actions"] == 0


def test_the_signed_in_caller_is_recorded_and_a_drilled_scenario_kept(
    guarded: TestClient, routing_db: str, place: tuple[float, float]
) -> None:
    name, commander = sign_in(guarded, routing_db, "emergency_commander")
    body = {"place": list(place), "author": "somebody else"}
    made = guarded.post("/preplans/fire/apply", json=body, headers=commander)
    assert made.status_code == 201, made.text
    assert made.json()["author"] == name  # the caller, not the name given
    scenario = made.json()["name"]
    started = guarded.post(
        "/drills", json={"scenario": scenario, "started_at": ago(100)}, headers=commander
    )
    assert started.status_code == 201, started.text
    assert started.json()["started_by"] == name
    drill_id = started.json()["id"]
    logged = guarded.post(
        f"/drills/{drill_id}/actions",
        json={"actor": "engine 1", "step": "dispatch", "elapsed_s": 50},
        headers=commander,
    )
    assert logged.status_code == 201, logged.text
    assert logged.json()["actor"] == "engine 1" and logged.json()["logged_by"] == name
    review = guarded.get(f"/drills/{drill_id}", headers=commander).json()
    assert review["actions"][0]["logged_by"] == name
    # the drill's record needs its scenario: deleting it is refused
    problem(guarded.delete(f"/scenarios/{scenario}", headers=commander), 409, "scenario")
    assert guarded.get(f"/scenarios/{scenario}", headers=commander).status_code == 200


def test_a_caller_the_scenarios_guard_refuses_gets_a_problem_not_an_error(
    guarded: TestClient, routing_db: str, place: tuple[float, float]
) -> None:
    body = {"place": list(place)}
    # anonymous (public edits nothing): sign in
    anonymous = guarded.post("/preplans/fire/apply", json=body)
    assert anonymous.status_code == 401 and anonymous.json()["status"] == 401
    # a planner may make scenarios but not write incidents
    _, planner = sign_in(guarded, routing_db, "planner")
    assert guarded.post("/preplans/fire/apply", json=body, headers=planner).status_code == 403
    # a dispatcher who writes incidents and closures but may not make scenarios: the
    # scenarios' own guard refuses it, as a 403 problem
    role = f"pp_dispatcher_{secrets.token_hex(3)}"
    with get_engine(routing_db).begin() as conn:
        conn.execute(
            sa.text("INSERT INTO access_roles (name, clearance, description) VALUES (:r, 2, '')"),
            {"r": role},
        )
    for layer, permission in (("*", "read"), ("incidents", "edit"), ("closures", "edit")):
        access.permit(role, layer, permission, url=routing_db)  # type: ignore[arg-type]
    name, dispatcher = sign_in(guarded, routing_db, role)
    try:
        count = len(scenarios.list_scenarios(url=routing_db))
        # the new role's rules are read when their counter moves (at most every
        # RULES_REFRESH_S): until then the role is unknown, and the caller sees no layer
        refused = wait_until(
            lambda: (
                answer
                if (
                    answer := guarded.post("/preplans/fire/apply", json=body, headers=dispatcher)
                ).status_code
                != 404
                else None
            ),
            timeout_s=10,
            what="the new role's rules in force",
        )
        problem(refused, 403, "scenario")
        assert len(scenarios.list_scenarios(url=routing_db)) == count
    finally:
        update_user(name, disabled=True, url=routing_db)
        with get_engine(routing_db).begin() as conn:
            conn.execute(sa.text("DELETE FROM access_permissions WHERE role = :r"), {"r": role})
