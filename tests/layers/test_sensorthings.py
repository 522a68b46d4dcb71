"""SensorThings entities, query options and writes over a real store (layers.sensorthings)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from layers import sensorthings as st
from layers.errors import ParameterError
from layers.observations import (
    COUNT,
    OBSERVATION_TYPES,
    TRUTH,
    Reading,
    iso,
    latest,
    store_observations,
)
from tests.assertions import sql_scalar
from twin.live.registry import register

BASE = "http://test/v1.1"
NOW = datetime.now(UTC).replace(microsecond=0)
#: a building of the sample city (a Thing may be one)
BUILDING = "relation/11384697"


def read(url: str, path: str, **options: str) -> st.Page:
    target = st.resolve(path, url=url)
    return st.read(target, st.parse_query(target.entity.name, options), base=BASE, url=url)


def names(page: st.Page) -> list[str]:
    return [entity["name"] for entity in page.value]


@pytest.fixture
def detectors(live_db: str) -> dict[str, Any]:
    """Three detectors with speed, a counter and a status datastream, and their readings."""
    speed = {
        name: register(
            f"{name}/speed",
            thing=name,
            observed_property="speed",
            location=(7.42 + 0.001 * n, 43.73),
            url=live_db,
        )
        for n, name in enumerate(("north", "south", "east"))
    }
    count = register(
        "north/flow", thing="north", observed_property="flow", observation_type=COUNT, url=live_db
    )
    status = register(
        "east/online", thing="east", observed_property="status", observation_type=TRUTH, url=live_db
    )
    readings = [
        Reading(ident, NOW - timedelta(minutes=m), float(10 * n + m))
        for n, ident in enumerate(speed.values())
        for m in range(6)
    ]
    readings += [Reading(count, NOW - timedelta(minutes=m), 100 + m) for m in range(3)]
    readings += [Reading(status, NOW - timedelta(minutes=m), m % 2 == 0) for m in range(2)]
    report = store_observations(readings, url=live_db)
    assert not report.refused_by_reason and len(report.stored) == len(readings)
    return {"speed": speed, "count": count, "status": status, "url": live_db}


def test_entities_read_in_the_sensorthings_encoding(detectors: dict[str, Any]) -> None:
    url = detectors["url"]
    page = read(url, "Things", **{"$expand": "Locations,Datastreams($select=name,phenomenonTime)"})
    north = next(t for t in page.value if t["name"] == "north")
    assert north["@iot.selfLink"] == f"{BASE}/Things({north['@iot.id']})"
    assert north["HistoricalLocations@iot.navigationLink"].endswith("/HistoricalLocations")
    assert north["Locations"][0]["location"] == {"type": "Point", "coordinates": [7.42, 43.73]}
    streams = {d["name"]: d for d in north["Datastreams"]}
    assert set(streams) == {"north/speed", "north/flow"}
    start, end = streams["north/speed"]["phenomenonTime"].split("/")
    assert start == iso(NOW - timedelta(minutes=5)) and end == iso(NOW)
    counts = read(url, f"Datastreams({detectors['count']})/Observations")
    assert [o["result"] for o in counts.value] == [102, 101, 100]  # integers, oldest first
    assert all(isinstance(o["result"], int) for o in counts.value)
    truth = read(url, f"Datastreams({detectors['status']})/Observations")
    assert [o["result"] for o in truth.value] == [False, True]


@pytest.mark.parametrize(
    ("path", "expression", "expected"),
    [
        ("Things", "name eq 'north'", ["north"]),
        ("Things", "name ne 'north'", ["south", "east"]),
        ("Things", "not (name eq 'north') and name gt 'f'", ["south"]),
        (
            "Things",
            "(name eq 'north' or name eq 'south') and length(name) eq 5",
            ["north", "south"],
        ),
        ("Things", "substringof('ort', name)", ["north"]),
        ("Things", "contains(name, 'ort')", ["north"]),
        ("Things", "startswith(name, 'so') or endswith(name, 'st')", ["south", "east"]),
        ("Things", "tolower(toupper(name)) eq 'east' and indexof(name, 'a') eq 1", ["east"]),
        ("Things", "substring(name, 1, 2) eq 'ou' and concat(name, '!') eq 'south!'", ["south"]),
        ("Things", "trim(concat(' ', name)) eq 'east'", ["east"]),
        ("Things", "Datastreams/Observations/result gt 20", ["north", "east"]),
        (
            "Things",
            "Datastreams/Observations/result gt 20 and Datastreams/Observations/result lt 30",
            ["east"],
        ),
        ("Things", "Datastreams/ObservedProperty/name eq 'flow'", ["north"]),
        ("Things", "Datastreams/unitOfMeasurement/symbol eq 'km/h'", ["north", "south", "east"]),
        ("Things", "name in ('south', 'east')", ["south", "east"]),
        (
            "Things",
            "geo.intersects(Locations/location, "
            "geography'POLYGON((7.4205 43.7, 7.43 43.7, 7.43 43.8, 7.4205 43.8, 7.4205 43.7))')",
            ["south", "east"],
        ),
        (
            "Things",
            "st_within(Locations/location, "
            "geography'POLYGON((7.4195 43.7, 7.4205 43.7, 7.4205 43.8, 7.4195 43.8, 7.4195 43.7))')",
            ["north"],
        ),
        (
            "Things",
            "geo.distance(Locations/location, geography'POINT(7.42 43.73)') lt 0.0015",
            ["north", "south"],
        ),
        (
            "Datastreams",
            "Thing/name eq 'east' and observationType ne 'x'",
            ["east/speed", "east/online"],
        ),
        ("Datastreams", "Thing/id eq 1", ["north/speed", "north/flow"]),
        ("Locations", "Things/name eq 'south'", ["south"]),
        ("Sensors", "Datastreams/Thing/name eq 'east'", ["sensor"]),
    ],
)
def test_filter_expressions(
    detectors: dict[str, Any], path: str, expression: str, expected: list[str]
) -> None:
    assert names(read(detectors["url"], path, **{"$filter": expression})) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("result gt 12", [13.0, 14.0, 15.0]),
        ("result add 1 ge 16", [15.0]),
        ("result sub 10 eq 0 or result mul 2 eq 30", [10.0, 15.0]),
        ("result div 5 eq 3", [15.0]),
        ("result mod 4 eq 1", [13.0]),
        ("round(result div 3) eq 4 and floor(result div 3) eq 3", [11.0]),
        ("ceiling(result div 4) eq 3", [10.0, 11.0, 12.0]),
        ("-result lt -14.5", [15.0]),
        (f"phenomenonTime le {iso(NOW - timedelta(minutes=4))}", [14.0, 15.0]),
        (f"resultTime eq '{iso(NOW)}'", [10.0]),
        (f"year(phenomenonTime) eq {NOW.year} and result eq 12", [12.0]),
        (
            f"hour(phenomenonTime) eq {(NOW - timedelta(minutes=5)).hour} and minute(phenomenonTime) eq {(NOW - timedelta(minutes=5)).minute}",
            [15.0],
        ),
        ("Datastream/Thing/name eq 'south' and result lt 11", [10.0]),
        ("parameters eq null and resultQuality eq null and result le 10", [10.0]),
    ],
)
def test_observation_filters(
    detectors: dict[str, Any], expression: str, expected: list[float]
) -> None:
    south = detectors["speed"]["south"]
    page = read(detectors["url"], f"Datastreams({south})/Observations", **{"$filter": expression})
    assert sorted(o["result"] for o in page.value) == expected


def test_now_in_a_filter_is_the_servers_clock(detectors: dict[str, Any]) -> None:
    # the data is stamped relative to NOW (when the module was imported); the filter reads the
    # server's clock when it runs: the expected answer is worked out from the clock here
    url = detectors["url"]
    cutoff = datetime.now(UTC) - timedelta(minutes=3)
    starts = {  # each datastream's phenomenonTime starts at its oldest reading
        "north/speed": NOW - timedelta(minutes=5),
        "north/flow": NOW - timedelta(minutes=2),
        "south/speed": NOW - timedelta(minutes=5),
        "east/speed": NOW - timedelta(minutes=5),
        "east/online": NOW - timedelta(minutes=1),
    }
    older = read(url, "Datastreams", **{"$filter": "phenomenonTime lt now() sub duration'PT3M'"})
    assert sorted(names(older)) == sorted(n for n, t in starts.items() if t < cutoff)

    south = detectors["speed"]["south"]
    recent = read(
        url,
        f"Datastreams({south})/Observations",
        **{"$filter": "phenomenonTime ge now() sub duration'PT1H'"},
    )
    assert sorted(o["result"] for o in recent.value) == [10.0 + m for m in range(6)]
    future = read(
        url,
        f"Datastreams({south})/Observations",
        **{"$filter": "phenomenonTime gt now() add duration'PT1M'"},
    )
    assert future.value == []


def test_filter_on_json_members_and_results_of_other_types(detectors: dict[str, Any]) -> None:
    url = detectors["url"]
    truth = read(url, "Observations", **{"$filter": "result eq true"})
    assert [o["result"] for o in truth.value] == [True]
    counts = read(
        url,
        "Observations",
        **{"$filter": "Datastream/id eq " + str(detectors["count"]) + " and result ge 101"},
    )
    assert sorted(o["result"] for o in counts.value) == [101, 102]
    flow = read(url, "Datastreams", **{"$filter": "unitOfMeasurement/name eq '/h'"})
    assert names(flow) == ["north/flow"]
    quoted = read(url, "Datastreams", **{"$filter": "Thing/id eq '2'"})  # as 18-088 writes it
    assert names(quoted) == ["south/speed"]


def test_orderby_several_keys_top_skip_count_select(detectors: dict[str, Any]) -> None:
    url = detectors["url"]
    page = read(
        url,
        "Observations",
        **{
            "$filter": "Datastream/ObservedProperty/name eq 'speed'",
            "$orderby": "phenomenonTime desc, result asc",
            "$top": "4",
            "$skip": "1",
            "$count": "true",
            "$select": "result,phenomenonTime",
        },
    )
    assert page.count == 18 and page.more
    assert [o["result"] for o in page.value] == [10.0, 20.0, 1.0, 11.0]
    assert all(set(o) == {"result", "phenomenonTime"} for o in page.value)
    counted = read(url, "Things", **{"$top": "0", "$count": "true"})
    assert counted.count == 3 and counted.value == [] and not counted.more
    things = read(url, "Things", **{"$orderby": "length(name) desc, name"})
    assert names(things) == ["north", "south", "east"]
    by_thing = read(url, "Datastreams", **{"$orderby": "Thing/name, name desc", "$select": "name"})
    assert names(by_thing) == [
        "east/speed",
        "east/online",
        "north/speed",
        "north/flow",
        "south/speed",
    ]


def test_expand_nests_with_its_own_options(detectors: dict[str, Any]) -> None:
    page = read(
        detectors["url"],
        "Things",
        **{
            "$filter": "name eq 'north'",
            "$expand": "Datastreams($filter=ObservedProperty/name eq 'speed';"
            "$expand=Observations($top=2;$orderby=phenomenonTime desc;$count=true;"
            "$select=result),Sensor)",
        },
    )
    (north,) = page.value
    (speed,) = north["Datastreams"]
    assert speed["Sensor"]["name"] == "sensor"
    assert speed["Observations@iot.count"] == 6
    assert [o["result"] for o in speed["Observations"]] == [0.0, 1.0]
    link = speed["Observations@iot.nextLink"]
    assert link.startswith(f"{BASE}/Datastreams({speed['@iot.id']})/Observations?")
    assert "$skip=2" in link and "$top=2" in link
    # the link is the next page
    options = dict(re.findall(r"(\$\w+)=([^&]*)", link.split("?", 1)[1]))
    from urllib.parse import unquote

    nxt = read(
        detectors["url"],
        f"Datastreams({speed['@iot.id']})/Observations",
        **{k: unquote(v) for k, v in options.items()},
    )
    assert [o["result"] for o in nxt.value] == [2.0, 3.0]


def test_expand_top_one_newest_agrees_with_latest(live_db: str) -> None:
    ids = [
        register(f"d{n}/speed", thing=f"d{n}", observed_property="speed", url=live_db)
        for n in range(400)
    ]
    readings = [
        Reading(ident, NOW - timedelta(seconds=(n * 7 + k * 31) % 600), float(n * 10 + k))
        for n, ident in enumerate(ids)
        for k in range(3)
        if not (n % 50 == 0 and k > 0)
    ]
    store_observations(readings, url=live_db)
    page = read(
        live_db,
        "Datastreams",
        **{"$top": "1000", "$expand": "Observations($top=1;$orderby=phenomenonTime desc)"},
    )
    assert len(page.value) == 400 and not page.more
    newest = {
        d["@iot.id"]: (d["Observations"][0]["@iot.id"], d["Observations"][0]["result"])
        for d in page.value
    }
    expected = {r["datastream_id"]: (r["observation_id"], r["result"]) for r in latest(url=live_db)}
    assert newest == expected
    # a datastream with one observation has no next link; the others have one
    single = [d for d in page.value if "Observations@iot.nextLink" not in d]
    assert len(single) == 8


def test_observations_are_read_from_the_partitions_the_filter_names(live_db: str) -> None:
    ids = [
        register(f"p{n}/flow", thing=f"p{n}", observed_property="flow", url=live_db)
        for n in range(30)
    ]
    today = NOW.replace(hour=0, minute=0, second=0)
    readings = [
        Reading(ident, today - timedelta(days=day) + timedelta(minutes=5 * k), float(k))
        for day in range(4)
        for ident in ids
        for k in range(288)
        if today - timedelta(days=day) + timedelta(minutes=5 * k) <= NOW
    ]
    report = store_observations(readings, url=live_db)
    assert not report.refused_by_reason
    from layers.database import get_engine

    with get_engine(live_db).connect() as conn:
        conn.exec_driver_sql("ANALYZE sta_observations")
        conn.commit()
    since = iso(today - timedelta(days=1))
    target = st.resolve("Observations", url=live_db)
    query = st.parse_query(
        "Observations",
        {
            "$filter": f"Datastream/id eq {ids[7]} and phenomenonTime ge {since}",
            "$orderby": "phenomenonTime desc",
            "$top": "10",
        },
    )
    plan = st.explain(target, query, url=live_db)
    partitions = set(re.findall(r"sta_observations_(\d{8})", plan))
    # the filter's two days, and any partition made ahead for the days to come (empty)
    expected = {f"{today - timedelta(days=d):%Y%m%d}" for d in (0, 1)}
    assert partitions >= expected, plan
    assert all(p >= f"{today - timedelta(days=1):%Y%m%d}" for p in partitions), plan
    assert "Index Scan Backward using" in plan and "Sort" not in plan, plan
    page = st.read(target, query, base=BASE, url=live_db)
    times = [o["phenomenonTime"] for o in page.value]
    assert times == sorted(times, reverse=True) and len(times) == 10 and page.more
    # a datastream's observations in time order walk its primary key, without a sort
    nested = st.resolve(f"Datastreams({ids[3]})/Observations", url=live_db)
    plan = st.explain(nested, st.parse_query("Observations", {}), url=live_db)
    assert "Sort" not in plan and "_pkey" in plan, plan
    # all observations: in @iot.id order, merged from each partition's index
    everything = st.explain(target, st.parse_query("Observations", {"$top": "50"}), url=live_db)
    assert "Merge Append" in everything and "Sort Key: t.id" in everything, everything
    assert "Seq Scan" not in everything, everything


def test_deep_insert_creates_and_links_everything(live_db: str) -> None:
    created = st.create(
        "Things",
        {
            "name": "oven",
            "description": "a convection oven",
            "properties": {"owner": "J", "layer": "buildings", "feature_id": BUILDING},
            "Locations": [
                {
                    "name": "kitchen",
                    "description": "the kitchen",
                    "encodingType": "application/vnd.geo+json",
                    "location": {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [7.42, 43.73]},
                    },
                }
            ],
            "Datastreams": [
                {
                    "name": "oven/temperature",
                    "description": "inside",
                    "unitOfMeasurement": {
                        "name": "degree Celsius",
                        "symbol": "Cel",
                        "definition": "ucum",
                    },
                    "observationType": OBSERVATION_TYPES[0],
                    "Sensor": {
                        "name": "DS18B20",
                        "description": "a probe",
                        "encodingType": "application/pdf",
                        "metadata": "http://x",
                    },
                    "ObservedProperty": {
                        "name": "temperature",
                        "definition": "urn:t",
                        "description": "t",
                    },
                    "Observations": [{"phenomenonTime": iso(NOW), "result": 180.5}],
                }
            ],
        },
        url=live_db,
    )
    assert len(created.readings) == 1 and created.readings[0].result == 180.5
    thing = st.representation("Things", created.id, base=BASE, url=live_db)
    assert thing["properties"] == {"owner": "J", "layer": "buildings", "feature_id": BUILDING}
    assert (
        sql_scalar(live_db, "SELECT layer || ':' || feature_id FROM sta_things")
        == f"buildings:{BUILDING}"
    )
    page = read(
        live_db,
        f"Things({created.id})/Datastreams",
        **{
            "$expand": "Sensor,ObservedProperty,Thing/Locations,Thing/HistoricalLocations/Locations"
        },
    )
    (datastream,) = page.value
    assert datastream["Sensor"]["metadata"] == "http://x"
    assert datastream["Thing"]["Locations"][0]["name"] == "kitchen"
    (history,) = datastream["Thing"]["HistoricalLocations"]
    assert history["Locations"][0]["name"] == "kitchen"
    # a second datastream links to the existing sensor and property by id
    second = st.create(
        "Datastreams",
        {
            "name": "oven/temperature-2",
            "unitOfMeasurement": {"name": "degree Celsius", "symbol": "Cel"},
            "observationType": OBSERVATION_TYPES[0],
            "Sensor": {"@iot.id": datastream["Sensor"]["@iot.id"]},
            "ObservedProperty": {"@iot.id": datastream["ObservedProperty"]["@iot.id"]},
        },
        parent=("Things", st.ENTITIES["Things"].links["Datastreams"], created.id),
        url=live_db,
    )
    assert read(live_db, f"Datastreams({second.id})/Thing").value[0]["name"] == "oven"
    assert sql_scalar(live_db, "SELECT count(*) FROM sta_sensors") == 1


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"description": "no name"}, "name"),
        (
            {
                "name": "x",
                "Locations": [
                    {"name": "l", "location": {"type": "Point", "coordinates": [700, 1]}}
                ],
            },
            "Locations[0].location",
        ),
        (
            {
                "name": "x",
                "Locations": [{"name": "l", "encodingType": "text/plain", "location": {}}],
            },
            "Locations[0].encodingType",
        ),
        (
            {
                "name": "x",
                "Datastreams": [{"name": "d", "unitOfMeasurement": {}, "observationType": "nope"}],
            },
            "Datastreams[0].observationType",
        ),
        (
            {
                "name": "x",
                "Datastreams": [
                    {
                        "name": "d",
                        "unitOfMeasurement": {},
                        "observationType": OBSERVATION_TYPES[0],
                        "Sensor": {"@iot.id": 999},
                        "ObservedProperty": {"@iot.id": 1},
                    }
                ],
            },
            "Datastreams[0].Sensor",
        ),
        (
            {
                "name": "x",
                "Datastreams": [
                    {
                        "name": "d",
                        "unitOfMeasurement": {},
                        "observationType": OBSERVATION_TYPES[0],
                        "Sensor": {"name": "s"},
                        "ObservedProperty": {"name": "p"},
                        "Observations": [{"result": "warm"}],
                    }
                ],
            },
            "Datastreams[0].Observations[0].result",
        ),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "properties": {"layer": "nowhere", "feature_id": "1"}}, "properties"),
        (
            {"name": "x", "properties": {"layer": "roads", "feature_id": "no/such/road"}},
            "properties",
        ),
    ],
)
def test_a_refused_deep_insert_creates_nothing(
    live_db: str, body: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(ParameterError) as refused:
        st.create("Things", body, url=live_db)
    assert refused.value.parameter == parameter, refused.value
    for table in ("sta_things", "sta_locations", "sta_datastreams", "sta_sensors"):
        assert sql_scalar(live_db, f"SELECT count(*) FROM {table}") == 0


def test_names_unique_in_the_store_are_a_conflict(live_db: str) -> None:
    st.create("Sensors", {"name": "probe"}, url=live_db)
    with pytest.raises(st.EntityConflictError, match=r"Sensors\(1\)"):
        st.create("Sensors", {"name": "probe"}, url=live_db)


def test_update_and_delete_follow_the_integrity_rules(detectors: dict[str, Any]) -> None:
    url = detectors["url"]
    north = detectors["speed"]["north"]
    st.update("Datastreams", north, {"description": "changed", "properties": {"lane": 2}}, url=url)
    changed = st.representation("Datastreams", north, base=BASE, url=url)
    assert changed["description"] == "changed" and changed["properties"] == {"lane": 2}
    with pytest.raises(ParameterError, match="links entities"):
        st.update("Datastreams", north, {"Sensor": {"name": "new"}}, url=url)
    with pytest.raises(st.MethodNotAllowedError):
        st.update("Observations", 1, {"result": 3}, url=url)
    with pytest.raises(st.MethodNotAllowedError):
        st.delete("Observations", 1, url=url)
    # deleting a Thing deletes its Datastreams and their Observations
    thing = read(url, "Things", **{"$filter": "name eq 'north'"}).value[0]["@iot.id"]
    st.delete("Things", thing, url=url)
    assert sql_scalar(url, "SELECT count(*) FROM sta_datastreams WHERE id = :d", d=north) == 0
    assert (
        sql_scalar(url, "SELECT count(*) FROM sta_observations WHERE datastream_id = :d", d=north)
        == 0
    )
    # deleting a Sensor deletes every Datastream made with it
    st.delete("Sensors", 1, url=url)
    assert sql_scalar(url, "SELECT count(*) FROM sta_datastreams") == 0
    with pytest.raises(st.EntityNotFoundError):
        st.delete("Things", thing, url=url)


def test_paths_resolve_through_navigation(detectors: dict[str, Any]) -> None:
    url = detectors["url"]
    north = detectors["speed"]["north"]
    thing = st.resolve(f"Datastreams({north})/Thing", url=url)
    assert thing.entity.name == "Things" and thing.id is not None
    nested = st.resolve(f"Things({thing.id})/Datastreams({north})/Observations", url=url)
    assert nested.parent is not None and nested.parent[2] == north
    prop = st.resolve(f"Things({thing.id})/properties/owner/$value", url=url)
    assert prop.property == ("properties", "owner") and prop.value
    assert st.read_property(st.resolve(f"Things({thing.id})/name", url=url), url=url) == "north"
    for bad in (
        "Thingz",
        "Things(99)",
        f"Things({thing.id})/Datastreams({detectors['speed']['south']})",
        f"Things({thing.id})/colour",
        "Things/Datastreams",
        f"Datastreams({north})/Thing(1)",
    ):
        with pytest.raises(st.EntityNotFoundError):
            st.resolve(bad, url=url)


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"$top": "-1"}, "$top"),
        ({"$top": "ten"}, "$top"),
        ({"$skip": "1.5"}, "$skip"),
        ({"$count": "yes"}, "$count"),
        ({"$filter": "name eq"}, "$filter"),
        ({"$filter": "colour eq 'red'"}, "$filter"),
        ({"$filter": "name gt 3"}, "$filter"),
        ({"$filter": "frobnicate(name)"}, "$filter"),
        ({"$filter": "startswith(name)"}, "$filter"),
        ({"$filter": "geo.intersects(Locations/location, geography'POINT(1)')"}, "$filter"),
        ({"$filter": "Datastreams eq 1"}, "$filter"),
        ({"$filter": "name eq null or name lt null"}, "$filter"),
        ({"$filter": "not " * 150 + "name eq 'a'"}, "$filter"),
        ({"$filter": " and ".join(["name eq 'a'"] * 200)}, "$filter"),
        ({"$filter": "x" * 20_000}, "$filter"),
        ({"$orderby": "colour"}, "$orderby"),
        ({"$orderby": "Datastreams/name"}, "$orderby"),
        ({"$orderby": "name sideways"}, "$orderby"),
        ({"$select": "name,colour"}, "$select"),
        ({"$expand": "Sensors"}, "$expand"),
        ({"$expand": "Datastreams($top=x)"}, "$expand"),
        ({"$expand": "Datastreams($filter=name eq 1)"}, "$expand"),
        ({"$expand": "Datastreams(($top=1)"}, "$expand"),
        ({"$expand": "Datastreams/Thing/" * 4 + "Datastreams"}, "$expand"),
    ],
)
def test_malformed_options_name_the_option(options: dict[str, str], parameter: str) -> None:
    with pytest.raises(ParameterError) as refused:
        st.parse_query("Things", options)
    assert refused.value.parameter == parameter, refused.value
    assert str(refused.value).startswith(parameter), refused.value


def test_unsupported_options_and_limits() -> None:
    with pytest.raises(st.UnsupportedOptionError):
        st.parse_query("Things", {"$resultFormat": "dataArray"})
    with pytest.raises(ParameterError, match="twice"):
        st.parse_query("Things", [("$top", "1"), ("$top", "2")])
    assert st.parse_query("Things", {"$top": "50000"}).top == st.MAX_TOP
    assert st.parse_query("Things", {"other": "x"}).top == st.DEFAULT_TOP
    # brackets cost no depth: the parser is not recursive
    deep = "(" * 500 + "name eq 'a'" + ")" * 500
    assert st.parse_query("Things", {"$filter": deep}).filter is not None
