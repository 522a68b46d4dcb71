"""The sample city (Monaco) shipped in ``data_samples/``, and loading it into the store."""

from __future__ import annotations

from pathlib import Path

from layers.catalog import LAYERS
from layers.ingest import IngestReport, Progress, ingest_many
from layers.queries import layer_counts

#: Where the built sample city lives in a checkout.
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data_samples" / "monaco"


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
    if not force and all(count > 0 for count in layer_counts(url=url).values()):
        return []
    sources = {layer_id: f"sample:{layer_id}" for layer_id in files}
    return ingest_many(files, sources=sources, url=url, progress=progress)
