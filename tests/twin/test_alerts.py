"""Alert rules over the live feeds, against the real store holding the sample city (Monaco).

Readings go through the one feed path (``twin.live.feed.Feed``) with the ``AlertRules``
processor; sensors are registered on real features of the sample city's layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import shapely

import twin
from layers.cameras import NOT_WATCHING, camera_coverage, view_cones
from layers.errors import ParameterError
from layers.observations import CATEGORY, Reading
from layers.settings import get_settings
from tests.assertions import sql_scalar
from twin.live import registry
from twin.live.alerts import (
    AlertRuleError,
    AlertRules,
    AlertStateError,
    UnknownAlertError,
    acknowledge,
    add_rule,
    alerts,
    delete_rule,
    enable_rule,
    get_alert,
    resolve,
    rules,
)
from twin.live.feed import Feed

#: Real features of the sample city.
PIPE = "water/way/1238339145/0"
JUNCTION = "water/junction/10665475075"
FEEDER = "feeder/way/1001561437/0"
CAMERA = "node/10147090782"
HARBOUR_CAMERA = "node/6480060615"  # in La Condamine; no other camera sees its roads
ROAD = "way/1001561437/0"

#: An hour ago, on the second: inside the store's retention and not in the future.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Recorder:
    """A feed listener keeping the alert events pushed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(e for e in events if e["type"] == "alert")


def feed(url: str, recorder: Recorder | None = None) -> Feed:
    return Feed(url=url, processors=[AlertRules()], listeners=[recorder] if recorder else [])


def send(target: Feed, ds: int, values: Sequence[tuple[float, Any]]) -> None:
    """Ingest readings one batch each, as a live feed delivers them: (minutes after T0, result)."""
    for minutes, value in values:
        report = target.ingest([Reading(ds, at(minutes), value)])
        assert report.stored, report.refused


def pressure(url: str, *, layer: str = "pipelines", feature_id: str = PIPE, name: str = "p") -> int:
    return registry.register(
        f"{name}/pressure",
        thing=name,
        observed_property="pressure",
        layer=layer,
        feature_id=feature_id,
        url=url,
    )


def count_alerts(url: str, where: str = "true") -> int:
    return int(sql_scalar(url, f"SELECT count(*) FROM live_alerts WHERE {where}"))


# --- rules ------------------------------------------------------------------------------------


def test_bad_rules_are_refused_naming_the_field(live_db: str) -> None:
    ds = pressure(live_db)
    status = registry.register(
        "cam/status",
        thing="cam",
        observed_property="status",
        observation_type=CATEGORY,
        layer="cameras",
        feature_id=CAMERA,
        url=live_db,
    )
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "spike", "params": {}}, "kind"),
        ({"kind": "threshold", "params": {}}, "params.above"),
        ({"kind": "threshold", "params": {"above": 1, "below": 0}}, "params.below"),
        ({"kind": "threshold", "params": {"below": "low"}}, "params.below"),
        ({"kind": "threshold", "params": {"below": 2, "duration_s": -5}}, "params.duration_s"),
        ({"kind": "threshold", "params": {"below": 2, "clear": 1}}, "params.clear"),
        ({"kind": "threshold", "params": {"below": 2, "hold": 3}}, "params.hold"),
        ({"kind": "rate", "params": {}}, "params.limit_per_min"),
        ({"kind": "rate", "params": {"limit_per_min": -1}}, "params.limit_per_min"),
        ({"kind": "rate", "params": {"limit_per_min": 1, "direction": "up"}}, "params.direction"),
        ({"kind": "no_data", "params": {"minutes": 0}}, "params.minutes"),
        ({"kind": "no_data", "params": {"minutes": float("nan")}}, "params.minutes"),
        ({"kind": "no_data", "params": {"minutes": 1e9}}, "params.minutes"),
        ({"kind": "threshold", "params": {"below": 2}, "severity": "dire"}, "severity"),
        ({"kind": "threshold", "params": {"below": 2}, "datastream_id": 99999}, "datastream_id"),
        ({"kind": "threshold", "params": {"below": 2}, "datastream_id": None}, "datastream_id"),
        (
            {"kind": "threshold", "params": {"below": 2}, "observed_property": "pressure"},
            "datastream_id",
        ),
        (
            {
                "kind": "no_data",
                "params": {"minutes": 5},
                "datastream_id": None,
                "observed_property": "humidity",
            },
            "observed_property",
        ),
        ({"kind": "threshold", "params": {"below": 2}, "datastream_id": status}, "params.below"),
        ({"kind": "threshold", "params": {"equals": 0}, "datastream_id": status}, "params.equals"),
        ({"kind": "threshold", "params": {"below": 2}, "name": ""}, "name"),
    ]
    for case, field in cases:
        arguments = {"name": "rule", "datastream_id": ds, **case}
        with pytest.raises(AlertRuleError) as caught:
            add_rule(url=live_db, **arguments)
        assert caught.value.parameter == field, (case, str(caught.value))
        assert isinstance(caught.value, ParameterError)
    assert rules(url=live_db) == []

    rule = add_rule(
        name="low", kind="threshold", datastream_id=ds, params={"below": 2}, url=live_db
    )
    assert rule.params == {"below": 2.0, "clear": 2.0, "duration_s": 0.0, "clear_duration_s": 0.0}
    with pytest.raises(AlertRuleError) as caught:
        add_rule(name="low", kind="threshold", datastream_id=ds, params={"below": 1}, url=live_db)
    assert caught.value.parameter == "name"
    assert [r.name for r in rules(url=live_db)] == ["low"]
    assert enable_rule(rule.id, enabled=False, url=live_db).enabled is False
    assert rules(enabled=True, url=live_db) == []
    delete_rule(rule.id, url=live_db)
    with pytest.raises(UnknownAlertError) as missing:
        delete_rule(rule.id, url=live_db)
    assert missing.value.parameter == "rule_id"


# --- evaluation -------------------------------------------------------------------------------


def test_threshold_needs_its_duration_a_short_spike_raises_nothing(live_db: str) -> None:
    ds = pressure(live_db)
    add_rule(
        name="pressure low",
        kind="threshold",
        datastream_id=ds,
        params={"below": 2.0, "duration_s": 120},
        severity="critical",
        url=live_db,
    )
    recorder = Recorder()
    live = feed(live_db, recorder)
    send(live, ds, [(0, 3.0), (1, 1.5), (2, 3.0), (3, 1.2), (4, 1.4)])  # spikes of 0 and 60 s
    assert count_alerts(live_db) == 0 and recorder.events == []

    send(live, ds, [(5, 1.3)])  # below since minute 3: 120 s
    [raised] = recorder.events
    assert raised["state"] == "raised" and raised["raised_at"] == at(5).isoformat()[:19] + ".000Z"
    assert raised["severity"] == "critical" and raised["rule"] == "pressure low"
    assert raised["value"] == 1.3 and raised["datastream"] == ds
    assert (raised["layer"], raised["feature_id"]) == ("pipelines", PIPE)
    assert raised["lon"] == pytest.approx(7.43179, abs=1e-4)
    assert raised["lat"] == pytest.approx(43.74502, abs=1e-4)
    assert "1.3 bar below 2 bar for 120 s" in raised["message"]
    assert raised["impact"]["kind"] == "isolation"

    send(live, ds, [(6, 1.0), (7, 0.5)])  # still below: the open alert is not raised again
    assert len(recorder.events) == 1 and count_alerts(live_db) == 1

    send(live, ds, [(8, 2.5)])  # back above (no hysteresis asked): resolved at once
    assert [e["state"] for e in recorder.events] == ["raised", "resolved"]
    assert recorder.events[1]["resolved_at"] == at(8).isoformat()[:19] + ".000Z"


def test_a_duration_elapses_between_readings_on_tick(live_db: str) -> None:
    ds = pressure(live_db)
    add_rule(
        name="low",
        kind="threshold",
        datastream_id=ds,
        params={"below": 2.0, "duration_s": 120, "clear_duration_s": 120},
        url=live_db,
    )
    processor = AlertRules()
    live = Feed(url=live_db, processors=[processor])
    send(live, ds, [(0, 1.0), (1, 1.0)])
    assert processor.tick(at(1.5), url=live_db) == []  # 90 s below
    [raised] = processor.tick(at(2.5), url=live_db)  # 150 s below, the last reading 90 s old
    assert raised["state"] == "raised" and raised["raised_at"].startswith(at(2.5).isoformat()[:19])
    assert processor.tick(at(3), url=live_db) == []  # open already
    send(live, ds, [(4, 3.0)])
    assert processor.tick(at(5), url=live_db) == []  # above for 60 s only
    [cleared] = processor.tick(at(6.5), url=live_db)
    assert cleared["state"] == "resolved" and cleared["id"] == raised["id"]
    # a reading older than the staleness setting holds nothing: no raise on it
    send(live, ds, [(7, 1.0)])
    assert processor.tick(at(7 + 30), url=live_db) == []


def test_hysteresis_oscillating_around_the_threshold_raises_once(live_db: str) -> None:
    ds = pressure(live_db)
    add_rule(
        name="low",
        kind="threshold",
        datastream_id=ds,
        params={"below": 2.0, "clear": 2.5},
        url=live_db,
    )
    recorder = Recorder()
    live = feed(live_db, recorder)
    send(live, ds, [(m, 1.9 if m % 2 == 0 else 2.1) for m in range(10)])
    assert [e["state"] for e in recorder.events] == ["raised"]
    assert recorder.events[0]["raised_at"].startswith(at(0).isoformat()[:19])
    send(live, ds, [(10, 2.4), (11, 1.8), (12, 2.6)])  # 2.4 is not past the clear value
    assert [e["state"] for e in recorder.events] == ["raised", "resolved"]
    assert recorder.events[1]["resolved_at"].startswith(at(12).isoformat()[:19])
    send(live, ds, [(13, 1.9)])  # a new breach is a new alert
    assert [e["state"] for e in recorder.events] == ["raised", "resolved", "raised"]
    assert count_alerts(live_db) == 2 and count_alerts(live_db, "state <> 'resolved'") == 1


def test_rate_of_change_between_readings_and_over_a_window(live_db: str) -> None:
    fast = pressure(live_db, name="fast")
    slow = pressure(live_db, name="slow")
    add_rule(
        name="falling fast",
        kind="rate",
        datastream_id=fast,
        params={"limit_per_min": 0.5, "direction": "fall"},
        url=live_db,
    )
    add_rule(
        name="falling over 5 min",
        kind="rate",
        datastream_id=slow,
        params={"limit_per_min": 0.2, "direction": "fall", "window_s": 300},
        url=live_db,
    )
    recorder = Recorder()
    live = feed(live_db, recorder)
    # rising fast is not falling; -0.4 bar/min is within the limit
    send(live, fast, [(0, 3.0), (1, 4.0), (2, 3.6)])
    assert recorder.events == []
    send(live, fast, [(4, 2.0)])  # -0.8 bar/min over the 2 min since the last reading
    [raised] = recorder.events
    assert raised["kind"] == "rate" and "changing -0.8 bar/min" in raised["message"]
    send(live, fast, [(5, 1.9)])  # -0.1 bar/min: within the limit, cleared
    assert [e["state"] for e in recorder.events] == ["raised", "resolved"]

    # -0.15 bar/min between readings, -0.3 bar/min over the window once it holds 2 drops
    recorder.events.clear()
    send(live, slow, [(0, 3.0), (0.5, 2.925), (1, 2.85)])
    assert recorder.events == []  # -0.15 bar/min over the window so far
    send(live, slow, [(1.5, 2.55)])  # 3.0 -> 2.55 in 1.5 min: -0.3 bar/min
    [raised] = recorder.events
    assert raised["rule"] == "falling over 5 min"


def test_no_data_is_raised_by_tick_and_resolved_by_the_next_reading(live_db: str) -> None:
    talking = registry.register(
        "cam-a/status",
        thing="cam-a",
        observed_property="status",
        observation_type=CATEGORY,
        layer="cameras",
        feature_id=CAMERA,
        url=live_db,
    )
    never = registry.register(
        "cam-b/status",
        thing="cam-b",
        observed_property="status",
        observation_type=CATEGORY,
        layer="cameras",
        feature_id="node/11148498422",
        url=live_db,
    )
    add_rule(
        name="camera silent",
        kind="no_data",
        observed_property="status",
        params={"minutes": 10},
        url=live_db,
    )
    processor = AlertRules()
    live = Feed(url=live_db, processors=[processor])
    send(live, talking, [(0, "online")])
    assert processor.tick(at(5), url=live_db) == []
    [silent] = processor.tick(at(11), url=live_db)
    assert silent["datastream"] == talking and silent["kind"] == "no_data"
    assert "no observation for 10 min" in silent["message"]
    assert silent["impact"]["kind"] == "camera_coverage" and silent["impact"]["camera"] == CAMERA
    assert processor.tick(at(12), url=live_db) == []  # one open alert, not a second
    # the datastream that never spoke is silent since the rule exists (about now)
    later = processor.tick(datetime.now(UTC) + timedelta(minutes=11), url=live_db)
    assert [e["datastream"] for e in later] == [never]
    events = live.ingest([Reading(talking, at(12.5), "online")])
    assert events.stored
    assert get_alert(silent["id"], url=live_db)["state"] == "resolved"
    assert get_alert(silent["id"], url=live_db)["resolved_at"].startswith(at(12.5).isoformat()[:19])
    assert count_alerts(live_db) == 2


def test_one_open_alert_per_rule_and_datastream_across_batches_and_processes(
    live_db: str,
) -> None:
    ds = pressure(live_db)
    rule = add_rule(
        name="low", kind="threshold", datastream_id=ds, params={"below": 2.0}, url=live_db
    )
    first, second = feed(live_db), feed(live_db)  # two processes' feeds, each its own memory
    send(first, ds, [(0, 1.5)])
    send(second, ds, [(1, 1.4)])
    send(first, ds, [(2, 1.3)])
    first.ingest([Reading(ds, at(3), 1.2), Reading(ds, at(4), 1.1), Reading(ds, at(2), 1.3)])
    with ThreadPoolExecutor(2) as pool:  # both at once
        list(
            pool.map(
                lambda k: [first, second][k % 2].ingest([Reading(ds, at(5 + k), 1.0)]), range(8)
            )
        )
    assert count_alerts(live_db) == 1
    [only] = alerts(url=live_db)
    assert only["rule_id"] == rule.id and only["raised_at"].startswith(at(0).isoformat()[:19])


def test_a_restarted_process_recovers_the_streak_from_the_store(live_db: str) -> None:
    ds = pressure(live_db)
    add_rule(
        name="low",
        kind="threshold",
        datastream_id=ds,
        params={"below": 2.0, "duration_s": 120, "clear": 2.5, "clear_duration_s": 60},
        url=live_db,
    )
    send(feed(live_db), ds, [(0, 1.5), (1, 1.5)])
    assert count_alerts(live_db) == 0
    recorder = Recorder()
    restarted = feed(live_db, recorder)  # knows nothing: replays the last 120 s from the store
    send(restarted, ds, [(2, 1.5)])
    [raised] = recorder.events
    assert raised["raised_at"].startswith(at(2).isoformat()[:19])
    # another process sees the value back above the clear value; this one the next reading
    send(feed(live_db), ds, [(3, 2.6)])
    send(restarted, ds, [(4, 2.7)])
    assert [e["state"] for e in recorder.events] == ["raised", "resolved"]
    # a streak another process broke is not this one's: 1.5 at 5 and 7, 3.0 at 6 elsewhere
    send(restarted, ds, [(5, 1.5)])
    send(feed(live_db), ds, [(6, 3.0)])
    send(restarted, ds, [(7, 1.5)])
    assert len(recorder.events) == 2


def test_lifecycle_raised_acknowledged_resolved(live_db: str) -> None:
    ds = pressure(live_db)
    add_rule(name="low", kind="threshold", datastream_id=ds, params={"below": 2.0}, url=live_db)
    live = feed(live_db)
    send(live, ds, [(0, 1.0)])
    [alert] = alerts(state="open", url=live_db)
    assert alert["state"] == "raised"

    acked = acknowledge(alert["id"], by="operator-7", url=live_db)
    assert acked["type"] == "alert" and acked["state"] == "acknowledged"
    assert acked["acknowledged_by"] == "operator-7" and acked["acknowledged_at"]
    with pytest.raises(AlertStateError, match="acknowledged by operator-7"):
        acknowledge(alert["id"], by="operator-8", url=live_db)
    send(live, ds, [(1, 0.9)])  # still low: nothing changes
    assert alerts(state="acknowledged", url=live_db)[0]["id"] == alert["id"]

    done = resolve(alert["id"], by="operator-7", url=live_db)
    assert done["state"] == "resolved" and done["resolved_by"] == "operator-7"
    for step in (acknowledge, resolve):
        with pytest.raises(AlertStateError) as caught:
            step(alert["id"], by="operator-7", url=live_db)
        assert caught.value.parameter == "state" and "resolved" in str(caught.value)
    with pytest.raises(UnknownAlertError) as unknown:
        acknowledge(alert["id"] + 100, by="x", url=live_db)
    assert unknown.value.parameter == "alert_id"
    with pytest.raises(ParameterError) as nobody:
        acknowledge(alert["id"], by=" ", url=live_db)
    assert nobody.value.parameter == "by"

    # resolved by hand while still low: the next low reading is a new alert
    send(live, ds, [(2, 0.8)])
    assert [a["state"] for a in alerts(url=live_db)] == ["raised", "resolved"]
    fresh = alerts(state="raised", url=live_db)[0]
    assert resolve(fresh["id"], by="operator-7", url=live_db)["state"] == "resolved"  # raised ->
    assert alerts(state="open", url=live_db) == []
    assert len(alerts(since=datetime.now(UTC) - timedelta(minutes=5), url=live_db)) == 2
    assert alerts(since=datetime.now(UTC) + timedelta(minutes=5), url=live_db) == []
    assert len(alerts(limit=1, url=live_db)) == 1
    for bad, field in (
        ({"state": "closed"}, "state"),
        ({"limit": 0}, "limit"),
        ({"since": "yesterday"}, "since"),
    ):
        with pytest.raises(ParameterError) as caught:
            alerts(url=live_db, **bad)
        assert caught.value.parameter == field


def test_a_rule_on_a_property_watches_each_of_its_datastreams_and_disabled_rules_nothing(
    live_db: str,
) -> None:
    rule = add_rule(
        name="pressure low anywhere",
        kind="threshold",
        observed_property="pressure",
        params={"below": 2.0},
        url=live_db,
    )
    a, b = (
        pressure(live_db, name="a"),
        pressure(live_db, name="b", layer="pipe_nodes", feature_id=JUNCTION),
    )
    live = feed(live_db)
    live.ingest([Reading(a, at(0), 1.0), Reading(b, at(0), 1.0)])
    assert sorted(x["datastream"] for x in alerts(url=live_db)) == [a, b]
    enable_rule(rule.id, enabled=False, url=live_db)
    c = pressure(live_db, name="c")
    send(live, c, [(1, 1.0)])
    assert count_alerts(live_db) == 2


# --- impact -----------------------------------------------------------------------------------


def test_a_pressure_drop_carries_the_isolation_plan_of_its_pipe(live_db: str) -> None:
    pipe = pressure(live_db, name="pipe")
    node = pressure(live_db, name="node", layer="pipe_nodes", feature_id=JUNCTION)
    add_rule(
        name="low",
        kind="threshold",
        observed_property="pressure",
        params={"below": 2.0},
        url=live_db,
    )
    feed(live_db).ingest([Reading(pipe, at(0), 0.5), Reading(node, at(0), 0.5)])
    by_stream = {a["datastream"]: a for a in alerts(url=live_db)}
    city = twin.connect(live_db)

    plan = city.isolate(line=PIPE)
    impact = by_stream[pipe]["impact"]
    assert impact["kind"] == "isolation" and impact["network"] == "water"
    assert impact["operate"] == plan.operate and len(plan.operate) >= 3
    assert impact["hydrants"] == plan.hydrants
    assert impact["buildings"] == sorted(plan.buildings["id"])
    assert impact["summary"] == plan.summary()
    assert shapely.geometry.shape(impact["geometry"]).length > 0

    node_alert = by_stream[node]
    junction = city.layer("pipe_nodes").set_index("id").geometry[JUNCTION]
    assert (node_alert["lon"], node_alert["lat"]) == pytest.approx((junction.x, junction.y))
    at_node = city.isolate((junction.x, junction.y), network="water")
    assert node_alert["impact"]["operate"] == at_node.operate


def test_a_dead_feeder_carries_its_outage(live_db: str) -> None:
    ds = registry.register(
        "feeder/current",
        thing="feeder",
        observed_property="current",
        layer="power_lines",
        feature_id=FEEDER,
        url=live_db,
    )
    add_rule(
        name="dead feeder",
        kind="threshold",
        datastream_id=ds,
        params={"below": 0.5, "clear": 5.0},
        url=live_db,
    )
    send(feed(live_db), ds, [(0, 180.0), (1, 0.0)])
    [alert] = alerts(url=live_db)
    outage = twin.connect(live_db).outage("power", out=[FEEDER])
    impact = alert["impact"]
    assert impact["kind"] == "outage" and impact["cause"]["out"] == [FEEDER]
    assert impact["nodes"] == sorted(outage.nodes["id"]) and len(impact["nodes"]) > 0
    assert impact["buildings"] == sorted(outage.buildings["id"])
    assert impact["summary"] == outage.summary()
    assert isinstance(impact["dark"], list) and isinstance(impact["water"], dict)


def test_a_camera_offline_carries_the_road_coverage_lost(live_db: str) -> None:
    ds = registry.register(
        "camera/status",
        thing="camera",
        observed_property="status",
        observation_type=CATEGORY,
        layer="cameras",
        feature_id=HARBOUR_CAMERA,
        url=live_db,
    )
    add_rule(
        name="camera offline",
        kind="threshold",
        datastream_id=ds,
        params={"equals": "offline", "clear": "online"},
        url=live_db,
    )
    recorder = Recorder()
    live = feed(live_db, recorder)
    send(live, ds, [(0, "online"), (1, "offline"), (2, "rebooting")])
    [alert] = alerts(url=live_db)
    impact = alert["impact"]
    assert impact["kind"] == "camera_coverage" and impact["watching"] is True
    assert impact["lost_length_m"] > 50 and impact["road_ids"]
    cone = camera_coverage(url=live_db).cones.set_index("id").geometry[HARBOUR_CAMERA]
    lost = shapely.geometry.shape(impact["geometry"])
    assert lost.difference(cone.buffer(1e-6)).area < 1e-12  # within the camera's view
    city = twin.connect(live_db)
    roads = city.layer("roads").set_index("id")
    assert all(roads.geometry[r].intersects(cone) for r in impact["road_ids"])

    # what the other cameras still see, computed apart: the whole city's covered road length
    crs = get_settings().metric_crs
    cameras = city.layer("cameras")
    others = cameras[(cameras["id"] != HARBOUR_CAMERA) & ~cameras["status"].isin(NOT_WATCHING)]
    cones = view_cones(
        others[["id", "heading", "fov", "range_m", "geometry"]].reset_index(drop=True),
        city.layer("buildings"),
        metric_crs=crs,
    )
    seen = shapely.union_all(cones.geometry.to_crs(crs).to_numpy())
    lines = roads.geometry.to_crs(crs).to_numpy()
    lines = lines[~pd.Series(shapely.to_wkb(shapely.normalize(lines))).duplicated().to_numpy()]
    districts = city.layer("districts").set_index("id")
    by_id = {d["id"]: d for d in impact["districts"]}
    city_row = by_id[districts["level"].idxmin()]
    area = districts.geometry.to_crs(crs)[city_row["id"]]
    still = shapely.length(shapely.intersection(shapely.intersection(lines, seen), area)).sum()
    assert city_row["covered_after_m"] == pytest.approx(still, abs=0.5)
    assert city_row["covered_before_m"] - city_row["covered_after_m"] == pytest.approx(
        impact["lost_length_m"], abs=0.5
    )
    assert city_row["share_after"] < city_row["share_before"]
    assert "La Condamine" in {d["name"] for d in impact["districts"]}

    send(live, ds, [(3, "online")])
    assert [e["state"] for e in recorder.events] == ["raised", "resolved"]


def test_a_flood_gauge_on_a_road_proposes_the_roads_to_close(live_db: str) -> None:
    ds = registry.register(
        "gauge/level",
        thing="gauge",
        observed_property="level",
        layer="roads",
        feature_id=ROAD,
        url=live_db,
    )
    add_rule(name="flooded", kind="threshold", datastream_id=ds, params={"above": 0.3}, url=live_db)
    send(feed(live_db), ds, [(0, 0.1), (1, 0.45)])
    [alert] = alerts(url=live_db)
    impact = alert["impact"]
    assert impact["kind"] == "closures" and ROAD in impact["road_ids"]
    assert len(impact["road_ids"]) > 1 and impact["already_closed"] == []
    assert "0.45 m above 0.3 m" in alert["message"]


def test_an_impact_that_cannot_be_computed_does_not_stop_the_alert(live_db: str) -> None:
    ds = pressure(live_db, feature_id="water/way/no-such-pipe")
    add_rule(name="low", kind="threshold", datastream_id=ds, params={"below": 2.0}, url=live_db)
    send(feed(live_db), ds, [(0, 1.0)])
    [alert] = alerts(url=live_db)
    assert alert["state"] == "raised" and "no-such-pipe" in alert["impact"]["error"]
    assert alert["lon"] is None  # the asset is nowhere on the map
