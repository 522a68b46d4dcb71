"""City-wide batch accessibility on Dask: 2 workers against 1, and against one process.

Not a test. Malta's whole OpenStreetMap extract (``../shared/data/malta/malta-latest.osm.pbf``:
roads, buildings, resources, districts; 33,582 roads, 13,281 buildings, 9 fire stations,
18 hospitals, 54 police stations, 67 local councils, all mapped in OSM, nothing placed by
hand) is loaded into a scratch database ``twin_scratch_batch_bench_malta`` with
``TWIN_CITY_BBOX=[14.1,35.7,14.7,36.15]`` and ``TWIN_METRIC_CRS=EPSG:32633``. Then
:func:`twin.batch.accessibility` (every building: seconds from the nearest fire station,
hospital and police station, and which) runs

1. in this process (no Dask): the single-process answer, the peer;
2. on a :class:`distributed.LocalCluster` of 1 worker process;
3. on one of 2 worker processes;

each first cold (the workers import the project, build the network from the store and run
the three searches), then ``--rounds`` times warm (the workers keep the network: a long-lived
cluster); then, on the same warm workers, :func:`twin.batch.station_service_areas` (4/8/12
minutes from every station, each on its own) ``--area-rounds`` times, heavier work per item.
Every answer must equal the single-process one exactly (values, dtypes, geometry WKB).
Warm rounds are interleaved across the set-ups (the machine is shared). Printed: end-to-end
seconds (the client reads the buildings, assigns districts, gathers), the partitions' phase
alone (first task sent to last result back), and the ratios. The goal (issue 14): 2 workers
>= 1.7x 1 worker.

Usage: ``python bench/batch.py [--rounds 5] [--keep] [--section FILE.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MALTA = ROOT.parent / "shared" / "data" / "malta" / "malta-latest.osm.pbf"
URL = "postgresql+psycopg://postgres@127.0.0.1:5432/twin_scratch_batch_bench_malta"
LAYERS = ["roads", "buildings", "resources", "districts"]
GOAL = 1.7
BREAKS = (4, 8, 12)

os.environ["TWIN_CITY_BBOX"] = json.dumps([14.1, 35.7, 14.7, 36.15])
os.environ["TWIN_METRIC_CRS"] = "EPSG:32633"


def _load(url: str) -> dict[str, int]:
    from layers.database import drop_database, upgrade
    from layers.ingest import ingest_frame
    from layers.osm import read_osm

    drop_database(url)
    upgrade(url)
    frames = read_osm(MALTA, LAYERS)
    for layer in LAYERS:
        ingest_frame(layer, frames[layer], source=MALTA.name, url=url)
    return {layer: len(frames[layer]) for layer in LAYERS}


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = function()
    return out, time.perf_counter() - started


def _measure(clients: dict[str, Any], rounds: int, area_rounds: int) -> dict[str, dict[str, Any]]:
    """Cold runs one set-up after the other, then warm rounds interleaved across set-ups.

    Interleaving puts every set-up under the same background load (the machine is shared):
    round i runs one process, then 1 worker, then 2 workers, and so on.
    """
    from distributed import get_task_stream

    from twin.batch import accessibility, station_service_areas

    out: dict[str, dict[str, Any]] = {
        name: {"total": [], "phase": [], "areas_s": []} for name in clients
    }
    for name, client in clients.items():
        first, cold = _timed(lambda c=client: accessibility(url=URL, client=c))
        out[name] |= {"first": first, "cold": cold, "cold_phase": first.attrs["partitions_s"]}
    for _ in range(rounds):
        for name, client in clients.items():
            answer, seconds = _timed(lambda c=client: accessibility(url=URL, client=c))
            out[name]["answer"] = answer
            out[name]["total"].append(seconds)
            out[name]["phase"].append(answer.attrs["partitions_s"])
    for _ in range(area_rounds):
        for name, client in clients.items():
            with ExitStack() as stack:
                stream = None if client is None else stack.enter_context(get_task_stream(client))
                areas, seconds = _timed(
                    lambda c=client: station_service_areas(url=URL, client=c, breaks=BREAKS)
                )
            out[name]["areas"] = areas
            out[name]["areas_s"].append(seconds)
            # seconds the tasks computed, summed over workers: when it grows with the worker
            # count, the workers were time-sliced on busy cores rather than running side by side
            busy = seconds
            if stream is not None:
                busy = sum(
                    part["stop"] - part["start"]
                    for record in stream.data
                    for part in record["startstops"]
                    if part["action"] == "compute"
                )
            out[name].setdefault("areas_busy", []).append(busy)
    return out


def _same(a: Any, b: Any) -> bool:
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))
    except AssertionError:
        return False
    import shapely

    return list(shapely.to_wkb(a.geometry.to_numpy())) == list(
        shapely.to_wkb(b.geometry.to_numpy())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--area-rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--section", type=Path, default=Path("/tmp/bench_sections/batch.md"))
    options = parser.parse_args()

    from twin.batch import batch_client

    started = time.perf_counter()
    counts = _load(URL)
    print(f"Malta loaded in {time.perf_counter() - started:.0f} s: {counts}")
    load_before = os.getloadavg()[0]
    try:
        starts: dict[str, float] = {}
        with ExitStack() as stack:
            clients: dict[str, Any] = {"one process (no Dask)": None}
            for workers in (1, 2):
                name = f"Dask, {workers} worker{'s' if workers > 1 else ''}"
                clients[name], starts[name] = _timed(
                    lambda w=workers: stack.enter_context(batch_client(workers=w))
                )
            results = _measure(clients, options.rounds, options.area_rounds)
    finally:
        if not options.keep:
            from layers.database import drop_database

            drop_database(URL)
    load_after = os.getloadavg()[0]
    for name, r in results.items():
        r["start"] = starts.get(name)
        r["best"] = min(r["total"])
        r["best_phase"] = min(r["phase"])
        r["areas_best"] = min(r["areas_s"])
        for key in ("total", "phase", "areas_s", "areas_busy"):
            r[key] = statistics.median(r[key])
    reference = results["one process (no Dask)"]["answer"]
    rows = [
        "| run | cluster start s | cold s | cold partitions s | warm s median (best) "
        "| warm partitions s median (best) | answer = one process |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        same = _same(r["answer"], reference) and _same(r["first"], reference)
        start = f"{r['start']:.2f}" if r["start"] is not None else "-"
        rows.append(
            f"| {name} | {start} | {r['cold']:.2f} | {r['cold_phase']:.2f} "
            f"| {r['total']:.2f} ({r['best']:.2f}) | {r['phase']:.2f} ({r['best_phase']:.2f}) "
            f"| {'yes' if same else 'NO'} |"
        )
    one, two = results["Dask, 1 worker"], results["Dask, 2 workers"]
    single = results["one process (no Dask)"]
    ratios = {
        "2 workers vs 1, warm end to end": one["total"] / two["total"],
        "2 workers vs 1, warm end to end, best of rounds": one["best"] / two["best"],
        "2 workers vs 1, warm partitions phase": one["phase"] / two["phase"],
        "2 workers vs 1, cold end to end": one["cold"] / two["cold"],
        "2 workers vs one process, warm end to end": single["total"] / two["total"],
        "2 workers vs one process, cold end to end": single["cold"] / two["cold"],
        "service areas, 2 workers vs 1": one["areas_s"] / two["areas_s"],
        "service areas, 2 workers vs one process": single["areas_s"] / two["areas_s"],
    }
    areas_same = all(_same(r["areas"], single["areas"]) for r in results.values())
    area_rows = [
        "| run | service areas of every station s median (best) "
        "| task compute s, summed over workers (median) | answer = one process |",
        "| --- | --- | --- | --- |",
        *[
            f"| {name} | {r['areas_s']:.2f} ({r['areas_best']:.2f}) | {r['areas_busy']:.2f} "
            f"| {'yes' if same else 'NO'} |"
            for name, r in results.items()
            for same in [_same(r["areas"], single["areas"])]
        ],
    ]
    answer = reference
    reached = {
        k: int(answer[f"{k}_s"].notna().sum()) for k in ("fire_station", "hospital", "police")
    }
    lines = [
        "## City-wide batch accessibility on Dask (issue 14) — `bench/batch.py`",
        "",
        f"Malta, whole OSM extract: {counts['buildings']:,} buildings, {counts['roads']:,} roads, "
        f"{counts['resources']} resources (fire stations, hospitals, police stations as mapped "
        f"in OSM), {counts['districts']} local councils (the partitions). "
        f"`twin.batch.accessibility`, emergency profile; {options.rounds} warm rounds "
        f"after one cold run per set-up, interleaved (round i: one process, 1 worker, 2 "
        f"workers); machine: {os.cpu_count()} cores, shared by the client, the scheduler, "
        f"PostgreSQL and whatever else runs (1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after).",
        "",
        *rows,
        "",
        f"Service areas ({', '.join(f'{b:g}' for b in BREAKS)} min) of every station, "
        f"{single['areas']['station_id'].nunique()} stations, `twin.batch.station_service_areas`, "
        f"after the accessibility runs (workers warm), {options.area_rounds} interleaved rounds:",
        "",
        *area_rows,
        "",
        "| ratio | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.2f}x |" for k, v in ratios.items()],
        "",
        f"Buildings reached: {reached} of {len(answer):,}. Every answer equal to the "
        "single-process one: "
        f"{'yes' if all(_same(r['answer'], reference) for r in results.values()) else 'NO'}; "
        f"service areas: {'yes' if areas_same else 'NO'}.",
        "",
        f"Goal 2 workers >= {GOAL}x 1 worker (warm, end to end): "
        + (
            "**met**."
            if ratios["2 workers vs 1, warm end to end"] >= GOAL
            else f"**NOT met** ({ratios['2 workers vs 1, warm end to end']:.2f}x)."
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    options.section.parent.mkdir(parents=True, exist_ok=True)
    options.section.write_text(text)
    print(f"written to {options.section}")


if __name__ == "__main__":
    main()
