"""Who may use a run directory: one run at a time (a lock), a new run only into an empty one, and a resumed run
only with a recipe that continues the same training.

The lock is `fcntl.flock` on `<run>/.hfpipe.lock`, a file that also records the holder's pid and host. The kernel
releases a flock when its process dies, however it dies (SIGKILL included), so a lock left behind by a dead
process is simply taken over; the pid in the file says whose it was.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hfpipe.errors import RunDirError
from hfpipe.recipe.schema import Recipe

LOCK_FILE = ".hfpipe.lock"

# What a resumed run may change: none of these changes which rows make up an optimizer step, the model, the
# tokenizer or the optimizer. A longer or shorter budget is allowed (continue training for longer), knowing that
# a schedule that decays by progress then decays from the checkpoint on by the new budget.
RESUMABLE_CHANGES = (
    "name", "description", "evaluate", "push", "gates", "distributed.timeout_minutes",
    "distributed.accelerate_config", "train.max_steps", "train.num_epochs", "train.max_minutes",
    "train.eval_every_steps", "train.eval_samples", "train.eval_num_beams", "train.early_stopping_patience",
    "train.keep_checkpoints", "train.checkpoint_every_steps", "train.checkpoint_every_minutes",
    "train.log_every_steps", "train.report_to", "train.dataloader_workers",
)


class RunLock:
    """An exclusive lock on a run directory, held from `acquire` until `release` or the process's end."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None  # the dead holder whose lock this one replaced

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunDirError(f"cannot create the run directory {self.path.parent}: {err.strerror or err}",
                              where=str(err.filename or self.path.parent),
                              hint="choose a --run-dir where you may write, or fix its permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder() or {}
            raise RunDirError(f"run directory {self.path.parent} is in use by another hfpipe run (pid "
                              f"{holder.get('pid', 'unknown')} on {holder.get('host', 'this machine')}, since "
                              f"{holder.get('since', '?')})", where=str(self.path),
                              hint="wait for that run to end (or stop it), or choose another --run-dir") from None
        except OSError as err:  # a file system without flock (some network file systems)
            os.close(fd)
            raise RunDirError(f"cannot lock run directory {self.path.parent}: {err.strerror}", where=str(self.path),
                              hint="put the run directory on a local file system") from None
        previous = self.holder()
        if previous and previous.get("pid") != os.getpid():
            self.took_over = previous  # its process is gone: the kernel released its lock
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(timezone.utc).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock. The file stays: deleting it could let two later runs lock two different files."""
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


def claim_run_dir(run_dir: Path, *, resume: bool, recipe: Recipe) -> RunLock:
    """Lock `run_dir` for this run, after checking that a new run goes into an empty folder and that a resumed
    one keeps the recipe's training the same. Main process only."""
    lock = RunLock(run_dir).acquire()
    try:
        if not resume:
            if any(p.name != LOCK_FILE for p in run_dir.iterdir()):
                raise RunDirError(f"run directory {run_dir} already exists and is not empty",
                                  hint="pass --resume to continue that run, or choose another --run-dir")
        else:
            check_resumable(run_dir, recipe)
    except BaseException:
        lock.release()
        raise
    return lock


def changed_keys(old: Recipe, new: Recipe) -> list[str]:
    """Dotted recipe keys whose values differ (a section added or dropped counts as its keys)."""
    a, b = _flatten(old.model_dump(mode="json", by_alias=True)), _flatten(new.model_dump(mode="json", by_alias=True))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def check_resumable(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to resume with a recipe that changes what the run trains (data, tokenizer, model, batches, optimizer)."""
    from hfpipe.recipe.loading import load_recipe

    saved = run_dir / "recipe.yaml"
    try:
        old = load_recipe(saved).recipe
    except Exception as err:  # noqa: BLE001 - any reason it cannot be read is the same problem for the user
        raise RunDirError(f"cannot resume: the run's recipe {saved} cannot be read ({str(err).splitlines()[0]})",
                          where=str(saved), hint="start a new run") from None
    blocking = [k for k in changed_keys(old, recipe)
                if not any(k == p or k.startswith(p + ".") for p in RESUMABLE_CHANGES)]
    if blocking:
        shown = [f"{k}: {_get(old, k)!r} -> {_get(recipe, k)!r}" for k in blocking[:12]]
        raise RunDirError("cannot resume: the recipe changed in a way that changes what this run trains",
                          where=str(saved), details=shown + ([f"... and {len(blocking) - 12} more"]
                                                            if len(blocking) > 12 else []),
                          hint=f"resume with the run's own recipe (hfpipe run {saved} --run-dir {run_dir} "
                               "--resume), or start a new run; only evaluation, logging, checkpoint, push, gate "
                               "and budget settings may change on resume")


def check_same_data(previous_manifest: dict[str, Any] | None, files: list[dict[str, Any]], run_dir: Path) -> None:
    """Refuse to resume on data files whose content changed since the run started (same paths, new rows)."""
    if not previous_manifest:
        return

    def by_split(entries: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:  # a split may be several files
        out: dict[Any, list[dict[str, Any]]] = {}
        for f in entries:
            out.setdefault(f.get("split"), []).append(f)
        return out

    old, new = by_split((previous_manifest.get("data") or {}).get("files", [])), by_split(files)
    changed = []
    for split, now in new.items():
        before = old.get(split)
        if not before or not all(f.get("sha256") for f in now):
            continue
        if len(before) != len(now):
            changed += [f"{split}: {f.get('path')}" for f in now]
        else:
            changed += [f"{split}: {f.get('path')}" for a, f in zip(before, now) if a.get("sha256") != f.get("sha256")]
    if changed:
        raise RunDirError("cannot resume: data files changed since this run started", where=str(run_dir),
                          details=changed, hint="start a new run on the new data")


def without_option(args: list[str], option: str) -> list[str]:
    """`args` without `option` and its value (given as `--option VALUE` or `--option=VALUE`)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def resume_command(argv: list[str], run_dir: Path) -> str:
    """The command that resumes this run: the user's own command line (the one `--processes N` was given when
    there was one), with `--run-dir RUN --resume`."""
    line = os.environ.get("HFPIPE_COMMAND")
    args = shlex.split(line) if line else list(argv)
    out = [arg for arg in without_option(args, "--run-dir") if arg != "--resume"]
    if out and Path(out[0]).name in ("hfpipe", "__main__.py"):
        out[0] = "hfpipe"
    return shlex.join([*out, "--run-dir", str(run_dir), "--resume"])


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _get(recipe: Recipe, key: str) -> Any:
    value: Any = recipe.model_dump(mode="json", by_alias=True)
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
