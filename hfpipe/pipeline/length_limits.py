"""Output length limits from the source length, for generation.

Beam search's length penalty only rescales finished hypotheses; it cannot stop an undertrained decoder from ending
after three words, nor from running on to max_new_tokens. A translation is about as long as its source (in
tokens), so a floor and a ceiling proportional to each row's own source length are a sharper tool: the end token
is forbidden until `min_ratio × source tokens` have been generated, and forced once `max_ratio × source tokens +
slack` have. Works for greedy and beam search alike (rows are expanded per beam).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from transformers import LogitsProcessor

if TYPE_CHECKING:
    import torch

# Tokens allowed past max_ratio × source: a two-token source still gets room for a short output.
MAX_LENGTH_SLACK = 5


def length_bounds(source_lengths: list[int], *, min_ratio: float | None, max_ratio: float | None,
                  max_new_tokens: int) -> tuple[list[int], list[int]]:
    """Per row: (the fewest tokens before the end token is allowed, the most tokens before it is forced), both
    counted without the decoder's start token and both within max_new_tokens."""
    lows, highs = [], []
    for n in source_lengths:
        high = max_new_tokens
        if max_ratio is not None:
            high = min(max_new_tokens, math.floor(max_ratio * n) + MAX_LENGTH_SLACK)
        low = 0 if min_ratio is None else min(math.ceil(min_ratio * n), high)
        lows.append(low)
        highs.append(high)
    return lows, highs


class SourceLengthLimits(LogitsProcessor):
    """Forbids the end token before each row's floor and forces it at its ceiling (see `length_bounds`).

    `source_lengths`: non-padding source tokens per input row; generation rows are those repeated `num_beams` times
    (the layout `generate` uses). `start_length`: tokens the decoder input holds before the first generated one.
    """

    def __init__(self, source_lengths: list[int], *, eos_token_id: int | list[int], num_beams: int,
                 max_new_tokens: int, min_ratio: float | None = None, max_ratio: float | None = None,
                 start_length: int = 1) -> None:
        import torch

        lows, highs = length_bounds(source_lengths, min_ratio=min_ratio, max_ratio=max_ratio,
                                    max_new_tokens=max_new_tokens)
        self.low = torch.tensor(lows).repeat_interleave(num_beams)     # (rows × beams,)
        self.high = torch.tensor(highs).repeat_interleave(num_beams)   # (rows × beams,)
        self.eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        self.start_length = start_length
        self.forced: torch.Tensor | None = None  # the end-token-only row, built at the first step (vocab, device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        if self.forced is None or self.forced.device != scores.device:
            # Built once per generate() call (the vocabulary and device do not change between steps).
            self.low, self.high, self.eos = (t.to(scores.device) for t in (self.low, self.high, self.eos))
            self.is_eos = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
            self.is_eos[self.eos] = True                                      # (vocab,)
            self.forced = torch.full((scores.shape[-1],), -math.inf, dtype=scores.dtype, device=scores.device)
            self.forced[self.eos[0]] = 0.0                                    # (vocab,)
        generated = input_ids.shape[-1] - self.start_length
        # Masks, not indexing by them: no host synchronisation per decoding step on a GPU.
        too_short = (generated < self.low)[:, None]                      # (rows × beams, 1)
        at_limit = (generated >= self.high)[:, None]                     # (rows × beams, 1)
        scores = scores.masked_fill(too_short & self.is_eos, -math.inf)
        return torch.where(at_limit, self.forced, scores)
