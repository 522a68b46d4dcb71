"""Oracles for the engine, run on the same ``routing_edges`` views it reads: pgRouting for
costs, PostGIS for where points stand on the roads, networkx for reachability."""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx
import sqlalchemy as sa

from layers.database import get_engine

VIEWS = {"car": "routing_edges", "emergency": "routing_edges_emergency"}


def _where(closed: Iterable[int]) -> str:
    ids = ",".join(str(int(i)) for i in closed)
    return f" WHERE id NOT IN ({ids})" if ids else ""


def edges_sql(profile: str, closed: Iterable[int] = ()) -> str:
    return f"SELECT id, source, target, cost, reverse_cost FROM {VIEWS[profile]}{_where(closed)}"


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


def pgr_driving_times(
    url: str, profile: str, starts: list[int], limit_s: float, closed: Iterable[int] = ()
) -> dict[int, dict[int, float]]:
    """Cost from each start node to every node within ``limit_s``, by pgr_drivingDistance."""
    query = sa.text(
        "SELECT * FROM pgr_drivingDistance(:edges, CAST(:starts AS bigint[]), :limit, "
        "directed => true, equicost => false)"
    )
    out: dict[int, dict[int, float]] = {int(s): {} for s in starts}
    with get_engine(url).connect() as conn:
        result = conn.execute(
            query, {"edges": edges_sql(profile, closed), "starts": starts, "limit": limit_s}
        )
        keys = list(result.keys())
        start = keys.index("from_v" if "from_v" in keys else "start_vid")  # 3.6 renamed it
        node, cost = keys.index("node"), keys.index("agg_cost")
        for row in result:
            out[int(row[start])][int(row[node])] = float(row[cost])
    return out


def postgis_snaps(
    url: str,
    profile: str,
    points: list[tuple[float, float]],
    *,
    srid: int,
    max_distance_m: float,
    closed: Iterable[int] = (),
) -> list[tuple[int, float] | None]:
    """Nearest open edge (lowest id among equals) and the fraction along it, per point.

    Measured in the metric CRS ``srid`` by PostGIS; None where no edge is within
    ``max_distance_m``.
    """
    edges = (
        "CREATE TEMPORARY TABLE oracle_edges ON COMMIT DROP AS "
        f"SELECT id, ST_Transform(geom, {int(srid)}) AS g FROM {VIEWS[profile]}{_where(closed)}",
        "CREATE INDEX ON oracle_edges USING gist (g)",
        "ANALYZE oracle_edges",
    )
    query = sa.text(
        """
        WITH p AS (
            SELECT i, ST_Transform(ST_SetSRID(ST_MakePoint(lon, lat), 4326), :srid) AS g
            FROM unnest(CAST(:lons AS float8[]), CAST(:lats AS float8[]))
                WITH ORDINALITY AS t(lon, lat, i)
        )
        SELECT p.i, n.id, CASE WHEN ST_Length(n.g) > 0 THEN ST_LineLocatePoint(n.g, p.g) ELSE 0 END
        FROM p CROSS JOIN LATERAL (
            SELECT e.id, e.g FROM oracle_edges e WHERE ST_DWithin(e.g, p.g, :max)
            ORDER BY ST_Distance(e.g, p.g), e.id LIMIT 1
        ) n
        """
    )
    params = {
        "srid": srid,
        "lons": [float(x) for x, _ in points],
        "lats": [float(y) for _, y in points],
        "max": max_distance_m,
    }
    out: list[tuple[int, float] | None] = [None] * len(points)
    with get_engine(url).begin() as conn:
        for statement in edges:
            conn.execute(sa.text(statement))
        for i, edge, fraction in conn.execute(query, params):
            out[int(i) - 1] = (int(edge), float(fraction))
    return out


def edge_rows(
    url: str, profile: str, closed: Iterable[int] = ()
) -> dict[int, tuple[int, int, float, float]]:
    """``id -> (source, target, cost, reverse_cost)`` of the open edges, as pgRouting sees them."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(edges_sql(profile, closed))).all()
    return {int(i): (int(s), int(t), float(c), float(r)) for i, s, t, c, r in rows}


def reachable(
    url: str, profile: str, pairs: list[tuple[int, int]], closed: Iterable[int] = ()
) -> list[bool]:
    """Whether each (start, end) node pair is joined by a directed path, by networkx."""
    graph = nx.DiGraph()
    for source, target, _, reverse in edge_rows(url, profile, closed).values():
        graph.add_edge(source, target)
        if reverse >= 0:
            graph.add_edge(target, source)
    ahead: dict[int, set[int]] = {}
    out = []
    for a, b in pairs:
        if a not in ahead:
            ahead[a] = nx.descendants(graph, a) | {a} if a in graph else {a}
        out.append(b in ahead[a])
    return out
