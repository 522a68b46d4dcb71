"""The viewer in a real browser: Debian's Chromium, headless, driven by Playwright.

Every request that does not go to the twin itself is blocked and recorded: the page must load
and draw with none. Screenshots are saved in tests/artifacts/.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from layers.queries import read_layer
from tests.conftest import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
LOADED = """() => {
  const viewer = window.twinViewer;
  if (!viewer || !viewer.state.deck) return false;
  const layers = viewer.state.deck.props.layers.filter((l) => l.props.visible);
  return layers.length > 0 && layers.every((l) => l.isLoaded);
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `make setup`"
    with sync_playwright() as playwright:
        # software WebGL: the machines that run this have no GPU
        args = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"]
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        yield browser
        browser.close()


class Viewer:
    """A page on the viewer, recording blocked outside requests and console errors."""

    def __init__(self, browser: Browser, address: str):
        self.context = browser.new_context(viewport={"width": 1200, "height": 800})
        self.page: Page = self.context.new_page()
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.page.route("**/*", self._guard)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(address + "/")
        self.page.evaluate("() => window.twinViewer.ready.then(() => true)")
        self.wait()

    def _guard(self, route: Any) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def wait(self) -> None:
        self.page.wait_for_function(LOADED, timeout=30_000)
        self.page.wait_for_timeout(300)  # the frame after the last tile

    def picture(self, name: str) -> np.ndarray:
        png = self.page.locator("#map").screenshot()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{name}.png").write_bytes(png)
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)

    def look_at(self, lon: float, lat: float, zoom: float) -> None:
        self.page.evaluate(
            """([lon, lat, zoom]) => window.twinViewer.state.deck.setProps({initialViewState:
                {longitude: lon, latitude: lat, zoom, pitch: 0, bearing: 0}})""",
            [lon, lat, zoom],
        )
        self.page.wait_for_timeout(800)  # the new view's tiles are asked for on the next frames
        self.wait()

    def click_at(self, lon: float, lat: float) -> None:
        self.wait()  # a click while tiles are still being cut and drawn can be dropped
        x, y = self.page.evaluate("([lon, lat]) => window.twinViewer.project(lon, lat)", [lon, lat])
        # as a hand does: move there, press, release (deck.gl tells a click from a drag)
        self.page.mouse.move(x - 4, y - 4)
        self.page.mouse.move(x, y)
        self.page.wait_for_timeout(200)  # hovering: deck.gl picks what is under the pointer
        self.page.mouse.down()
        self.page.wait_for_timeout(50)
        self.page.mouse.up()
        self.page.wait_for_timeout(600)  # two clicks in quick succession are a double-click

    def click_for(self, lon: float, lat: float, text: str) -> str:
        """Click until the viewer takes the click, then wait for the panel to say ``text``.

        A synthetic click that lands while deck.gl is busy with a frame can be dropped; a
        person would click again. A slow answer is waited for, not clicked over.
        """
        for _ in range(5):
            taken = self.page.evaluate("() => window.twinViewer.clicks()")
            self.click_at(lon, lat)
            try:
                self.page.wait_for_function(
                    "(n) => window.twinViewer.clicks() > n", arg=taken, timeout=3_000
                )
                break
            except PlaywrightTimeout:
                continue
        return self.result(text)

    def result(self, text: str) -> str:
        try:
            self.page.wait_for_function(
                "(text) => document.getElementById('result').textContent.includes(text)",
                arg=text,
                timeout=30_000,
            )
        except PlaywrightTimeout:
            shown = self.page.locator("#result").inner_text()
            raise AssertionError(f"the panel never said {text!r}; it says {shown!r}") from None
        return str(self.page.locator("#result").inner_text())

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def viewer(browser: Browser, sample_server: str) -> Iterator[Viewer]:
    page = Viewer(browser, sample_server)
    yield page
    assert page.outside == [], f"requests left the machine: {page.outside}"
    assert page.errors == [], f"console errors: {page.errors}"
    page.close()


def test_the_viewer_draws_the_city_offline(viewer: Viewer) -> None:
    picture = viewer.picture("viewer")
    background = np.array([244, 243, 239])
    drawn = np.abs(picture - background).sum(axis=2) > 30
    assert drawn.mean() > 0.3, "the WebGL canvas is nearly blank"
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 200  # shaded 3D buildings, roads
    config = viewer.page.evaluate("() => window.twinViewer.state.config.features")
    assert all(config.values())  # every tool's backend is served, so every tool is shown
    buttons = viewer.page.locator("#modes button").all_inner_texts()
    assert buttons == ["Inspect", "Route", "Service areas", "Incident"]


def test_toggling_a_layer_changes_the_picture(viewer: Viewer) -> None:
    before = viewer.picture("viewer-buildings-on")
    viewer.page.locator("input[data-layer=buildings]").uncheck()
    viewer.wait()
    after = viewer.picture("viewer-buildings-off")
    changed = np.abs(before - after).sum(axis=2) > 30
    assert changed.mean() > 0.05
    viewer.page.locator("#surface").fill("10")  # the section view: the surface nearly clear
    viewer.wait()
    section = viewer.picture("viewer-section")
    assert (np.abs(section - after).sum(axis=2) > 30).mean() > 0.01


def test_a_click_shows_the_attributes(viewer: Viewer, sample_db: str) -> None:
    stations = read_layer("resources", url=sample_db)
    station = stations[stations["kind"] == "fire_station"].iloc[0]
    viewer.page.locator("input[data-layer=buildings]").uncheck()
    viewer.look_at(station.geometry.x, station.geometry.y, 18.0)
    # the store's id of what stands there
    text = viewer.click_for(station.geometry.x, station.geometry.y, str(station["id"]))
    assert "resources" in text and "Fontvieille" in text
    viewer.picture("viewer-attributes")


def test_what_is_here_route_service_areas_and_incident(viewer: Viewer) -> None:
    viewer.look_at(7.4230, 43.7360, 16.0)
    for layer in ("buildings", "roads", "signals", "cameras", "resources", "incidents", "closures"):
        viewer.page.locator(f"input[data-layer={layer}]").uncheck()
    viewer.page.wait_for_timeout(1000)  # the tiles of what is left are asked for anew
    viewer.wait()
    text = viewer.click_for(7.42035, 43.73490, "Within 30 m")  # on the ground: what is here
    assert "roads" in text and "pipelines" in text  # every layer answers, shown or not
    viewer.page.get_by_role("button", name="Route").click()
    viewer.click_for(7.4205, 43.7345, "destination")  # both in view, right of the panel
    assert "km (emergency)" in viewer.click_for(7.4265, 43.7385, "km (emergency)")
    viewer.page.get_by_role("button", name="Service areas").click()
    assert "12 min" in viewer.click_for(7.4203, 43.7349, "12 min")
    viewer.page.get_by_role("button", name="Incident").click()
    viewer.page.locator("#incident-kind").select_option("fire")
    text = viewer.click_for(7.4250, 43.7370, "roads to close")
    assert "min" in text and "buildings" in text
    viewer.wait()
    viewer.picture("viewer-incident")
