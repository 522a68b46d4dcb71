"""What a signal plan is made of: links, phases, programs, signals and timed plans.

The vocabulary is SUMO's, as the reference tools and the simulator speak it: a signal controls
*links* (one per connection from an incoming lane to an outgoing edge, numbered by link index),
a *program* is a cycle of *phases*, and a phase's ``state`` gives one character per link
(``G`` protected green, ``g`` permissive green, ``y`` yellow, ``r`` red, ``o``/``O`` off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from layers.errors import ParameterError


class SignalError(ParameterError):
    """A signal, scenario or corridor the optimiser cannot work with (names what is missing)."""


@dataclass(frozen=True)
class Link:
    """One signal-controlled connection: an incoming lane to an outgoing edge.

    Attributes
    ----------
    index
        The link's index in the phase states.
    from_edge, to_edge
        Incoming and outgoing edge ids.
    from_lane
        Index of the incoming lane on ``from_edge`` (0 = rightmost).
    direction
        SUMO's turn direction: ``s`` straight, ``l``/``r`` left/right, ``L``/``R`` partly,
        ``t`` turn-around.
    passenger
        Whether the incoming lane admits cars (a bus lane does not).
    """

    index: int
    from_edge: str
    to_edge: str
    from_lane: int
    direction: str = "s"
    passenger: bool = True


@dataclass(frozen=True)
class Phase:
    """One phase of a program: its duration (s) and its state string."""

    duration: float
    state: str
    name: str | None = None

    @property
    def is_green(self) -> bool:
        """Whether the phase is a main green: some protected green and no yellow."""
        return "G" in self.state and "y" not in self.state

    @property
    def is_yellow(self) -> bool:
        """Whether the phase is a yellow change interval (yellow beside red)."""
        return "y" in self.state and "r" in self.state


@dataclass(frozen=True)
class Program:
    """A signal program: phases in cycle order and the offset, s.

    ``actuated`` marks a program SUMO runs by its detectors (type ``actuated``,
    ``delay_based``, ``NEMA`` ...): its durations are only a starting point, and a fixed-time
    timing does not stand in for it.
    """

    id: str
    phases: tuple[Phase, ...]
    offset: float = 0.0
    actuated: bool = False

    @property
    def cycle(self) -> float:
        """Cycle length, s."""
        return float(sum(p.duration for p in self.phases))

    def with_durations(self, durations: Mapping[int, float]) -> Program:
        """Return a copy with the phases at the given indices re-timed."""
        phases = tuple(
            replace(p, duration=float(durations[i])) if i in durations else p
            for i, p in enumerate(self.phases)
        )
        return replace(self, phases=phases)

    def to_json(self) -> list[dict[str, Any]]:
        """Phases as JSON: ``[{duration_s, state}]`` (the signals layer's ``phases`` field)."""
        return [{"duration_s": p.duration, "state": p.state} for p in self.phases]


@dataclass(frozen=True)
class Signal:
    """A signalised intersection: its links and the program it runs.

    Attributes
    ----------
    id
        The signal's id (SUMO's traffic-light id).
    links
        Controlled links by link index.
    program
        The program being timed (the base for optimisation).
    active
        Link indices of real vehicle movements (those the lane groups are built from).
    lon, lat
        Position (WGS84), when known.
    """

    id: str
    links: Mapping[int, Link]
    program: Program
    active: frozenset[int] = field(default_factory=frozenset)
    lon: float | None = None
    lat: float | None = None

    @property
    def size(self) -> int:
        """Length of the phase states."""
        return len(self.program.phases[0].state) if self.program.phases else 0

    def lanes_of(self, index: int) -> tuple[str, int]:
        """Return the incoming (edge, lane index) of a link."""
        link = self.links[index]
        return link.from_edge, link.from_lane


@dataclass(frozen=True)
class SignalTiming:
    """A timed program for one signal, with the figures it was computed from.

    Attributes
    ----------
    signal
        The signal's id.
    program
        The new program (phases with their durations, offset).
    cycle
        Cycle length, s.
    critical_ratios
        Critical flow ratio (flow / saturation flow) per green phase index.
    greens
        Green time per green phase index, s.
    delay_s
        Predicted mean delay per vehicle, s (HCM uniform + incremental delay).
    degree_of_saturation
        Highest volume/capacity ratio over the signal's lane groups.
    """

    signal: str
    program: Program
    cycle: float
    critical_ratios: Mapping[int, float]
    greens: Mapping[int, float]
    delay_s: float
    degree_of_saturation: float

    @property
    def offset(self) -> float:
        """Offset, s."""
        return self.program.offset

    def to_json(self) -> dict[str, Any]:
        """Return the timing as JSON (the API's and the stored plan's shape)."""
        return {
            "signal": self.signal,
            "program": self.program.id,
            "cycle_s": self.cycle,
            "offset_s": self.program.offset,
            "greens_s": {str(k): v for k, v in self.greens.items()},
            "critical_ratios": {str(k): round(v, 4) for k, v in self.critical_ratios.items()},
            "delay_s": round(self.delay_s, 2),
            "degree_of_saturation": round(self.degree_of_saturation, 3),
            "phases": self.program.to_json(),
        }
