"""Actuated-coordinated control: force-offs, early return, clock sync; one real SUMO run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routing.signals import SignalError
from routing.signals import sumo as bridge
from routing.signals.control.adaptive import Adaptive
from routing.signals.control.base import (
    ControlledSignal,
    Measurements,
    SafetyRules,
    SignalHead,
    control_signals,
    stages_of,
)
from routing.signals.control.coordinated import (
    Coordinated,
    fixed_time_signals,
    hybrid,
    plan_of,
)
from routing.signals.control.runner import run_controlled
from routing.signals.control.safety import check_states
from routing.signals.evaluation import Setup
from routing.signals.model import Link, Phase, Program, Signal

ACOSTA = Path(__file__).resolve().parents[3] / "shared" / "data" / "bologna" / "acosta"
RULES = SafetyRules(max_green_s=120.0)  # hand-built plans: the 75 s main green is not maxed out


def arterial(*, offset: float = 0.0) -> ControlledSignal:
    """A 90 s plan: main street 50 s green (links 0/1), side street 30 s (links 2/3)."""
    phases = (
        Phase(50.0, "GGrr"),
        Phase(3.0, "yyrr"),
        Phase(2.0, "rrrr"),
        Phase(30.0, "rrGG"),
        Phase(3.0, "rryy"),
        Phase(2.0, "rrrr"),
    )
    program = Program("p", phases, offset)
    links = {
        0: Link(0, "n", "s", 0),
        1: Link(1, "s", "n", 0),
        2: Link(2, "e", "w", 0),
        3: Link(3, "w", "e", 0),
    }
    signal = Signal("x", links, program, frozenset(links))
    return ControlledSignal(
        signal,
        stages_of(program, rules=RULES),
        in_lanes=("e_0", "n_0", "s_0", "w_0"),
        out_lanes=("e_out", "n_out", "s_out", "w_out"),
        link_in=(1, 2, 0, 3),
        link_out=(2, 1, 3, 0),
        saturation_flow=(0.5, 0.5, 0.5, 0.5),
    )


def measured(count: list[float], gap: list[float]) -> Measurements:
    """Measurements per in-lane (e, n, s, w)."""
    c = np.array(count, dtype=float)
    return Measurements(c, c, np.array(gap, dtype=float), np.zeros(4), {})


def green_runs(shown: list[str], link: int) -> list[tuple[int, int]]:
    """(start, length) of each green run of a link, 1 s steps."""
    runs: list[tuple[int, int]] = []
    start = None
    for t, state in enumerate([*shown, "r" * len(shown[0])]):
        green = state[link] in "Gg"
        if green and start is None:
            start = t
        elif not green and start is not None:
            runs.append((start, t - start))
            start = None
    return runs


def drive(signal: ControlledSignal, m: Measurements, steps: int) -> list[str]:
    head = SignalHead(signal, Coordinated(), rules=RULES)
    shown: list[str] = []
    for t in range(steps):
        state = head.step(float(t), 1.0, m)
        shown.append(state if state is not None else shown[-1])
    return shown


def test_plan_reads_cycle_yield_point_and_force_offs() -> None:
    plan = plan_of(arterial(offset=10.0))
    assert plan.cycle_s == 90.0 and plan.offset_s == 10.0
    assert plan.coordinated == 0 and plan.yield_s == 50.0
    assert plan.coordinated_from_s == 40.0
    assert [(w.stage, w.start_s, w.force_off_s) for w in plan.windows] == [(1, 5.0, 35.0)]


def test_clock_follows_the_offset() -> None:
    """Same time, same demand: the offset decides whether the side street may be served."""
    side_waits = measured([1, 0, 0, 1], [1e9] * 4)
    assert plan_of(arterial(offset=10.0)).since_yield(60.0) == (0, 0.0)
    assert plan_of(arterial(offset=10.0)).since_yield(60.0 + 89.0) == (0, 89.0)
    at = 55.0  # offset 0: 5 s after the yield point; offset 10: 5 s before it
    free = Coordinated().decide(at, arterial(offset=0.0), 0, 30.0, side_waits)
    held = Coordinated().decide(at, arterial(offset=10.0), 0, 30.0, side_waits)
    assert (free.stage, free.reason) == (1, "yield")
    assert (held.stage, held.reason) == (0, "coordinated")


def test_force_offs_hold_the_cycle_under_saturation() -> None:
    """Every lane always discharging: the base program is reproduced, cycle after cycle."""
    shown = drive(arterial(), measured([3, 3, 3, 3], [1.0] * 4), 5 * 90)
    side = green_runs(shown, 2)
    starts = [s for s, _ in side]
    # after the first cycle (the head starts in stage 0 at t=0) side green is 55..85 each cycle
    assert starts[1:] == [55 + 90 * k for k in range(1, len(starts))]
    assert all(length == 30 for _, length in side[1:])
    main = green_runs(shown, 0)
    assert all(length == 50 for _, length in main[1:-1])


def test_gap_out_returns_unused_time_to_the_coordinated_stage() -> None:
    """Side street has a car but no discharge: served for its minimum, the rest goes to main."""
    signal = arterial()
    shown = drive(signal, measured([1, 1, 1, 1], [1e9] * 4), 5 * 90)
    side = green_runs(shown, 2)
    assert [s for s, _ in side][1:] == [55 + 90 * k for k in range(1, len(side))]  # in sync
    minimum = signal.stages[1].min_green_s
    assert all(length == minimum for _, length in side)
    main = green_runs(shown, 0)
    assert all(length == 90 - minimum - 10 for _, length in main[1:-1])


def test_stage_without_demand_is_skipped() -> None:
    decision = Coordinated().decide(55.0, arterial(), 0, 50.0, measured([0, 2, 2, 0], [1e9] * 4))
    assert (decision.stage, decision.reason) == (0, "rest")


def test_bad_option_is_named() -> None:
    with pytest.raises(SignalError) as err:
        Coordinated(gap_s=0.0)
    assert err.value.parameter == "gap_s"


def test_hybrid_picks_coordinated_only_for_fixed_time_programs(tmp_path: Path) -> None:
    programs = tmp_path / "p.add.xml"
    programs.write_text(
        "<additional>\n"
        '<tlLogic id="a" type="static" programID="1" offset="0">'
        '<phase duration="30" state="G"/><phase duration="3" state="y"/></tlLogic>\n'
        '<tlLogic id="b" type="actuated" programID="1" offset="0">'
        '<phase duration="30" state="G"/><phase duration="3" state="y"/></tlLogic>\n'
        '<tlLogic id="c" programID="1" offset="0">'
        '<phase duration="30" state="G"/><phase duration="3" state="y" next="0"/></tlLogic>\n'
        "</additional>\n"
    )
    assert fixed_time_signals([programs]) == {"a"}
    make = hybrid({"x"})
    assert isinstance(make(arterial()), Coordinated)
    assert isinstance(hybrid(set())(arterial()), Adaptive)
    with pytest.raises(SignalError) as err:
        fixed_time_signals([tmp_path / "missing.add.xml"])
    assert err.value.parameter == "paths"


def test_real_run_is_safe(tmp_path: Path) -> None:
    scenario = bridge.read_scenario(ACOSTA / "run.sumocfg")
    rules = SafetyRules()
    base = bridge.net_with_programs(
        scenario.net, bridge.read_programs(scenario.programs), tmp_path / "base.net.xml"
    )
    run = run_controlled(
        scenario,
        Setup(base, ()),
        controller_factory=lambda s: Coordinated(),
        seed=7,
        end=600.0,
        workdir=tmp_path,
        rules=rules,
        record_states=True,
        variant="coord",
        timeout_s=120.0,
    )
    assert run.vehicles > 500 and run.unfinished < run.vehicles
    net = bridge.read_net(base)
    signals = control_signals(
        net, bridge.signals_of(net, bridge.read_programs(scenario.programs)), rules=rules
    )
    assert check_states(net, tmp_path / "coord-7.tls_states.xml", signals, rules=rules) == []
