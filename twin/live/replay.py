"""Replay a file of recorded readings into the twin, at N times real time.

A CSV or Parquet file with one reading per row: ``datastream`` (the Datastream's id or name),
``phenomenonTime`` (ISO 8601; ``time`` is taken as a synonym), ``result``, and optionally
``resultTime`` and ``resultQuality``. Rows go through the same path as every feed
(:meth:`twin.live.feed.Feed.ingest`), in time order, spaced as their phenomenonTimes are,
divided by ``speed``. With ``rebase`` the times are shifted so that the last reading is stamped
at the moment it is sent (a recording of last week replayed as today's feed; no reading is ever
ahead of the clock).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from layers.database import get_engine
from layers.errors import ParameterError
from layers.observations import Reading, ReadingError, parse_time
from twin.live.feed import Feed

#: Readings handed to the feed at once (when the clock allows).
BATCH = 5000


class ReplayError(ParameterError):
    """A file that cannot be replayed (missing, unreadable, or without the needed columns)."""


@dataclass
class ReplayReport:
    """What a replay did.

    Attributes
    ----------
    rows
        Rows read.
    stored
        Observations stored.
    duplicates
        Rows already stored.
    refused
        ``(row number, reason)`` of the first refused rows (row 1 is the first data row).
    refused_count
        Every refused row.
    seconds
        Wall-clock time taken.
    """

    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    refused_count: int = 0
    seconds: float = 0.0


def read_readings(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a recording: CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    pandas.DataFrame
        Columns ``datastream``, ``phenomenonTime``, ``result`` and, when present,
        ``resultTime``, ``resultQuality``; in file order.

    Raises
    ------
    ReplayError
        If the file is missing, unreadable, or lacks a needed column.
    """
    file = Path(path)
    if not file.is_file():
        raise ReplayError(f"{file}: no such file", parameter="file")
    try:
        if file.suffix.lower() == ".parquet":
            frame = pd.read_parquet(file)
        elif file.name.lower().endswith((".csv", ".csv.gz")):
            # the header as written (read_csv renames a repeated column "x" to "x.1")
            header = pd.read_csv(file, header=None, nrows=1, dtype=str).iloc[0].tolist()
            frame = pd.read_csv(file, dtype={"datastream": str}, keep_default_na=False)
            frame.columns = pd.Index(header)
        else:
            raise ReplayError(f"{file}: not a .csv, .csv.gz or .parquet file", parameter="file")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ReplayError(f"{file}: cannot be read: {exc}", parameter="file") from None
    if frame.columns.duplicated().any():
        twice = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ReplayError(f"{file}: columns named twice: {', '.join(twice)}", parameter="file")
    if "phenomenonTime" not in frame.columns and "time" in frame.columns:
        frame = frame.rename(columns={"time": "phenomenonTime"})
    missing = [c for c in ("datastream", "phenomenonTime", "result") if c not in frame.columns]
    if missing:
        raise ReplayError(
            f"{file}: no column {', '.join(missing)} "
            f"(columns: {', '.join(map(str, frame.columns))})",
            parameter="file",
        )
    return frame


def _datastream_ids(names: set[str], url: str | None) -> dict[str, int]:
    with get_engine(url).connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "SELECT name, id FROM sta_datastreams WHERE name = ANY(%s)", (sorted(names),)
            )
            found = {str(name): int(ident) for name, ident in cur.fetchall()}
        raw.rollback()
    return found


def _result(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            return json.loads(text)  # numbers, true/false, JSON objects
        except ValueError:
            return value
    if hasattr(value, "item"):
        return value.item()
    return value


def replay(
    path: str | os.PathLike[str],
    *,
    feed: Feed,
    speed: float | None = 1.0,
    rebase: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_listed: int = 20,
) -> ReplayReport:
    """Replay a recording into the twin through ``feed``.

    Parameters
    ----------
    path
        The file (see :func:`read_readings`).
    feed
        Where the readings go.
    speed
        How many times faster than real time; None for as fast as the store takes them.
    rebase
        Shift the times so the last reading is stamped at the moment it is sent.
    progress
        Called with (rows sent, rows) as the replay goes.
    max_listed
        How many refused rows the report lists one by one.

    Returns
    -------
    ReplayReport
        Rows read, stored, duplicated and refused (with row numbers and reasons).

    Raises
    ------
    ReplayError
        If the file cannot be read, or ``speed`` is not a positive number.
    """
    if speed is not None and (not math.isfinite(speed) or speed <= 0):
        raise ReplayError("speed must be a positive number of times real time", parameter="speed")
    frame = read_readings(path)
    report = ReplayReport(rows=len(frame))
    names = {str(v) for v in frame["datastream"] if not str(v).isdigit()}
    by_name = _datastream_ids(names, feed.url) if names else {}
    rows: list[tuple[datetime, int, Reading | ReadingError]] = []
    for n, record in enumerate(frame.to_dict("records"), start=1):
        key = str(record["datastream"]).strip()
        try:
            ident = int(key) if key.isdigit() else by_name.get(key)
            if ident is None:
                raise ReadingError(
                    f"no datastream named {key!r}",
                    reason="unknown datastream",
                    parameter="datastream",
                )
            moment = parse_time(str(record["phenomenonTime"]))
            result_time = record.get("resultTime")
            quality = record.get("resultQuality")
            reading: Reading | ReadingError = Reading(
                datastream_id=ident,
                phenomenon_time=moment,
                result=_result(record["result"]),
                result_time=parse_time(str(result_time), name="resultTime")
                if result_time not in (None, "")
                else None,
                result_quality=_result(quality) if quality not in (None, "") else None,
            )
        except ReadingError as exc:
            moment, reading = datetime.min.replace(tzinfo=UTC), exc
        rows.append((moment, n, reading))
    rows.sort(key=lambda r: (r[0], r[1]))
    timed = [r for r in rows if isinstance(r[2], Reading)]
    first = timed[0][0] if timed else datetime.now(UTC)
    last = timed[-1][0] if timed else first
    span = (last - first).total_seconds()
    started = time.monotonic()
    wall_start = datetime.now(UTC)
    # rebased: a reading of time t is sent at wall_start + (t - first) / speed; its stamp
    # t + shift must not be later, and the last one's is exactly its sending moment
    shift = timedelta(0)
    if rebase:
        if speed is None:
            shift = wall_start - last
        elif speed >= 1:
            shift = wall_start + timedelta(seconds=span / speed) - last
        else:
            shift = wall_start - first
    sent = 0
    while sent < len(rows):
        batch = rows[sent : sent + BATCH]
        if speed is not None:
            # hand over only what is due by now; wait for the next reading's moment
            due = time.monotonic() - started
            ready = [r for r in batch if (r[0] - first).total_seconds() / speed <= due]
            if not ready:
                wait = (batch[0][0] - first).total_seconds() / speed - due
                time.sleep(min(max(wait, 0.0), 1.0))
                continue
            batch = ready
        readings: list[Reading | ReadingError] = []
        for _moment, _n, reading in batch:
            if isinstance(reading, Reading) and shift:
                reading = Reading(
                    datastream_id=reading.datastream_id,
                    phenomenon_time=reading.phenomenon_time + shift,
                    result=reading.result,
                    result_time=reading.result_time + shift if reading.result_time else None,
                    result_quality=reading.result_quality,
                )
            readings.append(reading)
        outcome = feed.ingest(readings)
        report.stored += len(outcome.stored)
        report.duplicates += outcome.duplicates
        report.refused_count += outcome.refused_count
        for refusal in outcome.refused:
            if len(report.refused) < max_listed:
                report.refused.append((batch[refusal.index][1], refusal.message))
        sent += len(batch)
        if progress is not None:
            progress(sent, len(rows))
    report.refused.sort()
    report.seconds = time.monotonic() - started
    return report
