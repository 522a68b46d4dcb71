"""``twin city init``: a second real city (central Helsinki) set up in one command, checked
against pyosmium's own count of its extract (tests/data/helsinki.py), and every refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import httpx2 as httpx
import pytest
import shapely
import sqlalchemy as sa

from layers.database import get_engine
from layers.settings import TwinSettings
from tests.conditions import api_server
from tests.conftest import ROOT, SAMPLE, SHARED, _fresh_database
from tests.data.helsinki import EXTRACT, KAMPPI, count_osm, write_variants
from twin.founding import CityError, init_city
from twin.sample import load_sample

TWIN = [sys.executable, "-m", "twin"]
MONACO_2025 = SHARED / "monaco" / "monaco-2025.osm.pbf"
BOX = ",".join(str(v) for v in KAMPPI)


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"COLUMNS": "200", "TWIN_DATABASE_URL": url}
    for name in ("TWIN_CITY_NAME", "TWIN_CITY_BBOX", "TWIN_METRIC_CRS"):
        environment.pop(name, None)  # the city comes from the store
    return subprocess.run(
        [*TWIN, *args], capture_output=True, text=True, env=environment, timeout=300
    )


def current(url: str, table: str) -> dict[str, str]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, source FROM {table} WHERE valid_to IS NULL")).all()
    return {row[0]: row[1] for row in rows}


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_variants(tmp_path_factory.mktemp("helsinki"))


@pytest.fixture(scope="module")
def helsinki() -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    """A database set up by one command from the gzipped XML extract, clipped to Kamppi."""
    url = _fresh_database("_helsinki")
    directory = Path(url.rsplit("/", 1)[1])  # a name of this run
    files = write_variants(Path("/tmp") / directory)
    done = run(
        url, "city", "init", str(files[".osm.xml.gz"]), "--bbox", BOX, "--district-grid", "250"
    )
    yield url, done


def test_one_command_loads_what_pyosmium_counts(
    helsinki: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, done = helsinki
    assert done.returncode == 0, done.stderr
    oracle = count_osm(EXTRACT, KAMPPI)
    for layer in ("cameras", "signals", "pipe_nodes", "pipelines", "buildings"):
        ids = {i.rsplit("/", 1)[0] if i.count("/") == 2 else i for i in current(url, layer)}
        assert ids == oracle[layer], layer
    road_ways = {"/".join(i.split("/")[:2]) for i in current(url, "roads")}
    assert road_ways == oracle["road_ways"]
    # every road edge ends on an intersection the load made
    with get_engine(url).connect() as conn:
        loose = conn.execute(
            sa.text(
                "SELECT count(*) FROM roads r WHERE r.valid_to IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM intersections i WHERE i.valid_to IS NULL "
                "AND i.node_id IN (r.source_node, r.target_node))"
            )
        ).scalar()
        outside = conn.execute(
            sa.text(
                "SELECT count(*) FROM buildings WHERE valid_to IS NULL AND NOT "
                "ST_CoveredBy(geom, ST_MakeEnvelope(:a, :b, :c, :d, 4326))"
            ),
            dict(zip("abcd", KAMPPI, strict=True)),
        ).scalar()
    assert loose == 0
    assert outside == 0


def test_the_report_names_what_was_clipped_and_what_is_missing(
    helsinki: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, done = helsinki
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    # buildings: 26 reach outside the box and are cut, 299 lie outside
    assert [c.strip() for c in lines["buildings"].split("│")[2:5]] == ["147", "26", "299"]
    assert "districts: a grid of 12 cells of 250 m (网格)" in done.stdout
    assert "missing dem" in done.stdout
    assert "twin raster ingest" in done.stdout
    assert "population estimated" in done.stdout
    with get_engine(url).connect() as conn:
        name, bbox, crs, report = conn.execute(
            sa.text("SELECT name, bbox, metric_crs, report FROM city_settings")
        ).one()
    assert (name, crs) == ("Helsinki", "EPSG:32635")
    assert tuple(bbox) == KAMPPI
    assert {g["input"] for g in report["missing"]} >= {"dem", "resources"}


def test_every_process_serves_the_city_the_store_was_given(
    helsinki: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, _ = helsinki
    settings = TwinSettings(database_url=url)
    assert settings.city_name == "Helsinki"
    assert settings.metric_crs == "EPSG:32635"
    assert settings.city_bbox == KAMPPI
    # the environment still wins
    os.environ["TWIN_CITY_NAME"] = "Stadi"
    try:
        assert TwinSettings(database_url=url).city_name == "Stadi"
    finally:
        del os.environ["TWIN_CITY_NAME"]


def test_a_second_run_updates_rather_than_duplicates(
    helsinki: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, _ = helsinki
    before = current(url, "roads")
    again = run(url, "city", "init", str(EXTRACT), "--bbox", BOX)
    assert again.returncode == 0, again.stderr
    assert current(url, "roads") == before
    row = next(line for line in again.stdout.splitlines() if "│ roads" in line)
    # features, cut, outside, added, changed, unchanged, retired
    cells = [c.strip() for c in row.split("│")[2:9]]
    assert cells[3:5] == ["0", "0"] and cells[5] == cells[0]
    # the grid districts of the first run stay (this run made none)
    assert len(current(url, "districts")) == 12


def test_every_osm_format_is_read_alike(variants: dict[str, Path], db_url: str) -> None:
    counts = {}
    for ending, path in variants.items():
        plan = init_city(path, bbox=KAMPPI, dry_run=True, url=db_url)
        counts[ending] = {load.layer: load.features for load in plan.layers}
        assert not plan.written
    assert len({json.dumps(c, sort_keys=True) for c in counts.values()}) == 1, counts
    assert counts[".osm.pbf"]["cameras"] == 92
    # the extract cut its boundaries: no districts, and the grid is offered
    offered = next(gap for gap in plan.missing if gap.input == "districts")
    assert "--district-grid" in offered.remedy and "网格" in offered.remedy


def test_boundary_by_name_is_the_widest_and_clips(db_url: str) -> None:
    plan = init_city(MONACO_2025, boundary="Monte-Carlo", dry_run=True, url=db_url)
    assert plan.name == "Monte-Carlo"
    assert "relation/5986438" in plan.extent_from
    roads = next(load for load in plan.layers if load.layer == "roads")
    assert roads.cut > 0 and roads.dropped > 0
    assert plan.metric_crs == "EPSG:32632"
    with pytest.raises(CityError, match=r"no administrative boundary named 'Atlantis'.*Larvotto"):
        init_city(MONACO_2025, boundary="Atlantis", dry_run=True, url=db_url)
    # "Monaco" names the commune (level 8) and the country (level 2): the widest is taken
    widest = init_city(MONACO_2025, boundary="monaco", dry_run=True, url=db_url)
    assert "relation/1124039" in widest.extent_from


def test_another_citys_data_is_not_mixed_in(tmp_path: Path) -> None:
    url = _fresh_database("_founding_replace")
    load_sample(directory=SAMPLE, url=url)
    proposed = run(url, "city", "init", str(EXTRACT), "--bbox", BOX, "--dry-run")
    assert proposed.returncode == 1  # a proposal says what the load would refuse
    assert "other sources: sample:" in proposed.stderr
    refused = run(url, "city", "init", str(EXTRACT), "--bbox", BOX)
    assert refused.returncode == 1
    assert "other sources: sample:" in refused.stderr
    assert "--replace" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert all(source.startswith("sample:") for source in current(url, "roads").values())
    done = run(url, "city", "init", str(EXTRACT), "--bbox", BOX, "--replace")
    assert done.returncode == 0, done.stderr
    assert set(current(url, "roads").values()) == {"openstreetmap"}
    # the sample's 1575 roads are counted as retired; Monaco's DEM goes too, and is missing
    row = next(line for line in done.stdout.splitlines() if "│ roads" in line)
    assert row.split("│")[8].strip() == "1575"
    assert "missing dem" in done.stdout
    with get_engine(url).connect() as conn:
        dems = conn.execute(sa.text("SELECT count(*) FROM rasters WHERE valid_to IS NULL")).scalar()
        report = conn.execute(
            sa.text("SELECT report FROM city_settings ORDER BY version DESC LIMIT 1")
        ).scalar()
    assert dems == 0
    assert report["written"] is True  # the load's figures, not the proposal's
    with get_engine(url).connect() as conn:
        kept = conn.execute(
            sa.text("SELECT count(*) FROM roads WHERE source = 'sample:roads'")
        ).scalar()
    assert kept == 1575  # retired, in the history


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere.osm.pbf"], "no such file or folder"),
        (["README.md"], "neither an OpenStreetMap extract"),
        ([str(EXTRACT), "--bbox", "1,2,3"], "--bbox: expected four numbers"),
        ([str(EXTRACT), "--bbox", "30,60,20,61"], "--bbox: bbox must be"),
        ([str(EXTRACT), "--crs", "EPSG:4326"], "--crs: EPSG:4326 is not a projected CRS"),
        ([str(EXTRACT), "--district-grid", "1"], "--district-grid: the district grid"),
        ([str(EXTRACT), "--boundary", "Kamppi"], "no administrative boundary named 'Kamppi'"),
        ([str(EXTRACT), "--bbox", "1,1,2,2"], "nothing of it lies in the extent"),
        ([str(EXTRACT), "--crs", "EPSG:3857"], "--crs: EPSG:3857 stretches lengths by 101%"),
    ],
)
def test_refusals_are_messages(args: list[str], message: str, db_url: str) -> None:
    done = run(db_url, "city", "init", *args, "--dry-run")
    assert "Traceback" not in done.stderr
    assert done.returncode in (1, 2), done.stdout
    assert message in done.stderr


def test_a_folder_of_gis_files_with_chinese_columns(tmp_path: Path, db_url: str) -> None:
    """GIS files in a Gauss-Krüger zone with Chinese attribute names, mapped by a TOML file."""
    roads = init_city(EXTRACT, bbox=KAMPPI, dry_run=True, url=db_url)
    assert roads.layers
    from layers.osm import read_osm

    frames = read_osm(EXTRACT, ["roads", "cameras"])
    road_file = frames["roads"].rename(columns={"class": "道路等级", "name": "路名", "id": "编号"})
    road_file = road_file[["编号", "道路等级", "路名", "geometry"]].to_crs("EPSG:4547")
    road_file.to_file(tmp_path / "道路.gpkg", layer="道路", driver="GPKG")
    cameras = frames["cameras"][["id", "geometry"]].rename(columns={"id": "设备编号"})
    cameras.to_crs("EPSG:4490").to_file(tmp_path / "摄像头.shp", encoding="GB18030")
    (tmp_path / "twin-mapping.toml").write_text(
        """
name = "测试市"
attribution = "测试市自然资源和规划局"
[layers.roads]
file = "道路.gpkg"
id = "编号"
[layers.roads.columns]
class = "道路等级"
name = "路名"
[layers.cameras]
file = "摄像头.shp"
id = "设备编号"
""",
        encoding="utf-8",
    )
    plan = init_city(tmp_path, bbox=KAMPPI, dry_run=True, url=db_url)
    loads = {load.layer: load for load in plan.layers}
    assert plan.name == "测试市"
    assert loads["cameras"].features == 92
    assert loads["roads"].features > 0 and loads["intersections"].features > 0
    # the roads' nodes come from their ends: written, every edge ends on an intersection
    url = _fresh_database("_founding_folder")
    written = init_city(tmp_path, bbox=KAMPPI, url=url)
    assert written.written
    with get_engine(url).connect() as conn:
        loose = conn.execute(
            sa.text(
                "SELECT count(*) FROM roads r WHERE r.valid_to IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM intersections i WHERE i.node_id = r.target_node)"
            )
        ).scalar()
        credit = conn.execute(sa.text("SELECT attribution FROM data_sources")).scalars().all()
    assert loose == 0
    assert set(credit) == {"测试市自然资源和规划局"}  # one per source file
    assert loads["roads"].dropped > 0
    (tmp_path / "twin-mapping.toml").write_text(
        '[layers.roads]\nfile = "道路.gpkg"\n[layers.roads.columns]\nclass = "等级"\n',
        encoding="utf-8",
    )
    with pytest.raises(Exception, match=r"等级.*no such column.*道路等级"):
        init_city(tmp_path, bbox=KAMPPI, dry_run=True, url=db_url)
    (tmp_path / "twin-mapping.toml").write_text('[layers.streets]\nfile = "道路.gpkg"\n')
    with pytest.raises(CityError, match=r"\[layers.streets\]: no such layer"):
        init_city(tmp_path, dry_run=True, url=db_url)
    (tmp_path / "twin-mapping.toml").write_text(
        'attributon = "x"\n[layers.roads]\nfile = "道路.gpkg"\n'
    )
    with pytest.raises(CityError, match="unknown key attributon"):
        init_city(tmp_path, dry_run=True, url=db_url)
    (tmp_path / "twin-mapping.toml").write_bytes('name = "测试市"\n'.encode("gb18030"))
    with pytest.raises(CityError, match="save the mapping file as UTF-8"):
        init_city(tmp_path, dry_run=True, url=db_url)


def test_osm_refusals_name_the_osm_id(tmp_path: Path, db_url: str) -> None:
    """A refused OSM feature is named by its type and id, not only its place in the stream."""
    extract = tmp_path / "far.osm"
    extract.write_text(
        """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
 <node id="1" lat="60.17" lon="24.94" version="1"/>
 <node id="2" lat="60.171" lon="24.941" version="1"/>
 <way id="77" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>
</osm>
""",
        encoding="utf-8",
    )
    environment = os.environ | {"TWIN_DATABASE_URL": db_url, "COLUMNS": "200"}
    done = subprocess.run(
        [*TWIN, "ingest", "roads", str(extract)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 1
    assert "feature 1 (way/77/0)" in done.stderr
    assert "outside the city's extent" in done.stderr


def test_clipping_keeps_ways_on_real_nodes() -> None:
    from layers.osm import read_extract

    extract = read_extract(EXTRACT)
    layer_set = extract.layers(["roads", "intersections"], extent=KAMPPI)
    roads = layer_set.frames["roads"]
    nodes = set(layer_set.frames["intersections"]["node_id"])
    assert set(roads["source_node"]) | set(roads["target_node"]) <= nodes
    assert layer_set.clipped["roads"].cut > 0
    box = shapely.box(*KAMPPI)
    assert gpd.GeoSeries(roads.geometry).covered_by(box).all()


def test_the_viewer_opens_on_the_data_and_credits_what_was_loaded(
    helsinki: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, _ = helsinki
    with api_server(url, root=ROOT) as address:  # the city comes from the store
        config = httpx.get(f"{address}/viewer/config.json", timeout=30).json()
    view = config["view"]
    west, south, east, north = KAMPPI
    assert view["from"] == "data"
    assert west < view["longitude"] < east and south < view["latitude"] < north
    assert config["title"] == "CityTwin — Helsinki"
    credited = " ".join(c["attribution"] for c in config["credits"])
    assert "OpenStreetMap" in credited
    assert "SRTM" not in credited  # no DEM was loaded


def test_population_from_a_population_raster(tmp_path: Path) -> None:
    """HSY's real 250 m population grid, rasterised as people/km², shared out over buildings."""
    import numpy as np
    import rasterio
    from affine import Affine

    from layers.rasters import ingest_raster

    grid = gpd.read_file(SHARED / "helsinki" / "helsinki_population_grid_2020.gpkg").to_crs(3067)
    west, south, east, north = grid.total_bounds
    width, height = round((east - west) / 50), round((north - south) / 50)  # 50 m pixels
    transform = Affine((east - west) / width, 0, west, 0, -(north - south) / height, north)
    density = grid.assign(km2=grid.area / 1e6)
    # each pixel takes the density of the cell holding its centre
    xs = west + (np.arange(width) + 0.5) * (east - west) / width
    ys = north - (np.arange(height) + 0.5) * (north - south) / height
    px, py = np.meshgrid(xs, ys)
    values = np.zeros((height, width), dtype="float32")
    for cell, people, km2 in zip(density.geometry, density.population, density.km2, strict=True):
        values[shapely.contains_xy(cell, px, py)] = people / km2
    path = tmp_path / "population.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        crs="EPSG:3067",
        transform=transform,
    ) as out:
        out.write(values, 1)
    url = _fresh_database("_founding_population")
    ingest_raster(path, name="population", kind="population_density", url=url)
    plan = init_city(EXTRACT, bbox=KAMPPI, population_raster="population", url=url)
    note = next(load.note for load in plan.layers if load.layer == "buildings")
    assert note is not None and "population" in note
    with get_engine(url).connect() as conn:
        people = conn.execute(
            sa.text("SELECT sum(population) FROM buildings WHERE valid_to IS NULL")
        ).scalar()
    inside = grid.to_crs(4326).clip(shapely.box(*KAMPPI))
    assert 0 < people <= int(np.ceil(grid.population.sum()))
    assert len(inside) > 0
    with pytest.raises(CityError, match="population raster 'nosuch'"):
        init_city(EXTRACT, bbox=KAMPPI, population_raster="nosuch", dry_run=True, url=url)
