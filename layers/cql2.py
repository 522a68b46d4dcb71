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


def to_sql(text: str, layer: Layer) -> tuple[sql.Composable, list[Any]]:
    """Translate a CQL2-text filter into a SQL condition on the layer's table.

    Parameters
    ----------
    text
        The filter, e.g. ``class = 'primary' AND lanes >= 2``.
    layer
        The layer filtered.

    Returns
    -------
    tuple
        The condition (placeholders ``%s``) and its parameters.

    Raises
    ------
    FilterError
        If the filter does not parse or names an unknown property.
    """
    try:
        node = parse(text)
    except Exception as exc:  # the parser raises lark's errors of many kinds
        raise FilterError(f"malformed CQL2 text: {exc}".splitlines()[0]) from None
    params: list[Any] = []
    return _node(node, layer, params), params


def _attribute(node: Any, layer: Layer) -> sql.Composable:
    if not isinstance(node, ast.Attribute):
        raise FilterError(f"expected a property name, got {node!r}")
    if node.name in GEOMETRY_NAMES:
        return sql.Identifier("geom")
    if node.name not in queryables(layer):
        known = ", ".join(queryables(layer))
        raise FilterError(f"unknown property {node.name!r}; queryables: {known}")
    return sql.Identifier(node.name)


def _value(node: Any, params: list[Any]) -> sql.Composable:
    if isinstance(node, bool | int | float | str | datetime | date):
        params.append(node)
        return sql.SQL("%s")
    if isinstance(node, Geometry):
        params.append(json.dumps(node.geometry))
        return sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)")
    if isinstance(node, Envelope):
        params.extend([node.x1, node.y1, node.x2, node.y2])
        return sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, 4326)")
    raise FilterError(f"unsupported value {node!r}")


def _operand(node: Any, layer: Layer, params: list[Any]) -> sql.Composable:
    if isinstance(node, ast.Attribute):
        return _attribute(node, layer)
    return _value(node, params)


def _node(node: Any, layer: Layer, params: list[Any]) -> sql.Composable:
    if isinstance(node, ast.And | ast.Or):
        joiner = " AND " if isinstance(node, ast.And) else " OR "
        left, right = _node(node.lhs, layer, params), _node(node.rhs, layer, params)
        return sql.SQL("({})").format(sql.SQL(joiner).join([left, right]))
    if isinstance(node, ast.Not):
        return sql.SQL("(NOT {})").format(_node(node.sub_node, layer, params))
    for kind, operator in _COMPARISON.items():
        if isinstance(node, kind):
            left = _operand(node.lhs, layer, params)
            right = _operand(node.rhs, layer, params)
            return sql.SQL("({} {} {})").format(left, sql.SQL(operator), right)
    if isinstance(node, ast.Like):
        attribute = _attribute(node.lhs, layer)
        pattern = (
            node.pattern.replace(node.singlechar, "_") if node.singlechar != "_" else node.pattern
        )
        params.append(pattern)
        operator = "ILIKE" if node.nocase else "LIKE"
        negation = "NOT " if node.not_ else ""
        return sql.SQL("({} {}{} %s)").format(attribute, sql.SQL(negation), sql.SQL(operator))
    if isinstance(node, ast.In):
        attribute = _attribute(node.lhs, layer)
        values = sql.SQL(", ").join(_value(v, params) for v in node.sub_nodes)
        negation = "NOT " if node.not_ else ""
        return sql.SQL("({} {}IN ({}))").format(attribute, sql.SQL(negation), values)
    if isinstance(node, ast.Between):
        attribute = _attribute(node.lhs, layer)
        low, high = _value(node.low, params), _value(node.high, params)
        negation = "NOT " if node.not_ else ""
        return sql.SQL("({} {}BETWEEN {} AND {})").format(attribute, sql.SQL(negation), low, high)
    if isinstance(node, ast.IsNull):
        attribute = _attribute(node.lhs, layer)
        return sql.SQL("({} IS {}NULL)").format(attribute, sql.SQL("NOT " if node.not_ else ""))
    for kind, function in _SPATIAL.items():
        if isinstance(node, kind):
            left = _operand(node.lhs, layer, params)
            right = _operand(node.rhs, layer, params)
            return sql.SQL("{}({}, {})").format(sql.SQL(function), left, right)
    if isinstance(node, ast.BBox):
        attribute = _attribute(node.lhs, layer)
        params.extend([node.minx, node.miny, node.maxx, node.maxy])
        return sql.SQL("({} && ST_MakeEnvelope(%s, %s, %s, %s, 4326))").format(attribute)
    if isinstance(node, bool):
        return sql.SQL("TRUE" if node else "FALSE")
    raise FilterError(f"unsupported CQL2 expression: {type(node).__name__}")
