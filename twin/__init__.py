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
