"""The road network as a compiled directed graph, read from ``routing_edges``.

The costs come from the ``routing_edges_all`` view (migration 0002), so the engine and
pgRouting see exactly the same graph. Point-to-point queries (:meth:`RoadNetwork.shortest`)
run on a contraction hierarchy built once per loaded network (:mod:`routing.hierarchy`; about
0.6 s for Malta's 57k edges, then a few hundredths of a millisecond a query), with exact
float64 costs; a copy with closures or live speeds keeps using it wherever its answer crosses
no changed edge and falls back to a bidirectional Dijkstra otherwise (measured in
``bench/city_scale_routing.py``: rebuilding the hierarchy on every change would cost more than
a thousand fallback searches). One-to-all searches (:meth:`RoadNetwork.search`: service areas,
coverage, matrices) run on a CSR matrix with ``scipy.sparse.csgraph``; closing edges rebuilds
the matrix from arrays in milliseconds.
Live speeds change costs the same way: :meth:`RoadNetwork.with_live_speeds` computes each
edge's cost by the view's own formula from its free-flow speed and the live speeds, without
reading the view again.
Points are snapped onto the nearest open edge at their position along it (like
``pgr_withPoints``), not to the nearest node.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import shapely
from psycopg import sql
from pyproj import Transformer
from scipy.sparse.csgraph import dijkstra

from layers import overlay
from layers.database import owner_cursor
from layers.errors import ParameterError
from layers.settings import get_settings
from routing.hierarchy import Bidirectional, Hierarchy, times_from

PROFILES = ("car", "emergency")
#: Points farther than this from every open road cannot be routed.
MAX_SNAP_M = 250.0
#: A snapped point this close (as a fraction) to an end of its edge stands on that node.
_AT_NODE = 1e-9
#: Arc costs closer than this (s) to the ones a hierarchy was built on count as unchanged.
_SAME_COST_S = 1e-9
#: Most snapped points a network remembers (see RoadNetwork.snap).
_REMEMBERED = 10_000
#: Fraction along an edge at which turn bearings are taken (2 % in from each end).
BEARING_STEP = 0.02


class _Root:
    """What a network and every copy made of it share: the arcs as loaded, and their hierarchy.

    The contraction hierarchy is built once, on first use, for the arcs of the network as it
    was loaded (free-flow costs, nothing closed); copies with closures or live speeds use it
    where their costs agree with it (see :meth:`RoadNetwork.shortest`).
    """

    def __init__(self, n: int, arcs: tuple[np.ndarray, ...]):
        self.n = n
        self.tail, self.head, self.weight, self.edge, self.direction = arcs
        self.key = self.tail.astype(np.int64) * n + self.head.astype(np.int64)
        self._hierarchy: Hierarchy | None = None
        self._lock = threading.Lock()

    def hierarchy(self) -> Hierarchy:
        with self._lock:
            if self._hierarchy is None:
                self._hierarchy = Hierarchy.build(self.n, self.tail, self.head, self.weight)
            return self._hierarchy


class RoutingError(ParameterError):
    """A routing request that cannot be answered as asked (bad point, profile, parameter)."""


@dataclass(frozen=True)
class Snap:
    """A point placed on an edge.

    Attributes
    ----------
    edge
        Edge index in the network.
    fraction
        Position along the edge, 0 at its source node, 1 at its target.
    distance_m
        Distance from the point to the edge.
    """

    edge: int
    fraction: float
    distance_m: float


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known.

    Parameters
    ----------
    profile
        Profile name.

    Returns
    -------
    str
        The profile.

    Raises
    ------
    RoutingError
        If the profile is not one of :data:`PROFILES`.
    """
    if profile not in PROFILES:
        raise RoutingError(
            f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}", parameter="profile"
        )
    return profile


# routing_edges_all's formula (migration 0010) over any relation with the roads table's columns
_EDGES_OVER = sql.SQL(
    """
WITH edges AS (
    SELECT r.vid AS id, r.id AS road_id, r.source_node AS source, r.target_node AS target,
           r.oneway, r.name, r.class, r.geom, ST_Length(r.geom::geography) AS length_m,
           COALESCE(l.speed_kmh, r.maxspeed, s.speed_kmh, p.default_speed_kmh)
               * p.factor AS speed_kmh,
           COALESCE(r.maxspeed, s.speed_kmh, p.default_speed_kmh) AS free_flow_kmh,
           p.factor
    FROM {roads} AS r
    JOIN routing_profiles p ON p.profile = %s
    LEFT JOIN routing_speeds s ON s.class = r.class
    LEFT JOIN live_speeds l ON l.road_id = r.id
        AND (l.expires_at IS NULL OR l.expires_at > now())
    WHERE {when}
)
SELECT id, road_id, source, target, length_m / (speed_kmh / 3.6) AS cost,
       CASE WHEN oneway THEN -1 ELSE length_m / (speed_kmh / 3.6) END AS reverse_cost,
       length_m, name, class, ST_AsBinary(geom), free_flow_kmh, factor
FROM edges ORDER BY id
"""
)


class RoadNetwork:
    """A directed road graph for one profile, compiled for fast shortest paths.

    Build it with :meth:`load`. Edge ``i`` runs from node ``source[i]`` to ``target[i]``
    (node indices) at ``cost[i]`` seconds, and back at ``reverse_cost[i]`` (negative: one-way).

    Parameters
    ----------
    profile
        Profile whose costs the edges carry.
    edges
        Columns of ``routing_edges_all``: ``id``, ``road_id``, ``source``, ``target``,
        ``cost``, ``reverse_cost``, ``length_m``, ``name``, ``class``, ``geometry`` (WKB), and
        optionally ``free_flow_kmh`` and ``factor`` (needed by :meth:`with_live_speeds`).
    """

    def __init__(self, profile: str, edges: dict[str, np.ndarray]):
        self.profile = profile
        self.edge_id = edges["id"].astype(np.int64)
        self.road_id = edges["road_id"]
        self.name = edges["name"]
        self.road_class = edges["class"]
        self.cost = edges["cost"].astype(float)
        self.reverse_cost = edges["reverse_cost"].astype(float)
        self.length_m = edges["length_m"].astype(float)
        self.oneway = self.reverse_cost < 0
        self.free_flow_kmh = (
            edges["free_flow_kmh"].astype(float) if "free_flow_kmh" in edges else None
        )
        self.factor = edges["factor"].astype(float) if "factor" in edges else None
        #: The live speeds (km/h by road id) the costs carry, when set by with_live_speeds.
        self.live_speeds: dict[str, float] | None = None
        self.geometry = shapely.from_wkb(edges["geometry"])
        self.node_ids, inverse = np.unique(
            np.concatenate([edges["source"], edges["target"]]).astype(np.int64),
            return_inverse=True,
        )
        self.source = inverse[: len(self.edge_id)]
        self.target = inverse[len(self.edge_id) :]
        self.node_index = {int(n): i for i, n in enumerate(self.node_ids)}
        self.edge_index = {int(e): i for i, e in enumerate(self.edge_id)}
        self.road_index = {str(r): i for i, r in enumerate(self.road_id)}
        metric = get_settings().metric_crs
        self.metric_crs = metric
        self.to_metric = Transformer.from_crs("EPSG:4326", metric, always_xy=True)
        self.to_lonlat = Transformer.from_crs(metric, "EPSG:4326", always_xy=True)
        self.metric_geometry = shapely.transform(
            self.geometry, lambda xy: np.column_stack(self.to_metric.transform(xy[:, 0], xy[:, 1]))
        )
        self._tree = shapely.STRtree(self.metric_geometry)
        self._prepare_geometry()
        self.closed = np.zeros(len(self.edge_id), dtype=bool)
        self._compile()
        self._root = _Root(
            len(self.node_ids),
            (self.arc_tail, self.arc_head, self.arc_weight, self.arc_edge, self.arc_direction),
        )

    def _prepare_geometry(self) -> None:
        """Per-edge coordinate arrays and turn bearings, computed once, for fast assembly.

        ``coords[coord_start[e]:coord_start[e + 1]]`` are edge ``e``'s lon/lat points
        (EPSG:4326); ``bearings[e]`` are the bearings (degrees clockwise from grid north, in the
        metric CRS) a whole edge is left and entered at: ``[leaving forwards, entering
        forwards, leaving backwards, entering backwards]``, each between the points
        :data:`BEARING_STEP` of the line apart, as :func:`routing.paths` takes them for parts.
        """
        coords, index = shapely.get_coordinates(self.geometry, return_index=True)
        self.coords = coords
        self.coord_start = np.searchsorted(index, np.arange(len(self.geometry) + 1))
        #: The same points in the metric CRS, the metres from each edge's start to each point,
        #: and each edge's metric length (what fractions along an edge are measured on).
        self.metric_coords = shapely.get_coordinates(self.metric_geometry)
        step = np.zeros(len(coords))
        step[1:] = np.hypot(*np.diff(self.metric_coords, axis=0).T)
        step[self.coord_start[:-1]] = 0.0
        self.vertex_m = np.cumsum(step)
        self.vertex_m -= np.repeat(self.vertex_m[self.coord_start[:-1]], np.diff(self.coord_start))
        self.metric_length = shapely.length(self.metric_geometry)
        fractions = (0.0, BEARING_STEP, 1.0 - BEARING_STEP, 1.0)
        points = [
            shapely.line_interpolate_point(self.metric_geometry, f, normalized=True)
            for f in fractions
        ]
        x = np.column_stack([shapely.get_x(p) for p in points])
        y = np.column_stack([shapely.get_y(p) for p in points])
        # (from, to) index pairs: forwards 0->0.02 and 0.98->1, backwards 1->0.98 and 0.02->0
        pairs = ((0, 1), (2, 3), (3, 2), (1, 0))
        self.bearings = np.column_stack(
            [np.degrees(np.arctan2(x[:, b] - x[:, a], y[:, b] - y[:, a])) % 360 for a, b in pairs]
        )

    # ---------------------------------------------------------------------------------------
    # building

    @classmethod
    def load(
        cls,
        *,
        profile: str = "car",
        url: str | None = None,
        roads: sql.Composable | None = None,
        at: datetime | None = None,
    ) -> RoadNetwork:
        """Read the current road edges of a profile from ``routing_edges_all``.

        Parameters
        ----------
        profile
            ``car`` or ``emergency``.
        url
            Database URL; the configured one by default.
        roads
            The roads to read instead of the ``roads`` table: a relation with its columns (a
            scenario's, :func:`layers.overlay.relation`); the edges are then made by the
            formula of ``routing_edges_all`` (migration 0010) over them.
        at
            With ``roads``: the moment whose road versions are read (a scenario built on a
            past moment); None for the current ones.

        Returns
        -------
        RoadNetwork
            The compiled network.
        """
        check_profile(profile)
        if roads is None:
            query: sql.SQL | sql.Composed = sql.SQL(
                "SELECT id, road_id, source, target, cost, reverse_cost, length_m, name, class, "
                "ST_AsBinary(geom), free_flow_kmh, factor FROM routing_edges_all "
                "WHERE profile = %s ORDER BY id"
            )
        else:
            query = _EDGES_OVER.format(roads=roads, when=overlay.valid_at(at, table="r"))
        with owner_cursor(url) as cur:  # shared by every caller: read as the owner
            cur.execute(query, (profile,))
            rows = cur.fetchall()
        names = (
            "id",
            "road_id",
            "source",
            "target",
            "cost",
            "reverse_cost",
            "length_m",
            "name",
            "class",
            "geometry",
            "free_flow_kmh",
            "factor",
        )
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
        edges = {
            name: np.array(col, dtype=object) for name, col in zip(names, columns, strict=True)
        }
        edges["geometry"] = np.array([bytes(g) for g in edges["geometry"]], dtype=object)
        if not rows:
            raise RoutingError(
                "the roads layer is empty: there is no network to route on; load roads with "
                "`twin city init EXTRACT.osm.pbf` or `twin ingest roads FILE`"
            )
        return cls(profile, edges)

    def _compile(self) -> None:
        """Build the forward and reverse CSR matrices of the open edges.

        Each open edge gives an arc source->target, and target->source when it is two-way.
        Of parallel arcs only the cheapest is kept; self-loops never shorten a path.
        """
        open_ = ~self.closed
        forward = np.flatnonzero(open_)
        backward = np.flatnonzero(open_ & (self.reverse_cost >= 0))
        tail = np.concatenate([self.source[forward], self.target[backward]])
        head = np.concatenate([self.target[forward], self.source[backward]])
        weight = np.concatenate([self.cost[forward], self.reverse_cost[backward]])
        edge = np.concatenate([forward, backward])
        direction = np.concatenate([np.ones(len(forward)), -np.ones(len(backward))]).astype(np.int8)
        keep = tail != head
        tail, head, weight, edge, direction = (
            a[keep] for a in (tail, head, weight, edge, direction)
        )
        order = np.lexsort((edge, weight, head, tail))  # cheapest first, then lowest edge index
        tail, head, weight, edge, direction = (
            a[order] for a in (tail, head, weight, edge, direction)
        )
        first = np.ones(len(tail), dtype=bool)
        first[1:] = (tail[1:] != tail[:-1]) | (head[1:] != head[:-1])
        self.arc_tail, self.arc_head = tail[first], head[first]
        self.arc_weight, self.arc_edge = weight[first], edge[first]
        self.arc_direction = direction[first]
        n = len(self.node_ids)
        self.graph = sp.csr_matrix((self.arc_weight, (self.arc_tail, self.arc_head)), shape=(n, n))
        self.graph_reverse = self.graph.transpose().tocsr()
        # arcs are sorted by (tail, head), one per pair: a key array finds one by bisection
        # (a dict of every arc took most of a recompile on a large network)
        self._arc_key = self.arc_tail.astype(np.int64) * n + self.arc_head.astype(np.int64)
        self._agreement: tuple[np.ndarray, bool, bool] | None = None
        self._snaps: dict[tuple[float, float, float], Snap] = {}
        self._bidirectional: Bidirectional | None = None

    def with_closed(self, edges: np.ndarray) -> RoadNetwork:
        """Return a copy with exactly these edges (indices) closed; this network is unchanged.

        The copy shares the edge arrays and geometry (never modified) and has its own graph.

        Parameters
        ----------
        edges
            Indices of the edges to close.

        Returns
        -------
        RoadNetwork
            The copy.
        """
        other = copy.copy(self)
        other.closed = np.zeros(len(self.edge_id), dtype=bool)
        other.closed[np.asarray(edges, dtype=np.int64)] = True
        other._compile()
        return other

    def with_live_speeds(
        self, speeds: Mapping[str, float], *, closed: np.ndarray | None = None
    ) -> RoadNetwork:
        """Return a copy whose costs carry these live speeds; this network is unchanged.

        Each edge costs what ``routing_edges_all`` gives it (migrations 0002, 0009, 0010):
        ``length_m / (speed_kmh / 3.6)`` seconds with ``speed_kmh = COALESCE(live speed,
        free-flow speed) * factor``, in the same floating-point operations, so the costs are
        equal to the view's to the last bit; ``reverse_cost`` stays -1 on one-way edges. Only
        arrays are computed and the graph recompiled: nothing is read from the store.

        Parameters
        ----------
        speeds
            Live speed (km/h) by road id: those that count now (unexpired). Roads not in the
            network are ignored, as the view's join ignores them.
        closed
            Indices of the edges to close; this network's closed edges when None.

        Returns
        -------
        RoadNetwork
            The copy (sharing the edge geometry and static arrays).

        Raises
        ------
        ValueError
            If the network was built without its free-flow speeds and factor.
        """
        if self.free_flow_kmh is None or self.factor is None:
            raise ValueError("this network has no free-flow speeds: load it from the store")
        speed = self.free_flow_kmh.copy()
        for road, value in speeds.items():
            index = self.road_index.get(str(road))
            if index is not None:
                speed[index] = float(value)
        speed_kmh = speed * self.factor
        cost = self.length_m / (speed_kmh / 3.6)
        other = copy.copy(self)
        other.cost = cost
        other.reverse_cost = np.where(self.oneway, -1.0, cost)
        other.live_speeds = {str(road): float(value) for road, value in speeds.items()}
        if closed is None:
            other.closed = self.closed.copy()
        else:
            other.closed = np.zeros(len(self.edge_id), dtype=bool)
            other.closed[np.asarray(closed, dtype=np.int64)] = True
        other._compile()
        return other

    def close(self, edges: np.ndarray) -> None:
        """Close exactly these edges (indices) and reopen all others; recompiles.

        Parameters
        ----------
        edges
            Indices of the edges to close.
        """
        closed = np.zeros(len(self.edge_id), dtype=bool)
        closed[np.asarray(edges, dtype=np.int64)] = True
        if not np.array_equal(closed, self.closed):
            self.closed = closed
            self._compile()

    # ---------------------------------------------------------------------------------------
    # points

    def snap(
        self,
        lon: float,
        lat: float,
        *,
        parameter: str = "point",
        max_distance_m: float = MAX_SNAP_M,
        remember: bool = False,
    ) -> Snap:
        """Place a point on the nearest open edge.

        Parameters
        ----------
        lon, lat
            The point, EPSG:4326.
        parameter
            Name of the request parameter, for errors.
        max_distance_m
            Farthest a road may be.
        remember
            Keep the answer for the next call with the same point (for points asked again
            and again, like the resources of :func:`routing.paths.nearest_units`); this network
            keeps at most :data:`_REMEMBERED` of them, and forgets them when edges close.

        Returns
        -------
        Snap
            The edge, the fraction along it and the distance.

        Raises
        ------
        RoutingError
            If the point is outside the city or no open road is within ``max_distance_m``.
        """
        key = (float(lon), float(lat), float(max_distance_m))
        if remember and key in self._snaps:
            return self._snaps[key]
        xmin, ymin, xmax, ymax = get_settings().city_bbox
        if not (
            np.isfinite(lon) and np.isfinite(lat) and xmin <= lon <= xmax and ymin <= lat <= ymax
        ):
            extent = get_settings().city_bbox
            raise RoutingError(
                f"{parameter} ({lon}, {lat}) is outside the city's extent {extent}",
                parameter=parameter,
            )
        x, y = self.to_metric.transform(lon, lat)
        point = shapely.Point(x, y)
        # the nearest edges (all at the least distance); the lowest-numbered open one wins
        nearest = self._tree.query_nearest(point, max_distance=max_distance_m, all_matches=True)
        nearest = nearest[~self.closed[nearest]]
        if len(nearest):
            best = int(nearest.min())
        else:  # none, or all of the nearest are closed: the nearest open one within reach
            candidates = self._tree.query(point, predicate="dwithin", distance=max_distance_m)
            candidates = candidates[~self.closed[candidates]]
            if len(candidates) == 0:
                raise RoutingError(
                    f"{parameter} ({lon}, {lat}) is more than {max_distance_m:g} m from any "
                    "open road",
                    parameter=parameter,
                )
            distances = shapely.distance(self.metric_geometry[candidates], point)
            best = candidates[np.lexsort((candidates, distances))[0]]
        line = self.metric_geometry[best]
        fraction = float(line.project(point, normalized=True)) if line.length > 0 else 0.0
        snap = Snap(int(best), fraction, float(line.distance(point)))
        if remember:
            if len(self._snaps) >= _REMEMBERED:
                self._snaps = {}
            self._snaps[key] = snap
        return snap

    def exits(self, snap: Snap) -> list[tuple[int, float]]:
        """Return ``(node, seconds)`` pairs: the nodes a trip starting at ``snap`` reaches first.

        A point at an end of its edge stands on that node, and may leave by any of its edges.
        """
        edge, fraction = snap.edge, snap.fraction
        out = [(int(self.target[edge]), (1 - fraction) * self.cost[edge])]
        if self.reverse_cost[edge] >= 0:
            out.append((int(self.source[edge]), fraction * self.reverse_cost[edge]))
        elif fraction <= _AT_NODE:
            out.append((int(self.source[edge]), 0.0))
        return out

    def entries(self, snap: Snap) -> list[tuple[int, float]]:
        """Return ``(node, seconds)`` pairs: the nodes a trip ending at ``snap`` arrives from.

        A point at an end of its edge stands on that node, and may be reached by any edge.
        """
        edge, fraction = snap.edge, snap.fraction
        out = [(int(self.source[edge]), fraction * self.cost[edge])]
        if self.reverse_cost[edge] >= 0:
            out.append((int(self.target[edge]), (1 - fraction) * self.reverse_cost[edge]))
        elif fraction >= 1 - _AT_NODE:
            out.append((int(self.target[edge]), 0.0))
        return out

    def along(self, start: Snap, end: Snap) -> tuple[float, int] | None:
        """Return ``(seconds, direction)`` of a trip that stays on one edge, if one can."""
        if start.edge != end.edge:
            return None
        edge = start.edge
        if end.fraction >= start.fraction:
            return (end.fraction - start.fraction) * self.cost[edge], 1
        if self.reverse_cost[edge] >= 0:
            return (start.fraction - end.fraction) * self.reverse_cost[edge], -1
        return None

    # ---------------------------------------------------------------------------------------
    # searches

    def times_from(self, sources: list[tuple[int, float]], *, limit: float = np.inf) -> np.ndarray:
        """Seconds from the nearest of ``sources`` to every node: one search, not one per source.

        Parameters
        ----------
        sources
            ``(node, seconds)`` pairs to start from.
        limit
            Stop beyond this many seconds.

        Returns
        -------
        numpy.ndarray
            Time per node (inf where unreached or beyond ``limit``), the first array
            :meth:`search` gives (to rounding: offsets are added first here).
        """
        graph = self.graph
        return times_from(graph.indptr, graph.indices, graph.data, sources, limit=limit)

    def search(
        self, sources: list[tuple[int, float]], *, reverse: bool = False, limit: float = np.inf
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Multi-source Dijkstra with start offsets.

        Parameters
        ----------
        sources
            ``(node, seconds)`` pairs to start from.
        reverse
            Search against the arcs: the times are then *to* the sources.
        limit
            Stop beyond this many seconds.

        Returns
        -------
        tuple of numpy.ndarray
            Time per node (inf where unreached), the index into ``sources`` each node's best
            time comes through (-1 where unreached), and the predecessor matrix (one row per
            source).
        """
        graph = self.graph_reverse if reverse else self.graph
        nodes = np.array([node for node, _ in sources], dtype=np.int64)
        offsets = np.array([offset for _, offset in sources])
        times, predecessors = dijkstra(
            graph, directed=True, indices=nodes, return_predecessors=True, limit=limit
        )
        times = np.atleast_2d(times) + offsets[:, None]
        best = np.argmin(times, axis=0)
        total = times[best, np.arange(times.shape[1])]
        best[~np.isfinite(total)] = -1
        total[total > limit] = np.inf
        best[total > limit] = -1
        return total, best, np.atleast_2d(predecessors)

    def _agrees(self) -> tuple[np.ndarray, bool, bool]:
        """Which of the loaded arcs this network still has unchanged, and if any cost fell.

        Returns
        -------
        tuple
            A mask over the root's arcs (True: same edge, direction and cost here), and
            whether this network has an arc the root lacks or one cheaper than the root's (then
            the hierarchy's answers can be too long, and it is not used), and whether every
            loaded arc is unchanged here.
        """
        if self._agreement is None:
            root = self._root
            at = np.searchsorted(self._arc_key, root.key)
            at = np.minimum(at, max(len(self._arc_key) - 1, 0))
            found = (
                self._arc_key[at] == root.key
                if len(self._arc_key)
                else np.zeros(len(root.key), dtype=bool)
            )
            same = (
                found
                & (self.arc_edge[at] == root.edge)
                & (self.arc_direction[at] == root.direction)
                & (np.abs(self.arc_weight[at] - root.weight) <= _SAME_COST_S)
            )
            back = np.searchsorted(root.key, self._arc_key)
            back = np.minimum(back, max(len(root.key) - 1, 0))
            known = root.key[back] == self._arc_key if len(root.key) else np.zeros(0, bool)
            fell = not known.all() or bool(
                np.any(self.arc_weight < root.weight[back] - _SAME_COST_S)
            )
            # once per network: its costs never change (close() recompiles and forgets this)
            self._agreement = (same, fell, bool(same.all()))
        return self._agreement

    def shortest(
        self,
        sources: list[tuple[int, float]],
        targets: list[tuple[int, float]],
        *,
        arcs: bool = True,
    ) -> tuple[float, int, int, list[tuple[int, int]]] | None:
        """Find the fastest path from any of ``sources`` to any of ``targets``, exactly.

        The contraction hierarchy of the network as loaded answers (about 0.05 ms on Malta's
        57k edges). A copy with closures or live speeds keeps that answer when its path uses
        no arc whose cost changed and no cost fell (costs that only rose leave a path that
        avoids them the fastest); otherwise a bidirectional Dijkstra on this network's own arcs
        answers (about 1 ms on Malta).

        Parameters
        ----------
        sources
            ``(node, seconds)`` pairs a trip may start from (node indices), e.g. :meth:`exits`.
        targets
            ``(node, seconds)`` pairs it may end at, e.g. :meth:`entries`.
        arcs
            Give the arcs travelled; when False the list is empty (only the cost is wanted,
            and it comes a little sooner).

        Returns
        -------
        tuple or None
            ``(seconds, source index, target index, [(edge, direction), ...])`` — the arcs
            travelled as in :meth:`arcs` — or None when no target can be reached.
        """
        root = self._root
        same, fell, unchanged = self._agrees()
        if not fell:
            path = root.hierarchy().query(sources, targets, unpack=arcs or not unchanged)
            if path is None:
                return None  # unreachable as loaded: closures and slower roads never help
            if unchanged or same[path.arcs].all():
                pairs = self._arc_pairs(root, path.arcs) if arcs else []
                return path.cost, path.source, path.target, pairs
        if self._bidirectional is None:
            self._bidirectional = Bidirectional(
                len(self.node_ids), self.arc_tail, self.arc_head, self.arc_weight
            )
        path = self._bidirectional.query(sources, targets, unpack=arcs)
        if path is None:
            return None
        own = (self.arc_edge, self.arc_direction)
        pairs = list(zip(own[0][path.arcs].tolist(), own[1][path.arcs].tolist(), strict=True))
        return path.cost, path.source, path.target, pairs

    @staticmethod
    def _arc_pairs(root: _Root, arcs: np.ndarray) -> list[tuple[int, int]]:
        return list(zip(root.edge[arcs].tolist(), root.direction[arcs].tolist(), strict=True))

    def node_path(self, predecessors: np.ndarray, start: int, end: int) -> list[int]:
        """Nodes from ``start`` to ``end`` along one row of a predecessor matrix."""
        path = [end]
        while path[-1] != start:
            previous = int(predecessors[path[-1]])
            if previous < 0:
                raise RoutingError("no path")  # not reached: callers check times first
            path.append(previous)
        return path[::-1]

    def arcs(self, nodes: list[int]) -> list[tuple[int, int]]:
        """``(edge, direction)`` of the arcs joining consecutive nodes of a path."""
        if len(nodes) < 2:
            return []
        path = np.asarray(nodes, dtype=np.int64)
        keys = path[:-1] * len(self.node_ids) + path[1:]
        arcs = np.searchsorted(self._arc_key, keys)
        found = arcs < len(self._arc_key)
        found[found] = self._arc_key[arcs[found]] == keys[found]
        if not found.all():
            missing = int(np.flatnonzero(~found)[0])
            tail, head = nodes[missing], nodes[missing + 1]
            raise KeyError((tail, head))
        return [
            (int(edge), int(direction))
            for edge, direction in zip(self.arc_edge[arcs], self.arc_direction[arcs], strict=True)
        ]

    # ---------------------------------------------------------------------------------------
    # views

    def to_networkx(self) -> nx.MultiDiGraph:
        """Return the network as a networkx graph that osmnx reads as one of its own.

        Every open edge is an arc ``source -> target`` keyed by its road id, and also
        ``target -> source`` (key ``<road id>:reverse``, geometry reversed) when it is two-way.
        Closed edges are left out, and so are nodes all of whose edges are closed. The
        attributes follow osmnx's conventions (its ``convert.validate_graph(strict=True)``), so
        ``osmnx.convert.graph_to_gdfs``, ``osmnx.distance.nearest_nodes``,
        ``osmnx.routing.shortest_path(weight="travel_time")`` and the rest take it as it is.

        Returns
        -------
        networkx.MultiDiGraph
            Graph attributes ``crs`` (``"EPSG:4326"``) and ``profile``. Nodes are the roads'
            node ids (``int``) with ``x`` (longitude) and ``y`` (latitude) in degrees, EPSG:4326
            (the end points of their edges' lines), and ``street_count``: how many open road
            edges meet there (a loop counts twice, as osmnx counts it). Arcs carry
            ``travel_time`` (s) and ``length`` (m, on the WGS 84 ellipsoid: the view's
            ``ST_Length(geom::geography)``) as osmnx names them, the same as ``cost`` and
            ``length_m``; ``osmid`` and ``edge_id`` (the edge's integer id in
            ``routing_edges``, shared by both directions: osmnx's edge id), ``oneway``,
            ``reversed`` (True on a two-way edge's ``target -> source`` arc), ``name``,
            ``class`` and ``geometry`` (a LineString from the arc's tail to its head, EPSG:4326).
        """
        graph = nx.MultiDiGraph(profile=self.profile, crs="EPSG:4326")
        open_ = np.flatnonzero(~self.closed)
        starts = shapely.get_point(self.geometry[open_], 0)
        ends = shapely.get_point(self.geometry[open_], -1)
        streets = np.bincount(
            np.concatenate([self.source[open_], self.target[open_]]), minlength=len(self.node_ids)
        )
        for ends_at, points in ((self.source[open_], starts), (self.target[open_], ends)):
            for node, x, y in zip(
                ends_at, shapely.get_x(points), shapely.get_y(points), strict=True
            ):
                graph.add_node(
                    int(self.node_ids[node]),
                    x=float(x),
                    y=float(y),
                    street_count=int(streets[node]),
                )
        for i in open_:
            u, v = int(self.node_ids[self.source[i]]), int(self.node_ids[self.target[i]])
            two_way = bool(self.reverse_cost[i] >= 0)
            common: dict[str, Any] = {
                "osmid": int(self.edge_id[i]),
                "edge_id": int(self.edge_id[i]),
                "length": float(self.length_m[i]),
                "length_m": float(self.length_m[i]),
                "oneway": not two_way,
                "name": self.name[i],
                "class": self.road_class[i],
            }
            cost = float(self.cost[i])
            graph.add_edge(
                u,
                v,
                key=self.road_id[i],
                travel_time=cost,
                cost=cost,
                reversed=False,
                geometry=self.geometry[i],
                **common,
            )
            if two_way:
                back = float(self.reverse_cost[i])
                graph.add_edge(
                    v,
                    u,
                    key=f"{self.road_id[i]}:reverse",
                    travel_time=back,
                    cost=back,
                    reversed=True,
                    geometry=self.geometry[i].reverse(),
                    **common,
                )
        return graph
