"""Stage 1, data: local files or a Hub dataset → train/validation/test splits of (source, target) text.

Every task is reduced to two string columns, `source` and `target`, here; the stages after this one never
look at the user's column names again.

Each file is read once, as a stream, into an Arrow file in the hfpipe cache (keyed by the file's sha256 and the
column settings) and memory-mapped from there: a split is an `ExampleTable`, which reads like a list of
`Example` but holds pages of a file rather than Python objects, so a corpus of millions of pairs costs the same
memory as a small one, and a second run does not parse the file again.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from hfpipe import __version__
from hfpipe.cache import cache_error, cache_root, fingerprint
from hfpipe.errors import DataError
from hfpipe.pipeline.data_files import Example, check_data_file, extract, iter_examples, sha256_of
from hfpipe.recipe.schema import DataConfig, Recipe

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

SPLITS = ("train", "validation", "test")
_HUB_SPLIT_ALIASES = {"validation": ("validation", "valid", "dev", "val"), "test": ("test",), "train": ("train",)}


@dataclass
class SourceFile:
    split: str
    path: str
    sha256: str
    rows: int
    dropped_empty: int


@dataclass
class DataReport:
    """What the data stage read: recorded in manifest.json."""

    rows: dict[str, int] = field(default_factory=dict)
    files: list[SourceFile] = field(default_factory=list)
    carved: list[str] = field(default_factory=list)
    hub_dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- example tables
_BATCH_ROWS = 10_000  # rows per Arrow record batch: a few MB of text, written and read as one piece


class ExampleTable(Sequence[Example]):
    """The examples of one split, memory-mapped from an Arrow file with columns `source` and `target`.

    Indexing gives an `Example`, slicing a list of them, iteration streams in batches; `dataset` is the
    `datasets.Dataset` behind it (for tokenizing), and `fingerprint` names its content: the content hash of the
    file it was read from plus how it was carved and sampled, so equal fingerprints mean equal examples."""

    def __init__(self, dataset: Dataset, fingerprint: str) -> None:
        self.dataset = dataset
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.dataset)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...

    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        if isinstance(index, slice):
            rows = self.dataset[index]
            return [Example(s, t) for s, t in zip(rows["source"], rows["target"])]
        row = self.dataset[index]
        return Example(row["source"], row["target"])

    def __iter__(self) -> Iterator[Example]:
        for batch in self.dataset.iter(batch_size=1000):
            for source, target in zip(batch["source"], batch["target"]):
                yield Example(source, target)

    def column(self, name: str) -> Iterator[str]:
        """One column's texts, streamed."""
        for batch in self.dataset.select_columns([name]).iter(batch_size=1000):
            yield from batch[name]

    def select(self, indices: list[int], how: Any) -> ExampleTable:
        """The rows at `indices` (in that order); `how` is what chose them, for the fingerprint."""
        if len(indices) == len(self) and indices == list(range(len(self))):
            return self
        return ExampleTable(self.dataset.select(indices), fingerprint([self.fingerprint, how]))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ExampleTable) and other.fingerprint == self.fingerprint:
            return True
        if not isinstance(other, (ExampleTable, list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # mutable-sequence semantics: compared by content

    def __repr__(self) -> str:
        return f"ExampleTable({len(self):,} rows, {self.fingerprint})"


def _examples_root() -> Path:
    return cache_root() / "examples"


def _extraction_settings(task: str, data: DataConfig) -> dict[str, Any]:
    """Everything that decides which (source, target) a record gives: a change here re-reads the file."""
    return {"v": __version__, "task": task, "format": data.format,
            **{k: getattr(data, k) for k in ("text_column", "summary_column", "source_column", "target_column",
                                             "translation_column", "source_lang", "target_lang")}}


def write_example_table(examples: Iterable[Example], folder: Path) -> dict[str, Any]:
    """Stream `examples` into `folder/examples.arrow` (Arrow IPC stream, the format `datasets` memory-maps) in
    batches of rows; returns {"rows", "sha256"}: the count and a hash of the content in order."""
    import pyarrow as pa

    schema = pa.schema([("source", pa.string()), ("target", pa.string())])
    digest = hashlib.sha256()
    rows = 0
    with pa.OSFile(str(folder / "examples.arrow"), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        sources: list[str] = []
        targets: list[str] = []

        def flush() -> None:
            if sources:
                writer.write_batch(pa.record_batch([pa.array(sources, pa.string()), pa.array(targets, pa.string())],
                                                   schema=schema))
                sources.clear()
                targets.clear()

        for e in examples:
            digest.update(e.source.encode())
            digest.update(b"\x00")
            digest.update(e.target.encode())
            digest.update(b"\x01")
            sources.append(e.source)
            targets.append(e.target)
            rows += 1
            if len(sources) >= _BATCH_ROWS:
                flush()
        flush()
    return {"rows": rows, "sha256": digest.hexdigest()}


def cached_example_table(key: str, fill: Any) -> tuple[ExampleTable, dict[str, Any]]:
    """The table cached under `key`, made by `fill(folder) -> meta` (which must write examples.arrow there and
    return a JSON-able dict with "rows" and "sha256") when it is not cached yet. The entry appears whole or not
    at all: it is written to a temporary folder and renamed, so a failed read (bad row 1,999,999) leaves nothing."""
    from datasets import Dataset

    root = _examples_root()
    folder = root / key
    if not (folder / "meta.json").exists():
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        except OSError as err:
            raise cache_error(err, root) from None
        try:
            meta = fill(tmp)
            (tmp / "meta.json").write_text(json.dumps(meta))
            if folder.exists():  # another process finished the same entry first: keep theirs
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, folder)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise cache_error(err, folder) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    meta = json.loads((folder / "meta.json").read_text())
    dataset = Dataset.from_file(str(folder / "examples.arrow"))
    return ExampleTable(dataset, meta["sha256"][:20]), meta


def _read_files(paths: list[Path], task: str, data: DataConfig) -> tuple[ExampleTable, list[SourceFile]]:
    """One split from its files, rows in the order listed, cached as one table keyed by every file's content."""
    shas = []
    for path in paths:
        check_data_file(path)
        try:
            shas.append(sha256_of(path))
        except OSError as err:
            raise DataError(f"cannot read {path.name}: {err.strerror or err}", where=str(path),
                            hint="check the file's permissions") from None
    # One file keeps the key it always had, so caches filled before lists of files existed stay valid.
    content = {"file": shas[0]} if len(shas) == 1 else {"files": shas}
    key = fingerprint({**content, **_extraction_settings(task, data)})

    def fill(folder: Path) -> dict[str, Any]:
        counts = [{"kept": 0, "dropped": 0} for _ in paths]
        rows = (e for path, c in zip(paths, counts) for e in iter_examples(path, task, data, c))
        meta = write_example_table(rows, folder)  # type: ignore[arg-type]
        return {**meta, "dropped": sum(c["dropped"] for c in counts), "per_file": counts}

    table, meta = cached_example_table(key, fill)
    # Entries cached before lists of files existed have no per-file counts: they were always of one file.
    per_file = meta.get("per_file") or [{"kept": meta["rows"], "dropped": meta["dropped"]}]
    return table, [SourceFile("", str(path), sha, c["kept"] + c["dropped"], c["dropped"])
                   for path, sha, c in zip(paths, shas, per_file)]


def _subset(examples: ExampleTable, n: int | None, seed: int) -> ExampleTable:
    """A seeded random subset in the original order (files are often sorted, so the first n would be biased)."""
    if n is None or n >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return examples.select(keep, ["subset", n, seed])


def held_out_rows(n_train: int, fraction: float) -> int:
    """How many rows carving `fraction` off a training split of `n_train` rows takes (at least one)."""
    return max(1, round(n_train * fraction))


def _carve(train: ExampleTable, fraction: float, seed: int) -> tuple[ExampleTable, ExampleTable]:
    n = held_out_rows(len(train), fraction)
    if len(train) - n < 1:
        raise DataError(f"the training split has {len(train)} rows: too few to carve off a held-out split",
                        hint="give data.files.validation and data.files.test, or more training data")
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    held = sorted(order[:n])
    del order
    held_set = set(held)
    kept = [i for i in range(len(train)) if i not in held_set]
    return train.select(kept, ["carve-kept", fraction, seed]), train.select(held, ["carve-held", fraction, seed])


def read_splits(recipe: Recipe) -> tuple[dict[str, ExampleTable], DataReport]:
    """The examples of every split, carved and capped as the recipe says, plus a report for the manifest."""
    data = recipe.data
    report = DataReport(hub_dataset=data.hub_dataset)
    splits: dict[str, ExampleTable] = {}
    if data.files is not None:
        for split in SPLITS:
            paths = data.files.paths(split)
            if not paths:
                continue
            table, source_files = _read_files([Path(p) for p in paths], recipe.task, data)
            for source_file in source_files:
                source_file.split = split
            report.files.extend(source_files)
            splits[split] = table
    else:
        splits = _read_hub(recipe)
    if not splits.get("train"):
        raise DataError("the training split has no usable rows (all empty or missing)",
                        hint="check data.files.train and the column settings")
    if "validation" not in splits:
        splits["train"], splits["validation"] = _carve(splits["train"], data.validation_fraction, data.split_seed)
        report.carved.append("validation")
    if "test" not in splits and data.test_fraction is not None:
        splits["train"], splits["test"] = _carve(splits["train"], data.test_fraction, data.split_seed + 1)
        report.carved.append("test")
    splits["train"] = _subset(splits["train"], data.max_train_samples, data.split_seed)
    for split in ("validation", "test"):
        if split in splits:
            splits[split] = _subset(splits[split], data.max_eval_samples, data.split_seed)
    for split, examples in splits.items():
        if not examples:
            raise DataError(f"the {split} split has no usable rows", hint="every row had an empty source or target")
    report.rows = {s: len(e) for s, e in splits.items()}
    return splits, report


def _read_hub(recipe: Recipe) -> dict[str, ExampleTable]:
    data = recipe.data
    try:
        import datasets
    except ImportError:  # pragma: no cover
        raise DataError("loading a Hub dataset needs the `datasets` package") from None
    try:
        loaded = datasets.load_dataset(data.hub_dataset, data.hub_config, revision=data.hub_revision)
    except Exception as err:  # datasets raises many types for offline/not-found/bad config
        offline = "offline" in str(err).lower() or "connect" in str(err).lower() or "resolve" in str(err).lower()
        raise DataError(
            f"cannot load Hub dataset {data.hub_dataset!r}"
            + (f" (config {data.hub_config!r})" if data.hub_config else "") + f": {type(err).__name__}: {err}",
            where="data.hub_dataset",
            hint=("the Hub is not reachable from here: download the dataset where it is and point data.files at "
                  "local files, or set HF_DATASETS_OFFLINE=0/HF_HUB_OFFLINE=0 if you are online") if offline else
            "check the dataset id and data.hub_config on the Hub") from None
    out: dict[str, ExampleTable] = {}
    for split, aliases in _HUB_SPLIT_ALIASES.items():
        name = next((a for a in aliases if a in loaded), None)
        if name is None:
            continue
        part = loaded[name]

        def fill(folder: Path, part: Any = part, name: str = name) -> dict[str, Any]:
            examples = (extract(recipe.task, data, record, f"{data.hub_dataset}[{name}][{i}]")
                        for i, record in enumerate(part))
            return write_example_table((e for e in examples if e is not None), folder)

        # datasets' own fingerprint of the split changes with its content (a moved revision is read again).
        key = fingerprint({"hub": data.hub_dataset, "config": data.hub_config, "split": name,
                          "content": getattr(part, "_fingerprint", None), **_extraction_settings(recipe.task, data)})
        out[split], _ = cached_example_table(key, fill)
    if "train" not in out:
        raise DataError(f"Hub dataset {data.hub_dataset!r} has no train split (it has: {', '.join(loaded)})")
    return out


def to_datasets(splits: dict[str, ExampleTable]) -> DatasetDict:
    from datasets import DatasetDict

    return DatasetDict({split: table.dataset for split, table in splits.items()})


def percentiles(values: list[int], points: tuple[int, ...] = (50, 90, 95, 99, 100)) -> dict[str, int]:
    """Nearest-rank percentiles of integer values, keyed p50 … max."""
    ordered = sorted(values)
    out = {}
    for p in points:
        k = max(0, min(len(ordered) - 1, -(-p * len(ordered) // 100) - 1))
        out[f"p{p}" if p < 100 else "max"] = ordered[k] if ordered else 0
    return out


def length_percentiles(texts: Iterable[str]) -> dict[str, int]:
    """Length in whitespace words at the usual percentiles (the texts may be a stream)."""
    return percentiles([len(t.split()) for t in texts])
