"""A Dask client for the distributed-executor tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import distributed


@contextlib.contextmanager
def local_client() -> Iterator[distributed.Client]:
    """Two single-threaded workers in this process (fast to start; the tests that need
    pickling start worker processes of their own), and a client of them."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()
