"""The underground in the viewer: pipes seen through a lowered surface, stations over their
vehicles, and the Section tool, in Debian's Chromium (headless) as tests/api/test_viewer.py.

The oracles are independent of the drawing code: the pixels where the pipes are drawn come from a
picture of the pipelines alone (and a pipe's own position, projected by the page's viewport,
falls on them); the station and its vehicle are read from the store; the section's crossings
from ``POST /utilities/section`` itself.
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import shapely

from layers.queries import read_layer
from tests.api.test_viewer import ANSWER_S, HEIGHT, WIDTH, Viewer
from tests.layers.test_section import across, table
from twin.deck import DEPTH_EXAGGERATION

#: Where the sample city's water mains and sewers run side by side (La Condamine).
PIPES_AT = (7.4216, 43.7320, 17.0)
#: A pixel is drawn in a pipe's colour if it is this close (sum of |RGB| differences) to the
#: picture of the pipes alone; drawn at all if this far from a picture of no layer.
SAME = 40
#: The part of the map (rows, columns of the 1200 × 800 picture) no panel, legend, search box
#: or scale bar covers.
CLEAR = (slice(100, 750), slice(300, 1000))
PROJECT = "(c) => window.twinViewer.state.deck.getViewports()[0].project(c)"


def show_only(viewer: Viewer, layers: set[str]) -> None:
    """Tick exactly these layers (and no live layer) in the panel."""
    for box in viewer.page.locator("input[data-layer]").all():
        box.set_checked(box.get_attribute("data-layer") in layers)
    for box in viewer.page.locator("input[data-live]").all():
        box.set_checked(False)


def surface(viewer: Viewer, percent: int) -> None:
    viewer.page.locator("#surface").fill(str(percent))
    viewer.until(
        "(v) => window.twinViewer.state.surface === v",
        percent / 100,
        what=f"the surface at {percent} %",
        timeout_s=ANSWER_S,
    )


def test_lowering_the_surface_reveals_the_pipes_under_the_basemap(
    viewer: Viewer, sample_db: str
) -> None:
    lon, lat, zoom = PIPES_AT
    viewer.look_at(lon, lat, zoom)
    # the mask of pipe pixels: where a picture of the pipelines alone differs from one of no
    # layer, in the part of the map no panel covers
    show_only(viewer, set())
    empty = viewer.picture("underground-nothing")
    show_only(viewer, {"pipelines"})
    alone = viewer.picture("underground-pipes-alone")
    mask = np.zeros(alone.shape[:2], dtype=bool)
    rows, columns = CLEAR
    mask[rows, columns] = (np.abs(alone - empty).sum(axis=2) > SAME)[rows, columns]
    share = mask[rows, columns].mean()
    assert 0.02 < share < 0.6, f"the pipes cover {share:.1%} of the map"
    # a pipe of the store, in view, is drawn where the page's viewport projects it at its depth
    # (exaggerated as twin/deck.py says)
    pipes = read_layer("pipelines", url=sample_db)
    box = shapely.box(lon - 0.001, lat - 0.0007, lon + 0.001, lat + 0.0007)
    inside = pipes[pipes.intersects(box)]
    assert len(inside) > 0
    hits = 0
    for geometry, depth in zip(inside.geometry.head(20), inside["depth_m"].head(20), strict=True):
        point = geometry.intersection(box).interpolate(0.5, normalized=True)
        z = -float(depth) * DEPTH_EXAGGERATION
        x, y = viewer.page.evaluate(PROJECT, [point.x, point.y, z])[:2]
        if 3 <= x < WIDTH - 3 and 3 <= y < HEIGHT - 3:
            hits += bool(mask[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].any())
    assert hits >= min(5, len(inside)), f"only {hits} pipes of the store are drawn where they are"

    # the basemap and the buildings on: at 100 % the ground hides the pipes
    show_only(viewer, {"pipelines", "districts", "roads", "buildings"})

    def piped(name: str) -> float:
        picture = viewer.picture(name)
        same = np.abs(picture - alone).sum(axis=2) <= SAME
        return float(same[mask].mean())

    surface(viewer, 100)
    covered = piped("underground-surface-100")
    surface(viewer, 30)
    faded = piped("underground-surface-30")
    surface(viewer, 0)
    cleared = piped("underground-surface-0")
    assert covered < 0.1, f"{covered:.0%} of the pipe pixels show pipes at 100 %"
    assert cleared > 0.9, f"only {cleared:.0%} of the pipe pixels show pipes at 0 %"
    assert covered < faded < cleared, (covered, faded, cleared)


@pytest.mark.parametrize("live_vehicles", [True, False], ids=["live-vehicles", "tile-vehicles"])
def test_a_click_on_a_fire_station_opens_the_station_not_its_vehicle(
    viewer: Viewer, sample_db: str, live_vehicles: bool
) -> None:
    resources = read_layer("resources", url=sample_db)
    stations = resources[resources["kind"] == "fire_station"]
    vehicles = resources[resources["kind"] == "vehicle"]

    # a station with a vehicle parked at the very same place (the oracle: the store)
    def parked(at: shapely.Point) -> Any:
        return (vehicles.geometry.x == at.x) & (vehicles.geometry.y == at.y)

    station = next(s for _, s in stations.iterrows() if parked(s.geometry).any())
    vehicle = vehicles[parked(station.geometry)].iloc[0]
    assert vehicle["name"] != station["name"]
    viewer.page.locator("input[data-layer=buildings]").uncheck()
    viewer.page.locator("input[data-live=vehicles]").set_checked(live_vehicles)
    if live_vehicles:
        # the live layer draws the vehicles (once the stored ones are read)
        viewer.until(
            "(id) => { const v = window.twinViewer.live().vehicles[id]; return v && v.drawn; }",
            vehicle["id"],
            what="the vehicle drawn by the live layer",
            timeout_s=ANSWER_S,
        )
    viewer.look_at(station.geometry.x, station.geometry.y, 18.0)
    text = viewer.click(station.geometry.x, station.geometry.y, station["name"])
    heading = viewer.page.locator("#result h3").first.inner_text()
    table_text = viewer.page.locator("#result table.attributes").first.inner_text()
    assert vehicle["name"] not in table_text, f"the vehicle was opened: {text!r}"
    assert station["name"] in table_text and heading, text
    viewer.picture(f"underground-station-{'live' if live_vehicles else 'tiles'}")


def test_the_section_tool_lists_the_pipes_the_api_returns(
    viewer: Viewer, sample_db: str, sample_server: str
) -> None:
    pipes = table(sample_db, "pipelines")
    pipe = pipes[pipes["network"] == "sewer"].geometry.iloc[10]
    line = across(pipe, half_m=30)
    (x0, y0), (x1, y1) = line.coords
    # the oracle: the API's answer for the same line
    answer = httpx.post(
        f"{sample_server}/utilities/section",
        json={"geometry": shapely.geometry.mapping(line)},
        timeout=ANSWER_S,
    )
    assert answer.status_code == 200, answer.text
    expected: dict[str, Any] = answer.json()
    ids = [c["id"] for c in expected["crossings"]]
    assert len(ids) >= 2 and {"sewer", "water"} <= {c["network"] for c in expected["crossings"]}

    for box in ("buildings", "resources", "signals", "cameras", "incidents", "closures"):
        viewer.page.locator(f"input[data-layer={box}]").uncheck()
    viewer.page.get_by_role("button", name="Section").click()
    viewer.look_at(line.centroid.x, line.centroid.y, 18.0)
    viewer.click(x0, y0, "1 so far")
    viewer.click(x1, y1, "2 points")
    # a double-click on the last point: its second click ends the line
    viewer.click(x1, y1, "Pipeline section")
    state = viewer.until(
        "() => { const s = window.twinViewer.section(); return s.answers >= 1 && !s.running && s; }",
        what="the section answered",
        timeout_s=ANSWER_S,
    )
    assert state["error"] is None and state["crossings"] == ids
    listed = viewer.page.locator("#result table.section-crossings tbody tr").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.crossing)"
    )
    assert listed == ids
    drawn = viewer.page.locator("#result svg.section g.crossing").evaluate_all(
        "(gs) => gs.map((g) => g.dataset.crossing)"
    )
    with_depth = [c["id"] for c in expected["crossings"] if c["elevation_m"] is not None]
    assert drawn == with_depth
    # each circle is labelled with its id, diameter and depth
    labels = viewer.page.locator("#result svg.section g.crossing text").evaluate_all(
        "(texts) => texts.map((t) => t.textContent)"
    )
    for crossing, label in zip(
        [c for c in expected["crossings"] if c["elevation_m"] is not None], labels, strict=True
    ):
        assert crossing["id"] in label and f"{crossing['depth_m']:.2f} m" in label, label
        if crossing["diameter_mm"] is not None:
            assert f"DN{crossing['diameter_mm']:.0f}" in label, label
    viewer.picture("underground-section")
    # Clear removes the line and its crossings with every other overlay
    viewer.page.locator("#answer-clear").click()
    viewer.until(
        "() => window.twinViewer.section().points === 0"
        " && !window.twinViewer.state.deck.props.layers.some((l) => l.id.startsWith('section'))",
        what="the section cleared",
        timeout_s=ANSWER_S,
    )
