"""Pre-plans (预案) and drills (演练) over HTTP.

``GET /preplans`` lists the stored pre-plans, ``GET /preplans/{name}`` shows one (by name or
incident kind), ``POST /preplans/{name}/apply`` applies it at a place (``{"place": [lon, lat]}``)
and answers 201 with the scenario made (``Location: /scenarios/{name}``).
``POST /drills`` starts a drill (a pre-plan and a place, or a scenario a pre-plan made),
``POST /drills/{drill_id}/actions`` logs an action, ``POST /drills/{drill_id}/end`` ends it,
``GET /drills/{drill_id}`` reviews it (each checklist step on time, late, missed or pending) and
``GET /drills`` lists them. Every refusal is a problem+json naming the field: 400 for a bad
value, 404 for an unknown pre-plan, scenario or drill, 409 for a scenario name taken or a drill
that has ended.

Applying a pre-plan writes incidents and closures in a scenario: it needs ``edit`` on both, and
what :mod:`layers.scenarios` asks to make a scenario (its own refusal answers 401/403 too).
Drills are incident command's records: reading them needs ``read`` on ``incidents``, starting,
logging and ending them ``edit``. Who applies a pre-plan, starts a drill or logs an action is
recorded as the signed-in caller; the body's ``author`` counts only for an anonymous caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.errors import NotFoundError, ProblemError, problem_responses
from layers import access
from layers.scenarios import ScenarioExistsError, ScenarioNotFoundError
from twin.city import City
from twin.scenarios import drills, preplans
from twin.scenarios.drills import MAX_ELAPSED_S, DrillEndedError, DrillNotFoundError
from twin.scenarios.preplans import PreplanNotFoundError


class ConflictError(ProblemError):
    """A scenario name taken, or a drill that has ended (409)."""

    status = 409
    title = "Conflict"


class ApplyRequest(BaseModel):
    """Where to apply a pre-plan, and the scenario to make."""

    model_config = ConfigDict(extra="forbid")

    place: Any = Field(
        description="Where: [lon, lat] or a GeoJSON Point (EPSG:4326), inside the city",
        examples=[[7.4246, 43.7384]],
    )
    name: str | None = Field(
        default=None, description="The scenario's name (a slug); generated when omitted"
    )
    title: str | None = Field(default=None, description="The scenario's title")
    author: str = Field(
        default="",
        description="Who applies it: recorded only for an anonymous caller (a signed-in "
        "caller is recorded by name)",
    )


class DrillRequest(BaseModel):
    """A drill to start: a pre-plan and a place, or a scenario a pre-plan made."""

    model_config = ConfigDict(extra="forbid")

    preplan: str | None = Field(default=None, description="A pre-plan's name or incident kind")
    place: Any = Field(default=None, description="With preplan: [lon, lat] or a GeoJSON Point")
    scenario: str | None = Field(default=None, description="Instead: a scenario made by apply")
    title: str = Field(default="", description="What the drill is")
    lead: str = Field(default="", description="Who leads it")
    started_at: str | None = Field(
        default=None,
        description="When it started, for a drill replayed from a log (RFC 3339 with its "
        "offset, not in the future); now by the store's clock when omitted",
    )


class Timed(BaseModel):
    """A drill's record that may name when it happened (a replay) or take the store's clock."""

    model_config = ConfigDict(extra="forbid")

    elapsed_s: float | None = Field(
        default=None,
        ge=0,
        le=MAX_ELAPSED_S,
        allow_inf_nan=False,
        description="When, s after the drill's start (a replay, not later than now); now by "
        "the store's clock",
    )


class ActionRequest(Timed):
    """An action done in a drill."""

    actor: str = Field(description="Who did it (the signed-in caller is recorded as logged_by)")
    step: str | None = Field(default=None, description="The checklist step it does")
    what: str = Field(default="", description="What was done (the step's text by default)")


class EndRequest(Timed):
    """When a drill ends."""


@contextmanager
def _answered() -> Iterator[None]:
    """Answer the refusals of the pre-plan and drill functions as problems naming the field."""
    try:
        yield
    except (PreplanNotFoundError, DrillNotFoundError, ScenarioNotFoundError) as exc:
        raise NotFoundError(str(exc), parameter=exc.parameter) from None
    except (ScenarioExistsError, DrillEndedError) as exc:
        raise ConflictError(str(exc), parameter=exc.parameter) from None


def routes(city: City) -> APIRouter:
    """Build the pre-plan and drill endpoints over a city.

    Parameters
    ----------
    city
        The city (its router computes the dispatch).

    Returns
    -------
    fastapi.APIRouter
        ``/preplans`` and ``/drills``.
    """
    router = APIRouter()
    url = city.url

    @router.get("/preplans", tags=["preplans"], summary="The stored pre-plans (预案)")
    def list_preplans() -> list[dict[str, Any]]:
        return [p.to_json() for p in preplans.list_preplans(url=url)]

    @router.get(
        "/preplans/{name}",
        tags=["preplans"],
        summary="One pre-plan, by name or incident kind",
        responses=problem_responses(400, 404),
    )
    def get_preplan(name: str) -> dict[str, Any]:
        with _answered():
            return preplans.get(name, parameter="name", url=url).to_json()

    @router.post(
        "/preplans/{name}/apply",
        tags=["preplans"],
        status_code=201,
        summary="Apply a pre-plan at a place: the scenario of that incident there",
        responses=problem_responses(400, 404, 409),
    )
    def apply_preplan(name: str, request: ApplyRequest) -> JSONResponse:
        access.require("incidents", "edit")
        access.require("closures", "edit")
        with _answered():
            plan = preplans.get(name, parameter="name", url=url)
            made = preplans.apply(
                plan,
                request.place,
                name=request.name,
                title=request.title,
                author=request.author,
                city=city,
            )
        return JSONResponse(
            made.to_json(), status_code=201, headers={"Location": f"/scenarios/{made.name}"}
        )

    @router.get("/drills", tags=["drills"], summary="The drills (演练), newest first")
    def list_drills() -> list[dict[str, Any]]:
        access.require("incidents")
        return [d.to_json() for d in drills.list_drills(url=url)]

    @router.post(
        "/drills",
        tags=["drills"],
        status_code=201,
        summary="Start a drill now, by the store's clock",
        responses=problem_responses(400, 404, 409),
    )
    def start_drill(request: DrillRequest) -> JSONResponse:
        access.require("incidents", "edit")
        if request.preplan is not None:  # it applies the pre-plan
            access.require("closures", "edit")
        with _answered():
            drill = drills.start(
                request.preplan,
                request.place,
                scenario=request.scenario,
                title=request.title,
                lead=request.lead,
                started_at=request.started_at,
                city=city,
            )
        return JSONResponse(
            drill.to_json(), status_code=201, headers={"Location": f"/drills/{drill.id}"}
        )

    @router.get(
        "/drills/{drill_id}",
        tags=["drills"],
        summary="Review a drill: each checklist step on time, late, missed or pending",
        responses=problem_responses(400, 404),
    )
    def review_drill(drill_id: int) -> dict[str, Any]:
        access.require("incidents")
        with _answered():
            return drills.review(drill_id, url=url).to_json()

    @router.post(
        "/drills/{drill_id}/actions",
        tags=["drills"],
        status_code=201,
        summary="Log an action in a running drill",
        responses=problem_responses(400, 404, 409),
    )
    def record_action(drill_id: int, request: ActionRequest) -> dict[str, Any]:
        access.require("incidents", "edit")
        with _answered():
            action = drills.record(
                drill_id,
                actor=request.actor,
                step=request.step,
                what=request.what,
                elapsed_s=request.elapsed_s,
                url=url,
            )
        return action.to_json()

    @router.post(
        "/drills/{drill_id}/end",
        tags=["drills"],
        summary="End a running drill; answers its review",
        responses=problem_responses(400, 404, 409),
    )
    def end_drill(
        drill_id: int, request: Annotated[EndRequest | None, Body()] = None
    ) -> dict[str, Any]:
        access.require("incidents", "edit")
        with _answered():
            drills.end(drill_id, elapsed_s=None if request is None else request.elapsed_s, url=url)
            return drills.review(drill_id, url=url).to_json()

    return router
