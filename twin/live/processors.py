"""The processors the twin runs on every stored batch (see :class:`twin.live.feed.Feed`)."""

from __future__ import annotations

from twin.live.feed import Processor
from twin.live.traffic import RoadSpeeds
from twin.live.vehicles import VehiclePositions


def default_processors() -> list[Processor]:
    """Return the twin's processors: live road speeds, vehicle positions, alert rules.

    Returns
    -------
    list
        New processor instances, in the order they run: :class:`~twin.live.traffic.RoadSpeeds`
        (detector speeds -> ``live_speeds``), :class:`~twin.live.vehicles.VehiclePositions`
        (AVL positions -> ``live_positions``).
    """
    return [RoadSpeeds(), VehiclePositions()]
