"""Runs that are stopped: SIGINT / SIGTERM / SIGKILL sent to a real `hfpipe run` mid-training, then resumed, end
with what a run that was never stopped ends with (weights, logged losses, best step, test metrics; CPU, fixed
seed); the run directory lock; resuming with a changed recipe.

The processes are real `python -m hfpipe`-equivalent subprocesses through a small wrapper that only slows each
forward pass down (so a signal reliably lands mid-training) and, for one test, kills the process with SIGKILL in
the middle of writing a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, tiny_recipe, write_recipe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WRAPPER = textwrap.dedent("""
    import os, signal, sys, time
    import hfpipe.pipeline.checkpoints as checkpoints
    import hfpipe.pipeline.training as training

    SLEEP = float(os.environ.get("TEST_FORWARD_SLEEP", "0"))
    KILL_IN_CHECKPOINT = int(os.environ.get("TEST_KILL_IN_CHECKPOINT", "0"))
    real_forward, real_json_atomic = training.forward_logits, checkpoints.json_atomic

    def forward_logits(model, batch):
        time.sleep(SLEEP)
        return real_forward(model, batch)

    def json_atomic(path, obj):
        if path.name == "trainer_state.json" and obj.get("step") == KILL_IN_CHECKPOINT:
            os.kill(os.getpid(), signal.SIGKILL)  # weights, optimizer and RNG written; the counters not yet
        real_json_atomic(path, obj)

    training.forward_logits = forward_logits
    checkpoints.json_atomic = json_atomic
    from hfpipe.cli import main
    sys.argv = ["hfpipe", *sys.argv[1:]]
    main()
""")

# 400 rows in batches of 16: 25 batches an epoch, so 30 steps cross an epoch; losses logged every 4 steps and
# checkpoints every 5 (mid log window), validation every 10 (best kept), one checkpoint kept besides best.
TRAIN = {"max_steps": 30, "checkpoint_every_steps": 5, "eval_every_steps": 10, "log_every_steps": 4,
         "keep_checkpoints": 1}


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "HFPIPE_DEBUG")}
    env.update({"HFPIPE_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "COLUMNS": "250",
                "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra})
    return env


def _start(tmp: Path, *args: str, **env: str) -> subprocess.Popen:
    script = tmp / "hfpipe_wrapper.py"
    script.write_text(WRAPPER)
    return subprocess.Popen([sys.executable, str(script), *args], cwd=tmp, env=_env(tmp, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(tmp: Path, *args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    proc = _start(tmp, *args, **env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for_step(proc: subprocess.Popen, log: Path, step: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before step {step}: {proc.communicate()[1][-3000:]}"
        if log.exists() and any(r.get("step", 0) >= step for r in _jsonl(log) if "loss" in r):
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def _same_run(a: Path, b: Path, *, metrics: bool = True) -> None:
    """b ended as a: the same log (steps, losses, learning rates, validation scores), best step, weights (final,
    last checkpoint, best) and, after `hfpipe run`, test metrics."""
    from safetensors.torch import load_file

    la, lb = _jsonl(a / "train_log.jsonl"), _jsonl(b / "train_log.jsonl")
    assert [r["step"] for r in lb] == [r["step"] for r in la], "every step logged once, in order"
    for ra, rb in zip(la, lb):
        for key in ra.keys() - {"seconds", "target_tokens_per_s"}:
            assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=1e-9), (key, ra, rb)
    last = f"checkpoints/step-{TRAIN['max_steps']}"
    sa, sb = (json.loads((run / last / "trainer_state.json").read_text()) for run in (a, b))
    for key in ("step", "epoch", "batch_in_epoch", "tokens", "best_step", "best_metric", "window_tokens"):
        assert sb[key] == sa[key], key
    if metrics:
        ma, mb = (json.loads((run / "metrics.json").read_text()) for run in (a, b))
        assert mb["training"]["best_step"] == ma["training"]["best_step"] == sa["best_step"]
        assert mb["training"]["steps"] == ma["training"]["steps"] == TRAIN["max_steps"]
        for key, value in ma["splits"]["test"].items():
            if isinstance(value, float) and key != "seconds":
                assert mb["splits"]["test"][key] == pytest.approx(value, abs=1e-9), key
    # model/ is the best weights (or the last, when the last step was the best): all three are compared.
    for weights in ("model/model.safetensors", f"{last}/model.safetensors", "checkpoints/best/model.safetensors"):
        wa, wb = load_file(str(a / weights)), load_file(str(b / weights))
        assert wa.keys() == wb.keys()
        for key in wa:
            assert (wa[key] - wb[key]).abs().max().item() <= 1e-6, (weights, key)
    assert (json.loads((b / "checkpoints/best/best.json").read_text())
            == json.loads((a / "checkpoints/best/best.json").read_text()))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The recipe run without interruption: what every stopped-and-resumed run must equal."""
    tmp = tmp_path_factory.mktemp("recovery")
    recipe = write_recipe(tmp, tiny_recipe("translation", train=TRAIN, evaluate={"max_samples": 8}))
    proc = _run(tmp, "run", str(recipe), "--run-dir", "straight")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"tmp": tmp, "recipe": recipe, "run": tmp / "straight"}


def test_sigkill_while_writing_a_checkpoint_then_resume(straight) -> None:
    """Killed (SIGKILL) in the middle of writing the step-15 checkpoint: the half-written one does not count, the
    run resumes from step 10 and ends as the uninterrupted run."""
    tmp, run = straight["tmp"], straight["tmp"] / "killed-in-checkpoint"
    proc = _run(tmp, "run", str(straight["recipe"]), "--run-dir", run.name, TEST_KILL_IN_CHECKPOINT="15")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (run / "checkpoints" / ".step-15.tmp").is_dir(), "killed while step-15 was being written"
    assert (run / "checkpoints" / "step-10" / "trainer_state.json").is_file()
    assert json.loads((run / "checkpoints" / "best" / "best.json").read_text())["step"] == 10
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"
    resumed = _run(tmp, "run", str(straight["recipe"]), "--run-dir", run.name, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = " ".join((resumed.stdout + resumed.stderr).split())
    assert "resumed from checkpoint step-10" in said and "took over the lock of pid" in said, said
    assert not list((run / "checkpoints").glob(".step-*.tmp"))
    _same_run(straight["run"], run)


def test_sigkill_at_any_moment_then_resume(straight) -> None:
    """Killed by the test at an arbitrary moment after a periodic checkpoint (mid log window, lines logged after
    the checkpoint): resumed, no step is logged twice and the run ends as the uninterrupted one."""
    tmp, run = straight["tmp"], straight["tmp"] / "killed"
    proc = _start(tmp, "train", str(straight["recipe"]), "--run-dir", run.name, TEST_FORWARD_SLEEP="0.05")
    _wait_for_step(proc, run / "train_log.jsonl", 16)
    proc.kill()
    proc.communicate(timeout=60)
    logged = [r["step"] for r in _jsonl(run / "train_log.jsonl")]
    assert max(logged) >= 16
    resumed = _run(tmp, "train", str(straight["recipe"]), "--run-dir", run.name, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint step-15" in " ".join(resumed.stdout.split()) or max(logged) >= 20
    _same_run(straight["run"], run, metrics=False)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_resumes(straight, sig: int, code: int) -> None:
    """SIGINT / SIGTERM mid-training: the step finishes, a checkpoint is saved, the manifest says interrupted,
    exit 130 / 143 with one line holding the command that resumes; that command finishes the run as if it had
    never stopped."""
    tmp, run = straight["tmp"], straight["tmp"] / f"signal-{sig}"
    proc = _start(tmp, "train", str(straight["recipe"]), "--run-dir", run.name, TEST_FORWARD_SLEEP="0.1")
    _wait_for_step(proc, run / "train_log.jsonl", 8)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    line = next(line for line in err.splitlines() if "Resume with:" in line)
    step = int(line.split(" at step ")[1].split(":")[0])
    assert 8 <= step < TRAIN["max_steps"]
    assert (run / "checkpoints" / f"step-{step}" / "trainer_state.json").is_file()
    command = line.split("Resume with: ")[1].strip()
    assert command.endswith(f"--run-dir {run.name} --resume") and command.startswith("hfpipe train ")
    resumed = _run(tmp, *command.split()[1:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from checkpoint step-{step}" in " ".join(resumed.stdout.split())
    assert json.loads((run / "manifest.json").read_text())["status"] == "trained"
    _same_run(straight["run"], run, metrics=False)


def test_second_ctrl_c_stops_at_once(straight) -> None:
    tmp, run = straight["tmp"], straight["tmp"] / "twice"
    proc = _start(tmp, "train", str(straight["recipe"]), "--run-dir", run.name, TEST_FORWARD_SLEEP="2")
    deadline = time.monotonic() + 240
    while not (run / "manifest.json").exists() or not (run / "checkpoints").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # inside the first step's 2-second forward pass
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert time.monotonic() - started < 5
    assert "SIGINT again: stopped at once" in " ".join(err.split())
    assert "Traceback" not in err
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"


def test_resume_with_a_recipe_that_changes_training_is_refused(straight) -> None:
    tmp = straight["tmp"]
    proc = _run(tmp, "train", str(straight["recipe"]), "--run-dir", str(straight["run"]), "--resume",
                "--set", "train.batch_size=8", "--set", "model.config.d_model=64", "--set", "evaluate.batch_size=2")
    assert proc.returncode == 7, proc.stderr[-3000:]
    err = " ".join(proc.stderr.split())
    assert "train.batch_size" in err and "model.config.d_model" in err and "evaluate.batch_size" not in err
    assert "Traceback" not in err
    # Harmless changes are allowed (on a copy: the uninterrupted run is what the other tests compare with).
    import shutil

    copy = tmp / "harmless"
    shutil.copytree(straight["run"], copy)
    proc = _run(tmp, "train", str(straight["recipe"]), "--run-dir", str(copy), "--resume",
                "--set", "evaluate.batch_size=2", "--set", "train.log_every_steps=3", "--set", "train.max_steps=31")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from checkpoint step-30" in " ".join(proc.stdout.split())
    assert [r["step"] for r in _jsonl(copy / "train_log.jsonl")][-2:] == [30, 31]


_HOLD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from hfpipe.runs.lock import RunLock
    RunLock(Path(sys.argv[1])).acquire()
    print("locked", os.getpid(), flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), 9)
    time.sleep(300)
""")


def test_live_lock_refuses_a_second_run(straight, tmp_path) -> None:
    """While a run holds its directory, another run into it is refused with exit 7 and the holder's pid."""
    run = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run), "hold"], env=_env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().split() == ["locked", str(holder.pid)]
        for extra in ((), ("--resume",)):
            (run / "recipe.yaml").write_text(straight["recipe"].read_text())
            proc = _run(tmp_path, "train", str(straight["recipe"]), "--run-dir", str(run), *extra)
            assert proc.returncode == 7, proc.stderr[-3000:]
            err = " ".join(proc.stderr.split())
            assert f"in use by another hfpipe run (pid {holder.pid}" in err, err
            assert "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over(straight, tmp_path) -> None:
    """A lock left by a process that died (SIGKILL, no cleanup) does not block the next run."""
    run = tmp_path / "stale"
    dead = subprocess.run([sys.executable, "-c", _HOLD, str(run), "die"], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert dead.returncode == -signal.SIGKILL, dead.stderr
    pid = int(dead.stdout.split()[1])
    assert json.loads((run / ".hfpipe.lock").read_text())["pid"] == pid
    proc = _run(tmp_path, "train", str(straight["recipe"]), "--run-dir", str(run), "--set", "train.max_steps=2",
                "--set", "train.eval_every_steps=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"took over the lock of pid {pid}" in " ".join(proc.stdout.split())
    assert (run / ".hfpipe.lock").read_text() == "", "released at the end"
