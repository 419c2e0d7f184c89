"""One ``sweepnet features`` run end to end: images -> autoencoder -> features Parquet -> classifier."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pipeline.features.classifier import fit_classifier
from pipeline.features.config import classifier_spec, load_features_config
from pipeline.features.extraction import extract_features, fold_autoencoder
from pipeline.features.outputs import read_features, write_features
from pipeline.features.sources import labelled_images, load_autoencoder


def run_features(config, overrides: dict | None = None, progress=print) -> dict:
    """Run a features config end to end; returns the metrics written to ``out/metrics.json``.

    Parameters
    ----------
    config : FeaturesConfig, dict or YAML path
    overrides : dict, optional
        Dotted keys replacing config values (``{"conv.pool": 7}``).
    progress : callable(str)
    """
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
    t1 = time.perf_counter()
    shards = ((extract_features(X[s:s + cfg.shard_rows], W, b, act, cfg.conv), y[s:s + cfg.shard_rows], split)
              for split in ("train", "test") for X, y in [(data[f"X_{split}"], data[f"y_{split}"])]
              for s in range(0, len(X), cfg.shard_rows))
    meta = {"name": cfg.name, "patch_shape": patch_shape, "image_shape": data["image_shape"],
            "activation": act, "conv": cfg.conv.model_dump(), "layout": "(feature, pool_row, pool_col)"}
    path = write_features(out / "features.parquet", shards, meta)
    n_images = len(data["X_train"]) + len(data["X_test"])
    feats = read_features(path)
    extract_s = time.perf_counter() - t1
    progress(f"features: {feats['train'][0].shape[1]} per image, {n_images} images in {extract_s:.1f} s "
             f"-> {path}")
    spec = classifier_spec(cfg.classifier)
    clf, result = fit_classifier(spec, *feats["train"], *feats["test"], data["classes"])
    clf.save(out / "classifier.npz", extra={"features": meta})
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
