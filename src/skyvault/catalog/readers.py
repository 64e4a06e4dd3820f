"""Input files for ingest: Parquet, CSV, ECSV, FITS binary tables and VOTable, read in batches.

Each reader exposes the Arrow schema, the column metadata the file itself carries (units,
UCDs, descriptions: including the column description astropy serialises as YAML in ECSV
headers, in Parquet schema metadata and in FITS COMMENT cards, read with astropy's own
``get_header_from_yaml``), the row count where the format knows it up front, and an iterator of
record batches.  Everything but VOTable streams in bounded memory; astropy's VOTable parser
reads a whole table, so VOTable inputs are expected to be modest (uploads, small catalogues).

A file whose content is not what its name says is refused before any row is read.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skyvault.errors import InputFormatError

__all__ = ["InputFile", "detect_format", "open_input"]

ColumnInfo = dict[str, Any]

_SUFFIXES = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".ecsv": "ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
}

_FORMAT_NAMES = {
    "parquet": "Parquet",
    "csv": "CSV",
    "ecsv": "ECSV",
    "fits": "FITS",
    "votable": "VOTable",
}


def detect_format(path: Path) -> str:
    """The format a file's name announces, checked against its first bytes."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    fmt = _SUFFIXES.get(suffix)
    if fmt is None:
        raise InputFormatError(
            f"cannot tell the format from the suffix {suffix or '(none)'!r}",
            file=str(path),
            hint="name inputs .parquet, .csv, .ecsv, .fits or .vot/.xml",
        )
    head = _head(path)
    sniffed = _sniff(head)
    if fmt == "csv" and sniffed == "ecsv":
        fmt = "ecsv"
    if sniffed is not None and sniffed != fmt and not (fmt == "ecsv" and sniffed == "csv"):
        raise InputFormatError(
            f"the name says {_FORMAT_NAMES[fmt]} but the content is {_FORMAT_NAMES[sniffed]}",
            file=str(path),
            hint="rename the file to match its content",
        )
    if sniffed is None and fmt in ("parquet", "fits", "votable"):
        raise InputFormatError(
            f"the name says {_FORMAT_NAMES[fmt]} but the content is not",
            file=str(path),
            hint="check that the file is complete and of the format its name says",
        )
    if fmt == "parquet" and not _parquet_footer_ok(path):
        raise InputFormatError(
            "the Parquet file is truncated (no footer)",
            file=str(path),
            hint="copy the file again; a Parquet file ends with its footer",
        )
    return fmt


def _head(path: Path, n: int = 512) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read(n)
        with path.open("rb") as fh:
            return fh.read(n)
    except FileNotFoundError:
        raise InputFormatError("no such file", file=str(path)) from None
    except OSError as exc:
        raise InputFormatError(f"cannot read it ({exc.strerror})", file=str(path)) from None


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<VOTABLE"):
        return "votable"
    if stripped.startswith(b"# %ECSV"):
        return "ecsv"
    if not head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the sample is still text.
        try:
            text = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if "\x00" in text:
        return None
    return "csv"


def _parquet_footer_ok(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() < 12:
            return False
        fh.seek(-4, 2)
        return fh.read(4) == b"PAR1"


class InputFile:
    """An input file, opened: schema, per-column metadata, row count, batch iterator."""

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schema: pa.Schema = pa.schema([])
        self.column_info: dict[str, ColumnInfo] = {}
        self.num_rows: int | None = None
        self.description: str | None = None

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``batch_rows`` rows with the given columns (all if None)."""
        raise NotImplementedError

    def fail(self, message: str, **where: Any) -> InputFormatError:
        return InputFormatError(message, file=str(self.path), **where)


class ParquetInput(InputFile):
    format = "parquet"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            with pq.ParquetFile(path) as handle:
                self.schema = handle.schema_arrow
                self.num_rows = handle.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise self.fail(f"not a readable Parquet file ({_short(exc)})") from None
        for field in self.schema:
            info = _field_metadata(field)
            if info:
                self.column_info[field.name] = info
        # astropy's Table.write keeps units and descriptions in the schema metadata.
        yaml_text = (self.schema.metadata or {}).get(_ASTROPY_PARQUET_KEY)
        if yaml_text is not None:
            header = _astropy_header(
                yaml_text.decode("utf-8", "replace").split("\n"), "Parquet", path
            )
            for name, info in _astropy_columns(header).items():
                self.column_info[name] = self.column_info.get(name, {}) | info
            self.description = _astropy_description(header)

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        wanted = list(columns) if columns is not None else None
        try:
            # Memory must not grow with the input: pre-buffering keeps whole column chunks
            # (of every row group, or the last one read) alive as long as the file is open,
            # so read one row group at a time, unbuffered, and hold the file only while reading.
            with pq.ParquetFile(self.path, pre_buffer=False) as handle:
                for group in range(handle.num_row_groups):
                    yield from handle.iter_batches(
                        batch_size=batch_rows, columns=wanted, row_groups=[group]
                    )
        except (pa.ArrowException, OSError) as exc:
            raise self.fail(f"unreadable Parquet data ({_short(exc)})") from None


_ASTROPY_PARQUET_KEY = b"table_meta_yaml"
_ASTROPY_FITS_BEGIN = "--BEGIN-ASTROPY-SERIALIZED-COLUMNS--"
_ASTROPY_FITS_END = "--END-ASTROPY-SERIALIZED-COLUMNS--"


def _astropy_header(lines: Sequence[str], what: str, path: Path) -> dict[str, Any]:
    """An astropy table header (ECSV, Parquet or FITS YAML block), parsed by astropy."""
    from astropy.table.meta import YamlParseError, get_header_from_yaml

    try:
        header = get_header_from_yaml(lines)
    except YamlParseError as exc:
        cause = exc.__cause__ or exc
        raise InputFormatError(
            f"the astropy table header in this {what} file is not valid YAML ({_short(cause)})",
            file=str(path),
        ) from None
    if not isinstance(header, dict):
        raise InputFormatError(
            f"the astropy table header in this {what} file is not a mapping", file=str(path)
        )
    return header


def _astropy_columns(header: dict[str, Any]) -> dict[str, ColumnInfo]:
    """Unit, description and UCD of each column an astropy header describes."""
    out: dict[str, ColumnInfo] = {}
    columns = header.get("datatype")
    if not isinstance(columns, list):
        return out
    for col in columns:
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            continue
        info: ColumnInfo = {k: str(col[k]) for k in ("unit", "description") if col.get(k)}
        extra = col.get("meta")
        if isinstance(extra, dict) and extra.get("ucd"):
            info["ucd"] = str(extra["ucd"])
        out[col["name"]] = info
    return out


def _astropy_description(header: dict[str, Any]) -> str | None:
    meta = header.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("description"), str):
        return str(meta["description"])
    return None


def _fits_astropy_lines(comments: Sequence[str]) -> list[str] | None:
    """The YAML lines astropy writes between its sentinel COMMENT cards, or None.

    A line longer than a card continues on the next card after a trailing backslash
    (the layout of astropy's FITS writer).
    """
    try:
        first = comments.index(_ASTROPY_FITS_BEGIN)
        last = comments.index(_ASTROPY_FITS_END, first)
    except ValueError:
        return None
    lines: list[str] = []
    continued = False
    for card in comments[first + 1 : last]:
        if continued:
            lines[-1] += card[:70]
        else:
            lines.append(card[:70])
        continued = len(card) == 71 and card.endswith("\\")
    return lines


def _field_metadata(field: pa.Field) -> ColumnInfo:
    """Units/UCDs/descriptions some writers put in Arrow field metadata."""
    meta = field.metadata or {}
    out: ColumnInfo = {}
    for key, target in ((b"unit", "unit"), (b"ucd", "ucd"), (b"description", "description")):
        if key in meta:
            out[target] = meta[key].decode("utf-8", "replace")
    return out


_CSV_ERROR = re.compile(r"(?:In CSV column #(\d+): )?(?:Row #(\d+): )?(.*)", re.DOTALL)


class CsvInput(InputFile):
    """CSV with a header line; types inferred, or imposed by the first file of an ingest."""

    format = "csv"

    def __init__(
        self,
        path: Path,
        column_types: dict[str, pa.DataType] | None = None,
        *,
        skip_rows: int = 0,
        delimiter: str = ",",
    ) -> None:
        super().__init__(path)
        self._skip_rows = skip_rows
        self._delimiter = delimiter
        self._column_types = dict(column_types or {})
        reader = self._open(None, 1 << 20)
        try:
            self.schema = reader.schema
        finally:
            reader.close()

    def _convert(self, columns: Sequence[str] | None) -> pacsv.ConvertOptions:
        """How cells become values (a subclass may accept other spellings)."""
        return pacsv.ConvertOptions(
            column_types=self._column_types,
            include_columns=list(columns) if columns is not None else None,
            strings_can_be_null=True,
        )

    def _open(self, columns: Sequence[str] | None, block_size: int) -> pacsv.CSVStreamingReader:
        try:
            return pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=block_size, skip_rows=self._skip_rows),
                parse_options=pacsv.ParseOptions(delimiter=self._delimiter),
                convert_options=self._convert(columns),
            )
        except (pa.ArrowException, OSError) as exc:
            raise self._csv_error(exc, 0) from None

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        # A CSV block holds roughly block_size bytes; aim at batch_rows rows of ~100 bytes.
        reader = self._open(columns, max(1 << 20, min(batch_rows * 100, 64 << 20)))
        seen = 0
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowException, OSError) as exc:
                    raise self._csv_error(exc, seen) from None
                seen += batch.num_rows
                yield batch
        finally:
            reader.close()

    def _csv_error(self, exc: Exception, rows_before: int) -> InputFormatError:
        text = _short(exc)
        match = _CSV_ERROR.match(text)
        column = None
        row = None
        if match:
            if match.group(1) is not None:
                index = int(match.group(1))
                if index < len(self.schema):
                    column = self.schema.names[index]
            if match.group(2) is not None:
                # Arrow counts rows from 1 within the block it failed on, header excluded.
                row = rows_before + int(match.group(2))
            text = match.group(3)
        conversion = _CONVERSION_ERROR.search(text)
        if conversion and row is None:
            column, row = self._locate_bad_value(conversion.group(1), conversion.group(2))
        return self.fail(
            f"cannot read {_FORMAT_NAMES[self.format]} ({text.strip()})",
            row=row,
            column=column,
            hint="a column must hold one type in every row and every file",
        )

    def _locate_bad_value(self, type_name: str, value: str) -> tuple[str | None, int | None]:
        """Find the first cell equal to ``value`` in a column meant to hold ``type_name``.

        Arrow's conversion errors say what failed but not where; this error path re-reads
        the file as text (streaming) to name the row and column.
        """
        # While the file is being opened, its schema is not known yet: the types imposed by
        # the first file of the ingest say which columns could have failed.
        expected = {f.name: f.type for f in self.schema} or self._column_types
        candidates = [name for name, t in expected.items() if str(t) == type_name]
        if not candidates:
            return None, None
        as_text = {name: pa.string() for name in candidates}
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(skip_rows=self._skip_rows),
                parse_options=pacsv.ParseOptions(delimiter=self._delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types=as_text, include_columns=candidates
                ),
            )
        except (pa.ArrowException, OSError):
            return None, None
        seen = 0
        for batch in reader:
            best: tuple[int, str] | None = None
            for name in candidates:
                values = batch.column(name).to_numpy(zero_copy_only=False)
                hits = np.flatnonzero(values == value)
                if len(hits) and (best is None or hits[0] < best[0]):
                    best = (int(hits[0]), name)
            if best is not None:
                return best[1], seen + best[0] + 1
            seen += batch.num_rows
        return None, None


_CONVERSION_ERROR = re.compile(r"conversion error to (\S+): invalid value '(.*)'")

_ECSV_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "float128": pa.float64(),
    "string": pa.string(),
}


class EcsvInput(CsvInput):
    """ECSV 1.0: the YAML header gives names, types, units and descriptions."""

    format = "ecsv"

    def __init__(self, path: Path, column_types: dict[str, pa.DataType] | None = None) -> None:
        header_lines: list[str] = []
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                header_lines.append(line)
        self.path = path
        header = _astropy_header([line[2:].rstrip("\n") for line in header_lines[1:]], "ECSV", path)
        datatypes = header.get("datatype")
        if not isinstance(datatypes, list) or not all(
            isinstance(col, dict) and "name" in col for col in datatypes
        ):
            raise InputFormatError(
                "ECSV header is not valid (no list of columns under 'datatype')", file=str(path)
            )
        described = _astropy_columns(header)
        types: dict[str, pa.DataType] = {}
        info: dict[str, ColumnInfo] = {}
        for col in datatypes:
            name = col["name"]
            arrow = _ECSV_TYPES.get(str(col.get("datatype", "string")))
            if arrow is None or "subtype" in col:
                raise InputFormatError(
                    f"ECSV column type {col.get('datatype')!r} is not supported",
                    file=str(path),
                    column=name,
                    hint="use scalar numeric, bool or string columns",
                )
            types[name] = arrow
            info[name] = described.get(name, {})
        super().__init__(
            path,
            column_types | types if column_types else types,
            skip_rows=len(header_lines),
            delimiter=header.get("delimiter", " "),
        )
        self.column_info = info
        self.description = _astropy_description(header)


class FitsInput(InputFile):
    """The first binary-table HDU of a FITS file, read through a memory map in row slices."""

    format = "fits"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        from astropy.io import fits

        try:
            self._hdul = fits.open(path, memmap=True)
            hdu = next((h for h in self._hdul if isinstance(h, fits.BinTableHDU)), None)
        except (OSError, ValueError) as exc:
            raise self.fail(f"not a readable FITS file ({_short(exc)})") from None
        if hdu is None:
            raise self.fail("the FITS file has no binary table extension")
        self._hdu = hdu
        header = hdu.header
        self.num_rows = int(header.get("NAXIS2", 0))
        fields = []
        for i, col in enumerate(hdu.columns, start=1):
            arrow = _fits_arrow_type(col)
            if arrow is None:
                raise self.fail(
                    f"FITS column format {col.format!r} is not supported", column=col.name
                )
            fields.append(pa.field(col.name, arrow))
            info: ColumnInfo = {}
            if col.unit:
                info["unit"] = str(col.unit)
            for key, target in (("TCOMM", "description"), ("TUCD", "ucd")):
                value = header.get(f"{key}{i}")
                if value:
                    info[target] = str(value)
            if info:
                self.column_info[col.name] = info
        self.schema = pa.schema(fields)
        # astropy's FITS writer adds what TUNIT cannot hold (descriptions, UCDs in column
        # meta) as YAML in COMMENT cards.
        lines = _fits_astropy_lines([str(c) for c in header.get("COMMENT", [])])
        if lines is not None:
            described = _astropy_header(lines, "FITS", path)
            known = set(self.schema.names)
            for name, extra in _astropy_columns(described).items():
                if name in known:
                    extra.pop("unit", None)  # TUNIT is the column's own unit card
                    self.column_info[name] = extra | self.column_info.get(name, {})
            self.description = _astropy_description(described)
        if self.description is None and isinstance(header.get("DESCRIPTION"), str):
            self.description = str(header["DESCRIPTION"])  # astropy's HIERARCH card

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        names = list(columns) if columns is not None else self.schema.names
        total = self.num_rows or 0
        data = self._hdu.data
        for start in range(0, total, batch_rows):
            chunk = data[start : start + batch_rows]
            arrays = [
                _fits_column_to_arrow(chunk.field(name), self.schema.field(name).type)
                for name in names
            ]
            yield pa.RecordBatch.from_arrays(arrays, names=names)


def _fits_arrow_type(col: Any) -> pa.DataType | None:
    fmt = col.format
    code = fmt.format if hasattr(fmt, "format") else str(fmt)[-1]
    repeat = getattr(fmt, "repeat", 1)
    base = {
        "L": pa.bool_(),
        "B": pa.uint8(),
        "I": pa.int16(),
        "J": pa.int32(),
        "K": pa.int64(),
        "E": pa.float32(),
        "D": pa.float64(),
    }
    if code == "A":
        return pa.string()
    if col.bscale not in (None, 1) or (col.bzero not in (None, 0) and code != "I"):
        return pa.float64()
    if col.bzero == 32768 and code == "I":
        return pa.uint16() if repeat == 1 else pa.list_(pa.uint16(), repeat)
    arrow = base.get(code)
    if arrow is None:
        return None
    if repeat != 1:
        return pa.list_(arrow, repeat)
    return arrow


def _fits_column_to_arrow(values: Any, arrow_type: pa.DataType) -> pa.Array:
    arr = np.asarray(values)
    if pa.types.is_string(arrow_type):
        if arr.dtype.kind == "S":
            arr = np.char.decode(np.char.rstrip(arr), "utf-8", "replace")
        return pa.array(arr.astype(str), type=pa.string())
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if pa.types.is_fixed_size_list(arrow_type):
        flat = pa.array(arr.reshape(-1), type=arrow_type.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, arrow_type.list_size)
    return pa.array(arr, type=arrow_type)


class VOTableInput(InputFile):
    """The first TABLE of a VOTable (any serialisation), read whole by astropy."""

    format = "votable"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        from astropy.io.votable import parse

        try:
            # astropy puts its ``filename`` in front of every message; the error names the
            # file already, and an upload's temporary path must not show at all.
            votable = parse(str(path), verify="ignore", filename=path.name)
            resource_tables = list(votable.iter_tables())
        except Exception as exc:  # astropy raises many exception types on bad XML
            raise self.fail(f"not a readable VOTable ({_short(exc)})") from None
        if not resource_tables:
            raise self.fail("the VOTable holds no TABLE")
        vot = resource_tables[0]
        table = vot.to_table(use_names_over_ids=True)
        arrays = []
        fields = []
        for field, name in zip(vot.fields, table.colnames, strict=True):
            column = table[name]
            arr = _masked_to_arrow(column)
            arrays.append(arr)
            fields.append(pa.field(name, arr.type))
            info: ColumnInfo = {}
            if field.unit is not None:
                info["unit"] = str(field.unit)
            if field.ucd:
                info["ucd"] = field.ucd
            if field.utype:
                info["utype"] = field.utype
            if field.description:
                # Writers wrap long DESCRIPTION elements; the line breaks are layout.
                info["description"] = " ".join(field.description.split())
            if field.xtype:
                info["xtype"] = field.xtype
            if info:
                self.column_info[name] = info
        self.schema = pa.schema(fields)
        self._table = pa.Table.from_arrays(arrays, schema=self.schema)
        self.num_rows = self._table.num_rows
        self.description = " ".join((vot.description or "").split()) or None

    def batches(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        table = self._table.select(list(columns)) if columns is not None else self._table
        yield from table.to_batches(max_chunksize=batch_rows)


def _masked_to_arrow(column: Any) -> pa.Array:
    data = np.ma.asarray(column)
    mask = np.ma.getmaskarray(data)
    values = np.asarray(data.data)
    if values.dtype.kind == "O":
        items = [
            None if m else (v.decode() if isinstance(v, bytes) else v)
            for v, m in zip(values, mask, strict=True)
        ]
        return pa.array(items)
    if values.dtype.kind in ("U", "S"):
        if values.dtype.kind == "S":
            values = np.char.decode(values, "utf-8", "replace")
        return pa.array(values.astype(str), mask=mask if mask.any() else None)
    if values.dtype.byteorder not in ("=", "|"):
        values = values.astype(values.dtype.newbyteorder("="))
    if values.ndim > 1:
        flat = pa.array(values.reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))
    return pa.array(values, mask=mask if mask.any() else None)


def open_input(path: Path, column_types: dict[str, pa.DataType] | None = None) -> InputFile:
    """Open ``path`` with the reader for its (checked) format.

    ``column_types`` imposes the types established by the first file of an ingest on
    text formats, so that every file of one table is read with one schema.
    """
    fmt = detect_format(path)
    if fmt == "parquet":
        return ParquetInput(path)
    if fmt == "csv":
        return CsvInput(path, column_types)
    if fmt == "ecsv":
        return EcsvInput(path, column_types)
    if fmt == "fits":
        return FitsInput(path)
    return VOTableInput(path)


def _short(exc: BaseException) -> str:
    """An exception's first line, without the file system paths pyarrow likes to add."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
