"""Places as the facade takes them: a ``(lon, lat)`` pair or a shapely Point, in EPSG:4326.

Every :class:`twin.City` method that takes a position passes it through :func:`as_lonlat`
(or :func:`as_lonlats` for several), so a tuple, a list, a numpy array of two numbers and a
shapely Point (a GeoSeries' element, ``Point(lon, lat)``) are all accepted alike, and anything
else is refused with a :class:`layers.errors.ParameterError` naming the parameter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Real
from typing import TypeAlias

import numpy as np
import shapely

from layers.errors import ParameterError

#: A position: ``(lon, lat)`` in degrees (EPSG:4326) as a tuple, list or numpy array, or a
#: shapely Point in the same CRS.
Place: TypeAlias = Sequence[float] | np.ndarray | shapely.Point


def as_lonlat(place: object, parameter: str = "point") -> tuple[float, float]:
    """Return a position as a ``(lon, lat)`` pair of floats.

    Parameters
    ----------
    place
        ``(lon, lat)`` (a tuple, list or array of two numbers) or a shapely ``Point`` (its
        ``x``, ``y``; a ``z`` is ignored), in degrees, EPSG:4326.
    parameter
        Name of the parameter it was given as, for the error.

    Returns
    -------
    tuple of float
        ``(lon, lat)``.

    Raises
    ------
    layers.errors.ParameterError
        With ``parameter``, for anything else: another geometry, an empty Point, a string, a
        sequence not of two numbers, a NaN or infinite coordinate, or a longitude outside
        [-180, 180] or latitude outside [-90, 90].
    """
    if isinstance(place, shapely.Geometry):
        if not isinstance(place, shapely.Point):
            raise ParameterError(
                f"{parameter}: expected a Point or (lon, lat), got a {type(place).__name__}",
                parameter=parameter,
            )
        if place.is_empty:
            raise ParameterError(f"{parameter}: the Point is empty", parameter=parameter)
        lon, lat = float(place.x), float(place.y)
    elif isinstance(place, str | bytes) or not isinstance(place, Iterable):
        raise ParameterError(
            f"{parameter}: expected (lon, lat) or a shapely Point, got {place!r}",
            parameter=parameter,
        )
    else:
        values = list(place)
        numbers = [v for v in values if isinstance(v, Real) and not isinstance(v, bool)]
        if len(values) != 2 or len(numbers) != 2:
            raise ParameterError(
                f"{parameter}: expected (lon, lat), two numbers, got {place!r}",
                parameter=parameter,
            )
        lon, lat = float(numbers[0]), float(numbers[1])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ParameterError(
            f"{parameter}: coordinates must be finite, got ({lon}, {lat})", parameter=parameter
        )
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ParameterError(
            f"{parameter}: ({lon}, {lat}) is not a lon/lat position in degrees (EPSG:4326)",
            parameter=parameter,
        )
    return lon, lat


def as_lonlats(places: object, parameter: str) -> list[tuple[float, float]]:
    """Return several positions as ``(lon, lat)`` pairs (see :func:`as_lonlat`).

    Parameters
    ----------
    places
        An iterable of positions: ``(lon, lat)`` pairs or shapely Points (a list, a GeoSeries
        of points, a MultiPoint's ``geoms``).
    parameter
        Name of the parameter; each position's error names ``parameter[i]``.

    Returns
    -------
    list of tuple of float
        ``(lon, lat)`` per position, in order.

    Raises
    ------
    layers.errors.ParameterError
        If ``places`` is not an iterable of positions (a single Point or pair is refused,
        naming ``parameter``), or one of them is not a position (naming ``parameter[i]``).
    """
    if isinstance(places, shapely.Geometry | str | bytes) or not isinstance(places, Iterable):
        raise ParameterError(
            f"{parameter}: expected a sequence of (lon, lat) or Points, got {places!r}",
            parameter=parameter,
        )
    return [as_lonlat(place, f"{parameter}[{i}]") for i, place in enumerate(places)]
