"""What only the in-house recurrent encoder-decoder (no attention, Bahdanau additive, Luong dot) has: its config,
right padding, its alignment as cross-attention, and a reversal task it must learn. What it shares with the
Transformer (save/load, generation with and without the cache, the loss, special tokens) is tested once for both
in test_modeling_seq2seq.py."""

from __future__ import annotations

import pytest
import torch

from hfpipe.modeling import build_config
from hfpipe.modeling.configuration_hfpipe_rnn import HfpipeRNNConfig
from hfpipe.modeling.modeling_hfpipe_rnn import HfpipeRNNForConditionalGeneration

from tests.modeling.conftest import VOCAB

def test_defaults_are_rnnsearch():
    config = HfpipeRNNConfig()
    assert (config.cell, config.attention, config.bidirectional) == ("gru", "additive", True)
    assert (config.embedding_dim, config.hidden_size, config.num_layers) == (620, 1000, 1)
    assert config.model_type == "hfpipe_rnn" and config.is_encoder_decoder is True


def test_build_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match=r"'hidden' \(did you mean 'hidden_size'\?\).*valid keys: vocab_size, cell"):
        build_config("hfpipe-rnn", hidden=64)
    with pytest.raises(ValueError, match=r"cell must be one of \('lstm', 'gru'\), got 'rnn'"):
        build_config("hfpipe-rnn", cell="rnn")
    with pytest.raises(ValueError, match="attention must be one of"):
        build_config("hfpipe-rnn", attention="general")


def test_left_padding_is_refused(rnn_config, sources):
    model = HfpipeRNNForConditionalGeneration(rnn_config())
    input_ids, attention_mask = sources
    with pytest.raises(ValueError, match="right-padded"):
        model(input_ids=input_ids, attention_mask=attention_mask.flip(1), decoder_input_ids=input_ids[:, :2])


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_output_attentions_returns_the_alignment_as_cross_attentions(rnn_config, randomized, sources, attention):
    torch.manual_seed(0)
    model = randomized(HfpipeRNNForConditionalGeneration(rnn_config(attention=attention)))
    input_ids, attention_mask = sources
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4))
    with torch.no_grad():
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            output_attentions=True,
        )
    (alignment,) = out.cross_attentions
    assert alignment.shape == (3, 1, 4, 7)
    torch.testing.assert_close(alignment.sum(-1), torch.ones(3, 1, 4))
    assert torch.all(alignment[2, ..., 3:] == 0) and torch.all(alignment[1, ..., 5:] == 0)

    generated = model.generate(
        input_ids, attention_mask=attention_mask, max_new_tokens=3, output_attentions=True,
        return_dict_in_generate=True,
    )
    assert [step[0].shape for step in generated.cross_attentions] == [(3, 1, 1, 7)] * 3


def test_no_attention_returns_no_alignment(rnn_config, sources):
    model = HfpipeRNNForConditionalGeneration(rnn_config(attention="none")).eval()
    input_ids, attention_mask = sources
    out = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids, output_attentions=True)
    assert out.cross_attentions is None


@pytest.mark.parametrize(
    ("variant", "steps", "lr"),
    [
        (dict(attention="none", cell="gru", hidden_size=128), 500, 3e-3),
        (dict(attention="additive", cell="gru", hidden_size=64), 200, 1e-2),
        (dict(attention="dot", cell="lstm", hidden_size=64), 200, 1e-2),
    ],
    ids=["none", "additive", "dot"],
)
def test_learns_the_reversal_task(rnn_config, reversal, variant, steps, lr):
    torch.manual_seed(0)
    model = HfpipeRNNForConditionalGeneration(rnn_config(embedding_dim=32, init_std=0.1, **variant))
    sequence_accuracy, token_accuracy = reversal(model, steps=steps, lr=lr)
    assert sequence_accuracy >= 0.9 and token_accuracy >= 0.97, (sequence_accuracy, token_accuracy)
