"""Accessibility of every building: the response time from the nearest station of each kind.

For each kind (fire station, hospital, police) one multi-source Dijkstra runs from every
available station of that kind at once (:meth:`routing.RoadNetwork.search` from the nodes each
station's snapped position leaves by, with their offsets), on the profile's network with the
closures active when the batch started. A building is reached where its representative point
snaps onto its nearest open road (:meth:`routing.RoadNetwork.snap`), arriving through the ends
of that edge (:meth:`routing.RoadNetwork.entries`); a station on the same edge may also drive
there directly (:meth:`routing.RoadNetwork.along`). The times are those of a trip *from* the
station *to* the building (the direction a response drives, as :func:`routing.coverage` and
:func:`routing.nearest_units` measure it), in seconds, without turnout. The station chosen is
the one of the least time; equal times go to the station with the lowest id.

Each worker builds the network from the store once (:mod:`twin.batch.networks`) and the three
searches once per batch; a partition (the buildings of whole districts, as points) then costs
one snap per building.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from distributed import Client
from psycopg import sql

from layers import access
from layers.catalog import get_layer
from layers.database import cursor, database_url
from layers.errors import MissingInputError
from layers.queries import read_layer
from routing import RoadNetwork, RoutingError, Snap
from routing.network import check_profile
from twin.batch.cluster import BatchError, assign_districts, objects, run_partitions
from twin.batch.networks import NetworkSpec, network_spec, worker_network
from twin.batch.stations import STATION_KINDS, Station, check_kinds, read_stations

_fields: dict[tuple[NetworkSpec, tuple[Station, ...]], _Field] = {}
_lock = threading.Lock()
#: Fields (one kind's search) one worker process keeps.
_MAX_FIELDS = 12


@dataclass(frozen=True)
class _Field:
    """One kind's search: time from the nearest station to every node, and which station."""

    times: np.ndarray
    station: np.ndarray  # per node: index of the station its time comes from, -1 unreached
    on_edge: dict[int, list[tuple[int, Snap]]]  # edge -> (station index, snap) standing on it


def _field(network: RoadNetwork, spec: NetworkSpec, stations: tuple[Station, ...]) -> _Field:
    """Search from every station of a kind at once; cached per worker process."""
    key = (spec, stations)
    with _lock:
        cached = _fields.get(key)
        if cached is not None:
            return cached
        sources: list[tuple[int, float]] = []
        owner: list[int] = []
        on_edge: dict[int, list[tuple[int, Snap]]] = {}
        for i, station in enumerate(stations):
            try:
                snap = network.snap(station.lon, station.lat)
            except RoutingError:
                continue  # far from any open road: it serves no building
            on_edge.setdefault(snap.edge, []).append((i, snap))
            for pair in network.exits(snap):
                sources.append(pair)
                owner.append(i)
        n = len(network.node_ids)
        if sources:
            times, best, _ = network.search(sources)
            by_node = np.where(best >= 0, np.asarray(owner, dtype=np.int64)[best], -1)
        else:
            times, by_node = np.full(n, np.inf), np.full(n, -1, dtype=np.int64)
        field = _Field(times, by_node, on_edge)
        while len(_fields) >= _MAX_FIELDS:
            _fields.pop(next(iter(_fields)))
        _fields[key] = field
        return field


def _nearest(
    network: RoadNetwork, field: _Field, snaps: list[Snap | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds from the nearest station to each snapped building, and that station's index."""
    seconds = np.full(len(snaps), np.inf)
    chosen = np.full(len(snaps), -1, dtype=np.int64)
    for i, snap in enumerate(snaps):
        if snap is None:
            continue
        best, who = math.inf, -1
        options = [
            (float(field.times[node] + offset), int(field.station[node]))
            for node, offset in network.entries(snap)
        ]
        for station, start in field.on_edge.get(snap.edge, []):
            direct = network.along(start, snap)
            if direct is not None:
                options.append((float(direct[0]), station))
        for time, station in options:
            if station >= 0 and (time < best or (time == best and station < who)):
                best, who = time, station
        if who >= 0 and math.isfinite(best):
            seconds[i], chosen[i] = best, who
    return seconds, chosen


def read_footprints(*, url: str) -> gpd.GeoDataFrame:
    """Read the current buildings' ids and footprints, nothing else, sorted by id.

    The layer's other attributes (and their JSON) are not read: for a city-wide batch they
    would cost more than the batch's own work. Read as :func:`layers.queries.read_layer` reads
    (the grant in force decides what may be read, and the read is noted for the audit).

    Parameters
    ----------
    url
        Database URL.

    Returns
    -------
    geopandas.GeoDataFrame
        ``id`` (text) and the footprints, EPSG:4326; sorted by id as pandas sorts text.

    Raises
    ------
    AccessError
        If the grant in force may not read the buildings.
    """
    layer = get_layer("buildings")
    access.require(layer.id)
    query = sql.SQL(
        "SELECT id, ST_AsBinary(geom) FROM {table} AS t WHERE valid_to IS NULL ORDER BY id"
    ).format(table=access.relation(layer))
    with cursor(url) as cur:
        cur.execute(query)
        rows = cur.fetchall()
    access.note(layer.id, count=len(rows), ids=[str(row[0]) for row in rows[:1000]])
    frame = gpd.GeoDataFrame(
        {"id": np.array([str(row[0]) for row in rows], dtype=object)},
        geometry=shapely.from_wkb([bytes(row[1]) for row in rows]),
        crs="EPSG:4326",
    )
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def accessibility_partition(
    part: gpd.GeoDataFrame,
    spec: NetworkSpec,
    stations: dict[str, tuple[Station, ...]],
) -> pd.DataFrame:
    """Measure the buildings of one partition (run on a worker, or in this process).

    Parameters
    ----------
    part
        Buildings: ``id``, ``district`` and the representative points they are reached at
        (EPSG:4326); not their footprints, which stay with the client.
    spec
        The network (built once per worker process).
    stations
        The stations by kind, each tuple sorted by id.

    Returns
    -------
    pandas.DataFrame
        ``id``, ``district``, ``road_m`` (building to its road, m; NaN: none within reach) and
        per kind ``<kind>_s`` (seconds, NaN: unreachable) and ``<kind>_id``; one row per
        building, in the partition's order.
    """
    network = worker_network(spec)
    snaps: list[Snap | None] = []
    for x, y in zip(
        shapely.get_x(part.geometry.to_numpy()),
        shapely.get_y(part.geometry.to_numpy()),
        strict=True,
    ):
        try:
            snaps.append(network.snap(float(x), float(y)))
        except RoutingError:
            snaps.append(None)  # outside the city or too far from any open road
    out: dict[str, object] = {
        "id": objects(part["id"]),
        "district": objects(part["district"]),
        "road_m": np.array([np.nan if s is None else s.distance_m for s in snaps]),
    }
    for kind, group in stations.items():
        seconds, chosen = _nearest(network, _field(network, spec, group), snaps)
        ids = np.array([s.id for s in group] + [None], dtype=object)
        out[f"{kind}_s"] = np.where(np.isfinite(seconds), seconds, np.nan)
        out[f"{kind}_id"] = ids[chosen]  # -1 picks the trailing None
    return pd.DataFrame(out)


def accessibility(
    *,
    url: str | None = None,
    client: Client | None = None,
    kinds: Sequence[str] = STATION_KINDS,
    profile: str = "emergency",
    progress: bool = False,
) -> gpd.GeoDataFrame:
    """Time from the nearest fire station, hospital and police station to every building.

    The client reads the buildings and the districts, and sends each worker its districts'
    buildings as points (a dask-geopandas frame, one partition per district); each worker
    builds the road network once and runs the three searches once.

    Parameters
    ----------
    url
        Database URL; the configured one by default. Every worker must reach it.
    client
        A :class:`distributed.Client` (:func:`twin.batch.batch_client`): the districts run on
        its workers. None: they run one after the other in this process.
    kinds
        Resource kinds to measure, e.g. ``("fire_station",)``.
    profile
        Routing profile (``emergency`` by default).
    progress
        Show the partitions done on stderr.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per current building, sorted by ``id``: ``district`` (the finest-level
        district holding its representative point, :func:`twin.batch.cluster.assign_districts`),
        ``road_m``, and per kind ``<kind>_s`` (seconds of the trip from the station to the
        building's representative point, NaN when none reaches it) and ``<kind>_id`` (that
        station); the building footprints, EPSG:4326. The same whichever the client and its
        worker count. ``attrs["partitions_s"]``: seconds the districts took (first sent to
        last gathered).

    Raises
    ------
    MissingInputError
        If no building is loaded.
    RoutingError
        If ``profile`` is unknown or no roads are loaded.
    ParameterError
        If a kind is unknown.
    """
    check_profile(profile)
    wanted = check_kinds(kinds)
    resolved = database_url(url)
    buildings = read_footprints(url=resolved)
    if buildings.empty:
        raise MissingInputError(
            "buildings",
            "no buildings loaded: accessibility is measured for every building",
            "import them with `twin ingest buildings FILE`",
        )
    # the workers get what they need, not the footprints: an id and a point per building
    frame = gpd.GeoDataFrame(
        {
            "id": buildings["id"],
            "district": assign_districts(buildings, read_layer("districts", url=resolved)),
        },
        geometry=buildings.geometry.representative_point(),
        crs="EPSG:4326",
    )
    result = run_partitions(
        frame,
        accessibility_partition,
        network_spec(resolved, profile=profile),
        read_stations(wanted, url=resolved),
        client=client,
        label="accessibility",
        progress=progress,
    )
    partitions_s = result.attrs["partitions_s"]
    if not result.empty:
        result = result.sort_values("id", kind="stable").reset_index(drop=True)
    ids = buildings["id"].to_numpy(dtype=object)
    if result.empty or not np.array_equal(result["id"].to_numpy(dtype=object), ids):
        raise BatchError(f"{len(result)} buildings measured of {len(buildings)}")
    out = gpd.GeoDataFrame(result, geometry=buildings.geometry.to_numpy(), crs="EPSG:4326")
    out.attrs["partitions_s"] = partitions_s
    return out
