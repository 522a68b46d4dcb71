"""``twin live``: the live twin's commands (feeds, replay, simulation).

Importing this module stays cheap (the ``twin`` command starts fast): SUMO, the database and
MQTT are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="The live twin: feeds, replay, simulation.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)


@app.callback()
def live() -> None:
    """Group the live twin's commands (``simulate`` needs a group to be a subcommand)."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error (no traceback) and return the exit to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command("simulate")
def simulate_command(
    scenario: Annotated[
        Path,
        typer.Argument(help="A SUMO scenario: its .sumocfg, or the folder holding it."),
    ],
    speed: Annotated[
        float, typer.Option(help="Pace, × real time (1 = real time).", min=0.0001)
    ] = 1.0,
    fast: Annotated[
        bool, typer.Option("--fast", help="Run as fast as SUMO can (overrides --speed).")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Aggregation interval of the detectors, s.", min=1.0)
    ] = 60.0,
    bus_interval: Annotated[
        float, typer.Option(help="Interval of the bus positions, s.", min=1.0)
    ] = 10.0,
    begin: Annotated[
        float | None, typer.Option(help="Start of the simulation, s (the scenario's).")
    ] = None,
    end: Annotated[
        float | None, typer.Option(help="End of the simulation, s (the scenario's).")
    ] = None,
    incidents: Annotated[
        int, typer.Option(help="Lanes to block at random detected places and times.", min=0)
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of SUMO and of the incidents.")] = 42,
    import_network: Annotated[
        bool,
        typer.Option(
            "--import/--no-import",
            help="Import the scenario's network into the twin first (its roads are the "
            "detectors' features).",
        ),
    ] = True,
    broker: Annotated[
        str | None, typer.Option(help="MQTT broker URL (TWIN_MQTT_URL by default).")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="MQTT topic prefix (TWIN_LIVE_TOPIC_PREFIX).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL."),
    ] = None,
) -> None:
    """Run a SUMO scenario as the city's live feed: its detectors and buses publish over MQTT.

    Each detector publishes its flow (veh/h), occupancy (%) and speed (km/h) every interval,
    each bus its position; with --incidents, lanes are blocked by stopped vehicles and the
    true incidents are listed at the end.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from layers.errors import ParameterError
    from layers.ingest import IngestError
    from twin.live.detection import scenario_of
    from twin.live.simulate import random_incidents, simulate, simulation_period
    from twin.signals import import_sumo

    try:
        sc = scenario_of(scenario)
        start, stop = simulation_period(sc, begin, end)
        if import_network:
            reports = import_sumo(sc.config, url=url)
            added = sum(r.added for r in reports)
            err.print(f"imported {sc.name}'s network ({added} features added)", highlight=False)
        chosen = []
        if incidents:
            warmup = min(600.0, (stop - start) / 4)
            chosen = random_incidents(sc, incidents, seed, begin=start + warmup, end=stop)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s simulated"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=not err.is_terminal) as bars:
            task = bars.add_task(sc.name, total=stop - start)

            def progress(done: float, total: float) -> None:
                bars.update(task, completed=done, total=total)

            summary = simulate(
                sc.config,
                broker=broker,
                prefix=prefix,
                url=url,
                interval_s=interval,
                bus_interval_s=bus_interval,
                speed=None if fast else speed,
                begin=start,
                end=stop,
                incidents=chosen,
                seed=seed,
                progress=progress,
            )
    except (ParameterError, IngestError) as exc:
        raise _fail(str(exc)) from exc
    published = ", ".join(f"{n} {p}" for p, n in sorted(summary.observations.items()))
    out.print(
        f"{summary.scenario}: {summary.sim_seconds:.0f} s simulated in "
        f"{summary.wall_seconds:.0f} s; {summary.vehicles} vehicles, {summary.buses} buses; "
        f"published {published or 'nothing'} on {len(summary.datastreams)} datastreams",
        highlight=False,
    )
    for truth in summary.incidents:
        inc = truth.incident
        when = (
            f"from {truth.from_s:.0f} s until {truth.until_s:.0f} s"
            if truth.from_s is not None and truth.until_s is not None
            else "never placed (the lane stayed full)"
        )
        out.print(f"incident on lane {inc.lane} at {inc.position_m:.1f} m: {when}")


@app.command("replay")
def replay_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="Readings: a CSV or Parquet file with datastream (id or name), "
            "phenomenonTime and result columns."
        ),
    ],
    speed: Annotated[
        float, typer.Option(help="Pace, × real time (10 = ten times faster).", min=0.0001)
    ] = 1.0,
    fast: Annotated[
        bool, typer.Option("--fast", help="As fast as the store takes them (overrides --speed).")
    ] = False,
    rebase: Annotated[
        bool,
        typer.Option(
            "--rebase", help="Shift the times so the last reading is stamped when it is sent."
        ),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL."),
    ] = None,
) -> None:
    """Replay recorded readings into the twin at N× real time, through the one ingest path.

    What is stored is republished over MQTT and pushed to the viewers (when a broker
    answers); refused rows are listed with their row number and reason.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from layers.errors import ParameterError
    from layers.settings import get_settings
    from twin.live.feed import Feed
    from twin.live.mqtt import Broker, BrokerError, Publisher, open_client
    from twin.live.processors import default_processors
    from twin.live.replay import replay

    settings = get_settings()
    feed = Feed(url=url, processors=default_processors())
    client = None
    if settings.mqtt_url:
        try:
            client = open_client(Broker.from_url(settings.mqtt_url), name="replay", timeout_s=5)
            feed.publisher = Publisher(client, prefix=settings.live_topic_prefix)
        except BrokerError as exc:
            err.print(f"[yellow]note:[/yellow] stored only, not published: {exc}", highlight=False)
    try:
        with Progress(
            BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
        ) as bars:
            task = bars.add_task("replay", total=None)
            report = replay(
                file,
                feed=feed,
                speed=None if fast else speed,
                rebase=rebase,
                progress=lambda done, total: bars.update(task, completed=done, total=total),
            )
    except ParameterError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"the store cannot be reached: {exc}") from None
    finally:
        if client is not None:
            client.disconnect()
            client.loop_stop()
    out.print(
        f"{file}: {report.rows} rows, {report.stored} stored, {report.duplicates} already "
        f"stored, {report.refused_count} refused ({report.seconds:.1f} s)",
        highlight=False,
        soft_wrap=True,
    )
    for row, reason in report.refused:
        out.print(f"{file}: row {row}: {reason}", highlight=False, markup=False, soft_wrap=True)
    if report.refused_count > len(report.refused):
        out.print(f"… and {report.refused_count - len(report.refused)} more refused rows")
    if report.refused_count:
        raise typer.Exit(1)
