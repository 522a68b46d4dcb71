"""Build the sample city, Monaco, from the real open data in ``../shared/data/monaco``.

Run from the repository root::

    python data_samples/build_monaco.py [--shared ../shared/data/monaco] [--out data_samples/monaco]

Real assets come from OpenStreetMap (``monaco-2025.osm.pbf``) through the twin's own OSM
mapping (:mod:`layers.osm`); elevation from SRTM (``N43E007.hgt``). Layers or attributes that no
public source maps are derived from the real streets and buildings, deterministically (no
randomness: same input, same files), and every derived feature or value says so in its
properties (``derived``). ``data_samples/README.md`` describes each layer.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import rasterio
import rasterio.mask
import shapely
from pyproj import Transformer
from rasterio.windows import from_bounds

from layers.osm import read_osm

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "monaco"
METRIC = "EPSG:32632"
BBOX = (7.38, 43.70, 7.46, 43.77)
#: Monaco's population at the 2023 census (IMSEE, Monaco Statistics): 38,367 residents.
POPULATION = 38_367
RESIDENTIAL = {"apartments", "residential", "house", "detached", "terrace", "dormitory"}
WATER_DIAMETER = {
    "primary": 300,
    "secondary": 250,
    "tertiary": 200,
    "primary_link": 200,
    "secondary_link": 200,
    "tertiary_link": 150,
    "residential": 150,
    "unclassified": 150,
    "living_street": 100,
    "service": 100,
}
PLAN = [
    {"name": "A", "green_s": 40, "yellow_s": 3, "all_red_s": 2},
    {"name": "B", "green_s": 40, "yellow_s": 3, "all_red_s": 2},
]
TO_METRIC = Transformer.from_crs("EPSG:4326", METRIC, always_xy=True)
TO_LONLAT = Transformer.from_crs(METRIC, "EPSG:4326", always_xy=True)


def _stable(text: str) -> int:
    """Return a deterministic integer for a string (unlike Python's salted ``hash``)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


def _metric(frame: gpd.GeoDataFrame) -> gpd.GeoSeries:
    return frame.geometry.to_crs(METRIC)


def _elevation(dem_path: Path, points: gpd.GeoSeries) -> list[float | None]:
    with rasterio.open(dem_path) as dem:
        values = [v[0] for v in dem.sample([(p.x, p.y) for p in points])]
        return [None if v == dem.nodata else float(v) for v in values]


def clip_dem(source: Path, out: Path) -> None:
    """Write the SRTM tile clipped to the city's box as a compressed GeoTIFF."""
    with rasterio.open(source) as dem:
        window = from_bounds(*BBOX, transform=dem.transform).round_offsets().round_lengths()
        data = dem.read(1, window=window)
        profile = dem.profile | {
            "driver": "GTiff",
            "height": data.shape[0],
            "width": data.shape[1],
            "transform": dem.window_transform(window),
            "compress": "deflate",
            "nodata": -32768,
        }
    with rasterio.open(out, "w", **profile) as target:
        target.write(data, 1)


def buildings_with_population(buildings: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Fill missing heights from levels and share the census population by floor area."""
    b = buildings.copy()
    area = _metric(b).area
    levels = b["levels"].astype("float")
    height = b["height_m"].astype("float")
    source = np.where(height.notna(), "osm", np.where(levels.notna(), "levels", "default"))
    height = height.fillna(levels * 3.2).fillna(10.0)
    floors = levels.fillna((height / 3.2).round().clip(lower=1))
    residential = b["use"].isin(RESIDENTIAL) | (b["use"] == "yes")
    weight = np.where(b["use"].isin(RESIDENTIAL), 1.0, 0.5) * residential * area * floors
    share = weight / weight.sum() * POPULATION
    population = np.floor(share).astype(int)
    # largest remainders, so the total is exactly the census figure
    remainder = POPULATION - int(population.sum())
    order = np.argsort(-(share - population).to_numpy(), kind="stable")[:remainder]
    population.iloc[order] += 1
    b["height_m"] = height.round(1)
    b["population"] = population
    b["derived"] = [
        {
            "population": "census total shared by residential floor area",
            **({"height_m": f"from {s}"} if s != "osm" else {}),
        }
        for s in source
    ]
    return b


def districts_with_population(
    districts: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame
) -> gpd.GeoDataFrame:
    """Sum building population into each district (by representative point)."""
    d = districts.copy()
    points = gpd.GeoDataFrame(
        {"population": buildings["population"]},
        geometry=buildings.geometry.representative_point(),
        crs=buildings.crs,
    )
    totals = []
    for geom in d.geometry:
        totals.append(int(points.loc[points.within(geom), "population"].sum()))
    d["population"] = totals
    d["derived"] = [{"population": "sum of the buildings' derived population"}] * len(d)
    return d


def signal_plans(signals: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Give each real signal a default fixed-time two-phase plan (OSM maps no timing)."""
    s = signals.copy()
    s["program"] = "default-2phase"
    s["cycle_s"] = float(sum(p["green_s"] + p["yellow_s"] + p["all_red_s"] for p in PLAN))
    s["offset_s"] = 0.0
    s["phases"] = [PLAN] * len(s)
    s["derived"] = [{"timing": "default two-phase 90 s plan; OSM maps no signal timing"}] * len(s)
    return s


def _bearing(a: shapely.Point, b: shapely.Point) -> float:
    ax, ay = TO_METRIC.transform(a.x, a.y)
    bx, by = TO_METRIC.transform(b.x, b.y)
    return round(math.degrees(math.atan2(bx - ax, by - ay)) % 360, 1)


def cameras_with_view(cameras: gpd.GeoDataFrame, roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Point cameras without a mapped direction at the nearest road; default fov and range."""
    c = cameras.copy()
    metric_roads = _metric(roads)
    tree = shapely.STRtree(metric_roads.to_numpy())
    headings, derived = [], []
    for point, heading in zip(_metric(c), c["heading"], strict=True):
        notes = {"fov": "default 60 degrees", "range_m": "default 50 m"}
        if pd.isna(heading):
            road = metric_roads.iloc[int(tree.nearest(point))]
            target = shapely.ops.nearest_points(point, road)[1]
            if target.distance(point) < 1.0:  # on the road: look along it
                target = road.interpolate(min(road.project(point) + 10.0, road.length))
            a = shapely.Point(*TO_LONLAT.transform(point.x, point.y))
            b = shapely.Point(*TO_LONLAT.transform(target.x, target.y))
            heading = _bearing(a, b)
            notes["heading"] = "towards the nearest road"
        headings.append(float(heading))
        derived.append(notes)
    c["heading"] = headings
    c["fov"] = 60.0
    c["range_m"] = 50.0
    c["derived"] = derived
    return c


def _undirected_edges(roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    key = [tuple(sorted(p)) for p in zip(roads.source_node, roads.target_node, strict=True)]
    r = roads.assign(key=key).sort_values("id", kind="stable")
    return r.drop_duplicates("key").reset_index(drop=True)


def water_and_sewer(
    roads: gpd.GeoDataFrame,
    intersections: gpd.GeoDataFrame,
    hydrants: gpd.GeoDataFrame,
    dem: Path,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Lay water and sewer mains under the streets, with junctions, valves, hydrants, a source."""
    streets = _undirected_edges(roads)
    pipes: list[dict[str, Any]] = []
    for row, road_class in zip(streets.itertuples(), streets["class"], strict=True):
        seed = _stable(row.id)
        common = {"derived": {"network": "laid along the street centreline"}}
        pipes.append(
            {
                "id": f"water/{row.id}",
                "network": "water",
                "diameter_mm": float(WATER_DIAMETER.get(road_class, 150)),
                "material": "ductile_iron",
                "depth_m": 1.2,
                "install_year": 1960 + seed % 60,
                "status": "active",
                "from_node": int(row.source_node),
                "to_node": int(row.target_node),
                "geometry": row.geometry,
                **common,
            }
        )
        pipes.append(
            {
                "id": f"sewer/{row.id}",
                "network": "sewer",
                "diameter_mm": 400.0 if road_class in ("primary", "secondary") else 300.0,
                "material": "concrete",
                "depth_m": 2.5,
                "install_year": 1950 + seed % 50,
                "status": "active",
                "from_node": int(row.source_node),
                "to_node": int(row.target_node),
                "geometry": row.geometry,
                **common,
            }
        )
    pipelines = gpd.GeoDataFrame(pipes, geometry="geometry", crs="EPSG:4326")
    degree = pd.concat([streets.source_node, streets.target_node]).value_counts()
    used = intersections[intersections.node_id.isin(degree.index)].copy()
    used["elevation"] = _elevation(dem, used.geometry)
    nodes: list[dict[str, Any]] = []
    for row in used.itertuples():
        for network in ("water", "sewer"):
            nodes.append(
                {
                    "id": f"{network}/junction/{row.node_id}",
                    "kind": "junction",
                    "network": network,
                    "status": "active",
                    "elevation": row.elevation,
                    "node_id": int(row.node_id),
                    "geometry": row.geometry,
                    "derived": {"kind": "street junction"},
                }
            )
    # a valve on each water main, 5 m from every junction where three or more mains meet
    metric_pipes = _metric(pipelines)
    for i, pipe in pipelines[pipelines.network == "water"].iterrows():
        line = metric_pipes.loc[i]
        for side, end, node in (("a", 0.0, pipe.from_node), ("b", line.length, pipe.to_node)):
            if degree.get(node, 0) < 3 or line.length < 12.0:
                continue
            at = line.interpolate(min(max(end, 5.0), line.length - 5.0))
            lon, lat = TO_LONLAT.transform(at.x, at.y)
            nodes.append(
                {
                    "id": f"water/valve/{pipe.id.removeprefix('water/')}/{side}",
                    "kind": "valve",
                    "network": "water",
                    "status": "open",
                    "elevation": None,
                    "pipe": pipe.id,
                    "node_id": int(node),
                    "geometry": shapely.Point(lon, lat),
                    "derived": {"kind": "isolation valve 5 m from the junction"},
                }
            )
    # hydrants: the real ones, and one at every fourth junction (by node id)
    for row in hydrants.itertuples():
        nodes.append(
            {
                "id": row.id,
                "kind": "hydrant",
                "network": "water",
                "status": "open",
                "osm": row.osm,
                "geometry": row.geometry,
            }
        )
    for row in used.sort_values("node_id").iloc[::4].itertuples():
        nodes.append(
            {
                "id": f"water/hydrant/{row.node_id}",
                "kind": "hydrant",
                "network": "water",
                "status": "open",
                "elevation": row.elevation,
                "node_id": int(row.node_id),
                "geometry": row.geometry,
                "derived": {"kind": "hydrant at every fourth junction"},
            }
        )
    # the water source: a reservoir at the highest junction, feeding the city by gravity
    top = used.sort_values(["elevation", "node_id"], ascending=[False, True]).iloc[0]
    nodes.append(
        {
            "id": "water/source/reservoir",
            "kind": "source",
            "network": "water",
            "status": "active",
            "elevation": top.elevation,
            "node_id": int(top.node_id),
            "geometry": top.geometry,
            "derived": {"kind": "reservoir at the highest junction (SRTM)"},
        }
    )
    pipe_nodes = gpd.GeoDataFrame(nodes, geometry="geometry", crs="EPSG:4326")
    missing = pipe_nodes["elevation"].isna()
    pipe_nodes.loc[missing, "elevation"] = _elevation(dem, pipe_nodes.geometry[missing])
    return pipelines.drop(columns=["from_node", "to_node"]), pipe_nodes


def power_grid(
    roads: gpd.GeoDataFrame,
    intersections: gpd.GeoDataFrame,
    buildings: gpd.GeoDataFrame,
    real_lines: gpd.GeoDataFrame,
    real_nodes: gpd.GeoDataFrame,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Radial 20 kV feeders along the streets to transformers, 0.4 kV services to buildings."""
    streets = _undirected_edges(roads)
    graph = nx.Graph()
    for row, length in zip(streets.itertuples(), _metric(streets).length, strict=True):
        graph.add_edge(int(row.source_node), int(row.target_node), length=length, edge=row.id)
    main = max(nx.connected_components(graph), key=len)
    inter = intersections[intersections.node_id.isin(main)].reset_index(drop=True)
    inter_m = _metric(inter)
    substation = real_nodes[real_nodes.kind == "substation"].sort_values("id").iloc[0]
    sub_m = gpd.GeoSeries([substation.geometry], crs="EPSG:4326").to_crs(METRIC).iloc[0]
    root = int(inter.node_id.iloc[int(np.argmin(inter_m.distance(sub_m).to_numpy()))])
    # one transformer per 300 m cell: the junction nearest the cell's centre
    cells: dict[tuple[int, int], tuple[float, int]] = {}
    for node_id, point in zip(inter.node_id, inter_m, strict=True):
        cell = (int(point.x // 300), int(point.y // 300))
        centre = shapely.Point((cell[0] + 0.5) * 300, (cell[1] + 0.5) * 300)
        d = point.distance(centre)
        if cell not in cells or (d, node_id) < cells[cell]:
            cells[cell] = (d, int(node_id))
    transformers = sorted(node_id for _, node_id in cells.values())
    paths = nx.single_source_dijkstra_path(graph, root, weight="length")
    tree_edges: set[tuple[int, int]] = set()
    for node in transformers:
        path = paths[node]
        tree_edges.update(itertools.pairwise(path))
    children = pd.Series([a for a, _ in tree_edges]).value_counts()
    point_of = dict(zip(inter.node_id, inter.geometry, strict=True))
    metric_of = dict(zip(inter.node_id, inter_m, strict=True))
    lines: list[dict[str, Any]] = [
        {
            "id": row.id,
            "kind": row.kind,
            "voltage_kv": row.voltage_kv,
            "status": "active",
            "osm": row.osm,
            "geometry": row.geometry,
        }
        for row in real_lines.itertuples()
    ]
    nodes: list[dict[str, Any]] = [
        {
            "id": row.id,
            "kind": row.kind,
            "voltage_kv": row.voltage_kv,
            "status": row.status,
            "osm": row.osm,
            "geometry": row.geometry,
        }
        for row in real_nodes.itertuples()
    ]
    geometry_of = dict(zip(streets.id, streets.geometry, strict=True))
    for a, b in sorted(tree_edges):
        edge = graph.edges[a, b]["edge"]
        line = geometry_of[edge]
        if shapely.Point(line.coords[0]).distance(point_of[a]) > 1e-9:
            line = line.reverse()
        lines.append(
            {
                "id": f"feeder/{edge}",
                "kind": "feeder",
                "voltage_kv": 20.0,
                "status": "active",
                "geometry": line,
                "derived": {"kind": "20 kV feeder along the street"},
            }
        )
        if a == root or children.get(a, 0) >= 2:
            # a sectionalising switch where each branch leaves a fork, 5 m along it
            metric = gpd.GeoSeries([line], crs="EPSG:4326").to_crs(METRIC).iloc[0]
            at = metric.interpolate(min(5.0, metric.length / 3))
            nodes.append(
                {
                    "id": f"switch/feeder/{edge}",
                    "kind": "switch",
                    "voltage_kv": 20.0,
                    "status": "closed",
                    "line": f"feeder/{edge}",
                    "geometry": shapely.Point(*TO_LONLAT.transform(at.x, at.y)),
                    "derived": {"kind": "sectionalising switch at the start of a feeder branch"},
                }
            )
    lines.append(
        {
            "id": "feeder/substation",
            "kind": "feeder",
            "voltage_kv": 20.0,
            "status": "active",
            "geometry": shapely.LineString([substation.geometry, point_of[root]]),
            "derived": {"kind": "substation to the street network"},
        }
    )
    # each transformer stands 6 m off its junction (towards its cell's centre) on a tap line
    # with its disconnector half-way, so opening the switch darkens that transformer only
    placed: dict[int, shapely.Point] = {}
    for node in transformers:
        junction = metric_of[node]
        cell = (int(junction.x // 300), int(junction.y // 300))
        dx, dy = (cell[0] + 0.5) * 300 - junction.x, (cell[1] + 0.5) * 300 - junction.y
        norm = float(np.hypot(dx, dy))
        if norm < 1e-6:
            dx, dy, norm = 1.0, 0.0, 1.0
        spot = shapely.Point(junction.x + 6 * dx / norm, junction.y + 6 * dy / norm)
        middle = shapely.Point(junction.x + 3 * dx / norm, junction.y + 3 * dy / norm)
        placed[node] = shapely.Point(*TO_LONLAT.transform(spot.x, spot.y))
        lines.append(
            {
                "id": f"tap/{node}",
                "kind": "feeder",
                "voltage_kv": 20.0,
                "status": "active",
                "geometry": shapely.LineString([point_of[node], placed[node]]),
                "derived": {"kind": "20 kV tap from the feeder to the transformer"},
            }
        )
        nodes.append(
            {
                "id": f"transformer/{node}",
                "kind": "transformer",
                "voltage_kv": 20.0,
                "status": "active",
                "node_id": node,
                "geometry": placed[node],
                "derived": {"kind": "20/0.4 kV transformer, one per 300 m cell"},
            }
        )
        nodes.append(
            {
                "id": f"switch/{node}",
                "kind": "switch",
                "voltage_kv": 20.0,
                "status": "closed",
                "node_id": node,
                "line": f"tap/{node}",
                "geometry": shapely.Point(*TO_LONLAT.transform(middle.x, middle.y)),
                "derived": {"kind": "transformer disconnector on its tap"},
            }
        )
    t_points = gpd.GeoSeries([point_of[n] for n in transformers], crs="EPSG:4326").to_crs(METRIC)
    t_tree = shapely.STRtree(t_points.to_numpy())
    for row, point in zip(
        buildings.itertuples(), _metric(buildings).representative_point(), strict=True
    ):
        nearest = transformers[int(t_tree.nearest(point))]
        at = buildings.geometry.loc[row.Index].representative_point()
        nodes.append(
            {
                "id": f"consumer/{row.id}",
                "kind": "consumer",
                "voltage_kv": 0.4,
                "status": "active",
                "building": row.id,
                "transformer": f"transformer/{nearest}",
                "geometry": at,
                "derived": {"kind": "building supply point"},
            }
        )
        lines.append(
            {
                "id": f"service/{row.id}",
                "kind": "service",
                "voltage_kv": 0.4,
                "status": "active",
                "geometry": shapely.LineString([placed[nearest], at]),
                "derived": {"kind": "0.4 kV service from the nearest transformer"},
            }
        )
    return (
        gpd.GeoDataFrame(lines, geometry="geometry", crs="EPSG:4326"),
        gpd.GeoDataFrame(nodes, geometry="geometry", crs="EPSG:4326"),
    )


def vehicles(resources: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Station one vehicle at each named fire station, hospital and police station."""
    unit = {"fire_station": "fire engine", "hospital": "ambulance", "police": "patrol car"}
    rows = [
        {
            "id": f"vehicle/{row.id}",
            "kind": "vehicle",
            "name": f"{unit[row.kind]} ({row.name})",
            "capacity": 1,
            "status": "available",
            "unit": unit[row.kind],
            "base": row.id,
            "geometry": row.geometry,
            "derived": {"kind": "one vehicle stationed at its base"},
        }
        for row in resources.itertuples()
        if row.kind in unit and isinstance(row.name, str)
    ]
    return gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")


def incidents_and_closures(
    roads: gpd.GeoDataFrame,
    buildings: gpd.GeoDataFrame,
    pipelines: gpd.GeoDataFrame,
    signals: gpd.GeoDataFrame,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Make a few synthetic, labelled examples: no open source publishes live incidents."""
    mains = pipelines[pipelines.network == "water"]
    longest = mains.iloc[int(np.argmax(_metric(mains).length.to_numpy()))]
    tallest = buildings.sort_values(["height_m", "id"], ascending=[False, True]).iloc[0]
    signal = signals.sort_values("id").iloc[0]
    note = {"synthetic": "example incident for the sample city"}
    incidents = gpd.GeoDataFrame(
        [
            {
                "id": "incident/burst-main",
                "kind": "burst_main",
                "severity": 4,
                "status": "open",
                "starts_at": "2026-01-15T08:30:00Z",
                "pipe": longest.id,
                "geometry": longest.geometry.interpolate(0.5, normalized=True),
                "derived": note,
            },
            {
                "id": "incident/building-fire",
                "kind": "fire",
                "severity": 5,
                "status": "open",
                "starts_at": "2026-01-15T09:10:00Z",
                "building": tallest.id,
                "geometry": tallest.geometry.representative_point(),
                "derived": note,
            },
            {
                "id": "incident/collision",
                "kind": "collision",
                "severity": 2,
                "status": "closed",
                "starts_at": "2026-01-14T17:45:00Z",
                "ends_at": "2026-01-14T18:40:00Z",
                "geometry": signal.geometry,
                "derived": note,
            },
        ],
        geometry="geometry",
        crs="EPSG:4326",
    )
    works = roads[roads["class"] == "secondary"].sort_values("id").iloc[0]
    casino = shapely.Point(7.4280, 43.7393)  # Place du Casino
    circle = gpd.GeoSeries([casino], crs="EPSG:4326").to_crs(METRIC).buffer(80).to_crs(4326)
    note = {"synthetic": "example closure for the sample city"}
    closures = gpd.GeoDataFrame(
        [
            {
                "id": "closure/works",
                "kind": "works",
                "road_ids": [works.id],
                "starts_at": "2026-01-10T07:00:00Z",
                "ends_at": "2026-02-28T19:00:00Z",
                "geometry": works.geometry,
                "derived": note,
            },
            {
                "id": "closure/event-casino",
                "kind": "event",
                "road_ids": None,
                "starts_at": "2026-05-21T06:00:00Z",
                "ends_at": "2026-05-24T22:00:00Z",
                "geometry": circle.iloc[0],
                "derived": note,
            },
        ],
        geometry="geometry",
        crs="EPSG:4326",
    )
    return incidents, closures


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if math.isnan(value) else round(float(value), 3)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_geojson(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Write features as GeoJSON with 7-decimal coordinates, keys sorted, nulls dropped."""
    features = []
    geoms = shapely.set_precision(frame.geometry.to_numpy(), 1e-7, mode="pointwise")
    for (_, row), geom in zip(frame.drop(columns="geometry").iterrows(), geoms, strict=True):
        props = {
            k: _clean(v)
            for k, v in row.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        props = {k: v for k, v in props.items() if v is not None}
        features.append(
            {
                "type": "Feature",
                "properties": props,
                "geometry": json.loads(shapely.to_geojson(geom)),
            }
        )
    collection = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(collection, separators=(",", ":"), sort_keys=True) + "\n")


def build(shared: Path, out: Path) -> dict[str, int]:
    """Build every layer file of the sample city; return the feature count per layer."""
    out.mkdir(parents=True, exist_ok=True)
    dem = out / "dem.tif"
    clip_dem(shared / "N43E007.hgt", dem)
    osm = read_osm(shared / "monaco-2025.osm.pbf")
    layers: dict[str, gpd.GeoDataFrame] = {}
    intersections = osm["intersections"].copy()
    intersections["elevation"] = _elevation(dem, intersections.geometry)
    intersections["derived"] = [{"elevation": "SRTM 3 arc-second, nearest sample"}] * len(
        intersections
    )
    layers["roads"] = osm["roads"]
    layers["intersections"] = intersections
    layers["signals"] = signal_plans(osm["signals"])
    layers["buildings"] = buildings_with_population(osm["buildings"])
    layers["districts"] = districts_with_population(osm["districts"], layers["buildings"])
    layers["resources"] = pd.concat(
        [osm["resources"], vehicles(osm["resources"])], ignore_index=True
    )
    layers["cameras"] = cameras_with_view(osm["cameras"], osm["roads"])
    gas = osm["pipelines"].copy()
    gas["depth_m"] = gas["depth_m"].fillna(1.0)
    gas["derived"] = [{"depth_m": "typical 1.0 m cover"}] * len(gas)
    water, pipe_nodes = water_and_sewer(osm["roads"], intersections, osm["pipe_nodes"], dem)
    layers["pipelines"] = pd.concat([gas, water], ignore_index=True)
    layers["pipe_nodes"] = pipe_nodes
    layers["power_lines"], layers["power_nodes"] = power_grid(
        osm["roads"], intersections, layers["buildings"], osm["power_lines"], osm["power_nodes"]
    )
    layers["incidents"], layers["closures"] = incidents_and_closures(
        osm["roads"], layers["buildings"], layers["pipelines"], layers["signals"]
    )
    counts = {}
    for name, frame in layers.items():
        frame = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
        frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
        write_geojson(frame, out / f"{name}.geojson")
        counts[name] = len(frame)
    return counts


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=HERE / "monaco")
    args = parser.parse_args()
    counts = build(args.shared, args.out)
    for name, count in counts.items():
        print(f"{name:15} {count:6d}")


if __name__ == "__main__":
    main()
