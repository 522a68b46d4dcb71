"""Observations into the store: one path for every feed (HTTP, MQTT, replay).

A reading is checked (known datastream, a result of the datastream's observation type, a
finite number, a time neither in the future past a tolerance nor older than the retention),
then a batch is written with ``COPY`` into a temporary table and one ``INSERT … ON CONFLICT DO
NOTHING``: a reading that arrives twice (same datastream and phenomenonTime) is stored once, and
nothing is ever updated in place. The same statement keeps ``sta_latest`` (the newest
observation per datastream). Refused readings are counted by reason in ``live_refusals``.

Observations live in daily range partitions of ``sta_observations`` (migration 0009), created
on demand and ahead by :func:`maintain_partitions`, which also drops partitions past the
retention (``TWIN_LIVE_RETENTION_DAYS``).

The JSON encoding of an Observation is SensorThings API v1.1's (OGC 18-088, section 8.2.7;
the ``dataArray`` of the ``CreateObservations`` action, section 14.4).
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from layers.database import database_url, get_engine
from layers.errors import ParameterError
from layers.settings import get_settings

_OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
#: SensorThings' observation types (OGC 18-088, table 13) and the result each one takes.
MEASUREMENT = _OM + "OM_Measurement"
COUNT = _OM + "OM_CountObservation"
TRUTH = _OM + "OM_TruthObservation"
CATEGORY = _OM + "OM_CategoryObservation"
OBSERVATION = _OM + "OM_Observation"
OBSERVATION_TYPES = (MEASUREMENT, COUNT, TRUTH, CATEGORY, OBSERVATION)

#: The largest magnitude of a numeric result: beyond it a reading is a fault, not a measurement
#: (and sums of squares in aggregates would overflow double precision).
MAX_RESULT = 1e15
#: How many refusals a report lists one by one (all are counted).
MAX_LISTED = 100


class ReadingError(ParameterError):
    """A reading that cannot be stored; ``reason`` is the short name it is counted under."""

    def __init__(self, message: str, *, reason: str, parameter: str | None = None):
        super().__init__(message, parameter=parameter)
        self.reason = reason


@dataclass(frozen=True)
class Reading:
    """One observation as a feed delivers it, before it is stored.

    Attributes
    ----------
    datastream_id
        The Datastream's ``@iot.id``.
    phenomenon_time
        When the result applies (UTC, timezone-aware); the start of an interval.
    result
        The result: a number, an integer, a boolean, a string or any JSON value, as the
        datastream's ``observationType`` says.
    phenomenon_time_end
        End of the phenomenon interval, if the time is an interval.
    result_time
        When the result was produced; the phenomenonTime when not given.
    result_quality
        SensorThings' ``resultQuality`` (any JSON).
    parameters
        SensorThings' ``parameters`` (a JSON object).
    """

    datastream_id: int
    phenomenon_time: datetime
    result: Any
    phenomenon_time_end: datetime | None = None
    result_time: datetime | None = None
    result_quality: Any = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class Refusal:
    """A reading refused: its position in the batch, why (counted by ``reason``) and detail."""

    index: int
    reason: str
    message: str


@dataclass(frozen=True)
class StoredObservation:
    """An observation as stored, with its ``@iot.id`` (what is republished and pushed)."""

    id: int
    datastream_id: int
    phenomenon_time: datetime
    phenomenon_time_end: datetime | None
    result_time: datetime | None
    result: Any
    result_quality: Any
    parameters: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """Return the Observation in SensorThings' JSON encoding (OGC 18-088, 8.2.7).

        Returns
        -------
        dict
            ``@iot.id``, ``phenomenonTime`` (ISO 8601, an interval ``start/end`` when it is
            one), ``resultTime``, ``result`` and, when set, ``resultQuality`` and
            ``parameters``.
        """
        time = iso(self.phenomenon_time)
        if self.phenomenon_time_end is not None:
            time = f"{time}/{iso(self.phenomenon_time_end)}"
        body: dict[str, Any] = {
            "@iot.id": self.id,
            "phenomenonTime": time,
            "resultTime": iso(self.result_time) if self.result_time else None,
            "result": self.result,
        }
        if self.result_quality is not None:
            body["resultQuality"] = self.result_quality
        if self.parameters is not None:
            body["parameters"] = self.parameters
        return body


@dataclass
class StoreReport:
    """What a batch did: observations stored, duplicates skipped, readings refused.

    Attributes
    ----------
    stored
        The observations written, in no particular order.
    duplicates
        Readings already stored (same datastream and phenomenonTime), in the store or twice
        in the batch.
    refused
        The first :data:`MAX_LISTED` refusals, in batch order.
    refused_by_reason
        Every refusal counted by reason.
    """

    stored: list[StoredObservation] = field(default_factory=list)
    duplicates: int = 0
    refused: list[Refusal] = field(default_factory=list)
    refused_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def refused_count(self) -> int:
        """Number of readings refused."""
        return sum(self.refused_by_reason.values())


def iso(moment: datetime) -> str:
    """Return an ISO 8601 UTC timestamp with a ``Z`` (as SensorThings servers write them).

    Parameters
    ----------
    moment
        A timezone-aware datetime.

    Returns
    -------
    str
        For example ``2026-11-30T12:00:00.250Z``.
    """
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(value: Any, *, name: str = "phenomenonTime") -> datetime:
    """Read an ISO 8601 instant; without an offset it is UTC.

    Parameters
    ----------
    value
        The text, as in a SensorThings Observation.
    name
        The property, for the error.

    Returns
    -------
    datetime
        Timezone-aware, in UTC.

    Raises
    ------
    ReadingError
        If ``value`` is not an ISO 8601 instant (reason ``bad time``).
    """
    if not isinstance(value, str):
        raise ReadingError(
            f"{name} must be an ISO 8601 time, not {type(value).__name__}",
            reason="bad time",
            parameter=name,
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ReadingError(
            f"{name} {value[:40]!r} is not an ISO 8601 time", reason="bad time", parameter=name
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_phenomenon_time(value: Any) -> tuple[datetime, datetime | None]:
    """Read a phenomenonTime: an instant, or an interval ``start/end``.

    Parameters
    ----------
    value
        The text.

    Returns
    -------
    tuple
        ``(start, end)``; ``end`` is None for an instant.

    Raises
    ------
    ReadingError
        If it is neither, or the interval ends before it starts.
    """
    if isinstance(value, str) and "/" in value:
        start_text, _, end_text = value.partition("/")
        start = parse_time(start_text)
        end = parse_time(end_text)
        if end < start:
            raise ReadingError(
                f"phenomenonTime {value!r} ends before it starts",
                reason="bad time",
                parameter="phenomenonTime",
            )
        return start, end
    return parse_time(value), None


def reading_from_json(
    body: Any, *, datastream_id: int | None = None, now: datetime | None = None
) -> Reading:
    """Read one Observation in SensorThings' JSON (as posted or published over MQTT).

    Parameters
    ----------
    body
        The decoded JSON: ``result`` and, optionally, ``phenomenonTime`` (now when missing, as
        the standard says), ``resultTime``, ``resultQuality``, ``parameters`` and
        ``Datastream: {"@iot.id": n}``.
    datastream_id
        The datastream the URL or the MQTT topic names (``Datastreams(n)/Observations``); it
        wins over none in the body and must agree with one there.
    now
        The server's clock, for a missing phenomenonTime.

    Returns
    -------
    Reading
        The reading, not yet checked against its datastream.

    Raises
    ------
    ReadingError
        If the body is not an object, names no datastream, or a property is malformed.
    """
    if not isinstance(body, Mapping):
        raise ReadingError(
            "an Observation must be a JSON object", reason="not an observation", parameter="body"
        )
    if "result" not in body:
        raise ReadingError("the Observation has no result", reason="no result", parameter="result")
    named = body.get("Datastream")
    if named is not None:
        ident: Any = named.get("@iot.id") if isinstance(named, Mapping) else None
        if not _is_id(ident):
            raise ReadingError(
                "Datastream must be {'@iot.id': <integer>}",
                reason="unknown datastream",
                parameter="Datastream",
            )
        if datastream_id is not None and int(ident) != datastream_id:
            raise ReadingError(
                f"the body names Datastream {ident}, the path Datastream {datastream_id}",
                reason="unknown datastream",
                parameter="Datastream",
            )
        datastream_id = int(ident)
    if datastream_id is None:
        raise ReadingError(
            "the Observation names no Datastream",
            reason="unknown datastream",
            parameter="Datastream",
        )
    if "phenomenonTime" in body and body["phenomenonTime"] is not None:
        start, end = parse_phenomenon_time(body["phenomenonTime"])
    else:
        start, end = (now or datetime.now(UTC)), None
    result_time = body.get("resultTime")
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ReadingError(
            "parameters must be a JSON object", reason="bad parameters", parameter="parameters"
        )
    return Reading(
        datastream_id=datastream_id,
        phenomenon_time=start,
        phenomenon_time_end=end,
        result=body["result"],
        result_time=parse_time(result_time, name="resultTime") if result_time else None,
        result_quality=body.get("resultQuality"),
        parameters=dict(parameters) if parameters is not None else None,
    )


def readings_from_data_array(
    body: Any, *, now: datetime | None = None
) -> list[Reading | ReadingError]:
    """Read a ``CreateObservations`` request: datastreams each with a ``dataArray``.

    Parameters
    ----------
    body
        The decoded JSON: a list of ``{"Datastream": {"@iot.id": n}, "components": [...],
        "dataArray": [[...], ...]}`` (OGC 18-088, 14.4); components among ``phenomenonTime``,
        ``result``, ``resultTime``, ``resultQuality``, ``parameters``.
    now
        The server's clock, for rows without a phenomenonTime.

    Returns
    -------
    list
        Per row, in order, a :class:`Reading` or the :class:`ReadingError` that refuses it.

    Raises
    ------
    ReadingError
        If the request itself is malformed (not a list, missing components or dataArray).
    """
    if not isinstance(body, list):
        raise ReadingError(
            "CreateObservations takes a JSON array of datastreams with a dataArray",
            reason="not an observation",
            parameter="body",
        )
    out: list[Reading | ReadingError] = []
    for n, block in enumerate(body):
        if not isinstance(block, Mapping):
            raise ReadingError(
                f"item {n} is not an object", reason="not an observation", parameter=f"[{n}]"
            )
        components = block.get("components")
        rows = block.get("dataArray")
        if (
            not isinstance(components, list)
            or not all(isinstance(c, str) for c in components)
            or "result" not in components
        ):
            raise ReadingError(
                f"item {n}: components must be a list of names holding 'result'",
                reason="not an observation",
                parameter=f"[{n}].components",
            )
        if not isinstance(rows, list):
            raise ReadingError(
                f"item {n}: dataArray must be a list of rows",
                reason="not an observation",
                parameter=f"[{n}].dataArray",
            )
        for row in rows:
            if not isinstance(row, list) or len(row) != len(components):
                out.append(
                    ReadingError(
                        f"item {n}: a dataArray row must hold {len(components)} values",
                        reason="not an observation",
                        parameter=f"[{n}].dataArray",
                    )
                )
                continue
            record = dict(zip(components, row, strict=True))
            record["Datastream"] = block.get("Datastream")
            try:
                out.append(reading_from_json(record, now=now))
            except ReadingError as exc:
                out.append(exc)
    return out


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


class _Datastreams:
    """The observation type of each datastream, read once and again on a miss."""

    def __init__(self) -> None:
        self._types: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()

    def types(self, url: str, ids: Iterable[int]) -> dict[int, str]:
        wanted = set(ids)
        with self._lock:
            known = self._types.setdefault(url, {})
            missing = wanted - known.keys()
        if missing:
            with get_engine(url).connect() as connection:
                raw = connection.connection.driver_connection
                assert raw is not None
                with raw.cursor() as cur:
                    cur.execute(
                        "SELECT id, observation_type FROM sta_datastreams WHERE id = ANY(%s)",
                        (sorted(missing),),
                    )
                    found = dict(cur.fetchall())
                raw.rollback()
            with self._lock:
                known.update(found)
        return {i: known[i] for i in wanted if i in known}

    def forget(self, url: str) -> None:
        with self._lock:
            self._types.pop(url, None)


_DATASTREAMS = _Datastreams()
_PARTITIONS: dict[str, set[date]] = {}
_PARTITION_LOCK = threading.Lock()


def forget_datastreams(url: str | None = None) -> None:
    """Drop the cached observation types of a store's datastreams (after deleting some).

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    """
    _DATASTREAMS.forget(database_url(url))


def check_result(reading: Reading, observation_type: str) -> tuple[float | None, Any]:
    """Check a result against its datastream's observation type.

    Parameters
    ----------
    reading
        The reading.
    observation_type
        The datastream's ``observationType`` (one of :data:`OBSERVATION_TYPES`).

    Returns
    -------
    tuple
        ``(number, json)``: a numeric result in ``number``, any other in ``json``.

    Raises
    ------
    ReadingError
        If the result is not of that type, or is a non-finite number.
    """
    value = reading.result
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if observation_type == MEASUREMENT:
        if not is_number:
            raise ReadingError(
                f"Datastream {reading.datastream_id} takes a number, not "
                f"{type(value).__name__} {str(value)[:30]!r}",
                reason="wrong type",
                parameter="result",
            )
    elif observation_type == COUNT:
        if not is_number or float(value) != int(value):
            raise ReadingError(
                f"Datastream {reading.datastream_id} takes an integer count, not {value!r}",
                reason="wrong type",
                parameter="result",
            )
    elif observation_type == TRUTH:
        if not isinstance(value, bool):
            raise ReadingError(
                f"Datastream {reading.datastream_id} takes true or false, not {value!r}",
                reason="wrong type",
                parameter="result",
            )
        return None, value
    elif observation_type == CATEGORY:
        if isinstance(value, str):
            _finite_json(value, "result")
        if not isinstance(value, str):
            raise ReadingError(
                f"Datastream {reading.datastream_id} takes a category (text), not {value!r}",
                reason="wrong type",
                parameter="result",
            )
        return None, value
    elif not is_number:
        _finite_json(value, "result")
        return None, value
    number = float(value)
    if not math.isfinite(number):
        raise ReadingError(
            f"result {value!r} is not a finite number", reason="not finite", parameter="result"
        )
    if abs(number) > MAX_RESULT:
        raise ReadingError(
            f"result {value!r} is beyond ±{MAX_RESULT:g}, more than any sensor measures",
            reason="out of range",
            parameter="result",
        )
    return number, None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _finite_json(value: Any, name: str) -> str:
    """Return ``value`` as JSON text the store can hold, or refuse it.

    PostgreSQL's ``jsonb`` has no NaN or infinity, no NUL character (``\u0000``) and no lone
    UTF-16 surrogate; one such value would make the whole batch fail.
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except ValueError:
        raise ReadingError(
            f"{name} {str(value)[:60]!r} holds a non-finite number",
            reason="not finite",
            parameter=name,
        ) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ReadingError(
            f"{name} holds text that is not valid Unicode (a lone surrogate)",
            reason="bad text",
            parameter=name,
        ) from None
    if _holds_nul(value):
        raise ReadingError(f"{name} holds a NUL character", reason="bad text", parameter=name)
    return text


def _decode(number: float | None, blob: Any, observation_type: str) -> Any:
    if number is None:
        return blob
    if observation_type == COUNT:
        return int(number)
    return number


_STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS sta_incoming (
    datastream_id bigint, phenomenon_time timestamptz, phenomenon_time_end timestamptz,
    result_time timestamptz, result double precision, result_json jsonb,
    result_quality jsonb, parameters jsonb
) ON COMMIT DELETE ROWS
"""

_INSERT = """
WITH inserted AS (
    INSERT INTO sta_observations (datastream_id, phenomenon_time, phenomenon_time_end,
        result_time, result, result_json, result_quality, parameters)
    SELECT DISTINCT ON (datastream_id, phenomenon_time) datastream_id, phenomenon_time,
        phenomenon_time_end, COALESCE(result_time, phenomenon_time), result, result_json,
        result_quality, parameters
    FROM sta_incoming ORDER BY datastream_id, phenomenon_time
    ON CONFLICT DO NOTHING
    RETURNING id, datastream_id, phenomenon_time, phenomenon_time_end, result_time, result,
        result_json, result_quality, parameters, received_at
), latest AS (
    INSERT INTO sta_latest AS l (datastream_id, observation_id, phenomenon_time, result_time,
        result, result_json, result_quality, received_at)
    SELECT DISTINCT ON (datastream_id) datastream_id, id, phenomenon_time, result_time, result,
        result_json, result_quality, received_at
    FROM inserted ORDER BY datastream_id, phenomenon_time DESC
    ON CONFLICT (datastream_id) DO UPDATE SET
        observation_id = excluded.observation_id, phenomenon_time = excluded.phenomenon_time,
        result_time = excluded.result_time, result = excluded.result,
        result_json = excluded.result_json, result_quality = excluded.result_quality,
        received_at = excluded.received_at
    WHERE l.phenomenon_time < excluded.phenomenon_time
)
SELECT id, datastream_id, phenomenon_time, phenomenon_time_end, result_time, result,
       result_json, result_quality, parameters FROM inserted
"""

_REFUSALS = """
INSERT INTO live_refusals AS r (reason, count, last_at, last_example)
SELECT reason, n, now(), example FROM unnest(%s::text[], %s::bigint[], %s::text[])
    AS t(reason, n, example)
ON CONFLICT (reason) DO UPDATE SET count = r.count + excluded.count,
    last_at = excluded.last_at, last_example = excluded.last_example
"""


def store_observations(
    readings: Sequence[Reading | ReadingError],
    *,
    url: str | None = None,
    now: datetime | None = None,
) -> StoreReport:
    """Check and store a batch of readings in one transaction.

    Parameters
    ----------
    readings
        The readings; a :class:`ReadingError` in their place (a row a decoder refused) is
        counted and listed with its position.
    url
        Database URL; the configured one by default.
    now
        The server's clock, for the future and retention checks.

    Returns
    -------
    StoreReport
        Observations stored (with their ids), duplicates, refusals with reasons.

    Raises
    ------
    psycopg.OperationalError
        If the store cannot be reached (nothing of the batch is stored).
    """
    resolved = database_url(url)
    settings = get_settings()
    now = now or datetime.now(UTC)
    latest_allowed = now + timedelta(seconds=settings.live_future_s)
    earliest_allowed = _day(now) - timedelta(days=settings.live_retention_days - 1)
    report = StoreReport()
    ids = {r.datastream_id for r in readings if isinstance(r, Reading)}
    types = _DATASTREAMS.types(resolved, ids) if ids else {}
    rows: list[tuple[Any, ...]] = []
    positions: list[int] = []  # each row's index in ``readings``
    kinds: dict[int, str] = {}

    def refuse(index: int, error: ReadingError) -> None:
        report.refused_by_reason[error.reason] += 1
        if len(report.refused) < MAX_LISTED:
            report.refused.append(Refusal(index, error.reason, str(error)))

    for index, reading in enumerate(readings):
        if isinstance(reading, ReadingError):
            refuse(index, reading)
            continue
        kind = types.get(reading.datastream_id)
        try:
            if kind is None:
                raise ReadingError(
                    f"Datastream {reading.datastream_id} does not exist",
                    reason="unknown datastream",
                    parameter="Datastream",
                )
            if reading.phenomenon_time > latest_allowed:
                raise ReadingError(
                    f"phenomenonTime {iso(reading.phenomenon_time)} is more than "
                    f"{settings.live_future_s:g} s ahead of the server's clock",
                    reason="in the future",
                    parameter="phenomenonTime",
                )
            if reading.phenomenon_time < earliest_allowed:
                raise ReadingError(
                    f"phenomenonTime {iso(reading.phenomenon_time)} is older than the "
                    f"{settings.live_retention_days}-day retention",
                    reason="past retention",
                    parameter="phenomenonTime",
                )
            number, blob = check_result(reading, kind)
            quality = (
                None
                if reading.result_quality is None
                else _finite_json(reading.result_quality, "resultQuality")
            )
            parameters = (
                None
                if reading.parameters is None
                else _finite_json(reading.parameters, "parameters")
            )
        except ReadingError as exc:
            refuse(index, exc)
            continue
        kinds[reading.datastream_id] = kind
        positions.append(index)
        rows.append(
            (
                reading.datastream_id,
                reading.phenomenon_time,
                reading.phenomenon_time_end,
                reading.result_time,
                number,
                None if blob is None else json.dumps(blob),
                quality,
                parameters,
            )
        )
    if rows:
        days = {_day(row[1]).date() for row in rows}
        _ensure_partitions(resolved, days)
        try:
            stored = _write(resolved, rows)
        except psycopg.errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            # a partition this process knew of was dropped (retention, a re-made database)
            with _PARTITION_LOCK:
                _PARTITIONS.pop(resolved, None)
            _ensure_partitions(resolved, days)
            stored = _write(resolved, rows)
        except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded):
            # a value the checks above let through and the store refuses: store the rest one
            # by one, and refuse only what the store refuses, never the whole batch
            stored = []
            for index, row in zip(positions, rows, strict=True):
                try:
                    stored += _write(resolved, [row])
                except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
                    refuse(
                        index,
                        ReadingError(
                            f"the store refuses the reading: {str(exc).splitlines()[0]}",
                            reason="refused by the store",
                        ),
                    )
        for row in stored:
            report.stored.append(
                StoredObservation(
                    id=row[0],
                    datastream_id=row[1],
                    phenomenon_time=row[2],
                    phenomenon_time_end=row[3],
                    result_time=row[4],
                    result=_decode(row[5], row[6], kinds[row[1]]),
                    result_quality=row[7],
                    parameters=row[8],
                )
            )
        report.duplicates = (
            len(rows) - len(report.stored) - report.refused_by_reason.get("refused by the store", 0)
        )
    if report.refused_by_reason:
        _count_refusals(resolved, report)
    return report


def _write(url: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """COPY rows into the staging table and insert the new ones; return them as stored."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(_STAGE)
            with cur.copy(
                "COPY sta_incoming (datastream_id, phenomenon_time, phenomenon_time_end, "
                "result_time, result, result_json, result_quality, parameters) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(_INSERT)
            return cur.fetchall()


def _count_refusals(url: str, report: StoreReport) -> None:
    reasons = sorted(report.refused_by_reason)
    examples = {r.reason: r.message for r in report.refused}
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                _REFUSALS,
                (
                    reasons,
                    [report.refused_by_reason[r] for r in reasons],
                    [examples.get(r, "")[:500] for r in reasons],
                ),
            )


def refusals(*, url: str | None = None) -> dict[str, int]:
    """Return how many readings the store refused, by reason, since it was created.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        Count by reason (``unknown datastream``, ``wrong type``, ``not finite``,
        ``in the future``, ``past retention``, ``bad time``, ``no result``, …).
    """
    with get_engine(url).connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute("SELECT reason, count FROM live_refusals ORDER BY reason")
            counts = {str(reason): int(count) for reason, count in cur.fetchall()}
        raw.rollback()
    return counts


def _day(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, tzinfo=UTC)


def _partition_name(day: date) -> str:
    return f"sta_observations_{day:%Y%m%d}"


def _ensure_partitions(url: str, days: set[date]) -> None:
    with _PARTITION_LOCK:
        known = _PARTITIONS.setdefault(url, set())
        missing = days - known
    if not missing:
        return
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            # one creator at a time across processes: CREATE … IF NOT EXISTS still races
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('sta_observations partitions'))")
            for day in sorted(missing):
                cur.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} PARTITION OF sta_observations "
                        "FOR VALUES FROM ({}) TO ({})"
                    ).format(
                        sql.Identifier(_partition_name(day)),
                        sql.Literal(datetime(day.year, day.month, day.day, tzinfo=UTC)),
                        sql.Literal(
                            datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
                        ),
                    )
                )
    with _PARTITION_LOCK:
        known.update(missing)


def maintain_partitions(
    *, url: str | None = None, now: datetime | None = None, ahead_days: int = 2
) -> dict[str, list[str]]:
    """Create the coming days' partitions and drop those past the retention.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    now
        The clock; now by default.
    ahead_days
        How many days after today get a partition now.

    Returns
    -------
    dict
        ``created`` and ``dropped`` partition names.
    """
    resolved = database_url(url)
    now = now or datetime.now(UTC)
    today = _day(now).date()
    keep_from = today - timedelta(days=get_settings().live_retention_days - 1)
    with get_engine(resolved).connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'sta_observations'::regclass"
            )
            existing = {str(name) for (name,) in cur.fetchall()}
        raw.rollback()
    wanted = {today + timedelta(days=n) for n in range(ahead_days + 1)}
    created = sorted(_partition_name(d) for d in wanted if _partition_name(d) not in existing)
    with _PARTITION_LOCK:
        _PARTITIONS.setdefault(resolved, set()).difference_update(wanted)
    _ensure_partitions(resolved, wanted)
    dropped = []
    for name in sorted(existing):
        try:
            day = datetime.strptime(name.removeprefix("sta_observations_"), "%Y%m%d").date()
        except ValueError:
            continue
        if day < keep_from:
            dropped.append(name)
    if dropped:
        with get_engine(resolved).begin() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                for name in dropped:
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        with _PARTITION_LOCK:
            _PARTITIONS[resolved].difference_update(
                datetime.strptime(n.removeprefix("sta_observations_"), "%Y%m%d").date()
                for n in dropped
            )
    return {"created": created, "dropped": dropped}


def latest(
    datastream_ids: Sequence[int] | None = None, *, url: str | None = None
) -> list[dict[str, Any]]:
    """Return the newest observation of each datastream (one indexed read).

    Parameters
    ----------
    datastream_ids
        The datastreams; every one with an observation when None.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of dict
        Per datastream: ``datastream_id``, ``observation_id``, ``phenomenon_time``,
        ``result_time``, ``result``, ``result_quality``, ``received_at``, with the
        datastream's ``name``, ``unit`` (its unitOfMeasurement's symbol), ``thing_id``,
        ``layer`` and ``feature_id`` (the twin feature its Thing is), ordered by datastream.
    """
    query = """
        SELECT l.datastream_id, l.observation_id, l.phenomenon_time, l.result_time,
               COALESCE(to_jsonb(l.result), l.result_json) AS result, l.result_quality,
               l.received_at, d.name, d.unit_of_measurement ->> 'symbol', d.thing_id,
               t.layer, t.feature_id, d.observation_type
        FROM sta_latest l
        JOIN sta_datastreams d ON d.id = l.datastream_id
        JOIN sta_things t ON t.id = d.thing_id
        WHERE %(all)s OR l.datastream_id = ANY(%(ids)s)
        ORDER BY l.datastream_id
    """
    ids = list(datastream_ids or [])
    with get_engine(url).connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(query, {"all": datastream_ids is None, "ids": ids})
            rows = cur.fetchall()
        raw.rollback()
    names = (
        "datastream_id",
        "observation_id",
        "phenomenon_time",
        "result_time",
        "result",
        "result_quality",
        "received_at",
        "name",
        "unit",
        "thing_id",
        "layer",
        "feature_id",
    )
    out = []
    for row in rows:
        record = dict(zip(names, row[:-1], strict=True))
        if row[-1] == COUNT and isinstance(record["result"], float):
            record["result"] = int(record["result"])
        elif row[-1] == MEASUREMENT and isinstance(record["result"], int):
            record["result"] = float(record["result"])
        out.append(record)
    return out


__all__ = [
    "OBSERVATION_TYPES",
    "Reading",
    "ReadingError",
    "Refusal",
    "StoreReport",
    "StoredObservation",
    "latest",
    "maintain_partitions",
    "reading_from_json",
    "readings_from_data_array",
    "refusals",
    "series",
    "store_observations",
]


#: Aggregation intervals for charts, by name.
INTERVALS = {
    "1min": timedelta(minutes=1),
    "5min": timedelta(minutes=5),
    "15min": timedelta(minutes=15),
}

_RAW = """
SELECT datastream_id, phenomenon_time, COALESCE(to_jsonb(result), result_json) AS result
FROM sta_observations
WHERE datastream_id = ANY(%(ids)s) AND phenomenon_time >= %(start)s AND phenomenon_time < %(end)s
ORDER BY datastream_id, phenomenon_time
LIMIT %(limit)s
"""

_BINNED = """
SELECT datastream_id,
       date_bin(%(step)s, phenomenon_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bin,
       count(*), avg(result), min(result), max(result)
FROM sta_observations
WHERE datastream_id = ANY(%(ids)s) AND phenomenon_time >= %(start)s AND phenomenon_time < %(end)s
  AND result IS NOT NULL
GROUP BY datastream_id, bin
ORDER BY datastream_id, bin
LIMIT %(limit)s
"""


def series(
    datastream_ids: Sequence[int],
    *,
    start: datetime,
    end: datetime,
    interval: str | None = None,
    limit: int = 1_000_000,
    url: str | None = None,
) -> list[tuple[Any, ...]]:
    """Return observations of some datastreams over a time range, raw or aggregated.

    Parameters
    ----------
    datastream_ids
        The datastreams.
    start, end
        The range of phenomenonTime, ``start <= t < end`` (timezone-aware).
    interval
        ``None`` for the observations themselves, or ``1min``, ``5min``, ``15min`` for
        numeric results aggregated in bins aligned on the hour (``date_bin``).
    limit
        Most rows returned.
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of tuple
        Raw: ``(datastream_id, phenomenon_time, result)``; aggregated: ``(datastream_id,
        bin start, count, mean, min, max)``; ordered by datastream and time.

    Raises
    ------
    ParameterError
        If the interval is unknown or the range is empty or reversed.
    """
    if interval is not None and interval not in INTERVALS:
        raise ParameterError(
            f"unknown interval {interval!r}; intervals: {', '.join(INTERVALS)}",
            parameter="interval",
        )
    if end <= start:
        raise ParameterError("the time range ends before it starts", parameter="end")
    params = {
        "ids": list(datastream_ids),
        "start": start,
        "end": end,
        "limit": limit,
        "step": INTERVALS[interval] if interval else None,
    }
    with get_engine(url).connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(_BINNED if interval else _RAW, params)
            rows = cur.fetchall()
        raw.rollback()
    return rows
