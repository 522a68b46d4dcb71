"""Search endpoint: features by name, address or id, for the viewer's search box.

``GET /search?q=...`` answers the hits of :func:`layers.search.search` over every layer the
caller may read (or those named in ``layers``), best first: a fire station by its French name
typed any case and without its accents, a street as one hit however many road segments it
has, a feature by its id. Each hit carries a point to fly to and a box to fit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.errors import problem_responses
from layers.search import DEFAULT_LIMIT, MAX_LIMIT, MAX_TEXT
from layers.search import search as search_layers


class SearchHit(BaseModel):
    """One hit: a feature, or a street made of many road segments."""

    layer: str = Field(description="Layer id")
    id: str | None = Field(description="Feature id; null for a street (many segments)")
    label: str = Field(description="Name to show: the name, else the address, else the id")
    kind: str = Field(
        description="The feature's kind (fire_station, hospital ...), 'street', or the "
        "layer's title"
    )
    lon: float = Field(description="Longitude of a point on the feature, EPSG:4326 degrees")
    lat: float = Field(description="Latitude of that point, EPSG:4326 degrees")
    bbox: list[float] = Field(
        min_length=4, max_length=4, description="minx, miny, maxx, maxy, EPSG:4326 degrees"
    )
    score: float = Field(ge=0, le=1, description="Rank, higher first")
    features: int = Field(ge=1, description="Features the hit stands for (a street's segments)")


class SearchAnswer(BaseModel):
    """The text searched and its hits, best first."""

    query: str = Field(description="The text searched, as given")
    hits: list[SearchHit]


def parse_layers(text: str | None) -> list[str] | None:
    """Split a comma-separated ``layers`` parameter (None: every layer the caller reads).

    Parameters
    ----------
    text
        The parameter's value, or None.

    Returns
    -------
    list of str or None
        The layer ids, blanks dropped (an empty list when none is left: refused later).
    """
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def routes(url: str) -> APIRouter:
    """Build ``GET /search`` over the store at ``url``.

    Parameters
    ----------
    url
        Database URL.

    Returns
    -------
    fastapi.APIRouter
        The endpoint.
    """
    router = APIRouter(tags=["search"])

    @router.get(
        "/search",
        summary="Features by name, address or id, across the layers",
        description=(
            "Case- and accent-insensitive: every word typed must be part of a name (its "
            "`name`, `name:<lang>`, `alt_name` ... or its address), or the text must come "
            "close to one (a typo); a feature id, or the number of an OpenStreetMap id, "
            "finds that feature. A street's named segments are one hit (`id` null). Only "
            "current features of the layers the caller may read are searched, as the caller "
            "sees them."
        ),
        responses=problem_responses(400, 404),
    )
    def get_search(
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=MAX_TEXT,
                description="Text to search for: a name or part of one, an address, an id",
            ),
        ],
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Most hits answered")
        ] = DEFAULT_LIMIT,
        layers: Annotated[
            str | None,
            Query(description="Comma-separated layer ids; every layer the caller reads by default"),
        ] = None,
    ) -> SearchAnswer:
        hits = search_layers(url, q, limit=limit, layers=parse_layers(layers))
        return SearchAnswer(query=q, hits=[SearchHit.model_validate(hit.to_dict()) for hit in hits])

    return router
