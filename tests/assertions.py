"""Assertion helpers shared by the tests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from layers.catalog import get_layer
from layers.database import get_engine


def table_state(url: str, layer_id: str) -> list[tuple[Any, ...]]:
    """Every row of a layer table (all versions), to compare before and after an import."""
    table = get_layer(layer_id).table
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT vid, id, source, valid_from, valid_to, props::text, geom::text "
                f"FROM {table} ORDER BY vid"
            )
        )
        return [tuple(row) for row in rows]


def sql_scalar(url: str, query: str, **params: Any) -> Any:
    """Run a query returning one value."""
    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(query), params).scalar_one()


def problem(response: Any, status: int, parameter: str | None) -> dict[str, Any]:
    """Check an HTTP answer is a problem+json of this status naming this parameter."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body.get("parameter") == parameter
    return body
