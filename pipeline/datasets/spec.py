"""The ``data:`` section of a training config: which rows, which columns, which split.

A :class:`DataSpec` is validated once at the boundary (pydantic v2, frozen,
unknown keys rejected) and then handed to :func:`pipeline.datasets.load_data`.

Example (YAML)::

    data:
      source: digits          # built-in name, a .parquet file/directory or a .csv
      train_rows: 1347        # first 1347 rows train, the rest test
      preprocessing: [scale01]
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Names of the preprocessing steps in :mod:`pipeline.datasets.preprocess`.
STEP_NAMES = ("ufldl_normalize", "standardize", "zca", "scale01")


class PreprocessStep(BaseModel):
    """One named preprocessing step, fitted on the training rows only.

    A bare string in YAML (``- zca``) is accepted as ``{name: zca}``.

    Attributes
    ----------
    name : {"ufldl_normalize", "standardize", "zca", "scale01"}
        ``ufldl_normalize``: remove each row's mean, clip to +-3 standard
        deviations of all values, rescale to [0.1, 0.9] (UFLDL's
        ``normalizeData``, for sigmoid outputs). ``standardize``: per-feature
        (x - mean) / sd. ``zca``: ZCA whitening with ``epsilon``.
        ``scale01``: per-feature min-max scaling into [0, 1].
    epsilon : float
        ZCA regulariser added to the eigenvalues (UFLDL: 0.1 for colour
        patches); ignored by the other steps.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Literal["ufldl_normalize", "standardize", "zca", "scale01"]
    epsilon: float = Field(default=0.1, ge=0.0)


class DataSpec(BaseModel):
    """Where the data comes from and how it is split.

    Attributes
    ----------
    source : str
        A built-in name (``xor``, ``digits``, ``mnist5k``, ``lfw``) or a path:
        a ``.parquet`` file, a directory of ``.parquet`` files, or a ``.csv``.
    features : list of str, optional
        Tabular feature columns; default all columns except ``target``.
        Image/patch Parquet datasets always use their ``pixels`` column.
    target : str, optional
        Label/response column of a tabular file (CSV or plain Parquet).
        ``None`` there means unsupervised (autoencoder): ``y_*`` are ``None``.
        Built-ins and labelled image/patch Parquet datasets always return
        their ``label`` column as ``y`` (the model ignores it when it is an
        autoencoder); for them ``target`` may only be ``None`` or ``"label"``.
    train_rows : int, optional
        Deterministic split: the first ``train_rows`` rows train, the rest
        test (digits in the lab: 1347 / 450). Excludes ``test_fraction``.
    test_fraction, valid_fraction : float in [0, 1)
        Seeded random split. ``test_fraction`` is a share of all rows;
        ``valid_fraction`` a share of the rows that are not test rows.
    split_seed : int
        Seed of the random split (``np.random.default_rng(split_seed)``).
    limit : int, optional
        Keep only the first ``limit`` rows (after the ``labels`` filter).
    preprocessing : list of PreprocessStep
        Steps applied in order, each fitted on the training rows.
    labels : list, optional
        Keep only rows whose label is in this list (self-taught learning:
        digits 5-9 unlabelled, 0-4 labelled).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(min_length=1)
    features: list[str] | None = None
    target: str | None = None
    train_rows: int | None = Field(default=None, gt=0)
    test_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    valid_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    split_seed: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, gt=0)
    preprocessing: list[PreprocessStep] = Field(default_factory=list)
    labels: list[int | float | str] | None = None

    @field_validator("preprocessing", mode="before")
    @classmethod
    def _strings_to_steps(cls, value):
        if isinstance(value, (str, dict)):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("labels")
    @classmethod
    def _labels_not_empty(cls, value):
        if value is not None and len(value) == 0:
            raise ValueError(
                "labels is an empty list, which would keep no rows; "
                "omit it to keep every class or list the classes to keep, e.g. [0, 1, 2, 3, 4]"
            )
        return value

    @model_validator(mode="after")
    def _one_split_rule(self):
        if self.train_rows is not None and self.test_fraction > 0:
            raise ValueError(
                f"train_rows={self.train_rows} and test_fraction={self.test_fraction} both "
                "define the test set; set only one (train_rows for a fixed first-N split, "
                "test_fraction for a seeded random split)"
            )
        return self

    def cache_key(self) -> str:
        """Canonical JSON of the spec (sorted keys), used in the data digest."""
        import json

        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
