"""Routes, nearest units and matrices equal pgRouting's answers on the same graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod

from layers.settings import get_settings
from routing import RoadNetwork, RoutingError, nearest_units, od_matrix, route
from routing.network import MAX_SNAP_M
from tests.routing.oracle import (
    pgr_cost_matrix,
    pgr_costs,
    pgr_with_points,
    postgis_snaps,
    reachable,
)

PAIRS = 1000


@pytest.fixture(scope="module", params=["car", "emergency"])
def network(request: pytest.FixtureRequest, sample_db: str) -> RoadNetwork:
    return RoadNetwork.load(profile=request.param, url=sample_db)


def node_cost(network: RoadNetwork, a: int, b: int) -> float:
    times, _, _ = network.search([(network.node_index[a], 0.0)])
    return float(times[network.node_index[b]])


def random_pairs(network: RoadNetwork, count: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    nodes = network.node_ids
    return [
        (int(a), int(b))
        for a, b in zip(rng.choice(nodes, count), rng.choice(nodes, count))
        if a != b
    ]


def test_costs_equal_pgr_dijkstra_on_1000_pairs(network: RoadNetwork, sample_db: str) -> None:
    pairs = random_pairs(network, PAIRS + 20, seed=7)[:PAIRS]
    assert len(pairs) == PAIRS
    oracle = pgr_costs(sample_db, network.profile, pairs)
    starts = sorted({a for a, _ in pairs})
    times = {}
    for a in starts:
        row, _, _ = network.search([(network.node_index[a], 0.0)])
        times[a] = row
    joined = 0
    for a, b in pairs:
        ours = float(times[a][network.node_index[b]])
        if (a, b) in oracle:
            joined += 1
            assert ours == pytest.approx(oracle[(a, b)], abs=1e-6), (a, b)
        else:
            assert math.isinf(ours), (a, b)
    # as many pairs were compared by cost as networkx finds a directed path for (most of them)
    assert joined == sum(reachable(sample_db, network.profile, pairs)) > PAIRS // 2


def test_closed_edges_equal_pgr_dijkstra_without_them(sample_db: str) -> None:
    network = RoadNetwork.load(profile="car", url=sample_db)
    rng = np.random.default_rng(11)
    closed = rng.choice(len(network.edge_id), 60, replace=False)
    network.close(closed)
    closed_ids = [int(network.edge_id[i]) for i in closed]
    pairs = random_pairs(network, 300, seed=12)
    oracle = pgr_costs(sample_db, "car", pairs, closed_ids)
    joined = 0
    for a, b in pairs:
        ours = node_cost(network, a, b)
        if (a, b) in oracle:
            joined += 1
            assert ours == pytest.approx(oracle[(a, b)], abs=1e-6)
        else:
            assert math.isinf(ours)
    assert joined == sum(reachable(sample_db, "car", pairs, closed_ids)) > len(pairs) // 2


def test_point_to_point_equals_pgr_with_points(network: RoadNetwork, sample_db: str) -> None:
    rng = np.random.default_rng(3)
    bounds = (7.412, 43.727, 7.436, 43.747)
    trips = [
        (
            (rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])),
            (rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])),
        )
        for _ in range(80)
    ]
    # where PostGIS places each point: off the roads (None), on a vertex, or inside an edge
    srid = int(get_settings().metric_crs.removeprefix("EPSG:"))
    placed = postgis_snaps(
        sample_db,
        network.profile,
        [p for trip in trips for p in trip],
        srid=srid,
        max_distance_m=MAX_SNAP_M,
    )
    inside = [s is not None and 0 < s[1] < 1 for s in placed]
    comparable = sum(inside[2 * i] and inside[2 * i + 1] for i in range(len(trips)))
    checked = unreachable = 0
    for i, (a, b) in enumerate(trips):
        if placed[2 * i] is None or placed[2 * i + 1] is None:
            with pytest.raises(RoutingError, match="from any open road"):
                route(network, a, b)  # in the sea or far from a road
            continue
        trip = route(network, a, b)
        start, end = network.snap(*a), network.snap(*b)
        edges = [int(network.edge_id[start.edge]), int(network.edge_id[end.edge])]
        assert edges == [placed[2 * i][0], placed[2 * i + 1][0]]
        if not (inside[2 * i] and inside[2 * i + 1]):
            continue  # pgr_withPoints answers nothing for a point on a vertex; pairs cover those
        expected = pgr_with_points(
            sample_db,
            network.profile,
            (int(network.edge_id[start.edge]), start.fraction),
            (int(network.edge_id[end.edge]), end.fraction),
        )
        if expected is None:
            assert trip is None
            unreachable += 1
            continue
        assert trip is not None
        assert trip.duration_s == pytest.approx(expected, abs=1e-6)
        checked += 1
    assert checked + unreachable == comparable
    assert checked > comparable // 2  # the sample's roads are mostly joined up


def test_route_shape(network: RoadNetwork) -> None:
    origin, destination = (7.4165, 43.7315), (7.4290, 43.7400)
    trip = route(network, origin, destination)
    assert trip is not None
    line = trip.geometry
    start, end = network.snap(*origin), network.snap(*destination)

    def snapped(snap):  # the fraction is along the metric line, where points are snapped
        point = network.metric_geometry[snap.edge].interpolate(snap.fraction, normalized=True)
        return network.to_lonlat.transform(point.x, point.y)

    assert line.coords[0] == pytest.approx(snapped(start), abs=1e-7)
    assert line.coords[-1] == pytest.approx(snapped(end), abs=1e-7)
    assert Geod(ellps="WGS84").geometry_length(line) == pytest.approx(trip.distance_m, abs=1.0)
    assert trip.steps[0].maneuver == "depart" and trip.steps[-1].maneuver == "arrive"
    assert sum(s.duration_s for s in trip.steps) == pytest.approx(
        trip.duration_s, abs=0.1 * len(trip.steps)
    )
    assert sum(s.distance_m for s in trip.steps) == pytest.approx(
        trip.distance_m, abs=0.1 * len(trip.steps)
    )
    assert trip.road_ids and all(isinstance(r, str) for r in trip.road_ids)


def test_routes_never_use_closed_edges(sample_db: str) -> None:
    network = RoadNetwork.load(profile="car", url=sample_db)
    origin, destination = (7.4165, 43.7315), (7.4290, 43.7400)
    first = route(network, origin, destination)
    assert first is not None
    detours = 0
    for edge_id in first.edge_ids[1:-1]:
        network.close(np.array([network.edge_index[edge_id]]))
        second = route(network, origin, destination)
        if second is not None:
            detours += 1
            assert edge_id not in second.edge_ids
            assert second.duration_s >= first.duration_s - 1e-9
    assert detours > 0  # the city has other ways round some of its streets


def test_unreachable_is_no_route(sample_db: str) -> None:
    network = RoadNetwork.load(profile="car", url=sample_db)
    origin, destination = (7.4165, 43.7315), (7.4290, 43.7400)
    keep = {network.snap(*origin).edge, network.snap(*destination).edge}
    network.close(np.array([i for i in range(len(network.edge_id)) if i not in keep]))
    assert route(network, origin, destination) is None
    with pytest.raises(RoutingError, match="from any open road"):
        network.snap(7.4250, 43.7370, max_distance_m=5.0)


def test_bad_points(sample_db: str) -> None:
    network = RoadNetwork.load(profile="car", url=sample_db)
    with pytest.raises(
        RoutingError, match=r"to \(2.35, 48.85\) is outside the city's extent"
    ) as caught:
        route(network, (7.42, 43.73), (2.35, 48.85))
    assert caught.value.parameter == "to"
    with pytest.raises(RoutingError, match="more than 250 m from any open road"):
        route(network, (7.455, 43.715), (7.42, 43.73))  # at sea
    with pytest.raises(RoutingError, match="unknown profile 'bike'"):
        RoadNetwork.load(profile="bike", url="postgresql://unused")


def test_nearest_units_rank_as_pgr_dijkstra_cost_matrix(sample_db: str) -> None:
    network = RoadNetwork.load(profile="emergency", url=sample_db)
    rng = np.random.default_rng(5)
    nodes = [int(n) for n in rng.choice(network.node_ids, 12, replace=False)]
    incident, units = nodes[0], nodes[1:]
    position = {}
    for node in nodes:
        index = network.node_index[node]
        outgoing = np.flatnonzero(network.source == index)
        if len(outgoing):
            position[node] = network.geometry[outgoing[0]].coords[0]
        else:
            position[node] = network.geometry[np.flatnonzero(network.target == index)[0]].coords[-1]
    resources = [
        {
            "id": str(n),
            "kind": "vehicle",
            "name": None,
            "lon": position[n][0],
            "lat": position[n][1],
        }
        for n in units
    ]
    found = nearest_units(
        network, position[incident], resources, k=len(units), turnout_s={"vehicle": 0.0}
    )
    matrix = pgr_cost_matrix(sample_db, "emergency", nodes)
    expected = sorted((matrix[(n, incident)], str(n)) for n in units if (n, incident) in matrix)
    assert len(expected) == sum(reachable(sample_db, "emergency", [(n, incident) for n in units]))
    assert expected  # some unit can reach the incident, so the ranking is compared
    assert [u.id for u in found] == [name for _, name in expected]
    for unit, (cost, _) in zip(found, expected, strict=True):
        assert unit.travel_s == pytest.approx(cost, abs=1e-6)
        assert unit.route.duration_s == pytest.approx(cost, abs=1e-6)


def test_k_must_be_positive(sample_db: str) -> None:
    network = RoadNetwork.load(profile="emergency", url=sample_db)
    with pytest.raises(RoutingError, match="k must be 1 or more"):
        nearest_units(network, (7.42, 43.73), [], k=0)


def test_od_matrix_equals_routes(network: RoadNetwork) -> None:
    points = [(7.4165, 43.7315), (7.4290, 43.7400), (7.4203, 43.7349), (7.4250, 43.7370)]
    matrix = od_matrix(network, points, points)
    for i, a in enumerate(points):
        for j, b in enumerate(points):
            trip = route(network, a, b)
            assert matrix[i, j] == pytest.approx(trip.duration_s if trip else math.inf, abs=1e-6)


def test_loop_edges_are_left_the_cheaper_way(sample_db: str) -> None:
    network = RoadNetwork.load(profile="car", url=sample_db)
    loops = np.flatnonzero((network.source == network.target) & (network.reverse_cost >= 0))
    assert len(loops) > 0  # the sample city has two-way loop edges (turning circles)
    loop = int(loops[0])
    for fraction in (0.1, 0.9):
        point = network.metric_geometry[loop].interpolate(fraction, normalized=True)
        here = network.to_lonlat.transform(point.x, point.y)
        there = (7.4290, 43.7400)
        for a, b in ((here, there), (there, here)):
            trip = route(network, a, b)
            matrix = od_matrix(network, [a], [b])[0, 0]
            assert trip is not None and trip.duration_s == pytest.approx(matrix, abs=1e-6)
