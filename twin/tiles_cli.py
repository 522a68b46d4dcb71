"""``twin tiles``: offline vector tile packages (PMTiles) for sites with no server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Vector tiles: offline packages (PMTiles).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]


def _fail(message: str) -> typer.Exit:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="The .pmtiles file to write.")],
    bbox: Annotated[
        str,
        typer.Option(help="Area as W,S,E,N in degrees (EPSG:4326), e.g. 7.40,43.72,7.44,43.75."),
    ],
    minzoom: Annotated[int, typer.Option(help="First zoom to include.")] = 0,
    maxzoom: Annotated[int, typer.Option(help="Last zoom to include (at most 15).")] = 15,
    layers: Annotated[
        str | None,
        typer.Option(help="Comma-separated layers, in drawing order; every stored layer if unset."),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(
            help="Cut the tiles as a caller with this role sees them (repeatable); by default "
            "as an anonymous caller of the API (TWIN_AUTH_ANONYMOUS_ROLE).",
        ),
    ] = None,
    owner: Annotated[
        bool,
        typer.Option("--owner", help="Cut the tiles as the store's owner: every layer, unmasked."),
    ] = False,
    max_tiles: Annotated[int, typer.Option(help="Refuse a package of more tiles.")] = 100_000,
    url: Url = None,
) -> None:
    """Write the API's vector tiles of an area to a PMTiles file (MapLibre reads it offline)."""
    if file.suffix != ".pmtiles":
        raise _fail(f"{file}: the file must end in .pmtiles")
    if not file.parent.is_dir():
        raise _fail(f"{file}: its folder {file.parent} does not exist")
    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    if owner and role:
        raise _fail("--owner and --role: give one or the other")
    # imported here: ``twin --help`` does not load the tile machinery
    from layers.database import StoreError
    from layers.settings import get_settings
    from layers.tile_packages import PackageError, export_pmtiles, parse_bbox

    roles: list[str] | None = None
    if not owner:
        anonymous = get_settings().auth_anonymous_role
        roles = list(role) if role else ([anonymous] if anonymous else [])
    try:
        box = parse_bbox(bbox)
        with Progress(*columns, console=err, transient=not err.is_terminal) as bars:
            task = bars.add_task("tiles", total=None)

            def update(_stage: str, done: int, total: int) -> None:
                bars.update(task, completed=done, total=total)

            report = export_pmtiles(
                file,
                bbox=box,
                minzoom=minzoom,
                maxzoom=maxzoom,
                layer_ids=None if layers is None else layers.split(","),
                roles=roles,
                url=url,
                max_tiles=max_tiles,
                progress=update,
            )
    except PackageError as exc:
        raise _fail(f"--{exc.parameter}: {exc}" if exc.parameter else str(exc)) from exc
    except (StoreError, OSError) as exc:
        raise _fail(f"{file}: {exc}") from exc
    out.print(
        f"wrote {report.path}: {report.written} tiles with features of {report.addressed} "
        f"(z{report.minzoom}-{report.maxzoom}, {', '.join(report.layers)}), "
        f"{report.bytes / 1024:.0f} KiB",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
