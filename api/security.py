"""Sign-in and access for every request: who is calling, what it may see, and the audit of it.

One pure-ASGI middleware (:class:`Guard`) runs before every route: it reads the caller's
credentials — ``Authorization: Bearer <JWT>`` (the local issuer's or the OIDC provider's),
``X-API-Key: twk_...``, or for a GET that cannot send headers (``EventSource``) the
``access_token`` query parameter (RFC 6750 §2.3) — and runs the request under the caller's
grant (:func:`layers.access.acting_as`): every layer read below it (features, tiles, one-map,
GeoArrow) is then filtered and masked for that caller, and every database read runs under its
clearance. After the answer it writes the audit: every layer above public that was read, and
every write, with who, from where, for what purpose (``X-Purpose``), how many features and
which.

The local issuer's endpoints: ``POST /auth/token`` (OAuth 2.0 password grant, RFC 6749 §4.3),
``POST /auth/revoke`` (RFC 7009), ``GET /auth/me``, ``GET /auth/jwks.json`` and
``GET /.well-known/openid-configuration``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM, ProblemError, problem
from layers import access
from layers.access import LEVELS, Grant
from layers.audit import AuditEvent, AuditLog
from layers.catalog import COLLECTIONS
from layers.errors import AccessError
from layers.identity import IdentityError, Verifier, check_password, issue_token, jwks, revoke_token
from layers.settings import TwinSettings

#: Paths anyone may reach without credentials being checked (a bad token there is no error):
#: the sign-in itself and the keys to check tokens with.
OPEN_PATHS = ("/auth/token", "/auth/jwks.json", "/.well-known/openid-configuration")
#: Largest sign-in form read, bytes.
MAX_FORM_BYTES = 8192
#: Longest ``X-Purpose`` the audit keeps, characters.
MAX_PURPOSE = 500
AuditHook = Callable[[Grant, Scope, int, list[access.Access]], None]


class Guard:
    """Pure-ASGI middleware: authenticate, run the request under the grant, audit it.

    Parameters
    ----------
    app
        The application.
    settings
        The API's settings (database, issuers, anonymous role).
    audit
        Called after each answer with the grant, the request scope, the status and the layers
        touched; None to audit nothing.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: TwinSettings,
        audit: AuditHook | None = None,
    ):
        self.app = app
        self.url = settings.database_url
        self.verifier = Verifier(self.url, settings=settings)
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request under its caller's grant."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            # on the event loop when every part is known already (a token verified before,
            # the rules read this second); else in a worker thread, which may read the store
            known = self._known(scope)
            grant = known if known is not None else await run_in_threadpool(self._grant, scope)
        except IdentityError as exc:
            if scope["path"] in OPEN_PATHS:
                grant = await run_in_threadpool(self._anonymous)
            else:
                await _refuse(scope, receive, send, 401, "Not signed in", str(exc))
                return
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        scope.setdefault("state", {})["grant"] = grant
        if b"access_token" in scope.get("query_string", b""):
            # the token has done its work: the routes (which refuse parameters they do not
            # know), the logs and the audit never see it
            kept = [
                (k, v)
                for k, v in parse_qsl(scope["query_string"].decode("latin-1"), True)
                if k != "access_token"
            ]
            scope["query_string"] = urlencode(kept).encode("latin-1")
        with access.acting_as(grant), access.ledger() as touched:
            try:
                await self.app(scope, receive, sent)
            finally:
                if self.audit is not None and touched:
                    self.audit(grant, scope, status, touched)

    def _grant(self, scope: Scope) -> Grant:
        headers = Headers(scope=scope)
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            principal = self.verifier.bearer(credentials.strip())
        elif headers.get("x-api-key"):
            principal = self.verifier.api_key(headers["x-api-key"])
        elif authorization:
            raise IdentityError(
                "Authorization: expected 'Bearer <token>' (or an X-API-Key header)", status=401
            )
        else:
            token = QueryParams(scope.get("query_string", b"")).get("access_token")
            if token and scope["method"] in ("GET", "HEAD"):
                principal = self.verifier.bearer(token)
            elif token:
                raise IdentityError(
                    "access_token: only a GET may carry its token in the URL (RFC 6750 §2.3); "
                    "send Authorization: Bearer",
                    status=401,
                )
            else:
                principal = self.verifier.anonymous()
        return access.grant_for(principal, url=self.url)

    def _known(self, scope: Scope) -> Grant | None:
        rules = access.cached_rules(url=self.url)
        if rules is None:
            return None
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        if headers.get("x-api-key") or b"access_token" in scope.get("query_string", b""):
            return None
        token: str | None = None
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                return None
            token = credentials.strip()
        principal = self.verifier.cached(token)
        return None if principal is None else access.grant_of(principal, rules, url=self.url)

    def _anonymous(self) -> Grant:
        return access.grant_for(self.verifier.anonymous(), url=self.url)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, title: str, detail: str
) -> None:
    response = problem(status, title, detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="citytwin", error="invalid_token"'
    await response(scope, receive, send)


def current_grant(request: Request) -> Grant:
    """Return the grant the request runs under (set by :class:`Guard`).

    Parameters
    ----------
    request
        The request.

    Returns
    -------
    Grant
        The caller's grant.

    Raises
    ------
    ProblemError
        500 if the application was built without the guard (a programming error).
    """
    grant = request.scope.get("state", {}).get("grant")
    if not isinstance(grant, Grant):
        raise ProblemError("the request was not authenticated", status=500)
    return grant


def requires(layer_id: str) -> Callable[[Request], None]:
    """Return a route dependency: reading ``layer_id`` for a GET or HEAD, editing it otherwise.

    For routers that serve something classified as a whole (the live feeds:
    :data:`layers.access.FEEDS`), given to ``include_router(dependencies=...)``.

    Parameters
    ----------
    layer_id
        The layer (or feed) the routes read and write.

    Returns
    -------
    callable
        The dependency; it raises :class:`~layers.errors.AccessError` (401/403/404).
    """

    def check(request: Request) -> None:
        access.require(layer_id, "read" if request.method in ("GET", "HEAD") else "edit")

    return check


def describe(grant: Grant) -> dict[str, Any]:
    """Describe a caller: name, roles, clearance, and per layer what it may do.

    Parameters
    ----------
    grant
        The caller's grant.

    Returns
    -------
    dict
        ``{"user", "via", "roles", "clearance", "clearanceName", "layers": {id: [perms]}}``.
    """
    layers = {
        layer_id: [p for p in access.PERMISSIONS if grant.may(layer_id, p)]
        for layer_id in (*COLLECTIONS, *access.FEEDS)
    }
    return {
        "user": grant.principal.name,
        "via": grant.principal.via,
        "roles": list(grant.roles),
        "clearance": grant.clearance,
        "clearanceName": LEVELS.get(grant.clearance, "none"),
        "layers": {layer_id: perms for layer_id, perms in layers.items() if perms},
    }


def routes(settings: TwinSettings, *, audit: AuditLog | None = None) -> APIRouter:
    """Build the local issuer's routes.

    Parameters
    ----------
    settings
        The API's settings (database, issuer, audience, token lifetime).
    audit
        Where sign-ins (and failed ones) are recorded; None to record nothing.

    Returns
    -------
    fastapi.APIRouter
        ``/auth/...`` and ``/.well-known/openid-configuration``.
    """
    url = settings.database_url
    verifier = Verifier(url, settings=settings)
    router = APIRouter(tags=["Sign-in"])

    @router.post(
        "/auth/token",
        summary="Sign in: a bearer token for a user name and password (OAuth 2.0 password grant)",
        responses={
            400: {"description": "Not a password grant form", "content": {PROBLEM: {}}},
            401: {"description": "Invalid user name or password", "content": {PROBLEM: {}}},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type", "username", "password"],
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["password"]},
                                "username": {"type": "string"},
                                "password": {"type": "string", "format": "password"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def token(request: Request) -> JSONResponse:
        form = await _form(request)
        if form.get("grant_type") != "password":
            raise ProblemError(
                "grant_type: only 'password' is supported here", parameter="grant_type"
            )
        for name in ("username", "password"):
            if not form.get(name):
                raise ProblemError(f"{name}: required", parameter=name)
        client = request.client.host if request.client else None

        def signed_in(status: int) -> None:
            if audit is not None:
                audit.record(
                    AuditEvent(
                        action="sign-in",
                        actor=form["username"][:64],
                        client=client,
                        request="POST /auth/token",
                        status=status,
                    )
                )

        try:
            user = await run_in_threadpool(
                check_password, form["username"], form["password"], url=url
            )
        except IdentityError as exc:
            signed_in(401)
            raise ProblemError(str(exc), status=401) from None
        signed_in(200)
        issued = await run_in_threadpool(issue_token, user, url=url, settings=settings)
        return JSONResponse(
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": int(settings.auth_token_ttl_s),
                "user": user.name,
                "roles": list(user.roles),
            },
            headers={"Cache-Control": "no-store"},
        )

    @router.post(
        "/auth/revoke",
        summary="Revoke a token of this issuer (RFC 7009)",
        status_code=200,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["token"],
                            "properties": {"token": {"type": "string"}},
                        }
                    }
                },
            }
        },
    )
    async def revoke(request: Request) -> dict[str, bool]:
        form = await _form(request)
        if not form.get("token"):
            raise ProblemError("token: required", parameter="token")
        jti = await run_in_threadpool(verifier.token_id, form["token"])
        revoked = jti is not None and await run_in_threadpool(revoke_token, jti, url=url)
        return {"revoked": revoked}  # 200 either way (RFC 7009 §2.2)

    @router.get("/auth/me", summary="Who the caller is and what it may do, per layer")
    def me(request: Request) -> dict[str, Any]:
        return describe(current_grant(request))

    @router.get("/auth/jwks.json", summary="The local issuer's public keys (JWKS, RFC 7517)")
    def keys() -> dict[str, Any]:
        return jwks(url=url)

    @router.get(
        "/.well-known/openid-configuration",
        summary="The local issuer's metadata (OpenID Connect Discovery 1.0)",
    )
    def discovery(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "issuer": settings.auth_local_issuer,
            "jwks_uri": f"{base}/auth/jwks.json",
            "token_endpoint": f"{base}/auth/token",
            "revocation_endpoint": f"{base}/auth/revoke",
            "grant_types_supported": ["password"],
            "token_endpoint_auth_methods_supported": ["none"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "roles", "iss", "aud", "exp", "iat", "jti"],
        }

    return router


async def _form(request: Request) -> dict[str, str]:
    """Read an ``application/x-www-form-urlencoded`` body (or JSON), bounded in size."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ProblemError(f"the form is larger than {MAX_FORM_BYTES} bytes", status=413)
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    try:
        if kind == "application/json":
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}
        text = body.decode()
    except (ValueError, UnicodeDecodeError):
        raise ProblemError(
            "the body must be a form (application/x-www-form-urlencoded) or a JSON object"
        ) from None
    return {key: values[0] for key, values in parse_qs(text).items()}


def install(app: FastAPI, settings: TwinSettings, *, audit: AuditHook | None = None) -> None:
    """Put the guard in front of every route, and answer access refusals as problems.

    Parameters
    ----------
    app
        The application.
    settings
        Its settings.
    audit
        Where audit events go (see :class:`Guard`).
    """

    @app.exception_handler(AccessError)
    async def _refused(request: Request, exc: AccessError) -> JSONResponse:
        titles = {401: "Not signed in", 403: "Not permitted", 404: "Not found"}
        extra = {"parameter": exc.parameter} if exc.parameter else {}
        response = problem(exc.status, titles.get(exc.status, "Refused"), str(exc), **extra)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="citytwin"'
        return response

    app.add_middleware(Guard, settings=settings, audit=audit)


#: The audit action of a write, by HTTP method.
_ACTIONS = {"POST": "create", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}


def audit_trail(log: AuditLog) -> AuditHook:
    """Return the guard's audit hook writing to ``log``.

    Every layer above public a request read, and every layer it wrote (or tried to: a refusal
    is recorded with its 401/403 status), becomes one event: who, in which role, which layer,
    how many features and which ids (as the route noted them), the bbox asked for, the
    client's address, the ``X-Purpose`` header, the request and its status.

    Parameters
    ----------
    log
        The process's audit log (it writes in batches, off the request's path).

    Returns
    -------
    AuditHook
        The hook for :class:`Guard`.
    """

    def hook(grant: Grant, scope: Scope, status: int, touched: list[access.Access]) -> None:
        headers = Headers(scope=scope)
        query = scope.get("query_string", b"").decode("latin-1")  # access_token taken out
        request = f"{scope['method']} {scope['path']}{'?' + query if query else ''}"
        client = scope.get("client")
        bbox = _bbox(QueryParams(query).get("bbox"))
        written = {entry.layer for entry in touched if entry.permission != "read"}
        for entry in touched:
            write = entry.permission != "read"
            if not write and (entry.layer in written or grant.rules.level(entry.layer) == 0):
                continue  # public reads are not audited; a write's own read is the write
            log.record(
                AuditEvent(
                    action=_ACTIONS.get(scope["method"], "write") if write else "read",
                    actor=grant.principal.name,
                    role=",".join(grant.roles) or None,
                    layer=entry.layer,
                    ids=tuple(entry.ids) or None,
                    bbox=bbox,
                    feature_count=entry.count,
                    client=client[0] if client else None,
                    purpose=(headers.get("x-purpose") or "")[:MAX_PURPOSE] or None,
                    request=request[:2000],
                    status=status,
                )
            )

    return hook


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """Return the first four numbers of a ``bbox`` parameter, if it holds finite ones."""
    try:
        numbers = [float(v) for v in (value or "").split(",")]
    except ValueError:
        return None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers[0], numbers[1], numbers[2], numbers[3]
