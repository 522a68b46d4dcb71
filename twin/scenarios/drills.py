"""Drills (演练): a pre-plan run against the twin with a clock, its actions logged, then reviewed.

A drill starts from a pre-plan and a place (the pre-plan is applied: a new scenario,
:func:`twin.scenarios.preplans.apply`) or from a scenario a pre-plan made. The store records
when it started by its own clock (``clock_timestamp()``; a drill replayed from a paper log
starts at the moment given, in the past), who started it, the scenario and the pre-plan version
(migration 0018, ``drills``; the scenario cannot be deleted while a drill references it). Each
action is logged with who did it (the free-text ``actor``), who logged it (the signed-in caller),
what, for which checklist step, and when: by the store's clock, or at a given number of seconds
after the start (a replay) that has already come (:data:`CLOCK_TOLERANCE_S`). Ending it stamps
the end the same way.

The review compares, for every step of the pre-plan version drilled, the time its first action
was logged with the step's target: ``on_time`` (done by the target), ``late`` (done after it,
``late_s`` saying by how much), ``missed`` (the drill ended without it), ``overdue`` (not done,
the drill running and the target passed: ``late_s`` is how late so far), ``pending`` (not done,
its target still to come). The drill and its log stay in the store: a review can be read at any
time later.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql

from layers import access, scenarios
from layers.database import cursor, get_engine
from layers.errors import ParameterError
from twin.scenarios import preplans
from twin.scenarios.preplans import Preplan

if TYPE_CHECKING:
    from twin.city import City

#: Latest a replayed action or end may be stamped: a week after the start, s.
MAX_ELAPSED_S = 7 * 86_400.0
#: Longest name of an actor, characters.
MAX_ACTOR = 200
#: Statuses of a step in a review.
STATUSES = ("on_time", "late", "missed", "overdue", "pending")
#: How far past the store's clock a replayed moment may lie, s: the caller's clock and the
#: store's drift apart by a little, and a request takes a little to arrive.
CLOCK_TOLERANCE_S = 5.0


class DrillNotFoundError(LookupError):
    """No drill has that id (HTTP 404).

    Parameters
    ----------
    drill_id
        The id asked for.
    """

    def __init__(self, drill_id: object):
        super().__init__(f"drill_id: no drill {drill_id!r}; `twin drills list` shows them")
        self.drill_id = drill_id
        self.parameter = "drill_id"


class DrillEndedError(ValueError):
    """The drill has ended: nothing more is recorded in it (HTTP 409).

    Parameters
    ----------
    drill_id
        The drill.
    ended_at
        When it ended.
    """

    def __init__(self, drill_id: int, ended_at: datetime):
        super().__init__(f"drill_id: drill {drill_id} ended at {ended_at.isoformat()}")
        self.drill_id = drill_id
        self.ended_at = ended_at
        self.parameter = "drill_id"


@dataclass(frozen=True)
class Drill:
    """One drill as stored.

    Attributes
    ----------
    id
        ``drills.id``.
    preplan, preplan_version, preplan_vid
        The pre-plan drilled: its name, version number and version row id.
    scenario
        The scenario it ran on (its name, kept when the scenario is deleted).
    title, lead
        What the drill is and who leads it.
    started_at, ended_at
        By the store's clock (UTC); ``ended_at`` None while it runs.
    started_by
        Who started it: the signed-in caller ("" for the store's owner).
    """

    id: int
    preplan: str
    preplan_version: int
    preplan_vid: int
    scenario: str
    title: str
    lead: str
    started_at: datetime
    ended_at: datetime | None
    started_by: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the drill as JSON (RFC 3339 times; ``duration_s`` once ended)."""
        return {
            "id": self.id,
            "preplan": self.preplan,
            "preplan_version": self.preplan_version,
            "scenario": self.scenario,
            "title": self.title,
            "lead": self.lead,
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(),
            "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
            "duration_s": None
            if self.ended_at is None
            else (self.ended_at - self.started_at).total_seconds(),
        }


@dataclass(frozen=True)
class Action:
    """One action logged in a drill.

    Attributes
    ----------
    id
        ``drill_actions.aid``.
    drill_id
        The drill.
    step
        The checklist step it does, or None for an action outside the checklist.
    actor
        Who did it (free text: a crew, a unit, a person).
    what
        What was done (the step's English text when not given).
    at
        When (UTC).
    elapsed_s
        Seconds from the drill's start.
    logged_by
        Who logged it: the signed-in caller (``anonymous`` for an anonymous one, "" for the
        store's owner).
    """

    id: int
    drill_id: int
    step: str | None
    actor: str
    what: str
    at: datetime
    elapsed_s: float
    logged_by: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the action as JSON."""
        return {
            "id": self.id,
            "drill_id": self.drill_id,
            "step": self.step,
            "actor": self.actor,
            "what": self.what,
            "at": self.at.isoformat(),
            "elapsed_s": self.elapsed_s,
            "logged_by": self.logged_by,
        }


@dataclass(frozen=True)
class StepReview:
    """A checklist step in a review: its target and when it was done.

    Attributes
    ----------
    step
        The step's id.
    en, zh, role
        What it is and who does it.
    target_s
        Its target, s after the start.
    done_s
        When its first action was logged, s after the start; None if none was.
    by
        Who did that action (its ``actor``).
    status
        ``on_time``, ``late``, ``missed``, ``overdue`` (not done, the drill running, the target
        passed) or ``pending`` (not done, the target still to come).
    late_s
        How late: ``done_s - target_s`` when late, the drill's time so far minus the target
        when overdue; else None.
    """

    step: str
    en: str
    zh: str
    role: str
    target_s: float
    done_s: float | None
    by: str | None
    status: str
    late_s: float | None

    def to_json(self) -> dict[str, Any]:
        """Return the step's review as JSON."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Review:
    """A drill's review: every step against its target, and the whole log.

    Attributes
    ----------
    drill
        The drill.
    steps
        The pre-plan version's checklist, in its order.
    actions
        Every action, in the order of their times.
    elapsed_s
        The drill's time when reviewed, s from its start: its duration once ended, else the
        store's clock minus the start.
    """

    drill: Drill
    steps: list[StepReview]
    actions: list[Action]
    elapsed_s: float

    def summary(self) -> dict[str, Any]:
        """Return the counts per status, the share on time and whether the drill has ended.

        Returns
        -------
        dict
            ``steps``; ``on_time``, ``late``, ``missed``, ``overdue``, ``pending`` (counts);
            ``on_time_share`` (on time / steps); ``ended``; ``duration_s`` (None while it
            runs); ``elapsed_s`` (the drill's time when reviewed); ``actions``.
        """
        counts = {status: sum(s.status == status for s in self.steps) for status in STATUSES}
        return {
            "steps": len(self.steps),
            **counts,
            "on_time_share": counts["on_time"] / len(self.steps) if self.steps else None,
            "ended": self.drill.ended_at is not None,
            "duration_s": self.drill.to_json()["duration_s"],
            "elapsed_s": self.elapsed_s,
            "actions": len(self.actions),
        }

    def to_json(self) -> dict[str, Any]:
        """Return the review as JSON: ``drill``, ``summary``, ``steps``, ``actions``."""
        return {
            "drill": self.drill.to_json(),
            "summary": self.summary(),
            "steps": [s.to_json() for s in self.steps],
            "actions": [a.to_json() for a in self.actions],
        }


# -- the store ----------------------------------------------------------------------------------

_DRILL = sql.SQL(
    """
SELECT d.id, p.name,
       (SELECT count(*) FROM preplans o WHERE o.name = p.name AND o.vid <= p.vid),
       d.preplan_vid, d.scenario_name, d.title, d.lead, d.started_at, d.ended_at, d.started_by
FROM drills d JOIN preplans p ON p.vid = d.preplan_vid
{rest}
"""
)


def _drill(row: Sequence[Any]) -> Drill:
    return Drill(
        id=int(row[0]),
        preplan=str(row[1]),
        preplan_version=int(row[2]),
        preplan_vid=int(row[3]),
        scenario=str(row[4]),
        title=str(row[5]),
        lead=str(row[6]),
        started_at=row[7],
        ended_at=row[8],
        started_by=str(row[9]),
    )


@contextmanager
def _writing(url: str | None) -> Iterator[Any]:
    """Lend a cursor in one write transaction on the primary, as the store's owner."""
    with get_engine(url).begin() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            yield cur


def _drill_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise DrillNotFoundError(value) from None
    if not 0 < value < 2**31:
        raise DrillNotFoundError(value)
    return int(value)


def _elapsed(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParameterError("elapsed_s: expected a number of seconds", parameter="elapsed_s")
    if not 0 <= value <= MAX_ELAPSED_S:
        raise ParameterError(
            f"elapsed_s: {value} is outside 0 to {MAX_ELAPSED_S:g} s after the start",
            parameter="elapsed_s",
        )
    return float(value)


def _not_after(elapsed: float, since_start: float, what: str) -> None:
    """Refuse a replayed moment that has not come yet by the store's clock."""
    if elapsed > since_start + CLOCK_TOLERANCE_S:
        raise ParameterError(
            f"elapsed_s: {what} at {elapsed:g} s after the start is in the future: the drill "
            f"started {since_start:.1f} s ago by the store's clock (start a replayed drill at "
            "the moment it was held: started_at)",
            parameter="elapsed_s",
        )


def _started_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ParameterError(
                f"started_at: {value!r} is not an RFC 3339 moment", parameter="started_at"
            ) from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ParameterError(
            "started_at: expected a moment with its UTC offset (RFC 3339)",
            parameter="started_at",
        )
    return value


def _caller() -> str:
    """Return who is calling: the grant's principal, or "" for the store's owner."""
    grant = access.current()
    return "" if grant is None else grant.principal.name


def _text(value: Any, parameter: str, *, required: bool = False, limit: int = 4000) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ParameterError(
            f"{parameter}: expected {'non-empty ' if required else ''}text", parameter=parameter
        )
    if len(value) > limit or "\x00" in value:
        raise ParameterError(
            f"{parameter}: at most {limit} characters, no NUL", parameter=parameter
        )
    return value.strip() if required else value


def start(
    preplan: str | Preplan | None = None,
    place: Any = None,
    *,
    scenario: str | None = None,
    title: str = "",
    lead: str = "",
    started_at: datetime | str | None = None,
    city: City | None = None,
    url: str | None = None,
) -> Drill:
    """Start a drill: of a pre-plan applied at a place, or on a scenario a pre-plan made.

    Who starts it is recorded: the caller of the grant in force (:func:`layers.access.current`),
    "" for the store's owner. A pre-plan applied for it is credited as
    :func:`twin.scenarios.preplans.apply` says (the signed-in caller, else ``lead``).

    Parameters
    ----------
    preplan
        A pre-plan (name, incident kind or :class:`Preplan`), applied at ``place`` to make the
        drill's scenario (named ``drill-<pre-plan>-<8 hex digits>``).
    place
        Where, with ``preplan``: ``(lon, lat)`` or a Point (EPSG:4326), in the city.
    scenario
        Instead: a scenario :func:`twin.scenarios.preplans.apply` made; the drill runs the
        pre-plan version it was made from.
    title, lead
        What the drill is and who leads it.
    started_at
        When it started, for a drill replayed from a log: a moment with its UTC offset (a
        datetime or RFC 3339 text) not later than the store's clock (plus
        :data:`CLOCK_TOLERANCE_S`); now by the store's clock when None.
    city
        The city the pre-plan is applied with (see :func:`twin.scenarios.preplans.apply`).
    url
        Database URL; the configured one (or ``city``'s) by default.

    Returns
    -------
    Drill
        The drill, started now by the store's clock (or at ``started_at``).

    Raises
    ------
    ParameterError
        If neither a pre-plan and a place nor a scenario is given, or both are (naming
        ``preplan``, ``place`` or ``scenario``); if the scenario was not made from a stored
        pre-plan (``scenario``); for a bad place, title or lead (as :func:`apply` says); for
        a ``started_at`` that is not a moment with its offset, or is in the future.
    PreplanNotFoundError
        For an unknown pre-plan.
    layers.scenarios.ScenarioNotFoundError
        For an unknown scenario.
    """
    if city is not None and url is None:
        url = city.url
    title = _text(title, "title")
    lead = _text(lead, "lead", limit=MAX_ACTOR)
    began = _started_at(started_at)
    if began is not None:
        with cursor(url) as cur:
            cur.execute("SELECT clock_timestamp()")
            row = cur.fetchone()
        assert row is not None
        if began > row[0] + timedelta(seconds=CLOCK_TOLERANCE_S):
            raise ParameterError(
                f"started_at: {began.isoformat()} is in the future: the store's clock says "
                f"{row[0].isoformat()}",
                parameter="started_at",
            )
    if scenario is not None:
        if preplan is not None or place is not None:
            raise ParameterError(
                "scenario: give a scenario, or a pre-plan and a place, not both",
                parameter="scenario",
            )
        made = scenarios.get(scenario, url=url)
        meta = made.settings.get("preplan")
        vid = meta.get("vid") if isinstance(meta, dict) else None
        if not isinstance(vid, int):
            raise ParameterError(
                f"scenario: {scenario!r} was not made from a stored pre-plan "
                "(apply one: `twin preplans apply`)",
                parameter="scenario",
            )
    elif preplan is None:
        raise ParameterError(
            "preplan: give a pre-plan and a place, or a scenario made from one",
            parameter="preplan",
        )
    elif place is None:
        raise ParameterError("place: a pre-plan is drilled at a place", parameter="place")
    else:
        plan = preplan if isinstance(preplan, Preplan) else preplans.get(preplan, url=url)
        if plan.vid is None:
            raise ParameterError(
                f"preplan: {plan.name!r} is not stored: save it first", parameter="preplan"
            )
        made = preplans.apply(
            plan,
            place,
            name=f"drill-{plan.name[:44]}-{_suffix()}",
            title=f"Drill: {title}" if title else None,
            author=lead,
            city=city,
            url=url,
        )
        vid = plan.vid
    with _writing(url) as cur:
        cur.execute(
            "INSERT INTO drills "
            "(preplan_vid, scenario_id, scenario_name, title, lead, started_by, started_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, clock_timestamp())) RETURNING id",
            (vid, made.id, made.name, title, lead, _caller(), began),
        )
        row = cur.fetchone()
    assert row is not None
    return get(int(row[0]), url=url)


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def get(drill_id: int, *, url: str | None = None) -> Drill:
    """Return a drill.

    Parameters
    ----------
    drill_id
        Its id.
    url
        Database URL; the configured one by default.

    Returns
    -------
    Drill
        The drill.

    Raises
    ------
    DrillNotFoundError
        If no drill has that id.
    """
    drill_id = _drill_id(drill_id)
    with cursor(url) as cur:
        cur.execute(_DRILL.format(rest=sql.SQL("WHERE d.id = %s")), (drill_id,))
        row = cur.fetchone()
    if row is None:
        raise DrillNotFoundError(drill_id)
    return _drill(row)


def list_drills(*, url: str | None = None) -> list[Drill]:
    """Return every drill, newest first.

    Parameters
    ----------
    url
        Database URL; the configured one by default.

    Returns
    -------
    list of Drill
        The drills.
    """
    with cursor(url) as cur:
        cur.execute(_DRILL.format(rest=sql.SQL("ORDER BY d.started_at DESC, d.id DESC")))
        return [_drill(row) for row in cur.fetchall()]


def _locked(cur: Any, drill_id: int) -> tuple[datetime, float, Preplan]:
    """Lock a running drill's row; return its start, seconds since (store's clock), pre-plan."""
    cur.execute(
        "SELECT d.started_at, d.ended_at, d.preplan_vid, "
        "extract(epoch FROM clock_timestamp() - d.started_at)::float8 "
        "FROM drills d WHERE d.id = %s FOR UPDATE",
        (drill_id,),
    )
    row = cur.fetchone()
    if row is None:
        raise DrillNotFoundError(drill_id)
    if row[1] is not None:
        raise DrillEndedError(drill_id, row[1])
    cur.execute("SELECT plan FROM preplans WHERE vid = %s", (row[2],))
    plan = cur.fetchone()
    assert plan is not None
    return row[0], float(row[3]), preplans.parse(plan[0])


def record(
    drill_id: int,
    *,
    actor: str,
    step: str | None = None,
    what: str = "",
    elapsed_s: float | None = None,
    url: str | None = None,
) -> Action:
    """Log an action in a running drill.

    The action records who logged it besides ``actor``: the caller of the grant in force
    (:func:`layers.access.current`), "" for the store's owner.

    Parameters
    ----------
    drill_id
        The drill.
    actor
        Who did it (1 to 200 characters).
    step
        The checklist step it does (an id of the pre-plan version drilled), or None.
    what
        What was done; the step's English text when empty.
    elapsed_s
        When, in seconds after the drill's start (a replay); now by the store's clock when
        None. Not later than the store's clock (plus :data:`CLOCK_TOLERANCE_S`): a replay of
        a past drill starts it at the moment it was held (:func:`start`, ``started_at``).
    url
        Database URL; the configured one by default.

    Returns
    -------
    Action
        The action logged.

    Raises
    ------
    DrillNotFoundError
        If no drill has that id.
    DrillEndedError
        If the drill has ended.
    ParameterError
        For an empty actor, a step not in the checklist (naming the steps), or
        ``elapsed_s`` not a number from 0 to a week or later than the store's clock.
    """
    drill_id = _drill_id(drill_id)
    actor = _text(actor, "actor", required=True, limit=MAX_ACTOR)
    what = _text(what, "what")
    elapsed = _elapsed(elapsed_s)
    if step is not None and not isinstance(step, str):
        raise ParameterError("step: expected a step id", parameter="step")
    logged_by = _caller()
    with _writing(url) as cur:
        _, since_start, plan = _locked(cur, drill_id)
        if elapsed is not None:
            _not_after(elapsed, since_start, "an action")
        if step is not None:
            found = plan.step(step)
            if found is None:
                raise ParameterError(
                    f"step: {step!r} is not a step of pre-plan {plan.name}: "
                    f"{', '.join(s.id for s in plan.steps)}",
                    parameter="step",
                )
            what = what or found.en
        cur.execute(
            "INSERT INTO drill_actions (drill_id, step, actor, logged_by, what, at, elapsed_s) "
            "SELECT d.id, %(step)s, %(actor)s, %(logged_by)s, %(what)s, t.at, "
            "coalesce(%(elapsed)s, extract(epoch FROM t.at - d.started_at)::float8) "
            "FROM drills d CROSS JOIN LATERAL (SELECT coalesce("
            "d.started_at + make_interval(secs => %(elapsed)s), clock_timestamp()) AS at) t "
            "WHERE d.id = %(id)s RETURNING aid, at, elapsed_s",
            {
                "id": drill_id,
                "step": step,
                "actor": actor,
                "logged_by": logged_by,
                "what": what,
                "elapsed": elapsed,
            },
        )
        row = cur.fetchone()
    assert row is not None
    return Action(int(row[0]), drill_id, step, actor, what, row[1], float(row[2]), logged_by)


def end(drill_id: int, *, elapsed_s: float | None = None, url: str | None = None) -> Drill:
    """End a running drill.

    Parameters
    ----------
    drill_id
        The drill.
    elapsed_s
        When, in seconds after its start (a replay), not later than the store's clock (plus
        :data:`CLOCK_TOLERANCE_S`); now by the store's clock when None (or the last action's
        moment, if that is a little later).
    url
        Database URL; the configured one by default.

    Returns
    -------
    Drill
        The drill, ended.

    Raises
    ------
    DrillNotFoundError
        If no drill has that id.
    DrillEndedError
        If it has ended already.
    ParameterError
        If ``elapsed_s`` is not a number from 0 to a week, is later than the store's clock,
        or is before the last action.
    """
    drill_id = _drill_id(drill_id)
    elapsed = _elapsed(elapsed_s)
    with _writing(url) as cur:
        _, since_start, _ = _locked(cur, drill_id)
        if elapsed is not None:
            _not_after(elapsed, since_start, "the end")
        cur.execute("SELECT max(elapsed_s) FROM drill_actions WHERE drill_id = %s", (drill_id,))
        row = cur.fetchone()
        assert row is not None
        last = row[0]
        if elapsed is None and last is not None and float(last) > since_start:
            elapsed = float(last)  # an action logged a moment ahead of the clock (tolerance)
        ends = since_start if elapsed is None else elapsed
        if last is not None and ends < float(last):
            raise ParameterError(
                f"elapsed_s: the drill cannot end at {ends:g} s, before its last action "
                f"({float(last):g} s)",
                parameter="elapsed_s",
            )
        cur.execute(
            "UPDATE drills SET ended_at = coalesce("
            "started_at + make_interval(secs => %(elapsed)s), clock_timestamp()) "
            "WHERE id = %(id)s",
            {"elapsed": elapsed, "id": drill_id},
        )
    return get(drill_id, url=url)


def review(drill_id: int, *, url: str | None = None) -> Review:
    """Review a drill: each checklist step's first action against its target.

    Parameters
    ----------
    drill_id
        The drill (running or ended).
    url
        Database URL; the configured one by default.

    Returns
    -------
    Review
        Per step ``on_time`` (done at or before its target), ``late`` (after it), ``missed``
        (the drill ended without it), ``overdue`` (not done, the drill running past the
        target: ``late_s`` so far, by the store's clock) or ``pending`` (not done, the
        target to come); the whole log.

    Raises
    ------
    DrillNotFoundError
        If no drill has that id.
    """
    drill = get(drill_id, url=url)
    plan = preplans.get_version(drill.preplan_vid, url=url)
    with cursor(url) as cur:
        cur.execute(
            "SELECT aid, step, actor, what, at, elapsed_s, logged_by FROM drill_actions "
            "WHERE drill_id = %s ORDER BY elapsed_s, aid",
            (drill.id,),
        )
        actions = [
            Action(int(a), drill.id, s, str(who), str(what), at, float(e), str(by))
            for a, s, who, what, at, e, by in cur.fetchall()
        ]
        cur.execute(
            "SELECT extract(epoch FROM coalesce(ended_at, clock_timestamp()) - started_at)"
            "::float8 FROM drills WHERE id = %s",
            (drill.id,),
        )
        clock = cur.fetchone()
    assert clock is not None
    so_far = float(clock[0])
    first: dict[str, Action] = {}
    for action in actions:
        if action.step is not None:
            first.setdefault(action.step, action)
    steps = []
    for step in plan.steps:
        done = first.get(step.id)
        late_s = None
        if done is not None:
            status = "on_time" if done.elapsed_s <= step.target_s else "late"
            if status == "late":
                late_s = done.elapsed_s - step.target_s
        elif drill.ended_at is not None:
            status = "missed"
        elif so_far > step.target_s:
            status, late_s = "overdue", so_far - step.target_s
        else:
            status = "pending"
        steps.append(
            StepReview(
                step=step.id,
                en=step.en,
                zh=step.zh,
                role=step.role,
                target_s=step.target_s,
                done_s=None if done is None else done.elapsed_s,
                by=None if done is None else done.actor,
                status=status,
                late_s=late_s,
            )
        )
    return Review(drill, steps, actions, so_far)
