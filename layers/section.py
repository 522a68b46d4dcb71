"""The pipeline section (profile) along a drawn line: the ground and the pipes crossing it.

The classic section view of a utility GIS: a line drawn across the street, the ground along it
from the DEM, and every buried pipe and cable that crosses it drawn at its depth. The answer is
two tables over one axis, the distance along the line (m):

- ``ground``: the DEM sampled every ``step_m`` along the line, at its end and at each crossing;
- ``crossings``: each pipe (``pipelines``: water, gas, sewer, heat) and buried power cable
  (``power_lines`` of kind ``cable``, or any power line whose properties carry ``depth_m``)
  crossing the line, with its depth below ground and its elevation, ground there − depth.

Distances are measured in the city's metric CRS (``metric_crs``: a UTM or Gauss-Kruger zone,
within 0.04 % of the ellipsoid over a city); where a pipe crosses is found in EPSG:4326, where
lines are stored and drawn. The ground is sampled as :func:`layers.rasters.pipe_profiles`
samples it (the same DEM, the same interpolation), so that a pipe's elevation at a crossing is
the one its profile gives there: ``bilinear`` between the four nearest cell centres, or
``nearest``, the cell under the point (what rasterio's
:meth:`~rasterio.io.DatasetReader.sample` gives).

Depth is taken as the catalog's ``depth_m`` (the cover, from the ground to the pipe's top, as
the pipe profiles take it). The invert level (the pipe's inside bottom) is reported only when
the data carries it (a property in :data:`INVERT_KEYS`); it is not derived from the diameter.

Reads run under the grant in force (:func:`layers.access.acting_as`): a layer the caller may
not read gives no crossings (and is not listed in :attr:`Section.layers`), rows classified
above the caller are left out, and masked values are the masked ones. The DEM is read as every
raster is (rasters are not classified).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from rasterio.io import DatasetReader

from layers import access
from layers.errors import MissingInputError, ParameterError
from layers.onemap import check_geometry
from layers.queries import read_layer
from layers.rasters import RasterError, list_rasters, open_raster, sample_raster
from layers.settings import get_settings

__all__ = [
    "BURIED_POWER_KINDS",
    "INTERPOLATIONS",
    "INVERT_KEYS",
    "MAX_SAMPLES",
    "MAX_SECTION_LENGTH_M",
    "MIN_SAMPLES",
    "SECTION_LAYERS",
    "Section",
    "SectionError",
    "section",
]

#: Longest section line (m). A section is a street-scale drawing (across a street, along a
#: block, between two manholes): at 5 km the 1,000 samples are already 5 m apart, finer than
#: any city DEM's accuracy, and a longer line is a network question (a trace, a one-map
#: ``along``), not a section.
MAX_SECTION_LENGTH_M = 5_000.0
#: Most ground samples of one section at its step (the line's start and end included; the
#: crossings add theirs).
MAX_SAMPLES = 1_000
#: Fewest ground samples of a section at the default step (a short line still draws its ground
#: as the curve the bilinear DEM makes).
MIN_SAMPLES = 101
#: The layers whose features cross a section: the pipe networks and the power grid's cables.
SECTION_LAYERS = ("pipelines", "power_lines")
#: Power line kinds that are buried (drawn in a section even without a known depth).
BURIED_POWER_KINDS = ("cable",)
#: Feature properties read, in this order, as the invert level (m, same datum as the DEM).
INVERT_KEYS = ("invert_level_m", "invert_m")
#: Ground interpolations: between the four nearest cell centres, or the cell under the point.
INTERPOLATIONS = ("bilinear", "nearest")
#: Longest piece (degrees, ~10 m) of the line drawn into the metric CRS, where it bends.
DENSIFY_DEGREES = 1e-4
#: Name of the DEM a section uses when none is named and the store holds one so named.
DEFAULT_DEM = "dem"
#: Columns of :attr:`Section.crossings`, in order.
CROSSING_COLUMNS = (
    "id",
    "layer",
    "network",
    "kind",
    "status",
    "diameter_mm",
    "depth_m",
    "ground_m",
    "elevation_m",
    "invert_m",
    "distance_m",
    "end_distance_m",
    "lon",
    "lat",
)


class SectionError(ParameterError):
    """A section that cannot be drawn as asked: not a line, too long, off the DEM."""


@dataclass(frozen=True)
class Section:
    """A section along a line: the ground and what crosses it.

    Attributes
    ----------
    line
        The line asked (LineString, EPSG:4326).
    length_m
        Its length in ``crs_used``, m.
    step_m
        Distance between ground samples, m (the last one, at the line's end, may be closer).
    crs_used
        The metric CRS distances are measured in (``EPSG:32632`` for Monaco).
    dem
        The name of the DEM raster sampled.
    interpolation
        ``bilinear`` or ``nearest``.
    ground
        One row per sample, by distance: ``distance_m`` (from the line's start, m),
        ``elevation_m`` (m, the DEM's datum; NaN off the DEM or on its nodata), ``lon``,
        ``lat``. The samples every ``step_m`` and at the end, and one at each crossing, so the
        ground drawn through them passes through the ground of every crossing.
    crossings
        One row per crossing, by distance then layer and id (a pipe crossing twice is two
        rows): ``id``, ``layer`` (``pipelines`` or ``power_lines``), ``network`` (``water``,
        ``gas``, ``sewer``, ``heat`` or ``power``), ``kind`` (the power line's kind; None for a
        pipe), ``status``, ``diameter_mm``, ``depth_m`` (below ground, m), ``ground_m`` (the
        ground there, m), ``elevation_m`` (ground − depth, m), ``invert_m`` (from the data, m),
        ``distance_m`` (along the line, m), ``end_distance_m`` (where a pipe running along the
        line leaves it, m; NaN for a crossing at a point), ``lon``, ``lat`` (where it
        crosses, or starts running along the line). Unknown values are NaN.
    layers
        The layers the crossings were drawn from: those of :data:`SECTION_LAYERS` the caller
        may read.
    """

    line: shapely.LineString
    length_m: float
    step_m: float
    crs_used: str
    dem: str
    interpolation: str
    ground: pd.DataFrame
    crossings: pd.DataFrame
    layers: tuple[str, ...]


def section(
    line: shapely.Geometry,
    *,
    url: str | None = None,
    at: datetime | str | None = None,
    step_m: float | None = None,
    dem: str | None = None,
    interpolation: str = "bilinear",
    parameter: str = "geometry",
) -> Section:
    """Draw the section along a line: ground from the DEM, pipes and cables at their depth.

    The ground is sampled every ``step_m`` metres along the line (measured in the city's metric
    CRS) and at its end. Each pipe and buried cable crossing the line (found by intersecting
    it with the line in EPSG:4326) is placed at its distance along the line, with the ground
    there sampled the same way and its elevation = ground − ``depth_m``.

    Parameters
    ----------
    line
        The section line: a LineString in EPSG:4326 (lon, lat), at most
        :data:`MAX_SECTION_LENGTH_M` long. Z is ignored.
    url
        Database URL; the configured one by default.
    at
        A moment: the features and the DEM as they were then. None: the current ones.
    step_m
        Distance between ground samples, m. By default half the DEM's cell (its smaller side,
        in metres at the line), so every cell the line crosses is sampled, or less on a short
        line (at least :data:`MIN_SAMPLES` samples), or more on a long one (at most
        :data:`MAX_SAMPLES`). A step giving more than :data:`MAX_SAMPLES` is refused.
    dem
        Name of the DEM raster (kind ``dem``). By default the raster named ``dem``, else the
        first of kind ``dem`` by name.
    interpolation
        ``bilinear`` (between the four nearest cell centres, as the pipe profiles) or
        ``nearest`` (the cell under the point).
    parameter
        The request parameter that gave the line, named when the line is refused.

    Returns
    -------
    Section
        The line's length, the ground samples and the crossings.

    Raises
    ------
    SectionError
        If ``line`` is not a LineString of two distinct points in lon/lat, is longer than
        :data:`MAX_SECTION_LENGTH_M`, lies off the DEM (or where it has no data), or
        ``step_m`` or ``interpolation`` is out of range (``parameter`` names it).
    layers.rasters.RasterError
        If the named DEM does not exist (then) or is not of kind ``dem``.
    layers.errors.MissingInputError
        If the store holds no DEM (then): there is no ground to draw (HTTP 409).

    Notes
    -----
    Distances are planar in the metric CRS (a UTM zone's scale error is at most 0.04 % across
    a city); the pipe elevation is the cover model of :func:`layers.rasters.pipe_profiles`
    (ground − depth), so the section and the profiles agree at every crossing.
    """
    if not isinstance(line, shapely.LineString):
        kind = getattr(line, "geom_type", type(line).__name__)
        raise SectionError(
            f"the section line must be a LineString, not {kind}", parameter=parameter
        )
    check_geometry(line, parameter)
    line = shapely.force_2d(line)
    if interpolation not in INTERPOLATIONS:
        raise SectionError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}", parameter="interpolation"
        )
    if step_m is not None and not (math.isfinite(step_m) and step_m > 0):
        raise SectionError("step_m must be a positive number of metres", parameter="step_m")
    if not line.length > 0:
        raise SectionError(
            "the section line has no length: give two distinct points", parameter=parameter
        )
    crs_used = get_settings().metric_crs
    to_metric, to_lonlat = _transformers(crs_used)
    # the line is straight in lon/lat (as stored lines are, and as crossings are found):
    # densified, its image in the metric CRS follows it to well under a millimetre
    metric_line = _transform(shapely.segmentize(line, DENSIFY_DEGREES), to_metric)
    length = float(metric_line.length)
    if length > MAX_SECTION_LENGTH_M:
        raise SectionError(
            f"the section line is {length:,.0f} m long; a section is at most "
            f"{MAX_SECTION_LENGTH_M:,.0f} m",
            parameter=parameter,
        )
    name, bounds = _dem(dem, url=url, at=at)
    if not shapely.intersects(line, shapely.box(*bounds)):
        raise SectionError(
            f"the section line lies outside the DEM {name!r} (lon {bounds[0]:.5f} to "
            f"{bounds[2]:.5f}, lat {bounds[1]:.5f} to {bounds[3]:.5f})",
            parameter=parameter,
        )
    crossings, layers = _crossings(line, metric_line, to_metric, url=url, at=at)
    with open_raster(name, url=url, at=at) as dataset:
        step = _step(dataset, line, length, step_m, to_metric)
        distances = np.append(np.arange(0.0, length, step), length)
        points = shapely.line_interpolate_point(metric_line, distances)
        xy = shapely.get_coordinates(points)
        elevation = _ground(dataset, xy, crs_used, interpolation)
        crossing_xy = crossings[["x", "y"]].to_numpy(dtype="float64")
        crossings["ground_m"] = _ground(dataset, crossing_xy, crs_used, interpolation)
    if not np.isfinite(elevation).any():
        raise SectionError(
            f"the DEM {name!r} has no data along the section line", parameter=parameter
        )
    lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
    # the crossings are ground samples too: the ground drawn passes through each of them
    ground = pd.DataFrame(
        {"distance_m": distances, "elevation_m": elevation, "lon": lon, "lat": lat}
    )
    if not crossings.empty:
        at_crossings = crossings[["distance_m", "ground_m", "lon", "lat"]]
        ground = pd.concat(
            [ground, at_crossings.rename(columns={"ground_m": "elevation_m"})], ignore_index=True
        )
    ground = ground.sort_values("distance_m", kind="stable").drop_duplicates("distance_m")
    ground = ground.reset_index(drop=True)
    crossings["elevation_m"] = crossings["ground_m"] - crossings["depth_m"]
    crossings = crossings.sort_values(["distance_m", "layer", "id"], kind="stable")
    return Section(
        line=line,
        length_m=length,
        step_m=step,
        crs_used=crs_used,
        dem=name,
        interpolation=interpolation,
        ground=ground,
        crossings=crossings[list(CROSSING_COLUMNS)].reset_index(drop=True),
        layers=layers,
    )


@lru_cache(maxsize=8)
def _transformers(crs: str) -> tuple[Transformer, Transformer]:
    """Lon/lat to a metric CRS and back."""
    return (
        Transformer.from_crs(4326, crs, always_xy=True),
        Transformer.from_crs(crs, 4326, always_xy=True),
    )


def _transform(geometry: Any, transformer: Transformer) -> Any:
    return shapely.transform(geometry, lambda c: np.column_stack(transformer.transform(*c.T)))


def _dem(
    dem: str | None, *, url: str | None, at: datetime | str | None
) -> tuple[str, tuple[float, float, float, float]]:
    """Return the DEM to sample and its footprint's bounds (lon/lat), or refuse."""
    rasters = list_rasters(url=url, at=at)
    dems = rasters[rasters["kind"] == "dem"]
    moment = "" if at is None else f" at {at}"
    if dems.empty:
        raise MissingInputError(
            "dem",
            f"no DEM loaded{moment}: a section has no ground to draw",
            "import one with `twin raster ingest FILE --name dem --kind dem`",
        )
    if dem is None:
        names = list(dems["name"])
        dem = DEFAULT_DEM if DEFAULT_DEM in names else names[0]
    row = rasters[rasters["name"] == dem]
    if row.empty:
        raise RasterError(
            f"no raster named {dem!r}{moment}; DEMs: {', '.join(dems['name'])}", parameter="dem"
        )
    if row["kind"].iloc[0] != "dem":
        raise RasterError(
            f"raster {dem!r} is of kind {row['kind'].iloc[0]!r}, not 'dem'", parameter="dem"
        )
    minx, miny, maxx, maxy = (float(v) for v in row["bounds"].iloc[0])
    return dem, (minx, miny, maxx, maxy)


def _step(
    dataset: DatasetReader,
    line: shapely.LineString,
    length: float,
    step_m: float | None,
    to_metric: Transformer,
) -> float:
    """Return the ground step: the one asked, or half the DEM's cell at the line."""
    smallest = length / (MAX_SAMPLES - 1)
    if step_m is not None:
        if math.ceil(length / step_m) + 1 > MAX_SAMPLES:
            raise SectionError(
                f"step_m {step_m:g} m gives more than {MAX_SAMPLES} samples over "
                f"{length:,.1f} m; give at least {smallest:.3f} m",
                parameter="step_m",
            )
        return float(step_m)
    # the cell's sides in metres, measured at the line's middle
    middle = line.interpolate(0.5, normalized=True)
    to_dem = Transformer.from_crs(4326, CRS.from_user_input(dataset.crs.to_wkt()), always_xy=True)
    x, y = to_dem.transform(middle.x, middle.y)
    res_x, res_y = dataset.res
    corners = np.array([[x, y], [x + res_x, y], [x, y + res_y]])
    back = Transformer.from_crs(CRS.from_user_input(dataset.crs.to_wkt()), 4326, always_xy=True)
    lon, lat = back.transform(corners[:, 0], corners[:, 1])
    mx, my = to_metric.transform(lon, lat)
    sides = np.hypot(np.asarray(mx)[1:] - mx[0], np.asarray(my)[1:] - my[0])
    # half a cell, and at least MIN_SAMPLES on a short line (bilinear ground is curved
    # within a cell); at least a millimetre, and no more samples than allowed
    step = min(float(np.min(sides)) / 2, length / (MIN_SAMPLES - 1))
    return max(step, smallest * (1 + 1e-9), 1e-3)


def _ground(
    dataset: DatasetReader, xy: np.ndarray, metric_crs: str, interpolation: str
) -> np.ndarray:
    """Sample the DEM at metric points: NaN off the raster and on nodata."""
    if len(xy) == 0:
        return np.empty(0)
    to_dem = Transformer.from_crs(
        metric_crs, CRS.from_user_input(dataset.crs.to_wkt()), always_xy=True
    )
    x, y = to_dem.transform(xy[:, 0], xy[:, 1])
    return sample_raster(
        dataset, np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"), interpolation
    )


def _crossings(
    line: shapely.LineString,
    metric_line: shapely.LineString,
    to_metric: Transformer,
    *,
    url: str | None,
    at: datetime | str | None,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Return where the readable pipes and cables cross the line, with ``x``, ``y`` (metric)."""
    margin = 1e-6  # degrees (~0.1 m): a bbox with some height for a line along a parallel
    minx, miny, maxx, maxy = (float(v) for v in line.bounds)
    bbox = (minx - margin, miny - margin, maxx + margin, maxy + margin)
    layers = tuple(access.visible(SECTION_LAYERS))
    rows: list[dict[str, Any]] = []
    starts: list[tuple[float, float]] = []
    ends: list[tuple[float, float]] = []
    shapely.prepare(line)
    for layer in layers:
        features = read_layer(layer, bbox=bbox, at=at, url=url)
        if layer == "power_lines":
            with_depth = [_number(props, ("depth_m",)) is not None for props in features["props"]]
            buried = features["kind"].isin(BURIED_POWER_KINDS).to_numpy(dtype=bool)
            features = features[buried | np.array(with_depth, dtype=bool)]
        if features.empty:
            continue
        cuts = shapely.intersection(features.geometry.to_numpy(), line)
        for feature, cut in zip(features.itertuples(index=False), cuts, strict=True):
            # a point where it crosses, a line where it runs along the section (or both)
            for part in shapely.get_parts(shapely.get_parts(cut)):
                coords = shapely.get_coordinates(part)
                if len(coords) == 0:
                    continue
                rows.append(_attributes(layer, feature))
                starts.append((float(coords[0, 0]), float(coords[0, 1])))
                ends.append((float(coords[-1, 0]), float(coords[-1, 1])))
    frame = pd.DataFrame(rows, columns=list(_ATTRIBUTES))
    for column in ("diameter_mm", "depth_m", "invert_m"):
        frame[column] = frame[column].astype("float64")
    first_lonlat = np.array(starts, dtype="float64").reshape(-1, 2)
    last_lonlat = np.array(ends, dtype="float64").reshape(-1, 2)
    first_xy = np.column_stack(to_metric.transform(first_lonlat[:, 0], first_lonlat[:, 1]))
    last_xy = np.column_stack(to_metric.transform(last_lonlat[:, 0], last_lonlat[:, 1]))
    first = shapely.line_locate_point(metric_line, shapely.points(first_xy.reshape(-1, 2)))
    last = shapely.line_locate_point(metric_line, shapely.points(last_xy.reshape(-1, 2)))
    along = np.any(first_lonlat != last_lonlat, axis=1)
    frame["distance_m"] = np.minimum(first, last)
    frame["end_distance_m"] = np.where(along, np.maximum(first, last), np.nan)
    # where it crosses, or where it starts running along the line
    nearer = (first <= last)[:, None]
    lonlat = np.where(nearer, first_lonlat, last_lonlat)
    xy = np.where(nearer, first_xy.reshape(-1, 2), last_xy.reshape(-1, 2))
    frame["lon"], frame["lat"] = lonlat[:, 0], lonlat[:, 1]
    frame["x"], frame["y"] = xy[:, 0], xy[:, 1]
    return frame, layers


#: What :func:`_attributes` gives of a crossing feature.
_ATTRIBUTES = ("id", "layer", "network", "kind", "status", "diameter_mm", "depth_m", "invert_m")


def _attributes(layer: str, feature: Any) -> dict[str, Any]:
    """Return the attributes of a feature crossing the section, alike for every layer."""
    props = feature.props if isinstance(feature.props, dict) else {}
    if layer == "pipelines":
        network, kind = feature.network, None
        diameter = _value(feature.diameter_mm)
        depth = _value(feature.depth_m)
    else:
        network, kind = "power", feature.kind
        diameter = _number(props, ("diameter_mm",))
        depth = _number(props, ("depth_m",))
    return {
        "id": str(feature.id),
        "layer": layer,
        "network": network,
        "kind": kind,
        "status": None if pd.isna(feature.status) else feature.status,
        "diameter_mm": np.nan if diameter is None else diameter,
        "depth_m": np.nan if depth is None else depth,
        "invert_m": np.nan if (invert := _number(props, INVERT_KEYS)) is None else invert,
    }


def _value(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _number(props: Any, keys: tuple[str, ...]) -> float | None:
    """Return the first of ``keys`` in a feature's properties that holds a finite number."""
    if not isinstance(props, dict):
        return None
    for key in keys:
        value = props.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return None
