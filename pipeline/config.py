"""Validated configuration: the model spec (h2o.deeplearning's names) and a training config.

Everything is validated once here (pydantic v2, frozen, unknown keys
rejected); kernels receive plain scalars and arrays. A YAML file holds::

    name: xor
    model: {activation: Tanh, hidden: [2], epochs: 10000}
    data: {source: xor}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.datasets import DataSpec

ACTIVATIONS = {
    "Tanh": ("tanh", False), "TanhWithDropout": ("tanh", True),
    "Rectifier": ("rectifier", False), "RectifierWithDropout": ("rectifier", True),
    "Maxout": ("maxout", False), "MaxoutWithDropout": ("maxout", True),
    "Sigmoid": ("sigmoid", False), "SigmoidWithDropout": ("sigmoid", True),
}
OUTPUT_ACTIVATIONS = {"auto": None, "Linear": "linear", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}
#: Metrics scored per model kind (``DeepLearningModel.score``) that early stopping can watch.
STOPPING_METRICS = {"autoencoder": ("MSE",), "regression": ("MSE", "RMSE", "deviance"),
                    "classification": ("logloss", "misclassification", "MSE", "RMSE")}
#: h2o's default rate_annealing, applied to sgd when the field is unset.
H2O_RATE_ANNEALING = 1e-6
LOSSES = {"Automatic": None, "Quadratic": "quadratic", "CrossEntropy": "cross_entropy",
          "Absolute": "absolute", "Huber": "huber"}


class ModelSpec(BaseModel):
    """A feed-forward network and how to train it, with h2o.deeplearning's names.

    Differences from h2o are deliberate and documented per field: ``seed`` is
    always explicit (runs are reproducible at full speed, no Hogwild!),
    ``mini_batch_size`` is honoured (h2o ignores it), ``stopping_rounds``
    defaults to 0 (off) so a fixed ``epochs`` means what it says.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    activation: Literal[tuple(ACTIVATIONS)] = Field("Rectifier", description="Hidden activation (h2o names).")
    output_activation: Literal[tuple(OUTPUT_ACTIVATIONS)] = Field(
        "auto", description="auto: Softmax for classes, Linear for values; autoencoders: Sigmoid after a Sigmoid "
                            "hidden layer (UFLDL), else Linear (a linear decoder).")
    hidden: list[int] = Field(default_factory=lambda: [200, 200],
                              description="Units per hidden layer; [] is softmax/linear regression.")
    epochs: float = Field(10.0, gt=0, description="Passes over the training data (rounded up); L-BFGS: iterations.")
    mini_batch_size: int = Field(1, ge=1, description="Samples per step; 1 = online SGD (h2o's only mode).")
    distribution: Literal["AUTO", "gaussian", "bernoulli", "multinomial"] = Field(
        "AUTO", description="AUTO: multinomial/bernoulli when the dataset declares classes, else gaussian.")
    loss: Literal[tuple(LOSSES)] = Field("Automatic", description="Automatic: CrossEntropy for classes, else Quadratic.")
    huber_delta: float = Field(1.0, gt=0, description="Huber loss threshold delta, in residual units (quadratic "
                                                       "within, linear beyond).")
    huber_alpha: float | None = Field(None, exclude=True, description="Refused: h2o's quantile of |residuals| "
                                                                       "(default 0.9); use huber_delta.")
    l1: float = Field(0.0, ge=0, description="L1 penalty lambda_1 * sum|W| (biases never penalised).")
    l2: float = Field(0.0, ge=0, description="L2 penalty (lambda/2) * sum W^2, the lab's weight decay.")
    max_w2: float = Field(math.inf, gt=0, allow_inf_nan=True,
                          description="Cap on each unit's squared incoming-weight norm (c^2); inf = no cap.")
    input_dropout_ratio: float = Field(0.0, ge=0, lt=1, description="Share of inputs dropped (0.2 = keep 0.8).")
    hidden_dropout_ratios: list[float] | None = Field(
        None, description="Share dropped per hidden layer; default 0.5 for *WithDropout activations.")
    adaptive_rate: bool = Field(True, description="ADADELTA (h2o's default) when optimizer is auto.")
    rho: float = Field(0.99, gt=0, lt=1, description="ADADELTA decay.")
    epsilon: float = Field(1e-8, gt=0, description="ADADELTA/Adam epsilon.")
    adam_beta1: float = Field(0.9, gt=0, lt=1, description="Adam's decay of the mean gradient (Kingma & Ba).")
    adam_beta2: float = Field(0.999, gt=0, lt=1, description="Adam's decay of the mean squared gradient.")
    rate: float = Field(0.005, gt=0, description="Learning rate alpha (SGD, Adam).")
    rate_annealing: float | None = Field(
        None, ge=0, description="SGD: rate / (1 + annealing * samples); unset = h2o's 1e-6. Adam: 0 or unset.")
    rate_decay: float = Field(1.0, gt=0, description="Layer N uses rate * decay^(N-1).")
    momentum_start: float = Field(0.0, ge=0, lt=1)
    momentum_ramp: float = Field(1e6, gt=0, description="Samples over which momentum ramps to momentum_stable.")
    momentum_stable: float = Field(0.0, ge=0, lt=1)
    nesterov_accelerated_gradient: bool = True
    optimizer: Literal["auto", "sgd", "adadelta", "adam", "lbfgs"] = Field(
        "auto", description="auto: adadelta if adaptive_rate else sgd; lbfgs = full batch, epochs = iterations.")
    initial_weight_distribution: Literal["UniformAdaptive", "Uniform", "Normal", "Zero"] = Field(
        "UniformAdaptive", description="UniformAdaptive: U(+-sqrt(6/(fan_in+fan_out))), x4 on a classifier's output "
                                       "layer (h2o); Normal: N(0, scale^2); Zero shows the symmetry trap.")
    initial_weight_scale: float = Field(1.0, gt=0, description="Uniform bound or Normal sd (the lab's epsilon).")
    standardize: bool = Field(True, description="Inputs to mean 0, sample sd 1 per column, as h2o "
                                                "(autoencoder: (x-mean)/(max-min)).")
    seed: int = Field(1234, ge=0, description="Seeds init, shuffling and dropout; same seed = same weights.")
    stopping_rounds: int = Field(0, ge=0, description="Early stopping window in scoring events; 0 = off.")
    stopping_metric: Literal["AUTO", "logloss", "MSE", "RMSE", "misclassification", "deviance"] = "AUTO"
    stopping_tolerance: float = Field(0.0, ge=0, description="Relative improvement required to continue.")
    score_interval: int | None = Field(None, ge=1, description="Epochs between scoring; default ~100 points.")
    overwrite_with_best_model: bool | None = Field(
        None, description="End with the parameters of the best scoring event by the stopping metric (validation "
                          "if given, else training); unset = on (h2o) for sgd/adadelta/adam, off for lbfgs.")
    classification_stop: float | None = Field(
        None, ge=-1, le=1, description="Stop when the training misclassification at a scoring event is <= this; "
                                       "-1 = off; unset = h2o's 0 (lbfgs: off).")
    regression_stop: float | None = Field(
        None, ge=-1, description="Stop when the training MSE at a scoring event is <= this (regression and "
                                 "autoencoders); -1 = off; unset = h2o's 1e-6 (lbfgs: off).")
    max_runtime_secs: float = Field(0.0, ge=0, description="Stop training after this many seconds of wall time "
                                                           "(the model records why it stopped); 0 = no limit.")
    shuffle_training_data: bool = True
    autoencoder: bool = False
    sparsity_beta: float = Field(0.0, ge=0, description="Weight beta of the KL sparsity penalty (h2o name).")
    average_activation: float = Field(0.05, gt=0, lt=1, description="Sparsity target rho (h2o name).")
    sparsity_estimate: Literal["batch", "running"] = Field(
        "batch", description="rho-hat over each batch (exact for full batch) or a running average.")
    dtype: Literal["float32", "float64"] = "float32"

    @field_validator("hidden")
    @classmethod
    def _hidden_positive(cls, value):
        if value and min(value) < 1:
            raise ValueError(f"hidden={value}: every layer needs >= 1 units, e.g. [200, 200] ([] = no hidden layer)")
        return value

    @field_validator("classification_stop", "regression_stop")
    @classmethod
    def _stop_off_or_non_negative(cls, value, info):
        if value is not None and value < 0 and value != -1:
            raise ValueError(f"{info.field_name}={value}: use -1 to turn the stop off or a value >= 0 "
                             "(h2o's default: 0 for classification_stop, 1e-6 for regression_stop)")
        return value

    @field_validator("huber_alpha")
    @classmethod
    def _no_huber_alpha(cls, value):
        if value is not None:
            raise ValueError(f"huber_alpha={value} is h2o's name for a quantile of |residuals| in [0, 1] (default "
                             "0.9) from which h2o derives the Huber threshold; sweepnet takes the threshold itself, "
                             f"in residual units: use huber_delta (e.g. huber_delta: {value} if you meant a "
                             "threshold)")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        _, with_dropout = ACTIVATIONS[self.activation]
        ratios = self.hidden_dropout_ratios
        if ratios is not None:
            if not with_dropout:
                raise ValueError(f"hidden_dropout_ratios={ratios} needs a *WithDropout activation, got "
                                 f"activation={self.activation!r}; use {self.activation}WithDropout")
            if len(ratios) != len(self.hidden) or any(not 0 <= r < 1 for r in ratios):
                raise ValueError(f"hidden_dropout_ratios={ratios} must give one ratio in [0, 1) per hidden "
                                 f"layer ({len(self.hidden)} layers)")
        if self.activation.startswith("Maxout") and self.autoencoder:
            raise ValueError("activation=Maxout is not allowed with autoencoder=true (as in h2o); use Tanh, "
                             "Rectifier or Sigmoid")
        if self.resolved_optimizer == "lbfgs" and (self.input_dropout_ratio > 0 or with_dropout):
            raise ValueError("optimizer=lbfgs needs a deterministic objective: drop dropout (input_dropout_ratio=0, "
                             "no *WithDropout activation) or use sgd/adadelta/adam")
        self._refuse_ignored()
        if self.sparsity_beta > 0 and not self.activation.startswith("Sigmoid"):
            raise ValueError(f"sparsity_beta={self.sparsity_beta} uses KL(rho||rho_hat) and needs mean activations "
                             f"in (0, 1): use activation=Sigmoid, not {self.activation}")
        return self

    def _refuse_ignored(self):
        """Options the chosen optimiser or model kind would silently ignore are refused (issue 13)."""
        optimizer = self.resolved_optimizer
        if optimizer == "lbfgs" and math.isfinite(self.max_w2):
            raise ValueError(f"max_w2={self.max_w2} is not applied by optimizer=lbfgs (a projection would break "
                             "its line search); drop max_w2 or use optimizer sgd/adadelta/adam")
        if optimizer == "lbfgs" and self.stopping_rounds > 0:
            raise ValueError(f"stopping_rounds={self.stopping_rounds} is not applied by optimizer=lbfgs; set "
                             "stopping_rounds: 0 and bound the iterations with epochs, or use sgd/adadelta/adam")
        if optimizer == "adam" and self.rate_annealing:
            raise ValueError(f"rate_annealing={self.rate_annealing} is not applied by optimizer=adam (Adam adapts "
                             "its own step); remove rate_annealing (or set it to 0) or use optimizer=sgd")
        task = self.task_kind
        if task is not None:
            check_stopping_metric(self.stopping_metric, task)

    @property
    def task_kind(self) -> str | None:
        """autoencoder, classification or regression; None when the data decides (distribution AUTO)."""
        if self.autoencoder:
            return "autoencoder"
        return {"multinomial": "classification", "bernoulli": "classification",
                "gaussian": "regression"}.get(self.distribution)

    @property
    def resolved_rate_annealing(self) -> float:
        """The annealing the kernel applies: h2o's 1e-6 when unset; 0 for adam (ADADELTA ignores it)."""
        if self.resolved_optimizer == "adam":
            return 0.0
        return H2O_RATE_ANNEALING if self.rate_annealing is None else self.rate_annealing

    @property
    def resolved_stops(self) -> dict:
        """overwrite_with_best_model, classification_stop and regression_stop with unset fields resolved: h2o's
        defaults (True, 0, 1e-6) for the stochastic optimisers; off for lbfgs, which is not h2o's."""
        h2o = self.resolved_optimizer != "lbfgs"
        defaults = {"overwrite_with_best_model": h2o, "classification_stop": 0.0 if h2o else -1.0,
                    "regression_stop": 1e-6 if h2o else -1.0}
        return {k: default if getattr(self, k) is None else getattr(self, k) for k, default in defaults.items()}

    @property
    def resolved_optimizer(self) -> str:
        if self.optimizer != "auto":
            return self.optimizer
        return "adadelta" if self.adaptive_rate else "sgd"

    @property
    def dropout_ratios(self) -> list[float]:
        """Dropout ratio of each layer's input: input first, then each hidden layer."""
        _, with_dropout = ACTIVATIONS[self.activation]
        hidden = self.hidden_dropout_ratios or ([0.5] * len(self.hidden) if with_dropout else [0.0] * len(self.hidden))
        return [self.input_dropout_ratio, *hidden]


def check_stopping_metric(name: str, task: str) -> None:
    """ValueError when ``stopping_metric`` is not scored for ``task`` (early stopping would never fire)."""
    allowed = STOPPING_METRICS[task]
    if name != "AUTO" and name not in allowed:
        what = "an autoencoder" if task == "autoencoder" else task
        raise ValueError(f"stopping_metric={name!r} does not exist for {what}; use AUTO or one of "
                         f"{', '.join(allowed)}")


class TrainConfig(BaseModel):
    """One training run: a name, a model spec and a data spec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "run"
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec


class ConfigError(ValueError):
    """A config file or dict failed validation; the message lists each field, value and fix."""


def format_validation_error(error: ValidationError, where: str) -> str:
    lines = [f"{where}: {error.error_count()} problem(s):"]
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        value = item.get("input")
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key; check the spelling (see `sweepnet train --help` for the fields)"
        elif item["type"].startswith("literal_error"):
            message = f"not allowed; {message}"
        lines.append(f"  - {field} = {value!r}: {message}")
    return "\n".join(lines)


def load_config(source, overrides: dict | None = None) -> TrainConfig:
    """Read and validate a training config.

    Parameters
    ----------
    source : str, Path, dict or TrainConfig
        A YAML path or an already-parsed mapping.
    overrides : dict, optional
        Dotted keys (``"model.hidden"``) replacing values before validation.
    """
    if isinstance(source, TrainConfig) and not overrides:
        return source
    where = "config"
    if isinstance(source, TrainConfig):
        raw = source.model_dump()
    elif isinstance(source, (str, Path)):
        where = str(source)
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass a YAML file such as examples/xor.yaml")
        raw = read_yaml(path) or {}
        if isinstance(raw, dict) and isinstance(raw.get("data", {}).get("source"), str):
            raw["data"]["source"] = _resolve_source(raw["data"]["source"], path.parent)
    else:
        raw = dict(source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping with keys name/model/data, got {type(raw).__name__}")
    return validate_config(TrainConfig, raw, overrides, where)


def validate_config(model_class, raw: dict, overrides: dict | None = None, where: str = "config"):
    """``model_class.model_validate(raw)`` after applying dotted ``overrides`` to ``raw`` (in place).

    Raises
    ------
    ConfigError
        Listing each invalid field, the value received and the fix.
    """
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    try:
        return model_class.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, where)) from None


def read_yaml(path):
    """The parsed content of a YAML file (``None`` for an empty file); the one YAML loader."""
    return yaml.safe_load(Path(path).read_text())


def _resolve_source(source: str, base: Path) -> str:
    """Paths in a config file are relative to that file; built-in names stay as they are."""
    candidate = base / source
    if ("/" in source or "." in source) and not Path(source).is_absolute() and candidate.exists():
        return str(candidate)
    return source


def set_dotted(raw: dict, key: str, value) -> None:
    """Set ``raw["a"]["b"] = value`` for ``key="a.b"``, creating mappings as needed.

    Raises
    ------
    ConfigError
        When a part of the path holds something other than a mapping.
    """
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} holds {child!r}, not a mapping; "
                              "check the dotted path")
        node = child
    node[parts[-1]] = value


def get_dotted(raw: dict, key: str, default=None):
    """Read ``raw["a"]["b"]`` for ``key="a.b"`` (``default`` when absent)."""
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def parse_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` (a ``--set`` override) -> (dotted key, YAML-parsed value).

    Raises
    ------
    ValueError
        When ``text`` has no ``=``.
    """
    if "=" not in text:
        raise ValueError(f"--set {text!r}: use KEY=VALUE with a dotted key, e.g. --set model.epochs=50")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)
