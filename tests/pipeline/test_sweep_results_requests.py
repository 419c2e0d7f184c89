"""Requests a ``child_per: config`` sweep makes to a real ``mlflow server``, counted in the server's access log:
one upload per chunk on the workers, four requests per configuration child in the driver, and a rerun that
reads a few chunk tables instead of one ``seeds.csv`` per configuration."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from pipeline.sweep import collect, driver, runner

XOR = {"name": "xor", "data": {"source": "xor"},
       "model": {"activation": "Tanh", "hidden": [2], "epochs": 20, "distribution": "gaussian",
                 "standardize": False, "optimizer": "sgd", "rate": 0.05, "rate_annealing": 0.0}}
_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) (\S+) HTTP')


class AccessLog:
    """Requests the server logged since the last :meth:`take`."""

    def __init__(self, pool):
        self.path = pool.state_dir / "logs" / "mlflow-server.log"
        self.seen = self._lines()

    def _lines(self) -> int:
        return len(self.path.read_text(errors="replace").splitlines())

    def take(self) -> Counter:
        time.sleep(0.3)  # the server writes its access line after answering
        lines = self.path.read_text(errors="replace").splitlines()
        new, self.seen = lines[self.seen:], len(lines)
        out: Counter = Counter()
        for line in new:
            m = _LINE.search(line)
            if m:
                path = re.sub(r"^/api/[23]\.0/mlflow(-artifacts)?/", "", m.group(2).split("?")[0])
                out[(m.group(1), "artifact" if path.startswith("artifacts/") else path)] += 1
        return out


@pytest.mark.services
def test_census_requests_per_chunk_and_per_configuration(mlflow_server_uri, sweepnet_service_pool, tmp_path):
    spec = {"name": f"census-requests-{tmp_path.name}", "base": XOR, "seeds": [1, 2, 3], "chunk_size": 6,
            "child_per": "config", "objective": {"metric": "train_MSE", "direction": "minimize"},
            "space": {"model.hidden": [[2], [3]], "model.rate": [0.05, 0.1]}}
    plan = driver.prepare(spec, tmp_path, tracking_uri=mlflow_server_uri, check_gradient=False)
    chunks = driver.pending_chunks(plan)
    n_configs = len({t.config_key for t in plan.trials})
    log = AccessLog(sweepnet_service_pool)
    outcomes = [runner.run_chunk(c, plan.ctx, plan.options) for c in chunks]
    worker = log.take()
    assert worker[("PUT", "artifact")] == len(chunks) == 2  # one table per chunk
    assert sum(worker.values()) <= len(chunks) + 1  # + the run lookup of the artifact location, once per process
    col = collect.Collector(plan, chunks, every=0)
    for o in outcomes:
        col.add(o)
    rows = col.rows()
    children = log.take()
    assert children[("POST", "runs/create")] == n_configs == 4
    # create, log-batch, log-inputs, terminate (was 9 with a lookup before and after, seeds.csv and the URL print)
    assert sum(children.values()) == 4 * n_configs, children
    assert children[("POST", "runs/search")] == 0, children
    collect.finish(plan, rows, tmp_path / "summary")
    rerun = driver.prepare(spec, tmp_path, tracking_uri=mlflow_server_uri, check_gradient=False)
    log.take()
    stored = collect.stored_rows(rerun)
    driver.release_lease(rerun)
    reads = log.take()
    assert len(stored) == len(plan.trials) and all(v["status"] == "cached" for v in stored.values()
                                                   if v["objective"] == v["objective"])
    assert reads[("GET", "artifact")] == len(chunks)  # a download per chunk table, none per configuration
