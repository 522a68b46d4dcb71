"""Signal timing checked against SUMO's own tools and in SUMO itself (real Bologna scenarios)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from routing.signals import (
    CorridorSignal,
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
from routing.signals.webster import stages

BOLOGNA = Path(__file__).resolve().parents[3] / "shared" / "data" / "bologna"
SCENARIOS = ["acosta", "pasubio"]


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
    )
    return read_programs([out])


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
    assert set(ours) == set(reference)
    assert len(ours) >= 7
    for sid, program in reference.items():
        assert ours[sid] == [(p.duration, p.state) for p in program.phases], sid


def test_stages_merge_phases_of_one_stage():
    """The city's UTOPIA programs write one stage as several phases; the twin times stages."""
    sc = read_scenario(config("acosta"))
    signal = signals_of(sc.read_net(), read_programs(sc.programs))["210"]
    phases = signal.program.phases
    staged = stages(signal.program, WebsterSettings())
    per_phase = stages(signal.program, WebsterSettings.sumo())
    assert len(staged) < len(per_phase)
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
    assert 40 <= timing.cycle <= 120


def two_phase(sid: str, position: float) -> CorridorSignal:
    # main-street green the first half of a 60 s cycle, both directions
    return CorridorSignal(sid, position, (0.0, 30.0), (0.0, 30.0))


def test_green_wave_alternating_offsets():
    """Travel time of half a cycle between equal signals: alternate offsets, full bands."""
    wave = maxband([two_phase(s, 300.0 * i) for i, s in enumerate("abcd")], cycle=60, speed_ms=10)
    assert [wave.offsets[s] for s in "abcd"] == pytest.approx([0, 30, 0, 30])
    assert wave.bandwidth_out_s == pytest.approx(30)
    assert wave.bandwidth_in_s == pytest.approx(30)


def test_green_wave_simultaneous_offsets():
    """Travel time of a whole cycle: every signal turns green together, full bands."""
    wave = maxband([two_phase(s, 600.0 * i) for i, s in enumerate("abc")], cycle=60, speed_ms=10)
    assert [wave.offsets[s] for s in "abc"] == pytest.approx([0, 0, 0])
    assert wave.bandwidth_out_s == pytest.approx(30)
    assert wave.bandwidth_in_s == pytest.approx(30)


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
    )
    assert done.returncode == 0, done.stderr


def test_evaluate_end_to_end(tmp_path):
    """The one command runs every variant and the emergency corridor on a real scenario."""
    sc = read_scenario(config("acosta"))
    net = sc.read_net()
    signals = signals_of(net, read_programs(sc.programs))
    trips = read_trips(sc.routes)
    route = max(trips, key=lambda t: len(plan_corridor(net, signals, t.edges))).edges
    out = tmp_path / "result.json"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "twin"),
            "signals",
            "evaluate",
            str(config("acosta")),
            "--seeds",
            "2",
            "--end",
            "600",
            "--json",
            str(out),
            "--emergency",
            ",".join(route),
            "--emergency-depart",
            "150",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "[12/12]" in done.stderr  # progress: 6 variants x 2 seeds
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {
        "scenario",
        "network",
        "tlsCycleAdaptation",
        "tlsCoordinator",
        "webster",
        "webster+greenwave",
    }
    assert len(result["runs"]) == 12
    for variant, metrics in result["summary"].items():
        loss = metrics["time_loss_s"]
        assert loss["low"] <= loss["mean"] <= loss["high"], variant
        assert loss["mean"] > 0
    assert all(r["vehicles"] > 500 for r in result["runs"])
    emergency = result["emergency"]
    assert len(emergency["holds"]) >= 5
    assert emergency["travel_time_with_s"] < emergency["travel_time_without_s"]
    assert all(s["travel_time_with_s"] > 0 for s in emergency["seeds"])


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
    )
    assert done.returncode == 2
    assert "cannot be read" in done.stderr
    done = subprocess.run(
        [str(Path(sys.executable).parent / "twin"), "signals", "evaluate", str(missing)],
        capture_output=True,
        text=True,
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
