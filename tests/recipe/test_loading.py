"""Recipe loading: YAML with line numbers, did-you-mean for unknown keys, all errors at once, `extends:`, `--set`,
path resolution and the cross-field checks. Every recipe here is a real file in tmp_path."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from hfpipe.errors import RecipeError
from hfpipe.recipe.loading import load_recipe

BASE = """\
task: translation
data:
  files:
    train: data/train.jsonl
  source_lang: en
  target_lang: de
tokenizer:
  train:
    vocab_size: 1000
model:
  architecture: mbart
  config:
    d_model: 64
    encoder_layers: 2
train:
  max_steps: 10
  learning_rate: 3e-4
"""


def write(folder: Path, name: str, text: str) -> Path:
    """Write a recipe, and the data file BASE names beside it (so only the tests about files see a missing one)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "train.jsonl").touch()
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of `path` containing `needle`."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def recipe_error(path: Path, overrides: list[str] | None = None) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value


# --------------------------------------------------------------------------------------------- plain loading
def test_base_recipe_loads_with_typed_values(tmp_path: Path) -> None:
    loaded = load_recipe(write(tmp_path, "r.yaml", BASE))
    r = loaded.recipe
    assert r.task == "translation"
    assert r.train.max_steps == 10 and isinstance(r.train.max_steps, int)
    assert r.model.config == {"d_model": 64, "encoder_layers": 2}
    assert loaded.name == "r"


def test_scientific_notation_in_yaml_is_a_float(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads 3e-4 as the string '3e-4'; the loader must read a float. model.config is a free
    dict, so pydantic does not coerce what the YAML reader produced."""
    text = BASE.replace("    encoder_layers: 2\n",
                        "    a: 3e-4\n    b: 1E5\n    c: -2.5e-3\n    d: 1_000\n    e: '3e-4'\n    f: .5\n")
    loaded = load_recipe(write(tmp_path, "r.yaml", text))
    assert loaded.raw["train"]["learning_rate"] == 0.0003
    assert isinstance(loaded.raw["train"]["learning_rate"], float)
    assert loaded.recipe.train.learning_rate == pytest.approx(3e-4)
    cfg = loaded.recipe.model.config
    assert cfg["a"] == 0.0003 and isinstance(cfg["a"], float)
    assert cfg["b"] == 100000.0 and isinstance(cfg["b"], float)
    assert cfg["c"] == -0.0025
    assert cfg["d"] == 1000 and isinstance(cfg["d"], int)
    assert cfg["e"] == "3e-4"  # quoted stays a string
    assert cfg["f"] == 0.5


def test_language_code_no_is_not_a_boolean(tmp_path: Path) -> None:
    """YAML 1.1 reads `no` (Norwegian) and `on` as booleans; language codes must stay strings, while boolean
    fields still accept yes/no/off."""
    text = BASE.replace("source_lang: en", "source_lang: no").replace("target_lang: de", "target_lang: on")
    text += "push:\n  enabled: off\n  create_pr: yes\n"
    r = load_recipe(write(tmp_path, "r.yaml", text)).recipe
    assert r.data.source_lang == "no"
    assert r.data.target_lang == "on"
    assert r.push.enabled is False and r.push.create_pr is True
    r2 = load_recipe(write(tmp_path, "r2.yaml", BASE), ["data.target_lang=no", "push.enabled=false"]).recipe
    assert r2.data.target_lang == "no"
    assert r2.push.enabled is False


def test_summarization_recipe_needs_no_languages(tmp_path: Path) -> None:
    text = BASE.replace("task: translation", "task: summarization").replace("  source_lang: en\n", "") \
        .replace("  target_lang: de\n", "  text_column: body\n  summary_column: abstract\n")
    r = load_recipe(write(tmp_path, "r.yaml", text)).recipe
    assert (r.task, r.data.text_column, r.data.summary_column) == ("summarization", "body", "abstract")
    assert r.primary_metric == "rougeL"


# --------------------------------------------------------------------------------------------- unknown keys
def test_unknown_nested_key_has_did_you_mean_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE.replace("learning_rate:", "lerning_rate:"))
    err = recipe_error(path)
    assert len(err.details) == 1
    detail = err.details[0]
    assert detail.startswith("train.lerning_rate")
    assert "did you mean 'learning_rate'?" in detail
    assert f"{path}:{line_of(path, 'lerning_rate')}" in detail


def test_unknown_top_level_key_has_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE.replace("model:", "modle:"))
    err = recipe_error(path)
    text = str(err)
    assert "unknown key 'modle'; did you mean 'model'?" in text
    assert f"{path}:{line_of(path, 'modle')}" in text
    # the real key is then missing: said too, in the same error
    assert any(d.startswith("model:") and "missing" in d for d in err.details), err.details


def test_unknown_key_suggests_the_yaml_alias(tmp_path: Path) -> None:
    """TokenizerConfig.from_ is written `from` in YAML: the suggestion must be the YAML spelling."""
    text = BASE.replace("tokenizer:\n  train:\n    vocab_size: 1000\n", "tokenizer:\n  form: some/tokenizer\n")
    err = recipe_error(write(tmp_path, "r.yaml", text))
    assert "tokenizer.form" in str(err)
    assert "did you mean 'from'?" in str(err)


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    text = BASE.replace("  max_steps: 10\n", "  max_steps: 10\n  zzzqqq: 1\n")
    err = recipe_error(write(tmp_path, "r.yaml", text))
    (detail,) = err.details
    assert "unknown key 'zzzqqq'" in detail and "valid keys:" in detail and "learning_rate" in detail


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (BASE.replace("learning_rate:", "lerning_rate:")
            .replace("max_steps: 10", "max_steps: -3")
            .replace("vocab_size: 1000", "vocab_size: 1000\n    typ: bpe")
            .replace("task: translation", "task: translashun"))
    path = write(tmp_path, "r.yaml", text)
    err = recipe_error(path)
    assert len(err.details) == 4, err.details
    assert err.message.startswith("4 problems in recipe")
    joined = "\n".join(err.details)
    for key in ("train.lerning_rate", "train.max_steps", "tokenizer.train.typ", "task"):
        assert any(d.startswith(key) for d in err.details), (key, joined)
    assert "did you mean 'type'?" in joined
    assert f"{path}:{line_of(path, 'max_steps')}" in joined


def test_duplicate_keys_are_an_error_not_silently_last_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "  learning_rate: 1e-2\n")
    err = recipe_error(path)
    text = str(err)
    assert "duplicate key" in text
    assert "train.learning_rate" in text
    first, second = (i for i, line in enumerate(path.read_text().splitlines(), 1) if "learning_rate" in line)
    assert f"{path}:{first}" in text and f"{path}:{second}" in text


# --------------------------------------------------------------------------------------------- broken files
def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "task: translation\ntrain:\n  max_steps: 10\n   batch_size: 3\n")
    err = recipe_error(path)
    assert "not valid YAML" in err.message
    assert re.fullmatch(re.escape(str(path)) + r":4:\d+", err.where), err.where


def test_tab_indentation_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "task: translation\ndata:\n\tfiles: {}\n")
    err = recipe_error(path)
    assert err.where == f"{path}:3:1"


@pytest.mark.parametrize("text, kind", [("- task: translation\n- data: {}\n", "list"), ("just a string\n", "str"),
                                        ("42\n", "int")])
def test_recipe_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", text))
    assert "must be a mapping" in err.message and kind in err.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_recipe_lists_the_required_sections(tmp_path: Path, text: str) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", text))
    for section in ("task", "data", "model", "train"):
        assert any(d.startswith(f"{section}:") and "missing" in d for d in err.details), (section, err.details)


def test_missing_required_sections(tmp_path: Path) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", "task: translation\n"))
    missing = sorted(d.split(":")[0] for d in err.details if "required key is missing" in d)
    assert missing == ["data", "model", "train"]


def test_missing_recipe_file(tmp_path: Path) -> None:
    err = recipe_error(tmp_path / "nope.yaml")
    assert "not found" in err.message and "nope.yaml" in err.message


def test_non_utf8_recipe_is_a_recipe_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(BASE.replace("translation", "traducci\u00f3n").encode("latin-1"))
    err = recipe_error(path)
    assert "cannot read recipe" in err.message


# --------------------------------------------------------------------------------------------- extends
def test_extends_deep_merges_with_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "base/data/train.jsonl", "{}\n")
    write(tmp_path, "base/base.yaml", BASE)
    child = write(tmp_path, "experiments/small/child.yaml", """\
        extends: ../../base/base.yaml
        model:
          config:
            d_model: 32
        train:
          batch_size: 8
        """)
    monkeypatch.chdir(tmp_path / "experiments")  # neither the base's nor the child's folder
    r = load_recipe(Path("small/child.yaml")).recipe
    # the child's keys win, the base's siblings stay (deep merge, not replace)
    assert r.model.config == {"d_model": 32, "encoder_layers": 2}
    assert r.model.architecture == "mbart"
    assert (r.train.batch_size, r.train.max_steps, r.train.learning_rate) == (8, 10, 3e-4)
    # the base's relative data path is relative to the base file, not to the child or the cwd
    assert Path(r.data.files.train) == (tmp_path / "base/data/train.jsonl").resolve()
    assert load_recipe(child).name == "child"


def test_extends_child_data_path_is_relative_to_the_child(tmp_path: Path) -> None:
    write(tmp_path, "base/base.yaml", BASE)
    child = write(tmp_path, "child/child.yaml", "extends: ../base/base.yaml\ndata:\n  files:\n    train: mine.jsonl\n")
    r = load_recipe(child).recipe
    assert Path(r.data.files.train) == (tmp_path / "child/mine.jsonl").resolve()
    assert r.data.source_lang == "en"


def test_extends_errors_point_into_the_file_that_wrote_them(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE.replace("max_steps: 10", "max_steps: 10\n  warmup_stpes: 5"))
    child = write(tmp_path, "child.yaml", "extends: base.yaml\ntrain:\n  batch_sise: 8\n")
    err = recipe_error(child)
    joined = "\n".join(err.details)
    assert len(err.details) == 2, joined
    assert f"{base}:{line_of(base, 'warmup_stpes')}" in joined and "did you mean 'warmup_steps'?" in joined
    assert f"{child}:3" in joined and "did you mean 'batch_size'?" in joined


def test_extends_null_drops_the_parent_section(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml",
                  "extends: base.yaml\ntokenizer:\n  train: null\n  from: ./tok\nmodel:\n  config: null\n")
    r = load_recipe(child).recipe
    assert r.tokenizer.train is None and r.tokenizer.from_ == str((tmp_path / "tok").resolve())
    assert r.model.config == {}


def test_extends_cycle_is_detected(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: sub/c.yaml\n")
    write(tmp_path, "sub/c.yaml", "extends: ../a.yaml\n")
    err = recipe_error(tmp_path / "a.yaml")
    assert "cycle" in err.message
    assert "a.yaml → b.yaml → c.yaml → a.yaml" in err.message


def test_extends_itself_is_a_cycle(tmp_path: Path) -> None:
    err = recipe_error(write(tmp_path, "self.yaml", "extends: self.yaml\n" + BASE))
    assert "cycle" in err.message


def test_extends_missing_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "child.yaml", "task: translation\nextends: ../nowhere.yaml\n")
    err = recipe_error(path)
    assert "does not exist" in err.message and "nowhere.yaml" in err.message
    assert err.where == f"{path}:2"


def test_extends_must_be_a_path(tmp_path: Path) -> None:
    err = recipe_error(write(tmp_path, "child.yaml", "extends: [a.yaml, b.yaml]\n"))
    assert "`extends` must be a path" in err.message


# --------------------------------------------------------------------------------------------- --set
def test_set_override_is_parsed_and_typed(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE)
    r = load_recipe(path, ["train.learning_rate=3e-4", "train.max_steps=25", "evaluate.splits=[validation, test]",
                           "train.group_by_length=false", "model.config.d_model=128"]).recipe
    assert r.train.learning_rate == 0.0003 and isinstance(r.train.learning_rate, float)
    assert r.train.max_steps == 25
    assert r.evaluate.splits == ["validation", "test"]
    assert r.train.group_by_length is False
    assert r.model.config == {"d_model": 128, "encoder_layers": 2}


def test_set_bad_type_names_the_key(tmp_path: Path) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", BASE), ["train.max_steps=abc"])
    (detail,) = err.details
    assert detail.startswith("train.max_steps")
    assert "--set train.max_steps=abc" in detail
    assert "'abc'" in detail


def test_set_unknown_key_did_you_mean(tmp_path: Path) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", BASE), ["train.lerning_rate=1"])
    (detail,) = err.details
    assert detail.startswith("train.lerning_rate") and "did you mean 'learning_rate'?" in detail


def test_set_without_equals_and_with_other_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE.replace("max_steps:", "max_stepz:"))
    err = recipe_error(path, ["train.batch_size", "train.batch_size=0"])
    assert len(err.details) == 3, err.details  # the malformed --set, batch_size > 0, the typo in the file
    joined = "\n".join(err.details)
    assert "expected KEY.PATH=VALUE" in joined and "max_stepz" in joined and "train.batch_size" in joined


def test_set_data_path_is_relative_to_the_working_directory(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "recipes/r.yaml", BASE)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = load_recipe(path, ["data.files.validation=dev.jsonl"]).recipe
    assert Path(r.data.files.validation) == (tmp_path / "elsewhere/dev.jsonl").resolve()
    assert Path(r.data.files.train) == (tmp_path / "recipes/data/train.jsonl").resolve()


# --------------------------------------------------------------------------------------------- paths
def test_relative_data_paths_resolve_against_the_recipe_folder(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    text = BASE.replace("    train: data/train.jsonl\n",
                        "    train: data/train.jsonl\n    validation: ../shared/dev.jsonl\n    test: /abs/test.jsonl\n")
    write(tmp_path, "proj/recipes/r.yaml", text)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    files = load_recipe("../proj/recipes/r.yaml").recipe.data.files
    assert Path(files.train) == (tmp_path / "proj/recipes/data/train.jsonl").resolve()
    assert Path(files.validation) == (tmp_path / "proj/shared/dev.jsonl").resolve()
    assert files.test == "/abs/test.jsonl"


def test_a_split_in_several_files_resolves_each_and_reports_the_missing_one(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    text = BASE.replace("    train: data/train.jsonl\n",
                        "    train:\n      - data/train.jsonl\n      - data/more.jsonl\n      - /abs/shard.jsonl\n")
    path = write(tmp_path, "proj/r.yaml", text)
    (tmp_path / "proj" / "data").mkdir()
    (tmp_path / "proj" / "data" / "train.jsonl").touch()
    monkeypatch.chdir(tmp_path)
    files = load_recipe(path).recipe.data.files
    assert files.paths("train") == [str((tmp_path / "proj/data/train.jsonl").resolve()),
                                    str((tmp_path / "proj/data/more.jsonl").resolve()), "/abs/shard.jsonl"]
    assert files.paths("validation") == []
    # From the command line, relative to the working directory.
    overridden = load_recipe(path, ["data.files.validation=[a.jsonl, b.jsonl]"]).recipe.data.files
    assert overridden.paths("validation") == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    # With another error in the recipe, each missing file of the list is named by its index and line.
    err = recipe_error(write(tmp_path, "proj/bad.yaml", text.replace("max_steps: 10", "max_step: 10")))
    missing = [d for d in err.details if "file not found" in d]
    assert [d.split(" ")[0] for d in missing] == ["data.files.train.1", "data.files.train.2"], err.details
    assert "more.jsonl" in missing[0] and f"bad.yaml:{line_of(tmp_path / 'proj/bad.yaml', 'more.jsonl')}" in missing[0]


@pytest.mark.parametrize("value, message", [("[]", "empty list of files"), ("['a.jsonl', '']", "empty file name"),
                                            ("''", "empty file name"),
                                            ("[1, 2]", "string")])
def test_a_bad_list_of_files_is_a_recipe_error(tmp_path: Path, value: str, message: str) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", BASE), [f"data.files.test={value}"])
    assert any(d.startswith("data.files.test") and message in d for d in err.details), err.details


def test_hub_ids_are_not_turned_into_paths(tmp_path: Path) -> None:
    text = BASE.replace("tokenizer:\n  train:\n    vocab_size: 1000\n", "tokenizer:\n  from: Helsinki-NLP/opus-mt-en-de\n")
    r = load_recipe(write(tmp_path, "r.yaml", text)).recipe
    assert r.tokenizer.from_ == "Helsinki-NLP/opus-mt-en-de"


# --------------------------------------------------------------------------------------------- cross-field
def test_translation_without_languages(tmp_path: Path) -> None:
    text = BASE.replace("  source_lang: en\n", "").replace("  target_lang: de\n", "")
    err = recipe_error(write(tmp_path, "r.yaml", text))
    (detail,) = err.details
    assert "data.source_lang" in detail and "data.target_lang" in detail and "data.source_column" in detail


def test_translation_with_flat_columns_needs_no_languages(tmp_path: Path) -> None:
    text = BASE.replace("  source_lang: en\n  target_lang: de\n", "  source_column: fr\n  target_column: es\n")
    r = load_recipe(write(tmp_path, "r.yaml", text)).recipe
    assert (r.data.source_column, r.data.target_column) == ("fr", "es")


def test_source_column_without_target_column(tmp_path: Path) -> None:
    text = BASE.replace("  source_lang: en\n  target_lang: de\n", "  source_column: fr\n")
    err = recipe_error(write(tmp_path, "r.yaml", text))
    assert "data.source_column and data.target_column go together" in str(err)


def test_model_from_config_needs_a_tokenizer(tmp_path: Path) -> None:
    text = BASE.replace("tokenizer:\n  train:\n    vocab_size: 1000\n", "")
    err = recipe_error(write(tmp_path, "r.yaml", text))
    (detail,) = err.details
    assert detail.startswith("tokenizer") and "tokenizer.train" in detail and "tokenizer.from" in detail


def test_pretrained_model_brings_its_tokenizer(tmp_path: Path) -> None:
    text = BASE.replace("tokenizer:\n  train:\n    vocab_size: 1000\n", "") \
        .replace("  architecture: mbart\n  config:\n    d_model: 64\n    encoder_layers: 2\n",
                 "  pretrained: Helsinki-NLP/opus-mt-en-de\n")
    assert load_recipe(write(tmp_path, "r.yaml", text)).recipe.model.pretrained == "Helsinki-NLP/opus-mt-en-de"


def test_metric_for_best_typo_suggests_bleu(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "  metric_for_best: blue\n")
    err = recipe_error(path)
    (detail,) = err.details
    assert detail.startswith("train.metric_for_best") and "did you mean 'bleu'?" in detail


def test_fail_below_metric_name_is_checked(tmp_path: Path) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", BASE + "evaluate:\n  fail_below:\n    chrF: 10\n    rouge1: 5\n"))
    joined = "\n".join(err.details)
    assert "evaluate.fail_below.chrF" in joined and "did you mean 'chrf'?" in joined
    assert "evaluate.fail_below.rouge1" in joined  # a summarization metric on a translation task


def test_tokenizer_from_and_train_together(tmp_path: Path) -> None:
    text = BASE.replace("tokenizer:\n  train:\n", "tokenizer:\n  from: some/tokenizer\n  train:\n")
    path = write(tmp_path, "r.yaml", text)
    err = recipe_error(path)
    (detail,) = err.details
    assert "tokenizer.from" in detail and "tokenizer.train" in detail
    assert f"{path}:{line_of(path, 'tokenizer:')}" in detail


def test_model_needs_pretrained_or_architecture(tmp_path: Path) -> None:
    text = BASE.replace("  architecture: mbart\n", "  pretrained: x/y\n  architecture: mbart\n")
    assert "not both" in str(recipe_error(write(tmp_path, "r.yaml", text)))


def test_training_budget_is_required(tmp_path: Path) -> None:
    err = recipe_error(write(tmp_path, "r.yaml", BASE.replace("  max_steps: 10\n", "")))
    assert "train.num_epochs, train.max_steps or train.max_minutes" in str(err)


def test_extends_with_another_architecture_replaces_the_model_section(tmp_path):
    from hfpipe.recipe.loading import load_recipe

    base = tmp_path / "base.yaml"
    base.write_text(
        "task: translation\n"
        "data: {files: {train: t.jsonl}, source_lang: en, target_lang: de}\n"
        "tokenizer: {train: {vocab_size: 500}}\n"
        "model: {architecture: mbart, config: {d_model: 64, encoder_attention_heads: 2}}\n"
        "train: {max_steps: 1}\n")
    same = tmp_path / "same.yaml"
    same.write_text("extends: base.yaml\nmodel: {config: {dropout: 0.3}}\n")
    other = tmp_path / "other.yaml"
    other.write_text("extends: base.yaml\nmodel: {architecture: hfpipe-rnn, config: {hidden_size: 32}}\n")
    assert load_recipe(same).recipe.model.config == {"d_model": 64, "encoder_attention_heads": 2, "dropout": 0.3}
    assert load_recipe(other).recipe.model.config == {"hidden_size": 32}


def test_a_schema_error_and_a_missing_data_file_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev.jsonl").write_text("{}\n")
    text = BASE.replace("    train: data/train.jsonl\n", "    train: data/trian.jsonl\n    validation: data/dev.jsonl\n")
    path = write(tmp_path, "r.yaml", text.replace("max_steps: 10", "max_step: 10"))
    err = recipe_error(path)
    assert any("did you mean 'max_steps'" in d for d in err.details), err.details
    missing = [d for d in err.details if "file not found" in d]
    assert len(missing) == 1 and missing[0].startswith("data.files.train")
    assert f"r.yaml:{line_of(path, 'trian')}" in missing[0] and "trian.jsonl" in missing[0]
    # With a valid schema the files are the preflight's to check (exit 3, a data error), not the loader's.
    write(tmp_path, "ok.yaml", text)
    assert load_recipe(tmp_path / "ok.yaml").recipe.data.files.train.endswith("trian.jsonl")


# --------------------------------------------------------------------------------------------- distributed
def test_distributed_settings_load_and_the_accelerate_config_is_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "ddp.yaml").write_text("distributed_type: MULTI_GPU\nnum_processes: 4\ngpu_ids: all\n")
    path = write(tmp_path, "r.yaml", BASE + "distributed:\n  timeout_minutes: 5\n  find_unused_parameters: true\n"
                                            "  accelerate_config: ddp.yaml\n")
    dist = load_recipe(path).recipe.distributed
    assert (dist.timeout_minutes, dist.find_unused_parameters) == (5, True)
    assert dist.accelerate_config == str((tmp_path / "ddp.yaml").resolve())


@pytest.mark.parametrize("key", ["fsdp", "deepspeed"])
def test_sharded_training_is_refused_with_the_reason(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, "r.yaml", BASE + f"distributed:\n  {key}:\n    zero_stage: 3\n")
    joined = "\n".join(recipe_error(path).details)
    assert f"distributed.{key}" in joined and "not supported yet" in joined and "data parallelism" in joined


@pytest.mark.parametrize("config", ["distributed_type: FSDP\nfsdp_config: {fsdp_version: 2}\n",
                                    "distributed_type: DEEPSPEED\ndeepspeed_config: {zero_stage: 3}\n"])
def test_an_accelerate_config_for_sharded_training_is_refused(tmp_path: Path, config: str) -> None:
    (tmp_path / "acc.yaml").write_text(config)
    path = write(tmp_path, "r.yaml", BASE + "distributed:\n  accelerate_config: acc.yaml\n")
    joined = "\n".join(recipe_error(path).details)
    assert "distributed.accelerate_config" in joined and "not supported yet" in joined


def test_a_missing_or_broken_accelerate_config_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "distributed:\n  accelerate_config: nowhere.yaml\n")
    assert "file not found" in "\n".join(recipe_error(path).details)
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    path = write(tmp_path, "r2.yaml", BASE + "distributed:\n  accelerate_config: bad.yaml\n")
    assert "not an accelerate config" in "\n".join(recipe_error(path).details)


# --------------------------------------------------------------------------------------------- gates, trackers
def test_gates_from_the_recipe_and_the_command_line_are_checked_together(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "gates:\n  checks: ['bleu>=20']\n")
    loaded = load_recipe(path, gates=["chrf>=baseline+1"], baseline="runs/a", significance=0.05)
    gates = loaded.recipe.gates
    assert gates.checks == ["bleu>=20", "chrf>=baseline+1"] and gates.significance == 0.05
    assert gates.baseline == str(Path("runs/a").resolve()), "--baseline is relative to the working directory"
    assert load_recipe(path, baseline="hub:me/model@v2").recipe.gates.baseline == "hub:me/model@v2"


def test_gate_problems_are_recipe_errors_with_their_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "gates:\n  checks: ['blue>=20', 'bleu>=baseline', 'bleu_rouge_f1>=baseline']\n"
                                            "  significance: 0.05\n")
    joined = "\n".join(recipe_error(path).details)
    assert "gates.checks[0]" in joined and "did you mean 'bleu'" in joined
    assert "gates.baseline" in joined and "compares with a baseline, and none is given" in joined
    assert "no significance test for 'bleu_rouge_f1'" in joined


def test_a_tracker_that_is_not_installed_is_named(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    assert load_recipe(write(tmp_path, "ok.yaml", BASE.replace("  max_steps: 10\n", "  max_steps: 10\n  report_to: "
                                                                                     "[tensorboard]\n")))
    import importlib.util

    if importlib.util.find_spec("aim") is not None:
        pytest.skip("aim is installed here")
    path = write(tmp_path, "r.yaml", BASE.replace("  max_steps: 10\n", "  max_steps: 10\n  report_to: [aim]\n"))
    assert "aim is not installed: pip install aim" in "\n".join(recipe_error(path).details)


def test_gates_on_a_split_that_is_not_evaluated_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "gates:\n  checks: ['bleu>=1']\n  split: validation\n")
    assert "the gates read the validation split, which evaluate.splits (test) does not evaluate" in \
        "\n".join(recipe_error(path).details)
