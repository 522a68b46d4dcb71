"""SUMO's time loss of a scenario's signal plan: the ``signals`` figures of a scenario.

A scenario may name a stored signal plan (``settings["signal_plan"]``, a plan of
:mod:`layers.signal_plans`, made by :meth:`twin.City.optimise_signals`). Its figure is what
SUMO measures on the scenario's own roads:

1. the twin's roads and signals are exported as a SUMO network *as the scenario has them*
   (:meth:`twin.City.export_sumo` under :func:`layers.scenarios.using`: it reads the layers
   through :func:`layers.access.relation`, so the scenario's added, changed and retired roads
   and signals count);
2. a demand is drawn on that network by SUMO's own ``randomTrips.py`` with a fixed seed:
   trips depart uniformly over ``period_s`` seconds at ``insertion_rate`` vehicles per hour,
   passenger cars between edges that allow them, checked for connectivity and routed by
   ``duarouter`` (``--validate``, ``--route-file``);
3. SUMO runs that demand twice with the same seed (:func:`routing.signals.evaluation.simulate`,
   read by :func:`routing.signals.runs.read_run`): with the network's own programs (the
   programs netconvert builds for the exported junctions: the *base*), and with the plan's
   programs loaded over them;
4. the figures are the mean time loss per trip (SUMO's ``timeLoss``, trips still running at
   the end included) of each run and the number of trips.

A stored plan was timed on the SUMO network its signals were imported from; the exported
network is rebuilt by netconvert from the twin's roads, so its junctions' link indices differ.
Each planned signal is placed on the traffic light netconvert builds at the signal's node
(``node_id``), link by link, by movement (:func:`place_plan`): an exported link takes the state
of the plan's link of the same incoming and outgoing road (same lane first); a link the plan
does not have (a U-turn netconvert adds) takes the most restrictive state of the plan's links
from its incoming road, and a link whose road the plan does not control yields (``o``). A
signal with no links stored (not imported from SUMO) is placed only when its states have as
many links as the exported light. Signals that cannot be placed are named in the notes and run
the network's own program in both runs.

Cost: on the Monaco sample (about 4 MB of exported network) with the defaults (900 s of
demand at 1800 vehicles per hour, 450 trips) the export takes about 2 s, the demand 4 s and
each SUMO run 3 to 5 s: some 13 s per figure (measured with 19 signals, 450 trips).
"""

from __future__ import annotations

import math
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from layers import scenarios
from layers.errors import ParameterError
from layers.queries import read_layer
from layers.signal_plans import get_plan
from routing.signals import sumo
from routing.signals.evaluation import exception_line, simulate
from routing.signals.model import Phase, Program, SignalError
from routing.signals.runs import Run, Setup
from twin.scenarios.figures import Figure

if TYPE_CHECKING:
    import geopandas as gpd

    from twin.city import City

#: Default seed of the demand and of both SUMO runs.
SEED = 42
#: Default period over which trips depart, s (15 minutes: a short peak, and a small cost).
PERIOD_S = 900.0
#: Longest period allowed, s: the figure must stay cheap enough to be asked for on a request.
MAX_PERIOD_S = 3600.0
#: Default insertion rate, vehicles per hour (randomTrips' ``--insertion-rate``).
INSERTION_RATE = 1800.0
#: Highest insertion rate allowed, vehicles per hour.
MAX_INSERTION_RATE = 7200.0
#: Trips must join edges at least this far apart, m (randomTrips' ``--min-distance``): a
#: trip inside one block crosses no signal.
MIN_DISTANCE_M = 300.0

# How restrictive each SUMO signal state is (the least restrictive of a link's candidates
# would let it cross against its approach): red, red-yellow, yellow, off-blinking, minor
# green, major green, off.
_RANK = {"r": 0, "s": 0, "u": 1, "y": 2, "Y": 2, "o": 3, "g": 4, "G": 5, "O": 6}


@dataclass(frozen=True)
class Placement:
    """Where a stored plan's signals landed on an exported network.

    Attributes
    ----------
    programs
        ``(traffic light id, program)`` of each signal placed, the program id being the
        plan's name.
    placed
        Plan signal id -> ``(links by movement, links by approach, links left to yield)``
        on the exported light.
    not_placed
        ``(plan signal id, why)`` of the signals that could not be placed.
    """

    programs: tuple[tuple[str, Program], ...]
    placed: dict[str, tuple[int, int, int]]
    not_placed: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SignalEvaluation:
    """SUMO's runs of a scenario's signal plan and of the network's own programs.

    Attributes
    ----------
    plan
        The stored plan's name.
    version
        The plan's version evaluated.
    seed, period_s, insertion_rate
        The demand's and the runs' seed, the departure period (s) and the insertion rate
        (vehicles per hour).
    config
        The SUMO configuration of the base run (network, routes, begin, end, seed).
    plan_config
        The configuration of the plan's run (the same, with the plan's programs as an
        additional file); None when no signal of the plan could be placed.
    programs
        The plan's programs as placed on the exported network (an additional file), or None.
    base
        The run with the network's own programs.
    planned
        The run with the plan's programs, or None when no signal was placed.
    placement
        Where the plan's signals landed.
    """

    plan: str
    version: int
    seed: int
    period_s: float
    insertion_rate: float
    config: Path
    plan_config: Path | None
    programs: Path | None
    base: Run
    planned: Run | None
    placement: Placement

    def notes(self) -> list[str]:
        """Return what the figures leave out or should be read with.

        Returns
        -------
        list of str
            Signals not placed, teleports (SUMO's way out of gridlock), trips unfinished.
        """
        out = []
        for sid, why in self.placement.not_placed:
            out.append(f"signals: plan {self.plan!r}: signal {sid} is not evaluated ({why})")
        if self.planned is None:
            out.append(
                f"signals: no signal of plan {self.plan!r} could be placed on the scenario's "
                "network: its time loss is not measured"
            )
        for what, run in (("the network's programs", self.base), ("the plan", self.planned)):
            if run is not None and (run.teleports or run.unfinished):
                out.append(
                    f"signals: with {what} SUMO teleported {run.teleports} vehicles and "
                    f"{run.unfinished} trips had not arrived at the end (counted with their "
                    "time loss so far)"
                )
        return out


def plan_name(settings: Mapping[str, Any], *, url: str | None = None) -> str | None:
    """Return a scenario's signal plan's name, checked to name a stored plan.

    Parameters
    ----------
    settings
        The scenario's settings (``signal_plan``: the name of a stored signal plan).
    url
        Database URL; the configured one by default.

    Returns
    -------
    str or None
        The plan's name; None when the scenario names none.

    Raises
    ------
    ParameterError
        If ``settings.signal_plan`` is not a string or names no stored plan (parameter
        ``settings.signal_plan``).
    """
    name = settings.get("signal_plan")
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise ParameterError(
            f"settings.signal_plan: expected a stored signal plan's name, not "
            f"{type(name).__name__}",
            parameter="settings.signal_plan",
        )
    if get_plan(name, url=url) is None:
        raise ParameterError(
            f"settings.signal_plan: there is no stored signal plan named {name!r} "
            "(twin signals optimise ... --save NAME stores one)",
            parameter="settings.signal_plan",
        )
    return name


def check_demand(period_s: Any, insertion_rate: Any, seed: Any) -> tuple[float, float, int]:
    """Return the demand's period, insertion rate and seed, or refuse them.

    Parameters
    ----------
    period_s
        Departure period, s: more than 0, at most :data:`MAX_PERIOD_S`.
    insertion_rate
        Vehicles per hour: more than 0, at most :data:`MAX_INSERTION_RATE`.
    seed
        A non-negative integer.

    Returns
    -------
    tuple
        ``(period_s, insertion_rate, seed)``.

    Raises
    ------
    ParameterError
        Naming ``period_s``, ``insertion_rate`` or ``seed``.
    """
    checked = []
    for name, value, top in (
        ("period_s", period_s, MAX_PERIOD_S),
        ("insertion_rate", insertion_rate, MAX_INSERTION_RATE),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f"{name}: {value!r} is not a number", parameter=name)
        if not math.isfinite(value) or not 0 < value <= top:
            raise ParameterError(
                f"{name}: {value!r} is out of range: more than 0 and at most {top:g}",
                parameter=name,
            )
        checked.append(float(value))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"seed: {seed!r} is not a non-negative integer", parameter="seed")
    return checked[0], checked[1], int(seed)


def signal_rows(
    city: City,
    scenario: str | None,
    *,
    folder: str | Path | None = None,
    seed: int = SEED,
    period_s: float = PERIOD_S,
    insertion_rate: float = INSERTION_RATE,
) -> tuple[list[Figure], list[str]]:
    """Return the ``signals`` figures of a scenario, and their notes.

    Parameters
    ----------
    city
        The city.
    scenario
        A stored scenario's name; None for the base (which names no plan).
    folder
        Where to keep SUMO's files (network, demand, configurations, outputs); a temporary
        folder, removed afterwards, by default.
    seed, period_s, insertion_rate
        The demand (see :func:`evaluate_plan`).

    Returns
    -------
    tuple
        The figures (city-wide, district None): ``signals.time_loss_s`` (mean time loss per
        trip with the plan, s; left out when no signal of the plan could be placed),
        ``signals.trips`` (trips of the demand) and ``signals.base_time_loss_s`` (with the
        network's own programs, s); none, and a note, when the scenario names no plan.

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name.
    ParameterError
        As :func:`plan_name` and :func:`check_demand`.
    SignalError
        If the network cannot be exported, the demand not drawn, or SUMO fails.
    """
    found = None if scenario is None else scenarios.get(scenario, url=city.url)
    name = None if found is None else plan_name(found.settings, url=city.url)
    if found is None or name is None:
        who = "the base" if found is None else f"scenario {found.name!r}"
        return [], [f"signals: {who} names no signal plan (settings.signal_plan): no SUMO run"]
    with _work_folder(folder) as work:
        found_eval = evaluate_plan(
            city,
            found.name,
            work,
            seed=seed,
            period_s=period_s,
            insertion_rate=insertion_rate,
        )
    rows = []
    if found_eval.planned is not None:
        rows.append(
            Figure(
                "signals.time_loss_s",
                None,
                found_eval.planned.time_loss_s,
                "s",
                f"信号配时方案“{name}”下每车次平均时间损失（SUMO）",
                f"Mean time loss per trip under signal plan {name!r} (SUMO)",
            )
        )
    rows += [
        Figure(
            "signals.trips",
            None,
            found_eval.base.vehicles,
            "trip",
            "仿真车次（随机需求）",
            "Trips simulated (random demand)",
        ),
        Figure(
            "signals.base_time_loss_s",
            None,
            found_eval.base.time_loss_s,
            "s",
            "路网原有信号配时下每车次平均时间损失（SUMO）",
            "Mean time loss per trip under the network's own signal programs (SUMO)",
        ),
    ]
    return rows, found_eval.notes()


@contextmanager
def _work_folder(folder: str | Path | None) -> Iterator[Path]:
    if folder is not None:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="twin-signals-") as temporary:
        yield Path(temporary)


def evaluate_plan(
    city: City,
    scenario: str,
    folder: str | Path,
    *,
    seed: int = SEED,
    period_s: float = PERIOD_S,
    insertion_rate: float = INSERTION_RATE,
) -> SignalEvaluation:
    """Run SUMO on a scenario's network with its signal plan and with the network's programs.

    Parameters
    ----------
    city
        The city.
    scenario
        A stored scenario's name; its ``settings["signal_plan"]`` names the plan.
    folder
        Where to write the network (``twin.net.xml``), the demand (``trips.xml``,
        ``routes.rou.xml``), the plan's programs (``plan.add.xml``), the configurations
        (``base.sumocfg``, ``plan.sumocfg``) and SUMO's outputs.
    seed
        Seed of randomTrips and of both SUMO runs.
    period_s
        Trips depart over ``[0, period_s)`` s; the runs end at ``2 * period_s`` (trips still
        running then are counted with their time loss so far).
    insertion_rate
        Vehicles per hour.

    Returns
    -------
    SignalEvaluation
        Both runs, the files, and where the plan's signals landed.

    Raises
    ------
    ScenarioNotFoundError
        If no scenario has that name.
    ParameterError
        If the scenario names no plan or an unknown one (``settings.signal_plan``), or the
        demand is out of range.
    SignalError
        If the network cannot be exported, randomTrips fails or routes no trip, or SUMO fails.
    """
    period, rate, seed = check_demand(period_s, insertion_rate, seed)
    work = Path(folder)
    work.mkdir(parents=True, exist_ok=True)
    with scenarios.using(scenario, url=city.url) as found:
        assert found is not None
        name = plan_name(found.settings, url=city.url)
        if name is None:
            raise ParameterError(
                f"settings.signal_plan: scenario {found.name!r} names no signal plan",
                parameter="settings.signal_plan",
            )
        record = get_plan(name, url=city.url)
        assert record is not None
        net_path = city.export_sumo(work, name="twin")
        layer = read_layer("signals", url=city.url)
    routes = random_demand(net_path, work, seed=seed, period_s=period, insertion_rate=rate)
    net = sumo.read_net(net_path)
    placement = place_plan(record, layer, net)
    end = 2.0 * period
    config = write_config(work / "base.sumocfg", net_path, routes, (), end=end, seed=seed)
    base = _run(config, "base", seed, end, work)
    programs = plan_config = planned = None
    if placement.programs:
        programs = sumo.write_additional(placement.programs, work / "plan.add.xml")
        plan_config = write_config(
            work / "plan.sumocfg", net_path, routes, (programs,), end=end, seed=seed
        )
        planned = _run(plan_config, "plan", seed, end, work)
    return SignalEvaluation(
        name,
        int(record["version"]),
        seed,
        period,
        rate,
        config,
        plan_config,
        programs,
        base,
        planned,
        placement,
    )


def _run(config: Path, variant: str, seed: int, end: float, work: Path) -> Run:
    """Run one configuration with the programs it names (the project's own runner)."""
    loaded = sumo.read_scenario(config)
    return simulate(
        loaded,
        Setup(loaded.net, loaded.programs),
        variant=variant,
        seed=seed,
        end=end,
        workdir=work,
    )


def random_demand(
    net: Path, folder: Path, *, seed: int, period_s: float, insertion_rate: float
) -> Path:
    """Draw random trips on a network with SUMO's ``randomTrips.py`` and route them.

    Parameters
    ----------
    net
        The network.
    folder
        Where to write ``trips.xml`` and ``routes.rou.xml``.
    seed
        randomTrips' ``--seed``.
    period_s
        Departures over ``[0, period_s)`` s (``-b 0 -e period_s``).
    insertion_rate
        Vehicles per hour (``--insertion-rate``).

    Returns
    -------
    pathlib.Path
        The route file (duarouter's, through randomTrips' ``--route-file``; trips no route
        joins are dropped by ``--validate``).

    Raises
    ------
    SignalError
        If randomTrips fails or routes no trip.
    """
    trips, routes = folder / "trips.xml", folder / "routes.rou.xml"
    cmd = [
        sys.executable,
        sumo.sumo_tool("randomTrips.py"),
        "-n",
        str(net),
        "-o",
        str(trips),
        "-r",
        str(routes),
        "--seed",
        str(seed),
        "-b",
        "0",
        "-e",
        f"{period_s:g}",
        "--insertion-rate",
        f"{insertion_rate:g}",
        "--min-distance",
        f"{MIN_DISTANCE_M:g}",
        "--validate",
        "--vclass",
        "passenger",
    ]
    done = sumo.run_process(
        cmd, timeout_s=sumo.tool_timeout([net]), what="SUMO's randomTrips.py", parameter="roads"
    )
    if done.returncode != 0 or not routes.is_file():
        why = exception_line(done.stderr or done.stdout) or f"exit status {done.returncode}"
        raise SignalError(f"randomTrips.py failed on the network: {why}", parameter="roads")
    if not any(el.tag == "vehicle" for _, el in ET.iterparse(routes, events=("start",))):
        raise SignalError(
            "randomTrips.py routed no trip on the scenario's network (too few roads joined)",
            parameter="roads",
        )
    return routes


def write_config(
    path: Path,
    net: Path,
    routes: Path,
    additional: Sequence[Path],
    *,
    end: float,
    seed: int,
) -> Path:
    """Write a SUMO configuration: network, routes, additional files, ``[0, end]``, seed.

    Parameters
    ----------
    path
        The ``.sumocfg`` to write.
    net, routes
        The network and route files.
    additional
        Additional files (the plan's programs), in loading order.
    end
        End of the simulation, s.
    seed
        SUMO's ``--seed``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    root = ET.Element("configuration")
    files = ET.SubElement(root, "input")
    ET.SubElement(files, "net-file", value=net.name)
    ET.SubElement(files, "route-files", value=routes.name)
    if additional:
        ET.SubElement(files, "additional-files", value=",".join(p.name for p in additional))
    time = ET.SubElement(root, "time")
    ET.SubElement(time, "begin", value="0")
    ET.SubElement(time, "end", value=f"{end:g}")
    ET.SubElement(ET.SubElement(root, "random_number"), "seed", value=str(seed))
    ET.indent(root, space="    ")
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


def place_plan(record: Mapping[str, Any], signals: gpd.GeoDataFrame, net: Any) -> Placement:
    """Place a stored plan's signal programs on an exported network's traffic lights.

    Parameters
    ----------
    record
        The stored plan (:func:`layers.signal_plans.get_plan`): ``name`` and
        ``plan["signals"]`` (``signal``, ``phases`` of ``duration_s`` and ``state``,
        ``offset_s``).
    signals
        The ``signals`` layer in the state the network was exported from (``id``,
        ``node_id``, ``props`` with ``links`` ``[index, from edge, to edge, lane, direction,
        passenger]`` and ``sumo.scenario`` for a signal imported from SUMO).
    net
        The exported network (``sumolib.net.Net`` with its programs): the light of a signal
        is the one at the junction named by its ``node_id``
        (:func:`routing.signals.sumo.network_to_sumo`).

    Returns
    -------
    Placement
        The programs on the exported lights (link by link, see the module), and the signals
        not placed with the reason.
    """
    name = str(record["name"])
    by_id = {str(i): row for i, row in zip(signals["id"], signals.to_dict("records"), strict=True)}
    programs: list[tuple[str, Program]] = []
    placed: dict[str, tuple[int, int, int]] = {}
    missed: list[tuple[str, str]] = []
    for timing in record["plan"].get("signals") or []:
        sid = str(timing["signal"])
        row = by_id.get(sid)
        if row is None:
            missed.append((sid, "not in the scenario's signals layer"))
            continue
        node = row.get("node_id")
        if node is None or pd.isna(node):
            missed.append((sid, "it stands at no road node"))
            continue
        try:
            tls = net.getTLS(str(int(node)))
        except KeyError:
            missed.append((sid, f"the exported network has no traffic light at node {int(node)}"))
            continue
        states = [str(p["state"]) for p in timing["phases"]]
        found = _place_states(states, row.get("props") or {}, tls.getConnections())
        if isinstance(found, str):
            missed.append((sid, found))
            continue
        mapped, counts = found
        phases = tuple(
            Phase(float(p["duration_s"]), state)
            for p, state in zip(timing["phases"], mapped, strict=True)
        )
        programs.append((tls.getID(), Program(name, phases, float(timing.get("offset_s") or 0))))
        placed[sid] = counts
    return Placement(tuple(programs), placed, tuple(missed))


def _place_states(
    states: Sequence[str], props: Mapping[str, Any], connections: Sequence[Any]
) -> tuple[list[str], tuple[int, int, int]] | str:
    """Map a plan signal's phase states onto an exported light's links (see the module).

    Returns the mapped states and ``(by movement, by approach, yielding)`` link counts, or
    why the signal cannot be placed.
    """
    if not states or not connections:
        return "it has no phases" if not states else "the exported light controls no link"
    exported: dict[int, tuple[str, int, str]] = {}
    for in_lane, out_lane, index in connections:
        exported.setdefault(
            int(index), (in_lane.getEdge().getID(), in_lane.getIndex(), out_lane.getEdge().getID())
        )
    n = max(exported) + 1
    links = props.get("links") or []
    if not links:
        if all(len(s) == n for s in states):
            return list(states), (n, 0, 0)
        return (
            f"its phases have {len(states[0])} links, the exported light {n}, and it stores "
            "no links to match them by"
        )
    sumo_scenario = (props.get("sumo") or {}).get("scenario")
    prefix = f"{sumo_scenario}:" if sumo_scenario else ""
    width = min(len(s) for s in states)
    movements: dict[tuple[str, str], list[tuple[int, int]]] = {}
    approaches: dict[str, list[int]] = {}
    for link in links:
        index, lane = int(link[0]), int(link[3])
        if index >= width:
            continue
        source, target = f"{prefix}{link[1]}", f"{prefix}{link[2]}"
        movements.setdefault((source, target), []).append((lane, index))
        approaches.setdefault(source, []).append(index)
    columns: list[list[int]] = []  # per exported link: the plan's links it follows
    by_movement = by_approach = yielding = 0
    for j in range(n):
        source, lane, target = exported.get(j, ("", 0, ""))
        same = movements.get((source, target))
        if same:
            columns.append([min(same, key=lambda c: (c[0] != lane, c[1]))[1]])
            by_movement += 1
        elif source in approaches:
            columns.append(approaches[source])
            by_approach += 1
        else:
            columns.append([])
            yielding += 1
    if not by_movement and not by_approach:
        return "no movement of the exported light is one the plan controls"
    mapped = [
        "".join(
            min((state[i] for i in column), key=lambda c: _RANK.get(c, 0)) if column else "o"
            for column in columns
        )
        for state in states
    ]
    return mapped, (by_movement, by_approach, yielding)
