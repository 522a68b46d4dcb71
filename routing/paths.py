"""Routes between points, the nearest units to an incident, and origin-destination matrices."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from scipy.sparse.csgraph import dijkstra
from shapely.ops import substring

from routing.network import RoadNetwork, RoutingError, Snap

Point = tuple[float, float]

_MATRIX_CHUNK = 100

#: Seconds from alarm to leaving the station, per resource kind (a common planning figure).
TURNOUT_S = {"fire_station": 80.0, "hospital": 60.0, "police": 30.0, "vehicle": 30.0}


@dataclass(frozen=True)
class Piece:
    """Part of one edge travelled, from one fraction along it to another."""

    edge: int
    start: float
    end: float


@dataclass
class Step:
    """One instruction of turn-by-turn directions."""

    maneuver: str
    name: str | None
    distance_m: float
    duration_s: float


@dataclass
class Route:
    """A route: duration, distance, the edges it uses, its line and its directions."""

    duration_s: float
    distance_m: float
    road_ids: list[str]
    edge_ids: list[int]
    geometry: shapely.LineString
    steps: list[Step] = field(default_factory=list)

    def to_geojson(self) -> dict[str, Any]:
        """Return the route as a GeoJSON Feature (EPSG:4326).

        Returns
        -------
        dict
            A Feature with ``duration_s``, ``distance_m``, ``road_ids``, ``edge_ids`` and
            ``steps`` properties.
        """
        return {
            "type": "Feature",
            "geometry": shapely.geometry.mapping(self.geometry),
            "properties": {
                "duration_s": round(self.duration_s, 3),
                "distance_m": round(self.distance_m, 2),
                "road_ids": self.road_ids,
                "edge_ids": self.edge_ids,
                "steps": [step.__dict__ for step in self.steps],
            },
        }


@dataclass
class Unit:
    """A resource that can reach an incident: its times and its route."""

    id: str
    kind: str
    name: str | None
    travel_s: float
    turnout_s: float
    route: Route

    @property
    def total_s(self) -> float:
        """Turnout plus travel time."""
        return self.travel_s + self.turnout_s


def _pieces(
    network: RoadNetwork,
    start: Snap,
    forward_out: bool,
    nodes: list[int],
    end: Snap,
    forward_in: bool,
) -> list[Piece]:
    """Pieces of a trip from ``start`` through ``nodes`` (node indices) to ``end``.

    ``forward_out``: the trip leaves its first edge towards that edge's target (else its
    source); ``forward_in``: it enters the last edge from that edge's source. These come from
    the search, not from node ids, which are ambiguous on a loop.
    """
    pieces = [Piece(start.edge, start.fraction, 1.0 if forward_out else 0.0)]
    for edge, direction in network.arcs(nodes):
        pieces.append(Piece(edge, 0.0, 1.0) if direction > 0 else Piece(edge, 1.0, 0.0))
    pieces.append(Piece(end.edge, 0.0 if forward_in else 1.0, end.fraction))
    return [p for p in pieces if p.start != p.end]


def _assemble(network: RoadNetwork, pieces: list[Piece]) -> Route:
    """Turn pieces into a route with its geometry, totals and steps."""
    duration = distance = 0.0
    coords: list[tuple[float, float]] = []
    for piece in pieces:
        share = abs(piece.end - piece.start)
        cost = (
            network.cost[piece.edge]
            if piece.end > piece.start
            else network.reverse_cost[piece.edge]
        )
        duration += share * cost
        distance += share * network.length_m[piece.edge]
        line = network.geometry[piece.edge]
        if piece.start == 0 and piece.end == 1:
            points = list(line.coords)
        elif piece.start == 1 and piece.end == 0:
            points = list(line.coords)[::-1]
        else:  # fractions are along the metric line, where the points were snapped
            part = substring(
                network.metric_geometry[piece.edge], piece.start, piece.end, normalized=True
            )
            xy = (
                np.array(part.coords)
                if part.geom_type == "LineString"
                else np.array([part.coords[0]] * 2)
            )
            lon, lat = network.to_lonlat.transform(xy[:, 0], xy[:, 1])
            points = list(zip(lon, lat, strict=True))
        coords.extend(
            (float(x), float(y))
            for x, y in (points[1:] if coords and coords[-1] == points[0] else points)
        )
    if len(coords) == 1:
        coords.append(coords[0])
    edges = list(dict.fromkeys(p.edge for p in pieces))
    return Route(
        duration_s=float(duration),
        distance_m=float(distance),
        road_ids=[str(network.road_id[e]) for e in edges],
        edge_ids=[int(network.edge_id[e]) for e in edges],
        geometry=shapely.LineString(coords),
        steps=_steps(network, pieces),
    )


def _bearing(network: RoadNetwork, piece: Piece, at_end: bool) -> float:
    line = network.metric_geometry[piece.edge]
    a, b = (piece.start, piece.end)
    step = 0.02 if b > a else -0.02
    t = b if at_end else a
    u = line.interpolate(min(max(t - step if at_end else t, 0), 1), normalized=True)
    v = line.interpolate(min(max(t if at_end else t + step, 0), 1), normalized=True)
    return math.degrees(math.atan2(v.x - u.x, v.y - u.y)) % 360


def _turn(change: float) -> str:
    change = (change + 180) % 360 - 180
    if abs(change) < 20:
        return "continue"
    side = "right" if change > 0 else "left"
    if abs(change) < 60:
        return f"slight {side}"
    if abs(change) < 150:
        return f"turn {side}"
    return "u-turn"


def _steps(network: RoadNetwork, pieces: list[Piece]) -> list[Step]:
    steps: list[Step] = []
    previous: Piece | None = None
    for piece in pieces:
        share = abs(piece.end - piece.start)
        cost = (
            network.cost[piece.edge]
            if piece.end > piece.start
            else network.reverse_cost[piece.edge]
        )
        name = network.name[piece.edge]
        name = str(name) if isinstance(name, str) and name else None
        if steps and previous is not None and name == steps[-1].name:
            steps[-1].distance_m += share * network.length_m[piece.edge]
            steps[-1].duration_s += share * cost
        else:
            maneuver = (
                "depart"
                if previous is None
                else _turn(_bearing(network, piece, False) - _bearing(network, previous, True))
            )
            steps.append(Step(maneuver, name, share * network.length_m[piece.edge], share * cost))
        previous = piece
    for step in steps:
        step.distance_m = round(float(step.distance_m), 1)
        step.duration_s = round(float(step.duration_s), 1)
    steps.append(Step("arrive", steps[-1].name if steps else None, 0.0, 0.0))
    return steps


def route(network: RoadNetwork, origin: Point, destination: Point) -> Route | None:
    """Fastest route between two points.

    Parameters
    ----------
    network
        The road network of the profile to use.
    origin, destination
        ``(lon, lat)``; each is snapped onto its nearest open road.

    Returns
    -------
    Route or None
        The route, or None when the destination cannot be reached (a normal answer).

    Raises
    ------
    RoutingError
        If a point is outside the city or too far from any road.
    """
    start = network.snap(*origin, parameter="from")
    end = network.snap(*destination, parameter="to")
    exits = network.exits(start)
    times, best, predecessors = network.search(exits)
    # (time, which entry: 0 from the edge's source, 1 from its target; -1 along one edge, node)
    options: list[tuple[float, int, int]] = [
        (times[node] + offset, i, node) for i, (node, offset) in enumerate(network.entries(end))
    ]
    direct = network.along(start, end)
    if direct is not None:
        options.append((direct[0], -1, -1))
    cost, kind, node = min(options)
    if not math.isfinite(cost):
        return None
    if kind < 0:
        return _assemble(network, [Piece(start.edge, start.fraction, end.fraction)])
    entry = kind
    row = int(best[node])
    nodes = network.node_path(predecessors[row], exits[row][0], node)
    return _assemble(network, _pieces(network, start, row == 0, nodes, end, entry == 0))


def nearest_units(
    network: RoadNetwork,
    incident: Point,
    resources: Sequence[dict[str, Any]],
    *,
    k: int = 3,
    turnout_s: dict[str, float] | None = None,
) -> list[Unit]:
    """Find the ``k`` resources that reach an incident first, each with its route.

    One search runs backwards from the incident over the reversed arcs; it gives every
    node's time *to* the incident, and so every resource's, at once.

    Parameters
    ----------
    network
        Road network (usually the emergency profile).
    incident
        ``(lon, lat)`` of the incident.
    resources
        Candidates: dicts with ``id``, ``kind``, ``name``, ``lon``, ``lat``.
    k
        How many to return.
    turnout_s
        Seconds from alarm to departure per kind; :data:`TURNOUT_S` by default.

    Returns
    -------
    list of Unit
        Up to ``k`` units, fastest (turnout + travel) first. Units that cannot reach the
        incident, or stand too far from a road, are left out.

    Raises
    ------
    RoutingError
        If ``k`` is not positive or the incident is outside the city or off the roads.
    """
    if k <= 0:
        raise RoutingError("k must be 1 or more", parameter="k")
    turnout = TURNOUT_S | (turnout_s or {})
    end = network.snap(*incident, parameter="incident")
    entries = network.entries(end)
    times, best, predecessors = network.search(entries, reverse=True)
    ranked: list[tuple[float, int, Snap, int, int]] = []
    for i, resource in enumerate(resources):
        try:
            start = network.snap(float(resource["lon"]), float(resource["lat"]))
        except RoutingError:
            continue
        options = [
            (times[node] + offset, node, j) for j, (node, offset) in enumerate(network.exits(start))
        ]
        direct = network.along(start, end)
        if direct is not None:
            options.append((direct[0], -1, -1))
        travel, node, exit_index = min(options)
        if math.isfinite(travel):
            ranked.append((travel + turnout.get(resource["kind"], 0.0), i, start, node, exit_index))
    ranked.sort(key=lambda item: (item[0], str(resources[item[1]]["id"])))
    units = []
    for _, i, start, node, exit_index in ranked[:k]:
        resource = resources[i]
        if node < 0:
            pieces = [Piece(start.edge, start.fraction, end.fraction)]
        else:
            row = int(best[node])
            backwards = network.node_path(predecessors[row], entries[row][0], node)
            pieces = _pieces(network, start, exit_index == 0, backwards[::-1], end, row == 0)
        trip = _assemble(network, pieces)
        units.append(
            Unit(
                str(resource["id"]),
                str(resource["kind"]),
                resource.get("name"),
                trip.duration_s,
                turnout.get(resource["kind"], 0.0),
                trip,
            )
        )
    return units


def od_matrix(
    network: RoadNetwork, origins: Sequence[Point], destinations: Sequence[Point]
) -> np.ndarray:
    """Travel times (s) from every origin to every destination; ``inf`` where unreachable.

    Parameters
    ----------
    network
        The road network.
    origins, destinations
        ``(lon, lat)`` points.

    Returns
    -------
    numpy.ndarray
        ``len(origins) x len(destinations)`` seconds.

    Raises
    ------
    RoutingError
        If a point is outside the city or off the roads, or a list is empty.
    """
    if not origins or not destinations:
        raise RoutingError(
            "origins and destinations must not be empty",
            parameter="origins" if not origins else "destinations",
        )
    starts = [network.snap(*p, parameter=f"origins[{i}]") for i, p in enumerate(origins)]
    ends = [network.snap(*p, parameter=f"destinations[{i}]") for i, p in enumerate(destinations)]
    entry_lists = [network.entries(e) for e in ends]
    entry_nodes = np.array([[e[0][0], e[-1][0]] for e in entry_lists])
    entry_offsets = np.array([[e[0][1], e[-1][1]] for e in entry_lists])
    result = np.full((len(starts), len(ends)), np.inf)
    for first in range(0, len(starts), _MATRIX_CHUNK):  # bounded memory: chunks of origins
        chunk = starts[first : first + _MATRIX_CHUNK]
        exit_lists = [network.exits(s) for s in chunk]
        nodes = sorted({node for exits in exit_lists for node, _ in exits})
        row_of = {node: i for i, node in enumerate(nodes)}
        base = np.atleast_2d(dijkstra(network.graph, directed=True, indices=nodes))
        for i, exits in enumerate(exit_lists):
            reach = np.min([base[row_of[node]] + offset for node, offset in exits], axis=0)
            result[first + i] = np.min(reach[entry_nodes] + entry_offsets, axis=1)
    by_edge: dict[int, list[int]] = {}
    for j, end in enumerate(ends):
        by_edge.setdefault(end.edge, []).append(j)
    for i, start in enumerate(starts):  # trips that stay on one edge
        for j in by_edge.get(start.edge, []):
            direct = network.along(start, ends[j])
            if direct is not None:
                result[i, j] = min(result[i, j], direct[0])
    return result
