"""The pieces that make a run survive being stopped, one at a time: replacing a folder with never a moment
without one, cutting the log back to a checkpoint, the signal handler, the run-directory lock, the recipe check on
resume and the resume command. End to end (real signals, real kills): tests/e2e/test_recovery.py."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from hfpipe.errors import Interrupted, RecipeError, RunDirError
from hfpipe.runs import files
from hfpipe.pipeline.checkpoints import GracefulStop, checkpoints, cut_log
from hfpipe.runs.files import replace_dir, restore_dir
from hfpipe.runs.lock import LOCK_FILE, RunLock, changed_keys, check_resumable, check_same_data, resume_command
from hfpipe.recipe.loading import load_recipe, recipe_to_yaml

REPO = Path(__file__).resolve().parents[2]


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "weights").write_text(text)
    return path


def _never_missing(target: Path, replace) -> list[str]:
    """Replace `target` 200 times while another thread reads it; returns what the reader found."""
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append((target / "weights").read_text())
            except FileNotFoundError:
                seen.append("MISSING")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            replace(_folder(target.with_name(f".new-{i}"), f"v{i}"), target)
    finally:
        stop.set()
        reader.join()
    return seen


def test_replace_dir_never_leaves_neither(tmp_path: Path) -> None:
    if not files._exchange(_folder(tmp_path / "a", "a"), _folder(tmp_path / "b", "b")):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: the fallback is tested below")
    assert (tmp_path / "a" / "weights").read_text() == "b", "exchanged"
    target = _folder(tmp_path / "model", "old")
    seen = _never_missing(target, replace_dir)
    assert "MISSING" not in seen and len(seen) > 200
    assert (target / "weights").read_text() == "v199"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "model"], "the old folders are deleted"


def test_replace_dir_fallback_is_restored_after_a_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an atomic exchange the old folder is renamed aside first; a kill between the two renames leaves
    it there, and restore_dir (run at the start of every run) puts it back."""
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    target = _folder(tmp_path / "model", "old")
    replace_dir(_folder(tmp_path / ".new", "new"), target)
    assert (target / "weights").read_text() == "new" and not (tmp_path / ".model.old").exists()
    real_replace = os.replace

    def killed_after_first(src, dst):  # the process dies right after moving the old folder aside
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(_folder(tmp_path / ".newer", "newer"), target)
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert not target.exists() and (tmp_path / ".model.old").is_dir()
    restore_dir(target)
    assert (target / "weights").read_text() == "new"


def test_only_complete_checkpoints_count(tmp_path: Path) -> None:
    for name, complete in (("step-5", True), ("step-10", True), ("step-15", False), (".step-20.tmp", True),
                           ("step-x", True)):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "trainer_state.json").write_text("{}")
    assert [p.name for p in checkpoints(tmp_path)] == ["step-5", "step-10"]


def test_cut_log_drops_later_steps_and_a_torn_line(tmp_path: Path) -> None:
    log = tmp_path / "train_log.jsonl"
    lines = [{"step": s, "loss": 1.0} for s in (4, 8, 12)] + [{"step": 10, "eval_bleu": 1.0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 16, "lo')
    assert cut_log(log, 10) == 2
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [4, 8, 10]
    assert cut_log(log, 10) == 0
    assert cut_log(tmp_path / "missing.jsonl", 3) == 0


def test_graceful_stop_first_signal_asks_second_stops(capfd: pytest.CaptureFixture[str]) -> None:
    said: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop(announce=said.append) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM and "finishing the current step" in said[0]
        with pytest.raises(Interrupted) as err:
            os.kill(os.getpid(), signal.SIGINT)
    assert err.value.exit_code == 130 and "stopped at once" in str(err.value.message)
    assert signal.getsignal(signal.SIGTERM) is before, "handlers restored"


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    held = RunLock(tmp_path / "run").acquire()
    with pytest.raises(RunDirError) as err:
        RunLock(tmp_path / "run").acquire()  # another open file description: flock conflicts even in-process
    assert f"pid {os.getpid()}" in err.value.message
    held.release()
    assert (tmp_path / "run" / LOCK_FILE).read_text() == ""
    again = RunLock(tmp_path / "run").acquire()
    assert again.took_over is None, "a released lock is not a stale one"
    again.release()
    # What a process killed with SIGKILL leaves: the record, and no flock (the kernel dropped it).
    (tmp_path / "run" / LOCK_FILE).write_text(json.dumps({"pid": 999999999, "host": "h", "since": "t"}))
    taken = RunLock(tmp_path / "run").acquire()
    assert taken.took_over == {"pid": 999999999, "host": "h", "since": "t"}
    assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    taken.release()


def _recipe(tmp_path: Path, name: str, extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(f"""
task: translation
data:
  files: {{train: {REPO / 'tests/fixtures/ddtp-en-de.sample.jsonl'}}}
  source_lang: en
  target_lang: de
tokenizer:
  train: {{vocab_size: 1000}}
model:
  architecture: mbart
  config: {{d_model: 64}}
train:
  max_steps: 10
{extra}""")
    return path


def test_resume_refuses_changes_that_matter(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    base = load_recipe(_recipe(tmp_path, "a.yaml")).recipe
    (run / "recipe.yaml").write_text(recipe_to_yaml(base))
    harmless = load_recipe(_recipe(tmp_path, "b.yaml", "  log_every_steps: 1\n  checkpoint_every_steps: 3\n"
                                                       "evaluate: {batch_size: 2}\npush: {repo_id: me/x}\n"),
                           ["train.max_steps=20", "train.eval_every_steps=5"]).recipe
    check_resumable(run, harmless)
    changed = load_recipe(_recipe(tmp_path, "c.yaml", "  batch_size: 8\n  seed: 1\n  learning_rate: 1.0e-3\n"),
                          ["model.config.d_model=32", "data.max_source_length=64"]).recipe
    assert {"train.batch_size", "train.seed", "model.config.d_model"} <= set(changed_keys(base, changed))
    with pytest.raises(RunDirError) as err:
        check_resumable(run, changed)
    text = " ".join(err.value.details)
    for key in ("train.batch_size: 32 -> 8", "train.seed", "train.learning_rate", "model.config.d_model: 64 -> 32",
                "data.max_source_length"):
        assert key in text, text
    assert "--resume" in (err.value.hint or "")


def test_resume_command_repeats_the_users_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HFPIPE_COMMAND", raising=False)
    argv = ["hfpipe", "run", "my recipe.yaml", "--set", "train.seed=3", "--run-dir=old", "--json"]
    assert resume_command(argv, Path("runs/x")) == \
        "hfpipe run 'my recipe.yaml' --set train.seed=3 --json --run-dir runs/x --resume"
    argv = ["hfpipe", "train", "r.yaml", "--run-dir", "runs/x", "--resume"]
    assert resume_command(argv, Path("runs/x")) == "hfpipe train r.yaml --run-dir runs/x --resume"
    monkeypatch.setenv("HFPIPE_COMMAND", "hfpipe run r.yaml --processes 2")
    assert resume_command(["hfpipe", "run", "r.yaml"], Path("d")) == \
        "hfpipe run r.yaml --processes 2 --run-dir d --resume"


@pytest.mark.parametrize("override", ["train.checkpoint_every_steps=0", "train.checkpoint_every_minutes=-1",
                                      "train.checkpoint_every_minute=2"])
def test_checkpoint_settings_are_validated(tmp_path: Path, override: str) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(_recipe(tmp_path, "r.yaml"), [override])
    assert "train.checkpoint_every_" in str(err.value)


def test_default_checkpoints_a_five_minute_run() -> None:
    """The shipped ~5-minute recipes validate only at the end: the default time cadence checkpoints them mid-run."""
    for name in ("translation-en-de.yaml", "summarization.yaml"):
        train = load_recipe(REPO / "recipes" / name).recipe.train
        assert train.checkpoint_every_minutes is not None and train.checkpoint_every_minutes <= 2.5


def test_lock_in_a_folder_without_write_permission(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RunDirError) as err:
            RunLock(locked / "run").acquire()
        assert "cannot create the run directory" in err.value.message
    finally:
        locked.chmod(0o700)


def test_resume_is_refused_only_for_the_data_files_whose_content_changed(tmp_path):
    """A split may be several files: each is compared with the one at its place in the run's manifest."""
    def entry(split, path, sha):
        return {"split": split, "path": path, "sha256": sha}

    started = {"data": {"files": [entry("train", "a", "1"), entry("train", "b", "2"), entry("test", "t", "3")]}}
    check_same_data(started, started["data"]["files"], tmp_path)  # nothing changed
    check_same_data(None, [entry("train", "a", "9")], tmp_path)  # a run without a manifest yet
    with pytest.raises(RunDirError) as info:
        check_same_data(started, [entry("train", "a", "1"), entry("train", "b", "7"), entry("test", "t", "3")],
                        tmp_path)
    assert info.value.details == ["train: b"]
    with pytest.raises(RunDirError) as info:  # a file more: the split is another one
        check_same_data(started, [entry("train", "a", "1"), entry("train", "b", "2"), entry("train", "c", "5")],
                        tmp_path)
    assert info.value.details == ["train: a", "train: b", "train: c"]
