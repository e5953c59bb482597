"""Chunked reading and writing of CSV and Parquet with Arrow, checked against a model's input schema.

Arrow's readers stream fixed-size blocks, so memory stays bounded whatever the file size,
and its CSV writer is an order of magnitude faster than `DataFrame.to_csv`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from mlflow.types import DataType, Schema

from mlflow_lab.errors import LabError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ARROW_TYPES = {
    DataType.double: pa.float64(),
    DataType.float: pa.float32(),
    DataType.long: pa.int64(),
    DataType.integer: pa.int32(),
    DataType.boolean: pa.bool_(),
    DataType.string: pa.string(),
    DataType.datetime: pa.timestamp("ns"),
    DataType.binary: pa.binary(),
}
# Arrow's streaming CSV reader parses ahead a number of blocks, so the block size sets the
# memory bound: measured here, 8 MB blocks held up to ~330 MB on a 10M-row file, 1 MB
# blocks ~43 MB at the same speed. 1 MB is ~12k rows of 13 numeric columns.
CSV_BLOCK_BYTES = 1 << 20


def table_format(path: str | Path) -> str:
    suffix = Path(str(path)).suffix.lower()
    if suffix not in FORMATS:
        raise LabError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv or .parquet.")
    return FORMATS[suffix]


@dataclass(frozen=True)
class ModelColumns:
    """What a model takes: its input columns and their Arrow types."""

    types: dict[str, pa.DataType]

    @classmethod
    def from_schema(cls, schema: Schema | None) -> ModelColumns:
        if schema is None or not schema.has_input_names():
            raise LabError("the model has no named input columns in its signature; batch scoring needs one.")
        # Columns of other types (arrays, objects) are read as text and left to MLflow to refuse.
        return cls(
            {
                str(spec.name): ARROW_TYPES.get(spec.type, pa.string()) if isinstance(spec.type, DataType) else pa.string()
                for spec in schema.inputs
            }
        )

    def check_names(self, source: str, names: list[str], keep: tuple[str, ...]) -> None:
        missing = [name for name in self.types if name not in names]
        if missing:
            raise LabError(f"{source} lacks column(s) {', '.join(missing)} that the model needs.")
        extra = [name for name in names if name not in self.types and name not in keep]
        if extra:
            raise LabError(
                f"{source} has column(s) {', '.join(extra)} that the model does not take "
                f"(remove them, or pass them through with --keep {extra[0]})."
            )
        missing_keep = [name for name in keep if name not in names]
        if missing_keep:
            raise LabError(f"{source} has no column(s) {', '.join(missing_keep)} to keep.")


def csv_header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise LabError(f"{path} is empty.")
    return header


def explain_csv_error(path: Path, names: list[str], columns: ModelColumns, error: pa.ArrowInvalid) -> LabError:
    match = re.search(r"In CSV column #(\d+): .*CSV conversion error to \w+: invalid value '(.*)'", str(error))
    if match:
        name = names[int(match[1])]
        return LabError(
            f"{path}: column {name!r} holds {match[2]!r}, which is not a valid {columns.types[name]} as the model expects."
        )
    return LabError(f"{path} could not be read as CSV: {error}")


def read_batches(path: Path, columns: ModelColumns, keep: tuple[str, ...], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of the input, model columns cast to the model's types; keep columns as they are."""
    if table_format(path) == "csv":
        names = csv_header(path)
        columns.check_names(str(path), names, keep)
        types = {**columns.types, **{name: pa.string() for name in keep}}  # kept columns pass through verbatim
        try:
            reader = pa_csv.open_csv(
                path,
                read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=names),
            )
            yield from reader
        except pa.ArrowInvalid as exc:
            raise explain_csv_error(path, names, columns, exc) from None
        return
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LabError(f"{path} could not be read as Parquet: {exc}") from None
    schema = parquet.schema_arrow
    columns.check_names(str(path), schema.names, keep)
    for name, wanted in columns.types.items():
        actual = schema.field(name).type
        if actual != wanted and not (pa.types.is_integer(actual) and pa.types.is_floating(wanted)):
            raise LabError(f"{path}: column {name!r} is {actual}, but the model expects {wanted}.")
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        yield batch.cast(pa.schema([(f.name, columns.types.get(f.name, f.type)) for f in batch.schema]))


def row_count_hint(path: Path) -> int | None:
    """Total rows when the format knows it up front (for the progress bar)."""
    return pq.ParquetFile(path).metadata.num_rows if table_format(path) == "parquet" else None


class TableWriter:
    """Writes tables to `path` in the format its suffix names."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.format = path, fmt
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        self._file: BinaryIO | None = None

    def _open(self, schema: pa.Schema):
        if self.format == "parquet":
            return pq.ParquetWriter(self.path, schema)
        # Arrow quotes every header name; write the header the way pandas and spreadsheets do.
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(schema.names)
        self._file = self.path.open("wb")
        self._file.write(header.getvalue().encode())
        return pa_csv.CSVWriter(self._file, schema, write_options=pa_csv.WriteOptions(include_header=False))

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = self._open(table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        for handle in (self._writer, self._file):
            if handle is not None:
                handle.close()
        self._writer = self._file = None
