"""Bulk import of layer files into the store.

``ingest(layer, path)`` reads GeoJSON, GeoPackage, (zipped) Shapefile, CSV (lon/lat or WKT)
or OpenStreetMap (.osm, .osm.pbf) in any CRS, validates every feature against the layer
catalog, and loads the file with COPY inside one transaction. A file with a bad feature loads
nothing: :class:`IngestError` lists each problem with the file, feature number, field and
reason. Invalid geometries that ``make_valid`` repairs into the right type are repaired and
reported. Features are versioned: importing a source again closes the changed and vanished
features (``valid_to``) and inserts their new versions, so history is never overwritten.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from pyproj import CRS
from pyproj.exceptions import CRSError

from layers.catalog import Field, Layer, get_layer
from layers.database import get_engine
from layers.settings import TwinSettings, get_settings

#: ``progress(stage, done, total)`` is called as an import advances.
Progress = Callable[[str, int, int], None]

_LON_NAMES = ("lon", "lng", "longitude", "x")
_LAT_NAMES = ("lat", "latitude", "y")
_WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_OSM_SUFFIXES = (".osm", ".pbf", ".o5m")
_COPY_CHUNK = 5000
_TYPE_NAMES = np.array(
    [
        "Point",
        "LineString",
        "LinearRing",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    ],
    dtype=object,
)
_TYPE_IDS = {str(name): i for i, name in enumerate(_TYPE_NAMES)}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one feature of an input file.

    Parameters
    ----------
    row
        Feature number in the file (1-based; for CSV, the line number), or None for the file.
    field
        The attribute at fault (``geometry`` for the geometry), or None.
    reason
        What is wrong.
    """

    row: int | None
    field: str | None
    reason: str

    def describe(self, path: str) -> str:
        """Return ``file: feature N: field 'f': reason``.

        Parameters
        ----------
        path
            The input file's name.

        Returns
        -------
        str
            One line naming the file, the feature, the field and the reason.
        """
        parts = [path]
        if self.row is not None:
            parts.append(f"feature {self.row}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        parts.append(self.reason)
        return ": ".join(parts)


class IngestError(ValueError):
    """An input file was rejected; nothing was written.

    Parameters
    ----------
    path
        The input file.
    problems
        What is wrong, feature by feature.
    """

    def __init__(self, path: str | Path, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        lines = [p.describe(self.path) for p in problems]
        super().__init__("\n".join(lines) if lines else f"{self.path}: rejected")


@dataclass
class IngestReport:
    """What an import did.

    Attributes
    ----------
    layer
        Layer id.
    source
        The source label the features were stored under.
    read
        Features read from the file.
    added, changed, unchanged, retired
        Features new to the layer; with a new version; identical to the current version;
        and of the same source but absent from the file (closed).
    repaired
        Invalid geometries repaired with ``make_valid``, as problems (warnings).
    seconds
        Wall time of the import.
    """

    layer: str
    source: str
    read: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    retired: int = 0
    repaired: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


class _Problems:
    """Collects problems and stops once enough are known."""

    def __init__(self, limit: int):
        self.limit = limit
        self.items: list[Problem] = []

    def add(self, row: int | None, field: str | None, reason: str) -> None:
        if len(self.items) < self.limit:
            self.items.append(Problem(row, field, reason))

    def add_rows(
        self,
        rows: pd.Index,
        field: str,
        reason: str | Callable[[Any], str],
        values: pd.Series | None = None,
    ) -> None:
        """Add a problem per row; ``reason(values[row])`` when ``reason`` is callable."""
        for row in rows[: self.limit - len(self.items)]:
            text = (
                reason(values.loc[row] if values is not None else None)
                if callable(reason)
                else reason
            )
            self.add(int(row), field, text)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit


# --------------------------------------------------------------------------------------------
# reading


def read_file(
    path: str | Path,
    *,
    layer: Layer,
    crs: str | None = None,
    file_layer: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a layer file into a GeoDataFrame indexed by feature number, in its own CRS.

    Parameters
    ----------
    path
        GeoJSON, GeoPackage, Shapefile (plain or zipped), CSV or OSM file.
    layer
        The twin layer being imported (selects the OSM mapping and the GeoPackage table).
    crs
        CRS of the coordinates, overriding what the file declares (required for files that
        declare none, except GeoJSON and OSM which are EPSG:4326).
    file_layer
        Table of a multi-layer file (GeoPackage) to read.

    Returns
    -------
    geopandas.GeoDataFrame
        The features, index = 1-based feature number (CSV: line number).

    Raises
    ------
    IngestError
        If the file cannot be read.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise IngestError(name, [Problem(None, None, "file not found")])
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".pbf" else ""
    try:
        if path.suffix.lower() in _OSM_SUFFIXES or suffix == ".osm.pbf":
            from layers.osm import read_osm

            frame = read_osm(path, [layer.id])[layer.id]
        elif path.suffix.lower() in (".csv", ".txt"):
            frame = _read_csv(path)
        else:
            frame = _read_ogr(path, layer=layer, file_layer=file_layer)
    except IngestError:
        raise
    except Exception as exc:  # GDAL, pandas and OSM readers raise many kinds
        raise IngestError(name, [Problem(None, None, f"cannot read file: {exc}")]) from exc
    if crs is not None:
        try:
            frame = frame.set_crs(CRS.from_user_input(crs), allow_override=True)
        except CRSError as exc:
            raise IngestError(name, [Problem(None, "crs", f"unknown CRS {crs!r}: {exc}")]) from exc
    elif frame.crs is None:
        if path.suffix.lower() in (".geojson", ".json", ".csv", ".txt"):
            frame = frame.set_crs("EPSG:4326")
        else:
            reason = "the file declares no CRS; give one (--crs EPSG:xxxx)"
            raise IngestError(name, [Problem(None, "crs", reason)])
    return frame


def _read_ogr(path: Path, *, layer: Layer, file_layer: str | None) -> gpd.GeoDataFrame:
    target = f"zip://{path}" if path.suffix.lower() == ".zip" else str(path)
    if file_layer is None:
        names = [str(row[0]) for row in pyogrio.list_layers(target)]
        if len(names) > 1:
            if layer.id not in names:
                listed = ", ".join(names)
                raise IngestError(
                    str(path),
                    [Problem(None, "layer", f"the file holds several layers ({listed}); name one")],
                )
            file_layer = layer.id
    with warnings.catch_warnings():
        # mixed-type GeoJSON columns come back as text; the catalog checks each value
        warnings.filterwarnings("ignore", "Could not parse column", UserWarning)
        frame = gpd.read_file(target, layer=file_layer, engine="pyogrio", use_arrow=True)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return frame


def _read_csv(path: Path) -> gpd.GeoDataFrame:
    table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    table.index = pd.RangeIndex(2, len(table) + 2)  # line numbers: line 1 is the header
    lower = {c.lower(): c for c in table.columns}
    lon = next((lower[n] for n in _LON_NAMES if n in lower), None)
    lat = next((lower[n] for n in _LAT_NAMES if n in lower), None)
    wkt = next((lower[n] for n in _WKT_NAMES if n in lower), None)
    if lon is not None and lat is not None:
        x = pd.to_numeric(table[lon], errors="coerce")
        y = pd.to_numeric(table[lat], errors="coerce")
        bad = table.index[(x.isna() | y.isna()).to_numpy()]
        if len(bad):
            row = int(bad[0])
            raise IngestError(
                str(path),
                [
                    Problem(
                        row,
                        lon,
                        f"coordinates {table.at[row, lon]!r}, "
                        f"{table.at[row, lat]!r} are not numbers",
                    )
                ],
            )
        geometry = gpd.GeoSeries(shapely.points(x.to_numpy(), y.to_numpy()), index=table.index)
        table = table.drop(columns=[lon, lat])
    elif wkt is not None:
        text = table[wkt]
        try:
            geometry = gpd.GeoSeries(shapely.from_wkt(text.to_numpy()), index=table.index)
        except shapely.errors.GEOSException:
            for line, value in zip(table.index, text, strict=True):
                try:
                    shapely.from_wkt(value)
                except shapely.errors.GEOSException as exc:
                    raise IngestError(
                        str(path), [Problem(int(line), wkt, f"unreadable WKT: {exc}")]
                    ) from exc
            raise
        table = table.drop(columns=[wkt])
    else:
        reason = "CSV needs lon/lat columns or a WKT column (wkt or geometry)"
        raise IngestError(str(path), [Problem(None, "geometry", reason)])
    return gpd.GeoDataFrame(table, geometry=geometry)


# --------------------------------------------------------------------------------------------
# validation


def prepare(
    frame: gpd.GeoDataFrame,
    *,
    layer: Layer,
    path: str,
    id_field: str = "id",
    settings: TwinSettings | None = None,
) -> tuple[gpd.GeoDataFrame, list[Problem]]:
    """Validate features against the catalog and shape them for the store.

    Parameters
    ----------
    frame
        Features as read (index = feature number), with a CRS.
    layer
        Target layer.
    path
        File name used in messages.
    id_field
        Attribute holding each feature's stable id; without it ids are ``<file>-<number>``.
    settings
        Settings giving the city's extent; the configured ones by default.

    Returns
    -------
    tuple of (geopandas.GeoDataFrame, list of Problem)
        Columns ``id``, ``props`` (JSON text), ``geom`` (EPSG:4326) and the typed attributes;
        and the geometries repaired on the way.

    Raises
    ------
    IngestError
        Listing every problem found (up to the configured limit).
    """
    settings = settings or get_settings()
    problems = _Problems(settings.max_reported_errors)
    geometry, repaired = _check_geometry(frame, layer, settings, problems)
    columns: dict[str, Any] = {"id": _check_ids(frame, id_field, path, problems)}
    for spec in layer.fields:
        values = _check_field(frame, spec, problems)
        if spec.default is not None:
            values = np.where(pd.isna(values), spec.default, values)
        columns[spec.name] = values
    if problems.items:
        raise IngestError(path, problems.items)
    reserved = {id_field, frame.geometry.name, *layer.field_names, "vid", "source", "props"}
    extra = [c for c in frame.columns if c not in reserved and c not in ("valid_from", "valid_to")]
    columns["props"] = _props(frame, extra)
    out = gpd.GeoDataFrame(columns, geometry=geometry, crs="EPSG:4326", index=frame.index)
    return out.rename_geometry("geom"), repaired


def _check_geometry(
    frame: gpd.GeoDataFrame, layer: Layer, settings: TwinSettings, problems: _Problems
) -> tuple[gpd.GeoSeries, list[Problem]]:
    geoms = frame.geometry.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    problems.add_rows(frame.index[missing], "geometry", "missing or empty geometry")
    # a one-part multi geometry is taken as its part where the layer wants single ones
    types = np.asarray(shapely.get_type_id(geoms))
    multi_ok = [_TYPE_IDS[name] for name in layer.geometry_types if name.startswith("Multi")]
    single = (
        (~missing)
        & np.isin(types, [4, 5, 6])
        & ~np.isin(types, multi_ok)
        & (shapely.get_num_geometries(geoms) == 1)
    )
    geoms = geoms.copy()
    geoms[single] = shapely.get_geometry(geoms[single], 0)
    crs = frame.crs
    if crs is not None and crs.is_geographic:
        xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
        outside = (~missing) & ((xmin < -180) | (xmax > 180) | (ymin < -90) | (ymax > 90))
        problems.add_rows(
            frame.index[outside], "geometry", f"coordinates outside the valid range of {crs}"
        )
    series = gpd.GeoSeries(geoms, index=frame.index, crs=crs)
    if crs is not None and not crs.equals("EPSG:4326"):
        series = series.to_crs("EPSG:4326")
    geoms = series.to_numpy()
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    infinite = np.bincount(owner, weights=~np.isfinite(coords).all(axis=1), minlength=len(geoms))
    coords_ok = infinite == 0
    problems.add_rows(frame.index[~coords_ok], "geometry", f"coordinates outside the area of {crs}")
    allowed = set(layer.geometry_types)
    kinds = shapely.get_type_id(geoms)
    typename = np.where(kinds >= 0, _TYPE_NAMES[np.clip(kinds, 0, 7)], None)
    wrong = (~missing) & ~np.isin(typename, list(allowed))
    expected = " or ".join(layer.geometry_types)
    for row, got in zip(frame.index[wrong], typename[wrong], strict=True):
        problems.add(int(row), "geometry", f"{got} where layer {layer.id} expects {expected}")
    repaired: list[Problem] = []
    checkable = (~missing) & (~wrong) & coords_ok
    invalid = checkable & ~shapely.is_valid(geoms)
    for i in np.flatnonzero(invalid):
        row = int(frame.index[i])
        reason = shapely.is_valid_reason(geoms[i])
        fixed = _repair(geoms[i], allowed)
        if fixed is None:
            problems.add(
                row,
                "geometry",
                f"invalid geometry ({reason}) that cannot be repaired into {expected}",
            )
        else:
            geoms[i] = fixed
            repaired.append(Problem(row, "geometry", f"repaired invalid geometry ({reason})"))
    xmin, ymin, xmax, ymax = settings.city_bbox
    bounds = shapely.bounds(geoms)
    outside = checkable & (
        (bounds[:, 0] < xmin)
        | (bounds[:, 2] > xmax)
        | (bounds[:, 1] < ymin)
        | (bounds[:, 3] > ymax)
    )
    problems.add_rows(
        frame.index[outside],
        "geometry",
        f"outside the city's extent {settings.city_bbox} (lon/lat)",
    )
    if layer.storage_type == "MultiPolygon":
        polygon = shapely.get_type_id(geoms) == 3
        if polygon.any():
            count = int(polygon.sum())
            geoms[polygon] = shapely.multipolygons(geoms[polygon], indices=np.arange(count))
    return gpd.GeoSeries(geoms, index=frame.index, crs="EPSG:4326"), repaired


def _repair(geom: shapely.Geometry, allowed: set[str]) -> shapely.Geometry | None:
    fixed = shapely.make_valid(geom)
    if fixed.geom_type in allowed and fixed.is_valid and not fixed.is_empty:
        return fixed
    if fixed.geom_type == "GeometryCollection":
        members = shapely.get_parts(fixed)
        for kind in ("Polygon", "LineString", "Point"):
            parts = [g for g in members if g.geom_type in (kind, f"Multi{kind}")]
            if not parts:
                continue
            merged = shapely.union_all(parts)
            if merged.geom_type in allowed and merged.is_valid:
                return merged
    if fixed.geom_type == "MultiLineString" and "LineString" in allowed:
        merged = shapely.line_merge(fixed)
        if merged.geom_type == "LineString":
            return merged
    return None


def _check_ids(frame: gpd.GeoDataFrame, id_field: str, path: str, problems: _Problems) -> Any:
    if id_field not in frame.columns:
        stem = Path(path).name
        return [f"{stem}-{row}" for row in frame.index]
    ids = frame[id_field]
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    problems.add_rows(frame.index[missing.to_numpy()], id_field, "missing feature id")
    text = ids.astype(str).where(~missing)
    if pd.api.types.is_float_dtype(ids):  # 7.0 -> "7": integer ids read as floats
        integral = ids.notna() & (ids == ids.round())
        text = text.where(~integral, ids.astype("Int64").astype(str))
    duplicated = text.duplicated(keep="first") & ~missing
    for row in frame.index[duplicated.to_numpy()]:
        first = text.index[(text == text.loc[row]).to_numpy()][0]
        problems.add(int(row), id_field, f"duplicate id {text.loc[row]!r} (also feature {first})")
    return text.to_numpy()


def _check_field(frame: gpd.GeoDataFrame, spec: Field, problems: _Problems) -> Any:
    n = len(frame)
    if spec.name not in frame.columns:
        if spec.required:
            problems.add_rows(frame.index, spec.name, "required attribute is missing")
        return [None] * n
    raw = frame[spec.name]
    present = raw.notna() & ~(raw.astype(str).str.strip() == "")
    if spec.required:
        problems.add_rows(
            frame.index[~present.to_numpy()], spec.name, "required attribute is missing"
        )
    values: pd.Series
    if spec.kind in ("int", "float"):
        values = pd.to_numeric(raw.where(present), errors="coerce")
        bad = present & values.isna()
        problems.add_rows(
            frame.index[bad.to_numpy()], spec.name, lambda v: f"{v!r} is not a number", raw
        )
        if spec.kind == "int":
            fraction = present & values.notna() & (values != values.round())
            problems.add_rows(
                frame.index[fraction.to_numpy()],
                spec.name,
                lambda v: f"{v!r} is not a whole number",
                raw,
            )
        if spec.minimum is not None:
            low = values < spec.minimum
            problems.add_rows(
                frame.index[low.to_numpy()],
                spec.name,
                lambda v: f"{v:g} is below the minimum {spec.minimum:g}",
                values,
            )
        if spec.maximum is not None:
            high = values > spec.maximum
            problems.add_rows(
                frame.index[high.to_numpy()],
                spec.name,
                lambda v: f"{v:g} is above the maximum {spec.maximum:g}",
                values,
            )
        if spec.kind == "int":
            return values.astype("Int64").astype(object).where(values.notna(), None).to_numpy()
        return values.astype(object).where(values.notna(), None).to_numpy()
    if spec.kind == "bool":
        mapped = raw.where(present).map(_to_bool)
        bad = present & mapped.isna()
        problems.add_rows(
            frame.index[bad.to_numpy()],
            spec.name,
            lambda v: f"{v!r} is not a boolean (true/false, yes/no, 1/0)",
            raw,
        )
        return mapped.astype(object).where(mapped.notna(), None).to_numpy()
    if spec.kind == "timestamp":
        values = pd.to_datetime(raw.where(present), errors="coerce", utc=True, format="mixed")
        bad = present & values.isna()
        problems.add_rows(
            frame.index[bad.to_numpy()],
            spec.name,
            lambda v: f"{v!r} is not a date and time",
            raw,
        )
        return np.array(
            [
                v.to_pydatetime() if isinstance(v, pd.Timestamp) and not pd.isna(v) else None
                for v in values
            ],
            dtype=object,
        )
    if spec.kind == "json":
        out: list[str | None] = []
        for row, value, ok in zip(frame.index, raw, present, strict=True):
            if not ok:
                out.append(None)
                continue
            try:
                parsed = json.loads(value) if isinstance(value, str) else _plain(value)
                out.append(json.dumps(parsed))
            except (TypeError, ValueError) as exc:
                problems.add(int(row), spec.name, f"not valid JSON: {exc}")
                out.append(None)
        return np.array(out, dtype=object)
    if pd.api.types.is_string_dtype(raw) and not pd.api.types.is_object_dtype(raw):
        text = raw.where(present)
    else:
        text = raw.where(present).map(lambda v: v if isinstance(v, str) else _text(v))
    if spec.choices:
        unknown = present & ~text.isin(spec.choices)
        allowed = ", ".join(spec.choices)
        problems.add_rows(
            frame.index[unknown.to_numpy()],
            spec.name,
            lambda v: f"{v!r} is not one of: {allowed}",
            text,
        )
    return text.astype(object).where(present, None).to_numpy()


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _plain(value: Any) -> Any:
    """Turn numpy and pandas scalars into JSON-serialisable Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _props(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    if not columns:
        return np.full(len(frame), "{}", dtype=object)
    records = frame[columns].to_dict("records")
    out = np.empty(len(records), dtype=object)
    for i, record in enumerate(records):
        clean = {k: _plain(v) for k, v in record.items() if v is not None and not _isnan(v)}
        out[i] = json.dumps(clean, separators=(",", ":"), sort_keys=True)
    return out


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --------------------------------------------------------------------------------------------
# loading


def ingest(
    layer_id: str,
    path: str | Path,
    *,
    source: str | None = None,
    crs: str | None = None,
    file_layer: str | None = None,
    id_field: str = "id",
    url: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Import a file into a layer, all or nothing.

    Parameters
    ----------
    layer_id
        Target layer, e.g. ``"roads"``.
    path
        Input file: GeoJSON, GeoPackage, Shapefile or zipped Shapefile, CSV, OSM.
    source
        Label stored with each feature; re-importing the same source updates its features.
        Defaults to the file's name.
    crs
        CRS of the input coordinates when the file declares none (or to override it).
    file_layer
        Table to read from a multi-layer file.
    id_field
        Attribute holding stable feature ids.
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)`` while the import runs.

    Returns
    -------
    IngestReport
        Counts of added, changed, unchanged and retired features, and repaired geometries.

    Raises
    ------
    IngestError
        If the file cannot be read or any feature is invalid; nothing is written then.
    """
    started = time.perf_counter()
    layer = get_layer(layer_id)
    name = str(path)
    if progress:
        progress("read", 0, 1)
    frame = read_file(path, layer=layer, crs=crs, file_layer=file_layer)
    if progress:
        progress("read", 1, 1)
    report = ingest_frame(
        layer_id,
        frame,
        source=source or Path(path).name,
        path=name,
        id_field=id_field,
        url=url,
        progress=progress,
    )
    report.seconds = time.perf_counter() - started
    return report


def ingest_frame(
    layer_id: str,
    frame: gpd.GeoDataFrame,
    *,
    source: str,
    path: str = "<GeoDataFrame>",
    id_field: str = "id",
    url: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Import a GeoDataFrame into a layer, all or nothing (see :func:`ingest`).

    Parameters
    ----------
    layer_id
        Target layer.
    frame
        Features with a CRS; the index is used as feature number in messages.
    source
        Label stored with each feature; re-importing the same source updates its features.
    path
        Name used in messages.
    id_field
        Attribute holding stable feature ids.
    url
        Database URL; the configured one by default.
    progress
        Called as ``progress(stage, done, total)``.

    Returns
    -------
    IngestReport
        What the import did.

    Raises
    ------
    IngestError
        If any feature is invalid; nothing is written then.
    """
    started = time.perf_counter()
    layer = get_layer(layer_id)
    if frame.crs is None:
        raise IngestError(path, [Problem(None, "crs", "the features have no CRS")])
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0:
        frame = frame.set_axis(pd.RangeIndex(1, len(frame) + 1))  # feature numbers count from 1
    elif not (pd.api.types.is_integer_dtype(frame.index) and frame.index.is_unique):
        frame = frame.set_axis(pd.RangeIndex(1, len(frame) + 1))
    if progress:
        progress("validate", 0, len(frame))
    prepared, repaired = prepare(frame, layer=layer, path=path, id_field=id_field)
    if progress:
        progress("validate", len(frame), len(frame))
    report = IngestReport(layer=layer.id, source=source, read=len(frame), repaired=repaired)
    _load(layer, prepared, source=source, report=report, url=url, progress=progress)
    report.seconds = time.perf_counter() - started
    return report


def _column_types(cur: Any, layer: Layer, names: tuple[str, ...]) -> list[str]:
    """Return the binary COPY type of each column: geometry and jsonb go as raw bytes."""
    cur.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        (layer.table,),
    )
    types = dict(cur.fetchall())
    return ["bytea" if types[n] in ("geometry", "jsonb") else types[n] for n in names]


def _jsonb(text: Any) -> bytes | None:
    """Encode JSON text in jsonb's binary COPY format (version 1, then the text)."""
    return None if text is None else b"\x01" + text.encode()


def _rows(prepared: gpd.GeoDataFrame, layer: Layer, source: str) -> Iterator[tuple[Any, ...]]:
    """Yield binary COPY rows: source, id, props, geometry (EWKB), typed attributes."""
    geometry = shapely.to_wkb(prepared.geometry.to_numpy(), include_srid=True, output_dimension=2)
    columns: list[Any] = [
        np.full(len(prepared), source, dtype=object),
        prepared["id"].to_numpy(),
        [_jsonb(text) for text in prepared["props"]],
        geometry,
    ]
    for spec in layer.fields:
        values = prepared[spec.name].to_numpy(dtype=object)
        values = np.where(pd.isna(values), None, values)
        columns.append([_jsonb(v) for v in values] if spec.kind == "json" else values)
    return zip(*columns, strict=True)


def _load(
    layer: Layer,
    prepared: gpd.GeoDataFrame,
    *,
    source: str,
    report: IngestReport,
    url: str | None,
    progress: Progress | None,
) -> None:
    """Write the features in one transaction, versioning what changed.

    When the layer has no current feature (a first import), rows are copied straight into the
    table. Otherwise they are copied to a staging
    table and merged: changed features get a new version (the old one is closed with
    ``valid_to``), features of the source absent from the file are closed, new ones inserted.
    """
    table = sql.Identifier(layer.table)
    names = ("source", "id", "props", "geom", *layer.field_names)
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    total = len(prepared)
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            # one import per layer at a time, so versions are closed and opened in order
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twin.ingest.{layer.id}",))
            cur.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {table} WHERE valid_to IS NULL)").format(
                    table=table
                )
            )
            row = cur.fetchone()
            first_import = row is not None and not row[0]
            target = table if first_import else sql.Identifier("_stage")
            if not first_import:
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE _stage ON COMMIT DROP AS "
                        "SELECT {cols} FROM {table} WITH NO DATA"
                    ).format(cols=columns, table=table)
                )
            rebuild = _drop_indexes_of_empty_table(cur, layer) if first_import else []
            copy_sql = sql.SQL("COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)").format(
                target=target, cols=columns
            )
            types = _column_types(cur, layer, names)
            # a writer thread sends while this one encodes the next rows
            with cur.copy(copy_sql, writer=QueuedLibpqWriter(cur)) as copy:
                copy.set_types(types)
                for done, values in enumerate(_rows(prepared, layer, source), start=1):
                    copy.write_row(values)
                    if progress and done % _COPY_CHUNK == 0:
                        progress("copy", done, total)
            if progress:
                progress("copy", total, total)
            if first_import:
                for definition in rebuild:
                    cur.execute(definition)
                report.added = total
                return
            if progress:
                progress("merge", 0, 1)
            _merge(cur, layer, source, report, total)
            if progress:
                progress("merge", 1, 1)


def _drop_indexes_of_empty_table(cur: Any, layer: Layer) -> list[str]:
    """Drop the secondary indexes of an empty layer table; return the SQL to rebuild them.

    Building an index once after a bulk COPY is several times faster than updating it for
    every row. Only done for an empty table, inside the import's transaction, so readers
    never see the table without its indexes.
    """
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(layer.table)))
    row = cur.fetchone()
    if row is None or row[0]:
        return []
    cur.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
        "JOIN pg_class c ON c.relname = i.indexname "
        "JOIN pg_index x ON x.indexrelid = c.oid "
        "WHERE i.schemaname = current_schema() AND i.tablename = %s AND NOT x.indisprimary",
        (layer.table,),
    )
    indexes = cur.fetchall()
    for name, _ in indexes:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [definition for _, definition in indexes]


def _merge(cur: Any, layer: Layer, source: str, report: IngestReport, total: int) -> None:
    """Merge ``_stage`` into the layer table (see :func:`_load`)."""
    table = sql.Identifier(layer.table)
    fields = [sql.Identifier(name) for name in layer.field_names]
    stage_columns = sql.SQL(", ").join(
        [*(sql.Identifier(c) for c in ("id", "props", "geom")), *fields]
    )
    compare_old = sql.SQL(", ").join(
        [sql.SQL("t.source"), sql.SQL("t.props"), sql.SQL("t.geom::text")]
        + [sql.SQL("t.{}").format(f) for f in fields]
    )
    compare_new = sql.SQL(", ").join(
        [sql.SQL("s.source"), sql.SQL("s.props"), sql.SQL("s.geom::text")]
        + [sql.SQL("s.{}").format(f) for f in fields]
    )
    cur.execute("CREATE INDEX ON _stage (id)")
    cur.execute("ANALYZE _stage")
    cur.execute(
        sql.SQL(
            "UPDATE {table} t SET valid_to = transaction_timestamp() FROM _stage s "
            "WHERE t.id = s.id AND t.valid_to IS NULL "
            "AND ({old}) IS DISTINCT FROM ({new})"
        ).format(table=table, old=compare_old, new=compare_new)
    )
    report.changed = cur.rowcount
    cur.execute(
        sql.SQL(
            "UPDATE {table} t SET valid_to = transaction_timestamp() "
            "WHERE t.source = %(source)s AND t.valid_to IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM _stage s WHERE s.id = t.id)"
        ).format(table=table),
        {"source": source},
    )
    report.retired = cur.rowcount
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} (source, {cols}) "
            "SELECT %(source)s, {cols} FROM _stage s WHERE NOT EXISTS "
            "(SELECT 1 FROM {table} t WHERE t.id = s.id AND t.valid_to IS NULL)"
        ).format(table=table, cols=stage_columns),
        {"source": source},
    )
    inserted = cur.rowcount
    report.added = inserted - report.changed
    report.unchanged = total - inserted
