"""Proof in SUMO: run a scenario under competing signal plans, several seeds each.

Variants, all on the same network, demand and seeds:

- ``scenario``: the scenario's own programs (a city's real plans, when it ships them);
- ``network``: the network's default programs (what netconvert generated);
- ``tlsCycleAdaptation`` and ``tlsCoordinator``: SUMO's own tools (Webster; Webster then greedy
  offsets), run on the base programs;
- ``webster`` and ``webster+greenwave``: the twin's Webster, then one common cycle with
  MAXBAND offsets along the busiest corridors.

The base whose phases everyone re-times is the scenario's programs when it has them (the
city's phase sequences), else the network's. Each run reports SUMO's trip statistics: mean time
loss, waiting time, stops, departure delay and teleports; the summary gives means with 95%
Student-t intervals over the seeds.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from routing.signals import sumo
from routing.signals.greenwave import coordinate
from routing.signals.model import SignalError
from routing.signals.plans import optimise_scenario
from routing.signals.webster import WebsterSettings

VARIANTS = (
    "scenario",
    "network",
    "tlsCycleAdaptation",
    "tlsCoordinator",
    "webster",
    "webster+greenwave",
)
METRICS = ("time_loss_s", "waiting_s", "stops", "depart_delay_s", "teleports")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """One SUMO run: a variant under one seed, and what the trips measured."""

    variant: str
    seed: int
    vehicles: int
    time_loss_s: float
    waiting_s: float
    stops: float
    depart_delay_s: float
    teleports: int
    unfinished: int


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% Student-t interval over seeds (no interval from one seed)."""

    mean: float
    low: float | None
    high: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        """Return the mean and 95% interval of a sample."""
        n = len(values)
        mean = sum(values) / n
        if n < 2:
            return cls(mean, None, None)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        return cls(mean, mean - half, mean + half)


@dataclass
class Evaluation:
    """The runs of every variant and their summary."""

    scenario: str
    base: str
    seeds: list[int]
    end: float | None
    runs: list[Run] = field(default_factory=list)
    emergency: dict[str, Any] | None = None

    def summary(self) -> dict[str, dict[str, Interval]]:
        """Return, per variant, each metric's mean and 95% interval over the seeds."""
        out: dict[str, dict[str, Interval]] = {}
        for variant in dict.fromkeys(r.variant for r in self.runs):
            runs = [r for r in self.runs if r.variant == variant]
            out[variant] = {m: Interval.of([float(getattr(r, m)) for r in runs]) for m in METRICS}
        return out

    def to_json(self) -> dict[str, Any]:
        """Return the evaluation as JSON: settings, every run and the summary."""
        return {
            "scenario": self.scenario,
            "base": self.base,
            "seeds": self.seeds,
            "end": self.end,
            "summary": {
                v: {m: asdict(i) for m, i in metrics.items()}
                for v, metrics in self.summary().items()
            },
            "runs": [asdict(r) for r in self.runs],
            "emergency": self.emergency,
        }

    def table(self) -> str:
        """Return the summary as a text table (mean [95% interval] per metric)."""
        rows = [f"{'variant':<20}" + "".join(f"{m:>28}" for m in METRICS)]
        for variant, metrics in self.summary().items():
            cells = []
            for m in METRICS:
                i = metrics[m]
                ci = f" [{i.low:.1f}, {i.high:.1f}]" if i.low is not None else ""
                cells.append(f"{i.mean:.1f}{ci}".rjust(28))
            rows.append(f"{variant:<20}" + "".join(cells))
        return "\n".join(rows)


@dataclass(frozen=True)
class Setup:
    """What a variant runs: the network file and the program files loaded after it."""

    net: Path
    programs: tuple[Path, ...]


def prepare(
    scenario: sumo.Scenario,
    workdir: Path,
    *,
    variants: Sequence[str] = VARIANTS,
    base: str = "scenario",
    settings: WebsterSettings | None = None,
    progress: Progress | None = None,
) -> dict[str, Setup]:
    """Compute every variant's programs (running SUMO's tools where asked) into ``workdir``.

    Parameters
    ----------
    scenario
        The scenario.
    workdir
        Folder for the programs and networks written.
    variants
        Variants to prepare (see :data:`VARIANTS`).
    base
        ``scenario`` (its own programs' phases, when it has any) or ``network`` (the
        network's default programs).
    settings
        The twin's Webster settings.
    progress
        Called with a line per step.

    Returns
    -------
    dict
        Setup per variant.
    """
    say = progress or (lambda _: None)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SignalError(
            f"unknown variants {unknown}; known: {list(VARIANTS)}", parameter="variants"
        )
    if base not in ("scenario", "network"):
        raise SignalError("base must be 'scenario' or 'network'", parameter="base")
    base_programs = sumo.read_programs(scenario.programs) if base == "scenario" else {}
    base_net = scenario.net
    if base_programs:
        base_net = sumo.net_with_programs(scenario.net, base_programs, workdir / "base.net.xml")
    demand = [base_net, *scenario.demand_files]
    routes = ",".join(str(p) for p in scenario.demand_files)
    setups: dict[str, Setup] = {}
    if "scenario" in variants:
        setups["scenario"] = Setup(scenario.net, scenario.programs)
    if "network" in variants:
        setups["network"] = Setup(scenario.net, ())
    tca = workdir / "tlsCycleAdaptation.add.xml"
    if "tlsCycleAdaptation" in variants or "tlsCoordinator" in variants:
        say("SUMO's tlsCycleAdaptation.py")
        _tool("tlsCycleAdaptation.py", "-n", base_net, "-r", routes, "-o", tca, reads=demand)
        setups["tlsCycleAdaptation"] = Setup(base_net, (tca,))
    if "tlsCoordinator" in variants:
        say("SUMO's tlsCoordinator.py")
        offsets = workdir / "tlsCoordinator.add.xml"
        # the coordinator reads one route file: the demand merged into one
        merged = sumo.merge_routes(scenario.demand_files, workdir / "demand.rou.xml")
        _tool(
            "tlsCoordinator.py",
            "-n",
            base_net,
            "-r",
            merged,
            "-a",
            tca,
            "-o",
            offsets,
            reads=demand,
        )
        setups["tlsCoordinator"] = Setup(base_net, (tca, offsets))
    if "webster" in variants or "webster+greenwave" in variants:
        say("the twin's Webster")
        plan = optimise_scenario(scenario, base=base, settings=settings)
        path = sumo.write_additional(
            plan.timings.values(), workdir / "webster.add.xml", program_id="twin"
        )
        if "webster" in variants:
            setups["webster"] = Setup(base_net, (path,))
        if "webster+greenwave" in variants:
            say("the twin's green waves (common cycle, MAXBAND offsets)")
            coordinated = coordinate(scenario, plan, base=base, settings=settings)
            wave = sumo.write_additional(
                coordinated.timings.values(), workdir / "greenwave.add.xml", program_id="twin-gw"
            )
            setups["webster+greenwave"] = Setup(base_net, (wave,))
    return {v: setups[v] for v in variants if v in setups}


def _tool(name: str, *args: str | os.PathLike[str], reads: Sequence[Path]) -> None:
    """Run one of SUMO's tools; ``reads``: its input files (its time limit grows with them)."""
    cmd = [sys.executable, sumo.sumo_tool(name), *map(str, args)]
    done = sumo.run_process(cmd, timeout_s=sumo.tool_timeout(reads), what=f"SUMO's {name}")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SignalError(f"SUMO's {name} failed: {' '.join(tail)}", parameter="scenario")


def simulate(
    scenario: sumo.Scenario,
    setup: Setup,
    *,
    variant: str,
    seed: int,
    end: float | None = None,
    workdir: Path,
    timeout_s: float | None = None,
) -> Run:
    """Run SUMO once and read its trip statistics.

    Parameters
    ----------
    scenario
        The scenario (its configuration's own processing options apply).
    setup
        Network and program files of the variant.
    variant
        The variant's name (reported back).
    seed
        Random seed.
    end
        Stop the simulation at this time, s (vehicles still running are counted as unfinished).
    workdir
        Folder for SUMO's outputs.
    timeout_s
        Wall-clock limit of the run, s (by default :func:`routing.signals.sumo.run_timeout`).

    Returns
    -------
    Run
        The run's figures.

    Raises
    ------
    SignalError
        When SUMO fails, or has not finished within ``timeout_s`` (it is stopped).
    """
    outputs = workdir / f"{variant.replace('+', '_')}-{seed}"
    additional = [*scenario.additional, *setup.programs]
    cmd = sumo.run_command(scenario, setup.net, additional, seed=seed, outputs=outputs, end=end)
    limit = timeout_s if timeout_s is not None else sumo.run_timeout(scenario, end)
    done = sumo.run_process(
        cmd, timeout_s=limit, what=f"SUMO's run of {scenario.config.name} ({variant}, seed {seed})"
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SignalError(
            f"SUMO cannot run {scenario.config.name} ({variant}): {' '.join(tail)}",
            parameter="scenario",
        )
    return _read_run(
        Path(f"{outputs}.tripinfo.xml"), Path(f"{outputs}.stats.xml"), variant=variant, seed=seed
    )


def _read_run(trips: Path, stats_file: Path, *, variant: str, seed: int) -> Run:
    n = unfinished = 0
    loss = wait = stops = delay = 0.0
    for _, el in ET.iterparse(trips, events=("end",)):
        if el.tag != "tripinfo":
            continue
        n += 1
        loss += float(el.get("timeLoss", "0"))
        wait += float(el.get("waitingTime", "0"))
        stops += float(el.get("waitingCount", "0"))
        delay += float(el.get("departDelay", "0"))
        if el.get("arrival", "0") in ("-1", "-1.00"):
            unfinished += 1
        el.clear()
    teleports = 0
    root = ET.parse(stats_file).getroot()
    found = root.find("teleports")
    if found is not None:
        teleports = int(found.get("total", "0"))
    k = max(n, 1)
    return Run(variant, seed, n, loss / k, wait / k, stops / k, delay / k, teleports, unfinished)


def evaluate(
    config: str | os.PathLike[str],
    *,
    seeds: int = 5,
    variants: Sequence[str] = VARIANTS,
    base: str = "scenario",
    end: float | None = None,
    settings: WebsterSettings | None = None,
    emergency: Sequence[str] | None = None,
    emergency_depart: float | None = None,
    workdir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Evaluate signal plans on a SUMO scenario: every variant under ``seeds`` seeds.

    Parameters
    ----------
    config
        The scenario's ``.sumocfg``.
    seeds
        Seeds per variant (1, 2, ... seeds).
    variants
        Variants to run (see :data:`VARIANTS`).
    base
        Whose phases are re-timed: ``scenario`` or ``network``.
    end
        Simulation horizon, s (the scenario's own by default).
    settings
        The twin's Webster settings.
    emergency
        Edges of an emergency vehicle's route (two edges: routed by the fastest path); when
        given, its travel time with and without the green corridor is measured too, under the
        twin's Webster + green-wave plans (or the first variant's when those are not run).
    emergency_depart
        When the emergency vehicle departs, s (a third of the horizon by default).
    workdir
        Folder for SUMO's files (a temporary one by default).
    jobs
        SUMO runs in parallel (the number of cores by default).
    progress
        Called with a line per step.

    Returns
    -------
    Evaluation
        Runs and summary.
    """
    if seeds < 1:
        raise SignalError("seeds must be at least 1", parameter="seeds")
    say = progress or (lambda _: None)
    scenario = sumo.read_scenario(config)
    scenario.read_net()
    with tempfile.TemporaryDirectory(prefix="twin-signals-") as tmp:
        folder = Path(workdir) if workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        setups = prepare(
            scenario, folder, variants=variants, base=base, settings=settings, progress=say
        )
        result = Evaluation(scenario.name, base, list(range(1, seeds + 1)), end)
        tasks = [(v, s) for v in setups for s in result.seeds]
        done = 0

        def one(task: tuple[str, int]) -> Run:
            variant, seed = task
            return simulate(
                scenario, setups[variant], variant=variant, seed=seed, end=end, workdir=folder
            )

        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            for run in pool.map(one, tasks):
                done += 1
                say(
                    f"[{done}/{len(tasks)}] {run.variant} seed {run.seed}: "
                    f"time loss {run.time_loss_s:.1f} s, teleports {run.teleports}"
                )
                result.runs.append(run)
        if emergency:
            from routing.signals.preemption import evaluate_corridor

            chosen = "webster+greenwave" if "webster+greenwave" in setups else next(iter(setups))
            say(f"emergency vehicle with and without the green corridor ({chosen})")
            result.emergency = evaluate_corridor(
                scenario,
                setups[chosen].net,
                [*scenario.additional, *setups[chosen].programs],
                emergency,
                seeds=result.seeds,
                depart=emergency_depart,
                end=end,
                workdir=folder,
            )
    return result


def write_json(evaluation: Evaluation, path: str | os.PathLike[str]) -> Path:
    """Write an evaluation as JSON."""
    out = Path(path)
    out.write_text(json.dumps(evaluation.to_json(), indent=2), encoding="utf-8")
    return out
