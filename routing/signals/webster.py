"""Webster's method per intersection: critical flow ratios, cycle length and green splits.

For each main green phase the lane groups it serves are formed (per incoming edge, the lanes
with a protected green, or a permissive one that is green nowhere else); the phase's critical
flow ratio is its heaviest group's flow per lane over the saturation flow. With ``L`` the lost
time per cycle and ``Y`` the sum of the critical ratios, Webster's optimum cycle is
``C = (1.5 L + 5) / (1 - Y)`` and each phase's green is its share ``y_i / Y`` of the effective
green ``C - L``. With :meth:`WebsterSettings.sumo` the result is, second for second, what SUMO's
``tools/tlsCycleAdaptation.py`` writes; the twin's own defaults differ where that tool is known
to hurt (see :class:`WebsterSettings`). The predicted delay is HCM's uniform plus incremental
delay per lane group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linprog

from routing.signals.model import Program, Signal, SignalError, SignalTiming


@dataclass(frozen=True)
class WebsterSettings:
    """Inputs of Webster's method that are not counts.

    Attributes
    ----------
    yellow_s
        Yellow time written into every yellow phase and deducted from each green; ``None``
        keeps each program's own yellow durations (they come from the approach speeds).
    all_red_s
        All-red time per cycle (lost, not re-timed).
    lost_s
        Lost time (start-up and clearance) per stage; ``None`` takes the program's own
        change intervals (every phase that is not a main green: yellows, all-reds,
        transitions) as the lost time, so the plan's cycle is Webster's cycle.
    min_green_s
        Shortest green.
    min_cycle_s, max_cycle_s
        Bounds of the cycle; an intersection over capacity (``Y >= 1``) gets the longest.
    saturation_headway_s
        Saturation headway: the saturation flow is ``3600 / headway`` per lane and hour.
    green_filter_s
        Phases shorter than this are not counted as main greens.
    existing_cycle
        Keep each program's cycle and only re-split it.
    restrict_cycle
        When minimum greens push the cycle over the maximum, re-share the other greens.
    cycle_s
        One common cycle for every signal (coordination); greens are re-shared so each
        program lasts exactly this long.
    car_lanes_only
        Count only lanes open to cars in a lane group (a bus lane carries no car's share).
    stages
        Time stages, not phases: consecutive green phases with no change interval between
        them serve one stage (adaptive systems such as UTOPIA write a stage as several
        phases). Counting each phase apart charges a lost time per phase and counts the same
        critical flow once per phase, which inflates the cycle; a stage's green is shared
        among its phases in their original proportions.
    critical_per_lane
        A stage's critical flow is its busiest lane's (Webster's definition: the highest
        flow ratio). SUMO's tool takes the group with the highest total flow and divides it
        by that group's lanes, which under-serves a busy one-lane group beside a wide one and
        a lane loaded more than its neighbours.
    area_factor
        Saturation-flow adjustment for the area type (HCM 2010, exhibit 18-13: 0.90 in a
        central business district, 1.00 elsewhere).
    turn_factors
        Count turning vehicles as through-car equivalents by HCM's turn adjustments (a right
        turn discharges at 0.85 of the through rate, a protected left at 0.95).
    shared_lanes
        In programs that write stages as several phases (adaptive systems' plans), a lane
        green in several stages is served by all of them together: the stages' ratios are the
        least total that gives every lane its flow ratio (a linear program), and the greens
        then equalise the lanes' degrees of saturation. SUMO's tool splits such a lane's flow
        equally among its stages, whatever their length; on programs of one phase per stage
        (netconvert's defaults) that equal split measured better in SUMO and is kept.
    """

    yellow_s: float | None = None
    all_red_s: float = 0.0
    lost_s: float | None = None
    min_green_s: float = 6.0
    min_cycle_s: float = 40.0
    max_cycle_s: float = 120.0
    saturation_headway_s: float = 2.0
    green_filter_s: float = 0.0
    existing_cycle: bool = False
    restrict_cycle: bool = True
    cycle_s: float | None = None
    car_lanes_only: bool = True
    stages: bool = True
    critical_per_lane: bool = True
    area_factor: float = 0.9
    turn_factors: bool = True
    shared_lanes: bool = True

    @classmethod
    def sumo(cls, **changes: float | bool | None) -> WebsterSettings:
        """Return the defaults of SUMO's ``tlsCycleAdaptation.py`` (its exact plan)."""
        base = cls(
            yellow_s=4.0,
            all_red_s=0.0,
            lost_s=4.0,
            min_green_s=4.0,
            min_cycle_s=20.0,
            max_cycle_s=120.0,
            saturation_headway_s=2.0,
            restrict_cycle=False,
            car_lanes_only=False,
            stages=False,
            critical_per_lane=False,
            area_factor=1.0,
            turn_factors=False,
            shared_lanes=False,
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    @property
    def saturation_flow(self) -> float:
        """Saturation flow per through lane, pcu/h (headway and area type)."""
        return 3600.0 / self.saturation_headway_s * self.area_factor


@dataclass(frozen=True)
class LaneGroup:
    """Lanes of one approach that move together in a phase, with their hourly flow (pcu)."""

    edge: str
    lanes: tuple[int, ...]
    flow: float
    busiest_lane: float = 0.0


def stages(program: Program, settings: WebsterSettings) -> list[list[int]]:
    """Return the program's stages: the green phase indices timed together.

    Without ``settings.stages`` every main green phase is a stage of its own (SUMO's tool);
    with it, a stage is a run of consecutive main green phases (wrapping round the cycle).

    Parameters
    ----------
    program
        The program.
    settings
        Settings (``stages``, ``green_filter_s``).

    Returns
    -------
    list of list of int
        Phase indices of each stage, in cycle order.
    """
    phases = program.phases
    green = [p.is_green and p.duration >= settings.green_filter_s for p in phases]
    if not settings.stages:
        return [[i] for i, g in enumerate(green) if g]
    out: list[list[int]] = []
    for i, g in enumerate(green):
        if not g:
            continue
        if out and out[-1][-1] == i - 1:
            out[-1].append(i)
        else:
            out.append([i])
    if len(out) > 1 and green[0] and green[-1] and out[-1][-1] == len(phases) - 1:
        out[0] = out.pop() + out[0]
    return out


def lane_groups(
    signal: Signal, flows: Mapping[int, float], settings: WebsterSettings
) -> dict[int, list[LaneGroup]]:
    """Return the lane groups of each stage (keyed by the stage's first phase index).

    A group is the run of an incoming edge's links (in link order) that the stage gives a
    protected green, or a permissive green that no stage protects. A link green in several
    stages shares its flow equally among them.

    Parameters
    ----------
    signal
        The signal and its program.
    flows
        Hourly flow per link index, pcu.
    settings
        Settings (stages, green filter, car lanes only).

    Returns
    -------
    dict
        Lane groups per stage.
    """
    active = signal.active or frozenset(signal.links)
    states, protected = _stage_states(signal, settings)
    groups: dict[int, list[LaneGroup]] = {}
    for key, state in states.items():
        groups[key] = []
        run: list[int] = []
        run_edge: str | None = None

        def close(edge: str | None, links: list[int], key: int = key) -> None:
            if not links or edge is None:
                return
            lanes = tuple(dict.fromkeys(signal.links[j].from_lane for j in links))
            if settings.car_lanes_only:
                car = tuple(
                    dict.fromkeys(
                        signal.links[j].from_lane for j in links if signal.links[j].passenger
                    )
                )
                lanes = car or lanes
            shares = {
                j: flows.get(j, 0.0) / max(protected.get(j, 1), 1) / _turn(signal, j, settings)
                for j in links
            }
            per_lane: dict[int, float] = {}
            for j, f in shares.items():
                lane = signal.links[j].from_lane
                per_lane[lane] = per_lane.get(lane, 0.0) + f
            busiest = max((per_lane.get(lane, 0.0) for lane in lanes), default=0.0)
            groups[key].append(LaneGroup(edge, lanes, sum(shares.values()), busiest))

        for j, c in enumerate(state):
            if j not in active or j not in signal.links:
                continue
            edge = signal.links[j].from_edge
            moves = c == "G" or (c == "g" and j not in protected)
            if edge != run_edge:
                close(run_edge, run)
                run, run_edge = [], edge
            if moves:
                run.append(j)
        close(run_edge, run)
    return groups


def _stage_states(
    signal: Signal, settings: WebsterSettings
) -> tuple[dict[int, str], dict[int, int]]:
    """Each stage's combined state, and how many stages (phases) protect each link."""
    phases = signal.program.phases
    active = signal.active or frozenset(signal.links)
    states: dict[int, str] = {}
    for stage in stages(signal.program, settings):
        states[stage[0]] = "".join(
            "G"
            if any(phases[i].state[j] == "G" for i in stage)
            else "g"
            if any(phases[i].state[j] == "g" for i in stage)
            else "r"
            for j in range(signal.size)
        )
    counted = states.values() if settings.stages else (p.state for p in phases)
    protected: dict[int, int] = {}
    for state in counted:
        for j, c in enumerate(state):
            if c == "G" and j in active:
                protected[j] = protected.get(j, 0) + 1
    return states, protected


def _lane_needs(
    signal: Signal, flows: Mapping[int, float], settings: WebsterSettings
) -> dict[tuple[int, ...], float]:
    """Flow ratio to serve, keyed by the set of stages that serve it (the largest per set).

    On each lane, the turns served by the same stages queue and leave together: their flows
    add up, and those stages together must discharge them.
    """
    states, protected = _stage_states(signal, settings)
    active = signal.active or frozenset(signal.links)
    load: dict[tuple[str, int, tuple[int, ...]], float] = {}
    for j in sorted(active):
        if j not in signal.links or flows.get(j, 0.0) <= 0:
            continue
        link = signal.links[j]
        if settings.car_lanes_only and not link.passenger:
            continue
        serving = tuple(
            k
            for k, state in states.items()
            if state[j] == "G" or (state[j] == "g" and j not in protected)
        )
        if serving:
            key = (link.from_edge, link.from_lane, serving)
            load[key] = load.get(key, 0.0) + flows[j] / _turn(signal, j, settings)
    needs: dict[tuple[int, ...], float] = {}
    for (_, _, serving), flow in load.items():
        needs[serving] = max(needs.get(serving, 0.0), flow / settings.saturation_flow)
    return needs


def _least_ratios(keys: list[int], needs: Mapping[tuple[int, ...], float]) -> dict[int, float]:
    """Stage ratios of least total that give every lane its flow ratio (a linear program)."""
    index = {k: n for n, k in enumerate(keys)}
    a = np.zeros((len(needs), len(keys)))
    b = np.zeros(len(needs))
    for row, (serving, ratio) in enumerate(needs.items()):
        for k in serving:
            a[row, index[k]] = -1.0
        b[row] = -ratio
    found = linprog(np.ones(len(keys)), A_ub=a, b_ub=b, bounds=(0, None), method="highs")
    return {k: float(found.x[index[k]]) for k in keys}


def _equal_saturation(
    keys: list[int],
    needs: Mapping[tuple[int, ...], float],
    effective: float,
    cycle: float,
    minimum: float,
) -> dict[int, float] | None:
    """Greens (sum ``effective``, each ``>= minimum``) that maximise the least lane reserve."""
    n = len(keys)
    if effective < n * minimum:
        return None
    index = {k: i for i, k in enumerate(keys)}
    # variables: greens, then lambda; maximise lambda
    a = np.zeros((len(needs), n + 1))
    for row, (serving, ratio) in enumerate(needs.items()):
        for k in serving:
            a[row, index[k]] = -1.0
        a[row, n] = ratio * cycle
    found = linprog(
        np.r_[np.zeros(n), -1.0],
        A_ub=a,
        b_ub=np.zeros(len(needs)),
        A_eq=np.r_[np.ones(n), 0.0][None, :],
        b_eq=[effective],
        bounds=[(minimum, None)] * n + [(0, None)],
        method="highs",
    )
    if not found.success:
        return None
    return {k: float(found.x[index[k]]) for k in keys}


_TURN_FACTORS = {"r": 0.85, "R": 0.85, "t": 0.85, "l": 0.95, "L": 0.95}


def _turn(signal: Signal, link: int, settings: WebsterSettings) -> float:
    """HCM's saturation-flow factor of a link's turn (1 for straight on, or when not used)."""
    if not settings.turn_factors:
        return 1.0
    return _TURN_FACTORS.get(signal.links[link].direction, 1.0)


def critical_ratios(
    groups: Mapping[int, list[LaneGroup]], settings: WebsterSettings
) -> dict[int, float]:
    """Return each stage's critical flow ratio: its critical group's flow per lane over s."""
    ratios: dict[int, float] = {}
    for i, gs in groups.items():
        if settings.critical_per_lane:
            ratios[i] = max((max(g.busiest_lane, g.flow / len(g.lanes)) for g in gs), default=0.0)
            ratios[i] /= settings.saturation_flow
            continue
        best: LaneGroup | None = None
        for g in gs:
            if best is None or g.flow >= best.flow:
                best = g
        ratios[i] = 0.0 if best is None else best.flow / len(best.lanes) / settings.saturation_flow
    return ratios


def webster(
    signal: Signal, flows: Mapping[int, float], settings: WebsterSettings | None = None
) -> SignalTiming | None:
    """Time one signal by Webster's method.

    Parameters
    ----------
    signal
        The signal, with the program whose phases are re-timed (sequence and states kept).
    flows
        Hourly approach flow per link index, pcu.
    settings
        Webster's inputs; the twin's defaults when omitted.

    Returns
    -------
    SignalTiming or None
        The timing, or None when no flow reaches the signal (nothing to time by).
    """
    s = settings or WebsterSettings()
    program = signal.program
    if not program.phases:
        raise SignalError(f"signal {signal.id} has no phases", parameter="signals")
    groups = lane_groups(signal, flows, s)
    if not groups:
        raise SignalError(
            f"signal {signal.id} has no main green phase (a 'G' without yellow)",
            parameter="signals",
        )
    ratios = critical_ratios(groups, s)
    multi_phase = any(len(stage) > 1 for stage in stages(program, s))
    needs = _lane_needs(signal, flows, s) if s.shared_lanes and multi_phase else {}
    if needs and all(len(serving) == 1 for serving in needs):
        # no lane spans stages: the linear programs' answer is the busiest lane per stage
        ratios = {k: needs.get((k,), 0.0) for k in groups}
        needs = {}
    elif needs:
        ratios = _least_ratios(list(groups), needs)
    y_sum = sum(ratios.values())
    if y_sum <= 0:
        return None
    staged = {stage[0]: stage for stage in stages(program, s)}
    in_stages = {i for stage in staged.values() for i in stage}
    if s.lost_s is None:
        per_stage = 0.0
        lost = s.all_red_s + sum(
            p.duration for i, p in enumerate(program.phases) if i not in in_stages
        )
    else:
        per_stage = s.lost_s
        lost = len(groups) * s.lost_s + s.all_red_s
    if s.cycle_s is not None:
        cycle = float(s.cycle_s)
    elif s.existing_cycle:
        cycle = program.cycle
    else:
        cycle = s.max_cycle_s if y_sum >= 1 else float(round((1.5 * lost + 5) / (1 - y_sum)))
        cycle = min(max(cycle, s.min_cycle_s), s.max_cycle_s)
    yellows = _yellow_after(program, s) if s.lost_s is not None else {}
    after = {k: yellows.get(stage[-1], 0.0) for k, stage in staged.items()}
    effective = cycle - lost
    greens: dict[int, float] = {}
    at_minimum: list[int] = []
    for k in ratios:
        g = float(round(effective * ratios[k] / y_sum - after[k] + per_stage))
        if g < s.min_green_s:
            g = s.min_green_s
            at_minimum.append(k)
        greens[k] = g
    if needs:
        balanced = _equal_saturation(list(ratios), needs, effective, cycle, s.min_green_s)
        if balanced is not None:
            greens = {k: float(round(g)) for k, g in balanced.items()}
            at_minimum = []
    new = _program(program, staged, greens, s)
    if at_minimum and s.restrict_cycle and new.cycle > s.max_cycle_s and s.cycle_s is None:
        free = [k for k in greens if k not in at_minimum]
        spare = s.max_cycle_s - (new.cycle - sum(greens[k] for k in free))
        total = sum(greens[k] for k in free)
        for k in free:
            greens[k] = max(s.min_green_s, float(round(greens[k] / total * spare)))
        new = _program(program, staged, greens, s)
    target = s.cycle_s if s.cycle_s is not None else (cycle if s.lost_s is None else None)
    if target is not None and new.cycle != target:
        # whole-second rounding of the greens: the program lasts exactly the cycle computed
        greens = _fit(greens, new.cycle, float(target), s.min_green_s)
        new = _program(program, staged, greens, s)
    delay, x_max = _delay(groups, greens, after, per_stage, new.cycle, s)
    return SignalTiming(signal.id, new, new.cycle, ratios, greens, delay, x_max)


def _yellow_after(program: Program, s: WebsterSettings) -> dict[int, float]:
    """Yellow time that follows each phase (the settings' or the program's next yellow)."""
    out: dict[int, float] = {}
    n = len(program.phases)
    for i in range(n):
        if s.yellow_s is not None:
            out[i] = s.yellow_s
            continue
        nxt = program.phases[(i + 1) % n]
        out[i] = nxt.duration if "y" in nxt.state else 0.0
    return out


def _program(
    program: Program,
    staged: Mapping[int, list[int]],
    greens: Mapping[int, float],
    s: WebsterSettings,
) -> Program:
    """Write stage greens into the phases: a stage's phases share it as they shared it before."""
    durations: dict[int, float] = {}
    for key, green in greens.items():
        phases = staged[key]
        if len(phases) == 1:
            durations[phases[0]] = green
            continue
        before = [program.phases[i].duration for i in phases]
        total = sum(before) or len(before)
        shares = [max(1.0, float(round(green * d / total))) for d in before]
        longest = max(range(len(shares)), key=lambda n: shares[n])
        shares[longest] = max(1.0, shares[longest] + green - sum(shares))
        durations |= dict(zip(phases, shares, strict=True))
    if s.yellow_s is not None:
        for i, p in enumerate(program.phases):
            if i not in durations and p.is_yellow:
                durations[i] = s.yellow_s
    return program.with_durations(durations)


def _fit(greens: dict[int, float], total: float, target: float, minimum: float) -> dict[int, float]:
    """Stretch or shrink the greens (whole seconds, longest first) so the cycle hits target."""
    out = dict(greens)
    diff = round(target - total)
    order = sorted(out, key=lambda i: -out[i])
    k = 0
    guard = 0
    while diff != 0 and guard < 10_000:
        i = order[k % len(order)]
        step = 1 if diff > 0 else -1
        if step > 0 or out[i] - 1 >= minimum:
            out[i] += step
            diff -= step
        k += 1
        guard += 1
    return out


def _delay(
    groups: Mapping[int, list[LaneGroup]],
    greens: Mapping[int, float],
    yellows: Mapping[int, float],
    lost: float,
    cycle: float,
    s: WebsterSettings,
) -> tuple[float, float]:
    """HCM 2010 control delay (uniform + incremental, one hour) averaged over the flow."""
    total_flow = total_delay = 0.0
    x_max = 0.0
    for i, gs in groups.items():
        g_eff = max(greens[i] + yellows[i] - lost, 1.0)
        share = g_eff / cycle
        for group in gs:
            if group.flow <= 0:
                continue
            capacity = s.saturation_flow * len(group.lanes) * share
            x = group.flow / capacity
            x_max = max(x_max, x)
            d1 = 0.5 * cycle * (1 - share) ** 2 / (1 - min(1.0, x) * share)
            d2 = 900 * ((x - 1) + math.sqrt((x - 1) ** 2 + 4 * x / capacity))
            total_delay += group.flow * (d1 + d2)
            total_flow += group.flow
    return (total_delay / total_flow if total_flow else 0.0), x_max


def predicted_delay(
    signal: Signal,
    flows: Mapping[int, float],
    settings: WebsterSettings | None = None,
    *,
    program: Program | None = None,
) -> tuple[float, float]:
    """Return HCM's predicted delay of a signal's program as it stands, under given flows.

    The program is not re-timed: each stage's green is the sum of its phases' durations, and
    the delay is computed exactly as :func:`webster` computes its own timing's (lane groups,
    saturation flow, lost time per stage and yellows from ``settings``), so that the two
    compare like for like.

    Parameters
    ----------
    signal
        The signal (its links; its program unless ``program`` is given).
    flows
        Hourly approach flow per link index, pcu/h.
    settings
        Webster's inputs (the twin's defaults when omitted).
    program
        The program to rate (by default the signal's own).

    Returns
    -------
    tuple of float
        Mean control delay per vehicle, s (HCM 2010 uniform + incremental delay, one-hour
        analysis period, eq. 18-19 to 18-21), and the highest degree of saturation.

    Raises
    ------
    SignalError
        When the program has no phases or no main green phase.
    """
    s = settings or WebsterSettings()
    rated = signal if program is None else replace(signal, program=program)
    if not rated.program.phases:
        raise SignalError(f"signal {signal.id} has no phases", parameter="signals")
    groups = lane_groups(rated, flows, s)
    if not groups:
        raise SignalError(
            f"signal {signal.id} has no main green phase (a 'G' without yellow)",
            parameter="signals",
        )
    staged = {stage[0]: stage for stage in stages(rated.program, s)}
    greens = {
        k: sum(rated.program.phases[i].duration for i in stage) for k, stage in staged.items()
    }
    per_stage = 0.0 if s.lost_s is None else s.lost_s
    yellows = _yellow_after(rated.program, s) if s.lost_s is not None else {}
    after = {k: yellows.get(stage[-1], 0.0) for k, stage in staged.items()}
    return _delay(groups, greens, after, per_stage, rated.program.cycle, s)
