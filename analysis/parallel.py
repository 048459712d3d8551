"""Run a per-individual analysis over individuals with dask.distributed.

The library never starts a cluster by itself: it uses the caller's
``Client``, or connects to ``scheduler`` / ``DASK_SCHEDULER_ADDRESS``, or runs
in this process. :func:`local_cluster` is for the CLI shell, which asks for a
``LocalCluster`` explicitly. Work is partitioned by individual (a bird's fixes
never straddle two tasks) and every task is a pure function of its inputs, so a
retried task gives the same answer.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.analysis.stops import detect_stops

log = logging.getLogger(__name__)
ENV_SCHEDULER = "DASK_SCHEDULER_ADDRESS"


def partition_individuals(fixes: pd.DataFrame, n_parts: int) -> list[pd.DataFrame]:
    """Split ``fixes`` into at most ``n_parts`` frames of whole individuals, balanced by fix count.

    Greedy: individuals in decreasing size go to the currently lightest part.
    """
    sizes = fixes[S.INDIVIDUAL_ID].astype(str).value_counts()
    sizes = sizes.sort_index().sort_values(ascending=False, kind="mergesort")
    n_parts = max(1, min(n_parts, len(sizes)))
    load = np.zeros(n_parts, np.int64)
    part_of: dict[str, int] = {}
    for ind, size in sizes.items():
        k = int(np.argmin(load))
        part_of[ind] = k
        load[k] += size
    codes = fixes[S.INDIVIDUAL_ID].astype(str).map(part_of).to_numpy()
    return [fixes[codes == k] for k in range(n_parts) if (codes == k).any()]


@contextmanager
def resolve_client(client: Any = None, scheduler: str | None = None) -> Iterator[Any]:
    """The client to use: the caller's, one connected to ``scheduler`` or the env address, or None.

    A client this function connects is closed on exit; the caller's is left open.
    """
    if client is not None:
        yield client
        return
    address = scheduler or os.environ.get(ENV_SCHEDULER)
    if not address:
        yield None
        return
    from distributed import Client

    own = Client(address)
    try:
        yield own
    finally:
        own.close()


@contextmanager
def local_cluster(n_workers: int | None = None, threads_per_worker: int = 1) -> Iterator[Any]:
    """A LocalCluster and its client, for the CLI when no scheduler is given."""
    from distributed import Client, LocalCluster

    n_workers = n_workers or max(1, (os.cpu_count() or 2))
    with LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                      processes=True, dashboard_address=None,
                      silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        yield client


def map_individuals(func: Callable[[pd.DataFrame], pd.DataFrame], fixes: pd.DataFrame, *,
                    client: Any = None, scheduler: str | None = None,
                    n_partitions: int | None = None) -> pd.DataFrame:
    """Apply ``func`` to partitions of whole individuals and concatenate the results.

    Parameters
    ----------
    func : callable
        Pure function of a fixes DataFrame returning a DataFrame.
    fixes : pandas.DataFrame
    client : distributed.Client, optional
    scheduler : str, optional
        Address such as ``tcp://host:8786`` (default: ``DASK_SCHEDULER_ADDRESS``).
    n_partitions : int, optional
        Default: twice the number of worker threads (1 without a cluster).
    """
    with resolve_client(client, scheduler) as c:
        if c is None:
            return func(fixes)
        if n_partitions is None:
            n_partitions = 2 * max(1, sum(c.nthreads().values()))
        parts = partition_individuals(fixes, n_partitions)
        log.info("running %d partitions on %s", len(parts), c.scheduler.address)
        futures = c.map(func, [c.scatter(p) for p in parts], pure=True)
        results = c.gather(futures)
    frames = [r for r in results if len(r)]
    return pd.concat(frames, ignore_index=True) if frames else results[0]


def _stops_task(fixes: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    return detect_stops(fixes, **kwargs)


def detect_stops_parallel(fixes: pd.DataFrame, *, client: Any = None, scheduler: str | None = None,
                          n_partitions: int | None = None, **kwargs: Any) -> pd.DataFrame:
    """:func:`~flyway.analysis.stops.detect_stops` over individuals on a dask cluster.

    Same arguments as ``detect_stops`` (``method``, ``max_diameter``, ...) plus
    ``client`` / ``scheduler`` / ``n_partitions`` as in :func:`map_individuals`.
    The result equals the single-process result, row for row.
    """
    from functools import partial

    out = map_individuals(partial(_stops_task, kwargs=kwargs), fixes, client=client,
                          scheduler=scheduler, n_partitions=n_partitions)
    return out.sort_values([S.INDIVIDUAL_ID, S.START_TIME], kind="mergesort", ignore_index=True)
