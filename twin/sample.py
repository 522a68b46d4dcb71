"""The sample city (Monaco) shipped in ``data_samples/``, and loading it into the store."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from layers.catalog import LAYERS
from layers.ingest import IngestReport, Progress, ingest_many
from layers.queries import layer_counts
from layers.rasters import check_raster, list_rasters, raster_transaction

#: Where the built sample city lives in a checkout.
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data_samples" / "monaco"
#: The sample city's elevation model (SRTM, clipped), stored as the raster ``dem``.
SAMPLE_DEM = "dem.tif"


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
    if (
        not force
        and all(count > 0 for count in layer_counts(url=url).values())
        and (not has_dem or "dem" in set(list_rasters(url=url)["name"]))
    ):
        return []
    dem = (
        check_raster(dem_file, name="dem", kind="dem", source="sample", unit="m")
        if has_dem
        else None
    )
    sources = {layer_id: f"sample:{layer_id}" for layer_id in files}
    with raster_transaction([dem], url=url) if dem else nullcontext():
        return ingest_many(files, sources=sources, url=url, progress=progress)
