"""The audit trail: who read or wrote what, when, from where and why, in a hash-chained log.

Every read of a layer above public and every write becomes an :class:`AuditEvent` in
``audit_log`` (migration 0011), an append-only table whose rows are hash-chained by the
database itself: ``hash = sha256(prev_hash || audit_canonical(row))``. Two ways in:

- :class:`AuditLog`, for reads on the request path: :meth:`AuditLog.record` only queues the
  event (it never blocks and never raises); one background thread per process writes the queue
  in batches, one statement each, and keeps the events while the database is unreachable.
- :func:`record_now`, for writes: the event is inserted inside the caller's open transaction,
  so the edit and its audit row commit together or not at all.

:func:`verify` walks the chain and names the first row that was changed, deleted or reordered;
:func:`export` writes a period as CSV. ``twin audit verify`` and ``twin audit export`` (in
:mod:`twin.audit`) are the same from the shell.
"""

from __future__ import annotations

import atexit
import csv
import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import errors as pg_errors
from psycopg import sql
from sqlalchemy.engine import make_url

from layers.database import database_url

log = logging.getLogger(__name__)

#: Feature ids kept per event; :attr:`AuditEvent.feature_count` keeps how many there were.
MAX_IDS = 256
#: The ``prev_hash`` of the chain's first row (migration 0011).
GENESIS = bytes(32)
#: Longest wait between two attempts to reach an unreachable database, s.
MAX_RETRY_S = 5.0

#: The columns an event fills, with their PostgreSQL types.
_COLUMNS = (
    ("at", "timestamptz"),
    ("actor", "text"),
    ("role", "text"),
    ("action", "text"),
    ("layer", "text"),
    ("ids", "text[]"),
    ("bbox", "float8[]"),
    ("feature_count", "int4"),
    ("client", "text"),
    ("purpose", "text"),
    ("request", "text"),
    ("status", "int4"),
)
_NAMES = tuple(name for name, _ in _COLUMNS)
#: A batch in one statement: the events as one JSON array, inserted in its order (the chain's).
_BATCH = sql.SQL(
    "INSERT INTO audit_log ({names}) SELECT {names} FROM ROWS FROM "
    "(jsonb_to_recordset(%s::jsonb) AS ({types})) WITH ORDINALITY AS e({names}, n) ORDER BY n"
).format(
    names=sql.SQL(", ").join(map(sql.Identifier, _NAMES)),
    types=sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in _COLUMNS
    ),
)
_INSERT = sql.SQL("INSERT INTO audit_log ({}) VALUES ({}) RETURNING id").format(
    sql.SQL(", ").join(map(sql.Identifier, _NAMES)),
    sql.SQL(", ").join([sql.Placeholder()] * len(_NAMES)),
)
#: Every column of a row as export and verify read it.
_EXPORT_COLUMNS = ("id", *_NAMES, "prev_hash", "hash")
#: The text fields of an event.
_TEXT_FIELDS = ("action", "actor", "role", "layer", "client", "purpose", "request")
#: Errors of the rows themselves: retrying the same rows cannot help.
_ROW_ERRORS = (pg_errors.DataError, pg_errors.IntegrityError)


def _clean(text: str) -> str:
    """Return ``text`` as PostgreSQL's text holds it: NUL as U+FFFD, a lone surrogate as ``?``."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One access to record.

    Parameters
    ----------
    action
        What was done: ``read``, ``create``, ``replace``, ``update``, ``delete``, ``sign-in``,
        ``token``, ``admin``, ...
    actor
        The user's name; ``anonymous`` (the default) for a caller who did not sign in.
    role
        The role the caller acted in.
    layer
        The layer (collection id) touched, if any.
    ids
        Feature ids read or written; only the first :data:`MAX_IDS` are kept (as a tuple).
    bbox
        The bounding box asked for, (min lon, min lat, max lon, max lat) in EPSG:4326 degrees
        (kept as a tuple).
    feature_count
        How many features were read or written; the number of ``ids`` when not given.
    client
        Where the request came from (the client's IP address).
    purpose
        Why, as the caller said it in the ``X-Purpose`` header.
    request
        Method, path and query of the request (``GET /collections/cameras/items?limit=10``).
    status
        The HTTP status of the answer.
    at
        When; now (UTC) by default. A naive time is taken as UTC.

    Raises
    ------
    ValueError
        If ``action`` is empty, or ``bbox`` is not four finite numbers.
    """

    action: str
    actor: str = "anonymous"
    role: str | None = None
    layer: str | None = None
    ids: Sequence[str] | None = None
    bbox: Sequence[float] | None = None
    feature_count: int | None = None
    client: str | None = None
    purpose: str | None = None
    request: str = ""
    status: int | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        """Check the event and bring it to what the table holds."""
        if not self.action:
            raise ValueError("action: must not be empty")
        fix = object.__setattr__
        for name in _TEXT_FIELDS:
            text = getattr(self, name)
            if text is not None and (not text.isascii() or "\x00" in text):
                fix(self, name, _clean(text))
        if self.ids is not None:
            ids = tuple(self.ids)
            if self.feature_count is None:
                fix(self, "feature_count", len(ids))
            fix(self, "ids", tuple(_clean(str(i)) for i in ids[:MAX_IDS]))
        if self.bbox is not None:
            bbox = tuple(float(v) for v in self.bbox)
            if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
                raise ValueError(f"bbox: expected four finite numbers, got {self.bbox!r}")
            fix(self, "bbox", bbox)
        if self.at.tzinfo is None:
            fix(self, "at", self.at.replace(tzinfo=UTC))

    def document(self) -> dict[str, Any]:
        """Return the event as a JSON object of the table's columns (time in ISO 8601).

        Returns
        -------
        dict
            Column name to value.
        """
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "layer": self.layer,
            "ids": self.ids,
            "bbox": self.bbox,
            "feature_count": self.feature_count,
            "client": self.client,
            "purpose": self.purpose,
            "request": self.request,
            "status": self.status,
        }

    def row(self) -> tuple[Any, ...]:
        """Return the event's values in the order of the table's columns (``_COLUMNS``).

        Returns
        -------
        tuple
            The values, arrays as lists.
        """
        return (
            self.at,
            self.actor,
            self.role,
            self.action,
            self.layer,
            None if self.ids is None else list(self.ids),
            None if self.bbox is None else list(self.bbox),
            self.feature_count,
            self.client,
            self.purpose,
            self.request,
            self.status,
        )


def _conninfo(url: str | None) -> str:
    """Return the libpq URL of a store URL (``None``: the configured one)."""
    parsed = make_url(database_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _connect(url: str | None, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection to the store for the audit (its own, not the pool's)."""
    return psycopg.connect(
        _conninfo(url), connect_timeout=5, application_name="twin-audit", **kwargs
    )


def _insert(connection: psycopg.Connection[Any], events: Sequence[AuditEvent]) -> None:
    """Append events in one statement, in one transaction."""
    document = json.dumps([event.document() for event in events], ensure_ascii=False)
    with connection.transaction():
        connection.execute(_BATCH, (document,))


def record_now(
    connection: sa.engine.Connection | psycopg.Connection[Any] | psycopg.Cursor[Any],
    event: AuditEvent,
) -> int:
    """Write one event inside the caller's open transaction; return its row id.

    For writes: the edit and its audit row then commit together or not at all. The row takes
    the chain's lock until the transaction ends, so call it last, just before committing.

    Parameters
    ----------
    connection
        The transaction's connection: SQLAlchemy's (``get_engine(url).begin()``) or psycopg's
        (connection or cursor). It must act as a database role allowed to insert into
        ``audit_log`` (the store's owner), not as ``twin_reader``.
    event
        What to record.

    Returns
    -------
    int
        The ``audit_log`` row's id.

    Raises
    ------
    psycopg.Error
        As the database raises it (the caller's transaction then fails: nothing is written
        without its audit row).
    """
    if isinstance(connection, sa.engine.Connection):
        raw = connection.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        connection = raw
    row = connection.execute(_INSERT, event.row()).fetchone()
    assert row is not None
    return int(row[0])


class AuditLog:
    """A per-process writer of audit events that never slows nor fails the caller.

    :meth:`record` appends the event to a queue and returns; one background thread writes the
    queue in batches (one statement and one transaction each) every ``flush_interval_s``
    or as soon as ``max_batch`` events wait. While the database cannot be reached it keeps up
    to ``max_pending`` events (counting the ones it has to drop in :attr:`dropped`) and tries
    again, waiting longer each time up to :data:`MAX_RETRY_S`. Thread-safe. Events still
    pending when the process exits are flushed (for up to 5 s) by an ``atexit`` hook.

    Parameters
    ----------
    url
        Database URL; ``None`` for ``TWIN_DATABASE_URL``.
    flush_interval_s
        Longest time an event waits before it is written, s (default 0.5: an audit row lands
        within a second, while a busy API writes about a thousand rows per statement).
    max_batch
        Most events written by one statement.
    max_pending
        Most events kept while the database is unreachable; newer ones are dropped and counted.

    Attributes
    ----------
    written
        Events written so far.
    dropped
        Events lost: the queue was full, or the log was closed.
    rejected
        Events the database refused as data (never expected: a bug to report).
    last_error
        The last error writing met, or None.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        flush_interval_s: float = 0.5,
        max_batch: int = 1000,
        max_pending: int = 100_000,
    ) -> None:
        if flush_interval_s <= 0 or max_batch < 1 or max_pending < 1:
            raise ValueError("flush_interval_s, max_batch and max_pending must be positive")
        self.url = url
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        self.last_error: BaseException | None = None
        self._pending: deque[AuditEvent] = deque()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closing = False
        self._closed = False
        self._failures = 0
        self._connection: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="twin-audit-writer", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    @property
    def pending(self) -> int:
        """Events queued and not yet written."""
        return len(self._pending)

    def record(self, event: AuditEvent) -> None:
        """Queue an event to be written; return at once, never raise.

        Parameters
        ----------
        event
            What to record.
        """
        with self._lock:
            if self._closed or len(self._pending) >= self.max_pending:
                self.dropped += 1
                return
            self._pending.append(event)
            if len(self._pending) % self.max_batch == 0:
                self._wake.set()

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Write every event queued so far, waiting up to ``timeout_s``.

        Parameters
        ----------
        timeout_s
            Longest wait, s; None to wait until written (forever if the database stays away).

        Returns
        -------
        bool
            True when nothing is left to write.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._drained:
            self._failures = 0  # a flush asks for an attempt now, not after the back-off
            self._wake.set()
            while self._pending and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._drained.wait(left)
            return not self._pending

    def close(self, timeout_s: float | None = 10.0) -> bool:
        """Flush (up to ``timeout_s``), stop the writer and close its connection.

        Events still unwritten then are counted in :attr:`dropped` and logged. Recording after
        closing drops the event. Closing twice does nothing.

        Parameters
        ----------
        timeout_s
            Longest wait for the flush, s.

        Returns
        -------
        bool
            True when every event recorded was written.
        """
        if self._closed:
            return not self._pending
        written = self.flush(timeout_s)
        with self._lock:
            self._closed = True
            self._closing = True
            lost = len(self._pending)
            self.dropped += lost
            self._pending.clear()
        self._wake.set()
        self._thread.join(timeout=MAX_RETRY_S + 1)
        atexit.unregister(self._at_exit)
        if lost:
            log.error("audit: %d events were never written (database unreachable)", lost)
        return written and not lost

    def __enter__(self) -> AuditLog:
        """Return the log itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the log (flushing it)."""
        self.close()

    def _at_exit(self) -> None:
        self.close(timeout_s=5.0)

    def _run(self) -> None:
        """Write the queue when woken or every interval, until closed (the writer thread)."""
        while True:
            wait = self.flush_interval_s
            if self._failures:
                wait = min(self.flush_interval_s * 2 ** (self._failures - 1), MAX_RETRY_S)
            self._wake.wait(wait)
            self._wake.clear()
            if self._closing:
                break
            try:
                self._drain()
            except Exception as exc:  # the writer thread must survive anything
                self._failed(exc)
        if self._connection is not None:
            self._connection.close()

    def _drain(self) -> None:
        """Write every pending event, a batch at a time; stop at the first failure."""
        while self._pending and not self._closing:
            with self._lock:
                batch = list(islice(self._pending, self.max_batch))
            try:
                self._write(batch)
            except _ROW_ERRORS:
                self._write_one_by_one(batch)
            else:
                self._done(len(batch))
            if self._failures:
                self._failures = 0
                log.warning("audit: writing again after the database came back")

    def _write(self, batch: Sequence[AuditEvent]) -> None:
        if self._connection is None or self._connection.closed:
            self._connection = _connect(self.url)
        _insert(self._connection, batch)

    def _write_one_by_one(self, batch: Iterable[AuditEvent]) -> None:
        """Write events singly, counting the ones the database refuses as data."""
        for event in batch:
            try:
                self._write([event])
            except _ROW_ERRORS as exc:
                self.rejected += 1
                log.error("audit: the database refused an event (%s): %r", exc, event)
                self._done(1, written=False)
            else:
                self._done(1)

    def _done(self, count: int, *, written: bool = True) -> None:
        """Take ``count`` events off the queue (written, or refused) and wake anyone flushing."""
        with self._drained:
            for _ in range(count):
                self._pending.popleft()
            if written:
                self.written += count
            self._drained.notify_all()

    def _failed(self, exc: BaseException) -> None:
        """Note a failed write: keep the events, close the connection, back off."""
        if not self._failures:
            log.warning("audit: cannot write (%s); keeping events and retrying", exc)
        self._failures += 1
        self.last_error = exc
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None


@dataclass(frozen=True)
class AuditReport:
    """What :func:`verify` found.

    Attributes
    ----------
    rows
        Rows checked.
    last_id
        Id of the last row checked (None when there is none).
    bad_id
        Id of the first row that breaks the chain; None when it is intact.
    reason
        Why that row breaks it: ``hash does not match its fields`` (the row was changed),
        ``previous hash does not match row N`` (a row before it was deleted, changed and
        re-hashed, or reordered), ``row N is missing ...`` (the last rows were deleted).
    """

    rows: int
    last_id: int | None = None
    bad_id: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        """True when every row checked is where the chain says and as it was written."""
        return self.bad_id is None

    def __str__(self) -> str:
        """Say it in one line, as ``twin audit verify`` prints it."""
        if self.intact:
            return f"{self.rows} rows, chain intact"
        return f"row {self.bad_id}: {self.reason} ({self.rows} rows checked)"


def verify(*, url: str | None = None, since_id: int | None = None) -> AuditReport:
    """Check the audit log's hash chain, recomputing every row's hash in Python.

    Each row's hash must be ``sha256(prev_hash || canonical text)`` (the text from the
    database's ``audit_canonical``), its ``prev_hash`` the hash of the row before it, its id
    the one after that row's; the chain's head (``audit_chain``) must name the last row.

    Parameters
    ----------
    url
        Database URL; ``None`` for ``TWIN_DATABASE_URL``.
    since_id
        Check from this row on (trusting the row before it), for a quick look at recent rows;
        None for the whole log.

    Returns
    -------
    AuditReport
        Rows checked and the first bad row with the reason, if any.

    Raises
    ------
    psycopg.OperationalError
        If the database cannot be reached.
    """
    start = 1 if since_id is None else max(since_id, 1)
    with _connect(url) as connection:
        before = connection.execute(
            "SELECT id, hash FROM audit_log WHERE id < %s ORDER BY id DESC LIMIT 1", (start,)
        ).fetchone()
        previous_id, expected = (None, GENESIS) if before is None else (before[0], before[1])
        rows = 0
        with connection.cursor(name="audit_verify") as cur:
            cur.itersize = 5000
            cur.execute(
                "SELECT id, prev_hash, hash, audit_canonical(a) FROM audit_log a "
                "WHERE id >= %s ORDER BY id",
                (start,),
            )
            for row_id, prev_hash, row_hash, canonical in cur:
                rows += 1
                prev_hash, row_hash = bytes(prev_hash), bytes(row_hash)
                reason = None
                if hashlib.sha256(prev_hash + canonical.encode()).digest() != row_hash:
                    reason = "hash does not match its fields"
                elif prev_hash != expected:
                    after = "the chain's start" if previous_id is None else f"row {previous_id}"
                    reason = f"previous hash does not match {after}"
                elif previous_id is not None and row_id != previous_id + 1:
                    reason = f"rows {previous_id + 1} to {row_id - 1} are missing"
                elif previous_id is None and before is None and row_id != 1:
                    reason = f"rows 1 to {row_id - 1} are missing"
                if reason is not None:
                    return AuditReport(rows, row_id, row_id, reason)
                previous_id, expected = row_id, row_hash
        head = connection.execute("SELECT last_id, last_hash FROM audit_chain").fetchone()
    if head is not None and head[0] != (previous_id or 0):
        if head[0] > (previous_id or 0):
            first = (previous_id or 0) + 1
            reason = f"row {first} is missing (the chain's head says the last row is {head[0]})"
            return AuditReport(rows, previous_id, first, reason)
        reason = f"the chain's head says the last row is {head[0]}"
        return AuditReport(rows, previous_id, previous_id, reason)
    if head is not None and previous_id is not None and bytes(head[1]) != expected:
        reason = "hash does not match the chain's head"
        return AuditReport(rows, previous_id, previous_id, reason)
    return AuditReport(rows, previous_id)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def export(path: str | Path, *, start: datetime, end: datetime, url: str | None = None) -> int:
    """Write the audit rows of a period to a CSV file, in chain order.

    The header names the columns: ``id``, ``at`` (ISO 8601, UTC), ``actor``, ``role``,
    ``action``, ``layer``, ``ids`` and ``bbox`` (JSON arrays), ``feature_count``, ``client``,
    ``purpose``, ``request``, ``status``, ``prev_hash`` and ``hash`` (hexadecimal). Empty cells
    are nulls.

    Parameters
    ----------
    path
        The CSV file to write (replaced if it exists).
    start, end
        The period, ``start <= at < end``; a naive time is taken as UTC.
    url
        Database URL; ``None`` for ``TWIN_DATABASE_URL``.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    ValueError
        If ``end`` is not after ``start``.
    OSError
        If the file cannot be written.
    psycopg.OperationalError
        If the database cannot be reached.
    """
    start, end = _as_utc(start), _as_utc(end)
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    count = 0
    with (
        _connect(url) as connection,
        connection.cursor(name="audit_export") as cur,
        open(path, "w", newline="", encoding="utf-8") as stream,
    ):
        writer = csv.writer(stream)
        writer.writerow(_EXPORT_COLUMNS)
        cur.itersize = 5000
        cur.execute(
            sql.SQL("SELECT {} FROM audit_log WHERE at >= %s AND at < %s ORDER BY id").format(
                sql.SQL(", ").join(map(sql.Identifier, _EXPORT_COLUMNS))
            ),
            (start, end),
        )
        for record in cur:
            writer.writerow(
                [_cell(name, value) for name, value in zip(_EXPORT_COLUMNS, record, strict=True)]
            )
            count += 1
    return count


def _cell(name: str, value: Any) -> str | int:
    """Return one value as its CSV cell (see :func:`export`)."""
    if value is None:
        return ""
    if name == "at":
        return str(value.astimezone(UTC).isoformat())
    if name in ("ids", "bbox"):
        return json.dumps(value)
    if name in ("prev_hash", "hash"):
        return bytes(value).hex()
    if isinstance(value, int):
        return value
    return str(value)
