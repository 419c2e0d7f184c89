"""Checkpoint continuation: E1 epochs, save, load, go on to E2 = a straight E2-epoch run, bit for bit
(weights, optimiser state, counters, history), across optimisers, dropout, mini-batch and online, float32 and
float64; and the refusals (lbfgs, a deadline, another spec, fewer epochs, another schedule, other data)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import checkpoint
from pipeline.config import ModelSpec
from pipeline.model import DeepLearningModel


def _data(n=60, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, np.array(["a", "b", "c"])[np.minimum(y, classes - 1)]


CASES = {
    # h2o's SGD: momentum ramping over fewer samples than the run sees, Nesterov, rate annealing; dropout
    "sgd-momentum-dropout-batch8-f32": dict(optimizer="sgd", rate=0.05, rate_annealing=1e-4, momentum_start=0.2,
                                             momentum_ramp=500, momentum_stable=0.9, mini_batch_size=8,
                                             activation="TanhWithDropout", input_dropout_ratio=0.2,
                                             hidden_dropout_ratios=[0.3], dtype="float32"),
    "adam-online-f64": dict(optimizer="adam", rate=0.01, mini_batch_size=1, dtype="float64"),
    "adadelta-dropout-online-f32": dict(optimizer="adadelta", mini_batch_size=1, input_dropout_ratio=0.1,
                                        dtype="float32"),
    "adadelta-batch7-f64-best-model": dict(optimizer="adadelta", mini_batch_size=7, dtype="float64",
                                           overwrite_with_best_model=True, stopping_rounds=3,
                                           stopping_tolerance=0.0),
    "sgd-rate-decay-l1l2-maxw2-f64": dict(optimizer="sgd", rate=0.02, rate_decay=0.5, l1=1e-4, l2=1e-3, max_w2=4.0,
                                          hidden=[6, 4], mini_batch_size=4, dtype="float64"),
}


def _spec(epochs, **over):
    base = dict(activation="Tanh", hidden=[6], epochs=epochs, seed=3, classification_stop=-1, score_interval=None)
    return ModelSpec.model_validate({**base, **over})


def _fit(spec, resume=None, horizon=None):
    X, y = _data()
    Xv, yv = _data(20, seed=1)
    return DeepLearningModel(spec).fit(X, y, Xv, yv, resume=resume, horizon=horizon)


def _same(a: DeepLearningModel, b: DeepLearningModel):
    assert a.params_.dtype == b.params_.dtype
    assert a.params_.tobytes() == b.params_.tobytes()
    sa, sb = a.train_state_, b.train_state_
    for name in ("params", "state", "counters", "rho_run"):
        assert getattr(sa, name).tobytes() == getattr(sb, name).tobytes(), name
    assert a.history_ == b.history_
    assert (a.stop_reason_, a.best_epoch_) == (b.stop_reason_, b.best_epoch_)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("e1,e2", [(20, 50), (13, 37.5)])  # 13: off the scoring grid; 37.5 rounds up to 38
def test_continuation_is_bit_identical_to_a_straight_run(tmp_path, case, e1, e2):
    straight = _fit(_spec(e2, **CASES[case]))
    first = _fit(_spec(e1, **CASES[case]), horizon=int(np.ceil(e2)))
    path = checkpoint.save_checkpoint(checkpoint.from_model(first, "d1"), tmp_path / "ckpt.npz")
    ckpt = checkpoint.load_checkpoint(path)
    assert ckpt.epoch == e1
    spec2 = _spec(e2, **CASES[case])
    assert checkpoint.resume_refusal(ckpt, spec2, "d1", horizon=int(np.ceil(e2))) == ""
    resumed = _fit(spec2, resume=ckpt, horizon=int(np.ceil(e2)))
    _same(resumed, straight)
    assert ckpt.epoch == e1 and ckpt.loop.params.tobytes() == first.train_state_.params.tobytes()  # not mutated


def test_a_checkpoint_taken_after_early_stopping_continues_to_the_same_stop(tmp_path):
    """classification_stop (h2o's 0: training misclassification 0) stops a straight run at a scoring event; a
    checkpoint taken at or after that point continues to exactly that stop."""
    over = dict(optimizer="adam", rate=0.05, mini_batch_size=4, classification_stop=0.0, score_interval=5)
    straight = _fit(_spec(400, **over))
    assert straight.stop_reason_ and straight.history_[-1]["epoch"] < 300
    first = _fit(_spec(300, **over), horizon=400)
    ckpt = checkpoint.load_checkpoint(checkpoint.save_checkpoint(checkpoint.from_model(first), tmp_path / "c.npz"))
    _same(_fit(_spec(400, **over), resume=ckpt, horizon=400), straight)


@pytest.mark.parametrize("change,needle", [
    (dict(optimizer="lbfgs"), "lbfgs"),
    (dict(max_runtime_secs=30.0), "max_runtime_secs"),
    (dict(rate=0.5), "['rate']"),
    (dict(epochs=20), "not beyond the checkpoint's epoch 20"),
    (dict(horizon=300), "scores every 3 epochs but the checkpoint's run scored every 1"),
])
def test_resume_refuses_what_cannot_continue_exactly(change, needle):
    over = dict(optimizer="sgd", rate=0.05, mini_batch_size=4)
    ckpt = checkpoint.from_model(_fit(_spec(20, **over), horizon=50), "d1")
    change = dict(change)
    horizon = change.pop("horizon", 50)
    spec = _spec(50, **{**over, **change}) if "epochs" not in change else _spec(**{**over, **change})
    assert needle in checkpoint.resume_refusal(ckpt, spec, "d1", horizon=horizon)


def test_other_data_is_refused_and_fit_does_not_train_from_a_foreign_checkpoint():
    over = dict(optimizer="sgd", rate=0.05, mini_batch_size=4)
    ckpt = checkpoint.from_model(_fit(_spec(20, **over), horizon=50), "d1")
    assert "data digest d2 differs" in checkpoint.resume_refusal(ckpt, _spec(50, **over), "d2", horizon=50)
    X, y = _data(seed=5)  # other rows: another input scaler
    with pytest.raises(checkpoint.CheckpointRefused, match="checkpoint scaler"):
        DeepLearningModel(_spec(50, **over)).fit(X, y, resume=ckpt, horizon=50)


def test_run_training_with_a_refused_checkpoint_trains_from_zero_and_says_why(tmp_path):
    from pipeline.train import run_training

    config = {"name": "xor", "data": {"source": "xor"},
              "model": {"activation": "Tanh", "hidden": [2], "epochs": 30, "distribution": "gaussian",
                        "optimizer": "sgd", "rate": 0.05, "seed": 1}}
    first = run_training(config, horizon=60)
    ckpt = checkpoint.from_model(first.model, first.data_digest)
    longer = {**config, "model": {**config["model"], "epochs": 60}}
    go_on = run_training(longer, resume=ckpt, horizon=60)
    assert go_on.continuation == {"from_epoch": 30, "note": "", "source": ""} and go_on.metrics["epochs_trained"] == 30
    assert go_on.model.params_.tobytes() == run_training(longer, horizon=60).model.params_.tobytes()
    lbfgs = {**longer, "model": {**longer["model"], "optimizer": "lbfgs"}}
    again = run_training(lbfgs, resume=ckpt, horizon=60)
    assert again.continuation["from_epoch"] == 0 and "lbfgs" in again.continuation["note"]
    assert again.metrics["epochs_trained"] == again.metrics["epochs_run"]
    missing = run_training(longer, resume=checkpoint.Unavailable("no checkpoint on the previous child"))
    assert missing.continuation["note"] == "no checkpoint on the previous child"


def test_a_truncated_checkpoint_file_is_refused_with_the_path(tmp_path):
    ckpt = checkpoint.from_model(_fit(_spec(5, optimizer="adam")))
    path = checkpoint.save_checkpoint(ckpt, tmp_path / "c.npz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable sweepnet checkpoint"):
        checkpoint.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="train the earlier rung"):
        checkpoint.load_checkpoint(tmp_path / "none.npz")
