"""OGC API - Styles (draft 20-009): a MapLibre style per tileset, drawn as the viewer draws.

Every style is generated from :data:`twin.deck.STYLES`, the definitions the viewer page and the
notebooks draw with: a style per collection (its tileset) and ``map`` for the one-map tileset.
Sources are the twin's own TileJSON, so a client overzooms where the tiles stop changing; no
glyphs or sprites are named (nothing is fetched from outside), so text labels are left out.
Widths and radii in metres become pixels per zoom at the data's latitude, never thinner than
the viewer draws them (one pixel for lines, two for points). Pipelines are drawn flat: MapLibre
has no underground.
"""

from __future__ import annotations

import html
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.errors import NotFoundError, ProblemError, problem_responses
from api.parameters import known_parameters
from api.tiles import MAPBOX_STYLE, MATRIX_SET
from layers import access
from layers.catalog import LAYERS
from layers.defaults import DEFAULT_BUILDING_HEIGHT_M, STOREY_HEIGHT_M
from layers.features import extent
from layers.sources import attribution_text, credits
from twin.deck import STYLES, Style

_SPEC = "http://www.opengis.net/spec/ogcapi-styles-1/1.0/conf"
#: OGC API - Styles conformance classes this module implements (gathered by the app).
CONFORMANCE = [f"{_SPEC}/core", f"{_SPEC}/mapbox-styles"]
#: The viewer's ground colour (api/static/viewer.css).
BACKGROUND = "#f4f3ef"
#: Metres per pixel at zoom 0 on the equator (256-pixel tiles).
_EQUATOR_M_PER_PX = 40075016.685578488 / 256
_ZOOMS = range(0, 23)
ONE_MAP = "map"
StyleFormat = Annotated[
    str | None, Query(description="mapbox (the only encoding, also the default)")
]


def _rgba(color: tuple[int, int, int, int] | list[int]) -> str:
    r, g, b, a = color
    return f"rgba({r}, {g}, {b}, {round(a / 255, 3)})"


def _color(style: Style) -> Any:
    """Return a colour expression: one colour, or one per value of the ``by`` attribute."""
    if style.by is None or not style.colors:
        return _rgba(style.color)
    match: list[Any] = ["match", ["downcase", ["to-string", ["get", style.by]]]]
    for value, color in style.colors.items():
        match += [value, _rgba(color)]
    return [*match, _rgba(style.color)]


def _pixels(metres: float, latitude: float, minimum: float) -> list[Any]:
    """Return a zoom expression giving ``metres`` in pixels at ``latitude``, at least ``minimum``.

    Between whole zooms a distance doubles per zoom (exponential base 2), as on the ground.
    """
    stops: list[Any] = []
    for z in _ZOOMS:
        per_pixel = _EQUATOR_M_PER_PX * math.cos(math.radians(latitude)) / 2**z
        stops += [z, round(max(minimum, metres / per_pixel), 3)]
    return ["interpolate", ["exponential", 2], ["zoom"], *stops]


def style_layers(style: Style, source: str, latitude: float, *, hidden: bool) -> list[dict]:
    """Return the MapLibre layers drawing one twin layer as the viewer does.

    Parameters
    ----------
    style
        The layer's :data:`twin.deck.STYLES` entry.
    source
        Id of the vector source holding its tiles (the MVT layer is named after the layer).
    latitude
        Where the data is: metres become pixels there.
    hidden
        Whether the layer starts hidden (``visibility: none``), as in the viewer's panel.

    Returns
    -------
    list of dict
        Fill (or fill-extrusion), line and circle layers, as the layer's shape needs.
    """
    color = _color(style)
    base = {"source": source, "source-layer": style.layer, "minzoom": style.minzoom}
    layout = {"visibility": "none"} if hidden else {}
    kinds = {"line": ["line"], "point": ["circle"], "area": ["fill", "line"]}
    out = []
    for kind in kinds.get(style.shape, ["fill", "line", "circle"]):
        layer: dict[str, Any] = {"id": f"{style.layer}-{kind}", "type": kind, **base}
        if style.shape == "any":  # incidents, closures: each geometry drawn as its kind
            geometry = {"fill": "Polygon", "line": "LineString", "circle": "Point"}[kind]
            layer["filter"] = ["==", ["geometry-type"], geometry]
        if kind == "fill" and style.extrude:
            layer["type"] = "fill-extrusion"
            layer["id"] = f"{style.layer}-fill-extrusion"
            layer["paint"] = {
                "fill-extrusion-color": color,
                # layers.defaults.building_height_m: the height, else 3 m a storey, else 10 m
                # (to-number makes a null 0, so presence is tested with "has")
                "fill-extrusion-height": [
                    "case",
                    ["has", style.extrude],
                    ["to-number", ["get", style.extrude], DEFAULT_BUILDING_HEIGHT_M],
                    ["has", "levels"],
                    ["*", STOREY_HEIGHT_M, ["to-number", ["get", "levels"], 0]],
                    DEFAULT_BUILDING_HEIGHT_M,
                ],
                "fill-extrusion-opacity": round(style.color[3] / 255, 3),
            }
        elif kind == "fill":
            layer["paint"] = {"fill-color": color}
        elif kind == "line":
            minimum = 0.5 if style.shape == "area" else 1.0
            layer["paint"] = {
                "line-color": color,
                "line-width": _pixels(style.width_m, latitude, minimum),
            }
        else:
            minimum = 6.0 if style.layer == "resources" else 2.0
            layer["paint"] = {
                "circle-color": color,
                "circle-radius": _pixels(style.radius_m, latitude, minimum),
            }
        if layout:
            layer["layout"] = dict(layout)
        out.append(layer)
    return out


def maplibre_style(base: str, style_id: str, url: str) -> dict[str, Any]:
    """Return the MapLibre style (v8) of a collection's tileset, or of the one-map's.

    Parameters
    ----------
    base
        The API's base URL: sources point at its TileJSON.
    style_id
        A collection id, or ``map`` for the one-map tileset (every layer in one source).
    url
        Database URL (for where the data is).

    Returns
    -------
    dict
        The style document.
    """
    layer_ids = access.visible(list(LAYERS)) if style_id == ONE_MAP else [style_id]
    boxes = [b for b in (extent(layer_id, url=url) for layer_id in layer_ids) if b]
    if boxes:
        west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
        east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
    else:
        west, south, east, north = -180.0, -85.0, 180.0, 85.0
    latitude = (south + north) / 2
    if style_id == ONE_MAP:
        tilejson = f"{base}/tiles/{MATRIX_SET}/tilejson.json"
        title = "One map"
    else:
        tilejson = f"{base}/collections/{style_id}/tiles/{MATRIX_SET}/tilejson.json"
        title = LAYERS[style_id].title
    layers: list[dict[str, Any]] = [
        {"id": "background", "type": "background", "paint": {"background-color": BACKGROUND}}
    ]
    for layer_id in [i for i in STYLES if i in layer_ids]:  # drawing order: basemap first
        hidden = style_id == ONE_MAP and not STYLES[layer_id].visible
        layers += style_layers(STYLES[layer_id], "twin", latitude, hidden=hidden)
    span = max(east - west, (north - south) * 1.4, 1e-4)
    return {
        "version": 8,
        "name": f"CityTwin — {title}",
        "metadata": {"citytwin:style": style_id},
        "center": [(west + east) / 2, latitude],
        "zoom": round(min(max(math.log2(360.0 / span) + 0.3, 1.0), 19.0), 2),
        "sources": {
            "twin": {
                "type": "vector",
                "url": tilejson,
                # exactly the sources of what the style draws (a style's source may hold HTML)
                "attribution": html.escape(
                    attribution_text(credits(url, layers=layer_ids)), quote=False
                ),
            }
        },
        "layers": layers,
    }


class StyleResponse(JSONResponse):
    """A MapLibre / Mapbox style document, typed as such."""

    media_type = MAPBOX_STYLE


def _style_ids() -> list[str]:
    return [ONE_MAP, *access.visible(list(LAYERS))]  # the styles of what the caller may read


def _style_id(value: str) -> str:
    if value not in _style_ids():
        if value in LAYERS:
            access.require(value)  # a hidden layer's style: as its layer answers
        raise NotFoundError(
            f"unknown style {value!r}; styles: {', '.join(_style_ids())}", parameter="styleId"
        )
    return value


def routes(url: str) -> APIRouter:
    """Build the style endpoints.

    Parameters
    ----------
    url
        Database URL.

    Returns
    -------
    fastapi.APIRouter
        ``/styles``, ``/styles/{styleId}`` and ``/styles/{styleId}/metadata``.
    """
    router = APIRouter(
        tags=["styles"],
        dependencies=[Depends(known_parameters)],
        responses=problem_responses(400),
    )

    def links(base: str, style_id: str) -> list[dict[str, Any]]:
        return [
            {
                "rel": "stylesheet",
                "type": MAPBOX_STYLE,
                "title": "MapLibre / Mapbox style",
                "href": f"{base}/styles/{style_id}?f=mapbox",
            },
            {
                "rel": "describedby",
                "type": "application/json",
                "href": f"{base}/styles/{style_id}/metadata",
            },
        ]

    def title(style_id: str) -> str:
        return "One map" if style_id == ONE_MAP else LAYERS[style_id].title

    @router.get("/styles", summary="Styles: one per tileset and the one-map")
    def styles(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "default": ONE_MAP,
            "styles": [
                {"id": style_id, "title": title(style_id), "links": links(base, style_id)}
                for style_id in _style_ids()
            ],
            "links": [{"rel": "self", "type": "application/json", "href": f"{base}/styles"}],
        }

    @router.get(
        "/styles/{styleId}",
        summary="A style, as a MapLibre style document",
        response_class=StyleResponse,
        responses={
            200: {"content": {MAPBOX_STYLE: {"schema": {"type": "object"}}}},
            **problem_responses(404),
        },
    )
    def style(request: Request, styleId: str, f: StyleFormat = None) -> StyleResponse:
        style_id = _style_id(styleId)
        if f not in (None, "mapbox"):
            raise ProblemError(f"f: unknown style encoding {f!r}; use mapbox", parameter="f")
        base = str(request.base_url).rstrip("/")
        return StyleResponse(maplibre_style(base, style_id, url))

    @router.get(
        "/styles/{styleId}/metadata",
        summary="What a style is for, and its encodings",
        responses=problem_responses(404),
    )
    def metadata(request: Request, styleId: str) -> dict[str, Any]:
        style_id = _style_id(styleId)
        base = str(request.base_url).rstrip("/")
        layer_ids = access.visible(list(LAYERS)) if style_id == ONE_MAP else [style_id]
        tileset = (
            f"{base}/tiles/{MATRIX_SET}"
            if style_id == ONE_MAP
            else f"{base}/collections/{style_id}/tiles/{MATRIX_SET}"
        )
        return {
            "id": style_id,
            "title": title(style_id),
            "description": "Drawn as the twin's viewer draws it (twin.deck.STYLES)",
            "scope": "style",
            "stylesheets": [
                {
                    "title": "MapLibre / Mapbox style",
                    "version": "8",
                    "specification": "https://maplibre.org/maplibre-style-spec/",
                    "native": True,
                    "link": links(base, style_id)[0],
                }
            ],
            "layers": [
                {"id": layer_id, "type": LAYERS[layer_id].storage_type.lower()}
                for layer_id in layer_ids
            ],
            "links": [
                {
                    "rel": "self",
                    "type": "application/json",
                    "href": f"{base}/styles/{style_id}/metadata",
                },
                {
                    "rel": "http://www.opengis.net/def/rel/ogc/1.0/tileset-vector",
                    "type": "application/json",
                    "href": tileset,
                },
                *links(base, style_id)[:1],
            ],
        }

    return router
