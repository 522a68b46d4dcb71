"""``make demo`` as a newcomer runs it: set up (skipped when done), load the sample city, serve
it; then a client reads a vector tile, a page of features and the viewer."""

from __future__ import annotations

import json
import math
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

import mapbox_vector_tile

from tests.assertions import sql_scalar
from tests.conditions import served
from tests.conftest import ROOT, SAMPLE, _fresh_database

LON, LAT, Z = 7.4215, 43.7350, 15  # La Condamine, at a zoom where a tile holds every road
# make's own variables are not the demo's: a sub-make would look for a jobserver it lacks
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def get(url: str, *, accept: str = "*/*", timeout: float = 60) -> tuple[str, bytes]:
    request = urllib.request.Request(url, headers={"accept": accept})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.status == 200, url
        return response.headers["content-type"], response.read()


def test_make_demo_serves_the_sample_city(tmp_path: Path) -> None:
    url = _fresh_database("_demo")  # created and migrated for this run, dropped at its end
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}
    env["TWIN_DATABASE_URL"] = url
    env["TWIN_AUTH_ANONYMOUS_ROLE"] = "public"  # the real default: a newcomer is anonymous
    command = ["make", "--no-print-directory", "-C", str(ROOT), "demo", "HOST=127.0.0.1", "PORT=0"]
    # set-up is quick when done (it checks what is installed); loading the city takes seconds
    with served(command, env=env, log=tmp_path / "demo.log", timeout_s=300, cwd=ROOT) as address:
        roads = sql_scalar(url, "SELECT count(*) FROM roads WHERE valid_to IS NULL")
        shipped = len(json.loads((SAMPLE / "roads.geojson").read_text())["features"])
        assert roads == shipped  # make demo loaded the sample city into this database

        n = 2**Z
        x = int((LON + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(LAT))) / math.pi) / 2 * n)
        kind, body = get(f"{address}/collections/roads/tiles/WebMercatorQuad/{Z}/{y}/{x}")
        assert kind == "application/vnd.mapbox-vector-tile"
        tile_ids = {
            f["properties"]["id"] for f in mapbox_vector_tile.decode(body)["roads"]["features"]
        }
        with_ids = sql_scalar(
            url,
            "SELECT count(*) FROM roads WHERE valid_to IS NULL AND id = ANY(:ids)",
            ids=sorted(tile_ids),
        )
        assert tile_ids and with_ids == len(tile_ids)  # real roads of the store

        kind, body = get(
            f"{address}/collections/roads/items?limit=10", accept="application/geo+json"
        )
        page = json.loads(body)
        assert kind.startswith("application/geo+json")
        assert page["numberMatched"] == shipped
        assert page["numberReturned"] == len(page["features"]) == 10
        assert any(link["rel"] == "next" for link in page["links"])

        kind, body = get(f"{address}/", accept="text/html")
        assert kind.startswith("text/html")
        page_text = body.decode()
        assert "CityTwin — Monaco" in page_text and "viewer/viewer.js" in page_text
        # the viewer's script, bundled by set-up (scripts/build-viewer.mjs), is served too
        kind, body = get(f"{address}/viewer/viewer.js")
        assert kind.startswith("text/javascript") and len(body) > 100_000

        # anonymous: the public layers; the administrator make demo made signs in for the rest
        listed = json.loads(get(f"{address}/collections", accept="application/json")[1])
        assert "pipelines" not in {c["id"] for c in listed["collections"]}
        shown = re.search(r"password \(shown once\): (\S+)", (tmp_path / "demo.log").read_text())
        assert shown, "make demo did not print the administrator's password"
        form = urllib.parse.urlencode(
            {"grant_type": "password", "username": "admin", "password": shown.group(1)}
        ).encode()
        with urllib.request.urlopen(f"{address}/auth/token", data=form, timeout=60) as answer:
            token = json.loads(answer.read())["access_token"]
        request = urllib.request.Request(
            f"{address}/collections/pipelines/items?limit=1",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert json.loads(answer.read())["numberReturned"] == 1
    # served() has checked that make and the server it started are gone and the port is closed
