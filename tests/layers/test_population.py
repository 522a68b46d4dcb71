"""Residents per building: from floor area at a stated density, or from a population raster."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from layers.errors import ParameterError
from layers.population import (
    M2_PER_PERSON,
    estimate_population,
    floor_area_m2,
    population_from_raster,
    residential,
    storeys,
)
from layers.rasters import RasterError, ingest_raster, zonal_stats
from tests.conftest import SAMPLE

UTM = "EPSG:32632"
X0, Y0 = 370_000.0, 4_846_000.0  # Monaco, in its UTM zone


def footprints(rows: list[dict[str, object]]) -> gpd.GeoDataFrame:
    """Buildings drawn in UTM (``x``, ``y``, ``w``, ``h`` metres from the origin), in lon/lat."""
    shapes = [
        shapely.box(X0 + r["x"], Y0 + r["y"], X0 + r["x"] + r["w"], Y0 + r["y"] + r["h"])  # type: ignore[operator]
        for r in rows
    ]
    attributes = [{k: v for k, v in r.items() if k not in "xywh"} for r in rows]
    return gpd.GeoDataFrame(attributes, geometry=shapes, crs=UTM).to_crs(4326)


def test_population_is_residential_floor_area_over_the_density() -> None:
    b = footprints(
        [
            {"x": 0, "y": 0, "w": 20, "h": 10, "use": "apartments", "levels": 4, "height_m": 30},
            {"x": 50, "y": 0, "w": 10, "h": 10, "use": "house", "height_m": 9.2},
            {"x": 100, "y": 0, "w": 30, "h": 30, "use": "yes"},
            {"x": 150, "y": 0, "w": 30, "h": 30, "use": None, "levels": 2},
            {"x": 200, "y": 0, "w": 40, "h": 40, "use": "commercial", "levels": 5},
            {"x": 250, "y": 0, "w": 10, "h": 10, "use": "Terrace", "levels": 0, "height_m": 3},
        ]
    )
    assert storeys(b).tolist() == [4, 3, 3, 2, 5, 1]  # levels, 9.2/3, 10 m default / 3, ...
    assert floor_area_m2(b, metric_crs=UTM).to_numpy() == pytest.approx(
        [800, 300, 2700, 1800, 8000, 100], rel=1e-6
    )
    assert residential(b).tolist() == [True, True, True, True, False, True]
    people = estimate_population(b, metric_crs=UTM)
    expected = np.floor(np.array([800, 300, 2700, 1800, 0, 100]) / M2_PER_PERSON + 0.5)
    assert people.tolist() == expected.tolist()
    assert people.dtype == "int64" and (people.index == b.index).all()
    assert "36.52 m² per person" in people.attrs["derived"]
    assert "2020 census" in people.attrs["derived"]
    denser = estimate_population(b, metric_crs=UTM, m2_per_person=20)
    assert denser.iloc[0] == 40
    assert "census" not in denser.attrs["derived"]


def test_the_sample_city_gets_residents_in_homes_only() -> None:
    b = gpd.read_file(SAMPLE / "buildings.geojson")
    people = estimate_population(b, metric_crs=UTM)
    homes = b["use"].isin(["apartments", "residential", "house", "yes"])
    assert people[homes].sum() > 10_000
    assert people[b["use"].isin(["commercial", "retail", "school", "hotel"])].sum() == 0
    # areas in UTM agree with an equal-area CRS (ETRS89 LAEA Europe) to UTM's scale error
    other = estimate_population(b, metric_crs="EPSG:3035")
    assert other.sum() == pytest.approx(people.sum(), rel=0.002)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"m2_per_person": 0}, "m2_per_person"),
        ({"m2_per_person": -3}, "m2_per_person"),
        ({"m2_per_person": float("nan")}, "m2_per_person"),
        ({"metric_crs": "EPSG:4326"}, "metric_crs"),
        ({"metric_crs": "nonsense"}, "metric_crs"),
    ],
)
def test_bad_input_names_the_parameter(kwargs: dict[str, object], parameter: str) -> None:
    b = footprints([{"x": 0, "y": 0, "w": 10, "h": 10, "use": "house"}])
    args: dict[str, object] = {"metric_crs": UTM, **kwargs}
    with pytest.raises(ParameterError) as raised:
        estimate_population(b, **args)  # type: ignore[arg-type]
    assert raised.value.parameter == parameter
    with pytest.raises(ParameterError, match="no CRS"):
        estimate_population(b.set_crs(None, allow_override=True), metric_crs=UTM)


def write_density(path: Path, density: np.ndarray, *, cell: float = 100.0) -> Path:
    """A population density GeoTIFF (people/km²) in UTM with its corner at the origin."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=density.shape[1],
        height=density.shape[0],
        count=1,
        dtype="float32",
        crs=UTM,
        transform=Affine(cell, 0, X0, 0, -cell, Y0 + cell * density.shape[0]),
    ) as out:
        out.write(density.astype("float32")[np.newaxis])
    return path


def test_a_raster_is_shared_over_the_buildings_of_each_cell(raster_db: str, tmp_path: Path) -> None:
    # 3 × 3 cells of 100 m: 1 km² = 100 cells, so a density of 10 000 is 100 people a cell
    density = np.array([[10_000, 0, 5_000], [20_000, 10_000, 0], [0, 0, 30_000]], dtype=float)
    path = write_density(tmp_path / "pop.tif", density)
    ingest_raster(path, name="people", kind="population_density", url=raster_db)
    b = footprints(
        [
            # cell row 2 (south), col 0: density 0 -> nobody
            {"x": 10, "y": 10, "w": 20, "h": 20, "use": "house"},
            # cell row 1, col 0 (200 people): two homes of 400 and 1200 m² and a shop
            {"x": 10, "y": 110, "w": 20, "h": 20, "use": "house"},
            {"x": 40, "y": 140, "w": 20, "h": 20, "use": "apartments", "levels": 3},
            {"x": 70, "y": 170, "w": 20, "h": 20, "use": "retail", "levels": 1},
            # cell row 0, col 0 (100 people): a school alone takes them all
            {"x": 10, "y": 210, "w": 50, "h": 50, "use": "school"},
            # cell row 2, col 2 (300 people): one building
            {"x": 250, "y": 10, "w": 10, "h": 10, "use": "yes"},
            # outside the raster
            {"x": 400, "y": 400, "w": 10, "h": 10, "use": "house"},
        ]
    )
    people = population_from_raster(b, "people", raster_db, metric_crs=UTM)
    # the oracle: the raster's own count of each cell's people (true areas, a hair off 100)
    cells = gpd.GeoDataFrame(
        geometry=[
            shapely.box(X0, Y0 + 100, X0 + 100, Y0 + 200),
            shapely.box(X0, Y0 + 200, X0 + 100, Y0 + 300),
            shapely.box(X0 + 200, Y0, X0 + 300, Y0 + 100),
        ],
        crs=UTM,
    )
    counted = zonal_stats("people", cells, url=raster_db)["population"].round().tolist()
    assert counted == pytest.approx([200, 100, 300], abs=2)
    # the house: 400 m² × 3 storeys (the 10 m default height); the apartments: 400 m² × 3
    # levels. Equal floor areas share the cell's people equally; the shop takes none
    assert people.iloc[0] == 0
    assert people.iloc[1] + people.iloc[2] == counted[0]
    assert abs(people.iloc[1] - people.iloc[2]) <= 1
    assert people.iloc[3] == 0
    assert people.iloc[4] == counted[1]
    assert people.iloc[5] == counted[2]
    assert people.iloc[6] == 0
    # the people of cells with no building (row 0 col 2, row 1 col 1) are not placed
    assert people.attrs["unplaced"] == pytest.approx(150, abs=2)
    assert "people" in people.attrs["derived"]


def test_a_raster_of_another_kind_or_name_is_refused(raster_db: str, tmp_path: Path) -> None:
    path = write_density(tmp_path / "dem.tif", np.full((2, 2), 50.0))
    ingest_raster(path, name="ground", kind="dem", url=raster_db)
    b = footprints([{"x": 10, "y": 10, "w": 20, "h": 20, "use": "house"}])
    with pytest.raises(RasterError, match="population_density"):
        population_from_raster(b, "ground", raster_db, metric_crs=UTM)
    with pytest.raises(RasterError, match="no raster named 'nothing'"):
        population_from_raster(b, "nothing", raster_db, metric_crs=UTM)


def test_buildings_outside_the_raster_get_no_one(raster_db: str, tmp_path: Path) -> None:
    path = write_density(tmp_path / "pop.tif", np.full((2, 2), 10_000.0))
    ingest_raster(path, name="people", kind="population_density", url=raster_db)
    b = footprints([{"x": 5_000, "y": 5_000, "w": 20, "h": 20, "use": "house"}])
    people = population_from_raster(b, "people", raster_db, metric_crs=UTM)
    assert people.tolist() == [0]
    assert people.attrs["unplaced"] == pytest.approx(400, abs=2)
