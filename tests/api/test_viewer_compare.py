"""Comparing two states in the viewer (issue 16): swipe (卷帘), side by side (多屏比对) and the
figures table, in Debian's Chromium (headless) as tests/api/test_viewer.py.

The scenario is made through the HTTP API (``POST /scenarios``, ``DELETE
/scenarios/{name}/edits/buildings/{id}``: a few buildings retired) in a database of this module's
own. The oracles are independent of the comparing code: the pictures of the base alone and of the
scenario alone (the single map reading each), where the retired buildings stand (the store's
geometries projected by the page's viewport, walls to roofs), and the compare call's own answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import geopandas as gpd
import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import shapely
from playwright.sync_api import Browser, Request

from layers.identity import add_user
from layers.queries import read_layer
from tests.api.test_viewer import ANSWER_S, ARTIFACTS, HEIGHT, WIDTH, Viewer
from tests.api.test_viewer_underground import show_only
from tests.conditions import api_server
from tests.conftest import ROOT, SAMPLE, _fresh_database
from twin.sample import load_sample

PASSWORD = "correct horse battery staple"
#: The scenario the tests compare with the base (a slug: layers/scenarios.py check_name).
NAME = "viewer-compare"
#: Where the sample city's buildings stand close together (La Condamine), and how many of the
#: largest within RADIUS_M of it the scenario retires.
SPOT = (7.4207, 43.7329)
RADIUS_M = 70.0
RETIRED = 4
ZOOM = 17.0
#: A pixel differs if its colour is this far (sum of |RGB| differences) from another picture's.
SAME = 30
#: Pixels around the retired buildings' projected box that may differ too (their edges'
#: anti-aliasing, outlines drawn wider than the wall), and around the swipe's divider (its line
#: and handle, 24 px wide).
MARGIN_PX = 6
DIVIDER_PX = 14
SHADOW_PX = 12
#: The page's parts over the map, left out of every comparison of pictures.
OVER_THE_MAP = (
    "#panel",
    "#search",
    "#controls",
    "#legend",
    "#scale",
    "#attribution",
    "#alerts",
    "#compare-figures",
)
COMPARE = "() => window.twinViewer.compare()"
FIGURED = "() => window.twinViewer.compare().figuresAnswered"
#: How long the figures of two states may take (reach and response times of every building).
FIGURES_S = 270
PROJECT_ALL = (
    "(points) => points.map((p) => window.twinViewer.state.deck.getViewports()[0].project(p))"
)


# -- the city, the scenario, the page ------------------------------------------------------------


@pytest.fixture(scope="module")
def compare_db() -> str:
    """The sample city in a database of this module's own (the scenario is written there)."""
    url = _fresh_database("_viewer_compare")
    load_sample(directory=SAMPLE, url=url)
    return url


@pytest.fixture(scope="module")
def compare_server(compare_db: str) -> Iterator[str]:
    with api_server(compare_db, root=ROOT) as address:
        yield address


def planner_headers(url: str, server: str) -> dict[str, str]:
    """Add a planner to the database at ``url``; return its sign-in headers at ``server``."""
    name = f"planner-{secrets.token_hex(3)}"
    add_user(name, roles=["planner"], password=PASSWORD, url=url)
    token = httpx.post(
        f"{server}/auth/token",
        data={"grant_type": "password", "username": name, "password": PASSWORD},
        timeout=ANSWER_S,
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture(scope="module")
def planner(compare_db: str, compare_server: str) -> dict[str, str]:
    """The headers of a signed-in planner (a scenario is made by someone)."""
    return planner_headers(compare_db, compare_server)


@pytest.fixture(scope="module")
def retired(compare_db: str, compare_server: str, planner: dict[str, str]) -> Any:
    """The scenario: the largest buildings near SPOT retired. Returns those buildings (the store's)."""
    buildings = read_layer("buildings", url=compare_db)
    metric = buildings.geometry.to_crs(buildings.estimate_utm_crs())
    spot = gpd.GeoSeries([shapely.Point(*SPOT)], crs=4326).to_crs(metric.crs).iloc[0]
    near = buildings[(metric.centroid.distance(spot) < RADIUS_M).to_numpy()]
    area = metric.area[near.index]
    chosen = near.loc[area.sort_values(ascending=False).index[:RETIRED]]
    assert len(chosen) == RETIRED, f"only {len(chosen)} buildings near {SPOT}"
    made = httpx.post(
        f"{compare_server}/scenarios",
        json={"name": NAME, "title": "Four buildings retired", "description": "viewer test"},
        headers=planner,
        timeout=ANSWER_S,
    )
    assert made.status_code == 201, made.text
    for feature_id in chosen["id"]:
        gone = httpx.delete(
            f"{compare_server}/scenarios/{NAME}/edits/buildings/{feature_id}",
            headers=planner,
            timeout=ANSWER_S,
        )
        assert gone.status_code == 200, gone.text
    return chosen


@pytest.fixture
def viewer(browser: Browser, compare_server: str, retired: Any) -> Iterator[Viewer]:
    """The viewer on this module's city (the scenario made), opened and settled; no request
    may leave the machine and the console must stay free of errors."""
    page = Viewer(browser, compare_server)
    yield page
    assert page.outside == [], f"requests left the machine: {page.outside}"
    assert page.errors == [], f"console errors: {page.errors}"
    page.close()


# -- helpers -------------------------------------------------------------------------------------


def choose(viewer: Viewer, a: str, b: str | None) -> dict[str, Any]:
    """Pick states A and B in the panel, as a planner does; wait until the map is drawn so."""
    viewer.until(
        "(name) => window.twinViewer.compare().scenarios.includes(name)",
        NAME,
        what="the scenario listed in the panel",
        timeout_s=ANSWER_S,
    )
    viewer.page.select_option("#compare-a", a)
    viewer.page.select_option("#compare-b", b or "")
    state = viewer.until(
        "([a, b]) => { const c = window.twinViewer.compare(); return c.a === a && c.b === b && c; }",
        [a, b],
        what=f"A {a} and B {b} chosen",
        timeout_s=ANSWER_S,
    )
    viewer.settle(f"with A {a} and B {b}")
    return dict(state)


def roof_and_ground(buildings: Any) -> list[list[float]]:
    """Every corner of the buildings at the ground and at the height the viewer draws them
    (height_m, else 3 m a storey, else 10 m: api/static/src/viewer.js height)."""
    points = []
    for geometry, height_m, levels in zip(
        buildings.geometry, buildings["height_m"], buildings["levels"], strict=True
    ):
        if not pd.isna(height_m) and float(height_m) > 0:
            z = float(height_m)
        elif not pd.isna(levels) and float(levels) > 0:
            z = 3.0 * float(levels)
        else:
            z = 10.0
        for x, y in shapely.get_coordinates(geometry):
            points += [[float(x), float(y), 0.0], [float(x), float(y), z]]
    return points


def projected_box(viewer: Viewer, buildings: Any) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1) the buildings are drawn within on the main map."""
    xy = np.asarray(viewer.page.evaluate(PROJECT_ALL, roof_and_ground(buildings)))[:, :2]
    x0, y0 = np.floor(xy.min(axis=0)).astype(int)
    x1, y1 = np.ceil(xy.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def map_only(viewer: Viewer) -> np.ndarray:
    """The pixels of the map that no panel, box or label of the page covers."""
    mask = np.ones((HEIGHT, WIDTH), dtype=bool)
    for selector in OVER_THE_MAP:
        for element in viewer.page.locator(selector).all():
            box = element.bounding_box() if element.is_visible() else None
            if box:  # and its shadow (viewer.css: at most 8 px blurred, 2 px down)
                x0, y0 = max(int(box["x"]) - SHADOW_PX, 0), max(int(box["y"]) - SHADOW_PX, 0)
                x1 = int(box["x"] + box["width"]) + SHADOW_PX
                y1 = int(box["y"] + box["height"]) + SHADOW_PX
                mask[y0:y1, x0:x1] = False
    return mask


def differs(one: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(one - other).sum(axis=2) > SAME)


def drag(viewer: Viewer, start: tuple[float, float], by: tuple[float, float]) -> None:
    """Press at `start`, move by `by` in steps and release (a pan, or the divider moved)."""
    viewer.settle("before the drag")
    viewer.page.mouse.move(*start)
    viewer.page.mouse.down()
    viewer.page.mouse.move(start[0] + by[0], start[1] + by[1], steps=10)
    viewer.page.mouse.up()


def both_views(viewer: Viewer) -> tuple[dict[str, float], dict[str, float]]:
    main = viewer.page.evaluate("() => window.twinViewer.state.view")
    other = viewer.page.evaluate(COMPARE)["view"]
    return main, other


def same_view(main: dict[str, float], other: dict[str, float]) -> bool:
    return all(abs(main[k] - other[k]) < 1e-9 for k in ("longitude", "latitude", "zoom"))


# -- swipe ---------------------------------------------------------------------------------------


def test_the_swipe_shows_the_base_left_of_the_divider_and_the_scenario_right(
    viewer: Viewer, retired: Any
) -> None:
    show_only(viewer, {"districts", "roads", "buildings"})
    middle = shapely.box(*retired.total_bounds).centroid
    viewer.look_at(middle.x, middle.y, ZOOM)
    clear = map_only(viewer)
    # the oracles: the base alone and the scenario alone, each on the single map
    choose(viewer, "base", None)
    base = viewer.picture("compare-base")
    choose(viewer, NAME, None)
    scenario = viewer.picture("compare-scenario")
    x0, y0, x1, y1 = projected_box(viewer, retired)
    assert 300 < x0 < x1 < 1000 and 100 < y0 < y1 < 750, (x0, y0, x1, y1)
    near = np.zeros((HEIGHT, WIDTH), dtype=bool)
    near[y0 - MARGIN_PX : y1 + MARGIN_PX, x0 - MARGIN_PX : x1 + MARGIN_PX] = True
    changed = differs(base, scenario) & clear
    # the retired buildings are gone in the scenario, and nothing else changed
    assert changed[near].sum() > 2000, f"only {changed[near].sum()} pixels differ where they stood"
    outside = np.argwhere(changed & ~near)
    assert len(outside) == 0, f"{len(outside)} pixels differ elsewhere, e.g. (y, x) {outside[:5]}"

    # the swipe, its divider dragged through the retired buildings
    requests: list[str] = []

    def asked(request: Request) -> None:
        if "/map/tiles/" in request.url:  # the shown layers' (hidden ones load on their own)
            requests.append(request.url)

    state = choose(viewer, "base", NAME)
    assert state["layout"] == "swipe" and state["comparing"]
    viewer.until(FIGURED, what="the figures read", timeout_s=FIGURES_S)  # the table's size
    divider = state["divider"] * WIDTH
    x = (x0 + x1) // 2
    viewer.page.on("request", asked)
    drag(viewer, (divider, 600), (x - divider, 0))
    viewer.until(
        "(x) => Math.abs(window.twinViewer.compare().divider * 1200 - x) < 1",
        x,
        what=f"the divider at {x}",
        timeout_s=ANSWER_S,
    )
    viewer.settle("after the divider moved")
    viewer.page.remove_listener("request", asked)
    assert requests == [], f"moving the divider asked for {requests}"
    swipe = viewer.picture("compare-swipe")
    clear &= map_only(viewer)  # the figures' table shown too, the alerts moved beside it
    columns = np.arange(WIDTH)[None, :]
    left = clear & (columns < x - DIVIDER_PX)
    right = clear & (columns > x + DIVIDER_PX)
    assert (differs(swipe, base) & left).sum() == 0, "left of the divider is not the base"
    assert (differs(swipe, scenario) & right).sum() == 0, "right of the divider is not the scenario"
    # ... and each side shows its state where they differ: the buildings left, none right
    assert (changed & left).sum() > 500 and (changed & right).sum() > 500
    # the link says so
    fragment = viewer.page.evaluate("() => window.location.hash")
    assert f"compare=swipe&a=base&b={NAME}&x=" in fragment, fragment


# -- side by side --------------------------------------------------------------------------------


def test_side_by_side_maps_stay_on_one_view(viewer: Viewer, retired: Any) -> None:
    middle = shapely.box(*retired.total_bounds).centroid
    viewer.look_at(middle.x, middle.y, ZOOM)
    choose(viewer, "base", NAME)
    viewer.page.locator("#compare-layouts button[data-layout=side]").click()
    viewer.until(
        "() => { const c = window.twinViewer.compare(); return c.layout === 'side' && c.view && c.view.width < 700; }",
        what="side by side",
        timeout_s=ANSWER_S,
    )
    viewer.settle("side by side")
    main, other = both_views(viewer)
    assert same_view(main, other), (main, other)
    viewer.picture("compare-side")  # the left map (#map)
    viewer.page.screenshot(path=ARTIFACTS / "compare-side-page.png")  # both
    # a pan of the left map moves the right one, and a pan of the right one the left
    for start, by in (((450, 550), (-80, 60)), ((800, 550), (70, -50))):
        before = main
        drag(viewer, start, by)
        viewer.settle(f"after the drag from {start}")
        main, other = both_views(viewer)
        assert same_view(main, other), (start, main, other)
        assert abs(main["longitude"] - before["longitude"]) > 1e-5, (start, before, main)
        # the same place is drawn at the same place of each map
        left = viewer.page.evaluate(PROJECT_ALL, [[middle.x, middle.y]])[0]
        right = viewer.page.evaluate("(c) => window.twinViewer.projectB(c)", [middle.x, middle.y])
        width_left = viewer.page.evaluate("() => document.getElementById('map').clientWidth")
        width_right = viewer.page.evaluate(
            "() => document.getElementById('compare-map').clientWidth"
        )
        assert abs((left[0] - width_left / 2) - (right[0] - width_right / 2)) < 1.5
        assert abs(left[1] - right[1]) < 1.5


# -- the figures ---------------------------------------------------------------------------------


def _row(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["key"], row["district"], row["a"], row["b"], row["difference"])


def _differs(row: dict[str, Any]) -> bool:
    if isinstance(row["difference"], int | float):
        return bool(row["difference"] != 0)
    return row["a"] != row["b"]


def test_the_figures_table_shows_the_compare_calls_rows(
    viewer: Viewer, compare_server: str, retired: Any
) -> None:
    answer = httpx.get(
        f"{compare_server}/scenarios/compare",
        params={"a": "base", "b": NAME},
        timeout=FIGURES_S,
    )
    assert answer.status_code == 200, answer.text
    expected = answer.json()
    assert expected["features"]["buildings"]["retired"] == sorted(retired["id"])
    choose(viewer, "base", NAME)
    viewer.until(FIGURED, what="the figures read", timeout_s=FIGURES_S)
    rows = viewer.page.locator("#compare-figures tbody tr").evaluate_all(
        """(rows) => rows.map((r) => ({key: r.dataset.key, district: JSON.parse(r.dataset.district),
            a: JSON.parse(r.dataset.a), b: JSON.parse(r.dataset.b),
            difference: JSON.parse(r.dataset.difference), differs: r.classList.contains('differs'),
            label: r.querySelector('th .label').textContent}))"""
    )
    assert [_row(r) for r in rows] == [_row(r) for r in expected["figures"]]
    assert [r["label"] for r in rows] == [r["label"]["en"] for r in expected["figures"]]
    assert [r["differs"] for r in rows] == [_differs(r) for r in expected["figures"]]
    assert any(r["differs"] for r in rows), "retiring four buildings changed no figure"
    # the features that differ: each listed; a click looks at it
    listed = viewer.page.locator("#compare-figures .compare-features button").all_inner_texts()
    assert len(listed) == RETIRED and all(
        any(i in text for text in listed) for i in retired["id"]
    ), listed
    flights = viewer.page.evaluate(COMPARE)["flights"]
    viewer.page.locator("#compare-figures .compare-features button").first.click()
    viewer.until(
        "(n) => window.twinViewer.compare().flights > n",
        flights,
        what="the view flown to the feature",
        timeout_s=ANSWER_S,
    )
    viewer.settle("after flying to the feature")
    # outlined on both maps (B's the one seen right of the divider)
    main_layers = viewer.page.evaluate(
        "() => window.twinViewer.state.deck.props.layers.map((l) => l.id)"
    )
    assert "compare-feature" in main_layers
    assert "compare-feature" in viewer.page.evaluate(COMPARE)["layers"]
    first = retired.set_index("id").loc[expected["features"]["buildings"]["retired"][0]]
    x, y = viewer.project(first.geometry.centroid.x, first.geometry.centroid.y)
    panel = viewer.page.locator("#panel").bounding_box()
    assert panel is not None
    # in the middle of the map the panel leaves free (chrome.js fitView)
    free = (panel["x"] + panel["width"] + WIDTH) / 2
    assert abs(x - free) < 40 and abs(y - HEIGHT / 2) < 40, ((x, y), free)
    # in Chinese, the Chinese labels
    viewer.page.select_option("#language", "zh-CN")
    labels = viewer.page.locator("#compare-figures tbody th").evaluate_all(
        "(cells) => cells.map((c) => c.querySelector('.label').textContent)"
    )
    assert labels == [r["label"]["zh"] for r in expected["figures"]]
    viewer.page.screenshot(path=ARTIFACTS / "compare-figures-zh.png")


# -- the link ------------------------------------------------------------------------------------


def test_a_link_opens_the_comparison_again(viewer: Viewer, compare_server: str) -> None:
    viewer.page.goto(f"{compare_server}/#compare=side&a=base&b={NAME}&x=0.3")
    viewer.page.reload()
    state = viewer.until(
        "() => { const c = window.twinViewer && window.twinViewer.compare(); return c && c.listed && c; }",
        what="the page opened again",
        timeout_s=ANSWER_S,
    )
    assert (state["layout"], state["a"], state["b"], state["divider"]) == (
        "side",
        "base",
        NAME,
        0.3,
    )
    assert state["error"] is None
    viewer.settle("opened side by side")


@pytest.mark.parametrize(
    ("fragment", "expected", "said"),
    [
        # a scenario that is not there: said, and the base instead (no tile asked in it)
        (f"compare=swipe&a=nowhere&b={NAME}", ("swipe", "base", NAME, 0.5), "nowhere"),
        ("compare=swipe&a=base&b=no-such", ("swipe", "base", None, 0.5), "no-such"),
        # a layout the page does not know: the single map; a divider off the map: at its edge
        (f"compare=tiled&a=base&b={NAME}&x=7", ("off", "base", NAME, 1.0), None),
        (f"compare=swipe&a=base&b={NAME}&x=-1", ("swipe", "base", NAME, 0.0), None),
        (f"compare=swipe&a=base&b={NAME}&x=left", ("swipe", "base", NAME, 0.5), None),
    ],
    ids=["unknown-a", "unknown-b", "unknown-layout", "divider-off-the-map", "divider-not-a-number"],
)
def test_a_bad_link_is_said_and_opens_what_it_can(
    viewer: Viewer,
    compare_server: str,
    fragment: str,
    expected: tuple[Any, ...],
    said: str | None,
) -> None:
    viewer.page.goto(f"{compare_server}/#{fragment}")
    viewer.page.reload()
    state = viewer.until(
        "() => { const c = window.twinViewer && window.twinViewer.compare(); return c && c.listed && c; }",
        what="the page opened again",
        timeout_s=ANSWER_S,
    )
    assert (state["layout"], state["a"], state["b"], state["divider"]) == expected
    viewer.settle("opened from the link")
    shown = viewer.page.locator("#compare-state").inner_text()
    if said:
        assert state["error"] and said in state["error"] and said in shown, (state, shown)
    else:
        assert state["error"] is None, state
