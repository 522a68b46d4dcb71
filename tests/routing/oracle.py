"""pgRouting, run on the same ``routing_edges`` views, as the oracle for the engine."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from layers.database import get_engine

VIEWS = {"car": "routing_edges", "emergency": "routing_edges_emergency"}


def edges_sql(profile: str, closed: Iterable[int] = ()) -> str:
    ids = ",".join(str(int(i)) for i in closed)
    where = f" WHERE id NOT IN ({ids})" if ids else ""
    return f"SELECT id, source, target, cost, reverse_cost FROM {VIEWS[profile]}{where}"


def pgr_costs(
    url: str, profile: str, pairs: list[tuple[int, int]], closed: Iterable[int] = ()
) -> dict[tuple[int, int], float]:
    """Shortest-path cost per (start, end) node pair by pgr_dijkstra; absent when unreachable."""
    values = ",".join(f"({a},{b})" for a, b in pairs)
    query = sa.text(
        "SELECT start_vid, end_vid, agg_cost FROM pgr_dijkstra(:edges, "
        f"'SELECT * FROM (VALUES {values}) AS t(source, target)', directed => true) "
        "WHERE edge = -1"
    )
    with get_engine(url).connect() as conn:
        rows = conn.execute(query, {"edges": edges_sql(profile, closed)}).all()
    return {(int(a), int(b)): float(c) for a, b, c in rows}


def pgr_cost_matrix(url: str, profile: str, nodes: list[int]) -> dict[tuple[int, int], float]:
    """Directed costs between every two of ``nodes`` by pgr_dijkstraCostMatrix."""
    query = sa.text(
        "SELECT start_vid, end_vid, agg_cost FROM pgr_dijkstraCostMatrix(:edges, :nodes, directed => true)"
    )
    with get_engine(url).connect() as conn:
        rows = conn.execute(query, {"edges": edges_sql(profile), "nodes": nodes}).all()
    return {(int(a), int(b)): float(c) for a, b, c in rows}


def pgr_with_points(
    url: str, profile: str, start: tuple[int, float], end: tuple[int, float]
) -> float | None:
    """Cost between two points on edges (edge id, fraction) by pgr_withPoints."""
    points = (
        f"SELECT 1 AS pid, {start[0]}::bigint AS edge_id, {start[1]}::float AS fraction, 'b'::char AS side "
        f"UNION ALL SELECT 2, {end[0]}, {end[1]}, 'b'"
    )
    query = sa.text(
        "SELECT agg_cost FROM pgr_withPoints(:edges, :points, -1, -2, directed => true, "
        "driving_side => 'b') WHERE edge = -1"
    )
    with get_engine(url).connect() as conn:
        row = conn.execute(query, {"edges": edges_sql(profile), "points": points}).first()
    return None if row is None else float(row[0])
