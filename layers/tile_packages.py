"""Offline tile packages: the API's vector tiles of an area written to one PMTiles file.

A package holds, for every zoom asked and every WebMercatorQuad tile meeting the bounding box,
the very tile the API serves (:func:`layers.tiles.render_tile`, the same layers, zoom rules and
masks: it is cut under the grant of the roles given, by default those of an anonymous caller of
the API, so a package that leaves the building holds no more than the public sees),
gzip-compressed as PMTiles v3 expects of MVT tiles (``tile_compression`` gzip); tiles
with no feature are left out (a reader answers them as empty). Its metadata is TileJSON-like:
``name``, ``format`` ``pbf``, ``vector_layers`` (:func:`layers.tiles.vector_layers`),
``attribution`` (the credits of the sources of the features, :mod:`layers.sources`), so
MapLibre (``pmtiles://``) and other PMTiles readers draw it with no server. The file is
written by the PyPI ``pmtiles`` package's writer (the format's reference implementation in
Python), tiles in tile-id order so the archive is clustered.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from layers import access
from layers.catalog import COLLECTIONS, LAYERS
from layers.errors import ParameterError
from layers.sources import attribution_text, credits
from layers.tiles import MAX_ZOOM, WEB_MERCATOR_QUAD, render_tile, vector_layers, zoom_range

#: Web Mercator's latitude limit (degrees): the edge of WebMercatorQuad's square world.
MAX_LATITUDE = 85.0511287798066
#: Most tiles one package may address unless ``max_tiles`` says otherwise.
MAX_TILES = 100_000
#: Tiles cut at once (each is one query; PostGIS cuts them side by side).
CONCURRENCY = 4

Progress = Callable[[str, int, int], None]


class PackageError(ParameterError):
    """A package that cannot be made as asked: a bad bounding box, zooms or layers."""


@dataclass(frozen=True)
class PackageReport:
    """What an export wrote.

    Attributes
    ----------
    path
        The PMTiles file.
    layers
        Its layers, in drawing order.
    minzoom, maxzoom
        Zooms asked.
    addressed
        Tiles of the bounding box over those zooms (each cut once).
    written
        Tiles holding a feature (the others are left out).
    bytes
        Size of the file.
    """

    path: Path
    layers: tuple[str, ...]
    minzoom: int
    maxzoom: int
    addressed: int
    written: int
    bytes: int


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Read ``W,S,E,N`` (EPSG:4326 degrees) into a checked bounding box.

    Parameters
    ----------
    text
        Four comma-separated numbers: west, south, east, north.

    Returns
    -------
    tuple of float
        ``(west, south, east, north)``, latitudes within Web Mercator's +-85.0511 degrees.

    Raises
    ------
    PackageError
        Naming what is wrong (not four numbers, out of range, west not below east, ...).
    """
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise PackageError(
            f"bbox {text!r}: give four numbers W,S,E,N (degrees), not {len(parts)}",
            parameter="bbox",
        )
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise PackageError(
            f"bbox {text!r}: W,S,E,N must be numbers (degrees)", parameter="bbox"
        ) from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise PackageError(f"bbox {text!r}: W,S,E,N must be finite", parameter="bbox")
    for name, value, limit in (
        ("west", west, 180),
        ("east", east, 180),
        ("south", south, MAX_LATITUDE),
        ("north", north, MAX_LATITUDE),
    ):
        if not -limit <= value <= limit:
            raise PackageError(
                f"bbox {text!r}: {name} {value} is outside -{limit} to {limit} degrees",
                parameter="bbox",
            )
    if west >= east:
        raise PackageError(
            f"bbox {text!r}: west {west} must be below east {east}", parameter="bbox"
        )
    if south >= north:
        raise PackageError(
            f"bbox {text!r}: south {south} must be below north {north}", parameter="bbox"
        )
    return west, south, east, north


def check_layers(layer_ids: Sequence[str] | None) -> list[str]:
    """Return the package's layers: those named (each once, in order), or all it may read.

    By default every stored layer the grant in force may read.

    Parameters
    ----------
    layer_ids
        Collection ids, or None for the one-map's layers.

    Returns
    -------
    list of str
        Layer ids.

    Raises
    ------
    PackageError
        For an unknown layer, one the grant in force may not read, or an empty list.
    """
    if layer_ids is None:
        return access.visible(list(LAYERS))
    names = list(dict.fromkeys(name.strip() for name in layer_ids if name.strip()))
    if not names:
        raise PackageError("layers: name at least one layer", parameter="layers")
    for name in names:
        if name not in COLLECTIONS:
            raise PackageError(
                f"unknown layer {name!r}; layers: {', '.join(COLLECTIONS)}", parameter="layers"
            )
        if not access.visible([name]):
            raise PackageError(
                f"layer {name!r} is classified above what the package's roles may read",
                parameter="layers",
            )
    return names


def check_zooms(layer_ids: Sequence[str], minzoom: int, maxzoom: int) -> None:
    """Refuse zooms a package of these layers cannot hold.

    Parameters
    ----------
    layer_ids
        The package's layers.
    minzoom, maxzoom
        Zooms asked.

    Raises
    ------
    PackageError
        For a zoom outside 0 to :data:`layers.tiles.MAX_ZOOM`, ``minzoom`` above ``maxzoom``,
        or ``maxzoom`` past the tileset's last zoom (:func:`layers.tiles.zoom_range`: deeper
        tiles only repeat it with finer coordinates, and clients overzoom it).
    """
    for name, zoom in (("minzoom", minzoom), ("maxzoom", maxzoom)):
        if not 0 <= zoom <= MAX_ZOOM:
            raise PackageError(f"{name} {zoom} is outside 0 to {MAX_ZOOM}", parameter=name)
    if minzoom > maxzoom:
        raise PackageError(f"minzoom {minzoom} is above maxzoom {maxzoom}", parameter="minzoom")
    last = zoom_range(layer_ids)[1]
    if maxzoom > last:
        raise PackageError(
            f"maxzoom {maxzoom} is past the tiles' last zoom {last} (deeper tiles only repeat "
            f"it with finer coordinates: clients overzoom the z{last} tiles)",
            parameter="maxzoom",
        )


def package_tiles(
    bbox: tuple[float, float, float, float], minzoom: int, maxzoom: int
) -> list[tuple[int, int, int]]:
    """Return the ``(z, x, y)`` tiles meeting a bounding box at each zoom, in tile-id order.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in EPSG:4326 degrees.
    minzoom, maxzoom
        Zooms, both included.

    Returns
    -------
    list of tuple of int
        Tiles sorted by PMTiles tile id (zoom, then Hilbert order).
    """
    tiles = [
        (t.z, t.x, t.y)
        for t in WEB_MERCATOR_QUAD.tiles(*bbox, zooms=list(range(minzoom, maxzoom + 1)))
    ]
    return sorted(tiles, key=lambda t: zxy_to_tileid(*t))


def count_package_tiles(bbox: tuple[float, float, float, float], minzoom: int, maxzoom: int) -> int:
    """Return how many tiles :func:`package_tiles` gives, without listing them.

    Counted from each zoom's corner tiles (as morecantile's ``tiles`` finds them, the edges
    nudged inward by 1e-9°), so a package too large to list is refused at once.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in EPSG:4326 degrees, west < east.
    minzoom, maxzoom
        Zooms, both included.

    Returns
    -------
    int
        The number of tiles.
    """
    west, south, east, north = bbox
    nudge = 1e-9
    total = 0
    for z in range(minzoom, maxzoom + 1):
        first = WEB_MERCATOR_QUAD.tile(west + nudge, north - nudge, z)
        last = WEB_MERCATOR_QUAD.tile(east - nudge, south + nudge, z)
        total += (abs(last.x - first.x) + 1) * (abs(last.y - first.y) + 1)
    return total


def _cut(
    tiles: Sequence[tuple[int, int, int]], layer_ids: Sequence[str], url: str | None
) -> Iterator[bytes]:
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="tile-export") as pool:
        # each tile cut under the caller's grant (a context per task: threads do not inherit it)
        def cut_in(tile: tuple[int, int, int]) -> Future[bytes]:
            z, x, y = tile
            context = copy_context()
            return pool.submit(context.run, lambda: render_tile(layer_ids, z, x, y, url=url))

        cuts = [cut_in(tile) for tile in tiles]
        for cut in cuts:
            yield cut.result()


def export_pmtiles(
    path: str | Path,
    *,
    bbox: tuple[float, float, float, float],
    minzoom: int,
    maxzoom: int,
    layer_ids: Sequence[str] | None = None,
    roles: Sequence[str] | None = None,
    url: str | None = None,
    max_tiles: int = MAX_TILES,
    progress: Progress | None = None,
) -> PackageReport:
    """Write the vector tiles of an area to a PMTiles v3 file.

    Parameters
    ----------
    path
        The file to write (replaced if it exists; written beside it first, then renamed).
    bbox
        ``(west, south, east, north)`` in EPSG:4326 degrees (:func:`parse_bbox` reads text).
    minzoom, maxzoom
        Zooms to include, both included (:func:`check_zooms`).
    layer_ids
        Layers in each tile, in drawing order; by default every stored layer the roles may
        read (the one-map's).
    roles
        Cut the tiles as a caller holding these roles sees them (masks, classified rows and
        layers, as the API applies them); None: as the store's owner, everything.
    url
        Database URL; the configured one by default.
    max_tiles
        Refuse a package addressing more tiles than this (a city at z15 is a few thousand).
    progress
        Called as ``progress("tiles", done, total)`` while tiles are cut.

    Returns
    -------
    PackageReport
        What was written.

    Raises
    ------
    PackageError
        For bad layers, zooms or bounding box, too many tiles, or an area with no feature.
    """
    if roles is None:
        return _export(path, bbox, minzoom, maxzoom, layer_ids, url, max_tiles, progress)
    principal = access.Principal("tiles-export", tuple(roles), "session")
    with access.acting_as(access.grant_for(principal, url=url)):
        return _export(path, bbox, minzoom, maxzoom, layer_ids, url, max_tiles, progress)


def _export(
    path: str | Path,
    bbox: tuple[float, float, float, float],
    minzoom: int,
    maxzoom: int,
    layer_ids: Sequence[str] | None,
    url: str | None,
    max_tiles: int,
    progress: Progress | None,
) -> PackageReport:
    names = check_layers(layer_ids)
    check_zooms(names, minzoom, maxzoom)
    west, south, east, north = parse_bbox(",".join(map(repr, bbox)))
    count = count_package_tiles((west, south, east, north), minzoom, maxzoom)
    if count > max_tiles:  # counted, not listed: a country at z15 would fill the memory
        raise PackageError(
            f"{count} tiles from z{minzoom} to z{maxzoom} in that bbox, more than "
            f"{max_tiles}: lower maxzoom or shrink the bbox",
            parameter="maxzoom",
        )
    tiles = package_tiles((west, south, east, north), minzoom, maxzoom)
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    written = 0
    try:
        with partial.open("wb") as sink:
            writer = Writer(sink)  # its tiles wait in a temporary file until finalize
            try:
                if progress:
                    progress("tiles", 0, len(tiles))
                for done, (tile, data) in enumerate(
                    zip(tiles, _cut(tiles, names, url), strict=True)
                ):
                    if data:
                        writer.write_tile(zxy_to_tileid(*tile), gzip.compress(data, mtime=0))
                        written += 1
                    if progress and (done % 16 == 15 or done + 1 == len(tiles)):
                        progress("tiles", done + 1, len(tiles))
                if not written:
                    raise PackageError(
                        f"no layer of {', '.join(names)} has a feature in bbox "
                        f"{west},{south},{east},{north} from z{minzoom} to z{maxzoom}",
                        parameter="bbox",
                    )
                writer.finalize(
                    _header((west, south, east, north), minzoom, maxzoom),
                    _metadata(names, url=url),
                )
            finally:
                writer.tile_f.close()  # finalize closes it too; twice is harmless
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return PackageReport(
        path=target,
        layers=tuple(names),
        minzoom=minzoom,
        maxzoom=maxzoom,
        addressed=len(tiles),
        written=written,
        bytes=target.stat().st_size,
    )


def _header(bbox: tuple[float, float, float, float], minzoom: int, maxzoom: int) -> Any:
    west, south, east, north = bbox

    def e7(value: float) -> int:
        return round(value * 10_000_000)

    return {
        "tile_compression": Compression.GZIP,
        "tile_type": TileType.MVT,
        "min_lon_e7": e7(west),
        "min_lat_e7": e7(south),
        "max_lon_e7": e7(east),
        "max_lat_e7": e7(north),
        "center_zoom": (minzoom + maxzoom) // 2,
        "center_lon_e7": e7((west + east) / 2),
        "center_lat_e7": e7((south + north) / 2),
    }


def _metadata(layer_ids: Sequence[str], *, url: str | None) -> dict[str, Any]:
    stored = list(dict.fromkeys(COLLECTIONS[i].derived_from or i for i in layer_ids))
    return {
        "name": ",".join(layer_ids),
        "description": "CityTwin vector tiles: "
        + ", ".join(COLLECTIONS[i].title for i in layer_ids),
        "format": "pbf",
        "type": "overlay",
        "generator": "CityTwin (twin tiles export)",
        "attribution": attribution_text(credits(url, layers=stored)),
        "vector_layers": vector_layers(layer_ids),
    }
