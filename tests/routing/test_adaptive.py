"""The twin's adaptive controller and transit signal priority, on hand-built measurements and in SUMO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routing.signals import sumo as bridge
from routing.signals.control.adaptive import Adaptive
from routing.signals.control.base import (
    ControlledSignal,
    Controller,
    Decision,
    Measurements,
    SafetyRules,
    SignalHead,
    stages_of,
)
from routing.signals.control.priority import (
    EARLY_GREEN,
    EXTENSION,
    TransitPriority,
    vehicle_classes,
    with_priority,
)
from routing.signals.control.runner import base_signals, run_controlled
from routing.signals.control.safety import check_states
from routing.signals.evaluation import Setup
from routing.signals.model import Link, Phase, Program, Signal, SignalError
from routing.signals.runs import read_run

BOLOGNA = Path(__file__).resolve().parents[3] / "shared" / "data" / "bologna"
RULES = SafetyRules()

# A four-arm cross: links 0, 1 north and south (stage 0), links 2, 3 east and west (stage 1);
# each link has its own incoming lane (position = link index) and outgoing lane.
PROGRAM = Program(
    "cross",
    (
        Phase(30.0, "GGrr"),
        Phase(3.0, "yyrr"),
        Phase(2.0, "rrrr"),
        Phase(30.0, "rrGG"),
        Phase(3.0, "rryy"),
        Phase(2.0, "rrrr"),
    ),
)


def cross() -> ControlledSignal:
    links = {
        i: Link(i, f"{a}_in", f"{b}_out", 0)
        for i, (a, b) in enumerate([("n", "s"), ("s", "n"), ("e", "w"), ("w", "e")])
    }
    signal = Signal("x", links, PROGRAM, frozenset(links))
    return ControlledSignal(
        signal,
        stages_of(PROGRAM, rules=RULES),
        in_lanes=("e_in_0", "n_in_0", "s_in_0", "w_in_0"),
        out_lanes=("e_out_0", "n_out_0", "s_out_0", "w_out_0"),
        # link 0 n->s, 1 s->n, 2 e->w, 3 w->e
        link_in=(1, 2, 0, 3),
        link_out=(2, 1, 3, 0),
        saturation_flow=(0.475,) * 4,
    )


def measure(
    *,
    count: dict[int, float] | None = None,
    queue: dict[int, float] | None = None,
    gap: dict[int, float] | None = None,
    out: dict[int, float] | None = None,
    bus: dict[int, float] | None = None,
) -> Measurements:
    """Measurements keyed by link index (the cross has one lane per link)."""
    s = cross()
    m = Measurements.empty(s)
    for link, v in (count or {}).items():
        m.count[s.link_in[link]] = v
    for link, v in (queue or {}).items():
        m.queue[s.link_in[link]] = v
    for link, v in (gap or {}).items():
        m.gap_s[s.link_in[link]] = v
    for link, v in (out or {}).items():
        m.out_count[s.link_out[link]] = v
    m.bus_eta_s = dict(bus or {})
    return m


class Scripted:
    """A controller that always asks for one stage (to see what priority changes)."""

    name = "scripted"

    def __init__(self, stage: int) -> None:
        self.stage = stage
        self.resets = 0

    def reset(self, signal: ControlledSignal) -> None:
        self.resets += 1

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        return Decision(self.stage, "scripted")


# --- the adaptive controller on hand-built measurements -------------------------------------


def test_adaptive_holds_a_stage_while_it_discharges() -> None:
    s, ctl = cross(), Adaptive()
    ctl.reset(s)
    # north and south still pass the stop line every 1.5 s, a short queue waits east-west
    m = measure(count={0: 4, 1: 3, 2: 3, 3: 2}, queue={2: 3, 3: 2}, gap={0: 1.5, 1: 1.5})
    assert ctl.discharging(s, 0, m)
    assert ctl.decide(10.0, s, 0, 10.0, m) == Decision(0, "discharging")


def test_adaptive_gaps_out_to_the_waiting_stage() -> None:
    s, ctl = cross(), Adaptive()
    ctl.reset(s)
    # no vehicle has crossed north-south for 6 s (above the 2.5..3 s passage time)
    m = measure(count={0: 1, 2: 3, 3: 2}, queue={0: 1, 2: 3, 3: 2}, gap={0: 6.0, 1: 9.0})
    assert not ctl.discharging(s, 0, m)
    assert ctl.decide(10.0, s, 0, 10.0, m) == Decision(1, "gap-out")


def test_adaptive_rests_when_nothing_waits_elsewhere() -> None:
    s, ctl = cross(), Adaptive()
    ctl.reset(s)
    m = measure(count={0: 1}, gap={0: 20.0})
    assert ctl.decide(10.0, s, 0, 10.0, m) == Decision(0, "rest")


def test_adaptive_cuts_a_discharge_when_the_pressure_gain_pays_the_switch() -> None:
    s, ctl = cross(), Adaptive()
    ctl.reset(s)
    # north-south trickles (one car, downstream nearly full), east-west has long queues
    m = measure(
        count={0: 1, 2: 7, 3: 7},
        queue={2: 7, 3: 7},
        gap={0: 1.0},
        out={0: 3},
    )
    p = ctl.pressures(s, m)
    # switching costs the change interval (3 s yellow + 2 s all-red) x east-west saturation flow
    cost = ctl.switch_cost * 5.0 * 2 * 0.475
    assert p[1] - p[0] > cost
    assert ctl.decide(10.0, s, 0, 10.0, m) == Decision(1, "pressure")
    # the same gain with a switching cost 10x higher keeps the discharge going
    strict = Adaptive(switch_cost=10 * ctl.switch_cost)
    strict.reset(s)
    assert strict.decide(10.0, s, 0, 10.0, m).stage == 0


def test_adaptive_pressure_weighs_queues_against_downstream() -> None:
    s, ctl = cross(), Adaptive(lookahead=0.0)
    ctl.reset(s)
    m = measure(queue={0: 4, 1: 2, 2: 5}, count={0: 4, 1: 2, 2: 5}, out={0: 1, 2: 5})
    # stage 0: (4 - 1) + (2 - 0) lanes at the base saturation flow x 0.9 (HCM area factor)
    weight = 0.475 / (1900 / 3600)
    np.testing.assert_allclose(ctl.pressures(s, m), [5 * weight, 0.0])


def test_adaptive_never_switches_before_min_green() -> None:
    s = cross()
    head = SignalHead(s, Adaptive(), rules=RULES)
    gapped = measure(count={2: 5}, queue={2: 5})
    assert head.step(0.0, 1.0, gapped) == "GGrr"
    shown = []
    for t in range(1, 12):
        shown.append(head.step(float(t), 1.0, gapped))
    first_change = next(t for t, st in enumerate(shown, start=1) if st is not None)
    assert first_change == RULES.min_green_s
    assert shown[first_change - 1] == "yyrr"


def test_adaptive_rejects_bad_options() -> None:
    with pytest.raises(SignalError) as err:
        Adaptive(gap_s=0)
    assert err.value.parameter == "gap_s"
    with pytest.raises(SignalError) as err:
        Adaptive(lookahead=1.5)
    assert err.value.parameter == "lookahead"


# --- transit signal priority on hand-built measurements -------------------------------------


def test_priority_extends_the_green_for_an_approaching_bus() -> None:
    s = cross()
    tsp = TransitPriority(Scripted(1), max_extension_s=15.0)
    tsp.reset(s)
    # the controller wants east-west, a bus reaches the green north approach in 6 s
    assert tsp.decide(20.0, s, 0, 20.0, measure(bus={0: 6.0})) == Decision(0, EXTENSION)
    assert tsp.decide(21.0, s, 0, 21.0, measure(bus={0: 5.0})) == Decision(0, EXTENSION)
    # the bus has passed: the controller's decision stands
    assert tsp.decide(22.0, s, 0, 22.0, measure()) == Decision(1, "scripted")
    assert tsp.granted[EXTENSION] == 1


def test_priority_extension_is_bounded() -> None:
    s = cross()
    tsp = TransitPriority(Scripted(1), max_extension_s=10.0)
    tsp.reset(s)
    # a bus 12 s away cannot be served within a 10 s extension
    assert tsp.decide(20.0, s, 0, 20.0, measure(bus={0: 12.0})).stage == 1
    # one 8 s away can, for at most 10 s of extension; then the call is over for that bus
    assert tsp.decide(20.0, s, 0, 20.0, measure(bus={0: 8.0})).reason == EXTENSION
    assert tsp.decide(25.0, s, 0, 25.0, measure(bus={0: 4.0})).reason == EXTENSION
    # 9 s into the extension, the (slowed) bus 4 s away no longer fits: the call ends
    assert tsp.decide(29.0, s, 0, 29.0, measure(bus={0: 4.0})) == Decision(1, "scripted")
    assert tsp.decide(31.0, s, 0, 31.0, measure(bus={0: 0.3})) == Decision(1, "scripted")
    # one call per bus: the same bus does not call an early green once its stage ends
    assert tsp.decide(40.0, s, 1, 5.0, measure(bus={0: 0.3})) == Decision(1, "scripted")


def test_priority_calls_an_early_green_for_a_bus_on_red() -> None:
    s = cross()
    tsp = with_priority(s, Scripted(0), early_green="truncate")
    tsp.reset(s)
    # the controller would keep north-south; a bus approaches east on red
    assert tsp.decide(10.0, s, 0, 10.0, measure(bus={2: 12.0})) == Decision(1, EARLY_GREEN)
    assert tsp.granted[EARLY_GREEN] == 1
    # by default (reorder) a stage is not cut for the bus: the controller's hold stands
    gentle = with_priority(s, Scripted(0))
    gentle.reset(s)
    assert gentle.decide(10.0, s, 0, 10.0, measure(bus={2: 12.0})) == Decision(0, "scripted")
    # too far away: no call
    far = with_priority(s, Scripted(0), early_green="truncate", early_green_eta_s=10.0)
    far.reset(s)
    assert far.decide(10.0, s, 0, 10.0, measure(bus={2: 12.0})) == Decision(0, "scripted")


def test_priority_early_green_waits_for_min_green() -> None:
    s = cross()
    head = SignalHead(s, with_priority(s, Scripted(0), early_green="truncate"), rules=RULES)
    bus = measure(bus={2: 8.0})
    assert head.step(0.0, 1.0, bus) == "GGrr"
    shown = [head.step(float(t), 1.0, bus) for t in range(1, 8)]
    first_change = next(t for t, st in enumerate(shown, start=1) if st is not None)
    assert first_change == RULES.min_green_s  # truncated to min green, never below
    assert shown[first_change - 1] == "yyrr"
    assert head.reasons == {EARLY_GREEN: 1}


def test_priority_rejects_bad_options() -> None:
    with pytest.raises(SignalError) as err:
        with_priority(cross(), Scripted(0), max_extension_s=-1)
    assert err.value.parameter == "max_extension_s"
    with pytest.raises(SignalError) as err:
        with_priority(cross(), Scripted(0), early_green="always")
    assert err.value.parameter == "early_green"


# --- per-class time loss ---------------------------------------------------------------------


def test_bus_time_loss_from_tripinfo(tmp_path: Path) -> None:
    types = tmp_path / "types.rou.xml"
    types.write_text(
        '<routes><vTypeDistribution id="private">'
        '<vType id="car1" vClass="passenger" probability="1"/></vTypeDistribution>'
        '<vType id="bus" vClass="bus"/><vType id="plain"/></routes>'
    )
    trips = tmp_path / "trips.xml"
    trips.write_text(
        "<tripinfos>"
        '<tripinfo id="a" vType="car1" timeLoss="10.0"/>'
        '<tripinfo id="b" vType="car1" timeLoss="30.0"/>'
        '<tripinfo id="c" vType="bus" timeLoss="40.0"/>'
        '<tripinfo id="d" vType="plain" timeLoss="5.0"/>'
        "</tripinfos>"
    )
    stats = tmp_path / "stats.xml"
    stats.write_text('<statistics><teleports total="0"/></statistics>')
    classes = vehicle_classes([types])
    assert classes["plain"] == "passenger" and classes["car1"] == "passenger"
    run = read_run(trips, stats, variant="v", seed=1, classes=classes)
    assert (run.vehicles, run.buses) == (4, 1)
    assert run.bus_time_loss_s == 40.0 and run.others_time_loss_s == 15.0
    assert run.time_loss_s == 85.0 / 4
    with pytest.raises(SignalError) as err:
        vehicle_classes([tmp_path / "missing.xml"])
    assert err.value.parameter == "routes"


# --- end to end in SUMO ------------------------------------------------------------------------


def test_adaptive_with_priority_runs_safely_in_sumo(tmp_path: Path) -> None:
    scenario = bridge.read_scenario(BOLOGNA / "acosta" / "run.sumocfg")
    net = scenario.read_net()
    setup = Setup(scenario.net, scenario.programs)
    granted: list[TransitPriority] = []

    def wrap(signal: ControlledSignal, controller: Controller) -> TransitPriority:
        tsp = with_priority(signal, controller)
        granted.append(tsp)
        return tsp

    run = run_controlled(
        scenario,
        setup,
        controller_factory=lambda s: Adaptive(),
        seed=1,
        end=400,
        workdir=tmp_path,
        priority=wrap,
        record_states=True,
        variant="e2e",
        timeout_s=120,
    )
    assert run.vehicles > 500
    violations = check_states(
        net, tmp_path / "e2e-1.tls_states.xml", base_signals(scenario, setup, rules=RULES)
    )
    assert violations == []
    assert sum(t.granted[EXTENSION] + t.granted[EARLY_GREEN] for t in granted) > 0
    # buses told from everyone else by the scenario's own vehicle types
    split = read_run(
        tmp_path / "e2e-1.tripinfo.xml",
        tmp_path / "e2e-1.stats.xml",
        variant="e2e",
        seed=1,
        classes=vehicle_classes([*scenario.demand_files, *scenario.additional]),
    )
    assert split.vehicles == run.vehicles
    assert 0 < split.buses < split.vehicles - split.buses
    assert split.bus_time_loss_s >= 0.0 and split.others_time_loss_s > 0.0


def test_adaptive_order_cycle_vs_pressure() -> None:
    program = Program(
        "three",
        (
            Phase(20.0, "GGrr"),
            Phase(3.0, "yyrr"),
            Phase(20.0, "rrGr"),
            Phase(3.0, "rryr"),
            Phase(20.0, "rrrG"),
            Phase(3.0, "rrry"),
        ),
    )
    base = cross()
    s = ControlledSignal(
        Signal("t", base.signal.links, program, base.signal.active),
        stages_of(program, rules=RULES),
        base.in_lanes,
        base.out_lanes,
        base.link_in,
        base.link_out,
        base.saturation_flow,
    )
    m = Measurements.empty(s)
    m.count[s.link_in[2]] = m.queue[s.link_in[2]] = 1  # one car waits for stage 1
    m.count[s.link_in[3]] = m.queue[s.link_in[3]] = 6  # six for stage 2
    cyclic, greedy = Adaptive(), Adaptive(order="pressure")
    cyclic.reset(s)
    greedy.reset(s)
    assert cyclic.decide(10.0, s, 0, 10.0, m) == Decision(1, "gap-out")
    assert greedy.decide(10.0, s, 0, 10.0, m) == Decision(2, "gap-out")
    # stage 2's exit is jammed: its cars cannot leave, so it is not worth a change
    m.out_count[s.link_out[3]] = 7
    assert greedy.decide(10.0, s, 0, 10.0, m) == Decision(1, "gap-out")
