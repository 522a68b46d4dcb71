"""How the twin's layers are drawn: one definition per layer, for the viewer and for notebooks.

:data:`STYLES` says, for every layer, its group in the layer panel, its colours (one, or one
per value of an attribute), widths and radii in metres, whether it is extruded (buildings by
height) or drawn below the ground (pipelines by depth), and from which zoom it is shown. The
viewer page (``GET /``) reads :func:`viewer_styles` and builds deck.gl layers from it in the
browser; notebooks get pydeck layers from :func:`pydeck_layer` and :meth:`twin.City.map`, drawn
the same way. :func:`to_html` renders a pydeck map with deck.gl inlined from pydeck's own
bundle: no CDN, no web basemap, so it works with no internet.

Underground networks are coloured by the APWA Uniform Color Code (American Public Works
Association, ANSI Z535.1 safety colours), as utility locators mark them: potable water blue,
sewers and drains green, gas, oil and steam yellow, electric power red, communications orange,
reclaimed water purple. The code has no colour of its own for district heating: heat is steam
and hot water, so it is drawn in the code's yellow family, a darker amber than gas so the two are
told apart (:data:`NETWORK_COLORS`).
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pydeck as pdk
import shapely

from layers.catalog import LAYERS
from layers.defaults import building_heights_m

RGBA = tuple[int, int, int, int]
#: How many times deeper than real underground lines are drawn, so a 1.2 m main is visible;
#: their diameters are drawn as many times wider, so pipes keep their proportions at depth.
DEPTH_EXAGGERATION = 10.0
#: deck.gl's bundle as pydeck ships it (used by ``to_html(offline=True)``); served by the API.
DECK_BUNDLE = Path(pdk.__file__).parent / "nbextension" / "static" / "index.js"


@dataclass(frozen=True)
class Style:
    """How one layer is drawn.

    Attributes
    ----------
    layer
        Layer id.
    group
        Panel group: ``basemap``, ``surface``, ``underground``, ``grid``, ``traffic``,
        ``emergency`` or ``events``.
    shape
        ``line``, ``point`` or ``area`` (incidents and closures: ``any``).
    color
        Colour when no attribute picks one.
    by
        Attribute whose value picks the colour from ``colors``.
    colors
        Colour per value of ``by``.
    width_m
        Line width, or outline width of areas (m).
    radius_m
        Point radius (m).
    extrude
        Attribute giving the height to extrude areas by (m).
    depth
        Attribute giving the depth below ground (m), drawn ``DEPTH_EXAGGERATION`` times deeper.
    diameter
        Attribute giving a line's diameter (mm): the line is drawn as a tube (a line facing the
        camera) ``DEPTH_EXAGGERATION`` times as wide, at least ``width_m``.
    minzoom
        Shown from this zoom on.
    visible
        Shown when the viewer opens.
    source
        ``tiles`` (the layer's vector tiles) or ``features`` (GeoJSON per tile from the OGC
        API: for what needs full attributes or 3D coordinates).
    """

    layer: str
    group: str
    shape: Literal["line", "point", "area", "any"]
    color: RGBA
    by: str | None = None
    colors: dict[str, RGBA] = field(default_factory=dict)
    width_m: float = 2.0
    radius_m: float = 4.0
    extrude: str | None = None
    depth: str | None = None
    diameter: str | None = None
    minzoom: int = 12
    visible: bool = True
    source: Literal["tiles", "features"] = "tiles"

    def color_of(self, values: pd.Series) -> np.ndarray:
        """Return the RGBA colour of each feature, from the ``by`` attribute's values."""
        if self.by is None:
            return np.tile(np.array(self.color, dtype=np.uint8), (len(values), 1))
        keys = values.astype(object).where(values.notna(), None)
        return np.array(
            [self.colors.get(str(v).lower(), self.color) for v in keys], dtype=np.uint8
        ).reshape(-1, 4)


ROAD_COLORS: dict[str, RGBA] = {
    "motorway": (233, 115, 103, 255),
    "trunk": (240, 160, 110, 255),
    "primary": (245, 190, 110, 255),
    "secondary": (246, 218, 140, 255),
    "tertiary": (250, 250, 250, 255),
    "residential": (236, 236, 236, 255),
    "service": (225, 225, 225, 255),
}
#: Colour per utility network, by the APWA Uniform Color Code (see the module's notes); district
#: heat (not in the code) in a darker amber of the code's steam yellow.
NETWORK_COLORS: dict[str, RGBA] = {
    "water": (0, 90, 230, 255),  # potable water: blue
    "sewer": (0, 150, 60, 255),  # sewers and drain lines: green
    "gas": (250, 210, 0, 255),  # gas, oil, steam: yellow
    "heat": (200, 130, 0, 255),  # district heat (hot water, steam): amber, of the yellow family
    "power": (230, 0, 0, 255),  # electric power lines, cables: red
    "telecom": (255, 130, 0, 255),  # communications, alarm, signal lines: orange
    "reclaimed": (130, 40, 160, 255),  # reclaimed water, irrigation: purple
}

#: How each layer is drawn.
STYLES: dict[str, Style] = {
    s.layer: s
    for s in (
        Style("districts", "basemap", "area", (120, 130, 150, 40), width_m=3.0, minzoom=0),
        Style(
            "roads",
            "basemap",
            "line",
            (210, 210, 210, 255),
            by="class",
            colors=ROAD_COLORS,
            width_m=5.0,
            minzoom=12,
        ),
        Style(
            "buildings",
            "surface",
            "area",
            (200, 195, 185, 230),
            extrude="height_m",
            width_m=0.5,
            minzoom=14,
        ),
        Style(
            "pipelines",
            "underground",
            "line",
            (120, 120, 120, 255),
            by="network",
            colors=NETWORK_COLORS,
            width_m=1.5,
            depth="depth_m",
            diameter="diameter_mm",
            # shown from the zoom the viewer opens a city the size of a district at (a larger
            # city opens further out, where a city's pipes are too many to draw as features)
            minzoom=13,
            source="features",
        ),
        Style(
            "pipe_nodes",
            "underground",
            "point",
            (90, 90, 90, 255),
            by="kind",
            colors={
                "valve": (20, 60, 160, 255),
                "hydrant": (220, 30, 30, 255),
                "source": (0, 170, 220, 255),
                "pump": (120, 0, 160, 255),
                "junction": (150, 150, 150, 160),
            },
            radius_m=2.0,
            minzoom=16,
            visible=False,
            source="features",
        ),
        Style(
            "power_lines",
            "grid",
            "line",
            (200, 120, 20, 255),
            by="kind",
            colors={"service": (240, 190, 120, 160), "cable": (150, 60, 170, 255)},
            width_m=1.2,
            minzoom=14,
            visible=False,
        ),
        Style(
            "power_nodes",
            "grid",
            "point",
            (200, 120, 20, 255),
            by="kind",
            colors={"substation": (150, 60, 170, 255), "consumer": (240, 190, 120, 120)},
            radius_m=3.0,
            minzoom=15,
            visible=False,
        ),
        Style(
            "intersections",
            "traffic",
            "point",
            (120, 120, 120, 200),
            radius_m=1.5,
            minzoom=16,
            visible=False,
        ),
        Style("signals", "traffic", "point", (40, 170, 60, 255), radius_m=4.0, minzoom=13),
        Style("cameras", "traffic", "point", (90, 40, 140, 255), radius_m=3.0, minzoom=13),
        Style(
            "resources",
            "emergency",
            "point",
            (60, 60, 60, 255),
            by="kind",
            colors={
                "fire_station": (210, 30, 30, 255),
                "hospital": (20, 140, 80, 255),
                "police": (30, 70, 200, 255),
                "shelter": (120, 90, 40, 255),
                "vehicle": (240, 120, 0, 255),
            },
            radius_m=12.0,
            minzoom=11,
        ),
        Style("incidents", "events", "any", (230, 0, 60, 200), radius_m=15.0, minzoom=10),
        Style(
            "closures", "events", "any", (255, 140, 0, 200), width_m=6.0, radius_m=10.0, minzoom=10
        ),
    )
}
assert set(STYLES) == set(LAYERS), "every layer has a style"


def viewer_styles() -> list[dict[str, Any]]:
    """Return every layer's style as JSON-ready dicts, in drawing order (basemap first)."""
    out = []
    for style in STYLES.values():
        entry = asdict(style)
        entry["title"] = LAYERS[style.layer].title
        entry["colors"] = {k: list(v) for k, v in style.colors.items()}
        entry["color"] = list(style.color)
        out.append(entry)
    return out


def pydeck_layer(layer_id: str, frame: gpd.GeoDataFrame, **overrides: Any) -> pdk.Layer:
    """Return a pydeck layer drawing a layer's features as the viewer does.

    Parameters
    ----------
    layer_id
        Layer id (its :data:`STYLES` entry is used).
    frame
        Its features, EPSG:4326 (e.g. ``city.layer(layer_id)``).
    **overrides
        deck.gl layer properties to set or replace (``opacity``, ``pickable`` ...).

    Returns
    -------
    pydeck.Layer
        A ``GeoJsonLayer``; pipelines carry their exaggerated depth as z.
    """
    style = STYLES[layer_id]
    frame = frame.to_crs(4326) if frame.crs is not None else frame
    by = style.by if style.by in frame else None
    colors = style.color_of(frame[by] if by else pd.Series([None] * len(frame), dtype=object))
    geometry = frame.geometry.to_numpy()
    if style.depth and style.depth in frame:
        depth = pd.to_numeric(frame[style.depth], errors="coerce").fillna(1.0).to_numpy(float)
        geometry = np.array(
            [
                shapely.force_3d(g, -d * DEPTH_EXAGGERATION)
                for g, d in zip(geometry, depth, strict=True)
            ],
            dtype=object,
        )
    keep = [c for c in frame.columns if c not in ("geometry", "props", "valid_from", "valid_to")]
    data = gpd.GeoDataFrame(frame[keep].copy(), geometry=geometry, crs=4326)
    data["_color"] = colors.tolist()
    if style.extrude and style.extrude in frame:
        # a building with no height is extruded by its storeys, else the default height
        levels = frame["levels"] if style.extrude == "height_m" and "levels" in frame else None
        data["_height"] = building_heights_m(frame[style.extrude], levels)
    collection = json.loads(data.to_json(na="null", drop_id=True, default=str))
    props: dict[str, Any] = {
        "id": layer_id,
        "data": collection,
        "pickable": True,
        "stroked": True,
        "filled": True,
        "get_fill_color": "properties._color",
        "get_line_color": "properties._color",
        "get_line_width": style.width_m,  # metres: deck.gl's default units
        "get_point_radius": style.radius_m,
        "extruded": bool(style.extrude),
        "get_elevation": "properties._height" if style.extrude else 0,
    }
    if style.diameter:
        # a tube: a line facing the camera, as wide as the pipe (exaggerated as its depth)
        diameter = (
            pd.to_numeric(frame[style.diameter], errors="coerce").to_numpy(float)
            if style.diameter in frame
            else np.full(len(frame), np.nan)
        )
        width = np.fmax(np.nan_to_num(diameter / 1000 * DEPTH_EXAGGERATION), style.width_m)
        for feature, w in zip(collection["features"], width, strict=True):
            feature["properties"]["_width"] = float(w)
        props.update(
            get_line_width="properties._width",
            line_billboard=True,
            line_width_min_pixels=2,
            line_joint_rounded=True,
            line_cap_rounded=True,
        )
    props.update(overrides)
    return pdk.Layer("GeoJsonLayer", **props)


def view_of(frames: list[gpd.GeoDataFrame], *, pitch: float = 45.0) -> pdk.ViewState:
    """Return a view state framing the given features."""
    bounds = [f.total_bounds for f in frames if len(f)]
    if not bounds:
        return pdk.ViewState(longitude=0.0, latitude=0.0, zoom=1.0)
    stack = np.vstack(bounds)
    xmin, ymin = stack[:, 0].min(), stack[:, 1].min()
    xmax, ymax = stack[:, 2].max(), stack[:, 3].max()
    span = max(xmax - xmin, (ymax - ymin) * 1.4, 1e-4)
    zoom = float(np.clip(np.log2(360.0 / span) + 0.3, 1, 19))
    return pdk.ViewState(
        longitude=float((xmin + xmax) / 2),
        latitude=float((ymin + ymax) / 2),
        zoom=zoom,
        pitch=pitch,
    )


def to_html(deck: pdk.Deck, *, title: str = "CityTwin") -> str:
    """Render a pydeck map as a self-contained HTML page: deck.gl inlined, nothing fetched.

    Parameters
    ----------
    deck
        The map (no web basemap: ``map_style=None``).
    title
        Page title.

    Returns
    -------
    str
        The page; display it in a notebook with ``IPython.display.HTML`` (as an iframe's
        ``srcdoc``) or save it to a file.
    """
    spec = deck.to_json()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>html,body,#map{{margin:0;width:100%;height:100%;background:#f4f3ef}}</style>
<script>{_bundle()}</script></head><body><div id="map"></div><script>
createDeck({{container: document.getElementById("map"), jsonInput: {spec},
  tooltip: true, customLibraries: null, configuration: null}});
</script></body></html>"""


def iframe(deck: pdk.Deck, *, height: int = 480) -> str:
    """Return an ``<iframe>`` (in a ``<div>``) holding :func:`to_html`, for ``display.HTML``."""
    page = html.escape(to_html(deck), quote=True)
    return (
        f'<div><iframe srcdoc="{page}" style="width:100%;height:{height}px;border:0" '
        'sandbox="allow-scripts"></iframe></div>'
    )


@cache
def _bundle() -> str:
    return DECK_BUNDLE.read_text(encoding="utf-8").replace("</script", "<\\/script")
