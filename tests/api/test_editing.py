"""OGC API - Features Part 4 on the edited layers: versions, ETags, roles and the audit.

Every write goes to a real PostGIS and is read back through the API and in SQL. The race is
run against a served API by concurrent clients, released together by a barrier.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import editing as editing_api
from api import errors, features, security
from api.app import create_app
from layers import access, editing
from layers.database import get_engine
from layers.identity import add_user
from layers.settings import TwinSettings
from tests.assertions import problem, sql_scalar
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT

PART4 = "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf"
conformance = pytest.mark.conformance
PASSWORD = "correct horse battery staple"
EDITED = ("incidents", "closures", "resources", "signals")
GEOJSON = "application/geo+json"
HERE = {"type": "Point", "coordinates": [7.4246, 43.7384]}  # Monaco, inside the city extent


@pytest.fixture(scope="module")
def url(db_url: str) -> str:
    """The write database with the edited layers emptied once for the module."""
    with get_engine(db_url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(EDITED)} RESTART IDENTITY"))
    return db_url


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[TestClient]:
    """The API as the tests' anonymous administrator."""
    with TestClient(create_app(TwinSettings(database_url=url, mqtt_url=""))) as test_client:
        yield test_client


def incident(**properties: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": HERE,
        "properties": {"kind": "fire", "severity": 2, "status": "open", **properties},
    }


def create(client: TestClient, layer: str = "incidents", **body: Any) -> tuple[str, str]:
    """POST a feature; return its id and ETag."""
    answer = client.post(
        f"/collections/{layer}/items",
        json={**incident(), **body},
        headers={"content-type": GEOJSON},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], answer.headers["ETag"]


def versions(url: str, layer: str, feature_id: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT vid, valid_from, valid_to, severity FROM {layer} WHERE id = :id "
                "ORDER BY vid"
            ),
            {"id": feature_id},
        )
        return [tuple(row) for row in rows]


# -- create, read with ETag ----------------------------------------------------------------------


@conformance(f"{PART4}/create-replace-delete")
@conformance(f"{PART4}/features")
def test_post_creates_a_feature_with_location_and_etag(client: TestClient, url: str) -> None:
    answer = client.post(
        "/collections/incidents/items",
        json={**incident(note="smoke"), "id": "fire-1"},
        headers={"content-type": GEOJSON},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"] == GEOJSON
    assert answer.headers["Location"].endswith("/collections/incidents/items/fire-1")
    vid = sql_scalar(url, "SELECT vid FROM incidents WHERE id = 'fire-1' AND valid_to IS NULL")
    assert answer.headers["ETag"] == f'"{vid}"'
    body = answer.json()
    assert body["id"] == "fire-1"
    assert body["properties"]["severity"] == 2 and body["properties"]["note"] == "smoke"
    assert body["properties"]["source"] == editing.EDIT_SOURCE
    # the Location answers the feature, with the same ETag
    read = client.get(answer.headers["Location"])
    assert read.status_code == 200
    assert read.headers["ETag"] == answer.headers["ETag"]
    assert read.json()["properties"]["note"] == "smoke"
    # a create without an id gets one; a create of a current id is a conflict
    new_id, _ = create(client)
    assert new_id and new_id != "fire-1"
    again = client.post("/collections/incidents/items", json={**incident(), "id": "fire-1"})
    problem(again, 409, "id")


@conformance(f"{PART4}/optimistic-locking-etags")
def test_a_read_carries_the_etag_and_if_none_match_answers_304(client: TestClient) -> None:
    create(client)
    create(client)  # so that this feature's vid is above 2
    feature_id, etag = create(client)
    read = client.get(f"/collections/incidents/items/{feature_id}")
    assert read.headers["ETag"] == etag
    same = client.get(f"/collections/incidents/items/{feature_id}", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.headers["ETag"] == etag and not same.content
    other = client.get(
        f"/collections/incidents/items/{feature_id}", headers={"If-None-Match": '"1", "2"'}
    )
    assert other.status_code == 200 and other.headers["ETag"] == etag
    # every layer's items carry ETags, not only the edited ones
    roads = client.get("/collections/roads/items/nothing-here")
    assert roads.status_code == 404 and "ETag" not in roads.headers


# -- versions --------------------------------------------------------------------------------


@conformance(f"{PART4}/update")
def test_each_write_is_a_new_version_and_the_old_one_stays_readable(
    client: TestClient, url: str
) -> None:
    feature_id, etag = create(client, properties={"kind": "flood", "severity": 1, "gauge": "g7"})
    before = sql_scalar(url, "SELECT clock_timestamp()")
    patched = client.patch(
        f"/collections/incidents/items/{feature_id}",
        json={"properties": {"severity": 4, "gauge": None}},
        headers={"If-Match": etag, "content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.headers["ETag"] != etag
    props = patched.json()["properties"]
    assert props["severity"] == 4 and props["kind"] == "flood" and "gauge" not in props
    # a replace: the whole feature
    replaced = client.put(
        f"/collections/incidents/items/{feature_id}",
        json={
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [7.42, 43.73]},
            # what a read shows besides the attributes is ignored when sent back
            "properties": {"kind": "collision", "source": "x", "valid_from": "1999-01-01"},
        },
        headers={"If-Match": patched.headers["ETag"]},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["properties"]["kind"] == "collision"
    assert replaced.json()["properties"]["source"] == editing.EDIT_SOURCE
    assert replaced.json()["properties"]["severity"] is None
    stored = sql_scalar(
        url, "SELECT props FROM incidents WHERE id = :id AND valid_to IS NULL", id=feature_id
    )
    assert stored == {}
    rows = versions(url, "incidents", feature_id)
    assert [row[3] for row in rows] == [1, 4, None]
    assert rows[0][2] == rows[1][1] and rows[1][2] == rows[2][1] and rows[2][2] is None
    # datetime= shows the version valid then
    at = (before - timedelta(microseconds=1)).isoformat()
    old = client.get("/collections/incidents/items", params={"datetime": at, "limit": 10000})
    [then] = [f for f in old.json()["features"] if f["id"] == feature_id]
    assert then["properties"]["severity"] == 1 and then["properties"]["gauge"] == "g7"


@conformance(f"{PART4}/create-replace-delete")
def test_a_deleted_feature_is_404_after_and_visible_before(client: TestClient, url: str) -> None:
    feature_id, etag = create(client)
    valid_from = sql_scalar(url, "SELECT valid_from FROM incidents WHERE id = :id", id=feature_id)
    gone = client.delete(f"/collections/incidents/items/{feature_id}", headers={"If-Match": etag})
    assert gone.status_code == 204 and not gone.content
    problem(client.get(f"/collections/incidents/items/{feature_id}"), 404, "featureId")
    now = client.get("/collections/incidents/items", params={"limit": 10000}).json()
    assert feature_id not in {f["id"] for f in now["features"]}
    at = (valid_from + timedelta(microseconds=1)).isoformat()
    then = client.get("/collections/incidents/items", params={"datetime": at, "limit": 10000})
    assert feature_id in {f["id"] for f in then.json()["features"]}
    assert len(versions(url, "incidents", feature_id)) == 1  # retired, not removed
    again = client.delete(f"/collections/incidents/items/{feature_id}", headers={"If-Match": etag})
    problem(again, 404, "featureId")


# -- preconditions -------------------------------------------------------------------------------


@conformance(f"{PART4}/optimistic-locking-etags")
def test_without_if_match_428_and_with_a_stale_one_412(client: TestClient, url: str) -> None:
    feature_id, etag = create(client)
    path = f"/collections/incidents/items/{feature_id}"
    problem(client.put(path, json=incident()), 428, "If-Match")
    problem(client.patch(path, json={"properties": {"severity": 3}}), 428, "If-Match")
    problem(client.delete(path), 428, "If-Match")
    problem(client.delete(path, headers={"If-Match": "*"}), 400, "If-Match")
    problem(client.delete(path, headers={"If-Match": "nope"}), 400, "If-Match")
    fresh = client.patch(
        path, json={"properties": {"severity": 3}}, headers={"If-Match": etag}
    ).headers["ETag"]
    for method in ("put", "patch", "delete"):
        kwargs: dict[str, Any] = {"headers": {"If-Match": etag}}
        if method != "delete":
            kwargs["json"] = incident(severity=5)
        answer = getattr(client, method)(path, **kwargs)
        body = problem(answer, 412, "If-Match")
        assert fresh in body["detail"]
    # a weak tag never matches (If-Match compares strongly); a list with the current one does
    problem(client.patch(path, json={}, headers={"If-Match": f"W/{fresh}"}), 412, "If-Match")
    listed = client.patch(
        path, json={"properties": {"severity": 1}}, headers={"If-Match": f'"1", {fresh}'}
    )
    assert listed.status_code == 200
    assert [row[3] for row in versions(url, "incidents", feature_id)] == [2, 3, 1]


def test_two_clients_editing_the_same_incident_one_wins_the_others_get_412(url: str) -> None:
    """Eight clients PATCH one incident from the same version at once: one 200, seven 412."""
    with api_server(url, root=ROOT) as address:
        first = httpx.post(
            f"{address}/collections/incidents/items", json=incident(severity=1), timeout=30
        )
        assert first.status_code == 201, first.text
        feature_id, etag = first.json()["id"], first.headers["ETag"]
        clients = 8
        barrier = threading.Barrier(clients)
        answers: dict[int, httpx.Response] = {}

        def edit(n: int) -> None:
            with httpx.Client(base_url=address, timeout=30) as session:
                barrier.wait()
                answers[n] = session.patch(
                    f"/collections/incidents/items/{feature_id}",
                    json={"properties": {"severity": 2 + n % 4, "by": f"client-{n}"}},
                    headers={"If-Match": etag},
                )

        threads = [threading.Thread(target=edit, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        statuses = sorted(answer.status_code for answer in answers.values())
        assert statuses == [200] + [412] * (clients - 1), [a.text for a in answers.values()]
        [winner] = [n for n, a in answers.items() if a.status_code == 200]
        current = httpx.get(f"{address}/collections/incidents/items/{feature_id}", timeout=30)
        assert current.json()["properties"]["by"] == f"client-{winner}"
        assert current.headers["ETag"] == answers[winner].headers["ETag"]
        # history: the first version, then the winner's; a refused edit wrote nothing
        rows = versions(url, "incidents", feature_id)
        assert [row[3] for row in rows] == [1, 2 + winner % 4]
        # the loser re-reads and applies its edit over the winner's: nothing is lost
        loser = next(n for n, a in answers.items() if a.status_code == 412)
        again = httpx.patch(
            f"{address}/collections/incidents/items/{feature_id}",
            json={"properties": {"note": f"client-{loser}"}},
            headers={"If-Match": current.headers["ETag"]},
            timeout=30,
        )
        assert again.status_code == 200
        assert again.json()["properties"]["by"] == f"client-{winner}"
        assert again.json()["properties"]["note"] == f"client-{loser}"


# -- validation and layers -----------------------------------------------------------------------


def test_bad_features_are_400s_naming_the_attribute(client: TestClient, url: str) -> None:
    path = "/collections/incidents/items"
    problem(client.post(path, json=incident(severity=9)), 400, "severity")
    problem(client.post(path, json=incident(status="smouldering")), 400, "status")
    problem(client.post(path, json=incident(starts_at="yesterday")), 400, "starts_at")
    problem(client.post(path, json={**incident(), "properties": {"severity": 2}}), 400, "kind")
    problem(client.post(path, json={**incident(), "geometry": None}), 400, "geometry")
    bad_geometry = {**incident(), "geometry": {"type": "Point", "coordinates": "x"}}
    problem(client.post(path, json=bad_geometry), 400, "geometry")
    line = {**incident(), "geometry": {"type": "LineString", "coordinates": [[7.42, 43.73]] * 2}}
    problem(client.post(path, json=line), 400, "geometry")
    problem(client.post(path, json=[1, 2]), 400, "body")
    problem(client.post(path, content=b"{not json", headers={"content-type": GEOJSON}), 400, "body")
    answer = client.post(path, content=b"<x/>", headers={"content-type": "application/xml"})
    problem(answer, 415, "Content-Type")
    problem(client.post(path, json={**incident(), "id": "a\x00b"}), 400, "id")
    feature_id, etag = create(client)
    patch = client.patch(
        f"{path}/{feature_id}", json={"properties": {"severity": 0}}, headers={"If-Match": etag}
    )
    problem(patch, 400, "severity")
    rename = client.put(
        f"{path}/{feature_id}", json={**incident(), "id": "other"}, headers={"If-Match": etag}
    )
    problem(rename, 400, "id")
    # nothing of the refused writes was stored
    assert len(versions(url, "incidents", feature_id)) == 1
    assert sql_scalar(url, "SELECT count(*) FROM incidents WHERE severity > 5") == 0


def test_layers_not_edited_answer_405_with_allow(client: TestClient) -> None:
    for layer in ("roads", "buildings", "pipelines", "live_congestion"):
        answer = client.post(f"/collections/{layer}/items", json=incident())
        problem(answer, 405, "collectionId")
        assert answer.headers["Allow"] == "GET"
        for method in ("put", "patch", "delete"):
            kwargs: dict[str, Any] = {"headers": {"If-Match": '"1"'}}
            if method != "delete":
                kwargs["json"] = incident()
            answer = getattr(client, method)(f"/collections/{layer}/items/x", **kwargs)
            problem(answer, 405, "collectionId")
            assert answer.headers["Allow"] == "GET"
    problem(client.post("/collections/nowhere/items", json=incident()), 404, "collectionId")


def test_every_edited_layer_takes_a_feature(client: TestClient) -> None:
    bodies = {
        "closures": {"kind": "works", "road_ids": ["r1", "r2"]},
        "resources": {"kind": "fire_station", "name": "Caserne", "status": "available"},
        "signals": {"program": "p1", "cycle_s": 90, "phases": [{"duration_s": 42, "state": "GGr"}]},
    }
    for layer, properties in bodies.items():
        answer = client.post(
            f"/collections/{layer}/items",
            json={"type": "Feature", "geometry": HERE, "properties": properties},
        )
        assert answer.status_code == 201, answer.text
        stored = answer.json()["properties"]
        assert {k: stored[k] for k in properties} == properties
        # resources' status: the edit an operator makes most
        if layer == "resources":
            busy = client.patch(
                answer.headers["Location"],
                json={"properties": {"status": "busy"}},
                headers={"If-Match": answer.headers["ETag"]},
            )
            assert busy.status_code == 200 and busy.json()["properties"]["status"] == "busy"
            assert busy.json()["properties"]["name"] == "Caserne"


# -- roles and audit -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], list[Any]]]:
    """The features and editing routes behind the real guard, anonymous = public, audited.

    Yields the client, sign-in headers per role and the audit events the guard reported.
    """
    settings = TwinSettings(database_url=url, auth_anonymous_role="public", mqtt_url="")
    audit: list[Any] = []

    def record(grant: access.Grant, scope: Any, status: int, touched: list[Any]) -> None:
        audit.append(
            (
                grant.principal.name,
                scope["method"],
                status,
                [(t.layer, t.permission, t.count, list(t.ids)) for t in touched],
            )
        )

    app = FastAPI()
    errors.install(app)
    security.install(app, settings, audit=record)
    app.include_router(security.routes(settings))
    app.include_router(features.routes(url))
    app.include_router(editing_api.routes(url))
    suffix = secrets.token_hex(3)
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    with TestClient(app) as test_client:
        for role in ("planner", "traffic_engineer", "emergency_commander"):
            name = f"{role}-{suffix}"
            add_user(name, roles=[role], password=PASSWORD, url=url)
            token = test_client.post(
                "/auth/token",
                data={"grant_type": "password", "username": name, "password": PASSWORD},
            )
            assert token.status_code == 200, token.text
            headers[role] = {"Authorization": f"Bearer {token.json()['access_token']}"}
        yield test_client, headers, audit


def test_roles_decide_who_edits(
    client: TestClient, guarded: tuple[TestClient, dict[str, dict[str, str]], list[Any]]
) -> None:
    api, headers, _ = guarded
    problem(api.post("/collections/closures/items", json=incident()), 401, "collectionId")
    problem(
        api.post("/collections/incidents/items", json=incident(), headers=headers["planner"]),
        403,
        "collectionId",
    )
    commander = headers["emergency_commander"]
    made = api.post("/collections/incidents/items", json=incident(), headers=commander)
    assert made.status_code == 201, made.text
    signal_id, signal_etag = create(client, "signals", properties={"program": "p2", "cycle_s": 60})
    refused = api.patch(
        f"/collections/signals/items/{signal_id}",
        json={"properties": {"cycle_s": 70}},
        headers={**commander, "If-Match": signal_etag},
    )
    problem(refused, 403, "collectionId")
    engineer = {**headers["traffic_engineer"], "If-Match": signal_etag}
    allowed = api.patch(
        f"/collections/signals/items/{signal_id}",
        json={"properties": {"cycle_s": 70}},
        headers=engineer,
    )
    assert allowed.status_code == 200 and allowed.json()["properties"]["cycle_s"] == 70
    # an engineer may not edit incidents (which its clearance reads): 403
    problem(
        api.delete(
            f"/collections/incidents/items/{made.json()['id']}",
            headers={**headers["traffic_engineer"], "If-Match": made.headers["ETag"]},
        ),
        403,
        "collectionId",
    )


def test_each_write_is_an_audit_event_naming_the_feature(
    guarded: tuple[TestClient, dict[str, dict[str, str]], list[Any]],
) -> None:
    api, headers, audit = guarded
    commander = headers["emergency_commander"]
    made = api.post("/collections/incidents/items", json=incident(), headers=commander)
    feature_id, etag = made.json()["id"], made.headers["ETag"]
    path = f"/collections/incidents/items/{feature_id}"
    stale = etag
    etag = api.patch(
        path, json={"properties": {"severity": 5}}, headers={**commander, "If-Match": etag}
    ).headers["ETag"]
    refused = api.patch(path, json={}, headers={**commander, "If-Match": stale})
    assert refused.status_code == 412
    gone = api.delete(path, headers={**commander, "If-Match": etag})
    assert gone.status_code == 204
    writes = [
        (method, status, entry)
        for name, method, status, touched in audit
        if name.startswith("emergency_commander")
        for entry in touched
        if entry[1] == "edit" and entry[0] == "incidents"
    ]
    mine = [w for w in writes if feature_id in w[2][3] or w[1] == 412]
    assert [(m, s) for m, s, _ in mine][-4:] == [
        ("POST", 201),
        ("PATCH", 200),
        ("PATCH", 412),
        ("DELETE", 204),
    ]
    for method, status, (_layer, _permission, count, ids) in mine[-4:]:
        if status != 412:
            assert count == 1 and ids == [feature_id], (method, status)


def test_editing_functions_note_each_write_for_the_audit(url: str) -> None:
    with access.ledger() as touched:
        edit = editing.create("closures", incident(kind="event"), url=url)
        editing.delete("closures", edit.id, if_match=[edit.vid or 0], url=url)
    assert [(t.layer, t.permission, t.count, t.ids) for t in touched] == [
        ("closures", "edit", 2, [edit.id, edit.id])
    ]
    assert isinstance(edit.at, datetime)


def test_the_older_write_endpoints_are_role_checked_and_noted(
    url: str, guarded: tuple[TestClient, dict[str, dict[str, str]], list[Any]]
) -> None:
    _, headers, _ = guarded
    settings = TwinSettings(database_url=url, auth_anonymous_role="public", mqtt_url="")
    closure = {"geometry": HERE, "kind": "works"}
    with TestClient(create_app(settings)) as api:
        problem(api.post("/routing/closures", json=closure), 401, "collectionId")
        problem(api.delete("/routing/flood"), 401, "collectionId")
        planner = headers["planner"]
        problem(api.post("/routing/closures", json=closure, headers=planner), 403, "collectionId")
        problem(api.delete("/routing/flood", headers=planner), 403, "collectionId")
        flood = api.post("/routing/flood", content=b"II*\x00", headers=planner)
        problem(flood, 403, "collectionId")
        plan = {"name": "refused", "signals": ["s1", "s2"], "greenwave": True}
        problem(
            api.post("/signals/plans", json=plan, headers=headers["emergency_commander"]),
            403,
            "collectionId",
        )
        problem(api.post("/signals/plans", json=plan, headers=planner), 403, "collectionId")
        engineer = headers["traffic_engineer"]
        made = api.post("/routing/closures", json=closure, headers=engineer)
        assert made.status_code == 201, made.text
        assert api.delete("/routing/flood", headers=engineer).status_code == 204
    assert sql_scalar(url, "SELECT count(*) FROM closures WHERE id = :id", id=made.json()["id"])


def test_an_editor_cannot_overwrite_what_is_masked_for_it(
    client: TestClient, url: str, guarded: tuple[TestClient, dict[str, dict[str, str]], list[Any]]
) -> None:
    api, headers, _ = guarded
    made = client.post(
        "/collections/closures/items",
        json={
            "type": "Feature",
            "geometry": HERE,
            "properties": {"kind": "works", "contact": "+377 93 15 28 63"},
        },
    )
    path, etag = made.headers["Location"], made.headers["ETag"]
    mask = access.add_mask("closures", "props.contact", "partial", below=2, keep_start=4, url=url)
    try:
        engineer = headers["traffic_engineer"]
        # the rules are re-read when their counter moves (at most every RULES_REFRESH_S)
        seen = wait_until(
            lambda: (
                answer
                if (answer := api.get(path, headers=engineer)).json()["properties"]["contact"]
                != "+377 93 15 28 63"
                else None
            ),
            timeout_s=10,
            what="the new mask applied to the engineer's reads",
        )
        assert seen.headers["ETag"] == etag
        # the engineer sends back what it was shown, with its own change
        body = seen.json()
        body["properties"]["kind"] = "event"
        put = api.put(path, json=body, headers={**engineer, "If-Match": etag})
        assert put.status_code == 200, put.text
        patch = api.patch(
            path,
            json={"properties": {"contact": "guess"}},
            headers={**engineer, "If-Match": put.headers["ETag"]},
        )
        assert patch.status_code == 200, patch.text
    finally:
        access.remove_mask(mask, url=url)
    wait_until(
        lambda: api.get(path, headers=engineer).json()["properties"]["contact"][-2:] == "63",
        timeout_s=10,
        what="the mask removed",
    )
    stored = client.get(path).json()["properties"]
    assert stored["kind"] == "event" and stored["contact"] == "+377 93 15 28 63"
