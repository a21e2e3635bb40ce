"""Token-budget batches through accelerate's real `prepare_data_loader`: every row exactly once per epoch, the
same number of batches on every process, `len()` equal to what is yielded, every batch within the token budget
(or a single over-long row), the same batches for the same seed."""

from __future__ import annotations

import pytest
from accelerate.data_loader import prepare_data_loader
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from hfpipe.errors import DataError
from hfpipe.pipeline.batching import LengthGroupedBatches


def _shards(sampler: LengthGroupedBatches, processes: int) -> list[list[list[int]]]:
    """The batches each process gets from accelerate's sharding of a loader over `sampler` (row ids)."""
    rows = list(range(len(sampler.src)))
    loader = DataLoader(rows, batch_sampler=sampler, collate_fn=list)
    out = []
    for rank in range(processes):
        prepared = prepare_data_loader(loader, num_processes=processes, process_index=rank, put_on_device=False)
        batches = list(prepared)
        assert len(prepared) == len(batches), "len() must equal what is yielded"
        out.append(batches)
    return out


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


lengths = st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=400)


@settings(max_examples=60, deadline=None)
@given(src=lengths, data=st.data())
def test_every_row_once_and_equal_batches_on_every_process(src, data):
    processes = data.draw(st.integers(min_value=2, max_value=8), label="processes")
    accumulation = data.draw(st.integers(min_value=1, max_value=3), label="accumulation")
    tgt = data.draw(st.lists(st.integers(min_value=1, max_value=80), min_size=len(src), max_size=len(src)))
    max_tokens = data.draw(st.sampled_from([None, 64, 300, 2000]), label="max_tokens")
    max_rows = data.draw(st.integers(min_value=1, max_value=64), label="max_rows")
    multiple = data.draw(st.sampled_from([1, 8, 16]), label="pad_to_multiple_of")
    if len(src) < processes * accumulation:
        with pytest.raises(DataError, match="fewer than"):
            LengthGroupedBatches(src, tgt, max_rows=max_rows, max_tokens=max_tokens, seed=3,
                                 group=processes * accumulation)
        return
    sampler = LengthGroupedBatches(src, tgt, max_rows=max_rows, max_tokens=max_tokens, seed=3,
                                   group=processes * accumulation, pad_to_multiple_of=multiple)
    # The plan before it is evened out to a multiple of the group: when there are too few multi-row batches to
    # split, one-row batches are merged instead, and only those merged ones may exceed the budget.
    unsplit = LengthGroupedBatches(src, tgt, max_rows=max_rows, max_tokens=max_tokens, seed=3, group=1,
                                   pad_to_multiple_of=multiple)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        unsplit.set_epoch(epoch)
        shards = _shards(sampler, processes)
        again = LengthGroupedBatches(src, tgt, max_rows=max_rows, max_tokens=max_tokens, seed=3,
                                     group=processes * accumulation, pad_to_multiple_of=multiple)
        again.set_epoch(epoch)
        assert _shards(again, processes) == shards, "the same batches on the same processes for a seed"
        merged = len(src) - len(unsplit) < -len(unsplit) % (processes * accumulation)
        for batch in sampler:
            assert len(batch) <= max_rows or merged
            # The budget counts the tokens as the collator pads them, rounded up to the multiple.
            padded = (_round_up(max(src[i] for i in batch), multiple)
                      + _round_up(max(tgt[i] for i in batch), multiple)) * len(batch)
            assert len(batch) == 1 or max_tokens is None or padded <= max_tokens or merged, (batch, padded)
        counts = {len(s) for s in shards}
        assert len(counts) == 1, f"processes get different numbers of batches: {counts}"
        assert counts.pop() % accumulation == 0, "every optimizer step has all its micro-batches"
        seen = sorted(i for shard in shards for batch in shard for i in batch)
        assert seen == list(range(len(src))), "every row exactly once per epoch"
        assert all(shard and all(shard) for shard in shards), "no empty batch"
        # The step's token count every process uses as its loss denominator: the rows of that step, all ranks.
        steps = sampler.step_target_tokens()
        per_rank_steps = len(shards[0]) // accumulation
        assert len(steps) == per_rank_steps == sampler.steps_per_epoch()
        for k, expected in enumerate(steps):
            micro = [b for shard in shards for b in shard[k * accumulation:(k + 1) * accumulation]]
            assert expected == sum(tgt[i] for b in micro for i in b)


def test_token_budget_is_respected_and_batches_are_not_fixed_size():
    """The sampler must not look fixed-size to accelerate (a `batch_size` attribute made it drop every round
    whose last batch was not full: 6-7 of 70 batches per process were trained)."""
    src = [5 + (i * 37) % 90 for i in range(1000)]
    tgt = [3 + (i * 11) % 40 for i in range(1000)]
    sampler = LengthGroupedBatches(src, tgt, max_rows=64, max_tokens=1024, seed=0, group=2)
    assert not hasattr(sampler, "batch_size")
    sizes = {len(b) for b in sampler}
    assert len(sizes) > 3
    for batch in sampler:
        longest = max(src[i] for i in batch) + max(tgt[i] for i in batch)
        assert len(batch) == 1 or longest * len(batch) <= 1024
    shards = _shards(sampler, 2)
    assert len(shards[0]) == len(shards[1]) == len(sampler) // 2


def test_one_process_keeps_its_batches_and_seeded_order():
    src = [1 + i % 50 for i in range(300)]
    a = LengthGroupedBatches(src, src, max_rows=16, max_tokens=None, seed=5)
    b = LengthGroupedBatches(src, src, max_rows=16, max_tokens=None, seed=5)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b), "a new order every epoch"
    assert sorted(i for batch in a for i in batch) == list(range(300))


def test_one_row_batches_that_cannot_be_split_are_merged():
    """Every row alone over the token budget: batches cannot be split, so neighbours are merged instead."""
    sampler = LengthGroupedBatches([100] * 7, [100] * 7, max_rows=8, max_tokens=10, seed=0, group=3)
    batches = list(sampler)
    assert len(batches) == 6 and sorted(i for b in batches for i in b) == list(range(7))


def test_padding_to_a_multiple_stops_at_the_length_limits():
    """Rounded up to 16, but never past the data's length limits (which the preflight checked against the model's
    positions): a 7-token source and 5-token target pad to 10 and 6 under limits of 10 and 6, to 16 without."""
    from hfpipe.pipeline.batching import Collator

    rows = [{"input_ids": [5] * 7, "labels": [6] * 5}, {"input_ids": [5] * 3, "labels": [6] * 2}]
    capped = Collator(0, 16, (10, 6))(rows)
    assert capped["input_ids"].shape == (2, 10) and capped["labels"].shape == (2, 6)
    free = Collator(0, 16)(rows)
    assert free["input_ids"].shape == (2, 16) and free["labels"].shape == (2, 16)
    assert free["labels"][0].tolist() == [6] * 5 + [-100] * 11 and free["attention_mask"][1].sum() == 3
    # The token budget counts the same capped lengths.
    sampler = LengthGroupedBatches([7, 3], [5, 2], max_rows=8, max_tokens=32, seed=0, pad_to_multiple_of=16,
                                   max_lengths=(10, 6))
    assert [sorted(b) for b in sampler] == [[0, 1]]  # (10 + 6) × 2 = 32 fits; uncapped (16 + 16) × 2 would not
    uncapped = LengthGroupedBatches([7, 3], [5, 2], max_rows=8, max_tokens=32, seed=0, pad_to_multiple_of=16)
    assert len(list(uncapped)) == 2
