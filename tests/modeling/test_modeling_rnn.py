"""The in-house recurrent encoder-decoder (no attention, Bahdanau additive, Luong dot) as a Hugging Face model."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSeq2SeqLM

from hfpipe.modeling import build_config
from hfpipe.modeling.configuration_hfpipe_rnn import HfpipeRNNConfig
from hfpipe.modeling.modeling_hfpipe_rnn import HfpipeRNNForConditionalGeneration

PAD, BOS, EOS, VOCAB = 0, 1, 2, 13  # as in conftest.py

VARIANTS = [
    dict(cell="lstm", attention="none", bidirectional=True, num_layers=2),
    dict(cell="gru", attention="none", bidirectional=False, num_layers=1),
    dict(cell="gru", attention="additive", bidirectional=True, num_layers=1),
    dict(cell="lstm", attention="additive", bidirectional=False, num_layers=2),
    dict(cell="lstm", attention="dot", bidirectional=True, num_layers=1),
    dict(cell="gru", attention="dot", bidirectional=False, num_layers=2),
]
VARIANT_IDS = [
    f"{v['cell']}-{v['attention']}-{'bi' if v['bidirectional'] else 'uni'}-{v['num_layers']}" for v in VARIANTS
]
GENERATION_MODES = {"greedy": dict(), "beam": dict(num_beams=3), "sampling": dict(do_sample=True, top_k=0)}


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


@pytest.mark.parametrize("mode", GENERATION_MODES)
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_cached_and_uncached_generation_give_the_same_tokens(rnn_config, randomized, sources, variant, mode):
    torch.manual_seed(0)
    model = randomized(HfpipeRNNForConditionalGeneration(rnn_config(**variant)))
    input_ids, attention_mask = sources
    kwargs = dict(attention_mask=attention_mask, max_new_tokens=10, min_new_tokens=10, **GENERATION_MODES[mode])
    torch.manual_seed(1)
    cached = model.generate(input_ids, use_cache=True, **kwargs)
    torch.manual_seed(1)
    uncached = model.generate(input_ids, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert len(set(cached.flatten().tolist())) > 3  # the output varies, so a broken cache would show


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_a_padded_row_decodes_as_it_does_alone(rnn_config, randomized, sources, variant):
    torch.manual_seed(0)
    model = randomized(HfpipeRNNForConditionalGeneration(rnn_config(**variant)))
    input_ids, attention_mask = sources
    batch = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6, min_new_tokens=6)
    alone = model.generate(input_ids[2:, :3], max_new_tokens=6, min_new_tokens=6)
    assert torch.equal(batch[2:], alone)
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=batch).logits[2:],
            model(input_ids=input_ids[2:, :3], decoder_input_ids=alone).logits,
            atol=1e-5,
            rtol=0,
        )


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
    "overrides", [dict(attention="additive", tie_word_embeddings=True), dict(attention="dot", cell="lstm")]
)
def test_save_load_gives_identical_logits(tmp_path, registered, rnn_config, randomized, sources, overrides):
    torch.manual_seed(0)
    model = randomized(AutoModelForSeq2SeqLM.from_config(rnn_config(**overrides)))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_hfpipe_rnn.HfpipeRNNForConditionalGeneration"
    assert (tmp_path / "modeling_hfpipe_rnn.py").is_file() and (tmp_path / "attention.py").is_file()
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is HfpipeRNNForConditionalGeneration
    assert (loaded.lm_head.weight is loaded.encoder.embed_tokens.weight) is loaded.config.tie_word_embeddings
    input_ids, attention_mask = sources
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4))
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        actual = loaded(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    assert torch.equal(actual.logits, expected.logits)


def test_labels_give_the_shifted_cross_entropy(rnn_config, randomized, sources):
    torch.manual_seed(0)
    model = randomized(HfpipeRNNForConditionalGeneration(rnn_config()))
    input_ids, attention_mask = sources
    labels = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, -100], [4, EOS, -100, -100]])
    decoder_input_ids = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, 9, EOS], [BOS, 4, EOS, PAD]])
    with torch.no_grad():
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, expected)


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
