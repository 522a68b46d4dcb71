"""Sensors on the twin's features: Things, Sensors, ObservedProperties and Datastreams.

A feed (a detector gateway, the SUMO simulation, a test) registers each datastream once, by
name, on the twin feature it observes (``layer``, ``feature_id``); registering again returns
the same ids. The entities are SensorThings' (OGC 18-088), so every SensorThings client reads
them; creating them through the SensorThings API itself (``POST /v1.1/Things`` with a deep
insert) is the other way in.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from layers.database import database_url, get_engine
from layers.observations import MEASUREMENT, OBSERVATION_TYPES, forget_datastreams

#: Observed properties the live twin acts on, with their UCUM units (https://ucum.org).
#: ``speed`` and ``flow``/``occupancy`` of a road detector feed the live traffic state;
#: ``position`` (a GeoJSON Point result) of a vehicle moves its resource.
PROPERTIES: dict[str, tuple[str, str]] = {
    "speed": ("km/h", "Mean speed of the vehicles passing, km/h"),
    "flow": ("/h", "Vehicles per hour passing"),
    "occupancy": ("%", "Share of the time the detector is occupied, %"),
    "position": ("", "Position of a moving thing, a GeoJSON Point (EPSG:4326)"),
    "pressure": ("bar", "Water or gas pressure, bar"),
    "level": ("m", "Water level above the gauge's datum, m"),
    "current": ("A", "Electric current, A"),
    "status": ("", "Operational status: online or offline"),
}


class RegistryError(ValueError):
    """A datastream that cannot be registered as asked (unknown type or property)."""


@dataclass(frozen=True)
class Datastream:
    """What the live twin needs to know about a datastream to act on its observations.

    Attributes
    ----------
    id
        The Datastream's ``@iot.id``.
    name
        Its name.
    observed_property
        Its ObservedProperty's name (``speed``, ``flow``, … for the ones the twin acts on).
    unit
        Its unitOfMeasurement's UCUM symbol.
    thing_id
        Its Thing's ``@iot.id``.
    layer, feature_id
        The twin feature its Thing is, when it is one.
    """

    id: int
    name: str
    observed_property: str
    unit: str
    thing_id: int
    layer: str | None
    feature_id: str | None


_UPSERT = """
WITH thing AS (
    INSERT INTO sta_things (name, description, layer, feature_id, properties)
    VALUES (%(thing)s, %(thing_description)s, %(layer)s, %(feature_id)s, %(thing_properties)s)
    ON CONFLICT (name) DO UPDATE SET layer = excluded.layer, feature_id = excluded.feature_id
    RETURNING id
), sensor AS (
    INSERT INTO sta_sensors (name, description, encoding_type, metadata)
    VALUES (%(sensor)s, %(sensor)s, 'text/plain', '')
    ON CONFLICT (name) DO UPDATE SET name = excluded.name
    RETURNING id
), property AS (
    INSERT INTO sta_observed_properties (name, definition, description)
    VALUES (%(property)s, %(definition)s, %(property_description)s)
    ON CONFLICT (name) DO UPDATE SET name = excluded.name
    RETURNING id
)
INSERT INTO sta_datastreams (name, description, observation_type, unit_of_measurement,
                             thing_id, sensor_id, observed_property_id)
SELECT %(name)s, %(description)s, %(observation_type)s, %(unit)s,
       (SELECT id FROM thing), (SELECT id FROM sensor), (SELECT id FROM property)
ON CONFLICT (name) DO UPDATE SET observation_type = excluded.observation_type,
    unit_of_measurement = excluded.unit_of_measurement, thing_id = excluded.thing_id,
    sensor_id = excluded.sensor_id, observed_property_id = excluded.observed_property_id
RETURNING id, thing_id
"""

_LOCATE = """
WITH location AS (
    INSERT INTO sta_locations (name, description, geom)
    SELECT %(name)s, 'where the thing is', ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)
    WHERE NOT EXISTS (SELECT 1 FROM sta_thing_locations WHERE thing_id = %(thing)s)
    RETURNING id
)
INSERT INTO sta_thing_locations (thing_id, location_id)
SELECT %(thing)s, id FROM location
"""


def register(
    name: str,
    *,
    thing: str,
    observed_property: str,
    layer: str | None = None,
    feature_id: str | None = None,
    sensor: str = "sensor",
    observation_type: str = MEASUREMENT,
    unit: str | None = None,
    location: tuple[float, float] | None = None,
    url: str | None = None,
) -> int:
    """Register a datastream (and its Thing, Sensor and ObservedProperty) by name.

    Parameters
    ----------
    name
        The datastream's name, unique in the store (``<thing>/<property>`` by convention).
    thing
        The Thing's name, unique in the store.
    observed_property
        The ObservedProperty's name; one of :data:`PROPERTIES` for the twin to act on it.
    layer, feature_id
        The twin feature the Thing is (``roads``/``acosta:104``, ``resources``/``unit-7``).
    sensor
        The Sensor's name (a model or kind of device).
    observation_type
        One of SensorThings' observation types; numbers (``OM_Measurement``) by default.
    unit
        UCUM symbol; the property's own from :data:`PROPERTIES` by default.
    location
        The Thing's Location (lon, lat in EPSG:4326), set the first time only.
    url
        Database URL; the configured one by default.

    Returns
    -------
    int
        The datastream's ``@iot.id``.

    Raises
    ------
    RegistryError
        If the observation type is not SensorThings', or a feature is half given.
    """
    if observation_type not in OBSERVATION_TYPES:
        raise RegistryError(f"unknown observationType {observation_type!r}")
    if (layer is None) != (feature_id is None):
        raise RegistryError("give both layer and feature_id, or neither")
    symbol, description = PROPERTIES.get(observed_property, ("", observed_property))
    symbol = symbol if unit is None else unit
    params: dict[str, Any] = {
        "name": name,
        "description": f"{observed_property} of {thing}",
        "thing": thing,
        "thing_description": f"{layer} {feature_id}" if layer else thing,
        "thing_properties": None,
        "layer": layer,
        "feature_id": feature_id,
        "sensor": sensor,
        "property": observed_property,
        "definition": f"urn:citytwin:property:{observed_property}",
        "property_description": description,
        "observation_type": observation_type,
        "unit": json.dumps({"name": symbol, "symbol": symbol, "definition": "https://ucum.org"}),
    }
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(_UPSERT, params)
            row = cur.fetchone()
            assert row is not None
            datastream_id, thing_id = int(row[0]), int(row[1])
            if location is not None:
                cur.execute(
                    _LOCATE,
                    {"name": thing, "lon": location[0], "lat": location[1], "thing": thing_id},
                )
    _DATASTREAMS.forget(database_url(url))
    forget_datastreams(url)
    return datastream_id


_INFO = """
SELECT d.id, d.name, p.name, COALESCE(d.unit_of_measurement ->> 'symbol', ''), d.thing_id,
       t.layer, t.feature_id
FROM sta_datastreams d
JOIN sta_observed_properties p ON p.id = d.observed_property_id
JOIN sta_things t ON t.id = d.thing_id
WHERE d.id = ANY(%s)
"""


class _Cache:
    def __init__(self) -> None:
        self._known: dict[str, dict[int, Datastream]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, ids: set[int]) -> dict[int, Datastream]:
        with self._lock:
            known = self._known.setdefault(url, {})
            missing = ids - known.keys()
        if missing:
            with get_engine(url).connect() as connection:
                raw = connection.connection.driver_connection
                assert raw is not None
                with raw.cursor() as cur:
                    cur.execute(_INFO, (sorted(missing),))
                    found = {int(r[0]): Datastream(int(r[0]), *r[1:]) for r in cur.fetchall()}
                raw.rollback()
            with self._lock:
                known.update(found)
        return {i: known[i] for i in ids if i in known}

    def forget(self, url: str) -> None:
        with self._lock:
            self._known.pop(url, None)


_DATASTREAMS = _Cache()


def datastreams(ids: set[int], *, url: str | None = None) -> dict[int, Datastream]:
    """Return what the twin knows of some datastreams (cached; read again on a miss).

    Parameters
    ----------
    ids
        Datastream ids.
    url
        Database URL; the configured one by default.

    Returns
    -------
    dict
        :class:`Datastream` by id, for the ids that exist.
    """
    return _DATASTREAMS.get(database_url(url), set(ids))


def forget(url: str | None = None) -> None:
    """Drop the cached datastream descriptions of a store (after deleting datastreams).

    Parameters
    ----------
    url
        Database URL; the configured one by default.
    """
    _DATASTREAMS.forget(database_url(url))
