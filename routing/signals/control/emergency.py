"""Emergency vehicle pre-emption on top of any real-time controller: the green corridor.

:class:`Preemption` wraps any controller (max pressure, actuated, the twin's adaptive one,
with or without transit priority): it asks the wrapped controller first and overrides its
decision only for an emergency vehicle, as the fixed-time corridor of
:mod:`routing.signals.preemption` does for fixed programs:

- the vehicle is detected on its route ahead of the signal
  (``Measurements.emergency_eta_s``: seconds until it reaches the stop line of the link it
  will take; ``Measurements.emergency_clear_s``: seconds the queue halting ahead of it on that
  lane needs, 2 s per vehicle);
- a *call* is placed on the link when the green must come up for it: when the vehicle is
  ``lead_s`` plus the queue's clearing time from the stop line, plus the rest of the current
  stage's minimum green (the safety head will not cut it). When the current stage already
  serves the link, the call is placed earlier, by the time a detour through the shortest other
  stage would take (change interval, its minimum green, change interval): the controller may
  not end the vehicle's green just before it arrives;
- while a call is active the signal serves a stage giving the link green (``Decision`` reason
  ``pre-emption``): the current stage if it does (it is held, exempt from max-out), else the
  first such stage in cycle order (the :class:`~routing.signals.control.base.SignalHead`
  runs the yellow and all-red first); where a signal spans several junctions along the
  route, the stage that also gives the vehicle's next turns green is preferred;
- the call ends when the vehicle has passed the stop line (its ETA on the link is gone) or
  after ``max_hold_s``; a call ended by ``max_hold_s`` is not placed again for that approach.
  Then the wrapped controller's decisions apply again.

Everything goes through the head: minimum green, yellow, all-red and the starvation guard
are never given up, and no conflicting green is ever shown. Only max-out is waived while the
vehicle's stage is held (pre-emption overrides the maximum green).

References
----------
FHWA, *Traffic Signal Timing Manual*, 2nd ed., NCHRP Report 812, 2015, chapter 9
(preferential vehicle treatment: emergency vehicle pre-emption). FHWA, *Manual on Uniform
Traffic Control Devices*, 2009, section 4D.27 (pre-emption: the yellow change and red
clearance intervals are not shortened). The lead time (8 s) and the maximum hold (60 s) are
those of :mod:`routing.signals.preemption`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from routing.signals.control.base import (
    ControlledSignal,
    Controller,
    Decision,
    Measurements,
    checked_controller,
    checked_number,
)
from routing.signals.model import SignalError

PREEMPTION = "pre-emption"
LEAD_S = 8.0  # routing.signals.preemption: holds start 8 s (+ queue) before the arrival
MAX_HOLD_S = 60.0  # routing.signals.preemption: a hold never outlasts 60 s


@dataclass
class _Call:
    """One emergency approach on one link."""

    eta_s: float
    since: float | None = None  # when the call was placed (None: not yet)
    done: bool = False  # ended by max_hold_s: not placed again for this approach
    entry: dict[str, Any] = field(default_factory=dict)


class Preemption:
    """A controller with emergency vehicle pre-emption on top.

    Parameters
    ----------
    controller
        The controller to wrap (any :class:`~routing.signals.control.base.Controller`).
    lead_s
        How long before the vehicle reaches the stop line its green is asked for, beyond the
        queue's clearing time, s (covers the change interval; 8 s as the fixed-time corridor).
    max_hold_s
        Longest pre-emption of one approach, s: a vehicle stuck in traffic must not keep the
        cross streets red (60 s as the fixed-time corridor).

    Attributes
    ----------
    log
        The pre-emptions placed: link, stage served, ``from_s``, ``to_s`` and how the call
        ended (``passed`` or ``max-hold``; no ``to_s`` while active).

    Raises
    ------
    SignalError
        When an option is out of range.
    """

    def __init__(
        self, controller: Controller, *, lead_s: float = LEAD_S, max_hold_s: float = MAX_HOLD_S
    ) -> None:
        lead_s = checked_number(lead_s, "lead_s", strict=False)
        max_hold_s = checked_number(max_hold_s, "max_hold_s")
        self.controller = checked_controller(controller)
        self.lead_s = float(lead_s)
        self.max_hold_s = float(max_hold_s)
        self.name = f"{controller.name}+preemption"
        self.log: list[dict[str, Any]] = []
        self._calls: dict[int, _Call] = {}

    def reset(self, signal: ControlledSignal) -> None:
        """Forget all calls and reset the wrapped controller.

        Parameters
        ----------
        signal
            The signal.
        """
        self.controller.reset(signal)
        self._calls.clear()
        self.log = []

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        """Return the wrapped controller's decision, overridden while a pre-emption is active.

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
            The measurements (``emergency_eta_s`` and ``emergency_clear_s`` per link, s).

        Returns
        -------
        Decision
            The wrapped controller's decision, or a ``pre-emption`` decision (``preempt``
            set) serving the emergency vehicle's link.
        """
        base = self.controller.decide(now, signal, current, green_s, m)
        active, ahead = self._update(now, signal, current, green_s, m)
        if not active:
            return base
        stage = self._serving(signal, current, active, ahead)
        for link in active:
            entry = self._calls[link].entry
            if stage is not None and link in signal.stages[stage].green:
                entry.setdefault("stage", stage)
        if stage is None:
            return base
        return Decision(stage, PREEMPTION, preempt=True)

    def _update(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> tuple[list[int], list[int]]:
        """Track the calls; return the links with an active call and all links approached.

        Both nearest vehicle first; calls given up at ``max_hold_s`` are left out of both.
        """
        served = {link for s in signal.stages for link in s.green}
        eta = {int(link): float(v) for link, v in m.emergency_eta_s.items() if int(link) in served}
        for link in list(self._calls):
            if link not in eta:  # the vehicle has passed the stop line (or left the route)
                call = self._calls.pop(link)
                if call.since is not None and not call.done:
                    call.entry.update(to_s=now, end="passed")
        stage = signal.stages[current]
        others = [s for s in signal.stages if s.index != current]
        detour = stage.yellow_s + stage.all_red_s
        if others:
            detour += min(s.min_green_s + s.yellow_s + s.all_red_s for s in others)
        wait = max(stage.min_green_s - green_s, 0.0)
        active: list[tuple[float, int]] = []
        ahead: list[tuple[float, int]] = []
        for link, value in eta.items():
            call = self._calls.setdefault(link, _Call(value))
            call.eta_s = value
            if call.done:
                continue
            ahead.append((value, link))
            if call.since is None:
                need = self.lead_s + float(m.emergency_clear_s.get(link, 0.0))
                need += detour if link in stage.green else wait
                if value > need:
                    continue
                call.since = now
                call.entry = {"signal": signal.id, "link": link, "from_s": now}
                self.log.append(call.entry)
            elif now - call.since >= self.max_hold_s:
                call.done = True
                call.entry.update(to_s=now, end="max-hold")
                continue
            active.append((value, link))
        return [link for _, link in sorted(active)], [link for _, link in sorted(ahead)]

    @staticmethod
    def _serving(
        signal: ControlledSignal, current: int, active: list[int], ahead: list[int]
    ) -> int | None:
        """Return the stage to serve for the active calls.

        Among the stages giving the nearest call's link green: one serving every active
        call if there is one, and then the one serving the links approached, nearest first
        (lexicographically), so that a signal spanning several junctions along the route
        keeps the vehicle's next turns green too (a red one junction on would stop the queue
        ahead of it). Ties go to the current stage, then cycle order. None when no stage
        serves the nearest call's link.
        """
        n = len(signal.stages)
        order = [signal.stages[(current + k) % n] for k in range(n)]
        candidates = [s for s in order if active[0] in s.green]
        if not candidates:
            return None
        best = max(
            candidates,
            key=lambda s: (set(active) <= s.green, tuple(link in s.green for link in ahead)),
        )
        return best.index


def with_preemption(
    signal: ControlledSignal,
    controller: Controller,
    *,
    lead_s: float = LEAD_S,
    max_hold_s: float = MAX_HOLD_S,
) -> Preemption:
    """Wrap a signal's controller with emergency vehicle pre-emption.

    The runner's ``preemption=True`` applies it to every signal (outermost, over transit
    priority: an emergency vehicle comes before a bus).

    Parameters
    ----------
    signal
        The signal the controller runs.
    controller
        The controller to wrap.
    lead_s
        Green is asked for this long before the vehicle reaches the stop line, beyond the
        queue's clearing time, s.
    max_hold_s
        Longest pre-emption of one approach, s.

    Returns
    -------
    Preemption
        The wrapped controller.

    Raises
    ------
    SignalError
        When the signal has no stage or an option is out of range.
    """
    if not signal.stages:
        raise SignalError(f"signal {signal.id} has no green stage", parameter="signal")
    return Preemption(controller, lead_s=lead_s, max_hold_s=max_hold_s)
