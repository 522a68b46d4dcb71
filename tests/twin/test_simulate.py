"""SUMO as the live city: Bologna's acosta publishing its detectors and buses over MQTT.

What is published is checked as a SensorThings client and the twin read it (every message an
Observation on its datastream's topic, the datastreams registered on the scenario's roads, in
the right units), against SUMO's own e1 detector file for the same seed (an independent run,
without TraCI), and on the network (bus positions on its lanes). An incident is checked in
SUMO's own detector output: the lane stops passing vehicles while it stands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import shapely
import sqlalchemy as sa
import sumolib
from paho.mqtt.enums import CallbackAPIVersion

import twin
from layers.database import get_engine
from layers.observations import parse_time, reading_from_json
from layers.settings import get_settings
from routing.signals import sumo
from tests.conditions import wait_until
from tests.conftest import SHARED, _fresh_database
from twin.live.detection import scenario_loops
from twin.live.registry import datastreams
from twin.live.simulate import Incident, run_scenario, simulate

ACOSTA = SHARED / "bologna" / "acosta"
# the twin's extent while a Bologna scenario is imported (as tests/api/test_signals.py sets it)
BOLOGNA_EXTENT = "[11.2, 44.4, 11.5, 44.6]"
SEED = 7
END_S = 600.0  # ten minutes of acosta's morning
UNITS = {"flow": "/h", "occupancy": "%", "speed": "km/h", "position": ""}


@pytest.fixture(scope="module")
def acosta_db() -> Iterator[str]:
    """A store holding acosta's network (its roads are the detectors' features)."""
    url = _fresh_database("_sumo_live")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWIN_CITY_BBOX", BOLOGNA_EXTENT)
        get_settings.cache_clear()
        twin.connect(url).import_sumo(ACOSTA / "run.sumocfg")
    get_settings.cache_clear()
    yield url
    get_engine(url).dispose()


class Subscriber:
    """An MQTT client collecting every Observation published under a prefix."""

    def __init__(self, prefix: str):
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._received
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        self.client.subscribe(f"{prefix}v1.1/+/Observations", qos=1)
        wait_until(subscribed.is_set, timeout_s=10, what="the test's subscription")

    def _received(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload))

    def received(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(topic_prefix: str) -> Iterator[Subscriber]:
    client = Subscriber(topic_prefix)
    yield client
    client.close()


def e1_oracle(tmp_path: Path, *, interval_s: float, end: float) -> dict[tuple[str, float], dict]:
    """SUMO's own e1 output for the scenario and seed: a plain run (no TraCI), its detectors
    aggregating over ``interval_s`` into a file."""
    scenario = sumo.read_scenario(ACOSTA / "run.sumocfg")
    files = []
    for path in [*scenario.additional, *scenario.programs]:
        tree = ET.parse(path)
        loops = [el for el in tree.getroot().iter() if el.tag == "e1Detector"]
        if not loops:
            files.append(str(path))
            continue
        for el in loops:
            el.set("freq", f"{interval_s:g}")
            el.set("file", str(tmp_path / "e1.xml"))
        copy = tmp_path / path.name
        tree.write(copy)
        files.append(str(copy))
    done = sumo.run_process(
        [
            sumo.sumo_binary(),
            "-c",
            str(scenario.config),
            "-a",
            ",".join(files),
            "--seed",
            str(SEED),
            "--end",
            f"{end:g}",
            "--tripinfo-output",
            str(tmp_path / "tripinfo.xml"),
            "--log",
            str(tmp_path / "sumo.log"),
            "--no-step-log",
        ],
        timeout_s=120,
        what="SUMO's oracle run",
    )
    assert done.returncode == 0, (tmp_path / "sumo.log").read_text()
    return {
        (el.get("id", ""), float(el.get("end", "0"))): el.attrib
        for el in ET.parse(tmp_path / "e1.xml").getroot().iter("interval")
    }


def test_acosta_publishes_its_detectors_and_buses_as_sensorthings_observations(
    acosta_db: str, subscriber: Subscriber, topic_prefix: str, tmp_path: Path
) -> None:
    summary = simulate(ACOSTA, prefix=topic_prefix, url=acosta_db, speed=None, end=END_S, seed=SEED)
    published = sum(summary.observations.values())
    wait_until(
        lambda: len(subscriber.received()) >= published,
        timeout_s=30,
        what=f"the {published} published observations at the test's subscriber",
    )
    messages = subscriber.received()
    assert len(messages) == published  # QoS 1, and nobody else publishes under the prefix

    # every message is a SensorThings Observation on its datastream's topic
    by_stream: dict[int, list[dict[str, Any]]] = {}
    for topic, payload in messages:
        ident = int(topic.removeprefix(topic_prefix).split("(")[1].split(")")[0])
        assert topic == f"{topic_prefix}v1.1/Datastreams({ident})/Observations"
        body = json.loads(payload)
        assert set(body) == {"phenomenonTime", "result"}
        assert body["phenomenonTime"].endswith("Z")
        reading = reading_from_json(body, datastream_id=ident)
        by_stream.setdefault(ident, []).append(
            {
                "t": round((reading.phenomenon_time - summary.anchor).total_seconds(), 3),
                "v": body["result"],
            }
        )

    # ... on datastreams registered in the store: loops on acosta's roads, buses moving
    known = datastreams(set(by_stream), url=acosta_db)
    assert set(known) == set(by_stream) <= set(summary.datastreams.values())
    with get_engine(acosta_db).connect() as conn:
        roads = set(
            conn.execute(sa.text("SELECT id FROM roads WHERE source = 'sumo:acosta'")).scalars()
        )
    loops = {lp.id: lp for lp in scenario_loops(ACOSTA)}
    kinds: Counter[str] = Counter()
    for ident, ds in known.items():
        kinds[ds.observed_property] += len(by_stream[ident])
        assert ds.unit == UNITS[ds.observed_property]
        if ds.observed_property == "position":
            assert ds.layer is None
            continue
        loop = loops[ds.name.removeprefix("acosta:").split("/")[0]]
        assert (ds.layer, ds.feature_id) == ("roads", f"acosta:{loop.edge}")
        assert ds.feature_id in roads
    assert kinds == summary.observations
    assert kinds["flow"] == kinds["occupancy"] == len(loops) * END_S / 60
    assert 0 < kinds["speed"] < kinds["flow"]
    assert kinds["position"] > 0 and summary.buses > 0

    # the loops' readings are SUMO's own e1 aggregation, interval by interval
    oracle = e1_oracle(tmp_path, interval_s=60.0, end=END_S)
    compared = 0
    for ident, ds in known.items():
        if ds.observed_property == "position":
            continue
        loop = ds.name.removeprefix("acosta:").split("/")[0]
        for obs in by_stream[ident]:
            truth = oracle[(loop, obs["t"])]
            if ds.observed_property == "flow":
                assert obs["v"] == pytest.approx(float(truth["nVehContrib"]) * 60)
                assert obs["v"] == pytest.approx(float(truth["flow"]))
            elif ds.observed_property == "occupancy":
                assert obs["v"] == pytest.approx(float(truth["occupancy"]))
            else:
                assert int(truth["nVehContrib"]) > 0
                assert obs["v"] == pytest.approx(float(truth["speed"]) * 3.6, abs=0.02)
            compared += 1
    speeds = {k for k, v in oracle.items() if int(v["nVehContrib"]) > 0}
    assert len(speeds) == kinds["speed"]  # speed is published exactly when vehicles passed
    assert compared == kinds["flow"] + kinds["occupancy"] + kinds["speed"]

    # bus positions lie on the network's lanes, at the sim times asked for
    net = sumolib.net.readNet(str(ACOSTA / "acosta_buslanes.net.xml"), withInternal=True)
    lanes = shapely.STRtree(
        [shapely.LineString(lane.getShape()) for e in net.getEdges() for lane in e.getLanes()]
    )
    positions = [
        obs for i, ds in known.items() if ds.observed_property == "position" for obs in by_stream[i]
    ]
    for obs in positions:
        lon, lat = obs["v"]["coordinates"]
        point = shapely.Point(net.convertLonLat2XY(lon, lat))
        nearest = lanes.geometries[lanes.nearest(point)]
        assert point.distance(nearest) < 0.5, (lon, lat)  # metres, in the network's plane
        assert obs["t"] % 10 == 0
    # no phenomenonTime is in the future (the default anchor of a run as fast as possible)
    assert max(o["t"] for v in by_stream.values() for o in v) == END_S
    now = datetime.now(UTC)
    assert all(parse_time(json.loads(p)["phenomenonTime"]) <= now for _, p in messages)


def test_an_incident_stops_traffic_on_its_lane() -> None:
    lane, loop = "204[1][1]_0", "2.35_2.38_8_1__l0"  # the loop stands at 36 m on that lane
    incident = Incident(lane, 26.0, start_s=300.0, duration_s=240.0)
    quiet = run_scenario(ACOSTA, end=720.0, seed=SEED, keep_readings=True, bus_interval_s=None)
    blocked = run_scenario(
        ACOSTA, end=720.0, seed=SEED, incidents=[incident], keep_readings=True, bus_interval_s=None
    )
    (truth,) = blocked.incidents
    assert truth.placed and 300.0 <= truth.from_s <= 330.0
    assert truth.until_s == truth.from_s + 240.0
    # intervals wholly within the incident, a minute after it began
    inside = [
        (r.begin_s, r.end_s)
        for r in blocked.readings
        if r.loop == loop and r.begin_s >= truth.from_s + 60 and r.end_s <= truth.until_s
    ]
    assert len(inside) >= 2
    during = [
        r.count for r in blocked.readings if r.loop == loop and (r.begin_s, r.end_s) in inside
    ]
    usual = [r.count for r in quiet.readings if r.loop == loop and (r.begin_s, r.end_s) in inside]
    assert sum(during) == 0
    assert sum(usual) >= 5
    # before it, both runs are the same simulation
    before = [r for r in blocked.readings if r.end_s <= 300.0]
    assert before == [r for r in quiet.readings if r.end_s <= 300.0]


CLI = [sys.executable, "-c", "from twin.live.cli import app; app()"]


def test_the_command_runs_a_scenario_and_refuses_what_it_cannot_run(
    acosta_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    environment = os.environ | {"COLUMNS": "200", "TWIN_DATABASE_URL": acosta_db}
    common = ["--fast", "--no-import", "--prefix", topic_prefix]
    done = subprocess.run(
        [*CLI, "simulate", str(ACOSTA), "--end", "120", *common],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"acosta: 120 s simulated .* published 116 flow, 116 occupancy", done.stdout)
    refusals = {
        "does not exist": [str(tmp_path / "nowhere.sumocfg")],
        "holds 0 SUMO configurations": [str(tmp_path)],
        "must end after it begins": [str(ACOSTA), "--begin", "300", "--end", "200"],
        "do not fit": [str(ACOSTA), "--end", "900", "--incidents", "9"],
    }
    for message, args in refusals.items():
        done = subprocess.run(
            [*CLI, "simulate", *args, *common],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
