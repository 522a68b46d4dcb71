"""Ingest: formats, CRSs, bad input (rejected, nothing written), repairs and versioning."""

from __future__ import annotations

import importlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa

from layers.catalog import LAYERS
from layers.database import get_engine
from layers.ingest import IngestError, ingest, ingest_frame, ingest_frames
from layers.queries import read_layer
from tests.assertions import sql_scalar, table_state
from tests.conftest import SAMPLE, SHARED

ROAD = {"source_node": 1, "target_node": 2, "class": "residential", "name": "Rue Grimaldi"}


def feature(geometry: Any, **props: Any) -> dict[str, Any]:
    geom = (
        geometry
        if isinstance(geometry, dict) or geometry is None
        else shapely.geometry.mapping(geometry)
    )
    return {"type": "Feature", "properties": props, "geometry": geom}


def write_geojson(path: Path, *features: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


def line(*coords: tuple[float, float]) -> shapely.LineString:
    return shapely.LineString(coords)


def is_missing(value: Any) -> bool:
    return value is None or (not isinstance(value, list | dict) and bool(pd.isna(value)))


A, B, C = (7.420, 43.730), (7.421, 43.731), (7.422, 43.732)


@pytest.fixture
def roads_file(tmp_path: Path) -> Path:
    return write_geojson(
        tmp_path / "roads.geojson",
        feature(line(A, B), id="r1", **ROAD),
        feature(line(B, C), id="r2", **(ROAD | {"source_node": 2, "target_node": 3})),
        feature(
            line(C, A),
            id="r3",
            lanes=2,
            oneway=True,
            **(ROAD | {"source_node": 3, "target_node": 1}),
        ),
    )


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("layer_id", list(LAYERS))
def test_every_sample_layer_round_trips(empty_db: str, layer_id: str) -> None:
    path = SAMPLE / f"{layer_id}.geojson"
    report = ingest(layer_id, path, url=empty_db)
    source = gpd.read_file(path).sort_values("id").reset_index(drop=True)
    stored = read_layer(layer_id, url=empty_db).sort_values("id").reset_index(drop=True)

    assert report.added == len(source) == len(stored) > 0
    assert list(stored["id"]) == list(source["id"])
    assert all(
        s.equals_exact(o, 0) or s.equals(o) for s, o in zip(stored.geometry, source.geometry)
    )
    layer = LAYERS[layer_id]
    for name in layer.field_names:
        if name not in source.columns:
            assert stored[name].isna().all()
            continue
        for got, want in zip(stored[name], source[name]):
            if is_missing(want):
                assert is_missing(got)
            else:
                assert got == want, (layer_id, name)
    # every other property travels in props, untouched
    extra = [c for c in source.columns if c not in (*layer.field_names, "id", "geometry")]
    for column in extra:
        for props, want in zip(stored["props"], source[column]):
            if is_missing(want):
                assert column not in props
            else:
                assert props[column] == want


def test_geopackage_in_web_mercator_is_reprojected(empty_db: str, tmp_path: Path) -> None:
    roads = gpd.read_file(SAMPLE / "roads.geojson").head(50)
    path = tmp_path / "roads.gpkg"
    roads.to_crs(3857).to_file(path, layer="roads", engine="pyogrio")
    report = ingest("roads", path, url=empty_db)
    stored = read_layer("roads", url=empty_db).set_index("id").loc[roads["id"]]
    assert report.added == 50
    distances = [a.hausdorff_distance(b) for a, b in zip(stored.geometry, roads.geometry)]
    assert max(distances) < 1e-9
    assert list(stored["class"]) == list(roads["class"])


def test_zipped_shapefile_in_utm(empty_db: str, tmp_path: Path) -> None:
    cameras = gpd.read_file(SAMPLE / "cameras.geojson")[
        ["id", "heading", "fov", "range_m", "status", "geometry"]
    ]
    folder = tmp_path / "shp"
    folder.mkdir()
    cameras.to_crs(32632).to_file(folder / "cameras.shp", engine="pyogrio")
    archive = tmp_path / "cameras.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in folder.iterdir():
            zf.write(part, part.name)
    report = ingest("cameras", archive, url=empty_db)
    stored = read_layer("cameras", url=empty_db).set_index("id").loc[cameras["id"]]
    assert report.added == len(cameras) == 16  # shared/data/MANIFEST.md: 16 cameras in OSM
    assert max(a.distance(b) for a, b in zip(stored.geometry, cameras.geometry)) < 1e-7
    assert list(stored["heading"]) == list(cameras["heading"])


def test_csv_with_lon_lat_columns(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "stations.csv"
    path.write_text(
        "id,kind,name,capacity,lon,lat\n"
        "f1,fire_station,Condamine,3,7.4203,43.7349\n"
        "h1,hospital,Princesse Grace,,7.4117,43.7281\n"
    )
    ingest("resources", path, url=empty_db)
    stored = read_layer("resources", url=empty_db).set_index("id")
    assert stored.loc["f1", "capacity"] == 3
    assert stored.loc["h1", "capacity"] is pd.NA
    assert stored.loc["h1"].geometry.equals(shapely.Point(7.4117, 43.7281))


def test_csv_with_wkt_column_and_declared_crs(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "closures.csv"
    path.write_text(
        "id,kind,starts_at,wkt\n"
        'c1,works,2026-03-01T08:00:00+01:00,"LINESTRING (372000 4843000, 372100 4843050)"\n'
    )
    ingest("closures", path, crs="EPSG:32632", url=empty_db)
    stored = read_layer("closures", url=empty_db).iloc[0]
    x, y = stored.geometry.coords[0]
    assert 7.41 < x < 7.44 and 43.72 < y < 43.74  # UTM 32N (372000, 4843000) is in Monaco
    assert stored["starts_at"].isoformat() == "2026-03-01T07:00:00+00:00"


def test_osm_pbf_is_mapped_to_the_layer(empty_db: str) -> None:
    report = ingest("cameras", SHARED / "monaco" / "monaco-2025.osm.pbf", url=empty_db)
    stored = read_layer("cameras", url=empty_db)
    assert report.added == len(stored) == 16  # shared/data/MANIFEST.md: 16 cameras
    assert all(i.startswith("node/") for i in stored["id"])
    assert all(p["osm"]["man_made"] == "surveillance" for p in stored["props"])


# --- bad input: rejected with file, feature, field and reason; nothing written --------------


def rejected(url: str, layer: str, path: Path, **options: Any) -> IngestError:
    before = table_state(url, layer)
    with pytest.raises(IngestError) as caught:
        ingest(layer, path, url=url, **options)
    assert table_state(url, layer) == before
    return caught.value


@pytest.fixture
def loaded(empty_db: str, roads_file: Path) -> str:
    ingest("roads", roads_file, url=empty_db)
    return empty_db


def test_wrong_geometry_type(loaded: str, tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "bad.geojson",
        feature(line(A, B), id="r9", **ROAD),
        feature(shapely.Point(A), id="r10", **ROAD),
    )
    error = rejected(loaded, "roads", path)
    assert (
        str(error)
        == f"{path}: feature 2 (r10): field 'geometry': Point where layer roads expects LineString"
    )


def test_missing_required_attribute(loaded: str, tmp_path: Path) -> None:
    bad = {k: v for k, v in ROAD.items() if k != "class"}
    path = write_geojson(
        tmp_path / "bad.geojson",
        feature(line(A, B), id="r9", **ROAD),
        feature(line(B, C), id="r10", **bad),
    )
    error = rejected(loaded, "roads", path)
    assert str(error) == f"{path}: feature 2 (r10): field 'class': required attribute is missing"


def test_value_of_wrong_type_and_out_of_range(loaded: str, tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "bad.geojson",
        feature(line(A, B), id="r9", lanes="many", **ROAD),
        feature(line(B, C), id="r10", maxspeed=900, **ROAD),
    )
    error = rejected(loaded, "roads", path)
    assert [p.describe("f") for p in error.problems] == [
        "f: feature 1 (r9): field 'lanes': 'many' is not a number",
        "f: feature 2 (r10): field 'maxspeed': 900 is above the maximum 150",
    ]


def test_value_not_in_choices(empty_db: str, tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "pipes.geojson", feature(line(A, B), id="p1", network="oil"))
    error = rejected(empty_db, "pipelines", path)
    assert "feature 1 (p1): field 'network': 'oil' is not one of: water, gas, sewer, heat" in str(
        error
    )


def test_coordinates_outside_the_crs(loaded: str, tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "bad.geojson", feature(line((7.42, 43.73), (7.42, 95.0)), id="r9", **ROAD)
    )
    error = rejected(loaded, "roads", path)
    assert (
        "feature 1 (r9): field 'geometry': coordinates outside the valid range of EPSG:4326"
        in str(error)
    )


def test_projected_coordinates_outside_the_crs_area(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "cams.csv"
    path.write_text("id,x,y\nc1,372000,4842000\nc2,1e30,4842000\n")
    error = rejected(empty_db, "cameras", path, crs="EPSG:32632")
    assert error.problems[0].row == 3  # CSV: line numbers
    assert error.problems[0].field == "geometry"
    assert "outside" in error.problems[0].reason


def test_outside_the_city_extent(loaded: str, tmp_path: Path) -> None:
    paris = line((2.35, 48.85), (2.36, 48.86))
    path = write_geojson(
        tmp_path / "bad.geojson",
        feature(line(A, B), id="r9", **ROAD),
        feature(paris, id="r10", **ROAD),
    )
    error = rejected(loaded, "roads", path)
    assert str(error).startswith(
        f"{path}: feature 2 (r10): field 'geometry': outside the city's extent"
    )


def test_unreadable_and_missing_files(loaded: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.geojson"
    garbage.write_bytes(b"\x00\x01 this is not json")
    error = rejected(loaded, "roads", garbage)
    assert str(error).startswith(f"{garbage}: cannot read file")
    error = rejected(loaded, "roads", tmp_path / "absent.gpkg")
    assert str(error) == f"{tmp_path / 'absent.gpkg'}: file not found"


def test_csv_with_bad_number_names_the_line(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "res.csv"
    path.write_text("id,kind,lon,lat\nf1,police,7.42,43.73\nf2,police,east,43.73\n")
    error = rejected(empty_db, "resources", path)
    assert (
        str(error) == f"{path}: feature 3: field 'lon': coordinates 'east', '43.73' are not numbers"
    )


def test_duplicate_ids(loaded: str, tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "bad.geojson",
        feature(line(A, B), id="r9", **ROAD),
        feature(line(B, C), id="r9", **ROAD),
    )
    error = rejected(loaded, "roads", path)
    assert str(error) == f"{path}: feature 2 (r9): field 'id': duplicate id 'r9' (also feature 1)"


def test_one_bad_feature_among_many_writes_nothing(empty_db: str, tmp_path: Path) -> None:
    features = [feature(line(A, B), id=f"r{i}", **ROAD) for i in range(500)]
    features[321] = feature(line(A, B), id="r321", **(ROAD | {"target_node": "x"}))
    path = write_geojson(tmp_path / "many.geojson", *features)
    error = rejected(empty_db, "roads", path)
    assert [(p.row, p.field) for p in error.problems] == [(322, "target_node")]
    assert sql_scalar(empty_db, "SELECT count(*) FROM roads") == 0


def shoelace(ring: list[tuple[float, float]]) -> float:
    """Area of a simple polygon from its vertices (the shoelace formula)."""
    twice = sum(
        x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True)
    )
    return abs(twice) / 2


def test_invalid_polygon_is_repaired_and_reported(empty_db: str, tmp_path: Path) -> None:
    """A bow-tie crossing itself at (7.4205, 43.7305) is two triangles touching there, each of
    base 0.001° (its vertical side) and height 0.0005° (side to crossing): 2.5e-7 deg² each."""
    west, east, south, north = 7.420, 7.421, 43.730, 43.731
    bowtie = shapely.Polygon([(west, south), (east, north), (east, south), (west, north)])
    crossing = ((west + east) / 2, (south + north) / 2)
    triangles = [
        [(west, south), crossing, (west, north)],
        [(east, north), (east, south), crossing],
    ]
    path = write_geojson(tmp_path / "b.geojson", feature(bowtie, id="b1", use="house"))
    report = ingest("buildings", path, url=empty_db)
    assert [p.describe("f") for p in report.repaired] == [
        "f: feature 1: field 'geometry': repaired invalid geometry (Self-intersection[7.4205 43.7305])"
    ]
    stored = read_layer("buildings", url=empty_db).iloc[0]
    assert stored.geometry.is_valid and stored.geometry.geom_type == "MultiPolygon"
    parts = sorted(stored.geometry.geoms, key=lambda part: part.centroid.x)
    assert len(parts) == len(triangles)
    for part, triangle in zip(parts, triangles, strict=True):
        assert not part.interiors
        corners = list(part.exterior.coords)[:-1]
        assert len(corners) == 3
        flat = [value for corner in sorted(corners) for value in corner]
        assert flat == pytest.approx(
            [value for corner in sorted(triangle) for value in corner], abs=1e-12
        )
        assert shoelace(corners) == pytest.approx(shoelace(triangle), rel=1e-9)
    assert shoelace(triangles[0]) == pytest.approx(0.5 * (north - south) * (east - west) / 2)
    assert stored.geometry.area == pytest.approx(sum(shoelace(t) for t in triangles), rel=1e-9)


def test_unrepairable_geometry_is_rejected(loaded: str, tmp_path: Path) -> None:
    degenerate = {"type": "LineString", "coordinates": [list(A), list(A)]}
    path = write_geojson(tmp_path / "bad.geojson", feature(degenerate, id="r9", **ROAD))
    error = rejected(loaded, "roads", path)
    assert error.problems[0].field == "geometry"
    assert "cannot be repaired into LineString" in error.problems[0].reason


def test_missing_geometry(loaded: str, tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "bad.geojson", feature(None, id="r9", **ROAD))
    error = rejected(loaded, "roads", path)
    assert str(error) == f"{path}: feature 1 (r9): field 'geometry': missing or empty geometry"


def test_unknown_layer(empty_db: str, roads_file: Path) -> None:
    with pytest.raises(KeyError, match="unknown layer 'streets'; known layers: roads"):
        ingest("streets", roads_file, url=empty_db)


# --- versioning ---------------------------------------------------------------------------


def test_reimport_unchanged_writes_nothing(loaded: str, roads_file: Path) -> None:
    before = table_state(loaded, "roads")
    report = ingest("roads", roads_file, url=loaded)
    assert (report.added, report.changed, report.unchanged, report.retired) == (0, 0, 3, 0)
    assert table_state(loaded, "roads") == before


def test_reimport_with_one_change_closes_the_old_version(
    loaded: str, roads_file: Path, tmp_path: Path
) -> None:
    moment = sql_scalar(loaded, "SELECT now()")
    data = json.loads(roads_file.read_text())
    data["features"][1]["properties"]["maxspeed"] = 30
    roads_file.write_text(json.dumps(data))
    report = ingest("roads", roads_file, url=loaded)
    assert (report.added, report.changed, report.unchanged, report.retired) == (0, 1, 2, 0)

    versions = read_layer("roads", url=loaded)
    assert len(versions) == 3
    assert versions.set_index("id").loc["r2", "maxspeed"] == 30
    rows = sql_scalar(loaded, "SELECT count(*) FROM roads WHERE id = 'r2'")
    closed = sql_scalar(
        loaded, "SELECT count(*) FROM roads WHERE id = 'r2' AND valid_to IS NOT NULL"
    )
    assert (rows, closed) == (2, 1)
    old = read_layer("roads", at=moment, url=loaded).set_index("id")
    assert old.loc["r2", "maxspeed"] is pd.NA
    assert len(old) == 3


def test_reimport_without_a_feature_retires_it(loaded: str, roads_file: Path) -> None:
    data = json.loads(roads_file.read_text())
    data["features"] = data["features"][:2]
    roads_file.write_text(json.dumps(data))
    report = ingest("roads", roads_file, url=loaded)
    assert report.retired == 1
    assert sorted(read_layer("roads", url=loaded)["id"]) == ["r1", "r2"]
    assert sql_scalar(loaded, "SELECT count(*) FROM roads") == 3


def test_as_of_before_the_first_import_is_empty(
    db_url: str, empty_db: str, roads_file: Path
) -> None:
    moment = sql_scalar(empty_db, "SELECT now()")
    ingest("roads", roads_file, url=empty_db)
    assert read_layer("roads", at=moment, url=empty_db).empty
    assert len(read_layer("roads", url=empty_db)) == 3


def test_a_different_source_keeps_its_own_features(loaded: str, tmp_path: Path) -> None:
    other = write_geojson(tmp_path / "other.geojson", feature(line(A, C), id="x1", **ROAD))
    report = ingest("roads", other, url=loaded)
    assert (report.added, report.retired) == (1, 0)
    assert sorted(read_layer("roads", url=loaded)["id"]) == ["r1", "r2", "r3", "x1"]


def test_nan_never_reaches_the_store(empty_db: str) -> None:
    frame = gpd.GeoDataFrame(
        {
            "id": ["a", "b"],
            "source_node": [1, 2],
            "target_node": [2, 3],
            "class": ["primary"] * 2,
            "maxspeed": [float("nan"), 50.0],
            "lanes": [float("nan"), 2.0],
            "note": [float("nan"), "x"],
        },
        geometry=[line(A, B), line(B, C)],
        crs="EPSG:4326",
    )
    ingest_frame("roads", frame, source="frame", url=empty_db)
    assert sql_scalar(empty_db, "SELECT count(*) FROM roads WHERE maxspeed = 'NaN'::float8") == 0
    assert (
        sql_scalar(empty_db, "SELECT count(*) FROM roads WHERE maxspeed IS NULL AND lanes IS NULL")
        == 1
    )
    assert sql_scalar(empty_db, "SELECT props::text FROM roads WHERE id = 'a'") == "{}"


def test_integers_outside_the_column_range_are_refused(empty_db: str, tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "b.geojson",
        feature(shapely.box(7.42, 43.73, 7.421, 43.731), id="b1", population=5_000_000_000),
    )
    error = rejected(empty_db, "buildings", path)
    assert (
        str(error)
        == f"{path}: feature 1 (b1): field 'population': 5000000000 is outside the int range"
    )


def test_big_node_ids_are_stored_exactly(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("id,node_id,lon,lat\nn1,9007199254740993,7.42,43.73\n")  # 2**53 + 1
    ingest("intersections", path, url=empty_db)
    assert sql_scalar(empty_db, "SELECT node_id FROM intersections") == 2**53 + 1


def test_an_id_owned_by_another_source_is_refused_after_copy(loaded: str, tmp_path: Path) -> None:
    other = write_geojson(
        tmp_path / "other.geojson",
        feature(line(A, C), id="x1", **ROAD),
        feature(line(A, B), id="r2", **ROAD),
    )
    error = rejected(loaded, "roads", other)  # fails in the merge, inside the transaction
    assert str(error) == (
        f"{other}: feature 2: field 'id': id 'r2' belongs to source 'roads.geojson' in layer roads; "
        "import it from that source, or give the feature another id"
    )


def test_json_with_nan_and_text_with_nul_are_refused(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "signals.csv"
    path.write_text('id,phases,lon,lat\ns1,"[NaN]",7.42,43.73\n')
    error = rejected(empty_db, "signals", path)
    assert error.problems[0].field == "phases" and "not valid JSON" in error.problems[0].reason
    frame = gpd.GeoDataFrame(
        {"id": ["c"], "owner": ["a\x00b"]}, geometry=[shapely.Point(A)], crs=4326
    )
    with pytest.raises(
        IngestError, match=r"feature 1 \(c\): field 'owner': text contains a NUL character"
    ):
        ingest_frame("cameras", frame, source="frame", url=empty_db)


def test_csv_line_numbers_count_blank_and_multiline_records(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "res.csv"
    path.write_text(
        'id,kind,name,lon,lat\n\nf1,police,"two\nlines",7.42,43.73\n\nf2,polise,x,7.42,43.73\n'
    )
    error = rejected(empty_db, "resources", path)
    assert [(p.row, p.field) for p in error.problems] == [(6, "kind")]


@pytest.mark.parametrize("value", ["1700000000", "01/02/2026", "yesterday"])
def test_timestamps_must_be_iso_8601(empty_db: str, tmp_path: Path, value: str) -> None:
    path = tmp_path / "inc.csv"
    path.write_text(f"id,kind,starts_at,lon,lat\ni1,fire,{value},7.42,43.73\n")
    error = rejected(empty_db, "incidents", path)
    assert error.problems[0].reason == f"{value!r} is not an ISO 8601 date and time"


@pytest.mark.parametrize("ends", ["2026-01-15T08:30:00Z", "2026-01-15T07:00:00Z"])
def test_a_closure_ends_after_it_starts(empty_db: str, tmp_path: Path, ends: str) -> None:
    path = tmp_path / "closures.csv"
    path.write_text(
        "id,kind,starts_at,ends_at,lon,lat\n"
        "ok,works,2026-01-15T08:30:00Z,,7.42,43.73\n"
        f"c1,works,2026-01-15T08:30:00Z,{ends},7.42,43.73\n"
    )
    error = rejected(empty_db, "closures", path)
    assert [(p.row, p.field) for p in error.problems] == [(3, "ends_at")]
    assert "is not after starts_at (2026-01-15T08:30:00+00:00)" in error.problems[0].reason
    assert read_layer("closures", url=empty_db).empty  # nothing stored


def test_timestamp_without_offset_is_utc(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "inc.csv"
    path.write_text("id,kind,starts_at,lon,lat\ni1,fire,2026-01-15T08:30:00,7.42,43.73\n")
    ingest("incidents", path, url=empty_db)
    stored = read_layer("incidents", url=empty_db).iloc[0]
    assert stored["starts_at"].isoformat() == "2026-01-15T08:30:00+00:00"


def test_geojson_integer_feature_ids_are_the_ids(empty_db: str, tmp_path: Path) -> None:
    features = [
        feature(shapely.Point(A), kind="police") | {"id": 17},
        feature(shapely.Point(B), kind="police") | {"id": 5},
    ]
    path = write_geojson(tmp_path / "res.geojson", *features)
    ingest("resources", path, url=empty_db)
    assert sorted(read_layer("resources", url=empty_db)["id"]) == ["17", "5"]


def test_roads_from_a_zipped_shapefile_in_a_folder(empty_db: str, tmp_path: Path) -> None:
    roads = gpd.read_file(SAMPLE / "roads.geojson").head(20)[
        ["id", "source_node", "target_node", "class", "geometry"]
    ]
    folder = tmp_path / "export" / "roads"
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDAL says it cuts source_node to source_nod
        roads.to_file(folder / "roads.shp", engine="pyogrio")
    archive = tmp_path / "roads.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in folder.iterdir():
            zf.write(part, f"export/roads/{part.name}")
    report = ingest("roads", archive, url=empty_db)
    stored = read_layer("roads", url=empty_db).set_index("id").loc[roads["id"]]
    assert report.added == 20
    assert list(stored["source_node"]) == list(roads["source_node"])


def test_geopackage_with_several_tables(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "city.gpkg"
    cams = gpd.read_file(SAMPLE / "cameras.geojson")[["id", "heading", "geometry"]]
    cams.to_file(path, layer="cams", engine="pyogrio")
    cams.head(3).to_file(path, layer="other", engine="pyogrio")
    error = rejected(empty_db, "cameras", path)
    assert (
        str(error)
        == f"{path}: field 'layer': the file holds several layers (cams, other); name one"
    )
    assert ingest("cameras", path, file_layer="cams", url=empty_db).added == len(cams)


def test_an_empty_file_adds_nothing(empty_db: str, tmp_path: Path) -> None:
    report = ingest("roads", write_geojson(tmp_path / "none.geojson"), url=empty_db)
    assert (report.read, report.added) == (0, 0)
    assert sql_scalar(empty_db, "SELECT count(*) FROM roads") == 0


def test_a_tiny_osm_file_with_odd_tags(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "tiny.osm"
    path.write_text(
        '<?xml version="1.0"?><osm version="0.6">'
        '<node id="1" lat="43.730" lon="7.420" version="1"/>'
        '<node id="2" lat="43.731" lon="7.421" version="1"/>'
        '<way id="10" version="1"><nd ref="1"/><nd ref="2"/>'
        '<tag k="highway" v="primary"/><tag k="lanes" v="0"/><tag k="maxspeed" v="300"/></way>'
        "</osm>"
    )
    report = ingest("roads", path, url=empty_db)
    stored = read_layer("roads", url=empty_db).iloc[0]
    assert report.added == 1 and stored["id"] == "way/10/0"
    assert stored["lanes"] is pd.NA and stored["maxspeed"] is pd.NA
    assert stored["props"]["osm"] == {"highway": "primary", "lanes": "0", "maxspeed": "300"}
    assert (stored["source_node"], stored["target_node"]) == (1, 2)


# --- NaN in a file, and re-imports that change nothing (issue 13) ----------------------------


def test_nan_in_a_file_is_refused_not_stored_as_null(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "roads.geojson"  # GDAL reads NaN and Infinity tokens in GeoJSON
    path.write_text(
        '{"type": "FeatureCollection", "features": ['
        '{"type": "Feature", "properties": {"id": "r1", "source_node": 1, "target_node": 2, '
        '"class": "primary", "maxspeed": NaN, "lanes": null}, '
        '"geometry": {"type": "LineString", "coordinates": [[7.42, 43.73], [7.421, 43.731]]}},'
        '{"type": "Feature", "properties": {"id": "r2", "source_node": 2, "target_node": 3, '
        '"class": "primary", "maxspeed": 50, "lanes": 2, "width": NaN}, '
        '"geometry": {"type": "LineString", "coordinates": [[7.421, 43.731], [7.422, 43.732]]}}'
        "]}"
    )
    error = rejected(empty_db, "roads", path)
    assert [p.describe(str(path)) for p in error.problems] == [
        f"{path}: feature 1 (r1): field 'maxspeed': NaN is not a finite number",
        f"{path}: feature 2 (r2): field 'width': NaN is not a finite number",
    ]
    assert sql_scalar(empty_db, "SELECT count(*) FROM roads") == 0


def test_a_null_number_in_a_file_stays_missing(empty_db: str, tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "roads.geojson", feature(line(A, B), id="r1", maxspeed=None, **ROAD)
    )
    ingest("roads", path, url=empty_db)
    assert sql_scalar(empty_db, "SELECT maxspeed IS NULL FROM roads") is True


def _version(url: str, layer: str) -> int:
    return int(sql_scalar(url, "SELECT version FROM layer_versions WHERE layer = :l", l=layer))


def _vids(url: str, layer: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT vid, id, valid_to FROM {layer} ORDER BY vid"))
        return [tuple(row) for row in rows]


def test_a_reimport_that_changes_nothing_keeps_the_version(loaded: str, roads_file: Path) -> None:
    version, vids = _version(loaded, "roads"), _vids(loaded, "roads")
    report = ingest("roads", roads_file, url=loaded)
    assert (report.added, report.changed, report.unchanged, report.retired) == (0, 0, 3, 0)
    assert _version(loaded, "roads") == version, "the tile caches keep their entries"
    assert _vids(loaded, "roads") == vids


def test_a_reimport_that_changes_something_bumps_the_version(
    loaded: str, roads_file: Path, tmp_path: Path
) -> None:
    version = _version(loaded, "roads")
    changed = write_geojson(
        tmp_path / "roads.geojson",  # the same source: r1 renamed, r2 as it was, r3 gone
        feature(line(A, B), id="r1", **(ROAD | {"name": "Boulevard"})),
        feature(line(B, C), id="r2", **(ROAD | {"source_node": 2, "target_node": 3})),
    )
    report = ingest("roads", changed, url=loaded, source=roads_file.name)
    assert (report.added, report.changed, report.unchanged, report.retired) == (0, 1, 1, 1)
    assert _version(loaded, "roads") > version
    current = read_layer("roads", url=loaded).set_index("id")
    assert sorted(current.index) == ["r1", "r2"] and current.at["r1", "name"] == "Boulevard"


def test_an_empty_first_import_keeps_the_version(empty_db: str, tmp_path: Path) -> None:
    version = _version(empty_db, "roads")
    ingest("roads", write_geojson(tmp_path / "none.geojson"), url=empty_db)
    assert _version(empty_db, "roads") == version


@pytest.mark.parametrize(
    "frame",
    [pd.DataFrame({"id": ["a"]}), gpd.GeoDataFrame({"id": ["a"]})],
    ids=["plain", "no-geometry"],
)
def test_a_table_without_geometry_is_refused(frame: pd.DataFrame, empty_db: str) -> None:
    with pytest.raises(IngestError, match="not features: a GeoDataFrame with a geometry column"):
        ingest_frame("roads", frame, source="table", url=empty_db)
    with pytest.raises(IngestError, match="not features"):
        ingest_frames({"roads": frame}, source="table", url=empty_db)


# --- streamed imports: chunks checked while the checked ones are copied -------------------


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Stream in chunks of 100 features, so that a file of a few hundred has several."""
    monkeypatch.setattr(importlib.import_module("layers.ingest"), "STREAM_CHUNK", 100)
    return 100


def many_roads(count: int) -> list[dict[str, Any]]:
    step = 0.00001
    return [
        feature(line((7.42 + i * step, 43.73), (7.42 + i * step, 43.731)), id=f"r{i}", **ROAD)
        for i in range(count)
    ]


def indexes(url: str, table: str) -> list[str]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t ORDER BY 1"),
            {"t": table},
        )
        return [row[0] for row in rows]


def test_a_streamed_import_equals_one_checked_whole(
    empty_db: str, tmp_path: Path, small_chunks: int
) -> None:
    path = write_geojson(tmp_path / "many.geojson", *many_roads(3 * small_chunks + 50))
    report = ingest("roads", path, url=empty_db)  # 4 chunks, the first import: into the table
    assert report.read == report.added == 350 and report.repaired == []
    streamed = read_layer("roads", url=empty_db).drop(columns=["valid_from", "source"])
    again = ingest("roads", path, url=empty_db)  # streamed into the staging table, merged
    assert (again.added, again.changed, again.unchanged) == (0, 0, 350)
    with get_engine(empty_db).begin() as conn:
        conn.execute(sa.text("TRUNCATE roads"))
    whole = gpd.read_file(path).set_axis(pd.RangeIndex(1, 351))
    ingest_frame("roads", whole, source="many.geojson", url=empty_db)  # checked whole
    stored = read_layer("roads", url=empty_db).drop(columns=["valid_from", "source"])
    pd.testing.assert_frame_equal(streamed, stored)


def test_a_bad_feature_in_the_third_chunk_loads_nothing_and_is_named(
    empty_db: str, tmp_path: Path, small_chunks: int
) -> None:
    features = many_roads(350)
    features[250] = feature(line(A, B), id="r250", **(ROAD | {"target_node": "x"}))
    features[320] = feature(shapely.Point(A), id="r320", **ROAD)  # the fourth: also reported
    path = write_geojson(tmp_path / "many.geojson", *features)
    before = indexes(empty_db, "roads")
    error = rejected(empty_db, "roads", path)
    assert str(error) == (
        f"{path}: feature 321 (r320): field 'geometry': Point where layer roads expects "
        f"LineString\n"
        f"{path}: feature 251 (r250): field 'target_node': 'x' is not a number"
    )  # as a check of the whole file, in its order: geometry first, then the attributes
    assert sql_scalar(empty_db, "SELECT count(*) FROM roads") == 0
    assert indexes(empty_db, "roads") == before  # dropped for the COPY, back with the rollback


def test_an_id_repeated_across_chunks_loads_nothing(
    empty_db: str, tmp_path: Path, small_chunks: int
) -> None:
    features = many_roads(350)
    features[301] = feature(line(A, B), id="r5", **ROAD)
    path = write_geojson(tmp_path / "many.geojson", *features)
    error = rejected(empty_db, "roads", path)
    assert str(error) == f"{path}: feature 302 (r5): field 'id': duplicate id 'r5' (also feature 6)"
    assert sql_scalar(empty_db, "SELECT count(*) FROM roads") == 0
