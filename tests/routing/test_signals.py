"""Signal timing checked against SUMO's own tools and in SUMO itself (real Bologna scenarios)."""

from __future__ import annotations

import collections
import itertools
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from routing.signals import (
    VARIANTS,
    CorridorSignal,
    GreenWave,
    SignalError,
    WebsterSettings,
    link_flows,
    maxband,
    optimise,
    plan_corridor,
    read_programs,
    read_scenario,
    read_trips,
    signals_of,
    webster,
    write_additional,
)
from routing.signals import sumo as bridge
from routing.signals.evaluation import Setup, simulate
from routing.signals.preemption import run_corridor
from routing.signals.webster import stages

BOLOGNA = Path(__file__).resolve().parents[3] / "shared" / "data" / "bologna"
SCENARIOS = ["acosta", "pasubio"]
# A SUMO run or tool here lasts seconds (the end-to-end evaluation a few minutes): a hang must
# fail the test, not stall CI.
TIMEOUT_S = 120
EVALUATE_TIMEOUT_S = 1200
EMERGENCY = "twin_emergency"  # the emergency vehicle's id in SUMO (routing.signals.preemption)


def config(name: str) -> Path:
    return BOLOGNA / name / "run.sumocfg"


def tool_plan(net: Path, routes: str, out: Path, begin: float) -> dict:
    """Run SUMO's tlsCycleAdaptation.py (the reference) and read the programs it writes."""
    subprocess.run(
        [
            sys.executable,
            bridge.sumo_tool("tlsCycleAdaptation.py"),
            "-n",
            str(net),
            "-r",
            routes,
            "-b",
            str(begin),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    return read_programs([out])


def band_by_brute_force(
    corridor: Sequence[CorridorSignal], wave: GreenWave, speed_ms: float, *, inbound: bool
) -> float:
    """The band of a wave on a time-space diagram, by brute force on a 0.01 s grid.

    A vehicle leaves the first signal it meets (the last one inbound) at each departure time
    of one cycle and drives at ``speed_ms``; it passes a signal if, on the signal's clock
    (shifted by its offset), it arrives within the green. The band is the longest run of
    departure times (around the cycle) that passes every signal.
    """
    step = 0.01
    departures = np.arange(round(wave.cycle / step)) * step
    start = corridor[-1].position_m if inbound else corridor[0].position_m
    ok = np.ones(len(departures), dtype=bool)
    for c in corridor:
        green_start, green = c.green_in if inbound else c.green_out
        arrival = departures + abs(c.position_m - start) / speed_ms
        into_green = (arrival - wave.offsets[c.id] - green_start) % wave.cycle
        ok &= into_green < green - 1e-9
    if ok.all():
        return wave.cycle
    ok = np.roll(ok, -int(np.argmin(ok)))  # start on a red: no run wraps around
    return max((len(list(g)) for v, g in itertools.groupby(ok) if v), default=0) * step


# --- the network's own signal-controlled turns, read with plain XML ---------------------------


def signal_turns(net: Path) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """(from edge, to edge) -> [(signal, link index)] of every signal-controlled connection."""
    turns: dict[tuple[str, str], list[tuple[str, int]]] = collections.defaultdict(list)
    for _, el in ET.iterparse(net):
        if el.tag == "connection" and el.get("tl"):
            key = (el.get("from", ""), el.get("to", ""))
            turns[key].append((el.get("tl", ""), int(el.get("linkIndex", "-1"))))
    return dict(turns)


def signal_ids(net: Path) -> list[str]:
    """The network's signals: one per traffic-light program it defines."""
    return list(
        dict.fromkeys(el.get("id", "") for _, el in ET.iterparse(net) if el.tag == "tlLogic")
    )


def signals_passed(turns: dict, route: Sequence[str]) -> list[tuple[int, str]]:
    """(position in the route, signal) of each signal-controlled turn the route makes."""
    return [
        (k, turns[a, b][0][0])
        for k, (a, b) in enumerate(itertools.pairwise(route))
        if (a, b) in turns
    ]


def held_signals(turns: dict, route: Sequence[str]) -> list[str]:
    """The signals a green corridor holds along a route: one hold per run of one signal."""
    return [tl for tl, _ in itertools.groupby(tl for _, tl in signals_passed(turns, route))]


# --- SUMO's outputs -------------------------------------------------------------------------


def vehicle_trace(fcd: Path, vehicle: str) -> list[tuple[float, str, float]]:
    """(time, lane, speed) of a vehicle at each step of SUMO's --fcd-output."""
    trace = []
    for _, el in ET.iterparse(fcd):
        if el.tag == "timestep":
            for v in el.iter("vehicle"):
                if v.get("id") == vehicle and v.get("lane"):
                    trace.append(
                        (float(el.get("time", "0")), v.get("lane", ""), float(v.get("speed", "0")))
                    )
            el.clear()
    return trace


def signal_states(path: Path) -> dict[tuple[str, float], tuple[str, str]]:
    """(signal, time) -> (program, state) from SUMO's SaveTLSStates output: the state in force
    from that time to the next step."""
    out = {}
    for _, el in ET.iterparse(path):
        if el.tag == "tlsState":
            out[el.get("id", ""), float(el.get("time", "0"))] = (
                el.get("programID", ""),
                el.get("state", ""),
            )
    return out


def crossings(
    route: Sequence[str],
    trace: Sequence[tuple[float, str, float]],
    states: dict[tuple[str, float], tuple[str, str]],
    net: Path,
) -> list[dict]:
    """What the vehicle met at each signal-controlled turn of its route, from SUMO's traces.

    Where the vehicle is: on a lane of a route edge, or inside the junction at that edge's end
    (an internal lane ``:<junction>_<i>_<j>``). It crosses the stop line of the turn at
    position ``k`` in the step after the last time it was at position ``k`` or before; the
    signal's state at that time is the one it crossed on. Also: how long it stood (speed below
    0.1 m/s, SUMO's halting) on the turn's road with its link not green.
    """
    root = ET.parse(net).getroot()
    ends = {e.get("id"): e.get("to") for e in root.iter("edge") if not e.get("function")}
    lanes_of: dict[tuple[str, str], dict[int, list[int]]] = collections.defaultdict(dict)
    for c in root.iter("connection"):
        if c.get("tl"):
            per_lane = lanes_of[c.get("from", ""), c.get("to", "")]
            per_lane.setdefault(int(c.get("fromLane", "0")), []).append(int(c.get("linkIndex")))
    where = []  # (time, position in the route, lane index on a route edge or None, speed)
    k = 0
    for time, lane, speed in trace:
        if lane.startswith(":"):  # inside the junction at the end of a route edge
            junction = lane.rsplit("_", 2)[0][1:]
            k = next(i for i in range(k, len(route)) if ends[route[i]] == junction)
            where.append((time, k + 0.5, None, speed))
        else:
            edge, index = lane.rsplit("_", 1)
            k = route.index(edge, k)
            where.append((time, float(k), int(index), speed))
    turns = signal_turns(net)
    out = []
    for k, tl in signals_passed(turns, route):
        a, b = route[k], route[k + 1]
        before = [w for w in where if w[1] <= k]
        assert before and len(before) < len(where), f"the vehicle never crossed {a} -> {b}"
        on_road = [w for w in before if w[1] == k]
        # the lane it came by (its last one on the road, if it was seen there)
        lane = on_road[-1][2] if on_road else None
        links = lanes_of[a, b].get(lane) if lane is not None else None
        links = links or sorted(i for per_lane in lanes_of[a, b].values() for i in per_lane)
        program, state = states[tl, before[-1][0]]
        stood = [
            w[0]
            for w in on_road
            if w[3] < 0.1
            and any(states[tl, w[0]][1][i] not in "Gg" for i in lanes_of[a, b].get(w[2], links))
        ]
        out.append(
            {
                "signal": tl,
                "turn": (a, b),
                "time_s": before[-1][0],
                "program": program,
                "links": [state[i] for i in links],
                "stood_at_red_s": len(stood),
            }
        )
    return out


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("base", ["network", "scenario"])
@pytest.mark.parametrize("begin", [0.0, 1800.0])
def test_webster_equals_tlsCycleAdaptation(name, base, begin, tmp_path):  # noqa: N802
    """On the same flows and settings, every phase of every signal equals the tool's plan."""
    sc = read_scenario(config(name))
    programs = read_programs(sc.programs) if base == "scenario" else {}
    net_file = bridge.net_with_programs(sc.net, programs, tmp_path / "base.net.xml")
    routes = ",".join(str(p) for p in sc.demand_files)
    reference = tool_plan(net_file, routes, tmp_path / "tool.add.xml", begin)

    net = sc.read_net()
    signals = signals_of(net, programs)
    flows = link_flows(net, signals, read_trips(sc.demand_files), begin=begin)
    ours = {}
    for sid, signal in signals.items():
        timing = webster(signal, flows[sid], WebsterSettings.sumo())
        if timing is not None:
            ours[sid] = [(p.duration, p.state) for p in timing.program.phases]
    # the tool times every signal of the network (each has a program and traffic), so do we
    assert set(ours) == set(reference) == set(signal_ids(sc.net))
    for sid, program in reference.items():
        assert ours[sid] == [(p.duration, p.state) for p in program.phases], sid


def test_stages_merge_phases_of_one_stage():
    """The city's UTOPIA programs write one stage as several phases; the twin times stages."""
    sc = read_scenario(config("acosta"))
    signal = signals_of(sc.read_net(), read_programs(sc.programs))["210"]
    phases = signal.program.phases
    staged = stages(signal.program, WebsterSettings())
    per_phase = stages(signal.program, WebsterSettings.sumo())
    assert 0 < len(staged) < len(per_phase)
    for stage in staged:
        assert all(phases[i].is_green for i in stage)
        assert stage == list(range(stage[0], stage[0] + len(stage)))
    timing = webster(
        signal, link_flows(sc.read_net(), {"210": signal}, read_trips(sc.routes))["210"]
    )
    assert timing is not None
    # the stage's phases keep their order and states; only durations change
    assert [p.state for p in timing.program.phases] == [p.state for p in phases]
    assert timing.cycle == pytest.approx(sum(p.duration for p in timing.program.phases))
    defaults = WebsterSettings()
    assert defaults.min_cycle_s <= timing.cycle <= defaults.max_cycle_s


def two_phase(sid: str, position: float) -> CorridorSignal:
    # main-street green the first half of a 60 s cycle, both directions
    return CorridorSignal(sid, position, (0.0, 30.0), (0.0, 30.0))


def assert_bands_measured(corridor: Sequence[CorridorSignal], wave: GreenWave, speed_ms: float):
    """The bands a wave reports are those of its offsets on a time-space diagram (0.01 s grid:
    each end of a band within a step)."""
    for inbound, reported in ((False, wave.bandwidth_out_s), (True, wave.bandwidth_in_s)):
        measured = band_by_brute_force(corridor, wave, speed_ms, inbound=inbound)
        assert reported == pytest.approx(measured, abs=0.02), (inbound, reported, measured)


def test_green_wave_alternating_offsets():
    """Travel time of half a cycle between equal signals: alternate offsets, full bands."""
    corridor = [two_phase(s, 300.0 * i) for i, s in enumerate("abcd")]
    wave = maxband(corridor, cycle=60, speed_ms=10)
    assert [wave.offsets[s] for s in "abcd"] == pytest.approx([0, 30, 0, 30])
    assert wave.bandwidth_out_s == pytest.approx(30)
    assert wave.bandwidth_in_s == pytest.approx(30)
    assert_bands_measured(corridor, wave, 10)


def test_green_wave_simultaneous_offsets():
    """Travel time of a whole cycle: every signal turns green together, full bands."""
    corridor = [two_phase(s, 600.0 * i) for i, s in enumerate("abc")]
    wave = maxband(corridor, cycle=60, speed_ms=10)
    assert [wave.offsets[s] for s in "abc"] == pytest.approx([0, 0, 0])
    assert wave.bandwidth_out_s == pytest.approx(30)
    assert wave.bandwidth_in_s == pytest.approx(30)
    assert_bands_measured(corridor, wave, 10)


def test_one_way_progression_offsets_are_travel_times():
    """A one-way wave: each offset is the travel time from the first signal, modulo the cycle."""
    positions = [0.0, 250.0, 420.0, 800.0]
    corridor = [
        CorridorSignal(f"s{i}", x, (0.0, 25.0), (0.0, 25.0)) for i, x in enumerate(positions)
    ]
    wave = maxband(corridor, cycle=80, speed_ms=12.5, weight_in=0.0)
    expected = [(x / 12.5) % 80 for x in positions]
    assert [wave.offsets[c.id] for c in corridor] == pytest.approx(expected)
    assert wave.bandwidth_out_s == pytest.approx(25)
    assert_bands_measured(corridor, wave, 12.5)


def test_two_way_wave_trades_bands_by_weight():
    """Unequal spacing: no full two-way band; the heavier direction gets the wider band."""
    corridor = [
        CorridorSignal("a", 0, (0.0, 30.0), (0.0, 30.0)),
        CorridorSignal("b", 200, (0.0, 30.0), (0.0, 30.0)),
        CorridorSignal("c", 650, (0.0, 30.0), (0.0, 30.0)),
    ]
    heavy_out = maxband(corridor, cycle=60, speed_ms=10, weight_in=0.5)
    heavy_in = maxband(corridor, cycle=60, speed_ms=10, weight_in=2.0)
    assert heavy_out.bandwidth_out_s >= heavy_out.bandwidth_in_s
    assert heavy_in.bandwidth_in_s >= heavy_in.bandwidth_out_s
    assert heavy_out.bandwidth_out_s + heavy_out.bandwidth_in_s < 60
    assert_bands_measured(corridor, heavy_out, 10)
    assert_bands_measured(corridor, heavy_in, 10)


def test_plan_loads_in_sumo(tmp_path):
    """A written plan is a valid SUMO additional file: SUMO runs with it and uses it."""
    sc = read_scenario(config("pasubio"))
    net = sc.read_net()
    signals = signals_of(net, read_programs(sc.programs))
    flows = link_flows(net, signals, read_trips(sc.demand_files))
    plan = optimise(signals, flows)
    path = write_additional(plan.timings.values(), tmp_path / "plan.add.xml", program_id="twin")
    assert read_programs([path]).keys() == plan.timings.keys()
    done = subprocess.run(
        [bridge.sumo_binary("sumo"), "-n", str(sc.net), "-a", str(path), "--end", "30"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr


def test_evaluate_end_to_end(tmp_path):
    """The one command runs every variant and the emergency corridor on a real scenario."""
    sc = read_scenario(config("acosta"))
    turns = signal_turns(sc.net)
    trips = read_trips(sc.routes)
    route = max(trips, key=lambda t: len(held_signals(turns, t.edges))).edges
    out = tmp_path / "result.json"
    seeds, end = 2, 600
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "twin"),
            "signals",
            "evaluate",
            str(config("acosta")),
            "--seeds",
            str(seeds),
            "--end",
            str(end),
            "--json",
            str(out),
            "--emergency",
            ",".join(route),
            "--emergency-depart",
            "150",
            "--workdir",
            str(tmp_path / "sumo"),
        ],
        capture_output=True,
        text=True,
        timeout=EVALUATE_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    runs = len(VARIANTS) * seeds
    assert f"[{runs}/{runs}]" in done.stderr  # progress: every variant under every seed
    result = json.loads(out.read_text())
    assert set(result["summary"]) == set(VARIANTS)
    assert len(result["runs"]) == runs
    for variant, metrics in result["summary"].items():
        loss = metrics["time_loss_s"]
        assert loss["low"] <= loss["mean"] <= loss["high"], variant
        assert loss["mean"] > 0
    # each run's figures are SUMO's own statistics of the run (its statistic-output)
    compared = 0
    for r in result["runs"]:
        stats = ET.parse(
            tmp_path / "sumo" / f"{r['variant'].replace('+', '_')}-{r['seed']}.stats.xml"
        )
        vehicles = stats.getroot().find("vehicles")
        trips = stats.getroot().find("vehicleTripStatistics")
        assert vehicles is not None and trips is not None
        assert r["vehicles"] == int(vehicles.get("inserted")) == int(trips.get("count")) > 0
        # SUMO writes its means with two decimals
        assert r["time_loss_s"] == pytest.approx(float(trips.get("timeLoss")), abs=0.006)
        assert r["waiting_s"] == pytest.approx(float(trips.get("waitingTime")), abs=0.006)
        assert r["depart_delay_s"] == pytest.approx(float(trips.get("departDelay")), abs=0.006)
        compared += 1
    assert compared == runs
    emergency = result["emergency"]
    assert emergency["route"] == list(route)
    assert [h["signal"] for h in emergency["holds"]] == held_signals(turns, route)
    assert emergency["travel_time_with_s"] < emergency["travel_time_without_s"]
    assert len(emergency["seeds"]) == seeds
    assert all(s["travel_time_with_s"] > 0 for s in emergency["seeds"])


def test_emergency_vehicle_meets_green_at_every_held_signal(tmp_path):
    """The green corridor in SUMO, checked on SUMO's own traces: where the emergency vehicle
    is each step (--fcd-output) and every signal's state each step (SaveTLSStates)."""
    sc = read_scenario(config("acosta"))
    scenario_files = sorted(sc.config.parent.iterdir())
    turns = signal_turns(sc.net)
    route = max((t.edges for t in read_trips(sc.routes)), key=lambda e: len(held_signals(turns, e)))
    held = held_signals(turns, route)
    recorder = tmp_path / "states.add.xml"  # every signal's state, every step
    recorder.write_text(
        '<additional><timedEvent type="SaveTLSStates" dest="tls-states.xml"/></additional>'
    )
    met = {}
    for corridor in (False, True):
        fcd = tmp_path / f"fcd-{corridor}.xml"
        result = run_corridor(
            sc,
            sc.net,
            [*sc.additional, *sc.programs, recorder],
            route,
            seed=1,
            depart=100,
            corridor=corridor,
            end=500,  # the vehicle crosses acosta in about 200 s with the corridor, 270 without
            workdir=tmp_path,
            options=["--fcd-output", str(fcd), "--device.fcd.explicit", EMERGENCY],
            timeout_s=TIMEOUT_S,
        )
        # the run's outputs are written beside its other outputs (em-<on|off>-<seed>.*)
        (record,) = tmp_path.glob(f"em-{'on' if corridor else 'off'}-1.*tls-states.xml")
        met[corridor] = crossings(
            route, vehicle_trace(fcd, EMERGENCY), signal_states(record), sc.net
        )
        assert result["travel_time_s"] > 0
    assert [h["signal"] for h in result["holds"]] == held
    with_corridor = met[True]
    # every signal-controlled turn of the route was crossed, each held signal at least once
    assert len(with_corridor) == len(signals_passed(turns, route))
    assert [tl for tl, _ in itertools.groupby(c["signal"] for c in with_corridor)] == held
    checked = 0
    for c in with_corridor:
        assert all(s in "Gg" for s in c["links"]), c
        # the state is the corridor's: set through TraCI (SUMO names that program "online")
        assert c["program"] == "online", c
        assert c["stood_at_red_s"] == 0, c
        checked += 1
    assert checked == len(signals_passed(turns, route)) >= len(held) >= 2
    # Without the corridor the same vehicle runs on the signals' plans and, on this route,
    # stands at a red: what the checks above rule out is not impossible here.
    plans = {p.id for p in read_programs(sc.programs).values()}
    assert all(c["program"] in plans for c in met[False])
    assert sum(c["stood_at_red_s"] for c in met[False]) > 0
    # the outputs the scenario's detectors declare went beside the run's, not into its folder
    assert sorted(sc.config.parent.iterdir()) == scenario_files
    assert len(list(tmp_path.glob("em-*-1.e1_output.xml"))) == 2


def test_sumo_runs_that_hang_are_stopped(tmp_path):
    """A SUMO run or tool that overruns its time is stopped with an error saying so."""
    with pytest.raises(SignalError, match="did not finish within 1 s and was stopped"):
        bridge.run_process(["sleep", "30"], timeout_s=1, what="sleep")
    sc = read_scenario(config("acosta"))
    setup = Setup(sc.net, sc.programs)
    # a whole hour of traffic cannot run in a tenth of a second
    with pytest.raises(SignalError, match=r"\(scenario, seed 1\) did not finish within 0.1 s"):
        simulate(sc, setup, variant="scenario", seed=1, workdir=tmp_path, timeout_s=0.1)
    with pytest.raises(SignalError, match=r"\(em-on-1\) did not finish within 0.1 s"):
        run_corridor(
            sc,
            sc.net,
            [*sc.additional, *sc.programs],
            ["85", "72[0]"],
            seed=1,
            depart=0,
            corridor=True,
            end=3600,
            workdir=tmp_path,
            timeout_s=0.1,
        )


def test_bad_scenarios_name_what_is_missing(tmp_path):
    with pytest.raises(SignalError, match="does not exist"):
        read_scenario(tmp_path / "nowhere.sumocfg")
    broken = tmp_path / "broken.sumocfg"
    broken.write_text("<configuration><input>")
    with pytest.raises(SignalError, match="not XML"):
        read_scenario(broken)
    no_net = tmp_path / "no_net.sumocfg"
    no_net.write_text(
        '<configuration><input><route-files value="a.rou.xml"/></input></configuration>'
    )
    with pytest.raises(SignalError, match="names no network"):
        read_scenario(no_net)
    missing = tmp_path / "missing.sumocfg"
    missing.write_text(
        '<configuration><input><net-file value="gone.net.xml"/></input></configuration>'
    )
    with pytest.raises(SignalError, match=r"gone\.net\.xml does not exist"):
        read_scenario(missing)
    (tmp_path / "garbage.net.xml").write_text("<net><edge id=")
    (tmp_path / "some.rou.xml").write_text("<routes/>")
    garbage = tmp_path / "garbage.sumocfg"
    garbage.write_text(
        '<configuration><input><net-file value="garbage.net.xml"/>'
        '<route-files value="some.rou.xml"/></input></configuration>'
    )
    with pytest.raises(SignalError, match=r"garbage\.net\.xml cannot be read"):
        read_scenario(garbage).read_net()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "twin"), "signals", "optimise", str(garbage)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 2
    assert "cannot be read" in done.stderr
    done = subprocess.run(
        [str(Path(sys.executable).parent / "twin"), "signals", "evaluate", str(missing)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 2
    assert "gone.net.xml does not exist" in done.stderr


def test_signals_without_approach_data_are_named():
    sc = read_scenario(config("acosta"))
    signals = signals_of(sc.read_net())
    with pytest.raises(SignalError, match=r"without approach data.*209") as caught:
        optimise(signals, {})
    assert caught.value.parameter == "signals"


def test_disconnected_corridor_is_refused():
    sc = read_scenario(config("acosta"))
    net = sc.read_net()
    signals = signals_of(net)
    with pytest.raises(SignalError, match="not connected: 85 does not lead to 209"):
        plan_corridor(net, signals, ["85", "209"])
    with pytest.raises(SignalError, match="edge nowhere is not in the network"):
        plan_corridor(net, signals, ["85", "nowhere"])
