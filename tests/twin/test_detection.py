"""Incident detection on detector pairs: the California algorithm #8 worked by hand, the twin's
LaneCusum on synthetic counts and on a SUMO run with a lane blocked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from layers.observations import Reading, parse_time
from tests.conftest import SHARED
from twin.live.detection import (
    California,
    CaliforniaThresholds,
    CusumSettings,
    LaneCusum,
    LiveIncidents,
    Pair,
    Sample,
    Station,
    detect,
    detector_pairs,
    scenario_loops,
    stations,
)
from twin.live.feed import Feed
from twin.live.simulate import Incident, RunResult, loop_datastreams, run_scenario

ACOSTA = SHARED / "bologna" / "acosta"

UP = Station("a@10", "a", 10.0, ("u0", "u1"))
DOWN = Station("b@20", "b", 20.0, ("d0",))
PAIR = Pair("a@10>b@20", UP, DOWN, ("a", "b"), 400.0, 30.0, 1.0)


def occupancies(up: tuple[float, float], down: float) -> dict[str, Sample]:
    """One interval of the hand-made pair: the upstream lanes' and the downstream occupancy."""
    return {
        "u0": Sample(600.0, up[0]),
        "u1": Sample(600.0, up[1]),
        "d0": Sample(600.0, down),
    }


def test_california_8_as_worked_by_hand() -> None:
    """T1 = 8, T2 = 0.5, T3 = 0.3, T4 = -0.4, T5 = 30 (the defaults); station occupancy is
    the mean of its lanes; DOCCTD compares with the downstream occupancy two intervals back."""
    algo = California([PAIR], CaliforniaThresholds())
    steps = [
        # (time, up lanes, down) -> (state after, alarms)
        (60, (10, 10), 10, 0, 0),  # no history yet: no decision
        (120, (10, 10), 10, 0, 0),
        (180, (10, 10), 10, 0, 0),  # OCCDF = 0
        # OCCDF = 25 - 4 = 21 >= 8; OCCRDF = 21/25 = 0.84 >= 0.5; DOCCTD = (10-4)/10 = 0.6
        # >= 0.3; DOCC = 4 < 30: tentative
        (240, (24, 26), 4, 6, 0),
        # OCCRDF = (28-3)/28 = 0.89 >= 0.5 again: confirmed, the alarm
        (300, (30, 26), 3, 7, 1),
        (360, (30, 30), 3, 8, 0),  # OCCRDF = 0.9: continuing
        (420, (10, 10), 9, 0, 0),  # OCCRDF = 0.1 < 0.5: incident-free
        (480, (10, 10), 10, 0, 0),
        # OCCDF = 21, OCCRDF = 0.84, DOCCTD = (9-4)/9 = 0.56 (down at 420 s): tentative ...
        (540, (25, 25), 4, 6, 0),
        # ... but OCCRDF = (10-8)/10 = 0.2 < 0.5: the persistence check fails, no alarm
        (600, (10, 10), 8, 0, 0),
    ]
    raised = []
    for time_s, up, down, state, alarms in steps:
        got = algo.update(time_s, occupancies(up, down))
        assert algo.state[PAIR.id] == state, time_s
        assert len(got) == alarms, time_s
        raised += got
    (alarm,) = raised
    assert (alarm.pair, alarm.time_s) == (PAIR.id, 300)
    assert alarm.statistics == pytest.approx(
        {"OCCDF": 25.0, "OCCRDF": 25 / 28, "DOCCTD": 0.7, "DOCC": 3.0}
    )
    assert algo.active == set()


def test_california_8_waits_five_intervals_after_a_compression_wave() -> None:
    algo = California([PAIR], CaliforniaThresholds())
    steps = [
        (60, (20, 20), 20, 0),
        (120, (20, 20), 20, 0),
        (180, (20, 20), 20, 0),
        # DOCCTD = (20-45)/20 = -1.25 < -0.4 and DOCC = 45 >= 30: a compression wave
        (240, (20, 20), 45, 1),
        # OCCDF = 35, OCCRDF = 0.875, DOCCTD = (20-5)/20 = 0.75: an incident's features, but
        # the tests wait: states 2, 3, 4, 5, then incident-free without a test
        (300, (40, 40), 5, 2),
        (360, (40, 40), 5, 3),
        (420, (40, 40), 5, 4),
        (480, (40, 40), 5, 5),
        (540, (40, 40), 5, 0),
    ]
    for time_s, up, down, state in steps:
        assert not algo.update(time_s, occupancies(up, down))
        assert algo.state[PAIR.id] == state, time_s
    # at 600 s DOCCTD = (5-5)/5 = 0 < T3: the incident test fails, as published
    assert not algo.update(600, occupancies((40, 40), 5))
    assert algo.state[PAIR.id] == 0
    # the downstream occupancy falls further: DOCCTD = (5-2)/5 = 0.6, tentative, then confirmed
    assert not algo.update(660, occupancies((40, 40), 2))
    assert algo.state[PAIR.id] == 6
    assert [a.time_s for a in algo.update(720, occupancies((40, 40), 2))] == [720]
    # heavy traffic downstream (DOCC >= T5) without a wave: no incident test at all
    assert algo.step(0, occdf=50, occrdf=0.6, docctd=0.5, docc=35) == 0


def counts(**per_loop: float) -> dict[str, Sample]:
    """One minute of counts as samples (flow = vehicles per hour)."""
    return {loop: Sample(n * 60.0, 0.0) for loop, n in per_loop.items()}


def test_lane_cusum_on_synthetic_counts() -> None:
    two = Pair(
        "u@10>v@50",
        Station("u@10", "u", 10, ("u0",)),
        Station("v@50", "v", 50, ("v0", "v1")),
        ("u", "v"),
        300,
        20,
        1.0,
    )
    one = Pair(
        "w@10>x@50",
        Station("w@10", "w", 10, ("w0",)),
        Station("x@50", "x", 50, ("x0",)),
        ("w", "x"),
        300,
        20,
        1.0,
    )
    settings = CusumSettings(rho=0.2, rho_flow=0.3, h_lane=6.0, h_flow=12.0, window=1)
    algo = LaneCusum([two, one], interval_s=60.0, settings=settings)
    t = 0
    for _ in range(30):  # incident-free: learned online
        t += 60
        assert not algo.update(t, counts(u0=20, v0=10, v1=10, w0=15, x0=15))
    for _ in range(10):  # a signal holds lane v1 one minute, it catches up the next
        t += 60
        assert not algo.update(t, counts(u0=20, v0=8, v1=0, w0=15, x0=15))
        t += 60
        assert not algo.update(t, counts(u0=20, v0=12, v1=20, w0=15, x0=15))
    # lane v1 blocked: 12 vehicles all on v0; llr(v1) = 12 ln((1 - 0.2*0.5)/0.5) = 7.05 >= 6
    t += 60
    (alarm,) = algo.update(t, counts(u0=20, v0=12, v1=0, w0=15, x0=15))
    assert (alarm.pair, alarm.statistics["lane"]) == (two.id, "v1")
    assert algo.active == {two.id}
    t += 60  # traffic back: the pair leaves its alarm
    assert not algo.update(t, counts(u0=20, v0=10, v1=10, w0=15, x0=15))
    assert algo.active == set()
    # the one-lane station stops passing vehicles: llr = 0 ln 0.3 + 15 x 0.7 = 10.5 < 12 ...
    t += 60
    assert not algo.update(t, counts(u0=20, v0=10, v1=10, w0=15, x0=0))
    t += 60  # ... and about twice that >= 12 the next minute (the ratio learned dips a little)
    (alarm,) = algo.update(t, counts(u0=20, v0=10, v1=10, w0=15, x0=0))
    assert alarm.pair == one.id
    assert alarm.statistics["flow_cusum"] == pytest.approx(21.0, rel=0.05)


def test_detector_pairs_follow_the_rule() -> None:
    pairs = detector_pairs(ACOSTA)
    found = {s.id: s for s in stations(scenario_loops(ACOSTA))}
    by_edge = {}
    for s in found.values():
        by_edge.setdefault(s.edge, []).append(s)
    assert "72[0]@33>161@20" in {p.id for p in pairs}
    for pair in pairs:
        assert pair.share >= 0.5 and 0 < pair.distance_m <= 1000
        # no station between the two
        for edge in pair.edges[1:-1]:
            assert edge not in by_edge, pair.id
        if len(pair.edges) > 1:
            assert all(s.position_m <= pair.upstream.position_m for s in by_edge[pair.edges[0]])
            assert all(s.position_m >= pair.downstream.position_m for s in by_edge[pair.edges[-1]])


@pytest.fixture(scope="module")
def blocked() -> tuple[list[Pair], RunResult]:
    """Fifteen minutes of acosta with lane 180_0 blocked 13 m before its loop from 420 s."""
    incident = Incident("180_0", 92.0, start_s=420.0, duration_s=360.0)  # loop at 105 m
    run = run_scenario(
        ACOSTA, end=900.0, seed=11, incidents=[incident], keep_readings=True, bus_interval_s=None
    )
    return detector_pairs(ACOSTA), run


def readings_table(run: RunResult) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_s": [r.end_s for r in run.readings],
            "loop": [r.loop for r in run.readings],
            "flow": [r.flow for r in run.readings],
            "occupancy": [r.occupancy for r in run.readings],
            "speed": [r.speed for r in run.readings],
        }
    )


def test_lane_cusum_detects_a_blocked_lane_in_sumo_after_it_starts(
    blocked: tuple[list[Pair], RunResult],
) -> None:
    pairs, run = blocked
    (truth,) = run.incidents
    assert truth.from_s is not None and truth.until_s is not None
    inc = truth.incident
    covering = {p.id for p in pairs if p.covers(inc.edge, inc.position_m)}
    assert covering == {"11@0>180@105"}
    alarms = detect(LaneCusum(pairs, interval_s=60.0), readings_table(run))
    mine = [a for a in alarms if a.pair in covering]
    assert mine, "the blocked lane was not detected"
    # after it starts, not before, while it lasts
    assert truth.from_s < mine[0].time_s <= truth.until_s


def test_lane_cusum_on_the_live_feed_raises_what_it_raises_offline(
    blocked: tuple[list[Pair], RunResult], live_db: str
) -> None:
    """The same readings through the twin's one store path (Feed.ingest, interval by
    interval): the detector as a processor raises the same alarms, as push events."""
    pairs, run = blocked
    streams = loop_datastreams("acosta", scenario_loops(ACOSTA), url=live_db)
    anchor = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=900)
    needed = {i for p in pairs for i in (*p.upstream.loops, *p.downstream.loops)}
    processor = LiveIncidents(LaneCusum(pairs, interval_s=60.0), scenario="acosta", loops=needed)
    events: list[dict] = []
    feed = Feed(url=live_db, processors=[processor], listeners=[events.extend])
    by_end: dict[float, list] = {}
    for r in run.readings:
        by_end.setdefault(r.end_s, []).append(r)
    for end_s in sorted(by_end):
        at = anchor + timedelta(seconds=end_s)
        batch = []
        for r in by_end[end_s]:
            batch.append(Reading(streams[r.loop]["flow"], at, r.flow))
            batch.append(Reading(streams[r.loop]["occupancy"], at, r.occupancy))
            if r.speed is not None:
                batch.append(Reading(streams[r.loop]["speed"], at, r.speed))
        report = feed.ingest(batch)
        assert report.refused_count == 0, report.refused
    live = [
        (e["pair"], (parse_time(e["phenomenonTime"]) - anchor).total_seconds())
        for e in events
        if e["type"] == "incident"
    ]
    offline = [
        (a.pair, a.time_s) for a in detect(LaneCusum(pairs, interval_s=60.0), readings_table(run))
    ]
    assert live == offline
    assert any(pair == "11@0>180@105" for pair, _ in live)
