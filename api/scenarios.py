"""What-if scenarios over HTTP: ``?scenario=`` on every request, and the scenarios themselves.

Any request may name a scenario (``?scenario=NAME``; ``base`` or nothing is the twin itself).
:class:`ScenarioScope`, a pure-ASGI middleware inside the access guard, reads the scenario
(reading one is guarded: :data:`layers.scenarios.RESOURCE`) and answers the whole request in it
(:func:`layers.scenarios.using`); the parameter stays in the query, so the links the routes
write (``self``, ``next``) keep it (:func:`api.parameters.known_parameters` accepts it on
every route):
features, tiles, one-map answers, routes, nearest units, service areas, coverage, utility
traces and incident impact all answer as if the overlay were the city. A request that would
write the base (an edit of a collection, a closure, a flood, a rule) is refused with a
scenario named: a scenario is edited through ``/scenarios/{name}/edits`` only.

The scenarios: ``GET/POST /scenarios``, ``GET/PATCH/DELETE /scenarios/{name}``, its edits
``GET /scenarios/{name}/edits``, ``PUT`` / ``DELETE /scenarios/{name}/edits/{layer}/{id}``
(add or change / retire a feature in it) and ``POST .../undo``; its figures
``GET /scenarios/{name}/figures`` and ``GET /scenarios/compare?a=&b=``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from api.editing import json_body
from api.errors import problem, problem_responses, status_title
from api.parameters import known_parameters
from layers import overlay
from layers import scenarios as store
from layers.errors import AccessError, ParameterError
from layers.queries import as_of
from twin.city import City
from twin.scenarios import figures as scenario_figures

#: Requests other than GET/HEAD that only read, and so may be answered in a scenario.
READS = re.compile(
    r"^/(incidents/impact|onemap/(within|along)|rasters/[^/]+/zonal|routing/matrix"
    r"|utilities/.+)$"
)
#: Query parameters whose moment a scenario's features are read at (tiles', one-map's ``at``;
#: features' ``datetime``, an instant or the start of an interval).
MOMENTS = ("at", "datetime")


def _moment(pairs: list[tuple[str, str]]) -> datetime | None:
    """Return the moment a request reads at, if it names one that parses (routes check it)."""
    for name, value in pairs:
        if name in MOMENTS and value:
            start = value.split("/")[0]
            if start in ("", ".."):
                continue
            try:
                return as_of(start)
            except ValueError:
                return None
    return None


class ScenarioScope:
    """Answer a request in the scenario its ``scenario`` query parameter names.

    Parameters
    ----------
    app
        The application inside.
    url
        Database URL.
    """

    def __init__(self, app: ASGIApp, url: str):
        self.app = app
        self.url = url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (ASGI), in the scenario it names if it names one."""
        if scope["type"] != "http" or not scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        # parsed as the routes parse it: a key written %73cenario is the same parameter
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        names = [value for key, value in pairs if key == "scenario"]
        if not names:
            await self.app(scope, receive, send)
            return
        if len(set(names)) > 1:
            await _answer(scope, receive, send, 400, "scenario: give one scenario", "Bad request")
            return
        name = names[0]
        path = scope.get("path", "")
        writes = scope["method"] not in ("GET", "HEAD", "OPTIONS") and not READS.match(path)
        if name in ("", "base"):
            await self.app(scope, receive, send)
            return
        if writes and not path.startswith("/scenarios"):
            await _answer(
                scope,
                receive,
                send,
                400,
                f"scenario: {scope['method']} {path} would change the base twin, not scenario "
                f"{name!r}; edit the scenario with PUT /scenarios/{name}/edits/{{layer}}/{{id}}",
                "Bad request",
            )
            return
        try:
            # under the caller's grant (copied into the thread): reading a scenario is guarded
            found = await run_in_threadpool(store.get, name, url=self.url)
        except store.ScenarioNotFoundError as exc:
            await _answer(scope, receive, send, 404, str(exc), "Not found")
            return
        except AccessError as exc:
            await _answer(scope, receive, send, exc.status, str(exc), status_title(exc.status))
            return
        # the parameter stays in the query: the routes' links (self, next) keep the scenario
        with overlay.entered(found.overlay(_moment(pairs))):
            await self.app(scope, receive, send)


async def _answer(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, title: str
) -> None:
    await problem(status, title, detail, parameter="scenario")(scope, receive, send)


class ScenarioIn(BaseModel):
    """A new scenario."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A slug: lower-case letters, digits, '-' and '_'")
    title: str = ""
    description: str = ""
    author: str | None = Field(default=None, description="Who made it; the caller by default")
    status: str = Field(default="draft", description="draft, active or archived")
    base_at: str | None = Field(
        default=None, description="RFC 3339 moment of the twin it is built on; the live twin"
    )
    settings: dict[str, Any] | None = Field(
        default=None, description="flood {raster, threshold_m}, broken [{layer, id}], signal_plan"
    )


class ScenarioChange(BaseModel):
    """A change of a scenario's text, status or settings (what is absent is kept)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    description: str | None = None
    status: str | None = None
    settings: dict[str, Any] | None = None


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='The scenario\'s ETag ("r<revision>") the change was made from: refused '
        "with 412 if it has changed since",
    ),
]


def etag(scenario: store.Scenario) -> str:
    """Return a scenario's ETag: its revision, which grows with every change."""
    return f'"r{scenario.revision}"'


def _revision(value: str | None) -> int | None:
    """Parse ``If-Match`` (``"r<revision>"``; ``*``: any), refusing another form (400)."""
    if value is None or value.strip() == "*":
        return None
    match = re.fullmatch(r'\s*(?:W/)?"r(\d{1,18})"\s*', value)
    if match is None:
        raise ParameterError(
            f'If-Match: {value!r} is not a scenario\'s ETag ("r<revision>")',
            parameter="If-Match",
        )
    return int(match.group(1))


def _named(value: str, parameter: str) -> str | None:
    """Return a scenario named by a query parameter (None: base), refusing an empty one."""
    if not value.strip():
        raise ParameterError(f"{parameter}: name a scenario, or base", parameter=parameter)
    return None if value == "base" else value


MinutesQuery = Annotated[str, Query(description="Time limits, minutes, comma-separated")]
KindsQuery = Annotated[str, Query(description="Resource kinds reached from, comma-separated")]
ProfileQuery = Annotated[str, Query(description="Routing profile: emergency or car")]


def _minutes(value: str) -> list[float]:
    """Parse ``4,8,12`` (the figures check the range), refusing what is not numbers."""
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ParameterError(
            f"minutes: {value!r} is not comma-separated numbers", parameter="minutes"
        ) from None


def _kinds(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _links(request: Request, scenario: store.Scenario) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    here = f"{base}/scenarios/{scenario.name}"
    return {
        **scenario.to_json(),
        "links": [
            {"rel": "self", "href": here, "type": "application/json"},
            {"rel": "edits", "href": f"{here}/edits", "type": "application/json"},
            {"rel": "figures", "href": f"{here}/figures", "type": "application/json"},
            {
                "rel": "items",
                "href": f"{base}/collections/{{collectionId}}/items?scenario={scenario.name}",
                "templated": True,
            },
            {
                "rel": "tiles",
                "href": f"{base}/map/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}"
                f"?scenario={scenario.name}",
                "templated": True,
            },
        ],
    }


def _edited(edit: store.ScenarioEdit) -> JSONResponse:
    """Answer an edit: what was stored, with the scenario's new ETag."""
    return JSONResponse(_edit_json(edit), headers={"ETag": f'"r{edit.revision}"'})


def _edit_json(edit: store.ScenarioEdit) -> dict[str, Any]:
    return {
        "scenario": edit.scenario,
        "layer": edit.layer,
        "id": edit.feature_id,
        "op": edit.op,
        "revision": edit.revision,
        "made_at": edit.made_at.isoformat(),
    }


def install(app: FastAPI, url: str) -> None:
    """Put the ``scenario`` parameter's middleware in and map the scenarios' errors.

    Call before the access guard is installed (a middleware added earlier runs inside it: the
    caller's grant is in force when the scenario is read).

    Parameters
    ----------
    app
        The application.
    url
        Database URL.
    """
    app.add_middleware(ScenarioScope, url=url)

    @app.exception_handler(store.ScenarioNotFoundError)
    async def _unknown(request: Request, exc: store.ScenarioNotFoundError) -> JSONResponse:
        return problem(404, "Not found", str(exc), parameter=exc.parameter)

    @app.exception_handler(store.ScenarioExistsError)
    async def _taken(request: Request, exc: store.ScenarioExistsError) -> JSONResponse:
        return problem(409, "Conflict", str(exc), parameter=exc.parameter)

    @app.exception_handler(store.ScenarioConflictError)
    async def _conflict(request: Request, exc: store.ScenarioConflictError) -> JSONResponse:
        return problem(409, "Conflict", str(exc), parameter=exc.parameter)

    @app.exception_handler(store.ScenarioChangedError)
    async def _changed(request: Request, exc: store.ScenarioChangedError) -> JSONResponse:
        answer = problem(412, "Precondition failed", str(exc), parameter=exc.parameter)
        answer.headers["ETag"] = f'"r{exc.revision}"'
        return answer


def routes(city: City) -> APIRouter:
    """Build the scenario endpoints.

    Parameters
    ----------
    city
        The city (its router and utilities answer in a scenario too).

    Returns
    -------
    fastapi.APIRouter
        ``/scenarios`` and below.
    """
    url = city.url
    router = APIRouter(
        prefix="/scenarios", tags=["scenarios"], dependencies=[Depends(known_parameters)]
    )
    refusals = problem_responses(400, 401, 404)

    @router.get("", summary="Every scenario")
    def list_scenarios(request: Request) -> dict[str, Any]:
        found = store.list_scenarios(url=url)
        return {"scenarios": [_links(request, s) for s in found], "numberReturned": len(found)}

    @router.post(
        "",
        status_code=201,
        summary="Make a scenario",
        responses=problem_responses(400, 401, 403, 409),
    )
    def create(request: Request, body: ScenarioIn, response: Response) -> dict[str, Any]:
        made = store.create(
            body.name,
            title=body.title,
            description=body.description,
            author=body.author or "",
            status=body.status,
            base_at=body.base_at,
            settings=body.settings,
            url=url,
        )
        response.headers["Location"] = f"{str(request.base_url).rstrip('/')}/scenarios/{made.name}"
        response.headers["ETag"] = etag(made)
        return _links(request, made)

    # before /{name}: "compare" is not a scenario's name (layers.scenarios.RESERVED)
    @router.get(
        "/compare",
        summary="Two states' figures side by side, their differences and the features that differ",
        responses=refusals,
    )
    def compare(
        b: Annotated[str, Query(description="A scenario, or base")],
        a: Annotated[str, Query(description="A scenario, or base (the default)")] = "base",
        minutes: MinutesQuery = "4,8,12",
        kinds: KindsQuery = "fire_station,hospital",
        profile: ProfileQuery = "emergency",
    ) -> dict[str, Any]:
        first, second = _named(a, "a"), _named(b, "b")
        for name, parameter in ((first, "a"), (second, "b")):
            if name is not None:
                try:
                    store.get(name, url=url)
                except store.ScenarioNotFoundError as exc:
                    exc.parameter = parameter
                    raise
        return scenario_figures.compare(
            city,
            first,
            second,
            minutes=_minutes(minutes),
            kinds=_kinds(kinds),
            profile=profile,
        ).to_json()

    @router.get("/{name}", summary="One scenario", responses=refusals)
    def get(request: Request, name: str, response: Response) -> dict[str, Any]:
        found = store.get(name, url=url)
        response.headers["ETag"] = etag(found)
        return _links(request, found)

    @router.patch(
        "/{name}",
        summary="Change a scenario's text, status or settings",
        responses=problem_responses(400, 401, 403, 404, 409, 412),
    )
    def update(
        request: Request,
        name: str,
        body: ScenarioChange,
        response: Response,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        changed = store.update(
            name,
            title=body.title,
            description=body.description,
            status=body.status,
            settings=body.settings,
            if_revision=_revision(if_match),
            url=url,
        )
        response.headers["ETag"] = etag(changed)
        return _links(request, changed)

    @router.delete(
        "/{name}",
        status_code=204,
        summary="Delete a scenario and its edits",
        responses=problem_responses(401, 403, 404, 409),
    )
    def delete(name: str) -> Response:
        store.delete(name, url=url)
        return Response(status_code=204)

    @router.get("/{name}/edits", summary="A scenario's edits", responses=refusals)
    def edits(
        name: str, history: bool = Query(False, description="Also edits since changed or undone")
    ) -> dict[str, Any]:
        frame = store.edits(name, history=history, url=url)
        rows = json.loads(frame.to_json(orient="records", date_format="iso"))
        return {"scenario": name, "edits": rows, "numberReturned": len(rows)}

    written = problem_responses(400, 401, 403, 404, 409, 412)

    @router.put(
        "/{name}/edits/{layer}/{featureId:path}",
        summary="Add or change a feature in a scenario (a GeoJSON Feature)",
        responses=written,
    )
    async def put(
        request: Request, name: str, layer: str, featureId: str, if_match: IfMatch = None
    ) -> JSONResponse:
        body = await json_body(request)
        given = body.get("id")
        if given is not None and str(given) != featureId:
            raise ParameterError(
                f"id: the body's id {given!r} is not the path's {featureId!r}", parameter="id"
            )
        revision = _revision(if_match)

        def write() -> store.ScenarioEdit:
            feature = {**body, "id": featureId}
            return store.put_feature(name, layer, feature, if_revision=revision, url=url)

        return _edited(await run_in_threadpool(write))

    @router.delete(
        "/{name}/edits/{layer}/{featureId:path}",
        summary="Retire a feature in a scenario (the base keeps it)",
        responses=written,
    )
    def retire(name: str, layer: str, featureId: str, if_match: IfMatch = None) -> JSONResponse:
        return _edited(
            store.retire_feature(name, layer, featureId, if_revision=_revision(if_match), url=url)
        )

    @router.post(
        "/{name}/undo/{layer}/{featureId:path}",
        summary="Drop a scenario's edit of a feature: the base's shows again",
        responses=written,
    )
    def undo(name: str, layer: str, featureId: str, if_match: IfMatch = None) -> JSONResponse:
        return _edited(
            store.drop_edit(name, layer, featureId, if_revision=_revision(if_match), url=url)
        )

    @router.get(
        "/{name}/figures",
        summary="A scenario's figures: reach, response times, roads closed, customers out",
        responses=refusals,
    )
    def figures(
        name: str,
        minutes: MinutesQuery = "4,8,12",
        kinds: KindsQuery = "fire_station,hospital",
        profile: ProfileQuery = "emergency",
        signals: Annotated[
            bool,
            Query(
                description="Also SUMO's time loss under the scenario's signal plan (two SUMO "
                "runs on a random demand: seconds, not milliseconds)"
            ),
        ] = False,
    ) -> dict[str, Any]:
        return scenario_figures.figures(
            city,
            scenario=name,
            minutes=_minutes(minutes),
            kinds=_kinds(kinds),
            profile=profile,
            signals=signals,
        ).to_json()

    return router
