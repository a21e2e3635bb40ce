"""A beam-search cache for transformers' encoder-decoder models that leaves the cross-attention cache in place.

After every decoding step, beam search reorders the cache along the beams it kept. The cross-attention keys and
values come from the encoder's output, which `generate()` repeats once per beam, so the rows of one input's beams
are equal; and beam search only ever moves a beam among the beams of its own input. Reordering them changes
nothing, yet transformers' `EncoderDecoderCache` copies all of them at every step: on the example scripts' Marian
model (beam 4, batches of 32) that was most of the 16% of beam search spent in `index_select`. hfpipe's own
models already reorder only their self-attention cache (their `_reorder_cache`)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def beam_search_cache(model: PreTrainedModel, num_beams: int) -> dict[str, Any]:
    """generate()'s keyword argument for a fresh such cache, for one call; {} where transformers' own choice must
    stand: greedy search, a decoder-only model, a model that reorders its own cache, a generation config that names
    a cache kind (generate() refuses a passed cache then) or turns the cache off (a passed one would be used anyway),
    or a transformers without these classes."""
    if num_beams <= 1 or not getattr(model.config, "is_encoder_decoder", False) or hasattr(model, "_reorder_cache"):
        return {}
    generation_config = model.generation_config
    if getattr(generation_config, "cache_implementation", None) is not None or \
            getattr(generation_config, "use_cache", True) is False:
        return {}
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    if supports is None or not supports():
        return {}
    try:
        from transformers.cache_utils import DynamicCache
        from transformers.generation.utils import ALL_CACHE_NAMES
        cache_class = _self_attention_reordered_cache()
    except ImportError:  # another transformers layout: keep its default
        return {}
    config = model.config.get_text_config(decoder=True)
    # ALL_CACHE_NAMES[0] is the name generate() looks for first ("cache" in transformers 5).
    return {ALL_CACHE_NAMES[0]: cache_class(DynamicCache(config=config), DynamicCache(config=config))}


@functools.cache
def _self_attention_reordered_cache() -> type:
    from transformers.cache_utils import EncoderDecoderCache

    class SelfAttentionReorderedCache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx: Any) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)

    return SelfAttentionReorderedCache
