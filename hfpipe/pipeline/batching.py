"""The training data loader: examples grouped by length into batches of at most `train.batch_tokens` padded tokens
(a variable-size batch sampler that every process deals out the same way), padded per batch."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hfpipe.errors import DataError
from hfpipe.recipe.schema import TrainConfig

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from torch.utils.data import DataLoader


class LengthGroupedBatches:
    """Batches of examples of similar length, as many per batch as fit `max_tokens` padded tokens (source +
    target) and at most `max_rows`. Within each pool of ~100 batches examples are sorted by the longer of their
    source and target lengths; the order of batches is shuffled every epoch with a seed, so runs are reproducible.

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
                 max_tokens: int | None, seed: int, group_by_length: bool = True, group: int = 1,
                 pad_to_multiple_of: int = 1, max_lengths: tuple[int, int] | None = None) -> None:
        if len(source_lengths) < group:
            raise DataError(f"the training split has {len(source_lengths)} rows, fewer than the {group} batches "
                            "one optimizer step needs (processes × train.gradient_accumulation_steps)",
                            hint="use more training rows, fewer processes or less gradient accumulation")
        self.src, self.tgt = source_lengths, target_lengths
        self.max_rows, self.max_tokens = max_rows, max_tokens
        self.seed, self.group_by_length, self.group = seed, group_by_length, group
        self.multiple = pad_to_multiple_of
        self.max_src, self.max_tgt = max_lengths or (None, None)
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
                cost = (padded(new_src, self.multiple, self.max_src)
                        + padded(new_tgt, self.multiple, self.max_tgt)) * (len(batch) + 1)
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


def padded(length: int, multiple: int, cap: int | None = None) -> int:
    """`length` rounded up to a multiple of `multiple`, but not past `cap` (the data's length limit, which the
    preflight checked against the model's positions) unless the row itself is longer."""
    rounded = -(-length // multiple) * multiple
    return rounded if cap is None else max(length, min(rounded, cap))


@dataclass
class Collator:
    """Pads `input_ids` with the pad id and `labels` with -100 (ignored by the loss), per batch, to the longest row
    rounded up to a multiple of `pad_to_multiple_of` (at most to `max_lengths`, source and target)."""

    pad_token_id: int
    pad_to_multiple_of: int = 1
    max_lengths: tuple[int, int] | None = None

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        import torch

        max_src, max_tgt = self.max_lengths or (None, None)
        src_len = padded(max(len(r["input_ids"]) for r in rows), self.pad_to_multiple_of, max_src)
        tgt_len = padded(max(len(r["labels"]) for r in rows), self.pad_to_multiple_of, max_tgt)
        input_ids = torch.full((len(rows), src_len), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), src_len), dtype=torch.long)
        labels = torch.full((len(rows), tgt_len), -100, dtype=torch.long)
        for k, r in enumerate(rows):
            input_ids[k, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            attention_mask[k, :len(r["input_ids"])] = 1
            labels[k, :len(r["labels"])] = torch.tensor(r["labels"])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def make_loader(train_set: Dataset, cfg: TrainConfig, *, pad_token_id: int, group: int,
                max_lengths: tuple[int, int] | None = None) -> tuple[DataLoader, LengthGroupedBatches]:
    """The (unprepared) loader over the tokenized `train_set` and its batch sampler; `group` is processes ×
    accumulation steps, the micro-batches of one optimizer step; `max_lengths` (source, target) bound the padding."""
    import torch
    from torch.utils.data import DataLoader

    from hfpipe.pipeline.tokenization import token_lengths

    src_len, tgt_len = token_lengths(train_set, "input_ids"), token_lengths(train_set, "labels")
    sampler = LengthGroupedBatches(src_len, tgt_len, max_rows=cfg.batch_size, max_tokens=cfg.batch_tokens,
                                   seed=cfg.seed, group_by_length=cfg.group_by_length, group=group,
                                   pad_to_multiple_of=cfg.pad_to_multiple_of, max_lengths=max_lengths)
    loader = DataLoader(train_set.with_format(None, columns=["input_ids", "labels"]), batch_sampler=sampler,
                        collate_fn=Collator(pad_token_id, cfg.pad_to_multiple_of, max_lengths),
                        num_workers=cfg.dataloader_workers,
                        # Its own generator: starting an epoch draws a seed from it, and drawing from the global
                        # one would shift dropout's random stream between a resumed and an uninterrupted run.
                        generator=torch.Generator().manual_seed(cfg.seed))
    return loader, sampler
