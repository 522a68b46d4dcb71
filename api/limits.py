"""What the API refuses before a route runs, and how it answers while the database is away.

Two pure-ASGI middlewares, installed by :func:`install` in front of everything else:

- :class:`RequestLimits` refuses a request body larger than ``TWIN_MAX_BODY_BYTES`` (413 from
  ``Content-Length`` at once; a chunked body is read only until it passes the limit), and a NUL
  character anywhere PostgreSQL would be handed it — a path segment, a query parameter, a string
  (or member name) of a JSON body — with a 400 naming the parameter. PostgreSQL's text cannot
  hold U+0000; refusing it here closes the class for every endpoint at once.
- :class:`StoreOutage` answers 503 problem+json with ``Retry-After`` when the database does not
  answer (also when the sign-in guard's own reads fail), and retries an idempotent read
  (GET, HEAD) once when it failed on a pooled connection that had died (a PostgreSQL restart):
  the pool reconnects by itself. The failed request gets an HTTP answer and its keep-alive
  connection stays open.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import RETRYABLE, problem, status_title, store_failure, store_unavailable
from layers.settings import TwinSettings

log = logging.getLogger("twin.api")

#: A JSON ``\u0000`` escape that is not itself escaped (``\\u0000`` is the text "\u0000").
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_REASON = "text must not contain a NUL character (U+0000)"
#: Requests, by (method, path), whose routes bound their bodies themselves: an OpenStreetMap
#: extract larger than ``TWIN_MAX_BODY_BYTES``, streamed to disk
#: (up to ``TWIN_MAX_UPLOAD_BYTES``).
OWN_BODY_LIMITS = frozenset({("POST", "/admin/city")})


class BodyTooLargeError(Exception):
    """A request body passed the size limit while it was being read."""


class RequestLimits:
    """Pure-ASGI middleware: body size limit and NUL characters, refused before any route.

    Parameters
    ----------
    app
        The application it wraps.
    max_body_bytes
        Largest body read, bytes (``TWIN_MAX_BODY_BYTES``).
    routes
        The application's routes, to name the path parameter holding a NUL.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, routes: Sequence[BaseRoute]):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request, then pass it on with a body reader that counts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._nul_in_url(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if (scope["method"], scope["path"]) in OWN_BODY_LIMITS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        limit = self.max_body_bytes
        seen = 0
        exceeded = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True  # stop reading: the rest is never asked for
                    raise BodyTooLargeError(f"more than {limit} bytes")
            return message

        body_receive: Receive = counted
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["method"] not in ("GET", "HEAD") and media.endswith("json"):
            try:
                body = await _read_all(counted)
            except BodyTooLargeError:
                await self._too_large(scope, receive, send)
                return
            refusal = _nul_in_json(body)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            body_receive = _replay(body, receive)
        started = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if exceeded and not started:
                    started = True  # whatever the route made of the cut body, the answer is 413
                    await self._too_large(scope, receive, send)
                    return
                started = True
            elif exceeded:
                return  # the rest of the route's answer to a cut body
            await send(message)

        try:
            await self.app(scope, body_receive, guarded)
        except BodyTooLargeError:
            if started:
                raise
            await self._too_large(scope, receive, send)

    def _nul_in_url(self, scope: Scope) -> JSONResponse | None:
        """Return a 400 answer if the path or a query parameter holds a NUL, else None."""
        if "\x00" in scope["path"]:
            name = self._path_parameter(scope)
            return _bad_text(name, f"{name} (in the path)")
        query = scope.get("query_string", b"").decode("latin-1")
        if "%00" in query or "\x00" in query:
            for name, value in parse_qsl(query, keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    name = name.replace("\x00", "") or "query"
                    return _bad_text(name, f"{name} (a query parameter)")
        return None

    def _path_parameter(self, scope: Scope) -> str:
        """Name the path parameter that holds a NUL (``path`` when no route takes it)."""
        return _path_parameter(self.routes, scope["path"]) or "path"

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            status_title(413),
            f"the request body is larger than {self.max_body_bytes:,} bytes (TWIN_MAX_BODY_BYTES)",
            parameter="body",
        )
        response.headers["Connection"] = "close"  # the rest of the body is never read
        await response(scope, receive, send)


class StoreOutage:
    """Pure-ASGI middleware: 503 with ``Retry-After`` while the database is away; one retry.

    Parameters
    ----------
    app
        The application it wraps (the sign-in guard and the routes).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request; retry an idempotent read once after a lost connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        idempotent = scope["method"] in ("GET", "HEAD")
        if await self._attempt(scope, receive, send, retry_allowed=idempotent):
            log.info("retrying %s %s on a fresh connection", scope["method"], scope["path"])
            await self._attempt(scope, _replay(b"", receive), send, retry_allowed=False)

    async def _attempt(
        self, scope: Scope, receive: Receive, send: Send, *, retry_allowed: bool
    ) -> bool:
        """Run the request once; return True if it should be asked again (nothing was sent)."""
        state = scope.setdefault("state", {})
        state.pop(RETRYABLE, None)
        started = completed = retry = False

        async def guarded(message: Message) -> None:
            nonlocal started, completed, retry
            if message["type"] == "http.response.start":
                lost = state.get(RETRYABLE) and int(message["status"]) == 503
                if retry_allowed and lost:
                    retry = True  # swallow this answer: ask again on a fresh connection
                    return
                started = True
            elif retry:
                return
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        try:
            await self.app(scope, receive, guarded)
        except Exception as exc:
            failure = store_failure(exc)
            if failure is None or (started and not completed):
                raise
            if completed:  # e.g. the audit after the answer: the client has its answer
                log.warning("the database failed after %s was answered: %s", scope["path"], exc)
                return False
            if retry_allowed and failure == "lost":
                return True
            log.warning("the database does not answer on %s: %s", scope["path"], exc)
            await store_unavailable()(scope, receive, send)
            return False
        return retry


def install(app: FastAPI, settings: TwinSettings) -> None:
    """Put the request limits and the outage answer in front of every route (and the guard).

    Call it after every other middleware is added: middlewares added later run first.

    Parameters
    ----------
    app
        The application.
    settings
        Its settings (``max_body_bytes``).
    """
    app.add_middleware(StoreOutage)
    app.add_middleware(
        RequestLimits, max_body_bytes=settings.max_body_bytes, routes=app.router.routes
    )


def _path_parameter(routes: Sequence[Any], path: str) -> str | None:
    """Find the route template matching ``path`` and name its parameter holding a NUL.

    Walks routers included in routers (FastAPI keeps them as routes holding their router).
    """
    for route in routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None:
            match = regex.match(path)
            if match:
                for name, value in match.groupdict().items():
                    if "\x00" in value:
                        return str(name)
            continue
        router = getattr(route, "original_router", None)
        prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
        if router is not None and path.startswith(prefix):
            found = _path_parameter(router.routes, path[len(prefix) :] or "/")
            if found:
                return found
    return None


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive that hands over ``body`` once, then waits on the real one."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _nul_in_json(body: bytes) -> JSONResponse | None:
    """Return a 400 answer naming the JSON member whose text holds a NUL, else None."""
    if b"\x00" not in body and not _NUL_ESCAPE.search(body):
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON, or nested too deeply to read: the route says so
    where = _nul_path(document, "")
    if where is None:
        return None
    top = re.split(r"[.\[]", where, maxsplit=1)[0] or "body"
    return _bad_text(top, where or "the body")


def _nul_path(value: Any, at: str) -> str | None:
    """Return the path (``road_ids[0]``, ``filters.buildings``) of the first text with a NUL."""
    if isinstance(value, str):
        return at if "\x00" in value else None
    if isinstance(value, dict):
        for key, member in value.items():
            here = f"{at}.{key}" if at else str(key)
            if "\x00" in key:
                return here.replace("\x00", "\\u0000")
            found = _nul_path(member, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_path(item, f"{at}[{i}]")
            if found is not None:
                return found
    return None


def _bad_text(parameter: str, where: str) -> JSONResponse:
    """Answer 400 naming the parameter whose text holds a NUL, and where it is."""
    return problem(400, "Bad request", f"{where}: {_NUL_REASON}", parameter=parameter)
