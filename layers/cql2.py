"""CQL2-text filters, parsed by pygeofilter, turned into parameterised SQL for a layer.

Only a layer's queryables may be named (its id, typed attributes, ``source``, ``valid_from``
and ``valid_to``, and ``geometry``); values always travel as query parameters.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pygeofilter.ast as ast
from psycopg import sql
from pygeofilter.parsers.cql2_text import parse
from pygeofilter.values import Envelope, Geometry

from layers.catalog import Layer

_COMPARISON = {
    ast.Equal: "=",
    ast.NotEqual: "<>",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}
_SPATIAL = {
    ast.GeometryIntersects: "ST_Intersects",
    ast.GeometryDisjoint: "ST_Disjoint",
    ast.GeometryWithin: "ST_Within",
    ast.GeometryContains: "ST_Contains",
    ast.GeometryTouches: "ST_Touches",
    ast.GeometryCrosses: "ST_Crosses",
    ast.GeometryOverlaps: "ST_Overlaps",
    ast.GeometryEquals: "ST_Equals",
}
GEOMETRY_NAMES = ("geometry", "geom")


class FilterError(ValueError):
    """A filter that cannot be parsed or names something the layer cannot be queried by."""


def queryables(layer: Layer) -> dict[str, str]:
    """Return the properties a filter may name, with their JSON Schema types.

    Parameters
    ----------
    layer
        The layer.

    Returns
    -------
    dict of str to str
        Property name to JSON Schema type (``string``, ``integer``, ``number``, ``boolean``,
        ``object``; timestamps are strings).
    """
    kinds = {
        "text": "string",
        "int": "integer",
        "bigint": "integer",
        "float": "number",
        "bool": "boolean",
        "json": "object",
        "timestamp": "string",
    }
    out = {"id": "string", "source": "string", "valid_from": "string", "valid_to": "string"}
    out |= {f.name: kinds[f.kind] for f in layer.fields}
    return out


#: Longest filter accepted, in characters.
MAX_LENGTH = 20_000


def to_sql(
    text: str, layer: Layer, *, srid: int = 4326, lat_first: bool = False
) -> tuple[sql.Composable, list[Any]]:
    """Translate a CQL2-text filter into a SQL condition on the layer's table.

    Parameters
    ----------
    text
        The filter, e.g. ``class = 'primary' AND lanes >= 2``.
    layer
        The layer filtered.
    srid
        CRS of the filter's geometries (``filter-crs``) when they do not say (EWKT ``SRID=``).
    lat_first
        Whether that CRS puts latitude first (EPSG:4326 and 4490 as OGC URIs).

    Returns
    -------
    tuple
        The condition (placeholders ``%s``) and its parameters.

    Raises
    ------
    FilterError
        If the filter does not parse, is too long, names an unknown property, or compares a
        property with a value of another type.
    """
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_LENGTH} characters")
    try:
        node = parse(text)
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None
    except Exception as exc:  # the parser raises lark's errors of many kinds
        raise FilterError(f"malformed CQL2 text: {exc}".splitlines()[0]) from None
    params: list[Any] = []
    try:
        return _Translator(layer, params, srid, lat_first).node(node), params
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None


_NUMERIC = ("integer", "number")


class _Translator:
    """Walks a pygeofilter AST and writes SQL, checking names and types on the way."""

    def __init__(self, layer: Layer, params: list[Any], srid: int, lat_first: bool):
        self.layer = layer
        self.params = params
        self.srid = srid
        self.lat_first = lat_first
        self.types = queryables(layer)

    def attribute(self, node: Any) -> sql.Composable:
        if not isinstance(node, ast.Attribute):
            raise FilterError(f"expected a property name, got {node!r}")
        if node.name in GEOMETRY_NAMES:
            return sql.Identifier("geom")
        if node.name not in self.types:
            known = ", ".join(self.types)
            raise FilterError(f"unknown property {node.name!r}; queryables: {known}")
        return sql.Identifier(node.name)

    def check_type(self, attribute: Any, value: Any) -> None:
        """Refuse comparing a property with a value of another type (SQL would fail)."""
        if not isinstance(attribute, ast.Attribute) or attribute.name in GEOMETRY_NAMES:
            return
        expected = self.types.get(attribute.name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if (
            (expected in _NUMERIC and not numeric)
            or (expected == "string" and numeric)
            or (expected == "boolean" and not isinstance(value, bool))
        ):
            raise FilterError(
                f"property {attribute.name!r} is {expected}; cannot compare it with {value!r}"
            )

    def value(self, node: Any) -> sql.Composable:
        if isinstance(node, bool | int | float | str | datetime | date):
            self.params.append(node)
            return sql.SQL("%s")
        if isinstance(node, Geometry):
            geometry = dict(node.geometry)
            crs = geometry.pop("crs", None)
            srid = self.srid
            flip = self.lat_first
            if crs:  # EWKT SRID=nnnn;...
                name = str(crs.get("properties", {}).get("name", ""))
                try:
                    srid, flip = int(name.rsplit(":", 1)[-1]), False
                except ValueError:
                    raise FilterError(f"unknown geometry CRS {name!r}") from None
            self.params.append(json.dumps(geometry))
            self.params.append(srid)
            shape: sql.Composable = sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON(%s), %s)")
            if flip:
                shape = sql.SQL("ST_FlipCoordinates({})").format(shape)
            return sql.SQL("ST_Transform({}, 4326)").format(shape)
        if isinstance(node, Envelope):
            self.params.extend([node.x1, node.y1, node.x2, node.y2, self.srid])
            return sql.SQL("ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, %s), 4326)")
        raise FilterError(f"unsupported value {node!r}")

    def operand(self, node: Any) -> sql.Composable:
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        return self.value(node)

    def node(self, node: Any) -> sql.Composable:
        if isinstance(node, ast.And | ast.Or):
            # a chain of ANDs (or ORs) is flattened, so long filters do not recurse deeply
            kind = type(node)
            parts, stack = [], [node]
            while stack:
                item = stack.pop()
                if type(item) is kind:
                    stack.extend([item.rhs, item.lhs])
                else:
                    parts.append(self.node(item))
            joiner = " AND " if kind is ast.And else " OR "
            return sql.SQL("({})").format(sql.SQL(joiner).join(parts))
        if isinstance(node, ast.Not):
            return sql.SQL("(NOT {})").format(self.node(node.sub_node))
        for kind, operator in _COMPARISON.items():
            if isinstance(node, kind):
                self.check_type(node.lhs, node.rhs)
                self.check_type(node.rhs, node.lhs)
                left, right = self.operand(node.lhs), self.operand(node.rhs)
                return sql.SQL("({} {} {})").format(left, sql.SQL(operator), right)
        if isinstance(node, ast.Like):
            attribute = self.attribute(node.lhs)
            if self.types.get(node.lhs.name) != "string":
                raise FilterError(f"LIKE needs a text property; {node.lhs.name!r} is not one")
            pattern = node.pattern
            if node.singlechar != "_":
                pattern = pattern.replace(node.singlechar, "_")
            self.params.append(pattern)
            operator = "ILIKE" if node.nocase else "LIKE"
            negation = "NOT " if node.not_ else ""
            return sql.SQL("({} {}{} %s)").format(attribute, sql.SQL(negation), sql.SQL(operator))
        if isinstance(node, ast.In):
            attribute = self.attribute(node.lhs)
            for item in node.sub_nodes:
                self.check_type(node.lhs, item)
            values = sql.SQL(", ").join(self.value(v) for v in node.sub_nodes)
            negation = "NOT " if node.not_ else ""
            return sql.SQL("({} {}IN ({}))").format(attribute, sql.SQL(negation), values)
        if isinstance(node, ast.Between):
            attribute = self.attribute(node.lhs)
            self.check_type(node.lhs, node.low)
            self.check_type(node.lhs, node.high)
            low, high = self.value(node.low), self.value(node.high)
            negation = "NOT " if node.not_ else ""
            return sql.SQL("({} {}BETWEEN {} AND {})").format(
                attribute, sql.SQL(negation), low, high
            )
        if isinstance(node, ast.IsNull):
            attribute = self.attribute(node.lhs)
            is_not = sql.SQL("NOT " if node.not_ else "")
            return sql.SQL("({} IS {}NULL)").format(attribute, is_not)
        for kind, function in _SPATIAL.items():
            if isinstance(node, kind):
                for side in (node.lhs, node.rhs):
                    if isinstance(side, ast.Attribute) and side.name not in GEOMETRY_NAMES:
                        raise FilterError(f"{kind.__name__} needs the geometry, not {side.name!r}")
                left, right = self.operand(node.lhs), self.operand(node.rhs)
                return sql.SQL("{}({}, {})").format(sql.SQL(function), left, right)
        if isinstance(node, ast.BBox):
            attribute = self.attribute(node.lhs)
            self.params.extend([node.minx, node.miny, node.maxx, node.maxy, self.srid])
            return sql.SQL(
                "({} && ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, %s), 4326))"
            ).format(attribute)
        if isinstance(node, bool):
            return sql.SQL("TRUE" if node else "FALSE")
        raise FilterError(f"unsupported CQL2 expression: {type(node).__name__}")
