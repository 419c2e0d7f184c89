"""The library, plain Python: configs, data, model, training, sweeps, tracking, pictures. Never imports prefect.

The public names below are imported on first use (PEP 562), so ``import pipeline`` stays cheap:
``from pipeline import DeepLearningModel`` loads the model and the kernels, nothing else.
Subpackages with their own ``__all__``: :mod:`pipeline.datasets`, :mod:`pipeline.features`,
:mod:`pipeline.sweep`.
"""

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers read it as True)
if TYPE_CHECKING:
    from pipeline.config import ConfigError
    from pipeline.config import ModelSpec
    from pipeline.config import TrainConfig
    from pipeline.config import load_config
    from pipeline.datasets import DataSpec
    from pipeline.datasets import load_data
    from pipeline.features import run_features
    from pipeline.fitting import TrainingDivergedError
    from pipeline.model import DeepLearningModel
    from pipeline.sweep import SweepSpec
    from pipeline.sweep import TrialOutcome
    from pipeline.sweep import load_sweep
    from pipeline.train import TrainResult
    from pipeline.train import run_training

_HOME = {
    "ConfigError": "pipeline.config",
    "DataSpec": "pipeline.datasets",
    "DeepLearningModel": "pipeline.model",
    "ModelSpec": "pipeline.config",
    "SweepSpec": "pipeline.sweep",
    "TrainConfig": "pipeline.config",
    "TrainResult": "pipeline.train",
    "TrainingDivergedError": "pipeline.fitting",
    "TrialOutcome": "pipeline.sweep",
    "load_config": "pipeline.config",
    "load_data": "pipeline.datasets",
    "load_sweep": "pipeline.sweep",
    "run_features": "pipeline.features",
    "run_training": "pipeline.train",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:  # AttributeError lets ``from pipeline import submodule`` fall back to importing it
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
