"""OGC API - Features Part 4: create, replace, update and delete features, with ETags.

``POST /collections/{collectionId}/items`` (201, ``Location``, ``ETag``), ``PUT`` (replace),
``PATCH`` (JSON merge patch, RFC 7396) and ``DELETE`` (204) on
``/collections/{collectionId}/items/{featureId}``, for the layers an operator edits
(:data:`layers.editing.EDITABLE`); any other collection answers 405 with ``Allow``. A replace,
update or delete must say which version it was made from (``If-Match`` with the ETag a read
gave): without it 428, with a stale one 412 — never a lost update. Each write is a new version
(the old one stays readable with ``datetime=``), checked against the catalog as an import is
(400 naming the attribute), allowed only to a caller with ``edit`` permission on the layer
(401/403), and audited by the request's guard (:mod:`api.security`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.errors import NotFoundError, ProblemError, problem, problem_responses
from api.features import GEOJSON, GeoJSONResponse, collection_layer
from layers import editing

#: Media types a feature may be sent as.
FEATURE_TYPES = (GEOJSON, "application/json", "application/merge-patch+json")
#: Methods each path answers on a layer that is not edited (the ``Allow`` of a 405).
READ_ONLY_ALLOW = "GET"


class PreconditionFailedError(ProblemError):
    """The edit names a version that is no longer current (412)."""

    status = 412
    title = "Precondition failed"


class PreconditionRequiredError(ProblemError):
    """An edit without ``If-Match`` (428, RFC 6585)."""

    status = 428
    title = "Precondition required"


class ConflictError(ProblemError):
    """A create names the id of a current feature (409)."""

    status = 409
    title = "Conflict"


_FEATURE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "object", "description": "A GeoJSON Feature in CRS84"}}
            for media in (GEOJSON, "application/json")
        },
    }
}
_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {
                "schema": {
                    "type": "object",
                    "description": "A JSON merge patch (RFC 7396) of the GeoJSON Feature",
                }
            }
            for media in ("application/merge-patch+json", GEOJSON, "application/json")
        },
    }
}
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The ETag of the version the edit was made from (from a GET); required",
    ),
]


def _not_json(constant: str) -> float:
    """Refuse ``NaN`` and ``Infinity``, which Python reads but JSON (RFC 8259) has not."""
    raise ValueError(f"{constant} is not a JSON number: attributes are finite numbers")


async def json_body(request: Request) -> dict[str, Any]:
    """Read the body as a JSON object, refusing other media types and other JSON values.

    Parameters
    ----------
    request
        A request whose body is a GeoJSON Feature (``application/geo+json`` or JSON), in
        CRS84.

    Returns
    -------
    dict
        The body.

    Raises
    ------
    ProblemError
        415 for another media type, 400 for another CRS, a body that is not JSON or not an
        object (parameters ``Content-Type``, ``Content-Crs``, ``body``).
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in FEATURE_TYPES:
        raise ProblemError(
            f"Content-Type: expected one of {', '.join(FEATURE_TYPES)}, not {media!r}",
            parameter="Content-Type",
            status=415,
        )
    crs = request.headers.get("content-crs")
    if crs and crs.strip().strip("<>") != "http://www.opengis.net/def/crs/OGC/1.3/CRS84":
        raise ProblemError(
            "Content-Crs: features are accepted in CRS84 (lon/lat) only", parameter="Content-Crs"
        )
    raw = await request.body()
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(f"body: not JSON ({exc})", parameter="body") from None
    if not isinstance(body, dict):
        raise ProblemError("body: expected a JSON object (a GeoJSON Feature)", parameter="body")
    return body


def _editable(collection_id: str) -> JSONResponse | None:
    """Return a 405 for a layer not edited through the API (after the 404 of an unknown one)."""
    layer = collection_layer(collection_id)
    try:
        editing.editable_layer(layer.id)
    except editing.NotEditableError as exc:
        response = problem(405, "Method not allowed", str(exc), parameter="collectionId")
        response.headers["Allow"] = READ_ONLY_ALLOW
        return response
    return None


def _if_match(value: str | None) -> list[int]:
    if value is None or not value.strip():
        raise PreconditionRequiredError(
            "If-Match: required; send the ETag of the version the edit was made from "
            "(GET the feature: its ETag header)",
            parameter="If-Match",
        )
    return editing.parse_if_match(value)


def _answer(edit: editing.Edit, url: str, *, status: int = 200) -> Response:
    """Answer the new version as GeoJSON with its ETag (the one the write made, not a later)."""
    assert edit.vid is not None and edit.etag is not None
    feature = editing.read_version(edit.layer, edit.vid, url=url)
    headers = {"ETag": edit.etag}
    if feature is None:  # written, but hidden from its writer by a row classification
        return Response(status_code=204 if status == 200 else status, headers=headers)
    return GeoJSONResponse(feature, status_code=status, headers=headers)


def _refusal(exc: editing.EditError) -> ProblemError:
    if isinstance(exc, editing.PreconditionFailedError):
        return PreconditionFailedError(str(exc), parameter="If-Match")
    if isinstance(exc, editing.FeatureNotFoundError):
        return NotFoundError(str(exc), parameter="featureId")
    if isinstance(exc, editing.FeatureExistsError):
        return ConflictError(str(exc), parameter="id")
    return ProblemError(str(exc))


def routes(url: str) -> APIRouter:
    """Build the Part 4 endpoints over the store at ``url``.

    Include it beside :func:`api.features.routes` (which answers the reads, with ETags).

    Parameters
    ----------
    url
        Database URL.

    Returns
    -------
    fastapi.APIRouter
        ``POST /collections/{collectionId}/items`` and ``PUT``, ``PATCH``, ``DELETE`` of
        ``/collections/{collectionId}/items/{featureId}``.
    """
    router = APIRouter(tags=["editing"])
    refusals = problem_responses(400, 401, 403, 404, 405, 415)
    locked = problem_responses(400, 401, 403, 404, 405, 412, 415, 428)
    written = {
        "description": "The new version, with its ETag",
        "content": {GEOJSON: {"schema": {"type": "object"}}},
    }

    @router.post(
        "/collections/{collectionId}/items",
        status_code=201,
        summary="Add a feature (OGC API - Features Part 4)",
        response_class=GeoJSONResponse,
        responses={201: written, **refusals, **problem_responses(409)},
        openapi_extra=_FEATURE_BODY,
    )
    async def post_item(request: Request, collectionId: str) -> Response:
        if (refused := _editable(collectionId)) is not None:
            return refused
        body = await json_body(request)

        def write() -> Response:
            try:
                edit = editing.create(collectionId, body, url=url)
            except editing.EditError as exc:
                raise _refusal(exc) from None
            response = _answer(edit, url, status=201)
            response.headers["Location"] = (
                f"{str(request.base_url).rstrip('/')}/collections/{collectionId}/items/"
                f"{quote(edit.id, safe='')}"
            )
            return response

        return await run_in_threadpool(write)  # the store is written synchronously

    async def change(
        how: Callable[..., editing.Edit],
        request: Request,
        collectionId: str,
        featureId: str,
        if_match: str | None,
    ) -> Response:
        """Replace or patch one feature (``how``) with its body, under If-Match."""
        if (refused := _editable(collectionId)) is not None:
            return refused
        versions = _if_match(if_match)
        body = await json_body(request)

        def write() -> Response:
            try:
                edit = how(collectionId, featureId, body, if_match=versions, url=url)
            except editing.EditError as exc:
                raise _refusal(exc) from None
            return _answer(edit, url)

        return await run_in_threadpool(write)

    @router.put(
        "/collections/{collectionId}/items/{featureId:path}",
        summary="Replace a feature with a new version",
        response_class=GeoJSONResponse,
        responses={200: written, **locked},
        openapi_extra=_FEATURE_BODY,
    )
    async def put_item(
        request: Request, collectionId: str, featureId: str, if_match: IfMatch = None
    ) -> Response:
        return await change(editing.replace, request, collectionId, featureId, if_match)

    @router.patch(
        "/collections/{collectionId}/items/{featureId:path}",
        summary="Change part of a feature (JSON merge patch): a new version",
        response_class=GeoJSONResponse,
        responses={200: written, **locked},
        openapi_extra=_PATCH_BODY,
    )
    async def patch_item(
        request: Request, collectionId: str, featureId: str, if_match: IfMatch = None
    ) -> Response:
        return await change(editing.update, request, collectionId, featureId, if_match)

    @router.delete(
        "/collections/{collectionId}/items/{featureId:path}",
        status_code=204,
        summary="Delete a feature (its last version stays readable with datetime=)",
        response_class=Response,
        responses=locked,
    )
    def delete_item(collectionId: str, featureId: str, if_match: IfMatch = None) -> Response:
        if (refused := _editable(collectionId)) is not None:
            return refused
        versions = _if_match(if_match)
        try:
            editing.delete(collectionId, featureId, if_match=versions, url=url)
        except editing.EditError as exc:
            raise _refusal(exc) from None
        return Response(status_code=204)

    return router
