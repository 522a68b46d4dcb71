"""Signal control in closed loop with SUMO: controllers behind one safety state machine.

:mod:`~routing.signals.control.base` holds the interface (stages, measurements, decisions) and
the :class:`SignalHead` every controller runs behind; :mod:`~routing.signals.control.detectors`
places the detectors that feed the measurements; :mod:`~routing.signals.control.runner` drives
SUMO through TraCI; :mod:`~routing.signals.control.safety` checks SUMO's signal-state output
against the rules. Controllers: max pressure (Varaiya 2013), actuated (gap-out / max-out, and
SUMO's built-in actuated programs as the peer), the twin's adaptive controller, and transit
signal priority wrapping any of them.
"""

from routing.signals.control.actuated import Actuated, actuated_programs
from routing.signals.control.adaptive import Adaptive
from routing.signals.control.base import (
    ControlledSignal,
    Controller,
    Decision,
    Measurements,
    SafetyRules,
    SignalHead,
    Stage,
    control_signals,
)
from routing.signals.control.coordinated import Coordinated, hybrid
from routing.signals.control.detectors import Detectors
from routing.signals.control.emergency import Preemption, with_preemption
from routing.signals.control.maxpressure import MaxPressure, stage_pressures
from routing.signals.control.priority import TransitPriority, with_priority
from routing.signals.control.runner import controlled_corridor, decision_time, run_controlled
from routing.signals.control.safety import Violation, check_states

__all__ = [
    "Actuated",
    "Adaptive",
    "ControlledSignal",
    "Controller",
    "Coordinated",
    "Decision",
    "Detectors",
    "MaxPressure",
    "Measurements",
    "Preemption",
    "SafetyRules",
    "SignalHead",
    "Stage",
    "TransitPriority",
    "Violation",
    "actuated_programs",
    "check_states",
    "control_signals",
    "controlled_corridor",
    "decision_time",
    "hybrid",
    "run_controlled",
    "stage_pressures",
    "with_preemption",
    "with_priority",
]
