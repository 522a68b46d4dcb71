"""The layer catalog: every layer the twin stores, its geometry and its typed attributes.

This module is the one place that says what a layer holds. Ingest validates against it,
queries read the columns it names, and a test checks that the migrated schema agrees with it.
Attributes not named here are kept in each row's ``props`` JSONB column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldKind = Literal["text", "int", "bigint", "float", "bool", "json", "timestamp"]

#: Columns every layer table has, in this order, besides the typed attributes.
COMMON_COLUMNS = ("vid", "id", "source", "valid_from", "valid_to", "props", "geom")
#: Derived columns the database keeps itself (after the typed attributes).
DERIVED_COLUMNS = ("geom_3857",)


@dataclass(frozen=True)
class Field:
    """A typed attribute of a layer.

    Parameters
    ----------
    name
        Column name in the layer table and key in input files.
    kind
        Value type: ``text``, ``int`` (32-bit), ``bigint`` (64-bit, for node ids), ``float``,
        ``bool``, ``json`` or ``timestamp`` (ISO 8601; without an offset it is taken as UTC).
    required
        Whether every feature must carry a non-null value.
    choices
        Allowed values, when the attribute is an enumeration.
    minimum
        Smallest allowed value of a numeric attribute.
    maximum
        Largest allowed value of a numeric attribute.
    description
        What the attribute means, with its unit.
    default
        Value stored when a feature does not give one.
    after
        Another attribute (a ``timestamp``) this one must be later than when both are given:
        the end of a time window after its start.
    """

    name: str
    kind: FieldKind
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    default: bool | int | float | str | None = None
    after: str | None = None


@dataclass(frozen=True)
class Layer:
    """A layer of the city: one PostGIS table of versioned features.

    Parameters
    ----------
    id
        Layer id, also the table name (``roads``, ``buildings`` ...).
    title
        Human title.
    geometry_types
        Geometry types accepted on input (``Point``, ``LineString``, ``Polygon`` ...).
    storage_type
        PostGIS geometry type of the ``geom`` column.
    fields
        Typed attributes.
    description
        What the layer holds.
    derived_from
        For a live, read-only layer (a view, see :data:`LIVE_LAYERS`): the stored layer its
        features are drawn from, whose extent it declares.
    """

    id: str
    title: str
    geometry_types: tuple[str, ...]
    storage_type: str
    fields: tuple[Field, ...] = field(default_factory=tuple)
    description: str = ""
    derived_from: str | None = None

    @property
    def read_only(self) -> bool:
        """Whether the layer is derived live state, never imported or edited."""
        return self.derived_from is not None

    @property
    def table(self) -> str:
        """Name of the PostGIS table holding the layer."""
        return self.id

    @property
    def field_names(self) -> tuple[str, ...]:
        """Names of the typed attributes, in column order."""
        return tuple(f.name for f in self.fields)


_STATUS = ("active", "inactive", "planned", "damaged", "out_of_service")
_NETWORKS = ("water", "gas", "sewer", "heat")

LAYERS: dict[str, Layer] = {
    layer.id: layer
    for layer in (
        Layer(
            "roads",
            "Roads",
            ("LineString",),
            "LineString",
            (
                Field("source_node", "bigint", True, description="Node id where the edge starts"),
                Field("target_node", "bigint", True, description="Node id where the edge ends"),
                Field("class", "text", True, description="Road class (OSM highway value)"),
                Field("lanes", "int", minimum=1, maximum=12, description="Number of lanes"),
                Field("maxspeed", "float", minimum=1, maximum=150, description="Speed limit, km/h"),
                Field(
                    "oneway",
                    "bool",
                    default=False,
                    description="Drivable only from source to target",
                ),
                Field("name", "text", description="Street name"),
            ),
            "Directed road edges between intersections (the traffic network).",
        ),
        Layer(
            "intersections",
            "Intersections",
            ("Point",),
            "Point",
            (
                Field("node_id", "bigint", True, description="Node id used by roads"),
                Field("signalised", "bool", description="Controlled by a traffic signal"),
                Field("elevation", "float", description="Ground elevation, m"),
            ),
            "Road network nodes: the ends of road edges.",
        ),
        Layer(
            "signals",
            "Traffic signals",
            ("Point",),
            "Point",
            (
                Field("node_id", "bigint", description="Intersection the signal controls"),
                Field("program", "text", description="Signal program id"),
                Field("cycle_s", "float", minimum=10, maximum=300, description="Cycle length, s"),
                Field("offset_s", "float", minimum=0, description="Offset, s"),
                Field("phases", "json", description="Phases: [{duration_s, state}]"),
            ),
            "Signalised intersections with their timing plan.",
        ),
        Layer(
            "pipelines",
            "Pipelines",
            ("LineString",),
            "LineString",
            (
                Field("network", "text", True, _NETWORKS, description="Utility network"),
                Field("diameter_mm", "float", minimum=1, maximum=5000, description="Diameter, mm"),
                Field("material", "text", description="Pipe material"),
                Field("depth_m", "float", minimum=0, maximum=100, description="Depth, m"),
                Field("install_year", "int", minimum=1800, maximum=2100),
                Field("status", "text", choices=_STATUS),
            ),
            "Underground pipes: water, gas, sewer and heat.",
        ),
        Layer(
            "pipe_nodes",
            "Pipe nodes",
            ("Point",),
            "Point",
            (
                Field(
                    "kind",
                    "text",
                    True,
                    ("valve", "hydrant", "junction", "pump", "source", "meter"),
                ),
                Field("network", "text", True, _NETWORKS),
                Field("status", "text", choices=("open", "closed", "inoperable", *_STATUS)),
                Field("elevation", "float", description="Ground elevation, m"),
            ),
            "Valves, hydrants, junctions, pumps, sources and meters of the pipe networks.",
        ),
        Layer(
            "power_lines",
            "Power lines",
            ("LineString",),
            "LineString",
            (
                Field(
                    "kind",
                    "text",
                    True,
                    ("line", "cable", "minor_line", "feeder", "service", "transformer"),
                    description="transformer: a transformer drawn as a branch between two buses",
                ),
                Field("voltage_kv", "float", minimum=0, maximum=1200, description="Voltage, kV"),
                Field("status", "text", choices=_STATUS),
            ),
            "Overhead lines and underground cables of the power grid.",
        ),
        Layer(
            "power_nodes",
            "Power nodes",
            ("Point",),
            "Point",
            (
                Field(
                    "kind",
                    "text",
                    True,
                    ("substation", "transformer", "switch", "consumer", "bus"),
                ),
                Field("voltage_kv", "float", minimum=0, maximum=1200, description="Voltage, kV"),
                Field("status", "text", choices=("closed", "open", *_STATUS)),
            ),
            "Substations, transformers, switches and consumers of the power grid.",
        ),
        Layer(
            "cameras",
            "Traffic cameras",
            ("Point",),
            "Point",
            (
                Field("heading", "float", minimum=0, maximum=360, description="Degrees from north"),
                Field("fov", "float", minimum=1, maximum=360, description="Field of view, degrees"),
                Field("range_m", "float", minimum=1, maximum=2000, description="Range, m"),
                Field("status", "text", choices=_STATUS),
                Field("owner", "text"),
            ),
            "Traffic and surveillance cameras.",
        ),
        Layer(
            "resources",
            "Emergency resources",
            ("Point",),
            "Point",
            (
                Field(
                    "kind",
                    "text",
                    True,
                    ("fire_station", "hospital", "police", "shelter", "depot", "vehicle"),
                ),
                Field("name", "text"),
                Field("capacity", "int", minimum=0),
                Field("status", "text", choices=("available", "busy", *_STATUS)),
            ),
            "Fire stations, hospitals, police, shelters, depots and vehicles.",
        ),
        Layer(
            "buildings",
            "Buildings",
            ("Polygon", "MultiPolygon"),
            "MultiPolygon",
            (
                Field("height_m", "float", minimum=0, maximum=1000, description="Height, m"),
                Field("levels", "int", minimum=0, maximum=200, description="Storeys above ground"),
                Field("use", "text", description="Use (OSM building value)"),
                Field("population", "int", minimum=0, description="Residents"),
                Field("name", "text"),
            ),
            "Building footprints with height, use and population.",
        ),
        Layer(
            "districts",
            "Districts",
            ("Polygon", "MultiPolygon"),
            "MultiPolygon",
            (
                Field("name", "text", True),
                Field("level", "int", minimum=0, maximum=12, description="Administrative level"),
                Field("population", "int", minimum=0),
            ),
            "Administrative districts and grid cells.",
        ),
        Layer(
            "incidents",
            "Incidents",
            ("Point", "Polygon", "MultiPolygon"),
            "Geometry",
            (
                Field("kind", "text", True, description="fire, flood, collision, burst_main ..."),
                Field("severity", "int", minimum=1, maximum=5),
                Field("status", "text", choices=("open", "closed")),
                Field("starts_at", "timestamp"),
                Field("ends_at", "timestamp"),
            ),
            "Incidents reported in the city.",
        ),
        Layer(
            "closures",
            "Closures",
            ("Point", "LineString", "MultiLineString", "Polygon", "MultiPolygon"),
            "Geometry",
            (
                Field("kind", "text", True, description="works, event, flood, incident ..."),
                Field("road_ids", "json", description="Closed road edge ids, if given by id"),
                Field("starts_at", "timestamp"),
                Field("ends_at", "timestamp", after="starts_at"),
            ),
            "Road closures with their time window.",
        ),
    )
}


#: Live, read-only layers: views over the live state with the columns of a layer table (one
#: current version per feature), served as collections and tiles beside :data:`LAYERS` but
#: never imported, edited or counted as stored layers. Their counter in ``layer_versions``
#: moves with what they are derived from (migration 0010).
LIVE_LAYERS: dict[str, Layer] = {
    layer.id: layer
    for layer in (
        Layer(
            "live_congestion",
            "Live congestion",
            ("LineString",),
            "LineString",
            (
                Field("name", "text", description="Street name"),
                Field("class", "text", description="Road class (OSM highway value)"),
                Field("speed_kmh", "float", description="Live speed observed, km/h"),
                Field(
                    "free_flow_kmh",
                    "float",
                    description="Free-flow speed: the road's maxspeed, else its class's, km/h",
                ),
                Field(
                    "congestion",
                    "float",
                    description="Congestion index: live speed / free-flow speed (1 free flow, "
                    "near 0 stopped)",
                ),
                Field("observed_at", "timestamp", description="When the speed was observed"),
                Field("expires_at", "timestamp", description="When it stops counting"),
            ),
            "Roads with a live speed from traffic detectors, and their congestion index "
            "(read-only, derived from live_speeds).",
            derived_from="roads",
        ),
    )
}

#: Every collection the API serves: the stored layers, then the live ones.
COLLECTIONS: dict[str, Layer] = {**LAYERS, **LIVE_LAYERS}


def get_collection(layer_id: str) -> Layer:
    """Return the catalog entry of a stored or live layer (anything served as a collection).

    Parameters
    ----------
    layer_id
        A layer id such as ``"roads"`` or ``"live_congestion"``.

    Returns
    -------
    Layer
        The layer definition.

    Raises
    ------
    KeyError
        With the list of known collections, if ``layer_id`` is not one of them.
    """
    try:
        return COLLECTIONS[layer_id]
    except KeyError:
        known = ", ".join(COLLECTIONS)
        raise KeyError(f"unknown layer {layer_id!r}; known layers: {known}") from None


def get_layer(layer_id: str) -> Layer:
    """Return the catalog entry of a layer.

    Parameters
    ----------
    layer_id
        A layer id such as ``"roads"``.

    Returns
    -------
    Layer
        The layer definition.

    Raises
    ------
    KeyError
        With the list of known layers, if ``layer_id`` is not one of them.
    """
    try:
        return LAYERS[layer_id]
    except KeyError:
        known = ", ".join(LAYERS)
        raise KeyError(f"unknown layer {layer_id!r}; known layers: {known}") from None
