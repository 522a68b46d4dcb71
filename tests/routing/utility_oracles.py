"""Independent oracles for utility traces: WNTR's water networks and pandapower's grid.

Run by the oracles' own environment (``.venv-oracles``, see tests/oracles-requirements.txt),
never imported by the twin: pandapower pins pandas 2, the twin runs on pandas 3.

    python utility_oracles.py wntr Net3.inp OUT.json
    python utility_oracles.py pandapower OUT.json

With ``ORACLE_REPEAT=N`` in the environment (the benchmark, ``bench/utilities.py``), the
oracle's own computation is also timed best of N: ``best_seconds`` is WNTR's
``valve_segments`` on a ready graph (``graph_seconds`` the ``to_graph`` call once), or every
``unsupplied_buses`` call of the switch loop; ``runs`` lists each run's seconds.

Each turns the oracle's own network into twin layers (GeoJSON, EPSG:4326, with the
``from_node`` / ``to_node`` / ``pipe`` / ``line`` properties the topology reads) and writes the
oracle's answer beside them: WNTR's ``valve_segments`` for its strategic valve layer, and
pandapower's ``unsupplied_buses`` after each closed switch opens. The test loads the layers
into the twin like any import and compares.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pandapower.networks
    import pandapower.topology
    import wntr

METRIC = "EPSG:32632"
_TO_LONLAT = Transformer.from_crs(METRIC, "EPSG:4326", always_xy=True)
#: Where the oracle networks are placed: a 3 km box inside the sample city's extent (UTM 32N),
#: which the twin's import checks; the oracles' topology is by name, so scaling changes nothing.
_ORIGIN = (370_000.0, 4_841_000.0)


def wntr_network(name: str) -> wntr.network.WaterNetworkModel:
    """One of the networks WNTR ships (``Net3.inp``, ``ky10.inp`` ...)."""
    folder = os.path.join(os.path.dirname(wntr.__file__), "library", "networks")
    return wntr.network.WaterNetworkModel(os.path.join(folder, name))


def wntr_valve_layer(wn: wntr.network.WaterNetworkModel, seed: int = 123) -> pd.DataFrame:
    """WNTR's own strategic valve layer: two valves per node (columns link, node)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return wntr.network.generate_valve_layer(wn, "strategic", 2, seed=seed)


def wntr_segments(
    wn: wntr.network.WaterNetworkModel, valves: pd.DataFrame
) -> tuple[pd.Series, pd.Series]:
    """WNTR's ``valve_segments``: segment per node and per link."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes, links, _ = wntr.metrics.topographic.valve_segments(wn.to_graph(), valves)
    return nodes, links


def _placer(xy: np.ndarray, span_m: float = 3000.0) -> Any:
    low = xy.min(axis=0)
    scale = span_m / max(float((xy.max(axis=0) - low).max()), 1e-9)

    def place(points: np.ndarray) -> np.ndarray:
        metric = (np.asarray(points, dtype=float) - low) * scale + _ORIGIN
        lon, lat = _TO_LONLAT.transform(metric[:, 0], metric[:, 1])
        return np.column_stack([lon, lat])

    return place


def _unique(xy: np.ndarray, step: float) -> np.ndarray:
    """Move repeated points apart (the oracle's topology is by name, the twin's too here)."""
    out = xy.copy()
    seen: dict[tuple[float, float], int] = {}
    for i, key in enumerate(map(tuple, xy)):
        count = seen.get(key, 0)
        seen[key] = count + 1
        out[i, 0] += count * step
    return out


def _device_on(line: shapely.LineString, at_start: bool) -> shapely.Point:
    """A point on a line next to one of its ends: 1 m in, or a tenth of a short line."""
    metric = shapely.transform(line, lambda c: np.column_stack(_to_metric(c)))
    d = min(1.0, metric.length / 10)
    point = metric.interpolate(d if at_start else metric.length - d)
    return shapely.Point(_TO_LONLAT.transform(point.x, point.y))


_FROM_LONLAT = Transformer.from_crs("EPSG:4326", METRIC, always_xy=True)


def _to_metric(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _FROM_LONLAT.transform(coords[:, 0], coords[:, 1])


def wntr_frames(
    wn: wntr.network.WaterNetworkModel, valves: pd.DataFrame
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The WNTR network as twin ``pipelines`` and ``pipe_nodes`` layers, valves included."""
    names = list(wn.node_name_list)
    raw = np.array([wn.get_node(n).coordinates for n in names], dtype=float)
    place = _placer(raw)
    span = float((raw.max(axis=0) - raw.min(axis=0)).max())
    lonlat = place(_unique(raw, span * 1e-4))
    where = dict(zip(names, lonlat, strict=True))
    kinds = {"Junction": "junction", "Tank": "source", "Reservoir": "source"}
    nodes = [
        {
            "id": n,
            "kind": kinds[wn.get_node(n).node_type],
            "network": "water",
            "status": "active",
            "epanet": wn.get_node(n).node_type,
            "geometry": shapely.Point(where[n]),
        }
        for n in names
    ]
    pipes = []
    line_of: dict[str, shapely.LineString] = {}
    for name in wn.link_name_list:
        link = wn.get_link(name)
        inner = place(np.array(link.vertices, dtype=float)) if link.vertices else np.empty((0, 2))
        coords = np.vstack([where[link.start_node_name], inner, where[link.end_node_name]])
        line = shapely.LineString(coords)
        line_of[name] = line
        pipes.append(
            {
                "id": name,
                "network": "water",
                "status": "active",
                "epanet": link.link_type,
                "from_node": link.start_node_name,
                "to_node": link.end_node_name,
                "geometry": line,
            }
        )
    for row in valves.itertuples():
        link = wn.get_link(row.link)
        nodes.append(
            {
                "id": f"valve/{row.link}/{row.node}",
                "kind": "valve",
                "network": "water",
                "status": "open",
                "pipe": row.link,
                "geometry": _device_on(line_of[row.link], link.start_node_name == row.node),
            }
        )
    return _collection(pipes), _collection(nodes)


def oberrhein() -> Any:
    """pandapower's ``mv_oberrhein``: a real 20 kV grid in south-west Germany."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pandapower.networks.mv_oberrhein()


def unsupplied(net: Any, *, open_switch: int | None = None) -> set[int]:
    """pandapower's ``unsupplied_buses``, after opening one switch if given."""
    closed = net.switch.closed.copy()
    if open_switch is not None:
        net.switch.loc[open_switch, "closed"] = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {int(b) for b in pandapower.topology.unsupplied_buses(net)}
    finally:
        net.switch["closed"] = closed


def _raw_geo(value: Any) -> shapely.Geometry:
    return shapely.from_geojson(value) if isinstance(value, str) else shapely.geometry.shape(value)


def pandapower_frames(net: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid as twin ``power_lines`` and ``power_nodes`` layers, line switches included.

    Its real coordinates (Oberrhein, Germany) are scaled into the sample city's box.
    """
    every = np.vstack([shapely.get_coordinates(_raw_geo(g)) for g in [*net.bus.geo, *net.line.geo]])
    place = _placer(every)

    def _geo(value: Any) -> shapely.Geometry:
        return shapely.transform(_raw_geo(value), place)

    feeds = set(net.ext_grid.bus[net.ext_grid.in_service])
    nodes = [
        {
            "id": f"bus/{i}",
            "kind": "substation" if i in feeds else "bus",
            "voltage_kv": float(bus.vn_kv),
            "status": "active" if bus.in_service else "out_of_service",
            "geometry": _geo(bus.geo),
        }
        for i, bus in net.bus.iterrows()
    ]
    lines = []
    line_of: dict[int, shapely.LineString] = {}
    for i, line in net.line.iterrows():
        geometry = _geo(line.geo)
        start = shapely.Point(geometry.coords[0])
        if start.distance(_geo(net.bus.geo[line.from_bus])) > start.distance(
            _geo(net.bus.geo[line.to_bus])
        ):
            geometry = geometry.reverse()
        line_of[i] = geometry
        lines.append(
            {
                "id": f"line/{i}",
                "kind": "cable" if line.type == "cs" else "line",
                "voltage_kv": float(net.bus.vn_kv[line.from_bus]),
                "status": "active" if line.in_service else "out_of_service",
                "from_node": f"bus/{line.from_bus}",
                "to_node": f"bus/{line.to_bus}",
                "geometry": geometry,
            }
        )
    for i, trafo in net.trafo.iterrows():
        a, b = _geo(net.bus.geo[trafo.hv_bus]), _geo(net.bus.geo[trafo.lv_bus])
        if a.equals(b):
            b = shapely.Point(b.x + 1e-5, b.y)
        lines.append(
            {
                "id": f"trafo/{i}",
                "kind": "transformer",
                "voltage_kv": float(trafo.vn_hv_kv),
                "status": "active" if trafo.in_service else "out_of_service",
                "from_node": f"bus/{trafo.hv_bus}",
                "to_node": f"bus/{trafo.lv_bus}",
                "geometry": shapely.LineString([a, b]),
            }
        )
    for i, switch in net.switch.iterrows():
        assert switch.et == "l", "mv_oberrhein has line switches only"
        line = net.line.loc[switch.element]
        nodes.append(
            {
                "id": f"switch/{i}",
                "kind": "switch",
                "status": "closed" if switch.closed else "open",
                "line": f"line/{switch.element}",
                "bus": f"bus/{switch.bus}",
                "geometry": _device_on(line_of[switch.element], line.from_bus == switch.bus),
            }
        )
    return _collection(lines), _collection(nodes)


def _collection(rows: list[dict[str, Any]]) -> dict[str, Any]:
    features = []
    for row in rows:
        properties = {k: v for k, v in row.items() if k != "geometry"}
        geometry = shapely.geometry.mapping(row["geometry"])
        features.append({"type": "Feature", "properties": properties, "geometry": geometry})
    return {"type": "FeatureCollection", "features": features}


def best_of(function: Any, repeat: int) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``function``."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return runs


def _timings(repeat: int, function: Any) -> dict[str, Any]:
    if repeat <= 0:
        return {}
    runs = best_of(function, repeat)
    return {"best_seconds": min(runs), "runs": runs}


def main(argv: list[str]) -> None:
    """Write a network and the oracle's answer as JSON."""
    repeat = int(os.environ.get("ORACLE_REPEAT", "0") or 0)
    if argv[0] == "wntr":
        wn = wntr_network(argv[1])
        valves = wntr_valve_layer(wn)
        started = time.perf_counter()
        node_segments, link_segments = wntr_segments(wn, valves)
        seconds = time.perf_counter() - started
        pipes, nodes = wntr_frames(wn, valves)
        out = {
            "pipelines": pipes,
            "pipe_nodes": nodes,
            "node_segments": {str(k): int(v) for k, v in node_segments.items()},
            "link_segments": {str(k): int(v) for k, v in link_segments.items()},
            "seconds": seconds,
            "valves": len(valves),
            "nodes": wn.num_nodes,
            "links": wn.num_links,
        }
        if repeat > 0:
            started = time.perf_counter()
            graph = wn.to_graph()
            out["graph_seconds"] = time.perf_counter() - started

            def segment() -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    wntr.metrics.topographic.valve_segments(graph, valves)

            out |= _timings(repeat, segment)
    else:
        net = oberrhein()
        lines, nodes = pandapower_frames(net)
        started = time.perf_counter()
        opened = {
            f"switch/{i}": sorted(f"bus/{b}" for b in unsupplied(net, open_switch=i))
            for i in net.switch.index[net.switch.closed]
        }
        seconds = time.perf_counter() - started
        switches = [int(i) for i in net.switch.index[net.switch.closed]]
        out = {
            "power_lines": lines,
            "power_nodes": nodes,
            "base": sorted(f"bus/{b}" for b in unsupplied(net)),
            "opened": opened,
            "seconds": seconds,
        }
        out |= _timings(repeat, lambda: [unsupplied(net, open_switch=i) for i in switches])
    with open(argv[-1], "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
