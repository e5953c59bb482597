"""CSV in, CSV out, the input's text kept: each output line is the input line, then the predictions.

Formatting numbers is most of the cost of writing a CSV (Arrow's writer: ~0.9 s of CPU for
1M rows of 14 floats, measured here; pandas' `to_csv` ~7 s). The values of the input columns
are already text in the input, so they are copied as they are, and only the predictions are
formatted (Arrow's shortest round-trip form, as its writer would). Blocks of whole lines are
read, parsed and predicted in a small thread pool, in order, a few at a time: Arrow parses and
joins without holding the GIL, so reading, predicting and writing overlap on two cores, and
memory stays bounded whatever the file's size.

This needs every record on one line: `applies()` checks that the data holds no quote
character and no carriage return. A block where Arrow finds a different number of records
than lines (blank lines) is written from its parsed values instead.
"""

from __future__ import annotations

import collections
import csv
import io
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from mlflow_lab.errors import LabError
from mlflow_lab.scoring.errors import RefusedRows
from mlflow_lab.scoring.tables import ModelColumns, csv_header, explain_csv_error, table_format

BLOCK_BYTES = 4 << 20  # ~50k rows of 13 numbers: few calls to the model, bounded memory
IN_FLIGHT = 4  # blocks read ahead of the writer (memory: ~4 x 3 x BLOCK_BYTES)
THREADS = 2  # parse and predict blocks; the calling thread writes
Predict = Callable[[pa.RecordBatch], dict[str, np.ndarray]]  # output columns; raises RefusedRows


def applies(source: Path, output: Path) -> bool:
    if table_format(source) != "csv" or table_format(output) != "csv":
        return False
    # Read in chunks, not mapped: the pages of a mapped file count towards the job's memory.
    with source.open("rb") as handle:
        if not handle.readline().endswith(b"\n"):
            return False
        chunk = bytearray(BLOCK_BYTES)
        while size := handle.readinto(chunk):
            view = chunk[:size] if size < len(chunk) else chunk
            if b'"' in view or b"\r" in view:
                return False
    return True


def _blocks(handle: BinaryIO):
    """Successive blocks of whole lines, each ending with a newline."""
    rest = b""
    while chunk := handle.read(BLOCK_BYTES):
        block = rest + chunk
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        rest = block[cut:]
        yield block[:cut]
    if rest:
        yield rest + b"\n"


class _Block:
    def __init__(self, source: Path, names: list[str], columns: ModelColumns, keep: tuple[str, ...], predict: Predict):
        self.source, self.names, self.columns, self.predict = source, names, columns, predict
        self.read_options = pa_csv.ReadOptions(column_names=names, use_threads=False)
        self.convert_options = pa_csv.ConvertOptions(column_types={**columns.types, **{k: pa.string() for k in keep}})

    def score(self, block: bytes) -> tuple[int, list[str], pa.Buffer | bytes]:
        """(rows, prediction column names, output text) of one block; RefusedRows carries its row count."""
        lines = block.count(b"\n")
        try:
            table = pa_csv.read_csv(pa.py_buffer(block), read_options=self.read_options, convert_options=self.convert_options)
        except pa.ArrowInvalid as exc:
            raise explain_csv_error(self.source, self.names, self.columns, exc) from None
        if table.num_rows == 0:
            return 0, [], b""
        try:
            predictions = self.predict(table.combine_chunks().to_batches()[0])
        except RefusedRows as exc:
            raise RefusedRows(str(exc), table.num_rows) from None
        if table.num_rows != lines:  # blank lines: write this block from its parsed values
            with_predictions = table
            for name, values in predictions.items():
                with_predictions = with_predictions.append_column(name, pa.array(values))
            out = io.BytesIO()
            pa_csv.write_csv(with_predictions, out, pa_csv.WriteOptions(include_header=False))
            return table.num_rows, list(predictions), out.getvalue()
        text = [pc.cast(pa.array(values), pa.string()) for values in predictions.values()]
        return lines, list(predictions), _append(block, lines, text)


def _append(block: bytes, lines: int, columns: list[pa.Array]) -> pa.Buffer:
    """`line,value,...\\n` for each line of `block` (without its newline) and each row of `columns`."""
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
    offsets = np.empty(lines + 1, dtype=np.int64)
    offsets[0], offsets[1:] = 0, ends + 1
    with_newlines = pa.LargeBinaryArray.from_buffers(pa.large_binary(), lines, [None, pa.py_buffer(offsets), pa.py_buffer(block)])
    bare = pc.binary_slice(with_newlines, 0, -1)
    # The newline goes on the (short) predictions, so the long lines are copied once more, not twice.
    binary = [c.cast(pa.large_binary()) for c in columns]
    binary[-1] = pc.binary_join_element_wise(binary[-1], pa.scalar(b"", pa.large_binary()), pa.scalar(b"\n", pa.large_binary()))
    joined = pc.binary_join_element_wise(bare, *binary, pa.scalar(b",", pa.large_binary()))
    _, offsets_buffer, data = joined.buffers()
    bounds = np.frombuffer(offsets_buffer, dtype=np.int64)[joined.offset : joined.offset + lines + 1]
    return data.slice(int(bounds[0]), int(bounds[-1] - bounds[0]))


def score(
    source: Path, output: Path, columns: ModelColumns, keep: tuple[str, ...], predict: Predict, progress: Callable[[int], object]
) -> int:
    """Score `source` into `output` (both CSV, `applies()` true); returns the row count."""
    names = csv_header(source)
    columns.check_names(str(source), names, keep)
    scorer = _Block(source, names, columns, keep, predict)
    rows = 0
    with (
        source.open("rb") as handle,
        output.open("wb") as out,
        ThreadPoolExecutor(THREADS, thread_name_prefix="score") as pool,
    ):
        handle.readline()  # the header, read above
        pending: collections.deque[Future] = collections.deque()
        blocks = _blocks(handle)

        def collect() -> None:
            nonlocal rows
            try:
                count, outputs, text = pending.popleft().result()
            except RefusedRows as exc:
                reason, count = exc.args
                raise LabError(f"{source}, rows {rows + 1}-{rows + count}: {reason}") from None
            if rows == 0 and outputs:
                header = io.StringIO()
                csv.writer(header, lineterminator="\n").writerow([*names, *outputs])
                out.write(header.getvalue().encode())
            out.write(text)
            rows += count
            progress(count)

        try:
            for block in blocks:
                pending.append(pool.submit(scorer.score, block))
                if len(pending) >= IN_FLIGHT:
                    collect()
            while pending:
                collect()
        finally:
            for future in pending:
                future.cancel()
    return rows
