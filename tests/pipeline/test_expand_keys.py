"""Trial keys and configs of ``expand`` pinned against the expansion as it was before configurations were shared
across seeds (issue 12): a reference copy of that code lives here, so a rerun of an existing sweep still finds
its finished trials (same keys, byte for byte) and trains the same configs."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from pathlib import Path

import pytest

from pipeline import version
from pipeline.config import get_dotted, set_dotted
from pipeline.sweep import expand as ex
from pipeline.sweep.spec import base_config_dict, load_sweep

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "sweeps"
XOR = {"name": "xor", "model": {"activation": "Tanh", "hidden": [2], "epochs": 50}, "data": {"source": "xor"}}
RANDOM = {"model.rate": {"loguniform": [1e-4, 1e-1]}, "model.hidden": {"choice": [[2], [3]]},
          "model.epochs": {"int": [10, 20]}, "model.rho": {"uniform": [0.9, 0.99]}}


def _reference_digest(payload) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_expand(spec, rung: int = 0, points=None) -> list[dict]:
    """The expansion before issue 12, field by field: every trial's config resolved through pydantic on its own,
    its key hashed from that config (copied from ``expand.expand``/``_make_trial`` of that time)."""
    base = base_config_dict(spec)
    seeds = spec.seed_axis
    points = ex.draw_points(spec) if points is None else points
    digests: dict[str, str] = {}
    out: list[dict] = []
    for point in points:
        for seed in seeds if seeds is not None else [None]:
            axes = dict(point)
            if seed is not None:
                axes["model.seed"] = seed
            if spec.halving is not None:
                axes["model.epochs"] = spec.halving.rungs[rung]
            raw = copy.deepcopy(base)
            for dotted, value in axes.items():
                set_dotted(raw, dotted, copy.deepcopy(value))
            config = ex.default_resolver(raw)
            data = config.get("data", {})
            tag = json.dumps(data, sort_keys=True, default=str)
            if tag not in digests:
                digests[tag] = ex.default_digest(data)
            trial_seed = get_dotted(config, "model.seed")
            no_seed = copy.deepcopy(config)
            no_seed["model"].pop("seed", None)
            out.append({
                "index": len(out),
                "key": _reference_digest({"config": config, "seed": trial_seed, "data": digests[tag],
                                          "code": version.code_version()}),
                "config_key": _reference_digest({"config": no_seed, "data": digests[tag]}),
                "seed": trial_seed, "axes": axes, "config": config, "rung": rung, "data_digest": digests[tag],
            })
    return out


def spec(**over):
    raw = {"name": "t", "base": XOR, "seeds": 3, "space": {"model.hidden": [[2], [3]]}}
    raw.update(over)
    return load_sweep(raw)


SPECS = {
    "census": lambda: load_sweep(EXAMPLES / "xor_census.yaml"),
    "digits_grid": lambda: load_sweep(EXAMPLES / "digits_grid.yaml"),
    "xor_random": lambda: load_sweep(EXAMPLES / "xor_random.yaml"),
    "seed_list": lambda: spec(seeds=[5, 7, 0]),
    "no_seed_axis": lambda: spec(seeds=None),
    "seed_in_space": lambda: spec(seeds=None, space={"model.seed": [11, 12], "model.hidden": [[2], [4]]}),
    "random_search": lambda: spec(space=RANDOM, strategy={"kind": "RandomDiscrete", "max_models": 4, "seed": 3},
                                  seeds=2),
    "data_axis": lambda: spec(space={"data.valid_fraction": [0.0, 0.25], "model.l2": [0.0, 0.01]}, seeds=2),
    "halving": lambda: spec(seeds=[1, 2], space={"model.hidden": [[2], [3], [4]]},
                            halving={"rungs": [10, 30], "keep": 0.34}),
}


def _fields(trial: ex.Trial) -> dict:
    return {"index": trial.index, "key": trial.key, "config_key": trial.config_key, "seed": trial.seed,
            "axes": trial.axes, "config": trial.config, "rung": trial.rung, "data_digest": trial.data_digest}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_expansion_matches_the_reference_field_by_field(name):
    s = SPECS[name]()
    got, want = [_fields(t) for t in ex.expand(s)], reference_expand(s)
    assert [g["key"] for g in got] == [w["key"] for w in want]
    assert got == want
    # dict order too: the config is written to config.yaml unsorted and logged as params
    assert [json.dumps(g["config"]) for g in got] == [json.dumps(w["config"]) for w in want]
    assert [list(g["axes"]) for g in got] == [list(w["axes"]) for w in want]


def test_a_later_halving_rung_matches_the_reference():
    s = SPECS["halving"]()
    points = [{"model.hidden": [3]}, {"model.hidden": [4]}]
    got = [_fields(t) for t in ex.expand(s, rung=1, points=points)]
    assert got == reference_expand(s, rung=1, points=points)
    assert {g["config"]["model"]["epochs"] for g in got} == {30}


def test_a_chunk_pickles_no_larger_than_before():
    s = spec(seeds=20)
    trials = ex.expand(s)
    old = [ex.Trial(**{k: v for k, v in w.items()}) for w in reference_expand(s)]
    assert [t.key for t in trials] == [t.key for t in old]
    new_size, old_size = len(pickle.dumps(trials[:20])), len(pickle.dumps(old[:20]))
    assert new_size <= old_size
    back = pickle.loads(pickle.dumps(trials[:20]))
    assert [_fields(t) for t in back] == [_fields(t) for t in trials[:20]]
