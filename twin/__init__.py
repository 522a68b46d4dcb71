"""CityTwin for analysts: ``import twin; city = twin.connect()``.

The living city composed from the store (:mod:`layers`) and network analysis (:mod:`routing`).
A new city is set up from an OpenStreetMap extract (or a folder of GIS files) with
``twin.init_city(path)`` (:mod:`twin.founding`).

What a notebook needs is here, so none imports :mod:`layers` or :mod:`routing` itself:

- the facade: :class:`City`, :func:`connect`, :func:`init_city`, and :mod:`twin.deck` for
  offline maps;
- positions: :data:`Place` (``(lon, lat)`` or a shapely Point) and :func:`as_lonlat`;
- the errors the facade raises, to catch them: :class:`ParameterError` (a request that cannot
  be answered as asked; the base of most others), :class:`MissingInputError` (the store lacks
  an input, and the message says how to load it), :class:`RoutingError`,
  :class:`TopologyError`, :class:`MissingNetworkError`, :class:`OneMapError`,
  :class:`RasterError`, :class:`SignalError`, :class:`AccessError` (the session may not),
  :class:`IdentityError` (credentials), :class:`IngestError` (a rejected file),
  :class:`CityError` (a city set-up refused) and :class:`StoreError` (no store);
- analysis inputs and figures: :class:`WebsterSettings` (for :meth:`City.optimise_signals`),
  :func:`maxband` and :class:`CorridorSignal` (MAXBAND offsets for a corridor of one's own),
  and :data:`TURNOUT_S` (seconds from alarm to leaving the station, per resource kind, as
  :meth:`City.nearest_units` counts them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layers.database import StoreError
    from layers.errors import AccessError, MissingInputError, ParameterError
    from layers.identity import IdentityError
    from layers.onemap import OneMapError
    from layers.rasters import RasterError
    from layers.validation import IngestError
    from routing import RoutingError
    from routing.paths import TURNOUT_S
    from routing.signals import CorridorSignal, SignalError, WebsterSettings, maxband
    from routing.utility_network import MissingNetworkError, TopologyError
    from twin import deck
    from twin.city import City, connect
    from twin.founding import CityError, init_city
    from twin.places import Place, as_lonlat

# Where each public name lives: imported on first use, so that ``twin --help`` and a command
# that needs little do not pay for the whole package (PEP 562 module ``__getattr__``).
_LAZY = {
    "StoreError": "layers.database",
    "AccessError": "layers.errors",
    "MissingInputError": "layers.errors",
    "ParameterError": "layers.errors",
    "IdentityError": "layers.identity",
    "OneMapError": "layers.onemap",
    "RasterError": "layers.rasters",
    "IngestError": "layers.validation",
    "RoutingError": "routing",
    "TURNOUT_S": "routing.paths",
    "CorridorSignal": "routing.signals",
    "SignalError": "routing.signals",
    "WebsterSettings": "routing.signals",
    "maxband": "routing.signals",
    "MissingNetworkError": "routing.utility_network",
    "TopologyError": "routing.utility_network",
    "deck": "twin.deck",
    "City": "twin.city",
    "connect": "twin.city",
    "CityError": "twin.founding",
    "init_city": "twin.founding",
    "Place": "twin.places",
    "as_lonlat": "twin.places",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use (``twin.City``, ``twin.connect`` ...)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'twin' has no attribute {name!r}")
    if module == f"twin.{name}":
        value: Any = importlib.import_module(module)
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "TURNOUT_S",
    "AccessError",
    "City",
    "CityError",
    "CorridorSignal",
    "IdentityError",
    "IngestError",
    "MissingInputError",
    "MissingNetworkError",
    "OneMapError",
    "ParameterError",
    "Place",
    "RasterError",
    "RoutingError",
    "SignalError",
    "StoreError",
    "TopologyError",
    "WebsterSettings",
    "as_lonlat",
    "connect",
    "deck",
    "init_city",
    "maxband",
]
