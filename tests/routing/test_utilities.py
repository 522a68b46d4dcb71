"""Utility topology and traces, checked against WNTR, pandapower and networkx."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from api.app import create_app
from layers.errors import MissingInputError
from layers.ingest import ingest_frame
from layers.settings import TwinSettings
from routing.traces import Utilities, outage
from routing.utility_network import (
    MissingNetworkError,
    TopologyError,
    UtilityNetwork,
    build_network,
)
from tests.assertions import problem
from tests.conftest import ROOT, SAMPLE

ORACLES = ROOT / ".venv-oracles" / "bin" / "python"
SCRIPT = Path(__file__).with_name("utility_oracles.py")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """Run an oracle in its own environment; return the layers and its answer."""
    assert ORACLES.exists(), "the oracles' environment is missing: run `make setup`"

    def run(*args: str) -> dict[str, Any]:
        out = tmp_path_factory.mktemp("oracle") / "out.json"
        done = subprocess.run(  # each takes about 10 s on a 2-core machine
            [str(ORACLES), str(SCRIPT), *args, str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"the oracle {args} failed:\n{done.stderr}"
        return json.loads(out.read_text())

    return run


def load(url: str, layer: str, collection: dict[str, Any], source: str) -> None:
    frame = gpd.GeoDataFrame.from_features(collection["features"], crs="EPSG:4326")
    ingest_frame(layer, frame, source=source, url=url)


def partition(net: UtilityNetwork, *, skip_kind: str) -> set[frozenset[str]]:
    """The twin's segments as sets of node and link names (a line by the piece at its middle)."""
    groups: dict[int, set[str]] = {}
    for node_id, kind, vertex in zip(net.nodes["id"], net.nodes["kind"], net.nodes["vertex"]):
        if kind != skip_kind:
            groups.setdefault(int(net.segment_of_vertex[vertex]), set()).add(f"node {node_id}")
    for i, line_id in enumerate(net.lines["id"]):
        piece = net.piece_at(i, float(net.lines["length_m"].iat[i]) / 2)
        groups.setdefault(int(net.segment_of_edge[piece]), set()).add(f"link {line_id}")
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("inp", ["Net3.inp", "ky10.inp"])
def test_valve_segments_equal_wntr(empty_db: str, oracle: Callable[..., dict[str, Any]], inp: str):
    answer = oracle("wntr", inp)
    load(empty_db, "pipelines", answer["pipelines"], "wntr")
    load(empty_db, "pipe_nodes", answer["pipe_nodes"], "wntr")
    net = Utilities(empty_db).network("water")
    assert net.problems.empty
    expected: dict[int, set[str]] = {}
    for kind in ("node", "link"):  # EPANET names nodes and links apart: "10" can be both
        for name, segment in answer[f"{kind}_segments"].items():
            expected.setdefault(segment, set()).add(f"{kind} {name}")
    assert partition(net, skip_kind="valve") == {frozenset(g) for g in expected.values()}
    assert net.device.sum() == answer["valves"]


def test_outages_equal_pandapower_unsupplied_buses(
    empty_db: str, oracle: Callable[..., dict[str, Any]]
):
    answer = oracle("pandapower")
    load(empty_db, "power_lines", answer["power_lines"], "pandapower")
    load(empty_db, "power_nodes", answer["power_nodes"], "pandapower")
    grid = Utilities(empty_db).network("power")
    assert grid.problems.empty
    buses = set(grid.nodes.loc[grid.nodes["kind"].isin(["bus", "substation"]), "id"])
    vertex_ok, _ = grid.base_supply
    base = {b for b in buses if not vertex_ok[grid.node_vertex(b)]}
    assert base == set(answer["base"])
    closed = {
        f["properties"]["id"]
        for f in answer["power_nodes"]["features"]
        if f["properties"]["kind"] == "switch" and f["properties"]["status"] == "closed"
    }
    assert set(answer["opened"]) == closed and len(closed) > 0  # each closed switch, opened
    for switch, unsupplied in answer["opened"].items():
        lost = set(outage(grid, operate=[switch]).nodes["id"]) & buses
        assert lost | base == set(unsupplied), switch


# --- the sample city -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def utilities(sample_db: str) -> Utilities:
    return Utilities(sample_db)


def graph_of(net: UtilityNetwork, *, without: set[int] | frozenset[int] = frozenset()) -> nx.Graph:
    """The network as a networkx graph over vertices, without some vertices."""
    g = nx.Graph()
    g.add_nodes_from(v for v in range(net.n_vertices) if v not in without)
    for e, (u, v) in enumerate(zip(net.edge_u, net.edge_v)):
        if u not in without and v not in without and net.edge_in_service[e]:
            g.add_edge(int(u), int(v), edge=e)
    return g


def test_sample_networks_build_clean(utilities: Utilities) -> None:
    nodes = [
        f["properties"]
        for f in json.loads((SAMPLE / "pipe_nodes.geojson").read_text())["features"]
        if f["properties"]["network"] == "water"
    ]
    water = utilities.network("water")
    assert water.problems.empty
    # every isolation valve of the sample stands on its main, and its one reservoir feeds it
    assert water.device.sum() == sum(n["kind"] == "valve" for n in nodes) > 0
    assert water.source.sum() == sum(n["kind"] == "source" for n in nodes) == 1
    _, edge_ok = water.base_supply
    assert edge_ok.mean() > 0.99  # a few street islands are off the main network
    power = utilities.network("power")
    assert set(power.problems["kind"]) <= {"dangling_end"}  # the real 63 kV cables' far ends
    assert (power.buildings["vertex"] >= 0).all()  # each building by its consumer node
    gas = utilities.network("gas")
    assert (gas.problems["kind"] == "dangling_end").any()  # real OSM gas pipes, unconnected


def check_isolation(net: UtilityNetwork, result: Any, line: str) -> int:
    """Check an isolation with networkx: the break is cut off from every source, each device
    operated is needed (operating all but it leaves the break joined to the rest), and the
    isolated length is what the operated devices enclose. Return how many devices were closed."""
    operated = {net.node_vertex(v) for v in result.operate}
    closed = {v for v in operated if net.device[v]}
    shut = operated - closed  # sources inside the isolated part
    assert all(net.source[v] for v in shut)
    i = net.line_index[line]
    broken = net.piece_at(i, float(net.lines["length_m"].iat[i]) / 2)
    ends = [int(v) for v in (net.edge_u[broken], net.edge_v[broken]) if v not in closed]
    g = graph_of(net, without=closed)
    area = nx.node_connected_component(g, ends[0]) if ends else set()
    assert not (area & (set(np.flatnonzero(net.source)) - shut))  # no open source feeds it
    for device in closed:  # opening any one of them alone joins the area to the rest again
        reopened = nx.node_connected_component(
            graph_of(net, without=closed - {device}), ends[0] if ends else device
        )
        assert reopened - area - {device}
    touching = {
        e
        for e in range(net.n_edges)
        if net.edge_u[e] in area or net.edge_v[e] in area or e == broken
    }
    assert result.isolated["length_m"].sum() == pytest.approx(
        sum(net.edge_to_m[e] - net.edge_from_m[e] for e in touching), rel=1e-9
    )
    return len(closed)


def test_isolating_a_break_closes_exactly_the_boundary_valves(utilities: Utilities) -> None:
    water = utilities.network("water")
    reservoir = water.node_vertex("water/source/reservoir")
    beside = {  # the mains in the reservoir's own segment: it must be shut as well
        str(water.lines["id"].iat[water.edge_line[e]])
        for e in np.flatnonzero(water.segment_of_edge == water.segment_of_vertex[reservoir])
    }
    assert beside  # the reservoir stands on mains
    lines = [*water.lines["id"].iloc[::150], *sorted(beside)]
    devices = shut = 0
    for line in lines:
        result = utilities.isolate(line=line, network="water")
        assert result.cause["line"] == line
        devices += check_isolation(water, result, line)
        if line in beside:
            assert "water/source/reservoir" in result.operate
            shut += 1
    assert shut == len(beside)
    assert devices >= len(lines)  # each break is closed in by one valve at least


def test_an_inoperable_valve_closes_the_next_ring(utilities: Utilities) -> None:
    line = "water/way/167625719/0"
    first = utilities.isolate(line=line, network="water")
    stuck = first.operate[0]
    second = utilities.isolate(line=line, network="water", inoperable=[stuck])
    assert stuck not in second.operate and second.unable == [stuck]
    assert second.isolated["length_m"].sum() > first.isolated["length_m"].sum()
    assert set(second.buildings["id"]) >= set(first.buildings["id"])


def test_a_break_point_off_every_pipe(utilities: Utilities) -> None:
    with pytest.raises(TopologyError, match="not on a line"):
        utilities.isolate((7.0, 43.0))
    with pytest.raises(TopologyError, match="unknown network"):
        utilities.network("steam")
    with pytest.raises(TopologyError, match="not a node"):
        utilities.outage("water", operate=["no/such/valve"])


def test_opening_a_transformer_switch_darkens_its_buildings(utilities: Utilities) -> None:
    power = utilities.network("power")
    switch = str(power.nodes.loc[power.nodes["id"].str.match(r"switch/\d+$"), "id"].iloc[0])
    transformer = "transformer/" + switch.removeprefix("switch/")
    result = utilities.outage("power", operate=[switch])
    assert set(result.nodes.loc[result.nodes["kind"] == "transformer", "id"]) == {transformer}
    consumers = power.nodes[power.nodes["kind"] == "consumer"]
    fed = {p["building"] for p in consumers["props"] if p.get("transformer") == transformer}
    assert set(result.buildings["id"]) == fed


def test_a_feeder_fault_opens_its_sectionalisers(utilities: Utilities) -> None:
    power = utilities.network("power")
    branch = power.nodes.loc[power.nodes["id"].str.startswith("switch/feeder/"), "props"]
    faults = 0
    for props in branch.iloc[::10]:
        result = utilities.isolate(line=props["line"], network="power")
        assert result.cause["kind"] == "fault"
        assert result.operate and all(s.startswith("switch/") for s in result.operate)
        check_isolation(power, result, props["line"])
        faults += 1
    assert faults == len(range(0, len(branch), 10)) > 0


def test_networks_without_a_source_are_not_traced(utilities: Utilities) -> None:
    with pytest.raises(TopologyError, match="sewer network has no source"):
        utilities.isolate(line=str(utilities.network("sewer").lines["id"].iat[0]), network="sewer")
    with pytest.raises(TopologyError, match="heat network holds no lines"):
        utilities.outage("heat")


def test_a_hydrant_out_of_service_takes_nothing_else(utilities: Utilities) -> None:
    water = utilities.network("water")
    hydrants = water.nodes[water.nodes["id"].str.match(r"water/hydrant/\d+$")]
    hydrant = str(hydrants["id"].iloc[0])  # shares its vertex with a street junction
    result = utilities.outage("water", out=[hydrant])
    assert result.nodes.empty and result.buildings.empty and result.lost.empty


def test_a_grid_outage_cascades_to_signals_and_cameras(utilities: Utilities, sample_db: str):
    deps = utilities.dependents()
    assert set(deps["layer"]) == {"signals", "cameras"}  # the sample has no pumps
    assert deps["fed_by"].notna().all()
    # independent: the nearest transformer by geopandas
    power = utilities.network("power")
    transformers = power.nodes[power.nodes["kind"] == "transformer"][["id", "geometry"]]
    from layers.queries import read_layer

    signals = read_layer("signals", url=sample_db).to_crs(power.crs)
    nearest = gpd.sjoin_nearest(signals[["id", "geometry"]], transformers, how="left")
    expected = dict(zip(nearest["id_left"], nearest["id_right"]))
    got = deps[deps["layer"] == "signals"].set_index("id")["fed_by"].to_dict()
    assert got == expected
    transformer = str(got[next(iter(got))])
    result = utilities.cascade(utilities.outage("power", out=[transformer]))
    dark_signals = set(result.dark.loc[result.dark["layer"] == "signals", "id"])
    assert dark_signals == {s for s, t in got.items() if t == transformer}


def test_a_dark_pump_stops_the_water_it_lifts(empty_db: str) -> None:
    """Hand-made: reservoir R -> main -> pump P -> main -> junction J serving a house.

    The pump (drawn 5 m beside the mains, it stands in them) is fed by transformer T; opening
    T's switch darkens the pump, and J, its hydrant and the house lose water. Coordinates in a
    local metric frame (UTM 32N near Monaco).
    """
    x0, y0 = 370_000.0, 4_845_000.0

    def frame(rows: list[dict[str, Any]]) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:32632").to_crs(4326)

    pt = lambda dx, dy: shapely.Point(x0 + dx, y0 + dy)  # noqa: E731
    line = lambda *xy: shapely.LineString([(x0 + a, y0 + b) for a, b in xy])  # noqa: E731
    water = dict(network="water", status="active")
    ingest_frame(
        "pipelines",
        frame(
            [
                {"id": "m1", **water, "geometry": line((0, 0), (100, 0))},
                {"id": "m2", **water, "geometry": line((100, 0), (200, 0))},
            ]
        ),
        source="hand",
        url=empty_db,
    )
    ingest_frame(
        "pipe_nodes",
        frame(
            [
                {"id": "R", "kind": "source", **water, "geometry": pt(0, 0)},
                {"id": "P", "kind": "pump", **water, "geometry": pt(100, 5)},  # drawn beside
                {"id": "J", "kind": "junction", **water, "geometry": pt(200, 0)},
                {"id": "H", "kind": "hydrant", **water, "geometry": pt(200, 10)},
            ]
        ),
        source="hand",
        url=empty_db,
    )
    ingest_frame(
        "power_lines",
        frame([{"id": "f", "kind": "feeder", "geometry": line((0, 50), (100, 50))}]),
        source="hand",
        url=empty_db,
    )
    ingest_frame(
        "power_nodes",
        frame(
            [
                {"id": "S", "kind": "substation", "geometry": pt(0, 50)},
                {"id": "K", "kind": "switch", "status": "closed", "geometry": pt(50, 50)},
                {"id": "T", "kind": "transformer", "geometry": pt(100, 50)},
            ]
        ),
        source="hand",
        url=empty_db,
    )
    house = shapely.box(x0 + 210, y0 - 10, x0 + 230, y0 + 10)
    ingest_frame(
        "buildings",
        frame([{"id": "house", "population": 4, "geometry": house}]),
        source="hand",
        url=empty_db,
    )
    utilities = Utilities(empty_db)
    water_net = utilities.network("water")
    assert water_net.problems.empty  # the hydrant joins J's main by a 10 m lateral
    cascade = utilities.cascade(utilities.outage("power", operate=["K"]))
    assert list(cascade.dark["id"]) == ["P"]
    lost = cascade.water["water"]
    assert set(lost.nodes["id"]) == {"J", "H"}
    assert lost.hydrants == ["H"]
    assert list(lost.buildings["id"]) == ["house"] and lost.buildings["population"].sum() == 4
    assert lost.lost["length_m"].sum() == pytest.approx(110.0, abs=0.01)  # m2 and the lateral


def test_topology_rules_on_a_hand_made_network() -> None:
    """A tee (an end on another line's interior), a dangling end and a node off every line."""
    x0, y0 = 370_000.0, 4_845_000.0
    lines = gpd.GeoDataFrame(
        {"id": ["a", "b", "c"]},
        geometry=[
            shapely.LineString([(x0, y0), (x0 + 100, y0)]),
            shapely.LineString([(x0 + 50, y0 + 0.2), (x0 + 50, y0 + 80)]),  # tees into a
            shapely.LineString([(x0 + 300, y0), (x0 + 400, y0)]),  # alone: two dangling ends
        ],
        crs="EPSG:32632",
    )
    nodes = gpd.GeoDataFrame(
        {"id": ["s", "v", "far"], "kind": ["source", "valve", "junction"]},
        geometry=[
            shapely.Point(x0, y0),
            shapely.Point(x0 + 50, y0 + 40),
            shapely.Point(x0 + 50, y0 + 500),
        ],
        crs="EPSG:32632",
    )
    net = build_network("water", lines, nodes, crs="EPSG:32632")
    problems = {(k, i) for k, i in zip(net.problems["kind"], net.problems["id"])}
    assert problems == {
        ("dangling_end", "c"),
        ("unattached_node", "far"),
        ("dangling_end", "b"),  # b's far end at y0 + 80 joins nothing
        ("dangling_end", "a"),  # a's east end too
    }
    assert net.n_edges == 5  # a cut at the tee, b cut at the valve, c whole
    assert net.n_segments == 3  # a + lower b | upper b | c
    _, edge_ok = net.base_supply
    assert edge_ok.tolist().count(True) == 4


# --- no pipes, no trace: the error says which and how to load them ---------------------------


@pytest.mark.parametrize(
    ("network", "layer", "command"),
    [
        (
            "water",
            "pipelines",
            "no water pipelines loaded; import them with `twin ingest pipelines",
        ),
        ("heat", "pipelines", "no heat pipelines loaded; import them with `twin ingest pipelines"),
        (
            "power",
            "power_lines",
            "no power lines loaded; import them with `twin ingest power_lines",
        ),
    ],
)
def test_a_network_with_no_lines_says_what_to_load(
    empty_db: str, network: str, layer: str, command: str
) -> None:
    utilities = Utilities(empty_db)
    for trace in (
        lambda: utilities.network(network),
        lambda: utilities.outage(network),
        lambda: utilities.isolate((7.42, 43.73), network=network),
        lambda: utilities.isolate(line="no/such", network=network),
    ):
        with pytest.raises(MissingNetworkError) as raised:
            trace()
        error = raised.value
        assert isinstance(error, MissingInputError) and isinstance(error, TopologyError)
        assert str(error).replace(f": the {network} network holds no lines to trace", "") == (
            f"{command} FILE` "
            + ("(lines and cables)" if network == "power" else f"(lines with network={network})")
        )
        assert (error.missing, error.parameter, error.network) == (layer, "network", network)


def test_isolating_anywhere_with_no_lines_at_all_says_so(empty_db: str) -> None:
    with pytest.raises(MissingInputError, match="no utility lines loaded") as raised:
        Utilities(empty_db).isolate((7.42, 43.73))
    assert "twin ingest pipelines FILE" in str(raised.value)
    assert "twin ingest power_lines FILE" in str(raised.value)
    assert raised.value.parameter == "network"


def test_the_sample_city_has_no_heat_pipes_and_says_so(utilities: Utilities) -> None:
    with pytest.raises(MissingNetworkError, match="no heat pipelines loaded"):
        utilities.outage("heat")
    # any network: the break is found on the networks that have lines
    water = utilities.network("water")
    line = str(water.lines["id"].iat[0])
    assert utilities.isolate(line=line).network == "water"


def test_the_api_answers_a_problem_naming_the_network(empty_db: str) -> None:
    with TestClient(create_app(TwinSettings(database_url=empty_db))) as client:
        for method, path, kwargs in (
            ("get", "/utilities/water", {}),
            ("post", "/utilities/gas/outage", {"json": {}}),
            ("post", "/utilities/sewer/isolate", {"json": {"point": [7.42, 43.73]}}),
            ("post", "/utilities/power/outage", {"json": {"out": ["x"]}}),
        ):
            body = problem(getattr(client, method)(path, **kwargs), 409, "network")
            name = path.split("/")[2]
            what = "power lines" if name == "power" else f"{name} pipelines"
            assert body["detail"].startswith(f"no {what} loaded"), body
            assert "twin ingest" in body["detail"]
