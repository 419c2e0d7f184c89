"""Parquet image/patch datasets: schema, round trips, zero-copy reads, shards, validation."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import (
    iter_shards, load_data, read_pixels, read_shard, sample_patches, shard_index, validate,
    write_dataset, write_images, write_patches,
)
from pipeline.datasets.sources import labelled_images, load_images
from pipeline.datasets.store import FORMAT, META_KEY


def _images(n=10, h=4, w=3, c=2, seed=0):
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)


def _craft(path, pixels, shape, metadata=True, label=None):
    """Write a file by hand (bypassing write_dataset's own checks)."""
    columns = {"pixels": pixels, "source_id": pa.array(["x"] * len(pixels))}
    if label is not None:
        columns["label"] = label
    table = pa.table(columns)
    if metadata:
        meta = {"format": FORMAT, "shape": list(shape), "kind": "images"}
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)
    return path


def _fsl(values, width):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ravel(values).astype(np.float32)), width)


def test_round_trip_schema_and_metadata(tmp_path):
    images = _images()
    path = write_dataset(tmp_path / "d.parquet", images, source_id="src", label=np.arange(10) % 3,
                         classes=["a", "b", "c"], provenance={"seed": 7}, rows_per_group=4)
    pixels, labels, meta = read_pixels(path)
    np.testing.assert_array_equal(pixels.reshape(images.shape), images)
    np.testing.assert_array_equal(labels, np.arange(10) % 3)
    assert meta["shape"] == [4, 3, 2] and meta["channels"] == "rgb" and meta["classes"] == ["a", "b", "c"]
    assert meta["provenance"] == {"seed": 7}
    schema = pq.read_schema(path)
    assert schema.field("pixels").type == pa.list_(pa.float32(), 24)
    assert schema.field("row").type == pa.int32() and schema.field("label").type == pa.int64()
    file = pq.ParquetFile(path)
    assert file.num_row_groups == 3
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    report = validate(path)
    assert (report["rows"], report["shards"], report["shape"]) == (10, 3, (4, 3, 2))


def test_single_row_group_read_is_zero_copy_and_load_data_copies(tmp_path):
    path = write_dataset(tmp_path / "d.parquet", _images(), source_id="s")
    pixels, _, _ = read_pixels(path)
    assert pixels.dtype == np.float32 and pixels.flags.c_contiguous
    assert not pixels.flags.writeable  # a view of the decoded Arrow buffer, no copy
    data = load_data({"source": str(path)})
    assert data.X_train.dtype == np.float64 and data.X_train.flags.writeable
    assert data.meta["image_shape"] == (4, 3, 2) and data.y_train is None


def test_shards_across_a_directory(tmp_path):
    a, b = _images(10, seed=1), _images(5, seed=2)
    write_dataset(tmp_path / "a.parquet", a, source_id="a", rows_per_group=4)
    write_dataset(tmp_path / "b.parquet", b, source_id="b", rows_per_group=4)
    shards = list(iter_shards(tmp_path))
    assert [i for i, _ in shards] == [0, 1, 2, 3, 4]
    assert [len(x) for _, x in shards] == [4, 4, 2, 4, 1]
    assert all(not x.flags.writeable for _, x in shards)
    whole, _, _ = read_pixels(tmp_path)
    np.testing.assert_array_equal(np.concatenate([x for _, x in shards]), whole)
    np.testing.assert_array_equal(whole[10:].reshape(b.shape), b)
    assert len(shard_index(tmp_path)) == 5
    np.testing.assert_array_equal(read_shard(tmp_path, 3), b[:4].reshape(4, -1))
    with pytest.raises(ValueError, match="shard index 9 out of range.*5 shards"):
        read_shard(tmp_path, 9)


def test_sample_patches_are_the_image_windows():
    images = [np.random.default_rng(k).random((20 + k, 30, 1), dtype=np.float32) for k in range(3)]
    patches, positions = sample_patches(images, 5, 200, seed=3)
    assert patches.shape == (200, 5, 5, 1) and positions.shape == (200, 3)
    for p, (k, r, c) in zip(patches, positions):
        np.testing.assert_array_equal(p, images[k][r:r + 5, c:c + 5])
    again, _ = sample_patches(images, 5, 200, seed=3)
    np.testing.assert_array_equal(patches, again)
    assert set(positions[:, 0]) == {0, 1, 2}
    with pytest.raises(ValueError, match=r"smaller than size=25"):
        sample_patches(images, 25, 10, 0)


def test_write_patches_is_reproducible_and_preprocessed(tmp_path):
    a = write_patches(tmp_path / "a.parquet", "camera,moon", size=6, count=300, seed=1,
                      preprocessing=["ufldl_normalize"])
    b = write_patches(tmp_path / "b.parquet", "camera,moon", size=6, count=300, seed=1,
                      preprocessing=["ufldl_normalize"])
    assert a.read_bytes() == b.read_bytes()
    pixels, _, meta = read_pixels(a)
    assert pixels.shape == (300, 36) and 0.1 - 1e-6 <= pixels.min() and pixels.max() <= 0.9 + 1e-6
    assert meta["preprocessing"][0]["name"] == "ufldl_normalize" and meta["kind"] == "patches"
    assert meta["provenance"]["images"] == ["camera", "moon"]
    ids = pq.read_table(a, columns=["source_id"]).column(0).to_pylist()
    assert set(ids) == {"camera", "moon"}
    data = load_data({"source": str(a)})
    assert data.meta["preprocessing"][0]["name"] == "ufldl_normalize"


def test_colour_sources_and_source_errors():
    named = load_images("chelsea,china", colour=True)
    assert [n for n, _ in named] == ["chelsea", "china"] and named[0][1].shape == (300, 451, 3)
    assert load_images("astronaut")[0][1].shape == (512, 512, 1)  # grey conversion
    with pytest.raises(ValueError, match=r"'camera' is a grey image but --colour"):
        load_images("camera", colour=True)
    with pytest.raises(ValueError, match=r"unknown image source 'lena'.*Shipped"):
        load_images("lena")


def test_labelled_folder_and_builtins(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (6, 5), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    out = write_images(tmp_path / "out" / "pets.parquet", str(tmp_path))
    data = load_data({"source": str(out)})
    assert data.X_train.shape == (6, 30) and list(data.y_train) == [0, 0, 0, 1, 1, 1]
    assert data.meta["class_names"] == ["cat", "dog"] and data.meta["image_shape"] == (6, 5, 1)
    Image.fromarray(np.zeros((7, 5), np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png: image is \(7, 5\).*resize"):
        labelled_images(str(tmp_path))
    images, labels, _, classes = labelled_images("lfw")
    assert images.shape == (200, 25, 25, 1) and classes == ["non-face", "face"] and labels.sum() == 100


# ---- validation: every error names the file, the column and the fix ----

def test_wrong_column_type(tmp_path):
    path = _craft(tmp_path / "t.parquet", pa.array([[0.5] * 4, [0.1] * 4], pa.list_(pa.float64())), (2, 2, 1))
    with pytest.raises(ValueError, match=r"t\.parquet: column 'pixels' has type list<element: double>; "
                                         r"expected fixed_size_list<float32>\[4\].*re-create"):
        validate(path)


def test_tensor_size_disagrees_with_metadata(tmp_path):
    path = _craft(tmp_path / "s.parquet", _fsl(np.zeros((2, 64)), 64), (8, 8, 3))
    with pytest.raises(ValueError, match=r"s\.parquet: column 'pixels' holds 64 values per row but the "
                                         r"metadata shape \(8, 8, 3\) needs 192"):
        load_data({"source": str(path)})


def test_nan_pixels(tmp_path):
    values = np.zeros((5, 4))
    values[3, 1] = np.nan
    values[4, 0] = np.inf
    path = _craft(tmp_path / "n.parquet", _fsl(values, 4), (2, 2, 1))
    with pytest.raises(ValueError, match=r"n\.parquet: column 'pixels' has 2 NaN/inf values in 2 rows "
                                         r"\(first at row 3\)"):
        validate(path)
    with pytest.raises(ValueError, match=r"first at row 3"):
        read_pixels(path)


def test_empty_dataset(tmp_path):
    path = _craft(tmp_path / "e.parquet", _fsl(np.zeros((0, 4)), 4), (2, 2, 1))
    with pytest.raises(ValueError, match=r"e\.parquet: the dataset is empty \(0 rows in column 'pixels'\)"):
        validate(path)
    with pytest.raises(ValueError, match=r"needs \(n >= 1, h, w, c\)"):
        write_dataset(tmp_path / "x.parquet", np.zeros((0, 2, 2, 1)), source_id="s")


def test_shapes_differ_across_files(tmp_path):
    write_dataset(tmp_path / "a.parquet", _images(h=4), source_id="a")
    write_dataset(tmp_path / "b.parquet", _images(h=5), source_id="b")
    with pytest.raises(ValueError, match=r"b\.parquet: column 'pixels' has shape \(5, 3, 2\) but .*a\.parquet "
                                         r"has \(4, 3, 2\); all files of a dataset need one shape"):
        load_data({"source": str(tmp_path)})


def test_truncated_file(tmp_path):
    path = write_dataset(tmp_path / "c.parquet", _images(), source_id="c")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"c\.parquet: not a readable Parquet file .*truncated or corrupt"):
        validate(path)


def test_missing_metadata_and_bad_label_type(tmp_path):
    path = _craft(tmp_path / "m.parquet", _fsl(np.zeros((2, 4)), 4), (2, 2, 1), metadata=False)
    with pytest.raises(ValueError, match=r"m\.parquet: no 'sweepnet' metadata"):
        validate(path)
    path = _craft(tmp_path / "l.parquet", _fsl(np.zeros((2, 4)), 4), (2, 2, 1), label=pa.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"l\.parquet: column 'label' has type double; expected int64"):
        validate(path)


def test_image_dataset_rejects_tabular_columns(tmp_path):
    path = write_dataset(tmp_path / "d.parquet", _images(), source_id="s")
    with pytest.raises(ValueError, match=r"features 'pixels' and target 'label'"):
        load_data({"source": str(path), "target": "kind"})


def test_whitened_images_have_flat_spectrum_and_fixed_variance():
    from pipeline.datasets.sources import whiten_image

    (_, camera), = load_images("camera")
    white = whiten_image(camera)
    assert white.shape == camera.shape and abs(white.mean()) < 1e-4
    np.testing.assert_allclose(white.var(), 0.1, rtol=1e-3)
    # natural images: power falls ~1/f^2; whitened: low vs mid frequency power ratio near 1
    def band_ratio(img):
        power = np.abs(np.fft.fft2(img[..., 0])) ** 2
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(512), np.fft.fftfreq(512), indexing="ij"))
        return power[(f > 0.02) & (f < 0.04)].mean() / power[(f > 0.2) & (f < 0.3)].mean()
    assert band_ratio(camera) > 100 and band_ratio(white) < 10  # measured: 267 and 5.2
