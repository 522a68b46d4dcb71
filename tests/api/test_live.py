"""The live twin over MQTT and HTTP: observations in, stored once, readable, republished, pushed.

Against the real Mosquitto (127.0.0.1:1883) and PostGIS: a test publishes as a sensor gateway
would (paho-mqtt, SensorThings' MQTT extension topics) and reads back as clients would (HTTP,
the SSE push stream, an MQTT subscriber).
"""

from __future__ import annotations

import json
import math
import os
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from layers.database import get_engine
from layers.observations import COUNT, Reading, store_observations
from tests.conditions import api_server, wait_until
from tests.conftest import ROOT
from tests.live_clients import Gateway, Stream
from twin.live.registry import register

#: a name too long for a btree index entry (random letters: TOAST cannot compress them)
LONG_NAME = "".join(random.Random(7).choices(string.ascii_letters, k=3000))
PREFIX = f"{os.environ['TWIN_LIVE_TOPIC_PREFIX']}test_live/"


@pytest.fixture(scope="module")
def live_server(live_module_db: str) -> Iterator[str]:
    with api_server(live_module_db, root=ROOT, env={"TWIN_LIVE_TOPIC_PREFIX": PREFIX}) as address:
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
    live_server: str, live_module_db: str, gateway: Gateway
) -> None:
    datastream = register(
        "gauge-1/pressure",
        thing="gauge-1",
        observed_property="pressure",
        layer="pipe_nodes",
        feature_id="no-such-node",
        location=(7.42, 43.73),
        url=live_module_db,
    )
    stream = Stream(f"{live_server}/live/events")
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    gateway.publish(datastream, {"phenomenonTime": _iso(moment), "result": 3.25})

    wait_until(lambda: _stored(live_module_db, datastream), timeout_s=30, what="the reading stored")
    assert _stored(live_module_db, datastream) == [(moment, 3.25)]

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
    live_server: str, live_module_db: str, gateway: Gateway
) -> None:
    datastream = register(
        "loop-1/flow", thing="loop-1", observed_property="flow", url=live_module_db
    )
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    body = {"phenomenonTime": _iso(moment), "result": 600}

    def duplicates() -> int:
        return int(httpx.get(f"{live_server}/live").json()["bridge"]["duplicates"])

    before = duplicates()
    gateway.publish(datastream, body)
    gateway.publish(None, {**body, "Datastream": {"@iot.id": datastream}})
    gateway.publish(datastream, {**body, "phenomenonTime": _iso(moment + timedelta(seconds=60))})
    wait_until(lambda: duplicates() == before + 1, timeout_s=30, what="one duplicate counted")
    wait_until(
        lambda: len(_stored(live_module_db, datastream)) == 2, timeout_s=30, what="two stored"
    )
    assert [r[1] for r in _stored(live_module_db, datastream)] == [600, 600]
    assert _stored(live_module_db, datastream)[0][0] == moment


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
    live_server: str, live_module_db: str, gateway: Gateway, payload: Any, reason: str
) -> None:
    datastream = register(
        "bad-1/level", thing="bad-1", observed_property="level", url=live_module_db
    )
    target = None if isinstance(payload, dict) and "Datastream" in payload else datastream
    before = _refused(live_server)
    gateway.publish(target, payload)

    def counted() -> bool:
        return _refused(live_server).get(reason, 0) == before.get(reason, 0) + 1

    wait_until(counted, timeout_s=30, what=f"a refusal: {reason}")
    assert sum(_refused(live_server).values()) == sum(before.values()) + 1
    assert _stored(live_module_db, datastream) == []


def test_latest_answers_400_datastreams_in_one_request(
    live_server: str, live_module_db: str
) -> None:
    ids = [
        register(f"dash{n}/flow", thing=f"dash{n}", observed_property="flow", url=live_module_db)
        for n in range(400)
    ]
    start = datetime.now(UTC) - timedelta(hours=1)
    readings = [
        Reading(d, start + timedelta(seconds=30 * k), float(n * 10 + k))
        for n, d in enumerate(ids)
        for k in range(5)
    ]
    report = store_observations(readings, url=live_module_db)
    assert len(report.stored) == 2000 and not report.refused

    answer = httpx.get(
        f"{live_server}/live/latest", params={"datastreams": ",".join(map(str, ids))}
    ).json()
    assert answer["numberReturned"] == 400
    by_id = {row["datastream_id"]: row for row in answer["observations"]}
    for n, d in enumerate(ids):
        assert by_id[d]["result"] == float(n * 10 + 4)
        assert datetime.fromisoformat(by_id[d]["phenomenon_time"]) == start + timedelta(seconds=120)


def test_readings_aggregate_like_pandas(live_server: str, live_module_db: str) -> None:
    datastream = register("agg/speed", thing="agg", observed_property="speed", url=live_module_db)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    values = [float((7 * k) % 23) for k in range(120)]
    times = [start + timedelta(seconds=20 * k) for k in range(120)]
    store_observations(
        [Reading(datastream, t, v) for t, v in zip(times, values)], url=live_module_db
    )
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


def test_a_count_datastream_keeps_integers(live_module_db: str) -> None:
    # (the store path itself, no server)
    datastream = register(
        "c/flow", thing="c", observed_property="flow", observation_type=COUNT, url=live_module_db
    )
    report = store_observations(
        [Reading(datastream, datetime.now(UTC), 3), Reading(datastream, datetime.now(UTC), 2.5)],
        url=live_module_db,
    )
    assert [o.result for o in report.stored] == [3]
    assert report.refused_by_reason == {"wrong type": 1}


def test_without_a_broker_the_api_still_serves_and_says_why(live_module_db: str) -> None:
    with api_server(
        live_module_db, root=ROOT, env={"TWIN_MQTT_URL": "mqtt://127.0.0.1:9"}
    ) as address:
        status = httpx.get(f"{address}/live").json()
        assert status["mqtt"]["connected"] is False
        assert "127.0.0.1:9" in status["mqtt"]["error"]
        assert httpx.get(f"{address}/health").status_code == 200


def test_an_alert_is_raised_pushed_acknowledged_and_resolved_over_http(
    live_server: str, live_module_db: str, gateway: Gateway
) -> None:
    datastream = register(
        "gauge-9/pressure", thing="gauge-9", observed_property="pressure", url=live_module_db
    )
    rule = httpx.post(
        f"{live_server}/live/rules",
        json={
            "name": "gauge-9 low",
            "kind": "threshold",
            "datastream_id": datastream,
            "params": {"below": 2.0, "clear": 2.5},
            "severity": "critical",
        },
    )
    assert rule.status_code == 201, rule.text
    stream = Stream(f"{live_server}/live/events?types=alert")
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    gateway.publish(datastream, {"phenomenonTime": _iso(moment), "result": 1.2})

    wait_until(lambda: stream.of("alert"), timeout_s=30, what="the pushed alert")
    (raised,) = stream.of("alert")
    assert raised["state"] == "raised" and raised["severity"] == "critical"
    assert raised["datastream"] == datastream and raised["value"] == 1.2
    open_alerts = httpx.get(f"{live_server}/live/alerts", params={"state": "open"}).json()
    assert [a["id"] for a in open_alerts["alerts"]] == [raised["id"]]

    ack = httpx.post(f"{live_server}/live/alerts/{raised['id']}/acknowledge", json={"by": "duty"})
    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == "duty"
    again = httpx.post(f"{live_server}/live/alerts/{raised['id']}/acknowledge", json={"by": "x"})
    assert again.status_code == 409 and "acknowledged by duty" in again.json()["detail"]
    assert (
        httpx.post(f"{live_server}/live/alerts/999999/resolve", json={"by": "x"}).status_code == 404
    )

    gateway.publish(
        datastream, {"phenomenonTime": _iso(moment + timedelta(seconds=30)), "result": 3.0}
    )
    wait_until(
        lambda: any(a["state"] == "resolved" for a in stream.of("alert")),
        timeout_s=30,
        what="the alert resolved and pushed",
    )
    states = [a["state"] for a in stream.of("alert")]
    assert states == ["raised", "acknowledged", "resolved"]
    assert httpx.get(f"{live_server}/live/alerts/{raised['id']}").json()["resolved_by"] == "rule"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "r", "kind": "sometimes", "observed_property": "level"}, "kind"),
        ({"name": "r", "kind": "threshold", "observed_property": "level"}, "params"),
        (
            {"name": "r", "kind": "no_data", "datastream_id": 999_999, "params": {"minutes": 5}},
            "datastream",
        ),
        ({"kind": "no_data"}, "name"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(
    live_server: str, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{live_server}/live/rules", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


def test_two_bridge_processes_share_the_feed_and_store_each_reading_once(
    live_module_db: str,
) -> None:
    prefix = f"{PREFIX}shared/"
    datastream = register(
        "shared/flow", thing="shared", observed_property="flow", url=live_module_db
    )
    env = {"TWIN_LIVE_TOPIC_PREFIX": prefix, "TWIN_LIVE_BRIDGE_PROCESSES": "2"}
    with api_server(live_module_db, root=ROOT, env=env) as address:
        gateway = Gateway(prefix)
        try:
            start = datetime.now(UTC) - timedelta(minutes=30)
            for k in range(200):
                moment = start + timedelta(seconds=k)
                gateway.publish(datastream, {"phenomenonTime": _iso(moment), "result": k})
            wait_until(
                lambda: len(_stored(live_module_db, datastream)) == 200,
                timeout_s=60,
                what="200 stored",
            )
            bridge = httpx.get(f"{address}/live").json()["bridge"]
            # each reading reached one bridge: none was received, or stored, twice
            assert bridge["received"] == 200 and bridge["duplicates"] == 0
            assert [r[1] for r in _stored(live_module_db, datastream)] == list(range(200))
        finally:
            gateway.close()


def test_a_non_finite_number_inside_a_json_result_refuses_that_reading_only(
    live_module_db: str,
) -> None:
    from layers.observations import OBSERVATION

    datastream = register(
        "track/position",
        thing="track",
        observed_property="position",
        observation_type=OBSERVATION,
        url=live_module_db,
    )
    now = datetime.now(UTC)
    report = store_observations(
        [
            Reading(datastream, now - timedelta(seconds=2), [float("nan"), 43.7]),
            Reading(datastream, now - timedelta(seconds=1), [7.42, 43.7]),
            Reading(datastream, now, [7.42, 43.7], result_quality={"sigma": float("inf")}),
        ],
        url=live_module_db,
    )
    assert [o.result for o in report.stored] == [[7.42, 43.7]]
    assert report.refused_by_reason == {"not finite": 2}


def test_an_observation_created_over_http_is_republished_on_mqtt(
    live_server: str, live_module_db: str, gateway: Gateway
) -> None:
    # FROST-Server issue #2097 reports HTTP-created observations missing on MQTT
    datastream = register(
        "http-1/level", thing="http-1", observed_property="level", url=live_module_db
    )
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    created = httpx.post(
        f"{live_server}/v1.1/Datastreams({datastream})/Observations",
        json={"phenomenonTime": _iso(moment), "result": 0.75},
    )
    assert created.status_code == 201, created.text

    def republished() -> list[dict[str, Any]]:
        topic = f"{PREFIX}v1.1/Datastreams({datastream})/Observations"
        return [body for t, body in gateway.received if t == topic]

    wait_until(republished, timeout_s=30, what="the HTTP observation republished on MQTT")
    (body,) = republished()
    assert body["result"] == 0.75 and body["@iot.id"] > 0
    assert created.headers["location"].endswith(f"Observations({body['@iot.id']})")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"parameters": {"k": "a\u0000"}}, "bad text"),
        ({"resultQuality": "\ud800"}, "bad text"),
        ({"result": 1e300}, "out of range"),
    ],
)
def test_one_bad_reading_in_a_batch_never_costs_the_others(
    live_module_db: str, bad: dict[str, Any], reason: str
) -> None:
    datastream = register("batch/flow", thing="batch", observed_property="flow", url=live_module_db)
    start = datetime.now(UTC) - timedelta(minutes=20) + timedelta(seconds=len(reason))
    readings = [Reading(datastream, start + timedelta(seconds=k), float(k)) for k in range(20)]
    poisoned = readings[7]
    readings[7] = Reading(
        datastream,
        poisoned.phenomenon_time,
        bad.get("result", poisoned.result),
        parameters=bad.get("parameters"),
        result_quality=bad.get("resultQuality"),
    )
    report = store_observations(readings, url=live_module_db)
    assert len(report.stored) == 19
    assert report.refused_by_reason == {reason: 1} and report.refused[0].index == 7


def test_a_faulty_detector_speed_never_makes_a_road_free(live_module_db: str) -> None:
    from twin.live.traffic import MAX_SPEED_KMH, road_speed

    assert road_speed([(1e300, 600.0), (40.0, 600.0)]) == 40.0
    assert road_speed([(MAX_SPEED_KMH + 1, None)]) is None


def test_a_rule_that_raised_alerts_cannot_be_deleted_only_disabled(
    live_server: str, live_module_db: str, gateway: Gateway
) -> None:
    datastream = register(
        "rule-del/level", thing="rule-del", observed_property="level", url=live_module_db
    )
    rule = httpx.post(
        f"{live_server}/live/rules",
        json={"name": "rule-del high", "kind": "threshold", "datastream_id": datastream,
              "params": {"above": 1.0}},
    ).json()  # fmt: skip
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    gateway.publish(datastream, {"phenomenonTime": _iso(moment), "result": 2.0})

    def raised() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{live_server}/live/alerts", params={"state": "open"}).json()
        return [a for a in alerts["alerts"] if a["rule_id"] == rule["id"]]

    wait_until(raised, timeout_s=30, what="the rule's alert")
    refused = httpx.delete(f"{live_server}/live/rules/{rule['id']}")
    assert refused.status_code == 409 and "disable it instead" in refused.json()["detail"]
    assert httpx.post(f"{live_server}/live/rules/{rule['id']}/disable").json()["enabled"] is False
    assert raised(), "the alert and its history stay"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1.1/Things", {"name": LONG_NAME, "description": "too long for its index"}),
        ("/v1.1/Things", {"name": "a\ud800b", "description": "a lone surrogate"}),
        ("/live/rules", {"name": "nul \u0000", "kind": "threshold", "observed_property": "level",
                         "params": {"above": 1}}),
    ],
)  # fmt: skip
def test_text_the_store_cannot_hold_is_a_400_not_a_500(
    live_server: str, path: str, body: dict[str, Any]
) -> None:
    response = httpx.post(
        f"{live_server}{path}",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
