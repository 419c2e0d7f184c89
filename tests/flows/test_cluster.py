"""flows.cluster: where chunks run. Real Dask processes on 127.0.0.1, no mocks."""

import pytest
from distributed import Client

from flows import cluster


def test_embedded_cluster_has_the_asked_workers_and_is_closed_on_exit():
    with cluster.task_runner(None, n_workers=1) as c:
        assert c.n_workers == 1 and c.address.startswith("tcp://127.0.0.1:")
        assert cluster.live_workers(c.address) == 1
        address = c.address
    with pytest.raises(OSError):  # the scheduler went away with the context
        Client(address, timeout=3, set_as_default=False)


@pytest.mark.services
def test_an_existing_scheduler_is_used_and_left_running(dask_cluster_address, monkeypatch):
    monkeypatch.setenv("SWEEPNET_DASK_ADDRESS", dask_cluster_address)
    with cluster.task_runner() as c:
        assert c.address == dask_cluster_address
        assert c.n_workers == cluster.live_workers(dask_cluster_address) >= 1  # counted, not assumed
    assert cluster.live_workers(dask_cluster_address) >= 1  # not ours to close


def test_heavy_imports_run_on_every_worker():
    with cluster.task_runner(None, n_workers=2) as c, Client(c.address, set_as_default=False) as client:
        client.run(cluster._import_heavy)
        loaded = client.run(lambda: sorted(m for m in ("mlflow", "pipeline.train", "prefect.task_engine")
                                           if __import__("sys").modules.get(m)))
        assert len(loaded) == 2 and all(v == ["mlflow", "pipeline.train", "prefect.task_engine"]
                                        for v in loaded.values())
