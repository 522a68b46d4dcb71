"""Schemathesis over the whole OpenAPI document: no 5xx, no answer the document does not promise.

The API is served in-process (ASGI) over its own copy of the sample city (the fuzzer writes:
closures, plans, edits, SensorThings entities, rules), and the fuzzer is given the city's real
names — layer and collection ids, a tile over the city, utility networks, routing
profiles, raster names, points in the city — beside what it invents, so that it
reaches past the 404s into the code that reads the store. Every check is on: a server error,
a status or a media type or a body or a header the document does not list for the operation,
fails the test. The run is bounded (a fixed number of examples per operation and phase) and
derandomized, so CI repeats it exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from schemathesis.config import SchemathesisConfig

from api.app import create_app
from layers.catalog import COLLECTIONS, LAYERS
from layers.database import get_engine
from layers.settings import TwinSettings
from routing import PROFILES
from routing.utility_network import NETWORKS
from tests.api.test_tiles import tile_of
from tests.conftest import SAMPLE, _fresh_database
from twin.sample import load_sample

#: Operations left out, and why.
SKIPPED = {
    # an endless Server-Sent Events stream: an answer never ends, so there is no answer to
    # check; tests/api/test_live.py and test_viewer_live.py read it event by event
    "/live/events": "an endless event stream",
}
#: Examples per operation and phase (the coverage phase adds its boundary cases beside).
EXAMPLES = 20
#: Probability that a parameter bound to a dictionary takes one of its real values.
REAL = 0.7


@pytest.fixture(scope="module")
def fuzz_db() -> Iterator[str]:
    """The sample city, in a database of its own: the fuzzer writes to it."""
    url = _fresh_database("_fuzz")
    load_sample(directory=SAMPLE, url=url)
    yield url
    get_engine(url).dispose()


def real_names(url: str) -> dict[str, list[Any]]:
    """The values the fuzzer mixes in, each a dictionary: what exists in the sample city."""
    # no feature or signal id: every one of the sample's holds a '/' (way/1000930347/0), which a path
    # parameter cannot carry (OpenAPI 3.0 §4.7.12.1; schemathesis leaves such values out):
    # tests/api/test_conformance.py walks real features
    with get_engine(url).connect() as conn:
        rasters = conn.execute(sa.text("SELECT name FROM rasters ORDER BY name")).scalars().all()
    z, y, x = tile_of(15)  # La Condamine, where every layer has features
    return {
        "collections": list(COLLECTIONS),
        "layers": list(LAYERS),
        "networks": list(NETWORKS),
        "profiles": list(PROFILES),
        "names": list(rasters),  # /rasters/{name} (the sample stores no signal plan)
        "matrix_sets": ["WebMercatorQuad"],
        "styles": list(COLLECTIONS),
        "z": [z],
        "y": [y],
        "x": [x],
        "points": ["7.4197,43.7315", "7.4247,43.7383", "7.4215,43.7350"],
        "kinds": ["fire_station", "hospital", "police"],
    }


#: Parameter (``<in>.<name>``) -> the dictionary of real values it is drawn from, sometimes.
BINDINGS = {
    "path.collectionId": "collections",
    "path.layer_id": "layers",
    "path.tileMatrixSetId": "matrix_sets",
    "path.styleId": "styles",
    "path.z": "z",
    "path.y": "y",
    "path.x": "x",
    "path.network_name": "networks",
    "path.name": "names",
    "query.profile": "profiles",
    "query.from": "points",
    "query.to": "points",
    "query.incident": "points",
    "query.facilities": "points",
    "query.kind": "kinds",
    "query.collections": "collections",
    "query.layers": "collections",
}


@pytest.fixture(scope="module")
def api_schema(fuzz_db: str) -> Any:
    """The API's OpenAPI document, loaded by schemathesis from the app itself (ASGI)."""
    names = real_names(fuzz_db)
    config = SchemathesisConfig.from_dict(
        {
            "dictionaries": {name: {"values": values} for name, values in names.items()},
            "parameters": {
                key: {"dictionary": name, "probability": REAL} for key, name in BINDINGS.items()
            },
            "generation": {"max-examples": EXAMPLES, "deterministic": True},
            # a schema-valid value the API refuses with a 400 it documents (a point outside the
            # city, a name it does not know) does not contradict the document: that check is off
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    )
    app = create_app(TwinSettings(database_url=fuzz_db))
    return schemathesis.openapi.from_asgi("/api", app, config=config)


# a flood raster is a GeoTIFF body: sent as the bytes generated (the API must refuse what is
# not a GeoTIFF with a 400)
schemathesis.serializer.alias("image/tiff", "application/octet-stream")
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path=list(SKIPPED))


@pytest.fixture(autouse=True)
def _node_id(request: pytest.FixtureRequest) -> None:
    """Give the test the private ``_nodeid`` schemathesis 4.32 reads (pytest 9.2 has none)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_the_api_answers_as_its_document_says(case: schemathesis.Case) -> None:
    case.call_and_validate()
