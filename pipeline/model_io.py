"""Reading model files safely: no pickle, clear errors on tampered or truncated files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np


def read_model_file(path):
    """Return (header dict, params, layout) from a model ``.npz``.

    Raises
    ------
    FileNotFoundError, ValueError
        With the path and what is wrong (not a sweepnet model, truncated, inconsistent).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist; train one with `sweepnet train CONFIG.yaml`.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("params", "layout", "header")}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable sweepnet model ({type(error).__name__}: {error}); "
                         "the file is truncated or not a model saved by sweepnet — retrain or re-download it.") from None
    try:
        header = json.loads(arrays["header"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the model header is corrupt ({error}); retrain or re-download the model.") from None
    if header.get("format") != "sweepnet-model":
        raise ValueError(f"{path} is an .npz but not a sweepnet model (format={header.get('format')!r}).")
    params, layout = arrays["params"], arrays["layout"]
    expected = int(layout[-1, 1] + layout[-1, 3] * layout[-1, 4]) if layout.ndim == 2 and len(layout) else -1
    if params.ndim != 1 or params.size != expected or params.dtype.kind != "f":
        raise ValueError(f"{path}: params has {params.size} entries but its layout needs {expected}; "
                         "the file was altered — retrain the model.")
    return header, np.ascontiguousarray(params).copy(), np.ascontiguousarray(layout, dtype=np.int64)
