"""Rasters in the twin: GeoTIFFs versioned in PostGIS, zonal statistics and pipe profiles.

PostGIS is the system of record for rasters as for layers, without ``postgis_raster``: each
version of a raster is a row of the ``rasters`` table (migration 0005) holding the GeoTIFF's
bytes and what queries need without opening it (CRS, footprint in EPSG:4326, size, data type,
nodata, unit, SHA-256). A raster has a name (``dem``, ``flood_2026``) and a kind:

========================  ===============================================  ==============
kind                      values                                           default unit
========================  ===============================================  ==============
``dem``                   ground elevation                                 m
``flood_depth``           water depth (what the router closes roads by)    m
``population_density``    residents per km²                                people/km²
========================  ===============================================  ==============

:func:`ingest_raster` checks a file (readable by rasterio, exactly one band, a CRS, a north-up
geotransform) and stores it all or nothing; a file GDAL reads that is not a GeoTIFF (an SRTM
``.hgt``, say) is converted to a GeoTIFF in memory first. Ingesting a name again closes the
previous version (``valid_to``), so every reader takes ``at=`` to read the raster as it was at
a moment. Changes bump ``rasters`` in ``layer_versions``.

Analysis: :func:`zonal_stats` (and :func:`district_stats`) summarise the cells whose centres
fall in each zone, with a population count for population density rasters; :func:`pipe_profiles`
samples the DEM along the pipelines for ground, pipe elevation, cover, slope and sewers laid
against their flow. :func:`flood_raster` hands a stored flood depth raster to the router.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.features import geometry_mask
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window

from layers.catalog import get_layer
from layers.database import cursor, get_engine
from layers.errors import ParameterError
from layers.queries import as_of, read_layer
from layers.settings import get_settings
from layers.sources import record_source
from layers.validation import IngestError, Problem

__all__ = [
    "KINDS",
    "STATS",
    "CheckedRaster",
    "IngestError",
    "RasterError",
    "RasterInfo",
    "check_raster",
    "district_stats",
    "flood_raster",
    "ingest_raster",
    "list_rasters",
    "open_raster",
    "pipe_profiles",
    "raster_bytes",
    "raster_transaction",
    "zonal_stats",
]

#: Raster kinds and the unit stored when neither the caller nor the file gives one.
KINDS: dict[str, str] = {"dem": "m", "flood_depth": "m", "population_density": "people/km²"}
#: Statistics :func:`zonal_stats` computes.
STATS = ("count", "min", "max", "mean", "sum", "std", "median")

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_AS_OF = "valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)"
_CURRENT = "valid_to IS NULL"
_META = (
    "vid",
    "name",
    "kind",
    "source",
    "valid_from",
    "valid_to",
    "crs",
    "width",
    "height",
    "dtype",
    "nodata",
    "unit",
    "sha256",
)


class RasterError(ParameterError):
    """A raster that does not exist (at that moment) or cannot be used as asked."""


@dataclass(frozen=True)
class CheckedRaster:
    """A raster file checked by :func:`check_raster`, ready to be stored.

    Attributes
    ----------
    path
        The input file.
    name, kind, source, unit
        What it will be stored as.
    crs
        Its CRS (``EPSG:<code>`` when it has one, else WKT).
    footprint
        Its extent as a polygon in EPSG:4326.
    width, height, dtype, nodata
        Its grid and cell values.
    data
        The GeoTIFF's bytes (the file's own, or the converted file's).
    sha256
        SHA-256 of ``data``.
    converted_from
        The GDAL driver of the input when it was converted to a GeoTIFF, else None.
    attribution, licence
        The credit of ``source`` and its SPDX licence, recorded in ``data_sources`` with the
        raster (:func:`layers.sources.record_source`), or None to record none.
    """

    path: str
    name: str
    kind: str
    source: str
    unit: str | None
    crs: str
    footprint: shapely.Polygon
    width: int
    height: int
    dtype: str
    nodata: float | None
    data: bytes
    sha256: str
    converted_from: str | None
    attribution: str | None = None
    licence: str | None = None


@dataclass(frozen=True)
class RasterInfo:
    """A stored version of a raster, as :func:`ingest_raster` reports it.

    Attributes
    ----------
    name, kind, source, unit
        Name, kind, provenance and unit of the cell values.
    valid_from
        When this version became current.
    crs
        The raster's CRS (``EPSG:<code>`` when it has one, else WKT).
    bounds
        ``(min lon, min lat, max lon, max lat)`` of its footprint.
    width, height, dtype, nodata
        Grid size in cells, cell type, nodata value (None when it declares none).
    sha256, size
        SHA-256 and length of the stored GeoTIFF.
    converted_from
        The input's GDAL driver when it was converted to a GeoTIFF, else None.
    status
        ``added`` (a new name), ``replaced`` (the previous version was closed) or
        ``unchanged`` (the current version is identical; nothing was written).
    seconds
        Wall time of the ingest.
    """

    name: str
    kind: str
    source: str
    unit: str | None
    valid_from: datetime
    crs: str
    bounds: tuple[float, float, float, float]
    width: int
    height: int
    dtype: str
    nodata: float | None
    sha256: str
    size: int
    converted_from: str | None
    status: str
    seconds: float = 0.0


# --- ingest ---------------------------------------------------------------------------------


def ingest_raster(
    path: str | Path,
    *,
    name: str,
    kind: str,
    url: str | None = None,
    source: str | None = None,
    unit: str | None = None,
    attribution: str | None = None,
    licence: str | None = None,
) -> RasterInfo:
    """Store a single-band raster file as a new version of raster ``name``, all or nothing.

    The file is checked first (:func:`check_raster`); a GeoTIFF is stored byte for byte, any
    other file GDAL reads (an SRTM ``.hgt``, say) is converted to a GeoTIFF in memory. If the
    name has a current version it is closed (``valid_to``) unless it is identical (same bytes,
    kind, source and unit), in which case nothing is written.

    Parameters
    ----------
    path
        The raster file.
    name
        Raster name: lower-case letters, digits and ``_``, starting with a letter.
    kind
        ``dem``, ``flood_depth`` or ``population_density`` (see :data:`KINDS`).
    url
        Database URL; the configured one by default.
    source
        Provenance stored with the raster; the file's name by default.
    unit
        Unit of the cell values; the file's band unit, else the kind's default.
    attribution
        The credit the source's licence asks for ("SRTM (NASA/USGS), public domain"), recorded
        for ``source`` in the same transaction (:func:`layers.sources.record_source`); the
        viewer credits it while the raster is current. None records nothing.
    licence
        SPDX identifier of the source's licence (``CC-BY-4.0``); None when unknown or public
        domain.

    Returns
    -------
    RasterInfo
        The stored version.

    Raises
    ------
    IngestError
        If the file is not a usable raster or the name or kind is wrong; every problem names
        the file and the reason, and nothing is written.
    """
    started = time.perf_counter()
    checked = check_raster(
        path,
        name=name,
        kind=kind,
        source=source,
        unit=unit,
        attribution=attribution,
        licence=licence,
    )
    with raster_transaction([checked], url=url) as infos:
        pass
    return replace(infos[0], seconds=time.perf_counter() - started)


def check_raster(
    path: str | Path,
    *,
    name: str,
    kind: str,
    source: str | None = None,
    unit: str | None = None,
    attribution: str | None = None,
    licence: str | None = None,
) -> CheckedRaster:
    """Read and check a raster file without writing anything (the first half of an ingest).

    Parameters
    ----------
    path
        The raster file.
    name
        Raster name: lower-case letters, digits and ``_``, starting with a letter.
    kind
        ``dem``, ``flood_depth`` or ``population_density``.
    source
        Provenance; the file's name by default.
    unit
        Unit of the cell values; the file's band unit, else the kind's default.
    attribution
        The credit of ``source``, recorded when the raster is stored (see :func:`ingest_raster`).
    licence
        SPDX identifier of the source's licence.

    Returns
    -------
    CheckedRaster
        The raster as a GeoTIFF with its metadata.

    Raises
    ------
    IngestError
        Listing every problem found: name, kind, attribution (given but empty), unreadable
        file, band count, CRS, geotransform.
    """
    label = str(path)
    problems: list[Problem] = []
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(
            Problem(
                None,
                "name",
                f"{name!r} is not a raster name: lower-case letters, digits and _, "
                "starting with a letter, at most 63 characters",
            )
        )
    if kind not in KINDS:
        problems.append(
            Problem(None, "kind", f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        )
    if attribution is not None and not attribution.strip():
        problems.append(
            Problem(None, "attribution", "is empty: give the credit the source's licence asks for")
        )
    try:
        with warnings.catch_warnings():
            # a file without georeferencing is reported below, as a problem of the file
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as dataset:
                problems.extend(_dataset_problems(dataset))
                if problems:
                    raise IngestError(label, problems)
                try:
                    footprint = _footprint(
                        dataset.crs, dataset.transform, dataset.width, dataset.height
                    )
                except (CRSError, ProjError) as exc:
                    problems.append(Problem(None, "crs", f"cannot be used: {exc}"))
                    raise IngestError(label, problems) from exc
                data, converted_from = _geotiff_bytes(dataset, Path(path))
                file_unit = dataset.units[0] if dataset.units else None
                checked = CheckedRaster(
                    path=label,
                    name=name,
                    kind=kind,
                    source=source or Path(path).name,
                    unit=unit or file_unit or KINDS[kind],
                    crs=dataset.crs.to_string(),
                    footprint=footprint,
                    width=dataset.width,
                    height=dataset.height,
                    dtype=dataset.dtypes[0],
                    nodata=None if dataset.nodata is None else float(dataset.nodata),
                    data=data,
                    sha256=hashlib.sha256(data).hexdigest(),
                    converted_from=converted_from,
                    attribution=attribution.strip() if attribution else None,
                    licence=licence or None,
                )
    except RasterioIOError as exc:
        problems.append(Problem(None, None, f"not a raster rasterio can read ({exc})"))
        raise IngestError(label, problems) from exc
    if not checked.footprint.is_valid or not np.isfinite(checked.footprint.bounds).all():
        raise IngestError(
            label, [Problem(None, "crs", "the raster's extent cannot be expressed in lon/lat")]
        )
    return checked


def _dataset_problems(dataset: DatasetReader) -> list[Problem]:
    problems = []
    if dataset.count != 1:
        problems.append(
            Problem(
                None,
                "bands",
                f"has {dataset.count} bands; a raster of the twin holds exactly one "
                "(extract it with gdal_translate -b N)",
            )
        )
    if dataset.crs is None:
        problems.append(Problem(None, "crs", "has no CRS (assign one with gdal_edit -a_srs)"))
    transform = dataset.transform
    if transform.is_identity or transform.determinant == 0:
        how = (
            "it is georeferenced by ground control points only; warp it with gdalwarp"
            if dataset.gcps[0]
            else "its cells have no map coordinates"
        )
        problems.append(Problem(None, "transform", f"has no geotransform: {how}"))
    elif transform.b != 0 or transform.d != 0:
        problems.append(
            Problem(None, "transform", "is rotated or sheared; warp it north-up with gdalwarp")
        )
    if dataset.count >= 1 and np.dtype(dataset.dtypes[0]).kind == "c":
        problems.append(Problem(None, "dtype", f"has complex cells ({dataset.dtypes[0]})"))
    return problems


def _geotiff_bytes(dataset: DatasetReader, path: Path) -> tuple[bytes, str | None]:
    """Return the file's bytes if it is a self-contained GeoTIFF, else a converted GeoTIFF."""
    if dataset.driver == "GTiff" and len(dataset.files) == 1 and path.is_file():
        return path.read_bytes(), None
    # not a GeoTIFF, or a GeoTIFF leaning on side-car files (.aux.xml, .tfw, .ovr)
    dtype = np.dtype(dataset.dtypes[0])
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": dataset.width,
        "height": dataset.height,
        "count": 1,
        "dtype": dataset.dtypes[0],
        "crs": dataset.crs,
        "transform": dataset.transform,
        "nodata": dataset.nodata,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    if dtype.kind in "iu":
        profile["predictor"] = 2
    with MemoryFile() as memory:
        with memory.open(**profile) as out:
            out.write(dataset.read(1), 1)
            if dataset.units and dataset.units[0]:
                out.units = dataset.units
        return bytes(memory.getbuffer()), dataset.driver


def _footprint(crs: Any, transform: Affine, width: int, height: int) -> shapely.Polygon:
    """Return the raster's extent as a (densified) polygon in EPSG:4326."""
    x0, y0 = transform @ (0, 0)
    x1, y1 = transform @ (width, height)
    box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    target = CRS.from_epsg(4326)
    source = CRS.from_user_input(crs.to_wkt())
    if source == target:
        return box
    dense = shapely.segmentize(box, max(abs(x1 - x0), abs(y1 - y0)) / 32)
    xy = shapely.get_coordinates(dense)
    lon, lat = Transformer.from_crs(source, target, always_xy=True).transform(xy[:, 0], xy[:, 1])
    return shapely.Polygon(np.column_stack([lon, lat]))


@contextmanager
def raster_transaction(
    rasters: Sequence[CheckedRaster], *, url: str | None = None
) -> Iterator[list[RasterInfo]]:
    """Write checked rasters in a transaction that commits when the block ends without error.

    The rasters are written when the block is entered and committed when it is left; an
    exception in the block rolls them back. This lets another import (the sample city's
    layers, say) run inside the block so that the rasters are stored only if it succeeds.

    Parameters
    ----------
    rasters
        Rasters from :func:`check_raster`, with distinct names.
    url
        Database URL; the configured one by default.

    Yields
    ------
    list of RasterInfo
        One per raster, in order.

    Raises
    ------
    RasterError
        If two rasters have the same name.
    """
    names = [r.name for r in rasters]
    if len(set(names)) != len(names):
        raise RasterError("two rasters of one transaction have the same name", parameter="name")
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            # ingests of a name queue up, so versions are closed and opened in order
            for name in sorted(names):
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twin.ingest.raster.{name}",)
                )
            infos = [_store(cur, raster) for raster in rasters]
        yield infos


def _store(cur: Any, raster: CheckedRaster) -> RasterInfo:
    if raster.attribution:
        record_source(
            cur, source=raster.source, attribution=raster.attribution, licence=raster.licence
        )
    cur.execute(
        "SELECT vid, valid_from, kind, source, unit, sha256 FROM rasters "
        "WHERE name = %s AND valid_to IS NULL",
        (raster.name,),
    )
    current = cur.fetchone()
    if current is not None and tuple(current[2:]) == (
        raster.kind,
        raster.source,
        raster.unit,
        raster.sha256,
    ):
        return _info(raster, valid_from=current[1], status="unchanged")
    # the moment of the new version: read after the lock, not at transaction start
    cur.execute("SELECT clock_timestamp()")
    row = cur.fetchone()
    assert row is not None
    now = row[0]
    if current is not None:
        cur.execute("UPDATE rasters SET valid_to = %s WHERE vid = %s", (now, current[0]))
    cur.execute(
        "INSERT INTO rasters (name, kind, source, valid_from, crs, bounds, width, height, "
        "dtype, nodata, unit, sha256, data) VALUES (%s, %s, %s, %s, %s, "
        "ST_GeomFromWKB(%s, 4326), %s, %s, %s, %s, %s, %s, %s)",
        (
            raster.name,
            raster.kind,
            raster.source,
            now,
            raster.crs,
            shapely.to_wkb(raster.footprint),
            raster.width,
            raster.height,
            raster.dtype,
            raster.nodata,
            raster.unit,
            raster.sha256,
            raster.data,
        ),
    )
    return _info(raster, valid_from=now, status="added" if current is None else "replaced")


def _info(raster: CheckedRaster, *, valid_from: datetime, status: str) -> RasterInfo:
    minx, miny, maxx, maxy = (float(v) for v in raster.footprint.bounds)
    return RasterInfo(
        name=raster.name,
        kind=raster.kind,
        source=raster.source,
        unit=raster.unit,
        valid_from=valid_from,
        crs=raster.crs,
        bounds=(minx, miny, maxx, maxy),
        width=raster.width,
        height=raster.height,
        dtype=raster.dtype,
        nodata=raster.nodata,
        sha256=raster.sha256,
        size=len(raster.data),
        converted_from=raster.converted_from,
        status=status,
    )


# --- reading --------------------------------------------------------------------------------


def list_rasters(*, url: str | None = None, at: datetime | str | None = None) -> pd.DataFrame:
    """Return the rasters (their current versions, or those valid at a moment).

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    at
        A moment: the versions valid then. None: the current versions.

    Returns
    -------
    pandas.DataFrame
        One row per raster, ordered by name: ``name``, ``kind``, ``source``, ``valid_from``,
        ``valid_to``, ``crs``, ``width``, ``height``, ``dtype``, ``nodata``, ``unit``,
        ``sha256``, ``size`` (bytes of the GeoTIFF) and ``bounds`` (min lon, min lat, max
        lon, max lat).
    """
    where, params = _as_of(at)
    columns = ", ".join(_META[1:])
    with cursor(url) as cur:
        cur.execute(
            f"SELECT {columns}, octet_length(data), ST_XMin(bounds), ST_YMin(bounds), "  # noqa: S608
            f"ST_XMax(bounds), ST_YMax(bounds) FROM rasters WHERE {where} ORDER BY name",
            params,
        )
        rows = cur.fetchall()
    names = [*_META[1:], "size"]
    frame = pd.DataFrame([row[: len(names)] for row in rows], columns=names)
    frame["bounds"] = pd.Series(
        [tuple(map(float, row[len(names) :])) for row in rows], dtype=object
    )
    frame["valid_from"] = pd.to_datetime(frame["valid_from"], utc=True)
    frame["valid_to"] = pd.to_datetime(frame["valid_to"], utc=True)
    return frame


def raster_bytes(name: str, *, url: str | None = None, at: datetime | str | None = None) -> bytes:
    """Return a raster's GeoTIFF, byte for byte as stored.

    Parameters
    ----------
    name
        Raster name.
    url
        Database URL; the configured one by default.
    at
        A moment: the version valid then. None: the current version.

    Returns
    -------
    bytes
        The GeoTIFF file.

    Raises
    ------
    RasterError
        If there is no such raster (then); the message names the known ones.
    """
    return _load(name, url=url, at=at)[1]


@contextmanager
def open_raster(
    name: str, *, url: str | None = None, at: datetime | str | None = None
) -> Iterator[DatasetReader]:
    """Open a stored raster with rasterio (in memory).

    Parameters
    ----------
    name
        Raster name.
    url
        Database URL; the configured one by default.
    at
        A moment: the version valid then. None: the current version.

    Yields
    ------
    rasterio.io.DatasetReader
        The open dataset; closed when the block ends.

    Raises
    ------
    RasterError
        If there is no such raster (then); the message names the known ones.
    """
    _, data = _load(name, url=url, at=at)
    with MemoryFile(data) as memory, memory.open() as dataset:
        yield dataset


def flood_raster(name: str, *, url: str | None = None, at: datetime | str | None = None) -> bytes:
    """Return a stored flood depth raster's GeoTIFF, for ``routing.closures.flooded_edges``.

    Parameters
    ----------
    name
        Raster name; it must be of kind ``flood_depth``.
    url
        Database URL; the configured one by default.
    at
        A moment: the version valid then. None: the current version.

    Returns
    -------
    bytes
        The GeoTIFF of water depth.

    Raises
    ------
    RasterError
        If there is no such raster, or it is not of kind ``flood_depth``.
    """
    meta, data = _load(name, url=url, at=at)
    _require_kind(meta, "flood_depth")
    return data


def _as_of(at: datetime | str | None) -> tuple[str, dict[str, Any]]:
    try:
        moment = as_of(at)
    except ValueError as exc:
        raise RasterError(f"at={at!r} is not an ISO 8601 moment", parameter="at") from exc
    return (_AS_OF if moment else _CURRENT), {"at": moment}


def _load(name: str, *, url: str | None, at: datetime | str | None) -> tuple[dict[str, Any], bytes]:
    """Return a raster version's metadata and bytes."""
    where, params = _as_of(at)
    with cursor(url) as cur:
        cur.execute(
            f"SELECT {', '.join(_META)}, data FROM rasters "  # noqa: S608
            f"WHERE name = %(name)s AND {where}",
            {**params, "name": name},
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(f"SELECT name FROM rasters WHERE {where} ORDER BY name", params)  # noqa: S608
            known = [r[0] for r in cur.fetchall()]
    if row is None:
        moment = f" at {params['at'].isoformat()}" if params["at"] else ""
        listed = f"known rasters: {', '.join(known)}" if known else "there are no rasters"
        raise RasterError(f"no raster named {name!r}{moment}; {listed}", parameter="name")
    return dict(zip(_META, row[:-1], strict=True)), bytes(row[-1])


def _require_kind(meta: dict[str, Any], kind: str) -> None:
    if meta["kind"] != kind:
        raise RasterError(
            f"raster {meta['name']!r} is of kind {meta['kind']!r}, not {kind!r}",
            parameter="name",
        )


# --- zonal statistics -----------------------------------------------------------------------


def zonal_stats(
    name: str,
    zones: gpd.GeoDataFrame,
    *,
    url: str | None = None,
    at: datetime | str | None = None,
    stats: Sequence[str] = ("count", "min", "max", "mean", "sum"),
) -> pd.DataFrame:
    """Summarise a raster's cells per zone.

    A cell belongs to a zone when its centre falls inside it (``all_touched`` false); zones are
    reprojected to the raster's CRS, nodata (and NaN) cells are left out. A zone that holds no
    cell centre (smaller than a cell, or a sliver) takes the one cell under its representative
    point. Zones may overlap: each is summarised on its own.

    For a ``population_density`` raster (people per km²) a ``population`` column adds up
    density × cell area over the zone's cells (a zone that takes the cell under its
    representative point counts density × its own area). Cell areas are true areas: for a
    geographic CRS the geodesic area of each row's cells on the CRS's ellipsoid; for a
    projected CRS each cell's area on the ellipsoid from its corners in longitude and latitude,
    whatever the projection's distortion.

    Parameters
    ----------
    name
        Raster name.
    zones
        Polygons with a CRS; their index is kept, and their ``id`` column if they have one.
    url
        Database URL; the configured one by default.
    at
        A moment: the raster version valid then. None: the current version.
    stats
        Statistics to compute, from :data:`STATS` (``std`` is the population standard
        deviation).

    Returns
    -------
    pandas.DataFrame
        One row per zone, indexed like ``zones``: ``id`` (if ``zones`` has one), the
        statistics (``count`` is 0 and the others NaN for a zone without data), and
        ``population`` for population density rasters.

    Raises
    ------
    RasterError
        If the raster does not exist, a statistic is unknown, or the zones have no CRS.
    """
    unknown = [s for s in stats if s not in STATS]
    if unknown or not stats:
        raise RasterError(
            f"unknown statistics {unknown}; choose from {', '.join(STATS)}", parameter="stats"
        )
    if zones.crs is None:
        raise RasterError("the zones have no CRS", parameter="zones")
    meta, data = _load(name, url=url, at=at)
    population = meta["kind"] == "population_density"
    columns: dict[str, list[float]] = {s: [] for s in stats}
    if population:
        columns["population"] = []
    with MemoryFile(data) as memory, memory.open() as dataset:
        geometries = zones.geometry.to_crs(dataset.crs).to_numpy()
        present = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
        grid = _Grid.read(dataset, shapely.total_bounds(geometries[present]))
        cell_areas = _CellAreas(grid) if population else None
        lonlat = zones.geometry.to_crs(4326).to_numpy() if population else geometries
        for geometry, zone in zip(geometries, lonlat, strict=True):
            rows, cols, whole = grid.cells_in(geometry)
            values = grid.values[rows - grid.row0, cols - grid.col0]
            keep = np.isfinite(values)
            values, rows, cols = values[keep], rows[keep], cols[keep]
            for stat in stats:
                columns[stat].append(_statistic(stat, values))
            if cell_areas is not None:
                # a zone within one cell holds the density times its own area
                areas = cell_areas(rows, cols) if whole else np.full(len(rows), _km2(zone))
                columns["population"].append(float(np.sum(values * areas)))
    result = pd.DataFrame(columns, index=zones.index)
    if "count" in result:
        result["count"] = result["count"].astype("int64")
    if "id" in zones.columns:
        result.insert(0, "id", zones["id"].to_numpy())
    return result


def district_stats(
    name: str,
    *,
    url: str | None = None,
    at: datetime | str | None = None,
    stats: Sequence[str] = ("count", "min", "max", "mean", "sum"),
) -> pd.DataFrame:
    """Summarise a raster over the districts layer (see :func:`zonal_stats`).

    Parameters
    ----------
    name
        Raster name.
    url
        Database URL; the configured one by default.
    at
        A moment: the raster and the districts as they were then. None: the current ones.
    stats
        Statistics to compute, from :data:`STATS`.

    Returns
    -------
    pandas.DataFrame
        One row per district, ordered by id: ``id``, ``name``, ``level``, the statistics, and
        ``population`` (from the raster) for population density rasters.
    """
    districts = read_layer("districts", at=at, url=url)
    result = zonal_stats(name, districts, url=url, at=at, stats=stats)
    result.insert(1, "name", districts["name"].to_numpy())
    result.insert(2, "level", districts["level"].array)
    return result


def _km2(geometry: Any) -> float:
    """Return the area of a lon/lat geometry on the WGS 84 ellipsoid, km²."""
    if geometry is None or shapely.is_empty(geometry):
        return 0.0
    return abs(Geod(ellps="WGS84").geometry_area_perimeter(geometry)[0]) / 1e6


def _statistic(stat: str, values: np.ndarray) -> float:
    if stat == "count":
        return float(len(values))
    if len(values) == 0:
        return math.nan
    if stat == "sum":
        return float(np.sum(values))
    if stat == "min":
        return float(np.min(values))
    if stat == "max":
        return float(np.max(values))
    if stat == "mean":
        return float(np.mean(values))
    if stat == "std":
        return float(np.std(values))
    return float(np.median(values))


@dataclass
class _Grid:
    """A window of a raster's band, read as float with NaN for nodata."""

    dataset: DatasetReader
    values: np.ndarray
    row0: int
    col0: int

    @classmethod
    def read(cls, dataset: DatasetReader, bounds: Sequence[float] | np.ndarray) -> _Grid:
        """Read the cells covering ``bounds`` (raster CRS), one cell of margin."""
        window = _pixel_window(dataset, bounds, pad=1)
        row0, row1, col0, col1 = window
        if row1 <= row0 or col1 <= col0:
            return cls(dataset, np.empty((0, 0)), 0, 0)
        band = dataset.read(
            1, window=Window(col0, row0, col1 - col0, row1 - row0), masked=True
        ).astype("float64")
        return cls(dataset, np.ma.filled(band, np.nan), row0, col0)

    def cells_in(self, geometry: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        """Return the (row, col) of the cells whose centres fall in ``geometry``.

        The third item is False when no centre does and the cell under the representative
        point stands in for the zone.
        """
        none = np.empty(0, dtype=int), np.empty(0, dtype=int), True
        if geometry is None or shapely.is_empty(geometry):
            return none
        row0, row1, col0, col1 = _pixel_window(self.dataset, geometry.bounds, pad=0)
        height, width = self.values.shape
        row0, col0 = max(row0, self.row0), max(col0, self.col0)
        row1, col1 = min(row1, self.row0 + height), min(col1, self.col0 + width)
        if row1 > row0 and col1 > col0:
            inside = geometry_mask(
                [geometry],
                out_shape=(row1 - row0, col1 - col0),
                transform=self.dataset.transform @ Affine.translation(col0, row0),
                all_touched=False,
                invert=True,
            )
            rows, cols = np.nonzero(inside)
            if len(rows):
                return rows + row0, cols + col0, True
        # no cell centre in the zone: the cell under its representative point
        point = shapely.point_on_surface(geometry)
        col, row = ~self.dataset.transform @ (point.x, point.y)
        row, col = math.floor(row), math.floor(col)
        if self.row0 <= row < self.row0 + height and self.col0 <= col < self.col0 + width:
            return np.array([row]), np.array([col]), False
        return none


def _pixel_window(
    dataset: DatasetReader, bounds: Sequence[float] | np.ndarray, *, pad: int
) -> tuple[int, int, int, int]:
    """Return ``(row0, row1, col0, col1)`` of the cells covering ``bounds``, within the raster."""
    minx, miny, maxx, maxy = bounds
    if not np.isfinite([minx, miny, maxx, maxy]).all():
        return 0, 0, 0, 0
    cols, rows = ~dataset.transform @ (
        np.array([minx, maxx, minx, maxx]),
        np.array([miny, miny, maxy, maxy]),
    )
    row0 = max(math.floor(rows.min()) - pad, 0)
    col0 = max(math.floor(cols.min()) - pad, 0)
    row1 = min(math.ceil(rows.max()) + pad, dataset.height)
    col1 = min(math.ceil(cols.max()) + pad, dataset.width)
    return row0, row1, col0, col1


class _CellAreas:
    """True areas, km², of a raster's cells.

    Geographic CRS: every cell of a row has the same geodesic area (on the CRS's ellipsoid),
    computed once per row of the grid. Projected CRS: each cell's corners are taken to
    longitude and latitude, and the cell's area there (shoelace, in radians) is scaled by the
    ellipsoid's area element ``M N cos φ`` at the cell: exact to second order in the cell's
    size, whatever the projection's distortion (a Web Mercator cell at 60° N is 4 times too
    large on the ground).
    """

    def __init__(self, grid: _Grid):
        dataset = grid.dataset
        crs = CRS.from_user_input(dataset.crs.to_wkt())
        self.geographic = crs.is_geographic
        self.transform = dataset.transform
        self.row0 = grid.row0
        self.geod = crs.get_geod() or Geod(ellps="WGS84")
        self.row_areas = np.empty(0)
        if self.geographic:
            width = abs(self.transform.a)
            areas = []
            for row in range(grid.row0, grid.row0 + grid.values.shape[0]):
                top = self.transform.f + self.transform.e * row
                bottom = top + self.transform.e
                area, _ = self.geod.polygon_area_perimeter(
                    [0.0, width, width, 0.0], [bottom, bottom, top, top]
                )
                areas.append(abs(area) / 1e6)
            self.row_areas = np.array(areas)
        else:
            self.to_lonlat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Return the areas of the cells at ``rows``, ``cols`` (raster indices)."""
        if len(rows) == 0:
            return np.empty(0)
        if self.geographic:
            return np.asarray(self.row_areas[rows - self.row0])
        corner_cols = cols[:, None] + np.array([0, 1, 1, 0])
        corner_rows = rows[:, None] + np.array([0, 0, 1, 1])
        x, y = self.transform @ (corner_cols.astype(float), corner_rows.astype(float))
        lon, lat = self.to_lonlat.transform(x, y, radians=True)
        lon, lat = np.asarray(lon), np.asarray(lat)
        lon = lon - lon[:, :1]  # corners relative to the first: no wrap at the antimeridian
        lon = (lon + np.pi) % (2 * np.pi) - np.pi
        shoelace = 0.5 * np.abs(
            np.sum(lon * np.roll(lat, -1, axis=1) - np.roll(lon, -1, axis=1) * lat, axis=1)
        )
        phi = lat.mean(axis=1)
        a, es = self.geod.a, self.geod.es
        w = 1 - es * np.sin(phi) ** 2
        meridional = a * (1 - es) / w**1.5
        normal = a / np.sqrt(w)
        return np.asarray(shoelace * meridional * normal * np.cos(phi) / 1e6)


# --- pipe profiles --------------------------------------------------------------------------


def pipe_profiles(
    *,
    dem: str = "dem",
    url: str | None = None,
    at: datetime | str | None = None,
    network: str | None = None,
    spacing_m: float = 10.0,
    tolerance_m: float = 0.5,
    interpolation: str = "bilinear",
) -> gpd.GeoDataFrame:
    """Sample the ground under every pipeline: elevations, cover, slope, adverse sewers.

    Each pipeline is sampled every ``spacing_m`` metres along it (in the city's metric CRS) and
    at both ends, all pipes in one vectorised lookup. The pipe's elevation at a sample is the
    ground minus ``depth_m``; when the stored geometry carries Z, Z is the pipe's elevation and
    the cover is the ground minus Z instead.

    About the DEM's resolution: the ground is what the DEM says, interpolated between cell
    centres. The sample city's SRTM cells are about 65 × 90 m with a vertical accuracy of
    several metres, so a pipe shorter than a cell sees the terrain's trend, not the street's
    own relief; with ``depth_m`` alone the pipe is taken to follow the ground, so its slope is
    the terrain's slope. The ``adverse`` flag marks a sewer whose pipe elevation rises from its
    first to its last vertex by more than ``tolerance_m``: at this resolution it says "the
    terrain rises along the drawn direction" — the sewer is drawn against its flow, or must be
    laid deeper downstream than its ``depth_m`` says (a pump or a drop). Rises smaller than the
    DEM's vertical accuracy are noise; raise ``tolerance_m`` to match the DEM.

    Parameters
    ----------
    dem
        Name of the DEM raster (kind ``dem``, metres).
    url
        Database URL; the configured one by default.
    at
        A moment: the pipelines and the DEM as they were then. None: the current ones.
    network
        Only this network (``water``, ``gas``, ``sewer``, ``heat``); all by default.
    spacing_m
        Distance between samples along a pipe, metres.
    tolerance_m
        Rise of a sewer's pipe elevation, end over start, beyond which it is ``adverse``.
    interpolation
        ``bilinear`` (between the four nearest cell centres) or ``nearest`` (the cell
        under the point).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per pipeline, ordered by id, EPSG:4326: ``id``, ``network``, ``diameter_mm``,
        ``depth_m``, ``length_m``, ``samples``, ``ground_start``, ``ground_end``,
        ``ground_min``, ``ground_max``, ``ground_mean`` (m), ``pipe_start``, ``pipe_end``
        (pipe elevation at the first and last vertex, m), ``cover_min_m``, ``slope_pct``
        (pipe elevation drop over length, %, positive downhill along the drawn direction),
        ``adverse`` and ``geometry``. Elevations are NaN where the DEM has no data (or the
        depth is unknown).

    Raises
    ------
    RasterError
        If the DEM does not exist or is not of kind ``dem``, or an option is out of range.
    """
    if not (math.isfinite(spacing_m) and spacing_m > 0):
        raise RasterError("spacing_m must be a positive number of metres", parameter="spacing_m")
    if not (math.isfinite(tolerance_m) and tolerance_m >= 0):
        raise RasterError("tolerance_m must be zero or more", parameter="tolerance_m")
    if interpolation not in ("bilinear", "nearest"):
        raise RasterError("interpolation must be bilinear or nearest", parameter="interpolation")
    networks = next(f.choices for f in get_layer("pipelines").fields if f.name == "network")
    if network is not None and network not in networks:
        raise RasterError(
            f"unknown network {network!r}; one of {', '.join(networks)}", parameter="network"
        )
    meta, data = _load(dem, url=url, at=at)
    _require_kind(meta, "dem")
    pipes = read_layer("pipelines", at=at, url=url)
    if network is not None:
        pipes = pipes[pipes["network"] == network].reset_index(drop=True)
    metric_crs = get_settings().metric_crs
    lines = pipes.geometry.to_crs(metric_crs).to_numpy()
    lengths = shapely.length(lines) if len(lines) else np.empty(0)
    counts = np.maximum(np.ceil(lengths / spacing_m), 1).astype(int) + 1
    starts = np.cumsum(counts) - counts
    ends = starts + counts - 1
    owner = np.repeat(np.arange(len(lines)), counts)
    step = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    fractions = step / np.repeat(counts - 1, counts)
    points = shapely.line_interpolate_point(lines[owner], fractions, normalized=True)
    xyz = shapely.get_coordinates(points, include_z=True)
    with MemoryFile(data) as memory, memory.open() as dataset:
        to_dem = Transformer.from_crs(metric_crs, dataset.crs, always_xy=True)
        x, y = to_dem.transform(xyz[:, 0], xyz[:, 1])
        ground = sample_raster(dataset, np.asarray(x), np.asarray(y), interpolation)
    depth = pipes["depth_m"].to_numpy(dtype="float64", na_value=np.nan)
    has_z = shapely.has_z(lines)[owner] if len(lines) else np.empty(0, dtype=bool)
    pipe = np.where(has_z, xyz[:, 2], ground - depth[owner])
    cover = ground - pipe
    result = pipes[["id", "network", "diameter_mm", "depth_m"]].copy()
    result["length_m"] = lengths
    result["samples"] = counts
    if len(lines):
        valid = np.add.reduceat(np.isfinite(ground).astype(int), starts)
        total = np.add.reduceat(np.nan_to_num(ground), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(valid > 0, total / valid, np.nan)
            slope = (pipe[starts] - pipe[ends]) / lengths * 100
        result["ground_start"] = ground[starts]
        result["ground_end"] = ground[ends]
        result["ground_min"] = np.fmin.reduceat(ground, starts)
        result["ground_max"] = np.fmax.reduceat(ground, starts)
        result["ground_mean"] = mean
        result["pipe_start"] = pipe[starts]
        result["pipe_end"] = pipe[ends]
        result["cover_min_m"] = np.fmin.reduceat(cover, starts)
        result["slope_pct"] = np.where(lengths > 0, slope, np.nan)
        rise = pipe[ends] - pipe[starts]
        result["adverse"] = (pipes["network"].to_numpy() == "sewer") & (
            np.nan_to_num(rise, nan=-np.inf) > tolerance_m
        )
    else:
        for column in (
            "ground_start",
            "ground_end",
            "ground_min",
            "ground_max",
            "ground_mean",
            "pipe_start",
            "pipe_end",
            "cover_min_m",
            "slope_pct",
        ):
            result[column] = np.empty(0)
        result["adverse"] = np.empty(0, dtype=bool)
    return gpd.GeoDataFrame(result, geometry=pipes.geometry.to_numpy(), crs="EPSG:4326")


def sample_raster(dataset: DatasetReader, x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """Return a raster's first band at points; NaN outside the raster and on nodata.

    Parameters
    ----------
    dataset
        An open raster (:func:`open_raster`).
    x, y
        Shape ``(n,)``: the points in the raster's CRS.
    method
        ``nearest`` takes the cell under each point; ``bilinear`` weighs the four nearest
        cell centres, leaving out those without data (and renormalising the weights).

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``: the values, in the band's unit (a DEM's metres).
    """
    values = np.full(len(x), np.nan)
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return values
    grid = _Grid.read(dataset, (x[finite].min(), y[finite].min(), x[finite].max(), y[finite].max()))
    height, width = grid.values.shape
    cols, rows = ~dataset.transform @ (x, y)
    cell_row = np.floor(np.where(finite, rows, -1)).astype(int)
    cell_col = np.floor(np.where(finite, cols, -1)).astype(int)
    inside = (
        finite
        & (cell_row >= grid.row0)
        & (cell_row < grid.row0 + height)
        & (cell_col >= grid.col0)
        & (cell_col < grid.col0 + width)
    )
    if method == "nearest":
        values[inside] = grid.values[cell_row[inside] - grid.row0, cell_col[inside] - grid.col0]
        return values
    u = np.where(inside, cols - 0.5, 0.0)
    v = np.where(inside, rows - 0.5, 0.0)
    c0, r0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - c0, v - r0
    weighted = np.zeros(len(x))
    weights = np.zeros(len(x))
    for dr, dc, weight in (
        (0, 0, (1 - fv) * (1 - fu)),
        (0, 1, (1 - fv) * fu),
        (1, 0, fv * (1 - fu)),
        (1, 1, fv * fu),
    ):
        r, c = r0 + dr - grid.row0, c0 + dc - grid.col0
        ok = inside & (r >= 0) & (r < height) & (c >= 0) & (c < width)
        z = np.full(len(x), np.nan)
        z[ok] = grid.values[r[ok], c[ok]]
        ok &= np.isfinite(z)
        weighted[ok] += weight[ok] * z[ok]
        weights[ok] += weight[ok]
    good = inside & (weights > 0)
    values[good] = weighted[good] / weights[good]
    return values
