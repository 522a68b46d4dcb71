"""City-wide batch analytics on Dask (``twin batch``): the answers equal a single-process
computation for every building, road and station, on a local cluster and through a scheduler
address, and bad input is refused with a message."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from distributed import Client, LocalCluster
from scipy.sparse.csgraph import dijkstra
from typer.testing import CliRunner

import twin
from layers.cameras import camera_coverage
from layers.database import cursor
from layers.queries import read_layer
from layers.settings import get_settings
from routing import RoadNetwork, RoutingError, closed_by_layer
from twin.batch import accessibility, batch_client, road_coverage, station_service_areas
from twin.batch.cluster import BatchError
from twin.cli import app

TWIN = [sys.executable, "-m", "twin"]
KINDS = ("fire_station", "hospital", "police")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A local cluster of 2 worker processes, as ``twin batch`` starts by default."""
    with batch_client(workers=2) as dask_client:
        assert dask_client is not None
        yield dask_client


def run_here(url: str, *args: str) -> tuple[int, str]:
    """Run ``twin batch <args>`` in this process (typer's runner): exit code and stderr."""
    result = CliRunner().invoke(app, ["batch", *args, "--url", url], env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


def run(url: str | None, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"COLUMNS": "200"}
    if url is not None:
        environment["TWIN_DATABASE_URL"] = url
    return subprocess.run(
        [*TWIN, "batch", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


def _oracle_network(url: str) -> RoadNetwork:
    """The emergency network with the closures active now, built here, not by twin.batch."""
    network = RoadNetwork.load(profile="emergency", url=url)
    closed = [network.edge_index[e] for e in closed_by_layer(url=url) if e in network.edge_index]
    return network.with_closed(np.array(closed, dtype=np.int64))


def _oracle(url: str, buildings: gpd.GeoDataFrame) -> dict[str, tuple[np.ndarray, list]]:
    """Per kind: seconds from the nearest station to each building, and its id.

    One plain Dijkstra per station (scipy, on the network's CSR matrix), not a multi-source
    search: the station's time is the least over the nodes its position leaves by, the
    building's the least over the nodes it is entered from, or the direct trip along a shared
    edge; the nearest station wins, equal times to the lowest id.
    """
    network = _oracle_network(url)
    snaps = []
    for point in buildings.geometry.representative_point():
        try:
            snaps.append(network.snap(point.x, point.y))
        except RoutingError:
            snaps.append(None)
    with cursor(url) as cur:
        cur.execute(
            "SELECT id, kind, ST_X(geom), ST_Y(geom) FROM resources WHERE valid_to IS NULL "
            "AND (status IS NULL OR status = 'available') ORDER BY id"
        )
        rows = cur.fetchall()
    out = {}
    for kind in KINDS:
        stations = [(str(i), lon, lat) for i, k, lon, lat in rows if k == kind]
        times = np.full((len(stations), len(snaps)), np.inf)
        for s, (_, lon, lat) in enumerate(stations):
            try:
                start = network.snap(lon, lat)
            except RoutingError:
                continue
            node_times = np.full(len(network.node_ids), np.inf)
            for node, offset in network.exits(start):
                node_times = np.minimum(
                    node_times, dijkstra(network.graph, directed=True, indices=node) + offset
                )
            for b, snap in enumerate(snaps):
                if snap is None:
                    continue
                best = min(node_times[node] + offset for node, offset in network.entries(snap))
                direct = network.along(start, snap)
                times[s, b] = best if direct is None else min(best, direct[0])
        nearest = np.argmin(times, axis=0)  # the first of equal minima: the lowest id
        seconds = times[nearest, np.arange(len(snaps))]
        ids = [stations[n][0] if np.isfinite(t) else None for n, t in zip(nearest, seconds)]
        out[kind] = (np.where(np.isfinite(seconds), seconds, np.nan), ids)
    return out


def test_accessibility_on_a_cluster_equals_a_single_process_oracle(
    sample_db: str, client: Client
) -> None:
    result = accessibility(url=sample_db, client=client)
    buildings = read_layer("buildings", url=sample_db).sort_values("id").reset_index(drop=True)
    assert result["id"].tolist() == buildings["id"].astype(str).tolist()  # every building
    assert result.crs == "EPSG:4326"
    assert result.geometry.geom_equals_exact(buildings.geometry, 0).all()
    oracle = _oracle(sample_db, buildings)
    for kind in KINDS:
        seconds, ids = oracle[kind]
        np.testing.assert_array_equal(result[f"{kind}_s"].to_numpy(), seconds)  # exactly
        assert [None if pd.isna(v) else v for v in result[f"{kind}_id"]] == ids
        assert np.isfinite(seconds).sum() > 0.9 * len(buildings)  # the sample reaches most
    # the districts: the finest-level district holding each building, all of them used
    finest = read_layer("districts", url=sample_db)
    finest = finest[finest["level"] == finest["level"].max()]
    assert set(result["district"]) <= {*finest["name"], twin.batch.OUTSIDE}
    assert result["district"].nunique() > 5


def test_accessibility_in_one_process_equals_the_cluster(sample_db: str, client: Client) -> None:
    here = accessibility(url=sample_db, kinds=["hospital"])
    there = accessibility(url=sample_db, kinds=["hospital"], client=client)
    pd.testing.assert_frame_equal(pd.DataFrame(here), pd.DataFrame(there))
    assert list(here.columns) == [
        "id",
        "district",
        "road_m",
        "hospital_s",
        "hospital_id",
        "geometry",
    ]


def test_accessibility_times_are_those_of_nearest_units(sample_db: str) -> None:
    """A building's fire-station time is the travel time nearest_units gives for it."""
    result = accessibility(url=sample_db, kinds=["fire_station"])
    city = twin.connect(sample_db)
    reached = result[result["fire_station_s"].notna()].iloc[::150]
    assert len(reached) >= 5
    for row in reached.itertuples():
        point = row.geometry.representative_point()
        units = city.nearest_units((point.x, point.y), kind="fire_station", k=1)
        assert units[0].id == row.fire_station_id
        assert units[0].travel_s == pytest.approx(row.fire_station_s, rel=1e-9, abs=1e-9)


def test_coverage_of_every_road_equals_the_camera_cones(sample_db: str, client: Client) -> None:
    result = road_coverage(url=sample_db, client=client)
    assert result.equals(road_coverage(url=sample_db))  # the same in one process
    roads = read_layer("roads", url=sample_db)
    assert sorted(result["id"]) == sorted(roads["id"].astype(str))
    metric = get_settings().metric_crs
    seen = shapely.union_all(camera_coverage(url=sample_db).cones.geometry.to_crs(metric))
    lines = result.geometry.to_crs(metric).to_numpy()
    np.testing.assert_allclose(result["length_m"], shapely.length(lines), rtol=1e-12)
    np.testing.assert_allclose(
        result["covered_m"], shapely.length(shapely.intersection(lines, seen)), rtol=1e-9, atol=1e-9
    )
    assert (result["covered_m"] > 0).sum() >= 10
    assert ((result["share"] >= 0) & (result["share"] <= 1)).all()


def test_service_areas_of_every_station_equal_the_city_s(sample_db: str, client: Client) -> None:
    result = station_service_areas(url=sample_db, client=client, breaks=[3, 6])
    here = station_service_areas(url=sample_db, breaks=[3, 6])
    pd.testing.assert_frame_equal(
        pd.DataFrame(result.drop(columns="geometry")), pd.DataFrame(here.drop(columns="geometry"))
    )
    assert result.geometry.geom_equals_exact(here.geometry, 0).all()
    with cursor(sample_db) as cur:
        cur.execute(
            "SELECT count(*) FROM resources WHERE valid_to IS NULL AND kind = ANY(%s)",
            (list(KINDS),),
        )
        (stations,) = cur.fetchone()
    assert result["station_id"].nunique() == stations
    assert len(result) == 2 * stations
    city = twin.connect(sample_db)
    for station_id in result["station_id"].unique()[::5]:
        rows = result[result["station_id"] == station_id]
        if rows["note"].notna().any():
            continue
        point = read_layer("resources", url=sample_db).set_index("id").loc[station_id, "geometry"]
        expected = city.service_areas([(point.x, point.y)], breaks=[3, 6])
        np.testing.assert_array_equal(rows["minutes"], expected["minutes"])
        np.testing.assert_array_equal(rows["reached_length_m"], expected["reached_length_m"])
        assert rows.geometry.reset_index(drop=True).geom_equals_exact(expected.geometry, 0).all()


def test_cli_through_a_scheduler_address_writes_the_same_geoparquet(
    sample_db: str, tmp_path: Path
) -> None:
    """The CLI on a running cluster (its scheduler's address) gives what one process gives."""
    out = tmp_path / "access.parquet"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        done = run(
            sample_db, "accessibility", "--out", str(out), "--scheduler", cluster.scheduler_address
        )
    assert done.returncode == 0, done.stderr
    assert "1605 buildings written" in done.stdout
    assert "partitions" in done.stderr  # the progress bar
    written = gpd.read_parquet(out)
    expected = accessibility(url=sample_db)
    pd.testing.assert_frame_equal(
        pd.DataFrame(written.drop(columns="geometry")),
        pd.DataFrame(expected.drop(columns="geometry")),
        check_dtype=False,
    )
    assert written.crs == "EPSG:4326"


def test_cli_coverage_and_service_areas_on_a_local_cluster(sample_db: str, tmp_path: Path) -> None:
    done = run(sample_db, "coverage", "--out", str(tmp_path / "c.parquet"), "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "1575 roads written" in done.stdout
    done = run(
        sample_db,
        "service-areas",
        "--out",
        str(tmp_path / "s.parquet"),
        "--kind",
        "fire_station",
        "--breaks",
        "2,4",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    areas = gpd.read_parquet(tmp_path / "s.parquet")
    assert sorted(areas["minutes"].unique()) == [2, 4]
    assert set(areas["kind"]) == {"fire_station"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["accessibility", "--out", "x.csv"], "must be a GeoParquet file"),
        (["accessibility", "--out", "/no/such/folder/x.parquet"], "does not exist"),
        (["accessibility", "--out", "{tmp}/folder.parquet"], "is a folder"),
        (["accessibility", "--out", "{tmp}/a.parquet", "--workers", "-1"], "workers must be"),
        (["accessibility", "--out", "{tmp}/a.parquet", "--scheduler", "my-host"], "tcp://HOST"),
        (
            ["accessibility", "--out", "{tmp}/a.parquet", "--kind", "spaceport", "--workers", "0"],
            "unknown resource kind 'spaceport'",
        ),
        (
            ["accessibility", "--out", "{tmp}/a.parquet", "--profile", "bike", "--workers", "0"],
            "unknown profile 'bike'",
        ),
        (["service-areas", "--out", "{tmp}/a.parquet", "--breaks", "4,x"], "--breaks '4,x'"),
        (
            ["service-areas", "--out", "{tmp}/a.parquet", "--breaks", "0", "--workers", "0"],
            "breaks must be",
        ),
    ],
)
def test_cli_refuses_bad_options(
    sample_db: str, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "folder.parquet").mkdir()
    code, stderr = run_here(sample_db, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert code == 1
    assert message in stderr
    assert "Traceback" not in stderr
    assert [p.name for p in tmp_path.glob("*.parquet")] == ["folder.parquet"]


def test_cli_says_when_no_scheduler_answers(sample_db: str, tmp_path: Path) -> None:
    done = run(
        sample_db,
        "coverage",
        "--out",
        str(tmp_path / "c.parquet"),
        "--scheduler",
        "tcp://127.0.0.1:9",
        "--connect-timeout",
        "2",
    )
    assert done.returncode == 1
    assert "no Dask scheduler answers at tcp://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_that_is_not_a_scheduler_is_said_not_waited_on() -> None:
    """A port that accepts and never speaks Dask (here: a bare listener), or speaks HTTP."""
    silent = socket.create_server(("127.0.0.1", 0))
    talker = socket.create_server(("127.0.0.1", 0))

    def answer_http() -> None:
        with contextlib.suppress(OSError):
            connection, _ = talker.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 64)
                connection.recv(1)

    threading.Thread(target=answer_http, daemon=True).start()
    try:
        for server in (silent, talker):
            port = server.getsockname()[1]
            with (
                pytest.raises(BatchError, match=f"tcp://127.0.0.1:{port}"),
                batch_client(scheduler=f"tcp://127.0.0.1:{port}", timeout_s=1),
            ):
                pass
    finally:
        silent.close()
        talker.close()


def test_missing_inputs_are_named(empty_db: str, tmp_path: Path) -> None:
    with pytest.raises(twin.MissingInputError, match="no buildings loaded"):
        accessibility(url=empty_db)
    with pytest.raises(twin.MissingInputError, match="no roads loaded"):
        road_coverage(url=empty_db)
    with pytest.raises(twin.MissingInputError, match="no available station"):
        station_service_areas(url=empty_db)
    code, stderr = run_here(
        empty_db, "accessibility", "--out", str(tmp_path / "a.parquet"), "--workers", "0"
    )
    assert code == 1
    assert "no buildings loaded" in stderr and "twin ingest buildings" in stderr


def test_batch_client_refuses_bad_options() -> None:
    with pytest.raises(BatchError, match="workers must be"), batch_client(workers=-2):
        pass
    with pytest.raises(BatchError, match="tcp://HOST:PORT"), batch_client(scheduler="8786"):
        pass


def _cached_networks() -> list[tuple[str, int]]:
    from twin.batch import networks

    return [(spec.profile, id(network)) for spec, network in networks._networks.items()]


def test_each_worker_builds_the_network_once(sample_db: str, client: Client) -> None:
    """Workers build the network from the store themselves, once, and keep it across batches."""
    accessibility(url=sample_db, kinds=["police"], client=client)
    first = client.run(_cached_networks)
    accessibility(url=sample_db, kinds=["police"], client=client)
    assert client.run(_cached_networks) == first  # the same objects: built once per process
    assert len(first) == 2  # both workers answered
    assert any(first.values())  # the tasks' workers hold the network; none holds two
    assert all(len(cached) <= 1 for cached in first.values()), first
