"""One optimizer step: the optimizer, the loss over a step's micro-batches (summed token losses ÷ the step's global
number of target tokens, so N processes or k accumulated micro-batches give the gradient one batch gives), the one
all-reduce per step that shares the loss, the non-finite count, the main process's clock and the stop signals,
then the non-finite check, clipping, the update and the schedule."""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hfpipe.errors import TrainingError
from hfpipe.pipeline.budget import SharedClock
from hfpipe.recipe.schema import TrainConfig

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from transformers import PreTrainedModel

# fp16 only: optimizer steps in a row with a non-finite loss before training stops with an error.
FP16_MAX_OVERFLOWS = 20

Forward = Callable[[Any, dict[str, "torch.Tensor"]], "torch.Tensor"]


def make_optimizer(model: PreTrainedModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and norms."""
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


@dataclass
class StepTotals:
    """What every process knows after an optimizer step's all-reduce."""

    loss: float  # Σ token losses of the step, all micro-batches and processes (nan/inf on a non-finite step)
    non_finite: int  # micro-batches whose loss was not finite
    overflows: int  # non-finite steps in a row, this one included
    stop_signal: int  # SIGTERM or SIGINT when any process received one, else 0


class OptimizerStep:
    """Feeds micro-batches; every `accelerator.gradient_accumulation_steps`-th one (as Accelerate counts) ends an
    optimizer step and returns its StepTotals, the others return None.

    The loss and non-finite count are kept on the device (no host sync per micro-batch; float32, which every
    device has: MPS has no float64) and all-reduced once per step with the main process's clock and the signals
    asking to stop, so every process takes the same decisions at the same step."""

    def __init__(self, accelerator: Accelerator, model: Any, optimizer: Any,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, *, forward: Forward, clock: SharedClock,
                 label_smoothing: float, max_grad_norm: float | None, log_probs: bool) -> None:
        import torch

        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.forward, self.clock = forward, clock
        self.label_smoothing, self.max_grad_norm, self.log_probs = label_smoothing, max_grad_norm, log_probs
        self.processes, self.accumulation = accelerator.num_processes, accelerator.gradient_accumulation_steps
        self._loss = torch.zeros((), dtype=torch.float32, device=accelerator.device)
        self._non_finite = torch.zeros((), dtype=torch.float32, device=accelerator.device)

    def micro_batch(self, batch: dict[str, torch.Tensor], step_target_tokens: int, *, step: int,
                    overflows: int, signum: int) -> StepTotals | None:
        """Forward and backward one micro-batch of optimizer step `step` (1-based, for messages), whose micro-
        batches on all processes hold `step_target_tokens` target tokens. `overflows`: non-finite steps in a row
        before this one; `signum`: the stop signal this process received (0: none)."""
        import torch

        accelerator = self.accelerator
        totals = None
        with accelerator.accumulate(self.model):
            with accelerator.autocast():
                logits = self.forward(self.model, batch)
            # Summed, not averaged: the step's loss is divided by its global number of target tokens.
            loss_sum = token_loss_sum(logits, batch["labels"], label_smoothing=self.label_smoothing,
                                      log_probs=self.log_probs)
            self._loss += loss_sum.detach()
            self._non_finite += (~torch.isfinite(loss_sum.detach())).float()
            # × processes (DDP averages gradients over them) × accumulation (accelerate divides by it): the step's
            # gradient is then Σ token-loss gradients ÷ the step's global target tokens.
            accelerator.backward(loss_sum * (self.processes * self.accumulation / step_target_tokens))
            if accelerator.sync_gradients:
                totals = self._share(signum, overflows)
                self._check(totals, step)
            self.optimizer.step()
            # fp16: a step the gradient scaler skipped (overflow) does not advance the schedule either.
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return totals

    def _share(self, signum: int, overflows: int) -> StepTotals:
        """The step's one all-reduce; sets the shared clock (which the schedule reads when it steps next)."""
        import torch

        accelerator = self.accelerator
        seconds = self.clock.elapsed() if accelerator.is_main_process else 0.0
        asked = [seconds, float(signum == signal.SIGINT), float(signum == signal.SIGTERM)]
        totals = torch.cat([torch.stack([self._loss, self._non_finite]),
                            torch.tensor(asked, dtype=torch.float32, device=accelerator.device)])
        if self.processes > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        loss, bad, self.clock.shared, sigints, sigterms = totals.tolist()
        self._loss.zero_()
        self._non_finite.zero_()
        return StepTotals(loss=loss, non_finite=int(bad), overflows=overflows + 1 if bad else 0,
                          stop_signal=signal.SIGTERM if sigterms else signal.SIGINT if sigints else 0)

    def _check(self, totals: StepTotals, step: int) -> None:
        """Stop on a non-finite loss or gradient norm (both identical on every process after the all-reduce, so
        all stop together); clip the gradients."""
        accelerator = self.accelerator
        fp16 = accelerator.mixed_precision == "fp16"
        # fp16 overflows now and then and the gradient scaler skips those steps; only a loss that stays non-finite
        # is an error there. Elsewhere the first one is.
        if totals.non_finite and (not fp16 or totals.overflows >= FP16_MAX_OVERFLOWS):
            micro_batches = self.processes * self.accumulation
            raise TrainingError(f"the loss became non-finite (nan or inf) at step {step}"
                                + (f" on {totals.non_finite} of {micro_batches} micro-batches"
                                   if micro_batches > 1 else ""),
                                hint="lower train.learning_rate, add warm-up (train.warmup_steps), keep "
                                     "train.max_grad_norm set, or use mixed_precision: no")
        if self.max_grad_norm:
            norm = accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            if not fp16 and not math.isfinite(float(norm)):
                raise TrainingError(f"the gradients became non-finite at step {step}",
                                    hint="lower train.learning_rate, add warm-up or use mixed_precision: no")
