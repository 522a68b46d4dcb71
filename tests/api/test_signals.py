"""Signals in the twin: SUMO networks imported, plans optimised, stored and exported to SUMO."""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient

import twin
from api.app import create_app
from layers.database import get_engine
from layers.ingest import ingest_frame
from layers.settings import TwinSettings, get_settings
from routing.signals import WebsterSettings, optimise_scenario, read_programs, read_scenario
from routing.signals import sumo as bridge
from tests.assertions import problem, sql_scalar
from tests.conftest import SAMPLE, SHARED, _fresh_database
from twin.sample import load_sample

BOLOGNA = SHARED / "bologna"
SCENARIOS = ("acosta", "pasubio")
# the twin's extent while the Bologna scenarios are imported
EXTENT = "[11.2, 44.4, 11.5, 44.6]"
SUMO_TIMEOUT_S = 120  # a SUMO run here lasts seconds; a hang fails instead of stalling CI
# What SUMO's tlsCycleAdaptation.py counts a vehicle type as, in passenger cars (its PCE
# table); the other types of these demands (private, ignoring) count as one car.
PCE = {"bus": 3.5}


# --- the scenarios' own files, read with plain XML (independent of the SUMO bridge) ----------


def net_file(name: str) -> Path:
    return BOLOGNA / name / f"{name}_buslanes.net.xml"


@functools.cache
def net_root(name: str) -> ET.Element:
    return ET.parse(net_file(name)).getroot()


def import_counts(name: str) -> dict[str, int]:
    """What importing a scenario gives, counted in its network file by the import's rules:
    a road per edge that is not internal (nor a crossing or walking area), an intersection
    per junction that is not internal, a signal per traffic light with a program."""
    root = net_root(name)
    junctions = [j for j in root.iter("junction") if j.get("type") != "internal"]
    return {
        "roads": sum(
            e.get("function") not in ("internal", "crossing", "walkingarea")
            for e in root.iter("edge")
        ),
        "intersections": len(junctions),
        "signalised": sum(j.get("type", "").startswith("traffic_light") for j in junctions),
        "signals": len({t.get("id") for t in root.iter("tlLogic")}),
    }


@functools.cache
def controlled_turns(name: str) -> dict[tuple[str, str], list[tuple[str, int, str]]]:
    """(from edge, to edge) -> [(signal, link index, direction)] of the network's connections."""
    turns: dict[tuple[str, str], list[tuple[str, int, str]]] = collections.defaultdict(list)
    for c in net_root(name).iter("connection"):
        if c.get("tl"):
            key = (c.get("from", ""), c.get("to", ""))
            turns[key].append((c.get("tl", ""), int(c.get("linkIndex", "-1")), c.get("dir", "")))
    return dict(turns)


def successors(name: str) -> dict[str, set[str]]:
    """Road -> roads a vehicle may turn into (the network's connections between roads)."""
    out: dict[str, set[str]] = collections.defaultdict(set)
    for c in net_root(name).iter("connection"):
        a, b = c.get("from", ""), c.get("to", "")
        if not a.startswith(":") and not b.startswith(":"):
            out[a].add(b)
    return out


def free_flow(name: str, route: Sequence[str]) -> tuple[list[float], list[float]]:
    """Metres and seconds at the speed limit from a route's start to the end of each edge."""
    lanes = {e.get("id"): e.find("lane") for e in net_root(name).iter("edge")}
    metres, seconds = [], []
    for edge in route:
        lane = lanes[edge]
        assert lane is not None, edge
        metres.append(float(lane.get("length", "nan")))
        seconds.append(metres[-1] / float(lane.get("speed", "nan")))
    return list(itertools.accumulate(metres)), list(itertools.accumulate(seconds))


def scenario_program(name: str, tl: str) -> ET.Element:
    """The scenario's own program of a signal (its programs file, the city's real plans)."""
    found = ET.parse(BOLOGNA / name / f"{name}_tls.add.xml").getroot()
    (program,) = [p for p in found.iter("tlLogic") if p.get("id") == tl]
    return program


def entry_flow_pcu(name: str, tl: str) -> float:
    """Passenger cars through a signal in the demand's hour, each counted once per signal.

    A vehicle is counted where it enters the signal's junctions: on a turn of the signal
    whose road in does not come out of another turn of the same signal (a joined junction's
    inner roads are passed after a first stop line of the same signal).
    """
    turns = {k for k, v in controlled_turns(name).items() if any(t == tl for t, _, _ in v)}
    inner = {b for _, b in turns}
    entries = {(a, b) for a, b in turns if a not in inner}
    vehicles = []
    for path in sorted((BOLOGNA / name).glob("*.rou.xml")):
        for v in ET.parse(path).getroot().iter("vehicle"):
            route = v.find("route")
            assert route is not None
            vehicles.append((float(v.get("depart", "0")), v.get("type", ""), route.get("edges")))
    departs = [d for d, _, _ in vehicles]
    # the demand departs within one hour: its peak hour is all of it
    assert max(departs) - min(departs) <= 3600
    assert {t for _, t, _ in vehicles} <= {"private", "ignoring", "bus"}
    total = 0.0
    for depart, kind, edges in vehicles:
        if depart < min(departs) + 3600:
            road = str(edges).split()
            total += PCE.get(kind, 1.0) * sum(pair in entries for pair in itertools.pairwise(road))
    return total


# --- a green wave measured on a time-space diagram ----------------------------------------------


def fastest(
    starts: dict[str, float], arrive: set[str], succ: dict[str, set[str]], cost: dict[str, float]
) -> list[str]:
    """The fastest roads from a start road (at its given time) to one of ``arrive``."""
    heap = [(t, e, (e,)) for e, t in starts.items()]
    heapq.heapify(heap)
    done: set[str] = set()
    while heap:
        t, e, path = heapq.heappop(heap)
        if e in done:
            continue
        done.add(e)
        if e in arrive:
            return list(path)
        for n in succ.get(e, ()):
            if n not in done and n in cost:
                heapq.heappush(heap, (t + cost[n], n, (*path, n)))
    raise AssertionError(f"no road leads from {sorted(starts)} to {sorted(arrive)}")


def movement(links: Sequence[tuple[str, str, int, str]]) -> list[int]:
    """The link indices of one movement: straight ahead where there is one, else the first."""
    ahead = [k for k in links if k[3] == "s"] or sorted(links, key=lambda k: k[2])
    turn = ahead[0][:2]
    return sorted(k[2] for k in ahead if k[:2] == turn)


def stop_lines(
    name: str, corridor: Sequence[str], cost: dict[str, float]
) -> list[tuple[str, list[int], float]]:
    """Every stop line of the corridor's signals a vehicle crosses driving the corridor.

    The corridor leaves its first signal onto one of the signal's roads out and drives the
    fastest way (over the network's connections, at the twin's road costs) into the next
    signal, on from there into the next, and so on. Per stop line: the signal, the links of
    the movement made, and the seconds from the first signal's stop line. At the first signal
    the movement onto the corridor's first road, at the last the one out of its road in
    (straight ahead where there is one).
    """
    turns = controlled_turns(name)
    links = [(a, b, i, d, tl) for (a, b), v in turns.items() for tl, i, d in v]
    succ = successors(name)
    path: list[str] = []
    for a, b in itertools.pairwise(corridor):
        arrive = {k[0] for k in links if k[4] == b}
        if path:
            path += fastest({path[-1]: 0.0}, arrive, succ, cost)[1:]
        else:
            starts = {k[1] for k in links if k[4] == a and k[1] in cost}
            path = fastest({e: cost[e] for e in starts}, arrive, succ, cost)
    seconds = list(itertools.accumulate(cost[e] for e in path))
    first = [k[:4] for k in links if k[4] == corridor[0] and k[1] == path[0]]
    lines = [(corridor[0], movement(first), 0.0)]
    for k, (a, b) in enumerate(itertools.pairwise(path)):
        for tl in dict.fromkeys(t for t, _, _ in turns.get((a, b), ())):
            if tl in corridor:
                lines.append((tl, sorted(i for t, i, _ in turns[a, b] if t == tl), seconds[k]))
    last = [k[:4] for k in links if k[4] == corridor[-1] and k[0] == path[-1]]
    lines.append((corridor[-1], movement(last), seconds[-1]))
    return lines


def sumo_greens(plan_xml: str, name: str, until_s: float, folder: Path) -> dict[str, np.ndarray]:
    """Run a plan in SUMO and record every signal's state each 0.1 s (SaveTLSStates)."""
    plan = folder / "plan.add.xml"
    plan.write_text(plan_xml)
    states = folder / "states.add.xml"
    record = folder / "states.xml"
    states.write_text(
        f'<additional><timedEvent type="SaveTLSStates" dest="{record}"/></additional>'
    )
    command = [bridge.sumo_binary("sumo"), "-n", str(net_file(name)), "-a", f"{plan},{states}"]
    command += ["--step-length", "0.1", "--end", f"{until_s:.1f}", "--no-step-log"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=SUMO_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    out: dict[str, list[str]] = collections.defaultdict(list)
    for _, el in ET.iterparse(record):
        if el.tag == "tlsState":
            # one state per 0.1 s step, in time order: the state in force from that time on
            assert round(float(el.get("time", "0")) * 10) == len(out[el.get("id", "")])
            out[el.get("id", "")].append(el.get("state", ""))
    return {tl: np.array(states) for tl, states in out.items()}


def widest_band(
    lines: Sequence[tuple[str, list[int], float]], states: dict[str, np.ndarray], cycle: float
) -> float:
    """The widest run of departure times (s, over one cycle, 0.1 s apart) from the first stop
    line such that a vehicle driving at the corridor's times meets green at every stop line."""
    departures = np.arange(round(cycle * 10)) / 10
    ok = np.ones(len(departures), dtype=bool)
    for tl, links, seconds in lines:
        green = np.array([all(s[i] in "Gg" for i in links) for s in states[tl]])
        ok &= green[np.floor((departures + seconds) * 10 + 1e-6).astype(int)]
    if ok.all():
        return cycle
    ok = np.roll(ok, -int(np.argmin(ok)))  # start on a red: no run wraps around
    runs = [len(list(g)) for v, g in itertools.groupby(ok) if v]
    return max(runs, default=0) / 10


@pytest.fixture(scope="module")
def bologna_db() -> Iterator[str]:
    """A database holding the roads and signals of both Bologna scenarios."""
    url = _fresh_database("_bologna")
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


def test_corridor_over_roads_with_no_speed_limit_and_a_plan_bbox_upside_down(
    sample_db: str,
) -> None:
    # first in the module: the Bologna fixtures below set Bologna's extent while they live
    # the sample city's roads without a maxspeed (OpenStreetMap has none for them) are driven
    # at their class's speed in a corridor, as by the router, never a 500
    line = sql_scalar(
        sample_db,
        "SELECT ST_AsText(geom) FROM roads WHERE maxspeed IS NULL AND valid_to IS NULL "
        "AND ST_Length(geom::geography) > 60 ORDER BY id LIMIT 1",
    )
    road = shapely.from_wkt(line)
    start, end = (road.interpolate(f, normalized=True) for f in (0.2, 0.8))
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as client:
        answer = client.get(
            "/signals/corridor",
            params={"from": f"{start.x},{start.y}", "to": f"{end.x},{end.y}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["reachable"] is True
        for bbox in ([7.43, 43.73, 7.42, 43.74], [7.42, 43.74, 7.43, 43.73]):
            upside_down = client.post("/signals/plans", json={"name": "x", "bbox": bbox})
            assert "minimum is above its maximum" in problem(upside_down, 400, "bbox")["detail"]


@pytest.fixture(scope="module")
def unlimited_db() -> Iterator[str]:
    """The sample city with no road's speed limit nor lane count known."""
    url = _fresh_database("_unlimited")
    load_sample(directory=SAMPLE, url=url)
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE roads SET maxspeed = NULL, lanes = NULL"))
    yield url
    get_engine(url).dispose()


def test_corridor_across_the_city_with_no_speed_limits_nor_lanes(unlimited_db: str) -> None:
    # between signalised intersections at either end of the city, over roads some of which
    # are driven against their digitised direction: the facade and the API plan the
    # corridor, with each road's class speed (the router's), never a crash
    lit = twin.connect(unlimited_db).layer("intersections")
    lit = lit[lit["signalised"]].sort_values("id")
    city = twin.connect(unlimited_db)
    ends = [(p.x, p.y) for p in lit.geometry]
    for start, end in ((ends[0], ends[-1]), (ends[-1], ends[0]), (ends[1], ends[-2])):
        trip, holds = city.green_corridor(start, end)
        assert trip is not None
        assert trip.road_ids
        assert trip.duration_s > 0
        assert all(0 <= h.eta_s <= trip.duration_s * 1.25 for h in holds)
    with TestClient(create_app(TwinSettings(database_url=unlimited_db))) as client:
        answer = client.get(
            "/signals/corridor",
            params={"from": f"{ends[0][0]},{ends[0][1]}", "to": f"{ends[-1][0]},{ends[-1][1]}"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["reachable"] is True


def test_sumo_export_of_roads_with_no_speed_limit_nor_lanes(
    unlimited_db: str, tmp_path: Path
) -> None:
    # a road with neither takes its class's speed (the routing SQL's) and lanes
    roads = twin.connect(unlimited_db).layer("roads")
    signals = twin.connect(unlimited_db).layer("signals")
    metric = get_settings().metric_crs
    net = bridge.network_to_sumo(roads, signals, tmp_path, metric_crs=metric, name="x")
    edges = {e.get("id"): e for e in ET.parse(tmp_path / "x.edg.xml").getroot()}
    row = roads[roads["class"] == "residential"].iloc[0]
    edge = edges[str(row["id"])]
    assert float(edge.get("speed", "0")) == pytest.approx(30 / 3.6, abs=0.01)
    assert edge.get("numLanes") == "1"  # two-way: two lanes, one each way; one-way: one
    assert net.exists()


def test_import_keeps_network_and_signals(bologna_db: str) -> None:
    counts = {name: import_counts(name) for name in SCENARIOS}
    roads = sql_scalar(bologna_db, "SELECT count(*) FROM roads WHERE source = 'sumo:acosta'")
    assert roads == counts["acosta"]["roads"]
    lit = sql_scalar(
        bologna_db, "SELECT count(*) FROM intersections WHERE signalised AND source LIKE 'sumo:%'"
    )
    assert lit == sum(c["signalised"] for c in counts.values())
    signals = twin.connect(bologna_db).layer("signals")
    imported = signals[signals["source"].str.startswith("sumo:")]
    assert len(imported) == sum(c["signals"] for c in counts.values())
    # signal 209 keeps the city's own plan (the scenario's programs file) ...
    program = scenario_program("acosta", "209")
    phases = program.findall("phase")
    row = imported[imported["id"] == "acosta:tls:209"].iloc[0]
    assert row["program"] == program.get("programID")
    assert row["cycle_s"] == sum(float(p.get("duration", "0")) for p in phases)
    assert [p["state"] for p in row["phases"]] == [p.get("state") for p in phases]
    # ... its links (one per connection it controls) ...
    links = {i for v in controlled_turns("acosta").values() for tl, i, _ in v if tl == "209"}
    assert sorted(k[0] for k in row["props"]["links"]) == sorted(links)
    # ... and the peak hour's cars through it, counted once each in the demand
    assert sum(row["props"]["flows_pcu_h"].values()) == pytest.approx(
        entry_flow_pcu("acosta", "209"), abs=0.01
    )


def test_import_again_changes_nothing(bologna_db: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWIN_CITY_BBOX", EXTENT)
        get_settings.cache_clear()
        reports = twin.connect(bologna_db).import_sumo(BOLOGNA / "acosta" / "run.sumocfg")
    get_settings.cache_clear()
    counts = import_counts("acosta")
    assert [r.unchanged for r in reports] == [
        counts["roads"],
        counts["intersections"],
        counts["signals"],
    ]
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
    # every imported signal lies in the area (the bare OSM signal at 11.21, 44.41 does not)
    assert len(timed) == sum(import_counts(name)["signals"] for name in SCENARIOS)
    compared = 0
    for name in SCENARIOS:
        expected = optimise_scenario(read_scenario(BOLOGNA / name / "run.sumocfg"))
        for sid, timing in expected.timings.items():
            ours = timed[f"{name}:tls:{sid}"]
            assert ours["cycle_s"] == timing.cycle
            assert [p["duration_s"] for p in ours["phases"]] == [
                p.duration for p in timing.program.phases
            ]
            assert ours["delay_s"] == pytest.approx(timing.delay_s, abs=0.01)
            compared += 1
    assert compared == len(timed)
    settings = WebsterSettings()  # the request sets none: the twin's defaults
    cycles = [s["cycle_s"] for s in timed.values()]
    assert all(settings.min_cycle_s <= c <= settings.max_cycle_s for c in cycles), cycles


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
        timeout=SUMO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr


def test_green_wave_on_a_corridor(client: TestClient, bologna_db: str, tmp_path: Path) -> None:
    corridor = ["acosta:tls:210", "acosta:tls:221", "acosta:tls:235"]
    answer = client.post(
        "/signals/plans", json={"name": "acosta-wave", "signals": corridor, "greenwave": True}
    )
    assert answer.status_code == 201, answer.text
    plan = answer.json()["plan"]
    cycles = {s["cycle_s"] for s in plan["signals"]}
    assert len(cycles) == 1
    (cycle,) = cycles
    (wave,) = plan["corridors"]
    assert wave["signals"] == corridor
    assert wave["offsets_s"]["acosta:tls:210"] == 0
    offsets = {s["signal"]: s["offset_s"] for s in plan["signals"]}
    assert offsets == wave["offsets_s"]

    # The bands, measured on a time-space diagram: the corridor driven over the network's
    # connections at the twin's road costs (the routing_edges_all view: the only thing shared
    # with the optimiser), every stop line of its signals on the way, and the signals' states
    # as SUMO runs the exported plan.
    with get_engine(bologna_db).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT road_id, cost FROM routing_edges_all "
                "WHERE profile = 'car' AND road_id LIKE 'acosta:%'"
            )
        )
        cost = {str(r).split(":", 1)[1]: float(c) for r, c in rows}
    tls = [sid.split(":tls:")[1] for sid in corridor]
    outbound = stop_lines("acosta", tls, cost)
    inbound = stop_lines("acosta", tls[::-1], cost)
    until = cycle + max(t for _, _, t in outbound + inbound) + 1
    xml = client.get("/signals/plans/acosta-wave/sumo").text
    states = sumo_greens(xml, "acosta", until, tmp_path)
    # each signal is met at least once each way (a joined junction: at more stop lines)
    for lines in (outbound, inbound):
        met = collections.Counter(tl for tl, _, _ in lines)
        assert set(met) == set(tls) and sum(met.values()) >= len(tls), lines
    # 0.1 s steps: each end of the band is found within a step, the departures one step apart
    assert wave["bandwidth_out_s"] == pytest.approx(widest_band(outbound, states, cycle), abs=0.3)
    assert wave["bandwidth_in_s"] == pytest.approx(widest_band(inbound, states, cycle), abs=0.3)
    assert wave["bandwidth_out_s"] > 0  # the wave exists: the offsets let a band through


def test_emergency_corridor_along_the_route(client: TestClient) -> None:
    # from the start of edge 85 to the end of edge 204[1][1], a route across acosta
    answer = client.get(
        "/signals/corridor", params={"from": "11.31175,44.49795", "to": "11.33165,44.50152"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["reachable"] is True
    roads = body["route"]["properties"]["road_ids"]
    route = [r.split(":", 1)[1] for r in roads if r.startswith("acosta:")]
    assert len(route) == len(roads) and (route[0], route[-1]) == ("85", "204[1][1]")
    route = [e for e, _ in itertools.groupby(route)]
    # the signals the route's turns pass, in the network: one hold per run of one signal
    turns = controlled_turns("acosta")
    passed = [(k, a, turns.get((a, b), [])) for k, (a, b) in enumerate(itertools.pairwise(route))]
    passed = [(k, a, v) for k, a, v in passed if v]
    runs = [list(g) for _, g in itertools.groupby(passed, key=lambda p: p[2][0][0])]
    holds = body["holds"]
    assert [h["signal"] for h in holds] == [f"acosta:tls:{run[0][2][0][0]}" for run in runs]
    # at the speed limit, over the network's own lengths (the twin's roads are its edges,
    # reprojected: their lengths agree to a few centimetres per hundred metres)
    metres, seconds = free_flow("acosta", route)
    checked = 0
    for hold, run in zip(holds, runs, strict=True):
        k = run[0][0]
        assert hold["edge"] == run[0][1] == route[k]
        assert hold["distance_m"] == pytest.approx(metres[k], rel=1e-3, abs=0.1)
        assert hold["eta_s"] == pytest.approx(seconds[k], rel=1e-3, abs=0.1)
        assert hold["links"] == sorted({i for _, _, v in run for _, i, _ in v})
        # the state held gives every link of the route's turns green
        assert all(hold["state"][i] in "Gg" for i in hold["links"]), hold
        assert hold["start_s"] <= hold["eta_s"] < hold["end_s"]
        checked += 1
    assert checked == len(runs) > 0
    assert [h["eta_s"] for h in holds] == sorted(h["eta_s"] for h in holds)


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
