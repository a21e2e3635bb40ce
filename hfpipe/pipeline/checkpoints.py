"""What lets a training run survive being stopped: complete checkpoints, the best weights with their step, the
training log cut back to a checkpoint, and SIGINT / SIGTERM turned into "stop after this step".

A checkpoint `checkpoints/step-N/` is written as `.step-N.tmp/` (Accelerate state: model, optimizer, scheduler, RNG
of every process; then `trainer_state.json` with the counters, the sampler position and the loss-window sums) and
renamed once complete, so a kill at any moment leaves either the previous checkpoints or the new one, never half
of one; only a folder with `trainer_state.json` counts. Older checkpoints are deleted after the rename.

`checkpoints/best/` holds the best weights and `best.json` with their step. It is replaced only after a checkpoint
that records that step as the best is complete, so the newest checkpoint and best/ always agree, or (a kill
between the two) the checkpoint is itself at the best step and best/ is rebuilt from it on resume.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from hfpipe.errors import Interrupted, RunDirError
from hfpipe.pipeline.distributed import from_main
from hfpipe.runs.files import json_atomic, replace_dir, text_atomic
from hfpipe.recipe.schema import TrainConfig

if TYPE_CHECKING:
    from accelerate import Accelerator

STATE_FILE = "trainer_state.json"
BEST_FILE = "best.json"
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


# --------------------------------------------------------------------------------------------- checkpoints
@dataclass
class TrainState:
    """Counters saved with every checkpoint so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds: float = 0.0
    tokens: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    # batch_in_epoch counts one process's batches of an epoch that was dealt out to this many processes, each
    # accumulating this many micro-batches per step: a resume must deal it out the same way.
    processes: int | None = None  # None: a checkpoint from before hfpipe recorded it
    accumulation: int | None = None
    # The log window in progress (summed global loss and target tokens since the last logged step), so that a
    # resumed run logs the same losses as an uninterrupted one; and what else the loop carries across steps.
    window_loss: float = 0.0
    window_tokens: int = 0
    last_loss: float | None = None
    overflows: int = 0
    last_eval_step: int | None = None
    checkpoint_seconds: float = 0.0  # training time at the last checkpoint (for checkpoint_every_minutes)


def checkpoints(folder: Path) -> list[Path]:
    """The complete checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step-*") if p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(folder: Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1] if found else None


def write_checkpoint(accelerator: Accelerator, folder: Path, step: int, state: dict[str, Any], *,
                     keep: int) -> Path:
    """Save a complete checkpoint of step `step` (a collective: every process calls it); keep the newest `keep`.

    `state` (JSON) goes in last, into the temporary folder, which is then renamed: a checkpoint is either all
    there or not there."""
    final = folder / f"step-{step}"
    tmp = folder / f".step-{step}.tmp"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed while writing it
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process: the main one the model and optimizer, each its RNG state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        json_atomic(tmp / STATE_FILE, state)
        _sync(tmp)
        replace_dir(tmp, final)
        for old in checkpoints(folder)[:-keep]:  # only once the newer one is complete
            # Renamed first: a kill in the middle of deleting must not leave a step-N that looks complete.
            gone = old.with_name(f".{old.name}.tmp")
            os.replace(old, gone)
            shutil.rmtree(gone, ignore_errors=True)
        for stale in folder.glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _sync(folder: Path) -> None:
    """Flush the files of `folder` to disk before the rename that makes them count (a power loss must not leave
    a renamed folder of empty files)."""
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def stopped_message(signum: int, step: int, checkpoint: Path) -> str:
    return f"interrupted by {SIGNAL_NAMES.get(signum, signum)} at step {step}: checkpoint {checkpoint} saved"


def checkpoint_due(cfg: TrainConfig, state: TrainState) -> bool:
    """A periodic checkpoint: every checkpoint_every_steps, or once checkpoint_every_minutes of training passed
    since the last one (the shared clock: every process decides the same)."""
    if cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0:
        return True
    return bool(cfg.checkpoint_every_minutes
                and state.seconds - state.checkpoint_seconds >= cfg.checkpoint_every_minutes * 60)


def resume_from_checkpoint(accelerator: Accelerator, model: Any, ckpt_dir: Path, log_path: Path,
                           state: TrainState, on_message: Callable[[str], None] | None) -> TrainState:
    """Load the newest complete checkpoint (if any) into the prepared objects; returns its counters. The log is
    cut back to its step, and best/ rebuilt when a kill came between the checkpoint and best/."""
    last = latest_checkpoint(ckpt_dir)
    if last is None:
        if accelerator.is_main_process:
            cut_log(log_path, 0)
        if on_message is not None:
            on_message("no complete checkpoint in this run yet: training from the start")
        return state
    saved = TrainState(**read_state(last))
    n_proc, accum = state.processes, state.accumulation
    if saved.processes is not None and (saved.processes, saved.accumulation) != (n_proc, accum):
        raise RunDirError(f"cannot resume from {last}: it was trained on {saved.processes} process(es) with "
                          f"gradient accumulation {saved.accumulation}, this launch has {n_proc} and "
                          f"{accum}", where=str(last),
                          hint=f"resume with {saved.processes} process(es) and the run's recipe.yaml")
    try:
        accelerator.load_state(str(last))
    except (RuntimeError, ValueError, KeyError) as err:
        raise RunDirError(f"cannot resume from {last}: it does not match this recipe's model ({err})",
                          where=str(last), hint="resume with the recipe the run was started with "
                                                "(its recipe.yaml), or start a new run") from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        cut_log(log_path, saved.step)
        if saved.best_step is not None and saved.best_step == saved.step and best_step(ckpt_dir) != saved.step:
            save_best(accelerator.unwrap_model(model), ckpt_dir, saved.step, saved.best_metric)
    accelerator.wait_for_everyone()
    if on_message is not None:
        on_message(f"resumed from checkpoint {last.name} (step {saved.step})")
    return saved


class Checkpointer:
    """When and how the training loop checkpoints `folder` (<run>/checkpoints): periodically, after every
    evaluation (then best/ too), on a stop signal and at the end; and resuming from the newest checkpoint.
    Every method is a collective: every process calls it at the same step."""

    def __init__(self, accelerator: Accelerator, folder: Path, cfg: TrainConfig) -> None:
        self.accelerator, self.folder, self.cfg = accelerator, folder, cfg

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step}"

    def due(self, state: TrainState) -> bool:
        return checkpoint_due(self.cfg, state)

    def save(self, state: TrainState) -> Path:
        """Checkpoint `state.step` unless it already is (the main process decides: one answer for all)."""
        path = self.path(state.step)
        if from_main(self.accelerator, (path / STATE_FILE).exists()):
            return path
        state.checkpoint_seconds = state.seconds
        return write_checkpoint(self.accelerator, self.folder, state.step, asdict(state),
                                keep=self.cfg.keep_checkpoints)

    def save_after_eval(self, state: TrainState, model: Any, improved: bool) -> None:
        """The checkpoint that records the new best step is complete before best/ is replaced: a kill between the
        two leaves a checkpoint at the best step, from which a resume rebuilds best/."""
        self.save(state)
        if improved:
            self.accelerator.wait_for_everyone()
            if self.accelerator.is_main_process:
                save_best(self.accelerator.unwrap_model(model), self.folder, state.step, state.best_metric)
            self.accelerator.wait_for_everyone()

    def resume(self, model: Any, log_path: Path, state: TrainState,
               on_message: Callable[[str], None] | None) -> TrainState:
        return resume_from_checkpoint(self.accelerator, model, self.folder, log_path, state, on_message)


# --------------------------------------------------------------------------------------------- best weights
def save_best(model: Any, folder: Path, step: int, metric: float | None) -> None:
    """Write the model's weights as `folder/best` with their step (main process only)."""
    from safetensors.torch import save_model

    tmp = folder / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    json_atomic(tmp / BEST_FILE, {"step": step, "metric": metric})
    _sync(tmp)
    replace_dir(tmp, folder / "best")


def best_step(folder: Path) -> int | None:
    """The step whose weights `folder/best` holds (None: no best/, or one written before hfpipe recorded it)."""
    try:
        return int(json.loads((folder / "best" / BEST_FILE).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------------------------- the log
def cut_log(log_path: Path, step: int) -> int:
    """Drop the lines of train_log.jsonl after `step` (written after the checkpoint a run resumes from, and
    about to be written again); returns how many were dropped. A torn last line (killed mid-write) goes too."""
    if not log_path.exists():
        return 0
    kept, dropped = [], 0
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            keep = int(entry["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(line + "\n")
        elif line.strip():
            dropped += 1
    if dropped:
        text_atomic(log_path, "".join(kept))
    return dropped


# --------------------------------------------------------------------------------------------- signals
class GracefulStop:
    """SIGINT and SIGTERM during training: the first asks the loop to stop after the current optimizer step (it
    then saves a checkpoint and raises Interrupted); a second one raises Interrupted at once.

    Only the flag is set in the handler: the loop reads it where every process can agree on it (the per-step
    all-reduce), so several processes stop at the same step."""

    def __init__(self, *, announce: Callable[[str], None] | None = None) -> None:
        self.signum = 0
        self._announce = announce
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # Python only delivers signals there
            for sig in SIGNAL_NAMES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            raise Interrupted(signum, f"{SIGNAL_NAMES.get(signum, signum)} again: stopped at once, without saving "
                                      "this step (the last complete checkpoint is still there to resume from)")
        self.signum = signum
        if self._announce is not None:
            self._announce(f"{SIGNAL_NAMES.get(signum, signum)}: finishing the current step and saving a checkpoint "
                           f"({'Ctrl-C' if signum == signal.SIGINT else 'send it'} again to stop at once)")


def announce_on_stderr(text: str) -> None:
    """Print from a signal handler: a plain write, as the handler may interrupt the console in mid-line."""
    try:
        os.write(2, f"\n{text}\n".encode())
    except OSError:
        pass
