"""The driver's trial-time probe: the estimate that sizes chunks separates a trial's fixed cost from its
per-epoch cost (a short run's fixed cost, scaled by 10, made 21 ms census trials look like 170 ms ones and
split a 10,000-trial census into ~90 chunks of ~110 instead of ~12)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from pipeline.sweep import driver
from pipeline.sweep.expand import Trial

FIXED_S, PER_EPOCH_S, EPOCHS = 0.05, 0.001, 100


def fixed_plus_epochs(config: dict, progress=None, data=None):
    """A stand-in trial: sleeps a fixed cost plus a cost per epoch, reports the objective."""
    time.sleep(FIXED_S + PER_EPOCH_S * config["model"]["epochs"])
    return SimpleNamespace(metrics={"train_MSE": 0.0})


def test_the_probe_estimates_fixed_cost_plus_epochs_not_ten_short_runs():
    trial = Trial(index=0, key="k", config_key="c", seed=1, axes={},
                  config={"name": "t", "data": {"source": "xor"}, "model": {"epochs": EPOCHS}})
    est = driver.warm_and_probe([trial], f"{__name__}:fixed_plus_epochs", "train_MSE")
    true = FIXED_S + PER_EPOCH_S * EPOCHS  # 0.15 s; ten 1/10 runs would say 0.6 s
    assert 0.8 * true < est < 0.35, est
