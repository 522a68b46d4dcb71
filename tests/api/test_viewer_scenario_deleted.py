"""A scenario deleted elsewhere while the viewer shows it (issue 16), in Debian's Chromium
(headless) as tests/api/test_viewer.py.

The viewer compares the base with a scenario (or shows a scenario alone, and edits it); someone
else deletes the scenario over the HTTP API (``DELETE /scenarios/{name}``); the map is moved so
that new tiles are asked for. The viewer must notice (its tiles answer 404), list the scenarios
again, show the base (A) or no comparison (B) instead, say which scenario was deleted, and ask
for it no more. The oracles are the page's own requests as the browser sends them and the text
of its panel.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Request

from tests.api.test_viewer import ANSWER_S, Viewer
from tests.api.test_viewer_compare import planner_headers
from tests.api.test_viewer_underground import show_only
from tests.conditions import api_server
from tests.conftest import ROOT, SAMPLE, _fresh_database
from twin.sample import load_sample

#: Where the sample city's buildings stand close together (La Condamine), and where the map is
#: moved to once the scenario is deleted (tiles not read before).
SPOT = (7.4207, 43.7329)
MOVED = (7.4262, 43.7372)
AGAIN = (7.4180, 43.7300)
ZOOM = 16.0
COMPARE = "() => window.twinViewer.compare()"
EDIT = "() => window.twinViewer.scenarioEdit()"
#: What the browser writes to the console for the 404s of the deleted scenario's tiles.
NOT_FOUND = re.compile(r"Failed to load resource: the server responded with a status of 404")


# -- the city, the page --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deleted_db() -> str:
    """The sample city in a database of this module's own (scenarios are written there)."""
    url = _fresh_database("_viewer_scenario_deleted")
    load_sample(directory=SAMPLE, url=url)
    return url


@pytest.fixture(scope="module")
def deleted_server(deleted_db: str) -> Iterator[str]:
    with api_server(deleted_db, root=ROOT) as address:
        yield address


@pytest.fixture(scope="module")
def planner(deleted_db: str, deleted_server: str) -> dict[str, str]:
    """The headers of a signed-in planner: the one who makes and deletes the scenarios."""
    return planner_headers(deleted_db, deleted_server)


@pytest.fixture
def scenario(deleted_server: str, planner: dict[str, str]) -> str:
    """A scenario of this test's own (it is deleted by the test)."""
    name = f"deleted-{secrets.token_hex(3)}"
    made = httpx.post(
        f"{deleted_server}/scenarios",
        json={"name": name, "title": "Deleted while shown", "description": "viewer test"},
        headers=planner,
        timeout=ANSWER_S,
    )
    assert made.status_code == 201, made.text
    return name


class Asked:
    """Every URL the page asks for, in order."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def request(self, request: Request) -> None:
        self.urls.append(request.url)

    def of(self, name: str, since: int = 0) -> list[str]:
        """The URLs asked for since the `since`-th that name scenario `name`."""
        return [u for u in self.urls[since:] if names_scenario(u, name)]


def names_scenario(url: str, name: str) -> bool:
    """Whether a request reads scenario `name`: ?scenario=, the compare call's a or b, or
    /scenarios/{name}/..."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if name in query.get("scenario", []):
        return True
    if parsed.path.endswith("/scenarios/compare") and name in query.get("a", []) + query.get(
        "b", []
    ):
        return True
    parts = [unquote(p) for p in parsed.path.split("/")]
    return any(a == "scenarios" and b == name for a, b in pairwise(parts))


@pytest.fixture
def page(browser: Browser, deleted_server: str) -> Iterator[tuple[Viewer, Asked]]:
    """The viewer on this module's city, its requests recorded; no request may leave the
    machine and the console must stay free of errors (but the deleted scenario's 404s)."""
    viewer = Viewer(browser, deleted_server)
    asked = Asked()
    viewer.page.on("request", asked.request)
    yield viewer, asked
    assert viewer.outside == [], f"requests left the machine: {viewer.outside}"
    errors = [e for e in viewer.errors if not NOT_FOUND.search(e)]
    assert errors == [], f"console errors: {errors}"
    viewer.close()


# -- helpers -------------------------------------------------------------------------------------


def open_link(viewer: Viewer, server: str, fragment: str) -> dict[str, Any]:
    """Open the viewer on a comparison's link; wait until it is applied and the map settled."""
    viewer.page.goto(f"{server}/#{fragment}")
    viewer.page.reload()
    state = viewer.until(
        "() => { const c = window.twinViewer && window.twinViewer.compare(); return c && c.listed && c; }",
        what="the page opened on the link",
        timeout_s=ANSWER_S,
    )
    viewer.page.evaluate(
        "(view) => window.twinViewer.lookAt(view)",
        {"longitude": SPOT[0], "latitude": SPOT[1], "zoom": ZOOM},
    )
    viewer.settle(f"opened on {fragment}")
    return dict(state)


def delete(server: str, name: str, headers: dict[str, str]) -> None:
    gone = httpx.delete(f"{server}/scenarios/{name}", headers=headers, timeout=ANSWER_S)
    assert gone.status_code in (200, 204), gone.text
    assert httpx.get(f"{server}/scenarios/{name}", timeout=ANSWER_S).status_code == 404


def move(viewer: Viewer, at: tuple[float, float]) -> None:
    """Move the map (new tiles are asked for there); not waiting for it to settle."""
    viewer.page.evaluate(
        "(view) => window.twinViewer.lookAt(view)",
        {"longitude": at[0], "latitude": at[1], "zoom": ZOOM},
    )


def asks_no_more(viewer: Viewer, asked: Asked, name: str) -> None:
    """Once the fallback has settled, moving the map asks for `name` no more."""
    viewer.settle("after the fallback")
    since = len(asked.urls)
    before = viewer.page.evaluate(COMPARE)["rechecks"]
    move(viewer, AGAIN)
    viewer.settle("moved again, in the base")
    assert len(asked.urls) > since, "moving the map asked for no tile"
    assert asked.of(name, since) == [], f"asked for {name} after the fallback"
    # nothing more was listed again: a base tile's 404 (outside the tilesets) is no scenario's
    assert viewer.page.evaluate(COMPARE)["rechecks"] == before


# -- the tests -----------------------------------------------------------------------------------


def test_a_compared_scenario_deleted_elsewhere_falls_back_to_no_comparison(
    page: tuple[Viewer, Asked], deleted_server: str, planner: dict[str, str], scenario: str
) -> None:
    viewer, asked = page
    state = open_link(viewer, deleted_server, f"compare=swipe&a=base&b={scenario}&x=0.8")
    # the compared map draws the one-map vector tiles only (no layer read as features):
    # a tile's 404 is what tells
    show_only(viewer, {"districts", "roads", "buildings"})
    sources = viewer.page.evaluate(
        "() => window.twinViewer.state.config.styles.map((s) => [s.layer, s.source])"
    )
    assert {layer for layer, source in sources if source == "tiles"} >= {"roads", "buildings"}
    viewer.settle("showing the tiled layers only")
    assert (state["a"], state["b"], state["layout"], state["error"]) == (
        "base",
        scenario,
        "swipe",
        None,
    )
    assert viewer.page.evaluate(COMPARE)["comparing"]
    assert asked.of(scenario), "the compared map asked for nothing of the scenario"

    delete(deleted_server, scenario, planner)
    since = len(asked.urls)
    move(viewer, MOVED)
    state = viewer.until(
        "(name) => { const c = window.twinViewer.compare();"
        " return c.b === null && c.deleted.includes(name) && c; }",
        scenario,
        what=f"B ({scenario}) dropped once deleted",
        timeout_s=ANSWER_S,
    )
    assert (state["a"], state["comparing"], state["layout"]) == ("base", False, "swipe")
    assert scenario in state["error"] and scenario not in state["scenarios"], state
    shown = viewer.page.locator("#compare-state").inner_text()
    assert scenario in shown and "deleted" in shown, shown
    assert scenario not in viewer.page.evaluate("() => window.location.hash")
    # the scenarios were listed again once (or twice: a late tile), not on every failing tile
    failed = asked.of(scenario, since)
    assert failed, "the moved map asked for nothing of the scenario"
    assert 1 <= state["rechecks"] <= 2, (state["rechecks"], len(failed))
    assert viewer.page.locator("#compare-b").input_value() == ""
    asks_no_more(viewer, asked, scenario)


def test_a_scenario_shown_alone_and_edited_deleted_elsewhere_falls_back_to_the_base(
    page: tuple[Viewer, Asked], deleted_server: str, planner: dict[str, str], scenario: str
) -> None:
    viewer, asked = page
    state = open_link(viewer, deleted_server, f"compare=off&a={scenario}")
    assert (state["a"], state["b"], state["error"]) == (scenario, None, None)
    # the scenario picked in the Edit scenario tool too (the page's caller may edit scenarios)
    viewer.page.locator("#modes button[data-mode=scenario]").click()
    viewer.until(
        f"(name) => ({EDIT})().scenarios.includes(name)",
        scenario,
        what="the scenario listed in the edit tool",
        timeout_s=ANSWER_S,
    )
    viewer.page.select_option("#scenario-pick", scenario)
    viewer.until(
        f"(name) => {{ const e = ({EDIT})(); return e.current === name && e.loaded >= 1; }}",
        scenario,
        what="the scenario being edited",
        timeout_s=ANSWER_S,
    )
    viewer.settle("editing the scenario")
    assert asked.of(scenario), "the map asked for nothing of the scenario"

    delete(deleted_server, scenario, planner)
    move(viewer, MOVED)
    state = viewer.until(
        "(name) => { const c = window.twinViewer.compare();"
        " return c.a === 'base' && c.deleted.includes(name) && c; }",
        scenario,
        what=f"A ({scenario}) dropped once deleted",
        timeout_s=ANSWER_S,
    )
    assert (state["b"], state["comparing"]) == (None, False)
    assert scenario in state["error"], state
    shown = viewer.page.locator("#compare-state").inner_text()
    assert scenario in shown and "deleted" in shown, shown
    assert viewer.page.locator("#compare-a").input_value() == "base"
    edit = viewer.until(
        f"(name) => {{ const e = ({EDIT})(); return e.deleted.includes(name) && e; }}",
        scenario,
        what="the edit tool told",
        timeout_s=ANSWER_S,
    )
    assert edit["current"] is None and scenario not in edit["scenarios"], edit
    said = viewer.page.locator("#scenario-edit-state").inner_text()
    assert scenario in said and "deleted" in said, said
    assert viewer.page.locator("#scenario-pick").input_value() == ""
    asks_no_more(viewer, asked, scenario)
