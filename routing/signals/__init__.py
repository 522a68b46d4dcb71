"""Traffic-signal optimisation, proven in SUMO.

Webster timing per intersection (equal to SUMO's ``tlsCycleAdaptation.py`` on its settings),
green waves by MAXBAND, the emergency green corridor, and the evaluation of plans in SUMO over
several seeds. The SUMO bridge reads scenarios, networks, programs and demand, and writes plans
back as SUMO additional files.
"""

from routing.signals.evaluation import VARIANTS, Evaluation, evaluate, write_json
from routing.signals.greenwave import CorridorSignal, GreenWave, coordinate, green_window, maxband
from routing.signals.model import Link, Phase, Program, Signal, SignalError, SignalTiming
from routing.signals.plans import Plan, optimise, optimise_scenario
from routing.signals.preemption import Hold, evaluate_corridor, plan_corridor
from routing.signals.sumo import (
    Scenario,
    additional_xml,
    link_flows,
    read_net,
    read_programs,
    read_scenario,
    read_trips,
    signals_of,
    write_additional,
)
from routing.signals.webster import WebsterSettings, webster

__all__ = [
    "VARIANTS",
    "CorridorSignal",
    "Evaluation",
    "GreenWave",
    "Hold",
    "Link",
    "Phase",
    "Plan",
    "Program",
    "Scenario",
    "Signal",
    "SignalError",
    "SignalTiming",
    "WebsterSettings",
    "additional_xml",
    "coordinate",
    "evaluate",
    "evaluate_corridor",
    "green_window",
    "link_flows",
    "maxband",
    "optimise",
    "optimise_scenario",
    "plan_corridor",
    "read_net",
    "read_programs",
    "read_scenario",
    "read_trips",
    "signals_of",
    "webster",
    "write_additional",
    "write_json",
]
