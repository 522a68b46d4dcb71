"""Where the twin's data came from: attributions, licences, and the extent of what is loaded.

Every layer feature and every raster carries a ``source`` label (``osm``, ``srtm``,
``sample:roads`` ...). The ``data_sources`` table (migration 0013) says, per label, the credit
its licence asks for (``attribution``), the licence as an SPDX identifier and a URL. Imports
record it with :func:`record_source` inside their own transaction; :func:`credits` answers
what must be credited for what is loaded *now* — so a twin with no DEM never credits SRTM —
and :func:`data_extent` where the loaded city is, which the viewer opens on.

Reads go through :func:`layers.database.cursor`, so under a caller's grant they see only the
layers and rows that caller may read (row-level security, migration 0012): a caller is credited
the sources of what it is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from layers import access
from layers.catalog import LAYERS
from layers.database import cursor

__all__ = [
    "CITY_LAYERS",
    "EXTENT_QUANTILES",
    "OPENSTREETMAP",
    "SRTM",
    "Credit",
    "SourceError",
    "attribution_text",
    "credits",
    "data_extent",
    "record_source",
]

#: The layers whose features say where the city is (:func:`data_extent`); when none of them
#: holds a feature, every layer is used.
CITY_LAYERS = ("roads", "buildings")
#: The quantiles of the features' positions :func:`data_extent` spans: the 1st to the 99th
#: percentile, so that a few far outliers (a ferry route, a way an extract carries whole)
#: do not pull the view off the city.
EXTENT_QUANTILES = (0.01, 0.99)


class SourceError(ValueError):
    """A source or attribution that cannot be recorded (empty, too long)."""


@dataclass(frozen=True)
class Credit:
    """What must be credited for some of the loaded data.

    Attributes
    ----------
    attribution
        The credit text, as the licence asks it shown (e.g. "© OpenStreetMap contributors");
        for a source with no recorded attribution, its label.
    licence
        SPDX licence identifier (``ODbL-1.0``, ``CC-BY-4.0``), or None when not recorded (or
        public domain, which SPDX has no identifier for).
    url
        Where the source or its licence terms are described, or None.
    sources
        The labels credited by this text, sorted.
    descriptions
        What those sources are, where recorded (e.g. "pipes derived from the OpenStreetMap
        streets, not surveyed"), distinct, in the order of ``sources``.
    """

    attribution: str
    licence: str | None = None
    url: str | None = None
    sources: tuple[str, ...] = ()
    descriptions: tuple[str, ...] = ()


#: OpenStreetMap's credit, as https://www.openstreetmap.org/copyright asks for it (ODbL 1.0).
OPENSTREETMAP = Credit(
    "© OpenStreetMap contributors", "ODbL-1.0", "https://www.openstreetmap.org/copyright"
)
#: SRTM elevation (NASA/USGS): public domain, so no SPDX licence; credited as a courtesy.
SRTM = Credit(
    "SRTM (NASA/USGS), public domain",
    None,
    "https://www.usgs.gov/centers/eros/science/usgs-eros-archive-digital-elevation-shuttle-"
    "radar-topography-mission-srtm-1",
)

_MAX_SOURCE = 200  # the table's CHECK


def record_source(
    cur: psycopg.Cursor[Any],
    *,
    source: str,
    attribution: str,
    licence: str | None = None,
    url: str | None = None,
    description: str | None = None,
) -> None:
    """Record (insert or update) the attribution of a source label, in the caller's transaction.

    Parameters
    ----------
    cur
        A psycopg cursor on the store, inside the import's write transaction: the record
        commits or rolls back with the data it describes.
    source
        The label, exactly as the features' or rasters' ``source`` column holds it.
    attribution
        The credit text the licence asks for, e.g. ``OPENSTREETMAP.attribution``.
    licence
        SPDX licence identifier (``ODbL-1.0``, ``CC-BY-4.0``), or None (unknown, or public
        domain).
    url
        Where the source or its licence is described.
    description
        What the source is, when the attribution does not say it (derived or synthetic data,
        say: "water mains laid along the OpenStreetMap streets, not surveyed").

    Raises
    ------
    SourceError
        If ``source`` or ``attribution`` is empty or ``source`` is longer than 200 characters.
    """
    if not source or len(source) > _MAX_SOURCE:
        raise SourceError(f"source: expected 1 to {_MAX_SOURCE} characters, got {source!r}")
    if not attribution or not attribution.strip():
        raise SourceError(f"attribution of source {source!r}: expected a credit text, got none")
    cur.execute(
        "INSERT INTO data_sources (source, attribution, licence, url, description) "
        "VALUES (%(source)s, %(attribution)s, %(licence)s, %(url)s, %(description)s) "
        "ON CONFLICT (source) DO UPDATE SET attribution = excluded.attribution, "
        "licence = excluded.licence, url = excluded.url, description = excluded.description, "
        "recorded_at = clock_timestamp()",
        {
            "source": source,
            "attribution": attribution.strip(),
            "licence": licence or None,
            "url": url or None,
            "description": description or None,
        },
    )


def _loaded_labels(layer_ids: Sequence[str], rasters: bool) -> sql.Composable:
    """Return the query of the source labels with current features in the layers or rasters.

    Each row is a label and ``rank``, the position of the layer holding it (the rasters after
    the layers).

    The distinct labels of a table come from a loose index scan over its ``source`` index (a
    recursive CTE, https://wiki.postgresql.org/wiki/Loose_indexscan): one index probe per
    label, not a scan of the table; each label is then kept when one of its features is
    current (an index probe again).
    """
    ctes: list[sql.Composable] = []
    parts: list[sql.Composable] = []
    for i, layer_id in enumerate(layer_ids):
        name = sql.Identifier(f"s{i}")
        table = sql.Identifier(LAYERS[layer_id].table)
        ctes.append(
            sql.SQL(
                "{name}(source) AS ((SELECT source FROM {table} ORDER BY source LIMIT 1) "
                "UNION ALL SELECT (SELECT t.source FROM {table} AS t WHERE t.source > p.source "
                "ORDER BY t.source LIMIT 1) FROM {name} AS p WHERE p.source IS NOT NULL)"
            ).format(name=name, table=table)
        )
        parts.append(
            sql.SQL(
                "SELECT p.source, {rank} AS rank FROM {name} AS p WHERE p.source IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM {table} AS t "
                "WHERE t.source = p.source AND t.valid_to IS NULL)"
            ).format(name=name, table=table, rank=sql.Literal(i))
        )
    if rasters:
        parts.append(
            sql.SQL("SELECT source, {rank} AS rank FROM rasters WHERE valid_to IS NULL").format(
                rank=sql.Literal(len(layer_ids))
            )
        )
    if not parts:
        return sql.SQL("SELECT NULL::text AS source, 0 AS rank WHERE false")
    body = sql.SQL(" UNION ").join(parts)
    if not ctes:
        return body
    return sql.SQL("WITH RECURSIVE {ctes} {body}").format(ctes=sql.SQL(", ").join(ctes), body=body)


def credits(url: str | None = None, *, layers: Sequence[str] | None = None) -> list[Credit]:
    """Return the credits of the sources of what is loaded now, one per attribution text.

    A source counts when a layer holds a current feature from it (``valid_to IS NULL``) or it
    is the source of a current raster. Its credit is its recorded attribution (see
    :func:`record_source`); a source with none is credited by its label. Sources sharing an
    attribution text are credited once. One query (an index probe per source label, see
    ``_loaded_labels``), fast enough to ask on every page load.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    layers
        Credit only these layers' sources (no rasters), e.g. for one layer's TileJSON; None for
        every layer and the rasters. Layers the caller's grant may not read are left out.

    Returns
    -------
    list of Credit
        In catalog order of the first layer each credits (roads first; a raster's credit
        after the layers'); empty when nothing is loaded.

    Raises
    ------
    KeyError
        If ``layers`` names a layer that is not in the catalog.
    """
    for layer_id in layers or ():
        if layer_id not in LAYERS:
            raise KeyError(f"unknown layer {layer_id!r}")
    readable = access.visible(list(LAYERS) if layers is None else list(layers))
    query = sql.SQL(
        "SELECT coalesce(d.attribution, l.source), d.licence, d.url, d.description, l.source "
        "FROM (SELECT source, min(rank) AS rank FROM ({labels}) AS u GROUP BY source) AS l "
        "LEFT JOIN data_sources AS d USING (source) ORDER BY l.rank, l.source"
    ).format(labels=_loaded_labels(readable, rasters=layers is None))
    with cursor(url) as cur:
        cur.execute(query)
        rows = cur.fetchall()
    # in the order of the first layer credited (catalog order: roads first, rasters last)
    grouped: dict[str, list[tuple[str | None, str | None, str | None, str]]] = {}
    for attribution, licence, link, description, source in rows:
        grouped.setdefault(attribution, []).append((licence, link, description, source))
    out = [
        Credit(
            attribution=text,
            licence=next((m[0] for m in members if m[0]), None),
            url=next((m[1] for m in members if m[1]), None),
            sources=tuple(sorted(m[3] for m in members)),
            descriptions=tuple(dict.fromkeys(m[2] for m in members if m[2])),
        )
        for text, members in grouped.items()
    ]
    return out


def attribution_text(found: Sequence[Credit], *, separator: str = " · ") -> str:
    """Join credits into one attribution line (plain text; escape it for HTML).

    Parameters
    ----------
    found
        Credits, as :func:`credits` returns them.
    separator
        Put between two credits.

    Returns
    -------
    str
        E.g. ``"© OpenStreetMap contributors · SRTM (NASA/USGS), public domain"``; empty when
        there is nothing to credit.
    """
    return separator.join(c.attribution for c in found)


def data_extent(url: str | None = None) -> tuple[float, float, float, float] | None:
    """Return the extent of the loaded city, robust to a few far outliers.

    The extent spans the 1st to the 99th percentile (:data:`EXTENT_QUANTILES`) of the
    longitudes and of the latitudes of the centres of the current features' bounding boxes in
    :data:`CITY_LAYERS` (roads and buildings), or of every layer when those are empty. A
    percentile box, unlike ``ST_Extent``, ignores the few features an extract carries far past
    the town (whole ways and relations), so the view opens on the city itself. Bounding-box
    centres are read from each geometry's cached box (no centroid computed).

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    tuple of float or None
        ``(minx, miny, maxx, maxy)``: longitudes and latitudes, degrees, EPSG:4326; a point
        (``minx == maxx``) for a single feature. None when no layer the caller may read holds
        a current feature.
    """
    low, high = EXTENT_QUANTILES
    with cursor(url) as cur:
        for group in (CITY_LAYERS, tuple(LAYERS)):
            readable = access.visible(list(group))
            if not readable:
                continue
            centres = sql.SQL(" UNION ALL ").join(
                sql.SQL(
                    "SELECT (ST_XMin(geom) + ST_XMax(geom)) / 2 AS x, "
                    "(ST_YMin(geom) + ST_YMax(geom)) / 2 AS y "
                    "FROM {table} WHERE valid_to IS NULL AND geom IS NOT NULL"
                ).format(table=sql.Identifier(LAYERS[layer_id].table))
                for layer_id in readable
            )
            cur.execute(
                sql.SQL(
                    "SELECT percentile_cont(%(q)s) WITHIN GROUP (ORDER BY x), "
                    "percentile_cont(%(q)s) WITHIN GROUP (ORDER BY y) FROM ({centres}) AS c"
                ).format(centres=centres),
                {"q": [low, high]},
            )
            row = cur.fetchone()
            if row is None or row[0] is None:
                continue
            (minx, maxx), (miny, maxy) = row
            return (float(minx), float(miny), float(maxx), float(maxy))
    return None
