"""What each role sees, by every access path: sign-in, layers, rows, masks, tiles, RLS, facade.

The API here runs with the real default (an anonymous caller has the ``public`` role); the
expectations below are the issue's classification, written out independently of the migration
that seeds the rules.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import mapbox_vector_tile
import morecantile
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import shape

import twin
from api.app import create_app
from layers import access
from layers.database import cursor
from layers.errors import AccessError
from layers.identity import (
    IdentityError,
    add_user,
    create_api_key,
    issue_token,
    revoke_api_key,
    update_user,
)
from layers.identity import users as list_users
from layers.settings import TwinSettings, get_settings
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT

PASSWORD = "correct horse battery staple"
# the classification the issue asks for, per layer: the lowest clearance that reads it
LEVEL = {
    "roads": 0,
    "intersections": 0,
    "signals": 0,
    "districts": 0,
    "buildings": 0,
    "closures": 0,
    "resources": 0,
    "live_congestion": 0,
    "incidents": 1,
    "cameras": 1,
    "pipelines": 1,
    "pipe_nodes": 1,
    "power_nodes": 1,
    "power_lines": 2,
}
CLEARANCE = {"public": 0, "planner": 1, "emergency_commander": 2, "administrator": 3}


@pytest.fixture(scope="module")
def users(sample_db: str) -> dict[str, str]:
    """A user per role (names unique to this run: the sample database lives for the session)."""
    suffix = secrets.token_hex(3)
    names = {}
    for role in CLEARANCE:
        name = f"{role}-{suffix}"
        add_user(name, roles=[role], password=PASSWORD, url=sample_db)
        names[role] = name
    return names


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    settings = TwinSettings(database_url=sample_db, auth_anonymous_role="public", mqtt_url="")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def headers(client: TestClient, users: dict[str, str]) -> dict[str, dict[str, str]]:
    """Bearer headers per role, each from a real sign-in."""
    out = {}
    for role, name in users.items():
        answer = client.post(
            "/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["roles"] == [role]
        out[role] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    out["anonymous"] = {}
    return out


def _tile_of(
    client: TestClient, layer: str, role_headers: dict[str, str], zoom: int = 15
) -> tuple[int, int, int]:
    """A z15 tile (the deepest) holding the first feature of a layer (as an administrator reads it)."""
    feature = client.get(f"/collections/{layer}/items?limit=1", headers=role_headers).json()
    if not feature["features"]:  # an empty layer (live congestion with no feed): in the city
        return 15, 17059, 11948
    lon, lat = shape(feature["features"][0]["geometry"]).representative_point().coords[0]
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, zoom)
    return tile.z, tile.x, tile.y


# -- sign-in -----------------------------------------------------------------------------------


def test_a_wrong_password_is_a_401_that_does_not_say_which_was_wrong(
    client: TestClient, users: dict[str, str]
) -> None:
    for name, password in ((users["planner"], "nope"), ("nobody-at-all", PASSWORD)):
        answer = client.post(
            "/auth/token", data={"grant_type": "password", "username": name, "password": password}
        )
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == "invalid user name or password"


def test_a_bad_grant_or_form_is_a_400_naming_the_field(client: TestClient) -> None:
    answer = client.post("/auth/token", data={"grant_type": "client_credentials"})
    assert answer.status_code == 400 and answer.json()["parameter"] == "grant_type"
    answer = client.post("/auth/token", data={"grant_type": "password", "username": "x"})
    assert answer.status_code == 400 and answer.json()["parameter"] == "password"
    answer = client.post("/auth/token", content=b"\xff\xfe", headers={"content-type": "text/x"})
    assert answer.status_code == 400


def test_a_forged_expired_or_foreign_token_is_refused(
    client: TestClient, headers: dict[str, dict[str, str]], sample_db: str, users: dict[str, str]
) -> None:
    good = headers["administrator"]["Authorization"].removeprefix("Bearer ")
    head, body, signature = good.split(".")
    claims = json.loads(_b64decode(body))
    forged = ".".join((head, _b64encode(json.dumps({**claims, "roles": ["x"]})), signature))
    for token, reason in (
        ("not-a-jwt", "not a JWT"),
        (forged, "not valid"),
        (f"{head}.{body}.{signature[:-4]}AAAA", "not valid"),
    ):
        answer = client.get("/collections/roads", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, token
        assert reason in answer.json()["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    someone = next(u for u in list_users(url=sample_db) if u.name == users["public"])
    expired = issue_token(someone, ttl_s=1e-3, url=sample_db)
    wait_until(
        lambda: (
            client.get(
                "/collections/roads", headers={"Authorization": f"Bearer {expired.access_token}"}
            ).status_code
            == 401
        ),
        timeout_s=10,
        what="a token past its expiry refused",
    )


def test_a_revoked_token_is_refused_within_seconds(
    client: TestClient, users: dict[str, str]
) -> None:
    answer = client.post(
        "/auth/token",
        data={"grant_type": "password", "username": users["planner"], "password": PASSWORD},
    )
    bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    assert client.get("/collections/pipelines", headers=bearer).status_code == 200
    revoked = client.post("/auth/revoke", data={"token": answer.json()["access_token"]})
    assert revoked.json() == {"revoked": True}
    wait_until(
        lambda: client.get("/collections/pipelines", headers=bearer).status_code == 401,
        timeout_s=15,
        what="a revoked token refused",
    )


def test_api_keys_act_as_their_user_and_stop_when_revoked(
    client: TestClient, users: dict[str, str], sample_db: str
) -> None:
    key_id, key = create_api_key(users["emergency_commander"], label="test", url=sample_db)
    with cursor(sample_db) as cur:
        cur.execute("SELECT key_hash FROM access_api_keys WHERE id = %s", (key_id,))
        (stored,) = cur.fetchone() or ("",)
    assert key.split("_", 2)[2] not in stored  # hashed at rest
    me = client.get("/auth/me", headers={"X-API-Key": key}).json()
    assert me["user"] == users["emergency_commander"] and me["via"] == "api-key"
    assert "power_lines" in me["layers"]
    assert client.get("/auth/me", headers={"X-API-Key": key + "x"}).status_code == 401
    assert revoke_api_key(key_id, url=sample_db)
    wait_until(
        lambda: client.get("/auth/me", headers={"X-API-Key": key}).status_code == 401,
        timeout_s=15,
        what="a revoked API key refused",
    )


def test_unknown_roles_and_existing_users_are_refused(
    sample_db: str, users: dict[str, str]
) -> None:
    with pytest.raises(IdentityError, match="unknown role 'mayor'"):
        add_user("someone", roles=["mayor"], password="x", url=sample_db)
    with pytest.raises(IdentityError, match="exists already"):
        add_user(users["planner"], roles=["planner"], password="x", url=sample_db)


def test_tokens_of_another_twin_are_trusted_through_its_jwks(
    sample_db: str, users: dict[str, str]
) -> None:
    """One twin is the other's OIDC provider: discovery, JWKS, signature, audience, roles."""
    env = {"TWIN_AUTH_LOCAL_ISSUER": "{address}", "TWIN_MQTT_URL": ""}
    with api_server(sample_db, root=ROOT, env=env) as provider:
        import httpx2 as httpx

        discovery = httpx.get(f"{provider}/.well-known/openid-configuration").json()
        assert discovery["issuer"] == provider
        assert httpx.get(discovery["jwks_uri"]).json()["keys"][0]["crv"] == "Ed25519"
        token = httpx.post(
            discovery["token_endpoint"],
            data={"grant_type": "password", "username": users["planner"], "password": PASSWORD},
        ).json()["access_token"]
        settings = TwinSettings(
            database_url=sample_db,
            auth_anonymous_role="public",
            auth_issuer=provider,
            mqtt_url="",
        )
        with TestClient(create_app(settings)) as relying:
            answer = relying.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["via"] == "oidc" and answer.json()["roles"] == ["planner"]


# -- layers, rows, values ------------------------------------------------------------------------


@pytest.mark.parametrize("role", [*CLEARANCE, "anonymous"])
def test_each_role_reads_exactly_the_layers_at_or_below_its_clearance(
    client: TestClient, headers: dict[str, dict[str, str]], role: str
) -> None:
    clearance = CLEARANCE.get(role, 0)
    listed = {
        c["id"] for c in client.get("/collections", headers=headers[role]).json()["collections"]
    }
    assert listed == {layer for layer, level in LEVEL.items() if level <= clearance}
    for layer, level in LEVEL.items():
        items = client.get(f"/collections/{layer}/items?limit=1", headers=headers[role])
        one = client.get(f"/collections/{layer}", headers=headers[role])
        z, x, y = _tile_of(client, layer, headers["administrator"])
        tile = client.get(
            f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}", headers=headers[role]
        )
        if level <= clearance:
            assert items.status_code == one.status_code == 200, (layer, items.text)
            assert tile.status_code in (200, 204), (layer, tile.text)
        else:
            expected = 401 if role in ("anonymous",) else 404
            assert items.status_code == one.status_code == tile.status_code == expected, layer
            assert items.headers["content-type"] == "application/problem+json"
    layers = {row["id"] for row in client.get("/layers", headers=headers[role]).json()}
    assert layers == {layer for layer, level in LEVEL.items() if level <= clearance} - {
        "live_congestion"
    }


def test_rows_classified_above_a_layer_are_left_out(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    def networks(role: str) -> set[str]:
        page = client.get(
            "/collections/pipelines/items?limit=10000&filter=network='gas'", headers=headers[role]
        ).json()
        return {f["properties"]["network"] for f in page["features"]}

    assert networks("emergency_commander") == {"gas"}
    assert networks("planner") == set()  # gas mains are important: not for a general clearance
    kinds = {
        f["properties"]["kind"]
        for f in client.get(
            "/collections/resources/items?limit=10000", headers=headers["anonymous"]
        ).json()["features"]
    }
    assert "vehicle" not in kinds and "fire_station" in kinds
    assert client.get("/utilities/gas", headers=headers["planner"]).status_code == 404
    assert client.get("/utilities/gas", headers=headers["emergency_commander"]).status_code == 200
    assert client.get("/utilities/water", headers=headers["planner"]).status_code == 200
    assert client.get("/utilities/water", headers=headers["anonymous"]).status_code == 401


def test_masked_values_are_the_same_in_features_tiles_and_geoarrow(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    """Population to tens for the public, in every path; in clear for a planner."""
    z, x, y = _tile_of(client, "buildings", headers["administrator"], zoom=14)
    bbox = morecantile.tms.get("WebMercatorQuad").bounds(morecantile.Tile(x, y, z))
    box = f"{bbox.left},{bbox.bottom},{bbox.right},{bbox.top}"
    for role, rounded in (("anonymous", True), ("planner", False)):
        page = client.get(
            f"/collections/buildings/items?bbox={box}&limit=10000", headers=headers[role]
        ).json()
        by_id = {f["id"]: f["properties"]["population"] for f in page["features"]}
        tile = client.get(
            f"/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}", headers=headers[role]
        )
        decoded = mapbox_vector_tile.decode(tile.content)["buildings"]["features"]
        tiled = {f["properties"]["id"]: f["properties"].get("population") for f in decoded}
        shared = set(by_id) & set(tiled)
        assert len(shared) > 5
        assert all(by_id[i] == tiled[i] for i in shared)
        populated = [by_id[i] for i in shared if by_id[i]]
        assert populated
        if rounded:
            assert all(p % 10 == 0 for p in populated)
        else:
            assert any(p % 10 for p in populated)
        arrow = client.get(
            f"/collections/buildings/items?bbox={box}&limit=10000&f=arrow", headers=headers[role]
        )
        table = pa.ipc.open_stream(arrow.content).read_all()
        arrowed = dict(zip(table["id"].to_pylist(), table["population"].to_pylist(), strict=True))
        assert all(arrowed[i] == by_id[i] for i in by_id)


def test_hidden_attributes_and_coarse_geometry(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    def first(layer: str, role: str) -> dict[str, Any]:
        page = client.get(f"/collections/{layer}/items?limit=50", headers=headers[role]).json()
        return page["features"]

    assert all(f["properties"]["depth_m"] is None for f in first("pipelines", "planner"))
    assert any(
        f["properties"]["depth_m"] is not None for f in first("pipelines", "emergency_commander")
    )
    assert all(f["properties"]["heading"] is None for f in first("cameras", "planner"))
    # a critical asset to a general clearance: a point on a 100 m grid of the metric CRS, no props
    metric = Transformer.from_crs(4326, get_settings().metric_crs, always_xy=True)
    for feature in first("power_nodes", "planner"):
        assert (
            feature["geometry"]["type"] == "Point" and feature["properties"].get("derived") is None
        )
        x, y = metric.transform(*feature["geometry"]["coordinates"])
        assert abs(x - round(x, -2)) < 0.05 and abs(y - round(y, -2)) < 0.05
    exact = first("power_nodes", "emergency_commander")
    assert any(
        abs(v - round(v, -2)) > 1
        for f in exact
        for v in metric.transform(*f["geometry"]["coordinates"])
    )


def test_a_tile_cut_for_a_commander_is_never_served_to_a_planner(
    sample_db: str, headers: dict[str, dict[str, str]]
) -> None:
    settings = TwinSettings(database_url=sample_db, auth_anonymous_role="public", mqtt_url="")
    with TestClient(create_app(settings)) as client:  # an empty tile cache of its own
        _one_cache_two_clearances(client, headers)


def _one_cache_two_clearances(client: TestClient, headers: dict[str, dict[str, str]]) -> None:
    z, cx, cy = _tile_of(client, "power_nodes", headers["administrator"])  # unclustered
    path = f"/collections/power_nodes/tiles/WebMercatorQuad/{z}/{cy}/{cx}"
    first = client.get(path, headers=headers["emergency_commander"])
    assert first.content and first.headers["x-tile-cache"] == "miss"
    commander = client.get(path, headers=headers["emergency_commander"])
    assert commander.headers["x-tile-cache"] == "hit"
    assert commander.headers["cache-control"].startswith("private")
    planner = client.get(path, headers=headers["planner"])
    assert planner.headers["x-tile-cache"] == "miss"
    assert planner.headers["etag"] != commander.headers["etag"]
    assert planner.content != commander.content
    again = client.get(path, headers=headers["planner"])
    assert again.headers["x-tile-cache"] == "hit" and again.content == planner.content
    # the one-map tile leaves out what the caller may not read
    layers = mapbox_vector_tile.decode(
        client.get(f"/map/tiles/WebMercatorQuad/{z}/{cy}/{cx}", headers=headers["planner"]).content
    )
    assert "power_lines" not in layers


def test_one_map_answers_hold_only_what_the_caller_may_read(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    gas = client.get(
        "/collections/pipelines/items?limit=1&filter=network='gas'",
        headers=headers["emergency_commander"],
    ).json()["features"][0]
    lon, lat = shape(gas["geometry"]).representative_point().coords[0]
    query = f"/onemap/around?lon={lon}&lat={lat}&radius_m=150"
    commander = client.get(query, headers=headers["emergency_commander"]).json()
    planner = client.get(query, headers=headers["planner"]).json()
    public = client.get(query, headers=headers["anonymous"]).json()

    def ids(answer: dict[str, Any], layer: str) -> set[str]:
        return {f["properties"]["id"] for f in answer["layers"][layer]["features"]}

    assert gas["id"] in ids(commander, "pipelines")
    assert gas["id"] not in ids(planner, "pipelines")
    assert all(
        f["properties"]["depth_m"] is None for f in planner["layers"]["pipelines"]["features"]
    )
    assert "pipelines" not in public["layers"] and "power_lines" not in planner["layers"]
    asked = client.get(f"{query}&layers=power_lines", headers=headers["planner"])
    assert asked.status_code == 404


def test_row_level_security_holds_when_a_query_forgets_the_filter(
    sample_db: str, users: dict[str, str]
) -> None:
    """The second wall: raw SQL, no relation, no filter, under a planner's grant."""
    planner = access.grant_for(
        access.Principal(users["planner"], ("planner",), "token"), url=sample_db
    )
    with access.acting_as(planner), cursor(sample_db) as cur:
        cur.execute("SELECT count(*) FROM power_lines")
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*) FROM pipelines WHERE network = 'gas'")
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*) FROM pipelines")
        assert (cur.fetchone() or (0,))[0] > 0
    with (
        access.acting_as(planner),
        cursor(sample_db) as cur,
        pytest.raises(Exception, match="permission denied"),
    ):
        cur.execute("SELECT * FROM access_users")
    with cursor(sample_db) as cur:  # the owner
        cur.execute("SELECT count(*) FROM power_lines")
        assert (cur.fetchone() or (0,))[0] > 0


def test_the_facade_signed_in_sees_what_the_api_shows(
    client: TestClient, sample_db: str, users: dict[str, str], headers: dict[str, dict[str, str]]
) -> None:
    token = headers["public"]["Authorization"].removeprefix("Bearer ")
    city = twin.connect(sample_db, token=token)
    with pytest.raises(AccessError):
        city.layer("pipelines")
    buildings = city.layer("buildings")
    assert (buildings["population"].dropna() % 10 == 0).all()
    assert set(city.layers()["layer"]) == {
        layer for layer, level in LEVEL.items() if level == 0 and layer != "live_congestion"
    }
    owner = twin.connect(sample_db)
    assert (owner.layer("buildings")["population"].dropna() % 10 != 0).any()
    with pytest.raises(IdentityError):
        twin.connect(sample_db, token="nonsense")


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_classified_read_is_audited_once_with_who_what_and_why(
    client: TestClient, headers: dict[str, dict[str, str]], users: dict[str, str], sample_db: str
) -> None:
    purpose = f"drill {secrets.token_hex(4)}"
    answer = client.get(
        "/collections/cameras/items?limit=3&bbox=7.40,43.72,7.44,43.75",
        headers={**headers["planner"], "X-Purpose": purpose},
    )
    assert answer.status_code == 200
    sent = [f["id"] for f in answer.json()["features"]]
    client.get(
        "/collections/roads/items?limit=3", headers={**headers["planner"], "X-Purpose": purpose}
    )

    def rows() -> list[Any]:
        with cursor(sample_db) as cur:
            cur.execute(
                "SELECT actor, role, action, layer, ids, bbox, feature_count, purpose, request, "
                "status, client FROM audit_log WHERE purpose = %s",
                (purpose,),
            )
            return cur.fetchall()

    found = wait_until(rows, timeout_s=20, what="the audit row of a classified read")
    assert len(found) == 1  # the public layer (roads) is not audited
    actor, role, action, layer, ids, bbox, count, _, request, status, client_ip = found[0]
    assert (actor, role, action, layer, status) == (
        users["planner"],
        "planner",
        "read",
        "cameras",
        200,
    )
    assert list(ids) == sent and count == len(sent)
    assert list(bbox) == [7.40, 43.72, 7.44, 43.75]
    assert request.startswith("GET /collections/cameras/items?") and client_ip


def test_the_openapi_document_names_only_the_callers_collections(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    def collection_ids(role: str) -> tuple[set[str], set[str]]:
        document = client.get("/api", headers=headers[role]).json()
        items = document["paths"]["/collections/{collectionId}/items"]
        (read,) = [p for p in items["get"]["parameters"] if p["name"] == "collectionId"]
        written = [
            p for p in items.get("post", {}).get("parameters", []) if p["name"] == "collectionId"
        ]
        assert "401" in items["get"]["responses"]
        return set(read["schema"]["enum"]), set(written[0]["schema"]["enum"]) if written else set()

    public_read, public_written = collection_ids("anonymous")
    assert public_read == {layer for layer, level in LEVEL.items() if level == 0}
    assert public_written == set()  # the public edits nothing: the writes are left out
    commander_read, commander_written = collection_ids("emergency_commander")
    assert "power_lines" in commander_read and "power_lines" not in public_read
    assert commander_written == {"incidents", "closures", "resources"}


def test_incident_and_routing_answers_list_only_what_the_caller_may_read(
    client: TestClient, headers: dict[str, dict[str, str]]
) -> None:
    def middle(network: str) -> tuple[float, float]:
        pipe = client.get(
            f"/collections/pipelines/items?limit=1&filter=network='{network}'",
            headers=headers["emergency_commander"],
        ).json()["features"][0]
        point = shape(pipe["geometry"]).interpolate(0.5, normalized=True)
        return point.x, point.y

    def impact(kind: str, where: tuple[float, float], role: str) -> dict[str, Any]:
        body = {"geometry": {"type": "Point", "coordinates": list(where)}, "kind": kind}
        answer = client.post("/incidents/impact", json=body, headers=headers[role])
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    water = middle("water")  # a burst main: the water network is general
    assert impact("burst_main", water, "planner")["utility"]["network"] == "water"
    public = impact("burst_main", water, "anonymous")
    assert public["utility"] is None and "pipelines" not in public["assets"]
    gas = middle("gas")  # a gas leak: gas pipes are important
    pipes = {
        role: {
            f["properties"]["network"]
            for f in impact("gas_leak", gas, role)["assets"]["pipelines"]["features"]
        }
        for role in ("emergency_commander", "planner")
    }
    assert "gas" in pipes["emergency_commander"] and "gas" not in pipes["planner"]
    # vehicles are general: the public's nearest units never name one
    query = f"/routing/nearest?incident={water[0]},{water[1]}&kind=vehicle&k=3"
    assert client.get(query, headers=headers["anonymous"]).json()["features"] == []
    assert client.get(query, headers=headers["planner"]).json()["features"]


def test_the_live_feeds_are_general_and_written_only_by_who_may(
    client: TestClient, headers: dict[str, dict[str, str]], sample_db: str
) -> None:
    for path in ("/live/latest", "/v1.1/Things", "/live/alerts"):
        assert client.get(path, headers=headers["anonymous"]).status_code == 401, path
        assert client.get(path, headers=headers["planner"]).status_code == 200, path
    thing = {"name": "probe", "properties": {"layer": "power_lines", "feature_id": "x"}}
    assert client.post("/v1.1/Things", json=thing).status_code == 401  # no existence probing
    assert client.post("/v1.1/Things", json=thing, headers=headers["planner"]).status_code == 403
    rule = {"name": "r", "kind": "threshold"}
    assert client.post("/live/rules", json=rule, headers=headers["planner"]).status_code == 403
    name = f"gateway-{secrets.token_hex(3)}"
    add_user(name, roles=["sensor_gateway"], url=sample_db)
    _, key = create_api_key(name, url=sample_db)
    refused = client.post("/v1.1/Things", json={"name": 5}, headers={"X-API-Key": key})
    assert refused.status_code == 400  # past the guard: the body is what is wrong


def test_a_demoted_user_loses_the_old_role_at_once(client: TestClient, sample_db: str) -> None:
    name = f"demoted-{secrets.token_hex(3)}"
    add_user(name, roles=["emergency_commander"], password=PASSWORD, url=sample_db)
    token = client.post(
        "/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD}
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/collections/power_lines", headers=bearer).status_code == 200
    update_user(name, roles=["public"], url=sample_db)
    wait_until(
        lambda: client.get("/collections/power_lines", headers=bearer).status_code == 404,
        timeout_s=15,
        what="a demoted user's token refused the old role's layer",
    )
    assert client.get("/auth/me", headers=bearer).json()["roles"] == ["public"]


def test_masks_leave_no_way_round(client: TestClient, headers: dict[str, dict[str, str]]) -> None:
    cameras = client.get("/collections/cameras/items?limit=20", headers=headers["planner"]).json()
    assert all(f["properties"].get("osm") is None for f in cameras["features"])  # OSM direction
    nodes = client.get("/collections/power_nodes/items?limit=20", headers=headers["planner"]).json()
    assert all(f["id"].startswith("masked/") for f in nodes["features"])  # ids name buildings
    exact = client.get(
        "/collections/power_nodes/items?limit=20", headers=headers["emergency_commander"]
    ).json()
    assert not any(f["id"].startswith("masked/") for f in exact["features"])


def test_a_url_token_works_on_any_get_and_is_never_recorded(
    client: TestClient, headers: dict[str, dict[str, str]], sample_db: str
) -> None:
    token = headers["planner"]["Authorization"].removeprefix("Bearer ")
    purpose = f"url token {secrets.token_hex(3)}"
    answer = client.get(
        f"/collections/cameras/items?limit=1&access_token={token}", headers={"X-Purpose": purpose}
    )
    assert answer.status_code == 200
    assert token not in json.dumps(answer.json())  # not in the next links either
    posted = client.post(f"/auth/revoke?access_token={token}", data={"token": "x"})
    assert posted.status_code == 401  # a URL token only on a GET

    def request() -> str | None:
        with cursor(sample_db) as cur:
            cur.execute("SELECT request FROM audit_log WHERE purpose = %s", (purpose,))
            row = cur.fetchone()
        return None if row is None else str(row[0])

    recorded = wait_until(request, timeout_s=20, what="the audit row of a URL-token read")
    assert "access_token" not in recorded and token not in recorded
    jti = json.loads(_b64decode(token.split(".")[1]))["jti"]
    assert client.post("/auth/revoke", data={"token": jti}).json() == {"revoked": False}


def test_sign_ins_are_audited_failed_ones_too(client: TestClient, sample_db: str) -> None:
    name = f"nobody-{secrets.token_hex(3)}"
    client.post("/auth/token", data={"grant_type": "password", "username": name, "password": "x"})

    def row() -> Any:
        with cursor(sample_db) as cur:
            cur.execute("SELECT action, status FROM audit_log WHERE actor = %s", (name,))
            return cur.fetchone()

    assert wait_until(row, timeout_s=20, what="a failed sign-in in the audit") == ("sign-in", 401)
