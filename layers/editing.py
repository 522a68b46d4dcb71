"""Editing one feature at a time: create, replace, update and delete, versioned and locked.

The write side of OGC API - Features Part 4 for the layers an operator edits
(:data:`EDITABLE`). Every write is one transaction that keeps history exactly as an import does
(:mod:`layers.ingest`): the current version is retired (``valid_to`` = now) and the new one is
inserted with a new ``vid``; a delete only retires. Features are checked against the catalog by
the same code as an import (:func:`layers.validation.prepare`), so a bad attribute is refused
with a :class:`~layers.errors.ParameterError` naming it, and nothing is written.

Optimistic concurrency: a feature's ETag is derived from its current ``vid``
(:func:`etag_of`). A replace, update or delete names the versions it was made from
(``If-Match``); inside the transaction, under the same per-layer lock imports take, the write
goes ahead only if the current version is still one of them, else :class:`PreconditionFailedError`
(HTTP 412). Two clients editing the same feature from the same version: one wins, the other is
refused and nothing is lost.

Access: every write calls :func:`layers.access.require` with ``edit`` before it touches the
store and :func:`layers.access.note` after, naming the feature, so the request's audit row says
what was written. A row hidden from the caller (a row classification above its clearance)
answers as a missing feature.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.geometry
from psycopg import sql

from layers import access, overlay
from layers.catalog import LAYERS, Layer
from layers.database import cursor, get_engine
from layers.errors import AccessError, ParameterError
from layers.features import resolve_crs
from layers.validation import IngestError, prepare

#: Layers edited one feature at a time (OGC API - Features Part 4); all others are read-only
#: through the editing API (issue 13: incidents, closures, resources' status, signals' plans).
EDITABLE = ("incidents", "closures", "resources", "signals")
#: Source recorded for a feature created through the editing API (an id belongs to one source;
#: a replaced or updated feature keeps the source it had).
EDIT_SOURCE = "api"
#: Properties the store keeps itself, shown by a read and ignored in a write: a client that
#: reads a feature, changes it and sends it back does not store them as attributes.
SERVER_PROPERTIES = frozenset({"source", "valid_from", "valid_to"})
#: Largest feature id accepted, characters.
MAX_ID_LENGTH = 256

_ETAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


class EditError(ValueError):
    """Base of the refusals of an edit that are not a bad parameter."""


class PreconditionFailedError(EditError):
    """The version a write was made from is no longer the current one (HTTP 412).

    Parameters
    ----------
    message
        What happened.
    current
        The ETag of the current version, or None if the feature no longer exists.
    """

    def __init__(self, message: str, *, current: str | None):
        super().__init__(message)
        self.current = current


class FeatureNotFoundError(EditError, LookupError):
    """No current feature has the id (or the caller may not see it) (HTTP 404)."""


class FeatureExistsError(EditError):
    """A create names the id of a current feature (HTTP 409)."""


class NotEditableError(EditError):
    """The layer is not edited through the API (HTTP 405)."""


@dataclass(frozen=True)
class Edit:
    """The outcome of one write.

    Parameters
    ----------
    layer
        Layer id.
    id
        Feature id.
    vid
        ``vid`` of the new version; None after a delete.
    at
        When the write took effect (the new version's ``valid_from``, or the retired one's
        ``valid_to``), UTC.
    """

    layer: str
    id: str
    vid: int | None
    at: datetime

    @property
    def etag(self) -> str | None:
        """The ETag of the new version (None after a delete)."""
        return None if self.vid is None else etag_of(self.vid)


def etag_of(vid: int) -> str:
    """Return the strong ETag of a feature version.

    Parameters
    ----------
    vid
        The version's ``vid``.

    Returns
    -------
    str
        The quoted entity tag (``"123"``), as the ``ETag`` header carries it.
    """
    return f'"{int(vid)}"'


def parse_if_match(value: str) -> list[int]:
    """Return the versions an ``If-Match`` header names (RFC 9110 §13.1.1).

    Weak tags never match (If-Match compares strongly) and tags this store did not make match
    nothing; both leave the list short, so the write is refused as stale.

    Parameters
    ----------
    value
        The header's value: one or more quoted entity tags, comma separated.

    Returns
    -------
    list of int
        The ``vid`` of each strong tag that names one.

    Raises
    ------
    ParameterError
        For ``*`` (an edit must name the version it was made from) or a value that is not a
        list of entity tags; ``parameter`` is ``If-Match``.
    """
    text = value.strip()
    if text == "*":
        raise ParameterError(
            "If-Match: '*' is not accepted; give the ETag of the version the edit was made "
            "from (GET the feature)",
            parameter="If-Match",
        )
    vids: list[int] = []
    position = 0
    while position < len(text):
        match = _ETAG.match(text, position)
        if match is None or match.end() == position:
            raise ParameterError(
                'If-Match: expected quoted entity tags such as "123"', parameter="If-Match"
            )
        weak, tag = match.group(1), match.group(2)
        if not weak and tag.isdigit() and len(tag) < 19:
            vids.append(int(tag))
        position = match.end()
    return vids


def editable_layer(layer_id: str) -> Layer:
    """Return an editable layer, or refuse.

    Parameters
    ----------
    layer_id
        A collection id.

    Returns
    -------
    Layer
        The layer.

    Raises
    ------
    NotEditableError
        If the layer is not one of :data:`EDITABLE`.
    """
    if layer_id not in EDITABLE:
        raise NotEditableError(
            f"layer {layer_id!r} is not edited through the API; editable: {', '.join(EDITABLE)}"
        )
    return LAYERS[layer_id]


def current_etag(layer_id: str, feature_id: str, *, url: str | None = None) -> str | None:
    """Return the ETag of a feature's current version as the caller sees it, or None.

    Read it before the feature's body: if a write falls between the two reads, the ETag names
    the older version and an edit made from the body is refused (412), never applied over a
    version its author did not see.

    Parameters
    ----------
    layer_id
        A collection id (any layer: reads carry ETags on every layer).
    feature_id
        Feature id.
    url
        Database URL; the configured one by default.

    Returns
    -------
    str or None
        The quoted ETag, or None when there is no current feature the caller may see.
    """
    layer = LAYERS.get(layer_id)
    if layer is None:
        return None
    query = sql.SQL("SELECT vid FROM {rel} AS t WHERE id = %s AND {when}").format(
        rel=access.relation(layer),
        when=overlay.valid_at(overlay.read_moment(None)),  # a scenario's past moment: then
    )
    with cursor(url) as cur:
        cur.execute(query, (feature_id,))
        row = cur.fetchone()
    return None if row is None else etag_of(row[0])


def none_match(value: str, etag: str) -> bool:
    """Tell whether an ``If-None-Match`` header names the current ETag (RFC 9110 §13.1.2).

    Compared weakly, as the RFC says for this header; ``*`` names any current version.

    Parameters
    ----------
    value
        The header's value.
    etag
        The current ETag (:func:`etag_of`).

    Returns
    -------
    bool
        True when the client's copy is current (answer 304).
    """
    if value.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(
        match.group(0).strip().rstrip(",").strip().removeprefix("W/") == wanted
        for match in _ETAG.finditer(value)
    )


def read_version(layer_id: str, vid: int, *, url: str | None = None) -> dict[str, Any] | None:
    """Return one version of a feature as GeoJSON (CRS84), as the caller may see it.

    The answer of a write: the version the write made, not whatever is current a moment
    later, so that the body and its ETag agree.

    Parameters
    ----------
    layer_id
        Layer id.
    vid
        The version's ``vid``.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict or None
        The feature, shaped as a read of one item shapes it; None if hidden from the caller.
    """
    layer = LAYERS[layer_id]
    typed = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(name), sql.Identifier(name))
        for name in ("source", "valid_from", "valid_to", *layer.field_names)
    )
    query = sql.SQL(
        "SELECT json_build_object('type', 'Feature', 'id', id, "
        "'geometry', ST_AsGeoJSON(geom, {decimals})::json, "
        "'properties', props || jsonb_build_object({typed})) FROM {rel} AS t WHERE vid = %s"
    ).format(
        decimals=sql.Literal(resolve_crs(None, "crs").decimals),
        typed=typed,
        rel=access.relation(layer),
    )
    with cursor(url) as cur:
        cur.execute(query, (vid,))
        row = cur.fetchone()
    return None if row is None else dict(row[0])


def create(layer_id: str, feature: Mapping[str, Any], *, url: str | None = None) -> Edit:
    """Add a feature (a GeoJSON Feature in CRS84) as the first version of a new id.

    Parameters
    ----------
    layer_id
        One of :data:`EDITABLE`.
    feature
        A GeoJSON Feature; its ``id`` is kept if given, else a UUID is assigned.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Edit
        The new feature's id and version.

    Raises
    ------
    NotEditableError
        If the layer is not editable.
    layers.errors.AccessError
        If the caller may not edit the layer.
    ParameterError
        If the feature does not fit the catalog (naming the attribute).
    FeatureExistsError
        If a current feature has the id.
    """
    layer = editable_layer(layer_id)
    access.require(layer.id, "edit")
    given = feature.get("id")
    feature_id = checked_id(given) if given is not None else str(uuid.uuid4())
    row = validated_row(layer, feature_id, feature)
    with _transaction(layer, url) as (cur, now):
        cur.execute(
            sql.SQL("SELECT 1 FROM {} WHERE id = %s AND valid_to IS NULL").format(
                sql.Identifier(layer.table)
            ),
            (feature_id,),
        )
        if cur.fetchone() is not None:
            raise FeatureExistsError(
                f"feature {feature_id!r} exists in {layer.id}; replace it (PUT) or give another id"
            )
        vid = _insert(cur, layer, row, source=EDIT_SOURCE, now=now)
    access.note(layer.id, count=1, ids=[feature_id])
    return Edit(layer.id, feature_id, vid, now)


def replace(
    layer_id: str,
    feature_id: str,
    feature: Mapping[str, Any],
    *,
    if_match: Sequence[int],
    url: str | None = None,
) -> Edit:
    """Replace a feature with a new version (PUT): the body is the whole new feature.

    Parameters
    ----------
    layer_id
        One of :data:`EDITABLE`.
    feature_id
        The feature's id (an ``id`` in the body, if any, must be the same).
    feature
        A GeoJSON Feature in CRS84.
    if_match
        The versions (``vid``) the edit may replace (:func:`parse_if_match`).
    url
        Database URL; the configured one by default.

    Returns
    -------
    Edit
        The new version.

    Raises
    ------
    NotEditableError, layers.errors.AccessError, ParameterError
        As :func:`create` says.
    FeatureNotFoundError
        If no current feature has the id.
    PreconditionFailedError
        If the current version is not one of ``if_match``.
    """
    layer = editable_layer(layer_id)
    access.require(layer.id, "edit")
    checked_id(feature_id, parameter="featureId")
    body_id = feature.get("id")
    if body_id is not None and str(body_id) != feature_id:
        raise ParameterError(
            f"id: the body's id {body_id!r} is not the feature's {feature_id!r}", parameter="id"
        )
    validated_row(layer, feature_id, feature)  # refuse a bad feature before taking the lock
    return _new_version(
        layer,
        feature_id,
        if_match,
        url,
        lambda current: validated_row(layer, feature_id, _keep_masked(layer, feature, current)),
    )


def update(
    layer_id: str,
    feature_id: str,
    patch: Mapping[str, Any],
    *,
    if_match: Sequence[int],
    url: str | None = None,
) -> Edit:
    """Change part of a feature (PATCH): a JSON merge patch (RFC 7396) of its GeoJSON.

    ``{"properties": {"severity": 4, "note": null}}`` sets ``severity`` and removes ``note``;
    a ``geometry`` member replaces the geometry. The patch is applied to the stored values, not
    to a masked view of them: attributes the caller does not see are kept as they are.

    Parameters
    ----------
    layer_id
        One of :data:`EDITABLE`.
    feature_id
        The feature's id.
    patch
        The merge patch.
    if_match
        The versions (``vid``) the edit may replace (:func:`parse_if_match`).
    url
        Database URL; the configured one by default.

    Returns
    -------
    Edit
        The new version.

    Raises
    ------
    NotEditableError, layers.errors.AccessError, ParameterError
        As :func:`create` says.
    FeatureNotFoundError, PreconditionFailedError
        As :func:`replace` says.
    """
    layer = editable_layer(layer_id)
    access.require(layer.id, "edit")
    checked_id(feature_id, parameter="featureId")
    if "id" in patch and patch["id"] is not None and str(patch["id"]) != feature_id:
        raise ParameterError("id: a patch cannot change a feature's id", parameter="id")
    for member in ("properties", "geometry"):
        if member in patch and patch[member] is not None and not isinstance(patch[member], dict):
            raise ParameterError(f"{member}: expected a JSON object", parameter=member)
    if patch.get("geometry", {}) is None:
        raise ParameterError("geometry: a feature of this layer needs one", parameter="geometry")

    def patched(current: dict[str, Any]) -> dict[str, Any]:
        merged = merge_patch(current, dict(patch))
        return validated_row(layer, feature_id, _keep_masked(layer, merged, current))

    return _new_version(layer, feature_id, if_match, url, patched)


def delete(
    layer_id: str, feature_id: str, *, if_match: Sequence[int], url: str | None = None
) -> Edit:
    """Retire a feature's current version: it is gone now and still there for ``datetime=``.

    Parameters
    ----------
    layer_id
        One of :data:`EDITABLE`.
    feature_id
        The feature's id.
    if_match
        The versions (``vid``) the delete may retire (:func:`parse_if_match`).
    url
        Database URL; the configured one by default.

    Returns
    -------
    Edit
        With ``vid`` None and ``at`` the moment it was retired.

    Raises
    ------
    NotEditableError, layers.errors.AccessError, FeatureNotFoundError, PreconditionFailedError
        As :func:`replace` says.
    """
    layer = editable_layer(layer_id)
    access.require(layer.id, "edit")
    checked_id(feature_id, parameter="featureId")
    with _transaction(layer, url) as (cur, now):
        vid, _source, _feature = _lock_current(cur, layer, feature_id, if_match)
        _retire(cur, layer, vid, now)
    access.note(layer.id, count=1, ids=[feature_id])
    return Edit(layer.id, feature_id, None, now)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7396 §2, the algorithm as written there).

    Parameters
    ----------
    target
        The JSON value patched (not modified).
    patch
        The merge patch: an object merges member by member (``null`` removes a member);
        anything else replaces the target.

    Returns
    -------
    Any
        The patched value.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


# --- inside -------------------------------------------------------------------------------


def checked_id(value: Any, *, parameter: str = "id") -> str:
    """Return a feature id given by a client as text, or refuse it.

    Parameters
    ----------
    value
        The id (a string or an integer).
    parameter
        The parameter named in the error.

    Returns
    -------
    str
        The id.

    Raises
    ------
    ParameterError
        For a value that is not a string or integer, empty, longer than
        :data:`MAX_ID_LENGTH` or holding NUL.
    """
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ParameterError(f"{parameter}: expected a string or an integer", parameter=parameter)
    text = str(value)
    if not text.strip() or len(text) > MAX_ID_LENGTH or "\x00" in text:
        raise ParameterError(
            f"{parameter}: expected 1 to {MAX_ID_LENGTH} characters, no NUL",
            parameter=parameter,
        )
    return text


def validated_row(layer: Layer, feature_id: str, feature: Mapping[str, Any]) -> dict[str, Any]:
    """Check a GeoJSON Feature against the catalog as an import does; return the row to store.

    Parameters
    ----------
    layer
        The layer it is for.
    feature_id
        Its id.
    feature
        A GeoJSON Feature (CRS84); ``source``, ``valid_from`` and ``valid_to`` among its
        properties are ignored.

    Returns
    -------
    dict
        ``id``, ``props`` (JSON text), ``geom`` (EWKB, EPSG:4326) and each typed attribute.

    Raises
    ------
    ParameterError
        Naming the member or attribute at fault, as :func:`layers.validation.prepare` finds it.
    """
    if feature.get("type", "Feature") != "Feature":
        raise ParameterError("type: expected 'Feature'", parameter="type")
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise ParameterError("properties: expected a JSON object", parameter="properties")
    raw_geometry = feature.get("geometry")
    if not isinstance(raw_geometry, dict):
        raise ParameterError("geometry: a GeoJSON geometry is required", parameter="geometry")
    try:
        geometry = shapely.geometry.shape(raw_geometry)
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
        shapely.errors.ShapelyError,
    ) as exc:
        raise ParameterError(
            f"geometry: not a GeoJSON geometry ({exc})", parameter="geometry"
        ) from None
    attributes = {
        str(k): v for k, v in properties.items() if k not in SERVER_PROPERTIES and k != "id"
    }
    frame = gpd.GeoDataFrame(
        {"id": [feature_id], **{k: [v] for k, v in attributes.items()}},
        geometry=[geometry],
        crs="EPSG:4326",  # CRS84: geopandas keeps lon/lat order
        index=[1],
    )
    if frame.geometry.name in attributes:  # a property named like the geometry column
        raise ParameterError(
            "properties: 'geometry' is not an attribute name", parameter="geometry"
        )
    try:
        prepared, _repaired = prepare(frame, layer=layer, path="feature")
    except IngestError as exc:
        first = exc.problems[0]
        field = first.field or "feature"
        raise ParameterError(f"{field}: {first.reason}", parameter=field) from None
    record = prepared.iloc[0]
    row: dict[str, Any] = {
        "id": feature_id,
        "props": record["props"],
        "geom": shapely.to_wkb(record["geom"], include_srid=True, output_dimension=2),
    }
    for spec in layer.fields:
        row[spec.name] = _plain(record[spec.name])
    return row


def _keep_masked(
    layer: Layer, feature: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """Keep the stored value of every attribute masked for the caller, whatever it sent.

    A caller shown a masked value (``138****89``, a rounded number, nothing) can only send
    that back, or a guess: writing it would destroy the real value it was not allowed to see.
    A caller whose view of the geometry is masked may not edit the feature at all.
    """
    grant = access.current()
    masks = () if grant is None else grant.masks(layer.id)
    if not masks:
        return dict(feature)
    if any(mask.attribute == "geom" for mask in masks):
        raise AccessError(
            f"the geometry of {layer.id} is masked for the caller, who may not edit it",
            status=403,
            parameter="geometry",
        )
    stored = dict(current.get("properties") or {})
    given = dict(feature.get("properties") or {})
    typed = set(layer.field_names)
    for mask in masks:
        if mask.attribute == "props":
            names = [name for name in {*stored, *given} if name not in typed]
        else:
            names = [mask.attribute.removeprefix("props.")]
        for name in names:
            if name in stored:
                given[name] = stored[name]
            else:
                given.pop(name, None)
    return {**feature, "properties": given}


def _plain(value: Any) -> Any:
    """Return a value psycopg adapts: numpy scalars to Python, missing values to None."""
    if value is None or (not isinstance(value, str | bytes | list | dict) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


@contextmanager
def _transaction(layer: Layer, url: str | None) -> Iterator[tuple[Any, datetime]]:
    """One write transaction as the store's owner, queued behind imports of the layer."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            # the lock imports take (layers.ingest): imports and edits of a layer queue up, so
            # versions are closed and opened in order and a check made here stays true
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twin.ingest.{layer.id}",))
            cur.execute("SELECT clock_timestamp()")
            row = cur.fetchone()
            assert row is not None
            yield cur, row[0]


def _feature_json(layer: Layer) -> sql.Composable:
    """Write the stored (unmasked) feature as GeoJSON members, for a merge patch."""
    typed = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(name), sql.Identifier(name))
        for name in layer.field_names
    )
    return sql.SQL(
        "json_build_object('type', 'Feature', 'id', id, "
        "'geometry', ST_AsGeoJSON(geom, 15)::json, "
        "'properties', props || jsonb_build_object({typed}))"
    ).format(typed=typed)


def _lock_current(
    cur: Any, layer: Layer, feature_id: str, if_match: Sequence[int]
) -> tuple[int, str, dict[str, Any]]:
    """Lock a feature's current version; check the caller sees it and named it in If-Match."""
    cur.execute(
        sql.SQL(
            "SELECT vid, source, {feature} FROM {table} WHERE id = %s AND valid_to IS NULL "
            "FOR UPDATE"
        ).format(feature=_feature_json(layer), table=sql.Identifier(layer.table)),
        (feature_id,),
    )
    row = cur.fetchone()
    if row is not None:
        # the caller's view of the layer (row classifications above its clearance left out)
        cur.execute(
            sql.SQL("SELECT 1 FROM {rel} AS t WHERE vid = %s").format(rel=access.relation(layer)),
            (row[0],),
        )
        if cur.fetchone() is None:
            row = None
    if row is None:
        raise FeatureNotFoundError(f"no feature {feature_id!r} in {layer.id}")
    vid, source, feature = row
    if vid not in if_match:
        raise PreconditionFailedError(
            f"feature {feature_id!r} in {layer.id} changed since the version the edit names "
            f"(If-Match); its current ETag is {etag_of(vid)}: GET it, apply the edit again",
            current=etag_of(vid),
        )
    return vid, source, dict(feature)


def _retire(cur: Any, layer: Layer, vid: int, now: datetime) -> None:
    cur.execute(
        sql.SQL("UPDATE {} SET valid_to = %s WHERE vid = %s AND valid_to IS NULL").format(
            sql.Identifier(layer.table)
        ),
        (now, vid),
    )
    if cur.rowcount != 1:  # cannot happen under the lock; refuse rather than fork history
        raise PreconditionFailedError(
            f"version {vid} of {layer.id} was retired meanwhile", current=None
        )


def _insert(cur: Any, layer: Layer, row: Mapping[str, Any], *, source: str, now: datetime) -> int:
    names = ("source", "valid_from", "id", "props", "geom", *layer.field_names)
    values: list[sql.Composable] = [
        sql.Placeholder(),
        sql.Placeholder(),
        sql.Placeholder(),
        sql.SQL("{}::jsonb").format(sql.Placeholder()),
        sql.SQL("ST_GeomFromEWKB({})").format(sql.Placeholder()),
    ]
    for spec in layer.fields:
        cast = "jsonb" if spec.kind == "json" else None
        values.append(sql.SQL("{}::jsonb").format(sql.Placeholder()) if cast else sql.Placeholder())
    cur.execute(
        sql.SQL("INSERT INTO {table} ({cols}) VALUES ({values}) RETURNING vid").format(
            table=sql.Identifier(layer.table),
            cols=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=sql.SQL(", ").join(values),
        ),
        (
            source,
            now,
            row["id"],
            row["props"],
            row["geom"],
            *(row[name] for name in layer.field_names),
        ),
    )
    inserted = cur.fetchone()
    assert inserted is not None
    return int(inserted[0])


def _new_version(
    layer: Layer,
    feature_id: str,
    if_match: Sequence[int],
    url: str | None,
    build: Any,
) -> Edit:
    """Lock, check, retire the current version and insert ``build(current feature)``."""
    with _transaction(layer, url) as (cur, now):
        vid, source, current = _lock_current(cur, layer, feature_id, if_match)
        row = build(current)
        _retire(cur, layer, vid, now)
        new_vid = _insert(cur, layer, row, source=source, now=now)
    access.note(layer.id, count=1, ids=[feature_id])
    return Edit(layer.id, feature_id, new_vid, now)
