"""The ``twin`` command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from layers.database import head_revision
from tests.assertions import sql_scalar, table_state

TWIN = [sys.executable, "-m", "twin"]


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TWIN_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run([*TWIN, *args], capture_output=True, text=True, env=env, timeout=120)


def test_ingest_reports_what_it_did(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "cams.csv"
    path.write_text("id,heading,lon,lat\nc1,90,7.42,43.73\nc2,180,7.421,43.731\n")
    result = run(empty_db, "ingest", "cameras", str(path))
    assert result.returncode == 0, result.stderr
    assert "cameras: 2 read, 2 added, 0 changed, 0 unchanged, 0 retired" in result.stdout
    assert sql_scalar(empty_db, "SELECT count(*) FROM cameras") == 2


def test_bad_file_names_file_row_field_and_reason(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "roads.geojson"
    features = [
        {
            "type": "Feature",
            "properties": {"id": "a", "source_node": 1, "target_node": 2, "class": "primary"},
            "geometry": {"type": "LineString", "coordinates": [[7.42, 43.73], [7.421, 43.731]]},
        },
        {
            "type": "Feature",
            "properties": {"id": "b", "source_node": 2, "target_node": 3},
            "geometry": {"type": "LineString", "coordinates": [[7.421, 43.731], [7.422, 43.732]]},
        },
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    before = table_state(empty_db, "roads")
    result = run(empty_db, "ingest", "roads", str(path))
    assert result.returncode == 1
    assert f"{path}: feature 2: field 'class': required attribute is missing" in result.stderr
    assert "rejected: nothing was written to roads" in result.stderr
    assert "Traceback" not in result.stderr
    assert table_state(empty_db, "roads") == before


def test_unknown_layer_is_a_usage_error(empty_db: str, tmp_path: Path) -> None:
    result = run(empty_db, "ingest", "streets", str(tmp_path / "x.geojson"))
    assert result.returncode == 2
    assert "unknown layer 'streets'; known layers: roads" in result.stderr


def test_layers_and_db_status(sample_db: str) -> None:
    result = run(sample_db, "layers")
    assert result.returncode == 0
    counts = {
        line.split("│")[1].strip(): line.split("│")[3].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 4
    }
    assert counts["roads"] == str(sql_scalar(sample_db, "SELECT count(*) FROM roads"))
    status = run(sample_db, "db", "status")
    head = head_revision()
    assert f"database at {head}; newest is {head}" in status.stdout


def test_trace_isolate_and_outage(sample_db: str, tmp_path: Path) -> None:
    import twin

    city = twin.connect(sample_db)
    expected = city.isolate((7.4103408, 43.7335484), network="water")
    result = run(
        sample_db,
        "trace",
        "isolate",
        "water",
        "--point",
        "7.4103408,43.7335484",
        "--geojson",
        str(tmp_path / "lost.geojson"),
    )
    assert result.returncode == 0, result.stderr
    assert f"operate: {', '.join(expected.operate)}" in result.stdout
    assert f"buildings {len(expected.buildings)}" in result.stdout
    lost = json.loads((tmp_path / "lost.geojson").read_text())
    assert len(lost["features"]) == len(expected.lost)
    missed = run(sample_db, "trace", "isolate", "water", "--point", "7,43")
    assert missed.returncode == 2 and "is not on a line of the water network" in missed.stderr
    topology = run(sample_db, "trace", "topology", "gas")
    assert topology.returncode == 0 and "dangling_end" in topology.stdout
    outage = run(sample_db, "trace", "outage", "power", "--operate", "switch/nosuch")
    assert outage.returncode == 2 and "'switch/nosuch' is not a node" in outage.stderr


def test_raster_ingest_and_a_bad_raster(raster_db: str, tmp_path: Path) -> None:
    empty_db = raster_db
    dem = Path(__file__).resolve().parents[2] / "data_samples" / "monaco" / "dem.tif"
    result = run(empty_db, "raster", "ingest", str(dem), "--name", "dem", "--kind", "dem")
    assert result.returncode == 0, result.stderr
    assert "dem: added" in result.stdout
    listed = run(empty_db, "raster", "list")
    assert "dem" in listed.stdout
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    refused = run(
        empty_db, "raster", "ingest", str(bad), "--name", "flood", "--kind", "flood_depth"
    )
    assert refused.returncode == 1
    assert "bad.tif" in refused.stderr and "nothing was written" in refused.stderr
    assert sql_scalar(empty_db, "SELECT count(*) FROM rasters") == 1


def test_signals_export_gives_a_network_sumo_runs(sample_db: str, tmp_path: Path) -> None:
    """The sample city's roads and signals written as a SUMO network; SUMO loads and runs it."""
    import sumolib

    from routing.signals.sumo import sumo_binary

    result = run(sample_db, "signals", "export", str(tmp_path))
    assert result.returncode == 0, result.stderr
    net_file = tmp_path / "twin.net.xml"
    net = sumolib.net.readNet(str(net_file))
    roads = sql_scalar(sample_db, "SELECT count(*) FROM roads WHERE valid_to IS NULL")
    two_way = sql_scalar(
        sample_db, "SELECT count(*) FROM roads WHERE valid_to IS NULL AND NOT oneway"
    )
    loops = sql_scalar(
        sample_db,
        "SELECT sum(CASE WHEN oneway THEN 1 ELSE 2 END) FROM roads "
        "WHERE valid_to IS NULL AND source_node = target_node",
    )
    # every road each way; a loop road is two edges through a middle node
    assert len(net.getEdges(withInternal=False)) == roads + two_way + loops
    signals = sql_scalar(sample_db, "SELECT count(*) FROM signals WHERE valid_to IS NULL")
    assert len(net.getTrafficLights()) == signals
    done = subprocess.run(
        [sumo_binary("sumo"), "-n", str(net_file), "--end", "10"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    missing = run(sample_db, "signals", "export", str(tmp_path), "--plan", "nope")
    assert missing.returncode == 2
    assert "no signal plan named 'nope'" in missing.stderr
