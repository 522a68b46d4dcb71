"""Signal endpoints: optimise an area or a corridor into a named plan, export it to SUMO.

``POST /signals/plans`` times the signals of an area (``bbox``) or a list of signals (with
``greenwave``: a corridor in that order, common cycle and MAXBAND offsets) by Webster's method
from the approach flows the twin holds, and stores the plan under its name (a new version
when it exists). ``GET /signals/plans/{name}/sumo`` gives it as a SUMO additional file;
``GET /signals/corridor`` plans the emergency green corridor along the fastest route.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, field_validator

from api.errors import NotFoundError, ProblemError
from api.routing import parse_points
from layers import access
from routing.signals import WebsterSettings
from twin.city import City


class Settings(BaseModel):
    """Webster's inputs that may be changed (the twin's defaults otherwise)."""

    min_cycle_s: float = Field(default=40.0, ge=10, le=300)
    max_cycle_s: float = Field(default=120.0, ge=10, le=300)
    min_green_s: float = Field(default=6.0, ge=1, le=120)
    saturation_headway_s: float = Field(default=2.0, gt=0.5, le=10)


class PlanRequest(BaseModel):
    """What to optimise: an area or signals, and the plan's name."""

    name: str = Field(description="Name to store the plan under.")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="min lon, min lat, max lon, max lat"
    )
    signals: list[str] | None = Field(None, description="Signal ids (a corridor's, in order).")
    greenwave: bool = Field(False, description="Coordinate the signals as one corridor.")
    settings: Settings = Field(default_factory=Settings)

    @field_validator("bbox")
    @classmethod
    def _bbox_is_an_area(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is not None:
            minx, miny, maxx, maxy = value
            if not all(math.isfinite(v) for v in value):
                raise ValueError("the corners must be finite numbers")
            if minx > maxx or miny > maxy:
                raise ValueError(
                    "a minimum is above its maximum (min lon, min lat, max lon, max lat)"
                )
        return value


def _record(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    out["valid_from"] = record["valid_from"].isoformat()
    return out


def routes(city: City) -> APIRouter:
    """Build the signal endpoints over a city.

    Parameters
    ----------
    city
        The city whose signals are timed.

    Returns
    -------
    fastapi.APIRouter
        The endpoints, under ``/signals``.
    """
    router = APIRouter(prefix="/signals", tags=["signals"])

    @router.post("/plans", status_code=201, summary="Optimise an area or a corridor: a plan")
    def post_plan(request: PlanRequest) -> dict[str, Any]:
        access.require("signals", "edit")  # a plan retimes the signals
        if request.settings.min_cycle_s > request.settings.max_cycle_s:
            raise ProblemError("min_cycle_s is above max_cycle_s", parameter="settings")
        settings = WebsterSettings(**request.settings.model_dump())
        record = city.optimise_signals(
            request.name,
            bbox=request.bbox,
            signals=request.signals,
            greenwave=request.greenwave,
            settings=settings,
        )
        timed = [str(t.get("signal")) for t in record.get("plan", {}).get("signals", [])]
        access.note("signals", count=len(timed), ids=timed)
        return _record(record)

    @router.get("/plans", summary="The stored plans")
    def get_plans() -> dict[str, Any]:
        plans = city.signal_plans()
        return {"plans": [{**p, "valid_from": p["valid_from"].isoformat()} for p in plans]}

    @router.get("/plans/{name}", summary="A stored plan: per signal cycle, greens, offset")
    def get_plan(name: str) -> dict[str, Any]:
        record = city.signal_plan(name)
        if record is None:
            raise NotFoundError(f"no signal plan named {name!r}", parameter="name")
        return _record(record)

    @router.get(
        "/plans/{name}/sumo",
        summary="A stored plan as a SUMO additional file",
        response_class=Response,
        responses={200: {"content": {"application/xml": {}}}},
    )
    def get_plan_sumo(name: str) -> Response:
        try:
            text = city.signal_plan_sumo(name)
        except KeyError:
            raise NotFoundError(f"no signal plan named {name!r}", parameter="name") from None
        return Response(
            text,
            media_type="application/xml",
            headers={"Content-Disposition": f'attachment; filename="{name}.add.xml"'},
        )

    @router.get("/corridor", summary="Emergency green corridor along the fastest route")
    def get_corridor(
        origin: Annotated[str, Query(alias="from", description="lon,lat")],
        destination: Annotated[str, Query(alias="to", description="lon,lat")],
        depart_s: Annotated[float, Query(ge=0, description="Departure on the plans' clock")] = 0,
    ) -> dict[str, Any]:
        start = parse_points(origin, "from")[0]
        end = parse_points(destination, "to")[0]
        trip, holds = city.green_corridor(start, end, depart_s=depart_s)
        if trip is None:
            return {"reachable": False, "holds": []}
        return {
            "reachable": True,
            "route": trip.to_geojson(),
            "holds": [vars(h) | {"links": list(h.links)} for h in holds],
        }

    return router
