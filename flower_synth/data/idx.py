"""Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed.

torchvision's readers (``torchvision.datasets.mnist.read_image_file``) only open
uncompressed files; Debian's ``dataset-fashion-mnist`` ships the ``.gz`` files, so a
small reader that accepts both is kept here.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# Third byte of the IDX magic number -> numpy dtype (big-endian where it matters).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or uncompressed) into a numpy array.

    Raises:
        ValueError: if the header is not a valid IDX header or the payload size does
            not match the dimensions it declares.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise ValueError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes) but the file "
            f"holds {len(raw) - header_end} bytes of data; the file is truncated or corrupt"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header_end)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )
