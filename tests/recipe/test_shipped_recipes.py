"""Every recipe in recipes/ loads, passes `hfpipe validate`, and carries the header the design asks for.

Parametrized over the folder, so a new recipe is checked without touching this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hfpipe.recipe.loading import load_recipe

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))

per_recipe = pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])


def test_there_are_shipped_recipes() -> None:
    assert RECIPES, f"no recipes found in {REPO_ROOT / 'recipes'}"


@per_recipe
def test_recipe_loads(path: Path) -> None:
    loaded = load_recipe(path)
    assert loaded.recipe.task in ("translation", "summarization")
    assert loaded.path == path.resolve()
    # a run directory is named after the recipe: keep the name and the file in step
    assert loaded.name == path.stem


@per_recipe
def test_recipe_has_header_with_its_command(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{path.name} should start with a comment saying what it does"
    header_lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header_lines.append(line)
    header = "\n".join(header_lines)
    assert f"hfpipe run recipes/{path.name}" in header, f"{path.name}: the header should show the command to run it"


@per_recipe
def test_validate_schema_only(path: Path, run_hfpipe) -> None:
    rc, out, err = run_hfpipe("validate", path.relative_to(REPO_ROOT), "--no-data")
    assert rc == 0, out + err
    assert "schema valid" in out


@per_recipe
def test_validate_with_data(path: Path, run_hfpipe, tmp_path: Path) -> None:
    """Full validation (data files, columns, model limits) where the data ships in the repository. Run from another
    working directory: the recipe's relative data paths must resolve against the recipe file."""
    recipe = load_recipe(path).recipe
    files = recipe.data.files
    if files is not None:
        paths = [Path(p) for p in (files.train, files.validation, files.test) if p]
        outside = [p for p in paths if not p.is_relative_to(REPO_ROOT)]
        if outside:
            pytest.skip(f"data lives outside the repository: {outside}")
        missing = [str(p) for p in paths if not p.exists()]
        assert not missing, f"{path.name} names data files that are not in the repository: {missing}"
    rc, out, err = run_hfpipe("validate", path, cwd=tmp_path)
    assert rc == 0, out + err
    assert "recipe is valid" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("recipe_path", sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_model_config_keys_exist(recipe_path):
    """model.config of every shipped recipe names real keys of its architecture's config (an `extends` that
    leaked the parent's keys into another architecture once slipped through)."""
    from hfpipe.recipe.loading import load_recipe

    model = load_recipe(recipe_path).recipe.model
    if model.architecture in ("hfpipe-transformer", "hfpipe-rnn"):
        from hfpipe.modeling import build_config

        build_config(model.architecture, **model.config)
    elif model.architecture in ("marian", "bart", "mbart", "t5"):
        from transformers import BartConfig, MarianConfig, MBartConfig, T5Config

        cls = {"marian": MarianConfig, "bart": BartConfig, "mbart": MBartConfig, "t5": T5Config}[model.architecture]
        assert set(model.config) <= set(cls().to_dict()), set(model.config) - set(cls().to_dict())
    else:
        assert not model.config
