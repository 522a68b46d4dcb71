"""Live traffic state: detector speeds -> live road speeds -> routes; AVL positions -> dispatch.

Every reading goes the one way the twin takes them, :meth:`twin.live.feed.Feed.ingest` with the
twin's processors, into the sample city's store; routes are compared with pgRouting over the
same ``routing_edges`` view.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import twin
from layers.database import get_engine
from layers.observations import OBSERVATION, Reading, StoredObservation, refusals
from layers.settings import get_settings
from tests.conditions import wait_until
from tests.routing.oracle import pgr_costs, reachable
from twin.live.feed import Feed
from twin.live.processors import default_processors
from twin.live.registry import register
from twin.live.traffic import RoadSpeeds, expire, expire_speeds, road_speed
from twin.live.vehicles import PositionError, VehiclePositions, expire_positions, point_of

A, B = (7.4165, 43.7315), (7.4290, 43.7400)  # across La Condamine (as tests/routing)
INCIDENT = (7.4377845, 43.751428)  # the north-east end of the city
FAR_UNIT = "vehicle/way/572949998"  # a vehicle at the south-west end


@pytest.fixture
def live(live_db: str) -> Iterator[str]:
    """The live store, with no live position either (live_db empties the other live tables)."""
    with get_engine(live_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM live_positions"))
    yield live_db
    with get_engine(live_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM live_positions"))
        conn.execute(sa.text("DELETE FROM live_speeds"))


def moment(seconds_ago: float = 30) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)


def lanes(url: str, road: str, count: int = 2) -> list[tuple[int, int]]:
    """Register ``count`` lane detectors on a road: (speed, flow) datastream ids per lane."""
    out = []
    for lane in range(count):
        thing = f"loop {road} #{lane}"
        common: dict[str, Any] = {"thing": thing, "layer": "roads", "feature_id": road, "url": url}
        out.append(
            (
                register(f"{thing}/speed", observed_property="speed", **common),
                register(f"{thing}/flow", observed_property="flow", **common),
            )
        )
    return out


def readings(
    detectors: list[tuple[int, int]], values: list[tuple[float, float | None]], at: datetime
) -> list[Reading]:
    out = []
    for (speed_ds, flow_ds), (speed, flow) in zip(detectors, values, strict=True):
        out.append(Reading(speed_ds, at, speed))
        if flow is not None:
            out.append(Reading(flow_ds, at, flow))
    return out


def live_speeds(url: str) -> dict[str, tuple[float, datetime]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text("SELECT road_id, speed_kmh, observed_at FROM live_speeds"))
        return {str(r): (float(v), at) for r, v, at in rows}


def counter(url: str, layer: str) -> int:
    with get_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT version FROM layer_versions WHERE layer = :l"), {"l": layer}
            ).scalar_one()
        )


def speed_events(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["road"]: e for e in events if e["type"] == "speed"}


class Recorder:
    """A feed listener keeping every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


def feed(url: str, *processors: Any) -> tuple[Feed, Recorder]:
    recorder = Recorder()
    return Feed(
        url=url, processors=list(processors) or default_processors(), listeners=[recorder]
    ), recorder


# -- combining lanes -------------------------------------------------------------------------


def test_road_speed_is_the_flow_weighted_harmonic_mean() -> None:
    # 1000 veh/h at 80 km/h and 500 veh/h at 20 km/h: densities 12.5 and 25 veh/km
    assert road_speed([(80, 1000), (20, 500)]) == pytest.approx(1500 / 37.5)  # 40, not 50
    assert road_speed([(80, None), (20, 500)]) == pytest.approx(50)  # a flow unknown: the mean
    assert road_speed([(80, 1000), (-1, 0)]) == pytest.approx(80)  # no vehicle: left out
    assert road_speed([(80, 1000), (35, 0)]) == pytest.approx(80)
    assert road_speed([(0, None), (math.nan, None)]) is None
    assert road_speed([]) is None


# -- speeds into routing ---------------------------------------------------------------------


def test_congestion_slows_the_next_route_and_routes_equal_pgr_dijkstra(live: str) -> None:
    city = twin.connect(live)
    before = city.route(A, B)
    assert before is not None
    roads = before.road_ids
    at = moment()
    feed_, recorder = feed(live)
    detectors = {road: lanes(live, road) for road in roads}
    batch = [r for road in roads for r in readings(detectors[road], [(6, 600), (4, 200)], at)]
    version = counter(live, "live_speeds")
    report = feed_.ingest(batch)
    assert len(report.stored) == len(batch)
    # one statement for the batch (an upsert fires its INSERT and its UPDATE triggers)
    assert version < counter(live, "live_speeds") <= version + 2
    events = speed_events(recorder.events)
    assert set(events) == set(roads)
    expected = 800 / (600 / 6 + 200 / 4)  # the flow-weighted harmonic mean, 5.33 km/h
    stored = live_speeds(live)
    with get_engine(live).connect() as conn:
        free = dict(
            conn.execute(
                sa.text(
                    "SELECT road_id, free_flow_kmh FROM routing_edges_all "
                    "WHERE profile = 'car' AND road_id = ANY(:r)"
                ),
                {"r": list(roads)},
            ).all()
        )
    for road in roads:
        assert stored[road] == (pytest.approx(expected), at)
        event = events[road]
        assert event["speed_kmh"] == pytest.approx(expected)
        assert event["free_flow_kmh"] == pytest.approx(free[road])
        assert event["congestion"] == pytest.approx(expected / free[road])
        assert datetime.fromisoformat(event["observed_at"]) == at
    after = city.route(A, B)  # the next query: no wait, no reload
    assert after is not None and after.duration_s > before.duration_s

    # the engine's costs are the view's, to the last bit, for both profiles
    for profile in ("car", "emergency"):
        network = city.router.network(profile)
        assert network.live_speeds is not None and set(network.live_speeds) == set(roads)
        with get_engine(live).connect() as conn:
            view = {
                int(i): (float(c), float(r))
                for i, c, r in conn.execute(
                    sa.text(
                        "SELECT id, cost, reverse_cost FROM routing_edges_all WHERE profile = :p"
                    ),
                    {"p": profile},
                )
            }
        ours = {
            int(e): (float(c), float(r))
            for e, c, r in zip(network.edge_id, network.cost, network.reverse_cost, strict=True)
        }
        assert ours == view
    # and shortest paths equal pgr_dijkstra's over routing_edges, through the slow roads too
    network = city.router.network("car")
    slow = [network.road_index[r] for r in roads]
    ends = [int(network.node_ids[network.source[i]]) for i in slow] + [
        int(network.node_ids[network.target[i]]) for i in slow
    ]
    rng = np.random.default_rng(5)
    nodes = [int(n) for n in rng.choice(network.node_ids, 150)]
    pairs = [(a, b) for a, b in zip(nodes + ends, nodes[::-1] + ends[::-1], strict=True) if a != b]
    oracle = pgr_costs(live, "car", pairs)
    joined = 0
    for a, b in pairs:
        times, _, _ = network.search([(network.node_index[a], 0.0)])
        ours_cost = float(times[network.node_index[b]])
        if (a, b) in oracle:
            joined += 1
            assert ours_cost == pytest.approx(oracle[(a, b)], abs=1e-6), (a, b)
        else:
            assert math.isinf(ours_cost)
    assert joined == sum(reachable(live, "car", pairs)) > len(pairs) // 2


def test_lanes_arriving_in_separate_batches_give_the_same_speed(live: str) -> None:
    road = twin.connect(live).route(A, B).road_ids[0]  # type: ignore[union-attr]
    detectors = lanes(live, road)
    at = moment()
    feed_, recorder = feed(live)
    feed_.ingest(readings(detectors[:1], [(80, 1000)], at))
    assert live_speeds(live)[road][0] == pytest.approx(80)
    feed_.ingest(readings(detectors[1:], [(20, 500)], at))  # the other lane, one batch later
    assert live_speeds(live)[road] == (pytest.approx(40), at)
    assert [e["speed_kmh"] for e in recorder.events if e["type"] == "speed"] == [
        pytest.approx(80),
        pytest.approx(40),
    ]
    # a flow arriving after its speed re-weights the lanes
    other = lanes(live, road, count=3)[2]
    feed_.ingest([Reading(other[0], at, 40.0)])  # lane 3's speed, flow not yet known: the mean
    assert live_speeds(live)[road][0] == pytest.approx((80 + 20 + 40) / 3)
    feed_.ingest([Reading(other[1], at, 500.0)])
    assert live_speeds(live)[road][0] == pytest.approx(2000 / (1000 / 80 + 500 / 20 + 500 / 40))


def test_an_interval_without_vehicles_changes_nothing(live: str) -> None:
    road = twin.connect(live).route(A, B).road_ids[0]  # type: ignore[union-attr]
    detectors = lanes(live, road)
    feed_, recorder = feed(live)
    first = moment(60)
    feed_.ingest(readings(detectors, [(30, 300), (40, 400)], first))
    version = counter(live, "live_speeds")
    # SUMO's e1 detectors give -1 where no vehicle passed; flows of 0
    feed_.ingest(readings(detectors, [(-1, 0), (-1, 0)], moment(30)))
    assert live_speeds(live)[road][1] == first
    assert counter(live, "live_speeds") == version  # nothing written, no counter moved
    assert [e for e in recorder.events if e["type"] == "speed"][1:] == []


def test_late_and_duplicate_readings_never_move_a_speed_back(live: str) -> None:
    road = twin.connect(live).route(A, B).road_ids[0]  # type: ignore[union-attr]
    detectors = lanes(live, road, count=1)
    feed_, recorder = feed(live)
    newer, older = moment(30), moment(90)
    feed_.ingest(readings(detectors, [(20, 100)], newer))
    version = counter(live, "live_speeds")
    feed_.ingest(readings(detectors, [(5, 100)], older))  # late: older than the live speed
    assert live_speeds(live)[road] == (20.0, newer)
    report = feed_.ingest(readings(detectors, [(20, 100)], newer))  # the same reading again
    assert report.duplicates == 2 and not report.stored
    assert counter(live, "live_speeds") == version
    assert [e["speed_kmh"] for e in recorder.events if e["type"] == "speed"] == [20.0]
    # two feeds (two processes) writing the same road: the newer reading wins either way
    other, _ = feed(live)
    other.ingest(readings(detectors, [(50, 100)], moment(10)))
    feed_.ingest(readings(detectors, [(5, 100)], moment(20)))
    assert live_speeds(live)[road][0] == 50.0


def test_stale_speeds_fall_back_to_free_flow(live: str) -> None:
    city = twin.connect(live)
    before = city.route(A, B)
    assert before is not None
    roads = before.road_ids
    detectors = {road: lanes(live, road, count=1) for road in roads}
    stale_s = get_settings().live_stale_s
    feed_, recorder = feed(live)
    # already older than the staleness setting: never written, routing unchanged
    gone = [r for road in roads for r in readings(detectors[road], [(5, 100)], moment(stale_s + 5))]
    feed_.ingest(gone)
    assert live_speeds(live) == {} and not speed_events(recorder.events)
    # expiring two seconds from now: counted, then not, without anything deleting it
    soon = moment(stale_s - 2)
    feed_.ingest([r for road in roads for r in readings(detectors[road], [(5, 100)], soon)])
    assert city.route(A, B).duration_s > before.duration_s  # type: ignore[union-attr]
    version = counter(live, "live_congestion")
    wait_until(
        lambda: city.route(A, B).duration_s == pytest.approx(before.duration_s, abs=1e-9),  # type: ignore[union-attr]
        timeout_s=10,
        what="the route back at free-flow speeds once the live speeds expired",
    )
    assert len(live_speeds(live)) == len(roads)  # expired, still stored
    assert counter(live, "live_congestion") == version
    with get_engine(live).connect() as conn:
        counted = conn.execute(
            sa.text(
                "SELECT count(*) FROM routing_edges_all r JOIN live_speeds l "
                "ON l.road_id = r.road_id WHERE r.speed_kmh = l.speed_kmh * r.factor"
            )
        ).scalar_one()
    assert counted == 0  # the view counts them no more either
    # expiring deletes them and moves the counters (tiles, routers key on them), once
    events = expire(url=live)
    assert {e["road"] for e in events} == set(roads)
    assert all(e["expired"] and e["speed_kmh"] is None for e in events)
    assert live_speeds(live) == {}
    assert counter(live, "live_congestion") == version + 1
    assert expire_speeds(live) == 0
    assert counter(live, "live_congestion") == version + 1  # nothing to expire: nothing moved


def test_expire_with_a_moment(live: str) -> None:
    road = twin.connect(live).route(A, B).road_ids[0]  # type: ignore[union-attr]
    detectors = lanes(live, road, count=1)
    at = moment()
    feed(live)[0].ingest(readings(detectors, [(12, 100)], at))
    stale_s = get_settings().live_stale_s
    assert expire_speeds(live, now=at + timedelta(seconds=stale_s - 1)) == 0
    assert expire_speeds(live, now=at + timedelta(seconds=stale_s)) == 1
    assert live_speeds(live) == {}


def test_speeds_in_other_units_and_of_other_things_are_handled(live: str) -> None:
    road = twin.connect(live).route(A, B).road_ids[0]  # type: ignore[union-attr]
    common: dict[str, Any] = {"layer": "roads", "feature_id": road, "url": live}
    in_ms = register("radar/speed", thing="radar", observed_property="speed", unit="m/s", **common)
    odd = register("odd/speed", thing="odd", observed_property="speed", unit="furlong", **common)
    pressure = register("gauge/level", thing="gauge", observed_property="level", **common)
    nowhere = register("probe/speed", thing="probe", observed_property="speed", url=live)
    at = moment()
    feed_, _ = feed(live, RoadSpeeds())
    feed_.ingest(
        [
            Reading(in_ms, at, 10.0),
            Reading(odd, at, 99.0),
            Reading(pressure, at, 3.0),
            Reading(nowhere, at, 70.0),
        ]
    )
    assert live_speeds(live) == {road: (pytest.approx(36.0), at)}  # 10 m/s; the rest unused


# -- vehicles --------------------------------------------------------------------------------


def tracker(url: str, resource: str) -> int:
    return register(
        f"avl {resource}/position",
        thing=f"avl {resource}",
        observed_property="position",
        observation_type=OBSERVATION,
        layer="resources",
        feature_id=resource,
        url=url,
    )


def test_point_of_reads_geojson_points_and_refuses_the_rest() -> None:
    assert point_of({"type": "Point", "coordinates": [7.42, 43.73]}) == (7.42, 43.73)
    assert point_of([7.42, 43.73, 12.0]) == (7.42, 43.73)
    bad = [
        ({"type": "LineString", "coordinates": [[7.42, 43.73], [7.43, 43.74]]}, "bad position"),
        ([7.42], "bad position"),
        ("7.42,43.73", "bad position"),
        ([True, 43.73], "bad position"),
        ([math.nan, 43.73], "bad position"),
        ([math.inf, 43.73], "bad position"),
        ([0.0, 0.0], "outside the city"),
        ({"type": "Point", "coordinates": [43.73, 7.42]}, "outside the city"),  # lat, lon
    ]
    for result, reason in bad:
        with pytest.raises(PositionError) as caught:
            point_of(result)
        assert caught.value.reason == reason, result
        assert caught.value.parameter == "result"


def test_an_avl_position_makes_a_unit_the_nearest(live: str) -> None:
    city = twin.connect(live)
    first = city.nearest_units(INCIDENT, kind="vehicle", k=1)[0]
    assert first.id != FAR_UNIT
    stream = tracker(live, FAR_UNIT)
    feed_, recorder = feed(live)
    at = moment()
    near = (INCIDENT[0] - 0.0003, INCIDENT[1] - 0.0002)
    feed_.ingest([Reading(stream, at, {"type": "Point", "coordinates": list(near)})])
    [event] = [e for e in recorder.events if e["type"] == "vehicle"]
    assert event == {
        "type": "vehicle",
        "resource": FAR_UNIT,
        "lon": pytest.approx(near[0]),
        "lat": pytest.approx(near[1]),
        "observed_at": event["observed_at"],
    }
    assert datetime.fromisoformat(event["observed_at"]) == at
    moved = city.nearest_units(INCIDENT, kind="vehicle", k=1)[0]
    assert moved.id == FAR_UNIT and moved.travel_s < first.travel_s
    # the resources layer is untouched: no new version
    with get_engine(live).connect() as conn:
        versions = conn.execute(
            sa.text("SELECT count(*) FROM resources WHERE id = :i"), {"i": FAR_UNIT}
        ).scalar_one()
    assert versions == 1
    # an older position is ignored; once the live one expires, the unit is back where it was
    feed_.ingest([Reading(stream, moment(60), [7.41, 43.73])])
    assert city.nearest_units(INCIDENT, kind="vehicle", k=1)[0].id == FAR_UNIT
    stale_s = get_settings().live_stale_s
    assert expire_positions(live, now=at + timedelta(seconds=stale_s)) == 1
    assert city.nearest_units(INCIDENT, kind="vehicle", k=1)[0].id == first.id


def test_bad_positions_are_refused_with_a_reason_and_never_crash(
    live: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = "vehicle/node/1876665266"
    stream = tracker(live, good)
    ghost = tracker(live, "vehicle/nowhere")
    before = refusals(url=live)
    feed_, recorder = feed(live)
    at = moment(100)
    batch = [
        Reading(stream, at, {"type": "LineString", "coordinates": [[7.42, 43.73], [7.43, 43.74]]}),
        Reading(stream, at + timedelta(seconds=1), [7.42]),
        Reading(stream, at + timedelta(seconds=2), "here"),
        Reading(stream, at + timedelta(seconds=3), [0.0, 0.0]),
        Reading(ghost, at, [7.42, 43.73]),
        Reading(stream, at + timedelta(seconds=4), [7.4201, 43.7301]),
    ]
    with caplog.at_level(logging.WARNING, logger="twin.live.vehicles"):
        report = feed_.ingest(batch)
    assert len(report.stored) == len(batch)  # stored as received; only the twin refuses them
    [event] = [e for e in recorder.events if e["type"] == "vehicle"]
    assert (event["resource"], event["lon"], event["lat"]) == (good, 7.4201, 43.7301)
    after = refusals(url=live)
    grown = {reason: after[reason] - before.get(reason, 0) for reason in after}
    assert grown["bad position"] == 3
    assert grown["outside the city"] == 1
    assert grown["unknown resource"] == 1
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "LineString" in logged and "outside the city" in logged and "vehicle/nowhere" in logged
    # the processor alone, on what no store would hold (non-finite numbers): refused, no crash
    odd = StoredObservation(1, stream, moment(), None, None, [math.nan, math.inf], None, None)
    assert VehiclePositions().observe([odd], url=live) == []


def test_default_processors_are_speeds_then_vehicles() -> None:
    kinds = [type(p).__name__ for p in default_processors()]
    assert kinds[:2] == ["RoadSpeeds", "VehiclePositions"]
