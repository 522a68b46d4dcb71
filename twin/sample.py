"""The sample city (Monaco) shipped in ``data_samples/``, and loading it into the store."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from layers.catalog import LAYERS
from layers.database import get_engine
from layers.ingest import IngestReport, Progress, ingest_many
from layers.queries import layer_counts
from layers.rasters import check_raster, list_rasters, raster_transaction
from layers.sources import OPENSTREETMAP, SRTM, Credit, record_source

#: Where the built sample city lives in a checkout.
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data_samples" / "monaco"
#: The sample city's elevation model (SRTM, clipped), stored as the raster ``dem``.
SAMPLE_DEM = "dem.tif"
#: The source label of the sample city's DEM (a layer's is ``sample:<layer>``).
DEM_SOURCE = "sample"

_DERIVED = (
    "derived from the OpenStreetMap streets and buildings by data_samples/build_monaco.py "
    "(deterministic, not surveyed): "
)
#: What each sample layer is, after data_samples/README.md: None for OpenStreetMap features
#: (some attributes derived, each saying so in its ``derived`` property), else how it was made.
#: All of it is OpenStreetMap data or derived from it, so all is credited to OpenStreetMap
#: (ODbL 1.0 asks a derivative database to be credited as its source is).
SAMPLE_LAYERS: dict[str, str | None] = {
    "roads": None,
    "intersections": None,
    "signals": None,
    "cameras": None,
    "resources": None,
    "buildings": None,
    "districts": None,
    "pipelines": _DERIVED + "water mains and sewers laid along every street; 10 gas "
    "pipelines are OpenStreetMap's",
    "pipe_nodes": _DERIVED + "junctions, valves, hydrants and a reservoir on the derived "
    "mains; 6 hydrants are OpenStreetMap's",
    "power_lines": _DERIVED + "20 kV feeders along the streets, taps and 0.4 kV services; "
    "2 63 kV cables are OpenStreetMap's",
    "power_nodes": _DERIVED + "transformers, switches and building supply points; 2 "
    "substations are OpenStreetMap's",
    "incidents": "synthetic examples placed on OpenStreetMap features (no open source "
    "publishes live incidents)",
    "closures": "synthetic examples placed on OpenStreetMap roads",
}


def sample_files(directory: Path = SAMPLE_DIR) -> dict[str, Path]:
    """Return the sample city's file for every layer, in catalog order.

    Parameters
    ----------
    directory
        Folder holding ``<layer>.geojson`` files.

    Returns
    -------
    dict of str to pathlib.Path
        Layer id to file.

    Raises
    ------
    FileNotFoundError
        If a layer's file is missing.
    """
    files = {layer_id: directory / f"{layer_id}.geojson" for layer_id in LAYERS}
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:
        raise FileNotFoundError(f"sample city files missing: {', '.join(missing)}")
    return files


def load_sample(
    *,
    directory: Path = SAMPLE_DIR,
    url: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> list[IngestReport]:
    """Load the sample city into the store, unless it is there already.

    Every layer file is read and checked first, then all are written in one transaction, so a
    failed load leaves the store as it was. Each layer is imported with source
    ``sample:<layer>``, so loading again updates the layers rather than duplicating them.

    The attribution of every source is recorded (:func:`record_sample_sources`): the layers
    are OpenStreetMap data or derived from it, the DEM is SRTM's.

    The directory's elevation model (``dem.tif``, when it has one) is stored as the raster
    ``dem`` (kind ``dem``, unit m, source ``sample``). It is read and checked before anything
    is written, and its transaction stays open around the layers' import: it commits only once
    the layers have, and rolls back if they fail. So a bad DEM or a bad layer leaves the store
    as it was; the one gap is the DEM's own commit failing (the server going away) right after
    the layers committed, which loading again repairs, since the city counts as loaded only
    with its DEM.

    Parameters
    ----------
    directory
        Folder of the sample city's files.
    url
        Database URL; the configured one by default.
    force
        Import even if every layer already holds features.
    progress
        Passed to :func:`layers.ingest.ingest_many`.

    Returns
    -------
    list of IngestReport
        One report per layer; empty when the city was already loaded.
    """
    files = sample_files(directory)
    dem_file = directory / SAMPLE_DEM
    has_dem = dem_file.exists()
    # the credits first, in their own transaction: what is credited is what is loaded
    # (layers.sources.credits), so the record of a layer that then fails to load credits
    # nothing; recorded even when the city is loaded already (a store loaded before the
    # credits were kept gets them)
    record_sample_sources(url=url)
    if (
        not force
        and all(count > 0 for count in layer_counts(url=url).values())
        and (not has_dem or "dem" in set(list_rasters(url=url)["name"]))
    ):
        return []
    dem = (
        check_raster(
            dem_file,
            name="dem",
            kind="dem",
            source=DEM_SOURCE,
            unit="m",  # its credit (with a URL) is recorded with the layers' below
        )
        if has_dem
        else None
    )
    sources = {layer_id: f"sample:{layer_id}" for layer_id in files}
    with raster_transaction([dem], url=url) if dem else nullcontext():
        return ingest_many(files, sources=sources, url=url, progress=progress)


def sample_credits() -> dict[str, Credit]:
    """Return the credit of each of the sample city's source labels.

    Returns
    -------
    dict of str to Credit
        ``sample:<layer>`` for each layer (OpenStreetMap's credit, with what a derived or
        synthetic layer is in ``descriptions``, after data_samples/README.md) and
        :data:`DEM_SOURCE` (SRTM, public domain).
    """
    out = {
        f"sample:{layer_id}": Credit(
            OPENSTREETMAP.attribution,
            OPENSTREETMAP.licence,
            OPENSTREETMAP.url,
            (f"sample:{layer_id}",),
            () if SAMPLE_LAYERS.get(layer_id) is None else (str(SAMPLE_LAYERS[layer_id]),),
        )
        for layer_id in LAYERS
    }
    out[DEM_SOURCE] = Credit(SRTM.attribution, SRTM.licence, SRTM.url, (DEM_SOURCE,))
    return out


def record_sample_sources(*, url: str | None = None) -> None:
    """Record the attribution of every source of the sample city (one transaction).

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    """
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            for source, credit in sample_credits().items():
                record_source(
                    cur,
                    source=source,
                    attribution=credit.attribution,
                    licence=credit.licence,
                    url=credit.url,
                    description=credit.descriptions[0] if credit.descriptions else None,
                )
