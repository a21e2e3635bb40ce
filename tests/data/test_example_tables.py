"""The data stage's example tables: each file is read once, as a stream, into an Arrow file in the cache and
memory-mapped from there; a split reads like a list of Example; nothing half-written is ever left in the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hfpipe.errors import DataError
from hfpipe.pipeline.data import ExampleTable, read_splits
from hfpipe.pipeline.data_files import Example
from hfpipe.pipeline.tokenization import examples_fingerprint
from hfpipe.recipe.schema import Recipe


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("HFPIPE_CACHE", str(root))
    return root


def recipe_for(files: dict[str, str], **data: Any) -> Recipe:
    return Recipe.model_validate({
        "task": "translation", "data": {"files": files, "source_lang": "en", "target_lang": "de", **data},
        "tokenizer": {"train": {}}, "model": {"architecture": "mbart"}, "train": {"max_steps": 1}})


def write_pairs(path: Path, n: int, *, tail: str = "") -> Path:
    lines = [json.dumps({"translation": {"en": f"sentence {i} ü", "de": f"Satz {i} ß"}, "id": i}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n" + tail, encoding="utf-8")
    return path


def entries(cache: Path) -> list[str]:
    root = cache / "examples"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_split_reads_like_a_list_of_examples(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "train.jsonl", 2_500)  # more than one Arrow record batch read back in pieces
    splits, report = read_splits(recipe_for({"train": str(path), "validation": str(path)}))
    table = splits["validation"]
    assert isinstance(table, ExampleTable)
    expected = [Example(f"sentence {i} ü", f"Satz {i} ß") for i in range(2_500)]
    assert len(table) == 2_500 and report.rows["validation"] == 2_500
    assert table[0] == expected[0] and table[2_499] == expected[-1] and table[-1] == expected[-1]
    assert table[10:13] == expected[10:13]
    assert list(table) == expected and table == expected
    assert list(table.column("target"))[:2] == ["Satz 0 ß", "Satz 1 ß"]
    assert table != expected[:-1] and table != [*expected[:-1], Example("x", "y")]


def test_each_file_is_read_once_and_keyed_by_content_and_columns(tmp_path: Path, cache: Path) -> None:
    path = write_pairs(tmp_path / "train.jsonl", 300)
    copy = tmp_path / "elsewhere.jsonl"
    shutil.copy(path, copy)
    first, _ = read_splits(recipe_for({"train": str(path), "validation": str(path)}))
    assert len(entries(cache)) == 1  # the same file twice is one entry
    second, _ = read_splits(recipe_for({"train": str(copy), "validation": str(copy)}))
    assert len(entries(cache)) == 1 and second == first  # the same content elsewhere: the same entry
    assert examples_fingerprint(first) == examples_fingerprint(second)
    # Other column settings read other examples from the same bytes: another entry.
    flipped, _ = read_splits(recipe_for({"train": str(path), "validation": str(path)},
                                        source_lang="de", target_lang="en"))
    assert len(entries(cache)) == 2 and flipped["train"][0] == Example("Satz 0 ß", "sentence 0 ü")
    # Changed content: another entry, another fingerprint.
    write_pairs(path, 301)
    grown, _ = read_splits(recipe_for({"train": str(path), "validation": str(path)}))
    assert len(entries(cache)) == 3 and len(grown["train"]) == 301
    assert examples_fingerprint(grown) != examples_fingerprint(first)


def test_a_split_in_several_files_is_their_rows_in_the_order_listed(tmp_path: Path, cache: Path) -> None:
    first = write_pairs(tmp_path / "first.jsonl", 3)
    second = tmp_path / "second.jsonl"
    second.write_text("".join(json.dumps({"translation": {"en": en, "de": de}}) + "\n"
                              for en, de in [("more", "mehr"), ("dropped", ""), ("last", "letzte")]), encoding="utf-8")
    splits, report = read_splits(recipe_for({"train": [str(first), str(second)], "validation": str(first)}))
    a = [Example(f"sentence {i} ü", f"Satz {i} ß") for i in range(3)]
    b = [Example("more", "mehr"), Example("last", "letzte")]
    assert list(splits["train"]) == a + b and report.rows["train"] == 5
    # The manifest names every file of the split, each with its own rows and dropped rows.
    assert [(f.split, Path(f.path).name, f.rows, f.dropped_empty) for f in report.files] == [
        ("train", "first.jsonl", 3, 0), ("train", "second.jsonl", 3, 1), ("validation", "first.jsonl", 3, 0)]
    swapped, report = read_splits(recipe_for({"train": [str(second), str(first)], "validation": str(first)}))
    assert list(swapped["train"]) == b + a
    assert examples_fingerprint(swapped) != examples_fingerprint(splits)
    again, report = read_splits(recipe_for({"train": [str(first), str(second)], "validation": str(first)}))
    assert list(again["train"]) == a + b and len(entries(cache)) == 3  # read back from the cache, counts too:
    assert [(f.rows, f.dropped_empty) for f in report.files] == [(3, 0), (3, 1), (3, 0)]
    # One file alone is the entry it always was (the list [x] and x are the same split).
    alone, _ = read_splits(recipe_for({"train": [str(first)], "validation": str(first)}))
    assert len(entries(cache)) == 3 and examples_fingerprint(alone) == examples_fingerprint(
        read_splits(recipe_for({"train": str(first), "validation": str(first)}))[0])


def test_carved_and_sampled_splits_have_their_own_fingerprints(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "train.jsonl", 400)
    base, _ = read_splits(recipe_for({"train": str(path)}, validation_fraction=0.1, split_seed=1))
    other_seed, _ = read_splits(recipe_for({"train": str(path)}, validation_fraction=0.1, split_seed=2))
    capped, _ = read_splits(recipe_for({"train": str(path)}, validation_fraction=0.1, split_seed=1,
                                       max_train_samples=100))
    fps = {examples_fingerprint({"v": s["validation"]}) for s in (base, other_seed)}
    assert len(fps) == 2  # different held-out rows, different names
    assert examples_fingerprint({"t": capped["train"]}) != examples_fingerprint({"t": base["train"]})
    assert base["validation"] != other_seed["validation"]
    kept = set(capped["train"])
    assert list(capped["train"]) == [e for e in base["train"] if e in kept]  # a sample of train, in file order


@pytest.mark.parametrize("tail", ['{"translation": {"en": "broken"\n', '[1, 2]\n'])
def test_a_bad_row_at_the_end_leaves_nothing_in_the_cache(tmp_path: Path, cache: Path, tail: str) -> None:
    path = write_pairs(tmp_path / "train.jsonl", 25_000, tail=tail)  # past two written record batches
    with pytest.raises(DataError) as err:
        read_splits(recipe_for({"train": str(path)}))
    assert err.value.where.endswith(":25001")
    assert entries(cache) == []  # no entry, and no temporary folder left beside where it would be
    # Fixed, it reads.
    write_pairs(path, 25_000)
    splits, _ = read_splits(recipe_for({"train": str(path)}))
    assert len(splits["train"]) + len(splits["validation"]) == 25_000 and len(entries(cache)) == 1


def test_a_column_of_numbers_found_at_the_end_leaves_nothing(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps({"translation": {"en": i, "de": f"Satz {i}"}}) + "\n" for i in range(30)))
    with pytest.raises(DataError, match="holds numbers"):
        read_splits(recipe_for({"train": str(path)}))
    assert entries(cache) == []


def test_an_unwritable_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache should be")
    monkeypatch.setenv("HFPIPE_CACHE", str(blocker))
    path = write_pairs(tmp_path / "train.jsonl", 30)
    from hfpipe.errors import RunDirError

    with pytest.raises(RunDirError, match="cannot write the hfpipe cache"):
        read_splits(recipe_for({"train": str(path)}))
