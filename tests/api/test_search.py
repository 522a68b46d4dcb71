"""GET /search on the sample city: names, streets, ids, what each caller may read, bad input."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from layers.catalog import LAYERS
from layers.identity import add_user
from layers.queries import read_layer
from layers.settings import TwinSettings
from tests.assertions import problem, sql_scalar

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    """The API as the tests' anonymous administrator (tests/conftest.py)."""
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def public_client(sample_db: str) -> Iterator[TestClient]:
    """The API with the real default: an anonymous caller holds the ``public`` role."""
    settings = TwinSettings(database_url=sample_db, auth_anonymous_role="public", mqtt_url="")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_fire_station_is_found_by_its_name_without_accents_or_case(client: TestClient) -> None:
    answer = client.get("/search", params={"q": "centre de secours PRINCIPAL de la Condamine"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["query"] == "centre de secours PRINCIPAL de la Condamine"
    top = body["hits"][0]
    assert top["layer"] == "resources" and top["kind"] == "fire_station"
    feature = client.get(f"/collections/resources/items/{top['id']}").json()
    assert (
        feature["properties"]["name"]
        == top["label"]
        == ("Centre de secours principal de la Condamine")
    )
    assert [top["lon"], top["lat"]] == pytest.approx(feature["geometry"]["coordinates"], abs=1e-7)
    spelugues = client.get("/search", params={"q": "poste des SPELUGUES", "layers": "resources"})
    assert spelugues.json()["hits"][0]["label"] == "Poste des Spélugues"


def test_a_street_is_one_hit(client: TestClient, sample_db: str) -> None:
    answer = client.get("/search", params={"q": "boulevard du larvotto", "layers": "roads"})
    streets = [hit for hit in answer.json()["hits"] if hit["score"] == 1.0]
    assert len(streets) == 1
    street = streets[0]
    assert street["id"] is None and street["kind"] == "street"
    assert street["features"] == sql_scalar(
        sample_db,
        "SELECT count(*) FROM roads WHERE valid_to IS NULL AND name = 'Boulevard du Larvotto'",
    )
    minx, miny, maxx, maxy = street["bbox"]
    assert minx <= street["lon"] <= maxx and miny <= street["lat"] <= maxy


def test_a_feature_is_found_by_its_id(client: TestClient, sample_db: str) -> None:
    signals = read_layer("signals", url=sample_db)
    signal = signals.iloc[0]
    hits = client.get("/search", params={"q": signal["id"], "limit": 5}).json()["hits"]
    exact = {(hit["layer"], hit["id"]) for hit in hits if hit["score"] == 1.0}
    holding = {  # every layer holding a current feature of that id (a signal's node, too)
        (layer, signal["id"])
        for layer in LAYERS
        if sql_scalar(
            sample_db,
            f"SELECT count(*) FROM {layer} WHERE valid_to IS NULL AND id = :id",
            id=signal["id"],
        )
    }
    assert exact == holding and ("signals", signal["id"]) in exact
    (hit,) = [hit for hit in hits if hit["layer"] == "signals"]
    assert [hit["lon"], hit["lat"]] == pytest.approx(
        [signal.geometry.x, signal.geometry.y], abs=1e-7
    )
    assert len(client.get("/search", params={"q": "port", "limit": 3}).json()["hits"]) == 3


def test_a_layer_the_caller_may_not_read_never_appears(
    client: TestClient, public_client: TestClient, sample_db: str
) -> None:
    camera = read_layer("cameras", url=sample_db)["id"].iloc[0]
    assert [h["layer"] for h in client.get("/search", params={"q": camera}).json()["hits"]] == [
        "cameras"
    ]
    hidden = public_client.get("/search", params={"q": camera, "limit": 100})
    assert hidden.status_code == 200 and hidden.json()["hits"] == []
    # vehicles: rows of a public layer classified above it
    engines = public_client.get("/search", params={"q": "fire engine", "limit": 100}).json()
    assert all(hit["kind"] != "vehicle" for hit in engines["hits"])
    assert any(
        hit["kind"] == "vehicle"
        for hit in client.get("/search", params={"q": "fire engine"}).json()["hits"]
    )
    # naming the layer: sign in (anonymous), or no such layer (signed in without clearance)
    problem(public_client.get("/search", params={"q": "x", "layers": "cameras"}), 401, "layers")
    name = f"search-public-{secrets.token_hex(3)}"
    add_user(name, roles=["public"], password=PASSWORD, url=sample_db)
    token = public_client.post(
        "/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD}
    ).json()["access_token"]
    signed_in = {"Authorization": f"Bearer {token}"}
    refused = public_client.get(
        "/search", params={"q": "x", "layers": "roads,pipelines"}, headers=signed_in
    )
    problem(refused, 404, "layers")
    everything = public_client.get(
        "/search", params={"q": "monaco", "limit": 100}, headers=signed_in
    ).json()["hits"]
    readable = {c["id"] for c in public_client.get("/collections").json()["collections"]}
    assert everything and {hit["layer"] for hit in everything} <= readable


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "port", "limit": "0"}, "limit"),
        ({"q": "port", "limit": "1000"}, "limit"),
        ({"q": "port", "limit": "ten"}, "limit"),
        ({"q": "port", "layers": "roads,nope"}, "layers"),
        ({"q": "port", "layers": ","}, "layers"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    client: TestClient, params: dict[str, str], parameter: str
) -> None:
    problem(client.get("/search", params=params), 400, parameter)


def test_the_endpoint_is_documented(client: TestClient) -> None:
    operation = client.get("/api").json()["paths"]["/search"]["get"]
    assert operation["tags"] == ["search"] and operation["summary"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"q", "limit", "layers"} and parameters["q"]["required"]
    assert parameters["q"]["schema"]["maxLength"] == 200
    assert parameters["limit"]["schema"]["maximum"] == 100
    assert {"200", "400", "404"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/SearchAnswer"}
