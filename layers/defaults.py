"""Attribute fallbacks: the one place a missing or odd ``maxspeed``, ``lanes`` or height is read.

Every Python consumer of a road's speed limit or lane count, or of a building's height, reads
it through this module, so a missing value (``None``, ``NaN``, ``pandas.NA``), a numpy scalar or
a number written as a string gives the documented default instead of a crash, and Python agrees
with the routing SQL.

Speed limits
------------
:func:`parse_maxspeed` reads an OpenStreetMap ``maxspeed`` tag value in km/h: a number
(``"50"``, ``"50 km/h"``), with a unit (``"30 mph"``, ``"10 knots"``), or an implicit value
with a country code (``"DE:urban"``, ``"RU:rural"``, ``"GB:nsl_single"``, ``"DE:zone:30"``),
resolved from :data:`IMPLICIT_MAXSPEED_KMH`.

:data:`IMPLICIT_MAXSPEED_KMH` is derived from the data set of the project
*osm-legal-default-speeds* (Tobias Zwick, BSD-3-Clause;
``demo/distribution/legal_default_speeds.json`` at commit
``c9d9184bbe14fdd5f515f1ecf0adb59589361ddc``), which is parsed from the OpenStreetMap wiki page
"Default speed limits" (https://wiki.openstreetmap.org/wiki/Default_speed_limits, revision
2607051 of 2023-10-21; wiki content CC BY-SA 2.0). Per country or subdivision (ISO 3166-1 /
3166-2 codes as the data set spells them: ``DE``, ``US-CA``, ``GB-SCT``, ``BE-VLG``), each of
the data set's road types gives the implicit value of the same meaning:

=================  ==========================================================================
implicit value     the data set's road type (the first one present)
=================  ==========================================================================
urban              ``urban``; for GB ``United Kingdom: restricted road``
rural              ``rural``; else the country's general limit (the type without a name)
motorway           ``motorway``, ``rural motorway``, ``US interstate highway``,
                   ``Italy: Autostrada`` ...
trunk              ``motorroad``, ``rural motorroad``, ``expressway`` ... (also ``motorroad``,
                   ``express``, ``expressway``)
dual_carriageway   ``dual carriageway``, ``rural dual carriageway`` ... (also ``nsl_dual``)
living_street      ``living street``
bicycle_road       ``cycle street`` (also ``cyclestreet``)
pedestrian_zone    ``pedestrian zone`` (also ``pedestrian``)
school_zone        ``school zone``, ``urban school zone`` (also ``school``)
=================  ==========================================================================

``maxspeed`` is taken, else ``maxspeed:advisory`` (Germany's motorways have no general limit:
``DE:motorway`` gives the advisory 130 km/h, the *Richtgeschwindigkeit*); ``walk`` is
:data:`WALK_KMH`; mph values are converted and rounded to 0.1 km/h. ``nsl_single`` (GB's
national speed limit, single carriageway) is ``rural``; ``nsl_restricted`` is ``urban``.

A road type a country's row lacks falls back to the country's general limit (``rural``) for
the road kinds (``urban``, ``rural``, ``motorway``, ``trunk``, ``dual_carriageway``: e.g.
``JP:urban`` is Japan's general 60 km/h), and to the generic value of
:data:`GENERIC_MAXSPEED_KMH` for the zone kinds (``living_street``, ``bicycle_road``,
``pedestrian_zone``, ``school_zone``). A subdivision not in the table (``DE-BY``) is its country;
an unknown country (``XX``) uses :data:`GENERIC_MAXSPEED_KMH`, the most common value over the
data set's countries (the smaller one on a tie). ``zoneNN``, ``zone:NN``, ``zone_NN`` and a bare
number (``DE:30``) are NN km/h in any country.

The United States have no national limits; the data set holds each state (``US-CA:urban`` is
California's 25 mph, ``US-TX:rural`` Texas's 60 mph). Plain ``US`` is the most common value over
the 51 states and DC rows of the data set (``US:urban`` 25 mph, ``US:rural`` 55 mph,
``US:motorway`` 70 mph).

China's row agrees with the Regulations for the Implementation of the Road Traffic Safety Law
(《道路交通安全法实施条例》): article 45 (no centre line: 30 km/h in cities, 40 km/h on
highways; one motor-vehicle lane per direction: 50 km/h in cities, 70 km/h on highways) and
article 78 (expressways at most 120 km/h). ``CN:urban`` is 50, ``CN:rural`` 70,
``CN:motorway`` 120.

Road class defaults
-------------------
:func:`road_speed_kmh` falls back to :data:`CLASS_SPEED_KMH`, then :data:`DEFAULT_SPEED_KMH`,
the same values the routing SQL reads from ``routing_speeds`` and
``routing_profiles.default_speed_kmh`` (migration ``0002_routing_edges``: ``CAR`` and the
``car`` profile's 30 km/h), so a speed computed in Python equals the one in
``routing_edges_all``. :func:`road_lanes` falls back to :data:`CLASS_LANES`.
:func:`building_height_m` falls back to ``levels`` times :data:`STOREY_HEIGHT_M`, then
:data:`DEFAULT_BUILDING_HEIGHT_M`.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Final

import numpy as np
import pandas as pd

#: km/h per mile per hour (international mile, 1,609.344 m).
KMH_PER_MPH: Final = 1.609344
#: km/h per knot (international nautical mile, 1,852 m).
KMH_PER_KNOT: Final = 1.852
#: ``maxspeed=walk``, walking pace, in km/h: the upper end of the 4-7 km/h German courts read
#: *Schrittgeschwindigkeit* as (OpenStreetMap wiki, "Key:maxspeed", value ``walk``).
WALK_KMH: Final = 7.0

#: Implicit speed limits in km/h by country (or subdivision) and road type: see the module's
#: docstring for the source and the derivation. Generated from the data set; do not edit by hand.
IMPLICIT_MAXSPEED_KMH: Final[dict[str, dict[str, float]]] = {
    "AD": {"urban": 50, "rural": 60, "motorway": 120, "trunk": 120, "living_street": 20},
    "AE": {"rural": 100, "motorway": 120},
    "AF": {"rural": 90},
    "AG": {"urban": 32.2, "rural": 64.4},
    "AL": {"urban": 40, "rural": 80, "motorway": 110},
    "AM": {"urban": 60, "rural": 90, "motorway": 110, "living_street": 20},
    "AO": {"urban": 60, "rural": 90, "motorway": 120, "trunk": 100},
    "AR": {"rural": 110, "motorway": 130, "school_zone": 20},
    "AS": {"urban": 24.1, "rural": 40.2},
    "AT": {
        "urban": 50,
        "rural": 100,
        "motorway": 130,
        "trunk": 100,
        "living_street": 7,
        "bicycle_road": 30,
        "pedestrian_zone": 7,
    },
    "AU": {"urban": 50, "rural": 100},
    "AU-ACT": {"urban": 50, "rural": 100},
    "AU-NSW": {"urban": 50, "rural": 100},
    "AU-NT": {"urban": 50, "rural": 110},
    "AU-QLD": {"urban": 50, "rural": 100},
    "AU-SA": {"urban": 50, "rural": 100},
    "AU-TAS": {"urban": 50, "rural": 100},
    "AU-VIC": {"urban": 50, "rural": 100},
    "AU-WA": {"urban": 50, "rural": 110, "pedestrian_zone": 10},
    "AW": {"urban": 50, "rural": 80},
    "AZ": {"urban": 60, "rural": 90, "motorway": 110, "living_street": 20},
    "BA": {"urban": 50, "rural": 80, "motorway": 130, "trunk": 100, "living_street": 7},
    "BB": {"rural": 60},
    "BE-BRU": {
        "urban": 30,
        "rural": 70,
        "motorway": 120,
        "dual_carriageway": 120,
        "living_street": 20,
        "bicycle_road": 30,
        "pedestrian_zone": 7,
    },
    "BE-VLG": {
        "urban": 50,
        "rural": 70,
        "motorway": 120,
        "dual_carriageway": 120,
        "living_street": 20,
        "bicycle_road": 30,
        "pedestrian_zone": 7,
    },
    "BE-WAL": {
        "urban": 50,
        "rural": 90,
        "motorway": 120,
        "dual_carriageway": 120,
        "living_street": 20,
        "bicycle_road": 30,
        "pedestrian_zone": 7,
    },
    "BF": {"urban": 50, "rural": 90},
    "BG": {"urban": 50, "rural": 90, "motorway": 140, "trunk": 120, "living_street": 20},
    "BH": {"urban": 60, "rural": 100},
    "BI": {"urban": 50, "rural": 80, "dual_carriageway": 100},
    "BJ": {"urban": 50, "rural": 90, "motorway": 110},
    "BN": {"urban": 60},
    "BO": {"urban": 40, "rural": 80, "pedestrian_zone": 20, "school_zone": 10},
    "BR": {"rural": 100, "dual_carriageway": 110},
    "BS": {"urban": 40.2, "rural": 72.4},
    "BS-NP": {"urban": 40.2, "rural": 48.3},
    "BT": {"urban": 30, "rural": 50},
    "BW": {"urban": 60, "rural": 100, "living_street": 30},
    "BY": {"urban": 60, "rural": 90, "motorway": 110, "living_street": 20, "pedestrian_zone": 20},
    "CA-AB": {"rural": 80, "school_zone": 30},
    "CA-BC": {"urban": 50, "rural": 80, "school_zone": 50},
    "CA-MB": {"urban": 50, "rural": 90},
    "CA-NB": {"urban": 50, "rural": 80, "school_zone": 50},
    "CA-NL": {"urban": 50, "rural": 80},
    "CA-NS": {"rural": 80, "school_zone": 30},
    "CA-NT": {"urban": 50, "rural": 90},
    "CA-NU": {"urban": 50, "rural": 90},
    "CA-ON": {"urban": 50, "rural": 80},
    "CA-PE": {"urban": 50, "rural": 100},
    "CA-QC": {
        "urban": 50,
        "rural": 90,
        "bicycle_road": 30,
        "pedestrian_zone": 20,
        "school_zone": 90,
    },
    "CA-SK": {"rural": 80},
    "CA-YT": {"rural": 50, "school_zone": 50},
    "CD": {"urban": 60, "rural": 90, "motorway": 120, "dual_carriageway": 120},
    "CF": {"urban": 60, "rural": 110},
    "CG": {"urban": 60, "rural": 110},
    "CH": {
        "urban": 50,
        "rural": 80,
        "motorway": 120,
        "trunk": 100,
        "living_street": 20,
        "pedestrian_zone": 7,
    },
    "CI": {"urban": 70, "rural": 110, "motorway": 120},
    "CL": {"urban": 50, "rural": 100, "school_zone": 30},
    "CM": {"urban": 60, "rural": 110},
    "CN": {"urban": 50, "rural": 70, "motorway": 120},
    "CO": {"urban": 50, "rural": 90, "motorway": 120, "school_zone": 30},
    "CR": {"urban": 50, "rural": 60},
    "CU": {"urban": 50, "rural": 90, "motorway": 100, "school_zone": 40},
    "CV": {"urban": 50, "rural": 90, "motorway": 120, "trunk": 100},
    "CW": {"urban": 40, "rural": 60, "trunk": 80},
    "CY": {"urban": 48.3},
    "CZ": {
        "urban": 50,
        "rural": 90,
        "motorway": 130,
        "trunk": 110,
        "living_street": 20,
        "bicycle_road": 30,
        "pedestrian_zone": 20,
    },
    "DE": {
        "urban": 50,
        "rural": 100,
        "motorway": 130,
        "dual_carriageway": 130,
        "living_street": 7,
        "bicycle_road": 30,
    },
    "DK": {
        "urban": 50,
        "rural": 80,
        "motorway": 130,
        "trunk": 80,
        "living_street": 15,
        "bicycle_road": 30,
    },
    "DO": {"urban": 35, "rural": 60, "school_zone": 35},
    "EC": {"urban": 50, "rural": 100, "school_zone": 20},
    "EE": {"urban": 50, "rural": 90, "living_street": 20},
    "EG": {"urban": 60, "rural": 90},
    "ES": {"urban": 30, "rural": 90, "motorway": 120, "living_street": 20},
    "FI": {"urban": 50, "rural": 100, "living_street": 20, "pedestrian_zone": 20},
    "FJ": {"urban": 50, "rural": 80},
    "FM": {"rural": 40.2},
    "FM-KSA": {"urban": 32.2, "rural": 40.2, "school_zone": 24.1},
    "FM-PNI": {"rural": 40.2},
    "FM-TRK": {"urban": 32.2, "rural": 40.2, "school_zone": 32.2},
    "FM-YAP": {"urban": 32.2, "rural": 40.2, "school_zone": 32.2},
    "FR": {"urban": 50, "rural": 80, "motorway": 130, "dual_carriageway": 110, "living_street": 20},
    "GA": {"urban": 60, "rural": 110},
    "GB": {"urban": 48.3, "rural": 96.6, "motorway": 112.7, "dual_carriageway": 112.7},
    "GB-SCT": {"urban": 48.3, "rural": 96.6, "motorway": 112.7, "dual_carriageway": 112.7},
    "GD": {"urban": 32.2, "rural": 64.4},
    "GE": {"urban": 60, "rural": 90, "motorway": 110, "living_street": 20},
    "GG": {"rural": 56.3},
    "GH": {"urban": 50, "rural": 90, "motorway": 100, "pedestrian_zone": 30},
    "GQ": {"urban": 60, "rural": 110},
    "GR": {"urban": 50, "rural": 90, "motorway": 130, "trunk": 110},
    "GT": {"rural": 60, "motorway": 100, "school_zone": 30},
    "GU": {"rural": 72.4},
    "GY": {"urban": 48.3, "rural": 64.4},
    "HK": {"rural": 50},
    "HR": {"urban": 50, "rural": 90, "motorway": 130, "trunk": 110, "living_street": 7},
    "HT": {"urban": 50},
    "HU": {
        "urban": 50,
        "rural": 90,
        "motorway": 130,
        "trunk": 110,
        "living_street": 20,
        "bicycle_road": 30,
        "pedestrian_zone": 10,
    },
    "ID": {"urban": 50, "rural": 80, "motorway": 100},
    "IE": {"urban": 50, "rural": 80, "motorway": 120},
    "IL": {"urban": 50, "rural": 80, "motorway": 110, "dual_carriageway": 90, "living_street": 30},
    "IM": {"urban": 48.3, "rural": 96.6, "living_street": 32.2},
    "IN": {"urban": 70, "rural": 70, "motorway": 120, "dual_carriageway": 100},
    "IS": {"urban": 50, "rural": 80, "living_street": 10, "pedestrian_zone": 10},
    "IT": {"urban": 50, "rural": 90, "motorway": 130},
    "JE": {"rural": 64.4},
    "JP": {"rural": 60, "motorway": 100},
    "KE": {"urban": 50, "rural": 100, "dual_carriageway": 110},
    "KG": {"urban": 60, "rural": 90, "motorway": 110},
    "KH": {"urban": 60, "rural": 100},
    "KI": {"urban": 40, "rural": 60, "school_zone": 30},
    "KN": {"urban": 32.2, "rural": 64.4},
    "KR": {"urban": 50, "rural": 60, "motorway": 80, "trunk": 80, "school_zone": 30},
    "KZ": {"urban": 60, "rural": 110, "motorway": 140, "living_street": 20},
    "LI": {"urban": 50, "rural": 80},
    "LR": {"urban": 40.2, "rural": 72.4, "school_zone": 24.1},
    "LS": {"urban": 60, "rural": 100, "motorway": 120},
    "LT": {"urban": 50, "rural": 90, "motorway": 130, "trunk": 120, "living_street": 20},
    "LU": {
        "urban": 50,
        "rural": 90,
        "motorway": 130,
        "living_street": 20,
        "bicycle_road": 30,
        "pedestrian_zone": 20,
    },
    "LV": {"urban": 50, "rural": 90, "trunk": 110, "living_street": 20},
    "MC": {"rural": 50},
    "MD": {"urban": 50, "rural": 90, "trunk": 110, "living_street": 20, "pedestrian_zone": 5},
    "MH": {"urban": 40.2, "rural": 64.4, "school_zone": 24.1},
    "MK": {"urban": 50, "rural": 90, "motorway": 130, "trunk": 110, "school_zone": 30},
    "MM": {"urban": 48.3, "rural": 80.5},
    "MN": {"urban": 60, "rural": 80, "living_street": 20, "school_zone": 20},
    "MO": {"rural": 60},
    "MS": {"urban": 32.2, "rural": 64.4},
    "MT": {"urban": 50, "rural": 80},
    "MU": {"rural": 60},
    "MW": {"urban": 50, "rural": 80},
    "MX": {"rural": 80, "motorway": 115},
    "MZ": {"urban": 60, "rural": 120},
    "NA": {"urban": 60, "rural": 100, "motorway": 120},
    "NE": {"urban": 50, "rural": 90, "motorway": 110},
    "NG": {"urban": 50, "rural": 80, "motorway": 100},
    "NI": {"urban": 45, "rural": 60},
    "NL": {"urban": 50, "rural": 80, "motorway": 130, "trunk": 100, "living_street": 15},
    "NL-BQ1": {"urban": 40, "rural": 60},
    "NL-BQ2": {"urban": 20, "rural": 40},
    "NL-BQ3": {"urban": 30, "rural": 50},
    "NO": {"urban": 50, "rural": 80, "motorway": 110, "living_street": 7, "pedestrian_zone": 7},
    "NP": {"urban": 40, "rural": 80},
    "NR": {"rural": 50, "school_zone": 20},
    "NZ": {"urban": 50, "rural": 100, "living_street": 10},
    "PA": {"urban": 40, "rural": 100, "motorway": 120, "school_zone": 30},
    "PE": {"urban": 40, "rural": 60, "school_zone": 30},
    "PG": {"urban": 60, "rural": 100, "school_zone": 25},
    "PH": {"urban": 30, "rural": 40, "school_zone": 20},
    "PK": {"urban": 55, "rural": 70, "motorway": 130},
    "PL": {
        "urban": 50,
        "rural": 90,
        "motorway": 140,
        "trunk": 100,
        "dual_carriageway": 100,
        "living_street": 20,
    },
    "PN": {"rural": 48.3},
    "PR": {"urban": 40.2, "rural": 72.4, "motorway": 104.6},
    "PS": {"urban": 50, "rural": 80, "motorway": 110},
    "PT": {"urban": 50, "rural": 90, "motorway": 120, "trunk": 100, "living_street": 20},
    "PY": {"urban": 50, "rural": 110, "school_zone": 20},
    "RO": {"urban": 50, "rural": 90, "motorway": 130, "living_street": 20},
    "RS": {
        "urban": 50,
        "rural": 80,
        "motorway": 120,
        "trunk": 100,
        "living_street": 10,
        "pedestrian_zone": 7,
    },
    "RU": {"urban": 60, "rural": 90, "motorway": 110, "living_street": 20, "bicycle_road": 20},
    "RW": {"urban": 40, "rural": 80},
    "SA": {"urban": 50, "rural": 120},
    "SD": {"urban": 50},
    "SE": {
        "urban": 50,
        "rural": 70,
        "motorway": 110,
        "living_street": 7,
        "bicycle_road": 30,
        "pedestrian_zone": 7,
    },
    "SG": {"rural": 50, "school_zone": 40},
    "SH": {"rural": 48.3},
    "SI": {"urban": 50, "rural": 90, "motorway": 130, "living_street": 10, "pedestrian_zone": 10},
    "SK": {
        "urban": 50,
        "rural": 90,
        "motorway": 130,
        "trunk": 130,
        "living_street": 20,
        "pedestrian_zone": 20,
        "school_zone": 20,
    },
    "SN": {"rural": 90, "motorway": 110},
    "SS": {"urban": 45},
    "SV": {"urban": 50, "rural": 90},
    "TD": {"urban": 60, "rural": 110},
    "TH": {"urban": 80, "rural": 90, "motorway": 120, "dual_carriageway": 100},
    "TL": {"urban": 50, "rural": 90, "motorway": 120, "trunk": 100},
    "TN": {"urban": 50, "rural": 90, "motorway": 110},
    "TR": {"urban": 50, "rural": 90, "motorway": 120, "dual_carriageway": 110},
    "TT": {"urban": 50, "rural": 80},
    "TV": {"rural": 40},
    "TW": {"rural": 50},
    "TZ": {"urban": 50, "rural": 110},
    "UA": {
        "urban": 50,
        "rural": 90,
        "motorway": 130,
        "dual_carriageway": 110,
        "living_street": 20,
        "pedestrian_zone": 20,
    },
    "UG": {"urban": 50, "rural": 80},
    "US": {
        "urban": 40.2,
        "rural": 88.5,
        "motorway": 112.7,
        "trunk": 104.6,
        "dual_carriageway": 104.6,
        "school_zone": 24.1,
    },
    "US-AK": {"urban": 40.2, "rural": 88.5},
    "US-AL": {"urban": 48.3, "rural": 72.4, "motorway": 112.7},
    "US-AR": {"urban": 48.3, "rural": 104.6},
    "US-AZ": {"urban": 40.2, "rural": 104.6, "school_zone": 24.1},
    "US-CA": {"urban": 40.2, "rural": 88.5, "school_zone": 40.2},
    "US-CO": {"urban": 48.3, "rural": 88.5, "motorway": 104.6, "trunk": 104.6},
    "US-CT": {"rural": 88.5, "motorway": 104.6},
    "US-DC": {"rural": 32.2, "school_zone": 24.1},
    "US-DE": {"urban": 40.2, "rural": 80.5, "dual_carriageway": 88.5, "school_zone": 32.2},
    "US-FL": {"urban": 48.3, "rural": 88.5, "motorway": 112.7, "dual_carriageway": 104.6},
    "US-GA": {"urban": 48.3, "rural": 88.5},
    "US-IA": {"rural": 88.5, "motorway": 104.6, "school_zone": 40.2},
    "US-ID": {"urban": 56.3, "rural": 88.5, "motorway": 120.7},
    "US-IL": {"urban": 48.3, "rural": 88.5, "motorway": 112.7, "dual_carriageway": 104.6},
    "US-IN": {"urban": 48.3, "rural": 88.5, "motorway": 112.7, "dual_carriageway": 96.6},
    "US-KS": {"urban": 48.3, "rural": 88.5, "dual_carriageway": 120.7},
    "US-KY": {"urban": 56.3, "rural": 88.5, "motorway": 104.6},
    "US-LA": {"rural": 88.5, "motorway": 112.7, "dual_carriageway": 104.6},
    "US-MA": {"urban": 48.3, "rural": 64.4, "dual_carriageway": 80.5, "school_zone": 32.2},
    "US-MD": {"urban": 48.3, "rural": 80.5, "dual_carriageway": 88.5, "school_zone": 24.1},
    "US-ME": {"urban": 40.2, "rural": 72.4, "school_zone": 24.1},
    "US-MI": {"urban": 40.2, "rural": 88.5, "motorway": 112.7},
    "US-MN": {"urban": 48.3, "rural": 88.5, "motorway": 104.6, "trunk": 104.6, "school_zone": 24.1},
    "US-MO": {"rural": 96.6, "motorway": 112.7, "trunk": 104.6},
    "US-MS": {"rural": 104.6},
    "US-MT": {"urban": 40.2, "rural": 112.7, "motorway": 128.7},
    "US-NC": {"urban": 56.3, "rural": 88.5},
    "US-ND": {"urban": 40.2, "rural": 88.5, "dual_carriageway": 112.7, "school_zone": 32.2},
    "US-NE": {"urban": 40.2, "rural": 88.5, "motorway": 112.7, "dual_carriageway": 104.6},
    "US-NH": {
        "urban": 56.3,
        "rural": 88.5,
        "motorway": 104.6,
        "dual_carriageway": 104.6,
        "school_zone": 32.2,
    },
    "US-NJ": {"urban": 40.2, "rural": 80.5, "school_zone": 32.2},
    "US-NM": {"urban": 48.3, "rural": 88.5, "school_zone": 24.1},
    "US-NV": {"rural": 128.7, "school_zone": 24.1},
    "US-NY": {"rural": 88.5},
    "US-OH": {
        "urban": 40.2,
        "rural": 88.5,
        "motorway": 112.7,
        "trunk": 96.6,
        "dual_carriageway": 96.6,
    },
    "US-OK": {"rural": 88.5, "school_zone": 40.2},
    "US-OR": {"rural": 88.5, "motorway": 104.6, "school_zone": 40.2},
    "US-PA": {"urban": 56.3, "rural": 88.5, "school_zone": 24.1},
    "US-RI": {"urban": 40.2, "rural": 80.5, "school_zone": 32.2},
    "US-SC": {"urban": 48.3, "rural": 88.5},
    "US-SD": {"urban": 40.2, "rural": 104.6, "motorway": 128.7, "school_zone": 24.1},
    "US-TN": {"rural": 104.6, "school_zone": 24.1},
    "US-TX": {"urban": 48.3, "rural": 96.6},
    "US-UT": {"urban": 40.2, "rural": 88.5, "school_zone": 32.2},
    "US-VA": {"urban": 56.3, "rural": 88.5, "motorway": 88.5, "school_zone": 40.2},
    "US-VT": {"rural": 80.5},
    "US-WA": {"urban": 40.2, "rural": 80.5, "school_zone": 32.2},
    "US-WI": {
        "urban": 40.2,
        "rural": 88.5,
        "motorway": 112.7,
        "dual_carriageway": 104.6,
        "school_zone": 24.1,
    },
    "US-WV": {"urban": 40.2, "rural": 88.5, "school_zone": 24.1},
    "US-WY": {"urban": 48.3, "rural": 104.6, "motorway": 120.7, "school_zone": 32.2},
    "UY": {"urban": 45, "rural": 90, "school_zone": 20},
    "UZ": {"urban": 70, "rural": 100},
    "VE": {"urban": 40, "rural": 70, "motorway": 90},
    "VI": {"urban": 32.2, "rural": 56.3},
    "VN": {"rural": 80, "motorway": 120, "dual_carriageway": 90},
    "WS": {"urban": 40.2, "rural": 56.3},
    "XK": {"urban": 50, "rural": 80, "motorway": 130, "trunk": 110, "dual_carriageway": 100},
    "ZA": {"urban": 60, "rural": 100, "motorway": 120},
    "ZM": {"urban": 40, "rural": 100},
}

#: The value of each road type for a country the table does not know: the most common value
#: over the data set's countries (subdivisions not counted), the smaller one on a tie.
GENERIC_MAXSPEED_KMH: Final[dict[str, float]] = {
    "urban": 50,
    "rural": 90,
    "motorway": 120,
    "trunk": 100,
    "dual_carriageway": 100,
    "living_street": 20,
    "bicycle_road": 30,
    "pedestrian_zone": 20,
    "school_zone": 20,
}

#: Road types a country lacks that fall back to the country's general limit (``rural``).
_ROAD_KINDS: Final = frozenset({"urban", "rural", "motorway", "trunk", "dual_carriageway"})
#: Other spellings of the implicit values (OpenStreetMap wiki, "Key:maxspeed", implicit values).
_ALIASES: Final[dict[str, str]] = {
    "nsl_single": "rural",
    "nsl_dual": "dual_carriageway",
    "nsl_restricted": "urban",
    "motorroad": "trunk",
    "express": "trunk",
    "expressway": "trunk",
    "cyclestreet": "bicycle_road",
    "pedestrian": "pedestrian_zone",
    "school": "school_zone",
}
_NUMBER: Final = re.compile(
    r"^(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots?)?$",
    re.IGNORECASE,
)
_ZONE: Final = re.compile(r"^zone[:_]?(\d+(?:\.\d+)?)$", re.IGNORECASE)
#: ``maxspeed`` values meaning "no single number": no limit, a variable sign, or unknown.
_NO_NUMBER: Final = frozenset({"none", "signals", "variable", "unknown", "no", "implicit"})


def _is_missing(value: object) -> bool:
    """Tell whether ``value`` is None, NaN (float or numpy), ``pandas.NA`` or ``pandas.NaT``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return math.isnan(float(value))
    return False


def _number(value: str) -> float | None:
    """Read a plain number or a number with a speed unit, in km/h; None if it is neither."""
    match = _NUMBER.match(value.strip())
    if match is None:
        return None
    speed = float(match.group(1))
    unit = (match.group(2) or "").lower()
    if unit == "mph":
        speed = round(speed * KMH_PER_MPH, 1)
    elif unit.startswith("knot"):
        speed = round(speed * KMH_PER_KNOT, 1)
    return speed if speed > 0 else None


def implicit_maxspeed_kmh(country: str, kind: str) -> float | None:
    """Return the implicit speed limit of a road type in a country, in km/h.

    Parameters
    ----------
    country
        ISO 3166-1 alpha-2 code, or ISO 3166-2 subdivision (``"US-CA"``); case-insensitive.
        A subdivision not in :data:`IMPLICIT_MAXSPEED_KMH` is its country; an unknown country
        uses :data:`GENERIC_MAXSPEED_KMH`.
    kind
        Road type of the implicit value (``"urban"``, ``"rural"``, ``"motorway"``, ``"trunk"``,
        ``"living_street"``, ``"zone30"``, ``"nsl_single"`` ...; case-insensitive).

    Returns
    -------
    float or None
        Speed in km/h, or None if ``kind`` is not a road type (``"DE:foo"``).

    Notes
    -----
    Source and fallbacks: see the module's docstring.
    """
    kind = kind.strip().lower().replace(" ", "_")
    if kind == "walk":
        return WALK_KMH
    zone = _ZONE.match(kind)
    if zone is not None:
        return _number(zone.group(1))
    number = _number(kind)
    if number is not None:
        return number
    kind = _ALIASES.get(kind, kind)
    if kind not in GENERIC_MAXSPEED_KMH:
        return None
    code = country.strip().upper()
    row = IMPLICIT_MAXSPEED_KMH.get(code) or IMPLICIT_MAXSPEED_KMH.get(code.split("-", 1)[0])
    if row is None:
        return float(GENERIC_MAXSPEED_KMH[kind])
    if kind in row:
        return float(row[kind])
    if kind in _ROAD_KINDS and "rural" in row:
        return float(row["rural"])
    return float(GENERIC_MAXSPEED_KMH[kind])


def parse_maxspeed(value: str | float | None) -> float | None:
    """Return an OpenStreetMap ``maxspeed`` value in km/h.

    Parameters
    ----------
    value
        The tag value: a number (``"50"``, ``"50 km/h"``, ``50``), a number with a unit
        (``"30 mph"``, ``"10 knots"``), ``"walk"``, an implicit value with a country code
        (``"DE:urban"``, ``"RU:rural"``, ``"GB:nsl_single"``, ``"XX:living_street"``), a zone
        (``"DE:zone:30"``, ``"DE:zone30"``, ``"zone20"``), or several values separated by
        ``;`` (``"50;30"``). None, NaN and ``pandas.NA`` are missing.

    Returns
    -------
    float or None
        Speed in km/h (mph and knots converted, rounded to 0.1 km/h), or None when the tag
        is missing, gives no single number (``"none"``: no limit, ``"signals"``,
        ``"variable"``: a variable sign) or is unreadable. A caller then falls back to the
        road class's speed (:func:`road_speed_kmh`).

    Notes
    -----
    Of several values (``"50;30"``, usually per lane or per direction) the first one is
    taken, the value OpenStreetMap lists first. Implicit values are resolved by
    :func:`implicit_maxspeed_kmh` from :data:`IMPLICIT_MAXSPEED_KMH` (the OpenStreetMap wiki's
    "Default speed limits", through the osm-legal-default-speeds data set; see the module's
    docstring). Units: OpenStreetMap wiki, "Key:maxspeed" (km/h unless ``mph`` or ``knots``).
    """
    if _is_missing(value) or isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        speed = float(value)
        return speed if math.isfinite(speed) and speed > 0 else None
    text = str(value).split(";", 1)[0].strip()
    if not text or text.lower() in _NO_NUMBER:
        return None
    if text.lower() == "walk":
        return WALK_KMH
    if ":" in text:
        country, kind = text.split(":", 1)
        return implicit_maxspeed_kmh(country, kind)
    zone = _ZONE.match(text)
    if zone is not None:
        return _number(zone.group(1))
    return _number(text)


# --- road speed, lanes, building height ---------------------------------------------------

#: Speed by road class, km/h: the ``routing_speeds`` table (migration ``0002_routing_edges``,
#: ``CAR``), which the routing SQL reads; the two must stay equal (tests/layers/test_defaults.py
#: compares them with the database).
CLASS_SPEED_KMH: Final[dict[str, float]] = {
    "motorway": 110,
    "motorway_link": 60,
    "trunk": 90,
    "trunk_link": 50,
    "primary": 50,
    "primary_link": 40,
    "secondary": 50,
    "secondary_link": 40,
    "tertiary": 40,
    "tertiary_link": 30,
    "unclassified": 30,
    "residential": 30,
    "living_street": 10,
    "service": 15,
}
#: Speed of a road whose class has none, km/h: ``routing_profiles.default_speed_kmh`` of the
#: ``car`` profile (migration ``0002_routing_edges``).
DEFAULT_SPEED_KMH: Final = 30.0
#: Lanes of a two-way road with no ``lanes``, both directions, by class: the OpenStreetMap
#: wiki's assumption for an untagged road ("Key:lanes", assumptions: a two-way road wide
#: enough for two cars has two lanes, one each way; a link, service road or living street
#: one).
CLASS_LANES: Final[dict[str, int]] = {
    "motorway": 2,
    "motorway_link": 1,
    "trunk": 2,
    "trunk_link": 1,
    "primary": 2,
    "primary_link": 1,
    "secondary": 2,
    "secondary_link": 1,
    "tertiary": 2,
    "tertiary_link": 1,
    "unclassified": 2,
    "residential": 2,
    "living_street": 1,
    "service": 1,
}
#: Lanes of a one-way road with no ``lanes``, by class (the same assumption: a motorway or
#: trunk carriageway has two, any other one-way road one).
ONEWAY_CLASS_LANES: Final[dict[str, int]] = {"motorway": 2, "trunk": 2}
#: Lanes of a road with no ``lanes`` and a class in neither table.
DEFAULT_LANES: Final = 1
#: Height of one storey, m: what 3D renderers of OpenStreetMap take a ``building:levels``
#: as (OSM Buildings' GeoJSON reader, ``METERS_PER_LEVEL = 3``), a typical floor-to-floor
#: height of housing and offices.
STOREY_HEIGHT_M: Final = 3.0
#: Height of a building with neither ``height_m`` nor ``levels``, m: the height the viewer,
#: its map styles (``api/styles.py``) and pydeck maps extrude such a building by.
DEFAULT_BUILDING_HEIGHT_M: Final = 10.0


def number_or_none(value: object) -> float | None:
    """Return an attribute as a finite float, or None when it holds no number.

    Parameters
    ----------
    value
        None, NaN, ``pandas.NA``, a Python or numpy number, or a string holding a number
        (``"12"``, ``" 3.5 "``). Booleans are not numbers here.

    Returns
    -------
    float or None
        The number; None for a missing value, text that is not a number, or an infinity.
    """
    if _is_missing(value) or isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str | bytes):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _positive(value: object) -> float | None:
    number = number_or_none(value)
    return number if number is not None and number > 0 else None


def road_speed_kmh(maxspeed: object, road_class: object = None) -> float:
    """Return the speed a road is driven at, km/h, as the routing SQL takes it.

    Parameters
    ----------
    maxspeed
        The road's speed limit: km/h as a number (any kind, or a numeric string), or an
        OpenStreetMap ``maxspeed`` value (``"30 mph"``, ``"DE:urban"``, read by
        :func:`parse_maxspeed`); None, NaN and ``pandas.NA`` are missing.
    road_class
        The road's class (``"residential"``); None or unknown when missing.

    Returns
    -------
    float
        ``maxspeed`` when it is a positive speed, else the class's speed
        (:data:`CLASS_SPEED_KMH`), else :data:`DEFAULT_SPEED_KMH`: the
        ``COALESCE(r.maxspeed, s.speed_kmh, p.default_speed_kmh)`` of ``routing_edges_all``
        (migrations 0002 and 0010), without the live speed and the profile's factor.
    """
    speed = _positive(maxspeed)
    if speed is None and isinstance(maxspeed, str):
        speed = parse_maxspeed(maxspeed)
    if speed is not None:
        return speed
    if isinstance(road_class, str) and road_class in CLASS_SPEED_KMH:
        return float(CLASS_SPEED_KMH[road_class])
    return DEFAULT_SPEED_KMH


def road_lanes(lanes: object, road_class: object = None, oneway: object = False) -> int:
    """Return a road's number of lanes (both directions of a two-way road), with defaults.

    Parameters
    ----------
    lanes
        The road's ``lanes``: a number (any kind, or a numeric string; a fraction is
        rounded); None, NaN and ``pandas.NA`` are missing, as are zero and negatives.
    road_class
        The road's class; None or unknown when missing.
    oneway
        Whether the road is one-way (a missing value is two-way).

    Returns
    -------
    int
        ``lanes`` rounded, when at least 1; else, for a one-way road,
        :data:`ONEWAY_CLASS_LANES` of the class or 1; for a two-way road :data:`CLASS_LANES`
        of the class; else :data:`DEFAULT_LANES`.
    """
    number = _positive(lanes)
    if number is not None and round(number) >= 1:
        return round(number)
    road_class = road_class if isinstance(road_class, str) else ""
    if _is_oneway(oneway):
        return ONEWAY_CLASS_LANES.get(road_class, 1)
    return CLASS_LANES.get(road_class, DEFAULT_LANES)


def lanes_per_direction(lanes: object, road_class: object = None, oneway: object = False) -> int:
    """Return the lanes a road has in each direction it is driven in.

    Parameters
    ----------
    lanes, road_class, oneway
        As for :func:`road_lanes`.

    Returns
    -------
    int
        :func:`road_lanes` for a one-way road; half of it (rounded down, at least 1) for a
        two-way road, whose ``lanes`` counts both directions (OpenStreetMap, "Key:lanes").
    """
    total = road_lanes(lanes, road_class, oneway)
    return total if _is_oneway(oneway) else max(total // 2, 1)


def _is_oneway(value: object) -> bool:
    if _is_missing(value):
        return False
    if isinstance(value, str):
        return value.strip().lower() in {"yes", "true", "1", "-1"}
    return bool(value)


def building_height_m(height_m: object, levels: object = None) -> float:
    """Return a building's height, m, from its height, else its storeys.

    Parameters
    ----------
    height_m
        Height, m (any number kind, or a numeric string); None, NaN, ``pandas.NA``, zero
        and negatives are missing.
    levels
        Storeys above ground (the same kinds); missing likewise.

    Returns
    -------
    float
        ``height_m``; else ``levels`` times :data:`STOREY_HEIGHT_M` (3 m, OSM Buildings'
        storey); else :data:`DEFAULT_BUILDING_HEIGHT_M`.
    """
    height = _positive(height_m)
    if height is not None:
        return height
    storeys = _positive(levels)
    if storeys is not None:
        return storeys * STOREY_HEIGHT_M
    return DEFAULT_BUILDING_HEIGHT_M


def _numeric(values: pd.Series[Any] | None, index: pd.Index[Any]) -> pd.Series[Any]:
    """Read a Series as positive floats (NaN where missing or not a positive number)."""
    if values is None:
        return pd.Series(np.nan, index=index, dtype=float)
    numeric = pd.to_numeric(values.astype(object), errors="coerce").astype(float)
    return numeric.where(numeric > 0)


def road_speeds_kmh(
    maxspeed: pd.Series[Any], road_class: pd.Series[Any] | None = None
) -> pd.Series[Any]:
    """Return :func:`road_speed_kmh` of every road, vectorised.

    Parameters
    ----------
    maxspeed
        Speed limits, shape (n,): numbers in km/h (any dtype, nullable ones too) or numeric
        strings; anything else is missing.
    road_class
        Road classes, shape (n,), aligned with ``maxspeed``; None when unknown.

    Returns
    -------
    pandas.Series
        Speeds, km/h, float, shape (n,), same index as ``maxspeed``.
    """
    speed = _numeric(maxspeed, maxspeed.index)
    if road_class is not None:
        speed = speed.fillna(road_class.map(CLASS_SPEED_KMH).astype(float))
    return speed.fillna(DEFAULT_SPEED_KMH)


def road_lanes_series(
    lanes: pd.Series[Any],
    road_class: pd.Series[Any] | None = None,
    oneway: pd.Series[Any] | None = None,
) -> pd.Series[Any]:
    """Return :func:`road_lanes` of every road, vectorised.

    Parameters
    ----------
    lanes
        Lane counts, shape (n,), any dtype; missing, zero or negative is missing.
    road_class
        Road classes, shape (n,), aligned with ``lanes``; None when unknown.
    oneway
        One-way flags, shape (n,), aligned with ``lanes``; None (or a missing flag) is
        two-way.

    Returns
    -------
    pandas.Series
        Lanes, int64, shape (n,), same index as ``lanes``.
    """
    count = _numeric(lanes, lanes.index).round()
    count = count.where(count >= 1)
    classes = road_class if road_class is not None else pd.Series(None, index=lanes.index)
    one_way = (
        oneway.map(_is_oneway).astype(bool)
        if oneway is not None
        else pd.Series(False, index=lanes.index)
    )
    two_way_default = classes.map(CLASS_LANES).astype(float).fillna(DEFAULT_LANES)
    one_way_default = classes.map(ONEWAY_CLASS_LANES).astype(float).fillna(1)
    count = count.fillna(one_way_default.where(one_way, two_way_default))
    return count.astype("int64")


def building_heights_m(
    height_m: pd.Series[Any] | None, levels: pd.Series[Any] | None = None
) -> pd.Series[Any]:
    """Return :func:`building_height_m` of every building, vectorised.

    Parameters
    ----------
    height_m
        Heights, m, shape (n,), any dtype; None when the layer has no such column.
    levels
        Storeys, shape (n,), aligned with ``height_m``; None when the layer has no such
        column. One of the two must be given.

    Returns
    -------
    pandas.Series
        Heights, m, float, shape (n,), same index as the given Series.

    Raises
    ------
    ValueError
        When neither Series is given.
    """
    given = height_m if height_m is not None else levels
    if given is None:
        raise ValueError("give height_m or levels")
    height = _numeric(height_m, given.index)
    storeys = _numeric(levels, given.index)
    return height.fillna(storeys * STOREY_HEIGHT_M).fillna(DEFAULT_BUILDING_HEIGHT_M)
