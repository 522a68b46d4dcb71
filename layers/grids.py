"""Grid cells as districts: square cells (网格) for a city whose data has no admin boundaries.

Chinese cities manage their streets in grid cells (网格化管理, "grid management": each cell a
few hundred metres across, with its own staff); a twin without district boundaries can take
such a grid as its ``districts`` layer, so that every per-district figure (``district_stats``,
coverage per district) has zones to sum over. :func:`district_grid` makes the cells.

Cells are squares of ``cell_m`` metres in the city's metric CRS (a UTM zone, or a CGCS2000
Gauss-Krüger zone), their edges on multiples of ``cell_m`` (so cells of one size line up
whatever the box), taken to EPSG:4326 (each square's four corners are transformed; at a few
hundred metres the edges stay straight to well under a millimetre in longitude and latitude).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from layers.errors import ParameterError

__all__ = ["GRID_LEVEL", "MAX_CELLS", "district_grid"]

#: ``level`` of a grid cell in the ``districts`` layer. OpenStreetMap's ``admin_level`` runs
#: from 2 (country) to 11 (the finest subdivisions; https://wiki.openstreetmap.org/wiki/Key:admin_level),
#: so 12 (the catalog's maximum) makes the grid the finest level of every city: cells sort
#: after the wards and streets they lie in.
GRID_LEVEL = 12
#: Most cells one grid may have (a 40 km × 40 km city in 100 m cells has 160 000).
MAX_CELLS = 200_000


def district_grid(
    bbox: Sequence[float],
    *,
    cell_m: float,
    metric_crs: str | CRS,
    prefix: str = "grid",
    within: shapely.Geometry | None = None,
) -> gpd.GeoDataFrame:
    """Square grid cells covering a box, as rows for the ``districts`` layer.

    The cells are squares of ``cell_m`` metres in ``metric_crs`` whose edges fall on multiples
    of ``cell_m``, covering the box's extent in that CRS; each is taken to EPSG:4326 and cut to
    the box (and to ``within`` when given), so the cells along the edge are partial and no cell
    reaches outside the city's extent (where ingest would refuse it). Cells left empty by the
    cut are dropped.

    Rows are numbered from 1 at the north, columns from 1 at the west (as a map sheet reads),
    over the whole box: a cell keeps its number whatever ``within`` cuts away.

    Parameters
    ----------
    bbox
        ``(min lon, min lat, max lon, max lat)`` in EPSG:4326, degrees.
    cell_m
        Side of a cell, metres (in ``metric_crs``); e.g. 500.
    metric_crs
        Projected CRS in metres the squares are drawn in (the city's ``metric_crs``).
    prefix
        First part of every id: ``<prefix>/<cell_m>/r<row>c<col>``, e.g. ``grid/500/r3c7``.
    within
        A polygon in EPSG:4326 (the data's extent, the city's boundary): cells are cut to it
        and cells outside it are left out.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326, one row per cell, ordered by row then column: ``id``, ``name``
        (``网格 R3C7``), ``level`` (:data:`GRID_LEVEL`), ``cell_m``, ``row``, ``col`` and
        ``geometry`` (Polygon, or MultiPolygon where ``within`` cuts a cell in pieces). Ready
        for ``layers.ingest.ingest_frame("districts", ...)``; ``cell_m``, ``row`` and ``col``
        go to the features' properties.

    Raises
    ------
    ParameterError
        If the box is not a valid lon/lat box, ``cell_m`` is not a positive number, the CRS is
        not a projected CRS in metres, ``within`` is not a polygon, the grid would have more
        than :data:`MAX_CELLS` cells, or no cell is left.
    """
    west, south, east, north = _check_bbox(bbox)
    if not (isinstance(cell_m, int | float) and math.isfinite(cell_m) and cell_m > 0):
        raise ParameterError(
            f"cell_m must be a positive number of metres, not {cell_m!r}", parameter="cell_m"
        )
    crs = _metric(metric_crs)
    to_metric = Transformer.from_crs(4326, crs, always_xy=True)
    to_lonlat = Transformer.from_crs(crs, 4326, always_xy=True)
    xmin, ymin, xmax, ymax = to_metric.transform_bounds(west, south, east, north, densify_pts=21)
    x0 = math.floor(xmin / cell_m) * cell_m
    y1 = math.ceil(ymax / cell_m) * cell_m
    cols = max(1, math.ceil((xmax - x0) / cell_m))
    rows = max(1, math.ceil((y1 - ymin) / cell_m))
    if rows * cols > MAX_CELLS:
        raise ParameterError(
            f"a grid of {cell_m:g} m cells over this box has {rows * cols} cells, more than "
            f"{MAX_CELLS}; choose larger cells",
            parameter="cell_m",
        )
    area: shapely.Geometry = shapely.box(west, south, east, north)
    if within is not None:
        if not isinstance(within, shapely.Polygon | shapely.MultiPolygon) or within.is_empty:
            raise ParameterError("within must be a polygon in EPSG:4326", parameter="within")
        area = shapely.intersection(area, shapely.make_valid(within))
    # the corners of every cell, shared by its neighbours so adjacent cells meet exactly
    xs = x0 + cell_m * np.arange(cols + 1)
    ys = y1 - cell_m * np.arange(rows + 1)
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = to_lonlat.transform(gx, gy)
    lon, lat = np.asarray(lon), np.asarray(lat)
    grid_r, grid_c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    r, c = grid_r.ravel(), grid_c.ravel()
    corners = np.stack(
        [
            np.stack([lon[r, c], lat[r, c]], axis=-1),
            np.stack([lon[r, c + 1], lat[r, c + 1]], axis=-1),
            np.stack([lon[r + 1, c + 1], lat[r + 1, c + 1]], axis=-1),
            np.stack([lon[r + 1, c], lat[r + 1, c]], axis=-1),
        ],
        axis=1,
    )
    cells = shapely.polygons(corners)
    # keep the areal part of every cut (a cell touching the area along an edge leaves a line)
    cut = np.array(
        [_polygonal(g) for g in np.asarray(shapely.intersection(cells, area))], dtype=np.object_
    )
    keep = ~shapely.is_empty(cut)
    if not keep.any():
        raise ParameterError("no grid cell falls inside the area", parameter="within")
    rows_1, cols_1 = r[keep] + 1, c[keep] + 1
    size = f"{cell_m:g}"
    return gpd.GeoDataFrame(
        {
            "id": [f"{prefix}/{size}/r{i}c{j}" for i, j in zip(rows_1, cols_1, strict=True)],
            "name": [f"网格 R{i}C{j}" for i, j in zip(rows_1, cols_1, strict=True)],
            "level": GRID_LEVEL,
            "cell_m": float(cell_m),
            "row": rows_1.astype("int64"),
            "col": cols_1.astype("int64"),
        },
        geometry=list(cut[keep]),
        crs="EPSG:4326",
    )


def _check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"bbox must be four numbers (min lon, min lat, max lon, max lat), not {bbox!r}",
            parameter="bbox",
        ) from exc
    if not (
        all(math.isfinite(v) for v in (west, south, east, north))
        and -180 <= west < east <= 180
        and -90 <= south < north <= 90
    ):
        raise ParameterError(
            f"bbox {bbox!r} is not a box in lon/lat (min lon < max lon, min lat < max lat)",
            parameter="bbox",
        )
    return west, south, east, north


def _metric(metric_crs: str | CRS) -> CRS:
    try:
        crs = CRS.from_user_input(metric_crs)
    except CRSError as exc:
        raise ParameterError(f"unknown CRS {metric_crs!r}", parameter="metric_crs") from exc
    units = {axis.unit_name for axis in crs.axis_info}
    if not crs.is_projected or units - {"metre"}:
        raise ParameterError(
            f"{metric_crs!r} is not a projected CRS in metres", parameter="metric_crs"
        )
    return crs


def _polygonal(geometry: shapely.Geometry) -> shapely.Geometry:
    """Return the polygons of a geometry (empty if it has none)."""
    if isinstance(geometry, shapely.Polygon | shapely.MultiPolygon):
        return geometry
    if isinstance(geometry, shapely.GeometryCollection):
        parts = [g for g in geometry.geoms if isinstance(g, shapely.Polygon | shapely.MultiPolygon)]
        if parts:
            return shapely.union_all(parts)
    return shapely.Polygon()
