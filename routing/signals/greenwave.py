"""Green waves: one common cycle and the offsets that maximise two-way bandwidth (MAXBAND).

Little's MAXBAND, written with explicit offsets: along a corridor of signals, a band of width
``b`` leaves the first signal at ``tau`` and reaches signal ``i`` after the travel time ``T_i``;
it must fit inside one of the signal's outbound greens, ``o_i + a_i + n_i C <= tau + T_i`` and
``tau + T_i + b <= o_i + a_i + g_i + n_i C`` with integer ``n_i``; the inbound band likewise
from the last signal back. The mixed-integer program maximises ``b + k b_in`` (``k`` the
inbound weight) and is solved exactly by HiGHS through PuLP. Where greens are short no band
may pass both ways; the one-way programs are solved too and the best kept. The bands reported
are measured from the offsets found, not read from the solver.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pulp

from routing.signals import sumo
from routing.signals.model import Program, Signal, SignalError
from routing.signals.plans import Plan, optimise
from routing.signals.sumo import scenario_signals
from routing.signals.webster import WebsterSettings


@dataclass(frozen=True)
class CorridorSignal:
    """A signal on a corridor: where it stands and when its through greens show.

    Attributes
    ----------
    id
        The signal's id.
    position_m
        Distance along the corridor from its first signal, m.
    green_out, green_in
        (start, duration), s, of the outbound and inbound through greens within the signal's
        own cycle (as if its offset were 0).
    """

    id: str
    position_m: float
    green_out: tuple[float, float]
    green_in: tuple[float, float]


@dataclass(frozen=True)
class GreenWave:
    """A coordinated corridor: the cycle, each signal's offset and the bandwidths (s)."""

    cycle: float
    offsets: Mapping[str, float]
    bandwidth_out_s: float
    bandwidth_in_s: float
    signals: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the green wave as JSON."""
        return {
            "signals": list(self.signals),
            "cycle_s": self.cycle,
            "offsets_s": {k: round(v, 2) for k, v in self.offsets.items()},
            "bandwidth_out_s": round(self.bandwidth_out_s, 2),
            "bandwidth_in_s": round(self.bandwidth_in_s, 2),
        }


def maxband(
    corridor: Sequence[CorridorSignal],
    *,
    cycle: float,
    speed_ms: float | None = None,
    travel_out_s: Sequence[float] | None = None,
    travel_in_s: Sequence[float] | None = None,
    weight_in: float = 1.0,
) -> GreenWave:
    """Find the offsets that maximise the two-way bandwidth of a corridor.

    Parameters
    ----------
    corridor
        Signals in corridor order (the outbound direction), at least two.
    cycle
        The common cycle, s.
    speed_ms
        Progression speed, m/s (travel times from the positions).
    travel_out_s, travel_in_s
        Travel times between consecutive signals, s, outbound (``i`` to ``i+1``) and inbound
        (``i+1`` to ``i``); instead of ``speed_ms``.
    weight_in
        Weight of the inbound bandwidth (its share of the traffic; 0 for a one-way wave).

    Returns
    -------
    GreenWave
        Offsets (the first signal's is 0), bandwidths per direction.
    """
    n = len(corridor)
    if n < 2:
        raise SignalError("a corridor needs at least two signals", parameter="corridor")
    gaps = [b.position_m - a.position_m for a, b in itertools.pairwise(corridor)]
    if travel_out_s is None:
        if not speed_ms or speed_ms <= 0:
            raise SignalError("give a speed or travel times", parameter="speed")
        travel_out_s = [g / speed_ms for g in gaps]
    if travel_in_s is None:
        travel_in_s = list(travel_out_s)
    if len(travel_out_s) != n - 1 or len(travel_in_s) != n - 1:
        raise SignalError("one travel time per pair of neighbours", parameter="travel")
    t_out = [0.0]
    for t in travel_out_s:
        t_out.append(t_out[-1] + t)
    t_in = [0.0] * n  # travel time from the last signal back to signal i
    for i in range(n - 2, -1, -1):
        t_in[i] = t_in[i + 1] + travel_in_s[i]

    ids = tuple(c.id for c in corridor)
    # Both bands through every signal, or only one of them: the best of the three programs
    # (a two-way band may not exist at all where greens are short).
    best: GreenWave | None = None
    best_value = -1.0
    for outbound, inbound in ((True, True), (True, False), (False, True)):
        if inbound and weight_in <= 0:
            continue
        offsets = _solve(corridor, cycle, t_out, t_in, weight_in, outbound, inbound)
        if offsets is None:
            continue
        b = band(corridor, offsets, t_out, cycle, inbound=False)
        b_in = band(corridor, offsets, t_in, cycle, inbound=True)
        value = b + weight_in * b_in
        if value > best_value + 1e-6:
            best_value = value
            best = GreenWave(cycle, dict(zip(ids, offsets, strict=True)), b, b_in, ids)
    if best is None:
        raise SignalError("MAXBAND found no solution", parameter="corridor")
    return best


def _solve(
    corridor: Sequence[CorridorSignal],
    cycle: float,
    t_out: Sequence[float],
    t_in: Sequence[float],
    weight_in: float,
    outbound: bool,
    inbound: bool,
) -> list[float] | None:
    """Solve MAXBAND for the bands asked for; offsets in [0, cycle), or None if infeasible."""
    n = len(corridor)
    prob = pulp.LpProblem("maxband", pulp.LpMaximize)
    b = prob.add_variable("b", 0, min(c.green_out[1] for c in corridor))
    b_in = prob.add_variable("b_in", 0, min(c.green_in[1] for c in corridor))
    tau = prob.add_variable("tau", 0, cycle)
    tau_in = prob.add_variable("tau_in", 0, cycle)
    offsets = [prob.add_variable(f"o{i}", 0, cycle) for i in range(n)]
    prob += offsets[0] == 0
    span = math.ceil(max(t_out[-1], t_in[0]) / cycle) + 2
    for i, c in enumerate(corridor):
        if outbound:
            k = prob.add_variable(f"n{i}", -span, span, cat="Integer")
            a, g = c.green_out
            prob += offsets[i] + a + cycle * k <= tau + t_out[i]
            prob += tau + t_out[i] + b <= offsets[i] + a + g + cycle * k
        if inbound:
            k = prob.add_variable(f"m{i}", -span, span, cat="Integer")
            a, g = c.green_in
            prob += offsets[i] + a + cycle * k <= tau_in + t_in[i]
            prob += tau_in + t_in[i] + b_in <= offsets[i] + a + g + cycle * k
    # a tiny pull towards small offsets makes the answer unique where the band leaves room
    objective = (b if outbound else 0) + (weight_in * b_in if inbound else 0)
    prob += objective - 1e-6 * pulp.lpSum(offsets)
    status = prob.solve(pulp.HiGHS(msg=False))
    if pulp.LpStatus[status] != "Optimal":
        return None
    return [round(float(pulp.value(o) or 0.0) % cycle, 6) for o in offsets]


def band(
    corridor: Sequence[CorridorSignal],
    offsets: Sequence[float],
    arrivals: Sequence[float],
    cycle: float,
    *,
    inbound: bool,
) -> float:
    """Measure the band (s) that passes every green, for given offsets and arrival times.

    Parameters
    ----------
    corridor
        The signals.
    offsets
        Each signal's offset, s.
    arrivals
        When the band reaches each signal after leaving the first one it meets, s.
    cycle
        The common cycle, s.
    inbound
        Measure the inbound greens (else the outbound ones).

    Returns
    -------
    float
        The widest run of departure times (modulo the cycle) that meets green everywhere.
    """
    opens, greens = [], []
    for c, o, t in zip(corridor, offsets, arrivals, strict=True):
        a, g = c.green_in if inbound else c.green_out
        opens.append((o + a - t) % cycle)
        greens.append(g)
    best = 0.0
    for start in opens:
        left = min(g - (start - o) % cycle for o, g in zip(opens, greens, strict=True))
        best = max(best, left)
    return max(best, 0.0)


def green_window(program: Program, links: Sequence[int]) -> tuple[float, float]:
    """Return (start, duration), s, of the longest run of phases where all links are green.

    Parameters
    ----------
    program
        The program.
    links
        Link indices of the movement.

    Returns
    -------
    tuple
        Start within the cycle and length of the green window (0 length if never green).
    """
    phases = program.phases
    starts = [0.0]
    for p in phases:
        starts.append(starts[-1] + p.duration)
    green = [all(p.state[j] in "Gg" for j in links) for p in phases]
    best = (0.0, 0.0)
    n = len(phases)
    for i in range(n):
        if not green[i] or (green[i - 1] and not all(green)):
            continue
        length, k = 0.0, i
        while green[k % n] and length < program.cycle:
            length += phases[k % n].duration
            k += 1
        if length > best[1]:
            best = (starts[i], length)
    return best


@dataclass(frozen=True)
class _Pair:
    """Traffic from one signal to the next: vehicles, travel time and the links used."""

    flow: float
    travel_s: float
    links_from: tuple[int, ...]
    links_to: tuple[int, ...]


def _pairs(
    net: Any,
    signals: Mapping[str, Signal],
    trips: Sequence[sumo.Trip],
    begin: float,
    speed_factor: float,
) -> tuple[dict[tuple[str, str], _Pair], dict[tuple[str, str, str], float]]:
    """Count the traffic between consecutive signals (and on through three) in the peak hour."""
    by_turn: dict[tuple[str, str], tuple[str, int]] = {}
    for sid, sig in signals.items():
        for link in sig.links.values():
            by_turn.setdefault((link.from_edge, link.to_edge), (sid, link.index))
    flows: dict[tuple[str, str], float] = collections.defaultdict(float)
    through: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    travel: dict[tuple[str, str], float] = {}
    used: dict[tuple[str, str], tuple[collections.Counter[int], collections.Counter[int]]] = {}
    for trip in trips:
        if not begin <= trip.depart < begin + 3600:
            continue
        last: tuple[str, int, int] | None = None  # signal, link, position of its out-edge
        passed: list[str] = []
        for k, (a, b) in enumerate(zip(trip.edges, trip.edges[1:], strict=False)):
            hit = by_turn.get((a, b))
            if hit is None:
                continue
            if last is not None and last[0] != hit[0]:
                key = (last[0], hit[0])
                flows[key] += trip.pce(vehicle_class=True)
                if key not in travel:
                    edges = trip.edges[last[2] : k + 1]
                    travel[key] = sum(
                        net.getEdge(e).getLength() / (net.getEdge(e).getSpeed() * speed_factor)
                        for e in edges
                    )
                counters = used.setdefault(key, (collections.Counter(), collections.Counter()))
                counters[0][last[1]] += 1
                counters[1][hit[1]] += 1
                if len(passed) >= 2:
                    through[passed[-2], passed[-1], hit[0]] += trip.pce(vehicle_class=True)
            if not passed or passed[-1] != hit[0]:
                passed.append(hit[0])
            last = (hit[0], hit[1], k + 1)
    pairs = {
        key: _Pair(
            flows[key],
            travel[key],
            tuple(j for j, _ in used[key][0].most_common(1)),
            tuple(j for j, _ in used[key][1].most_common(1)),
        )
        for key in flows
    }
    return pairs, dict(through)


def corridors(
    pairs: Mapping[tuple[str, str], _Pair],
    through: Mapping[tuple[str, str, str], float],
    *,
    min_flow: float = 1.0,
    min_through: float = 0.3,
) -> list[list[str]]:
    """Chain signals into corridors, heaviest two-way traffic first; each signal in one chain.

    A chain grows from its end ``b`` (reached from ``a``) to ``c`` only where traffic goes on
    through: at least ``min_through`` of the flow between ``a`` and ``b`` (either way) drives
    ``a, b, c`` (or back), so a corridor follows a street rather than any neighbour.
    """
    weight: dict[frozenset[str], float] = collections.defaultdict(float)
    for (a, b), p in pairs.items():
        if a != b:
            weight[frozenset((a, b))] += p.flow
    neighbours: dict[str, set[str]] = collections.defaultdict(set)
    for edge in weight:
        a, b = sorted(edge)
        neighbours[a].add(b)
        neighbours[b].add(a)

    def goes_on(a: str, b: str, c: str) -> float:
        return through.get((a, b, c), 0.0) + through.get((c, b, a), 0.0)

    placed: set[str] = set()
    chains: list[list[str]] = []
    for edge, w in sorted(weight.items(), key=lambda kv: (-kv[1], sorted(kv[0]))):
        a, b = sorted(edge)
        if w < min_flow or a in placed or b in placed:
            continue
        chain = [a, b]
        placed |= {a, b}
        grown = True
        while grown:
            grown = False
            for at_head in (False, True):
                prev, end = (chain[1], chain[0]) if at_head else (chain[-2], chain[-1])
                base = weight[frozenset((prev, end))]
                options = [
                    (goes_on(prev, end, c), c)
                    for c in sorted(neighbours[end] - placed)
                    if goes_on(prev, end, c) >= max(min_flow, min_through * base)
                ]
                if options:
                    _, nxt = max(options)
                    if at_head:
                        chain.insert(0, nxt)
                    else:
                        chain.append(nxt)
                    placed.add(nxt)
                    grown = True
        chains.append(chain)
    return chains


def coordinate(
    scenario: sumo.Scenario,
    plan: Plan,
    *,
    base: str = "scenario",
    settings: WebsterSettings | None = None,
    speed_factor: float = 0.8,
) -> Plan:
    """Coordinate a scenario's Webster plan: one common cycle, MAXBAND offsets per corridor.

    The common cycle is the longest of the plan's cycles; every signal is re-split to it.
    Corridors chain the signals by the traffic between them (peak hour); along each, the
    offsets maximise the bandwidth, each direction weighted by its flow.

    Parameters
    ----------
    scenario
        The scenario.
    plan
        Its Webster plan (see :func:`routing.signals.plans.optimise_scenario`).
    base
        Whose programs were timed (as for the plan).
    settings
        Webster's inputs (as for the plan).
    speed_factor
        Progression speed as a share of the speed limit.

    Returns
    -------
    Plan
        The coordinated plan, with each corridor's bandwidths.
    """
    s = settings or plan.settings
    signals, flows = scenario_signals(scenario, base=base)
    if not plan.timings:
        return plan
    trips = scenario.read_trips()
    pairs, through = _pairs(scenario.read_net(), signals, trips, scenario.peak_hour(), speed_factor)
    result = Plan(dict(plan.timings), s, list(plan.idle))
    timed = set(plan.timings)
    inside = {k: v for k, v in pairs.items() if k[0] in timed and k[1] in timed}
    for chain in corridors(inside, through):
        cycle = max(plan.timings[sid].cycle for sid in chain)
        common = optimise(signals, flows, settings=replace(s, cycle_s=cycle), ids=chain)
        members: list[CorridorSignal] = []
        out_times: list[float] = []
        in_times: list[float] = []
        position = 0.0
        for i, sid in enumerate(chain):
            fwd_in = pairs.get((chain[i - 1], sid)) if i > 0 else None
            fwd_out = pairs.get((sid, chain[i + 1])) if i + 1 < len(chain) else None
            bwd_in = pairs.get((chain[i + 1], sid)) if i + 1 < len(chain) else None
            bwd_out = pairs.get((sid, chain[i - 1])) if i > 0 else None
            out_links = (fwd_in.links_to if fwd_in else ()) or (
                fwd_out.links_from if fwd_out else ()
            )
            in_links = (bwd_in.links_to if bwd_in else ()) or (
                bwd_out.links_from if bwd_out else ()
            )
            program = common.timings[sid].program
            window_out = green_window(program, out_links) if out_links else None
            window_in = green_window(program, in_links) if in_links else None
            window_out = window_out or window_in or (0.0, program.cycle)
            window_in = window_in or window_out
            members.append(CorridorSignal(sid, position, window_out, window_in))
            if i + 1 < len(chain):
                t_out = fwd_out.travel_s if fwd_out else (bwd_in.travel_s if bwd_in else 0.0)
                out_times.append(t_out)
                in_times.append(bwd_in.travel_s if bwd_in else t_out)
                position += t_out
        links = list(itertools.pairwise(chain))
        flow_out = sum(pairs[a, b].flow for a, b in links if (a, b) in pairs)
        flow_in = sum(pairs[b, a].flow for a, b in links if (b, a) in pairs)
        wave = maxband(
            members,
            cycle=cycle,
            travel_out_s=out_times,
            travel_in_s=in_times,
            weight_in=(flow_in / flow_out) if flow_out else 1.0,
        )
        for sid, offset in wave.offsets.items():
            t = common.timings[sid]
            result.timings[sid] = replace(t, program=replace(t.program, offset=round(offset, 1)))
        result.bandwidth.append(wave.to_json())
    return result
