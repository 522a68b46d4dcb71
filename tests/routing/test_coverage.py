"""Coverage per district agrees with routes and with pgRouting, and the greedy sites are the
best ones a brute force over the same candidates finds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import twin
from api.app import create_app
from layers.database import get_engine
from layers.errors import MissingInputError
from layers.settings import TwinSettings, get_settings
from routing import RoutingError, route
from routing.coverage import MAX_CANDIDATES, OUTSIDE, Coverage
from routing.network import MAX_SNAP_M
from tests.assertions import problem
from tests.conftest import SAMPLE
from tests.routing.oracle import edge_rows, pgr_driving_times, postgis_snaps
from twin.sample import load_sample

MINUTES = 3
#: A point this close (as a fraction) to the end of a one-way edge stands on its target node.
AT_END = 1e-9


@pytest.fixture(scope="module")
def result(sample_db: str):
    return twin.connect(sample_db).coverage(kind="fire_station", minutes=MINUTES, suggest=2)


@dataclass
class Oracle:
    """Coverage computed without the engine: PostGIS snaps, pgRouting's driving distances."""

    limit_s: float
    arrival_s: np.ndarray  # seconds from the nearest station to each building (inf: beyond)
    candidates: list[int]  # node ids, as the greedy spreads them
    reach: np.ndarray  # candidates x buildings: reached within the limit from the candidate
    population: np.ndarray
    nodes: dict[int, tuple[float, float]]  # the intersections layer: node id -> (lon, lat)


@pytest.fixture(scope="module")
def oracle(sample_db: str, result) -> Oracle:
    coverage, _ = result
    limit = coverage.minutes * 60
    city = twin.connect(sample_db)
    network = city.router.network("emergency")  # only for the closures active now
    closed = [int(i) for i in network.edge_id[network.closed]]
    edges = edge_rows(sample_db, "emergency", closed)
    nodes = sorted({n for source, target, _, _ in edges.values() for n in (source, target)})
    position = {n: i for i, n in enumerate(nodes)}
    srid = int(get_settings().metric_crs.removeprefix("EPSG:"))
    buildings = city.layer("buildings")  # the order of the coverage's arrays
    with get_engine(sample_db).connect() as conn:
        surface = {  # where a building stands: PostGIS's point on its surface
            i: (float(x), float(y))
            for i, x, y in conn.execute(
                sa.text(
                    "SELECT id, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
                    "FROM buildings WHERE valid_to IS NULL"
                )
            )
        }
        stations = conn.execute(
            sa.text(
                "SELECT ST_X(geom), ST_Y(geom) FROM resources "
                "WHERE valid_to IS NULL AND kind = 'fire_station' ORDER BY id"
            )
        ).all()
        intersections = {
            int(n): (float(x), float(y))
            for n, x, y in conn.execute(
                sa.text(
                    "SELECT node_id, ST_X(geom), ST_Y(geom) FROM intersections "
                    "WHERE valid_to IS NULL"
                )
            )
        }
    snap = dict(srid=srid, max_distance_m=MAX_SNAP_M, closed=closed)
    found = postgis_snaps(sample_db, "emergency", [surface[i] for i in buildings["id"]], **snap)
    at = [spot for spot in found if spot is not None]
    assert len(at) == len(buildings)  # every building of the sample stands by a road

    def arrival(times: np.ndarray) -> np.ndarray:
        """Seconds to each building given seconds to each node (one row per start)."""
        out = np.full((times.shape[0], len(at)), np.inf)
        for j, (edge, fraction) in enumerate(at):
            source, target, cost, reverse = edges[edge]
            best = times[:, position[source]] + fraction * cost
            if reverse >= 0:
                best = np.minimum(best, times[:, position[target]] + (1 - fraction) * reverse)
            elif fraction >= 1 - AT_END:
                best = np.minimum(best, times[:, position[target]])
            out[:, j] = best
        return out

    def table(rows: list[dict[int, float]]) -> np.ndarray:
        times = np.full((len(rows), len(nodes)), np.inf)
        for r, row in enumerate(rows):
            for node, seconds in row.items():
                times[r, position[node]] = seconds
        return times

    # the stations: leave their edge either way (one-way: only ahead), then drive
    placed = [
        spot
        for spot in postgis_snaps(sample_db, "emergency", [tuple(s) for s in stations], **snap)
        if spot is not None
    ]
    assert len(placed) == len(stations) > 0
    exits = []
    for edge, fraction in placed:
        source, target, cost, reverse = edges[edge]
        exits.append((target, (1 - fraction) * cost))
        if reverse >= 0:
            exits.append((source, fraction * reverse))
        elif fraction <= AT_END:
            exits.append((source, 0.0))
    driven = pgr_driving_times(sample_db, "emergency", sorted({n for n, _ in exits}), limit, closed)
    from_stations = np.min(table([driven[n] for n, _ in exits]) + [[o] for _, o in exits], axis=0)
    arrival_s = arrival(from_stations[np.newaxis])[0]
    for edge, fraction in placed:
        _, _, cost, reverse = edges[edge]
        for j, spot in enumerate(at):  # a building on a station's own edge: the direct trip
            if spot[0] == edge:
                direct = (
                    (spot[1] - fraction) * cost
                    if spot[1] >= fraction
                    else (fraction - spot[1]) * reverse
                    if reverse >= 0
                    else math.inf
                )
                arrival_s[j] = min(arrival_s[j], direct)
    # the candidate sites: every node of an open edge, evenly thinned to MAX_CANDIDATES
    candidates = nodes[:: math.ceil(len(nodes) / MAX_CANDIDATES)]
    driven = pgr_driving_times(sample_db, "emergency", candidates, limit, closed)
    reach = arrival(table([driven[c] for c in candidates])) <= limit
    population = buildings["population"].fillna(0).to_numpy(dtype=float)
    return Oracle(limit, arrival_s, candidates, reach, population, intersections)


def sample_buildings() -> list[dict]:
    """The buildings' properties as the sample city's file holds them."""
    features = json.loads((SAMPLE / "buildings.geojson").read_text())["features"]
    return [feature["properties"] for feature in features]


def test_districts_add_up_to_the_city(result) -> None:
    coverage, _ = result
    table = coverage.districts
    buildings = sample_buildings()
    people = sum(b.get("population") or 0 for b in buildings)
    assert table["buildings"].sum() == coverage.total["buildings"] == len(buildings)
    assert table["covered_buildings"].sum() == coverage.total["covered_buildings"]
    assert table["population"].sum() == pytest.approx(coverage.total["population"]) == people
    assert table["covered_population"].sum() == pytest.approx(coverage.total["covered_population"])
    assert 0 < coverage.total["population_share"] < 1
    assert ((table["building_share"] >= 0) & (table["building_share"] <= 1)).all()


def test_every_building_time_equals_pgrouting(result, oracle: Oracle) -> None:
    coverage, _ = result
    covered = oracle.arrival_s <= oracle.limit_s
    # beyond the limit the engine's times are inf or the time past it: only "within" is defined
    assert np.array_equal(coverage.times_s <= oracle.limit_s, covered)
    assert 0 < covered.sum() < len(covered)  # 3 minutes reach some buildings, not all
    assert coverage.times_s[covered] == pytest.approx(oracle.arrival_s[covered], abs=1e-6)
    assert coverage.total["covered_buildings"] == covered.sum()
    assert coverage.total["covered_population"] == pytest.approx(oracle.population[covered].sum())


def test_building_times_equal_routes_from_the_nearest_station(
    result, oracle: Oracle, sample_db: str
) -> None:
    coverage, _ = result
    city = twin.connect(sample_db)
    buildings = city.layer("buildings")
    stations = city.layer("resources").query("kind == 'fire_station'")
    network = city.router.network("emergency")
    sample = np.random.default_rng(2).choice(len(buildings), 25, replace=False)
    checked = {"within": 0, "beyond": 0}
    for i in sample:
        point = buildings.geometry.iloc[i].representative_point()
        trips = [route(network, (s.x, s.y), (point.x, point.y)) for s in stations.geometry]
        best = min((t.duration_s for t in trips if t is not None), default=np.inf)
        if coverage.times_s[i] <= oracle.limit_s:
            assert coverage.times_s[i] == pytest.approx(best, abs=1e-6)
            checked["within"] += 1
        else:  # the search stops at the limit
            assert best > oracle.limit_s
            checked["beyond"] += 1
    assert checked["within"] == (oracle.arrival_s[sample] <= oracle.limit_s).sum() > 0
    assert checked["beyond"] == len(sample) - checked["within"]


def test_more_minutes_cover_more(sample_db: str) -> None:
    city = twin.connect(sample_db)
    shares = [
        city.coverage(kind="fire_station", minutes=m)[0].total["population_share"]
        for m in (1, 2, 4)
    ]
    assert shares == sorted(shares) and shares[0] < shares[-1]


def test_greedy_sites_are_the_best_by_brute_force(result, oracle: Oracle) -> None:
    """Each suggested site adds as many people as the best candidate does, given the sites
    before it (any of equally good candidates may be chosen)."""
    coverage, sites = result
    assert len(sites) == 2
    covered = oracle.arrival_s <= oracle.limit_s
    total = oracle.population.sum()
    for rank, site in enumerate(sites):
        gain = (oracle.reach & ~covered) @ oracle.population
        best = gain.max()
        assert best > 0, rank  # so the greedy must suggest this site
        assert site["added_population"] == best, rank
        ties = {oracle.candidates[i] for i in np.flatnonzero(gain == best)}
        assert site["node_id"] in ties, (rank, site["node_id"], sorted(ties))
        chosen = oracle.reach[oracle.candidates.index(site["node_id"])]
        assert site["added_buildings"] == (chosen & ~covered).sum(), rank
        covered = covered | chosen
        assert site["population_share"] == pytest.approx(oracle.population[covered].sum() / total)
        assert (site["lon"], site["lat"]) == pytest.approx(oracle.nodes[site["node_id"]], abs=1e-7)
    assert sites[0]["population_share"] > coverage.total["population_share"]


def test_bad_parameters(sample_db: str) -> None:
    city = twin.connect(sample_db)
    with pytest.raises(RoutingError, match="minutes must be more than 0"):
        city.coverage(minutes=0)
    with pytest.raises(MissingInputError, match="no resources of kind 'depot' loaded") as raised:
        city.coverage(kind="depot")
    assert raised.value.parameter == "kind" and raised.value.missing == "resources"
    assert "twin ingest resources FILE" in str(raised.value)
    with pytest.raises(RoutingError, match="unknown resource kind 'fire_stations'"):
        city.coverage(kind="fire_stations")


# --- no silent emptiness ------------------------------------------------------------------


def test_the_sample_city_weighs_people_and_has_nothing_to_say(
    result: tuple[Coverage, list[dict[str, Any]]],
) -> None:
    coverage, sites = result
    assert coverage.weight == coverage.total["weight"] == "population"
    assert coverage.notes == () and coverage.total["notes"] == []
    assert (coverage.districts["share"] == coverage.districts["population_share"]).all()
    assert len(coverage.districts) > 1  # the wards, and the buildings beyond them
    assert all(site["share"] == site["population_share"] for site in sites)


@pytest.fixture
def bare_city(empty_db: str) -> str:
    """The sample city with no population in any building and no districts."""
    load_sample(directory=SAMPLE, url=empty_db)
    with get_engine(empty_db).begin() as conn:
        conn.execute(sa.text("UPDATE buildings SET population = NULL"))
        conn.execute(sa.text("DELETE FROM districts"))
    return empty_db


def test_no_population_weighs_buildings_and_no_districts_say_so(bare_city: str) -> None:
    city = twin.connect(bare_city)
    coverage, sites = city.coverage(kind="fire_station", minutes=MINUTES, suggest=2)
    assert coverage.weight == coverage.total["weight"] == "buildings"
    people, districts = coverage.notes
    assert coverage.total["notes"] == [people, districts]
    assert people.startswith("no building has a population") and "weight='buildings'" in people
    assert "estimate_population" in people
    assert districts.startswith(f"no districts loaded: the one row {OUTSIDE!r}")
    assert "twin ingest districts FILE" in districts
    assert "twin city init --district-grid 500" in districts
    table = coverage.districts
    assert list(table["district"]) == [OUTSIDE]
    assert table["population_share"].isna().all() and coverage.total["population_share"] is None
    assert table["share"].iloc[0] == coverage.total["share"] == coverage.total["building_share"]
    assert 0 < coverage.total["share"] < 1
    # the greedy suggests by buildings: each site adds the most uncovered buildings
    covered = coverage.times_s <= MINUTES * 60
    assert len(sites) == 2
    assert sites[0]["added_buildings"] >= sites[1]["added_buildings"] > 0
    assert all(site["population_share"] is None for site in sites)
    added = covered.sum() + sites[0]["added_buildings"] + sites[1]["added_buildings"]
    assert sites[1]["share"] == pytest.approx(added / len(covered))
    # the API says the same, in the total
    with TestClient(create_app(TwinSettings(database_url=bare_city))) as client:
        answer = client.get(
            "/routing/coverage", params={"kind": "fire_station", "minutes": MINUTES, "suggest": 1}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["total"]["weight"] == "buildings"
        assert body["total"]["notes"] == [people, districts]
        assert body["suggested_sites"][0]["node_id"] == sites[0]["node_id"]
        problem(client.get("/routing/coverage", params={"kind": "depot"}), 409, "kind")
