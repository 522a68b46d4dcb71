"""The processors the twin runs on every stored batch (see :class:`twin.live.feed.Feed`)."""

from __future__ import annotations

from twin.live.feed import Processor


def default_processors() -> list[Processor]:
    """Return the twin's processors: live road speeds, vehicle positions, alert rules.

    Returns
    -------
    list
        New processor instances, in the order they run.
    """
    return []
