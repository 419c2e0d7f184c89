"""One ``sweepnet features`` run end to end: images -> autoencoder -> features Parquet -> classifier.

Three steps, shared by the plain path (:func:`run_features`) and the Prefect flow (``flows.features``, which
fans the shards out over Dask): :func:`prepare_features` (config, images, autoencoder folded into ``W, b``),
:func:`shard_slices` (the shards, in file order; each is one :func:`extract_features` call) and
:func:`finish_features` (Parquet, classifiers, ``metrics.json``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from pipeline.features.classifier import fit_classifier
from pipeline.features.config import FeaturesConfig, classifier_spec, load_features_config
from pipeline.features.extraction import extract_features, fold_autoencoder
from pipeline.features.outputs import read_features, write_features
from pipeline.features.sources import labelled_images, load_autoencoder


@dataclass(frozen=True)
class FeaturesJob:
    """What :func:`prepare_features` loaded once: the config, its output folder, the labelled images
    (``labelled_images``) and the folded first layer ``W`` (n_features, n_patch_inputs), ``b`` (n_features,)."""

    cfg: FeaturesConfig
    out: Path
    data: dict[str, Any]
    W: np.ndarray
    b: np.ndarray
    activation: str
    meta: dict[str, Any]


def prepare_features(config, overrides: dict | None = None, progress=print) -> FeaturesJob:
    """Validate the config, load the images and the autoencoder, fold it; the driver's part of a run."""
    cfg = load_features_config(config, overrides)
    out = Path(cfg.out or f"runs/features/{cfg.name}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = labelled_images(cfg)
    model, steps, patch_shape = load_autoencoder(cfg.autoencoder, out)
    progress(f"autoencoder ready ({time.perf_counter() - t0:.1f} s): {model.sizes_}, patches {patch_shape}, "
             f"preprocessing {[s['name'] for s in steps]}")
    if patch_shape[2] != data["image_shape"][2]:
        raise ValueError(f"the autoencoder's patches have {patch_shape[2]} channels but the images have "
                         f"{data['image_shape'][2]}")
    W, b, act = fold_autoencoder(model, steps, patch_shape)
    meta = {"name": cfg.name, "patch_shape": patch_shape, "image_shape": data["image_shape"],
            "activation": act, "conv": cfg.conv.model_dump(), "layout": "(feature, pool_row, pool_col)"}
    return FeaturesJob(cfg, out, data, W, b, act, meta)


def shard_slices(job: FeaturesJob) -> list[tuple[str, int, int]]:
    """The shards as ``(split, start, stop)`` row ranges: train then test, ``shard_rows`` images each."""
    rows = job.cfg.shard_rows
    return [(split, s, min(s + rows, len(job.data[f"X_{split}"])))
            for split in ("train", "test") for s in range(0, len(job.data[f"X_{split}"]), rows)]


def shard_images(job: FeaturesJob, shard: tuple[str, int, int]) -> np.ndarray:
    """The images of one shard, shape (n_rows, height, width, channels)."""
    split, start, stop = shard
    return job.data[f"X_{split}"][start:stop]


def finish_features(job: FeaturesJob, features: Iterable[np.ndarray], started: float,
                    progress: Callable[[str], None] = print) -> dict:
    """Write the shards' ``features`` (in :func:`shard_slices` order; may be a lazy iterable) to
    ``out/features.parquet``, train the classifier(s), write ``metrics.json``; returns its content.
    ``started``: ``time.perf_counter()`` when extraction began (for ``extract_seconds``)."""
    cfg, data, out = job.cfg, job.data, job.out
    shards = ((f, data[f"y_{split}"][s:e], split) for f, (split, s, e) in zip(features, shard_slices(job)))
    path = write_features(out / "features.parquet", shards, job.meta)
    n_images = len(data["X_train"]) + len(data["X_test"])
    feats = read_features(path)
    extract_s = time.perf_counter() - started
    progress(f"features: {feats['train'][0].shape[1]} per image, {n_images} images in {extract_s:.1f} s "
             f"-> {path}")
    spec = classifier_spec(cfg.classifier)
    clf, result = fit_classifier(spec, *feats["train"], *feats["test"], data["classes"])
    clf.save(out / "classifier.npz", extra={"features": job.meta})
    summary = {"name": cfg.name, "out": str(out), "features": result, "extract_seconds": extract_s,
               "images_per_second": n_images / extract_s, "n_train": len(data["X_train"]),
               "n_test": len(data["X_test"]), "classes": data["classes"],
               "class_names": data.get("class_names")}
    if cfg.compare_raw:
        raw = [a.reshape(len(a), -1).astype(np.float64) for a in (data["X_train"], data["X_test"])]
        _, summary["raw_pixels"] = fit_classifier(spec, raw[0], data["y_train"], raw[1], data["y_test"],
                                                  data["classes"])
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_features(config, overrides: dict | None = None, progress=print) -> dict:
    """Run a features config end to end; returns the metrics written to ``out/metrics.json``.

    Parameters
    ----------
    config : FeaturesConfig, dict or YAML path
    overrides : dict, optional
        Dotted keys replacing config values (``{"conv.pool": 7}``).
    progress : callable(str)
    """
    job = prepare_features(config, overrides, progress)
    started = time.perf_counter()
    features = (extract_features(shard_images(job, shard), job.W, job.b, job.activation, job.cfg.conv)
                for shard in shard_slices(job))
    return finish_features(job, features, started, progress)
