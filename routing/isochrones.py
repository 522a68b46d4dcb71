"""Service areas (isochrones): what the roads reach within a time, as lines and polygons.

The reached network is exact: every edge is cut where the time runs out. The polygon of a
break is the band of :data:`BUFFER_M` around the reached road pieces (in the city's metric
CRS), drawn on a grid rather than merged from thousands of buffers (which took seconds on a
city-sized network): it holds all the reached road, keeps the holes of large unreached
blocks, and is nested in the next break's polygon (see :func:`_band_polygons`). The same input
always gives the same polygons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numba
import numpy as np
import shapely
from scipy import ndimage

from routing.network import RoadNetwork, RoutingError
from routing.paths import Point

#: Half-width of the band around reached roads that makes a service area's polygon (m).
BUFFER_M = 15.0
#: Most time breaks one request may ask for.
MAX_BREAKS = 12
#: Longest break (minutes): two hours, the longest any coverage question asks (routing.coverage).
MAX_BREAK_MINUTES = 120.0


@dataclass
class ServiceArea:
    """The roads reached within ``minutes`` and their polygon (EPSG:4326).

    ``reached`` (a MultiLineString) is made on first use: the polygon and the length do not
    need it, and on a city-sized network it is hundreds of thousands of points.
    """

    minutes: float
    polygon: shapely.MultiPolygon | shapely.Polygon
    reached_length_m: float
    lines: _Lines = field(repr=False)

    @cached_property
    def reached(self) -> shapely.MultiLineString:
        """The reached road pieces, EPSG:4326."""
        return self.lines.lonlat()


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
        If the list is empty or longer than :data:`MAX_BREAKS`, is a string, or a break is not
        a number of minutes above 0 and at most :data:`MAX_BREAK_MINUTES`.
    """
    message = (
        f"breaks must be 1 to {MAX_BREAKS} positive minutes, each at most {MAX_BREAK_MINUTES:g}"
    )
    if isinstance(breaks, str | bytes):
        raise RoutingError(f"{message} (a list of numbers, not a string)", parameter="breaks")
    try:
        values = [float(b) for b in breaks]
    except (TypeError, ValueError):
        raise RoutingError(message, parameter="breaks") from None
    if (
        not values
        or len(values) > MAX_BREAKS
        or not all(math.isfinite(v) and 0 < v <= MAX_BREAK_MINUTES for v in values)
    ):
        raise RoutingError(message, parameter="breaks")
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
    times = network.times_from(starts, limit=limit_s)
    return times, [(s.edge, s.fraction, 0.0) for s in snaps]


def reached_pieces(
    network: RoadNetwork, times: np.ndarray, origins: list[tuple[int, float, float]], limit_s: float
) -> list[tuple[int, float, float]]:
    """Pieces ``(edge, from, to)`` (fractions) of open edges reached within ``limit_s``.

    Parameters
    ----------
    network
        The road network.
    times
        Seconds to every node (:func:`node_times`).
    origins
        ``(edge, fraction, seconds)`` of the facilities (:func:`node_times`).
    limit_s
        Time limit, seconds.

    Returns
    -------
    list of tuple
        Sorted pieces, each with ``from < to``.
    """
    edge, start, end = _reached_arrays(network, times, origins, limit_s)
    return [(int(e), float(a), float(b)) for e, a, b in zip(edge, start, end, strict=True)]


def _reached_arrays(
    network: RoadNetwork, times: np.ndarray, origins: list[tuple[int, float, float]], limit_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`reached_pieces` as three arrays (edge, from, to), sorted the same way."""
    open_ = ~network.closed
    forward = _shares(limit_s - times[network.source], network.cost) * open_
    two_way = open_ & (network.reverse_cost >= 0)
    backward = _shares(limit_s - times[network.target], network.reverse_cost) * two_way
    whole = (forward + backward) >= 1.0
    ahead = ~whole & (forward > 0)
    behind = ~whole & (backward > 0)
    edges = [np.flatnonzero(whole), np.flatnonzero(ahead), np.flatnonzero(behind)]
    starts = [np.zeros(len(edges[0])), np.zeros(len(edges[1])), 1.0 - backward[edges[2]]]
    ends = [np.ones(len(edges[0])), forward[edges[1]], np.ones(len(edges[2]))]
    for edge, fraction, start in origins:  # the facility's own edge, from where it stands
        cost, back = network.cost[edge], network.reverse_cost[edge]
        ahead_share = _share(limit_s - start, cost * (1 - fraction)) * (1 - fraction)
        edges.append(np.array([edge]))
        starts.append(np.array([fraction]))
        ends.append(np.array([fraction + ahead_share]))
        if back >= 0:
            behind_share = _share(limit_s - start, back * fraction) * fraction
            edges.append(np.array([edge]))
            starts.append(np.array([fraction - behind_share]))
            ends.append(np.array([fraction]))
    piece_edge = np.concatenate(edges).astype(np.int64)
    piece_start = np.concatenate(starts).astype(float)
    piece_end = np.concatenate(ends).astype(float)
    keep = piece_end > piece_start
    piece_edge, piece_start, piece_end = piece_edge[keep], piece_start[keep], piece_end[keep]
    order = np.lexsort((piece_end, piece_start, piece_edge))
    return piece_edge[order], piece_start[order], piece_end[order]


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
        One per break, smallest first; each polygon lies within the next. Polygons and lines
        are EPSG:4326; ``reached_length_m`` is measured in the city's metric CRS.

    Raises
    ------
    RoutingError
        If a break is not positive, there is no facility, or one is off the roads.
    """
    minutes = check_breaks(breaks)
    if not facilities:
        raise RoutingError("give at least one facility", parameter="facilities")
    times, origins = node_times(network, facilities, limit_s=minutes[-1] * 60)
    bands: list[_Lines] = []
    drawn: np.ndarray | None = None
    for value in minutes:
        edge, start, end = _reached_arrays(network, times, origins, value * 60)
        bands.append(_Lines.of(network, edge, start, end, drawn=drawn))
        drawn = edge[(start == 0) & (end == 1)]  # sorted: pieces are sorted by edge
    polygons = _band_polygons(bands)
    return [
        ServiceArea(
            minutes=value,
            polygon=_to_lonlat(network, polygon),
            reached_length_m=lines.length_m,
            lines=lines,
        )
        for value, lines, polygon in zip(minutes, bands, polygons, strict=True)
    ]


@dataclass
class _Lines:
    """Reached road pieces as flat coordinate arrays: points ``xy`` (metric) of line ``part``.

    Whole edges take their points from the network's arrays; the cut ones are interpolated
    along their metric line (fractions are along it), so no shapely object is made per piece.
    """

    xy: np.ndarray
    part: np.ndarray
    fresh: np.ndarray
    whole_lonlat: np.ndarray
    length_m: float
    to_lonlat: Any

    @classmethod
    def of(
        cls,
        network: RoadNetwork,
        edge: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        *,
        drawn: np.ndarray | None = None,
    ) -> _Lines:
        """Lines of the pieces ``(edge, start, end)``.

        ``drawn``: sorted edges already drawn whole (by a smaller band): their lines are not
        sampled again (``fresh`` is False for them).
        """
        whole = (start == 0) & (end == 1)
        edges = edge[whole]
        first = network.coord_start[edges]
        count = network.coord_start[edges + 1] - first
        index = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
        xy_parts = [network.metric_coords[index]]
        part_parts = [np.repeat(np.arange(len(edges)), count)]
        fresh = [np.ones(len(edges), bool) if drawn is None else ~np.isin(edges, drawn)]
        length = float(network.metric_length[edges].sum())
        cut_edge, cut_start, cut_end = edge[~whole], start[~whole], end[~whole]
        cut_xy, cut_part, cut_count = _cut_all(
            network.coord_start,
            network.metric_coords,
            network.vertex_m,
            cut_edge,
            cut_start,
            cut_end,
        )
        xy_parts.append(cut_xy)
        part_parts.append(cut_part + len(edges))
        kept = network.vertex_m[network.coord_start[cut_edge + 1] - 1] > 0
        length += float(
            (network.metric_length[cut_edge[kept]] * (cut_end[kept] - cut_start[kept])).sum()
        )
        fresh.append(np.ones(cut_count, bool))
        return cls(
            np.concatenate(xy_parts),
            np.concatenate(part_parts),
            np.concatenate(fresh),
            network.coords[index],
            length,
            network.to_lonlat,
        )

    def lonlat(self) -> shapely.MultiLineString:
        """Return the pieces as one MultiLineString, EPSG:4326."""
        if not len(self.part):
            return shapely.MultiLineString()
        rest = self.xy[len(self.whole_lonlat) :]
        lon, lat = self.to_lonlat.transform(rest[:, 0], rest[:, 1])
        xy = np.concatenate([self.whole_lonlat, np.column_stack([lon, lat])])
        starts = np.flatnonzero(np.diff(self.part, prepend=-1))
        offsets = (np.append(starts, len(self.part)), np.array([0, len(starts)]))
        return shapely.from_ragged_array(shapely.GeometryType.MULTILINESTRING, xy, offsets)[0]


@numba.njit(cache=True)
def _point_at(
    coords: np.ndarray, along_m: np.ndarray, first: int, last: int, position: float
) -> tuple[float, float]:
    """Return the point ``position`` metres along the line of points ``first`` to ``last - 1``."""
    k = first
    while k < last - 2 and along_m[k + 1] < position:
        k += 1
    span = along_m[k + 1] - along_m[k]
    t = 0.0 if span <= 0 else (position - along_m[k]) / span
    t = min(max(t, 0.0), 1.0)
    return (
        coords[k, 0] + (coords[k + 1, 0] - coords[k, 0]) * t,
        coords[k, 1] + (coords[k + 1, 1] - coords[k, 1]) * t,
    )


@numba.njit(cache=True)
def _cut_all(
    coord_start: np.ndarray,
    coords: np.ndarray,
    along_m: np.ndarray,
    edge: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Metric points of edges from fraction ``start`` to ``end`` (``end > start``), at once.

    Fractions are of each edge's metric length; the points between are the edge's own, the
    ends interpolated. Edges of no length are left out. Returns the points, the number of the
    piece each belongs to (from 0, counting only those kept), and how many were kept.
    """
    total = 0
    for i in range(len(edge)):
        total += coord_start[edge[i] + 1] - coord_start[edge[i]] + 2
    xy = np.empty((total, 2))
    part = np.empty(total, np.int64)
    count = 0
    kept = 0
    for i in range(len(edge)):
        first, last = coord_start[edge[i]], coord_start[edge[i] + 1]
        length = along_m[last - 1]
        if length <= 0:
            continue
        a, b = start[i] * length, end[i] * length
        xy[count, 0], xy[count, 1] = _point_at(coords, along_m, first, last, a)
        part[count] = kept
        count += 1
        for j in range(first, last):  # the edge's own points strictly between
            if a < along_m[j] < b:
                xy[count, 0], xy[count, 1] = coords[j, 0], coords[j, 1]
                part[count] = kept
                count += 1
        xy[count, 0], xy[count, 1] = _point_at(coords, along_m, first, last, b)
        part[count] = kept
        count += 1
        kept += 1
    return xy[:count], part[:count], kept


@numba.njit(cache=True)
def _draw(
    grid: np.ndarray,
    xy: np.ndarray,
    part: np.ndarray,
    fresh: np.ndarray,
    x0: float,
    y1: float,
    cell: float,
    number: int,
) -> None:
    """Mark with ``number`` the cells of points along fresh pieces, at most half a cell apart."""
    step = cell / 2
    for i in range(len(part) - 1):
        if part[i + 1] != part[i] or not fresh[part[i]]:
            continue
        ax, ay, bx, by = xy[i, 0], xy[i, 1], xy[i + 1, 0], xy[i + 1, 1]
        count = max(int(np.ceil(np.hypot(bx - ax, by - ay) / step)), 1)
        for k in range(count + 1):
            t = k / count
            x = ax + (bx - ax) * t
            y = ay + (by - ay) * t
            grid[int((y1 - y) / cell), int((x - x0) / cell)] = number


#: Cell size of the grid service-area polygons are drawn on: fine for a small area, coarser
#: as the area grows (at most :data:`MAX_CELLS` cells), never coarser than ``BUFFER_M / 1.5``
#: (so the band of :data:`BUFFER_M` spans at least 1.5 cells and holds every reached point).
MIN_CELL_M = BUFFER_M / 3
MAX_CELLS = 2_000_000


def _band_polygons(bands: list[_Lines]) -> list[Any]:
    """Metric polygons of nested bands: reached pieces drawn on a grid, widened, traced.

    Every piece is sampled at most half a cell apart and its samples mark their cells with the
    band's number (the least band wins); a minimum filter over a disc of :data:`BUFFER_M`
    widens each band; cells touching only by a corner are joined (so every ring traced is
    simple and no two touch), and each band's cells (those numbered at most its own) are traced
    into polygons with holes (:func:`_trace`). A point of a piece lies within a quarter cell of
    a sample, so in its cell or a neighbour's, which the disc (at least 1.5 cells) covers: every
    reached point is inside its band's polygon. The cells of a band are a subset of the next
    one's, so the polygons are nested exactly. One grid for all bands: the same input always
    gives the same polygons.
    """
    outer = bands[-1]
    if not len(outer.part):
        return [shapely.Polygon() for _ in bands]
    xmin, ymin = outer.xy.min(axis=0)
    xmax, ymax = outer.xy.max(axis=0)
    area = (xmax - xmin + 2 * BUFFER_M) * (ymax - ymin + 2 * BUFFER_M)
    cell = float(min(max(MIN_CELL_M, math.sqrt(area / MAX_CELLS)), BUFFER_M / 1.5))
    radius = BUFFER_M / cell
    pad = math.ceil(radius) + 2
    x0 = math.floor(xmin / cell) * cell - pad * cell
    y1 = math.ceil(ymax / cell) * cell + pad * cell
    width = math.ceil((xmax - x0) / cell) + pad + 1
    height = math.ceil((y1 - ymin) / cell) + pad + 1
    grid = np.full((height, width), 255, dtype=np.uint8)
    for number in range(len(bands) - 1, -1, -1):  # smaller bands overwrite larger ones
        lines = bands[number]
        _draw(grid, lines.xy, lines.part, lines.fresh, x0, y1, cell, number)
    widened = _widen(grid, radius)
    _join_corners(widened, len(bands))
    out = []
    for number in range(len(bands)):
        xy, ring_start, area, inside = _trace(widened <= number, x0, y1, cell)
        out.append(_polygons(xy, ring_start, area, inside))
    return out


def _widen(grid: np.ndarray, radius: float) -> np.ndarray:
    """Minimum of ``grid`` over a disc of ``radius`` cells around each cell.

    The disc (cells whose offset ``(dx, dy)`` has ``dx² + dy² <= radius²``) is the union of
    the rectangles ``|dx| <= a(b), |dy| <= b`` (``a(b)`` the widest row at height ``b``), and a
    rectangle's minimum is two 1-D running minima: a handful of fast passes instead of one
    filter visiting every cell of the disc for every cell.
    """
    reach = math.floor(radius)
    rows = []
    for b in range(reach + 1):
        a = 0
        while (a + 1) ** 2 + b**2 <= radius**2:
            a += 1
        rows.append((a, b))
    # a rectangle inside a taller one as wide is not needed
    rectangles = [(a, b) for i, (a, b) in enumerate(rows) if i == reach or rows[i + 1][0] < a]
    out: np.ndarray | None = None
    for a, b in rectangles:
        part = ndimage.minimum_filter1d(grid, 2 * a + 1, axis=1, mode="constant", cval=255)
        part = ndimage.minimum_filter1d(part, 2 * b + 1, axis=0, mode="constant", cval=255)
        out = part if out is None else np.minimum(out, part)
    assert out is not None
    return out


@numba.njit(cache=True)
def _join_corners(grid: np.ndarray, bands: int) -> None:
    """Give each band the cells that join its cells touching only by a corner.

    In each 2x2 block where two diagonal cells are in band ``k`` (numbered at most ``k``) and
    the other two are not, the left one of those two joins it (it takes the number ``k``, so
    every larger band has it too). Repeated until no such block is left (a join can make
    another).
    """
    height, width = grid.shape
    changed = True
    while changed:
        changed = False
        for r in range(height - 1):
            for c in range(width - 1):
                a, b = grid[r, c], grid[r, c + 1]
                d, e = grid[r + 1, c], grid[r + 1, c + 1]
                if a == b and a == d and a == e:
                    continue
                for number in range(bands):
                    nw = grid[r, c] <= number
                    ne = grid[r, c + 1] <= number
                    sw = grid[r + 1, c] <= number
                    se = grid[r + 1, c + 1] <= number
                    if nw and se and not ne and not sw:
                        grid[r + 1, c] = number
                        changed = True
                    elif ne and sw and not nw and not se:
                        grid[r, c] = number
                        changed = True


@numba.njit(cache=True)
def _trace(
    mask: np.ndarray, x0: float, y1: float, cell: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trace the boundary rings of a mask's cells (no two cells touching only by a corner).

    Each ring keeps its cells on its left (outer rings counter-clockwise, holes clockwise, in
    x east / y north); only corners where it turns are kept.

    Returns the points (x, y; metric), where each ring starts in them (one more entry: the
    end), each ring's signed area (> 0: an outer ring), and for each ring the centre of an
    outside cell next to it (for a hole: a point inside the hole).
    """
    height, width = mask.shape
    # side bits of each cell already traced: 1 bottom, 2 right, 4 top, 8 left
    done = np.zeros((height, width), np.uint8)
    total = 0
    for r in range(height):
        for c in range(width):
            if mask[r, c]:
                if r == height - 1 or not mask[r + 1, c]:
                    total += 1
                if c == width - 1 or not mask[r, c + 1]:
                    total += 1
                if r == 0 or not mask[r - 1, c]:
                    total += 1
                if c == 0 or not mask[r, c - 1]:
                    total += 1
    xy = np.empty((total * 2 + 2, 2))
    starts = np.empty(total + 2, np.int64)
    areas = np.zeros(total + 1)
    inside = np.empty((total + 1, 2))
    count = 0
    rings = 0
    for r in range(height):
        for c in range(width):
            if not mask[r, c]:
                continue
            for side in (4, 1, 2, 8):  # top first: a component's first ring is its outer one
                if done[r, c] & side:
                    continue
                if side == 4 and r > 0 and mask[r - 1, c]:
                    continue
                if side == 1 and r < height - 1 and mask[r + 1, c]:
                    continue
                if side == 2 and c < width - 1 and mask[r, c + 1]:
                    continue
                if side == 8 and c > 0 and mask[r, c - 1]:
                    continue
                # the edge's start corner (X, Y: grid lines) and direction 0 E, 1 N, 2 W, 3 S
                if side == 4:
                    x, y, d = c + 1, r, 2
                elif side == 1:
                    x, y, d = c, r + 1, 0
                elif side == 2:
                    x, y, d = c + 1, r + 1, 1
                else:
                    x, y, d = c, r, 3
                starts[rings] = count
                # the outside cell to the right of the first edge
                if side == 4:
                    inside[rings, 0], inside[rings, 1] = c + 0.5, r - 0.5
                elif side == 1:
                    inside[rings, 0], inside[rings, 1] = c + 0.5, r + 1.5
                elif side == 2:
                    inside[rings, 0], inside[rings, 1] = c + 1.5, r + 0.5
                else:
                    inside[rings, 0], inside[rings, 1] = c - 0.5, r + 0.5
                rings += 1
                first_x, first_y, first_d = x, y, d
                previous = -1
                while True:
                    # mark the edge leaving (x, y) in direction d, and move along it
                    if d == 0:
                        done[y - 1, x] |= 1
                    elif d == 1:
                        done[y - 1, x - 1] |= 2
                    elif d == 2:
                        done[y, x - 1] |= 4
                    else:
                        done[y, x] |= 8
                    if d != previous:
                        xy[count, 0] = x0 + x * cell
                        xy[count, 1] = y1 - y * cell
                        count += 1
                    previous = d
                    # shoelace, in grid units (y grows southwards: the sign is flipped below)
                    if d == 0:
                        areas[rings - 1] += y
                        x += 1
                    elif d == 1:
                        y -= 1
                    elif d == 2:
                        areas[rings - 1] -= y
                        x -= 1
                    else:
                        y += 1
                    if x == first_x and y == first_y:
                        break
                    # the one edge leaving this corner (there is one: no corner-only contact)
                    nw = y > 0 and x > 0 and mask[y - 1, x - 1]
                    ne = y > 0 and x < width and mask[y - 1, x]
                    sw = y < height and x > 0 and mask[y, x - 1]
                    se = y < height and x < width and mask[y, x]
                    if ne and not se:
                        d = 0
                    elif nw and not ne:
                        d = 1
                    elif sw and not nw:
                        d = 2
                    else:
                        d = 3
                if previous == first_d:  # the start was mid-way along a straight side
                    xy[starts[rings - 1]] = xy[count - 1]
                    count -= 1
                xy[count] = xy[starts[rings - 1]]  # close the ring
                count += 1
    starts[rings] = count
    # the sum of y * dx over a ring (y southwards) is the area a counter-clockwise ring (x east,
    # y north) encloses, negative for a clockwise one; in cells, then in square metres
    out_inside = np.empty((rings, 2))
    for i in range(rings):
        out_inside[i, 0] = x0 + inside[i, 0] * cell
        out_inside[i, 1] = y1 - inside[i, 1] * cell
    return xy[:count], starts[: rings + 1], areas[:rings] * cell * cell, out_inside


def _polygons(xy: np.ndarray, ring_start: np.ndarray, area: np.ndarray, inside: np.ndarray) -> Any:
    """Polygons from traced rings: each hole goes to the smallest outer ring around it."""
    if len(area) == 0:
        return shapely.Polygon()
    lengths = np.diff(ring_start)
    rings: Any = shapely.linearrings(xy, indices=np.repeat(np.arange(len(lengths)), lengths))
    shells = np.flatnonzero(area > 0)
    holes = np.flatnonzero(area < 0)
    owner = np.arange(len(area))
    if len(holes):
        outlines = shapely.polygons(rings[shells])
        # the points in a tree, each outline asked once (prepared: fast point-in-polygon)
        points: Any = shapely.points(inside[holes])
        tree = shapely.STRtree(points)
        shell, hole = tree.query(outlines, predicate="contains")
        # of the outer rings around a hole, the smallest is its own (others hold it in a hole)
        order = np.lexsort((area[shells[shell]], hole))
        hole, shell = hole[order], shell[order]
        first = np.ones(len(hole), dtype=bool)
        first[1:] = hole[1:] != hole[:-1]
        owner[holes[hole[first]]] = shells[shell[first]]
    order = np.lexsort((area < 0, owner))  # grouped by outer ring, the outer ring first
    _, group = np.unique(owner[order], return_inverse=True)
    polygons: Any = shapely.polygons(rings[order], indices=group)
    return polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(list(polygons))


def _to_lonlat(network: RoadNetwork, geometry: Any) -> Any:
    return shapely.transform(
        geometry, lambda xy: np.column_stack(network.to_lonlat.transform(xy[:, 0], xy[:, 1]))
    )
