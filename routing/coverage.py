"""Coverage of buildings and people by facilities, per district.

Which buildings are within T minutes of the nearest facility, and where one more facility
would cover the most people (greedy).

No silent emptiness: a coverage with no building refuses (:class:`MissingInputError`); with
no population anywhere (every building's is missing or 0) shares and suggestions weigh every
building alike — the building count, the figure ``building_share`` already gives (a floor area
weight would favour the large shops and offices an extract does not tell from homes) — and
the result says so (``weight="buildings"`` and a note); with no districts the one row is the
whole city and a note says how to add districts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.sparse.csgraph import dijkstra

from layers.errors import MissingInputError
from layers.onemap import DISTRICTS_REMEDY
from routing.network import RoadNetwork, RoutingError, Snap
from routing.paths import Point

#: At most this many candidate sites are tried by :func:`suggest_sites` (spread evenly).
MAX_CANDIDATES = 600
#: Longest time limit a coverage may ask for.
MAX_MINUTES = 120
#: Name of the one row of buildings in no district.
OUTSIDE = "(outside the districts)"
#: How to give buildings a population, for the note of a coverage weighed by buildings.
POPULATION_REMEDY = (
    "load buildings with a population (`twin ingest buildings FILE`), or estimate it from "
    "floor area (layers.population.estimate_population) or a population density raster "
    "(layers.population.population_from_raster)"
)


@dataclass
class Coverage:
    """Coverage of a set of facilities.

    Attributes
    ----------
    minutes
        The time limit.
    districts
        Per district (``district``, its name): ``buildings``, ``covered_buildings``,
        ``building_share``, ``population``, ``covered_population``, ``population_share``
        (None with no population) and ``share``, the share by :attr:`weight`.
    total
        The same figures for the whole city, and ``weight`` and ``notes``.
    times_s
        Seconds from the nearest facility to each building (inf: unreachable within the
        limit; the search stops there).
    weight
        What the shares and suggestions weigh: ``population``, or ``buildings`` (each
        building alike) when no building has a population.
    notes
        What is missing and what it changes, with how to supply it; empty when nothing is.
    """

    minutes: float
    districts: pd.DataFrame
    total: dict[str, Any]
    times_s: np.ndarray
    weight: str = "population"
    notes: tuple[str, ...] = ()


def _entries(
    network: RoadNetwork, buildings: gpd.GeoDataFrame
) -> tuple[np.ndarray, list[Snap | None]]:
    """Return how a trip arrives at each building, and where the building stands.

    Arrivals are ``(node_a, offset_a, node_b, offset_b)`` rows; a building too far from any
    road has NaN there and no snap (None).
    """
    out = np.full((len(buildings), 4), np.nan)
    snaps: list[Snap | None] = []
    for i, point in enumerate(buildings.geometry.representative_point()):
        try:
            snap = network.snap(point.x, point.y)
        except RoutingError:
            snaps.append(None)  # too far from any road: never covered
            continue
        snaps.append(snap)
        entries = network.entries(snap)
        entries = entries + entries[:1] if len(entries) == 1 else entries
        out[i] = [entries[0][0], entries[0][1], entries[1][0], entries[1][1]]
    return out, snaps


def _same_edge(
    network: RoadNetwork, starts: list[Snap], snaps: list[Snap | None], arrival: np.ndarray
) -> np.ndarray:
    """Lower the arrival times of buildings on a facility's own edge to the direct trip."""
    by_edge: dict[int, list[tuple[int, Snap]]] = {}
    for i, snap in enumerate(snaps):
        if snap is not None:
            by_edge.setdefault(snap.edge, []).append((i, snap))
    for start in starts:
        for i, snap in by_edge.get(start.edge, []):
            direct = network.along(start, snap)
            if direct is not None:
                arrival[..., i] = np.minimum(arrival[..., i], direct[0])
    return arrival


def _arrival(times: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """Seconds to each building, given node times (1-D, or one row per start)."""
    ok = ~np.isnan(entries[:, 0])
    result = np.full((*times.shape[:-1], len(entries)), np.inf)
    a, b = entries[ok, 0].astype(int), entries[ok, 2].astype(int)
    result[..., ok] = np.minimum(times[..., a] + entries[ok, 1], times[..., b] + entries[ok, 3])
    return result


def coverage(
    network: RoadNetwork,
    facilities: Sequence[Point],
    buildings: gpd.GeoDataFrame,
    districts: gpd.GeoDataFrame,
    *,
    minutes: float,
) -> Coverage:
    """Share of buildings and population within ``minutes`` of the nearest facility.

    Parameters
    ----------
    network
        The road network (the emergency profile for emergency services).
    facilities
        ``(lon, lat)`` of the facilities.
    buildings
        With ``population`` and polygons (EPSG:4326); reached at their nearest road.
    districts
        With ``name`` and polygons; a building belongs to the district holding its
        representative point.
    minutes
        Time limit.

    Returns
    -------
    Coverage
        Per-district and city-wide figures.

    Raises
    ------
    RoutingError
        If ``minutes`` is not positive or there is no facility.
    MissingInputError
        If there is no building: a coverage of nothing would be empty.
    """
    if not (math.isfinite(minutes) and 0 < minutes <= MAX_MINUTES):
        raise RoutingError(
            f"minutes must be more than 0 and at most {MAX_MINUTES}", parameter="minutes"
        )
    if not facilities:
        raise RoutingError("there is no facility of that kind", parameter="kind")
    if buildings.empty:
        raise MissingInputError(
            "buildings",
            "no buildings loaded: coverage counts the buildings and people reached",
            "import them with `twin ingest buildings FILE`",
        )
    limit = minutes * 60
    snaps = []
    for point in facilities:  # a facility far from any open road serves no one
        with contextlib.suppress(RoutingError):
            snaps.append(network.snap(*point))
    if not snaps:
        raise RoutingError("no facility of that kind stands near an open road", parameter="kind")
    times, _, _ = network.search([pair for s in snaps for pair in network.exits(s)], limit=limit)
    entries, building_snaps = _entries(network, buildings)
    arrival = _same_edge(network, snaps, building_snaps, _arrival(times, entries))
    covered = arrival <= limit
    population = _population(buildings)
    weight = "population" if population.sum() > 0 else "buildings"
    notes = []
    if weight == "buildings":
        notes.append(
            "no building has a population: shares and suggested sites weigh every building "
            f"alike (weight='buildings'); to weigh people, {POPULATION_REMEDY}"
        )
    if districts.empty:
        notes.append(
            f"no districts loaded: the one row {OUTSIDE!r} is the whole city; " + DISTRICTS_REMEDY
        )
    frame = pd.DataFrame(
        {"covered": covered, "population": population, "covered_population": population * covered},
        index=buildings.index,
    )
    points = gpd.GeoDataFrame(geometry=buildings.geometry.representative_point(), crs=buildings.crs)
    joined = gpd.sjoin(points, districts[["name", "geometry"]], predicate="within", how="left")
    joined = joined[~joined.index.duplicated(keep="first")]
    frame["district"] = joined["name"].reindex(frame.index).fillna(OUTSIDE)
    grouped = frame.groupby("district", sort=True).agg(
        buildings=("covered", "size"),
        covered_buildings=("covered", "sum"),
        population=("population", "sum"),
        covered_population=("covered_population", "sum"),
    )
    grouped["building_share"] = grouped["covered_buildings"] / grouped["buildings"]
    grouped["population_share"] = (
        grouped["covered_population"] / grouped["population"].replace(0, np.nan)
    ).fillna(0.0)
    total: dict[str, Any] = {
        "buildings": float(len(frame)),
        "covered_buildings": float(covered.sum()),
        "building_share": float(covered.mean()),
        "population": float(population.sum()),
        "covered_population": float((population * covered).sum()),
        "population_share": float((population * covered).sum() / population.sum())
        if weight == "population"
        else None,
    }
    if weight == "buildings":
        grouped["population_share"] = None  # no one to share: not 0 % of people covered
    grouped["share"] = grouped[f"{'population' if weight == 'population' else 'building'}_share"]
    total["share"] = total[f"{'population' if weight == 'population' else 'building'}_share"]
    total["weight"] = weight
    total["notes"] = list(notes)
    return Coverage(minutes, grouped.reset_index(), total, arrival, weight, tuple(notes))


def _population(buildings: gpd.GeoDataFrame) -> np.ndarray:
    """Residents of each building (0 where missing); zeros if the column is absent."""
    if "population" not in buildings.columns:
        return np.zeros(len(buildings))
    values = pd.to_numeric(buildings["population"], errors="coerce").fillna(0)
    return values.to_numpy(dtype=float)


def suggest_sites(
    network: RoadNetwork,
    current: Coverage,
    buildings: gpd.GeoDataFrame,
    *,
    count: int = 1,
) -> list[dict[str, Any]]:
    """Greedy: the intersections where one more facility would cover the most uncovered people.

    People are weighed as ``current`` weighs them: by population, or, when no building has a
    population (``current.weight == "buildings"``), every building alike.

    Parameters
    ----------
    network
        The road network.
    current
        Coverage of the existing facilities (same buildings, same order).
    buildings
        The buildings, with ``population``.
    count
        How many sites to suggest, each one counting the ones before.

    Returns
    -------
    list of dict
        ``lon``, ``lat``, ``node_id``, ``added_population``, ``added_buildings``, the
        ``population_share`` after adding the site (None with no population) and ``share``,
        the share by ``current.weight`` after adding it; best first.

    Raises
    ------
    RoutingError
        If ``count`` is not positive.
    """
    if count <= 0:
        raise RoutingError("count must be 1 or more", parameter="count")
    limit = current.minutes * 60
    used = np.unique(
        np.concatenate([network.source[~network.closed], network.target[~network.closed]])
    )
    step = max(1, int(np.ceil(len(used) / MAX_CANDIDATES)))
    candidates = used[::step]
    entries = _entries(network, buildings)[0]
    reach = np.zeros((len(candidates), len(buildings)), dtype=bool)
    for first in range(0, len(candidates), 100):  # bounded memory: 100 searches at a time
        chunk = candidates[first : first + 100]
        times = np.atleast_2d(dijkstra(network.graph, directed=True, indices=chunk, limit=limit))
        reach[first : first + len(chunk)] = _arrival(times, entries) <= limit
    population = _population(buildings)
    by_people = current.weight == "population"
    weights = population if by_people else np.ones(len(buildings))
    covered = current.times_s <= limit
    total = population.sum()
    sites = []
    for _ in range(count):
        gain = (reach & ~covered) @ weights
        best = int(np.lexsort((candidates, -gain))[0])
        if gain[best] <= 0:
            break
        added = reach[best] & ~covered
        covered = covered | reach[best]
        node = int(candidates[best])
        point = (
            network.geometry[np.flatnonzero(network.source == node)[0]].coords[0]
            if np.any(network.source == node)
            else network.geometry[np.flatnonzero(network.target == node)[0]].coords[-1]
        )
        sites.append(
            {
                "lon": float(point[0]),
                "lat": float(point[1]),
                "node_id": int(network.node_ids[node]),
                "added_population": float(population[added].sum()),
                "added_buildings": float(added.sum()),
                "population_share": float((population * covered).sum() / total)
                if by_people
                else None,
                "share": float((weights * covered).sum() / weights.sum()),
            }
        )
    return sites
