"""Search by name, address and id on the sample city, checked against GeoPandas filters."""

from __future__ import annotations

import unicodedata

import geopandas as gpd
import pytest
import shapely

from layers import access
from layers.errors import AccessError
from layers.queries import read_layer
from layers.search import MAX_TEXT, SearchError, search


def fold(text: str) -> str:
    """Accents off, lower case, blanks collapsed: the oracle's own folding (not the store's)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def named(frame: gpd.GeoDataFrame, *words: str) -> gpd.GeoDataFrame:
    """Rows whose ``name`` holds every word (folded): a plain filter over the layer."""
    names = frame["name"].fillna("").map(fold)
    keep = names.map(lambda name: all(fold(word) in name for word in words))
    return frame[keep]


def grant(role: str, url: str) -> access.Grant:
    """The grant of a signed-in caller holding one role (as tests/api/test_access.py makes)."""
    return access.grant_for(access.Principal(f"search-{role}", (role,), "token"), url=url)


def test_a_fire_station_is_found_by_its_french_name_in_any_case(sample_db: str) -> None:
    resources = read_layer("resources", url=sample_db)
    station = resources[resources["name"] == "Centre de secours principal de la Condamine"]
    assert len(station) == 1 and station["kind"].iloc[0] == "fire_station"
    hits = search(sample_db, "CENTRE de SECOURS principal DE LA condamine")
    top = hits[0]
    assert (top.layer, top.id, top.kind) == ("resources", station["id"].iloc[0], "fire_station")
    assert top.label == "Centre de secours principal de la Condamine" and top.score == 1.0
    point = station.geometry.iloc[0]
    assert (top.lon, top.lat) == pytest.approx((point.x, point.y), abs=1e-7)
    assert top.bbox == pytest.approx((point.x, point.y, point.x, point.y), abs=1e-7)
    # typed without its accents, and in capitals
    for typed, name in (
        ("POSTE DES SPELUGUES", "Poste des Spélugues"),
        ("surete publique de monaco", "Sûreté Publique de Monaco"),
        ("institut monegasque", "Institut Monégasque de Médecine du Sport"),
    ):
        best = search(sample_db, typed, layers=["resources"])[0]
        assert (
            best.label == name and best.id == resources.loc[resources["name"] == name, "id"].iloc[0]
        )


def test_name_hits_of_a_layer_are_the_names_holding_every_word(sample_db: str) -> None:
    resources = read_layer("resources", url=sample_db)
    for words in (("condamine",), ("secours", "FONTVIEILLE"), ("Médecine", "institut")):
        expected = set(named(resources, *words)["id"])
        assert expected, words
        hits = search(sample_db, " ".join(words), layers=["resources"], limit=100)
        assert {hit.id for hit in hits} == expected, words
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_a_street_of_many_segments_is_one_hit(sample_db: str) -> None:
    roads = read_layer("roads", url=sample_db)
    segments = roads[roads["name"].fillna("").map(fold) == "boulevard du larvotto"]
    assert len(segments) > 10
    hits = [
        hit for hit in search(sample_db, "Boulevard du LARVOTTO", limit=20) if hit.layer == "roads"
    ]
    assert len(hits) == 1
    street = hits[0]
    assert street.id is None and street.kind == "street" and street.label == "Boulevard du Larvotto"
    assert street.features == len(segments) and street.score == 1.0
    assert street.bbox == pytest.approx(tuple(segments.total_bounds), abs=1e-7)
    union = shapely.union_all(segments.geometry.to_numpy())
    # a point on the street (to the 7 decimals answered: 1 cm)
    assert union.distance(shapely.Point(street.lon, street.lat)) < 1e-7


def test_two_streets_of_one_name_far_apart_are_two_hits(sample_db: str) -> None:
    roads = read_layer("roads", url=sample_db)
    segments = roads[roads["name"].fillna("").map(fold) == "avenue du port"]  # Monaco, Cap-d'Ail
    hits = [h for h in search(sample_db, "avenue du port", layers=["roads"]) if h.score == 1.0]
    assert len(hits) == 2 and {h.label for h in hits} <= set(segments["name"])
    assert sum(h.features for h in hits) == len(segments)
    boxes = [shapely.box(*h.bbox) for h in hits]
    metric = gpd.GeoSeries(boxes, crs=4326).to_crs(32632)
    assert metric.iloc[0].distance(metric.iloc[1]) > 500  # farther apart than one street's gap


def test_a_feature_is_found_by_its_id(sample_db: str) -> None:
    buildings = read_layer("buildings", url=sample_db)
    building = buildings.iloc[len(buildings) // 2]
    (hit,) = [h for h in search(sample_db, building["id"]) if h.score == 1.0]
    assert (hit.layer, hit.id) == ("buildings", building["id"])
    assert hit.bbox == pytest.approx(tuple(building.geometry.bounds), abs=1e-7)
    assert building.geometry.distance(shapely.Point(hit.lon, hit.lat)) < 1e-7  # on it
    # an OpenStreetMap node by its number, and an intersection by its node id
    stations = search(sample_db, "1866465411")
    assert ("resources", "node/1866465411") in {(h.layer, h.id) for h in stations}
    intersections = read_layer("intersections", url=sample_db)
    node = intersections.iloc[0]
    found = {(h.layer, h.id) for h in search(sample_db, str(node["node_id"]), limit=100)}
    assert ("intersections", node["id"]) in found


def test_a_building_is_found_by_its_address_in_either_order(sample_db: str) -> None:
    buildings = read_layer("buildings", url=sample_db)
    osm = buildings["props"].map(lambda p: p.get("osm") or {})
    street = osm.map(lambda tags: tags.get("addr:street"))
    number = osm.map(lambda tags: tags.get("addr:housenumber"))
    which = buildings[(street == "Rue du Gabian") & (number == "7")]
    assert len(which) == 1
    for typed in ("7 rue du gabian", "Rue du Gabian 7"):
        ids = [h.id for h in search(sample_db, typed, layers=["buildings"])]
        assert ids[0] == which["id"].iloc[0], typed


def test_a_typo_still_finds_the_name(sample_db: str) -> None:
    districts = read_layer("districts", url=sample_db)
    fontvieille = districts.loc[districts["name"] == "Fontvieille", "id"].iloc[0]
    hits = search(sample_db, "fontvielle", layers=["districts"])
    assert hits and hits[0].id == fontvieille


def test_a_caller_never_finds_what_it_may_not_read(sample_db: str) -> None:
    cameras = read_layer("cameras", url=sample_db)
    camera = cameras["id"].iloc[0]
    resources = read_layer("resources", url=sample_db)
    vehicles = set(resources.loc[resources["kind"] == "vehicle", "id"])
    assert vehicles
    public, commander = grant("public", sample_db), grant("emergency_commander", sample_db)
    with access.acting_as(commander):
        assert ("cameras", camera) in {(h.layer, h.id) for h in search(sample_db, camera)}
        seen = {h.id for h in search(sample_db, "fire engine", limit=100)}
        assert seen & vehicles
    with access.acting_as(public):
        # cameras are general (level 1): the public neither finds one by id nor searches them
        assert all(h.layer != "cameras" for h in search(sample_db, camera, limit=100))
        # vehicles are rows classified above their layer: never a hit, by name or by id
        hidden = {h.id for h in search(sample_db, "fire engine", limit=100)}
        assert not hidden & vehicles
        assert not search(sample_db, sorted(vehicles)[0], layers=["resources"])
        for layer in ("cameras", "pipelines", "power_lines"):
            with pytest.raises(AccessError) as refused:
                search(sample_db, "a", layers=[layer])
            assert refused.value.status == 404 and refused.value.parameter == "layers"
        hits = search(sample_db, "monaco", limit=100)
        assert hits and all(access.current().may(h.layer) for h in hits)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "options", "parameter"),
    [
        ("", {}, "q"),
        ("   ", {}, "q"),
        ("x" * (MAX_TEXT + 1), {}, "q"),
        ("a\x00b", {}, "q"),
        ("port", {"limit": 0}, "limit"),
        ("port", {"limit": 101}, "limit"),
        ("port", {"layers": ["nope"]}, "layers"),
        ("port", {"layers": ["live_congestion"]}, "layers"),
        ("port", {"layers": []}, "layers"),
    ],
)
def test_a_bad_search_names_its_parameter(
    sample_db: str, text: str, options: dict[str, object], parameter: str
) -> None:
    with pytest.raises(SearchError) as refused:
        search(sample_db, text, **options)  # type: ignore[arg-type]
    assert refused.value.parameter == parameter


def test_wildcards_are_searched_as_text(sample_db: str) -> None:
    assert search(sample_db, "%") == []  # no name holds a percent sign: not "anything"
    hits = search(sample_db, "_", limit=100)
    assert 0 < len(hits) < 10  # one name in Russian, words joined by underscores
    for hit in hits:
        frame = read_layer(hit.layer, url=sample_db)
        row = frame[frame["id"] == hit.id].iloc[0]
        tags = {**row["props"], **(row["props"].get("osm") or {})}
        names = [v for k, v in tags.items() if k.split(":")[0] == "name" and isinstance(v, str)]
        assert any("_" in name for name in names), hit
