"""The emergency green corridor: hold each signal green for the vehicle, then restore the plan.

For an emergency route the corridor is planned ahead (which signal, which links, when the
vehicle arrives at free speed, when each hold must start so the green is up before it, when it
ends, and the plan each signal returns to), and run in SUMO through TraCI the way a real
pre-emption system runs: a signal starts its hold when the vehicle, detected on its approach,
is ``lead_s`` from the stop line plus the time the queue standing there needs to clear;
conflicting greens get a yellow first; once the vehicle has
crossed, the signal shows yellow where needed and rejoins its plan at the phase the plan is in
at that moment, so coordination is kept.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import sumolib
import traci

from routing.signals import sumo
from routing.signals.model import Program, Signal, SignalError

EMERGENCY_TYPE = "twin_emergency"
_YELLOW_S = 3.0
_MAX_HOLD_S = 60.0  # longest hold of one signal
_DISCHARGE_S = 2.0  # saturation headway: a queued vehicle leaves the stop line every 2 s


@dataclass(frozen=True)
class Hold:
    """One signal's part of a green corridor.

    Attributes
    ----------
    signal
        The signal's id.
    edge
        The route's edge into the signal.
    links
        Link indices the vehicle uses.
    distance_m
        Distance along the route from its start to the stop line, m.
    eta_s
        When the vehicle reaches the stop line at free speed, s after departure.
    start_s
        When the hold must start (yellow for conflicting greens first), s after departure.
    end_s
        When the hold ends and the signal goes back to its plan, s after departure.
    phase
        Index of the plan's phase whose greens the hold shows.
    state
        The state held.
    route_index
        Position of ``edge`` in the route.
    through_index
        Position of the last route edge the hold serves (a signal that controls the next
        junctions too serves all their turns with one hold); it ends once the vehicle is past.
    restore_phase
        The plan's phase the signal rejoins after its restoring yellow (at ``end_s`` + 3 s,
        the time counted from the plan's own start).
    """

    signal: str
    edge: str
    links: tuple[int, ...]
    distance_m: float
    eta_s: float
    start_s: float
    end_s: float
    phase: int
    state: str
    route_index: int
    through_index: int
    restore_phase: int


@dataclass(frozen=True)
class Edge:
    """What a corridor plan needs of a road edge: length, speed and the edges it leads to."""

    length_m: float
    speed_ms: float
    successors: frozenset[str]


def edge_table(net: Any) -> dict[str, Edge]:
    """Return a SUMO network's edges as a corridor plan reads them."""
    return {
        e.getID(): Edge(e.getLength(), e.getSpeed(), frozenset(o.getID() for o in e.getOutgoing()))
        for e in net.getEdges(withInternal=False)
    }


def serving_phase(program: Program, links: Sequence[int]) -> int:
    """Return the phase that gives the links green longest (protected green first)."""
    best, best_key = -1, (-1, -1.0)
    for i, p in enumerate(program.phases):
        if all(p.state[j] in "Gg" for j in links):
            key = (sum(p.state[j] == "G" for j in links), p.duration)
            if key > best_key:
                best, best_key = i, key
    if best < 0:
        raise SignalError(
            f"no phase of program {program.id} gives links {list(links)} green",
            parameter="route",
        )
    return best


def plan_corridor(
    net: Any,
    signals: Mapping[str, Signal],
    route: Sequence[str],
    *,
    speed_factor: float = 1.0,
    lead_s: float = 8.0,
    clear_s: float = 4.0,
    depart: float = 0.0,
) -> list[Hold]:
    """Plan the holds of a green corridor along a route.

    Parameters
    ----------
    net
        The network (``sumolib.net.Net``), or its edges as :func:`edge_table` gives them.
    signals
        Signals by id.
    route
        The route's edges, connected.
    speed_factor
        The vehicle's speed as a share of each edge's speed limit.
    lead_s
        How long before the vehicle's arrival the hold starts (yellow, then the queue ahead
        of it clears).
    clear_s
        How long after the arrival the hold lasts.
    depart
        Departure, s of the plans' clock (for the phase each signal rejoins).

    Returns
    -------
    list of Hold
        Holds in route order.

    Raises
    ------
    SignalError
        When an edge is unknown or two consecutive edges are not connected.
    """
    if len(route) < 2:
        raise SignalError("a route needs at least two edges", parameter="route")
    edges = net if isinstance(net, Mapping) else edge_table(net)
    for e in route:
        if e not in edges:
            raise SignalError(f"edge {e} is not in the network", parameter="route")
    turns: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for sid, sig in signals.items():
        for link in sig.links.values():
            turns.setdefault((link.from_edge, link.to_edge), []).append((sid, link.index))
    holds: list[Hold] = []
    distance = eta = 0.0
    for position, (a, b) in enumerate(itertools.pairwise(route)):
        edge = edges[a]
        if b not in edge.successors:
            raise SignalError(
                f"the route is not connected: {a} does not lead to {b}", parameter="route"
            )
        distance += edge.length_m
        eta += edge.length_m / (edge.speed_ms * speed_factor)
        found = turns.get((a, b), [])
        if not found:
            continue
        sid = found[0][0]
        links = tuple(sorted({i for s, i in found if s == sid}))
        program = signals[sid].program
        restore = phase_at(program, depart + eta + clear_s + _YELLOW_S)[0]
        last = holds[-1] if holds else None
        if last is not None and last.signal == sid:
            # the same signal's next junction (no other signal between): one hold serves both
            # turns, else the first hold's queue waits on the second junction's red
            links = tuple(sorted({*last.links, *links}))
            holds[-1] = replace(
                last,
                links=links,
                end_s=round(eta + clear_s, 1),
                state=_serving_state(program, links),
                through_index=position,
                restore_phase=restore,
            )
            continue
        phase = serving_phase(program, links)
        holds.append(
            Hold(
                sid,
                a,
                links,
                round(distance, 1),
                round(eta, 1),
                round(max(eta - lead_s, 0.0), 1),
                round(eta + clear_s, 1),
                phase,
                program.phases[phase].state,
                position,
                position,
                restore,
            )
        )
    return holds


def _serving_state(program: Program, links: Sequence[int]) -> str:
    """Return the state serving all links (the first one's phase, others made green if none)."""
    try:
        return program.phases[serving_phase(program, links)].state
    except SignalError:
        state = list(program.phases[serving_phase(program, links[:1])].state)
        for j in links:
            state[j] = "G"
        return "".join(state)


def phase_at(program: Program, time: float) -> tuple[int, float]:
    """Return the phase a program shows at a time (s) and the seconds left in it."""
    position = (time - program.offset) % program.cycle
    t = 0.0
    for i, p in enumerate(program.phases):
        if t + p.duration > position:
            return i, t + p.duration - position
        t += p.duration
    return 0, program.phases[0].duration


def _yellow_between(current: str, target: str) -> str:
    """Return the change state between two states: yellow where a green ends."""
    return "".join(
        "y" if c in "Gg" and t not in "Gg" else c for c, t in zip(current, target, strict=True)
    )


class _Corridor:
    """Drives the holds through TraCI as a pre-emption controller does, step by step."""

    def __init__(self, conn: Any, net: Any, holds: Sequence[Hold], signals: Mapping[str, Signal]):
        self.conn = conn
        self.net = net
        self.waiting = list(holds)
        self.signals = signals
        # signal -> (mode, until, hold): mode "yellow" then "hold", then "restore"
        self.modes: dict[str, tuple[str, float, Hold]] = {}
        self.log: list[dict[str, Any]] = []

    def step(self, now: float, vehicle: str | None, lead_s: float) -> None:
        tl = self.conn.trafficlight
        if vehicle is not None:
            index = self.conn.vehicle.getRouteIndex(vehicle)
            speed = self.conn.vehicle.getSpeed(vehicle)
            for hold in list(self.waiting):
                if hold.route_index < index:
                    self.waiting.remove(hold)
                    continue
                edge = self.net.getEdge(hold.edge)
                ahead = self.conn.vehicle.getDrivingDistance(vehicle, hold.edge, edge.getLength())
                expected = max(speed, 0.5 * edge.getSpeed())
                if ahead < 0 or ahead / expected > lead_s + self._queue_s(hold):
                    continue
                self.waiting.remove(hold)
                state = tl.getRedYellowGreenState(hold.signal)
                if all(state[j] in "Gg" for j in hold.links):
                    tl.setRedYellowGreenState(hold.signal, state)
                    self.modes[hold.signal] = ("hold", now, hold)
                else:
                    tl.setRedYellowGreenState(hold.signal, _yellow_between(state, hold.state))
                    self.modes[hold.signal] = ("yellow", now + _YELLOW_S, hold)
                self.log.append({"signal": hold.signal, "hold_from_s": now})
        for sid, (mode, until, hold) in list(self.modes.items()):
            program = self.signals[sid].program
            if mode == "yellow" and now >= until:
                tl.setRedYellowGreenState(sid, hold.state)
                self.modes[sid] = ("hold", now, hold)
            elif mode == "hold":
                passed = (
                    vehicle is None or self.conn.vehicle.getRouteIndex(vehicle) > hold.through_index
                )
                # as real pre-emption does, a hold never outlasts its maximum: a vehicle held up
                # in a queue must not keep cross traffic red into gridlock
                if passed or now - until >= _MAX_HOLD_S:
                    target = program.phases[phase_at(program, now + _YELLOW_S)[0]].state
                    current = tl.getRedYellowGreenState(sid)
                    tl.setRedYellowGreenState(sid, _yellow_between(current, target))
                    self.modes[sid] = ("restore", now + _YELLOW_S, hold)
                    next(e for e in self.log if e["signal"] == sid)["hold_to_s"] = now
            elif mode == "restore" and now >= until:
                tl.setProgram(sid, program.id)
                phase, left = phase_at(program, now)
                tl.setPhase(sid, phase)
                tl.setPhaseDuration(sid, left)
                del self.modes[sid]

    def _queue_s(self, hold: Hold) -> float:
        """Time the queue standing at the stop line needs to clear (2 s per vehicle)."""
        links = [self.signals[hold.signal].links[j] for j in hold.links]
        lanes = {k.from_lane for k in links if k.from_edge == hold.edge}
        halting = max(
            (self.conn.lane.getLastStepHaltingNumber(f"{hold.edge}_{lane}") for lane in lanes),
            default=0,
        )
        return _DISCHARGE_S * halting

    @property
    def busy(self) -> bool:
        return bool(self.modes)


def run_corridor(
    scenario: sumo.Scenario,
    net_file: Path,
    additional: Sequence[Path],
    route: Sequence[str],
    *,
    seed: int,
    depart: float,
    corridor: bool,
    end: float | None,
    workdir: Path,
    lead_s: float = 8.0,
    options: Sequence[str] = (),
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run SUMO with one emergency vehicle, with or without the green corridor (TraCI).

    Parameters
    ----------
    scenario
        The scenario.
    net_file, additional
        Network and additional files of the plans the signals run.
    route
        The vehicle's edges (connected).
    seed
        Random seed.
    depart
        Departure, s.
    corridor
        Whether the signals give the corridor.
    end
        Simulation horizon, s.
    workdir
        Folder for SUMO's files.
    lead_s
        How long before the vehicle's arrival each hold starts, plus the time the queue
        standing ahead of it needs to clear (2 s per halting vehicle).
    options
        Further SUMO options (outputs such as ``--fcd-output``).
    timeout_s
        Wall-clock limit of the run, s (by default :func:`routing.signals.sumo.run_timeout`);
        SUMO is stopped when it is reached.

    Returns
    -------
    dict
        The vehicle's travel time, the other vehicles' mean time loss, the holds carried out.

    Raises
    ------
    SignalError
        When SUMO cannot start, fails, or has not finished within ``timeout_s``.
    """
    net = scenario.read_net()
    programs = sumo.read_programs([net_file, *additional])
    signals = sumo.signals_of(net, programs)
    holds = plan_corridor(net, signals, route, lead_s=lead_s, depart=depart)
    vtype = workdir / "emergency.add.xml"
    vtype.write_text(
        f'<additional><vType id="{EMERGENCY_TYPE}" vClass="emergency" guiShape="emergency" '
        f'color="red"/><vType id="{EMERGENCY_TYPE}_car" vClass="passenger" '
        'guiShape="emergency" color="red"/></additional>\n',
        encoding="utf-8",
    )
    tag = f"em-{'on' if corridor else 'off'}-{seed}"
    cmd = sumo.run_command(
        scenario,
        net_file,
        [*additional, vtype],
        seed=seed,
        outputs=workdir / tag,
        end=end,
        options=options,
    )
    limit = timeout_s if timeout_s is not None else sumo.run_timeout(scenario, end)
    what = f"SUMO's emergency run of {scenario.config.name} ({tag})"
    with traci_session(cmd, limit=limit, what=what, log=workdir / f"{tag}.log") as conn:
        controller = _drive(conn, net, holds, signals, route, depart, corridor, end, lead_s)
    return _corridor_result(
        workdir / f"{tag}.tripinfo.xml",
        holds,
        controller.log,
        depart,
        end=end,
        label=f"{'with' if corridor else 'without'} the corridor, seed {seed}",
    )


@contextlib.contextmanager
def traci_session(cmd: Sequence[str], *, limit: float, what: str, log: Path) -> Iterator[Any]:
    """Start SUMO as a TraCI server and yield the connection; SUMO is stopped after ``limit`` s.

    A watchdog kills SUMO once the time is up: the connection then breaks, and the error says
    that the run took too long rather than that SUMO went away. On leaving, the connection is
    closed and SUMO given the rest of the time to write its outputs. SUMO's console output
    goes to ``log`` with the suffix ``.console.txt``, so an error quotes SUMO's own message
    even when SUMO stopped before it opened ``log`` (a bad option, say). Nothing is printed
    and no process-wide state (``sys.stdout``) is touched, so sessions may run in threads.

    Parameters
    ----------
    cmd
        The ``sumo`` command, without ``--remote-port`` (see
        :func:`routing.signals.sumo.run_command`).
    limit
        Wall-clock limit of the run, s.
    what
        What the run is, for error messages.
    log
        SUMO's log file (``--log``), quoted when SUMO fails.

    Yields
    ------
    traci.connection.Connection
        The connection to SUMO.

    Raises
    ------
    SignalError
        When SUMO cannot start (quoting SUMO's message), fails, or has not finished within
        ``limit`` s.
    """
    deadline = time.monotonic() + limit
    process: subprocess.Popen[bytes] | None = None
    conn: Any = None
    expired = threading.Event()
    console = console_path(log)

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
    try:
        # a port found free may be taken before SUMO binds it: SUMO then exits; try another
        for _ in range(3):
            port = int(sumolib.miscutils.getFreeSocketPort())
            with console.open("wb") as out:
                process = subprocess.Popen(
                    [*cmd, "--remote-port", str(port)], stdout=out, stderr=subprocess.STDOUT
                )
            conn = _connect(port, process, expired)
            if conn is not None or expired.is_set():
                break
            process.wait(timeout=10)
        if expired.is_set():
            raise stopped()
        if conn is None:
            said = " ".join(sumo.log_tail(console) + sumo.log_tail(log)) or "it gave no message"
            raise SignalError(f"{what} could not start: {said}", parameter="scenario")
        yield conn
    except (traci.FatalTraCIError, traci.TraCIException, OSError) as exc:
        if expired.is_set():
            raise stopped() from exc
        said = " ".join(sumo.log_tail(console) + sumo.log_tail(log))
        raise SignalError(f"{what} failed: {exc} {said}".strip(), parameter="scenario") from exc
    finally:
        watchdog.cancel()
        if conn is not None:
            with contextlib.suppress(traci.FatalTraCIError, OSError):
                conn.close(wait=False)
        if process is not None:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 10.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                raise stopped() from None


def console_path(log: Path) -> Path:
    """Return where :func:`traci_session` keeps SUMO's console output for a run's log file.

    Parameters
    ----------
    log
        The run's log file, e.g. ``adaptive-1.log``.

    Returns
    -------
    pathlib.Path
        The same stem with ``.console.txt``, e.g. ``adaptive-1.console.txt``.
    """
    return log.with_name(f"{log.name.removesuffix('.log')}.console.txt")


def _connect(port: int, process: subprocess.Popen[bytes], expired: threading.Event) -> Any:
    """Connect to SUMO on ``port`` once it listens; ``None`` when SUMO exits or time is up.

    ``traci.connect`` with ``numRetries=0`` tries once and prints nothing (its retry loop
    prints "Retrying"); the waits between tries double from 10 ms to 0.5 s.
    """
    wait = 0.01
    while not expired.is_set():
        try:
            return traci.connect(port, numRetries=0, proc=process)
        except traci.TraCIException:  # SUMO exited before it answered
            return None
        except traci.FatalTraCIError:  # not listening yet
            if process.poll() is not None:
                return None
        expired.wait(wait)
        wait = min(2 * wait, 0.5)
    return None


def _drive(
    conn: Any,
    net: Any,
    holds: Sequence[Hold],
    signals: Mapping[str, Signal],
    route: Sequence[str],
    depart: float,
    corridor: bool,
    end: float | None,
    lead_s: float,
) -> _Corridor:
    """Add the emergency vehicle and step the simulation to its end, driving the corridor."""
    controller = _Corridor(conn, net, holds, signals)
    vid = "twin_emergency"
    conn.route.add("twin_emergency_route", list(route))
    try:
        conn.vehicle.add(vid, "twin_emergency_route", typeID=EMERGENCY_TYPE, depart=str(depart))
    except traci.TraCIException:
        # lanes that list the classes they allow may leave emergency vehicles out: the
        # vehicle then drives with a car's permissions
        conn.vehicle.add(
            vid, "twin_emergency_route", typeID=f"{EMERGENCY_TYPE}_car", depart=str(depart)
        )
    conn.simulationStep(float(depart))
    seen = False
    while end is None or conn.simulation.getTime() < end:
        conn.simulationStep()
        present = vid in conn.vehicle.getIDList()
        seen = seen or present
        if corridor:
            controller.step(conn.simulation.getTime(), vid if present else None, lead_s)
        if seen and not present and not controller.busy:
            break
    if end is None:
        while conn.simulation.getMinExpectedNumber() > 0:
            conn.simulationStep()
    elif conn.simulation.getTime() < end:
        conn.simulationStep(float(end))  # an int >= 1000 makes traci warn
    return controller


def _corridor_result(
    trips: Path,
    holds: Sequence[Hold],
    done: list[dict[str, Any]],
    depart: float,
    *,
    end: float | None,
    label: str,
) -> dict[str, Any]:
    """Read the emergency vehicle's travel time and the others' mean time loss from tripinfo.

    Raises :class:`SignalError` (parameter ``end``) when the vehicle has not arrived by the
    end of the run: SUMO then writes ``arrival="-1"`` and a duration cut at the horizon,
    which is no travel time.
    """
    others = n = 0.0
    travel = None
    for _, el in ET.iterparse(trips, events=("end",)):
        if el.tag != "tripinfo":
            continue
        if el.get("id") == "twin_emergency":
            if float(el.get("arrival", "-1")) >= 0:
                travel = float(el.get("duration", "nan"))
        else:
            others += float(el.get("timeLoss", "0"))
            n += 1
        el.clear()
    if travel is None:
        horizon = f"{end:g} s" if end is not None else "the end of the run"
        raise SignalError(
            f"the emergency vehicle (departing at {depart:g} s) did not arrive by {horizon} "
            f"({label}): lengthen the horizon",
            parameter="end",
        )
    return {
        "travel_time_s": travel,
        "others_time_loss_s": others / max(n, 1),
        "holds": [asdict(h) for h in holds],
        "carried_out": done,
        "depart_s": depart,
    }


def evaluate_corridor(
    scenario: sumo.Scenario,
    net_file: Path,
    additional: Sequence[Path],
    route: Sequence[str],
    *,
    seeds: Sequence[int],
    depart: float | None = None,
    end: float | None = None,
    workdir: Path | None = None,
    lead_s: float = 8.0,
) -> dict[str, Any]:
    """Measure an emergency vehicle with and without the green corridor, seed by seed.

    Parameters
    ----------
    scenario
        The scenario.
    net_file, additional
        Network and additional files of the plans the signals run.
    route
        The vehicle's edges; two edges are routed by the fastest path between them.
    seeds
        Seeds.
    depart
        Departure, s (a third of the horizon by default).
    end
        Simulation horizon, s.
    workdir
        Folder for SUMO's files.
    lead_s
        How long before the vehicle's arrival (beyond the queue's clearing) holds start.

    Returns
    -------
    dict
        Per seed and on average: the vehicle's travel time with and without the corridor, the
        gain, and the change of everyone else's mean time loss.
    """
    net = scenario.read_net()
    edges = full_route(net, route)
    if depart is None:
        depart = (end or 3600.0) / 3
    folder = workdir or Path(tempfile.mkdtemp(prefix="twin-corridor-"))
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        off = run_corridor(
            scenario,
            net_file,
            additional,
            edges,
            seed=seed,
            depart=depart,
            corridor=False,
            end=end,
            workdir=folder,
        )
        on = run_corridor(
            scenario,
            net_file,
            additional,
            edges,
            seed=seed,
            depart=depart,
            corridor=True,
            end=end,
            workdir=folder,
            lead_s=lead_s,
        )
        per_seed.append({"seed": seed, "without": off, "with": on})
    t_off = statistics.fmean([s["without"]["travel_time_s"] for s in per_seed])
    t_on = statistics.fmean([s["with"]["travel_time_s"] for s in per_seed])
    d_off = statistics.fmean([s["without"]["others_time_loss_s"] for s in per_seed])
    d_on = statistics.fmean([s["with"]["others_time_loss_s"] for s in per_seed])
    return {
        "route": list(edges),
        "depart_s": depart,
        "holds": per_seed[0]["with"]["holds"],
        "travel_time_without_s": t_off,
        "travel_time_with_s": t_on,
        "faster_pct": 100 * (t_off - t_on) / t_off if t_off else 0.0,
        "others_time_loss_without_s": d_off,
        "others_time_loss_with_s": d_on,
        "others_extra_delay_pct": 100 * (d_on - d_off) / d_off if d_off else 0.0,
        "seeds": [
            {
                "seed": s["seed"],
                "travel_time_without_s": s["without"]["travel_time_s"],
                "travel_time_with_s": s["with"]["travel_time_s"],
                "others_time_loss_without_s": s["without"]["others_time_loss_s"],
                "others_time_loss_with_s": s["with"]["others_time_loss_s"],
            }
            for s in per_seed
        ],
    }


def drivable(net: Any, route: Sequence[str], vclass: str = "passenger") -> bool:
    """Whether a vehicle class may drive a route: every turn has a lane pair it may use."""
    for a, b in itertools.pairwise(route):
        if not (net.hasEdge(a) and net.hasEdge(b)):
            return False
        conns = net.getEdge(a).getOutgoing().get(net.getEdge(b), [])
        if not any(c.getFromLane().allows(vclass) and c.getToLane().allows(vclass) for c in conns):
            return False
    return True


def full_route(net: Any, route: Sequence[str]) -> list[str]:
    """Return a route's edges: as given, or the fastest path when only its two ends are given."""
    if len(route) < 2:
        raise SignalError(
            "the emergency route needs at least two edges (its start and its end), got "
            f"{len(route)}",
            parameter="emergency",
        )
    for e in route:
        if not net.hasEdge(e):
            raise SignalError(f"edge {e} is not in the network", parameter="emergency")
    edges = list(route)
    if len(route) == 2 and net.getEdge(route[1]) not in net.getEdge(route[0]).getOutgoing():
        path, _ = net.getFastestPath(
            net.getEdge(route[0]), net.getEdge(route[1]), vClass="passenger"
        )
        if not path:
            raise SignalError(
                f"no path from edge {route[0]} to edge {route[1]}", parameter="emergency"
            )
        edges = [e.getID() for e in path]
    if not drivable(net, edges):
        raise SignalError(
            "the emergency route has a turn no car may take (a bus-only lane?): " + " ".join(edges),
            parameter="emergency",
        )
    return edges
