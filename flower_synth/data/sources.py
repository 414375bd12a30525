"""Loaders for the datasets the app knows, all offline-first.

* ``fashion-mnist``: IDX files from Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``), from ``data-dir`` itself, or from
  torchvision's ``<data-dir>/FashionMNIST/raw/`` layout; torchvision downloads it
  when ``download`` is set.
* ``mnist``: the same, with torchvision's ``<data-dir>/MNIST/raw/`` layout.
* ``cifar10``: torchvision's ``<data-dir>/cifar-10-batches-py`` layout.
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), always available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flower_synth.data.idx import read_idx
from flower_synth.data.image_dataset import ImageDataset

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DOWNLOAD_ROOT = Path.home() / ".cache" / "flower-synth" / "data"
DATASETS = ("fashion-mnist", "mnist", "cifar10", "digits")

# Dataset name -> (torchvision class name, folder torchvision uses under its root).
_IDX_DATASETS = {"fashion-mnist": ("FashionMNIST", "FashionMNIST"), "mnist": ("MNIST", "MNIST")}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGITS_TEST_FRACTION = 0.2


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked; the message says how to get them."""


def load_dataset(
    name: str, data_dir: str | Path | None = None, download: bool = False
) -> tuple[ImageDataset, ImageDataset]:
    """Load a dataset as ``(train, test)``.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: folder holding the files (empty or ``None``: the defaults above).
        download: let torchvision download the dataset into ``data_dir`` (or
            ``~/.cache/flower-synth/data``) when it is not found locally. Needs internet.

    Raises:
        DatasetNotFoundError: the files are missing; the message names the package,
            the paths searched and the download option.
        ValueError: unknown dataset name.
    """
    data_dir = Path(data_dir).expanduser() if data_dir else None
    if name in _IDX_DATASETS:
        return _load_idx_dataset(name, data_dir, download)
    if name == "cifar10":
        return _load_cifar10(data_dir, download)
    if name == "digits":
        return _load_digits()
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _idx_search_dirs(name: str, data_dir: Path | None) -> list[Path]:
    folder = _IDX_DATASETS[name][1]
    roots = [data_dir] if data_dir else []
    if name == "fashion-mnist":
        roots.append(DEBIAN_FASHION_MNIST_DIR)
    roots.append(DEFAULT_DOWNLOAD_ROOT)
    dirs: list[Path] = []
    for root in roots:
        dirs += [root, root / folder / "raw"]
    return dirs


def _find_idx_file(stem: str, dirs: list[Path]) -> Path | None:
    for directory in dirs:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                return candidate
    return None


def _load_idx_dataset(
    name: str, data_dir: Path | None, download: bool
) -> tuple[ImageDataset, ImageDataset]:
    dirs = _idx_search_dirs(name, data_dir)
    if download and _find_idx_file(_IDX_FILES["train"][0], dirs) is None:
        _torchvision_download(name, data_dir or DEFAULT_DOWNLOAD_ROOT)
    splits = []
    for split in ("train", "test"):
        paths = [_find_idx_file(stem, dirs) for stem in _IDX_FILES[split]]
        if None in paths:
            raise DatasetNotFoundError(_missing_message(name, dirs))
        images, labels = (read_idx(p) for p in paths)
        splits.append(ImageDataset(images[:, None, :, :], labels.astype(np.int64), 10))
    return splits[0], splits[1]


def _torchvision_download(name: str, root: Path) -> None:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, _IDX_DATASETS[name][0])
    for train in (True, False):
        dataset_class(root=str(root), train=train, download=True)


def _missing_message(name: str, dirs: list[Path]) -> str:
    searched = "\n  ".join(str(d) for d in dirs)
    hint = (
        "Install Debian's package with `apt-get install dataset-fashion-mnist`, "
        if name == "fashion-mnist"
        else ""
    )
    return (
        f"{name} not found: no IDX files (train-images-idx3-ubyte[.gz], ...) in\n  {searched}\n"
        f"{hint}point the run-config key `data-dir` at a folder holding the IDX files "
        f"(or torchvision's layout `<data-dir>/{_IDX_DATASETS[name][1]}/raw/`), or set "
        f"`download=true` to let torchvision download it (needs internet)."
    )


def _load_cifar10(data_dir: Path | None, download: bool) -> tuple[ImageDataset, ImageDataset]:
    import torchvision.datasets

    root = data_dir or DEFAULT_DOWNLOAD_ROOT
    splits = []
    for train in (True, False):
        try:
            cifar = torchvision.datasets.CIFAR10(root=str(root), train=train, download=download)
        except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
            raise DatasetNotFoundError(
                f"cifar10 not found in {root / 'cifar-10-batches-py'} ({error}). Point the "
                f"run-config key `data-dir` at the folder that holds `cifar-10-batches-py/`, "
                f"or set `download=true` to let torchvision download it (needs internet)."
            ) from error
        images = np.ascontiguousarray(cifar.data.transpose(0, 3, 1, 2))
        splits.append(ImageDataset(images, np.asarray(cifar.targets, dtype=np.int64), 10))
    return splits[0], splits[1]


def _load_digits() -> tuple[ImageDataset, ImageDataset]:
    """scikit-learn's 8x8 digits, scaled from 0..16 to 0..255, split 80/20 by class.

    The split uses a fixed ``random_state`` so the global test set is part of the
    dataset's definition and identical across runs and seeds.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=0
    )
    return ImageDataset(x_train, y_train, 10), ImageDataset(x_test, y_test, 10)
