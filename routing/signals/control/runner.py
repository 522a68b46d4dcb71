"""Run a SUMO scenario with the twin's controllers in the loop (TraCI).

Every signal of the scenario is taken over: each simulation step the placed detectors
(:mod:`~routing.signals.control.detectors`) are read through TraCI subscriptions, each signal's
:class:`~routing.signals.control.base.SignalHead` steps its controller, and a changed state is
set with ``trafficlight.setRedYellowGreenState``. The run is SUMO's own in every other respect
(the scenario's configuration, demand and seeds, outputs redirected to the work folder), and
the trip statistics are read as :func:`routing.signals.evaluation.simulate` reads them.

SUMO runs as a TraCI server over a socket, with a wall-clock watchdog as for the emergency
corridor (:func:`routing.signals.preemption.traci_session`). ``libsumo`` (SUMO in-process) is
not used: it runs one simulation per process, and evaluations run several at once in threads.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routing.signals import sumo
from routing.signals.control.base import (
    ControlledSignal,
    Controller,
    Measurements,
    SafetyRules,
    SignalHead,
    control_signals,
)
from routing.signals.control.detectors import Detectors
from routing.signals.control.emergency import Preemption, with_preemption
from routing.signals.model import SignalError
from routing.signals.preemption import EMERGENCY_TYPE, drivable, full_route, traci_session
from routing.signals.runs import Run, Setup, read_run

ControllerFactory = Callable[[ControlledSignal], Controller]
PriorityWrapper = Callable[[ControlledSignal, Controller], Controller]
PreemptionWrapper = Callable[[ControlledSignal, Controller], Controller]


def base_signals(
    scenario: sumo.Scenario, setup: Setup, *, rules: SafetyRules
) -> dict[str, ControlledSignal]:
    """Return the controlled signals of a setup: its network with its programs as the base.

    Parameters
    ----------
    scenario
        The scenario.
    setup
        Network and program files (``routing.signals.runs.Setup``).
    rules
        The safety rules.

    Returns
    -------
    dict
        Controlled signal by id.
    """
    net = scenario.read_net() if Path(setup.net) == scenario.net else sumo.read_net(setup.net)
    programs = sumo.read_programs(setup.programs)
    return control_signals(net, sumo.signals_of(net, programs), rules=rules)


def states_additional(path: Path, signals: Sequence[str], states: str = "tls_states.xml") -> Path:
    """Write an additional file asking SUMO for its signal-state output (every step).

    Parameters
    ----------
    path
        The file to write.
    signals
        Ids of the signals to record.
    states
        The name of the state output (redirected beside the run's outputs).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    SUMO's ``<timedEvent type="SaveTLSStates" source="ALL" dest=.../>`` writes
    ``<tlsState time id programID phase state/>`` for every signal at every step (SUMO
    documentation, "Traffic Lights": "Tracking the current state").
    """
    root = ET.Element("additional")
    for sid in signals:
        ET.SubElement(root, "timedEvent", type="SaveTLSStates", source=sid, dest=states)
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


def run_controlled(
    scenario: sumo.Scenario,
    setup: Setup,
    *,
    controller_factory: ControllerFactory | None,
    seed: int,
    end: float | None,
    workdir: Path,
    rules: SafetyRules | None = None,
    priority: bool | PriorityWrapper = False,
    record_states: bool = False,
    variant: str | None = None,
    timeout_s: float | None = None,
    emergency: Sequence[str] | None = None,
    emergency_depart: float = 0.0,
    preemption: bool | PreemptionWrapper = False,
    classes: Mapping[str, str] | None = None,
) -> Run:
    """Run SUMO with every signal driven by a controller behind the safety head.

    Parameters
    ----------
    scenario
        The scenario (its configuration's own processing options apply).
    setup
        Network and program files; the programs are the base the stages come from.
    controller_factory
        Makes one controller per signal; ``None`` runs the setup's programs untouched
        through the same TraCI loop (the plain run, for timing comparisons).
    seed
        Random seed.
    end
        Simulation horizon, s (``None``: the scenario's end, else until every vehicle
        has arrived).
    workdir
        Folder for SUMO's outputs and the placed detectors.
    rules
        The safety rules (defaults of :class:`SafetyRules`).
    priority
        Transit signal priority: ``True`` wraps each controller with
        ``routing.signals.control.priority`` (helper module, imported when asked), or a callable
        ``(signal, controller) -> controller`` doing the wrapping.
    record_states
        Write SUMO's signal-state output to ``workdir/<variant>-<seed>.tls_states.xml``
        (for :func:`routing.signals.control.safety.check_states`).
    variant
        The run's name (reported back and naming the outputs); the controller's name by default.
    timeout_s
        Wall-clock limit of the run, s (by default :func:`routing.signals.sumo.run_timeout`).
    emergency
        Route of one emergency vehicle to insert (edge ids, connected; two unconnected edges
        are routed by the fastest path), id ``twin_emergency``, written to
        ``workdir/<variant>-<seed>.emergency.add.xml`` with a vType of vClass ``emergency``
        (of vClass ``passenger`` when a lane on the route admits no emergency vehicle).
        ``None``: no vehicle.
    emergency_depart
        The emergency vehicle's departure, s.
    preemption
        Emergency pre-emption: ``True`` wraps each controller (over transit priority) with
        :func:`routing.signals.control.emergency.with_preemption`, or a callable
        ``(signal, controller) -> controller`` doing the wrapping.
    classes
        vClass per vehicle type id (``routing.signals.control.priority.vehicle_classes``), to
        tell buses from everyone else in the run's figures (:func:`routing.signals.runs.read_run`).

    Returns
    -------
    routing.signals.runs.Run
        The trip statistics of the run, as :func:`routing.signals.evaluation.simulate` reads them.

    Raises
    ------
    SignalError
        When SUMO fails or does not finish in time, or a controller breaks the interface, or
        the emergency route or pre-emption is not usable.
    """
    return _controlled(
        scenario,
        setup,
        controller_factory=controller_factory,
        seed=seed,
        end=end if end is not None else scenario.end,  # as SUMO's own configuration ends it
        workdir=workdir,
        rules=rules,
        priority=priority,
        record_states=record_states,
        variant=variant,
        timeout_s=timeout_s,
        emergency=emergency,
        emergency_depart=emergency_depart,
        preemption=preemption,
        classes=classes,
    ).run


@dataclass
class _Outcome:
    """A controlled run's statistics, and the heads and detectors that drove it."""

    run: Run
    heads: dict[str, SignalHead]
    detectors: Detectors
    tripinfo: Path


def _controlled(
    scenario: sumo.Scenario,
    setup: Setup,
    *,
    controller_factory: ControllerFactory | None,
    seed: int,
    end: float | None,
    workdir: Path,
    rules: SafetyRules | None,
    priority: bool | PriorityWrapper,
    record_states: bool,
    variant: str | None,
    timeout_s: float | None,
    emergency: Sequence[str] | None,
    emergency_depart: float,
    preemption: bool | PreemptionWrapper,
    classes: Mapping[str, str] | None = None,
) -> _Outcome:
    """Run SUMO as :func:`run_controlled` does; return the heads and detectors too."""
    if preemption is not False and controller_factory is None:
        raise SignalError(
            "pre-emption wraps a controller: give a controller_factory", parameter="preemption"
        )
    if emergency is not None and not (np.isfinite(emergency_depart) and emergency_depart >= 0):
        raise SignalError(
            f"emergency_depart must be a time >= 0 s, got {emergency_depart}",
            parameter="emergency_depart",
        )
    rules = rules or SafetyRules()
    signals = base_signals(scenario, setup, rules=rules)
    heads: dict[str, SignalHead] = {}
    if controller_factory is not None:
        wrap = _priority_wrapper(priority)
        preempt = _preemption_wrapper(preemption)
        for sid, signal in signals.items():
            controller = controller_factory(signal)
            if wrap is not None:
                controller = wrap(signal, controller)
            if preempt is not None:
                controller = preempt(signal, controller)
            heads[sid] = SignalHead(signal, controller, rules=rules)
    name = variant or (next(iter(heads.values())).controller.name if heads else "plain")
    stem = name.replace("+", "_")  # output files named as evaluation.simulate names them
    workdir.mkdir(parents=True, exist_ok=True)
    outputs = workdir / f"{stem}-{seed}"
    detectors = Detectors.place(scenario.read_net(), signals)
    extra = [*scenario.additional, *setup.programs]
    if heads:
        extra.append(detectors.write(Path(f"{outputs}.detectors.add.xml")))
    if record_states:
        extra.append(states_additional(Path(f"{outputs}.states.add.xml"), list(signals)))
    if emergency is not None:
        extra.append(
            emergency_additional(
                Path(f"{outputs}.emergency.add.xml"),
                scenario.read_net(),
                emergency,
                depart=emergency_depart,
            )
        )
    cmd = sumo.run_command(scenario, setup.net, extra, seed=seed, outputs=outputs, end=end)
    limit = timeout_s if timeout_s is not None else sumo.run_timeout(scenario, end)
    what = f"SUMO's controlled run of {scenario.config.name} ({name}, seed {seed})"
    log = Path(f"{outputs}.log")
    with traci_session(cmd, limit=limit, what=what, log=log) as conn:
        _drive(conn, heads, detectors, end)
    trips = Path(f"{outputs}.tripinfo.xml")
    run = read_run(trips, Path(f"{outputs}.stats.xml"), variant=name, seed=seed, classes=classes)
    return _Outcome(run, heads, detectors, trips)


def emergency_additional(
    path: Path, net: Any, route: Sequence[str], *, depart: float, vehicle: str = EMERGENCY_TYPE
) -> Path:
    """Write an additional file with one emergency vehicle on a route.

    Parameters
    ----------
    path
        The file to write (in the run's work folder).
    net
        The network (``sumolib.net.Net``).
    route
        The vehicle's edges (connected), or two edges routed by the fastest path
        (:func:`routing.signals.preemption.full_route`).
    depart
        Departure, s.
    vehicle
        The vehicle's id (the detectors follow ids starting ``twin_emergency``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    SignalError
        When an edge is unknown or no car may drive the route (unconnected edges, a turn
        on a bus-only lane).

    Notes
    -----
    The vType is of vClass ``emergency`` (SUMO's default emergency parameters; without the
    bluelight device it obeys the signals like any vehicle). Where a lane on the route
    lists the classes it admits and leaves emergency vehicles out, the type is of vClass
    ``passenger`` instead, as :func:`routing.signals.preemption.run_corridor` does.
    """
    edges = full_route(net, route)
    vclass = "emergency" if drivable(net, edges, "emergency") else "passenger"
    root = ET.Element("additional")
    ET.SubElement(
        root, "vType", id=EMERGENCY_TYPE, vClass=vclass, guiShape="emergency", color="red"
    )
    ET.SubElement(root, "route", id=f"{vehicle}_route", edges=" ".join(edges))
    ET.SubElement(
        root,
        "vehicle",
        id=vehicle,
        type=EMERGENCY_TYPE,
        route=f"{vehicle}_route",
        depart=f"{depart:.2f}",
        departLane="best",
    )
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


def _preemption_wrapper(preemption: bool | PreemptionWrapper) -> PreemptionWrapper | None:
    if preemption is False:
        return None
    if callable(preemption):
        return preemption
    return with_preemption


def _priority_wrapper(priority: bool | PriorityWrapper) -> PriorityWrapper | None:
    if priority is False:
        return None
    if callable(priority):
        return priority
    from routing.signals.control.priority import with_priority

    return with_priority


def _drive(
    conn: Any, heads: dict[str, SignalHead], detectors: Detectors, end: float | None
) -> None:
    """Step the simulation to its end, the heads setting the signals' states each step."""
    if not heads and end is not None:  # nothing to control: let SUMO run on its own
        conn.simulationStep(float(end))  # an int >= 1000 makes traci warn
        return
    dt = float(conn.simulation.getDeltaT())
    if heads:
        detectors.subscribe(conn)
    while True:
        now = float(conn.simulation.getTime())
        if end is not None and now >= end - 1e-9:
            break
        if end is None and conn.simulation.getMinExpectedNumber() <= 0:
            break
        if heads:
            measured = detectors.measure(conn)
            for sid, head in heads.items():
                state = head.step(now, dt, measured[sid])
                if state is not None:
                    conn.trafficlight.setRedYellowGreenState(sid, state)
        conn.simulationStep()


def decision_time(
    controller_factory: ControllerFactory,
    signals: Sequence[ControlledSignal],
    *,
    steps: int = 100,
    rules: SafetyRules | None = None,
    seed: int = 0,
) -> float:
    """Return the mean wall time of one step of every signal's head and controller, s.

    Measurements are random (queues 0..20 vehicles, gaps 0..10 s), drawn before timing; the
    time covers ``SignalHead.step`` (which calls the controller's ``decide``) for every signal,
    as the runner does each simulation step, without SUMO.

    Parameters
    ----------
    controller_factory
        Makes one controller per signal.
    signals
        The signals (repeat a scenario's signals to reach a city's count, e.g. 500).
    steps
        Steps timed (1 s each).
    rules
        The safety rules.
    seed
        Seed of the random measurements.

    Returns
    -------
    float
        Seconds per step for all signals.

    Raises
    ------
    SignalError
        When ``steps`` is not positive or no signal is given.
    """
    if steps < 1:
        raise SignalError("steps must be at least 1", parameter="steps")
    if not signals:
        raise SignalError("no signal to time", parameter="signals")
    rules = rules or SafetyRules()
    rng = np.random.default_rng(seed)
    heads = [SignalHead(s, controller_factory(s), rules=rules) for s in signals]
    samples = []
    for s in signals:
        n, k = len(s.in_lanes), len(s.out_lanes)
        samples.append(
            [
                Measurements(
                    queue=rng.integers(0, 20, n).astype(float),
                    count=rng.integers(0, 25, n).astype(float),
                    gap_s=rng.uniform(0.0, 10.0, n),
                    out_count=rng.integers(0, 10, k).astype(float),
                    bus_eta_s={},
                )
                for _ in range(min(steps, 8))
            ]
        )
    start = time.perf_counter()
    for t in range(steps):
        for head, sample in zip(heads, samples, strict=True):
            head.step(float(t), 1.0, sample[t % len(sample)])
    return (time.perf_counter() - start) / steps


def controlled_corridor(
    scenario: sumo.Scenario,
    setup: Setup,
    route: Sequence[str],
    *,
    controller_factory: ControllerFactory,
    seeds: Sequence[int],
    depart: float | None = None,
    end: float | None = None,
    workdir: Path | None = None,
    rules: SafetyRules | None = None,
    priority: bool | PriorityWrapper = False,
    lead_s: float = 8.0,
    max_hold_s: float = 60.0,
    record_states: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Measure an emergency vehicle under a real-time controller, without and with pre-emption.

    Seed by seed, the same scenario runs twice with one emergency vehicle on ``route``:
    "without", the controller alone; "with", the controller wrapped by
    :func:`routing.signals.control.emergency.with_preemption`.

    Parameters
    ----------
    scenario
        The scenario.
    setup
        Network and program files (the programs are the controllers' base).
    route
        The vehicle's edges; two unconnected edges are routed by the fastest path.
    controller_factory
        Makes one controller per signal.
    seeds
        Seeds.
    depart
        Departure, s (a third of the horizon by default, as
        :func:`routing.signals.preemption.evaluate_corridor`).
    end
        Simulation horizon, s (``None``: until every vehicle has arrived).
    workdir
        Folder for SUMO's files (a new temporary folder by default).
    rules
        The safety rules.
    priority
        Transit signal priority under the pre-emption (see :func:`run_controlled`).
    lead_s
        Green is asked for this long before the vehicle's arrival, beyond the queue's
        clearing time, s.
    max_hold_s
        Longest pre-emption of one approach, s.
    record_states
        Write SUMO's signal-state output of every run, ``workdir/<variant>-<seed>.tls_states.xml``
        with variants ``<name>-without`` and ``<name>-with``.
    timeout_s
        Wall-clock limit of each run, s.

    Returns
    -------
    dict
        The shape of :func:`routing.signals.preemption.evaluate_corridor`: ``route``,
        ``depart_s``, ``holds`` (the pre-emptions carried out in the first seed's run with
        it), ``travel_time_without_s``/``with_s`` (mean over seeds, s), ``faster_pct``,
        ``others_time_loss_without_s``/``with_s`` (everyone else's mean time loss, s),
        ``others_extra_delay_pct``, and ``seeds``: per seed the same figures plus
        ``red_wait_without_s``/``with_s`` (seconds the vehicle halted at a red or yellow of
        its next signal) and ``preemptions``; also ``controller`` and the means
        ``red_wait_without_s``/``with_s``.

    Raises
    ------
    SignalError
        When no seed is given, the route is not usable, SUMO fails, or the vehicle has not
        arrived by ``end``.
    """
    if not seeds:
        raise SignalError("no seed given", parameter="seeds")
    net = scenario.read_net()
    edges = full_route(net, route)
    if depart is None:
        depart = (end or 3600.0) / 3
    folder = workdir or Path(tempfile.mkdtemp(prefix="twin-controlled-corridor-"))
    folder.mkdir(parents=True, exist_ok=True)
    probe = controller_factory(
        next(iter(base_signals(scenario, setup, rules=rules or SafetyRules()).values()))
    )
    name = probe.name.replace("+", "_")

    def wrap(signal: ControlledSignal, controller: Controller) -> Controller:
        return with_preemption(signal, controller, lead_s=lead_s, max_hold_s=max_hold_s)

    per_seed: list[dict[str, Any]] = []
    holds: list[dict[str, Any]] = []
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for label, preempt in (("without", False), ("with", True)):
            outcome = _controlled(
                scenario,
                setup,
                controller_factory=controller_factory,
                seed=seed,
                end=end,
                workdir=folder,
                rules=rules,
                priority=priority,
                record_states=record_states,
                variant=f"{name}-{label}",
                timeout_s=timeout_s,
                emergency=edges,
                emergency_depart=depart,
                preemption=wrap if preempt else False,
            )
            travel, others = _emergency_trip(outcome.tripinfo, EMERGENCY_TYPE)
            if travel is None:
                raise SignalError(
                    f"the emergency vehicle (departing at {depart:g} s) did not arrive by "
                    f"{end:g} s ({label} pre-emption, seed {seed}): lengthen the horizon",
                    parameter="end",
                )
            row[f"travel_time_{label}_s"] = travel
            row[f"others_time_loss_{label}_s"] = others
            row[f"red_wait_{label}_s"] = sum(outcome.detectors.emergency_red_wait_s.values())
            if preempt:
                log = [
                    entry
                    for head in outcome.heads.values()
                    if isinstance(head.controller, Preemption)
                    for entry in head.controller.log
                ]
                row["preemptions"] = len(log)
                if not holds:
                    holds = sorted(log, key=lambda e: float(e["from_s"]))
        per_seed.append(row)

    def mean(key: str) -> float:
        return statistics.fmean(float(r[key]) for r in per_seed)

    t_off, t_on = mean("travel_time_without_s"), mean("travel_time_with_s")
    d_off, d_on = mean("others_time_loss_without_s"), mean("others_time_loss_with_s")
    return {
        "controller": probe.name,
        "route": list(edges),
        "depart_s": depart,
        "holds": holds,
        "travel_time_without_s": t_off,
        "travel_time_with_s": t_on,
        "faster_pct": 100 * (t_off - t_on) / t_off if t_off else 0.0,
        "others_time_loss_without_s": d_off,
        "others_time_loss_with_s": d_on,
        "others_extra_delay_pct": 100 * (d_on - d_off) / d_off if d_off else 0.0,
        "red_wait_without_s": mean("red_wait_without_s"),
        "red_wait_with_s": mean("red_wait_with_s"),
        "seeds": per_seed,
    }


def _emergency_trip(trips: Path, vehicle: str) -> tuple[float | None, float]:
    """Return the vehicle's travel time (None unless it arrived) and the others' mean time loss.

    From SUMO's tripinfo output: ``duration`` of the vehicle, ``timeLoss`` of every other
    trip (unfinished ones included, as SUMO writes them).
    """
    travel: float | None = None
    others = 0.0
    n = 0
    for _, el in ET.iterparse(trips, events=("end",)):
        if el.tag != "tripinfo":
            continue
        if el.get("id") == vehicle:
            if el.get("arrival", "-1") not in ("-1", "-1.00"):
                travel = float(el.get("duration", "nan"))
        else:
            others += float(el.get("timeLoss", "0"))
            n += 1
        el.clear()
    return travel, others / max(n, 1)
