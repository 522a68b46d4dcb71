"""The API's catalog endpoints and its problem+json errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from layers.settings import TwinSettings
from tests.assertions import sql_scalar


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as test_client:
        yield test_client


def test_layers_carry_the_store_counts(client: TestClient, sample_db: str) -> None:
    body = client.get("/layers").json()
    assert len(body) == 13
    for layer in body:
        assert layer["features"] == sql_scalar(sample_db, f"SELECT count(*) FROM {layer['id']}")
    roads = client.get("/layers/roads").json()
    assert {a["name"] for a in roads["attributes"]} >= {"source_node", "target_node", "class"}


def test_unknown_layer_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/layers/roadz")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["parameter"] == "layer_id" and "unknown layer 'roadz'" in problem["detail"]


def test_bad_moment_is_a_400_problem(client: TestClient) -> None:
    response = client.get("/layers", params={"at": "yesterday"})
    assert response.status_code == 400
    assert response.json()["parameter"] == "at"


def test_the_catalog_page_lists_the_layers(client: TestClient) -> None:
    page = client.get("/catalog")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "CityTwin — Monaco" in page.text and "/layers/pipe_nodes" in page.text
    assert "OpenStreetMap contributors" in page.text


def test_the_landing_page_is_the_viewer_and_loads_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 200 and "viewer/deck.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in (
        "viewer/deck.js",
        "viewer/viewer.js",
        "viewer/viewer.css",
        "viewer/mvt-worker.js",
    ):
        assert client.get("/" + asset).status_code == 200, asset
    config = client.get("/viewer/config.json").json()
    assert [s["layer"] for s in config["styles"]][:3] == ["districts", "roads", "buildings"]
    assert all(config["features"].values())
    assert client.get("/?f=json").json()["links"]  # the OGC API landing page stays


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_health_without_database_is_503() -> None:
    settings = TwinSettings(database_url="postgresql://postgres@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as offline:
        response = offline.get("/health")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
