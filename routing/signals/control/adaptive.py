"""The twin's own adaptive controller: max pressure with discharge look-ahead and switching cost.

Max pressure (Varaiya 2013) is throughput-optimal in its fixed-slot form but, re-decided every
second, it switches whenever another stage's pressure is marginally larger and pays a change
interval (yellow + all-red: lost time) each time; it also cuts a platoon that is still
discharging at saturation flow. Actuated control (FHWA Traffic Signal Timing Manual 2015,
ch. 5) does the opposite: it holds a stage while its detectors see vehicles closer than the
passage time (no gap-out) and ends it at the first gap, whatever waits elsewhere. The twin's
controller combines the two, as the cyclic and switching-cost variants of max pressure do
(Levin, Hu & Odell 2020, cyclic max pressure; Kouvelas, Lioris, Fayazi & Varaiya 2014, who
charge the lost time of a switch against the pressure gain):

1. **Demand with look-ahead.** Per incoming lane, demand is the halting queue plus a share
   (``lookahead``, all of them by default) of the moving vehicles on the detector, which reach
   the stop line within the next seconds.
2. **Pressure.** A stage's pressure is, over the distinct incoming lanes it serves, the lane's
   saturation flow relative to the HCM base (1900 pc/h/ln) times (its demand minus the mean
   occupancy of the outgoing lanes its green links enter): Varaiya's weight with turning
   ratios replaced by the served links' mean, counted once per lane (a lane with three turning
   links is not counted three times). Unit: vehicles.
3. **Which stage is next.** A stage is a candidate when vehicles wait on a lane it serves that
   the current stage does not serve, and whose exits are not jammed (every outgoing detector
   at 90% of its jam count: spillback, the lane could not discharge). By default
   (``order="cycle"``) the next candidate in the base program's cycle order is served, as in
   cyclic max pressure (Levin et al. 2020), which keeps the city's phase sequence and skips
   stages nobody waits for; ``order="pressure"`` serves the candidate of largest pressure
   (Varaiya's acyclic choice).
4. **Hold while discharging.** While some lane the current stage serves still has vehicles on
   its detector and a gap at the stop line below ``gap_s`` (the passage time, FHWA TSTM 2015
   table 5-4: 2..3 s; 3 s by default), the stage is kept, unless the next stage's pressure
   exceeds the current one's by more than the cost of switching: the vehicles the next stage
   could discharge during the change interval, ``switch_cost`` × (yellow + all-red) × its
   lanes' saturation flows.
5. **Gap-out.** Once no served lane discharges, the next stage is served; the current stage
   rests in green when no candidate waits.

The defaults (``gap_s`` 3 s, ``lookahead`` 1, ``switch_cost`` 3, cycle order) were tuned on
Bologna's Andrea Costa scenario, seeds 1-2; there acyclic pressure order and cheaper switching
(``switch_cost`` 1, cutting discharging platoons more often) measured worse (spillback onto
upstream junctions). ``bench/signals.py`` (3 seeds, Bologna cut at 3600 s) measures Andrea Costa
142.6 s (the city's plans 148.4 s, max pressure 206.0 s), Hamburg tavf 53.5 s (its own programs
64.5 s, max pressure 62.2 s), and Pasubio 352.6 s: worse than the city's plans (190.4 s) and
than max pressure (210.8 s). On Pasubio the cyclic order serves a 9-stage signal's every stage
with a vehicle waiting, and the main road's queue reaches the network's entries; pressure order
with ``switch_cost`` 1 measured 163 s there but 269 s on Andrea Costa, so no default is best on
both (bench/README.md, "Adaptive signals (issue 17)").

Minimum green, max-out and the starvation guard (no link waits more than the maximum cycle)
are the :class:`~routing.signals.control.base.SignalHead`'s, as for every controller.

References
----------
Varaiya, P. (2013). Max pressure control of a network of signalized intersections.
Transportation Research Part C 36, 177-195.
Levin, M. W., Hu, J., Odell, M. (2020). Max-pressure signal control with cyclical phase
structure. Transportation Research Part C 120, 102828.
Kouvelas, A., Lioris, J., Fayazi, S. A., Varaiya, P. (2014). Maximum pressure controller for
stabilizing queues in signalized arterial networks. Transportation Research Record 2421, 133-141.
FHWA (2015). Traffic Signal Timing Manual, 2nd ed., NCHRP Report 812, sections 5.2-5.3
(passage time, gap-out, max-out).
TRB (2016). Highway Capacity Manual, 6th ed., eq. 19-8 (base saturation flow 1900 pc/h/ln).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing.signals.control.base import (
    BASE_SATURATION_FLOW,
    ControlledSignal,
    Decision,
    Measurements,
    checked_number,
)
from routing.signals.control.detectors import DETECTOR_LENGTH_M
from routing.signals.model import SignalError

# vehicles on a jammed outgoing detector: its length over a jam spacing of 7.5 m per vehicle
# (5 m car + 2.5 m standstill gap; SUMO's default passenger type is 5 m long, minGap 2.5 m)
JAM_VEH = 0.9 * DETECTOR_LENGTH_M / 7.5


@dataclass(frozen=True)
class _Layout:
    """A signal's (stage, served incoming lane) pairs, as arrays for vectorised decisions."""

    stage: np.ndarray  # per pair: stage index
    lane: np.ndarray  # per pair: position in in_lanes
    weight: np.ndarray  # per pair: the lane's saturation flow in the stage / HCM base
    down: np.ndarray  # pairs x out_lanes: mean over the pair's outgoing lanes
    outs: np.ndarray  # pairs x out_lanes: 1 where the pair's green links enter the lane
    n_outs: np.ndarray  # per pair: number of its outgoing lanes
    served: np.ndarray  # stages x in_lanes: whether the stage serves the lane
    flow: np.ndarray  # per stage: sum of its lanes' saturation flows, veh/s


def _layout(signal: ControlledSignal) -> _Layout:
    n_in, n_out = len(signal.in_lanes), len(signal.out_lanes)
    stages, lanes, weights, outs_rows = [], [], [], []
    served = np.zeros((len(signal.stages), n_in), dtype=bool)
    flow = np.zeros(len(signal.stages))
    for k, stage in enumerate(signal.stages):
        sat: dict[int, float] = {}
        outs: dict[int, set[int]] = {}
        for link in sorted(stage.green):
            lane = signal.link_in[link] if link < len(signal.link_in) else -1
            if lane < 0:
                continue
            sat[lane] = max(sat.get(lane, 0.0), float(signal.saturation_flow[link]))
            o = signal.link_out[link]
            if o >= 0:
                outs.setdefault(lane, set()).add(o)
        for lane in sorted(sat):
            row = np.zeros(n_out)
            row[sorted(outs.get(lane, ()))] = 1.0
            stages.append(k)
            lanes.append(lane)
            weights.append(sat[lane] / BASE_SATURATION_FLOW)
            outs_rows.append(row)
            served[k, lane] = True
        flow[k] = sum(sat.values())
    outs_m = np.array(outs_rows).reshape(len(outs_rows), n_out)
    n_outs = outs_m.sum(axis=1)
    return _Layout(
        np.array(stages, dtype=int),
        np.array(lanes, dtype=int),
        np.array(weights),
        outs_m / np.maximum(n_outs, 1.0)[:, None],
        outs_m,
        n_outs,
        served,
        flow,
    )


class Adaptive:
    """The twin's adaptive controller: pressure with look-ahead, hold on discharge, switch cost.

    See the module docstring for the rule and its sources.

    Parameters
    ----------
    gap_s
        Passage time, s: a served lane whose last stop-line passage is more recent than this,
        with vehicles still on its detector, is discharging (FHWA TSTM 2015 table 5-4,
        2..3 s).
    lookahead
        Share of the moving (not halting) vehicles on an incoming lane's detector counted as
        demand, 0..1 (they reach the stop line within the detector's travel time).
    switch_cost
        Multiplier of the switching cost: the change interval (yellow + all-red, s) times the
        next stage's saturation flow (veh/s). 0 switches on any pressure gain while
        discharging; large values never cut a discharging stage.
    order
        ``cycle`` (the base program's order, skipping stages nobody waits for) or
        ``pressure`` (the waiting stage of largest pressure).
    jam_veh
        Vehicles on an outgoing lane's detector at which it counts as jammed, veh (90% of
        the detector length over a 7.5 m jam spacing by default).

    Raises
    ------
    SignalError
        When an option is out of range.
    """

    def __init__(
        self,
        *,
        gap_s: float = 3.0,
        lookahead: float = 1.0,
        switch_cost: float = 3.0,
        order: str = "cycle",
        jam_veh: float = JAM_VEH,
    ) -> None:
        gap_s = checked_number(gap_s, "gap_s")
        jam_veh = checked_number(jam_veh, "jam_veh")
        switch_cost = checked_number(switch_cost, "switch_cost", strict=False)
        if not 0.0 <= checked_number(lookahead, "lookahead", strict=False) <= 1.0:
            raise SignalError(
                f"lookahead must be within 0..1, got {lookahead}", parameter="lookahead"
            )
        if order not in ("cycle", "pressure"):
            raise SignalError(
                f"order must be 'cycle' or 'pressure', got {order!r}", parameter="order"
            )
        if not jam_veh > 0:
            raise SignalError(f"jam_veh must be positive, got {jam_veh}", parameter="jam_veh")
        if not switch_cost >= 0:
            raise SignalError(
                f"switch_cost must not be negative, got {switch_cost}", parameter="switch_cost"
            )
        self.gap_s = float(gap_s)
        self.lookahead = float(lookahead)
        self.switch_cost = float(switch_cost)
        self.order = order
        self.jam_veh = float(jam_veh)
        self.name = "adaptive"
        self._layouts: dict[str, _Layout] = {}

    def reset(self, signal: ControlledSignal) -> None:
        """Prepare for a signal: its stages' lanes and weights.

        Parameters
        ----------
        signal
            The signal.
        """
        self._layouts[signal.id] = _layout(signal)

    def _of(self, signal: ControlledSignal) -> _Layout:
        found = self._layouts.get(signal.id)
        if found is None or found.served.shape != (len(signal.stages), len(signal.in_lanes)):
            found = self._layouts[signal.id] = _layout(signal)
        return found

    def pressures(self, signal: ControlledSignal, m: Measurements) -> np.ndarray:
        """Return each stage's pressure with look-ahead, veh (see the module docstring).

        Parameters
        ----------
        signal
            The signal.
        m
            Its measurements (``queue``, ``count`` per incoming lane, ``out_count`` per
            outgoing lane, veh).

        Returns
        -------
        numpy.ndarray
            Pressure per stage index, veh (saturation-flow weighted).
        """
        lay = self._of(signal)
        demand = m.queue + self.lookahead * np.maximum(m.count - m.queue, 0.0)
        value = lay.weight * (demand[lay.lane] - lay.down @ m.out_count)
        return np.bincount(lay.stage, weights=value, minlength=len(signal.stages))

    def _candidates(self, lay: _Layout, current: int, m: Measurements) -> np.ndarray:
        """Return, per stage, whether vehicles wait on a lane it adds whose exits are free."""
        jammed = lay.outs @ (m.out_count >= self.jam_veh)
        blocked = (lay.n_outs > 0) & (jammed >= lay.n_outs)
        waits = (m.count[lay.lane] > 0) & ~blocked & ~lay.served[current, lay.lane]
        found = np.bincount(lay.stage, weights=waits, minlength=lay.served.shape[0]) > 0
        found[current] = False
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
            True while some served lane has vehicles on its detector and its last stop-line
            passage is less than ``gap_s`` ago.
        """
        lanes = self._of(signal).served[stage]
        return bool(np.any(lanes & (m.count > 0) & (m.gap_s < self.gap_s)))

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
            ``discharging`` (hold), ``pressure`` (switch: the gain exceeds the switching
            cost), ``gap-out`` (switch to the next stage with demand) or ``rest`` (hold:
            nothing waits elsewhere).
        """
        n = len(signal.stages)
        if n < 2:
            return Decision(current, "rest")
        lay = self._of(signal)
        waiting = np.flatnonzero(self._candidates(lay, current, m))
        if waiting.size == 0:
            return Decision(current, "rest")
        pressure: np.ndarray | None = None
        if self.order == "cycle":
            best = int(waiting[np.argmin((waiting - current) % n)])
        else:
            pressure = self.pressures(signal, m)
            # ties: the earliest in cycle order after the current stage
            key = pressure[waiting] - 1e-9 * ((waiting - current) % n)
            best = int(waiting[np.argmax(key)])
        if self.discharging(signal, current, m):
            if pressure is None:
                pressure = self.pressures(signal, m)
            stage = signal.stages[current]
            cost = self.switch_cost * (stage.yellow_s + stage.all_red_s) * lay.flow[best]
            if pressure[best] - pressure[current] > cost:
                return Decision(best, "pressure")
            return Decision(current, "discharging")
        return Decision(best, "gap-out")
