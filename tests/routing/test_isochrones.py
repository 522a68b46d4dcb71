"""Service areas: nested, holding the reached roads, deterministic, never through a closure."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import shapely

from routing import RoadNetwork, RoutingError, service_areas
from routing.isochrones import node_times, reached_pieces

STATION = (7.4203, 43.7349)  # Condamine fire station
BREAKS = [2, 4, 6]


@pytest.fixture(scope="module")
def network(sample_db: str) -> RoadNetwork:
    return RoadNetwork.load(profile="emergency", url=sample_db)


def metric(network: RoadNetwork, geometry: shapely.Geometry) -> shapely.Geometry:
    return shapely.transform(
        geometry, lambda xy: np.column_stack(network.to_metric.transform(xy[:, 0], xy[:, 1]))
    )


def test_polygons_are_nested(network: RoadNetwork) -> None:
    areas = service_areas(network, [STATION], BREAKS)
    assert [a.minutes for a in areas] == BREAKS
    for inner, outer in itertools.pairwise(areas):
        assert (
            metric(network, inner.polygon).difference(metric(network, outer.polygon)).area < 1.0
        )  # m²
        assert inner.reached_length_m < outer.reached_length_m


def test_polygons_hold_the_reached_roads_and_little_else(network: RoadNetwork) -> None:
    for area in service_areas(network, [STATION], BREAKS):
        polygon = metric(network, area.polygon)
        reached = metric(network, area.reached)
        inside = reached.intersection(polygon).length
        assert inside >= 0.99 * reached.length
        # roads inside the polygon that the time does not reach: the ends beyond the cut
        roads = shapely.union_all(network.metric_geometry)
        unreached = roads.difference(reached.buffer(0.5))
        share = unreached.intersection(polygon).length / roads.intersection(polygon).length
        # measured on the sample city: 9% at 2 min (parallel one-way carriageways and tunnels
        # within the band count as unreached), 2% at 4 min, 1.5% beyond
        assert share < (0.12 if area.minutes < 4 else 0.04), (area.minutes, share)


def test_reached_length_is_exact_for_a_single_edge(network: RoadNetwork) -> None:
    limit = 60.0
    times, origins = node_times(network, [STATION], limit_s=limit)
    pieces = reached_pieces(network, times, origins, limit)
    own = {o[0] for o in origins}
    # from the node times alone: the edges the limit cuts part-way from their source, and
    # that their target (if two-way and reached) does not fill up from the other end
    left = limit - times[network.source]
    with np.errstate(invalid="ignore"):
        ahead = np.where(np.isfinite(left), left / network.cost, 0.0)
        behind = np.where(
            (network.reverse_cost >= 0) & np.isfinite(times[network.target]),
            (limit - times[network.target]) / network.reverse_cost,
            0.0,
        )
    cut = {
        int(e)
        for e in np.flatnonzero((ahead > 0) & (ahead < 1) & (ahead + np.clip(behind, 0, 1) < 1))
        if e not in own
    }
    checked = set()
    for edge, start, end in pieces:
        assert 0 <= start < end <= 1
        source_time = times[network.source[edge]]
        if start == 0 and end < 1 and np.isfinite(source_time) and edge not in own:
            assert source_time + end * network.cost[edge] == pytest.approx(limit, abs=1e-6)
            checked.add(edge)
    assert checked == cut and len(cut) > 0, (len(checked), len(cut))


def test_deterministic(network: RoadNetwork) -> None:
    first = service_areas(network, [STATION, (7.4148, 43.7290)], [3, 5])
    second = service_areas(network, [STATION, (7.4148, 43.7290)], [5, 3])
    assert [shapely.to_wkb(a.polygon) for a in first] == [shapely.to_wkb(a.polygon) for a in second]


def test_closed_edges_are_never_reached(sample_db: str) -> None:
    network = RoadNetwork.load(profile="emergency", url=sample_db)
    start = network.snap(*STATION)
    around = np.flatnonzero(
        (network.source == network.target[start.edge])
        | (network.target == network.target[start.edge])
    )
    closed = np.array([e for e in around if e != start.edge])
    assert len(closed) > 0  # the station's edge leads to a junction with other streets
    network.close(closed)
    times, origins = node_times(network, [STATION], limit_s=240.0)
    pieces = reached_pieces(network, times, origins, 240.0)
    assert pieces  # the station's own edge, at least
    assert not {edge for edge, _, _ in pieces} & set(closed.tolist())


@pytest.mark.parametrize(
    "breaks", [[], [0, 4], [-1], [float("inf")], [1e308], [4, 121], "4,8", ["4", "x"], [None]]
)
def test_bad_breaks(network: RoadNetwork, breaks: Any) -> None:
    with pytest.raises(RoutingError, match="breaks must be 1 to 12 positive minutes"):
        service_areas(network, [STATION], breaks)


def test_has_holes_when_blocks_are_big(network: RoadNetwork) -> None:
    largest = service_areas(network, [STATION], [12])[0].polygon
    parts = list(largest.geoms) if largest.geom_type == "MultiPolygon" else [largest]
    assert sum(len(p.interiors) for p in parts) > 0
