"""Layer versions held in memory, pushed by PostgreSQL LISTEN/NOTIFY: no query per tile.

Every change of a counter in ``layer_versions`` is NOTIFYed on :data:`CHANNEL` (migration
0016) when its transaction commits. A :class:`VersionWatcher` per process and database keeps
one connection that LISTENs, reads the whole table once after each (re)connect (LISTEN first,
so no change falls between the two) and applies each notification as it arrives; a lost
connection is opened again, with a back-off, and read again in full.

:func:`watched_versions` answers from memory while the watcher is listening; before its first
read, while it is reconnecting, or on a store without migration 0016 it reads the table, as
:func:`layers.queries.layer_versions` does, so an answer is never older than the last
notification the server sent. A request also takes the notifications already waiting on the
socket before it answers (a non-blocking read). A process sees its own writes at once: each
commit it makes through SQLAlchemy is counted (per database, when the connection goes back to
the pool, so after the commit) and the next answer after one reads the counters from the table
once, as the notification may still be on its way.

Counters only grow: a notification never lowers one (two notifications of a layer may be read
in either order across a reconnect); a full read replaces them all.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Sequence

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import Pool

from layers.database import database_url
from layers.queries import layer_versions

#: The channel migration 0016's trigger notifies on.
CHANNEL = "twin_layer_versions"
#: Longest wait between two attempts to reconnect, in seconds.
MAX_BACKOFF_S = 5.0
#: How long the listening thread blocks on its socket before looking whether it should stop.
POLL_S = 1.0
#: How often a watcher over a store without migration 0016 looks again, in seconds.
RECHECK_S = 30.0

_log = logging.getLogger(__name__)


def _conninfo(url: str) -> str:
    """Return the libpq URL of a SQLAlchemy URL (no driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _store(url: str | URL) -> str:
    """Return ``host:port/database`` of a URL: which store a commit went to."""
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"


#: Commits this process made, per store (counted when their connection went back to the pool).
_COMMITS: dict[str, int] = {}
_COMMITS_LOCK = threading.Lock()


@event.listens_for(Engine, "commit")
def _committing(conn: Connection) -> None:
    conn.info["twin_versions_commit"] = _store(conn.engine.url)


@event.listens_for(Pool, "checkin")
def _committed(_dbapi_connection: object, record: object) -> None:
    info = getattr(record, "info", None)
    store = info.pop("twin_versions_commit", None) if info is not None else None
    if store is not None:
        with _COMMITS_LOCK:
            _COMMITS[store] = _COMMITS.get(store, 0) + 1


class VersionWatcher:
    """The counters of ``layer_versions`` of one database, kept current by a listening thread.

    Parameters
    ----------
    url
        SQLAlchemy URL of the database (the primary: notifications are sent where the
        transactions commit).

    Notes
    -----
    The thread is a daemon started by :meth:`start`; :meth:`stop` closes its connection.
    It stops by itself when the database no longer exists (dropped).
    """

    def __init__(self, url: str):
        self.url = url
        self._versions: dict[str, int] = {}
        self._live = False  # True while listening and read in full
        self._lock = threading.Lock()  # the connection and the counters
        self._stopping = threading.Event()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread: threading.Thread | None = None
        self.connects = 0  # how many times it connected and read the table (for tests)
        self.store = _store(url)
        self.synced = -1  # this process's commits to the store the counters in memory follow
        self.gone = False  # the database was dropped: the watcher has stopped

    @property
    def live(self) -> bool:
        """Whether the counters in memory are current (listening, read in full)."""
        return self._live

    def start(self) -> None:
        """Start the listening thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"layer-versions {self.url.rsplit('/', 1)[-1]}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening and close the connection.

        Parameters
        ----------
        timeout_s
            How long to wait for the thread to end, in seconds.
        """
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self._close()

    def versions(self, layer_ids: Sequence[str]) -> tuple[int, ...] | None:
        """Return the counters of some layers from memory, or None when they may be stale.

        Notifications waiting on the connection's socket are applied first (non-blocking).

        Parameters
        ----------
        layer_ids
            Layers (any name: an unknown one counts 0, as in the table).

        Returns
        -------
        tuple of int or None
            One counter per layer, in order; None while the watcher is not listening.
        """
        if not self._live or self.synced != _COMMITS.get(self.store, 0):
            return None
        with self._lock:
            if not self._drain(0.0):
                return None
            return tuple(self._versions.get(layer_id, 0) for layer_id in layer_ids)

    def merge(self, layer_ids: Sequence[str], versions: Sequence[int], *, commits: int) -> None:
        """Take counters read from the table (never lowering one) after this process's commits.

        Parameters
        ----------
        layer_ids
            Layers read.
        versions
            Their counters, in order.
        commits
            This process's commit count to the store taken before the read.
        """
        with self._lock:
            for layer_id, version in zip(layer_ids, versions, strict=True):
                self._apply(f"{layer_id}:{version}")
            if self._live:
                self.synced = max(self.synced, commits)

    # --- the listening thread -----------------------------------------------------------------

    def _apply(self, payload: str) -> None:
        layer, _, version = payload.rpartition(":")
        try:
            value = int(version)
        except ValueError:
            _log.warning("ignored a malformed layer version notification %r", payload)
            return
        if value > self._versions.get(layer, -1):
            self._versions[layer] = value

    def _drain(self, timeout_s: float) -> bool:
        """Apply the notifications on the socket, waiting up to ``timeout_s`` for the first.

        Called with the lock held (or, waiting, from the thread alone); False when the
        connection is lost (the watcher is then not live).
        """
        conn = self._conn
        if conn is None or conn.closed:
            self._live = False
            return False
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], timeout_s)
            if readable:
                pgconn = conn.pgconn
                pgconn.consume_input()  # raises on a lost connection (EOF)
                while (note := pgconn.notifies()) is not None:
                    self._apply(note.extra.decode())
                if pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the listening connection was lost")
        except (psycopg.Error, OSError, ValueError):
            self._live = False
            return False
        return True

    def _connect(self) -> bool:
        """Connect, LISTEN and read every counter; False on a store without migration 0016."""
        conn: psycopg.Connection[tuple[object, ...]] = psycopg.connect(
            _conninfo(self.url),
            autocommit=True,
            connect_timeout=5,
            application_name=f"twin layer versions {os.getpid()}",
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            conn.add_notify_handler(lambda note: self._apply(note.payload))
            notifying = conn.execute(
                "SELECT 1 FROM pg_trigger WHERE tgname = 'layer_versions_notify'"
            ).fetchone()
            if notifying is None:
                conn.close()
                return False
            conn.execute(f"LISTEN {CHANNEL}")  # a constant, not user text
            commits = _COMMITS.get(self.store, 0)  # before the read: it follows them
            with self._lock:
                self._versions = {}
                rows = conn.execute("SELECT layer, version FROM layer_versions").fetchall()
                for layer, version in rows:
                    self._apply(f"{layer}:{version}")
                self._conn = conn
                self.synced = commits
                self._live = True
                self.connects += 1
        except BaseException:
            conn.close()
            raise
        return True

    def _close(self) -> None:
        with self._lock:
            self._live = False
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                if not self._connect():
                    self._stopping.wait(RECHECK_S)
                    continue
                backoff = 0.1
                while not self._stopping.is_set():
                    conn = self._conn
                    if conn is None or conn.closed:
                        break
                    try:  # wait for data without the lock: requests drain meanwhile
                        readable, _, _ = select.select([conn.fileno()], [], [], POLL_S)
                    except (OSError, ValueError):
                        break
                    if readable:
                        with self._lock:
                            if not self._drain(0.0):
                                break
            except psycopg.errors.InvalidCatalogName:
                self.gone = True  # the database was dropped: nothing to watch
                break
            except Exception as error:  # a daemon thread: log, wait, reconnect
                _log.info("layer versions listener: %s; reconnecting", error)
            self._close()
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        self._close()
        _forget(self)


_WATCHERS: dict[tuple[int, str], VersionWatcher] = {}
_WATCHERS_LOCK = threading.Lock()


def _forget(watcher: VersionWatcher) -> None:
    with _WATCHERS_LOCK:
        key = (os.getpid(), watcher.url)
        if _WATCHERS.get(key) is watcher:
            del _WATCHERS[key]


def watcher(url: str | None = None) -> VersionWatcher:
    """Return this process's watcher of a database, started on first use.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    VersionWatcher
        The watcher (a forked process starts its own).
    """
    where = database_url(url)
    key = (os.getpid(), where)
    with _WATCHERS_LOCK:
        found = _WATCHERS.get(key)
        if found is None:
            found = _WATCHERS[key] = VersionWatcher(where)
            found.start()
    return found


def watched_versions(layer_ids: Sequence[str], *, url: str | None = None) -> tuple[int, ...]:
    """Return the change counters of layers: from memory when listening, else from the table.

    Parameters
    ----------
    layer_ids
        Layers.
    url
        Database URL; the configured one by default.

    Returns
    -------
    tuple of int
        One counter per layer, in the given order (0 for a layer without a counter).
    """
    watching = watcher(url)
    commits = _COMMITS.get(watching.store, 0)
    known = watching.versions(layer_ids)
    if known is not None:
        return known
    read = layer_versions(layer_ids, url=url)
    watching.merge(layer_ids, read, commits=commits)
    return read


def stop_watchers() -> None:
    """Stop every watcher of this process (tests, shutdown)."""
    with _WATCHERS_LOCK:
        found = list(_WATCHERS.values())
        _WATCHERS.clear()
    for each in found:
        each.stop()
