"""Actuated-coordinated control: the city's cycle and offsets kept, unused time re-used.

Coordinated-actuated operation as in the FHWA *Traffic Signal Timing Manual* (2nd ed., NCHRP
Report 812, 2015, chapter 6, "coordination") and NEMA TS 2 controllers, expressed on the stages
of the base program (:class:`~routing.signals.control.base.Stage`):

1. **Cycle clock.** The base program's cycle length ``C`` and offset are kept. The cycle
   position is ``(now - offset) mod C``, the position SUMO's own fixed-time program would be at
   (SUMO ``MSSimpleTrafficLightLogic``: a positive offset delays the program), so signals
   coordinated by their fixed-time plans stay coordinated.
2. **Coordinated stage.** The stage with the longest total green in the base program (on an
   arterial, the main street's through stage) is the coordinated one. Its force-off (the
   *yield point*) is the end of its green in the base program; it is never ended before then,
   and after it, it is kept (rests in green) when no other stage has demand.
3. **Fixed force-offs.** Every other stage ends at the latest at the end of its green in the
   base program (its force-off point, FHWA TSTM 2015 section 6.4.4, "fixed force-off"). It may
   start early, when the stages before it gapped out or were skipped, and it may end early
   (gap-out: no served lane has had a stop-line passage within ``gap_s`` while vehicles are on
   its detector; FHWA TSTM 2015 table 5-4, passage time; 5 s by default, tuned on Andrea
   Costa), giving its unused time to the next stage in cycle order and, after the last, back
   to the coordinated stage (early return).
4. **Skipping.** A stage nobody waits for (no vehicle on the detector of a lane it adds to the
   current stage) is skipped; a stage that serves no vehicle lane (pedestrians only) is on
   recall. A stage is only started when its minimum green fits before its force-off.

Stages are visited at most once per cycle, in the base program's order starting after the
yield point. Minimum and maximum green, the change intervals and the starvation guard are
the :class:`~routing.signals.control.base.SignalHead`'s. A coordinated stage green longer than
``SafetyRules.max_green_s`` (60 s by default) is maxed out by the head, which then serves the
next stage for its minimum green before the controller returns to the coordinated stage. On
Bologna's Andrea Costa scenario (seeds 1-2, the only tuning data) the default 60 s measured
better than 120 s (mean time loss 162.8 s vs 165.9 s, with a 3 s gap), so the default rules
are kept.

Only plain fixed-time cycles carry a coordination to keep: programs of type ``actuated`` or
``delay_based``, or with ``next`` jumps between phases (netconvert's defaults), are not read
as a cycle here; :func:`hybrid` runs :class:`Coordinated` on the fixed-time signals
(:func:`fixed_time_signals`) and the twin's :class:`~routing.signals.control.adaptive.Adaptive`
on the others.

References
----------
FHWA (2015). Traffic Signal Timing Manual, 2nd ed., NCHRP Report 812, chapter 6 (cycle,
offset, force-off, yield point, early return to the coordinated phase) and table 5-4 (passage
time). NEMA TS 2-2003, Traffic Controller Assemblies with NTCIP Requirements, section 3.6
(coordination). SUMO documentation, "Traffic Lights", attribute ``offset`` of ``tlLogic``.
"""

from __future__ import annotations

import gzip
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routing.signals.control.adaptive import Adaptive
from routing.signals.control.base import (
    ControlledSignal,
    Controller,
    Decision,
    Measurements,
    checked_number,
)
from routing.signals.model import SignalError

_EPS = 1e-6


@dataclass(frozen=True)
class Window:
    """One green phase of the base program on the cycle measured from the yield point.

    Attributes
    ----------
    stage
        The stage it is (index).
    start_s, force_off_s
        Its green start and end (force-off), s after the coordinated stage's yield point,
        ``0 <= start_s < force_off_s <= cycle_s``.
    """

    stage: int
    start_s: float
    force_off_s: float


@dataclass(frozen=True)
class Plan:
    """A signal's coordination plan, taken from its base program.

    Attributes
    ----------
    cycle_s
        Cycle length, s.
    offset_s
        The program's offset, s.
    coordinated
        The coordinated stage (longest total green).
    yield_s
        Cycle position (from the program's start) of the coordinated stage's force-off, s.
    windows
        Green phases of the other stages, in cycle order from the yield point.
    coordinated_from_s
        Start of the coordinated stage's main green, s after the yield point.
    served
        Stages x incoming lanes: whether the stage's green links leave the lane.
    """

    cycle_s: float
    offset_s: float
    coordinated: int
    yield_s: float
    windows: tuple[Window, ...]
    coordinated_from_s: float
    served: np.ndarray

    def since_yield(self, now: float) -> tuple[int, float]:
        """Return the cycle number and the time since the yield point at a simulation time.

        Parameters
        ----------
        now
            Simulation time, s.

        Returns
        -------
        tuple
            ``(cycle, seconds)``: cycles counted from the yield point before time 0, and
            seconds since the last yield point, ``0 <= seconds < cycle_s``.
        """
        t = now - self.offset_s - self.yield_s
        cycle = int(np.floor(t / self.cycle_s + _EPS))
        return cycle, max(t - cycle * self.cycle_s, 0.0)


def plan_of(signal: ControlledSignal) -> Plan:
    """Return a signal's coordination plan: cycle, offset, coordinated stage and force-offs.

    Parameters
    ----------
    signal
        The controlled signal; its base program gives the timing.

    Returns
    -------
    Plan
        The plan (see the module docstring).

    Raises
    ------
    SignalError
        When the base program has no positive cycle length.
    """
    program = signal.signal.program
    cycle = program.cycle
    if not cycle > 0:
        raise SignalError(
            f"signal {signal.id}: base program has no positive cycle length", parameter="signal"
        )
    by_state = {s.state: s.index for s in signal.stages}
    runs: list[tuple[int, float, float]] = []  # (stage, start, end) of each green run
    t = 0.0
    for ph in program.phases:
        stage = by_state.get(ph.state) if ph.is_green else None
        if stage is not None and runs and runs[-1][0] == stage and abs(runs[-1][2] - t) < _EPS:
            runs[-1] = (stage, runs[-1][1], t + ph.duration)
        elif stage is not None:
            runs.append((stage, t, t + ph.duration))
        t += ph.duration
    total = np.zeros(len(signal.stages))
    for stage, a, b in runs:
        total[stage] += b - a
    coordinated = int(np.argmax(total))
    main = max((r for r in runs if r[0] == coordinated), key=lambda r: r[2] - r[1])
    yield_s = main[2] % cycle
    windows = []
    for stage, a, b in runs:
        if (stage, a, b) == main:
            continue
        start = (a - yield_s) % cycle
        windows.append(Window(stage, start, start + (b - a)))
    windows.sort(key=lambda w: w.start_s)
    served = np.zeros((len(signal.stages), len(signal.in_lanes)), dtype=bool)
    for s in signal.stages:
        for link in s.green:
            lane = signal.link_in[link] if link < len(signal.link_in) else -1
            if lane >= 0:
                served[s.index, lane] = True
    return Plan(
        cycle,
        program.offset,
        coordinated,
        yield_s,
        tuple(windows),
        cycle - (main[2] - main[1]),
        served,
    )


class Coordinated:
    """Actuated-coordinated controller keeping the base program's cycle and offset.

    See the module docstring for the rule and its sources.

    Parameters
    ----------
    gap_s
        Passage time, s: a non-coordinated stage gaps out when none of its lanes with
        vehicles on the detector has had a stop-line passage within this time. FHWA TSTM 2015
        table 5-4 gives 2..3 s for detectors set back from the stop line; the gap here is
        measured at the stop line itself, and 5 s measured better than 3 s and 2 s on Andrea
        Costa (seeds 1-2, mean time loss 158.5 s vs 162.8 s; seed 1 with 2 s: 160.8 s).

    Raises
    ------
    SignalError
        When ``gap_s`` is not positive.
    """

    def __init__(self, *, gap_s: float = 5.0) -> None:
        self.gap_s = checked_number(gap_s, "gap_s")
        self.name = "coordinated"
        self._plans: dict[str, Plan] = {}
        self._visited: dict[str, tuple[int, int]] = {}  # signal -> (cycle, last window served)

    def reset(self, signal: ControlledSignal) -> None:
        """Prepare for a signal: its coordination plan; forget what was served.

        Parameters
        ----------
        signal
            The signal.
        """
        self._plans[signal.id] = plan_of(signal)
        self._visited.pop(signal.id, None)

    def plan(self, signal: ControlledSignal) -> Plan:
        """Return the signal's coordination plan (made on first use).

        Parameters
        ----------
        signal
            The signal.

        Returns
        -------
        Plan
            Its plan.
        """
        found = self._plans.get(signal.id)
        if found is None:
            found = self._plans[signal.id] = plan_of(signal)
        return found

    def discharging(self, signal: ControlledSignal, stage: int, m: Measurements) -> bool:
        """Whether a stage still discharges: a served lane has vehicles and a gap below ``gap_s``.

        Parameters
        ----------
        signal
            The signal.
        stage
            Stage index.
        m
            Its measurements.

        Returns
        -------
        bool
            True while some lane the stage serves has vehicles on its detector and its last
            stop-line passage is less than ``gap_s`` ago.
        """
        lanes = self.plan(signal).served[stage]
        return bool(np.any(lanes & (m.count > 0) & (m.gap_s < self.gap_s)))

    def demand(self, signal: ControlledSignal, stage: int, current: int, m: Measurements) -> bool:
        """Whether a stage has demand: a vehicle waits on a lane it serves and ``current`` does not.

        Parameters
        ----------
        signal
            The signal.
        stage
            The stage asked about.
        current
            The stage being served.
        m
            The measurements.

        Returns
        -------
        bool
            True when such a lane has vehicles on its detector, or the stage serves no
            vehicle lane at all (pedestrian stage: on recall).
        """
        served = self.plan(signal).served
        lanes = served[stage]
        if not lanes.any():
            return True
        return bool(np.any(lanes & ~served[current] & (m.count > 0)))

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        """Return the stage to serve next.

        Parameters
        ----------
        now
            Simulation time, s.
        signal
            The signal.
        current
            The stage being served.
        green_s
            How long it has been green, s.
        m
            The measurements.

        Returns
        -------
        Decision
            ``coordinated`` (hold the coordinated stage before its yield point),
            ``discharging`` (hold a stage before its force-off), ``force-off``, ``gap-out``
            or ``yield`` (switch to the next stage in cycle order with demand whose minimum
            green fits before its force-off, else back to the coordinated stage), ``rest``
            (hold: nothing else to serve).
        """
        plan = self.plan(signal)
        if len(signal.stages) < 2:
            return Decision(current, "rest")
        cycle, q = plan.since_yield(now)
        seen_cycle, last = self._visited.get(signal.id, (cycle, -1))
        if seen_cycle != cycle:
            last = -1
        windows = plan.windows
        if current == plan.coordinated:
            if q + _EPS >= plan.coordinated_from_s:
                self._visited[signal.id] = (cycle, len(windows))
                return Decision(current, "coordinated")
            reason = "yield"
        else:
            mine = [k for k, w in enumerate(windows) if w.stage == current and k > last]
            if not mine:  # served outside its window (start-up, starvation guard)
                mine = [k for k, w in enumerate(windows) if w.stage == current]
            k_now = min(mine, key=lambda k: abs(windows[k].start_s - q)) if mine else last
            last = max(last, k_now)
            self._visited[signal.id] = (cycle, last)
            force_off = windows[k_now].force_off_s if mine else 0.0
            if q + _EPS < force_off and self.discharging(signal, current, m):
                return Decision(current, "discharging")
            reason = "gap-out" if q + _EPS < force_off else "force-off"
        stage = signal.stages[current]
        change = stage.yellow_s + stage.all_red_s
        for k in range(last + 1, len(windows)):
            w = windows[k]
            if w.stage == current:
                continue
            target = signal.stages[w.stage]
            if q + change + target.min_green_s > w.force_off_s + _EPS:
                continue
            if self.demand(signal, w.stage, current, m):
                self._visited[signal.id] = (cycle, k - 1)
                return Decision(w.stage, reason)
        if current == plan.coordinated:
            return Decision(current, "rest")
        return Decision(plan.coordinated, reason)


def fixed_time_signals(paths: Iterable[str | os.PathLike[str]]) -> set[str]:
    """Return the signals whose program is a plain fixed-time cycle (the coordinatable ones).

    Parameters
    ----------
    paths
        Network and additional files holding ``tlLogic`` elements (``.gz`` allowed); as in
        SUMO, the last program read for a signal is the one it runs.

    Returns
    -------
    set of str
        Ids of the signals whose program has ``type="static"`` (SUMO's default) and no phase
        with a ``next`` attribute (a phase sequence that is not one plain cycle). Actuated and
        delay-based programs (netconvert's defaults) carry no coordination to keep.

    Raises
    ------
    SignalError
        When a file is missing or not well-formed XML.
    """
    fixed: dict[str, bool] = {}
    for path in paths:
        path = Path(path)
        try:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as f:
                for _, el in ET.iterparse(f):
                    if el.tag != "tlLogic":
                        continue
                    static = el.get("type", "static") == "static"
                    plain = all(ph.get("next") is None for ph in el.iter("phase"))
                    fixed[str(el.get("id"))] = static and plain
                    el.clear()
        except (OSError, ET.ParseError) as exc:
            raise SignalError(
                f"cannot read signal programs from {path}: {exc}", parameter="paths"
            ) from exc
    return {sid for sid, ok in fixed.items() if ok}


def hybrid(
    fixed_time: Collection[str], *, gap_s: float = 5.0
) -> Callable[[ControlledSignal], Controller]:
    """Return a controller factory: :class:`Coordinated` on fixed-time signals, else Adaptive.

    Parameters
    ----------
    fixed_time
        Ids of the signals whose base program is a coordinated fixed-time plan (see
        :func:`fixed_time_signals`).
    gap_s
        Passage time of :class:`Coordinated`, s (see there); Adaptive keeps its own defaults.

    Returns
    -------
    callable
        ``signal -> controller`` for :func:`routing.signals.control.runner.run_controlled`.

    Raises
    ------
    SignalError
        When ``gap_s`` is not positive.
    """
    Coordinated(gap_s=gap_s)  # validates the option now, not in the middle of a run
    ids = frozenset(fixed_time)

    def make(signal: ControlledSignal) -> Controller:
        if signal.id in ids:
            return Coordinated(gap_s=gap_s)
        return Adaptive()

    return make
