"""Arrow arrays and tables built from their buffers, and read back into numpy, without pyarrow's
`to_numpy`, `pa.array`, `pa.table` or `pa.scalar`: pyarrow imports pandas in each of them (to
ask whether the value is a pandas object), ~0.6 s of a process that never needed it. The export and
the dedup pass both paid it; tests check that neither loads pandas."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa


def int64s(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of an integer Arrow array or chunked array without nulls, as int64 (a view of
    the Arrow buffer when it holds int64 in one chunk)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = []
    for c in chunks:
        if not len(c):
            continue
        if c.null_count:
            raise ValueError("int64s: the column holds nulls")
        if c.type != pa.int64():
            c = c.cast(pa.int64())
        parts.append(np.frombuffer(c.buffers()[1], dtype=np.int64, count=len(c), offset=c.offset * 8))
    if not parts:
        return np.zeros(0, np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def arrow_of(values: np.ndarray) -> pa.Array:
    """A numpy array of numbers as an Arrow array (no copy)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def float64s(col: pa.Array | pa.ChunkedArray, null: float = float("nan")) -> np.ndarray:
    """The values of a numeric Arrow array or chunked array as float64, nulls as `null` (the
    validity bits read in numpy: even `pc.fill_null` imports pandas, through `pa.scalar`)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = []
    for c in chunks:
        if not len(c):
            continue
        if c.type != pa.float64():
            c = c.cast(pa.float64())
        vals = np.frombuffer(c.buffers()[1], dtype=np.float64, count=len(c), offset=c.offset * 8)
        if c.null_count:
            bits = np.unpackbits(np.frombuffer(c.buffers()[0], np.uint8), bitorder="little")
            vals = np.where(bits[c.offset:c.offset + len(c)].astype(bool), vals, null)
        parts.append(vals)
    if not parts:
        return np.zeros(0, np.float64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def mask_of(values: np.ndarray) -> pa.Array:
    """A numpy array of booleans as an Arrow boolean array (for `filter`)."""
    values = np.asarray(values, dtype=bool)
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))])


def strings_of(values: Sequence[str | None], kind: pa.DataType | None = None) -> pa.Array:
    """Python strings (None for null) as an Arrow string (or `kind`: large_string) array."""
    kind = kind or pa.string()
    data = [b"" if v is None else v.encode() for v in values]
    width = np.int64 if pa.types.is_large_string(kind) else np.int32
    offsets = np.cumsum([0, *map(len, data)], dtype=width)
    valid = np.array([v is not None for v in values], dtype=bool)
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(kind, len(values), [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


def table_of(columns: dict, schema: pa.Schema | None = None) -> pa.Table:
    """A table of numpy arrays (numbers, booleans), lists of str and Arrow arrays, built from
    buffers (`arrow_of`, `mask_of`, `strings_of`); with `schema`, each column cast to its type."""
    def one(v) -> pa.Array:
        if isinstance(v, np.ndarray):
            return mask_of(v) if v.dtype == bool else arrow_of(v)
        if isinstance(v, (pa.Array, pa.ChunkedArray)):
            return v
        return strings_of(v)

    cols = {name: one(v) for name, v in columns.items()}
    if schema is not None:
        return pa.Table.from_arrays([cols[f.name].cast(f.type) for f in schema], schema=schema)
    return pa.Table.from_arrays(list(cols.values()), names=list(cols))
