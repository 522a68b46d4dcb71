"""``twin scenarios``: make, edit, show and delete scenarios from the shell; clear refusals."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import shapely

from layers import scenarios
from layers.queries import read_layer
from tests.twin.test_cli import run, table_rows


def feature(feature_id: str, geometry: shapely.Geometry, **properties: object) -> dict:
    return {
        "type": "Feature",
        "id": feature_id,
        "geometry": shapely.geometry.mapping(geometry),
        "properties": properties,
    }


def test_a_scenario_is_made_edited_shown_and_deleted(routing_db: str, tmp_path: Path) -> None:
    name = f"cli-{secrets.token_hex(3)}"
    made = run(routing_db, "scenarios", "create", name, "--title", "新消防站", "--author", "cli")
    assert made.returncode == 0, made.stderr
    station = feature("cli-station", shapely.Point(7.4180, 43.7330), kind="fire_station")
    closure = feature("cli-closure", shapely.Point(7.4200, 43.7320), kind="works")
    path = tmp_path / "edits.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [station]}))
    put = run(routing_db, "scenarios", "put", name, "resources", str(path), "--note", "new")
    assert put.returncode == 0, put.stderr
    assert "add resources cli-station (revision 1)" in put.stdout
    (tmp_path / "closure.geojson").write_text(json.dumps(closure))
    assert (
        run(
            routing_db, "scenarios", "put", name, "closures", str(tmp_path / "closure.geojson")
        ).returncode
        == 0
    )
    building = read_layer("buildings", url=routing_db).id.iloc[0]
    retired = run(routing_db, "scenarios", "retire", name, "buildings", building)
    assert retired.returncode == 0 and f"retire buildings {building}" in retired.stdout
    shown = run(routing_db, "scenarios", "show", name, "--json")
    body = json.loads(shown.stdout)
    assert body["edits"] == {"resources": 1, "closures": 1, "buildings": 1}
    assert [e["feature_id"] for e in body["edit_list"]] == ["cli-station", "cli-closure", building]
    listed = run(routing_db, "scenarios", "list")
    assert any(row[0] == name and row[2] == "draft" for row in table_rows(listed.stdout))
    assert run(routing_db, "scenarios", "undo", name, "buildings", building).returncode == 0
    assert scenarios.get(name, url=routing_db).edits == {"resources": 1, "closures": 1}
    assert run(routing_db, "scenarios", "update", name, "--status", "active").returncode == 0
    assert run(routing_db, "scenarios", "delete", name).returncode == 0
    assert name not in {s.name for s in scenarios.list_scenarios(url=routing_db)}


def test_bad_input_is_one_line_naming_file_feature_and_reason(
    routing_db: str, tmp_path: Path
) -> None:
    name = f"cli-{secrets.token_hex(3)}"
    assert run(routing_db, "scenarios", "create", name).returncode == 0
    good = feature("ok", shapely.Point(7.4180, 43.7330), kind="fire_station")
    bad = feature("castle-1", shapely.Point(7.4181, 43.7331), kind="castle")
    mixed = tmp_path / "mixed.geojson"
    mixed.write_text(json.dumps({"type": "FeatureCollection", "features": [good, bad]}))
    not_json = tmp_path / "broken.geojson"
    not_json.write_text("{")
    cases = [
        (("create", "Bad Name"), "name"),
        (("create", name), "exists already"),
        (("create", "other-one", "--settings", "[1]"), "--settings"),
        (("create", "other-one", "--settings", "@/no/such/file"), "cannot read"),
        (("put", name, "resources", str(mixed)), "feature 1 ('castle-1'): kind"),
        (("put", name, "resources", str(not_json)), "not JSON"),
        (("put", name, "castles", str(mixed)), "layer"),
        (("put", "no-such", "resources", str(tmp_path / "none.geojson")), "cannot read"),
        (("retire", name, "buildings", "no-such-building"), "no-such-building"),
        (("show", "no-such"), "no scenario named 'no-such'"),
        (("update", name, "--status", "done"), "status"),
    ]
    for args, says in cases:
        result = run(routing_db, "scenarios", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    # the file with one bad feature stored none of its features
    assert scenarios.get(name, url=routing_db).revision == 0
    scenarios.delete(name, url=routing_db)
