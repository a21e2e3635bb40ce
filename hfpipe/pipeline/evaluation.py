"""Stage 5, evaluation: generate for a split, score it, write predictions.

Generation runs over batches sorted by source length (little padding), decodes each batch to text at once and
streams it to disk; no logits or token tensors are kept. The original order is restored at the end. With several
processes each takes every n-th batch and the main process gathers the texts, dropping the duplicates that
padding the last round adds.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpipe.pipeline.data_files import Example
from hfpipe.recipe.schema import EvaluateConfig, Recipe

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int
    num_beams: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    batch_size: int = 64
    min_length_ratio: float | None = None
    max_length_ratio: float | None = None

    @classmethod
    def from_recipe(cls, cfg: EvaluateConfig, max_new_tokens: int, *, num_beams: int | None = None) -> GenerationSettings:
        return cls(max_new_tokens=cfg.max_new_tokens or max_new_tokens,
                   num_beams=num_beams if num_beams is not None else cfg.num_beams,
                   length_penalty=cfg.length_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
                   repetition_penalty=cfg.repetition_penalty, batch_size=cfg.batch_size,
                   min_length_ratio=cfg.min_length_ratio, max_length_ratio=cfg.max_length_ratio)

    def generate_kwargs(self) -> dict[str, Any]:
        # Always explicit: transformers otherwise falls back to max_length=20 and silently cuts outputs.
        kwargs: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                      do_sample=False)
        if self.num_beams > 1:
            kwargs.update(length_penalty=self.length_penalty, early_stopping=True)
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs

    def saved_config(self) -> dict[str, Any]:
        """What goes into the saved model's generation_config.json: generate's own settings, and the source-length
        limits under hfpipe_* keys (transformers keeps unknown keys and ignores them; `hfpipe predict` applies them)."""
        saved = self.generate_kwargs()
        if self.min_length_ratio is not None:
            saved["hfpipe_min_length_ratio"] = self.min_length_ratio
        if self.max_length_ratio is not None:
            saved["hfpipe_max_length_ratio"] = self.max_length_ratio
        return saved

    def logits_processors(self, source_lengths: list[int], eos_token_id: int | list[int] | None) -> list[Any]:
        """The per-batch processors these settings need (none without length ratios or an end token)."""
        if (self.min_length_ratio is None and self.max_length_ratio is None) or eos_token_id is None:
            return []
        from hfpipe.pipeline.length_limits import SourceLengthLimits

        return [SourceLengthLimits(source_lengths, eos_token_id=eos_token_id, num_beams=self.num_beams,
                                   max_new_tokens=self.max_new_tokens, min_ratio=self.min_length_ratio,
                                   max_ratio=self.max_length_ratio)]


def default_max_new_tokens(label_lengths: list[int]) -> int:
    """A generation limit from the data: 1.5 × the 99th percentile of target lengths in tokens (never below 16),
    so under 1% of references would be cut and a model that does not stop is stopped in reasonable time."""
    if not label_lengths:
        return 128
    ordered = sorted(label_lengths)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return max(16, min(ordered[-1] + 8, math.ceil(p99 * 1.5) + 2))


def generate_texts(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sources: list[str],
                   settings: GenerationSettings, *, accelerator: Accelerator, max_source_length: int,
                   on_batch: Callable[[int], None] | None = None,
                   spill_path: Path | None = None) -> list[str]:
    """Predictions for `sources`, in their order. Batches go longest first (an out-of-memory shows up at once),
    sorted so each batch pads little; every batch is decoded to text right away."""
    import torch

    from hfpipe.pipeline.beam_cache import beam_search_cache

    lengths = [len(ids) for ids in tokenizer(sources, max_length=max_source_length, truncation=True)["input_ids"]]
    order = sorted(range(len(sources)), key=lambda i: -lengths[i])
    batches = [order[i:i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    rounds = math.ceil(len(batches) / n_proc)
    mine = [batches[min(r * n_proc + rank, len(batches) - 1)] for r in range(rounds)]  # pad the last round
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    kwargs = settings.generate_kwargs()
    predictions: dict[int, str] = {}
    spill = spill_path.open("w", encoding="utf-8") if spill_path is not None and accelerator.is_main_process else None
    try:
        for batch in mine:
            enc = tokenizer([sources[i] for i in batch], max_length=max_source_length, truncation=True,
                            padding=True, return_tensors="pt").to(accelerator.device)
            processors = settings.logits_processors(enc["attention_mask"].sum(dim=1).tolist(),
                                                    unwrapped.generation_config.eos_token_id)
            if processors:
                from transformers import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList(processors)
            kwargs.update(beam_search_cache(unwrapped, settings.num_beams))  # a fresh cache per batch
            with torch.inference_mode(), accelerator.autocast():
                out = unwrapped.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
            texts = [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
            pairs = list(zip(batch, texts))
            if n_proc > 1:
                from accelerate.utils import gather_object

                pairs = gather_object(pairs)
            # The padded last round repeats a batch: keep each row once (and count it once for the progress bar).
            fresh = []
            for i, t in pairs:
                if i not in predictions:
                    predictions[i] = t
                    fresh.append((i, t))
            if spill is not None:
                for i, t in fresh:
                    spill.write(json.dumps({"index": i, "prediction": t}, ensure_ascii=False) + "\n")
            if on_batch is not None:
                on_batch(len(fresh))
    finally:
        if spill is not None:
            spill.close()
    return [predictions[i] for i in range(len(sources))]


def score(task: str, sources: list[str], predictions: list[str], references: list[str],
          bucket_edges: list[int]) -> dict[str, Any]:
    from hfpipe.tasks.metrics import (
        compute_summarization_metrics,
        compute_translation_metrics,
        metrics_by_length,
    )

    compute = compute_translation_metrics if task == "translation" else compute_summarization_metrics
    metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in compute(predictions, references).items()}
    metrics["by_length"] = metrics_by_length(task, sources, predictions, references, bucket_edges=bucket_edges)
    return metrics


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


@dataclass
class SplitResult:
    split: str
    metrics: dict[str, Any]
    num_samples: int
    seconds: float
    predictions_file: str | None
    predictions: list[str] = field(default_factory=list, repr=False)


def evaluate_split(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, recipe: Recipe, split: str,
                   examples: Sequence[Example], settings: GenerationSettings, *, accelerator: Accelerator,
                   out_dir: Path | None, on_batch: Callable[[int], None] | None = None,
                   extra_metrics: list[tuple[str, Any]] | None = None) -> SplitResult:
    """Generate for every example of a split, score against the references, and (main process) write
    `predictions-<split>.jsonl` with source, reference and prediction."""
    start = time.perf_counter()
    sources = [recipe.data.source_prefix + e.source for e in examples]
    spill = out_dir / f".predictions-{split}.partial.jsonl" if out_dir is not None else None
    predictions = generate_texts(model, tokenizer, sources, settings, accelerator=accelerator,
                                 max_source_length=recipe.data.max_source_length, on_batch=on_batch,
                                 spill_path=spill)
    references = [e.target for e in examples]
    metrics = score(recipe.task, [e.source for e in examples], predictions, references,
                    recipe.evaluate.length_buckets)
    if extra_metrics:
        from hfpipe.tasks.extra_metrics import compute_extra_metrics

        metrics.update(compute_extra_metrics(extra_metrics, predictions, references))
    metrics["num_samples"] = len(examples)
    path = None
    if out_dir is not None and accelerator.is_main_process:
        path = out_dir / f"predictions-{split}.jsonl"
        write_jsonl_atomic(path, [{"source": e.source, "reference": e.target, "prediction": p}
                                  for e, p in zip(examples, predictions)])
        if spill is not None and spill.exists():
            spill.unlink()
    return SplitResult(split, metrics, len(examples), round(time.perf_counter() - start, 2),
                       str(path) if path else None, predictions)
