"""Bulk ingest benchmark: CityTwin vs ogr2ogr (PG_USE_COPY) vs GeoDataFrame.to_postgis.

Not a test. Builds a GeoPackage of >= 200,000 real building footprints (the OpenStreetMap
buildings of ../shared/data/monaco/monaco.osm.pbf, Monaco and its neighbouring communes,
tiled side by side until there are enough), then loads the same file into the same PostGIS
three ways, in one run, and prints features/s and the ratios:

- ``twin``: ``layers.ingest.ingest("buildings", ...)``: read, validate every feature against
  the catalog in chunks of ``layers.ingest.STREAM_CHUNK`` while the checked chunks are COPYed
  (binary) into the versioned ``buildings`` table, its indexes dropped and rebuilt after the
  COPY (a first import), in one transaction;
- ``ogr2ogr``: GDAL's loader with ``PG_USE_COPY=YES`` into a new table with a GiST index;
- ``to_postgis``: ``geopandas.read_file`` + ``GeoDataFrame.to_postgis`` into a new table.

Usage: ``python bench/ingest.py [--features 200000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "data" / "monaco" / "monaco.osm.pbf"
OUT = HERE / "out"
EXTENT = (6.5, 43.0, 9.5, 45.5)  # room for the tiled copies
os.environ.setdefault("TWIN_CITY_BBOX", json.dumps(EXTENT))

from layers.database import database_url, drop_database, get_engine, upgrade  # noqa: E402
from layers.ingest import ingest  # noqa: E402
from layers.osm import read_osm  # noqa: E402


def make_file(features: int) -> Path:
    """Write the benchmark GeoPackage (cached in bench/out)."""
    path = OUT / f"buildings_{features}.gpkg"
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    buildings = read_osm(SOURCE, ["buildings"])["buildings"]
    buildings = buildings[["id", "height_m", "levels", "use", "name", "geometry"]].astype(
        {"height_m": "float64", "levels": "Int64"}
    )
    minx, miny, maxx, maxy = buildings.total_bounds
    width, height = maxx - minx, maxy - miny
    copies, i = [], 0
    while sum(len(c) for c in copies) < features:
        dx, dy = (i % 4) * width, (i // 4) * height
        copy = buildings.copy()
        copy["id"] = copy["id"] + f"/copy{i}"
        copy["geometry"] = shapely.transform(
            copy.geometry.to_numpy(), lambda xy, dx=dx, dy=dy: xy + np.array([dx, dy])
        )
        copies.append(copy)
        i += 1
    frame = gpd.GeoDataFrame(pd.concat(copies, ignore_index=True).head(features), crs="EPSG:4326")
    frame.to_file(path, layer="buildings", engine="pyogrio")
    return path


def run_twin(path: Path, url: str) -> float:
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("TRUNCATE buildings"))
    started = time.perf_counter()
    report = ingest("buildings", path, source="bench", url=url)
    elapsed = time.perf_counter() - started
    assert report.added == report.read
    return elapsed


def run_twin_unchanged(path: Path, url: str) -> float:
    started = time.perf_counter()
    report = ingest("buildings", path, source="bench", url=url)
    assert report.added == report.changed == 0
    return time.perf_counter() - started


def run_ogr2ogr(path: Path, url: str) -> float:
    target = make_url(url)
    pg = (
        f"PG:dbname={target.database} host={target.host} port={target.port or 5432} "
        f"user={target.username}"
    )
    command = [
        "ogr2ogr",
        "-f",
        "PostgreSQL",
        pg,
        str(path),
        "buildings",
        "-nln",
        "ogr_buildings",
        "-overwrite",
        "-lco",
        "GEOMETRY_NAME=geom",
        "-lco",
        "SPATIAL_INDEX=GIST",
        "-nlt",
        "PROMOTE_TO_MULTI",
        "-t_srs",
        "EPSG:4326",
        "--config",
        "PG_USE_COPY",
        "YES",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def run_to_postgis(path: Path, url: str) -> float:
    engine = sa.create_engine(url)
    started = time.perf_counter()
    frame = gpd.read_file(path, engine="pyogrio")
    frame.to_postgis("gpd_buildings", engine, if_exists="replace", index=False)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def count(url: str, table: str) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = make_url(database_url(os.environ.get("TWIN_DATABASE_URL")))
    url = base.set(database=f"{base.database}_bench").render_as_string(hide_password=False)
    path = make_file(args.features)
    drop_database(url)
    upgrade(url)
    print(f"file: {path.name}, {args.features:,} buildings, {path.stat().st_size / 1e6:.0f} MB")
    runs = {
        "twin": run_twin,
        "ogr2ogr": run_ogr2ogr,
        "to_postgis": run_to_postgis,
        "twin (re-import, unchanged)": run_twin_unchanged,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            times[name].append(run(path, url))
    assert count(url, "buildings") == count(url, "ogr_buildings") == count(url, "gpd_buildings")
    best = {name: min(values) for name, values in times.items()}
    print(f"{'loader':30} {'best s':>7} {'median s':>9} {'features/s':>11} {'s / twin s':>11}")
    for name, values in times.items():
        rate = args.features / best[name]
        ratio = best[name] / best["twin"]
        median = statistics.median(values)
        print(f"{name:30} {best[name]:7.2f} {median:9.2f} {rate:11,.0f} {ratio:10.2f}x")


if __name__ == "__main__":
    main()
