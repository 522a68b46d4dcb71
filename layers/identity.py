"""Sign-in: the local issuer's users, API keys and tokens, and bearer tokens of an OIDC provider.

A city with an identity provider (Keycloak, Azure AD, an OIDC-speaking government SSO) sets its
issuer URL (``TWIN_AUTH_ISSUER``): bearer tokens it signs are verified against its JWKS,
discovered from ``<issuer>/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0),
and the roles are read from a claim (``TWIN_AUTH_ROLES_CLAIM``, a dotted path such as
``realm_access.roles``). A single machine with no provider uses the local issuer: users with
argon2id password hashes (RFC 9106), JWTs signed with an Ed25519 key kept in the store (its
public half is served as a JWKS, so another twin can trust this one as its provider), API keys
stored as SHA-256 digests (256-bit random secrets need no slow hash; GitHub stores its tokens
so). Tokens carry a ``jti``; a revoked one is refused within :data:`REVOCATION_REFRESH_S`,
and a local user acts with the roles the store holds for it now (a demoted or disabled user's
token loses the old roles within the same time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from layers.access import ANONYMOUS, Principal
from layers.database import database_url, get_engine
from layers.settings import TwinSettings, get_settings

#: How long a revocation or a changed API key may take to reach every worker, s.
REVOCATION_REFRESH_S = 5.0
#: API keys look like ``twk_<id>_<secret>``.
API_KEY_PREFIX = "twk_"
_HASHER = PasswordHasher()  # argon2id with RFC 9106's second recommended parameters


class IdentityError(ValueError):
    """A sign-in that fails, or a user/role/key that does not exist.

    Parameters
    ----------
    message
        What is wrong, in the user's terms (never which of name or password was wrong).
    status
        The HTTP status the API answers with: 400 (a bad request) or 401 (not signed in).
    """

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class User:
    """A user of the local issuer."""

    name: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token the local issuer signed (OAuth 2.0's access token response)."""

    access_token: str
    expires_at: datetime
    jti: str
    user: str
    roles: tuple[str, ...]


# -- users -----------------------------------------------------------------------------------------


def _known_roles(connection: sa.Connection, roles: Sequence[str]) -> tuple[str, ...]:
    known = {name for (name,) in connection.execute(sa.text("SELECT name FROM access_roles"))}
    unknown = [role for role in roles if role not in known]
    if unknown:
        raise IdentityError(
            f"unknown role {unknown[0]!r}; roles: {', '.join(sorted(known))}", status=400
        )
    return tuple(dict.fromkeys(roles))


def add_user(
    name: str,
    *,
    roles: Sequence[str],
    password: str | None = None,
    url: str | None = None,
) -> User:
    """Create a user of the local issuer.

    Parameters
    ----------
    name
        1–64 letters, digits or ``_.@-``.
    roles
        Role names from ``access_roles``.
    password
        Password to sign in with (kept as an argon2id hash); None for a user who only uses
        API keys.
    url
        Database URL; the configured one by default.

    Returns
    -------
    User
        The user.

    Raises
    ------
    IdentityError
        For a user that exists, a bad name, an unknown role or an empty password.
    """
    if password is not None and not password:
        raise IdentityError("the password is empty")
    with get_engine(url).begin() as connection:
        known = _known_roles(connection, roles)
        try:
            row = connection.execute(
                sa.text(
                    "INSERT INTO access_users (name, password_hash, roles) "
                    "VALUES (:name, :hash, :roles) ON CONFLICT DO NOTHING RETURNING created_at"
                ),
                {
                    "name": name,
                    "hash": None if password is None else _HASHER.hash(password),
                    "roles": list(known),
                },
            ).first()
        except sa.exc.IntegrityError:
            raise IdentityError(
                f"bad user name {name!r}: 1 to 64 letters, digits or _.@-"
            ) from None
    if row is None:
        raise IdentityError(f"user {name!r} exists already")
    return User(name, known, False, row[0])


def users(*, url: str | None = None) -> list[User]:
    """Return every user of the local issuer, by name.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of User
        The users.
    """
    with get_engine(url).connect() as connection:
        rows = connection.execute(
            sa.text("SELECT name, roles, disabled, created_at FROM access_users ORDER BY name")
        )
        return [User(n, tuple(r), bool(d), c) for n, r, d, c in rows]


def update_user(
    name: str,
    *,
    roles: Sequence[str] | None = None,
    password: str | None = None,
    disabled: bool | None = None,
    url: str | None = None,
) -> User:
    """Change a user's roles, password or whether it is disabled.

    Disabling a user revokes its tokens and API keys at once.

    Parameters
    ----------
    name
        The user.
    roles
        New roles (replacing the old), or None to keep them.
    password
        New password, or None to keep it.
    disabled
        True to disable, False to enable again, None to keep.
    url
        Database URL; the configured one by default.

    Returns
    -------
    User
        The user as changed.

    Raises
    ------
    IdentityError
        For an unknown user or role, or an empty password.
    """
    if password is not None and not password:
        raise IdentityError("the password is empty")
    with get_engine(url).begin() as connection:
        changes: dict[str, Any] = {"name": name}
        sets = []
        if roles is not None:
            changes["roles"] = list(_known_roles(connection, roles))
            sets.append("roles = :roles")
        if password is not None:
            changes["hash"] = _HASHER.hash(password)
            sets.append("password_hash = :hash")
        if disabled is not None:
            changes["disabled"] = disabled
            sets.append("disabled = :disabled")
        assignments = ", ".join(sets) or "name = name"  # fixed fragments above, no user text
        row = connection.execute(
            sa.text(
                f"UPDATE access_users SET {assignments} WHERE name = :name "  # noqa: S608
                "RETURNING name, roles, disabled, created_at"
            ),
            changes,
        ).first()
        if row is None:
            raise IdentityError(f"no user {name!r}")
        if disabled:
            for table in ("access_tokens", "access_api_keys"):
                connection.execute(
                    sa.text(
                        f"UPDATE {table} SET revoked_at = now() "  # noqa: S608 (a constant)
                        "WHERE user_name = :name AND revoked_at IS NULL"
                    ),
                    {"name": name},
                )
    return User(row[0], tuple(row[1]), bool(row[2]), row[3])


def check_password(name: str, password: str, *, url: str | None = None) -> User:
    """Return the user if ``password`` is its password.

    Parameters
    ----------
    name
        User name.
    password
        Password given.
    url
        Database URL; the configured one by default.

    Returns
    -------
    User
        The user.

    Raises
    ------
    IdentityError
        401 "invalid user name or password" (never saying which), or "user disabled".
    """
    with get_engine(url).connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT name, roles, disabled, created_at, password_hash FROM access_users "
                "WHERE name = :name"
            ),
            {"name": name},
        ).first()
    refused = IdentityError("invalid user name or password", status=401)
    if row is None or row[4] is None:
        _HASHER.hash(password)  # the same time as a real check: no user enumeration by timing
        raise refused
    try:
        _HASHER.verify(row[4], password)
    except (VerificationError, InvalidHashError):
        raise refused from None
    if row[2]:
        raise IdentityError(f"user {name!r} is disabled", status=401)
    return User(row[0], tuple(row[1]), False, row[3])


# -- the local issuer's signing key and tokens ----------------------------------------------------


@dataclass(frozen=True)
class _SigningKey:
    kid: str
    private: Ed25519PrivateKey
    public_jwk: dict[str, Any]


_KEYS: dict[str, _SigningKey] = {}
_KEYS_LOCK = threading.Lock()


def _signing_key(url: str | None) -> _SigningKey:
    """Return the store's newest signing key, made on first use (one for every worker)."""
    where = database_url(url)
    if where in _KEYS:
        return _KEYS[where]
    with _KEYS_LOCK, get_engine(url).begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('twin-signing-key'))"))
        row = connection.execute(
            sa.text(
                "SELECT kid, private_pem, public_jwk FROM access_signing_keys "
                "WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1"
            )
        ).first()
        if row is None:
            private = Ed25519PrivateKey.generate()
            kid = uuid.uuid4().hex[:16]
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            public_jwk = {
                **jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key(), as_dict=True),
                "kid": kid,
                "alg": "EdDSA",
                "use": "sig",
            }
            connection.execute(
                sa.text(
                    "INSERT INTO access_signing_keys (kid, private_pem, public_jwk) "
                    "VALUES (:kid, :pem, CAST(:jwk AS jsonb))"
                ),
                {"kid": kid, "pem": pem, "jwk": json.dumps(public_jwk)},
            )
        else:
            kid, pem, public_jwk = row[0], row[1], dict(row[2])
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        _KEYS[where] = _SigningKey(kid, key, public_jwk)
    return _KEYS[where]


def jwks(*, url: str | None = None) -> dict[str, Any]:
    """Return the local issuer's public keys as a JSON Web Key Set (RFC 7517).

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        ``{"keys": [...]}``, Ed25519 keys (``kty`` OKP, ``crv`` Ed25519, RFC 8037).
    """
    _signing_key(url)
    with get_engine(url).connect() as connection:
        rows = connection.execute(
            sa.text("SELECT public_jwk FROM access_signing_keys ORDER BY created_at DESC")
        )
        return {"keys": [dict(row[0]) for row in rows]}


def issue_token(
    user: User,
    *,
    ttl_s: float | None = None,
    url: str | None = None,
    settings: TwinSettings | None = None,
) -> IssuedToken:
    """Sign a bearer token for a user (RFC 9068's JWT access token claims).

    Parameters
    ----------
    user
        The user, from :func:`check_password` or :func:`users`.
    ttl_s
        Lifetime, s; ``TWIN_AUTH_TOKEN_TTL_S`` by default.
    url
        Database URL; the configured one by default.
    settings
        Issuer, audience and lifetime; the environment's by default.

    Returns
    -------
    IssuedToken
        The token and when it expires.
    """
    settings = settings or get_settings()
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_s or settings.auth_token_ttl_s)
    jti = uuid.uuid4().hex
    key = _signing_key(url)
    claims = {
        "iss": settings.auth_local_issuer,
        "sub": user.name,
        "aud": settings.auth_audience,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": jti,
        "roles": list(user.roles),
    }
    token = jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})
    with get_engine(url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO access_tokens (jti, user_name, issued_at, expires_at) "
                "VALUES (:jti, :user, :now, :expires)"
            ),
            {"jti": jti, "user": user.name, "now": now, "expires": expires},
        )
    return IssuedToken(token, expires, jti, user.name, user.roles)


def revoke_token(token_or_jti: str, *, url: str | None = None) -> bool:
    """Revoke a token of the local issuer (RFC 7009), by the token itself or its ``jti``.

    Parameters
    ----------
    token_or_jti
        The token, or its ``jti``.
    url
        Database URL; the configured one by default.

    Returns
    -------
    bool
        Whether a token that was not revoked yet is now.
    """
    jti = token_or_jti
    if token_or_jti.count(".") == 2:
        try:
            jti = str(jwt.decode(token_or_jti, options={"verify_signature": False}).get("jti"))
        except jwt.InvalidTokenError:
            return False
    with get_engine(url).begin() as connection:
        result = connection.execute(
            sa.text(
                "UPDATE access_tokens SET revoked_at = now() "
                "WHERE jti = :jti AND revoked_at IS NULL"
            ),
            {"jti": jti},
        )
    return bool(result.rowcount)


# -- API keys --------------------------------------------------------------------------------------


def create_api_key(
    user_name: str,
    *,
    label: str = "",
    expires_at: datetime | None = None,
    url: str | None = None,
) -> tuple[str, str]:
    """Make an API key for a user; the key is shown once and kept only as a digest.

    Parameters
    ----------
    user_name
        The user the key acts as (with the user's roles at the time of each request).
    label
        What the key is for.
    expires_at
        When it stops working; never by default.
    url
        Database URL; the configured one by default.

    Returns
    -------
    tuple of str
        ``(key id, key)``; the key is ``twk_<id>_<secret>``.

    Raises
    ------
    IdentityError
        For an unknown user.
    """
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with get_engine(url).begin() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM access_users WHERE name = :name"), {"name": user_name}
        ).first()
        if exists is None:
            raise IdentityError(f"no user {user_name!r}")
        connection.execute(
            sa.text(
                "INSERT INTO access_api_keys (id, user_name, key_hash, label, expires_at) "
                "VALUES (:id, :user, :hash, :label, :expires)"
            ),
            {
                "id": key_id,
                "user": user_name,
                "hash": digest,
                "label": label,
                "expires": expires_at,
            },
        )
    return key_id, f"{API_KEY_PREFIX}{key_id}_{secret}"


def revoke_api_key(key_id: str, *, url: str | None = None) -> bool:
    """Revoke an API key by its id.

    Parameters
    ----------
    key_id
        The key's id (the part after ``twk_``, before the next ``_``).
    url
        Database URL; the configured one by default.

    Returns
    -------
    bool
        Whether a live key was revoked.
    """
    with get_engine(url).begin() as connection:
        result = connection.execute(
            sa.text(
                "UPDATE access_api_keys SET revoked_at = now() "
                "WHERE id = :id AND revoked_at IS NULL"
            ),
            {"id": key_id},
        )
    return bool(result.rowcount)


# -- verification ----------------------------------------------------------------------------------


class Verifier:
    """Turn a request's credentials into a principal (one per process; thread-safe).

    Parameters
    ----------
    url
        Database URL of the local issuer's tables; the configured one by default.
    settings
        Issuers, audience, roles claim and anonymous role; the environment's by default.
    """

    def __init__(self, url: str | None = None, *, settings: TwinSettings | None = None):
        self.url = url
        self.settings = settings or get_settings()
        self._lock = threading.Lock()
        self._revoked: frozenset[str] = frozenset()
        self._roles: dict[str, tuple[str, ...]] = {}  # enabled local users' roles, by name
        self._revoked_at = 0.0
        self._keys: dict[str, tuple[float, Principal | None, str]] = {}
        self._public: dict[str, Any] = {}
        self._oidc: jwt.PyJWKClient | None = None
        # tokens whose signature was checked: principal, expiry (epoch s), jti
        self._verified: dict[str, tuple[Principal, float, str]] = {}

    def anonymous(self) -> Principal:
        """Return the principal of a caller with no credentials.

        Returns
        -------
        Principal
            ``anonymous`` with the role ``TWIN_AUTH_ANONYMOUS_ROLE`` (none if it is empty).
        """
        role = self.settings.auth_anonymous_role
        return Principal(ANONYMOUS, (role,) if role else (), "anonymous")

    def bearer(self, token: str) -> Principal:
        """Verify a bearer JWT of the local issuer or of the configured OIDC provider.

        Parameters
        ----------
        token
            The compact JWT.

        Returns
        -------
        Principal
            Its subject and roles.

        Raises
        ------
        IdentityError
            401 for a token that is malformed, expired, revoked, for another audience, or
            from an issuer this twin does not trust.
        """
        known = self._verified.get(token)
        if known is not None:
            principal, expires, jti = known
            if time.time() >= expires:
                raise IdentityError("the bearer token has expired", status=401)
            if jti and jti in self._revoked_jtis():
                raise IdentityError("the bearer token was revoked", status=401)
            return self._current(principal)
        principal, expires, jti = self._verify(token)
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = (principal, expires, jti)
        self._revoked_jtis()  # also reads the users' roles when they are due
        return self._current(principal)

    def token_id(self, token: str) -> str | None:
        """Return the ``jti`` of a valid, unrevoked token of the local issuer, else None.

        Revocation (RFC 7009) takes the token itself, never a bare id: holding the token is
        the right to revoke it.

        Parameters
        ----------
        token
            The compact JWT.

        Returns
        -------
        str or None
            Its ``jti``.
        """
        try:
            _, _, jti = self._verify(token)
        except IdentityError:
            return None
        return jti or None

    def _current(self, principal: Principal) -> Principal:
        """Give a local user's principal the roles the store holds for the user now."""
        if principal.via != "token":
            return principal
        roles = self._roles.get(principal.name)
        if roles is None:  # a user made since the last read, or one disabled: read again
            self._revoked_at = 0.0
            self._revoked_jtis()
            roles = self._roles.get(principal.name)
        if roles is None:  # no such user any more, or disabled
            raise IdentityError(f"user {principal.name!r} may not sign in", status=401)
        return principal if roles == principal.roles else Principal(principal.name, roles, "token")

    def cached(self, token: str | None) -> Principal | None:
        """Return a caller's principal if it needs no database read to know it, else None.

        The API's guard answers such a request on its event loop; any other is checked in a
        worker thread (:meth:`bearer`, :meth:`api_key`).

        Parameters
        ----------
        token
            A bearer token, or None for an anonymous caller.

        Returns
        -------
        Principal or None
            The principal (a token verified before, unexpired and not revoked), or None.
        """
        if token is None:
            return self.anonymous()
        known = self._verified.get(token)
        if known is None or time.monotonic() - self._revoked_at > REVOCATION_REFRESH_S:
            return None
        principal, expires, jti = known
        if time.time() >= expires or jti in self._revoked:
            return None  # bearer() says why
        if principal.via == "token" and principal.name not in self._roles:
            return None
        return self._current(principal)

    def _verify(self, token: str) -> tuple[Principal, float, str]:
        """Verify a token's signature and claims: its principal, expiry (epoch s) and jti."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise IdentityError("the bearer token is not a JWT", status=401) from None
        issuer = claims.get("iss")
        settings = self.settings
        try:
            if issuer == settings.auth_local_issuer:
                key = self._local_key(str(header.get("kid", "")))
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    audience=settings.auth_audience,
                    issuer=settings.auth_local_issuer,
                    options={"require": ["exp", "iat", "sub", "jti"]},
                )
                if str(claims["jti"]) in self._revoked_jtis():
                    raise IdentityError("the bearer token was revoked", status=401)
                # the user's roles now, not when the token was signed: a demoted user's
                # token loses the old role within REVOCATION_REFRESH_S
                principal = Principal(str(claims["sub"]), _roles(claims, "roles"), "token")
                return principal, float(claims["exp"]), str(claims["jti"])
            if settings.auth_issuer and issuer == settings.auth_issuer.rstrip("/"):
                signing = self._oidc_client().get_signing_key_from_jwt(token)
                claims = jwt.decode(
                    token,
                    signing.key,
                    algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"],
                    audience=settings.auth_audience,
                    issuer=issuer,
                    options={"require": ["exp", "iat", "sub"]},
                )
                name = str(claims.get("preferred_username") or claims["sub"])
                principal = Principal(name, _roles(claims, settings.auth_roles_claim), "oidc")
                return principal, float(claims["exp"]), ""
        except jwt.ExpiredSignatureError:
            raise IdentityError("the bearer token has expired", status=401) from None
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            raise IdentityError(f"the bearer token is not valid: {exc}", status=401) from None
        raise IdentityError(f"tokens of issuer {issuer!r} are not trusted here", status=401)

    def api_key(self, key: str) -> Principal:
        """Verify an API key and return its user with the user's current roles.

        Parameters
        ----------
        key
            ``twk_<id>_<secret>``.

        Returns
        -------
        Principal
            The key's user.

        Raises
        ------
        IdentityError
            401 for an unknown, revoked or expired key, or one of a disabled user.
        """
        refused = IdentityError("the API key is not valid", status=401)
        if not key.startswith(API_KEY_PREFIX) or key.count("_") < 2:
            raise refused
        key_id, secret = key[len(API_KEY_PREFIX) :].split("_", 1)
        now = time.monotonic()
        cached = self._keys.get(key_id)
        if cached is None or now - cached[0] > REVOCATION_REFRESH_S:
            with get_engine(self.url).connect() as connection:
                row = connection.execute(
                    sa.text(
                        "SELECT k.key_hash, u.name, u.roles FROM access_api_keys k "
                        "JOIN access_users u ON u.name = k.user_name WHERE k.id = :id "
                        "AND k.revoked_at IS NULL AND NOT u.disabled "
                        "AND (k.expires_at IS NULL OR k.expires_at > now())"
                    ),
                    {"id": key_id},
                ).first()
            principal = None if row is None else Principal(row[1], tuple(row[2]), "api-key")
            cached = (now, principal, "" if row is None else row[0])
            with self._lock:
                if len(self._keys) > 10_000:
                    self._keys.clear()
                self._keys[key_id] = cached
        _, principal, digest = cached
        given = hashlib.sha256(secret.encode()).hexdigest()
        if principal is None or not hmac.compare_digest(given, digest):
            raise refused
        return principal

    def _local_key(self, kid: str) -> Any:
        if kid not in self._public:
            for jwk in jwks(url=self.url)["keys"]:
                self._public[jwk["kid"]] = jwt.algorithms.OKPAlgorithm.from_jwk(jwk)
        if kid not in self._public:
            raise IdentityError("the bearer token's key is not one of this issuer's", status=401)
        return self._public[kid]

    def _revoked_jtis(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._revoked_at > REVOCATION_REFRESH_S:
            with get_engine(self.url).connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT jti FROM access_tokens "
                        "WHERE revoked_at IS NOT NULL AND expires_at > now()"
                    )
                )
                revoked = frozenset(jti for (jti,) in rows)
                users = connection.execute(
                    sa.text("SELECT name, roles FROM access_users WHERE NOT disabled")
                )
                roles = {name: tuple(held) for name, held in users}
            with self._lock:
                self._revoked, self._roles, self._revoked_at = revoked, roles, now
        return self._revoked

    def _oidc_client(self) -> jwt.PyJWKClient:
        if self._oidc is None:
            issuer = (self.settings.auth_issuer or "").rstrip("/")
            try:
                with urllib.request.urlopen(
                    f"{issuer}/.well-known/openid-configuration", timeout=10
                ) as answer:
                    jwks_uri = str(json.load(answer)["jwks_uri"])
            except (OSError, ValueError, KeyError) as exc:
                raise IdentityError(
                    f"the identity provider {issuer} does not answer its discovery: {exc}",
                    status=401,
                ) from None
            self._oidc = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=300)
        return self._oidc


def _roles(claims: dict[str, Any], path: str) -> tuple[str, ...]:
    """Read a list of role names from a dotted claim path (``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()
