"""Traffic incident detection on pairs of consecutive detectors.

A *station* is a cross-section of a road: the induction loops of one edge at one position, one
per lane. A *pair* is an upstream station and the next station downstream of it, found on the
network (:func:`detector_pairs`). Two detectors run on each pair, interval by interval:

- :class:`California` — the California algorithm #8 (Payne & Tignor 1978): the
  decision tree of spatial and temporal occupancy differences between the two stations, with
  its persistence check and its compression-wave suppression;
- :class:`LaneCusum` — the twin's own: a lane of the downstream station that stops passing its
  share of the station's vehicles, or a downstream station that stops passing the vehicles the
  upstream one sends it (a blocked lane), found by CUSUMs of binomial and Poisson
  log-likelihood ratios against incident-free traffic (learned online, or calibrated).

Both are stateful (``update(time, samples) -> alarms``, fed one interval at a time, as the live
feed delivers them: :class:`LiveIncidents` runs one as a processor of the feed) and have a pure
form over a table of readings (:func:`detect`) for evaluation (:func:`score`,
``bench/incidents.py``).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from routing.signals.model import SignalError
from routing.signals.sumo import Scenario, read_scenario

#: Elements of SUMO additional files that are induction loops (e1 detectors).
LOOP_TAGS = ("e1Detector", "inductionLoop")


@dataclass(frozen=True)
class Loop:
    """An induction loop (SUMO e1 detector) of a scenario.

    Attributes
    ----------
    id
        The detector's id in the scenario.
    lane
        The SUMO lane it lies on (``<edge>_<index>``).
    edge
        The lane's edge.
    lane_index
        The lane's index on its edge (0 = rightmost).
    position_m
        Distance from the start of the lane, m.
    lon, lat
        Where it is, EPSG:4326.
    """

    id: str
    lane: str
    edge: str
    lane_index: int
    position_m: float
    lon: float
    lat: float


@dataclass(frozen=True)
class Station:
    """The loops of one edge at one position (one per lane): a detector station.

    Attributes
    ----------
    id
        ``<edge>@<position, m>``.
    edge
        The edge.
    position_m
        Distance from the start of the edge, m.
    loops
        Loop ids by lane index (rightmost first).
    """

    id: str
    edge: str
    position_m: float
    loops: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """An upstream station and the next station downstream of it.

    Attributes
    ----------
    id
        ``<upstream id>><downstream id>``.
    upstream, downstream
        The stations.
    edges
        The edges driven from the upstream station to the downstream one, both included.
    distance_m
        Length of that path, m.
    travel_s
        Time to drive it at the edges' speed limits, s.
    share
        Share of the scenario's demand passing the upstream station that goes on to the
        downstream one (its routes), 0–1.
    """

    id: str
    upstream: Station
    downstream: Station
    edges: tuple[str, ...]
    distance_m: float
    travel_s: float
    share: float

    def covers(self, edge: str, position_m: float) -> bool:
        """Whether a point of the network lies between the pair's two stations.

        Parameters
        ----------
        edge
            SUMO edge id.
        position_m
            Distance from the start of the edge, m.

        Returns
        -------
        bool
            True when the point is on the pair's path, past the upstream station and before
            the downstream one.
        """
        if edge not in self.edges:
            return False
        if edge == self.edges[0] and position_m <= self.upstream.position_m:
            return False
        return not (edge == self.edges[-1] and position_m >= self.downstream.position_m)


def scenario_of(scenario: str | os.PathLike[str] | Scenario) -> Scenario:
    """Read a scenario from its ``.sumocfg`` or from the folder holding one.

    Parameters
    ----------
    scenario
        A ``.sumocfg`` file, a folder with exactly one, or a scenario already read.

    Returns
    -------
    Scenario
        The scenario.

    Raises
    ------
    SignalError
        When the path is neither, or the configuration cannot be read.
    """
    if isinstance(scenario, Scenario):
        return scenario
    path = Path(scenario)
    if path.is_dir():
        configs = sorted(path.glob("*.sumocfg"))
        if len(configs) != 1:
            raise SignalError(
                f"folder {path} holds {len(configs)} SUMO configurations (.sumocfg), not one",
                parameter="scenario",
            )
        path = configs[0]
    return read_scenario(path)


def scenario_loops(scenario: str | os.PathLike[str] | Scenario) -> list[Loop]:
    """Return the induction loops (e1 detectors) a scenario's additional files declare.

    Parameters
    ----------
    scenario
        The scenario (see :func:`scenario_of`).

    Returns
    -------
    list of Loop
        In file order; a negative position counts from the end of the lane, as SUMO does.

    Raises
    ------
    SignalError
        When a loop names a lane the network does not have, or its position is not a number.
    """
    sc = scenario_of(scenario)
    net = sc.read_net()
    import sumolib  # the scenario's network was read with it

    loops: list[Loop] = []
    for path in sc.additional:
        for element in ET.parse(path).getroot().iter():
            if element.tag not in LOOP_TAGS:
                continue
            lane_id = element.get("lane", "")
            try:
                lane = net.getLane(lane_id)
            except KeyError:
                raise SignalError(
                    f"{path.name}: detector {element.get('id')} is on lane {lane_id!r}, "
                    "which the network does not have",
                    parameter="scenario",
                ) from None
            try:
                position = float(element.get("pos", "0"))
            except ValueError:
                raise SignalError(
                    f"{path.name}: detector {element.get('id')} has position "
                    f"{element.get('pos')!r}, not a number of metres",
                    parameter="scenario",
                ) from None
            if position < 0:
                position += lane.getLength()
            position = min(max(position, 0.0), lane.getLength())
            x, y = sumolib.geomhelper.positionAtShapeOffset(lane.getShape(), position)
            lon, lat = net.convertXY2LonLat(x, y)
            loops.append(
                Loop(
                    id=element.get("id", ""),
                    lane=lane_id,
                    edge=lane.getEdge().getID(),
                    lane_index=lane.getIndex(),
                    position_m=position,
                    lon=float(lon),
                    lat=float(lat),
                )
            )
    return loops


def stations(loops: Iterable[Loop]) -> list[Station]:
    """Group loops into stations: one edge, one position (to the metre).

    Parameters
    ----------
    loops
        Loops of one scenario.

    Returns
    -------
    list of Station
        Ordered by edge and position.
    """
    groups: dict[tuple[str, int], list[Loop]] = defaultdict(list)
    for loop in loops:
        groups[(loop.edge, round(loop.position_m))].append(loop)
    out = []
    for (edge, _), members in sorted(groups.items()):
        members.sort(key=lambda lp: lp.lane_index)
        position = sum(m.position_m for m in members) / len(members)
        out.append(
            Station(
                id=f"{edge}@{position:.0f}",
                edge=edge,
                position_m=position,
                loops=tuple(m.id for m in members),
            )
        )
    return out


def detector_pairs(
    scenario: str | os.PathLike[str] | Scenario,
    *,
    max_distance_m: float = 1000.0,
    min_share: float = 0.5,
    min_vehicles: int = 20,
) -> list[Pair]:
    """Find the pairs of consecutive detector stations of a scenario.

    The rule: from each station, follow the network downstream (edge to edge, every branch)
    until a station is met, at most ``max_distance_m`` away; a station met that way, with no
    other station between, is the next one on that branch. The pair is kept when at least
    ``min_share`` of the vehicles the scenario's routes send past the upstream station go on
    to the downstream one along that path (so the two see mostly the same traffic: a branch
    that takes only a few of them is not a pair), and at least ``min_vehicles`` do.

    Parameters
    ----------
    scenario
        The scenario (see :func:`scenario_of`).
    max_distance_m
        Longest path between the two stations, m.
    min_share
        Smallest share of the upstream station's vehicles that must reach the downstream one.
    min_vehicles
        Fewest vehicles of the demand that must drive from one to the other.

    Returns
    -------
    list of Pair
        Ordered by upstream and downstream station.
    """
    sc = scenario_of(scenario)
    net = sc.read_net()
    found = stations(scenario_loops(sc))
    by_edge: dict[str, list[Station]] = defaultdict(list)
    for st in found:
        by_edge[st.edge].append(st)
    for members in by_edge.values():
        members.sort(key=lambda s: s.position_m)
    routes = [t.edges for t in sc.read_trips()]
    pairs: list[Pair] = []
    for up in found:
        for down, path in _next_stations(net, up, by_edge, max_distance_m):
            passing = [r for r in routes if up.edge in r]
            going = sum(1 for r in passing if _follows(r, path))
            share = going / len(passing) if passing else 0.0
            if going < min_vehicles or share < min_share:
                continue
            distance, travel = _path_length(net, path, up.position_m, down.position_m)
            pairs.append(
                Pair(
                    id=f"{up.id}>{down.id}",
                    upstream=up,
                    downstream=down,
                    edges=tuple(path),
                    distance_m=distance,
                    travel_s=travel,
                    share=share,
                )
            )
    return sorted(pairs, key=lambda p: p.id)


def _next_stations(
    net: Any, up: Station, by_edge: Mapping[str, list[Station]], limit: float
) -> list[tuple[Station, list[str]]]:
    """Find the first station on each branch downstream of ``up`` (depth-first), with its path."""
    later = [s for s in by_edge[up.edge] if s.position_m > up.position_m + 1.0]
    if later:
        return [(later[0], [up.edge])]
    edge = net.getEdge(up.edge)
    out: list[tuple[Station, list[str]]] = []
    stack: list[tuple[Any, float, list[str]]] = [(edge, edge.getLength() - up.position_m, [])]
    while stack:
        current, dist, path = stack.pop()
        path = [*path, current.getID()]
        for nxt in current.getOutgoing():
            nid = nxt.getID()
            if nxt.getFunction() == "internal" or nid in path:
                continue
            if by_edge.get(nid):
                first = by_edge[nid][0]
                if dist + first.position_m <= limit:
                    out.append((first, [*path, nid]))
                continue
            if dist + nxt.getLength() <= limit:
                stack.append((nxt, dist + nxt.getLength(), path))
    return out


def _follows(route: Sequence[str], path: Sequence[str]) -> bool:
    """Tell whether a route drives ``path`` edge after edge."""
    n = len(path)
    return any(tuple(route[i : i + n]) == tuple(path) for i, e in enumerate(route) if e == path[0])


def _path_length(net: Any, path: Sequence[str], start: float, end: float) -> tuple[float, float]:
    """Return the length (m) and free-flow time (s) from ``start`` to ``end`` along a path."""
    if len(path) == 1:
        edge = net.getEdge(path[0])
        return end - start, (end - start) / edge.getSpeed()
    distance = travel = 0.0
    for k, eid in enumerate(path):
        edge = net.getEdge(eid)
        length = edge.getLength()
        if k == 0:
            length -= start
        elif k == len(path) - 1:
            length = end
        distance += length
        travel += length / edge.getSpeed()
    return distance, travel


# --- readings and alarms --------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """What one loop measured over one interval.

    Attributes
    ----------
    flow
        Vehicles per hour that passed.
    occupancy
        Share of the interval the loop was occupied, %.
    speed
        Mean speed of the vehicles that passed, km/h; None when none did.
    """

    flow: float
    occupancy: float
    speed: float | None = None

    def count(self, interval_s: float) -> float:
        """Vehicles that passed in an interval of ``interval_s`` seconds."""
        return self.flow * interval_s / 3600.0


@dataclass(frozen=True)
class Alarm:
    """An incident alarm raised on a detector pair.

    Attributes
    ----------
    pair
        The pair's id.
    time_s
        End of the interval that raised it (the detector's clock, s).
    algorithm
        Which detector raised it.
    statistics
        The values that decided (names as in the algorithm's description).
    """

    pair: str
    time_s: float
    algorithm: str
    statistics: dict[str, Any] = field(default_factory=dict)


class Detector(Protocol):
    """An incident detector fed interval by interval."""

    name: str

    def update(self, time_s: float, samples: Mapping[str, Sample]) -> list[Alarm]:
        """Take one interval's samples (by loop id); return the alarms it raises."""
        ...

    @property
    def active(self) -> set[str]:
        """Pairs in alarm now."""
        ...


def _station_occupancy(station: Station, samples: Mapping[str, Sample]) -> float | None:
    """Return the mean occupancy of a station's loops (%), None if one did not report."""
    values = [samples[i].occupancy for i in station.loops if i in samples]
    if len(values) != len(station.loops):
        return None
    return sum(values) / len(values)


# --- the California algorithm #8 ------------------------------------------------------------


@dataclass(frozen=True)
class CaliforniaThresholds:
    """Thresholds of the California algorithm #8 (occupancies in %).

    Attributes
    ----------
    t1
        OCCDF: upstream minus downstream occupancy, percentage points.
    t2
        OCCRDF: OCCDF relative to the upstream occupancy.
    t3
        DOCCTD: relative drop of the downstream occupancy over two intervals.
    t4
        DOCCTD below which (a steep rise downstream) a compression wave is declared.
    t5
        DOCC: downstream occupancy at or above which a compression wave is possible and
        the incident test is not made (heavy traffic downstream).
    """

    t1: float = 8.0
    t2: float = 0.5
    t3: float = 0.3
    t4: float = -0.4
    t5: float = 30.0


_FREE, _TENTATIVE, _CONFIRMED, _CONTINUING = 0, 6, 7, 8  # 1..5: compression wave k intervals ago


class California:
    """The California algorithm #8 on every pair, fed one interval at a time.

    Payne, H. J. and Tignor, S. C. (1978), "Freeway incident-detection algorithms based on
    decision trees with states", Transportation Research Record 682, 30–37: algorithm #8, a
    decision tree with states over three features of a pair's station occupancies (each the
    mean of the station's lanes) at interval ``t``:

    - ``OCCDF = OCC(up, t) − OCC(down, t)``,
    - ``OCCRDF = OCCDF / OCC(up, t)``,
    - ``DOCCTD = (OCC(down, t−2) − OCC(down, t)) / OCC(down, t−2)``,

    and the downstream occupancy ``DOCC = OCC(down, t)``. From the incident-free state an
    incident is *tentative* when ``OCCDF ≥ T1``, ``OCCRDF ≥ T2`` and ``DOCCTD ≥ T3`` (and
    ``DOCC < T5``); the persistence check *confirms* it (the alarm) when ``OCCRDF ≥ T2`` still
    holds the next interval, and it *continues* while it holds. A compression wave downstream
    (``DOCC ≥ T5`` and ``DOCCTD < T4``) suppresses the incident tests for the next five
    intervals (states 1–5). The tree as coded follows the reproduction in OTC's
    ``CaliforniaAlgorithm8`` (Organic Traffic Control, github.com/otc-team), whose default
    thresholds are :class:`CaliforniaThresholds`'s; a twin calibrates its own
    (``bench/incidents.py``). With no occupancy two intervals back (``OCC(down, t−2) = 0``)
    ``DOCCTD`` is 0, and ``OCCRDF`` is 0 when the upstream occupancy is.

    Parameters
    ----------
    pairs
        The detector pairs.
    thresholds
        T1–T5.
    """

    name = "California #8"

    def __init__(self, pairs: Sequence[Pair], thresholds: CaliforniaThresholds | None = None):
        self.pairs = list(pairs)
        self.t = thresholds or CaliforniaThresholds()
        self.state: dict[str, int] = {p.id: _FREE for p in self.pairs}
        self.history: dict[str, list[float]] = {p.id: [] for p in self.pairs}

    @property
    def active(self) -> set[str]:
        """Pairs with a confirmed, continuing incident."""
        return {k for k, s in self.state.items() if s in (_CONFIRMED, _CONTINUING)}

    def update(self, time_s: float, samples: Mapping[str, Sample]) -> list[Alarm]:
        """Apply the decision tree to one interval.

        Parameters
        ----------
        time_s
            End of the interval, s.
        samples
            Each loop's sample (a pair whose stations miss one is skipped this interval).

        Returns
        -------
        list of Alarm
            The incidents confirmed this interval.
        """
        alarms = []
        for pair in self.pairs:
            up = _station_occupancy(pair.upstream, samples)
            down = _station_occupancy(pair.downstream, samples)
            if up is None or down is None:
                continue
            past = self.history[pair.id]
            past.append(down)
            if len(past) < 3:
                continue
            del past[:-3]
            before = past[0]
            occdf = up - down
            occrdf = occdf / up if up > 0 else 0.0
            docctd = (before - down) / before if before > 0 else 0.0
            old = self.state[pair.id]
            new = self.step(old, occdf, occrdf, docctd, down)
            self.state[pair.id] = new
            if new == _CONFIRMED and old == _TENTATIVE:
                stats = {"OCCDF": occdf, "OCCRDF": occrdf, "DOCCTD": docctd, "DOCC": down}
                alarms.append(Alarm(pair.id, time_s, self.name, stats))
        return alarms

    def step(self, state: int, occdf: float, occrdf: float, docctd: float, docc: float) -> int:
        """One move of the decision tree: the next state from the state and the features.

        Parameters
        ----------
        state
            0 incident-free, 1–5 compression wave k intervals ago, 6 tentative,
            7 confirmed, 8 continuing.
        occdf, occrdf, docctd, docc
            The features (see the class).

        Returns
        -------
        int
            The next state.
        """
        t = self.t
        wave = docc >= t.t5 and docctd < t.t4
        if state >= _TENTATIVE:  # the persistence check
            if occrdf >= t.t2:
                return _CONFIRMED if state == _TENTATIVE else _CONTINUING
            if wave and state == _TENTATIVE:
                return 1
            return _FREE
        if wave:
            return 1
        if state >= 1:  # compression wave: the incident tests wait five intervals
            return state + 1 if state < 5 else _FREE
        if docc >= t.t5:
            return _FREE
        if occdf >= t.t1 and occrdf >= t.t2 and docctd >= t.t3:
            return _TENTATIVE
        return _FREE


# --- the twin's detector: lane shares and flow conservation, CUSUM ----------------------------


@dataclass(frozen=True)
class CusumSettings:
    """Settings of :class:`LaneCusum`.

    Attributes
    ----------
    rho
        The alternative of the lane test: a blocked lane passes ``rho`` times its usual share
        of the station's vehicles.
    rho_flow
        The alternative of the flow test: the downstream station passes ``rho_flow`` times the
        vehicles it usually passes for those the upstream station counted.
    h_lane, h_flow
        Decision thresholds of the two CUSUMs (log-likelihood ratio); a calibrated baseline may
        raise them per station or pair (never lower).
    window
        Intervals whose counts each test weighs together (a signal cycle's worth: a lane held
        at red one interval catches up the next), the evidence divided among them.
    memory
        Intervals over which the baseline is learned online (exponential forgetting).
    min_vehicles
        Vehicles a station must have counted before it is tested.
    """

    rho: float = 0.1
    rho_flow: float = 0.3
    h_lane: float = 6.0
    h_flow: float = 8.0
    window: int = 2
    memory: float = 120.0
    min_vehicles: float = 60.0


@dataclass
class Baseline:
    """What incident-free traffic looks like at each station and pair (learned or calibrated).

    Attributes
    ----------
    lanes
        Per downstream station, vehicles counted per loop (the lane shares).
    flows
        Per pair, vehicles counted downstream and upstream.
    h_lane
        Per station, its lane-test threshold (when calibrated).
    h_flow
        Per pair, its flow-test threshold (when calibrated).
    """

    lanes: dict[str, dict[str, float]] = field(default_factory=dict)
    flows: dict[str, list[float]] = field(default_factory=dict)
    h_lane: dict[str, float] = field(default_factory=dict)
    h_flow: dict[str, float] = field(default_factory=dict)


class LaneCusum:
    """The twin's incident detector: a lane that stops passing its vehicles, by CUSUM.

    A lane blocked upstream of a station sends its vehicles to the other lanes, or holds them
    back; either way the station's lane shares, or the vehicles it passes for those the
    upstream station sends, leave what incident-free traffic shows. One-sided CUSUMs (Page,
    E. S. (1954), "Continuous inspection schemes", Biometrika 41, 100–115) accumulate the
    evidence interval by interval:

    - the lane test, one CUSUM per lane of a downstream station with two or more loops: with
      the lane's usual share ``p`` of the station's vehicles, ``N`` vehicles at the station
      this interval and ``O`` of them on the lane, the binomial log-likelihood ratio of "its
      share fell to ``rho·p``" against "it is ``p``", ``O·ln(rho) + (N−O)·ln((1−rho·p)/(1−p))``;
      the station's statistic is its largest lane CUSUM;
    - the flow test, one CUSUM per pair: the Poisson log-likelihood ratio of "the downstream
      station passes ``rho_flow`` times the ``E = r·U`` vehicles it usually passes for the
      ``U`` counted upstream", ``N·ln(rho_flow) + E·(1−rho_flow)`` (the one test a one-lane
      station has).

    A CUSUM is ``S ← max(0, S + llr)``; a pair goes into alarm when its downstream station's
    statistic or its flow CUSUM reaches its threshold, and leaves it when both are back under
    half of it. Signal cycles make single intervals noisy, but over a cycle their evidence
    cancels (a lane held at red catches up at green); a blocked lane's keeps adding up. The
    baseline (lane shares ``p``, ratios ``r``) is learned online with exponential forgetting
    over ``memory`` intervals while nothing is in alarm, starting from a calibrated
    :class:`Baseline` when one is given (:func:`calibrate`).

    Parameters
    ----------
    pairs
        The detector pairs.
    interval_s
        Length of an interval, s (to count vehicles from flows).
    settings
        See :class:`CusumSettings`.
    baseline
        A calibrated baseline (copied).
    """

    name = "LaneCusum"

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        interval_s: float = 60.0,
        settings: CusumSettings | None = None,
        baseline: Baseline | None = None,
    ):
        self.pairs = list(pairs)
        self.interval_s = interval_s
        self.s = settings or CusumSettings()
        given = baseline or Baseline()
        self.lanes = {k: dict(v) for k, v in given.lanes.items()}
        self.flows = {k: list(v) for k, v in given.flows.items()}
        self.h_lane = dict(given.h_lane)
        self.h_flow = dict(given.h_flow)
        self.recent: dict[str, deque[float]] = {}  # per loop, the window's counts
        self.lane_sums: dict[str, float] = defaultdict(float)  # per loop
        self.lane_cusum: dict[str, float] = defaultdict(float)  # per station: its largest
        self.flow_cusum: dict[str, float] = defaultdict(float)  # per pair
        self._active: set[str] = set()
        self.stations = {p.downstream.id: p.downstream for p in self.pairs}

    @property
    def active(self) -> set[str]:
        """Pairs in alarm now."""
        return set(self._active)

    def update(self, time_s: float, samples: Mapping[str, Sample]) -> list[Alarm]:
        """Add one interval's evidence; return the pairs that go into alarm.

        Parameters
        ----------
        time_s
            End of the interval, s.
        samples
            Each loop's sample (a station missing one is skipped this interval).

        Returns
        -------
        list of Alarm
            The pairs that went into alarm this interval.
        """
        counts = {k: v.count(self.interval_s) for k, v in samples.items()}
        for loop, n in counts.items():
            self.recent.setdefault(loop, deque(maxlen=max(self.s.window, 1))).append(n)
        weighed = {k: sum(v) / len(v) for k, v in self.recent.items() if k in counts}
        seen = {
            sid for sid, station in self.stations.items() if all(i in counts for i in station.loops)
        }
        for sid in seen:
            station = self.stations[sid]
            for loop, llr in self._lane_llr(sid, station, weighed).items():
                self.lane_sums[loop] = max(0.0, self.lane_sums[loop] + llr)
            self.lane_cusum[sid] = max(self.lane_sums[i] for i in station.loops)
        tested = [
            p
            for p in self.pairs
            if p.downstream.id in seen and all(i in counts for i in p.upstream.loops)
        ]
        for pair in tested:
            down = sum(weighed[i] for i in pair.downstream.loops)
            up = sum(weighed[i] for i in pair.upstream.loops)
            llr = self._flow_llr(pair.id, down, up)
            self.flow_cusum[pair.id] = max(0.0, self.flow_cusum[pair.id] + llr)
        alarms = []
        for pair in tested:
            sid = pair.downstream.id
            s_lane, s_flow = self.lane_cusum[sid], self.flow_cusum[pair.id]
            h_lane = self.h_lane.get(sid, self.s.h_lane)
            h_flow = self.h_flow.get(pair.id, self.s.h_flow)
            if pair.id in self._active:
                if s_lane < h_lane / 2 and s_flow < h_flow / 2:
                    self._active.discard(pair.id)
            elif s_lane >= h_lane or s_flow >= h_flow:
                self._active.add(pair.id)
                lane = max(pair.downstream.loops, key=lambda i: self.lane_sums[i])
                stats = {"lane_cusum": s_lane, "flow_cusum": s_flow}
                alarms.append(Alarm(pair.id, time_s, self.name, stats | {"lane": lane}))
        self._learn(seen, tested, counts)
        return alarms

    def _lane_llr(
        self, sid: str, station: Station, counts: Mapping[str, float]
    ) -> dict[str, float]:
        """Return each lane's log-likelihood ratio of a share fallen to ``rho`` times its own."""
        known = self.lanes.get(sid)
        if len(station.loops) < 2 or not known:
            return {}
        total = sum(known.get(i, 0.0) for i in station.loops)
        if total < self.s.min_vehicles:
            return {}
        n = sum(counts[i] for i in station.loops)
        k = len(station.loops)
        rho = self.s.rho
        out = {}
        for i in station.loops:
            p = (known.get(i, 0.0) + 0.5) / (total + 0.5 * k)
            out[i] = counts[i] * math.log(rho) + (n - counts[i]) * math.log((1 - rho * p) / (1 - p))
        return out

    def _flow_llr(self, pid: str, down: float, up: float) -> float:
        """Return the flow test's log-likelihood ratio of one interval."""
        known = self.flows.get(pid)
        if not known or known[1] < self.s.min_vehicles:
            return 0.0
        expected = known[0] / known[1] * up
        return down * math.log(self.s.rho_flow) + expected * (1 - self.s.rho_flow)

    def _learn(self, seen: set[str], tested: Sequence[Pair], counts: Mapping[str, float]) -> None:
        """Fold an interval into the baseline where nothing is in alarm."""
        keep = 1.0 - 1.0 / self.s.memory
        busy = {p.downstream.id for p in self.pairs if p.id in self._active}
        for sid in seen - busy:
            lanes = self.lanes.setdefault(sid, {})
            for i in self.stations[sid].loops:
                lanes[i] = lanes.get(i, 0.0) * keep + counts[i]
        for pair in tested:
            if pair.id in self._active:
                continue
            flows = self.flows.setdefault(pair.id, [0.0, 0.0])
            flows[0] = flows[0] * keep + sum(counts[i] for i in pair.downstream.loops)
            flows[1] = flows[1] * keep + sum(counts[i] for i in pair.upstream.loops)


# --- evaluation: the pure forms -------------------------------------------------------------

#: Columns of a table of readings: interval end (s), loop id, flow (veh/h), occupancy (%),
#: speed (km/h, NaN when no vehicle passed).
READING_COLUMNS = ("time_s", "loop", "flow", "occupancy", "speed")


def samples_by_interval(readings: Any) -> Iterable[tuple[float, dict[str, Sample]]]:
    """Split a table of readings into intervals of samples, in time order.

    Parameters
    ----------
    readings
        A ``pandas.DataFrame`` with :data:`READING_COLUMNS`.

    Yields
    ------
    tuple
        ``(time_s, {loop id: Sample})``.
    """
    missing = [c for c in READING_COLUMNS if c not in readings.columns]
    if missing:
        raise ValueError(f"readings lack columns {missing}")
    ordered = readings.sort_values("time_s", kind="stable")
    for time_s, group in ordered.groupby("time_s", sort=True):
        samples = {
            str(loop): Sample(float(flow), float(occ), None if speed != speed else float(speed))
            for loop, flow, occ, speed in zip(
                group["loop"], group["flow"], group["occupancy"], group["speed"], strict=True
            )
        }
        yield float(time_s), samples


def detect(detector: Detector, readings: Any) -> list[Alarm]:
    """Run a detector over a table of readings, interval by interval, as the live feed would.

    Parameters
    ----------
    detector
        A fresh detector (:class:`California`, :class:`LaneCusum`); it is fed, so its state
        changes.
    readings
        A ``pandas.DataFrame`` with :data:`READING_COLUMNS`, or its intervals already split
        (:func:`samples_by_interval`).

    Returns
    -------
    list of Alarm
        Every alarm raised, in time order.
    """
    alarms: list[Alarm] = []
    for time_s, samples in _intervals(readings):
        alarms.extend(detector.update(time_s, samples))
    return alarms


def _intervals(readings: Any) -> list[tuple[float, dict[str, Sample]]]:
    """Return a table's intervals of samples (a list already split is returned as it is)."""
    return readings if isinstance(readings, list) else list(samples_by_interval(readings))


def calibrate(
    runs: Sequence[Any],
    pairs: Sequence[Pair],
    *,
    interval_s: float = 60.0,
    settings: CusumSettings | None = None,
    margin: float = 1.25,
    warmup_s: float = 600.0,
) -> Baseline:
    """Learn :class:`LaneCusum`'s baseline from incident-free runs.

    The lane shares and flow ratios are the runs' totals after the warm-up, scaled to the
    detector's memory; each station's and pair's threshold is raised to ``margin`` times the
    largest CUSUM the incident-free runs reach there (so a station whose lanes follow
    different signal phases, and swing more, needs more evidence).

    Parameters
    ----------
    runs
        Tables of readings (:data:`READING_COLUMNS`) of incident-free runs, or their intervals
        already split (:func:`samples_by_interval`).
    pairs
        The detector pairs.
    interval_s
        Length of an interval, s.
    settings
        The detector's settings (its thresholds are the floor).
    margin
        Factor over the largest incident-free CUSUM.
    warmup_s
        Readings before this time (s) are left out (the network filling up).

    Returns
    -------
    Baseline
        Shares, ratios and thresholds.
    """
    s = settings or CusumSettings()
    lanes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    flows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    intervals = 0
    split = [_intervals(table) for table in runs]
    for table in split:
        for time_s, samples in table:
            if time_s <= warmup_s:
                continue
            intervals += 1
            counts = {k: v.count(interval_s) for k, v in samples.items()}
            for sid, station in {p.downstream.id: p.downstream for p in pairs}.items():
                for i in station.loops:
                    lanes[sid][i] += counts.get(i, 0.0)
            for p in pairs:
                flows[p.id][0] += sum(counts.get(i, 0.0) for i in p.downstream.loops)
                flows[p.id][1] += sum(counts.get(i, 0.0) for i in p.upstream.loops)
    scale = min(s.memory / intervals, 1.0) if intervals else 1.0
    baseline = Baseline(
        lanes={k: {i: c * scale for i, c in v.items()} for k, v in lanes.items()},
        flows={k: [v[0] * scale, v[1] * scale] for k, v in flows.items()},
    )
    highest_lane: dict[str, float] = defaultdict(float)
    highest_flow: dict[str, float] = defaultdict(float)
    quiet = replace(s, h_lane=math.inf, h_flow=math.inf)
    for table in split:
        probe = LaneCusum(pairs, interval_s=interval_s, settings=quiet, baseline=baseline)
        for time_s, samples in table:
            probe.update(time_s, samples)
            if time_s <= warmup_s:
                continue
            for sid, value in probe.lane_cusum.items():
                highest_lane[sid] = max(highest_lane[sid], value)
            for pid, value in probe.flow_cusum.items():
                highest_flow[pid] = max(highest_flow[pid], value)
    baseline.h_lane = {k: max(s.h_lane, margin * v) for k, v in highest_lane.items()}
    baseline.h_flow = {k: max(s.h_flow, margin * v) for k, v in highest_flow.items()}
    return baseline


@dataclass(frozen=True)
class Truth:
    """A true incident, for scoring: where the lane was blocked and from when until when.

    Attributes
    ----------
    edge
        SUMO edge.
    position_m
        Distance from the start of the edge, m.
    from_s, until_s
        When it began and ended, s.
    """

    edge: str
    position_m: float
    from_s: float
    until_s: float


@dataclass
class Score:
    """How a detector did on one or more runs.

    Attributes
    ----------
    incidents
        True incidents.
    times_to_detect
        For each incident detected, seconds from its start to the first alarm.
    false_alarms
        Alarms no incident explains.
    applications
        Pair-intervals the detector decided on (the false-alarm rate's denominator).
    """

    incidents: int = 0
    times_to_detect: list[float] = field(default_factory=list)
    false_alarms: int = 0
    applications: int = 0

    @property
    def detection_rate(self) -> float:
        """Share of incidents detected, %."""
        return 100.0 * len(self.times_to_detect) / self.incidents if self.incidents else math.nan

    @property
    def false_alarm_rate(self) -> float:
        """False alarms per pair and interval, %."""
        return 100.0 * self.false_alarms / self.applications if self.applications else math.nan

    @property
    def mean_time_to_detect(self) -> float:
        """Mean time to detect, s (NaN when nothing was detected)."""
        times = self.times_to_detect
        return sum(times) / len(times) if times else math.nan

    def __iadd__(self, other: Score) -> Score:
        self.incidents += other.incidents
        self.times_to_detect += other.times_to_detect
        self.false_alarms += other.false_alarms
        self.applications += other.applications
        return self


def score(
    alarms: Sequence[Alarm],
    truths: Sequence[Truth],
    pairs: Sequence[Pair],
    *,
    intervals: int,
    clearance_s: float = 300.0,
) -> Score:
    """Score alarms against the true incidents of a run.

    An incident is detected by the first alarm, while it lasts, on a pair that covers it (its
    place lies between the pair's stations, :meth:`Pair.covers`); the time to detect is that
    alarm's time minus the incident's start. An alarm is false unless it is on a pair that
    covers an incident, or on a pair just upstream of one (whose downstream station is the
    covering pair's upstream one: the queue reaches it), between the incident's start and
    ``clearance_s`` after its end (the queue dissolving).

    Parameters
    ----------
    alarms
        The alarms of one run.
    truths
        Its true incidents.
    pairs
        The detector pairs.
    intervals
        Intervals the run was scored over (each pair decides once per interval).
    clearance_s
        How long after its end an incident still explains alarms, s.

    Returns
    -------
    Score
        Detections, times to detect, false alarms and decisions made.
    """
    covering = [{p.id for p in pairs if p.covers(t.edge, t.position_m)} for t in truths]
    explained = []
    for cover in covering:
        starts = {p.upstream.id for p in pairs if p.id in cover}
        explained.append(cover | {p.id for p in pairs if p.downstream.id in starts})
    result = Score(incidents=len(truths), applications=intervals * len(pairs))
    for truth, cover in zip(truths, covering, strict=True):
        hits = [
            a.time_s for a in alarms if a.pair in cover and truth.from_s < a.time_s <= truth.until_s
        ]
        if hits:
            result.times_to_detect.append(min(hits) - truth.from_s)
    for alarm in alarms:
        if not any(
            alarm.pair in near and truth.from_s < alarm.time_s <= truth.until_s + clearance_s
            for truth, near in zip(truths, explained, strict=True)
        ):
            result.false_alarms += 1
    return result


# --- on the live feed -----------------------------------------------------------------------


class LiveIncidents:
    """Run a detector on the live feed: a processor of :class:`twin.live.feed.Feed`.

    The readings of a scenario's loops arrive as observations of datastreams named
    ``<scenario>:<loop>/<property>`` (as :func:`twin.live.simulate.loop_datastreams` registers
    them). They are gathered by phenomenonTime (the end of their interval); once every loop of
    the detector's pairs has its flow and occupancy for a time — or a later time has begun —
    that interval goes to the detector, and each alarm becomes an ``incident`` event for the
    push streams. Readings of an interval already decided are left out.

    Parameters
    ----------
    detector
        The detector (:class:`LaneCusum`, :class:`California`), fed in time order.
    scenario
        The scenario's name, the prefix of its datastreams' names.
    loops
        The loops the detector's pairs need.
    """

    def __init__(self, detector: Detector, *, scenario: str, loops: Iterable[str]):
        self.detector = detector
        self.prefix = f"{scenario}:"
        self.loops = set(loops)
        self.pending: dict[Any, dict[str, dict[str, float]]] = {}
        self.decided: Any = None

    def observe(self, stored: Sequence[Any], *, url: str | None) -> list[dict[str, Any]]:
        """Gather stored observations; run the detector on each interval now complete.

        Parameters
        ----------
        stored
            Stored observations (``layers.observations.StoredObservation``).
        url
            Database URL (to read the datastreams' names).

        Returns
        -------
        list of dict
            ``{"type": "incident", "pair", "algorithm", "phenomenonTime", "statistics"}`` per
            alarm raised.
        """
        from layers.observations import iso
        from twin.live.registry import datastreams

        known = datastreams({o.datastream_id for o in stored}, url=url)
        for obs in stored:
            ds = known.get(obs.datastream_id)
            if ds is None or not ds.name.startswith(self.prefix):
                continue
            loop, _, prop = ds.name[len(self.prefix) :].rpartition("/")
            if loop not in self.loops or prop not in ("flow", "occupancy", "speed"):
                continue
            if self.decided is not None and obs.phenomenon_time <= self.decided:
                continue
            values = self.pending.setdefault(obs.phenomenon_time, {}).setdefault(loop, {})
            values[prop] = float(obs.result)
        events: list[dict[str, Any]] = []
        for moment in sorted(self.pending):
            got = self.pending[moment]
            complete = all(
                "flow" in got.get(i, {}) and "occupancy" in got.get(i, {}) for i in self.loops
            )
            if not complete and moment == max(self.pending):
                break
            samples = {
                loop: Sample(v["flow"], v["occupancy"], v.get("speed"))
                for loop, v in got.items()
                if "flow" in v and "occupancy" in v
            }
            for alarm in self.detector.update(moment.timestamp(), samples):
                events.append(
                    {
                        "type": "incident",
                        "pair": alarm.pair,
                        "algorithm": alarm.algorithm,
                        "phenomenonTime": iso(moment),
                        "statistics": alarm.statistics,
                    }
                )
            del self.pending[moment]
            self.decided = moment
        return events
