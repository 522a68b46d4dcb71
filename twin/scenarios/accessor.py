"""``city.scenarios``: what-if scenarios from Python (a namespace of the City facade).

>>> import twin
>>> city = twin.connect()
>>> city.scenarios.create("bridge-works", title="Pont closed for works", author="planning")
>>> city.scenarios.put("bridge-works", "closures", {"type": "Feature", "id": "works-1",
...     "geometry": {"type": "Point", "coordinates": [7.4206, 43.7311]},
...     "properties": {"kind": "works", "road_ids": ["way/123-0"]}})
>>> works = city.scenarios["bridge-works"]      # the city as the scenario has it
>>> works.route((7.4165, 43.7315), (7.4290, 43.7400))
>>> city.route((7.4165, 43.7315), (7.4290, 43.7400))   # the base, unchanged
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from layers import access
from layers import scenarios as store
from layers.scenarios import Scenario, ScenarioEdit

if TYPE_CHECKING:
    from twin.city import City
    from twin.scenarios.figures import Comparison, Figures


class Scenarios:
    """The scenarios of a city: make, edit and list them, and read the city in one.

    Parameters
    ----------
    city
        The facade (its session's grant applies to every read and edit).
    """

    def __init__(self, city: City):
        self._city = city

    def _as_city(self) -> contextlib.AbstractContextManager[Any]:
        """Act under the city's session: its grant decides what it may read and change."""
        grant = self._city.grant
        return access.acting_as(grant) if grant is not None else contextlib.nullcontext()

    def __getitem__(self, name: str) -> City:
        """Return the city as scenario ``name`` has it: every method answers in the scenario.

        Parameters
        ----------
        name
            A scenario, or ``"base"`` for the twin itself.

        Returns
        -------
        City
            A facade bound to the scenario (sharing this city's router and session).

        Raises
        ------
        ScenarioNotFoundError
            If no scenario has that name.
        """
        if name != "base":
            with self._as_city():
                store.get(name, url=self._city.url)
        # built once and shared by the bound copies: their caches are kept per scenario
        self._city.router  # noqa: B018
        self._city.utilities  # noqa: B018
        bound = copy.copy(self._city)
        bound.scenario = None if name == "base" else name
        return bound

    @property
    def base(self) -> City:
        """The city itself, whatever scenario this facade is bound to."""
        return self["base"]

    def list(self) -> pd.DataFrame:
        """Return the stored scenarios: name, title, status, author, base_at, edits, revision."""
        with self._as_city():
            rows = [s.to_json() for s in store.list_scenarios(url=self._city.url)]
        columns = ["name", "title", "status", "author", "base_at", "edits", "revision"]
        return pd.DataFrame.from_records(rows, columns=[*columns, "description", "updated_at"])

    def get(self, name: str) -> Scenario:
        """Return a scenario (see :func:`layers.scenarios.get`)."""
        with self._as_city():
            return store.get(name, url=self._city.url)

    def create(
        self,
        name: str,
        *,
        title: str = "",
        description: str = "",
        author: str = "",
        base_at: datetime | str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Scenario:
        """Store a new, empty scenario (see :func:`layers.scenarios.create`)."""
        with self._as_city():
            return store.create(
                name,
                title=title,
                description=description,
                author=author,
                base_at=base_at,
                settings=settings,
                url=self._city.url,
            )

    def update(
        self,
        name: str,
        *,
        title: str | None = None,
        description: str | None = None,
        status: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Scenario:
        """Change a scenario's text, status or settings (see :func:`layers.scenarios.update`)."""
        with self._as_city():
            return store.update(
                name,
                title=title,
                description=description,
                status=status,
                settings=settings,
                url=self._city.url,
            )

    def delete(self, name: str) -> None:
        """Delete a scenario and its edits; the base is untouched."""
        with self._as_city():
            store.delete(name, url=self._city.url)

    def put(
        self, name: str, layer: str, feature: Mapping[str, Any], *, author: str = "", note: str = ""
    ) -> ScenarioEdit:
        """Add or change a feature in a scenario (see :func:`layers.scenarios.put_feature`)."""
        with self._as_city():
            return store.put_feature(
                name, layer, feature, author=author, note=note, url=self._city.url
            )

    def retire(
        self, name: str, layer: str, feature_id: str, *, author: str = "", note: str = ""
    ) -> ScenarioEdit:
        """Retire a feature in a scenario (see :func:`layers.scenarios.retire_feature`)."""
        with self._as_city():
            return store.retire_feature(
                name, layer, feature_id, author=author, note=note, url=self._city.url
            )

    def undo(self, name: str, layer: str, feature_id: str) -> ScenarioEdit:
        """Drop a scenario's edit of a feature: the base's shows again in it."""
        with self._as_city():
            return store.drop_edit(name, layer, feature_id, url=self._city.url)

    def figures(self, name: str = "base", **options: Any) -> Figures:
        """Return a scenario's figures (see :func:`twin.scenarios.figures.figures`).

        Parameters
        ----------
        name
            A scenario, or ``"base"``.
        **options
            ``minutes``, ``kinds``, ``profile``.

        Returns
        -------
        Figures
            Reach, response times, roads closed and detours, customers out, per district.
        """
        from twin.scenarios.figures import figures

        return figures(self._city, scenario=name, **options)

    def compare(self, a: str, b: str, **options: Any) -> Comparison:
        """Return two states' figures side by side (see :func:`twin.scenarios.figures.compare`).

        Parameters
        ----------
        a, b
            Scenarios, or ``"base"``.
        **options
            ``minutes``, ``kinds``, ``profile``.

        Returns
        -------
        Comparison
            Both figures, ``b - a`` per figure, and the features that differ.
        """
        from twin.scenarios.figures import compare

        return compare(self._city, a, b, **options)

    def edits(self, name: str, *, history: bool = False) -> pd.DataFrame:
        """Return a scenario's edits (see :func:`layers.scenarios.edits`)."""
        with self._as_city():
            return store.edits(name, history=history, url=self._city.url)
