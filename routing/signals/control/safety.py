"""The safety checker: SUMO's signal-state output against the rules, link by link.

Independent of any controller: it reads what SUMO actually showed (the ``SaveTLSStates``
output, one ``<tlsState time id state/>`` per signal and step) and checks each link's
sequence of greens, yellows and reds:

- ``min-green``: no green interval (``G``/``g`` continuously, through stage changes) shorter
  than the link's minimum green (``rules.min_green_s``; walk plus clearance for a pedestrian
  crossing). Intervals cut by the start or the end of the output are not judged.
- ``yellow``: every end of green passes through ``y``, for at least the shortest unbroken
  yellow the base program shows that link (3 s when it never does); pedestrian crossings
  excepted, their clearance being part of their minimum green (SUMO's own programs take
  crossings from green straight to red).
- ``all-red``: after a link's yellow, no foe link turns green before the all-red the base
  program itself gives after that link's yellow (0 where it has none).
- ``conflict``: no two foe links both protected green (``G``) at once. Foes are the
  junction's ``<request foes=...>`` bits in the network (``sumolib`` ``Node.areFoes``);
  links of different junctions of a joined signal never conflict. Pairs the base program
  itself shows ``G`` together in one of its phases are the plan's design (netconvert does
  so for foes the junction's right of way resolves, e.g. merging streams) and not counted.
- ``max-wait``: no link served by some stage of the base program waits longer than
  ``rules.max_cycle_s`` without green.

References
----------
SUMO documentation, "Traffic Lights", section "Tracking the current state" (the
``SaveTLSStates`` timed event); FHWA, *Traffic Signal Timing Manual*, 2nd ed., 2015, chapter 5
(minimum green, change and clearance intervals).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing.signals.control.base import (
    DEFAULT_YELLOW_S,
    ControlledSignal,
    SafetyRules,
    link_yellow,
)
from routing.signals.model import Program, SignalError

_EPS = 1e-6
_GREEN, _YELLOW, _RED, _OFF = "green", "yellow", "red", "off"
RULES = ("min-green", "yellow", "all-red", "conflict", "max-wait")


@dataclass(frozen=True)
class Violation:
    """One breach of the safety rules.

    Attributes
    ----------
    signal
        Signal id.
    rule
        One of ``min-green``, ``yellow``, ``all-red``, ``conflict``, ``max-wait``.
    time
        When it happened, s.
    links
        The link (or the two foe links) concerned.
    detail
        What was seen, in words.
    """

    signal: str
    rule: str
    time: float
    links: tuple[int, ...]
    detail: str


@dataclass(frozen=True)
class StateRecord:
    """A signal's states as SUMO showed them.

    Attributes
    ----------
    changes
        ``(time s, state)`` at the first record and at each change, in time order.
    end
        End of the last recorded step, s.
    """

    changes: tuple[tuple[float, str], ...]
    end: float


def read_states(path: str | Path) -> dict[str, StateRecord]:
    """Read SUMO's signal-state output (``SaveTLSStates``) into the changes of each signal.

    Parameters
    ----------
    path
        The output file.

    Returns
    -------
    dict
        Per signal id, its state changes and the end of the output (the last record's time
        plus the step length, inferred as the shortest time between records).

    Raises
    ------
    SignalError
        When the file is missing or not readable.
    """
    p = Path(path)
    if not p.is_file():
        raise SignalError(f"signal-state output {p} does not exist", parameter="states_file")
    rows: dict[str, list[tuple[float, str]]] = {}
    last: dict[str, float] = {}
    step = float("inf")
    try:
        for _, el in ET.iterparse(p, events=("end",)):
            if el.tag != "tlsState":
                continue
            sid, state, t = el.get("id", ""), el.get("state", ""), float(el.get("time", "0"))
            if sid in last and t - last[sid] > _EPS:
                step = min(step, t - last[sid])
            last[sid] = t
            changes = rows.setdefault(sid, [])
            if not changes or changes[-1][1] != state:
                changes.append((t, state))
            el.clear()
    except ET.ParseError as exc:
        raise SignalError(
            f"signal-state output {p} is not readable: {exc}", parameter="states_file"
        ) from exc
    step = 1.0 if step == float("inf") else step
    return {sid: StateRecord(tuple(ch), last[sid] + step) for sid, ch in rows.items()}


def _kind(c: str) -> str:
    if c in "Ggs":
        return _GREEN
    if c in "yY":
        return _YELLOW
    if c in "oO":
        return _OFF
    return _RED


def foes(net: Any, signal_id: str) -> set[tuple[int, int]]:
    """Return the pairs of a signal's links that are foes at their junction (i < j).

    Parameters
    ----------
    net
        The network (``sumolib.net.Net``).
    signal_id
        The signal.

    Returns
    -------
    set of tuple
        Link index pairs whose junction's request marks them as foes.

    Raises
    ------
    SignalError
        When the signal is not in the network.
    """
    try:
        tls = net.getTLS(signal_id)
    except KeyError as exc:
        raise SignalError(f"signal {signal_id} is not in the network", parameter="signals") from exc
    conn_of: dict[int, Any] = {}
    for in_lane, out_lane, index in tls.getConnections():
        if index in conn_of:
            continue
        for c in in_lane.getOutgoing():
            if c.getToLane() is out_lane and c.getTLLinkIndex() == index:
                conn_of[index] = c
                break
    junction: dict[int, tuple[Any, int]] = {}
    for index, c in conn_of.items():
        node = c.getFrom().getToNode()
        k = node.getLinkIndex(c)
        if k >= 0:
            junction[index] = (node, k)
    out: set[tuple[int, int]] = set()
    items = sorted(junction.items())
    for x, (i, (node_i, ki)) in enumerate(items):
        for j, (node_j, kj) in items[x + 1 :]:
            if node_i is node_j and node_i.areFoes(ki, kj):
                out.add((i, j))
    return out


def link_all_red(program: Program) -> dict[int, float]:
    """Return, per link, the shortest all-red the program gives after the link's yellow, s.

    Parameters
    ----------
    program
        The base program.

    Returns
    -------
    dict
        Link index to seconds: after each yellow phase showing the link ``y``, further
        yellow phases are skipped and the all-red phases (no ``G``/``g``/``y``) that follow
        are summed; the minimum over the link's yellow phases (links never yellow: absent).
    """
    phases = program.phases
    n = len(phases)
    out: dict[int, float] = {}
    for p, ph in enumerate(phases):
        if "y" not in ph.state:
            continue
        all_red = 0.0
        k = 1
        while k < n and "y" in phases[(p + k) % n].state:
            k += 1
        while k < n and not any(c in phases[(p + k) % n].state for c in "Ggy"):
            all_red += phases[(p + k) % n].duration
            k += 1
        for link, c in enumerate(ph.state):
            if c == "y":
                out[link] = min(out.get(link, all_red), all_red)
    return out


def check_states(
    net: Any,
    states_file: str | Path,
    signals: Mapping[str, ControlledSignal],
    *,
    rules: SafetyRules | None = None,
) -> list[Violation]:
    """Check SUMO's signal-state output against the safety rules (see the module docstring).

    Parameters
    ----------
    net
        The network (``sumolib.net.Net``) the run used: the foes come from its junctions.
    states_file
        SUMO's ``SaveTLSStates`` output.
    signals
        The controlled signals (base programs, stages, pedestrian crossings) by id; signals
        recorded in the output but not given here are not checked.
    rules
        The safety rules (defaults of :class:`SafetyRules`).

    Returns
    -------
    list of Violation
        Every breach found, in signal and time order; empty when the run was safe.

    Raises
    ------
    SignalError
        When the file is missing or unreadable, or holds none of the signals.
    """
    rules = rules or SafetyRules()
    records = read_states(states_file)
    checked = [sid for sid in signals if sid in records]
    if not checked:
        raise SignalError(
            f"signal-state output {states_file} records none of the signals given",
            parameter="states_file",
        )
    out: list[Violation] = []
    for sid in checked:
        out.extend(_check_signal(net, signals[sid], records[sid], rules))
    return out


def _check_signal(
    net: Any, signal: ControlledSignal, record: StateRecord, rules: SafetyRules
) -> list[Violation]:
    sid = signal.id
    program = signal.signal.program
    yellows = link_yellow(program)
    all_red = link_all_red(program)
    together = {
        (i, j)
        for ph in program.phases
        for i, ci in enumerate(ph.state)
        if ci == "G"
        for j in range(i + 1, len(ph.state))
        if ph.state[j] == "G"
    }
    pairs = foes(net, sid) - together
    foe_of: dict[int, set[int]] = {}
    for i, j in pairs:
        foe_of.setdefault(i, set()).add(j)
        foe_of.setdefault(j, set()).add(i)
    served = {link for s in signal.stages for link in s.green}
    minimum = {link: rules.min_green_s for link in range(signal.size)}
    for stage in signal.stages:
        for link in stage.green & signal.crossing:
            minimum[link] = max(minimum[link], stage.min_green_s)
    changes = record.changes
    out: list[Violation] = []
    for t, state in changes:
        protected = [i for i, c in enumerate(state) if c == "G"]
        for x, i in enumerate(protected):
            for j in protected[x + 1 :]:
                if (i, j) in pairs:
                    out.append(
                        Violation(sid, "conflict", t, (i, j), f"foe links {i} and {j} both G")
                    )
    green_start: dict[int, list[float]] = {}  # per link: times it turned green
    yellow_end: dict[int, list[float]] = {}  # per link: times its yellow ended
    for link in range(signal.size):
        segments = _segments(changes, record.end, link)
        for k, (kind, t0, t1) in enumerate(segments):
            first, last = k == 0, k == len(segments) - 1
            if kind == _GREEN:
                if not first:
                    green_start.setdefault(link, []).append(t0)
                if not first and not last and t1 - t0 < minimum[link] - _EPS:
                    out.append(
                        Violation(
                            sid,
                            "min-green",
                            t0,
                            (link,),
                            f"green for {t1 - t0:g} s < {minimum[link]:g} s",
                        )
                    )
                if not last and segments[k + 1][0] != _YELLOW and link not in signal.crossing:
                    out.append(
                        Violation(
                            sid,
                            "yellow",
                            t1,
                            (link,),
                            f"green to {segments[k + 1][0]} without yellow",
                        )
                    )
            elif kind == _YELLOW:
                if not last:
                    yellow_end.setdefault(link, []).append(t1)
                need = yellows.get(link, DEFAULT_YELLOW_S)
                if not first and not last and t1 - t0 < need - _EPS:
                    out.append(
                        Violation(sid, "yellow", t0, (link,), f"yellow {t1 - t0:g} s < {need:g} s")
                    )
            if kind != _GREEN and link in served and t1 - t0 > rules.max_cycle_s + _EPS:
                out.append(
                    Violation(
                        sid,
                        "max-wait",
                        t0,
                        (link,),
                        f"no green for {t1 - t0:g} s > {rules.max_cycle_s:g} s",
                    )
                )
    for link, ends in yellow_end.items():
        need = all_red.get(link, 0.0)
        if need <= _EPS:
            continue
        for te in ends:
            for foe in foe_of.get(link, ()):
                for tg in green_start.get(foe, ()):
                    if te - _EPS <= tg < te + need - _EPS:
                        out.append(
                            Violation(
                                sid,
                                "all-red",
                                tg,
                                (link, foe),
                                f"foe {foe} green {tg - te:g} s after yellow of {link} "
                                f"(all-red {need:g} s)",
                            )
                        )
    out.sort(key=lambda v: (v.time, v.rule, v.links))
    return out


def _segments(
    changes: tuple[tuple[float, str], ...], end: float, link: int
) -> list[tuple[str, float, float]]:
    """Return a link's runs of one kind (green, yellow, red, off) as ``(kind, start, end)``."""
    segments: list[tuple[str, float, float]] = []
    for k, (t, state) in enumerate(changes):
        kind = _kind(state[link]) if link < len(state) else _OFF
        t_next = changes[k + 1][0] if k + 1 < len(changes) else end
        if segments and segments[-1][0] == kind:
            segments[-1] = (kind, segments[-1][1], t_next)
        else:
            segments.append((kind, t, t_next))
    return segments
