"""Signals in the twin: SUMO networks imported, plans optimised, stored and exported to SUMO."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from fastapi.testclient import TestClient

import twin
from api.app import create_app
from layers.database import get_engine
from layers.ingest import ingest_frame
from layers.settings import TwinSettings, get_settings
from routing.signals import optimise_scenario, read_programs, read_scenario
from routing.signals import sumo as bridge
from tests.assertions import problem, sql_scalar
from tests.conftest import SHARED, _fresh_database

BOLOGNA = SHARED / "bologna"
# the twin's extent while the Bologna scenarios are imported
EXTENT = "[11.2, 44.4, 11.5, 44.6]"


@pytest.fixture(scope="module")
def bologna_db() -> Iterator[str]:
    """A database holding the roads and signals of both Bologna scenarios."""
    url = _fresh_database("_test_bologna")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWIN_CITY_BBOX", EXTENT)
        get_settings.cache_clear()
        city = twin.connect(url)
        for name in ("acosta", "pasubio"):
            city.import_sumo(BOLOGNA / name / "run.sumocfg")
        # a signal mapped without its approaches (as OSM maps them): nothing to time it by
        bare = gpd.GeoDataFrame(
            {
                "id": ["osm:node/1"],
                "program": ["default"],
                "cycle_s": [90.0],
                "phases": [
                    [{"duration_s": 42, "state": "GGrr"}, {"duration_s": 42, "state": "rrGG"}]
                ],
            },
            geometry=[shapely.Point(11.21, 44.41)],
            crs="EPSG:4326",
        )
        ingest_frame("signals", bare, source="osm", url=url)
    get_settings.cache_clear()
    yield url
    get_engine(url).dispose()


@pytest.fixture(scope="module")
def client(bologna_db: str) -> Iterator[TestClient]:
    """The API of a twin of Bologna (its extent set as an operator would set it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWIN_CITY_BBOX", EXTENT)
        get_settings.cache_clear()
        with TestClient(create_app(TwinSettings(database_url=bologna_db))) as test_client:
            yield test_client
    get_settings.cache_clear()


def test_import_keeps_network_and_signals(bologna_db: str) -> None:
    assert sql_scalar(bologna_db, "SELECT count(*) FROM roads WHERE source = 'sumo:acosta'") == 178
    assert (
        sql_scalar(
            bologna_db,
            "SELECT count(*) FROM intersections WHERE signalised AND source LIKE 'sumo:%'",
        )
        >= 15
    )
    signals = twin.connect(bologna_db).layer("signals")
    imported = signals[signals["source"].str.startswith("sumo:")]
    assert len(imported) == 15
    row = imported[imported["id"] == "acosta:tls:209"].iloc[0]
    assert row["program"] == "utopia"
    assert row["cycle_s"] == 117
    assert [p["state"] for p in row["phases"]][:2] == ["GrGGGGg", "yrGGGyy"]
    assert len(row["props"]["links"]) == 7
    assert sum(row["props"]["flows_pcu_h"].values()) > 500


def test_import_again_changes_nothing(bologna_db: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWIN_CITY_BBOX", EXTENT)
        get_settings.cache_clear()
        reports = twin.connect(bologna_db).import_sumo(BOLOGNA / "acosta" / "run.sumocfg")
    get_settings.cache_clear()
    assert [r.unchanged for r in reports] == [178, 112, 7]
    assert all(r.added == r.changed == r.retired == 0 for r in reports)


def test_plan_from_the_twin_equals_plan_from_sumo_files(client: TestClient) -> None:
    """The twin times an area from the flows it stored: the same plan as from the files."""
    answer = client.post(
        "/signals/plans", json={"name": "acosta-peak", "bbox": [11.25, 44.45, 11.45, 44.55]}
    )
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert record["name"] == "acosta-peak"
    timed = {s["signal"]: s for s in record["plan"]["signals"]}
    assert len(timed) == 15
    for name in ("acosta", "pasubio"):
        expected = optimise_scenario(read_scenario(BOLOGNA / name / "run.sumocfg"))
        for sid, timing in expected.timings.items():
            ours = timed[f"{name}:tls:{sid}"]
            assert ours["cycle_s"] == timing.cycle
            assert [p["duration_s"] for p in ours["phases"]] == [
                p.duration for p in timing.program.phases
            ]
            assert ours["delay_s"] == pytest.approx(timing.delay_s, abs=0.01)
    assert all(40 <= s["cycle_s"] <= 121 for s in timed.values())


def test_stored_plan_versions_and_sumo_export(client: TestClient, tmp_path: Path) -> None:
    body = {"name": "acosta-v", "signals": ["acosta:tls:209", "acosta:tls:273"]}
    first = client.post("/signals/plans", json=body).json()
    second = client.post("/signals/plans", json=body | {"settings": {"max_cycle_s": 90}}).json()
    assert (first["version"], second["version"]) == (1, 2)
    current = client.get("/signals/plans/acosta-v").json()
    assert current["version"] == 2
    assert current["request"]["settings"]["max_cycle_s"] == 90
    listed = {p["name"]: p for p in client.get("/signals/plans").json()["plans"]}
    assert listed["acosta-v"]["signals"] == 2

    xml = client.get("/signals/plans/acosta-v/sumo")
    assert xml.status_code == 200
    assert xml.headers["content-type"].startswith("application/xml")
    path = tmp_path / "plan.add.xml"
    path.write_text(xml.text)
    programs = read_programs([path])
    assert set(programs) == {"209", "273"}
    assert all(p.cycle <= 90 for p in programs.values())
    # SUMO itself loads the exported plan on the real network
    net = BOLOGNA / "acosta" / "acosta_buslanes.net.xml"
    done = subprocess.run(
        [bridge.sumo_binary("sumo"), "-n", str(net), "-a", str(path), "--end", "10"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_green_wave_on_a_corridor(client: TestClient) -> None:
    corridor = ["acosta:tls:210", "acosta:tls:221", "acosta:tls:235"]
    answer = client.post(
        "/signals/plans", json={"name": "acosta-wave", "signals": corridor, "greenwave": True}
    )
    assert answer.status_code == 201, answer.text
    plan = answer.json()["plan"]
    cycles = {s["cycle_s"] for s in plan["signals"]}
    assert len(cycles) == 1
    (wave,) = plan["corridors"]
    assert wave["signals"] == corridor
    assert wave["offsets_s"]["acosta:tls:210"] == 0
    assert wave["bandwidth_out_s"] > 0
    offsets = {s["signal"]: s["offset_s"] for s in plan["signals"]}
    assert offsets == wave["offsets_s"]


def test_emergency_corridor_along_the_route(client: TestClient) -> None:
    # from the start of edge 85 to the end of edge 204[1][1], a route across acosta
    answer = client.get(
        "/signals/corridor", params={"from": "11.31175,44.49795", "to": "11.33165,44.50152"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["reachable"] is True
    holds = body["holds"]
    assert len(holds) >= 2
    assert all(h["start_s"] <= h["eta_s"] < h["end_s"] for h in holds)
    assert [h["eta_s"] for h in holds] == sorted(h["eta_s"] for h in holds)
    assert all(h["signal"].startswith("acosta:tls:") for h in holds)


def test_bad_requests_name_the_problem(client: TestClient) -> None:
    bare = client.post("/signals/plans", json={"name": "x", "signals": ["osm:node/1"]})
    assert "without approach data" in problem(bare, 400, "signals")["detail"]
    area = client.post("/signals/plans", json={"name": "x", "bbox": [11.2, 44.4, 11.5, 44.6]})
    assert (
        "approach data (no counts, no flows): osm:node/1" in problem(area, 400, "signals")["detail"]
    )
    unknown = client.post("/signals/plans", json={"name": "x", "signals": ["nope"]})
    assert "unknown signals: nope" in problem(unknown, 400, "signals")["detail"]
    empty = client.post("/signals/plans", json={"name": "x", "bbox": [0, 0, 0.1, 0.1]})
    assert "no signals" in problem(empty, 400, "bbox")["detail"]
    apart = client.post(
        "/signals/plans",
        json={"name": "x", "signals": ["acosta:tls:209", "pasubio:tls:230"], "greenwave": True},
    )
    assert "not connected" in problem(apart, 400, "signals")["detail"]
    nameless = client.post("/signals/plans", json={"name": "no spaces", "bbox": [11, 44, 12, 45]})
    problem(nameless, 400, "name")
    problem(client.get("/signals/plans/missing"), 404, "name")
    problem(client.get("/signals/plans/missing/sumo"), 404, "name")
