"""Patch datasets sampled on the fly from images that ship in packages.

A config can name patches instead of a file, so the lab's autoencoder
examples run on a clean checkout without a data-building step::

    data:
      source: "patches:skimage-grey?size=8&count=10000&seed=0&whiten=true"

The part before ``?`` is any image source of :func:`load_images` (photo
names, aliases such as ``skimage-grey``/``skimage-colour``/``sklearn``,
files or folders). Options: ``size`` (8), ``count`` (10000), ``seed`` (0),
``whiten`` (false; Olshausen-Field whole-image whitening like UFLDL's
IMAGES.mat), ``colour`` (false). Sampling is deterministic in ``seed``, so
the data digest is stable. ``sweepnet data patches`` writes the same patches
to Parquet.
"""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl

import numpy as np

from pipeline.datasets.builtin import RawData

PREFIX = "patches:"
OPTIONS = {"size": int, "count": int, "seed": int, "whiten": "bool", "colour": "bool"}
DEFAULTS = {"size": 8, "count": 10000, "seed": 0, "whiten": False, "colour": False}


def is_generated(source: str) -> bool:
    return source.startswith(PREFIX)


def parse(source: str) -> tuple[str, dict]:
    """Split ``patches:IMAGES?k=v&...`` into the image source and validated options."""
    body = source[len(PREFIX):]
    images, _, query = body.partition("?")
    if not images:
        raise ValueError(f"data.source={source!r} names no images; e.g. patches:skimage-grey?size=8&count=10000")
    options = dict(DEFAULTS)
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in OPTIONS:
            raise ValueError(f"data.source={source!r}: unknown option {key!r}; use {sorted(OPTIONS)}.")
        if OPTIONS[key] == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"data.source={source!r}: {key}={value!r} must be true or false.")
            options[key] = value.lower() in ("true", "1")
        else:
            try:
                options[key] = int(value)
            except ValueError:
                raise ValueError(f"data.source={source!r}: {key}={value!r} must be a whole number.") from None
            if options[key] < (0 if key == "seed" else 1):
                raise ValueError(f"data.source={source!r}: {key}={value} is out of range.")
    return images, options


@functools.lru_cache(maxsize=8)
def load_generated(source: str) -> RawData:
    """Sample the patches a ``patches:`` source names (cached per process)."""
    from pipeline.datasets.sources import load_images, sample_patches

    images, opts = parse(source)
    named = load_images(images, colour=opts["colour"], whiten=opts["whiten"])
    patches, _ = sample_patches([im for _, im in named], opts["size"], opts["count"], opts["seed"])
    channels = 3 if opts["colour"] else 1
    X = np.ascontiguousarray(patches.reshape(opts["count"], -1), dtype=np.float64)
    X.setflags(write=False)
    names = [f"pixel{i}" for i in range(X.shape[1])]
    return RawData(X, None, (opts["size"], opts["size"], channels), names,
                   f"{opts['count']} {opts['size']}x{opts['size']} patches of {images}"
                   f"{' (whitened)' if opts['whiten'] else ''}, seed {opts['seed']}")
