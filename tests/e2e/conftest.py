"""Fixtures for end-to-end runs: tiny recipes over the data shipped in data/, run through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_recipe(task: str = "translation", **sections: dict) -> dict:
    """A recipe that trains a 2-layer, d_model 32 model for a few steps on a few hundred shipped rows."""
    if task == "translation":
        data = {"files": {"train": str(REPO / "data/ddtp-en-de.train.jsonl.gz"),
                          "validation": str(REPO / "data/ddtp-en-de.validation.jsonl.gz"),
                          "test": str(REPO / "data/ddtp-en-de.test.jsonl.gz")},
                "source_lang": "en", "target_lang": "de"}
    else:
        data = {"files": {"train": str(REPO / "data/debian-descriptions-summarization.train.jsonl.gz"),
                          "validation": str(REPO / "data/debian-descriptions-summarization.validation.jsonl.gz"),
                          "test": str(REPO / "data/debian-descriptions-summarization.test.jsonl.gz")},
                "max_source_length": 64, "max_target_length": 32}
    recipe = {
        "name": f"tiny-{task}",
        "task": task,
        "data": {**data, "max_train_samples": 400, "max_eval_samples": 24},
        "tokenizer": {"train": {"type": "unigram", "vocab_size": 400}},
        "model": {"architecture": "mbart",
                  "config": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
                             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                             "max_position_embeddings": 160}},
        "train": {"max_steps": 16, "batch_size": 16, "learning_rate": 1e-2, "warmup_steps": 2,
                  "eval_every_steps": 8, "eval_samples": 12, "log_every_steps": 4, "seed": 7},
        "evaluate": {"splits": ["test"], "num_beams": 2, "max_new_tokens": 24, "batch_size": 8},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value}
    return recipe


def write_recipe(folder: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "hfpipe-cache"


@pytest.fixture
def run_cli(cache_dir: Path):
    """Run `python -m hfpipe ARGS` as a user would; returns the CompletedProcess."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, stdin: str | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "HFPIPE_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1",
                    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    "COLUMNS": "160", **(env or {})}
        return subprocess.run([sys.executable, "-m", "hfpipe", *args], cwd=cwd or REPO, env=full_env,
                              capture_output=True, text=True, input=stdin, timeout=timeout)

    return run
