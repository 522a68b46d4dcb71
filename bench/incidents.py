"""Incident detection on Bologna's SUMO scenarios: the California algorithm #8 against LaneCusum.

For each scenario (acosta, pasubio) SUMO runs one hour of its traffic (its own demand, as fast
as it can) under several seeds, each hour twice: once as it is, once with incidents — a lane
blocked by a stopped vehicle just upstream of a detector of a detector pair, several per hour,
spaced in time and place (``twin.live.simulate.random_incidents``). The loops' readings of every
interval (SUMO's own e1 aggregation) are fed straight to the detectors, interval by interval,
as the live feed would feed them.

Seeds split the runs: the *calibration* seeds fit each algorithm (LaneCusum's baseline, both
algorithms' thresholds by a grid search that keeps the false-alarm rate under the goal and
detects the most); the *evaluation* seeds, never seen by the calibration, are scored. The
table gives, per scenario and algorithm, the detection rate, the false-alarm rate (false
alarms per detector pair and interval, %) and the mean time to detect.

    python bench/incidents.py [--runs 6] [--per-run 5] [--interval 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.live.detection import (  # noqa: E402
    California,
    CaliforniaThresholds,
    CusumSettings,
    LaneCusum,
    Pair,
    Score,
    Truth,
    calibrate,
    detect,
    detector_pairs,
    samples_by_interval,
    scenario_loops,
    score,
)
from twin.live.simulate import Incident, RunResult, random_incidents, run_scenario  # noqa: E402

BOLOGNA = ROOT.parent / "shared" / "data" / "bologna"
OUT = ROOT / "bench" / "out"
SCENARIOS = ("acosta", "pasubio")
CALIBRATION_SEEDS = (101, 102, 103)
GOALS = {"detection_rate": 90.0, "false_alarm_rate": 0.5, "mean_time_to_detect": 120.0}
WARMUP_S = 600.0  # the network fills up: nothing is scored before
END_S = 3600.0  # the scenarios' demand: one hour
MIN_FLOW = 300.0  # veh/h: lanes carrying less are not blocked (see bench/README.md)

CALIFORNIA_GRID = {
    "t1": (8.0, 12.0, 20.0, 30.0, 45.0),
    "t2": (0.5, 0.7, 0.85),
    "t3": (0.15, 0.3, 0.5, 0.7),
    "t4": (-0.4,),
    "t5": (30.0, 60.0, 101.0),
}
CUSUM_GRID = {
    "rho": (0.1, 0.2),
    "h_lane": (2.0, 3.0, 4.0, 6.0),
    "h_flow": (6.0, 8.0, 12.0),
    "window": (1, 2, 3),
    "margin": (1.0, 1.25, 1.5),
}


@dataclass
class Hour:
    """One simulated hour: its seed, its readings and its true incidents (none if quiet)."""

    seed: int
    readings: pd.DataFrame
    truths: list[Truth]
    incidents: list[Incident]

    @property
    def intervals(self) -> int:
        """Intervals scored (after the warm-up)."""
        times = self.readings["time_s"].unique()
        return int((times > WARMUP_S).sum())

    @functools.cached_property
    def samples(self) -> list[tuple[float, dict[str, Any]]]:
        """The readings split into intervals of samples (once)."""
        return list(samples_by_interval(self.readings))


def table(run: RunResult) -> pd.DataFrame:
    """A run's readings as the detectors' table (READING_COLUMNS)."""
    return pd.DataFrame(
        {
            "time_s": [r.end_s for r in run.readings],
            "loop": [r.loop for r in run.readings],
            "flow": [r.flow for r in run.readings],
            "occupancy": [r.occupancy for r in run.readings],
            "speed": [math.nan if r.speed is None else r.speed for r in run.readings],
        }
    )


def simulate_hours(
    scenario: Path,
    seeds: Sequence[int],
    incidents: dict[int, list[Incident]] | None,
    interval_s: float,
    workers: int,
) -> list[Hour]:
    """Run SUMO for each seed (with that seed's incidents, if given), ``workers`` at a time."""

    def one(seed: int) -> Hour:
        chosen = incidents.get(seed, []) if incidents else []
        run = run_scenario(
            scenario,
            interval_s=interval_s,
            bus_interval_s=None,
            end=END_S,
            seed=seed,
            incidents=chosen,
            keep_readings=True,
        )
        truths = [
            Truth(t.incident.edge, t.incident.position_m, t.from_s, t.until_s)
            for t in run.incidents
            if t.from_s is not None and t.until_s is not None
        ]
        return Hour(seed, table(run), truths, chosen)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, seeds))


def evaluate(make: Callable[[], Any], hours: Sequence[Hour], pairs: Sequence[Pair]) -> Score:
    """Score a detector (a fresh one per hour) over hours."""
    total = Score()
    for hour in hours:
        alarms = [a for a in detect(make(), hour.samples) if a.time_s > WARMUP_S]
        total += score(alarms, hour.truths, pairs, intervals=hour.intervals)
    return total


def per_incident(
    makers: dict[str, Callable[[], Any]],
    hours: Sequence[Hour],
    pairs: Sequence[Pair],
    lane_flows: dict[str, float],
    loops: dict[str, str],
) -> list[dict[str, Any]]:
    """Each true incident of the hours: where, how busy its lane, each detector's time to
    detect (None: missed)."""
    out = []
    for hour in hours:
        if not hour.truths:
            continue
        alarms = {
            name: [a for a in detect(make(), hour.samples) if a.time_s > WARMUP_S]
            for name, make in makers.items()
        }
        for truth in hour.truths:
            asked = next(
                i
                for i in hour.incidents
                if i.edge == truth.edge and abs(i.position_m - truth.position_m) < 0.01
            )
            cover = {p.id for p in pairs if p.covers(truth.edge, truth.position_m)}
            row: dict[str, Any] = {
                "seed": hour.seed,
                "lane": asked.lane,
                "position_m": asked.position_m,
                "from_s": truth.from_s,
                "until_s": truth.until_s,
                "lane_flow_veh_h": round(lane_flows.get(loops.get(asked.lane, ""), 0.0)),
                "pairs": sorted(cover),
            }
            for name, found in alarms.items():
                hits = [
                    a.time_s - truth.from_s
                    for a in found
                    if a.pair in cover and truth.from_s < a.time_s <= truth.until_s
                ]
                row[name] = min(hits) if hits else None
            out.append(row)
    return out


def better(a: Score, b: Score | None) -> bool:
    """Whether ``a`` beats ``b`` in the calibration.

    The false-alarm goal comes first; then the detection-rate goal; once both are met, the
    sooner the better; short of the detection goal, the more detected the better.
    """
    if b is None:
        return True
    return _rank(a) < _rank(b)


def _rank(s: Score) -> tuple[float, ...]:
    far_ok = s.false_alarm_rate <= GOALS["false_alarm_rate"]
    dr_ok = s.detection_rate >= GOALS["detection_rate"]
    return (
        0.0 if far_ok else s.false_alarm_rate,
        0.0 if dr_ok else 1.0,
        _mttd(s) if dr_ok else 0.0,
        -len(s.times_to_detect),
        _mttd(s),
        s.false_alarms,
    )


def _mttd(s: Score) -> float:
    value = s.mean_time_to_detect
    return math.inf if math.isnan(value) else value


def calibrate_california(
    hours: Sequence[Hour], pairs: Sequence[Pair]
) -> tuple[CaliforniaThresholds, Score]:
    """The grid's thresholds that do best on the calibration hours."""
    best: tuple[CaliforniaThresholds, Score] | None = None
    keys = list(CALIFORNIA_GRID)
    for values in itertools.product(*CALIFORNIA_GRID.values()):
        thresholds = CaliforniaThresholds(**dict(zip(keys, values, strict=True)))
        result = evaluate(lambda t=thresholds: California(pairs, t), hours, pairs)
        if best is None or better(result, best[1]):
            best = (thresholds, result)
    assert best is not None
    return best


def calibrate_cusum(
    hours: Sequence[Hour], quiet: Sequence[Hour], pairs: Sequence[Pair], interval_s: float
) -> tuple[dict[str, Any], Score]:
    """LaneCusum's baseline from the quiet calibration hours; its settings by grid search."""
    best: tuple[dict[str, Any], Score] | None = None
    keys = list(CUSUM_GRID)
    for values in itertools.product(*CUSUM_GRID.values()):
        chosen = dict(zip(keys, values, strict=True))
        margin = chosen.pop("margin")
        settings = CusumSettings(**chosen)
        baseline = calibrate(
            [h.samples for h in quiet],
            pairs,
            interval_s=interval_s,
            settings=settings,
            margin=margin,
            warmup_s=WARMUP_S,
        )

        def make(s: CusumSettings = settings, b: Any = baseline) -> LaneCusum:
            return LaneCusum(pairs, interval_s=interval_s, settings=s, baseline=b)

        result = evaluate(make, hours, pairs)
        if best is None or better(result, best[1]):
            best = ({"settings": settings, "baseline": baseline, "margin": margin}, result)
    assert best is not None
    return best


def scenario_bench(
    name: str, runs: int, per_run: int, interval_s: float, workers: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Calibrate and evaluate both algorithms on one scenario."""
    path = BOLOGNA / name
    pairs = detector_pairs(path)
    evaluation_seeds = tuple(range(1, runs + 1))
    seeds = CALIBRATION_SEEDS + evaluation_seeds
    say(f"{name}: {len(pairs)} detector pairs; {len(seeds)} quiet hours")
    quiet = simulate_hours(path, seeds, None, interval_s, workers)
    calm = pd.concat([h.readings for h in quiet if h.seed in CALIBRATION_SEEDS])
    calm = calm[calm["time_s"] > WARMUP_S]
    lane_flows = calm.groupby("loop")["flow"].mean().to_dict()
    incidents = {
        seed: random_incidents(
            path,
            per_run,
            seed=10_000 + seed,
            begin=WARMUP_S,
            end=END_S,
            pairs=pairs,
            lane_flows=lane_flows,
            min_flow=MIN_FLOW,
        )
        for seed in seeds
    }
    say(f"{name}: {len(seeds)} hours with {per_run} incidents each")
    troubled = simulate_hours(path, seeds, incidents, interval_s, workers)
    cal = [h for h in quiet + troubled if h.seed in CALIBRATION_SEEDS]
    cal_quiet = [h for h in quiet if h.seed in CALIBRATION_SEEDS]
    ev = [h for h in quiet + troubled if h.seed not in CALIBRATION_SEEDS]
    say(f"{name}: calibrating on seeds {list(CALIBRATION_SEEDS)}")
    thresholds, cal_california = calibrate_california(cal, pairs)
    fitted, cal_cusum = calibrate_cusum(cal, cal_quiet, pairs, interval_s)
    california = evaluate(lambda: California(pairs, thresholds), ev, pairs)
    cusum = evaluate(
        lambda: LaneCusum(
            pairs, interval_s=interval_s, settings=fitted["settings"], baseline=fitted["baseline"]
        ),
        ev,
        pairs,
    )
    loops = {lp.lane: lp.id for lp in scenario_loops(path)}
    details = per_incident(
        {
            "california": lambda: California(pairs, thresholds),
            "lanecusum": lambda: LaneCusum(
                pairs,
                interval_s=interval_s,
                settings=fitted["settings"],
                baseline=fitted["baseline"],
            ),
        },
        ev,
        pairs,
        lane_flows,
        loops,
    )
    placed = sum(len(h.truths) for h in troubled if h.seed not in CALIBRATION_SEEDS)
    asked = sum(len(h.incidents) for h in troubled if h.seed not in CALIBRATION_SEEDS)
    return {
        "scenario": name,
        "pairs": len(pairs),
        "evaluation_seeds": list(evaluation_seeds),
        "incidents_asked": asked,
        "incidents_placed": placed,
        "california": {"thresholds": asdict(thresholds), **_summary(california)},
        "california_defaults": {
            "thresholds": asdict(CaliforniaThresholds()),
            **_summary(evaluate(lambda: California(pairs), ev, pairs)),
        },
        "california_calibration": _summary(cal_california),
        "lanecusum": {
            "settings": asdict(fitted["settings"]),
            "margin": fitted["margin"],
            **_summary(cusum),
        },
        "lanecusum_calibration": _summary(cal_cusum),
        "incidents": details,
    }


def _summary(s: Score) -> dict[str, Any]:
    return {
        "incidents": s.incidents,
        "detected": len(s.times_to_detect),
        "detection_rate": round(s.detection_rate, 1),
        "false_alarms": s.false_alarms,
        "decisions": s.applications,
        "false_alarm_rate": round(s.false_alarm_rate, 3),
        "mean_time_to_detect": round(s.mean_time_to_detect, 1),
    }


def render(results: Sequence[dict[str, Any]]) -> str:
    """The table: per scenario and algorithm, DR, FAR and MTTD against the goals."""
    head = (
        f"{'scenario':<9} {'algorithm':<14} {'incidents':>9} {'detected':>8} {'DR %':>6} "
        f"{'false':>6} {'decisions':>9} {'FAR %':>7} {'MTTD s':>7}  goals met"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        for key, label in (
            ("california_defaults", "California #8*"),
            ("california", "California #8"),
            ("lanecusum", "LaneCusum"),
        ):
            s = r[key]
            met = [
                s["detection_rate"] >= GOALS["detection_rate"],
                s["false_alarm_rate"] <= GOALS["false_alarm_rate"],
                s["mean_time_to_detect"] <= GOALS["mean_time_to_detect"],
            ]
            lines.append(
                f"{r['scenario']:<9} {label:<14} {s['incidents']:>9} {s['detected']:>8} "
                f"{s['detection_rate']:>6.1f} {s['false_alarms']:>6} {s['decisions']:>9} "
                f"{s['false_alarm_rate']:>7.3f} {s['mean_time_to_detect']:>7.1f}  "
                f"{'DR ' if met[0] else ''}{'FAR ' if met[1] else ''}{'MTTD' if met[2] else ''}"
            )
    lines.append("* California #8 with OTC's default thresholds (not calibrated)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="evaluation hours per scenario")
    parser.add_argument("--per-run", type=int, default=6, help="incidents per hour")
    parser.add_argument("--interval", type=float, default=60.0, help="loop interval, s")
    parser.add_argument("--workers", type=int, default=2, help="SUMO runs at once")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args(argv)
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {line}", file=sys.stderr, flush=True)

    results = [
        scenario_bench(name, args.runs, args.per_run, args.interval, args.workers, say)
        for name in args.scenarios.split(",")
    ]
    print(render(results))
    for r in results:
        print(
            f"{r['scenario']}: {r['pairs']} pairs; {r['incidents_placed']} of "
            f"{r['incidents_asked']} incidents placed; California thresholds "
            f"{r['california']['thresholds']}; LaneCusum {r['lanecusum']['settings']} "
            f"margin {r['lanecusum']['margin']}"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "incidents.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
