"""The PostGIS store: engines, read replicas, database creation and schema migrations.

Reads and writes
----------------
Writes (``get_engine(url).begin()``) always go to the primary, the database ``url`` names.
Read-only work lent by :func:`cursor` (and :func:`owner_cursor`, :func:`read_connection`) goes
to the primary's read replicas when there are any (``TWIN_DATABASE_READ_URLS``, or
:func:`set_read_urls`): streaming physical copies (``scripts/replica.sh``), so the same roles,
grants and row-level security policies apply there as on the primary.

- A replica that refuses or times out a connection is left alone for
  ``TWIN_DATABASE_READ_RETRY_S`` (5 s): reads go to the next replica, then to the primary.
- Read-your-writes within a process: after this process committed a write on the primary, a
  read goes to a replica only once the replica has replayed the primary's WAL up to where it
  was after that write (``pg_last_wal_replay_lsn()``, asked in the same round trip as the
  read's settings); until then it goes to the primary. Writes made by other processes are
  visible on a replica within its replication lag (``bench/replica.py`` measures it).
- :func:`primary_reads` sends a block's reads to the primary whatever the replicas say (a
  check that must see the latest committed state, such as an ``If-Match`` precondition);
  :func:`current_reads` lets a replica serve them once it is as new as the primary was when
  the block began (a tile rendered for versions the primary announced).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from layers import overlay
from layers.settings import check_read_urls, get_settings

MIGRATIONS = Path(__file__).with_name("migrations")
_log = logging.getLogger(__name__)
_T = TypeVar("_T")


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
        _track_writes(engine, database_url(url))
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
    row classified above it, whatever the query. The connection is to a read replica of the
    database when there is a healthy one that has seen this process's writes (see the module's
    notes), else to the database itself.

    Parameters
    ----------
    url
        Database URL (the primary); ``None`` for the configured one.

    Yields
    ------
    psycopg.Cursor
        The cursor; its transaction is rolled back when the block ends.
    """

    def lend(engine_url: str | None, stack: ExitStack, replay: bool) -> tuple[Any, str | None]:
        connection = stack.enter_context(get_engine(engine_url).connect())
        raw = connection.connection.driver_connection
        assert raw is not None
        cur = stack.enter_context(raw.cursor())
        timeout_ms = int(get_settings().statement_timeout_s * 1000)
        # ints, not user text. No JIT: a read under row-level security is planned without its
        # spatial index (PostGIS's operators are not leakproof) and costed past jit_above_cost,
        # then compiled anew for every query (6-19 ms of a 1-3 ms read: bench/scenarios.py)
        statements = f"SET LOCAL statement_timeout = {timeout_ms}; SET LOCAL jit = off"
        clearance = _CLEARANCE.get()
        if clearance is not None:
            statements += (
                f"; SET LOCAL ROLE {READER_ROLE}; SET LOCAL twin.clearance = '{int(clearance)}'"
            )
        if overlay.active() is not None:
            # a layer read in a scenario is a small union (the base's rows it keeps, its own):
            # planned in parallel it waited on two workers 14 times longer than it worked
            # (bench/scenarios.py, one-map around)
            statements += "; SET LOCAL max_parallel_workers_per_gather = 0"
        if not replay:
            cur.execute(statements)
            return cur, None
        # one round trip: where the replica has replayed to, then the settings
        cur.execute(f"SELECT pg_last_wal_replay_lsn()::text; {statements}")
        row = cur.fetchone()
        return cur, None if row is None else row[0]

    with ExitStack() as stack:
        yield _on_a_replica(url, stack, lend)


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


@contextmanager
def read_connection(url: str | None = None) -> Iterator[sa.Connection]:
    """Lend a SQLAlchemy connection for reading, on a read replica when there is a usable one.

    A replica is used as :func:`cursor` chooses one (healthy, and caught up with this
    process's writes); else the database itself. For read-only code written against
    SQLAlchemy (``get_engine(url).connect()``); no clearance or statement timeout is set (use
    :func:`cursor` for a caller's reads).

    Parameters
    ----------
    url
        Database URL (the primary); ``None`` for the configured one.

    Yields
    ------
    sqlalchemy.Connection
        The connection; whatever it did is rolled back when the block ends.
    """

    def lend(engine_url: str | None, stack: ExitStack, replay: bool) -> tuple[Any, str | None]:
        connection = stack.enter_context(get_engine(engine_url).connect())
        if not replay:
            return connection, None
        lsn = connection.execute(sa.text("SELECT pg_last_wal_replay_lsn()::text")).scalar()
        return connection, lsn

    with ExitStack() as stack:
        yield _on_a_replica(url, stack, lend)


# -- read replicas -------------------------------------------------------------------------------

#: libpq's connect timeout for a replica, s: a replica that does not answer in this long is
#: taken for down (libpq's smallest effective value is 2 s).
REPLICA_CONNECT_TIMEOUT_S = 2
#: A block's reads go to the primary (:func:`primary_reads`).
_PRIMARY_ONLY: ContextVar[bool] = ContextVar("twin_primary_reads", default=False)
#: The WAL position a block's replica reads must have been replayed to (:func:`current_reads`).
_AT_LEAST: ContextVar[int] = ContextVar("twin_reads_at_least", default=0)
#: Read URLs given in code (:func:`set_read_urls`), by primary URL; they take precedence.
_GIVEN_READ_URLS: dict[str, tuple[str, ...]] = {}
#: Replica URL -> monotonic time before which it is not tried again.
_DOWN: dict[str, float] = {}
#: Primary URL -> number of write commits this process made there (see _track_writes).
_WRITES: dict[str, int] = {}
#: Primary URL -> (write count when asked, the primary's WAL insert position then).
_WRITTEN_TO: dict[str, tuple[int, int]] = {}
_REPLICAS_LOCK = threading.Lock()
#: Errors that mean "this server cannot be used now", not "this query is wrong".
_UNREACHABLE: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


@contextmanager
def primary_reads() -> Iterator[None]:
    """Send a block's reads (:func:`cursor`, :func:`read_connection`) to the primary.

    For a read that must see the latest committed state whoever wrote it (a precondition
    checked before a write, a read right after another process's write).

    Yields
    ------
    None
    """
    token = _PRIMARY_ONLY.set(True)
    try:
        yield
    finally:
        _PRIMARY_ONLY.reset(token)


@contextmanager
def current_reads(url: str | None = None) -> Iterator[None]:
    """Make a block's reads at least as new as the primary is at its start.

    A replica serves them only once it has replayed the primary's WAL up to where it was when
    the block began; else the primary does. One query on the primary on entry (when the
    database has replicas). For reads that must agree with something learnt from the primary,
    such as a tile rendered for layer versions a NOTIFY announced: rendered from a replica that
    has not replayed the change yet, it would be cached under the new version with old content.

    Parameters
    ----------
    url
        The primary's database URL; ``None`` for the configured one.

    Yields
    ------
    None
    """
    if not read_urls(url) or _PRIMARY_ONLY.get():
        yield
        return
    with get_engine(url).connect() as connection:
        position = connection.execute(
            sa.text(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                "ELSE pg_current_wal_insert_lsn() END)::text"
            )
        ).scalar()
    token = _AT_LEAST.set(max(_AT_LEAST.get(), _lsn(position) if position else 0))
    try:
        yield
    finally:
        _AT_LEAST.reset(token)


def set_read_urls(url: str | None, read_urls: list[str] | tuple[str, ...] | None) -> None:
    """Give the read replicas of a database in code (over ``TWIN_DATABASE_READ_URLS``).

    Parameters
    ----------
    url
        The primary's database URL; ``None`` for the configured one.
    read_urls
        Replica URLs, tried in order; a URL naming no database reads the primary's database
        name. ``None`` forgets what was given (the settings decide again); an empty list
        turns replicas off for this database.

    Raises
    ------
    ValueError
        If a URL is not a PostgreSQL URL with a host.
    """
    primary = database_url(url)
    if read_urls is None:
        _GIVEN_READ_URLS.pop(primary, None)
        return
    _GIVEN_READ_URLS[primary] = check_read_urls(tuple(read_urls))


def read_urls(url: str | None = None) -> tuple[str, ...]:
    """Return the read replicas of a database, in the order reads try them.

    Parameters
    ----------
    url
        The primary's database URL; ``None`` for the configured one.

    Returns
    -------
    tuple of str
        ``postgresql+psycopg://`` URLs with the database name filled in and libpq's
        ``connect_timeout`` (:data:`REPLICA_CONNECT_TIMEOUT_S`) unless given; empty when reads
        go to the primary only. The settings' ``database_read_urls`` belong to the settings'
        ``database_url``; :func:`set_read_urls` gives others.
    """
    primary = database_url(url)
    given = _GIVEN_READ_URLS.get(primary)
    if given is None:
        settings = get_settings()
        if not settings.database_read_urls or database_url(settings.database_url) != primary:
            return ()
        given = settings.database_read_urls
    return _resolved_read_urls(primary, given)


@lru_cache(maxsize=64)
def _resolved_read_urls(primary: str, given: tuple[str, ...]) -> tuple[str, ...]:
    database = make_url(primary).database
    resolved = []
    for text in given:
        parsed = make_url(database_url(text))
        if not parsed.database:
            parsed = parsed.set(database=database)
        if "connect_timeout" not in parsed.query:
            parsed = parsed.update_query_dict({"connect_timeout": str(REPLICA_CONNECT_TIMEOUT_S)})
        resolved.append(parsed.render_as_string(hide_password=False))
    return tuple(dict.fromkeys(resolved))


def replica_backoff() -> dict[str, float]:
    """Return the replicas left alone after a failed connection, with the seconds left.

    Returns
    -------
    dict
        Replica URL (as :func:`read_urls` gives it) -> seconds before it is tried again.
    """
    now = time.monotonic()
    with _REPLICAS_LOCK:
        return {url: until - now for url, until in _DOWN.items() if until > now}


def forget_replica_backoff() -> None:
    """Try every replica again at the next read (after a replica was restarted, say)."""
    with _REPLICAS_LOCK:
        _DOWN.clear()


def _lsn(text: str) -> int:
    """Return a pg_lsn's text (``16/B374D848``) as a number that orders as the WAL does."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _track_writes(engine: Engine, primary: str) -> None:
    """Count the write commits made through ``engine``, for read-your-writes on replicas.

    Only while the database has read replicas (no cost otherwise). A commit counts when its
    transaction has an xid (it changed something, or autocommit); it is counted at
    the commit and again when the connection is back in the pool (the commit then done): the
    first read after either asks the primary where its WAL is.
    """

    def committed(connection: sa.Connection) -> None:
        if not read_urls(primary):  # no replica to keep up with: nothing to count, no query
            return
        raw: Any = connection.connection.driver_connection
        try:  # a transaction that changed nothing (a DELETE of no row) has no xid: no write
            if raw.autocommit:  # each statement committed itself: assume one wrote
                raise AttributeError
            row = raw.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL").fetchone()
            wrote = row is None or bool(row[0])
        except (psycopg.Error, AttributeError):  # a failed transaction, another driver
            wrote = True
        if wrote:
            connection.info["twin_committed"] = True
            _wrote(primary)

    def checked_in(_dbapi: Any, record: Any) -> None:
        if record is not None and record.info.pop("twin_committed", False):
            _wrote(primary)

    event.listen(engine, "commit", committed)
    event.listen(engine.pool, "checkin", checked_in)


def _wrote(primary: str) -> None:
    with _REPLICAS_LOCK:
        _WRITES[primary] = _WRITES.get(primary, 0) + 1


def _required_lsn(url: str | None, primary: str) -> int:
    """Return the WAL position a replica must have replayed to serve our reads (0: any)."""
    with _REPLICAS_LOCK:
        writes = _WRITES.get(primary, 0)
        known = _WRITTEN_TO.get(primary)
    if writes == 0:
        return 0
    if known is not None and known[0] == writes:
        return known[1]
    try:
        with get_engine(url).connect() as connection:
            position = connection.execute(
                sa.text(
                    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                    "ELSE pg_current_wal_insert_lsn() END)::text"
                )
            ).scalar()
    except _UNREACHABLE:  # the primary is down: a replica's copy is the only one to read
        return 0 if known is None else known[1]
    lsn = _lsn(position) if position else 0
    with _REPLICAS_LOCK:
        known = _WRITTEN_TO.get(primary)
        if known is None or known[0] <= writes:
            _WRITTEN_TO[primary] = (writes, lsn)
    return lsn


def _on_a_replica(
    url: str | None,
    stack: ExitStack,
    lend: Callable[[str | None, ExitStack, bool], tuple[_T, str | None]],
) -> _T:
    """Lend a reading handle (``lend``) on the first usable replica, else on the primary.

    ``lend(engine_url, stack, replay)`` opens the handle on ``stack`` and, when ``replay``,
    also returns the server's ``pg_last_wal_replay_lsn()`` text (None on a primary).
    """
    primary = database_url(url)
    replicas = () if _PRIMARY_ONLY.get() else read_urls(url)
    if replicas:
        required: int | None = None
        for replica in replicas:
            with _REPLICAS_LOCK:
                if _DOWN.get(replica, 0.0) > time.monotonic():
                    continue
            if required is None:
                required = max(_required_lsn(url, primary), _AT_LEAST.get())
            try:
                with ExitStack() as attempt:
                    handle, replayed = lend(replica, attempt, True)
                    if replayed is not None and _lsn(replayed) < required:
                        continue  # behind this process's writes: the next one, or the primary
                    stack.enter_context(attempt.pop_all())
                    return handle
            except _UNREACHABLE as exc:
                _left_alone(replica, exc)
    handle, _ = lend(url, stack, False)
    return handle


def _left_alone(replica: str, exc: BaseException) -> None:
    retry_s = get_settings().database_read_retry_s
    with _REPLICAS_LOCK:
        _DOWN[replica] = time.monotonic() + retry_s
    get_engine(replica).dispose()  # its pooled connections are dead
    where = make_url(replica)
    _log.warning(
        "read replica %s:%s unusable (%s); reads go elsewhere for %.0f s",
        where.host,
        where.port,
        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        retry_s,
    )


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
