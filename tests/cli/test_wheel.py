"""hfpipe as a user installs it: a wheel built from this tree, installed apart from the checkout, finds and copies
its shipped recipes and the data sample they read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.name for p in (REPO_ROOT / "recipes").glob("*.yaml"))

pytestmark = pytest.mark.timeout(300)  # about 15 s: a wheel build and install, then light commands


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """site/ holds hfpipe installed from a wheel (its dependencies come from this environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp / "dist"), str(REPO_ROOT)], check=True, capture_output=True, timeout=240)
    wheel, = (tmp / "dist").glob("hfpipe-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(tmp / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=240)
    return tmp / "site"


def _hfpipe(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "COLUMNS": "250",
           "HFPIPE_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "hfpipe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_installed_hfpipe_is_the_wheels(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import hfpipe; print(hfpipe.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed), where


def test_installed_hfpipe_lists_its_recipes(installed: Path, tmp_path: Path) -> None:
    proc = _hfpipe(installed, tmp_path, "recipes")
    assert proc.returncode == 0, proc.stderr
    for name in SHIPPED:
        assert name in proc.stdout, name
    assert str(REPO_ROOT) not in proc.stdout, "listed from the checkout, not from the installed package"
    assert "invalid" not in proc.stdout, "a shipped recipe does not load where it is installed"


def test_copied_recipes_validate_and_read_their_data(installed: Path, tmp_path: Path) -> None:
    proc = _hfpipe(installed, tmp_path, "recipes", "--copy", "mine")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "mine" / "recipes").glob("*.yaml")) == SHIPPED
    work = tmp_path / "mine"
    # From the copy, as its header says (`hfpipe run recipes/...`): validate reads every data file it names.
    proc = _hfpipe(installed, work, "validate", "recipes/translation-en-de.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(rows: train 20,000, validation 500, test 500)" in proc.stdout
    # Edits are the user's: a second copy refuses to overwrite them.
    (work / "recipes" / "translation-en-de.yaml").write_text("# mine\n", encoding="utf-8")
    again = _hfpipe(installed, tmp_path, "recipes", "--copy", "mine")
    assert again.returncode == 2 and "already exist" in again.stderr
    assert (work / "recipes" / "translation-en-de.yaml").read_text(encoding="utf-8") == "# mine\n"


def test_the_sdist_carries_the_recipes_and_their_data(tmp_path: Path) -> None:
    """`python -m build` makes the wheel from the sdist: the recipes and data must be in it too."""
    import tarfile

    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_sdist(sys.argv[1])", str(tmp_path)], cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=240)
    sdist, = tmp_path.glob("hfpipe-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames() if len(Path(n).parts) > 1}
    assert {f"recipes/{name}" for name in SHIPPED} <= names
    assert {f"data/{p.name}" for p in (REPO_ROOT / "data").glob("*.jsonl.gz")} <= names
