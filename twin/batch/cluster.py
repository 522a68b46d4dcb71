"""Where a batch runs: a Dask cluster (local or remote), the district partitions, the progress.

:func:`batch_client` starts a :class:`distributed.LocalCluster` of worker processes on this
machine, or connects to a running scheduler (``tcp://HOST:PORT``): the code that runs is the
same. :func:`by_district` cuts a frame into partitions of whole districts (dask-geopandas);
:func:`run_partitions` runs a function on every partition, on the cluster or, without one, on
every district in this process, and shows the progress.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dask
import dask_geopandas
import geopandas as gpd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from layers.errors import ParameterError

#: Name of the partition of the features in no district.
OUTSIDE = "(outside the districts)"
#: Partitions per worker thread: enough to even out districts of different sizes, few enough
#: that Dask's cost per task stays small.
PARTITIONS_PER_THREAD = 4
#: Scheduler addresses :func:`batch_client` accepts.
_SCHEDULER = re.compile(r"^(tcp|tls|inproc|ws|wss)://[^\s/]+$")


class BatchError(ParameterError):
    """A batch that cannot run as asked (bad option, unreachable scheduler, nothing to do)."""


@contextmanager
def batch_client(
    *, workers: int = 2, scheduler: str | None = None, timeout_s: float = 10.0
) -> Iterator[Client | None]:
    """Yield a Dask client: a local cluster of ``workers`` processes, or a running scheduler.

    Parameters
    ----------
    workers
        Worker processes of the local cluster (one thread each); 0 runs in this process, with
        no Dask (yields None). Ignored with ``scheduler``.
    scheduler
        Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``; its workers must
        import this project and reach the database.
    timeout_s
        How long to try to reach the scheduler, seconds.

    Yields
    ------
    distributed.Client or None
        The client, closed (and the local cluster stopped) on exit.

    Raises
    ------
    BatchError
        If ``workers`` is negative, ``scheduler`` is not an address, or nothing answers there.
    """
    if scheduler is not None:
        if not _SCHEDULER.match(scheduler):
            raise BatchError(
                f"scheduler must be an address like tcp://HOST:PORT, not {scheduler!r}",
                parameter="scheduler",
            )
        client = _connect(scheduler, timeout_s)
        with client:
            yield client
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise BatchError(
            f"workers must be a whole number of 0 or more, not {workers!r}", parameter="workers"
        )
    if workers == 0:
        yield None
        return
    # the scheduler's HTTP server on a free port: 8787 may be another cluster's
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _connect(scheduler: str, timeout_s: float) -> Client:
    """Connect to a running scheduler, or raise :class:`BatchError` within a bounded time.

    Dask's own ``timeout`` bounds the TCP connection, not what follows: a server that accepts
    and never speaks Dask (a Redis port, a proxy) held the client forever, and one that answers
    with something else made it read a frame length of exabytes. The connection is tried on a
    daemon thread and abandoned after ``2 * timeout_s + 5`` seconds; whatever it raises is said
    as "not a Dask scheduler".
    """
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            outcome["client"] = Client(scheduler, timeout=f"{timeout_s}s")
        except Exception as exc:  # any failure to speak Dask is said below
            outcome["error"] = exc

    thread = threading.Thread(target=attempt, name="dask-connect", daemon=True)
    thread.start()
    thread.join(2 * timeout_s + 5)
    if "client" in outcome:
        client: Client = outcome["client"]
        return client
    error = outcome.get("error")
    if error is None:
        raise BatchError(
            f"{scheduler} accepted the connection but did not answer as a Dask scheduler "
            f"within {2 * timeout_s + 5:g} s",
            parameter="scheduler",
        )
    if isinstance(error, OSError | TimeoutError):
        raise BatchError(
            f"no Dask scheduler answers at {scheduler} within {timeout_s:g} s: {error}",
            parameter="scheduler",
        ) from error
    raise BatchError(
        f"{scheduler} is not a Dask scheduler (its answer could not be read: "
        f"{type(error).__name__})",
        parameter="scheduler",
    ) from error


def assign_districts(frame: gpd.GeoDataFrame, districts: gpd.GeoDataFrame) -> pd.Series:
    """Name the district of each feature: the finest-level one holding its representative point.

    Parameters
    ----------
    frame
        Features (EPSG:4326).
    districts
        The districts layer (``name``, ``level``, polygons); the finest level is used.

    Returns
    -------
    pandas.Series
        District name per feature (same index); :data:`OUTSIDE` where none holds it.
    """
    if districts.empty:
        return pd.Series(OUTSIDE, index=frame.index, dtype=object)
    if districts["level"].notna().any():
        districts = districts[districts["level"] == districts["level"].max()]
    points = gpd.GeoDataFrame(geometry=frame.geometry.representative_point(), crs=frame.crs)
    joined = gpd.sjoin(points, districts[["name", "geometry"]], predicate="within", how="left")
    joined = joined[~joined.index.duplicated(keep="first")]
    return joined["name"].reindex(frame.index).fillna(OUTSIDE).astype(object)


def by_district(frame: gpd.GeoDataFrame, *, partitions: int) -> dask_geopandas.GeoDataFrame:
    """Cut a frame with a ``district`` column into Dask partitions of whole districts.

    Parameters
    ----------
    frame
        Features with ``district`` (from :func:`assign_districts`).
    partitions
        How many partitions at most; one per district when there are fewer districts. Dask
        spends a few milliseconds per task: 67 districts of 200 buildings in 67 tasks took
        longer on one worker than in one process, in 8 tasks less (bench/batch.py, Malta).

    Returns
    -------
    dask_geopandas.GeoDataFrame
        Indexed by the district's number (districts sorted by name); a district is never split
        between partitions.
    """
    names = sorted(frame["district"].unique())
    number = frame["district"].map({name: i for i, name in enumerate(names)}).astype("int64")
    indexed = frame.set_index(number.rename("partition")).sort_index(kind="stable")
    count = max(1, min(partitions, len(names)))
    with dask.config.set({"dataframe.convert-string": False}):  # values as the client has them
        return dask_geopandas.from_geopandas(indexed, npartitions=count)


def objects(values: pd.Series) -> np.ndarray:
    """Return a column as an object array with None for every missing value (NaN, NA, None).

    Parameters
    ----------
    values
        Any column.

    Returns
    -------
    numpy.ndarray
        Object array: the values, None where missing; the same whichever dtype the column had.
    """
    return np.array([None if pd.isna(v) else v for v in values], dtype=object)


def _apply(
    function: Callable[..., pd.DataFrame],
    part: gpd.GeoDataFrame,
    payload: tuple[tuple[Any, ...], dict[str, Any]],
) -> pd.DataFrame:
    """Run ``function(part, *args, **keywords)`` on a worker, the arguments sent once."""
    args, keywords = payload
    return function(part, *args, **keywords)


def run_partitions(
    frame: gpd.GeoDataFrame,
    function: Callable[..., pd.DataFrame],
    *args: Any,
    client: Client | None,
    label: str,
    progress: bool = True,
    keywords: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Run ``function(partition, *args, **keywords)`` on every district of a frame; concatenate.

    Parameters
    ----------
    frame
        Features with ``district``.
    function
        A module-level function (workers import it by name) of a partition and ``args``.
    *args
        Arguments of every call; sent to each worker once
        (:meth:`distributed.Client.scatter`), not with every task.
    client
        The cluster's client: :data:`PARTITIONS_PER_THREAD` partitions of whole districts per
        worker thread (:func:`by_district`). None: the districts run one after the other in
        this process.
    label
        What the progress bar says.
    progress
        Show a progress bar (partitions done) on stderr.
    keywords
        Keyword arguments of every call, sent like ``args``.

    Returns
    -------
    pandas.DataFrame
        The partitions' results, concatenated in district order (empty ones left out);
        ``attrs["partitions_s"]`` is the wall time from the first task sent to the last result
        back (seconds).
    """
    started = time.perf_counter()
    named = dict(keywords or {})
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("partitions"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bars:
        if client is None:
            groups = [part for _, part in frame.groupby("district", sort=True)]
            task = bars.add_task(label, total=len(groups))
            results = []
            for part in groups:
                results.append(function(part, *args, **named))
                bars.advance(task)
        else:
            threads = sum(client.nthreads().values()) or 1
            parts = by_district(frame, partitions=PARTITIONS_PER_THREAD * threads).to_delayed()
            task = bars.add_task(label, total=len(parts))
            [payload] = client.scatter([(args, named)], broadcast=True, hash=False)
            call = dask.delayed(_apply, pure=True)
            futures = client.compute([call(function, part, payload) for part in parts])
            for _ in as_completed(futures):
                bars.advance(task)
            results = client.gather(futures)
    elapsed = time.perf_counter() - started
    results = [r for r in results if len(r)]
    out = pd.concat(results, ignore_index=True) if results else pd.DataFrame()
    out = _plain_strings(out)
    out.attrs["partitions_s"] = elapsed
    return out


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Give text columns (and columns of nothing but missing values) pandas' default string dtype.

    Dask may hand text back as Arrow strings (missing: NA) where one process has pandas'
    default; the same answer must have the same dtypes whichever ran it.
    """
    for column in frame.columns:
        values = frame[column]
        if isinstance(values, gpd.GeoSeries):
            continue
        text = isinstance(values.dtype, pd.StringDtype) or (
            values.dtype == object and pd.api.types.infer_dtype(values) in ("string", "empty")
        )
        if text:
            frame[column] = values.astype(str)
    return frame
