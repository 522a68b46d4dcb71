"""Closed roads, from the ``closures`` layer and from flood rasters.

Closures are areas, lines, points or road ids with a time window; a flood raster is a GeoTIFF
of water depth, and roads under more than a threshold are closed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
import rasterio.io
import shapely
from psycopg import sql
from pyproj import Transformer
from pyproj.exceptions import CRSError, ProjError

from layers import overlay
from layers.catalog import LAYERS
from layers.database import owner_cursor
from routing.network import RoadNetwork, RoutingError

#: A line closure closes an edge when it runs along at least this share of it (or 10 m).
LINE_SHARE = 0.5
#: How close to a line or point closure an edge must be (m).
TOLERANCE_M = 3.0

# routing_edges.id is roads.vid. Each branch reads the roads table itself, so its GiST index
# (and the unique index on current ids) serves; closures given by road ids close only those.
# In a scenario that edits closures or roads, both are read as the scenario has them
# (layers.overlay.relation); an edited road's vid is its edit's (-eid), as the scenario's
# network numbers it.
_ACTIVE_CLOSURES = sql.SQL(
    """
WITH active AS MATERIALIZED (
    SELECT geom, road_ids FROM {closures} AS c
    WHERE {when}
      AND (starts_at IS NULL OR starts_at <= %(at)s)
      AND (ends_at IS NULL OR ends_at > %(at)s)
      AND NOT (%(emergency)s AND coalesce(c.props ->> 'emergency_access', '') = 'true')
)
SELECT r.vid FROM active c JOIN {roads} r
  ON {road_when} AND c.road_ids IS NULL
 AND GeometryType(c.geom) IN ('POLYGON', 'MULTIPOLYGON') AND ST_Intersects(r.geom, c.geom)
UNION
SELECT r.vid FROM active c JOIN {roads} r
  ON {road_when} AND c.road_ids IS NULL
 AND GeometryType(c.geom) IN ('LINESTRING', 'MULTILINESTRING')
 AND r.geom && ST_Expand(c.geom, 0.0001)  -- index prefilter: 0.0001 degree > 3 m
 AND ST_DWithin(r.geom::geography, c.geom::geography, %(tolerance)s)
 AND ST_Length(ST_Intersection(
         r.geom, ST_Buffer(c.geom::geography, %(tolerance)s)::geometry)::geography)
     >= LEAST(10.0, %(share)s * ST_Length(r.geom::geography))
UNION
SELECT r.vid FROM active c JOIN {roads} r
  ON {road_when} AND c.road_ids IS NULL
 AND GeometryType(c.geom) IN ('POINT', 'MULTIPOINT')
 AND r.geom && ST_Expand(c.geom, 0.0001)
 AND ST_DWithin(r.geom::geography, c.geom::geography, %(tolerance)s)
UNION
SELECT r.vid FROM active c
  CROSS JOIN LATERAL jsonb_array_elements_text(c.road_ids) AS closed(road_id)
  JOIN {roads} r ON {road_when} AND r.id = closed.road_id
 WHERE c.road_ids IS NOT NULL AND jsonb_typeof(c.road_ids) = 'array'
"""
)


def closed_by_layer(
    *, at: datetime | None = None, url: str | None = None, profile: str = "car"
) -> set[int]:
    """Return the ids (``routing_edges.id``) of the edges the closures layer closes at a moment.

    A closure is active when ``starts_at <= at < ends_at`` (a missing bound is open). A closure
    with ``road_ids`` closes exactly those roads (its geometry is only for display); otherwise
    an area closes every edge it touches, a line the edges it runs along (at least half of the
    edge, or 10 m, within 3 m of it), a point the edges within 3 m. A closure whose ``props``
    say ``"emergency_access": true`` (a cordon: traffic kept out, fire engines let in) does
    not close anything to the ``emergency`` profile.

    In the scenario in force (:mod:`layers.overlay`), its closures and roads count; in one
    built on a past moment, the closures and roads of that moment.

    Parameters
    ----------
    at
        The moment; now by default (a scenario's own moment, if it has one).
    url
        Database URL; the configured one by default.
    profile
        The routing profile the closures are for.

    Returns
    -------
    set of int
        Closed edge ids.
    """
    scenario_moment = overlay.read_moment(None)
    moment = at or scenario_moment or datetime.now(UTC)
    params = {
        "at": moment,
        "tolerance": TOLERANCE_M,
        "share": LINE_SHARE,
        "emergency": profile == "emergency",
    }
    query = _ACTIVE_CLOSURES.format(
        closures=overlay.relation(LAYERS["closures"]),
        roads=overlay.relation(LAYERS["roads"]),
        when=overlay.valid_at(scenario_moment),
        road_when=overlay.valid_at(scenario_moment, table="r"),
    )
    with owner_cursor(url) as cur:  # shared by every caller: read as the owner
        cur.execute(query, params)
        return {int(row[0]) for row in cur.fetchall()}


_NEXT_CHANGE = sql.SQL(
    """
SELECT min(moment) FROM (
    SELECT starts_at AS moment FROM {closures} AS c WHERE valid_to IS NULL AND starts_at > %(at)s
    UNION ALL
    SELECT ends_at FROM {closures} AS c WHERE valid_to IS NULL AND ends_at > %(at)s
) AS changes
"""
)


def next_change(at: datetime, *, url: str | None = None) -> datetime | None:
    """Return the first moment after ``at`` when a closure's time window opens or shuts.

    Until then :func:`closed_by_layer` answers the same (while the closures and roads do not
    change): the router keeps its answer that long.

    Parameters
    ----------
    at
        The moment (timezone-aware).
    url
        Database URL; the configured one by default.

    Returns
    -------
    datetime or None
        The moment, or None when no window opens or shuts after ``at``.
    """
    query = _NEXT_CHANGE.format(closures=overlay.relation(LAYERS["closures"]))
    with owner_cursor(url) as cur:
        cur.execute(query, {"at": at})
        row = cur.fetchone()
    return None if row is None else row[0]


def flooded_edges(
    network: RoadNetwork,
    raster: str | Path | bytes,
    *,
    threshold_m: float = 0.3,
    step_m: float = 5.0,
) -> np.ndarray:
    """Return the edges (indices) under more than ``threshold_m`` of water.

    Each edge is sampled every ``step_m`` metres (and at both ends) in the raster's CRS; an edge
    whose deepest sample exceeds the threshold is flooded. Nodata and cells outside the raster
    are dry.

    Parameters
    ----------
    network
        The road network.
    raster
        GeoTIFF of water depth in metres: a path, or the file's bytes.
    threshold_m
        Depth above which a road is impassable.
    step_m
        Sampling interval along the edges.

    Returns
    -------
    numpy.ndarray
        Indices of the flooded edges.

    Raises
    ------
    RoutingError
        If the raster cannot be read or has no CRS.
    """
    if threshold_m < 0:
        raise RoutingError("threshold must be zero or more", parameter="threshold_m")
    try:
        if isinstance(raster, bytes):
            with rasterio.io.MemoryFile(raster) as memory, memory.open() as dataset:
                return _flooded(network, dataset, threshold_m, step_m)
        with rasterio.open(raster) as dataset:
            return _flooded(network, dataset, threshold_m, step_m)
    except rasterio.errors.RasterioIOError as exc:
        raise RoutingError(f"cannot read the flood raster: {exc}", parameter="raster") from exc
    except (ProjError, CRSError) as exc:
        raise RoutingError(
            f"the flood raster's CRS cannot be used: {exc}", parameter="raster"
        ) from exc


def _flooded(
    network: RoadNetwork, dataset: rasterio.io.DatasetReader, threshold: float, step: float
) -> np.ndarray:
    if dataset.crs is None:
        raise RoutingError("the flood raster has no CRS", parameter="raster")
    lines = network.metric_geometry
    counts = np.maximum(np.ceil(shapely.length(lines) / step).astype(int), 1) + 1
    owner = np.repeat(np.arange(len(lines)), counts)
    fractions = np.concatenate([np.linspace(0, 1, c) for c in counts])
    points = shapely.line_interpolate_point(lines[owner], fractions, normalized=True)
    x, y = shapely.get_x(points), shapely.get_y(points)
    to_raster = Transformer.from_crs(network.metric_crs, dataset.crs, always_xy=True)
    rx, ry = to_raster.transform(x, y)
    rows, cols = rasterio.transform.rowcol(dataset.transform, rx, ry)
    rows, cols = np.asarray(rows), np.asarray(cols)
    inside = (rows >= 0) & (rows < dataset.height) & (cols >= 0) & (cols < dataset.width)
    band = dataset.read(1, masked=True)
    depth = np.zeros(len(points))
    values = band[rows[inside], cols[inside]]
    depth[inside] = np.ma.filled(values.astype(float), 0.0)
    deepest = np.zeros(len(lines))
    np.maximum.at(deepest, owner, depth)
    return np.flatnonzero(deepest > threshold)
