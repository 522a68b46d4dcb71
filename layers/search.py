"""Search: features by name, address or id across every layer the caller may read.

A text is looked up in the names a feature answers to (``twin_search_text``, migration 0015:
its typed ``name``, the ``name``, ``name:<lang>``, ``alt_name`` ... tags it keeps in ``props``
or ``props.osm``, and its address, ``addr:housenumber addr:street`` either way round) and in
its id. Comparison is case- and accent-insensitive (``twin_fold``: PostgreSQL's ``unaccent``,
then ``lower``): ``caserne fontvieille`` finds *Centre de secours secondaire de Fontvieille*
by its ``addr:housename``, ``SPELUGUES`` finds *Poste des Spélugues*. A feature matches when
every word of the text is part of one of its names (in any order) or, for a word of three
characters or more, close to a run of words of them (``pg_trgm``'s word similarity at or
above its threshold, 0.6 by default: a typo, ``fontvielle``).

The named segments of a street are one hit (:data:`GROUPED`): segments of one name (folded)
within :data:`STREET_GAP_M` of each other, chained, make one street; two streets of one name
far apart (*Avenue du Port* in Monaco and in Cap-d'Ail) stay two hits.

Only current versions are searched (``valid_to IS NULL``), only in the layers the caller may
read, and only what it sees of them: every value compared, every position and id answered is
read through :func:`layers.access.relation` under the caller's clearance, so a masked name is
searched as masked, a row classified above the caller is never a hit, and a hidden layer is
never searched. The trigram indexes of migration 0015 cannot serve a reader under row-level
security (its operators are not leakproof); so the rows that may match are first found as the
store's owner, by index, among the layers the caller reads (at most :data:`CANDIDATES` per
layer, best first), and only those are then read and matched again as the caller.

Scores rank hits, from 0 to 1: ``0.8 × tier + 0.2 × similarity(text, label)`` with the tier
1 when a name is the text, 0.85 when a name starts with it, 0.7 when a word of a name does,
0.6 when a name holds it, 0.5 when the names hold each of its words, and half the word
similarity for a near miss; an id equal to the text scores 1, an OpenStreetMap id of the
number typed (``node/<n>``, ``way/<n>``, ``relation/<n>``) 0.95, a ``node_id`` equal to it 0.9.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from pyproj import CRS

from layers import access, overlay
from layers.catalog import LAYERS, Layer
from layers.database import cursor, owner_cursor
from layers.errors import AccessError, ParameterError
from layers.settings import get_settings

#: Longest text searched, characters.
MAX_TEXT = 200
#: Hits answered by default, and at most.
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
#: Words of a text used (the rest are ignored).
MAX_WORDS = 10
#: Shortest word matched nearly (a typo), characters; shorter words must be found as typed.
FUZZY_MIN = 3
#: Rows that may match kept per layer, best first, before they are read as the caller.
CANDIDATES = 2000
#: Layers whose named features are grouped by name into one hit: the segments of a street.
GROUPED = frozenset({"roads"})
#: Segments of one name closer than this (m, chained) are one street.
STREET_GAP_M = 500.0
_OSM_PREFIXES = ("node", "way", "relation")
_WORDS = re.compile(r"[\s,;]+")
_BIGINT_MAX = 2**63 - 1


class SearchError(ParameterError):
    """A search that cannot be run as asked; ``parameter`` names the request parameter."""


@dataclass(frozen=True)
class Hit:
    """One search hit: a feature, or a street made of many road segments.

    Parameters
    ----------
    layer
        Layer id.
    id
        Feature id; None for a street (many segments).
    label
        The name to show: the feature's name, else its address, else its id.
    kind
        The feature's ``kind`` attribute where its layer has one (``fire_station``),
        ``street`` for a street, else the layer's title.
    lon, lat
        A representative point, EPSG:4326 degrees: on the feature (``ST_PointOnSurface``), or
        the point of a street nearest its centroid.
    bbox
        ``(minx, miny, maxx, maxy)``, EPSG:4326 degrees.
    score
        Rank, 0 to 1, higher first (see the module's note).
    features
        Features the hit stands for: 1, or a street's segments.
    """

    layer: str
    id: str | None
    label: str
    kind: str
    lon: float
    lat: float
    bbox: tuple[float, float, float, float]
    score: float
    features: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Return the hit as JSON-ready values (``bbox`` a list)."""
        return {
            "layer": self.layer,
            "id": self.id,
            "label": self.label,
            "kind": self.kind,
            "lon": self.lon,
            "lat": self.lat,
            "bbox": list(self.bbox),
            "score": self.score,
            "features": self.features,
        }


def search(
    url: str | None,
    text: str,
    *,
    limit: int = DEFAULT_LIMIT,
    layers: Sequence[str] | None = None,
) -> list[Hit]:
    """Find features by name, address or id in the layers the caller may read.

    The caller is the grant in force (:func:`layers.access.acting_as`, set by the API for
    each request; none: the store's owner, who reads everything).

    Parameters
    ----------
    url
        Database URL; None for the configured one.
    text
        What was typed: a name or part of one, an address, a feature id. Case and accents do
        not matter.
    limit
        Most hits answered, 1 to :data:`MAX_LIMIT`.
    layers
        Layer ids to search; every stored layer the caller may read when None.

    Returns
    -------
    list of Hit
        Best first (score, then layer in catalog order, then label).

    Raises
    ------
    SearchError
        For an empty or overlong text (``q``), a limit out of range (``limit``), or an
        unknown or empty list of layers (``layers``).
    AccessError
        For a layer named in ``layers`` that the caller may not read (401 or 404, as for any
        read of it).
    """
    whole = _check_text(text)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit {limit!r}: expected 1 to {MAX_LIMIT}", parameter="limit")
    asked = _layers(layers)
    if not asked:
        return []
    words = list(dict.fromkeys(w for w in _WORDS.split(whole) if w))[:MAX_WORDS]
    params: dict[str, Any] = {
        "whole": whole,
        "ids": _ids(whole),
        "number": _number(whole),
        "cap": CANDIDATES,
        "limit": limit,
        "gap": STREET_GAP_M,
        "srid": CRS.from_user_input(get_settings().metric_crs).to_epsg() or 32632,
        **{f"w{i}": _like(word) for i, word in enumerate(words)},
        **{f"p{i}": word for i, word in enumerate(words)},
    }
    candidates = _candidates(asked, words, params, url)
    parts = []
    for order, layer in enumerate(asked):
        params[f"c{order}"] = candidates.get(layer.id, [])
        parts.append(_hits_sql(layer, order, words))
    query = sql.SQL(
        "SELECT layer, id, label, kind, x, y, minx, miny, maxx, maxy, score, features "
        "FROM ({parts}) AS hits ORDER BY score DESC, features DESC, ord, label, id, x, y "
        "LIMIT %(limit)s"
    ).format(parts=sql.SQL(" UNION ALL ").join(parts))
    with cursor(url) as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    hits = [
        Hit(
            layer=row[0],
            id=row[1],
            label=row[2],
            kind=row[3],
            lon=round(float(row[4]), 7),
            lat=round(float(row[5]), 7),
            bbox=(
                round(float(row[6]), 7),
                round(float(row[7]), 7),
                round(float(row[8]), 7),
                round(float(row[9]), 7),
            ),
            score=round(float(row[10]), 4),
            features=int(row[11]),
        )
        for row in rows
    ]
    for layer in asked:  # for the audit: which features of which layer were answered
        answered = [hit for hit in hits if hit.layer == layer.id]
        if answered:
            access.note(
                layer.id,
                count=sum(hit.features for hit in answered),
                ids=[hit.id for hit in answered if hit.id is not None],
            )
    return hits


def _check_text(text: str) -> str:
    if not isinstance(text, str):
        raise SearchError("q: give a text to search for", parameter="q")
    whole = " ".join(text.split())
    if not whole:
        raise SearchError("q: give a text to search for (it is empty)", parameter="q")
    if len(whole) > MAX_TEXT:
        raise SearchError(
            f"q: {len(whole)} characters; at most {MAX_TEXT} are searched", parameter="q"
        )
    if "\x00" in whole:
        raise SearchError("q: a NUL character cannot be searched for", parameter="q")
    return whole


def _layers(layers: Sequence[str] | None) -> list[Layer]:
    """Return the layers to search, each passed through :func:`access.require` (audit)."""
    if layers is None:
        names = access.visible(list(LAYERS))
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        unknown = [name for name in names if name not in LAYERS]
        if unknown:
            raise SearchError(
                f"layers: unknown layer {unknown[0]!r}; searchable layers: "
                f"{', '.join(access.visible(list(LAYERS)))}",
                parameter="layers",
            )
        if not names:
            raise SearchError("layers: name at least one layer", parameter="layers")
    for name in names:
        try:
            access.require(name)  # refuses a layer the caller may not read
        except AccessError as exc:  # hidden: answered as unknown, naming this parameter
            raise AccessError(str(exc), status=exc.status, parameter="layers") from None
    return [LAYERS[name] for name in dict.fromkeys(names)]


def _ids(whole: str) -> list[str]:
    """Ids the text may be: itself, lower case, and OSM ids of a number."""
    ids = [whole, whole.lower()]
    if whole.isdigit():
        ids += [f"{prefix}/{whole}" for prefix in _OSM_PREFIXES]
    return list(dict.fromkeys(ids))


def _number(whole: str) -> int | None:
    if whole.isascii() and whole.isdigit() and int(whole) <= _BIGINT_MAX:
        return int(whole)
    return None


def _like(word: str) -> str:
    """Return a LIKE pattern holding ``word`` anywhere (its wildcards escaped)."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _name(layer: Layer) -> sql.Composable:
    return sql.SQL("t.name") if "name" in layer.field_names else sql.SQL("NULL::text")


def _search_text(layer: Layer) -> sql.Composable:
    """Write the indexed expression of migration 0015 (as there, so the index serves)."""
    return sql.SQL("twin_search_text({}, t.props)").format(_name(layer))


def _match(text: sql.Composable, words: Sequence[str]) -> sql.Composable:
    """Write whether ``text`` (a search text) holds every word, or (three characters+) nearly."""
    conditions = []
    for i, word in enumerate(words):
        held = sql.SQL("{} LIKE twin_fold(%(w{})s)").format(text, sql.SQL(str(i)))
        if len(word) >= FUZZY_MIN:
            held = sql.SQL("({} OR twin_fold(%(p{})s) <%% {})").format(held, sql.SQL(str(i)), text)
        conditions.append(held)
    return sql.SQL("({})").format(sql.SQL(" AND ").join(conditions))


def _label(layer: Layer) -> sql.Composable:
    """Write a row's name to show: its name, else its address, else its id."""
    return sql.SQL(
        "coalesce(nullif(btrim({name}), ''), nullif(t.props ->> 'name', ''), "
        "nullif(t.props -> 'osm' ->> 'name', ''), "
        "nullif(coalesce(t.props ->> 'addr:housename', t.props -> 'osm' ->> 'addr:housename'), "
        "''), "
        "nullif(concat_ws(' ', coalesce(t.props ->> 'addr:housenumber', "
        "t.props -> 'osm' ->> 'addr:housenumber'), coalesce(t.props ->> 'addr:street', "
        "t.props -> 'osm' ->> 'addr:street')), ''), t.id)"
    ).format(name=_name(layer))


def _score(text: sql.Composable, label: sql.Composable, words: int) -> sql.Composable:
    """Write the name score of a row (module note) from its search text and label."""
    every = sql.SQL(" AND ").join(
        sql.SQL("position(twin_fold(%(p{})s) IN {}) > 0").format(sql.SQL(str(i)), text)
        for i in range(words)
    )
    return sql.SQL(
        "(0.8 * CASE "
        "WHEN position(E'\\n' || twin_fold(%(whole)s) || E'\\n' IN E'\\n' || {s} || E'\\n') > 0 "
        "THEN 1.0 "
        "WHEN position(E'\\n' || twin_fold(%(whole)s) IN E'\\n' || {s}) > 0 THEN 0.85 "
        "WHEN position(' ' || twin_fold(%(whole)s) IN {s}) > 0 THEN 0.7 "
        "WHEN position(twin_fold(%(whole)s) IN {s}) > 0 THEN 0.6 "
        "WHEN {every} THEN 0.5 "
        "ELSE 0.5 * word_similarity(twin_fold(%(whole)s), {s}) END "
        "+ 0.2 * similarity(twin_fold(%(whole)s), twin_fold({label})))"
    ).format(s=text, every=every, label=label)


def _candidates(
    asked: Sequence[Layer], words: Sequence[str], params: dict[str, Any], url: str | None
) -> dict[str, list[int]]:
    """Find the versions whose names may match, per layer, by index as the store's owner.

    Only for the layers the caller reads; the rows are read again, and matched again on
    what the caller sees of them, by :func:`_hits_sql`. Nothing read here is answered.
    """
    # the index serves the WHERE; the fenced subquery (OFFSET 0) computes each matching
    # row's search text once more, for its score, not once per use
    parts = [
        sql.SQL(
            "(SELECT {layer} AS layer, vid FROM (SELECT t.vid, {text} AS s, {label} AS label "
            "FROM {table} AS t WHERE t.valid_to IS NULL AND {match} OFFSET 0) AS m "
            "ORDER BY {score} DESC LIMIT %(cap)s)"
        ).format(
            layer=sql.Literal(layer.id),
            text=_search_text(layer),
            label=_label(layer),
            table=overlay.relation(layer),  # the table, or the layer in the scenario in force
            match=_match(_search_text(layer), words),
            score=_score(sql.SQL("m.s"), sql.SQL("m.label"), len(words)),
        )
        for layer in asked
    ]
    found: dict[str, list[int]] = {}
    with owner_cursor(url) as cur:
        cur.execute(sql.SQL(" UNION ALL ").join(parts), params)
        for layer_id, vid in cur.fetchall():
            found.setdefault(layer_id, []).append(int(vid))
    return found


def _hits_sql(layer: Layer, order: int, words: Sequence[str]) -> sql.Composable:
    """Write the hits of one layer, read as the caller: by name (of the candidates) or id."""
    by_id = sql.SQL(
        "CASE WHEN t.id = %(whole)s THEN 1.0 WHEN t.id = ANY(%(ids)s::text[]) THEN 0.95 {node} END"
    ).format(
        node=sql.SQL("WHEN t.node_id = %(number)s::bigint THEN 0.9")
        if "node_id" in layer.field_names
        else sql.SQL("")
    )
    which: sql.Composable = sql.SQL("t.id = ANY(%(ids)s::text[])")
    if "node_id" in layer.field_names:
        which = sql.SQL("({} OR t.node_id = %(number)s::bigint)").format(which)
    rows = sql.SQL(
        "SELECT label, kind, id, geom, by_id, "
        "CASE WHEN candidate AND {match} THEN {score} END AS by_name FROM ("
        "SELECT {label} AS label, {kind} AS kind, t.id, t.geom, {by_id} AS by_id, "
        "t.vid = ANY(%(c{order})s::bigint[]) AS candidate, {text} AS s "
        "FROM {relation} AS t "
        "WHERE t.valid_to IS NULL AND (t.vid = ANY(%(c{order})s::bigint[]) OR {which}) "
        "OFFSET 0) AS n"
    ).format(
        label=_label(layer),
        text=_search_text(layer),
        kind=sql.SQL("coalesce(t.kind::text, {})").format(sql.Literal(layer.title))
        if "kind" in layer.field_names
        else sql.Literal(layer.title),
        by_id=by_id,
        order=sql.SQL(str(order)),
        match=_match(sql.SQL("n.s"), words),
        score=_score(sql.SQL("n.s"), sql.SQL("n.label"), len(words)),
        relation=access.relation(layer),  # the caller's rows and masked values
        which=which,
    )
    single = sql.SQL(
        "SELECT {layer} AS layer, {ord} AS ord, id, label, kind, "
        "ST_X(ST_PointOnSurface(geom)) AS x, ST_Y(ST_PointOnSurface(geom)) AS y, "
        "ST_XMin(geom) AS minx, "
        "ST_YMin(geom) AS miny, ST_XMax(geom) AS maxx, ST_YMax(geom) AS maxy, "
        "greatest(by_id, by_name) AS score, 1 AS features FROM rows "
        "WHERE {which} ORDER BY score DESC, label, id LIMIT %(limit)s"
    )
    layer_id, ordinal = sql.Literal(layer.id), sql.Literal(order)
    if layer.id not in GROUPED:
        return sql.SQL("(WITH rows AS ({rows}) {single})").format(
            rows=rows,
            single=single.format(
                layer=layer_id, ord=ordinal, which=sql.SQL("coalesce(by_id, by_name) IS NOT NULL")
            ),
        )
    # a street: the segments matched by name, one name and chained within the gap
    streets = sql.SQL(
        "SELECT {layer} AS layer, {ord} AS ord, NULL::text AS id, label, 'street' AS kind, "
        "ST_X(p) AS x, ST_Y(p) AS y, ST_XMin(g) AS minx, ST_YMin(g) AS miny, "
        "ST_XMax(g) AS maxx, ST_YMax(g) AS maxy, score, features FROM ("
        "SELECT label, score, features, g, ST_ClosestPoint(g, ST_Centroid(g)) AS p FROM ("
        "SELECT mode() WITHIN GROUP (ORDER BY label) AS label, max(by_name) AS score, "
        "count(*)::int AS features, ST_Collect(geom) AS g FROM ("
        "SELECT label, by_name, geom, twin_fold(label) AS folded, "
        "ST_ClusterDBSCAN(ST_Transform(geom, %(srid)s), %(gap)s, 1) "
        "OVER (PARTITION BY twin_fold(label)) AS cluster "
        "FROM rows WHERE by_name IS NOT NULL AND by_id IS NULL"
        ") AS segments GROUP BY folded, cluster"
        ") AS grouped ORDER BY score DESC, features DESC, label LIMIT %(limit)s"
        ") AS street"
    ).format(layer=layer_id, ord=ordinal)
    return sql.SQL("(WITH rows AS ({rows}) ({single}) UNION ALL ({streets}))").format(
        rows=rows,
        single=single.format(layer=layer_id, ord=ordinal, which=sql.SQL("by_id IS NOT NULL")),
        streets=streets,
    )
