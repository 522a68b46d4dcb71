"""SUMO's time loss of a scenario's signal plan, a figure of the scenario (issue 16).

A plan is made by the twin's own optimiser on Bologna's acosta scenario imported into the
twin; the scenario naming it is run by real SUMO on the twin's exported network. The figure
is checked against SUMO run again, by hand, on the configuration files the figure was
computed from, and read by the project's run reader.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import twin
from layers import scenarios
from layers.database import get_engine
from layers.errors import ParameterError
from layers.settings import get_settings
from routing.signals import read_programs
from routing.signals import sumo as bridge
from routing.signals.runs import read_run
from tests.conftest import SHARED, _fresh_database
from twin.scenarios.figures import Figure, figures
from twin.scenarios.signal_figures import (
    check_demand,
    evaluate_plan,
    signal_rows,
)

ACOSTA = SHARED / "bologna" / "acosta" / "run.sumocfg"
EXTENT = "[11.2, 44.4, 11.5, 44.6]"  # the twin's extent while Bologna's scenario is imported
PLAN = "sigfig-acosta"
SCENARIO = "sigfig-plan"
SUMO_TIMEOUT_S = 120  # a run here lasts a second; a hang fails instead of stalling


@dataclass(frozen=True)
class Bologna:
    url: str
    city: twin.City
    plan: dict[str, Any]
    retired: str  # a road the plan's scenario retires
    folder: Path
    rows: list[Figure]
    notes: list[str]


@pytest.fixture(scope="module")
def bologna(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bologna]:
    """Acosta in the twin, a plan of its signals, a scenario naming it, and its figures."""
    url = _fresh_database("_sigfig")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TWIN_CITY_BBOX", EXTENT)
        get_settings.cache_clear()
        city = twin.connect(url)
        city.import_sumo(ACOSTA)
        plan = city.optimise_signals(PLAN, bbox=(11.25, 44.45, 11.45, 44.55))
        roads = city.layer("roads")
        # a road no signal's junction touches: retired in the scenario, absent from its network
        lit = set(city.layer("signals")["node_id"].dropna().astype("int64"))
        free = roads[~roads["source_node"].isin(lit) & ~roads["target_node"].isin(lit)]
        retired = str(sorted(free["id"])[0])
    # Bologna's extent only while it is imported and timed (the sample city's fixtures, later
    # in the run, load Monaco in its own); the city keeps the metric CRS it was made with
    get_settings.cache_clear()
    scenarios.create(SCENARIO, settings={"signal_plan": PLAN}, url=url)
    scenarios.retire_feature(SCENARIO, "roads", retired, url=url)
    folder = tmp_path_factory.mktemp("sigfig")
    rows, notes = signal_rows(city, SCENARIO, folder=folder)
    yield Bologna(url, city, plan, retired, folder, rows, notes)
    get_engine(url).dispose()


def _values(rows: list[Figure]) -> dict[str, float | None]:
    assert all(r.district is None for r in rows)
    return {r.key: r.value for r in rows}


def _sumo_by_hand(config: Path, stem: Path) -> Any:
    """Run SUMO on a configuration as written, and read its trips with the run reader."""
    trips, stats = Path(f"{stem}.tripinfo.xml"), Path(f"{stem}.stats.xml")
    done = subprocess.run(
        [
            bridge.sumo_binary("sumo"),
            "-c",
            str(config),
            "--tripinfo-output",
            str(trips),
            "--tripinfo-output.write-unfinished",
            "--statistic-output",
            str(stats),
            "--no-step-log",
        ],
        capture_output=True,
        text=True,
        timeout=SUMO_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return read_run(trips, stats, variant=config.stem, seed=0)


def test_the_figure_is_sumos_time_loss_on_the_scenarios_network(
    bologna: Bologna, tmp_path: Path
) -> None:
    values = _values(bologna.rows)
    assert set(values) == {"signals.time_loss_s", "signals.trips", "signals.base_time_loss_s"}
    units = {r.key: r.unit for r in bologna.rows}
    assert units == {
        "signals.time_loss_s": "s",
        "signals.trips": "trip",
        "signals.base_time_loss_s": "s",
    }
    assert all(r.label_zh and r.label_en for r in bologna.rows)
    assert bologna.rows[0].to_json()["value"] == values["signals.time_loss_s"]
    assert isinstance(bologna.rows[1].to_json()["value"], int)  # trips are counted

    # the same configuration files, run again by hand, read by the project's run reader
    plan_run = _sumo_by_hand(bologna.folder / "plan.sumocfg", tmp_path / "plan")
    base_run = _sumo_by_hand(bologna.folder / "base.sumocfg", tmp_path / "base")
    assert values["signals.time_loss_s"] == pytest.approx(plan_run.time_loss_s, abs=1e-9)
    assert values["signals.base_time_loss_s"] == pytest.approx(base_run.time_loss_s, abs=1e-9)
    assert values["signals.trips"] == base_run.vehicles == plan_run.vehicles
    # the demand: randomTrips' 900 s at 1800 vehicles per hour, less trips no route joins
    departures = [
        float(v.get("depart", "nan"))
        for v in ET.parse(bologna.folder / "routes.rou.xml").getroot().iter("vehicle")
    ]
    assert len(departures) == base_run.vehicles
    assert 0.8 * 450 <= len(departures) <= 450
    assert min(departures) >= 0 and max(departures) < 900
    # the plan's programs are what the plan run loads, on the lights of the plan's signals
    config = ET.parse(bologna.folder / "plan.sumocfg").getroot()
    added = config.find("input/additional-files")
    assert added is not None and added.get("value") == "plan.add.xml"
    programs = read_programs([bologna.folder / "plan.add.xml"])
    assert {p.id for p in programs.values()} == {PLAN}
    signals = bologna.city.layer("signals").set_index("id")
    planned = {str(t["signal"]) for t in bologna.plan["plan"]["signals"]}
    assert set(programs) == {str(int(signals.loc[s, "node_id"])) for s in planned}
    for timing in bologna.plan["plan"]["signals"]:
        program = programs[str(int(signals.loc[str(timing["signal"]), "node_id"]))]
        assert [p.duration for p in program.phases] == [p["duration_s"] for p in timing["phases"]]
    # the plan changes what SUMO measures (same demand, same seed, other programs)
    assert values["signals.time_loss_s"] != values["signals.base_time_loss_s"]


def test_the_network_is_the_scenarios(bologna: Bologna) -> None:
    net = ET.parse(bologna.folder / "twin.net.xml").getroot()
    edges = {e.get("id") for e in net.iter("edge") if e.get("function") != "internal"}
    assert bologna.retired not in edges
    base = set(bologna.city.layer("roads")["id"].astype(str))
    assert bologna.retired in base
    assert edges == base - {bologna.retired}  # acosta's roads are one-way: one edge each


def test_same_seed_same_figure(bologna: Bologna) -> None:
    again, notes = signal_rows(bologna.city, SCENARIO)  # in a folder of its own, removed
    assert _values(again) == _values(bologna.rows)
    assert notes == bologna.notes
    assert [r.to_json() for r in again] == [r.to_json() for r in bologna.rows]


def test_another_seed_another_demand(bologna: Bologna, tmp_path: Path) -> None:
    other = evaluate_plan(bologna.city, SCENARIO, tmp_path, seed=7, period_s=300)
    assert other.seed == 7 and other.period_s == 300
    assert other.base.vehicles <= 150
    assert (tmp_path / "routes.rou.xml").read_bytes() != (
        bologna.folder / "routes.rou.xml"
    ).read_bytes()


def test_no_plan_a_note_and_no_row(bologna: Bologna) -> None:
    scenarios.create("sigfig-none", url=bologna.url)
    rows, notes = signal_rows(bologna.city, "sigfig-none")
    assert rows == []
    assert notes == [
        "signals: scenario 'sigfig-none' names no signal plan (settings.signal_plan): no SUMO run"
    ]
    rows, notes = signal_rows(bologna.city, None)
    assert rows == [] and "the base names no signal plan" in notes[0]


def test_figures_with_signals_and_no_plan(routing_db: str) -> None:
    city = twin.connect(routing_db)
    scenarios.create("sigfig-monaco", url=routing_db)
    try:
        found = figures(city, scenario="sigfig-monaco", signals=True)
        plain = figures(city, scenario="sigfig-monaco")
    finally:
        scenarios.delete("sigfig-monaco", url=routing_db)
    assert not [r for r in found.rows if r.key.startswith("signals.")]
    assert found.rows == plain.rows
    assert any("names no signal plan" in n for n in found.notes)


def test_an_unknown_plan_is_refused_naming_settings_signal_plan(routing_db: str) -> None:
    # the store refuses a scenario naming no stored plan, before anything is stored
    plan = "sigfig-no-such-plan"
    with pytest.raises(ParameterError) as caught:
        scenarios.create("sigfig-unknown", settings={"signal_plan": plan}, url=routing_db)
    assert caught.value.parameter == "settings.signal_plan"
    assert plan in str(caught.value)
    assert "sigfig-unknown" not in {s.name for s in scenarios.list_scenarios(url=routing_db)}


def test_signals_must_be_a_boolean(routing_db: str) -> None:
    with pytest.raises(ParameterError) as caught:
        figures(twin.connect(routing_db), signals="yes")  # type: ignore[arg-type]
    assert caught.value.parameter == "signals"


@pytest.mark.parametrize(
    ("arguments", "parameter"),
    [
        ({"period_s": 0}, "period_s"),
        ({"period_s": 3601}, "period_s"),
        ({"period_s": float("nan")}, "period_s"),
        ({"period_s": "900"}, "period_s"),
        ({"insertion_rate": -1}, "insertion_rate"),
        ({"insertion_rate": 1e6}, "insertion_rate"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_demand_names_the_parameter(arguments: dict[str, Any], parameter: str) -> None:
    given = {"period_s": 900.0, "insertion_rate": 1800.0, "seed": 42} | arguments
    with pytest.raises(ParameterError) as caught:
        check_demand(given["period_s"], given["insertion_rate"], given["seed"])
    assert caught.value.parameter == parameter
    assert parameter in str(caught.value)
