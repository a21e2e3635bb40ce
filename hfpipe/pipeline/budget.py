"""How long training goes on and how fast it learns: the step and time budget, the training clock every process
shares, the learning-rate schedule that follows them, and early stopping on the validation metric.

Progress is the larger of steps done / step budget and time spent / time budget, so a time budget
(`train.max_minutes`) decays the schedule too. Time is the main process's clock as shared at the last optimizer
step (`SharedClock.shared`): a process reading its own clock would apply another learning rate, or leave the loop
while the others wait."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hfpipe.pipeline.checkpoints import TrainState
from hfpipe.recipe.schema import TrainConfig

if TYPE_CHECKING:
    import torch


def lr_factor(kind: str, step: int, progress: float, warmup_steps: int) -> float:
    """The learning-rate multiplier: linear warm-up over `warmup_steps`, then decay by `progress` in [0, 1]."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    if kind == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / max(step + 1, 1))
    progress = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)  # linear


@dataclass
class Budget:
    """How much training there is to do: steps and/or seconds; progress is the larger fraction done."""

    max_steps: int | None
    max_seconds: float | None

    def progress(self, step: int, seconds: float) -> float:
        parts = []
        if self.max_steps:
            parts.append(step / self.max_steps)
        if self.max_seconds:
            parts.append(seconds / self.max_seconds)
        return max(parts) if parts else 0.0

    def done(self, step: int, seconds: float) -> bool:
        return self.progress(step, seconds) >= 1.0


def make_budget(cfg: TrainConfig, steps_per_epoch: int) -> Budget:
    steps = cfg.max_steps
    if steps is None and cfg.num_epochs is not None:
        steps = max(1, math.ceil(cfg.num_epochs * steps_per_epoch))
    return Budget(steps, cfg.max_minutes * 60 if cfg.max_minutes else None)


def warmup_steps(cfg: TrainConfig, budget: Budget) -> int:
    """`train.warmup_steps`, or `warmup_ratio` of the step budget (none without one: a time budget alone)."""
    return cfg.warmup_steps or (round(cfg.warmup_ratio * budget.max_steps) if budget.max_steps else 0)


class SharedClock:
    """Training seconds. `elapsed()` is this process's own reading (resumed runs continue from the checkpoint's
    time); `shared` is the main process's reading as of the last optimizer step, set by the step's all-reduce,
    and the only one any decision (budget, schedule, checkpoint cadence) may use.

    `now` is the time source (seconds, monotonic); a test drives it instead of sleeping."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._start = now()
        self.offset = 0.0
        self.shared = 0.0

    def elapsed(self) -> float:
        return self.offset + self._now() - self._start

    def resume_at(self, seconds: float) -> None:
        self.offset = self.shared = seconds


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, budget: Budget,
                   clock: SharedClock) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then `train.lr_scheduler`'s decay by progress, stepped once per optimizer step by the caller.

    Not for `accelerator.prepare`: Accelerate would step it once per process per optimizer step, which with n
    processes runs the warm-up and decay n times too fast."""
    import torch

    warmup = warmup_steps(cfg, budget)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg.lr_scheduler, step, budget.progress(step, clock.shared), warmup))


@dataclass
class EarlyStopping:
    """The best validation value so far and how many evaluations since it improved (kept in TrainState, so a
    resumed run continues the count). `patience` None or 0: never stop early."""

    greater_is_better: bool
    patience: int | None

    def judge(self, state: TrainState, value: float | None) -> tuple[bool, bool]:
        """Record the evaluation of `state.step`; returns (stop now, improved). No value: neither."""
        if value is None:
            return False, False
        best = state.best_metric
        improved = best is None or (value > best if self.greater_is_better else value < best)
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
        else:
            state.evals_without_improvement += 1
        stop = bool(self.patience and state.evals_without_improvement >= self.patience)
        return stop, improved
