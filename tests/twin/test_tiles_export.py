"""``twin tiles export``: a PMTiles package of the sample city, read back with the ``pmtiles``
package's own reader and compared, tile by tile, with what the API serves."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType
from typer.testing import CliRunner

from api.app import create_app
from layers.settings import TwinSettings
from layers.tile_packages import count_package_tiles, package_tiles
from tests.conftest import ROOT
from twin.cli import app as twin_app

TWIN = [sys.executable, "-m", "twin"]
BBOX = (7.415, 43.728, 7.428, 43.740)  # La Condamine and the port


@pytest.fixture(scope="module")
def client(sample_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(TwinSettings(database_url=sample_db))) as test_client:
        yield test_client


def _read(path: Path) -> tuple[dict, dict, dict[tuple[int, int, int], bytes]]:
    with path.open("rb") as f:
        source = MmapSource(f)
        reader = Reader(source)
        tiles = {zxy: bytes(data) for zxy, data in all_tiles(source)}
        return reader.header(), reader.metadata(), tiles


def test_export_holds_every_api_tile(sample_db: str, client: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "condamine.pmtiles"
    bbox = ",".join(map(str, BBOX))
    done = subprocess.run(
        [*TWIN, "tiles", "export", str(path), "--bbox", bbox, "--minzoom", "12", "--maxzoom", "15"],
        env=os.environ | {"TWIN_DATABASE_URL": sample_db},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    header, metadata, tiles = _read(path)
    assert header["tile_type"] == TileType.MVT
    assert header["tile_compression"] == Compression.GZIP
    assert (header["min_zoom"], header["max_zoom"]) == (12, 15)
    assert header["clustered"]
    assert metadata["format"] == "pbf"
    ids = [layer["id"] for layer in metadata["vector_layers"]]
    assert {"roads", "buildings"} <= set(ids)
    roads = next(layer for layer in metadata["vector_layers"] if layer["id"] == "roads")
    assert roads["fields"]["id"] == "String" and roads["minzoom"] == 0
    assert "OpenStreetMap" in metadata["attribution"]
    # every tile of the bbox: in the package exactly when the API's tile holds a feature,
    # and then byte for byte the API's tile once decompressed
    for z, x, y in package_tiles(BBOX, 12, 15):
        answer = client.get(f"/tiles/WebMercatorQuad/{z}/{y}/{x}")
        assert answer.status_code in (200, 404), answer.text
        served = answer.content if answer.status_code == 200 else b""
        if served:
            assert (z, x, y) in tiles, f"tile {z}/{x}/{y} is missing"
            assert gzip.decompress(tiles.pop((z, x, y))) == served, f"tile {z}/{x}/{y} differs"
        else:
            assert (z, x, y) not in tiles
    assert not tiles, f"tiles outside the bbox: {sorted(tiles)[:5]}"
    assert f"wrote {path}" in done.stdout


def test_export_of_chosen_layers(sample_db: str, client: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "roads.pmtiles"
    result = CliRunner().invoke(
        twin_app,
        [
            "tiles",
            "export",
            str(path),
            "--bbox",
            ",".join(map(str, BBOX)),
            "--minzoom",
            "14",
            "--maxzoom",
            "15",
            "--layers",
            "roads,cameras",
            "--url",
            sample_db,
        ],
    )
    assert result.exit_code == 0, result.output
    _, metadata, tiles = _read(path)
    assert [layer["id"] for layer in metadata["vector_layers"]] == ["roads", "cameras"]
    assert tiles
    for (z, x, y), data in tiles.items():
        served = client.get(f"/tiles/WebMercatorQuad/{z}/{y}/{x}?collections=roads,cameras")
        assert gzip.decompress(data) == served.content
        assert set(mapbox_vector_tile.decode(served.content)) <= {"roads", "cameras"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--bbox", "7.4,43.7,7.5"], "--bbox: bbox '7.4,43.7,7.5': give four numbers"),
        (["--bbox", "7.4,43.7,east,43.8"], "must be numbers"),
        (["--bbox", "7.5,43.7,7.4,43.8"], "west 7.5 must be below east 7.4"),
        (["--bbox", "7.4,43.8,7.5,43.7"], "south 43.8 must be below north 43.7"),
        (["--bbox", "7.4,43.7,190,43.8"], "east 190.0 is outside -180 to 180"),
        (["--bbox", "7.4,-89,7.5,43.8"], "south -89.0 is outside"),
        (["--bbox", "7.4,43.7,7.5,nan"], "must be finite"),
        (["--minzoom", "16", "--maxzoom", "15"], "--minzoom: minzoom 16 is above maxzoom 15"),
        (["--maxzoom", "23"], "--maxzoom: maxzoom 23 is outside 0 to 22"),
        (["--minzoom", "-1"], "--minzoom: minzoom -1 is outside 0 to 22"),
        (["--maxzoom", "17"], "maxzoom 17 is past the tiles' last zoom 15"),
        (["--layers", "roads,nope"], "--layers: unknown layer 'nope'"),
        (["--layers", ","], "--layers: layers: name at least one layer"),
        (["--max-tiles", "3"], "more than 3: lower maxzoom or shrink the bbox"),
        (["--bbox", "-170,-80,170,80", "--minzoom", "0"], "tiles from z0 to z15 in that bbox"),
        (["--bbox", "0,0,0.01,0.01", "--minzoom", "14"], "has a feature in bbox"),
    ],
)
def test_bad_export_arguments_are_refused_plainly(
    sample_db: str, tmp_path: Path, arguments: list[str], message: str
) -> None:
    path = tmp_path / "bad.pmtiles"
    given = ["--bbox", ",".join(map(str, BBOX)), "--minzoom", "12", "--maxzoom", "15"]
    result = CliRunner().invoke(
        twin_app, ["tiles", "export", str(path), *given, *arguments, "--url", sample_db]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing half-written left


def test_export_refuses_a_file_it_cannot_write(sample_db: str, tmp_path: Path) -> None:
    bbox = ",".join(map(str, BBOX))
    for path, message in (
        (tmp_path / "tiles.mbtiles", "must end in .pmtiles"),
        (tmp_path / "missing" / "tiles.pmtiles", "does not exist"),
    ):
        result = CliRunner().invoke(
            twin_app, ["tiles", "export", str(path), "--bbox", bbox, "--url", sample_db]
        )
        assert result.exit_code == 1 and message in result.output, result.output


def test_a_package_holds_what_its_role_may_read(sample_db: str, tmp_path: Path) -> None:
    bbox = ",".join(map(str, BBOX))
    path = tmp_path / "public.pmtiles"
    refused = CliRunner().invoke(
        twin_app,
        [
            "tiles",
            "export",
            str(path),
            "--bbox",
            bbox,
            "--role",
            "public",
            "--layers",
            "roads,cameras",
            "--url",
            sample_db,
        ],
    )
    assert refused.exit_code == 1, refused.output
    assert "layer 'cameras' is classified above what the package's roles may read" in (
        refused.output
    )
    done = CliRunner().invoke(
        twin_app,
        [
            "tiles",
            "export",
            str(path),
            "--bbox",
            bbox,
            "--role",
            "public",
            "--minzoom",
            "14",
            "--maxzoom",
            "15",
            "--url",
            sample_db,
        ],
    )
    assert done.exit_code == 0, done.output
    _, metadata, tiles = _read(path)
    ids = {layer["id"] for layer in metadata["vector_layers"]}
    assert "roads" in ids and not ids & {"cameras", "pipelines", "power_lines", "incidents"}
    for data in tiles.values():
        assert not set(mapbox_vector_tile.decode(gzip.decompress(data))) - ids
    both = CliRunner().invoke(
        twin_app,
        ["tiles", "export", str(path), "--bbox", bbox, "--role", "public", "--owner"],
    )
    assert both.exit_code == 1 and "give one or the other" in both.output


@pytest.mark.parametrize(
    "bbox", [BBOX, (7.0, 43.0, 8.0, 44.0), (-1.0, -1.0, 1.0, 1.0), (179.0, 10.0, 179.999, 11.0)]
)
def test_tiles_are_counted_as_they_are_listed(bbox: tuple[float, float, float, float]) -> None:
    assert count_package_tiles(bbox, 0, 11) == len(package_tiles(bbox, 0, 11))
