"""Payloads compressed on the wire: a list of numeric arrays as one deflated byte array.

Flower carries arrays as they are (``.npy`` bytes in an ``ArrayRecord``); images with
few intensity levels and integer labels compress several times over with deflate
(``zlib``, the codec of PNG), so the synthetic exchange sends its payloads as two arrays:

* a header, ``int64`` ``(2 + 5 * k,)``: :data:`MAGIC`, the number of arrays ``k``, and
  per array a dtype code (:data:`DTYPE_CODES`) and four dimensions (unused ones -1);
* the deflated concatenation of the ``k`` arrays' C-order bytes, ``uint8`` ``(M,)``.

:func:`inflate` is the only way back: it reads the header, refuses announced sizes over
its bound before inflating anything (a small blob cannot become a huge allocation), and
checks that the blob inflates to exactly the announced bytes.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

MAGIC = 0x46534446  # "FSDF": flower-synth deflated
COMPRESSIONS = ("deflate", "none")
DTYPE_CODES = {1: np.dtype(np.uint8), 2: np.dtype(np.int32), 3: np.dtype(np.float16)}
MAX_DIMS = 4
MAX_ARRAYS = 16
# zlib's fastest level: on 16-level images with soft labels 15 % larger than level 6's
# output in a quarter of its time (a server deflates every client's download each round)
LEVEL = 1


class DeflateError(ValueError):
    """A deflated payload is malformed; the message says how."""


def check_compression(compression: str) -> None:
    """``ValueError`` naming the choices unless ``compression`` is one of
    :data:`COMPRESSIONS`."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose one of {COMPRESSIONS}")


def deflate(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` (``uint8``, ``int32`` or ``float16``, at most four dimensions) as
    ``[header, blob]`` (module docstring)."""
    codes = {dtype: code for code, dtype in DTYPE_CODES.items()}
    if not 0 < len(arrays) <= MAX_ARRAYS:
        raise ValueError(f"deflate carries 1 to {MAX_ARRAYS} arrays, got {len(arrays)}")
    header = [MAGIC, len(arrays)]
    for array in arrays:
        if array.dtype not in codes or array.ndim > MAX_DIMS:
            raise ValueError(
                f"deflate carries uint8, int32 or float16 arrays of at most {MAX_DIMS} "
                f"dimensions, got {array.dtype} {array.shape}"
            )
        header += [codes[array.dtype], *array.shape, *[-1] * (MAX_DIMS - array.ndim)]
    raw = b"".join(np.ascontiguousarray(array).tobytes() for array in arrays)
    blob = np.frombuffer(zlib.compress(raw, LEVEL), dtype=np.uint8)
    return [np.asarray(header, dtype=np.int64), blob]


def is_deflated(arrays: Sequence[np.ndarray]) -> bool:
    """Whether ``arrays`` is a :func:`deflate` payload (a 1-D ``int64`` header that
    starts with :data:`MAGIC`, and a blob)."""
    if len(arrays) != 2:
        return False
    header = arrays[0]
    return header.dtype == np.int64 and header.ndim == 1 and len(header) >= 2 and header[0] == MAGIC


def inflate(arrays: Sequence[np.ndarray], max_bytes: int) -> list[np.ndarray]:
    """The arrays of a :func:`deflate` payload.

    Raises:
        DeflateError: a malformed header (unknown dtype code, negative or missing
            dimensions), more than ``max_bytes`` announced, a blob that is not ``uint8``
            or does not inflate to exactly the announced bytes.
    """
    header, blob = arrays
    count = int(header[1])
    if not 0 < count <= MAX_ARRAYS or len(header) != 2 + (MAX_DIMS + 1) * count:
        raise DeflateError(f"deflated payload: header of {len(header)} entries for {count} arrays")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise DeflateError(
            f"deflated payload: blob must be 1-D uint8, got {blob.dtype} {blob.shape}"
        )
    layouts = []
    for entry in header[2:].reshape(count, MAX_DIMS + 1):
        code, dims = int(entry[0]), [int(d) for d in entry[1:]]
        used = [d for d in dims if d != -1]
        if (
            code not in DTYPE_CODES
            or any(d < 0 for d in used)
            or dims[len(used) :].count(-1) != (MAX_DIMS - len(used))
        ):
            raise DeflateError(f"deflated payload: bad array entry {entry.tolist()} in the header")
        layouts.append((DTYPE_CODES[code], tuple(used)))
    sizes = [math.prod(shape) * dtype.itemsize for dtype, shape in layouts]
    total = sum(sizes)
    if total > max_bytes:
        raise DeflateError(f"deflated payload announces {total} bytes; at most {max_bytes} allowed")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob.tobytes(), total + 1)
    except zlib.error as error:
        raise DeflateError(f"deflated payload does not inflate: {error}") from None
    if len(raw) != total or not inflater.eof or inflater.unconsumed_tail:
        raise DeflateError(f"deflated payload: announced {total} bytes, the blob holds others")
    out, offset = [], 0
    for (dtype, shape), size in zip(layouts, sizes, strict=True):
        out.append(
            np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
            .reshape(shape)
            .copy()
        )
        offset += size
    return out
