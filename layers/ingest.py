"""Bulk import of layer files into the store.

``ingest(layer, path)`` reads GeoJSON, GeoPackage, (zipped) Shapefile, CSV (lon/lat or WKT)
or OpenStreetMap (.osm, .osm.pbf) in any CRS (:mod:`layers.readers`), checks every feature
against the layer catalog (:mod:`layers.validation`), and loads the file with a binary COPY
inside one transaction. A file with a bad feature loads nothing: :class:`IngestError` lists
each problem with the file, feature number, field and reason. A file of more than
:data:`STREAM_CHUNK` features is checked chunk by chunk while the checked chunks are copied
(the server stores one while Python checks the next); a refused chunk abandons the COPY and
the transaction, and the whole file is then checked at once for the error, so that it lists
the same problems, in the same order, as a check before writing. Features are versioned:
importing a source again closes the changed and vanished features (``valid_to``) and inserts
their new versions, so history is never overwritten. An id belongs to one source.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from layers.catalog import Layer, get_layer
from layers.database import get_engine
from layers.osm import is_osm
from layers.readers import read_file
from layers.settings import TwinSettings, get_settings
from layers.sources import OPENSTREETMAP, Credit, record_source
from layers.validation import IngestError, Problem, prepare

__all__ = [
    "IngestError",
    "IngestReport",
    "Problem",
    "Progress",
    "ingest",
    "ingest_frame",
    "ingest_many",
]

#: ``progress(stage, done, total)`` is called as an import advances (``total`` 0: not known).
Progress = Callable[[str, int, int], None]
#: Called with the import's psycopg cursor inside its transaction (before or after the layers
#: are written), to write what must commit or roll back with them.
InTransaction = Callable[[Any], None]

_COPY_CHUNK = 5000
#: Features checked at a time when a file's features are checked while they are copied: the
#: COPY of one chunk runs on the server while the next is checked.
STREAM_CHUNK = 16_384


@dataclass
class IngestReport:
    """What an import did.

    Attributes
    ----------
    layer
        Layer id.
    source
        The source label the features were stored under.
    read
        Features read from the file.
    added, changed, unchanged, retired
        Features new to the layer; with a new version; identical to the current version;
        and of the same source but absent from the file (closed).
    repaired
        Invalid geometries repaired with ``make_valid``, as problems (warnings).
    seconds
        Wall time of the import.
    """

    layer: str
    source: str
    read: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    retired: int = 0
    repaired: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


def ingest(
    layer_id: str,
    path: str | Path,
    *,
    source: str | None = None,
    crs: str | None = None,
    file_layer: str | None = None,
    id_field: str = "id",
    encoding: str | None = None,
    credit: Credit | None = None,
    url: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Import a file into a layer, all or nothing.

    Parameters
    ----------
    layer_id
        Target layer, e.g. ``"roads"``.
    path
        Input file: GeoJSON, GeoPackage, Shapefile or zipped Shapefile, CSV, OSM.
    source
        Label stored with each feature; re-importing the same source updates its features.
        Defaults to the file's name.
    crs
        CRS of the input coordinates when the file declares none (or to override it).
    file_layer
        Table to read from a multi-layer file.
    id_field
        Attribute holding stable feature ids.
    encoding
        Text encoding of a CSV or Shapefile whose own (a Shapefile's ``.cpg``) is missing or
        wrong, e.g. ``GB18030``.
    credit
        Attribution of the source, recorded for the viewer's credits
        (:func:`layers.sources.record_source`); an OSM file is credited to OpenStreetMap
        unless another is given.
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)`` while the import runs.

    Returns
    -------
    IngestReport
        Counts of added, changed, unchanged and retired features, and repaired geometries.

    Raises
    ------
    IngestError
        If the file cannot be read or any feature is invalid, or an id belongs to another
        source; nothing is written then.
    """
    started = time.perf_counter()
    batch = _read_and_check(
        layer_id,
        path,
        source=source,
        crs=crs,
        file_layer=file_layer,
        id_field=id_field,
        encoding=encoding,
        progress=progress,
        stream=True,
    )
    if credit is None and is_osm(path):
        credit = OPENSTREETMAP
    batch.credit = credit
    _write([batch], url=url, progress=progress)
    batch.report.seconds = time.perf_counter() - started
    return batch.report


def ingest_many(
    files: Mapping[str, str | Path],
    *,
    sources: Mapping[str, str] | None = None,
    url: str | None = None,
    progress: Progress | None = None,
) -> list[IngestReport]:
    """Import several files, one per layer, in a single transaction: all of them or nothing.

    Every file is read and checked before anything is written.

    Parameters
    ----------
    files
        Layer id to input file.
    sources
        Layer id to source label; the file's name by default.
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)``; stages are prefixed with the layer id.

    Returns
    -------
    list of IngestReport
        One report per layer, in the order of ``files``.

    Raises
    ------
    IngestError
        For the first file with a problem; nothing is written then.
    """
    started = time.perf_counter()
    sources = sources or {}
    batches = [
        _read_and_check(
            layer_id,
            path,
            source=sources.get(layer_id),
            progress=_prefixed(progress, layer_id),
        )
        for layer_id, path in files.items()
    ]
    _write(batches, url=url, progress=progress)
    elapsed = time.perf_counter() - started
    for batch in batches:
        batch.report.seconds = elapsed
    return [batch.report for batch in batches]


def ingest_frame(
    layer_id: str,
    frame: gpd.GeoDataFrame,
    *,
    source: str,
    id_field: str = "id",
    retire_missing: bool = True,
    url: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Import a GeoDataFrame into a layer, all or nothing (see :func:`ingest`).

    Parameters
    ----------
    layer_id
        Target layer.
    frame
        Features with a CRS. Problems name features by position, counted from 1.
    source
        Label stored with each feature; re-importing the same source updates its features.
    id_field
        Attribute holding stable feature ids.
    retire_missing
        Close the source's current features that the frame does not hold (a full import of
        the source, the default); False adds and updates only.
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)``.

    Returns
    -------
    IngestReport
        What the import did.

    Raises
    ------
    IngestError
        If any feature is invalid; nothing is written then.
    """
    started = time.perf_counter()
    if not _has_geometry(frame):
        reason = "not features: a GeoDataFrame with a geometry column is needed"
        raise IngestError(source, [Problem(None, "geometry", reason)])
    if frame.crs is None:
        raise IngestError(source, [Problem(None, "crs", "the features have no CRS")])
    frame = frame.set_axis(pd.RangeIndex(1, len(frame) + 1))
    batch = _check(
        get_layer(layer_id), frame, source=source, path=source, id_field=id_field, progress=progress
    )
    batch.retire_missing = retire_missing
    _write([batch], url=url, progress=progress)
    batch.report.seconds = time.perf_counter() - started
    return batch.report


def ingest_frames(
    frames: Mapping[str, gpd.GeoDataFrame],
    *,
    source: str | Mapping[str, str],
    credit: Credit | Mapping[str, Credit] | None = None,
    settings: TwinSettings | None = None,
    before: InTransaction | None = None,
    after: InTransaction | None = None,
    url: str | None = None,
    progress: Progress | None = None,
) -> list[IngestReport]:
    """Import several GeoDataFrames, one per layer, in one transaction: all or nothing.

    Parameters
    ----------
    frames
        Layer id to features (with a CRS and an ``id`` column). A frame's index names its
        features in messages (the file's feature numbers).
    source
        Source label of every layer's features, or one per layer; re-importing it updates them.
    credit
        Attribution of the source (or per layer), recorded in the same transaction.
    settings
        Settings whose city extent the features are checked against; the configured ones by
        default (``twin city init`` checks against the extent it is writing).
    before, after
        Called with the transaction's cursor before the layers are written and after.
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)``; stages are prefixed with the layer id.

    Returns
    -------
    list of IngestReport
        One report per layer, in the order of ``frames``.

    Raises
    ------
    IngestError
        For the first frame with a problem; nothing is written then.
    """
    started = time.perf_counter()
    batches = []
    for layer_id, frame in frames.items():
        label = source if isinstance(source, str) else source[layer_id]
        if not _has_geometry(frame):
            reason = "not features: a GeoDataFrame with a geometry column is needed"
            raise IngestError(label, [Problem(None, "geometry", reason)])
        if frame.crs is None:
            raise IngestError(label, [Problem(None, "crs", "the features have no CRS")])
        counted = frame.index.is_unique and not (
            isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
        )
        if not counted:  # problems name features by number, from 1
            frame = frame.set_axis(pd.RangeIndex(1, len(frame) + 1))
        batch = _check(
            get_layer(layer_id),
            frame,
            source=label,
            path=f"{label} ({layer_id})",
            id_field="id",
            settings=settings,
            progress=_prefixed(progress, layer_id),
        )
        batch.credit = (
            credit if credit is None or isinstance(credit, Credit) else credit.get(layer_id)
        )
        batches.append(batch)
    _write(batches, url=url, progress=progress, before=before, after=after)
    for batch in batches:
        batch.report.seconds = time.perf_counter() - started
    return [batch.report for batch in batches]


def _has_geometry(frame: object) -> bool:
    """Whether ``frame`` is a GeoDataFrame with an active geometry column."""
    if not isinstance(frame, gpd.GeoDataFrame):
        return False
    name = frame._geometry_column_name
    return name is not None and name in frame.columns


@dataclass
class _Batch:
    """One layer's checked features, ready to be written.

    A streamed batch (``unchecked`` set, ``prepared`` None until written) holds the features
    as read: they are checked chunk by chunk while the checked chunks are copied.
    """

    layer: Layer
    prepared: gpd.GeoDataFrame | None
    path: str
    id_field: str
    report: IngestReport
    retire_missing: bool = True
    credit: Credit | None = None
    unchecked: gpd.GeoDataFrame | None = None
    settings: TwinSettings | None = None


def _prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    if progress is None:
        return None
    return lambda stage, done, total: progress(f"{prefix} {stage}", done, total)


def _read_and_check(
    layer_id: str,
    path: str | Path,
    *,
    source: str | None = None,
    crs: str | None = None,
    file_layer: str | None = None,
    id_field: str = "id",
    encoding: str | None = None,
    progress: Progress | None = None,
    stream: bool = False,
) -> _Batch:
    layer = get_layer(layer_id)
    if progress:
        progress("read", 0, 1)
    frame = read_file(path, layer=layer, crs=crs, file_layer=file_layer, encoding=encoding)
    if progress:
        progress("read", 1, 1)
    if stream and len(frame) > STREAM_CHUNK:  # checked while it is copied (see _load)
        label = source or Path(path).name
        report = IngestReport(layer=layer.id, source=label, read=len(frame))
        return _Batch(layer, None, str(path), id_field, report, unchecked=frame)
    return _check(
        layer,
        frame,
        source=source or Path(path).name,
        path=str(path),
        id_field=id_field,
        progress=progress,
    )


def _check(
    layer: Layer,
    frame: gpd.GeoDataFrame,
    *,
    source: str,
    path: str,
    id_field: str,
    progress: Progress | None,
    settings: TwinSettings | None = None,
) -> _Batch:
    if progress:
        progress("validate", 0, len(frame))
    prepared, repaired = prepare(
        frame, layer=layer, path=path, id_field=id_field, settings=settings
    )
    if progress:
        progress("validate", len(frame), len(frame))
    report = IngestReport(layer=layer.id, source=source, read=len(frame), repaired=repaired)
    return _Batch(layer, prepared, path, id_field, report)


def _write(
    batches: list[_Batch],
    *,
    url: str | None,
    progress: Progress | None,
    before: InTransaction | None = None,
    after: InTransaction | None = None,
) -> None:
    """Write checked batches in one transaction, one import per layer at a time."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            # imports of a layer queue up, so versions are closed and opened in order
            for layer_id in sorted({b.layer.id for b in batches}):
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twin.ingest.{layer_id}",)
                )
            # the moment of the new versions: read after the locks, not at transaction start
            cur.execute("SELECT clock_timestamp()")
            row = cur.fetchone()
            assert row is not None
            if before is not None:
                before(cur)
            for batch in batches:
                _load(
                    cur,
                    batch,
                    now=row[0],
                    progress=_prefixed(progress, batch.layer.id) if len(batches) > 1 else progress,
                )
                if batch.credit is not None:
                    record_source(
                        cur,
                        source=batch.report.source,
                        attribution=batch.credit.attribution,
                        licence=batch.credit.licence,
                        url=batch.credit.url,
                    )
            if after is not None:
                after(cur)


def _column_types(cur: Any, layer: Layer, names: tuple[str, ...]) -> list[str]:
    """Return the binary COPY type of each column: geometry and jsonb go as raw bytes."""
    cur.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        (layer.table,),
    )
    types = dict(cur.fetchall())
    return ["bytea" if types[n] in ("geometry", "jsonb") else types[n] for n in names]


def _jsonb(text: Any) -> bytes | None:
    """Encode JSON text in jsonb's binary COPY format (version 1, then the text)."""
    return None if text is None else b"\x01" + text.encode()


def _rows(batch: _Batch, prepared: gpd.GeoDataFrame, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Yield binary COPY rows: source, valid_from, id, props, geometry (EWKB), attributes."""
    geometry = shapely.to_wkb(prepared.geometry.to_numpy(), include_srid=True, output_dimension=2)
    columns: list[Any] = [
        np.full(len(prepared), batch.report.source, dtype=object),
        np.full(len(prepared), now, dtype=object),
        prepared["id"].to_numpy(),
        [b"\x01" + text.encode() for text in prepared["props"]],  # props: never null
        geometry,
    ]
    for spec in batch.layer.fields:
        values = prepared[spec.name].to_numpy(dtype=object)
        values = np.where(pd.isna(values), None, values)
        columns.append([_jsonb(v) for v in values] if spec.kind == "json" else values)
    return zip(*columns, strict=True)


def _load(cur: Any, batch: _Batch, *, now: datetime, progress: Progress | None) -> None:
    """Write one layer's features, versioning what changed.

    When the layer has no current feature (a first import), rows are copied straight into the
    table. Otherwise they are copied to a staging table and merged: changed features get a new
    version (the old one is closed with ``valid_to``), features of the source absent from the
    file are closed, new ones are inserted.
    """
    layer, report = batch.layer, batch.report
    table = sql.Identifier(layer.table)
    names = ("source", "valid_from", "id", "props", "geom", *layer.field_names)
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    total = batch.report.read if batch.prepared is None else len(batch.prepared)
    cur.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {table} WHERE valid_to IS NULL)").format(table=table)
    )
    row = cur.fetchone()
    first_import = row is not None and not row[0]
    if first_import and total == 0:
        return  # nothing to write, and the layer's version stays
    target = table if first_import else sql.Identifier("_stage")
    rebuild: list[str] = []
    if first_import:
        rebuild = _drop_indexes_of_empty_table(cur, layer)
    else:
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE _stage ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA"
            ).format(cols=columns, table=table)
        )
    copy_sql = sql.SQL("COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)").format(
        target=target, cols=columns
    )
    types = _column_types(cur, layer, names)
    parts: list[gpd.GeoDataFrame] = []
    try:
        # a writer thread sends while this one encodes the next rows (and, streamed, checks
        # the next chunk while the server stores this one)
        with cur.copy(copy_sql, writer=QueuedLibpqWriter(cur)) as copy:
            copy.set_types(types)
            done = 0
            for part in _checked_parts(batch, progress):
                parts.append(part)
                for values in _rows(batch, part, now):
                    copy.write_row(values)
                    done += 1
                    if progress and done % _COPY_CHUNK == 0:
                        progress("copy", done, total)
    except IngestError:
        if batch.unchecked is None:
            raise
        _refuse_whole(batch)  # the whole file's problems, in the order a check of it gives
        raise
    if batch.prepared is None and not first_import:  # the merge names features by row
        batch.prepared = pd.concat(parts) if len(parts) > 1 else parts[0]
    if progress:
        progress("copy", total, total)
    if first_import:
        for definition in rebuild:
            cur.execute(definition)
        report.added = total
        return
    if progress:
        progress("merge", 0, 1)
    _merge(cur, batch, now=now)
    cur.execute("DROP TABLE _stage")
    if progress:
        progress("merge", 1, 1)


def _checked_parts(batch: _Batch, progress: Progress | None) -> Iterator[gpd.GeoDataFrame]:
    """Yield a batch's checked features: all at once, or streamed chunk by chunk.

    A streamed batch's chunks are checked by :func:`layers.validation.prepare` one at a time,
    as they are asked for; ids repeated across chunks are looked for once every chunk has
    passed. A problem raises :class:`IngestError` (the caller then refuses the whole file).
    """
    if batch.unchecked is None:
        assert batch.prepared is not None
        yield batch.prepared
        return
    frame, total = batch.unchecked, len(batch.unchecked)
    ids = []
    for start in range(0, total, STREAM_CHUNK):
        if progress:
            progress("validate", start, total)
        part, repaired = prepare(
            frame.iloc[start : start + STREAM_CHUNK],
            layer=batch.layer,
            path=batch.path,
            id_field=batch.id_field,
            settings=batch.settings,
        )
        batch.report.repaired.extend(repaired)
        ids.append(part["id"].to_numpy())
        yield part
    if progress:
        progress("validate", total, total)
    if pd.Series(np.concatenate(ids)).duplicated().any():
        raise IngestError(batch.path, [Problem(None, batch.id_field, "duplicate ids")])


def _refuse_whole(batch: _Batch) -> None:
    """Check a streamed batch's features all at once, raising what that check finds.

    The problems are then those (and in the order) an import that checks the file before
    writing reports; called when a chunk was refused, after the COPY was abandoned.
    """
    assert batch.unchecked is not None
    prepare(
        batch.unchecked,
        layer=batch.layer,
        path=batch.path,
        id_field=batch.id_field,
        settings=batch.settings,
    )


def _drop_indexes_of_empty_table(cur: Any, layer: Layer) -> list[str]:
    """Drop the secondary indexes of an empty layer table; return the SQL to rebuild them.

    Building an index once after a bulk COPY is several times faster than updating it for
    every row. Only done for an empty table, inside the import's transaction: readers of the
    layer wait for the import to commit, and never see the table without its indexes.
    """
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(layer.table)))
    row = cur.fetchone()
    if row is None or row[0]:
        return []
    cur.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
        "JOIN pg_class c ON c.relname = i.indexname "
        "JOIN pg_index x ON x.indexrelid = c.oid "
        "WHERE i.schemaname = current_schema() AND i.tablename = %s AND NOT x.indisprimary",
        (layer.table,),
    )
    indexes = cur.fetchall()
    for name, _ in indexes:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [definition for _, definition in indexes]


def _merge(cur: Any, batch: _Batch, *, now: datetime) -> None:
    """Merge ``_stage`` into the layer table (see :func:`_load`)."""
    layer, report = batch.layer, batch.report
    table = sql.Identifier(layer.table)
    params = {"source": report.source, "now": now}
    _refuse_ids_of_other_sources(cur, batch)
    fields = [sql.Identifier(name) for name in layer.field_names]
    stage_columns = sql.SQL(", ").join(
        [*(sql.Identifier(c) for c in ("source", "id", "props", "geom")), *fields]
    )
    compare_old = sql.SQL(", ").join(
        [sql.SQL("t.props"), sql.SQL("t.geom::text")] + [sql.SQL("t.{}").format(f) for f in fields]
    )
    compare_new = sql.SQL(", ").join(
        [sql.SQL("s.props"), sql.SQL("s.geom::text")] + [sql.SQL("s.{}").format(f) for f in fields]
    )
    cur.execute("CREATE INDEX ON _stage (id)")
    cur.execute("ANALYZE _stage")
    # Each statement that writes the layer table bumps its version (a statement trigger, even
    # for no row: migration 0003) and so empties the tile caches. Only what changes is
    # written: a re-import that changes nothing leaves the version and the vids alone.
    changed = sql.SQL(
        "FROM {table} t, _stage s WHERE t.id = s.id AND t.valid_to IS NULL "
        "AND ({old}) IS DISTINCT FROM ({new})"
    ).format(table=table, old=compare_old, new=compare_new)
    retired = sql.SQL(
        "FROM {table} t WHERE t.source = %(source)s AND t.valid_to IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM _stage s WHERE s.id = t.id)"
    ).format(table=table)
    new_ids = sql.SQL(
        "FROM _stage s WHERE NOT EXISTS "
        "(SELECT 1 FROM {table} t WHERE t.id = s.id AND t.valid_to IS NULL)"
    ).format(table=table)
    report.changed = _count(cur, changed, params)
    fresh = _count(cur, new_ids, params)
    if report.changed:
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET valid_to = %(now)s FROM _stage s "
                "WHERE t.id = s.id AND t.valid_to IS NULL AND ({old}) IS DISTINCT FROM ({new})"
            ).format(table=table, old=compare_old, new=compare_new),
            params,
        )
        report.changed = cur.rowcount
    if batch.retire_missing and _count(cur, retired, params):
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET valid_to = %(now)s "
                "WHERE t.source = %(source)s AND t.valid_to IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM _stage s WHERE s.id = t.id)"
            ).format(table=table),
            params,
        )
        report.retired = cur.rowcount
    inserted = 0
    if report.changed or fresh:
        cur.execute(
            sql.SQL(
                "INSERT INTO {table} (valid_from, {cols}) "
                "SELECT %(now)s, {cols} FROM _stage s WHERE NOT EXISTS "
                "(SELECT 1 FROM {table} t WHERE t.id = s.id AND t.valid_to IS NULL)"
            ).format(table=table, cols=stage_columns),
            params,
        )
        inserted = cur.rowcount
    report.added = inserted - report.changed
    report.unchanged = report.read - inserted


def _count(cur: Any, rows: sql.Composable, params: dict[str, Any]) -> int:
    """Count the rows of a ``FROM ... WHERE ...`` clause."""
    cur.execute(sql.SQL("SELECT count(*) ") + rows, params)
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _refuse_ids_of_other_sources(cur: Any, batch: _Batch) -> None:
    """Raise if a feature's id is current under another source: one source owns an id."""
    limit = get_settings().max_reported_errors
    cur.execute(
        sql.SQL(
            "SELECT s.id, t.source FROM _stage s JOIN {table} t "
            "ON t.id = s.id AND t.valid_to IS NULL AND t.source <> s.source "
            "ORDER BY s.id LIMIT %s"
        ).format(table=sql.Identifier(batch.layer.table)),
        (limit,),
    )
    taken = cur.fetchall()
    if not taken:
        return
    prepared = batch.prepared
    assert prepared is not None  # written: checked
    row_of = dict(zip(prepared["id"], prepared.index, strict=True))
    problems = [
        Problem(
            int(row_of[ident]),
            batch.id_field,
            f"id {ident!r} belongs to source {owner!r} in layer {batch.layer.id}; "
            f"import it from that source, or give the feature another id",
        )
        for ident, owner in sorted(taken, key=lambda item: row_of[item[0]])
    ]
    raise IngestError(batch.path, problems)
