"""Settings for the city store: one class, read from ``TWIN_*`` environment variables."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any

import psycopg
from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pyproj import CRS
from sqlalchemy.engine import make_url

_DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/twin"


def stored_city(url: str) -> dict[str, Any]:
    """Return the city settings ``twin city init`` last wrote in a database (migration 0014).

    Parameters
    ----------
    url
        SQLAlchemy or libpq URL of the database.

    Returns
    -------
    dict
        ``city_name``, ``city_bbox`` (min lon, min lat, max lon, max lat; EPSG:4326) and
        ``metric_crs``; empty when the database cannot be reached, predates migration 0014 or
        was never given a city (the defaults and the environment then decide).
    """
    try:
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute(
                "SELECT name, bbox, metric_crs FROM city_settings ORDER BY version DESC LIMIT 1"
            ).fetchone()
    except (psycopg.Error, ValueError):  # no server, no database, no table yet, a bad URL
        return {}
    if row is None:
        return {}
    return {"city_name": row[0], "city_bbox": tuple(row[1]), "metric_crs": row[2]}


def check_read_urls(urls: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check read-replica URLs (``database_read_urls``): PostgreSQL URLs naming a server.

    Parameters
    ----------
    urls
        SQLAlchemy or libpq-style URLs (``postgresql://user@host:port[/database]``).

    Returns
    -------
    tuple of str
        The URLs, unchanged.

    Raises
    ------
    ValueError
        Naming ``database_read_urls`` and the URL: not a URL, not PostgreSQL, or no host
        (neither in the authority nor as ``?host=`` for a Unix socket).
    """
    for url in urls:
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError alike
            raise ValueError(f"database_read_urls: {url!r} is not a database URL") from exc
        if parsed.get_backend_name() not in ("postgresql", "postgres"):
            raise ValueError(f"database_read_urls: {url!r} is not a PostgreSQL URL")
        if not parsed.host and "host" not in parsed.query:  # a socket: ?host=/run/...
            raise ValueError(f"database_read_urls: {url!r} names no host")
    return tuple(urls)


class _StoredCity(PydanticBaseSettingsSource):
    """Settings source: the city the store was given (below the environment, above defaults)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        given: PydanticBaseSettingsSource,
        environment: PydanticBaseSettingsSource,
    ):
        super().__init__(settings_cls)
        self._given = given
        self._environment = environment

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # all at once, in __call__

    def __call__(self) -> dict[str, Any]:
        url = (
            self._given().get("database_url")
            or self._environment().get("database_url")
            or _DEFAULT_DATABASE_URL
        )
        return stored_city(str(url))


class TwinSettings(BaseSettings):
    """Where the store lives and which city it holds.

    Every field can be set with an environment variable named ``TWIN_<FIELD>``, for example
    ``TWIN_DATABASE_URL`` or ``TWIN_METRIC_CRS``. The city's name, extent and metric CRS come,
    in this order, from the arguments, the environment, the settings ``twin city init`` wrote in
    the store (:func:`stored_city`), and the defaults (the sample city, Monaco).
    """

    model_config = SettingsConfigDict(env_prefix="TWIN_", frozen=True)

    database_url: str = Field(
        default=_DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the PostGIS database holding the layers.",
    )
    database_read_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Read replicas of the database (streaming copies: scripts/replica.sh), "
        "tried in order for read-only work before the primary; a comma-separated list or a "
        "JSON array in TWIN_DATABASE_READ_URLS. A URL naming no database reads the primary's "
        "database name. Empty (the default): every read goes to the primary.",
    )
    database_read_retry_s: float = Field(
        default=5,
        gt=0,
        le=3600,
        description="How long a read replica that refused or timed out a connection is left "
        "alone before it is tried again, s (reads go to the next URL or the primary meanwhile).",
    )
    city_name: str = Field(default="Monaco", description="Name of the city shown to users.")
    metric_crs: str = Field(
        default="EPSG:32632",
        description="Projected CRS in metres used for lengths, buffers and areas "
        "(a UTM zone, or a CGCS2000 Gauss-Kruger zone such as EPSG:4547).",
    )
    city_bbox: tuple[float, float, float, float] = Field(
        default=(7.38, 43.70, 7.46, 43.77),
        description="The city's extent as (min lon, min lat, max lon, max lat) in EPSG:4326; "
        "ingest rejects features outside it (twin city init clips them).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://127.0.0.1:6379/0) for a tile cache shared by workers; "
        "an in-process cache when unset.",
    )
    tile_cache_mb: int = Field(
        default=256, ge=0, description="Size of the in-process tile cache, MB; 0 turns it off."
    )
    statement_timeout_s: float = Field(
        default=30, gt=0, description="Longest a read query (features, tiles) may run, s."
    )
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="MQTT broker the live twin subscribes and publishes to "
        "(SensorThings' MQTT extension); an empty string turns MQTT off.",
    )
    live_topic_prefix: str = Field(
        default="",
        description="Prefix of every SensorThings MQTT topic (``<prefix>v1.1/...``), so that "
        "several twins can share one broker; empty or ending in '/'.",
    )
    live_bridge_processes: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Processes that take readings off MQTT and store them (beside the API's); "
        "more than one share the subscription (MQTT 5 shared subscriptions).",
    )
    live_retention_days: int = Field(
        default=30, ge=1, description="Days observations are kept; older partitions are dropped."
    )
    live_future_s: float = Field(
        default=300,
        ge=0,
        description="How far ahead of the server's clock a phenomenonTime may be, s; later "
        "readings are refused (a sensor with a wrong clock).",
    )
    live_stale_s: float = Field(
        default=300,
        gt=0,
        description="How long a live road speed counts, s; after it routing falls back to the "
        "profile speed.",
    )
    auth_anonymous_role: str = Field(
        default="public",
        description="Role of a caller with no credentials (the 'public' role sees the layers "
        "classified public); empty: every request must sign in.",
    )
    auth_issuer: str | None = Field(
        default=None,
        description="Issuer URL of an OpenID Connect provider whose bearer tokens are "
        "accepted, verified against the JWKS its discovery document names.",
    )
    auth_audience: str = Field(
        default="citytwin", description="Audience (``aud``) every accepted token must name."
    )
    auth_roles_claim: str = Field(
        default="roles",
        description="Dotted path of the claim holding an OIDC token's roles "
        "(Keycloak: realm_access.roles).",
    )
    auth_local_issuer: str = Field(
        default="citytwin",
        description="``iss`` of the tokens this twin signs itself (twin auth, POST /auth/token); "
        "set it to the public URL of the API to let other twins trust it as their provider.",
    )
    auth_token_ttl_s: float = Field(
        default=8 * 3600, gt=0, le=30 * 24 * 3600, description="Lifetime of a signed token, s."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Origins (scheme://host[:port]) whose web pages may call the API from a "
        "browser (CORS); a comma-separated list or a JSON array in TWIN_CORS_ORIGINS, '*' for "
        "any. Empty (the default): no CORS headers, same-origin pages only.",
    )
    audit: bool = Field(
        default=True,
        description="Record the audit trail of classified reads and of writes (turn it off "
        "only to measure what it costs: bench/access.py).",
    )
    max_reported_errors: int = Field(
        default=20, ge=1, description="How many bad rows an import lists before it stops."
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API reads, bytes (16 MiB by default: a city-sized "
        "GeoJSON polygon or flood GeoTIFF fits); a larger one is answered 413 at once.",
    )
    max_upload_bytes: int = Field(
        default=1 << 30,
        ge=1024,
        description="Largest OpenStreetMap extract the admin page's city set-up takes, bytes "
        "(1 GiB: Malta's extract is 4 MB, a Chinese province's a few hundred MB); streamed to "
        "disk, never held in memory.",
    )
    max_vertices: int = Field(
        default=20_000,
        ge=4,
        description="Most vertices a client geometry may have (one-map areas and lines, CQL2 "
        "filter geometries, closures, incidents, raster zones); more is a 400 naming the field. "
        "20,000 is 30 times the largest district of the sample city (629 vertices).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read arguments, then ``TWIN_*`` variables, then the city stored in the database."""
        stored = _StoredCity(settings_cls, init_settings, env_settings)
        return init_settings, env_settings, stored, dotenv_settings, file_secret_settings

    @field_validator("cors_origins", "database_read_urls", mode="before")
    @classmethod
    def _origins_are_a_list(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: a JSON array or comma-separated
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON array: {exc}") from exc
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("database_read_urls")
    @classmethod
    def _read_urls_are_postgresql(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_read_urls(value)

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin (scheme://host[:port], no path)"
                )
        return value

    @field_validator("metric_crs")
    @classmethod
    def _metric_crs_is_projected_in_metres(cls, value: str) -> str:
        crs = CRS.from_user_input(value)
        unit = crs.axis_info[0].unit_name if crs.axis_info else ""
        if not crs.is_projected or unit not in ("metre", "meter"):
            raise ValueError(f"{value} is not a projected CRS in metres")
        return value

    @field_validator("live_topic_prefix")
    @classmethod
    def _prefix_is_a_topic_level(cls, value: str) -> str:
        if value and (not value.endswith("/") or any(c in value for c in "#+\0")):
            raise ValueError("live_topic_prefix must end in '/' and hold no MQTT wildcard")
        return value

    @field_validator("city_bbox")
    @classmethod
    def _bbox_is_ordered(
        cls, value: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        minx, miny, maxx, maxy = value
        if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
            raise ValueError("city_bbox must be (min lon, min lat, max lon, max lat) in degrees")
        return value


@lru_cache
def get_settings() -> TwinSettings:
    """Return the settings read from the environment (cached for the process).

    Returns
    -------
    TwinSettings
        The current settings.
    """
    return TwinSettings()
