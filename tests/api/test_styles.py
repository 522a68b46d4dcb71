"""Styles: OGC API - Styles listing, MapLibre style documents checked by MapLibre's own validator
(``@maplibre/maplibre-gl-style-spec``, npm) and drawn by MapLibre GL in Debian's Chromium.

The npm packages are installed once into tests/api/style_spec/node_modules (``npm ci``, from its
package-lock.json). In the browser every request goes to the app through the test client; any
other request is blocked and recorded, so the style must draw with nothing from outside.
"""

from __future__ import annotations

import fcntl
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Browser, Route

from api.app import create_app
from layers.catalog import LAYERS
from layers.settings import TwinSettings
from tests.conftest import ROOT
from twin.deck import STYLES

STYLE_SPEC = ROOT / "tests" / "api" / "style_spec"
ARTIFACTS = ROOT / "tests" / "artifacts"
OGC_STYLES = "http://www.opengis.net/spec/ogcapi-styles-1/1.0/conf"
MAPBOX_STYLE = "application/vnd.mapbox.style+json"
LON, LAT = 7.4215, 43.7350  # La Condamine
BACKGROUND = np.array([0xF4, 0xF3, 0xEF])


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The validator and MapLibre GL, installed with npm on first use."""
    with open(STYLE_SPEC / "package.json") as lock:  # one install at a time across test runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        modules = STYLE_SPEC / "node_modules"
        if not (modules / "maplibre-gl" / "dist" / "maplibre-gl.js").exists():
            npm = shutil.which("npm")
            assert npm, "npm is missing"
            out = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=STYLE_SPEC,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert out.returncode == 0, out.stderr
    return modules


def style_ids() -> list[str]:
    return ["map", *LAYERS]


@pytest.mark.conformance(f"{OGC_STYLES}/core")
def test_styles_are_listed_and_each_is_served(client: TestClient) -> None:
    listing = client.get("/styles").json()
    assert [s["id"] for s in listing["styles"]] == style_ids()
    assert listing["default"] == "map"
    for entry in listing["styles"]:
        sheet = next(link for link in entry["links"] if link["rel"] == "stylesheet")
        assert sheet["type"] == MAPBOX_STYLE
        response = client.get(sheet["href"].split("testserver", 1)[1])
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(MAPBOX_STYLE)
        metadata = client.get(f"/styles/{entry['id']}/metadata").json()
        assert metadata["id"] == entry["id"] and metadata["stylesheets"][0]["native"] is True


@pytest.mark.parametrize(
    ("path", "status", "parameter"),
    [("/styles/streets", 404, "styleId"), ("/styles/roads?f=sld10", 400, "f")],
)
def test_bad_style_requests(client: TestClient, path: str, status: int, parameter: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["parameter"] == parameter


@pytest.mark.conformance(f"{OGC_STYLES}/mapbox-styles")
def test_every_style_passes_maplibres_validator(
    client: TestClient, node_modules: Path, tmp_path: Path
) -> None:
    validator = node_modules / "@maplibre" / "maplibre-gl-style-spec" / "dist"
    validator = validator / "gl-style-validate.mjs"
    for style_id in style_ids():
        path = tmp_path / f"{style_id}.json"
        path.write_text(client.get(f"/styles/{style_id}?f=mapbox").text)
        out = subprocess.run(
            ["node", str(validator), str(path)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, f"{style_id}: {out.stdout}{out.stderr}"
    # the validator is no rubber stamp: a style naming a missing source fails it
    broken = json.loads((tmp_path / "roads.json").read_text())
    broken["layers"][1]["source"] = "elsewhere"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    out = subprocess.run(
        ["node", str(validator), str(tmp_path / "broken.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "elsewhere" in out.stdout + out.stderr


def urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in urls(v)]
    return [value] if isinstance(value, str) and "://" in value else []


def test_styles_use_the_twins_own_tiles_and_the_viewers_colours(client: TestClient) -> None:
    for style_id in style_ids():
        style = client.get(f"/styles/{style_id}").json()
        assert "glyphs" not in style and "sprite" not in style
        assert all(layer["type"] != "symbol" for layer in style["layers"])
        assert all(u.startswith("http://testserver/") for u in urls(style)), urls(style)
        tilejson = client.get(style["sources"]["twin"]["url"].split("testserver", 1)[1]).json()
        tiled = {layer["id"] for layer in tilejson["vector_layers"]}
        drawn = {layer["source-layer"] for layer in style["layers"] if "source-layer" in layer}
        assert drawn == (set(LAYERS) if style_id == "map" else {style_id})
        assert drawn <= tiled
    # colours are the viewer's (twin.deck.STYLES, which the viewer reads as viewer/config.json)
    viewer = {s["layer"]: s for s in client.get("/viewer/config.json").json()["styles"]}
    roads = client.get("/styles/roads").json()
    [line] = [layer for layer in roads["layers"] if layer["id"] == "roads-line"]
    match = line["paint"]["line-color"]
    pairs = dict(zip(match[2:-1:2], match[3:-1:2], strict=True))
    for value, rgba in viewer["roads"]["colors"].items():
        r, g, b, a = rgba
        assert pairs[value] == f"rgba({r}, {g}, {b}, {round(a / 255, 3)})"
    # and the one-map hides, as the viewer's panel does, the layers it opens hidden
    one_map = client.get("/styles/map").json()
    hidden = {
        layer["source-layer"]
        for layer in one_map["layers"]
        if layer.get("layout", {}).get("visibility") == "none"
    }
    assert hidden == {layer for layer, s in STYLES.items() if not s.visible}


PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/__maplibre__/maplibre-gl.css">
<script src="/__maplibre__/maplibre-gl.js"></script>
<style>html,body{margin:0} #map{width:800px;height:600px}</style></head>
<body><div id="map"></div><script>
window.mapErrors = [];
window.idle = false;
const map = new maplibregl.Map({container: "map", style: "/styles/%(style)s?f=mapbox",
  center: [%(lon)s, %(lat)s], zoom: %(zoom)s, attributionControl: false, fadeDuration: 0});
map.on("error", (e) => window.mapErrors.push(String((e.error && e.error.message) || e)));
map.once("idle", () => { window.idle = true; });
</script></body></html>"""


def render(
    browser: Browser, client: TestClient, node_modules: Path, style: str, lon: float, lat: float
) -> tuple[np.ndarray, list[str], list[str]]:
    """Draw a style with MapLibre GL; return the picture, blocked requests and errors."""
    context = browser.new_context(viewport={"width": 800, "height": 600})
    outside: list[str] = []
    errors: list[str] = []
    dist = node_modules / "maplibre-gl" / "dist"

    def serve(route: Route) -> None:
        url = urlparse(route.request.url)
        if url.hostname != "testserver":
            outside.append(route.request.url)
            route.abort()
        elif url.path == "/__render__":
            body = PAGE % {"style": style, "lon": lon, "lat": lat, "zoom": 15}
            route.fulfill(status=200, content_type="text/html", body=body)
        elif url.path.startswith("/__maplibre__/"):
            route.fulfill(path=dist / url.path.removeprefix("/__maplibre__/"))
        else:
            answer = client.get(url.path + (f"?{url.query}" if url.query else ""))
            route.fulfill(
                status=answer.status_code,
                headers={"content-type": answer.headers.get("content-type", "")},
                body=answer.content,
            )

    context.route("**/*", serve)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto("http://testserver/__render__")
        page.wait_for_function("() => window.idle", timeout=60_000)
        errors += page.evaluate("() => window.mapErrors")
        png = page.locator("#map").screenshot()
    finally:
        context.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"maplibre-{style}-{lon}-{lat}.png").write_bytes(png)
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return picture, outside, errors


@pytest.mark.parametrize(("style", "least"), [("map", 0.3), ("buildings", 0.1), ("roads", 0.03)])
def test_maplibre_draws_the_style_where_the_data_is(
    browser: Browser, client: TestClient, node_modules: Path, style: str, least: float
) -> None:
    picture, outside, errors = render(browser, client, node_modules, style, LON, LAT)
    assert outside == [] and errors == []
    drawn = np.abs(picture - BACKGROUND).sum(axis=2) > 30
    assert drawn.mean() > least, f"only {drawn.mean():.1%} drawn"
    # out at sea, where there is no data, only the background is drawn
    picture, outside, errors = render(browser, client, node_modules, style, 7.30, 43.60)
    assert outside == [] and errors == []
    assert (np.abs(picture - BACKGROUND).sum(axis=2) > 30).mean() < 0.001
