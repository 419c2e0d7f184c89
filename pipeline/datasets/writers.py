"""Build Parquet patch and image datasets from the sources in :mod:`sources`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datasets import preprocess
from pipeline.datasets.sources import labelled_images, load_images, sample_patches
from pipeline.datasets.store import DEFAULT_ROWS_PER_GROUP, write_dataset


def _preprocess_pixels(pixels: np.ndarray, steps) -> tuple[np.ndarray, list[dict]]:
    """Fit ``steps`` on all rows, apply them; keep the (n, h, w, c) shape."""
    if not steps:
        return pixels, []
    fitted, flat = preprocess.fit_apply_all(steps, pixels.reshape(len(pixels), -1))
    return flat.reshape(pixels.shape), [preprocess.to_jsonable(p) for p in fitted]


def write_patches(out, source: str = "skimage-grey", *, size: int = 8, count: int = 10000, seed: int = 0,
                  colour: bool = False, whiten: bool = False, preprocessing=(),
                  rows_per_group: int = DEFAULT_ROWS_PER_GROUP,
                  created_by: str = "pipeline.datasets.write_patches") -> Path:
    """Sample random patches from ``source`` images and write them as Parquet.

    Parameters
    ----------
    out : str or Path
        Output ``.parquet`` file.
    source : str
        Photos, aliases, files or folders (see :mod:`pipeline.datasets.sources`).
    size, count, seed : int
        Patch side, number of patches, sampling seed (same seed, same file).
    colour : bool
        RGB patches (c = 3) instead of grey (c = 1).
    whiten : bool
        Whiten whole images first (Olshausen-Field, like UFLDL's IMAGES.mat;
        see :func:`pipeline.datasets.sources.whiten_image`).
    preprocessing : list of str / dict / PreprocessStep
        Steps fitted on all sampled patches and applied before writing; the
        fitted numbers go in the file metadata (e.g. ``["ufldl_normalize"]``).
    rows_per_group : int
        Patches per row group (shard).

    Returns
    -------
    Path of the written file.
    """
    named = load_images(source, colour=colour, whiten=whiten)
    patches, positions = sample_patches([im for _, im in named], size, count, seed)
    patches, fitted = _preprocess_pixels(patches, preprocessing)
    ids = np.asarray([name for name, _ in named], dtype=object)[positions[:, 0]]
    provenance = {"source": source, "images": [name for name, _ in named], "seed": seed, "count": count,
                  "size": size, "whiten": whiten, "created_by": created_by}
    return write_dataset(out, patches, source_id=ids.tolist(), row=positions[:, 1], col=positions[:, 2],
                         kind="patches", preprocessing=fitted, provenance=provenance,
                         rows_per_group=rows_per_group)


def write_images(out, source: str, *, colour: bool = False, preprocessing=(),
                 rows_per_group: int = DEFAULT_ROWS_PER_GROUP,
                 created_by: str = "pipeline.datasets.write_images") -> Path:
    """Write a labelled image set (digits, mnist5k, lfw or a class-per-subfolder folder).

    Parameters
    ----------
    out : str or Path
    source : str
    colour : bool
        For folders: read RGB instead of grey.
    preprocessing, rows_per_group, created_by
        As in :func:`write_patches`.
    """
    images, labels, ids, classes = labelled_images(source, colour=colour)
    images, fitted = _preprocess_pixels(images, preprocessing)
    provenance = {"source": source, "count": len(images), "created_by": created_by}
    return write_dataset(out, images, source_id=ids, label=labels, kind="images", classes=classes,
                         preprocessing=fitted, provenance=provenance, rows_per_group=rows_per_group)
