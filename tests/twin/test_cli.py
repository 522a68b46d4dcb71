"""The ``twin`` command line, run as a user runs it: every command's success path, checked in
the store or in the files it writes, and its refusals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sqlalchemy as sa
from pyproj import Geod

from layers.catalog import LAYERS
from layers.database import drop_database, get_engine
from tests.assertions import sql_scalar, table_state
from tests.conditions import served
from tests.conftest import ROOT, SAMPLE, SHARED, _fresh_database

TWIN = [sys.executable, "-m", "twin"]
ACOSTA = SHARED / "bologna" / "acosta" / "run.sumocfg"
# the twin's extent while a Bologna scenario is imported (as tests/api/test_signals.py sets it)
BOLOGNA_EXTENT = "[11.2, 44.4, 11.5, 44.6]"


def run(
    url: str | None, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"COLUMNS": "200"} | (env or {})
    if url is not None:
        environment["TWIN_DATABASE_URL"] = url
    return subprocess.run(
        [*TWIN, *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the rich tables in a command's output, as lists of cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


def sql_rows(url: str, query: str, **params: object) -> list[tuple]:
    with get_engine(url).connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query), params)]


def geojson_count(path: Path) -> int:
    return len(json.loads(path.read_text())["features"])


# --- db ---------------------------------------------------------------------------------------


def migrations_head() -> str:
    """The newest revision, read from the migration files: the one no other revises."""
    revisions, downs = set(), set()
    for path in (ROOT / "layers" / "migrations" / "versions").glob("*.py"):
        text = path.read_text()
        revisions.add(re.search(r'^revision = "(\w+)"', text, re.M).group(1))  # type: ignore[union-attr]
        down = re.search(r'^down_revision = "(\w+)"', text, re.M)
        if down:
            downs.add(down.group(1))
    (head,) = revisions - downs
    return head


def database_exists(url: str) -> bool:
    name = sa.engine.make_url(url).database
    admin = sa.engine.make_url(url).set(database="postgres").render_as_string(hide_password=False)
    return bool(sql_rows(admin, "SELECT 1 FROM pg_database WHERE datname = :n", n=name))


def test_db_upgrade_creates_and_migrates_a_database_and_status_reads_it() -> None:
    url = _fresh_database("_cli_upgrade")  # this run's name, dropped at the session's end
    drop_database(url)
    assert not database_exists(url)
    missing = run(url, "db", "status")
    assert missing.returncode == 1 and "cannot read the database" in missing.stderr
    head = migrations_head()
    done = run(url, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"database at revision {head}" in done.stdout
    assert database_exists(url)
    assert sql_scalar(url, "SELECT version_num FROM alembic_version") == head
    tables = {
        name
        for (name,) in sql_rows(
            url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert {layer.table for layer in LAYERS.values()} | {"rasters"} <= tables
    status = run(url, "db", "status")
    assert status.returncode == 0, status.stderr
    assert f"database at {head}; newest is {head}" in status.stdout
    again = run(url, "db", "upgrade")  # idempotent
    assert again.returncode == 0 and f"database at revision {head}" in again.stdout


# --- layers -----------------------------------------------------------------------------------


def test_ingest_reports_what_it_did(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "cams.csv"
    path.write_text("id,heading,lon,lat\nc1,90,7.42,43.73\nc2,180,7.421,43.731\n")
    result = run(empty_db, "ingest", "cameras", str(path))
    assert result.returncode == 0, result.stderr
    assert "cameras: 2 read, 2 added, 0 changed, 0 unchanged, 0 retired" in result.stdout
    assert sql_rows(empty_db, "SELECT id, heading FROM cameras ORDER BY id") == [
        ("c1", 90.0),
        ("c2", 180.0),
    ]


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
    assert f"{path}: feature 2 (b): field 'class': required attribute is missing" in result.stderr
    assert "rejected: nothing was written to roads" in result.stderr
    assert "Traceback" not in result.stderr
    assert table_state(empty_db, "roads") == before


def test_unknown_layer_is_a_usage_error(empty_db: str, tmp_path: Path) -> None:
    result = run(empty_db, "ingest", "streets", str(tmp_path / "x.geojson"))
    assert result.returncode == 2
    assert "unknown layer 'streets'; known layers: roads" in result.stderr


def test_layers_and_db_status(sample_db: str) -> None:
    result = run(sample_db, "layers")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    counts = {layer: int(features) for layer, _geometry, features in rows}
    assert len(rows) == len(counts) == len(LAYERS)
    assert counts == {
        layer.id: sql_scalar(
            sample_db, f"SELECT count(*) FROM {layer.table} WHERE valid_to IS NULL"
        )
        for layer in LAYERS.values()
    }
    status = run(sample_db, "db", "status")
    head = migrations_head()
    assert f"database at {head}; newest is {head}" in status.stdout


def test_sample_load_imports_every_file_once(tmp_path: Path) -> None:
    url = _fresh_database("_cli_sample")
    result = run(url, "sample", "load", timeout=300)
    assert result.returncode == 0, result.stderr
    for layer in LAYERS.values():
        n = geojson_count(SAMPLE / f"{layer.id}.geojson")
        assert f"{layer.id}: {n} read, {n} added, 0 changed, 0 unchanged, 0 retired" in (
            result.stdout
        )
        assert sql_scalar(url, f"SELECT count(*) FROM {layer.table} WHERE valid_to IS NULL") == n
    assert sql_rows(url, "SELECT name, kind FROM rasters") == [("dem", "dem")]
    versions = {layer.id: table_state(url, layer.id) for layer in LAYERS.values()}
    again = run(url, "sample", "load", timeout=300)
    assert again.returncode == 0, again.stderr
    assert "sample city already loaded (use --force to import again)" in again.stdout
    assert {layer.id: table_state(url, layer.id) for layer in LAYERS.values()} == versions


# --- rasters ----------------------------------------------------------------------------------


def test_raster_ingest_and_list_and_a_bad_raster(raster_db: str, tmp_path: Path) -> None:
    dem = SAMPLE / "dem.tif"
    info = json.loads(
        subprocess.run(
            ["gdalinfo", "-json", str(dem)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    width, height = info["size"]
    crs = f"EPSG:{info['stac']['proj:epsg']}"
    result = run(
        raster_db,
        "raster",
        "ingest",
        str(dem),
        "--name",
        "dem",
        "--kind",
        "dem",
        "--unit",
        "m",
        "--source",
        "srtm",
        "--attribution",
        "SRTM (NASA/USGS), public domain",
    )
    assert result.returncode == 0, result.stderr
    assert f"dem: added (dem, {width}×{height}, {crs})" in result.stdout
    credited = "SELECT attribution FROM data_sources WHERE source = 'srtm'"
    assert sql_scalar(raster_db, credited) == "SRTM (NASA/USGS), public domain"
    listed = run(raster_db, "raster", "list")
    assert listed.returncode == 0, listed.stderr
    assert [row[:6] for row in table_rows(listed.stdout)] == [
        ["dem", "dem", str(width), str(height), crs, "m"]
    ]
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    refused = run(
        raster_db, "raster", "ingest", str(bad), "--name", "flood", "--kind", "flood_depth"
    )
    assert refused.returncode == 1
    assert "bad.tif" in refused.stderr and "nothing was written" in refused.stderr
    assert sql_scalar(raster_db, "SELECT count(*) FROM rasters") == 1


# --- utility traces ---------------------------------------------------------------------------


def test_trace_topology_counts_what_the_store_holds(sample_db: str) -> None:
    result = run(sample_db, "trace", "topology", "water")
    assert result.returncode == 0, result.stderr
    found = re.search(
        r"water: (\d+) lines, (\d+) nodes, \d+ pieces, \d+ segments, (\d+) valves/switches, "
        r"(\d+) sources",
        result.stdout,
    )
    assert found, result.stdout
    lines, nodes, valves, sources = map(int, found.groups())

    def current(table: str, where: str) -> int:
        query = f"SELECT count(*) FROM {table} WHERE valid_to IS NULL AND network = 'water'"
        return sql_scalar(sample_db, f"{query} {where}")

    assert lines == current("pipelines", "")
    assert nodes == current("pipe_nodes", "")
    assert valves == current("pipe_nodes", "AND kind = 'valve'")
    assert sources == current("pipe_nodes", "AND kind = 'source'")
    gas = run(sample_db, "trace", "topology", "gas")
    assert gas.returncode == 0 and "dangling_end" in gas.stdout


def test_trace_isolate(sample_db: str, tmp_path: Path) -> None:
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
    assert geojson_count(tmp_path / "lost.geojson") == len(expected.lost)
    missed = run(sample_db, "trace", "isolate", "water", "--point", "7,43")
    assert missed.returncode == 2 and "is not on a line of the water network" in missed.stderr


def test_trace_outage_of_a_transformer_and_what_goes_dark(sample_db: str, tmp_path: Path) -> None:
    import twin

    # the busiest transformer that also feeds a signal: its supply points name it (the sample's
    # consumers carry props.transformer), and its switch is switch/<the same OSM node>
    feeds = twin.connect(sample_db).utilities.dependents()
    feeding_signals = set(feeds.loc[feeds["layer"] == "signals", "fed_by"].dropna())
    consumers = dict(
        sql_rows(
            sample_db,
            "SELECT props->>'transformer', count(*) FROM power_nodes "
            "WHERE valid_to IS NULL AND kind = 'consumer' GROUP BY 1",
        )
    )
    transformer = max(sorted(feeding_signals), key=lambda t: consumers.get(t, 0))
    assert consumers.get(transformer, 0) > 0, "a transformer feeding a signal feeds buildings"
    switch = "switch/" + transformer.removeprefix("transformer/")
    population = sql_scalar(
        sample_db,
        "SELECT coalesce(sum(b.population), 0) FROM power_nodes p JOIN buildings b "
        "ON b.id = p.props->>'building' AND b.valid_to IS NULL "
        "WHERE p.valid_to IS NULL AND p.kind = 'consumer' AND p.props->>'transformer' = :t",
        t=transformer,
    )
    lost_file = tmp_path / "lost.geojson"
    result = run(
        sample_db, "trace", "outage", "power", "--operate", switch, "--geojson", str(lost_file)
    )
    assert result.returncode == 0, result.stderr
    assert f"operate: {switch}" in result.stdout
    figures = dict(
        re.findall(
            r"(\w+) ([\d.]+)", next(li for li in result.stdout.splitlines() if "lost_" in li)
        )
    )
    assert int(figures["buildings"]) == consumers[transformer]
    assert int(figures["population"]) == population
    # the lost pieces written out measure what the summary says (geodesic length, WGS84)
    lost = json.loads(lost_file.read_text())["features"]
    geod = Geod(ellps="WGS84")
    length = sum(
        geod.line_length(*zip(*feature["geometry"]["coordinates"], strict=True)) for feature in lost
    )
    assert length == pytest.approx(float(figures["lost_length_m"]), rel=1e-3)
    dark = {row[1] for row in table_rows(result.stdout)}  # layer, id, kind, network, fed_by
    assert dark == set(feeds.loc[feeds["fed_by"] == transformer, "id"]) and dark
    refused = run(sample_db, "trace", "outage", "power", "--operate", "switch/nosuch")
    assert refused.returncode == 2 and "'switch/nosuch' is not a node" in refused.stderr


# --- traffic signals --------------------------------------------------------------------------


def acosta_net_file() -> Path:
    net_file = ET.parse(ACOSTA).getroot().find("input/net-file").get("value")  # type: ignore[union-attr]
    return ACOSTA.parent / str(net_file)


def acosta_net() -> ET.Element:
    return ET.parse(acosta_net_file()).getroot()


def test_signals_import_brings_the_scenario_into_the_twin() -> None:
    url = _fresh_database("_cli_signals")
    net = acosta_net()
    edges = [e for e in net.iter("edge") if e.get("function") is None]  # not internal
    junctions = [j for j in net.iter("junction") if j.get("type") != "internal"]
    signalised = [j for j in junctions if j.get("type", "").startswith("traffic_light")]
    tls = {logic.get("id") for logic in net.iter("tlLogic")}
    result = run(url, "signals", "import", str(ACOSTA), env={"TWIN_CITY_BBOX": BOLOGNA_EXTENT})
    assert result.returncode == 0, result.stderr
    for layer, n in (
        ("roads", len(edges)),
        ("intersections", len(junctions)),
        ("signals", len(tls)),
    ):
        assert f"{layer}: {n} read, {n} added, 0 changed" in result.stdout
    source = "sumo:acosta"
    assert {
        row[0] for row in sql_rows(url, "SELECT id FROM roads WHERE source = :s", s=source)
    } == {f"acosta:{e.get('id')}" for e in edges}
    assert sql_scalar(
        url, "SELECT count(*) FROM intersections WHERE source = :s AND signalised", s=source
    ) == len(signalised)
    assert {
        row[0] for row in sql_rows(url, "SELECT id FROM signals WHERE source = :s", s=source)
    } == {f"acosta:tls:{t}" for t in tls}


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
        [sumo_binary("sumo"), "-n", str(net_file), "--end", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    missing = run(sample_db, "signals", "export", str(tmp_path), "--plan", "nope")
    assert missing.returncode == 2
    assert "no signal plan named 'nope'" in missing.stderr


def test_signals_optimise_writes_a_plan_sumo_runs(tmp_path: Path) -> None:
    from routing.signals.sumo import sumo_binary

    net = acosta_net()
    tls = {logic.get("id") for logic in net.iter("tlLogic")}
    links = {
        t: 1
        + max(int(c.get("linkIndex", "-1")) for c in net.iter("connection") if c.get("tl") == t)
        for t in tls
    }
    out = tmp_path / "plan.add.xml"
    result = run(None, "signals", "optimise", str(ACOSTA), "--greenwave", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = {row[0]: row for row in table_rows(result.stdout)}
    assert set(rows) == tls  # signal, cycle, offset, greens, Y, x, delay: one row a signal
    logics = {logic.get("id"): logic for logic in ET.parse(out).getroot().iter("tlLogic")}
    assert set(logics) == tls
    for signal_id, logic in logics.items():
        assert logic.get("programID") == "twin"
        phases = logic.findall("phase")
        assert {len(p.get("state", "")) for p in phases} == {links[signal_id]}
        cycle = sum(float(p.get("duration", "nan")) for p in phases)
        assert cycle == pytest.approx(float(rows[signal_id][1]))
        assert float(logic.get("offset", "nan")) == pytest.approx(
            float(rows[signal_id][2]), abs=0.1
        )
    waves = re.findall(r"green wave ([\w >]+): cycle ([\d.]+) s", result.stdout)
    assert waves, "acosta's signals stand in corridors: --greenwave coordinates them"
    for members, cycle in waves:
        assert {float(rows[s][1]) for s in members.split(" > ")} == {float(cycle)}
    assert f"wrote {out}" in result.stdout
    done = subprocess.run(
        [sumo_binary("sumo"), "-n", str(acosta_net_file()), "-a", str(out), "--end", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_signals_optimise_designs_phases_and_stores_them(empty_db: str, tmp_path: Path) -> None:
    """--phases: new phase sequences where warranted, written for SUMO and stored in the twin."""
    pasubio = SHARED / "bologna" / "pasubio" / "run.sumocfg"
    out = tmp_path / "phased.add.xml"
    args = ("signals", "optimise", str(pasubio), "--base", "network", "--phases")
    result = run(empty_db, *args, "--out", str(out), "--save", "pasubio-phased")
    assert result.returncode == 0, result.stderr
    changed = re.search(r"new phases: (.+)", result.stdout)
    assert changed is not None, result.stdout
    named = changed.group(1).split(", ")
    assert "stored plan pasubio-phased version 1" in result.stdout
    (plan,) = sql_rows(
        empty_db, "SELECT plan FROM signal_plans WHERE name = 'pasubio-phased' AND valid_to IS NULL"
    )[0]
    assert plan["phasing"]["changed"] == named
    written = {
        logic.get("id"): [p.get("state") for p in logic.iter("phase")]
        for logic in ET.parse(out).getroot().iter("tlLogic")
    }
    stored = {t["signal"]: [p["state"] for p in t["phases"]] for t in plan["signals"]}
    assert written == stored
    # a changed signal runs a sequence the network's default program does not have
    net = ET.parse(SHARED / "bologna" / "pasubio" / "pasubio_buslanes.net.xml").getroot()
    default = {
        logic.get("id"): [p.get("state") for p in logic.iter("phase")]
        for logic in net.iter("tlLogic")
    }
    assert all(written[sid] != default[sid] for sid in named)
    both = run(None, *args, "--greenwave")
    assert both.returncode == 2
    assert "--phases and --greenwave" in both.stderr


def test_signals_evaluate_reports_what_sumo_measured(tmp_path: Path) -> None:
    out, workdir = tmp_path / "result.json", tmp_path / "runs"
    # a tiny horizon, one seed; a fixed plan, Webster and a controller in the loop
    horizon, variants = 120, ("scenario", "webster", "adaptive+priority")
    result = run(
        None,
        "signals",
        "evaluate",
        str(ACOSTA),
        "--seeds",
        "1",
        "--end",
        str(horizon),
        "--variants",
        ",".join(variants),
        "--json",
        str(out),
        "--workdir",
        str(workdir),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"[{len(variants)}/{len(variants)}]" in result.stderr  # progress: one run a variant
    body = json.loads(out.read_text())
    assert body["seeds"] == [1] and body["end"] == horizon and set(body["summary"]) == set(variants)
    runs = {r["variant"]: r for r in body["runs"]}
    assert set(runs) == set(variants) and len(body["runs"]) == len(variants)
    table = {
        line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()
    }
    for variant in variants:
        # SUMO's own trip records of the run, kept in the workdir: every vehicle that departed
        stem = variant.replace("+", "_")
        trips = list(ET.parse(workdir / f"{stem}-1.tripinfo.xml").getroot().iter("tripinfo"))
        assert trips and all(float(t.get("depart", "nan")) <= horizon for t in trips)
        loss = sum(float(t.get("timeLoss", "nan")) for t in trips) / len(trips)
        assert runs[variant]["vehicles"] == len(trips)
        assert runs[variant]["time_loss_s"] == pytest.approx(loss)
        assert body["summary"][variant]["time_loss_s"]["mean"] == pytest.approx(loss)
        assert table[variant][0] == f"{loss:.1f}"  # the printed table's first figure
    assert f"wrote {out}" in result.stdout


# --- serve ------------------------------------------------------------------------------------


def test_serve_answers_on_the_port_it_bound_and_stops(sample_db: str, tmp_path: Path) -> None:
    env = os.environ | {"TWIN_DATABASE_URL": sample_db}
    command = [*TWIN, "serve", "--host", "127.0.0.1", "--port", "0"]
    with served(command, env=env, log=tmp_path / "serve.log", timeout_s=60, cwd=ROOT) as address:
        assert not address.endswith(":0")
        with urllib.request.urlopen(f"{address}/health", timeout=10) as response:
            assert json.load(response) == {"status": "ok"}
        with urllib.request.urlopen(f"{address}/layers/roads", timeout=30) as response:
            roads = json.load(response)["features"]
        assert roads == sql_scalar(sample_db, "SELECT count(*) FROM roads WHERE valid_to IS NULL")


def test_ingest_reads_a_csv_in_the_encoding_given(empty_db: str, tmp_path: Path) -> None:
    path = tmp_path / "消防站.csv"
    path.write_bytes(
        "id,kind,name,lon,lat\nf1,fire_station,摩纳哥消防站,7.42,43.73\n".encode("gb18030")
    )
    refused = run(empty_db, "ingest", "resources", str(path))
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "--encoding" in refused.stderr
    done = run(empty_db, "ingest", "resources", str(path), "--encoding", "gb18030")
    assert done.returncode == 0, done.stderr
    assert sql_scalar(empty_db, "SELECT name FROM resources WHERE id = 'f1'") == "摩纳哥消防站"


def test_an_osm_file_with_none_of_a_layer_says_so(empty_db: str) -> None:
    """The districts of an extract that cut its boundaries: a warning, not a silent "0 read"."""
    extract = SHARED / "helsinki" / "Helsinki.osm.pbf"
    done = run(
        empty_db, "ingest", "districts", str(extract), env={"TWIN_CITY_BBOX": "[24, 60, 26, 61]"}
    )
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "holds no districts" in done.stderr
    assert "districts: 0 read" in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            [
                "tiles",
                "export",
                "x.pmtiles",
                "--bbox",
                "7.40,43.72,7.45,43.76",
                "--minzoom",
                "12",
                "--maxzoom",
                "13",
                "--url",
                "postgresql://postgres@127.0.0.1:1/x",
            ],
            {},
            "twin: the store cannot be reached: connection failed",
        ),
        (
            ["batch", "accessibility", "--out", "u.parquet", "--workers", "0", "--url", "garbage"],
            {},
            "twin: the database URL (--url or TWIN_DATABASE_URL) is not one",
        ),
        (
            ["serve", "--port", "0"],
            {"TWIN_DATABASE_READ_URLS": "garbage"},
            "twin: setting TWIN_DATABASE_READ_URLS",
        ),
    ],
)
def test_an_unreachable_store_a_bad_url_or_setting_is_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    done = subprocess.run(
        [*TWIN, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ | {"COLUMNS": "300"} | env,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not list(tmp_path.iterdir())  # nothing written


HEAVY = (
    "geopandas",
    "pandas",
    "sqlalchemy",
    "sumolib",
    "networkx",
    "scipy",
    "routing",
    "layers.ingest",
)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["signals", "optimise", "--help"],
        ["signals", "evaluate", "--help"],
        ["tiles", "--help"],
    ],
)
def test_help_loads_none_of_the_heavy_modules(args):
    """``twin ... --help`` prints at once: the CLI imports what a command needs when it runs."""
    probe = (
        "import sys\n"
        "from twin.cli import app\n"
        "try:\n"
        f"    app({args!r}, prog_name='twin')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: twin" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- signals: what cannot run is refused before anything runs (exit 2, one line) -------------


@pytest.fixture(scope="module")
def no_lights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A netgenerate grid with no traffic light, and a flow through it."""
    from tests.routing.test_phasing import grid_scenario

    return grid_scenario(tmp_path_factory.mktemp("no-lights"), tls=None)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--emergency", "85,204[1][1]", "--emergency-depart", "300"], "emergency_depart 300 s"),
        (["--emergency", "85,204[1][1]", "--emergency-depart", "-5"], "emergency_depart must"),
        (["--emergency", "nope,85"], "emergency route: edge nope is not in the network"),
        (["--emergency", "85"], "the emergency route needs at least two edges"),
        (["--end", "0"], "end must be after the scenario's begin"),
        (["--json", "{tmp}/missing/r.json"], "--json {tmp}/missing/r.json: its folder"),
        (["--workdir", "{tmp}/a-file"], "--workdir {tmp}/a-file: is a file, not a folder"),
    ],
)
def test_signals_evaluate_refuses_before_running(
    tmp_path: Path, args: list[str], said: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    end = [] if "--end" in args else ["--end", "300"]
    done = run(None, "signals", "evaluate", str(ACOSTA), "--seeds", "1", *end, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said.replace("{tmp}", str(tmp_path)) in lines[0], done.stderr
    assert "seed 1" not in done.stderr  # no SUMO run started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written


def test_signals_optimise_refuses_an_out_file_in_no_folder(tmp_path: Path) -> None:
    done = run(None, "signals", "optimise", str(ACOSTA), "--out", str(tmp_path / "no" / "p.xml"))
    assert done.returncode == 2, done.stderr
    assert f"--out {tmp_path / 'no' / 'p.xml'}: its folder" in done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["optimise", "evaluate"])
def test_signals_on_a_scenario_without_traffic_lights(
    no_lights: Path, tmp_path: Path, command: str
) -> None:
    # --save would store a plan: the refusal comes first, so no store is ever reached
    extra = ["--save", "none"] if command == "optimise" else ["--end", "100"]
    done = run("postgresql://postgres@127.0.0.1:1/x", "signals", command, str(no_lights), *extra)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == "the scenario has no traffic lights"


def test_signals_evaluate_reports_buses_and_keeps_highs_quiet(tmp_path: Path) -> None:
    """Acosta runs buses: their mean time loss and everyone else's are columns; the green
    waves' solver prints no banner into the table."""
    out = tmp_path / "r.json"
    done = run(
        None,
        "signals",
        "evaluate",
        str(ACOSTA),
        "--seeds",
        "1",
        "--end",
        "300",
        "--variants",
        "scenario,webster+greenwave",
        "--json",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "HiGHS" not in done.stdout + done.stderr
    header = done.stdout.splitlines()[0].split()
    assert header[-2:] == ["bus_time_loss_s", "others_time_loss_s"]
    body = json.loads(out.read_text())
    for run_ in body["runs"]:
        assert run_["buses"] > 0
        summary = body["summary"][run_["variant"]]
        assert summary["bus_time_loss_s"]["mean"] == pytest.approx(run_["bus_time_loss_s"])
        assert summary["others_time_loss_s"]["mean"] == pytest.approx(run_["others_time_loss_s"])
        row = next(r for r in done.stdout.splitlines() if r.startswith(run_["variant"] + " "))
        column = header.index("bus_time_loss_s")  # one seed: one figure a cell
        assert row.split()[column] == f"{run_['bus_time_loss_s']:.1f}"
