"""Signal timing checked against SUMO's own tools and in SUMO itself (real Bologna scenarios)."""

from __future__ import annotations

import collections
import gzip
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
from routing.signals.evaluation import Setup, evaluate, simulate
from routing.signals.plans import optimise_scenario
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
    seeds, end = 2, 800  # the emergency vehicle, departing at 150 s, arrives before 700 s
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


# --- any scenario a traffic engineer hands over (issue 17, items 5 and 6) --------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (recursively) with its contents."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def trips_scenario(folder: Path, *, end: int = 300) -> Path:
    """A copy of acosta whose demand is trips and flows without routes (SUMO routes them at
    insertion), gzipped in part, no additional file at all, and outputs in its configuration.
    """
    sc = read_scenario(config("acosta"))
    folder.mkdir()
    (folder / "acosta.net.xml").write_bytes(sc.net.read_bytes())
    routed = [t for t in read_trips(sc.routes) if t.depart < end and len(t.edges) >= 3][:150]
    lines = ["<routes>"]
    for k, t in enumerate(routed):
        via = f' via="{t.edges[1]}"' if k % 5 == 0 else ""
        lines.append(
            f'  <trip id="t{k}" depart="{t.depart:.2f}" from="{t.edges[0]}" to="{t.edges[-1]}"'
            f"{via}/>"
        )
    lines.append("</routes>\n")
    import gzip

    with gzip.open(folder / "trips.rou.xml.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines))
    first = routed[0].edges
    net = sc.read_net()
    a = net.getEdge(first[0]).getFromNode().getID()
    b = net.getEdge(first[-1]).getToNode().getID()
    (folder / "flows.rou.xml").write_text(
        "<routes>\n"
        f'  <flow id="f" begin="0" end="{end}" number="20" from="{first[0]}" to="{first[-1]}"/>\n'
        f'  <trip id="j" depart="10" fromJunction="{a}" toJunction="{b}"/>\n'
        "</routes>\n"
    )
    cfg = folder / "run.sumocfg"
    cfg.write_text(
        "<configuration>\n"
        '  <input><net-file value="acosta.net.xml"/>'
        '<route-files value="trips.rou.xml.gz,flows.rou.xml"/></input>\n'
        f'  <time><begin value="0"/><end value="{end}"/></time>\n'
        '  <routing><junction-taz value="true"/></routing>\n'
        '  <output><summary-output value="summary.xml"/><queue-output value="queues.xml"/>'
        '<tripinfo-output value="tripinfos.xml"/></output>\n'
        '  <report><log value="sumo.log"/><message-log value="messages.log"/></report>\n'
        "</configuration>\n"
    )
    return cfg


def test_trips_flows_without_additionals_in_a_folder_left_untouched(tmp_path: Path) -> None:
    """Trips and flows (gzipped, via, fromJunction) are routed by duarouter into the work
    folder and counted; a scenario with no additional file runs in every variant; everything
    SUMO writes (the configuration's own outputs too) goes to the work folder, one file per run.
    """
    from routing.signals.evaluation import evaluate

    cfg = trips_scenario(tmp_path / "scenario")
    before = snapshot(cfg.parent)
    sc = read_scenario(cfg)
    assert sc.additional == () and sc.programs == ()
    assert bridge.unrouted(sc.demand_files) == 150 + 2  # 150 trips, one flow, one junction trip
    assert read_trips(sc.demand_files) == []  # as SUMO's tools read them: nothing routed
    work = tmp_path / "work"
    variants = ("scenario", "network", "tlsCycleAdaptation", "webster")
    result = evaluate(cfg, seeds=1, variants=variants, end=300, workdir=work, jobs=2)
    # routed once, into the work folder: every trip, the flow's 20 vehicles, the junction trip
    (routed,) = work.glob("*.routed.rou.xml")
    trips = read_trips([routed])
    assert len(trips) == 150 + 20 + 1
    assert all(len(t.edges) >= 2 for t in trips)
    assert not result.notes  # SUMO's tool and the twin's Webster both timed the signals
    assert {r.variant for r in result.runs} == set(variants)
    for r in result.runs:
        assert r.vehicles > 0, r
        # the configuration's own outputs were written beside the run's, one set per run
        for name in ("summary.xml", "queues.xml", "messages.log"):
            assert (work / f"{r.variant}-1.{name}").stat().st_size > 0
    assert snapshot(cfg.parent) == before


def test_read_trips_gzipped_and_redirected_gzipped_additionals(tmp_path: Path) -> None:
    import gzip

    add = tmp_path / "edges.add.xml.gz"
    with gzip.open(add, "wt") as f:
        f.write('<additional><edgeData id="e" freq="60" file="edges.out.xml"/></additional>')
    copy = bridge.redirect_outputs(add, tmp_path / "run-1")
    assert copy == tmp_path / "run-1.edges.add.xml"
    el = ET.parse(copy).getroot().find("edgeData")
    assert el is not None and el.get("file") == f"{tmp_path / 'run-1'}.edges.out.xml"
    sc = read_scenario(config("acosta"))
    gz = tmp_path / "acosta.rou.xml.gz"
    gz.write_bytes(gzip.compress(sc.routes[0].read_bytes()))
    assert read_trips([gz]) == read_trips([sc.routes[0]])


def test_a_short_period_counts_hourly_flows_within_begin_and_end() -> None:
    """20 minutes of demand counted within [begin, end) give the hourly flow (x3, not SUMO's
    tool's x1.67); the peak hour is never sought outside the simulated period."""
    sc = read_scenario(config("acosta"))
    net = sc.read_net()
    signals = signals_of(net)
    first = [t for t in read_trips(sc.routes) if 600 <= t.depart < 1800]
    # a demand that repeats every 20 minutes: its hourly flow is what any 20 minutes count x3
    periodic = [
        bridge.Trip(t.depart + shift, t.type, t.edges, t.vclass)
        for shift in (0.0, 1200.0, 2400.0)
        for t in first
    ]
    hour = link_flows(net, signals, periodic, begin=600, end=4200)
    third = link_flows(net, signals, periodic, begin=600, end=1800)
    compared = 0
    for sid, flows in hour.items():
        for index, flow in flows.items():
            assert third[sid].get(index, 0.0) == pytest.approx(flow), (sid, index)
            compared += flow > 0
    assert compared > 20
    total_third = sum(sum(f.values()) for f in third.values())
    # SUMO's tool's scaling: only the first 20 minutes of demand, scaled by 1 + 40/60
    only_third = [t for t in periodic if t.depart < 1800]
    tool = link_flows(net, signals, only_third, begin=600)
    assert sum(sum(f.values()) for f in tool.values()) == pytest.approx(
        total_third * (1 + 2399 / 3600) / 3, rel=0.01
    )
    # the busiest hour lies within the period, and starts at its begin when it is shorter
    trips = read_trips(sc.routes)
    assert bridge.peak_hour(trips, begin=1800, end=2400) == 1800
    start = bridge.peak_hour(trips, begin=300, end=5000)
    assert 300 <= start <= 5000 - 3600
    assert sc.window(1200) == (0.0, 1200.0)


def test_a_peer_without_a_plan_is_reported_and_not_run(tmp_path: Path) -> None:
    """A tool that writes no program, and a Webster with no flow at any signal, are 'no plan':
    their runs are not made and the table and JSON say so."""
    from routing.signals.evaluation import evaluate

    sc = read_scenario(config("acosta"))
    net = sc.read_net()
    lonely = next(e for e in net.getEdges() if e.getToNode().getType() == "priority")
    folder = tmp_path / "scenario"
    folder.mkdir()
    (folder / "one.rou.xml").write_text(
        f'<routes><vehicle id="v" depart="0"><route edges="{lonely.getID()}"/></vehicle></routes>'
    )
    cfg = folder / "run.sumocfg"
    cfg.write_text(
        f'<configuration><input><net-file value="{sc.net}"/>'
        '<route-files value="one.rou.xml"/></input></configuration>'
    )
    variants = ("network", "tlsCycleAdaptation", "tlsCoordinator", "webster")
    result = evaluate(cfg, seeds=1, variants=variants, end=60, workdir=tmp_path / "w", jobs=1)
    # the one vehicle never gets in within 60 s: the network's run measured nothing, and says
    # so instead of a row of 0.0s (see test_evaluation_where_no_vehicle_ran_says_so)
    assert result.runs == []
    assert set(result.notes) == {"network", "tlsCycleAdaptation", "tlsCoordinator", "webster"}
    assert result.notes["network"].startswith("no vehicle ran")
    peers = {v: n for v, n in result.notes.items() if v != "network"}
    assert all(n.startswith("no plan: ") for n in peers.values())
    table = result.table()
    for variant in peers:
        assert f"{variant:<20}  no plan: " in table
    js = result.to_json()
    assert js["notes"] == result.notes and js["summary"] == {}


def test_a_plan_predicted_worse_keeps_the_base_program_and_worse_variants_are_flagged() -> None:
    """optimise keeps a signal's base program where HCM predicts it better than Webster's, and
    says so; Evaluation flags a variant with more time loss than the scenario's programs."""
    from routing.signals.evaluation import Evaluation, Run
    from routing.signals.model import Signal
    from routing.signals.webster import predicted_delay

    sc = read_scenario(config("acosta"))
    net = sc.read_net()
    signals = signals_of(net, read_programs(sc.programs))
    flows = link_flows(net, signals, read_trips(sc.demand_files))
    # the delay predicted for a program as it stands is the one Webster predicted for it
    first = optimise(signals, flows, keep_better_base=False)
    timed = {
        sid: Signal(s.id, s.links, first.timings[sid].program, s.active)
        for sid, s in signals.items()
        if sid in first.timings
    }
    for sid, s in timed.items():
        t = first.timings[sid]
        assert predicted_delay(s, flows[sid]) == pytest.approx((t.delay_s, t.degree_of_saturation))

    def scaled(factor: float) -> dict[str, Signal]:
        """Each signal with its Webster program, every green lasting ``factor`` times as long."""
        return {
            sid: Signal(
                s.id,
                s.links,
                s.program.with_durations(
                    {
                        i: max(1.0, float(round(p.duration * factor)))
                        for i, p in enumerate(s.program.phases)
                        if p.is_green
                    }
                ),
                s.active,
            )
            for sid, s in timed.items()
        }

    # greens a third as long: less capacity, predicted worse wherever Webster's timing is
    # under capacity, and Webster's replaces it
    shorter = scaled(1 / 3)
    short = optimise(shorter, flows)
    replaced = [sid for sid in shorter if sid not in short.kept]
    assert len(replaced) >= len(shorter) - 1
    for sid in replaced:
        assert short.timings[sid].program != shorter[sid].program
    for sid in short.kept:
        timing = webster(shorter[sid], flows[sid])
        assert timing is not None and timing.degree_of_saturation > 1
    # three times as long: over capacity (acosta's busiest signals) the longer cycle's capacity
    # is predicted to delay less than Webster's cycle; the base program is kept, and said so
    long = scaled(3)
    plan = optimise(long, flows)
    assert plan.kept
    for sid, why in plan.kept.items():
        assert why.startswith("kept: base predicted better")
        assert plan.timings[sid].program == long[sid].program
        assert plan.timings[sid].delay_s == pytest.approx(predicted_delay(long[sid], flows[sid])[0])
        timing = webster(long[sid], flows[sid])
        assert timing is not None and plan.timings[sid].delay_s < timing.delay_s
    # Evaluation: a variant worse than the scenario's programs is flagged in table and JSON
    ev = Evaluation("x", "scenario", [1], None)
    ev.runs = [
        Run("scenario", 1, 10, 100.0, 1, 1, 1, 0, 0),
        Run("webster", 1, 10, 130.0, 1, 1, 1, 0, 0),
        Run("tlsCycleAdaptation", 1, 10, 90.0, 1, 1, 1, 0, 0),
    ]
    assert ev.worse() == {"webster": pytest.approx(1.3)}
    assert "WORSE than scenario x1.30" in ev.table().splitlines()[2]
    assert "WORSE" not in ev.table().splitlines()[3]
    assert ev.to_json()["worse_than_scenario"] == {"webster": pytest.approx(1.3)}


def test_a_scenario_whose_only_additionals_are_programs_runs_in_every_variant(
    tmp_path: Path,
) -> None:
    """The network's programs run without the scenario's (SUMO gets an empty additional file
    in place of the list, which it would refuse empty)."""
    from routing.signals.evaluation import evaluate

    sc = read_scenario(config("pasubio"))
    folder = tmp_path / "scenario"
    folder.mkdir()
    (tls,) = sc.programs
    # vehicle types as route-file content; the cars (the buses need the stops' additional)
    vtypes = next(p for p in sc.additional if p.name.endswith("vtypes.add.xml"))
    cars = next(p for p in sc.routes if "bus" not in p.name)
    cfg = folder / "run.sumocfg"
    cfg.write_text(
        f'<configuration><input><net-file value="{sc.net}"/>'
        f'<route-files value="{vtypes},{cars}"/>'
        f'<additional-files value="{tls}"/></input></configuration>'
    )
    scenario = read_scenario(cfg)
    assert scenario.additional == () and scenario.programs == (tls,)
    work = tmp_path / "w"
    result = evaluate(cfg, seeds=1, variants=("scenario", "network"), end=120, workdir=work)
    assert {r.variant for r in result.runs} == {"scenario", "network"}
    assert all(r.vehicles > 0 for r in result.runs)
    assert (work / "network-1.none.add.xml").read_text().strip() == "<additional/>"
    assert not (work / "scenario-1.none.add.xml").exists()


def test_actuated_programs_are_not_replaced_by_fixed_time(tmp_path):
    """Hamburg runs 40 of its 43 signals actuated: Webster leaves those as they run, and says so."""
    sc = read_scenario(Path(BOLOGNA).parent / "hamburg" / "tavf" / "run_simulation.sumocfg")
    with gzip.open(sc.net) as fh:
        net = ET.parse(fh).getroot()
    kinds = {logic.get("id"): logic.get("type", "static") for logic in net.iter("tlLogic")}
    plan = optimise_scenario(sc, base="scenario")
    actuated = {sid for sid, kind in kinds.items() if kind != "static"}
    assert actuated and len(actuated) < len(kinds)
    assert not actuated & set(plan.timings)
    assert all("actuated program" in plan.kept[sid] for sid in actuated)
    path = write_additional(plan.timings.values(), tmp_path / "plan.add.xml", program_id="twin")
    written = {logic.get("id") for logic in ET.parse(path).getroot().iter("tlLogic")}
    assert written == set(plan.timings) and written <= set(kinds) - actuated


# --- fixB: an evaluation that cannot measure anything says so instead of a table of zeros -----


def test_evaluation_where_no_vehicle_ran_says_so(tmp_path):
    from routing.signals.evaluation import evaluate as evaluate_plans
    from tests.routing.test_phasing import grid_scenario

    config = grid_scenario(tmp_path, tls="static")
    (tmp_path / "g.rou.xml").write_text(  # the only flow starts after the horizon
        '<routes><flow id="f" begin="200" end="300" from="A0A1" to="C1C2" '
        'vehsPerHour="600"/></routes>'
    )
    result = evaluate_plans(config, seeds=1, end=100, variants=("scenario", "adaptive"))
    assert result.runs == [] and result.summary() == {}
    assert set(result.notes) == {"scenario", "adaptive"}
    assert all(note.startswith("no vehicle ran") for note in result.notes.values())
    rows = result.table().splitlines()[1:]
    assert len(rows) == 2 and all("no vehicle ran" in row and "0.0" not in row for row in rows)


def test_emergency_under_a_variant_without_a_plan_is_refused(tmp_path):
    """Every program actuated: the phase design writes none, so no corridor can run on it."""
    from routing.signals.evaluation import evaluate as evaluate_plans
    from tests.routing.test_phasing import grid_scenario

    config = grid_scenario(tmp_path / "grid", tls="actuated")
    with pytest.raises(
        SignalError, match="'phased' wrote no plan; the corridor cannot run on it"
    ) as e:
        evaluate_plans(
            config,
            seeds=1,
            end=100,
            variants=("actuated", "phased"),
            emergency=["A0A1", "C1C2"],
            emergency_under="phased",
            workdir=tmp_path / "w",
        )
    assert e.value.parameter == "emergency_under"
    assert not list((tmp_path / "w").glob("*.tripinfo.xml"))  # refused before any run


def test_a_failed_tools_note_quotes_the_exception_not_the_carets():
    from routing.signals.evaluation import exception_line

    failed = subprocess.run(
        [sys.executable, "-c", "def f(a):\n    return a[0][1]\nf([[]])"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1 and "Traceback" in failed.stderr
    assert exception_line(failed.stderr) == "IndexError: list index out of range"
    assert exception_line("  ~~~~^^^\n") == ""


def test_a_corridor_that_cannot_finish_keeps_the_plans_figures(tmp_path):
    """An emergency vehicle still driving at the end is an error of the corridor, not of the runs."""
    sc = read_scenario(config("acosta"))
    turns = signal_turns(sc.net)
    route = max(read_trips(sc.routes), key=lambda t: len(held_signals(turns, t.edges))).edges
    result = evaluate(
        config("acosta"),
        seeds=1,
        variants=("scenario",),
        end=200,
        emergency=list(route),
        emergency_depart=150,
        workdir=tmp_path,
    )
    assert [r.variant for r in result.runs] == ["scenario"] and result.runs[0].vehicles > 0
    assert result.emergency is not None and result.emergency["variant"] == "scenario"
    assert "did not arrive" in result.emergency["error"] and result.emergency["parameter"] == "end"
    assert json.loads(json.dumps(result.to_json()))["emergency"]["error"]
