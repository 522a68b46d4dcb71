"""CityTwin for analysts: ``import twin; city = twin.connect()``.

The living city composed from the store (:mod:`layers`) and network analysis (:mod:`routing`).
"""

from twin.city import City, connect

__all__ = ["City", "connect"]
