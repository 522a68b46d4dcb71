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

from routing.network import BEARING_STEP, RoadNetwork, RoutingError, Snap

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
    arcs: list[tuple[int, int]],
    end: Snap,
    forward_in: bool,
) -> list[Piece]:
    """Pieces of a trip from ``start`` along ``arcs`` (``(edge, direction)``) to ``end``.

    ``forward_out``: the trip leaves its first edge towards that edge's target (else its
    source); ``forward_in``: it enters the last edge from that edge's source. These come from
    the search, not from node ids, which are ambiguous on a loop.
    """
    pieces = [Piece(start.edge, start.fraction, 1.0 if forward_out else 0.0)]
    for edge, direction in arcs:
        pieces.append(Piece(edge, 0.0, 1.0) if direction > 0 else Piece(edge, 1.0, 0.0))
    pieces.append(Piece(end.edge, 0.0 if forward_in else 1.0, end.fraction))
    return [p for p in pieces if p.start != p.end]


def _whole(piece: Piece) -> int:
    """1 for a whole edge travelled forwards, -1 backwards, 0 for part of one."""
    if piece.start == 0 and piece.end == 1:
        return 1
    if piece.start == 1 and piece.end == 0:
        return -1
    return 0


def _assemble(network: RoadNetwork, pieces: list[Piece]) -> Route:
    """Turn pieces into a route with its geometry, totals and steps.

    Whole edges take their points from the network's coordinate arrays (computed once at
    load), gathered for all of them at once; only partial pieces (the first and the last) are
    cut with a substring of the metric line. Totals add the pieces' shares one after the other,
    in the order travelled, as they always have (``numpy.cumsum`` adds in that order).
    """
    count = len(pieces)
    edge = np.fromiter((p.edge for p in pieces), np.int64, count)
    start = np.fromiter((p.start for p in pieces), float, count)
    end = np.fromiter((p.end for p in pieces), float, count)
    forward = end > start
    share = np.abs(end - start)
    cost = np.where(forward, network.cost[edge], network.reverse_cost[edge])
    durations = share * cost
    distances = share * network.length_m[edge]
    whole = ((start == 0) & (end == 1)) | ((start == 1) & (end == 0))
    parts: list[np.ndarray] = []
    first = 0
    while first < count:  # runs of whole pieces at once, partial pieces one by one
        if whole[first]:
            last = first
            while last + 1 < count and whole[last + 1]:
                last += 1
            parts.append(_whole_points(network, edge[first : last + 1], forward[first : last + 1]))
            first = last + 1
            continue
        piece = pieces[first]  # fractions are along the metric line, where points were snapped
        part = substring(
            network.metric_geometry[piece.edge], piece.start, piece.end, normalized=True
        )
        xy = (
            np.array(part.coords)
            if part.geom_type == "LineString"
            else np.array([part.coords[0]] * 2)
        )
        lon, lat = network.to_lonlat.transform(xy[:, 0], xy[:, 1])
        parts.append(np.column_stack([lon, lat]))
        first += 1
    kept: list[np.ndarray] = []
    for points in parts:  # a part starting where the one before ended drops that point
        if kept and kept[-1][-1, 0] == points[0, 0] and kept[-1][-1, 1] == points[0, 1]:
            points = points[1:]
        if len(points):
            kept.append(points)
    line = np.concatenate(kept) if kept else np.empty((0, 2))
    if len(line) == 1:
        line = np.concatenate([line, line])
    edges = list(dict.fromkeys(edge.tolist()))
    return Route(
        duration_s=float(np.cumsum(durations)[-1]) if count else 0.0,
        distance_m=float(np.cumsum(distances)[-1]) if count else 0.0,
        road_ids=[str(network.road_id[e]) for e in edges],
        edge_ids=[int(network.edge_id[e]) for e in edges],
        geometry=shapely.LineString(line),
        steps=_steps(network, pieces, durations.tolist(), distances.tolist()),
    )


def _whole_points(network: RoadNetwork, edge: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Lon/lat points of whole edges travelled one after the other (forwards or backwards).

    A piece starting on the very point the one before ended drops that point.
    """
    first = network.coord_start[edge]
    count = network.coord_start[edge + 1] - first
    ends = np.cumsum(count)
    starts = ends - count
    at = np.arange(ends[-1]) - np.repeat(starts, count)
    index = np.where(
        np.repeat(forward, count),
        np.repeat(first, count) + at,
        np.repeat(first + count - 1, count) - at,
    )
    points = network.coords[index]
    same = np.all(points[starts[1:]] == points[ends[:-1] - 1], axis=1)
    if same.any():
        keep = np.ones(len(points), dtype=bool)
        keep[starts[1:][same]] = False
        points = points[keep]
    return points


def _bearing(network: RoadNetwork, piece: Piece, at_end: bool) -> float:
    """Bearing (degrees from grid north) a piece is left at (``at_end``) or entered at.

    Taken between two points :data:`routing.network.BEARING_STEP` of the edge apart; whole
    edges read the bearings the network computed once at load, parts interpolate.
    """
    whole = _whole(piece)
    if whole:
        column = (0 if whole > 0 else 2) + (1 if at_end else 0)
        return float(network.bearings[piece.edge, column])
    line = network.metric_geometry[piece.edge]
    a, b = (piece.start, piece.end)
    step = BEARING_STEP if b > a else -BEARING_STEP
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


def _steps(
    network: RoadNetwork, pieces: list[Piece], durations: list[float], distances: list[float]
) -> list[Step]:
    """Turn-by-turn steps: one per run of pieces on the same street name."""
    steps: list[Step] = []
    previous: Piece | None = None
    names = network.name[[p.edge for p in pieces]].tolist() if pieces else []
    for piece, name, duration, distance in zip(pieces, names, durations, distances, strict=True):
        name = str(name) if isinstance(name, str) and name else None
        if steps and previous is not None and name == steps[-1].name:
            steps[-1].distance_m += distance
            steps[-1].duration_s += duration
        else:
            maneuver = (
                "depart"
                if previous is None
                else _turn(_bearing(network, piece, False) - _bearing(network, previous, True))
            )
            steps.append(Step(maneuver, name, distance, duration))
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
    found = network.shortest(exits, network.entries(end))
    direct = network.along(start, end)
    if direct is not None and (found is None or direct[0] <= found[0]):
        return _assemble(network, [Piece(start.edge, start.fraction, end.fraction)])
    if found is None:
        return None
    _, row, entry, arcs = found
    return _assemble(network, _pieces(network, start, row == 0, arcs, end, entry == 0))


def nearest_units(
    network: RoadNetwork,
    incident: Point,
    resources: Sequence[dict[str, Any]],
    *,
    k: int = 3,
    turnout_s: dict[str, float] | None = None,
) -> list[Unit]:
    """Find the ``k`` resources that reach an incident first, each with its route.

    Each resource's fastest trip to the incident comes from the network's exact
    point-to-point search (:meth:`RoadNetwork.shortest`: a contraction hierarchy query, a
    few hundredths of a millisecond), so the cost does not grow with the network's size.

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
    ranked: list[tuple[float, int, Snap, tuple[float, int, int, list[tuple[int, int]]] | None]]
    ranked = []
    for i, resource in enumerate(resources):
        try:
            start = network.snap(float(resource["lon"]), float(resource["lat"]), remember=True)
        except RoutingError:
            continue
        found = network.shortest(network.exits(start), entries, arcs=False)
        direct = network.along(start, end)
        if direct is not None and (found is None or direct[0] <= found[0]):
            travel, found = direct[0], None
        elif found is not None:
            travel = found[0]
        else:
            continue
        if math.isfinite(travel):
            ranked.append((travel + turnout.get(resource["kind"], 0.0), i, start, found))
    ranked.sort(key=lambda item: (item[0], str(resources[item[1]]["id"])))
    units = []
    for _, i, start, path in ranked[:k]:
        resource = resources[i]
        if path is None:
            pieces = [Piece(start.edge, start.fraction, end.fraction)]
        else:  # the same search again, now for its arcs (for k units, not every candidate)
            path = network.shortest(network.exits(start), entries)
            assert path is not None
            _, exit_index, entry_index, arcs = path
            pieces = _pieces(network, start, exit_index == 0, arcs, end, entry_index == 0)
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
