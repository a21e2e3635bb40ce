"""How a real training run ends, through the CLI as a subprocess on a tiny recipe: forced bf16 autocast trains
(CI's CPU resolves `auto` to fp32, so this is the only place bf16 runs) and saves fp32 weights; a loss that turns
non-finite exits 6 with its message; a metric gate that fails at run time exits 8."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, tiny_recipe, write_recipe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Runs the CLI with the training forward pass recording the autocast it runs under (the logits alone do not show
# it: MBart adds a float32 bias to them).
RECORD_AUTOCAST = textwrap.dedent("""
    import sys
    import torch
    import hfpipe.pipeline.training as training

    real, seen = training.forward_logits, set()

    def forward_logits(model, batch):
        device = batch["input_ids"].device.type
        used = f"{torch.is_autocast_enabled(device)} {torch.get_autocast_dtype(device)}"
        if used not in seen:
            seen.add(used)
            with open("autocast.txt", "a") as f:
                f.write(used + "\\n")
        return real(model, batch)

    training.forward_logits = forward_logits
    from hfpipe.cli import main
    sys.argv = ["hfpipe", *sys.argv[1:]]
    main()
""")


def _hfpipe(tmp_path: Path, *args: str, script: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "HFPIPE_DEBUG")}
    env.update({"HFPIPE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200",
                "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "hfpipe"]
    return subprocess.run([*command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)


def _recipe(tmp_path: Path, **train) -> Path:
    recipe = tiny_recipe("translation", train={"max_steps": 24, "log_every_steps": 1, "eval_every_steps": None,
                                               "mixed_precision": "no", "learning_rate": 5e-3, **train},
                         evaluate={"max_samples": 8})
    return write_recipe(tmp_path, recipe)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_forced_bf16_trains_under_autocast_and_saves_fp32_weights(tmp_path):
    from safetensors import safe_open

    script = tmp_path / "record_dtype.py"
    script.write_text(RECORD_AUTOCAST)
    proc = _hfpipe(tmp_path, "train", str(_recipe(tmp_path, checkpoint_every_steps=12)), "--run-dir", "run",
                   "--set", "train.mixed_precision=bf16", "--json", script=script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["train"]["mixed_precision"] == "bf16"
    assert (tmp_path / "autocast.txt").read_text().splitlines() == ["True torch.bfloat16"], "under bf16 autocast"
    losses = [e["loss"] for e in _jsonl(tmp_path / "run" / "train_log.jsonl")]
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.3, (first, last)
    for weights in (tmp_path / "run" / "model" / "model.safetensors",
                    tmp_path / "run" / "checkpoints" / "step-24" / "model.safetensors"):
        with safe_open(str(weights), "pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes == {"F32"}, (weights, dtypes)


def test_a_non_finite_loss_at_run_time_exits_6_with_its_message(tmp_path):
    """An absurd learning rate: the first update throws the weights to ±1e30, the second step's loss is inf/nan."""
    proc = _hfpipe(tmp_path, "run", str(_recipe(tmp_path)), "--run-dir", "run", "--set", "train.learning_rate=1e30")
    assert proc.returncode == 6, proc.stderr[-3000:]
    err = " ".join(proc.stderr.split())
    assert "Training error (exit 6)" in err and "the loss became non-finite (nan or inf) at step 2" in err
    assert "lower train.learning_rate" in err and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "metrics.json").exists()
    # and the machine-readable record says the same
    proc = _hfpipe(tmp_path, "train", str(_recipe(tmp_path)), "--run-dir", "run2", "--set",
                   "train.learning_rate=1e30", "--json")
    record = json.loads(proc.stdout)
    assert (proc.returncode, record["status"], record["exit_code"]) == (6, "error", 6)
    assert "non-finite" in record["error"]["message"]


def test_a_failed_metric_gate_at_run_time_exits_8_and_names_the_numbers(tmp_path):
    proc = _hfpipe(tmp_path, "run", str(_recipe(tmp_path, max_steps=6)), "--run-dir", "run", "--json",
                   "--gate", "bleu>=99")
    assert proc.returncode == 8, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert (record["status"], record["exit_code"], record["push"]) == ("gate_failed", 8, None)
    (gate,) = record["gates"]["results"]
    assert gate["gate"] == "bleu>=99" and not gate["passed"]
    assert gate["value"] == record["metrics"]["test"]["bleu"] and gate["margin"] == pytest.approx(gate["value"] - 99)
    err = " ".join(proc.stderr.split())
    assert "Metric gate failed (exit 8)" in err and "1 of 1 gate failed on the test split" in err
    assert "bleu>=99: bleu = " in err and "threshold 99, margin -" in err and "nothing was pushed" in err
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "model" / "model.safetensors").exists(), "the run itself completed"
