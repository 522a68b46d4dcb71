"""One SUMO run of a signal plan: what it runs, and what its trips measured.

Shared by the fixed-plan runs (:mod:`routing.signals.evaluation`) and the runs with a
controller in the loop (:mod:`routing.signals.control.runner`), so that both report the same
figures, read the same way from SUMO's trip information and statistics outputs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from routing.signals.model import SignalError


@dataclass(frozen=True)
class Setup:
    """What a variant runs: the network file and the program files loaded after it.

    Attributes
    ----------
    net
        The network file.
    programs
        Program files, loaded after the scenario's other additional files.
    controller
        The controller that drives the signals through TraCI during the run
        (:func:`routing.signals.evaluation.controller_factory`; None: the programs run as
        they are).
    priority
        Whether buses get transit signal priority from the controller.
    note
        Why the variant is not run (``"no plan: ..."``), or None.
    kept
        (signal, reason) of signals whose base program the plan keeps (predicted better).
    """

    net: Path
    programs: tuple[Path, ...]
    controller: str | None = None
    priority: bool = False
    note: str | None = None
    kept: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Run:
    """One SUMO run: a variant under one seed, and what the trips measured.

    Attributes
    ----------
    variant, seed
        What ran.
    vehicles
        Trips reported (those still running at the end included).
    time_loss_s, waiting_s, stops, depart_delay_s
        Means per trip: SUMO's ``timeLoss``, ``waitingTime``, ``waitingCount``, ``departDelay``.
    teleports
        Vehicles SUMO teleported (gridlock).
    unfinished
        Trips still running at the end.
    buses
        Trips of vehicles of class ``bus``.
    bus_time_loss_s, others_time_loss_s
        Mean time loss of buses and of every other trip, s.
    """

    variant: str
    seed: int
    vehicles: int
    time_loss_s: float
    waiting_s: float
    stops: float
    depart_delay_s: float
    teleports: int
    unfinished: int
    buses: int = 0
    bus_time_loss_s: float = 0.0
    others_time_loss_s: float = 0.0


def read_run(
    trips: Path,
    stats_file: Path,
    *,
    variant: str,
    seed: int,
    classes: Mapping[str, str] | None = None,
) -> Run:
    """Read a run's figures from SUMO's ``--tripinfo-output`` and ``--statistic-output``.

    Parameters
    ----------
    trips
        The trip information (written with ``--tripinfo-output.write-unfinished``).
    stats_file
        The statistics output (teleports).
    variant, seed
        What ran.
    classes
        vClass per vehicle type id (``routing.signals.control.priority.vehicle_classes``), to
        tell buses from everyone else; without it no trip counts as a bus.

    Returns
    -------
    Run
        The figures.

    Raises
    ------
    SignalError
        When an output is missing or is not readable XML (SUMO stopped while writing it).
    """
    n = unfinished = buses = 0
    loss = wait = stops = delay = bus_loss = 0.0
    kinds = classes or {}
    try:
        for _, el in ET.iterparse(trips, events=("end",)):
            if el.tag != "tripinfo":
                continue
            n += 1
            lost = float(el.get("timeLoss", "0"))
            loss += lost
            wait += float(el.get("waitingTime", "0"))
            stops += float(el.get("waitingCount", "0"))
            delay += float(el.get("departDelay", "0"))
            if el.get("arrival", "0") in ("-1", "-1.00"):
                unfinished += 1
            if kinds.get(el.get("vType", "")) == "bus":
                buses += 1
                bus_loss += lost
            el.clear()
        root = ET.parse(stats_file).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SignalError(
            f"SUMO's outputs of {variant} (seed {seed}) are not readable: {exc}",
            parameter="scenario",
        ) from exc
    teleports = 0
    found = root.find("teleports")
    if found is not None:
        teleports = int(found.get("total", "0"))
    k = max(n, 1)
    others = max(n - buses, 1)
    return Run(
        variant,
        seed,
        n,
        loss / k,
        wait / k,
        stops / k,
        delay / k,
        teleports,
        unfinished,
        buses,
        bus_loss / max(buses, 1),
        (loss - bus_loss) / others,
    )
