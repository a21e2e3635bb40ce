"""Stage 4, training: an explicit Accelerate loop, in the style of accelerate's examples and torchtune recipes.

One Accelerator (made by the runner) handles devices, mixed precision, gradient accumulation and many
processes. The loop composes parts that are each tested alone:
- batching.py: the loader, batches grouped by length under a token budget, padded per batch;
- optimization.py: the optimizer and one optimizer step (token-summed loss over micro-batches, the per-step
  all-reduce, the non-finite check, clipping);
- budget.py: the step/time budget, the clock every process shares, the learning-rate schedule (warm-up, then
  decay by progress, so a time budget `train.max_minutes` decays it too) and early stopping;
- checkpoints.py: every `checkpoint_every_steps` / `checkpoint_every_minutes`, after every evaluation, at the end,
  and when SIGINT or SIGTERM stops the run, so `--resume` continues where a run stopped, to the same weights and
  logged losses as a run that was never stopped.
Every `eval_every_steps` the model generates on a validation sample; the best weights by the task's metric are
kept and training stops early when they stop improving.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpipe.errors import Interrupted, RunDirError, TrainingError
from hfpipe.pipeline.batching import LengthGroupedBatches, make_loader
from hfpipe.pipeline.budget import Budget, EarlyStopping, SharedClock, make_budget, make_scheduler
from hfpipe.pipeline.checkpoints import (
    Checkpointer,
    GracefulStop,
    TrainState,
    announce_on_stderr,
    best_step,
    stopped_message,
)
from hfpipe.pipeline.distributed import from_main
from hfpipe.pipeline.optimization import OptimizerStep, StepTotals, make_optimizer
from hfpipe.recipe.schema import Recipe, TrainConfig

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TrainResult", "forward_logits", "from_main", "train"]


@dataclass
class TrainResult:
    steps: int
    epochs_done: float
    seconds: float
    tokens_per_second: float
    final_loss: float | None
    best_metric: float | None
    best_step: int | None
    metric_name: str
    stopped_early: bool
    parameters: int
    mixed_precision: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def forward_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Decoder logits for a batch. Decoder inputs are made from the labels by the model's own shift-right when it
    has one, so the model does not also compute a loss of its own (a second full-vocabulary softmax, which
    EncoderDecoderModel even does in float32); hfpipe computes the loss once, with label smoothing."""
    core = model.module if hasattr(model, "module") else model
    prepare = getattr(core, "prepare_decoder_input_ids_from_labels", None)
    if prepare is not None:
        decoder_input_ids = prepare(labels=batch["labels"])
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     decoder_input_ids=decoder_input_ids).logits
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).logits


def ddp_forward(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """forward_logits (looked up here at each call, where the tests slow it down or poison it), with DDP's
    complaint about parameters without gradient (raised by every process at the same step) turned into the
    setting that fixes it."""
    try:
        return forward_logits(model, batch)
    except RuntimeError as err:
        if "find_unused_parameters" not in str(err):
            raise
        raise TrainingError("some model parameters get no gradient, which DDP (several processes) refuses by "
                            "default", hint="set distributed.find_unused_parameters: true in the recipe") from None


EvalFn = Callable[["PreTrainedModel"], dict[str, Any]]
ProgressFn = Callable[[int, "int | None", dict[str, Any]], None]


class TrainLog:
    """train_log.jsonl (main process only) and Accelerate's trackers (TensorBoard, W&B, ...: numbers only, by
    optimizer step)."""

    def __init__(self, accelerator: Accelerator, path: Path, *, trackers: bool) -> None:
        self.accelerator, self.path, self.trackers = accelerator, path, trackers

    def write(self, entry: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        if self.trackers:
            self.accelerator.log({f"train/{k}" if not k.startswith("eval_") else f"eval/{k[5:]}": v
                                  for k, v in entry.items() if k not in ("step", "epoch")
                                  and isinstance(v, (int, float)) and not isinstance(v, bool)}, step=entry["step"])


class TrainingLoop:
    """The epochs of one training: feeds the optimizer step, logs, evaluates, checkpoints and stops on the budget,
    early stopping or a signal. Every decision that ends the loop comes from values every process shares (the
    step's all-reduce, or the main process's word), so all processes leave it at the same step."""

    def __init__(self, *, accelerator: Accelerator, model: Any, cfg: TrainConfig, state: TrainState,
                 sampler: LengthGroupedBatches, loader: Any, step: OptimizerStep, budget: Budget,
                 clock: SharedClock, checkpointer: Checkpointer, log: TrainLog, early_stopping: EarlyStopping,
                 metric_name: str, evaluate_fn: EvalFn | None, on_progress: ProgressFn | None) -> None:
        self.accelerator, self.model, self.cfg, self.state = accelerator, model, cfg, state
        self.sampler, self.loader, self.step, self.budget, self.clock = sampler, loader, step, budget, clock
        self.checkpointer, self.log, self.early_stopping = checkpointer, log, early_stopping
        self.metric_name, self.evaluate_fn, self.on_progress = metric_name, evaluate_fn, on_progress
        self.finished = budget.done(state.step, clock.shared)
        self.stop_signal = 0
        self.window_start = time.perf_counter()

    def run(self, graceful: GracefulStop) -> None:
        """Train to the end of the budget (or early stop), then the final evaluation and checkpoint. Raises
        Interrupted (after a checkpoint) when a stop signal came."""
        state = self.state
        self.model.train()
        while not self.finished:
            self._epoch(graceful)
            if self.stop_signal:
                break
        if self.stop_signal:
            raise Interrupted(self.stop_signal, stopped_message(self.stop_signal, state.step,
                                                                self.checkpointer.save(state)))
        if state.window_tokens:
            state.last_loss = state.window_loss / state.window_tokens
        state.seconds = from_main(self.accelerator, self.clock.elapsed())
        # A final evaluation when the last step did not just have one, so the best model really is the best.
        improved = False
        if self.evaluate_fn is not None and self.cfg.eval_every_steps and state.last_eval_step != state.step \
                and not state.stopped_early:
            _, improved = self._evaluate()
        self.checkpointer.save_after_eval(state, self.model, improved)
        late = from_main(self.accelerator, graceful.signum)  # during the final evaluation: the main process's word
        if late:
            raise Interrupted(late, stopped_message(late, state.step, self.checkpointer.path(state.step)))

    def _epoch(self, graceful: GracefulStop) -> None:
        """One epoch, from where the state says it is, until its end, the budget, early stopping or a signal."""
        state, accelerator = self.state, self.accelerator
        epoch_loader = self.loader
        if state.batch_in_epoch:
            epoch_loader = accelerator.skip_first_batches(self.loader, state.batch_in_epoch)
        # Accelerate's loaders reset the sampler's epoch to their own iteration count when iterated, and that count
        # starts again at 0 after a resume (or in a skip-batches loader): set it on them too, so a resumed run sees
        # exactly the batch order of an uninterrupted one.
        for each in {id(self.loader): self.loader, id(epoch_loader): epoch_loader}.values():
            if hasattr(each, "set_epoch"):
                each.set_epoch(state.epoch)
        self.sampler.set_epoch(state.epoch)
        step_tokens = self.sampler.step_target_tokens()
        accumulation = self.step.accumulation
        rolled_over = False
        for batch in epoch_loader:
            micro = state.batch_in_epoch
            state.batch_in_epoch += 1
            global_tokens = step_tokens[micro // accumulation]
            totals = self.step.micro_batch(batch, global_tokens, step=state.step + 1, overflows=state.overflows,
                                           signum=graceful.signum)
            if totals is None:
                continue
            rolled_over = self._after_step(totals, global_tokens) or rolled_over
            if self.finished or self.stop_signal:
                break
            # At the epoch's end the loader runs out by itself (leaving it with break would skip accelerate's
            # end-of-iteration bookkeeping).
        else:
            if not rolled_over:  # the loader ran out without the step count saying so: next epoch all the same
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    def _after_step(self, totals: StepTotals, global_tokens: int) -> bool:
        """Count, log, evaluate and checkpoint after an optimizer step; returns whether it ended the epoch."""
        state, cfg = self.state, self.cfg
        state.overflows = totals.overflows
        self.stop_signal = totals.stop_signal
        state.step += 1
        state.seconds = self.clock.shared
        state.tokens += global_tokens
        if math.isfinite(totals.loss):  # an fp16 overflow step (skipped) stays out of the logged loss
            state.window_loss += totals.loss
            state.window_tokens += global_tokens
        if state.step % cfg.log_every_steps == 0:
            now = time.perf_counter()
            state.last_loss = state.window_loss / max(state.window_tokens, 1)
            entry = {"step": state.step, "epoch": state.epoch, "loss": round(state.last_loss, 4),
                     "lr": self.step.scheduler.get_last_lr()[0],
                     "target_tokens_per_s": round(state.window_tokens / max(now - self.window_start, 1e-9), 1),
                     "seconds": round(state.seconds, 1)}
            self.log.write(entry)
            if self.on_progress:
                self.on_progress(state.step, self.budget.max_steps, entry)
            state.window_loss, state.window_tokens, self.window_start = 0.0, 0, now
        elif self.on_progress:
            self.on_progress(state.step, self.budget.max_steps, {})
        end_of_epoch = state.batch_in_epoch >= len(self.loader)
        evaluated = improved = False
        if cfg.eval_every_steps and state.step % cfg.eval_every_steps == 0:
            stop, improved = self._evaluate()
            evaluated = True
            if stop:
                state.stopped_early = self.finished = True
            self.model.train()
        if end_of_epoch:  # counted before any checkpoint, which then resumes at the next epoch's start
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        if evaluated:
            self.checkpointer.save_after_eval(state, self.model, improved)
        self.finished = self.finished or self.budget.done(state.step, self.clock.shared)
        if not (self.finished or self.stop_signal or evaluated) and self.checkpointer.due(state):
            self.checkpointer.save(state)
        return end_of_epoch

    def _evaluate(self) -> tuple[bool, bool]:
        """Evaluate; (stop early, improved), decided by the main process and shared, so every process leaves the
        loop at the same step. The caller checkpoints, then keeps the weights as best when improved."""
        state = self.state
        metrics = self.evaluate_fn(self.model) if self.evaluate_fn is not None else {}
        value = metrics.get(self.metric_name)
        entry = {"step": state.step, "epoch": state.epoch, "seconds": round(self.clock.shared, 1),
                 **{f"eval_{k}": v for k, v in metrics.items() if not isinstance(v, (list, dict))}}
        self.log.write(entry)
        state.history.append(entry)
        state.last_eval_step = state.step
        if self.on_progress:
            self.on_progress(state.step, self.budget.max_steps, entry)
        if value is None:
            return False, False
        return from_main(self.accelerator, self.early_stopping.judge(state, value))


def train(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train_set: Dataset, recipe: Recipe, *,
          accelerator: Accelerator, run_dir: Path, evaluate_fn: EvalFn | None = None, resume: bool = False,
          on_progress: ProgressFn | None = None, on_message: Callable[[str], None] | None = None,
          now: Callable[[], float] = time.perf_counter) -> tuple[PreTrainedModel, TrainResult]:
    """Train `model` on the tokenized `train_set`; returns the best (or last) model and a summary.

    `evaluate_fn(model)` returns validation metrics; it is called every `train.eval_every_steps` steps on every
    process (generation is sharded across them). SIGINT / SIGTERM stop it after the current optimizer step with a
    checkpoint, by raising Interrupted. `now` is the training clock's time source (seconds)."""
    from safetensors.torch import load_model

    from hfpipe.tasks.metrics import GREATER_IS_BETTER

    cfg = recipe.train
    metric_name = recipe.primary_metric.removeprefix("eval_")
    ckpt_dir = run_dir / "checkpoints"
    log_path = run_dir / "train_log.jsonl"

    # The Accelerator's own count (an ACCELERATE_GRADIENT_ACCUMULATION_STEPS variable would override the recipe's):
    # the batch grouping and the loss scale must agree with when accelerate syncs gradients.
    n_proc, accum = accelerator.num_processes, accelerator.gradient_accumulation_steps
    loader, sampler = make_loader(train_set, cfg, pad_token_id=tokenizer.pad_token_id, group=n_proc * accum,
                                  max_lengths=(recipe.data.max_source_length, recipe.data.max_target_length))
    budget = make_budget(cfg, sampler.steps_per_epoch())
    state = TrainState(processes=n_proc, accumulation=accum)
    optimizer = make_optimizer(model, cfg)
    clock = SharedClock(now)
    scheduler = make_scheduler(optimizer, cfg, budget, clock)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)
    log_probs = bool(getattr(accelerator.unwrap_model(model), "logits_are_log_probs", False))

    checkpointer = Checkpointer(accelerator, ckpt_dir, cfg)
    if resume:
        state = checkpointer.resume(model, log_path, state, on_message)
        clock.resume_at(state.seconds)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    step = OptimizerStep(accelerator, model, optimizer, scheduler, forward=ddp_forward, clock=clock,
                         label_smoothing=cfg.label_smoothing, max_grad_norm=cfg.max_grad_norm, log_probs=log_probs)
    loop = TrainingLoop(accelerator=accelerator, model=model, cfg=cfg, state=state, sampler=sampler, loader=loader,
                        step=step, budget=budget, clock=clock, checkpointer=checkpointer,
                        log=TrainLog(accelerator, log_path, trackers=bool(cfg.report_to)),
                        early_stopping=EarlyStopping(GREATER_IS_BETTER.get(metric_name, True),
                                                     cfg.early_stopping_patience),
                        metric_name=metric_name, evaluate_fn=evaluate_fn, on_progress=on_progress)
    with GracefulStop(announce=announce_on_stderr if accelerator.is_main_process else None) as graceful:
        loop.run(graceful)
    if cfg.report_to:
        accelerator.end_training()
    unwrapped = accelerator.unwrap_model(model)
    accelerator.wait_for_everyone()
    if state.best_step is not None and state.best_step != state.step:
        kept = from_main(accelerator, best_step(ckpt_dir))
        if kept != state.best_step:
            raise RunDirError(f"{ckpt_dir / 'best'} holds the weights of step "
                              f"{kept if kept is not None else '(not recorded)'}, not of the best step "
                              f"{state.best_step}", where=str(ckpt_dir / "best"),
                              hint="start a new run (this one was changed by hand, or started by an hfpipe that "
                                   "did not record the best step)")
        load_model(unwrapped, str(ckpt_dir / "best" / "model.safetensors"))
    from hfpipe.pipeline.models import count_parameters

    result = TrainResult(
        steps=state.step, epochs_done=round(state.epoch + state.batch_in_epoch / max(len(loader), 1), 3),
        seconds=round(state.seconds, 1), tokens_per_second=round(state.tokens / max(state.seconds, 1e-9), 1),
        final_loss=round(state.last_loss, 4) if state.last_loss is not None else None,
        best_metric=state.best_metric, best_step=state.best_step, metric_name=metric_name,
        stopped_early=state.stopped_early, parameters=count_parameters(unwrapped),
        mixed_precision=str(accelerator.mixed_precision))
    return unwrapped, result
