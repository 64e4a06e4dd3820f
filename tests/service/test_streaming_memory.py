"""Every result writer streams: its output starts before its input ends, and the memory it
holds is bounded by the batch, not by the rows (issue 10, item 14)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest

from skyvault.catalog.metadata import ColumnMeta
from skyvault.formats.output import OUTPUT_FORMATS, OutputFormat, WriteOptions

BATCH_ROWS = 65_536
BATCHES = 16  # 1,048,576 rows
SCHEMA = pa.schema(
    [("id", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()), ("mag", pa.float32())]
)
FIELDS = [ColumnMeta.from_arrow(f) for f in SCHEMA]


def _batches(count: int, pulled: list[int], rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """``count`` Tycho-2-like batches of ``rows``, made as they are asked for; ``pulled``
    counts them."""
    rng = np.random.default_rng(3)
    for i in range(count):
        pulled[0] += 1
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(np.arange(i * rows, (i + 1) * rows, dtype=np.int64)),
                pa.array(rng.uniform(0, 360, rows)),
                pa.array(rng.uniform(-90, 90, rows)),
                pa.array(rng.uniform(0, 15, rows).astype(np.float32)),
            ],
            schema=SCHEMA,
        )


def _write(fmt: OutputFormat, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    return fmt.write(batches, FIELDS, SCHEMA, lambda: False, [], WriteOptions())


STREAMING = [f for f in OUTPUT_FORMATS if f.streams]


@pytest.mark.parametrize("fmt", STREAMING, ids=[f.name for f in STREAMING])
def test_output_starts_before_the_rows_end(fmt: OutputFormat) -> None:
    pulled = [0]
    # How many batches the writer had read when each chunk came out.
    seen = [pulled[0] for _ in _write(fmt, _batches(6, pulled))]
    assert pulled[0] == 6
    assert sum(1 for n in seen if n < 6) >= 2, seen
    assert any(0 < n < 6 for n in seen), seen


def _traced(fmt: OutputFormat, batches: int, rows: int) -> tuple[int, int]:
    """Bytes written and peak Python-allocated memory (numpy and Arrow-from-numpy buffers,
    encoded rows, chunks) while ``fmt`` writes ``batches`` batches."""
    pulled = [0]
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in _write(fmt, _batches(batches, pulled, rows)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pulled[0] == batches
    return size, peak


@pytest.mark.slow
@pytest.mark.parametrize("fmt", STREAMING, ids=[f.name for f in STREAMING])
def test_writing_a_million_rows_holds_memory_for_a_batch_not_for_the_result(
    fmt: OutputFormat,
) -> None:
    # The text forms make a Python object per row, which tracemalloc makes slow: smaller
    # batches for them (1M rows for the binary ones).
    rows = {"json": 4096, "csv": 8192, "tsv": 8192}.get(fmt.name, BATCH_ROWS)
    small_size, small_peak = _traced(fmt, BATCHES // 4, rows)
    size, peak = _traced(fmt, BATCHES, rows)
    assert size > 3 * small_size
    # Four times the rows: the same memory (a writer holding the result would need 4x),
    # and less than the result itself.
    assert peak < 1.25 * small_peak + 1e6, f"{peak / 1e6:.1f} MB vs {small_peak / 1e6:.1f} MB"
    assert peak < size
