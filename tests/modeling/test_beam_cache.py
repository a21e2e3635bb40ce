"""Beam search over transformers' encoder-decoder models with the cache that leaves cross-attention in place
(hfpipe.pipeline.beam_cache): the same sequences and scores as transformers' own cache, on randomized tiny models
whose beams really do get reordered; and the cases where transformers' own choice stands."""

from __future__ import annotations

import pytest
import torch

from hfpipe.pipeline.beam_cache import beam_search_cache
from tests.modeling.conftest import EOS, PAD, VOCAB, train_reversal


def _model(kind: str):
    from transformers import BartConfig, BartForConditionalGeneration, MarianConfig, MarianMTModel

    sizes = dict(vocab_size=VOCAB, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                 pad_token_id=PAD, eos_token_id=EOS, forced_eos_token_id=None)
    torch.manual_seed(0)
    if kind == "marian":
        model = MarianMTModel(MarianConfig(decoder_start_token_id=PAD, **sizes))
    else:
        model = BartForConditionalGeneration(BartConfig(bos_token_id=1, decoder_start_token_id=EOS, **sizes))
    # Partly trained on the reversal task: its beams disagree and get reordered (an untrained model repeats a token).
    train_reversal(model, steps=60, lr=3e-3)
    return model


def _sources():
    """Three right-padded sources of lengths 9, 6 and 3."""
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(3, VOCAB, (3, 9), generator=generator)
    attention_mask = (torch.arange(9) < torch.tensor([[9], [6], [3]])).long()
    return input_ids.masked_fill(attention_mask == 0, PAD), attention_mask


def _generate(model, extra=None, **kwargs):
    input_ids, attention_mask = _sources()
    extra = extra or {}
    with torch.inference_mode():
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=4, max_new_tokens=12,
                              do_sample=False, early_stopping=True, return_dict_in_generate=True,
                              output_scores=True, **extra, **kwargs)


@pytest.mark.parametrize("kind", ["marian", "bart"])
def test_beam_search_gives_what_transformers_own_cache_gives(kind):
    model = _model(kind)
    reference = _generate(model)
    ((keyword, cache),) = beam_search_cache(model, 4).items()
    assert type(cache).__name__ == "SelfAttentionReorderedCache"
    reorders = []

    class Recording(type(cache)):
        def reorder_cache(self, beam_idx):
            reorders.append(beam_idx.clone())
            super().reorder_cache(beam_idx)

    from transformers.cache_utils import DynamicCache

    config = model.config.get_text_config(decoder=True)
    ours = _generate(model, {keyword: Recording(DynamicCache(config=config), DynamicCache(config=config))})
    assert torch.equal(ours.sequences, reference.sequences)
    torch.testing.assert_close(ours.sequences_scores, reference.sequences_scores)
    # The beams really were reordered along the way (else any cache would do), within each input's beams only.
    assert any(not torch.equal(idx, torch.arange(len(idx))) for idx in reorders)
    assert all(torch.equal(idx // 4, torch.arange(len(idx)) // 4) for idx in reorders)


def test_transformers_choice_stands_where_it_must(registered, transformer_config):
    from transformers import AutoModelForSeq2SeqLM, GPT2Config, GPT2LMHeadModel, MarianConfig, MarianMTModel

    marian = MarianMTModel(MarianConfig(vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                        decoder_ffn_dim=32, pad_token_id=PAD, eos_token_id=EOS,
                                        decoder_start_token_id=PAD))
    assert beam_search_cache(marian, 4), "the case it is for"
    assert beam_search_cache(marian, 1) == {}, "greedy search reorders nothing"
    hfpipe_model = AutoModelForSeq2SeqLM.from_config(transformer_config())
    assert beam_search_cache(hfpipe_model, 4) == {}, "hfpipe's models reorder their own cache"
    decoder_only = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2))
    assert beam_search_cache(decoder_only, 4) == {}
    for kind in ("static", "dynamic"):  # generate() refuses a passed cache when the config names any kind
        marian.generation_config.cache_implementation = kind
        assert beam_search_cache(marian, 4) == {}
    marian.generation_config.cache_implementation = None
    marian.generation_config.use_cache = False  # generate() would still use a passed cache
    assert beam_search_cache(marian, 4) == {}
