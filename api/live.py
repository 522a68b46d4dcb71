"""The live twin over HTTP: the push stream (Server-Sent Events), latest state, time series.

``GET /live/events`` is an ``EventSource`` stream (WHATWG HTML, "Server-sent events"): one
message per state change, its ``event:`` the change's type (``observation``, ``speed``,
``vehicle``, ``alert``) and its ``data:`` the change as JSON; a comment every
:data:`KEEPALIVE_S` seconds keeps proxies from closing it. Events come from every twin
process on the broker (see :mod:`twin.live.service`). A client too slow to keep up loses the
oldest events, never stalls the others.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.errors import NotFoundError, ProblemError
from layers.errors import ParameterError
from layers.observations import INTERVALS, latest, parse_time, refusals, series
from twin.live import alerts as live_alerts
from twin.live.alerts import AlertStateError, UnknownAlertError
from twin.live.feed import Event
from twin.live.service import LiveService

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE_S = 15.0
#: Events a client's queue holds before the oldest are dropped.
QUEUE_SIZE = 2000
#: Event types a stream can be limited to.
EVENT_TYPES = ("observation", "speed", "vehicle", "alert")


class Hub:
    """Fan events out to every connected stream (each with its own bounded queue)."""

    def __init__(self) -> None:
        self._clients: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()
        self.dropped = 0

    @property
    def clients(self) -> int:
        """Number of connected streams."""
        return len(self._clients)

    def publish(self, events: list[Event]) -> None:
        """Queue events for every stream; safe to call from any thread.

        Parameters
        ----------
        events
            The events.
        """
        for loop, queue in list(self._clients):
            try:
                loop.call_soon_threadsafe(self._put, queue, events)
            except RuntimeError:  # that stream's loop has closed
                self._clients.discard((loop, queue))

    def _put(self, queue: asyncio.Queue[Event], events: list[Event]) -> None:
        for event in events:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    async def stream(self, request: Request, types: frozenset[str]) -> AsyncIterator[str]:
        """Yield Server-Sent Events until the client goes away.

        Parameters
        ----------
        request
            The client's request (to notice it leaving).
        types
            The event types to send.

        Yields
        ------
        str
            SSE messages.
        """
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        entry = (asyncio.get_running_loop(), queue)
        self._clients.add(entry)
        try:
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                kind = str(event.get("type", "message"))
                if kind not in types:
                    continue
                data = json.dumps(event, separators=(",", ":"), default=str)
                yield f"event: {kind}\ndata: {data}\n\n"
        finally:
            self._clients.discard(entry)


class RuleBody(BaseModel):
    """An alert rule as posted (see :func:`twin.live.alerts.add_rule`)."""

    name: str = Field(description="Unique name")
    kind: str = Field(description="threshold, rate or no_data")
    datastream_id: int | None = Field(None, description="The datastream it watches")
    observed_property: str | None = Field(
        None, description="Or every datastream of this observed property"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="The kind's parameters")
    severity: str = Field("warning", description="info, warning or critical")


def _ids(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ParameterError(
            f"{name} must be datastream ids separated by commas", parameter=name
        ) from None
    if not ids or any(i <= 0 for i in ids):
        raise ParameterError(f"{name} must name at least one positive id", parameter=name)
    return ids


def routes(live: LiveService, url: str) -> APIRouter:
    """Build the live routes for one store.

    Parameters
    ----------
    live
        The running live service (its events feed the push stream).
    url
        Database URL.

    Returns
    -------
    fastapi.APIRouter
        ``/live``, ``/live/events``, ``/live/latest``, ``/live/readings``.
    """
    router = APIRouter(prefix="/live", tags=["live"])
    hub = Hub()
    live.listen(hub.publish)

    @router.get("", summary="The live twin's state: broker, bridge counters, refusals")
    def status() -> dict[str, Any]:
        return {
            **live.status(),
            "streams": hub.clients,
            "dropped_events": hub.dropped,
            "refused": refusals(url=url),
        }

    @router.get(
        "/events",
        summary="Push stream of live state changes and alerts (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "An endless stream: `event:` the type, `data:` the change (JSON)",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def events(
        request: Request,
        types: str | None = Query(
            None, description=f"Event types to send, comma-separated: {', '.join(EVENT_TYPES)}"
        ),
    ) -> StreamingResponse:
        wanted = frozenset(EVENT_TYPES)
        if types is not None:
            wanted = frozenset(t.strip() for t in types.split(",") if t.strip())
            unknown = wanted - set(EVENT_TYPES)
            if unknown or not wanted:
                raise ParameterError(
                    f"unknown event types {sorted(unknown)}; types: {', '.join(EVENT_TYPES)}",
                    parameter="types",
                )
        return StreamingResponse(
            hub.stream(request, wanted),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/latest", summary="Latest observation of each datastream (one read)")
    def latest_state(
        datastreams: str | None = Query(
            None, description="Datastream ids, comma-separated; every one when omitted"
        ),
        layer: str | None = Query(None, description="Only the things that are this layer's"),
    ) -> dict[str, Any]:
        rows = latest(_ids(datastreams, "datastreams"), url=url)
        if layer is not None:
            rows = [r for r in rows if r["layer"] == layer]
        return {"observations": rows, "numberReturned": len(rows)}

    @router.get("/readings", summary="A datastream's observations over time, raw or aggregated")
    def readings(
        datastreams: str = Query(..., description="Datastream ids, comma-separated"),
        start: str | None = Query(None, description="ISO 8601; an hour before end by default"),
        end: str | None = Query(None, description="ISO 8601; now by default"),
        interval: str | None = Query(
            None, description=f"Aggregate in bins: {', '.join(INTERVALS)}; raw when omitted"
        ),
    ) -> dict[str, Any]:
        ids = _ids(datastreams, "datastreams") or []
        until = parse_time(end, name="end") if end else datetime.now(UTC)
        since = parse_time(start, name="start") if start else until - timedelta(hours=1)
        rows = series(ids, start=since, end=until, interval=interval, limit=100_001, url=url)
        if len(rows) > 100_000:
            raise ProblemError(
                "more than 100,000 rows: narrow the time range or aggregate with interval",
                status=400,
                parameter="start",
            )
        names: tuple[str, ...]
        if interval:
            names = ("datastream", "time", "count", "mean", "min", "max")
        else:
            names = ("datastream", "time", "result")
        return {
            "interval": interval,
            "start": since,
            "end": until,
            "readings": [dict(zip(names, row, strict=True)) for row in rows],
        }

    def _lifecycle(step: Any, alert_id: int, by: str) -> dict[str, Any]:
        try:
            event = step(alert_id, by=by, url=url)
        except UnknownAlertError as exc:
            raise NotFoundError(str(exc), parameter="alert_id") from None
        except AlertStateError as exc:
            raise ProblemError(str(exc), status=409, parameter="state") from None
        live.publish([event])
        return dict(event)

    @router.get("/alerts", summary="Alerts, newest first (open ones: state=open)")
    def list_alerts(
        state: str | None = Query(
            None, description="raised, acknowledged, resolved, or open (raised or acknowledged)"
        ),
        since: str | None = Query(None, description="ISO 8601: what changed since then"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        found = live_alerts.alerts(state=state, since=since, limit=limit, url=url)
        return {"alerts": found, "numberReturned": len(found)}

    @router.get("/alerts/{alert_id}", summary="One alert, with its asset and impact")
    def get_alert(alert_id: int) -> dict[str, Any]:
        try:
            return live_alerts.get_alert(alert_id, url=url)
        except UnknownAlertError as exc:
            raise NotFoundError(str(exc), parameter="alert_id") from None

    @router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge a raised alert")
    def acknowledge(
        alert_id: int, by: str = Body(..., embed=True, description="Who acknowledges")
    ) -> dict[str, Any]:
        return _lifecycle(live_alerts.acknowledge, alert_id, by)

    @router.post("/alerts/{alert_id}/resolve", summary="Resolve an alert by hand")
    def resolve(
        alert_id: int, by: str = Body(..., embed=True, description="Who resolves")
    ) -> dict[str, Any]:
        return _lifecycle(live_alerts.resolve, alert_id, by)

    @router.get("/rules", summary="Alert rules")
    def list_rules() -> dict[str, Any]:
        return {"rules": [rule.to_json() for rule in live_alerts.rules(url=url)]}

    @router.post("/rules", status_code=201, summary="Add an alert rule")
    def add_rule(body: RuleBody) -> dict[str, Any]:
        rule = live_alerts.add_rule(
            name=body.name,
            kind=body.kind,
            datastream_id=body.datastream_id,
            observed_property=body.observed_property,
            params=body.params,
            severity=body.severity,
            url=url,
        )
        return rule.to_json()

    @router.delete("/rules/{rule_id}", status_code=204, summary="Delete an alert rule")
    def delete_rule(rule_id: int) -> None:
        try:
            live_alerts.delete_rule(rule_id, url=url)
        except UnknownAlertError as exc:
            raise NotFoundError(str(exc), parameter="rule_id") from None
        except AlertStateError as exc:
            raise ProblemError(str(exc), status=409, parameter="rule_id") from None

    @router.post("/rules/{rule_id}/disable", summary="Stop a rule from raising alerts")
    def disable_rule(rule_id: int) -> dict[str, Any]:
        try:
            return live_alerts.enable_rule(rule_id, enabled=False, url=url).to_json()
        except UnknownAlertError as exc:
            raise NotFoundError(str(exc), parameter="rule_id") from None

    return router
