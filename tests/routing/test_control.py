"""Closed-loop signal control in real SUMO runs (Bologna acosta): controllers, head, checker."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import math
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sumolib
import traci

from routing.signals import SignalError
from routing.signals import sumo as bridge
from routing.signals.control import (
    ControlledSignal,
    Decision,
    Measurements,
    SafetyRules,
    SignalHead,
    control_signals,
)
from routing.signals.control.actuated import Actuated, actuated_programs, merge_repeats
from routing.signals.control.base import change_intervals, link_yellow, pedestrian_minimum
from routing.signals.control.maxpressure import MaxPressure, stage_pressures
from routing.signals.control.runner import (
    ControllerFactory,
    decision_time,
    run_controlled,
    states_additional,
)
from routing.signals.control.safety import check_states, foes
from routing.signals.evaluation import Setup, simulate
from routing.signals.model import Link, Phase, Program, Signal

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ACOSTA = DATA / "bologna" / "acosta"
HAMBURG = DATA / "hamburg" / "tavf" / "run_simulation.sumocfg"
END = 600.0  # ten minutes of traffic: a run takes a few seconds
TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def scenario() -> bridge.Scenario:
    return bridge.read_scenario(ACOSTA / "run.sumocfg")


@pytest.fixture(scope="module")
def signals(scenario: bridge.Scenario) -> dict[str, ControlledSignal]:
    net = scenario.read_net()
    programs = bridge.read_programs(scenario.programs)
    return control_signals(net, bridge.signals_of(net, programs), rules=SafetyRules())


# --- a hand-built crossroads: two stages, links 0/1 north-south, 2/3 east-west ---------------


def crossroads(*, all_red: float = 2.0, rules: SafetyRules | None = None) -> ControlledSignal:
    phases = [
        Phase(30.0, "GGrr"),
        Phase(4.0, "yyrr"),
        Phase(all_red, "rrrr"),
        Phase(30.0, "rrGG"),
        Phase(4.0, "rryy"),
        Phase(all_red, "rrrr"),
    ]
    program = Program("p", tuple(p for p in phases if p.duration > 0))
    links = {
        0: Link(0, "n", "s", 0),
        1: Link(1, "s", "n", 0),
        2: Link(2, "e", "w", 0, "l"),
        3: Link(3, "w", "e", 0),
    }
    signal = Signal("x", links, program, frozenset(links))
    from routing.signals.control.base import stages_of

    stages = stages_of(program, rules=rules or SafetyRules())
    return ControlledSignal(
        signal,
        stages,
        in_lanes=("e_0", "n_0", "s_0", "w_0"),
        out_lanes=("e_out", "n_out", "s_out", "w_out"),
        link_in=(1, 2, 0, 3),
        link_out=(2, 1, 3, 0),
        saturation_flow=(0.5, 0.5, 0.5 * 0.95, 0.5),
    )


def measurements(queue: list[float], out: list[float]) -> Measurements:
    return Measurements(
        queue=np.array(queue, dtype=float),
        count=np.array(queue, dtype=float),
        gap_s=np.full(len(queue), 1e9),
        out_count=np.array(out, dtype=float),
        bus_eta_s={},
    )


class Always:
    """Asks for one stage every step."""

    def __init__(self, stage: int) -> None:
        self.stage = stage
        self.name = f"always-{stage}"

    def reset(self, signal: ControlledSignal) -> None:
        pass

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        return Decision(self.stage, "test")


def drive_head(head: SignalHead, steps: int, m: Measurements) -> list[str]:
    """The state shown in each 1 s step."""
    shown: list[str] = []
    for t in range(steps):
        state = head.step(float(t), 1.0, m)
        shown.append(state if state is not None else shown[-1])
    return shown


def test_max_pressure_picks_the_textbook_stage() -> None:
    signal = crossroads()
    # north-south queues 10 and 8, both exits free; east-west queues 3 and 4 into a full exit
    m = measurements([3, 10, 8, 4], [6, 0, 0, 6])
    pressure = stage_pressures(signal, m)
    # Varaiya 2013 eq. 5 by hand: sum over green links of s * (q_in - q_out)
    assert pressure[0] == pytest.approx(0.5 * (10 - 0) + 0.5 * (8 - 0))
    assert pressure[1] == pytest.approx(0.5 * 0.95 * (3 - 6) + 0.5 * (4 - 6))
    controller = MaxPressure()
    assert controller.decide(0.0, signal, 1, 10.0, m) == Decision(0, "pressure")
    # the other way round: east-west loaded
    m = measurements([12, 1, 0, 9], [0, 0, 5, 0])
    assert controller.decide(0.0, signal, 0, 10.0, m).stage == 1
    # a tie keeps the current stage (no needless change interval) ...
    tie = measurements([2, 2, 2, 2], [0, 0, 0, 0])
    signal_eq = ControlledSignal(**{**signal.__dict__, "saturation_flow": (0.5,) * 4})
    assert controller.decide(0.0, signal_eq, 1, 10.0, tie).stage == 1
    assert controller.decide(0.0, signal_eq, 0, 10.0, tie).stage == 0
    # ... and no demand anywhere keeps it too
    assert controller.decide(0.0, signal, 1, 10.0, measurements([0] * 4, [0] * 4)).stage == 1


def test_max_pressure_fixed_slots_decide_only_at_slot_ends() -> None:
    signal = crossroads()
    m = measurements([0, 10, 8, 0], [0, 0, 0, 0])
    slotted = MaxPressure(slot_s=10.0)
    assert slotted.decide(0.0, signal, 1, 7.0, m) == Decision(1, "slot")
    assert slotted.decide(0.0, signal, 1, 10.0, m) == Decision(0, "pressure")
    assert slotted.decide(0.0, signal, 1, 20.0, m).stage == 0
    with pytest.raises(SignalError) as err:
        MaxPressure(slot_s=0.0)
    assert err.value.parameter == "slot_s"


def test_head_keeps_min_green_yellow_and_all_red() -> None:
    rules = SafetyRules(min_green_s=5.0)
    signal = crossroads(all_red=2.0, rules=rules)
    head = SignalHead(signal, Always(1), rules=rules)
    shown = drive_head(head, 30, Measurements.empty(signal))
    # stage 0 for its minimum green, then 4 s yellow (the program's), 2 s all-red, stage 1
    assert shown[:5] == ["GGrr"] * 5
    assert shown[5:9] == ["yyrr"] * 4
    assert shown[9:11] == ["rrrr"] * 2
    assert shown[11:] == ["rrGG"] * 19


def test_head_forces_max_out_and_serves_starving_links() -> None:
    rules = SafetyRules(min_green_s=5.0, max_green_s=20.0, max_cycle_s=40.0)
    signal = crossroads(rules=rules)
    head = SignalHead(signal, Always(0), rules=rules)
    shown = drive_head(head, 200, Measurements.empty(signal))
    # the controller never lets stage 0 go: max-out ends it at 20 s
    assert shown[19] == "GGrr" and shown[20] == "yyrr"
    assert head.reasons.get("max-out", 0) >= 1
    # and no link ever waits longer than the maximum cycle
    for link in range(4):
        red = longest = 0
        for state in shown:
            red = 0 if state[link] == "G" else red + 1
            longest = max(longest, red)
        assert longest <= rules.max_cycle_s


def test_change_intervals_follow_the_program(signals: dict[str, ControlledSignal]) -> None:
    # 221: the yellow after the first green is split into two 4 s phases, one per approach
    s221 = signals["221"]
    assert change_intervals(s221.signal.program, s221.stages[0].phase) == (4.0, 0.0)
    # 235: links 10..13 are yellow for 2 s + 1 s in two phases: one unbroken 3 s yellow
    assert link_yellow(signals["235"].signal.program)[10] == pytest.approx(3.0)
    # 210: 5 s yellow, then 2 s all-red
    s210 = signals["210"]
    assert change_intervals(s210.signal.program, 0) == (5.0, 2.0)
    # repeated green phases (UTOPIA) are one stage, and merge into one phase
    assert len({s.state for s in s210.stages}) == len(s210.stages)
    merged = merge_repeats(s210.signal.program)
    states = [p.state for p in merged.phases]
    assert all(a != b for a, b in itertools.pairwise(states))
    assert merged.cycle == pytest.approx(s210.signal.program.cycle)


def test_pedestrian_minimum_is_walk_plus_clearance() -> None:
    # FHWA TSTM 2015 eq. 5-5: walk 7 s plus a 12 m crossing at 1.2 m/s
    assert pedestrian_minimum(12.0, SafetyRules()) == pytest.approx(7.0 + 10.0)


def test_bad_rules_are_named() -> None:
    with pytest.raises(SignalError) as err:
        SafetyRules(min_green_s=-1.0)
    assert err.value.parameter == "min_green_s"
    with pytest.raises(SignalError) as err:
        SafetyRules(min_green_s=30.0, max_green_s=20.0)
    assert err.value.parameter == "max_green_s"
    with pytest.raises(SignalError) as err:
        Actuated(gap_s=0.0)
    assert err.value.parameter == "gap_s"


def adaptive_factory() -> ControllerFactory | None:
    if importlib.util.find_spec("routing.signals.control.adaptive") is None:
        return None
    from routing.signals.control import adaptive

    return lambda s: adaptive.Adaptive()


CONTROLLERS = ["max-pressure", "max-pressure-slot", "actuated", "sumo-actuated", "adaptive"]


@pytest.mark.parametrize("name", CONTROLLERS)
def test_every_controller_obeys_the_safety_rules_in_sumo(
    name: str, scenario: bridge.Scenario, signals: dict[str, ControlledSignal], tmp_path: Path
) -> None:
    factories: dict[str, ControllerFactory | None] = {
        "max-pressure": lambda s: MaxPressure(),
        "max-pressure-slot": lambda s: MaxPressure(slot_s=10.0),
        "actuated": lambda s: Actuated(),
        "sumo-actuated": None,
        "adaptive": adaptive_factory(),
    }
    setup = Setup(scenario.net, scenario.programs)
    if name == "sumo-actuated":
        peer = actuated_programs(signals, tmp_path / "actuated.add.xml")
        setup = Setup(scenario.net, (*scenario.programs, peer))
    elif factories[name] is None:
        pytest.skip("routing.signals.control.adaptive is not there")
    run = run_controlled(
        scenario,
        setup,
        controller_factory=factories[name],
        seed=7,
        end=END,
        workdir=tmp_path,
        record_states=True,
        variant=name,
        timeout_s=TIMEOUT_S,
    )
    assert run.vehicles > 500 and run.unfinished < run.vehicles
    states = tmp_path / f"{name}-7.tls_states.xml"
    violations = check_states(scenario.read_net(), states, signals)
    assert violations == []
    # the signals were really driven: every one changed state many times in ten minutes
    from routing.signals.control.safety import read_states

    records = read_states(states)
    assert set(records) == set(signals)
    assert all(len(r.changes) > 10 for r in records.values())
    if name == "sumo-actuated":
        programs = {el.get("programID") for el in _tls_states(states)}
        assert programs == {"twin-actuated"}


def _tls_states(path: Path) -> list[ET.Element]:
    """The tlsState records of SUMO's signal-state output."""
    return [el for el in ET.parse(path).getroot() if el.tag == "tlsState"]


def test_the_plain_loop_reproduces_sumos_own_run(
    scenario: bridge.Scenario, signals: dict[str, ControlledSignal], tmp_path: Path
) -> None:
    setup = Setup(scenario.net, scenario.programs)
    plain = simulate(
        scenario, setup, variant="scenario", seed=3, end=END, workdir=tmp_path, timeout_s=TIMEOUT_S
    )
    looped = run_controlled(
        scenario,
        setup,
        controller_factory=None,
        seed=3,
        end=END,
        workdir=tmp_path,
        variant="looped",
        timeout_s=TIMEOUT_S,
    )
    # the same SUMO run, stepped through TraCI: identical trip statistics
    assert looped.vehicles == plain.vehicles > 500
    assert looped.time_loss_s == pytest.approx(plain.time_loss_s)
    assert looped.unfinished == plain.unfinished
    controlled = run_controlled(
        scenario,
        setup,
        controller_factory=lambda s: MaxPressure(),
        priority=True,
        seed=3,
        end=END,
        workdir=tmp_path,
        timeout_s=TIMEOUT_S,
    )
    # the same demand went in; the figures are of the same kind and order
    assert abs(controlled.vehicles - plain.vehicles) < 0.1 * plain.vehicles
    assert 0 < controlled.time_loss_s < 5 * plain.time_loss_s
    assert controlled.teleports <= plain.teleports + 5


def test_the_checker_finds_an_unsafe_run(
    scenario: bridge.Scenario, signals: dict[str, ControlledSignal], tmp_path: Path
) -> None:
    """Drive SUMO directly, bypassing the head: stage jumps with no yellow, short greens,
    a conflicting all-green, one approach never served."""
    net = scenario.read_net()
    states_add = states_additional(tmp_path / "states.add.xml", list(signals))
    outputs = tmp_path / "unsafe-1"
    cmd = bridge.run_command(
        scenario,
        scenario.net,
        [*scenario.additional, *scenario.programs, states_add],
        seed=1,
        outputs=outputs,
        end=400,
    )
    victim = next(sid for sid in signals if foes(net, sid))
    i, j = sorted(foes(net, victim))[0]
    port = sumolib.miscutils.getFreeSocketPort()
    with contextlib.redirect_stdout(io.StringIO()):
        traci.start(cmd, port=port, label="unsafe")
    conn = traci.getConnection("unsafe")
    try:
        for t in range(400):
            for sid, s in signals.items():
                stage = s.stages[(t // 3) % 2]  # 3 s greens, straight to the next stage
                state = stage.state
                if sid == victim and t == 100:  # two foes both protected green
                    state = "".join("G" if k in (i, j) else c for k, c in enumerate(state))
                conn.trafficlight.setRedYellowGreenState(sid, state)
            conn.simulationStep()
    finally:
        conn.close()
    violations = check_states(net, Path(f"{outputs}.tls_states.xml"), signals)
    rules = Counter(v.rule for v in violations)
    assert rules["yellow"] > 0  # green straight to red
    assert rules["min-green"] > 0  # 3 s greens
    assert rules["max-wait"] > 0  # stages after the second never served
    conflicts = [v for v in violations if v.rule == "conflict"]
    assert any(
        v.signal == victim and v.links == (i, j) and v.time in (100.0, 101.0) for v in conflicts
    )


def test_decisions_for_500_signals_are_timed(signals: dict[str, ControlledSignal]) -> None:
    city = [s for _, s in zip(range(500), _cycle(list(signals.values())), strict=False)]
    assert len(city) == 500
    seconds = decision_time(lambda s: MaxPressure(), city, steps=20)
    assert math.isfinite(seconds) and 0 < seconds < 1.0
    with pytest.raises(SignalError) as err:
        decision_time(lambda s: MaxPressure(), city, steps=0)
    assert err.value.parameter == "steps"


def _cycle(items: list[ControlledSignal]) -> Iterator[ControlledSignal]:
    while True:
        yield from items


def test_netconvert_signals_of_hamburg_stay_safe(tmp_path: Path) -> None:
    """43 netconvert signals (joined junctions, one-stage signals, buses) under max pressure."""
    hamburg = bridge.read_scenario(HAMBURG)
    setup = Setup(hamburg.net, hamburg.programs)
    run = run_controlled(
        hamburg,
        setup,
        controller_factory=lambda s: MaxPressure(),
        priority=True,
        seed=1,
        end=300.0,
        workdir=tmp_path,
        record_states=True,
        variant="mp",
        timeout_s=TIMEOUT_S,
    )
    assert run.vehicles > 500
    from routing.signals.control.runner import base_signals

    signals = base_signals(hamburg, setup, rules=SafetyRules())
    assert len(signals) == 43
    assert check_states(hamburg.read_net(), tmp_path / "mp-1.tls_states.xml", signals) == []


def test_detectors_measure_what_is_on_the_lanes(
    scenario: bridge.Scenario, signals: dict[str, ControlledSignal], tmp_path: Path
) -> None:
    """The placed detectors against the vehicles' own positions and speeds (TraCI)."""
    from routing.signals.control.detectors import Detectors

    detectors = Detectors.place(scenario.read_net(), signals)
    path = detectors.write(tmp_path / "detectors.add.xml")
    cmd = bridge.run_command(
        scenario,
        scenario.net,
        [*scenario.additional, *scenario.programs, path],
        seed=1,
        outputs=tmp_path / "det-1",
        end=400,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        traci.start(cmd, port=sumolib.miscutils.getFreeSocketPort(), label="detectors")
    conn = traci.getConnection("detectors")
    try:
        detectors.subscribe(conn)
        for _ in range(300):  # step by step, as the runner does
            conn.simulationStep()
            measured = detectors.measure(conn)
        checked = busy = 0
        for sid, s in signals.items():
            m = measured[sid]
            for k, lane in enumerate(s.in_lanes):
                length = detectors.lane_length[lane]
                start = max(length - 50.0, 0.0)
                on = [
                    (conn.vehicle.getLanePosition(v), conn.vehicle.getSpeed(v))
                    for v in conn.lane.getLastStepVehicleIDs(lane)
                ]
                # a vehicle counts once its front is on the detector, until its back leaves
                # it: at most one more, crossing the stop line, has its front on the junction
                surely = [sp for pos, sp in on if pos > start + 0.1]
                maybe = [sp for pos, sp in on if pos >= start - 0.1]
                assert len(surely) <= m.count[k] <= len(maybe) + 1, (lane, m.count[k], on)
                halted_low = sum(sp < 0.1 for sp in surely)
                halted_high = sum(sp < 0.1 for sp in maybe)
                assert halted_low <= m.queue[k] <= halted_high + 1, (lane, m.queue[k], on)
                checked += 1
                busy += m.count[k] > 0
        assert checked == sum(len(s.in_lanes) for s in signals.values())
        assert busy > 10  # rush hour: many approaches hold vehicles
    finally:
        conn.close()


def test_crossings_get_walk_and_clearance_and_stay_safe(tmp_path: Path) -> None:
    """A netconvert grid with sidewalks and crossings, cars and pedestrians, under control."""
    net = tmp_path / "grid.net.xml"
    done = bridge.run_process(
        [
            bridge.sumo_binary("netgenerate"),
            "--grid",
            "--grid.number",
            "3",
            "--grid.length",
            "100",
            "--default.lanenumber",
            "2",
            "--tls.guess",
            "true",
            "--sidewalks.guess",
            "true",
            "--crossings.guess",
            "true",
            "-o",
            str(net),
        ],
        timeout_s=TIMEOUT_S,
        what="netgenerate",
    )
    assert done.returncode == 0, done.stderr
    trips = []
    for name, extra in (("cars", ["--validate"]), ("peds", ["--pedestrians", "--prefix", "p"])):
        out = tmp_path / f"{name}.trips.xml"
        tool = [sys.executable, bridge.sumo_tool("randomTrips.py"), "-n", str(net), "-o"]
        # the routes duarouter writes for the check go to tmp_path, not the working folder
        routes = ["-r", str(tmp_path / f"{name}.rou.xml")]
        done = bridge.run_process(
            [*tool, str(out), *routes, "-e", "300", "-p", "2", "--seed", "1", *extra],
            timeout_s=TIMEOUT_S,
            what="randomTrips",
        )
        assert done.returncode == 0, done.stderr
        trips.append(out.name)
    config = tmp_path / "run.sumocfg"
    config.write_text(
        f'<configuration><input><net-file value="{net.name}"/>'
        f'<route-files value="{",".join(trips)}"/></input></configuration>\n',
        encoding="utf-8",
    )
    grid = bridge.read_scenario(config)
    setup = Setup(grid.net, grid.programs)
    from routing.signals.control.runner import base_signals

    signals = base_signals(grid, setup, rules=SafetyRules())
    grid_net = grid.read_net()
    for s in signals.values():
        assert s.crossing  # netconvert put crossings at every signal
        crossing_length = {
            index: lane.getLength()
            for in_lane, out_lane, index in grid_net.getTLS(s.id).getConnections()
            for lane in (in_lane, out_lane)
            if lane.getEdge().getFunction() == "crossing"
        }
        assert set(crossing_length) == set(s.crossing)
        for stage in s.stages:
            # FHWA TSTM 2015 eq. 5-5: walk 7 s + crossing length / 1.2 m/s
            need = [7.0 + crossing_length[k] / 1.2 for k in stage.green & s.crossing]
            assert stage.min_green_s == pytest.approx(max([5.0, *need]))
    run = run_controlled(
        grid,
        setup,
        controller_factory=lambda s: MaxPressure(),
        seed=1,
        end=400.0,
        workdir=tmp_path,
        record_states=True,
        variant="mp",
        timeout_s=TIMEOUT_S,
    )
    assert run.vehicles > 50
    assert check_states(grid.read_net(), tmp_path / "mp-1.tls_states.xml", signals) == []


# --- fixes after the tester's report: threads, SUMO's messages, bad inputs, file names -------


def test_controlled_runs_in_threads_leave_stdout_alone(
    scenario: bridge.Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    setup = Setup(scenario.net, scenario.programs)
    before = sys.stdout

    def run(name: str) -> float:
        return run_controlled(
            scenario,
            setup,
            controller_factory=lambda s: MaxPressure(),
            seed=1,
            end=120.0,
            workdir=tmp_path / name,
            variant=name,
            timeout_s=TIMEOUT_S,
        ).time_loss_s

    with ThreadPoolExecutor(max_workers=2) as pool:
        losses = list(pool.map(run, ["a", "b"]))
    assert sys.stdout is before
    assert all(np.isfinite(loss) and loss >= 0 for loss in losses)
    assert "Retrying" not in capsys.readouterr().out
    # the run's own files are named once: <variant>-<seed>.<what>, never the stem twice
    names = [p.name for p in (tmp_path / "a").iterdir()]
    assert "a-1.detectors.add.xml" in names
    assert not [n for n in names if n.count("a-1") > 1]


def test_sumo_that_cannot_start_is_quoted(scenario: bridge.Scenario, tmp_path: Path) -> None:
    # the scenario's own files, with a begin after the horizon: SUMO refuses to start
    config = tmp_path / "late.sumocfg"
    folder = ACOSTA
    config.write_text(
        f"""<configuration>
    <input>
        <net-file value="{folder / "acosta_buslanes.net.xml"}"/>
        <route-files value="{folder / "acosta.rou.xml"}"/>
        <additional-files value="{folder / "acosta_tls.add.xml"}"/>
    </input>
    <time><begin value="600"/></time>
</configuration>
""",
        encoding="utf-8",
    )
    late = bridge.read_scenario(config)
    with pytest.raises(SignalError) as err:
        run_controlled(
            late,
            Setup(late.net, late.programs),
            controller_factory=lambda s: MaxPressure(),
            seed=1,
            end=300.0,
            workdir=tmp_path / "work",
            timeout_s=TIMEOUT_S,
        )
    assert "could not start" in str(err.value)
    assert "end time should be after the begin time" in str(err.value)
    assert err.value.parameter == "scenario"


def test_a_network_may_be_gzipped(tmp_path: Path) -> None:
    hamburg = bridge.read_scenario(HAMBURG)
    assert hamburg.net.name.endswith(".gz")
    programs = bridge.read_programs([hamburg.net])
    sid, program = next(iter(programs.items()))
    shifted = Program(program.id, program.phases, offset=program.offset + 7.0)
    for name in ("phased.net.xml", "phased.net.xml.gz"):
        out = bridge.net_with_programs(hamburg.net, {sid: shifted}, tmp_path / name)
        again = bridge.read_programs([out])
        assert again[sid].offset == pytest.approx(program.offset + 7.0)
        assert set(again) == set(programs)
        assert len(bridge.read_net(out).getTrafficLights()) == len(programs)


@pytest.mark.parametrize("content", [b"", b"not xml at all\n", b"\x1f\x8b broken gzip"])
def test_a_route_file_that_is_not_xml_is_named(content: bytes, tmp_path: Path) -> None:
    from routing.signals.control.priority import vehicle_classes

    path = tmp_path / "demand.rou.xml"
    path.write_bytes(content)
    for read in (bridge.unrouted, bridge.read_trips, vehicle_classes):
        with pytest.raises(SignalError) as err:
            read([path])
        assert str(path) in str(err.value) and "not readable XML" in str(err.value)
        assert err.value.parameter == "routes"
    with pytest.raises(SignalError, match="does not exist") as err:
        bridge.read_trips([tmp_path / "missing.rou.xml"])
    assert err.value.parameter == "routes"


def test_options_that_are_not_finite_numbers_are_refused(scenario: bridge.Scenario) -> None:
    from routing.signals.control.adaptive import Adaptive
    from routing.signals.control.coordinated import Coordinated
    from routing.signals.control.detectors import Detectors
    from routing.signals.control.emergency import Preemption
    from routing.signals.control.priority import TransitPriority

    cases = [
        (lambda: SafetyRules(min_green_s="5"), "min_green_s"),  # type: ignore[arg-type]
        (lambda: SafetyRules(max_cycle_s=math.inf), "max_cycle_s"),
        (lambda: Actuated(gap_s=math.inf), "gap_s"),
        (lambda: Actuated(gap_s=None), "gap_s"),  # type: ignore[arg-type]
        (lambda: Adaptive(gap_s=math.nan), "gap_s"),
        (lambda: Adaptive(switch_cost=math.inf), "switch_cost"),
        (lambda: Adaptive(lookahead="1"), "lookahead"),  # type: ignore[arg-type]
        (lambda: Coordinated(gap_s=math.inf), "gap_s"),
        (lambda: MaxPressure(slot_s=math.inf), "slot_s"),
        (lambda: MaxPressure(slot_s=True), "slot_s"),
        (lambda: TransitPriority(None), "controller"),  # type: ignore[arg-type]
        (lambda: TransitPriority(MaxPressure(), recovery_s=math.inf), "recovery_s"),
        (lambda: Preemption(None), "controller"),  # type: ignore[arg-type]
        (lambda: Preemption(MaxPressure(), lead_s=math.nan), "lead_s"),
        (lambda: Detectors.place(scenario.read_net(), {}, length_m=math.inf), "length_m"),
    ]
    for make, parameter in cases:
        with pytest.raises(SignalError) as err:
            make()
        assert err.value.parameter == parameter, parameter
        assert parameter in str(err.value)
    assert Actuated(gap_s=2).gap_s == 2.0  # an int is a number


def test_a_one_edge_emergency_route_is_refused_on_both_paths(
    scenario: bridge.Scenario, tmp_path: Path
) -> None:
    from routing.signals.control.runner import controlled_corridor
    from routing.signals.preemption import evaluate_corridor

    setup = Setup(scenario.net, scenario.programs)
    fixed = [
        lambda: evaluate_corridor(
            scenario, scenario.net, list(scenario.programs), ["13"], seeds=[1], end=60.0
        ),
        lambda: controlled_corridor(
            scenario,
            setup,
            ["13"],
            controller_factory=lambda s: MaxPressure(),
            seeds=[1],
            end=60.0,
            workdir=tmp_path,
        ),
    ]
    for run in fixed:
        with pytest.raises(SignalError, match="at least two edges") as err:
            run()
        assert err.value.parameter == "emergency"


def test_an_emergency_vehicle_that_does_not_arrive_is_not_timed(
    scenario: bridge.Scenario, tmp_path: Path
) -> None:
    from routing.signals.preemption import run_corridor

    # ~115 s at free flow (tests/routing/test_emergency_control.py ROUTE): 30 s is too short
    route = [
        *("13", "104", "24", "22", "59", "53cd", "53[0]", "78[1][1]", "189[0]"),
        *("189[1][0]+20000", "189[1][1]", "188", "87[0]", "20001+87[1][0]", "87[1][1]"),
    ]
    with pytest.raises(SignalError, match=r"did not arrive by 130 s.*lengthen") as err:
        run_corridor(
            scenario,
            scenario.net,
            [*scenario.additional, *scenario.programs],
            route,
            seed=1,
            depart=100.0,
            corridor=True,
            end=130.0,
            workdir=tmp_path,
            timeout_s=TIMEOUT_S,
        )
    assert err.value.parameter == "end"
