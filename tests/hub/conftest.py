"""Fixtures for the Hub push tests: a tiny finished run directory and a local Hub-compatible server.

See hub_testing.py for what the run directory holds and tests/hub_server.py for the server.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_testing import READ_TOKEN, REPO, TOKEN, FakeHub, build_marian_run


@pytest.fixture(scope="session")
def run_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tiny-en-fr-20260101-000000"
    build_marian_run(path)
    return path


@pytest.fixture
def run_dir(run_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny finished run, safe to modify."""
    path = tmp_path / "runs" / run_template.name
    shutil.copytree(run_template, path)
    return path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    server = FakeHub(tmp_path / "hub-storage", token=TOKEN, read_token=READ_TOKEN)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hf_home(tmp_path: Path) -> Path:
    path = tmp_path / "hf-home"
    path.mkdir()
    return path


@pytest.fixture
def hub_env(hub: FakeHub, hf_home: Path) -> dict[str, str]:
    """Environment for subprocesses: the local Hub, a fresh HF_HOME, the token in HF_TOKEN, fast retries."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_", "HFPIPE_"))}
    env.update({
        "HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HFPIPE_HUB_RETRY_DELAY": "0.05",
        "PYTHONPATH": str(REPO), "COLUMNS": "200", "NO_COLOR": "1",
    })
    return env


