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
from psycopg import sql

from layers.catalog import Layer

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

GEOMETRY_NAMES = ("geometry", "geom")

_COMPARISON = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITHMETIC = {
    "+": "+",
    "-": "-",
    "*": "*",
    "/": "/",
    "%": "%%",  # psycopg placeholders: a literal percent sign is doubled
    "^": "^",
    "div": "div",
}
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


class FilterError(ValueError):
    """A filter that cannot be parsed or names something the layer cannot be queried by."""


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
    if lang == "cql2-json":
        try:
            return json.loads(text)
        except RecursionError:
            raise FilterError("the filter is nested too deeply") from None
        except ValueError as exc:
            raise FilterError(f"not valid JSON: {exc}") from None
    if lang != "cql2-text":
        raise FilterError(f"unknown filter language {lang!r}; use {' or '.join(LANGUAGES)}")
    if not text.strip():
        raise FilterError("the filter is empty")
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


def _instant(value: str, what: str) -> datetime:
    """Parse a CQL2 TIMESTAMP or DATE literal (RFC 3339)."""
    try:
        if what == "date":
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (TypeError, ValueError):
        raise FilterError(f"not an RFC 3339 {what}: {value!r}") from None
    if what == "timestamp" and "T" not in value.upper():
        raise FilterError(f"not an RFC 3339 timestamp: {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
        if value.kind == "string":
            return _Typed(sql.SQL("({})::timestamptz").format(value.sql), "timestamp")
        return value

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
            return _Typed(self.param(node, "text"), "string")
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
            if op == "div":
                formula = sql.SQL("div({}, {})").format(left.sql, right.sql)
            else:
                formula = sql.SQL("({} {} {})").format(
                    left.sql, sql.SQL(_ARITHMETIC[op]), right.sql
                )
            both_integer = left.kind == right.kind == "integer" and op not in ("/", "^")
            return _Typed(formula, "integer" if both_integer else "number")
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
        """Write a geometry literal (GeoJSON or BBOX) in the filter's CRS, moved to EPSG:4326."""
        if "bbox" in node:
            box = node["bbox"]
            if not (isinstance(box, list) and len(box) in (4, 6)) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in box
            ):
                raise FilterError("BBOX takes four or six finite numbers")
            half = len(box) // 2
            minx, miny, maxx, maxy = box[0], box[1], box[half], box[half + 1]
            if self.lat_first:
                minx, miny, maxx, maxy = miny, minx, maxy, maxx
            self.params.extend([minx, miny, maxx, maxy, self.srid])
            return sql.SQL("ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, %s), 4326)")
        if node.get("type") not in _GEOMETRY_TYPES:
            raise FilterError(f"not a GeoJSON geometry: {_describe(node)}")
        self.params.append(json.dumps(node))
        self.params.append(self.srid)
        shape: sql.Composable = sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON(%s), %s)")
        if self.lat_first:
            shape = sql.SQL("ST_FlipCoordinates({})").format(shape)
        return sql.SQL("ST_Transform({}, 4326)").format(shape)

    def period(self, node: Any, depth: int) -> _Period:
        """Read a temporal operand: a timestamp property, TIMESTAMP, DATE or INTERVAL.

        The relations name each end more than once, so literal instants (parsed and checked
        here, so only datetimes) are written as SQL literals by psycopg, not as placeholders.
        """
        if isinstance(node, dict) and "interval" in node:
            ends = node["interval"]
            if not isinstance(ends, list) or len(ends) != 2:
                raise FilterError("INTERVAL takes a start and an end")
            return _Period(self.bound(ends[0], False, depth), self.bound(ends[1], True, depth))
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

    def bound(self, node: Any, end: bool, depth: int) -> sql.Composable:
        """Write one end of an INTERVAL: ``..`` (open), an RFC 3339 string, or a property."""
        open_end = sql.SQL("'infinity'::timestamptz" if end else "'-infinity'::timestamptz")
        if node == "..":
            return open_end
        if isinstance(node, str):
            if "T" in node.upper():
                return sql.Literal(_instant(node, "timestamp"))
            day = _instant(node, "date")
            return sql.Literal(day + _DAY if end else day)
        period = self.period(node, depth)
        if isinstance(node, dict) and "property" in node:  # an absent end is open
            return sql.SQL("coalesce({}, {})").format(period.end, open_end)
        return period.end if end else period.start

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
