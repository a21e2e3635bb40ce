"""Every recipe in recipes/: one sweep, parametrized over the folder, so a new recipe is checked without touching
this file. Each recipe loads (named after its file), carries the header the design asks for, names real keys of
its architecture's config, and passes the full `hfpipe validate` (data files, columns, model limits) from another
working directory without importing torch, transformers or datasets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hfpipe.recipe.loading import load_recipe
from tests.conftest import HEAVY, imported_modules

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))


def test_there_are_shipped_recipes() -> None:
    assert RECIPES, f"no recipes found in {REPO_ROOT / 'recipes'}"


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def _check_model_config_keys(model) -> None:  # noqa: ANN001 - the recipe's ModelConfig
    """model.config names real keys of its architecture's config (an `extends` that leaked the parent's keys into
    another architecture once slipped through)."""
    if model.architecture in ("hfpipe-transformer", "hfpipe-rnn"):
        from hfpipe.modeling import build_config

        build_config(model.architecture, **model.config)
    elif model.architecture in ("marian", "bart", "mbart", "t5"):
        from transformers import BartConfig, MarianConfig, MBartConfig, T5Config

        cls = {"marian": MarianConfig, "bart": BartConfig, "mbart": MBartConfig, "t5": T5Config}[model.architecture]
        assert set(model.config) <= set(cls().to_dict()), set(model.config) - set(cls().to_dict())
    else:
        assert not model.config


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipe(path: Path, run_hfpipe, tmp_path: Path) -> None:
    loaded = load_recipe(path)
    assert loaded.recipe.task in ("translation", "summarization")
    assert loaded.name == path.stem, "a run directory is named after the recipe: keep the name and the file in step"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{path.name} should start with a comment saying what it does"
    assert f"hfpipe run recipes/{path.name}" in _header(text), f"{path.name}: the header shows the command to run it"
    _check_model_config_keys(loaded.recipe.model)

    files = loaded.recipe.data.files
    if files is not None:  # the shipped recipes read the shipped data sample, which the wheel carries with them
        paths = [Path(p) for split in ("train", "validation", "test") for p in files.paths(split)]
        assert all(p.is_relative_to(REPO_ROOT / "data") and p.exists() for p in paths), paths
    # From another folder: the recipe's relative data paths resolve against the recipe file.
    rc, out, err = run_hfpipe("validate", path, cwd=tmp_path, python_flags=["-X", "importtime"])
    assert rc == 0, out + err[-3000:]
    assert f"{path.name}: {loaded.recipe.task} recipe is valid" in out
    modules = imported_modules(err)
    assert "hfpipe" in modules and not modules & HEAVY, sorted(modules & HEAVY)
