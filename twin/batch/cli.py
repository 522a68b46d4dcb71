"""``twin batch``: city-wide analyses on a Dask cluster, written to GeoParquet."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from layers.errors import ParameterError
from twin.batch.stations import STATION_KINDS

if TYPE_CHECKING:  # Dask is imported when a batch runs, not by every `twin` command
    import geopandas as gpd
    from distributed import Client

app = typer.Typer(
    help="City-wide batch analytics on Dask (a local cluster, or --scheduler tcp://HOST:PORT).",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]
Out = Annotated[Path, typer.Option("--out", help="GeoParquet file to write (FILE.parquet).")]
Workers = Annotated[
    int,
    typer.Option(help="Worker processes of the local Dask cluster; 0: in this process, no Dask."),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        help="A running Dask scheduler, e.g. tcp://10.0.0.5:8786 (its workers must import "
        "this project and reach the database); a local cluster by default."
    ),
]
Profile = Annotated[str, typer.Option(help="Routing profile: car or emergency.")]
Kinds = Annotated[
    list[str] | None,
    typer.Option("--kind", help=f"Resource kind (repeatable); default {', '.join(STATION_KINDS)}."),
]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
Timeout = Annotated[
    float, typer.Option("--connect-timeout", help="Seconds to wait for --scheduler to answer.")
]


def _fail(command: str, message: str) -> typer.Exit:
    err.print(f"twin batch {command}: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _check_out(command: str, path: Path) -> Path:
    """Refuse an output that is not a .parquet file in an existing, writable folder."""
    if path.suffix.lower() != ".parquet":
        raise _fail(command, f"--out {path}: the output must be a GeoParquet file, FILE.parquet")
    if path.is_dir():
        raise _fail(command, f"--out {path}: is a folder, not a file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise _fail(command, f"--out {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise _fail(command, f"--out {path}: the folder {folder} is not writable")
    return path


def _write(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Write GeoParquet atomically: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(suffix=".parquet", dir=path.parent or Path("."))
    os.close(handle)
    try:
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _run(
    command: str,
    path: Path,
    workers: int,
    scheduler: str | None,
    analysis: Callable[[Client | None], gpd.GeoDataFrame],
    timeout_s: float = 10.0,
) -> gpd.GeoDataFrame:
    _check_out(command, path)
    from layers.database import StoreError
    from twin.batch.cluster import batch_client

    # the cluster's own chatter (a worker slow to stop) is not the user's business; a task's
    # failure still comes back as its exception
    logging.getLogger("distributed").setLevel(logging.ERROR)
    try:
        with batch_client(workers=workers, scheduler=scheduler, timeout_s=timeout_s) as client:
            frame = analysis(client)
        _write(frame, path)
    except ParameterError as exc:
        raise _fail(command, str(exc)) from exc
    except StoreError as exc:
        raise _fail(command, f"cannot read the store: {exc}") from exc
    except OSError as exc:
        raise _fail(command, f"cannot write {path}: {exc}") from exc
    return frame


@app.command("accessibility")
def accessibility_command(
    out_path: Out,
    workers: Workers = 2,
    scheduler: Scheduler = None,
    kind: Kinds = None,
    profile: Profile = "emergency",
    quiet: Quiet = False,
    connect_timeout: Timeout = 10.0,
    url: Url = None,
) -> None:
    """For every building: seconds from the nearest fire station, hospital and police, and which."""
    from twin.batch.buildings import accessibility

    kinds = tuple(kind or STATION_KINDS)
    frame = _run(
        "accessibility",
        out_path,
        workers,
        scheduler,
        lambda client: accessibility(
            url=url, client=client, kinds=kinds, profile=profile, progress=not quiet
        ),
        connect_timeout,
    )
    out.print(f"{len(frame)} buildings written to {out_path}")
    for k in kinds:
        seconds = frame[f"{k}_s"]
        reached = int(seconds.notna().sum())
        median = f"{seconds.median():.0f} s" if reached else "-"
        out.print(f"  {k}: {reached} reached, median {median}, {len(frame) - reached} not reached")


@app.command("coverage")
def coverage_command(
    out_path: Out,
    workers: Workers = 2,
    scheduler: Scheduler = None,
    quiet: Quiet = False,
    connect_timeout: Timeout = 10.0,
    url: Url = None,
) -> None:
    """Camera coverage of every road: length, length seen, share."""
    from twin.batch.coverage import road_coverage

    frame = _run(
        "coverage",
        out_path,
        workers,
        scheduler,
        lambda client: road_coverage(url=url, client=client, progress=not quiet),
        connect_timeout,
    )
    total, seen = float(frame["length_m"].sum()), float(frame["covered_m"].sum())
    share = f"{seen / total:.1%}" if total else "-"
    out.print(
        f"{len(frame)} roads written to {out_path}: {seen:,.0f} of {total:,.0f} m seen ({share})"
    )


@app.command("service-areas")
def service_areas_command(
    out_path: Out,
    workers: Workers = 2,
    scheduler: Scheduler = None,
    kind: Kinds = None,
    breaks: Annotated[str, typer.Option(help="Minutes, comma-separated.")] = "4,8,12",
    profile: Profile = "emergency",
    quiet: Quiet = False,
    connect_timeout: Timeout = 10.0,
    url: Url = None,
) -> None:
    """Service areas (isochrones) of every station, one row per station and break."""
    try:
        minutes = [float(b) for b in breaks.split(",")]
    except ValueError as exc:
        raise _fail("service-areas", f"--breaks {breaks!r}: give minutes like 4,8,12") from exc
    from twin.batch.service_areas import station_service_areas

    kinds = tuple(kind or STATION_KINDS)
    frame = _run(
        "service-areas",
        out_path,
        workers,
        scheduler,
        lambda client: station_service_areas(
            url=url,
            client=client,
            kinds=kinds,
            breaks=minutes,
            profile=profile,
            progress=not quiet,
        ),
        connect_timeout,
    )
    stations = frame["station_id"].nunique()
    missing = frame.loc[frame["note"].notna(), "station_id"].nunique()
    out.print(
        f"{stations} stations ({len(frame)} areas) written to {out_path}; "
        f"{missing} off the roads, without an area"
    )
