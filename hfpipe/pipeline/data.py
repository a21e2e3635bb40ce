"""Stage 1, data: local files or a Hub dataset → train/validation/test splits of (source, target) text.

Every task is reduced to two string columns, `source` and `target`, here; the stages after this one never
look at the user's column names again.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpipe.errors import DataError
from hfpipe.pipeline.data_files import Example, extract, read_examples, sha256_of
from hfpipe.recipe.schema import Recipe

if TYPE_CHECKING:
    from datasets import DatasetDict

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


def _subset(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """A seeded random subset in the original order (files are often sorted, so the first n would be biased)."""
    if n is None or n >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def held_out_rows(n_train: int, fraction: float) -> int:
    """How many rows carving `fraction` off a training split of `n_train` rows takes (at least one)."""
    return max(1, round(n_train * fraction))


def _carve(train: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    n = held_out_rows(len(train), fraction)
    if len(train) - n < 1:
        raise DataError(f"the training split has {len(train)} rows: too few to carve off a held-out split",
                        hint="give data.files.validation and data.files.test, or more training data")
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    held = set(order[:n])
    return [e for i, e in enumerate(train) if i not in held], [e for i, e in enumerate(train) if i in held]


def read_splits(recipe: Recipe) -> tuple[dict[str, list[Example]], DataReport]:
    """The examples of every split, carved and capped as the recipe says, plus a report for the manifest."""
    data = recipe.data
    report = DataReport(hub_dataset=data.hub_dataset)
    splits: dict[str, list[Example]] = {}
    if data.files is not None:
        for split in SPLITS:
            name = getattr(data.files, split)
            if name is None:
                continue
            path = Path(name)
            examples, dropped = read_examples(path, recipe.task, data)
            report.files.append(SourceFile(split, str(path), sha256_of(path), len(examples) + dropped, dropped))
            splits[split] = examples
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


def _read_hub(recipe: Recipe) -> dict[str, list[Example]]:
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
    out: dict[str, list[Example]] = {}
    for split, aliases in _HUB_SPLIT_ALIASES.items():
        name = next((a for a in aliases if a in loaded), None)
        if name is None:
            continue
        rows = []
        for i, record in enumerate(loaded[name]):
            example = extract(recipe.task, data, record, f"{data.hub_dataset}[{name}][{i}]")
            if example is not None:
                rows.append(example)
        out[split] = rows
    if "train" not in out:
        raise DataError(f"Hub dataset {data.hub_dataset!r} has no train split (it has: {', '.join(loaded)})")
    return out


def to_datasets(splits: dict[str, list[Example]]) -> DatasetDict:
    from datasets import Dataset, DatasetDict

    return DatasetDict({
        split: Dataset.from_dict({"source": [e.source for e in rows], "target": [e.target for e in rows]})
        for split, rows in splits.items()
    })


def percentiles(values: list[int], points: tuple[int, ...] = (50, 90, 95, 99, 100)) -> dict[str, int]:
    """Nearest-rank percentiles of integer values, keyed p50 … max."""
    ordered = sorted(values)
    out = {}
    for p in points:
        k = max(0, min(len(ordered) - 1, -(-p * len(ordered) // 100) - 1))
        out[f"p{p}" if p < 100 else "max"] = ordered[k] if ordered else 0
    return out


def length_percentiles(texts: list[str]) -> dict[str, int]:
    """Length in whitespace words at the usual percentiles."""
    return percentiles([len(t.split()) for t in texts])
