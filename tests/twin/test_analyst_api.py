"""The analysts' side of the facade: an osmnx-shaped road graph, Points for positions, the
errors exported from ``twin`` and named in every docstring, notebooks on the public API.

osmnx is not a dependency of the project, so the graph is checked against osmnx's written
conventions (its 2.1 ``convert.validate_graph(strict=True)`` rules, ``graph_to_gdfs``'s use of
``x``/``y``/``crs``, ``routing.shortest_path``'s ``networkx.shortest_path`` on a weight), each
attribute against PostGIS or pgRouting, and the fastest path on ``travel_time`` against the
twin's own route.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import itertools
import json
import math
import re
from numbers import Real
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pyproj
import pytest
import shapely
import sqlalchemy as sa

import twin
from layers.database import get_engine
from routing.closures import closed_by_layer
from tests.routing.oracle import pgr_costs

ROOT = Path(__file__).resolve().parents[2]
A, B = (7.4165, 43.7315), (7.4290, 43.7400)  # as tests/api/test_routing.py routes


@pytest.fixture(scope="module")
def graph(sample_db: str) -> nx.MultiDiGraph:
    return twin.connect(sample_db).road_graph(profile="car")


def _rows(url: str, query: str) -> list[Any]:
    with get_engine(url).connect() as conn:
        return list(conn.execute(sa.text(query)).all())


# --- the road graph, as osmnx takes it ---------------------------------------------------


def osmnx_problems(graph: Any) -> list[str]:
    """What osmnx 2.1's ``convert.validate_graph(G, strict=True)`` would refuse or warn of."""
    problems = []
    if not isinstance(graph, nx.MultiDiGraph):
        problems.append("not a MultiDiGraph")
    try:
        pyproj.CRS.from_user_input(graph.graph["crs"])
    except (KeyError, pyproj.exceptions.CRSError):
        problems.append("G.graph['crs'] missing or not a CRS")
    if graph.number_of_nodes() == 0 or graph.number_of_edges() == 0:
        problems.append("no nodes or no edges")
    for node, data in graph.nodes(data=True):
        if not isinstance(node, int):
            problems.append(f"node id {node!r} is not an int")
        if not all(isinstance(data.get(k), Real) for k in ("x", "y")):
            problems.append(f"node {node}: x/y missing or not numeric")
        if "street_count" not in data:
            problems.append(f"node {node}: no street_count")
    for u, v, key, data in graph.edges(keys=True, data=True):
        if not isinstance(data.get("osmid"), int | list):
            problems.append(f"edge {(u, v, key)}: osmid missing or not int")
        if not isinstance(data.get("length"), Real):
            problems.append(f"edge {(u, v, key)}: length missing or not numeric")
    return problems


def test_road_graph_passes_osmnx_validation(graph: nx.MultiDiGraph) -> None:
    assert osmnx_problems(graph) == []
    assert pyproj.CRS.from_user_input(graph.graph["crs"]) == pyproj.CRS("EPSG:4326")
    # graph_to_gdfs's own construction: node Points from x/y, edges in G.graph["crs"]
    ids, data = zip(*graph.nodes(data=True), strict=True)
    nodes = gpd.GeoDataFrame(
        data,
        index=ids,
        crs=graph.graph["crs"],
        geometry=[shapely.Point(d["x"], d["y"]) for d in data],
    )
    edge_data = [data for _, _, data in graph.edges(data=True)]
    edges = gpd.GeoDataFrame(edge_data, crs=graph.graph["crs"], geometry="geometry")
    assert nodes.crs == edges.crs == "EPSG:4326"
    assert len(nodes) == graph.number_of_nodes() and len(edges) == graph.number_of_edges()
    assert {"travel_time", "length", "cost", "length_m", "name", "class"} <= set(edges.columns)


def test_nodes_stand_where_the_roads_end(sample_db: str, graph: nx.MultiDiGraph) -> None:
    ends = _rows(
        sample_db,
        "SELECT source_node, ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)) FROM roads "
        "WHERE valid_to IS NULL UNION SELECT target_node, ST_X(ST_EndPoint(geom)), "
        "ST_Y(ST_EndPoint(geom)) FROM roads WHERE valid_to IS NULL",
    )
    where = {int(node): (x, y) for node, x, y in ends}
    assert len(where) == len(ends)  # one position per node
    assert set(graph.nodes) <= set(where) and graph.number_of_nodes() > 1000
    for node, data in graph.nodes(data=True):
        assert (data["x"], data["y"]) == pytest.approx(where[node], abs=1e-9)
    # every arc's line runs from its tail to its head, as osmnx draws and projects it
    for u, v, data in graph.edges(data=True):
        coords = shapely.get_coordinates(data["geometry"])
        assert tuple(coords[0]) == pytest.approx((graph.nodes[u]["x"], graph.nodes[u]["y"]))
        assert tuple(coords[-1]) == pytest.approx((graph.nodes[v]["x"], graph.nodes[v]["y"]))


def test_arcs_carry_length_and_travel_time(sample_db: str, graph: nx.MultiDiGraph) -> None:
    closed = closed_by_layer(url=sample_db)
    rows = _rows(
        sample_db,
        "SELECT e.id, e.road_id, e.cost, e.reverse_cost, ST_Length(r.geom::geography), "
        "e.source, e.target FROM routing_edges_all e JOIN roads r ON r.vid = e.id "
        "WHERE e.profile = 'car'",
    )
    expected = {}
    streets: dict[int, int] = {}
    for edge, road, cost, reverse_cost, length, source, target in rows:
        if edge in closed:
            continue
        expected[(source, target, road)] = (cost, length, edge, reverse_cost < 0)
        if reverse_cost >= 0:
            expected[(target, source, f"{road}:reverse")] = (reverse_cost, length, edge, False)
        for node in (source, target):
            streets[node] = streets.get(node, 0) + 1
    arcs = {(u, v, k): d for u, v, k, d in graph.edges(keys=True, data=True)}
    assert set(arcs) == set(expected)
    for arc, (cost, length, edge, oneway) in expected.items():
        data = arcs[arc]
        assert data["travel_time"] == data["cost"] == pytest.approx(cost, rel=1e-12)
        assert data["length"] == data["length_m"] == pytest.approx(length, rel=1e-9)
        assert data["osmid"] == data["edge_id"] == edge and isinstance(data["osmid"], int)
        assert data["oneway"] is oneway
        assert data["reversed"] is arc[2].endswith(":reverse")
    # street_count: physical road edges meeting at the node (osmnx's undirected count)
    assert {n: d["street_count"] for n, d in graph.nodes(data=True)} == streets


def test_shortest_path_on_travel_time_is_the_twins_route(
    sample_db: str, graph: nx.MultiDiGraph
) -> None:
    city = twin.connect(sample_db)
    nodes = sorted(graph.nodes)
    pairs = list(zip(nodes[:25:3], nodes[-25::3], strict=True))
    oracle = pgr_costs(sample_db, "car", pairs, closed=closed_by_layer(url=sample_db))
    routed = 0
    for a, b in pairs:
        start = shapely.Point(graph.nodes[a]["x"], graph.nodes[a]["y"])
        end = (graph.nodes[b]["x"], graph.nodes[b]["y"])
        trip = city.route(start, end)
        try:  # what osmnx.routing.shortest_path(G, a, b, weight="travel_time") runs
            path = nx.shortest_path(graph, a, b, weight="travel_time")
        except nx.NetworkXNoPath:
            assert trip is None and (a, b) not in oracle
            continue
        # osmnx.routing.route_to_gdf takes the lightest of parallel arcs, as here
        legs = [
            min(graph[u][v].values(), key=lambda d: d["travel_time"])
            for u, v in itertools.pairwise(path)
        ]
        seconds = sum(leg["travel_time"] for leg in legs)
        assert seconds == pytest.approx(oracle[(a, b)], abs=1e-6)
        assert trip is not None
        assert trip.duration_s == pytest.approx(seconds, abs=1e-6)
        assert trip.distance_m == pytest.approx(sum(leg["length"] for leg in legs), abs=1e-3)
        routed += 1
    assert routed == len(oracle) >= 3


def test_nearest_node_of_each_intersection_is_its_node(
    sample_db: str, graph: nx.MultiDiGraph
) -> None:
    """osmnx's nearest_nodes on an unprojected graph (great-circle nearest x/y), against the
    intersections layer: each intersection's nearest graph node is its own road node."""
    ids = np.array(list(graph.nodes))
    lon = np.radians([graph.nodes[n]["x"] for n in ids])
    lat = np.radians([graph.nodes[n]["y"] for n in ids])
    intersections = _rows(
        sample_db,
        "SELECT node_id, ST_X(geom), ST_Y(geom) FROM intersections WHERE valid_to IS NULL",
    )
    checked = 0
    for node, x, y in intersections:
        if node not in graph:
            continue
        px, py = math.radians(x), math.radians(y)
        haversine = (
            np.sin((lat - py) / 2) ** 2 + np.cos(py) * np.cos(lat) * np.sin((lon - px) / 2) ** 2
        )
        assert int(ids[np.argmin(haversine)]) == node
        checked += 1
    assert checked == graph.number_of_nodes()


# --- positions: (lon, lat) or a shapely Point --------------------------------------------


def test_points_are_taken_wherever_a_lonlat_is(sample_db: str) -> None:
    city = twin.connect(sample_db)
    by_tuple, by_point = city.route(A, B), city.route(shapely.Point(A), shapely.Point(B))
    assert by_tuple is not None and by_point is not None
    assert by_point.duration_s == by_tuple.duration_s and by_point.road_ids == by_tuple.road_ids
    assert [u.id for u in city.nearest_units(shapely.Point(B), k=2)] == [
        u.id for u in city.nearest_units(B, k=2)
    ]
    points = gpd.GeoSeries([shapely.Point(A), shapely.Point(B)], crs=4326)
    areas = city.service_areas(points, breaks=[4])
    assert areas.geometry.iloc[0].equals(city.service_areas([A, B], breaks=[4]).geometry.iloc[0])
    matrix = city.od_matrix([shapely.Point(A), np.array(B)], [B, A])
    assert matrix.to_numpy().tolist() == city.od_matrix([A, B], [B, A]).to_numpy().tolist()
    assert matrix.iloc[0, 0] == pytest.approx(by_tuple.duration_s)
    near = city.around(shapely.Point(A), 150, layers=["roads"])
    assert list(near.features["roads"]["id"]) == list(
        city.around(A, 150, layers=["roads"]).features["roads"]["id"]
    )
    trip, holds = city.green_corridor(shapely.Point(A), shapely.Point(B))
    assert trip is not None and (trip, holds) == city.green_corridor(A, B)
    water = city.layer("pipelines").query("network == 'water'").geometry.iloc[0]
    on_pipe = shapely.line_interpolate_point(water, 0.5, normalized=True)
    outage = city.isolate(on_pipe)
    assert outage.summary() == city.isolate((on_pipe.x, on_pipe.y)).summary()


BAD_PLACES = [
    pytest.param(shapely.Point(), "empty", id="empty-point"),
    pytest.param((math.nan, 43.73), "finite", id="nan"),
    pytest.param((7.42, math.inf), "finite", id="inf"),
    pytest.param((7.42, 43.73, 0.0), "two numbers", id="three-numbers"),
    pytest.param((7.42,), "two numbers", id="one-number"),
    pytest.param("7.42,43.73", "shapely Point", id="string"),
    pytest.param(("7.42", "43.73"), "two numbers", id="strings"),
    pytest.param((True, False), "two numbers", id="booleans"),
    pytest.param(None, "shapely Point", id="none"),
    pytest.param(shapely.LineString([A, B]), "got a LineString", id="line"),
    pytest.param((43.73, 97.42), "not a lon/lat position", id="latitude-beyond-90"),
]


@pytest.mark.parametrize(("place", "reason"), BAD_PLACES)
def test_a_bad_place_is_a_parameter_error_naming_it(
    sample_db: str, place: Any, reason: str
) -> None:
    city = twin.connect(sample_db)
    calls = {
        "from": lambda: city.route(place, B),
        "to": lambda: city.green_corridor(A, place),
        "incident": lambda: city.nearest_units(place),
        "facilities[1]": lambda: city.service_areas([A, place]),
        "destinations[0]": lambda: city.od_matrix([A], [place]),
        "point": lambda: city.around(place, 100),
    }
    for parameter, call in calls.items():
        with pytest.raises(twin.ParameterError, match=re.escape(reason)) as raised:
            call()
        assert raised.value.parameter == parameter
        assert str(raised.value).startswith(f"{parameter}: ")
    with pytest.raises(twin.ParameterError) as raised:
        city.isolate(place)
    assert raised.value.parameter == "point"


def test_one_point_where_several_are_expected_is_refused(sample_db: str) -> None:
    city = twin.connect(sample_db)
    with pytest.raises(twin.ParameterError, match="a sequence of") as raised:
        city.service_areas(shapely.Point(A))  # type: ignore[arg-type]
    assert raised.value.parameter == "facilities"
    with pytest.raises(twin.ParameterError) as raised:
        city.od_matrix(A, [B])  # type: ignore[arg-type]  # a pair, not a list of them
    assert raised.value.parameter == "origins[0]"


def test_as_lonlat_reads_every_form_alike() -> None:
    forms = [A, list(A), np.array(A), shapely.Point(A), shapely.Point(*A, 12.0)]  # z aside
    assert {twin.as_lonlat(form) for form in forms} == {A}
    assert all(isinstance(v, float) for v in twin.as_lonlat((7, 43)))


# --- the errors: exported from twin, named in every docstring, raised as named -------------

EXPORTED_ERRORS = {
    "ParameterError": "layers.errors",
    "MissingInputError": "layers.errors",
    "AccessError": "layers.errors",
    "RoutingError": "routing.network",
    "TopologyError": "routing.utility_network",
    "MissingNetworkError": "routing.utility_network",
    "OneMapError": "layers.onemap",
    "RasterError": "layers.rasters",
    "SignalError": "routing.signals.model",
    "IngestError": "layers.validation",
    "IdentityError": "layers.identity",
    "CityError": "twin.founding",
    "StoreError": "layers.database",
}


def test_errors_are_exported_from_twin() -> None:
    for name, module in EXPORTED_ERRORS.items():
        error = getattr(twin, name)
        assert name in twin.__all__
        assert issubclass(error, Exception) and error.__module__ == module
    for name in ("RoutingError", "MissingInputError", "TopologyError", "OneMapError"):
        assert issubclass(getattr(twin, name), twin.ParameterError)


def raises_section(doc: str) -> list[str]:
    """The exception names of a numpydoc docstring's Raises section."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line == "Raises") + 2
    assert lines[start - 1] == "------"
    names = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            if line.startswith(("Examples", "Notes", "See Also", "Warns")):
                break
            names.append(line.strip())
    return names


def public_methods() -> list[str]:
    return [
        name
        for name, member in vars(twin.City).items()
        if not name.startswith("_") and inspect.isfunction(member)
    ]


@pytest.mark.parametrize("name", public_methods())
def test_every_public_method_says_what_it_raises(name: str) -> None:
    doc = inspect.getdoc(getattr(twin.City, name))
    assert doc is not None and "\nRaises\n------\n" in doc, f"City.{name} has no Raises section"
    names = raises_section(doc)
    assert names
    for error in names:  # each one catchable from twin, or a builtin
        found = getattr(twin, error, None) or getattr(builtins, error, None)
        assert isinstance(found, type) and issubclass(found, Exception), (name, error)


def test_connect_says_what_it_raises() -> None:
    assert raises_section(inspect.getdoc(twin.connect) or "") == ["IdentityError"]


def test_errors_are_raised_as_documented(sample_db: str, empty_db: str) -> None:
    city = twin.connect(sample_db)
    with pytest.raises(twin.RoutingError) as raised:
        city.road_graph(profile="bike")
    assert raised.value.parameter == "profile"
    with pytest.raises(twin.RoutingError, match="outside the city") as raised:
        city.route(A, (2.35, 48.85))
    assert raised.value.parameter == "to"
    with pytest.raises(KeyError, match="unknown layer"):
        city.layer("nope")
    with pytest.raises(twin.OneMapError) as refused:
        city.around(A, 0)
    assert refused.value.parameter == "radius_m"
    with pytest.raises(twin.TopologyError) as unknown:
        city.outage("milk")
    assert unknown.value.parameter == "network"
    with pytest.raises(twin.RasterError):
        city.flood_closures("no-such-raster")
    with pytest.raises(KeyError):
        city.signal_plan_sumo("no-such-plan")
    empty = twin.connect(empty_db)
    with pytest.raises(twin.RoutingError, match="roads layer is empty"):
        empty.road_graph()
    with pytest.raises(twin.MissingNetworkError) as missing:
        empty.outage("water")
    assert isinstance(missing.value, twin.MissingInputError)


# --- notebooks import the public API only, and twin imports no cycle ------------------------


def notebook_sources() -> dict[str, str]:
    return {
        path.name: "\n".join(
            "".join(cell["source"])
            for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
            if cell["cell_type"] == "code"
        )
        for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
    }


@pytest.mark.parametrize("name", sorted(notebook_sources()))
def test_notebook_uses_only_the_public_api(name: str) -> None:
    tree = ast.parse(notebook_sources()[name])
    private = {"layers", "routing", "api", "tests"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in private, alias.name
                assert alias.name == "twin" or not alias.name.startswith("twin."), alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            assert module.split(".")[0] not in private, module
            if module.split(".")[0] == "twin":
                assert module == "twin", module
                assert {alias.name for alias in node.names} <= set(twin.__all__)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "twin"
        ):
            assert node.attr in twin.__all__, f"twin.{node.attr} is not public"


def test_incidents_does_not_import_the_facade() -> None:
    tree = ast.parse((ROOT / "twin" / "incidents.py").read_text(encoding="utf-8"))
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any(name == "twin" or name.startswith("twin.") for name in imported), imported
