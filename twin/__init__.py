"""CityTwin for analysts: ``import twin; city = twin.connect()``.

The living city composed from the store (:mod:`layers`) and network analysis (:mod:`routing`).
A new city is set up from an OpenStreetMap extract (or a folder of GIS files) with
``twin.init_city(path)`` (:mod:`twin.founding`).
"""

from twin.city import City, connect
from twin.founding import init_city

__all__ = ["City", "connect", "init_city"]
