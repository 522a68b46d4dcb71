"""What feeds :class:`~routing.signals.control.base.Measurements`: detectors placed by rule.

The twin places its own detectors, written into the run's work folder (never beside the
scenario), by one rule that holds for every scenario and also for live operation:

- a lane-area (E2) detector on every incoming lane of every controlled vehicle link, from the
  stop line back ``min(lane length, 50 m)``: vehicles on it (``count``) and vehicles halting,
  speed below 0.1 m/s (``queue``);
- an induction loop (E1) 0.5 m before the stop line of each of those lanes: seconds since a
  vehicle last passed it (``gap_s``, the gap the actuated controller's gap-out reads);
- an E2 detector on the first ``min(lane length, 50 m)`` of every outgoing lane
  (``out_count``, the downstream occupancy max pressure subtracts);
- buses (vClass ``bus``) are tracked from their departure (their lane, position, speed and
  stop state subscribed); a bus counts on an incoming lane within ``150 m`` of the stop line
  (the transit signal priority check-in range), unless it is stopped at a stop;
- emergency vehicles (vClass ``emergency``, or an id starting ``twin_emergency`` when the
  route forced a car's class) are tracked from their departure along their route: each
  signal link ahead on it within ``300 m`` of its stop line is reported with the vehicle's
  arrival time there and the time the queue halting on that link's lane ahead of the vehicle
  needs to clear, 2 s per vehicle (as the fixed-time corridor of
  :mod:`routing.signals.preemption` triggers its holds). The seconds each emergency vehicle
  spends halting while its next signal shows red or yellow on its link are kept
  (:attr:`Detectors.emergency_red_wait_s`): what pre-emption is meant to bring to zero.

A scenario's own detectors are not used for control: Bologna's (``acosta_detectors.add.xml``)
are induction loops 0..120 m upstream of the stop line, which count vehicles but see neither
queues nor the stop-line gap. They keep running and writing their own outputs.

The runner reads every detector through TraCI variable subscriptions (one message per
simulation step for all of them), see :meth:`Detectors.subscribe` and
:meth:`Detectors.measure`.

References
----------
SUMO documentation, "Lanearea Detectors (E2)" and "Induction Loops Detectors (E1)"
(https://sumo.dlr.de/docs/Simulation/Output/Lanearea_Detectors_(E2).html).
FHWA, *Traffic Signal Timing Manual*, 2nd ed., 2015, section 5.2 (stop-line presence
detection for gap-out); Varaiya (2013) for the queue and downstream counts of max pressure.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import traci

from routing.signals.control.base import ControlledSignal, Measurements, checked_number
from routing.signals.model import SignalError

DETECTOR_LENGTH_M = 50.0
BUS_RANGE_M = 150.0
EMERGENCY_RANGE_M = 300.0  # pre-emption check-in range, m (about 20 s at 50 km/h)
EMERGENCY_PREFIX = "twin_emergency"
DISCHARGE_S = 2.0  # saturation headway: one queued vehicle leaves the stop line every 2 s
HALTING_SPEED_MS = 0.1
_LOOP_SETBACK_M = 0.5
_VAR_COUNT = 0x10  # LAST_STEP_VEHICLE_NUMBER
_VAR_HALTING = 0x14  # LAST_STEP_VEHICLE_HALTING_NUMBER
_VAR_SINCE = 0x16  # LAST_STEP_TIME_SINCE_DETECTION
_VAR_DEPARTED = 0x74  # VAR_DEPARTED_VEHICLES_IDS
_VAR_LANE = 0x51  # VAR_LANE_ID
_VAR_POS = 0x56  # VAR_LANEPOSITION
_VAR_SPEED = 0x40  # VAR_SPEED
_VAR_STOP = 0xB5  # VAR_STOPSTATE
try:  # libsumo raises its own class for an unknown vehicle
    import libsumo

    _UNKNOWN: tuple[type[Exception], ...] = (traci.TraCIException, libsumo.TraCIException)
except ImportError:
    _UNKNOWN = (traci.TraCIException,)


@dataclass(frozen=True)
class LaneDetector:
    """One placed detector.

    Attributes
    ----------
    id
        SUMO detector id.
    kind
        ``in`` (E2 at the stop line), ``loop`` (E1 at the stop line) or ``out`` (E2 at the
        start of an outgoing lane).
    lane
        SUMO lane id.
    pos_m, length_m
        Start position on the lane and length, m (0 for a loop).
    """

    id: str
    kind: str
    lane: str
    pos_m: float
    length_m: float


@dataclass
class Detectors:
    """The detectors of a run and how to read them into measurements.

    Attributes
    ----------
    signals
        The controlled signals, by id.
    detectors
        Every placed detector.
    in_lanes, out_lanes
        Every incoming and outgoing lane measured, sorted.
    lane_length
        Length of each measured lane, m.
    lane_speed
        Speed limit of each measured lane, m/s.
    bus_range_m
        How far before the stop line buses are seen, m.
    emergency_range_m
        How far before the stop line emergency vehicles are seen, m.
    emergency_red_wait_s
        Per emergency vehicle id: seconds it has halted (speed below 0.1 m/s) while the next
        signal on its route, within range, showed its link red or yellow.
    """

    signals: Mapping[str, ControlledSignal]
    detectors: tuple[LaneDetector, ...]
    in_lanes: tuple[str, ...]
    out_lanes: tuple[str, ...]
    lane_length: dict[str, float]
    lane_speed: dict[str, float]
    bus_range_m: float = BUS_RANGE_M
    emergency_range_m: float = EMERGENCY_RANGE_M
    emergency_red_wait_s: dict[str, float] = field(default_factory=dict)
    _index: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _bus_links: dict[str, list[tuple[str, int]]] = field(default_factory=dict, repr=False)
    _emergency: set[str] = field(default_factory=set, repr=False)
    _dt: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        pos_in = {lane: k for k, lane in enumerate(self.in_lanes)}
        pos_out = {lane: k for k, lane in enumerate(self.out_lanes)}
        for sid, s in self.signals.items():
            self._index[sid] = (
                np.array([pos_in[lane] for lane in s.in_lanes], dtype=int),
                np.array([pos_out[lane] for lane in s.out_lanes], dtype=int),
            )
            for link, k in enumerate(s.link_in):
                if k >= 0:
                    self._bus_links.setdefault(s.in_lanes[k], []).append((sid, link))

    @classmethod
    def place(
        cls,
        net: Any,
        signals: Mapping[str, ControlledSignal],
        *,
        length_m: float = DETECTOR_LENGTH_M,
        bus_range_m: float = BUS_RANGE_M,
        emergency_range_m: float = EMERGENCY_RANGE_M,
    ) -> Detectors:
        """Place the detectors of a set of signals by the rule of the module docstring.

        Parameters
        ----------
        net
            The network (``sumolib.net.Net``).
        signals
            The controlled signals.
        length_m
            Length of the queue and outgoing detectors, m (50 m by default: about 7 queued
            cars, the usual stop-bar zone; FHWA TSTM 2015 section 5.2).
        bus_range_m
            How far before the stop line buses are seen, m.
        emergency_range_m
            How far before the stop line emergency vehicles are seen, m (300 m by default,
            a design choice: about 20 s at 50 km/h, enough for the pre-emption lead time,
            the change interval and a standing queue's clearing).

        Returns
        -------
        Detectors
            The placed detectors.

        Raises
        ------
        SignalError
            When a length is not positive or a lane is not in the network.
        """
        length_m = checked_number(length_m, "length_m")
        bus_range_m = checked_number(bus_range_m, "bus_range_m")
        emergency_range_m = checked_number(emergency_range_m, "emergency_range_m")
        dets: list[LaneDetector] = []
        lengths: dict[str, float] = {}
        speeds: dict[str, float] = {}
        ins = tuple(sorted({lane for s in signals.values() for lane in s.in_lanes}))
        outs = tuple(sorted({lane for s in signals.values() for lane in s.out_lanes}))
        for lane_id in [*ins, *outs]:
            try:
                lane = net.getLane(lane_id)
            except KeyError as exc:
                raise SignalError(
                    f"lane {lane_id} is not in the network", parameter="signals"
                ) from exc
            lengths[lane_id] = float(lane.getLength())
            speeds[lane_id] = float(lane.getSpeed())
        for lane_id in ins:
            full = lengths[lane_id]
            span = min(full, length_m)
            dets.append(LaneDetector(f"twin_in_{lane_id}", "in", lane_id, full - span, span))
            loop = max(full - _LOOP_SETBACK_M, 0.0)
            dets.append(LaneDetector(f"twin_loop_{lane_id}", "loop", lane_id, loop, 0.0))
        for lane_id in outs:
            span = min(lengths[lane_id], length_m)
            dets.append(LaneDetector(f"twin_out_{lane_id}", "out", lane_id, 0.0, span))
        return cls(signals, tuple(dets), ins, outs, lengths, speeds, bus_range_m, emergency_range_m)

    def write(self, path: Path) -> Path:
        """Write the detectors as a SUMO additional file.

        Parameters
        ----------
        path
            The file to write (in the run's work folder).

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        root = ET.Element("additional")
        for d in self.detectors:
            if d.kind == "loop":
                ET.SubElement(
                    root,
                    "inductionLoop",
                    id=d.id,
                    lane=d.lane,
                    pos=f"{d.pos_m:.2f}",
                    period="86400",
                    file="twin_detectors.xml",
                )
            else:
                ET.SubElement(
                    root,
                    "laneAreaDetector",
                    id=d.id,
                    lane=d.lane,
                    pos=f"{d.pos_m:.2f}",
                    length=f"{d.length_m:.2f}",
                    period="86400",
                    file="twin_detectors.xml",
                    haltingSpeedThreshold=str(HALTING_SPEED_MS),
                    timeThreshold="0",
                )
        ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
        return path

    def subscribe(self, conn: Any) -> None:
        """Subscribe to every detector and to departures (one TraCI message per step).

        Parameters
        ----------
        conn
            A TraCI connection (or the ``traci``/``libsumo`` module), before the first step.
        """
        for d in self.detectors:
            if d.kind == "loop":
                conn.inductionloop.subscribe(d.id, [_VAR_SINCE])
            elif d.kind == "in":
                conn.lanearea.subscribe(d.id, [_VAR_COUNT, _VAR_HALTING])
            else:
                conn.lanearea.subscribe(d.id, [_VAR_COUNT])
        conn.simulation.subscribe([_VAR_DEPARTED])

    def measure(self, conn: Any) -> dict[str, Measurements]:
        """Read this step's subscription results into measurements per signal.

        New departures are checked once for vClass ``bus`` (then subscribed to) and for
        emergency vehicles (then followed along their route, see the module docstring).

        Parameters
        ----------
        conn
            The TraCI connection the detectors were subscribed on.

        Returns
        -------
        dict
            Measurements by signal id.
        """
        area = conn.lanearea.getAllSubscriptionResults()
        loops = conn.inductionloop.getAllSubscriptionResults()
        n_in, n_out = len(self.in_lanes), len(self.out_lanes)
        count, queue, gap = np.zeros(n_in), np.zeros(n_in), np.full(n_in, 1e9)
        out = np.zeros(n_out)
        k_in = k_out = 0
        for d in self.detectors:
            if d.kind == "loop":
                gap[k_in - 1] = float(loops.get(d.id, {}).get(_VAR_SINCE, 1e9))
            elif d.kind == "in":
                values = area.get(d.id, {})
                count[k_in] = float(values.get(_VAR_COUNT, 0))
                queue[k_in] = float(values.get(_VAR_HALTING, 0))
                k_in += 1
            else:
                out[k_out] = float(area.get(d.id, {}).get(_VAR_COUNT, 0))
                k_out += 1
        etas = self._bus_etas(conn)
        emergency, clear = self._emergency_etas(conn) if self._emergency else ({}, {})
        result: dict[str, Measurements] = {}
        for sid, (i_in, i_out) in self._index.items():
            result[sid] = Measurements(
                queue=queue[i_in],
                count=count[i_in],
                gap_s=gap[i_in],
                out_count=out[i_out],
                bus_eta_s=etas.get(sid, {}),
                emergency_eta_s=emergency.get(sid, {}),
                emergency_clear_s=clear.get(sid, {}),
            )
        return result

    def _bus_etas(self, conn: Any) -> dict[str, dict[int, float]]:
        """Return per signal and link the ETA at the stop line of the nearest moving bus, s."""
        departed = conn.simulation.getSubscriptionResults().get(_VAR_DEPARTED, ())
        for vid in departed:
            try:
                vclass = conn.vehicle.getVehicleClass(vid)
                if vclass == "bus":
                    conn.vehicle.subscribe(vid, [_VAR_LANE, _VAR_POS, _VAR_SPEED, _VAR_STOP])
                elif vclass == "emergency" or str(vid).startswith(EMERGENCY_PREFIX):
                    self._emergency.add(vid)
                    self.emergency_red_wait_s.setdefault(vid, 0.0)
            except _UNKNOWN:  # departed and already gone (arrived or removed) in that step
                continue
        out: dict[str, dict[int, float]] = {}
        for values in conn.vehicle.getAllSubscriptionResults().values():
            lane = values.get(_VAR_LANE, "")
            served = self._bus_links.get(lane)
            if not served or int(values.get(_VAR_STOP, 0)) & 1:  # bit 0: stopped at a stop
                continue
            distance = self.lane_length[lane] - float(values.get(_VAR_POS, 0.0))
            if distance > self.bus_range_m or distance < 0:
                continue
            # a slow (queued) bus is credited half the speed limit: it moves once served
            speed = max(float(values.get(_VAR_SPEED, 0.0)), 0.5 * self.lane_speed[lane], 0.1)
            eta = distance / speed
            for sid, link in served:
                links = out.setdefault(sid, {})
                links[link] = min(links.get(link, eta), eta)
        return out

    def _emergency_etas(
        self, conn: Any
    ) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]]]:
        """Return per signal and link the nearest emergency vehicle's ETA and queue clearing, s.

        Each tracked vehicle's signals ahead come from ``vehicle.getNextTLS`` (signal, link
        index, distance to the stop line, state shown) up to ``emergency_range_m``. The ETA
        is the distance over the vehicle's speed, at least half its allowed speed (a halted
        vehicle moves once served, as for buses). The clearing time is 2 s per vehicle
        halting on the link's incoming lane ahead of the emergency vehicle.
        """
        if self._dt <= 0.0:
            self._dt = float(conn.simulation.getDeltaT())
        etas: dict[str, dict[int, float]] = {}
        clear: dict[str, dict[int, float]] = {}
        for vid in sorted(self._emergency):
            try:
                ahead = conn.vehicle.getNextTLS(vid)
                speed = float(conn.vehicle.getSpeed(vid))
                allowed = float(conn.vehicle.getAllowedSpeed(vid))
                lane = str(conn.vehicle.getLaneID(vid))
                position = float(conn.vehicle.getLanePosition(vid))
            except _UNKNOWN:  # arrived (or removed): no longer followed
                self._emergency.discard(vid)
                continue
            expected = max(speed, 0.5 * allowed, 0.1)
            for k, (sid, link, distance, state) in enumerate(ahead):
                if distance > self.emergency_range_m:
                    break  # sorted by distance: the rest are farther
                if k == 0 and speed < HALTING_SPEED_MS and state in "rRyYu":
                    self.emergency_red_wait_s[vid] += self._dt
                signal = self.signals.get(sid)
                if signal is None or not 0 <= link < signal.size or signal.link_in[link] < 0:
                    continue
                eta = max(float(distance), 0.0) / expected
                links = etas.setdefault(sid, {})
                if eta >= links.get(link, float("inf")):
                    continue
                links[link] = eta
                in_lane = signal.in_lanes[signal.link_in[link]]
                clear.setdefault(sid, {})[link] = DISCHARGE_S * self._halting_ahead(
                    conn, in_lane, vid if in_lane == lane else None, position
                )
        return etas, clear

    def _halting_ahead(self, conn: Any, lane: str, vehicle: str | None, position: float) -> int:
        """Vehicles halting on a lane, ahead of ``vehicle`` when it is on that lane."""
        if vehicle is None:
            return int(conn.lane.getLastStepHaltingNumber(lane))
        n = 0
        for other in conn.lane.getLastStepVehicleIDs(lane):
            if other == vehicle:
                continue
            try:
                if (
                    float(conn.vehicle.getLanePosition(other)) > position
                    and float(conn.vehicle.getSpeed(other)) < HALTING_SPEED_MS
                ):
                    n += 1
            except _UNKNOWN:
                continue
        return n
