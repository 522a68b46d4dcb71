"""The PostGIS store: engines, database creation and schema migrations."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url

from layers.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


class StoreError(RuntimeError):
    """The database cannot be reached or is not set up."""


def database_url(url: str | None = None) -> str:
    """Return ``url``, or the configured ``TWIN_DATABASE_URL``, with the psycopg 3 driver.

    Parameters
    ----------
    url
        A SQLAlchemy or libpq-style URL; ``None`` for the configured one.

    Returns
    -------
    str
        A ``postgresql+psycopg://`` URL.
    """
    return _with_psycopg(url or get_settings().database_url)


@lru_cache(maxsize=64)
def _with_psycopg(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


#: Engines kept per process, most recently used last; past :data:`MAX_ENGINES` the least
#: recently used is disposed (its pooled connections closed, not left to the garbage collector).
_ENGINES: OrderedDict[str | None, Engine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()
MAX_ENGINES = 16


def get_engine(url: str | None = None) -> Engine:
    """Return a pooled engine for the store (one per URL, per process).

    At most :data:`MAX_ENGINES` are kept; the least recently used one beyond is disposed.

    Parameters
    ----------
    url
        Database URL; ``None`` for the configured one.

    Returns
    -------
    sqlalchemy.engine.Engine
        The engine.
    """
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is not None:
            _ENGINES.move_to_end(url)
            return engine
        engine = sa.create_engine(database_url(url), pool_pre_ping=True, future=True)
        _ENGINES[url] = engine
        while len(_ENGINES) > MAX_ENGINES:
            _, evicted = _ENGINES.popitem(last=False)
            evicted.dispose()
    return engine


#: The clearance reads run under in this context (:func:`reading_at`); None: the store's owner.
_CLEARANCE: ContextVar[int | None] = ContextVar("twin_read_clearance", default=None)
#: The database role restricted reads run as; its row-level security policies (migration 0012)
#: let it read only rows at or below ``twin.clearance``.
READER_ROLE = "twin_reader"


@contextmanager
def reading_at(clearance: int | None) -> Iterator[None]:
    """Run a block's reads (:func:`cursor`) under a clearance, or as the owner (None).

    :func:`layers.access.acting_as` sets it with a caller's grant; code needs it only directly
    to read as the owner inside a request (a cache shared by every caller, say).

    Parameters
    ----------
    clearance
        0 (public) to 3 (core), or None for the owner.

    Yields
    ------
    None
    """
    token = _CLEARANCE.set(clearance)
    try:
        yield
    finally:
        _CLEARANCE.reset(token)


@contextmanager
def cursor(url: str | None = None) -> Iterator[psycopg.Cursor[Any]]:
    """Lend a psycopg cursor on a pooled connection, for reading, under a statement timeout.

    Under a clearance (:func:`reading_at`, set per request by the API) the transaction runs as
    the ``twin_reader`` role with ``twin.clearance`` set: row-level security then hides every
    row classified above it, whatever the query.

    Parameters
    ----------
    url
        Database URL; ``None`` for the configured one.

    Yields
    ------
    psycopg.Cursor
        The cursor; its transaction is rolled back when the block ends.
    """
    with get_engine(url).connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            timeout_ms = int(get_settings().statement_timeout_s * 1000)
            statements = f"SET LOCAL statement_timeout = {timeout_ms}"  # ints, not user text
            clearance = _CLEARANCE.get()
            if clearance is not None:
                statements += (
                    f"; SET LOCAL ROLE {READER_ROLE}; SET LOCAL twin.clearance = '{int(clearance)}'"
                )
            cur.execute(statements)
            yield cur


@contextmanager
def owner_cursor(url: str | None = None) -> Iterator[psycopg.Cursor[Any]]:
    """Lend a reading cursor as the store's owner, whatever clearance is in force.

    For what no caller's clearance may narrow: the access rules themselves, caches shared by
    every caller (the road graph). Never hand its rows to a caller unchecked.

    Parameters
    ----------
    url
        Database URL; ``None`` for the configured one.

    Yields
    ------
    psycopg.Cursor
        The cursor; its transaction is rolled back when the block ends.
    """
    with reading_at(None), cursor(url) as cur:
        yield cur


def ensure_database(url: str | None = None) -> bool:
    """Create the database named in ``url`` if it does not exist.

    Parameters
    ----------
    url
        Database URL; ``None`` for the configured one.

    Returns
    -------
    bool
        True if the database was created, False if it was there already.

    Raises
    ------
    StoreError
        If the server cannot be reached.
    """
    target = make_url(database_url(url))
    name = target.database
    if not name:
        raise StoreError("the database URL names no database")
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
            return True
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot reach PostgreSQL at {target.host}:{target.port}: {exc}") from exc
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the database named in ``url``, closing its connections (for scratch databases).

    Parameters
    ----------
    url
        Database URL.
    """
    target = make_url(database_url(url))
    get_engine(database_url(url)).dispose()
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(str(target.database))
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        admin.dispose()


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, *, revision: str = "head") -> str | None:
    """Create the database if needed and migrate its schema to ``revision``.

    Parameters
    ----------
    url
        Database URL; ``None`` for the configured one.
    revision
        Alembic revision to reach, ``head`` by default.

    Returns
    -------
    str or None
        The revision the database is at afterwards.
    """
    resolved = database_url(url)
    ensure_database(resolved)
    command.upgrade(_alembic_config(resolved), revision)
    return current_revision(resolved)


def current_revision(url: str | None = None) -> str | None:
    """Return the schema revision of the database, or None before the first migration.

    Parameters
    ----------
    url
        Database URL; ``None`` for the configured one.

    Returns
    -------
    str or None
        The Alembic revision id.
    """
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """Return the newest migration's revision id.

    Returns
    -------
    str or None
        The Alembic head revision.
    """
    return ScriptDirectory.from_config(_alembic_config("postgresql://")).get_current_head()
