"""The viewer's answers in a real browser: route steps, service-area legend, incident impact,
Clear, and clicks in a busy part of the map, each taken and answered.

The oracle of every list is the API itself, asked for the same points over HTTP. Nothing
sleeps: every wait is on the page's own counts (``twinViewer.events()``/``answers()``).
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx

from tests.api.test_viewer import ANSWER_S, Viewer

ROUTE = ((7.4205, 43.7345), (7.4265, 43.7385))
BURST = (7.4250, 43.7370)  # on a water main of the sample city
BUSY = (7.4250, 43.7370, 17.0)  # the Condamine: buildings, roads, pipes and cables together


def answers(viewer: Viewer) -> Any:
    return viewer.page.evaluate("() => window.twinViewer.answers()")


def overlay_ids(viewer: Viewer) -> list[str]:
    return list(
        viewer.page.evaluate("() => window.twinViewer.state.deck.props.layers.map((l) => l.id)")
    )


def test_route_steps_are_the_apis_and_a_hovered_step_is_drawn(
    viewer: Viewer, sample_server: str
) -> None:
    (a, b) = ROUTE
    api = httpx.get(
        f"{sample_server}/routing/route",
        params={"from": f"{a[0]},{a[1]}", "to": f"{b[0]},{b[1]}", "profile": "emergency"},
    ).json()
    steps = api["properties"]["steps"]
    viewer.look_at(7.4230, 43.7360, 16.0)
    viewer.page.get_by_role("button", name="Route").click()
    viewer.click(*a, "destination")
    viewer.click(*b, "km (emergency)")
    items = viewer.page.locator("#result ol.steps li")
    assert items.count() == len(steps)
    shown = items.all_inner_texts()
    for step, text in zip(steps, shown, strict=True):
        assert (step["name"] or "unnamed road") in text
    assert [i["label"] for i in answers(viewer)["items"]] == [
        s["name"] or "unnamed road" for s in steps
    ]
    # hover the third step: its part of the route is highlighted, and only it
    before = answers(viewer)["highlights"]
    items.nth(2).hover()
    viewer.until(
        "(n) => window.twinViewer.answers().highlights > n",
        before,
        what="a highlight",
        timeout_s=ANSWER_S,
    )
    state = answers(viewer)
    assert state["hovered"] == 2
    highlight = viewer.page.evaluate("() => window.twinViewer.state.overlays.highlight")
    coords = highlight["features"][0]["geometry"]["coordinates"]
    assert len(coords) >= 2
    # the step's part lies on the route's line (every vertex within a metre of it)
    route = api["geometry"]["coordinates"]
    lons = [c[0] for c in route]
    lats = [c[1] for c in route]
    for lon, lat in coords:
        assert (
            min(lons) - 1e-5 <= lon <= max(lons) + 1e-5
            and min(lats) - 1e-5 <= lat <= max(lats) + 1e-5
        )
    assert "answer-highlight" in overlay_ids(viewer)
    # a click on it moves the view there
    flights = state["flights"]
    items.nth(2).click()
    viewer.until(
        "(n) => window.twinViewer.answers().flights > n",
        flights,
        what="the flight",
        timeout_s=ANSWER_S,
    )
    viewer.settle("after the flight to a step")
    x, y = viewer.project(*coords[len(coords) // 2])
    assert 0 <= x <= 1200 and 0 <= y <= 800, (x, y)
    # the reader switches to Chinese: the answer shown is written again in Chinese, same steps
    viewer.page.locator("#language").select_option("zh-CN")
    viewer.until(
        "() => /[\\u4e00-\\u9fff]/.test(document.querySelector('#result ol.steps li').textContent)",
        what="the steps in Chinese",
        timeout_s=ANSWER_S,
    )
    assert viewer.page.locator("#result ol.steps li").count() == len(steps)
    viewer.page.locator("#language").select_option("en")


def test_service_areas_have_a_legend_of_distinct_bands(viewer: Viewer) -> None:
    viewer.look_at(7.4230, 43.7360, 16.0)
    viewer.page.get_by_role("button", name="Service areas").click()
    viewer.click(7.4203, 43.7349, "12 min")
    bands = viewer.page.locator("#result .answer-legend li")
    assert bands.count() == 3
    assert [t.split(":")[0] for t in bands.all_inner_texts()] == ["4 min", "8 min", "12 min"]
    colours = viewer.page.locator("#result .answer-swatch").evaluate_all(
        "(nodes) => nodes.map((n) => n.dataset.color.split(',').map(Number))"
    )
    assert len({tuple(c) for c in colours}) == 3
    # far apart, and sequential: darkest (lowest lightness) for the shortest time
    light = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in colours]
    assert light == sorted(light) and light[1] - light[0] > 40 and light[2] - light[1] > 40, light
    # the map draws them in the legend's colours
    drawn = viewer.page.evaluate(
        """() => { const l = window.twinViewer.state.deck.props.layers.find((x) => x.id === 'service-areas');
        return l.props.data.features.map((f) => [f.properties.minutes, l.props.getFillColor(f).slice(0, 3)]); }"""
    )
    by_minutes = {m: c for m, c in drawn}
    assert [by_minutes[m] for m in (4, 8, 12)] == colours


def test_impact_names_the_valves_units_and_roads_and_clear_empties(
    viewer: Viewer, sample_server: str
) -> None:
    body = httpx.post(
        f"{sample_server}/incidents/impact",
        json={"geometry": {"type": "Point", "coordinates": list(BURST)}, "kind": "burst_main"},
    ).json()
    valves = [d["id"] for d in body["utility"]["operate"]]
    assert valves
    viewer.look_at(7.4250, 43.7370, 16.0)
    viewer.page.get_by_role("button", name="Incident").click()
    viewer.page.locator("#incident-kind").select_option("burst_main")
    text = viewer.click(*BURST, "to close")
    operate = viewer.page.locator("#result ol.operate li").all_inner_texts()
    assert len(operate) == len(valves)
    for valve, row in zip(valves, operate, strict=True):
        assert valve in row and "Avenue John F. Kennedy" in row  # the street it lies under
    units = viewer.page.locator("#result ol.units li").all_inner_texts()
    assert len(units) == len(body["units"]["features"])
    for unit, row in zip(body["units"]["features"], units, strict=True):
        assert unit["properties"]["name"] in row
        assert f"{unit['properties']['total_s'] / 60:.1f} min" in row
    assert "Within 50 m" in text
    # a valve clicked: highlighted where it is
    viewer.page.locator("#result ol.operate li").first.click()
    viewer.until(
        "() => window.twinViewer.answers().flights > 0", what="the flight", timeout_s=ANSWER_S
    )
    highlight = viewer.page.evaluate("() => window.twinViewer.state.overlays.highlight")
    d = body["utility"]["operate"][0]
    assert highlight["features"][0]["geometry"]["coordinates"] == [d["lon"], d["lat"]]
    ids = overlay_ids(viewer)
    assert {"units", "marks", "answer-highlight"} <= set(ids)
    # Clear: every overlay and the answer gone
    viewer.page.locator("#answer-clear").click()
    viewer.until(
        "() => window.twinViewer.answers().clears > 0", what="the clear", timeout_s=ANSWER_S
    )
    overlays = viewer.page.evaluate("() => window.twinViewer.state.overlays")
    assert overlays == {
        "route": None,
        "areas": None,
        "units": None,
        "closures": None,
        "marks": [],
        "highlight": None,
    }
    assert viewer.page.locator("#result").inner_text() == ""
    left = set(overlay_ids(viewer))
    assert not left & {
        "route",
        "units",
        "service-areas",
        "suggested-closures",
        "marks",
        "answer-highlight",
    }


def test_clicks_in_a_busy_part_are_each_taken_and_answered(viewer: Viewer) -> None:
    viewer.look_at(*BUSY)
    # ten clicks in a row, each at once after the last one's answer (no settling between)
    for i in range(10):
        lon, lat = BUSY[0] + (i - 5) * 0.00008, BUSY[1] + (i % 3 - 1) * 0.00005
        x, y = viewer.project(lon, lat)
        before = viewer.events()
        viewer.page.mouse.click(x, y)
        after = viewer.until(
            "(n) => { const e = window.twinViewer.events(); return e.handled >= n && e; }",
            before["handled"] + 1,
            what=f"click {i + 1} handled",
            timeout_s=ANSWER_S,
        )
        moved = {
            k: after[k] - before[k] for k in ("presses", "releases", "clicks", "drags", "answers")
        }
        assert moved["presses"] == moved["releases"] == moved["clicks"] == 1, moved
        assert moved["drags"] == 0 and moved["answers"] >= 1, moved
        assert after["shown"] == after["clicks"]
    # then a storm: ten clicks without waiting; every one taken, the last one answered
    before = viewer.events()
    for i in range(10):
        x, y = viewer.project(BUSY[0] + i * 0.00005, BUSY[1])
        viewer.page.mouse.click(x, y)
    after = viewer.until(
        "(n) => { const e = window.twinViewer.events(); return e.handled >= n && e; }",
        before["handled"] + 10,
        what="the storm's ten clicks handled",
        timeout_s=ANSWER_S * 2,
    )
    assert after["clicks"] - before["clicks"] == 10 and after["drags"] == before["drags"]
    assert after["shown"] == after["clicks"]
    assert viewer.page.locator("#result").inner_text().strip() != ""
