"""OGC SensorThings API v1.1 (OGC 18-088) over HTTP, under ``/v1.1``.

The service root document lists the entity sets and the conformance classes (with the MQTT
extension's broker when MQTT is on). ``GET`` reads entity sets, entities (``/Things(1)``),
navigation (``/Things(1)/Datastreams``, ``/Datastreams(3)/Thing``), properties
(``/Things(1)/name``, ``.../name/$value``) and links (``.../$ref``) with the query options
of :mod:`layers.sensorthings`. ``POST`` creates entities (deep insert), ``PATCH`` (a merge, or a
JSON Patch, RFC 6902, as frost-sta-client sends), ``PUT`` and ``DELETE`` change them.

Observations come in through the twin's one ingest path, ``twin.live.feed.Feed.ingest``:
``POST /v1.1/Observations``, ``POST /v1.1/Datastreams(n)/Observations`` and
``POST /v1.1/CreateObservations`` (the dataArray action, 18-088 section 14.4). A refused reading
is counted by reason and answered 400 naming the field; nothing of it is stored. A reading
already stored (same datastream and phenomenonTime) is stored once: posting it again answers
200 with the stored Observation's ``Location``, and 409 if the result differs. (FROST-Server
stores both copies; the standard says nothing on duplicates.) Observations are never changed:
``PATCH``, ``PUT`` and ``DELETE`` of one answer 405.

Errors are problem+json (RFC 7807): 400 naming the option or field, 404 for what a path names
and does not exist, 409 for a conflict, 501 for a query option not implemented.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import jsonpatch
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from api.errors import NotFoundError, ProblemError, problem
from layers import sensorthings as sta
from layers.errors import ParameterError
from layers.observations import (
    Reading,
    ReadingError,
    StoreReport,
    reading_from_json,
    readings_from_data_array,
)
from layers.settings import get_settings
from twin.live import registry
from twin.live.feed import Feed

VERSION = "v1.1"
_SPEC = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
#: Conformance classes of OGC 18-088 this service implements.
CONFORMANCE = [
    _SPEC + "datamodel",
    _SPEC + "resource-path/resource-path-to-entities",
    _SPEC + "request-data",
    _SPEC + "create-update-delete",
    _SPEC + "data-array/data-array",
]
MQTT_CREATE = _SPEC + "create-observations-via-mqtt/observations-creation"
MQTT_RECEIVE = _SPEC + "receive-updates-via-mqtt/receive-updates"

#: The field a refusal reason is about (layers.observations counts refusals by reason).
_REASON_FIELD = {
    "unknown datastream": "Datastream",
    "wrong type": "result",
    "not finite": "result",
    "no result": "result",
    "in the future": "phenomenonTime",
    "past retention": "phenomenonTime",
    "bad time": "phenomenonTime",
    "bad parameters": "parameters",
    "not an observation": "body",
}
_OPTION_DOCS = {
    "$top": f"Entities per page (default {sta.DEFAULT_TOP}, at most {sta.MAX_TOP})",
    "$skip": "Entities to skip",
    "$count": "true: give @iot.count, the number matching $filter",
    "$orderby": "Comma-separated expressions, each asc or desc (phenomenonTime desc)",
    "$select": "Comma-separated properties to return",
    "$expand": "Navigation properties to include, with options: Datastreams($top=1;$expand=...)",
    "$filter": "OData expression: Datastream/id eq 3 and phenomenonTime ge 2026-01-01T00:00:00Z",
}

T = TypeVar("T")


class ConflictError(ProblemError):
    """A write that conflicts with what is stored."""

    status = 409
    title = "Conflict"


class OptionNotImplementedError(ProblemError):
    """A query option the service does not implement (OGC 18-088 req. request-data)."""

    status = 501
    title = "Not implemented"


def routes(
    url: str,
    feed: Feed,
    *,
    mqtt_url: str | None = None,
    topic_prefix: str | None = None,
) -> APIRouter:
    """Build the SensorThings API over a store, ingesting observations through ``feed``.

    Parameters
    ----------
    url
        Database URL.
    feed
        The ingest path observations take (store, republish, live state).
    mqtt_url
        The MQTT broker the service root advertises; the settings' by default, none if empty.
    topic_prefix
        The prefix of the MQTT topics; the settings' by default.

    Returns
    -------
    fastapi.APIRouter
        The routes under ``/v1.1``.
    """
    settings = get_settings()
    broker = settings.mqtt_url if mqtt_url is None else mqtt_url
    prefix = settings.live_topic_prefix if topic_prefix is None else topic_prefix
    router = APIRouter(prefix=f"/{VERSION}", tags=["sensorthings"])

    def base(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/{VERSION}"

    @router.get("", summary="SensorThings service root: entity sets and conformance")
    def root(request: Request) -> dict[str, Any]:
        conformance = list(CONFORMANCE)
        server: dict[str, Any] = {}
        if broker:
            conformance += [MQTT_CREATE, MQTT_RECEIVE]
            endpoint = {"endpoints": [broker], "topicPrefix": prefix}
            server = {MQTT_CREATE: endpoint, MQTT_RECEIVE: endpoint}
        return {
            "value": sta.service_document(base(request)),
            "serverSettings": {"conformance": conformance, **server},
        }

    router.add_api_route("/", root, methods=["GET"], include_in_schema=False)

    for name in sta.ENTITIES:
        _entity_set_routes(router, name, url, feed, base)

    @router.post(
        "/CreateObservations",
        summary="Create observations from dataArrays (OGC 18-088 14.4), through the ingest",
        status_code=201,
        openapi_extra=_body_doc("A list of {Datastream, components, dataArray}"),
    )
    async def create_observations(request: Request) -> JSONResponse:
        body = await _json(request)
        links = await _work(_data_array, body, feed, base(request), url)
        return JSONResponse(links, status_code=201)

    @router.post(
        "/Datastreams({datastream_id})/Observations",
        summary="Create an Observation of a Datastream, through the ingest",
        status_code=201,
        openapi_extra=_body_doc("An Observation: phenomenonTime, result, ..."),
    )
    async def post_datastream_observation(request: Request, datastream_id: str) -> Response:
        if not datastream_id.isdigit():
            raise NotFoundError(f"no Datastream {datastream_id[:40]!r}", parameter="datastream_id")
        body = await _json(request)
        return await _work(_post_observation, body, int(datastream_id), feed, base(request), url)

    @router.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
        include_in_schema=False,
    )
    async def resource(request: Request, path: str) -> Response:
        method = request.method
        if path == "CreateObservations":  # an action: POST only (served above)
            return _not_allowed("CreateObservations is an action: POST a dataArray", "POST")
        if method == "GET":
            return await _work(_get, path, request, base(request), url)
        if method == "POST":
            return await _post(path, request, feed, base(request), url)
        # the body is read once the path is known to name an entity it may change (a change
        # of an entity set is a 405 whatever the body)
        body = await request.body() if method in ("PATCH", "PUT") else None
        patch = "json-patch" in request.headers.get("content-type", "")
        return await _work(_change, method, path, body, patch, base(request), url)

    return router


def _entity_set_routes(
    router: APIRouter, name: str, url: str, feed: Feed, base: Callable[[Request], str]
) -> None:
    """Document and serve ``GET`` and ``POST`` of one entity set."""
    singular = sta.ENTITIES[name].singular

    async def get_set(
        request: Request,
        top: str | None = Query(None, alias="$top", description=_OPTION_DOCS["$top"]),
        skip: str | None = Query(None, alias="$skip", description=_OPTION_DOCS["$skip"]),
        count: str | None = Query(None, alias="$count", description=_OPTION_DOCS["$count"]),
        orderby: str | None = Query(None, alias="$orderby", description=_OPTION_DOCS["$orderby"]),
        select: str | None = Query(None, alias="$select", description=_OPTION_DOCS["$select"]),
        expand: str | None = Query(None, alias="$expand", description=_OPTION_DOCS["$expand"]),
        filter_: str | None = Query(None, alias="$filter", description=_OPTION_DOCS["$filter"]),
    ) -> Response:
        return await _work(_get, name, request, base(request), url)

    async def post_set(request: Request) -> Response:
        return await _post(name, request, feed, base(request), url)

    router.add_api_route(
        f"/{name}",
        get_set,
        methods=["GET"],
        name=f"sensorthings_get_{name}",
        summary=f"{name}: the collection, with SensorThings query options",
    )
    router.add_api_route(
        f"/{name}",
        post_set,
        methods=["POST"],
        name=f"sensorthings_post_{name}",
        status_code=201,
        summary=(
            "Create an Observation through the ingest"
            if name == "Observations"
            else f"Create a {singular} (deep insert of related entities)"
        ),
        openapi_extra=_body_doc(f"A {singular} in SensorThings' JSON encoding"),
    )


def _body_doc(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {}}},
        }
    }


async def _json(request: Request) -> Any:
    return _parse_json(await request.body())


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParameterError(f"the body is not JSON: {exc}", parameter="body") from None


async def _work(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work in the thread pool, its errors as problem+json."""
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except sta.EntityNotFoundError as exc:
        raise NotFoundError(str(exc), parameter="path") from None
    except sta.EntityConflictError as exc:
        raise ConflictError(str(exc)) from None
    except sta.UnsupportedOptionError as exc:
        raise OptionNotImplementedError(str(exc), parameter=exc.parameter) from None


def _not_allowed(detail: str, allow: str) -> Response:
    response = problem(405, "Method not allowed", detail)
    response.headers["Allow"] = allow
    return response


# --------------------------------------------------------------------------------------------
# reading


def _get(path: str, request: Request, base: str, url: str) -> Response:
    target = sta.resolve(path, url=url)
    if target.property:
        value = sta.read_property(target, url=url)
        if value is None:
            return Response(status_code=204)
        if target.value:
            if isinstance(value, dict | list):
                return JSONResponse(value)
            return PlainTextResponse(value if isinstance(value, str) else json.dumps(value))
        return JSONResponse({target.property[-1]: value})
    query = sta.parse_query(target.entity.name, request.query_params.multi_items())
    if target.ref:
        query.select, query.expand = ["@iot.selfLink"], {}
    page = sta.read(target, query, base=base, url=url)
    if target.id is not None:
        if not page.value:
            raise sta.EntityNotFoundError(f"no {target.entity.singular} {target.id}")
        return JSONResponse(page.value[0])
    body: dict[str, Any] = {}
    if page.count is not None:
        body["@iot.count"] = page.count
    if page.more:
        here = str(request.url).split("?", 1)[0]
        body["@iot.nextLink"] = f"{here}?{query.query_string(skip=query.skip + query.top)}"
    body["value"] = page.value
    return JSONResponse(body)


# --------------------------------------------------------------------------------------------
# writing


async def _post(path: str, request: Request, feed: Feed, base: str, url: str) -> Response:
    if path.strip("/") == "CreateObservations":
        links = await _work(_data_array, await _json(request), feed, base, url)
        return JSONResponse(links, status_code=201)
    target = await _work(sta.resolve, path, url=url)
    if target.id is not None or target.property or target.ref:
        return _not_allowed(
            "POST creates entities in a collection; this path is one entity",
            "GET, PATCH, PUT, DELETE",
        )
    body = await _json(request)
    if target.entity.name == "Observations":
        datastream = None
        if target.parent is not None and target.parent[0] == "Datastreams":
            datastream = target.parent[2]
        return await _work(_post_observation, body, datastream, feed, base, url)
    return await _work(_create, target, body, feed, base, url)


def _create(target: sta.Target, body: Any, feed: Feed, base: str, url: str) -> Response:
    entity = target.entity
    created = sta.create(entity.name, body, parent=target.parent, url=url)
    registry.forget(url)
    if created.readings:
        report = feed.ingest(created.readings)
        if report.refused_by_reason:
            sta.delete(entity.name, created.id, url=url)  # all or nothing, as deep insert says
            registry.forget(url)
            refusal = report.refused[0] if report.refused else None
            detail = refusal.message if refusal else "an observation was refused"
            field = _REASON_FIELD.get(refusal.reason, "body") if refusal else "body"
            raise ParameterError(
                f"Observations[{refusal.index if refusal else 0}]: {detail}; nothing was created",
                parameter=f"Observations.{field}",
            )
    entity_json = sta.representation(entity.name, created.id, base=base, url=url)
    return JSONResponse(
        entity_json, status_code=201, headers={"Location": entity_json["@iot.selfLink"]}
    )


def _post_observation(
    body: Any, datastream_id: int | None, feed: Feed, base: str, url: str
) -> Response:
    try:
        reading = reading_from_json(body, datastream_id=datastream_id)
    except ReadingError as exc:
        feed.ingest([exc])  # counted with the refusals, nothing stored
        raise ParameterError(str(exc), parameter=exc.parameter) from None
    report = feed.ingest([reading])
    if report.stored:
        stored = sta.observation_json(report.stored[0], base=base)
        return JSONResponse(stored, status_code=201, headers={"Location": stored["@iot.selfLink"]})
    if report.refused:
        refusal = report.refused[0]
        if refusal.reason == "unknown datastream" and datastream_id is not None:
            raise sta.EntityNotFoundError(refusal.message)
        raise ParameterError(refusal.message, parameter=_REASON_FIELD.get(refusal.reason, "body"))
    return _duplicate(reading, base, url)


def _duplicate(reading: Reading, base: str, url: str) -> Response:
    """Answer a reading the store holds already: 200 if it is the same, 409 if not."""
    key = (reading.datastream_id, reading.phenomenon_time)
    found = sta.stored_at([key], url=url).get(key)
    if found is None:  # pragma: no cover - a duplicate is stored, unless deleted meanwhile
        raise ConflictError("the observation was a duplicate of one no longer stored")
    observation_id, result = found
    link = f"{base}/Observations({observation_id})"
    if not sta.same_result(result, reading.result):
        raise ConflictError(
            f"Datastream {reading.datastream_id} has an observation at "
            f"{reading.phenomenon_time.isoformat()} already, with result {result!r}: {link}; "
            "observations are never changed",
            parameter="phenomenonTime",
        )
    entity_json = sta.representation("Observations", observation_id, base=base, url=url)
    return JSONResponse(entity_json, status_code=200, headers={"Location": link})


def _data_array(body: Any, feed: Feed, base: str, url: str) -> list[str]:
    """CreateObservations: a selfLink per row, or "error" where it was refused (14.4)."""
    try:
        items = readings_from_data_array(body)
    except ReadingError as exc:
        raise ParameterError(str(exc), parameter=exc.parameter) from None
    report: StoreReport = feed.ingest(items)
    stored = {(o.datastream_id, o.phenomenon_time): (o.id, o.result) for o in report.stored}
    pending = [
        (r.datastream_id, r.phenomenon_time)
        for r in items
        if isinstance(r, Reading) and (r.datastream_id, r.phenomenon_time) not in stored
    ]
    found = {**sta.stored_at(pending, url=url), **stored} if pending else stored
    refused = {r.index for r in report.refused}
    links = []
    for index, item in enumerate(items):
        if isinstance(item, ReadingError) or index in refused:
            links.append("error")
            continue
        match = found.get((item.datastream_id, item.phenomenon_time))
        if match is not None and sta.same_result(match[1], item.result):
            links.append(f"{base}/Observations({match[0]})")
        else:  # refused beyond those listed, or a duplicate with another result
            links.append("error")
    return links


def _change(
    method: str, path: str, raw: bytes | None, patch: bool, base: str, url: str
) -> Response:
    target = sta.resolve(path, url=url)
    if target.id is None or target.property or target.ref:
        return _not_allowed(f"{method} changes one entity; this path is not one", "GET, POST")
    name = target.entity.name
    if name == "Observations":
        return _not_allowed(
            "observations are never changed or deleted: the store keeps what it received",
            "GET",
        )
    body: Any = None if raw is None else _parse_json(raw)
    if method == "DELETE":
        sta.delete(name, target.id, url=url)
        registry.forget(url)
        return Response(status_code=200)
    if patch:
        document = sta.patchable(name, target.id, url=url)
        try:
            changed = jsonpatch.apply_patch(document, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            raise ParameterError(
                f"the JSON Patch does not apply: {exc}", parameter="body"
            ) from None
        if not isinstance(changed, dict):
            raise ParameterError("the JSON Patch must leave an object", parameter="body")
        body = {
            key: changed.get(key)
            for key in {*document, *changed}
            if document.get(key) != changed.get(key)
        }
    elif method == "PUT" and isinstance(body, dict):
        body = {key: None for key in sta.writable(name)} | body
    sta.update(name, target.id, body, url=url)
    registry.forget(url)
    return JSONResponse(sta.representation(name, target.id, base=base, url=url))
