"""Any city in one command: from an OpenStreetMap extract, or a folder of GIS files, to a twin.

:func:`init_city` (the CLI's ``twin city init``, the viewer's admin page) reads the source once,
proposes the city's settings — its extent (the extract's own box, an administrative boundary
found in it by name or OSM id, or a given box), its metric CRS
(:func:`layers.extent.metric_crs_for`: a CGCS2000 Gauss-Krüger zone in China, else the UTM zone)
and its name —, clips what reaches
outside the extent and loads every layer in one transaction, with the settings
(``city_settings``, migration 0014) and the credit of the source. A second run of the same
source updates the layers (new versions, vanished features closed) rather than adding to them.

Nothing is left silently empty: the report names, per layer, how many features were loaded,
cut at the extent and left outside, and what is missing and what that disables, with how to
supply it. Two gaps can be filled on request, and say so: districts by a grid of square cells
(网格, ``district_grid_m``) and population by an estimate from the buildings' floor area
(:func:`layers.population.estimate_population`, on unless ``estimate_population=False``).

A folder of GIS files is described by a mapping file (TOML, :func:`read_mapping`): which file
(and table, CRS, encoding) feeds which layer, and which column feeds which attribute; columns
may be named in any language. Roads there need no node ids: the ends of each line are the
nodes, matched by their coordinates (to about 1 cm), so the lines must end at intersections,
as road centre-line data does.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from psycopg import sql
from pyproj import CRS, Proj
from pyproj.exceptions import CRSError, ProjError

from layers.catalog import LAYERS
from layers.database import get_engine
from layers.errors import ParameterError
from layers.extent import clip_frame, metric_crs_for
from layers.grids import district_grid
from layers.ingest import IngestError, IngestReport, Progress, ingest_frames
from layers.osm import MAPPED_LAYERS, Clipping, is_osm, read_extract
from layers.population import estimate_population as population_from_floor_area
from layers.population import population_from_raster
from layers.rasters import RasterError, list_rasters
from layers.readers import read_file
from layers.settings import get_settings
from layers.sources import OPENSTREETMAP, Credit
from layers.validation import Problem

__all__ = ["CityError", "CityPlan", "LayerLoad", "Missing", "init_city", "read_mapping"]

#: The source label of a city's OpenStreetMap features: the same for every extract, so a newer
#: extract of the city updates its features.
OSM_SOURCE = "openstreetmap"
#: What each layer's absence disables, and how to supply it.
_NEEDED_BY: dict[str, tuple[str, str]] = {
    "roads": (
        "routing, service areas, coverage, signal timing and corridors",
        "an extract with highways, or roads in the mapping file (twin ingest roads FILE)",
    ),
    "buildings": (
        "3D buildings, population estimates, outage and coverage counts of people",
        "twin ingest buildings FILE",
    ),
    "districts": (
        "district statistics and coverage per district",
        "twin city init ... --district-grid 500 (网格 cells), or twin ingest districts FILE",
    ),
    "resources": (
        "dispatch, nearest units and coverage by fire stations, hospitals and police",
        "twin ingest resources FILE (kind fire_station, hospital, police, shelter)",
    ),
    "signals": ("signal timing, green waves and corridors", "twin ingest signals FILE"),
    "cameras": ("camera coverage of the streets", "twin ingest cameras FILE"),
    "pipelines": (
        "utility traces and outages (water, gas, sewer, heat)",
        "twin ingest pipelines FILE",
    ),
    "pipe_nodes": ("valves and hydrants in utility traces", "twin ingest pipe_nodes FILE"),
    "power_lines": ("power outage traces", "twin ingest power_lines FILE"),
    "power_nodes": ("substations and switches in power traces", "twin ingest power_nodes FILE"),
}
_MAPPING_KEYS = {"file", "file_layer", "id", "crs", "encoding", "columns", "source"}
#: The layers a city's data fills, and the operational ones that belong to it (incidents and
#: closures): another city's features there are what ``replace`` retires.
_CITY_LAYERS = tuple(
    layer for layer in LAYERS.values() if layer.id in (*MAPPED_LAYERS, "incidents", "closures")
)


class CityError(ValueError):
    """A city could not be set up; nothing was written. The message says why and what to do."""


@dataclass
class Missing:
    """An input the city lacks.

    Attributes
    ----------
    input
        What is missing (``districts``, ``population``, ``dem``, a layer).
    disables
        The analyses that cannot answer without it.
    remedy
        How to supply it.
    """

    input: str
    disables: str
    remedy: str


@dataclass
class LayerLoad:
    """What the set-up did to one layer.

    Attributes
    ----------
    layer
        Layer id.
    features
        Features loaded (after clipping).
    cut, dropped
        Features reaching outside the extent (kept as their part inside; roads, pipelines and
        power lines counted in OSM ways) and features wholly outside it (left out).
    added, changed, unchanged, retired
        As :class:`layers.ingest.IngestReport` (zero for a proposal).
    note
        How the layer was made where it was not read as it is (a grid, an estimate), or None.
    """

    layer: str
    features: int = 0
    cut: int = 0
    dropped: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    retired: int = 0
    note: str | None = None


@dataclass
class CityPlan:
    """The city's settings and its layers, as proposed and (unless a dry run) written.

    Attributes
    ----------
    name
        The city's name.
    bbox
        Extent (min lon, min lat, max lon, max lat), EPSG:4326.
    metric_crs
        Projected CRS in metres for lengths and areas (``EPSG:<code>``).
    extent_from
        Where the extent came from (the file's box, a boundary, a given box).
    source
        The file or folder read.
    layers
        What happened to each layer, in catalog order.
    missing
        What the city lacks, what that disables and how to supply it.
    written
        Whether the layers and settings were written (False for a dry run).
    seconds
        Wall time.
    """

    name: str
    bbox: tuple[float, float, float, float]
    metric_crs: str
    extent_from: str
    source: str
    layers: list[LayerLoad] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    written: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data (the report stored with the settings).

        Returns
        -------
        dict
            Every attribute; layers and missing inputs as lists of dicts.
        """
        return asdict(self)


def init_city(
    source: str | Path,
    *,
    name: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    boundary: str | None = None,
    metric_crs: str | None = None,
    mapping: str | Path | None = None,
    district_grid_m: float | None = None,
    estimate_population: bool = True,
    m2_per_person: float | None = None,
    population_raster: str | None = None,
    replace: bool = False,
    dry_run: bool = False,
    source_name: str | None = None,
    url: str | None = None,
    progress: Progress | None = None,
) -> CityPlan:
    """Set a city up from an OpenStreetMap extract or a folder of GIS files, in one pass.

    Parameters
    ----------
    source
        An OSM file (``.osm``, ``.osm.xml``, ``.osm.gz``, ``.osm.bz2``, ``.osm.pbf``, ...) or a
        folder of GIS files holding a mapping file (``twin-mapping.toml``, or ``mapping``).
    name
        The city's name; by default the boundary's name, else the mapping's ``name``, else the
        file's name (``malta-latest.osm.pbf`` → ``Malta``).
    bbox
        The extent, (min lon, min lat, max lon, max lat) in EPSG:4326.
    boundary
        The extent as an administrative boundary of the extract: ``relation/123`` or its name.
        Without ``bbox`` and ``boundary``, the box the extract's header declares (what it was
        cut to), narrowed to the data; for GIS files, the box of their features.
    metric_crs
        Projected CRS in metres; by default chosen from the extent's centre
        (:func:`layers.extent.metric_crs_for`).
    mapping
        The mapping file of a folder of GIS files (see :func:`read_mapping`).
    district_grid_m
        When the source has no districts, square cells of this side (metres) are made the
        districts (网格); None leaves the districts missing (the report offers the grid).
    estimate_population
        Estimate each residential building's population from its floor area where the source
        gives none (:func:`layers.population.estimate_population`).
    m2_per_person
        Floor area per resident for that estimate, m²; the module's cited default otherwise.
    population_raster
        Name of a stored raster of kind ``population_density`` (people/km²; ``twin raster
        ingest FILE --name population --kind population_density``) whose residents are shared
        out over the buildings instead (:func:`layers.population.population_from_raster`).
    replace
        Retire (close, kept in history) the current features of other sources — another city,
        the sample city — in the same transaction. Without it, a store holding them refuses.
    dry_run
        Propose only: read, clip and check everything, write nothing.
    source_name
        What to call the source in the report and the stored settings (an uploaded file's own
        name); ``source`` as given by default.
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)`` (``total`` 0 while unknown).

    Returns
    -------
    CityPlan
        The settings, and per layer what was loaded, clipped and missing.

    Raises
    ------
    CityError
        If the source cannot be used (its message names the file, key or boundary and why),
        or the store holds another city's data and ``replace`` is not given.
    IngestError
        If features are refused (each named by its OSM id or the file's row); nothing is
        written then.
    ParameterError
        If a box, CRS or grid size is not valid.
    """
    started = time.perf_counter()
    path = Path(source)
    if not path.exists():
        raise CityError(f"{path}: no such file or folder")
    if bbox is not None and boundary is not None:
        raise ParameterError(
            "give the extent as a box or as a boundary, not both", parameter="bbox"
        )
    if bbox is not None:
        bbox = checked_bbox(bbox)
    if metric_crs is not None:
        check_metric_crs(metric_crs)
    if district_grid_m is not None:
        check_grid(district_grid_m)
    if path.is_dir() or mapping is not None:
        loaded = _from_folder(path, mapping, bbox=bbox, progress=progress)
    elif is_osm(path):
        loaded = _from_osm(path, bbox=bbox, boundary=boundary, progress=progress)
    else:
        raise CityError(
            f"{path}: neither an OpenStreetMap extract (.osm, .osm.xml, .osm.gz, .osm.bz2, "
            ".osm.pbf) nor a folder of GIS files with a mapping file"
        )
    if boundary is not None and loaded.boundary_name is None:
        raise CityError("a boundary can only be found in an OpenStreetMap extract")
    centre = ((loaded.bbox[0] + loaded.bbox[2]) / 2, (loaded.bbox[1] + loaded.bbox[3]) / 2)
    if metric_crs is not None:
        _check_scale(metric_crs, *centre)
    crs = metric_crs or metric_crs_for(*centre)
    plan = CityPlan(
        name=(name or loaded.boundary_name or loaded.name or _name_of(path)).strip() or "City",
        bbox=loaded.bbox,
        metric_crs=crs,
        extent_from=loaded.extent_from,
        source=source_name or str(path),
    )
    frames = loaded.frames
    notes: dict[str, str] = {}
    if district_grid_m is not None and _empty(frames.get("districts")):
        grid = district_grid(
            loaded.bbox, cell_m=district_grid_m, metric_crs=crs, within=loaded.shape
        )
        grid.index = pd.RangeIndex(1, len(grid) + 1)
        frames["districts"] = grid
        loaded.sources["districts"] = f"grid:{district_grid_m:g}m"
        notes["districts"] = f"a grid of {len(grid)} cells of {district_grid_m:g} m (网格)"
    buildings = frames.get("buildings")
    people_given = buildings is not None and _given(buildings, "population")
    wanted = estimate_population or population_raster is not None
    if wanted and buildings is not None and len(buildings) and not people_given:
        if population_raster is not None:
            try:
                people = population_from_raster(buildings, population_raster, url, metric_crs=crs)
            except RasterError as exc:
                raise CityError(f"population raster {population_raster!r}: {exc}") from exc
        else:
            options = {} if m2_per_person is None else {"m2_per_person": m2_per_person}
            people = population_from_floor_area(buildings, metric_crs=crs, **options)
        buildings = buildings.copy()
        buildings["population"] = people.to_numpy()
        buildings["population_source"] = people.attrs.get("derived")
        frames["buildings"] = buildings
        notes["buildings"] = f"population {people.attrs.get('derived')}; total {int(people.sum())}"
    for layer_id in LAYERS:
        if layer_id not in frames:
            continue
        clip = loaded.clipped.get(layer_id, Clipping())
        plan.layers.append(
            LayerLoad(
                layer_id,
                features=len(frames[layer_id]),
                cut=clip.cut,
                dropped=clip.dropped,
                note=notes.get(layer_id),
            )
        )
    plan.missing = _missing(frames, url=url, people=people_given or wanted, rasters=not replace)
    if not any(load.features for load in plan.layers):
        data = ", ".join(f"{v:.5f}" for v in loaded.data_box) if loaded.data_box else "none"
        raise CityError(
            f"{path}: nothing of it lies in the extent {plan.bbox} ({plan.extent_from}); "
            f"its data's box is {data}"
        )
    settings = get_settings().model_copy(
        update={"city_bbox": plan.bbox, "metric_crs": crs, "city_name": plan.name}
    )
    labels = set(loaded.sources.values())
    others = _other_sources(labels, url=url)
    if others and not replace:
        listed = ", ".join(f"{label} ({count})" for label, count in sorted(others.items())[:8])
        raise CityError(
            f"the store holds features of other sources: {listed}. Replace them (--replace; "
            "they are retired and stay in the history), or set the city up in another database"
        )
    if dry_run:
        _check_only(frames, loaded.sources, settings)
        plan.seconds = time.perf_counter() - started
        return plan
    shape = loaded.shape
    retired: dict[str, int] = {}

    def before(cur: Any) -> None:
        if replace:
            retired.update(_retire_other_sources(cur, labels))

    def after(cur: Any) -> None:
        cur.execute(
            "INSERT INTO city_settings (name, bbox, metric_crs, boundary, source, report) "
            "VALUES (%s, %s, %s, ST_Multi(ST_GeomFromWKB(%s, 4326)), %s, %s)",
            (
                plan.name,
                list(plan.bbox),
                crs,
                shapely.to_wkb(shape) if loaded.boundary_name else None,
                plan.source,
                json.dumps(plan.to_dict(), default=str),
            ),
        )

    reports = ingest_frames(
        frames,
        source=loaded.sources,
        credit=loaded.credits,
        settings=settings,
        before=before,
        after=after,
        url=url,
        progress=progress,
    )
    _count(plan, reports, retired)
    plan.written = True
    _store_report(plan, url=url)
    get_settings.cache_clear()  # this process now serves the city it wrote
    plan.seconds = time.perf_counter() - started
    return plan


@dataclass
class _Loaded:
    """A source read and clipped, before anything is written."""

    frames: dict[str, gpd.GeoDataFrame]
    clipped: dict[str, Clipping]
    sources: dict[str, str]
    credits: dict[str, Credit]
    bbox: tuple[float, float, float, float]
    shape: shapely.Geometry
    extent_from: str
    boundary_name: str | None = None
    name: str | None = None
    data_box: tuple[float, float, float, float] | None = None


def _from_osm(
    path: Path,
    *,
    bbox: tuple[float, float, float, float] | None,
    boundary: str | None,
    progress: Progress | None,
) -> _Loaded:
    extract = read_extract(path, progress=progress)
    boundary_name = None
    if boundary is not None:
        try:
            found = extract.boundary(boundary)
        except ValueError as exc:
            raise CityError(str(exc)) from exc
        shape = found.geometry
        box = tuple(float(v) for v in shapely.bounds(shape))
        boundary_name = found.name or found.ident
        extent_from = f"the boundary {found.name or ''} ({found.ident})".replace("  ", " ")
    elif bbox is not None:
        box, shape, extent_from = bbox, shapely.box(*bbox), "the given box"
    else:
        data = extract.data_box()
        if data is None:
            raise CityError(f"{path}: the extract maps no roads, buildings or other features")
        box, shape = data, shapely.box(*data)
        extent_from = (
            "the extract's header box, narrowed to its data"
            if extract.header_box is not None
            else "the box of the extract's data"
        )
    if progress:
        progress("clip", 0, 1)
    layer_set = extract.layers(extent=shape)
    if progress:
        progress("clip", 1, 1)
    frames = {k: v for k, v in layer_set.frames.items()}
    return _Loaded(
        frames=frames,
        clipped=layer_set.clipped,
        sources=dict.fromkeys(frames, OSM_SOURCE),
        credits=dict.fromkeys(frames, OPENSTREETMAP),
        bbox=(box[0], box[1], box[2], box[3]),
        shape=shape,
        extent_from=extent_from,
        boundary_name=boundary_name,
        data_box=extract.data_box(),
    )


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read and check the mapping file of a folder of GIS files.

    The file is TOML::

        name = "某市"                      # optional: the city's name
        metric_crs = "EPSG:4547"           # optional
        attribution = "某市自然资源和规划局"  # optional: the credit of every file
        licence = "CC-BY-4.0"              # optional

        [layers.roads]                     # one table per twin layer
        file = "道路.shp"                   # relative to the mapping file
        file_layer = "roads"               # optional: table of a multi-layer file
        id = "编号"                         # optional: column of stable ids
        crs = "EPSG:4547"                  # optional: when the file declares none
        encoding = "GB18030"               # optional: when the file's is missing or wrong
        source = "某市路网2024"              # optional: the source label (default: file name)
        [layers.roads.columns]             # twin attribute = file column
        class = "道路等级"
        lanes = "车道数"

    Parameters
    ----------
    path
        The mapping file.

    Returns
    -------
    dict
        The parsed mapping, each layer's ``file`` resolved against the mapping's folder.

    Raises
    ------
    CityError
        If the file is missing or not TOML, names an unknown layer, key or attribute, or a
        file that does not exist; the message names the file, the key and the reason.
    """
    path = Path(path)
    try:
        mapping = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise CityError(f"{path}: mapping file not found") from exc
    except UnicodeDecodeError as exc:
        raise CityError(f"{path}: not UTF-8 text ({exc}); save the mapping file as UTF-8") from exc
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise CityError(f"{path}: not a readable TOML mapping file: {exc}") from exc
    unknown_keys = set(mapping) - {"name", "metric_crs", "attribution", "licence", "layers"}
    if unknown_keys:
        raise CityError(
            f"{path}: unknown key {', '.join(sorted(unknown_keys))} (known: name, metric_crs, "
            "attribution, licence, layers)"
        )
    layers = mapping.get("layers")
    if not isinstance(layers, dict) or not layers:
        raise CityError(f"{path}: the mapping names no layer ([layers.roads] file = ...)")
    for layer_id, entry in layers.items():
        where = f"{path}: [layers.{layer_id}]"
        if layer_id not in LAYERS:
            raise CityError(f"{where}: no such layer; layers are {', '.join(LAYERS)}")
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise CityError(f'{where}: needs file = "name of the file"')
        unknown = set(entry) - _MAPPING_KEYS
        if unknown:
            raise CityError(f"{where}: unknown key {', '.join(sorted(unknown))}")
        columns = entry.get("columns", {})
        if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
            raise CityError(f'{where}.columns: attribute = "column", both text')
        wrong = set(columns) - set(LAYERS[layer_id].field_names)
        if wrong:
            known = ", ".join(LAYERS[layer_id].field_names)
            raise CityError(
                f"{where}.columns: {', '.join(sorted(wrong))} is not an attribute of "
                f"{layer_id} ({known})"
            )
        target = (path.parent / entry["file"]).resolve()
        if not target.exists():
            raise CityError(f"{where}: file {entry['file']} not found beside the mapping")
        entry["file"] = target
    return mapping


def _from_folder(
    folder: Path,
    mapping_path: str | Path | None,
    *,
    bbox: tuple[float, float, float, float] | None,
    progress: Progress | None,
) -> _Loaded:
    if mapping_path is None:
        mapping_path = folder / "twin-mapping.toml"
    mapping = read_mapping(mapping_path)
    credit = None
    if isinstance(mapping.get("attribution"), str) and mapping["attribution"].strip():
        credit = Credit(mapping["attribution"], mapping.get("licence"))
    frames: dict[str, gpd.GeoDataFrame] = {}
    sources: dict[str, str] = {}
    for done, (layer_id, entry) in enumerate(mapping["layers"].items()):
        if progress:
            progress("read", done, len(mapping["layers"]))
        frame = read_file(
            entry["file"],
            layer=LAYERS[layer_id],
            crs=entry.get("crs"),
            file_layer=entry.get("file_layer"),
            encoding=entry.get("encoding"),
        )
        frame = _mapped_columns(frame, entry, layer_id)
        try:
            frame = frame.to_crs("EPSG:4326")
        except Exception as exc:  # pyproj refuses a transform it cannot make
            raise IngestError(
                str(entry["file"]), [Problem(None, "crs", f"cannot reproject: {exc}")]
            ) from exc
        frames[layer_id] = frame
        sources[layer_id] = str(entry.get("source") or Path(entry["file"]).name)
    if progress:
        progress("read", len(mapping["layers"]), len(mapping["layers"]))
    if bbox is None:
        bounds = [f.total_bounds for f in frames.values() if len(f)]
        if not bounds:
            raise CityError(f"{mapping_path}: the mapped files hold no features")
        stacked = np.vstack(bounds)
        bbox = (
            float(stacked[:, 0].min()),
            float(stacked[:, 1].min()),
            float(stacked[:, 2].max()),
            float(stacked[:, 3].max()),
        )
        extent_from = "the box of the mapped files' features"
    else:
        extent_from = "the given box"
    shape = shapely.box(*bbox)
    clipped: dict[str, Clipping] = {}
    for layer_id, frame in frames.items():
        kept, cut, dropped = clip_frame(frame, shape)
        frames[layer_id] = kept
        clipped[layer_id] = Clipping(cut, dropped)
    if "roads" in frames:  # after the clip: a cut road ends where the extent cuts it
        frames["roads"], made = _road_nodes(frames["roads"])
        if made is not None and "intersections" not in frames:
            frames["intersections"] = made
            sources["intersections"] = sources["roads"]
    return _Loaded(
        frames=frames,
        clipped=clipped,
        sources=sources,
        credits={k: credit for k in frames} if credit else {},
        bbox=bbox,
        shape=shape,
        extent_from=extent_from,
        name=mapping.get("name") if isinstance(mapping.get("name"), str) else None,
    )


def _mapped_columns(
    frame: gpd.GeoDataFrame, entry: Mapping[str, Any], layer_id: str
) -> gpd.GeoDataFrame:
    """Rename the file's columns to the twin's attributes, as the mapping says."""
    columns: dict[str, str] = dict(entry.get("columns", {}))
    if entry.get("id"):
        columns["id"] = entry["id"]
    absent = [column for column in columns.values() if column not in frame.columns]
    if absent:
        listed = ", ".join(str(c) for c in frame.columns if c != frame.geometry.name)
        raise IngestError(
            str(entry["file"]),
            [
                Problem(None, column, f"no such column for {layer_id} (the file has: {listed})")
                for column in absent
            ],
        )
    renamed = {column: attribute for attribute, column in columns.items()}
    # a column already named as a mapped attribute (a reader's own "id") gives way to the mapping
    clashing = [a for a in columns if a in frame.columns and a not in renamed]
    return frame.drop(columns=clashing).rename(columns=renamed)


def _road_nodes(roads: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """Give roads without node ids the ids of their ends, matched by coordinates (about 1 cm)."""
    if "source_node" in roads.columns and "target_node" in roads.columns:
        return roads, None
    roads = roads.explode(index_parts=False)
    roads = roads[roads.geometry.geom_type == "LineString"]
    if "id" in roads.columns:
        parts = roads.groupby(level=0).cumcount().to_numpy()
        many = roads.index.duplicated(keep=False)
        roads["id"] = [
            f"{ident}/{part}" if multi else ident
            for ident, part, multi in zip(roads["id"].astype(str), parts, many, strict=True)
        ]
    lines = roads.geometry.to_numpy()
    first = shapely.get_coordinates(shapely.get_point(lines, 0))
    last = shapely.get_coordinates(shapely.get_point(lines, -1))
    roads = roads.copy()
    roads["source_node"] = [_node_id(x, y) for x, y in first]
    roads["target_node"] = [_node_id(x, y) for x, y in last]
    ends = pd.DataFrame(np.vstack([first, last]), columns=["x", "y"]).assign(
        node_id=list(roads["source_node"]) + list(roads["target_node"])
    )
    ends = ends.drop_duplicates("node_id").reset_index(drop=True)
    intersections = gpd.GeoDataFrame(
        {"id": [f"node/{n}" for n in ends["node_id"]], "node_id": ends["node_id"].to_numpy()},
        geometry=shapely.points(ends[["x", "y"]].to_numpy()),
        crs=roads.crs,
        index=pd.RangeIndex(1, len(ends) + 1),
    )
    return roads, intersections


def _node_id(x: float, y: float) -> int:
    """Return a stable node id from coordinates to 7 decimals (about 1 cm): a positive bigint."""
    key = f"{x:.7f},{y:.7f}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


#: Smallest and largest side of a district grid's cell, m.
GRID_RANGE_M = (10.0, 50_000.0)


def checked_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Return a city's extent as four floats, or say why it is none.

    Parameters
    ----------
    bbox
        (min lon, min lat, max lon, max lat), degrees, EPSG:4326.

    Returns
    -------
    tuple of float
        The same four numbers as floats.

    Raises
    ------
    layers.errors.ParameterError
        ``bbox``: not four finite numbers, or not ordered degrees.
    """
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ParameterError(
            "bbox must be four numbers: min lon, min lat, max lon, max lat", parameter="bbox"
        )
    minx, miny, maxx, maxy = values
    if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
        raise ParameterError(
            "bbox must be (min lon, min lat, max lon, max lat) in degrees, min below max",
            parameter="bbox",
        )
    return (minx, miny, maxx, maxy)


def check_metric_crs(value: str) -> None:
    """Refuse a CRS that is unknown or not projected in metres.

    Parameters
    ----------
    value
        A CRS as pyproj reads it (``EPSG:32633``, WKT, PROJ string).

    Raises
    ------
    layers.errors.ParameterError
        ``metric_crs``: unknown to PROJ, or not a projected CRS in metres.
    """
    try:
        crs = CRS.from_user_input(value)
    except CRSError as exc:
        raise ParameterError(f"unknown CRS {value!r}", parameter="metric_crs") from exc
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter"):
        raise ParameterError(f"{value} is not a projected CRS in metres", parameter="metric_crs")


def check_grid(side_m: float) -> None:
    """Refuse a district grid cell outside :data:`GRID_RANGE_M`.

    Parameters
    ----------
    side_m
        The side of a square cell, m.

    Raises
    ------
    layers.errors.ParameterError
        ``district_grid_m``: not a number within :data:`GRID_RANGE_M`.
    """
    low, high = GRID_RANGE_M
    if not (low <= side_m <= high):
        raise ParameterError(
            f"the district grid's cells must be {low:g} m to {high / 1000:g} km, not {side_m}",
            parameter="district_grid_m",
        )


#: Largest scale error a metric CRS may have at the city's centre (2 %): a UTM zone's is under
#: 0.1 % inside it and 1 % a zone away; Web Mercator's is 100 % at 60° N.
MAX_SCALE_ERROR = 0.02


def _check_scale(value: str, lon: float, lat: float) -> None:
    """Refuse a metric CRS whose lengths are not true at the city (Web Mercator, a far zone)."""
    try:
        factors = Proj(value).get_factors(lon, lat)
    except (CRSError, ProjError) as exc:
        raise ParameterError(f"{value}: {exc}", parameter="metric_crs") from exc
    error = max(abs(factors.meridional_scale - 1), abs(factors.parallel_scale - 1))
    if not error <= MAX_SCALE_ERROR:
        raise ParameterError(
            f"{value} stretches lengths by {error:.0%} at the city's centre ({lon:.4f}, "
            f"{lat:.4f}): lengths and areas would be wrong; choose a CRS true to scale there, "
            f"such as {metric_crs_for(lon, lat)}",
            parameter="metric_crs",
        )


def _name_of(path: Path) -> str:
    """Return a city's name from its file's: ``malta-latest.osm.pbf`` → ``Malta``."""
    stem = path.name
    ending = re.compile(r"[-_.](osm|xml|gz|bz2|pbf|o5m|latest|\d{6,8})$", re.IGNORECASE)
    while ending.search(stem):
        stem = ending.sub("", stem)
    return stem.replace("_", " ").replace("-", " ").strip().title() or "City"


def _empty(frame: gpd.GeoDataFrame | None) -> bool:
    return frame is None or len(frame) == 0


def _given(frame: gpd.GeoDataFrame, column: str) -> bool:
    return column in frame.columns and bool(
        pd.to_numeric(frame[column], errors="coerce").notna().any()
    )


def _missing(
    frames: Mapping[str, gpd.GeoDataFrame], *, url: str | None, people: bool, rasters: bool
) -> list[Missing]:
    missing = []
    for layer_id, (disables, remedy) in _NEEDED_BY.items():
        if _empty(frames.get(layer_id)):
            missing.append(Missing(layer_id, disables, remedy))
    resources = frames.get("resources")
    kinds = set() if resources is None or "kind" not in resources else set(resources["kind"])
    for kind, label in (("fire_station", "fire stations"), ("hospital", "hospitals")):
        if not _empty(resources) and kind not in kinds:
            missing.append(
                Missing(
                    f"resources: {label}",
                    f"coverage and dispatch by {label}",
                    f"twin ingest resources FILE (kind {kind})",
                )
            )
    if not people and not _empty(frames.get("buildings")):
        missing.append(
            Missing(
                "population",
                "people counts of coverage and outages (coverage weighs buildings instead)",
                "population in the buildings file, or leave the estimate from floor area on",
            )
        )
    has_dem = False
    if rasters:  # (a replaced city's rasters go with it)
        try:
            stored = list_rasters(url=url)
            has_dem = bool(len(stored)) and "dem" in set(stored["kind"])
        except Exception:
            has_dem = False
    if not has_dem:
        missing.append(
            Missing(
                "dem",
                "elevations of intersections and pipes, slopes, flood depths (and its credit)",
                "twin raster ingest FILE --name dem --kind dem (an SRTM .hgt or a GeoTIFF)",
            )
        )
    return missing


def _check_only(
    frames: Mapping[str, gpd.GeoDataFrame], sources: Mapping[str, str], settings: Any
) -> None:
    """Check every feature as a load would, writing nothing (a dry run)."""
    from layers.validation import prepare

    for layer_id, frame in frames.items():
        prepare(
            frame,
            layer=LAYERS[layer_id],
            path=f"{sources[layer_id]} ({layer_id})",
            settings=settings,
        )


def _other_sources(labels: set[str], *, url: str | None) -> dict[str, int]:
    """Count the current features of sources other than these, per source."""
    counts: dict[str, int] = {}
    with get_engine(url).connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            for layer in _CITY_LAYERS:
                cur.execute(
                    sql.SQL(
                        "SELECT source, count(*) FROM {} WHERE valid_to IS NULL "
                        "AND NOT source = ANY(%s) AND source NOT LIKE 'grid:%%' GROUP BY source"
                    ).format(sql.Identifier(layer.table)),
                    (sorted(labels),),
                )
                for label, count in cur.fetchall():
                    counts[label] = counts.get(label, 0) + int(count)
    return counts


def _retire_other_sources(cur: Any, labels: set[str]) -> dict[str, int]:
    """Close other sources' current features and every raster, in the load's transaction.

    Returns how many features per layer were closed (and rasters, under ``rasters``): another
    city's DEM or population grid does not describe this one.
    """
    retired = {}
    for layer in _CITY_LAYERS:
        cur.execute(
            sql.SQL(
                "UPDATE {} SET valid_to = clock_timestamp() WHERE valid_to IS NULL "
                "AND NOT source = ANY(%s) AND source NOT LIKE 'grid:%%'"
            ).format(sql.Identifier(layer.table)),
            (sorted(labels),),
        )
        retired[layer.id] = cur.rowcount
    cur.execute("UPDATE rasters SET valid_to = clock_timestamp() WHERE valid_to IS NULL")
    retired["rasters"] = cur.rowcount
    return retired


def _count(plan: CityPlan, reports: list[IngestReport], replaced: Mapping[str, int]) -> None:
    by_layer = {report.layer: report for report in reports}
    for load in plan.layers:
        load.retired = replaced.get(load.layer, 0)
        report = by_layer.get(load.layer)
        if report is None:
            continue
        load.added, load.changed = report.added, report.changed
        load.unchanged, load.retired = report.unchanged, load.retired + report.retired


def _store_report(plan: CityPlan, *, url: str | None) -> None:
    """Keep the load's figures (not the proposal's) with the settings it wrote."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "UPDATE city_settings SET report = %s "
                "WHERE version = (SELECT max(version) FROM city_settings)",
                (json.dumps(plan.to_dict(), default=str),),
            )
