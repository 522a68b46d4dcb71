"""Errors as RFC 7807 problem details (``application/problem+json``)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Literal

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from layers.database import StoreError
from layers.errors import MissingInputError, ParameterError

PROBLEM = "application/problem+json"
log = logging.getLogger("twin.api")

#: JSON Schema of a problem+json body (RFC 7807, with the API's ``parameter`` member).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "parameter": {"type": "string", "description": "The request parameter at fault"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_MEANING = {
    400: "A parameter is invalid; `parameter` names it",
    401: "Not signed in, or the token or API key is not valid (WWW-Authenticate says how)",
    403: "Signed in, but the caller's roles do not permit this on that layer",
    404: "No such resource; `parameter` names the path parameter",
    500: "The server failed",
    503: "The database does not answer",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Describe problem+json answers for an operation's OpenAPI ``responses``.

    Parameters
    ----------
    *codes
        HTTP status codes the operation can answer with a problem.

    Returns
    -------
    dict
        Status code to its OpenAPI response object.
    """
    return {
        code: {
            "description": _MEANING.get(code, "A problem"),
            "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}},
        }
        for code in codes
    }


class ProblemError(Exception):
    """An error the API answers with a problem+json body.

    Parameters
    ----------
    status
        HTTP status code.
    detail
        What went wrong, for a person.
    parameter
        The request parameter at fault, if any.
    title
        Short summary; the HTTP reason phrase by default.
    """

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, parameter: str | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.parameter = parameter
        if status is not None and status != self.status:
            self.status = status
            self.title = status_title(status)  # a 503 is never titled "Bad request"


class NotFoundError(ProblemError):
    """A resource (layer, feature) does not exist."""

    status = 404
    title = "Not found"


class StoreUnavailableError(ProblemError):
    """The database does not answer (restarting, unreachable, or every connection is busy).

    Answered 503 with ``Retry-After`` (:data:`RETRY_AFTER_S`).
    """

    status = 503
    title = "Service unavailable"


#: Seconds a client is told to wait (``Retry-After``) when the database does not answer: about
#: what a PostgreSQL restart takes; the pool reconnects by itself on the next request after it.
RETRY_AFTER_S = 5
#: ``request.state`` member set when a request failed on a pooled connection that died (a
#: database restart, ``pg_terminate_backend``): :class:`api.limits.StoreOutage` retries an
#: idempotent read once on a fresh connection.
RETRYABLE = "store_connection_lost"
#: SQLSTATEs of a server that is going away or not yet accepting connections (admin_shutdown,
#: crash_shutdown, cannot_connect_now); class 08 is every connection exception.
_GONE = {"57P01", "57P02", "57P03"}


def status_title(status: int) -> str:
    """Return the HTTP reason phrase of a status (RFC 9110), for a problem's ``title``.

    Parameters
    ----------
    status
        HTTP status code.

    Returns
    -------
    str
        Its reason phrase in sentence case (``Service unavailable``), or ``Error`` for a code
        HTTP does not name.
    """
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "Error"
    return phrase[0] + phrase[1:].lower()  # as the API's other titles: "Bad request"


def store_failure(exc: BaseException) -> Literal["lost", "down"] | None:
    """Tell whether an exception means the database does not answer, and how.

    Parameters
    ----------
    exc
        Any exception a request raised.

    Returns
    -------
    {"lost", "down"} or None
        ``lost``: a connection that was open died under the request (a restart, a terminated
        backend): a retry on a fresh connection may well succeed. ``down``: no connection could
        be made or lent (refused, starting up, pool exhausted). None: not a store outage (a
        timeout, a constraint, a bad value are the request's own answers).
    """
    if isinstance(exc, StoreError | sqlalchemy.exc.TimeoutError):
        return "down"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return "lost"
        if exc.orig is not None and _gone(exc.orig):
            return "down"  # raised on connecting: the pool had nothing open to lose
        return None
    if isinstance(exc, psycopg.Error) and _gone(exc):
        # raised by a raw psycopg cursor on a connection the pool had lent: it was open
        return "down" if exc.sqlstate == "57P03" else "lost"
    return None


def _gone(exc: BaseException) -> bool:
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state in _GONE or state.startswith("08")


def store_unavailable(detail: str | None = None) -> JSONResponse:
    """Build the 503 answer given while the database does not answer.

    Parameters
    ----------
    detail
        Explanation; a generic one by default.

    Returns
    -------
    fastapi.responses.JSONResponse
        503 problem+json with ``Retry-After``.
    """
    response = problem(
        503,
        StoreUnavailableError.title,
        detail or "the database does not answer; try again shortly",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """Build a problem+json response.

    Parameters
    ----------
    status
        HTTP status code.
    title
        Short summary.
    detail
        Explanation for a person.
    **extra
        Extension members (``parameter``, ``errors`` ...); None values are left out.

    Returns
    -------
    fastapi.responses.JSONResponse
        The response.
    """
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body |= {k: v for k, v in extra.items() if v is not None}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def allowed_methods(request: Request) -> str | None:
    """Return the ``Allow`` of a request's path: every method the OpenAPI document lists for it.

    Starlette's 405 names the methods of the first route matching the path only, where each
    method of a path is a route of its own.

    Parameters
    ----------
    request
        The request answered 405.

    Returns
    -------
    str or None
        The methods, comma-separated, sorted; None for a path the document does not describe.
    """
    app = request.app
    index = getattr(app.state, "allow_index", None)
    if index is None:  # built once per application, from its (cached) document
        index = [
            (
                compile_path(path)[0],
                "{" in path,
                {method.upper() for method in item if method in _METHODS},
            )
            for path, item in app.openapi().get("paths", {}).items()
        ]
        app.state.allow_index = index
    path = request.scope.get("path", "")
    matched = [(templated, listed) for pattern, templated, listed in index if pattern.match(path)]
    # a path written out (/scenarios/compare) is that resource, not one of a template's
    # (/scenarios/{name}) that happens to match it too
    exact = [listed for templated, listed in matched if not templated]
    methods: set[str] = set().union(*(exact or [listed for _, listed in matched]))
    return ", ".join(sorted(methods)) or None


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def install(app: FastAPI) -> None:
    """Map every error the app can raise to a problem+json answer; never a stack trace.

    Parameters
    ----------
    app
        The application.
    """

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        if isinstance(exc, StoreUnavailableError):
            return store_unavailable(exc.detail)
        return problem(exc.status, exc.title, exc.detail, parameter=exc.parameter)

    @app.exception_handler(ParameterError)
    async def _parameter(request: Request, exc: ParameterError) -> JSONResponse:
        if isinstance(exc, MissingInputError):  # the city lacks an input: 409, naming it
            return problem(
                exc.status, "Missing input", str(exc), parameter=exc.parameter, missing=exc.missing
            )
        return problem(400, "Bad request", str(exc), parameter=exc.parameter)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "parameter": str(e["loc"][-1]) if e.get("loc") else None,
                "in": str(e["loc"][0]) if e.get("loc") else None,
                "reason": e.get("msg"),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"parameter": None, "reason": "invalid request"}
        detail = f"{first['parameter']}: {first['reason']}"
        return problem(400, "Bad request", detail, parameter=first["parameter"], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = "Not found" if exc.status_code == 404 else status_title(exc.status_code)
        response = problem(exc.status_code, title, str(exc.detail))
        response.headers.update(exc.headers or {})
        allowed = allowed_methods(request) if exc.status_code == 405 else None
        if allowed:  # Allow: every method of the path (RFC 9110 §15.5.6)
            response.headers["Allow"] = allowed
        return response

    @app.exception_handler(psycopg.errors.DataError)
    async def _data(request: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        # a value the request carried that PostgreSQL cannot hold (a NUL in text, a number out
        # of range, a key too long for its index): the request's fault, not the server's
        return problem(400, "Bad request", f"the store cannot hold a value: {_first_line(exc)}")

    @app.exception_handler(psycopg.errors.ProgramLimitExceeded)
    async def _limit(request: Request, exc: psycopg.errors.ProgramLimitExceeded) -> JSONResponse:
        return problem(400, "Bad request", f"a value is too large: {_first_line(exc)}")

    def _outage(request: Request, exc: Exception) -> JSONResponse | None:
        failure = store_failure(exc)
        if failure is None:
            return None
        if failure == "lost":
            setattr(request.state, RETRYABLE, True)
        log.warning("the database does not answer on %s: %s", request.url.path, _first_line(exc))
        return store_unavailable()

    @app.exception_handler(psycopg.OperationalError)
    async def _operational(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return _outage(request, exc) or await _unexpected(request, exc)

    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def _busy(request: Request, exc: sqlalchemy.exc.TimeoutError) -> JSONResponse:
        return _outage(request, exc) or await _unexpected(request, exc)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return _outage(request, exc) or await _unexpected(request, exc)

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _wrapped(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        if (outage := _outage(request, exc)) is not None:
            return outage
        if isinstance(exc.orig, psycopg.errors.DataError | psycopg.errors.ProgramLimitExceeded):
            return problem(
                400, "Bad request", f"the store cannot hold a value: {_first_line(exc.orig)}"
            )
        return await _unexpected(request, exc)

    @app.exception_handler(UnicodeEncodeError)
    async def _text(request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        return problem(400, "Bad request", "the request holds text that is not valid Unicode")

    @app.exception_handler(RecursionError)
    async def _nested(request: Request, exc: RecursionError) -> JSONResponse:
        # a body nested thousands deep (JSON's arrays and objects): Python's parser gives up
        return problem(
            400, "Bad request", "the request body is nested too deeply to be read", parameter="body"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "Internal server error", "the server failed; see its log")
