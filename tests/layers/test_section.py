"""The pipeline section along a line, against oracles read straight from the store and the file.

Crossings are checked against shapely's intersection of the line with each feature read by
GeoPandas from the layer table itself; the ground against rasterio's own sample of the DEM file
(``nearest``) and scipy's linear interpolation between cell centres (``bilinear``); distances
against GeoPandas in the metric CRS and pyproj's geodesic length.
"""

from __future__ import annotations

from collections.abc import Iterator

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Geod
from scipy.interpolate import RegularGridInterpolator

from layers import access
from layers.database import get_engine
from layers.errors import MissingInputError, ParameterError
from layers.ingest import ingest_frame
from layers.rasters import RasterError, ingest_raster
from layers.section import MAX_SAMPLES, MIN_SAMPLES, section
from tests.conftest import SAMPLE

DEM = SAMPLE / "dem.tif"
UTM = "EPSG:32632"  # the sample city's metric CRS (the settings' default)
#: A line in the hills north-west of Monaco, on the DEM, far from every pipe and cable.
NO_PIPES = shapely.LineString([(7.39, 43.76), (7.395, 43.761)])
#: A diagonal across the city, about 3.3 km: it crosses pipes of every network the sample has.
ACROSS = shapely.LineString([(7.41, 43.73), (7.44, 43.75)])


def table(url: str, layer: str) -> gpd.GeoDataFrame:
    """The current features of a layer, straight from its table (the oracle's input)."""
    columns = "id, kind, props" if layer == "power_lines" else "id, network, depth_m"
    with get_engine(url).connect() as conn:
        return gpd.read_postgis(
            f"SELECT {columns}, geom FROM {layer} WHERE valid_to IS NULL ORDER BY id",
            conn,
            geom_col="geom",
        )


def across(feature: shapely.LineString, half_m: float = 40.0) -> shapely.LineString:
    """A line of 2 × ``half_m`` across a feature's middle, perpendicular to it (EPSG:4326)."""
    metric = gpd.GeoSeries([feature], crs=4326).to_crs(UTM).iloc[0]
    middle = np.array(metric.interpolate(0.5, normalized=True).coords[0])
    ahead = np.array(metric.interpolate(0.5 + 1 / metric.length, normalized=True).coords[0])
    direction = (ahead - middle) / np.linalg.norm(ahead - middle)
    normal = np.array([-direction[1], direction[0]])
    line = shapely.LineString([middle - half_m * normal, middle + half_m * normal])
    return gpd.GeoSeries([line], crs=UTM).to_crs(4326).iloc[0]


def oracle(url: str, line: shapely.LineString, layers: tuple[str, ...]) -> pd.DataFrame:
    """Where the features of ``layers`` cross ``line``: shapely on the table's geometries."""
    metric_line = gpd.GeoSeries([line], crs=4326).to_crs(UTM).iloc[0]
    rows = []
    for layer in layers:
        features = table(url, layer)
        if layer == "power_lines":
            buried = [
                k == "cable" or "depth_m" in (p or {})
                for k, p in zip(features["kind"], features["props"])
            ]
            features = features[buried]
        for feature in features.itertuples():
            cut = feature.geom.intersection(line)
            for point in getattr(cut, "geoms", [cut]):
                if point.is_empty:
                    continue
                assert point.geom_type == "Point", (feature.id, point)
                metric = gpd.GeoSeries([point], crs=4326).to_crs(UTM).iloc[0]
                rows.append(
                    {
                        "id": feature.id,
                        "layer": layer,
                        "network": "power" if layer == "power_lines" else feature.network,
                        "depth_m": np.nan if layer == "power_lines" else feature.depth_m,
                        "distance_m": metric_line.project(metric),
                        "lon": point.x,
                        "lat": point.y,
                    }
                )
    frame = pd.DataFrame(
        rows, columns=["id", "layer", "network", "depth_m", "distance_m", "lon", "lat"]
    )
    return frame.sort_values(["distance_m", "layer", "id"], kind="stable").reset_index(drop=True)


def bilinear() -> RegularGridInterpolator:
    """scipy's linear interpolation between the DEM file's cell centres."""
    with rasterio.open(DEM) as dem:
        values = dem.read(1).astype(float)
        t = dem.transform
    lons = t.c + (np.arange(values.shape[1]) + 0.5) * t.a
    lats = t.f + (np.arange(values.shape[0]) + 0.5) * t.e
    return RegularGridInterpolator((lats[::-1], lons), values[::-1])


def nearest(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """rasterio's own sample of the DEM file (the cell under each point)."""
    with rasterio.open(DEM) as dem:
        return np.array([v[0] for v in dem.sample(zip(lon, lat, strict=True))], dtype=float)


@pytest.fixture(scope="module")
def water_pipe(sample_db: str) -> shapely.LineString:
    """A water pipe of the sample longer than 60 m (drawn along a street with its sewer)."""
    pipes = table(sample_db, "pipelines")
    pipes = pipes[pipes["network"] == "water"]
    long = pipes[pipes.geometry.to_crs(UTM).length > 60]
    return long.geometry.iloc[0]


def assert_crossings_match(found: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(found) == len(expected) > 0
    assert list(found["id"]) == list(expected["id"])
    assert list(found["layer"]) == list(expected["layer"])
    assert list(found["network"]) == list(expected["network"])
    assert np.allclose(found["distance_m"], expected["distance_m"], atol=1e-3)
    assert np.allclose(found["lon"], expected["lon"], atol=1e-9)
    assert np.allclose(found["lat"], expected["lat"], atol=1e-9)
    assert np.allclose(found["depth_m"], expected["depth_m"], equal_nan=True)


# -- crossings -----------------------------------------------------------------------------------


def test_crossings_across_a_street_are_the_pipes_under_it(
    sample_db: str, water_pipe: shapely.LineString
) -> None:
    line = across(water_pipe)
    result = section(line, url=sample_db)
    expected = oracle(sample_db, line, ("pipelines", "power_lines"))
    assert_crossings_match(result.crossings, expected)
    # the pipe the line was drawn across is crossed in the middle of the line
    middle = result.crossings[result.crossings["distance_m"].sub(40).abs() < 0.01]
    assert set(middle["network"]) >= {"water"}
    assert result.layers == ("pipelines", "power_lines") and result.crs_used == UTM
    # elevation = the ground there − depth; the ground there is the DEM at the crossing
    crossings = result.crossings
    assert np.allclose(crossings["elevation_m"], crossings["ground_m"] - crossings["depth_m"])
    at = crossings[["lat", "lon"]].to_numpy()
    assert np.allclose(crossings["ground_m"], bilinear()(at), atol=1e-6)
    assert crossings["invert_m"].isna().all()  # the sample carries no invert levels
    assert crossings["end_distance_m"].isna().all()  # every one crosses at a point


def test_a_long_line_crosses_every_network_and_the_cables(sample_db: str) -> None:
    result = section(ACROSS, url=sample_db)
    expected = oracle(sample_db, ACROSS, ("pipelines", "power_lines"))
    assert_crossings_match(result.crossings, expected)
    assert set(result.crossings["network"]) >= {"water", "sewer", "gas"}
    # a buried cable crossing: placed, but with no depth the sample does not give
    cables = table(sample_db, "power_lines")
    cable = cables[cables["kind"] == "cable"].geometry.iloc[0]
    line = across(cable, half_m=15)
    crossed = section(line, url=sample_db).crossings
    power = crossed[crossed["layer"] == "power_lines"]
    assert len(power) >= 1 and set(power["network"]) == {"power"}
    assert set(power["kind"]) == {"cable"}
    assert power["depth_m"].isna().all() and power["elevation_m"].isna().all()
    assert power["ground_m"].notna().all()
    assert_crossings_match(crossed, oracle(sample_db, line, ("pipelines", "power_lines")))


def test_a_line_crossing_no_pipe_gives_none(sample_db: str) -> None:
    assert oracle(sample_db, NO_PIPES, ("pipelines", "power_lines")).empty
    result = section(NO_PIPES, url=sample_db)
    assert result.crossings.empty
    assert list(result.crossings.columns)[:3] == ["id", "layer", "network"]
    assert np.isfinite(result.ground["elevation_m"]).all()
    assert (result.ground["elevation_m"] > 0).all()  # hills, well above the sea


# -- ground --------------------------------------------------------------------------------------


def test_ground_is_the_dem_at_the_points_and_distances_are_metric(sample_db: str) -> None:
    result = section(ACROSS, url=sample_db, interpolation="nearest")
    ground = result.ground
    lon, lat = ground["lon"].to_numpy(), ground["lat"].to_numpy()
    assert np.array_equal(ground["elevation_m"].to_numpy(), nearest(lon, lat))
    # the points lie on the line, at the distances said, in the city's metric CRS
    points = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs=4326)
    assert shapely.distance(points.to_numpy(), ACROSS).max() < 1e-8  # degrees: about a millimetre
    # (the line is straight in lon/lat, a curve in UTM: drawn there through many vertices)
    metric_line = gpd.GeoSeries([ACROSS], crs=4326).segmentize(1e-5).to_crs(UTM).iloc[0]
    assert np.allclose(
        points.to_crs(UTM).apply(metric_line.project), ground["distance_m"], atol=1e-3
    )
    assert result.length_m == pytest.approx(metric_line.length, abs=1e-3)
    geodesic = Geod(ellps="WGS84").geometry_length(ACROSS)
    assert result.length_m == pytest.approx(geodesic, rel=5e-4)  # UTM's scale, near Monaco
    # every step_m from the start, the end, and one sample at each crossing
    regular = ground[~ground["distance_m"].isin(result.crossings["distance_m"])]
    assert np.allclose(np.diff(regular["distance_m"])[:-1], result.step_m)
    assert ground["distance_m"].iloc[0] == 0 and ground["distance_m"].iloc[-1] == result.length_m
    assert ground["distance_m"].is_monotonic_increasing
    assert set(result.crossings["distance_m"]) <= set(ground["distance_m"])
    # the default step: half the DEM's cell (3 arc-seconds, ~67 × 93 m here), or less
    assert MIN_SAMPLES <= len(regular) <= MAX_SAMPLES
    assert result.step_m <= 67.0 / 2


def test_bilinear_ground_is_linear_between_cell_centres(sample_db: str) -> None:
    result = section(ACROSS, url=sample_db, step_m=7.5)
    ground = result.ground
    assert result.interpolation == "bilinear" and result.step_m == 7.5
    expected = bilinear()(ground[["lat", "lon"]].to_numpy())
    assert np.allclose(ground["elevation_m"], expected, atol=1e-6)


# -- access --------------------------------------------------------------------------------------


def grant(url: str, role: str) -> access.Grant:
    return access.grant_for(access.Principal(f"section-{role}", (role,), "session"), url=url)


def test_a_restricted_caller_sees_no_crossings_of_a_hidden_layer(sample_db: str) -> None:
    owner = section(ACROSS, url=sample_db)
    with access.acting_as(grant(sample_db, "planner")):
        planner = section(ACROSS, url=sample_db)
    with access.acting_as(grant(sample_db, "public")):
        public = section(ACROSS, url=sample_db)
    # a planner reads the pipelines but not their gas rows, nor the power lines
    assert planner.layers == ("pipelines",)
    seen = owner.crossings[
        (owner.crossings["layer"] == "pipelines") & (owner.crossings["network"] != "gas")
    ]
    assert (owner.crossings["network"] == "gas").any()
    assert list(planner.crossings["id"]) == list(seen["id"])
    assert "gas" not in set(planner.crossings["network"])
    # the public reads neither layer: the ground, and no crossing
    assert public.layers == () and public.crossings.empty
    assert len(public.ground) == len(owner.ground) - owner.crossings["distance_m"].nunique()
    cable = table(sample_db, "power_lines")
    line = across(cable[cable["kind"] == "cable"].geometry.iloc[0], half_m=15)
    with access.acting_as(grant(sample_db, "planner")):
        assert "power_lines" not in set(section(line, url=sample_db).crossings["layer"])
    with access.acting_as(grant(sample_db, "emergency_commander")):
        assert "power_lines" in set(section(line, url=sample_db).crossings["layer"])


# -- what the data carries -----------------------------------------------------------------------


@pytest.fixture
def small_city(raster_db: str) -> Iterator[str]:
    """The sample DEM with three pipes and two power lines of known depths and inverts."""
    ingest_raster(DEM, name="dem", kind="dem", url=raster_db)
    pipes = gpd.GeoDataFrame(
        {
            "id": ["sewer/a", "water/b", "water/along"],
            "network": ["sewer", "water", "water"],
            "diameter_mm": [400.0, 150.0, 100.0],
            "depth_m": [3.0, None, 1.0],
            "invert_level_m": [12.5, None, None],
        },
        geometry=[
            shapely.LineString([(7.4200, 43.7300), (7.4200, 43.7400)]),
            shapely.LineString([(7.4250, 43.7300), (7.4250, 43.7400)]),
            # runs along the section from 7.4260 to 7.4280
            shapely.LineString([(7.4260, 43.7350), (7.4280, 43.7350)]),
        ],
        crs=4326,
    )
    power = gpd.GeoDataFrame(
        {
            "id": ["cable/c", "line/d", "feeder/e"],
            "kind": ["cable", "line", "feeder"],
            "voltage_kv": [20.0, 63.0, 20.0],
            "depth_m": [0.8, None, 1.1],
        },
        geometry=[
            shapely.LineString([(7.4225, 43.7300), (7.4225, 43.7400)]),
            shapely.LineString([(7.4230, 43.7300), (7.4230, 43.7400)]),  # overhead: not drawn
            shapely.LineString([(7.4240, 43.7300), (7.4240, 43.7400)]),  # a feeder with a depth
        ],
        crs=4326,
    )
    ingest_frame("pipelines", pipes, source="test", url=raster_db)
    ingest_frame("power_lines", power, source="test", url=raster_db)
    yield raster_db


def test_invert_levels_depths_and_runs_along_the_line(small_city: str) -> None:
    line = shapely.LineString([(7.4190, 43.7350), (7.4300, 43.7350)])
    result = section(line, url=small_city)
    crossings = result.crossings.set_index("id")
    assert list(result.crossings["id"]) == [
        "sewer/a",
        "cable/c",
        "feeder/e",
        "water/b",
        "water/along",
    ]
    assert crossings.at["sewer/a", "invert_m"] == 12.5
    sewer = crossings.loc[["sewer/a"]]
    assert np.allclose(sewer["elevation_m"], sewer["ground_m"] - 3.0)
    assert crossings.loc[["water/b"], ["depth_m", "elevation_m"]].isna().all(axis=None)
    assert (
        crossings.at["cable/c", "depth_m"] == 0.8 and crossings.at["cable/c", "network"] == "power"
    )
    assert (
        crossings.at["feeder/e", "depth_m"] == 1.1 and crossings.at["feeder/e", "kind"] == "feeder"
    )
    metric = gpd.GeoSeries(
        [line, shapely.Point(7.4260, 43.7350), shapely.Point(7.4280, 43.7350)], crs=4326
    ).to_crs(UTM)
    assert crossings.at["water/along", "distance_m"] == pytest.approx(
        metric.iloc[0].project(metric.iloc[1]), abs=1e-3
    )
    assert crossings.at["water/along", "end_distance_m"] == pytest.approx(
        metric.iloc[0].project(metric.iloc[2]), abs=1e-3
    )
    assert crossings.loc[["sewer/a", "cable/c"], "end_distance_m"].isna().all()
    assert (
        crossings.at["water/along", "lon"],
        crossings.at["water/along", "lat"],
    ) == pytest.approx((7.4260, 43.7350))


def test_at_a_moment_before_the_city_there_is_no_dem(small_city: str) -> None:
    line = shapely.LineString([(7.4190, 43.7350), (7.4300, 43.7350)])
    with pytest.raises(MissingInputError, match="no DEM loaded at 2000") as caught:
        section(line, url=small_city, at="2000-01-01T00:00:00Z")
    assert caught.value.missing == "dem"
    now = pd.Timestamp.now(tz="UTC").isoformat()
    assert list(section(line, url=small_city, at=now).crossings["id"]) == list(
        section(line, url=small_city).crossings["id"]
    )


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "options", "parameter", "message"),
    [
        (shapely.Point(7.42, 43.74), {}, "geometry", "must be a LineString, not Point"),
        (
            shapely.MultiLineString([[(7.42, 43.74), (7.421, 43.74)]]),
            {},
            "geometry",
            "not MultiLineString",
        ),
        (shapely.LineString([(7.40, 43.73), (7.46, 43.76)]), {}, "geometry", "at most 5,000 m"),
        (shapely.LineString([(1.0, 1.0), (1.001, 1.001)]), {}, "geometry", "outside the DEM"),
        (shapely.LineString([(7.42, 43.74), (7.42, 43.74)]), {}, "geometry", "no length"),
        (shapely.LineString([(7.42, 95.0), (7.43, 95.0)]), {}, "geometry", "lon/lat"),
        (NO_PIPES, {"step_m": 0.0}, "step_m", "positive"),
        (NO_PIPES, {"step_m": float("nan")}, "step_m", "positive"),
        (NO_PIPES, {"step_m": 0.1}, "step_m", "more than 1000 samples"),
        (NO_PIPES, {"interpolation": "cubic"}, "interpolation", "bilinear, nearest"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(
    sample_db: str, line: shapely.Geometry, options: dict, parameter: str, message: str
) -> None:
    with pytest.raises(ParameterError, match=message) as caught:
        section(line, url=sample_db, **options)
    assert caught.value.parameter == parameter


def test_an_unknown_dem_is_named(sample_db: str) -> None:
    with pytest.raises(RasterError, match="no raster named 'nope'; DEMs: dem") as caught:
        section(NO_PIPES, url=sample_db, dem="nope")
    assert caught.value.parameter == "dem"


def test_no_dem_is_a_missing_input(raster_db: str) -> None:
    with pytest.raises(MissingInputError, match="no DEM loaded") as caught:
        section(NO_PIPES, url=raster_db)
    assert caught.value.missing == "dem" and caught.value.status == 409
