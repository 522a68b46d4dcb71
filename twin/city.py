"""The ``City`` facade: the twin as analysts use it from Python."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import pandas as pd
import pydeck as pdk
import shapely
from psycopg import sql

from layers import access, onemap, overlay, rasters
from layers import scenarios as scenario_store
from layers.access import Grant, Principal, grant_for
from layers.cameras import CameraCoverage, camera_coverage
from layers.catalog import LAYERS
from layers.database import cursor, database_url, get_engine
from layers.errors import MissingInputError, ParameterError
from layers.identity import Verifier
from layers.ingest import IngestReport, ingest, ingest_frame
from layers.ingest import Progress as IngestProgress
from layers.queries import BBox, as_of, layer_counts, read_layer
from layers.settings import get_settings
from layers.signal_plans import get_plan, list_plans
from routing import (
    Coverage,
    RoadNetwork,
    Route,
    Router,
    RoutingError,
    Unit,
    coverage,
    nearest_units,
    od_matrix,
    route,
    service_areas,
    suggest_sites,
)
from routing.signals import Hold, WebsterSettings
from routing.signals.sumo import network_to_sumo
from routing.traces import Cascade, Outage, Utilities
from twin import deck, incidents
from twin import signals as twin_signals
from twin.live.accessor import Live
from twin.places import Place, as_lonlat, as_lonlats
from twin.scenarios.accessor import Scenarios


class City:
    """A city in the store.

    Signed in (``token`` or ``api_key``), every method answers as the API answers that user:
    only the layers its roles may read, classified rows left out, masked attributes masked
    (:mod:`layers.access`). Without credentials the session is the store's owner's: whoever
    holds the database URL reads the tables anyway.

    A position is ``(lon, lat)`` in degrees (EPSG:4326) or a shapely ``Point``, wherever a
    method takes one (:func:`twin.places.as_lonlat`). The errors the methods raise are
    exported from :mod:`twin` (``twin.ParameterError``, ``twin.RoutingError`` ...); every
    method may also raise :class:`twin.StoreError` when the store cannot be reached.

    Parameters
    ----------
    url
        Database URL; ``TWIN_DATABASE_URL`` or the local default when None.
    token
        A bearer token of the local issuer (``twin auth token``) or of the OIDC provider.
    api_key
        An API key (``twin auth key add``).

    Raises
    ------
    IdentityError
        For a token or key that is not valid (expired, revoked, unknown).

    Examples
    --------
    >>> import twin
    >>> city = twin.connect()
    >>> roads = city.layer("roads", bbox=(7.41, 43.72, 7.43, 43.74))
    """

    def __init__(
        self, url: str | None = None, *, token: str | None = None, api_key: str | None = None
    ):
        self.url = database_url(url)
        self.name = get_settings().city_name
        self.metric_crs = get_settings().metric_crs
        self.principal: Principal | None = None
        #: The scenario every method answers in (``city.scenarios[name]``); None: the base.
        self.scenario: str | None = None
        if token is not None or api_key is not None:
            verifier = Verifier(self.url)
            self.principal = (
                verifier.bearer(token) if token is not None else verifier.api_key(str(api_key))
            )

    @property
    def grant(self) -> Grant | None:
        """What this session may see and do (None: the store's owner, everything)."""
        return None if self.principal is None else grant_for(self.principal, url=self.url)

    def __repr__(self) -> str:
        engine = get_engine(self.url)
        return f"City({self.name!r}, {engine.url.render_as_string(hide_password=True)!r})"

    def layers(self, *, at: datetime | str | None = None) -> pd.DataFrame:
        """List the layers with their feature counts.

        Parameters
        ----------
        at
            A moment: count the features valid then. None: the current ones.

        Returns
        -------
        pandas.DataFrame
            Columns ``layer``, ``title``, ``geometry`` and ``features``, one row per layer
            this session may read.

        Raises
        ------
        ValueError
            If ``at`` is not an ISO 8601 moment.
        """
        counts = layer_counts(at=at, url=self.url)
        return pd.DataFrame(
            [
                {
                    "layer": layer.id,
                    "title": layer.title,
                    "geometry": layer.storage_type,
                    "features": counts[layer.id],
                }
                for layer in LAYERS.values()
                if layer.id in counts  # the layers this session may read
            ]
        )

    def layer(
        self,
        name: str,
        *,
        bbox: BBox | None = None,
        at: datetime | str | None = None,
    ) -> gpd.GeoDataFrame:
        """Return one layer's features.

        Parameters
        ----------
        name
            Layer id, e.g. ``"roads"``.
        bbox
            ``(min lon, min lat, max lon, max lat)``: only the features intersecting it.
        at
            A moment (datetime or ISO 8601 string): the versions valid then.

        Returns
        -------
        geopandas.GeoDataFrame
            Features in EPSG:4326 with their typed attributes and ``props``.

        Raises
        ------
        KeyError
            If ``name`` is not a layer (the message lists the layers).
        AccessError
            If this session may not read the layer.
        ValueError
            If ``bbox`` has a minimum above its maximum, or ``at`` is not an ISO 8601 moment.
        """
        return read_layer(name, bbox=bbox, at=at, url=self.url)

    def ingest(
        self,
        name: str,
        path: str | Path,
        *,
        source: str | None = None,
        crs: str | None = None,
        file_layer: str | None = None,
        id_field: str = "id",
    ) -> IngestReport:
        """Import a file into a layer, all or nothing (see :func:`layers.ingest.ingest`).

        Parameters
        ----------
        name
            Layer id.
        path
            GeoJSON, GeoPackage, (zipped) Shapefile, CSV or OSM file.
        source
            Source label; re-importing the same source updates its features.
        crs
            CRS of the coordinates, if the file declares none.
        file_layer
            Table of a multi-layer file to read.
        id_field
            Attribute holding stable feature ids.

        Returns
        -------
        IngestReport
            What the import did.

        Raises
        ------
        KeyError
            If ``name`` is not a layer.
        IngestError
            If the file cannot be read, a feature is invalid or an id belongs to another
            source; every problem names the feature and the reason, and nothing is written.
        """
        return ingest(
            name,
            path,
            url=self.url,
            source=source,
            crs=crs,
            file_layer=file_layer,
            id_field=id_field,
        )

    # --- routing ---------------------------------------------------------------------------

    @cached_property
    def live(self) -> Live:
        """The live twin: sensors, readings, latest state and alerts (a namespace)."""
        return Live(self.url)

    @cached_property
    def scenarios(self) -> Scenarios:
        """What-if scenarios: make and edit them; ``city.scenarios[name]`` answers in one."""
        return Scenarios(self)

    @cached_property
    def router(self) -> Router:
        """The routing engine over this city's roads (built on first use)."""
        return Router(self.url)

    def road_graph(self, *, profile: str = "car") -> nx.MultiDiGraph:
        """Return the road network as a networkx graph, with the costs routing uses.

        The graph is shaped as osmnx shapes its own (see
        :meth:`routing.RoadNetwork.to_networkx`; it passes osmnx 2.1's
        ``convert.validate_graph(G, strict=True)``), so ``osmnx.convert.graph_to_gdfs(G)``,
        ``osmnx.distance.nearest_nodes(G, lon, lat)`` (on a graph in degrees osmnx wants
        scikit-learn; or project it first, ``osmnx.project_graph(G, to_crs=city.metric_crs)``)
        and ``osmnx.routing.shortest_path(G, a, b, weight="travel_time")`` take it as it is,
        and the last answers what :meth:`route` answers between the two nodes. Arcs are keyed
        by road id (``<road id>:reverse`` for a two-way road's way back), not 0, 1 ...: read
        the nodes' ``street_count`` rather than ``osmnx.stats.count_streets_per_node``.

        Parameters
        ----------
        profile
            ``car`` or ``emergency``.

        Returns
        -------
        networkx.MultiDiGraph
            ``G.graph["crs"]`` is ``"EPSG:4326"``. Nodes are the roads' node ids, with ``x``
            (lon) and ``y`` (lat) in degrees and ``street_count``; arcs carry ``travel_time``
            (s, with today's live speeds; also as ``cost``), ``length`` (m; also as
            ``length_m``), ``osmid`` and ``edge_id``, ``oneway``, ``reversed``, ``name``,
            ``class`` and ``geometry`` (a LineString, EPSG:4326). Roads closed now are left
            out.

        Raises
        ------
        RoutingError
            If ``profile`` is not a routing profile, or no roads are loaded.
        """
        return self.router.run(profile, lambda network: network.to_networkx())

    def route(
        self, origin: Place, destination: Place, *, profile: str = "car", at: datetime | None = None
    ) -> Route | None:
        """Return the fastest route between two points, or None if unreachable.

        Parameters
        ----------
        origin, destination
            ``(lon, lat)`` or shapely Point, EPSG:4326; each is snapped onto its nearest open
            road.
        profile
            ``car`` or ``emergency``.
        at
            Moment whose closures apply; now by default.

        Returns
        -------
        Route or None
            Duration (s), distance (m), road ids, line (EPSG:4326) and steps.

        Raises
        ------
        ParameterError
            If ``origin`` or ``destination`` is not a position (parameter ``from``/``to``).
        RoutingError
            If a point is outside the city or more than 250 m from an open road (parameter
            ``from``/``to``), ``profile`` is unknown, or no roads are loaded.
        """
        start, end = as_lonlat(origin, "from"), as_lonlat(destination, "to")
        return self.router.run(profile, lambda n: route(n, start, end), at=at)

    def nearest_units(
        self,
        incident: Place,
        *,
        kind: str | None = None,
        k: int = 3,
        profile: str = "emergency",
        at: datetime | None = None,
    ) -> list[Unit]:
        """Return the ``k`` available resources that reach an incident first, with routes.

        Parameters
        ----------
        incident
            ``(lon, lat)`` or shapely Point, EPSG:4326.
        kind
            Resource kind (``fire_station``, ``hospital``, ``police``, ``vehicle`` ...); all
            kinds when None.
        k
            How many.
        profile
            Routing profile, ``emergency`` by default.
        at
            Moment whose closures apply; now by default.

        Returns
        -------
        list of Unit
            Fastest first, turnout time included.

        Raises
        ------
        ParameterError
            If ``incident`` is not a position.
        RoutingError
            If ``k`` is not positive, ``kind`` is not a resource kind of the catalog, the
            incident is outside the city or off the roads, ``profile`` is unknown, or no roads
            are loaded.
        """
        point = as_lonlat(incident, "incident")
        kinds = next(f.choices for f in LAYERS["resources"].fields if f.name == "kind")
        if kind is not None and kind not in (kinds or ()):
            raise RoutingError(
                f"kind {kind!r} is not a resource kind: one of {', '.join(kinds or ())}",
                parameter="kind",
            )
        candidates = self._resources(kind)
        return self.router.run(profile, lambda n: nearest_units(n, point, candidates, k=k), at=at)

    def service_areas(
        self,
        facilities: Sequence[Place],
        *,
        breaks: Sequence[float] = (4, 8, 12),
        profile: str = "emergency",
        at: datetime | None = None,
    ) -> gpd.GeoDataFrame:
        """Return service areas (isochrones) of facilities as polygons, one row per break.

        Parameters
        ----------
        facilities
            ``(lon, lat)`` pairs or shapely Points (a GeoSeries of points too), EPSG:4326.
        breaks
            Minutes.
        profile
            Routing profile.
        at
            Moment whose closures apply; now by default.

        Returns
        -------
        geopandas.GeoDataFrame
            ``minutes``, ``reached_length_m`` and the polygon, EPSG:4326.

        Raises
        ------
        ParameterError
            If ``facilities`` is not a sequence of positions (parameter ``facilities[i]``
            for the one at fault).
        RoutingError
            If there is no facility, one is outside the city or off the roads, ``breaks``
            are not 1 to 12 positive minutes, ``profile`` is unknown, or no roads are loaded.
        """
        points = as_lonlats(facilities, "facilities")
        areas = self.router.run(profile, lambda n: service_areas(n, points, breaks), at=at)
        return gpd.GeoDataFrame(
            {
                "minutes": [a.minutes for a in areas],
                "reached_length_m": [a.reached_length_m for a in areas],
            },
            geometry=[a.polygon for a in areas],
            crs="EPSG:4326",
        )

    def coverage(
        self,
        *,
        kind: str = "fire_station",
        minutes: float = 8,
        suggest: int = 0,
        profile: str = "emergency",
    ) -> tuple[Coverage, list[dict[str, Any]]]:
        """Return the coverage by one kind of resource, per district, and sites to add.

        Parameters
        ----------
        kind
            Resource kind, e.g. ``fire_station`` or ``hospital``.
        minutes
            Time limit.
        suggest
            How many new sites to suggest (greedy).
        profile
            Routing profile.

        Returns
        -------
        tuple
            The :class:`routing.Coverage` and the suggested sites. With no population in any
            building both weigh buildings alike (``weight == "buildings"``); with no
            districts the one row is the whole city; ``notes`` (also ``total["notes"]``) say
            so and how to supply what is missing.

        Raises
        ------
        MissingInputError
            If no resource of ``kind`` is loaded (``resources``), or no building.
        RoutingError
            If ``kind`` is not a resource kind, none of that kind is available now,
            ``minutes`` or ``suggest`` is out of range, ``profile`` is unknown, or no roads
            are loaded.
        """
        kinds = next(f.choices for f in LAYERS["resources"].fields if f.name == "kind")
        if kind not in kinds:
            raise RoutingError(
                f"unknown resource kind {kind!r}; kinds: {', '.join(kinds)}", parameter="kind"
            )
        facilities = [(float(r["lon"]), float(r["lat"])) for r in self._resources(kind)]
        if not facilities:
            self._require_resources(kind)
        buildings = self.layer("buildings")
        districts = self.layer("districts")
        if len(districts) and districts["level"].notna().any():
            districts = districts[districts["level"] == districts["level"].max()]

        def query(network: RoadNetwork) -> tuple[Coverage, list[dict[str, Any]]]:
            result = coverage(network, facilities, buildings, districts, minutes=minutes)
            sites = suggest_sites(network, result, buildings, count=suggest) if suggest else []
            return result, sites

        return self.router.run(profile, query)

    def _require_resources(self, kind: str) -> None:
        """Refuse a coverage by a kind of resource none of which is loaded, or available."""
        with cursor(self.url) as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {} AS r WHERE {} AND kind = %(kind)s").format(
                    overlay.relation(LAYERS["resources"]),
                    overlay.valid_at(overlay.read_moment(None)),
                ),
                {"kind": kind},
            )
            row = cur.fetchone()
        if not row or not row[0]:
            raise MissingInputError(
                "resources",
                f"no resources of kind {kind!r} loaded: there is nothing to cover from",
                f"import them with `twin ingest resources FILE` (points with kind={kind})",
                parameter="kind",
            )
        raise RoutingError(
            f"there is no facility of that kind available: all {row[0]} {kind} resources "
            "are busy or out of service",
            parameter="kind",
        )

    def od_matrix(
        self, origins: Sequence[Place], destinations: Sequence[Place], *, profile: str = "car"
    ) -> pd.DataFrame:
        """Return travel times (s) between two sets of points.

        Parameters
        ----------
        origins, destinations
            ``(lon, lat)`` pairs or shapely Points (a GeoSeries of points too), EPSG:4326.
        profile
            Routing profile.

        Returns
        -------
        pandas.DataFrame
            Rows: origins, columns: destinations; ``inf`` where unreachable.

        Raises
        ------
        ParameterError
            If ``origins`` or ``destinations`` is not a sequence of positions (parameter
            ``origins[i]``/``destinations[i]`` for the one at fault).
        RoutingError
            If either is empty, a point is outside the city or off the roads,
            ``profile`` is unknown, or no roads are loaded.
        """
        starts, ends = as_lonlats(origins, "origins"), as_lonlats(destinations, "destinations")
        times = self.router.run(profile, lambda n: od_matrix(n, starts, ends))
        return pd.DataFrame(times)

    def close_roads(
        self,
        *,
        geometry: shapely.Geometry | None = None,
        road_ids: Sequence[str] = (),
        kind: str = "works",
        starts_at: datetime | str | None = None,
        ends_at: datetime | str | None = None,
    ) -> str:
        """Add a closure (an area, a line, a point, or road ids) to the closures layer.

        It takes effect for the next routing query. The closure's geometry is the one given,
        or the closed roads' lines.

        Parameters
        ----------
        geometry
            Closed area, line or point (EPSG:4326).
        road_ids
            Ids of closed road edges.
        kind
            ``works``, ``event``, ``flood``, ``incident`` ...
        starts_at, ends_at
            Time window (ISO 8601 or datetime); open-ended when None.

        Returns
        -------
        str
            The new closure's id.

        Raises
        ------
        RoutingError
            If neither a geometry nor road ids are given, a road id is unknown, or the window
            ends before it starts.
        ValueError
            If ``starts_at`` or ``ends_at`` is not an ISO 8601 moment.
        IngestError
            If the closure is invalid (nothing is written).
        """
        start, end = as_of(starts_at), as_of(ends_at)
        if start is not None and end is not None and end <= start:
            raise RoutingError("ends_at must be after starts_at", parameter="ends_at")
        if geometry is None:
            if not road_ids:
                raise RoutingError("give a geometry or road ids", parameter="road_ids")
            lines = _current_road_lines(self.url, list(road_ids))
            unknown = sorted(set(road_ids) - set(lines))
            if unknown:
                raise RoutingError(f"unknown road ids: {', '.join(unknown)}", parameter="road_ids")
            # for display only: closures by id close exactly those roads
            geometry = shapely.line_merge(shapely.union_all(list(lines.values())))
        closure_id = f"api/{uuid.uuid4()}"
        frame = gpd.GeoDataFrame(
            {
                "id": [closure_id],
                "kind": [kind],
                "road_ids": [list(road_ids) or None],
                "starts_at": [starts_at],
                "ends_at": [ends_at],
            },
            geometry=[geometry],
            crs="EPSG:4326",
        )
        ingest_frame("closures", frame, source="api", retire_missing=False, url=self.url)
        return closure_id

    # --- one map ---------------------------------------------------------------------------

    def map(
        self,
        layers: Sequence[str] | None = None,
        *,
        bbox: BBox | None = None,
        at: datetime | str | None = None,
    ) -> pdk.Deck:
        """Return a pydeck map of layers, drawn as the viewer draws them, with no web basemap.

        Parameters
        ----------
        layers
            Layer ids; those the viewer shows on opening by default.
        bbox
            ``(min lon, min lat, max lon, max lat)``: only features in it (keep it small for
            big layers).
        at
            A moment; the current features by default.

        Returns
        -------
        pydeck.Deck
            Show it offline with ``IPython.display.HTML(twin.deck.iframe(m))``, or save
            ``twin.deck.to_html(m)``.

        Raises
        ------
        KeyError
            If a name is not a layer.
        AccessError
            If this session may not read one of the layers.
        ValueError
            If ``bbox`` has a minimum above its maximum, or ``at`` is not an ISO 8601 moment.
        """
        names = (
            list(layers)
            if layers is not None
            else [s.layer for s in deck.STYLES.values() if s.visible]
        )
        frames = {name: self.layer(name, bbox=bbox, at=at) for name in names}
        return pdk.Deck(
            layers=[deck.pydeck_layer(name, frame) for name, frame in frames.items()],
            initial_view_state=deck.view_of(list(frames.values())),
            map_provider=None,
            map_style=None,
            tooltip=True,
        )

    def around(
        self,
        point: Place,
        radius_m: float,
        *,
        layers: Sequence[str] | None = None,
        at: datetime | str | None = None,
        filters: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> onemap.OneMap:
        """Ask every layer (or some) what lies within a radius of a point.

        Parameters
        ----------
        point
            ``(lon, lat)`` or shapely Point, EPSG:4326.
        radius_m
            Radius (m), at most 20 km.
        layers
            Layer ids; all by default.
        at
            A moment; the current features by default.
        filters
            Per layer, a CQL2-text filter, e.g. ``{"buildings": "height_m > 30"}``.
        limit
            Only the nearest ``limit`` features per layer (the summary covers all).

        Returns
        -------
        layers.onemap.OneMap
            ``features`` (layer → GeoDataFrame with ``distance_m``, ``inside``) and ``summary``.

        Raises
        ------
        ParameterError
            If ``point`` is not a position.
        OneMapError
            If ``radius_m`` is out of range, a layer is unknown, a filter does not parse or
            names a layer not asked, ``limit`` is out of range, or ``at`` is not ISO 8601.
        AccessError
            If this session may not read a layer asked for.
        """
        return onemap.around(
            as_lonlat(point, "point"),
            radius_m,
            layers=layers,
            at=at,
            filters=filters,
            url=self.url,
            limit=limit,
        )

    def within(
        self,
        area: shapely.Geometry,
        *,
        layers: Sequence[str] | None = None,
        at: datetime | str | None = None,
        filters: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> onemap.OneMap:
        """Ask every layer (or some) what lies in an area.

        Parameters
        ----------
        area
            A polygon (or any geometry), EPSG:4326.
        layers, at, filters, limit
            As :meth:`around` takes them.

        Returns
        -------
        layers.onemap.OneMap
            As :meth:`around` returns it (``distance_m`` 0 inside the area).

        Raises
        ------
        OneMapError
            If ``area`` is empty or not in lon/lat, or another parameter cannot be honoured
            (as :meth:`around` says).
        AccessError
            If this session may not read a layer asked for.
        """
        return onemap.within(area, layers=layers, at=at, filters=filters, url=self.url, limit=limit)

    def along(
        self,
        line: shapely.Geometry,
        buffer_m: float,
        *,
        layers: Sequence[str] | None = None,
        at: datetime | str | None = None,
        filters: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> onemap.OneMap:
        """Ask every layer (or some) what lies within ``buffer_m`` of a line.

        Parameters
        ----------
        line
            A LineString (or MultiLineString), EPSG:4326.
        buffer_m
            Distance from the line (m).
        layers, at, filters, limit
            As :meth:`around` takes them.

        Returns
        -------
        layers.onemap.OneMap
            As :meth:`around` returns it, ``distance_m`` measured from the line.

        Raises
        ------
        OneMapError
            If ``line`` is not a (Multi)LineString, is empty or not in lon/lat, ``buffer_m``
            is out of range (at most 20 km), or another parameter cannot be honoured (as
            :meth:`around` says).
        AccessError
            If this session may not read a layer asked for.
        """
        return onemap.along(
            line, buffer_m, layers=layers, at=at, filters=filters, url=self.url, limit=limit
        )

    def district_stats(
        self,
        *,
        at: datetime | str | None = None,
        cover: tuple[str, float] | None = ("fire_station", 8.0),
    ) -> pd.DataFrame:
        """Return per district its counts and lengths per layer, population and coverage.

        Parameters
        ----------
        at
            A moment; the current features by default (coverage is always today's).
        cover
            A resource kind and minutes: adds the share of the district's people within that
            time of the nearest such resource (the finest districts only); None to skip it.

        Returns
        -------
        pandas.DataFrame
            One row per district (see :func:`layers.onemap.district_stats`) with
            ``camera_road_share`` (the share of its road length the cameras see; only for a
            session that may read the cameras) and ``<kind>_<minutes>min_population_share``
            — ``<kind>_<minutes>min_building_share`` when no building has a population (the
            coverage then weighs buildings). ``attrs["notes"]`` says what is missing: no
            population, or why the coverage column is empty (no resources of the kind, no
            roads).

        Raises
        ------
        MissingInputError
            If there are no districts: the message says how to load them (``twin ingest
            districts FILE``) or make a grid of cells (``twin city init --district-grid 500``).
        RoutingError
            If the ``cover`` kind is not a resource kind, or its minutes are out of range.
        OneMapError
            If ``at`` is not an ISO 8601 moment.
        """
        stats = onemap.district_stats(at=at, url=self.url)
        stats.attrs["notes"] = []
        if access.visible(["cameras"]):  # drawn from the cameras: for who may read them
            cameras = camera_coverage(url=self.url, at=at).districts[["id", "share"]]
            stats = stats.merge(cameras.rename(columns={"share": "camera_road_share"}), how="left")
            stats["camera_road_share"] = stats["camera_road_share"].fillna(0.0)
        if cover is not None:
            kind, minutes = cover
            column = f"{kind}_{minutes:g}min_population_share"
            try:
                result, _ = self.coverage(kind=kind, minutes=minutes)
            except (MissingInputError, RoutingError) as exc:
                # no resources of the kind, or no roads: the figures per district stand
                # without the coverage; a bad kind or minutes is the caller's to correct
                if not isinstance(exc, MissingInputError) and exc.parameter is not None:
                    raise
                stats[column] = None
                stats.attrs["notes"] = [f"{column} is empty: {exc}"]
                return stats
            if result.weight == "buildings":
                column = f"{kind}_{minutes:g}min_building_share"
            shares = result.districts.set_index("district")["share"]
            finest = stats["level"] == stats["level"].max()
            stats[column] = stats["name"].map(shares).where(finest)
            stats.attrs["notes"] = list(result.notes)
        return stats

    def camera_coverage(self, *, at: datetime | str | None = None) -> CameraCoverage:
        """Return the cameras' view cones, road coverage per district and the blind spots.

        Parameters
        ----------
        at
            A moment; the current cameras and roads by default.

        Returns
        -------
        layers.cameras.CameraCoverage
            The cones (EPSG:4326), the share of road length seen per district and the blind
            spots.

        Raises
        ------
        ParameterError
            If ``at`` is not an ISO 8601 moment.
        AccessError
            If this session may not read the cameras.
        """
        return camera_coverage(url=self.url, at=at)

    # --- utility networks -------------------------------------------------------------------

    @cached_property
    def utilities(self) -> Utilities:
        """The utility networks (water, gas, sewer, heat, power), built on first use."""
        return Utilities(self.url)

    def isolate(
        self,
        point: Place | None = None,
        *,
        network: str | None = None,
        line: str | None = None,
        inoperable: Sequence[str] = (),
    ) -> Outage:
        """Isolate a break on a pipe (or a fault on a power line): what to close, what is lost.

        Parameters
        ----------
        point
            The break: ``(lon, lat)`` or shapely Point, EPSG:4326 (within 25 m of a line).
        network
            ``water``, ``gas``, ``sewer``, ``heat`` or ``power``; the nearest line's otherwise.
        line
            A line id instead of a point.
        inoperable
            Valves or switches that will not operate.

        Returns
        -------
        routing.traces.Outage
            Devices to operate, pieces isolated, nodes, hydrants and buildings without supply.

        Raises
        ------
        ParameterError
            If ``point`` is not a position.
        MissingNetworkError
            If ``network`` holds no lines (a :class:`MissingInputError` naming the layer to
            load).
        MissingInputError
            If no network is given and none holds lines.
        TopologyError
            If ``network`` is unknown, neither a point nor a line is given, the point or line
            is on no line of the network(s), or an inoperable device is not in it.
        AccessError
            If this session may not read what the network is drawn from.
        """
        place = None if point is None else as_lonlat(point, "point")
        return self.utilities.isolate(place, network=network, line=line, inoperable=inoperable)

    def outage(
        self, network: str, *, operate: Sequence[str] = (), out: Sequence[str] = ()
    ) -> Outage:
        """Trace what closing valves, opening switches or losing elements cuts off.

        Parameters
        ----------
        network
            The network.
        operate
            Valves closed or switches opened.
        out
            Nodes or lines out of service.

        Returns
        -------
        routing.traces.Outage
            What loses supply.

        Raises
        ------
        MissingNetworkError
            If the network holds no lines (a :class:`MissingInputError` naming the layer to
            load).
        TopologyError
            If ``network`` is unknown, or a device or element is not in the network.
        AccessError
            If this session may not read what the network is drawn from.
        """
        return self.utilities.outage(network, operate=operate, out=out)

    def grid_cascade(self, *, operate: Sequence[str] = (), out: Sequence[str] = ()) -> Cascade:
        """Trace a grid outage and what it darkens: pumps (and their water), signals, cameras.

        Parameters
        ----------
        operate
            Switches opened.
        out
            Power nodes or lines out of service.

        Returns
        -------
        routing.traces.Cascade
            The grid outage, the dark assets, the water lost with the pumps.

        Raises
        ------
        MissingNetworkError
            If no power lines are loaded (a :class:`MissingInputError`).
        TopologyError
            If a switch or element is not in the grid.
        AccessError
            If this session may not read what the networks are drawn from.
        """
        return self.utilities.cascade(self.outage("power", operate=operate, out=out))

    def incident_impact(
        self,
        geometry: shapely.Geometry,
        *,
        kind: str,
        radius_m: float | None = None,
        units: int = 3,
    ) -> incidents.Impact:
        """Read an incident's impact across the layers in one call.

        Parameters
        ----------
        geometry
            The incident, a point or an area (EPSG:4326).
        kind
            ``fire``, ``burst_main``, ``gas_leak``, ``power_fault``, ``collision`` ...
        radius_m
            Radius in which assets are hit; the kind's default otherwise.
        units
            How many units to send.

        Returns
        -------
        twin.incidents.Impact
            Assets hit, utility isolation (and cascade), units with routes, roads to close.

        Raises
        ------
        ParameterError
            If ``geometry`` is not a Point or a Polygon, or ``units`` is not 0 to 20.
        OneMapError
            If ``geometry`` is empty or not in lon/lat, or ``radius_m`` is out of range.
        RoutingError
            If units are asked for and the incident is outside the city or off the roads, or
            no roads are loaded.
        """
        return incidents.impact(self, geometry, kind=kind, radius_m=radius_m, units=units)

    # --- rasters ----------------------------------------------------------------------------

    def ingest_raster(
        self,
        path: str | Path,
        *,
        name: str,
        kind: str,
        source: str | None = None,
        unit: str | None = None,
    ) -> rasters.RasterInfo:
        """Store a GeoTIFF (DEM, flood depth, population density) under a name, versioned.

        Parameters
        ----------
        path
            The raster file (GeoTIFF, or anything GDAL reads: converted to GeoTIFF).
        name
            Name to store it under; a new version closes the previous one.
        kind
            ``dem``, ``flood_depth`` or ``population_density``.
        source
            Provenance label.
        unit
            Unit of the values.

        Returns
        -------
        layers.rasters.RasterInfo
            What was stored.

        Raises
        ------
        IngestError
            If the file is not a usable raster or the name or kind is wrong; every problem
            names the file and the reason, and nothing is written.
        """
        return rasters.ingest_raster(
            path, name=name, kind=kind, url=self.url, source=source, unit=unit
        )

    def rasters(self, *, at: datetime | str | None = None) -> pd.DataFrame:
        """Return the stored rasters.

        Parameters
        ----------
        at
            A moment: the versions valid then; the current ones by default.

        Returns
        -------
        pandas.DataFrame
            One row per raster: name, kind, source, validity, CRS, size, dtype, nodata,
            unit, checksum and bounds (EPSG:4326).

        Raises
        ------
        RasterError
            If ``at`` is not an ISO 8601 moment.
        """
        return rasters.list_rasters(url=self.url, at=at)

    def zonal_stats(
        self,
        name: str,
        zones: gpd.GeoDataFrame | None = None,
        *,
        at: datetime | str | None = None,
    ) -> pd.DataFrame:
        """Return a raster's statistics per zone (per district when no zones are given).

        Parameters
        ----------
        name
            The raster.
        zones
            Polygons; the districts by default.
        at
            A moment; current versions by default.

        Returns
        -------
        pandas.DataFrame
            count, min, max, mean, sum per zone (and population for a density raster).

        Raises
        ------
        RasterError
            If the raster does not exist (then), ``at`` is not ISO 8601, or the zones have no
            CRS.
        AccessError
            If no zones are given and this session may not read the districts.
        """
        if zones is None:
            return rasters.district_stats(name, url=self.url, at=at)
        return rasters.zonal_stats(name, zones, url=self.url, at=at)

    def pipe_profiles(self, *, dem: str = "dem", network: str | None = None) -> gpd.GeoDataFrame:
        """Sample the DEM along the pipelines: ground, pipe elevation, cover and slope per pipe.

        Parameters
        ----------
        dem
            The stored raster of kind ``dem``.
        network
            Only the pipes of this network; all by default.

        Returns
        -------
        geopandas.GeoDataFrame
            One row per pipe (see :func:`layers.rasters.pipe_profiles`), EPSG:4326.

        Raises
        ------
        RasterError
            If the DEM does not exist or is not of kind ``dem``.
        """
        return rasters.pipe_profiles(dem=dem, network=network, url=self.url)

    def flood_closures(self, name: str, *, threshold_m: float = 0.3) -> list[str]:
        """Close the roads a stored flood-depth raster puts under more than ``threshold_m``.

        Parameters
        ----------
        name
            A stored raster of kind ``flood_depth``.
        threshold_m
            Depth above which a road is impassable (m).

        Returns
        -------
        list of str
            The closed road ids (until :meth:`routing.Router.clear_flood`).

        Raises
        ------
        RasterError
            If there is no such raster, or it is not of kind ``flood_depth``.
        RoutingError
            If ``threshold_m`` is negative, the raster cannot be read, or no roads are loaded.
        """
        return self.router.flood(rasters.flood_raster(name, url=self.url), threshold_m=threshold_m)

    # --- traffic signals -------------------------------------------------------------------

    def import_sumo(
        self,
        scenario: str | Path,
        *,
        base: str = "scenario",
        progress: IngestProgress | None = None,
    ) -> list[IngestReport]:
        """Import a SUMO scenario's roads, intersections and signals (with their flows).

        See :func:`twin.signals.import_sumo`.

        Parameters
        ----------
        scenario
            The ``.sumocfg`` file.
        base
            Programs to store: ``scenario`` (its own plans) or ``network`` (the defaults).
        progress
            Called as ``progress(stage, done, total)``.

        Returns
        -------
        list of IngestReport
            One report per layer (roads, intersections, signals).

        Raises
        ------
        SignalError
            If the scenario or its network, programs or routes cannot be read.
        IngestError
            If a feature is invalid; nothing is written.
        """
        reports = twin_signals.import_sumo(scenario, base=base, url=self.url, progress=progress)
        self.__dict__.pop("router", None)  # the roads changed: build the graph again
        return reports

    def optimise_signals(
        self,
        name: str,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        signals: Sequence[str] | None = None,
        greenwave: bool = False,
        settings: WebsterSettings | None = None,
    ) -> dict[str, Any]:
        """Time an area's or a corridor's signals by Webster's method; store it under a name.

        Parameters
        ----------
        name
            The plan's name (saving it again adds a version).
        bbox
            ``(min lon, min lat, max lon, max lat)``: every signal inside.
        signals
            Signal ids; with ``greenwave`` their order is the corridor's.
        greenwave
            One common cycle and MAXBAND offsets along the corridor.
        settings
            Webster's inputs.

        Returns
        -------
        dict
            The stored plan: name, version, request and plan (per signal: cycle, greens,
            offset, phases, predicted delay).

        Raises
        ------
        SignalError
            No signals in the area, unknown signals, signals without approach data, a
            corridor of fewer than two signals or whose signals the roads do not connect.
        ParameterError
            If ``name`` is not a valid plan name (letters, digits, ``_.-``, up to 63).
        RoutingError
            With ``greenwave``, if no roads are loaded.
        """
        return twin_signals.optimise_signals(
            name=name,
            graph=self.road_graph(profile="car"),
            bbox=bbox,
            ids=signals,
            greenwave=greenwave,
            settings=settings,
            url=self.url,
        )

    def export_sumo(self, folder: str | Path, *, name: str = "twin") -> Path:
        """Write the city's roads and signals as a SUMO network; return the ``.net.xml``.

        See :func:`routing.signals.sumo.network_to_sumo`.

        Parameters
        ----------
        folder
            Where to write the network (created if need be).
        name
            The files' base name.

        Returns
        -------
        pathlib.Path
            The ``<name>.net.xml`` written.

        Raises
        ------
        SignalError
            If there are no roads, or netconvert refuses them or does not finish in time.
        AccessError
            If this session may not read the roads or the signals.
        """
        return network_to_sumo(
            self.layer("roads"),
            self.layer("signals"),
            folder,
            metric_crs=self.metric_crs,
            name=name,
        )

    def signal_plan(self, name: str) -> dict[str, Any] | None:
        """Return the current version of a stored signal plan, or None.

        Parameters
        ----------
        name
            The plan's name.

        Returns
        -------
        dict or None
            Name, version, ``valid_from``, request and plan; None if there is no such plan.

        Raises
        ------
        StoreError
            Only when the store cannot be reached: an unknown name is None.
        """
        return get_plan(name, url=self.url)

    def signal_plans(self) -> list[dict[str, Any]]:
        """Return the stored signal plans (current versions).

        Returns
        -------
        list of dict
            One per plan, by name.

        Raises
        ------
        StoreError
            Only when the store cannot be reached.
        """
        return list_plans(url=self.url)

    def signal_plan_sumo(self, name: str) -> str:
        """Return a stored signal plan as a SUMO additional file.

        Parameters
        ----------
        name
            The plan's name.

        Returns
        -------
        str
            The additional file's XML (a ``tlLogic`` per signal).

        Raises
        ------
        KeyError
            If there is no such plan.
        """
        try:
            return twin_signals.plan_sumo(name, url=self.url)
        except LookupError as exc:
            raise KeyError(name) from exc

    def green_corridor(
        self, origin: Place, destination: Place, *, depart_s: float = 0.0
    ) -> tuple[Route | None, list[Hold]]:
        """Plan the emergency green corridor along the fastest emergency route.

        Parameters
        ----------
        origin, destination
            ``(lon, lat)`` or shapely Point, EPSG:4326.
        depart_s
            Departure on the signal plans' clock, s.

        Returns
        -------
        tuple
            The route (None if unreachable) and the signal holds along it.

        Raises
        ------
        ParameterError
            If ``origin`` or ``destination`` is not a position (parameter ``from``/``to``).
        RoutingError
            If a point is outside the city or more than 250 m from an open road, or no
            roads are loaded.
        """
        trip = self.route(origin, destination, profile="emergency")
        if trip is None:
            return None, []
        return trip, twin_signals.emergency_corridor(trip, depart_s=depart_s, url=self.url)

    def _resources(self, kind: str | None) -> list[dict[str, Any]]:
        """Available resources where they are now: a unit's live (AVL) position while it lasts."""
        with cursor(self.url) as cur:  # the resources of the scenario in force, if any
            cur.execute(
                _RESOURCES.format(
                    resources=overlay.relation(LAYERS["resources"]),
                    when=overlay.valid_at(overlay.read_moment(None), table="r"),
                ),
                {"kind": kind, "then": overlay.read_moment(None)},
            )
            rows = cur.fetchall()
        return [
            {"id": str(i), "kind": k, "name": name, "lon": float(lon), "lat": float(lat)}
            for i, k, name, lon, lat in rows
        ]


# available resources, each at its unexpired live position (twin.live.vehicles) or its stored one
_RESOURCES = sql.SQL("""
SELECT r.id, r.kind, r.name, ST_X(COALESCE(p.geom, r.geom)), ST_Y(COALESCE(p.geom, r.geom))
FROM {resources} r
LEFT JOIN live_positions p ON p.resource_id = r.id AND p.expires_at > now()
    AND %(then)s::timestamptz IS NULL
WHERE {when} AND (%(kind)s::text IS NULL OR r.kind = %(kind)s)
  AND (r.status IS NULL OR r.status = 'available')
ORDER BY r.id
""")


def _current_road_lines(url: str, road_ids: list[str]) -> dict[str, shapely.Geometry]:
    """Return the current geometry of the given road edges, by id."""
    query = sql.SQL(
        "SELECT id, ST_AsBinary(geom) FROM {} AS r WHERE {} AND id = ANY(%(ids)s)"
    ).format(overlay.relation(LAYERS["roads"]), overlay.valid_at(overlay.read_moment(None)))
    with cursor(url) as cur:
        cur.execute(query, {"ids": road_ids})
        return {str(i): shapely.from_wkb(bytes(g)) for i, g in cur.fetchall()}


#: The facade's methods that write the base (or the router's shared state): refused in a
#: scenario, whose edits go through ``city.scenarios`` (the API refuses them the same way).
BASE_WRITES = frozenset(
    {"ingest", "close_roads", "ingest_raster", "flood_closures", "import_sumo", "optimise_signals"}
)


def _under_grant(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a facade method under its session's grant and in its scenario (see :class:`City`)."""

    @functools.wraps(method)
    def call(self: City, *args: Any, **kwargs: Any) -> Any:
        if self.scenario is not None and method.__name__ in BASE_WRITES:
            raise ParameterError(
                f"scenario: {method.__name__} would change the base twin, not scenario "
                f"{self.scenario!r}; edit the scenario with city.scenarios.put / .retire "
                "(a closure is a feature of the closures layer; a flood, its settings)",
                parameter="scenario",
            )
        grant = self.grant
        with contextlib.ExitStack() as stack:
            if grant is not None:
                stack.enter_context(access.acting_as(grant))
            if self.scenario is not None:
                stack.enter_context(scenario_store.using(self.scenario, url=self.url))
            return method(self, *args, **kwargs)

    return call


for _name, _member in list(vars(City).items()):
    if callable(_member) and not _name.startswith("_"):
        setattr(City, _name, _under_grant(_member))


def connect(
    url: str | None = None, *, token: str | None = None, api_key: str | None = None
) -> City:
    """Connect to the city's store, as its owner or signed in as a user.

    Parameters
    ----------
    url
        Database URL; ``TWIN_DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432/twin``.
    token
        A bearer token: the session sees what that user sees through the API.
    api_key
        An API key, likewise.

    Returns
    -------
    City
        The facade.

    Raises
    ------
    IdentityError
        For credentials that are not valid (expired, revoked, unknown).
    """
    return City(url, token=token, api_key=api_key)
