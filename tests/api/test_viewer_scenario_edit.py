"""Making and editing a what-if scenario from the viewer (issue 16, part 1), in Debian's
Chromium (headless) as tests/api/test_viewer.py.

A planner signs in on the page, makes a scenario in the *Edit scenario* tool, closes a road and
retires a building by clicking them, and undoes an edit from the list. The oracles are
independent of the page: the store's edits (``layers.scenarios.edits``), where the store's road
and building are (projected by the page's viewport), the base's tile bytes read over HTTP before
and after, and the map's pixels where the building stood.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterator
from typing import Any

import geopandas as gpd
import httpx2 as httpx
import numpy as np
import pytest
import shapely
from playwright.sync_api import Browser

from layers import scenarios as store
from layers.identity import add_user, update_user
from layers.queries import read_layer
from tests.api.test_viewer import ANSWER_S, HEIGHT, WIDTH, Viewer
from tests.api.test_viewer_compare import map_only, projected_box
from tests.api.test_viewer_underground import show_only
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT, SAMPLE, _fresh_database
from twin.sample import load_sample

PASSWORD = "correct horse battery staple"
NAME = "viewer-edit"
#: Where the sample city's buildings stand close together (La Condamine): the building retired
#: is the largest within RADIUS_M of it, the road closed the longest one there far from others.
SPOT = (7.4207, 43.7329)
RADIUS_M = 120.0
ROAD_CLEAR_M = 25.0  # no other road this near the closed road's click point
ZOOM = 17.0
SAME = 30  # a pixel differs if its colour is this far (sum of |RGB|) from the other picture's
EDIT = "() => window.twinViewer.scenarioEdit()"
#: What the browser writes to the console for a refusal a test asks for (the page says it).
REFUSED = re.compile(r"Failed to load resource: the server responded with a status of (403|412)")


# -- the city, the callers, the page -------------------------------------------------------------


@pytest.fixture(scope="module")
def edit_db() -> str:
    """The sample city in a database of this module's own (scenarios are written there)."""
    url = _fresh_database("_viewer_scenario_edit")
    load_sample(directory=SAMPLE, url=url)
    return url


@pytest.fixture(scope="module")
def edit_server(edit_db: str) -> Iterator[str]:
    # the real anonymous role (tests/conftest.py sets another): the tool is a signed-in planner's
    with api_server(edit_db, root=ROOT, env={"TWIN_AUTH_ANONYMOUS_ROLE": "public"}) as address:
        yield address


def _user(url: str, role: str) -> str:
    name = f"{role}-{secrets.token_hex(3)}"
    add_user(name, roles=[role], password=PASSWORD, url=url)
    return name


@pytest.fixture(scope="module")
def targets(edit_db: str) -> dict[str, Any]:
    """The building to retire and the road to close (the store's), and where to click each."""
    buildings = read_layer("buildings", url=edit_db)
    metric_crs = buildings.estimate_utm_crs()
    spot = gpd.GeoSeries([shapely.Point(*SPOT)], crs=4326).to_crs(metric_crs).iloc[0]
    metric = buildings.geometry.to_crs(metric_crs)
    near = buildings[(metric.centroid.distance(spot) < RADIUS_M).to_numpy()]
    building = near.loc[metric.area[near.index].sort_values(ascending=False).index[0]]
    roads = read_layer("roads", url=edit_db)
    road_metric = roads.geometry.to_crs(metric_crs)
    inner = shapely.buffer(metric[building.name], 40.0)
    road = None
    for index in road_metric.length.sort_values(ascending=False).index:
        line = road_metric[index]
        middle = line.interpolate(0.5, normalized=True)
        if middle.distance(spot) > RADIUS_M or middle.distance(inner) < 1:
            continue
        others = road_metric.drop(index)
        if others.distance(middle).min() > ROAD_CLEAR_M:
            road = (roads.loc[index, "id"], middle)
            break
    assert road is not None, f"no lone road within {RADIUS_M} m of {SPOT}"
    to_lonlat = gpd.GeoSeries([road[1]], crs=metric_crs).to_crs(4326).iloc[0]
    inside = building.geometry.representative_point()
    return {
        "building": building,
        "building_id": str(building["id"]),
        "building_at": (inside.x, inside.y),
        "road_id": str(road[0]),
        "road_at": (to_lonlat.x, to_lonlat.y),
    }


@pytest.fixture
def page(browser: Browser, edit_server: str) -> Iterator[Viewer]:
    viewer = Viewer(browser, edit_server)
    yield viewer
    assert viewer.outside == [], f"requests left the machine: {viewer.outside}"
    errors = [e for e in viewer.errors if not REFUSED.search(e)]
    assert errors == [], f"console errors: {errors}"
    viewer.close()


# -- helpers -------------------------------------------------------------------------------------


def sign_in(viewer: Viewer, user: str) -> None:
    before = viewer.events()["signIns"]
    viewer.page.fill("#signin-user", user)
    viewer.page.fill("#signin-password", PASSWORD)
    viewer.page.click("#signin-submit")
    viewer.until(
        "(n) => window.twinViewer.events().signIns > n && window.twinViewer.auth().signedIn",
        before,
        what=f"signed in as {user}",
        timeout_s=ANSWER_S,
    )
    viewer.settle(f"signed in as {user}")


def tools(viewer: Viewer) -> list[str]:
    return list(
        viewer.page.locator("#modes button").evaluate_all("(b) => b.map((x) => x.dataset.mode)")
    )


def open_tool(viewer: Viewer) -> None:
    viewer.page.locator("#modes button[data-mode=scenario]").click()
    viewer.until(
        "() => !document.getElementById('scenario-edit').hidden && window.twinViewer.scenarioEdit().listed",
        what="the scenario tool open, the caller's scenarios listed",
        timeout_s=ANSWER_S,
    )


def edits_count(viewer: Viewer, count: int) -> dict[str, Any]:
    return dict(
        viewer.until(
            f"() => {{ const e = ({EDIT})(); return !e.busy && e.edits.length === {count} && e; }}",
            what=f"{count} edits listed",
            timeout_s=ANSWER_S,
        )
    )


def stored(url: str) -> set[tuple[str, str, str]]:
    frame = store.edits(NAME, url=url)
    return {(str(r.layer), str(r.feature_id), str(r.op)) for r in frame.itertuples()}


def bearer(server: str, user: str) -> dict[str, str]:
    token = httpx.post(
        f"{server}/auth/token",
        data={"grant_type": "password", "username": user, "password": PASSWORD},
        timeout=ANSWER_S,
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def base_tile(server: str, lon: float, lat: float, headers: dict[str, str]) -> bytes:
    z = 15  # the Web Mercator tile (OGC TileMatrixSet WebMercatorQuad) holding (lon, lat)
    x = int((lon + 180.0) / 360.0 * 2**z)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * 2**z)
    answer = httpx.get(
        f"{server}/map/tiles/WebMercatorQuad/{z}/{y}/{x}",
        params={"collections": "buildings,roads,closures"},
        headers=headers,
        timeout=ANSWER_S,
    )
    assert answer.status_code == 200, answer.text
    return bytes(answer.content)


# -- the tests -----------------------------------------------------------------------------------


def test_a_planner_makes_a_scenario_closes_a_road_retires_a_building_and_undoes(
    page: Viewer, edit_server: str, edit_db: str, targets: dict[str, Any]
) -> None:
    assert "scenario" not in tools(page), "the tool is offered to an anonymous caller"
    planner = _user(edit_db, "planner")
    sign_in(page, planner)
    assert "scenario" in tools(page)
    show_only(page, {"districts", "roads", "buildings"})
    x, y = targets["building_at"]
    page.look_at(x, y, ZOOM)
    headers = bearer(edit_server, planner)
    base_before = base_tile(edit_server, x, y, headers)
    before = page.picture("scenario-edit-before")
    clear = map_only(page)

    open_tool(page)
    page.page.fill("#scenario-name", NAME)
    page.page.fill("#scenario-title", "道路施工")
    page.page.click("#scenario-make")
    made = page.until(
        f"(n) => {{ const e = ({EDIT})(); return e.current === n && e.loaded && !e.busy && e; }}",
        NAME,
        what="the scenario made and being edited",
        timeout_s=ANSWER_S,
    )
    assert made["etag"] == '"r0"' and not made["error"], made
    assert page.page.evaluate("() => window.twinViewer.compare().a") == NAME
    assert store.get(NAME, url=edit_db).author == planner

    # close the road: a click on it
    page.page.check("#scenario-actions input[value=close]")
    road_x, road_y = targets["road_at"]
    answer = page.click(road_x, road_y, targets["road_id"])
    assert "closed" in answer or "封闭" in answer, answer
    edits_count(page, 1)
    # retire the building: a click on it
    page.page.check("#scenario-actions input[value=retire]")
    page.click(x, y, targets["building_id"])
    listed = edits_count(page, 2)
    assert listed["revision"] == 2 and listed["etag"] == '"r2"', listed

    # the store holds exactly those two edits: the road's closure and the building retired
    edits = store.edits(NAME, url=edit_db)
    assert sorted(edits["layer"]) == ["buildings", "closures"], edits
    assert stored(edit_db) >= {("buildings", targets["building_id"], "retire")}
    closure_id = edits.loc[edits["layer"] == "closures", "feature_id"].iloc[0]
    with store.using(NAME, url=edit_db):
        closure = read_layer("closures", url=edit_db).set_index("id").loc[closure_id]
    assert list(closure["road_ids"]) == [targets["road_id"]] and closure["kind"] == "works"

    # the map shows the scenario: where the building stood the pixels changed; the base did not
    after = page.picture("scenario-edit-after")
    x0, y0, x1, y1 = projected_box(page, gpd.GeoDataFrame([targets["building"]], crs=4326))
    near = np.zeros((HEIGHT, WIDTH), dtype=bool)
    near[max(y0, 0) : y1, max(x0, 0) : x1] = True
    changed = (np.abs(before - after).sum(axis=2) > SAME) & clear & near
    assert changed.sum() > 500, f"only {changed.sum()} pixels changed where the building stood"
    assert base_tile(edit_server, x, y, headers) == base_before, "the base's tile changed"

    # undo in the list: the building's edit is gone, the base's building shows again
    page.page.locator(
        f"#scenario-edits li[data-layer=buildings][data-id='{targets['building_id']}'] button"
    ).click()
    edits_count(page, 1)
    assert stored(edit_db) == {("closures", str(closure_id), "add")}
    undone = page.picture("scenario-edit-undone")
    assert ((np.abs(before - undone).sum(axis=2) > SAME) & clear & near).sum() < 50


def test_an_edit_from_elsewhere_is_a_412_said_and_reloaded(
    page: Viewer, edit_server: str, edit_db: str, targets: dict[str, Any]
) -> None:
    planner = _user(edit_db, "planner")
    name = "viewer-edit-412"
    sign_in(page, planner)
    open_tool(page)
    page.page.fill("#scenario-name", name)
    page.page.click("#scenario-make")
    page.until(
        f"(n) => {{ const e = ({EDIT})(); return e.current === n && e.loaded && !e.busy; }}",
        name,
        what="the scenario made",
        timeout_s=ANSWER_S,
    )
    # the same planner changes the scenario elsewhere (a second client)
    elsewhere = httpx.delete(
        f"{edit_server}/scenarios/{name}/edits/buildings/{targets['building_id']}",
        headers=bearer(edit_server, planner),
        timeout=ANSWER_S,
    )
    assert elsewhere.status_code == 200, elsewhere.text
    # the page still holds "r0": its station is refused, said, and the scenario read again
    page.page.check("#scenario-actions input[value=station]")
    x, y = targets["road_at"]
    page.look_at(x, y, ZOOM)
    page.click(x, y, "")
    state = edits_count(page, 1)
    assert state["conflicts"] == 1 and state["error"] and state["etag"] == '"r1"', state
    shown = page.page.locator("#scenario-edit-state").inner_text()
    assert "他人修改" in shown or "someone else" in shown, shown
    # done again, it is stored
    page.click(x, y, "")
    state = edits_count(page, 2)
    assert not state["error"], state
    assert sorted(store.edits(name, url=edit_db)["op"]) == ["add", "retire"]


def test_a_caller_who_may_not_make_scenarios_gets_no_tool_and_a_refusal_is_said(
    page: Viewer, edit_server: str, edit_db: str
) -> None:
    analyst = _user(edit_db, "analyst")
    sign_in(page, analyst)
    assert "scenario" not in tools(page), "the tool is offered to an analyst"
    # a planner demoted while the page is open: the API refuses (403), the panel says so
    page.page.locator("#signout").click()
    page.until("() => !window.twinViewer.auth().signedIn", what="signed out", timeout_s=ANSWER_S)
    planner = _user(edit_db, "planner")
    sign_in(page, planner)
    open_tool(page)
    update_user(planner, roles=["analyst"], url=edit_db)
    # the server reads users' roles again within seconds (layers.identity.REVOCATION_REFRESH_S):
    # wait until it knows of the demotion, or the planner's click may still be allowed
    headers = bearer(edit_server, planner)
    wait_until(
        lambda: (
            httpx.get(f"{edit_server}/auth/me", headers=headers, timeout=ANSWER_S).json()["roles"]
            == ["analyst"]
        ),
        timeout_s=ANSWER_S,
        what="the server knows the planner is an analyst now",
    )
    page.page.fill("#scenario-name", "not-allowed")
    page.page.click("#scenario-make")
    state = page.until(
        f"() => {{ const e = ({EDIT})(); return !e.busy && e.error && e; }}",
        what="the refusal said",
        timeout_s=ANSWER_S,
    )
    assert state["current"] is None, state
    shown = page.page.locator("#scenario-edit-state").inner_text()
    assert "无权" in shown or "Not allowed" in shown, shown
    # a bad name is said before anything is asked
    page.page.fill("#scenario-name", "Bad Name")
    page.page.click("#scenario-make")
    page.until(
        "() => /Bad Name/.test(document.getElementById('scenario-edit-state').textContent)",
        what="the bad name said",
        timeout_s=ANSWER_S,
    )
