"""Arrow IPC payloads of the v5 API: decoding inserts, encoding results (no gRPC here).

Every payload is a complete Arrow IPC *stream* (schema, record batches, end marker), as the
official client writes and reads them (reference/btrdb-v5.md, ArrowInsert/ArrowRawValues).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .errors import WrongArgs

TIME = pa.timestamp("ns", tz="UTC")
VALUES_SCHEMA = pa.schema([pa.field("time", TIME, nullable=False),
                           pa.field("value", pa.float64(), nullable=False)])
WINDOWS_SCHEMA = pa.schema([
    pa.field("time", TIME, nullable=False),
    pa.field("min", pa.float64(), nullable=False),
    pa.field("mean", pa.float64(), nullable=False),
    pa.field("max", pa.float64(), nullable=False),
    pa.field("count", pa.uint64(), nullable=False),
    pa.field("stddev", pa.float64(), nullable=False),
])


def decode_points(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(times int64 ns, values float64) from an insert payload: the first column is time
    (timestamp of any unit or zone, or integer ns), the second the value.

    Raises WrongArgs for anything else."""
    try:
        table = pa.ipc.open_stream(payload).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise WrongArgs(f"malformed Arrow payload: {exc}") from None
    if table.num_columns < 2:
        raise WrongArgs("Arrow payload needs a time and a value column")
    t, v = table.column(0), table.column(1)
    if t.null_count or v.null_count:
        raise WrongArgs("Arrow payload contains nulls")
    if t.type == TIME and v.type == pa.float64() and t.num_chunks == v.num_chunks == 1:
        # What the official client sends: the buffers as they are, no cast.
        return t.chunk(0).to_numpy().view(np.int64), v.chunk(0).to_numpy()
    try:
        if pa.types.is_timestamp(t.type):
            t = t.cast(pa.timestamp("ns")).cast(pa.int64())
        elif pa.types.is_integer(t.type):
            t = t.cast(pa.int64())
        else:
            raise WrongArgs(f"time column has type {t.type}, not a timestamp")
        v = v.cast(pa.float64())
    except pa.ArrowInvalid as exc:
        raise WrongArgs(f"Arrow payload cannot be converted: {exc}") from None
    return (t.to_numpy().astype(np.int64, copy=False),
            v.to_numpy().astype(np.float64, copy=False))


def read_template(payload: bytes) -> pa.Schema | None:
    """The schema of a template payload (empty means none). Raises WrongArgs."""
    if not payload:
        return None
    try:
        return pa.ipc.open_stream(payload).schema
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise WrongArgs(f"malformed Arrow template: {exc}") from None


def apply_template(table: pa.Table, template: pa.Schema | None) -> pa.Table:
    """Rename columns positionally to the template's names and cast to its types."""
    if template is None:
        return table
    if len(template) != table.num_columns:
        raise WrongArgs(f"template has {len(template)} columns, expected {table.num_columns}")
    try:
        cols = []
        for col, field in zip(table.columns, template):
            if pa.types.is_integer(field.type) and pa.types.is_timestamp(col.type):
                col = col.cast(pa.int64())
            cols.append(col.cast(field.type))
        return pa.Table.from_arrays(cols, schema=template)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise WrongArgs(f"cannot cast to the template: {exc}") from None


def points_table(t: np.ndarray, v: np.ndarray) -> pa.Table:
    return pa.Table.from_arrays([pa.array(t, TIME), pa.array(v, pa.float64())],
                                schema=VALUES_SCHEMA)


def multi_table(t: np.ndarray, columns: list[np.ndarray], names: list[str]) -> pa.Table:
    """time, then one float64 column per stream (NaN where it has no value)."""
    schema = pa.schema([pa.field("time", TIME, nullable=False)] +
                       [pa.field(n, pa.float64(), nullable=False) for n in names])
    return pa.Table.from_arrays([pa.array(t, TIME)] + [pa.array(c, pa.float64())
                                                       for c in columns], schema=schema)


def windows_table(w) -> pa.Table:
    """Table of a :class:`tsdb.Windows`."""
    return pa.Table.from_arrays(
        [pa.array(w.time, TIME), pa.array(w.min), pa.array(w.mean), pa.array(w.max),
         pa.array(w.count, pa.uint64()), pa.array(w.stddev)], schema=WINDOWS_SCHEMA)


def encode(table: pa.Table) -> bytes:
    """One complete IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
