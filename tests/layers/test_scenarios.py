"""What-if scenarios in the store: overlays that never touch the base, isolated from each other.

The oracles are the tables themselves (a digest of every row of every layer, before and after),
the base's own answers before the scenario existed, and pgRouting over the routing view with the
closed road's edges left out.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
import scipy.sparse.csgraph as csgraph
import shapely
import sqlalchemy as sa

import twin
from layers import scenarios
from layers.catalog import LAYERS
from layers.database import get_engine
from layers.errors import ParameterError
from layers.queries import read_layer
from layers.tiles import WEB_MERCATOR_QUAD, render_tile, tile_etag
from tests.routing.oracle import pgr_costs

A, B = (7.4165, 43.7315), (7.4290, 43.7400)
#: Where a scenario's new tower stands (La Condamine), and the z15 tile (z, x, y) holding it.
TOWER = shapely.box(7.4205, 43.7340, 7.4208, 43.7343)
TILE = (15, *WEB_MERCATOR_QUAD.tile(7.4206, 43.7341, 15)[:2])

Make = Callable[..., scenarios.Scenario]


@pytest.fixture
def make(routing_db: str) -> Iterator[Make]:
    """Make scenarios with fresh names; delete them afterwards."""
    made: list[str] = []

    def new(**kwargs: object) -> scenarios.Scenario:
        name = f"test-{secrets.token_hex(4)}"
        made.append(name)
        return scenarios.create(name, url=routing_db, **kwargs)  # type: ignore[arg-type]

    yield new
    for name in made:
        with contextlib.suppress(scenarios.ScenarioNotFoundError):
            scenarios.delete(name, url=routing_db)


def digest(url: str) -> dict[str, str]:
    """An md5 of every row (all versions, every column) of every layer table."""
    out = {}
    with get_engine(url).connect() as conn:
        for layer in LAYERS.values():
            out[layer.id] = conn.execute(
                sa.text(
                    f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY vid), '')) "
                    f"FROM {layer.table} AS t"
                )
            ).scalar_one()
    return out


def feature(feature_id: str, geometry: shapely.Geometry, **properties: object) -> dict:
    return {
        "type": "Feature",
        "id": feature_id,
        "geometry": shapely.geometry.mapping(geometry),
        "properties": properties,
    }


def route_road(url: str) -> str:
    trip = twin.connect(url).route(A, B)
    assert trip is not None
    return str(trip.road_ids[len(trip.road_ids) // 2])


def test_an_edit_in_a_scenario_leaves_the_base_bit_for_bit(routing_db: str, make: Make) -> None:
    city = twin.connect(routing_db)
    before = digest(routing_db)
    buildings = read_layer("buildings", url=routing_db)
    tile = render_tile(["buildings", "roads", "resources"], *TILE, url=routing_db)
    etag = tile_etag(["buildings", "roads", "resources"], *TILE, url=routing_db)
    trip = city.route(A, B)
    road = route_road(routing_db)
    station = read_layer("resources", url=routing_db).query("kind == 'fire_station'").iloc[0]
    scenario = make(title="everything at once")
    name = scenario.name
    scenarios.retire_feature(name, "roads", road, url=routing_db)
    scenarios.retire_feature(name, "buildings", buildings.id.iloc[0], url=routing_db)
    scenarios.put_feature(
        name,
        "resources",
        feature(station.id, station.geometry, kind="fire_station", status="out_of_service"),
        url=routing_db,
    )
    scenarios.put_feature(
        name,
        "buildings",
        feature("new-tower", TOWER, height_m=80.0),
        url=routing_db,
    )
    with scenarios.using(name, url=routing_db):
        assert len(read_layer("buildings", url=routing_db)) == len(buildings)  # -1 +1
        assert road not in city.route(A, B).road_ids
        assert render_tile(["buildings", "roads", "resources"], *TILE, url=routing_db) != tile
    # the base: its tables, its features, its tile and its route exactly as before
    assert digest(routing_db) == before
    again = read_layer("buildings", url=routing_db)
    assert again.drop(columns="geometry").equals(buildings.drop(columns="geometry"))
    assert again.geometry.geom_equals_exact(buildings.geometry, tolerance=0).all()
    assert render_tile(["buildings", "roads", "resources"], *TILE, url=routing_db) == tile
    assert tile_etag(["buildings", "roads", "resources"], *TILE, url=routing_db) == etag
    after = city.route(A, B)
    assert after.road_ids == trip.road_ids and after.duration_s == trip.duration_s


def test_reads_in_a_scenario_see_its_adds_changes_and_retirements(
    routing_db: str, make: Make
) -> None:
    name = make().name
    stations = read_layer("resources", url=routing_db).query("kind == 'fire_station'")
    moved = stations.iloc[0]
    add = scenarios.put_feature(
        name,
        "resources",
        feature("station-new", shapely.Point(7.4180, 43.7330), kind="fire_station", name="新站"),
        url=routing_db,
    )
    change = scenarios.put_feature(
        name,
        "resources",
        feature(moved.id, shapely.Point(7.4190, 43.7320), kind="fire_station", name="Moved"),
        url=routing_db,
    )
    retire = scenarios.retire_feature(name, "resources", stations.iloc[1].id, url=routing_db)
    assert (add.op, change.op, retire.op) == ("add", "change", "retire")
    assert retire.revision == 3
    with scenarios.using(name, url=routing_db):
        seen = read_layer("resources", url=routing_db).set_index("id")
    assert "station-new" in seen.index and seen.loc["station-new", "name"] == "新站"
    assert seen.loc[moved.id, "name"] == "Moved"
    assert seen.loc[moved.id].geometry.equals(shapely.Point(7.4190, 43.7320))
    assert stations.iloc[1].id not in seen.index
    assert len(seen) == len(read_layer("resources", url=routing_db))  # +1 -1
    assert scenarios.get(name, url=routing_db).edits == {"resources": 3}


def test_edits_are_versioned_and_an_undo_shows_the_base_again(routing_db: str, make: Make) -> None:
    name = make().name
    building = read_layer("buildings", url=routing_db).iloc[3]
    for height in (20.0, 30.0):
        scenarios.put_feature(
            name,
            "buildings",
            feature(building.id, building.geometry, height_m=height),
            url=routing_db,
        )
    history = scenarios.edits(name, history=True, url=routing_db)
    assert list(history.op) == ["change", "change"]
    assert history.valid_to.isna().tolist() == [False, True]
    with scenarios.using(name, url=routing_db):
        assert (
            read_layer("buildings", url=routing_db).set_index("id").loc[building.id, "height_m"]
            == 30
        )
    scenarios.drop_edit(name, "buildings", building.id, url=routing_db)
    assert scenarios.edits(name, url=routing_db).empty
    assert len(scenarios.edits(name, history=True, url=routing_db)) == 2
    with scenarios.using(name, url=routing_db):
        seen = read_layer("buildings", url=routing_db).set_index("id").loc[building.id]
    assert seen.height_m == building.height_m or (
        np.isnan(seen.height_m) and np.isnan(building.height_m)
    )


def test_two_scenarios_edited_concurrently_do_not_see_each_other(
    routing_db: str, make: Make
) -> None:
    names = [make().name, make().name]
    base = len(read_layer("closures", url=routing_db))
    barrier = threading.Barrier(2)
    seen: dict[str, set[str]] = {}
    failures: list[BaseException] = []

    def work(name: str) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(8):
                point = shapely.Point(7.415 + 0.001 * i, 43.731)
                scenarios.put_feature(
                    name, "closures", feature(f"{name}-{i}", point, kind="works"), url=routing_db
                )
                with scenarios.using(name, url=routing_db):
                    ids = set(read_layer("closures", url=routing_db).id)
                assert {f"{name}-{j}" for j in range(i + 1)} <= ids
            with scenarios.using(name, url=routing_db):
                seen[name] = set(read_layer("closures", url=routing_db).id)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    for name, other in (names, names[::-1]):
        assert len(seen[name]) == base + 8
        assert not any(i.startswith(other) for i in seen[name])
    assert len(read_layer("closures", url=routing_db)) == base


def test_a_closure_in_a_scenario_routes_as_pgrouting_without_that_road(
    routing_db: str, make: Make
) -> None:
    city = twin.connect(routing_db)
    base_trip = city.route(A, B)
    road = route_road(routing_db)
    name = make().name
    scenarios.put_feature(
        name,
        "closures",
        feature("works-1", shapely.Point(*A), kind="works", road_ids=[road]),
        url=routing_db,
    )
    with scenarios.using(name, url=routing_db):
        trip = city.route(A, B)
        network = city.router.network("car")
    assert road not in trip.road_ids
    assert trip.duration_s > base_trip.duration_s
    closed_ids = [int(network.edge_id[i]) for i in np.flatnonzero(network.closed)]
    assert {str(network.road_id[network.edge_index[e]]) for e in closed_ids} == {road}
    # every node pair's cost in the scenario equals pgr_dijkstra over the edges without the road
    rng = np.random.default_rng(16)
    nodes = network.node_ids
    pairs = [(int(a), int(b)) for a, b in rng.choice(nodes, size=(40, 2)) if a != b]
    oracle = pgr_costs(routing_db, "car", pairs, closed=closed_ids)
    index = {int(n): i for i, n in enumerate(nodes)}
    costs = csgraph.dijkstra(network.graph, indices=[index[a] for a, _ in pairs])
    for row, (a, b) in enumerate(pairs):
        cost = costs[row, index[b]]
        if (a, b) in oracle:
            assert cost == pytest.approx(oracle[(a, b)], abs=1e-6)
        else:
            assert np.isinf(cost)
    # and the base's routes not at all
    assert city.route(A, B).road_ids == base_trip.road_ids


def test_a_road_retired_in_a_scenario_is_gone_from_its_network(routing_db: str, make: Make) -> None:
    city = twin.connect(routing_db)
    road = route_road(routing_db)
    name = make().name
    scenarios.retire_feature(name, "roads", road, url=routing_db)
    with scenarios.using(name, url=routing_db):
        network = city.router.network("car")
        assert road not in set(network.road_id)
        assert road not in city.route(A, B).road_ids
    assert road in set(city.router.network("car").road_id)


def test_a_scenario_built_on_a_past_moment_reads_the_base_then(
    routing_db: str, make: Make, city: twin.City
) -> None:
    then = datetime.now(UTC)
    closure = city.close_roads(road_ids=[route_road(routing_db)], kind="works")
    past = make(base_at=then).name
    live = make().name
    for name in (past, live):
        scenarios.put_feature(
            name, "closures", feature(f"{name}-c", shapely.Point(*B), kind="event"), url=routing_db
        )
    with scenarios.using(past, url=routing_db):
        at_then = set(read_layer("closures", url=routing_db).id)
    with scenarios.using(live, url=routing_db):
        now = set(read_layer("closures", url=routing_db).id)
    assert f"{past}-c" in at_then and closure not in at_then
    assert f"{live}-c" in now and closure in now


def test_tiles_of_a_scenario_are_cut_and_keyed_apart(routing_db: str, make: Make) -> None:
    layers_ = ["buildings"]
    name = make().name
    base_tile = render_tile(layers_, *TILE, url=routing_db)
    base_etag = tile_etag(layers_, *TILE, url=routing_db)
    tower = TOWER
    scenarios.put_feature(
        name, "buildings", feature("tower", tower, height_m=120.0), url=routing_db
    )
    with scenarios.using(name, url=routing_db):
        first = tile_etag(layers_, *TILE, url=routing_db)
        assert render_tile(layers_, *TILE, url=routing_db) != base_tile
    scenarios.put_feature(
        name, "buildings", feature("tower", tower, height_m=150.0), url=routing_db
    )
    with scenarios.using(name, url=routing_db):
        second = tile_etag(layers_, *TILE, url=routing_db)
    assert len({base_etag, first, second}) == 3  # each revision has its own key
    # as of a moment before the sample was loaded, the base tile is empty
    assert render_tile(layers_, *TILE, at=datetime(2000, 1, 1, tzinfo=UTC), url=routing_db) == b""


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda url: scenarios.create("Bad Name", url=url), "name"),
        (lambda url: scenarios.create("base", url=url), "name"),
        (lambda url: scenarios.create("ok-name", status="done", url=url), "status"),
        (lambda url: scenarios.create("ok-name", base_at="yesterday", url=url), "base_at"),
        (lambda url: scenarios.create("ok-name", settings=[1], url=url), "settings"),
        (
            lambda url: scenarios.create("ok-name", settings={"flood": {"raster": 1}}, url=url),
            "settings.flood",
        ),
        (
            lambda url: scenarios.create(
                "ok-name", settings={"flood": {"raster": "f", "threshold_m": -1}}, url=url
            ),
            "settings.flood.threshold_m",
        ),
        (
            lambda url: scenarios.create(
                "ok-name", settings={"broken": [{"layer": "roads", "id": "x"}]}, url=url
            ),
            "settings.broken[0]",
        ),
        (
            lambda url: scenarios.create(
                "ok-name", settings={"broken": [{"layer": "pipelines"}]}, url=url
            ),
            "settings.broken[0].id",
        ),
    ],
)
def test_bad_scenarios_are_refused_naming_the_field(
    routing_db: str, call: Callable[[str], object], parameter: str
) -> None:
    with pytest.raises(ParameterError) as raised:
        call(routing_db)
    assert raised.value.parameter == parameter
    assert all(s.name != "ok-name" for s in scenarios.list_scenarios(url=routing_db))


def test_bad_edits_are_refused_naming_the_field_and_store_nothing(
    routing_db: str, make: Make
) -> None:
    name = make().name
    point = shapely.Point(7.42, 43.73)
    station = feature("x", point, kind="fire_station")
    cases = [
        (("nope", feature("x", point)), "layer"),
        (("live_congestion", feature("x", point)), "layer"),
        (("resources", {**feature("x", point), "id": None}), "id"),
        (("resources", feature("x", point, kind="castle")), "kind"),
        (("resources", {**station, "geometry": {"type": "Point"}}), "geometry"),
        (
            ("resources", {**station, "geometry": {"type": "Pt", "coordinates": [7, 43]}}),
            "geometry",
        ),
        (
            ("resources", {**station, "properties": {"kind": "fire_station", "capacity": "x"}}),
            "capacity",
        ),
        (("resources", {**station, "properties": "text"}), "properties"),
        (("resources", "not a feature"), "feature"),
        # a closure's window ends after it starts, as POST /routing/closures has it
        (
            (
                "closures",
                feature(
                    "x",
                    point,
                    kind="works",
                    starts_at="2026-06-01T10:00:00Z",
                    ends_at="2026-06-01T09:00:00Z",
                ),
            ),
            "ends_at",
        ),
    ]
    for (layer, given), parameter in cases:
        with pytest.raises(ParameterError) as raised:
            scenarios.put_feature(name, layer, given, url=routing_db)  # type: ignore[arg-type]
        if parameter is not None:
            assert raised.value.parameter == parameter, (layer, given, raised.value)
    with pytest.raises(ParameterError) as raised:
        scenarios.retire_feature(name, "buildings", "no-such-building", url=routing_db)
    assert raised.value.parameter == "featureId"
    with pytest.raises(ParameterError):
        scenarios.drop_edit(name, "buildings", "no-such-building", url=routing_db)
    with pytest.raises(scenarios.ScenarioNotFoundError):
        scenarios.put_feature(
            "no-such-scenario", "closures", feature("x", point, kind="works"), url=routing_db
        )
    with (
        pytest.raises(scenarios.ScenarioNotFoundError),
        scenarios.using("no-such-scenario", url=routing_db),
    ):
        pass
    with pytest.raises(scenarios.ScenarioExistsError):
        scenarios.create(name, url=routing_db)
    assert scenarios.get(name, url=routing_db).revision == 0
    assert scenarios.edits(name, history=True, url=routing_db).empty


def test_a_scenario_deleted_takes_its_edits_and_nothing_else(routing_db: str, make: Make) -> None:
    before = digest(routing_db)
    name = make().name
    scenarios.put_feature(
        name, "closures", feature("c", shapely.Point(*A), kind="works"), url=routing_db
    )
    scenarios.delete(name, url=routing_db)
    with get_engine(routing_db).connect() as conn:
        left = conn.execute(
            sa.text(
                "SELECT count(*) FROM scenario_edits e LEFT JOIN scenarios s "
                "ON s.id = e.scenario_id WHERE s.id IS NULL"
            )
        ).scalar_one()
    assert left == 0
    assert digest(routing_db) == before
