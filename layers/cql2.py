"""CQL2 filters (OGC 21-065), as text or JSON, turned into parameterised SQL for a layer.

CQL2 text is parsed by ``cql2`` (developmentseed's cql2-rs, which follows the standard's
grammar: doubled quotes, ``CASEI``/``ACCENTI``, the ``T_``, ``S_`` and ``A_`` functions) into
CQL2 JSON; CQL2 JSON is read as it is. One walk over the JSON tree writes the SQL, checking
names and types on the way. Only a layer's queryables may be named (its id, typed attributes,
``source``, ``valid_from``, ``valid_to`` and ``geometry``); values always travel as query
parameters.

What is implemented, by CQL2 conformance class: basic-cql2, advanced-comparison-operators
(``LIKE``, ``BETWEEN``, ``IN``), case-insensitive-comparison (``CASEI``),
accent-insensitive-comparison (``ACCENTI``, PostgreSQL's ``unaccent``), basic-spatial-functions,
basic-spatial-functions-plus and spatial-functions (every ``S_`` function), temporal-functions
(every ``T_`` function over instants and intervals), array-functions (``A_EQUALS``,
``A_CONTAINS``, ``A_CONTAINEDBY``, ``A_OVERLAPS`` over JSON arrays), property-property
comparisons and arithmetic. Custom functions (the ``functions`` class) are not.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import cql2
import numpy as np
import shapely
import shapely.geometry
import shapely.validation
from psycopg import sql

from layers.catalog import Layer
from layers.settings import get_settings

#: The filter languages understood, as OGC API - Features Part 3 names them.
LANGUAGES = ("cql2-text", "cql2-json")

#: CQL2 conformance classes implemented (OGC 21-065), by their short names.
CLASSES = (
    "cql2-text",
    "cql2-json",
    "basic-cql2",
    "advanced-comparison-operators",
    "case-insensitive-comparison",
    "accent-insensitive-comparison",
    "basic-spatial-functions",
    "basic-spatial-functions-plus",
    "spatial-functions",
    "temporal-functions",
    "array-functions",
    "property-property",
    "arithmetic",
)

#: Longest filter accepted, in characters.
MAX_LENGTH = 20_000
#: Deepest nesting accepted.
MAX_DEPTH = 200
#: Most brackets, ``NOT`` and arithmetic operators CQL2 text may nest before it is parsed: the
#: parser (cql2-rs) recurses on them and overflows its stack (the process dies) from about
#: 1,500 levels; anything past :data:`MAX_DEPTH` is refused anyway.
MAX_NESTING = 4 * MAX_DEPTH

GEOMETRY_NAMES = ("geometry", "geom")

_COMPARISON = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITHMETIC = ("+", "-", "*", "/", "%", "^", "div")
_SPATIAL = {
    "s_intersects": "ST_Intersects",
    "s_disjoint": "ST_Disjoint",
    "s_within": "ST_Within",
    "s_contains": "ST_Contains",
    "s_touches": "ST_Touches",
    "s_crosses": "ST_Crosses",
    "s_overlaps": "ST_Overlaps",
    "s_equals": "ST_Equals",
}
# Allen's relations as CQL2 defines them, over (start, end) of the left (a) and right (b) side
_TEMPORAL = {
    "t_after": "{as} > {be}",
    "t_before": "{ae} < {bs}",
    "t_contains": "{as} < {bs} AND {ae} > {be}",
    "t_disjoint": "({ae} < {bs} OR {as} > {be})",
    "t_during": "{as} > {bs} AND {ae} < {be}",
    "t_equals": "{as} = {bs} AND {ae} = {be}",
    "t_finishedby": "{as} < {bs} AND {ae} = {be}",
    "t_finishes": "{as} > {bs} AND {ae} = {be}",
    "t_intersects": "{as} <= {be} AND {ae} >= {bs}",
    "t_meets": "{ae} = {bs}",
    "t_metby": "{as} = {be}",
    "t_overlappedby": "{as} > {bs} AND {as} < {be} AND {ae} > {be}",
    "t_overlaps": "{as} < {bs} AND {ae} > {bs} AND {ae} < {be}",
    "t_startedby": "{as} = {bs} AND {ae} > {be}",
    "t_starts": "{as} = {bs} AND {ae} < {be}",
}
_ARRAY = {"a_equals", "a_contains", "a_containedby", "a_overlaps"}
_GEOMETRY_TYPES = {
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
    "GeometryCollection",
}
_DAY = timedelta(days=1) - timedelta(microseconds=1)
_POSITION = re.compile(r"-->\s*(\d+):(\d+)")
#: RFC 3339 ``full-date`` and ``date-time`` (whose time offset is required).
_RFC3339_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RFC3339_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
# quoted strings and identifiers of CQL2 text ('' and "" escape their quote)
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
# the strings of TIMESTAMP(...) and INTERVAL(...) in CQL2 text
_TEMPORAL_LITERAL = re.compile(r"\b(?:TIMESTAMP|INTERVAL)\s*\(([^)]*)\)", re.IGNORECASE)
_NESTING_WORDS = re.compile(r"\b(?:not|div)\b", re.IGNORECASE)
_OPERATORS = re.compile(r"[-+*/%^]")
# a sign that belongs to a number (-1 after a bracket, comma or comparison; 1e-5), no operator
_SIGNS = re.compile(r"(?:^|[(,=<>])\s*[-+](?=\s*[\d.])|(?<=\d[eE])[-+]")


class FilterError(ValueError):
    """A filter that cannot be parsed or names something the layer cannot be queried by."""


def too_many_vertices(geometry: shapely.Geometry, limit: int | None = None) -> str | None:
    """Say why a client's geometry has too many vertices to be asked about, or None.

    Every geometry a client sends (a CQL2 literal here, one-map areas, closures, incidents
    through :func:`layers.onemap.check_vertices`) is counted by this one function: a
    300,000-vertex polygon would tie a worker up for seconds in PostGIS.

    Parameters
    ----------
    geometry
        The geometry, any type.
    limit
        Most vertices allowed; ``TWIN_MAX_VERTICES`` (default 20,000) when None.

    Returns
    -------
    str or None
        The reason, naming the count and the limit; None when the geometry is small enough.
    """
    most = get_settings().max_vertices if limit is None else limit
    count = int(shapely.get_num_coordinates(geometry))
    if count <= most:
        return None
    return (
        f"the geometry has {count:,} vertices, more than the {most:,} allowed (TWIN_MAX_VERTICES)"
    )


def _kinds(layer: Layer) -> dict[str, str]:
    """Return each queryable's kind: string, integer, number, boolean, timestamp or array."""
    kinds = {
        "text": "string",
        "int": "integer",
        "bigint": "integer",
        "float": "number",
        "bool": "boolean",
        "json": "array",
        "timestamp": "timestamp",
    }
    out = {
        "id": "string",
        "source": "string",
        "valid_from": "timestamp",
        "valid_to": "timestamp",
    }
    out |= {f.name: kinds[f.kind] for f in layer.fields}
    return out


def geometry_format(layer: Layer) -> str:
    """Return the JSON Schema ``format`` of a layer's geometry (OGC Features Part 5 draft).

    Parameters
    ----------
    layer
        The layer.

    Returns
    -------
    str
        ``geometry-point``, ``geometry-multipolygon`` ..., or ``geometry-any``.
    """
    kind = layer.storage_type.lower()
    return "geometry-any" if kind == "geometry" else f"geometry-{kind}"


def property_schemas(layer: Layer) -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of each property a layer's features carry, with types and formats.

    Parameters
    ----------
    layer
        The layer.

    Returns
    -------
    dict of str to dict
        Property name to its schema: ``string`` (timestamps with ``format: date-time``),
        ``integer`` (64-bit ones with ``format: int64``), ``number``, ``boolean`` or ``array``
        (JSON attributes), with ``enum``, ``minimum``, ``maximum`` and ``description`` when the
        catalog gives them.
    """
    out: dict[str, dict[str, Any]] = {
        "source": {"type": "string", "description": "Where the feature came from"},
        "valid_from": {
            "type": "string",
            "format": "date-time",
            "description": "When this version became current",
        },
        "valid_to": {
            "type": "string",
            "format": "date-time",
            "description": "When this version stopped being current (absent while it is)",
        },
    }
    for f in layer.fields:
        schema: dict[str, Any]
        if f.kind == "text":
            schema = {"type": "string"}
        elif f.kind in ("int", "bigint"):
            schema = {"type": "integer"}
            if f.kind == "bigint":
                schema["format"] = "int64"
        elif f.kind == "float":
            schema = {"type": "number"}
        elif f.kind == "bool":
            schema = {"type": "boolean"}
        elif f.kind == "timestamp":
            schema = {"type": "string", "format": "date-time"}
        else:  # json: every JSON attribute of the catalog holds a list
            schema = {"type": "array"}
        if f.choices:
            schema["enum"] = list(f.choices)
        if f.minimum is not None:
            schema["minimum"] = f.minimum
        if f.maximum is not None:
            schema["maximum"] = f.maximum
        if f.description:
            schema["description"] = f.description
        out[f.name] = schema
    return out


def queryables(layer: Layer) -> dict[str, dict[str, Any]]:
    """Return the properties a filter may name, with their JSON Schemas.

    Parameters
    ----------
    layer
        The layer.

    Returns
    -------
    dict of str to dict
        ``id``, ``geometry`` (its ``format`` and ``x-ogc-role: primary-geometry``) and every
        property of :func:`property_schemas`.
    """
    return {
        "id": {"type": "string", "description": "Feature id"},
        "geometry": {"format": geometry_format(layer), "x-ogc-role": "primary-geometry"},
        **property_schemas(layer),
    }


def _text_nesting(text: str) -> int:
    """Bound how deep the parser recurses on CQL2 text: bracket depth plus chained operators."""
    bare = _QUOTED.sub("S", text)
    depth = deepest = 0
    for char in bare:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    operators = len(_OPERATORS.findall(bare)) - len(_SIGNS.findall(bare))
    return deepest + len(_NESTING_WORDS.findall(bare)) + max(operators, 0)


def _json_nesting(text: str) -> int:
    """Return how deep objects and arrays nest in JSON text (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse(text: str, lang: str = "cql2-text") -> Any:
    """Parse a filter into its CQL2 JSON tree.

    Parameters
    ----------
    text
        The filter.
    lang
        ``cql2-text`` or ``cql2-json``.

    Returns
    -------
    Any
        The CQL2 JSON expression (a dict, or a boolean).

    Raises
    ------
    FilterError
        If the filter is too long or does not parse; the message says where, in the filter's
        own terms.
    """
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise FilterError("the filter is empty")
    if lang == "cql2-json":
        # each CQL2 level is an object and its "args" array
        if _json_nesting(text) > 2 * MAX_DEPTH + 2:
            raise FilterError(f"the filter nests more than {MAX_DEPTH} levels")
        try:
            return json.loads(text)
        except RecursionError:
            raise FilterError("the filter is nested too deeply") from None
        except ValueError as exc:
            raise FilterError(f"not valid JSON: {exc}") from None
    if lang != "cql2-text":
        raise FilterError(f"unknown filter language {lang!r}; use {' or '.join(LANGUAGES)}")
    # checked before parsing: the parser would overflow its stack on deep nesting
    if _text_nesting(text) > MAX_NESTING:
        raise FilterError(
            f"the filter nests too deeply: more than {MAX_NESTING} brackets, NOT and "
            "arithmetic operators"
        )
    # the parser reads a timestamp without its offset as UTC; RFC 3339 requires the offset
    for literal in _TEMPORAL_LITERAL.finditer(text):
        for value in re.findall(r"'([^']*)'", literal.group(1)):
            if value != ".." and not _RFC3339_DATE.match(value):
                _instant(value, "timestamp")
    try:
        return cql2.parse_text(text).to_json()
    except cql2.ParseError as exc:
        raise FilterError(_parse_message(text, str(exc))) from None
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None
    except Exception:  # the parser gave up on input it cannot describe
        raise FilterError("not valid CQL2 text") from None


def _parse_message(text: str, message: str) -> str:
    """Say where CQL2 text stops being valid, without the parser's grammar rule names."""
    found = _POSITION.search(message)
    if not found:
        return "not valid CQL2 text"
    line, column = int(found.group(1)), int(found.group(2))
    offset = sum(len(row) + 1 for row in text.split("\n")[: line - 1]) + column - 1
    rest = text[offset : offset + 20]
    if not rest.strip():
        return f"not valid CQL2 text: it ends early, at character {offset + 1}"
    return f"not valid CQL2 text at character {offset + 1}, before {rest!r}"


def to_sql(
    text: str,
    layer: Layer,
    *,
    lang: str = "cql2-text",
    srid: int = 4326,
    lat_first: bool = False,
) -> tuple[sql.Composable, list[Any]]:
    """Translate a CQL2 filter into a SQL condition on the layer's table.

    Parameters
    ----------
    text
        The filter, e.g. ``class = 'primary' AND lanes >= 2``, or its CQL2 JSON.
    layer
        The layer filtered.
    lang
        ``cql2-text`` (default) or ``cql2-json``.
    srid
        CRS of the filter's geometries (``filter-crs``).
    lat_first
        Whether that CRS puts latitude first (EPSG:4326 and 4490 as OGC URIs).

    Returns
    -------
    tuple
        The condition (placeholders ``%s``) and its parameters.

    Raises
    ------
    FilterError
        If the filter does not parse, is too long, names an unknown property or function, or
        compares a property with a value of another type.
    """
    tree = parse(text, lang)
    params: list[Any] = []
    try:
        condition = _Translator(layer, params, srid, lat_first).predicate(tree, 0)
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None
    return condition, params


@dataclass(frozen=True)
class _Typed:
    """A SQL expression and what it holds."""

    sql: sql.Composable
    kind: str  # string, integer, number, boolean, timestamp, geometry, array, null
    name: str = ""  # the property's name, when it is one
    slot: int = -1  # for a string literal: its place among the parameters


@dataclass(frozen=True)
class _Period:
    """A temporal operand: its start and end (equal for an instant)."""

    start: sql.Composable
    end: sql.Composable


_NUMERIC = ("integer", "number")


def _describe(node: Any) -> str:
    text = json.dumps(node, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _args(node: dict[str, Any], count: int | None = None) -> list[Any]:
    op = node.get("op")
    args = node.get("args")
    if not isinstance(args, list):
        raise FilterError(f"{op!r} needs its arguments as a list in 'args'")
    if count is not None and len(args) != count:
        raise FilterError(f"{op!r} takes {count} arguments, not {len(args)}")
    return args


def _instant(value: Any, what: str) -> datetime:
    """Parse a CQL2 TIMESTAMP or DATE literal, an RFC 3339 string checked here.

    A ``date-time`` needs its offset; a ``full-date`` is a day. No other text reaches the
    database.
    """
    pattern = _RFC3339_DATE if what == "date" else _RFC3339_TIMESTAMP
    if not isinstance(value, str) or not pattern.match(value):
        example = "2026-01-15" if what == "date" else "2026-01-15T09:10:00Z"
        raise FilterError(f"not an RFC 3339 {what}: {_describe(value)} (write it like '{example}')")
    try:
        if what == "date":
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"not an RFC 3339 {what}: {value!r} (no such day or time)") from None


def _string_instant(value: str) -> datetime:
    """Read a string compared with a timestamp: an RFC 3339 date-time, or a date (its start)."""
    return _instant(value, "date" if _RFC3339_DATE.match(value) else "timestamp")


def bbox_boxes(box: Any, srid: int, lat_first: bool) -> list[tuple[float, float, float, float]]:
    """Read a bbox (the ``bbox`` parameter's or CQL2's ``BBOX``) as boxes in x/y order.

    Four numbers, or six (3D: the heights are checked and left out, the layers being 2D). In a
    geographic CRS (EPSG:4326, 4490, CRS84) a box whose west edge is east of its east edge
    crosses the antimeridian (OGC API - Features Part 1, 7.15.3) and gives two boxes.

    Parameters
    ----------
    box
        The numbers, in the CRS's axis order.
    srid
        The CRS's EPSG code.
    lat_first
        Whether the CRS puts latitude first.

    Returns
    -------
    list of tuple
        One ``(minx, miny, maxx, maxy)``, or two across the antimeridian.

    Raises
    ------
    FilterError
        If the box is not four or six finite numbers, is upside down or leaves the CRS.
    """
    if not (isinstance(box, list | tuple) and len(box) in (4, 6)) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box
    ):
        raise FilterError("a bbox is four or six finite numbers")
    half = len(box) // 2
    minx, miny, maxx, maxy = (float(v) for v in (box[0], box[1], box[half], box[half + 1]))
    if lat_first:
        minx, miny, maxx, maxy = miny, minx, maxy, maxx
    if len(box) == 6 and box[2] > box[5]:
        raise FilterError("the bbox's bottom is above its top")
    if miny > maxy:
        raise FilterError("the bbox's south edge is north of its north edge")
    geographic = srid in (4326, 4490)
    if geographic and not (
        min(minx, maxx) >= -180 and max(minx, maxx) <= 180 and miny >= -90 and maxy <= 90
    ):
        raise FilterError("the bbox is outside the CRS's valid range")
    if minx > maxx and not geographic:
        raise FilterError("the bbox's minimum x is above its maximum")
    if minx > maxx:  # across the antimeridian: east of minx, and west of maxx
        return [(minx, miny, 180.0, maxy), (-180.0, miny, maxx, maxy)]
    return [(minx, miny, maxx, maxy)]


class _Translator:
    """Walks a CQL2 JSON tree and writes SQL, checking names and types on the way."""

    def __init__(self, layer: Layer, params: list[Any], srid: int, lat_first: bool):
        self.layer = layer
        self.params = params
        self.srid = srid
        self.lat_first = lat_first
        self.kinds = _kinds(layer)

    def param(self, value: Any, cast: str = "") -> sql.Composable:
        self.params.append(value)
        return sql.SQL("%s" + (f"::{cast}" if cast else ""))

    # -- predicates ----------------------------------------------------------------------
    def predicate(self, node: Any, depth: int) -> sql.Composable:
        if depth > MAX_DEPTH:
            raise FilterError("the filter is nested too deeply")
        if isinstance(node, bool):
            return sql.SQL("TRUE" if node else "FALSE")
        if not isinstance(node, dict) or not isinstance(node.get("op"), str):
            raise FilterError(f"expected a condition, got {_describe(node)}")
        op = node["op"].lower()
        if op in ("and", "or"):
            args = _args(node)
            if len(args) < 2:
                raise FilterError(f"{op!r} needs at least two conditions")
            parts = [self.predicate(arg, depth + 1) for arg in args]
            return sql.SQL("({})").format(sql.SQL(f" {op.upper()} ").join(parts))
        if op == "not":
            (sub,) = _args(node, 1)
            return sql.SQL("(NOT {})").format(self.predicate(sub, depth + 1))
        if op in _COMPARISON:
            left, right = (self.expression(arg, depth + 1) for arg in _args(node, 2))
            self.comparable(op, left, right)
            if left.kind == "timestamp" or right.kind == "timestamp":
                left, right = self.as_timestamp(left), self.as_timestamp(right)
            return sql.SQL("({} {} {})").format(left.sql, sql.SQL(_COMPARISON[op]), right.sql)
        if op == "like":
            left, pattern = (self.expression(arg, depth + 1) for arg in _args(node, 2))
            for side in (left, pattern):
                if side.kind != "string":
                    raise FilterError("LIKE needs a text property and a string pattern")
            return sql.SQL("({} LIKE {})").format(left.sql, pattern.sql)
        if op == "between":
            value, low, high = (self.expression(arg, depth + 1) for arg in _args(node, 3))
            for side in (value, low, high):
                if side.kind not in _NUMERIC:
                    raise FilterError("BETWEEN compares numbers: all three must be numbers")
            return sql.SQL("({} BETWEEN {} AND {})").format(value.sql, low.sql, high.sql)
        if op == "in":
            item, items = _args(node, 2)
            left = self.expression(item, depth + 1)
            if not isinstance(items, list) or not items:
                raise FilterError("IN needs a list of one or more values")
            values = [self.expression(v, depth + 1) for v in items]
            for value in values:
                self.comparable("IN", left, value)
            if left.kind == "timestamp":
                values = [self.as_timestamp(v) for v in values]
            listed = sql.SQL(", ").join(v.sql for v in values)
            return sql.SQL("({} IN ({}))").format(left.sql, listed)
        if op == "isnull":
            (sub,) = _args(node, 1)
            return sql.SQL("({} IS NULL)").format(self.expression(sub, depth + 1).sql)
        if op in _SPATIAL:
            left, right = (self.expression(arg, depth + 1) for arg in _args(node, 2))
            for side in (left, right):
                if side.kind != "geometry":
                    raise FilterError(f"{op.upper()} compares geometries")
            return sql.SQL("{}({}, {})").format(sql.SQL(_SPATIAL[op]), left.sql, right.sql)
        if op in _TEMPORAL:
            a, b = (self.period(arg, depth + 1) for arg in _args(node, 2))
            condition = sql.SQL(_TEMPORAL[op]).format(
                **{"as": a.start, "ae": a.end, "bs": b.start, "be": b.end}
            )
            return sql.SQL("({})").format(condition)
        if op in _ARRAY:
            first, second = (self.array(arg, depth + 1) for arg in _args(node, 2))
            return self.array_predicate(op, first, second)
        raise FilterError(f"unknown or unsupported CQL2 operator or function {node['op']!r}")

    def comparable(self, op: str, left: _Typed, right: _Typed) -> None:
        """Refuse comparing values of different types (SQL would fail, or compare text)."""
        kinds = {left.kind, right.kind} - {"null"}
        if len(kinds) <= 1 or kinds <= {"integer", "number"}:
            if kinds & {"geometry", "array"}:
                raise FilterError(f"{op} does not compare geometries or arrays; use S_ or A_")
            return
        if kinds == {"timestamp", "string"}:  # a timestamp property with an RFC 3339 string
            return
        for one, other in ((left, right), (right, left)):
            if one.name:
                what = f"property {other.name!r}" if other.name else f"a {other.kind}"
                raise FilterError(
                    f"property {one.name!r} is {one.kind}; cannot compare it with {what} ({op})"
                )
        raise FilterError(f"{op} compares a {left.kind} with a {right.kind}")

    def as_timestamp(self, value: _Typed) -> _Typed:
        """Read a string literal compared with a timestamp as one, parsed here (RFC 3339)."""
        if value.kind != "string":
            return value
        if value.slot < 0:
            raise FilterError(
                f"property {value.name!r} is text; a timestamp compares with timestamps or "
                "RFC 3339 strings"
            )
        self.params[value.slot] = _string_instant(self.params[value.slot])
        return _Typed(sql.SQL("%s::timestamptz"), "timestamp")

    # -- expressions ---------------------------------------------------------------------
    def property(self, name: Any) -> _Typed:
        if not isinstance(name, str):
            raise FilterError(f"a property name must be a string, not {_describe(name)}")
        if name in GEOMETRY_NAMES:
            return _Typed(sql.Identifier("geom"), "geometry")
        if name not in self.kinds:
            known = ", ".join(["geometry", *self.kinds])
            raise FilterError(f"unknown property {name!r}; queryables: {known}")
        return _Typed(sql.Identifier(name), self.kinds[name], name)

    def expression(self, node: Any, depth: int) -> _Typed:
        if depth > MAX_DEPTH:
            raise FilterError("the filter is nested too deeply")
        if node is None:
            return _Typed(sql.SQL("NULL"), "null")
        if isinstance(node, bool):
            return _Typed(self.param(node), "boolean")
        if isinstance(node, int | float):
            if not math.isfinite(node):
                raise FilterError("numbers must be finite")
            if isinstance(node, float) and node.is_integer() and abs(node) < 2**53:
                node = int(node)  # CQL2 text numbers arrive as floats: keep integers exact
            return _Typed(self.param(node), "integer" if isinstance(node, int) else "number")
        if isinstance(node, str):
            return _Typed(self.param(node, "text"), "string", slot=len(self.params) - 1)
        if isinstance(node, list):
            raise FilterError("a list of values goes only in IN or an A_ function")
        if not isinstance(node, dict):
            raise FilterError(f"unexpected value {_describe(node)}")
        if "property" in node:
            return self.property(node["property"])
        if "timestamp" in node:
            return _Typed(self.param(_instant(node["timestamp"], "timestamp")), "timestamp")
        if "date" in node:
            return _Typed(self.param(_instant(node["date"], "date")), "timestamp")
        if "interval" in node:
            raise FilterError("an INTERVAL goes only in a T_ function")
        if "bbox" in node or "type" in node:
            return _Typed(self.geometry(node), "geometry")
        op = node.get("op")
        if not isinstance(op, str):
            raise FilterError(f"unexpected value {_describe(node)}")
        op = op.lower()
        if op in ("casei", "accenti"):
            (sub,) = _args(node, 1)
            value = self.expression(sub, depth + 1)
            if value.kind != "string":
                raise FilterError(f"{op.upper()} takes a string")
            function = "lower" if op == "casei" else "unaccent"
            return _Typed(sql.SQL("{}({})").format(sql.SQL(function), value.sql), "string")
        if op in _ARITHMETIC:
            left, right = (self.expression(arg, depth + 1) for arg in _args(node, 2))
            for side in (left, right):
                if side.kind not in _NUMERIC:
                    raise FilterError(f"{op!r} computes with numbers only")
            # exact decimal arithmetic: 1 / 2 is 0.5, % and div take decimals; dividing by
            # zero gives no value (NULL: the feature does not match), not an error
            a = sql.SQL("({})::numeric").format(left.sql)
            b = sql.SQL("({})::numeric").format(right.sql)
            formula = {
                "+": sql.SQL("({} + {})"),
                "-": sql.SQL("({} - {})"),
                "*": sql.SQL("({} * {})"),
                "/": sql.SQL("({} / NULLIF({}, 0))"),
                "%": sql.SQL("mod({}, NULLIF({}, 0))"),
                "div": sql.SQL("div({}, NULLIF({}, 0))"),
                "^": sql.SQL("power({}, {})"),
            }[op].format(a, b)
            integer = op == "div" or (
                left.kind == right.kind == "integer" and op in ("+", "-", "*", "%")
            )
            return _Typed(formula, "integer" if integer else "number")
        if (
            op in _COMPARISON
            or op in _SPATIAL
            or op in _TEMPORAL
            or op in _ARRAY
            or op in ("and", "or", "not", "like", "between", "in", "isnull")
        ):
            return _Typed(self.predicate(node, depth + 1), "boolean")
        raise FilterError(f"unknown or unsupported CQL2 function {node['op']!r}")

    def geometry(self, node: dict[str, Any]) -> sql.Composable:
        """Write a geometry literal (GeoJSON or BBOX) in the filter's CRS, moved to EPSG:4326.

        GeoJSON is read and checked by shapely (shape, finite coordinates, validity) and sent
        as WKB, so PostGIS never parses it and never fails on it.
        """
        if "bbox" in node:
            boxes = bbox_boxes(node["bbox"], self.srid, self.lat_first)
            envelopes = []
            for box in boxes:
                self.params.extend([*box, self.srid])
                envelopes.append(sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, %s)"))
            if len(envelopes) == 1:
                return sql.SQL("ST_Transform({}, 4326)").format(envelopes[0])
            return sql.SQL("ST_Transform(ST_Collect({}), 4326)").format(
                sql.SQL(", ").join(envelopes)
            )
        if node.get("type") not in _GEOMETRY_TYPES:
            raise FilterError(f"not a GeoJSON geometry: {_describe(node)}")
        try:
            shape = shapely.geometry.shape(node)
            coordinates = shapely.get_coordinates(shape, include_z=True)
        except Exception:  # shapely's many ways of refusing malformed GeoJSON
            raise FilterError(f"not a valid GeoJSON {node['type']}: {_describe(node)}") from None
        if not np.isfinite(coordinates[:, :2]).all():
            raise FilterError(f"a {node['type']}'s coordinates must be finite numbers")
        if reason := too_many_vertices(shape):
            raise FilterError(reason)
        if self.lat_first:
            shape = shapely.transform(shape, lambda xy: xy[:, ::-1])
        if not shape.is_valid:
            reason = shapely.validation.explain_validity(shape)
            raise FilterError(f"the {node['type']} is not a valid geometry: {reason}")
        self.params.extend([shapely.to_wkb(shape, output_dimension=2), self.srid])
        return sql.SQL("ST_Transform(ST_GeomFromWKB(%s, %s), 4326)")

    def period(self, node: Any, depth: int) -> _Period:
        """Read a temporal operand: a timestamp property, TIMESTAMP, DATE or INTERVAL.

        The relations name each end more than once, so literal instants (parsed and checked
        here, so only datetimes) are written as SQL literals by psycopg, not as placeholders.
        """
        if isinstance(node, dict) and "interval" in node:
            ends = node["interval"]
            if not isinstance(ends, list) or len(ends) != 2:
                raise FilterError("INTERVAL takes a start and an end")
            (start, first), (end, last) = (
                self.bound(ends[0], False, depth),
                self.bound(ends[1], True, depth),
            )
            if first is not None and last is not None and last < first:
                raise FilterError(f"INTERVAL ends before it starts: {_describe(ends)}")
            return _Period(start, end)
        if isinstance(node, dict) and ("date" in node or "timestamp" in node):
            if "date" in node:  # a date is the whole day
                day = _instant(node["date"], "date")
                return _Period(sql.Literal(day), sql.Literal(day + _DAY))
            moment = _instant(node["timestamp"], "timestamp")
            return _Period(sql.Literal(moment), sql.Literal(moment))
        if not (isinstance(node, dict) and "property" in node):
            raise FilterError(f"T_ functions compare instants and intervals, not {_describe(node)}")
        value = self.property(node["property"])
        if value.kind != "timestamp":
            raise FilterError(f"T_ functions compare instants; {node['property']!r} is not one")
        return _Period(value.sql, value.sql)

    def bound(self, node: Any, end: bool, depth: int) -> tuple[sql.Composable, datetime | None]:
        """Write one end of an INTERVAL: ``..`` (open), an RFC 3339 string, or a property.

        Returns the SQL and, for a literal, the instant (to check the interval's order).
        """
        open_end = sql.SQL("'infinity'::timestamptz" if end else "'-infinity'::timestamptz")
        if node == "..":
            return open_end, None
        if isinstance(node, str):
            if _RFC3339_DATE.match(node):
                day = _instant(node, "date")
                moment = day + _DAY if end else day
            else:
                moment = _instant(node, "timestamp")
            return sql.Literal(moment), moment
        if isinstance(node, dict) and ("date" in node or "timestamp" in node):
            what = "date" if "date" in node else "timestamp"
            moment = _instant(node[what], what)
            moment = moment + _DAY if end and what == "date" else moment
            return sql.Literal(moment), moment
        period = self.period(node, depth)
        if isinstance(node, dict) and "property" in node:  # an absent end is open
            return sql.SQL("coalesce({}, {})").format(period.end, open_end), None
        return (period.end if end else period.start), None

    def array(self, node: Any, depth: int) -> sql.Composable:
        """Write an array operand: a JSON property, or a list literal (a JSONB parameter)."""
        if isinstance(node, list):
            for item in node:
                if isinstance(item, dict | list):
                    raise FilterError("array literals hold strings, numbers and booleans")
            return self.param(json.dumps(node), "jsonb")
        if isinstance(node, dict) and "property" in node:
            value = self.property(node["property"])
            if value.kind != "array":
                raise FilterError(
                    f"A_ functions need an array property; {node['property']!r} is a {value.kind}"
                )
            return sql.SQL("(CASE WHEN jsonb_typeof({0}) = 'array' THEN {0} END)").format(value.sql)
        raise FilterError(f"A_ functions compare arrays, not {_describe(node)}")

    def array_predicate(
        self, op: str, left: sql.Composable, right: sql.Composable
    ) -> sql.Composable:
        if op == "a_equals":
            return sql.SQL("({} = {})").format(left, right)
        if op == "a_contains":
            return sql.SQL("({} @> {})").format(left, right)
        if op == "a_containedby":
            return sql.SQL("({} <@ {})").format(left, right)
        return sql.SQL(
            "EXISTS (SELECT 1 FROM jsonb_array_elements({}) AS a(v) "
            "JOIN jsonb_array_elements({}) AS b(v) ON a.v = b.v)"
        ).format(left, right)
