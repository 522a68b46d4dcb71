"""Actuated control: SUMO's built-in actuated programs (the peer) and the twin's own controller.

- :func:`actuated_programs` writes the base programs as SUMO ``tlLogic type="actuated"``
  programs: SUMO then extends each green phase while its own detectors (placed by SUMO on the
  incoming lanes) see vehicles within the maximum gap, between ``minDur`` and ``maxDur``.
- :class:`Actuated` is the same logic as a controller behind the twin's safety head, on the
  twin's stop-line detectors: gap-out when every lane the stage serves has been free for the
  gap (3 s), max-out at the maximum green, then the next stage in cycle order that has
  demand (stages without vehicles waiting are skipped); with no demand anywhere the green rests.

References
----------
FHWA, *Traffic Signal Timing Manual*, 2nd ed., 2015, section 5.3 (passage time / gap-out
3 s, max-out, phase skipping without calls). SUMO documentation, "Traffic Lights",
section "Actuated Traffic Lights" (type ``actuated``, ``minDur``/``maxDur``, default
``max-gap`` 3 s and detectors built by SUMO).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from routing.signals.control.base import (
    ControlledSignal,
    Decision,
    Measurements,
    SafetyRules,
    checked_number,
)
from routing.signals.model import Phase, Program

GAP_S = 3.0
PROGRAM_ID = "twin-actuated"


def merge_repeats(program: Program) -> Program:
    """Return the program with consecutive phases of the same state merged into one.

    UTOPIA-style programs split one green into several phases of the same state; an actuated
    program must extend the green as one phase.

    Parameters
    ----------
    program
        A program.

    Returns
    -------
    Program
        The same cycle with repeated states merged (durations added).
    """
    phases: list[Phase] = []
    for ph in program.phases:
        if phases and phases[-1].state == ph.state:
            phases[-1] = Phase(phases[-1].duration + ph.duration, ph.state, phases[-1].name)
        else:
            phases.append(ph)
    if len(phases) > 1 and phases[0].state == phases[-1].state:
        last = phases.pop()
        phases[0] = Phase(phases[0].duration + last.duration, last.state, phases[0].name)
    return Program(program.id, tuple(phases), program.offset)


def actuated_programs(
    signals: Mapping[str, ControlledSignal],
    path: Path,
    *,
    rules: SafetyRules | None = None,
    program_id: str = PROGRAM_ID,
    max_gap_s: float = GAP_S,
) -> Path:
    """Write the signals' base programs as SUMO actuated programs (the built-in peer).

    Each green phase (:attr:`Phase.is_green`, repeats merged) gets ``minDur`` = the stage's
    minimum green and ``maxDur`` = the maximum green, shortened where needed so that a cycle
    with every green maxed out stays within ``rules.max_cycle_s`` (the extensions above the
    minimum are scaled down alike); every other phase (yellow, all-red, partial greens)
    keeps its fixed duration. SUMO builds its own detectors for the ``actuated`` type.

    Parameters
    ----------
    signals
        The controlled signals (base programs and stages).
    path
        The additional file to write (in the run's work folder).
    rules
        The safety rules.
    program_id
        The ``programID`` written (it becomes the running program, loaded last).
    max_gap_s
        SUMO's ``max-gap`` parameter: the gap that ends a green, s (FHWA TSTM 2015: 3 s).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    SignalError
        When ``max_gap_s`` is not positive.
    """
    max_gap_s = checked_number(max_gap_s, "max_gap_s")
    rules = rules or SafetyRules()
    root = ET.Element("additional")
    for sid, signal in signals.items():
        program = merge_repeats(signal.signal.program)
        minimum = {s.state: s.min_green_s for s in signal.stages}
        greens = [i for i, ph in enumerate(program.phases) if ph.is_green]
        fixed = sum(ph.duration for i, ph in enumerate(program.phases) if i not in greens)
        low = {i: minimum.get(program.phases[i].state, rules.min_green_s) for i in greens}
        high = {i: max(rules.max_green_s, low[i]) for i in greens}
        extension = sum(high[i] - low[i] for i in greens)
        room = rules.max_cycle_s - fixed - sum(low.values())
        scale = 1.0 if extension <= room else max(room, 0.0) / extension
        el = ET.SubElement(
            root, "tlLogic", id=sid, type="actuated", programID=program_id, offset="0"
        )
        ET.SubElement(el, "param", key="max-gap", value=f"{max_gap_s:g}")
        for i, ph in enumerate(program.phases):
            if i in low:
                top = low[i] + (high[i] - low[i]) * scale
                ET.SubElement(
                    el,
                    "phase",
                    duration=f"{min(max(ph.duration, low[i]), top):.1f}",
                    state=ph.state,
                    minDur=f"{low[i]:.1f}",
                    maxDur=f"{top:.1f}",
                )
            else:
                ET.SubElement(el, "phase", duration=f"{ph.duration:g}", state=ph.state)
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path


class Actuated:
    """The twin's actuated controller: gap-out, max-out, next stage with demand.

    Parameters
    ----------
    gap_s
        Passage time: the stage gaps out when every lane it serves has seen no vehicle
        pass its stop line for this long, s (FHWA TSTM 2015 section 5.3.3: 3 s).

    Raises
    ------
    SignalError
        When ``gap_s`` is not positive.
    """

    def __init__(self, *, gap_s: float = GAP_S) -> None:
        self.gap_s = checked_number(gap_s, "gap_s")
        self.name = "actuated"

    def reset(self, signal: ControlledSignal) -> None:
        """Forget all state (the controller keeps none).

        Parameters
        ----------
        signal
            The signal.
        """

    def decide(
        self, now: float, signal: ControlledSignal, current: int, green_s: float, m: Measurements
    ) -> Decision:
        """Keep the stage while vehicles keep coming; else the next stage with demand.

        Parameters
        ----------
        now
            Simulation time, s.
        signal
            The signal.
        current
            The stage being served.
        green_s
            How long it has been green, s.
        m
            The measurements (``gap_s`` and ``count`` per incoming lane).

        Returns
        -------
        Decision
            The current stage (``extend``, or ``rest`` with no demand elsewhere), or the next
            stage with demand (``gap-out`` or ``max-out``).
        """
        stage = signal.stages[current]
        lanes = {signal.link_in[i] for i in stage.green if signal.link_in[i] >= 0}
        maxed = green_s + 1e-9 >= stage.max_green_s
        gapped = all(m.gap_s[k] >= self.gap_s for k in lanes)
        if not maxed and not gapped:
            return Decision(current, "extend")
        n = len(signal.stages)
        for step in range(1, n):
            other = signal.stages[(current + step) % n]
            waiting = {
                signal.link_in[i] for i in other.green - stage.green if signal.link_in[i] >= 0
            }
            if any(m.count[k] > 0 for k in waiting):
                return Decision(other.index, "max-out" if maxed else "gap-out")
        return Decision(current, "rest")
