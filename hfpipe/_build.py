"""Build-time only (setuptools imports it from pyproject.toml): puts the shipped recipes and the data sample they
read into the wheel as package data, so an installed hfpipe finds them.

The repository keeps them at the top level (recipes/, data/), where a checkout and an editable install read them;
the wheel carries them as hfpipe/shipped/recipes and hfpipe/shipped/data, the same two folders side by side, so the
recipes' `../data/...` paths hold in both places."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py as _build_py

# (folder in the repository, file patterns): what the shipped recipes need and nothing else.
SHIPPED = (("recipes", ("*.yaml",)), ("data", ("*.jsonl.gz", "README.md")))


class build_py(_build_py):  # noqa: N801 - setuptools looks the command up by this name
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads recipes/ and data/ from the checkout itself
            return
        root = Path(__file__).resolve().parents[1]
        for folder, patterns in SHIPPED:
            target = Path(self.build_lib) / "hfpipe" / "shipped" / folder
            target.mkdir(parents=True, exist_ok=True)
            for pattern in patterns:
                for source in sorted((root / folder).glob(pattern)):
                    shutil.copyfile(source, target / source.name)
