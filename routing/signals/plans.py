"""Signal plans: every signal of an area timed at once, from a scenario or from the twin."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.signals import sumo
from routing.signals.model import Link, Phase, Program, Signal, SignalError, SignalTiming
from routing.signals.webster import WebsterSettings, webster


@dataclass
class Plan:
    """Timings for a set of signals.

    Attributes
    ----------
    timings
        Timing per signal id.
    settings
        The Webster settings used.
    idle
        Signals no counted flow reaches (left as they were).
    bandwidth
        Green-wave bandwidths per corridor, when coordinated.
    """

    timings: dict[str, SignalTiming]
    settings: WebsterSettings
    idle: list[str] = field(default_factory=list)
    bandwidth: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the plan as JSON."""
        return {
            "signals": [t.to_json() for t in self.timings.values()],
            "idle": self.idle,
            "corridors": self.bandwidth,
        }


def optimise(
    signals: Mapping[str, Signal],
    flows: Mapping[str, Mapping[int, float]],
    *,
    settings: WebsterSettings | None = None,
    ids: Iterable[str] | None = None,
) -> Plan:
    """Time every signal (or those named) by Webster's method.

    Parameters
    ----------
    signals
        Signals by id.
    flows
        Hourly flow per link index per signal id (pcu).
    settings
        Webster's inputs (the twin's defaults when omitted).
    ids
        Signals to time (all by default).

    Returns
    -------
    Plan
        The timings.

    Raises
    ------
    SignalError
        When a signal is unknown or has no approach data.
    """
    s = settings or WebsterSettings()
    chosen = list(ids) if ids is not None else list(signals)
    unknown = [i for i in chosen if i not in signals]
    if unknown:
        raise SignalError(f"unknown signals: {', '.join(unknown[:10])}", parameter="signals")
    missing = [i for i in chosen if i not in flows]
    if missing:
        raise SignalError(
            f"signals without approach data (no counts, no flows): {', '.join(missing[:10])}",
            parameter="signals",
        )
    plan = Plan({}, s)
    for sid in chosen:
        timing = webster(signals[sid], flows[sid], s)
        if timing is None:
            plan.idle.append(sid)
        else:
            plan.timings[sid] = timing
    return plan


def scenario_signals(
    scenario: sumo.Scenario, *, base: str = "scenario"
) -> tuple[dict[str, Signal], dict[str, dict[int, float]]]:
    """Return a scenario's signals (with the base programs) and their peak-hour link flows."""
    programs = sumo.read_programs(scenario.programs) if base == "scenario" else {}
    net = scenario.read_net()
    signals = sumo.signals_of(net, programs)
    trips = scenario.read_trips()
    flows = sumo.link_flows(net, signals, trips, begin=sumo.peak_hour(trips))
    return signals, flows


def optimise_scenario(
    scenario: sumo.Scenario,
    *,
    base: str = "scenario",
    settings: WebsterSettings | None = None,
) -> Plan:
    """Time a SUMO scenario's signals from the flows its routes count in the peak hour.

    Parameters
    ----------
    scenario
        The scenario.
    base
        ``scenario``: re-time the scenario's own programs (its phase sequences);
        ``network``: the network's default programs.
    settings
        Webster's inputs.

    Returns
    -------
    Plan
        The timings.
    """
    signals, flows = scenario_signals(scenario, base=base)
    return optimise(signals, flows, settings=settings)


def signals_from_layer(
    rows: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, Signal], dict[str, dict[int, float]]]:
    """Rebuild signals and their flows from the twin's ``signals`` layer.

    Parameters
    ----------
    rows
        Features of the layer: ``id``, ``program``, ``offset_s``, ``phases`` and, in
        ``props``, ``links`` (``[index, from, to, lane, direction, cars]``), ``active`` and
        ``flows_pcu_h`` (as a SUMO import stores them).

    Returns
    -------
    tuple
        Signals by feature id, and flows by feature id for those that have approach data.
    """
    signals: dict[str, Signal] = {}
    flows: dict[str, dict[int, float]] = {}
    for row in rows:
        props = row.get("props") or {}
        links = {
            int(k[0]): Link(int(k[0]), str(k[1]), str(k[2]), int(k[3]), str(k[4]), bool(k[5]))
            for k in props.get("links") or []
        }
        phases = tuple(
            Phase(float(p.get("duration_s", 0.0)), str(p.get("state", "")))
            for p in row.get("phases") or []
            if p.get("state")
        )
        sid = str(row["id"])
        program = Program(str(row.get("program") or "0"), phases, float(row.get("offset_s") or 0))
        signals[sid] = Signal(sid, links, program, frozenset(props.get("active") or links))
        if links and phases and props.get("flows_pcu_h") is not None:
            flows[sid] = {int(k): float(v) for k, v in props["flows_pcu_h"].items()}
    return signals, flows
