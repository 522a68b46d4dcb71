"""``twin auth``: users, tokens, keys and rules from the command line, each change audited."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from layers import access
from layers.database import cursor, get_engine
from layers.identity import Verifier
from tests.conftest import _fresh_database
from twin.cli import app


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def twin(url: str, *args: str, stdin: str | None = None) -> Result:
    """Run ``twin auth <args>`` against a database, in this process (typer's runner)."""
    result = CliRunner().invoke(
        app, ["auth", *args, "--url", url], input=stdin, env={"COLUMNS": "200"}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A database of this module's own: the rules it changes are nobody else's."""
    made = _fresh_database("_auth_cli")
    yield made
    get_engine(made).dispose()


def audited(url: str, request: str) -> int:
    with cursor(url) as cur:
        cur.execute("SELECT count(*) FROM audit_log WHERE request LIKE %s", (f"{request}%",))
        return int((cur.fetchone() or (0,))[0])


def test_a_user_signs_in_with_the_token_the_cli_prints(url: str) -> None:
    name = f"li.wei-{secrets.token_hex(2)}"
    made = twin(url, "user", "add", name, "--role", "planner", "--password-stdin", stdin="pw\n")
    assert made.returncode == 0, made.stderr
    token = twin(url, "token", name).stdout.strip()
    principal = Verifier(url).bearer(token)
    assert (principal.name, principal.roles) == (name, ("planner",))
    assert audited(url, f"twin auth user add {name}") == 1
    assert audited(url, f"twin auth token {name}") == 1
    listed = twin(url, "user", "list")
    assert name in listed.stdout and "planner" in listed.stdout
    disabled = twin(url, "user", "set", name, "--disable")
    assert disabled.returncode == 0 and "disabled" in disabled.stdout
    assert twin(url, "token", name).returncode == 1  # a disabled user gets no token


def test_bad_input_is_a_message_never_a_traceback(url: str) -> None:
    cases = [
        (("user", "add", "x", "--role", "mayor", "--no-password"), "unknown role 'mayor'"),
        (("classify", "nowhere", "1"), "unknown layer 'nowhere'"),
        (("classify", "roads", "7"), "level 7: expected 0 to 3"),
        (("mask", "add", "buildings", "phone", "hide", "--below", "2"), "has no attribute"),
        (("mask", "add", "buildings", "population", "round", "--below", "1"), "needs a step"),
        (("mask", "add", "buildings", "population", "snap", "--below", "1", "--step", "5"), "geom"),
        (("mask", "remove", "999999"), "no mask 999999"),
        (("permit", "planner", "roads", "own"), "unknown permission 'own'"),
        (("key", "add", "nobody"), "no user 'nobody'"),
        (("key", "add", "nobody", "--expires", "soon"), "not an ISO 8601 moment"),
        (("key", "revoke", "abc"), "no live API key 'abc'"),
        (("token", "nobody"), "no user 'nobody'"),
        (("revoke", "nonsense"), "no such token"),
    ]
    for args, message in cases:
        result = twin(url, *args)
        assert result.returncode == 1, (args, result.stdout)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout


def test_a_rule_change_reaches_every_grant_and_is_audited(url: str) -> None:
    planner = access.Principal("p", ("planner",), "token")
    assert access.grant_for(planner, url=url).may("cameras")
    assert twin(url, "classify", "cameras", "2").returncode == 0
    access._CHECKED.clear()  # the next grant reads the rules again (within 1 s in a server)
    assert not access.grant_for(planner, url=url).may("cameras")
    assert audited(url, "twin auth classify cameras 2") == 1
    added = twin(url, "mask", "add", "roads", "name", "partial", "--below", "1")
    assert added.returncode == 0, added.stderr
    mask_id = added.stdout.split()[1].rstrip(":")
    access._CHECKED.clear()
    public = access.grant_for(access.Principal("a", ("public",), "anonymous"), url=url)
    assert [m.attribute for m in public.masks("roads")] == ["name"]
    assert mask_id in twin(url, "mask", "list").stdout
    assert twin(url, "mask", "remove", mask_id).returncode == 0
    assert twin(url, "permit", "planner", "incidents", "edit").returncode == 0
    access._CHECKED.clear()
    assert access.grant_for(planner, url=url).may("incidents", "edit")
    layers = twin(url, "layers").stdout
    assert "cameras" in layers and "2 important" in layers
    assert "traffic_engineer" in twin(url, "roles").stdout
