"""The SensorThings API v1.1 over HTTP, read and written by frost-sta-client as a gateway would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import frost_sta_client as fsc
import httpx2 as httpx
import pytest
import sqlalchemy as sa

from layers.database import get_engine
from layers.observations import MEASUREMENT, forget_datastreams, iso, latest, refusals
from tests.assertions import problem, sql_scalar
from tests.conditions import api_server
from twin.live import registry

ROOT = Path(__file__).resolve().parents[2]
# frost-sta-client itself calls furl's deprecated pathstr; that is the client's, not ours
pytestmark = pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning")
NOW = datetime.now(UTC).replace(microsecond=0)
#: The live twin's tables, emptied once before this module's server starts (tests/conftest.py).
LIVE_TABLES = (
    "sta_observations, sta_latest, live_alerts, live_alert_rules, live_refusals, live_speeds, "
    "sta_datastreams, sta_location_historical_locations, sta_historical_locations, "
    "sta_thing_locations, sta_locations, sta_features_of_interest, sta_sensors, "
    "sta_observed_properties, sta_things"
)


@pytest.fixture(scope="module")
def store(_live_city: str) -> str:
    """The sample city's store with no sensors; each test adds entities of its own."""
    with get_engine(_live_city).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {LIVE_TABLES} RESTART IDENTITY CASCADE"))
    forget_datastreams(_live_city)
    registry.forget(_live_city)
    return _live_city


@pytest.fixture(scope="module")
def server(store: str) -> Iterator[str]:
    with api_server(store, root=ROOT) as address:
        yield f"{address}/v1.1"


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def service(server: str) -> fsc.SensorThingsService:
    return fsc.SensorThingsService(server)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def speed_datastream(store: str, name: str | None = None) -> int:
    thing = name or unique("detector")
    return registry.register(
        f"{thing}/speed", thing=thing, observed_property="speed", location=(7.42, 43.73), url=store
    )


def stored(store: str, datastream: int) -> int:
    return int(
        sql_scalar(
            store, "SELECT count(*) FROM sta_observations WHERE datastream_id = :d", d=datastream
        )
    )


def test_service_root_lists_entity_sets_and_conformance(http: httpx.Client, server: str) -> None:
    root = http.get("").json()
    assert [s["name"] for s in root["value"]] == [
        "Things",
        "Locations",
        "HistoricalLocations",
        "Sensors",
        "ObservedProperties",
        "Datastreams",
        "Observations",
        "FeaturesOfInterest",
    ]
    assert all(s["url"] == f"{server}/{s['name']}" for s in root["value"])
    conformance = root["serverSettings"]["conformance"]
    spec = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
    for name in (
        "datamodel",
        "request-data",
        "create-update-delete",
        "data-array/data-array",
        "create-observations-via-mqtt/observations-creation",
        "receive-updates-via-mqtt/receive-updates",
    ):
        assert spec + name in conformance
    mqtt = root["serverSettings"][spec + "create-observations-via-mqtt/observations-creation"]
    assert mqtt["endpoints"][0].startswith("mqtt://")
    assert http.get("/").json() == root


def test_frost_client_creates_a_thing_with_a_datastream_and_reads_it(
    service: fsc.SensorThingsService, store: str
) -> None:
    name = unique("oven")
    thing = fsc.Thing(
        name=name,
        description="a convection oven",
        properties={"owner": "the canteen"},
        locations=[
            fsc.Location(
                name="kitchen",
                description="the kitchen",
                encoding_type="application/geo+json",
                location={"type": "Point", "coordinates": [7.4246, 43.7384]},
            )
        ],
    )
    datastream = fsc.Datastream(
        name=f"{name}/temperature",
        description="inside the oven",
        observation_type=MEASUREMENT,
        unit_of_measurement=fsc.UnitOfMeasurement(
            name="degree Celsius", symbol="Cel", definition="https://ucum.org"
        ),
        sensor=fsc.Sensor(
            name=unique("DS18B20"),
            description="a probe",
            encoding_type="application/pdf",
            metadata="https://example.org/ds18b20.pdf",
        ),
        observed_property=fsc.ObservedProperty(
            name=unique("temperature"), definition="urn:temperature", description="temperature"
        ),
    )
    thing.datastreams = [datastream]
    service.create(thing)
    assert isinstance(thing.id, int)
    # read back as a dashboard would: the Thing with its datastreams and their sensors
    things = (
        service.things()
        .query()
        .filter(f"name eq '{name}'")
        .expand("Locations,Datastreams($expand=Sensor,ObservedProperty)")
        .list()
    )
    (read,) = list(things)
    assert read.id == thing.id and read.properties == {"owner": "the canteen"}
    assert read.locations.entities[0].location["coordinates"] == [7.4246, 43.7384]
    (stream,) = read.datastreams.entities
    assert stream.unit_of_measurement.symbol == "Cel"
    assert stream.sensor.metadata == "https://example.org/ds18b20.pdf"
    # a gateway posts observations one by one and reads them back, newest first, page by page
    for minute in range(5):
        service.create(
            fsc.Observation(
                phenomenon_time=iso(NOW - timedelta(minutes=minute)),
                result=180.0 + minute,
                datastream=stream,
            )
        )
    observations = (
        service.observations()
        .query()
        .filter(f"Datastream/id eq {stream.id}")
        .orderby("phenomenonTime", "desc")
        .top(2)
        .list()
    )
    results = [o.result for o in observations]  # follows @iot.nextLink
    assert results == [180.0, 181.0, 182.0, 183.0, 184.0]
    found = service.datastreams().find(stream.id)
    assert found.phenomenon_time == f"{iso(NOW - timedelta(minutes=4))}/{iso(NOW)}"
    assert stored(store, stream.id) == 5
    # and changes it with a JSON Patch, as the client sends them
    service.patch(found, [{"op": "replace", "path": "/description", "value": "the top oven"}])
    assert service.datastreams().find(stream.id).description == "the top oven"
    service.delete(read)
    assert sql_scalar(store, "SELECT count(*) FROM sta_things WHERE name = :n", n=name) == 0
    assert stored(store, stream.id) == 0


def test_query_options_over_http(http: httpx.Client, store: str) -> None:
    prefix = unique("q")
    ids = [speed_datastream(store, f"{prefix}-{n}") for n in range(3)]
    for n, ident in enumerate(ids):
        rows = [[iso(NOW - timedelta(minutes=m)), float(n * 10 + m)] for m in range(4)]
        body = [
            {
                "Datastream": {"@iot.id": ident},
                "components": ["phenomenonTime", "result"],
                "dataArray": rows,
            }
        ]
        assert http.post("/CreateObservations", json=body).status_code == 201
    things = http.get(
        "/Things",
        params={
            "$filter": f"startswith(name, '{prefix}')",
            "$orderby": "name desc",
            "$top": "2",
            "$count": "true",
            "$select": "name,id",
            "$expand": "Datastreams($select=name;$expand=Observations($top=1;$orderby=phenomenonTime desc;$select=result))",
        },
    ).json()
    assert things["@iot.count"] == 3
    assert [t["name"] for t in things["value"]] == [f"{prefix}-2", f"{prefix}-1"]
    assert things["value"][0]["Datastreams"][0]["Observations"] == [{"result": 20.0}]
    assert set(things["value"][0]) == {"@iot.id", "name", "Datastreams"}
    # the next link is the rest, whatever options it carries
    rest = http.get(things["@iot.nextLink"]).json()
    assert [t["name"] for t in rest["value"]] == [f"{prefix}-0"] and "@iot.nextLink" not in rest
    # every page of a walk through the next links, with $skip applied before $top
    seen, url = [], f"/Datastreams({ids[1]})/Observations?$top=3&$skip=0"
    while url:
        page = http.get(url).json()
        seen += [o["result"] for o in page["value"]]
        url = page.get("@iot.nextLink")
    assert seen == [13.0, 12.0, 11.0, 10.0]  # oldest first by default
    window = http.get(
        "/Observations",
        params={
            "$filter": f"Datastream/Thing/name eq '{prefix}-0' and phenomenonTime gt {iso(NOW - timedelta(minutes=2))}",
            "$orderby": "result desc",
        },
    ).json()
    assert [o["result"] for o in window["value"]] == [1.0, 0.0]
    # a property, its raw value, links, and navigation to one entity
    thing_id = things["value"][0]["@iot.id"]
    assert http.get(f"/Things({thing_id})/name").json() == {"name": f"{prefix}-2"}
    raw = http.get(f"/Things({thing_id})/name/$value")
    assert raw.text == f"{prefix}-2" and raw.headers["content-type"].startswith("text/plain")
    refs = http.get(f"/Things({thing_id})/Datastreams/$ref").json()
    assert refs == {
        "value": [{"@iot.selfLink": f"{str(http.base_url).rstrip('/')}/Datastreams({ids[2]})"}]
    }
    assert http.get(f"/Datastreams({ids[2]})/Thing").json()["@iot.id"] == thing_id
    assert http.get(f"/Things({thing_id})/properties").status_code == 204  # null


@pytest.mark.parametrize(
    ("path", "params", "status", "parameter"),
    [
        ("/Things", {"$top": "-3"}, 400, "$top"),
        ("/Things", {"$skip": "x"}, 400, "$skip"),
        ("/Things", {"$count": "maybe"}, 400, "$count"),
        ("/Things", {"$filter": "name eq"}, 400, "$filter"),
        ("/Observations", {"$filter": "name eq 'x'"}, 400, "$filter"),
        ("/Observations", {"$filter": "result add 1 gt now()"}, 400, "$filter"),
        (
            "/Things",
            {"$filter": "geo.intersects(Locations/location, geography'POLYGON((0 0))')"},
            400,
            "$filter",
        ),
        ("/Things", {"$orderby": "name upwards"}, 400, "$orderby"),
        # a constant is no order (PostgreSQL: a syntax error for null, a column number for 1)
        ("/Things", {"$orderby": "null"}, 400, "$orderby"),
        ("/Things", {"$orderby": "1 desc"}, 400, "$orderby"),
        ("/Observations", {"$orderby": "'x'"}, 400, "$orderby"),
        ("/Things", {"$select": "colour"}, 400, "$select"),
        ("/Things", {"$expand": "Observations"}, 400, "$expand"),
        ("/Things", {"$expand": "Datastreams($top=many)"}, 400, "$expand"),
        ("/Things", {"$resultFormat": "dataArray"}, 501, "$resultFormat"),
        ("/Thingz", {}, 404, "path"),
        ("/Things(999999)", {}, 404, "path"),
        ("/Things(1)/colour", {}, 404, "path"),
    ],
)
def test_bad_requests_are_problems_naming_the_option(
    http: httpx.Client, path: str, params: dict[str, str], status: int, parameter: str
) -> None:
    problem(http.get(path, params=params), status, parameter)


def test_refused_readings_are_counted_and_nothing_is_stored(http: httpx.Client, store: str) -> None:
    datastream = speed_datastream(store)
    before = refusals(url=store)
    cases = [
        ({"phenomenonTime": iso(NOW), "result": "fast"}, 400, "result"),
        ({"phenomenonTime": iso(NOW + timedelta(hours=2)), "result": 50}, 400, "phenomenonTime"),
        ({"phenomenonTime": iso(NOW - timedelta(days=400)), "result": 50}, 400, "phenomenonTime"),
        ({"phenomenonTime": "yesterday", "result": 50}, 400, "phenomenonTime"),
        ({"phenomenonTime": iso(NOW)}, 400, "result"),
    ]
    for body, status, parameter in cases:
        problem(http.post(f"/Datastreams({datastream})/Observations", json=body), status, parameter)
    problem(http.post("/Observations", json={"result": 1}), 400, "Datastream")
    problem(http.post("/Datastreams(999999)/Observations", json={"result": 1}), 404, "path")
    problem(http.post("/Observations", content=b"{not json"), 400, "body")
    after = refusals(url=store)
    counted = sum(after.values()) - sum(before.values())
    assert counted == len(cases) + 2  # the malformed body is no reading
    assert after["wrong type"] > before.get("wrong type", 0)
    assert after["in the future"] > before.get("in the future", 0)
    assert stored(store, datastream) == 0


def test_duplicates_are_stored_once(http: httpx.Client, store: str) -> None:
    datastream = speed_datastream(store)
    body = {"phenomenonTime": iso(NOW), "result": 42.5}
    first = http.post(f"/Datastreams({datastream})/Observations", json=body)
    assert first.status_code == 201 and first.json()["result"] == 42.5
    again = http.post(f"/Datastreams({datastream})/Observations", json=body)
    assert again.status_code == 200
    assert again.headers["location"] == first.headers["location"]
    assert again.json()["@iot.id"] == first.json()["@iot.id"]
    problem(
        http.post(f"/Datastreams({datastream})/Observations", json={**body, "result": 43}),
        409,
        "phenomenonTime",
    )
    rows = [
        [iso(NOW), 42.5],
        [iso(NOW - timedelta(seconds=1)), 1.0],
        [iso(NOW), 99.0],
        ["soon", 1.0],
        [iso(NOW - timedelta(seconds=1)), 1],
    ]
    links = http.post(
        "/CreateObservations",
        json=[
            {
                "Datastream": {"@iot.id": datastream},
                "components": ["phenomenonTime", "result"],
                "dataArray": rows,
            }
        ],
    )
    assert links.status_code == 201
    answer = links.json()
    assert answer[0] == first.headers["location"]
    assert (
        answer[1].startswith(f"{str(http.base_url).rstrip('/')}/Observations(")
        and answer[4] == answer[1]
    )
    assert answer[2:4] == ["error", "error"]
    assert stored(store, datastream) == 2


def test_observations_are_never_changed(http: httpx.Client, store: str) -> None:
    datastream = speed_datastream(store)
    created = http.post(f"/Datastreams({datastream})/Observations", json={"result": 7})
    assert created.status_code == 201
    link = created.headers["location"]
    for method in ("PATCH", "PUT", "DELETE"):
        answer = http.request(method, link, json={"result": 8})
        problem(answer, 405, None)
        assert answer.headers["allow"] == "GET"
    assert http.get(link).json()["result"] == 7.0


def test_entities_are_created_updated_and_deleted(http: httpx.Client, store: str) -> None:
    name = unique("gauge")
    thing = http.post(
        "/Things",
        json={
            "name": name,
            "Locations": [
                {"name": "quay", "location": {"type": "Point", "coordinates": [7.425, 43.735]}}
            ],
        },
    )
    assert thing.status_code == 201
    thing_id = thing.json()["@iot.id"]
    assert thing.headers["location"] == f"{str(http.base_url).rstrip('/')}/Things({thing_id})"
    sensor = http.post(
        "/Sensors", json={"name": unique("radar"), "encodingType": "text/html", "metadata": "m"}
    )
    prop = http.post(
        "/ObservedProperties", json={"name": unique("level"), "definition": "urn:level"}
    )
    datastream = http.post(
        f"/Things({thing_id})/Datastreams",
        json={
            "name": f"{name}/level",
            "unitOfMeasurement": {"name": "metre", "symbol": "m", "definition": "ucum"},
            "observationType": MEASUREMENT,
            "Sensor": {"@iot.id": sensor.json()["@iot.id"]},
            "ObservedProperty": {"@iot.id": prop.json()["@iot.id"]},
        },
    )
    assert datastream.status_code == 201, datastream.text
    ds = datastream.json()["@iot.id"]
    # the twin's ingest takes the new datastream at once
    assert http.post(f"/Datastreams({ds})/Observations", json={"result": 1.25}).status_code == 201
    problem(http.post("/Sensors", json={"name": sensor.json()["name"]}), 409, None)
    problem(
        http.post("/Things", json={"name": unique("x"), "Datastreams": [{"name": "d"}]}),
        400,
        "Datastreams[0].unitOfMeasurement",
    )
    moved = http.patch(f"/Things({thing_id})", json={"Locations": [{"name": "new"}]})
    problem(moved, 400, "Locations")
    updated = http.patch(
        f"/Datastreams({ds})", json={"description": "at the quay", "properties": {"datum": "NGM"}}
    )
    assert updated.status_code == 200 and updated.json()["properties"] == {"datum": "NGM"}
    replaced = http.put(
        f"/Sensors({sensor.json()['@iot.id']})", json={"name": sensor.json()["name"]}
    )
    assert replaced.status_code == 200 and replaced.json()["metadata"] == ""
    problem(http.post(f"/Things({thing_id})", json={}), 405, None)
    assert http.delete(f"/Things({thing_id})").status_code == 200
    problem(http.get(f"/Datastreams({ds})"), 404, "path")
    assert stored(store, ds) == 0


def test_expanding_400_datastreams_agrees_with_the_latest_state(
    http: httpx.Client, store: str
) -> None:
    prefix = unique("loop")
    ids = [
        registry.register(
            f"{prefix}-{n}/flow", thing=f"{prefix}-{n}", observed_property="flow", url=store
        )
        for n in range(400)
    ]
    body = [
        {
            "Datastream": {"@iot.id": ident},
            "components": ["phenomenonTime", "result"],
            "dataArray": [
                [iso(NOW - timedelta(seconds=(n * 13 + k * 37) % 900)), float(n + k)]
                for k in range(3)
            ],
        }
        for n, ident in enumerate(ids)
    ]
    links = http.post("/CreateObservations", json=body).json()
    assert len(links) == 1200 and "error" not in links
    page = http.get(
        "/Datastreams",
        params={
            "$filter": f"startswith(name, '{prefix}-')",
            "$top": "1000",
            "$expand": "Observations($top=1;$orderby=phenomenonTime desc)",
        },
    ).json()
    assert len(page["value"]) == 400 and "@iot.nextLink" not in page
    newest = {
        d["@iot.id"]: (d["Observations"][0]["@iot.id"], d["Observations"][0]["result"])
        for d in page["value"]
    }
    state = {r["datastream_id"]: (r["observation_id"], r["result"]) for r in latest(ids, url=store)}
    assert newest == state
    # and per datastream, as FROST-Server's clients ask it one by one
    for ident in ids[:5]:
        one = http.get(
            f"/Datastreams({ident})/Observations",
            params={"$top": "1", "$orderby": "phenomenonTime desc"},
        ).json()["value"][0]
        assert (one["@iot.id"], one["result"]) == state[ident]


def test_the_openapi_document_lists_the_entity_sets(http: httpx.Client, server: str) -> None:
    doc = httpx.get(server.removesuffix("/v1.1") + "/api", timeout=60).json()
    paths: dict[str, Any] = doc["paths"]
    assert "get" in paths["/v1.1/Things"] and "post" in paths["/v1.1/Things"]
    assert "post" in paths["/v1.1/CreateObservations"]
    assert "post" in paths["/v1.1/Datastreams({datastream_id})/Observations"]
    names = {p["name"] for p in paths["/v1.1/Observations"]["get"]["parameters"]}
    assert names >= {"$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter"}


def test_a_change_of_what_is_not_an_entity_is_405_whatever_the_body(http: httpx.Client) -> None:
    for method in ("PUT", "PATCH"):
        for body in (b"", b"{not json", b"{}"):
            answer = http.request(method, "/Things", content=body)
            problem(answer, 405, None)
            assert answer.headers["allow"] == "GET, POST"
    for method in ("GET", "PUT", "DELETE"):
        answer = http.request(method, "/CreateObservations")
        problem(answer, 405, None)
        assert answer.headers["allow"] == "POST"
