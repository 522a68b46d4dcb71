"""Attribute fallbacks: speed limits, lanes and heights read through ``layers.defaults``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from layers import defaults
from layers.database import get_engine
from layers.defaults import (
    building_height_m,
    building_heights_m,
    lanes_per_direction,
    parse_maxspeed,
    road_lanes,
    road_lanes_series,
    road_speed_kmh,
    road_speeds_kmh,
)

MISSING = [None, float("nan"), np.nan, pd.NA, np.float64("nan"), "", "  "]


@pytest.mark.parametrize(
    ("value", "kmh"),
    [
        ("50", 50.0),
        ("50 km/h", 50.0),
        (" 80 ", 80.0),
        ("30 mph", 48.3),
        ("30mph", 48.3),
        ("10 knots", 18.5),
        ("walk", 7.0),
        ("50;30", 50.0),  # several values: the first
        ("30 mph;20 mph", 48.3),
        ("DE:urban", 50.0),
        ("DE:rural", 100.0),
        ("DE:motorway", 130.0),  # no general limit: the advisory speed
        ("DE:living_street", 7.0),  # Schrittgeschwindigkeit
        ("DE:bicycle_road", 30.0),
        ("RU:urban", 60.0),
        ("RU:rural", 90.0),
        ("RU:motorway", 110.0),
        ("RU:living_street", 20.0),
        ("FR:urban", 50.0),
        ("FR:rural", 80.0),
        ("fr:Rural", 80.0),
        ("IT:motorway", 130.0),
        ("PL:motorway", 140.0),
        ("AT:rural", 100.0),
        ("GB:nsl_single", 96.6),  # 60 mph
        ("GB:nsl_dual", 112.7),  # 70 mph
        ("GB:motorway", 112.7),
        ("GB:nsl_restricted", 48.3),  # 30 mph
        ("CN:urban", 50.0),
        ("CN:rural", 70.0),
        ("CN:motorway", 120.0),
        ("JP:urban", 60.0),  # Japan's general limit
        ("JP:motorway", 100.0),
        ("KR:urban", 50.0),
        ("KR:motorway", 80.0),
        ("US-CA:urban", 40.2),  # California 25 mph
        ("US-TX:rural", 96.6),  # Texas 60 mph
        ("US:rural", 88.5),  # the most common of the states: 55 mph
        ("DE-BY:rural", 100.0),  # a subdivision not in the table is its country
        ("DE:zone30", 30.0),
        ("DE:zone:30", 30.0),
        ("DE:zone20", 20.0),
        ("XX:zone30", 30.0),
        ("XX:zone20", 20.0),
        ("zone30", 30.0),
        ("DE:30", 30.0),
        ("XX:urban", 50.0),  # unknown country: the generic value
        ("XX:rural", 90.0),
        ("XX:motorway", 120.0),
        ("XX:living_street", 20.0),
        ("CY:rural", 90.0),  # the data set has only Cyprus's urban limit: the generic value
        (50, 50.0),
        (np.int64(40), 40.0),
        (np.float32(30.0), 30.0),
    ],
)
def test_parse_maxspeed(value: object, kmh: float) -> None:
    assert parse_maxspeed(value) == pytest.approx(kmh)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [*MISSING, "none", "signals", "variable", "NONE", "fast", "0", "-5", "DE:foo", True, ":"],
)
def test_parse_maxspeed_without_a_number(value: object) -> None:
    assert parse_maxspeed(value) is None  # type: ignore[arg-type]


def test_every_eu_country_and_the_others_asked_for_are_in_the_table() -> None:
    eu = [
        "AT",
        "BE-BRU",
        "BE-VLG",
        "BE-WAL",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    ]
    for code in [*eu, "GB", "RU", "CN", "US", "JP", "KR"]:
        assert defaults.IMPLICIT_MAXSPEED_KMH[code], code
        for kind in ("urban", "rural", "motorway", "living_street", "zone30"):
            speed = parse_maxspeed(f"{code}:{kind}")
            assert speed is not None and 5 <= speed <= 150, (code, kind)


@pytest.mark.parametrize("missing", MISSING)
def test_missing_attributes_take_the_documented_defaults(missing: object) -> None:
    assert road_speed_kmh(missing, "residential") == 30.0
    assert road_speed_kmh(missing, "motorway") == 110.0
    assert road_speed_kmh(missing, missing) == defaults.DEFAULT_SPEED_KMH
    assert road_speed_kmh(missing, "no such class") == defaults.DEFAULT_SPEED_KMH
    assert road_lanes(missing, "primary") == 2
    assert road_lanes(missing, "primary", oneway=True) == 1
    assert road_lanes(missing, "motorway", oneway=True) == 2
    assert road_lanes(missing, missing, missing) == defaults.DEFAULT_LANES
    assert building_height_m(missing, 4) == 12.0
    assert building_height_m(missing, missing) == defaults.DEFAULT_BUILDING_HEIGHT_M


def test_given_attributes_of_any_kind_are_read() -> None:
    assert road_speed_kmh(np.float64(45.0), "residential") == 45.0
    assert road_speed_kmh("45", "residential") == 45.0
    assert road_speed_kmh("30 mph", "residential") == 48.3
    assert road_speed_kmh("RU:urban", None) == 60.0
    assert road_speed_kmh(0, "service") == 15.0  # zero is no speed
    assert road_lanes(np.int64(3), "residential") == 3
    assert road_lanes("4", None) == 4
    assert road_lanes(2.6, None) == 3
    assert road_lanes(0, "service") == 1
    assert lanes_per_direction(4, "primary") == 2
    assert lanes_per_direction(None, "residential") == 1
    assert lanes_per_direction(3, "primary", oneway=True) == 3
    assert building_height_m(np.float32(21.5), 2) == 21.5
    assert building_height_m("15", None) == 15.0
    assert building_height_m(0, "2") == 6.0
    assert building_height_m(None, pd.array([5], dtype="Int64")[0]) == 15.0


def test_series_match_the_scalar_functions() -> None:
    maxspeed = pd.Series([None, 50, "40", 0, pd.NA, np.nan, "x"], dtype=object)
    classes = pd.Series(["residential", "primary", None, "motorway", "x", "service", None])
    expected = [road_speed_kmh(m, c) for m, c in zip(maxspeed, classes, strict=True)]
    assert road_speeds_kmh(maxspeed, classes).tolist() == expected
    assert road_speeds_kmh(pd.Series([None, 60.0])).tolist() == [30.0, 60.0]
    lanes = pd.array([None, 3, 0, None, 2], dtype="Int64")
    lane_classes = pd.Series(["primary", "primary", "service", "motorway", None])
    oneway = pd.Series([False, False, None, True, True], dtype=object)
    got = road_lanes_series(pd.Series(lanes), lane_classes, oneway)
    assert got.tolist() == [
        road_lanes(n, c, o) for n, c, o in zip(lanes, lane_classes, oneway, strict=True)
    ]
    height = pd.Series([None, 12.5, np.nan, "7", 0.0])
    levels = pd.Series(pd.array([3, None, None, 2, 4], dtype="Int64"))
    heights = building_heights_m(height, levels)
    assert heights.tolist() == [9.0, 12.5, 10.0, 7.0, 12.0]
    assert building_heights_m(None, levels).tolist() == [9.0, 10.0, 10.0, 6.0, 12.0]
    with pytest.raises(ValueError, match="height_m or levels"):
        building_heights_m(None, None)


def test_class_speeds_are_the_routing_sql_s(sample_db: str) -> None:
    # Python and the routing SQL (routing_speeds, routing_profiles) fall back to one table
    with get_engine(sample_db).connect() as conn:
        speeds: dict[str, float] = dict(
            conn.execute(sa.text("SELECT class, speed_kmh FROM routing_speeds")).all()
        )
        default = conn.execute(
            sa.text("SELECT default_speed_kmh FROM routing_profiles WHERE profile = 'car'")
        ).scalar_one()
        free_flow: dict[str, float] = dict(
            conn.execute(
                sa.text(
                    "SELECT DISTINCT e.road_id, e.speed_kmh FROM routing_edges_all e "
                    "JOIN roads r ON r.id = e.road_id AND r.valid_to IS NULL "
                    "WHERE e.profile = 'car' AND r.maxspeed IS NULL"
                )
            ).all()
        )
        roads: dict[str, str] = dict(
            conn.execute(
                sa.text("SELECT id, class FROM roads WHERE maxspeed IS NULL AND valid_to IS NULL")
            ).all()
        )
    assert speeds == {k: float(v) for k, v in defaults.CLASS_SPEED_KMH.items()}
    assert default == defaults.DEFAULT_SPEED_KMH
    assert free_flow, "the sample city has roads without a maxspeed"
    for road_id, speed in free_flow.items():
        assert road_speed_kmh(None, roads[road_id]) == pytest.approx(speed)
