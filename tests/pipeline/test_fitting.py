"""pipeline.fitting: pure training loops (inputs untouched, same result as the model's fit) and early stopping."""

import math

import numpy as np
import pytest

from pipeline import encoding, fitting
from pipeline.config import ModelSpec
from pipeline.model import DeepLearningModel

rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3))
y = (X[:, 0] - X[:, 2] > 0).astype(float)
SPEC = {"hidden": [3], "epochs": 12, "seed": 5, "stopping_rounds": 0}


def _inputs(**fields):
    model = DeepLearningModel(SPEC, **fields).initialize(X, y, [0.0, 1.0])
    Xs = encoding.apply_input_scaler(model.scaler_, X, model.params_.dtype)
    Ys = model.encode_targets(X, y)
    hp = fitting.hyperparameters(model.spec, model.loss_)
    return model, Xs, Ys, hp


def _scores(params):
    return {"training_norm": float(np.linalg.norm(params))}


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_loops_do_not_mutate_their_inputs_and_match_fit(optimizer):
    model, Xs, Ys, hp = _inputs(optimizer=optimizer, dtype="float64")
    before = [a.copy() for a in (model.params_, model.layout_, Xs, Ys, hp)]
    if optimizer == "lbfgs":
        result = fitting.run_lbfgs(model.params_, model.layout_, Xs, Ys, model.spec, loss=model.loss_, hp=hp,
                                   score=_scores)
        assert result.message
    else:
        result = fitting.run_stochastic(model.params_, model.layout_, Xs, Ys, model.spec, loss=model.loss_,
                                        task=model.task_, hp=hp, drop=np.asarray(model.spec.dropout_ratios),
                                        seed=model.stream_seed_, score=_scores)
    for was, now in zip(before, (model.params_, model.layout_, Xs, Ys, hp)):
        np.testing.assert_array_equal(was, now)
    assert result.params is not model.params_ and not np.array_equal(result.params, model.params_)
    assert result.history[-1]["training_norm"] == pytest.approx(np.linalg.norm(result.params))
    fitted = DeepLearningModel(SPEC, optimizer=optimizer, dtype="float64").fit(X, y, classes=[0.0, 1.0])
    np.testing.assert_array_equal(fitted.params_, result.params)  # the model only stores what fitting returns
    assert [h["epoch"] for h in fitted.history_] == [h["epoch"] for h in result.history]


def test_progress_sees_every_scoring_event():
    model, Xs, Ys, hp = _inputs(optimizer="adam", score_interval=4)
    seen = []
    result = fitting.run_stochastic(model.params_, model.layout_, Xs, Ys, model.spec, loss=model.loss_,
                                    task=model.task_, hp=hp, drop=np.asarray(model.spec.dropout_ratios),
                                    seed=model.stream_seed_, score=_scores,
                                    progress=lambda entry, total: seen.append((entry["epoch"], total)))
    assert seen == [(4, 12), (8, 12), (12, 12)] and len(result.history) == 3


def test_should_stop_on_a_hand_worked_history():
    # rounds 2: moving averages of [5, 4, 3, 3.5, 3.5] are 4.5, 3.5, 3.25, 3.5; the last two (best 3.25)
    # improve on the best before them (3.5) by 0.25, more than 1% of 3.5 -> go on; at 10% -> stop
    history = [{"loss": v} for v in (5.0, 4.0, 3.0, 3.5, 3.5)]
    assert not fitting.should_stop(history, "loss", 2, 0.01, lower_is_better=True)
    assert fitting.should_stop(history, "loss", 2, 0.10, lower_is_better=True)
    assert not fitting.should_stop(history[:3], "loss", 2, 0.10, lower_is_better=True)  # < 2 * rounds events
    assert not fitting.should_stop([{"loss": math.nan}] * 6, "loss", 2, 0.1, lower_is_better=True)


def test_stopping_key_prefers_validation_and_resolves_auto():
    spec = ModelSpec(stopping_rounds=2)
    assert fitting.stopping_key(spec, "autoencoder", {"training_MSE": 1.0}) == ("training_MSE", True)
    key, lower = fitting.stopping_key(spec, "classification", {"validation_logloss": 1.0})
    assert key.startswith("validation_") and lower
    assert not fitting.early_stop(ModelSpec(stopping_rounds=0), "regression", [{"training_MSE": 1.0}] * 9)


def _run(model, Xs, Ys, hp, score):
    return fitting.run_stochastic(model.params_, model.layout_, Xs, Ys, model.spec, loss=model.loss_,
                                  task=model.task_, hp=hp, drop=np.asarray(model.spec.dropout_ratios),
                                  seed=model.stream_seed_, score=score)


@pytest.mark.parametrize("overwrite", [None, True, False])
def test_overwrite_with_best_model_restores_the_best_scoring_event(overwrite):
    # a scorer whose training logloss (the AUTO metric for classes) is best at the 2nd of 3 events (epoch 8):
    # on (h2o's default when unset) the result holds the parameters seen there, off the last ones
    model, Xs, Ys, hp = _inputs(optimizer="adam", score_interval=4, overwrite_with_best_model=overwrite)
    values, seen = iter([3.0, 1.0, 2.0]), []

    def score(params):
        seen.append(params.copy())
        return {"training_logloss": next(values)}

    result = _run(model, Xs, Ys, hp, score)
    assert [h["epoch"] for h in result.history] == [4, 8, 12]
    if overwrite is False:
        np.testing.assert_array_equal(result.params, seen[-1])
        assert result.best_epoch is None
    else:
        np.testing.assert_array_equal(result.params, seen[1])
        assert result.best_epoch == 8


def test_overwrite_with_best_model_ranks_by_validation_when_scored():
    model, Xs, Ys, hp = _inputs(optimizer="adam", score_interval=4)
    scores = iter([{"training_logloss": 3.0, "validation_logloss": 1.0}, {"training_logloss": 2.0,
                   "validation_logloss": 2.0}, {"training_logloss": 1.0, "validation_logloss": 3.0}])
    assert _run(model, Xs, Ys, hp, lambda params: next(scores)).best_epoch == 4


def test_max_runtime_secs_in_pieces_changes_no_epoch_bit_for_bit():
    # with a deadline the blocks run in growing pieces; when it never fires the weights are those of one call
    model, Xs, Ys, hp = _inputs(optimizer="adam", epochs=40, score_interval=20, activation="TanhWithDropout",
                                input_dropout_ratio=0.2, dtype="float64")
    plain = _run(model, Xs, Ys, hp, _scores)
    limited = DeepLearningModel(model.spec, max_runtime_secs=1e6).initialize(X, y, [0.0, 1.0])
    result = _run(limited, Xs, Ys, hp, _scores)
    np.testing.assert_array_equal(plain.params, result.params)
    assert result.stop_reason is None and plain.stop_reason is None
