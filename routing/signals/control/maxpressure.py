"""Max-pressure signal control (Varaiya 2013).

The pressure of a stage is the sum over the links green in it of the link's saturation flow
times the difference between its upstream queue and its downstream occupancy,

    w(stage) = sum_{links l green in stage} s_l * (q_in(l) - q_out(l)),

and the controller serves the stage of largest pressure. Varaiya's queue ``q_in`` is every
vehicle on the link waiting to pass the junction, moving or not (a store-and-forward
queue): it is read as the vehicles on the incoming lane's stop-line detector
(``Measurements.count``), not only the halting ones (``Measurements.queue``) -- a served
queue that has started to move still has to cross, and counting only halted vehicles makes
the served stage's pressure collapse the moment it gets green. ``q_out`` is the vehicles on
the first stretch of the outgoing lane (``Measurements.out_count``). Varaiya's published controller
decides once per fixed slot (the stage runs for the whole slot); the continuous variant
re-decides every step once the minimum green is over. Links with no incoming lane (pedestrian
crossings) carry no pressure. Ties go to the current stage (no needless change interval),
then to the lowest stage index (the earliest in cycle order).

When every stage has pressure 0 or less the current stage is kept (no demand anywhere: no
reason to pay a change interval); the safety head still ends it at max-out.

References
----------
Varaiya, P. (2013). Max pressure control of a network of signalized intersections.
Transportation Research Part C 36, 177-195 (eq. 5-6: weights and the max-pressure stage).
"""

from __future__ import annotations

import numpy as np

from routing.signals.control.base import (
    ControlledSignal,
    Decision,
    Measurements,
    checked_number,
)


def stage_pressures(signal: ControlledSignal, m: Measurements) -> np.ndarray:
    """Return the pressure of each stage (Varaiya 2013, eq. 5), veh^2/s.

    Parameters
    ----------
    signal
        The signal.
    m
        Its measurements: ``count`` per incoming lane and ``out_count`` per outgoing lane, veh.

    Returns
    -------
    numpy.ndarray
        Pressure per stage index: sum over the stage's green links of saturation flow (veh/s)
        times (vehicles on the link's incoming lane detector - vehicles on its outgoing lane).
    """
    link_pressure = np.zeros(signal.size)
    for link in range(signal.size):
        k_in = signal.link_in[link]
        if k_in < 0:
            continue
        k_out = signal.link_out[link]
        downstream = float(m.out_count[k_out]) if k_out >= 0 else 0.0
        link_pressure[link] = signal.saturation_flow[link] * (float(m.count[k_in]) - downstream)
    return np.array([sum(link_pressure[i] for i in stage.green) for stage in signal.stages])


class MaxPressure:
    """Varaiya's max-pressure controller.

    Parameters
    ----------
    slot_s
        ``None`` (default): re-decide every step once the minimum green is over (continuous
        max pressure). A number: the published fixed-slot controller, which decides only at
        the end of each slot of this many seconds of green (Varaiya 2013, section 5); a slot
        shorter than the stage's minimum green is lengthened to it by the safety head.

    Raises
    ------
    SignalError
        When ``slot_s`` is not positive.
    """

    def __init__(self, *, slot_s: float | None = None) -> None:
        if slot_s is not None:
            slot_s = checked_number(slot_s, "slot_s")
        self.slot_s = slot_s
        self.name = "max-pressure" if slot_s is None else f"max-pressure-{slot_s:g}s"

    def reset(self, signal: ControlledSignal) -> None:
        """Forget all state (the controller keeps none).

        Parameters
        ----------
        signal
            The signal.
        """

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        """Return the stage of largest pressure (ties: the current, then the lowest index).

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
            The chosen stage, reason ``pressure`` (or ``slot`` while a fixed slot runs).
        """
        if self.slot_s is not None and (green_s + 1e-6) % self.slot_s > 2e-6:
            return Decision(current, "slot")
        pressure = stage_pressures(signal, m)
        best = float(pressure.max())
        if pressure[current] >= best - 1e-12 or best <= 0.0:
            return Decision(current, "pressure")
        return Decision(int(np.argmax(pressure >= best - 1e-12)), "pressure")
