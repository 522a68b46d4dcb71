"""Exact shortest paths at city scale: a contraction hierarchy and a bidirectional Dijkstra.

Both work on the arcs of a :class:`routing.network.RoadNetwork` (``arc_tail``, ``arc_head``,
``arc_weight``: one arc per node pair, the cheapest) with float64 costs in seconds, so their
answers equal ``pgr_dijkstra`` over the same view to rounding (sums of the same costs in
another order; far below 1e-6 s).

* :class:`Hierarchy` — a contraction hierarchy (Geisberger et al., "Contraction Hierarchies:
  Faster and Simpler Hierarchical Routing in Road Networks", WEA 2008): nodes are contracted in
  the order of a lazily updated priority (edge difference + contracted neighbours), a shortcut
  ``u -> w`` is added when a witness search from ``u`` (bounded by the shortcut's cost and a
  number of settled nodes; when it gives up, the shortcut is kept, which is always safe) finds
  no path at most as cheap avoiding ``v``. Queries are bidirectional upward Dijkstra searches
  with stall-on-demand; shortcuts are unpacked into the original arcs.
* :class:`Bidirectional` — a plain bidirectional Dijkstra on the arcs, for a network whose
  costs differ from the ones a hierarchy was built for (closures, live speeds), when the
  hierarchy's answer crosses a changed arc.

Both searches start from several nodes with offsets (the exits of a snapped point) and end at
several nodes with offsets (the entries of another), as the engine's snapping needs. The
kernels are compiled by numba (``cache=True``: compiled once per machine). Every search keeps
its scratch arrays per thread, so queries run side by side.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

#: Witness searches give up after settling this many nodes (the shortcut is then kept).
WITNESS_SETTLED = 500

_INF = np.inf


# ------------------------------------------------------------------------------------------
# a binary heap on arrays (keys float64, values int64); stale entries are skipped by callers


@numba.njit(cache=True)
def _push(keys: np.ndarray, values: np.ndarray, size: int, key: float, value: int) -> int:
    i = size
    keys[i] = key
    values[i] = value
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        values[parent], values[i] = values[i], values[parent]
        i = parent
    return size + 1


@numba.njit(cache=True)
def _pop(keys: np.ndarray, values: np.ndarray, size: int) -> int:
    size -= 1
    keys[0] = keys[size]
    values[0] = values[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[child], keys[i] = keys[i], keys[child]
        values[child], values[i] = values[i], values[child]
        i = child
    return size


# ------------------------------------------------------------------------------------------
# contraction


@numba.njit(cache=True)
def _witness(
    source: int,
    skip: int,
    limit: float,
    max_settled: int,
    out_head: np.ndarray,
    next_out: np.ndarray,
    e_head: np.ndarray,
    e_weight: np.ndarray,
    contracted: np.ndarray,
    dist: np.ndarray,
    touched: np.ndarray,
    heap_keys: np.ndarray,
    heap_values: np.ndarray,
) -> int:
    """Dijkstra from ``source`` over uncontracted nodes but ``skip``, up to ``limit``.

    Leaves the distances in ``dist``; returns how many entries of ``touched`` to reset.
    """
    count = 0
    dist[source] = 0.0
    touched[count] = source
    count += 1
    size = _push(heap_keys, heap_values, 0, 0.0, source)
    settled = 0
    while size > 0:
        d = heap_keys[0]
        u = heap_values[0]
        size = _pop(heap_keys, heap_values, size)
        if d > dist[u]:
            continue
        if d > limit or settled >= max_settled:
            break
        settled += 1
        e = out_head[u]
        while e >= 0:
            x = e_head[e]
            if x != skip and not contracted[x]:
                nd = d + e_weight[e]
                if nd < dist[x]:
                    if dist[x] == _INF:
                        touched[count] = x
                        count += 1
                    dist[x] = nd
                    size = _push(heap_keys, heap_values, size, nd, x)
            e = next_out[e]
    return count


@numba.njit(cache=True)
def _contract_node(
    v: int,
    simulate: bool,
    max_settled: int,
    out_head: np.ndarray,
    in_head: np.ndarray,
    next_out: np.ndarray,
    next_in: np.ndarray,
    e_tail: np.ndarray,
    e_head: np.ndarray,
    e_weight: np.ndarray,
    e_first: np.ndarray,
    e_second: np.ndarray,
    used: np.ndarray,
    contracted: np.ndarray,
    dist: np.ndarray,
    touched: np.ndarray,
    heap_keys: np.ndarray,
    heap_values: np.ndarray,
) -> tuple[int, int]:
    """Count (``simulate``) or add the shortcuts contracting ``v`` needs.

    Returns ``(shortcuts, degree)``; ``degree`` is -1 when the edge pool is full.
    """
    shortcuts = 0
    degree = 0
    e = out_head[v]
    while e >= 0:
        if not contracted[e_head[e]]:
            degree += 1
        e = next_out[e]
    e_in = in_head[v]
    while e_in >= 0:
        u = e_tail[e_in]
        if contracted[u]:
            e_in = next_in[e_in]
            continue
        degree += 1
        w_in = e_weight[e_in]
        longest = -1.0
        e = out_head[v]
        while e >= 0:
            x = e_head[e]
            if x != u and not contracted[x] and e_weight[e] > longest:
                longest = e_weight[e]
            e = next_out[e]
        if longest >= 0:
            count = _witness(
                u,
                v,
                w_in + longest,
                max_settled,
                out_head,
                next_out,
                e_head,
                e_weight,
                contracted,
                dist,
                touched,
                heap_keys,
                heap_values,
            )
            e = out_head[v]
            while e >= 0:
                x = e_head[e]
                through = w_in + e_weight[e]
                if x != u and not contracted[x] and dist[x] > through:
                    shortcuts += 1
                    if not simulate:
                        # an arc u -> x already there is lowered in place, else one is added
                        f = out_head[u]
                        while f >= 0:
                            if e_head[f] == x:
                                break
                            f = next_out[f]
                        if f >= 0:
                            if through < e_weight[f]:
                                e_weight[f] = through
                                e_first[f] = e_in
                                e_second[f] = e
                        else:
                            f = used[0]
                            if f >= len(e_tail):
                                return shortcuts, -1
                            used[0] = f + 1
                            e_tail[f] = u
                            e_head[f] = x
                            e_weight[f] = through
                            e_first[f] = e_in
                            e_second[f] = e
                            next_out[f] = out_head[u]
                            out_head[u] = f
                            next_in[f] = in_head[x]
                            in_head[x] = f
                e = next_out[e]
            for i in range(count):
                dist[touched[i]] = _INF
        e_in = next_in[e_in]
    return shortcuts, degree


@numba.njit(cache=True)
def _contract(
    n: int,
    tail: np.ndarray,
    head: np.ndarray,
    weight: np.ndarray,
    capacity: int,
    max_settled: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Contract every node; return the ranks and the edge pool (arcs first, then shortcuts).

    The pool's ``used`` count is -1 when ``capacity`` was too small.
    """
    m = len(tail)
    e_tail = np.empty(capacity, np.int64)
    e_head = np.empty(capacity, np.int64)
    e_weight = np.empty(capacity, np.float64)
    e_first = np.full(capacity, -1, np.int64)
    e_second = np.full(capacity, -1, np.int64)
    next_out = np.full(capacity, -1, np.int64)
    next_in = np.full(capacity, -1, np.int64)
    out_head = np.full(n, -1, np.int64)
    in_head = np.full(n, -1, np.int64)
    for i in range(m):
        e_tail[i] = tail[i]
        e_head[i] = head[i]
        e_weight[i] = weight[i]
        next_out[i] = out_head[tail[i]]
        out_head[tail[i]] = i
        next_in[i] = in_head[head[i]]
        in_head[head[i]] = i
    used = np.array([m], np.int64)
    contracted = np.zeros(n, np.bool_)
    neighbours = np.zeros(n, np.int64)
    rank = np.full(n, -1, np.int64)
    dist = np.full(n, _INF)
    touched = np.empty(n, np.int64)
    work_keys = np.empty(capacity + n + 1, np.float64)
    work_values = np.empty(capacity + n + 1, np.int64)
    queue_keys = np.empty(2 * n + 1, np.float64)
    queue_values = np.empty(2 * n + 1, np.int64)

    def contract(v: int, simulate: bool) -> tuple[int, int]:
        return _contract_node(
            v,
            simulate,
            max_settled,
            out_head,
            in_head,
            next_out,
            next_in,
            e_tail,
            e_head,
            e_weight,
            e_first,
            e_second,
            used,
            contracted,
            dist,
            touched,
            work_keys,
            work_values,
        )

    size = 0
    for v in range(n):
        added, degree = contract(v, True)
        size = _push(queue_keys, queue_values, size, float(added - degree), v)
    order = 0
    while size > 0:
        v = queue_values[0]
        size = _pop(queue_keys, queue_values, size)
        if contracted[v]:
            continue
        added, degree = contract(v, True)
        priority = float(added - degree + neighbours[v])
        if size > 0 and priority > queue_keys[0]:
            size = _push(queue_keys, queue_values, size, priority, v)
            continue
        added, degree = contract(v, False)
        if degree < 0:
            return rank, e_tail, e_head, e_weight, e_first, e_second, -1
        contracted[v] = True
        rank[v] = order
        order += 1
        e = out_head[v]
        while e >= 0:
            neighbours[e_head[e]] += 1
            e = next_out[e]
        e = in_head[v]
        while e >= 0:
            neighbours[e_tail[e]] += 1
            e = next_in[e]
    return rank, e_tail, e_head, e_weight, e_first, e_second, used[0]


# ------------------------------------------------------------------------------------------
# queries


@numba.njit(cache=True)
def _seed(
    nodes: np.ndarray,
    offsets: np.ndarray,
    dist: np.ndarray,
    other: np.ndarray,
    seed: np.ndarray,
    touched: np.ndarray,
    count: int,
    keys: np.ndarray,
    values: np.ndarray,
) -> tuple[int, int]:
    """Start one side of :func:`_bidirectional` at ``nodes`` with their ``offsets``.

    ``dist``/``seed`` are this side's distances and seeds, ``other`` the other side's
    distances (a node is recorded in ``touched`` the first time either side reaches it).
    Returns ``(heap size, touched count)``.
    """
    size = 0
    for i in range(len(nodes)):
        x = nodes[i]
        if offsets[i] < dist[x]:
            if dist[x] == _INF and other[x] == _INF:
                touched[count] = x
                count += 1
            dist[x] = offsets[i]
            seed[x] = i
            size = _push(keys, values, size, offsets[i], x)
    return size, count


@numba.njit(cache=True)
def _settle(
    upward: bool,
    ptr: np.ndarray,
    to: np.ndarray,
    edge: np.ndarray,
    o_ptr: np.ndarray,
    o_to: np.ndarray,
    o_edge: np.ndarray,
    e_weight: np.ndarray,
    dist: np.ndarray,
    other: np.ndarray,
    parent: np.ndarray,
    seed: np.ndarray,
    touched: np.ndarray,
    count: int,
    keys: np.ndarray,
    values: np.ndarray,
    size: int,
    best: float,
    meet: int,
) -> tuple[int, int, float, int]:
    """Settle the least node of one side of :func:`_bidirectional` and relax its edges.

    ``ptr``/``to``/``edge`` is this side's CSR graph, ``o_*`` the other side's (read to
    stall a node on demand when ``upward``); ``dist``/``parent``/``seed`` this side's
    labels, ``other`` the other side's distances. Returns
    ``(heap size, touched count, best cost, meeting node)``.
    """
    d = keys[0]
    u = values[0]
    size = _pop(keys, values, size)
    if d > dist[u]:
        return size, count, best, meet
    if upward:
        for k in range(o_ptr[u], o_ptr[u + 1]):
            if dist[o_to[k]] + e_weight[o_edge[k]] < d:
                return size, count, best, meet
    for k in range(ptr[u], ptr[u + 1]):
        x = to[k]
        nd = d + e_weight[edge[k]]
        if nd < dist[x]:
            if dist[x] == _INF and other[x] == _INF:
                touched[count] = x
                count += 1
            dist[x] = nd
            parent[x] = edge[k]
            seed[x] = seed[u]
            size = _push(keys, values, size, nd, x)
            if other[x] < _INF and nd + other[x] < best:
                best = nd + other[x]
                meet = x
    return size, count, best, meet


@numba.njit(cache=True)
def _bidirectional(
    upward: bool,
    f_ptr: np.ndarray,
    f_to: np.ndarray,
    f_edge: np.ndarray,
    b_ptr: np.ndarray,
    b_to: np.ndarray,
    b_edge: np.ndarray,
    e_weight: np.ndarray,
    sources: np.ndarray,
    source_offsets: np.ndarray,
    targets: np.ndarray,
    target_offsets: np.ndarray,
    df: np.ndarray,
    db: np.ndarray,
    pf: np.ndarray,
    pb: np.ndarray,
    sf: np.ndarray,
    sb: np.ndarray,
    touched: np.ndarray,
    fk: np.ndarray,
    fv: np.ndarray,
    bk: np.ndarray,
    bv: np.ndarray,
) -> tuple[float, int, int]:
    """Bidirectional Dijkstra from ``sources`` to ``targets`` (with offsets).

    ``f_*``: the forward graph in CSR (``f_to[k]`` the head, ``f_edge[k]`` the pool edge);
    ``b_*``: the backward one (``b_to[k]`` the tail). With ``upward`` (a hierarchy) each
    search stops on its own once its queue's least key reaches the best meeting, and nodes
    are stalled on demand; otherwise both stop when the sum of their least keys does. The
    scratch arrays must hold inf (distances) and -1 (parents) and are reset before returning.

    Returns ``(cost, meeting node, touched count)``; the meeting is -1 when unreachable.
    Parents (``pf``, ``pb``: pool edges) and seeds (``sf``, ``sb``) are left to be read, and
    reset by :func:`_reset`.
    """
    fs, count = _seed(sources, source_offsets, df, db, sf, touched, 0, fk, fv)
    bs, count = _seed(targets, target_offsets, db, df, sb, touched, count, bk, bv)
    best = _INF
    meet = -1
    for i in range(len(sources)):
        x = sources[i]
        if df[x] + db[x] < best:
            best = df[x] + db[x]
            meet = x
    while True:
        f_top = fk[0] if fs > 0 else _INF
        b_top = bk[0] if bs > 0 else _INF
        if upward:
            f_go = f_top < best
            b_go = b_top < best
            if not f_go and not b_go:
                break
            forward = f_go and (not b_go or f_top <= b_top)
        elif fs == 0 and bs == 0:
            break
        elif fs == 0:  # every node the sources reach is settled: the targets' side goes on
            if b_top >= best:
                break
            forward = False
        elif bs == 0:
            if f_top >= best:
                break
            forward = True
        else:
            if f_top + b_top >= best:
                break
            forward = f_top <= b_top
        if forward:
            fs, count, best, meet = _settle(
                upward,
                f_ptr,
                f_to,
                f_edge,
                b_ptr,
                b_to,
                b_edge,
                e_weight,
                df,
                db,
                pf,
                sf,
                touched,
                count,
                fk,
                fv,
                fs,
                best,
                meet,
            )
        else:
            bs, count, best, meet = _settle(
                upward,
                b_ptr,
                b_to,
                b_edge,
                f_ptr,
                f_to,
                f_edge,
                e_weight,
                db,
                df,
                pb,
                sb,
                touched,
                count,
                bk,
                bv,
                bs,
                best,
                meet,
            )
    return best, meet, count


@numba.njit(cache=True)
def _unpack(
    meet: int,
    pf: np.ndarray,
    pb: np.ndarray,
    e_tail: np.ndarray,
    e_head: np.ndarray,
    e_first: np.ndarray,
    e_second: np.ndarray,
) -> np.ndarray:
    """Return the original arcs (pool indices below the arc count) of the path via ``meet``."""
    chain = []
    x = meet
    while pf[x] >= 0:
        chain.append(pf[x])
        x = e_tail[pf[x]]
    chain.reverse()
    x = meet
    while pb[x] >= 0:
        chain.append(pb[x])
        x = e_head[pb[x]]
    out = []
    stack = []
    for i in range(len(chain) - 1, -1, -1):
        stack.append(chain[i])
    while len(stack) > 0:
        e = stack.pop()
        if e_first[e] < 0:
            out.append(e)
        else:
            stack.append(e_second[e])
            stack.append(e_first[e])
    result = np.empty(len(out), np.int64)
    for i in range(len(out)):
        result[i] = out[i]
    return result


@numba.njit(cache=True)
def _reset(
    touched: np.ndarray,
    count: int,
    df: np.ndarray,
    db: np.ndarray,
    pf: np.ndarray,
    pb: np.ndarray,
    sf: np.ndarray,
    sb: np.ndarray,
) -> None:
    for i in range(count):
        x = touched[i]
        df[x] = _INF
        db[x] = _INF
        pf[x] = -1
        pb[x] = -1
        sf[x] = -1
        sb[x] = -1


@numba.njit(cache=True)
def _times_from(
    ptr: np.ndarray,
    to: np.ndarray,
    weight: np.ndarray,
    sources: np.ndarray,
    offsets: np.ndarray,
    limit: float,
) -> np.ndarray:
    """Seconds from the nearest source (offsets counted) to every node, up to ``limit``."""
    n = len(ptr) - 1
    dist = np.full(n, _INF)
    keys = np.empty(len(to) + len(sources) + 1, np.float64)
    values = np.empty(len(to) + len(sources) + 1, np.int64)
    size = 0
    for i in range(len(sources)):
        if offsets[i] < dist[sources[i]] and offsets[i] <= limit:
            dist[sources[i]] = offsets[i]
            size = _push(keys, values, size, offsets[i], sources[i])
    while size > 0:
        d = keys[0]
        u = values[0]
        size = _pop(keys, values, size)
        if d > dist[u]:
            continue
        for k in range(ptr[u], ptr[u + 1]):
            x = to[k]
            nd = d + weight[k]
            if nd < dist[x] and nd <= limit:
                dist[x] = nd
                size = _push(keys, values, size, nd, x)
    return dist


def times_from(
    ptr: np.ndarray,
    to: np.ndarray,
    weight: np.ndarray,
    sources: list[tuple[int, float]],
    *,
    limit: float = np.inf,
) -> np.ndarray:
    """One Dijkstra from several sources with start offsets, on a CSR graph.

    Parameters
    ----------
    ptr, to, weight
        The graph in CSR form (``indptr``, ``indices``, ``data`` of a scipy matrix), seconds.
    sources
        ``(node, seconds)`` pairs to start from.
    limit
        Stop beyond this many seconds.

    Returns
    -------
    numpy.ndarray
        Seconds from the nearest source, offsets counted, to every node; inf beyond
        ``limit`` or unreached.
    """
    nodes = np.array([node for node, _ in sources], np.int64)
    offsets = np.array([offset for _, offset in sources], np.float64)
    kernel: Any = _times_from
    result: np.ndarray = kernel(
        ptr.astype(np.int64),
        to.astype(np.int64),
        weight.astype(np.float64),
        nodes,
        offsets,
        float(limit),
    )
    return result


# ------------------------------------------------------------------------------------------
# Python side


@dataclass(frozen=True)
class Path:
    """A shortest path between seeded searches.

    Attributes
    ----------
    cost
        Seconds, offsets included.
    source
        Index of the source (into the sources given) the path starts from.
    target
        Index of the target it ends at.
    arcs
        Indices of the original arcs travelled, in order (into the arc arrays the engine was
        built from).
    """

    cost: float
    source: int
    target: int
    arcs: np.ndarray


def _csr(keys: np.ndarray, others: np.ndarray, edges: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Group edges by ``keys`` (node) into CSR arrays ``(ptr, other end, edge)``."""
    order = np.argsort(keys, kind="stable")
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return ptr, others[order].astype(np.int64), edges[order].astype(np.int64)


class _Engine:
    """What both searches share: the edge pool, the two CSR graphs and per-thread scratch."""

    upward = False

    def __init__(
        self,
        n: int,
        e_tail: np.ndarray,
        e_head: np.ndarray,
        e_weight: np.ndarray,
        e_first: np.ndarray,
        e_second: np.ndarray,
        forward: tuple[np.ndarray, ...],
        backward: tuple[np.ndarray, ...],
    ):
        self.n = n
        self.e_tail, self.e_head, self.e_weight = e_tail, e_head, e_weight
        self.e_first, self.e_second = e_first, e_second
        self.forward, self.backward = forward, backward
        self._local = threading.local()

    def _scratch(self) -> tuple[np.ndarray, ...]:
        scratch = getattr(self._local, "arrays", None)
        if scratch is None:
            n, heap = self.n, len(self.e_tail) + self.n + 16
            scratch = (
                np.full(n, _INF),
                np.full(n, _INF),
                np.full(n, -1, np.int64),
                np.full(n, -1, np.int64),
                np.full(n, -1, np.int64),
                np.full(n, -1, np.int64),
                np.empty(n, np.int64),
                np.empty(heap, np.float64),
                np.empty(heap, np.int64),
                np.empty(heap, np.float64),
                np.empty(heap, np.int64),
            )
            self._local.arrays = scratch
        return scratch

    def query(
        self,
        sources: list[tuple[int, float]],
        targets: list[tuple[int, float]],
        *,
        unpack: bool = True,
    ) -> Path | None:
        """Find the shortest path from any source to any target, offsets counted.

        Parameters
        ----------
        sources
            ``(node, seconds)``: nodes a trip may start from and the time to reach them.
        targets
            ``(node, seconds)``: nodes a trip may end at and the time from them to the end.
        unpack
            Give the arcs travelled; when False ``arcs`` is empty (only the cost is wanted).

        Returns
        -------
        Path or None
            The path, or None when no target can be reached.
        """
        s_nodes = np.array([node for node, _ in sources], np.int64)
        s_offsets = np.array([offset for _, offset in sources], np.float64)
        t_nodes = np.array([node for node, _ in targets], np.int64)
        t_offsets = np.array([offset for _, offset in targets], np.float64)
        df, db, pf, pb, sf, sb, touched, fk, fv, bk, bv = self._scratch()
        kernel: Any = _bidirectional  # numba's dispatcher, typed loosely
        cost, meet, count = kernel(
            self.upward,
            *self.forward,
            *self.backward,
            self.e_weight,
            s_nodes,
            s_offsets,
            t_nodes,
            t_offsets,
            df,
            db,
            pf,
            pb,
            sf,
            sb,
            touched,
            fk,
            fv,
            bk,
            bv,
        )
        try:
            if meet < 0 or not np.isfinite(cost):
                return None
            arcs = (
                _unpack(meet, pf, pb, self.e_tail, self.e_head, self.e_first, self.e_second)
                if unpack
                else np.empty(0, np.int64)
            )
            return Path(float(cost), int(sf[meet]), int(sb[meet]), arcs)
        finally:
            _reset(touched, count, df, db, pf, pb, sf, sb)


class Bidirectional(_Engine):
    """Bidirectional Dijkstra on a network's arcs (no preprocessing beyond two CSR arrays).

    Parameters
    ----------
    n
        Number of nodes.
    tail, head, weight
        The arcs (node indices, seconds >= 0); one per node pair.
    """

    def __init__(self, n: int, tail: np.ndarray, head: np.ndarray, weight: np.ndarray):
        m = len(tail)
        tail = tail.astype(np.int64)
        head = head.astype(np.int64)
        weight = weight.astype(np.float64)
        none = np.full(m, -1, np.int64)
        edges = np.arange(m, dtype=np.int64)
        super().__init__(
            n,
            tail,
            head,
            weight,
            none,
            none,
            _csr(tail, head, edges, n),
            _csr(head, tail, edges, n),
        )


class Hierarchy(_Engine):
    """A contraction hierarchy over a network's arcs, with exact float64 costs.

    Build it with :meth:`build`. Shortcut ``i`` (pool index at or above the arc count) joins
    the pool edges ``e_first[i]`` then ``e_second[i]``.
    """

    upward = True

    @classmethod
    def build(
        cls,
        n: int,
        tail: np.ndarray,
        head: np.ndarray,
        weight: np.ndarray,
        *,
        witness_settled: int = WITNESS_SETTLED,
    ) -> Hierarchy:
        """Contract a graph.

        Parameters
        ----------
        n
            Number of nodes.
        tail, head, weight
            The arcs (node indices, seconds >= 0); one per node pair, no self-loops.
        witness_settled
            Nodes a witness search settles before giving up (:data:`WITNESS_SETTLED`).

        Returns
        -------
        Hierarchy
            The hierarchy; pool edges below ``len(tail)`` are the arcs, in their order.

        Raises
        ------
        ValueError
            If a weight is negative or not finite.
        """
        weight = np.asarray(weight, dtype=np.float64)
        if len(weight) and not (np.all(np.isfinite(weight)) and weight.min() >= 0):
            raise ValueError("arc costs must be finite and not negative")
        tail = np.asarray(tail, dtype=np.int64)
        head = np.asarray(head, dtype=np.int64)
        capacity = 4 * len(tail) + 64
        while True:
            rank, e_tail, e_head, e_weight, e_first, e_second, used = _contract(
                n, tail, head, weight, capacity, witness_settled
            )
            if used >= 0:
                break
            capacity *= 2
        e_tail, e_head, e_weight = e_tail[:used], e_head[:used], e_weight[:used]
        e_first, e_second = e_first[:used], e_second[:used]
        edges = np.arange(used, dtype=np.int64)
        up = rank[e_head] > rank[e_tail]
        hierarchy = cls(
            n,
            e_tail,
            e_head,
            e_weight,
            e_first,
            e_second,
            _csr(e_tail[up], e_head[up], edges[up], n),
            _csr(e_head[~up], e_tail[~up], edges[~up], n),
        )
        hierarchy.rank = rank
        hierarchy.arcs = len(tail)
        return hierarchy

    rank: np.ndarray
    arcs: int
