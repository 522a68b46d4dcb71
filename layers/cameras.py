"""Camera coverage: what each camera sees, which roads are watched, where the blind spots are.

A camera sees a sector from its point: centred on its ``heading`` (degrees clockwise from true
north), ``fov`` degrees wide (360: all round) and ``range_m`` metres deep. Buildings block the
view: rays are cast across the field of view, each is cut at its first hit on a building, and
the visible area is the polygon through the ray ends (:func:`view_cones`). A camera standing in
a footprint or on its facade (within :data:`MOUNT_TOLERANCE_M`) is mounted on that building and
sees past it.

:func:`camera_coverage` reads the cameras, buildings, roads and districts from the store (now or
as of a moment) and measures, per district, how much road the cones cover, and lists the longest
uncovered stretches of road. Lengths and areas are measured in the city's metric CRS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from layers.errors import ParameterError
from layers.queries import as_of, read_layer
from layers.settings import get_settings

#: A camera this close to a building footprint (inside it, or on its facade) is mounted on it:
#: that footprint does not occlude its view.
MOUNT_TOLERANCE_M = 0.5
#: Camera statuses whose cameras watch nothing (a missing status counts as active).
NOT_WATCHING = ("inactive", "damaged", "out_of_service", "planned")
#: Columns a camera needs to have a view.
VIEW_COLUMNS = ("heading", "fov", "range_m")
#: Fewest rays cast by an all-round (360 degree) camera.
_MIN_RAYS_ALL_ROUND = 8
#: Step towards north, in degrees of latitude, used to find the direction of true north.
_NORTH_STEP_DEG = 1e-5

_CONE_COLUMNS = ["id", "area_m2", "open_area_m2", "geometry"]
_DISTRICT_COLUMNS = ["id", "name", "level", "road_length_m", "covered_length_m", "share"]
_BLIND_SPOT_COLUMNS = ["length_m", "district_id", "district", "geometry"]


@dataclass(frozen=True)
class CameraCoverage:
    """How well the cameras watch the roads.

    Attributes
    ----------
    cones
        One row per watching camera: ``id``, ``area_m2`` (what it sees), ``open_area_m2``
        (its sector with nothing in the way) and ``geometry`` (EPSG:4326).
    districts
        One row per district (every level, each computed on its own): ``id``, ``name``,
        ``level``, ``road_length_m``, ``covered_length_m`` and ``share`` (covered / road
        length; NaN for a district without roads).
    blind_spots
        The longest connected stretches of road no cone covers, longest first: ``length_m``,
        ``district_id`` and ``district`` (the finest-level district holding at least half of
        the stretch, else missing) and ``geometry`` (EPSG:4326).
    skipped
        Ids of cameras in service that have no view to compute (no ``fov`` or ``range_m``, or
        no ``heading`` while their field of view is under 360 degrees).
    """

    cones: gpd.GeoDataFrame
    districts: pd.DataFrame
    blind_spots: gpd.GeoDataFrame
    skipped: tuple[str, ...] = ()


def watching(cameras: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Split the cameras in service into those with a view and those without one.

    A camera is in service unless its ``status`` is one of :data:`NOT_WATCHING` (a missing
    status counts as active); it has a view with a ``fov`` and ``range_m``, and a
    ``heading`` unless its field of view is 360 degrees or more.

    Parameters
    ----------
    cameras
        The cameras layer as :func:`layers.queries.read_layer` reads it (``status`` and
        :data:`VIEW_COLUMNS` columns, any CRS).

    Returns
    -------
    tuple of geopandas.GeoDataFrame
        ``(with a view, without one)``: rows of ``cameras``, in its order; cameras out of
        service are in neither.
    """
    cameras = cameras[~cameras["status"].isin(NOT_WATCHING).fillna(False).astype(bool)]
    fov = cameras["fov"].to_numpy(dtype=float, na_value=np.nan)
    has_view = (
        cameras["range_m"].notna().to_numpy()
        & ~np.isnan(fov)
        & (cameras["heading"].notna().to_numpy() | (fov >= 360.0))
    )
    return cameras[has_view], cameras[~has_view]


def view_cones(
    cameras: gpd.GeoDataFrame,
    occluders: gpd.GeoDataFrame | None,
    *,
    metric_crs: str,
    rays_per_degree: float = 2.0,
) -> gpd.GeoDataFrame:
    """Return the area each camera sees, with buildings blocking the view.

    Parameters
    ----------
    cameras
        Points with a CRS and the columns ``heading`` (degrees clockwise from true north; may be
        missing where ``fov`` is 360), ``fov`` (field of view in degrees, in (0, 360]) and
        ``range_m`` (metres, > 0). Ids come from an ``id`` column, else the index.
    occluders
        Polygons (buildings) with a CRS that block the view, or None. A footprint within
        :data:`MOUNT_TOLERANCE_M` of a camera is that camera's mount and does not block it.
    metric_crs
        A projected CRS in metres in which rays are cast and areas measured.
    rays_per_degree
        Rays cast per degree of field of view. The visible boundary between two rays is a
        straight line, so a shadow edge is placed within one ray step.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per camera, in input order: ``id``, ``area_m2`` (visible area), ``open_area_m2``
        (the same rays' sector with nothing in the way, so ``area_m2 <= open_area_m2``) and
        ``geometry`` (the visible polygon, EPSG:4326).

    Raises
    ------
    ParameterError
        If a column is missing, a value is out of range, the geometries are not points, a
        frame has no CRS or ``metric_crs`` is not a projected CRS in metres.
    """
    crs = _metric_crs(metric_crs)
    if not math.isfinite(rays_per_degree) or rays_per_degree <= 0:
        raise ParameterError(
            f"rays_per_degree must be a positive number, not {rays_per_degree}",
            parameter="rays_per_degree",
        )
    ids, x, y, bearing, fov, range_m = _views(cameras, crs)
    if len(ids) == 0:
        return gpd.GeoDataFrame(
            {"id": pd.Series(dtype=object), "area_m2": [], "open_area_m2": []},
            geometry=gpd.GeoSeries([], crs="EPSG:4326"),
        )[_CONE_COLUMNS]
    all_round = fov >= 360.0
    counts = np.where(
        all_round,
        np.maximum(_MIN_RAYS_ALL_ROUND, np.ceil(360.0 * rays_per_degree - 1e-9)),
        np.maximum(2, np.ceil(fov * rays_per_degree - 1e-9)) + 1,
    ).astype(np.int64)
    camera = np.repeat(np.arange(len(ids)), counts)
    step = np.where(all_round, 360.0 / counts, fov / np.maximum(counts - 1, 1))
    k = np.arange(len(camera)) - np.repeat(np.cumsum(counts) - counts, counts)
    start = np.where(all_round, bearing, bearing - fov / 2.0)
    angle = np.radians(start[camera] + step[camera] * k)
    dx, dy = np.sin(angle), np.cos(angle)
    reach = _first_hits(x, y, range_m, camera, dx, dy, occluders, crs)
    cones = _fans(x, y, camera, dx * reach, dy * reach, counts, all_round)
    open_cones = _fans(x, y, camera, dx * range_m[camera], dy * range_m[camera], counts, all_round)
    return gpd.GeoDataFrame(
        {
            "id": ids,
            "area_m2": shapely.area(cones),
            "open_area_m2": shapely.area(open_cones),
        },
        geometry=gpd.GeoSeries(cones, crs=crs).to_crs("EPSG:4326").to_numpy(),
        crs="EPSG:4326",
    )[_CONE_COLUMNS]


def camera_coverage(
    *,
    url: str | None = None,
    at: datetime | str | None = None,
    min_gap_m: float = 20.0,
    top: int = 10,
    rays_per_degree: float = 2.0,
) -> CameraCoverage:
    """Measure how much road the cameras watch, per district, and find the blind spots.

    Cameras in service (status ``active`` or missing; see :data:`NOT_WATCHING`) see what
    :func:`view_cones` gives them, with the buildings as occluders. Roads are de-duplicated
    first (an edge stored in both directions, the same line reversed, is counted once). A
    road counts in every district that holds a piece of it; every district row is computed
    on its own, so a city row and its wards' rows overlap.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    at
        A moment: the layers as of then (ISO 8601; without an offset it is UTC). None: now.
    min_gap_m
        Shortest uncovered stretch of road reported as a blind spot, metres.
    top
        How many blind spots to report, longest first.
    rays_per_degree
        Rays cast per degree of each camera's field of view.

    Returns
    -------
    CameraCoverage
        The cones, the per-district figures and the blind spots.

    Raises
    ------
    ParameterError
        If ``at``, ``min_gap_m``, ``top`` or ``rays_per_degree`` cannot be honoured.
    """
    moment = _moment(at)
    if not math.isfinite(min_gap_m) or min_gap_m < 0:
        raise ParameterError(
            f"min_gap_m must be a length of 0 m or more, not {min_gap_m}", parameter="min_gap_m"
        )
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ParameterError(
            f"top must be a whole number of 1 or more, not {top!r}", parameter="top"
        )
    crs = _metric_crs(get_settings().metric_crs)

    cameras, blind = watching(read_layer("cameras", at=moment, url=url))
    skipped = tuple(str(i) for i in blind["id"])
    buildings = None
    if len(cameras):
        bbox = _reach_bbox(cameras)
        buildings = read_layer("buildings", bbox=bbox, at=moment, url=url)
    cones = view_cones(
        cameras[["id", *VIEW_COLUMNS, "geometry"]].reset_index(drop=True),
        buildings,
        metric_crs=crs.to_string(),
        rays_per_degree=rays_per_degree,
    )
    seen = shapely.union_all(cones.geometry.to_crs(crs).to_numpy())

    roads = read_layer("roads", at=moment, url=url)
    lines = _distinct_lines(roads.geometry.to_crs(crs).to_numpy())
    covered = shapely.intersection(lines, seen)
    uncovered = shapely.difference(lines, seen)

    districts = read_layer("districts", at=moment, url=url)
    areas = districts.geometry.to_crs(crs).to_numpy()
    road_length = _length_within(lines, areas)
    covered_length = _length_within(covered, areas)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(road_length > 0, np.minimum(covered_length / road_length, 1.0), np.nan)
    per_district = pd.DataFrame(
        {
            "id": districts["id"].to_numpy(dtype=object),
            "name": districts["name"].to_numpy(dtype=object),
            "level": pd.array(districts["level"], dtype="Int64"),
            "road_length_m": road_length,
            "covered_length_m": covered_length,
            "share": share,
        },
        columns=_DISTRICT_COLUMNS,
    )
    blind_spots = _blind_spots(uncovered, districts, areas, crs, min_gap_m=min_gap_m, top=top)
    return CameraCoverage(cones, per_district, blind_spots, skipped)


def _moment(at: datetime | str | None) -> datetime | None:
    try:
        return as_of(at)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"at must be an ISO 8601 moment, not {at!r}", parameter="at") from err


def _metric_crs(metric_crs: str) -> CRS:
    try:
        crs = CRS.from_user_input(metric_crs)
    except CRSError as err:
        raise ParameterError(f"unknown CRS {metric_crs!r}", parameter="metric_crs") from err
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter"):
        raise ParameterError(
            f"{metric_crs} is not a projected CRS in metres", parameter="metric_crs"
        )
    return crs


def _views(
    cameras: gpd.GeoDataFrame, crs: CRS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check the cameras; return ids, metric x and y, grid bearings, fields of view, ranges."""
    if not isinstance(cameras, gpd.GeoDataFrame):
        raise ParameterError("cameras must be a GeoDataFrame", parameter="cameras")
    missing = [c for c in VIEW_COLUMNS if c not in cameras.columns]
    if missing:
        raise ParameterError(
            f"cameras lack the column(s) {', '.join(missing)}; a camera needs "
            f"{', '.join(VIEW_COLUMNS)}",
            parameter=missing[0],
        )
    if cameras.crs is None:
        raise ParameterError("the cameras have no CRS", parameter="crs")
    ids = (cameras["id"] if "id" in cameras.columns else cameras.index.to_series()).to_numpy(
        dtype=object
    )
    geoms = cameras.geometry.to_numpy()
    bad = (shapely.get_type_id(geoms) != shapely.GeometryType.POINT) | shapely.is_empty(geoms)
    if bad.any():
        raise ParameterError(f"cameras {_names(ids[bad])} are not points", parameter="geometry")
    heading = cameras["heading"].to_numpy(dtype=float, na_value=np.nan)
    fov = cameras["fov"].to_numpy(dtype=float, na_value=np.nan)
    range_m = cameras["range_m"].to_numpy(dtype=float, na_value=np.nan)
    bad = ~((fov > 0) & (fov <= 360))
    if bad.any():
        raise ParameterError(
            f"fov must be in (0, 360] degrees; cameras {_names(ids[bad])} have {_names(fov[bad])}",
            parameter="fov",
        )
    bad = ~((range_m > 0) & np.isfinite(range_m))
    if bad.any():
        raise ParameterError(
            f"range_m must be a positive length; cameras {_names(ids[bad])} have "
            f"{_names(range_m[bad])}",
            parameter="range_m",
        )
    bad = ~np.isfinite(heading) & (fov < 360)
    if bad.any():
        raise ParameterError(
            f"heading must be a finite number of degrees; cameras {_names(ids[bad])} have "
            f"{_names(heading[bad])}",
            parameter="heading",
        )
    lonlat = cameras.geometry.to_crs("EPSG:4326")
    lon, lat = lonlat.x.to_numpy(), lonlat.y.to_numpy()
    to_metric = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = (np.asarray(v, dtype=float) for v in to_metric.transform(lon, lat))
    north_x, north_y = (
        np.asarray(v, dtype=float) for v in to_metric.transform(lon, lat + _NORTH_STEP_DEG)
    )
    # True north as a grid bearing (the meridian convergence): headings are compass bearings.
    north = np.degrees(np.arctan2(north_x - x, north_y - y))
    bearing = np.where(np.isfinite(heading), heading, 0.0) + north
    return ids, x, y, bearing, fov, range_m


def _names(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _first_hits(
    x: np.ndarray,
    y: np.ndarray,
    range_m: np.ndarray,
    camera: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    occluders: gpd.GeoDataFrame | None,
    crs: CRS,
) -> np.ndarray:
    """Return how far each ray goes before its first building (its camera's range if none)."""
    reach = range_m[camera].copy()
    if occluders is None or len(occluders) == 0:
        return reach
    if occluders.crs is None:
        raise ParameterError("the occluders have no CRS", parameter="crs")
    blocks = occluders.geometry.to_crs(crs).to_numpy()
    blocks = blocks[~(shapely.is_missing(blocks) | shapely.is_empty(blocks))]
    kinds = shapely.get_type_id(blocks)
    if not np.isin(kinds, [shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON]).all():
        raise ParameterError("occluders must be polygons", parameter="occluders")
    invalid = ~shapely.is_valid(blocks)
    blocks[invalid] = shapely.make_valid(blocks[invalid])
    tree = shapely.STRtree(blocks)
    origins = np.asarray(shapely.points(x, y))
    mount_camera, mount_block = tree.query(origins, predicate="dwithin", distance=MOUNT_TOLERANCE_M)
    ox, oy = x[camera], y[camera]
    rays = np.asarray(
        shapely.linestrings(
            np.stack(
                [np.column_stack([ox, oy]), np.column_stack([ox + dx * reach, oy + dy * reach])],
                1,
            )
        )
    )
    ray, block = tree.query(rays, predicate="intersects")
    mounted = np.isin(camera[ray] * len(blocks) + block, mount_camera * len(blocks) + mount_block)
    ray, block = ray[~mounted], block[~mounted]
    if len(ray):
        pieces = shapely.intersection(rays[ray], blocks[block])
        np.minimum.at(reach, ray, shapely.distance(origins[camera[ray]], pieces))
    return reach


def _fans(
    x: np.ndarray,
    y: np.ndarray,
    camera: np.ndarray,
    ex: np.ndarray,
    ey: np.ndarray,
    counts: np.ndarray,
    all_round: np.ndarray,
) -> np.ndarray:
    """Build each camera's polygon from its ray ends (offsets ``ex``, ``ey`` from the camera).

    A sector starts at the camera; an all-round view is the ring of ray ends. Both are
    star-shaped around the camera, hence simple unless rays end on it.
    """
    apex = (~all_round).astype(np.int64)
    sizes = counts + apex
    first = np.cumsum(sizes) - sizes
    coords = np.empty((int(sizes.sum()), 2))
    coords[first[apex == 1]] = np.column_stack([x, y])[apex == 1]
    ray_offset = np.cumsum(counts) - counts
    slot = first[camera] + apex[camera] + (np.arange(len(camera)) - ray_offset[camera])
    coords[slot] = np.column_stack([x[camera] + ex, y[camera] + ey])
    rings = shapely.linearrings(coords, indices=np.repeat(np.arange(len(counts)), sizes))
    polygons = np.asarray(shapely.polygons(rings))
    invalid = ~shapely.is_valid(polygons)
    if invalid.any():
        polygons[invalid] = shapely.make_valid(
            polygons[invalid], method="structure", keep_collapsed=False
        )
    return polygons


def _reach_bbox(cameras: gpd.GeoDataFrame) -> tuple[float, float, float, float]:
    """Return a lon/lat box holding every camera's range (with a margin)."""
    minx, miny, maxx, maxy = cameras.geometry.to_crs("EPSG:4326").total_bounds
    reach = float(cameras["range_m"].astype(float).max()) * 1.2 + MOUNT_TOLERANCE_M
    dlat = reach / 110_000.0
    dlon = reach / (111_320.0 * max(math.cos(math.radians(max(abs(miny), abs(maxy)))), 0.01))
    return (minx - dlon, max(miny - dlat, -90.0), maxx + dlon, min(maxy + dlat, 90.0))


def _distinct_lines(lines: np.ndarray) -> np.ndarray:
    """Drop empty lines and repeated ones (the same line, in either direction)."""
    lines = lines[~(shapely.is_missing(lines) | shapely.is_empty(lines))]
    keys = pd.Series(shapely.to_wkb(shapely.normalize(lines)))
    return np.asarray(lines[~keys.duplicated().to_numpy()])


def _length_within(lines: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Return the length of ``lines`` inside each of ``areas``."""
    lengths = np.zeros(len(areas))
    if len(lines) == 0 or len(areas) == 0:
        return lengths
    area, line = shapely.STRtree(lines).query(areas, predicate="intersects")
    pieces = shapely.length(shapely.intersection(lines[line], areas[area]))
    np.add.at(lengths, area, pieces)
    return lengths


def _blind_spots(
    uncovered: np.ndarray,
    districts: gpd.GeoDataFrame,
    areas: np.ndarray,
    crs: CRS,
    *,
    min_gap_m: float,
    top: int,
) -> gpd.GeoDataFrame:
    """Return the ``top`` longest connected uncovered stretches of at least ``min_gap_m``.

    A stretch runs through points where two road pieces meet and stops where three or more
    meet (a junction) or coverage begins.
    """
    parts = shapely.get_parts(uncovered)
    parts = parts[shapely.get_type_id(parts) == shapely.GeometryType.LINESTRING]
    parts = parts[shapely.length(parts) > 0]
    stretches = np.empty(0, dtype=object)
    if len(parts):
        network = shapely.get_parts(shapely.union_all(parts))
        network = network[shapely.get_type_id(network) == shapely.GeometryType.LINESTRING]
        stretches = shapely.get_parts(shapely.line_merge(shapely.multilinestrings(network)))
    length = shapely.length(stretches)
    keep = np.flatnonzero(length >= min_gap_m)
    keep = keep[np.argsort(-length[keep], kind="stable")][:top]
    stretches, length = stretches[keep], length[keep]
    district_id = np.full(len(stretches), None, dtype=object)
    district_name = np.full(len(stretches), None, dtype=object)
    if len(stretches) and len(areas):
        area, stretch = shapely.STRtree(stretches).query(areas, predicate="intersects")
        overlap = shapely.length(shapely.intersection(stretches[stretch], areas[area]))
        level = districts["level"].astype(float).fillna(-1).to_numpy()
        pairs = pd.DataFrame(
            {"stretch": stretch, "area": area, "level": level[area], "overlap": overlap}
        )
        pairs = pairs[pairs["overlap"] >= 0.5 * length[pairs["stretch"].to_numpy()]]
        best = pairs.sort_values(
            ["stretch", "level", "overlap"], ascending=[True, False, False]
        ).drop_duplicates("stretch")
        chosen = best["stretch"].to_numpy()
        district_id[chosen] = districts["id"].to_numpy(dtype=object)[best["area"].to_numpy()]
        district_name[chosen] = districts["name"].to_numpy(dtype=object)[best["area"].to_numpy()]
    return gpd.GeoDataFrame(
        {"length_m": length, "district_id": district_id, "district": district_name},
        geometry=gpd.GeoSeries(stretches, crs=crs).to_crs("EPSG:4326").to_numpy(),
        crs="EPSG:4326",
    )[_BLIND_SPOT_COLUMNS]
