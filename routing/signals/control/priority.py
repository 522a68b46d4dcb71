"""Transit signal priority (TSP): buses get a green extension or an early green, on any controller.

:class:`TransitPriority` wraps any controller (max pressure, actuated, the twin's adaptive
one): it asks the wrapped controller first and changes its decision only for a bus, with the
two active-priority strategies of the FHWA handbook (Smith, Hemily & Ivanovic 2005, ch. 2):

- **green extension**: the controller wants to end the stage, a bus approaches on a lane the
  stage serves and reaches the stop line within the extension still available
  (``max_extension_s`` per stage): the stage is held for it;
- **early green**: a bus approaches or waits on a lane the current stage does not serve: the
  controller's next stage is replaced by the first stage in cycle order that serves the bus's
  lane (``early_green="reorder"``, the default: only when the controller ends its stage
  anyway, i.e. phase rotation), and with ``early_green="truncate"`` the current stage is also
  ended as soon as it may be, once its minimum green is served (red truncation; the
  :class:`~routing.signals.control.base.SignalHead` defers any switch until then). One early
  green per bus, and none for another bus within ``recovery_s`` of the last.

Buses are detected by ``Measurements.bus_eta_s`` (seconds until the nearest bus on a link's lane
reaches the stop line; buses dwelling at a stop are not reported). A *call* is one bus's
approach on one lane, from its first detection until it leaves the detector (or is replaced by
the next bus, seen as its ETA jumping up from near zero): each bus places at most one call,
and a call that has had its extension ends for good. Everything is a
:class:`~routing.signals.control.base.Decision`: minimum and maximum green, change intervals
and the starvation guard stay the safety head's.

:func:`vehicle_classes` tells buses from everyone else in SUMO's route files, for
:func:`routing.signals.runs.read_run` to report what priority costs and gains.

References
----------
Smith, H. R., Hemily, B., Ivanovic, M. (2005). Transit Signal Priority (TSP): A Planning and
Implementation Handbook. FHWA / ITS America (sections 2.2 "Priority strategies": early green,
green extension; typical maximum extension 10-15 s).
SUMO documentation, "Simulation/Output/TripInfo" (``timeLoss``, ``vType``) and "Definition of
Vehicles, Vehicle Types, and Routes" (``vClass``, default types).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from routing.signals import sumo
from routing.signals.control.base import (
    ControlledSignal,
    Controller,
    Decision,
    Measurements,
    checked_controller,
    checked_number,
)
from routing.signals.model import SignalError

EXTENSION = "bus priority: green extension"
EARLY_GREEN = "bus priority: early green"
EARLY_GREEN_MODES = ("off", "reorder", "truncate")
_NEW_BUS_NEAR_S = 2.0  # a call whose bus was this close to the stop line ...
_NEW_BUS_JUMP_S = 3.0  # ... and whose ETA then jumps up by this much is the next bus


@dataclass
class _Call:
    """One bus's priority call on one incoming lane."""

    eta_s: float
    used: bool = False  # priority was granted for it
    done: bool = False  # it may not be granted again
    early_from: int | None = None  # the stage it asked to truncate (early green)


class TransitPriority:
    """A controller with transit signal priority on top (FHWA TSP handbook, 2005).

    Parameters
    ----------
    controller
        The controller to wrap (any :class:`~routing.signals.control.base.Controller`).
    max_extension_s
        Longest green extension granted in one stage, s (FHWA TSP handbook 2005: 10-15 s
        typical).
    early_green
        ``reorder`` (default): when the controller ends a stage, the stage serving a waiting
        bus comes next (phase rotation; no stage is cut short for the bus); ``truncate``: the
        current stage is also cut, once its minimum green is served, for a bus on red (red
        truncation); ``off``: green extension only. On Bologna's Andrea Costa, truncation cut
        the buses' delay most but cost everyone else 20-35% more time loss.
    early_green_eta_s
        An early green is called only for a bus at most this far from the stop line, s.
    recovery_s
        After an early green, no other bus's early green at this signal for this long, s
        (recovery: the cycle the truncation disturbed is served again first; FHWA TSP
        handbook 2005, section 2.2, lock-out of consecutive priority calls).

    Raises
    ------
    SignalError
        When an option is out of range.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        max_extension_s: float = 15.0,
        early_green: str = "reorder",
        early_green_eta_s: float = 30.0,
        recovery_s: float = 90.0,
    ) -> None:
        max_extension_s = checked_number(max_extension_s, "max_extension_s", strict=False)
        early_green_eta_s = checked_number(early_green_eta_s, "early_green_eta_s", strict=False)
        recovery_s = checked_number(recovery_s, "recovery_s", strict=False)
        self.controller = checked_controller(controller)
        self.max_extension_s = float(max_extension_s)
        if early_green not in EARLY_GREEN_MODES:
            raise SignalError(
                f"early_green must be one of {EARLY_GREEN_MODES}, got {early_green!r}",
                parameter="early_green",
            )
        self.early_green = early_green
        self.early_green_eta_s = float(early_green_eta_s)
        self.recovery_s = float(recovery_s)
        self.name = f"{controller.name}+tsp"
        self.granted: dict[str, int] = {EXTENSION: 0, EARLY_GREEN: 0}
        self._calls: dict[int, _Call] = {}
        self._stage = -1
        self._green_s = 0.0
        self._extension_from: float | None = None
        self._last_early = -float("inf")

    def reset(self, signal: ControlledSignal) -> None:
        """Forget all calls and reset the wrapped controller.

        Parameters
        ----------
        signal
            The signal.
        """
        self.controller.reset(signal)
        self._calls.clear()
        self._stage, self._green_s, self._extension_from = -1, 0.0, None
        self._last_early = -float("inf")
        self.granted = {EXTENSION: 0, EARLY_GREEN: 0}

    def _update_calls(self, signal: ControlledSignal, m: Measurements) -> dict[int, float]:
        """Return the ETA per incoming lane of the buses seen now; track the calls."""
        eta: dict[int, float] = {}
        for link, value in m.bus_eta_s.items():
            k = signal.link_in[link] if 0 <= link < len(signal.link_in) else -1
            if k >= 0:
                eta[k] = min(float(value), eta.get(k, float("inf")))
        for k in list(self._calls):
            if k not in eta:
                del self._calls[k]  # the bus has left the detector: its call is over
        for k, value in eta.items():
            call = self._calls.get(k)
            if call is None or (
                call.eta_s <= _NEW_BUS_NEAR_S and value >= call.eta_s + _NEW_BUS_JUMP_S
            ):
                self._calls[k] = _Call(value)
            else:
                call.eta_s = value
        return eta

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        """Return the wrapped controller's decision, changed for a bus where priority applies.

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
            The measurements (``bus_eta_s`` per link, s).

        Returns
        -------
        Decision
            The wrapped controller's decision, or ``bus priority: green extension`` (hold the
            current stage) or ``bus priority: early green`` (serve the bus's stage next).
        """
        if current != self._stage or green_s < self._green_s:
            self._extension_from = None  # a new green stage
        self._stage, self._green_s = current, green_s
        base = self.controller.decide(now, signal, current, green_s, m)
        eta = self._update_calls(signal, m)
        if not eta:
            return base
        stage = signal.stages[current]
        served = {signal.link_in[i] for i in stage.green if signal.link_in[i] >= 0}
        if base.stage != current:
            used = 0.0 if self._extension_from is None else green_s - self._extension_from
            remaining = self.max_extension_s - used
            wanting = [
                k for k in served if k in eta and not self._calls[k].done and eta[k] <= remaining
            ]
            if wanting:
                if self._extension_from is None:
                    self._extension_from = green_s
                    self.granted[EXTENSION] += 1
                for k in wanting:
                    self._calls[k].used = True
                return Decision(current, EXTENSION)
            for k in served:
                if k in self._calls and self._calls[k].used:
                    self._calls[k].done = True  # its extension is spent
        if self.early_green == "off" or any(k in eta for k in served):
            return base
        if self.early_green == "reorder" and base.stage == current:
            return base  # the controller keeps its stage: no truncation in this mode
        # one early green per bus: a call whose truncation has happened (the stage it cut has
        # ended) does not call again; a new call waits for the recovery time after the last
        recovering = now - self._last_early < self.recovery_s
        waiting = sorted(
            (v, k)
            for k, v in eta.items()
            if k not in served
            and not self._calls[k].done
            and v <= self.early_green_eta_s
            and (
                self._calls[k].early_from == current
                if self._calls[k].early_from is not None
                else not recovering
            )
        )
        n = len(signal.stages)
        for _, k in waiting:
            links = {i for i, lane in enumerate(signal.link_in) if lane == k}
            for step in range(1, n):
                candidate = signal.stages[(current + step) % n]
                if candidate.green & links:
                    call = self._calls[k]
                    if call.early_from is None:
                        call.early_from = current
                        call.used = True
                        self._last_early = now
                        self.granted[EARLY_GREEN] += 1
                    return Decision(candidate.index, EARLY_GREEN)
        return base


def with_priority(
    signal: ControlledSignal,
    controller: Controller,
    *,
    max_extension_s: float = 15.0,
    early_green: str = "reorder",
    early_green_eta_s: float = 30.0,
    recovery_s: float = 90.0,
) -> TransitPriority:
    """Wrap a signal's controller with transit signal priority (the runner's ``priority=True``).

    Parameters
    ----------
    signal
        The signal the controller runs (its stages must be known to the controller).
    controller
        The controller to wrap.
    max_extension_s
        Longest green extension in one stage, s (FHWA TSP handbook 2005: 10-15 s).
    early_green
        ``reorder``, ``truncate`` or ``off`` (see :class:`TransitPriority`).
    early_green_eta_s
        Early green only for a bus at most this many seconds from the stop line, s.
    recovery_s
        Least time between two buses' early greens at the signal, s.

    Returns
    -------
    TransitPriority
        The wrapped controller.

    Raises
    ------
    SignalError
        When the signal has no stage or an option is out of range.
    """
    if not signal.stages:
        raise SignalError(f"signal {signal.id} has no green stage", parameter="signal")
    return TransitPriority(
        controller,
        max_extension_s=max_extension_s,
        early_green=early_green,
        early_green_eta_s=early_green_eta_s,
        recovery_s=recovery_s,
    )


# --- per-class time loss from SUMO's tripinfo ---------------------------------------------

# SUMO's default vehicle types and their classes ("Definition of Vehicles ...": default types)
DEFAULT_TYPES = {
    "DEFAULT_VEHTYPE": "passenger",
    "DEFAULT_PEDTYPE": "pedestrian",
    "DEFAULT_BIKETYPE": "bicycle",
    "DEFAULT_TAXITYPE": "taxi",
    "DEFAULT_RAILTYPE": "rail",
    "DEFAULT_CONTAINERTYPE": "ignoring",
}


def vehicle_classes(files: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Return the vClass of every vehicle type defined in route or additional files.

    Parameters
    ----------
    files
        Route/additional files (``.gz`` allowed) that may define ``<vType>`` elements (also
        inside ``<vTypeDistribution>``).

    Returns
    -------
    dict
        vClass by type id (SUMO's default class ``passenger`` when the type names none); SUMO's
        default types included.

    Raises
    ------
    SignalError
        When a file is missing or is not readable XML (parameter ``routes``).
    """
    out = dict(DEFAULT_TYPES)
    for name in files:
        for _, el in sumo.iter_xml(name, what="route/additional file"):
            if el.tag == "vType" and el.get("id"):
                out[str(el.get("id"))] = el.get("vClass") or "passenger"
            elif el.tag in ("vehicle", "trip", "flow", "route"):
                el.clear()
    return out
