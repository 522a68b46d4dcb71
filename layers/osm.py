"""OpenStreetMap files (.osm, .osm.pbf) mapped to the twin's layers.

Only what OSM actually maps is read here; nothing is invented. The mapping, layer by layer:

=============  ==============================================================================
roads          ways with a drivable ``highway`` (motorway ... residential, service,
               living_street, unclassified, the ``*_link`` roads), split into edges at shared
               nodes and at traffic signals; ``oneway=-1`` ways are reversed; roundabouts and
               motorways are one-way
intersections  the ends of those edges; ``signalised`` when the node is a traffic signal
signals        ``highway=traffic_signals`` nodes (no timing: OSM does not map it)
buildings      ``building=*`` areas (ways and multipolygons); ``height``, ``building:levels``
districts      ``boundary=administrative`` areas with ``admin_level`` >= 8
resources      ``amenity`` fire_station, hospital, police; ``emergency=assembly_point`` and
               ``social_facility=shelter`` as shelters (areas as their centroid; a node inside
               an area of the same kind is the same facility and is dropped)
cameras        ``man_made=surveillance`` nodes; ``camera:direction`` (else ``direction``) as heading
pipelines      ``man_made=pipeline`` with ``substance`` (or ``type``) gas, water, sewage or heat
pipe_nodes     ``emergency=fire_hydrant`` nodes (water hydrants)
power_lines    ``power`` line, cable, minor_line
power_nodes    ``power`` substation (node or area), transformer, switch
=============  ==============================================================================

Every feature keeps its OSM tags in ``osm`` (stored in ``props``) and an id of the form
``node/1``, ``way/2`` (roads: ``way/2/0``, the edge's index along the way), ``relation/3``.
A numeric tag outside the catalog's range (``lanes=0``, ``maxspeed=300``) is left out of the
typed attribute, and kept in ``osm``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import geopandas as gpd
import osmium
import shapely

from layers.catalog import LAYERS

DRIVABLE = frozenset(
    {
        "motorway",
        "trunk",
        "primary",
        "secondary",
        "tertiary",
        "unclassified",
        "residential",
        "living_street",
        "service",
        "motorway_link",
        "trunk_link",
        "primary_link",
        "secondary_link",
        "tertiary_link",
    }
)
MAPPED_LAYERS = (
    "roads",
    "intersections",
    "signals",
    "buildings",
    "districts",
    "resources",
    "cameras",
    "pipelines",
    "pipe_nodes",
    "power_lines",
    "power_nodes",
)
_SUBSTANCE = {
    "gas": "gas",
    "water": "water",
    "sewage": "sewer",
    "wastewater": "sewer",
    "heat": "heat",
    "hot_water": "heat",
}
_COMPASS = {
    name: i * 22.5
    for i, name in enumerate(
        [
            "N",
            "NNE",
            "NE",
            "ENE",
            "E",
            "ESE",
            "SE",
            "SSE",
            "S",
            "SSW",
            "SW",
            "WSW",
            "W",
            "WNW",
            "NW",
            "NNW",
        ]
    )
}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")


def _number(value: str | None) -> float | None:
    if not value:
        return None
    match = _NUMBER.match(value)
    return float(match.group(1)) if match else None


def parse_maxspeed(value: str | None) -> float | None:
    """Return a ``maxspeed`` tag in km/h (``"50"``, ``"30 mph"``, ``"FR:urban"``).

    Parameters
    ----------
    value
        The tag value.

    Returns
    -------
    float or None
        Speed in km/h, or None if the tag is missing or unreadable.
    """
    if not value:
        return None
    zones = {
        "urban": 50.0,
        "rural": 80.0,
        "motorway": 130.0,
        "living_street": 20.0,
        "walk": 7.0,
        "zone30": 30.0,
    }
    if ":" in value:
        return zones.get(value.split(":", 1)[1].lower())
    speed = _number(value)
    if speed is None:
        return None
    return round(speed * 1.609344, 1) if "mph" in value else speed


def _heading(value: str | None) -> float | None:
    if not value:
        return None
    if value.upper() in _COMPASS:
        return _COMPASS[value.upper()]
    number = _number(value)
    return None if number is None else number % 360


def _int(value: str | None) -> int | None:
    number = _number(value)
    return None if number is None else round(number)


def _voltage(tags: dict[str, str]) -> float | None:
    first = (tags.get("voltage") or "").split(";")[0]
    number = _number(first)
    return None if number is None else number / 1000.0


def _resource_kind(tags: dict[str, str]) -> str | None:
    amenity = tags.get("amenity")
    if amenity in ("fire_station", "hospital", "police"):
        return amenity
    if tags.get("emergency") == "assembly_point" or tags.get("social_facility") == "shelter":
        return "shelter"
    return None


def _resource(ident: str, kind: str, tags: dict[str, str], point: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "kind": kind,
        "name": tags.get("name"),
        "status": "available",
        "capacity": _int(tags.get("capacity") or tags.get("beds")),
        "osm": tags,
        "geometry": point,
    }


class _Collector:
    """One pass over the file, keeping what the layers need."""

    def __init__(self) -> None:
        self.ways: list[tuple[int, list[tuple[int, float, float]], dict[str, str]]] = []
        self.features: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.signal_nodes: dict[int, tuple[float, float, dict[str, str]]] = {}
        # (layer, kind, area) of facilities mapped as areas, to drop their duplicate nodes
        self.facility_areas: list[tuple[str, str, Any]] = []
        self.wkb = osmium.geom.WKBFactory()

    def node(self, n: osmium.osm.Node) -> None:
        tags = dict(n.tags)
        if not tags or not n.location.valid():
            return
        point = shapely.Point(n.location.lon, n.location.lat)
        ident = f"node/{n.id}"
        if tags.get("highway") == "traffic_signals":
            self.signal_nodes[n.id] = (n.location.lon, n.location.lat, tags)
        if tags.get("man_made") == "surveillance":
            self.features["cameras"].append(
                {
                    "id": ident,
                    "heading": _heading(tags.get("camera:direction") or tags.get("direction")),
                    "status": "active",
                    "owner": tags.get("operator"),
                    "osm": tags,
                    "geometry": point,
                }
            )
        if tags.get("emergency") == "fire_hydrant":
            self.features["pipe_nodes"].append(
                {
                    "id": ident,
                    "kind": "hydrant",
                    "network": "water",
                    "status": "open",
                    "osm": tags,
                    "geometry": point,
                }
            )
        if tags.get("power") in ("substation", "transformer", "switch"):
            self.features["power_nodes"].append(
                {
                    "id": ident,
                    "kind": tags["power"],
                    "voltage_kv": _voltage(tags),
                    "status": "open"
                    if tags.get("switch") == "open"
                    else "closed"
                    if tags["power"] == "switch"
                    else "active",
                    "osm": tags,
                    "geometry": point,
                }
            )
        kind = _resource_kind(tags)
        if kind:
            self.features["resources"].append(_resource(ident, kind, tags, point))

    def way(self, w: osmium.osm.Way) -> None:
        tags = dict(w.tags)
        highway = tags.get("highway")
        if highway in DRIVABLE and tags.get("area") != "yes":
            nodes = [(n.ref, n.lon, n.lat) for n in w.nodes if n.location.valid()]
            if len(nodes) >= 2:
                self.ways.append((w.id, nodes, tags))
            return
        line_kind = tags.get("power")
        network = _SUBSTANCE.get(tags.get("substance") or tags.get("type") or "")
        if line_kind in ("line", "cable", "minor_line") or (
            tags.get("man_made") == "pipeline" and network
        ):
            # a way leaving the extract keeps the part inside it
            coords = [(n.lon, n.lat) for n in w.nodes if n.location.valid()]
            if len(set(coords)) < 2:
                return
            line = shapely.LineString(coords)
            if line_kind in ("line", "cable", "minor_line"):
                self.features["power_lines"].append(
                    {
                        "id": f"way/{w.id}",
                        "kind": line_kind,
                        "voltage_kv": _voltage(tags),
                        "status": "active",
                        "osm": tags,
                        "geometry": line,
                    }
                )
            else:
                self.features["pipelines"].append(
                    {
                        "id": f"way/{w.id}",
                        "network": network,
                        "diameter_mm": _number(tags.get("diameter")),
                        "material": tags.get("material"),
                        "status": "active",
                        "depth_m": _number(tags.get("depth")),
                        "osm": tags,
                        "geometry": line,
                    }
                )

    def area(self, a: osmium.osm.Area) -> None:
        tags = dict(a.tags)
        ident = f"{'way' if a.from_way() else 'relation'}/{a.orig_id()}"
        wanted = (
            ("building" in tags and tags["building"] != "no")
            or tags.get("boundary") == "administrative"
            or _resource_kind(tags) is not None
            or tags.get("power") == "substation"
        )
        if not wanted:
            return
        try:
            shape = shapely.from_wkb(self.wkb.create_multipolygon(a))
        except (RuntimeError, osmium.InvalidLocationError):  # broken multipolygon
            return
        if "building" in tags and tags["building"] != "no":
            self.features["buildings"].append(
                {
                    "id": ident,
                    "height_m": _number(tags.get("height")),
                    "levels": _int(tags.get("building:levels")),
                    "use": tags["building"],
                    "name": tags.get("name"),
                    "osm": tags,
                    "geometry": shape,
                }
            )
        level = _int(tags.get("admin_level"))
        if tags.get("boundary") == "administrative" and level is not None and level >= 8:
            self.features["districts"].append(
                {
                    "id": ident,
                    "name": tags.get("name") or ident,
                    "level": level,
                    "population": _int(tags.get("population")),
                    "osm": tags,
                    "geometry": shape,
                }
            )
        kind = _resource_kind(tags)
        if kind:
            self.facility_areas.append(("resources", kind, shape))
            point = shape.representative_point()
            self.features["resources"].append(_resource(ident, kind, tags, point))
        if tags.get("power") == "substation":
            self.facility_areas.append(("power_nodes", "substation", shape))
            self.features["power_nodes"].append(
                {
                    "id": ident,
                    "kind": "substation",
                    "voltage_kv": _voltage(tags),
                    "status": "active",
                    "osm": tags,
                    "geometry": shape.representative_point(),
                }
            )


def _road_graph(collector: _Collector) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split drivable ways into edges at shared nodes and signals."""
    uses: Counter[int] = Counter()
    for _, nodes, _ in collector.ways:
        uses.update(ref for ref, _, _ in nodes)
        uses[nodes[0][0]] += 1
        uses[nodes[-1][0]] += 1
    split = {ref for ref, count in uses.items() if count >= 2} | set(collector.signal_nodes)
    edges: list[dict[str, Any]] = []
    ends: dict[int, tuple[float, float]] = {}
    for way_id, nodes, tags in collector.ways:
        oneway_tag = tags.get("oneway", "")
        reverse = oneway_tag == "-1"
        oneway = (
            reverse
            or oneway_tag in ("yes", "true", "1")
            or tags.get("junction") in ("roundabout", "circular")
            or (tags["highway"] == "motorway" and oneway_tag != "no")
        )
        start = 0
        index = 0
        for i in range(1, len(nodes)):
            if nodes[i][0] not in split and i != len(nodes) - 1:
                continue
            part = nodes[start : i + 1]
            start = i
            if len(part) < 2 or len({(x, y) for _, x, y in part}) < 2:
                continue
            if reverse:
                part = part[::-1]
            edges.append(
                {
                    "id": f"way/{way_id}/{index}",
                    "source_node": part[0][0],
                    "target_node": part[-1][0],
                    "class": tags["highway"],
                    "lanes": _int(tags.get("lanes")),
                    "maxspeed": parse_maxspeed(tags.get("maxspeed")),
                    "oneway": oneway,
                    "name": tags.get("name"),
                    "osm": tags,
                    "geometry": shapely.LineString([(x, y) for _, x, y in part]),
                }
            )
            index += 1
            for ref, x, y in (part[0], part[-1]):
                ends[ref] = (x, y)
    intersections = [
        {
            "id": f"node/{ref}",
            "node_id": ref,
            "signalised": ref in collector.signal_nodes,
            "geometry": shapely.Point(x, y),
        }
        for ref, (x, y) in sorted(ends.items())
    ]
    return edges, intersections


def _signals(collector: _Collector, intersections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    nodes = {row["node_id"] for row in intersections}
    tree_points = [row["geometry"] for row in intersections]
    tree = shapely.STRtree(tree_points) if tree_points else None
    out = []
    for ref, (lon, lat, tags) in sorted(collector.signal_nodes.items()):
        point = shapely.Point(lon, lat)
        node_id: int | None = ref if ref in nodes else None
        if node_id is None and tree is not None:
            nearest = int(tree.nearest(point))
            if shapely.distance(point, tree_points[nearest]) < 0.0005:  # about 50 m
                node_id = intersections[nearest]["node_id"]
        out.append({"id": f"node/{ref}", "node_id": node_id, "osm": tags, "geometry": point})
    return out


def _drop_nodes_inside_areas(collector: _Collector) -> None:
    """Drop a facility's node when an area of the same kind, mapped too, contains it."""
    for layer in ("resources", "power_nodes"):
        areas = [(kind, area) for name, kind, area in collector.facility_areas if name == layer]
        collector.features[layer] = [
            row
            for row in collector.features[layer]
            if not (
                row["id"].startswith("node/")
                and any(
                    kind == row["kind"] and area.contains(row["geometry"]) for kind, area in areas
                )
            )
        ]


def _within_limits(row: dict[str, Any], layer_id: str) -> dict[str, Any]:
    """Drop a tag value the catalog would refuse (lanes=0, maxspeed=300): it stays in ``osm``.

    One odd tag in a city's worth of OSM data should not reject the whole layer.
    """
    for spec in LAYERS[layer_id].fields:
        value = row.get(spec.name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if (spec.minimum is not None and value < spec.minimum) or (
            spec.maximum is not None and value > spec.maximum
        ):
            row[spec.name] = None
    return row


def read_osm(path: str | Path, layer_ids: list[str] | None = None) -> dict[str, gpd.GeoDataFrame]:
    """Read an OSM file into one GeoDataFrame per mapped layer (EPSG:4326).

    Parameters
    ----------
    path
        ``.osm`` or ``.osm.pbf`` file.
    layer_ids
        Layers wanted; all of :data:`MAPPED_LAYERS` by default.

    Returns
    -------
    dict of str to geopandas.GeoDataFrame
        Features per layer id, with ``id``, the layer's typed attributes, ``osm`` (tags)
        and ``geometry``.

    Raises
    ------
    ValueError
        If a requested layer is not one that OSM maps.
    """
    wanted = list(layer_ids or MAPPED_LAYERS)
    unmapped = [name for name in wanted if name not in MAPPED_LAYERS]
    if unmapped:
        raise ValueError(
            f"OpenStreetMap has no {', '.join(unmapped)} layer; it maps {', '.join(MAPPED_LAYERS)}"
        )
    collector = _Collector()
    processor = osmium.FileProcessor(str(path)).with_locations().with_areas()
    for obj in processor:
        if isinstance(obj, osmium.osm.Area):
            collector.area(obj)
        elif isinstance(obj, osmium.osm.Node):
            collector.node(obj)
        elif isinstance(obj, osmium.osm.Way):
            collector.way(obj)
    roads, intersections = _road_graph(collector)
    collector.features["roads"] = roads
    collector.features["intersections"] = intersections
    collector.features["signals"] = _signals(collector, intersections)
    _drop_nodes_inside_areas(collector)
    frames = {}
    for name in wanted:
        columns = ["id", *LAYERS[name].field_names, "osm", "geometry"]
        rows = [_within_limits(row, name) for row in collector.features.get(name, [])]
        frame = gpd.GeoDataFrame(rows, columns=columns, geometry="geometry", crs="EPSG:4326")
        frames[name] = frame.sort_values("id", kind="stable").reset_index(drop=True)
    return frames
