"""The scenario in force and how a layer reads in it: base rows it does not edit, plus its own.

A what-if scenario (:mod:`layers.scenarios`) is an overlay of edits kept in ``scenario_edits``
(migration 0017); the layer tables never hold them. While a scenario is in force (a context
variable, set by :func:`layers.scenarios.using` and copied into thread pools with the context,
as the access grant is), :func:`layers.access.relation` reads every stored layer through
:func:`relation`: the layer's own rows minus the features the scenario edits, plus the current
version of each feature the scenario adds or changes. Every reader built on
:func:`layers.access.relation` (features, tiles, one-map answers, :func:`layers.queries.read_layer`)
thus answers as if the overlay were the city, and the base is read exactly as before when no
scenario is in force (the table itself, its indexes serving).

An edit's row shows ``vid`` = ``-eid`` (never a base version's), ``valid_to`` NULL and, as
``valid_from``, the earlier of when it was made and the moment read (the scenario's ``base_at``
or the request's ``at``): a scenario's features hold at whatever moment of the base it is
read over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from psycopg import sql

from layers.catalog import Layer


@dataclass(frozen=True)
class Overlay:
    """A scenario as reads see it while it is in force.

    Attributes
    ----------
    id
        ``scenarios.id``.
    name
        The scenario's name.
    revision
        Its ``revision`` when it was put in force (grows with every edit: cache keys use it).
    base_at
        The moment of the twin it is built on; None for the live twin.
    moment
        The moment read (the request's ``at``, else ``base_at``); None for now.
    settings
        The scenario's settings (``flood``, ``broken``, ``signal_plan``; see
        :mod:`layers.scenarios`).
    edited
        Current edits per layer id (layers with none are read from the table alone).
    """

    id: int
    name: str
    revision: int
    base_at: datetime | None = None
    moment: datetime | None = None
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    edited: tuple[tuple[str, int], ...] = ()

    def edits(self, layer_id: str) -> int:
        """Return how many current edits the scenario holds on a layer."""
        return dict(self.edited).get(layer_id, 0)

    @property
    def signature(self) -> str:
        """The cache-key part of this scenario's state: ``s<id>r<revision>``."""
        return f"s{self.id}r{self.revision}"


_ACTIVE: ContextVar[Overlay | None] = ContextVar("twin_scenario", default=None)


def active() -> Overlay | None:
    """Return the scenario in force, or None when reads answer for the base twin."""
    return _ACTIVE.get()


@contextmanager
def entered(overlay: Overlay | None) -> Iterator[Overlay | None]:
    """Put an overlay in force for a block (None: the base); the previous one comes back after.

    Parameters
    ----------
    overlay
        What :func:`layers.scenarios.using` read from the store.

    Yields
    ------
    Overlay or None
        The overlay.
    """
    token = _ACTIVE.set(overlay)
    try:
        yield overlay
    finally:
        _ACTIVE.reset(token)


def at_moment(overlay: Overlay, moment: datetime | None) -> Overlay:
    """Return the overlay read at another moment (None: its ``base_at``)."""
    return replace(overlay, moment=moment if moment is not None else overlay.base_at)


def read_moment(at: datetime | None) -> datetime | None:
    """Return the moment a read answers at: ``at``, else the scenario's in force, else None.

    A scenario built on a past moment of the twin (``base_at``) is read there unless a read
    names another moment.

    Parameters
    ----------
    at
        The moment the read names (timezone-aware), or None.

    Returns
    -------
    datetime or None
        The moment; None for the current versions.
    """
    if at is not None:
        return at
    scenario = _ACTIVE.get()
    return None if scenario is None else scenario.moment


def valid_at(moment: datetime | None, *, table: str | None = None) -> sql.Composable:
    """Write which versions of a versioned table a read takes: the current ones or a moment's.

    Every stored layer keeps its versions as rows with ``valid_from`` and ``valid_to``
    (migration 0001): the current version has ``valid_to`` NULL; the version at a moment *t* is
    the one with ``valid_from <= t < valid_to``. A scenario built on a past moment reads its base
    there (:func:`read_moment`), so every query of "the current rows" asks this function.

    Parameters
    ----------
    moment
        The moment (timezone-aware), written into the SQL as a literal; None for the current
        versions. Usually ``read_moment(at)``.
    table
        The alias or table name qualifying the columns; None to leave them unqualified.

    Returns
    -------
    psycopg.sql.Composable
        A boolean SQL expression, needing no query parameter.
    """
    start, end = (
        sql.Identifier(table, name) if table else sql.Identifier(name)
        for name in ("valid_from", "valid_to")
    )
    if moment is None:
        return sql.SQL("{end} IS NULL").format(end=end)
    return sql.SQL("{start} <= {at} AND ({end} IS NULL OR {end} > {at})").format(
        start=start, end=end, at=sql.Literal(moment)
    )


def signature() -> str:
    """Return the cache-key part of the scenario in force: ``""`` for the base."""
    overlay = _ACTIVE.get()
    return "" if overlay is None else overlay.signature


def relation(layer: Layer, overlay: Overlay | None = None) -> sql.Composable:
    """Write the SQL relation of a stored layer as the scenario in force has it.

    Parameters
    ----------
    layer
        A stored layer (a live, derived layer is read from its view, unchanged).
    overlay
        The scenario; the one in force by default.

    Returns
    -------
    psycopg.sql.Composable
        The table itself (no scenario, a live layer, or no edit of this layer in the
        scenario), else ``(SELECT ... UNION ALL SELECT ...)`` with the table's columns under
        their own names (``vid``, ``id``, ``source``, ``valid_from``, ``valid_to``, ``props``,
        ``geom``, ``geom_3857`` and the typed attributes). Give it an alias.
    """
    overlay = overlay if overlay is not None else _ACTIVE.get()
    table = sql.Identifier(layer.table)
    if overlay is None or layer.read_only or not overlay.edits(layer.id):
        return table
    typed = [sql.Identifier(f.name) for f in layer.fields]
    base_columns = sql.SQL(", ").join(
        [
            sql.SQL("b.{}").format(sql.Identifier(name))
            for name in ("vid", "id", "source", "valid_from", "valid_to", "props", "geom")
        ]
        + [sql.SQL("b.geom_3857")]
        + [sql.SQL("b.{}").format(name) for name in typed]
    )
    valid_from = (
        sql.SQL("e.valid_from")
        if overlay.moment is None
        else sql.SQL("LEAST(e.valid_from, {})").format(sql.Literal(overlay.moment))
    )
    edit_columns = sql.SQL(", ").join(
        [
            sql.SQL("-e.eid AS vid, e.feature_id AS id, e.source, {} AS valid_from").format(
                valid_from
            ),
            sql.SQL("NULL::timestamptz AS valid_to"),
            sql.SQL("COALESCE(e.row -> 'props', '{}'::jsonb) AS props"),
            sql.SQL("e.geom, e.geom_3857"),
        ]
        + [sql.SQL("r.{} AS {}").format(name, name) for name in typed]
    )
    edits = sql.SQL("e.scenario_id = {sid} AND e.layer = {layer} AND e.valid_to IS NULL").format(
        sid=sql.Literal(overlay.id), layer=sql.Literal(layer.id)
    )
    # NOT IN, not NOT EXISTS: the edited ids are hashed once per query ("hashed SubPlan"),
    # where the anti-join of NOT EXISTS, planned for the one row PostGIS estimates a bounding-box
    # read to find, compared every row read with every edit (bench/scenarios.py: an around
    # query 0.95 ms in the base, 9.6 ms in a scenario, 1.0 ms with NOT IN). feature_id is
    # NOT NULL, so NOT IN means what NOT EXISTS does.
    return sql.SQL(
        "(SELECT {base} FROM {table} AS b WHERE b.id NOT IN "
        "(SELECT e.feature_id FROM scenario_edits AS e WHERE {edits}) "
        "UNION ALL SELECT {edit} FROM scenario_edits AS e "
        "CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, e.row) AS r "
        "WHERE {edits} AND e.op <> 'retire')"
    ).format(base=base_columns, table=table, edits=edits, edit=edit_columns)
