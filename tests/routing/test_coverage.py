"""Coverage per district agrees with routes, and the greedy site adds what it says."""

from __future__ import annotations

import numpy as np
import pytest

import twin
from routing import RoutingError, route


@pytest.fixture(scope="module")
def result(sample_db: str):
    return twin.connect(sample_db).coverage(kind="fire_station", minutes=3, suggest=2)


def test_districts_add_up_to_the_city(result) -> None:
    coverage, _ = result
    table = coverage.districts
    assert table["buildings"].sum() == coverage.total["buildings"] == 1605
    assert table["covered_buildings"].sum() == coverage.total["covered_buildings"]
    assert table["population"].sum() == pytest.approx(coverage.total["population"]) == 38_367
    assert 0 < coverage.total["population_share"] < 1
    assert ((table["building_share"] >= 0) & (table["building_share"] <= 1)).all()


def test_building_times_equal_routes_from_the_nearest_station(result, sample_db: str) -> None:
    coverage, _ = result
    city = twin.connect(sample_db)
    buildings = city.layer("buildings")
    stations = city.layer("resources").query("kind == 'fire_station'")
    rng = np.random.default_rng(2)
    network = city.router.network("emergency")
    for i in rng.choice(len(buildings), 25, replace=False):
        point = buildings.geometry.iloc[i].representative_point()
        try:
            times = [route(network, (s.x, s.y), (point.x, point.y)) for s in stations.geometry]
        except RoutingError:
            assert np.isinf(coverage.times_s[i])
            continue
        best = min((t.duration_s for t in times if t is not None), default=np.inf)
        if np.isfinite(coverage.times_s[i]):
            assert coverage.times_s[i] == pytest.approx(best, abs=1e-6)
        else:  # the search stops at the limit
            assert best > coverage.minutes * 60


def test_more_minutes_cover_more(sample_db: str) -> None:
    city = twin.connect(sample_db)
    shares = [
        city.coverage(kind="fire_station", minutes=m)[0].total["population_share"]
        for m in (1, 2, 4)
    ]
    assert shares == sorted(shares) and shares[0] < shares[-1]


def test_suggested_sites_add_coverage(result, sample_db: str) -> None:
    coverage, sites = result
    assert len(sites) == 2
    assert sites[0]["added_population"] >= sites[1]["added_population"] > 0
    assert (
        sites[1]["population_share"]
        > sites[0]["population_share"]
        > coverage.total["population_share"]
    )
    expected = coverage.total["covered_population"] + sites[0]["added_population"]
    assert sites[0]["population_share"] == pytest.approx(expected / coverage.total["population"])


def test_bad_parameters(sample_db: str) -> None:
    city = twin.connect(sample_db)
    with pytest.raises(RoutingError, match="minutes must be more than 0"):
        city.coverage(minutes=0)
    with pytest.raises(RoutingError, match="there is no facility of that kind"):
        city.coverage(kind="depot")
