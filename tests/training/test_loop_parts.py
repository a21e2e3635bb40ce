"""The training loop's parts, each on a real tiny seeded model: one optimizer step over accumulated micro-batches
against one batch and against torch's mean cross-entropy; the non-finite check; the learning-rate schedule
against its formula; and `train` itself stopped by a time budget (a driven clock, no sleeping) and by early
stopping (scripted validation scores, real weights)."""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from hfpipe.errors import TrainingError
from hfpipe.pipeline.batching import Collator
from hfpipe.pipeline.budget import Budget, SharedClock, make_scheduler
from hfpipe.pipeline.optimization import OptimizerStep
from hfpipe.recipe.loading import load_recipe
from hfpipe.recipe.schema import TrainConfig
from tests.e2e.conftest import tiny_recipe, write_recipe

pytestmark = pytest.mark.timeout(300)

VOCAB, PAD, EOS = 40, 1, 2


@pytest.fixture
def fresh_accelerate():
    """Accelerate keeps its state per process: each test builds its Accelerator from scratch."""
    from accelerate.state import AcceleratorState, GradientState

    def reset() -> None:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()

    reset()
    yield
    reset()


def _model(seed: int = 0):
    from transformers import MBartConfig, MBartForConditionalGeneration

    torch.manual_seed(seed)
    config = MBartConfig(vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                         decoder_ffn_dim=32, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                         activation_dropout=0.0, pad_token_id=PAD, bos_token_id=0, eos_token_id=EOS,
                         decoder_start_token_id=EOS)
    return MBartForConditionalGeneration(config)


def _rows(n: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """A copy task: the target is the source (3-12 tokens + eos)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        ids = [rng.randrange(3, VOCAB) for _ in range(rng.randrange(3, 13))] + [EOS]
        rows.append({"input_ids": ids, "labels": list(ids)})
    return rows


def _forward(model, batch):
    from hfpipe.pipeline.training import forward_logits

    return forward_logits(model, batch)


def _one_step(micro_batches: list[dict[str, torch.Tensor]], accumulation: int, target_tokens: int):
    """One optimizer step (SGD, lr 1: the update is minus the gradient) of a fresh seeded model over
    `micro_batches`; returns the updated parameters and what each micro-batch returned."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    step = OptimizerStep(accelerator, model, optimizer, scheduler, forward=_forward, clock=SharedClock(),
                         label_smoothing=0.0, max_grad_norm=None, log_probs=False)
    returned = [step.micro_batch(b, target_tokens, step=1, overflows=0, signum=0) for b in micro_batches]
    return {k: v.detach().clone() for k, v in model.named_parameters()}, returned


def test_accumulated_micro_batches_make_the_update_of_one_batch(fresh_accelerate):
    """4 rows as 4 micro-batches of very different target lengths (accumulation 4) ≡ the same 4 rows as one batch
    ≡ torch's mean cross-entropy over the batch's tokens: the loss is Σ token losses ÷ the step's global target
    tokens, not a mean of micro-batch means (which would weigh a short row's tokens 5× more here)."""
    rows = [_rows(1, seed=s)[0] for s in range(4)]
    rows[0] = {"input_ids": [5, EOS], "labels": [5, EOS]}  # 2 target tokens against up to 13
    collate = Collator(PAD)
    target_tokens = sum(len(r["labels"]) for r in rows)
    whole = collate(rows)

    accumulated, returned = _one_step([collate([r]) for r in rows], 4, target_tokens)
    assert returned[:3] == [None, None, None], "only the last micro-batch ends the optimizer step"
    one, (totals,) = _one_step([whole], 1, target_tokens)

    reference = _model()
    loss = F.cross_entropy(_forward(reference, whole).view(-1, VOCAB), whole["labels"].view(-1), ignore_index=-100)
    loss.backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= p.grad

    moved = 0.0
    start = dict(_model().named_parameters())
    for name, p in reference.named_parameters():
        torch.testing.assert_close(one[name], p, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(accumulated[name], p, rtol=1e-5, atol=1e-6)
        moved = max(moved, (p - start[name]).abs().max().item())
    assert moved > 1e-3, "the step moved the weights"
    # The step's summed loss, shared for logging: the same either way, and the reference's mean × tokens.
    assert returned[-1].loss == pytest.approx(totals.loss, rel=1e-5)
    assert totals.loss == pytest.approx(loss.item() * target_tokens, rel=1e-5)
    assert (totals.non_finite, totals.overflows, totals.stop_signal) == (0, 0, 0)


def test_a_non_finite_loss_stops_at_its_step_and_names_it(fresh_accelerate):
    def poisoned(model, batch):
        return _forward(model, batch) * float("nan")

    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    step = OptimizerStep(accelerator, model, optimizer, scheduler, forward=poisoned, clock=SharedClock(),
                         label_smoothing=0.1, max_grad_norm=1.0, log_probs=False)
    batch = Collator(PAD)(_rows(2))
    assert step.micro_batch(batch, 20, step=7, overflows=0, signum=0) is None
    with pytest.raises(TrainingError, match=r"non-finite \(nan or inf\) at step 7 on 2 of 2 micro-batches"):
        step.micro_batch(batch, 20, step=7, overflows=0, signum=0)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), "no update from a non-finite step"


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "inverse_sqrt"])
def test_learning_rate_follows_warmup_then_the_decay_formula(kind):
    lr, warmup, steps = 0.02, 3, 10
    cfg = TrainConfig(max_steps=steps, learning_rate=lr, warmup_steps=warmup, lr_scheduler=kind)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer, cfg, Budget(steps, None), SharedClock())

    def expected(s: int) -> float:
        if s < warmup:
            return lr * (s + 1) / warmup
        return lr * {"linear": 1 - s / steps, "cosine": 0.5 * (1 + math.cos(math.pi * s / steps)),
                     "constant": 1.0, "inverse_sqrt": math.sqrt(warmup / (s + 1))}[kind]

    seen = []
    for s in range(steps + 1):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([expected(s) for s in range(steps + 1)], rel=1e-12, abs=1e-15)
    assert seen[warmup - 1] == pytest.approx(lr), "warm-up ends at the full rate"


def test_progress_is_the_larger_of_steps_and_time_and_warmup_ratio_counts_steps():
    """A time budget decays the schedule too: half the time gone at 2 of 100 steps is half the cosine."""
    cfg = TrainConfig(max_steps=100, max_minutes=1.0, learning_rate=1.0, lr_scheduler="cosine", warmup_ratio=0.05)
    clock = SharedClock(now=lambda: 0.0)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, cfg, Budget(100, 60.0), clock)
    for _ in range(5):  # warm-up: 5% of 100 steps
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 100)))
    clock.shared = 30.0
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5, abs=1e-12)
    assert Budget(100, 60.0).done(6, 60.0) and not Budget(100, 60.0).done(99, 59.9)


# --------------------------------------------------------------------------------------------- train() itself
def _train(tmp_path: Path, rows: int = 64, evaluate_fn=None, now=None, **train_settings):
    """Run hfpipe's `train` on a tiny MBart and a copy task, with the recipe's accelerator."""
    from datasets import Dataset

    from hfpipe.pipeline.distributed import make_accelerator
    from hfpipe.pipeline.training import train

    recipe = tiny_recipe("translation", train={"mixed_precision": "no", "log_every_steps": 1,
                                               "eval_every_steps": None, "warmup_steps": 0, **train_settings})
    recipe = load_recipe(write_recipe(tmp_path, recipe)).recipe
    accelerator = make_accelerator(recipe)
    data = Dataset.from_list(_rows(rows))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    kwargs = {"now": now} if now is not None else {}
    model, result = train(_model(), SimpleNamespace(pad_token_id=PAD), data, recipe, accelerator=accelerator,
                          run_dir=run_dir, evaluate_fn=evaluate_fn, **kwargs)
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return model, result, log, run_dir


def test_max_minutes_stops_the_loop_on_the_shared_clock(tmp_path, fresh_accelerate):
    """A clock that advances 1 s each time it is read (once per optimizer step): 0.1 minutes is 6 steps, across
    epochs (4 steps each), whatever the wall time; the linear schedule decays by the time spent."""
    ticks = itertools.count()
    model, result, log, _ = _train(tmp_path, max_steps=None, max_minutes=0.1, batch_size=16, learning_rate=0.01,
                                   lr_scheduler="linear", now=lambda: float(next(ticks)))
    assert result.steps == 6 and [e["step"] for e in log] == [1, 2, 3, 4, 5, 6]
    assert [e["seconds"] for e in log] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [e["epoch"] for e in log] == [0, 0, 0, 0, 1, 1]
    assert [e["lr"] for e in log] == pytest.approx([0.01 * (1 - k / 6) for k in range(1, 7)], abs=1e-12)
    assert not result.stopped_early


def test_early_stopping_after_patience_evaluations_reloads_the_best_weights(tmp_path, fresh_accelerate):
    """Validation scores 1, 3, 2, 2.5 at steps 2, 4, 6, 8 with patience 2: training stops at step 8 (of 40) and
    returns the weights it had at step 4, not those of step 8."""
    scores = iter([1.0, 3.0, 2.0, 2.5, 9.0, 9.0])
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def evaluate_fn(model) -> dict:
        snapshots[len(snapshots) * 2 + 2] = copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()})
        return {"bleu": next(scores)}

    model, result, log, run_dir = _train(tmp_path, evaluate_fn=evaluate_fn, max_steps=40, eval_every_steps=2,
                                         early_stopping_patience=2, batch_size=8)
    assert (result.steps, result.stopped_early, result.best_step, result.best_metric) == (8, True, 4, 3.0)
    assert [e["step"] for e in log if "eval_bleu" in e] == [2, 4, 6, 8] == sorted(snapshots)
    assert json.loads((run_dir / "checkpoints/best/best.json").read_text())["step"] == 4
    final = model.state_dict()
    for name, value in snapshots[4].items():
        assert torch.equal(final[name], value), name
    assert any(not torch.equal(final[k], v) for k, v in snapshots[8].items()), "steps 4 and 8 differ"


def test_the_best_weights_are_kept_when_the_last_evaluation_is_the_best(tmp_path, fresh_accelerate):
    scores = iter([1.0, 2.0, 3.0])
    model, result, log, run_dir = _train(tmp_path, evaluate_fn=lambda m: {"bleu": next(scores)}, max_steps=6,
                                         eval_every_steps=2, early_stopping_patience=1, batch_size=8)
    assert (result.steps, result.stopped_early, result.best_step, result.best_metric) == (6, False, 6, 3.0)
    assert [e["step"] for e in log if "eval_bleu" in e] == [2, 4, 6], "no second evaluation of the last step"
    assert json.loads((run_dir / "checkpoints/best/best.json").read_text())["step"] == 6


def test_checkpointer_saves_a_step_once_and_resumes_weights_counters_and_log(tmp_path, fresh_accelerate):
    from accelerate import Accelerator

    from hfpipe.errors import RunDirError
    from hfpipe.pipeline.checkpoints import Checkpointer, TrainState, best_step, checkpoints

    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(_model(), torch.optim.SGD(_model().parameters(), lr=0.1))
    folder = tmp_path / "checkpoints"
    checkpointer = Checkpointer(accelerator, folder, TrainConfig(max_steps=10, checkpoint_every_steps=3,
                                                                 checkpoint_every_minutes=1.0, keep_checkpoints=1))
    state = TrainState(step=3, epoch=1, batch_in_epoch=2, seconds=12.5, tokens=99, window_loss=4.0,
                       window_tokens=7, processes=1, accumulation=1)
    assert checkpointer.due(state)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = checkpointer.save(state)
    assert path == folder / "step-3" and state.checkpoint_seconds == 12.5
    written = (path / "trainer_state.json").stat().st_mtime_ns
    assert checkpointer.save(state) == path and (path / "trainer_state.json").stat().st_mtime_ns == written

    state.step, state.seconds = 4, 71.0
    assert not checkpointer.due(state), "neither 3 steps nor a minute since the last checkpoint"
    state.seconds = 72.5
    assert checkpointer.due(state), "a minute of training since the last checkpoint"

    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    resumed = checkpointer.resume(model, log, TrainState(processes=1, accumulation=1), None)
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch, resumed.seconds, resumed.tokens) == (3, 1, 2, 12.5, 99)
    assert (resumed.window_loss, resumed.window_tokens) == (4.0, 7)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]

    resumed.step, resumed.best_step, resumed.best_metric = 6, 6, 2.0
    checkpointer.save_after_eval(resumed, model, improved=True)
    assert [p.name for p in checkpoints(folder)] == ["step-6"] and best_step(folder) == 6
    with pytest.raises(RunDirError, match="gradient accumulation 1, this launch has 1 and 2"):
        checkpointer.resume(model, log, TrainState(processes=1, accumulation=2), None)


@pytest.mark.parametrize("cuda, bf16_gpu, cpu, expected", [
    (False, False, False, "no"),  # any CPU, AMX or not: bf16 did not pay for the shipped models (README)
    (True, True, False, "bf16"),
    (True, False, False, "no"),
    (True, True, True, "no"),     # CPU processes on a machine that has a GPU
])
def test_auto_precision_is_bf16_on_a_capable_gpu_and_fp32_on_a_cpu(monkeypatch, cuda, bf16_gpu, cpu, expected):
    from hfpipe.pipeline.distributed import resolve_mixed_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):  # a CPU with native bf16, as here
        monkeypatch.setattr(torch.cpu, probe, lambda: True, raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    assert resolve_mixed_precision("auto", cpu=cpu) == expected
    assert resolve_mixed_precision("bf16", cpu=cpu) == "bf16", "an explicit setting is kept"
