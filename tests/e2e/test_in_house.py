"""The in-house models through the whole pipeline: trained by `hfpipe run`, saved with their code, reloaded with
trust_remote_code in a process without hfpipe, and drawn by `hfpipe attention`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.e2e.conftest import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow

ARCHITECTURES = {
    "hfpipe-transformer": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 2, "num_heads": 2, "ffn_dim": 64,
                           "norm_first": True, "copy_attention": True},  # as the shipped defaults
    "hfpipe-rnn": {"cell": "gru", "embedding_dim": 32, "hidden_size": 32, "attention": "additive"},
}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_in_house_model_trains_saves_reloads_and_draws(architecture, run_cli, tmp_path):
    recipe = tiny_recipe("translation", evaluate={"max_samples": 6})
    recipe["model"] = {"architecture": architecture, "config": ARCHITECTURES[architecture]}
    path = write_recipe(tmp_path, recipe)
    run_dir = tmp_path / "run"
    proc = run_cli("run", str(path), "--run-dir", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_dir = run_dir / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert "AutoModelForSeq2SeqLM" in config["auto_map"]
    assert list(model_dir.glob("modeling_hfpipe_*.py")), "the model's code travels with it"
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    limit = config["max_position_embeddings"] if architecture == "hfpipe-transformer" else 1_000_000  # RNN: none
    assert tokenizer_config["model_max_length"] == limit
    assert not {"is_local", "local_files_only"} & set(tokenizer_config)

    predictions = [json.loads(line)["prediction"] for line in (run_dir / "predictions-test.jsonl").open()]
    code = textwrap.dedent(f"""
        import sys
        sys.modules["hfpipe"] = None  # unimportable here even where hfpipe is installed: loading must not need it
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedTokenizerFast
        # The tokenizer alone runs no remote code and asks nothing (README "In-house attention models").
        alone = PreTrainedTokenizerFast.from_pretrained({str(model_dir)!r})
        print("ALONE", len(alone), alone.model_max_length, file=sys.stderr)
        # AutoTokenizer reads config.json (remote code) first: it needs trust_remote_code like the model.
        tok = AutoTokenizer.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        model = AutoModelForSeq2SeqLM.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        assert len(alone) == len(tok) and alone("hello world").input_ids == tok("hello world").input_ids
        print(type(model).__name__, model.generation_config.max_new_tokens)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    child = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split()[1] == "24"
    before_auto = child.stderr.split("ALONE")[0]
    assert "custom code" not in before_auto and "model of type" not in before_auto, before_auto
    assert len(predictions) == 6

    out = tmp_path / "maps"
    proc = run_cli("attention", str(run_dir), "--text", "This package contains the documentation.",
                   "--out", str(out), "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loading weights" not in proc.stderr, "transformers' bar is silenced"
    pngs = sorted(out.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    if architecture == "hfpipe-transformer":  # it copies: the copy distribution and the gate too
        assert [p.name for p in pngs] == ["copy_distribution.png", "cross_attention_layer_1.png",
                                          "cross_attention_layer_2.png"], "one grid of heads per decoder layer"
        record = json.loads((out / "copy_distribution.json").read_text(encoding="utf-8"))
        assert "copy_distribution.json" in proc.stdout  # named among the files written
        sources, generated = record["source_tokens"], record["generated_tokens"]
        assert sources and generated and len(generated) <= 8
        assert len(record["copy_weights"]) == len(record["generate_probability"]) == len(generated)
        for row, p_gen in zip(record["copy_weights"], record["generate_probability"]):
            assert len(row) == len(sources) and min(row) >= 0 and abs(sum(row) - 1) < 1e-5, row
            assert 0 < p_gen < 1
    else:
        assert not (out / "copy_distribution.json").exists()


def test_rnn_without_attention_has_nothing_to_draw(run_cli, tmp_path):
    recipe = tiny_recipe("translation", train={"max_steps": 2, "eval_every_steps": 2}, evaluate={"max_samples": 2})
    recipe["model"] = {"architecture": "hfpipe-rnn", "config": {**ARCHITECTURES["hfpipe-rnn"], "attention": "none"}}
    path = write_recipe(tmp_path, recipe)
    assert run_cli("run", str(path), "--run-dir", str(tmp_path / "run")).returncode == 0
    proc = run_cli("attention", str(tmp_path / "run"), "--text", "hello", "--out", str(tmp_path / "maps"))
    assert proc.returncode == 5 and "Traceback" not in proc.stderr
