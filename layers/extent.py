"""A city's extent and metric CRS: chosen from the data, and what reaches outside clipped.

:func:`metric_crs_for` picks the projected CRS in metres a city's lengths, buffers and areas are
computed in, from the city's centre: in China the CGCS2000 3-degree Gauss-Krüger zone whose
EPSG area of use holds the centre (``EPSG:4534``–``EPSG:4554``, the zones Chinese surveying
uses), elsewhere the WGS 84 UTM zone (``EPSG:326xx`` north, ``EPSG:327xx`` south, Norway's and
Svalbard's exceptions included), both looked up in PROJ's database through pyproj.
:func:`clip_frame` cuts a GIS file's features to the extent, as :mod:`layers.osm` does for OSM.
"""

from __future__ import annotations

from functools import lru_cache

import geopandas as gpd
import numpy as np
import shapely
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_crs_info, query_utm_crs_info
from pyproj.enums import PJType

__all__ = ["clip_frame", "metric_crs_for"]

_CGCS2000_3_DEGREE = "CGCS2000 / 3-degree Gauss-Kruger CM "


@lru_cache(maxsize=256)
def metric_crs_for(lon: float, lat: float) -> str:
    """Return the projected CRS in metres for a city centred on a point.

    Parameters
    ----------
    lon, lat
        The city's centre, degrees (EPSG:4326).

    Returns
    -------
    str
        ``EPSG:<code>``: a CGCS2000 3-degree Gauss-Krüger zone (central meridian form, e.g.
        EPSG:4548 "CM 117E" for Beijing) where the EPSG area of use of one holds the point —
        China —, else the WGS 84 UTM zone (e.g. EPSG:32633 for Malta).

    Raises
    ------
    ValueError
        If the point is not a longitude and latitude.
    """
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"({lon}, {lat}) is not a longitude and latitude")
    area = AreaOfInterest(lon, lat, lon, lat)
    zones = [
        info
        for info in query_crs_info(
            auth_name="EPSG",
            pj_types=PJType.PROJECTED_CRS,
            area_of_interest=area,
            contains=True,
        )
        if info.name.startswith(_CGCS2000_3_DEGREE)
    ]
    if zones:
        return f"EPSG:{zones[0].code}"
    utm = query_utm_crs_info(datum_name="WGS 84", area_of_interest=area)
    if utm:
        return f"EPSG:{utm[0].code}"
    zone = min(int((lon + 180) // 6) + 1, 60)  # the poles: the zone by the formula
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def clip_frame(
    frame: gpd.GeoDataFrame, extent: shapely.Geometry
) -> tuple[gpd.GeoDataFrame, int, int]:
    """Cut features to an extent: parts reaching outside cut off, features wholly outside left out.

    Parameters
    ----------
    frame
        Features in EPSG:4326.
    extent
        The city's extent, a polygon in EPSG:4326.

    Returns
    -------
    tuple of (geopandas.GeoDataFrame, int, int)
        The features inside (the index kept, so rows still name the file's features), how many
        were cut, how many dropped. A cut line or area keeps its own type where the cut leaves
        one part, else becomes the multi-part type; lines and points a cut leaves beside an
        area are left out.
    """
    geoms = frame.geometry.to_numpy()
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    touching = np.ones(len(geoms), dtype=bool)
    within = np.ones(len(geoms), dtype=bool)
    touching[present] = shapely.intersects(extent, geoms[present])
    within[present] = shapely.within(geoms[present], extent)
    cut = present & touching & ~within
    out = geoms.copy()
    for i in np.flatnonzero(cut):
        out[i] = _same_dimension(shapely.intersection(geoms[i], extent), geoms[i])
        if out[i] is not None and shapely.equals(out[i], geoms[i]):
            cut[i] = False  # on the extent's border, not cut by it
    dropped = present & (~touching | np.array([g is None for g in out]))
    kept = frame.loc[~dropped].copy()
    kept = kept.set_geometry(gpd.GeoSeries(out[~dropped], index=kept.index, crs=frame.crs))
    return kept, int((cut & ~dropped).sum()), int(dropped.sum())


def _same_dimension(part: shapely.Geometry, whole: shapely.Geometry) -> shapely.Geometry | None:
    """Return the parts of a cut geometry of the whole's dimension (no stray points or lines)."""
    dimension = shapely.get_dimensions(whole)
    pieces = [p for p in shapely.get_parts(part) if shapely.get_dimensions(p) == dimension]
    pieces = [p for p in pieces if not p.is_empty]
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0]
    if dimension == 2:
        return shapely.MultiPolygon(pieces)
    if dimension == 1:
        return shapely.MultiLineString(pieces)
    return shapely.MultiPoint(pieces)
