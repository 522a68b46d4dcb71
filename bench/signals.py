"""Traffic-signal benchmark: the twin's optimiser vs SUMO's own tools and a city's real plans.

Not a test. In one run:

1. plans proven in SUMO, on the two real Bologna scenarios of ../shared/data/bologna (Andrea
   Costa and Pasubio: the city's own signal programs, counted demand, buses):
   ``routing.signals.evaluation.evaluate`` runs every variant under the same seeds, re-timing
   the city's programs (``base="scenario"``: ``scenario`` = the city's real plans, ``network``
   = netconvert's default programs, SUMO's ``tlsCycleAdaptation.py`` and ``tlsCoordinator.py``,
   the twin's ``webster`` and ``webster+greenwave``), then again re-timing the network's
   default programs (``base="network"``: the tools and the twin only). Printed: each
   evaluation's table, the mean time loss with its 95% Student-t interval per variant, the
   twin's gain over the default plans, its ratio to SUMO's tools (same base) and to the city's
   plans. SUMO's time loss leaves out the time a vehicle waits to enter the network, so the
   time loss plus the depart delay is printed too;
2. the emergency green corridor on the same scenarios: the route of the scenario's vehicles
   crossing the most signals that an emergency vehicle may drive (not a bus-only street), one
   emergency vehicle departing at 1200 s, driven through TraCI with and without the corridor
   (``preemption.evaluate_corridor``), under the city's real plans and under the twin's Webster
   plan. No peer: SUMO has no pre-emption controller;
3. optimisation speed on a 500-intersection city: a 23 x 23 grid of signals made by SUMO's
   ``netgenerate``, an hour of demand from SUMO's ``randomTrips.py`` (period 0.3 s). The twin's
   whole pipeline (read the network, build the signals, read the routes, count the link flows,
   Webster for every signal, write the additional file) best of 5, and the optimisation alone
   (``plans.optimise``), vs the peer ``tlsCycleAdaptation.py`` on the same files (a process
   doing the same steps) best of 3. The goal: the optimisation under 2 s.

4. real-time control (issue 17) on Bologna's two scenarios and Hamburg's tavf: the scenario's
   own programs, the twin's Webster, SUMO's built-in actuated programs (peer), max pressure in
   10 s slots (Varaiya 2013, peer), the twin's adaptive controller with and without transit
   priority, and coordinated control; goals printed (adaptive <= max pressure, <= 0.8x the
   city's plans, Webster never worse than the scenario's programs, bus delay -20% at <= +3%
   for everyone else);
5. generated phases on netconvert's default programs (base network): the defaults, SUMO's
   tlsCycleAdaptation.py, the adaptive controller, the twin's phase design timed by Webster and
   run by the adaptive controller (goal <= 0.5x the defaults, never worse than SUMO's tool);
6. one controller decision for 500 signals per simulation step (goal <= 50 ms);
7. the emergency corridor on top of each real-time controller.

Usage: ``python bench/signals.py [--seeds 3] [--parts plans,emergency,speed,control,phases,
decisions,preemption] [--scenarios acosta,pasubio,tavf] [--variants ...]``.
Prints the figures and ratios.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from routing.signals import plans, preemption, sumo
from routing.signals.evaluation import VARIANTS, Evaluation, Interval, evaluate, prepare
from routing.signals.preemption import plan_corridor

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "bologna"
SCENARIOS = ("acosta", "pasubio")
TOOLS = ("tlsCycleAdaptation", "tlsCoordinator")
OURS = ("webster", "webster+greenwave")
NETWORK_VARIANTS = (*TOOLS, *OURS)
EMERGENCY_DEPART_S = 1200.0
GOAL_S = 2.0


def less(value: float, reference: float) -> float:
    """Percent less than the reference (negative: more)."""
    return 100.0 * (reference - value) / reference if reference else float("nan")


def interval(i: Interval) -> str:
    if i.low is None or i.high is None:
        return f"{i.mean:6.1f}"
    return f"{i.mean:6.1f} [{i.low:6.1f}, {i.high:6.1f}]"


def per_variant(evaluation: Evaluation, metric: str) -> dict[str, float]:
    """Mean of a metric per variant (over the seeds)."""
    return {v: m[metric].mean for v, m in evaluation.summary().items()}


def total_loss(evaluation: Evaluation) -> dict[str, Interval]:
    """Per variant: time loss + depart delay, its mean and interval over the seeds."""
    out = {}
    for variant in dict.fromkeys(r.variant for r in evaluation.runs):
        runs = [r for r in evaluation.runs if r.variant == variant]
        out[variant] = Interval.of([r.time_loss_s + r.depart_delay_s for r in runs])
    return out


# --- 1. plans in SUMO -----------------------------------------------------------------------


def plans_in_sumo(seeds: int) -> None:
    print(f"\n== 1. signal plans in SUMO: {seeds} seeds per variant, same demand and seeds")
    for name in SCENARIOS:
        config = DATA / name / "run.sumocfg"
        print(f"\n--- {name}: base 'scenario' (the city's phase sequences re-timed)")
        city = evaluate(config, seeds=seeds, variants=VARIANTS, base="scenario", progress=print)
        print(f"\n--- {name}: base 'network' (netconvert's default phase sequences re-timed)")
        default = evaluate(
            config, seeds=seeds, variants=NETWORK_VARIANTS, base="network", progress=print
        )
        report(name, city, default)


def report(name: str, city: Evaluation, default: Evaluation) -> None:
    runs = city.runs[0].vehicles if city.runs else 0
    print(f"\n=== {name}: {runs} vehicles per run, seeds {city.seeds}")
    for label, evaluation in (("base scenario", city), ("base network", default)):
        print(f"\n[{label}] mean [95% interval] over the seeds")
        print(evaluation.table())
    print("\nmean time loss, s [95% interval]; time loss + depart delay, s [95% interval]")
    for label, evaluation in (("scenario", city), ("network", default)):
        loss = {v: m["time_loss_s"] for v, m in evaluation.summary().items()}
        total = total_loss(evaluation)
        for variant in loss:
            if label == "network" and variant not in NETWORK_VARIANTS:
                continue
            tag = f"{variant} (base {label})"
            print(f"  {tag:36} {interval(loss[variant])}   {interval(total[variant])}")
    loss_city = per_variant(city, "time_loss_s")
    loss_default = per_variant(default, "time_loss_s")
    total_city = {v: i.mean for v, i in total_loss(city).items()}
    total_default = {v: i.mean for v, i in total_loss(default).items()}
    reference_loss = loss_city["network"]
    reference_scenario = loss_city["scenario"]
    reference_total = total_city["network"]
    print("\nratios (time loss; in brackets: time loss + depart delay)")
    for base, loss, total in (
        ("scenario", loss_city, total_city),
        ("network", loss_default, total_default),
    ):
        for ours in OURS:
            tag = f"{ours} (base {base})"
            parts = [
                f"{less(loss[ours], reference_loss):+6.1f}% "
                f"({less(total[ours], reference_total):+6.1f}%) less than 'network'",
                *(
                    f"{loss[ours] / loss[tool]:.2f}x ({total[ours] / total[tool]:.2f}x) {tool}"
                    for tool in TOOLS
                ),
                f"{loss[ours] / reference_scenario:.2f}x "
                f"({total[ours] / total_city['scenario']:.2f}x) 'scenario'",
            ]
            print(f"  {tag:35} " + "; ".join(parts))
    for tool in TOOLS:
        for base, loss in (("scenario", loss_city), ("network", loss_default)):
            tag = f"{tool} (base {base})"
            print(
                f"  {tag:35} {less(loss[tool], reference_loss):+6.1f}% less than 'network'; "
                f"{loss[tool] / reference_scenario:.2f}x 'scenario'"
            )
    city_plans = "'scenario' (the city's plans)"
    gain = less(reference_scenario, reference_loss)
    print(f"  {city_plans:35} {gain:+6.1f}% less than 'network'")
    teleports = {
        f"{v} (base {base})": round(m["teleports"].mean, 1)
        for base, e in (("scenario", city), ("network", default))
        for v, m in e.summary().items()
        if m["teleports"].mean
    }
    if teleports:
        print(f"  teleports (mean per run): {teleports}")


# --- 2. emergency green corridor ------------------------------------------------------------


def busiest_route(config: Path) -> tuple[list[str], int]:
    """The route of the scenario's vehicles crossing the most signals, that an emergency
    vehicle may drive (the busiest route of all may run on a bus-only street)."""
    sc = sumo.read_scenario(config)
    net = sc.read_net()
    sig = sumo.signals_of(net, sumo.read_programs(sc.programs))
    trips = [t for t in sumo.read_trips(sc.routes) if preemption.drivable(net, t.edges)]
    best = max(trips, key=lambda t: len(plan_corridor(net, sig, t.edges)))
    return list(best.edges), len(plan_corridor(net, sig, best.edges))


def corridor(config: Path, plan: str, seeds: int) -> dict[str, Any]:
    """One scenario's corridor under one plan (``scenario`` or ``webster``); own process."""
    sc = sumo.read_scenario(config)
    route, _ = busiest_route(config)
    with tempfile.TemporaryDirectory(prefix="bench-corridor-") as tmp:
        folder = Path(tmp)
        if plan == "scenario":
            net, additional = sc.net, [*sc.additional, *sc.programs]
        else:
            setup = prepare(sc, folder, variants=("webster",))["webster"]
            net, additional = setup.net, [*sc.additional, *setup.programs]
        return preemption.evaluate_corridor(
            sc,
            net,
            additional,
            route,
            seeds=list(range(1, seeds + 1)),
            depart=EMERGENCY_DEPART_S,
            end=None,
            workdir=folder,
        )


def emergency(seeds: int) -> None:
    print(f"\n== 2. emergency green corridor: departs at {EMERGENCY_DEPART_S:.0f} s, {seeds} seeds")
    jobs = [(name, plan) for name in SCENARIOS for plan in ("scenario", "webster")]
    # separate processes: TraCI labels its connections by process id and seed
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {
            job: pool.submit(corridor, DATA / job[0] / "run.sumocfg", job[1], seeds) for job in jobs
        }
        results = {job: f.result() for job, f in futures.items()}
    print(
        f"{'scenario':9} {'plans':9} {'edges':>5} {'signals':>7} {'without s':>9} "
        f"{'with s':>7} {'faster':>7} {'others loss s':>14} {'others extra':>12}"
    )
    for (name, plan), r in results.items():
        print(
            f"{name:9} {plan:9} {len(r['route']):5d} {len(r['holds']):7d} "
            f"{r['travel_time_without_s']:9.1f} {r['travel_time_with_s']:7.1f} "
            f"{r['faster_pct']:6.1f}% "
            f"{r['others_time_loss_without_s']:6.1f}→{r['others_time_loss_with_s']:6.1f} "
            f"{r['others_extra_delay_pct']:+11.2f}%"
        )
        seeds_line = ", ".join(
            f"seed {s['seed']}: {s['travel_time_without_s']:.0f}→{s['travel_time_with_s']:.0f} s"
            for s in r["seeds"]
        )
        print(f"{'':19} {seeds_line}")


# --- 3. optimisation speed on a 500-signal grid -------------------------------------------


def best_of(function: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """Seconds of the best of ``repeat`` calls, and every call's."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times), times


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {(done.stderr or done.stdout)[-2000:]}")


def grid(folder: Path) -> tuple[Path, Path]:
    """A 23 x 23 grid of signalised junctions and an hour of random trips on it."""
    net = folder / "grid.net.xml"
    routes = folder / "grid.rou.xml"
    run(
        [
            sumo.sumo_binary("netgenerate"),
            "--grid",
            "--grid.number=23",
            "--grid.length=200",
            "--grid.attach-length=100",
            "--default-junction-type=traffic_light",
            "-o",
            str(net),
        ]
    )
    run(
        [
            sys.executable,
            sumo.sumo_tool("randomTrips.py"),
            "-n",
            str(net),
            "-r",
            str(routes),
            "-o",
            str(folder / "grid.trips.xml"),
            "-e",
            "3600",
            "--period",
            "0.3",
            "--seed",
            "1",
        ]
    )
    return net, routes


def speed() -> None:
    print("\n== 3. optimisation speed: 23 x 23 signal grid (netgenerate), randomTrips period 0.3 s")
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        net_file, routes = grid(folder)
        print(f"network and demand generated in {time.perf_counter() - started:.1f} s")
        net = sumo.read_net(net_file)
        signals = sumo.signals_of(net)
        trips = sumo.read_trips([routes])
        flows = sumo.link_flows(net, signals, trips)
        links = sum(len(s.links) for s in signals.values())
        print(f"signals: {len(signals)}, signal links: {links}, vehicles: {len(trips)}")
        assert len(signals) >= 500, f"only {len(signals)} signals"

        def pipeline() -> plans.Plan:
            n = sumo.read_net(net_file)
            s = sumo.signals_of(n)
            t = sumo.read_trips([routes])
            plan = plans.optimise(s, sumo.link_flows(n, s, t))
            sumo.write_additional(plan.timings.values(), folder / "twin.add.xml")
            return plan

        plan = plans.optimise(signals, flows)
        print(f"twin: {len(plan.timings)} signals timed, {len(plan.idle)} idle (no flow)")
        optimise_s, optimise_all = best_of(lambda: plans.optimise(signals, flows), 5)
        pipeline_s, pipeline_all = best_of(pipeline, 5)
        out = folder / "tca.add.xml"
        tool = [
            sys.executable,
            sumo.sumo_tool("tlsCycleAdaptation.py"),
            "-n",
            str(net_file),
            "-r",
            str(routes),
            "-o",
            str(out),
        ]
        peer_s, peer_all = best_of(lambda: run(tool), 3)
        peer_signals = sum(1 for el in ET.parse(out).getroot() if el.tag == "tlLogic")
        startup_s, _ = best_of(lambda: run([sys.executable, "-c", "import sumolib"]), 3)
    print(f"tlsCycleAdaptation.py: {peer_signals} signals written")
    rows = (
        ("twin plans.optimise (best of 5)", optimise_s, optimise_all),
        ("twin full pipeline (best of 5)", pipeline_s, pipeline_all),
        ("tlsCycleAdaptation.py (best of 3)", peer_s, peer_all),
        ("  of which python + import sumolib", startup_s, None),
    )
    for label, best, every in rows:
        others = f"  (all: {', '.join(f'{t:.2f}' for t in every)})" if every else ""
        print(f"{label:36} {best:8.3f} s{others}")
    print(
        f"ratio tlsCycleAdaptation.py / twin pipeline: {peer_s / pipeline_s:.2f}x; "
        f"/ twin optimise: {peer_s / optimise_s:.1f}x"
    )
    # the hard case: UTOPIA's multi-phase stages with lanes served by several stages, where
    # every signal needs the two linear programs: Bologna's 15 signals, 34 times over
    staged: dict[str, Any] = {}
    staged_flows: dict[str, dict[int, float]] = {}
    for name in SCENARIOS:
        sigs, fl = sumo.scenario_signals(sumo.read_scenario(DATA / name / "run.sumocfg"))
        for copy in range(34):
            for sid, signal in sigs.items():
                key = f"{name}-{copy}:{sid}"
                staged[key] = signal
                staged_flows[key] = fl[sid]
    hard_s, hard_all = best_of(lambda: plans.optimise(staged, staged_flows), 5)
    print(
        f"{'twin plans.optimise, 510 UTOPIA signals':36} {hard_s:8.3f} s"
        f"  (all: {', '.join(f'{t:.2f}' for t in hard_all)})"
    )
    verdict = "under" if max(optimise_s, hard_s) < GOAL_S else "OVER"
    print(
        f"goal: optimisation of {len(signals)} signals ({len(plan.timings)} with flow) "
        f"under {GOAL_S:.0f} s: "
        f"{verdict} (grid {optimise_s:.3f} s, UTOPIA-style {hard_s:.3f} s); "
        f"whole pipeline {pipeline_s:.2f} s"
    )


# --- 4. signals that adapt in real time ------------------------------------------------------

HAMBURG = HERE.parents[1] / "shared" / "data" / "hamburg" / "tavf" / "run_simulation.sumocfg"
CONTROL_SCENARIOS = {
    "acosta": DATA / "acosta" / "run.sumocfg",
    "pasubio": DATA / "pasubio" / "run.sumocfg",
    "tavf": HAMBURG,
}
# Bologna's demand is counted for one hour (the run is cut there, every variant alike);
# Hamburg's scenario is 20 minutes long (its own end).
CONTROL_END_S = {"acosta": 3600.0, "pasubio": 3600.0, "tavf": 1200.0}
CONTROLLED = (
    "scenario",
    "webster",
    "actuated",
    "max-pressure",
    "adaptive",
    "adaptive+priority",
    "coordinated",
)
PHASED = ("network", "tlsCycleAdaptation", "adaptive", "phased", "phased+adaptive")
DECISION_GOAL_MS = 50.0


def controllers(seeds: int, names: list[str], variants: tuple[str, ...] = CONTROLLED) -> None:
    print(f"\n== 4. real-time control: {seeds} seeds per variant, same demand and seeds")
    results: dict[str, Evaluation] = {}
    for name in names:
        config = CONTROL_SCENARIOS[name]
        print(f"\n--- {name}: fixed plans vs actuated, max-pressure and the twin's adaptive")
        results[name] = evaluate(
            config,
            seeds=seeds,
            variants=variants,
            base="scenario",
            end=CONTROL_END_S[name],
            progress=print,
        )
        print(results[name].table())
    print("\nmean time loss, s [95% interval]; goals: adaptive <= max-pressure everywhere,")
    print("<= 0.8x the city's plans on Bologna's; Webster never worse than the scenario's plans")
    for name, evaluation in results.items():
        loss = {v: m["time_loss_s"] for v, m in evaluation.summary().items()}
        print(f"\n  {name}")
        for variant, i in loss.items():
            print(f"    {variant:22} {interval(i)}")
        city = loss["scenario"].mean
        for ours_name in ("adaptive", "coordinated"):
            if ours_name not in loss:
                continue
            ours = loss[ours_name].mean
            if "max-pressure" in loss:
                peer = loss["max-pressure"].mean
                met = "met" if ours <= peer else "NOT met"
                print(f"    {ours_name} / max-pressure {ours / peer:.2f}x ({met})")
            if name != "tavf":
                met = "met" if ours <= 0.8 * city else "NOT met"
                print(f"    {ours_name} / the city's plans {ours / city:.2f}x (<= 0.8x: {met})")
            if "actuated" in loss:
                print(f"    actuated (SUMO's) / {ours_name} {loss['actuated'].mean / ours:.2f}x")
        if "webster" in loss:
            met = "met" if loss["webster"].mean <= city else "NOT met"
            print(f"    webster / the scenario's plans {loss['webster'].mean / city:.2f}x ({met})")
        if "adaptive+priority" not in loss or "adaptive" not in loss:
            continue
        bus = {
            v: Interval.of([r.bus_time_loss_s for r in evaluation.runs if r.variant == v])
            for v in ("adaptive", "adaptive+priority")
        }
        others = {
            v: Interval.of([r.others_time_loss_s for r in evaluation.runs if r.variant == v])
            for v in ("adaptive", "adaptive+priority")
        }
        if any(r.buses for r in evaluation.runs):
            b0, b1 = bus["adaptive"].mean, bus["adaptive+priority"].mean
            o0, o1 = others["adaptive"].mean, others["adaptive+priority"].mean
            bus_gain, others_cost = less(b1, b0), -less(o1, o0)
            met = "met" if bus_gain >= 20.0 and others_cost <= 3.0 else "NOT met"
            print(
                f"    transit priority: bus time loss {b0:.1f} -> {b1:.1f} s "
                f"({bus_gain:+.1f}% less), everyone else {o0:.1f} -> {o1:.1f} s "
                f"({others_cost:+.1f}%) (goal bus -20% at <= +3% others: {met})"
            )


def phases(seeds: int, names: list[str]) -> None:
    print(f"\n== 5. generated phases on netconvert's default programs: {seeds} seeds")
    for name in names:
        config = CONTROL_SCENARIOS[name]
        evaluation = evaluate(
            config,
            seeds=seeds,
            variants=PHASED,
            base="network",
            end=CONTROL_END_S[name],
            progress=print,
        )
        print(evaluation.table())
        loss = {v: m["time_loss_s"].mean for v, m in evaluation.summary().items()}
        ours, default = loss["phased+adaptive"], loss["network"]
        met = "met" if ours <= 0.5 * default else "NOT met"
        print(
            f"  {name}: phased+adaptive / network defaults {ours / default:.2f}x (<= 0.5x: {met})"
        )
        tool = loss.get("tlsCycleAdaptation")
        if tool is not None:
            met = "met" if ours <= tool else "NOT met"
            print(f"  {name}: phased+adaptive / tlsCycleAdaptation {ours / tool:.2f}x ({met})")


def decisions() -> None:
    """Decision time of each controller for 500 signals (acosta's signals repeated)."""
    from routing.signals.control import (
        Actuated,
        Adaptive,
        MaxPressure,
        SafetyRules,
        control_signals,
        decision_time,
    )

    print("\n== 6. controller decisions for 500 signals, per simulation step (no SUMO)")
    sc = sumo.read_scenario(DATA / "acosta" / "run.sumocfg")
    net = sc.read_net()
    signals = control_signals(
        net, sumo.signals_of(net, sumo.read_programs(sc.programs)), rules=SafetyRules()
    )
    city = [list(signals.values())[k % len(signals)] for k in range(500)]
    for label, factory in (
        ("max-pressure", lambda _s: MaxPressure(slot_s=10.0)),
        ("actuated (ours)", lambda _s: Actuated()),
        ("adaptive", lambda _s: Adaptive()),
    ):
        best = min(decision_time(factory, city, steps=100) for _ in range(3)) * 1000.0
        met = "met" if best <= DECISION_GOAL_MS else "NOT met"
        print(f"  {label:18} {best:6.1f} ms per step (goal <= {DECISION_GOAL_MS:g} ms: {met})")


PREEMPTION_DEPART_S, PREEMPTION_END_S = 300.0, 900.0


def preemption_on_controllers(seeds: int) -> None:
    """The emergency corridor on top of each real-time controller (same seed with and without)."""
    from routing.signals.control import Actuated, Adaptive, MaxPressure, controlled_corridor
    from routing.signals.runs import Setup

    print(
        f"\n== 7. the emergency corridor on real-time controllers: departs at "
        f"{PREEMPTION_DEPART_S:.0f} s, horizon {PREEMPTION_END_S:.0f} s, {seeds} seeds"
    )
    factories = {
        "max-pressure": lambda _s: MaxPressure(slot_s=10.0),
        "actuated (ours)": lambda _s: Actuated(),
        "adaptive": lambda _s: Adaptive(),
    }
    for name in SCENARIOS:
        config = DATA / name / "run.sumocfg"
        sc = sumo.read_scenario(config)
        route, crossed = busiest_route(config)
        for label, factory in factories.items():
            with tempfile.TemporaryDirectory(prefix="bench-preemption-") as tmp:
                r = controlled_corridor(
                    sc,
                    Setup(sc.net, sc.programs),
                    route,
                    controller_factory=factory,
                    seeds=list(range(1, seeds + 1)),
                    depart=PREEMPTION_DEPART_S,
                    end=PREEMPTION_END_S,
                    workdir=Path(tmp),
                )
            print(
                f"  {name:8} {label:16} {crossed} signals: travel "
                f"{r['travel_time_without_s']:6.1f} -> {r['travel_time_with_s']:6.1f} s "
                f"({r['faster_pct']:5.1f}% faster), red wait {r['red_wait_without_s']:5.1f} -> "
                f"{r['red_wait_with_s']:4.1f} s, everyone else {r['others_extra_delay_pct']:+.2f}%"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="SUMO seeds per variant")
    parser.add_argument(
        "--parts",
        default="plans,emergency,speed,control,phases,decisions,preemption",
        help="comma-separated parts to run: plans (1), emergency (2), speed (3), control (4), "
        "phases (5), decisions (6), preemption (7)",
    )
    parser.add_argument(
        "--scenarios",
        default="acosta,pasubio,tavf",
        help="scenarios of parts 4 and 5 (acosta, pasubio, tavf)",
    )
    parser.add_argument("--variants", default=None, help="variants of part 4 (all by default)")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    if "plans" in parts:
        plans_in_sumo(args.seeds)
    if "emergency" in parts:
        emergency(args.seeds)
    if "speed" in parts:
        speed()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    if "control" in parts:
        chosen = tuple(v.strip() for v in args.variants.split(",")) if args.variants else CONTROLLED
        controllers(args.seeds, names, chosen)
    if "phases" in parts:
        phases(args.seeds, [n for n in names if n != "tavf"])
    if "decisions" in parts:
        decisions()
    if "preemption" in parts:
        preemption_on_controllers(args.seeds)


if __name__ == "__main__":
    main()
