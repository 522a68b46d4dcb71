"""Data sources: attributions recorded with the data, credits of exactly what is loaded, and the
extent of the loaded city (robust to far outliers), on a real PostGIS."""

from __future__ import annotations

from collections.abc import Iterator

import geopandas as gpd
import pytest
import shapely
import sqlalchemy as sa

from layers.database import get_engine
from layers.ingest import ingest, ingest_frame
from layers.rasters import IngestError, ingest_raster
from layers.sources import (
    OPENSTREETMAP,
    SRTM,
    Credit,
    SourceError,
    attribution_text,
    credits,
    data_extent,
    record_source,
)
from tests.assertions import sql_scalar
from tests.conftest import SAMPLE
from twin.sample import sample_files

DEM = SAMPLE / "dem.tif"


@pytest.fixture
def store(raster_db: str) -> Iterator[str]:
    """The write database with no features, no rasters and no recorded sources."""
    with get_engine(raster_db).begin() as conn:
        conn.execute(sa.text("DELETE FROM data_sources"))
    yield raster_db


def record(database: str, /, **fields: str | None) -> None:
    """Record one source in a transaction of its own, as an import's would."""
    with get_engine(database).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            record_source(cur, **fields)  # type: ignore[arg-type]


def osm_roads(url: str, source: str = "osm", layer: str = "roads") -> None:
    """Load the sample city's roads (OpenStreetMap's) under ``source``, crediting OSM."""
    ingest(layer, sample_files()[layer], source=source, url=url)
    record(
        url,
        source=source,
        attribution=OPENSTREETMAP.attribution,
        licence=OPENSTREETMAP.licence,
        url=OPENSTREETMAP.url,
    )


def points(xy: list[tuple[float, float]], **columns: list[object]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": [f"p{i}" for i in range(len(xy))], **columns},
        geometry=[shapely.Point(x, y) for x, y in xy],
        crs="EPSG:4326",
    )


def test_record_source_is_an_upsert_in_the_callers_transaction(store: str) -> None:
    record(store, source="osm", attribution="© OSM", licence="ODbL-1.0")
    record(store, source="osm", attribution=" © OpenStreetMap contributors ", url="https://osm.org")
    row = sql_scalar(store, "SELECT row(attribution, licence, url)::text FROM data_sources")
    # the last record wins whole (the licence not given again is none now), trimmed
    assert row == '("© OpenStreetMap contributors",,https://osm.org)'
    with (
        pytest.raises(RuntimeError, match="the import failed"),
        get_engine(store).begin() as connection,
    ):
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            record_source(cur, source="survey", attribution="City survey office")
            raise RuntimeError("the import failed")
    assert sql_scalar(store, "SELECT count(*) FROM data_sources WHERE source = 'survey'") == 0


@pytest.mark.parametrize(
    ("source", "attribution", "message"),
    [
        ("", "© someone", "source: expected 1 to 200 characters"),
        ("x" * 201, "© someone", "source: expected 1 to 200 characters"),
        ("osm", "", "attribution of source 'osm': expected a credit text"),
        ("osm", "   ", "attribution of source 'osm': expected a credit text"),
    ],
)
def test_record_source_refuses_what_credits_nothing(
    store: str, source: str, attribution: str, message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        record(store, source=source, attribution=attribution)
    assert sql_scalar(store, "SELECT count(*) FROM data_sources") == 0


def test_nothing_loaded_credits_nothing_and_has_no_extent(store: str) -> None:
    record(store, source="osm", attribution=OPENSTREETMAP.attribution)  # recorded, not loaded
    assert credits(store) == []
    assert attribution_text(credits(store)) == ""
    assert data_extent(store) is None


def test_roads_from_osm_alone_credit_osm_and_never_srtm(store: str) -> None:
    osm_roads(store)
    record(store, source="sample", attribution=SRTM.attribution)  # a DEM's, none loaded
    assert credits(store) == [
        Credit(OPENSTREETMAP.attribution, "ODbL-1.0", OPENSTREETMAP.url, ("osm",))
    ]
    assert "SRTM" not in attribution_text(credits(store))


def test_a_dem_imported_with_its_attribution_is_credited_while_it_is_current(store: str) -> None:
    osm_roads(store)
    ingest_raster(
        DEM, name="dem", kind="dem", source="srtm", attribution=SRTM.attribution, url=store
    )
    assert [c.attribution for c in credits(store)] == [OPENSTREETMAP.attribution, SRTM.attribution]
    assert credits(store)[1].sources == ("srtm",)
    assert [c.attribution for c in credits(store, layers=["roads"])] == [
        OPENSTREETMAP.attribution
    ]  # a layer's credits hold no raster
    # another DEM replaces it: its source is credited, the closed version's is not
    ingest_raster(
        DEM, name="dem", kind="dem", source="lidar", attribution="City LiDAR 2024", url=store
    )
    assert [c.attribution for c in credits(store)] == [
        OPENSTREETMAP.attribution,
        "City LiDAR 2024",
    ]


def test_a_raster_with_an_empty_attribution_is_refused_and_nothing_is_written(store: str) -> None:
    with pytest.raises(IngestError, match=r"dem\.tif: field 'attribution': is empty"):
        ingest_raster(DEM, name="dem", kind="dem", attribution=" ", url=store)
    assert sql_scalar(store, "SELECT count(*) FROM rasters") == 0
    assert sql_scalar(store, "SELECT count(*) FROM data_sources") == 0


def test_sources_without_a_record_are_credited_by_their_label_and_shared_texts_once(
    store: str,
) -> None:
    osm_roads(store)
    osm_roads(store, source="osm:buildings", layer="buildings")  # another import, same credit
    ingest_frame("cameras", points([(7.42, 43.73)]), source="police-register", url=store)
    found = credits(store)
    assert [c.attribution for c in found] == [OPENSTREETMAP.attribution, "police-register"]
    assert found[0].sources == ("osm", "osm:buildings")
    assert found[1] == Credit("police-register", None, None, ("police-register",))


def test_a_source_whose_features_are_all_retired_is_no_longer_credited(store: str) -> None:
    osm_roads(store)
    ingest_frame("cameras", points([(7.42, 43.73)]), source="police-register", url=store)
    with get_engine(store).begin() as conn:
        conn.execute(sa.text("UPDATE cameras SET valid_to = clock_timestamp()"))
    assert [c.attribution for c in credits(store)] == [OPENSTREETMAP.attribution]


def test_unknown_layer_is_refused(store: str) -> None:
    with pytest.raises(KeyError, match="unknown layer 'pipes'"):
        credits(store, layers=["pipes"])


def test_the_sample_city_credits_openstreetmap_and_srtm(sample_db: str) -> None:
    found = credits(sample_db)
    assert [c.attribution for c in found] == [OPENSTREETMAP.attribution, SRTM.attribution]
    osm, srtm = found
    assert osm.licence == "ODbL-1.0" and len(osm.sources) == 13  # every layer: sample:<layer>
    assert srtm.sources == ("sample",) and srtm.licence is None  # the DEM, public domain
    # the derived and synthetic layers say what they are
    assert any("water mains" in d for d in osm.descriptions)
    assert any("synthetic" in d for d in osm.descriptions)


def test_the_extent_is_the_city_not_its_far_outliers(store: str) -> None:
    # a town of 300 roads on a 0.01° square, and 2 ways an extract carries 5 km past it
    lines = [
        shapely.LineString([(x, y), (x + 0.0005, y)])
        for x, y in ((7.40 + 0.0005 * (i % 20), 43.71 + 0.0007 * (i // 20)) for i in range(300))
    ]
    lines += [shapely.LineString([(7.455, 43.765), (7.456, 43.766)])] * 2
    frame = gpd.GeoDataFrame(
        {
            "id": [f"r{i}" for i in range(len(lines))],
            "source_node": range(len(lines)),
            "target_node": range(1, len(lines) + 1),
            "class": ["residential"] * len(lines),
        },
        geometry=lines,
        crs="EPSG:4326",
    )
    ingest_frame("roads", frame, source="osm", url=store)
    minx, miny, maxx, maxy = data_extent(store) or (0, 0, 0, 0)
    assert 7.40 <= minx < maxx <= 7.4105 and 43.71 <= miny < maxy <= 43.7205
    assert sql_scalar(store, "SELECT ST_XMax(ST_Extent(geom)) FROM roads") > 7.455  # ST_Extent


def test_with_no_roads_nor_buildings_the_extent_is_every_layers(store: str) -> None:
    ingest_frame("cameras", points([(7.41, 43.73), (7.43, 43.74)]), source="register", url=store)
    assert data_extent(store) == pytest.approx((7.4102, 43.7301, 7.4298, 43.7399), abs=1e-3)


def test_the_sample_citys_extent_lies_in_its_roads(sample_db: str) -> None:
    minx, miny, maxx, maxy = data_extent(sample_db) or (0, 0, 0, 0)
    west, south, east, north = (
        sql_scalar(sample_db, f"SELECT {f}(ST_Extent(geom)) FROM roads")
        for f in ("ST_XMin", "ST_YMin", "ST_XMax", "ST_YMax")
    )
    assert west <= minx < maxx <= east and south <= miny < maxy <= north
    assert (maxx - minx) > 0.5 * (east - west)  # the city, not a corner of it
