"""``twin preplans`` and ``twin drills``: pre-plans (预案) and drills (演练) from the command line.

Importing this module stays cheap (``twin --help`` loads nothing heavy): the store, routing and
the scenarios are imported inside the commands. A bad value (an unknown pre-plan, drill or step,
a place outside the city, a drill that has ended) ends the command with one line naming it and
exit status 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

preplans_app = typer.Typer(
    help="Pre-plans (预案): scenario templates per incident kind, applied to a place.",
    no_args_is_help=True,
)
drills_app = typer.Typer(
    help="Drills (演练): a pre-plan run against the twin with a clock, reviewed.",
    no_args_is_help=True,
)

out = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Place = Annotated[
    str, typer.Option("--at", help="Where: LON,LAT in degrees (EPSG:4326), e.g. 7.4246,43.7384.")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error (no traceback) and return the exit to raise."""
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _refusals() -> Iterator[None]:
    """Turn the refusals of the pre-plan and drill functions into one line and exit 2."""
    from layers.errors import ParameterError
    from layers.scenarios import ScenarioExistsError, ScenarioNotFoundError
    from twin.scenarios.drills import DrillEndedError, DrillNotFoundError
    from twin.scenarios.preplans import PreplanNotFoundError

    refused = (
        ParameterError,
        PreplanNotFoundError,
        DrillNotFoundError,
        DrillEndedError,
        ScenarioNotFoundError,
        ScenarioExistsError,
    )
    try:
        yield
    except refused as exc:
        raise _fail(str(exc)) from None


def _place(text: str) -> tuple[float, float]:
    """Read ``LON,LAT``; refuse anything else naming ``--at``."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lon, lat = (float(p) for p in parts)
    except ValueError:
        raise _fail(f"--at: expected LON,LAT in degrees, got {text!r}") from None
    return lon, lat


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, ensure_ascii=False, default=str))


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# -- pre-plans ----------------------------------------------------------------------------------


@preplans_app.command("list")
def list_command(as_json: Json = False, url: Url = None) -> None:
    """List the stored pre-plans (current versions)."""
    from twin.scenarios import preplans

    found = preplans.list_preplans(url=url)
    if as_json:
        _print_json([p.to_json() for p in found])
        return
    if not found:
        err.print("no pre-plans stored: load the built-in ones with `twin preplans seed`")
        return
    table = Table("name", "kind", "title", "标题", "units", "cordon", "steps", "version")
    for p in found:
        units = ", ".join(f"{u.count} {u.kind}" for u in p.units) or "-"
        cordon = f"{p.cordon_m:g} m" if p.cordon_m else "-"
        table.add_row(
            p.name, p.kind, p.title_en, p.title_zh, units, cordon, str(len(p.steps)), str(p.version)
        )
    out.print(table)


@preplans_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="A pre-plan's name, or an incident kind.")],
    as_json: Json = False,
    url: Url = None,
) -> None:
    """Show a pre-plan: units, cordon, valves, who to notify, the checklist."""
    from twin.scenarios import preplans

    with _refusals():
        plan = preplans.get(name, parameter="name", url=url)
    if as_json:
        _print_json(plan.to_json())
        return
    out.print(
        f"{plan.name} ({plan.kind}): {plan.title_en} / {plan.title_zh}, version {plan.version} "
        f"by {plan.author or '-'}",
        markup=False,
        highlight=False,
    )
    if plan.description:
        out.print(plan.description, markup=False, highlight=False)
    units = ", ".join(f"{u.count} {u.kind}" for u in plan.units) or "none"
    out.print(f"units: {units}", markup=False, highlight=False)
    out.print(
        f"cordon: {plan.cordon_m:g} m ({plan.closure_kind})" if plan.cordon_m else "cordon: none",
        markup=False,
        highlight=False,
    )
    if plan.valves is not None:
        need = "required" if plan.valves.required else "if one is near"
        out.print(
            f"valves: isolate the nearest {plan.valves.network} line within "
            f"{plan.valves.search_m:g} m ({need})",
            markup=False,
            highlight=False,
        )
    out.print(
        "notify: " + ("; ".join(f"{c.en} ({c.zh})" for c in plan.notify) or "nobody"),
        markup=False,
        highlight=False,
    )
    table = Table("step", "what", "做什么", "role", "target")
    for step in plan.steps:
        table.add_row(step.id, step.en, step.zh, step.role, _minutes(step.target_s))
    out.print(table)
    if plan.source:
        out.print(f"targets: {plan.source}", markup=False, highlight=False)


@preplans_app.command("seed")
def seed_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            help='A JSON file of pre-plans ({"preplans": [...]} or one template); the '
            "built-in ones when omitted."
        ),
    ] = None,
    author: Annotated[str, typer.Option(help="Who is recorded as saving them.")] = "twin",
    url: Url = None,
) -> None:
    """Store the built-in pre-plans (or a file's); one already stored as it is stays as it is."""
    from layers.errors import ParameterError
    from twin.scenarios import preplans

    with _refusals():
        if file is None:
            report = preplans.seed(author=author, url=url)
            added, changed, unchanged = report.added, report.changed, report.unchanged
        else:
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise _fail(f"{file}: {exc}") from None
            templates = data if isinstance(data, list) else None
            if isinstance(data, dict) and "preplans" in data:
                templates = data["preplans"]
            added, changed, unchanged = [], [], []
            for i, template in enumerate(templates if templates is not None else [data]):
                try:
                    plan = preplans.parse(template)
                except ParameterError as exc:
                    raise _fail(f"{file}: pre-plan {i + 1}: {exc}") from None
                _, outcome = preplans.save(plan, author=author, url=url)
                {"added": added, "changed": changed, "unchanged": unchanged}[outcome].append(
                    plan.name
                )
    out.print(
        f"pre-plans: {len(added)} added, {len(changed)} changed, {len(unchanged)} unchanged",
        highlight=False,
    )
    for label, names in (("added", added), ("changed", changed)):
        if names:
            out.print(f"{label}: {', '.join(names)}", markup=False, highlight=False)


@preplans_app.command("apply")
def apply_command(
    name: Annotated[str, typer.Argument(help="A pre-plan's name, or an incident kind.")],
    at: Place,
    scenario: Annotated[
        str | None, typer.Option("--name", help="The scenario's name (default: generated).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="The scenario's title.")] = None,
    author: Annotated[str, typer.Option(help="Who applies it.")] = "",
    as_json: Json = False,
    url: Url = None,
) -> None:
    """Apply a pre-plan at a place: a scenario with its incident, cordon, valves and dispatch."""
    from twin.scenarios import preplans

    place = _place(at)
    with _refusals():
        made = preplans.apply(name, place, name=scenario, title=title, author=author, url=url)
    if as_json:
        _print_json(made.to_json())
        return
    settings = made.settings
    out.print(f"scenario {made.name}: {made.title}", markup=False, highlight=False)
    cordon = settings.get("cordon") or {}
    if cordon.get("feature"):
        out.print(f"cordon: {cordon['radius_m']:g} m closed ({cordon['kind']})", highlight=False)
    valves = settings.get("valves")
    if valves is not None:
        if valves.get("line") is None:
            out.print(f"valves: {valves.get('note')}", markup=False, highlight=False)
        else:
            lost = valves["summary"]
            out.print(
                f"valves: {valves['network']} line {valves['line']} isolated: operate "
                f"{', '.join(valves['operate']) or 'nothing'}; {lost['buildings']} buildings "
                f"({lost['population']} people) and {lost['hydrants']} hydrants out",
                markup=False,
                highlight=False,
            )
    table = Table("kind", "unit", "name", "arrives in")
    for group in settings.get("dispatch", []):
        for unit in group["units"]:
            table.add_row(group["kind"], unit["id"], unit["name"] or "", _minutes(unit["total_s"]))
        if group["short"]:
            table.add_row(group["kind"], f"{group['short']} short", "", "-")
    out.print(table)
    contacts = "; ".join(f"{c['en']} ({c['zh']})" for c in settings.get("notify", []))
    out.print(f"notify: {contacts or 'nobody'}", markup=False, highlight=False)


# -- drills -------------------------------------------------------------------------------------


@drills_app.command("list")
def drills_list_command(as_json: Json = False, url: Url = None) -> None:
    """List the drills, newest first."""
    from twin.scenarios import drills

    found = drills.list_drills(url=url)
    if as_json:
        _print_json([d.to_json() for d in found])
        return
    table = Table("id", "pre-plan", "scenario", "title", "lead", "started", "ended")
    for d in found:
        table.add_row(
            str(d.id),
            f"{d.preplan} v{d.preplan_version}",
            d.scenario,
            d.title,
            d.lead,
            d.started_at.isoformat(timespec="seconds"),
            "-" if d.ended_at is None else d.ended_at.isoformat(timespec="seconds"),
        )
    out.print(table)


@drills_app.command("start")
def start_command(
    preplan: Annotated[
        str | None, typer.Option(help="The pre-plan to drill (with --at): it is applied.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Where (with --preplan): LON,LAT in degrees.")
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="Instead: a scenario a pre-plan was applied as.")
    ] = None,
    title: Annotated[str, typer.Option(help="What the drill is.")] = "",
    lead: Annotated[str, typer.Option(help="Who leads it.")] = "",
    started_at: Annotated[
        str | None,
        typer.Option(
            "--started-at",
            help="When it started, to replay a drill held earlier from its log: RFC 3339 with "
            "the UTC offset, e.g. 2026-12-01T09:00:00+01:00 (default: now).",
        ),
    ] = None,
    url: Url = None,
) -> None:
    """Start a drill now (by the store's clock), or replay one held earlier; prints its id."""
    from twin.scenarios import drills

    place = None if at is None else _place(at)
    with _refusals():
        drill = drills.start(
            preplan,
            place,
            scenario=scenario,
            title=title,
            lead=lead,
            started_at=started_at,
            url=url,
        )
    out.print(
        f"drill {drill.id} started at {drill.started_at.isoformat()}: pre-plan {drill.preplan} "
        f"v{drill.preplan_version} on scenario {drill.scenario}",
        markup=False,
        highlight=False,
    )


DrillId = Annotated[int, typer.Argument(help="The drill's id (`twin drills list`).")]
Elapsed = Annotated[
    float | None,
    typer.Option(
        "--elapsed",
        help="When, in seconds after the drill's start (a replay); now by default.",
    ),
]


@drills_app.command("record")
def record_command(
    drill_id: DrillId,
    actor: Annotated[str, typer.Option(help="Who did it.")],
    step: Annotated[str | None, typer.Option(help="The checklist step it does.")] = None,
    what: Annotated[str, typer.Option(help="What was done (default: the step).")] = "",
    elapsed: Elapsed = None,
    url: Url = None,
) -> None:
    """Log an action in a running drill."""
    from twin.scenarios import drills

    with _refusals():
        action = drills.record(
            drill_id, actor=actor, step=step, what=what, elapsed_s=elapsed, url=url
        )
    out.print(
        f"drill {drill_id}: {action.actor}: {action.what} at {action.elapsed_s:.1f} s",
        markup=False,
        highlight=False,
    )


@drills_app.command("end")
def end_command(drill_id: DrillId, elapsed: Elapsed = None, url: Url = None) -> None:
    """End a running drill, then print its review."""
    from twin.scenarios import drills

    with _refusals():
        drills.end(drill_id, elapsed_s=elapsed, url=url)
        found = drills.review(drill_id, url=url)
    _print_review(found.to_json())


@drills_app.command("review")
def review_command(drill_id: DrillId, as_json: Json = False, url: Url = None) -> None:
    """Review a drill: each checklist step on time, late, missed or pending."""
    from twin.scenarios import drills

    with _refusals():
        found = drills.review(drill_id, url=url)
    if as_json:
        _print_json(found.to_json())
        return
    _print_review(found.to_json())


def _print_review(review: dict[str, Any]) -> None:
    drill, summary = review["drill"], review["summary"]
    state = "ended" if summary["ended"] else "running"
    out.print(
        f"drill {drill['id']} ({state}): pre-plan {drill['preplan']} v{drill['preplan_version']}, "
        f"{summary['on_time']} on time, {summary['late']} late, {summary['missed']} missed, "
        f"{summary['overdue']} overdue, {summary['pending']} pending of {summary['steps']} steps",
        markup=False,
        highlight=False,
    )
    table = Table("step", "target", "done", "by", "status", "late by")
    for step in review["steps"]:
        table.add_row(
            step["step"],
            _minutes(step["target_s"]),
            _minutes(step["done_s"]),
            step["by"] or "-",
            step["status"].replace("_", " "),
            _minutes(step["late_s"]),
        )
    out.print(table)
