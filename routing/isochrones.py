"""Service areas (isochrones): what the roads reach within a time, as lines and polygons.

The reached network is exact: every edge is cut where the time runs out. The polygon of a
break is the reached road pieces buffered by :data:`BUFFER_M` (in the city's metric CRS) and
merged, so it holds all the reached road, keeps the holes of large unreached blocks, and is
nested in the next break's polygon (each is merged with the one before). The same input always
gives the same polygons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from routing.network import RoadNetwork, RoutingError
from routing.paths import Point

#: Half-width of the band around reached roads that makes a service area's polygon (m).
BUFFER_M = 15.0
#: Most time breaks one request may ask for.
MAX_BREAKS = 12


@dataclass
class ServiceArea:
    """The roads reached within ``minutes`` and their polygon (EPSG:4326)."""

    minutes: float
    reached: shapely.MultiLineString
    polygon: shapely.MultiPolygon | shapely.Polygon
    reached_length_m: float


def check_breaks(breaks: Sequence[float]) -> list[float]:
    """Return the breaks sorted, or raise if one is not a positive number of minutes.

    Parameters
    ----------
    breaks
        Minutes.

    Returns
    -------
    list of float
        Sorted unique breaks.

    Raises
    ------
    RoutingError
        If the list is empty or a break is not positive.
    """
    values = [float(b) for b in breaks]
    if (
        not values
        or len(values) > MAX_BREAKS
        or not all(math.isfinite(v) and v > 0 for v in values)
    ):
        raise RoutingError(f"breaks must be 1 to {MAX_BREAKS} positive minutes", parameter="breaks")
    return sorted(set(values))


def node_times(
    network: RoadNetwork, facilities: Sequence[Point], *, limit_s: float
) -> tuple[np.ndarray, list[tuple[int, float, float]]]:
    """Seconds from the nearest facility to every node, within ``limit_s``.

    Parameters
    ----------
    network
        The road network.
    facilities
        ``(lon, lat)`` of the starting points.
    limit_s
        Search radius in seconds.

    Returns
    -------
    tuple
        Times per node (inf beyond the limit), and ``(edge, fraction, 0)`` of each facility.
    """
    snaps = [network.snap(*p, parameter=f"facilities[{i}]") for i, p in enumerate(facilities)]
    starts = [pair for snap in snaps for pair in network.exits(snap)]
    times, _, _ = network.search(starts, limit=limit_s)
    return times, [(s.edge, s.fraction, 0.0) for s in snaps]


def reached_pieces(
    network: RoadNetwork, times: np.ndarray, origins: list[tuple[int, float, float]], limit_s: float
) -> list[tuple[int, float, float]]:
    """Pieces ``(edge, from, to)`` (fractions) of open edges reached within ``limit_s``."""
    open_ = ~network.closed
    forward = _shares(limit_s - times[network.source], network.cost) * open_
    two_way = open_ & (network.reverse_cost >= 0)
    backward = _shares(limit_s - times[network.target], network.reverse_cost) * two_way
    whole = (forward + backward) >= 1.0
    pieces = [(int(e), 0.0, 1.0) for e in np.flatnonzero(whole)]
    for e in np.flatnonzero(~whole & (forward > 0)):
        pieces.append((int(e), 0.0, float(forward[e])))
    for e in np.flatnonzero(~whole & (backward > 0)):
        pieces.append((int(e), 1.0 - float(backward[e]), 1.0))
    for edge, fraction, start in origins:  # the facility's own edge, from where it stands
        cost, back = network.cost[edge], network.reverse_cost[edge]
        ahead = _share(limit_s - start, cost * (1 - fraction)) * (1 - fraction)
        pieces.append((edge, fraction, fraction + ahead))
        if back >= 0:
            behind = _share(limit_s - start, back * fraction) * fraction
            pieces.append((edge, fraction - behind, fraction))
    return sorted(p for p in pieces if p[2] > p[1])


def _shares(seconds: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Share of each edge covered with ``seconds`` left at its start (0 to 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(cost > 0, seconds / np.where(cost > 0, cost, 1.0), 1.0)
    share = np.where(np.isfinite(seconds) & (seconds > 0), share, 0.0)
    return np.clip(share, 0.0, 1.0)


def _share(seconds: float, cost: float) -> float:
    if not np.isfinite(seconds) or seconds <= 0:
        return 0.0
    return 1.0 if cost <= 0 else min(1.0, seconds / cost)


def service_areas(
    network: RoadNetwork, facilities: Sequence[Point], breaks: Sequence[float]
) -> list[ServiceArea]:
    """Service areas of one or several facilities for several time breaks.

    Parameters
    ----------
    network
        The road network (closed edges are never used).
    facilities
        ``(lon, lat)`` of the facilities; each area is reached from the nearest one.
    breaks
        Minutes, e.g. ``[4, 8, 12]``.

    Returns
    -------
    list of ServiceArea
        One per break, smallest first; each polygon lies within the next.

    Raises
    ------
    RoutingError
        If a break is not positive, there is no facility, or one is off the roads.
    """
    minutes = check_breaks(breaks)
    if not facilities:
        raise RoutingError("give at least one facility", parameter="facilities")
    times, origins = node_times(network, facilities, limit_s=minutes[-1] * 60)
    areas: list[ServiceArea] = []
    previous: Any = shapely.Polygon()
    done: set[tuple[int, float, float]] = set()
    for value in minutes:
        pieces = reached_pieces(network, times, origins, value * 60)
        lines = _piece_lines(network, pieces)
        # each break adds the band of its new pieces to the polygon of the break before: one
        # small polygon per piece (lines simplified to 1 m, 2 segments per quarter circle)
        # merged in one union, measured 5x faster than one buffer of the whole multi-line
        fresh = _piece_lines(network, [p for p in pieces if p not in done])
        done.update(pieces)
        bands = shapely.buffer(shapely.simplify(fresh, 1.0), BUFFER_M, quad_segs=2)
        polygon_m = shapely.union_all([previous, *bands])
        previous = polygon_m
        areas.append(
            ServiceArea(
                minutes=value,
                reached=_to_lonlat(network, shapely.MultiLineString(list(lines))),
                polygon=_to_lonlat(network, polygon_m),
                reached_length_m=float(shapely.length(lines).sum()),
            )
        )
    return areas


def _piece_lines(network: RoadNetwork, pieces: list[tuple[int, float, float]]) -> np.ndarray:
    """Metric lines of edge pieces; whole edges are taken as they are."""
    out = []
    for edge, start, end in pieces:
        line = network.metric_geometry[edge]
        if start > 0 or end < 1:
            line = shapely.ops.substring(line, start, end, normalized=True)
        if line.geom_type == "LineString" and line.length > 0:
            out.append(line)
    return np.array(out, dtype=object)


def _to_lonlat(network: RoadNetwork, geometry: Any) -> Any:
    return shapely.transform(
        geometry, lambda xy: np.column_stack(network.to_lonlat.transform(xy[:, 0], xy[:, 1]))
    )
