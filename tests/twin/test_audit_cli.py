"""``twin audit verify`` and ``twin audit export`` (in this process; in a shell when it fails)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layers.audit import AuditEvent
from layers.database import get_engine
from tests.conftest import _fresh_database
from tests.layers.test_audit import empty_log, some_events, tamper, write
from twin.cli import app

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/twin"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def twin(url: str, *args: str) -> Result:
    """Run ``twin <args>`` against a database, in this process (typer's runner)."""
    result = CliRunner().invoke(app, [*args, "--url", url], env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def _cli_database() -> Iterator[str]:
    url = _fresh_database("_audit_cli")
    yield url
    get_engine(url).dispose()


@pytest.fixture
def audit_db(_cli_database: str) -> str:
    """A database of this module's own with an empty audit log."""
    empty_log(_cli_database)
    return _cli_database


def test_verify_says_the_chain_is_intact(audit_db: str) -> None:
    write(audit_db, *some_events(3))
    result = twin(audit_db, "audit", "verify")
    assert (result.returncode, result.stdout.strip()) == (0, "3 rows, chain intact"), result.stderr


def test_verify_names_an_edited_row(audit_db: str) -> None:
    write(audit_db, *some_events(4))
    tamper(audit_db, "UPDATE audit_log SET feature_count = 0 WHERE id = 2")
    result = twin(audit_db, "audit", "verify")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "audit chain broken: row 2: hash does not match its fields (2 rows checked)"
    )


def test_verify_names_the_row_after_a_deleted_one(audit_db: str) -> None:
    write(audit_db, *some_events(4))
    tamper(audit_db, "DELETE FROM audit_log WHERE id = 2")
    result = twin(audit_db, "audit", "verify")
    assert result.returncode == 1
    assert "row 3: previous hash does not match row 1" in result.stderr
    # from row 4 on, the chain is whole
    assert twin(audit_db, "audit", "verify", "--since-id", "4").returncode == 0


def test_export_writes_the_period_as_csv(audit_db: str, tmp_path: Path) -> None:
    day = datetime(2026, 11, 30, tzinfo=UTC)
    write(
        audit_db,
        AuditEvent(action="read", actor="before", at=day - timedelta(minutes=1)),
        AuditEvent(action="read", actor="ana", layer="cameras", ids=("c1",), at=day),
        AuditEvent(action="update", actor="bo", layer="incidents", at=day + timedelta(hours=8)),
    )
    path = tmp_path / "audit.csv"
    # naive times are UTC
    result = twin(
        audit_db, "audit", "export", str(path), "--from", "2026-11-30", "--to", "2026-12-01"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"2 rows written to {path}"
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["id"], r["actor"], r["layer"], r["ids"]) for r in rows] == [
        ("2", "ana", "cameras", '["c1"]'),
        ("3", "bo", "incidents", ""),
    ]
    beijing = tmp_path / "beijing.csv"
    result = twin(
        audit_db,
        "audit",
        "export",
        str(beijing),
        "--from",
        "2026-11-30T00:00:00+08:00",
        "--to",
        "2026-11-30T08:00:00+08:00",
    )
    # 2026-11-29T16:00Z to 2026-11-30T00:00Z: only the row a minute before midnight UTC
    assert (result.returncode, result.stdout.strip()) == (0, f"1 row written to {beijing}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--from", "yesterday", "--to", "2026-12-01"),
            "error: --from: 'yesterday' is not an ISO 8601 date or time",
        ),
        (("--from", "2026-12-01", "--to", "2026-11-30"), "error: --to (2026-11-30) must be after"),
    ],
)
def test_export_refuses_a_bad_period(
    audit_db: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = twin(audit_db, "audit", "export", str(tmp_path / "a.csv"), *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a.csv").exists()


def test_export_says_when_it_cannot_write_the_file(audit_db: str, tmp_path: Path) -> None:
    target = tmp_path / "no such folder" / "a.csv"
    result = twin(
        audit_db, "audit", "export", str(target), "--from", "2026-11-30", "--to", "2026-12-01"
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot write {target}: No such file or directory")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args", [("verify",), ("export", "a.csv", "--from", "2026-11-30", "--to", "2026-12-01")]
)
def test_an_unreachable_database_is_an_error_not_a_traceback(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twin", "audit", *args, "--url", UNREACHABLE],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "200"},
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read the audit log:"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a.csv").exists()
