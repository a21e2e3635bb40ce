"""Files of a run and of the cache, written whole or not at all, and read with one wording for what is wrong.

Writers put a file or folder under a temporary name and rename it into place, so a reader (or a later --resume)
never sees half of one. Readers of a run's JSON and recipe raise RunDirError naming the file; listings that show
what they can use the lenient forms.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hfpipe.errors import RunDirError

__all__ = ["atomic_copytree", "json_atomic", "read_json", "read_json_lenient", "read_recipe", "read_recipe_lenient",
           "replace_dir", "restore_dir", "text_atomic"]


def json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2(RENAME_EXCHANGE); False where that is not available
    (another OS, an old kernel or C library, a file system without it)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_dir(new: Path, target: Path) -> None:
    """Put the folder `new` in place of `target` (same parent) so that at every moment one of them is there
    under `target`'s name: an atomic exchange where the system has one, else `target` is first renamed aside to
    `.NAME.old` (found by `restore_dir` if a kill comes between the two renames); the old folder is deleted
    last."""
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    aside = target.with_name(f".{target.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(target, aside)
    os.replace(new, target)
    shutil.rmtree(aside, ignore_errors=True)


def restore_dir(target: Path) -> None:
    """Undo a replace_dir fallback that a kill cut between its two renames: the old folder comes back."""
    aside = target.with_name(f".{target.name}.old")
    if not target.exists() and aside.is_dir():
        os.replace(aside, target)



def atomic_copytree(src: Path, dst: Path) -> None:
    """Copy a folder so that `dst` appears whole or not at all."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


# ------------------------------------------------------------------------------------------------ reading a run


def read_json(path: Path, *, required: bool = False) -> dict[str, Any] | None:
    """A JSON object file of a run (metrics.json, manifest.json, model/config.json, ...). None when it is missing
    (RunDirError when `required`); RunDirError when it is damaged or not an object."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise RunDirError(f"{path.name} is missing", where=str(path.parent),
                              hint="pass a run directory that `hfpipe run` completed")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise RunDirError(f"{path.name} is not valid JSON: {err}", where=str(path)) from None
    except OSError as err:
        raise RunDirError(f"{path.name} cannot be read: {err.strerror or err}", where=str(path)) from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path.name} does not hold a JSON object", where=str(path))
    return data


def read_recipe(run_dir: Path) -> dict[str, Any]:
    """The resolved recipe of a run as a plain dict (RunDirError if the run has none or it is damaged)."""
    import yaml

    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        raise RunDirError("this is not an hfpipe run directory: it has no recipe.yaml", where=str(run_dir),
                          hint="pass the folder `hfpipe run` created (runs/<name>-<time>/)")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise RunDirError(f"recipe.yaml of the run cannot be read: {err}", where=str(path)) from None
    if not isinstance(recipe, dict):
        raise RunDirError("recipe.yaml of the run is not a mapping", where=str(path))
    return recipe


def read_json_lenient(path: Path) -> dict[str, Any]:
    """`read_json` for listings, which show what they can: {} when the file is missing or damaged."""
    try:
        return read_json(path) or {}
    except RunDirError:
        return {}


def read_recipe_lenient(run_dir: Path) -> dict[str, Any]:
    """`read_recipe` for listings: {} when the run has no readable recipe."""
    try:
        return read_recipe(run_dir)
    except RunDirError:
        return {}
