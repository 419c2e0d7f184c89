"""kernels/hyper.py: one distinct slot per hyperparameter, each settable through hyper_vector."""

import numpy as np

from kernels import hyper
from kernels.network import hyper_vector

NAMES = [name for name in vars(hyper) if name.isupper() and name != "N_HYPER"]


def test_every_name_has_its_own_slot():
    slots = sorted(getattr(hyper, name) for name in NAMES)
    assert slots == list(range(hyper.N_HYPER))


def test_every_name_sets_exactly_its_slot():
    default = hyper_vector()
    for k, name in enumerate(NAMES):
        hp = hyper_vector(**{name.lower(): 100.0 + k})
        changed = np.flatnonzero(hp != default)
        assert changed.tolist() == [getattr(hyper, name)] and hp[getattr(hyper, name)] == 100.0 + k
