"""The ``City`` facade: the twin as analysts use it from Python."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd

from layers.catalog import LAYERS
from layers.database import database_url, get_engine
from layers.ingest import IngestReport, ingest
from layers.queries import BBox, layer_counts, read_layer
from layers.settings import get_settings


class City:
    """A city in the store.

    Parameters
    ----------
    url
        Database URL; ``TWIN_DATABASE_URL`` or the local default when None.

    Examples
    --------
    >>> import twin
    >>> city = twin.connect()
    >>> roads = city.layer("roads", bbox=(7.41, 43.72, 7.43, 43.74))
    """

    def __init__(self, url: str | None = None):
        self.url = database_url(url)
        self.name = get_settings().city_name
        self.metric_crs = get_settings().metric_crs

    def __repr__(self) -> str:
        engine = get_engine(self.url)
        return f"City({self.name!r}, {engine.url.render_as_string(hide_password=True)!r})"

    def layers(self, *, at: datetime | str | None = None) -> pd.DataFrame:
        """List the layers with their feature counts.

        Parameters
        ----------
        at
            A moment: count the features valid then. None: the current ones.

        Returns
        -------
        pandas.DataFrame
            Columns ``layer``, ``title``, ``geometry`` and ``features``, one row per layer.
        """
        counts = layer_counts(at=at, url=self.url)
        return pd.DataFrame(
            [
                {
                    "layer": layer.id,
                    "title": layer.title,
                    "geometry": layer.storage_type,
                    "features": counts[layer.id],
                }
                for layer in LAYERS.values()
            ]
        )

    def layer(
        self,
        name: str,
        *,
        bbox: BBox | None = None,
        at: datetime | str | None = None,
    ) -> gpd.GeoDataFrame:
        """Return one layer's features.

        Parameters
        ----------
        name
            Layer id, e.g. ``"roads"``.
        bbox
            ``(min lon, min lat, max lon, max lat)``: only the features intersecting it.
        at
            A moment (datetime or ISO 8601 string): the versions valid then.

        Returns
        -------
        geopandas.GeoDataFrame
            Features in EPSG:4326 with their typed attributes and ``props``.
        """
        return read_layer(name, bbox=bbox, at=at, url=self.url)

    def ingest(
        self,
        name: str,
        path: str | Path,
        *,
        source: str | None = None,
        crs: str | None = None,
        file_layer: str | None = None,
        id_field: str = "id",
    ) -> IngestReport:
        """Import a file into a layer, all or nothing (see :func:`layers.ingest.ingest`).

        Parameters
        ----------
        name
            Layer id.
        path
            GeoJSON, GeoPackage, (zipped) Shapefile, CSV or OSM file.
        source
            Source label; re-importing the same source updates its features.
        crs
            CRS of the coordinates, if the file declares none.
        file_layer
            Table of a multi-layer file to read.
        id_field
            Attribute holding stable feature ids.

        Returns
        -------
        IngestReport
            What the import did.
        """
        return ingest(
            name,
            path,
            url=self.url,
            source=source,
            crs=crs,
            file_layer=file_layer,
            id_field=id_field,
        )


def connect(url: str | None = None) -> City:
    """Connect to the city's store.

    Parameters
    ----------
    url
        Database URL; ``TWIN_DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432/twin``.

    Returns
    -------
    City
        The facade.
    """
    return City(url)
