"""``city.scenarios`` in Python: a bound city answers in its scenario, never writes the base,
and a signed-in session sees and changes only what its roles allow."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
import sqlalchemy as sa

import twin
from layers import scenarios
from layers.database import get_engine
from layers.errors import AccessError, ParameterError
from layers.identity import add_user, issue_token
from layers.identity import users as list_users
from layers.queries import read_layer

A, B = (7.4165, 43.7315), (7.4290, 43.7400)
#: Where the sample's Condamine fire station answers first (tests/routing/test_isochrones.py).
STATION = (7.4203, 43.7349)


def feature(feature_id: str, geometry: shapely.Geometry, **properties: object) -> dict:
    return {
        "type": "Feature",
        "id": feature_id,
        "geometry": shapely.geometry.mapping(geometry),
        "properties": properties,
    }


@pytest.fixture
def name(routing_db: str) -> Iterator[str]:
    made = f"facade-{secrets.token_hex(4)}"
    scenarios.create(made, url=routing_db)
    yield made
    scenarios.delete(made, url=routing_db)


def session(url: str, role: str) -> twin.City:
    """A facade signed in as a new user of a role."""
    user_name = f"{role}-{secrets.token_hex(3)}"
    add_user(user_name, roles=[role], password="facade-tests-1", url=url)
    user = next(u for u in list_users(url=url) if u.name == user_name)
    return twin.connect(url, token=issue_token(user, url=url).access_token)


def test_a_bound_city_refuses_to_write_the_base(routing_db: str, name: str) -> None:
    city = twin.connect(routing_db)
    bound = city.scenarios[name]
    road = city.route(A, B).road_ids[3]
    with pytest.raises(ParameterError) as raised:
        bound.close_roads(road_ids=[road])
    assert raised.value.parameter == "scenario"
    with pytest.raises(ParameterError):
        bound.flood_closures("dem")
    with get_engine(routing_db).connect() as conn:
        assert (
            conn.execute(sa.text("SELECT count(*) FROM closures WHERE source = 'api'")).scalar()
            == 0
        )
    # the way to close it in the scenario
    city.scenarios.put(
        name, "closures", feature("c", shapely.Point(*A), kind="works", road_ids=[road])
    )
    assert road not in bound.route(A, B).road_ids
    assert road in city.route(A, B).road_ids
    assert city.scenarios.base.route(A, B).road_ids == city.route(A, B).road_ids


def test_a_cordon_lets_emergency_units_through_and_keeps_cars_out(
    routing_db: str, name: str
) -> None:
    city = twin.connect(routing_db)
    first = city.nearest_units(STATION, kind="fire_station", k=1)[0]
    cordon = shapely.Point(*STATION).buffer(0.0008)
    city.scenarios.put(
        name,
        "closures",
        feature("cordon", cordon, kind="incident", emergency_access=True),
    )
    bound = city.scenarios[name]
    inside = bound.nearest_units(STATION, kind="fire_station", k=1)
    assert inside and inside[0].id == first.id and inside[0].travel_s == first.travel_s
    with scenarios.using(name, url=routing_db):
        car, emergency = bound.router.network("car"), bound.router.network("emergency")
    assert car.closed.any() and not emergency.closed.any()
    # a closure without the flag closes the roads to emergency units too
    city.scenarios.put(name, "closures", feature("works", cordon, kind="works"))
    with scenarios.using(name, url=routing_db):
        emergency = bound.router.network("emergency")
    assert set(np.flatnonzero(emergency.closed)) == set(np.flatnonzero(car.closed))


def test_a_scenario_over_a_past_moment_routes_and_dispatches_as_then(
    routing_db: str, city: twin.City
) -> None:
    then = datetime.now(UTC)
    before = city.route(A, B)
    road = before.road_ids[len(before.road_ids) // 2]
    first = city.nearest_units(STATION, kind="fire_station", k=1)[0].id
    city.close_roads(road_ids=[road])
    station = read_layer("resources", url=routing_db).set_index("id").loc[first]
    with get_engine(routing_db).begin() as conn:  # the station closes in the base, now
        conn.execute(
            sa.text(
                "UPDATE resources SET valid_to = clock_timestamp() WHERE id = :id AND valid_to IS NULL"
            ),
            {"id": first},
        )
    past = f"past-{secrets.token_hex(3)}"
    scenarios.create(past, base_at=then, url=routing_db)
    try:
        bound = city.scenarios[past]
        assert bound.route(A, B).road_ids == before.road_ids
        assert road not in city.route(A, B).road_ids
        assert bound.nearest_units(STATION, kind="fire_station", k=1)[0].id == first
        assert city.nearest_units(STATION, kind="fire_station", k=1)[0].id != first
    finally:
        scenarios.delete(past, url=routing_db)
        with get_engine(routing_db).begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE resources SET valid_to = NULL WHERE vid = (SELECT max(vid) FROM "
                    "resources WHERE id = :id)"
                ),
                {"id": first},
            )
        assert (
            read_layer("resources", url=routing_db).set_index("id").loc[first].name == station.name
        )


def test_a_session_sees_and_changes_only_what_its_roles_allow(routing_db: str) -> None:
    planner = session(routing_db, "planner")
    made = planner.scenarios.create(f"mine-{secrets.token_hex(3)}", author="someone-else")
    assert made.author == planner.principal.name
    gas = read_layer("pipelines", url=routing_db).query("network == 'gas'")
    assert len(gas)
    hidden = gas.id.iloc[0]
    # a row the planner may not see is not the planner's to shadow, nor to break
    with pytest.raises(ParameterError) as raised:
        planner.scenarios.put(
            made.name,
            "pipelines",
            feature(hidden, gas.geometry.iloc[0], network="water"),
        )
    assert raised.value.parameter == "id"
    with pytest.raises(ParameterError) as raised:
        planner.scenarios.update(
            made.name, settings={"broken": [{"layer": "pipelines", "id": hidden}]}
        )
    assert raised.value.parameter == "settings.broken[0].id"
    # the owner's edit of that row is not listed to the planner
    scenarios.retire_feature(made.name, "pipelines", hidden, url=routing_db)
    assert hidden in set(scenarios.edits(made.name, url=routing_db).feature_id)
    assert hidden not in set(planner.scenarios.edits(made.name).feature_id)
    assert "pipelines" in scenarios.get(made.name, url=routing_db).edits
    commander = session(routing_db, "emergency_commander")
    with pytest.raises(AccessError) as refused:
        commander.scenarios.delete(made.name)
    assert refused.value.status == 403
    public = session(routing_db, "public")
    with pytest.raises(AccessError) as refused:
        public.scenarios.list()
    assert refused.value.status in (401, 403)
    planner.scenarios.delete(made.name)
