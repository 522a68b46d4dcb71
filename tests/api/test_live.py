"""The live twin over MQTT and HTTP: observations in, stored once, readable, republished, pushed.

Against the real Mosquitto (127.0.0.1:1883) and PostGIS: a test publishes as a sensor gateway
would (paho-mqtt, SensorThings' MQTT extension topics) and reads back as clients would (HTTP,
the SSE push stream, an MQTT subscriber).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from layers.database import get_engine
from layers.observations import COUNT, Reading, store_observations
from tests.conditions import api_server, wait_until
from tests.conftest import LIVE_TABLES, ROOT
from twin.live.registry import register


class Stream:
    """An SSE client in a thread, keeping every event it receives."""

    def __init__(self, url: str):
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        wait_until(lambda: ": connected" in self.lines, timeout_s=30, what="the stream to open")

    def _run(self, url: str) -> None:
        kind = "message"
        try:
            with httpx.Client(timeout=None) as client, client.stream("GET", url) as response:
                for line in response.iter_lines():
                    self.lines.append(line)
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((kind, json.loads(line[6:])))
        except httpx.TransportError:
            pass  # the server went away at the end of the test: the stream ends

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]


class Gateway:
    """A sensor gateway on the broker: publishes readings, records what the twin republishes."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        # No Local: the gateway hears what the twin republishes, not its own messages
        self.client.subscribe(
            f"{prefix}v1.1/+/Observations", options=SubscribeOptions(qos=1, noLocal=True)
        )
        wait_until(subscribed.is_set, timeout_s=10, what="the gateway's subscription")

    def publish(self, datastream: int | None, payload: Any) -> None:
        topic = (
            f"{self.prefix}v1.1/Datastreams({datastream})/Observations"
            if datastream is not None
            else f"{self.prefix}v1.1/Observations"
        )
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.client.publish(topic, body, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


PREFIX = f"{os.environ['TWIN_LIVE_TOPIC_PREFIX']}test_live/"


@pytest.fixture(scope="module")
def live_db(_live_city: str) -> str:
    """The live city, emptied once for this module (its server caches datastream ids)."""
    with get_engine(_live_city).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {LIVE_TABLES} RESTART IDENTITY CASCADE"))
    return _live_city


@pytest.fixture(scope="module")
def live_server(live_db: str) -> Iterator[str]:
    with api_server(live_db, root=ROOT, env={"TWIN_LIVE_TOPIC_PREFIX": PREFIX}) as address:
        yield address


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    client = Gateway(PREFIX)
    yield client
    client.close()


def _refused(server: str) -> dict[str, int]:
    return dict(httpx.get(f"{server}/live").json()["refused"])


def _stored(url: str, datastream: int) -> list[tuple[datetime, float]]:
    with get_engine(url).connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT phenomenon_time, result FROM sta_observations "
                    "WHERE datastream_id = :d ORDER BY phenomenon_time"
                ),
                {"d": datastream},
            ).all()
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_an_observation_published_on_mqtt_is_stored_readable_republished_and_pushed(
    live_server: str, live_db: str, gateway: Gateway
) -> None:
    datastream = register(
        "gauge-1/pressure",
        thing="gauge-1",
        observed_property="pressure",
        layer="pipe_nodes",
        feature_id="no-such-node",
        location=(7.42, 43.73),
        url=live_db,
    )
    stream = Stream(f"{live_server}/live/events")
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    gateway.publish(datastream, {"phenomenonTime": _iso(moment), "result": 3.25})

    wait_until(lambda: _stored(live_db, datastream), timeout_s=30, what="the reading stored")
    assert _stored(live_db, datastream) == [(moment, 3.25)]

    latest = httpx.get(f"{live_server}/live/latest", params={"datastreams": datastream}).json()
    (row,) = latest["observations"]
    assert row["result"] == 3.25
    assert row["layer"] == "pipe_nodes" and row["unit"] == "bar"

    wait_until(lambda: stream.of("observation"), timeout_s=30, what="the pushed observation")
    (pushed,) = stream.of("observation")
    assert pushed["datastream"] == datastream and pushed["result"] == 3.25
    assert pushed["phenomenonTime"] == _iso(moment).replace("Z", ".000Z")

    # the twin republishes what it stored, with its id, on the datastream's topic
    def republished() -> list[dict[str, Any]]:
        return [body for _t, body in gateway.received if "@iot.id" in body]

    wait_until(republished, timeout_s=30, what="the republished observation")
    assert republished()[0]["result"] == 3.25
    assert gateway.received[-1][0].endswith(f"v1.1/Datastreams({datastream})/Observations")


def test_a_reading_that_arrives_twice_is_stored_once(
    live_server: str, live_db: str, gateway: Gateway
) -> None:
    datastream = register("loop-1/flow", thing="loop-1", observed_property="flow", url=live_db)
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    body = {"phenomenonTime": _iso(moment), "result": 600}

    def duplicates() -> int:
        return int(httpx.get(f"{live_server}/live").json()["bridge"]["duplicates"])

    before = duplicates()
    gateway.publish(datastream, body)
    gateway.publish(None, {**body, "Datastream": {"@iot.id": datastream}})
    gateway.publish(datastream, {**body, "phenomenonTime": _iso(moment + timedelta(seconds=60))})
    wait_until(lambda: duplicates() == before + 1, timeout_s=30, what="one duplicate counted")
    wait_until(lambda: len(_stored(live_db, datastream)) == 2, timeout_s=30, what="two stored")
    assert [r[1] for r in _stored(live_db, datastream)] == [600, 600]
    assert _stored(live_db, datastream)[0][0] == moment


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        ({"phenomenonTime": "2026-01-01T00:00:00Z"}, "no result"),
        ({"result": "high"}, "wrong type"),
        (b'{"result": NaN}', "not finite"),
        ({"result": 1, "phenomenonTime": "yesterday"}, "bad time"),
        ({"result": 1, "phenomenonTime": "2999-01-01T00:00:00Z"}, "in the future"),
        ({"result": 1, "phenomenonTime": "2001-01-01T00:00:00Z"}, "past retention"),
        ({"result": 1, "Datastream": {"@iot.id": 999_999}}, "unknown datastream"),
        ([1, 2], "not an observation"),
    ],
)
def test_a_bad_reading_is_refused_counted_and_nothing_is_stored(
    live_server: str, live_db: str, gateway: Gateway, payload: Any, reason: str
) -> None:
    datastream = register("bad-1/level", thing="bad-1", observed_property="level", url=live_db)
    target = None if isinstance(payload, dict) and "Datastream" in payload else datastream
    before = _refused(live_server)
    gateway.publish(target, payload)

    def counted() -> bool:
        return _refused(live_server).get(reason, 0) == before.get(reason, 0) + 1

    wait_until(counted, timeout_s=30, what=f"a refusal: {reason}")
    assert sum(_refused(live_server).values()) == sum(before.values()) + 1
    assert _stored(live_db, datastream) == []


def test_latest_answers_400_datastreams_in_one_request(live_server: str, live_db: str) -> None:
    ids = [
        register(f"dash{n}/flow", thing=f"dash{n}", observed_property="flow", url=live_db)
        for n in range(400)
    ]
    start = datetime.now(UTC) - timedelta(hours=1)
    readings = [
        Reading(d, start + timedelta(seconds=30 * k), float(n * 10 + k))
        for n, d in enumerate(ids)
        for k in range(5)
    ]
    report = store_observations(readings, url=live_db)
    assert len(report.stored) == 2000 and not report.refused

    answer = httpx.get(
        f"{live_server}/live/latest", params={"datastreams": ",".join(map(str, ids))}
    ).json()
    assert answer["numberReturned"] == 400
    by_id = {row["datastream_id"]: row for row in answer["observations"]}
    for n, d in enumerate(ids):
        assert by_id[d]["result"] == float(n * 10 + 4)
        assert datetime.fromisoformat(by_id[d]["phenomenon_time"]) == start + timedelta(seconds=120)


def test_readings_aggregate_like_pandas(live_server: str, live_db: str) -> None:
    datastream = register("agg/speed", thing="agg", observed_property="speed", url=live_db)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    values = [float((7 * k) % 23) for k in range(120)]
    times = [start + timedelta(seconds=20 * k) for k in range(120)]
    store_observations([Reading(datastream, t, v) for t, v in zip(times, values)], url=live_db)
    answer = httpx.get(
        f"{live_server}/live/readings",
        params={
            "datastreams": datastream,
            "start": _iso(start),
            "end": _iso(start + timedelta(minutes=40)),
            "interval": "5min",
        },
    ).json()
    oracle = (
        pd.Series(values, index=pd.DatetimeIndex(times))
        .resample("5min")
        .agg(["count", "mean", "min", "max"])
    )
    oracle = oracle[oracle["count"] > 0]
    got = pd.DataFrame(answer["readings"])
    assert list(pd.to_datetime(got["time"])) == list(oracle.index)
    assert list(got["count"]) == list(oracle["count"])
    assert all(math.isclose(a, b) for a, b in zip(got["mean"], oracle["mean"]))
    assert list(got["min"]) == list(oracle["min"]) and list(got["max"]) == list(oracle["max"])

    raw = httpx.get(
        f"{live_server}/live/readings", params={"datastreams": datastream, "start": _iso(start)}
    ).json()["readings"]
    assert [r["result"] for r in raw] == values


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/live/events", {"types": "weather"}, "types"),
        ("/live/latest", {"datastreams": "a,b"}, "datastreams"),
        ("/live/readings", {"datastreams": "1", "interval": "2min"}, "interval"),
        ("/live/readings", {"datastreams": "1", "start": "soon"}, "start"),
        (
            "/live/readings",
            {"datastreams": "1", "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            "end",
        ),
    ],
)
def test_bad_live_parameters_are_named(
    live_server: str, path: str, params: dict[str, str], parameter: str
) -> None:
    response = httpx.get(f"{live_server}{path}", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert parameter in response.text


def test_a_count_datastream_keeps_integers(live_db: str) -> None:
    # (the store path itself, no server)
    datastream = register(
        "c/flow", thing="c", observed_property="flow", observation_type=COUNT, url=live_db
    )
    report = store_observations(
        [Reading(datastream, datetime.now(UTC), 3), Reading(datastream, datetime.now(UTC), 2.5)],
        url=live_db,
    )
    assert [o.result for o in report.stored] == [3]
    assert report.refused_by_reason == {"wrong type": 1}


def test_without_a_broker_the_api_still_serves_and_says_why(live_db: str) -> None:
    with api_server(live_db, root=ROOT, env={"TWIN_MQTT_URL": "mqtt://127.0.0.1:9"}) as address:
        status = httpx.get(f"{address}/live").json()
        assert status["mqtt"]["connected"] is False
        assert "127.0.0.1:9" in status["mqtt"]["error"]
        assert httpx.get(f"{address}/health").status_code == 200
