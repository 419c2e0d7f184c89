"""pipeline.sweep.outcome: the trial outcome record that crosses Dask/Prefect pickling."""

import math
import pickle

from pipeline.sweep import Trial, TrialOutcome


def _trial():
    return Trial(index=7, key="k7", config_key="c1", seed=3, axes={"model.rate": 0.1, "model.seed": 3},
                 config={"model": {"rate": 0.1, "seed": 3}}, rung=1)


def test_of_copies_the_trial_identity_and_defaults_the_rest():
    o = TrialOutcome.of(_trial(), "failed", error="boom")
    assert (o.key, o.index, o.config_key, o.seed, o.rung, o.status, o.error) == ("k7", 7, "c1", 3, 1, "failed", "boom")
    assert math.isnan(o.objective) and o.metrics == {} and o.run_id is None and o.seconds == o.log_seconds == 0.0


def test_pickles_round_trip():
    o = TrialOutcome.of(_trial(), "finished", objective=0.5, metrics={"train_MSE": 0.5}, seconds=1.25, pid=42)
    assert pickle.loads(pickle.dumps(o)) == o


def test_row_has_every_field_and_the_axes():
    o = TrialOutcome.of(_trial(), "finished", objective=0.5, metrics={"train_MSE": 0.5})
    row = o.row({"model.rate": 0.1})
    assert row["axes"] == {"model.rate": 0.1} and row["status"] == "finished" and row["objective"] == 0.5
    assert set(row) == {*TrialOutcome.__dataclass_fields__, "axes"}
    assert row["metrics"] is o.metrics  # shared, not copied, as the dict rows were
