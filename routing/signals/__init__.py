"""Traffic-signal optimisation, proven in SUMO.

Webster timing per intersection (equal to SUMO's ``tlsCycleAdaptation.py`` on its settings),
green waves by MAXBAND, protected-left phase design by the HCM warrants (:mod:`.phasing`), the
emergency green corridor, real-time control behind one safety head (:mod:`.control`: max
pressure, actuated, the twin's adaptive controller, transit priority) and the evaluation of
plans and controllers in SUMO over several seeds. The SUMO bridge reads scenarios, networks,
programs and demand, and writes plans back as SUMO additional files.
"""

from routing.signals.evaluation import VARIANTS, Evaluation, evaluate, write_json
from routing.signals.greenwave import CorridorSignal, GreenWave, coordinate, green_window, maxband
from routing.signals.model import Link, Phase, Program, Signal, SignalError, SignalTiming
from routing.signals.phasing import design_phases
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
    "design_phases",
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
