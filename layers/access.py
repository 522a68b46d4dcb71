"""Who may see what: roles, clearance, classified layers and rows, masked attributes.

The rules are data in the store (migration 0012: ``access_roles``, ``access_layers``,
``access_rows``, ``access_masks``, ``access_permissions``), read here once per change (they move
the ``access`` counter of ``layer_versions``). A caller's :class:`Grant` — its roles, the
clearance of the highest, the rules that apply to it — decides, in one place, for every path that
reads a layer (features, GeoArrow, tiles, one-map answers, the facade):

- **which layers** it sees: a layer classified at or below its clearance, with ``read``
  permission (:meth:`Grant.require`); a hidden layer answers as an unknown one;
- **which rows**: rows classified above the layer (``access_rows``) are left out;
- **which values**: masked attributes are replaced in SQL (:meth:`Grant.relation`), so that a
  feature, its tile and a one-map answer carry the same masked value, and a filter on a masked
  attribute sees only the masked value (nothing can be inferred through ``filter=``).

Levels follow GB/T 43697-2024's grading with an open level below it: 0 public (公开),
1 general (一般), 2 important (重要), 3 core (核心).

The grant in force is a context variable (:func:`acting_as`), set by the API for each request
and by the facade for an analyst's session; with none set the caller is the store's owner (the
CLI, ingest, the live bridge) and sees everything unmasked. :func:`layers.database.cursor` runs
every read under the grant's clearance as the ``twin_reader`` database role, whose row-level
security policies (generated from the same rules) are the second wall: a query that forgets the
relation above still cannot read a row above the caller's clearance.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa
from psycopg import sql
from pyproj import CRS

from layers import overlay
from layers.catalog import COLLECTIONS, Field, Layer
from layers.database import database_url, get_engine, owner_cursor, reading_at
from layers.errors import AccessError
from layers.settings import get_settings

Permission = Literal["read", "edit", "admin"]
#: Names of the clearance levels (GB/T 43697-2024's grades, with the open level 0).
LEVELS = {0: "public", 1: "general", 2: "important", 3: "core"}
#: Permissions in order: each includes those before it.
PERMISSIONS: tuple[Permission, ...] = ("read", "edit", "admin")
#: The level a layer missing from ``access_layers`` is taken at: the highest (fail closed).
UNCLASSIFIED_LEVEL = 3
ANONYMOUS = "anonymous"
#: What is classified and permitted like a layer without being a collection: the live feeds
#: (SensorThings entities and observations, ``/live``) and the what-if scenarios
#: (:mod:`layers.scenarios`).
FEEDS = ("observations", "scenarios")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of the local issuer or an OIDC provider, or nobody.

    Parameters
    ----------
    name
        The user name (the token's ``sub`` or ``preferred_username``), or ``"anonymous"``.
    roles
        Role names; those unknown to the store are ignored.
    via
        How the caller proved it: ``"token"`` (local issuer), ``"oidc"``, ``"api-key"``,
        ``"anonymous"`` or ``"session"`` (the Python facade).
    """

    name: str
    roles: tuple[str, ...]
    via: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        """Whether the caller did not sign in."""
        return self.via == "anonymous"


@dataclass(frozen=True)
class RowRule:
    """Rows of a layer whose ``attribute`` is one of ``values`` are classified at ``level``."""

    layer: str
    attribute: str
    values: tuple[str, ...]
    level: int


@dataclass(frozen=True)
class Mask:
    """An attribute masked for callers below ``level`` (and, if ``role`` is set, of that role).

    ``attribute`` is a typed column, ``props`` (every untyped attribute), ``props.<key>`` or
    ``geom``. Methods: ``hide`` (null; ``{}`` for ``props``; a hidden geometry hides the
    feature), ``partial`` (keep ``keep_start`` and ``keep_end`` characters, the rest ``*``:
    PostgreSQL Anonymizer's ``partial()``), ``round`` (to the nearest multiple of ``step``), and
    ``snap`` (the geometry as a point on a ``step``-metre grid of the city's metric CRS; the
    feature's id is then shown as a digest that names nothing else). A
    method that does not fit the attribute's type hides it (fail closed).
    """

    layer: str
    attribute: str
    method: str
    step: float | None
    keep_start: int | None
    keep_end: int | None
    level: int
    role: str | None = None


@dataclass(frozen=True)
class Rules:
    """Every access rule in the store, as of one value of the ``access`` counter."""

    version: int
    roles: dict[str, int]
    levels: dict[str, int]
    rows: tuple[RowRule, ...]
    masks: tuple[Mask, ...]
    permissions: frozenset[tuple[str, str, str]]

    def level(self, layer_id: str) -> int:
        """Return a layer's classification (:data:`UNCLASSIFIED_LEVEL` if it has none)."""
        return self.levels.get(layer_id, UNCLASSIFIED_LEVEL)


@dataclass(frozen=True)
class Grant:
    """What one caller may see and do, from its principal and the rules.

    Parameters
    ----------
    principal
        The caller.
    rules
        The rules in force.
    """

    principal: Principal
    rules: Rules
    roles: tuple[str, ...] = field(init=False)
    clearance: int = field(init=False)
    _signatures: dict[tuple[str, ...], str] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        known = tuple(role for role in self.principal.roles if role in self.rules.roles)
        object.__setattr__(self, "roles", known)
        object.__setattr__(
            self, "clearance", max((self.rules.roles[role] for role in known), default=-1)
        )

    def may(self, layer_id: str, permission: Permission = "read") -> bool:
        """Tell whether the caller may ``permission`` the layer.

        Reading needs the clearance and a ``read`` (or higher) permission; editing and
        administering need the clearance and that permission (``admin`` includes ``edit``).

        Parameters
        ----------
        layer_id
            A collection id.
        permission
            ``read``, ``edit`` or ``admin``.

        Returns
        -------
        bool
            Whether it may.
        """
        if self.clearance < self.rules.level(layer_id):
            return False
        wanted = PERMISSIONS.index(permission)
        return any(
            (role, layer, held) in self.rules.permissions
            for role in self.roles
            for layer in (layer_id, "*")
            for held in PERMISSIONS[wanted:]
        )

    def require(self, layer_id: str, permission: Permission = "read") -> None:
        """Refuse, with the status the API answers, unless the caller may act on the layer.

        Parameters
        ----------
        layer_id
            A collection id.
        permission
            What the caller wants to do.

        Raises
        ------
        AccessError
            401 for an anonymous caller (sign in to go on), 404 for a layer hidden from a
            signed-in caller (answered as an unknown layer), 403 for a layer it can read but
            not ``permission``.
        """
        if self.may(layer_id, permission):
            return
        if self.principal.anonymous:
            raise AccessError(
                f"sign in to {permission} layer {layer_id!r}", status=401, parameter="collectionId"
            )
        if not self.may(layer_id, "read"):
            visible = ", ".join(self.visible(list(COLLECTIONS)))
            raise AccessError(
                f"unknown layer {layer_id!r}; known layers: {visible}",
                status=404,
                parameter="collectionId",
            )
        raise AccessError(
            f"{self.principal.name} ({', '.join(self.roles) or 'no role'}) may not "
            f"{permission} layer {layer_id!r}",
            status=403,
            parameter="collectionId",
        )

    def visible(self, layer_ids: Sequence[str]) -> list[str]:
        """Return the layers of ``layer_ids`` the caller may read, in the same order."""
        return [layer_id for layer_id in layer_ids if self.may(layer_id)]

    def masks(self, layer_id: str) -> tuple[Mask, ...]:
        """Return the masks that apply to the caller on a layer, in the store's order."""
        return tuple(
            mask
            for mask in self.rules.masks
            if mask.layer == layer_id
            and self.clearance < mask.level
            and (mask.role is None or mask.role in self.roles)
        )

    def row_rules(self, layer_id: str) -> tuple[RowRule, ...]:
        """Return the row classifications that hide rows of a layer from the caller."""
        return tuple(
            rule
            for rule in self.rules.rows
            if rule.layer == layer_id and self.clearance < rule.level
        )

    def signature(self, layer_ids: Sequence[str]) -> str:
        """Return a digest of what the caller sees of the layers: a cache key part.

        Two callers with the same signature are served the same bytes (a tile cut for one
        may be served to the other); any difference in clearance, masks or hidden rows
        gives another signature. A caller who sees the layers whole signs as the owner.

        Parameters
        ----------
        layer_ids
            The layers of an answer.

        Returns
        -------
        str
            16 hex digits.
        """
        key = tuple(layer_ids)
        known = self._signatures.get(key)
        if known is not None:
            return known
        seen = [
            (layer_id, self.may(layer_id), self.masks(layer_id), self.row_rules(layer_id))
            for layer_id in layer_ids
        ]
        if all(may and not masks and not rows for _, may, masks, rows in seen):
            signature = "owner"  # sees what the owner sees: shares the owner's entries
        else:
            signature = hashlib.sha1(repr(seen).encode()).hexdigest()[:16]
        if len(self._signatures) < 1000:
            self._signatures[key] = signature
        return signature

    def relation(self, layer: Layer, source: sql.Composable | None = None) -> sql.Composable:
        """Return what to read a layer from, for this caller: the table, or a masked subquery.

        The subquery has the table's columns under their own names (``vid``, ``id``,
        ``source``, ``valid_from``, ``valid_to``, ``props``, ``geom``, ``geom_3857`` and the
        typed attributes), masked values in place and classified rows left out; give it an
        alias (``FROM {relation} AS t``). A layer with nothing masked for the caller is the
        table itself, so its indexes serve as before.

        Parameters
        ----------
        layer
            The layer (stored or live).
        source
            The rows to mask: the layer's table by default, or the layer in a scenario
            (:func:`layers.overlay.relation`).

        Returns
        -------
        psycopg.sql.Composable
            A table identifier or a parenthesised subquery.
        """
        return masked_relation(layer, self.masks(layer.id), self.row_rules(layer.id), source=source)


def masked_relation(
    layer: Layer,
    masks: Sequence[Mask],
    rows: Sequence[RowRule],
    *,
    source: sql.Composable | None = None,
) -> sql.Composable:
    """Write the SQL relation of a layer with ``masks`` applied and ``rows`` left out.

    Parameters
    ----------
    layer
        The layer.
    masks
        Masks to apply (those of :meth:`Grant.masks`).
    rows
        Row classifications to leave out (those of :meth:`Grant.row_rules`).
    source
        What to read the rows from: the layer's table by default, or a subquery with its
        columns (the layer in a scenario, :func:`layers.overlay.relation`).

    Returns
    -------
    psycopg.sql.Composable
        ``source``, or ``(SELECT ... FROM source WHERE ...)``.
    """
    table = source if source is not None else sql.Identifier(layer.table)
    if not masks and not rows:
        return table
    by_attribute: dict[str, list[Mask]] = {}
    for mask in masks:
        by_attribute.setdefault(mask.attribute, []).append(mask)
    geom, geom_3857, hidden = _geometry(by_attribute.get("geom", []))
    # a coarsened feature's id would tell where it is (an id naming the building it serves):
    # it is shown as a digest, the same in every path, that leads nowhere else
    feature_id: sql.Composable = (
        sql.SQL("'masked/' || left(md5(id), 16) AS id")
        if "geom" in by_attribute
        else sql.Identifier("id")
    )
    columns: list[sql.Composable] = [sql.Identifier("vid"), feature_id]
    columns += [sql.Identifier(name) for name in ("source", "valid_from", "valid_to")]
    columns.append(sql.SQL("{} AS props").format(_props(masks)))
    columns += [
        sql.SQL("{} AS geom").format(geom),
        sql.SQL("{} AS geom_3857").format(geom_3857),
    ]
    for column in layer.fields:
        expression = _column(column, by_attribute.get(column.name, []))
        columns.append(sql.SQL("{} AS {}").format(expression, sql.Identifier(column.name)))
    conditions: list[sql.Composable] = [
        sql.SQL("NOT coalesce({}::text = ANY ({}), false)").format(
            sql.Identifier(rule.attribute), sql.Literal(list(rule.values))
        )
        for rule in rows
        if rule.attribute in {"id", "source", *layer.field_names}
    ]
    if hidden:
        conditions.append(sql.SQL("false"))
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    return sql.SQL("(SELECT {columns} FROM {table} AS m WHERE {where})").format(
        columns=sql.SQL(", ").join(columns), table=table, where=where
    )


def _partial(value: sql.Composable, keep_start: int, keep_end: int) -> sql.Composable:
    """PostgreSQL Anonymizer's ``partial()``: keep the ends of a text, star the middle."""
    return sql.SQL(
        "CASE WHEN {v} IS NULL THEN NULL WHEN length({v}) <= {kept} THEN repeat('*', length({v})) "
        "ELSE left({v}, {start}) || repeat('*', length({v}) - {kept}) || right({v}, {end}) END"
    ).format(
        v=value,
        kept=sql.Literal(keep_start + keep_end),
        start=sql.Literal(keep_start),
        end=sql.Literal(keep_end),
    )


_SQL_TYPES = {
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "json": "jsonb",
    "timestamp": "timestamptz",
}


def _column(column: Field, masks: Sequence[Mask]) -> sql.Composable:
    """Write a typed column's expression under its masks (the strongest wins: hide first)."""
    name = sql.Identifier(column.name)
    if not masks:
        return name
    null = sql.SQL("NULL::{}").format(sql.SQL(_SQL_TYPES[column.kind]))
    methods = {mask.method: mask for mask in masks}
    if "hide" in methods:
        return null
    if "partial" in methods:
        mask = methods["partial"]
        if column.kind != "text":
            return null
        return _partial(name, mask.keep_start or 0, mask.keep_end or 0)
    if "round" in methods:
        mask = methods["round"]
        if column.kind not in ("int", "bigint", "float") or not mask.step:
            return null
        return sql.SQL("(round({}::numeric / {step}) * {step})::{}").format(
            name, sql.SQL(_SQL_TYPES[column.kind]), step=sql.Literal(mask.step)
        )
    return null


def _props(masks: Sequence[Mask]) -> sql.Composable:
    """Write the ``props`` expression under the masks on ``props`` and ``props.<key>``."""
    expression: sql.Composable = sql.Identifier("props")
    for mask in masks:
        if mask.attribute == "props":
            return sql.SQL("'{}'::jsonb")
        if not mask.attribute.startswith("props."):
            continue
        key = sql.Literal(mask.attribute.removeprefix("props."))
        value = sql.SQL("({} ->> {})").format(expression, key)
        if mask.method == "partial":
            replaced = sql.SQL("jsonb_set({e}, ARRAY[{k}], to_jsonb({masked}))").format(
                e=expression,
                k=key,
                masked=_partial(value, mask.keep_start or 0, mask.keep_end or 0),
            )
        elif mask.method == "round" and mask.step:
            replaced = sql.SQL(
                "CASE WHEN jsonb_typeof({e} -> {k}) = 'number' THEN jsonb_set({e}, ARRAY[{k}], "
                "to_jsonb(round(({e} ->> {k})::numeric / {s}) * {s})) ELSE {e} - {k} END"
            ).format(e=expression, k=key, s=sql.Literal(mask.step))
        else:
            replaced = sql.SQL("({} - {})").format(expression, key)
        expression = sql.SQL("(CASE WHEN {e} ? {k} THEN {r} ELSE {e} END)").format(
            e=expression, k=key, r=replaced
        )
    return expression


def _geometry(masks: Sequence[Mask]) -> tuple[sql.Composable, sql.Composable, bool]:
    """Write ``geom`` and ``geom_3857`` under geometry masks; say whether it is hidden."""
    if not masks:
        return sql.Identifier("geom"), sql.Identifier("geom_3857"), False
    snaps = [mask for mask in masks if mask.method == "snap" and mask.step]
    if len(snaps) != len(masks):  # hide, or a method that does not fit a geometry
        return sql.SQL("NULL::geometry"), sql.SQL("NULL::geometry"), True
    step = max(mask.step or 0 for mask in snaps)
    srid = CRS.from_user_input(get_settings().metric_crs).to_epsg() or 32632
    snapped = sql.SQL(
        "ST_Transform(ST_SnapToGrid(ST_Transform(ST_PointOnSurface(geom), {srid}), {step}), 4326)"
    ).format(srid=sql.Literal(srid), step=sql.Literal(step))
    return snapped, sql.SQL("ST_Transform({}, 3857)").format(snapped), False


# -- the rules, read once per change ------------------------------------------------------------

#: How long a process goes on with the rules it read before looking for a change, s.
RULES_REFRESH_S = 1.0
_RULES: dict[str, Rules] = {}
_CHECKED: dict[str, float] = {}
_RULES_LOCK = threading.Lock()


def load_rules(*, url: str | None = None) -> Rules:
    """Return the access rules in the store, read again only when the ``access`` counter moved.

    The counter is looked at once every :data:`RULES_REFRESH_S` at most: a change of the rules
    reaches every process within that time.

    Read as the store's owner whatever grant is in force (the rules themselves are not
    classified; the sign-in tables are never read here).

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    Rules
        The rules.
    """
    where = database_url(url)
    cached = _RULES.get(where)
    if cached is not None and time.monotonic() - _CHECKED.get(where, 0.0) < RULES_REFRESH_S:
        return cached
    with owner_cursor(url) as cur:
        cur.execute("SELECT version FROM layer_versions WHERE layer = 'access'")
        row = cur.fetchone()
        version = int(row[0]) if row else -1
        _CHECKED[where] = time.monotonic()
        if cached is not None and cached.version == version:
            return cached
        cur.execute("SELECT name, clearance FROM access_roles")
        roles = {name: int(clearance) for name, clearance in cur.fetchall()}
        cur.execute("SELECT layer, level FROM access_layers")
        levels = {layer: int(level) for layer, level in cur.fetchall()}
        cur.execute('SELECT layer, attribute, "values", level FROM access_rows ORDER BY id')
        rows = tuple(
            RowRule(layer, attribute, tuple(values), int(level))
            for layer, attribute, values, level in cur.fetchall()
        )
        cur.execute(
            "SELECT layer, attribute, method, step, keep_start, keep_end, level, role "
            "FROM access_masks ORDER BY id"
        )
        masks = tuple(Mask(*row) for row in cur.fetchall())
        cur.execute("SELECT role, layer, permission FROM access_permissions")
        permissions = frozenset((r, layer, p) for r, layer, p in cur.fetchall())
    rules = Rules(version, roles, levels, rows, masks, permissions)
    with _RULES_LOCK:
        _RULES[where] = rules
    return rules


def cached_rules(*, url: str | None = None) -> Rules | None:
    """Return the rules if :func:`load_rules` would answer without reading the store, else None.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    Rules or None
        The rules read less than :data:`RULES_REFRESH_S` ago.
    """
    where = database_url(url)
    cached = _RULES.get(where)
    if cached is not None and time.monotonic() - _CHECKED.get(where, 0.0) < RULES_REFRESH_S:
        return cached
    return None


_GRANTS: dict[tuple[Principal, int, str], Grant] = {}


def grant_of(principal: Principal, rules: Rules, *, url: str | None = None) -> Grant:
    """Return the grant of a principal under given rules (kept: callers come back).

    Parameters
    ----------
    principal
        The caller.
    rules
        The rules in force (:func:`load_rules` or :func:`cached_rules`).
    url
        Database URL the rules are of; the configured one by default.

    Returns
    -------
    Grant
        What it may see and do.
    """
    key = (principal, rules.version, database_url(url))
    grant = _GRANTS.get(key)
    if grant is None or grant.rules is not rules:
        if len(_GRANTS) > 10_000:
            _GRANTS.clear()
        grant = _GRANTS[key] = Grant(principal, rules)
    return grant


def grant_for(principal: Principal, *, url: str | None = None) -> Grant:
    """Return the grant of a principal under the rules in force.

    Parameters
    ----------
    principal
        The caller.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Grant
        What it may see and do.
    """
    return grant_of(principal, load_rules(url=url), url=url)


# -- the grant in force ---------------------------------------------------------------------------

_CURRENT: ContextVar[Grant | None] = ContextVar("twin_access_grant", default=None)


def current() -> Grant | None:
    """Return the grant in force, or None when the caller is the store's owner."""
    return _CURRENT.get()


@contextmanager
def acting_as(grant: Grant | None) -> Iterator[Grant | None]:
    """Run a block under a grant (None: as the store's owner, unrestricted).

    Parameters
    ----------
    grant
        The grant, from :func:`grant_for`.

    Yields
    ------
    Grant or None
        The grant.
    """
    token = _CURRENT.set(grant)
    try:
        with reading_at(None if grant is None else grant.clearance):
            yield grant
    finally:
        _CURRENT.reset(token)


@dataclass
class Access:
    """One layer a request touched, for the audit: what was done, to how many, which ids."""

    layer: str
    permission: Permission
    count: int | None = None
    ids: list[str] = field(default_factory=list)


#: The layers the request in progress touched (the API audits them after answering).
_LEDGER: ContextVar[list[Access] | None] = ContextVar("twin_access_ledger", default=None)


@contextmanager
def ledger() -> Iterator[list[Access]]:
    """Collect, in a block, every layer :func:`require` let the caller touch.

    Yields
    ------
    list of Access
        Filled as the block runs (also from threads that copied the context).
    """
    touched: list[Access] = []
    token = _LEDGER.set(touched)
    try:
        yield touched
    finally:
        _LEDGER.reset(token)


def note(layer_id: str, *, count: int | None = None, ids: Sequence[str] = ()) -> None:
    """Add how many features (and which) a request read or wrote of a layer, for the audit.

    Parameters
    ----------
    layer_id
        The layer, already passed through :func:`require`.
    count
        Features answered.
    ids
        Their ids (the audit keeps the first few hundred).
    """
    touched = _LEDGER.get()
    if touched is None:
        return
    for entry in reversed(touched):
        if entry.layer == layer_id:
            entry.count = count if entry.count is None else entry.count + (count or 0)
            entry.ids.extend(ids)
            return


def require(layer_id: str, permission: Permission = "read") -> None:
    """Refuse unless the grant in force may act on a layer (the owner may do anything).

    Parameters
    ----------
    layer_id
        A collection id.
    permission
        ``read``, ``edit`` or ``admin``.

    Raises
    ------
    AccessError
        As :meth:`Grant.require` says.
    """
    touched = _LEDGER.get()  # noted before the check: a refused write is audited too
    if touched is not None and not any(
        entry.layer == layer_id and entry.permission == permission for entry in touched
    ):
        touched.append(Access(layer_id, permission))
    grant = current()
    if grant is not None:
        grant.require(layer_id, permission)


def may_read_rows(layer_ids: Sequence[str], attribute: str, value: str) -> bool:
    """Tell whether the grant in force reads the layers' rows whose ``attribute`` is ``value``.

    For answers computed from data shared by every caller (a utility network's graph, kept in
    memory): a caller who may not read every layer, or from whom those rows are hidden, is not
    given them.

    Parameters
    ----------
    layer_ids
        The layers the answer is drawn from.
    attribute
        A classified attribute (``network``).
    value
        Its value (``gas``).

    Returns
    -------
    bool
        Whether the caller reads all of them.
    """
    grant = current()
    if grant is None:
        return True
    return all(grant.may(layer_id) for layer_id in layer_ids) and not any(
        rule.attribute == attribute and value in rule.values
        for layer_id in layer_ids
        for rule in grant.row_rules(layer_id)
    )


def require_rows(layer_ids: Sequence[str], attribute: str, value: str, *, parameter: str) -> None:
    """Refuse, as :func:`require` does, unless :func:`may_read_rows` says the caller may.

    Parameters
    ----------
    layer_ids
        The layers the answer is drawn from.
    attribute
        A classified attribute (``network``).
    value
        Its value (``gas``).
    parameter
        The request parameter that asked for them, named in the refusal.

    Raises
    ------
    AccessError
        401 for an anonymous caller, 404 (as unknown) for a signed-in one.
    """
    for layer_id in layer_ids:
        require(layer_id)
    if not may_read_rows(layer_ids, attribute, value):
        grant = current()
        anonymous = grant is not None and grant.principal.anonymous
        raise AccessError(
            f"sign in to read {attribute} {value!r}" if anonymous else f"no {attribute} {value!r}",
            status=401 if anonymous else 404,
            parameter=parameter,
        )


def visible(layer_ids: Sequence[str]) -> list[str]:
    """Return the layers the grant in force may read (all of them for the owner)."""
    grant = current()
    return list(layer_ids) if grant is None else grant.visible(layer_ids)


def relation(layer: Layer) -> sql.Composable:
    """Return the relation to read a layer from under the grant and the scenario in force.

    The scenario's overlay (:func:`layers.overlay.relation`) is read first, then masked for
    the grant (see :meth:`Grant.relation`): a scenario never shows a reader what the base
    would hide from it.
    """
    grant = current()
    source = overlay.relation(layer)
    return source if grant is None else grant.relation(layer, source)


def signature(layer_ids: Sequence[str]) -> str:
    """Return the cache-key part of what the caller sees of the layers.

    ``owner`` or the grant's own signature, followed by ``|s<id>r<revision>`` while a scenario
    is in force (:func:`layers.overlay.signature`): a tile cut in one scenario, or one revision
    of it, is never served for another, nor for the base.
    """
    grant = current()
    seen = "owner" if grant is None else grant.signature(layer_ids)
    scenario = overlay.signature()
    return f"{seen}|{scenario}" if scenario else seen


# -- changing the rules (``twin auth``; every change moves the ``access`` counter) ---------------


class RuleError(ValueError):
    """A rule change that cannot be made: an unknown layer, role, attribute or method."""


def _check_layer(layer_id: str) -> Layer | None:
    if layer_id in FEEDS:
        return None
    if layer_id not in COLLECTIONS:
        known = ", ".join((*COLLECTIONS, *FEEDS))
        raise RuleError(f"unknown layer {layer_id!r}; layers: {known}")
    return COLLECTIONS[layer_id]


def _check_role(connection: sa.Connection, role: str) -> None:
    known = connection.execute(
        sa.text("SELECT 1 FROM access_roles WHERE name = :role"), {"role": role}
    ).first()
    if known is None:
        raise RuleError(f"unknown role {role!r}")


def _check_level(level: int) -> int:
    if level not in LEVELS:
        raise RuleError(
            f"level {level}: expected 0 to 3 ({', '.join(f'{k} {v}' for k, v in LEVELS.items())})"
        )
    return level


def classify(layer_id: str, level: int, *, url: str | None = None) -> None:
    """Set a layer's classification (0 public to 3 core).

    Parameters
    ----------
    layer_id
        A collection id.
    level
        0 public, 1 general, 2 important, 3 core.
    url
        Database URL; the configured one by default.

    Raises
    ------
    RuleError
        For an unknown layer or a level out of range.
    """
    _check_layer(layer_id)
    _check_level(level)
    with get_engine(url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO access_layers (layer, level) VALUES (:layer, :level) "
                "ON CONFLICT (layer) DO UPDATE SET level = excluded.level"
            ),
            {"layer": layer_id, "level": level},
        )


def add_mask(
    layer_id: str,
    attribute: str,
    method: str,
    *,
    below: int,
    step: float | None = None,
    keep_start: int | None = None,
    keep_end: int | None = None,
    role: str | None = None,
    url: str | None = None,
) -> int:
    """Mask an attribute of a layer for callers below a clearance.

    Parameters
    ----------
    layer_id
        A collection id.
    attribute
        A typed attribute, ``props``, ``props.<key>`` or ``geom``.
    method
        ``hide``, ``partial``, ``round`` or ``snap`` (see :class:`Mask`).
    below
        Callers whose clearance is below this level see the masked value.
    step
        ``round``: the multiple (10: tens); ``snap``: the grid, m.
    keep_start, keep_end
        ``partial``: characters kept at each end.
    role
        Only for this role (and below ``below``); every role by default.
    url
        Database URL; the configured one by default.

    Returns
    -------
    int
        The mask's id.

    Raises
    ------
    RuleError
        For an unknown layer, attribute, role or method, or a method without its argument.
    """
    layer = _check_layer(layer_id)
    if layer is None:
        raise RuleError(f"{layer_id!r} has no attributes to mask: classify it instead")
    _check_level(below)
    if attribute not in ("props", "geom", *layer.field_names) and not re.fullmatch(
        r"props\.[A-Za-z0-9_:.-]{1,100}", attribute
    ):
        raise RuleError(
            f"layer {layer_id!r} has no attribute {attribute!r}; attributes: "
            f"{', '.join(layer.field_names)}, props, props.<key>, geom"
        )
    if step is not None and not (math.isfinite(step) and 0 < step <= 1e9):
        raise RuleError(f"step {step}: expected a number above 0 and at most 1e9")
    for name, kept in (("keep-start", keep_start), ("keep-end", keep_end)):
        if kept is not None and not 0 <= kept <= 1000:
            raise RuleError(f"{name} {kept}: expected 0 to 1000 characters")
    if method not in ("hide", "partial", "round", "snap"):
        raise RuleError(f"unknown method {method!r}: hide, partial, round or snap")
    if method in ("round", "snap") and step is None:
        raise RuleError(f"{method} needs a step above 0")
    if method == "snap" and attribute != "geom":
        raise RuleError("snap applies to the geometry (attribute geom)")
    if method == "partial" and keep_start is None and keep_end is None:
        keep_start, keep_end = 1, 1
    with get_engine(url).begin() as connection:
        if role is not None:
            _check_role(connection, role)
        row = connection.execute(
            sa.text(
                "INSERT INTO access_masks (layer, attribute, method, step, keep_start, keep_end, "
                "level, role) VALUES (:layer, :attribute, :method, :step, :keep_start, "
                ":keep_end, :level, :role) RETURNING id"
            ),
            {
                "layer": layer_id,
                "attribute": attribute,
                "method": method,
                "step": step,
                "keep_start": keep_start,
                "keep_end": keep_end,
                "level": below,
                "role": role,
            },
        ).one()
    return int(row[0])


def remove_mask(mask_id: int, *, url: str | None = None) -> bool:
    """Remove a mask by its id.

    Parameters
    ----------
    mask_id
        The id :func:`add_mask` returned (``twin auth mask list`` lists them).
    url
        Database URL; the configured one by default.

    Returns
    -------
    bool
        Whether a mask was removed.
    """
    with get_engine(url).begin() as connection:
        result = connection.execute(
            sa.text("DELETE FROM access_masks WHERE id = :id"), {"id": mask_id}
        )
    return bool(result.rowcount)


def permit(
    role: str, layer_id: str, permission: Permission, *, allow: bool = True, url: str | None = None
) -> None:
    """Give a role a permission on a layer (``*``: every layer), or take it away.

    Parameters
    ----------
    role
        A role name.
    layer_id
        A collection id, or ``*``.
    permission
        ``read``, ``edit`` or ``admin``.
    allow
        False to take the permission away.
    url
        Database URL; the configured one by default.

    Raises
    ------
    RuleError
        For an unknown role, layer or permission.
    """
    if layer_id != "*":
        _check_layer(layer_id)
    if permission not in PERMISSIONS:
        raise RuleError(f"unknown permission {permission!r}: {', '.join(PERMISSIONS)}")
    with get_engine(url).begin() as connection:
        _check_role(connection, role)
        statement = (
            "INSERT INTO access_permissions VALUES (:role, :layer, :permission) "
            "ON CONFLICT DO NOTHING"
            if allow
            else "DELETE FROM access_permissions "
            "WHERE role = :role AND layer = :layer AND permission = :permission"
        )
        connection.execute(
            sa.text(statement), {"role": role, "layer": layer_id, "permission": permission}
        )
