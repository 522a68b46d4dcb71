"""The ``twin`` command line: set up the store, import layers, serve the API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from layers.catalog import LAYERS
from layers.errors import ParameterError
from twin.audit import audit_app
from twin.auth import app as auth_app
from twin.batch.cli import app as batch_app
from twin.live.cli import app as live_app
from twin.scenarios.cli import app as scenarios_app
from twin.scenarios.preplan_cli import drills_app, preplans_app
from twin.tiles_cli import app as tiles_app

if TYPE_CHECKING:
    # Heavy modules (pandas, geopandas, SQLAlchemy, routing, the city set-up) are imported in
    # the commands that use them: `twin --help` and every command's --help need none of them.
    import pandas as pd

    from layers.ingest import IngestReport
    from layers.ingest import Progress as ProgressCallback
    from routing.traces import Outage
    from twin.founding import CityPlan

# The sample city's files (twin.sample.SAMPLE_DIR; not imported here, it loads the store).
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data_samples" / "monaco"

app = typer.Typer(
    help="CityTwin: the city's layers in PostGIS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
sample_app = typer.Typer(help="The sample city (Monaco).", no_args_is_help=True)
raster_app = typer.Typer(
    help="Rasters: DEM, flood depth, population density.", no_args_is_help=True
)
trace_app = typer.Typer(help="Utility networks: topology, breaks, outages.", no_args_is_help=True)
signals_app = typer.Typer(
    help="Traffic signals: Webster timing, green waves, emergency corridors, proof in SUMO.",
    no_args_is_help=True,
)
city_app = typer.Typer(
    help="A city from an OpenStreetMap extract or a folder of GIS files.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(city_app, name="city")
app.add_typer(sample_app, name="sample")
app.add_typer(raster_app, name="raster")
app.add_typer(trace_app, name="trace")
app.add_typer(signals_app, name="signals")
app.add_typer(live_app, name="live")
app.add_typer(audit_app, name="audit")
app.add_typer(auth_app, name="auth")
app.add_typer(batch_app, name="batch")
app.add_typer(tiles_app, name="tiles")
app.add_typer(scenarios_app, name="scenarios")
app.add_typer(preplans_app, name="preplans")
app.add_typer(drills_app, name="drills")

out = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]


@contextmanager
def _progress() -> Iterator[ProgressCallback]:
    """Show an import's stages as progress bars on stderr."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=not err.is_terminal) as bars:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            # a total of 0: not known yet (an OSM file's objects), a bar without an end
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total or None)
            bars.update(tasks[stage], completed=done, total=total or None)

        yield update


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _check_paths(
    *, files: dict[str, Path | None] | None = None, folders: dict[str, Path | None] | None = None
) -> None:
    """Refuse, before any work, output paths that cannot be written (exit 2, one line).

    Parameters
    ----------
    files
        Output files by option name: their folder must exist, and they must not be folders.
    folders
        Working folders by option name: they must not be existing files.

    Raises
    ------
    typer.Exit
        With status 2, naming the option and the reason.
    """
    for option, path in (files or {}).items():
        if path is None:
            continue
        if path.is_dir():
            raise _fail(f"{option} {path}: is a folder, not a file", 2)
        if not path.parent.is_dir():
            raise _fail(f"{option} {path}: its folder {path.parent} does not exist", 2)
    for option, path in (folders or {}).items():
        if path is not None and path.exists() and not path.is_dir():
            raise _fail(f"{option} {path}: is a file, not a folder", 2)


def _has_traffic_lights(scenario: Any) -> bool:
    """Whether a SUMO scenario's network has any traffic light (a signal to time)."""
    from routing.signals import signals_of

    return bool(signals_of(scenario.read_net()))


def _summary(report: IngestReport) -> str:
    return (
        f"{report.layer}: {report.read} read, {report.added} added, {report.changed} changed, "
        f"{report.unchanged} unchanged, {report.retired} retired "
        f"({report.seconds:.1f} s, source {report.source})"
    )


@db_app.command("upgrade")
def db_upgrade(url: Url = None) -> None:
    """Create the database if needed and migrate it to the newest schema."""
    from layers.database import StoreError, upgrade

    try:
        revision = upgrade(url)
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"database at revision {revision}")


@db_app.command("status")
def db_status(url: Url = None) -> None:
    """Print the schema revision of the database and the newest one."""
    from layers.database import current_revision, head_revision

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
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Text encoding of a CSV file or a Shapefile's attributes, e.g. GB18030, GBK, "
            "latin-1; default: UTF-8, or what the file declares (a Shapefile's .cpg)."
        ),
    ] = None,
    url: Url = None,
) -> None:
    """Import a file into a layer, all or nothing."""
    from layers.ingest import IngestError, ingest
    from layers.osm import is_osm

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
                encoding=encoding,
            )
    except IngestError as exc:
        raise _fail(f"{exc}\nrejected: nothing was written to {layer}") from exc
    for warning in report.repaired:
        err.print(
            f"warning: {warning.describe(str(path))}", markup=False, highlight=False, soft_wrap=True
        )
    if report.read == 0:  # never silently empty: say what the layer needs
        what = f"{path} holds no {layer}"
        if is_osm(path):
            what += " as OpenStreetMap maps them (see the table in layers/osm.py)"
            if layer == "districts":
                what += "; an extract cut from a larger one often holds boundaries only in part"
        retired = f"; its {report.retired} current features were closed" if report.retired else ""
        err.print(f"warning: {what}{retired}", markup=False, highlight=False, soft_wrap=True)
    out.print(_summary(report), markup=False, highlight=False, soft_wrap=True)


@app.command("layers")
def layers_command(
    at: Annotated[str | None, typer.Option(help="Count as of this ISO 8601 moment.")] = None,
    url: Url = None,
) -> None:
    """List the layers and their feature counts."""
    from layers.queries import layer_counts

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
    from layers.ingest import IngestError
    from twin.sample import load_sample

    try:
        with _progress() as progress:
            reports = load_sample(directory=directory, url=url, force=force, progress=progress)
    except (IngestError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc
    if not reports:
        out.print("sample city already loaded (use --force to import again)")
    for report in reports:
        out.print(_summary(report), markup=False, highlight=False, soft_wrap=True)


@city_app.command("init")
def city_init(
    source: Annotated[
        Path,
        typer.Argument(
            help="OSM extract (.osm, .osm.xml, .osm.gz, .osm.bz2, .osm.pbf) or a folder of GIS "
            "files with twin-mapping.toml."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="The city's name.")] = None,
    bbox: Annotated[
        str | None, typer.Option(help="Extent: min lon,min lat,max lon,max lat (EPSG:4326).")
    ] = None,
    boundary: Annotated[
        str | None,
        typer.Option(help="Extent: an administrative boundary of the extract, by name or id."),
    ] = None,
    crs: Annotated[
        str | None,
        typer.Option(help="Metric CRS (default: the UTM zone, or CGCS2000 GK zone in China)."),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Mapping file of a folder of GIS files (TOML).")
    ] = None,
    district_grid: Annotated[
        float | None,
        typer.Option(help="With no districts in the data: square cells of this side, m (网格)."),
    ] = None,
    estimate_population: Annotated[
        bool, typer.Option(help="Estimate residents from the buildings' floor area.")
    ] = True,
    m2_per_person: Annotated[
        float | None, typer.Option(help="Floor area per resident for the estimate, m².")
    ] = None,
    population_raster: Annotated[
        str | None,
        typer.Option(help="A stored population_density raster to share out over buildings."),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Retire another city's (or the sample's) current features.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Propose and check only; write nothing.")] = False,
    url: Url = None,
) -> None:
    """Set the city up in one pass: settings, every layer clipped to the extent, a report."""
    from layers.ingest import IngestError
    from twin.founding import CityError, init_city

    box = None
    if bbox is not None:
        try:
            parts = tuple(float(v) for v in bbox.split(","))
        except ValueError:
            raise _fail(f"--bbox: expected four numbers, got {bbox!r}", 2) from None
        if len(parts) != 4:
            raise _fail(f"--bbox: expected four numbers, got {bbox!r}", 2)
        box = (parts[0], parts[1], parts[2], parts[3])
    try:
        with _progress() as progress:
            plan = init_city(
                source,
                name=name,
                bbox=box,
                boundary=boundary,
                metric_crs=crs,
                mapping=mapping,
                district_grid_m=district_grid,
                estimate_population=estimate_population,
                m2_per_person=m2_per_person,
                population_raster=population_raster,
                replace=replace,
                dry_run=dry_run,
                url=url,
                progress=progress,
            )
    except ParameterError as exc:
        options = {"district_grid_m": "--district-grid", "metric_crs": "--crs"}
        option = options.get(exc.parameter or "", f"--{(exc.parameter or '').replace('_', '-')}")
        raise _fail(f"{option}: {exc}", 2) from exc
    except (CityError, IngestError) as exc:
        raise _fail(f"{exc}\nrejected: nothing was written") from exc
    _print_plan(plan)


def _print_plan(plan: CityPlan) -> None:
    """Print a city's settings, its layers and what it lacks."""
    minx, miny, maxx, maxy = plan.bbox
    out.print(
        f"{plan.name}: extent {minx:.5f},{miny:.5f},{maxx:.5f},{maxy:.5f} "
        f"({plan.extent_from}), metric CRS {plan.metric_crs}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    table = Table("layer", "features", "cut", "outside", "added", "changed", "unchanged", "retired")
    for load in plan.layers:
        table.add_row(
            load.layer,
            *(
                str(v)
                for v in (
                    load.features,
                    load.cut,
                    load.dropped,
                    load.added,
                    load.changed,
                    load.unchanged,
                    load.retired,
                )
            ),
        )
    out.print(table)
    for load in plan.layers:
        if load.note:
            out.print(f"{load.layer}: {load.note}", markup=False, highlight=False, soft_wrap=True)
    for gap in plan.missing:
        out.print(
            f"missing {gap.input}: no {gap.disables}; supply: {gap.remedy}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if plan.written:
        out.print(f"written in {plan.seconds:.1f} s", markup=False)
    else:
        out.print("a proposal: nothing was written (run again without --dry-run)", markup=False)


def _point(text: str, option: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise _fail(f"{option}: expected lon,lat, got {text!r}", 2) from None
    return lon, lat


def _table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(*map(str, frame.columns), title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    return table


@raster_app.command("ingest")
def raster_ingest(
    path: Annotated[Path, typer.Argument(help="GeoTIFF (or any raster GDAL reads).")],
    name: Annotated[str, typer.Option(help="Name to store it under (a new version).")],
    kind: Annotated[str, typer.Option(help="dem, flood_depth or population_density.")],
    unit: Annotated[str | None, typer.Option(help="Unit of the values.")] = None,
    source: Annotated[str | None, typer.Option(help="Provenance label.")] = None,
    attribution: Annotated[
        str | None,
        typer.Option(help='Credit shown in the viewer, e.g. "SRTM (NASA/USGS), public domain".'),
    ] = None,
    licence: Annotated[str | None, typer.Option(help="SPDX licence id, e.g. CC-BY-4.0.")] = None,
    url: Url = None,
) -> None:
    """Store a raster in the database, versioned by name; a bad file writes nothing."""
    from layers.ingest import IngestError
    from layers.rasters import ingest_raster

    try:
        info = ingest_raster(
            path,
            name=name,
            kind=kind,
            unit=unit,
            source=source,
            attribution=attribution,
            licence=licence,
            url=url,
        )
    except (IngestError, ParameterError) as exc:
        raise _fail(f"{exc}\nrejected: nothing was written") from exc
    out.print(
        f"{info.name}: {info.status} ({info.kind}, {info.width}×{info.height}, {info.crs})",
        markup=False,
    )


@raster_app.command("list")
def raster_list(url: Url = None) -> None:
    """List the stored rasters."""
    from layers.rasters import list_rasters

    table = list_rasters(url=url)
    out.print(
        _table(table[["name", "kind", "width", "height", "crs", "unit", "valid_from"]], "rasters")
    )


@trace_app.command("topology")
def trace_topology(
    network: Annotated[str, typer.Argument(help="water, gas, sewer, heat or power.")],
    url: Url = None,
) -> None:
    """Build a network's topology and report its size and problems (dangling ends ...)."""
    from routing.traces import Utilities

    try:
        with _progress() as progress:
            net = Utilities(url).network(network, progress=progress)
    except ParameterError as exc:
        raise _fail(str(exc), 2) from exc
    out.print(
        f"{network}: {len(net.lines)} lines, {len(net.nodes)} nodes, {net.n_edges} pieces, "
        f"{net.n_segments} segments, {int(net.device.sum())} valves/switches, "
        f"{int(net.source.sum())} sources"
    )
    if len(net.problems):
        out.print(_table(net.problems.head(50), f"{len(net.problems)} problems (first 50)"))


def _report(result: Outage, geojson: Path | None) -> None:
    if result.operate:
        out.print("operate: " + ", ".join(result.operate), markup=False, soft_wrap=True)
    if result.unable:
        out.print("cannot operate: " + ", ".join(result.unable), markup=False, soft_wrap=True)
    figures = ", ".join(f"{key} {value}" for key, value in result.summary().items())
    out.print(figures, markup=False, soft_wrap=True)
    if geojson is not None:
        result.lost.to_file(geojson, driver="GeoJSON")
        out.print(f"lost pieces written to {geojson}")


@trace_app.command("isolate")
def trace_isolate(
    network: Annotated[str, typer.Argument(help="water, gas, sewer, heat or power.")],
    point: Annotated[str | None, typer.Option(help="lon,lat of the break.")] = None,
    line: Annotated[str | None, typer.Option(help="Id of the broken pipe or line.")] = None,
    inoperable: Annotated[
        list[str] | None, typer.Option(help="A valve or switch that will not move (repeat).")
    ] = None,
    geojson: Annotated[Path | None, typer.Option(help="Write the lost pieces here.")] = None,
    url: Url = None,
) -> None:
    """Isolate a break: the valves (switches) to operate and what loses supply."""
    from routing.traces import Utilities

    where = _point(point, "--point") if point else None
    utilities = Utilities(url)
    try:
        with _progress() as progress:
            utilities.network(network, progress=progress)
        result = utilities.isolate(where, network=network, line=line, inoperable=inoperable or [])
    except ParameterError as exc:
        raise _fail(str(exc), 2) from exc
    _report(result, geojson)


@trace_app.command("outage")
def trace_outage(
    network: Annotated[str, typer.Argument(help="water, gas, sewer, heat or power.")],
    operate: Annotated[
        list[str] | None, typer.Option(help="A valve closed or switch opened (repeat).")
    ] = None,
    out_of_service: Annotated[
        list[str] | None, typer.Option("--out", help="A node or line out of service (repeat).")
    ] = None,
    geojson: Annotated[Path | None, typer.Option(help="Write the lost pieces here.")] = None,
    url: Url = None,
) -> None:
    """Trace what an operation or a failure cuts off; for the grid, what goes dark in turn."""
    from routing.traces import Utilities

    utilities = Utilities(url)
    try:
        with _progress() as progress:
            utilities.network(network, progress=progress)
        result = utilities.outage(network, operate=operate or [], out=out_of_service or [])
        cascade = utilities.cascade(result) if network == "power" else None
    except ParameterError as exc:
        raise _fail(str(exc), 2) from exc
    _report(result, geojson)
    if cascade is not None and len(cascade.dark):
        out.print(_table(cascade.dark, "dark"))


Scenario = Annotated[Path, typer.Argument(help="SUMO scenario (.sumocfg).")]
Base = Annotated[
    str,
    typer.Option(help="Phases to re-time: 'scenario' (its own plans) or 'network' (defaults)."),
]


@signals_app.command("import")
def signals_import(
    scenario: Scenario,
    base: Base = "scenario",
    url: Url = None,
) -> None:
    """Import a SUMO scenario's roads, intersections and signals (links, flows) into the twin."""
    from layers.ingest import IngestError
    from twin.signals import import_sumo

    try:
        with _progress() as progress:
            reports = import_sumo(scenario, base=base, url=url, progress=progress)
    except (ParameterError, IngestError) as exc:
        raise _fail(str(exc), 2) from exc
    for report in reports:
        out.print(_summary(report))


@signals_app.command("export")
def signals_export(
    folder: Annotated[Path, typer.Argument(help="Folder to write the SUMO files into.")],
    plan: Annotated[
        str | None, typer.Option(help="Also write this stored plan as an additional file.")
    ] = None,
    url: Url = None,
) -> None:
    """Write the twin's roads and signals as a SUMO network (and a stored plan)."""
    import twin

    city = twin.connect(url)
    try:
        net = city.export_sumo(folder)
        out.print(f"wrote {net}")
        if plan is not None:
            path = folder / f"{plan}.add.xml"
            path.write_text(city.signal_plan_sumo(plan), encoding="utf-8")
            out.print(f"wrote {path}")
    except KeyError as exc:
        raise _fail(f"no signal plan named {plan!r}", 2) from exc
    except ParameterError as exc:
        raise _fail(str(exc), 2) from exc


@signals_app.command("optimise")
def signals_optimise(
    scenario: Scenario,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the plan as a SUMO additional file.")
    ] = None,
    base: Base = "scenario",
    greenwave: Annotated[
        bool, typer.Option(help="Common cycle and MAXBAND offsets along the busiest corridors.")
    ] = False,
    phases: Annotated[
        bool,
        typer.Option(
            "--phases",
            help="Design the phases first: protected lefts where the HCM warrants them, joined "
            "junctions' inner links opened; then time them.",
        ),
    ] = False,
    save: Annotated[
        str | None,
        typer.Option(
            help="Store the plan in the twin under this name (a new version if it exists)."
        ),
    ] = None,
) -> None:
    """Time a scenario's signals by Webster's method from its peak-hour flows."""
    from routing.signals import (
        Plan,
        coordinate,
        optimise_scenario,
        read_scenario,
        write_additional,
    )
    from routing.signals.phasing import design_phases

    if phases and greenwave:
        raise _fail("--phases and --greenwave: give one or the other", 2)
    _check_paths(files={"--out": out_file})
    try:
        sc = read_scenario(scenario)
        if not _has_traffic_lights(sc):
            raise _fail("the scenario has no traffic lights", 2)
        plan: Plan
        if phases:
            plan = design_phases(sc, base=base, open_inner=True)
        else:
            plan = optimise_scenario(sc, base=base)
        if greenwave:
            from routing.signals.evaluation import silence_highs_banner

            silence_highs_banner()
            plan = coordinate(sc, plan, base=base)
    except ParameterError as exc:
        raise _fail(str(exc), 2) from exc
    table = Table(title=f"{sc.name}: Webster plan")
    for column in ("signal", "cycle s", "offset s", "greens s", "Y", "x", "delay s"):
        table.add_column(column)
    for t in plan.timings.values():
        greens = " ".join(f"{g:g}" for g in t.greens.values())
        y = sum(t.critical_ratios.values())
        table.add_row(
            t.signal,
            f"{t.cycle:g}",
            f"{t.offset:g}",
            greens,
            f"{y:.2f}",
            f"{t.degree_of_saturation:.2f}",
            f"{t.delay_s:.1f}",
        )
    out.print(table)
    for wave in plan.bandwidth:
        out.print(
            f"green wave {' > '.join(wave['signals'])}: cycle {wave['cycle_s']:g} s, bandwidth "
            f"{wave['bandwidth_out_s']:.1f} s out, {wave['bandwidth_in_s']:.1f} s in"
        )
    if plan.idle:
        out.print(f"no counted flow, left as they were: {', '.join(plan.idle)}")
    for sid, why in plan.kept.items():
        out.print(f"signal {sid}: {why}", markup=False, highlight=False)
    for line in _phasing_lines(plan.to_json().get("phasing")):
        out.print(line, markup=False, highlight=False)
    if out_file is not None:
        write_additional(plan.timings.values(), out_file, program_id="twin")
        out.print(f"wrote {out_file}")
    if save is not None:
        from layers.signal_plans import save_plan

        request = {
            "scenario": str(scenario),
            "base": base,
            "phases": phases,
            "greenwave": greenwave,
        }
        try:
            record = save_plan(save, plan.to_json(), request)
        except ParameterError as exc:
            raise _fail(f"--save: {exc}", 2) from exc
        out.print(f"stored plan {record['name']} version {record['version']}")


def _phasing_lines(phasing: dict[str, Any] | None) -> list[str]:
    """Return the phase design's report, a line per signal: what changed, what was kept, why."""
    if not phasing:
        return []
    lines = [f"new phases: {', '.join(phasing['changed']) or 'none'}"]
    lines += [f"signal {sid}: phases kept ({why})" for sid, why in phasing["kept"].items()]
    return lines


@signals_app.command("evaluate")
def signals_evaluate(
    scenario: Scenario,
    seeds: Annotated[int, typer.Option(help="Seeds per variant.")] = 5,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(help="Comma-separated variants (all by default)."),
    ] = None,
    base: Base = "scenario",
    end: Annotated[float | None, typer.Option(help="Simulation horizon, s.")] = None,
    emergency: Annotated[
        str | None,
        typer.Option(
            help="Emergency route: comma-separated edges (two: routed between them); measures "
            "the vehicle with and without the green corridor."
        ),
    ] = None,
    emergency_depart: Annotated[
        float | None, typer.Option(help="When the emergency vehicle departs, s.")
    ] = None,
    emergency_under: Annotated[
        str | None,
        typer.Option(
            help="The variant the corridor runs on (a fixed plan or a controller); by default "
            "webster+greenwave, else the first variant."
        ),
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="Keep SUMO's files in this folder.")] = None,
) -> None:
    """Run SUMO for each plan (scenario's, SUMO's tools, the twin's) and compare, seed by seed."""
    from routing.signals import VARIANTS, evaluate, write_json

    _check_paths(files={"--json": json_file}, folders={"--workdir": workdir})
    chosen = tuple(v.strip() for v in variants.split(",")) if variants else VARIANTS
    route = [e.strip() for e in emergency.split(",") if e.strip()] if emergency else None
    try:
        result = evaluate(
            scenario,
            seeds=seeds,
            variants=chosen,
            base=base,
            end=end,
            emergency=route,
            emergency_depart=emergency_depart,
            emergency_under=emergency_under,
            workdir=workdir,
            progress=lambda line: err.print(line, markup=False, highlight=False),
        )
    except ParameterError as exc:
        raise _fail(str(exc), 2) from exc
    out.print(result.table(), markup=False, highlight=False, soft_wrap=True)
    e = result.emergency
    if e and "error" not in e:
        out.print(
            f"emergency vehicle ({e['variant']}): {e['travel_time_without_s']:.0f} s without "
            "the corridor, "
            f"{e['travel_time_with_s']:.0f} s with it ({e['faster_pct']:.0f}% faster); "
            f"everyone else's time loss {e['others_extra_delay_pct']:+.1f}%"
        )
    if json_file is not None:
        write_json(result, json_file)
        out.print(f"wrote {json_file}")
    if e and "error" in e:  # the plans' figures are printed and written; the corridor failed
        raise _fail(f"emergency vehicle ({e['variant']}): {e['error']}", 2)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API."""
    from layers.settings import get_settings

    get_settings()  # a wrong TWIN_* setting is said here, once, not by every worker
    from twin.serving import serve as run_server  # several workers: TCP_NODELAY kept

    run_server(host=host, port=port, workers=workers)


def main() -> None:
    """Run the CLI (the ``twin`` command and ``python -m twin``).

    A store that cannot be reached, a database URL that is not one, or a ``TWIN_*`` setting
    that is wrong ends the command with one line naming what and why, and exit status 1 —
    never a traceback.

    Raises
    ------
    SystemExit
        With the command's exit status.
    """
    try:
        app(prog_name="twin")
    except Exception as error:
        # the store's libraries are imported only when something failed (see the imports)
        import psycopg
        import pydantic
        from sqlalchemy import exc as sa_exc

        if isinstance(error, (sa_exc.OperationalError, psycopg.OperationalError)):
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            err.print(f"twin: the store cannot be reached: {reason}", markup=False, highlight=False)
            sys.exit(1)
        if isinstance(error, sa_exc.ArgumentError):
            err.print(
                f"twin: the database URL (--url or TWIN_DATABASE_URL) is not one: {error}",
                markup=False,
                highlight=False,
            )
            sys.exit(1)
        if isinstance(error, pydantic.ValidationError):
            for problem in error.errors():
                field = ".".join(str(part) for part in problem["loc"]) or "settings"
                err.print(
                    f"twin: setting TWIN_{field.upper()}: {problem['msg']}",
                    markup=False,
                    highlight=False,
                )
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
    sys.exit(0)
