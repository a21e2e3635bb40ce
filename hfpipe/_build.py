"""Build-time only (setuptools imports it from pyproject.toml): puts the shipped recipes and the data sample they
read into the wheel as package data, so an installed hfpipe finds them.

The repository keeps them at the top level (recipes/, data/), where a checkout and an editable install read them;
the wheel carries them as hfpipe/shipped/recipes and hfpipe/shipped/data, the same two folders side by side, so the
recipes' `../data/...` paths hold in both places."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist

# (folder in the repository, file patterns): what the shipped recipes need and nothing else.
SHIPPED = (("recipes", ("*.yaml",)), ("data", ("*.jsonl.gz", "README.md")))


def _shipped_files(root: Path) -> list[Path]:
    files = [source for folder, patterns in SHIPPED for pattern in patterns
             for source in sorted((root / folder).glob(pattern))]
    if not any(f.parent.name == "recipes" for f in files):  # a wheel without its recipes must not be built quietly
        raise FileNotFoundError(f"no recipes/*.yaml under {root}: hfpipe is built from the repository or its sdist")
    return files


class build_py(_build_py):  # noqa: N801 - setuptools looks the command up by this name
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads recipes/ and data/ from the checkout itself
            return
        root = Path(__file__).resolve().parents[1]
        for source in _shipped_files(root):
            target = Path(self.build_lib) / "hfpipe" / "shipped" / source.parent.name / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


class sdist(_sdist):  # noqa: N801
    """The sdist carries recipes/ and data/ too, so a wheel built from it (`python -m build`) has them."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        root = Path(__file__).resolve().parents[1]
        shipped = [str(f.relative_to(root)) for f in _shipped_files(root)]
        super().make_release_tree(base_dir, [*files, *(f for f in shipped if f not in files)])
