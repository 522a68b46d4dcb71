"""The live viewer in a real browser: the push stream drawn as it arrives.

Against a server of its own (its own MQTT topic prefix), Debian's Chromium opens the viewer
while a sensor gateway publishes on the broker as the field would (paho-mqtt, SensorThings'
MQTT extension topics). The page reaches the server through a TCP relay the test can cut, as
a network would drop the stream. Nothing sleeps: each step waits on what the viewer says it
has done (``twinViewer.events()`` counters, ``twinViewer.live()`` state, ``settled()``), and
what it shows is checked both in the state it exposes and in the pixels it draws.
Screenshots are saved in tests/artifacts/.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx2 as httpx
import numpy as np
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser

from layers.database import get_engine
from layers.observations import OBSERVATION
from tests.api.test_viewer import HEIGHT, SETTLE_S, WIDTH, Viewer
from tests.conditions import api_server, listening_socket, wait_until
from tests.conftest import ROOT
from tests.live_clients import Gateway
from twin.live.registry import register

PREFIX = f"{os.environ['TWIN_LIVE_TOPIC_PREFIX']}test_viewer_live/"
# Deadlines only bound a failure: a reading goes broker -> bridge -> store -> event -> stream
LIVE_S = 30
CONGESTED = np.array([215, 25, 28])  # the viewer's colours of congestion levels
FREE = np.array([26, 150, 65])
VEHICLE = np.array([240, 120, 0])
IMPACT = np.array([190, 0, 190])  # a focused alert's impact
OPERATOR = "duty officer 7"


@pytest.fixture(scope="module")
def live_server(live_module_db: str) -> Iterator[str]:
    with api_server(live_module_db, root=ROOT, env={"TWIN_LIVE_TOPIC_PREFIX": PREFIX}) as address:
        yield address


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    client = Gateway(PREFIX)
    yield client
    client.close()


class Link:
    """A TCP relay to the server that can be cut (every connection closed, new ones refused)."""

    def __init__(self, address: str):
        target = urlparse(address)
        self.target = (str(target.hostname), int(target.port or 80))
        self.listener = listening_socket()
        self.address = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = True
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            if not self.up:
                client.close()  # refused while cut
                continue
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # cut, or the other side went away
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self.lock:
                self.sockets.discard(sock)
            with suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Close every connection through the link and refuse new ones until restored."""
        self.up = False
        with self.lock:
            sockets = list(self.sockets)
        self._drop(*sockets)

    def restore(self) -> None:
        """Let connections through again."""
        self.up = True

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def link(live_server: str) -> Iterator[Link]:
    relay = Link(live_server)
    yield relay
    relay.close()


class LiveViewer(Viewer):
    """The viewer page, also recording which requests it makes (to tell tiles from the rest)."""

    def __init__(self, browser: Browser, address: str):
        self.requests: list[str] = []
        super().__init__(browser, address)
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.until(
            "() => window.twinViewer.events().liveSnapshots >= 1",
            what="the push stream open and the live state read",
            timeout_s=LIVE_S,
        )

    def live(self) -> Any:
        return self.page.evaluate("() => window.twinViewer.live()")

    def drawn(self, condition: str, arg: Any, *, what: str) -> Any:
        """Wait until ``condition(live, arg)`` holds and every event received is drawn.

        ``live`` is ``twinViewer.live()``; an event counts as drawn once handed to deck.gl
        (``settle`` then waits for the frame drawing it). Returns ``live``.
        """
        script = (
            f"(arg) => {{ const e = window.twinViewer.events(); const live = "
            f"window.twinViewer.live(); return ({condition})(live, arg) "
            f"&& e.liveApplied === e.liveReceived && live; }}"
        )
        return self.until(script, arg, what=what, timeout_s=LIVE_S)

    def centre(self, name: str, half: int = 3) -> np.ndarray:
        """The median colour of the picture's middle (2 * half + 1 pixels square)."""
        picture = self.picture(name)
        y, x = HEIGHT // 2, WIDTH // 2
        patch = picture[y - half : y + half + 1, x - half : x + half + 1].reshape(-1, 3)
        return np.median(patch, axis=0)


@pytest.fixture
def viewer(browser: Browser, link: Link) -> Iterator[LiveViewer]:
    page = LiveViewer(browser, link.address)
    yield page
    assert page.outside == [], f"requests left the machine: {page.outside}"
    assert page.errors == [], f"console errors: {page.errors}"
    page.close()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)


def _road(url: str, offset: int) -> tuple[str, float, float]:
    """A primary road of the sample city: its id and the middle of its line."""
    with get_engine(url).connect() as conn:
        road, lon, lat = conn.execute(
            sa.text(
                "SELECT r.id, ST_X(p), ST_Y(p) FROM roads r "
                "CROSS JOIN LATERAL ST_LineInterpolatePoint(r.geom, 0.5) AS p "
                "WHERE r.valid_to IS NULL AND r.class = 'primary' "
                "AND ST_Length(r.geom::geography) > 60 ORDER BY r.id OFFSET :n LIMIT 1"
            ),
            {"n": offset},
        ).one()
    return str(road), float(lon), float(lat)


def _close(colour: np.ndarray, expected: np.ndarray, tolerance: float = 40) -> bool:
    return bool(np.abs(colour - expected).max() < tolerance)


def test_a_congested_road_turns_red_and_a_vehicle_moves_as_readings_arrive(
    viewer: LiveViewer, live_module_db: str, gateway: Gateway
) -> None:
    assert viewer.page.locator("#live-status").inner_text() == "connected"
    road, lon, lat = _road(live_module_db, 3)
    speed = register(
        f"loop {road}/speed", thing=f"loop {road}", observed_property="speed",
        layer="roads", feature_id=road, url=live_module_db,
    )  # fmt: skip
    viewer.page.locator("input[data-layer=buildings]").uncheck()
    viewer.look_at(lon, lat, 18.0)
    before = viewer.centre("viewer-live-before")
    assert not _close(before, CONGESTED), f"the road is drawn {before} before any reading"
    tiles = [u for u in viewer.requests if "/tiles/" in u]

    gateway.publish(speed, {"phenomenonTime": _iso(_now()), "result": 4.0})
    speed_is = "(live, [road, kmh]) => live.roads[road] && live.roads[road].speed_kmh === kmh"
    state = viewer.drawn(speed_is, [road, 4.0], what="the congested speed drawn")["roads"][road]
    assert state["level"] == "congested" and state["drawn"], state
    assert state["congestion"] < 0.5 and state["speed_kmh"] == 4.0
    congested = viewer.centre("viewer-live-congested")
    assert _close(congested, CONGESTED), f"the congested road is drawn {congested}"

    # free flow again: the colour follows, from the event alone
    gateway.publish(speed, {"phenomenonTime": _iso(_now() + timedelta(seconds=1)), "result": 90.0})
    state = viewer.drawn(speed_is, [road, 90.0], what="the free-flow speed drawn")["roads"][road]
    assert state["level"] == "free", state
    free = viewer.centre("viewer-live-free")
    assert _close(free, FREE), f"the road at free flow is drawn {free}"
    assert [u for u in viewer.requests if "/tiles/" in u] == tiles, "tiles were loaded again"

    # a vehicle: drawn where it is stored, then where the AVL feed puts it
    vehicle = "vehicle/node/1866465411"  # a fire engine at its station
    position = register(
        f"avl {vehicle}/position", thing=f"avl {vehicle}", observed_property="position",
        layer="resources", feature_id=vehicle, observation_type=OBSERVATION, url=live_module_db,
    )  # fmt: skip
    shown = viewer.live()["vehicles"][vehicle]
    assert shown["live"] is False and shown["position"] == shown["stored"]
    _, lon, lat = _road(live_module_db, 30)  # on a road some way off

    viewer.look_at(lon, lat, 17.0)
    empty = viewer.picture("viewer-live-no-vehicle")
    half = 20
    window = (
        slice(HEIGHT // 2 - half, HEIGHT // 2 + half),
        slice(WIDTH // 2 - half, WIDTH // 2 + half),
    )
    orange = np.abs(empty[window] - VEHICLE).max(axis=2) < 40
    assert orange.mean() < 0.02, "a vehicle is drawn there already"

    point = {"type": "Point", "coordinates": [lon, lat]}
    gateway.publish(position, {"phenomenonTime": _iso(_now()), "result": point})
    moved = viewer.drawn(
        "(live, id) => live.vehicles[id].live", vehicle, what="the vehicle's position drawn"
    )["vehicles"][vehicle]
    assert moved["live"] is True and moved["position"] == pytest.approx([lon, lat])
    viewer.settle("after the vehicle moved")  # it glides there; settled once it has arrived
    assert viewer.live()["vehicles"][vehicle]["drawn"] == pytest.approx([lon, lat])
    picture = viewer.picture("viewer-live-vehicle")
    orange = np.abs(picture[window] - VEHICLE).max(axis=2) < 40
    assert orange.mean() > 0.1, "the vehicle is not drawn where it moved"


def test_an_alert_is_listed_looked_at_acknowledged_and_caught_up_after_a_drop(
    viewer: LiveViewer, live_server: str, live_module_db: str, gateway: Gateway, link: Link
) -> None:
    flooded, *_ = _road(live_module_db, 20)
    slow, *_ = _road(live_module_db, 40)
    gauge = register(
        f"gauge {flooded}/level", thing=f"gauge {flooded}", observed_property="level",
        layer="roads", feature_id=flooded, url=live_module_db,
    )  # fmt: skip
    loop = register(
        f"loop {slow}/speed", thing=f"loop {slow}", observed_property="speed",
        layer="roads", feature_id=slow, url=live_module_db,
    )  # fmt: skip
    for name, stream, params, severity in (
        ("flood at the gauge", gauge, {"above": 0.5}, "critical"),
        ("road crawling", loop, {"below": 10.0}, "warning"),
    ):
        rule = httpx.post(
            f"{live_server}/live/rules",
            json={
                "name": name,
                "kind": "threshold",
                "datastream_id": stream,
                "params": params,
                "severity": severity,
            },
        )
        assert rule.status_code == 201, rule.text

    alerts = viewer.events()["liveAlerts"]
    gateway.publish(gauge, {"phenomenonTime": _iso(_now()), "result": 0.9})
    viewer.until(
        "(n) => window.twinViewer.events().liveAlerts > n && "
        "document.querySelectorAll('#alerts-list li[data-alert]').length === 1",
        alerts,
        what="the flood alert in the panel",
        timeout_s=LIVE_S,
    )
    gateway.publish(loop, {"phenomenonTime": _iso(_now()), "result": 3.0})
    rows = viewer.page.locator("#alerts-list li[data-alert]")
    viewer.until(
        "() => document.querySelectorAll('#alerts-list li[data-alert]').length === 2",
        what="the slow-road alert in the panel",
        timeout_s=LIVE_S,
    )
    listed = httpx.get(f"{live_server}/live/alerts", params={"state": "open"}).json()["alerts"]
    by_rule = {a["rule"]: a for a in listed}
    flood, crawl = by_rule["flood at the gauge"], by_rule["road crawling"]
    # newest at the top, with its severity, message, time and asset
    assert rows.nth(0).get_attribute("data-alert") == str(crawl["id"])
    assert rows.nth(1).get_attribute("data-alert") == str(flood["id"])
    text = rows.nth(1).inner_text()
    assert "CRITICAL" in text.upper() and flood["message"] in text and flooded in text
    assert "severity-critical" in (rows.nth(1).get_attribute("class") or "")
    assert viewer.page.locator("#alerts-count").inner_text() == "2"

    # a click on the alert: the view goes there and its impact (roads to close) is drawn
    focused = viewer.events()["focused"]
    rows.nth(1).locator(".alert-message").click()
    viewer.until(
        "(n) => window.twinViewer.events().focused > n",
        focused,
        what="the flood alert focused",
        timeout_s=SETTLE_S,
    )
    viewer.settle("on the alert")
    x, y = viewer.project(flood["lon"], flood["lat"])
    assert abs(x - WIDTH / 2) < 1 and abs(y - HEIGHT / 2) < 1, (x, y)
    focus = viewer.live()["focus"]
    assert focus["id"] == flood["id"] and focus["kind"] == "impact" and focus["features"] == 1
    assert "roads to close" in rows.nth(1).inner_text()
    assert flood["impact"]["kind"] == "closures" and flooded in flood["impact"]["road_ids"]
    impact = viewer.picture("viewer-live-alert")
    magenta = np.abs(impact - IMPACT).max(axis=2) < 40
    assert magenta.mean() > 0.01, "no impact drawn"
    # an alert without an impact model: its asset is drawn instead
    focused = viewer.events()["focused"]
    rows.nth(0).locator(".alert-message").click()
    viewer.until(
        "(n) => window.twinViewer.events().focused > n",
        focused,
        what="the slow-road alert focused",
        timeout_s=SETTLE_S,
    )
    focus = viewer.live()["focus"]
    assert focus["id"] == crawl["id"] and focus["kind"] == "asset" and focus["features"] == 1

    # acknowledged from the panel, as the operator named there
    viewer.page.locator("#alerts-operator").fill(OPERATOR)
    acks = viewer.events()["acks"]
    rows.nth(1).get_by_role("button", name="Acknowledge").click()
    viewer.until(
        "(n) => window.twinViewer.events().acks > n", acks, what="the acknowledgement",
        timeout_s=LIVE_S,
    )  # fmt: skip
    assert f"Acknowledged by {OPERATOR}" in rows.nth(1).inner_text()
    assert rows.nth(1).get_by_role("button", name="Acknowledge").count() == 0
    stored = httpx.get(f"{live_server}/live/alerts/{flood['id']}").json()
    assert stored["state"] == "acknowledged" and stored["acknowledged_by"] == OPERATOR
    assert rows.nth(0).get_by_role("button", name="Acknowledge").count() == 1

    # collapsed, the panel is a title: the city under it is free
    viewer.page.locator("#alerts-toggle").click()
    assert not viewer.page.locator("#alerts-list").is_visible()
    box = viewer.page.locator("#alerts").bounding_box()
    assert box is not None and box["height"] < 40 and box["width"] < 150, box
    viewer.page.locator("#alerts-toggle").click()
    assert viewer.page.locator("#alerts-list").is_visible()

    # the network drops the stream: the badge says so, the browser reconnects by itself once it
    # can, and what changed meanwhile (the road moving again: its alert resolved; a new speed)
    # is read on reconnecting, though its events were lost
    other, *_ = _road(live_module_db, 10)
    other_speed = register(
        f"loop {other}/speed", thing=f"loop {other}", observed_property="speed",
        layer="roads", feature_id=other, url=live_module_db,
    )  # fmt: skip
    counts = viewer.events()
    errors = len(viewer.errors)
    link.cut()
    viewer.until(
        "() => window.twinViewer.live().status === 'reconnecting'",
        what="the badge saying the stream is reconnecting",
        timeout_s=LIVE_S,
    )
    assert viewer.page.locator("#live-status").inner_text() == "reconnecting…"
    gateway.publish(loop, {"phenomenonTime": _iso(_now() + timedelta(seconds=2)), "result": 50.0})
    gateway.publish(other_speed, {"phenomenonTime": _iso(_now()), "result": 20.0})
    wait_until(
        lambda: httpx.get(f"{live_server}/live/alerts/{crawl['id']}").json()["state"] == "resolved",
        timeout_s=LIVE_S,
        what="the slow-road alert resolved on the server",
    )
    link.restore()
    viewer.until(
        "(n) => { const e = window.twinViewer.events(); return e.liveConnects > n.liveConnects"
        " && e.liveSnapshots > n.liveSnapshots; }",
        counts,
        what="the stream open again and the live state read",
        timeout_s=LIVE_S,
    )
    assert viewer.page.locator("#live-status").inner_text() == "connected"
    assert viewer.events()["liveAlerts"] == counts["liveAlerts"]  # nothing came by the stream
    assert [r.get_attribute("data-alert") for r in rows.all()] == [str(flood["id"])]
    road = viewer.live()["roads"][other]
    assert road["speed_kmh"] == 20.0 and road["drawn"], road
    # the browser says its attempts to reconnect failed while the link was cut: expected
    dropped = viewer.errors[errors:]
    assert all("net::ERR_" in e for e in dropped), dropped
    del viewer.errors[errors:]
