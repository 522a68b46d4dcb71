"""Named signal plans in the store: saved as new versions, read back current or as of a moment."""

from __future__ import annotations

import json
import re
from typing import Any

from layers.database import cursor, get_engine
from layers.errors import ParameterError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_name(name: str) -> str:
    """Return a plan name if valid (letters, digits, ``_.-``, up to 63), else raise."""
    if not _NAME.match(name):
        raise ParameterError(
            "a plan name is 1 to 63 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit",
            parameter="name",
        )
    return name


def save_plan(
    name: str, plan: dict[str, Any], request: dict[str, Any], *, url: str | None = None
) -> dict[str, Any]:
    """Store a plan under a name: its current version is closed and the plan becomes current.

    Parameters
    ----------
    name
        The plan's name.
    plan
        The plan (JSON-serialisable).
    request
        What it was computed from (area, signals, settings).
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        The stored record: ``name``, ``version``, ``valid_from``, ``request``, ``plan``.
    """
    check_name(name)
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twin.plan.{name}",))
            cur.execute(
                "UPDATE signal_plans SET valid_to = clock_timestamp() "
                "WHERE name = %s AND valid_to IS NULL",
                (name,),
            )
            cur.execute(
                "INSERT INTO signal_plans (name, request, plan) VALUES (%s, %s, %s) "
                "RETURNING vid, valid_from",
                (name, json.dumps(request), json.dumps(plan)),
            )
            row = cur.fetchone()
            assert row is not None
            cur.execute("SELECT count(*) FROM signal_plans WHERE name = %s", (name,))
            count = cur.fetchone()
    version = int(count[0]) if count else 1
    return {
        "name": name,
        "version": version,
        "valid_from": row[1],
        "request": request,
        "plan": plan,
    }


def get_plan(name: str, *, url: str | None = None) -> dict[str, Any] | None:
    """Return the current version of a named plan, or None if there is none."""
    with cursor(url) as cur:
        cur.execute(
            "SELECT name, (SELECT count(*) FROM signal_plans o WHERE o.name = p.name "
            "AND o.valid_from <= p.valid_from), valid_from, request, plan "
            "FROM signal_plans p WHERE name = %s AND valid_to IS NULL",
            (name,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return {
        "name": row[0],
        "version": int(row[1]),
        "valid_from": row[2],
        "request": row[3],
        "plan": row[4],
    }


def list_plans(*, url: str | None = None) -> list[dict[str, Any]]:
    """Return every current plan: name, version count, since when, number of signals."""
    with cursor(url) as cur:
        cur.execute(
            "SELECT name, (SELECT count(*) FROM signal_plans o WHERE o.name = p.name), "
            "valid_from, jsonb_array_length(plan -> 'signals') "
            "FROM signal_plans p WHERE valid_to IS NULL ORDER BY name"
        )
        rows = cur.fetchall()
    return [
        {"name": r[0], "version": int(r[1]), "valid_from": r[2], "signals": int(r[3] or 0)}
        for r in rows
    ]
