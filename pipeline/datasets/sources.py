"""Where pixels come from: shipped photos, the user's image files, labelled sets.

Patch sources (``sweepnet data patches --source``) are a comma-separated list
of names, group aliases or paths:

- scikit-image photos: grey ``camera``, ``moon``, ``brick``, ``grass``,
  ``gravel``; colour ``astronaut``, ``coffee``, ``chelsea``, ``rocket``;
- scikit-learn ``load_sample_images``: colour ``china``, ``flower``;
- aliases ``skimage-grey``, ``skimage-colour``, ``sklearn``;
- a PNG/JPEG file, or a folder searched recursively for them (Pillow).

Grey output converts colour photos with luminance (``skimage.color.rgb2gray``);
colour output needs colour sources. Pixel values are scaled to [0, 1].

``whiten=True`` applies Olshausen & Field's whole-image whitening filter (the
one behind UFLDL's IMAGES.mat, which is pre-whitened): in the Fourier domain
multiply by ``rho * exp(-(rho / 0.4)**4)`` (``rho`` = radial frequency in
cycles per pixel), which flattens the 1/f spectrum of natural images and
removes the DC, then scale to variance 0.1. Sparse autoencoders trained on
raw photos learn blurry low-frequency blobs; on whitened images they learn
the localized, oriented edge detectors UFLDL shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SKIMAGE_GREY = ("camera", "moon", "brick", "grass", "gravel")
SKIMAGE_COLOUR = ("astronaut", "coffee", "chelsea", "rocket")
SKLEARN = ("china", "flower")
ALIASES = {"skimage-grey": SKIMAGE_GREY, "skimage-colour": SKIMAGE_COLOUR, "sklearn": SKLEARN}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _to_unit(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32)


def _named_image(name: str) -> np.ndarray:
    if name in SKLEARN:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    return getattr(skimage.data, name)()


def _file_image(file: Path, colour: bool | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            mode = {True: "RGB", False: "L", None: "RGB" if im.mode not in ("L", "I;16", "1") else "L"}[colour]
            return np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{file}: cannot read as an image ({exc}); remove it or convert it to PNG/JPEG.") from exc


def _expand(source: str) -> list[tuple[str, object]]:
    items = []
    for part in (p.strip() for p in source.split(",") if p.strip()):
        if part in ALIASES:
            items.extend((n, n) for n in ALIASES[part])
        elif part in SKIMAGE_GREY + SKIMAGE_COLOUR + SKLEARN:
            items.append((part, part))
        elif Path(part).expanduser().is_dir():
            files = sorted(f for f in Path(part).expanduser().rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"{part}: folder contains no .png/.jpg/.jpeg files; add images or pick "
                                 "another source.")
            items.extend((str(f), f) for f in files)
        elif Path(part).expanduser().is_file():
            items.append((part, Path(part).expanduser()))
        else:
            raise ValueError(
                f"unknown image source {part!r}: not a shipped photo and not an existing file/folder. "
                f"Shipped: {list(SKIMAGE_GREY + SKIMAGE_COLOUR + SKLEARN)}; aliases {list(ALIASES)}; "
                "or a PNG/JPEG file or folder.")
    if not items:
        raise ValueError(f"empty image source {source!r}; name photos, e.g. skimage-grey or camera,moon.")
    return items


def whiten_image(image: np.ndarray, f0: float = 0.4) -> np.ndarray:
    """Olshausen-Field whitening of one (h, w, c) image, each channel separately.

    Returns
    -------
    ndarray of shape (h, w, c), float32, zero mean, variance 0.1
    """
    h, w = image.shape[:2]
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    rho = np.sqrt(fx * fx + fy * fy)
    filt = rho * np.exp(-((rho / f0) ** 4))
    out = np.real(np.fft.ifft2(np.fft.fft2(image, axes=(0, 1)) * filt[..., None], axes=(0, 1)))
    return (out * np.sqrt(0.1) / max(out.std(), 1e-12)).astype(np.float32)


def load_images(source: str, colour: bool = False, whiten: bool = False) -> list[tuple[str, np.ndarray]]:
    """Load the images named by ``source``.

    Parameters
    ----------
    source : str
        Comma-separated names, aliases, files or folders (module docstring).
    colour : bool
        Colour (h, w, 3) output; otherwise grey (h, w, 1).
    whiten : bool
        Apply :func:`whiten_image` (values then have mean 0, variance 0.1).

    Returns
    -------
    list of (source_id, ndarray of shape (h, w, c), float32 in [0, 1])
    """
    from skimage.color import rgb2gray

    out = []
    for name, ref in _expand(source):
        image = _to_unit(_named_image(ref) if isinstance(ref, str) else _file_image(ref))
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        if colour and image.ndim == 2:
            raise ValueError(f"source {name!r} is a grey image but --colour asks for RGB patches; drop "
                             "--colour or use colour sources (skimage-colour, sklearn).")
        if not colour and image.ndim == 3:
            image = rgb2gray(image).astype(np.float32)
        image = image if image.ndim == 3 else image[..., None]
        out.append((name, np.ascontiguousarray(whiten_image(image) if whiten else image)))
    return out


def sample_patches(images, size: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """UFLDL's ``sampleIMAGES``: random ``size`` x ``size`` patches.

    Each patch picks an image uniformly, then a uniform top-left corner.
    Patches are gathered per image from a strided window view, so no image is
    copied per patch (UFLDL's warning: that makes sampling 100x slower).

    Parameters
    ----------
    images : sequence of ndarray of shape (h_k, w_k, c)
        Same ``c`` for all; each at least ``size`` x ``size``.
    size : int
    count : int
    seed : int or SeedSequence

    Returns
    -------
    patches : ndarray of shape (count, size, size, c), float32
    positions : ndarray of shape (count, 3), int32
        (image index, row, col) of each patch's top-left corner.
    """
    if size < 1 or count < 1:
        raise ValueError(f"size={size}, count={count}; both must be >= 1 (UFLDL: size 8, count 10000).")
    images = [np.asarray(im) for im in images]
    if not images or any(im.ndim != 3 for im in images) or len({im.shape[2] for im in images}) != 1:
        raise ValueError("images must be a non-empty list of (h, w, c) arrays with the same c; "
                         f"got shapes {[im.shape for im in images]}.")
    small = [i for i, im in enumerate(images) if im.shape[0] < size or im.shape[1] < size]
    if small:
        raise ValueError(f"image(s) {small} are smaller than size={size} (shapes "
                         f"{[images[i].shape for i in small]}); use a smaller --size or bigger images.")
    rng = np.random.default_rng(seed)
    which = rng.integers(len(images), size=count)
    rows, cols = np.empty(count, np.int64), np.empty(count, np.int64)
    patches = np.empty((count, size, size, images[0].shape[2]), dtype=np.float32)
    for k, image in enumerate(images):
        picked = np.flatnonzero(which == k)
        rows[picked] = rng.integers(image.shape[0] - size + 1, size=len(picked))
        cols[picked] = rng.integers(image.shape[1] - size + 1, size=len(picked))
        windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))
        patches[picked] = windows[rows[picked], cols[picked]].transpose(0, 2, 3, 1)
    return patches, np.stack([which, rows, cols], axis=1).astype(np.int32)


LABELLED_BUILTINS = {"digits": [str(d) for d in range(10)], "mnist5k": [str(d) for d in range(10)],
                     "lfw": ["non-face", "face"]}


def labelled_images(source: str, colour: bool = False):
    """A labelled image set: a built-in (digits, mnist5k, lfw) or a folder.

    A folder holds one subfolder per class (sorted names = class indices),
    each with PNG/JPEG files of one common size.

    Returns
    -------
    images : ndarray of shape (n, h, w, c), float32 in [0, 1]
    labels : ndarray of shape (n,), int64 indices into ``classes``
    source_ids : list of str
    classes : list of str
    """
    if source in LABELLED_BUILTINS:
        from pipeline.datasets.builtin import load_builtin

        raw = load_builtin(source)
        images = raw.X.reshape((-1, *raw.image_shape)).astype(np.float32)
        return (images, raw.y.astype(np.int64), [f"{source}:{i}" for i in range(len(images))],
                LABELLED_BUILTINS[source])
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise ValueError(f"unknown labelled image source {source!r}: use one of {list(LABELLED_BUILTINS)} "
                         "or a folder with one subfolder of PNG/JPEG files per label.")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{folder}: no subfolders; put each label's images in its own subfolder, "
                         "e.g. cats/*.png and dogs/*.png.")
    images, labels, ids = [], [], []
    for index, name in enumerate(classes):
        for file in sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            image = _to_unit(_file_image(file, colour))
            image = image if image.ndim == 3 else image[..., None]
            if images and image.shape != images[0].shape:
                raise ValueError(f"{file}: image is {image.shape[:2]} but {ids[0]} is {images[0].shape[:2]}; "
                                 "all images of a dataset need one size, resize or crop them first.")
            images.append(image)
            labels.append(index)
            ids.append(str(file.relative_to(folder)))
    if not images:
        raise ValueError(f"{folder}: subfolders {classes} contain no .png/.jpg/.jpeg files.")
    return np.stack(images), np.asarray(labels, np.int64), ids, classes
