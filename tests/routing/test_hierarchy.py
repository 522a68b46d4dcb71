"""The city-scale engine: contraction hierarchy and bidirectional Dijkstra, exact on Malta.

Small random graphs check the kernels against scipy's Dijkstra (offsets, several sources and
targets, zero costs, unreachable pairs); Malta's 57k edges check 1,000 random routes against
``pgr_dijkstra`` over the ``routing_edges`` view, as loaded, with closures, and with live speeds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from layers.database import get_engine
from routing import RoadNetwork, nearest_units, route, service_areas
from routing.hierarchy import Bidirectional, Hierarchy
from routing.paths import TURNOUT_S
from tests.routing.oracle import edges_sql, pgr_costs

ROUTES = 1000


def random_graph(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, ...]:
    tail = rng.integers(0, n, m)
    head = rng.integers(0, n, m)
    weight = np.round(rng.exponential(10.0, m), 1)  # rounded: ties and zero costs happen
    keep = tail != head
    tail, head, weight = tail[keep], head[keep], weight[keep]
    order = np.lexsort((weight, head, tail))
    tail, head, weight = tail[order], head[order], weight[order]
    first = np.ones(len(tail), dtype=bool)
    first[1:] = (tail[1:] != tail[:-1]) | (head[1:] != head[:-1])
    return tail[first], head[first], weight[first]


def expected_cost(
    times: np.ndarray, sources: list[tuple[int, float]], targets: list[tuple[int, float]]
) -> float:
    return min(times[s, t] + so + to for s, so in sources for t, to in targets)


@pytest.mark.parametrize("seed", range(6))
def test_kernels_equal_scipy_on_random_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    tail, head, weight = random_graph(rng, n, 900)
    times = dijkstra(csr_matrix((weight, (tail, head)), shape=(n, n)), directed=True)
    engines = [Hierarchy.build(n, tail, head, weight), Bidirectional(n, tail, head, weight)]
    for _ in range(200):
        sources = [(int(x), float(o)) for x, o in zip(rng.integers(0, n, 2), rng.uniform(0, 5, 2))]
        targets = [(int(x), float(o)) for x, o in zip(rng.integers(0, n, 2), rng.uniform(0, 5, 2))]
        expected = expected_cost(times, sources, targets)
        for engine in engines:
            path = engine.query(sources, targets)
            if not math.isfinite(expected):
                assert path is None
                continue
            assert path is not None
            assert path.cost == pytest.approx(expected, abs=1e-9)
            start, start_offset = sources[path.source]
            end, end_offset = targets[path.target]
            # the arcs join the chosen source to the chosen target and cost what was said
            if len(path.arcs):
                assert tail[path.arcs[0]] == start and head[path.arcs[-1]] == end
                assert np.all(head[path.arcs[:-1]] == tail[path.arcs[1:]])
            else:
                assert start == end
            total = start_offset + weight[path.arcs].sum() + end_offset
            assert total == pytest.approx(path.cost, abs=1e-9)


def test_negative_or_infinite_costs_are_refused() -> None:
    tail, head = np.array([0, 1]), np.array([1, 2])
    with pytest.raises(ValueError, match="finite and not negative"):
        Hierarchy.build(3, tail, head, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="finite and not negative"):
        Hierarchy.build(3, tail, head, np.array([1.0, np.inf]))


# -- Malta ----------------------------------------------------------------------------------


def random_pairs(network: RoadNetwork, count: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    nodes = network.node_ids
    pairs = [
        (int(a), int(b))
        for a, b in zip(rng.choice(nodes, count + 20), rng.choice(nodes, count + 20), strict=True)
        if a != b
    ]
    return pairs[:count]


def engine_cost(network: RoadNetwork, a: int, b: int) -> float:
    """The engine's cost from node id ``a`` to ``b`` (inf: unreachable); checks the arcs."""
    start, end = network.node_index[a], network.node_index[b]
    found = network.shortest([(start, 0.0)], [(end, 0.0)])
    if found is None:
        return math.inf
    cost, _, _, arcs = found
    at, total = start, 0.0
    for edge, direction in arcs:  # a chain of open arcs from a to b, costing what was said
        assert not network.closed[edge]
        tail, head = (
            (network.source[edge], network.target[edge])
            if direction > 0
            else (network.target[edge], network.source[edge])
        )
        assert tail == at
        total += network.cost[edge] if direction > 0 else network.reverse_cost[edge]
        at = head
    assert at == end
    assert total == pytest.approx(cost, abs=1e-6)
    return cost


def assert_equal_to_oracle(
    network: RoadNetwork, pairs: list[tuple[int, int]], oracle: dict[tuple[int, int], float]
) -> int:
    joined = 0
    for a, b in pairs:
        ours = engine_cost(network, a, b)
        if (a, b) in oracle:
            joined += 1
            assert ours == pytest.approx(oracle[(a, b)], abs=1e-6), (a, b)
        else:
            assert math.isinf(ours), (a, b)
    assert joined > len(pairs) // 2  # most pairs are joined: the comparison is by cost
    return joined


@pytest.fixture(scope="module")
def malta_network(malta: str) -> RoadNetwork:
    return RoadNetwork.load(profile="car", url=malta)


@pytest.mark.malta
def test_malta_1000_routes_equal_pgr_dijkstra(malta_network: RoadNetwork, malta: str) -> None:
    assert len(malta_network.edge_id) == 33582 and len(malta_network.arc_tail) > 55000
    pairs = random_pairs(malta_network, ROUTES, seed=21)
    assert_equal_to_oracle(malta_network, pairs, pgr_costs(malta, "car", pairs))


@pytest.mark.malta
def test_malta_routes_after_closures_equal_pgr_dijkstra(
    malta_network: RoadNetwork, malta: str
) -> None:
    pairs = random_pairs(malta_network, ROUTES, seed=22)
    rng = np.random.default_rng(23)
    # close 300 random edges and an edge in the middle of 200 of the routes as loaded, so that
    # many hierarchy answers cross a closed edge (and the bidirectional search answers them)
    crossed = []
    for a, b in pairs[:200]:
        found = malta_network.shortest(
            [(malta_network.node_index[a], 0.0)], [(malta_network.node_index[b], 0.0)]
        )
        if found is not None and found[3]:
            crossed.append(found[3][len(found[3]) // 2][0])
    closed = np.unique(np.concatenate([rng.choice(len(malta_network.edge_id), 300), crossed]))
    network = malta_network.with_closed(closed)
    closed_ids = [int(network.edge_id[i]) for i in closed]
    assert_equal_to_oracle(network, pairs, pgr_costs(malta, "car", pairs, closed_ids))
    assert len(crossed) > 150
    # the network as loaded is unchanged
    assert not malta_network.closed.any()


def pgr_costs_in(
    conn: sa.Connection, pairs: Iterable[tuple[int, int]], closed: Iterable[int] = ()
) -> dict[tuple[int, int], float]:
    """pgr_dijkstra over ``routing_edges`` on one connection (seeing its transaction's rows)."""
    values = ",".join(f"({a},{b})" for a, b in pairs)
    query = sa.text(
        "SELECT start_vid, end_vid, agg_cost FROM pgr_dijkstra(:edges, "
        f"'SELECT * FROM (VALUES {values}) AS t(source, target)', directed => true) "
        "WHERE edge = -1"
    )
    rows = conn.execute(query, {"edges": edges_sql("car", closed)}).all()
    return {(int(a), int(b)): float(c) for a, b, c in rows}


@pytest.mark.malta
@pytest.mark.parametrize("faster", [False, True], ids=["slower", "slower-and-faster"])
def test_malta_routes_with_live_speeds_equal_pgr_dijkstra(
    malta_network: RoadNetwork, malta: str, faster: bool
) -> None:
    network = malta_network
    pairs = random_pairs(network, ROUTES, seed=31 + faster)
    rng = np.random.default_rng(32)
    # slow the roads in the middle of 300 routes (and 500 random ones); some faster than free
    # flow too, which the hierarchy built on free-flow costs cannot answer for
    slow = set(rng.choice(len(network.edge_id), 500).tolist())
    for a, b in pairs[:300]:
        found = network.shortest([(network.node_index[a], 0.0)], [(network.node_index[b], 0.0)])
        if found is not None and found[3]:
            slow.add(found[3][len(found[3]) // 2][0])
    assert network.free_flow_kmh is not None
    speeds = {str(network.road_id[e]): float(network.free_flow_kmh[e]) / 4 for e in slow}
    if faster:
        for e in rng.choice(len(network.edge_id), 200):
            speeds[str(network.road_id[e])] = float(network.free_flow_kmh[e]) * 1.5
    live = network.with_live_speeds(speeds)
    assert live._agrees()[1] is faster  # costs fell: the hierarchy is not used
    with get_engine(malta).connect() as conn, conn.begin() as transaction:
        conn.execute(
            sa.text("INSERT INTO live_speeds (road_id, speed_kmh) VALUES (:road, :speed)"),
            [{"road": road, "speed": speed} for road, speed in speeds.items()],
        )
        oracle = pgr_costs_in(conn, pairs)
        transaction.rollback()  # the cached database stays as imported
    assert_equal_to_oracle(live, pairs, oracle)


@pytest.mark.malta
def test_malta_point_routes_equal_a_full_search(malta_network: RoadNetwork) -> None:
    network = malta_network
    rng = np.random.default_rng(41)
    checked = 0
    while checked < 150:
        a, b = (
            (float(rng.uniform(14.35, 14.56)), float(rng.uniform(35.83, 35.95))) for _ in range(2)
        )
        try:
            trip = route(network, a, b)
        except Exception:  # in the sea: not this test's concern
            continue
        start, end = network.snap(*a), network.snap(*b)
        times, _, _ = network.search(network.exits(start))
        options = [times[node] + offset for node, offset in network.entries(end)]
        direct = network.along(start, end)
        if direct is not None:
            options.append(direct[0])
        expected = min(options)
        if math.isinf(expected):
            assert trip is None
        else:
            assert trip is not None
            assert trip.duration_s == pytest.approx(expected, abs=1e-6)
            assert trip.steps[0].maneuver == "depart" and trip.steps[-1].maneuver == "arrive"
        checked += 1


def fire_stations(url: str) -> list[tuple[float, float]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT ST_X(geom), ST_Y(geom) FROM resources "
                "WHERE kind = 'fire_station' AND valid_to IS NULL ORDER BY id"
            )
        ).all()
    return [(float(x), float(y)) for x, y in rows]


@pytest.mark.malta
def test_malta_nearest_units_equal_a_full_reverse_search(malta: str) -> None:
    network = RoadNetwork.load(profile="emergency", url=malta)
    with get_engine(malta).connect() as conn:
        resources = [
            {"id": i, "kind": k, "name": n, "lon": float(x), "lat": float(y)}
            for i, k, n, x, y in conn.execute(
                sa.text(
                    "SELECT id, kind, name, ST_X(geom), ST_Y(geom) FROM resources "
                    "WHERE valid_to IS NULL ORDER BY id"
                )
            )
        ]
    assert len(resources) == 81  # 9 fire stations, 18 hospitals, 54 police stations
    rng = np.random.default_rng(51)
    for edge in rng.choice(len(network.edge_id), 40):
        incident = network.geometry[edge].interpolate(0.3, normalized=True).coords[0]
        units = nearest_units(network, incident, resources, k=3)
        # every resource's time by one full search backwards from the incident
        end = network.snap(*incident)
        times, _, _ = network.search(network.entries(end), reverse=True)
        expected = []
        for resource in resources:
            start = network.snap(resource["lon"], resource["lat"])
            options = [times[node] + offset for node, offset in network.exits(start)]
            direct = network.along(start, end)
            if direct is not None:
                options.append(direct[0])
            travel = min(options)
            if math.isfinite(travel):
                total = travel + TURNOUT_S.get(resource["kind"], 0.0)
                expected.append((total, str(resource["id"]), travel))
        expected.sort()
        assert [u.id for u in units] == [e[1] for e in expected[:3]]
        for unit, (total, _, travel) in zip(units, expected, strict=False):
            assert unit.travel_s == pytest.approx(travel, abs=1e-6)
            assert unit.total_s == pytest.approx(total, abs=1e-6)


def to_metric(network: RoadNetwork, geometry: shapely.Geometry) -> shapely.Geometry:
    return shapely.transform(
        geometry, lambda xy: np.column_stack(network.to_metric.transform(xy[:, 0], xy[:, 1]))
    )


@pytest.mark.malta
def test_malta_service_areas_keep_their_guarantees(malta: str) -> None:
    network = RoadNetwork.load(profile="emergency", url=malta)
    stations = fire_stations(malta)
    assert len(stations) == 9
    for facilities in ([stations[0]], stations):
        areas = service_areas(network, facilities, [4, 8, 12])
        polygons = [to_metric(network, a.polygon) for a in areas]
        for inner, outer in itertools.pairwise(polygons):  # nested
            assert inner.difference(outer).area < 1.0  # m²
        for area, polygon in zip(areas, polygons, strict=True):
            shapely.prepare(polygon)
            pieces = shapely.get_parts(to_metric(network, area.reached))
            assert shapely.length(pieces).sum() == pytest.approx(area.reached_length_m, rel=1e-6)
            # at least 99 % of the reached length lies inside: a segment counts when its two
            # ends and its middle are in the polygon (or on its boundary)
            xy, index = shapely.get_coordinates(pieces, return_index=True)
            same = index[1:] == index[:-1]
            a, b = xy[:-1][same], xy[1:][same]
            inside = np.ones(len(a), dtype=bool)
            for points in (a, b, (a + b) / 2):
                inside &= shapely.intersects_xy(polygon, points[:, 0], points[:, 1])
            lengths = np.hypot(*(b - a).T)
            assert lengths[inside].sum() >= 0.99 * lengths.sum()
        assert areas[-1].reached_length_m > 300_000  # 12 min reach a good part of the island
