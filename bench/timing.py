"""Wall-clock timing the benchmarks share (not a benchmark itself)."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    """Time ``repeat`` calls of ``function``, one after the other.

    Parameters
    ----------
    function
        What to time; called with no arguments, its result ignored.
    repeat
        How many calls.

    Returns
    -------
    list of float
        Milliseconds of each call (``time.perf_counter``), in order; no warm-up call.
    """
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        out.append((time.perf_counter() - started) * 1000)
    return out
