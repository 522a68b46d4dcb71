"""Proof in SUMO: run a scenario under competing signal plans, several seeds each.

Variants, all on the same network, demand and seeds:

- ``scenario``: the scenario's own programs (a city's real plans, when it ships them);
- ``network``: the network's default programs (what netconvert generated);
- ``tlsCycleAdaptation`` and ``tlsCoordinator``: SUMO's own tools (Webster; Webster then greedy
  offsets), run on the base programs;
- ``webster`` and ``webster+greenwave``: the twin's Webster, then one common cycle with
  MAXBAND offsets along the busiest corridors;
- ``actuated``: SUMO's built-in actuated control (gap-out / max-out) on the base programs, the
  peer of real-time control;
- ``max-pressure``: Varaiya's max pressure (2013) in the loop through TraCI, the second peer;
- ``adaptive`` and ``adaptive+priority``: the twin's adaptive controller, and the same with
  transit signal priority for buses;
- ``coordinated``: actuated-coordinated control that keeps each fixed-time program's cycle and
  offset (force-offs, early gap-out), the adaptive controller at the other signals;
- ``phased`` and ``phased+adaptive``: the twin's generated phase sequences (protected lefts
  where the HCM warrants them), timed by Webster, and run by the adaptive controller.

Controllers (:mod:`routing.signals.control`) run behind the same safety head (minimum green,
the programs' yellow and all-red, maximum green and wait) with the detectors the twin places.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from scipy import stats

from routing.signals import sumo
from routing.signals.control import (
    Adaptive,
    ControlledSignal,
    Controller,
    MaxPressure,
    SafetyRules,
    actuated_programs,
    control_signals,
    controlled_corridor,
    run_controlled,
)
from routing.signals.control.coordinated import fixed_time_signals, hybrid
from routing.signals.control.priority import vehicle_classes
from routing.signals.greenwave import coordinate
from routing.signals.model import SignalError
from routing.signals.phasing import design_phases
from routing.signals.plans import optimise_scenario
from routing.signals.preemption import evaluate_corridor, full_route
from routing.signals.runs import Run, Setup, read_run
from routing.signals.webster import WebsterSettings

VARIANTS = (
    "scenario",
    "network",
    "tlsCycleAdaptation",
    "tlsCoordinator",
    "webster",
    "webster+greenwave",
    "actuated",
    "max-pressure",
    "adaptive",
    "adaptive+priority",
    "coordinated",
    "phased",
    "phased+adaptive",
)
# Controllers in the loop, by the name a Setup gives: one per signal. Max pressure decides at
# the end of fixed 10 s slots, as published (Varaiya 2013, a fixed-length time slot; decided
# every step it switched every ~12 s on Bologna and lost twice as much time in changes).
MAX_PRESSURE_SLOT_S = 10.0
CONTROLLERS: dict[str, Callable[[ControlledSignal], Controller]] = {
    "max-pressure": lambda _signal: MaxPressure(slot_s=MAX_PRESSURE_SLOT_S),
    "adaptive": lambda _signal: Adaptive(),
}


def controller_factory(setup: Setup) -> Callable[[ControlledSignal], Controller]:
    """Return the factory of a setup's controller: one controller per signal.

    Parameters
    ----------
    setup
        A setup with a ``controller`` (``max-pressure``, ``adaptive`` or ``coordinated``).

    Returns
    -------
    callable
        ``signal -> controller``; ``coordinated`` is actuated-coordinated control on the
        signals whose base program is fixed-time (read from the setup's network and
        programs), the adaptive controller on the others.

    Raises
    ------
    SignalError
        When the setup names no known controller.
    """
    if setup.controller == "coordinated":
        return hybrid(fixed_time_signals([setup.net, *setup.programs]))
    factory = CONTROLLERS.get(setup.controller or "")
    if factory is None:
        raise SignalError(
            f"unknown controller {setup.controller!r}; known: "
            f"{sorted([*CONTROLLERS, 'coordinated'])}",
            parameter="controller",
        )
    return factory


METRICS = ("time_loss_s", "waiting_s", "stops", "depart_delay_s", "teleports")
# reported too when any run had buses: the buses' mean time loss and everyone else's (what
# transit signal priority trades), s
BUS_METRICS = ("bus_time_loss_s", "others_time_loss_s")
Progress = Callable[[str], None]


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
    notes: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    def worse(self, *, reference: str = "scenario") -> dict[str, float]:
        """Return the variants whose mean time loss is worse than the reference's, and by how much.

        Parameters
        ----------
        reference
            The variant compared with: the scenario's own programs (the network's, when the
            scenario ships none).

        Returns
        -------
        dict
            Ratio of mean time loss to the reference's (> 1) per variant that is worse;
            empty when the reference was not run.
        """
        summary = self.summary()
        if reference not in summary:
            return {}
        ref = summary[reference]["time_loss_s"].mean
        out: dict[str, float] = {}
        for variant, metrics in summary.items():
            loss = metrics["time_loss_s"].mean
            if variant != reference and loss > ref:
                out[variant] = loss / ref if ref > 0 else math.inf
        return out

    def metrics(self) -> tuple[str, ...]:
        """Return the metrics summarised (plus :data:`BUS_METRICS` when any run had buses)."""
        return (*METRICS, *BUS_METRICS) if any(r.buses for r in self.runs) else METRICS

    def summary(self) -> dict[str, dict[str, Interval]]:
        """Return, per variant, each metric's mean and 95% interval over the seeds."""
        out: dict[str, dict[str, Interval]] = {}
        names = self.metrics()
        for variant in dict.fromkeys(r.variant for r in self.runs):
            runs = [r for r in self.runs if r.variant == variant]
            out[variant] = {m: Interval.of([float(getattr(r, m)) for r in runs]) for m in names}
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
            "notes": self.notes,
            "worse_than_scenario": self.worse(),
            "kept": self.kept,
        }

    def table(self) -> str:
        """Return the summary as a text table (mean [95% interval] per metric).

        A variant whose mean time loss is worse than the scenario's own programs is flagged
        ``WORSE than scenario xN.NN`` (its ratio); a variant that produced no plan is listed
        with the reason and no figures. When any run had buses, the buses' mean time loss and
        everyone else's are columns too.
        """
        names = self.metrics()
        rows = [f"{'variant':<20}" + "".join(f"{m:>28}" for m in names)]
        worse = self.worse()
        for variant, metrics in self.summary().items():
            cells = []
            for m in names:
                i = metrics[m]
                ci = f" [{i.low:.1f}, {i.high:.1f}]" if i.low is not None else ""
                cells.append(f"{i.mean:.1f}{ci}".rjust(28))
            flag = f"  WORSE than scenario x{worse[variant]:.2f}" if variant in worse else ""
            rows.append(f"{variant:<20}" + "".join(cells) + flag)
        for variant, note in self.notes.items():
            rows.append(f"{variant:<20}  {note}")
        return "\n".join(rows)


def silence_highs_banner() -> None:
    """Print HiGHS's copyright banner into nothing, once, before a solver is built.

    HiGHS (through PuLP's ``HiGHS(msg=False)``, which the green waves solve with) prints its
    banner on the process's standard output when its first ``Highs`` object is built, whatever
    its ``output_flag``; it is printed once per process. Building that first object here with
    the standard output pointed at the null device keeps it out of the commands' output.
    Safe to call many times; does nothing when ``highspy`` is not installed.
    """
    if _HIGHS_QUIET:
        return
    try:
        import highspy
    except ImportError:
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs().setOptionValue("output_flag", False)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _HIGHS_QUIET.append(True)


_HIGHS_QUIET: list[bool] = []


def prepare(
    scenario: sumo.Scenario,
    workdir: Path,
    *,
    variants: Sequence[str] = VARIANTS,
    base: str = "scenario",
    settings: WebsterSettings | None = None,
    progress: Progress | None = None,
    end: float | None = None,
) -> dict[str, Setup]:
    """Compute every variant's programs (running SUMO's tools where asked) into ``workdir``.

    Trips and flows without a route are routed once by SUMO's ``duarouter`` into
    ``workdir`` (:meth:`routing.signals.sumo.Scenario.routed_files`) for the tools and the
    flow counts; the runs keep the scenario's own demand (SUMO routes it at insertion). A
    tool or method that writes no program is not run: its setup carries a ``note``.

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
    end
        Horizon of the runs, s: the peak hour is sought within the scenario's period cut
        there.

    Returns
    -------
    dict
        Setup per variant.

    Raises
    ------
    SignalError
        On an unknown variant or base, or when ``duarouter`` fails (a tool that fails gives
        its variant a ``no plan`` note instead).
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
    routed = scenario.routed_files(workdir)
    demand = [base_net, *routed]
    routes = ",".join(str(p) for p in routed)
    hour = str(scenario.peak_hour(end))
    setups: dict[str, Setup] = {}
    if "scenario" in variants:
        setups["scenario"] = Setup(scenario.net, scenario.programs)
    if "network" in variants:
        setups["network"] = Setup(scenario.net, ())
    tca = workdir / "tlsCycleAdaptation.add.xml"
    if "tlsCycleAdaptation" in variants or "tlsCoordinator" in variants:
        say("SUMO's tlsCycleAdaptation.py")
        failed = _tool(
            "tlsCycleAdaptation.py",
            "-n",
            base_net,
            "-r",
            routes,
            "-b",
            hour,
            "-o",
            tca,
            reads=demand,
        )
        setups["tlsCycleAdaptation"] = Setup(base_net, (tca,))
        if failed or not _has_programs(tca):
            setups["tlsCycleAdaptation"] = _no_plan(base_net, "tlsCycleAdaptation.py", failed)
    if "tlsCoordinator" in variants and setups["tlsCycleAdaptation"].note:
        setups["tlsCoordinator"] = Setup(
            base_net,
            (),
            note="no plan: its input, tlsCycleAdaptation.py's plan, is none ("
            + str(setups["tlsCycleAdaptation"].note).removeprefix("no plan: ")
            + ")",
        )
    elif "tlsCoordinator" in variants:
        say("SUMO's tlsCoordinator.py")
        offsets = workdir / "tlsCoordinator.add.xml"
        # the coordinator reads one route file: the demand merged into one
        merged = sumo.merge_routes(routed, workdir / "demand.rou.xml")
        failed = _tool(
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
        if failed or not _has_programs(offsets):
            setups["tlsCoordinator"] = _no_plan(base_net, "tlsCoordinator.py", failed)
    if "webster" in variants or "webster+greenwave" in variants:
        say("the twin's Webster")
        plan = optimise_scenario(scenario, base=base, settings=settings, end=end)
        if not plan.timings:
            for v in ("webster", "webster+greenwave"):
                setups[v] = _no_plan(base_net, "the twin's Webster (no flow reaches a signal)")
            return {v: setups[v] for v in variants if v in setups}
        kept = tuple(plan.kept.items())
        for sid, why in kept:
            say(f"webster, signal {sid}: {why}")
        path = sumo.write_additional(
            plan.timings.values(), workdir / "webster.add.xml", program_id="twin"
        )
        if "webster" in variants:
            setups["webster"] = Setup(base_net, (path,), kept=kept)
        if "webster+greenwave" in variants:
            say("the twin's green waves (common cycle, MAXBAND offsets)")
            silence_highs_banner()
            coordinated = coordinate(scenario, plan, base=base, settings=settings)
            wave = sumo.write_additional(
                coordinated.timings.values(), workdir / "greenwave.add.xml", program_id="twin-gw"
            )
            setups["webster+greenwave"] = Setup(base_net, (wave,))
    _prepare_control(scenario, workdir, setups, variants, base, base_net, settings, end, say)
    return {v: setups[v] for v in variants if v in setups}


def _prepare_control(
    scenario: sumo.Scenario,
    workdir: Path,
    setups: dict[str, Setup],
    variants: Sequence[str],
    base: str,
    base_net: Path,
    settings: WebsterSettings | None,
    end: float | None,
    say: Progress,
) -> None:
    """Add the real-time control and generated-phase variants' setups."""
    if "actuated" in variants:
        say("SUMO's actuated programs on the base phases")
        net = sumo.read_net(base_net)
        signals = control_signals(net, sumo.signals_of(net), rules=SafetyRules())
        path = actuated_programs(signals, workdir / "actuated.add.xml")
        setups["actuated"] = Setup(base_net, (path,))
    for variant in ("max-pressure", "adaptive", "adaptive+priority", "coordinated"):
        if variant in variants:
            controller = variant.removesuffix("+priority")
            setups[variant] = Setup(
                base_net, (), controller=controller, priority=variant.endswith("+priority")
            )
    if "phased" in variants or "phased+adaptive" in variants:
        say("the twin's phase design (protected lefts by the HCM warrants), timed by Webster")
        plan = design_phases(
            scenario,
            base=base,
            settings=settings,
            open_inner=True,
            output=workdir / "phased.add.xml",
        )
        if plan.path is None or not _has_programs(plan.path):
            for v in ("phased", "phased+adaptive"):
                setups[v] = _no_plan(base_net, "the twin's phase design (no signal to time)")
            return
        phased = sumo.net_with_programs(
            base_net, sumo.read_programs([plan.path]), workdir / "phased.net.xml"
        )
        setups["phased"] = Setup(phased, ())
        setups["phased+adaptive"] = Setup(phased, (), controller="adaptive")


def _has_programs(path: Path) -> bool:
    """Whether a file a tool wrote holds a signal program (a ``tlLogic``)."""
    try:
        return any(el.tag == "tlLogic" for _, el in ET.iterparse(str(path), events=("start",)))
    except (ET.ParseError, FileNotFoundError):
        return False


def _no_plan(net: Path, who: str, failed: str | None = None) -> Setup:
    """Return the setup of a variant whose tool or method wrote no program (not run)."""
    why = f"failed ({failed})" if failed else "wrote no signal program"
    return Setup(net, (), note=f"no plan: {who} {why}")


def _tool(name: str, *args: str | os.PathLike[str], reads: Sequence[Path]) -> str | None:
    """Run one of SUMO's tools; ``reads``: its input files (its time limit grows with them).

    Returns None when it succeeded, else the last lines of its error output (a peer that
    fails on a network is reported as having no plan, not as the evaluation failing).
    """
    cmd = [sys.executable, sumo.sumo_tool(name), *map(str, args)]
    done = sumo.run_process(cmd, timeout_s=sumo.tool_timeout(reads), what=f"SUMO's {name}")
    if done.returncode != 0:
        return exception_line(done.stderr or done.stdout) or f"exit status {done.returncode}"
    return None


def exception_line(output: str) -> str:
    """Return the line a failed program's output ends with, Python's traceback carets skipped.

    Parameters
    ----------
    output
        What the program wrote (a Python traceback ends with the exception's own line; since
        Python 3.11 its source lines are underlined with ``~~~^^^`` lines).

    Returns
    -------
    str
        The last line that is not only carets or blanks (``""`` when there is none).
    """
    lines = [line.strip() for line in output.strip().splitlines()]
    said = [line for line in lines if line and not set(line) <= set("~^ ")]
    return said[-1] if said else ""


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
    classes = _vehicle_classes(scenario)
    if setup.controller is not None:
        return run_controlled(
            scenario,
            setup,
            controller_factory=controller_factory(setup),
            priority=setup.priority,
            seed=seed,
            end=end,
            workdir=workdir,
            variant=variant,
            timeout_s=timeout_s,
            classes=classes,
        )
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
    return read_run(
        Path(f"{outputs}.tripinfo.xml"),
        Path(f"{outputs}.stats.xml"),
        variant=variant,
        seed=seed,
        classes=classes,
    )


def _vehicle_classes(scenario: sumo.Scenario) -> dict[str, str]:
    """Return the vClass of each vehicle type of the scenario (buses told apart), read once."""
    if "classes" not in scenario._cache:
        scenario._cache["classes"] = vehicle_classes([*scenario.routes, *scenario.additional])
    found: dict[str, str] = scenario._cache["classes"]
    return found


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
    emergency_under: str | None = None,
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
        variant ``emergency_under``.
    emergency_depart
        When the emergency vehicle departs, s (a third of the horizon by default).
    emergency_under
        The variant the corridor is measured under: fixed plans (the corridor's holds driven
        through TraCI) or a controller (wrapped with
        :func:`routing.signals.control.emergency.with_preemption`). By default the twin's
        Webster + green waves, else the first variant run.
    workdir
        Folder for SUMO's files (a temporary one by default).
    jobs
        SUMO runs in parallel (the number of cores by default).
    progress
        Called with a line per step.

    Returns
    -------
    Evaluation
        Runs and summary. A variant under which no vehicle was inserted before ``end`` gets
        the note ``no vehicle ran`` and no figures (its runs are dropped).

    Raises
    ------
    SignalError
        Before any simulation runs (:func:`check_inputs`): a scenario with no traffic light,
        ``end`` not after the begin, an emergency departure that is negative or not before
        the end, an emergency route of one edge or with an edge not in the network; after the
        plans are prepared, ``emergency_under`` naming a variant that wrote no plan. Also when
        SUMO fails.
    """
    if seeds < 1:
        raise SignalError("seeds must be at least 1", parameter="seeds")
    if emergency_under is not None and emergency_under not in variants:
        raise SignalError(
            f"emergency_under {emergency_under!r} is not among the variants run: {list(variants)}",
            parameter="emergency_under",
        )
    say = progress or (lambda _: None)
    scenario = sumo.read_scenario(config)
    check_inputs(
        scenario,
        end=end,
        emergency=emergency,
        emergency_depart=emergency_depart,
    )
    if end is not None:
        # the period every plan is computed for ends with the runs (see Scenario.window)
        scenario = replace(scenario, end=scenario.window(end)[1])
    with tempfile.TemporaryDirectory(prefix="twin-signals-") as tmp:
        folder = Path(workdir) if workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        setups = prepare(
            scenario,
            folder,
            variants=variants,
            base=base,
            settings=settings,
            progress=say,
            end=end,
        )
        result = Evaluation(scenario.name, base, list(range(1, seeds + 1)), end)
        for variant, setup in setups.items():
            if setup.note:
                result.notes[variant] = setup.note
                say(f"{variant}: {setup.note}; not run")
            result.kept |= {sid: why for sid, why in setup.kept}
        if emergency and emergency_under is not None and setups[emergency_under].note:
            raise SignalError(
                f"emergency_under {emergency_under!r} wrote no plan; the corridor cannot run "
                f"on it ({setups[emergency_under].note})",
                parameter="emergency_under",
            )
        setups = {v: setup for v, setup in setups.items() if not setup.note}
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
        for variant in setups:
            if not any(r.vehicles for r in result.runs if r.variant == variant):
                # nothing was inserted: a row of 0.0s would read as a perfect plan
                result.runs = [r for r in result.runs if r.variant != variant]
                result.notes[variant] = (
                    "no vehicle ran (the demand inserts none within the simulated period)"
                )
        if emergency and setups:
            chosen = emergency_under or (
                "webster+greenwave" if "webster+greenwave" in setups else next(iter(setups))
            )
            say(f"emergency vehicle with and without the green corridor ({chosen})")
            try:
                result.emergency = _corridor(
                    scenario, setups[chosen], emergency, result, emergency_depart, folder
                )
            except SignalError as exc:  # the plans' runs stand; the corridor says why not
                result.emergency = {"error": str(exc), "parameter": exc.parameter}
            result.emergency["variant"] = chosen
    return result


def check_inputs(
    scenario: sumo.Scenario,
    *,
    end: float | None = None,
    emergency: Sequence[str] | None = None,
    emergency_depart: float | None = None,
) -> None:
    """Refuse, before any simulation runs, an evaluation that cannot be carried out.

    Parameters
    ----------
    scenario
        The scenario (its network is read here).
    end
        Simulation horizon, s: it must lie after the scenario's begin (and after 0).
    emergency
        Edges of the emergency vehicle's route: at least two, all in the network, joined by a
        path a car may drive (:func:`routing.signals.preemption.full_route`).
    emergency_depart
        When the emergency vehicle departs, s: not negative, and before the horizon (``end``,
        else the scenario's own end).

    Raises
    ------
    SignalError
        Naming the field at fault: ``scenario`` (no traffic lights), ``end``, ``emergency`` or
        ``emergency_depart``.
    """
    net = scenario.read_net()
    if not sumo.signals_of(net):
        raise SignalError("the scenario has no traffic lights", parameter="scenario")
    begin = scenario.begin or 0.0
    if end is not None and (not math.isfinite(end) or end <= max(begin, 0.0)):
        raise SignalError(
            f"end must be after the scenario's begin ({begin:g} s) and after 0; got {end:g} s",
            parameter="end",
        )
    horizon = scenario.window(end)[1]
    if emergency_depart is not None:
        if not math.isfinite(emergency_depart) or emergency_depart < 0:
            raise SignalError(
                f"emergency_depart must be a time of day >= 0 s; got {emergency_depart:g}",
                parameter="emergency_depart",
            )
        if horizon is not None and emergency_depart >= horizon:
            raise SignalError(
                f"emergency_depart {emergency_depart:g} s is not before the end of the "
                f"simulation ({horizon:g} s)",
                parameter="emergency_depart",
            )
    if emergency is not None:
        if len(emergency) < 2:
            raise SignalError(
                "the emergency route needs at least two edges (its start and its end)",
                parameter="emergency",
            )
        try:
            full_route(net, emergency)
        except SignalError as error:
            raise SignalError(f"emergency route: {error}", parameter="emergency") from error


def _corridor(
    scenario: sumo.Scenario,
    setup: Setup,
    route: Sequence[str],
    result: Evaluation,
    depart: float | None,
    folder: Path,
) -> dict[str, Any]:
    """Measure the emergency corridor under one variant's plans or controller."""
    if setup.controller is None:
        return evaluate_corridor(
            scenario,
            setup.net,
            [*scenario.additional, *setup.programs],
            route,
            seeds=result.seeds,
            depart=depart,
            end=result.end,
            workdir=folder,
        )
    return controlled_corridor(
        scenario,
        setup,
        route,
        controller_factory=controller_factory(setup),
        priority=setup.priority,
        seeds=result.seeds,
        depart=depart,
        end=result.end,
        workdir=folder,
    )


def write_json(evaluation: Evaluation, path: str | os.PathLike[str]) -> Path:
    """Write an evaluation as JSON."""
    out = Path(path)
    out.write_text(json.dumps(evaluation.to_json(), indent=2), encoding="utf-8")
    return out
