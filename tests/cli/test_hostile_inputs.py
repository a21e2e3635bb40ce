"""Bad input, anywhere: a table of hostile inputs, each run the way a user would (`python -m hfpipe ...` in a
subprocess, under a timeout).

Every case checks the documented exit code (README, "Exit codes"), one message that says what and where (its key
words), no traceback without --debug, and that nothing is left behind that a later run would take as valid: no
model/config.json, no complete checkpoint, no cache entry made from the bad input.

Most cases use `hfpipe validate` or `hfpipe data`, which import no torch and take a second; the few that need
the model stage (`run`, `predict`, `tokenize`) are marked "heavy" in their ids and use a model of a few
thousand parameters.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/fixtures/ddtp-en-de.sample.jsonl"
LINES = FIXTURE.read_text(encoding="utf-8").splitlines()

# exit codes, as documented in the README and hfpipe/errors.py
OK, RECIPE, DATA, MODEL, RUNDIR = 0, 2, 3, 5, 7


# --------------------------------------------------------------------------------------------- building inputs
def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


BASE = {
    "task": "translation",
    "data": {"files": {"train": str(FIXTURE)}, "source_lang": "en", "target_lang": "de",
             "max_source_length": 48, "max_target_length": 48},
    "tokenizer": {"train": {"vocab_size": 100}},
    "model": {"architecture": "mbart",
              "config": {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
                         "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32,
                         "max_position_embeddings": 64, "dropout": 0.0}},
    "train": {"max_steps": 2, "batch_size": 8, "eval_samples": 4, "log_every_steps": 1},
    "evaluate": {"splits": [], "num_beams": 1, "max_new_tokens": 8},
}


def recipe(folder: Path, changes: dict | None = None, *, text: str | None = None, name: str = "r.yaml") -> Path:
    """A small valid translation recipe with `changes` merged in (None drops a key), or the given text."""
    path = folder / name
    if text is None:
        data = _merge(BASE, changes or {})
        text = yaml.safe_dump(_drop_none(data), sort_keys=False, allow_unicode=True, width=10_000)
    path.write_text(text, encoding="utf-8")
    return path


def _drop_none(d: dict) -> dict:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def with_train(folder: Path, name: str, content: bytes | str, **data: object) -> Path:
    """A recipe whose training file is `name` with `content` (and a good validation file, so that nothing is
    carved off: the case is about the training file alone)."""
    (folder / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    flat = {"source_column": "src", "target_column": "tgt"} if name.rsplit(".", 1)[-1] in ("csv", "tsv") else {}
    dev = LINES[:5]
    if flat or "source_column" in data:  # the validation file in the same columns, so it adds no error of its own
        dev = [json.dumps({"src": json.loads(x)["translation"]["en"], "tgt": json.loads(x)["translation"]["de"]})
               for x in dev]
    (folder / "dev.jsonl").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return recipe(folder, {"data": {"files": {"train": str(folder / name), "validation": str(folder / "dev.jsonl")},
                                    **flat, **data}})


def pair(en: object, de: object) -> str:
    return json.dumps({"translation": {"en": en, "de": de}}, ensure_ascii=False)


def alias_bomb() -> str:
    """A "billion laughs": nine levels of nine aliases each, 9**9 (387 million) values once expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\ntask: translation\n"


def alias_bomb_value() -> str:
    """The same bomb as one flow-style value, for --set."""
    levels = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "[" + ", ".join(levels) + "]"


# --------------------------------------------------------------------------------------------- the table
@dataclass
class Call:
    """One command line: args, environment changes (None unsets a variable), a file-size limit in bytes."""

    args: list[str]
    env: dict[str, str | None] = field(default_factory=dict)
    file_size_limit: int | None = None
    timeout: float = 60
    cache_may_hold: bool = False  # the case fails after the tokenizer stage, on good data


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Models], Call]
    code: int
    words: tuple[str, ...]  # each must be in the output: what went wrong and where


class Models:
    """Model folders for the model and tokenizer cases, built once per module (on first use) in-process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._good: Path | None = None

    def good(self) -> Path:
        """A tiny random MBart saved with save_pretrained, with the 100-token tokenizer it is sized for next to
        it; the cases copy it and break the copy."""
        if self._good is None:
            from transformers import MBartConfig, MBartForConditionalGeneration

            from hfpipe.pipeline.data_files import Example
            from hfpipe.pipeline.tokenization import train_tokenizer
            from hfpipe.recipe.schema import TokenizerTrainConfig

            tok_dir = self.folder / "tokenizer-100"
            examples = [Example(json.loads(x)["translation"]["en"], json.loads(x)["translation"]["de"]) for x in LINES]
            train_tokenizer(TokenizerTrainConfig(vocab_size=100), examples, tok_dir)
            vocab = len(json.loads((tok_dir / "tokenizer.json").read_text())["model"]["vocab"])
            good = self.folder / "good-model"
            config = MBartConfig(vocab_size=vocab, d_model=16, encoder_layers=1, decoder_layers=1,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                 decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                                 eos_token_id=2, decoder_start_token_id=2)
            MBartForConditionalGeneration(config).save_pretrained(good)
            for f in tok_dir.iterdir():
                shutil.copy(f, good / f.name)
            self._good = good
        return self._good

    def variant(self, folder: Path, name: str) -> Path:
        out = folder / name
        shutil.copytree(self.good(), out)
        return out


def _lines_in(folder: Path) -> Path:
    path = folder / "in.txt"
    path.write_text("hello world\na second line\n", encoding="utf-8")
    return path


def _predict(folder: Path, model: Path) -> Call:
    return Call(["predict", str(model), "--input", str(_lines_in(folder))], timeout=120)


def _no_weights(folder: Path, m: Models) -> Call:
    model = m.variant(folder, "no-weights")
    for f in model.glob("*.safetensors"):
        f.unlink()
    return _predict(folder, model)


def _corrupt_weights(folder: Path, m: Models) -> Call:
    model = m.variant(folder, "corrupt")
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json" + os.urandom(4000))
    return _predict(folder, model)


def _truncated_weights(folder: Path, m: Models) -> Call:
    model = m.variant(folder, "truncated")
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return _predict(folder, model)


def _tokenizer_bigger_than_model(folder: Path, m: Models) -> Call:
    model = m.variant(folder, "mismatch")
    config = json.loads((model / "config.json").read_text())
    config["vocab_size"] = 40  # the embeddings saved below have 40 rows; the tokenizer has 100 tokens
    (model / "config.json").write_text(json.dumps(config))
    from transformers import MBartConfig, MBartForConditionalGeneration

    MBartForConditionalGeneration(MBartConfig(**{k: v for k, v in config.items() if k in MBartConfig().to_dict()})
                                  ).save_pretrained(model)
    return _predict(folder, model)


def _run(folder: Path, changes: dict | None = None, *extra: str, **call: object) -> Call:
    return Call(["run", str(recipe(folder, changes)), "--run-dir", str(folder / "run"), *extra],
                timeout=240, **call)  # type: ignore[arg-type]


def _run_dir_is_a_file(folder: Path, m: Models) -> Call:
    (folder / "run").write_text("not a folder\n")
    return _run(folder)


def _run_dir_under_a_file(folder: Path, m: Models) -> Call:
    (folder / "blocker").write_text("a file where a folder should be\n")
    return Call(["run", str(recipe(folder)), "--run-dir", str(folder / "blocker" / "run")], timeout=240)


def _run_dir_not_writable(folder: Path, m: Models) -> Call:
    if os.geteuid() == 0:
        pytest.skip("running as root, where a folder's permissions do not stop writes (the run-dir-under-a-file "
                    "case covers a run directory that cannot be created)")
    parent = folder / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    return Call(["run", str(recipe(folder)), "--run-dir", str(parent / "run")], timeout=240)


def _resume_not_a_run(folder: Path, m: Models) -> Call:
    (folder / "run").mkdir()
    (folder / "run" / "notes.txt").write_text("not a run\n")
    return _run(folder, None, "--resume")


def _disk_full_in_checkpoint(folder: Path, m: Models) -> Call:
    # A model of ~100k parameters: its checkpoint (weights + Adam state, >1 MB) is the largest thing the run
    # writes; the tokenizer, the tokenized data and the logs stay well under the limit.
    big = {"model": {"config": {"d_model": 64, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128}}}
    return _run(folder, big, file_size_limit=300_000, cache_may_hold=True)


def _budget_of_a_billion_steps(folder: Path, m: Models) -> Call:
    return _run(folder, {"train": {"max_steps": 10**9, "max_minutes": 0.05}})


def _cache_is_a_file(folder: Path, m: Models) -> Call:
    (folder / "cache-file").write_text("a file where the cache folder should be\n")
    return Call(["tokenize", str(recipe(folder))], env={"HFPIPE_CACHE": str(folder / "cache-file" / "hfpipe")},
                timeout=120)


def _no_home(folder: Path, m: Models) -> Call:
    return Call(["validate", str(recipe(folder))], env={"HOME": None})


def _no_home_tokenize(folder: Path, m: Models) -> Call:
    return Call(["tokenize", str(recipe(folder))], env={"HOME": None}, timeout=120, cache_may_hold=True)


def _folder_as_train(folder: Path, m: Models) -> Call:
    (folder / "train.jsonl").mkdir()
    return Call(["validate", str(recipe(folder, {"data": {"files": {"train": str(folder / "train.jsonl")}}}))])


def _symlink_loop(folder: Path, m: Models) -> Call:
    (folder / "loop.jsonl").symlink_to("loop.jsonl")
    return Call(["validate", str(recipe(folder, text=recipe(folder).read_text().replace(str(FIXTURE), "loop.jsonl")))])


def _one_row_validate(folder: Path, m: Models) -> Call:
    (folder / "one.jsonl").write_text(LINES[0] + "\n", encoding="utf-8")
    return Call(["validate", str(recipe(folder, {"data": {"files": {"train": str(folder / "one.jsonl")}}}))])


def _not_a_tokenizer(folder: Path, m: Models) -> Call:
    (folder / "not-a-tokenizer").mkdir()
    (folder / "not-a-tokenizer" / "notes.txt").write_text("no tokenizer files here\n")
    changes = {"tokenizer": {"train": None, "from": str(folder / "not-a-tokenizer")}}
    return Call(["tokenize", str(recipe(folder, changes))], timeout=120)


def _v(changes: dict | None = None, *extra: str, text: str | None = None) -> Callable[[Path, Models], Call]:
    return lambda folder, m: Call(["validate", str(recipe(folder, changes, text=text)), *extra])


def _vt(name: str, content: bytes | str, **data: object) -> Callable[[Path, Models], Call]:
    return lambda folder, m: Call(["validate", str(with_train(folder, name, content, **data))])


def _data(name: str, content: bytes | str, *, validation: bool = True) -> Callable[[Path, Models], Call]:
    def build(folder: Path, m: Models) -> Call:
        path = with_train(folder, name, content)
        if not validation:
            path = recipe(folder, {"data": {"files": {"train": str(folder / name)}}})
        return Call(["data", str(path)])
    return build


def _file(text: str | bytes, name: str = "r.yaml", *extra: str, command: str = "validate"
          ) -> Callable[[Path, Models], Call]:
    def build(folder: Path, m: Models) -> Call:
        path = folder / name
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        return Call([command, str(path), *extra])
    return build


GOOD_JSONL = "\n".join(LINES[:40]) + "\n"
BAD_LINE_37 = "\n".join(LINES[:36] + ['{"translation": {"en": "unterminated", "de": "x"}'] + LINES[37:45]) + "\n"
CSV_OK = "src,tgt\nhello world,hallo Welt\ngood morning,guten Morgen\nthank you,danke\n"

CASES = [
    # ---- recipes: syntax
    Case("yaml-syntax-error", _file("task: translation\ndata: [files\nmodel: x\n"), RECIPE,
         ("not valid YAML", "r.yaml:3")),
    Case("yaml-tab-indentation", _file("task: translation\ndata:\n\tfiles: {train: x.jsonl}\n"), RECIPE,
         ("not valid YAML", "cannot start any token", "r.yaml:3")),
    Case("yaml-alias-bomb", _file(alias_bomb()), RECIPE, ("billion laughs", "more than 20,000 values", "r.yaml")),
    Case("yaml-alias-inside-its-anchor", _file("task: translation\nmodel: &m {config: [*m]}\n"), RECIPE,
         ("refers to itself", "r.yaml:2")),
    Case("yaml-nested-5000-deep", _file("task: " + "[" * 5000 + "]" * 5000 + "\n"), RECIPE,
         ("nested too deeply", "r.yaml")),
    Case("yaml-nested-100-deep", _file("model:\n  config:\n    x: " + "[" * 100 + "]" * 100 + "\n"), RECIPE,
         ("nested more than 64 levels", "r.yaml:3")),
    Case("yaml-python-tag", _file("task: !!python/object/apply:os.system [echo pwned]\n"), RECIPE,
         ("not valid YAML", "r.yaml:1")),
    Case("recipe-not-utf8", _file("task: translation\nname: caf\xe9\n".encode("latin-1")), RECIPE,
         ("cannot read recipe", "utf-8", "r.yaml")),
    Case("recipe-with-nul-bytes", _file(b"task: trans\x00lation\n"), RECIPE, ("not valid YAML", "r.yaml:1")),
    Case("recipe-is-a-list", _file("- task: translation\n- data: {}\n"), RECIPE, ("must be a mapping", "got list")),
    Case("recipe-is-empty", _file(""), RECIPE, ("task: required key is missing", "train: required key is missing")),
    Case("recipe-is-dev-zero", lambda folder, m: Call(["validate", "/dev/zero"], timeout=30), RECIPE,
         ("not a regular file", "/dev/zero")),
    Case("recipe-is-a-folder", lambda folder, m: Call(["validate", str(folder)]), RECIPE,
         ("not a regular file",)),
    Case("recipe-missing", lambda folder, m: Call(["validate", str(folder / "nope.yaml")]), RECIPE,
         ("recipe file not found", "nope.yaml")),
    Case("recipe-huge-file", _file("task: translation\n" + "# padding\n" * 200_000), RECIPE,
         ("bytes; a recipe is a few KB", "r.yaml")),
    Case("recipe-duplicate-key", _v(text=yaml.safe_dump(BASE, sort_keys=False) + "task: summarization\n"), RECIPE,
         ("duplicate key", "task", "r.yaml:")),
    Case("recipe-extends-cycle", _file("extends: r.yaml\ntask: translation\n"), RECIPE, ("forms a cycle", "r.yaml")),
    Case("recipe-extends-dev-zero", _file("extends: /dev/zero\ntask: translation\n"), RECIPE,
         ("not a regular file", "/dev/zero")),
    # ---- recipes: types
    Case("type-max-steps-a-word", _v({"train": {"max_steps": "many"}}), RECIPE,
         ("train.max_steps", "valid integer", "r.yaml:")),
    Case("type-data-a-list", _v({"data": ["train.jsonl"]}), RECIPE, ("data", "dictionary")),
    Case("type-num-beams-a-list", _v({"evaluate": {"num_beams": [4]}}), RECIPE, ("evaluate.num_beams", "integer")),
    Case("type-task-unknown", _v({"task": "translate"}), RECIPE, ("task", "'translation'")),
    Case("type-learning-rate-inf", _v({"train": {"learning_rate": float("inf")}}), RECIPE,
         ("train.learning_rate", "finite number")),
    # ---- recipes: unknown keys at every level
    Case("unknown-key-top", _v({"modle": {"architecture": "mbart"}}), RECIPE, ("unknown key 'modle'", "'model'")),
    Case("unknown-key-data-files", _v({"data": {"files": {"tran": "x.jsonl"}}}), RECIPE,
         ("data.files.tran", "did you mean 'train'")),
    Case("unknown-key-tokenizer-train", _v({"tokenizer": {"train": {"vocab": 100}}}), RECIPE,
         ("tokenizer.train.vocab", "did you mean 'vocab_size'")),
    Case("unknown-key-evaluate", _v({"evaluate": {"num_beam": 4}}), RECIPE,
         ("evaluate.num_beam", "did you mean 'num_beams'")),
    Case("unknown-key-push", _v({"push": {"repo": "me/model"}}), RECIPE, ("push.repo", "did you mean 'repo_id'")),
    Case("unknown-key-model-config-heavy", lambda folder, m: _run(folder, {"model": {"config": {"d_modle": 32}}},
                                                                   cache_may_hold=True), MODEL,
         ("unknown MBartConfig keys in model.config", "'d_modle'", "did you mean 'd_model'")),
    # ---- recipes: absurd sizes
    Case("size-vocab-0", _v({"tokenizer": {"train": {"vocab_size": 0}}}), RECIPE,
         ("tokenizer.train.vocab_size", "greater than or equal to 100")),
    Case("size-vocab-1e9", _v({"tokenizer": {"train": {"vocab_size": 10**9}}}), RECIPE,
         ("tokenizer.train.vocab_size", "less than or equal to 1000000")),
    Case("size-batch-0", _v({"train": {"batch_size": 0}}), RECIPE, ("train.batch_size", "greater than 0")),
    Case("size-heads-do-not-divide-d-model", _v({"model": {"config": {"encoder_attention_heads": 3}}}), RECIPE,
         ("model.config.d_model (16) must be divisible by model.config.encoder_attention_heads (3)",)),
    Case("size-heads-do-not-divide-d-model-heavy", lambda folder, m: _run(
        folder, {"model": {"config": {"decoder_attention_heads": 5}}}, cache_may_hold=True), MODEL,
         ("cannot build mbart", "divisible by model.config.decoder_attention_heads (5)")),
    Case("size-d-model-1e7", _v({"model": {"config": {"d_model": 10**7}}}), RECIPE,
         ("billion parameters", "GiB of memory", "d_model")),
    Case("size-d-model-negative", _v({"model": {"config": {"d_model": -16}}}), RECIPE,
         ("model.config.d_model must be a whole number of at least 1, got -16",)),
    Case("size-layers-1e9-t5", _v({"model": {"architecture": "t5", "config": {"num_layers": 10**9}}}), RECIPE,
         ("billion parameters",)),
    Case("size-steps-1e9-validate", _v({"train": {"max_steps": 10**9}}), OK, ("recipe is valid",)),
    Case("size-steps-1e9-is-a-budget-heavy", _budget_of_a_billion_steps, OK, ("run directory",)),
    # ---- data
    Case("data-empty-file", _vt("train.jsonl", ""), DATA, ("data.files.train", "no rows", "train.jsonl")),
    Case("data-header-only-csv", _vt("train.csv", "src,tgt\n"), DATA, ("no rows", "only a header", "train.csv")),
    Case("data-ragged-csv-extra-field", _vt("train.csv", CSV_OK + "a,b,c\n"), DATA,
         ("line 5 has more fields than the header", "train.csv:5")),
    Case("data-ragged-csv-missing-field", _vt("train.csv", CSV_OK + "only a source\n" + "x,y\n"), DATA,
         ("line 5 has 1 field(s), fewer than the header (2)", "train.csv:5")),
    Case("data-json-line-is-an-array", _vt("train.jsonl", "\n".join(LINES[:3] + ['["en", "de"]'] + LINES[3:6])),
         DATA, ("line 4 is a JSON list, not an object", "train.jsonl:4")),
    Case("data-one-bad-line", _vt("train.jsonl", BAD_LINE_37), DATA,
         ("line 37 is not valid JSON", "train.jsonl:37")),
    Case("data-mixed-encodings", _vt("train.jsonl", (GOOD_JSONL + pair("café", "Kaffee") + "\n").encode("utf-8")
                                     + (pair("thé", "Tee") + "\n").encode("latin-1")), DATA,
         ("line 42 is not UTF-8", "train.jsonl:42", "iconv")),
    Case("data-nul-byte-jsonl", _vt("train.jsonl", GOOD_JSONL.replace("\n", "\x00\n", 3)), DATA,
         ("line 1 contains a NUL byte", "train.jsonl:1")),
    Case("data-nul-byte-csv", _vt("train.csv", CSV_OK.replace("danke", "dan\x00ke")), DATA,
         ("line 4 contains a NUL byte", "train.csv:4")),
    Case("data-utf16-file", _vt("train.jsonl", GOOD_JSONL.encode("utf-16")), DATA, ("not UTF-8", "train.jsonl:1")),
    Case("data-all-targets-empty", _vt("train.jsonl", "\n".join(pair(f"source {i}", "") for i in range(9))), DATA,
         ("no usable rows", "all 9 rows have an empty source or target", "train.jsonl")),
    Case("data-source-column-of-numbers",
         _vt("train.jsonl", "\n".join(json.dumps({"src": i, "tgt": f"Zahl {i}"}) for i in range(9)),
             source_column="src", target_column="tgt"), DATA,
         ("column 'src' holds numbers (the first: 0), not text", "train.jsonl:1")),
    Case("data-translation-column-a-string", _vt("train.jsonl", json.dumps({"translation": "hallo"}) + "\n"), DATA,
         ("column 'translation' holds a str", "train.jsonl:1")),
    Case("data-missing-column", _vt("train.jsonl", GOOD_JSONL, target_lang="fr"), DATA,
         ("column 'fr' not found", "available: de, en")),
    Case("data-folder-instead-of-file", _folder_as_train, DATA, ("found a folder", "train.jsonl")),
    Case("data-symlink-loop", _symlink_loop, DATA, ("not found", "loop.jsonl")),
    Case("data-dev-zero", lambda folder, m: Call(["validate", str(recipe(folder, {"data": {
        "files": {"train": "/dev/zero"}, "format": "jsonl"}}))], timeout=30), DATA,
         ("not a regular file: /dev/zero",)),
    Case("data-one-row-split", _data("train.jsonl", LINES[0] + "\n", validation=False), DATA,
         ("too few to carve off a held-out split",)),
    Case("data-one-row-split-validate", _one_row_validate, DATA,
         ("1 usable row(s) are too few to carve off a validation split", "data.files.validation")),
    Case("data-truncated-gzip", _vt("train.jsonl.gz", gzip.compress(GOOD_JSONL.encode())[:300]), DATA,
         ("cannot read train.jsonl.gz", "truncated")),
    Case("data-unknown-extension", _vt("train.txt", GOOD_JSONL), DATA, ("cannot tell the format of train.txt",)),
    Case("data-json-not-a-list", _vt("train.json", '{"rows": []}'), DATA, ("must hold a list of objects",)),
    Case("data-csv-field-over-limit", _vt("train.csv", 'src,tgt\n"' + "x" * 1_100_000 + '",y\n'), DATA,
         ("line 2 is not valid CSV", "field larger than field limit", "train.csv:2")),
    Case("data-missing-file", _v({"data": {"files": {"train": "nowhere/train.jsonl"}}}), DATA,
         ("not found", "nowhere/train.jsonl")),
    Case("data-command-bad-line", _data("train.jsonl", BAD_LINE_37), DATA,
         ("line 37 is not valid JSON", "train.jsonl:37")),
    # ---- models and tokenizers
    Case("model-folder-without-weights-heavy", _no_weights, MODEL, ("cannot load the model", "no-weights")),
    Case("model-corrupt-safetensors-heavy", _corrupt_weights, MODEL, ("cannot load the model", "corrupt")),
    Case("model-truncated-safetensors-heavy", _truncated_weights, MODEL, ("cannot load the model", "truncated")),
    Case("model-tokenizer-bigger-than-model-heavy", _tokenizer_bigger_than_model, MODEL,
         ("the tokenizer has 100 tokens but the model's embeddings have 40 rows", "mismatch")),
    Case("model-tokenizer-from-not-a-tokenizer-heavy", _not_a_tokenizer, MODEL,
         ("cannot load the tokenizer", "not-a-tokenizer")),
    # ---- the environment
    Case("env-run-dir-not-writable-heavy", _run_dir_not_writable, RUNDIR,
         ("cannot create the run directory", "Permission denied")),
    Case("env-run-dir-under-a-file-heavy", _run_dir_under_a_file, RUNDIR,
         ("cannot create the run directory", "blocker")),
    Case("env-disk-full-in-checkpoint-heavy", _disk_full_in_checkpoint, RUNDIR,
         ("could not be written: File too large", "checkpoints", "model.safetensors")),
    Case("env-cache-under-a-file-heavy", _cache_is_a_file, RUNDIR,
         ("cannot write the hfpipe cache", "cache-file", "HFPIPE_CACHE")),
    Case("env-no-home", _no_home, OK, ("recipe is valid",)),
    Case("env-no-home-tokenize-heavy", _no_home_tokenize, OK, ("tokenizer: vocabulary",)),
    # ---- the command line
    Case("cli-unknown-flag", lambda folder, m: Call(["validate", str(recipe(folder)), "--frobnicate"]), RECIPE,
         ("No such option", "--frobnicate")),
    Case("cli-unknown-command", lambda folder, m: Call(["frobnicate"]), RECIPE, ("No such command", "frobnicate")),
    Case("cli-set-missing-key", _v(None, "--set", "train.nonexistent=1"), RECIPE,
         ("train.nonexistent (--set train.nonexistent=1)", "unknown key 'nonexistent'")),
    Case("cli-set-below-a-value", _v(None, "--set", "train.max_steps.x=1"), RECIPE,
         ("train.max_steps (--set train.max_steps.x=1)", "valid integer")),
    Case("cli-set-alias-bomb", lambda folder, m: Call(["validate", str(recipe(folder)), "--set",
                                                      f"model.config.x={alias_bomb_value()}"], timeout=30), RECIPE,
         ("model.config.x", "billion laughs", "--set model.config.x=")),
    Case("cli-set-value-contains-itself", _v(None, "--set", "model.config.x=&a [*a]"), RECIPE,
         ("model.config.x", "refers to itself")),
    Case("cli-gate-syntax", _v(None, "--gate", "bleu>>25"), RECIPE, ("gates.checks[0]", "bleu>>25")),
    Case("cli-set-without-equals", _v(None, "--set", "train.max_steps"), RECIPE,
         ("expected KEY.PATH=VALUE", "'train.max_steps'")),
    Case("cli-set-path-of-unknown-user", _v(None, "--set", "data.files.train=~nosuchuser/t.jsonl"), DATA,
         ("not found", "~nosuchuser/t.jsonl")),
    Case("cli-evaluate-not-a-run-heavy", lambda folder, m: Call(["evaluate", str(folder)], timeout=120), RUNDIR,
         ("is not a run directory", "--recipe")),
    Case("cli-resume-not-a-run-heavy", _resume_not_a_run, RUNDIR, ("cannot resume", "not a run directory", "run")),
    Case("cli-resume-without-run-dir-heavy", lambda folder, m: Call(["run", str(recipe(folder)), "--resume"],
                                                                    timeout=120), RUNDIR,
         ("--resume needs --run-dir",)),
    Case("cli-run-dir-is-a-file-heavy", _run_dir_is_a_file, RUNDIR, ("is a file, not a folder", "run")),
]


# Cases whose one bad input is rightly reported as several problems (every missing section of an empty recipe, a
# wrong column name that both data files lack).
SEVERAL_PROBLEMS = {"recipe-is-empty", "data-missing-column"}


# --------------------------------------------------------------------------------------------- running a case
_BOX = re.compile(r"[│╭╮╰╯─•]")


def normalise(text: str) -> str:
    """The output with rich's panel borders removed and whitespace collapsed, so a message that wraps across
    panel lines still reads as one sentence."""
    return " ".join(_BOX.sub(" ", text).split())


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        # Without this the kernel kills the process with SIGXFSZ; ignored, a write past the limit fails with
        # EFBIG, as a full disk fails with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def run_call(call: Call, folder: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HFPIPE_DEBUG", "RANK", "LOCAL_RANK")}
    env.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                "HFPIPE_CACHE": str(folder / "cache"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "COLUMNS": "300", "PYTHONIOENCODING": "utf-8", "MPLCONFIGDIR": str(folder / "mpl")})
    for key, value in call.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = subprocess.run([sys.executable, "-m", "hfpipe", *call.args], cwd=folder, env=env, capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=call.timeout,
                          preexec_fn=_limit_file_size(call.file_size_limit) if call.file_size_limit else None)
    return proc.returncode, proc.stdout + proc.stderr


def _status(manifest: Path) -> str | None:
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("status")
    except ValueError:
        return None


def leftovers(folder: Path, call: Call, code: int) -> list[str]:
    """What a later run or command would take as a valid result of this failed one (the module's model folders
    live elsewhere)."""
    found = [str(p) for p in folder.rglob("config.json") if p.parent.name in ("model", "best")]
    found += [str(p) for p in folder.rglob("checkpoints/step-*/trainer_state.json")]
    found += [str(p) for p in folder.rglob("manifest.json") if _status(p) == "finished"]
    cache = folder / "cache"
    if code != OK and not call.cache_may_hold and cache.exists():
        found += [str(p) for p in cache.rglob("*") if p.name in ("tokenizer.json", "dataset_dict.json")]
    return found


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return Models(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, models: Models) -> None:
    call = case.build(tmp_path, models)
    code, out = run_call(call, tmp_path)
    text = normalise(out)
    assert code == case.code, f"exit {code}, expected {case.code}:\n{out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]
    assert "Internal error" not in out, out[-4000:]
    for words in case.words:
        assert normalise(words) in text, f"{words!r} not in:\n{out[-4000:]}"
    if case.code in (RECIPE, DATA) and "problems" in text.split(" fix:")[0]:
        assert case.name in SEVERAL_PROBLEMS, f"more than one problem reported for one bad input:\n{out[-4000:]}"
    if case.code != OK:
        # One message: one hfpipe error panel, or one usage error from the command-line parser.
        panels = out.count(f"(exit {case.code})")
        usage = out.count("Usage:")
        assert (panels, usage) in ((1, 0), (0, 1)), out[-4000:]
    if case.code != OK:
        assert not leftovers(tmp_path, call, case.code), leftovers(tmp_path, call, case.code)
