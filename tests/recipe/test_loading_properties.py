"""Property-based tests of the recipe loader: whatever YAML a user writes and whatever `--set` overrides they pass,
`load_recipe` either returns a recipe or raises a RecipeError (exit 2 with a message); never another exception,
which the CLI would report as an internal error (exit 1)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hfpipe.errors import RecipeError
from hfpipe.recipe.loading import LoadedRecipe, load_recipe, recipe_to_yaml

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ddtp-en-de.sample.jsonl"

# A valid recipe: random changes to it reach the deeper checks (cross-section checks, gates, paths), which a
# random document that already fails the schema at the top level never gets to.
VALID = {
    "task": "translation",
    "data": {"files": {"train": str(FIXTURE)}, "source_lang": "en", "target_lang": "de"},
    "tokenizer": {"train": {"vocab_size": 1000}},
    "model": {"architecture": "mbart", "config": {"d_model": 64}},
    "train": {"max_steps": 10},
}

# Key names the schema knows (and a few near misses), so random documents hit real sections and fields.
KEYS = ["task", "data", "files", "train", "validation", "test", "source_lang", "target_lang", "source_column",
        "target_column", "format", "tokenizer", "from", "type", "vocab_size", "model", "architecture", "pretrained",
        "config", "d_model", "encoder", "decoder", "max_steps", "num_epochs", "max_minutes", "batch_size",
        "batch_tokens", "learning_rate", "lr_scheduler", "evaluate", "splits", "num_beams", "fail_below",
        "extra_metrics", "length_buckets", "push", "repo_id", "gates", "checks", "baseline", "significance",
        "distributed", "accelerate_config", "fsdp", "extends", "name", "<<", "max_stepz", "", "~", "0"]

# No /dev/zero here: a loader that reads it does not fail, it fills the memory of the test process. The CLI table
# (tests/cli/test_hostile_inputs.py) tries it in a subprocess under a timeout.
PATHS = ["/dev/null", "/", ".", "..", "~", "~nosuchuser/x", "a\x00b", "recipe.yaml", "missing.jsonl",
         "hub:", "hub:a/b", "package:", "package:nosuch/x", str(FIXTURE), "x" * 300]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(PATHS),
    st.text(max_size=20), st.sampled_from(["bleu>=25", "bleu>=baseline+0.5", "rougeL>=baseline*1.01", "bleu>",
                                           "translation", "summarization", "mbart", "unigram", "test", "cosine"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=5)),
    max_leaves=25,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)

# Text that looks like YAML: indentation, tabs, flow brackets, anchors, aliases, tags, directives, NUL.
YAML_BITS = ["\n", "  ", "\t", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b", "<<: *a", "!!python/name:os.system",
             "!!binary ", "%YAML 1.1\n", "---\n", "...\n", "'", '"', "#", "|", ">", "?", "\x00", "\ufeff", "task",
             "data", "train", "model", "files", "1e400", ".inf", ".nan", "~", "null", "yes", "no", "0x1F", "2024-01-01"]
yaml_text = st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=8)), max_size=40).map("".join)

override_keys = st.lists(st.sampled_from(KEYS), min_size=0, max_size=4).map(".".join)
override_values = st.one_of(st.text(max_size=20), st.sampled_from(
    ["", "[", "{a: 1}", "1e400", ".nan", "-1", "0", "10", "true", "null", "*a", "&a [*a]", "~", "/dev/null",
     "a\x00b", "~nosuchuser/x", "[1, [2, [3]]]", str(FIXTURE)]))
overrides = st.lists(st.one_of(st.tuples(override_keys, override_values).map("=".join), st.text(max_size=20)),
                     max_size=4)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _dump(doc: object) -> str:
    # yaml.safe_dump writes .nan/.inf and Python ints of any size; width keeps long strings on one line
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10_000)


def _load(folder: Path, text: str, sets: list[str]) -> LoadedRecipe | None:
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_recipe(path, sets)
    except RecipeError as err:
        assert err.exit_code == 2
        assert str(err).strip()  # something to print
        return None
    # What loads can be written to the run directory and hashed for --resume (a value that contains itself
    # would fail only there, after the data and tokenizer stages).
    assert yaml.safe_load(recipe_to_yaml(loaded.recipe))["task"] == loaded.recipe.task
    json.dumps(loaded.recipe.model_dump(mode="json", by_alias=True), allow_nan=False)
    return loaded


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recipes")


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=False, print_blob=True)


@PROPERTY
@given(doc=documents, sets=overrides)
@example(doc={"task": "translation", "extends": "/dev/null"}, sets=[])
@example(doc={"data": {"files": {"train": "a\x00b"}}}, sets=["data.files.train=~nosuchuser/x"])
def test_random_documents_load_or_raise_a_recipe_error(folder: Path, doc: dict, sets: list[str]) -> None:
    _load(folder, _dump(doc), sets)


@PROPERTY
@given(change=documents, sets=overrides)
@example(change={}, sets=[])  # the base recipe itself is valid: the property is not vacuous
def test_random_changes_to_a_valid_recipe(folder: Path, change: dict, sets: list[str]) -> None:
    loaded = _load(folder, _dump(_merge(VALID, change)), sets)
    if not change and not sets:
        assert loaded is not None and loaded.recipe.train.max_steps == 10


@PROPERTY
@given(text=yaml_text, sets=overrides)
@example(text="a: &a [*a]\n", sets=[])
@example(text="task: " + "[" * 3000 + "]" * 3000, sets=[])
@example(text="".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" if i else "l0: &l0 [x, x, x]\n"
                      for i in range(9)), sets=[])
def test_random_yaml_text(folder: Path, text: str, sets: list[str]) -> None:
    _load(folder, text, sets)


@PROPERTY
@given(sets=overrides)
@example(sets=["model.config.x=&a [*a]"])  # loaded, it could not be hashed: json.dumps raises on the cycle
def test_random_overrides_on_a_valid_recipe(folder: Path, sets: list[str]) -> None:
    loaded = _load(folder, _dump(VALID), sets)
    if loaded is not None:  # an accepted override took effect with the type the schema says
        assert isinstance(loaded.recipe.train.learning_rate, float)
        assert math.isfinite(loaded.recipe.train.learning_rate)
