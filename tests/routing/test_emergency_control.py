"""Emergency pre-emption on top of the real-time controllers: the wrapper, and real SUMO runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from routing.signals import SignalError
from routing.signals import sumo as bridge
from routing.signals.control.adaptive import Adaptive
from routing.signals.control.base import (
    ControlledSignal,
    Controller,
    Decision,
    Measurements,
    SafetyRules,
    SignalHead,
    control_signals,
    stages_of,
)
from routing.signals.control.emergency import PREEMPTION, Preemption, with_preemption
from routing.signals.control.maxpressure import MaxPressure
from routing.signals.control.runner import (
    controlled_corridor,
    emergency_additional,
    run_controlled,
)
from routing.signals.control.safety import check_states, read_states
from routing.signals.model import Link, Phase, Program, Signal
from routing.signals.preemption import plan_corridor
from routing.signals.runs import Setup

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ACOSTA = DATA / "bologna" / "acosta" / "run.sumocfg"
# bench/signals.py busiest_route on acosta: the scenario's route crossing the most signals
# (5: 273, 209, 220, 221, 235) that an emergency vehicle may drive; 2.2 km, ~115 s free flow
ROUTE = [
    *("13", "104", "24", "22", "59", "53cd", "53[0]", "78[1][1]", "189[0]", "189[1][0]+20000"),
    *("189[1][1]", "188", "87[0]", "20001+87[1][0]", "87[1][1]", "m90", "171", "161", "122"),
    *("1b", "1", "204a[0]", "204b[0]", "54"),
]
DEPART_S = 300.0
END_S = 900.0
TIMEOUT_S = 120.0


# --- a hand-built crossroads: stage 0 = links 0/1 (north-south), stage 1 = links 2/3 ---------


def crossroads(rules: SafetyRules) -> ControlledSignal:
    program = Program(
        "p",
        (
            Phase(30.0, "GGrr"),
            Phase(4.0, "yyrr"),
            Phase(2.0, "rrrr"),
            Phase(30.0, "rrGG"),
            Phase(4.0, "rryy"),
            Phase(2.0, "rrrr"),
        ),
    )
    links = {
        0: Link(0, "n", "s", 0),
        1: Link(1, "s", "n", 0),
        2: Link(2, "e", "w", 0),
        3: Link(3, "w", "e", 0),
    }
    return ControlledSignal(
        Signal("x", links, program, frozenset(links)),
        stages_of(program, rules=rules),
        in_lanes=("e_0", "n_0", "s_0", "w_0"),
        out_lanes=("e_out", "n_out", "s_out", "w_out"),
        link_in=(1, 2, 0, 3),
        link_out=(2, 1, 3, 0),
        saturation_flow=(0.5,) * 4,
    )


class Always:
    """Asks for one stage every step (the controller pre-emption overrides)."""

    def __init__(self, stage: int) -> None:
        self.stage = stage
        self.name = f"always-{stage}"

    def reset(self, signal: ControlledSignal) -> None:
        pass

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        return Decision(self.stage, "test")


def seen(signal: ControlledSignal, eta: dict[int, float], clear: dict[int, float]) -> Measurements:
    m = Measurements.empty(signal)
    m.emergency_eta_s, m.emergency_clear_s = dict(eta), dict(clear)
    return m


def drive(
    head: SignalHead,
    steps: int,
    eta_at: Callable[[int], dict[int, float]],
    clear: dict[int, float] | None = None,
) -> list[str]:
    """The state shown in each 1 s step, with the emergency ETAs of each step."""
    shown: list[str] = []
    for t in range(steps):
        state = head.step(float(t), 1.0, seen(head.signal, eta_at(t), clear or {}))
        shown.append(state if state is not None else shown[-1])
    return shown


RULES = SafetyRules(min_green_s=5.0, max_green_s=60.0, max_cycle_s=180.0)
MAX_OUT = SafetyRules(min_green_s=5.0, max_green_s=20.0, max_cycle_s=120.0)


def test_preemption_brings_the_green_up_before_the_vehicle_and_gives_it_back() -> None:
    signal = crossroads(RULES)
    controller = with_preemption(signal, Always(0), lead_s=8.0)
    head = SignalHead(signal, controller, rules=RULES)
    # the vehicle is seen at t=10 on link 2 (stage 1), 30 s out; it crosses at t=40
    shown = drive(head, 80, lambda t: {2: 40.0 - t} if 10 <= t < 40 else {})
    # the call is placed 8 s out (t=32): 4 s yellow, 2 s all-red, then green from t=38
    assert shown[31] == "GGrr" and shown[32] == "yyrr" and shown[36] == "rrrr"
    assert all(state == "rrGG" for state in shown[38:40])
    # once it has passed the controller has its way again: stage 0 after the minimum green
    assert shown[42] == "rrGG" and shown[43] == "rryy" and shown[-1] == "GGrr"
    assert head.reasons[PREEMPTION] == 1
    assert controller.log == [
        {"signal": "x", "link": 2, "from_s": 32.0, "stage": 1, "to_s": 40.0, "end": "passed"}
    ]


def test_the_queue_and_the_minimum_green_advance_the_call() -> None:
    signal = crossroads(RULES)
    # 5 vehicles halting ahead of it: the call comes 10 s earlier (t=22, not t=32) and the
    # green is up (after 4 s yellow and 2 s all-red) 12 s before the vehicle
    controller = with_preemption(signal, Always(0), lead_s=8.0)
    head = SignalHead(signal, controller, rules=RULES)
    shown = drive(head, 60, lambda t: {2: 40.0 - t} if t < 40 else {}, clear={2: 10.0})
    assert controller.log[0]["from_s"] == 22.0
    assert shown.index("rrGG") == 28
    # seen 9 s out while stage 0 is 1 s into its 5 s minimum green: the call counts the
    # 4 s the head will still keep stage 0, so it is placed at once (t=1, not t=2) and the
    # green comes up as early as the rules allow (minimum green, yellow, all-red: t=11)
    controller = with_preemption(signal, Always(0), lead_s=8.0)
    head = SignalHead(signal, controller, rules=RULES)
    shown = drive(head, 30, lambda t: {2: 10.0 - t} if 1 <= t < 10 else {})
    assert controller.log[0]["from_s"] == 1.0
    assert shown.index("rrGG") == 11


def test_a_held_stage_outlasts_max_out_but_not_max_hold() -> None:
    signal = crossroads(MAX_OUT)
    controller = with_preemption(signal, Always(0), lead_s=8.0, max_hold_s=45.0)
    head = SignalHead(signal, controller, rules=MAX_OUT)
    # a vehicle stuck 5 s out on link 3 for the whole run: held, then given up
    shown = drive(head, 120, lambda t: {3: 5.0})
    start = shown.index("rrGG")
    run = next(i for i in range(start, len(shown)) if shown[i] != "rrGG") - start
    assert run > MAX_OUT.max_green_s  # max-out did not cut the pre-emption ...
    assert run <= 45.0 + 1  # ... the maximum hold did
    assert controller.log[0]["end"] == "max-hold"
    assert len(controller.log) == 1  # not placed again for the same approach


def test_the_current_green_is_kept_for_a_vehicle_it_serves() -> None:
    signal = crossroads(RULES)
    head = SignalHead(signal, with_preemption(signal, Always(1)), rules=RULES)
    # the controller wants stage 1 at once, but a vehicle 15 s out takes link 0 (stage 0):
    # letting stage 0 go would need 4 + 2 + 5 + 4 + 2 s to come back, so it is kept
    shown = drive(head, 40, lambda t: {0: 15.0 - t} if t < 15 else {})
    assert all(state == "GGrr" for state in shown[:15])
    assert shown[15] == "yyrr"


def test_the_stage_chosen_also_serves_the_vehicles_next_turns() -> None:
    # a signal over two junctions: link 0 into the first, link 1 out of it into the second;
    # stage 1 serves link 0 only, stage 2 links 0 and 1 (the vehicle's whole way through)
    program = Program(
        "p",
        (
            Phase(20.0, "rrG"),
            Phase(3.0, "rry"),
            Phase(20.0, "Grr"),
            Phase(3.0, "yrr"),
            Phase(20.0, "GGr"),
            Phase(3.0, "yyr"),
        ),
    )
    links = {0: Link(0, "a", "b", 0), 1: Link(1, "b", "c", 0), 2: Link(2, "d", "e", 0)}
    signal = ControlledSignal(
        Signal("j", links, program, frozenset(links)),
        stages_of(program, rules=RULES),
        in_lanes=("a_0", "b_0", "d_0"),
        out_lanes=("b_0", "c_0", "e_0"),
        link_in=(0, 1, 2),
        link_out=(0, 1, 2),
        saturation_flow=(0.5,) * 3,
    )
    assert [sorted(stage.green) for stage in signal.stages] == [[2], [0], [0, 1]]
    wrapped = with_preemption(signal, Always(0))
    # 5 s from link 0 (called), 20 s from link 1 (not yet): stage 2, though stage 1 is first
    decision = wrapped.decide(10.0, signal, 0, 10.0, seen(signal, {0: 5.0, 1: 20.0}, {}))
    assert decision == Decision(2, PREEMPTION, preempt=True)
    # with no turn beyond, the first stage in cycle order serving the call
    wrapped = with_preemption(signal, Always(0))
    assert wrapped.decide(10.0, signal, 0, 10.0, seen(signal, {0: 5.0}, {})).stage == 1


def test_without_a_vehicle_the_controller_decides() -> None:
    signal = crossroads(RULES)
    inner = MaxPressure()
    wrapped = Preemption(MaxPressure())
    assert wrapped.name == "max-pressure+preemption"
    rng = np.random.default_rng(3)
    for t in range(50):
        m = Measurements.empty(signal)
        m.queue = rng.integers(0, 10, 4).astype(float)
        m.count = m.queue.copy()
        m.bus_eta_s = {2: 4.0}  # a bus is no emergency vehicle
        current, green = t % 2, float(t % 30)
        assert wrapped.decide(float(t), signal, current, green, m) == inner.decide(
            float(t), signal, current, green, m
        )
    assert wrapped.log == []


def test_bad_options_are_named(tmp_path: Path) -> None:
    signal = crossroads(RULES)
    with pytest.raises(SignalError) as err:
        with_preemption(signal, Always(0), lead_s=-1.0)
    assert err.value.parameter == "lead_s"
    with pytest.raises(SignalError) as err:
        with_preemption(signal, Always(0), max_hold_s=0.0)
    assert err.value.parameter == "max_hold_s"
    scenario = bridge.read_scenario(ACOSTA)
    with pytest.raises(SignalError) as err:
        emergency_additional(
            tmp_path / "e.add.xml", scenario.read_net(), ["13", "nowhere"], depart=0
        )
    assert err.value.parameter == "emergency"
    setup = Setup(scenario.net, scenario.programs)
    with pytest.raises(SignalError) as err:
        run_controlled(
            scenario,
            setup,
            controller_factory=None,
            seed=1,
            end=10.0,
            workdir=tmp_path,
            emergency=ROUTE,
            preemption=True,
        )
    assert err.value.parameter == "preemption"
    with pytest.raises(SignalError) as err:
        run_controlled(
            scenario,
            setup,
            controller_factory=lambda s: MaxPressure(),
            seed=1,
            end=10.0,
            workdir=tmp_path,
            emergency=ROUTE,
            emergency_depart=-5.0,
        )
    assert err.value.parameter == "emergency_depart"


def test_the_vehicle_file_is_a_route_sumo_can_drive(tmp_path: Path) -> None:
    net = bridge.read_scenario(ACOSTA).read_net()
    path = emergency_additional(tmp_path / "e.add.xml", net, [ROUTE[0], ROUTE[-1]], depart=12.0)
    root = ET.parse(path).getroot()
    vtype, route, vehicle = root.find("vType"), root.find("route"), root.find("vehicle")
    assert vtype is not None and vtype.get("vClass") == "emergency"
    # two ends are routed by the fastest path: a connected route from the first to the last
    assert route is not None and route.get("edges", "").split()[0] == ROUTE[0]
    assert route.get("edges", "").split()[-1] == ROUTE[-1]
    assert vehicle is not None and vehicle.get("depart") == "12.00"


FACTORIES: dict[str, Callable[[ControlledSignal], Controller]] = {
    "max-pressure": lambda s: MaxPressure(),
    "adaptive": lambda s: Adaptive(),
}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_the_corridor_works_on_top_of_the_controller_in_sumo(name: str, tmp_path: Path) -> None:
    scenario = bridge.read_scenario(ACOSTA)
    result = controlled_corridor(
        scenario,
        Setup(scenario.net, scenario.programs),
        ROUTE,
        controller_factory=FACTORIES[name],
        seeds=[1],
        depart=DEPART_S,
        end=END_S,
        workdir=tmp_path,
        record_states=True,
        timeout_s=TIMEOUT_S,
    )
    # the same seed, the same traffic: the vehicle is faster with pre-emption ...
    assert result["travel_time_with_s"] < result["travel_time_without_s"]
    # ... and never halted at a red or yellow of its next signal, where it did without
    assert result["red_wait_with_s"] == 0.0
    assert result["red_wait_without_s"] > 0.0
    # every signal of the route pre-empted for it, each released once the vehicle had passed
    net = scenario.read_net()
    planned = {h.signal for h in plan_corridor(net, bridge.signals_of(net, _programs()), ROUTE)}
    holds = result["holds"]
    assert {h["signal"] for h in holds} == planned
    assert all(h["end"] == "passed" for h in holds)
    # SUMO's own state output: each signal showed the vehicle's link green when it crossed
    variant = f"{name}-with-1"
    records = read_states(tmp_path / f"{variant}.tls_states.xml")
    for h in holds:
        state = [s for t, s in records[h["signal"]].changes if t <= h["to_s"] - 1.0][-1]
        assert state[h["link"]] in "Gg", h
    # and the pre-empted run kept every safety rule
    signals = control_signals(net, bridge.signals_of(net, _programs()), rules=SafetyRules())
    assert check_states(net, tmp_path / f"{variant}.tls_states.xml", signals) == []
    # what it cost everyone else stays small (on acosta it is within the seed's noise)
    assert result["others_extra_delay_pct"] < 10.0


def _programs() -> dict[str, Program]:
    return bridge.read_programs(bridge.read_scenario(ACOSTA).programs)
