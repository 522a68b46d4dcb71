"""Rasters: stored in PostGIS, versioned, checked on ingest; zonal statistics and pipe profiles
checked against independent computations (numpy on hand-made rasters, GDAL's own tools, the
real Helsinki population grid)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import sqlalchemy as sa
from affine import Affine
from pyproj import Geod
from rasterio.features import rasterize
from scipy.interpolate import RegularGridInterpolator

import twin
from layers.database import get_engine
from layers.queries import read_layer
from layers.rasters import (
    IngestError,
    RasterError,
    district_stats,
    flood_raster,
    ingest_raster,
    list_rasters,
    open_raster,
    pipe_profiles,
    raster_bytes,
    zonal_stats,
)
from tests.assertions import sql_scalar
from tests.conftest import SAMPLE, SHARED
from twin.sample import load_sample

DEM = SAMPLE / "dem.tif"
HGT = SHARED / "monaco" / "N43E007.hgt"
POPULATION = SHARED / "helsinki" / "helsinki_population_grid_2020.gpkg"
HELSINKI_DEM = SHARED / "helsinki" / "elevation_model_2021_lapinlahti.tif"
UTM = "EPSG:32632"
ORIGIN = (370_000.0, 4_846_000.0)  # a 10 m grid in Monaco's UTM zone


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM,
    transform: Any = None,
    nodata: float | None = None,
    driver: str = "GTiff",
) -> Path:
    bands = data if data.ndim == 3 else data[np.newaxis]
    profile: dict[str, Any] = {
        "driver": driver,
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": bands.dtype.name,
        "transform": transform if transform is not None else from_origin(*ORIGIN, 10, 10),
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as out:
        out.write(bands)
    return path


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """A north-up geotransform (rasterio's own helper multiplies affines with ``*``, which
    affine 3 deprecates)."""
    return Affine(xsize, 0, west, 0, -ysize, north)


def gdalinfo(path: Path) -> dict[str, Any]:
    """What GDAL's own ``gdalinfo -json`` says of a raster (independent of rasterio's reading)."""
    done = subprocess.run(
        ["gdalinfo", "-json", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def table_state(url: str) -> tuple[list[tuple[Any, ...]], int]:
    """Every row of ``rasters`` (without the bytes) and its change counter."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT vid, name, valid_from, valid_to, sha256 FROM rasters ORDER BY vid")
        ).all()
        version = conn.execute(
            sa.text("SELECT version FROM layer_versions WHERE layer = 'rasters'")
        ).scalar_one()
    return [tuple(r) for r in rows], version


def cell_box(row: int, col: int, rows: int = 1, cols: int = 1) -> shapely.Polygon:
    """The UTM polygon covering a block of cells of the hand-made 10 m grid."""
    x0, y0 = ORIGIN
    return shapely.box(x0 + col * 10, y0 - (row + rows) * 10, x0 + (col + cols) * 10, y0 - row * 10)


# --- schema ---------------------------------------------------------------------------------


def test_the_rasters_table_is_indexed_and_tracked(db_url: str) -> None:
    with get_engine(db_url).connect() as conn:
        indexes = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'rasters'")
        ).scalars()
        srid, kind = conn.execute(
            sa.text(
                "SELECT srid, type FROM geometry_columns "
                "WHERE f_table_name = 'rasters' AND f_geometry_column = 'bounds'"
            )
        ).one()
        types = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'rasters'"
                )
            ).all()
        )
        extensions = conn.execute(sa.text("SELECT extname FROM pg_extension")).scalars().all()
    definitions = list(indexes)
    assert any("USING gist (bounds)" in d for d in definitions)
    assert any("UNIQUE" in d and "WHERE (valid_to IS NULL)" in d for d in definitions)
    assert (srid, kind) == (4326, "POLYGON")
    assert types["data"] == "bytea" and types["valid_from"] == "timestamp with time zone"
    assert "postgis_raster" not in extensions


# --- ingest and read back -------------------------------------------------------------------


def test_a_geotiff_is_stored_byte_for_byte(raster_db: str) -> None:
    _, version = table_state(raster_db)
    info = ingest_raster(DEM, name="dem", kind="dem", url=raster_db, source="srtm")
    stored = raster_bytes("dem", url=raster_db)
    assert stored == DEM.read_bytes()
    assert info.sha256 == hashlib.sha256(stored).hexdigest()
    assert (info.status, info.converted_from, info.unit, info.source) == (
        "added",
        None,
        "m",
        "srtm",
    )
    gdal = gdalinfo(DEM)
    band, corners = gdal["bands"][0], gdal["cornerCoordinates"]
    assert [info.width, info.height] == gdal["size"]
    assert (info.dtype, info.nodata) == (band["type"].lower(), band["noDataValue"])
    assert info.crs == "EPSG:4326"  # SRTM is in lon/lat; build_monaco.py clips it as it is
    assert info.bounds == pytest.approx((*corners["lowerLeft"], *corners["upperRight"]))
    listed = list_rasters(url=raster_db)
    assert listed[["name", "kind", "size", "sha256"]].values.tolist() == [
        ["dem", "dem", DEM.stat().st_size, info.sha256]
    ]
    with open_raster("dem", url=raster_db) as dataset, rasterio.open(DEM) as original:
        assert np.array_equal(dataset.read(1), original.read(1))
        assert dataset.transform == original.transform and dataset.crs == original.crs
    # the footprint is stored in EPSG:4326 and indexed: a spatial query finds it
    assert (
        sql_scalar(
            raster_db,
            "SELECT name FROM rasters WHERE ST_Intersects(bounds, ST_Point(7.42, 43.73, 4326))",
        )
        == "dem"
    )
    assert table_state(raster_db)[1] > version  # layer_versions['rasters'] was bumped


def test_a_projected_raster_has_its_footprint_in_lon_lat(raster_db: str, tmp_path: Path) -> None:
    path = write_raster(tmp_path / "utm.tif", np.ones((10, 10), dtype="float32"))
    info = ingest_raster(path, name="utm", kind="flood_depth", url=raster_db)
    assert info.crs == "EPSG:32632"
    # GDAL's own footprint of the 100 m square (its corners: the edges barely curve over 100 m)
    corners = np.array(gdalinfo(path)["wgs84Extent"]["coordinates"][0])
    expected = (*corners.min(axis=0), *corners.max(axis=0))
    assert info.bounds == pytest.approx(expected, abs=1e-7)  # 1e-7° is about 1 cm
    assert info.unit == "m" and info.source == "utm.tif"


def test_ingesting_a_name_again_closes_the_old_version(raster_db: str, tmp_path: Path) -> None:
    first = write_raster(tmp_path / "a.tif", np.full((10, 10), 1.0, dtype="float32"))
    second = write_raster(tmp_path / "b.tif", np.full((10, 10), 2.0, dtype="float32"))
    old = ingest_raster(first, name="flood", kind="flood_depth", url=raster_db)
    new = ingest_raster(second, name="flood", kind="flood_depth", url=raster_db)
    assert (old.status, new.status) == ("added", "replaced")
    assert raster_bytes("flood", url=raster_db) == second.read_bytes()
    assert raster_bytes("flood", url=raster_db, at=old.valid_from) == first.read_bytes()
    with open_raster("flood", url=raster_db, at=old.valid_from.isoformat()) as dataset:
        assert dataset.read(1).max() == 1.0
    rows, _ = table_state(raster_db)
    assert [(r[1], r[3]) for r in rows] == [("flood", new.valid_from), ("flood", None)]
    assert list_rasters(url=raster_db, at=old.valid_from)["sha256"].tolist() == [old.sha256]
    # the same file again changes nothing
    assert ingest_raster(second, name="flood", kind="flood_depth", url=raster_db).status == (
        "unchanged"
    )
    assert len(table_state(raster_db)[0]) == 2
    # before the first version there was no raster
    with pytest.raises(RasterError, match=r"no raster named 'flood' at 2000-01-01.*no rasters"):
        raster_bytes("flood", url=raster_db, at="2000-01-01T00:00:00")
    assert list_rasters(url=raster_db, at="2000-01-01").empty


def test_an_unknown_name_lists_the_known_rasters(raster_db: str, tmp_path: Path) -> None:
    ingest_raster(DEM, name="dem", kind="dem", url=raster_db)
    path = write_raster(tmp_path / "f.tif", np.ones((10, 10), dtype="float32"))
    ingest_raster(path, name="flood", kind="flood_depth", url=raster_db)
    with pytest.raises(RasterError, match="no raster named 'dtm'; known rasters: dem, flood"):
        raster_bytes("dtm", url=raster_db)
    with pytest.raises(RasterError, match="'dem' is of kind 'dem', not 'flood_depth'"):
        flood_raster("dem", url=raster_db)
    with pytest.raises(RasterError, match="'flood' is of kind 'flood_depth', not 'dem'"):
        pipe_profiles(dem="flood", url=raster_db)
    assert pipe_profiles(url=raster_db).empty  # no pipelines: no rows


def test_an_srtm_hgt_is_converted_to_a_geotiff(raster_db: str) -> None:
    info = ingest_raster(HGT, name="srtm", kind="dem", url=raster_db)
    assert info.converted_from == "SRTMHGT" and info.source == "N43E007.hgt"
    stored = raster_bytes("srtm", url=raster_db)
    assert stored[:4] in (b"II*\x00", b"MM\x00*")  # a TIFF
    with open_raster("srtm", url=raster_db) as dataset, rasterio.open(HGT) as original:
        assert dataset.driver == "GTiff"
        assert (dataset.width, dataset.height) == (1201, 1201)  # a 1° SRTM tile at 3″
        assert dataset.transform == original.transform and dataset.crs == original.crs
        assert dataset.nodata == original.nodata
        assert np.array_equal(dataset.read(1), original.read(1))


def test_a_non_geotiff_format_is_converted(raster_db: str, tmp_path: Path) -> None:
    data = np.arange(100, dtype="float32").reshape(10, 10)
    path = write_raster(tmp_path / "grid.img", data, driver="HFA", nodata=-1)
    info = ingest_raster(path, name="img", kind="flood_depth", url=raster_db)
    assert info.converted_from == "HFA"
    with open_raster("img", url=raster_db) as dataset:
        assert dataset.driver == "GTiff" and dataset.nodata == -1
        assert np.array_equal(dataset.read(1), data)


@pytest.mark.parametrize(
    ("case", "options", "message"),
    [
        ("text", {}, r"bad\.tif: not a raster rasterio can read \(.*not recognized"),
        ("missing", {}, r"missing\.tif: not a raster rasterio can read \(.*No such file"),
        ("two bands", {}, r"bad\.tif: field 'bands': has 2 bands; a raster of the twin holds"),
        ("no crs", {}, r"bad\.tif: field 'crs': has no CRS"),
        ("no transform", {}, r"bad\.tif: field 'transform': has no geotransform"),
        ("rotated", {}, r"bad\.tif: field 'transform': is rotated or sheared"),
        ("ok", {"kind": "elevation"}, r"bad\.tif: field 'kind': unknown kind 'elevation'; known"),
        ("ok", {"name": "My DEM"}, r"bad\.tif: field 'name': 'My DEM' is not a raster name"),
        ("ok", {"name": "1dem"}, r"field 'name': '1dem' is not a raster name"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    raster_db: str, tmp_path: Path, case: str, options: dict[str, str], message: str
) -> None:
    ingest_raster(DEM, name="dem", kind="dem", url=raster_db)
    before = table_state(raster_db)
    path = tmp_path / ("missing.tif" if case == "missing" else "bad.tif")
    data = np.ones((10, 10), dtype="float32")
    if case == "text":
        path.write_text("elevation,1\n")
    elif case == "two bands":
        write_raster(path, np.stack([data, data]))
    elif case == "no crs":
        write_raster(path, data, crs=None)
    elif case == "no transform":
        with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
            write_raster(path, data, crs=None, transform=Affine.identity())
    elif case == "rotated":
        write_raster(path, data, transform=Affine(10, 2, ORIGIN[0], 2, -10, ORIGIN[1]))
    elif case == "ok":
        write_raster(path, data)
    arguments = {"name": "dem", "kind": "dem"} | options
    with pytest.raises(IngestError, match=message) as caught:
        ingest_raster(path, url=raster_db, **arguments)
    assert caught.value.path == str(path)
    assert table_state(raster_db) == before


def test_every_problem_of_a_file_is_reported(raster_db: str, tmp_path: Path) -> None:
    data = np.ones((2, 10, 10), dtype="float32")
    path = write_raster(tmp_path / "bad.tif", data, crs=None)
    with pytest.raises(IngestError) as caught:
        ingest_raster(path, name="Bad", kind="slope", url=raster_db)
    assert [p.field for p in caught.value.problems] == ["name", "kind", "bands", "crs"]
    assert table_state(raster_db)[0] == []


# --- zonal statistics -----------------------------------------------------------------------


@pytest.fixture
def known_raster(raster_db: str, tmp_path: Path) -> tuple[str, np.ndarray]:
    """A 10 × 10 grid of 10 m cells holding 0..99, with nodata at row 3, column 4."""
    values = np.arange(100, dtype="int16").reshape(10, 10)
    values[3, 4] = -999
    path = write_raster(tmp_path / "known.tif", values, nodata=-999)
    ingest_raster(path, name="known", kind="dem", url=raster_db)
    return raster_db, values


def test_zonal_stats_equal_numpy_on_a_known_block(known_raster: tuple[str, np.ndarray]) -> None:
    url, values = known_raster
    block = cell_box(2, 3, rows=3, cols=4)  # rows 2-4, columns 3-6: 12 cells, one nodata
    tiny = shapely.box(*cell_box(7, 8).centroid.buffer(1).bounds)  # inside cell (7, 8)
    holed = shapely.box(*(cell_box(5, 5).centroid.buffer(4).bounds))  # no centre but (5, 5)'s
    sliver = shapely.box(ORIGIN[0] + 21, ORIGIN[1] - 60, ORIGIN[0] + 24, ORIGIN[1] - 10)
    outside = shapely.box(ORIGIN[0] - 500, ORIGIN[1], ORIGIN[0] - 400, ORIGIN[1] + 100)
    zones = gpd.GeoDataFrame(
        {"id": ["block", "tiny", "holed", "sliver", "outside"]},
        geometry=[
            block,
            tiny,
            holed.difference(cell_box(5, 5).centroid.buffer(0.5)),
            sliver,
            outside,
        ],
        crs=UTM,
        index=[10, 20, 30, 40, 50],
    ).to_crs(4326)  # zones in another CRS are reprojected to the raster's
    stats = zonal_stats(
        "known", zones, url=url, stats=("count", "min", "max", "mean", "sum", "std", "median")
    )
    assert list(stats.index) == [10, 20, 30, 40, 50]
    assert list(stats["id"]) == ["block", "tiny", "holed", "sliver", "outside"]
    cells = values[2:5, 3:7].astype(float)
    expected = cells[cells != -999]
    row = stats.loc[10]
    assert row["count"] == 11 == len(expected)
    assert (row["min"], row["max"], row["sum"]) == (expected.min(), expected.max(), expected.sum())
    assert row["mean"] == pytest.approx(expected.mean())
    assert row["std"] == pytest.approx(expected.std())
    assert row["median"] == pytest.approx(np.median(expected))
    # smaller than a cell: the cell under the zone
    assert stats.loc[20, ["count", "min", "max", "sum"]].tolist() == [1, *[values[7, 8]] * 3]
    assert stats.loc[30, ["count", "sum"]].tolist() == [1, values[5, 5]]
    # a sliver 3 m wide through no cell centre: the cell under its representative point
    assert stats.loc[40, "count"] == 1 and stats.loc[40, "sum"] in values[1:6, 2]
    assert stats.loc[50, "count"] == 0 and np.isnan(stats.loc[50, "mean"])
    assert "population" not in stats


def test_zonal_stats_refuses_what_it_cannot_do(known_raster: tuple[str, np.ndarray]) -> None:
    url, _ = known_raster
    zones = gpd.GeoDataFrame(geometry=[cell_box(0, 0)], crs=UTM)
    with pytest.raises(RasterError, match="unknown statistics \\['mode'\\]"):
        zonal_stats("known", zones, url=url, stats=("mode",))
    with pytest.raises(RasterError, match="no CRS"):
        zonal_stats("known", gpd.GeoDataFrame(geometry=[cell_box(0, 0)]), url=url)


def gdal_cutline_stats(raster: Path, zone: shapely.Geometry, tmp: Path) -> np.ndarray:
    """The cells of ``raster`` GDAL's warper keeps inside a cutline (on the same grid)."""
    with rasterio.open(raster) as src:
        left, bottom, right, top = src.bounds
        width, height, nodata = src.width, src.height, src.nodata
    cutline = tmp / "zone.geojson"
    cutline.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": shapely.geometry.mapping(zone),
                    }
                ],
            }
        )
    )
    out = tmp / "cut.tif"
    out.unlink(missing_ok=True)
    subprocess.run(
        [
            "gdalwarp",
            "-q",
            "-cutline",
            str(cutline),
            "-te",
            str(left),
            str(bottom),
            str(right),
            str(top),
            "-ts",
            str(width),
            str(height),
            "-dstnodata",
            str(nodata),
            str(raster),
            str(out),
        ],
        check=True,
        timeout=60,
    )
    with rasterio.open(out) as cut:
        data = cut.read(1)
    return data[data != nodata].astype(float)


def test_district_stats_agree_with_gdalwarp_cutlines(sample_db: str, tmp_path: Path) -> None:
    dem = tmp_path / "dem.tif"
    dem.write_bytes(raster_bytes("dem", url=sample_db))
    stats = district_stats("dem", url=sample_db)
    districts = read_layer("districts", url=sample_db)
    assert list(stats["id"]) == list(districts["id"])
    assert list(stats["name"]) == list(districts["name"])
    for zone, row in zip(districts.geometry, stats.itertuples(), strict=True):
        cells = gdal_cutline_stats(dem, zone, tmp_path)
        assert row.count == len(cells) > 0, row.name
        assert (row.min, row.max, row.sum) == (cells.min(), cells.max(), cells.sum()), row.name
        assert row.mean == pytest.approx(cells.mean())
    # the whole principality (level 8) holds the wards (level 10)
    assert (
        stats.set_index("level")["count"].loc[8] >= stats.loc[stats["level"] == 10, "count"].max()
    )


def test_population_of_the_helsinki_grid(raster_db: str, tmp_path: Path) -> None:
    grid = gpd.read_file(POPULATION)
    geod = Geod(ellps="WGS84")
    area_km2 = np.array([abs(geod.geometry_area_perimeter(g)[0]) / 1e6 for g in grid.geometry])
    density = grid["population"].to_numpy() / area_km2
    total = int(grid["population"].sum())
    assert total == 71_724  # shared/data/MANIFEST.md: 92 cells, 71,724 people
    union = gpd.GeoDataFrame(geometry=[grid.union_all()], crs=grid.crs)
    # rasterised at 50 m in Helsinki's own projected CRS, and at about 50 m in lon/lat
    projected = grid.to_crs("EPSG:3067")
    minx, miny, maxx, maxy = projected.total_bounds
    lat = grid.total_bounds[[1, 3]].mean()
    dx, dy = 50 / (111_320 * np.cos(np.radians(lat))), 50 / 110_900
    lon0, lat0, lon1, lat1 = grid.total_bounds
    grids = {
        "pop_metric": (
            projected.geometry,
            from_origin(minx - 100, maxy + 100, 50, 50),
            (int((maxy - miny + 200) / 50), int((maxx - minx + 200) / 50)),
            "EPSG:3067",
        ),
        "pop_lonlat": (
            grid.geometry,
            from_origin(lon0 - 2 * dx, lat1 + 2 * dy, dx, dy),
            (int((lat1 - lat0) / dy) + 4, int((lon1 - lon0) / dx) + 4),
            "EPSG:4326",
        ),
    }
    for name, (geometries, transform, shape, crs) in grids.items():
        raster = rasterize(
            zip(geometries, density, strict=True),
            out_shape=shape,
            transform=transform,
            fill=np.nan,
            dtype="float32",
        )
        path = write_raster(
            tmp_path / f"{name}.tif", raster, crs=crs, transform=transform, nodata=np.nan
        )
        info = ingest_raster(path, name=name, kind="population_density", url=raster_db)
        assert info.unit == "people/km²"
        stats = zonal_stats(name, union, url=raster_db)
        assert stats.loc[0, "population"] == pytest.approx(total, rel=0.01), name
        cells = zonal_stats(name, grid, url=raster_db)
        assert cells["population"].sum() == pytest.approx(total, rel=0.01), name
        assert cells["count"].min() > 0


@pytest.mark.parametrize(
    ("crs", "transform", "rtol"),
    [
        # lon/lat cells: each row's cells have their own geodesic area
        ("EPSG:4326", from_origin(24.90, 60.18, 0.001, 0.0005), 1e-6),
        # Web Mercator cells are 4 times too large on the ground at 60° N
        ("EPSG:3857", from_origin(2_772_000, 8_437_000, 50, 50), 1e-6),
    ],
)
def test_population_counts_true_cell_areas(
    raster_db: str, tmp_path: Path, crs: str, transform: Affine, rtol: float
) -> None:
    density = np.full((60, 50), 1000.0, dtype="float32")  # people per km²
    path = write_raster(tmp_path / "pop.tif", density, crs=crs, transform=transform)
    ingest_raster(path, name="density", kind="population_density", url=raster_db)
    with rasterio.open(path) as dataset:
        box = shapely.box(*dataset.bounds)
    zone = gpd.GeoSeries([box], crs=crs)
    # the box's area on the ellipsoid, its edges densified to follow the parallels
    lonlat = gpd.GeoSeries([shapely.segmentize(box, box.length / 4000)], crs=crs).to_crs(4326)
    area_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(lonlat.iloc[0])[0]) / 1e6
    # and a zone within one cell counts its own area's people, not the cell's
    dx, dy = transform.a, -transform.e
    left, top = transform.c, transform.f
    inner = shapely.box(left + 0.1 * dx, top - 0.3 * dy, left + 0.3 * dx, top - 0.1 * dy)
    corner = gpd.GeoSeries([inner], crs=crs)  # inside cell (0, 0), away from its centre
    small = corner.to_crs(4326).iloc[0]
    small_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(small)[0]) / 1e6
    zones = gpd.GeoDataFrame(geometry=pd.concat([zone, corner], ignore_index=True), crs=crs)
    stats = zonal_stats("density", zones, url=raster_db)
    assert stats["count"].tolist() == [density.size, 1]
    assert stats.loc[0, "population"] == pytest.approx(1000 * area_km2, rel=rtol)
    assert stats.loc[1, "population"] == pytest.approx(1000 * small_km2, rel=1e-6)


# --- pipe profiles --------------------------------------------------------------------------


def test_pipe_profiles_of_the_sample_city(sample_db: str) -> None:
    pipes = read_layer("pipelines", url=sample_db)
    profiles = pipe_profiles(url=sample_db)
    assert list(profiles["id"]) == list(pipes["id"]) and profiles.crs == "EPSG:4326"
    with open_raster("dem", url=sample_db) as dem:
        cells = dem.read(1, masked=True)
        low, high = float(cells.min()), float(cells.max())
    for column in ("ground_start", "ground_end", "ground_min", "ground_max", "ground_mean"):
        assert profiles[column].between(low, high).all(), column
    assert (profiles["ground_min"] <= profiles["ground_mean"] + 1e-9).all()
    assert (profiles["ground_mean"] <= profiles["ground_max"] + 1e-9).all()
    depth = pipes["depth_m"].to_numpy(dtype=float)
    assert np.allclose(profiles["pipe_start"], profiles["ground_start"] - depth)
    assert np.allclose(profiles["pipe_end"], profiles["ground_end"] - depth)
    assert np.allclose(profiles["cover_min_m"], depth)
    drop = profiles["pipe_start"] - profiles["pipe_end"]
    assert np.allclose(profiles["slope_pct"], drop / profiles["length_m"] * 100)
    lengths = pipes.geometry.to_crs(UTM).length
    assert np.allclose(profiles["length_m"], lengths)
    assert (profiles["samples"] >= np.ceil(lengths / 10) + 1).all()
    sewer = profiles["network"] == "sewer"
    assert profiles["adverse"].equals(sewer & (-drop > 0.5))
    assert 0 < profiles["adverse"].sum() < sewer.sum()
    gas = pipe_profiles(url=sample_db, network="gas", spacing_m=5)
    assert list(gas["id"]) == list(pipes.loc[pipes["network"] == "gas", "id"])
    with pytest.raises(RasterError, match="unknown network 'steam'"):
        pipe_profiles(url=sample_db, network="steam")
    with pytest.raises(RasterError, match="spacing_m"):
        pipe_profiles(url=sample_db, spacing_m=0)


def test_ground_is_gdal_nearest_and_bilinear_between_cell_centres(sample_db: str) -> None:
    pipes = read_layer("pipelines", url=sample_db)
    starts = np.array([line.coords[0] for line in pipes.geometry])
    nearest = pipe_profiles(url=sample_db, interpolation="nearest")
    out = subprocess.run(
        ["gdallocationinfo", "-valonly", "-wgs84", str(DEM)],
        input="\n".join(f"{x:.12f} {y:.12f}" for x, y in starts),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert np.array_equal(nearest["ground_start"], np.array(out.stdout.split(), dtype=float))
    # bilinear: scipy's linear interpolation on the cell centres, away from the edges
    with rasterio.open(DEM) as dem:
        values = dem.read(1).astype(float)
        t = dem.transform
    lons = t.c + (np.arange(values.shape[1]) + 0.5) * t.a
    lats = t.f + (np.arange(values.shape[0]) + 0.5) * t.e
    interpolate = RegularGridInterpolator((lats[::-1], lons), values[::-1])
    inner = (
        (starts[:, 0] > lons[0])
        & (starts[:, 0] < lons[-1])
        & (starts[:, 1] > lats[-1])
        & (starts[:, 1] < lats[0])
    )
    assert inner.mean() > 0.9  # the DEM reaches past the city: nearly all are compared
    bilinear = pipe_profiles(url=sample_db)["ground_start"].to_numpy()
    assert np.allclose(bilinear[inner], interpolate(starts[inner][:, ::-1]), atol=1e-6)


def test_the_sample_city_brings_its_dem(sample_db: str) -> None:
    listed = list_rasters(url=sample_db)
    assert listed[["name", "kind", "unit", "source"]].values.tolist() == [
        ["dem", "dem", "m", "sample"]
    ]
    assert raster_bytes("dem", url=sample_db) == DEM.read_bytes()


def test_a_bad_dem_leaves_no_half_city(raster_db: str, tmp_path: Path) -> None:
    for source in SAMPLE.glob("*.geojson"):
        shutil.copy(source, tmp_path / source.name)
    write_raster(tmp_path / "dem.tif", np.ones((2, 4, 4), dtype="int16"))
    with pytest.raises(IngestError, match=r"dem\.tif: field 'bands'"):
        load_sample(directory=tmp_path, url=raster_db)
    assert twin.connect(raster_db).layers()["features"].sum() == 0
    assert list_rasters(url=raster_db).empty


def test_a_bad_layer_leaves_no_dem(raster_db: str, tmp_path: Path) -> None:
    for source in SAMPLE.glob("*.geojson"):
        shutil.copy(source, tmp_path / source.name)
    shutil.copy(DEM, tmp_path / "dem.tif")
    closures = json.loads((tmp_path / "closures.geojson").read_text())
    del closures["features"][0]["properties"]["kind"]
    (tmp_path / "closures.geojson").write_text(json.dumps(closures))
    with pytest.raises(IngestError, match=r"closures\.geojson: feature 1"):
        load_sample(directory=tmp_path, url=raster_db)
    assert twin.connect(raster_db).layers()["features"].sum() == 0
    assert table_state(raster_db)[0] == []


# --- floods ---------------------------------------------------------------------------------


def test_a_stored_flood_raster_closes_the_same_roads_as_its_file(
    sample_db: str, raster_db: str, tmp_path: Path
) -> None:
    from routing import RoadNetwork
    from routing.closures import flooded_edges

    # a metre of water over the lower half of the harbour district, nothing elsewhere
    transform = from_origin(7.415, 43.740, 0.0005, 0.0005)
    depth = np.zeros((20, 20), dtype="float32")
    depth[10:, :12] = 1.0
    path = write_raster(tmp_path / "flood.tif", depth, crs="EPSG:4326", transform=transform)
    ingest_raster(path, name="flood", kind="flood_depth", url=raster_db)
    stored = flood_raster("flood", url=raster_db)
    network = RoadNetwork.load(profile="car", url=sample_db)
    flooded = flooded_edges(network, stored, threshold_m=0.3)
    assert len(flooded) > 0
    assert np.array_equal(flooded, flooded_edges(network, path, threshold_m=0.3))


def test_helsinki_dem_zonal_mean(raster_db: str) -> None:
    info = ingest_raster(HELSINKI_DEM, name="lapinlahti", kind="dem", url=raster_db)
    assert info.status == "added" and info.converted_from is None
    with rasterio.open(HELSINKI_DEM) as dem:
        whole = gpd.GeoDataFrame(geometry=[shapely.box(*dem.bounds)], crs=dem.crs)
        values = dem.read(1, masked=True).compressed().astype(float)
    stats = zonal_stats("lapinlahti", whole, url=raster_db)
    assert stats.loc[0, "count"] == len(values)
    assert stats.loc[0, "mean"] == pytest.approx(values.mean())
