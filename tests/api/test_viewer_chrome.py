"""The page around the map: languages, legend, scale bar, north arrow, search, time and export.

The locale check reads the sources (no browser): every key the page's code names is in both
languages, and both languages have the same keys. The rest drives the page in Debian's Chromium
(headless, every outside request blocked, as tests/api/test_viewer.py does) and checks it against
independent oracles: twin/deck.py's styles for the legend, the Web-Mercator formula for the
scale bar, the projection of a point north of the middle for the north arrow, the store for the
search's hits, and Pillow for the exported PNG.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Request

from layers.catalog import LAYERS
from layers.queries import read_layer
from tests.api.test_viewer import HEIGHT, WIDTH, Viewer
from tests.conftest import ROOT
from twin.deck import STYLES
from twin.incidents import KINDS

SRC = ROOT / "api" / "static" / "src"
LOCALES = SRC / "locales"
STEP_S = 60  # a search answered, a view moved: deadlines only bound a failure
CHROME = "() => window.twinViewer.chrome()"
# what may stay Latin in the Chinese page: the product's and the city's names, the API's name,
# a file format, units, and the language switch's own entry for English
LATIN_ALLOWED = {"CityTwin", "Monaco", "API", "PNG", "km", "English"}
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
CJK_ALLOWED = {"中文"}  # the language switch's entry for Chinese
# the parts of the page drawn by the page itself (not the data's names or credits)
PARTS = ["#panel", "#legend", "#controls", "#search", "#scale", "#alerts"]
TEXTS = """(parts) => {
  const out = [document.title];
  const shown = (node) => node.checkVisibility ? node.checkVisibility() : node.offsetParent !== null;
  for (const part of parts) {
    const root = document.querySelector(part);
    if (!root) continue;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent.trim();
      // #result is the tools' answer (another part's), empty on opening
      if (text && shown(node.parentElement) && !node.parentElement.closest("#result")) out.push(text);
    }
    for (const node of [root, ...root.querySelectorAll("*")]) {
      if (!shown(node)) continue;
      for (const name of ["title", "placeholder", "aria-label"]) {
        if (node.getAttribute(name)) out.push(node.getAttribute(name));
      }
    }
  }
  return out;
}"""


# -- the locales (no browser) --------------------------------------------------------------------


def _locale(lng: str) -> dict[str, str]:
    keys = {}
    for path in sorted((LOCALES / lng).glob("*.json")):
        for key, value in json.loads(path.read_text(encoding="utf-8")).items():
            keys[f"{path.stem}:{key}"] = value
    return keys


def _keys_named() -> set[str]:
    """Every literal key the page's code names: t("a:k"), data-i18n*="a:k", and w("k") for
    each wrapper ``const w = (key, ...) => t(`a:${key}`...)`` a module defines (lt, st ...)."""
    named: set[str] = set()
    sources = [p.read_text(encoding="utf-8") for p in SRC.glob("*.js")]
    sources.append((ROOT / "api" / "viewer.py").read_text(encoding="utf-8"))
    for source in sources:
        # comments and docstrings name keys as examples ("area:key"): code lines only
        text = "\n".join(
            line for line in source.splitlines() if not line.lstrip().startswith(("//", "*", "/*"))
        )
        named |= set(re.findall(r"\bt\(\s*[\"']([a-z_]+:[^\"'`$]+)[\"']", text))
        wrappers = re.findall(r"const (\w+) = \(key[^)]*\) => t\(`([a-z_]+):\$\{key\}`", text)
        for name, area in wrappers:
            found = re.findall(rf"\b{name}\(\s*[\"']([^\"'`$]+)[\"']", text)
            named |= {f"{area}:{k}" for k in found}
        named |= set(re.findall(r"data-i18n(?:-[a-z-]+)?=\\?[\"']([a-z_]+:[^\"'$]+)\\?[\"']", text))
    return named


#: i18next's plural suffixes (CLDR categories): English has one/other, Chinese only other, so
#: "count_one" and "count_other" in English stand for "count_other" in Chinese.
PLURAL = re.compile(r"_(zero|one|two|few|many|other)$")


def _plural_free(keys: set[str]) -> set[str]:
    """The keys with i18next's plural suffixes taken off (each plural key counted once)."""
    return {PLURAL.sub("", key) for key in keys}


def test_every_key_the_page_names_is_in_both_languages() -> None:
    en, zh = _locale("en"), _locale("zh-CN")
    named = _keys_named()
    assert len(named) > 60, f"the scan found too few keys: {sorted(named)}"
    assert {"chrome:legend", "signin:user", "live:alerts", "core:surface"} <= named
    assert sorted(named - _plural_free(set(en))) == [], "keys missing in English"
    assert sorted(named - _plural_free(set(zh))) == [], "keys missing in Chinese"
    assert sorted(_plural_free(set(en)) ^ _plural_free(set(zh))) == [], (
        "the two languages have different keys"
    )
    # Chinese has no plural forms but "other": every plural key there is an _other one
    assert [k for k in zh if PLURAL.search(k) and not k.endswith("_other")] == []
    assert [k for k, v in zh.items() if not v.strip()] == []


def test_every_layer_attribute_value_and_incident_kind_has_a_name_in_both() -> None:
    en, zh = _locale("en"), _locale("zh-CN")
    wanted = {f"core:layer.{layer}" for layer in STYLES}
    wanted |= {f"core:value.{s.by}.{value}" for s in STYLES.values() if s.by for value in s.colors}
    wanted |= {f"core:field.{f.name}" for layer in LAYERS.values() for f in layer.fields}
    wanted |= {f"core:field.{name}" for name in ("id", "source", "valid_from", "valid_to")}
    wanted |= {f"core:incident.{kind}" for kind in KINDS}
    for table in (en, zh):
        assert sorted(wanted - set(table)) == []
    # Chinese names are Chinese (a unit in brackets aside)
    assert [k for k in wanted if not CJK.search(zh[k])] == []


# -- in the browser ---------------------------------------------------------------------------


class Page(Viewer):
    """The viewer in a browser of a given language, downloads allowed."""

    def __init__(self, browser: Browser, address: str, locale: str = "en"):
        self.context = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT}, locale=locale, accept_downloads=True
        )
        self.page = self.context.new_page()
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.route("**/*", self._guard)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", self._request)
        self.page.goto(address + "/")
        self.settle("on opening")

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def chrome(self) -> Any:
        return self.page.evaluate(CHROME)

    def texts(self) -> list[str]:
        return list(self.page.evaluate(TEXTS, PARTS))


@pytest.fixture
def opened(browser: Browser, sample_server: str) -> Iterator[Any]:
    pages: list[Page] = []

    def open_page(locale: str = "en") -> Page:
        pages.append(Page(browser, sample_server, locale))
        return pages[-1]

    yield open_page
    for page in pages:
        assert page.outside == [], f"requests left the machine: {page.outside}"
        assert page.errors == [], f"console errors: {page.errors}"
        page.close()


def _latin(texts: list[str]) -> list[str]:
    return [t for t in texts if set(LATIN_WORD.findall(t)) - LATIN_ALLOWED]


def _cjk(texts: list[str]) -> list[str]:
    return [t for t in texts if CJK.search(t) and t not in CJK_ALLOWED]


def test_in_chinese_no_english_is_left_and_in_english_no_chinese(opened: Any) -> None:
    page = opened("zh-CN")
    assert page.page.evaluate("() => document.documentElement.lang") == "zh-CN"
    texts = page.texts()
    for mode in page.page.locator("#modes button").all():  # every tool's hint
        mode.click()
        texts += page.texts()
    texts += page.page.locator("#incident-kind option").all_inner_texts()
    assert len(texts) > 40
    assert _latin(texts) == []
    assert "图例" in texts and "消防站" in " ".join(texts)
    # switched to English in the panel: everything the page wrote is drawn again
    page.page.locator("#language").select_option("en")
    page.until("() => document.documentElement.lang === 'en'", what="English", timeout_s=STEP_S)
    texts = page.texts() + page.page.locator("#incident-kind option").all_inner_texts()
    assert _cjk(texts) == []
    assert "Legend" in texts and "Fire" in texts
    # a browser in English opens in English
    english = opened("en")
    assert _cjk(english.texts()) == []
    assert english.page.locator("#legend h2").inner_text() == "Legend"


def _legend(page: Page) -> dict[str, Any]:
    return {e["layer"]: e for e in page.chrome()["legend"]}


def test_the_legend_lists_the_shown_layers_in_their_colours(opened: Any) -> None:
    page = opened("en")
    visible = {s.layer for s in STYLES.values() if s.visible}
    legend = _legend(page)
    assert set(legend) == visible
    for layer, entry in legend.items():
        style = STYLES[layer]
        assert entry["color"] == list(style.color)
        assert {v["value"]: v["color"] for v in entry["values"]} == (
            {value: list(c) for value, c in style.colors.items()} | {None: list(style.color)}
            if style.by
            else {}
        )
    # drawn in the page in those colours
    swatch = page.page.locator("#legend li[data-layer=signals] > .swatch")
    colour = swatch.evaluate("(node) => getComputedStyle(node).backgroundColor")
    assert colour == "rgb({}, {}, {})".format(*STYLES["signals"].color[:3])
    assert "fire station" in page.page.locator("#legend").inner_text()
    # a layer toggled off leaves it, one toggled on joins it
    page.page.locator("input[data-layer=buildings]").uncheck()
    page.page.locator("input[data-layer=pipe_nodes]").check()
    legend = _legend(page)
    assert set(legend) == visible - {"buildings"} | {"pipe_nodes"}
    assert page.page.locator("#legend li[data-layer=buildings]").count() == 0
    assert (
        page.page.locator("#legend li[data-layer=pipe_nodes] li[data-value=hydrant]").count() == 1
    )


def test_the_scale_bar_and_north_arrow_follow_the_view(opened: Any) -> None:
    page = opened("en")
    for lat, zoom, bearing in ((43.7384, 16.3, 40.0), (43.73, 13.7, -75.0)):
        view = {"longitude": 7.4246, "latitude": lat, "zoom": zoom, "bearing": bearing}
        page.page.evaluate("(view) => window.twinViewer.lookAt(view)", view)
        page.settle(f"at zoom {zoom}, bearing {bearing}")
        scale = page.chrome()["scale"]
        # Web Mercator, 512 px tiles: metres per pixel at the latitude and zoom
        mpp = 2 * math.pi * 6378137 * math.cos(math.radians(lat)) / (512 * 2**zoom)
        assert scale["pixels"] == pytest.approx(scale["metres"] / mpp, rel=1e-9)
        assert 40 <= scale["pixels"] <= 120
        assert int(str(scale["metres"])[0]) in (1, 2, 5)
        width = page.page.locator("#scale-bar").evaluate("(n) => n.getBoundingClientRect().width")
        assert width == pytest.approx(scale["pixels"], abs=0.5)
        metres = scale["metres"]
        label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
        assert page.page.locator("#scale-label").inner_text() == label
        # the arrow points where north is drawn: a point just north of the middle, projected
        x0, y0 = page.project(7.4246, lat)
        x1, y1 = page.project(7.4246, lat + 0.001)
        drawn = math.degrees(math.atan2(x1 - x0, -(y1 - y0)))  # clockwise from up
        matrix = page.page.locator("#north-arrow").evaluate("(n) => getComputedStyle(n).transform")
        a, b = (float(v) for v in re.findall(r"-?[\d.e-]+", matrix)[:2])
        rotation = math.degrees(math.atan2(b, a))
        assert rotation == pytest.approx(-bearing, abs=0.01)
        assert rotation == pytest.approx(drawn, abs=0.5)
    # a click on the arrow turns the map north up
    page.page.locator("#north").click()
    page.until(
        "() => window.twinViewer.state.view.bearing === 0", what="north up", timeout_s=STEP_S
    )
    page.settle("north up")
    assert page.chrome()["north"] == 0


def _search(page: Page, text: str) -> list[dict[str, Any]]:
    before = page.chrome()["search"]["seq"]
    page.page.locator("#search-q").fill(text)
    page.until(
        "(n) => { const s = window.twinViewer.chrome().search; return s.seq > n && s.answered === s.seq; }",
        before,
        what=f"the search for {text!r} answered",
        timeout_s=STEP_S,
    )
    return list(page.chrome()["search"]["hits"])


def _in_free_part(page: Page, lon: float, lat: float) -> tuple[float, float]:
    x, y = page.project(lon, lat)
    padding = page.chrome()["padding"]
    assert padding["left"] > 250  # the panel's side is kept free
    free = ((padding["left"] + WIDTH - padding["right"]) / 2, HEIGHT / 2)
    assert padding["left"] < x < WIDTH and 0 < y < HEIGHT, ((x, y), padding)
    return x - free[0], y - free[1]


def test_search_finds_a_station_a_street_and_an_id_and_flies_there(
    opened: Any, sample_db: str
) -> None:
    page = opened("en")
    resources = read_layer("resources", url=sample_db).set_index("id")
    station = resources.loc["node/1866523017"]  # Centre de secours principal de la Condamine
    # its French name, typed without accents or case; Enter picks the first hit
    hits = _search(page, "centre de secours principal")
    assert hits[0]["layer"] == "resources" and hits[0]["id"] == "node/1866523017"
    page.page.locator("#search-q").press("Enter")
    page.until(
        "() => window.twinViewer.chrome().search.flown === 1",
        what="the view moved to the station",
        timeout_s=STEP_S,
    )
    page.settle("at the station")
    dx, dy = _in_free_part(page, station.geometry.x, station.geometry.y)
    assert abs(dx) < 40 and abs(dy) < 40, (dx, dy)  # in the middle of the free part
    assert page.chrome()["search"]["highlight"] == {
        "layer": "resources",
        "id": "node/1866523017",
        "features": 1,
    }
    assert "fire station" in page.page.locator("#search-hits").inner_text()
    # a street by its name: one hit for all its segments, its box fitted
    roads = read_layer("roads", url=sample_db)
    street = roads[roads["name"] == "Boulevard du Larvotto"]
    hits = _search(page, "boulevard du larvotto")
    first = hits[0]
    assert (first["layer"], first["kind"], first["id"]) == ("roads", "street", None)
    assert first["bbox"] == pytest.approx(list(street.total_bounds), abs=1e-5)
    page.page.locator("#search-hits button[data-hit='0']").click()
    page.until(
        "() => window.twinViewer.chrome().search.flown === 2",
        what="the view moved to the street",
        timeout_s=STEP_S,
    )
    page.settle("at the street")
    minx, miny, maxx, maxy = street.total_bounds
    for lon, lat in ((minx, miny), (maxx, maxy)):  # the whole street in the free part
        _in_free_part(page, lon, lat)
    # a feature by its id
    hits = _search(page, "node/1866465411")
    assert hits[0]["id"] == "node/1866465411"


def test_the_time_control_reads_features_as_of_a_moment(opened: Any) -> None:
    page = opened("en")
    page.page.locator("#time-at").fill("2020-01-02T03:04:05")
    page.until("() => window.twinViewer.chrome().at", what="a moment set", timeout_s=STEP_S)
    at = page.chrome()["at"]
    local = page.page.evaluate("() => new Date('2020-01-02T03:04:05').toISOString()")
    assert at == local
    assert page.page.locator("#time-state").inner_text().startswith("As of")
    page.requests.clear()
    page.look_at(7.4246, 43.7384, 16.5)  # pipelines (read as features) are drawn here
    items = [
        parse_qs(urlparse(u).query) for u in page.requests if "/collections/pipelines/items" in u
    ]
    assert items and all(q.get("datetime") == [at] for q in items)
    page.page.locator("#time-now").click()
    assert page.chrome()["at"] is None
    assert page.page.locator("#time-state").inner_text() == "Current state"


def test_the_export_is_a_png_of_the_map_with_its_legend(opened: Any) -> None:
    page = opened("zh-CN")
    page.settle("before the export")
    with page.page.expect_download() as download:
        page.page.locator("#export").click()
    path = download.value.path()
    assert download.value.suggested_filename.endswith(".png")
    picture = Image.open(io.BytesIO(path.read_bytes()))
    assert picture.format == "PNG"
    size = page.page.evaluate(
        "() => [document.getElementById('map').clientWidth, document.getElementById('map').clientHeight]"
    )
    dpr = page.page.evaluate("() => window.devicePixelRatio")
    assert picture.size == (round(size[0] * dpr), round(size[1] * dpr))
    pixels = np.asarray(picture.convert("RGB"), dtype=np.int16)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # the city, not a blank canvas
    layout = page.chrome()["lastExport"]
    x, y, w, h = (round(v) for v in layout["legend"]["box"])
    legend = pixels[y : y + h, x : x + w]
    assert (np.abs(legend - 255).sum(axis=2) < 30).mean() > 0.5  # a white box
    swatches = layout["legend"]["swatches"]
    assert {s["layer"] for s in swatches} == {s.layer for s in STYLES.values() if s.visible}
    solid = [s for s in swatches if s["color"][3] == 255]
    assert len(solid) > 5
    for s in solid:  # each swatch in its layer's colour
        assert np.abs(pixels[s["y"], s["x"]] - np.array(s["color"][:3])).sum() < 12, s
