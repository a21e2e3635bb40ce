"""Fixtures shared by every test folder. Keep this small: folder-specific fixtures live in that folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "datasets"}  # what `hfpipe --help` and `hfpipe validate` never import


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level names of every module in `python -X importtime` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module != "imported package":
                names.add(module.split(".")[0])
    return names


def pytest_configure(config: pytest.Config) -> None:
    # Unset, HF_HUB_OFFLINE lets hfpipe download what the cache lacks (the ecosystem's meaning); tests that load in
    # this process must not, so it is set here unless the caller chose. Subprocesses set it themselves.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def run_hfpipe(tmp_path: Path) -> Callable[..., tuple[int, str, str]]:
    """Run `python -m hfpipe ARGS` as a user would; returns (exit code, stdout, stderr).

    Offline, with its own cache folder, no debug unless asked, and wide enough that rich does not wrap lines.
    `python_flags` go before `-m` (e.g. ["-X", "importtime"]); `cwd` defaults to the repository root."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            python_flags: tuple[str, ...] | list[str] = (), timeout: float = 120) -> tuple[int, str, str]:
        full_env = {k: v for k, v in os.environ.items() if k not in ("HFPIPE_DEBUG", "RANK", "LOCAL_RANK")}
        full_env.update({
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "HFPIPE_CACHE": str(tmp_path / "hfpipe-cache"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "COLUMNS": "250",
            "PYTHONIOENCODING": "utf-8",
        })
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, *python_flags, "-m", "hfpipe", *map(str, args)],
                              cwd=cwd or REPO_ROOT, env=full_env, capture_output=True, text=True,
                              encoding="utf-8", timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr

    return run
