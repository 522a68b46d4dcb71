"""Camera coverage: view cones, covered road per district, blind spots (real PostGIS)."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from layers.cameras import CameraCoverage, camera_coverage, view_cones
from layers.database import get_engine
from layers.errors import ParameterError
from layers.ingest import ingest_frame
from layers.queries import read_layer

# A local metric frame: transverse Mercator on the camera's meridian, so grid north is true
# north at the camera and x, y are metres east and north of it (inside the city's extent).
LOCAL = "+proj=tmerc +lat_0=43.735 +lon_0=7.42 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
UTM = "EPSG:32632"

SECTOR = math.pi * 100**2 / 4  # 90 degrees of a 100 m disc
SHADOW = 100**2 * math.atan(10 / 40) - 0.5 * 40 * 20  # wedge of half-angle atan(1/4) - triangle
VISIBLE = SECTOR - SHADOW  # 5804.195 m²
ROAD2_SEEN = math.sqrt(100**2 - 30**2) - 30  # 65.394 m


def _bound(rays_per_degree: float, range_m: float = 100.0) -> float:
    """Largest area error of the ray fan: a sliver one ray step wide at each of two shadow edges."""
    return math.radians(1 / rays_per_degree) * range_m**2


def _scene() -> dict[str, gpd.GeoDataFrame]:
    """The hand-checked scene, in the local frame (x east, y north, metres)."""
    cameras = gpd.GeoDataFrame(
        {
            "id": ["cam-a", "cam-broken", "cam-no-range"],
            "heading": [90.0, 90.0, 0.0],
            "fov": [90.0, 90.0, 60.0],
            "range_m": [100.0, 100.0, np.nan],
            "status": ["active", "damaged", "active"],
        },
        geometry=[shapely.Point(0, 0), shapely.Point(-100, 0), shapely.Point(0, -150)],
        crs=LOCAL,
    )
    buildings = gpd.GeoDataFrame(
        {"id": ["block"]}, geometry=[shapely.box(40, -10, 60, 10)], crs=LOCAL
    )
    axis = shapely.LineString([(-50, 0), (150, 0)])
    roads = gpd.GeoDataFrame(
        {
            "id": ["axis-east", "axis-west", "north"],
            "source_node": [1, 2, 3],
            "target_node": [2, 1, 4],
            "class": ["residential"] * 3,
            "oneway": [True, True, False],
        },
        geometry=[axis, axis.reverse(), shapely.LineString([(0, 30), (150, 30)])],
        crs=LOCAL,
    )
    districts = gpd.GeoDataFrame(
        {"id": ["whole", "west", "east"], "name": ["Whole", "West", "East"], "level": [8, 10, 10]},
        geometry=[
            shapely.box(-200, -200, 200, 200),
            shapely.box(-200, -200, 20, 200),
            shapely.box(20, -200, 200, 200),
        ],
        crs=LOCAL,
    )
    return {"cameras": cameras, "buildings": buildings, "roads": roads, "districts": districts}


def test_view_cone_hand_checked() -> None:
    """One camera at the origin looks east (fov 90°, range 100 m); a 20 × 20 m building stands
    40–60 m east of it, centred on the axis.

    The sector is π·100²/4 = 7853.98 m². The building's front face (x = 40, y = ±10) hides the
    wedge of half-angle atan(10/40) = 14.04° beyond it: wedge 100²·atan(1/4) = 2449.79 m² minus
    the visible triangle before the face, ½·40·20 = 400 m², so the shadow (building included)
    is 2049.79 m² and the camera sees 7853.98 − 2049.79 = 5804.20 m². Rays one step apart place
    each of the two shadow edges within one step: error ≤ Δθ·R² (87 m² at 2 rays/degree).
    """
    scene = _scene()
    camera = scene["cameras"].iloc[:1]
    for rays_per_degree in (2.0, 20.0):
        cones = view_cones(
            camera, scene["buildings"], metric_crs=LOCAL, rays_per_degree=rays_per_degree
        )
        assert list(cones.columns) == ["id", "area_m2", "open_area_m2", "geometry"]
        assert cones.crs == "EPSG:4326"
        assert cones["id"].tolist() == ["cam-a"]
        assert cones["area_m2"].iloc[0] == pytest.approx(VISIBLE, abs=_bound(rays_per_degree))
        # the open sector is the same fan without the building: a chord per step short of π r²/4
        assert cones["open_area_m2"].iloc[0] == pytest.approx(SECTOR, rel=1e-4)
        cone = cones.to_crs(LOCAL).geometry.iloc[0]
        assert cone.area == pytest.approx(cones["area_m2"].iloc[0], rel=1e-6)
        # the building's front face bounds the view on the axis; nothing behind it is seen
        assert cone.intersection(shapely.LineString([(0, 0), (100, 0)])).length == pytest.approx(
            40, abs=1e-6
        )
        assert cone.intersection(shapely.box(40.01, -9.9, 100, 9.9)).area == pytest.approx(
            0, abs=1e-6
        )
    # without occluders the cone is the open sector
    open_only = view_cones(camera, None, metric_crs=LOCAL)
    assert open_only["area_m2"].iloc[0] == pytest.approx(open_only["open_area_m2"].iloc[0])


def test_view_cone_mounted_and_all_round() -> None:
    """A camera inside a footprint (on its facade) sees past it; an all-round one sees a disc.

    The 360° camera stands in a 10 × 10 m building (its mount) with a 10 × 10 m building
    20–30 m north of it: that shadow is the wedge of half-angle atan(5/20) to 50 m minus the
    triangle before the face: 50²·atan(1/4) − ½·20·10 = 512.45 m², out of π·50² = 7853.98 m².
    """
    cameras = gpd.GeoDataFrame(
        {"id": ["pole"], "heading": [np.nan], "fov": [360.0], "range_m": [50.0]},
        geometry=[shapely.Point(0, 0)],
        crs=LOCAL,
    )
    buildings = gpd.GeoDataFrame(
        geometry=[shapely.box(-5, -5, 5, 5), shapely.box(-5, 20, 5, 30)], crs=LOCAL
    )
    cones = view_cones(cameras, buildings, metric_crs=LOCAL, rays_per_degree=20)
    shadow = 50**2 * math.atan(5 / 20) - 0.5 * 20 * 10
    assert cones["open_area_m2"].iloc[0] == pytest.approx(math.pi * 50**2, rel=1e-5)
    assert cones["area_m2"].iloc[0] == pytest.approx(math.pi * 50**2 - shadow, abs=_bound(20, 50))
    assert cones.to_crs(LOCAL).geometry.iloc[0].is_valid


def test_camera_coverage_hand_checked(empty_db: str) -> None:
    """The scene above through the store; the computation runs in UTM 32N, whose grid differs
    from the local frame by the meridian convergence (a rotation, undone for the headings) and
    a scale of 0.9998 (so 1e-3 relative tolerance on lengths).

    Roads (metres along x, y):
    - the axis y = 0 from x = −50 to 150, stored twice (one-way both ways, the same line
      reversed): counted once, 200 m. Seen from the camera (x = 0; behind it is outside the
      90° sector) to the building's front face at x = 40: 40 m. Behind the face: shadow.
    - y = 30 from x = 0 to 150: 150 m, inside the sector where x ≥ 30 (its 45° edge) and within
      range while x ≤ √(100² − 30²) = 95.394; the shadow wedge reaches y = 30 only at x = 120,
      beyond the range: 65.394 m seen.
    The damaged camera at x = −100 (looking east, it would see the axis from −50 to 0) is
    dropped; the active camera without a range is skipped.

    Districts: Whole (level 8): 350 m, 105.394 seen, share 0.3011. West (x ≤ 20): axis −50..20
    (70 m) + y = 30 0..20 (20 m) = 90 m, seen 20 m (axis 0..20), share 0.2222. East (x ≥ 20):
    130 + 130 = 260 m, seen 20 + 65.394 = 85.394 m, share 0.3284.

    Blind spots: axis 40..150 (110 m, East), y = 30 95.394..150 (54.606 m, East), axis −50..0
    (50 m, West), y = 30 0..30 (30 m: 20 m in West, 10 m in East, so West).
    """
    for layer, frame in _scene().items():
        ingest_frame(layer, frame, source="hand", url=empty_db)

    result = camera_coverage(url=empty_db, top=3)
    assert isinstance(result, CameraCoverage)
    assert result.skipped == ("cam-no-range",)
    assert result.cones["id"].tolist() == ["cam-a"]
    area = result.cones["area_m2"].iloc[0]
    assert area == pytest.approx(VISIBLE, abs=_bound(2.0) + VISIBLE * 1e-3)

    districts = result.districts.set_index("id")
    assert list(result.districts.columns) == [
        "id",
        "name",
        "level",
        "road_length_m",
        "covered_length_m",
        "share",
    ]
    expected = {
        "whole": (350.0, 40 + ROAD2_SEEN),
        "west": (90.0, 20.0),
        "east": (260.0, 20 + ROAD2_SEEN),
    }
    for district, (road, seen) in expected.items():
        row = districts.loc[district]
        assert row["road_length_m"] == pytest.approx(road, rel=1e-3)
        assert row["covered_length_m"] == pytest.approx(seen, rel=1e-3)
        assert row["share"] == pytest.approx(seen / road, rel=1e-3)
    assert districts.loc["west", "name"] == "West"
    assert districts.loc["whole", "level"] == 8

    spots = result.blind_spots
    assert list(spots.columns) == ["length_m", "district_id", "district", "geometry"]
    assert spots.crs == "EPSG:4326"
    assert spots["length_m"].tolist() == pytest.approx(
        [110.0, 150 - 30 - ROAD2_SEEN, 50.0], rel=1e-3
    )
    assert spots["district_id"].tolist() == ["east", "east", "west"]
    assert spots["district"].tolist() == ["East", "East", "West"]

    everything = camera_coverage(url=empty_db, min_gap_m=20, top=10).blind_spots
    assert everything["length_m"].iloc[-1] == pytest.approx(30.0, rel=1e-3)
    assert everything["district_id"].iloc[-1] == "west"
    assert len(camera_coverage(url=empty_db, min_gap_m=31).blind_spots) == 3

    before = camera_coverage(url=empty_db, at="2000-01-01T00:00:00Z")
    assert before.cones.empty and before.districts.empty and before.blind_spots.empty


@pytest.fixture(scope="module")
def sample_coverage(sample_db: str) -> CameraCoverage:
    return camera_coverage(url=sample_db)


def test_sample_cones(sample_db: str, sample_coverage: CameraCoverage) -> None:
    cameras = read_layer("cameras", url=sample_db)
    active = cameras[cameras["status"].fillna("active") == "active"]
    cones = sample_coverage.cones
    assert len(cameras) == 16  # shared/data/MANIFEST.md: 16 surveillance cameras in OSM
    assert sorted(cones["id"]) == sorted(active["id"])
    assert sample_coverage.skipped == ()
    metric_cones = cones.to_crs(UTM).set_index("id")
    metric_cameras = active.to_crs(UTM).set_index("id")
    for camera_id, cone in metric_cones.iterrows():
        camera = metric_cameras.loc[camera_id]
        vertices = shapely.points(shapely.get_coordinates(cone.geometry))
        reach = shapely.distance(camera.geometry, vertices).max()
        assert reach <= float(camera["range_m"]) + 0.01
        assert cone.geometry.is_valid and cone.geometry.area > 0
        assert cone["area_m2"] <= cone["open_area_m2"] + 1e-6
        assert cone["open_area_m2"] == pytest.approx(
            math.pi * float(camera["range_m"]) ** 2 * float(camera["fov"]) / 360, rel=1e-3
        )
    # some camera is occluded by a building
    assert (cones["area_m2"] < cones["open_area_m2"] - 1).any()


def test_sample_districts_match_postgis(sample_db: str, sample_coverage: CameraCoverage) -> None:
    query = sa.text(
        """
        WITH r AS (
            SELECT DISTINCT ON (ST_AsBinary(ST_Normalize(geom))) geom
            FROM roads WHERE valid_to IS NULL
        )
        SELECT d.id, COALESCE(sum(ST_Length(ST_Intersection(r.geom, d.geom)::geography)), 0)
        FROM districts d LEFT JOIN r ON ST_Intersects(r.geom, d.geom)
        WHERE d.valid_to IS NULL
        GROUP BY d.id
        """
    )
    with get_engine(sample_db).connect() as conn:
        expected = {str(i): float(length) for i, length in conn.execute(query)}
    districts = sample_coverage.districts.set_index("id")
    assert sorted(districts.index) == sorted(expected)
    assert len(districts) == 10  # Monaco (admin level 8) and its 9 wards (level 10)
    for district_id, length in expected.items():
        assert length > 0
        assert districts.loc[district_id, "road_length_m"] == pytest.approx(length, rel=0.01)
    assert districts["share"].between(0, 1).all()
    assert (districts["covered_length_m"] <= districts["road_length_m"]).all()
    assert districts["covered_length_m"].sum() > 0


def test_sample_blind_spots(sample_db: str, sample_coverage: CameraCoverage) -> None:
    spots = sample_coverage.blind_spots
    assert 0 < len(spots) <= 10  # camera_coverage's default top
    lengths = spots["length_m"].to_numpy()
    assert (np.diff(lengths) <= 0).all()
    assert (lengths >= 20).all()  # its default min_gap_m
    metric = spots.to_crs(UTM)
    assert metric.length.to_numpy() == pytest.approx(lengths, rel=1e-6)
    seen = shapely.union_all(sample_coverage.cones.to_crs(UTM).geometry.to_numpy())
    for line in metric.geometry:
        assert line.intersection(seen).length < 0.05
    assert spots["district_id"].notna().any()
    few = camera_coverage(url=sample_db, top=3)
    assert few.blind_spots["length_m"].tolist() == pytest.approx(lengths[:3].tolist())


@pytest.mark.parametrize(
    ("change", "parameter", "message"),
    [
        ({"range_m": 0.0}, "range_m", "range_m must be a positive length"),
        ({"range_m": -5.0}, "range_m", "range_m must be a positive length"),
        ({"range_m": np.nan}, "range_m", "range_m must be a positive length"),
        ({"fov": 0.0}, "fov", r"fov must be in \(0, 360\]"),
        ({"fov": 361.0}, "fov", r"fov must be in \(0, 360\]"),
        ({"fov": -10.0}, "fov", r"fov must be in \(0, 360\]"),
        ({"heading": np.nan}, "heading", "heading must be a finite number"),
    ],
)
def test_view_cones_bad_values(change: dict[str, float], parameter: str, message: str) -> None:
    cameras = _scene()["cameras"].iloc[:1].assign(**change)
    with pytest.raises(ParameterError, match=message) as caught:
        view_cones(cameras, None, metric_crs=LOCAL)
    assert caught.value.parameter == parameter
    assert "cam-a" in str(caught.value)


@pytest.mark.parametrize("column", ["heading", "fov", "range_m"])
def test_view_cones_missing_column(column: str) -> None:
    cameras = _scene()["cameras"].drop(columns=column)
    with pytest.raises(ParameterError, match=f"cameras lack the column\\(s\\) {column}"):
        view_cones(cameras, None, metric_crs=LOCAL)


def test_view_cones_bad_frames_and_options() -> None:
    scene = _scene()
    cameras = scene["cameras"].iloc[:1]
    with pytest.raises(ParameterError, match="no CRS"):
        view_cones(cameras.set_crs(None, allow_override=True), None, metric_crs=LOCAL)
    with pytest.raises(ParameterError, match="not a projected CRS in metres"):
        view_cones(cameras, None, metric_crs="EPSG:4326")
    with pytest.raises(ParameterError, match="unknown CRS"):
        view_cones(cameras, None, metric_crs="EPSG:nonsense")
    with pytest.raises(ParameterError, match="rays_per_degree must be a positive"):
        view_cones(cameras, None, metric_crs=LOCAL, rays_per_degree=0)
    with pytest.raises(ParameterError, match="are not points"):
        view_cones(
            cameras.set_geometry([shapely.box(0, 0, 1, 1)], crs=LOCAL), None, metric_crs=LOCAL
        )
    with pytest.raises(ParameterError, match="occluders must be polygons"):
        view_cones(cameras, scene["roads"], metric_crs=LOCAL)
    # no cameras: no cones
    empty = view_cones(cameras.iloc[:0], scene["buildings"], metric_crs=LOCAL)
    assert empty.empty and list(empty.columns) == ["id", "area_m2", "open_area_m2", "geometry"]


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"min_gap_m": -1.0}, "min_gap_m"),
        ({"min_gap_m": math.inf}, "min_gap_m"),
        ({"top": 0}, "top"),
        ({"top": 2.5}, "top"),
        ({"at": "yesterday"}, "at"),
        ({"rays_per_degree": -1.0}, "rays_per_degree"),
    ],
)
def test_camera_coverage_bad_options(
    sample_db: str, options: dict[str, object], parameter: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        camera_coverage(url=sample_db, **options)  # type: ignore[arg-type]
    assert caught.value.parameter == parameter
