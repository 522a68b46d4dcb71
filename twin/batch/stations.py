"""The stations a batch starts from: the resources layer's available units of given kinds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from layers.catalog import LAYERS
from layers.errors import ParameterError

#: Kinds :func:`twin.batch.accessibility` measures, in its columns' order.
STATION_KINDS = ("fire_station", "hospital", "police")

_STATIONS = """
SELECT id, kind, name, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom))
FROM resources
WHERE valid_to IS NULL AND kind = ANY(%(kinds)s) AND (status IS NULL OR status = 'available')
ORDER BY kind, id
"""


@dataclass(frozen=True)
class Station:
    """One station: ``id``, ``kind``, ``name`` and its position (``lon``, ``lat``, EPSG:4326)."""

    id: str
    kind: str
    name: str | None
    lon: float
    lat: float


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """Return the kinds, unique, in the order given, if every one is a resource kind.

    Parameters
    ----------
    kinds
        Resource kinds (the catalog's ``resources.kind`` choices).

    Returns
    -------
    tuple of str
        The kinds.

    Raises
    ------
    ParameterError
        If ``kinds`` is empty or holds an unknown kind (parameter ``kind``).
    """
    known = next(f.choices for f in LAYERS["resources"].fields if f.name == "kind") or ()
    unknown = [k for k in kinds if k not in known]
    if unknown or not kinds:
        raise ParameterError(
            f"unknown resource kind {unknown[0]!r}; kinds: {', '.join(known)}"
            if unknown
            else "give at least one resource kind",
            parameter="kind",
        )
    return tuple(dict.fromkeys(kinds))


def read_stations(kinds: Sequence[str], *, url: str) -> dict[str, tuple[Station, ...]]:
    """Read the available stations of some kinds, by kind, each sorted by id.

    Parameters
    ----------
    kinds
        Resource kinds (checked with :func:`check_kinds`).
    url
        Database URL.

    Returns
    -------
    dict of str to tuple of Station
        Every kind asked (empty tuple when none is loaded or available). A station's position
        is its stored one (an area's point on surface), not a unit's live position.

    Raises
    ------
    ParameterError
        If a kind is unknown.
    """
    wanted = check_kinds(kinds)
    from layers.database import cursor  # the store's driver only when it is read

    with cursor(url) as cur:
        cur.execute(_STATIONS, {"kinds": list(wanted)})
        rows = cur.fetchall()
    out: dict[str, list[Station]] = {k: [] for k in wanted}
    for i, kind, name, lon, lat in rows:
        out[kind].append(Station(str(i), str(kind), name, float(lon), float(lat)))
    return {k: tuple(v) for k, v in out.items()}
