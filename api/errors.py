"""Errors as RFC 7807 problem details (``application/problem+json``)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from layers.errors import ParameterError

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
        if status is not None:
            self.status = status


class NotFoundError(ProblemError):
    """A resource (layer, feature) does not exist."""

    status = 404
    title = "Not found"


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
        return problem(exc.status, exc.title, exc.detail, parameter=exc.parameter)

    @app.exception_handler(ParameterError)
    async def _parameter(request: Request, exc: ParameterError) -> JSONResponse:
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
        title = "Not found" if exc.status_code == 404 else "Error"
        return problem(exc.status_code, title, str(exc.detail))

    @app.exception_handler(psycopg.errors.DataError)
    async def _data(request: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        # a value the request carried that PostgreSQL cannot hold (a NUL in text, a number out
        # of range, a key too long for its index): the request's fault, not the server's
        return problem(400, "Bad request", f"the store cannot hold a value: {_first_line(exc)}")

    @app.exception_handler(psycopg.errors.ProgramLimitExceeded)
    async def _limit(request: Request, exc: psycopg.errors.ProgramLimitExceeded) -> JSONResponse:
        return problem(400, "Bad request", f"a value is too large: {_first_line(exc)}")

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _wrapped(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        if isinstance(exc.orig, psycopg.errors.DataError | psycopg.errors.ProgramLimitExceeded):
            return problem(
                400, "Bad request", f"the store cannot hold a value: {_first_line(exc.orig)}"
            )
        return await _unexpected(request, exc)

    @app.exception_handler(UnicodeEncodeError)
    async def _text(request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        return problem(400, "Bad request", "the request holds text that is not valid Unicode")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "Internal server error", "the server failed; see its log")
