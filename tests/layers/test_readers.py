"""Readers: every broken file is a per-file message (IngestError), never another exception.

Each crash class found by feeding the readers broken files has a test with the smallest input;
a property-based test (hypothesis) feeds them generated broken files, through the database.
Chinese data: text in GBK/GB18030, Chinese attribute names, CGCS2000 (EPSG:4490) and a
Gauss-Kruger zone (EPSG:4547); the coordinates are Monaco's (the test city), transformed.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layers.catalog import get_layer
from layers.database import get_engine
from layers.ingest import ingest, ingest_frame
from layers.queries import read_layer
from layers.readers import read_file
from layers.validation import IngestError, prepare
from tests.assertions import table_state

A, B = (7.420, 43.730), (7.425, 43.735)
RESOURCES = get_layer("resources")


def read(path: Path, layer: str = "resources", **options: Any) -> gpd.GeoDataFrame:
    """Read and validate a file as an import does, without the database."""
    frame = read_file(path, layer=get_layer(layer), **options)
    prepared, _ = prepare(frame, layer=get_layer(layer), path=str(path))
    return prepared


def refused(path: Path, layer: str = "resources", **options: Any) -> IngestError:
    with pytest.raises(IngestError) as info:
        read(path, layer, **options)
    return info.value


def points(**columns: list[Any]) -> gpd.GeoDataFrame:
    n = len(next(iter(columns.values())))
    geoms = [shapely.Point(A), shapely.Point(B)] * n
    return gpd.GeoDataFrame(columns, geometry=geoms[:n], crs="EPSG:4326")


def write_quietly(frame: gpd.GeoDataFrame, path: Path, **options: Any) -> Path:
    """Write with GDAL, whose warnings (laundered field names) are not under test here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame.to_file(path, engine="pyogrio", **options)
    return path


def geojson(path: Path, features: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def point_feature(fid: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"id": fid, "kind": "police", **props},
        "geometry": {"type": "Point", "coordinates": list(A)},
    }


# --- duplicate and unnamed columns ----------------------------------------------------------


def test_csv_with_two_columns_of_one_name_is_refused_and_nothing_written(
    empty_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("id,kind,kind,lon,lat\nf1,police,police,7.42,43.73\n")
    with pytest.raises(IngestError) as info:
        ingest("resources", path, url=empty_db)
    assert str(info.value) == (
        f"{path}: field 'kind': 2 columns have this name (columns 2, 3); rename all but one"
    )
    assert table_state(empty_db, "resources") == []


def test_csv_with_duplicate_coordinate_columns(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("id,kind,lon,lon,lat\nf1,police,7.42,7.42,43.73\n")
    assert refused(path).problems[0].field == "lon"
    path.write_text("id,kind,lon,LON,lat\nf1,police,7.42,7.43,43.73\n")
    assert str(refused(path)) == f"{path}: ambiguous columns 'lon', 'LON': rename one"


def test_shapefile_with_two_fields_of_one_name(tmp_path: Path) -> None:
    write_quietly(points(id=["a"], kind=["police"], kinx=["x"]), tmp_path / "dup.shp")
    dbf = tmp_path / "dup.dbf"
    data = bytearray(dbf.read_bytes())
    at = data.index(b"kinx")
    data[at : at + 4] = b"kind"  # GDAL writes unique names; other programs do not
    dbf.write_bytes(bytes(data))
    error = refused(tmp_path / "dup.shp")
    assert str(error) == (
        f"{tmp_path / 'dup.shp'}: field 'kind': 2 attributes have this name; "
        "rename all but one of them"
    )


def test_frame_with_two_columns_of_one_name(empty_db: str) -> None:
    frame = points(id=["a"], kind=["police"], other=["x"]).rename(columns={"other": "kind"})
    with pytest.raises(IngestError, match="field 'kind': several attributes have this name"):
        ingest_frame("resources", frame, source="frame", url=empty_db)


def test_csv_column_without_a_name(tmp_path: Path) -> None:
    path = tmp_path / "unnamed.csv"
    path.write_text("id,kind,,lon,lat\nf1,police,x,7.42,43.73\n")
    assert str(refused(path)) == (
        f"{path}: column 3 has no name in the header line, but values below it"
    )
    # the empty columns a spreadsheet adds at the end are no problem
    path.write_text("id,kind,lon,lat,,\nf1,police,7.42,43.73,,\n")
    assert list(read(path)["id"]) == ["f1"]


def test_csv_header_names_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "spaces.csv"
    path.write_text("id, kind, lon, lat\nf1,police,7.42,43.73\n")
    assert list(read(path)["kind"]) == ["police"]


# --- text encodings -------------------------------------------------------------------------

GBK_CSV = "id,kind,名称,lon,lat\nf1,police,派出所,7.42,43.73\n"


def test_csv_in_gbk_read_as_utf8_names_the_line_and_the_remedy(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("id,kind,name,lon,lat\nf1,police,派出所,7.42,43.73\n".encode("gbk"))
    error = refused(path)
    assert error.problems[0].row == 2
    assert "not valid UTF-8 text" in str(error) and "--encoding" in str(error)


@pytest.mark.parametrize("encoding", ["gbk", "GB18030", "cp936"])
def test_csv_in_gbk_with_its_encoding_keeps_chinese_names_and_values(
    empty_db: str, tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(GBK_CSV.encode("gbk"))
    report = ingest("resources", path, url=empty_db, encoding=encoding)
    assert report.added == 1
    assert read_layer("resources", url=empty_db)["props"][0] == {"名称": "派出所"}


def test_csv_in_latin1(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,kind,note,lon,lat\nf1,police,Café,7.42,43.73\n".encode("latin-1"))
    assert "not valid UTF-8" in str(refused(path))
    assert json.loads(read(path, encoding="latin-1")["props"].iloc[0]) == {"note": "Café"}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_csv_with_a_byte_order_mark(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(GBK_CSV.encode(encoding))
    frame = read(path)
    assert list(frame["id"]) == ["f1"] and json.loads(frame["props"].iloc[0]) == {"名称": "派出所"}


def test_unknown_or_non_text_encoding(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,kind,lon,lat\nf1,police,7.42,43.73\n")
    error = refused(path, encoding="gbk-ish")
    assert error.problems[0].field == "encoding"
    assert "unknown text encoding 'gbk-ish'" in str(error)
    assert "'base64' is not a text encoding" in str(refused(path, encoding="base64"))


def gbk_shapefile(folder: Path, cpg: str | None) -> Path:
    folder.mkdir()
    frame = points(id=["a", "b"], kind=["police", "hospital"], 名称=["派出所", "医院"])
    path = write_quietly(
        frame.set_crs(4490, allow_override=True), folder / "res.shp", encoding="GBK"
    )
    (folder / "res.cpg").unlink()
    if cpg is not None:
        (folder / "res.cpg").write_text(cpg)
    return path


@pytest.mark.parametrize("cpg", ["GBK", "936", "CP936"])
def test_shapefile_cpg_is_honoured(tmp_path: Path, cpg: str) -> None:
    frame = read(gbk_shapefile(tmp_path / "shp", cpg))
    assert [json.loads(p) for p in frame["props"]] == [{"名称": "派出所"}, {"名称": "医院"}]


def test_shapefile_without_cpg_in_gbk(tmp_path: Path) -> None:
    path = gbk_shapefile(tmp_path / "shp", None)
    error = refused(path)
    assert "is not valid utf-8 text" in str(error) and "--encoding" in str(error)
    frame = read(path, encoding="gb18030")
    assert json.loads(frame["props"].iloc[1]) == {"名称": "医院"}


def test_shapefile_whose_cpg_is_wrong(tmp_path: Path) -> None:
    path = gbk_shapefile(tmp_path / "shp", "UTF-8")
    assert "--encoding" in str(refused(path))
    assert json.loads(read(path, encoding="gbk")["props"].iloc[0]) == {"名称": "派出所"}


def test_shapefile_field_name_cut_in_half_a_character(tmp_path: Path) -> None:
    frame = points(id=["a"], kind=["police"], 应急资源名称=["x"])  # 18 bytes in UTF-8
    path = write_quietly(frame, tmp_path / "long.shp")  # GDAL cuts the name at 10 bytes
    error = refused(path)
    assert error.problems[0].field is not None and error.problems[0].field.startswith("应急资")
    assert "rename the field" in error.problems[0].reason


def test_geojson_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.geojson"
    text = json.dumps({"type": "FeatureCollection", "features": [point_feature("a", name="Café")]})
    path.write_bytes(text.encode().replace(b"Caf\\u00e9", b"Caf\xe9"))
    error = refused(path)
    assert [(p.row, p.field) for p in error.problems] == [(1, "name")]
    assert "not UTF-8 text" in error.problems[0].reason
    assert refused(path, encoding="latin-1").problems[0].field == "encoding"


def test_chinese_attribute_names_in_every_format(tmp_path: Path) -> None:
    frame = points(id=["a"], kind=["police"], 名称=["派出所"], 容量=[3])
    for name in ("zh.geojson", "zh.gpkg", "zh.shp"):
        stored = read(write_quietly(frame, tmp_path / name))
        assert json.loads(stored["props"].iloc[0]) == {"名称": "派出所", "容量": 3}, name


# --- Chinese coordinate reference systems ------------------------------------------------


def test_geopackage_in_gauss_kruger_zone_epsg_4547(empty_db: str, tmp_path: Path) -> None:
    frame = points(id=["a", "b"], kind=["police", "hospital"], 名称=["派出所", "医院"])
    path = write_quietly(frame.to_crs(4547), tmp_path / "res.gpkg", layer="resources")
    assert read_file(path, layer=RESOURCES).crs.to_epsg() == 4547
    assert ingest("resources", path, url=empty_db).added == 2
    stored = read_layer("resources", url=empty_db).sort_values("id")
    assert stored.crs.to_epsg() == 4326
    for got, want in zip(stored.geometry, [A, B], strict=True):
        assert got.distance(shapely.Point(want)) < 1e-7  # degrees: about a centimetre
    assert list(stored["props"]) == [{"名称": "派出所"}, {"名称": "医院"}]


def test_shapefile_in_cgcs2000_epsg_4490(empty_db: str, tmp_path: Path) -> None:
    frame = points(id=["a", "b"], kind=["police", "hospital"])
    path = write_quietly(frame.set_crs(4490, allow_override=True), tmp_path / "res.shp")
    assert read_file(path, layer=RESOURCES).crs.to_epsg() == 4490
    ingest("resources", path, url=empty_db)
    stored = read_layer("resources", url=empty_db).sort_values("id")
    # CGCS2000 and WGS 84 agree to the metre: PROJ's transformation between them is a no-op
    assert [(g.x, g.y) for g in stored.geometry] == [A, B]


# --- mixed geometry types ----------------------------------------------------------------


def test_mixed_geometry_types_name_the_features_that_do_not_fit(tmp_path: Path) -> None:
    mixed = gpd.GeoDataFrame(
        {"id": ["a", "b", "c"], "kind": ["police"] * 3},
        geometry=[shapely.Point(A), shapely.LineString([A, B]), shapely.Point(B)],
        crs=4326,
    )
    gpkg = write_quietly(mixed, tmp_path / "mixed.gpkg", layer="resources", geometry_type="Unknown")
    csv_path = tmp_path / "mixed.csv"
    csv_path.write_text(
        'id,kind,wkt\na,police,POINT (7.42 43.73)\nb,police,"LINESTRING (7.42 43.73, 7.43 43.74)"\n'
    )
    for path, row in ((gpkg, 2), (csv_path, 3)):
        problems = refused(path).problems
        assert [(p.row, p.field) for p in problems] == [(row, "geometry")], path
        assert problems[0].reason.startswith("LineString where layer resources expects Point")


# --- empty, truncated, damaged, garbage ------------------------------------------------------


@pytest.mark.parametrize("name", ["a.csv", "a.geojson", "a.gpkg", "a.shp", "a.zip", "a.osm"])
def test_zero_byte_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert str(refused(path)) == f"{path}: the file is empty (0 bytes)"


def test_files_with_no_features(tmp_path: Path) -> None:
    # a well-formed file without features is an import that adds nothing (test_ingest.py)
    header = tmp_path / "header.csv"
    header.write_text("id,kind,lon,lat\n")
    assert len(read(header)) == 0
    collection = geojson(tmp_path / "none.geojson", [])
    assert len(read(collection)) == 0
    gpkg = write_quietly(points(id=["a"], kind=["police"]).iloc[:0], tmp_path / "none.gpkg")
    assert len(read(gpkg)) == 0
    # what holds no file at all is refused
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    assert str(refused(blank)) == f"{blank}: the CSV file has no header line"
    archive = tmp_path / "empty.zip"
    zipfile.ZipFile(archive, "w").close()
    assert "the archive must hold one Shapefile" in str(refused(archive))
    with zipfile.ZipFile(tmp_path / "readme.zip", "w") as other:
        other.writestr("README.txt", "nothing here")
    assert "(found: none)" in str(refused(tmp_path / "readme.zip"))


def test_table_without_geometry(tmp_path: Path) -> None:
    import pyogrio

    path = tmp_path / "table.gpkg"
    pyogrio.write_dataframe(pd.DataFrame({"id": ["a"], "kind": ["police"]}), path)
    assert str(refused(path)) == f"{path}: field 'geometry': the table has no geometry column"


def test_truncated_geojson_and_geopackage(tmp_path: Path) -> None:
    full = geojson(tmp_path / "full.geojson", [point_feature("a"), point_feature("b")])
    cut = tmp_path / "cut.geojson"
    cut.write_bytes(full.read_bytes()[:-30])
    assert str(refused(cut)).startswith(f"{cut}: cannot read file")
    gpkg = write_quietly(points(id=["a"], kind=["police"]), tmp_path / "full.gpkg")
    half = tmp_path / "half.gpkg"
    half.write_bytes(gpkg.read_bytes()[: gpkg.stat().st_size // 2])
    assert "the GeoPackage is damaged or truncated" in str(refused(half))


def shapefile(folder: Path) -> Path:
    folder.mkdir()
    return write_quietly(points(id=["a", "b"], kind=["police", "hospital"]), folder / "r.shp")


def test_truncated_dbf_is_not_read_as_fewer_features(tmp_path: Path) -> None:
    path = shapefile(tmp_path / "shp")
    dbf = path.with_suffix(".dbf")
    dbf.write_bytes(dbf.read_bytes()[:-7])  # GDAL's Arrow reader would stop at feature 1
    assert str(refused(path)) == (
        f"{path}: the file holds 2 features but 1 could be read: it is truncated or damaged"
    )


def test_shapefile_missing_or_truncated_parts(tmp_path: Path) -> None:
    path = shapefile(tmp_path / "shx")
    shx = path.with_suffix(".shx")
    shx.write_bytes(shx.read_bytes()[:-7])
    assert "the Shapefile's .shx file (its index) is truncated or damaged" in str(refused(path))
    shx.unlink()
    assert "the Shapefile's .shx file (its index) is missing" in str(refused(path))
    path = shapefile(tmp_path / "dbf")
    path.with_suffix(".dbf").unlink()
    assert str(refused(path)) == f"{path}: the Shapefile's .dbf file (its attributes) is missing"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("g.geojson", "it is not a GeoJSON file GDAL can read"),
        ("g.gpkg", "it is not a GeoPackage file GDAL can read"),
        ("g.shp", "it is not a Shapefile file GDAL can read"),
        ("g.zip", "not a zip archive"),
        ("g.csv", "are not valid UTF-8 text"),
        ("g.osm", ""),
    ],
)
def test_binary_garbage_with_a_known_name(tmp_path: Path, name: str, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 4)
    assert reason in str(refused(path))


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    for name in ("d.csv", "d.geojson", "d.shp", "d.osm"):
        (tmp_path / name).mkdir()
        error = refused(tmp_path / name)
        assert (
            str(error) == f"{tmp_path / name}: is a directory, not a file; name the file to import"
        )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "locked.csv"
    path.write_text("id,kind,lon,lat\nf1,police,7.42,43.73\n")
    path.chmod(0)
    assert str(refused(path)) == f"{path}: cannot open the file: Permission denied"


def test_a_file_that_fails_to_read() -> None:
    # /proc/self/mem opens but fails on reading at offset 0, for every user
    error = refused(Path("/proc/self/mem"))
    assert str(error).startswith("/proc/self/mem: cannot open the file: ")


# --- NUL bytes, ragged rows, long fields -------------------------------------------------


def test_nul_bytes_in_a_csv(tmp_path: Path) -> None:
    header = tmp_path / "header.csv"
    header.write_bytes(b"id,ki\x00nd,lon,lat\nf1,police,7.42,43.73\n")
    assert "the header line holds a NUL character" in str(refused(header))
    value = tmp_path / "value.csv"
    value.write_bytes(b"id,kind,name,lon,lat\nf1,police,a\x00b,7.42,43.73\n")
    problems = refused(value).problems
    assert [(p.row, p.field) for p in problems] == [(2, "name")]
    assert "NUL" in problems[0].reason


def test_ragged_csv_rows(tmp_path: Path) -> None:
    long = tmp_path / "long.csv"
    long.write_text("id,kind,lon,lat\nf1,police,7.42,43.73\nf2,police,7.42,43.73,lost,data\n")
    assert str(refused(long)) == f"{long}: feature 3: the record has 6 fields, the header line 4"
    short = tmp_path / "short.csv"
    short.write_text("id,kind,lon,lat\nf1,police\n")  # padded: the missing cells are empty
    assert [(p.row, p.field) for p in refused(short).problems] == [(2, "geometry")]


def test_unterminated_quote(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('id,kind,lon,lat\nf1,"police,7.42,43.73\nf2,police,7.42,43.73\n')
    assert isinstance(refused(path), IngestError)


def test_csv_field_longer_than_pythons_default_limit(tmp_path: Path) -> None:
    ring = shapely.Point(A).buffer(0.001, quad_segs=3000)  # 12,001 vertices, ~400 kB of WKT
    path = tmp_path / "district.csv"
    path.write_text(f'id,name,wkt\nd1,Monaco,"{ring.wkt}"\n')
    assert read(path, "districts").geometry.iloc[0].equals(shapely.MultiPolygon([ring]))


# --- generated broken files (hypothesis) ---------------------------------------------------

SUFFIXES = [".csv", ".geojson", ".json", ".gpkg", ".shp", ".zip", ".osm", ".txt"]
NAMES = ["id", "kind", "name", "lon", "lat", "LON", "wkt", "", " ", "名称", "容量", "capacity"]
CELLS = ["", "f1", "police", "7.42", "43.73", "派出所", "Café", "a\x00b", '"', ",", "\n", "x"]


def valid_files() -> dict[str, dict[str, bytes]]:
    """The bytes of small valid files of each format, keyed by suffix, then by part."""
    frame = points(id=["a", "b"], kind=["police", "hospital"], 名称=["派出所", "医院"])
    files: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        for suffix in (".geojson", ".gpkg", ".shp"):
            write_quietly(frame, base / f"r{suffix}")
        files[".shp"] = {
            part: (base / f"r{part}").read_bytes() for part in (".shp", ".shx", ".dbf", ".cpg")
        }
        for suffix in (".geojson", ".gpkg"):
            files[suffix] = {suffix: (base / f"r{suffix}").read_bytes()}
    files[".csv"] = {".csv": GBK_CSV.encode()}
    return files


VALID = valid_files()


@st.composite
def broken_files(draw: st.DrawFn) -> tuple[dict[str, bytes], str | None]:
    """A broken file as {suffix: bytes} (a Shapefile has parts), and an encoding to give."""
    kind = draw(st.sampled_from(["bytes", "truncated", "csv"]))
    encoding = draw(st.sampled_from([None, "utf-8", "gbk", "latin-1", "utf-16"]))
    if kind == "bytes":
        return {draw(st.sampled_from(SUFFIXES)): draw(st.binary(max_size=300))}, encoding
    if kind == "truncated":
        suffix = draw(st.sampled_from(sorted(VALID)))
        parts = dict(VALID[suffix])
        part = draw(st.sampled_from(sorted(parts)))
        parts[part] = parts[part][: draw(st.integers(0, len(parts[part])))]
        return parts, encoding
    header = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=7))
    rows = draw(st.lists(st.lists(st.sampled_from(CELLS), max_size=len(header) + 2), max_size=4))
    text = "\n".join(",".join(line) for line in [header, *rows])
    written = draw(st.sampled_from(["utf-8", "gbk", "latin-1", "utf-16", "utf-8-sig"]))
    return {".csv": text.encode(written, errors="replace")}, encoding


@pytest.fixture(scope="module")
def baseline_db(db_url: str) -> str:
    """The write database whose resources layer holds two features of another source."""
    with get_engine(db_url).begin() as conn:
        conn.execute(sa.text("TRUNCATE resources RESTART IDENTITY"))
    frame = points(id=["f1", "a"], kind=["police", "hospital"])
    ingest_frame("resources", frame, source="baseline", url=db_url)
    return db_url


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(broken_files())
def test_generated_broken_files_are_a_message_and_change_nothing(
    baseline_db: str, case: tuple[dict[str, bytes], str | None]
) -> None:
    parts, encoding = case
    with tempfile.TemporaryDirectory() as folder:
        for suffix, data in parts.items():
            (Path(folder) / f"broken{suffix}").write_bytes(data)
        main = next(s for s in parts if s not in (".shx", ".dbf", ".cpg"))
        path = Path(folder) / f"broken{main}"
        before = table_state(baseline_db, "resources")
        try:
            ingest("resources", path, url=baseline_db, encoding=encoding)
        except IngestError as error:
            assert str(error).startswith(str(path)) and error.problems
            assert all(p.reason for p in error.problems)
            assert table_state(baseline_db, "resources") == before
