"""Dataset loaders: IDX files in every supported layout, and clear errors when missing."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from flower_synth.data import sources
from flower_synth.data.idx import read_idx
from flower_synth.data.sources import DatasetNotFoundError, load_dataset


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_idx_dataset(folder: Path, n_train: int, n_test: int, compress: bool) -> dict:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for stem, array in arrays.items():
        write_idx(folder / stem, array, compress)
    return arrays


@pytest.fixture
def no_default_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the loaders' default folders at empty temporary ones."""
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    monkeypatch.setattr(sources, "DEFAULT_DOWNLOAD_ROOT", tmp_path / "cache")
    return tmp_path


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "x-idx3-ubyte", array, compress)
    loaded = read_idx(tmp_path / ("x-idx3-ubyte.gz" if compress else "x-idx3-ubyte"))
    assert loaded.dtype == np.uint8
    assert np.array_equal(loaded, array)


def test_read_idx_rejects_truncated_file(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros((4, 5)), compress=False)
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "x")


def test_fashion_mnist_from_torchvision_layout(no_default_dirs: Path) -> None:
    arrays = write_idx_dataset(no_default_dirs / "data" / "FashionMNIST" / "raw", 30, 12, True)
    train, test = load_dataset("fashion-mnist", no_default_dirs / "data")
    assert train.images.shape == (30, 1, 28, 28) and test.images.shape == (12, 1, 28, 28)
    assert np.array_equal(train.images[:, 0], arrays["train-images-idx3-ubyte"])
    assert np.array_equal(test.labels, arrays["t10k-labels-idx1-ubyte"])


def test_mnist_from_uncompressed_files_in_data_dir(no_default_dirs: Path) -> None:
    write_idx_dataset(no_default_dirs / "flat", 20, 10, compress=False)
    train, test = load_dataset("mnist", no_default_dirs / "flat")
    assert (len(train), len(test)) == (20, 10)


def test_missing_fashion_mnist_names_package_paths_and_download(no_default_dirs: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion-mnist", no_default_dirs / "nowhere")
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(no_default_dirs / "debian") in message
    assert str(no_default_dirs / "nowhere" / "FashionMNIST" / "raw") in message
    assert "download=true" in message and "data-dir" in message


def test_missing_cifar10_names_layout_and_download(no_default_dirs: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py.*download=true"):
        load_dataset("cifar10", no_default_dirs / "nowhere")


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(ValueError, match="choose one of fashion-mnist, mnist, cifar10, digits"):
        load_dataset("imagenet")


def test_digits_are_uint8_images_with_a_fixed_balanced_test_split() -> None:
    train, test = load_dataset("digits")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.dtype == np.uint8 and train.images.max() == 255
    assert test.class_counts().min() >= 35
    again = load_dataset("digits")[1]
    assert np.array_equal(test.labels, again.labels)


def test_real_fashion_mnist_from_debian_package() -> None:
    if not (sources.DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's dataset-fashion-mnist (make test does)")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    train, test = load_dataset("fashion-mnist")
    assert train.images.shape == (60_000, 1, 28, 28)
    assert test.images.shape == (10_000, 1, 28, 28)
    assert test.class_counts().tolist() == [1000] * 10
