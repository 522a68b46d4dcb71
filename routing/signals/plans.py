"""Signal plans: every signal of an area timed at once, from a scenario or from the twin."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.signals import sumo
from routing.signals.model import Link, Phase, Program, Signal, SignalError, SignalTiming
from routing.signals.webster import WebsterSettings, predicted_delay, stages, webster


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
    kept
        Signals whose base program is kept, with the reason (``"kept: base predicted
        better ..."``): Webster's timing was predicted to delay vehicles more than the
        program it would replace. Their timing in ``timings`` is the base program's.
    """

    timings: dict[str, SignalTiming]
    settings: WebsterSettings
    idle: list[str] = field(default_factory=list)
    bandwidth: list[dict[str, Any]] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the plan as JSON."""
        return {
            "signals": [t.to_json() for t in self.timings.values()],
            "idle": self.idle,
            "corridors": self.bandwidth,
            "kept": self.kept,
        }


def optimise(
    signals: Mapping[str, Signal],
    flows: Mapping[str, Mapping[int, float]],
    *,
    settings: WebsterSettings | None = None,
    ids: Iterable[str] | None = None,
    keep_better_base: bool = True,
) -> Plan:
    """Time every signal (or those named) by Webster's method.

    A plan is never predicted worse than what it replaces: for each signal the HCM delay of
    Webster's timing is compared with the base program's (the signal's program as it
    stands) under the same flows (:func:`routing.signals.webster.predicted_delay`); when the
    base program is predicted to delay vehicles less, it is kept and the signal is listed in
    :attr:`Plan.kept` with the reason.

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
    keep_better_base
        Keep a signal's base program where it is predicted better (see above), and leave an
        actuated program (:attr:`routing.signals.model.Program.actuated`) as it runs: it is
        listed in ``Plan.kept`` with no timing. With a common cycle (``settings.cycle_s``,
        coordination) every signal is re-timed, and a base program whose cycle lies outside
        ``settings``' cycle bounds is never kept.

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
        if keep_better_base and s.cycle_s is None and signals[sid].program.actuated:
            # a fixed-time timing replacing actuated control makes it worse (Hamburg's: 40 of
            # its 43 programs actuated, Webster 1.4x their time loss): the program is left as
            # it runs, and the plan says so
            plan.kept[sid] = "kept: an actuated program (a fixed-time timing does not replace it)"
            continue
        timing = webster(signals[sid], flows[sid], s)
        if timing is None:
            plan.idle.append(sid)
            continue
        plan.timings[sid] = timing
        if not keep_better_base:
            continue
        better = base_if_better(signals[sid], flows[sid], s, timing)
        if better is not None:
            plan.timings[sid], plan.kept[sid] = better
    return plan


def base_if_better(
    signal: Signal,
    flows: Mapping[int, float],
    settings: WebsterSettings,
    timing: SignalTiming,
) -> tuple[SignalTiming, str] | None:
    """Return the base program's timing and the reason when HCM predicts it beats ``timing``.

    Both delays are HCM's uniform + incremental delay under the same flows
    (:func:`routing.signals.webster.predicted_delay`); a base outside the settings' cycle
    bounds, or a common cycle asked for (coordination), does not stand for the plan.

    Parameters
    ----------
    signal
        The signal, its program the base.
    flows
        Hourly flow per link index, pcu/h.
    settings
        Webster's inputs.
    timing
        The new timing.

    Returns
    -------
    tuple or None
        The base's timing and the reason to report (``"kept: base predicted better ..."``),
        or None when the new timing is to be used.
    """
    base = signal.program
    if settings.cycle_s is not None:
        return None
    if not settings.min_cycle_s <= base.cycle <= settings.max_cycle_s:
        return None
    delay, x_max = predicted_delay(signal, flows, settings)
    if not delay < timing.delay_s:
        return None
    staged = stages(base, settings)
    kept = SignalTiming(
        signal.id,
        base,
        base.cycle,
        timing.critical_ratios,
        {st[0]: sum(base.phases[i].duration for i in st) for st in staged},
        delay,
        x_max,
    )
    why = f"kept: base predicted better ({delay:.1f} s vs {timing.delay_s:.1f} s mean delay, HCM)"
    return kept, why


def optimise_scenario(
    scenario: sumo.Scenario,
    *,
    base: str = "scenario",
    settings: WebsterSettings | None = None,
    end: float | None = None,
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
    end
        Horizon of the runs, s (the peak hour is sought within the simulated period, see
        :func:`routing.signals.sumo.scenario_signals`).

    Returns
    -------
    Plan
        The timings (signals whose base program is predicted better keep it, see
        :func:`optimise`).
    """
    signals, flows = sumo.scenario_signals(scenario, base=base, end=end)
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
