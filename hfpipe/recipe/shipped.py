"""The recipes that ship with hfpipe and the data sample they read: found in a checkout (recipes/, data/ at the
top level) and in an installed wheel (hfpipe/shipped/, see hfpipe/_build.py), and copied out for editing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hfpipe.errors import RecipeError

_PACKAGE = Path(__file__).resolve().parents[1]


def shipped_root() -> Path | None:
    """The folder holding recipes/ and data/ side by side: the wheel's package data, else the checkout's top
    level (a source tree or an editable install); None when neither has recipes."""
    for root in (_PACKAGE / "shipped", _PACKAGE.parent):
        if (root / "recipes").is_dir() and any((root / "recipes").glob("*.yaml")):
            return root
    return None


def shipped_recipes() -> list[Path]:
    root = shipped_root()
    return sorted((root / "recipes").glob("*.yaml")) if root else []


def copy_shipped(dest: Path) -> list[Path]:
    """Write the shipped recipes to DEST/recipes and the data they read to DEST/data, the layout they have here, so
    their relative paths (`../data/...`) hold and `hfpipe run recipes/NAME.yaml` works from DEST. Nothing that
    exists is overwritten; each file is written whole (temp name, then renamed). Returns the recipes written."""
    root = shipped_root()
    if root is None:
        raise RecipeError("this hfpipe has no shipped recipes to copy",
                          hint="reinstall hfpipe from a wheel built from the repository, or clone the repository")
    files = [(source, dest / "recipes" / source.name) for source in shipped_recipes()]
    files += [(source, dest / "data" / source.name) for source in sorted((root / "data").glob("*"))
              if source.is_file()]
    existing = [str(target) for _, target in files if target.exists()]
    if existing:
        raise RecipeError(f"{len(existing)} of the files to write already exist in {dest}", details=existing[:5],
                          hint="copy into an empty or new folder (nothing is overwritten)")
    for source, target in files:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    return [target for _, target in files if target.parent.name == "recipes"]
