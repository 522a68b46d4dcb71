"""Service areas of every station: :func:`routing.service_areas` from each one on its own.

Stations are cut by the district holding them; a worker computes the areas of its district's
stations on the network it built once (:mod:`twin.batch.networks`), with the closures active
when the batch started. Each row is what :meth:`twin.City.service_areas` gives for that one
station at that break.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from distributed import Client

from layers.database import database_url
from layers.errors import MissingInputError
from layers.queries import read_layer
from routing import RoutingError, service_areas
from routing.isochrones import check_breaks
from routing.network import check_profile
from twin.batch.cluster import assign_districts, objects, run_partitions
from twin.batch.networks import NetworkSpec, network_spec, worker_network
from twin.batch.stations import STATION_KINDS, check_kinds, read_stations


def service_areas_partition(
    part: gpd.GeoDataFrame, spec: NetworkSpec, breaks: tuple[float, ...]
) -> pd.DataFrame:
    """Compute the service areas of one partition's stations (on a worker, or here).

    Parameters
    ----------
    part
        Stations: ``id``, ``kind``, ``name``, ``district`` and points (EPSG:4326).
    spec
        The network.
    breaks
        Minutes, sorted.

    Returns
    -------
    pandas.DataFrame
        Per station and break: ``station_id``, ``kind``, ``name``, ``district``, ``minutes``,
        ``reached_length_m``, ``note`` (None; why there is no area for a station off the
        roads, whose rows have no geometry) and the polygon (EPSG:4326).
    """
    network = worker_network(spec)
    rows: list[dict[str, object]] = []
    columns = zip(
        objects(part["id"]),
        objects(part["kind"]),
        objects(part["name"]),
        objects(part["district"]),
        part.geometry,
        strict=True,
    )
    for station, kind, name, district, position in columns:
        common = {"station_id": station, "kind": kind, "name": name, "district": district}
        point = (float(position.x), float(position.y))
        try:
            areas = service_areas(network, [point], breaks)
        except RoutingError as exc:
            for minutes in breaks:
                rows.append(
                    common
                    | {"minutes": minutes, "reached_length_m": np.nan, "note": str(exc)}
                    | {"geometry": None}
                )
            continue
        for area in areas:
            rows.append(
                common
                | {"minutes": area.minutes, "reached_length_m": area.reached_length_m}
                | {"note": None, "geometry": area.polygon}
            )
    return pd.DataFrame(rows)


def station_service_areas(
    *,
    url: str | None = None,
    client: Client | None = None,
    kinds: Sequence[str] = STATION_KINDS,
    breaks: Sequence[float] = (4, 8, 12),
    profile: str = "emergency",
    progress: bool = False,
) -> gpd.GeoDataFrame:
    """Service areas of every available station of some kinds.

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    client
        A :class:`distributed.Client`: the districts run on its workers; None: in this process.
    kinds
        Resource kinds whose stations are measured.
    breaks
        Minutes (1 to 12 positive values).
    profile
        Routing profile.
    progress
        Show the partitions done on stderr.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per station and break, sorted by ``kind``, ``station_id`` and ``minutes``
        (see :func:`service_areas_partition`); polygons EPSG:4326, each within the next
        break's of the same station.

    Raises
    ------
    MissingInputError
        If no station of those kinds is available.
    RoutingError
        If ``breaks`` or ``profile`` are not valid, or no roads are loaded.
    ParameterError
        If a kind is unknown.
    """
    check_profile(profile)
    minutes = tuple(check_breaks(breaks))
    wanted = check_kinds(kinds)
    resolved = database_url(url)
    stations = [s for group in read_stations(wanted, url=resolved).values() for s in group]
    if not stations:
        raise MissingInputError(
            "resources",
            f"no available station of kind {', '.join(wanted)}: there is no area to compute",
            "import them with `twin ingest resources FILE`",
            parameter="kind",
        )
    frame = gpd.GeoDataFrame(
        {
            "id": [s.id for s in stations],
            "kind": [s.kind for s in stations],
            "name": [s.name for s in stations],
        },
        geometry=[shapely.Point(s.lon, s.lat) for s in stations],
        crs="EPSG:4326",
    )
    frame["district"] = assign_districts(frame, read_layer("districts", url=resolved))
    spec = network_spec(resolved, profile=profile)
    result = run_partitions(
        frame,
        service_areas_partition,
        spec,
        minutes,
        client=client,
        label="service areas",
        progress=progress,
    )
    result = result.sort_values(["kind", "station_id", "minutes"], kind="stable")
    return gpd.GeoDataFrame(result.reset_index(drop=True), geometry="geometry", crs="EPSG:4326")
