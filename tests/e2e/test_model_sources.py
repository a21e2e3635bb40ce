"""Where a model comes from, the same for every command: one loader (pipeline.models.load_model) that honours the
recipe's trust_remote_code for `run --resume`, `evaluate` and `predict` alike, and HF_HUB_OFFLINE with the meaning
it has everywhere in the Hugging Face ecosystem (unset: the cache first, then the network, failing fast and
clearly when the Hub cannot be reached)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.hub.hub_testing import RECIPE, SENTENCES, build_marian_run

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)

CONFIGURATION = '''from transformers import MarianConfig


class CustomMarianConfig(MarianConfig):
    model_type = "custom-marian"
'''
MODELING = '''from transformers import MarianMTModel

from .configuration_custom import CustomMarianConfig


class CustomMarianMTModel(MarianMTModel):
    config_class = CustomMarianConfig
'''


def hfpipe(args: list[str], *, cwd: Path, env: dict[str, str], stdin: str | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfpipe", *args], cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_", "HFPIPE_"))}
    env.update({"PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "hf-home"), "HFPIPE_CACHE": str(tmp_path / "cache"),
                "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_DISABLE_TELEMETRY": "1", "COLUMNS": "200",
                "OMP_NUM_THREADS": "1"})
    return env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def remote_code_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run whose model is a custom architecture shipped as remote code (not hfpipe's): loading it
    needs trust_remote_code, and its recipe says so."""
    work = tmp_path_factory.mktemp("remote-code")
    run_dir = work / "run"
    build_marian_run(run_dir)
    model_dir = run_dir / "model"
    config = json.loads((model_dir / "config.json").read_text())
    config.update(model_type="custom-marian", architectures=["CustomMarianMTModel"],
                  auto_map={"AutoConfig": "configuration_custom.CustomMarianConfig",
                            "AutoModelForSeq2SeqLM": "modeling_custom.CustomMarianMTModel"})
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "configuration_custom.py").write_text(CONFIGURATION)
    (model_dir / "modeling_custom.py").write_text(MODELING)
    (work / "data").mkdir()
    for split in ("train", "test"):
        rows = [json.dumps({"translation": {"en": en, "fr": fr}}) for en, fr in SENTENCES]
        (work / "data" / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    recipe = {**RECIPE, "model": {**RECIPE["model"], "trust_remote_code": True},
              "tokenizer": {"train": {"vocab_size": 100}},
              "data": {**RECIPE["data"], "files": {split: str(work / "data" / f"{split}.jsonl")
                                                   for split in ("train", "test")}}}
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return run_dir


def test_evaluate_and_predict_load_a_remote_code_run_as_its_recipe_says(remote_code_run: Path,
                                                                      tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "HF_HUB_OFFLINE": "1"}
    work = remote_code_run.parent
    proc = hfpipe(["predict", str(remote_code_run)], cwd=work, env=env, stdin="hello world\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 1

    proc = hfpipe(["evaluate", str(remote_code_run), "--split", "test", "--json"], cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["metrics"]["test"]["num_samples"] == len(SENTENCES)

    # The recipe decides: without trust_remote_code the same run is refused with one message, not a prompt.
    refusing = tmp_path / "refusing"
    shutil.copytree(remote_code_run, refusing)
    recipe = yaml.safe_load((refusing / "recipe.yaml").read_text())
    recipe["model"]["trust_remote_code"] = False
    (refusing / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    proc = hfpipe(["predict", str(refusing)], cwd=work, env=env, stdin="hello world\n")
    assert proc.returncode == 5, proc.stderr[-3000:]
    assert "cannot load the model" in proc.stderr and "Traceback" not in proc.stderr


def test_hub_unreachable_fails_fast_and_clearly_but_the_cache_still_loads(remote_code_run: Path,
                                                                         tmp_path: Path) -> None:
    port = closed_port()
    env = base_env(tmp_path)  # HF_HUB_OFFLINE unset: the ecosystem's default, downloads allowed
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    work = remote_code_run.parent

    recipe = {**RECIPE, "tokenizer": {"from": "someone/not-cached"},
              "model": {"pretrained": "someone/not-cached"}}
    recipe.pop("push")
    (work / "uncached.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    start = time.monotonic()
    proc = hfpipe(["run", "uncached.yaml", "--run-dir", str(tmp_path / "never")], cwd=work, env=env)
    elapsed = time.monotonic() - start
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    said = " ".join(proc.stderr.replace("│", " ").split())  # the panel's lines and borders put back together
    assert "cannot download the tokenizer 'someone/not-cached'" in said
    assert f"the Hub at http://127.0.0.1:{port} cannot be reached" in said
    assert "HF_HUB_OFFLINE=1" in said
    assert elapsed < 60, f"took {elapsed:.0f}s: huggingface_hub's retries were not avoided"

    # The same id in the local Hugging Face cache loads from there, without the network and without the variable.
    snapshot = Path(env["HF_HOME"]) / "hub" / "models--someone--cached" / "snapshots" / ("0" * 40)
    plain = tmp_path / "plain"
    build_marian_run(plain)
    shutil.copytree(plain / "model", snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    proc = hfpipe(["predict", "someone/cached"], cwd=work, env=env, stdin="hello world\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 1

