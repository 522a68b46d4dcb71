"""Grid cells (网格) as districts: squares in the metric CRS, covering the box, ready to load."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from layers.errors import ParameterError
from layers.grids import GRID_LEVEL, district_grid
from layers.ingest import ingest_frame
from layers.onemap import district_stats
from layers.queries import read_layer
from layers.settings import get_settings

MONACO = (7.38, 43.70, 7.46, 43.77)
UTM = "EPSG:32632"
#: A CGCS2000 3-degree Gauss-Krüger zone (central meridian 117° E) and a box in Tianjin.
GK = "EPSG:4548"
TIANJIN = (117.15, 39.08, 117.25, 39.16)


@pytest.mark.parametrize(("bbox", "crs", "cell"), [(MONACO, UTM, 500), (TIANJIN, GK, 1000)])
def test_cells_are_squares_of_the_size_on_multiples_of_it(
    bbox: tuple[float, float, float, float], crs: str, cell: float
) -> None:
    grid = district_grid(bbox, cell_m=cell, metric_crs=crs)
    to_metric = Transformer.from_crs(4326, crs, always_xy=True)
    edge = shapely.box(*bbox).boundary
    inner = grid[~grid.intersects(edge)]  # the cells the box does not cut
    assert len(inner) > 0.5 * len(grid)
    for geometry in inner.geometry:
        x, y = to_metric.transform(*np.asarray(geometry.exterior.coords).T)
        # a whole cell: its corners sit on multiples of the cell size (to a millimetre)
        assert np.allclose(np.round(x / cell) * cell, x, atol=1e-3)
        assert np.allclose(np.round(y / cell) * cell, y, atol=1e-3)
        assert shapely.Polygon(zip(x, y, strict=True)).area == pytest.approx(cell * cell)
    assert set(grid["level"]) == {GRID_LEVEL}
    assert set(grid.geom_type) <= {"Polygon", "MultiPolygon"}
    assert grid.crs.to_epsg() == 4326


@pytest.mark.parametrize(("bbox", "crs", "cell"), [(MONACO, UTM, 500), (TIANJIN, GK, 700)])
def test_cells_tile_the_box_without_overlap(
    bbox: tuple[float, float, float, float], crs: str, cell: float
) -> None:
    grid = district_grid(bbox, cell_m=cell, metric_crs=crs)
    box = shapely.box(*bbox)
    union = shapely.union_all(grid.geometry.to_numpy())
    # together they are the box; their areas add up to it, so no two overlap
    assert shapely.symmetric_difference(union, box).area < 1e-12
    assert shapely.area(grid.geometry.to_numpy()).sum() == pytest.approx(box.area, rel=1e-9)
    assert tuple(grid.total_bounds) == pytest.approx(bbox)


def test_ids_and_names_number_rows_from_the_north_and_columns_from_the_west() -> None:
    grid = district_grid(MONACO, cell_m=500, metric_crs=UTM)
    assert grid["id"].is_unique
    first = grid.iloc[0]
    assert first["id"] == f"grid/500/r{first['row']}c{first['col']}"
    assert first["name"] == f"网格 R{first['row']}C{first['col']}"
    centres = grid.geometry.representative_point()
    by_row = centres.y.groupby(grid["row"]).mean()
    by_col = centres.x.groupby(grid["col"]).mean()
    assert by_row.is_monotonic_decreasing and by_col.is_monotonic_increasing
    other = district_grid(MONACO, cell_m=250, metric_crs=UTM, prefix="wangge")
    assert other["id"].str.startswith("wangge/250/r").all()


def test_cells_are_cut_to_a_given_extent_and_keep_their_numbers() -> None:
    whole = district_grid(MONACO, cell_m=500, metric_crs=UTM)
    extent = shapely.Point(7.42, 43.735).buffer(0.01)
    cut = district_grid(MONACO, cell_m=500, metric_crs=UTM, within=extent)
    assert len(cut) < len(whole)
    assert shapely.union_all(cut.geometry.to_numpy()).symmetric_difference(extent).area < 1e-12
    merged = cut.merge(whole[["id", "row", "col"]], on="id", suffixes=("", "_whole"))
    assert len(merged) == len(cut)
    assert (merged["row"] == merged["row_whole"]).all()


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"bbox": (7.46, 43.70, 7.38, 43.77)}, "bbox"),
        ({"bbox": (7.38, 43.70, 7.46)}, "bbox"),
        ({"bbox": (7.38, 43.70, 7.46, float("nan"))}, "bbox"),
        ({"cell_m": 0}, "cell_m"),
        ({"cell_m": -500}, "cell_m"),
        ({"cell_m": float("inf")}, "cell_m"),
        ({"cell_m": 1}, "cell_m"),  # 48 million cells
        ({"metric_crs": "EPSG:4326"}, "metric_crs"),
        ({"metric_crs": "EPSG:2249"}, "metric_crs"),  # US survey feet
        ({"metric_crs": "not a crs"}, "metric_crs"),
        ({"within": shapely.Point(7.4, 43.7)}, "within"),
        ({"within": shapely.Point(10, 10).buffer(0.1)}, "within"),
    ],
)
def test_bad_input_names_the_parameter(kwargs: dict[str, object], parameter: str) -> None:
    args: dict[str, object] = {"bbox": MONACO, "cell_m": 500, "metric_crs": UTM, **kwargs}
    with pytest.raises(ParameterError) as raised:
        district_grid(**args)  # type: ignore[arg-type]
    assert raised.value.parameter == parameter


def test_the_grid_loads_as_the_districts_layer(empty_db: str) -> None:
    settings = get_settings()
    grid = district_grid(settings.city_bbox, cell_m=500, metric_crs=settings.metric_crs)
    report = ingest_frame("districts", grid, source="grid", url=empty_db)
    assert report.added == len(grid)
    stored = read_layer("districts", url=empty_db)
    assert sorted(stored["id"]) == sorted(grid["id"])
    assert set(stored["level"]) == {GRID_LEVEL}
    assert {"cell_m", "row", "col"} <= set(stored["props"].iloc[0])
    stats = district_stats(url=empty_db)
    assert len(stats) == len(grid)
