"""The API's catalog endpoints and its problem+json errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from layers.catalog import LAYERS
from layers.settings import TwinSettings
from tests.api.test_tiles import tile_of
from tests.assertions import sql_scalar
from tests.conftest import ROOT

# The endpoints README.md documents (its "HTTP" and per-topic sections), as (method, path).
DOCUMENTED = {
    ("get", "/conformance"),
    ("get", "/collections"),
    ("get", "/collections/{collectionId}"),
    ("get", "/collections/{collectionId}/queryables"),
    ("get", "/collections/{collectionId}/items"),
    ("get", "/collections/{collectionId}/items/{featureId}"),
    ("get", "/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{y}/{x}"),
    ("get", "/map/tiles/{tileMatrixSetId}/{z}/{y}/{x}"),
    ("get", "/routing/route"),
    ("get", "/routing/nearest"),
    ("get", "/routing/isochrones"),
    ("get", "/routing/coverage"),
    ("post", "/routing/matrix"),
    ("post", "/routing/closures"),
    ("post", "/routing/flood"),
    ("delete", "/routing/flood"),
    ("post", "/signals/plans"),
    ("get", "/signals/plans"),
    ("get", "/signals/plans/{name}"),
    ("get", "/signals/plans/{name}/sumo"),
    ("get", "/signals/corridor"),
    ("get", "/onemap/around"),
    ("get", "/search"),
    ("post", "/utilities/section"),
    ("get", "/utilities/section"),
    ("post", "/onemap/within"),
    ("post", "/onemap/along"),
    ("get", "/onemap/districts"),
    ("get", "/cameras/coverage"),
    ("get", "/utilities/{network_name}"),
    ("post", "/utilities/{network_name}/isolate"),
    ("post", "/utilities/{network_name}/outage"),
    ("post", "/incidents/impact"),
    ("get", "/rasters"),
    ("get", "/rasters/{name}/districts"),
    ("post", "/rasters/{name}/zonal"),
    ("get", "/layers"),
    ("get", "/layers/{layer_id}"),
    ("get", "/health"),
}


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as test_client:
        yield test_client


def test_layers_carry_the_store_counts(client: TestClient, sample_db: str) -> None:
    body = client.get("/layers").json()
    assert [layer["id"] for layer in body] == list(LAYERS)  # the catalog, in its order
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
    assert page.status_code == 200 and "viewer/viewer.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in (
        "viewer/viewer.js",
        "viewer/viewer.css",
    ):
        assert client.get("/" + asset).status_code == 200, asset
    # the scripts go gzipped as the build compressed them once (not again per request)
    script = client.get("/viewer/viewer.js", headers={"accept-encoding": "gzip"})
    assert script.headers["content-encoding"] == "gzip"
    assert script.content == (ROOT / "api" / "static" / "build" / "viewer.js").read_bytes()
    plain = client.get("/viewer/viewer.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == script.content
    config = client.get("/viewer/config.json").json()
    assert [s["layer"] for s in config["styles"]][:3] == ["districts", "roads", "buildings"]
    assert config["features"] and all(config["features"].values())
    assert client.get("/?f=json").json()["links"]  # the OGC API landing page stays


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_health_without_database_is_503() -> None:
    settings = TwinSettings(database_url="postgresql://postgres@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as offline:
        response = offline.get("/health")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


def test_the_openapi_document_describes_what_the_app_serves(client: TestClient) -> None:
    response = client.get("/api")
    assert response.status_code == 200
    doc = json.loads(response.content)  # valid JSON, whatever the media type
    # the media type names the OpenAPI version the document is written in
    declared = re.fullmatch(
        r"application/vnd\.oai\.openapi\+json;\s*version=(\d+\.\d+)",
        response.headers["content-type"],
    )
    assert declared, response.headers["content-type"]
    assert doc["openapi"].startswith(f"{declared.group(1)}.")
    oas30 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30"
    claimed = oas30 in client.get("/conformance").json()["conformsTo"]
    assert claimed == doc["openapi"].startswith("3.0."), "the oas30 class is OpenAPI 3.0"
    assert doc["info"]["title"] == "CityTwin — Monaco"
    operations = {
        (method, path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) >= DOCUMENTED
    assert all(operation["responses"] for operation in operations.values())
    # every parameter-free GET the document lists is served: answered, not 404 or 405 (an
    # endless event stream is checked by the live tests, which read it)
    streams = {
        path
        for (method, path), operation in operations.items()
        if "text/event-stream" in operation["responses"].get("200", {}).get("content", {})
    }
    assert streams == {"/live/events"}
    plain = sorted(
        path
        for method, path in operations
        if method == "get" and "{" not in path and path not in streams
    )
    answered = [path for path in plain if client.get(path).status_code not in (404, 405)]
    assert answered == plain
    # and each templated path answers for a real value of its parameters
    example = {
        "collectionId": "roads",
        "featureId": client.get("/collections/roads/items", params={"limit": 1}).json()["features"][
            0
        ]["id"],
        "tileMatrixSetId": "WebMercatorQuad",
        "styleId": "roads",
        **dict(zip("zyx", map(str, tile_of(15)), strict=True)),  # a tile of the city
        "network_name": "water",
        "name": "dem",
        "layer_id": "roads",
    }
    templated = sorted(
        path
        for method, path in operations
        if method == "get"
        and "{" in path
        and "/signals/plans/" not in path  # no plan stored
        and "/admin/city/jobs/" not in path  # no set-up under way
        and "/live/alerts/" not in path  # no alert raised (tests/api/test_live.py reads them)
        and not path.startswith("/v1.1/")  # SensorThings: tests/api/test_sensorthings.py
        # none made: tests/api/test_scenarios.py and tests/api/test_preplans.py read them
        and not path.startswith(("/scenarios/", "/preplans/", "/drills/"))
    )
    served = [
        path
        for path in templated
        if client.get(re.sub(r"{(\w+)}", lambda m: example[m.group(1)], path)).status_code == 200
    ]
    assert served == templated


def test_the_openapi_document_lists_every_problem_an_operation_answers(
    client: TestClient,
) -> None:
    doc = client.get("/api").json()
    assert '"422"' not in json.dumps(doc)  # FastAPI's validation answer is never sent
    problem_ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            where = (method, path)
            takes_input = bool(operation.get("parameters")) or "requestBody" in operation
            assert "400" in responses or not takes_input, where
            if any(p["in"] == "path" for p in operation.get("parameters", [])):
                assert "404" in responses, where
            assert "413" in responses or "requestBody" not in operation, where
            assert "Retry-After" in responses["503"]["headers"], where
            for code, response in responses.items():
                if code[0] in "45":
                    assert response["content"] == {"application/problem+json": problem_ref}
    # answers typed as served
    geojson = ["/collections/{collectionId}/items/{featureId}", "/routing/route"]
    geojson += ["/routing/nearest", "/routing/isochrones"]
    for path in geojson:
        assert list(doc["paths"][path]["get"]["responses"]["200"]["content"]) == [
            "application/geo+json"
        ], path
    tile = doc["paths"]["/map/tiles/{tileMatrixSetId}/{z}/{y}/{x}"]["get"]["responses"]["200"]
    assert list(tile["content"]) == ["application/vnd.mapbox-vector-tile"]
    api = doc["paths"]["/api"]["get"]["responses"]["200"]
    assert list(api["content"]) == [client.get("/api").headers["content-type"]]
    # and what a routing answer is served as is what the document says
    route = client.get("/routing/route", params={"from": "7.4197,43.7315", "to": "7.4247,43.7383"})
    assert route.status_code == 200 and route.headers["content-type"] == "application/geo+json"


def test_cors_only_for_the_configured_origins(sample_db: str) -> None:
    allowed, other = "https://planning.example.org", "https://elsewhere.example.com"
    settings = TwinSettings(database_url=sample_db, cors_origins=(allowed,))
    with TestClient(create_app(settings)) as browser:
        preflight = browser.options(
            "/collections/roads/items",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == allowed
        assert "GET" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        get = browser.get("/collections/roads/items?limit=1", headers={"Origin": allowed})
        assert get.status_code == 200 and get.headers["access-control-allow-origin"] == allowed
        exposed = {
            h.strip().lower() for h in get.headers["access-control-expose-headers"].split(",")
        }
        assert exposed >= {"etag", "location", "retry-after"}
        # a problem carries the header too: the page can read why it was refused
        bad = browser.get("/collections/roads/items?limit=many", headers={"Origin": allowed})
        assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == allowed
        # another origin gets no CORS header, on a preflight or on a GET
        refused = browser.options(
            "/collections/roads/items",
            headers={"Origin": other, "Access-Control-Request-Method": "GET"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        get = browser.get("/collections/roads/items?limit=1", headers={"Origin": other})
        assert get.status_code == 200 and "access-control-allow-origin" not in get.headers


def test_no_cors_headers_by_default(client: TestClient) -> None:
    origin = {"Origin": "https://planning.example.org"}
    get = client.get("/collections/roads/items?limit=1", headers=origin)
    assert get.status_code == 200
    assert not [h for h in get.headers if h.lower().startswith("access-control-")]
    preflight = client.options(
        "/collections/roads/items", headers={**origin, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_CORS_ORIGINS", "https://a.example, http://b.example:8080")
    assert TwinSettings().cors_origins == ("https://a.example", "http://b.example:8080")
    monkeypatch.setenv("TWIN_CORS_ORIGINS", '["https://a.example"]')
    assert TwinSettings().cors_origins == ("https://a.example",)
    monkeypatch.setenv("TWIN_CORS_ORIGINS", "https://a.example/viewer")
    with pytest.raises(ValueError, match="not an origin"):
        TwinSettings()


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    # each method of a path is a route of its own: Starlette named the first one's only
    cases = {
        "/collections/roads/items": "GET, POST",
        "/collections/roads/items/x": "DELETE, GET, PATCH, PUT",
        "/routing/flood": "DELETE, POST",
        "/signals/plans": "GET, POST",
        "/v1.1/Things": "GET, POST",  # the documented routes, not the catch-all beside them
    }
    for path, allowed in cases.items():
        answer = client.request("TRACE", path)
        assert answer.status_code == 405, path
        assert answer.headers["allow"] == allowed, path
        assert answer.headers["content-type"] == "application/problem+json"


def test_the_landing_page_refuses_a_format_it_does_not_serve(client: TestClient) -> None:
    response = client.get("/", params={"f": "xml"})
    assert response.status_code == 400 and response.json()["parameter"] == "f"
