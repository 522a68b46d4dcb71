"""The controller interface and the safety state machine every controller runs behind.

A *controller* (max pressure, actuated, the twin's adaptive one ...) only chooses which green
*stage* to serve next; the :class:`SignalHead` turns its decisions into SUMO state strings and
keeps the safety rules whatever the controller asks: minimum green, maximum green (max-out),
the program's own yellow and all-red change intervals, and a starvation guard (no movement
waits longer than the maximum cycle).

Stages are the distinct green phases (:attr:`routing.signals.model.Phase.is_green`) of the
signal's base program, in cycle order. The change interval after a stage is the one the base
program runs after that phase: its longest yellow phase (3 s when it has none) and its all-red
phases (states without green or yellow); when no all-red follows the phase but the program has
one elsewhere, the program's longest all-red applies (the safe choice).

References
----------
FHWA, *Traffic Signal Timing Manual*, 2nd ed., NCHRP Report 812, 2015 (minimum green,
maximum green, pedestrian walk and clearance, change intervals). FHWA, *Manual on Uniform
Traffic Control Devices*, 2009, section 4E.06 (pedestrian clearance walking speed 3.5 ft/s
~ 1.07 m/s; 1.2 m/s = 4 ft/s is the value where extended clearance is provided otherwise).
TRB, *Highway Capacity Manual*, 6th ed., 2016, eq. 19-8 (base saturation flow 1900 pc/h/ln,
turn adjustment factors 0.95 left, 0.85 right).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from routing.signals.model import Program, Signal, SignalError

DEFAULT_YELLOW_S = 3.0
BASE_SATURATION_FLOW = 1900.0 / 3600.0  # HCM 6th ed. eq. 19-8: 1900 pc/h/ln, in veh/s
AREA_FACTOR = 0.9  # HCM 6th ed. exhibit 19-11: area type factor, central business district
TURN_FACTORS = {"r": 0.85, "R": 0.85, "t": 0.85, "l": 0.95, "L": 0.95}  # HCM eq. 19-8
GREEN = frozenset("Gg")


def checked_number(value: Any, name: str, *, strict: bool = True) -> float:
    """Return an option as a float, refusing what is not a finite number above zero.

    Parameters
    ----------
    value
        The option's value (s, m, m/s, vehicles ... as the option says).
    name
        The option's name, given as the error's parameter.
    strict
        Whether zero is refused too (``True``: must be positive; ``False``: must not be
        negative).

    Returns
    -------
    float
        The value.

    Raises
    ------
    SignalError
        When the value is not a real number (``None``, a string, a bool), not finite, or
        not positive (negative, when ``strict`` is ``False``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SignalError(
            f"{name} must be a number, got {value!r} ({type(value).__name__})", parameter=name
        )
    number = float(value)
    if not np.isfinite(number):
        raise SignalError(f"{name} must be a finite number, got {value!r}", parameter=name)
    if number < 0 or (strict and number == 0):
        need = "positive" if strict else "not negative"
        raise SignalError(f"{name} must be {need}, got {value!r}", parameter=name)
    return number


def checked_controller(controller: Any, name: str = "controller") -> Controller:
    """Return a controller to be wrapped, refusing what has no ``reset``/``decide``/``name``.

    Parameters
    ----------
    controller
        The controller (see :class:`Controller`).
    name
        The parameter the error names.

    Returns
    -------
    Controller
        ``controller``.

    Raises
    ------
    SignalError
        When ``controller`` is not a controller (``None``, say).
    """
    if not all(
        callable(getattr(controller, method, None)) for method in ("reset", "decide")
    ) or not isinstance(getattr(controller, "name", None), str):
        raise SignalError(
            f"{name} must be a controller (with name, reset and decide), got {controller!r}",
            parameter=name,
        )
    return cast(Controller, controller)


@dataclass(frozen=True)
class SafetyRules:
    """Every controller obeys these (FHWA Traffic Signal Timing Manual, 2nd ed. 2015).

    Attributes
    ----------
    min_green_s
        Vehicle minimum green, s (FHWA TSTM table 5-3: 5 s on minor approaches).
    max_green_s
        Maximum green (max-out), s (FHWA TSTM table 5-9: 30..60 s on through phases).
    max_cycle_s
        No movement waits longer than this for green, s (FHWA TSTM 2015 section 6.3:
        cycle lengths above 180 s are not recommended).
    pedestrian_walk_s
        Walk interval, s (FHWA TSTM section 5.3.2, MUTCD 4E.06: 7 s typical).
    pedestrian_speed_ms
        Pedestrian clearance walking speed, m/s (MUTCD 4E.06).

    Yellow and all-red come from the base program's own change phases and are never shortened.
    """

    min_green_s: float = 5.0
    max_green_s: float = 60.0
    max_cycle_s: float = 180.0
    pedestrian_walk_s: float = 7.0
    pedestrian_speed_ms: float = 1.2

    def __post_init__(self) -> None:
        for name in (
            "min_green_s",
            "max_green_s",
            "max_cycle_s",
            "pedestrian_walk_s",
            "pedestrian_speed_ms",
        ):
            checked_number(getattr(self, name), name)
        if self.max_green_s < self.min_green_s:
            raise SignalError(
                f"max_green_s ({self.max_green_s}) is below min_green_s ({self.min_green_s})",
                parameter="max_green_s",
            )
        if self.max_cycle_s <= self.max_green_s:
            raise SignalError(
                f"max_cycle_s ({self.max_cycle_s}) must exceed max_green_s ({self.max_green_s})",
                parameter="max_cycle_s",
            )


@dataclass(frozen=True)
class Stage:
    """A green stage the controller may choose: one green phase of the base program.

    Attributes
    ----------
    index
        Stage number within the signal (0..n-1, cycle order).
    phase
        Index of that green phase in the base program.
    state
        The phase's state string.
    green
        Link indices green (``G`` or ``g``) in it.
    min_green_s
        ``max(rules.min_green_s, pedestrian minimum of the crossings it serves)``, s.
    max_green_s
        Maximum green, s (at least ``min_green_s``).
    yellow_s
        Yellow shown to the links that lose green when the stage ends, s.
    all_red_s
        All-red after that yellow, s (0 when the program has none).
    """

    index: int
    phase: int
    state: str
    green: frozenset[int]
    min_green_s: float
    max_green_s: float
    yellow_s: float = DEFAULT_YELLOW_S
    all_red_s: float = 0.0


@dataclass(frozen=True)
class ControlledSignal:
    """A signal as controllers see it.

    Attributes
    ----------
    signal
        The signal (links, base program).
    stages
        Its green stages in cycle order.
    in_lanes, out_lanes
        SUMO lane ids, incoming and outgoing, distinct and sorted.
    link_in, link_out
        Per link index, position of its lane in ``in_lanes``/``out_lanes`` (-1 if none).
    saturation_flow
        Per link index, veh/s: HCM base 1900 pc/h/ln times the area factor 0.9 and the turn
        factor (0.95 left, 0.85 right; HCM 6th ed. eq. 19-8).
    crossing
        Link indices that are pedestrian crossings.
    """

    signal: Signal
    stages: tuple[Stage, ...]
    in_lanes: tuple[str, ...]
    out_lanes: tuple[str, ...]
    link_in: tuple[int, ...]
    link_out: tuple[int, ...]
    saturation_flow: tuple[float, ...]
    crossing: frozenset[int] = frozenset()

    @property
    def id(self) -> str:
        """The signal's id (SUMO's traffic-light id)."""
        return self.signal.id

    @property
    def size(self) -> int:
        """Number of links (length of the state strings)."""
        return len(self.link_in)

    def stage_of_link(self, link: int) -> list[int]:
        """Return the stages in which a link is green.

        Parameters
        ----------
        link
            Link index.

        Returns
        -------
        list of int
            Stage indices, in cycle order.
        """
        return [s.index for s in self.stages if link in s.green]


@dataclass
class Measurements:
    """What the detectors report for one signal at one step.

    Attributes
    ----------
    queue
        Per in-lane: vehicles halting (speed < 0.1 m/s) on the detector, veh.
    count
        Per in-lane: vehicles on the detector, veh.
    gap_s
        Per in-lane: seconds since a vehicle last passed the stop-line end of the lane, s.
    out_count
        Per out-lane: vehicles on the first detector length of the lane, veh.
    bus_eta_s
        Per link index: seconds until the nearest bus (vClass bus) reaches the stop line on
        that link's lane (buses within detection range, not dwelling at a stop); empty if none.
    emergency_eta_s
        Per link index: seconds until the nearest emergency vehicle (vClass ``emergency``, or
        an id starting ``twin_emergency``) whose route takes that link reaches its stop line
        (vehicles within the emergency detection range); empty if none.
    emergency_clear_s
        Per link index in ``emergency_eta_s``: seconds the queue halting on that link's
        incoming lane needs to clear before the vehicle, 2 s per halting vehicle (saturation
        headway, HCM 6th ed. eq. 19-8: 1900 veh/h ~ 1.9 s).
    """

    queue: np.ndarray
    count: np.ndarray
    gap_s: np.ndarray
    out_count: np.ndarray
    bus_eta_s: dict[int, float] = field(default_factory=dict)
    emergency_eta_s: dict[int, float] = field(default_factory=dict)
    emergency_clear_s: dict[int, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, signal: ControlledSignal) -> Measurements:
        """Return measurements of an empty intersection (no vehicles, long gaps).

        Parameters
        ----------
        signal
            The signal.

        Returns
        -------
        Measurements
            Zero queues and counts, gaps of 1e9 s.
        """
        n, k = len(signal.in_lanes), len(signal.out_lanes)
        return cls(np.zeros(n), np.zeros(n), np.full(n, 1e9), np.zeros(k), {})


@dataclass(frozen=True)
class Decision:
    """A controller's choice: the stage to serve next (== current stage: keep green).

    Attributes
    ----------
    stage
        The stage to serve next.
    reason
        Why (``gap-out``, ``pressure``, ``pre-emption`` ...).
    preempt
        An emergency pre-emption: keeping the current stage is then not cut by max-out
        (pre-emption overrides the maximum green: FHWA TSTM 2015 chapter 9, MUTCD 2009
        section 4D.27); minimum green, change intervals and the starvation guard still hold.
    """

    stage: int
    reason: str = ""
    preempt: bool = False


class Controller(Protocol):
    """What the :class:`SignalHead` asks a controller (one instance per signal).

    ``decide`` is called once per simulation step while the signal is in a green stage
    (never during yellow/all-red); ``current`` is the stage being served and ``green_s`` how
    long it has been green. The head enforces minimum and maximum green: a switch asked before
    the stage's minimum green is deferred; at maximum green the head asks ``decide`` and, if it
    keeps the stage, forces the next stage in cycle order.
    """

    name: str

    def reset(self, signal: ControlledSignal) -> None:
        """Forget all state; the signal starts afresh."""
        ...

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        """Return the stage to serve next."""
        ...


_GREEN, _YELLOW, _ALL_RED = "green", "yellow", "all-red"
_EPS = 1e-6


class SignalHead:
    """The safety state machine: turns decisions into SUMO states, the same for every controller.

    Switching from stage ``a`` to ``b``: links green in ``a`` and not in ``b`` show ``y`` for
    ``a``'s yellow time, then every link not green in both shows ``r`` for ``a``'s all-red
    time, then ``b``'s state. Links green in both stay green throughout (``G`` stays ``G``; a
    link ``g`` in either shows ``g``); pedestrian crossings go straight to ``r`` (their
    clearance is inside their minimum green). A link not served for ``rules.max_cycle_s``
    (less the time the change needs) forces its stage next (starvation guard). A decision
    marked ``preempt`` (emergency pre-emption) that keeps the stage is exempt from max-out.

    Parameters
    ----------
    signal
        The signal.
    controller
        Its controller (``reset`` is called here).
    rules
        The safety rules.

    Attributes
    ----------
    switches
        Number of stage changes so far.
    reasons
        Count of decisions that changed the stage, by reason (``max-out``, ``starvation`` ...).
    """

    def __init__(
        self, signal: ControlledSignal, controller: Controller, *, rules: SafetyRules
    ) -> None:
        if not signal.stages:
            raise SignalError(f"signal {signal.id} has no green stage", parameter="signal")
        self.signal = signal
        self.controller = controller
        self.rules = rules
        self.mode = _GREEN
        self.current = 0
        self.target = 0
        self.elapsed = 0.0
        self.started = False
        self.switches = 0
        self.reasons: dict[str, int] = {}
        self._served = {link for s in signal.stages for link in s.green}
        self._round_s = sum(s.min_green_s + s.yellow_s + s.all_red_s for s in signal.stages)
        self._last_green: dict[int, float] = {}
        self._shown = ""
        controller.reset(signal)

    @property
    def state(self) -> str:
        """The state string shown now."""
        return self._shown

    @property
    def green_s(self) -> float:
        """How long the current stage has been green, s (0 outside green)."""
        return self.elapsed if self.mode == _GREEN else 0.0

    def step(self, now: float, dt: float, m: Measurements) -> str | None:
        """Advance by ``dt`` and return the state to show from ``now`` on, when it changes.

        Parameters
        ----------
        now
            Simulation time, s.
        dt
            Time since the previous call, s (the simulation step length).
        m
            The signal's measurements now.

        Returns
        -------
        str or None
            The new state string, or None when it stays as it is.
        """
        if not self.started:
            self.started = True
            self.elapsed = 0.0
            for link in self._served:
                self._last_green[link] = now
            return self._show(self.signal.stages[self.current].state, now)
        self.elapsed += dt
        stages = self.signal.stages
        if self.mode == _YELLOW:
            if self.elapsed + _EPS < stages[self.current].yellow_s:
                return self._show(self._shown, now)
            if stages[self.current].all_red_s > _EPS:
                self.mode, self.elapsed = _ALL_RED, 0.0
                return self._show(self._all_red_state(), now)
            return self._enter(self.target, now)
        if self.mode == _ALL_RED:
            if self.elapsed + _EPS < stages[self.current].all_red_s:
                return self._show(self._shown, now)
            return self._enter(self.target, now)
        stage = stages[self.current]
        green_s = self.elapsed
        decision = self.controller.decide(now, self.signal, self.current, green_s, m)
        wanted, reason = decision.stage, decision.reason
        if not 0 <= wanted < len(stages):
            raise SignalError(
                f"controller {self.controller.name} chose stage {wanted} of signal "
                f"{self.signal.id}, which has {len(stages)} stages",
                parameter="controller",
            )
        if green_s + _EPS >= stage.max_green_s and wanted == self.current and not decision.preempt:
            wanted, reason = (self.current + 1) % len(stages), "max-out"
        detour = 0.0
        if wanted != self.current:  # the chosen stage runs at least its minimum first
            target = stages[wanted]
            detour = target.min_green_s + target.yellow_s + target.all_red_s
        starving = self._starving(now, green_s, dt, detour)
        if starving is not None and starving[1] not in stages[wanted].green:
            wanted, reason = starving[0], "starvation"
        if wanted == self.current or green_s + _EPS < stage.min_green_s:
            return self._show(self._shown, now)
        return self._change(wanted, reason or "controller", now)

    def _starving(
        self, now: float, green_s: float, dt: float, detour: float
    ) -> tuple[int, int] | None:
        """Return (stage, link) to serve now so that no link waits past the maximum cycle.

        The links not green now are scheduled longest-waiting first, each by the next stage
        in cycle order that serves it, each stage taking its minimum green and change
        interval. When that schedule, started one step later (or after ``detour`` s more,
        the minimum of another stage the controller asks for), would let some link wait
        ``rules.max_cycle_s`` or more, the first scheduled stage must be served now.
        """
        stages = self.signal.stages
        stage = stages[self.current]
        needed = max(stage.min_green_s - green_s, 0.0) + stage.yellow_s + stage.all_red_s
        limit = self.rules.max_cycle_s - dt - _EPS
        waits = {
            link: now - self._last_green[link] for link in self._served if link not in stage.green
        }
        if not waits or max(waits.values()) + needed + detour + self._round_s + dt < limit:
            return None
        n = len(stages)
        pending = sorted(waits, key=lambda link: -waits[link])
        start = needed + dt + detour  # green start of the first stage scheduled
        first: tuple[int, int] | None = None
        late = False
        while pending:
            link = pending[0]
            chosen = next(
                stages[(self.current + k) % n]
                for k in range(1, n + 1)
                if link in stages[(self.current + k) % n].green
            )
            if first is None:
                first = (chosen.index, link)
            late = late or any(waits[x] + start >= limit for x in pending if x in chosen.green)
            pending = [x for x in pending if x not in chosen.green]
            start += chosen.min_green_s + chosen.yellow_s + chosen.all_red_s
        return first if late else None

    def _change(self, target: int, reason: str, now: float) -> str | None:
        self.switches += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.target = target
        a, b = self.signal.stages[self.current], self.signal.stages[target]
        if a.green <= b.green:
            return self._enter(target, now)
        self.mode, self.elapsed = _YELLOW, 0.0
        return self._show(_yellow_state(a, b, self.signal.crossing), now)

    def _all_red_state(self) -> str:
        a, b = self.signal.stages[self.current], self.signal.stages[self.target]
        return "".join(
            _kept(a.state[i], b.state[i]) if i in a.green and i in b.green else _red(a.state[i])
            for i in range(len(a.state))
        )

    def _enter(self, target: int, now: float) -> str | None:
        self.current = target
        self.mode, self.elapsed = _GREEN, 0.0
        return self._show(self.signal.stages[target].state, now)

    def _show(self, state: str, now: float) -> str | None:
        for i, c in enumerate(state):
            if c in GREEN:
                self._last_green[i] = now
        if state == self._shown:
            return None
        self._shown = state
        return state


def _kept(a: str, b: str) -> str:
    """Return the character of a link green in both stages during a change: ``g`` if either."""
    return "g" if "g" in (a, b) else "G"


def _red(c: str) -> str:
    """Return a stopped link's character: red, unless it is not signalised (``o``/``O``)."""
    return c if c in "oO" else "r"


def _yellow_state(a: Stage, b: Stage, crossing: frozenset[int]) -> str:
    """Return the change state: ``y`` for vehicle links losing green, ``r`` for crossings.

    A crossing's clearance (flashing don't-walk) is inside its minimum green (walk plus
    crossing length over walking speed), as in SUMO's own programs, which take crossings
    from green straight to red.
    """
    out = []
    for i, c in enumerate(a.state):
        if i in a.green and i in b.green:
            out.append(_kept(c, b.state[i]))
        elif i in a.green and i not in crossing:
            out.append("y")
        else:
            out.append(_red(c))
    return "".join(out)


# --- building controlled signals ------------------------------------------------------------


def change_intervals(program: Program, phase: int) -> tuple[float, float]:
    """Return the yellow and all-red the program runs after one of its green phases.

    Parameters
    ----------
    program
        The base program.
    phase
        Index of a green phase.

    Returns
    -------
    tuple of float
        ``(yellow_s, all_red_s)``. Between this green phase (and the phases repeating its
        state) and the next green phase: the longest time any link shows ``y`` without a
        break (3 s when none, the usual minimum: FHWA TSTM 2015 section 5.4.1), and the
        all-red phases (states without ``G``/``g``/``y``) summed; when no all-red follows this
        phase, the program's longest all-red run elsewhere (0 if it has none).
    """
    phases = program.phases
    n = len(phases)
    state = phases[phase].state
    k = 1
    while k < n and phases[(phase + k) % n].state == state:
        k += 1
    run: dict[int, float] = {}
    yellow = 0.0
    all_red = 0.0
    for m in range(k, n):
        ph = phases[(phase + m) % n]
        if ph.is_green:
            break
        for link, c in enumerate(ph.state):
            run[link] = run.get(link, 0.0) + ph.duration if c == "y" else 0.0
            yellow = max(yellow, run[link])
        if not any(c in ph.state for c in "Ggy"):
            all_red += ph.duration
    if all_red <= 0.0:
        all_red = program_all_red(program)
    return (yellow if yellow > 0 else DEFAULT_YELLOW_S), all_red


def program_all_red(program: Program) -> float:
    """Return the program's longest run of consecutive all-red phases, s (0 if none).

    Parameters
    ----------
    program
        A program.

    Returns
    -------
    float
        Seconds.
    """
    best = run = 0.0
    phases = list(program.phases) * 2  # a run may wrap around the cycle's end
    for ph in phases:
        if not any(c in ph.state for c in "Ggy"):
            run += ph.duration
            best = max(best, run)
        else:
            run = 0.0
    return min(best, program.cycle)


def link_yellow(program: Program) -> dict[int, float]:
    """Return, per link, the shortest unbroken yellow the program shows it, s.

    Parameters
    ----------
    program
        A program.

    Returns
    -------
    dict
        Link index to seconds (consecutive phases showing the link ``y`` add up, also
        across the cycle's end); links never yellow are absent.
    """
    phases = program.phases
    n = len(phases)
    out: dict[int, float] = {}
    size = len(phases[0].state) if phases else 0
    for link in range(size):
        chars = [ph.state[link] if link < len(ph.state) else "r" for ph in phases]
        if all(c == "y" for c in chars) or "y" not in chars:
            continue
        start = next(i for i in range(n) if chars[i] != "y")  # a run never wraps past this
        run = 0.0
        for m in range(1, n + 1):
            i = (start + m) % n
            if chars[i] == "y":
                run += phases[i].duration
            elif run > 0:
                out[link] = min(out.get(link, run), run)
                run = 0.0
    return out


def pedestrian_minimum(length_m: float, rules: SafetyRules) -> float:
    """Return a crossing's minimum green: walk plus clearance at the walking speed, s.

    Parameters
    ----------
    length_m
        Crossing length, m.
    rules
        Walk interval and clearance walking speed (FHWA TSTM 2015 eq. 5-5, MUTCD 4E.06).

    Returns
    -------
    float
        Seconds.
    """
    return rules.pedestrian_walk_s + length_m / rules.pedestrian_speed_ms


def stages_of(
    program: Program,
    *,
    rules: SafetyRules,
    link_minimum: Mapping[int, float] | None = None,
) -> tuple[Stage, ...]:
    """Return the green stages of a program: its distinct green phases in cycle order.

    Parameters
    ----------
    program
        The base program.
    rules
        The safety rules (minimum and maximum green).
    link_minimum
        Minimum green per link index, s (pedestrian crossings); a stage's minimum green is the
        largest of ``rules.min_green_s`` and those of the links green in it.

    Returns
    -------
    tuple of Stage
        The stages.

    Raises
    ------
    SignalError
        When the program has no green phase.
    """
    link_minimum = link_minimum or {}
    yellows = link_yellow(program)
    stages: list[Stage] = []
    seen: set[str] = set()
    for i, ph in enumerate(program.phases):
        if not ph.is_green or ph.state in seen:
            continue
        seen.add(ph.state)
        green = frozenset(k for k, c in enumerate(ph.state) if c in GREEN)
        minimum = max([rules.min_green_s, *(link_minimum.get(k, 0.0) for k in green)])
        yellow, all_red = change_intervals(program, i)
        # never shorter than the yellow the program gives any of these links elsewhere
        yellow = max([yellow, *(yellows[k] for k in green if k in yellows)])
        stages.append(
            Stage(
                len(stages),
                i,
                ph.state,
                green,
                minimum,
                max(rules.max_green_s, minimum),
                yellow,
                all_red,
            )
        )
    if not stages:
        raise SignalError(f"program {program.id} has no green phase", parameter="program")
    return tuple(stages)


def control_signals(
    net: Any, signals: Mapping[str, Signal], *, rules: SafetyRules
) -> dict[str, ControlledSignal]:
    """Build the signals as controllers see them, from a network and its signals.

    Parameters
    ----------
    net
        The network (``sumolib.net.Net`` from :func:`routing.signals.sumo.read_net`).
    signals
        Signals from :func:`routing.signals.sumo.signals_of` (their programs are the base).
    rules
        The safety rules.

    Returns
    -------
    dict
        Controlled signal by id. Signals with no green phase are left out.

    Raises
    ------
    SignalError
        When a signal is not in the network.
    """
    out: dict[str, ControlledSignal] = {}
    for sid, signal in signals.items():
        try:
            tls = net.getTLS(sid)
        except KeyError as exc:
            raise SignalError(f"signal {sid} is not in the network", parameter="signals") from exc
        size = signal.size
        in_of: dict[int, str] = {}
        out_of: dict[int, str] = {}
        crossing_len: dict[int, float] = {}
        for in_lane, out_lane, index in tls.getConnections():
            if index < 0 or index >= size or index in in_of:
                continue
            in_of[index] = in_lane.getID()
            out_of[index] = out_lane.getID()
            # a crossing's length is its crossing lane's; else (a signalised footpath) the
            # longest pedestrian-only lane of the link
            crossings = [x for x in (in_lane, out_lane) if x.getEdge().getFunction() == "crossing"]
            footways = [x for x in (in_lane, out_lane) if _pedestrian_only(x)]
            if crossings or footways:
                crossing_len[index] = max(x.getLength() for x in crossings or footways)
        vehicle_in = {i: lane for i, lane in in_of.items() if i not in crossing_len}
        vehicle_out = {i: lane for i, lane in out_of.items() if i not in crossing_len}
        in_lanes = tuple(sorted(set(vehicle_in.values())))
        out_lanes = tuple(sorted(set(vehicle_out.values())))
        in_pos = {lane: k for k, lane in enumerate(in_lanes)}
        out_pos = {lane: k for k, lane in enumerate(out_lanes)}
        minimum = {i: pedestrian_minimum(length, rules) for i, length in crossing_len.items()}
        try:
            stages = stages_of(signal.program, rules=rules, link_minimum=minimum)
        except SignalError:
            continue
        saturation = tuple(
            BASE_SATURATION_FLOW
            * AREA_FACTOR
            * TURN_FACTORS.get(signal.links[i].direction if i in signal.links else "s", 1.0)
            for i in range(size)
        )
        out[sid] = ControlledSignal(
            signal,
            stages,
            in_lanes,
            out_lanes,
            tuple(in_pos.get(vehicle_in.get(i, ""), -1) for i in range(size)),
            tuple(out_pos.get(vehicle_out.get(i, ""), -1) for i in range(size)),
            saturation,
            frozenset(crossing_len),
        )
    return out


def _pedestrian_only(lane: Any) -> bool:
    """Whether a lane admits pedestrians and none of cars, buses or bicycles."""
    return bool(
        lane.allows("pedestrian")
        and not lane.allows("passenger")
        and not lane.allows("bus")
        and not lane.allows("bicycle")
    )
