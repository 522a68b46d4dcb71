"""The sample city is rebuilt, byte for byte, from the shared real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import rasterio

from layers.catalog import LAYERS
from tests.conftest import ROOT, SAMPLE, SHARED


def test_build_is_reproducible(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "data_samples" / "build_monaco.py"),
            "--shared",
            str(SHARED / "monaco"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,  # the build takes under a minute here
    )
    assert done.returncode == 0, done.stderr
    for layer in LAYERS:
        built = (tmp_path / f"{layer}.geojson").read_bytes()
        assert built == (SAMPLE / f"{layer}.geojson").read_bytes(), layer


def test_every_layer_is_filled_and_derived_features_say_so() -> None:
    for layer in LAYERS:
        features = json.loads((SAMPLE / f"{layer}.geojson").read_text())["features"]
        assert features, layer
        for f in features:
            props = f["properties"]
            real = "osm" in props
            assert real or "derived" in props, (layer, props["id"])


def test_dem_covers_the_city() -> None:
    with rasterio.open(SAMPLE / "dem.tif") as dem:
        assert dem.crs.to_epsg() == 4326
        left, bottom, right, top = dem.bounds
        assert left <= 7.40 and right >= 7.44 and bottom <= 43.72 and top >= 43.75
        data = dem.read(1)
        # sea level to the hills above the city (Mont Agel, about 1,100 m)
        assert -10 <= data.min() <= 0 and 700 <= data.max() <= 1200
