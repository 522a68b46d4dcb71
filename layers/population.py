"""Residents per building, for a city whose data carries no population.

Coverage, district figures and site suggestions weigh buildings by their ``population``; an
OpenStreetMap extract has none. Two estimates fill it:

- :func:`estimate_population`: the building's floor area (footprint × storeys) divided by a
  floor area per person, for residential buildings. The default density,
  :data:`M2_PER_PERSON` = 36.52 m² per person, is the per-capita housing floor area (人均住房
  建筑面积) of China's urban households in the 2020 census (National Bureau of Statistics,
  *China Population Census Yearbook 2020*, 2022): a floor area of the same kind, gross, as
  footprint × storeys.
- :func:`population_from_raster`: a population density raster (``population_density``,
  people per km²; e.g. WorldPop, GHS-POP, a census grid) shared out, cell by cell, over the
  buildings in the cell in proportion to their residential floor area.

Both return a Series aligned with the buildings, whose ``attrs["derived"]`` says how the
figures were made; store it with the features (``derived`` in their properties), as the
sample city does.

Which buildings are residential (:data:`RESIDENTIAL`): the OSM ``building`` values for homes
(https://wiki.openstreetmap.org/wiki/Key:building#Accommodation), and ``yes`` or no value at
all, where the use is unknown: most untagged buildings of a town are homes, and leaving them
out would leave a town with no residents. Every other use (``commercial``, ``school``,
``church``, ``garage`` ...) houses no one.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from layers.defaults import STOREY_HEIGHT_M, building_heights_m
from layers.errors import ParameterError
from layers.rasters import RasterError, open_raster, zonal_stats
from layers.settings import get_settings

__all__ = [
    "M2_PER_PERSON",
    "RESIDENTIAL",
    "UNKNOWN_USE",
    "estimate_population",
    "floor_area_m2",
    "population_from_raster",
    "residential",
    "storeys",
]

#: Floor area per resident, m²: China's urban households, 2020 census (NBS, *China Population
#: Census Yearbook 2020*: 人均住房建筑面积 of 城市家庭户, 36.52 m²).
M2_PER_PERSON = 36.52
#: OSM ``building`` values of homes (the wiki's "Accommodation" values), and the uses Chinese
#: land and building data write for homes (GB/T 21010 land-use class 07 住宅用地: 住宅, 居住;
#: 公寓 apartments, 宿舍 dormitory, 别墅 detached house).
RESIDENTIAL = frozenset(
    {
        "residential",
        "apartments",
        "house",
        "detached",
        "semidetached_house",
        "terrace",
        "dormitory",
        "bungalow",
        "住宅",
        "居住",
        "住宅楼",
        "公寓",
        "宿舍",
        "别墅",
    }
)
#: ``building`` values meaning the use is unknown; counted as residential.
UNKNOWN_USE = frozenset({"yes", ""})


def storeys(buildings: pd.DataFrame) -> pd.Series:
    """Storeys above ground of each building.

    ``levels`` (or OSM's ``building:levels``) when it is a positive number; else the
    building's height over a storey's, rounded, at least 1 — the height and the storey are
    the twin's one rule for them, :func:`layers.defaults.building_heights_m` and
    :data:`layers.defaults.STOREY_HEIGHT_M` (3 m), so a building with neither height nor
    levels has the height the viewer draws it with.

    Parameters
    ----------
    buildings
        With ``levels`` and/or ``building:levels`` and/or ``height_m`` (m); missing columns
        count as unknown.

    Returns
    -------
    pandas.Series
        Float storeys (≥ 1), aligned with ``buildings``.
    """
    levels = _number(buildings, "levels")
    if "building:levels" in buildings.columns:
        levels = levels.where(levels > 0, _number(buildings, "building:levels"))
    levels = levels.where(levels > 0)
    height = building_heights_m(_number(buildings, "height_m"))
    from_height = (height / STOREY_HEIGHT_M).round().clip(lower=1)
    return levels.fillna(from_height).astype("float64")


def floor_area_m2(buildings: gpd.GeoDataFrame, *, metric_crs: str | CRS | None = None) -> pd.Series:
    """Gross floor area of each building: footprint area × :func:`storeys`, m².

    Parameters
    ----------
    buildings
        Footprints (polygons) with a CRS, and the columns :func:`storeys` reads.
    metric_crs
        Projected CRS in metres the footprints are measured in; the city's ``metric_crs``
        (settings) by default.

    Returns
    -------
    pandas.Series
        Floor area, m², aligned with ``buildings`` (0 for a missing or empty footprint).

    Raises
    ------
    ParameterError
        If the buildings have no CRS or ``metric_crs`` is not a projected CRS in metres.
    """
    if buildings.crs is None:
        raise ParameterError("the buildings have no CRS", parameter="buildings")
    footprint = buildings.geometry.to_crs(_metric(metric_crs)).area.fillna(0.0)
    return (footprint * storeys(buildings)).rename("floor_area_m2")


def residential(buildings: pd.DataFrame) -> pd.Series:
    """Whether each building houses residents (see the module's rule).

    Parameters
    ----------
    buildings
        With ``use`` (the layer's column) or ``building`` (OSM's tag): the OSM building value.

    Returns
    -------
    pandas.Series
        Bool, aligned with ``buildings``: True for :data:`RESIDENTIAL` and :data:`UNKNOWN_USE`
        values and for no value.
    """
    column = "use" if "use" in buildings.columns else "building"
    if column not in buildings.columns:
        return pd.Series(True, index=buildings.index)
    use = buildings[column].astype("string").str.strip().str.lower()
    return (use.isna() | use.isin(RESIDENTIAL | UNKNOWN_USE)).fillna(True).astype(bool)


def estimate_population(
    buildings: gpd.GeoDataFrame,
    *,
    m2_per_person: float = M2_PER_PERSON,
    metric_crs: str | CRS | None = None,
) -> pd.Series:
    """Residents of each building from its floor area.

    ``round(floor area / m2_per_person)`` for a residential building (:func:`residential`),
    0 for any other; floor area is footprint × storeys (:func:`floor_area_m2`).

    Parameters
    ----------
    buildings
        Footprints with a CRS; ``use`` (or ``building``), ``levels`` (or
        ``building:levels``) and ``height_m`` where known.
    m2_per_person
        Floor area per resident, m²; by default China's urban households in the 2020 census
        (:data:`M2_PER_PERSON`, NBS).
    metric_crs
        Projected CRS in metres the footprints are measured in; the city's ``metric_crs``
        (settings) by default.

    Returns
    -------
    pandas.Series
        ``population``, int64 residents aligned with ``buildings``; ``attrs["derived"]``
        says how they were estimated.

    Raises
    ------
    ParameterError
        If ``m2_per_person`` is not a positive number, the buildings have no CRS or
        ``metric_crs`` is not a projected CRS in metres.
    """
    if not (isinstance(m2_per_person, int | float) and math.isfinite(m2_per_person)):
        raise ParameterError(
            f"m2_per_person must be a number, not {m2_per_person!r}", parameter="m2_per_person"
        )
    if m2_per_person <= 0:
        raise ParameterError(
            f"m2_per_person must be more than 0, not {m2_per_person}", parameter="m2_per_person"
        )
    area = floor_area_m2(buildings, metric_crs=metric_crs)
    people = (area / m2_per_person).where(residential(buildings), 0.0)
    result = np.floor(people + 0.5).astype("int64").rename("population")
    source = (
        " (China's urban households, 2020 census, NBS)" if m2_per_person == M2_PER_PERSON else ""
    )
    result.attrs["derived"] = (
        f"estimated: residential floor area (footprint × storeys; {STOREY_HEIGHT_M:g} m a "
        f"storey where only the height is known) / {m2_per_person:g} m² per person{source}"
    )
    return result


def population_from_raster(
    buildings: gpd.GeoDataFrame,
    raster_name: str,
    url: str | None = None,
    *,
    metric_crs: str | CRS | None = None,
    at: datetime | str | None = None,
) -> pd.Series:
    """Share a population density raster's residents out over the buildings, cell by cell.

    Each cell's residents (density × the cell's true area, as :func:`layers.rasters.zonal_stats`
    counts them) go to the buildings whose representative point is in the cell, in proportion
    to their residential floor area (:func:`floor_area_m2`, :func:`residential`); in a cell
    with no residential building, to every building's floor area. Each cell's total is
    rounded to whole residents by largest remainders, so a cell's buildings add up to its
    rounded count. Residents of cells with no building are not placed: ``attrs["unplaced"]``
    gives how many.

    Parameters
    ----------
    buildings
        Footprints with a CRS, with the columns :func:`storeys` and :func:`residential` read.
    raster_name
        A stored raster of kind ``population_density`` (people/km²).
    url
        Database URL; the configured one by default.
    metric_crs
        Projected CRS in metres the footprints are measured in; the city's ``metric_crs``
        (settings) by default.
    at
        A moment: the raster version valid then. None: the current version.

    Returns
    -------
    pandas.Series
        ``population``, int64 residents aligned with ``buildings`` (0 outside the raster);
        ``attrs["derived"]`` says how, ``attrs["unplaced"]`` the residents of cells holding no
        building.

    Raises
    ------
    RasterError
        If there is no such raster or it is not of kind ``population_density``.
    ParameterError
        If the buildings have no CRS or ``metric_crs`` is not a projected CRS in metres.
    """
    area = floor_area_m2(buildings, metric_crs=metric_crs).to_numpy()
    total = _raster_total(raster_name, url=url, at=at)  # refuses a raster of another kind
    homes = residential(buildings).to_numpy()
    result = np.zeros(len(buildings), dtype="int64")
    with open_raster(raster_name, url=url, at=at) as dataset:
        crs, transform = dataset.crs, dataset.transform
        height, width = dataset.height, dataset.width
    geometry = buildings.geometry
    present = ~(geometry.isna() | geometry.is_empty).to_numpy()
    points = geometry[present].representative_point().to_crs(crs)
    cols, rows = ~transform @ (points.x.to_numpy(), points.y.to_numpy())
    rows, cols = np.floor(rows).astype("int64"), np.floor(cols).astype("int64")
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    which = np.flatnonzero(present)[inside]
    cell = rows[inside] * width + cols[inside]
    cells = np.unique(cell)
    zones = gpd.GeoDataFrame(
        geometry=[_cell(transform, int(c) // width, int(c) % width) for c in cells], crs=crs
    )
    residents = np.zeros(0)
    if len(cells):
        counted = zonal_stats(raster_name, zones, url=url, at=at, stats=("count",))
        residents = counted["population"].fillna(0.0).to_numpy()
    order = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[order], cells)
    ends = np.searchsorted(cell[order], cells, side="right")
    for people, start, end in zip(residents, starts, ends, strict=True):
        members = which[order[start:end]]
        weights = area[members] * homes[members]
        if weights.sum() <= 0:
            weights = area[members]
        if weights.sum() <= 0:
            weights = np.ones(len(members))
        result[members] = _largest_remainder(people * weights / weights.sum())
    series = pd.Series(result, index=buildings.index, name="population")
    series.attrs["derived"] = (
        f"from population density raster {raster_name!r}: each cell's residents shared over "
        "the buildings in it by residential floor area"
    )
    series.attrs["unplaced"] = max(0.0, float(total - residents.sum()))
    return series


def _raster_total(name: str, *, url: str | None, at: datetime | str | None) -> float:
    """Residents of the whole raster (density × true cell area over every cell)."""
    with open_raster(name, url=url, at=at) as dataset:
        whole = gpd.GeoDataFrame(geometry=[shapely.box(*dataset.bounds)], crs=dataset.crs)
    counted = zonal_stats(name, whole, url=url, at=at, stats=("count",))
    if "population" not in counted:
        raise RasterError(
            f"raster {name!r} is not of kind 'population_density'", parameter="raster_name"
        )
    return float(counted["population"].fillna(0.0).iloc[0])


def _cell(transform: Any, row: int, col: int) -> shapely.Polygon:
    """Return the polygon of a raster cell, in the raster's CRS."""
    corners = [transform @ (col + dc, row + dr) for dc, dr in ((0, 0), (1, 0), (1, 1), (0, 1))]
    return shapely.Polygon(corners)


def _largest_remainder(shares: np.ndarray) -> np.ndarray:
    """Whole numbers adding up to ``round(sum(shares))``, each within 1 of its share."""
    whole = np.floor(shares).astype("int64")
    left = round(float(shares.sum())) - int(whole.sum())
    if left > 0:
        whole[np.argsort(-(shares - whole), kind="stable")[:left]] += 1
    return whole


def _number(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def _metric(metric_crs: str | CRS | None) -> CRS:
    if metric_crs is None:
        metric_crs = get_settings().metric_crs
    try:
        crs = CRS.from_user_input(metric_crs)
    except CRSError as exc:
        raise ParameterError(f"unknown CRS {metric_crs!r}", parameter="metric_crs") from exc
    if not crs.is_projected or {a.unit_name for a in crs.axis_info} - {"metre"}:
        raise ParameterError(
            f"{metric_crs!r} is not a projected CRS in metres", parameter="metric_crs"
        )
    return crs
