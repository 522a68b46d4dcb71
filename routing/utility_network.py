"""Utility networks as graphs: pipes and their nodes, and the power grid, with valves and switches.

The topology is built from the layers' geometry in the city's metric CRS, the way a utility
GIS connects its features:

- a line end joins the other line ends and the nodes within ``tolerance_m``; a ``from_node`` /
  ``to_node`` property naming a node wins over geometry (networks imported from EPANET or
  pandapower carry them);
- a node on a line's interior (a valve, a switch, a tee) splits the line there; a node naming
  its line in a ``pipe`` or ``line`` property splits that line only;
- a line end on another line's interior is a tee: that line is split there;
- a terminal node (hydrant, meter, consumer, source) off every line but within ``attach_m``
  of one is joined to it by a lateral; a valve, switch or pump drawn beside its line within
  ``attach_m`` is moved onto it (it stands in the line);
- what joins nothing is reported (:attr:`UtilityNetwork.problems`): dangling ends, nodes off
  the network, node references that name no node.

Each line is cut into *pieces* between the vertices on it; pieces are the graph's edges.
Valves (water, gas, sewer, heat) and switches (power) are *isolating devices*: a closed valve
or an open switch stops flow through its vertex. Sources are ``source`` pipe nodes (reservoirs,
tanks, feeds) and ``substation`` power nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.ops import substring

from layers.errors import MissingInputError, ParameterError

#: Networks the twin can trace: the four pipe networks and the power grid.
NETWORKS = ("water", "gas", "sewer", "heat", "power")
#: The layers each network is drawn from (what a caller must read to be told about it).
NETWORK_LAYERS = {
    name: ("power_lines", "power_nodes") if name == "power" else ("pipelines", "pipe_nodes")
    for name in NETWORKS
}
#: Node kinds that stop flow when closed (valves) or open (switches).
DEVICE_KINDS = ("valve", "switch")
#: Node kinds that feed a network.
SOURCE_KINDS = ("source", "substation")
#: Node kinds joined to the nearest line by a lateral when they are off every line.
TERMINAL_KINDS = ("hydrant", "meter", "consumer", "source")
#: Node kinds that stand in a line: off it but within reach, they are moved onto it.
INLINE_KINDS = (*DEVICE_KINDS, "pump")
#: Line and node states that take an element out of the network.
OUT_OF_SERVICE = ("inactive", "planned", "damaged", "out_of_service")

Progress = Callable[[str, int, int], None]


class TopologyError(ParameterError):
    """A trace was asked of something the network does not hold."""


class MissingNetworkError(MissingInputError, TopologyError):
    """A network whose lines are not loaded: no trace of it can be made.

    Both a :class:`layers.onemap.MissingInputError` (it names the layer to load and how) and a
    :class:`TopologyError`; its request parameter is ``network``.

    Parameters
    ----------
    name
        The network: ``water``, ``gas``, ``sewer``, ``heat`` or ``power``.
    """

    def __init__(self, name: str):
        layer = NETWORK_LAYERS[name][0]
        if name == "power":
            detail = "no power lines loaded: the power network holds no lines to trace"
            remedy = "import them with `twin ingest power_lines FILE` (lines and cables)"
        else:
            detail = f"no {name} pipelines loaded: the {name} network holds no lines to trace"
            remedy = f"import them with `twin ingest pipelines FILE` (lines with network={name})"
        super().__init__(layer, detail, remedy, parameter="network")
        self.network = name


@dataclass(frozen=True)
class Tables:
    """Columns of a network's nodes, buildings and pieces as arrays, for fast traces."""

    node_id: np.ndarray
    node_kind: np.ndarray
    node_vertex: np.ndarray
    building_id: np.ndarray
    building_population: np.ndarray
    building_vertex: np.ndarray
    building_edge: np.ndarray
    piece_line: np.ndarray
    piece_length: np.ndarray
    piece_geometry: np.ndarray


@dataclass(frozen=True)
class UtilityNetwork:
    """One utility network as a graph of vertices and line pieces.

    Built by :func:`build_network`; every array is indexed by vertex, piece (edge), line or
    node position. Geometry is in the metric CRS ``crs``.

    Parameters
    ----------
    name
        ``water``, ``gas``, ``sewer``, ``heat`` or ``power``.
    crs
        The metric CRS of the coordinates.
    lines
        The network's lines: ``id``, ``geometry`` (metric), ``length_m``, ``in_service``.
    nodes
        The network's nodes: ``id``, ``kind``, ``status``, ``geometry`` (metric), ``vertex``.
    vertex_xy
        Vertex coordinates, shape (n, 2).
    edge_u, edge_v
        The vertices each piece joins.
    edge_line
        The line each piece belongs to (-1 for a lateral).
    edge_from_m, edge_to_m
        Where the piece starts and ends along its line (m).
    line_first_edge
        Pieces of line ``i`` are ``line_first_edge[i]:line_first_edge[i + 1]``, in order along it.
    device
        Per vertex: an isolating device (valve or switch) stands on it.
    normally_blocked
        Per vertex: a device that is closed (valve) or open (switch) in normal operation.
    operable
        Per vertex: the device can be operated (not ``inoperable``, ``damaged`` ...).
    source
        Per vertex: a source (reservoir, feed, substation) in service stands on it.
    edge_in_service
        Per piece: its line is in service (laterals always are).
    segment_of_edge
        Per piece: the segment (part of the network between devices) it lies in.
    segment_of_vertex
        Per vertex: its segment, -1 for a device.
    buildings
        Buildings served: ``id``, ``population``, ``vertex`` or ``edge`` (-1 when not that).
    problems
        Topology findings: ``kind`` (dangling_end, unattached_node, unknown_node), ``id``,
        ``detail`` and the point (lon/lat is not kept: metric ``x``/``y``).
    """

    name: str
    crs: str
    lines: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame
    vertex_xy: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    edge_line: np.ndarray
    edge_from_m: np.ndarray
    edge_to_m: np.ndarray
    line_first_edge: np.ndarray
    device: np.ndarray
    normally_blocked: np.ndarray
    operable: np.ndarray
    source: np.ndarray
    edge_in_service: np.ndarray
    segment_of_edge: np.ndarray
    segment_of_vertex: np.ndarray
    buildings: pd.DataFrame
    problems: pd.DataFrame
    _node_index: dict[str, int] = field(repr=False, compare=False)
    _device_segments: dict[int, frozenset[int]] = field(repr=False, compare=False)
    _segment_devices: dict[int, frozenset[int]] = field(repr=False, compare=False)

    @property
    def n_vertices(self) -> int:
        """Number of vertices."""
        return len(self.vertex_xy)

    @property
    def n_edges(self) -> int:
        """Number of pieces (graph edges)."""
        return len(self.edge_u)

    @property
    def n_segments(self) -> int:
        """Number of segments between isolating devices."""
        return int(self.segment_of_edge.max(initial=-1)) + 1 if self.n_edges else 0

    def node_vertex(self, node_id: str, *, parameter: str = "node") -> int:
        """Return the vertex a node stands on.

        Parameters
        ----------
        node_id
            A node (pipe node or power node) id of this network.
        parameter
            The request parameter that named it, for the error.

        Returns
        -------
        int
            The vertex index.

        Raises
        ------
        TopologyError
            If the network has no such node.
        """
        try:
            return int(self.nodes["vertex"].iat[self._node_index[node_id]])
        except KeyError:
            raise TopologyError(
                f"{node_id!r} is not a node of the {self.name} network", parameter=parameter
            ) from None

    def node_kind(self, node_id: str) -> str:
        """Return a node's kind (``valve``, ``hydrant``, ``transformer`` ...)."""
        return str(self.nodes["kind"].iat[self._node_index[node_id]])

    def device_segments(self, vertex: int) -> frozenset[int]:
        """Return the segments a device vertex separates."""
        return self._device_segments.get(vertex, frozenset())

    def segment_devices(self, segment: int) -> frozenset[int]:
        """Return the device vertices on a segment's boundary."""
        return self._segment_devices.get(segment, frozenset())

    def piece_at(self, line: int, position_m: float) -> int:
        """Return the piece of a line that holds a position along it.

        Parameters
        ----------
        line
            Line index.
        position_m
            Distance along the line from its start (m).

        Returns
        -------
        int
            The piece (edge) index.
        """
        first, last = self.line_first_edge[line], self.line_first_edge[line + 1]
        ends = self.edge_to_m[first:last]
        return int(first + min(np.searchsorted(ends, position_m), last - first - 1))

    @cached_property
    def pieces(self) -> gpd.GeoDataFrame:
        """Every piece: its ``line`` id (None for a lateral), ``length_m`` and line (EPSG:4326).

        Cut once, on first use; traces index it.
        """
        geoms = self.lines.geometry.to_numpy()
        out = np.empty(self.n_edges, dtype=object)
        for e in range(self.n_edges):
            line = self.edge_line[e]
            if line < 0:  # a lateral: the straight line it stands for
                out[e] = shapely.LineString(self.vertex_xy[[self.edge_u[e], self.edge_v[e]]])
            else:
                out[e] = substring(geoms[line], self.edge_from_m[e], self.edge_to_m[e])
        ids = self.lines["id"].astype(str).to_numpy()
        return gpd.GeoDataFrame(
            {
                "line": np.where(self.edge_line >= 0, ids[np.maximum(self.edge_line, 0)], None),
                "length_m": self.edge_to_m - self.edge_from_m,
            },
            geometry=gpd.GeoSeries(out, crs=self.crs).to_crs("EPSG:4326").to_numpy(),
            crs="EPSG:4326",
        )

    @cached_property
    def tables(self) -> Tables:
        """The columns traces read, as plain arrays (pandas indexing costs more than a trace)."""
        pieces = self.pieces
        b = self.buildings
        return Tables(
            node_id=self.nodes["id"].astype(str).to_numpy(dtype=object),
            node_kind=self.nodes["kind"].astype(str).to_numpy(dtype=object),
            node_vertex=self.nodes["vertex"].to_numpy(dtype=np.int64),
            building_id=b["id"].astype(str).to_numpy(dtype=object),
            building_population=b["population"].to_numpy(dtype=np.int64),
            building_vertex=b["vertex"].to_numpy(dtype=np.int64),
            building_edge=b["edge"].to_numpy(dtype=np.int64),
            piece_line=pieces["line"].to_numpy(dtype=object),
            piece_length=pieces["length_m"].to_numpy(dtype=float),
            piece_geometry=pieces.geometry.to_numpy(),
        )

    @cached_property
    def device_ids(self) -> dict[int, str]:
        """The id of the valve or switch on each device vertex."""
        devices = self.nodes[self.nodes["kind"].isin(DEVICE_KINDS)]
        return dict(zip(devices["vertex"].astype(int), devices["id"].astype(str), strict=True))

    @cached_property
    def source_ids(self) -> dict[int, str]:
        """The id of a source on each source vertex (a source inside an isolation is shut)."""
        feeds = self.nodes[self.nodes["kind"].isin(SOURCE_KINDS)]
        return dict(zip(feeds["vertex"].astype(int), feeds["id"].astype(str), strict=True))

    @cached_property
    def line_tree(self) -> shapely.STRtree:
        """A spatial index of the lines (metric CRS), to find the line under a point."""
        return shapely.STRtree(self.lines.geometry.to_numpy())

    @cached_property
    def line_index(self) -> dict[str, int]:
        """Line position by id."""
        return {line_id: i for i, line_id in enumerate(self.lines["id"].astype(str))}

    @cached_property
    def base_supply(self) -> tuple[np.ndarray, np.ndarray]:
        """Supply in normal operation, per vertex and per piece (computed once)."""
        return self.supply()

    def supply(
        self,
        *,
        blocked: np.ndarray | None = None,
        removed: np.ndarray | None = None,
        shut: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trace supply from the sources.

        Parameters
        ----------
        blocked
            Per vertex: no flow through it (closed valves, open switches, dark pumps). Devices
            blocked in normal operation are always blocked.
        removed
            Per piece: out of the network (broken, isolated). Lines out of service always are.
        shut
            Per vertex: a source that feeds nothing now (its outlet closed); the junction it
            stands on still carries flow.

        Returns
        -------
        tuple of numpy.ndarray
            Per vertex and per piece: reached from a source.
        """
        stop = self.normally_blocked if blocked is None else (blocked | self.normally_blocked)
        gone = ~self.edge_in_service if removed is None else (removed | ~self.edge_in_service)
        keep = ~gone & ~stop[self.edge_u] & ~stop[self.edge_v]
        n = self.n_vertices
        graph = sparse.coo_matrix(
            (np.ones(int(keep.sum()), dtype=np.int8), (self.edge_u[keep], self.edge_v[keep])),
            shape=(n, n),
        ).tocsr()
        _, labels = connected_components(graph, directed=False)
        fed = self.source & ~stop if shut is None else self.source & ~stop & ~shut
        live_labels = np.unique(labels[fed])
        vertex_ok = np.isin(labels, live_labels) & ~stop
        edge_ok = ~gone & (vertex_ok[self.edge_u] | vertex_ok[self.edge_v])
        return vertex_ok, edge_ok


def build_network(
    name: str,
    lines: gpd.GeoDataFrame,
    nodes: gpd.GeoDataFrame,
    *,
    buildings: gpd.GeoDataFrame | None = None,
    crs: str,
    tolerance_m: float = 0.5,
    attach_m: float = 30.0,
    service_m: float = 100.0,
    progress: Progress | None = None,
) -> UtilityNetwork:
    """Build a network's topology from its lines and nodes.

    Parameters
    ----------
    name
        Network name (``water`` ... ``power``).
    lines
        Lines with ``id``, ``geometry``, optional ``status`` and ``props`` (dict, may hold
        ``from_node`` / ``to_node``), in any CRS.
    nodes
        Nodes with ``id``, ``kind``, ``geometry``, optional ``status`` and ``props`` (may hold
        ``pipe`` / ``line``: the line a device stands on; ``building``: the building a consumer
        serves).
    buildings
        Buildings (``id``, ``population``, ``geometry``) to attach: by a node's ``building``
        property, else to the nearest piece within ``service_m``.
    crs
        The metric CRS to build in.
    tolerance_m
        How close ends and nodes must be to join (m).
    attach_m
        How far a terminal node may be from its line (m).
    service_m
        How far a building may be from the piece serving it (m).
    progress
        Called as ``progress(stage, done, total)``.

    Returns
    -------
    UtilityNetwork
        The graph, its segments and the problems found.
    """
    if tolerance_m <= 0 or attach_m < 0 or service_m < 0:
        raise ParameterError("tolerances must be positive", parameter="tolerance_m")
    report = progress or (lambda stage, done, total: None)
    lines = _metric(lines, crs).reset_index(drop=True)
    nodes = _metric(nodes, crs).reset_index(drop=True)
    report(f"{name}: topology", 0, 4)
    problems: list[dict[str, Any]] = []
    line_geoms = lines.geometry.to_numpy()
    lengths = shapely.length(line_geoms)
    n_lines, n_nodes = len(lines), len(nodes)
    node_ids = nodes["id"].astype(str).tolist()
    node_index = {node_id: i for i, node_id in enumerate(node_ids)}
    node_xy = shapely.get_coordinates(nodes.geometry.to_numpy())[:, :2].reshape(n_nodes, 2)
    node_kind = nodes["kind"].astype(str).to_numpy()
    node_props = _props(nodes, n_nodes)
    line_props = _props(lines, n_lines)

    # line ends: 2i is the start of line i, 2i + 1 its end
    starts = shapely.get_coordinates(shapely.get_point(line_geoms, 0))
    finishes = shapely.get_coordinates(shapely.get_point(line_geoms, -1))
    end_xy = np.empty((2 * n_lines, 2))
    end_xy[0::2], end_xy[1::2] = starts, finishes
    end_node = np.full(2 * n_lines, -1)  # node named by from_node / to_node
    for i, props in enumerate(line_props):
        for side, key in ((0, "from_node"), (1, "to_node")):
            ref = props.get(key)
            if ref is None:
                continue
            if str(ref) in node_index:
                end_node[2 * i + side] = node_index[str(ref)]
            else:
                problems.append(
                    _problem("unknown_node", lines["id"].iat[i], f"{key} {ref!r} names no node")
                )
    named = end_node >= 0
    node_on_line = np.full(n_nodes, -1)  # a device naming its line
    line_index = {line_id: i for i, line_id in enumerate(lines["id"].astype(str).tolist())}
    for j, props in enumerate(node_props):
        ref = props.get("pipe", props.get("line"))
        if ref is not None:
            if str(ref) in line_index:
                node_on_line[j] = line_index[str(ref)]
            else:  # no such line: the node joins by geometry
                problems.append(_problem("unknown_node", node_ids[j], f"line {ref!r} not found"))

    # 1. free ends cluster with each other; free nodes join the nearest cluster in tolerance
    free = np.flatnonzero(~named)
    tree = cKDTree(end_xy[free]) if len(free) else None
    pairs = tree.query_pairs(tolerance_m, output_type="ndarray") if tree else np.empty((0, 2))
    m = len(free)
    graph = sparse.coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])) if len(pairs) else ([], ([], [])),
        shape=(m, m),
    )
    n_clusters, cluster = connected_components(graph, directed=False)
    vertex_of_end = np.full(2 * n_lines, -1)
    vertex_of_end[free] = cluster
    vertex_xy: list[np.ndarray] = []
    if n_clusters:
        sums = np.zeros((n_clusters, 2))
        np.add.at(sums, cluster, end_xy[free])
        vertex_xy.extend(sums / np.bincount(cluster, minlength=n_clusters)[:, None])
    vertex_of_node = np.full(n_nodes, -1)
    if tree is not None and n_nodes:
        distance, nearest = tree.query(node_xy, distance_upper_bound=tolerance_m)
        close = np.isfinite(distance) & (node_on_line == -1)
        vertex_of_node[close] = cluster[nearest[close]]
    # nodes named as line ends
    for named_end in np.flatnonzero(named).tolist():
        j = end_node[named_end]
        if vertex_of_node[j] < 0:
            vertex_of_node[j] = len(vertex_xy)
            vertex_xy.append(node_xy[j])
        vertex_of_end[named_end] = vertex_of_node[j]
    report(f"{name}: topology", 1, 4)

    # 2. what lands on a line's interior splits it: named devices, other nodes, tee ends
    splits: list[list[tuple[float, int]]] = [[] for _ in range(n_lines)]
    line_tree = shapely.STRtree(line_geoms)

    def split_at(line: int, position: float, vertex: int) -> None:
        eps = min(1e-3, lengths[line] / 4)
        splits[line].append((min(max(position, eps), lengths[line] - eps), vertex))

    laterals: list[tuple[int, int]] = []
    pending = np.flatnonzero(vertex_of_node < 0)
    points: np.ndarray = np.asarray(shapely.points(node_xy[pending].reshape(-1, 2)), dtype=object)
    target = node_on_line[pending].copy()
    loose = np.flatnonzero(target == -1)
    if len(loose):  # the nearest line within reach, for nodes that name none
        hit, near = line_tree.query_nearest(
            points[loose], max_distance=max(tolerance_m, attach_m), all_matches=False
        )
        target[loose] = -1
        target[loose[hit]] = near
    placed = target >= 0
    distance = np.full(len(pending), np.inf)
    along = np.zeros(len(pending))
    distance[placed] = shapely.distance(line_geoms[target[placed]], points[placed])
    along[placed] = shapely.line_locate_point(line_geoms[target[placed]], points[placed])
    for k, j in enumerate(pending.tolist()):
        line = int(target[k])
        vertex_of_node[j] = len(vertex_xy)
        vertex_xy.append(node_xy[j])
        if line < 0:
            problems.append(_problem("unattached_node", node_ids[j], "joins no line", node_xy[j]))
        elif distance[k] <= tolerance_m or node_on_line[j] >= 0:
            split_at(line, float(along[k]), int(vertex_of_node[j]))
        elif distance[k] <= attach_m and node_kind[j] in INLINE_KINDS:
            # a pump or valve drawn beside its main stands in it: its vertex moves onto it
            projected = shapely.line_interpolate_point(line_geoms[line], along[k])
            vertex_xy[int(vertex_of_node[j])] = shapely.get_coordinates(projected)[0]
            split_at(line, float(along[k]), int(vertex_of_node[j]))
        elif distance[k] <= attach_m and node_kind[j] in TERMINAL_KINDS:
            tee = len(vertex_xy)
            projected = shapely.line_interpolate_point(line_geoms[line], along[k])
            vertex_xy.append(shapely.get_coordinates(projected)[0])
            split_at(line, float(along[k]), tee)
            laterals.append((tee, int(vertex_of_node[j])))
        else:
            problems.append(
                _problem(
                    "unattached_node",
                    node_ids[j],
                    f"{distance[k]:.1f} m from the nearest line",
                    node_xy[j],
                )
            )
    # dangling ends: a free end alone in its cluster with no node on it
    cluster_size = np.bincount(cluster, minlength=n_clusters)
    has_node = np.zeros(len(vertex_xy), dtype=bool)
    has_node[vertex_of_node[vertex_of_node >= 0]] = True
    lonely = free[(cluster_size[cluster] == 1) & ~has_node[cluster]]
    lonely_points = shapely.points(end_xy[lonely])
    own = lonely // 2
    for lone, point, line_self in zip(
        lonely.tolist(), list(lonely_points), own.tolist(), strict=True
    ):
        found = line_tree.query(point, predicate="dwithin", distance=tolerance_m)
        found = found[found != line_self]
        if len(found):
            position = float(shapely.line_locate_point(line_geoms[found[0]], point))
            split_at(int(found[0]), position, int(vertex_of_end[lone]))
        else:
            problems.append(
                _problem("dangling_end", lines["id"].iat[line_self], "joins nothing", end_xy[lone])
            )
    report(f"{name}: topology", 2, 4)

    # 3. pieces: each line cut at its splits, in order
    edge_u: list[int] = []
    edge_v: list[int] = []
    edge_line: list[int] = []
    edge_from: list[float] = []
    edge_to: list[float] = []
    first_edge = np.zeros(n_lines + 1, dtype=np.int64)
    for i in range(n_lines):
        first_edge[i] = len(edge_u)
        cuts = sorted(splits[i])
        chain = [int(vertex_of_end[2 * i]), *(v for _, v in cuts), int(vertex_of_end[2 * i + 1])]
        marks = [0.0, *(p for p, _ in cuts), float(lengths[i])]
        for k in range(len(chain) - 1):
            edge_u.append(chain[k])
            edge_v.append(chain[k + 1])
            edge_line.append(i)
            edge_from.append(marks[k])
            edge_to.append(marks[k + 1])
    first_edge[n_lines] = len(edge_u)
    for tee, node_vertex in laterals:
        edge_u.append(tee)
        edge_v.append(node_vertex)
        edge_line.append(-1)
        edge_from.append(0.0)
        edge_to.append(float(np.hypot(*(vertex_xy[tee] - vertex_xy[node_vertex]))))

    n_vertices = len(vertex_xy)
    xy = np.array(vertex_xy, dtype=float).reshape(n_vertices, 2)
    u = np.asarray(edge_u, dtype=np.int64)
    v = np.asarray(edge_v, dtype=np.int64)
    line_of_edge = np.asarray(edge_line, dtype=np.int64)
    nodes = nodes.assign(vertex=vertex_of_node)

    # 4. vertex roles from the nodes on them
    status = _column(nodes, "status")
    line_status = _column(lines, "status")
    device = np.zeros(n_vertices, dtype=bool)
    blocked = np.zeros(n_vertices, dtype=bool)
    operable = np.ones(n_vertices, dtype=bool)
    source = np.zeros(n_vertices, dtype=bool)
    is_device = np.isin(node_kind, DEVICE_KINDS)
    device[vertex_of_node[is_device]] = True
    shut = is_device & (
        ((node_kind == "valve") & (status == "closed"))
        | ((node_kind == "switch") & (status == "open"))
    )
    blocked[vertex_of_node[shut]] = True
    stuck = is_device & np.isin(status, ("inoperable", "damaged", "out_of_service"))
    operable[vertex_of_node[stuck]] = False
    feeds = np.isin(node_kind, SOURCE_KINDS) & ~np.isin(status, OUT_OF_SERVICE)
    source[vertex_of_node[feeds]] = True
    in_service = np.ones(len(u), dtype=bool)
    real = line_of_edge >= 0
    in_service[real] = ~np.isin(line_status[line_of_edge[real]], OUT_OF_SERVICE)
    report(f"{name}: topology", 3, 4)

    segment_of_edge, segment_of_vertex = _segments(u, v, device, n_vertices)
    device_segments: dict[int, set[int]] = {}
    for ends in (u, v):
        on_device = device[ends]
        for vertex, segment in zip(ends[on_device], segment_of_edge[on_device], strict=True):
            device_segments.setdefault(int(vertex), set()).add(int(segment))
    segment_devices: dict[int, set[int]] = {}
    for vertex, segments in device_segments.items():
        for segment in segments:
            segment_devices.setdefault(segment, set()).add(vertex)

    served = _serve_buildings(
        buildings,
        crs=crs,
        nodes=nodes,
        node_props=node_props,
        line_geoms=line_geoms,
        line_tree=line_tree,
        first_edge=first_edge,
        edge_to=np.asarray(edge_to),
        service_m=service_m,
    )
    lines = lines.assign(
        length_m=lengths, in_service=~np.isin(line_status, OUT_OF_SERVICE)
    ).reset_index(drop=True)
    report(f"{name}: topology", 4, 4)
    return UtilityNetwork(
        name=name,
        crs=crs,
        lines=lines,
        nodes=nodes,
        vertex_xy=xy,
        edge_u=u,
        edge_v=v,
        edge_line=line_of_edge,
        edge_from_m=np.asarray(edge_from),
        edge_to_m=np.asarray(edge_to),
        line_first_edge=first_edge,
        device=device,
        normally_blocked=blocked,
        operable=operable,
        source=source,
        edge_in_service=in_service,
        segment_of_edge=segment_of_edge,
        segment_of_vertex=segment_of_vertex,
        buildings=served,
        problems=pd.DataFrame(problems, columns=["kind", "id", "detail", "x", "y"]),
        _node_index=node_index,
        _device_segments={k: frozenset(s) for k, s in device_segments.items()},
        _segment_devices={k: frozenset(s) for k, s in segment_devices.items()},
    )


def _segments(
    u: np.ndarray, v: np.ndarray, device: np.ndarray, n_vertices: int
) -> tuple[np.ndarray, np.ndarray]:
    """Label the parts of the network between devices: pieces joined through non-devices."""
    n_edges = len(u)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for side in (u, v):
        keep = ~device[side]
        rows.append(np.flatnonzero(keep))
        cols.append(n_edges + side[keep])
    r = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
    size = n_edges + n_vertices
    graph = sparse.coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    # number the segments 0.. in order of first piece, then lone vertices
    order = np.concatenate([labels[:n_edges], labels[n_edges:][~device]])
    _, first = np.unique(order, return_index=True)
    renumber = np.full(labels.max() + 1 if len(labels) else 0, -1)
    renumber[order[np.sort(first)]] = np.arange(len(first))
    segment_of_edge = renumber[labels[:n_edges]]
    segment_of_vertex = np.where(device, -1, renumber[labels[n_edges:]])
    return segment_of_edge, segment_of_vertex


def _serve_buildings(
    buildings: gpd.GeoDataFrame | None,
    *,
    crs: str,
    nodes: gpd.GeoDataFrame,
    node_props: list[dict[str, Any]],
    line_geoms: np.ndarray,
    line_tree: shapely.STRtree,
    first_edge: np.ndarray,
    edge_to: np.ndarray,
    service_m: float,
) -> pd.DataFrame:
    """Attach buildings: by a node's ``building`` property, else to the nearest piece."""
    columns = ["id", "population", "vertex", "edge"]
    if buildings is None or buildings.empty:
        return pd.DataFrame(columns=columns)
    ids = buildings["id"].astype(str).to_numpy()
    population = (
        pd.to_numeric(buildings.get("population"), errors="coerce").fillna(0).to_numpy(int)
        if "population" in buildings
        else np.zeros(len(ids), dtype=int)
    )
    vertex = np.full(len(ids), -1)
    edge = np.full(len(ids), -1)
    position = {b: i for i, b in enumerate(ids)}
    for j, props in enumerate(node_props):
        b = props.get("building")
        if b is not None and str(b) in position:
            vertex[position[str(b)]] = nodes["vertex"].iat[j]
    rest = np.flatnonzero(vertex < 0)
    if len(rest) and len(line_geoms):
        points = _metric(buildings.iloc[rest], crs).geometry.representative_point().to_numpy()
        hit, line = line_tree.query_nearest(points, max_distance=service_m, all_matches=False)
        along = shapely.line_locate_point(line_geoms[line], points[hit])
        for b, i, at in zip(rest[hit], line, along, strict=True):
            first, last = first_edge[i], first_edge[i + 1]
            edge[b] = first + min(np.searchsorted(edge_to[first:last], at), last - first - 1)
    return pd.DataFrame({"id": ids, "population": population, "vertex": vertex, "edge": edge})


def _metric(frame: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    if frame.crs is None:
        raise ParameterError("the features have no CRS", parameter="crs")
    out = frame.to_crs(crs)
    return gpd.GeoDataFrame(out, geometry=shapely.force_2d(out.geometry.to_numpy()), crs=crs)


def _props(frame: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    if "props" not in frame:
        return [{} for _ in range(n)]
    return [p if isinstance(p, dict) else {} for p in frame["props"]]


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), "", dtype=object)
    return frame[name].fillna("").astype(str).to_numpy()


def _problem(kind: str, feature: Any, detail: str, xy: np.ndarray | None = None) -> dict[str, Any]:
    x, y = (float(xy[0]), float(xy[1])) if xy is not None else (np.nan, np.nan)
    return {"kind": kind, "id": str(feature), "detail": detail, "x": x, "y": y}
