"""Pre-plans (预案) and drills (演练) on the sample city: templates, apply, dispatch, reviews."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import shapely
import sqlalchemy as sa
from typer.testing import CliRunner

import twin
from layers import access, scenarios
from layers.database import get_engine
from layers.errors import MissingInputError, ParameterError
from layers.scenarios import ScenarioConflictError, ScenarioExistsError, ScenarioNotFoundError
from tests.assertions import sql_scalar
from twin.scenarios import drills, preplans
from twin.scenarios.drills import DrillEndedError, DrillNotFoundError
from twin.scenarios.preplan_cli import drills_app, preplans_app
from twin.scenarios.preplans import PreplanNotFoundError

A, B = (7.4165, 43.7315), (7.4290, 43.7400)  # as tests/routing/test_closures.py
SEA = (7.455, 43.705)  # inside the city's extent, off every road and pipe
#: Places where a break-it session found every unit kind short (the cordon blocked them).
BROKEN_PLACES = [
    ("traffic_accident", (7.4165, 43.7315)),
    ("flood", (7.4201, 43.7301)),
    ("gas_leak", (7.4377, 43.7494)),
]
KINDS = {
    "fire",
    "gas_leak",
    "burst_main",
    "flood",
    "collision",
    "power_fault",
    "building_collapse",
    "hazmat",
    "large_event",
    "earthquake",
    "bridge_closure",
    "snow_ice",
}


@pytest.fixture
def town(city: twin.City) -> Iterator[twin.City]:
    """The sample city with the built-in pre-plans; the scenarios a test applied are deleted."""
    preplans.seed(url=city.url)
    yield city
    with get_engine(city.url).begin() as conn:  # a drilled scenario is kept: drills go first
        conn.execute(sa.text("DELETE FROM drills"))
        conn.execute(sa.text("DELETE FROM scenarios WHERE settings ? 'preplan'"))


def ago(seconds: float) -> datetime:
    """The moment ``seconds`` ago (a replayed drill's start)."""
    return datetime.now(UTC) - timedelta(seconds=seconds)


def on_route(city: twin.City) -> tuple[float, float]:
    """A place in the middle of the base route from A to B."""
    trip = city.route(A, B)
    assert trip is not None
    middle = trip.geometry.interpolate(0.5, normalized=True)
    return middle.x, middle.y


def cordon_roads(url: str, scenario: str) -> set[str]:
    """The roads the scenario's cordon touches (what routing in it must avoid)."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT r.id FROM roads r JOIN scenario_edits e ON ST_Intersects(r.geom, e.geom) "
                "JOIN scenarios s ON s.id = e.scenario_id WHERE s.name = :name "
                "AND e.layer = 'closures' AND e.valid_to IS NULL AND r.valid_to IS NULL"
            ),
            {"name": scenario},
        )
        return {str(r[0]) for r in rows}


# -- templates ----------------------------------------------------------------------------------


def test_the_builtin_templates_cover_a_dozen_incident_kinds_in_two_languages() -> None:
    plans = preplans.builtin_preplans()
    assert len(plans) == 12
    assert {p.kind for p in plans} == KINDS
    assert len({p.name for p in plans}) == 12
    for plan in plans:
        assert plan.title_en and plan.title_zh and plan.steps and plan.notify
        assert all(s.en and s.zh and s.target_s > 0 for s in plan.steps)
        assert all(c.en and c.zh for c in plan.notify)
        targets = [s.target_s for s in plan.steps]
        assert targets == sorted(targets), plan.name
        assert preplans.parse(plan.template()) == plan  # the stored form reads back the same


def test_seed_is_idempotent_and_a_changed_plan_is_a_new_version(town: twin.City) -> None:
    url = town.url
    again = preplans.seed(url=url)
    assert again.added == again.changed == [] and len(again.unchanged) == 12
    rows = sql_scalar(url, "SELECT count(*) FROM preplans WHERE builtin")
    assert (
        preplans.seed(url=url).unchanged
        and sql_scalar(url, "SELECT count(*) FROM preplans WHERE builtin") == rows
    )
    listed = preplans.list_preplans(url=url)
    assert {p.name for p in listed} >= {p.name for p in preplans.builtin_preplans()}

    template = preplans.get("fire", url=url).template() | {"name": "fire_test_versions"}
    first, outcome = preplans.save(template, author="planner", url=url)
    assert outcome in ("added", "unchanged")
    template["cordon_m"] = first.cordon_m + 10
    second, outcome = preplans.save(template, author="planner", url=url)
    assert outcome == "changed" and second.version == first.version + 1
    assert first.vid is not None and first.updated_at is not None
    assert second.updated_at is not None and second.updated_at > first.updated_at
    assert second.created_at == first.created_at
    assert preplans.get_version(first.vid, url=url).cordon_m == first.cordon_m
    assert preplans.get("fire_test_versions", url=url).cordon_m == first.cordon_m + 10


def test_a_preplan_is_found_by_its_incident_kind(town: twin.City) -> None:
    assert preplans.get("burst_main", url=town.url).name == "water_main_burst"
    assert preplans.get("collision", url=town.url).name == "traffic_accident"


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"name": "Fire!"}, "name"),
        ({"kind": ""}, "kind"),
        ({"title": {"zh": "火"}}, "title.en"),
        ({"units": [{"kind": "tank", "count": 1}]}, "units[0].kind"),
        ({"units": [{"kind": "police", "count": 0}]}, "units[0].count"),
        (
            {"units": [{"kind": "police", "count": 1}, {"kind": "police", "count": 2}]},
            "units[1].kind",
        ),
        ({"cordon_m": 5000}, "cordon_m"),
        ({"cordon_m": "far"}, "cordon_m"),
        ({"valves": {"network": "oil"}}, "valves.network"),
        ({"valves": {"network": "water", "search_m": -1}}, "valves.search_m"),
        ({"steps": []}, "steps"),
        ({"steps": [{"id": "a", "en": "A", "target_s": float("nan")}]}, "steps[0].target_s"),
        (
            {
                "steps": [
                    {"id": "a", "en": "A", "target_s": 1},
                    {"id": "a", "en": "B", "target_s": 2},
                ]
            },
            "steps[1].id",
        ),
        ({"notify": [{"id": "x"}]}, "notify[0].en"),
        ({"severity": 9}, "severity"),
    ],
)
def test_a_bad_template_is_refused_naming_the_member(change: dict, parameter: str) -> None:
    template = preplans.builtin_preplans()[0].template() | change
    with pytest.raises(ParameterError) as raised:
        preplans.parse(template)
    assert raised.value.parameter == parameter


# -- apply --------------------------------------------------------------------------------------


def test_applying_a_preplan_closes_roads_in_its_scenario_and_not_in_the_base(
    town: twin.City,
) -> None:
    place = on_route(town)
    before = town.route(A, B)
    assert before is not None
    made = preplans.apply("traffic_accident", place, name="pp-accident", url=town.url)
    closed = cordon_roads(town.url, made.name)
    assert closed & set(before.road_ids)  # the cordon is across the base route
    with scenarios.using(made.name, url=town.url):
        inside = town.route(A, B)
    assert inside is not None and not closed & set(inside.road_ids)
    assert inside.duration_s > before.duration_s
    after = town.route(A, B)  # the base: bit for bit the route it was
    assert (
        after is not None
        and after.road_ids == before.road_ids
        and after.duration_s == before.duration_s
    )
    assert sql_scalar(town.url, "SELECT count(*) FROM closures WHERE id LIKE 'preplan/%'") == 0
    # the incident and the cordon are features of the scenario only
    with scenarios.using(made.name, url=town.url):
        incidents = town.layer("incidents")
        closures = town.layer("closures")
    assert f"preplan/{made.name}/incident" in set(incidents["id"])
    assert f"preplan/{made.name}/cordon" in set(closures["id"])
    assert f"preplan/{made.name}/incident" not in set(town.layer("incidents")["id"])
    row = incidents.set_index("id").loc[f"preplan/{made.name}/incident"]
    assert row["kind"] == "collision" and row.geometry.equals(shapely.Point(place))


def test_the_dispatch_is_nearest_units_in_the_scenario(town: twin.City) -> None:
    place = on_route(town)
    made = preplans.apply("fire", place, name="pp-fire", author="duty officer", url=town.url)
    plan = preplans.get("fire", url=town.url)
    dispatch = made.settings["dispatch"]
    assert [d["kind"] for d in dispatch] == [u.kind for u in plan.units]
    with scenarios.using(made.name, url=town.url):
        for group, unit in zip(dispatch, plan.units, strict=True):
            expected = town.nearest_units(place, kind=unit.kind, k=unit.count)
            assert [u["id"] for u in group["units"]] == [u.id for u in expected]
            assert [u["total_s"] for u in group["units"]] == [round(u.total_s, 3) for u in expected]
            assert group["short"] == unit.count - len(expected)
    assert made.settings["notify"] == [{"id": c.id, "en": c.en, "zh": c.zh} for c in plan.notify]
    meta = made.settings["preplan"]
    assert meta["name"] == "fire" and meta["vid"] == plan.vid and meta["place"] == list(place)
    assert made.author == "duty officer" and made.status == "active"


@pytest.mark.parametrize(
    ("name", "place"), [*BROKEN_PLACES, ("traffic_accident", None), ("fire", None)]
)
def test_units_are_sent_through_the_cordon_and_ordinary_traffic_kept_out(
    town: twin.City, name: str, place: tuple[float, float] | None
) -> None:
    place = place or on_route(town)
    made = preplans.apply(name, place, url=town.url)
    plan = preplans.get(name, url=town.url)
    cordon = made.settings["cordon"]
    assert cordon["emergency_access"] is True
    with scenarios.using(made.name, url=town.url):
        closures = town.layer("closures").set_index("id")
    assert closures.loc[cordon["feature"], "props"]["emergency_access"] is True
    closed = cordon_roads(town.url, made.name)
    assert closed
    resources = town.layer("resources")
    available = resources["status"].isna() | (resources["status"] == "available")
    city_kinds = set(resources.loc[available, "kind"])
    dispatch = {d["kind"]: d for d in made.settings["dispatch"]}
    assert list(dispatch) == [u.kind for u in plan.units]
    crossing = 0
    with scenarios.using(made.name, url=town.url):
        for unit in plan.units:
            group = dispatch[unit.kind]
            expected = town.nearest_units(place, kind=unit.kind, k=unit.count)
            assert [u["id"] for u in group["units"]] == [u.id for u in expected]
            assert [u["total_s"] for u in group["units"]] == [round(u.total_s, 3) for u in expected]
            assert group["short"] == unit.count - len(expected)
            if unit.kind in city_kinds:  # every kind the city has is sent
                assert group["units"], (name, unit.kind)
            for sent in expected:
                if not closed & set(sent.route.road_ids):
                    continue
                crossing += 1  # an emergency route into the cordon; a car's stays out
                origin = shapely.Point(sent.route.geometry.coords[0])
                car = town.route(origin, place, profile="car")
                assert car is None or not closed & set(car.road_ids)  # none, or round it
    assert crossing  # the units do drive into the cordon


def test_a_water_main_burst_isolates_the_nearest_main(town: twin.City) -> None:
    with get_engine(town.url).connect() as conn:
        line_id, lon, lat = conn.execute(
            sa.text(
                "SELECT id, ST_X(ST_LineInterpolatePoint(geom, 0.5)), "
                "ST_Y(ST_LineInterpolatePoint(geom, 0.5)) FROM pipelines "
                "WHERE valid_to IS NULL AND network = 'water' ORDER BY id LIMIT 1 OFFSET 200"
            )
        ).one()
    made = preplans.apply("water_main_burst", (lon, lat), name="pp-burst", url=town.url)
    valves = made.settings["valves"]
    expected = town.isolate((lon, lat), network="water")
    assert valves["line"] == expected.cause["line"] == str(line_id)
    assert valves["operate"] == expected.operate
    assert valves["summary"] == expected.summary()
    assert made.settings["broken"] == [{"layer": "pipelines", "id": str(line_id)}]


@pytest.mark.parametrize(
    ("place", "parameter"),
    [
        ((8.5, 47.4), "place"),  # Zürich: outside the city
        ("7.42,43.73", "place"),
        ((7.42,), "place"),
        ({"type": "LineString", "coordinates": [[7.42, 43.73], [7.43, 43.74]]}, "place"),
        ((float("nan"), 43.73), "place"),
    ],
)
def test_a_bad_place_is_refused_and_nothing_is_made(
    town: twin.City, place: object, parameter: str
) -> None:
    count = len(scenarios.list_scenarios(url=town.url))
    with pytest.raises(ParameterError) as raised:
        preplans.apply("fire", place, name="pp-bad", url=town.url)
    assert raised.value.parameter == parameter
    assert len(scenarios.list_scenarios(url=town.url)) == count


def test_a_place_no_unit_can_reach_or_no_main_near_is_refused_and_nothing_is_left(
    town: twin.City,
) -> None:
    for name in ("fire", "water_main_burst"):
        with pytest.raises(ParameterError) as raised:
            preplans.apply(name, SEA, name="pp-sea", url=town.url)
        assert raised.value.parameter == "place"
        with pytest.raises(ScenarioNotFoundError):
            scenarios.get("pp-sea", url=town.url)


def test_unknown_preplans_and_bad_names_are_refused(town: twin.City) -> None:
    with pytest.raises(PreplanNotFoundError) as raised:
        preplans.apply("volcano", A, url=town.url)
    assert raised.value.parameter == "preplan" and "fire" in str(raised.value)
    with pytest.raises(ParameterError) as bad:
        preplans.apply("fire", A, name="Not A Slug", url=town.url)
    assert bad.value.parameter == "name"
    preplans.apply("snow_ice", on_route(town), name="pp-twice", url=town.url)
    with pytest.raises(ScenarioExistsError):
        preplans.apply("snow_ice", on_route(town), name="pp-twice", url=town.url)


# -- drills -------------------------------------------------------------------------------------


def test_a_drill_review_marks_steps_on_time_late_and_missed(town: twin.City) -> None:
    began = ago(3000)  # a drill held earlier, replayed from its log
    drill = drills.start(
        "fire", on_route(town), title="night drill", lead="chief", started_at=began, url=town.url
    )
    assert drill.preplan == "fire" and drill.ended_at is None
    assert drill.started_at == began and drill.started_by == ""
    assert scenarios.get(drill.scenario, url=town.url).settings["preplan"]["name"] == "fire"
    log = [
        ("dispatcher", "dispatch", 50.0),  # target 64: on time
        ("dispatcher", "dispatch", 70.0),  # a second action: the first counts
        ("engine 1", "turnout", 200.0),  # target 144: 56 s late
        ("engine 1", "first_arrival", 384.0),  # target 384: on time (at the target)
        ("police", "cordon", 1000.0),  # target 900: late
        ("chief", None, 30.0),  # outside the checklist
    ]
    for actor, step, at in log:
        drills.record(drill.id, actor=actor, step=step, elapsed_s=at, url=town.url)
    running = drills.review(drill.id, url=town.url)
    steps = {s.step: s for s in running.steps}
    # the drill is 3000 s in: a step whose target has passed is overdue, by how much so far
    assert steps["full_alarm"].status == "overdue" and steps["utilities_cut"].status == "overdue"
    assert steps["under_control"].status == "pending" and steps["under_control"].late_s is None
    assert running.elapsed_s >= 3000
    assert steps["full_alarm"].late_s == pytest.approx(running.elapsed_s - 624)
    assert running.summary()["overdue"] == 2 and running.summary()["pending"] == 1
    ended = drills.end(drill.id, elapsed_s=2500, url=town.url)
    assert ended.ended_at is not None
    assert (ended.ended_at - ended.started_at).total_seconds() == 2500
    review = drills.review(drill.id, url=town.url)
    steps = {s.step: s for s in review.steps}
    assert {k: s.status for k, s in steps.items()} == {
        "dispatch": "on_time",
        "turnout": "late",
        "first_arrival": "on_time",
        "full_alarm": "missed",
        "cordon": "late",
        "utilities_cut": "missed",
        "under_control": "missed",
    }
    assert steps["dispatch"].done_s == 50 and steps["dispatch"].by == "dispatcher"
    assert steps["turnout"].late_s == 56 and steps["cordon"].late_s == 100
    assert review.summary() == {
        "steps": 7,
        "on_time": 2,
        "late": 2,
        "missed": 3,
        "overdue": 0,
        "pending": 0,
        "on_time_share": 2 / 7,
        "ended": True,
        "duration_s": 2500,
        "elapsed_s": 2500,
        "actions": 6,
    }
    assert [a.elapsed_s for a in review.actions] == sorted(at for _, _, at in log)
    # stored: reviewed again later, the same
    assert drills.review(drill.id, url=town.url).to_json() == review.to_json()
    assert drill.id in [d.id for d in drills.list_drills(url=town.url)]


def test_the_drill_clock_is_the_stores(town: twin.City) -> None:
    drill = drills.start("traffic_accident", on_route(town), url=town.url)
    action = drills.record(drill.id, actor="dispatcher", step="dispatch", url=town.url)
    since = sql_scalar(
        town.url,
        "SELECT extract(epoch FROM clock_timestamp() - started_at) FROM drills WHERE id = :id",
        id=drill.id,
    )
    assert 0 <= action.elapsed_s <= float(since)
    assert abs((action.at - drill.started_at).total_seconds() - action.elapsed_s) < 1e-3
    assert action.what == "Alarm processed, units dispatched"
    assert action.logged_by == ""  # the store's owner
    ended = drills.end(drill.id, url=town.url)
    assert ended.ended_at is not None and ended.ended_at >= action.at


def test_a_moment_that_has_not_come_is_refused_and_the_drill_still_ends(town: twin.City) -> None:
    made = preplans.apply("fire", on_route(town), name="pp-future", url=town.url)
    drill = drills.start(scenario=made.name, url=town.url)
    for elapsed in (600_000, 60.0):  # a week less a little; a minute: neither has come yet
        with pytest.raises(ParameterError) as raised:
            drills.record(drill.id, actor="x", step="dispatch", elapsed_s=elapsed, url=town.url)
        assert raised.value.parameter == "elapsed_s" and "future" in str(raised.value)
        with pytest.raises(ParameterError) as raised:
            drills.end(drill.id, elapsed_s=elapsed, url=town.url)
        assert raised.value.parameter == "elapsed_s"
    # within the clock's tolerance: accepted
    drills.record(drill.id, actor="x", step="dispatch", elapsed_s=0.5, url=town.url)
    assert drills.review(drill.id, url=town.url).actions[0].elapsed_s == 0.5
    ended = drills.end(drill.id, url=town.url)  # by the clock: it ends
    assert ended.ended_at is not None
    # a start in the future, or with no offset, is refused too
    for began, reason in (
        (datetime.now(UTC) + timedelta(hours=1), "future"),
        (datetime(2026, 1, 1, 9), "offset"),
        ("yesterday", "RFC 3339"),
    ):
        with pytest.raises(ParameterError) as raised:
            drills.start(scenario=made.name, started_at=began, url=town.url)
        assert raised.value.parameter == "started_at" and reason in str(raised.value)


def test_a_drilled_scenario_cannot_be_deleted(town: twin.City) -> None:
    drill = drills.start("snow_ice", on_route(town), url=town.url)
    with pytest.raises(ScenarioConflictError):
        scenarios.delete(drill.scenario, url=town.url)
    assert scenarios.get(drill.scenario, url=town.url).id  # still there, and its drill
    assert drills.review(drill.id, url=town.url).drill.scenario == drill.scenario
    undrilled = preplans.apply("snow_ice", on_route(town), url=town.url)
    scenarios.delete(undrilled.name, url=town.url)  # one no drill ran on goes


def test_the_signed_in_caller_is_recorded_not_the_name_given(town: twin.City) -> None:
    place = on_route(town)
    signed_in = access.grant_for(
        access.Principal("admin-pp", ("administrator",), via="token"), url=town.url
    )
    with access.acting_as(signed_in):
        made = preplans.apply("fire", place, author="somebody else", url=town.url)
        drill = drills.start(scenario=made.name, started_at=ago(100), url=town.url)
        action = drills.record(drill.id, actor="engine 1", step="dispatch", url=town.url)
    assert made.author == "admin-pp" and drill.started_by == "admin-pp"
    assert action.actor == "engine 1" and action.logged_by == "admin-pp"
    assert drills.review(drill.id, url=town.url).actions[0].logged_by == "admin-pp"
    nobody = access.grant_for(access.Principal(access.ANONYMOUS, ("administrator",)), url=town.url)
    with access.acting_as(nobody):  # an anonymous caller: the name given
        made = preplans.apply("fire", place, author="duty officer", url=town.url)
        action = drills.record(drill.id, actor="engine 2", url=town.url)
    assert made.author == "duty officer" and action.logged_by == access.ANONYMOUS
    assert preplans.apply("fire", place, author="cli user", url=town.url).author == "cli user"


def test_a_drill_runs_on_an_applied_scenario(town: twin.City) -> None:
    made = preplans.apply("gas_leak", on_route(town), name="pp-gas", url=town.url)
    drill = drills.start(scenario="pp-gas", url=town.url)
    assert drill.scenario == "pp-gas" and drill.preplan == "gas_leak"
    assert drill.preplan_vid == made.settings["preplan"]["vid"]
    scenarios.create("pp-plain", url=town.url, settings={"preplan": {"name": "x"}})
    with pytest.raises(ParameterError) as raised:
        drills.start(scenario="pp-plain", url=town.url)
    assert raised.value.parameter == "scenario"
    with pytest.raises(ScenarioNotFoundError):
        drills.start(scenario="pp-nowhere", url=town.url)


def test_bad_drill_input_is_refused_naming_the_field(town: twin.City) -> None:
    url = town.url
    with pytest.raises(ParameterError) as raised:
        drills.start(url=url)
    assert raised.value.parameter == "preplan"
    with pytest.raises(ParameterError) as raised:
        drills.start("fire", url=url)
    assert raised.value.parameter == "place"
    with pytest.raises(ParameterError) as raised:
        drills.start("fire", A, scenario="pp-x", url=url)
    assert raised.value.parameter == "scenario"
    with pytest.raises(PreplanNotFoundError):
        drills.start("volcano", A, url=url)
    drill = drills.start("snow_ice", on_route(town), started_at=ago(1000), url=url)
    cases = [
        ({"actor": "x", "step": "nonsense"}, "step"),
        ({"actor": "  "}, "actor"),
        ({"actor": "x", "elapsed_s": -1}, "elapsed_s"),
        ({"actor": "x", "elapsed_s": float("inf")}, "elapsed_s"),
        ({"actor": "x", "elapsed_s": 10 * 86_400}, "elapsed_s"),
        ({"actor": "x", "elapsed_s": 600_000}, "elapsed_s"),  # not yet come
    ]
    for kwargs, parameter in cases:
        with pytest.raises(ParameterError) as raised:
            drills.record(drill.id, url=url, **kwargs)  # type: ignore[arg-type]
        assert raised.value.parameter == parameter, kwargs
    drills.record(drill.id, actor="gritter", step="gritted", elapsed_s=600, url=url)
    with pytest.raises(ParameterError) as raised:
        drills.end(drill.id, elapsed_s=300, url=url)  # before its last action
    assert raised.value.parameter == "elapsed_s"
    drills.end(drill.id, elapsed_s=700, url=url)
    with pytest.raises(DrillEndedError):
        drills.record(drill.id, actor="x", url=url)
    with pytest.raises(DrillEndedError):
        drills.end(drill.id, url=url)
    for missing in (10**6, 0, 2**40):
        with pytest.raises(DrillNotFoundError):
            drills.review(missing, url=url)


# -- the command line ---------------------------------------------------------------------------


def run(app: object, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})  # type: ignore[arg-type]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_seeds_lists_applies_and_drills(town: twin.City) -> None:
    url = town.url
    code, text, _ = run(preplans_app, "seed", "--url", url)
    assert code == 0 and "0 added, 0 changed, 12 unchanged" in text
    code, text, _ = run(preplans_app, "list", "--json", "--url", url)
    assert code == 0 and {"fire", "snow_ice"} <= {p["name"] for p in json.loads(text)}
    code, text, _ = run(preplans_app, "show", "fire", "--url", url)
    assert code == 0 and "建筑火灾" in text and "first_arrival" in text
    lon, lat = on_route(town)
    code, text, _ = run(
        preplans_app, "apply", "fire", "--at", f"{lon},{lat}", "--name", "pp-cli", "--url", url
    )
    assert code == 0 and "scenario pp-cli" in text
    assert scenarios.get("pp-cli", url=url).settings["dispatch"]
    began = ago(200).isoformat()
    code, text, _ = run(
        drills_app,
        "start",
        "--scenario",
        "pp-cli",
        "--lead",
        "chief",
        "--started-at",
        began,
        "--url",
        url,
    )
    assert code == 0
    drill_id = text.split()[1]
    code, _, _ = run(
        drills_app,
        "record",
        drill_id,
        "--actor",
        "dispatcher",
        "--step",
        "dispatch",
        "--elapsed",
        "90",
        "--url",
        url,
    )
    assert code == 0
    code, text, _ = run(drills_app, "end", drill_id, "--elapsed", "100", "--url", url)
    assert code == 0 and "0 on time, 1 late, 6 missed, 0 overdue" in text
    code, text, _ = run(drills_app, "review", drill_id, "--json", "--url", url)
    first = json.loads(text)["steps"][0]
    assert first["step"] == "dispatch" and first["by"] == "dispatcher" and first["status"] == "late"


@pytest.mark.parametrize(
    ("app", "args", "needle"),
    [
        (preplans_app, ["show", "volcano"], "no pre-plan named 'volcano'"),
        (preplans_app, ["apply", "fire", "--at", "somewhere"], "--at"),
        (preplans_app, ["apply", "fire", "--at", "8.5,47.4"], "outside the city"),
        (preplans_app, ["apply", "fire", "--at", "7.42,43.73", "--name", "Bad Name"], "name"),
        (drills_app, ["start"], "preplan"),
        (drills_app, ["start", "--preplan", "fire"], "place"),
        (drills_app, ["start", "--scenario", "x", "--started-at", "soon"], "started_at"),
        (drills_app, ["record", "999999", "--actor", "x"], "no drill 999999"),
        (drills_app, ["review", "999999"], "no drill 999999"),
    ],
)
def test_the_cli_refuses_bad_input_with_exit_2(
    town: twin.City, app: object, args: list[str], needle: str
) -> None:
    code, _, err = run(app, *args, "--url", town.url)
    assert code == 2 and needle in err and "Traceback" not in err


def test_a_network_that_cannot_be_traced_is_noted_or_refused_when_required(
    town: twin.City,
) -> None:
    place = on_route(town)
    made = preplans.apply("gas_leak", place, name="pp-gas-note", url=town.url)
    # the sample's few gas pipes have no source node: no isolation, said so, nothing broken
    assert made.settings["valves"] == {
        "network": "gas",
        "note": "the gas network has no source (a 'source' node, or a 'substation' for power): "
        "supply cannot be traced",
    }
    assert "broken" not in made.settings
    required = preplans.get("gas_leak", url=town.url).template() | {
        "name": "gas_leak_required_test",
        "valves": {"network": "gas", "search_m": 150, "required": True},
    }
    plan, _ = preplans.save(required, url=town.url)
    with pytest.raises(MissingInputError) as raised:
        preplans.apply(plan, place, name="pp-gas-required", url=town.url)
    assert raised.value.parameter == "preplan" and raised.value.missing == "pipe_nodes"
    with pytest.raises(ScenarioNotFoundError):
        scenarios.get("pp-gas-required", url=town.url)
