"""The viewer in a real browser: Debian's Chromium, headless, driven by Playwright.

Every request that does not go to the twin itself is blocked and recorded: the page must load
and draw with none. Screenshots are saved in tests/artifacts/.
"""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Browser, Page

from api.app import create_app
from api.viewer import opening_view
from layers.database import get_engine
from layers.ingest import ingest
from layers.queries import read_layer
from layers.settings import TwinSettings
from layers.sources import OPENSTREETMAP, SRTM, credits, data_extent, record_source
from tests.conditions import wait_until
from tests.conftest import ROOT
from twin.sample import sample_files

ARTIFACTS = ROOT / "tests" / "artifacts"
WIDTH, HEIGHT = 1200, 800
# Deadlines only bound a failure (software WebGL on a loaded machine is slow, never wrong).
SETTLE_S = 90  # every visible layer's tiles loaded and drawn
ANSWER_S = 90  # a click's answer: a route, service areas, an incident's impact
SETTLED = "() => Boolean(window.twinViewer && window.twinViewer.settled())"
CENTRE = "() => [window.twinViewer.state.view.longitude, window.twinViewer.state.view.latitude]"
BUSY = "(ms) => { const end = performance.now() + ms; while (performance.now() < end); }"


class Viewer:
    """A page on the viewer, recording blocked outside requests and console errors.

    Nothing here sleeps: it waits on what the viewer says it has done (``twinViewer.settled()``,
    ``twinViewer.events()``), and every click is issued once and its effect awaited.
    """

    def __init__(self, browser: Browser, address: str):
        self.context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        self.page: Page = self.context.new_page()
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.page.route("**/*", self._guard)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(address + "/")
        self.settle("on opening")

    def _guard(self, route: Any) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def status(self) -> Any:
        return self.page.evaluate("() => window.twinViewer && window.twinViewer.status()")

    def until(self, script: str, arg: Any = None, *, what: str, timeout_s: float) -> Any:
        """Wait until ``script(arg)`` is truthy in the page; fail saying ``what`` and the state."""
        try:
            return wait_until(
                lambda: self.page.evaluate(script, arg), timeout_s=timeout_s, what=what
            )
        except AssertionError as error:
            raise AssertionError(f"{error}; the viewer: {self.status()}") from None

    def settle(self, why: str) -> None:
        """Wait until every visible layer is loaded for the current view and drawn."""
        self.until(SETTLED, what=f"the map settling {why}", timeout_s=SETTLE_S)

    def events(self) -> dict[str, int]:
        return dict(self.page.evaluate("() => window.twinViewer.events()"))

    def project(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = self.page.evaluate("([lon, lat]) => window.twinViewer.project(lon, lat)", [lon, lat])
        return float(x), float(y)

    def picture(self, name: str) -> np.ndarray:
        self.settle(f"before the picture {name}")
        png = self.page.locator("#map").screenshot()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{name}.png").write_bytes(png)
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)

    def look_at(self, lon: float, lat: float, zoom: float) -> None:
        view = {"longitude": lon, "latitude": lat, "zoom": zoom}
        self.page.evaluate("(view) => window.twinViewer.lookAt(view)", view)
        self.settle(f"at {lon}, {lat}, zoom {zoom}")
        x, y = self.project(lon, lat)  # the new view is the one drawn: the point in the middle
        assert abs(x - WIDTH / 2) < 1 and abs(y - HEIGHT / 2) < 1, f"{view} is drawn at {x}, {y}"

    def click(self, lon: float, lat: float, text: str, *, busy_ms: int = 0) -> str:
        """Click the map once at (lon, lat); return the panel's answer, which must say ``text``.

        The viewer counts presses, releases, clicks and handled clicks as the DOM delivers them,
        so a click that is not taken fails here with what happened to it; it is never retried.
        ``busy_ms`` keeps the page's main thread busy that long between press and release.
        """
        self.settle(f"before the click at {lon}, {lat}")
        x, y = self.project(lon, lat)
        on_map = self.page.evaluate(
            "([x, y]) => document.getElementById('map').contains(document.elementFromPoint(x, y))",
            [x, y],
        )
        assert on_map, f"{lon}, {lat} is at pixel {x:.0f}, {y:.0f}: under the panel or off the map"
        before = self.events()
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        if busy_ms:
            self.page.evaluate(BUSY, busy_ms)
        self.page.mouse.up()
        after = self.until(
            "(n) => { const e = window.twinViewer.events(); return e.releases >= n && e; }",
            before["releases"] + 1,
            what=f"the viewer seeing the press and release at {x:.0f}, {y:.0f}",
            timeout_s=ANSWER_S,
        )
        moved = {k: after[k] - before[k] for k in ("presses", "releases", "clicks", "drags")}
        one_click = {"presses": 1, "releases": 1, "clicks": 1, "drags": 0}
        assert moved == one_click, f"the press and release were not taken as one click: {moved}"
        click = after["clicks"]
        self.until(
            "(n) => window.twinViewer.events().handled >= n",
            before["handled"] + 1,
            what=f"the viewer handling click {click} at {lon}, {lat}",
            timeout_s=ANSWER_S,
        )
        shown = self.events()["shown"]
        answer = str(self.page.locator("#result").inner_text())
        assert shown == click, f"the panel answers click {shown}, not click {click}: {answer!r}"
        assert text in answer, (
            f"the panel does not say {text!r} after the click; it says {answer!r}"
        )
        return answer

    def drag(self, dx: float, dy: float) -> None:
        """Drag the map from its middle by (dx, dy) pixels: a pan, not a click."""
        self.settle("before the drag")
        before = self.events()
        lon, lat = self.page.evaluate(CENTRE)
        self.page.mouse.move(WIDTH / 2, HEIGHT / 2)
        self.page.mouse.down()
        steps = 10
        self.page.mouse.move(WIDTH / 2 + dx, HEIGHT / 2 + dy, steps=steps)
        self.page.mouse.up()
        after = self.until(
            "(n) => { const e = window.twinViewer.events(); return e.releases >= n && e; }",
            before["releases"] + 1,
            what="the viewer seeing the drag's press and release",
            timeout_s=ANSWER_S,
        )
        moved = {k: after[k] - before[k] for k in ("presses", "releases", "clicks", "drags")}
        assert moved == {"presses": 1, "releases": 1, "clicks": 0, "drags": 1}, moved
        self.settle("after the drag")
        # the old middle went with the pointer, from where the pan began: deck.gl's pan starts
        # on the first move past its threshold (1 px), so after the pointer's first step
        x, y = self.project(lon, lat)
        expected = (WIDTH / 2 + dx * (steps - 1) / steps, HEIGHT / 2 + dy * (steps - 1) / steps)
        assert abs(x - expected[0]) < 1.5 and abs(y - expected[1]) < 1.5, ((x, y), expected)

    def close(self) -> None:
        self.context.close()


def test_the_viewer_draws_the_city_offline(viewer: Viewer, sample_db: str) -> None:
    # it opens on the data, and credits exactly the sources loaded
    minx, miny, maxx, maxy = data_extent(sample_db) or (0, 0, 0, 0)
    lon, lat = viewer.page.evaluate(CENTRE)
    assert minx <= lon <= maxx and miny <= lat <= maxy, (lon, lat)
    shown = viewer.page.locator("#attribution").inner_text()
    assert shown == f"{OPENSTREETMAP.attribution} · {SRTM.attribution}"
    picture = viewer.picture("viewer")
    background = np.array([244, 243, 239])
    drawn = np.abs(picture - background).sum(axis=2) > 30
    assert drawn.mean() > 0.3, "the WebGL canvas is nearly blank"
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 200  # shaded 3D buildings, roads
    config = viewer.page.evaluate("() => window.twinViewer.state.config.features")
    assert all(config.values())  # every tool's backend is served, so every tool is shown
    buttons = viewer.page.locator("#modes button").all_inner_texts()
    assert buttons == ["Inspect", "Route", "Service areas", "Incident", "Section", "Edit scenario"]


def test_toggling_a_layer_changes_the_picture(viewer: Viewer) -> None:
    before = viewer.picture("viewer-buildings-on")
    viewer.page.locator("input[data-layer=buildings]").uncheck()
    after = viewer.picture("viewer-buildings-off")
    changed = np.abs(before - after).sum(axis=2) > 30
    assert changed.mean() > 0.05
    viewer.page.locator("#surface").fill("10")  # the section view: the surface nearly clear
    section = viewer.picture("viewer-section")
    assert (np.abs(section - after).sum(axis=2) > 30).mean() > 0.01


def test_a_click_shows_the_attributes(viewer: Viewer, sample_db: str) -> None:
    stations = read_layer("resources", url=sample_db)
    station = stations[stations["kind"] == "fire_station"].iloc[0]
    viewer.page.locator("input[data-layer=buildings]").uncheck()
    viewer.look_at(station.geometry.x, station.geometry.y, 18.0)
    # the store's id of what stands there; the page busy for longer than deck.gl's tap allows
    # between press and release (mjolnir.js's Tap recogniser: at most 250 ms), as a software
    # WebGL pick on a loaded machine keeps it: the click is taken all the same
    x, y = station.geometry.x, station.geometry.y
    text = viewer.click(x, y, str(station["id"]), busy_ms=400)
    assert "resources" in text and station["name"] in text
    viewer.picture("viewer-attributes")


def test_what_is_here_route_service_areas_and_incident(viewer: Viewer) -> None:
    viewer.look_at(7.4230, 43.7360, 16.0)
    for layer in ("buildings", "roads", "signals", "cameras", "resources", "incidents", "closures"):
        viewer.page.locator(f"input[data-layer={layer}]").uncheck()
    viewer.drag(-40, 30)  # a pan moves the map and is no click
    viewer.look_at(7.4230, 43.7360, 16.0)
    text = viewer.click(7.42035, 43.73490, "Within 30 m")  # on the ground: what is here
    assert "roads" in text and "pipelines" in text  # every layer answers, shown or not
    viewer.page.get_by_role("button", name="Route").click()
    viewer.click(7.4205, 43.7345, "destination")  # both in view, right of the panel
    viewer.click(7.4265, 43.7385, "km (emergency)")  # the second click: the route
    viewer.page.get_by_role("button", name="Service areas").click()
    viewer.click(7.4203, 43.7349, "12 min")
    viewer.page.get_by_role("button", name="Incident").click()
    viewer.page.locator("#incident-kind").select_option("fire")
    text = viewer.click(7.4250, 43.7370, "roads to close")
    assert "min" in text and "buildings" in text
    viewer.picture("viewer-incident")


# -- what the page opens on and whom it credits (no browser) -----------------------------------

#: A settings box far larger than the sample city (a whole region around Monaco).
REGION = (6.0, 43.0, 9.5, 45.5)


def test_the_view_opens_on_the_data_not_on_a_much_larger_settings_box(sample_db: str) -> None:
    view = opening_view(TwinSettings(database_url=sample_db, city_bbox=REGION))
    minx, miny, maxx, maxy = data_extent(sample_db) or (0, 0, 0, 0)
    assert minx <= view["longitude"] <= maxx and miny <= view["latitude"] <= maxy
    assert view["from"] == "data" and view["bounds"] == [minx, miny, maxx, maxy]
    assert 13.5 < view["zoom"] < 16  # the city fills the window (the region's would be ~7)
    assert abs(view["latitude"] - 44.25) > 0.4  # not the box's middle (7.75, 44.25)


def test_with_nothing_loaded_the_view_opens_on_the_settings_box(raster_db: str) -> None:
    view = opening_view(TwinSettings(database_url=raster_db, city_bbox=REGION))
    assert view["from"] == "settings" and view["bounds"] == list(REGION)
    assert view["longitude"] == pytest.approx(7.75)
    assert REGION[1] < view["latitude"] < REGION[3]  # the middle on Web Mercator
    assert 6 < view["zoom"] < 9


def test_the_page_tiles_and_styles_credit_the_sample_citys_sources(sample_db: str) -> None:
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as client:
        page = client.get("/", headers={"accept": "text/html"}).text
        config = client.get("/viewer/config.json").json()
        tilejson = client.get("/collections/roads/tiles/WebMercatorQuad/tilejson.json").json()
        one_map = client.get("/tiles/WebMercatorQuad/tilejson.json").json()
        style = client.get("/styles/roads").json()
    shown = re.search(r'<div id="attribution">(.*?)</div>', page)
    assert shown is not None
    assert (
        re.sub(r"<[^>]+>", "", shown.group(1))
        == f"{OPENSTREETMAP.attribution} · {SRTM.attribution}"
    )
    assert [c["attribution"] for c in config["credits"]] == [
        OPENSTREETMAP.attribution,
        SRTM.attribution,
    ]
    assert tilejson["attribution"] == OPENSTREETMAP.attribution  # tiles hold no DEM
    assert one_map["attribution"] == OPENSTREETMAP.attribution
    assert style["sources"]["twin"]["attribution"] == OPENSTREETMAP.attribution


def test_roads_from_osm_alone_are_credited_without_srtm_and_escaped(raster_db: str) -> None:
    ingest("roads", sample_files()["roads"], source="osm", url=raster_db)
    with get_engine(raster_db).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute("DELETE FROM data_sources")
            record_source(cur, source="osm", attribution="<b>© OSM</b> & contributors")
    with TestClient(create_app(TwinSettings(database_url=raster_db))) as client:
        page = client.get("/", headers={"accept": "text/html"}).text
        config = client.get("/viewer/config.json").json()
        catalog = client.get("/catalog").text
    assert "SRTM" not in page and "SRTM" not in catalog
    assert "&lt;b&gt;© OSM&lt;/b&gt; &amp; contributors" in page
    assert "<b>© OSM</b>" not in page and "&lt;b&gt;© OSM&lt;/b&gt; &amp; contributors" in catalog
    assert [c["attribution"] for c in config["credits"]] == ["<b>© OSM</b> & contributors"]
    assert config["credits"] == [
        {
            "attribution": c.attribution,
            "licence": c.licence,
            "url": c.url,
            "sources": list(c.sources),
            "descriptions": list(c.descriptions),
        }
        for c in credits(raster_db)
    ]
