"""The ``twin`` command line: set up the store, import layers, serve the API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from layers.catalog import LAYERS
from layers.database import StoreError, current_revision, head_revision, upgrade
from layers.ingest import IngestError, IngestReport, ingest
from layers.ingest import Progress as ProgressCallback
from layers.queries import layer_counts
from twin.sample import SAMPLE_DIR, load_sample

app = typer.Typer(
    help="CityTwin: the city's layers in PostGIS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
sample_app = typer.Typer(help="The sample city (Monaco).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sample_app, name="sample")

out = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]


@contextmanager
def _progress() -> Iterator[ProgressCallback]:
    """Show an import's stages as progress bars on stderr."""
    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=not err.is_terminal) as bars:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield update


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _summary(report: IngestReport) -> str:
    return (
        f"{report.layer}: {report.read} read, {report.added} added, {report.changed} changed, "
        f"{report.unchanged} unchanged, {report.retired} retired "
        f"({report.seconds:.1f} s, source {report.source})"
    )


@db_app.command("upgrade")
def db_upgrade(url: Url = None) -> None:
    """Create the database if needed and migrate it to the newest schema."""
    try:
        revision = upgrade(url)
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"database at revision {revision}")


@db_app.command("status")
def db_status(url: Url = None) -> None:
    """Print the schema revision of the database and the newest one."""
    try:
        current = current_revision(url)
    except Exception as exc:
        raise _fail(f"cannot read the database: {exc}") from exc
    out.print(f"database at {current or 'no revision'}; newest is {head_revision()}")


@app.command("ingest")
def ingest_command(
    layer: Annotated[str, typer.Argument(help=f"Layer: {', '.join(LAYERS)}.")],
    path: Annotated[
        Path,
        typer.Argument(help="GeoJSON, GeoPackage, (zipped) Shapefile, CSV, OSM (.osm, .osm.pbf)."),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            help="Source label; default: the file name. Re-importing a source updates it."
        ),
    ] = None,
    crs: Annotated[
        str | None,
        typer.Option(help="CRS of the coordinates, e.g. EPSG:32632, if the file declares none."),
    ] = None,
    file_layer: Annotated[str | None, typer.Option(help="Table of a multi-layer file.")] = None,
    id_field: Annotated[str, typer.Option(help="Attribute holding feature ids.")] = "id",
    url: Url = None,
) -> None:
    """Import a file into a layer, all or nothing."""
    if layer not in LAYERS:
        raise _fail(f"unknown layer {layer!r}; known layers: {', '.join(LAYERS)}", 2)
    try:
        with _progress() as progress:
            report = ingest(
                layer,
                path,
                source=source,
                crs=crs,
                file_layer=file_layer,
                id_field=id_field,
                url=url,
                progress=progress,
            )
    except IngestError as exc:
        raise _fail(f"{exc}\nrejected: nothing was written to {layer}") from exc
    for warning in report.repaired:
        err.print(
            f"warning: {warning.describe(str(path))}", markup=False, highlight=False, soft_wrap=True
        )
    out.print(_summary(report), markup=False, highlight=False, soft_wrap=True)


@app.command("layers")
def layers_command(
    at: Annotated[str | None, typer.Option(help="Count as of this ISO 8601 moment.")] = None,
    url: Url = None,
) -> None:
    """List the layers and their feature counts."""
    try:
        counts = layer_counts(at=at, url=url)
    except ValueError as exc:
        raise _fail(f"--at: {exc}", 2) from exc
    table = Table("layer", "geometry", "features")
    for layer in LAYERS.values():
        table.add_row(layer.id, layer.storage_type, str(counts[layer.id]))
    out.print(table)


@sample_app.command("load")
def sample_load(
    force: Annotated[bool, typer.Option(help="Import even if the city is loaded.")] = False,
    directory: Annotated[Path, typer.Option(help="Folder of the sample files.")] = SAMPLE_DIR,
    url: Url = None,
) -> None:
    """Load the sample city (Monaco) unless it is loaded already."""
    try:
        with _progress() as progress:
            reports = load_sample(directory=directory, url=url, force=force, progress=progress)
    except (IngestError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc
    if not reports:
        out.print("sample city already loaded (use --force to import again)")
    for report in reports:
        out.print(_summary(report), markup=False, highlight=False, soft_wrap=True)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers)


def main() -> None:
    """Run the CLI (``python -m twin``)."""
    app(prog_name="twin")


if __name__ == "__main__":
    main()
    sys.exit(0)
