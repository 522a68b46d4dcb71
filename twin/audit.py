"""``twin audit``: check the audit trail's hash chain and export a period of it as CSV.

Importing this module stays cheap (the ``twin`` command starts fast): the database is reached
inside the commands.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

audit_app = typer.Typer(
    help="The audit trail: check its hash chain, export a period as CSV.", no_args_is_help=True
)

out = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="TWIN_DATABASE_URL", help="Database URL.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error (no traceback) and return the exit to raise."""
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _moment(text: str, option: str) -> datetime:
    """Parse an ISO 8601 date or time (naive: UTC) given to ``option``.

    Raises
    ------
    typer.Exit
        With a message naming the option, if ``text`` is not ISO 8601.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _fail(
            f"{option}: {text!r} is not an ISO 8601 date or time (e.g. 2026-11-30 or "
            "2026-11-30T08:00:00+08:00)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@audit_app.command("verify")
def verify_command(
    since: Annotated[
        int | None,
        typer.Option("--since-id", min=1, help="Check from this row id on (default: every row)."),
    ] = None,
    url: Url = None,
) -> None:
    """Check the audit log's hash chain; exit 1 naming the first changed or missing row."""
    import psycopg

    from layers.audit import verify

    try:
        report = verify(url=url, since_id=since)
    except psycopg.Error as exc:
        raise _fail(f"cannot read the audit log: {exc}".strip()) from None
    if report.intact:
        out.print(str(report), markup=False, highlight=False)
        return
    err.print(f"audit chain broken: {report}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("export")
def export_command(
    path: Annotated[Path, typer.Argument(help="The CSV file to write (replaced if it exists).")],
    start: Annotated[
        str, typer.Option("--from", help="Start of the period, ISO 8601 (naive: UTC), included.")
    ],
    end: Annotated[
        str, typer.Option("--to", help="End of the period, ISO 8601 (naive: UTC), excluded.")
    ],
    url: Url = None,
) -> None:
    """Write the audit rows of a period (``--from`` <= at < ``--to``) to a CSV file."""
    import psycopg

    from layers.audit import export

    begin, finish = _moment(start, "--from"), _moment(end, "--to")
    if finish <= begin:
        raise _fail(f"--to ({end}) must be after --from ({start})")
    try:
        count = export(path, start=begin, end=finish, url=url)
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror or exc}") from None
    except psycopg.Error as exc:
        raise _fail(f"cannot read the audit log: {exc}".strip()) from None
    rows = "row" if count == 1 else "rows"
    out.print(f"{count} {rows} written to {path}", markup=False, highlight=False)
