"""`hfpipe run` end to end: tiny models trained for real, artifacts checked against the libraries' own numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from tests.e2e.conftest import REPO, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _unmatchable_validation(folder: Path) -> Path:
    """The shipped validation sources with a reference no model can produce ("ǂ", outside every vocabulary): BLEU
    is exactly 0 at every evaluation, so the first evaluation (step 8) stays the best (a tie is no improvement) and
    the run must reload its weights over the last step's."""
    import gzip

    rows = [json.loads(line) for line in gzip.open(REPO / "data/ddtp-en-de.validation.jsonl.gz", "rt")][:40]
    path = folder / "validation-unmatchable.jsonl"
    path.write_text("".join(json.dumps({"translation": {"en": r["translation"]["en"], "de": "ǂ"}}) + "\n"
                            for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mt")
    recipe = tiny_recipe("translation")
    recipe["data"]["files"]["validation"] = str(_unmatchable_validation(tmp))
    recipe["evaluate"]["max_length_ratio"] = 3.0  # saved with the model for `predict` (see test_model_loads_...)
    recipe = write_recipe(tmp, recipe)
    run_dir = tmp / "run"
    env = {**os.environ, "HFPIPE_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "hfpipe", "run", str(recipe), "--run-dir", str(run_dir), "--json"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"tmp": tmp, "recipe": recipe, "run_dir": run_dir, "env": env, "proc": proc,
            "summary": json.loads(proc.stdout)}


def test_run_directory_layout(translation_run):
    run_dir = translation_run["run_dir"]
    for name in ("recipe.yaml", "manifest.json", "metrics.json", "predictions-test.jsonl", "train_log.jsonl",
                 "curves.png", "length-test.png", "tokenizer/tokenizer.json", "model/config.json",
                 "model/model.safetensors", "model/generation_config.json", "model/tokenizer.json"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "checkpoints").glob("step-*")), "a resumable checkpoint is kept"
    assert not list(run_dir.rglob(".*.tmp")), "no half-written temp files are left"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["seed"] == 7
    assert {"torch", "transformers", "datasets", "hfpipe"} <= set(manifest["versions"])
    files = {f["split"]: f for f in manifest["data"]["files"]}
    assert set(files) == {"train", "validation", "test"}
    assert len(files["train"]["sha256"]) == 64 and files["train"]["rows"] == 20000
    assert manifest["data"]["rows"]["train"] == 400
    assert manifest["started"] and manifest["finished"]
    tokenizer_config = json.loads((run_dir / "model" / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == 160, "the model's positions, not the trained tokenizer's 1e6"
    assert not {"is_local", "local_files_only"} & set(tokenizer_config), "how hfpipe loaded it is not saved"


def test_metrics_equal_sacrebleu_on_written_predictions(translation_run):
    run_dir = translation_run["run_dir"]
    rows = _jsonl(run_dir / "predictions-test.jsonl")
    assert len(rows) == 24
    preds = [r["prediction"] for r in rows]
    refs = [r["reference"] for r in rows]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["splits"]["test"]
    assert test["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-4)
    assert test["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score, abs=1e-4)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rl = sum(scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(refs, preds)) / len(rows)
    assert test["rougeL"] == pytest.approx(rl, abs=1e-4)
    assert "version:" in metrics["signatures"]["bleu"]
    assert metrics["generation"]["max_new_tokens"] == 24
    buckets = test["by_length"]
    assert sum(b["num_samples"] for b in buckets) == 24


def test_predictions_keep_the_data_order(translation_run):
    """Generation runs sorted by length; the file must come back in the original order."""
    from hfpipe.pipeline.data import read_splits
    from hfpipe.recipe.loading import load_recipe

    splits, _ = read_splits(load_recipe(translation_run["run_dir"] / "recipe.yaml").recipe)
    rows = _jsonl(translation_run["run_dir"] / "predictions-test.jsonl")
    assert [r["source"] for r in rows] == [e.source for e in splits["test"]]
    assert [r["reference"] for r in rows] == [e.target for e in splits["test"]]


def test_training_learns_and_logs(translation_run):
    log = _jsonl(translation_run["run_dir"] / "train_log.jsonl")
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 4
    assert losses[-1] < losses[0] - 0.5, losses
    evals = [r for r in log if "eval_bleu" in r]
    assert [r["step"] for r in evals] == [8, 16]
    assert [r["eval_bleu"] for r in evals] == [0.0, 0.0], "the validation references cannot be matched"


def test_the_best_weights_are_reloaded(translation_run):
    """Step 8 is the best (16 only ties it): model/ holds step 8's weights (checkpoints/best), not step 16's."""
    from safetensors.torch import load_file

    train = translation_run["summary"]["train"]
    assert train["steps"] == 16 and train["best_step"] == 8
    checkpoints = translation_run["run_dir"] / "checkpoints"
    assert json.loads((checkpoints / "best" / "best.json").read_text())["step"] == 8
    final = load_file(translation_run["run_dir"] / "model" / "model.safetensors")
    best = load_file(checkpoints / "best" / "model.safetensors")
    last = load_file(checkpoints / "step-16" / "model.safetensors")
    shared = sorted(set(final) & set(best) & set(last))
    assert len(shared) > 10
    assert all(final[k].equal(best[k]) for k in shared)
    assert not all(final[k].equal(last[k]) for k in shared), "steps 9-16 changed the weights"


def test_model_loads_without_hfpipe(translation_run, tmp_path):
    """model/ is a plain Hugging Face folder: a process that cannot import hfpipe loads and uses it."""
    model_dir = translation_run["run_dir"] / "model"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["hfpipe"] = None  # unimportable here even where hfpipe is installed: loading must not need it
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(model_dir)!r})
        model = AutoModelForSeq2SeqLM.from_pretrained({str(model_dir)!r})
        out = model.generate(**tok(["This package contains the documentation."], return_tensors="pt"))
        assert model.generation_config.max_new_tokens == 24, model.generation_config
        print(tok.decode(out[0], skip_special_tokens=True))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_saved_length_limits_are_applied_when_the_model_is_loaded(translation_run):
    """evaluate.max_length_ratio is saved with the model (transformers keeps the key in the file but drops it on
    load) and hfpipe's loader, which `predict` uses, puts it back."""
    from hfpipe.pipeline.inference import load_model_and_tokenizer

    run_dir = translation_run["run_dir"]
    saved = json.loads((run_dir / "model" / "generation_config.json").read_text())
    assert saved["hfpipe_max_length_ratio"] == 3.0 and "hfpipe_min_length_ratio" not in saved
    for target in (run_dir, run_dir / "model"):
        model, _, _ = load_model_and_tokenizer(str(target))
        assert model.generation_config.hfpipe_max_length_ratio == 3.0


def test_rerun_with_new_train_settings_reuses_tokenization(translation_run, run_cli, tmp_path):
    env = {"HFPIPE_CACHE": translation_run["env"]["HFPIPE_CACHE"]}
    proc = run_cli("run", str(translation_run["recipe"]), "--run-dir", str(tmp_path / "run2"), "--json",
                   "--set", "train.learning_rate=1e-3", "--set", "train.max_steps=4", "--set",
                   "train.eval_every_steps=4", "--set", "evaluate.max_samples=4", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert {"tokenizer", "tokenize"} <= set(summary["reused"])
    assert "(trained earlier on the same data: reused)" in proc.stderr
    assert "tokenized data unchanged: reused from cache" in proc.stderr


def test_resume_skips_finished_stages(translation_run, run_cli):
    """Resuming a finished run with the same recipe redoes neither training nor evaluation."""
    env = {"HFPIPE_CACHE": translation_run["env"]["HFPIPE_CACHE"]}
    recipe = translation_run["run_dir"] / "recipe.yaml"
    before = (translation_run["run_dir"] / "model" / "model.safetensors").stat().st_mtime_ns
    proc = run_cli("run", str(recipe), "--run-dir", str(translation_run["run_dir"]), "--resume", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert {"train", "evaluate"} <= set(summary["reused"])
    assert (translation_run["run_dir"] / "model" / "model.safetensors").stat().st_mtime_ns == before


def test_resume_continues_training_from_checkpoint(run_cli, tmp_path):
    recipe = write_recipe(tmp_path, tiny_recipe("translation", evaluate={"max_samples": 4}))
    run_dir = tmp_path / "run"
    first = run_cli("train", str(recipe), "--run-dir", str(run_dir), "--set", "train.max_steps=8")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run_dir / "checkpoints" / "step-8").exists()
    again = run_cli("run", str(recipe), "--run-dir", str(run_dir), "--resume", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    log = _jsonl(run_dir / "train_log.jsonl")
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == [4, 8, 12, 16], "steps 1-8 are not trained twice"
    assert json.loads(again.stdout)["train"]["steps"] == 16


def test_existing_run_dir_is_not_overwritten(translation_run, run_cli):
    proc = run_cli("run", str(translation_run["recipe"]), "--run-dir", str(translation_run["run_dir"]))
    assert proc.returncode == 7
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_and_predict_commands(translation_run, run_cli, tmp_path):
    env = {"HFPIPE_CACHE": translation_run["env"]["HFPIPE_CACHE"]}
    run_dir = translation_run["run_dir"]
    proc = run_cli("evaluate", str(run_dir), "--split", "validation", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout)["metrics"]["validation"]
    assert metrics["num_samples"] == 24
    assert "Loading weights" not in proc.stderr
    assert (run_dir / "predictions-validation.jsonl").exists()
    assert set(json.loads((run_dir / "metrics.json").read_text())["splits"]) == {"test", "validation"}

    lines = ["This package contains the documentation.", "", "A free game of ancient warfare."]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    proc = run_cli("predict", str(run_dir), "--input", str(tmp_path / "in.txt"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loading weights" not in proc.stderr, "transformers' bar is silenced"
    out = proc.stdout.split("\n")
    assert len(out) == 4 and out[-1] == "" and out[1] == "", "one output line per input line"
    proc = run_cli("predict", str(run_dir / "model"), env=env, stdin="Hello world\n")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1


def test_evaluate_on_other_data_keeps_the_runs_record(translation_run, run_cli, tmp_path):
    """Another test file through --recipe is recorded in evaluations/, never over the run's own test results; the
    run's own data (its recipe passed again) still updates the run's record; --name chooses the folder."""
    import shutil

    import yaml

    run_dir = tmp_path / "run"
    shutil.copytree(translation_run["run_dir"], run_dir)
    env = {"HFPIPE_CACHE": translation_run["env"]["HFPIPE_CACHE"]}
    own_metrics = (run_dir / "metrics.json").read_text()
    own_predictions = (run_dir / "predictions-test.jsonl").read_text()
    other = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    other["data"]["files"]["test"] = str(REPO / "tests/fixtures/ddtp-en-de.sample.jsonl")
    other_recipe = write_recipe(tmp_path, other, "other.yaml")

    proc = run_cli("evaluate", str(run_dir), "--recipe", str(other_recipe), "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    folder = Path(record["evaluation_dir"])
    assert folder.parent == run_dir / "evaluations" and folder.name.startswith("test-")
    assert (run_dir / "metrics.json").read_text() == own_metrics
    assert (run_dir / "predictions-test.jsonl").read_text() == own_predictions
    from hfpipe.pipeline.data import read_splits
    from hfpipe.recipe.loading import load_recipe

    rows = _jsonl(folder / "predictions-test.jsonl")
    sample = read_splits(load_recipe(other_recipe).recipe)[0]["test"]
    assert [r["reference"] for r in rows] == [e.target for e in sample] and len(rows) == 24
    scored = json.loads((folder / "metrics.json").read_text())["splits"]["test"]
    assert scored["bleu"] == pytest.approx(sacrebleu.corpus_bleu([r["prediction"] for r in rows],
                                                                 [[r["reference"] for r in rows]]).score, abs=1e-4)
    assert record["metrics"]["test"]["bleu"] == scored["bleu"], "the record shows what was measured"
    assert yaml.safe_load((folder / "recipe.yaml").read_text())["data"]["files"]["test"].endswith("sample.jsonl")

    again = run_cli("evaluate", str(run_dir), "--recipe", str(other_recipe), "--name", "sample", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (run_dir / "evaluations" / "sample" / "predictions-test.jsonl").read_text() == \
        (folder / "predictions-test.jsonl").read_text()

    (run_dir / "predictions-test.jsonl").unlink()
    own = run_cli("evaluate", str(run_dir), "--recipe", str(run_dir / "recipe.yaml"), env=env)
    assert own.returncode == 0, own.stderr[-3000:]
    assert (run_dir / "predictions-test.jsonl").read_text() == own_predictions, "the run's own data: its record"
    assert sorted(p.name for p in (run_dir / "evaluations").iterdir()) == sorted([folder.name, "sample"])


@pytest.mark.parametrize("task", ["summarization"])
def test_summarization_run_scores_match_rouge_score(task, run_cli, tmp_path):
    recipe = write_recipe(tmp_path, tiny_recipe(task, train={"max_steps": 8, "eval_every_steps": 8},
                                                evaluate={"no_repeat_ngram_size": 3}))
    proc = run_cli("run", str(recipe), "--run-dir", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _jsonl(tmp_path / "run" / "predictions-test.jsonl")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["splits"]["test"]
    for key in ("rouge1", "rouge2", "rougeL"):
        expected = sum(scorer.score(r["reference"], r["prediction"])[key].fmeasure for r in rows) / len(rows)
        assert metrics[key] == pytest.approx(expected, abs=1e-4)


def test_two_process_evaluation_matches_one_process(translation_run, tmp_path):
    """`accelerate launch` with 2 real CPU processes: generation is sharded and gathered; the predictions file has
    every row once, in data order, identical to the single-process run (3 batches over 2 processes, so the
    last round is padded with a duplicate batch that must be dropped)."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(translation_run["run_dir"], run_dir)
    single = _jsonl(run_dir / "predictions-test.jsonl")
    (run_dir / "predictions-test.jsonl").unlink()
    env = {**translation_run["env"], "COLUMNS": "160"}
    # Two real processes (`--cpu` would start one): accelerate's multi-process launcher, over gloo on the CPU.
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", "0", "-m", "hfpipe", "evaluate", str(run_dir), "--split", "test",
                           "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi = _jsonl(run_dir / "predictions-test.jsonl")
    assert [r["prediction"] for r in multi] == [r["prediction"] for r in single]
    assert json.loads(proc.stdout)["metrics"]["test"]["num_samples"] == 24, "one JSON document: only the main process prints"


# A resumed run equal to an uninterrupted one, after real SIGKILL / SIGINT / SIGTERM: tests/e2e/test_recovery.py.
