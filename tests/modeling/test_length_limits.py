"""Output length limits from the source length (evaluate.min_length_ratio / max_length_ratio): the bounds against
their formula, and generation that obeys them exactly, greedy and beam, on a real tiny model."""

from __future__ import annotations

import math

import pytest

from tests.modeling.conftest import EOS, randomize

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import LogitsProcessor, LogitsProcessorList  # noqa: E402

from hfpipe.pipeline.evaluation import GenerationSettings  # noqa: E402
from hfpipe.pipeline.length_limits import MAX_LENGTH_SLACK, SourceLengthLimits, length_bounds  # noqa: E402


@pytest.mark.parametrize("n", [0, 1, 2, 7, 13, 40])
@pytest.mark.parametrize(("low", "high"), [(None, None), (0.8, None), (None, 1.5), (0.5, 2.0), (1.3, 1.3)])
def test_bounds_follow_the_formula(n, low, high):
    lows, highs = length_bounds([n], min_ratio=low, max_ratio=high, max_new_tokens=30)
    expected_high = 30 if high is None else min(30, math.floor(high * n) + MAX_LENGTH_SLACK)
    assert highs == [expected_high]
    assert lows == [0 if low is None else min(math.ceil(low * n), expected_high)]


def test_processor_blocks_and_forces_the_end_token_per_row_and_beam():
    # Two rows, two beams each: row 0 has 4 source tokens, row 1 has 10.
    proc = SourceLengthLimits([4, 10], eos_token_id=EOS, num_beams=2, max_new_tokens=50, min_ratio=1.0,
                              max_ratio=0.5)
    # max_ratio 0.5 → ceilings 2+5=7 and 5+5=10; floors min(4, 7)=4 and min(10, 10)=10.
    scores = torch.zeros(4, 6)
    after = lambda generated: proc(torch.ones(4, 1 + generated, dtype=torch.long), scores)  # noqa: E731
    s = after(3)
    assert torch.isinf(s[:, EOS]).all() and (s[:, EOS] < 0).all(), "every beam is under its floor"
    assert (s[:, [0, 1, 3, 4, 5]] == 0).all(), "other tokens untouched"
    s = after(4)
    assert (s[:2, EOS] == 0).all() and torch.isinf(s[2:, EOS]).all(), "row 0 may end, row 1 may not"
    s = after(7)
    assert (s[:2, EOS] == 0).all() and torch.isinf(s[:2, [0, 1, 3, 4, 5]]).all(), "row 0 must end"
    assert torch.isinf(s[2:, EOS]).all()
    s = after(10)
    assert torch.isinf(s[2:, [0, 1, 3, 4, 5]]).all() and (s[2:, EOS] == 0).all(), "row 1 must end"
    assert not torch.isinf(scores).any(), "the input scores are not modified in place"


class _Bias(LogitsProcessor):
    """Pushes the end token up (or down) so hard that only a length limit can overrule it."""

    def __init__(self, amount: float) -> None:
        self.amount = amount

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, EOS] += self.amount
        return scores


def _lengths(model, source_lengths, settings, bias):
    rows = [torch.randint(3, 13, (n,), generator=torch.Generator().manual_seed(n)) for n in source_lengths]
    longest = max(source_lengths)
    input_ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    processors = [_Bias(bias), *settings.logits_processors(source_lengths, EOS)]
    out = model.generate(input_ids=input_ids, attention_mask=mask, logits_processor=LogitsProcessorList(processors),
                         **settings.generate_kwargs())
    lengths = []
    for row in out[:, 1:].tolist():  # drop the decoder start token
        lengths.append(row.index(EOS) if EOS in row else len(row))
    return lengths


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_obeys_the_limits_exactly(transformer_config, registered, num_beams):
    from hfpipe.modeling.modeling_hfpipe_transformer import HfpipeTransformerForConditionalGeneration

    model = randomize(HfpipeTransformerForConditionalGeneration(transformer_config(copy_attention=True)))
    sources = [3, 9, 14]
    eager = GenerationSettings(max_new_tokens=25, num_beams=num_beams, min_length_ratio=1.5)
    # An end token favoured at every step: without the floor every output would be empty.
    assert _lengths(model, sources, GenerationSettings(max_new_tokens=25, num_beams=num_beams), 50.0) == [0, 0, 0]
    assert _lengths(model, sources, eager, 50.0) == [5, 14, 21]
    # An end token never chosen: without the ceiling every output would run to max_new_tokens.
    assert _lengths(model, sources, GenerationSettings(max_new_tokens=25, num_beams=num_beams), -50.0) == [25] * 3
    capped = GenerationSettings(max_new_tokens=25, num_beams=num_beams, max_length_ratio=0.5)
    assert _lengths(model, sources, capped, -50.0) == [6, 9, 12]


def test_settings_save_the_ratios_beside_generates_own_keys():
    plain = GenerationSettings(max_new_tokens=20, num_beams=4, length_penalty=2.0)
    assert plain.saved_config() == plain.generate_kwargs() and plain.logits_processors([3], EOS) == []
    limited = GenerationSettings(max_new_tokens=20, num_beams=4, min_length_ratio=0.8, max_length_ratio=2.0)
    saved = limited.saved_config()
    assert saved["hfpipe_min_length_ratio"] == 0.8 and saved["hfpipe_max_length_ratio"] == 2.0
    assert "hfpipe_min_length_ratio" not in limited.generate_kwargs(), "generate() would refuse an unknown kwarg"
    assert limited.logits_processors([3], None) == [], "a model without an end token gets no limits"
