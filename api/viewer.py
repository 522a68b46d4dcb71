"""The one-map viewer at ``/``: a deck.gl page over the twin's own tiles and endpoints.

Everything the page needs is served here: the page's script (deck.gl's modules and the page's
own, bundled at set-up by esbuild from ``api/static/src``: ``scripts/build-viewer.mjs``), its
style, loaders.gl's vector-tile worker (no CDN), and ``viewer/config.json`` — the layer styles of
:mod:`twin.deck` (the same notebooks use), the opening view, and which endpoints exist, so a
tool whose backend is not built is hidden, not broken. ``live`` tells the page its live layer
(``live_congestion``, when served) and after how long a live value is stale; the page follows
the push stream at ``/live/events``. ``/catalog`` keeps the plain table of layers;
``/?f=json`` is the OGC API landing page.

The page (:func:`_page`) carries its texts' locale keys (``data-i18n``): the script writes them
in Chinese or English (``api/static/src/locales``), with the panel (foldable, the map's opening
view fitted beside it), a legend drawn from the same styles, a scale bar, a north arrow, the
search box (``search``, shown when ``/search`` is served), the as-of time control and the PNG
export (``api/static/src/chrome.js``).

The page opens on the data (:func:`opening_view`: the extent of what is loaded, from
:func:`layers.sources.data_extent`; the settings' ``city_bbox`` only when nothing is) and
credits exactly the sources of what is loaded (:func:`layers.sources.credits`), both read
under the caller's grant.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from api import features
from api.errors import NotFoundError
from layers.catalog import LAYERS, LIVE_LAYERS
from layers.features import extent
from layers.queries import layer_counts
from layers.search import MAX_TEXT
from layers.section import MAX_SECTION_LENGTH_M
from layers.settings import TwinSettings
from layers.sources import Credit, attribution_text, credits, data_extent
from layers.tiles import zoom_range
from twin.deck import DEPTH_EXAGGERATION, viewer_styles
from twin.incidents import KINDS

STATIC = Path(__file__).with_name("static")
#: The page's script, bundled at set-up (``scripts/build-viewer.mjs``) from ``static/src``.
SCRIPT = STATIC / "build" / "viewer.js"
#: The endpoints each viewer tool needs (a tool is shown when its endpoint is served).
TOOLS = {
    "onemap": "/onemap/around",
    "route": "/routing/route",
    "isochrones": "/routing/isochrones",
    "impact": "/incidents/impact",
    "cameras": "/cameras/coverage",
    "live": "/live/events",
    "search": "/search",
    "section": "/utilities/section",
    "compare": "/scenarios/compare",
    "scenarios": "/scenarios",
}
#: The live layer the page colours roads from (its collection), when the API serves it.
CONGESTION = "live_congestion"
#: The window :func:`opening_view` fits the data's extent into, px (the page fits it again to
#: its own window); the margin kept around it, px; and the largest zoom it opens at (a city of
#: one feature is not opened at street-lamp scale).
VIEWPORT = (1200, 800)
VIEW_PADDING = 20
MAX_OPENING_ZOOM = 17.0
#: The view's tilt and heading when it opens, degrees.
OPENING_PITCH = 45.0
OPENING_BEARING = 0.0
_CACHE = {"Cache-Control": "public, max-age=86400"}


def routes(settings: TwinSettings) -> APIRouter:
    """Build the viewer's endpoints.

    Parameters
    ----------
    settings
        The served city's settings (name, extent).

    Returns
    -------
    fastapi.APIRouter
        ``/``, ``/catalog`` and ``/viewer/...``.
    """
    router = APIRouter(include_in_schema=False)
    url = settings.database_url

    @router.get("/", response_model=None)
    def landing(
        request: Request, f: Literal["json", "html"] | None = None
    ) -> HTMLResponse | JSONResponse:
        accept = request.headers.get("accept", "")
        if f == "json" or (f is None and "json" in accept and "text/html" not in accept):
            return JSONResponse(features.landing(request))
        return HTMLResponse(_page(settings, credits(url)))

    @router.get("/catalog")
    def catalog() -> HTMLResponse:
        return HTMLResponse(_catalog_page(settings, url))

    @router.get("/viewer/config.json")
    def config(request: Request) -> dict[str, Any]:
        served = set(request.app.openapi()["paths"])
        return {
            "title": f"CityTwin — {settings.city_name}",
            "city": settings.city_name,
            "styles": viewer_styles(),
            "depth_exaggeration": DEPTH_EXAGGERATION,
            "view": opening_view(settings),
            # what the page credits: exactly the sources of what is loaded (and readable)
            "credits": [_credit_json(c) for c in credits(url)],
            "features": {tool: path in served for tool, path in TOOLS.items()},
            # where each layer's tiles are (the tilesets' tileMatrixSetLimits): the map asks
            # for no tile outside them, and overzooms past maxzoom
            "tilesets": {
                layer_id: {
                    "bounds": extent(layer_id, url=url),
                    "minzoom": zoom_range([layer_id])[0],
                    "maxzoom": zoom_range([layer_id])[1],
                }
                for layer_id in LAYERS
            },
            "incident_kinds": list(KINDS),
            # what the server refuses, checked on the page first (a reason in the reader's
            # language, no request): a section line's length (m), a search's characters
            "limits": {"section_m": MAX_SECTION_LENGTH_M, "search_chars": MAX_TEXT},
            # the live state: roads' congestion read from this collection on (re)connecting,
            # and how long a live speed or position holds (s) without a newer one
            "live": {
                "congestion": CONGESTION if CONGESTION in LIVE_LAYERS else None,
                "stale_s": settings.live_stale_s,
            },
        }

    @router.get("/viewer/viewer.js")
    def script(request: Request) -> FileResponse:
        return built_file(SCRIPT, "the viewer's script", request)

    @router.get("/viewer/viewer.css")
    def style() -> FileResponse:
        return FileResponse(STATIC / "viewer.css", media_type="text/css")

    return router


def built_file(path: Path, what: str, request: Request | None = None) -> FileResponse:
    """Serve a script set-up builds (``scripts/build-viewer.mjs``), or say how to build it.

    The build also writes each script gzipped (``<file>.gz``, level 9): a browser that accepts
    gzip gets that, so the script is not compressed again on every request.

    Parameters
    ----------
    path
        The built file.
    what
        What it is, for the message.
    request
        The request (its ``Accept-Encoding``); None serves the file as it is.

    Returns
    -------
    fastapi.responses.FileResponse
        The file as ``text/javascript``, revalidated by the browser (ETag: it changes with
        the build), ``Vary: Accept-Encoding``.

    Raises
    ------
    api.errors.NotFoundError
        When set-up has not built it (404, saying to run ``make setup``).
    """
    if not path.exists():
        raise NotFoundError(f"{what} is not built: run `make setup`", parameter=None)
    headers = {"Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    gzipped = path.with_name(path.name + ".gz")
    accepts = request is not None and "gzip" in request.headers.get("accept-encoding", "")
    if accepts and gzipped.exists() and gzipped.stat().st_mtime >= path.stat().st_mtime:
        headers["Content-Encoding"] = "gzip"
        return FileResponse(gzipped, media_type="text/javascript", headers=headers)
    return FileResponse(path, media_type="text/javascript", headers=headers)


def opening_view(settings: TwinSettings) -> dict[str, Any]:
    """Return the view the viewer opens on: the extent of the loaded data, fitted to a window.

    The extent is :func:`layers.sources.data_extent` (the 1st to 99th percentiles of the
    roads' and buildings' positions), read under the grant in force; the settings'
    ``city_bbox`` when nothing is loaded. The zoom fits that box into :data:`VIEWPORT` less
    :data:`VIEW_PADDING` on Web Mercator, as deck.gl's ``WebMercatorViewport.fitBounds`` does
    (512 px tiles: at zoom ``z`` the world is ``512 · 2^z`` px wide), capped at
    :data:`MAX_OPENING_ZOOM`; the page fits ``bounds`` to its own window again.

    Parameters
    ----------
    settings
        The served city's settings (database, ``city_bbox``).

    Returns
    -------
    dict
        ``longitude``, ``latitude`` (degrees, EPSG:4326, the box's centre on Web Mercator),
        ``zoom``, ``pitch``, ``bearing``, ``bounds`` (``[west, south, east, north]``),
        ``max_zoom``, ``padding`` (px) and ``from`` (``data`` or ``settings``).
    """
    found = data_extent(settings.database_url)
    west, south, east, north = found if found is not None else settings.city_bbox
    y_south, y_north = _mercator_y(south), _mercator_y(north)
    width, height = (max(size - 2 * VIEW_PADDING, 1) for size in VIEWPORT)
    zooms = [MAX_OPENING_ZOOM]
    if east > west:
        zooms.append(math.log2(width * 360.0 / (512.0 * (east - west))))
    if y_north > y_south:
        zooms.append(math.log2(height * 2 * math.pi / (512.0 * (y_north - y_south))))
    latitude = math.degrees(2 * math.atan(math.exp((y_south + y_north) / 2)) - math.pi / 2)
    return {
        "longitude": (west + east) / 2,
        "latitude": latitude,
        "zoom": round(max(min(zooms), 0.0), 2),
        "pitch": OPENING_PITCH,
        "bearing": OPENING_BEARING,
        "bounds": [west, south, east, north],
        "max_zoom": MAX_OPENING_ZOOM,
        "padding": VIEW_PADDING,
        "from": "data" if found is not None else "settings",
    }


def _mercator_y(latitude: float) -> float:
    """Return the Web Mercator ordinate of a latitude (radians of the sphere; EPSG:3857 / R)."""
    clamped = max(min(latitude, 85.05112878), -85.05112878)
    return math.log(math.tan(math.pi / 4 + math.radians(clamped) / 2))


def _credit_json(credit: Credit) -> dict[str, Any]:
    return {
        "attribution": credit.attribution,
        "licence": credit.licence,
        "url": credit.url,
        "sources": list(credit.sources),
        "descriptions": list(credit.descriptions),
    }


def _credits_html(found: list[Credit]) -> str:
    """Return the credits as HTML: each credit's text escaped, its licence and notes as a title."""
    parts = []
    for credit in found:
        notes = [f"Licence: {credit.licence}"] if credit.licence else []
        notes += [f"Sources: {', '.join(credit.sources)}", *credit.descriptions]
        title = html.escape(". ".join(notes))
        parts.append(f'<span title="{title}">{html.escape(credit.attribution)}</span>')
    return " · ".join(parts)


def _page(settings: TwinSettings, found: list[Credit]) -> str:
    """Return the viewer's page: the map, the panel, and the controls over the map.

    Every text is English here and carries its locale key (a ``data-i18n`` attribute, and
    ``data-i18n-title`` / ``-placeholder`` / ``-aria-label`` for attributes): the page's script
    writes it in the reader's language (``api/static/src/locales``) as it starts, and again
    when the reader switches language. The city's name and the data's credits stay as they are.
    """
    title = html.escape(f"CityTwin — {settings.city_name}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="viewer/viewer.css"></head>
<body><div id="map"></div>
<aside id="panel"><div id="panel-tools">
<select id="language" data-i18n-title="chrome:language" data-i18n-aria-label="chrome:language"
 title="Language" aria-label="Language"></select>
<button type="button" id="panel-toggle" aria-controls="panel-body" aria-expanded="true"
 data-i18n-title="chrome:panel.hide" data-i18n-aria-label="chrome:panel.hide"
 title="Fold the panel" aria-label="Fold the panel"></button></div>
<h1 id="title">{title}</h1>
<div id="panel-body">
<div id="modes"></div><div id="hint"></div>
<div id="incident-options" hidden><label><span data-i18n="core:incident.kind">Kind</span>
<select id="incident-kind"></select></label></div>
<div id="result"></div>
<fieldset id="time" data-i18n-title="chrome:time.title" title="See the map as of a moment">
<legend data-i18n="chrome:time">Time</legend>
<label class="time-at"><span data-i18n="chrome:time.at">As of</span>
<input id="time-at" type="datetime-local" step="1"></label>
<button type="button" id="time-now" data-i18n="chrome:time.now"
 data-i18n-title="chrome:time.now.title" title="Back to the current state">Now</button>
<div id="time-state" aria-live="polite"></div></fieldset>
<label class="surface"><span data-i18n="core:surface">Surface</span>
<input id="surface" type="range" min="0" max="100" value="100">
<small data-i18n="core:surface.hint">(section view: lower it to see the pipes below)</small></label>
<div id="layers"></div>
<p class="links"><a href="catalog" data-i18n="chrome:link.catalog">Layer list</a> ·
<a href="docs" data-i18n="chrome:link.docs">API documentation</a></p></div></aside>
<div id="search" role="search" hidden><input id="search-q" type="search" autocomplete="off"
 maxlength="{MAX_TEXT}"
 data-i18n-placeholder="chrome:search.placeholder" data-i18n-aria-label="chrome:search"
 placeholder="Place, street or id" aria-label="Search"><ol id="search-hits" hidden></ol></div>
<div id="controls"><button type="button" id="north" data-i18n-title="chrome:north"
 data-i18n-aria-label="chrome:north" title="North arrow" aria-label="North arrow">
<span id="north-arrow"><span class="tip"></span>
<span class="letter" data-i18n="chrome:north.letter">N</span></span></button>
<button type="button" id="export" data-i18n="chrome:export"
 data-i18n-title="chrome:export.title" title="Save the map as a PNG">Export PNG</button></div>
<aside id="legend"><h2 data-i18n="chrome:legend">Legend</h2><ul id="legend-list"></ul></aside>
<div id="scale" data-i18n-title="chrome:scale.title" title="Scale"><span id="scale-label"></span>
<div id="scale-bar"></div></div>
<div id="attribution">{_credits_html(found)}</div>
<script src="viewer/viewer.js"></script>
</body></html>"""


def _catalog_page(settings: TwinSettings, url: str) -> str:
    """Return the HTML page listing the layers and their counts."""
    counts = layer_counts(url=url)
    rows = "\n".join(
        f"<tr><td><a href='/layers/{layer.id}'>{html.escape(layer.id)}</a></td>"
        f"<td>{html.escape(layer.title)}</td><td>{layer.storage_type}</td>"
        f"<td class='n'>{counts[layer.id]:,}</td></tr>"
        for layer in LAYERS.values()
        if layer.id in counts  # the layers the caller may read
    )
    title = html.escape(f"CityTwin — {settings.city_name}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px system-ui,sans-serif;margin:2rem}}td,th{{padding:.2rem .8rem;
text-align:left}}.n{{text-align:right}}</style></head>
<body><h1>{title}</h1>
<table><thead><tr><th>layer</th><th>title</th><th>geometry</th><th class="n">features</th>
</tr></thead><tbody>
{rows}
</tbody></table>
<p><a href="/">Map</a> · <a href="/layers">/layers</a> (JSON) ·
<a href="/collections">OGC API - Features</a> · <a href="/docs">API documentation</a></p>
<p><small>{html.escape(attribution_text(credits(url), separator="; "))}</small></p>
</body></html>"""
