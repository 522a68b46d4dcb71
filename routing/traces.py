"""Utility traces: isolate a break, trace an outage, follow a grid fault's cascade.

A break on a pipe (or a fault on a power line) is isolated by closing the valves (opening
the switches) on the boundary of its segment; a device that cannot be operated is passed and
the next ring out closes instead. Supply is then traced from the sources: whatever no longer
reaches one loses supply — nodes, hydrants, buildings. A grid outage darkens what the grid
feeds (pumps, signals, cameras, named by a ``fed_by`` property or else fed by the nearest
transformer), and a dark pump stops the water it lifts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from layers import access, overlay
from layers.errors import MissingInputError
from layers.queries import as_of, layer_versions, read_layer
from layers.settings import get_settings
from routing.utility_network import (
    DEVICE_KINDS,
    NETWORK_LAYERS,
    NETWORKS,
    MissingNetworkError,
    Progress,
    TopologyError,
    UtilityNetwork,
    build_network,
)

#: How far from a pipe a break point may be (m).
BREAK_SNAP_M = 25.0
#: How far a dependent asset may be from the transformer that feeds it (m).
FEED_M = 1000.0
#: Node kinds that carry flow through their vertex: out of service, they stop it.
THROUGH_KINDS = (*DEVICE_KINDS, "pump", "source", "junction", "substation", "transformer", "bus")

_PIPE_LAYERS = ("pipelines", "pipe_nodes", "buildings")
_POWER_LAYERS = ("power_lines", "power_nodes", "buildings")
#: Layers holding what the grid feeds (pumps are pipe nodes).
_DEPENDENT_LAYERS = ("pipe_nodes", "signals", "cameras")


@dataclass(frozen=True)
class Outage:
    """What a break, a fault or an operation takes out of a network.

    Attributes
    ----------
    network
        The network traced.
    cause
        What happened: ``{"kind": "break" | "fault" | "operation", ...}`` with the line, the
        point (lon, lat) and the devices or nodes given.
    operate
        What to operate to isolate it, nearest the break first: valves to close, switches to
        open, and a source inside the isolated part to shut; the devices operated for a plain
        operation.
    unable
        Devices met that cannot be operated (the next ring out closes instead).
    isolated
        Pieces cut out by the isolation: ``line`` (id), ``length_m``, geometry (EPSG:4326).
    lost
        Pieces that lose supply (isolated included), same columns.
    nodes
        Nodes that lose supply: ``id``, ``kind`` (devices operated are not listed).
    buildings
        Buildings that lose supply: ``id``, ``population``.
    """

    network: str
    cause: dict[str, Any]
    operate: list[str]
    unable: list[str]
    isolated: gpd.GeoDataFrame
    lost: gpd.GeoDataFrame
    nodes: pd.DataFrame
    buildings: pd.DataFrame

    @property
    def hydrants(self) -> list[str]:
        """Hydrants out of service."""
        return sorted(self.nodes.loc[self.nodes["kind"] == "hydrant", "id"])

    def summary(self) -> dict[str, Any]:
        """Return the figures: devices, lengths, nodes, hydrants, buildings, population."""
        return {
            "network": self.network,
            "operate": len(self.operate),
            "unable": len(self.unable),
            "isolated_length_m": round(float(self.isolated["length_m"].sum()), 1),
            "lost_length_m": round(float(self.lost["length_m"].sum()), 1),
            "nodes": len(self.nodes),
            "hydrants": len(self.hydrants),
            "buildings": len(self.buildings),
            "population": int(self.buildings["population"].sum()),
        }


@dataclass(frozen=True)
class Cascade:
    """A grid outage and what it darkens in turn.

    Attributes
    ----------
    power
        The grid outage.
    dark
        Assets fed by de-energised power nodes: ``layer``, ``id``, ``kind``, ``fed_by``.
    water
        Per pipe network, the outage its dark pumps cause.
    """

    power: Outage
    dark: pd.DataFrame
    water: dict[str, Outage] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Return the figures of the grid outage, the dark assets and the pipe outages."""
        counts = self.dark.groupby("layer").size().to_dict() if len(self.dark) else {}
        return {
            "power": self.power.summary(),
            "dark": {str(k): int(v) for k, v in counts.items()},
            "water": {name: o.summary() for name, o in self.water.items()},
        }


class Utilities:
    """The utility networks of one store, built once and rebuilt when their layers change.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    tolerance_m, attach_m, service_m
        Topology tolerances (see :func:`routing.utility_network.build_network`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        tolerance_m: float = 0.5,
        attach_m: float = 30.0,
        service_m: float = 100.0,
    ):
        self.url = url
        self.tolerance_m, self.attach_m, self.service_m = tolerance_m, attach_m, service_m
        self._cache: dict[tuple[str, str], tuple[tuple[int, ...], UtilityNetwork]] = {}
        self._feeds: tuple[tuple[Any, ...], pd.DataFrame] | None = None
        self._lock = threading.Lock()

    def network(
        self,
        name: str,
        *,
        at: datetime | str | None = None,
        progress: Progress | None = None,
    ) -> UtilityNetwork:
        """Return a network's topology, current or as of a moment.

        Parameters
        ----------
        name
            ``water``, ``gas``, ``sewer``, ``heat`` or ``power``.
        at
            A moment: the network as it was then. None: the current one (cached).
        progress
            Called as ``progress(stage, done, total)`` while the topology is built.

        Returns
        -------
        UtilityNetwork
            The network.

        Raises
        ------
        TopologyError
            For an unknown network.
        MissingNetworkError
            If the network holds no lines (then): the message names the layer to load and how.
        layers.errors.AccessError
            If the caller may not read what the network is drawn from (its layers, its rows).
        """
        if name not in NETWORKS:
            raise TopologyError(
                f"unknown network {name!r}; known: {', '.join(NETWORKS)}", parameter="network"
            )
        # kept in memory for every caller: this caller must read all it is drawn from
        access.require_rows(NETWORK_LAYERS[name], "network", name, parameter="network")
        if at is not None:
            return self._load(name, as_of(at), progress)
        stamp = layer_versions(_POWER_LAYERS if name == "power" else _PIPE_LAYERS, url=self.url)
        # one network per revision of a scenario that edits its layers (layers.overlay): a
        # scenario's never serves the base, and one that edits none of them reads the base's
        scenario = overlay.active()
        drawn = _POWER_LAYERS if name == "power" else _PIPE_LAYERS
        edited = scenario is not None and any(scenario.edits(layer) for layer in drawn)
        slot = (name, scenario.signature if scenario is not None and edited else "")
        with self._lock:
            cached = self._cache.get(slot)
            if cached is None or cached[0] != stamp:
                # kept for every caller: read whole, as the owner (each answer is checked
                # against its caller's grant where it is served)
                with access.acting_as(None):
                    cached = (stamp, self._load(name, None, progress))
                self._cache.pop(slot, None)
                self._cache[slot] = cached
                while len(self._cache) > 2 * len(NETWORKS) + 8:  # scenarios' beyond 8 go first
                    del self._cache[next(iter(self._cache))]
            return cached[1]

    def _load(self, name: str, at: datetime | None, progress: Progress | None) -> UtilityNetwork:
        buildings = read_layer("buildings", at=at, url=self.url)
        if name == "power":
            lines = read_layer("power_lines", at=at, url=self.url)
            nodes = read_layer("power_nodes", at=at, url=self.url)
        else:
            lines = read_layer("pipelines", at=at, url=self.url)
            nodes = read_layer("pipe_nodes", at=at, url=self.url)
            lines = lines[lines["network"] == name]
            nodes = nodes[nodes["network"] == name]
        if lines.empty:
            raise MissingNetworkError(name)
        crs = get_settings().metric_crs
        return build_network(
            name,
            lines,
            nodes,
            buildings=buildings,
            crs=crs,
            tolerance_m=self.tolerance_m,
            attach_m=self.attach_m,
            service_m=self.service_m,
            progress=progress,
        )

    def isolate(
        self,
        point: tuple[float, float] | None = None,
        *,
        network: str | None = None,
        line: str | None = None,
        inoperable: Sequence[str] = (),
    ) -> Outage:
        """Isolate a break (pipe) or fault (power line) at a point or on a line.

        Parameters
        ----------
        point
            ``(lon, lat)`` of the break; the nearest line of ``network`` (of any network
            when not given) within 25 m.
        network
            The network; found from the point or line when not given.
        line
            A pipe or power line id, instead of a point (the break at its middle).
        inoperable
            Device ids that will not operate, besides those marked so in the layer.

        Returns
        -------
        Outage
            Devices to operate, what is isolated and what loses supply.

        Raises
        ------
        MissingNetworkError
            If ``network`` holds no lines.
        layers.onemap.MissingInputError
            If no network is given and none holds lines.
        TopologyError
            If the point or line is on no line of the network(s).
        """
        names = [network] if network else list(NETWORKS)
        best: tuple[float, UtilityNetwork, int, float] | None = None
        loaded = 0
        for name in names:
            try:
                net = self.network(name)
            except MissingNetworkError:
                if network:
                    raise
                continue  # any network: those with lines
            loaded += 1
            found = locate(net, point=point, line=line)
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], net, found[1], found[2])
        if not loaded:
            raise MissingInputError(
                "pipelines",
                "no utility lines loaded: there is no pipe or power line to isolate a break on",
                "import them with `twin ingest pipelines FILE` or `twin ingest power_lines FILE`",
                parameter="network",
            )
        if best is None:
            where = f"line {line!r}" if line else f"point {point}"
            scope = f"the {network} network" if network else "any network"
            raise TopologyError(
                f"{where} is not on a line of {scope} (within {BREAK_SNAP_M:g} m)",
                parameter="line" if line else "point",
            )
        _, net, edge, position = best
        return isolate(net, edge=edge, position_m=position, inoperable=inoperable)

    def outage(
        self, network: str, *, operate: Sequence[str] = (), out: Sequence[str] = ()
    ) -> Outage:
        """Trace what an operation or failed elements take out of a network.

        Parameters
        ----------
        network
            The network.
        operate
            Devices operated: valves closed, switches opened.
        out
            Nodes or lines out of service (a failed transformer, a cut cable).

        Returns
        -------
        Outage
            What loses supply.

        Raises
        ------
        MissingNetworkError
            If the network holds no lines.
        TopologyError
            If a device or element is not in the network.
        """
        return outage(self.network(network), operate=operate, out=out)

    def dependents(self, *, feed_m: float = FEED_M) -> pd.DataFrame:
        """Return the assets the grid feeds: pumps, signals and cameras with their feed.

        Parameters
        ----------
        feed_m
            How far an asset without a ``fed_by`` property may be from the transformer
            taken to feed it.

        Returns
        -------
        pandas.DataFrame
            ``layer``, ``id``, ``kind``, ``network`` (pumps), ``fed_by`` (power node id or
            None when nothing feeds it).
        """
        key = (
            *layer_versions((*_POWER_LAYERS, *_DEPENDENT_LAYERS), url=self.url),
            feed_m,
            overlay.signature(),
        )
        cached = self._feeds
        if cached is not None and cached[0] == key:
            return cached[1]
        grid = self.network("power")
        frames = []
        for layer in _DEPENDENT_LAYERS:
            with access.acting_as(None):  # kept for every caller: read whole, as the owner
                frame = read_layer(layer, url=self.url)
            if layer == "pipe_nodes":
                frame = frame[frame["kind"] == "pump"]
            frame = frame.assign(
                layer=layer,
                kind=frame["kind"] if "kind" in frame else layer.removesuffix("s"),
                network=frame.get("network"),
            )
            frames.append(frame[["layer", "id", "kind", "network", "props", "geometry"]])
        assets = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")
        feeds = _feeds(grid, assets, feed_m=feed_m)
        self._feeds = (key, feeds)  # read again only when the grid or the assets change
        return feeds

    def cascade(self, power: Outage, *, feed_m: float = FEED_M) -> Cascade:
        """Follow a grid outage: the assets it darkens and the water their pumps stop.

        Parameters
        ----------
        power
            An outage of the ``power`` network.
        feed_m
            See :meth:`dependents`.

        Returns
        -------
        Cascade
            The outage, the dark assets and the pipe networks' outages.
        """
        if power.network != "power":
            raise TopologyError("a cascade starts from a power outage", parameter="network")
        deps = self.dependents(feed_m=feed_m)
        dark_nodes = set(power.nodes["id"]) | set(power.cause.get("out", ()))
        dark = deps[deps["fed_by"].isin(dark_nodes)].reset_index(drop=True)
        water: dict[str, Outage] = {}
        pumps = dark[dark["layer"] == "pipe_nodes"]
        for name, group in pumps.groupby("network"):
            water[str(name)] = outage(self.network(str(name)), out=list(group["id"]))
        return Cascade(power=power, dark=dark, water=water)


def locate(
    net: UtilityNetwork,
    *,
    point: tuple[float, float] | None = None,
    line: str | None = None,
    max_distance_m: float = BREAK_SNAP_M,
) -> tuple[float, int, float] | None:
    """Find the piece of a network under a point, or the middle of a line.

    Parameters
    ----------
    net
        The network.
    point
        ``(lon, lat)``.
    line
        A line id (instead of a point).
    max_distance_m
        How far from a line the point may be.

    Returns
    -------
    tuple or None
        ``(distance m, piece, position along the line m)``, None if nothing is near.
    """
    if line is not None:
        if str(line) not in net.line_index:
            return None
        i = net.line_index[str(line)]
        middle = float(net.lines["length_m"].iat[i]) / 2
        return 0.0, net.piece_at(i, middle), middle
    if point is None:
        raise TopologyError("give a point or a line", parameter="point")
    x, y = _transformer("EPSG:4326", net.crs).transform(*point)
    if not (np.isfinite(x) and np.isfinite(y)) or not len(net.lines):
        return None
    here = shapely.Point(x, y)
    geoms = net.lines.geometry.to_numpy()
    found = net.line_tree.query_nearest(here, max_distance=max_distance_m, return_distance=True)
    if not len(found[0]):
        return None
    i = int(found[0][0])
    position = float(shapely.line_locate_point(geoms[i], here))
    return float(found[1][0]), net.piece_at(i, position), position


def isolate(
    net: UtilityNetwork,
    *,
    edge: int,
    position_m: float | None = None,
    inoperable: Sequence[str] = (),
) -> Outage:
    """Isolate a break on a piece: the devices to operate, then trace supply.

    Parameters
    ----------
    net
        The network.
    edge
        The broken piece.
    position_m
        Where along its line the break is (reported only).
    inoperable
        Device ids that will not operate, besides those marked so.

    Returns
    -------
    Outage
        The isolation plan and what loses supply.
    """
    _check_traceable(net)
    stuck = ~net.operable.copy()
    for device_id in inoperable:
        vertex = net.node_vertex(device_id, parameter="inoperable")
        if not net.device[vertex]:
            raise TopologyError(f"{device_id!r} is not a valve or switch", parameter="inoperable")
        stuck[vertex] = True
    segments = {int(net.segment_of_edge[edge])}
    frontier = list(segments)
    operate: set[int] = set()
    unable: set[int] = set()
    while frontier:
        segment = frontier.pop()
        for device in net.segment_devices(segment):
            if net.normally_blocked[device] or device in unable:
                continue
            if net.device_segments(device) <= segments:
                continue
            if stuck[device]:
                unable.add(device)
                operate.discard(device)
                fresh = set(net.device_segments(device)) - segments
                segments |= fresh
                frontier.extend(fresh)
            else:
                operate.add(device)
    # a device closed earlier may now sit inside the isolated area
    operate = {d for d in operate if not net.device_segments(d) <= segments}
    # a source inside the area feeds the break until its outlet is shut too
    shut = net.source & np.isin(net.segment_of_vertex, list(segments))
    removed = np.isin(net.segment_of_edge, list(segments))
    blocked = np.zeros(net.n_vertices, dtype=bool)
    blocked[list(operate)] = True
    operate |= {int(v) for v in np.flatnonzero(shut)}
    at = _lonlat(net, edge, position_m)
    cause = {
        "kind": "fault" if net.name == "power" else "break",
        "line": _line_id(net, edge),
        "position_m": None if position_m is None else round(position_m, 2),
        "point": at,
    }
    order = sorted(operate, key=lambda d: _distance(net, d, at))
    return _outage(
        net,
        cause=cause,
        blocked=blocked,
        removed=removed,
        operate=order,
        unable=sorted(unable),
        isolated=np.flatnonzero(removed),
        listed=~(blocked | shut),
        shut=shut,
    )


def outage(net: UtilityNetwork, *, operate: Iterable[str] = (), out: Iterable[str] = ()) -> Outage:
    """Trace what operating devices and taking elements out does to supply.

    Parameters
    ----------
    net
        The network.
    operate
        Device ids operated: valves closed, switches opened.
    out
        Node or line ids out of service (a failed transformer, a dark pump, a cut cable).

    Returns
    -------
    Outage
        What loses supply.
    """
    _check_traceable(net)
    blocked = np.zeros(net.n_vertices, dtype=bool)
    removed = np.zeros(net.n_edges, dtype=bool)
    devices: list[int] = []
    operate, out = list(operate), list(out)
    for device_id in operate:
        vertex = net.node_vertex(device_id, parameter="operate")
        if not net.device[vertex]:
            raise TopologyError(f"{device_id!r} is not a valve or switch", parameter="operate")
        blocked[vertex] = True
        devices.append(vertex)
    for element in out:
        if str(element) in net.line_index:
            i = net.line_index[str(element)]
            removed[net.line_first_edge[i] : net.line_first_edge[i + 1]] = True
            continue
        vertex = net.node_vertex(element, parameter="out")
        # a hydrant, meter or consumer out of service takes nothing else with it; a pump,
        # source, junction or transformer stops the flow through its vertex
        if net.node_kind(str(element)) in THROUGH_KINDS:
            blocked[vertex] = True
    cause = {"kind": "operation", "operate": operate, "out": out}
    return _outage(
        net,
        cause=cause,
        blocked=blocked,
        removed=removed,
        operate=devices,
        unable=[],
        isolated=np.flatnonzero(removed),
        listed=~blocked,
    )


def _outage(
    net: UtilityNetwork,
    *,
    cause: dict[str, Any],
    blocked: np.ndarray,
    removed: np.ndarray,
    operate: list[int],
    unable: list[int],
    isolated: np.ndarray,
    listed: np.ndarray,
    shut: np.ndarray | None = None,
) -> Outage:
    """Compare supply after with before; ``listed`` marks the vertices reported if lost."""
    before_v, before_e = net.base_supply
    after_v, after_e = net.supply(blocked=blocked, removed=removed, shut=shut)
    lost_v = before_v & ~after_v
    lost_e = before_e & ~after_e
    lost_e[isolated] = True
    table = net.tables
    hit = lost_v[table.node_vertex] & listed[table.node_vertex]
    lost_nodes = pd.DataFrame({"id": table.node_id[hit], "kind": table.node_kind[hit]})
    bv, be = table.building_vertex, table.building_edge
    out = np.where(bv >= 0, lost_v[np.maximum(bv, 0)], False) | np.where(
        be >= 0, lost_e[np.maximum(be, 0)], False
    )
    buildings = pd.DataFrame(
        {"id": table.building_id[out], "population": table.building_population[out]}
    )
    device_ids = net.device_ids | net.source_ids
    return Outage(
        network=net.name,
        cause=cause,
        operate=[device_ids[d] for d in operate],
        unable=[device_ids[d] for d in unable],
        isolated=_pieces(net, isolated),
        lost=_pieces(net, np.flatnonzero(lost_e)),
        nodes=lost_nodes,
        buildings=buildings,
    )


def _pieces(net: UtilityNetwork, edges: np.ndarray) -> gpd.GeoDataFrame:
    table = net.tables
    return gpd.GeoDataFrame(
        {"line": table.piece_line[edges], "length_m": table.piece_length[edges]},
        geometry=table.piece_geometry[edges],
        crs="EPSG:4326",
    )


def _check_traceable(net: UtilityNetwork) -> None:
    """Refuse a trace where supply cannot be traced: no lines, or no source to trace from."""
    if not net.n_edges:
        raise TopologyError(f"the {net.name} network holds no lines", parameter="network")
    if not net.source.any():
        raise TopologyError(
            f"the {net.name} network has no source (a 'source' node, or a 'substation' for "
            "power): supply cannot be traced",
            parameter="network",
        )


def _line_id(net: UtilityNetwork, edge: int) -> str | None:
    line = int(net.edge_line[edge])
    return None if line < 0 else str(net.lines["id"].iat[line])


def _lonlat(net: UtilityNetwork, edge: int, position_m: float | None) -> list[float]:
    line = int(net.edge_line[edge])
    if line < 0 or position_m is None:
        x, y = net.vertex_xy[net.edge_u[edge]]
    else:
        p = shapely.line_interpolate_point(net.lines.geometry.iat[line], position_m)
        x, y = p.x, p.y
    lon, lat = _transformer(net.crs, "EPSG:4326").transform(x, y)
    return [round(lon, 7), round(lat, 7)]


def _distance(net: UtilityNetwork, vertex: int, lonlat: list[float]) -> float:
    x, y = _transformer("EPSG:4326", net.crs).transform(lonlat[0], lonlat[1])
    return float(np.hypot(*(net.vertex_xy[vertex] - (x, y))))


def _feeds(grid: UtilityNetwork, assets: gpd.GeoDataFrame, *, feed_m: float) -> pd.DataFrame:
    """Name the power node feeding each asset: its ``fed_by``, else the nearest transformer."""
    known = set(grid.nodes["id"].astype(str))
    named = [
        str(p.get("fed_by")) if isinstance(p, dict) and str(p.get("fed_by")) in known else None
        for p in assets["props"]
    ]
    transformers = grid.nodes[grid.nodes["kind"] == "transformer"]
    fed_by = pd.Series(named, index=assets.index, dtype=object)
    missing = fed_by.isna().to_numpy()
    if missing.any() and len(transformers):
        points = assets.geometry[missing].to_crs(grid.crs).to_numpy()
        tree = shapely.STRtree(transformers.geometry.to_numpy())
        hit, near = tree.query_nearest(points, max_distance=feed_m, all_matches=False)
        ids = transformers["id"].astype(str).to_numpy()
        index = np.flatnonzero(missing)[hit]
        fed_by.iloc[index] = ids[near]
    out = pd.DataFrame(assets[["layer", "id", "kind", "network"]]).assign(fed_by=fed_by)
    return out.reset_index(drop=True)


_TRANSFORMERS: dict[tuple[str, str], Transformer] = {}


def _transformer(source: str, target: str) -> Transformer:
    key = (source, target)
    if key not in _TRANSFORMERS:
        _TRANSFORMERS[key] = Transformer.from_crs(source, target, always_xy=True)
    return _TRANSFORMERS[key]
