"""OGC SensorThings API v1.1 (OGC 18-088) over the store: entities, query options, writes.

The entity sets of SensorThings' sensing part (Things, Locations, HistoricalLocations, Sensors,
ObservedProperties, Datastreams, Observations, FeaturesOfInterest) are read from the ``sta_*``
tables of migration 0009, in the JSON encoding of OGC 18-088 section 8 (``@iot.id``,
``@iot.selfLink``, ``<Navigation>@iot.navigationLink``, camelCase properties, GeoJSON
geometries in EPSG:4326, ISO 8601 times in UTC).

Query options (OGC 18-088 section 9.3): ``$top`` (100 by default, at most
:data:`MAX_TOP`; more is capped as the standard says, with an ``@iot.nextLink``), ``$skip``,
``$count``, ``$orderby`` (several expressions, ``asc``/``desc``; nulls first ascending, last
descending), ``$select``, ``$expand`` (nested, with its own options in parentheses separated by
``;``) and ``$filter``. ``$filter`` and ``$orderby`` expressions are parsed by the
``odata-query`` library (OData v4 ABNF) into a syntax tree, which one walk here types and
turns into parameterised SQL: values only ever travel as query parameters. Operators ``eq ne gt
ge lt le and or not``, ``add sub mul div mod``, ``in``; the string, date, math, geospatial
(``geo.distance``, ``geo.length``, ``geo.intersects``) and spatial relationship (``st_*``)
functions of OGC 18-088 table 23, plus OData v4's ``contains``; property paths across
navigation (``Datastream/id``, ``Thing/name``, ``Datastreams/Observations/result``: a path
through a collection is true when any member matches) and into JSON
(``properties/owner``, ``unitOfMeasurement/symbol``).

Geometry functions work in EPSG:4326, so ``geo.distance`` and ``geo.length`` are in degrees, as
FROST-Server computes them. A Datastream's ``phenomenonTime`` is computed from its observations
(first start to the end of the newest); its ``resultTime`` is not kept and is left out.

Observations are read so that the partitioned table is used well: a filter on
``Datastream/id`` is the ``datastream_id`` column itself and one on ``phenomenonTime`` the
partition key, so PostgreSQL prunes partitions; the observations of one datastream
(``Datastreams(3)/Observations``, or ``Datastream/id eq 3``) are in time order by default and
with ``$orderby=phenomenonTime [desc]``, walking the primary key index
``(datastream_id, phenomenon_time)`` without a sort. All observations are in ``@iot.id`` order
by default (an index on every partition): no index orders every partition by time, so an
explicit time order over all datastreams sorts what the filter leaves.

Writes (section 10): ``POST`` with deep insert and links to existing entities
(``{"@iot.id": n}``), ``PATCH`` (merge) and ``DELETE`` with the integrity rules of table 25
(deleting a Thing deletes its Datastreams and their Observations, ...). Observations are never
written here: they go through the twin's one ingest path (:mod:`layers.observations`, called
by the API through ``twin.live.feed``); :func:`create` hands back the observations a deep
insert carries, checked, for the caller to ingest.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import shapely
import shapely.geometry
import shapely.wkt
from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from layers.catalog import LAYERS
from layers.database import cursor, get_engine
from layers.errors import ParameterError
from layers.observations import (
    COUNT,
    OBSERVATION_TYPES,
    Reading,
    ReadingError,
    StoredObservation,
    check_result,
    forget_datastreams,
    iso,
    parse_time,
    reading_from_json,
)

#: Entities a page holds when ``$top`` is not given.
DEFAULT_TOP = 100
#: Most entities a page holds; a larger ``$top`` is capped (OGC 18-088, req. request-data/top).
MAX_TOP = 10_000
#: Largest ``$skip`` accepted.
MAX_SKIP = 100_000_000
#: Longest ``$filter``, ``$orderby``, ``$select`` or ``$expand`` accepted, in characters.
MAX_OPTION_LENGTH = 10_000
#: Deepest ``$filter`` expression tree accepted.
MAX_DEPTH = 100
#: Deepest ``$expand`` nesting accepted, and most expansions in one request.
MAX_EXPAND_DEPTH = 6
MAX_EXPANSIONS = 40

#: The system query options understood; any other ``$`` option is answered 501.
OPTIONS = ("$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter")

GEOJSON = "application/geo+json"
_GEOJSON_TYPES = (GEOJSON, "application/vnd.geo+json", "application/json")


class EntityNotFoundError(LookupError):
    """An entity, entity set or property a path names does not exist (HTTP 404)."""


class EntityConflictError(ValueError):
    """A write that conflicts with what is stored, such as a name taken (HTTP 409)."""


class MethodNotAllowedError(ValueError):
    """A write the entity set does not take, such as updating an Observation (HTTP 405)."""


class UnsupportedOptionError(ParameterError):
    """A system query option this service does not implement (HTTP 501, as 18-088 says)."""


# ---------------------------------------------------------------------------------------------
# the entity model


@dataclass(frozen=True)
class Field:
    """A property of an entity type as ``$filter`` and ``$orderby`` see it.

    Attributes
    ----------
    name
        The JSON name.
    sql
        SQL template over the entity's alias ``{t}``.
    kind
        ``id``, ``number``, ``text``, ``time``, ``geometry``, ``json`` or ``result``.
    nullable
        Whether it may be null (a non-null sort key leaves the index usable).
    """

    name: str
    sql: str
    kind: str
    nullable: bool = True


@dataclass(frozen=True)
class Link:
    """A navigation property.

    Attributes
    ----------
    name
        The JSON name (``Datastreams``, ``Thing``).
    target
        The entity set it leads to.
    many
        Whether it leads to a collection.
    fk
        For a single entity: the column of this entity holding its id.
    join
        For a collection: the SQL condition on the member ``{c}`` given this entity's id ``{p}``.
    reverse
        The target's navigation property leading back.
    """

    name: str
    target: str
    many: bool
    fk: str | None = None
    join: str | None = None
    reverse: str | None = None


@dataclass(frozen=True)
class Entity:
    """An entity type and its set.

    Attributes
    ----------
    name
        The entity set (``Things``).
    singular
        The entity type (``Thing``).
    table
        The table holding it.
    fields
        Properties by JSON name.
    links
        Navigation properties by JSON name.
    columns
        What is read for output: key and SQL template over ``{t}``.
    order
        The default order: SQL templates, ascending; also the tie-breakers of any order.
    """

    name: str
    singular: str
    table: str
    fields: dict[str, Field]
    links: dict[str, Link]
    columns: tuple[tuple[str, str], ...]
    order: tuple[str, ...] = ("{t}.id",)


def _fields(*items: Field) -> dict[str, Field]:
    return {f.name: f for f in (Field("id", "{t}.id", "id", nullable=False), *items)}


def _links(*items: Link) -> dict[str, Link]:
    return {link.name: link for link in items}


_NAME = Field("name", "{t}.name", "text", nullable=False)
_DESCRIPTION = Field("description", "{t}.description", "text", nullable=False)
_PROPERTIES = Field("properties", "{t}.properties", "json")
_ENCODING = Field("encodingType", "{t}.encoding_type", "text", nullable=False)
_OBS_TYPE = "(SELECT _d.observation_type FROM sta_datastreams _d WHERE _d.id = {t}.datastream_id)"
_DS_START = (
    "(SELECT min(_o.phenomenon_time) FROM sta_observations _o WHERE _o.datastream_id = {t}.id)"
)
_DS_END = (
    "(SELECT COALESCE(_o.phenomenon_time_end, _o.phenomenon_time) FROM sta_observations _o "
    "WHERE _o.datastream_id = {t}.id ORDER BY _o.phenomenon_time DESC LIMIT 1)"
)

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "Things",
            "Thing",
            "sta_things",
            _fields(_NAME, _DESCRIPTION, _PROPERTIES),
            _links(
                Link(
                    "Locations",
                    "Locations",
                    True,
                    join="{c}.id IN (SELECT _l.location_id FROM sta_thing_locations _l "
                    "WHERE _l.thing_id = {p})",
                    reverse="Things",
                ),
                Link(
                    "HistoricalLocations",
                    "HistoricalLocations",
                    True,
                    join="{c}.thing_id = {p}",
                    reverse="Thing",
                ),
                Link(
                    "Datastreams", "Datastreams", True, join="{c}.thing_id = {p}", reverse="Thing"
                ),
            ),
            (
                ("id", "{t}.id"),
                ("name", "{t}.name"),
                ("description", "{t}.description"),
                ("properties", "{t}.properties"),
                ("layer", "{t}.layer"),
                ("feature_id", "{t}.feature_id"),
            ),
        ),
        Entity(
            "Locations",
            "Location",
            "sta_locations",
            _fields(
                _NAME,
                _DESCRIPTION,
                _ENCODING,
                Field("location", "{t}.geom", "geometry"),
                _PROPERTIES,
            ),
            _links(
                Link(
                    "Things",
                    "Things",
                    True,
                    join="{c}.id IN (SELECT _l.thing_id FROM sta_thing_locations _l "
                    "WHERE _l.location_id = {p})",
                    reverse="Locations",
                ),
                Link(
                    "HistoricalLocations",
                    "HistoricalLocations",
                    True,
                    join="{c}.id IN (SELECT _l.historical_location_id FROM "
                    "sta_location_historical_locations _l WHERE _l.location_id = {p})",
                    reverse="Locations",
                ),
            ),
            (
                ("id", "{t}.id"),
                ("name", "{t}.name"),
                ("description", "{t}.description"),
                ("encoding_type", "{t}.encoding_type"),
                ("location", "ST_AsGeoJSON({t}.geom)::json"),
                ("properties", "{t}.properties"),
            ),
        ),
        Entity(
            "HistoricalLocations",
            "HistoricalLocation",
            "sta_historical_locations",
            _fields(Field("time", "{t}.time", "time", nullable=False)),
            _links(
                Link("Thing", "Things", False, fk="thing_id", reverse="HistoricalLocations"),
                Link(
                    "Locations",
                    "Locations",
                    True,
                    join="{c}.id IN (SELECT _l.location_id FROM sta_location_historical_locations "
                    "_l WHERE _l.historical_location_id = {p})",
                    reverse="HistoricalLocations",
                ),
            ),
            (("id", "{t}.id"), ("time", "{t}.time"), ("thing_id", "{t}.thing_id")),
        ),
        Entity(
            "Sensors",
            "Sensor",
            "sta_sensors",
            _fields(
                _NAME,
                _DESCRIPTION,
                _ENCODING,
                Field("metadata", "{t}.metadata", "text", nullable=False),
                _PROPERTIES,
            ),
            _links(
                Link(
                    "Datastreams", "Datastreams", True, join="{c}.sensor_id = {p}", reverse="Sensor"
                )
            ),
            (
                ("id", "{t}.id"),
                ("name", "{t}.name"),
                ("description", "{t}.description"),
                ("encoding_type", "{t}.encoding_type"),
                ("metadata", "{t}.metadata"),
                ("properties", "{t}.properties"),
            ),
        ),
        Entity(
            "ObservedProperties",
            "ObservedProperty",
            "sta_observed_properties",
            _fields(
                _NAME,
                Field("definition", "{t}.definition", "text", nullable=False),
                _DESCRIPTION,
                _PROPERTIES,
            ),
            _links(
                Link(
                    "Datastreams",
                    "Datastreams",
                    True,
                    join="{c}.observed_property_id = {p}",
                    reverse="ObservedProperty",
                )
            ),
            (
                ("id", "{t}.id"),
                ("name", "{t}.name"),
                ("definition", "{t}.definition"),
                ("description", "{t}.description"),
                ("properties", "{t}.properties"),
            ),
        ),
        Entity(
            "Datastreams",
            "Datastream",
            "sta_datastreams",
            _fields(
                _NAME,
                _DESCRIPTION,
                Field("observationType", "{t}.observation_type", "text", nullable=False),
                Field("unitOfMeasurement", "{t}.unit_of_measurement", "json"),
                Field("observedArea", "{t}.observed_area", "geometry"),
                Field("phenomenonTime", _DS_START, "time"),
                _PROPERTIES,
            ),
            _links(
                Link("Thing", "Things", False, fk="thing_id", reverse="Datastreams"),
                Link("Sensor", "Sensors", False, fk="sensor_id", reverse="Datastreams"),
                Link(
                    "ObservedProperty",
                    "ObservedProperties",
                    False,
                    fk="observed_property_id",
                    reverse="Datastreams",
                ),
                Link(
                    "Observations",
                    "Observations",
                    True,
                    join="{c}.datastream_id = {p}",
                    reverse="Datastream",
                ),
            ),
            (
                ("id", "{t}.id"),
                ("name", "{t}.name"),
                ("description", "{t}.description"),
                ("observation_type", "{t}.observation_type"),
                ("unit_of_measurement", "{t}.unit_of_measurement"),
                ("observed_area", "ST_AsGeoJSON({t}.observed_area)::json"),
                ("properties", "{t}.properties"),
                ("thing_id", "{t}.thing_id"),
                ("sensor_id", "{t}.sensor_id"),
                ("observed_property_id", "{t}.observed_property_id"),
            ),
        ),
        Entity(
            "Observations",
            "Observation",
            "sta_observations",
            _fields(
                Field("phenomenonTime", "{t}.phenomenon_time", "time", nullable=False),
                Field("resultTime", "{t}.result_time", "time"),
                Field("result", "{t}.result", "result"),
                Field("resultQuality", "{t}.result_quality", "json"),
                Field("parameters", "{t}.parameters", "json"),
            ),
            _links(
                Link(
                    "Datastream", "Datastreams", False, fk="datastream_id", reverse="Observations"
                ),
                Link(
                    "FeatureOfInterest",
                    "FeaturesOfInterest",
                    False,
                    fk="feature_of_interest_id",
                    reverse="Observations",
                ),
            ),
            (
                ("id", "{t}.id"),
                ("datastream_id", "{t}.datastream_id"),
                ("phenomenon_time", "{t}.phenomenon_time"),
                ("phenomenon_time_end", "{t}.phenomenon_time_end"),
                ("result_time", "{t}.result_time"),
                ("result", "{t}.result"),
                ("result_json", "{t}.result_json"),
                ("result_quality", "{t}.result_quality"),
                ("parameters", "{t}.parameters"),
                ("feature_of_interest_id", "{t}.feature_of_interest_id"),
                ("observation_type", _OBS_TYPE),
            ),
            order=("{t}.phenomenon_time", "{t}.datastream_id"),
        ),
        Entity(
            "FeaturesOfInterest",
            "FeatureOfInterest",
            "sta_features_of_interest",
            _fields(
                _NAME,
                _DESCRIPTION,
                _ENCODING,
                Field("feature", "{t}.geom", "geometry"),
                _PROPERTIES,
            ),
            _links(
                Link(
                    "Observations",
                    "Observations",
                    True,
                    join="{c}.feature_of_interest_id = {p}",
                    reverse="FeatureOfInterest",
                )
            ),
            (
                ("id", "{t}.id"),
                ("name", "{t}.name"),
                ("description", "{t}.description"),
                ("encoding_type", "{t}.encoding_type"),
                ("feature", "ST_AsGeoJSON({t}.geom)::json"),
                ("properties", "{t}.properties"),
            ),
        ),
    )
}

#: The JSON properties each entity type writes, in the order OGC 18-088 section 8 lists them.
_OUTPUT: dict[str, tuple[str, ...]] = {
    "Things": ("name", "description", "properties"),
    "Locations": ("name", "description", "encodingType", "location", "properties"),
    "HistoricalLocations": ("time",),
    "Sensors": ("name", "description", "encodingType", "metadata", "properties"),
    "ObservedProperties": ("name", "definition", "description", "properties"),
    "Datastreams": (
        "name",
        "description",
        "unitOfMeasurement",
        "observationType",
        "observedArea",
        "phenomenonTime",
        "resultTime",
        "properties",
    ),
    "Observations": ("phenomenonTime", "resultTime", "result", "resultQuality", "parameters"),
    "FeaturesOfInterest": ("name", "description", "encodingType", "feature", "properties"),
}
#: Optional properties left out of a representation when they are null (unless selected).
_OMIT_NULL = {
    "properties",
    "observedArea",
    "phenomenonTime",
    "resultTime",
    "resultQuality",
    "parameters",
}
_OMIT_NULL_EXCEPT = {("Observations", "resultTime")}


# ---------------------------------------------------------------------------------------------
# query options


@dataclass
class Query:
    """The system query options of a request (or of one ``$expand`` item), checked.

    Attributes
    ----------
    entity
        The entity set they apply to.
    top, skip
        Page size and offset.
    count
        Whether ``@iot.count`` is wanted.
    filter
        The ``$filter`` syntax tree, or None.
    orderby
        ``(syntax tree, descending)`` per ``$orderby`` expression.
    select
        Property names ``$select`` keeps, or None for all.
    expand
        Expansions, by navigation property.
    raw
        The options' text as given, for next links.
    """

    entity: Entity
    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    filter: ast._Node | None = None
    orderby: list[tuple[ast._Node, bool]] = field(default_factory=list)
    select: list[str] | None = None
    expand: dict[str, Query] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)

    def query_string(self, *, skip: int | None = None) -> str:
        """Return the options as a URL query string, ``$skip`` replaced if given.

        Parameters
        ----------
        skip
            The ``$skip`` of the link (a next page's).

        Returns
        -------
        str
            ``$top=..&$skip=..&...``, percent-encoded where URLs need it.
        """
        raw = dict(self.raw)
        if skip is not None:
            raw["$top"] = str(self.top)
            raw["$skip"] = str(skip)
        ordered = {k: raw[k] for k in OPTIONS if k in raw}
        return urlencode(ordered, quote_via=quote, safe="$(),;/'=:*")


def parse_query(
    entity_name: str, params: Mapping[str, str] | Sequence[tuple[str, str]], *, depth: int = 0
) -> Query:
    """Check a request's system query options against an entity set.

    Parameters
    ----------
    entity_name
        The entity set the request addresses (``Things``).
    params
        The query parameters as (name, value) pairs or a mapping; names not starting with
        ``$`` are ignored.
    depth
        How deep in ``$expand`` these options are.

    Returns
    -------
    Query
        The options.

    Raises
    ------
    ParameterError
        If an option is malformed, given twice, or names what the entity set does not have;
        ``parameter`` names the option.
    UnsupportedOptionError
        For a ``$`` option this service does not implement (``$resultFormat``, ``$search``).
    """
    entity = ENTITIES[entity_name]
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    raw: dict[str, str] = {}
    for name, value in pairs:
        if not name.startswith("$"):
            continue
        if name not in OPTIONS:
            raise UnsupportedOptionError(
                f"{name} is not supported; the options are {', '.join(OPTIONS)}", parameter=name
            )
        if name in raw:
            raise ParameterError(f"{name} is given twice", parameter=name)
        if len(value) > MAX_OPTION_LENGTH:
            raise ParameterError(
                f"{name} is longer than {MAX_OPTION_LENGTH} characters", parameter=name
            )
        raw[name] = value
    query = Query(entity=entity, raw=raw)
    if "$top" in raw:
        query.top = min(_count_option("$top", raw["$top"]), MAX_TOP)
    if "$skip" in raw:
        query.skip = _count_option("$skip", raw["$skip"])
        if query.skip > MAX_SKIP:
            raise ParameterError(f"$skip must be at most {MAX_SKIP}", parameter="$skip")
    if "$count" in raw:
        text = raw["$count"].strip().lower()
        if text not in ("true", "false"):
            raise ParameterError(
                f"$count must be true or false, not {raw['$count'][:20]!r}", parameter="$count"
            )
        query.count = text == "true"
    if "$filter" in raw:
        query.filter = parse_expression(raw["$filter"], option="$filter")
        # compile once now, so that names and types are checked before anything runs
        _Compiler(_Params(), "$filter").where(query.filter, entity, "t")
    if "$orderby" in raw:
        query.orderby = _parse_orderby(entity, raw["$orderby"])
    if "$select" in raw:
        query.select = _parse_select(entity, raw["$select"])
    if "$expand" in raw:
        query.expand = _parse_expand(entity, raw["$expand"], depth)
        if depth == 0 and _expansions(query) > MAX_EXPANSIONS:
            raise ParameterError(
                f"$expand asks for more than {MAX_EXPANSIONS} expansions", parameter="$expand"
            )
    return query


def _expansions(query: Query) -> int:
    return sum(1 + _expansions(q) for q in query.expand.values())


def _count_option(name: str, text: str) -> int:
    if not re.fullmatch(r"\s*\d{1,12}\s*", text):
        raise ParameterError(
            f"{name} must be a non-negative integer, not {text[:20]!r}", parameter=name
        )
    return int(text)


def _split(text: str, separator: str, option: str) -> list[str]:
    """Split at ``separator`` outside parentheses and quoted strings."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ParameterError(f"{option}: unbalanced ')'", parameter=option)
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise ParameterError(
            f"{option}: unclosed {'quote' if quoted else 'parenthesis'}", parameter=option
        )
    parts.append(text[start:])
    return parts


def _parse_select(entity: Entity, text: str) -> list[str]:
    names = []
    for part in text.split(","):
        name = part.strip()
        if name == "@iot.id":
            name = "id"
        if name not in entity.fields and name not in entity.links and name != "@iot.selfLink":
            raise ParameterError(
                f"$select: {entity.singular} has no property {name!r}; it has "
                f"{', '.join([*entity.fields, *entity.links])}",
                parameter="$select",
            )
        if name not in names:
            names.append(name)
    return names


def _parse_orderby(entity: Entity, text: str) -> list[tuple[ast._Node, bool]]:
    out = []
    for part in _split(text, ",", "$orderby"):
        match = re.fullmatch(r"\s*(.*?)(?:\s+(asc|desc))?\s*", part, re.I | re.S)
        assert match is not None
        expression = match.group(1)
        if not expression:
            raise ParameterError("$orderby: an empty expression", parameter="$orderby")
        node = parse_expression(expression, option="$orderby")
        _Compiler(_Params(), "$orderby").order_key(node, entity, "t")
        out.append((node, (match.group(2) or "asc").lower() == "desc"))
    return out


_EXPAND_ITEM = re.compile(r"\s*([A-Za-z]+(?:\s*/\s*[A-Za-z]+)*)\s*(?:\((.*)\))?\s*", re.S)


def _parse_expand(entity: Entity, text: str, depth: int) -> dict[str, Query]:
    if depth >= MAX_EXPAND_DEPTH:
        raise ParameterError(
            f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels", parameter="$expand"
        )
    out: dict[str, Query] = {}
    for item in _split(text, ",", "$expand"):
        match = _EXPAND_ITEM.fullmatch(item)
        if not match:
            raise ParameterError(
                f"$expand: {item.strip()[:60]!r} is not a navigation property with options in "
                "parentheses",
                parameter="$expand",
            )
        path = [p.strip() for p in match.group(1).split("/")]
        if depth + len(path) > MAX_EXPAND_DEPTH:
            raise ParameterError(
                f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels", parameter="$expand"
            )
        options: list[tuple[str, str]] = []
        if match.group(2) is not None:
            for option in _split(match.group(2), ";", "$expand"):
                if not option.strip():
                    continue
                name, equals, value = option.strip().partition("=")
                if not equals:
                    raise ParameterError(
                        f"$expand: {option.strip()[:40]!r} is not $option=value",
                        parameter="$expand",
                    )
                options.append((name.strip(), value))
        current, owner = entity, out
        for n, name in enumerate(path):
            link = current.links.get(name)
            if link is None:
                raise ParameterError(
                    f"$expand: {current.singular} has no navigation property {name!r}; it has "
                    f"{', '.join(current.links)}",
                    parameter="$expand",
                )
            last = n == len(path) - 1
            if name not in owner:
                try:
                    owner[name] = parse_query(
                        link.target, options if last else [], depth=depth + 1 + n
                    )
                except UnsupportedOptionError:
                    raise
                except ParameterError as exc:
                    raise ParameterError(f"$expand: {name}: {exc}", parameter="$expand") from None
            elif last and options:
                raise ParameterError(
                    f"$expand: {name} is expanded twice with options", parameter="$expand"
                )
            current, owner = ENTITIES[link.target], owner[name].expand
    return out


# ---------------------------------------------------------------------------------------------
# expressions: OData syntax tree to SQL

#: Functions of OGC 18-088 table 23 (and OData v4's contains), with their number of arguments.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "substringof": (2, 2),
    "contains": (2, 2),
    "endswith": (2, 2),
    "startswith": (2, 2),
    "length": (1, 1),
    "indexof": (2, 2),
    "substring": (2, 3),
    "tolower": (1, 1),
    "toupper": (1, 1),
    "trim": (1, 1),
    "concat": (2, 2),
    "year": (1, 1),
    "month": (1, 1),
    "day": (1, 1),
    "hour": (1, 1),
    "minute": (1, 1),
    "second": (1, 1),
    "fractionalseconds": (1, 1),
    "date": (1, 1),
    "time": (1, 1),
    "totaloffsetminutes": (1, 1),
    "now": (0, 0),
    "mindatetime": (0, 0),
    "maxdatetime": (0, 0),
    "round": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "geo.distance": (2, 2),
    "geo.length": (1, 1),
    "geo.intersects": (2, 2),
    "st_equals": (2, 2),
    "st_disjoint": (2, 2),
    "st_touches": (2, 2),
    "st_within": (2, 2),
    "st_overlaps": (2, 2),
    "st_crosses": (2, 2),
    "st_intersects": (2, 2),
    "st_contains": (2, 2),
    "st_relate": (3, 3),
}
_SPATIAL = {
    "geo.intersects": "ST_Intersects",
    "st_equals": "ST_Equals",
    "st_disjoint": "ST_Disjoint",
    "st_touches": "ST_Touches",
    "st_within": "ST_Within",
    "st_overlaps": "ST_Overlaps",
    "st_crosses": "ST_Crosses",
    "st_intersects": "ST_Intersects",
    "st_contains": "ST_Contains",
}
_PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute"}


def _call(parser: ODataParser, func: ast.Identifier, args: list[ast._Node]) -> ast.Call:
    name = func.full_name()
    if name not in FUNCTIONS:
        raise ODataException(f"unknown function {name!r}")
    low, high = FUNCTIONS[name]
    if not low <= len(args) <= high:
        count = str(low) if low == high else f"{low} to {high}"
        raise ODataException(f"{name} takes {count} arguments, not {len(args)}")
    return ast.Call(func, args)


def parse_expression(text: str, *, option: str) -> ast._Node:
    """Parse an OData expression (a ``$filter``, or one ``$orderby`` key).

    Parameters
    ----------
    text
        The expression.
    option
        The query option it comes from, for errors.

    Returns
    -------
    odata_query.ast._Node
        The syntax tree.

    Raises
    ------
    ParameterError
        If it does not parse, names an unknown function, or nests deeper than
        :data:`MAX_DEPTH`.
    """
    if not text.strip():
        raise ParameterError(f"{option} is empty", parameter=option)
    parser = ODataParser()
    # SensorThings' functions (substringof, st_within, ...) beside OData v4's
    parser._function_call = types.MethodType(_call, parser)  # type: ignore[method-assign]
    try:
        tree = parser.parse(ODataLexer().tokenize(text))
    except ODataException as exc:
        raise ParameterError(f"{option}: {_syntax_message(exc, text)}", parameter=option) from None
    except (ValueError, RecursionError) as exc:
        raise ParameterError(f"{option}: {exc}", parameter=option) from None
    if tree is None:
        raise ParameterError(f"{option} is empty", parameter=option)
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            raise ParameterError(f"{option} nests deeper than {MAX_DEPTH} levels", parameter=option)
        if dataclasses.is_dataclass(node):
            for f in dataclasses.fields(node):
                value = getattr(node, f.name)
                for child in value if isinstance(value, list) else [value]:
                    if dataclasses.is_dataclass(child):
                        stack.append((child, level + 1))
    return tree


def _syntax_message(exc: ODataException, text: str) -> str:
    token = getattr(exc, "token", None)
    if token is not None:
        at = getattr(token, "index", None)
        near = text[at : at + 30] if isinstance(at, int) else str(getattr(token, "value", ""))
        return f"cannot parse at character {at}: {near!r}"
    if getattr(exc, "eof", False):
        return "the expression ends too early"
    return str(exc)


class _Params:
    """Query parameters collected while SQL is composed: each value gets a placeholder."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, cast: str | None = None) -> sql.Composable:
        name = f"p{len(self.values)}"
        self.values[name] = value
        placeholder: sql.Composable = sql.Placeholder(name)
        if cast:
            placeholder = sql.SQL("{}::{}").format(placeholder, sql.SQL(cast))
        return placeholder


@dataclass
class _Expr:
    """A typed SQL expression; ``kind`` as :class:`Field`'s, or bool, null, date, duration."""

    sql: sql.Composable
    kind: str
    nullable: bool = True
    literal: Any = None  # the Python value of a string literal, for coercion
    is_literal: bool = False
    result_alias: psycopg.sql.Composable | None = None  # the alias of an Observation's result


class _Scope:
    """The joins navigation in property paths needs, one alias per path."""

    def __init__(self, compiler: _Compiler) -> None:
        self.compiler = compiler
        self.aliases: dict[tuple[Any, ...], str] = {}
        self.joins: list[tuple[str, str, sql.Composable, bool]] = []
        self.touched = False

    def join(self, key: tuple[Any, ...], link: Link, parent_alias: str) -> str:
        self.touched = True
        if key in self.aliases:
            return self.aliases[key]
        alias = self.compiler.alias()
        target = ENTITIES[link.target]
        if link.many:
            assert link.join is not None
            condition = sql.SQL(link.join).format(
                c=sql.Identifier(alias), p=sql.SQL("{}.id").format(sql.Identifier(parent_alias))
            )
        else:
            assert link.fk is not None
            condition = sql.SQL("{}.id = {}.{}").format(
                sql.Identifier(alias), sql.Identifier(parent_alias), sql.Identifier(link.fk)
            )
        self.aliases[key] = alias
        self.joins.append((alias, target.table, condition, link.many))
        return alias

    def wrap(self, expression: sql.Composable) -> sql.Composable:
        if not self.joins:
            return expression
        tables = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(table), sql.Identifier(alias))
            for alias, table, _, _ in self.joins
        )
        conditions = sql.SQL(" AND ").join([j[2] for j in self.joins] + [expression])
        return sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {})").format(tables, conditions)


_COMPARE = {ast.Eq: "=", ast.NotEq: "IS DISTINCT FROM", ast.Lt: "<", ast.LtE: "<="}
_COMPARE |= {ast.Gt: ">", ast.GtE: ">="}
_JSON_CAST = {"number": "double precision", "text": "text", "bool": "boolean"}
_JSON_TYPE = {"number": "number", "text": "string", "bool": "boolean"}


class _Compiler:
    """One walk over an OData syntax tree, writing typed SQL with parameters."""

    def __init__(self, params: _Params, option: str) -> None:
        self.params = params
        self.option = option
        self._aliases = 0

    def alias(self) -> str:
        self._aliases += 1
        return f"f{self._aliases}"

    def fail(self, message: str) -> ParameterError:
        return ParameterError(f"{self.option}: {message}", parameter=self.option)

    # -- boolean structure: each comparison gets its own joins

    def where(self, node: ast._Node, entity: Entity, alias: str) -> sql.Composable:
        """Compile a filter: the conjuncts that navigate share one ``EXISTS`` and its joins.

        A path through a collection names the same member wherever it appears in the filter
        (``Datastreams/Observations/result gt 20 and Datastreams/Observations/result lt 30``
        asks for one observation between the two), as FROST-Server joins. Conjuncts on the
        entity's own columns stay outside, where they prune partitions and use indexes.
        """
        conjuncts: list[ast._Node] = []
        pending = [node]
        while pending:
            item = pending.pop()
            if isinstance(item, ast.BoolOp) and isinstance(item.op, ast.And):
                pending += [item.right, item.left]
            else:
                conjuncts.append(item)
        scope = _Scope(self)
        outside: list[sql.Composable] = []
        inside: list[sql.Composable] = []
        for conjunct in conjuncts:
            scope.touched = False
            value = self.typed(self.value(conjunct, entity, alias, scope), "bool").sql
            (inside if scope.touched else outside).append(value)
        if inside:
            outside.append(scope.wrap(sql.SQL(" AND ").join(inside)))
        return sql.SQL("({})").format(sql.SQL(" AND ").join(outside))

    def order_key(self, node: ast._Node, entity: Entity, alias: str) -> _Expr:
        if isinstance(node, ast._Literal):  # PostgreSQL reads ORDER BY 2 as a column number
            raise self.fail("a constant orders nothing: order by a property, e.g. name desc")
        scope = _Scope(self)
        value = self.value(node, entity, alias, scope)
        if value.kind == "geometry":
            raise self.fail("geometries cannot be ordered")
        if value.kind == "result":
            value = _Expr(self._result_json(value), "json")
        if not scope.joins:
            return value
        if any(many for *_, many in scope.joins):
            raise self.fail("an order cannot go through a navigation to a collection")
        tables = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(table), sql.Identifier(a))
            for a, table, _, _ in scope.joins
        )
        conditions = sql.SQL(" AND ").join(j[2] for j in scope.joins)
        return _Expr(
            sql.SQL("(SELECT {} FROM {} WHERE {})").format(value.sql, tables, conditions),
            value.kind,
        )

    # -- values

    def value(self, node: ast._Node, entity: Entity, alias: str, scope: _Scope) -> _Expr:
        if isinstance(node, ast.Identifier | ast.Attribute):
            return self.path(node, entity, alias, scope)
        if isinstance(node, ast._Literal):
            return self.literal(node)
        if isinstance(node, ast.Compare):
            return self.compare(node, entity, alias, scope)
        if isinstance(node, ast.BoolOp):
            word = "AND" if isinstance(node.op, ast.And) else "OR"
            left = self.typed(self.value(node.left, entity, alias, scope), "bool")
            right = self.typed(self.value(node.right, entity, alias, scope), "bool")
            return _Expr(sql.SQL("({} {} {})").format(left.sql, sql.SQL(word), right.sql), "bool")
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand, entity, alias, scope)
            if isinstance(node.op, ast.Not):
                return _Expr(sql.SQL("(NOT {})").format(self.typed(operand, "bool").sql), "bool")
            if operand.kind == "duration":
                return _Expr(sql.SQL("(- {})").format(operand.sql), "duration")
            return _Expr(sql.SQL("(- {})").format(self.typed(operand, "number").sql), "number")
        if isinstance(node, ast.BinOp):
            return self.arithmetic(node, entity, alias, scope)
        if isinstance(node, ast.Call):
            return self.function(node, entity, alias, scope)
        if isinstance(node, ast.CollectionLambda):
            raise self.fail(
                "any() and all() are not supported; a path through a collection "
                "already matches when any member does"
            )
        raise self.fail(f"unsupported expression {type(node).__name__}")

    def path(self, node: ast._Node, entity: Entity, alias: str, scope: _Scope) -> _Expr:
        segments: list[str] = []
        while isinstance(node, ast.Attribute):
            segments.insert(0, node.attr)
            node = node.owner
        assert isinstance(node, ast.Identifier)
        if node.namespace:
            raise self.fail(f"{node.full_name()!r} is not a property")
        segments.insert(0, node.name)
        current, current_alias = entity, alias
        key: tuple[str, ...] = ()
        for i, name in enumerate(segments):
            link = current.links.get(name)
            if link is not None:
                rest = segments[i + 1 :]
                if not rest:
                    raise self.fail(
                        f"{'/'.join(segments)} is a navigation property, not a value; "
                        f"name one of its properties ({name}/id)"
                    )
                if not link.many and rest == ["id"]:  # the foreign key itself
                    assert link.fk is not None
                    return _Expr(
                        sql.SQL("{}.{}").format(
                            sql.Identifier(current_alias), sql.Identifier(link.fk)
                        ),
                        "id",
                    )
                key = (*key, name)
                current_alias = scope.join(key, link, current_alias)
                current = ENTITIES[link.target]
                continue
            prop = current.fields.get(name)
            if prop is None:
                raise self.fail(
                    f"{current.singular} has no property {name!r}; it has "
                    f"{', '.join([*current.fields, *current.links])}"
                )
            column = sql.SQL(prop.sql).format(t=sql.Identifier(current_alias))
            rest = segments[i + 1 :]
            if not rest:
                if prop.kind == "result":
                    return _Expr(column, "result", result_alias=sql.Identifier(current_alias))
                return _Expr(column, prop.kind, nullable=prop.nullable)
            if (
                current.name == "Things"
                and name == "properties"
                and rest
                in (
                    ["layer"],
                    ["feature_id"],
                )
            ):
                return _Expr(
                    sql.SQL("{}.{}").format(sql.Identifier(current_alias), sql.Identifier(rest[0])),
                    "text",
                )
            if prop.kind != "json":
                raise self.fail(f"{name} has no member {rest[0]!r}")
            return _Expr(
                sql.SQL("({} #> {})").format(column, self.params.add(rest, "text[]")), "json"
            )
        raise self.fail("an empty property path")  # pragma: no cover - the parser gives a name

    def literal(self, node: ast._Literal) -> _Expr:
        p = self.params.add
        try:
            if isinstance(node, ast.Null):
                return _Expr(sql.SQL("NULL"), "null", is_literal=True)
            if isinstance(node, ast.Boolean):
                return _Expr(p(node.py_val, "boolean"), "bool", is_literal=True)
            if isinstance(node, ast.Integer):
                value = node.py_val
                cast = "bigint" if -(2**63) <= value < 2**63 else "numeric"
                return _Expr(p(value, cast), "number", is_literal=True)
            if isinstance(node, ast.Float):
                number = node.py_val
                if not math.isfinite(number):
                    raise self.fail(f"{node.val} is not a finite number")
                return _Expr(p(number, "double precision"), "number", is_literal=True)
            if isinstance(node, ast.String):
                return _Expr(p(node.py_val, "text"), "text", literal=node.py_val, is_literal=True)
            if isinstance(node, ast.DateTime):
                return _Expr(p(_utc(node.py_val), "timestamptz"), "time", is_literal=True)
            if isinstance(node, ast.Date):
                moment = datetime.combine(node.py_val, datetime.min.time(), tzinfo=UTC)
                return _Expr(p(moment, "timestamptz"), "time", is_literal=True)
            if isinstance(node, ast.Duration):
                return _Expr(p(node.py_val, "interval"), "duration", is_literal=True)
            if isinstance(node, ast.Geography):
                return _Expr(self.geometry(node.val), "geometry", is_literal=True)
        except (ValueError, OverflowError) as exc:
            raise self.fail(f"{getattr(node, 'val', node)!r}: {exc}") from None
        raise self.fail(f"{type(node).__name__} literals are not supported")

    def geometry(self, text: str) -> sql.Composable:
        wkt = re.sub(r"^\s*SRID=\d+;", "", text, flags=re.I)
        try:
            shape = shapely.wkt.loads(wkt)
        except (shapely.errors.ShapelyError, ValueError) as exc:
            raise self.fail(f"geography'{text[:60]}' is not WKT: {exc}") from None
        if shape.is_empty:
            raise self.fail(f"geography'{text[:60]}' is empty")
        return sql.SQL("ST_GeomFromText({}, 4326)").format(self.params.add(shape.wkt, "text"))

    # -- typing

    def typed(self, value: _Expr, kind: str) -> _Expr:
        """Return ``value`` as ``kind`` (a JSON or result value converted), or fail."""
        if value.kind == kind or value.kind == "null":
            return value
        if {value.kind, kind} <= {"number", "id"}:
            return _Expr(value.sql, kind, value.nullable)
        if value.kind == "json" and kind in _JSON_CAST:
            return _Expr(self._from_json(value.sql, kind), kind)
        if value.kind == "result":
            if kind in ("number", "id"):
                return _Expr(value.sql, "number")
            if kind in _JSON_CAST:
                return _Expr(self._from_json(self._result_json(value), kind), kind)
            if kind == "json":
                return _Expr(self._result_json(value), "json")
        if value.is_literal and value.kind == "text" and kind in ("time", "number", "id"):
            return self.coerce(value, kind)
        raise self.fail(f"a {_describe(value.kind)} where a {_describe(kind)} is needed")

    def coerce(self, value: _Expr, kind: str) -> _Expr:
        text = str(value.literal)
        if kind == "time":
            try:
                return _Expr(
                    self.params.add(parse_time(text), "timestamptz"), "time", False, None, True
                )
            except ParameterError:
                raise self.fail(f"{text[:40]!r} is not an ISO 8601 time") from None
        try:
            number = float(text) if re.search(r"[.eE]", text) else int(text)
        except ValueError:
            raise self.fail(f"{text[:40]!r} is not a number") from None
        return _Expr(self.params.add(number, "double precision"), "number", False, None, True)

    def _result_json(self, value: _Expr) -> sql.Composable:
        assert value.result_alias is not None
        return sql.SQL("COALESCE(to_jsonb({a}.result), {a}.result_json)").format(
            a=value.result_alias
        )

    def _from_json(self, json_sql: sql.Composable, kind: str) -> sql.Composable:
        return sql.SQL("(CASE WHEN jsonb_typeof({j}) = {t} THEN ({j} #>> '{{}}')::{c} END)").format(
            j=json_sql, t=sql.Literal(_JSON_TYPE[kind]), c=sql.SQL(_JSON_CAST[kind])
        )

    def _common(self, left: _Expr, right: _Expr) -> tuple[_Expr, _Expr]:
        flexible = {"json", "result"}
        if left.kind == "null" or right.kind == "null":
            return left, right
        if left.kind in flexible and right.kind in flexible:
            return self.typed(left, "json"), self.typed(right, "json")
        if left.kind in flexible or (left.is_literal and left.kind == "text"):
            return self.typed(left, right.kind), right
        return left, self.typed(right, left.kind)

    def compare(self, node: ast.Compare, entity: Entity, alias: str, scope: _Scope) -> _Expr:
        left = self.value(node.left, entity, alias, scope)
        if isinstance(node.comparator, ast.In):
            if not isinstance(node.right, ast.List):
                raise self.fail("in takes a list: x in (1, 2)")
            items = []
            for item in node.right.val:
                a, b = self._common(left, self.value(item, entity, alias, scope))
                left = a
                items.append(b.sql)
            return _Expr(
                sql.SQL("({} IN ({}))").format(left.sql, sql.SQL(", ").join(items)), "bool"
            )
        right = self.value(node.right, entity, alias, scope)
        op = _COMPARE[type(node.comparator)]
        if left.kind == "null" or right.kind == "null":
            other = right if left.kind == "null" else left
            if op == "=":
                return _Expr(sql.SQL("({} IS NULL)").format(other.sql), "bool")
            if op == "IS DISTINCT FROM":
                return _Expr(sql.SQL("({} IS NOT NULL)").format(other.sql), "bool")
            raise self.fail("null can only be compared with eq or ne")
        left, right = self._common(left, right)
        if left.kind == "geometry":
            raise self.fail(
                "geometries are compared with st_equals or geo.intersects, not operators"
            )
        if left.kind == "bool" and op not in ("=", "IS DISTINCT FROM"):
            raise self.fail("true and false are compared with eq or ne only")
        return _Expr(sql.SQL("({} {} {})").format(left.sql, sql.SQL(op), right.sql), "bool")

    def arithmetic(self, node: ast.BinOp, entity: Entity, alias: str, scope: _Scope) -> _Expr:
        left = self.value(node.left, entity, alias, scope)
        right = self.value(node.right, entity, alias, scope)
        op = type(node.op)
        if left.kind == "time" and right.kind == "duration" and op in (ast.Add, ast.Sub):
            word = "+" if op is ast.Add else "-"
            return _Expr(sql.SQL("({} {} {})").format(left.sql, sql.SQL(word), right.sql), "time")
        if left.kind == "time" and right.kind == "time" and op is ast.Sub:
            return _Expr(sql.SQL("({} - {})").format(left.sql, right.sql), "duration")
        if left.kind == "duration" and right.kind == "duration" and op in (ast.Add, ast.Sub):
            word = "+" if op is ast.Add else "-"
            return _Expr(
                sql.SQL("({} {} {})").format(left.sql, sql.SQL(word), right.sql), "duration"
            )
        a, b = self.typed(left, "number").sql, self.typed(right, "number").sql
        if op is ast.Div:
            text = sql.SQL("({} / NULLIF({}, 0))").format(a, b)
        elif op is ast.Mod:
            text = sql.SQL("mod(({})::numeric, NULLIF(({})::numeric, 0))").format(a, b)
        else:
            word = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}[op]
            text = sql.SQL("({} {} {})").format(a, sql.SQL(word), b)
        return _Expr(text, "number")

    def function(self, node: ast.Call, entity: Entity, alias: str, scope: _Scope) -> _Expr:
        name = node.func.full_name()
        args = [self.value(a, entity, alias, scope) for a in node.args]

        def arg(i: int, kind: str) -> sql.Composable:
            return self.typed(args[i], kind).sql

        def text(template: str, kind: str, *kinds: str) -> _Expr:
            return _Expr(sql.SQL(template).format(*(arg(i, k) for i, k in enumerate(kinds))), kind)

        if name == "substringof":
            return text("(strpos({1}, {0}) > 0)", "bool", "text", "text")
        if name == "contains":
            return text("(strpos({0}, {1}) > 0)", "bool", "text", "text")
        if name == "startswith":
            return text("starts_with({0}, {1})", "bool", "text", "text")
        if name == "endswith":
            return text("(right({0}, length({1})) = {1})", "bool", "text", "text")
        if name == "length":
            return text("length({0})", "number", "text")
        if name == "indexof":
            return text("(strpos({0}, {1}) - 1)", "number", "text", "text")
        if name == "substring":
            if len(args) == 3:
                return text(
                    "substr({0}, (GREATEST({1}, 0) + 1)::int, GREATEST({2}, 0)::int)",
                    "text",
                    "text",
                    "number",
                    "number",
                )
            return text("substr({0}, (GREATEST({1}, 0) + 1)::int)", "text", "text", "number")
        if name in ("tolower", "toupper", "trim"):
            function = {"tolower": "lower", "toupper": "upper", "trim": "btrim"}[name]
            return text(function + "({0})", "text", "text")
        if name == "concat":
            return text("({0} || {1})", "text", "text", "text")
        if name in _PARTS:
            return text(
                f"extract({_PARTS[name]} FROM {{0}} AT TIME ZONE 'UTC')::double precision",
                "number",
                "time",
            )
        if name == "second":
            return text("floor(extract(second FROM {0}))::double precision", "number", "time")
        if name == "fractionalseconds":
            return text(
                "(extract(second FROM {0}) - floor(extract(second FROM {0})))::double precision",
                "number",
                "time",
            )
        if name == "date":
            return text("date_trunc('day', {0}, 'UTC')", "time", "time")
        if name == "time":
            return text("({0} AT TIME ZONE 'UTC')::time", "timeofday", "time")
        if name == "totaloffsetminutes":
            return text("(0 * extract(epoch FROM {0}))", "number", "time")
        if name == "now":
            return _Expr(sql.SQL("now()"), "time", False)
        if name == "mindatetime":
            return _Expr(sql.SQL("'-infinity'::timestamptz"), "time", False)
        if name == "maxdatetime":
            return _Expr(sql.SQL("'infinity'::timestamptz"), "time", False)
        if name in ("round", "floor", "ceiling"):
            function = {"round": "round", "floor": "floor", "ceiling": "ceil"}[name]
            return text(function + "({0})", "number", "number")
        if name == "geo.distance":
            return text("ST_Distance({0}, {1})", "number", "geometry", "geometry")
        if name == "geo.length":
            return text("ST_Length({0})", "number", "geometry")
        if name == "st_relate":
            return text("ST_Relate({0}, {1}, {2})", "bool", "geometry", "geometry", "text")
        return text(_SPATIAL[name] + "({0}, {1})", "bool", "geometry", "geometry")


def _describe(kind: str) -> str:
    return {
        "id": "number",
        "text": "string",
        "time": "time",
        "bool": "boolean",
        "json": "JSON value",
        "result": "result",
        "timeofday": "time of day",
        "duration": "duration",
    }.get(kind, kind)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# resource paths


@dataclass(frozen=True)
class Target:
    """What a resource path addresses.

    Attributes
    ----------
    entity
        The entity set of the entity or collection addressed.
    id
        The entity addressed, or None for a collection.
    parent
        For a collection reached through a navigation property: the parent's entity set name,
        the navigation property and the parent's id.
    property
        A property (and JSON members under it) of the entity, if one is addressed.
    value
        Whether ``$value`` (the raw value) is asked for.
    ref
        Whether ``$ref`` (links only) is asked for.
    """

    entity: Entity
    id: int | None = None
    parent: tuple[str, Link, int] | None = None
    property: tuple[str, ...] = ()
    value: bool = False
    ref: bool = False


_SEGMENT = re.compile(r"([A-Za-z]+)(?:\(\s*(?:'(\d{1,19})'|(\d{1,19}))\s*\))?")


def resolve(path: str, *, url: str | None = None) -> Target:
    """Resolve a resource path (OGC 18-088 section 9.2), checking each entity it passes.

    Parameters
    ----------
    path
        The path after the service root: ``Things(1)/Datastreams``, ``Datastreams(3)/Thing``,
        ``Things(1)/name/$value``, ``Things(1)/Datastreams/$ref``.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Target
        The entity, collection or property addressed.

    Raises
    ------
    EntityNotFoundError
        If the path names an unknown entity set, property or navigation, or an entity that
        does not exist or is not related as the path says.
    """
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments:
        raise EntityNotFoundError("the path names no entity set")
    first = _SEGMENT.fullmatch(segments[0])
    if not first or first.group(1) not in ENTITIES:
        raise EntityNotFoundError(
            f"no entity set {segments[0][:60]!r}; the sets are {', '.join(ENTITIES)}"
        )
    entity = ENTITIES[first.group(1)]
    key = first.group(2) or first.group(3)
    current_id = int(key) if key else None
    parent: tuple[str, Link, int] | None = None
    with cursor(url) as cur:
        if current_id is not None:
            _exists(cur, entity, current_id)
        i = 1
        while i < len(segments):
            segment = segments[i]
            if segment == "$ref":
                if i != len(segments) - 1 or (current_id is None and parent is None):
                    raise EntityNotFoundError("$ref ends a path to an entity or a collection")
                return Target(entity, current_id, parent, ref=True)
            if current_id is None:
                raise EntityNotFoundError(
                    f"{entity.name} is a collection: address one of its entities, "
                    f"{entity.name}(1)/{segment}"
                )
            match = _SEGMENT.fullmatch(segment)
            name = match.group(1) if match else segment
            link = entity.links.get(name)
            if match and link is not None:
                key = match.group(2) or match.group(3)
                target = ENTITIES[link.target]
                if link.many:
                    if key is None:
                        entity, parent, current_id = target, (entity.name, link, current_id), None
                    else:
                        _related(cur, entity, link, current_id, int(key))
                        entity, current_id = target, int(key)
                else:
                    if key is not None:
                        raise EntityNotFoundError(f"{name} is one entity; it takes no id")
                    assert link.fk is not None
                    cur.execute(
                        sql.SQL("SELECT {} FROM {} WHERE id = %s").format(
                            sql.Identifier(link.fk), sql.Identifier(entity.table)
                        ),
                        (current_id,),
                    )
                    row = cur.fetchone()
                    if row is None or row[0] is None:
                        raise EntityNotFoundError(f"{entity.singular} {current_id} has no {name}")
                    entity, current_id = target, int(row[0])
                i += 1
                continue
            if (segment in entity.fields and segment != "id") or segment == "id":
                rest = segments[i + 1 :]
                value = bool(rest) and rest[-1] == "$value"
                members = tuple(rest[:-1] if value else rest)
                if "$value" in members or "$ref" in members:
                    raise EntityNotFoundError("$value and $ref end a path")
                if members and entity.fields.get(segment, Field("", "", "")).kind != "json":
                    raise EntityNotFoundError(f"{segment} has no member {members[0]!r}")
                return Target(entity, current_id, property=(segment, *members), value=value)
            raise EntityNotFoundError(
                f"{entity.singular} has no property or navigation {segment[:60]!r}"
            )
    if current_id is None and parent is None and key is None and len(segments) > 1:
        raise EntityNotFoundError("the path names no entity")  # pragma: no cover
    return Target(entity, current_id, parent)


def _exists(cur: psycopg.Cursor[Any], entity: Entity, entity_id: int) -> None:
    cur.execute(
        sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(sql.Identifier(entity.table)), (entity_id,)
    )
    if cur.fetchone() is None:
        raise EntityNotFoundError(f"no {entity.singular} {entity_id}")


def _related(
    cur: psycopg.Cursor[Any], entity: Entity, link: Link, parent_id: int, child_id: int
) -> None:
    target = ENTITIES[link.target]
    assert link.join is not None
    condition = sql.SQL(link.join).format(c=sql.Identifier("c"), p=sql.Placeholder("parent"))
    cur.execute(
        sql.SQL("SELECT 1 FROM {} c WHERE c.id = %(child)s AND {}").format(
            sql.Identifier(target.table), condition
        ),
        {"child": child_id, "parent": parent_id},
    )
    if cur.fetchone() is None:
        raise EntityNotFoundError(
            f"no {target.singular} {child_id} among the {link.name} of {entity.singular} "
            f"{parent_id}"
        )


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class Page:
    """A page of an entity collection.

    Attributes
    ----------
    value
        The entities in their JSON encoding.
    count
        The number matching the filter, when ``$count=true``.
    more
        Whether entities follow this page (the caller writes ``@iot.nextLink``).
    """

    value: list[dict[str, Any]]
    count: int | None
    more: bool


def read(target: Target, query: Query, *, base: str, url: str | None = None) -> Page:
    """Read the entities a resolved path addresses, as the query options say.

    Parameters
    ----------
    target
        From :func:`resolve`: a collection (possibly through a navigation property) or one
        entity (then the page holds it, or nothing).
    query
        From :func:`parse_query` for the target's entity set.
    base
        The service root URL (``http://host/v1.1``), for self and navigation links.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Page
        The entities, the count when asked, and whether more follow.

    Raises
    ------
    ParameterError
        If PostgreSQL refuses a value of the filter (a number out of range).
    """
    params = _Params()
    entity = target.entity
    conditions: list[sql.Composable] = []
    if target.id is not None:
        conditions.append(sql.SQL("t.id = {}").format(params.add(target.id, "bigint")))
    if target.parent is not None:
        _, link, parent_id = target.parent
        assert link.join is not None
        conditions.append(
            sql.SQL(link.join).format(c=sql.Identifier("t"), p=params.add(parent_id, "bigint"))
        )
    if query.filter is not None:
        conditions.append(_Compiler(params, "$filter").where(query.filter, entity, "t"))
    single = target.id is not None
    statement = _select(
        entity,
        query,
        params,
        conditions,
        limit=None if single else query.top + 1,
        offset=0 if single else query.skip,
        pinned=_pinned(target, query),
    )
    try:
        with cursor(url) as cur:
            cur.row_factory = dict_row
            count = None
            if query.count and not single:
                where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")
                cur.execute(
                    sql.SQL("SELECT count(*) AS n FROM {} t WHERE {}").format(
                        sql.Identifier(entity.table), where
                    ),
                    params.values,
                )
                count = int(cur.fetchone()["n"])  # type: ignore[index]
            cur.execute(statement, params.values)
            rows = cur.fetchall()
            more = not single and query.top > 0 and len(rows) > query.top
            rows = rows[: query.top] if not single else rows
            _expand(cur, entity, rows, query, base)
    except (psycopg.DataError, psycopg.errors.InvalidParameterValue) as exc:
        raise ParameterError(
            f"$filter: PostgreSQL refuses a value: {exc.diag.message_primary}", parameter="$filter"
        ) from None
    return Page([_represent(entity, row, query, base) for row in rows], count, more)


def explain(target: Target, query: Query, *, url: str | None = None) -> str:
    """Return PostgreSQL's plan of the statement :func:`read` runs for a collection.

    Parameters
    ----------
    target
        A collection, from :func:`resolve`.
    query
        Its options.
    url
        Database URL; the configured one by default.

    Returns
    -------
    str
        ``EXPLAIN`` output, one line per plan node (for checking index use and pruning).
    """
    params = _Params()
    conditions: list[sql.Composable] = []
    if target.parent is not None:
        _, link, parent_id = target.parent
        assert link.join is not None
        conditions.append(
            sql.SQL(link.join).format(c=sql.Identifier("t"), p=params.add(parent_id, "bigint"))
        )
    if query.filter is not None:
        conditions.append(_Compiler(params, "$filter").where(query.filter, target.entity, "t"))
    statement = _select(
        target.entity,
        query,
        params,
        conditions,
        limit=query.top + 1,
        offset=query.skip,
        pinned=_pinned(target, query),
    )
    with cursor(url) as cur:
        cur.execute(sql.SQL("EXPLAIN ") + statement, params.values)
        return "\n".join(str(row[0]) for row in cur.fetchall())


def _columns(entity: Entity, query: Query, alias: str) -> sql.Composable:
    pairs = list(entity.columns)
    if entity.name == "Datastreams" and (query.select is None or "phenomenonTime" in query.select):
        pairs += [("time_start", _DS_START), ("time_end", _DS_END)]
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(
            sql.SQL(template).format(t=sql.Identifier(alias)), sql.Identifier(key)
        )
        for key, template in pairs
    )


def _pinned(target: Target, query: Query) -> bool:
    """Whether observations read are of one datastream (by the path or the filter)."""
    through = target.parent is not None and target.parent[0] == "Datastreams"
    return through or _pins_datastream(query.filter)


def _pins_datastream(node: ast._Node | None) -> bool:
    """Whether a filter holds ``Datastream/id eq n`` among its top-level conjuncts."""
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, ast.BoolOp) and isinstance(item.op, ast.And):
            pending += [item.left, item.right]
        elif isinstance(item, ast.Compare) and isinstance(item.comparator, ast.Eq):
            for side, other in ((item.left, item.right), (item.right, item.left)):
                if (
                    isinstance(side, ast.Attribute)
                    and side.attr == "id"
                    and isinstance(side.owner, ast.Identifier)
                    and side.owner.name == "Datastream"
                    and not side.owner.namespace
                    and isinstance(other, ast._Literal)
                ):
                    return True
    return False


def _order(
    entity: Entity, query: Query, params: _Params, alias: str, *, pinned: bool = False
) -> sql.Composable:
    """Write ORDER BY: the query's keys, then tie-breakers for a stable order.

    Observations of one datastream are in time order by default (their primary key); all
    observations, in ``@iot.id`` order (an index on every partition), unless ``$orderby``
    says otherwise: no index orders all partitions by time.
    """
    keys: list[sql.Composable] = []
    seen: list[sql.Composable] = []
    compiler = _Compiler(params, "$orderby")
    for node, descending in query.orderby:
        value = compiler.order_key(node, entity, alias)
        if value.sql in seen:
            continue
        seen.append(value.sql)
        direction = "DESC" if descending else "ASC"
        if value.nullable:
            direction += " NULLS LAST" if descending else " NULLS FIRST"
        keys.append(sql.SQL("{} {}").format(value.sql, sql.SQL(direction)))
    last_descending = bool(query.orderby) and query.orderby[-1][1]
    order = entity.order
    if entity.name == "Observations" and not query.orderby and not pinned:
        order = ("{t}.id",)
    for template in order:  # tie-breakers: a stable order for paging
        column = sql.SQL(template).format(t=sql.Identifier(alias))
        if column not in seen:
            seen.append(column)
            keys.append(
                sql.SQL("{} {}").format(column, sql.SQL("DESC" if last_descending else "ASC"))
            )
    return sql.SQL(", ").join(keys)


def _select(
    entity: Entity,
    query: Query,
    params: _Params,
    conditions: Sequence[sql.Composable],
    *,
    limit: int | None,
    offset: int,
    alias: str = "t",
    extra: sql.Composable | None = None,
    pinned: bool = False,
) -> sql.Composed:
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")
    statement = sql.SQL("SELECT {}{} FROM {} {} WHERE {} ORDER BY {}").format(
        _columns(entity, query, alias),
        extra or sql.SQL(""),
        sql.Identifier(entity.table),
        sql.Identifier(alias),
        where,
        _order(entity, query, params, alias, pinned=pinned),
    )
    if limit is not None:
        statement += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    if offset:
        statement += sql.SQL(" OFFSET {}").format(sql.Literal(offset))
    return statement


def _expand(
    cur: psycopg.Cursor[Any],
    entity: Entity,
    rows: list[dict[str, Any]],
    query: Query,
    base: str,
) -> None:
    """Read the expansions of ``rows`` (one statement per navigation property and level)."""
    if not rows:
        return
    for name, sub in query.expand.items():
        link = entity.links[name]
        target = ENTITIES[link.target]
        params = _Params()
        if not link.many:
            assert link.fk is not None
            ids = sorted({row[link.fk] for row in rows if row.get(link.fk) is not None})
            conditions: list[sql.Composable] = [
                sql.SQL("t.id = ANY({})").format(params.add(ids, "bigint[]"))
            ]
            if sub.filter is not None:
                conditions.append(_Compiler(params, "$expand").where(sub.filter, target, "t"))
            cur.execute(
                _select(target, sub, params, conditions, limit=None, offset=0), params.values
            )
            found = cur.fetchall()
            _expand(cur, target, found, sub, base)
            by_id = {child["id"]: child for child in found}
            for row in rows:
                child = by_id.get(row.get(link.fk))
                row[f"_expanded_{name}"] = child
            continue
        assert link.join is not None
        parent_ids = sorted({row["id"] for row in rows})
        conditions = [sql.SQL(link.join).format(c=sql.Identifier("t"), p=sql.SQL("_p.pid"))]
        if sub.filter is not None:
            conditions.append(_Compiler(params, "$expand").where(sub.filter, target, "t"))
        pinned = name == "Observations" and entity.name == "Datastreams"
        order = _order(target, sub, params, "t", pinned=pinned)
        inner = _select(
            target,
            sub,
            params,
            conditions,
            limit=sub.top + 1,
            offset=sub.skip,
            pinned=pinned,
            extra=sql.SQL(", row_number() OVER (ORDER BY {}) AS _n").format(order),
        )
        statement = sql.SQL(
            "SELECT _p.pid AS _parent, _x.* FROM unnest({}) AS _p(pid) "
            "CROSS JOIN LATERAL ({}) AS _x ORDER BY _p.pid, _x._n"
        ).format(params.add(parent_ids, "bigint[]"), inner)
        cur.execute(statement, params.values)
        children = cur.fetchall()
        _expand(cur, target, children, sub, base)
        grouped: dict[int, list[dict[str, Any]]] = {pid: [] for pid in parent_ids}
        for child in children:
            grouped[child["_parent"]].append(child)
        counts: dict[int, int] = {}
        if sub.count:
            count_params = _Params()
            count_conditions: list[sql.Composable] = [
                sql.SQL(link.join).format(c=sql.Identifier("t"), p=sql.SQL("_p.pid"))
            ]
            if sub.filter is not None:
                count_conditions.append(
                    _Compiler(count_params, "$expand").where(sub.filter, target, "t")
                )
            cur.execute(
                sql.SQL(
                    "SELECT _p.pid AS pid, (SELECT count(*) FROM {} t WHERE {}) AS n "
                    "FROM unnest({}) AS _p(pid)"
                ).format(
                    sql.Identifier(target.table),
                    sql.SQL(" AND ").join(count_conditions),
                    count_params.add(parent_ids, "bigint[]"),
                ),
                count_params.values,
            )
            counts = {r["pid"]: int(r["n"]) for r in cur.fetchall()}
        for row in rows:
            members = grouped[row["id"]]
            row[f"_expanded_{name}"] = members[: sub.top]
            row[f"_more_{name}"] = sub.top > 0 and len(members) > sub.top
            if sub.count:
                row[f"_count_{name}"] = counts.get(row["id"], 0)


def _represent(entity: Entity, row: dict[str, Any], query: Query, base: str) -> dict[str, Any]:
    """Write one entity in SensorThings' JSON encoding, with its expansions."""
    self_link = f"{base}/{entity.name}({row['id']})"
    selected = query.select
    out: dict[str, Any] = {}
    if selected is None or "id" in selected:
        out["@iot.id"] = row["id"]
    if selected is None or "@iot.selfLink" in selected:
        out["@iot.selfLink"] = self_link
    values = _values(entity, row)
    for name in _OUTPUT[entity.name]:
        if selected is not None and name not in selected:
            continue
        value = values.get(name)
        if (
            value is None
            and selected is None
            and name in _OMIT_NULL
            and (entity.name, name) not in _OMIT_NULL_EXCEPT
        ):
            continue
        out[name] = value
    for name in entity.links:
        if name in query.expand:
            sub = query.expand[name]
            target = ENTITIES[entity.links[name].target]
            expanded = row.get(f"_expanded_{name}")
            if entity.links[name].many:
                if sub.count:
                    out[f"{name}@iot.count"] = row.get(f"_count_{name}", 0)
                out[name] = [_represent(target, child, sub, base) for child in expanded or []]
                if row.get(f"_more_{name}"):
                    next_skip = sub.skip + sub.top
                    out[f"{name}@iot.nextLink"] = (
                        f"{self_link}/{name}?{sub.query_string(skip=next_skip)}"
                    )
            else:
                out[name] = None if expanded is None else _represent(target, expanded, sub, base)
        elif selected is None or name in selected:
            out[f"{name}@iot.navigationLink"] = f"{self_link}/{name}"
    return out


def _values(entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON value of each property of a row."""
    name = entity.name
    if name == "Things":
        properties = dict(row["properties"] or {})
        if row.get("layer") is not None:
            properties |= {"layer": row["layer"], "feature_id": row["feature_id"]}
        return {
            "name": row["name"],
            "description": row["description"],
            "properties": properties or row["properties"],
        }
    if name in ("Locations", "FeaturesOfInterest"):
        key = "location" if name == "Locations" else "feature"
        return {
            "name": row["name"],
            "description": row["description"],
            "encodingType": row["encoding_type"],
            key: row[key],
            "properties": row["properties"],
        }
    if name == "HistoricalLocations":
        return {"time": iso(row["time"])}
    if name == "Sensors":
        return {
            "name": row["name"],
            "description": row["description"],
            "encodingType": row["encoding_type"],
            "metadata": row["metadata"],
            "properties": row["properties"],
        }
    if name == "ObservedProperties":
        return {
            "name": row["name"],
            "definition": row["definition"],
            "description": row["description"],
            "properties": row["properties"],
        }
    if name == "Datastreams":
        start, end = row.get("time_start"), row.get("time_end")
        return {
            "name": row["name"],
            "description": row["description"],
            "unitOfMeasurement": row["unit_of_measurement"],
            "observationType": row["observation_type"],
            "observedArea": row["observed_area"],
            "phenomenonTime": f"{iso(start)}/{iso(end)}" if start and end else None,
            "resultTime": None,
            "properties": row["properties"],
        }
    time = iso(row["phenomenon_time"])
    if row["phenomenon_time_end"] is not None:
        time = f"{time}/{iso(row['phenomenon_time_end'])}"
    result = row["result_json"] if row["result"] is None else row["result"]
    if row["result"] is not None and row.get("observation_type") == COUNT:
        result = int(row["result"])
    return {
        "phenomenonTime": time,
        "resultTime": iso(row["result_time"]) if row["result_time"] else None,
        "result": result,
        "resultQuality": row["result_quality"],
        "parameters": row["parameters"],
    }


def read_property(target: Target, *, url: str | None = None) -> Any:
    """Read the property (or JSON member) a path addresses.

    Parameters
    ----------
    target
        From :func:`resolve`, with ``property`` set.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Any
        The JSON value; None for a null or a missing JSON member.

    Raises
    ------
    EntityNotFoundError
        If the entity does not exist.
    """
    assert target.id is not None
    page = read(
        Target(target.entity, target.id),
        parse_query(target.entity.name, []),
        base="",
        url=url,
    )
    if not page.value:
        raise EntityNotFoundError(f"no {target.entity.singular} {target.id}")
    name, *members = target.property
    value = page.value[0].get("@iot.id" if name == "id" else name)
    for member in members:
        value = value.get(member) if isinstance(value, dict) else None
    return value


def observation_json(stored: StoredObservation, *, base: str) -> dict[str, Any]:
    """Write an observation the ingest stored in SensorThings' JSON encoding, with links.

    Parameters
    ----------
    stored
        As :func:`layers.observations.store_observations` reports it.
    base
        The service root URL.

    Returns
    -------
    dict
        ``@iot.id``, ``@iot.selfLink``, the properties and the navigation links.
    """
    self_link = f"{base}/Observations({stored.id})"
    body = stored.to_json()
    return {
        "@iot.id": stored.id,
        "@iot.selfLink": self_link,
        **{k: v for k, v in body.items() if k != "@iot.id"},
        "Datastream@iot.navigationLink": f"{self_link}/Datastream",
        "FeatureOfInterest@iot.navigationLink": f"{self_link}/FeatureOfInterest",
    }


def stored_at(
    keys: Sequence[tuple[int, datetime]], *, url: str | None = None
) -> dict[tuple[int, datetime], tuple[int, Any]]:
    """Find stored observations by datastream and phenomenonTime (what makes one a duplicate).

    Parameters
    ----------
    keys
        ``(datastream id, phenomenonTime)`` pairs, times timezone-aware.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        For each key stored: the observation's ``@iot.id`` and its result.
    """
    if not keys:
        return {}
    ids = [k[0] for k in keys]
    times = [k[1] for k in keys]
    with cursor(url) as cur:
        cur.execute(
            """
            SELECT o.id, o.datastream_id, o.phenomenon_time, o.result, o.result_json
            FROM sta_observations o
            JOIN unnest(%(ids)s::bigint[], %(times)s::timestamptz[]) AS k(d, t)
                ON o.datastream_id = k.d AND o.phenomenon_time = k.t
            WHERE o.phenomenon_time BETWEEN %(low)s AND %(high)s
            """,
            {"ids": ids, "times": times, "low": min(times), "high": max(times)},
        )
        return {
            (int(r[1]), r[2]): (int(r[0]), r[4] if r[3] is None else r[3]) for r in cur.fetchall()
        }


def same_result(stored: Any, given: Any) -> bool:
    """Whether a stored result and a given one are the same value (5 and 5.0 are).

    Parameters
    ----------
    stored, given
        JSON values.

    Returns
    -------
    bool
        True if equal, numbers compared as numbers.
    """
    numbers = (int, float)
    if (
        isinstance(stored, numbers)
        and isinstance(given, numbers)
        and not isinstance(stored, bool)
        and not isinstance(given, bool)
    ):
        return float(stored) == float(given)
    return bool(stored == given and type(stored) is type(given))


# ---------------------------------------------------------------------------------------------
# writing


@dataclass
class Created:
    """What :func:`create` made.

    Attributes
    ----------
    id
        The new entity's ``@iot.id``.
    readings
        Observations the request carried inline (in Datastreams), checked against their
        datastream's type, for the caller to ingest through the one ingest path.
    """

    id: int
    readings: list[Reading] = field(default_factory=list)


#: Properties a client may write, per entity set (others computed, or navigation).
_WRITABLE: dict[str, tuple[str, ...]] = {
    "Things": ("name", "description", "properties"),
    "Locations": ("name", "description", "encodingType", "location", "properties"),
    "HistoricalLocations": ("time",),
    "Sensors": ("name", "description", "encodingType", "metadata", "properties"),
    "ObservedProperties": ("name", "definition", "description", "properties"),
    "Datastreams": (
        "name",
        "description",
        "unitOfMeasurement",
        "observationType",
        "observedArea",
        "properties",
    ),
    "FeaturesOfInterest": ("name", "description", "encodingType", "feature", "properties"),
}
#: Properties the service computes: ignored when a client sends them.
_COMPUTED = {"phenomenonTime", "resultTime"}
_UNIQUE_NAMES = {"Things", "Sensors", "ObservedProperties", "Datastreams"}


class _Writer:
    """One transaction's creations, updates and deletions."""

    def __init__(self, cur: psycopg.Cursor[Any], now: datetime) -> None:
        self.cur = cur
        self.now = now
        self.readings: list[Reading] = []
        self.datastreams_changed = False

    # -- helpers

    def one(self, query: str | sql.Composable, params: Any = None) -> Any:
        self.cur.execute(query, params)  # type: ignore[arg-type]
        row = self.cur.fetchone()
        return None if row is None else row[0]

    def check_keys(self, entity: Entity, body: Mapping[str, Any], where: str) -> None:
        allowed = {*_WRITABLE[entity.name], *entity.links, *_COMPUTED}
        for key in body:
            if key.startswith("@") or key.endswith("@iot.navigationLink") or key == "id":
                continue
            if key in ("MultiDatastreams", "TaskingCapabilities") and not body[key]:
                continue  # frost-sta-client sends these empty
            if key not in allowed:
                raise ParameterError(
                    f"{where}: a {entity.singular} has no property {key!r}; it takes "
                    f"{', '.join([*_WRITABLE[entity.name], *entity.links])}",
                    parameter=f"{where}.{key}",
                )

    def reference(self, entity_name: str, value: Any, where: str) -> int:
        """Return the id of a linked entity: an existing one (``{"@iot.id": n}``) or a new one."""
        entity = ENTITIES[entity_name]
        if not isinstance(value, Mapping):
            raise ParameterError(
                f'{where} must be a {entity.singular} object or {{"@iot.id": n}}',
                parameter=where,
            )
        if "@iot.id" in value:
            ident = value["@iot.id"]
            if isinstance(ident, str) and ident.isdigit():
                ident = int(ident)
            if not isinstance(ident, int) or isinstance(ident, bool) or not 0 < ident < 2**63:
                raise ParameterError(f"{where}: @iot.id must be an integer", parameter=where)
            found = self.one(
                sql.SQL("SELECT id FROM {} WHERE id = %s").format(sql.Identifier(entity.table)),
                (ident,),
            )
            if found is None:
                raise ParameterError(f"{where}: no {entity.singular} {ident}", parameter=where)
            return int(ident)
        return self.create(entity_name, value, where)

    def references(
        self, entity_name: str, body: Mapping[str, Any], key: str, where: str
    ) -> list[int]:
        value = body.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ParameterError(f"{where}.{key} must be a list", parameter=f"{where}.{key}")
        return [
            self.reference(entity_name, item, f"{where}.{key}[{n}]") for n, item in enumerate(value)
        ]

    # -- creation

    def create(self, entity_name: str, body: Any, where: str) -> int:
        entity = ENTITIES[entity_name]
        if not isinstance(body, Mapping):
            raise ParameterError(f"{where} must be a JSON object", parameter=where)
        if entity_name == "Observations":
            raise ParameterError(
                f"{where}: Observations are created in a Datastream's Observations",
                parameter=where,
            )
        self.check_keys(entity, body, where)
        values = self.properties(entity, body, where, creating=True)
        if entity_name in _UNIQUE_NAMES:
            self.unique_name(entity, values["name"], where)
        if entity_name == "Datastreams":
            for key, link_name in (
                ("thing_id", "Thing"),
                ("sensor_id", "Sensor"),
                ("observed_property_id", "ObservedProperty"),
            ):
                if body.get(link_name) is None:
                    raise ParameterError(
                        f"{where}: a Datastream needs a {link_name}",
                        parameter=f"{where}.{link_name}",
                    )
                values[key] = self.reference(
                    entity.links[link_name].target, body[link_name], f"{where}.{link_name}"
                )
            self.datastreams_changed = True
        if entity_name == "HistoricalLocations":
            if body.get("Thing") is None:
                raise ParameterError(
                    f"{where}: a HistoricalLocation needs a Thing", parameter=f"{where}.Thing"
                )
            values["thing_id"] = self.reference("Things", body["Thing"], f"{where}.Thing")
        new_id = self.insert(entity, values)
        self.link_children(entity, new_id, body, where, creating=True)
        return new_id

    def unique_name(self, entity: Entity, name: str, where: str, own: int | None = None) -> None:
        found = self.one(
            sql.SQL("SELECT id FROM {} WHERE name = %s AND id IS DISTINCT FROM %s").format(
                sql.Identifier(entity.table)
            ),
            (name, own),
        )
        if found is not None:
            raise EntityConflictError(
                f"{where}: a {entity.singular} named {name!r} exists already: "
                f"{entity.name}({found}); names of {entity.name} are unique here"
            )

    def insert(self, entity: Entity, values: dict[str, Any]) -> int:
        columns = list(values)
        placeholders = [self.placeholder(entity, c) for c in columns]
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            sql.Identifier(entity.table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(placeholders),
        )
        return int(self.one(statement, values))

    @staticmethod
    def placeholder(entity: Entity, column: str) -> sql.Composable:
        if column in ("geom", "observed_area"):
            return sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON({}), 4326)").format(
                sql.Placeholder(column)
            )
        return sql.Placeholder(column)

    def properties(
        self, entity: Entity, body: Mapping[str, Any], where: str, *, creating: bool
    ) -> dict[str, Any]:
        """Column values from a body's properties (all required ones when creating)."""
        out: dict[str, Any] = {}

        def text(key: str, column: str, *, required: bool = False, default: str = "") -> None:
            if key not in body:
                if creating:
                    if required:
                        raise ParameterError(
                            f"{where}: a {entity.singular} needs a {key}",
                            parameter=f"{where}.{key}",
                        )
                    out[column] = default
                return
            value = body[key]
            if value is None and not required:
                value = default
            if not isinstance(value, str) or (required and not value.strip()):
                raise ParameterError(
                    f"{where}: {key} must be a{' non-empty' if required else ''} string",
                    parameter=f"{where}.{key}",
                )
            out[column] = value

        def properties() -> None:
            if "properties" not in body:
                return
            value = body["properties"]
            if value is not None and not isinstance(value, Mapping):
                raise ParameterError(
                    f"{where}: properties must be a JSON object", parameter=f"{where}.properties"
                )
            value = dict(value) if value else None
            if entity.name == "Things":
                # an update that leaves both out keeps the twin feature the Thing is
                named = value is not None and ("layer" in value or "feature_id" in value)
                layer = value.pop("layer", None) if value else None
                feature = value.pop("feature_id", None) if value else None
                if (layer is None) != (feature is None):
                    raise ParameterError(
                        f"{where}: properties.layer and properties.feature_id (the twin "
                        "feature the Thing is) go together",
                        parameter=f"{where}.properties",
                    )
                if layer is not None and layer not in LAYERS:
                    raise ParameterError(
                        f"{where}: properties.layer {layer!r} is not a layer; the layers are "
                        f"{', '.join(LAYERS)}",
                        parameter=f"{where}.properties",
                    )
                if layer is not None:
                    # the Thing *is* that feature: one that is not (or no longer) in the
                    # layer would be a sensor whose readings act on nothing
                    current = self.one(
                        sql.SQL("SELECT 1 FROM {} WHERE id = %s AND valid_to IS NULL").format(
                            sql.Identifier(LAYERS[layer].table)
                        ),
                        (str(feature),),
                    )
                    if current is None:
                        raise ParameterError(
                            f"{where}: properties.feature_id {str(feature)[:80]!r} is no "
                            f"current feature of the {layer} layer",
                            parameter=f"{where}.properties",
                        )
                if creating or named:
                    out["layer"] = layer
                    out["feature_id"] = None if feature is None else str(feature)
            out["properties"] = Jsonb(value) if value else None

        def geometry(key: str, column: str, *, required: bool) -> None:
            if key not in body:
                if creating and required:
                    raise ParameterError(
                        f"{where}: a {entity.singular} needs a {key} (GeoJSON)",
                        parameter=f"{where}.{key}",
                    )
                return
            out[column] = _geojson(body[key], f"{where}.{key}", required=required)

        text("name", "name", required=True)
        if entity.name != "HistoricalLocations":
            text("description", "description")
        if entity.name in ("Locations", "FeaturesOfInterest", "Sensors"):
            default = "text/html" if entity.name == "Sensors" else GEOJSON
            text("encodingType", "encoding_type", default=default)
            encoding = out.get("encoding_type")
            if entity.name != "Sensors" and encoding is not None and encoding not in _GEOJSON_TYPES:
                raise ParameterError(
                    f"{where}: encodingType {encoding!r} is not GeoJSON ({GEOJSON}); "
                    "geometries are stored as GeoJSON",
                    parameter=f"{where}.encodingType",
                )
        if entity.name == "Locations":
            geometry("location", "geom", required=True)
        if entity.name == "FeaturesOfInterest":
            geometry("feature", "geom", required=True)
        if entity.name == "Sensors":
            text("metadata", "metadata")
        if entity.name == "ObservedProperties":
            text("definition", "definition")
        if entity.name == "Datastreams":
            if "unitOfMeasurement" in body or creating:
                unit = body.get("unitOfMeasurement")
                if not isinstance(unit, Mapping) or not all(
                    isinstance(v, str | None) for v in unit.values()
                ):
                    raise ParameterError(
                        f"{where}: unitOfMeasurement must be an object of name, symbol and "
                        "definition (strings)",
                        parameter=f"{where}.unitOfMeasurement",
                    )
                out["unit_of_measurement"] = Jsonb(dict(unit))
            if "observationType" in body or creating:
                kind = body.get("observationType")
                if kind not in OBSERVATION_TYPES:
                    raise ParameterError(
                        f"{where}: observationType {str(kind)[:80]!r} is not one of "
                        f"{', '.join(OBSERVATION_TYPES)}",
                        parameter=f"{where}.observationType",
                    )
                out["observation_type"] = kind
            geometry("observedArea", "observed_area", required=False)
        if entity.name == "HistoricalLocations":
            out.pop("name", None)
            if "time" in body or creating:
                try:
                    out["time"] = parse_time(body.get("time"), name="time")
                except ReadingError as exc:
                    raise ParameterError(f"{where}: {exc}", parameter=f"{where}.time") from None
        properties()
        return out

    def link_children(
        self, entity: Entity, own_id: int, body: Mapping[str, Any], where: str, *, creating: bool
    ) -> None:
        """Create or link what a body names in the entity's collections."""
        name = entity.name
        if name == "Things":
            locations = self.references("Locations", body, "Locations", where)
            if locations:
                self.place(own_id, locations)
            for n, item in enumerate(body.get("Datastreams") or []):
                self.child(item, "Datastreams", {"Thing": own_id}, f"{where}.Datastreams[{n}]")
            for n, item in enumerate(body.get("HistoricalLocations") or []):
                self.child(
                    item,
                    "HistoricalLocations",
                    {"Thing": own_id},
                    f"{where}.HistoricalLocations[{n}]",
                )
        elif name == "Locations":
            for thing in self.references("Things", body, "Things", where):
                self.place(thing, [own_id])
            for history in self.references(
                "HistoricalLocations", body, "HistoricalLocations", where
            ):
                self.cur.execute(
                    "INSERT INTO sta_location_historical_locations (location_id, "
                    "historical_location_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (own_id, history),
                )
        elif name == "HistoricalLocations":
            for location in self.references("Locations", body, "Locations", where):
                self.cur.execute(
                    "INSERT INTO sta_location_historical_locations (location_id, "
                    "historical_location_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (location, own_id),
                )
        elif name in ("Sensors", "ObservedProperties"):
            back = "Sensor" if name == "Sensors" else "ObservedProperty"
            for n, item in enumerate(body.get("Datastreams") or []):
                self.child(item, "Datastreams", {back: own_id}, f"{where}.Datastreams[{n}]")
        elif name == "Datastreams":
            observations = body.get("Observations")
            if observations and not creating:
                raise ParameterError(
                    f"{where}: Observations are added by POST to the Datastream's Observations",
                    parameter=f"{where}.Observations",
                )
            if observations is not None and not isinstance(observations, list):
                raise ParameterError(
                    f"{where}.Observations must be a list", parameter=f"{where}.Observations"
                )
            kind = self.one("SELECT observation_type FROM sta_datastreams WHERE id = %s", (own_id,))
            for n, item in enumerate(observations or []):
                place = f"{where}.Observations[{n}]"
                try:
                    reading = reading_from_json(item, datastream_id=own_id, now=self.now)
                    check_result(reading, kind)
                except ReadingError as exc:
                    raise ParameterError(
                        f"{place}: {exc}", parameter=f"{place}.{exc.parameter or 'body'}"
                    ) from None
                self.readings.append(reading)
        elif name == "FeaturesOfInterest" and body.get("Observations"):
            raise ParameterError(
                f"{where}: Observations are created in a Datastream's Observations",
                parameter=f"{where}.Observations",
            )

    def child(self, item: Any, entity_name: str, back: dict[str, int], where: str) -> None:
        """Create a member of a collection linked back, or move an existing one there."""
        entity = ENTITIES[entity_name]
        if isinstance(item, Mapping) and "@iot.id" in item:
            child_id = self.reference(entity_name, item, where)
            for link_name, parent_id in back.items():
                fk = entity.links[link_name].fk
                assert fk is not None
                self.cur.execute(
                    sql.SQL("UPDATE {} SET {} = %s WHERE id = %s").format(
                        sql.Identifier(entity.table), sql.Identifier(fk)
                    ),
                    (parent_id, child_id),
                )
            return
        if not isinstance(item, Mapping):
            raise ParameterError(f"{where} must be a JSON object", parameter=where)
        self.create(entity_name, {**item, **{k: {"@iot.id": v} for k, v in back.items()}}, where)

    def place(self, thing_id: int, location_ids: list[int]) -> None:
        """Make locations a Thing's current ones, with a HistoricalLocation now (18-088 8.2.3)."""
        self.cur.execute(
            "SELECT location_id FROM sta_thing_locations WHERE thing_id = %s", (thing_id,)
        )
        if {r[0] for r in self.cur.fetchall()} == set(location_ids):
            return  # where it is already: no new history
        self.cur.execute("DELETE FROM sta_thing_locations WHERE thing_id = %s", (thing_id,))
        for location in dict.fromkeys(location_ids):
            self.cur.execute(
                "INSERT INTO sta_thing_locations (thing_id, location_id) VALUES (%s, %s)",
                (thing_id, location),
            )
        history = self.one(
            "INSERT INTO sta_historical_locations (thing_id, time) VALUES (%s, %s) RETURNING id",
            (thing_id, self.now),
        )
        for location in dict.fromkeys(location_ids):
            self.cur.execute(
                "INSERT INTO sta_location_historical_locations (location_id, "
                "historical_location_id) VALUES (%s, %s)",
                (location, history),
            )

    # -- update

    def update(self, entity: Entity, own_id: int, body: Mapping[str, Any]) -> None:
        where = entity.singular
        self.check_keys(entity, body, where)
        for key, value in body.items():
            if key in entity.links and isinstance(value, Mapping | list):
                items = value if isinstance(value, list) else [value]
                for item in items:
                    if not isinstance(item, Mapping) or "@iot.id" not in item:
                        raise ParameterError(
                            f'{key}: an update links entities ({{"@iot.id": n}}); it does not '
                            "create them",
                            parameter=f"{where}.{key}",
                        )
        values = self.properties(entity, body, where, creating=False)
        if "name" in values and entity.name in _UNIQUE_NAMES:
            self.unique_name(entity, values["name"], where, own=own_id)
        for key, link in entity.links.items():
            if key not in body or link.many or body[key] is None:
                continue
            assert link.fk is not None
            values[link.fk] = self.reference(link.target, body[key], f"{where}.{key}")
        if entity.name == "Datastreams":
            self.datastreams_changed = True
        if values:
            statement = sql.SQL("UPDATE {} SET {} WHERE id = {}").format(
                sql.Identifier(entity.table),
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(c), self.placeholder(entity, c))
                    for c in values
                ),
                sql.Placeholder("_id"),
            )
            self.cur.execute(statement, {**values, "_id": own_id})
        if entity.name == "Things":
            locations = self.references("Locations", body, "Locations", where)
            if locations:
                self.place(own_id, locations)
            for n, item in enumerate(body.get("Datastreams") or []):
                self.child(item, "Datastreams", {"Thing": own_id}, f"{where}.Datastreams[{n}]")
        elif entity.name in ("Locations", "HistoricalLocations"):
            self.link_children(entity, own_id, body, where, creating=False)

    # -- deletion

    def delete(self, entity: Entity, own_id: int) -> None:
        name = entity.name
        datastreams: list[int] = []
        if name == "Things":
            self.cur.execute("SELECT id FROM sta_datastreams WHERE thing_id = %s", (own_id,))
            datastreams = [r[0] for r in self.cur.fetchall()]
        elif name == "Sensors":
            self.cur.execute("SELECT id FROM sta_datastreams WHERE sensor_id = %s", (own_id,))
            datastreams = [r[0] for r in self.cur.fetchall()]
        elif name == "ObservedProperties":
            self.cur.execute(
                "SELECT id FROM sta_datastreams WHERE observed_property_id = %s", (own_id,)
            )
            datastreams = [r[0] for r in self.cur.fetchall()]
        elif name == "Datastreams":
            datastreams = [own_id]
        elif name == "Locations":
            self.cur.execute(
                "DELETE FROM sta_historical_locations WHERE id IN (SELECT historical_location_id "
                "FROM sta_location_historical_locations WHERE location_id = %s)",
                (own_id,),
            )
        elif name == "FeaturesOfInterest":
            self.cur.execute(
                "DELETE FROM sta_observations WHERE feature_of_interest_id = %s", (own_id,)
            )
        if datastreams:
            self.cur.execute(
                "DELETE FROM sta_observations WHERE datastream_id = ANY(%s)", (datastreams,)
            )
            self.cur.execute("DELETE FROM sta_datastreams WHERE id = ANY(%s)", (datastreams,))
            self.datastreams_changed = True
        self.cur.execute(
            sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(entity.table)), (own_id,)
        )


def _geojson(value: Any, where: str, *, required: bool) -> str | None:
    """Check a GeoJSON geometry (or a Feature holding one); return the geometry as text."""
    if value is None and not required:
        return None
    if isinstance(value, Mapping) and value.get("type") == "Feature":
        value = value.get("geometry")
    try:
        if not isinstance(value, Mapping):
            raise ValueError("not a JSON object")
        shape = shapely.geometry.shape(dict(value))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise ParameterError(
            f"{where} must be a GeoJSON geometry (EPSG:4326): {exc}", parameter=where
        ) from None
    except shapely.errors.ShapelyError as exc:
        raise ParameterError(f"{where} is not a valid geometry: {exc}", parameter=where) from None
    if shape.is_empty:
        raise ParameterError(f"{where} is an empty geometry", parameter=where)
    bounds = shape.bounds
    if not (-180 <= bounds[0] <= bounds[2] <= 180 and -90 <= bounds[1] <= bounds[3] <= 90):
        raise ParameterError(
            f"{where} is not in EPSG:4326 (longitude, latitude in degrees)", parameter=where
        )
    return json.dumps(shapely.geometry.mapping(shape))


@contextmanager
def _transaction(url: str | None) -> Iterator[_Writer]:
    try:
        with get_engine(url).begin() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                yield _Writer(cur, datetime.now(UTC))
    except psycopg.errors.UniqueViolation as exc:
        raise EntityConflictError(
            f"the entity conflicts with one stored: {exc.diag.message_detail or exc}"
        ) from None
    except psycopg.errors.ForeignKeyViolation as exc:
        raise EntityConflictError(
            f"the entity is still linked: {exc.diag.message_detail or exc}"
        ) from None
    except (psycopg.errors.CheckViolation, psycopg.DataError) as exc:
        raise ParameterError(f"the store refuses a value: {exc.diag.message_primary}") from None


@contextmanager
def _relative(root: str) -> Iterator[None]:
    """Name a refused field from the body's root: ``Datastreams[0].name``, not ``Thing...``."""
    try:
        yield
    except ParameterError as exc:
        if exc.parameter and exc.parameter.startswith(root + "."):
            exc.parameter = exc.parameter[len(root) + 1 :]
        raise


def _run(url: str | None, work: Callable[[_Writer], Any]) -> tuple[Any, _Writer]:
    with _transaction(url) as writer:
        result = work(writer)
    if writer.datastreams_changed:
        forget_datastreams(url)
    return result, writer


def create(
    entity_name: str,
    body: Any,
    *,
    parent: tuple[str, Link, int] | None = None,
    url: str | None = None,
) -> Created:
    """Create an entity with a deep insert, in one transaction (OGC 18-088 section 10.2).

    Parameters
    ----------
    entity_name
        The entity set (not Observations: those go through the ingest).
    body
        The entity's JSON: properties, and related entities inline or as
        ``{"@iot.id": n}`` links. A Thing's ``properties.layer`` and
        ``properties.feature_id`` name the twin feature it is.
    parent
        When posted to a navigation collection (``Things(1)/Datastreams``): the parent's
        entity set, the navigation property and the parent's id; the new entity is linked to it.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Created
        The new id, and the observations the body carried inline, checked, not yet stored.

    Raises
    ------
    ParameterError
        If a property is missing or malformed, or a linked entity does not exist (nothing is
        created).
    EntityConflictError
        If a name that is unique here (Things, Sensors, ObservedProperties, Datastreams) is
        taken.
    """
    if not isinstance(body, Mapping):
        raise ParameterError("the body must be a JSON object", parameter="body")
    body = dict(body)
    if parent is not None:
        _, link, parent_id = parent
        reverse = ENTITIES[link.target].links[link.reverse or ""]
        if reverse.many:
            body[reverse.name] = [*(body.get(reverse.name) or []), {"@iot.id": parent_id}]
        else:
            body[reverse.name] = {"@iot.id": parent_id}
    entity = ENTITIES[entity_name]
    with _relative(entity.singular):
        new_id, writer = _run(url, lambda w: w.create(entity_name, body, entity.singular))
    return Created(new_id, writer.readings)


def update(entity_name: str, entity_id: int, body: Any, *, url: str | None = None) -> None:
    """Update an entity's properties and links with a merge (PATCH, OGC 18-088 section 10.3).

    Parameters
    ----------
    entity_name
        The entity set.
    entity_id
        The entity.
    body
        The properties to replace, and links (``{"@iot.id": n}``) to set.
    url
        Database URL; the configured one by default.

    Raises
    ------
    MethodNotAllowedError
        For an Observation (observations are never updated in place).
    EntityNotFoundError
        If the entity does not exist.
    ParameterError
        If a property is malformed, or the body creates related entities.
    EntityConflictError
        If a unique name is taken.
    """
    if entity_name == "Observations":
        raise MethodNotAllowedError("observations are never updated in place")
    if not isinstance(body, Mapping):
        raise ParameterError("the body must be a JSON object", parameter="body")
    entity = ENTITIES[entity_name]

    def work(writer: _Writer) -> None:
        _exists(writer.cur, entity, entity_id)
        writer.update(entity, entity_id, body)

    with _relative(entity.singular):
        _run(url, work)


def delete(entity_name: str, entity_id: int, *, url: str | None = None) -> None:
    """Delete an entity and what depends on it (OGC 18-088 section 10.4, table 25).

    Deleting a Thing, Sensor or ObservedProperty deletes its Datastreams; a Datastream, its
    Observations; a Location, its HistoricalLocations; a FeatureOfInterest, its Observations.

    Parameters
    ----------
    entity_name
        The entity set.
    entity_id
        The entity.
    url
        Database URL; the configured one by default.

    Raises
    ------
    MethodNotAllowedError
        For an Observation (the store keeps what it received).
    EntityNotFoundError
        If the entity does not exist.
    """
    if entity_name == "Observations":
        raise MethodNotAllowedError("observations are kept as received; they are not deleted")
    entity = ENTITIES[entity_name]

    def work(writer: _Writer) -> None:
        _exists(writer.cur, entity, entity_id)
        writer.delete(entity, entity_id)

    _run(url, work)


def representation(
    entity_name: str, entity_id: int, *, base: str, url: str | None = None
) -> dict[str, Any]:
    """Return one entity in its JSON encoding (what a GET of its URL answers).

    Parameters
    ----------
    entity_name
        The entity set.
    entity_id
        The entity.
    base
        The service root URL.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        The entity.

    Raises
    ------
    EntityNotFoundError
        If it does not exist.
    """
    entity = ENTITIES[entity_name]
    page = read(Target(entity, entity_id), parse_query(entity_name, []), base=base, url=url)
    if not page.value:
        raise EntityNotFoundError(f"no {entity.singular} {entity_id}")
    return page.value[0]


def patchable(entity_name: str, entity_id: int, *, url: str | None = None) -> dict[str, Any]:
    """Return an entity's writable properties, the document a JSON Patch (RFC 6902) edits.

    Parameters
    ----------
    entity_name
        The entity set.
    entity_id
        The entity.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        Property name to value.

    Raises
    ------
    EntityNotFoundError
        If it does not exist.
    """
    body = representation(entity_name, entity_id, base="", url=url)
    writable = _WRITABLE.get(entity_name, ())
    return {k: v for k, v in body.items() if k in writable}


def writable(entity_name: str) -> tuple[str, ...]:
    """Return the properties a client writes for an entity set (PUT replaces all of them).

    Parameters
    ----------
    entity_name
        The entity set.

    Returns
    -------
    tuple of str
        JSON property names; none for Observations (never updated).
    """
    return _WRITABLE.get(entity_name, ())


def service_document(base: str) -> list[dict[str, str]]:
    """Return the ``value`` of the service root document: each entity set and its URL.

    Parameters
    ----------
    base
        The service root URL.

    Returns
    -------
    list of dict
        ``name`` and ``url`` per entity set.
    """
    return [{"name": name, "url": f"{base}/{name}"} for name in ENTITIES]


__all__ = [
    "DEFAULT_TOP",
    "ENTITIES",
    "MAX_TOP",
    "Created",
    "EntityConflictError",
    "EntityNotFoundError",
    "MethodNotAllowedError",
    "Page",
    "Query",
    "Target",
    "UnsupportedOptionError",
    "create",
    "delete",
    "explain",
    "observation_json",
    "parse_query",
    "patchable",
    "read",
    "read_property",
    "representation",
    "resolve",
    "same_result",
    "service_document",
    "stored_at",
    "update",
    "writable",
]
