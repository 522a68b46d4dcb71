"""The analysts' facade on the sample city."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient

import twin
from api.app import create_app
from layers.catalog import LAYERS
from layers.database import get_engine
from layers.errors import MissingInputError
from layers.ingest import IngestError
from layers.settings import TwinSettings
from tests.assertions import problem, sql_scalar
from tests.conftest import SAMPLE
from twin.sample import load_sample


def test_layers_lists_every_layer_with_its_count(sample_db: str) -> None:
    city = twin.connect(sample_db)
    table = city.layers()
    assert list(table["layer"]) == [
        "roads",
        "intersections",
        "signals",
        "pipelines",
        "pipe_nodes",
        "power_lines",
        "power_nodes",
        "cameras",
        "resources",
        "buildings",
        "districts",
        "incidents",
        "closures",
    ]
    for row in table.itertuples():
        assert row.features == sql_scalar(sample_db, f"SELECT count(*) FROM {row.layer}") > 0
        assert row.features == len(
            json.loads((SAMPLE / f"{row.layer}.geojson").read_text())["features"]
        )


def test_layer_with_bbox_equals_sql(sample_db: str) -> None:
    city = twin.connect(sample_db)
    bbox = (7.415, 43.728, 7.425, 43.736)
    roads = city.layer("roads", bbox=bbox)
    expected = sql_scalar(
        sample_db,
        "SELECT count(*) FROM roads WHERE valid_to IS NULL AND ST_Intersects(geom, ST_MakeEnvelope(7.415, 43.728, 7.425, 43.736, 4326))",
    )
    assert isinstance(roads, gpd.GeoDataFrame) and roads.crs == "EPSG:4326"
    assert 0 < len(roads) == expected < len(city.layer("roads"))
    box = shapely.box(*bbox)
    assert all(g.intersects(box) for g in roads.geometry)


def test_bbox_with_min_above_max_is_refused(sample_db: str) -> None:
    with pytest.raises(ValueError, match="minimum above its maximum"):
        twin.connect(sample_db).layer("roads", bbox=(7.43, 43.72, 7.41, 43.74))


def test_at_a_moment_before_loading_is_empty(sample_db: str) -> None:
    city = twin.connect(sample_db)
    assert city.layer("cameras", at="2000-01-01T00:00:00").empty
    assert city.layers(at="2000-01-01")["features"].sum() == 0


def test_loading_the_sample_again_is_skipped(sample_db: str) -> None:
    assert load_sample(directory=SAMPLE, url=sample_db) == []
    reports = load_sample(directory=SAMPLE, url=sample_db, force=True)
    assert len(reports) == len(LAYERS)  # one per layer
    assert all(r.added == r.changed == r.retired == 0 for r in reports)


def test_attributes_and_props_reach_the_analyst(sample_db: str) -> None:
    buildings = twin.connect(sample_db).layer("buildings")
    features = json.loads((SAMPLE / "buildings.geojson").read_text())["features"]
    # the sample's file: the 2023 census (38,367), shared out by floor area
    assert buildings["population"].sum() == sum(
        f["properties"].get("population") or 0 for f in features
    )
    assert len(buildings) == len(features)
    assert buildings["height_m"].notna().all()
    assert all("osm" in p and "derived" in p for p in buildings["props"])


def test_a_failed_sample_load_writes_nothing(empty_db: str, tmp_path: Path) -> None:
    for source in SAMPLE.glob("*.geojson"):
        shutil.copy(source, tmp_path / source.name)
    closures = json.loads((tmp_path / "closures.geojson").read_text())
    del closures["features"][0]["properties"]["kind"]
    (tmp_path / "closures.geojson").write_text(json.dumps(closures))
    with pytest.raises(
        IngestError, match=r"closures\.geojson: feature 1 \([^)]+\): field 'kind': required"
    ):
        load_sample(directory=tmp_path, url=empty_db)
    assert twin.connect(empty_db).layers()["features"].sum() == 0


def test_road_graph_is_the_routing_graph(sample_db: str) -> None:
    import networkx as nx

    from routing import RoadNetwork
    from tests.routing.oracle import pgr_costs

    graph = twin.connect(sample_db).road_graph(profile="car")
    network = RoadNetwork.load(profile="car", url=sample_db)
    assert graph.number_of_nodes() == len(network.node_ids)
    pairs = [(int(a), int(b)) for a, b in zip(network.node_ids[:30], network.node_ids[-30:])]
    oracle = pgr_costs(sample_db, "car", pairs)
    reachable = 0
    for a, b in pairs:
        try:
            cost = nx.shortest_path_length(graph, a, b, weight="cost")
        except nx.NetworkXNoPath:
            assert (a, b) not in oracle
            continue
        assert cost == pytest.approx(oracle[(a, b)], abs=1e-6)
        reachable += 1
    # pgr_dijkstra answers only the pairs it can join: the two must agree on which those are
    assert reachable == len(oracle) > 0


# --- no silent emptiness ------------------------------------------------------------------


def test_district_stats_of_the_sample_city_have_no_notes(sample_db: str) -> None:
    stats = twin.connect(sample_db).district_stats(cover=("fire_station", 3))
    assert stats.attrs["notes"] == []
    finest = stats[stats["level"] == stats["level"].max()]
    assert finest["fire_station_3min_population_share"].between(0, 1).all()


def test_district_stats_say_what_is_missing(empty_db: str) -> None:
    load_sample(directory=SAMPLE, url=empty_db)
    city = twin.connect(empty_db)
    with get_engine(empty_db).begin() as conn:
        conn.execute(sa.text("UPDATE buildings SET population = NULL"))
    # no population: the coverage weighs buildings, under a column that says so
    stats = city.district_stats(cover=("fire_station", 3))
    assert "fire_station_3min_population_share" not in stats
    finest = stats[stats["level"] == stats["level"].max()]
    assert finest["fire_station_3min_building_share"].between(0, 1).all()
    assert finest["fire_station_3min_building_share"].gt(0).any()
    (note,) = stats.attrs["notes"]
    assert note.startswith("no building has a population")
    # no fire station: the figures stand, the coverage column is empty and says why
    with get_engine(empty_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM resources WHERE kind = 'fire_station'"))
    stats = city.district_stats(cover=("fire_station", 3))
    assert stats["fire_station_3min_population_share"].isna().all()
    assert len(stats) == sql_scalar(empty_db, "SELECT count(*) FROM districts")
    (note,) = stats.attrs["notes"]
    assert note.startswith(
        "fire_station_3min_population_share is empty: no resources of kind 'fire_station' loaded"
    )
    # no districts: refused, saying how to add them, by the facade and by the API
    with get_engine(empty_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM districts"))
    with pytest.raises(MissingInputError, match="no districts loaded") as raised:
        city.district_stats()
    assert "twin ingest districts FILE" in str(raised.value)
    assert "twin city init --district-grid 500" in str(raised.value)
    with TestClient(create_app(TwinSettings(database_url=empty_db))) as client:
        body = problem(client.get("/onemap/districts"), 409, "districts")
    assert body["detail"] == str(raised.value)


def test_an_empty_city_names_what_is_missing(empty_db: str) -> None:
    city = twin.connect(empty_db)
    with pytest.raises(MissingInputError, match="no districts loaded"):
        city.district_stats()
    with pytest.raises(MissingInputError, match="no resources of kind 'hospital' loaded"):
        city.coverage(kind="hospital")
    with pytest.raises(MissingInputError, match="no water pipelines loaded"):
        city.outage("water")
    with pytest.raises(MissingInputError, match="no utility lines loaded"):
        city.isolate((7.42, 43.73))
