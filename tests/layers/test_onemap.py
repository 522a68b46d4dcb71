"""One-map questions, checked against direct PostGIS SQL and geopandas."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely

from layers.catalog import LAYERS
from layers.errors import MissingInputError
from layers.onemap import (
    OneMapError,
    along,
    along_geojson,
    around,
    around_geojson,
    district_stats,
    within,
    within_geojson,
)
from layers.queries import read_layer
from tests.assertions import sql_scalar

CASINO = (7.4280, 43.7395)
PORT = (7.4220, 43.7350)


@pytest.mark.parametrize(("point", "radius"), [(CASINO, 1000.0), (PORT, 250.0), (CASINO, 40.0)])
def test_counts_equal_direct_sql(sample_db: str, point: tuple[float, float], radius: float):
    result = around(point, radius, url=sample_db)
    assert set(result.features) == set(LAYERS)
    assert sum(result.summary["counts"].values()) > 0  # each circle holds something to count
    for layer, frame in result.features.items():
        expected = sql_scalar(
            sample_db,
            f"SELECT count(*) FROM {layer} WHERE valid_to IS NULL AND ST_DWithin("
            "geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :r)",
            lon=point[0],
            lat=point[1],
            r=radius,
        )
        assert len(frame) == expected == result.summary["counts"][layer], layer
        assert frame["distance_m"].is_monotonic_increasing
        assert (frame["distance_m"] <= radius * 1.001).all()


def test_lengths_and_population_against_geopandas(sample_db: str) -> None:
    result = around(CASINO, 500.0, layers=["pipelines", "buildings"], url=sample_db)
    pipes = read_layer("pipelines", url=sample_db).to_crs(32632)
    centre = gpd.GeoSeries([shapely.Point(CASINO)], crs=4326).to_crs(32632).iloc[0]
    circle = centre.buffer(500.0, quad_segs=64)
    for network in ("water", "sewer", "gas"):
        mine = pipes[pipes["network"] == network]
        expected = mine.geometry.intersection(circle).length.sum()
        got = result.summary["lengths_m"]["pipelines"].get(network, 0.0)
        assert got == pytest.approx(expected, rel=2e-3, abs=0.5), network
    population = sql_scalar(
        sample_db,
        "SELECT sum(population) FROM buildings WHERE valid_to IS NULL AND ST_DWithin("
        "geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, 500)",
        lon=CASINO[0],
        lat=CASINO[1],
    )
    assert result.summary["buildings"]["population"] == population


def test_within_and_along(sample_db: str) -> None:
    box = shapely.box(7.420, 43.730, 7.426, 43.736)
    inside = within(box, layers=["buildings", "cameras"], url=sample_db)
    expected = sql_scalar(
        sample_db,
        "SELECT count(*) FROM buildings WHERE valid_to IS NULL AND "
        "ST_Intersects(geom, ST_MakeEnvelope(7.420, 43.730, 7.426, 43.736, 4326))",
    )
    assert len(inside.features["buildings"]) == expected > 0
    assert (inside.features["buildings"]["distance_m"] == 0).all()
    street = shapely.LineString([(7.4200, 43.7330), (7.4260, 43.7350)])
    near = along(street, 30.0, layers=["roads", "pipe_nodes"], url=sample_db)
    expected = sql_scalar(
        sample_db,
        "SELECT count(*) FROM pipe_nodes WHERE valid_to IS NULL AND ST_DWithin(geom::geography, "
        "ST_GeomFromText('LINESTRING(7.42 43.733, 7.426 43.735)', 4326)::geography, 30)",
    )
    assert len(near.features["pipe_nodes"]) == expected > 0


def test_filters_and_as_of(sample_db: str) -> None:
    tall = around(
        CASINO, 1000.0, layers=["buildings"], filters={"buildings": "height_m > 30"}, url=sample_db
    )
    frame = tall.features["buildings"]
    assert len(frame) > 0 and (frame["height_m"] > 30).all()
    before = around(CASINO, 1000.0, layers=["roads"], at="2000-01-01T00:00:00Z", url=sample_db)
    assert before.summary["counts"]["roads"] == 0


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda url: around(CASINO, 0, url=url), "radius_m"),
        (lambda url: around(CASINO, -5, url=url), "radius_m"),
        (lambda url: around(CASINO, 1e9, url=url), "radius_m"),
        (lambda url: around(CASINO, float("nan"), url=url), "radius_m"),
        (lambda url: around((200.0, 10.0), 100, url=url), "point"),
        (lambda url: around(CASINO, 100, layers=["lakes"], url=url), "layers"),
        (
            lambda url: around(CASINO, 100, layers=["roads"], filters={"buildings": "x"}, url=url),
            "filter",
        ),
        (lambda url: around(CASINO, 100, filters={"roads": "nosuch = 1"}, url=url), "filter"),
        (
            lambda url: within(shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]), url=url),
            "geometry",
        ),
        (lambda url: within(shapely.box(-10, -10, 10, 10), url=url), "geometry"),
        (lambda url: within(shapely.Point(7.4, 43.7), url=url), "geometry"),
        (
            lambda url: along(shapely.LineString([(7.42, 43.73), (7.43, 43.74)]), 0, url=url),
            "buffer_m",
        ),
    ],
)
def test_bad_questions_name_the_parameter(sample_db: str, call, parameter: str) -> None:
    with pytest.raises(OneMapError) as caught:
        call(sample_db)
    assert caught.value.parameter == parameter


def test_district_stats_equal_direct_sql(sample_db: str) -> None:
    stats = district_stats(url=sample_db)
    assert len(stats) == 10  # Monaco (admin level 8) and its 9 wards (level 10)
    monaco = stats[stats["level"] == 8].iloc[0]
    water = sql_scalar(
        sample_db,
        "SELECT sum(ST_Length(ST_Intersection(p.geom, d.geom)::geography)) FROM pipelines p, "
        "districts d WHERE p.valid_to IS NULL AND d.valid_to IS NULL AND d.id = :id "
        "AND p.network = 'water' AND ST_Intersects(p.geom, d.geom)",
        id=monaco["id"],
    )
    assert monaco["pipelines.water_m"] == pytest.approx(water)
    hydrants = sql_scalar(
        sample_db,
        "SELECT count(*) FROM pipe_nodes n, districts d WHERE n.valid_to IS NULL "
        "AND d.valid_to IS NULL AND d.id = :id AND n.kind = 'hydrant' AND ST_Intersects(n.geom, d.geom)",
        id=monaco["id"],
    )
    assert monaco["pipe_nodes.hydrant_count"] == hydrants
    wards = stats[stats["level"] == 10]
    # every building's population counts in the ward holding its point on surface
    assert wards["building_population"].sum() <= monaco["building_population"] + 1
    assert np.isfinite(stats.select_dtypes("number").to_numpy()).all()


def test_a_limit_keeps_the_nearest_and_the_whole_summary(sample_db: str) -> None:
    everything = around(CASINO, 600.0, url=sample_db)
    nearest = around(CASINO, 600.0, url=sample_db, limit=7)
    assert nearest.summary == everything.summary
    for layer, frame in nearest.features.items():
        full = everything.features[layer]
        assert len(frame) == min(7, len(full))
        assert list(frame["id"]) == list(full["id"][: len(frame)])
        assert list(frame.columns) == list(full.columns)
        assert np.allclose(frame["distance_m"], full["distance_m"][: len(frame)])
    with pytest.raises(OneMapError):
        around(CASINO, 600.0, url=sample_db, limit=-1)


def test_district_stats_without_districts_say_how_to_add_them(empty_db: str) -> None:
    with pytest.raises(MissingInputError) as raised:
        district_stats(url=empty_db)
    error = raised.value
    assert error.missing == error.parameter == "districts"
    assert error.status == 409
    assert str(error).startswith("no districts loaded")
    assert "twin ingest districts FILE" in str(error)
    assert "twin city init --district-grid 500" in str(error)


def test_district_stats_before_the_districts_existed_say_so(sample_db: str) -> None:
    with pytest.raises(MissingInputError, match="no districts loaded as of 2000-01-01"):
        district_stats(at="2000-01-01T00:00:00Z", url=sample_db)


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda url: around_geojson(CASINO, 100, limit=-1, url=url), "limit"),
        (lambda url: around_geojson(CASINO, 100, limit=10_001, url=url), "limit"),
        (lambda url: around_geojson(CASINO, 0, url=url), "radius_m"),
        (lambda url: around_geojson((7.4, 95.0), 100, url=url), "point"),
        (lambda url: around_geojson(CASINO, 100, layers=["lakes"], url=url), "layers"),
        (lambda url: within_geojson(shapely.Point(7.4, 43.7), url=url), "geometry"),
        (
            lambda url: along_geojson(
                shapely.LineString([(7.42, 43.73), (7.43, 43.74)]), 0, url=url
            ),
            "buffer_m",
        ),
    ],
)
def test_bad_questions_for_geojson_name_the_parameter(sample_db: str, call, parameter: str) -> None:
    with pytest.raises(OneMapError) as caught:
        call(sample_db)
    assert caught.value.parameter == parameter


def test_geojson_answer_is_the_library_answer(sample_db: str) -> None:
    body = json.loads(around_geojson(PORT, 250.0, limit=3, url=sample_db))
    expected = around(PORT, 250.0, url=sample_db)
    assert body["summary"] == expected.summary
    for layer, frame in expected.features.items():
        collection = body["layers"][layer]
        assert collection["numberMatched"] == len(frame)
        got = [f["properties"]["id"] for f in collection["features"]]
        assert got == list(frame["id"][:3])
        assert [f["properties"]["distance_m"] for f in collection["features"]] == list(
            frame["distance_m"][:3]
        )
