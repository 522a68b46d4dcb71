"""The OSM mapping, on the real Monaco extract."""

from __future__ import annotations

import json

import pytest

from layers.defaults import parse_maxspeed
from layers.osm import read_osm
from tests.conftest import SAMPLE, SHARED

MONACO = SHARED / "monaco" / "monaco-2025.osm.pbf"


@pytest.fixture(scope="module")
def osm() -> dict:
    return read_osm(MONACO)


def test_real_assets_are_all_read(osm: dict) -> None:
    # counts from the data's MANIFEST.md (pyosmium): 16 cameras, 10 gas pipelines, 19 signals
    assert len(osm["cameras"]) == 16
    assert len(osm["pipelines"]) == 10 and set(osm["pipelines"]["network"]) == {"gas"}
    assert len(osm["signals"]) == 19
    wards = osm["districts"][osm["districts"]["level"] == 10]
    assert len(wards) == 9 and "Monte-Carlo" in set(wards["name"])  # Monaco's nine quartiers
    # MANIFEST.md: 1,576 building ways + 31 relations; each mapped one is a sample building
    sample = json.loads((SAMPLE / "buildings.geojson").read_text())["features"]
    assert len(osm["buildings"]) == len(sample) <= 1576 + 31
    assert {"fire_station", "hospital", "police"} <= set(osm["resources"]["kind"])
    # three cameras are mapped with a `direction` tag: it is their heading
    mapped = osm["cameras"].set_index("id")["heading"].dropna().to_dict()
    assert mapped == {"node/6459866647": 240.0, "node/6473583428": 160.0, "node/6482706099": 0.0}


def test_road_edges_meet_at_intersections(osm: dict) -> None:
    roads, nodes = osm["roads"], osm["intersections"]
    ids = set(nodes["node_id"])
    assert set(roads["source_node"]) | set(roads["target_node"]) == ids
    point = dict(zip(nodes["node_id"], nodes.geometry))
    for edge in roads.itertuples():
        assert point[edge.source_node].coords[0] == edge.geometry.coords[0]
        assert point[edge.target_node].coords[0] == edge.geometry.coords[-1]


def test_every_signal_sits_on_an_intersection(osm: dict) -> None:
    signals, nodes = osm["signals"], osm["intersections"]
    assert set(signals["node_id"]) <= set(nodes["node_id"])
    on_road = signals[signals["id"] == "node/" + signals["node_id"].astype(str)]
    signalised = set(nodes.loc[nodes["signalised"], "node_id"])
    assert len(on_road) > 0 and set(on_road["node_id"]) <= signalised


def test_oneway_minus_one_is_reversed(osm: dict) -> None:
    roads = osm["roads"]
    reversed_ = roads[[tags.get("oneway") == "-1" for tags in roads["osm"]]]
    assert reversed_["oneway"].all()
    roundabouts = roads[[tags.get("junction") == "roundabout" for tags in roads["osm"]]]
    assert len(roundabouts) > 0 and roundabouts["oneway"].all()


@pytest.mark.parametrize(
    ("tag", "kmh"),
    [("50", 50.0), ("30 mph", 48.3), ("FR:urban", 50.0), ("none", None), (None, None)],
)
def test_parse_maxspeed(tag: str | None, kmh: float | None) -> None:
    assert parse_maxspeed(tag) == kmh


def test_an_unmapped_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="OpenStreetMap has no incidents layer"):
        read_osm(MONACO, ["incidents"])


def test_helsinki_extract_with_ways_leaving_it() -> None:
    # Helsinki.osm.pbf cuts ways at its edge: their outside nodes have no location
    layers = read_osm(SHARED / "helsinki" / "Helsinki.osm.pbf", ["roads", "cameras", "pipelines"])
    assert len(layers["roads"]) > 1000  # MANIFEST.md: 2,650 highway ways, some not for cars
    assert len(layers["cameras"]) == 221  # MANIFEST.md: 221 surveillance cameras
    counts = layers["pipelines"]["network"].value_counts()
    assert (counts["water"], counts["gas"]) == (42, 10) and counts[
        "heat"
    ] >= 20  # MANIFEST: 42, 10, 21
