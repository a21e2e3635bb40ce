"""Reading local data files into (source, target) pairs, with no heavy imports.

Both `hfpipe validate` (which must not import torch or datasets) and the data stage read files through here, so
what validate accepts is exactly what training reads. Every problem is a DataError that names the file, the
line or row, and the fix.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfpipe.errors import DataError
from hfpipe.recipe.schema import DataConfig, Task

SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
_MAX_FIELD_CHARS = 1_000_000  # a single example bigger than this is almost surely a broken file


@dataclass(frozen=True)
class Example:
    source: str
    target: str


def file_format(path: Path, configured: str) -> str:
    if configured != "auto":
        return configured
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(f"cannot tell the format of {path.name} from its name",
                        where=str(path), hint="name it .jsonl/.json/.csv/.tsv/.parquet (optionally .gz), or set "
                                              "data.format")
    return fmt


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    # gzip is recognised by its name or its magic bytes (a downloaded "train.jsonl" is sometimes gzipped);
    # utf-8-sig drops the byte-order mark that spreadsheet exports put before the first column name.
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped or path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open("r", encoding="utf-8-sig", newline="")


def check_data_file(path: Path) -> None:
    """Raise DataError unless `path` is a regular file that exists (a folder, a FIFO or a device is not)."""
    if not path.exists():
        raise DataError(f"data file not found: {path}", where=str(path), hint="check data.files in the recipe "
                                                                              "(relative paths are relative to "
                                                                              "the recipe file)")
    if path.is_dir():
        raise DataError(f"expected a file, found a folder: {path}", where=str(path),
                        hint="point data.files at the data file inside it")
    if not path.is_file():  # a FIFO or a device such as /dev/zero: reading it would never end
        raise DataError(f"not a regular file: {path}", where=str(path), hint="point data.files at a data file")


def iter_records(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line or row number, record) from a local file; raise DataError on any malformed part."""
    check_data_file(path)
    try:
        if fmt == "parquet":
            yield from _iter_parquet(path)
            return
        with _open_text(path) as f:
            if fmt == "jsonl":
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    if "\x00" in line:
                        raise _nul_error(path, lineno)
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise DataError(f"line {lineno} is not valid JSON: {err.msg}", where=f"{path}:{lineno}",
                                        hint="each line of a .jsonl file must be one JSON object") from None
                    if not isinstance(record, dict):
                        raise DataError(f"line {lineno} is a JSON {type(record).__name__}, not an object",
                                        where=f"{path}:{lineno}")
                    yield lineno, record
            elif fmt == "json":
                try:
                    payload = json.load(f)
                except json.JSONDecodeError as err:
                    raise DataError(f"not valid JSON: {err.msg} at line {err.lineno}", where=f"{path}:{err.lineno}",
                                    hint="a .json file holds a list of objects (or {\"data\": [...]}); use .jsonl "
                                         "for one object per line") from None
                if isinstance(payload, dict) and isinstance(payload.get("data"), list):
                    payload = payload["data"]
                if not isinstance(payload, list):
                    raise DataError("a .json data file must hold a list of objects (or {\"data\": [...]})",
                                    where=str(path))
                for i, record in enumerate(payload, 1):
                    if not isinstance(record, dict):
                        raise DataError(f"item {i} is a JSON {type(record).__name__}, not an object", where=str(path))
                    yield i, record
            else:
                csv.field_size_limit(_MAX_FIELD_CHARS)
                reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
                try:
                    if reader.fieldnames is None:
                        return
                    if any("\x00" in name for name in reader.fieldnames):
                        raise _nul_error(path, reader.line_num)
                    for record in reader:
                        if None in record:
                            raise DataError(f"row at line {reader.line_num} has more fields than the header "
                                            f"({len(reader.fieldnames)})", where=f"{path}:{reader.line_num}",
                                            hint="quote fields that contain the delimiter")
                        if any(v is None for v in record.values()):  # csv fills missing fields with None
                            given = sum(v is not None for v in record.values())
                            raise DataError(f"row at line {reader.line_num} has {given} field(s), fewer than the "
                                            f"header ({len(reader.fieldnames)})", where=f"{path}:{reader.line_num}",
                                            hint="every row needs a value for every column (an empty one is ,,)")
                        if any("\x00" in v for v in record.values()):
                            raise _nul_error(path, reader.line_num)
                        yield reader.line_num, record
                except csv.Error as err:
                    lineno = reader.line_num + 1  # csv counts a line once it has parsed it, and this one failed
                    raise DataError(f"line {lineno} is not valid {fmt.upper()}: {err}", where=f"{path}:{lineno}",
                                    hint="check the quoting on that line") from None
    except DataError:
        raise
    except UnicodeDecodeError as err:
        # The decoder's position is inside its read buffer, not the file: find the line by reading it again.
        bad = _first_undecodable_line(path)
        at = f"line {bad[0]} is not UTF-8 ({bad[1]})" if bad else f"the file is not UTF-8 text ({err.reason})"
        raise DataError(at, where=f"{path}:{bad[0]}" if bad else str(path),
                        hint="the file mixes encodings or is not UTF-8: convert it, e.g. "
                             "`iconv -f latin1 -t utf-8`") from None
    except (gzip.BadGzipFile, EOFError, OSError, csv.Error) as err:
        raise DataError(f"cannot read {path.name}: {err}", where=str(path),
                        hint="the file looks truncated or is not in the format its name says") from None


def _nul_error(path: Path, lineno: int) -> DataError:
    return DataError(f"line {lineno} contains a NUL byte (\\x00)", where=f"{path}:{lineno}",
                     hint="text files have no NUL bytes: the file is binary, corrupted or UTF-16 (convert it to "
                          "UTF-8)")


def _first_undecodable_line(path: Path) -> tuple[int, str] | None:
    """(line number, what is wrong) of the first line that is not UTF-8, or None if it cannot be found."""
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gzipped or path.suffix.lower() == ".gz" else path.open("rb")) as f:
            for lineno, line in enumerate(f, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    return lineno, f"{err.reason}: byte {line[err.start]:#04x} at column {err.start + 1}"
    except (OSError, EOFError):
        return None
    return None


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise DataError("reading parquet needs pyarrow", hint="pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises its own zoo of exceptions for broken files
        raise DataError(f"cannot read parquet file: {err}", where=str(path)) from None
    for i, record in enumerate(table.to_pylist(), 1):
        yield i, record


def columns_for(task: Task, data: DataConfig) -> str:
    if task == "summarization":
        return f"{data.text_column!r} and {data.summary_column!r}"
    if data.source_column:
        return f"{data.source_column!r} and {data.target_column!r}"
    return f"{data.translation_column!r} (with keys {data.source_lang!r} and {data.target_lang!r})"


def extract(task: Task, data: DataConfig, record: dict[str, Any], where: str,
            numbers: dict[str, tuple[str, Any]] | None = None) -> Example | None:
    """The (source, target) of one record, or None when either side is empty. Raises DataError when the
    columns the recipe names are not there. A JSON number is read as text; `numbers`, where given, records the
    first one per column (where, value)."""
    if task == "summarization":
        src_key, tgt_key, holder = data.text_column, data.summary_column, record
    elif data.source_column:
        src_key, tgt_key, holder = data.source_column, data.target_column, record
    else:
        holder = record.get(data.translation_column)
        if data.translation_column in record and not isinstance(holder, dict):
            raise DataError(f"column {data.translation_column!r} holds a {type(holder).__name__}, not a mapping with "
                            f"keys {data.source_lang!r} and {data.target_lang!r}", where=where,
                            hint="for two flat text columns set data.source_column and data.target_column")
        if not isinstance(holder, dict):
            raise _column_error(task, data, record, where, data.translation_column)
        src_key, tgt_key = data.source_lang, data.target_lang
    for key in (src_key, tgt_key):
        if key not in holder:
            raise _column_error(task, data, holder, where, key)
    source, target = holder[src_key], holder[tgt_key]
    if source is None or target is None:
        return None
    for key, value in ((src_key, source), (tgt_key, target)):
        if isinstance(value, (bool, int, float)) and numbers is not None:
            numbers.setdefault(key, (where, value))
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            raise DataError(f"column {key!r} holds a {type(value).__name__} ({str(value)[:60]}), not text",
                            where=where, hint="point the recipe at a text column (or a list of sentences)")
    if isinstance(source, list):  # some summarization sets store sentences as a list
        source = "\n".join(map(str, source))
    if isinstance(target, list):
        target = "\n".join(map(str, target))
    source, target = str(source).strip(), str(target).strip()
    if not source or not target:
        return None
    return Example(source, target)


def _column_error(task: Task, data: DataConfig, record: dict[str, Any], where: str, missing: str | None) -> DataError:
    import difflib

    available = sorted(map(str, record.keys()))
    close = difflib.get_close_matches(str(missing), available, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if task == "summarization":
        hint += "set data.text_column and data.summary_column to the document and summary columns"
    elif data.source_column:
        hint += "set data.source_column and data.target_column"
    else:
        hint += ("set data.source_lang/data.target_lang to keys of the translation column, or use two flat "
                 "columns with data.source_column/data.target_column")
    return DataError(f"column {missing!r} not found; the recipe needs {columns_for(task, data)}",
                     where=f"{where} (available: {', '.join(available) or 'none'})", hint=hint)


def iter_examples(path: Path, task: Task, data: DataConfig, counts: dict[str, int] | None = None, *,
                  limit: int | None = None) -> Iterator[Example]:
    """The non-empty examples of a file (the first `limit` of them), streamed; where `counts` is given,
    `counts["kept"]` and `counts["dropped"]` count the rows yielded and those dropped as empty. A column that turns out to hold only numbers raises DataError after the last row, so a reader that
    writes as it goes must write to a temporary place (the data stage does)."""
    fmt = file_format(path, data.format)
    kept = dropped = 0
    numeric: dict[str, int] = {}  # per column, the examples whose value there is a JSON number (or boolean)
    first: dict[str, tuple[str, Any]] = {}
    for lineno, record in iter_records(path, fmt):
        seen: dict[str, tuple[str, Any]] = {}
        example = extract(task, data, record, f"{path}:{lineno}", seen)
        if example is None:
            dropped += 1
            if counts is not None:
                counts["dropped"] = dropped
            continue
        for key, where_value in seen.items():
            numeric[key] = numeric.get(key, 0) + 1
            first.setdefault(key, where_value)
        kept += 1
        if counts is not None:
            counts["kept"] = kept
        yield example
        if limit is not None and kept >= limit:
            break
    for key, count in numeric.items():
        # A whole column of numbers is an id or score column, not text (a few numbers among sentences are text).
        if count == kept:
            where, value = first[key]
            raise DataError(f"column {key!r} holds numbers (the first: {value!r}), not text", where=where,
                            hint="point the recipe at the text column; if the numbers are the text, write them "
                                 "as strings (\"42\")")


def read_examples(path: Path, task: Task, data: DataConfig, *, limit: int | None = None) -> tuple[list[Example], int]:
    """All non-empty examples of a file (up to `limit`) and the number of rows dropped as empty."""
    counts = {"dropped": 0}
    examples = list(iter_examples(path, task, data, counts, limit=limit))
    return examples, counts["dropped"]
