"""Stage 4, training: an explicit Accelerate loop, in the style of accelerate's examples and torchtune recipes.

One Accelerator (made by the runner) handles devices, mixed precision, gradient accumulation and many
processes. Batches are grouped by length and padded per batch. The learning rate follows warm-up then decay by
training progress, where progress is the larger of steps done / step budget and time spent / time budget, so a
time budget (`train.max_minutes`) decays the schedule too. Every `eval_every_steps` the model generates on a
validation sample; the best weights by the task's metric are kept and training stops early when they stop
improving. Checkpoints (hfpipe.pipeline.checkpoints: every `checkpoint_every_steps` / `checkpoint_every_minutes`,
after every evaluation, at the end, and when SIGINT or SIGTERM stops the run) make `--resume` continue where a run
stopped, to the same weights and logged losses as a run that was never stopped.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hfpipe.errors import Interrupted, RunDirError, TrainingError
from hfpipe.pipeline.checkpoints import (
    GracefulStop,
    TrainState,
    announce_on_stderr,
    best_step,
    checkpoint_due,
    resume_from_checkpoint,
    save_best,
    stopped_message,
    write_checkpoint,
)
from hfpipe.recipe.schema import Recipe, TrainConfig

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


T = TypeVar("T")

# fp16 only: optimizer steps in a row with a non-finite loss before training stops with an error.
FP16_MAX_OVERFLOWS = 20


# --------------------------------------------------------------------------------------------- batching
class LengthGroupedBatches:
    """Batches of examples of similar length, as many per batch as fit `max_tokens` padded tokens (source +
    target) and at most `max_rows`. Within each pool of ~100 batches examples are sorted by the longer of their
    source and target lengths; the order of
    batches is shuffled every epoch with a seed, so runs are reproducible.

    This is the *global* list of batches of an epoch. Its length is always a multiple of `group` (processes ×
    accumulation steps): the largest batches are split in two until it is, so every row is in exactly one batch,
    every process gets the same number of batches (accelerate's `BatchSamplerShard` deals them out round-robin:
    process r takes batches r, r+n, r+2n, ...) and every optimizer step sums exactly `group` micro-batches.
    Optimizer step k of an epoch therefore covers global batches [k·group, (k+1)·group) whatever the split
    between processes and accumulation, and `step_target_tokens()` gives every process the global number of
    target tokens of each step without any communication.

    It deliberately has no `batch_size` attribute: accelerate treats a batch sampler that has one as fixed-size
    and silently drops every round whose last batch is not full."""

    def __init__(self, source_lengths: list[int], target_lengths: list[int], *, max_rows: int,
                 max_tokens: int | None, seed: int, group_by_length: bool = True, group: int = 1) -> None:
        if len(source_lengths) < group:
            from hfpipe.errors import DataError

            raise DataError(f"the training split has {len(source_lengths)} rows, fewer than the {group} batches "
                            "one optimizer step needs (processes × train.gradient_accumulation_steps)",
                            hint="use more training rows, fewer processes or less gradient accumulation")
        self.src, self.tgt = source_lengths, target_lengths
        self.max_rows, self.max_tokens = max_rows, max_tokens
        self.seed, self.group_by_length, self.group = seed, group_by_length, group
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.src)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        pool = self.max_rows * 100
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            if self.group_by_length:
                # By the longer side first: a batch pads both sides to their longest row, and sorting by the
                # source alone left a fifth of the target positions (the costlier side: vocabulary projection and
                # loss) as padding on the shared en-de data; by max(source, target) 6% of the FLOPs are padding,
                # against 19%.
                chunk.sort(key=lambda i: (max(self.src[i], self.tgt[i]), self.tgt[i], self.src[i]))
            batch: list[int] = []
            max_src = max_tgt = 0
            for i in chunk:
                new_src, new_tgt = max(max_src, self.src[i]), max(max_tgt, self.tgt[i])
                cost = (new_src + new_tgt) * (len(batch) + 1)
                if batch and (len(batch) >= self.max_rows or (self.max_tokens and cost > self.max_tokens)):
                    batches.append(batch)
                    batch, new_src, new_tgt = [], self.src[i], self.tgt[i]
                batch.append(i)
                max_src, max_tgt = new_src, new_tgt
            if batch:
                batches.append(batch)
        rng.shuffle(batches)
        short = -len(batches) % self.group
        if short and len(self.src) - len(batches) >= short:
            for _ in range(short):  # split the batch with the most rows; its halves stay side by side
                k = max(range(len(batches)), key=lambda j: len(batches[j]))
                half = len(batches[k]) // 2
                batches[k:k + 1] = [batches[k][:half], batches[k][half:]]
        elif short:
            # Too few rows to split (one-row batches): merge the shortest neighbours down to a multiple instead.
            for _ in range(len(batches) % self.group):
                k = min(range(len(batches) - 1), key=lambda j: len(batches[j]) + len(batches[j + 1]))
                batches[k:k + 2] = [batches[k] + batches[k + 1]]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())

    def steps_per_epoch(self) -> int:
        return len(self) // self.group

    def step_target_tokens(self) -> list[int]:
        """Target tokens of each optimizer step of the current epoch, over all its micro-batches and processes:
        the loss denominator that makes N processes give the gradient one process gives on the same rows."""
        batches = self._batches()
        return [sum(self.tgt[i] for b in batches[k:k + self.group] for i in b)
                for k in range(0, len(batches), self.group)]


@dataclass
class Collator:
    """Pads `input_ids` with the pad id and `labels` with -100 (ignored by the loss), per batch."""

    pad_token_id: int

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        import torch

        src_len = max(len(r["input_ids"]) for r in rows)
        tgt_len = max(len(r["labels"]) for r in rows)
        input_ids = torch.full((len(rows), src_len), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), src_len), dtype=torch.long)
        labels = torch.full((len(rows), tgt_len), -100, dtype=torch.long)
        for k, r in enumerate(rows):
            input_ids[k, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            attention_mask[k, :len(r["input_ids"])] = 1
            labels[k, :len(r["labels"])] = torch.tensor(r["labels"])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# --------------------------------------------------------------------------------------------- schedule
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


# --------------------------------------------------------------------------------------------- state
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


def _optimizer(model: PreTrainedModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = dict(lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon)
    # The fused kernel updates every parameter in one pass; the default on CPU is a Python loop of ~6 small ops per
    # parameter tensor, 5% of a small model's step here (bench/speed_vs_examples.py). Same update, to rounding.
    device = next((p.device.type for p in decay + no_decay), "cpu")
    if device in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # a dtype or build without the fused kernel
            pass
    return torch.optim.AdamW(groups, **kwargs)


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float,
                   log_probs: bool) -> torch.Tensor:
    """Σ over labelled tokens (labels != -100) of the label-smoothed cross-entropy, in float32.

    `log_probs`: the logits are already log-probabilities (a copy-attention model mixes two distributions and
    returns log P): read them as they are instead of normalising a second time, which costs a full-vocabulary
    log-softmax forward and backward per token. Same value as cross_entropy's (whose log_softmax of log P is
    log P when P sums to 1): (1 − ε)·(−log P(y)) + ε·mean_v(−log P(v))."""
    import torch
    import torch.nn.functional as F

    flat = logits.float().view(-1, logits.size(-1))  # (tokens, vocab)
    targets = labels.view(-1)  # (tokens,)
    if not log_probs:
        return F.cross_entropy(flat, targets, ignore_index=-100, label_smoothing=label_smoothing, reduction="sum")
    keep = targets != -100
    nll = -flat.gather(1, targets.clamp_min(0)[:, None]).squeeze(1)  # (tokens,)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * flat.mean(dim=-1)
    return torch.where(keep, nll, 0.0).sum()


# --------------------------------------------------------------------------------------------- the loop
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
    """forward_logits, with DDP's complaint about parameters without gradient (raised by every process at the
    same step) turned into the setting that fixes it."""
    try:
        return forward_logits(model, batch)
    except RuntimeError as err:
        if "find_unused_parameters" not in str(err):
            raise
        raise TrainingError("some model parameters get no gradient, which DDP (several processes) refuses by "
                            "default", hint="set distributed.find_unused_parameters: true in the recipe") from None


EvalFn = Callable[["PreTrainedModel"], dict[str, Any]]


def train(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train_set: Dataset, recipe: Recipe, *,
          accelerator: Accelerator, run_dir: Path, evaluate_fn: EvalFn | None = None, resume: bool = False,
          on_progress: Callable[[int, int | None, dict[str, Any]], None] | None = None,
          on_message: Callable[[str], None] | None = None) -> tuple[PreTrainedModel, TrainResult]:
    """Train `model` on the tokenized `train_set`; returns the best (or last) model and a summary.

    `evaluate_fn(model)` returns validation metrics; it is called every `train.eval_every_steps` steps on every
    process (generation is sharded across them). SIGINT / SIGTERM stop it after the current optimizer step with a
    checkpoint, by raising Interrupted."""
    import torch
    from safetensors.torch import load_model
    from torch.utils.data import DataLoader

    cfg = recipe.train
    metric_name = recipe.primary_metric.removeprefix("eval_")
    from hfpipe.tasks.metrics import GREATER_IS_BETTER

    greater = GREATER_IS_BETTER.get(metric_name, True)
    ckpt_dir = run_dir / "checkpoints"
    log_path = run_dir / "train_log.jsonl"
    pad_id = tokenizer.pad_token_id

    # The Accelerator's own count (an ACCELERATE_GRADIENT_ACCUMULATION_STEPS variable would override the recipe's):
    # the batch grouping and the loss scale below must agree with when accelerate syncs gradients.
    n_proc, accum = accelerator.num_processes, accelerator.gradient_accumulation_steps
    from hfpipe.pipeline.tokenization import token_lengths

    src_len, tgt_len = token_lengths(train_set, "input_ids"), token_lengths(train_set, "labels")
    sampler = LengthGroupedBatches(src_len, tgt_len, max_rows=cfg.batch_size, max_tokens=cfg.batch_tokens,
                                   seed=cfg.seed, group_by_length=cfg.group_by_length, group=n_proc * accum)
    loader = DataLoader(train_set.with_format(None, columns=["input_ids", "labels"]), batch_sampler=sampler,
                        collate_fn=Collator(pad_id), num_workers=cfg.dataloader_workers,
                        # Its own generator: starting an epoch draws a seed from it, and drawing from the global
                        # one would shift dropout's random stream between a resumed and an uninterrupted run.
                        generator=torch.Generator().manual_seed(cfg.seed))
    budget = make_budget(cfg, sampler.steps_per_epoch())
    warmup = cfg.warmup_steps or (round(cfg.warmup_ratio * budget.max_steps) if budget.max_steps else 0)

    state = TrainState(processes=n_proc, accumulation=accum)
    optimizer = _optimizer(model, cfg)
    clock = {"start": time.perf_counter(), "offset": 0.0, "shared": 0.0}

    def elapsed() -> float:
        return clock["offset"] + time.perf_counter() - clock["start"]

    # Progress by time uses the main process's clock, shared at every optimizer step (clock["shared"]): a
    # process reading its own clock would apply another learning rate, or leave the loop while the others wait.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg.lr_scheduler, step, budget.progress(step, clock["shared"]), warmup))
    # The scheduler is not prepared: Accelerate would step it once per process per optimizer step, which with n
    # processes runs the warm-up and decay n times too fast. It steps here once per optimizer step instead.
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)
    log_probs = bool(getattr(accelerator.unwrap_model(model), "logits_are_log_probs", False))

    if resume:
        state = resume_from_checkpoint(accelerator, model, ckpt_dir, log_path, state, on_message)
        clock["offset"] = clock["shared"] = state.seconds

    def save_checkpoint() -> Path:
        path = ckpt_dir / f"step-{state.step}"
        if from_main(accelerator, (path / "trainer_state.json").exists()):
            return path  # this step is already checkpointed (decided by the main process: one answer for all)
        state.checkpoint_seconds = state.seconds
        return write_checkpoint(accelerator, ckpt_dir, state.step, asdict(state), keep=cfg.keep_checkpoints)

    def log(entry: dict[str, Any]) -> None:
        if accelerator.is_main_process:
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            if cfg.report_to:  # Accelerate's trackers (TensorBoard, W&B, ...): numbers only, by optimizer step
                accelerator.log({f"train/{k}" if not k.startswith("eval_") else f"eval/{k[5:]}": v
                                 for k, v in entry.items() if k not in ("step", "epoch")
                                 and isinstance(v, (int, float)) and not isinstance(v, bool)}, step=entry["step"])

    def run_eval() -> tuple[bool, bool]:
        """Evaluate; (stop early, improved), decided by the main process and shared, so every process leaves the
        loop at the same step. The caller checkpoints, then keeps the weights as best when improved."""
        metrics = evaluate_fn(model) if evaluate_fn is not None else {}
        value = metrics.get(metric_name)
        entry = {"step": state.step, "epoch": state.epoch, "seconds": round(clock["shared"], 1),
                 **{f"eval_{k}": v for k, v in metrics.items() if not isinstance(v, (list, dict))}}
        log(entry)
        state.history.append(entry)
        state.last_eval_step = state.step
        if on_progress:
            on_progress(state.step, budget.max_steps, entry)
        if value is None:
            return False, False
        improved = state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
        else:
            state.evals_without_improvement += 1
        stop = bool(cfg.early_stopping_patience and state.evals_without_improvement >= cfg.early_stopping_patience)
        return from_main(accelerator, (stop, improved))

    def checkpoint_after_eval(improved: bool) -> None:
        """The checkpoint that records the new best step is complete before best/ is replaced: a kill between
        the two leaves a checkpoint at the best step, from which a resume rebuilds best/."""
        save_checkpoint()
        if improved:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_best(accelerator.unwrap_model(model), ckpt_dir, state.step, state.best_metric)
            accelerator.wait_for_everyone()

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model.train()
    device = accelerator.device
    # Per optimizer step: summed token loss, non-finite count, the main process's clock and the signals asking
    # to stop (SIGINT, SIGTERM), kept on the device (no host sync per micro-batch; float32, which every device
    # has: MPS has no float64) and all-reduced once per step, so every process stops at the same step.
    step_loss = torch.zeros((), dtype=torch.float32, device=device)
    step_bad = torch.zeros((), dtype=torch.float32, device=device)
    window_start = time.perf_counter()
    stop_signal = 0
    finished = budget.done(state.step, clock["shared"])
    graceful = GracefulStop(announce=announce_on_stderr if accelerator.is_main_process else None)
    with graceful:
        while not finished:
            epoch_loader = loader
            if state.batch_in_epoch:
                epoch_loader = accelerator.skip_first_batches(loader, state.batch_in_epoch)
            # Accelerate's loaders reset the sampler's epoch to their own iteration count when iterated, and that
            # count starts again at 0 after a resume (or in a skip-batches loader): set it on them too, so a
            # resumed run sees exactly the batch order of an uninterrupted one.
            for each in {id(loader): loader, id(epoch_loader): epoch_loader}.values():
                if hasattr(each, "set_epoch"):
                    each.set_epoch(state.epoch)
            sampler.set_epoch(state.epoch)
            step_tokens = sampler.step_target_tokens()
            rolled_over = False
            for batch in epoch_loader:
                micro = state.batch_in_epoch
                state.batch_in_epoch += 1
                global_tokens = step_tokens[micro // accum]
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        logits = ddp_forward(model, batch)
                    # Summed, not averaged: the step's loss is divided by its global number of target tokens.
                    loss_sum = token_loss_sum(logits, batch["labels"], label_smoothing=cfg.label_smoothing,
                                              log_probs=log_probs)
                    step_loss += loss_sum.detach()
                    step_bad += (~torch.isfinite(loss_sum.detach())).float()
                    # × processes (DDP averages gradients over them) × accumulation (accelerate divides by it):
                    # the step's gradient is then Σ token-loss gradients ÷ the step's global target tokens.
                    accelerator.backward(loss_sum * (n_proc * accum / global_tokens))
                    if accelerator.sync_gradients:
                        seconds = elapsed() if accelerator.is_main_process else 0.0
                        asked = [seconds, float(graceful.signum == signal.SIGINT),
                                 float(graceful.signum == signal.SIGTERM)]
                        totals = torch.cat([torch.stack([step_loss, step_bad]),
                                            torch.tensor(asked, dtype=torch.float32, device=device)])
                        if n_proc > 1:
                            totals = accelerator.reduce(totals, reduction="sum")
                        global_loss, bad, clock["shared"], sigints, sigterms = totals.tolist()
                        stop_signal = signal.SIGTERM if sigterms else signal.SIGINT if sigints else 0
                        step_loss.zero_()
                        step_bad.zero_()
                        state.overflows = state.overflows + 1 if bad else 0
                        # fp16 overflows now and then and the gradient scaler skips those steps; only a loss that
                        # stays non-finite is an error there. Elsewhere the first one is.
                        if bad and (accelerator.mixed_precision != "fp16" or state.overflows >= FP16_MAX_OVERFLOWS):
                            raise TrainingError(f"the loss became non-finite (nan or inf) at step {state.step + 1}"
                                                + (f" on {int(bad)} of {n_proc * accum} micro-batches" if
                                                   n_proc * accum > 1 else ""),
                                                hint="lower train.learning_rate, add warm-up (train.warmup_steps), "
                                                     "keep train.max_grad_norm set, or use mixed_precision: no")
                        if cfg.max_grad_norm:
                            norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                            # The norm of the all-reduced gradients: the same on every process, so all stop together.
                            if accelerator.mixed_precision != "fp16" and not math.isfinite(float(norm)):
                                raise TrainingError(f"the gradients became non-finite at step {state.step + 1}",
                                                    hint="lower train.learning_rate, add warm-up or use "
                                                         "mixed_precision: no")
                    optimizer.step()
                    # fp16: a step the gradient scaler skipped (overflow) does not advance the schedule either.
                    if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                if not accelerator.sync_gradients:
                    continue
                state.step += 1
                state.seconds = clock["shared"]
                state.tokens += global_tokens
                if math.isfinite(global_loss):  # an fp16 overflow step (skipped) stays out of the logged loss
                    state.window_loss += global_loss
                    state.window_tokens += global_tokens
                if state.step % cfg.log_every_steps == 0:
                    now = time.perf_counter()
                    state.last_loss = state.window_loss / max(state.window_tokens, 1)
                    entry = {"step": state.step, "epoch": state.epoch, "loss": round(state.last_loss, 4),
                             "lr": scheduler.get_last_lr()[0],
                             "target_tokens_per_s": round(state.window_tokens / max(now - window_start, 1e-9), 1),
                             "seconds": round(state.seconds, 1)}
                    log(entry)
                    if on_progress:
                        on_progress(state.step, budget.max_steps, entry)
                    state.window_loss, state.window_tokens, window_start = 0.0, 0, now
                elif on_progress:
                    on_progress(state.step, budget.max_steps, {})
                end_of_epoch = state.batch_in_epoch >= len(loader)
                evaluated = improved = False
                if cfg.eval_every_steps and state.step % cfg.eval_every_steps == 0:
                    stop, improved = run_eval()
                    evaluated = True
                    if stop:
                        state.stopped_early = finished = True
                    model.train()
                if end_of_epoch:  # counted before any checkpoint, which then resumes at the next epoch's start
                    state.epoch, state.batch_in_epoch, rolled_over = state.epoch + 1, 0, True
                if evaluated:
                    checkpoint_after_eval(improved)
                finished = finished or budget.done(state.step, clock["shared"])
                if not (finished or stop_signal or evaluated) and checkpoint_due(cfg, state):
                    save_checkpoint()
                if finished or stop_signal:
                    break
                # At the epoch's end the loader runs out by itself (leaving it with break would skip accelerate's
                # end-of-iteration bookkeeping).
            else:
                if not rolled_over:  # the loader ran out without the step count saying so: next epoch all the same
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            if stop_signal:
                break
        if stop_signal:
            raise Interrupted(stop_signal, stopped_message(stop_signal, state.step, save_checkpoint()))
        if state.window_tokens:
            state.last_loss = state.window_loss / state.window_tokens
        state.seconds = from_main(accelerator, elapsed())
        # A final evaluation when the last step did not just have one, so the best model really is the best.
        improved = False
        if evaluate_fn is not None and cfg.eval_every_steps and state.last_eval_step != state.step \
                and not state.stopped_early:
            _, improved = run_eval()
        checkpoint_after_eval(improved)
        late = from_main(accelerator, graceful.signum)  # during the final evaluation: the main process's word
        if late:
            raise Interrupted(late, stopped_message(late, state.step, ckpt_dir / f"step-{state.step}"))
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


def from_main(accelerator: Accelerator, value: T) -> T:
    """The main process's value (a decision, its clock) on every process: one answer for all of them."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]
