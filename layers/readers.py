"""Reading layer files: GeoJSON, GeoPackage, (zipped) Shapefile, CSV and OpenStreetMap.

Each reader returns a GeoDataFrame in the file's own CRS, indexed by feature number (counted
from 1; for CSV, the line the record starts on), so that problems can name the feature.

A file that cannot be read never raises anything but :class:`~layers.validation.IngestError`,
whose problems name the file, the feature (CSV: line) and the attribute where they can: empty,
truncated or damaged files, directories and unreadable files, text that is not in the file's
encoding, duplicate or unnamed columns, ragged CSV records, tables without a geometry.

Text encodings
--------------
CSV is read as UTF-8 unless a byte-order mark says UTF-16 or UTF-32, or ``encoding`` names
another encoding. A Shapefile's attributes are read in the encoding its ``.cpg`` file (or the
code page of its ``.dbf``) declares, as GDAL does; one that declares none is read as UTF-8;
``encoding`` overrides both. GeoJSON is UTF-8 by its standard (RFC 7946, section 11) and a
GeoPackage by SQLite's, so ``encoding`` does not apply to them. Encodings are Python codec
names (``gb18030``, ``gbk``, ``big5``, ``latin-1``, ``cp1252`` ...).
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from layers.catalog import Layer
from layers.osm import is_osm, read_osm
from layers.settings import get_settings
from layers.validation import ARROW_FLOATS, IngestError, Problem, Problems

_LON_NAMES = ("lon", "lng", "longitude", "x")
_LAT_NAMES = ("lat", "latitude", "y")
_WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")
_CSV_SUFFIXES = (".csv", ".txt")
#: Byte-order marks and the codec that reads past them (UTF-32 LE before UTF-16 LE: FF FE).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ENCODING_HINT = (
    "give the file's encoding (--encoding), e.g. GB18030 or GBK for Chinese text, "
    "Big5 for traditional Chinese, cp1252 or latin-1 for Western European"
)
_UTF8_ONLY = (
    "this file's text is UTF-8 by its format's standard; --encoding applies to CSV files and "
    "Shapefiles (convert the file to UTF-8, e.g. with iconv)"
)
_FORMATS = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GeoPackage",
    ".shp": "Shapefile",
    ".zip": "zip",
    ".gdb": "File Geodatabase",
}
#: Longest CSV field, in characters: a detailed boundary's WKT runs to megabytes (Python's
#: csv module stops at 131,072 by default).
_CSV_FIELD_LIMIT = 2**31 - 1


def read_file(
    path: str | Path,
    *,
    layer: Layer,
    crs: str | None = None,
    file_layer: str | None = None,
    encoding: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a layer file into a GeoDataFrame indexed by feature number, in its own CRS.

    Parameters
    ----------
    path
        GeoJSON, GeoPackage, Shapefile (plain or zipped), File Geodatabase (``.gdb``
        folder), CSV or OSM file.
    layer
        The twin layer being imported (selects the OSM mapping and the GeoPackage table).
    crs
        CRS of the coordinates, overriding what the file declares (required for files that
        declare none, except GeoJSON and OSM which are EPSG:4326).
    file_layer
        Table of a multi-layer file (GeoPackage) to read.
    encoding
        Text encoding (a Python codec name such as ``gb18030`` or ``latin-1``) of a CSV file
        or of a Shapefile's attributes, overriding the byte-order mark, the ``.cpg`` file and
        the ``.dbf`` code page. None: a CSV is UTF-8 (or what its byte-order mark says), a
        Shapefile what it declares, else UTF-8. GeoJSON, GeoPackage and OSM files are UTF-8
        by their standards; any other encoding is refused for them.

    Returns
    -------
    geopandas.GeoDataFrame
        The features, index = 1-based feature number (CSV: line number), with unique column
        names and valid text.

    Raises
    ------
    IngestError
        If the file cannot be read: missing, a directory, unreadable, empty (0 bytes; a
        well-formed file with no features, such as a header-only CSV or an empty
        FeatureCollection, reads as no features), truncated or damaged, text not in its
        encoding, duplicate or unnamed columns, ragged CSV records, no geometry, an unknown
        encoding or CRS.
    """
    path = Path(path)
    name = str(path)
    codec = _codec(encoding, name)
    if not path.exists():
        raise IngestError(name, [Problem(None, None, "file not found")])
    suffix = path.suffix.lower()
    osm = is_osm(path)
    if path.is_dir():
        if suffix != ".gdb":  # a File Geodatabase is a folder; GDAL reads it
            reason = "is a directory, not a file; name the file to import"
            raise IngestError(name, [Problem(None, None, reason)])
    else:
        _check_readable(path)
    if osm and codec not in (None, "utf-8"):
        raise IngestError(name, [Problem(None, "encoding", _UTF8_ONLY)])
    try:
        if osm:
            frame = read_osm(path, [layer.id])[layer.id]
        elif suffix in _CSV_SUFFIXES:
            frame = _read_csv(path, get_settings().max_reported_errors, codec)
        else:
            frame = _read_ogr(path, layer=layer, file_layer=file_layer, codec=codec)
    except IngestError:
        raise
    except Exception as exc:  # GDAL, pandas and OSM readers raise many kinds
        reason = _unreadable(path, exc)
        raise IngestError(name, [Problem(None, None, reason)]) from exc
    _check_table(frame, name)
    if crs is not None:
        try:
            frame = frame.set_crs(CRS.from_user_input(crs), allow_override=True)
        except CRSError as exc:
            raise IngestError(name, [Problem(None, "crs", f"unknown CRS {crs!r}: {exc}")]) from exc
    elif frame.crs is None:
        if suffix in (".geojson", ".json", *_CSV_SUFFIXES):
            frame = frame.set_crs("EPSG:4326")
        else:
            reason = "the file declares no CRS; give one (--crs EPSG:xxxx)"
            raise IngestError(name, [Problem(None, "crs", reason)])
    return frame


def _codec(encoding: str | None, name: str) -> str | None:
    """Return Python's name of a text encoding (``GBK`` -> ``gbk``), None for None."""
    if encoding is None:
        return None
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        reason = (
            f"unknown text encoding {encoding!r}; use a name such as UTF-8, GB18030, GBK, "
            "Big5, latin-1 or cp1252"
        )
        raise IngestError(name, [Problem(None, "encoding", reason)]) from None
    if not info._is_text_encoding:  # base64, zlib ... are codecs too, but not of text
        reason = f"{encoding!r} is not a text encoding"
        raise IngestError(name, [Problem(None, "encoding", reason)])
    return "utf-8" if info.name == "utf-8-sig" else info.name


def _check_readable(path: Path) -> None:
    """Raise unless the file can be opened and holds at least one byte."""
    try:
        with path.open("rb") as handle:
            first = handle.read(1)
    except OSError as exc:
        reason = f"cannot open the file: {exc.strerror or exc}"
        raise IngestError(str(path), [Problem(None, None, reason)]) from exc
    if not first:
        raise IngestError(str(path), [Problem(None, None, "the file is empty (0 bytes)")])


def _unreadable(path: Path, exc: Exception) -> str:
    """Say why a file could not be read, in the user's terms rather than GDAL's."""
    text = str(exc)
    if "not recognized as being in a supported file format" in text:
        kind = _FORMATS.get(path.suffix.lower(), "GIS")
        return (
            f"cannot read file: it is not a {kind} file GDAL can read "
            "(damaged, truncated, or named with the wrong extension?)"
        )
    if "SHAPE_RESTORE_SHX" in text:
        return "cannot read file: the Shapefile's .shx file (its index) is missing"
    if ".shx file" in text:
        return "cannot read file: the Shapefile's .shx file (its index) is truncated or damaged"
    if "database disk image is malformed" in text or "file is not a database" in text:
        return "cannot read file: the GeoPackage is damaged or truncated (SQLite: malformed)"
    if isinstance(exc, zipfile.BadZipFile):
        return f"cannot read file: not a zip archive ({text})"
    if isinstance(exc, UnicodeDecodeError):
        return f"cannot read file: text is not valid {exc.encoding} ({text}); {_ENCODING_HINT}"
    return f"cannot read file: {text}"


def _check_table(frame: Any, name: str) -> None:
    """Raise unless the frame has a geometry and uniquely named columns."""
    if not isinstance(frame, gpd.GeoDataFrame) or frame._geometry_column_name is None:
        reason = "the table has no geometry column"
        raise IngestError(name, [Problem(None, "geometry", reason)])
    _check_names(frame, name)


def _check_names(frame: pd.DataFrame, name: str) -> None:
    """Raise if two columns have one name, or a name holds a NUL character."""
    problems = Problems(get_settings().max_reported_errors)
    counts = Counter(str(c) for c in frame.columns)
    for column, count in counts.items():
        if count > 1:
            problems.add(
                None, column, f"{count} attributes have this name; rename all but one of them"
            )
        if "\x00" in column:
            problems.add(None, column.replace("\x00", "\\x00"), "the name has a NUL character")
    if problems.items:
        raise IngestError(name, problems.items)


def _read_ogr(
    path: Path, *, layer: Layer, file_layer: str | None, codec: str | None
) -> gpd.GeoDataFrame:
    target = _zip_member(path, layer) if path.suffix.lower() == ".zip" else str(path)
    shapefile = target.lower().endswith((".shp", ".dbf"))
    if codec not in (None, "utf-8") and not shapefile:
        raise IngestError(str(path), [Problem(None, "encoding", _UTF8_ONLY)])
    with warnings.catch_warnings(record=True) as caught:
        # GDAL's warnings arrive through a callback: recorded here, never raised from it
        warnings.simplefilter("always")
        if file_layer is None:
            names = [str(row[0]) for row in pyogrio.list_layers(target)]
            if len(names) > 1:
                if layer.id not in names:
                    listed = ", ".join(names)
                    reason = f"the file holds several layers ({listed}); name one"
                    raise IngestError(str(path), [Problem(None, "layer", reason)])
                file_layer = layer.id
        # the feature count of the file, where GDAL knows it without reading the features
        info = None
        if shapefile or target.lower().endswith(".gpkg"):
            try:
                info = pyogrio.read_info(target, layer=file_layer)
            except UnicodeDecodeError:
                if not shapefile:
                    raise  # a Shapefile's field names are decoded below, and named
        recode: str | None = None  # the text was read byte for byte as ISO-8859-1
        if shapefile and (codec is not None or info is None or info["encoding"] != "UTF-8"):
            # GDAL decodes a declared encoding (.cpg, .dbf code page) into UTF-8 itself;
            # anything else is read byte for byte and decoded here, so every error is named
            recode = codec or "utf-8"
        dbf = Path(target).with_suffix(".dbf")
        if (
            shapefile
            and "/vsizip/" not in target
            and not dbf.exists()
            and not dbf.with_suffix(".DBF").exists()
        ):
            reason = "the Shapefile's .dbf file (its attributes) is missing"
            raise IngestError(str(path), [Problem(None, None, reason)])
        try:
            frame = _read_with_gdal(target, file_layer, recode)
        except UnicodeDecodeError:
            if not shapefile or recode:
                raise
            # field names GDAL could not decode (a name cut at 10 bytes mid-character, in a
            # file declared UTF-8): read byte for byte, so the problem names the field
            recode = "utf-8"
            frame = _read_with_gdal(target, file_layer, recode)
    if not isinstance(frame, gpd.GeoDataFrame):
        return frame  # refused by _check_table: no geometry
    _check_names(frame, str(path))
    fids = frame.index.to_numpy()
    if "id" not in frame.columns and not np.array_equal(fids, np.arange(len(frame))):
        # GeoJSON's integer feature "id" members arrive as GDAL feature ids
        frame["id"] = fids.astype(str)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    problems = Problems(get_settings().max_reported_errors)
    declared = "" if recode or not shapefile else " (the encoding its .cpg file declares)"
    for warning in caught:
        text = str(warning.message)
        if "converted correctly" in text:  # GDAL replaced characters it could not decode
            problems.add(None, None, f"text is not valid in its encoding{declared}: {text}")
    if recode:
        frame = _decode_text(frame, recode, problems)
    else:
        _check_utf8(frame, problems, shapefile=shapefile)
    if info is not None and 0 <= info["features"] != len(frame):
        reason = (
            f"the file holds {info['features']} features but {len(frame)} could be read: "
            "it is truncated or damaged"
        )
        problems.add(None, None, reason)
    if problems.items:
        raise IngestError(str(path), problems.items)
    if ".shp" in target.lower():
        # Shapefile cuts column names at 10 characters: source_node -> source_nod
        cut = {f.name[:10]: f.name for f in layer.fields if len(f.name) > 10}
        frame = frame.rename(columns={c: cut[c] for c in frame.columns if c in cut})
    return frame


def _read_with_gdal(target: str, file_layer: str | None, recode: str | None) -> Any:
    """Read a dataset with GDAL through Arrow; text byte for byte if ``recode`` is given."""
    return gpd.read_file(
        target,
        layer=file_layer,
        engine="pyogrio",
        use_arrow=True,
        fid_as_index=True,
        encoding="ISO-8859-1" if recode else None,
        arrow_to_pandas_kwargs={"types_mapper": ARROW_FLOATS.get},  # NaN is not null
    )


def _decode_text(frame: gpd.GeoDataFrame, codec: str, problems: Problems) -> gpd.GeoDataFrame:
    """Decode text read byte for byte (as ISO-8859-1) in the file's encoding.

    ISO-8859-1 maps every byte to the code point of the same number, so ``encode`` gives
    back the file's bytes exactly.
    """
    hint = f"is not valid {codec} text; {_ENCODING_HINT}"
    renamed: dict[Any, str] = {}
    for column in frame.columns:
        if column == frame.geometry.name or not isinstance(column, str):
            continue
        try:
            renamed[column] = column.encode("latin-1").decode(codec)
        except UnicodeError:
            shown = column.encode("latin-1", "replace").decode(codec, "replace")
            reason = (
                f"the field's name is not valid {codec} text (a .dbf field name holds at most "
                "10 bytes: a longer name cut there can end in half a character; rename the "
                f"field), or {_ENCODING_HINT}"
            )
            problems.add(None, shown, reason)
    if problems.items:
        return frame
    frame = frame.rename(columns=renamed)
    for column in frame.columns:
        if column == frame.geometry.name or not _is_text(frame[column]):
            continue
        values = frame[column].to_numpy(dtype=object)
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                out[i] = value
                continue
            raw = value.encode("latin-1", errors="replace")
            try:
                out[i] = raw.decode(codec)
            except UnicodeDecodeError as exc:
                cut = raw[exc.start : exc.end]
                problems.add(int(frame.index[i]), str(column), f"bytes {cut!r} {hint}")
                out[i] = None
        frame[column] = pd.array(out, dtype="str") if frame[column].dtype == "str" else out
    return frame


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or pd.api.types.is_object_dtype(series.dtype)


def _check_utf8(frame: gpd.GeoDataFrame, problems: Problems, *, shapefile: bool) -> None:
    """Name every value that is not UTF-8 (GDAL hands Arrow the file's bytes unchecked)."""
    if shapefile:
        hint = (
            "are not text in the encoding the Shapefile declares (its .cpg file or .dbf code "
            f"page); {_ENCODING_HINT}"
        )
    else:
        hint = "are not UTF-8 text, which the file's format requires; convert it to UTF-8"
    for column in frame.columns:
        array = frame[column].array
        if column == frame.geometry.name or not hasattr(array, "__arrow_array__"):
            continue
        chunks = array.__arrow_array__()
        if not pa.types.is_string(chunks.type) and not pa.types.is_large_string(chunks.type):
            continue
        try:
            chunks.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        raw = chunks.cast(pa.large_binary()).to_pylist()
        for row, value in zip(frame.index, raw, strict=True):
            if value is None:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                shown = value[exc.start : exc.end]
                problems.add(int(row), str(column), f"bytes {shown!r} {hint}")


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


def _decode_csv(path: Path, codec: str | None) -> str:
    """Return a CSV file's text, decoded as ``codec`` or as its byte-order mark says."""
    data = path.read_bytes()
    used = codec or next((c for bom, c in _BOMS if data.startswith(bom)), "utf-8")
    if used == "utf-8":
        used = "utf-8-sig"  # a byte-order mark is not part of the first column's name
    try:
        text = data.decode(used)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(used, errors="replace").count("\n") + 1
        shown = data[exc.start : exc.end]
        named = codec or "UTF-8"
        reason = f"bytes {shown!r} are not valid {named} text; {_ENCODING_HINT}"
        raise IngestError(str(path), [Problem(line, None, reason)]) from exc
    return text.removeprefix("\ufeff")


def _csv_header(path: Path, header: list[str], rows: list[list[str]]) -> list[str]:
    """Check the header line's names: stripped, unique, named where there are values.

    Returns the names, with ``""`` for unnamed columns that hold no value (dropped later).
    """
    name = str(path)
    names = [h.strip() for h in header]
    problems: list[Problem] = []
    for i, column in enumerate(names):
        if "\x00" in column:
            reason = (
                "the header line holds a NUL character: is this a text file (UTF-16 "
                "without a byte-order mark?)"
            )
            raise IngestError(name, [Problem(None, None, reason)])
        if not column and any(len(r) > i and r[i].strip() for r in rows):
            reason = f"column {i + 1} has no name in the header line, but values below it"
            problems.append(Problem(None, None, reason))
    for column, count in Counter(n for n in names if n).items():
        if count > 1:
            places = ", ".join(str(i + 1) for i, n in enumerate(names) if n == column)
            reason = f"{count} columns have this name (columns {places}); rename all but one"
            problems.append(Problem(None, column, reason))
    lower = Counter(n.lower() for n in set(names))
    for candidates in (_LON_NAMES, _LAT_NAMES, _WKT_NAMES):
        for candidate in candidates:
            if lower[candidate] > 1:
                same = ", ".join(repr(n) for n in names if n.lower() == candidate)
                problems.append(Problem(None, None, f"ambiguous columns {same}: rename one"))
    if problems:
        raise IngestError(name, problems)
    return names


def _read_csv(path: Path, limit: int, codec: str | None = None) -> gpd.GeoDataFrame:
    text = _decode_csv(path, codec)
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""))
    problems = Problems(limit)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise IngestError(str(path), [Problem(None, None, "the CSV file has no header line")])
        start = reader.line_num + 1
        for record in reader:
            if any(cell.strip() for cell in record):
                if len(record) > len(header) and any(c.strip() for c in record[len(header) :]):
                    reason = f"the record has {len(record)} fields, the header line {len(header)}"
                    problems.add(start, None, reason)
                rows.append(record + [""] * (len(header) - len(record)))
                lines.append(start)  # the line the record starts on
            start = reader.line_num + 1
    except csv.Error as exc:
        raise IngestError(str(path), [Problem(reader.line_num, None, f"bad CSV: {exc}")]) from exc
    names = _csv_header(path, header, rows)
    if problems.items:
        raise IngestError(str(path), problems.items)
    keep = [i for i, n in enumerate(names) if n]
    table = pd.DataFrame(
        [[r[i] for i in keep] for r in rows],
        columns=[names[i] for i in keep],
        index=lines,
        dtype=str,
    )
    table = table.replace("", None)
    lower = {c.lower(): c for c in table.columns}
    lon = next((lower[n] for n in _LON_NAMES if n in lower), None)
    lat = next((lower[n] for n in _LAT_NAMES if n in lower), None)
    wkt = next((lower[n] for n in _WKT_NAMES if n in lower), None)
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
