"""What-if scenarios over HTTP: ``?scenario=`` on every request, and the scenarios themselves.

Any request may name a scenario (``?scenario=NAME``; ``base`` or nothing is the twin itself).
:class:`ScenarioScope`, a pure-ASGI middleware inside the access guard, takes the parameter out
of the query string (so the routes, which refuse parameters they do not declare, never see
it), reads the scenario and answers the whole request in it (:func:`layers.scenarios.using`):
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
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from api.editing import json_body
from api.errors import problem, problem_responses
from layers import access, overlay
from layers import scenarios as store
from layers.catalog import LAYERS
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
        if scope["type"] != "http" or b"scenario" not in scope.get("query_string", b""):
            await self.app(scope, receive, send)
            return
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        names = [value for key, value in pairs if key == "scenario"]
        if not names:
            await self.app(scope, receive, send)
            return
        kept = [(key, value) for key, value in pairs if key != "scenario"]
        scope["query_string"] = urlencode(kept).encode("latin-1")
        if len(set(names)) > 1:
            await _answer(scope, receive, send, 400, "scenario: give one scenario", "Bad request")
            return
        name = names[0]
        path = scope.get("path", "")
        writes = scope["method"] not in ("GET", "HEAD") and not READS.match(path)
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
            found = await anyio.to_thread.run_sync(lambda: store.get(name, url=self.url))
        except store.ScenarioNotFoundError as exc:
            await _answer(scope, receive, send, 404, str(exc), "Not found")
            return
        with overlay.entered(found.overlay(_moment(kept))):
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


def _writer() -> str:
    """Return who writes (the caller's name), refusing an anonymous caller who edits nothing.

    A scenario changes nothing of the base, but it is the city's planning record: any
    signed-in user may make and edit scenarios (planners above all), and an anonymous caller
    only where the anonymous role edits some layer.
    """
    grant = access.current()
    if grant is None:
        return ""
    if grant.principal.anonymous:
        if not any(grant.may(layer_id, "edit") for layer_id in LAYERS):
            raise AccessError("sign in to make or edit a scenario", status=401)
        return ""
    return grant.principal.name


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
    router = APIRouter(prefix="/scenarios", tags=["scenarios"])
    refusals = problem_responses(400, 401, 404)

    @router.get("", summary="Every scenario")
    def list_scenarios(request: Request) -> dict[str, Any]:
        found = store.list_scenarios(url=url)
        return {"scenarios": [_links(request, s) for s in found], "numberReturned": len(found)}

    @router.post(
        "", status_code=201, summary="Make a scenario", responses=problem_responses(400, 401, 409)
    )
    def create(request: Request, body: ScenarioIn, response: Response) -> dict[str, Any]:
        author = _writer()
        made = store.create(
            body.name,
            title=body.title,
            description=body.description,
            author=body.author if body.author is not None else author,
            status=body.status,
            base_at=body.base_at,
            settings=body.settings,
            url=url,
        )
        response.headers["Location"] = f"{str(request.base_url).rstrip('/')}/scenarios/{made.name}"
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
        return scenario_figures.compare(
            city,
            a,
            b,
            minutes=_minutes(minutes),
            kinds=_kinds(kinds),
            profile=profile,
        ).to_json()

    @router.get("/{name}", summary="One scenario", responses=refusals)
    def get(request: Request, name: str) -> dict[str, Any]:
        return _links(request, store.get(name, url=url))

    @router.patch("/{name}", summary="Change a scenario's text, status or settings")
    def update(request: Request, name: str, body: ScenarioChange) -> dict[str, Any]:
        _writer()
        changed = store.update(
            name,
            title=body.title,
            description=body.description,
            status=body.status,
            settings=body.settings,
            url=url,
        )
        return _links(request, changed)

    @router.delete("/{name}", status_code=204, summary="Delete a scenario and its edits")
    def delete(name: str) -> Response:
        _writer()
        store.delete(name, url=url)
        return Response(status_code=204)

    @router.get("/{name}/edits", summary="A scenario's edits", responses=refusals)
    def edits(
        name: str, history: bool = Query(False, description="Also edits since changed or undone")
    ) -> dict[str, Any]:
        frame = store.edits(name, history=history, url=url)
        rows = json.loads(frame.to_json(orient="records", date_format="iso"))
        return {"scenario": name, "edits": rows, "numberReturned": len(rows)}

    @router.put(
        "/{name}/edits/{layer}/{featureId:path}",
        summary="Add or change a feature in a scenario (a GeoJSON Feature)",
        responses=refusals,
    )
    async def put(request: Request, name: str, layer: str, featureId: str) -> dict[str, Any]:
        body = await json_body(request)
        given = body.get("id")
        if given is not None and str(given) != featureId:
            raise ParameterError(
                f"id: the body's id {given!r} is not the path's {featureId!r}", parameter="id"
            )

        def write() -> dict[str, Any]:
            author = _writer()
            feature = {**body, "id": featureId}
            return _edit_json(store.put_feature(name, layer, feature, author=author, url=url))

        return await run_in_threadpool(write)

    @router.delete(
        "/{name}/edits/{layer}/{featureId:path}",
        summary="Retire a feature in a scenario (the base keeps it)",
        responses=refusals,
    )
    def retire(name: str, layer: str, featureId: str) -> dict[str, Any]:
        author = _writer()
        return _edit_json(store.retire_feature(name, layer, featureId, author=author, url=url))

    @router.post(
        "/{name}/undo/{layer}/{featureId:path}",
        summary="Drop a scenario's edit of a feature: the base's shows again",
        responses=refusals,
    )
    def undo(name: str, layer: str, featureId: str) -> dict[str, Any]:
        _writer()
        return _edit_json(store.drop_edit(name, layer, featureId, url=url))

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
    ) -> dict[str, Any]:
        return scenario_figures.figures(
            city,
            scenario=name,
            minutes=_minutes(minutes),
            kinds=_kinds(kinds),
            profile=profile,
        ).to_json()

    return router
