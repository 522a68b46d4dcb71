"""The twin's signals: SUMO networks into the layers, stored plans, corridors over the twin's roads.

The optimiser works on the ``signals`` layer: a signal imported from SUMO carries its links
and the peak-hour flow per link, so an area or a corridor is timed from the twin alone; the
plan is stored under a name and exported as a SUMO additional file. Green waves and emergency
corridors follow routes over the twin's road graph (the routing engine's).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import networkx as nx
import shapely

from layers.defaults import road_speeds_kmh
from layers.ingest import IngestReport, Progress, ingest_frames
from layers.queries import read_layer
from layers.settings import get_settings
from layers.signal_plans import check_name, get_plan, save_plan
from routing.paths import Route
from routing.signals import (
    CorridorSignal,
    Hold,
    Phase,
    Program,
    Signal,
    SignalError,
    WebsterSettings,
    additional_xml,
    green_window,
    maxband,
    optimise,
    plan_corridor,
    read_scenario,
)
from routing.signals.greenwave import band
from routing.signals.plans import signals_from_layer
from routing.signals.preemption import Edge
from routing.signals.sumo import network_frames

BBox = tuple[float, float, float, float]


def import_sumo(
    scenario: str | os.PathLike[str],
    *,
    base: str = "scenario",
    url: str | None = None,
    progress: Progress | None = None,
) -> list[IngestReport]:
    """Import a SUMO scenario's network into the roads, intersections and signals layers.

    One transaction for the three layers, source ``sumo:<scenario>``; importing again
    updates them. Signals keep their links and the peak-hour flows counted from the routes.

    Parameters
    ----------
    scenario
        The ``.sumocfg`` file.
    base
        Programs to store: ``scenario`` (its own plans) or ``network`` (the defaults).
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)``.

    Returns
    -------
    list of IngestReport
        One report per layer.
    """
    sc = read_scenario(scenario)
    frames = network_frames(sc, base=base)
    return ingest_frames(frames, source=f"sumo:{sc.name}", url=url, progress=progress)


def _signal_rows(url: str | None, bbox: BBox | None) -> list[dict[str, Any]]:
    frame = read_layer("signals", bbox=bbox, url=url)
    rows = frame.drop(columns="geometry").to_dict("records")
    for row, point in zip(rows, frame.geometry, strict=True):
        row["lon"], row["lat"] = float(point.x), float(point.y)
    return rows


def optimise_signals(
    *,
    name: str,
    graph: nx.MultiDiGraph,
    bbox: BBox | None = None,
    ids: Sequence[str] | None = None,
    greenwave: bool = False,
    settings: WebsterSettings | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Time an area's (or a corridor's) signals and store the plan under a name.

    Parameters
    ----------
    name
        The plan's name (a new version if it exists).
    graph
        The road graph (``City.road_graph()``), for the corridor's travel times.
    bbox
        ``(min lon, min lat, max lon, max lat)``: every signal inside.
    ids
        Signal ids; with ``greenwave`` their order is the corridor's.
    greenwave
        Coordinate the signals as one corridor: a common cycle and MAXBAND offsets.
    settings
        Webster's inputs (the twin's defaults when omitted).
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        The stored plan record (name, version, request, plan).

    Raises
    ------
    SignalError
        No signals in the area, unknown signals, signals without approach data, a corridor of
        fewer than two signals or whose signals the roads do not connect.
    """
    check_name(name)
    if bbox is None and not ids:
        raise SignalError("give an area (bbox) or signal ids", parameter="signals")
    rows = _signal_rows(url, bbox)
    signals, flows = signals_from_layer(rows)
    if ids:
        unknown = [i for i in ids if i not in signals]
        if unknown:
            raise SignalError(f"unknown signals: {', '.join(unknown[:10])}", parameter="signals")
        chosen = list(dict.fromkeys(ids))
    else:
        chosen = list(signals)
    if not chosen:
        raise SignalError("there are no signals in the area", parameter="bbox")
    s = settings or WebsterSettings()
    plan = optimise(signals, flows, settings=s, ids=chosen)
    corridor = None
    if greenwave:
        if len(chosen) < 2:
            raise SignalError("a green wave needs at least two signals", parameter="signals")
        cycle = max(t.cycle for t in plan.timings.values())
        plan = optimise(signals, flows, settings=replace(s, cycle_s=cycle), ids=chosen)
        members = {r["id"]: r for r in rows if r["id"] in chosen}
        corridor = _wave(chosen, members, {k: t.program for k, t in plan.timings.items()}, graph)
        for sid, offset in corridor["offsets_s"].items():
            t = plan.timings[sid]
            plan.timings[sid] = replace(t, program=replace(t.program, offset=offset))
        plan.bandwidth.append(corridor)
    request = {
        "bbox": list(bbox) if bbox else None,
        "signals": list(ids) if ids else None,
        "greenwave": greenwave,
        "settings": asdict(s),
    }
    return save_plan(name, plan.to_json(), request, url=url)


def _wave(
    chosen: Sequence[str],
    rows: Mapping[str, Mapping[str, Any]],
    programs: Mapping[str, Program],
    graph: nx.MultiDiGraph,
) -> dict[str, Any]:
    """MAXBAND over a corridor of the twin's signals, travel times from the road graph.

    The corridor is driven the fastest way from the first signal through each of the others in
    turn (:func:`_stop_lines`); each signal's green is that of the movement the corridor makes
    at the signal's first stop line on it. The offsets make the outbound band (the corridor's
    order) widest; the inbound band is that of the corridor driven back, when the roads lead
    back (else 0). Both bands are measured with the offsets as rounded for the plan.
    """
    signals, _ = signals_from_layer(rows.values())
    arcs: dict[str, tuple[int, int, float, float]] = {}
    for u, v, key, data in graph.edges(keys=True, data=True):
        arcs[_edge(str(key))] = (u, v, float(data["cost"]), float(data["length_m"]))
    out = _stop_lines(chosen, signals, arcs, graph)
    try:
        back = _stop_lines(list(reversed(chosen)), signals, arcs, graph)[::-1]
    except SignalError:  # the roads do not lead back: no inbound band
        back = None
    members: list[CorridorSignal] = []
    for i, sid in enumerate(chosen):
        window = green_window(programs[sid], out[i][0])
        window_in = green_window(programs[sid], back[i][0]) if back else (0.0, 0.0)
        members.append(CorridorSignal(sid, out[i][2], window, window_in))
    t_out = [t for _, t, _ in out]  # from the first signal to each
    t_in = [t for _, t, _ in back] if back else [0.0] * len(chosen)  # from the last to each
    cycle = programs[chosen[0]].cycle
    wave = maxband(
        members,
        cycle=cycle,
        travel_out_s=[b - a for a, b in itertools.pairwise(t_out)],
        travel_in_s=[a - b for a, b in itertools.pairwise(t_in)],
        weight_in=0.0,
    )
    offsets = [round(wave.offsets[sid], 1) for sid in chosen]
    out_s = band(members, offsets, t_out, cycle, inbound=False)
    in_s = band(members, offsets, t_in, cycle, inbound=True) if back else 0.0
    result = wave.to_json()
    result["offsets_s"] = dict(zip(chosen, offsets, strict=True))
    result["bandwidth_out_s"] = round(out_s, 2)
    result["bandwidth_in_s"] = round(in_s, 2)
    return result


def _stop_lines(
    chosen: Sequence[str],
    signals: Mapping[str, Signal],
    arcs: Mapping[str, tuple[int, int, float, float]],
    graph: nx.MultiDiGraph,
) -> list[tuple[list[int], float, float]]:
    """Drive a corridor of signals in order; return, per signal, where the corridor meets it.

    The corridor leaves the first signal by one of its links' outgoing roads and goes on, the
    fastest way, to a road into the next signal, then on from there to the next, and so on.
    For each signal: the links of the movement made at its first stop line on the way (at the
    first signal, a movement onto the corridor's first road; at the last, one out of the road
    it arrives by: straight ahead where there is one), and the seconds and metres from the
    first signal's stop line.
    """
    path: list[str] = []  # the corridor's roads (SUMO edges), from the first signal on
    arrivals: list[int] = []  # per later signal, the position in path of its approach road
    for a, b in itertools.pairwise(chosen):
        arrive = {k.from_edge for k in signals[b].links.values() if k.from_edge in arcs}
        if path:
            starts = [path[-1]]
        else:
            starts = sorted({k.to_edge for k in signals[a].links.values() if k.to_edge in arcs})
        leg = _fastest(starts, arrive, arcs, graph, start_counts=not path)
        if leg is None:
            raise SignalError(
                f"the corridor is not connected: no road leads from signal {a} to signal {b}",
                parameter="signals",
            )
        path += leg if not path else leg[1:]
        arrivals.append(len(path) - 1)
    seconds = list(itertools.accumulate(arcs[e][2] for e in path))
    metres = list(itertools.accumulate(arcs[e][3] for e in path))
    first = signals[chosen[0]].links.values()
    out = [(_movement([k for k in first if k.to_edge == path[0]]), 0.0, 0.0)]
    for sid, k in zip(chosen[1:], arrivals, strict=True):
        into = [link for link in signals[sid].links.values() if link.from_edge == path[k]]
        onward = [link for link in into if k + 1 < len(path) and link.to_edge == path[k + 1]]
        if not into:
            raise SignalError(
                f"signal {sid} controls no movement along the corridor", parameter="signals"
            )
        out.append((_movement(onward or into), seconds[k], metres[k]))
    return out


def _movement(links: Sequence[Any]) -> list[int]:
    """Return the link indices of one movement: straight ahead if there is one, else the first."""
    if not links:
        raise SignalError("a signal controls no movement along the corridor", parameter="signals")
    ahead = [k for k in links if k.direction == "s"] or list(links)
    edges = (ahead[0].from_edge, ahead[0].to_edge)
    return sorted(k.index for k in ahead if (k.from_edge, k.to_edge) == edges)


def _fastest(
    starts: Sequence[str],
    arrive: set[str],
    arcs: Mapping[str, tuple[int, int, float, float]],
    graph: nx.MultiDiGraph,
    *,
    start_counts: bool,
) -> list[str] | None:
    """Return the fastest roads from one of ``starts`` to one of ``arrive`` (both included).

    ``start_counts``: whether the start road's own time counts (else the way is measured from
    its end); a start road that is itself a road into the next signal is the whole way.
    """
    best: tuple[float, str, list[str]] | None = None
    for start in starts:
        own = arcs[start][2] if start_counts else 0.0
        if start in arrive:
            options = [(own, start, [start])]
        else:
            cost, paths = nx.single_source_dijkstra(graph, arcs[start][1], weight="cost")
            options = []
            for end in sorted(e for e in arrive if arcs[e][0] in cost):
                nodes = paths[arcs[end][0]]
                between = [
                    _edge(str(min(graph[u][v].items(), key=lambda kv: float(kv[1]["cost"]))[0]))
                    for u, v in itertools.pairwise(nodes)
                ]
                total = own + cost[arcs[end][0]] + arcs[end][2]
                options.append((total, start, [start, *between, end]))
        for option in options:
            if best is None or option[:2] < best[:2]:
                best = option
    return best[2] if best else None


def _edge(road_id: str) -> str:
    """Return the SUMO edge of an imported road (``<scenario>:<edge>``; ``:reverse`` arcs too)."""
    return road_id.removesuffix(":reverse").split(":", 1)[-1]


def plan_sumo(name: str, *, url: str | None = None) -> str:
    """Return a stored plan as a SUMO additional file (``tlLogic`` per signal)."""
    record = get_plan(name, url=url)
    if record is None:
        raise LookupError(name)
    items = []
    for t in record["plan"]["signals"]:
        phases = tuple(Phase(float(p["duration_s"]), str(p["state"])) for p in t["phases"])
        sid = str(t["signal"]).split(":tls:", 1)[-1]
        items.append((sid, Program(name, phases, float(t["offset_s"]))))
    return additional_xml(items)


def _driven_ends(
    sequence: Sequence[str], ends: Mapping[str, tuple[int, int]], edge: str
) -> tuple[int, int]:
    """Return the (entry, exit) nodes of a road as the route drives it.

    A two-way road may be driven against its digitised direction: the exit is the end the
    next road starts from (or, for the last road, the end the previous one does not reach).
    """
    source, target = ends[edge]
    at = sequence.index(edge)
    after = ends.get(sequence[at + 1]) if at + 1 < len(sequence) else None
    before = ends.get(sequence[at - 1]) if at > 0 else None
    if after is not None:
        if target in after:
            return source, target
        if source in after:
            return target, source
    if before is not None and target in before and source not in before:
        return target, source
    return source, target


def emergency_corridor(
    route: Route, *, depart_s: float = 0.0, url: str | None = None
) -> list[Hold]:
    """Plan the green corridor for an emergency route over the twin's roads.

    Parameters
    ----------
    route
        The route (``City.route(..., profile="emergency")``).
    depart_s
        Departure on the plans' clock, s.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of Hold
        The signals to hold, when, and the phase each rejoins.
    """
    # only the route's surroundings are read, not the city's every road and signal
    xmin, ymin, xmax, ymax = route.geometry.buffer(0.001).bounds
    area: BBox = (xmin, ymin, xmax, ymax)
    roads = read_layer("roads", bbox=area, url=url)
    roads = roads[roads["id"].isin(route.road_ids)]
    metric = roads.to_crs(get_settings().metric_crs)
    edges: dict[str, Edge] = {}
    ends: dict[str, tuple[int, int]] = {}
    # a road with no speed limit (null, NaN, pandas' NA) is driven at its class's speed, as
    # the router drives it (layers.defaults.road_speed_kmh: the routing SQL's fallback)
    speeds = road_speeds_kmh(roads["maxspeed"], roads.get("class"))
    for row, line, speed in zip(roads.itertuples(), metric.geometry, speeds, strict=True):
        edge = _edge(str(row.id))
        edges[edge] = Edge(float(shapely.length(line)), float(speed) / 3.6, frozenset())
        ends[edge] = (int(row.source_node), int(row.target_node))
    sequence = [_edge(r) for r in route.road_ids]
    sequence = [e for i, e in enumerate(sequence) if i == 0 or e != sequence[i - 1]]
    for a, b in itertools.pairwise(sequence):
        if a in edges and b in edges and _driven_ends(sequence, ends, a)[1] in ends[b]:
            edges[a] = replace(edges[a], successors=edges[a].successors | {b})
    signals, _ = signals_from_layer(_signal_rows(url, area))
    by_edge = {}
    for sid, sig in signals.items():
        for link in sig.links.values():
            by_edge[link.from_edge, link.to_edge] = sid
    on_route = {
        sid: signals[sid]
        for pair, sid in by_edge.items()
        if pair in set(itertools.pairwise(sequence))
    }
    if len(sequence) < 2:
        return []
    return plan_corridor(edges, on_route, sequence, depart=depart_s)
