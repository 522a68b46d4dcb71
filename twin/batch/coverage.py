"""Camera coverage of every road: how much of each road edge the cameras' view cones hold.

The cones are those of :func:`layers.cameras.camera_coverage`: the cameras in service with a
view (:data:`layers.cameras.NOT_WATCHING`, :data:`layers.cameras.VIEW_COLUMNS`), buildings
blocking it (:func:`layers.cameras.view_cones`), merged into one seen area in the city's metric
CRS. They are computed once, by the client, and sent to each worker once; the workers cut the
roads of their districts with it. Lengths are measured in the metric CRS, metres.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from distributed import Client

from layers.cameras import VIEW_COLUMNS, view_cones, watching
from layers.database import database_url
from layers.errors import MissingInputError
from layers.queries import read_layer
from layers.settings import get_settings
from twin.batch.cluster import assign_districts, objects, run_partitions


def seen_area(*, url: str, metric_crs: str, rays_per_degree: float = 2.0) -> shapely.Geometry:
    """Return what the cameras in service see, merged, in the metric CRS.

    Parameters
    ----------
    url
        Database URL.
    metric_crs
        The city's metric CRS (metres).
    rays_per_degree
        Rays cast per degree of each camera's field of view (as in camera_coverage).

    Returns
    -------
    shapely.Geometry
        The union of the view cones (empty when no camera watches).

    Raises
    ------
    MissingInputError
        If no camera is loaded.
    """
    cameras, _ = watching(_loaded("cameras", url, "there is no coverage to measure"))
    if cameras.empty:
        return shapely.Polygon()
    cones = view_cones(
        cameras[["id", *VIEW_COLUMNS, "geometry"]].reset_index(drop=True),
        read_layer("buildings", url=url),
        metric_crs=metric_crs,
        rays_per_degree=rays_per_degree,
    )
    return shapely.union_all(cones.geometry.to_crs(metric_crs).to_numpy())


def _loaded(layer_id: str, url: str, missing: str) -> gpd.GeoDataFrame:
    """Read a layer's current features; raise MissingInputError saying ``missing`` if none."""
    frame = read_layer(layer_id, url=url)
    if frame.empty:
        raise MissingInputError(
            layer_id,
            f"no {layer_id} loaded: {missing}",
            f"import them with `twin ingest {layer_id} FILE`",
        )
    return frame


def coverage_partition(
    part: gpd.GeoDataFrame, metric_crs: str, *, seen: shapely.Geometry
) -> pd.DataFrame:
    """Measure the roads of one partition against the seen area (on a worker, or here).

    Parameters
    ----------
    part
        Roads: ``id``, ``district``, ``class``, ``name`` and lines (EPSG:4326).
    metric_crs
        The metric CRS the seen area is in.
    seen
        What the cameras see (:func:`seen_area`).

    Returns
    -------
    pandas.DataFrame
        ``id``, ``district``, ``class``, ``name``, ``length_m``, ``covered_m``, ``share``
        (covered / length; NaN for a road of no length) and the road's ``geometry``.
    """
    lines = part.geometry.to_crs(metric_crs).to_numpy()
    length = shapely.length(lines)
    covered = shapely.length(shapely.intersection(lines, seen))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(length > 0, np.minimum(covered / length, 1.0), np.nan)
    return pd.DataFrame(
        {
            "id": objects(part["id"]),
            "district": objects(part["district"]),
            "class": objects(part["class"]),
            "name": objects(part["name"]),
            "length_m": length,
            "covered_m": covered,
            "share": share,
            "geometry": part.geometry.to_numpy(),
        }
    )


def road_coverage(
    *,
    url: str | None = None,
    client: Client | None = None,
    rays_per_degree: float = 2.0,
    progress: bool = False,
) -> gpd.GeoDataFrame:
    """How much of every road the cameras watch.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    client
        A :class:`distributed.Client`: the districts run on its workers; None: in this process.
    rays_per_degree
        Rays cast per degree of each camera's field of view.
    progress
        Show the partitions done on stderr.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per current road edge, sorted by ``id``: ``district``, ``class``, ``name``,
        ``length_m`` and ``covered_m`` (metres, in the metric CRS), ``share`` and the line
        (EPSG:4326). A road stored in both directions is two edges, each measured.

    Raises
    ------
    MissingInputError
        If no road or no camera is loaded.
    ParameterError
        If ``rays_per_degree`` is not a positive number.
    """
    resolved = database_url(url)
    metric = str(get_settings().metric_crs)
    roads = _loaded("roads", resolved, "there is no road to cover")
    seen = seen_area(url=resolved, metric_crs=metric, rays_per_degree=rays_per_degree)
    frame = gpd.GeoDataFrame(
        {"id": roads["id"].astype(str), "class": roads["class"], "name": roads["name"]},
        geometry=roads.geometry,
        crs="EPSG:4326",
    )
    frame["district"] = assign_districts(frame, read_layer("districts", url=resolved))
    result = run_partitions(
        frame,
        coverage_partition,
        metric,
        client=client,
        label="coverage",
        progress=progress,
        keywords={"seen": seen},
    )
    result = result.sort_values("id", kind="stable").reset_index(drop=True)
    return gpd.GeoDataFrame(result, geometry="geometry", crs="EPSG:4326")
