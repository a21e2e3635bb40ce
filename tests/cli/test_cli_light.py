"""The light commands as a user runs them: `python -m hfpipe ...` in a subprocess, exit codes from hfpipe.errors,
no heavy imports, one readable message per failure and a traceback only with --debug."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import HEAVY, imported_modules

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = REPO_ROOT / "tests/fixtures/ddtp-en-de.sample.jsonl"
RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))

# exit codes, as documented in hfpipe/errors.py
OK, RECIPE_ERROR, DATA_ERROR = 0, 2, 3


def write_recipe(folder: Path, name: str = "r.yaml", extra: str = "", **files: str | Path) -> Path:
    """A small valid translation recipe; `files` default to the shipped 60-row sample as train."""
    files = files or {"train": FIXTURE}
    path = folder / name
    path.write_text(textwrap.dedent("""\
        task: translation
        data:
          files:
        {files}
          source_lang: en
          target_lang: de
          max_source_length: 64
          max_target_length: 64
        tokenizer:
          train: {{vocab_size: 1000}}
        model:
          architecture: mbart
          config: {{d_model: 64, max_position_embeddings: 64}}
        train:
          max_steps: 10
        """).format(files="\n".join(f"    {split}: {file}" for split, file in files.items())) + extra,
        encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- light imports
def test_help(run_hfpipe) -> None:
    rc, out, err = run_hfpipe("--help")
    assert rc == OK, err
    for command in ("validate", "recipes", "schema", "run"):
        assert command in out


def _commands(help_text: str) -> list[str]:
    """The command names listed under "Commands:" in a --help."""
    listed = help_text.split("\nCommands:\n", 1)[1].splitlines() if "\nCommands:\n" in help_text else []
    return [line.split()[0] for line in listed if line.startswith("  ") and line.strip()]


def test_version_is_a_flag(run_hfpipe) -> None:
    rc, out, err = run_hfpipe("--help", env={"COLUMNS": "100"})
    assert rc == OK, err
    assert "--version  Print the version and exit." in out and "<bool>" not in out
    rc, out, err = run_hfpipe("--version")
    assert (rc, out.strip()) == (OK, f"hfpipe {__import__('hfpipe').__version__}")


def test_every_help_text_wraps_whole_paragraphs(run_hfpipe) -> None:
    """At a normal terminal width, each command's description is re-wrapped to it: no paragraph breaks its line
    where the docstring did (a short line followed by the rest of the sentence)."""
    rc, out, _ = run_hfpipe("--help", env={"COLUMNS": "100"})
    commands = [[c] for c in _commands(out)]
    assert len(commands) >= 12
    for command in list(commands):
        rc, out, err = run_hfpipe(*command, "--help", env={"COLUMNS": "100"})
        assert rc == OK, err
        commands.extend([*command, sub] for sub in _commands(out))
        description = out.split("\n\n", 1)[1].split("\nArguments:")[0].split("\nOptions:")[0]
        for paragraph in description.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            assert all(len(line) > 60 for line in lines[:-1]), (command, paragraph)
            assert all(len(line) <= 100 for line in lines), (command, paragraph)


# Every other shipped recipe's validate is checked the same way in tests/recipe/test_shipped_recipes.py.
@pytest.mark.parametrize("args", [("--help",), ("validate", "recipes/translation-en-de.yaml")],
                         ids=lambda a: " ".join(a))
def test_light_commands_import_nothing_heavy(run_hfpipe, args: tuple[str, ...]) -> None:
    rc, out, err = run_hfpipe(*args, python_flags=["-X", "importtime"])
    assert rc == OK, out + err[-3000:]
    modules = imported_modules(err)
    assert {"hfpipe", "typer", "rich"} <= modules  # the parse really saw the imports
    assert not modules & HEAVY, f"`hfpipe {' '.join(args)}` imported {sorted(modules & HEAVY)}"


# --------------------------------------------------------------------------------------------- validate
def test_validate_good_recipe(run_hfpipe, tmp_path: Path) -> None:
    rc, out, err = run_hfpipe("validate", write_recipe(tmp_path), cwd=tmp_path)
    assert rc == OK, out + err
    assert "r.yaml: translation recipe is valid (rows: train 60)" in out
    assert "5% of train will be carved off" in out


def test_validate_broken_recipe_lists_every_problem(run_hfpipe, tmp_path: Path) -> None:
    path = write_recipe(tmp_path, extra="evaluate:\n  num_beam: 4\n")
    text = path.read_text().replace("model:", "modle:").replace("max_steps:", "max_stepz:")
    path.write_text(text)
    rc, out, err = run_hfpipe("validate", path)
    assert rc == RECIPE_ERROR, out + err
    assert "Traceback" not in out + err
    assert "Recipe error" in err and "4 problems" in err
    for problem in ("unknown key 'modle'; did you mean 'model'?", "unknown key 'max_stepz'; did you mean 'max_steps'?",
                    "unknown key 'num_beam'; did you mean 'num_beams'?", "model: required key is missing"):
        assert problem in err, problem
    assert f"{path}:{text.splitlines().index('modle:') + 1}" in err


def test_validate_bad_set_override(run_hfpipe, tmp_path: Path) -> None:
    rc, out, err = run_hfpipe("validate", write_recipe(tmp_path), "--set", "train.max_steps=abc",
                              "--set", "train.lerning_rate=1")
    assert rc == RECIPE_ERROR, out + err
    assert "train.max_steps (--set train.max_steps=abc)" in err
    assert "did you mean 'learning_rate'?" in err
    assert "Traceback" not in err


def test_validate_missing_data_file(run_hfpipe, tmp_path: Path) -> None:
    missing = tmp_path / "data" / "nope.jsonl.gz"
    rc, out, err = run_hfpipe("validate", write_recipe(tmp_path, train="data/nope.jsonl.gz"), cwd=REPO_ROOT)
    assert rc == DATA_ERROR, out + err
    assert "Data error" in err and str(missing) in err
    assert "Traceback" not in err


def test_validate_missing_column(run_hfpipe, tmp_path: Path) -> None:
    rc, out, err = run_hfpipe("validate", write_recipe(tmp_path), "--set", "data.target_lang=fr")
    assert rc == DATA_ERROR, out + err
    assert "column 'fr' not found" in err and "available: de, en" in err
    assert "Traceback" not in err


def test_validate_several_data_problems_at_once(run_hfpipe, tmp_path: Path) -> None:
    (tmp_path / "dev.jsonl").write_bytes('{"translation": {"en": "caf\xe9", "de": "Kaffee"}}\n'.encode("latin-1"))
    path = write_recipe(tmp_path, train=FIXTURE, validation="dev.jsonl", test="missing.csv")
    rc, out, err = run_hfpipe("validate", path)
    assert rc == DATA_ERROR, out + err
    assert "2 problems" in err and "not UTF-8" in err and str(tmp_path / "missing.csv") in err


def test_validate_missing_recipe(run_hfpipe, tmp_path: Path) -> None:
    rc, out, err = run_hfpipe("validate", tmp_path / "nope.yaml")
    assert rc == RECIPE_ERROR and "recipe file not found" in err


def test_validate_recipe_name_with_brackets(run_hfpipe, tmp_path: Path) -> None:
    rc, out, err = run_hfpipe("validate", write_recipe(tmp_path, name="exp[v2].yaml"), "--no-data")
    assert rc == OK, out + err
    assert "exp[v2].yaml: schema valid" in out


def test_usage_errors_exit_2_without_internal_error(run_hfpipe) -> None:
    for args in (("validate",), ("frobnicate",), ("validate", "recipes/translation-en-de.yaml", "--sett", "x")):
        rc, out, err = run_hfpipe(*args)
        assert rc == RECIPE_ERROR, (args, out + err)
        assert "Internal error" not in err and "Traceback" not in err, (args, err)
        assert "Usage:" in err, (args, err)


# --------------------------------------------------------------------------------------------- --debug
def test_debug_shows_the_traceback_only_when_asked(run_hfpipe, tmp_path: Path) -> None:
    path = write_recipe(tmp_path)
    path.write_text(path.read_text().replace("max_steps:", "max_stepz:"))
    rc, out, err = run_hfpipe("validate", path)
    assert rc == RECIPE_ERROR and "Traceback" not in out + err
    rc, out, err = run_hfpipe("--debug", "validate", path)
    assert rc == RECIPE_ERROR, err  # the same documented exit code, with the traceback
    assert "Traceback" in err
    assert "RecipeError" in err and "did you mean 'max_steps'?" in err


# --------------------------------------------------------------------------------------------- schema, recipes
def test_schema_is_json_schema(run_hfpipe) -> None:
    rc, out, err = run_hfpipe("schema")
    assert rc == OK, err
    schema = json.loads(out)
    assert {"task", "data", "model", "train"} <= set(schema["properties"])
    assert set(schema["required"]) == {"task", "data", "model", "train"}
    defs = schema["$defs"]
    assert defs["TrainConfig"]["additionalProperties"] is False
    assert "learning_rate" in defs["TrainConfig"]["properties"]
    assert "from" in defs["TokenizerConfig"]["properties"]  # the YAML spelling, not `from_`
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    from hfpipe.recipe.loading import load_recipe

    validator = jsonschema.Draft202012Validator(schema)
    for path in RECIPES:  # every resolved shipped recipe is an instance of the printed schema
        dumped = load_recipe(path).recipe.model_dump(mode="json", by_alias=True, exclude_none=True)
        assert not list(validator.iter_errors(dumped)), path.name
    assert list(validator.iter_errors({"task": "translation", "train": {"lerning_rate": 1}}))


def test_recipes_lists_the_shipped_recipes(run_hfpipe) -> None:
    from hfpipe.recipe.loading import load_recipe

    rc, out, err = run_hfpipe("recipes")
    assert rc == OK, err
    lines = out.splitlines()
    for path in RECIPES:
        row = [line for line in lines if f"recipes/{path.name}" in line]
        assert len(row) == 1, (path.name, out)
        assert load_recipe(path).recipe.task in row[0], row[0]  # also for a recipe that `extends` another


@pytest.mark.parametrize(("preset", "expected"), [(None, "64"), ("7", "7")])
def test_cli_caps_onednn_kernel_cache_unless_the_user_did(preset, expected, tmp_path: Path) -> None:
    """The CLI puts ONEDNN_PRIMITIVE_CACHE_CAPACITY in the environment before anything loads torch (bf16 training
    grew RSS by GB without it); a value already set is kept."""
    import os
    import subprocess
    import sys

    code = textwrap.dedent("""
        import os, sys
        sys.argv = ["hfpipe", "--version"]
        from hfpipe.cli import main
        try:
            main()
        except SystemExit:
            pass
        loaded = "torch loaded" if "torch" in sys.modules else "no torch"
        print(loaded, os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"))
    """)
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if preset is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == f"no torch {expected}"
