"""The SUMO bridge: scenarios, networks, signal programs and demand in and out of SUMO's files.

SUMO is the proving ground of every plan: a scenario (``.sumocfg``) names a network
(``.net.xml``), route files (the demand) and additional files (among them signal programs,
``tlLogic``). This module reads them into the signal model, counts approach flows from the
routes, writes plans back as SUMO additional files, and finds SUMO's programs and tools in the
``eclipse-sumo`` package.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import importlib.util
import math
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import geopandas as gpd
import pandas as pd
import shapely
import sumolib

from layers.defaults import lanes_per_direction, road_speed_kmh
from routing.signals.model import Link, Phase, Program, Signal, SignalError, SignalTiming

# Passenger-car equivalents by vehicle type, as SUMO's tlsCycleAdaptation.py counts them.
PCE = {"bicycle": 0.2, "moped": 0.5, "motorcycle": 0.5, "truck": 3.5, "trailer": 3.5}
PCE |= {"bus": 3.5, "coach": 3.5}
_SKIP_NODE_TYPES = ("rail_crossing", "rail_signal")


def sumo_home() -> Path:
    """Return SUMO's home: the ``eclipse-sumo`` package (binaries in ``bin/``, ``tools/``).

    Found without importing the package: its ``__init__`` points ``PROJ_LIB`` at SUMO's own
    PROJ database for the whole process, which breaks GDAL and pyproj beside it.
    """
    spec = importlib.util.find_spec("sumo")
    if spec is None or not spec.submodule_search_locations:
        raise SignalError("SUMO is not installed (pip install eclipse-sumo)", parameter="sumo")
    return Path(next(iter(spec.submodule_search_locations)))


def sumo_binary(name: str = "sumo") -> str:
    """Return the path of one of SUMO's programs (``sumo``, ``netconvert``, ``duarouter`` ...)."""
    home = sumo_home()
    os.environ.setdefault("SUMO_HOME", str(home))  # SUMO finds its schemas and data by it
    path = home / "bin" / name
    if not path.exists():
        raise SignalError(f"SUMO's {name} is not installed ({path})", parameter="sumo")
    return str(path)


def sumo_tool(name: str) -> str:
    """Return the path of one of SUMO's Python tools (``tlsCycleAdaptation.py`` ...)."""
    home = sumo_home()
    os.environ.setdefault("SUMO_HOME", str(home))
    path = home / "tools" / name
    if not path.exists():
        raise SignalError(f"SUMO's tool {name} is not installed ({path})", parameter="sumo")
    return str(path)


@dataclass(frozen=True)
class Scenario:
    """A SUMO scenario read from its configuration file.

    Attributes
    ----------
    config
        The ``.sumocfg`` file.
    net
        The network file.
    routes
        Route files (vehicles, flows).
    additional
        Additional files other than signal programs.
    programs
        Additional files holding signal programs (``tlLogic``): the scenario's own plans.
    begin, end
        Simulation period from the configuration, if set.
    """

    config: Path
    net: Path
    routes: tuple[Path, ...]
    additional: tuple[Path, ...]
    programs: tuple[Path, ...]
    begin: float | None = None
    end: float | None = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The scenario's name: its folder, or the configuration's stem."""
        return self.config.parent.name or self.config.stem

    @property
    def demand_files(self) -> tuple[Path, ...]:
        """Every file that may hold vehicles: route files and additional route files."""
        extra = tuple(p for p in self.additional if _is_routes(p))
        return self.routes + extra

    def read_net(self) -> Any:
        """Return the network (``sumolib.net.Net``, with its default programs), read once."""
        if "net" not in self._cache:
            self._cache["net"] = read_net(self.net)
        return self._cache["net"]

    def read_trips(self) -> list[Trip]:
        """Return the vehicles of every demand file (see :func:`read_trips`), read once.

        Trips and flows without a route are first routed as SUMO would (see
        :func:`route_demand`; into a temporary folder unless :meth:`routed_files` was called
        with a work folder before).
        """
        if "trips" not in self._cache:
            if "routed" in self._cache or not unrouted(self.demand_files):
                self._cache["trips"] = read_trips(self.routed_files())
            else:
                import tempfile

                with tempfile.TemporaryDirectory(prefix="twin-duarouter-") as tmp:
                    self._cache["trips"] = read_trips(route_demand(self, Path(tmp)))
                self._cache.pop("routed", None)
        return self._cache["trips"]

    def routed_files(self, workdir: Path | None = None) -> tuple[Path, ...]:
        """Return the demand with every vehicle on a route: the files SUMO's tools can count.

        Parameters
        ----------
        workdir
            Folder for ``duarouter``'s output when the demand has trips or flows without a
            route (required then, unless they were routed before).

        Returns
        -------
        tuple of pathlib.Path
            The demand files as they are, or ``duarouter``'s routes of all of them.

        Raises
        ------
        SignalError
            When routing is needed and no work folder is given, or ``duarouter`` fails.
        """
        routed = self._cache.get("routed")
        if routed is not None and all(p.is_file() for p in routed):
            return tuple(routed)
        if not unrouted(self.demand_files):
            return self.demand_files
        if workdir is None:
            raise SignalError(
                f"scenario {self.config.name} has trips without routes: a work folder is "
                "needed to route them",
                parameter="workdir",
            )
        return route_demand(self, workdir)

    def window(self, end: float | None = None) -> tuple[float, float | None]:
        """Return the simulated period: the configuration's begin and end, ``end`` the earlier.

        Parameters
        ----------
        end
            Another horizon, s (e.g. ``--end`` of a run); the earlier of the two applies.

        Returns
        -------
        tuple
            Begin (0 when not set) and end (None when neither is set), s.
        """
        ends = [e for e in (self.end, end) if e is not None]
        return (self.begin or 0.0), (min(ends) if ends else None)

    def peak_hour(self, end: float | None = None) -> float:
        """Return the start of the busiest hour of departures within the simulated period, s.

        See :func:`peak_hour`; the period is :meth:`window`.
        """
        begin, stop = self.window(end)
        return peak_hour(self.read_trips(), begin=begin, end=stop, vehicle_class=True)


def log_tail(log: Path, lines: int = 3) -> list[str]:
    """Return the last lines of a SUMO log or console output (what went wrong), if written.

    Parameters
    ----------
    log
        SUMO's ``--log`` file or a captured console output.
    lines
        How many lines, at most.

    Returns
    -------
    list of str
        The last ``lines`` lines, without SUMO's warning that ``SUMO_HOME`` is not set; empty
        when the file was never written or cannot be read.
    """
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    kept = [line for line in text.strip().splitlines() if "SUMO_HOME" not in line]
    return kept[-lines:]


def run_command(
    scenario: Scenario,
    net: Path,
    additional: Sequence[Path],
    *,
    seed: int,
    outputs: Path,
    end: float | None = None,
    options: Sequence[str] = (),
) -> list[str]:
    """Return the ``sumo`` command that runs a scenario with another network and additionals.

    The scenario's own configuration applies (its processing options); its output files are
    redirected to ``outputs`` + ``.tripinfo.xml``/``.stats.xml``/``.log`` (never beside the
    scenario), unfinished trips included, and every other output its configuration asks for
    goes to ``outputs`` + ``.<its file name>`` (see :func:`config_outputs`). So are the
    outputs its additional files declare (detectors, ...): such a file is loaded from a copy
    beside ``outputs`` that writes to ``outputs`` + ``.<file name>``, never into the
    scenario's folder (which may be read-only, and which runs in parallel would share).

    Parameters
    ----------
    scenario
        The scenario.
    net
        The network to run.
    additional
        Additional files, in loading order.
    seed
        Random seed.
    outputs
        Path stem of the output files.
    end
        Simulation horizon, s (the scenario's own by default).
    options
        Further SUMO options (e.g. ``["--fcd-output", path]``), appended.

    Returns
    -------
    list of str
        The command.
    """
    loaded = [redirect_outputs(p, outputs) for p in additional]
    if not loaded:
        # "-a" replaces the configuration's additional files (its programs among them); SUMO
        # refuses an empty list, so an empty file stands for none
        empty = Path(f"{outputs}.none.add.xml")
        empty.write_text("<additional/>\n", encoding="utf-8")
        loaded = [empty]
    cmd = [
        sumo_binary("sumo"),
        "-c",
        str(scenario.config),
        "-n",
        str(net),
        "-a",
        ",".join(str(p) for p in loaded),
        *config_outputs(scenario.config, outputs),
        "--seed",
        str(seed),
        "--tripinfo-output",
        f"{outputs}.tripinfo.xml",
        "--tripinfo-output.write-unfinished",
        "--statistic-output",
        f"{outputs}.stats.xml",
        "--log",
        f"{outputs}.log",
        "--no-step-log",
        "--no-warnings",
        "--duration-log.disable",
    ]
    if end is not None:
        cmd += ["--end", str(end)]
    return [*cmd, *options]


# Options of a SUMO configuration that name files SUMO writes (sumo --save-template: the
# FILE options of the output and report sections, and the devices' outputs); the three the
# run sets itself (tripinfo, statistics, log) are left out.
_CONFIG_OUTPUTS = frozenset(
    {
        "netstate-dump",
        "netstate",
        "ndump",
        "summary",
        "tripinfo",
        "vehroutes",
        "emission-output",
        "battery-output",
        "elechybrid-output",
        "chargingstations-output",
        "overheadwiresegments-output",
        "substations-output",
        "fcd-output",
        "full-output",
        "queue-output",
        "vtk-output",
        "amitran-output",
        "summary-output",
        "person-summary-output",
        "vehroute-output",
        "personinfo-output",
        "link-output",
        "railsignal-block-output",
        "railsignal-vehicle-output",
        "bt-output",
        "lanechange-output",
        "stop-output",
        "collision-output",
        "edgedata-output",
        "lanedata-output",
        "deadlock-output",
        "save-state.files",
        "save-state.prefix",
        "message-log",
        "error-log",
        "device.rerouting.output",
        "device.ssm.file",
        "device.taxi.dispatch-algorithm.output",
        "device.taxi.idle-algorithm.output",
        "device.toc.file",
    }
)
_SET_BY_RUN = frozenset(
    {"tripinfo-output", "statistic-output", "log", "log-file", "l", "output-prefix"}
)


def config_options(config: str | os.PathLike[str]) -> dict[str, str]:
    """Return the options a SUMO configuration sets (name -> value, every section).

    Parameters
    ----------
    config
        The ``.sumocfg`` file.

    Returns
    -------
    dict
        Option values as written (``value`` attributes).
    """
    root = ET.parse(config).getroot()
    return {
        str(option.tag): option.get("value", "")
        for section in root
        for option in section
        if isinstance(option.tag, str) and option.get("value") is not None
    }


def config_outputs(config: str | os.PathLike[str], outputs: Path) -> list[str]:
    """Return SUMO options that send a configuration's own output files beside ``outputs``.

    Every output the configuration declares (``<output>``: summary, fcd, emissions ...;
    ``<report>``: message and error logs; device outputs) is written to ``outputs`` +
    ``.<its file name>`` instead of beside the configuration, whose folder may be read-only
    and which parallel runs would share; an ``output-prefix`` is cleared (the run's paths are
    absolute).

    Parameters
    ----------
    config
        The ``.sumocfg`` file.
    outputs
        Path stem of the run's output files.

    Returns
    -------
    list of str
        Command-line options (empty when the configuration writes nothing else).
    """
    options: list[str] = []
    for name, value in config_options(config).items():
        if name == "output-prefix" and value:
            options += ["--output-prefix", ""]
            continue
        if name in _SET_BY_RUN or name not in _CONFIG_OUTPUTS or not value.strip():
            continue
        files = [f"{outputs}.{Path(v.strip()).name}" for v in value.split(",") if v.strip()]
        options += [f"--{name}", ",".join(files)]
    return options


# Elements of additional files that write an output file, and the attribute naming it.
_OUTPUTS = {
    tag: "file"
    for tag in (
        "e1Detector",
        "inductionLoop",
        "instantInductionLoop",
        "e2Detector",
        "laneAreaDetector",
        "e3Detector",
        "entryExitDetector",
        "edgeData",
        "laneData",
        "edgeRelation",
        "tazRelation",
        "routeProbe",
        "vTypeProbe",
    )
} | {"calibrator": "output", "timedEvent": "dest"}


def redirect_outputs(path: Path, outputs: Path) -> Path:
    """Return an additional file that writes its outputs beside ``outputs``, not beside itself.

    A file declaring no output (programs, vehicle types, stops ...) and route files are
    returned as they are; otherwise a copy ``outputs`` + ``.<name>`` is written whose outputs
    go to ``outputs`` + ``.<their file name>``. A file the run wrote itself, already named
    ``outputs`` + ``.<name>`` (``adaptive-1.detectors.add.xml``), is rewritten in place
    rather than copied to a name that repeats the stem.

    Parameters
    ----------
    path
        The additional file.
    outputs
        Path stem of the run's output files.

    Returns
    -------
    pathlib.Path
        The file to load.
    """
    if _is_routes(path):
        return path
    with _open_xml(path) as stream:
        tree = ET.parse(stream)
    changed = False
    for el in tree.getroot().iter():
        attribute = _OUTPUTS.get(str(el.tag))
        target = el.get(attribute) if attribute else None
        if attribute and target:
            el.set(attribute, f"{outputs}.{Path(target).name}")
            changed = True
    if not changed:
        return path
    name = path.name.removesuffix(".gz")
    if path.parent == outputs.parent and name.startswith(f"{outputs.name}."):
        copy = path.with_name(name)  # the run's own file (detectors ...): rewritten in place
    else:
        copy = Path(f"{outputs}.{name}")
    tree.write(copy, encoding="UTF-8", xml_declaration=True)
    return copy


def run_timeout(scenario: Scenario, end: float | None = None) -> float:
    """Return how long one SUMO run of a scenario may take before it counts as hung, s.

    Two minutes to start, then one second per simulated second: SUMO runs a city's scenario
    far faster than real time (Bologna's acosta, 600 s of traffic, in about 3 s), so a run
    slower than real time has hung. The horizon is ``end``, else the configuration's end,
    else the last departure of the demand plus an hour for the last vehicles to arrive.

    Parameters
    ----------
    scenario
        The scenario.
    end
        The run's horizon, s.

    Returns
    -------
    float
        Seconds of wall-clock time.
    """
    horizon = end if end is not None else scenario.end
    if horizon is None:
        horizon = max((t.depart for t in scenario.read_trips()), default=0.0) + 3600.0
    return 120.0 + max(horizon - (scenario.begin or 0.0), 0.0)


def tool_timeout(inputs: Iterable[str | os.PathLike[str]]) -> float:
    """Return how long one of SUMO's tools or ``netconvert`` may take on its inputs, s.

    Two minutes, plus a minute per megabyte of input files (SUMO's tools read Bologna's
    acosta, 2 MB of network and demand, in a few seconds).

    Parameters
    ----------
    inputs
        The files the tool reads.

    Returns
    -------
    float
        Seconds of wall-clock time.
    """
    size = sum(Path(p).stat().st_size for p in inputs if Path(p).is_file())
    return 120.0 + 60.0 * size / 1e6


def run_process(
    cmd: Sequence[str], *, timeout_s: float, what: str, parameter: str = "scenario"
) -> subprocess.CompletedProcess[str]:
    """Run one of SUMO's programs or tools, its output captured, for at most ``timeout_s``.

    Parameters
    ----------
    cmd
        The command.
    timeout_s
        Seconds after which the process is killed.
    what
        What runs, for the message when it is stopped (``"SUMO's netconvert"`` ...).
    parameter
        The parameter an error names.

    Returns
    -------
    subprocess.CompletedProcess
        The finished process (the caller checks its return code).

    Raises
    ------
    SignalError
        When the process has not finished within ``timeout_s`` (it is killed).
    """
    try:
        return subprocess.run(
            list(cmd), capture_output=True, text=True, check=False, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise SignalError(
            f"{what} did not finish within {round(timeout_s, 1):g} s and was stopped",
            parameter=parameter,
        ) from exc


def read_scenario(config: str | os.PathLike[str]) -> Scenario:
    """Read a SUMO scenario's configuration: which network, demand and programs it runs.

    Parameters
    ----------
    config
        The ``.sumocfg`` file.

    Returns
    -------
    Scenario
        The scenario, every file checked to exist.

    Raises
    ------
    SignalError
        When the file is missing or is not a SUMO configuration, names no network, names no
        demand, or names a file that does not exist.
    """
    path = Path(config)
    if not path.is_file():
        raise SignalError(f"scenario {path} does not exist", parameter="scenario")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise SignalError(f"scenario {path} is not XML: {exc}", parameter="scenario") from exc
    if root.tag not in ("configuration", "sumoConfiguration"):
        raise SignalError(
            f"scenario {path} is not a SUMO configuration (root <{root.tag}>)",
            parameter="scenario",
        )

    def values(option: str) -> list[Path]:
        found = root.find(f".//{option}")
        if found is None or not found.get("value"):
            return []
        files = [path.parent / v.strip() for v in found.get("value", "").split(",") if v.strip()]
        for f in files:
            if not f.is_file():
                raise SignalError(
                    f"scenario {path}: {option} {f.name} does not exist", parameter="scenario"
                )
        return files

    nets = values("net-file")
    if not nets:
        raise SignalError(f"scenario {path} names no network (net-file)", parameter="scenario")
    routes = values("route-files")
    additional = values("additional-files")
    programs = tuple(f for f in additional if _holds(f, "tlLogic"))
    others = tuple(f for f in additional if f not in programs)
    if not routes and not any(_is_routes(f) for f in others):
        raise SignalError(f"scenario {path} names no demand (route-files)", parameter="scenario")

    def number(option: str) -> float | None:
        found = root.find(f".//{option}")
        return None if found is None else float(found.get("value", "0"))

    return Scenario(
        path.resolve(),
        nets[0].resolve(),
        tuple(p.resolve() for p in routes),
        tuple(p.resolve() for p in others),
        tuple(p.resolve() for p in programs),
        number("begin"),
        number("end"),
    )


def _holds(path: Path, tag: str) -> bool:
    """Whether an XML file has an element of this tag (read as a stream, stops at the first)."""
    with _open_xml(path) as stream:
        return any(element.tag == tag for _, element in ET.iterparse(stream, events=("start",)))


def _open_xml(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open an XML file for reading, gzipped or not (SUMO reads both)."""
    p = Path(path)
    with p.open("rb") as head:
        gzipped = head.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(p, "rb")  # type: ignore[return-value]
    return p.open("rb")


def iter_xml(
    path: str | os.PathLike[str],
    *,
    events: tuple[Literal["start", "end"], ...] = ("end",),
    what: str = "route-files",
    parameter: str = "routes",
) -> Iterator[tuple[str, ET.Element]]:
    """Stream an XML file's elements (gzipped or not), refusing a file that is not XML.

    Parameters
    ----------
    path
        The file.
    events
        ``xml.etree.ElementTree.iterparse`` events.
    what
        What the file is, named in the error (e.g. SUMO's option ``route-files``).
    parameter
        The parameter the error names.

    Yields
    ------
    tuple of str and xml.etree.ElementTree.Element
        Event and element, as ``iterparse`` gives them.

    Raises
    ------
    SignalError
        When the file does not exist, is empty, or is not readable (gzipped) XML.
    """
    p = Path(path)
    try:
        with _open_xml(p) as stream:
            yield from ET.iterparse(stream, events=events)
    except FileNotFoundError as exc:
        raise SignalError(f"{what} {p} does not exist", parameter=parameter) from exc
    except (ET.ParseError, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise SignalError(f"{what} {p} is not readable XML ({exc})", parameter=parameter) from exc


def _is_routes(path: Path) -> bool:
    """Whether a file is named as a route file (``.rou.xml``, gzipped or not)."""
    return path.name.endswith((".rou.xml", ".rou.xml.gz"))


def read_net(path: str | os.PathLike[str]) -> Any:
    """Read a SUMO network with its signal programs.

    Parameters
    ----------
    path
        The ``.net.xml`` file.

    Returns
    -------
    sumolib.net.Net
        The network.

    Raises
    ------
    SignalError
        When the file is missing or is not a SUMO network.
    """
    p = Path(path)
    if not p.is_file():
        raise SignalError(f"network {p} does not exist", parameter="net")
    try:
        return sumolib.net.readNet(str(p), withPrograms=True, withPedestrianConnections=True)
    except Exception as exc:  # sumolib raises whatever its SAX parser raises
        raise SignalError(f"network {p} cannot be read: {exc}", parameter="net") from exc


def read_programs(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Program]:
    """Read the signal programs (``tlLogic``) of additional files; the last one per signal wins.

    Parameters
    ----------
    paths
        Additional files.

    Returns
    -------
    dict
        Program by signal id.
    """
    programs: dict[str, Program] = {}
    for path in paths:
        with _open_xml(path) as stream:
            for _, el in ET.iterparse(stream, events=("end",)):
                if el.tag == "tlLogic":
                    programs[el.get("id", "")] = _program(el)
                    el.clear()
    return programs


def _program(el: ET.Element) -> Program:
    phases = tuple(
        Phase(float(ph.get("duration", "0")), ph.get("state", ""), ph.get("name"))
        for ph in el.iter("phase")
    )
    return Program(
        el.get("programID", "0"),
        phases,
        float(el.get("offset", "0")),
        actuated=el.get("type", "static") != "static",
    )


def signals_of(net: Any, programs: Mapping[str, Program] | None = None) -> dict[str, Signal]:
    """Build the signals of a network: links, active links and the program to time.

    Parameters
    ----------
    net
        A network from :func:`read_net`.
    programs
        Programs that replace the network's own (a scenario's plans); signals not named keep
        the network's first program.

    Returns
    -------
    dict
        Signal by id, in the network's order.
    """
    programs = programs or {}
    out: dict[str, Signal] = {}
    for tls in net.getTrafficLights():
        own = tls.getPrograms()
        if tls.getID() in programs:
            program = programs[tls.getID()]
        elif own:
            first = next(iter(own.values()))
            program = Program(
                first._id,
                tuple(Phase(float(p.duration), p.state, p.name or None) for p in first.getPhases()),
                float(first._offset),
                actuated=first.getType() != "static",
            )
        else:
            continue
        links: dict[int, Link] = {}
        for in_lane, out_lane, index in sorted(tls.getConnections(), key=lambda c: c[2]):
            if index in links:
                continue
            conn = next(
                (
                    c
                    for c in in_lane.getOutgoing()
                    if c.getToLane() is out_lane and c.getTLLinkIndex() == index
                ),
                None,
            )
            links[index] = Link(
                index,
                in_lane.getEdge().getID(),
                out_lane.getEdge().getID(),
                in_lane.getIndex(),
                conn.getDirection() if conn is not None else "s",
                in_lane.allows("passenger"),
            )
        active = frozenset(
            c.getTLLinkIndex()
            for in_lane, _, _ in tls.getConnections()
            for to_edge, conns in in_lane.getEdge().getOutgoing().items()
            for c in conns
            if c.getTLLinkIndex() >= 0
            and to_edge.getFunction() not in ("crossing", "walkingarea", "internal")
        )
        lon, lat = _position(net, tls)
        out[tls.getID()] = Signal(tls.getID(), links, program, active, lon, lat)
    return out


def _position(net: Any, tls: Any) -> tuple[float | None, float | None]:
    """WGS84 position of a signal: the mean of its controlled junctions' positions."""
    nodes = {lane.getEdge().getToNode() for lane, _, _ in tls.getConnections()}
    if not nodes or not net.hasGeoProj():
        return None, None
    x = sum(n.getCoord()[0] for n in nodes) / len(nodes)
    y = sum(n.getCoord()[1] for n in nodes) / len(nodes)
    lon, lat = net.convertXY2LonLat(x, y)
    return float(lon), float(lat)


# --- demand ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trip:
    """One vehicle of the demand: departure, type, the edges it drives and its class."""

    depart: float
    type: str
    edges: tuple[str, ...]
    vclass: str | None = None

    def pce(self, *, vehicle_class: bool = False) -> float:
        """Return the vehicle's passenger-car equivalents (:data:`PCE`).

        Parameters
        ----------
        vehicle_class
            Look the type's SUMO vehicle class up (a ``vType id="LKW" vClass="truck"`` counts
            as a truck); otherwise its type id, as ``tlsCycleAdaptation.py`` does.

        Returns
        -------
        float
            Passenger-car units.
        """
        if vehicle_class and self.vclass:
            return PCE.get(self.vclass, 1.0)
        return PCE.get(self.type, 1.0)


# Demand elements that SUMO routes at insertion when they carry no route.
_TRIP_ENDS = ("from", "fromJunction", "fromTaz", "fromXY", "fromLonLat")
# Options of a configuration that duarouter shares with sumo (routing, repair).
_ROUTING_OPTIONS = (
    "routing-algorithm",
    "weights.random-factor",
    "weights.priority-factor",
    "weights.minor-penalty",
    "weights.tls-penalty",
    "weights.turnaround-penalty",
    "junction-taz",
    "repair",
    "repair.from",
    "repair.to",
    "remove-loops",
    "mapmatch.distance",
    "mapmatch.junctions",
    "seed",
)


def read_trips(paths: Iterable[str | os.PathLike[str]]) -> list[Trip]:
    """Read the vehicles of route files (``vehicle`` with a route, ``flow`` with a route).

    Files may be gzipped. Vehicles whose departure is ``triggered`` and trips or flows
    without a route are left out, as SUMO's tools leave them out (route them first:
    :func:`route_demand`). Each vehicle's class comes from its ``vType``, wherever in the
    files it is defined.

    Parameters
    ----------
    paths
        Route files.

    Returns
    -------
    list of Trip
        The vehicles; a flow gives one per vehicle it inserts.

    Raises
    ------
    SignalError
        When a file does not exist or is not readable XML (parameter ``routes``).
    """
    trips: list[Trip] = []
    classes: dict[str, str] = {}
    for path in paths:
        routes: dict[str, tuple[str, ...]] = {}
        for _, el in iter_xml(path):
            if el.tag == "vType" and el.get("id"):
                classes[el.get("id", "")] = el.get("vClass", "passenger")
            elif el.tag == "route" and el.get("id"):
                routes[el.get("id", "")] = tuple(el.get("edges", "").split())
            elif el.tag in ("vehicle", "flow"):
                inner = el.find("route")
                if inner is not None:
                    edges = tuple(inner.get("edges", "").split())
                else:
                    edges = routes.get(el.get("route", ""), ())
                if edges:
                    trips.extend(_departures(el, edges))
                el.clear()
            elif el.tag == "trip":
                el.clear()
    default = {"DEFAULT_VEHTYPE": "passenger", "DEFAULT_BIKETYPE": "bicycle"}
    return [
        Trip(t.depart, t.type, t.edges, classes.get(t.type, default.get(t.type, t.type)))
        for t in trips
    ]


def unrouted(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Count the trips and flows of route files that have no route (SUMO routes them).

    Parameters
    ----------
    paths
        Route files (gzipped or not).

    Returns
    -------
    int
        ``trip`` elements, and ``flow``/``vehicle`` elements with ``from``/``fromJunction``/
        ``fromTaz``... and no route.

    Raises
    ------
    SignalError
        When a file does not exist or is not readable XML (parameter ``routes``).
    """
    count = 0
    for path in paths:
        for _, el in iter_xml(path):
            if el.tag == "trip" or (
                el.tag in ("flow", "vehicle")
                and el.get("route") is None
                and el.find("route") is None
                and any(el.get(k) is not None for k in _TRIP_ENDS)
            ):
                count += 1
            if el.tag in ("trip", "flow", "vehicle"):
                el.clear()
    return count


def route_demand(scenario: Scenario, workdir: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Route a scenario's trips and flows as SUMO would, with SUMO's ``duarouter``, once.

    ``duarouter`` reads the scenario's network, all its demand files (their vehicle types
    among them) and its additional files (stops, TAZ), with the routing options its
    configuration sets (``routing-algorithm``, ``weights.*``, ``junction-taz``, ``repair``,
    ``seed`` ...) and ``--ignore-errors`` (a trip that cannot be routed is dropped, as SUMO
    drops it at insertion); its output, every vehicle with a route, is written into
    ``workdir`` and reused while it is newer than the inputs (parallel callers get the same
    file: it is written under a temporary name, then renamed).

    Parameters
    ----------
    scenario
        The scenario.
    workdir
        Folder for the routes (never the scenario's own).

    Returns
    -------
    tuple of pathlib.Path
        The routed demand (one file).

    Raises
    ------
    SignalError
        When ``duarouter`` fails or does not finish in time (see :func:`tool_timeout`).
    """
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = [scenario.config, scenario.net, *scenario.demand_files, *scenario.additional]
    key = hashlib.blake2b("|".join(str(p) for p in inputs).encode(), digest_size=6).hexdigest()
    out = folder / f"{scenario.name}-{key}.routed.rou.xml"
    newest = max(p.stat().st_mtime for p in inputs)
    if not (out.is_file() and out.stat().st_mtime >= newest):
        options = config_options(scenario.config)
        cmd = [
            sumo_binary("duarouter"),
            "-n",
            str(scenario.net),
            "-r",
            ",".join(str(p) for p in scenario.demand_files),
            "--ignore-errors",
            "--no-step-log",
            "--no-warnings",
        ]
        extra = [p for p in scenario.additional if not _is_routes(p)]
        if extra:
            cmd += ["-a", ",".join(str(p) for p in extra)]
        for name in _ROUTING_OPTIONS:
            value = options.get(name)
            if value:
                cmd += [f"--{name}", value]
        if "junction-taz" not in options and _mentions(scenario.demand_files, "fromJunction"):
            cmd.append("--junction-taz")
        partial = folder / f".{out.name}.{os.getpid()}.{id(scenario)}"
        done = run_process(
            [*cmd, "-o", str(partial)],
            timeout_s=tool_timeout(inputs),
            what="SUMO's duarouter",
            parameter="routes",
        )
        if done.returncode != 0 or not partial.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise SignalError(
                f"SUMO's duarouter cannot route {scenario.config.name}: {' '.join(tail)}",
                parameter="routes",
            )
        partial.replace(out)
    scenario._cache["routed"] = (out,)
    return (out,)


def _mentions(paths: Iterable[Path], attribute: str) -> bool:
    """Whether any element of the files has this attribute."""
    for path in paths:
        with _open_xml(path) as stream:
            for _, el in ET.iterparse(stream, events=("start",)):
                if el.get(attribute) is not None:
                    return True
    return False


def _departures(el: ET.Element, edges: tuple[str, ...]) -> Iterator[Trip]:
    kind = el.get("type", "DEFAULT_VEHTYPE")
    if el.tag == "vehicle":
        depart = el.get("depart", "0")
        if depart != "triggered":
            yield Trip(float(sumolib.miscutils.parseTime(depart)), kind, edges)
        return
    begin = float(sumolib.miscutils.parseTime(el.get("begin", "0")))
    end = float(sumolib.miscutils.parseTime(el.get("end", "3600")))
    if el.get("number"):
        n = int(el.get("number", "0"))
        step = (end - begin) / max(n, 1)
    elif el.get("period"):
        step = float(el.get("period", "1"))
        n = int((end - begin) / step)
    else:
        per_hour = float(el.get("vehsPerHour", el.get("perHour", "0")))
        step = 3600.0 / per_hour if per_hour > 0 else end - begin + 1
        n = int((end - begin) / step) if per_hour > 0 else 0
    for k in range(n):
        yield Trip(begin + k * step, kind, edges)


def peak_hour(
    trips: Sequence[Trip],
    *,
    begin: float | None = None,
    end: float | None = None,
    vehicle_class: bool = False,
) -> float:
    """Return the start (s) of the busiest hour of departures, in passenger-car equivalents.

    Parameters
    ----------
    trips
        The demand.
    begin, end
        The simulated period, s: only departures in ``[begin, end)`` count, and the hour
        starts no earlier than ``begin`` (a period shorter than an hour starts at ``begin``).
    vehicle_class
        Weigh vehicles by their class's PCE (see :meth:`Trip.pce`), not their type id's.

    Returns
    -------
    float
        Start of the hour, s (``begin``, or 0, when no vehicle departs in the period).
    """
    low = -math.inf if begin is None else begin
    high = math.inf if end is None else end
    chosen = [t for t in trips if low <= t.depart < high]
    if not chosen:
        return float(begin or 0.0)
    if end is not None and begin is not None and end - begin <= 3600:
        return float(begin)
    departs = sorted(chosen, key=lambda t: t.depart)
    best, best_start, j, window = -1.0, departs[0].depart, 0, 0.0
    for t in departs:
        window += t.pce(vehicle_class=vehicle_class)
        while departs[j].depart <= t.depart - 3600:
            window -= departs[j].pce(vehicle_class=vehicle_class)
            j += 1
        if window > best:
            best, best_start = window, max(departs[j].depart, t.depart - 3600)
    if end is not None:
        best_start = min(best_start, end - 3600)
    if begin is not None:
        best_start = max(best_start, begin)
    return float(best_start)


def link_flows(
    net: Any,
    signals: Mapping[str, Signal],
    trips: Sequence[Trip],
    *,
    begin: float | None = None,
    end: float | None = None,
    vehicle_class: bool = False,
) -> dict[str, dict[int, float]]:
    """Count hourly approach flows per signal link from the demand, in passenger-car units.

    Counted as SUMO's ``tlsCycleAdaptation.py`` counts them: vehicles departing in the hour
    from ``begin`` pass from one edge to the next; a turn served by several links (lanes) is
    shared equally among them; a period shorter than an hour is scaled up to an hour; links
    downstream of a signal's own links inside a joined junction are not counted twice.

    Scaling a short period: without ``end`` as the tool does, by ``1 + (missing s) / 3600``
    (20 minutes of demand count 1.67 times, not 3 times: the tool under-counts any period
    shorter than an hour, most of all the shortest). With ``end`` (the simulated period ends
    within the hour, or the demand stops before it) the count is scaled by
    ``3600 / counted period``: an hourly flow (a demand that stops well before the period
    ends counts up to its last departure plus one mean headway).

    Parameters
    ----------
    net
        The network.
    signals
        Signals by id (see :func:`signals_of`).
    trips
        The demand (see :func:`read_trips`).
    begin
        Start of the hour, s; by default the first departure (as the reference tool does).
    end
        End of the simulated period, s: departures from then on are not counted, and the
        counted period is scaled to an hour exactly (see above). None: the tool's scaling.
    vehicle_class
        Passenger-car equivalents by each vehicle's class, not its type id (see
        :meth:`Trip.pce`; the tool looks up the type id, which counts a truck type named
        ``LKW`` as a car).

    Returns
    -------
    dict
        Flow (pcu/h) per link index, per signal id.
    """
    departs = [t.depart for t in trips]
    if not departs:
        raise SignalError("the demand has no vehicles", parameter="routes")
    if begin is None:
        begin = min(departs)
    stop = begin + 3600
    scale = 1.0
    if end is None:
        if max(departs) < begin + 3599:
            scale += (begin + 3599 - max(departs)) / 3600
    else:
        stop = min(stop, end)
        # demand that stops well before the period ends (more than a minute and five mean
        # headways) is scaled over the time it was inserted: to its last departure + a headway
        inside = sorted(d for d in departs if begin <= d < stop)
        inserted_until = stop
        if len(inside) >= 2:
            headway = (inside[-1] - inside[0]) / (len(inside) - 1)
            if stop - inside[-1] > max(60.0, 5 * headway):
                inserted_until = inside[-1] + headway
        period = inserted_until - begin
        if period <= 0:
            period = stop - begin
        if period <= 0:
            raise SignalError(
                f"the counted period is empty (begin {begin:g} s, end {stop:g} s)",
                parameter="end",
            )
        scale = 3600.0 / period
    by_turn: dict[str, dict[tuple[str, str], list[int]]] = {}
    for tls in net.getTrafficLights():
        if tls.getID() not in signals:
            continue
        turns: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for in_lane, out_lane, index in tls.getConnections():
            turns[in_lane.getEdge().getID(), out_lane.getEdge().getID()].append(index)
        by_turn[tls.getID()] = turns
    edge_tls: dict[str, list[str]] = collections.defaultdict(list)
    for tls_id, turns in by_turn.items():
        for from_edge, _ in turns:
            if tls_id not in edge_tls[from_edge]:
                edge_tls[from_edge].append(tls_id)
    skip = {e.getID() for e in net.getEdges() if e.getToNode().getType() in _SKIP_NODE_TYPES}
    counts: dict[str, dict[tuple[str, str], dict[int, float]]] = {
        t: collections.defaultdict(lambda: collections.defaultdict(float)) for t in by_turn
    }
    for trip in trips:
        if not begin <= trip.depart < stop:
            continue
        pce = trip.pce(vehicle_class=vehicle_class)
        for a, b in zip(trip.edges, trip.edges[1:], strict=False):
            if a in skip:
                continue
            for tls_id in edge_tls.get(a, ()):
                for index in by_turn[tls_id].get((a, b), ()):
                    counts[tls_id][a, b][index] += pce
    flows: dict[str, dict[int, float]] = {}
    for tls_id, per_turn in counts.items():
        out: dict[int, float] = {}
        for per_link in per_turn.values():
            share = len(per_link)
            for index, value in per_link.items():
                out[index] = value * scale / share
        for index in _redundant_links(net.getTLS(tls_id)):
            if index in out:
                out[index] = 0.0
        flows[tls_id] = out
    return flows


def _redundant_links(tls: Any) -> list[int]:
    """Links whose traffic another link of the same signal already counted.

    Inside a joined junction one vehicle passes two links of one signal (in, then on); the
    second is redundant. As ``tlsCycleAdaptation.py``: if every road into the inner edge comes
    from the first link's edge, all links out of the inner edge are redundant, else those
    reached straight on.
    """
    conns = sorted(tls.getConnections(), key=lambda c: c[2])
    redundant: list[int] = []
    # Once one inner edge is found fed from elsewhere, the reference tool keeps treating every
    # later one so: the flag is not reset per pair. Kept, so that both count the same.
    only_from_first = True
    for c1 in conns:
        for c2 in conns:
            if c1[2] == c2[2] or c1[1].getEdge() is not c2[0].getEdge():
                continue
            inner = c2[0].getEdge()
            only_from_first = only_from_first and all(
                e is c1[0].getEdge() for e in inner.getIncoming()
            )
            if only_from_first:
                chosen = [c for cs in inner.getOutgoing().values() for c in cs]
            else:
                chosen = [
                    c
                    for first in c1[0].getEdge().getOutgoing().get(inner, [])
                    if first.getDirection() == "s"
                    for cs in inner.getOutgoing().values()
                    for c in cs
                ]
            for c in chosen:
                if c.getTLLinkIndex() not in redundant:
                    redundant.append(c.getTLLinkIndex())
    return redundant


# --- plans out ------------------------------------------------------------------------------


def write_additional(
    timings: Iterable[SignalTiming | tuple[str, Program]],
    path: str | os.PathLike[str],
    *,
    program_id: str | None = None,
) -> Path:
    """Write signal programs as a SUMO additional file (``tlLogic`` elements).

    Parameters
    ----------
    timings
        Timings, or (signal id, program) pairs.
    path
        The file to write.
    program_id
        Program id to write (by default each program's own).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    out = Path(path)
    out.write_text(additional_xml(timings, program_id=program_id), encoding="utf-8")
    return out


def additional_xml(
    timings: Iterable[SignalTiming | tuple[str, Program]], *, program_id: str | None = None
) -> str:
    """Return signal programs as the text of a SUMO additional file (see write_additional)."""
    root = ET.Element("additional")
    for item in timings:
        sid, program = (item.signal, item.program) if isinstance(item, SignalTiming) else item
        el = ET.SubElement(
            root,
            "tlLogic",
            id=sid,
            type="static",
            programID=program_id or program.id,
            offset=_num(program.offset),
        )
        for phase in program.phases:
            attrs = {"duration": _num(phase.duration), "state": phase.state}
            if phase.name:
                attrs["name"] = phase.name
            ET.SubElement(el, "phase", attrs)
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def net_with_programs(
    net: str | os.PathLike[str], programs: Mapping[str, Program], path: str | os.PathLike[str]
) -> Path:
    """Write a copy of a network whose signals run the given programs instead of their own.

    SUMO's tools read programs from the network only; this is how they are made to time a
    scenario's own plans.

    Parameters
    ----------
    net
        The network file.
    programs
        Program by signal id (signals not named keep theirs).
    path
        The network file to write.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    with _open_xml(net) as stream:  # Hamburg's network is gzipped
        tree = ET.parse(stream)
    root = tree.getroot()
    done: set[str] = set()
    for position, el in enumerate(list(root)):
        sid = el.get("id", "")
        if el.tag != "tlLogic" or sid not in programs:
            continue
        root.remove(el)
        if sid in done:
            continue
        done.add(sid)
        program = programs[sid]
        new = ET.Element(
            "tlLogic",
            id=sid,
            type="static",
            programID=program.id,
            offset=_num(program.offset),
        )
        new.text = el.text
        new.tail = el.tail
        for phase in program.phases:
            ET.SubElement(new, "phase", duration=_num(phase.duration), state=phase.state)
        root.insert(position, new)
    out = Path(path)
    if out.name.endswith(".gz"):
        with gzip.open(out, "wb") as sink:
            tree.write(sink, encoding="UTF-8", xml_declaration=True)
    else:
        tree.write(out, encoding="UTF-8", xml_declaration=True)
    return out


def merge_routes(paths: Iterable[str | os.PathLike[str]], path: str | os.PathLike[str]) -> Path:
    """Write the contents of several route files into one (for tools that read only one)."""
    root = ET.Element("routes")
    for p in paths:
        with _open_xml(p) as stream:
            root.extend(list(ET.parse(stream).getroot()))
    out = Path(path)
    ET.ElementTree(root).write(out, encoding="UTF-8", xml_declaration=True)
    return out


# --- a SUMO network as the twin's layers ------------------------------------------------------


def node_id(scenario: str, junction: str) -> int:
    """Return a stable 50-bit node id for a SUMO junction (clear of OSM's node ids)."""
    digest = hashlib.blake2b(f"{scenario}/{junction}".encode(), digest_size=6).digest()
    return (1 << 50) | (int.from_bytes(digest, "big") & ((1 << 49) - 1))


def scenario_signals(
    scenario: Scenario, *, base: str = "scenario", end: float | None = None
) -> tuple[dict[str, Signal], dict[str, dict[int, float]]]:
    """Return a scenario's signals (with the base programs) and their peak-hour link flows.

    Parameters
    ----------
    scenario
        The scenario (trips and flows without a route are routed as SUMO would, see
        :meth:`routing.signals.Scenario.read_trips`).
    base
        ``scenario`` (its own programs) or ``network`` (the network's).
    end
        Horizon of the runs, s: with the configuration's begin and end it bounds the period
        whose busiest hour is counted (see :meth:`routing.signals.Scenario.window`).

    Returns
    -------
    tuple
        Signals by id, and hourly flow per link (pcu/h) by signal id: the busiest hour
        within the simulated period, a shorter period scaled to an hour, vehicles weighed by
        their class (a truck 3.5 pcu whatever its type is called).
    """
    programs = read_programs(scenario.programs) if base == "scenario" else {}
    net = scenario.read_net()
    signals = signals_of(net, programs)
    trips = scenario.read_trips()
    _, stop = scenario.window(end)
    begin = scenario.peak_hour(end)
    flows = link_flows(
        net,
        signals,
        trips,
        begin=begin,
        end=begin + 3600 if stop is None else stop,
        vehicle_class=True,
    )
    return signals, flows


def network_frames(scenario: Scenario, *, base: str = "scenario") -> dict[str, gpd.GeoDataFrame]:
    """Return a scenario's network as the twin's layers: roads, intersections and signals.

    Road ids are ``<scenario>:<edge id>`` (so two scenarios' edges never collide); each
    signal carries its links and the peak-hour flow per link (pcu/h) counted from the
    scenario's routes, which is what the twin's optimiser needs.

    Parameters
    ----------
    scenario
        The scenario (its network must be geo-referenced).
    base
        Programs the signals get: ``scenario`` (its own plans) or ``network``.

    Returns
    -------
    dict
        GeoDataFrames (EPSG:4326) by layer id.

    Raises
    ------
    SignalError
        When the network has no geo-reference.
    """
    net = scenario.read_net()
    if not net.hasGeoProj():
        raise SignalError(
            f"network {scenario.net.name} has no geo-reference (location projParameter)",
            parameter="scenario",
        )
    name = scenario.name

    def lonlat(xy: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [tuple(map(float, net.convertXY2LonLat(x, y))) for x, y in xy]  # type: ignore[misc]

    roads = []
    for edge in net.getEdges(withInternal=False):
        if edge.getFunction() in ("internal", "crossing", "walkingarea"):
            continue
        lanes = [lane for lane in edge.getLanes() if lane.allows("passenger")]
        edge_type = edge.getType() or ""
        kind = edge_type.split(".")[-1] if edge_type.startswith("highway.") else None
        if not lanes:
            kind = "busway" if any(lane.allows("bus") for lane in edge.getLanes()) else "service"
        roads.append(
            {
                "id": f"{name}:{edge.getID()}",
                "source_node": node_id(name, edge.getFromNode().getID()),
                "target_node": node_id(name, edge.getToNode().getID()),
                "class": kind or _road_class(edge.getSpeed()),
                "lanes": min(max(len(lanes), 1), 12),
                "maxspeed": min(max(round(edge.getSpeed() * 3.6, 1), 1.0), 150.0),
                "oneway": True,
                "name": edge.getName() or None,
                "sumo": {"edge": edge.getID(), "scenario": name},
                "geometry": shapely.LineString(lonlat(edge.getShape())),
            }
        )
    intersections = []
    for node in net.getNodes():
        if node.getType() == "internal":
            continue
        intersections.append(
            {
                "id": f"{name}:{node.getID()}",
                "node_id": node_id(name, node.getID()),
                "signalised": node.getType().startswith("traffic_light"),
                "sumo": {"junction": node.getID(), "scenario": name},
                "geometry": shapely.Point(lonlat([node.getCoord()[:2]])[0]),
            }
        )
    signals, flows = scenario_signals(scenario, base=base)
    rows = []
    for sid, sig in signals.items():
        tls = net.getTLS(sid)
        junction = next(iter(tls.getConnections()))[0].getEdge().getToNode()
        rows.append(
            {
                "id": f"{name}:tls:{sid}",
                "node_id": node_id(name, junction.getID()),
                "program": sig.program.id,
                "cycle_s": min(max(sig.program.cycle, 10.0), 300.0),
                "offset_s": max(sig.program.offset, 0.0) % max(sig.program.cycle, 1.0),
                "phases": sig.program.to_json(),
                "links": [
                    [k.index, k.from_edge, k.to_edge, k.from_lane, k.direction, k.passenger]
                    for k in sig.links.values()
                ],
                "active": sorted(sig.active),
                "flows_pcu_h": {str(k): round(v, 3) for k, v in flows.get(sid, {}).items()},
                "sumo": {"tls": sid, "scenario": name},
                "geometry": shapely.Point(lonlat([junction.getCoord()[:2]])[0]),
            }
        )
    return {
        "roads": gpd.GeoDataFrame(roads, geometry="geometry", crs="EPSG:4326"),
        "intersections": gpd.GeoDataFrame(intersections, geometry="geometry", crs="EPSG:4326"),
        "signals": gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"),
    }


def _road_class(speed_ms: float) -> str:
    kmh = speed_ms * 3.6
    if kmh >= 80:
        return "primary"
    if kmh >= 50:
        return "secondary"
    if kmh >= 30:
        return "tertiary"
    return "residential"


def network_to_sumo(
    roads: gpd.GeoDataFrame,
    signals: gpd.GeoDataFrame,
    folder: str | os.PathLike[str],
    *,
    metric_crs: str,
    name: str = "twin",
) -> Path:
    """Write the twin's road network and signals as a SUMO network (``netconvert``).

    Roads become edges (a two-way road gives a second edge ``-<id>``; a loop road, two edges
    ``<id>#1`` and ``<id>#2`` through a middle node) with their lanes, speed limit and shape, in
    the city's metric CRS (a road with no ``maxspeed`` or ``lanes`` takes its class's, as
    :mod:`layers.defaults` gives them; a two-way road's ``lanes`` counts both directions); the
    signals' intersections become traffic-light junctions, whose programs netconvert builds
    from the junction's geometry (the twin's own plans are exported as an additional file,
    see :func:`write_additional`).

    Parameters
    ----------
    roads
        The ``roads`` layer (``id``, ``source_node``, ``target_node``, ``lanes``,
        ``maxspeed``, ``oneway``, ``name``, line geometry).
    signals
        The ``signals`` layer (``node_id``).
    folder
        Where to write ``<name>.nod.xml``, ``<name>.edg.xml`` and ``<name>.net.xml``.
    metric_crs
        The city's metric CRS (SUMO networks are in metres).
    name
        File stem.

    Returns
    -------
    pathlib.Path
        The network file.

    Raises
    ------
    SignalError
        When there are no roads, or netconvert refuses them or does not finish in time
        (see :func:`tool_timeout`).
    """
    if roads.empty:
        raise SignalError("there are no roads to export", parameter="roads")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    metric = roads.to_crs(metric_crs)
    lit = {str(int(n)) for n in signals["node_id"].dropna()} if "node_id" in signals else set()
    nodes: dict[str, tuple[float, float]] = {}
    edges = ET.Element("edges")
    classes = roads["class"] if "class" in roads else pd.Series(None, index=roads.index)
    for row, line, road_class in zip(roads.itertuples(), metric.geometry, classes, strict=True):
        coords = [(float(x), float(y)) for x, y, *_ in line.coords]
        source, target = str(int(row.source_node)), str(int(row.target_node))
        nodes.setdefault(source, coords[0])
        nodes.setdefault(target, coords[-1])
        # missing or odd attributes take layers.defaults' fallbacks (the routing SQL's speed)
        lanes = lanes_per_direction(row.lanes, road_class, row.oneway)
        speed = road_speed_kmh(row.maxspeed, road_class) / 3.6
        attrs = {"numLanes": str(lanes), "speed": f"{speed:.2f}"}
        if isinstance(row.name, str) and row.name:
            attrs["name"] = row.name
        pieces = [(str(row.id), source, target, coords)]
        if source == target and len(coords) >= 3:
            # SUMO has no edge from a junction back to itself: a loop road gets a middle node
            middle = f"{row.id}#middle"
            half = len(coords) // 2
            nodes[middle] = coords[half]
            pieces = [
                (f"{row.id}#1", source, middle, coords[: half + 1]),
                (f"{row.id}#2", middle, target, coords[half:]),
            ]
        for edge_id, a, b, points in pieces:
            ET.SubElement(edges, "edge", id=edge_id, attrib={"from": a, "to": b, **attrs}).set(
                "shape", " ".join(f"{x:.2f},{y:.2f}" for x, y in points)
            )
            if not _given(row.oneway):
                ET.SubElement(
                    edges, "edge", id=f"-{edge_id}", attrib={"from": b, "to": a, **attrs}
                ).set("shape", " ".join(f"{x:.2f},{y:.2f}" for x, y in reversed(points)))
    root = ET.Element("nodes")
    for nid, (x, y) in nodes.items():
        kind = "traffic_light" if nid in lit else "priority"
        ET.SubElement(root, "node", id=nid, x=f"{x:.2f}", y=f"{y:.2f}", type=kind)
    nod, edg, net = out / f"{name}.nod.xml", out / f"{name}.edg.xml", out / f"{name}.net.xml"
    ET.ElementTree(root).write(nod, encoding="UTF-8", xml_declaration=True)
    ET.ElementTree(edges).write(edg, encoding="UTF-8", xml_declaration=True)
    done = run_process(
        [
            sumo_binary("netconvert"),
            "-n",
            str(nod),
            "-e",
            str(edg),
            "-o",
            str(net),
            "--no-warnings",
            "--junctions.join",
            "false",
        ],
        timeout_s=tool_timeout([nod, edg]),
        what="SUMO's netconvert",
        parameter="roads",
    )
    if done.returncode != 0:
        raise SignalError(
            f"netconvert refused the network: {done.stderr.strip()[-300:]}", parameter="roads"
        )
    return net


def _given(value: Any) -> bool:
    """Whether an attribute holds a value (not None, not NaN, not 0)."""
    return not bool(pd.isna(value)) and bool(value)
