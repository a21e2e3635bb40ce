"""Reading local data files (every format, hostile contents) and carving/capping splits.

Every file is written to tmp_path in its real format; every failure must be a DataError naming the file (and the
line where there is one), never a bare exception.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hfpipe.errors import DataError
from hfpipe.pipeline.data import read_splits
from hfpipe.pipeline.data_files import Example, read_examples
from hfpipe.recipe.schema import DataConfig, Recipe

REPO_ROOT = Path(__file__).resolve().parents[2]
EN_DE = DataConfig(files={"train": "unused"}, source_lang="en", target_lang="de")
FLAT = DataConfig(files={"train": "unused"}, source_column="src", target_column="tgt")
SUMM = DataConfig(files={"train": "unused"})


def pair(en: Any, de: Any, **extra: Any) -> dict[str, Any]:
    return {"translation": {"en": en, "de": de}, **extra}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def gzip_file(path: Path) -> Path:
    out = path.with_name(path.name + ".gz")
    out.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return out


def data_error(path: Path, task: str = "translation", data: DataConfig = EN_DE) -> DataError:
    with pytest.raises(DataError) as info:
        read_examples(path, task, data)
    return info.value


ROWS = [pair("Hello world", "Hallo Welt"), pair("a, b and c", "a, b und c"), pair("line one\nline two", "Zeile")]
EXPECTED = [Example("Hello world", "Hallo Welt"), Example("a, b and c", "a, b und c"),
            Example("line one\nline two", "Zeile")]


# --------------------------------------------------------------------------------------------- formats
def test_jsonl(tmp_path: Path) -> None:
    assert read_examples(write_jsonl(tmp_path / "t.jsonl", ROWS), "translation", EN_DE) == (EXPECTED, 0)


def test_jsonl_skips_blank_lines_and_accepts_crlf(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\r\n".join(json.dumps(r).encode() for r in ROWS).replace(b"\r\n", b"\r\n\r\n", 1) + b"\r\n")
    assert read_examples(path, "translation", EN_DE) == (EXPECTED, 0)


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    assert read_examples(path, "translation", EN_DE) == (EXPECTED, 0)


def test_json_object_with_data_list(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"version": 1, "data": ROWS}), encoding="utf-8")
    assert read_examples(path, "translation", EN_DE) == (EXPECTED, 0)


@pytest.mark.parametrize("payload", [{"rows": []}, 5, "text"])
def test_json_without_a_list_of_objects(tmp_path: Path, payload: Any) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    assert "list of objects" in data_error(path).message


def test_json_list_item_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps([ROWS[0], ["a", "b"]]), encoding="utf-8")
    assert "item 2 is a JSON list" in data_error(path).message


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_with_quoted_delimiters_and_newlines(tmp_path: Path, suffix: str, delimiter: str) -> None:
    path = write_csv(tmp_path / f"t{suffix}", ["id", "src", "tgt"],
                     [["1", "Hello world", "Hallo Welt"], ["2", f"a{delimiter} b and c", 'say "hi"'],
                      ["3", "line one\nline two", "Zeile"]], delimiter=delimiter)
    assert '"' in path.read_text()  # the writer really quoted fields
    got, dropped = read_examples(path, "translation", FLAT)
    assert dropped == 0
    assert got == [Example("Hello world", "Hallo Welt"), Example(f"a{delimiter} b and c", 'say "hi"'),
                   Example("line one\nline two", "Zeile")]


def test_csv_row_with_more_fields_than_header(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("src,tgt\na,b\nc,d,e\n", encoding="utf-8")
    err = data_error(path, data=FLAT)
    assert "more fields than the header" in err.message
    assert err.where == f"{path}:3"


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    """Spreadsheet exports start with a UTF-8 BOM; the first column name must still be `src`."""
    path = tmp_path / "t.csv"
    path.write_bytes("src,tgt\nCafé,Kaffee\n".encode("utf-8-sig"))
    assert read_examples(path, "translation", FLAT) == ([Example("Café", "Kaffee")], 0)


def test_jsonl_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode("utf-8-sig") + b"\n")
    assert read_examples(path, "translation", EN_DE) == ([EXPECTED[0]], 0)


def test_parquet_with_translation_struct_and_flat_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), nested)
    assert read_examples(nested, "translation", EN_DE) == (EXPECTED, 0)
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"src": ["Hello", None, "x"], "tgt": ["Hallo", "y", ""], "n": [1, 2, 3]}), flat)
    assert read_examples(flat, "translation", FLAT) == ([Example("Hello", "Hallo")], 2)


def test_broken_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    err = data_error(path)
    assert "parquet" in err.message and err.where == str(path)


@pytest.mark.parametrize("name", ["t.jsonl", "t.json", "t.csv", "t.tsv"])
def test_gzip_variants(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        write_jsonl(path, ROWS)
        data = EN_DE
    elif name.endswith(".json"):
        path.write_text(json.dumps(ROWS), encoding="utf-8")
        data = EN_DE
    else:
        write_csv(path, ["src", "tgt"], [[r["translation"]["en"], r["translation"]["de"]] for r in ROWS],
                  delimiter="\t" if name.endswith(".tsv") else ",")
        data = FLAT
    gz = gzip_file(path)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert read_examples(gz, "translation", data) == (EXPECTED, 0)


def test_gzipped_content_without_gz_suffix(tmp_path: Path) -> None:
    """A downloaded `train.jsonl` that is really gzipped reads by its magic bytes, not as broken UTF-8."""
    path = tmp_path / "train.jsonl"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    assert read_examples(path, "translation", EN_DE) == (EXPECTED, 0)


def test_truncated_gzip(tmp_path: Path) -> None:
    gz = gzip_file(write_jsonl(tmp_path / "t.jsonl", ROWS * 200))
    gz.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])
    err = data_error(gz)
    assert "t.jsonl.gz" in err.message and "truncated" in (err.hint or "")


def test_gz_suffix_on_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_text(json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    err = data_error(path)
    assert err.where == str(path) and "gzip" in err.message.lower()


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes((json.dumps(pair("café", "Kaffee"), ensure_ascii=False) + "\n").encode("latin-1"))
    err = data_error(path)
    assert "line 1 is not UTF-8" in err.message and err.where == f"{path}:1"
    assert "iconv" in (err.hint or "")


def test_non_utf8_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress("src,tgt\ncafé,Kaffee\n".encode("latin-1")))
    assert "not UTF-8" in data_error(path, data=FLAT).message


@pytest.mark.parametrize("name", ["t.jsonl", "t.csv", "t.tsv", "t.jsonl.gz"])
def test_empty_file_has_no_examples(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    assert read_examples(path, "translation", FLAT) == ([], 0)


def test_empty_json_file(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("", encoding="utf-8")
    assert "not valid JSON" in data_error(path).message


def test_only_empty_rows(tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n   \n\n", encoding="utf-8")
    assert read_examples(jsonl, "translation", EN_DE) == ([], 0)
    path = write_csv(tmp_path / "t.csv", ["src", "tgt"], [["", ""], [" ", "x"], ["y", "\t"]])
    assert read_examples(path, "translation", FLAT) == ([], 3)


def test_unknown_extension_needs_data_format(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.txt", ROWS)
    err = data_error(path)
    assert "cannot tell the format" in err.message and "data.format" in (err.hint or "")
    as_jsonl = EN_DE.model_copy(update={"format": "jsonl"})
    assert read_examples(path, "translation", as_jsonl) == (EXPECTED, 0)


def test_data_format_wins_over_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("src\ttgt\na, b\tc\n", encoding="utf-8")
    tsv = FLAT.model_copy(update={"format": "tsv"})
    assert read_examples(path, "translation", tsv) == ([Example("a, b", "c")], 0)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    err = data_error(tmp_path / "nope.jsonl")
    assert "not found" in err.message and str(tmp_path / "nope.jsonl") in err.message
    (tmp_path / "dir.jsonl").mkdir()
    assert "folder" in data_error(tmp_path / "dir.jsonl").message


# --------------------------------------------------------------------------------------------- broken rows
def test_jsonl_broken_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n{\"translation\": {\"en\": \n",
                    encoding="utf-8")
    err = data_error(path)
    assert err.message.startswith("line 4 is not valid JSON")
    assert err.where == f"{path}:4"


def test_jsonl_line_not_an_object(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [ROWS[0], ["Hello", "Hallo"]])
    err = data_error(path)
    assert "line 2 is a JSON list" in err.message and err.where == f"{path}:2"


def test_missing_column_lists_available_and_suggests(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"documents": "long text", "summary": "short", "id": 1}])
    err = data_error(path, task="summarization", data=SUMM)
    assert "'document' not found" in err.message
    assert err.where == f"{path}:1 (available: documents, id, summary)"
    assert "did you mean 'documents'?" in err.hint


def test_missing_column_in_a_later_row_names_that_row(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [ROWS[0], ROWS[1], {"translation": {"en": "x", "fr": "y"}}])
    err = data_error(path)
    assert "'de' not found" in err.message
    assert err.where.startswith(f"{path}:3 ") and "available: en, fr" in err.where


def test_missing_csv_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["source", "tgt"], [["a", "b"]])
    err = data_error(path, data=FLAT)
    assert "'src' not found" in err.message and "available: source, tgt" in err.where


def test_translation_column_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"translation": "Hello ||| Hallo"}])
    err = data_error(path)
    assert "'translation' holds a str" in err.message
    assert "data.source_column" in err.hint
    assert "did you mean 'translation'" not in str(err)


def test_value_that_is_a_mapping_is_not_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [pair({"text": "Hello"}, "Hallo")])
    err = data_error(path)
    assert "'en' holds a dict" in err.message and err.where == f"{path}:1"


def test_empty_and_none_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [ROWS[0], pair("", "leer"), pair("   ", "x"), pair("x", "\n"), pair(None, "y"), pair("z", None), ROWS[1]]
    assert read_examples(write_jsonl(tmp_path / "t.jsonl", rows), "translation", EN_DE) == (EXPECTED[:2], 5)


def test_numbers_are_read_as_text(tmp_path: Path) -> None:
    rows = [pair("one", "eins"), pair(42, 4.5)]
    assert read_examples(write_jsonl(tmp_path / "t.jsonl", rows), "translation", EN_DE) == \
        ([Example("one", "eins"), Example("42", "4.5")], 0)


def test_a_column_of_numbers_is_not_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [pair("one", 1), pair("two", 2)])
    with pytest.raises(DataError, match=r"column 'de' holds numbers \(the first: 1\), not text") as err:
        read_examples(path, "translation", EN_DE)
    assert err.value.where == f"{path}:1"


def test_list_valued_fields_are_joined_by_newlines(tmp_path: Path) -> None:
    rows = [{"document": ["First sentence.", "Second one."], "summary": ["Short.", "Really."]}]
    got, _ = read_examples(write_jsonl(tmp_path / "t.jsonl", rows), "summarization", SUMM)
    assert got == [Example("First sentence.\nSecond one.", "Short.\nReally.")]


def test_surrounding_whitespace_is_stripped(tmp_path: Path) -> None:
    got, _ = read_examples(write_jsonl(tmp_path / "t.jsonl", [pair("  Hello \n", "\tHallo ")]), "translation", EN_DE)
    assert got == [Example("Hello", "Hallo")]


def test_limit(tmp_path: Path) -> None:
    got, _ = read_examples(write_jsonl(tmp_path / "t.jsonl", ROWS), "translation", EN_DE, limit=2)
    assert got == EXPECTED[:2]


# --------------------------------------------------------------------------------------------- languages, columns
def test_flat_translation_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"src": "Bonjour", "tgt": "Hola", "translation": "ignored"}])
    assert read_examples(path, "translation", FLAT) == ([Example("Bonjour", "Hola")], 0)


def test_other_language_pair_fr_es(tmp_path: Path) -> None:
    """Nothing assumes en/de: source and target are the recipe's keys, whatever else the mapping holds."""
    rows = [{"translation": {"es": "Hola mundo", "en": "Hello world", "fr": "Bonjour le monde"}},
            {"translation": {"fr": "Merci", "es": "Gracias"}}]
    fr_es = DataConfig(files={"train": "unused"}, source_lang="fr", target_lang="es")
    assert read_examples(write_jsonl(tmp_path / "t.jsonl", rows), "translation", fr_es) == \
        ([Example("Bonjour le monde", "Hola mundo"), Example("Merci", "Gracias")], 0)
    es_fr = fr_es.model_copy(update={"source_lang": "es", "target_lang": "fr"})
    assert read_examples(tmp_path / "t.jsonl", "translation", es_fr)[0][1] == Example("Gracias", "Merci")


def test_custom_translation_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"pair": {"no": "Hei", "sv": "Hej"}}])
    data = DataConfig(files={"train": "unused"}, source_lang="no", target_lang="sv", translation_column="pair")
    assert read_examples(path, "translation", data) == ([Example("Hei", "Hej")], 0)


# --------------------------------------------------------------------------------------------- read_splits
def make_recipe(task: str = "translation", **data: Any) -> Recipe:
    data = {"source_lang": "en", "target_lang": "de", **data} if task == "translation" else data
    return Recipe.model_validate({"task": task, "data": data, "tokenizer": {"train": {}},
                                  "model": {"architecture": "mbart"}, "train": {"max_steps": 1}})


def numbered(n: int) -> list[dict[str, Any]]:
    return [pair(f"sentence {i}", f"Satz {i}") for i in range(n)]


def is_subsequence(part: list[Example], whole: list[Example]) -> bool:
    it = iter(whole)
    return all(e in it for e in part)


@pytest.fixture
def train_200(tmp_path: Path) -> tuple[Path, list[Example]]:
    path = write_jsonl(tmp_path / "train.jsonl", numbered(200))
    return path, [Example(f"sentence {i}", f"Satz {i}") for i in range(200)]


def test_validation_is_carved_deterministically(train_200: tuple[Path, list[Example]]) -> None:
    path, everything = train_200
    recipe = make_recipe(files={"train": str(path)}, validation_fraction=0.1, split_seed=7)
    splits, report = read_splits(recipe)
    again, _ = read_splits(recipe)
    assert splits == again
    assert set(splits) == {"train", "validation"}
    assert len(splits["validation"]) == 20 and len(splits["train"]) == 180
    assert report.carved == ["validation"] and report.rows == {"train": 180, "validation": 20}
    # a partition of the file, each side in file order
    assert sorted([*splits["train"], *splits["validation"]], key=everything.index) == everything
    assert not set(splits["train"]) & set(splits["validation"])
    assert is_subsequence(splits["train"], everything) and is_subsequence(splits["validation"], everything)
    # random, not the last (or first) 10%
    assert splits["validation"] not in (everything[-20:], everything[:20])
    other, _ = read_splits(recipe.model_copy(update={"data": recipe.data.model_copy(update={"split_seed": 8})}))
    assert other["validation"] != splits["validation"]


def test_test_fraction(train_200: tuple[Path, list[Example]]) -> None:
    path, everything = train_200
    splits, report = read_splits(make_recipe(files={"train": str(path)}, validation_fraction=0.1,
                                             test_fraction=0.25))
    assert report.carved == ["validation", "test"]
    assert (len(splits["train"]), len(splits["validation"]), len(splits["test"])) == (135, 20, 45)
    sets = [set(splits[s]) for s in ("train", "validation", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(everything)
    assert splits == read_splits(make_recipe(files={"train": str(path)}, validation_fraction=0.1,
                                             test_fraction=0.25))[0]


def test_given_validation_and_test_files_are_not_carved(tmp_path: Path, train_200) -> None:
    path, everything = train_200
    dev = write_jsonl(tmp_path / "dev.jsonl", [pair("dev", "Entw")])
    test = write_jsonl(tmp_path / "test.jsonl", [pair("test", "Test"), pair("", "dropped")])
    splits, report = read_splits(make_recipe(files={"train": str(path), "validation": str(dev), "test": str(test)},
                                             test_fraction=0.5))
    assert splits["train"] == everything
    assert splits["validation"] == [Example("dev", "Entw")] and splits["test"] == [Example("test", "Test")]
    assert report.carved == []
    by_split = {f.split: f for f in report.files}
    assert (by_split["test"].rows, by_split["test"].dropped_empty) == (2, 1)
    assert len(by_split["train"].sha256) == 64


def test_max_samples_are_deterministic_and_keep_order(tmp_path: Path, train_200) -> None:
    path, everything = train_200
    dev = write_jsonl(tmp_path / "dev.jsonl", numbered(50))
    test = write_jsonl(tmp_path / "test.jsonl", numbered(40))
    recipe = make_recipe(files={"train": str(path), "validation": str(dev), "test": str(test)},
                         max_train_samples=30, max_eval_samples=10, split_seed=3)
    splits, report = read_splits(recipe)
    assert report.rows == {"train": 30, "validation": 10, "test": 10}
    assert is_subsequence(splits["train"], everything) and len(set(splits["train"])) == 30
    assert splits["train"] != everything[:30]  # a sample, not the head of a (possibly sorted) file
    assert is_subsequence(splits["validation"], everything[:50]) and is_subsequence(splits["test"], everything[:40])
    assert read_splits(recipe)[0] == splits
    bigger = make_recipe(files={"train": str(path)}, max_train_samples=10_000)
    assert len(read_splits(bigger)[0]["train"]) == 190  # a cap above the size keeps everything (less carved 5%)


def test_summarization_splits(tmp_path: Path) -> None:
    rows = [{"document": f"doc {i}", "summary": f"sum {i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    splits, _ = read_splits(make_recipe("summarization", files={"train": str(path)}, validation_fraction=0.25))
    assert len(splits["validation"]) == 10 and splits["train"][0].source.startswith("doc ")


def test_shipped_fixture_reads(repo_root: Path) -> None:
    path = repo_root / "tests/fixtures/ddtp-en-de.sample.jsonl"
    splits, report = read_splits(make_recipe(files={"train": str(path)}))
    assert sum(report.rows.values()) == 60 and len(splits["validation"]) == 3


# --------------------------------------------------------------------------------------------- read_splits errors
def _hostile(tmp_path: Path, kind: str) -> dict[str, str]:
    good = write_jsonl(tmp_path / "good.jsonl", numbered(20))
    if kind == "missing train":
        return {"train": str(tmp_path / "nope.jsonl")}
    if kind == "empty train":
        (tmp_path / "e.jsonl").write_text("")
        return {"train": str(tmp_path / "e.jsonl")}
    if kind == "all rows empty":
        return {"train": str(write_jsonl(tmp_path / "e.jsonl", [pair("", ""), pair(None, "x")]))}
    if kind == "one row, nothing to carve":
        return {"train": str(write_jsonl(tmp_path / "one.jsonl", [pair("a", "b")]))}
    if kind == "empty validation file":
        (tmp_path / "dev.jsonl").write_text("\n")
        return {"train": str(good), "validation": str(tmp_path / "dev.jsonl")}
    if kind == "broken test file":
        (tmp_path / "test.jsonl").write_text("{oops\n")
        return {"train": str(good), "test": str(tmp_path / "test.jsonl")}
    if kind == "latin-1 train":
        (tmp_path / "l.jsonl").write_bytes(json.dumps(pair("é", "è"), ensure_ascii=False).encode("latin-1"))
        return {"train": str(tmp_path / "l.jsonl")}
    if kind == "truncated gz":
        gz = gzip_file(write_jsonl(tmp_path / "t.jsonl", numbered(500)))
        gz.write_bytes(gz.read_bytes()[:-30])
        return {"train": str(gz)}
    if kind == "unknown extension":
        return {"train": str(write_jsonl(tmp_path / "t.data", numbered(5)))}
    if kind == "folder":
        (tmp_path / "folder.jsonl").mkdir()
        return {"train": str(tmp_path / "folder.jsonl")}
    if kind == "missing column":
        return {"train": str(write_jsonl(tmp_path / "m.jsonl", [{"translation": {"en": "a"}}]))}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing train", "empty train", "all rows empty", "one row, nothing to carve",
                                  "empty validation file", "broken test file", "latin-1 train", "truncated gz",
                                  "unknown extension", "folder", "missing column"])
def test_read_splits_errors_are_data_errors(tmp_path: Path, kind: str) -> None:
    recipe = make_recipe(files=_hostile(tmp_path, kind))
    with pytest.raises(DataError) as info:
        read_splits(recipe)
    assert info.value.exit_code == 3
    assert info.value.message


def test_offline_hub_dataset_is_a_data_error(tmp_path: Path) -> None:
    """Run in a subprocess: `datasets` reads the offline switches when it is first imported."""
    code = (
        "from hfpipe.pipeline.data import read_splits\n"
        "from hfpipe.recipe.schema import Recipe\n"
        "from hfpipe.errors import DataError\n"
        "r = Recipe.model_validate({'task': 'translation', 'data': {'hub_dataset': 'nobody/no-such-dataset',"
        " 'source_lang': 'en', 'target_lang': 'de'}, 'tokenizer': {'train': {}}, 'model': {'architecture': 'mbart'},"
        " 'train': {'max_steps': 1}})\n"
        "try:\n    read_splits(r)\nexcept DataError as e:\n    print('DataError', e.where, e.message)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("DataError data.hub_dataset cannot load Hub dataset 'nobody/no-such-dataset'"), \
        proc.stdout + proc.stderr
