"""The city as SUMO plays it: a scenario's detectors and buses publishing live over MQTT.

A SUMO scenario (Bologna's ``acosta`` and ``pasubio``) runs under TraCI. Its induction loops
(e1 detectors) aggregate over ``interval_s`` exactly as SUMO defines them — SUMO writes each
interval's record (vehicle count, occupancy %, mean speed of the vehicles that passed) to a
socket of this process the moment the interval ends — and its buses report their position
every ``bus_interval_s``. Each detector is a Thing on the road it lies on (layer ``roads``,
feature ``<scenario>:<edge>``, as :func:`twin.signals.import_sumo` names it) with three
datastreams, ``flow`` (veh/h), ``occupancy`` (%) and ``speed`` (km/h, not sent for an interval
no vehicle passed); each bus is a Thing with a ``position`` datastream (a GeoJSON Point). Every
reading is published as a gateway would: a SensorThings Observation on
``<prefix>v1.1/Datastreams(<id>)/Observations`` (OGC 18-088, section 14.2), QoS 1.

Incidents are lanes blocked by a stopped vehicle: the nearest car driving up the lane breaks
down at the incident's place — it is told to stop there for the incident's duration (TraCI
``vehicle.setStop``) — or, when no car is coming, one is put there (``vehicle.add``). What SUMO
actually did (which vehicle stood, from when until when) is returned, so a detector can be
scored against the truth.

SUMO never writes beside the scenario: every output goes to a work folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from layers.errors import ParameterError
from layers.observations import OBSERVATION, iso
from layers.settings import get_settings
from routing.signals import sumo
from routing.signals.model import SignalError
from routing.signals.sumo import Scenario
from twin.live.detection import LOOP_TAGS, Loop, Pair, detector_pairs, scenario_loops, scenario_of

#: SUMO's vehicle type of the vehicles that block a lane.
INCIDENT_TYPE = "twin_incident"
#: How long an incident's vehicle may take to stand at its place before it is given up, s.
PLACEMENT_LIMIT_S = 300.0
#: Sensor names of the things SUMO plays.
LOOP_SENSOR = "SUMO e1 induction loop"
BUS_SENSOR = "SUMO vehicle position"

Progress = Callable[[float, float], None]


@dataclass(frozen=True)
class Incident:
    """A lane blocked by a stopped vehicle.

    Attributes
    ----------
    lane
        SUMO lane id (``<edge>_<index>``).
    position_m
        Where the blocking vehicle's front stands, m from the start of the lane.
    start_s
        When it is put there, s of simulation time.
    duration_s
        How long it stands, s.
    """

    lane: str
    position_m: float
    start_s: float
    duration_s: float

    @property
    def edge(self) -> str:
        """The lane's edge."""
        return self.lane.rsplit("_", 1)[0]

    @property
    def lane_index(self) -> int:
        """The lane's index on its edge."""
        return int(self.lane.rsplit("_", 1)[1])


@dataclass(frozen=True)
class TrueIncident:
    """What SUMO did with an incident: where and from when until when the lane was blocked.

    Attributes
    ----------
    incident
        The incident asked for.
    vehicle
        The blocking vehicle's id.
    from_s, until_s
        When the vehicle stood on the lane, s of simulation time; None if it never got there
        within :data:`PLACEMENT_LIMIT_S`.
    """

    incident: Incident
    vehicle: str
    from_s: float | None
    until_s: float | None

    @property
    def placed(self) -> bool:
        """Whether the lane was blocked at all."""
        return self.from_s is not None


@dataclass(frozen=True)
class LoopReading:
    """One interval of an induction loop, as SUMO's e1 detector output defines it.

    Attributes
    ----------
    loop
        Detector id.
    begin_s, end_s
        The interval, s of simulation time.
    count
        Vehicles that passed (``nVehContrib``).
    flow
        Vehicles per hour (``flow``).
    occupancy
        Share of the interval the loop was occupied, % (``occupancy``).
    speed
        Mean speed of the vehicles that passed, km/h (``speed`` × 3.6); None when none did.
    """

    loop: str
    begin_s: float
    end_s: float
    count: int
    flow: float
    occupancy: float
    speed: float | None


@dataclass
class RunResult:
    """What one SUMO run did.

    Attributes
    ----------
    scenario
        The scenario's name.
    loops
        Its induction loops.
    incidents
        The incidents as they happened.
    vehicles
        Vehicles SUMO inserted.
    buses
        Buses seen.
    sim_seconds
        Simulated time, s.
    wall_seconds
        Wall-clock time, s.
    readings
        Every loop reading, when the run was asked to keep them.
    """

    scenario: str
    loops: list[Loop]
    incidents: list[TrueIncident] = field(default_factory=list)
    vehicles: int = 0
    buses: int = 0
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    readings: list[LoopReading] = field(default_factory=list)


@dataclass
class SimulationSummary:
    """What :func:`simulate` published.

    Attributes
    ----------
    scenario
        The scenario's name.
    observations
        Observations published per observed property.
    datastreams
        Datastream id by name, for every datastream registered.
    vehicles
        Vehicles SUMO inserted.
    buses
        Buses that reported positions.
    incidents
        The incidents as they happened in SUMO.
    sim_seconds, wall_seconds
        Simulated and wall-clock time, s.
    anchor
        The wall-clock moment of simulation time 0 (phenomenonTime = anchor + sim time).
    """

    scenario: str
    observations: Counter[str]
    datastreams: dict[str, int]
    vehicles: int
    buses: int
    incidents: list[TrueIncident]
    sim_seconds: float
    wall_seconds: float
    anchor: datetime


# --- running SUMO ---------------------------------------------------------------------------


def run_scenario(
    scenario: str | Path | Scenario,
    *,
    interval_s: float = 60.0,
    bus_interval_s: float | None = 10.0,
    begin: float | None = None,
    end: float | None = None,
    incidents: Sequence[Incident] = (),
    seed: int = 42,
    speed: float | None = None,
    on_interval: Callable[[float, list[LoopReading]], None] | None = None,
    on_buses: Callable[[float, dict[str, tuple[float, float]]], None] | None = None,
    keep_readings: bool = False,
    progress: Progress | None = None,
    timeout_s: float | None = None,
    workdir: str | Path | None = None,
) -> RunResult:
    """Run a SUMO scenario under TraCI, reading its loops every interval and its buses.

    Parameters
    ----------
    scenario
        A ``.sumocfg``, the folder holding one, or a scenario read.
    interval_s
        Aggregation interval of the loops, s (their ``freq``).
    bus_interval_s
        How often bus positions are read, s of simulation time; None for never.
    begin, end
        Simulation period, s; the configuration's, else 0 and the last departure.
    incidents
        Lanes to block (see :class:`Incident`).
    seed
        SUMO's random seed.
    speed
        Pace, × real time; None runs as fast as SUMO can.
    on_interval
        Called with each interval's end (s) and every loop's reading for it.
    on_buses
        Called with the time (s) and each bus's position (lon, lat; EPSG:4326).
    keep_readings
        Keep every reading in the result.
    progress
        Called with the simulated seconds done and the total.
    timeout_s
        Wall-clock limit, s (by default :func:`routing.signals.sumo.run_timeout` plus the
        paced duration).
    workdir
        Folder for SUMO's files (a temporary one, removed afterwards, by default).

    Returns
    -------
    RunResult
        The incidents as they happened, vehicle counts, times and (if asked) the readings.

    Raises
    ------
    SignalError
        When the scenario cannot be read, SUMO cannot start or fails, or the run takes longer
        than ``timeout_s``.
    ParameterError
        When an interval, the period or an incident is not usable.
    """
    sc = scenario_of(scenario)
    loops = scenario_loops(sc)
    start, stop = simulation_period(sc, begin, end)
    if not (interval_s > 0 and math.isfinite(interval_s)):
        raise ParameterError(
            "the interval must be a positive number of seconds", parameter="interval"
        )
    if bus_interval_s is not None and not bus_interval_s > 0:
        raise ParameterError("the bus interval must be positive", parameter="bus_interval")
    if speed is not None and not (speed > 0 and math.isfinite(speed)):
        raise ParameterError("speed must be a positive factor of real time", parameter="speed")
    net = sc.read_net()
    for inc in incidents:
        _check_incident(net, inc)
    limit = timeout_s
    if limit is None:
        limit = sumo.run_timeout(sc, stop) + ((stop - start) / speed if speed else 0.0)
    result = RunResult(sc.name, loops)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twin-sumo-")))
        else:
            folder = Path(workdir)
            folder.mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        port = server.getsockname()[1]
        cmd = _command(sc, folder / "run", loops, interval_s, port, seed, start, stop)
        wall0 = time.monotonic()
        what = f"SUMO's run of {sc.config.name}"
        log = folder / "run.log"
        with _session(cmd, server, limit, what, log, stream=bool(loops)) as (conn, output):
            driver = _Driver(conn, net, interval_s, bus_interval_s, start, stop, incidents)
            for now in driver.times():
                if speed is not None:
                    ahead = wall0 + (now - start) / speed - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # the pace of the city, not a wait for a server
                conn.simulationStep(now)
                driver.after_step(now)
                if output is not None and driver.is_boundary(now):
                    readings = output.interval(now, len(loops))
                    if keep_readings:
                        result.readings.extend(readings)
                    if on_interval is not None:
                        on_interval(now, readings)
                if on_buses is not None and driver.is_bus_tick(now):
                    on_buses(now, driver.bus_positions())
                if progress is not None:
                    progress(now - start, stop - start)
            result.incidents = driver.record()
            result.buses = len(driver.buses)
        result.wall_seconds = time.monotonic() - wall0
        result.sim_seconds = stop - start
        result.vehicles = _inserted(folder / "run.stats.xml")
    return result


def _inserted(stats: Path) -> int:
    """Return the vehicles SUMO inserted, from its statistic output (0 if it wrote none)."""
    try:
        found = ET.parse(stats).getroot().find("vehicles")
    except (OSError, ET.ParseError):
        return 0
    return int(found.get("inserted", "0")) if found is not None else 0


def simulation_period(
    sc: Scenario, begin: float | None = None, end: float | None = None
) -> tuple[float, float]:
    """Return a run's period: the given begin and end, else the scenario's.

    Parameters
    ----------
    sc
        The scenario.
    begin, end
        Asked for, s; the configuration's when None (0, and the last departure, when it sets
        none).

    Returns
    -------
    tuple
        ``(begin, end)``, s.

    Raises
    ------
    ParameterError
        When the period is empty or negative.
    """
    start = begin if begin is not None else (sc.begin or 0.0)
    stop = end if end is not None else sc.end
    if stop is None:
        stop = max((t.depart for t in sc.read_trips()), default=start + 3600.0)
    if not (math.isfinite(start) and math.isfinite(stop)) or stop <= start or start < 0:
        raise ParameterError(
            f"the simulation period must end after it begins (begin {start:g} s, end {stop:g} s)",
            parameter="end",
        )
    return float(start), float(stop)


def _check_incident(net: Any, inc: Incident) -> None:
    try:
        lane = net.getLane(inc.lane)
    except KeyError:
        raise ParameterError(
            f"incident lane {inc.lane!r} is not in the network", parameter="incidents"
        ) from None
    if not 0 <= inc.position_m <= lane.getLength():
        raise ParameterError(
            f"incident position {inc.position_m:g} m is off lane {inc.lane} "
            f"({lane.getLength():.1f} m long)",
            parameter="incidents",
        )
    if not (inc.duration_s > 0 and inc.start_s >= 0):
        raise ParameterError(
            "an incident needs a start >= 0 s and a positive duration", parameter="incidents"
        )


def _command(
    sc: Scenario,
    outputs: Path,
    loops: Sequence[Loop],
    interval_s: float,
    port: int,
    seed: int,
    begin: float,
    end: float,
) -> list[str]:
    """Build SUMO's command: the scenario, its loops aggregating into our socket."""
    files: list[Path] = []
    for path in [*sc.additional, *sc.programs]:
        root = ET.parse(path).getroot()
        if any(el.tag in LOOP_TAGS for el in root.iter()):
            tree = ET.ElementTree(root)
            for el in root.iter():
                if el.tag in LOOP_TAGS:
                    el.set("freq", f"{interval_s:g}")
                    el.set("file", f"127.0.0.1:{port}")
                    el.attrib.pop("begin", None)
            copy = Path(f"{outputs}.loops.{path.name}")
            tree.write(copy, encoding="UTF-8", xml_declaration=True)
            files.append(copy)
        else:
            files.append(sumo.redirect_outputs(path, outputs))
    cmd = [
        sumo.sumo_binary("sumo"),
        "-c",
        str(sc.config),
        "-a",
        ",".join(str(p) for p in files),
        "--seed",
        str(seed),
        "--begin",
        f"{begin:g}",
        "--end",
        f"{end:g}",
        "--tripinfo-output",
        f"{outputs}.tripinfo.xml",
        "--statistic-output",
        f"{outputs}.stats.xml",
        "--log",
        f"{outputs}.log",
        "--no-step-log",
        "--no-warnings",
        "--duration-log.disable",
    ]
    return cmd


class _LoopOutput:
    """SUMO's e1 output, read from the socket SUMO writes it to, interval by interval."""

    def __init__(self, conn: socket.socket, deadline: float):
        self.conn = conn
        self.deadline = deadline
        self.parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
        self.pending: dict[float, list[LoopReading]] = {}

    def interval(self, end: float, n: int) -> list[LoopReading]:
        """Return the ``n`` readings of the interval ending at ``end`` (waits for them)."""
        key = round(end, 3)
        while len(self.pending.get(key, ())) < n:
            self.conn.settimeout(max(self.deadline - time.monotonic(), 0.001))
            try:
                data = self.conn.recv(1 << 16)
            except TimeoutError:
                data = b""
            if not data:
                raise SignalError(
                    f"SUMO sent {len(self.pending.get(key, ()))} of {n} detector readings for "
                    f"the interval ending at {end:g} s",
                    parameter="scenario",
                )
            self.parser.feed(data)
            for event in self.parser.read_events():
                el = event[-1]
                if isinstance(el, ET.Element) and el.tag == "interval":
                    reading = _reading(el)
                    self.pending.setdefault(round(reading.end_s, 3), []).append(reading)
                    el.clear()
        return self.pending.pop(key)


def _reading(el: ET.Element) -> LoopReading:
    begin = float(el.get("begin", "0"))
    end = float(el.get("end", "0"))
    count = int(float(el.get("nVehContrib", "0")))
    speed = float(el.get("speed", "-1"))
    return LoopReading(
        loop=el.get("id", ""),
        begin_s=begin,
        end_s=end,
        count=count,
        flow=float(el.get("flow", "0")),
        occupancy=float(el.get("occupancy", "0")),
        speed=round(speed * 3.6, 3) if count > 0 and speed >= 0 else None,
    )


@contextlib.contextmanager
def _session(
    cmd: Sequence[str],
    server: socket.socket,
    limit: float,
    what: str,
    log: Path,
    *,
    stream: bool = True,
) -> Iterator[tuple[Any, _LoopOutput | None]]:
    """Start SUMO as a TraCI server; yield the connection and its loops' output stream.

    The stream is the connection SUMO opens to ``server`` to write its loops' output (None
    when ``stream`` is false: a scenario without loops opens none).

    A watchdog kills SUMO once ``limit`` s have passed: the connection then breaks and the
    error says the run took too long.
    """
    import sumolib
    import traci

    deadline = time.monotonic() + limit
    process: subprocess.Popen[bytes] | None = None
    conn: Any = None
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        if process is not None:
            process.kill()

    def stopped() -> SignalError:
        return SignalError(
            f"{what} did not finish within {round(limit, 1):g} s and was stopped",
            parameter="scenario",
        )

    watchdog = threading.Timer(limit, expire)
    watchdog.daemon = True
    watchdog.start()
    received: socket.socket | None = None
    try:
        for _ in range(3):  # a port found free may be taken before SUMO binds it
            port = int(sumolib.miscutils.getFreeSocketPort())
            process = subprocess.Popen(
                [*cmd, "--remote-port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            conn = _connect(port, process, deadline)
            if conn is not None:
                break
        if conn is None:
            raise SignalError(
                f"{what} could not start: {' '.join(sumo.log_tail(log))}", parameter="scenario"
            )
        if not stream:
            yield conn, None
            return
        server.settimeout(max(min(deadline - time.monotonic(), 60.0), 0.001))
        try:
            received, _ = server.accept()
        except TimeoutError:
            raise SignalError(
                f"{what}: SUMO never opened its detector output ({' '.join(sumo.log_tail(log))})",
                parameter="scenario",
            ) from None
        yield conn, _LoopOutput(received, deadline)
    except (traci.FatalTraCIError, traci.TraCIException, OSError) as exc:
        if expired.is_set():
            raise stopped() from exc
        raise SignalError(
            f"{what} failed: {exc} {' '.join(sumo.log_tail(log))}".strip(), parameter="scenario"
        ) from exc
    finally:
        watchdog.cancel()
        if conn is not None:
            with contextlib.suppress(traci.FatalTraCIError, OSError):
                conn.close(wait=False)
        if received is not None:
            received.close()
        if process is not None:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 10.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                raise stopped() from None


def _connect(port: int, process: subprocess.Popen[bytes], deadline: float) -> Any:
    """Connect to SUMO's TraCI server once it listens; None if SUMO exits first.

    ``traci.connect`` would print while it retries, and redirecting the output to silence it
    is not safe while other threads run; its connection class is used directly instead.
    """
    from traci.connection import Connection

    while True:
        try:
            return Connection("localhost", port, process, None, False)
        except OSError:
            if process.poll() is not None:
                return None
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)  # SUMO is still loading the scenario


class _Driver:
    """Steps the simulation: interval boundaries, bus ticks, incidents put and watched."""

    def __init__(
        self,
        conn: Any,
        net: Any,
        interval_s: float,
        bus_interval_s: float | None,
        begin: float,
        end: float,
        incidents: Sequence[Incident],
    ):
        self.conn = conn
        self.net = net
        self.interval_s = interval_s
        self.bus_interval_s = bus_interval_s
        self.begin = begin
        self.end = end
        self.incidents = sorted(incidents, key=lambda i: i.start_s)
        self.started: dict[int, float | None] = {}
        self.waiting: dict[int, float] = {}  # incident index -> when it was asked for
        self.vehicles: dict[int, str] = {}  # incident index -> the vehicle that stands
        self.next_incident = 0
        self.classes: dict[str, str] = {}
        self.buses: set[str] = set()
        conn.vehicletype.copy("DEFAULT_VEHTYPE", INCIDENT_TYPE)
        conn.vehicletype.setColor(INCIDENT_TYPE, (255, 0, 0, 255))

    def _grid(self, step: float | None, now: float) -> float:
        if step is None:
            return math.inf
        k = math.floor((now - self.begin) / step + 1e-9) + 1
        return self.begin + k * step

    def times(self) -> Iterator[float]:
        """Yield the simulation times to step to, in order (the loop's schedule)."""
        now = self.begin
        while now < self.end - 1e-9:
            candidates = [
                self._grid(self.interval_s, now),
                self._grid(self.bus_interval_s, now),
                self.end,
            ]
            if self.next_incident < len(self.incidents):
                candidates.append(max(self.incidents[self.next_incident].start_s, now + 1.0))
            if self.waiting:
                candidates.append(now + 1.0)
            now = float(round(min(candidates), 6))
            yield now

    def is_boundary(self, now: float) -> bool:
        """Tell whether an interval of the loops ends at ``now``."""
        k = (now - self.begin) / self.interval_s
        return abs(k - round(k)) < 1e-6 and round(k) > 0

    def is_bus_tick(self, now: float) -> bool:
        """Tell whether bus positions are due at ``now``."""
        if self.bus_interval_s is None:
            return False
        k = (now - self.begin) / self.bus_interval_s
        return abs(k - round(k)) < 1e-6

    def after_step(self, now: float) -> None:
        """Start the incidents due, and note those whose vehicle now stands."""
        import traci

        while (
            self.next_incident < len(self.incidents)
            and self.incidents[self.next_incident].start_s <= now + 1e-6
        ):
            k = self.next_incident
            self.vehicles[k] = self._break_down(k) or self._insert(k)
            self.waiting[k] = now
            self.next_incident += 1
        for k, asked in list(self.waiting.items()):
            vid = self.vehicles[k]
            try:
                standing = self.conn.vehicle.isStopped(vid)
            except traci.TraCIException:  # not inserted yet: the lane is full there
                standing = False
            if standing:
                self.started[k] = now
                del self.waiting[k]
            elif now - asked >= PLACEMENT_LIMIT_S:
                with contextlib.suppress(traci.TraCIException):
                    if vid.startswith(INCIDENT_TYPE):
                        self.conn.vehicle.remove(vid)
                    else:  # it never reached the place: it drives on
                        self.conn.vehicle.replaceStop(vid, 0, "")
                self.started[k] = None
                del self.waiting[k]

    def _break_down(self, k: int) -> str | None:
        """Make the nearest car driving up the incident's lane stop at its place; its id.

        The car must be far enough from the place to brake for it (SUMO refuses the stop
        otherwise); buses and the vehicles of other incidents are left alone.
        """
        import traci

        inc = self.incidents[k]
        taken = set(self.vehicles.values())
        behind = []
        for vid in self.conn.lane.getLastStepVehicleIDs(inc.lane):
            position = self.conn.vehicle.getLanePosition(vid)
            if position < inc.position_m - 1.0 and vid not in taken:
                behind.append((position, vid))
        for _, vid in sorted(behind, reverse=True):
            if self.conn.vehicle.getVehicleClass(vid) != "passenger":
                continue
            try:
                self.conn.vehicle.setStop(
                    vid,
                    inc.edge,
                    pos=inc.position_m,
                    laneIndex=inc.lane_index,
                    duration=inc.duration_s,
                )
            except traci.TraCIException:  # too close to brake for it
                continue
            self.conn.vehicle.setColor(vid, (255, 0, 0, 255))
            return str(vid)
        return None

    def _insert(self, k: int) -> str:
        """Put a car on the incident's lane at its place, told to stand there; its id."""
        inc = self.incidents[k]
        vid = f"{INCIDENT_TYPE}_{k}"
        self.conn.route.add(f"{INCIDENT_TYPE}_route_{k}", [inc.edge])
        self.conn.vehicle.add(
            vid,
            f"{INCIDENT_TYPE}_route_{k}",
            typeID=INCIDENT_TYPE,
            depart="now",
            departLane=str(inc.lane_index),
            departPos=f"{inc.position_m:.2f}",
            departSpeed="0",
        )
        self.conn.vehicle.setStop(
            vid, inc.edge, pos=inc.position_m, laneIndex=inc.lane_index, duration=inc.duration_s
        )
        return vid

    def bus_positions(self) -> dict[str, tuple[float, float]]:
        """Return every bus in the network and where it is (lon, lat)."""
        out: dict[str, tuple[float, float]] = {}
        for vid in self.conn.vehicle.getIDList():
            kind = self.classes.get(vid)
            if kind is None:
                kind = self.classes[vid] = self.conn.vehicle.getVehicleClass(vid)
            if kind != "bus":
                continue
            x, y = self.conn.vehicle.getPosition(vid)
            lon, lat = self.net.convertXY2LonLat(x, y)
            out[vid] = (round(float(lon), 7), round(float(lat), 7))
            self.buses.add(vid)
        return out

    def record(self) -> list[TrueIncident]:
        """Return the incidents as they happened."""
        out = []
        for k, inc in enumerate(self.incidents):
            began = self.started.get(k)
            out.append(
                TrueIncident(
                    incident=inc,
                    vehicle=self.vehicles.get(k, ""),
                    from_s=began,
                    until_s=None if began is None else began + inc.duration_s,
                )
            )
        return out


# --- incidents ------------------------------------------------------------------------------


def random_incidents(
    scenario: str | Path | Scenario,
    n: int,
    seed: int,
    *,
    begin: float = 600.0,
    end: float | None = None,
    duration_s: tuple[float, float] = (600.0, 900.0),
    spacing_s: float = 300.0,
    pairs: Sequence[Pair] | None = None,
    lane_flows: Mapping[str, float] | None = None,
    min_flow: float = 0.0,
    reach_m: float = 15.0,
) -> list[Incident]:
    """Draw incidents on detected lanes at random places and times (reproducible by seed).

    Each incident blocks the lane of a downstream detector of a detector pair (see
    :func:`twin.live.detection.detector_pairs`) — between the pair's two stations, 4 m to
    ``reach_m`` before the loop, where a broken-down car stands in the loop's approach — for
    a duration drawn from ``duration_s``. Starts are ``spacing_s`` apart (with a random
    offset of up to half of it), so several incidents of one run are spaced in time; one
    station is never disturbed by two incidents at once (nor within ``spacing_s`` of each
    other).

    Parameters
    ----------
    scenario
        The scenario.
    n
        How many incidents.
    seed
        Random seed.
    begin
        Earliest start, s of simulation time.
    end
        Latest end, s (the scenario's end by default).
    duration_s
        Shortest and longest duration, s.
    spacing_s
        Time between consecutive starts, s.
    pairs
        The detector pairs (found with their default rule when not given).
    lane_flows
        Mean flow of each loop (veh/h), e.g. measured in incident-free runs; with
        ``min_flow``, lanes carrying less are left out (a blocked empty lane disturbs nothing).
    min_flow
        Least flow of a lane to block, veh/h.
    reach_m
        Farthest an incident stands before its loop, m (farther up a multi-lane road, vehicles
        pass the blocked lane and merge back before the loop).

    Returns
    -------
    list of Incident
        Ordered by start.

    Raises
    ------
    ParameterError
        When the period cannot hold ``n`` incidents or no lane qualifies.
    """
    sc = scenario_of(scenario)
    net = sc.read_net()
    loops = {lp.id: lp for lp in scenario_loops(sc)}
    chosen_pairs = pairs if pairs is not None else detector_pairs(sc)
    stop = end if end is not None else (sc.end or simulation_period(sc, None, None)[1])
    candidates: dict[str, list[tuple[Loop, float, float]]] = {}
    for pair in chosen_pairs:
        station = pair.downstream
        for loop_id in station.loops:
            loop = loops[loop_id]
            if lane_flows is not None and lane_flows.get(loop_id, 0.0) < min_flow:
                continue
            if not net.getLane(loop.lane).allows("passenger"):
                continue
            low = max(loop.position_m - reach_m, 6.0)
            high = loop.position_m - 4.0
            if pair.upstream.edge == loop.edge:
                low = max(low, pair.upstream.position_m + 6.0)
            if high >= low:
                candidates.setdefault(station.id, []).append((loop, low, high))
    if not candidates:
        raise ParameterError(
            "no detected lane can be blocked in this scenario", parameter="scenario"
        )
    rng = random.Random(seed)
    latest = stop - duration_s[1] - 60.0
    if n > 0 and begin + (n - 1) * spacing_s > latest:
        raise ParameterError(
            f"{n} incidents {spacing_s:g} s apart do not fit between {begin:g} s and {latest:g} s",
            parameter="incidents",
        )
    busy: dict[str, list[tuple[float, float]]] = {}
    out: list[Incident] = []
    for k in range(n):
        start = begin + k * spacing_s + rng.uniform(0.0, spacing_s / 2)
        start = round(min(start, latest))
        duration = round(rng.uniform(*duration_s))
        free = [
            s
            for s in sorted(candidates)
            if all(
                start > b + spacing_s or start + duration + spacing_s < a
                for a, b in busy.get(s, [])
            )
        ]
        if not free:
            raise ParameterError(
                f"every detected lane is already blocked around {start} s", parameter="incidents"
            )
        place = rng.choice(free)
        loop, low, high = rng.choice(candidates[place])
        busy.setdefault(place, []).append((start, start + duration))
        out.append(Incident(loop.lane, round(rng.uniform(low, high), 1), start, duration))
    return sorted(out, key=lambda i: i.start_s)


# --- publishing -----------------------------------------------------------------------------


class MqttPublisher:
    """Publish SensorThings Observations to an MQTT broker as a gateway does (QoS 1).

    Parameters
    ----------
    broker
        ``mqtt://host[:port]`` (``mqtts://`` for TLS), user and password in the URL if needed.
    prefix
        Topic prefix (ends with ``/`` or is empty).
    timeout_s
        How long connecting, and waiting for the broker to acknowledge everything at the end,
        may take, s.

    Raises
    ------
    ParameterError
        When the URL is not an MQTT URL or the broker does not accept the connection in time.
    """

    def __init__(self, broker: str, prefix: str = "", *, timeout_s: float = 30.0):
        import paho.mqtt.client as mqtt

        parts = urllib.parse.urlsplit(broker)
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
            raise ParameterError(
                f"the broker must be an mqtt://host:port URL, not {broker!r}", parameter="broker"
            )
        tls = parts.scheme in ("mqtts", "ssl")
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"twin-sumo-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.max_queued_messages_set(0)
        if parts.username:
            self.client.username_pw_set(
                urllib.parse.unquote(parts.username),
                urllib.parse.unquote(parts.password) if parts.password else None,
            )
        if tls:
            self.client.tls_set()
        connected = threading.Event()
        refused: list[str] = []

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        self.client.on_connect = on_connect
        self.pending: list[Any] = []
        try:
            self.client.connect(parts.hostname, parts.port or (8883 if tls else 1883), keepalive=60)
        except OSError as exc:
            raise ParameterError(
                f"cannot reach the MQTT broker {broker}: {exc}", parameter="broker"
            ) from exc
        self.client.loop_start()
        if not connected.wait(timeout_s) or refused:
            self.client.loop_stop()
            why = refused[0] if refused else f"no answer within {timeout_s:g} s"
            raise ParameterError(f"the MQTT broker {broker} refused us: {why}", parameter="broker")

    def topic(self, datastream: int) -> str:
        """Return the Observations topic of a datastream."""
        return f"{self.prefix}v1.1/Datastreams({datastream})/Observations"

    def observation(self, datastream: int, moment: datetime, result: Any) -> None:
        """Publish one Observation (QoS 1)."""
        body = json.dumps({"phenomenonTime": iso(moment), "result": result})
        info = self.client.publish(self.topic(datastream), body, qos=1)
        self.pending.append(info)
        if len(self.pending) > 5000:
            self.pending = [i for i in self.pending if not i.is_published()]

    def close(self, *, strict: bool = True) -> None:
        """Wait until the broker has every message (up to the timeout), then disconnect.

        Parameters
        ----------
        strict
            Raise when messages were not acknowledged (not when closing after a failure).

        Raises
        ------
        ParameterError
            When the broker has not acknowledged every message in time.
        """
        deadline = time.monotonic() + self.timeout_s
        try:
            for info in self.pending:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.001))
            missing = sum(1 for i in self.pending if not i.is_published())
        finally:
            self.client.disconnect()
            self.client.loop_stop()
        if missing and strict:
            raise ParameterError(
                f"the MQTT broker did not acknowledge {missing} observations within "
                f"{self.timeout_s:g} s",
                parameter="broker",
            )


def loop_datastreams(
    scenario: str, loops: Sequence[Loop], *, url: str | None = None
) -> dict[str, dict[str, int]]:
    """Register each loop as a Thing on its road, with flow, occupancy and speed datastreams.

    Parameters
    ----------
    scenario
        The scenario's name (the prefix of its roads' ids).
    loops
        Its loops.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        Per loop id, datastream id by property (``flow``, ``occupancy``, ``speed``).
    """
    from twin.live.registry import register

    out: dict[str, dict[str, int]] = {}
    for loop in loops:
        thing = f"{scenario}:{loop.id}"
        out[loop.id] = {
            prop: register(
                f"{thing}/{prop}",
                thing=thing,
                observed_property=prop,
                layer="roads",
                feature_id=f"{scenario}:{loop.edge}",
                sensor=LOOP_SENSOR,
                location=(loop.lon, loop.lat),
                url=url,
            )
            for prop in ("flow", "occupancy", "speed")
        }
    return out


def simulate(
    scenario: str | Path,
    *,
    broker: str | None = None,
    prefix: str | None = None,
    url: str | None = None,
    interval_s: float = 60.0,
    bus_interval_s: float = 10.0,
    speed: float | None = 1.0,
    begin: float | None = None,
    end: float | None = None,
    incidents: Sequence[Incident] = (),
    seed: int = 42,
    anchor: datetime | None = None,
    progress: Progress | None = None,
    timeout_s: float | None = None,
) -> SimulationSummary:
    """Run a SUMO scenario as the city's live feed: its detectors and buses publish over MQTT.

    Every loop and bus is registered (a Thing, its datastreams; see :func:`loop_datastreams`),
    then SUMO runs and every interval each loop publishes its flow (veh/h), occupancy (%) and,
    when vehicles passed, their mean speed (km/h); every ``bus_interval_s`` each bus publishes
    its position. The phenomenonTime of a reading is ``anchor`` + its simulation time (the end
    of the interval for a loop).

    Parameters
    ----------
    scenario
        A ``.sumocfg`` or the folder holding one.
    broker
        The MQTT broker URL (``settings.mqtt_url`` by default).
    prefix
        Topic prefix (``settings.live_topic_prefix`` by default).
    url
        Database URL where the datastreams are registered; the configured one by default.
    interval_s
        Aggregation interval of the loops, s.
    bus_interval_s
        Interval of bus positions, s of simulation time.
    speed
        × real time; None runs as fast as possible.
    begin, end
        Simulation period, s.
    incidents
        Lanes to block (see :func:`random_incidents`).
    seed
        SUMO's random seed.
    anchor
        The wall-clock moment of simulation time 0 (UTC). By default no reading is ever in
        the future: the run's first moment is now for a run at real time (or slower), and for a
        faster run it is set back so that its last reading is stamped when it is published
        (``now - end`` for a run as fast as possible).
    progress
        Called with the simulated seconds done and the total.
    timeout_s
        Wall-clock limit of the run, s.

    Returns
    -------
    SimulationSummary
        Observations published per property, datastreams, vehicles, incidents and times.

    Raises
    ------
    ParameterError
        When the scenario, period, pace or broker is not usable (``SignalError`` for SUMO's
        own failures), or the broker does not take the observations.
    """
    settings = get_settings()
    broker = broker if broker is not None else settings.mqtt_url
    if not broker:
        raise ParameterError(
            "MQTT is off (no broker URL): nothing to publish to", parameter="broker"
        )
    prefix = prefix if prefix is not None else settings.live_topic_prefix
    sc = scenario_of(scenario)
    loops = scenario_loops(sc)
    start, stop = simulation_period(sc, begin, end)
    if anchor is None:
        lag = (stop - start) * (1.0 - (1.0 / speed if speed else 0.0))
        anchor = datetime.now(UTC) - timedelta(seconds=start + max(lag, 0.0))
        anchor = anchor.replace(microsecond=anchor.microsecond // 1000 * 1000)  # whole ms
    elif anchor.tzinfo is None:
        raise ParameterError("the anchor must be timezone-aware", parameter="anchor")
    from twin.live.registry import register

    streams = loop_datastreams(sc.name, loops, url=url)
    names = {f"{sc.name}:{lid}/{p}": i for lid, props in streams.items() for p, i in props.items()}
    bus_streams: dict[str, int] = {}
    counts: Counter[str] = Counter()
    publisher = MqttPublisher(broker, prefix)

    def moment(t: float) -> datetime:
        return anchor + timedelta(seconds=t)

    def on_interval(t: float, readings: list[LoopReading]) -> None:
        when = moment(t)
        for r in readings:
            ids = streams[r.loop]
            publisher.observation(ids["flow"], when, round(r.count * 3600.0 / interval_s, 3))
            publisher.observation(ids["occupancy"], when, r.occupancy)
            counts["flow"] += 1
            counts["occupancy"] += 1
            if r.speed is not None:
                publisher.observation(ids["speed"], when, r.speed)
                counts["speed"] += 1

    def on_buses(t: float, positions: dict[str, tuple[float, float]]) -> None:
        when = moment(t)
        for vid, (lon, lat) in positions.items():
            if vid not in bus_streams:
                thing = f"{sc.name}:bus:{vid}"
                bus_streams[vid] = register(
                    f"{thing}/position",
                    thing=thing,
                    observed_property="position",
                    sensor=BUS_SENSOR,
                    observation_type=OBSERVATION,
                    url=url,
                )
                names[f"{thing}/position"] = bus_streams[vid]
            publisher.observation(
                bus_streams[vid], when, {"type": "Point", "coordinates": [lon, lat]}
            )
            counts["position"] += 1

    try:
        run = run_scenario(
            sc,
            interval_s=interval_s,
            bus_interval_s=bus_interval_s,
            begin=start,
            end=stop,
            incidents=incidents,
            seed=seed,
            speed=speed,
            on_interval=on_interval,
            on_buses=on_buses,
            progress=progress,
            timeout_s=timeout_s,
        )
    except BaseException:
        publisher.close(strict=False)
        raise
    publisher.close()
    return SimulationSummary(
        scenario=sc.name,
        observations=counts,
        datastreams=names,
        vehicles=run.vehicles,
        buses=len(bus_streams),
        incidents=run.incidents,
        sim_seconds=run.sim_seconds,
        wall_seconds=run.wall_seconds,
        anchor=anchor,
    )
