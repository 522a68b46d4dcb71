"""OpenStreetMap extracts mapped to the twin's layers, read in one pass and clipped to an extent.

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
typed attribute, and kept in ``osm``; ``maxspeed`` is read by :func:`layers.defaults.parse_maxspeed`
(``DE:urban``, ``30 mph``, ...).

An extract holds whole ways and relations, so its nodes reach past the area it was cut for.
:func:`read_extract` reads the file once (every layer, and every administrative boundary);
:meth:`OsmExtract.layers` then clips to an extent — a box, or a boundary found in the file by
name or OSM id — and counts what it clipped: a point outside is dropped; a way (road, pipeline,
power line) keeps the runs of its nodes inside the extent, so road edges still end on real OSM
nodes; an area reaching outside is cut at the extent, one wholly outside is dropped.

Files: ``.osm.pbf`` (``.pbf``), OSM XML (``.osm``, ``.osm.xml``), compressed
(``.osm.gz``, ``.osm.bz2``, ``.osm.xml.gz``, ``.osm.xml.bz2``) and ``.o5m``, told apart by name
(:func:`osm_format`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import osmium
import pandas as pd
import shapely
from osmium.filter import KeyFilter
from osmium.osm import AREA, NODE, WAY

from layers.catalog import LAYERS
from layers.defaults import parse_maxspeed
from layers.validation import IngestError, Problem

__all__ = [
    "DRIVABLE",
    "MAPPED_LAYERS",
    "Clipping",
    "OsmExtract",
    "is_osm",
    "osm_format",
    "read_extract",
    "read_osm",
]

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
#: File name endings of OpenStreetMap files and the libosmium format that reads each.
OSM_FORMATS: dict[str, str] = {
    ".osm.pbf": "pbf",
    ".pbf": "pbf",
    ".osm": "osm",
    ".osm.xml": "osm",
    ".osm.gz": "osm.gz",
    ".osm.xml.gz": "osm.gz",
    ".osm.bz2": "osm.bz2",
    ".osm.xml.bz2": "osm.bz2",
    ".o5m": "o5m",
}
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
        "N NNE NE ENE E ESE SE SSE S SSW SW WSW W WNW NW NNW".split()  # noqa: SIM905
    )
}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_PROGRESS_EVERY = 50_000
# the keys each kind of object must carry to matter; the rest never reaches Python
_NODE_KEYS = ("highway", "man_made", "emergency", "power", "amenity", "social_facility")
_WAY_KEYS = ("highway", "power", "man_made")
_AREA_KEYS = ("building", "boundary", "amenity", "power", "emergency", "social_facility")

#: A box (min lon, min lat, max lon, max lat) or a polygon, in EPSG:4326.
Extent = tuple[float, float, float, float] | shapely.Geometry


def osm_format(path: str | Path) -> str | None:
    """Return the libosmium format of an OpenStreetMap file, told by its name.

    Parameters
    ----------
    path
        A file name such as ``town.osm.pbf``, ``town.osm.xml.gz``.

    Returns
    -------
    str or None
        ``pbf``, ``osm``, ``osm.gz``, ``osm.bz2`` or ``o5m``; None if the name is not that of
        an OSM file (see :data:`OSM_FORMATS`).
    """
    name = Path(path).name.lower()
    for suffix in sorted(OSM_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return OSM_FORMATS[suffix]
    return None


def is_osm(path: str | Path) -> bool:
    """Return whether a file is an OpenStreetMap file, by its name (:func:`osm_format`).

    Parameters
    ----------
    path
        File name.

    Returns
    -------
    bool
        True for ``.osm``, ``.osm.xml``, ``.osm.pbf``, ``.osm.gz``, ``.osm.bz2``, ``.o5m``...
    """
    return osm_format(path) is not None


def _number(value: str | None) -> float | None:
    if not value:
        return None
    match = _NUMBER.match(value)
    return float(match.group(1)) if match else None


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


def _resource_kind(tags: Any) -> str | None:
    amenity = tags.get("amenity")
    if amenity in ("fire_station", "hospital", "police"):
        return str(amenity)
    if tags.get("emergency") == "assembly_point" or tags.get("social_facility") == "shelter":
        return "shelter"
    return None


def _resource(ident: str, kind: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "id": ident,
        "kind": kind,
        "name": tags.get("name"),
        "status": "available",
        "capacity": _int(tags.get("capacity") or tags.get("beds")),
        "osm": tags,
    }


@dataclass
class _Way:
    """A way as read: its id, node ids and coordinates, and what it is."""

    id: int
    refs: list[int]
    xs: list[float]
    ys: list[float]
    tags: dict[str, str]
    layer: str  # roads, pipelines or power_lines


@dataclass
class _Boundary:
    """An administrative boundary of the file (any level): for districts and extents."""

    ident: str
    name: str | None
    level: int | None
    geometry: shapely.Geometry
    tags: dict[str, str]


@dataclass
class Clipping:
    """What clipping to the extent did to one layer.

    Attributes
    ----------
    cut
        Features reaching outside the extent, kept as their part inside (for roads: OSM ways).
    dropped
        Features wholly outside the extent, left out (for roads: OSM ways).
    """

    cut: int = 0
    dropped: int = 0


@dataclass
class LayerSet:
    """The layers of an extract, clipped to an extent.

    Attributes
    ----------
    frames
        Layer id to its features (EPSG:4326) with ``id``, the typed attributes, ``osm`` (tags)
        and ``geometry``; each frame's index counts the features from 1.
    clipped
        Layer id to what clipping did to it.
    """

    frames: dict[str, gpd.GeoDataFrame]
    clipped: dict[str, Clipping]


class _Collector:
    """One pass over the file, keeping what the layers need (geometry built afterwards)."""

    def __init__(self) -> None:
        self.ways: list[_Way] = []
        self.points: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.signal_nodes: dict[int, tuple[float, float, dict[str, str]]] = {}
        self.areas: list[tuple[str, bytes, dict[str, str]]] = []
        self.wkb = osmium.geom.WKBFactory()

    def node(self, n: osmium.osm.Node) -> None:
        tags = n.tags
        highway, man_made = tags.get("highway"), tags.get("man_made")
        emergency, power = tags.get("emergency"), tags.get("power")
        kind = _resource_kind(tags)
        if not (
            highway == "traffic_signals"
            or man_made == "surveillance"
            or emergency == "fire_hydrant"
            or power in ("substation", "transformer", "switch")
            or kind
        ):
            return
        location = n.location
        if not location.valid():
            return
        x, y = location.lon, location.lat
        plain = dict(tags)
        ident = f"node/{n.id}"
        if highway == "traffic_signals":
            self.signal_nodes[n.id] = (x, y, plain)
        if man_made == "surveillance":
            heading = _heading(plain.get("camera:direction") or plain.get("direction"))
            self.points["cameras"].append(
                {
                    "id": ident,
                    "heading": heading,
                    "status": "active",
                    "owner": plain.get("operator"),
                    "osm": plain,
                    "x": x,
                    "y": y,
                }
            )
        if emergency == "fire_hydrant":
            self.points["pipe_nodes"].append(
                {
                    "id": ident,
                    "kind": "hydrant",
                    "network": "water",
                    "status": "open",
                    "osm": plain,
                    "x": x,
                    "y": y,
                }
            )
        if power in ("substation", "transformer", "switch"):
            if power == "switch":
                status = "open" if plain.get("switch") == "open" else "closed"
            else:
                status = "active"
            self.points["power_nodes"].append(
                {
                    "id": ident,
                    "kind": power,
                    "voltage_kv": _voltage(plain),
                    "status": status,
                    "osm": plain,
                    "x": x,
                    "y": y,
                }
            )
        if kind:
            self.points["resources"].append({**_resource(ident, kind, plain), "x": x, "y": y})

    def way(self, w: osmium.osm.Way) -> None:
        tags = w.tags
        highway = tags.get("highway")
        if highway in DRIVABLE and tags.get("area") != "yes":
            layer = "roads"
        elif tags.get("power") in ("line", "cable", "minor_line"):
            layer = "power_lines"
        elif tags.get("man_made") == "pipeline" and _SUBSTANCE.get(
            tags.get("substance") or tags.get("type") or ""
        ):
            layer = "pipelines"
        else:
            return
        refs, xs, ys = [], [], []
        for node in w.nodes:
            location = node.location
            if location.valid():
                refs.append(node.ref)
                xs.append(location.lon)
                ys.append(location.lat)
        if len(refs) >= 2:
            self.ways.append(_Way(w.id, refs, xs, ys, dict(tags), layer))

    def area(self, a: osmium.osm.Area) -> None:
        tags = a.tags
        building = tags.get("building")
        if not (
            (building is not None and building != "no")
            or tags.get("boundary") == "administrative"
            or _resource_kind(tags) is not None
            or tags.get("power") == "substation"
        ):
            return
        try:
            wkb = self.wkb.create_multipolygon(a)
        except (RuntimeError, osmium.InvalidLocationError):  # broken multipolygon
            return
        ident = f"{'way' if a.from_way() else 'relation'}/{a.orig_id()}"
        self.areas.append((ident, bytes.fromhex(wkb) if isinstance(wkb, str) else wkb, dict(tags)))


@dataclass
class OsmExtract:
    """An OpenStreetMap file read once: everything the layers need, before clipping.

    Attributes
    ----------
    path
        The file read.
    header_box
        The box the file's header declares (what the extract was cut to), or None.
    timestamp
        The data's timestamp from the header (``osmosis_replication_timestamp`` or
        ``timestamp``), or None.
    boundaries
        Every administrative boundary in the file, of any level.
    """

    path: Path
    header_box: tuple[float, float, float, float] | None
    timestamp: str | None
    boundaries: list[_Boundary]
    _collector: _Collector = field(repr=False)
    _area_shapes: np.ndarray = field(repr=False)

    def data_box(self) -> tuple[float, float, float, float] | None:
        """Return the box of what the file holds, within the header's box if it declares one.

        The box of the nodes of every feature read (roads, lines, areas and points); where the
        header declares the box the extract was cut to, the intersection of the two, so the
        nodes of whole ways reaching far past the cut do not widen it.

        Returns
        -------
        tuple of float or None
            (min lon, min lat, max lon, max lat), EPSG:4326; None when the file maps nothing.
        """
        collector = self._collector
        xs = [x for way in collector.ways for x in (min(way.xs), max(way.xs))]
        ys = [y for way in collector.ways for y in (min(way.ys), max(way.ys))]
        for rows in collector.points.values():
            xs.extend(row["x"] for row in rows)
            ys.extend(row["y"] for row in rows)
        shapes = self._area_shapes[~shapely.is_missing(self._area_shapes)]
        if len(shapes):
            bounds = shapely.bounds(shapes)
            xs.extend([float(bounds[:, 0].min()), float(bounds[:, 2].max())])
            ys.extend([float(bounds[:, 1].min()), float(bounds[:, 3].max())])
        if not xs:
            return None
        box = (min(xs), min(ys), max(xs), max(ys))
        if self.header_box is not None:
            hx0, hy0, hx1, hy1 = self.header_box
            cut = (max(box[0], hx0), max(box[1], hy0), min(box[2], hx1), min(box[3], hy1))
            if cut[0] < cut[2] and cut[1] < cut[3]:
                return cut
        return box

    def boundary(self, reference: str) -> _Boundary:
        """Return the administrative boundary named, or given by OSM id, in the file.

        Parameters
        ----------
        reference
            ``relation/123``, ``way/45`` or a name (any ``name``, ``name:*`` or
            ``official_name`` tag, compared case-insensitively).

        Returns
        -------
        _Boundary
            The boundary; of several with the name, the one with the lowest ``admin_level``
            (the widest).

        Raises
        ------
        ValueError
            If the file has no such boundary, or several equally wide ones with that name (the
            message lists their ids); the file's boundaries are listed when none matches.
        """
        wanted = reference.strip()
        if re.fullmatch(r"(relation|way)/\d+", wanted):
            for item in self.boundaries:
                if item.ident == wanted:
                    return item
            raise ValueError(f"{self.path.name} holds no administrative boundary {wanted}")
        folded = wanted.casefold()
        matches = [
            item
            for item in self.boundaries
            if any(
                value.casefold() == folded
                for key, value in item.tags.items()
                if key == "name" or key.startswith("name:") or key == "official_name"
            )
        ]
        if not matches:
            known = sorted({f"{b.name} ({b.ident})" for b in self.boundaries if b.name})[:15]
            listed = "; ".join(known) if known else "none"
            raise ValueError(
                f"{self.path.name} holds no administrative boundary named {wanted!r} "
                f"(its boundaries: {listed})"
            )
        level = min((m.level if m.level is not None else 99) for m in matches)
        widest = [m for m in matches if (m.level if m.level is not None else 99) == level]
        if len(widest) > 1:
            ids = ", ".join(m.ident for m in widest)
            raise ValueError(f"several boundaries are named {wanted!r}: {ids}; give one id")
        return widest[0]

    def layers(
        self, layer_ids: Iterable[str] | None = None, *, extent: Extent | None = None
    ) -> LayerSet:
        """Map the file to the twin's layers, clipped to an extent.

        Parameters
        ----------
        layer_ids
            Layers wanted; all of :data:`MAPPED_LAYERS` by default.
        extent
            A box (min lon, min lat, max lon, max lat) or a polygon, EPSG:4326; None keeps
            everything.

        Returns
        -------
        LayerSet
            Features per layer and what clipping did to each.

        Raises
        ------
        ValueError
            If a requested layer is not one that OSM maps.
        """
        wanted = list(layer_ids or MAPPED_LAYERS)
        unmapped = [name for name in wanted if name not in MAPPED_LAYERS]
        if unmapped:
            raise ValueError(
                f"OpenStreetMap has no {', '.join(unmapped)} layer; "
                f"it maps {', '.join(MAPPED_LAYERS)}"
            )
        shape = _extent_shape(extent)
        clipped: dict[str, Clipping] = defaultdict(Clipping)
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        facility_areas = _areas(self, shape, rows, clipped)
        for layer, points in self._collector.points.items():
            kept = _inside(shape, [p["x"] for p in points], [p["y"] for p in points])
            clipped[layer].dropped += int((~kept).sum())
            rows[layer].extend(
                {**p, "geometry": shapely.Point(p["x"], p["y"])}
                for p, keep in zip(points, kept, strict=True)
                if keep
            )
        runs = _runs(self._collector.ways, shape, clipped)
        roads, intersections = _road_graph(
            [run for run in runs if run[0].layer == "roads"], self._collector.signal_nodes
        )
        rows["roads"] = roads
        rows["intersections"] = intersections
        rows["signals"] = _signals(self._collector.signal_nodes, intersections, shape, clipped)
        rows["pipelines"].extend(_lines(runs, "pipelines"))
        rows["power_lines"].extend(_lines(runs, "power_lines"))
        _drop_nodes_inside_areas(rows, facility_areas)
        frames = {}
        for name in wanted:
            columns = ["id", *LAYERS[name].field_names, "osm", "geometry"]
            layer_rows = sorted(rows.get(name, []), key=lambda row: row["id"])
            data = {c: [row.get(c) for row in layer_rows] for c in columns}
            frame = gpd.GeoDataFrame(
                {c: pd.Series(data[c], dtype=object) for c in columns[:-1]},
                geometry=gpd.GeoSeries(data["geometry"], crs="EPSG:4326"),
            )
            frame = _within_limits(frame, name)
            frame.index = np.arange(1, len(frame) + 1)
            frames[name] = frame
        return LayerSet(frames, {name: clipped[name] for name in wanted})


def _extent_shape(extent: Extent | None) -> shapely.Geometry | None:
    if extent is None:
        return None
    shape: shapely.Geometry = shapely.box(*extent) if isinstance(extent, tuple) else extent
    shapely.prepare(shape)
    return shape


def _inside(shape: shapely.Geometry | None, xs: list[float], ys: list[float]) -> np.ndarray:
    """Whether each point lies in the extent (its border counts as inside)."""
    if shape is None:
        return np.ones(len(xs), dtype=bool)
    return np.asarray(shapely.intersects_xy(shape, np.asarray(xs), np.asarray(ys)), dtype=bool)


def _polygonal(shape: shapely.Geometry) -> shapely.Geometry | None:
    """Return the polygons of a clipped area (an intersection can add lines and points)."""
    if shapely.get_type_id(shape) in (3, 6):  # Polygon, MultiPolygon
        return None if shapely.is_empty(shape) else shape
    parts = [p for p in shapely.get_parts(shape) if p.geom_type == "Polygon" and not p.is_empty]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _areas(
    extract: OsmExtract,
    shape: shapely.Geometry | None,
    rows: dict[str, list[dict[str, Any]]],
    clipped: dict[str, Clipping],
) -> list[tuple[str, str, shapely.Geometry]]:
    """Add buildings, districts and facilities mapped as areas; return the facilities' areas."""
    facility_areas = []
    areas = extract._collector.areas
    shapes = extract._area_shapes
    if shape is not None and len(shapes):
        touches = shapely.intersects(shape, shapes)
        within = shapely.within(shapes, shape)
    else:
        touches = within = np.ones(len(shapes), dtype=bool)
    for (ident, _, tags), full, touching, inside in zip(
        areas, shapes, touches, within, strict=True
    ):
        if full is None:
            continue
        building = tags.get("building")
        level = _int(tags.get("admin_level"))
        is_district = tags.get("boundary") == "administrative" and level is not None and level >= 8
        kind = _resource_kind(tags)
        layers_of = [
            *(["buildings"] if building is not None and building != "no" else []),
            *(["districts"] if is_district else []),
        ]
        if not touching:
            for layer in layers_of:
                clipped[layer].dropped += 1
        else:
            part = full if inside else _polygonal(shapely.intersection(full, shape))
            for layer in layers_of:
                if part is None:
                    clipped[layer].dropped += 1
                    continue
                if not inside:
                    clipped[layer].cut += 1
                if layer == "buildings":
                    rows[layer].append(
                        {
                            "id": ident,
                            "height_m": _number(tags.get("height")),
                            "levels": _int(tags.get("building:levels")),
                            "use": building,
                            "name": tags.get("name"),
                            "osm": tags,
                            "geometry": part,
                        }
                    )
                else:
                    rows[layer].append(
                        {
                            "id": ident,
                            "name": tags.get("name") or ident,
                            "level": level,
                            "population": _int(tags.get("population")),
                            "osm": tags,
                            "geometry": part,
                        }
                    )
        facilities: list[tuple[str, str, dict[str, Any]]] = []
        if kind:
            facilities.append(("resources", kind, _resource(ident, kind, tags)))
        if tags.get("power") == "substation":
            substation = {
                "id": ident,
                "kind": "substation",
                "voltage_kv": _voltage(tags),
                "status": "active",
                "osm": tags,
            }
            facilities.append(("power_nodes", "substation", substation))
        for layer, facility, attributes in facilities:
            facility_areas.append((layer, facility, full))
            point = full.representative_point()
            if shape is not None and not shapely.intersects(shape, point):
                clipped[layer].dropped += 1
                continue
            rows[layer].append({**attributes, "geometry": point})
    return facility_areas


def _runs(
    ways: list[_Way], shape: shapely.Geometry | None, clipped: dict[str, Clipping]
) -> list[tuple[_Way, int, int]]:
    """Split each way into its runs of nodes inside the extent: (way, start, stop) slices."""
    if not ways:
        return []
    lengths = np.fromiter((len(w.refs) for w in ways), dtype=np.int64, count=len(ways))
    xs = np.fromiter((x for w in ways for x in w.xs), dtype=float, count=int(lengths.sum()))
    ys = np.fromiter((y for w in ways for y in w.ys), dtype=float, count=int(lengths.sum()))
    if shape is None:
        return [(w, 0, len(w.refs)) for w in ways]
    inside = _inside(shape, list(xs), list(ys))
    out = []
    offset = 0
    for way, length in zip(ways, lengths, strict=True):
        mask = inside[offset : offset + length]
        offset += length
        if mask.all():
            out.append((way, 0, int(length)))
            continue
        # runs of consecutive inside nodes, at least two long
        edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
        pairs = zip(edges[::2], edges[1::2], strict=True)
        kept = [(int(a), int(b)) for a, b in pairs if b - a >= 2]
        if not kept:
            clipped[way.layer].dropped += 1
            continue
        clipped[way.layer].cut += 1
        out.extend((way, a, b) for a, b in kept)
    return out


def _lines(runs: list[tuple[_Way, int, int]], layer: str) -> list[dict[str, Any]]:
    """Pipelines or power lines: one feature per run (``way/1``; cut in pieces: ``way/1/0``)."""
    pieces: Counter[int] = Counter(way.id for way, _, _ in runs if way.layer == layer)
    seen: Counter[int] = Counter()
    out = []
    for way, start, stop in runs:
        if way.layer != layer:
            continue
        coords = list(zip(way.xs[start:stop], way.ys[start:stop], strict=True))
        if len(set(coords)) < 2:
            continue
        ident = f"way/{way.id}" if pieces[way.id] == 1 else f"way/{way.id}/{seen[way.id]}"
        seen[way.id] += 1
        tags = way.tags
        if layer == "power_lines":
            row: dict[str, Any] = {
                "id": ident,
                "kind": tags.get("power"),
                "voltage_kv": _voltage(tags),
                "status": "active",
            }
        else:
            row = {
                "id": ident,
                "network": _SUBSTANCE[tags.get("substance") or tags.get("type") or ""],
                "diameter_mm": _number(tags.get("diameter")),
                "material": tags.get("material"),
                "status": "active",
                "depth_m": _number(tags.get("depth")),
            }
        out.append({**row, "osm": tags, "geometry": shapely.LineString(coords)})
    return out


def _road_graph(
    runs: list[tuple[_Way, int, int]],
    signal_nodes: dict[int, tuple[float, float, dict[str, str]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split drivable ways (their runs inside the extent) into edges at shared nodes and signals."""
    uses: Counter[int] = Counter()
    for way, start, stop in runs:
        uses.update(way.refs[start:stop])
        uses[way.refs[start]] += 1
        uses[way.refs[stop - 1]] += 1
    split = {ref for ref, count in uses.items() if count >= 2} | set(signal_nodes)
    edges: list[dict[str, Any]] = []
    coords: list[tuple[float, float]] = []
    counts: list[int] = []
    ends: dict[int, tuple[float, float]] = {}
    index_of: Counter[int] = Counter()
    for way, first, stop in runs:
        tags = way.tags
        nodes = list(zip(way.refs[first:stop], way.xs[first:stop], way.ys[first:stop], strict=True))
        oneway_tag = tags.get("oneway", "")
        reverse = oneway_tag == "-1"
        oneway = (
            reverse
            or oneway_tag in ("yes", "true", "1")
            or tags.get("junction") in ("roundabout", "circular")
            or (tags["highway"] == "motorway" and oneway_tag != "no")
        )
        lanes = _int(tags.get("lanes"))
        maxspeed = parse_maxspeed(tags.get("maxspeed"))
        start = 0
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
                    "id": f"way/{way.id}/{index_of[way.id]}",
                    "source_node": part[0][0],
                    "target_node": part[-1][0],
                    "class": tags["highway"],
                    "lanes": lanes,
                    "maxspeed": maxspeed,
                    "oneway": oneway,
                    "name": tags.get("name"),
                    "osm": tags,
                }
            )
            coords.extend((x, y) for _, x, y in part)
            counts.append(len(part))
            index_of[way.id] += 1
            for ref, x, y in (part[0], part[-1]):
                ends[ref] = (x, y)
    # geometries made all at once: a shapely call per edge costs more than the rest
    lines = shapely.linestrings(
        np.asarray(coords, dtype=float).reshape(-1, 2),
        indices=np.repeat(np.arange(len(counts)), counts),
    )
    for edge, line in zip(edges, np.asarray(lines, dtype=object).reshape(-1), strict=True):
        edge["geometry"] = line
    refs = sorted(ends)
    points = shapely.points(np.asarray([ends[ref] for ref in refs], dtype=float).reshape(-1, 2))
    intersections = [
        {"id": f"node/{ref}", "node_id": ref, "signalised": ref in signal_nodes, "geometry": point}
        for ref, point in zip(refs, np.asarray(points, dtype=object).reshape(-1), strict=True)
    ]
    return edges, intersections


def _signals(
    signal_nodes: dict[int, tuple[float, float, dict[str, str]]],
    intersections: list[dict[str, Any]],
    shape: shapely.Geometry | None,
    clipped: dict[str, Clipping],
) -> list[dict[str, Any]]:
    nodes = {row["node_id"] for row in intersections}
    tree_points = [row["geometry"] for row in intersections]
    tree = shapely.STRtree(tree_points) if tree_points else None
    ordered = sorted(signal_nodes.items())
    kept = _inside(shape, [x for _, (x, _, _) in ordered], [y for _, (_, y, _) in ordered])
    clipped["signals"].dropped += int((~kept).sum())
    out = []
    for (ref, (lon, lat, tags)), keep in zip(ordered, kept, strict=True):
        if not keep:
            continue
        point = shapely.Point(lon, lat)
        node_id: int | None = ref if ref in nodes else None
        if node_id is None and tree is not None:
            nearest = int(tree.nearest(point))
            if shapely.distance(point, tree_points[nearest]) < 0.0005:  # about 50 m
                node_id = intersections[nearest]["node_id"]
        out.append({"id": f"node/{ref}", "node_id": node_id, "osm": tags, "geometry": point})
    return out


def _drop_nodes_inside_areas(
    rows: dict[str, list[dict[str, Any]]], facility_areas: list[tuple[str, str, shapely.Geometry]]
) -> None:
    """Drop a facility's node when an area of the same kind, mapped too, contains it."""
    for layer in ("resources", "power_nodes"):
        areas = [(kind, area) for name, kind, area in facility_areas if name == layer]
        if not areas:
            continue
        rows[layer] = [
            row
            for row in rows[layer]
            if not (
                row["id"].startswith("node/")
                and any(
                    kind == row["kind"] and shapely.contains(area, row["geometry"])
                    for kind, area in areas
                )
            )
        ]


def _within_limits(frame: gpd.GeoDataFrame, layer_id: str) -> gpd.GeoDataFrame:
    """Drop tag values the catalog would refuse (lanes=0, maxspeed=300): they stay in ``osm``.

    One odd tag in a city's worth of OSM data should not reject the whole layer.
    """
    for spec in LAYERS[layer_id].fields:
        if spec.minimum is None and spec.maximum is None:
            continue
        values = frame[spec.name].to_numpy(dtype=object).copy()
        number = np.array(
            [isinstance(v, int | float) and not isinstance(v, bool) for v in values], dtype=bool
        )
        if not number.any():
            continue
        numbers = np.where(number, values, np.nan).astype(float)
        low = spec.minimum if spec.minimum is not None else -np.inf
        high = spec.maximum if spec.maximum is not None else np.inf
        refused = number & ((numbers < low) | (numbers > high))
        if refused.any():
            values[refused] = None
            frame[spec.name] = values
    return frame


def _header(path: Path, fmt: str) -> tuple[tuple[float, float, float, float] | None, str | None]:
    reader = osmium.io.Reader(osmium.io.File(str(path), fmt), osmium.osm.osm_entity_bits.NOTHING)
    try:
        header = reader.header()
        box = header.box()
        bounds = None
        if box.valid():
            bottom_left, top_right = box.bottom_left, box.top_right
            bounds = (bottom_left.lon, bottom_left.lat, top_right.lon, top_right.lat)
        stamp = header.get("osmosis_replication_timestamp") or header.get("timestamp") or None
    finally:
        reader.close()
    return bounds, stamp


def read_extract(
    path: str | Path, *, progress: Callable[[str, int, int], None] | None = None
) -> OsmExtract:
    """Read an OpenStreetMap file once, keeping what every layer needs.

    Parameters
    ----------
    path
        An OSM file (:data:`OSM_FORMATS`: ``.osm.pbf``, ``.osm``, ``.osm.xml``, ``.osm.gz``,
        ``.osm.bz2``, ``.osm.xml.gz``, ``.o5m``).
    progress
        Called as ``progress("read", objects, 0)`` as the pass advances (the total is not known
        before the end; then ``progress("read", objects, objects)``).

    Returns
    -------
    OsmExtract
        The file's content; :meth:`OsmExtract.layers` maps and clips it.

    Raises
    ------
    IngestError
        If the file is missing, not named as an OSM file, or libosmium cannot read it.
    """
    path = Path(path)
    fmt = osm_format(path)
    if fmt is None:
        known = ", ".join(OSM_FORMATS)
        reason = f"not an OpenStreetMap file name (known endings: {known})"
        raise IngestError(str(path), [Problem(None, None, reason)])
    if not path.is_file():
        raise IngestError(str(path), [Problem(None, None, "file not found")])
    collector = _Collector()
    boundaries: list[_Boundary] = []
    count = 0
    try:
        header_box, timestamp = _header(path, fmt)
        processor = (
            osmium.FileProcessor(osmium.io.File(str(path), fmt)).with_locations().with_areas()
        )
        for keys, entities in ((_NODE_KEYS, NODE), (_WAY_KEYS, WAY), (_AREA_KEYS, AREA)):
            only = KeyFilter(*keys)
            only.enable_for(entities)
            processor = processor.with_filter(only)
        for obj in processor:
            count += 1
            if progress and count % _PROGRESS_EVERY == 0:
                progress("read", count, 0)
            if isinstance(obj, osmium.osm.Area):
                collector.area(obj)
            elif isinstance(obj, osmium.osm.Node):
                collector.node(obj)
            elif isinstance(obj, osmium.osm.Way):
                collector.way(obj)
    except (RuntimeError, ValueError, OSError) as exc:  # libosmium's format and I/O errors
        reason = f"cannot read it as an OpenStreetMap {fmt} file: {exc}"
        raise IngestError(str(path), [Problem(None, None, reason)]) from exc
    if progress:
        progress("read", count, count)
    shapes = shapely.from_wkb([wkb for _, wkb, _ in collector.areas], on_invalid="ignore")
    shapes = np.asarray(shapes, dtype=object)
    for (ident, _, tags), shape in zip(collector.areas, shapes, strict=True):
        if shape is not None and tags.get("boundary") == "administrative":
            boundaries.append(
                _Boundary(ident, tags.get("name"), _int(tags.get("admin_level")), shape, tags)
            )
    return OsmExtract(path, header_box, timestamp, boundaries, collector, shapes)


def read_osm(path: str | Path, layer_ids: list[str] | None = None) -> dict[str, gpd.GeoDataFrame]:
    """Read an OSM file into one GeoDataFrame per mapped layer (EPSG:4326), nothing clipped.

    Parameters
    ----------
    path
        An OSM file (see :func:`read_extract`).
    layer_ids
        Layers wanted; all of :data:`MAPPED_LAYERS` by default.

    Returns
    -------
    dict of str to geopandas.GeoDataFrame
        Features per layer id, with ``id``, the layer's typed attributes, ``osm`` (tags)
        and ``geometry``; index = feature number from 1.

    Raises
    ------
    ValueError
        If a requested layer is not one that OSM maps.
    IngestError
        If the file cannot be read.
    """
    return read_extract(path).layers(layer_ids).frames
