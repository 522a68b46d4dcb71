"""Checking features against the layer catalog before anything is written.

Every problem names the feature (its number in the file; for CSV, its line), the field and the
reason, so that a person can find and fix it. :func:`prepare` collects them all (up to
``TWIN_MAX_REPORTED_ERRORS``) and raises :class:`IngestError`; geometries that ``make_valid``
repairs into the layer's type are repaired and reported as warnings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from layers.catalog import Field, Layer
from layers.settings import TwinSettings, get_settings

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
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
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
#: How :mod:`layers.readers` asks pyarrow to hand over floating-point columns: as Arrow-backed
#: columns, where a NaN written in the file stays a NaN and a null stays a null (NumPy floats
#: would make both NaN, and a NaN would be stored as null without a word). :func:`prepare`
#: refuses the NaNs and turns the columns back into NumPy floats.
ARROW_FLOATS: dict[pa.DataType, pd.ArrowDtype] = {
    pa.float64(): pd.ArrowDtype(pa.float64()),
    pa.float32(): pd.ArrowDtype(pa.float32()),
    pa.float16(): pd.ArrowDtype(pa.float16()),
}


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
    feature: str | None = None

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
        if self.row is not None and self.feature is not None:
            parts.append(f"feature {self.row} ({self.feature})")
        elif self.row is not None:
            parts.append(f"feature {self.row}")
        elif self.feature is not None:
            parts.append(f"feature {self.feature}")
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


class Problems:
    """Collects problems and stops once enough are known.

    Parameters
    ----------
    limit
        How many problems to keep.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.items: list[Problem] = []

    def add(self, row: int | None, field: str | None, reason: str) -> None:
        """Add one problem, unless the limit is reached."""
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
        """Whether the limit is reached."""
        return len(self.items) >= self.limit


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
    problems = Problems(settings.max_reported_errors)
    names = pd.Series([str(c) for c in frame.columns])
    for name in names[names.duplicated()].unique():
        problems.add(None, name, "several attributes have this name; rename all but one of them")
    if problems.items:  # every check below reads one column by its name
        raise IngestError(path, problems.items)
    frame = _refuse_nan(frame, problems)
    geometry, repaired = _check_geometry(frame, layer, settings, problems)
    columns: dict[str, Any] = {"id": _check_ids(frame, id_field, path, problems)}
    for spec in layer.fields:
        values = _check_field(frame, spec, problems)
        if spec.default is not None:
            values = np.where(pd.isna(values), spec.default, values)
        columns[spec.name] = values
    for spec in layer.fields:
        if spec.after is not None:
            _check_order(frame.index, columns[spec.after], columns[spec.name], spec, problems)
    # every other attribute, whatever its name, is kept in props
    typed = {id_field, frame.geometry.name, *layer.field_names}
    columns["props"] = _props(frame, [c for c in frame.columns if c not in typed], problems)
    if problems.items:
        raise IngestError(path, _named(problems.items, frame, id_field))
    out = gpd.GeoDataFrame(columns, geometry=geometry, crs="EPSG:4326", index=frame.index)
    return out.rename_geometry("geom"), repaired


def _named(problems: list[Problem], frame: gpd.GeoDataFrame, id_field: str) -> list[Problem]:
    """Give each problem the feature's own id (an OSM ``way/123``, the file's id), if it has one."""
    if id_field not in frame.columns:
        return problems
    ids = frame[id_field]
    named = []
    for problem in problems:
        value = ids.get(problem.row) if problem.row is not None else None
        if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
            named.append(problem)
            continue
        text = str(value)
        named.append(Problem(problem.row, problem.field, problem.reason, text[:80]))
    return named


def _refuse_nan(frame: gpd.GeoDataFrame, problems: Problems) -> gpd.GeoDataFrame:
    """Refuse every NaN a file holds in a number (README: numbers must be finite).

    Only Arrow-backed float columns (:data:`ARROW_FLOATS`, as files are read) tell a NaN from
    a missing value; in a NumPy float column NaN *is* pandas' missing value, and stays one.
    The columns are handed on as NumPy floats, nulls as NaN.
    """
    arrow = [
        name
        for name in frame.columns
        if isinstance(frame[name].dtype, pd.ArrowDtype)
        and pa.types.is_floating(frame[name].dtype.pyarrow_dtype)
    ]
    if not arrow:
        return frame
    frame = frame.copy()
    for name in arrow:
        values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
        nan = np.isnan(values) & ~frame[name].isna().to_numpy()
        problems.add_rows(frame.index[nan], str(name), "NaN is not a finite number")
        frame[name] = values
    return frame


def _check_geometry(
    frame: gpd.GeoDataFrame, layer: Layer, settings: TwinSettings, problems: Problems
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
    # GEOS finds a geometry with a non-finite coordinate invalid ("Invalid Coordinate"), so
    # only the invalid ones need their coordinates looked at
    valid = np.zeros(len(geoms), dtype=bool)
    valid[~missing] = shapely.is_valid(geoms[~missing])
    coords_ok = np.ones(len(geoms), dtype=bool)
    suspect = np.flatnonzero(~valid)
    if len(suspect):
        coords, owner = shapely.get_coordinates(geoms[suspect], return_index=True)
        infinite = np.bincount(
            owner, weights=~np.isfinite(coords).all(axis=1), minlength=len(suspect)
        )
        coords_ok[suspect] = infinite == 0
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
    invalid = checkable & ~valid
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
        f"outside the city's extent {settings.city_bbox} (lon/lat; set by twin city init "
        "or TWIN_CITY_BBOX)",
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


def _check_ids(frame: gpd.GeoDataFrame, id_field: str, path: str, problems: Problems) -> Any:
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
    duplicated = (text.duplicated(keep="first") & ~missing).to_numpy()
    if duplicated.any():
        first = pd.Series(frame.index, index=text.to_numpy()).groupby(level=0).first()
        for row, value in zip(frame.index[duplicated], text[duplicated], strict=True):
            if problems.full:
                break
            problems.add(
                int(row), id_field, f"duplicate id {value!r} (also feature {first[value]})"
            )
    return text.to_numpy()


def _check_field(frame: gpd.GeoDataFrame, spec: Field, problems: Problems) -> Any:
    """Check one typed attribute of every feature; return its values ready for COPY."""
    if spec.name not in frame.columns:
        if spec.required:
            problems.add_rows(frame.index, spec.name, "required attribute is missing")
        return np.full(len(frame), None, dtype=object)
    raw = frame[spec.name]
    present = raw.notna() & ~(raw.astype(str).str.strip() == "")
    if spec.required:
        problems.add_rows(
            frame.index[~present.to_numpy()], spec.name, "required attribute is missing"
        )
    check = {
        "int": _check_number,
        "bigint": _check_number,
        "float": _check_number,
        "bool": _check_bool,
        "timestamp": _check_timestamp,
        "json": _check_json,
        "text": _check_text,
    }[spec.kind]
    return check(raw, present, spec, problems)


def _check_number(
    raw: pd.Series, present: pd.Series, spec: Field, problems: Problems
) -> np.ndarray:
    values = pd.to_numeric(raw.where(present), errors="coerce").astype("float64")
    index = raw.index
    bad = present & values.isna()
    problems.add_rows(
        index[bad.to_numpy()], spec.name, lambda v: f"{_show(v)} is not a number", raw
    )
    infinite = values.isin([np.inf, -np.inf])
    problems.add_rows(
        index[infinite.to_numpy()], spec.name, lambda v: f"{_show(v)} is not a finite number", raw
    )
    ok = values.notna() & ~infinite
    if spec.kind in _INT_RANGE:
        fraction = ok & (values != values.round())
        problems.add_rows(
            index[fraction.to_numpy()],
            spec.name,
            lambda v: f"{_show(v)} is not a whole number",
            raw,
        )
        low, high = _INT_RANGE[spec.kind]
        overflow = ok & ((values < low) | (values > high))
        problems.add_rows(
            index[overflow.to_numpy()],
            spec.name,
            lambda v: f"{_show(v)} is outside the {spec.kind} range",
            raw,
        )
        ok &= ~fraction & ~overflow
    if spec.minimum is not None:
        low_values = ok & (values < spec.minimum)
        problems.add_rows(
            index[low_values.to_numpy()],
            spec.name,
            lambda v: f"{v:g} is below the minimum {spec.minimum:g}",
            values,
        )
    if spec.maximum is not None:
        high_values = ok & (values > spec.maximum)
        problems.add_rows(
            index[high_values.to_numpy()],
            spec.name,
            lambda v: f"{v:g} is above the maximum {spec.maximum:g}",
            values,
        )
    if spec.kind in _INT_RANGE:
        out = np.full(len(raw), None, dtype=object)
        keep = ok.to_numpy()
        if pd.api.types.is_integer_dtype(raw):
            out[keep] = raw[keep].astype("int64").astype(object).to_numpy()
        elif pd.api.types.is_float_dtype(raw) or pd.api.types.is_bool_dtype(raw):
            out[keep] = values[keep].astype("int64").astype(object).to_numpy()
        else:  # text: parse the digits themselves, floats stop being exact at 2**53
            out[keep] = [_whole(r, v) for r, v in zip(raw[keep], values[keep], strict=True)]
        return out
    return values.astype(object).where(ok, None).to_numpy()


def _show(value: Any) -> str:
    """Show a value in a message as the user wrote it: text quoted, numbers plain."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def _whole(raw: Any, value: float) -> int:
    """Return an integer exactly: from the raw value when it is one (floats stop at 2**53)."""
    if isinstance(raw, int | np.integer):
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    return int(value)


def _check_bool(raw: pd.Series, present: pd.Series, spec: Field, problems: Problems) -> np.ndarray:
    mapped = raw.where(present).map(_to_bool)
    bad = present & mapped.isna()
    problems.add_rows(
        raw.index[bad.to_numpy()],
        spec.name,
        lambda v: f"{_show(v)} is not a boolean (true/false, yes/no, 1/0)",
        raw,
    )
    return mapped.astype(object).where(mapped.notna(), None).to_numpy()


def _check_timestamp(
    raw: pd.Series, present: pd.Series, spec: Field, problems: Problems
) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(raw):
        values = pd.to_datetime(raw, utc=True)
    else:
        # ISO 8601 text only: a bare number or 01/02/2026 is ambiguous, and is refused
        text = raw.where(present).map(
            lambda v: (
                v if isinstance(v, str) else v.isoformat() if isinstance(v, datetime) else None
            )
        )
        values = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    bad = present & values.isna()
    problems.add_rows(
        raw.index[bad.to_numpy()],
        spec.name,
        lambda v: f"{_show(v)} is not an ISO 8601 date and time",
        raw,
    )
    return np.array([v.to_pydatetime() if not pd.isna(v) else None for v in values], dtype=object)


def _check_order(
    index: pd.Index, starts: np.ndarray, ends: np.ndarray, spec: Field, problems: Problems
) -> None:
    """Refuse an end not later than its start (``spec.after``), both given."""
    for row, start, end in zip(index, starts, ends, strict=True):
        if start is not None and end is not None and end <= start:
            problems.add(
                int(row),
                spec.name,
                f"{end.isoformat()} is not after {spec.after} ({start.isoformat()})",
            )


def _check_json(raw: pd.Series, present: pd.Series, spec: Field, problems: Problems) -> np.ndarray:
    out: list[str | None] = []
    for row, value, ok in zip(raw.index, raw, present, strict=True):
        text = None
        if ok:
            try:
                parsed = json.loads(value) if isinstance(value, str) else _plain(value)
                text = _dumps(parsed)
            except (TypeError, ValueError) as exc:
                problems.add(int(row), spec.name, f"not valid JSON: {exc}")
        out.append(text)
    return np.array(out, dtype=object)


def _check_text(raw: pd.Series, present: pd.Series, spec: Field, problems: Problems) -> np.ndarray:
    if pd.api.types.is_string_dtype(raw) and not pd.api.types.is_object_dtype(raw):
        text = raw.where(present)
    else:
        text = raw.where(present).map(lambda v: v if isinstance(v, str) else _text(v))
        text = text.astype(object)  # an empty or all-missing column is not text to pandas
    nul = present & text.map(lambda v: isinstance(v, str) and "\x00" in v).astype(bool)
    problems.add_rows(raw.index[nul.to_numpy()], spec.name, "text contains a NUL character")
    if spec.choices:
        unknown = present & ~text.isin(spec.choices)
        allowed = ", ".join(spec.choices)
        problems.add_rows(
            raw.index[unknown.to_numpy()],
            spec.name,
            lambda v: f"{_show(v)} is not one of: {allowed}",
            text,
        )
    return text.astype(object).where(present, None).to_numpy()


def _dumps(value: Any) -> str:
    """Serialise JSON that PostgreSQL's jsonb accepts: no NaN or infinity, no NUL."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    if "\\u0000" in text:
        raise ValueError("text contains a NUL character")
    return text


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
    if type(value) is str:  # the common case, first
        return value
    if isinstance(value, dict):
        if all(type(k) is str and type(v) is str for k, v in value.items()):
            return value  # flat text, as OSM tags are: nothing to turn
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
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()  # binary attributes (GeoPackage BLOB) as hex text
    return value


def _props(frame: pd.DataFrame, columns: list[str], problems: Problems) -> np.ndarray:
    """Serialise the untyped attributes of each feature as a JSON object (nulls left out)."""
    if not columns:
        return np.full(len(frame), "{}", dtype=object)
    records = frame[columns].to_dict("records")
    out = np.empty(len(records), dtype=object)
    for i, (row, record) in enumerate(zip(frame.index, records, strict=True)):
        clean = {k: _plain(v) for k, v in record.items() if v is not None and not _isnan(v)}
        try:
            out[i] = _dumps(clean)
        except ValueError as exc:
            bad = next((str(k) for k in clean if _not_json(clean[k])), "props")
            problems.add(int(row), bad, f"cannot be stored as JSON: {exc}")
    return out


def _not_json(value: Any) -> bool:
    try:
        _dumps(value)
    except (TypeError, ValueError):
        return True
    return False


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
