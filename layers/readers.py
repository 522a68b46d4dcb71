"""Reading layer files: GeoJSON, GeoPackage, (zipped) Shapefile, CSV and OpenStreetMap.

Each reader returns a GeoDataFrame in the file's own CRS, indexed by feature number (counted
from 1; for CSV, the line the record starts on), so that problems can name the feature.
"""

from __future__ import annotations

import csv
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from layers.catalog import Layer
from layers.settings import get_settings
from layers.validation import ARROW_FLOATS, IngestError, Problem, Problems

_LON_NAMES = ("lon", "lng", "longitude", "x")
_LAT_NAMES = ("lat", "latitude", "y")
_WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")
_OSM_SUFFIXES = (".osm", ".pbf", ".o5m")


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
            frame = _read_csv(path, get_settings().max_reported_errors)
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
    target = _zip_member(path, layer) if path.suffix.lower() == ".zip" else str(path)
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
        frame = gpd.read_file(
            target,
            layer=file_layer,
            engine="pyogrio",
            use_arrow=True,
            fid_as_index=True,
            arrow_to_pandas_kwargs={"types_mapper": ARROW_FLOATS.get},  # NaN is not null
        )
    fids = frame.index.to_numpy()
    if "id" not in frame.columns and not np.array_equal(fids, np.arange(len(frame))):
        # GeoJSON's integer feature "id" members arrive as GDAL feature ids
        frame["id"] = fids.astype(str)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    if ".shp" in target.lower():
        # Shapefile cuts column names at 10 characters: source_node -> source_nod
        cut = {f.name[:10]: f.name for f in layer.fields if len(f.name) > 10}
        frame = frame.rename(columns={c: cut[c] for c in frame.columns if c in cut})
    return frame


def _zip_member(path: Path, layer: Layer) -> str:
    """Return the GDAL path of the one dataset (Shapefile, GeoPackage, GeoJSON) in a zip."""
    with zipfile.ZipFile(path) as archive:
        members = [
            m
            for m in archive.namelist()
            if m.lower().endswith((".shp", ".gpkg", ".geojson", ".json"))
            and not Path(m).name.startswith(".")
        ]
    if len(members) > 1:
        named = [m for m in members if Path(m).stem == layer.id]
        members = named or members
    if len(members) != 1:
        found = ", ".join(members) or "none"
        reason = f"the archive must hold one Shapefile, GeoPackage or GeoJSON (found: {found})"
        raise IngestError(str(path), [Problem(None, None, reason)])
    return f"/vsizip/{path}/{members[0]}"


def _read_csv(path: Path, limit: int) -> gpd.GeoDataFrame:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise IngestError(str(path), [Problem(None, None, "the CSV file has no header line")])
        rows, lines = [], []
        start = reader.line_num + 1
        for record in reader:
            if any(cell.strip() for cell in record):
                rows.append(record + [""] * (len(header) - len(record)))
                lines.append(start)  # the line the record starts on
            start = reader.line_num + 1
    table = pd.DataFrame([r[: len(header)] for r in rows], columns=header, index=lines, dtype=str)
    table = table.replace("", None)
    lower = {c.lower(): c for c in table.columns}
    lon = next((lower[n] for n in _LON_NAMES if n in lower), None)
    lat = next((lower[n] for n in _LAT_NAMES if n in lower), None)
    wkt = next((lower[n] for n in _WKT_NAMES if n in lower), None)
    problems = Problems(limit)
    if lon is not None and lat is not None:
        x = pd.to_numeric(table[lon], errors="coerce")
        y = pd.to_numeric(table[lat], errors="coerce")
        given = table[lon].notna() | table[lat].notna()
        bad = given & (x.isna() | y.isna())
        for line in table.index[bad.to_numpy()]:
            coords = f"{table.at[line, lon]!r}, {table.at[line, lat]!r}"
            problems.add(int(line), lon, f"coordinates {coords} are not numbers")
        ok = (x.notna() & y.notna()).to_numpy()
        geoms = np.full(len(table), None, dtype=object)
        geoms[ok] = shapely.points(x.to_numpy()[ok], y.to_numpy()[ok])
        table = table.drop(columns=[lon, lat])
    elif wkt is not None:
        geoms = np.full(len(table), None, dtype=object)
        for i, (line, value) in enumerate(zip(table.index, table[wkt], strict=True)):
            if value is None:
                continue  # reported as a missing geometry
            try:
                geoms[i] = shapely.from_wkt(value)
            except shapely.errors.GEOSException as exc:
                problems.add(int(line), wkt, f"unreadable WKT: {exc}")
        table = table.drop(columns=[wkt])
    else:
        reason = "CSV needs lon/lat columns or a WKT column (wkt or geometry)"
        raise IngestError(str(path), [Problem(None, "geometry", reason)])
    if problems.items:
        raise IngestError(str(path), problems.items)
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geoms, index=table.index))
