"""Left-turn phasing by the HCM warrants, and protected-left programs written back to SUMO.

netconvert's default programs let left turns filter (``g``, permissive) through the opposing
traffic whenever the approach has no exclusive left lane; against heavy opposing flows such
lefts block their lanes and the network gridlocks, whatever the timing. This module chooses
each approach's *left-turn mode* by the warrants practitioners use, builds a NEMA dual-ring
style sequence that serves warranted lefts in a leading protected phase, and times it with
the twin's Webster (:func:`routing.signals.webster.webster`).

Warrants (one met is enough, per approach, peak-hour volumes), as the FHWA *Traffic Signal
Timing Manual*, 2nd ed. (NCHRP Report 812, 2015), section 4.5.1 "left-turn mode", collects
them from the *Highway Capacity Manual*:

- left-turn volume >= 240 veh/h (HCM's left-turn volume criterion);
- cross product (left-turn volume x opposing through + right volume) of at least 50,000 with
  one opposing lane, 90,000 with two, 110,000 with three or more (HCM's cross-product
  criterion, quoted with these thresholds by FHWA's *Signalized Intersections: Informational
  Guide*, FHWA-HRT-04-091, 2004, chapter 4);
- four or more opposing lanes, or an opposing speed of 45 mph (20 m/s) or more (the manual's
  conditions under which filtering is unsafe: the left is *protected only*).

A warranted left is *protected-permissive* (a leading green arrow, then filtering in the
through phase) unless it is protected-only by the manual's rules: four or more opposing lanes,
an opposing speed >= 20 m/s, or a double left (two or more left lanes). Counts come as
passenger-car units per hour (:func:`routing.signals.sumo.link_flows`); they are compared with
the veh/h thresholds as they are (a pcu is at least a vehicle, so this errs towards protection).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from routing.signals import sumo
from routing.signals.model import Phase, Program, Signal, SignalError, SignalTiming
from routing.signals.plans import Plan, base_if_better
from routing.signals.sumo import scenario_signals
from routing.signals.webster import WebsterSettings, webster

Mode = Literal["permissive", "protected", "protected-permissive"]

LEFT = frozenset("lLt")
RIGHT = frozenset("rR")
# HCM's cross-product thresholds by opposing lanes (1, 2, 3+), FHWA-HRT-04-091 chapter 4.
CROSS_PRODUCT = (50_000.0, 90_000.0, 110_000.0)


@dataclass(frozen=True)
class Approach:
    """One incoming road of a signalised junction and its movements.

    Attributes
    ----------
    edge
        Incoming edge id.
    heading_deg
        Direction of travel at the stop line, degrees counter-clockwise from east.
    speed_ms
        The edge's speed limit, m/s.
    left, through, right
        Link indices of the left turns (``l``, ``L``, ``t``), through movements (``s``) and
        right turns (``r``, ``R``).
    through_lanes
        Lanes that carry a through movement.
    opposing_lanes
        Lanes that carry a through or right movement (what a left turning across this
        approach faces).
    left_lanes
        Lanes that carry a left turn.
    shared_left
        Whether a left turn shares a lane with a through movement.
    """

    edge: str
    heading_deg: float
    speed_ms: float
    left: tuple[int, ...]
    through: tuple[int, ...]
    right: tuple[int, ...]
    through_lanes: int
    left_lanes: int
    shared_left: bool
    opposing_lanes: int = 0


@dataclass(frozen=True)
class Layout:
    """A junction read as two crossing axes, or why it cannot be.

    Attributes
    ----------
    approaches
        Approach by incoming edge id.
    axes
        Up to two axes; each is one or two opposing approaches (edge ids).
    opposing
        Opposing approach of each approach (None on a T-junction's stem or a one-sided axis).
    crossings
        Pedestrian crossing link indices, with the edges each crosses.
    reason
        Why the junction is not a two-axis junction (empty when it is).
    """

    approaches: dict[str, Approach]
    axes: list[list[str]]
    opposing: dict[str, str | None]
    crossings: dict[int, frozenset[str]] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class LeftTurnWarrant:
    """The warrant figures of one approach's left turn and the mode they give.

    Attributes
    ----------
    approach, opposing
        Incoming edge ids (``opposing`` None when nothing opposes the left).
    left_veh_h
        Left-turn volume, veh/h (pcu/h as counted).
    opposing_veh_h
        Opposing through + right volume, veh/h.
    opposing_lanes
        Opposing lanes (carrying through or right movements).
    opposing_speed_ms
        Opposing speed limit, m/s.
    cross_product
        ``left_veh_h * opposing_veh_h``.
    threshold
        Cross-product threshold for the opposing lanes.
    reasons
        Warrants met (empty: permissive).
    mode
        The chosen left-turn mode.
    """

    approach: str
    opposing: str | None
    left_veh_h: float
    opposing_veh_h: float
    opposing_lanes: int
    opposing_speed_ms: float
    cross_product: float
    threshold: float
    reasons: tuple[str, ...]
    mode: Mode

    def to_json(self) -> dict[str, Any]:
        """Return the warrant as JSON."""
        return {
            "approach": self.approach,
            "opposing": self.opposing,
            "left_veh_h": round(self.left_veh_h, 1),
            "opposing_veh_h": round(self.opposing_veh_h, 1),
            "opposing_lanes": self.opposing_lanes,
            "opposing_speed_ms": round(self.opposing_speed_ms, 2),
            "cross_product": round(self.cross_product),
            "threshold": self.threshold,
            "reasons": list(self.reasons),
            "mode": self.mode,
        }


def _heading(edge: Any) -> float:
    """Direction of travel of an edge's last segment, degrees counter-clockwise from east."""
    shape = edge.getShape()
    (x0, y0), (x1, y1) = shape[-2][:2], shape[-1][:2]
    return math.degrees(math.atan2(y1 - y0, x1 - x0)) % 360.0


def _gap(a: float, b: float) -> float:
    """Smallest angle between two headings, degrees (0..180)."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def _crossing_of(net: Any, from_edge: str, to_edge: str) -> Any:
    """Return the crossing edge a pedestrian link enters or leaves (None for a vehicle link)."""
    for eid in (to_edge, from_edge):
        if eid.startswith(":"):
            edge = net.getEdge(eid)
            if edge.getFunction() == "crossing":
                return edge
    return None


def junction_layout(signal: Signal, net: Any, *, opposing_tolerance_deg: float = 40.0) -> Layout:
    """Read a signal's junction as approaches, opposing pairs and (at most two) axes.

    Parameters
    ----------
    signal
        The signal (links from :func:`routing.signals.sumo.signals_of`).
    net
        The SUMO network (``sumolib.net.Net``, read with pedestrian connections).
    opposing_tolerance_deg
        Two approaches oppose when their headings differ by 180 degrees within this, degrees.

    Returns
    -------
    Layout
        The layout; ``reason`` says why it is not a two-axis (or T) junction.

    Raises
    ------
    SignalError
        When the network does not know the signal.
    """
    try:
        tls = net.getTLS(signal.id)
    except KeyError as exc:
        raise SignalError(f"the network has no signal {signal.id}", parameter="net") from exc
    conns = tls.getConnections()
    nodes = {lane.getEdge().getToNode().getID() for lane, _, _ in conns}
    nodes = {n for n in nodes if n and not n.startswith(":")}
    if len(nodes) > 1:
        return Layout({}, [], {}, reason=f"joined cluster of {len(nodes)} junctions")
    crossings: dict[int, frozenset[str]] = {}
    moves: dict[str, dict[str, list[int]]] = {}
    lanes: dict[str, dict[int, set[str]]] = {}
    edges: dict[str, Any] = {}
    for index, link in sorted(signal.links.items()):
        edge = net.getEdge(link.from_edge)
        crossing = _crossing_of(net, link.from_edge, link.to_edge)
        if crossing is not None:
            crossings[index] = frozenset(e.getID() for e in crossing.getCrossingEdges())
            continue
        if index not in signal.active:
            return Layout({}, [], {}, reason=f"link {index} is neither a movement nor a crossing")
        kind = (
            "left" if link.direction in LEFT else "right" if link.direction in RIGHT else "through"
        )
        edges[link.from_edge] = edge
        moves.setdefault(link.from_edge, {"left": [], "through": [], "right": []})[kind].append(
            index
        )
        lanes.setdefault(link.from_edge, {}).setdefault(link.from_lane, set()).add(kind)
    approaches: dict[str, Approach] = {}
    for eid, m in moves.items():
        per_lane = lanes[eid].values()
        approaches[eid] = Approach(
            eid,
            _heading(edges[eid]),
            float(edges[eid].getSpeed()),
            tuple(m["left"]),
            tuple(m["through"]),
            tuple(m["right"]),
            sum("through" in k for k in per_lane),
            sum("left" in k for k in per_lane),
            any("left" in k and "through" in k for k in per_lane),
            sum(("through" in k or "right" in k) for k in per_lane),
        )
    if len(approaches) < 2:
        return Layout(approaches, [], {}, crossings, reason="fewer than two approaches")
    opposing: dict[str, str | None] = dict.fromkeys(approaches)
    ids = list(approaches)
    pairs = sorted(
        (
            abs(180.0 - _gap(approaches[a].heading_deg, approaches[b].heading_deg)),
            a,
            b,
        )
        for i, a in enumerate(ids)
        for b in ids[i + 1 :]
    )
    for off, a, b in pairs:
        if off <= opposing_tolerance_deg and opposing[a] is None and opposing[b] is None:
            opposing[a], opposing[b] = b, a
    axes: list[list[str]] = []
    for a in ids:
        if any(a in axis for axis in axes):
            continue
        other = opposing[a]
        axes.append([a] if other is None else [a, other])
    if len(axes) != 2:
        return Layout(approaches, axes, opposing, crossings, reason=f"{len(axes)} axes (needs two)")
    h = [approaches[axis[0]].heading_deg for axis in axes]
    if _gap(h[0], h[1]) < 180.0 - opposing_tolerance_deg and (
        len(axes[0]) == 1 and len(axes[1]) == 1
    ):
        return Layout(approaches, axes, opposing, crossings, reason="two approaches that diverge")
    return Layout(approaches, axes, opposing, crossings)


def left_turn_warrants(
    signal: Signal,
    flows: Mapping[int, float],
    *,
    net: Any,
    volume_veh_h: float = 240.0,
    cross_products: Sequence[float] = CROSS_PRODUCT,
    opposing_lanes_protected: int = 4,
    opposing_speed_ms: float = 20.0,
    layout: Layout | None = None,
) -> dict[str, LeftTurnWarrant]:
    """Check the protected-left warrants of every approach with a left turn.

    Parameters
    ----------
    signal
        The signal.
    flows
        Peak-hour flow per link index, pcu/h (compared with veh/h thresholds as is).
    net
        The SUMO network.
    volume_veh_h
        Left-turn volume warrant, veh/h (HCM, as FHWA TSTM 2nd ed. section 4.5.1 gives it: 240).
    cross_products
        Cross-product thresholds with 1, 2 and 3+ opposing lanes (HCM: 50,000, 90,000,
        110,000).
    opposing_lanes_protected
        Opposing through lanes from which the left is protected only (FHWA TSTM 2nd ed.
        section 4.5.1: 4).
    opposing_speed_ms
        Opposing speed from which the left is protected only, m/s (45 mph = 20.1 m/s).
    layout
        The junction's layout, when already read.

    Returns
    -------
    dict
        Warrant per approach (incoming edge id) that has a left turn.

    Raises
    ------
    SignalError
        When a flow is negative or a threshold is not positive.
    """
    if volume_veh_h <= 0 or len(cross_products) != 3 or min(cross_products) <= 0:
        raise SignalError(
            "thresholds must be positive (three cross products)", parameter="cross_products"
        )
    bad = [k for k, v in flows.items() if v < 0 or not math.isfinite(v)]
    if bad:
        raise SignalError(f"negative or non-finite flows on links {bad[:5]}", parameter="flows")
    lay = layout or junction_layout(signal, net)
    out: dict[str, LeftTurnWarrant] = {}
    for eid, ap in lay.approaches.items():
        if not ap.left:
            continue
        left = sum(flows.get(j, 0.0) for j in ap.left)
        opp_id = lay.opposing.get(eid)
        if opp_id is None:
            out[eid] = LeftTurnWarrant(
                eid, None, left, 0.0, 0, 0.0, 0.0, 0.0, ("no opposing approach",), "protected"
            )
            continue
        opp = lay.approaches[opp_id]
        opposing = sum(flows.get(j, 0.0) for j in (*opp.through, *opp.right))
        n = opp.opposing_lanes
        threshold = cross_products[min(max(n, 1), 3) - 1]
        cross = left * opposing
        reasons: list[str] = []
        if left >= volume_veh_h:
            reasons.append(f"left volume {left:.0f} >= {volume_veh_h:g} veh/h")
        if cross >= threshold:
            reasons.append(f"cross product {cross:.0f} >= {threshold:g} ({n} opposing lanes)")
        only: list[str] = []
        if n >= opposing_lanes_protected:
            only.append(f"{n} opposing lanes >= {opposing_lanes_protected}")
        if opp.speed_ms >= opposing_speed_ms and left > 0:
            only.append(f"opposing speed {opp.speed_ms:.1f} >= {opposing_speed_ms:g} m/s")
        if ap.left_lanes >= 2 and (reasons or only):
            only.append(f"{ap.left_lanes} left-turn lanes")
        mode: Mode = "permissive"
        if only and left > 0:
            mode = "protected"
        elif reasons:
            mode = "protected-permissive"
        out[eid] = LeftTurnWarrant(
            eid,
            opp_id,
            left,
            opposing,
            n,
            float(opp.speed_ms),
            cross,
            threshold,
            (*reasons, *only) if mode != "permissive" else (),
            mode,
        )
    return out


def left_turn_phasing(
    signal: Signal,
    flows: Mapping[int, float],
    *,
    net: Any,
    volume_veh_h: float = 240.0,
    cross_products: Sequence[float] = CROSS_PRODUCT,
    opposing_lanes_protected: int = 4,
    opposing_speed_ms: float = 20.0,
) -> dict[str, Mode]:
    """Choose each approach's left-turn mode by the HCM / FHWA warrants.

    Parameters
    ----------
    signal
        The signal.
    flows
        Peak-hour flow per link index, pcu/h.
    net
        The SUMO network (approach geometry, opposing pairs).
    volume_veh_h, cross_products, opposing_lanes_protected, opposing_speed_ms
        Warrant thresholds (see :func:`left_turn_warrants`; defaults: the HCM's, as the FHWA
        Traffic Signal Timing Manual 2nd ed. section 4.5.1 gives them).

    Returns
    -------
    dict
        ``permissive``, ``protected`` or ``protected-permissive`` per approach (incoming edge
        id) that has a left turn.

    Raises
    ------
    SignalError
        On negative flows or non-positive thresholds.
    """
    found = left_turn_warrants(
        signal,
        flows,
        net=net,
        volume_veh_h=volume_veh_h,
        cross_products=cross_products,
        opposing_lanes_protected=opposing_lanes_protected,
        opposing_speed_ms=opposing_speed_ms,
    )
    return {eid: w.mode for eid, w in found.items()}


@dataclass(frozen=True)
class PhaseDesign:
    """A signal's new phase sequence, or why its base program is kept.

    Attributes
    ----------
    signal
        Signal id.
    program
        The new (untimed: initial greens) program, or None when the base is kept.
    modes
        Left-turn mode per approach.
    warrants
        Warrant figures per approach.
    sequence
        What each green phase serves, in order (``"lead-left A"`` ...).
    reason
        Why the base program is kept (empty when changed).
    yielding
        Links turned from ``G`` to ``g`` because a green foe has priority over them.
    """

    signal: str
    program: Program | None
    modes: dict[str, Mode]
    warrants: dict[str, LeftTurnWarrant]
    sequence: tuple[str, ...] = ()
    reason: str = ""
    yielding: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the design as JSON."""
        return {
            "signal": self.signal,
            "changed": self.program is not None,
            "reason": self.reason,
            "modes": dict(self.modes),
            "warrants": {k: w.to_json() for k, w in self.warrants.items()},
            "sequence": list(self.sequence),
            "yielding_links": list(self.yielding),
        }


def _request_index(net: Any, signal: Signal) -> dict[int, tuple[Any, int]]:
    """Map a signal's link indices to (junction, request index) (``<request index=>``).

    Vehicle connections are numbered as SUMO numbers them (incoming lanes in order, their
    connections in order, walking areas left out; sumolib's ``Node.getLinkIndex``); crossings
    follow in the order of their ids (``:<junction>_c0``, ``_c1`` ...), as netconvert writes them.
    A joined signal controls several junctions; each link is numbered in its own.
    """
    tls = net.getTLS(signal.id)
    out: dict[int, tuple[Any, int]] = {}
    crossing_lanes: dict[str, dict[str, int]] = {}
    for in_lane, out_lane, index in tls.getConnections():
        edge = in_lane.getEdge()
        crossing = _crossing_of(net, edge.getID(), out_lane.getEdge().getID())
        if crossing is not None:
            node_id = crossing.getID()[1:].rsplit("_c", 1)[0]
            crossing_lanes.setdefault(node_id, {})[crossing.getID()] = index
            continue
        node = edge.getToNode()
        for c in in_lane.getOutgoing():
            if c.getToLane() is out_lane and c.getTLLinkIndex() == index:
                k = node.getLinkIndex(c)
                if k >= 0:
                    out[index] = (node, k)

    def number(lane_id: str) -> int:
        tail = lane_id.split("_c")[-1].split("_")[0]
        return int(tail) if tail.isdigit() else 0

    for node_id, lanes in crossing_lanes.items():
        if not net.hasNode(node_id):
            continue
        node = net.getNode(node_id)
        vehicles = sum(
            1
            for lane_id in node._incLanes
            if not lane_id.startswith(":")
            for c in net.getLane(lane_id).getOutgoing()
            if c.getToLane().getEdge().getFunction() != "walkingarea"
        )
        for position, lane_id in enumerate(sorted(lanes, key=number), start=vehicles):
            out[lanes[lane_id]] = (node, position)
    return out


def foe_pairs(signal: Signal, net: Any) -> dict[tuple[int, int], int]:
    """Return the conflicting link pairs of a signal's junction(s) and who yields.

    Parameters
    ----------
    signal
        The signal.
    net
        The SUMO network, read with its junction logic (``<request foes= response=>``).

    Returns
    -------
    dict
        ``(i, j)`` (link indices of one junction, ``i < j``) -> the link that must yield to
        the other by the junction's response (``-1`` when neither does: a crossing conflict).
    """
    request = _request_index(net, signal)
    out: dict[tuple[int, int], int] = {}
    items = sorted(request.items())
    for a, (i, (node, ri)) in enumerate(items):
        foes = node._foes
        response = node._prohibits
        for j, (other, rj) in items[a + 1 :]:
            if other is not node or ri not in foes or rj not in foes:
                continue
            if foes[ri][-(rj + 1)] != "1" and foes[rj][-(ri + 1)] != "1":
                continue
            if response[ri][-(rj + 1)] == "1":
                out[i, j] = i
            elif response[rj][-(ri + 1)] == "1":
                out[i, j] = j
            else:
                out[i, j] = -1
    return out


def _changes(
    greens: Sequence[str], names: Sequence[str], yellow_s: float, all_red_s: float
) -> list[Phase]:
    """Greens in cycle order, each followed by yellow and all-red for links that lose green."""
    phases: list[Phase] = []
    n = len(greens)
    for k, (state, name) in enumerate(zip(greens, names, strict=True)):
        phases.append(Phase(20.0, state, name))
        nxt = greens[(k + 1) % n]
        kept = [a in "Gg" and a == b for a, b in zip(state, nxt, strict=True)]
        losing = [a in "Gg" and not keep for a, keep in zip(state, kept, strict=True)]
        if not any(losing):
            continue
        yellow = "".join(
            a if keep else "y" if lose else "r"
            for a, keep, lose in zip(state, kept, losing, strict=True)
        )
        phases.append(Phase(yellow_s, yellow))
        if all_red_s > 0:
            red = "".join(a if keep else "r" for a, keep in zip(state, kept, strict=True))
            phases.append(Phase(all_red_s, red))
    return phases


def protected_program(
    signal: Signal,
    net: Any,
    flows: Mapping[int, float],
    *,
    yellow_s: float = 3.0,
    all_red_s: float = 2.0,
    program_id: str = "phased",
    modes: Mapping[str, Mode] | None = None,
) -> PhaseDesign:
    """Build a dual-ring style program with leading protected lefts where warranted.

    Per axis (up to two opposing approaches): a leading protected-left phase (both opposing
    lefts ``G``, all throughs red) when both lefts are warranted and have lanes of their own;
    a lead phase of one approach (its left, through and right ``G``, the opposing through
    red) when only one is, or when a warranted left shares its lane with the through; split
    phases (each approach on its own) when a protected-only left shares its lane with the
    through. Then the through phase (throughs and rights ``G``; lefts ``g`` when
    permissive or protected-permissive, ``r`` when protected only). Right turns are green with
    their approach's through; crossings are green in through phases when no traffic leaves
    the roads they cross. Every green is followed by a yellow for the links that lose green
    and an all-red (the FHWA Traffic Signal Timing Manual's change and clearance intervals).
    Finally a ``G`` whose movement must yield to a green foe (the junction's response)
    becomes ``g``; two green foes with no priority between them are refused.

    Parameters
    ----------
    signal
        The signal (its links; its base program is not used).
    net
        The SUMO network (geometry and junction logic).
    flows
        Peak-hour flow per link index, pcu/h (for the warrants).
    yellow_s
        Yellow change interval, s (FHWA TSTM 2nd ed. section 5.4: 3-6 s).
    all_red_s
        Red clearance interval, s (0 for none).
    program_id
        Id of the new program.
    modes
        Left-turn modes to use instead of the warrants' (approach -> mode).

    Returns
    -------
    PhaseDesign
        The program with initial greens of 20 s (time it with Webster), or the reason the
        base program is kept.

    Raises
    ------
    SignalError
        When the yellow or all-red time is out of range.
    """
    if not 2.0 <= yellow_s <= 10.0:
        raise SignalError("yellow must be 2-10 s", parameter="yellow_s")
    if not 0.0 <= all_red_s <= 10.0:
        raise SignalError("all-red must be 0-10 s", parameter="all_red_s")
    layout = junction_layout(signal, net)
    if layout.reason:
        return PhaseDesign(signal.id, None, {}, {}, reason=layout.reason)
    warrants = left_turn_warrants(signal, flows, net=net, layout=layout)
    chosen: dict[str, Mode] = {k: w.mode for k, w in warrants.items()}
    if modes:
        unknown = [k for k in modes if k not in chosen]
        if unknown:
            raise SignalError(f"no left turn from approaches {unknown}", parameter="modes")
        chosen |= dict(modes)
    size = signal.size or (max(signal.links) + 1)
    aps = layout.approaches
    pairs = foe_pairs(signal, net)
    # a left the junction logic never lets filter (no priority against the opposing traffic)
    # cannot be permissive: SUMO would not make it yield
    for eid, ap in aps.items():
        opp = layout.opposing.get(eid)
        if opp is None or chosen.get(eid) == "protected" or not ap.left:
            continue
        opposed = {*aps[opp].through, *aps[opp].right}
        if any(
            loser == -1 and ((i in ap.left and j in opposed) or (j in ap.left and i in opposed))
            for (i, j), loser in pairs.items()
        ):
            chosen[eid] = "protected"
            w = warrants[eid]
            warrants[eid] = replace(
                w,
                mode="protected",
                reasons=(*w.reasons, "the junction gives the left no priority to yield by"),
            )
    greens: list[str] = []
    names: list[str] = []
    through_phases: list[int] = []

    def state(green: Mapping[int, str]) -> str:
        return "".join(green.get(j, "r") for j in range(size))

    for axis in layout.axes:
        warranted = [
            e
            for e in axis
            if aps[e].left and layout.opposing[e] is not None and chosen.get(e) != "permissive"
        ]
        # a protected-only left on a lane it shares with the through cannot lead and then
        # wait on red in the through phase (it blocks the lane): each approach gets its own
        split = any(aps[e].shared_left and chosen[e] == "protected" for e in warranted)
        if split:
            for e in axis:
                greens.append(
                    state(
                        dict.fromkeys((*aps[e].left, *aps[e].through), "G")
                        | {j: "g" for j in aps[e].right}
                    )
                )
                names.append(f"split {e}")
                through_phases.append(len(greens) - 1)
            continue
        if len(warranted) == 2 and not any(aps[e].shared_left for e in warranted):
            greens.append(state({j: "G" for e in warranted for j in aps[e].left}))
            names.append(f"lead-left {' '.join(warranted)}")
        else:
            for e in warranted:
                greens.append(
                    state(
                        dict.fromkeys((*aps[e].left, *aps[e].through), "G")
                        | {j: "g" for j in aps[e].right}
                    )
                )
                names.append(f"lead {e}")
        through: dict[int, str] = {}
        for e in axis:
            ap = aps[e]
            through |= dict.fromkeys(ap.through, "G") | dict.fromkeys(ap.right, "g")
            if layout.opposing[e] is None:
                through |= dict.fromkeys(ap.left, "G")
                continue
            mode = chosen.get(e, "permissive")
            left = "r" if mode == "protected" else "g"
            through |= dict.fromkeys(ap.left, left)
        greens.append(state(through))
        names.append(f"through {' '.join(axis)}")
        through_phases.append(len(greens) - 1)
    # crossings: green in through phases when no traffic leaves the roads they cross
    crossing_state = [list(s) for s in greens]
    for k in through_phases:
        moving = {
            signal.links[j].from_edge
            for j, c in enumerate(greens[k])
            if c in "Gg" and j in signal.links
        }
        for j, crossed in layout.crossings.items():
            if not crossed & moving:
                crossing_state[k][j] = "G"
    greens = ["".join(s) for s in crossing_state]
    # conflicts: a G that must yield to a green foe becomes g; unprioritised foes are refused
    yielding: set[int] = set()
    fixed: list[str] = []
    for s in greens:
        chars = list(s)
        for (i, j), loser in pairs.items():
            if chars[i] not in "Gg" or chars[j] not in "Gg":
                continue
            if loser == -1:
                return PhaseDesign(
                    signal.id,
                    None,
                    chosen,
                    warrants,
                    reason=f"links {i} and {j} conflict with no priority between them",
                )
            if chars[loser] == "G":
                chars[loser] = "g"
                yielding.add(loser)
        if "G" not in chars:
            # a phase of minor greens only: those with no green foe at all go first
            free = {
                k
                for k, c in enumerate(chars)
                if c == "g"
                and not any(k in pair and chars[pair[0] + pair[1] - k] in "Gg" for pair in pairs)
            }
            chars = ["G" if k in free else c for k, c in enumerate(chars)]
        fixed.append("".join(chars))
    phases = _changes(fixed, names, yellow_s, all_red_s)
    return PhaseDesign(
        signal.id,
        Program(program_id, tuple(phases)),
        chosen,
        warrants,
        tuple(names),
        yielding=tuple(sorted(yielding)),
    )


def inner_links(signal: Signal, net: Any) -> tuple[int, ...]:
    """Return the links of a joined signal that leave an edge inside the cluster.

    Parameters
    ----------
    signal
        The signal.
    net
        The SUMO network.

    Returns
    -------
    tuple of int
        Link indices whose incoming edge runs between two junctions of the signal (empty for
        a signal of one junction).
    """
    nodes = {
        net.getEdge(k.from_edge).getToNode().getID()
        for k in signal.links.values()
        if not k.from_edge.startswith(":")
    }
    return tuple(
        k.index
        for k in signal.links.values()
        if not k.from_edge.startswith(":")
        and net.getEdge(k.from_edge).getFromNode().getID() in nodes
    )


def open_inner_links(
    signal: Signal, net: Any, *, program_id: str = "inner", min_yellow_s: float = 3.0
) -> Program | None:
    """Give a joined signal's inner links green wherever the junction logic allows it.

    A joined cluster's inner edges are short: when their links are red while the links
    feeding them are green, the queue spills back across the cluster's other junction and
    locks it. Each inner link is turned green in every phase (yellows too) where it
    conflicts with no link showing green or yellow (``G``), or where it must yield to every
    such foe by the junction's response (``g``); a foe without a priority between them keeps
    it red. A link never turns from green to red: opened in a change interval (at least
    ``min_yellow_s`` long) just before a red, it shows yellow there; otherwise it is not
    opened there (nor, in turn, in the phases before that lead into it). Phase durations are
    kept. This is not one of the HCM warrants: it follows what the city's own plans of
    Bologna do at such clusters (their inner links are green almost all the cycle).

    Parameters
    ----------
    signal
        The signal with its base program.
    net
        The SUMO network (junction logic).
    program_id
        Id of the new program.
    min_yellow_s
        Shortest yellow an opened link may end with, s (MUTCD 2009 section 4D.26: 3 to 6 s).

    Returns
    -------
    Program or None
        The program, or None when the signal has no inner link or none could be opened.
    """
    inner = inner_links(signal, net)
    if not inner:
        return None
    foes: dict[int, list[tuple[int, int]]] = {}
    for (i, j), loser in foe_pairs(signal, net).items():
        foes.setdefault(i, []).append((j, loser))
        foes.setdefault(j, []).append((i, loser))
    base = [list(p.state) for p in signal.program.phases]
    states = [list(p.state) for p in signal.program.phases]
    for chars in states:
        for j in inner:
            if j >= len(chars) or chars[j] in "GgOo":
                continue
            live = [(k, loser) for k, loser in foes.get(j, []) if chars[k] not in "rRsuoO"]
            if any(loser != j for _, loser in live):
                continue
            chars[j] = "g" if live else "G"
    # never green straight to red: a link opened (G, no green foe) in a change interval (a
    # phase that is not a main green) whose next phase shows it red shows yellow instead;
    # any other opened link followed by red goes back to what the base program showed
    n = len(states)
    change = [not p.is_green and p.duration >= min_yellow_s for p in signal.program.phases]
    again = True
    while again:
        again = False
        for i in range(n):
            nxt = states[(i + 1) % n]
            for j in inner:
                if states[i][j] != base[i][j] and states[i][j] in "Gg" and nxt[j] in "rR":
                    states[i][j] = "y" if change[i] and states[i][j] == "G" else base[i][j]
                    again = True
    if states == base:
        return None
    phases = tuple(
        replace(p, state="".join(chars))
        for p, chars in zip(signal.program.phases, states, strict=True)
    )
    return replace(signal.program, id=program_id, phases=phases)


@dataclass
class PhasedPlan(Plan):
    """A plan whose signals may have new phase sequences, with the reasons per signal.

    Attributes
    ----------
    designs
        The phase design per signal (changed or kept, warrants per approach).
    path
        The SUMO additional file written, if any.
    infeasible
        Signals whose timed design is over capacity: the sum of critical flow ratios
        ``Y >= 1`` (Webster 1958: no cycle serves the demand; it gets the longest cycle).
    """

    designs: dict[str, PhaseDesign] = field(default_factory=dict)
    path: Path | None = None
    infeasible: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the plan as JSON: the timings plus the phasing report."""
        out = super().to_json()
        out["phasing"] = {
            "changed": sorted(k for k, d in self.designs.items() if d.program is not None),
            "kept": {k: d.reason for k, d in self.designs.items() if d.program is None},
            "signals": [d.to_json() for d in self.designs.values()],
            "infeasible": {k: round(y, 3) for k, y in self.infeasible.items()},
        }
        return out


def design_phases(
    scenario: sumo.Scenario | str | os.PathLike[str],
    *,
    base: str = "network",
    settings: WebsterSettings | None = None,
    yellow_s: float = 3.0,
    all_red_s: float = 2.0,
    retime_kept: bool = True,
    output: str | os.PathLike[str] | None = None,
    program_id: str = "phased",
    open_inner: bool = False,
    protect_lefts: bool = True,
) -> PhasedPlan:
    """Design left-turn phasing for every signal of a scenario and time it with Webster.

    Parameters
    ----------
    scenario
        The scenario, or its ``.sumocfg``.
    base
        Programs of the signals that are kept: ``network`` (netconvert's) or ``scenario``.
    settings
        Webster's inputs (the twin's defaults when omitted).
    yellow_s, all_red_s
        Change and clearance intervals of the new programs, s.
    retime_kept
        Time the kept signals' base programs with Webster too (else they run as they are).
    output
        When given, the SUMO additional file to write the programs to.
    program_id
        Program id written.
    open_inner
        Give the inner links of joined clusters (kept signals) green wherever the junction
        logic allows (:func:`open_inner_links`).
    protect_lefts
        Re-phase the signals whose lefts the warrants protect (False: only ``open_inner``).

    Returns
    -------
    PhasedPlan
        Timings, the phasing report per signal and the file written. As
        :func:`routing.signals.plans.optimise` does, signals whose base program is actuated
        are left as they run (``kept``, not timed, not written), and a signal whose base
        program HCM predicts a lower mean delay than the new timing
        (:func:`routing.signals.webster.predicted_delay`, HCM 2010 eq. 18-19 to 18-21) keeps
        its base (``kept: base predicted better``); designs over capacity (``Y >= 1``) are
        listed in ``infeasible``.

    Raises
    ------
    SignalError
        When the scenario cannot be read, has no traffic lights, or ``base`` is unknown.
    """
    if base not in ("scenario", "network"):
        raise SignalError("base must be 'scenario' or 'network'", parameter="base")
    sc = scenario if isinstance(scenario, sumo.Scenario) else sumo.read_scenario(scenario)
    s = settings or WebsterSettings()
    net = sc.read_net()
    if not sumo.signals_of(net):
        raise SignalError("the scenario has no traffic lights", parameter="scenario")
    signals, flows = scenario_signals(sc, base=base)
    plan = PhasedPlan({}, s)
    for sid, sig in signals.items():
        f = flows.get(sid, {})
        if s.cycle_s is None and sig.program.actuated:
            # the same rule as plans.optimise: a fixed-time design replacing actuated control
            # makes it worse, so the program is left as it runs and the plan says so
            why = "kept: an actuated program (a fixed-time design does not replace it)"
            plan.kept[sid] = why
            plan.designs[sid] = PhaseDesign(sid, None, {}, {}, reason=why)
            continue
        if protect_lefts:
            design = protected_program(
                sig, net, f, yellow_s=yellow_s, all_red_s=all_red_s, program_id=program_id
            )
        else:
            design = PhaseDesign(sid, None, {}, {}, reason="left-turn phasing not asked for")
        if design.program is None and not design.reason:
            design = PhaseDesign(sid, None, design.modes, design.warrants, reason="unchanged")
        if design.program is not None:
            opposed = [w for w in design.warrants.values() if w.opposing is not None]
            if not any(w.mode != "permissive" for w in opposed):
                design = PhaseDesign(
                    sid,
                    None,
                    design.modes,
                    design.warrants,
                    reason="no opposed left turn warrants protection",
                )
        opened = None
        if design.program is None and open_inner:
            opened = open_inner_links(sig, net, program_id=program_id)
            if opened is not None:
                design = replace(
                    design,
                    program=opened,
                    sequence=("base program, inner links opened",),
                    reason="",
                )
        rephased = design.program is not None and opened is None
        plan.designs[sid] = design
        program = design.program
        if not rephased and not retime_kept:
            if program is not None:  # inner links opened: the base timing kept
                plan.timings[sid] = SignalTiming(sid, program, program.cycle, {}, {}, 0.0, 0.0)
            continue
        # opened inner links are timed as their base program (Webster's stages are the
        # base's main greens), then the base's new durations carry over phase by phase
        to_time = sig.program if opened is not None else (program or sig.program)
        timed = Signal(sig.id, sig.links, to_time, sig.active, sig.lon, sig.lat)
        timing: SignalTiming | None = webster(timed, f, s) if f else None
        if timing is None:
            plan.idle.append(sid)
            if program is not None:
                plan.timings[sid] = SignalTiming(sid, program, program.cycle, {}, {}, 0.0, 0.0)
            continue
        kept = base_if_better(sig, f, s, timing)
        if kept is not None:
            base_timing, why = kept
            plan.kept[sid] = why
            if opened is not None:  # the opened program carries the base's durations
                base_timing = replace(base_timing, program=opened)
            else:
                plan.designs[sid] = replace(design, program=None, reason=why)
            plan.timings[sid] = base_timing
            continue
        if sum(timing.critical_ratios.values()) >= 1.0:
            plan.infeasible[sid] = sum(timing.critical_ratios.values())
        if opened is not None:
            durations = {i: p.duration for i, p in enumerate(timing.program.phases)}
            timing = replace(
                timing, program=replace(opened.with_durations(durations), id=opened.id)
            )
        plan.timings[sid] = timing
    if output is not None:
        plan.path = sumo.write_additional(plan.timings.values(), output, program_id=program_id)
    return plan
