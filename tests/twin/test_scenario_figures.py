"""The figures of a scenario and the compare call, on the sample city (issue 16)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import twin
from layers import scenarios
from layers.errors import ParameterError
from layers.queries import read_layer
from layers.scenarios import ScenarioNotFoundError
from routing.coverage import coverage
from routing.network import RoutingError
from routing.utility_network import OUT_OF_SERVICE
from twin.scenarios.figures import Figures, compare, detours, figures

MINUTES = (4, 8, 12)
KINDS = ("fire_station",)
PREFIX = "figures-test"


@dataclass
class World:
    """The sample city, its base figures read before any scenario, and the scenarios made."""

    city: twin.City
    url: str
    base: Figures
    station: tuple[float, float]
    road: str
    pipe: str
    hydrants: list[str]
    transformer: str
    names: dict[str, str]


def _available_stations(url: str) -> list[tuple[float, float]]:
    """The available fire stations of the base, read from the layer (not through figures)."""
    resources = read_layer("resources", url=url)
    chosen = resources[
        (resources["kind"] == "fire_station")
        & (resources["status"].isna() | (resources["status"] == "available"))
    ].sort_values("id")
    return [(float(p.x), float(p.y)) for p in chosen.geometry]


def _finest_districts(url: str) -> Any:
    districts = read_layer("districts", url=url)
    return districts[districts["level"] == districts["level"].max()]


def _feature(feature_id: str, geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "id": feature_id, "geometry": geometry, "properties": properties}


@pytest.fixture(scope="module")
def world(routing_db: str) -> Iterator[World]:
    url = routing_db
    city = twin.connect(url)
    for old in scenarios.list_scenarios(url=url):  # a run that died may have left some
        if old.name.startswith(PREFIX):
            scenarios.delete(old.name, url=url)
    base = figures(city, minutes=MINUTES, kinds=KINDS)  # before any scenario exists
    network = city.router.network("emergency")
    buildings = read_layer("buildings", url=url)
    # a new station where the base's take longest (yet arrive) to reach a building
    far = coverage(
        network, _available_stations(url), buildings, _finest_districts(url), minutes=120
    )
    times = np.where(np.isfinite(far.times_s), far.times_s, -1)
    site = buildings.geometry.iloc[int(np.argmax(times))].representative_point()
    # a two-way road with a way around it
    roads = read_layer("roads", url=url).sort_values("id")
    road = None
    for road_id in roads.loc[~roads["oneway"].astype(bool), "id"]:
        i = network.road_index[str(road_id)]
        u, v = int(network.source[i]), int(network.target[i])
        if u != v and network.with_closed(np.array([i])).shortest([(u, 0.0)], [(v, 0.0)]):
            road = str(road_id)
            break
    assert road is not None
    # a water main whose isolation cuts off buildings
    pipes = read_layer("pipelines", url=url)
    pipe = next(
        str(p)
        for p in sorted(pipes.loc[pipes["network"] == "water", "id"])
        if len(city.isolate(line=str(p)).buildings)
    )
    # a hydrant in service (supplied, not out of service) in the base
    water = city.utilities.network("water")
    supplied = water.base_supply[0]
    hydrants = water.nodes[(water.nodes["kind"] == "hydrant") & (water.nodes["vertex"] >= 0)]
    in_service = sorted(
        str(h.id)
        for h in hydrants.itertuples()
        if supplied[int(h.vertex)] and h.status not in OUT_OF_SERVICE
    )[:2]
    # a transformer whose loss darkens buildings
    nodes = read_layer("power_nodes", url=url)
    transformer = next(
        str(t)
        for t in sorted(nodes.loc[nodes["kind"] == "transformer", "id"])
        if len(city.grid_cascade(out=[str(t)]).power.buildings)
    )
    kinds = ("station", "closure", "main", "hydrant", "none", "power")
    names = {k: f"{PREFIX}-{k}" for k in kinds}
    scenarios.create(names["station"], title="A new fire station", url=url)
    scenarios.put_feature(
        names["station"],
        "resources",
        _feature(
            "figures-new-station",
            {"type": "Point", "coordinates": [site.x, site.y]},
            kind="fire_station",
            name="New station",
            status="available",
        ),
        url=url,
    )
    scenarios.create(names["closure"], url=url)
    line = roads.loc[roads["id"] == road, "geometry"].iloc[0]
    scenarios.put_feature(
        names["closure"],
        "closures",
        _feature("figures-works", line.__geo_interface__, kind="works", road_ids=[road]),
        url=url,
    )
    scenarios.create(
        names["main"], settings={"broken": [{"layer": "pipelines", "id": pipe}]}, url=url
    )
    scenarios.create(names["hydrant"], url=url)
    scenarios.retire_feature(names["hydrant"], "pipe_nodes", in_service[0], url=url)
    second = read_layer("pipe_nodes", url=url).set_index("id").loc[in_service[1]]
    scenarios.put_feature(
        names["hydrant"],
        "pipe_nodes",
        _feature(
            in_service[1],
            second.geometry.__geo_interface__,
            kind="hydrant",
            network="water",
            status="out_of_service",
        ),
        url=url,
    )
    scenarios.create(
        names["power"],
        settings={"broken": [{"layer": "power_nodes", "id": transformer}]},
        url=url,
    )
    scenarios.create(names["none"], url=url)
    for station in read_layer("resources", url=url).query("kind == 'fire_station'")["id"]:
        scenarios.retire_feature(names["none"], "resources", str(station), url=url)
    yield World(city, url, base, (site.x, site.y), road, pipe, in_service, transformer, names)
    for name in names.values():
        scenarios.delete(name, url=url)


def test_a_new_station_raises_coverage_by_what_coverage_computes(world: World) -> None:
    city, url = world.city, world.url
    after = figures(city, scenario=world.names["station"], minutes=MINUTES, kinds=KINDS)
    network = city.router.network("emergency")  # the base's, computed independently
    buildings = read_layer("buildings", url=url)
    districts = _finest_districts(url)
    stations = _available_stations(url)
    for m in MINUTES:
        key = f"reach.fire_station.{m}"
        with_new = coverage(network, [*stations, world.station], buildings, districts, minutes=m)
        without = coverage(network, stations, buildings, districts, minutes=m)
        assert after.value(f"{key}.buildings") == with_new.total["covered_buildings"]
        assert after.value(f"{key}.people") == with_new.total["covered_population"]
        assert world.base.value(f"{key}.buildings") == without.total["covered_buildings"]
        assert world.base.value(f"{key}.people") == without.total["covered_population"]
        for row in with_new.districts.itertuples():
            assert after.value(f"{key}.buildings", str(row.district)) == row.covered_buildings
            assert after.value(f"{key}.people", str(row.district)) == row.covered_population
    raised = after.value("reach.fire_station.4.buildings") - world.base.value(  # type: ignore[operator]
        "reach.fire_station.4.buildings"
    )
    assert raised > 0
    assert after.value("response.fire_station.mean_s") < world.base.value(  # type: ignore[operator]
        "response.fire_station.mean_s"
    )
    # the base answers as before any scenario was made
    assert figures(city, minutes=MINUTES, kinds=KINDS).to_json() == world.base.to_json()
    # a city bound to the scenario answers the same figures
    bound = city.scenarios[world.names["station"]]
    assert figures(bound, minutes=MINUTES, kinds=KINDS).to_json() == after.to_json()


def test_compare_differences_are_those_of_the_figures_computed_apart(world: World) -> None:
    city, names = world.city, world.names
    for a, b in ((None, names["station"]), (names["main"], names["closure"])):
        result = compare(city, a, b, minutes=MINUTES, kinds=KINDS)
        fig_a = figures(city, scenario=a, minutes=MINUTES, kinds=KINDS)
        fig_b = figures(city, scenario=b, minutes=MINUTES, kinds=KINDS)
        assert result.a.to_json() == fig_a.to_json() and result.b.to_json() == fig_b.to_json()
        assert set(result.difference) == {(r.key, r.district) for r in fig_a.rows}
        for row in fig_a.rows:
            va, vb = row.value, fig_b.value(row.key, row.district)
            expected = None if va is None or vb is None else vb - va
            assert result.difference[(row.key, row.district)] == expected, row.key
        frame = result.to_frame()
        assert list(frame.columns) == [
            "key",
            "district",
            "unit",
            "label_zh",
            "label_en",
            "a",
            "b",
            "difference",
        ]
        known = frame.dropna(subset=["a", "b"])
        assert np.allclose(known["difference"], known["b"] - known["a"])
        body = json.loads(json.dumps(result.to_json(), allow_nan=False))
        assert body["a"]["scenario"] == a and body["b"]["scenario"] == b
    forward = compare(city, None, names["station"], minutes=(8,), kinds=KINDS)
    assert forward.features == {
        "resources": {"added": ["figures-new-station"], "changed": [], "retired": []}
    }
    assert forward.settings == {}
    back = compare(city, names["station"], names["main"], minutes=(8,), kinds=KINDS)
    assert back.features == {
        "resources": {"added": [], "changed": [], "retired": ["figures-new-station"]}
    }
    assert back.settings == {"broken": {"a": None, "b": [{"layer": "pipelines", "id": world.pipe}]}}


def test_a_closure_counts_the_road_closed_and_its_detour(world: World) -> None:
    city = world.city
    closed = figures(city, scenario=world.names["closure"], minutes=(8,), kinds=KINDS)
    base = city.router.network("emergency")
    i = base.road_index[world.road]
    u, v = int(base.source[i]), int(base.target[i])
    around = base.with_closed(np.array([i])).shortest([(u, 0.0)], [(v, 0.0)])
    assert around is not None
    around_m = sum(base.length_m[e] for e, _ in around[3])
    assert closed.value("roads.closed.count") == 1
    assert closed.value("roads.closed.km") == pytest.approx(base.length_m[i] / 1000)
    assert closed.value("roads.detour.extra_m.sum") == pytest.approx(around_m - base.length_m[i])
    assert closed.value("roads.detour.extra_s.sum") == pytest.approx(around[0] - base.cost[i])
    assert closed.value("roads.detour.extra_m.sum") > 0  # type: ignore[operator]
    assert closed.value("roads.detour.extra_s.sum") > 0  # type: ignore[operator]
    assert closed.value("roads.detour.unreachable") == 0
    assert world.base.value("roads.closed.count") == 0
    assert world.base.value("roads.detour.extra_m.sum") == 0
    assert world.base.value("roads.detour.extra_m.mean") is None
    with scenarios.using(world.names["closure"], url=world.url):
        inside = city.router.network("emergency")
    assert [d.road_id for d in detours(base, inside)] == [world.road]
    assert detours(base, base) == []


def test_a_broken_main_cuts_off_what_isolating_it_does(world: World) -> None:
    city, name = world.city, world.names["main"]
    broken = figures(city, scenario=name, minutes=(8,), kinds=KINDS)
    outage = city.scenarios[name].isolate(line=world.pipe)
    assert len(outage.buildings) > 0
    assert broken.value("utilities.water.buildings_out") == len(outage.buildings)
    assert broken.value("utilities.water.people_out") == float(outage.buildings["population"].sum())
    assert broken.value("utilities.water.devices_to_operate") == len(outage.operate)
    assert broken.value("utilities.hydrants_out") == len(outage.hydrants)
    assert broken.value("utilities.power.buildings_out") == 0
    per_district = sum(
        broken.value("utilities.water.buildings_out", d) or 0 for d in broken.districts
    )
    assert per_district == len(outage.buildings)
    for key in ("utilities.water.buildings_out", "utilities.hydrants_out"):
        assert world.base.value(key) == 0


def test_hydrants_retired_or_out_of_service_are_counted_and_cut_off_no_one(
    world: World,
) -> None:
    result = figures(world.city, scenario=world.names["hydrant"], minutes=(8,), kinds=KINDS)
    assert result.value("utilities.hydrants_out") == 2
    assert result.value("utilities.water.buildings_out") == 0


def test_a_broken_transformer_darkens_what_the_grid_cascade_does(world: World) -> None:
    name = world.names["power"]
    result = figures(world.city, scenario=name, minutes=(8,), kinds=KINDS)
    cascade = world.city.scenarios[name].grid_cascade(out=[world.transformer])
    lost = cascade.power.buildings
    assert result.value("utilities.power.buildings_out") == len(lost) > 0
    assert result.value("utilities.power.people_out") == float(lost["population"].sum())
    water = cascade.water.get("water")
    assert result.value("utilities.water.buildings_out") == (
        0 if water is None else len(water.buildings)
    )


def test_with_no_station_no_building_is_reached(world: World) -> None:
    result = figures(world.city, scenario=world.names["none"], minutes=MINUTES, kinds=KINDS)
    total = result.value("buildings")
    assert result.value("reach.fire_station.12.buildings") == 0
    assert result.value("response.fire_station.unreachable_buildings") == total
    assert result.value("response.fire_station.mean_s") is None
    assert any("fire_station" in note for note in result.notes)
    assert json.dumps(result.to_json(), allow_nan=False)


def test_figures_json_and_frame(world: World) -> None:
    body = json.loads(json.dumps(world.base.to_json(), allow_nan=False))
    assert body["scenario"] is None and body["minutes"] == [4, 8, 12]
    assert all(isinstance(m, int) for m in body["minutes"])
    assert body["kinds"] == ["fire_station"] and "Monte-Carlo" in body["districts"]
    first = body["figures"][0]
    assert set(first) == {"key", "district", "value", "unit", "label"}
    assert set(first["label"]) == {"zh", "en"}
    by_key = {(f["key"], f["district"]): f for f in body["figures"]}
    assert isinstance(by_key[("reach.fire_station.8.buildings", None)]["value"], int)
    assert by_key[("roads.detour.extra_m.mean", None)]["value"] is None
    p95 = by_key[("response.fire_station.p95_s", None)]["value"]
    mean = by_key[("response.fire_station.mean_s", None)]["value"]
    assert math.isfinite(p95) and p95 >= mean > 80  # turnout (80 s) + travel
    frame = world.base.to_frame()
    assert list(frame.columns) == ["key", "district", "value", "unit", "label_zh", "label_en"]
    assert len(frame) == len(body["figures"])
    assert frame["value"].isna().sum() == sum(f["value"] is None for f in body["figures"])


@pytest.mark.parametrize(
    ("arguments", "parameter"),
    [
        ({"kinds": ("fire",)}, "kinds"),
        ({"kinds": ()}, "kinds"),
        ({"minutes": (0,)}, "minutes"),
        ({"minutes": (121,)}, "minutes"),
        ({"minutes": ()}, "minutes"),
        ({"minutes": ("8",)}, "minutes"),
        ({"minutes": (float("nan"),)}, "minutes"),
        ({"signals": "yes"}, "signals"),
        ({"scenario": 5}, "scenario"),
        ({"profile": "boat"}, "profile"),
    ],
)
def test_bad_input_names_the_parameter(
    world: World, arguments: dict[str, Any], parameter: str
) -> None:
    error = RoutingError if parameter == "profile" else ParameterError
    with pytest.raises(error) as caught:
        figures(world.city, **arguments)
    assert caught.value.parameter == parameter
    assert parameter in str(caught.value)


def test_an_unknown_scenario_is_refused_naming_it(world: World) -> None:
    with pytest.raises(ScenarioNotFoundError, match="figures-test-nowhere") as caught:
        figures(world.city, scenario="figures-test-nowhere")
    assert caught.value.parameter == "scenario"
    with pytest.raises(ScenarioNotFoundError, match="figures-test-nowhere"):
        compare(world.city, None, "figures-test-nowhere")
    with pytest.raises(ParameterError) as bad:
        compare(world.city, ["x"], None)  # type: ignore[arg-type]
    assert bad.value.parameter == "a"
