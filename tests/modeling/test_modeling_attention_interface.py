"""`attn_implementation="hfpipe"` inside transformers' own models gives the same outputs as "eager"."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    MBartConfig,
    MBartForConditionalGeneration,
    T5Config,
    T5ForConditionalGeneration,
)

from hfpipe.modeling import ATTENTION_IMPLEMENTATION, register_attention_interface

BART_LIKE = dict(
    vocab_size=50, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
    bos_token_id=0, pad_token_id=1, eos_token_id=2,
)
MODELS = {
    "marian": (MarianMTModel, lambda: MarianConfig(**BART_LIKE, decoder_start_token_id=1)),
    "bart": (BartForConditionalGeneration, lambda: BartConfig(**BART_LIKE, decoder_start_token_id=2)),
    "mbart": (MBartForConditionalGeneration, lambda: MBartConfig(**BART_LIKE, decoder_start_token_id=2)),
    "t5": (
        T5ForConditionalGeneration,
        lambda: T5Config(
            vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        ),
    ),
}


@pytest.fixture(scope="module")
def registered_interface():
    register_attention_interface()
    register_attention_interface()  # idempotent


@pytest.mark.parametrize("name", MODELS)
def test_hfpipe_attention_matches_eager_padded_rows_included(registered_interface, name):
    model_class, make_config = MODELS[name]
    config = make_config()
    torch.manual_seed(0)
    eager = model_class._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    ours = model_class._from_config(copy.deepcopy(config), attn_implementation=ATTENTION_IMPLEMENTATION).eval()
    ours.load_state_dict(eager.state_dict())
    assert ours.config._attn_implementation == ATTENTION_IMPLEMENTATION
    assert config._attn_implementation is None  # the caller's config was not touched

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 50, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[2, 2:] = 0
    decoder_input_ids = torch.randint(3, 50, (3, 5), generator=generator)
    decoder_attention_mask = torch.ones_like(decoder_input_ids)
    decoder_attention_mask[1, 3:] = 0
    inputs = dict(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=decoder_attention_mask,
    )
    with torch.no_grad():
        for output_attentions in (False, True):
            expected = eager(**inputs, output_attentions=output_attentions)
            actual = ours(**inputs, output_attentions=output_attentions)
            torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=0)
            torch.testing.assert_close(
                actual.encoder_last_hidden_state, expected.encoder_last_hidden_state, atol=1e-5, rtol=0
            )
            if output_attentions:
                for kind in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
                    for mine, theirs in zip(getattr(actual, kind), getattr(expected, kind), strict=True):
                        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)

    kwargs = dict(attention_mask=attention_mask, max_new_tokens=6, num_beams=2)
    assert torch.equal(ours.generate(input_ids, **kwargs), eager.generate(input_ids, **kwargs))
