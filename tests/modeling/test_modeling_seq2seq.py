"""What every in-house encoder-decoder does alike, tested once over the Transformer's and the RNN's variants:
save/load, generation with and without the cache, a padded row, the loss on labels, and the special-token checks.
What only one of them has is in test_modeling_transformer.py and test_modeling_rnn.py."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForSeq2SeqLM

from hfpipe.modeling import build_config
from hfpipe.modeling.attention import sinusoidal_table
from tests.modeling.conftest import BOS, EOS, PAD, VOCAB

# name -> (architecture, config overrides): the variants whose code paths differ.
MODELS = {
    "transformer": ("transformer", dict()),
    "transformer-learned-prenorm-untied": (
        "transformer", dict(positional_encoding="learned", norm_first=True, tie_word_embeddings=False,
                            scale_embedding=False),
    ),
    "transformer-copy": ("transformer", dict(norm_first=True, copy_attention=True)),
    "rnn-gru-additive-tied": ("rnn", dict(attention="additive", tie_word_embeddings=True)),
    "rnn-lstm-dot": ("rnn", dict(attention="dot", cell="lstm")),
    "rnn-lstm-none-bi-2": ("rnn", dict(attention="none", cell="lstm", num_layers=2)),
}
RNN_VARIANTS = {
    "rnn-lstm-none-bi-2": dict(cell="lstm", attention="none", bidirectional=True, num_layers=2),
    "rnn-gru-none-uni-1": dict(cell="gru", attention="none", bidirectional=False, num_layers=1),
    "rnn-gru-additive-bi-1": dict(cell="gru", attention="additive", bidirectional=True, num_layers=1),
    "rnn-lstm-additive-uni-2": dict(cell="lstm", attention="additive", bidirectional=False, num_layers=2),
    "rnn-lstm-dot-bi-1": dict(cell="lstm", attention="dot", bidirectional=True, num_layers=1),
    "rnn-gru-dot-uni-2": dict(cell="gru", attention="dot", bidirectional=False, num_layers=2),
}
# Models whose generations vary from token to token (so a broken cache would show): an untrained Transformer
# repeats one token, so it is trained first; a randomized RNN already varies.
GENERATING = ["transformer-trained", "transformer-copy-trained", *RNN_VARIANTS]
GENERATION_MODES = {"greedy": dict(), "beam": dict(num_beams=3), "sampling": dict(do_sample=True, top_k=0)}


@pytest.fixture
def build(registered, transformer_config, rnn_config, randomized):
    """name in MODELS -> a randomized model built through AutoModelForSeq2SeqLM, as the pipeline builds it."""

    def make(name: str):
        architecture, overrides = MODELS[name]
        config = (transformer_config if architecture == "transformer" else rnn_config)(**overrides)
        torch.manual_seed(0)
        return randomized(AutoModelForSeq2SeqLM.from_config(config))

    return make


@pytest.fixture(params=GENERATING)
def generating(request, rnn_config, randomized):
    if request.param == "transformer-trained":
        return request.getfixturevalue("trained")[0]
    if request.param == "transformer-copy-trained":
        return request.getfixturevalue("copy_trained")[True]
    from hfpipe.modeling.modeling_hfpipe_rnn import HfpipeRNNForConditionalGeneration

    torch.manual_seed(0)
    return randomized(HfpipeRNNForConditionalGeneration(rnn_config(**RNN_VARIANTS[request.param])))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_gives_identical_logits_and_ships_the_code(tmp_path, build, sources, name):
    model = build(name)
    model.save_pretrained(tmp_path)
    model_type = model.config.model_type
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == model_type
    assert saved["auto_map"]["AutoModelForSeq2SeqLM"] == f"modeling_{model_type}.{type(model).__name__}"
    code = {path.name for path in tmp_path.glob("*.py")}
    shipped = {f"modeling_{model_type}.py", f"configuration_{model_type}.py", "attention.py", "seq2seq_common.py"}
    if model_type == "hfpipe_transformer":
        shipped |= {"copy_attention.py", "transformer_layers.py"}
    assert code == shipped

    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)
    assert (loaded.lm_head.weight is loaded.get_input_embeddings().weight) is loaded.config.tie_word_embeddings
    input_ids, attention_mask = sources
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4))
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        actual = loaded(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items())
    # Same weights; a reloaded 2-layer LSTM differs in the 7th digit (its weights are laid out anew).
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-6, rtol=0)
    if getattr(loaded.config, "positional_encoding", None) == "sinusoidal":  # not saved: rebuilt from the formula
        formula = sinusoidal_table(max_positions=32, d_model=32)
        assert torch.equal(loaded.model.encoder.positions.table, formula)
        assert torch.equal(loaded.model.decoder.positions.table, formula)


@pytest.mark.parametrize("mode", GENERATION_MODES)
def test_cached_and_uncached_generation_give_the_same_tokens(generating, sources, mode):
    input_ids, attention_mask = sources
    kwargs = dict(attention_mask=attention_mask, max_new_tokens=10, min_new_tokens=10, **GENERATION_MODES[mode])
    torch.manual_seed(1)
    cached = generating.generate(input_ids, use_cache=True, **kwargs)
    torch.manual_seed(1)
    uncached = generating.generate(input_ids, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert len(set(cached.flatten().tolist())) > 3  # the output varies, so a broken cache would show


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_a_padded_row_generates_what_it_generates_alone(generating, sources, mode):
    input_ids, attention_mask = sources  # for a copying model: padding is never copied
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, **GENERATION_MODES[mode])
    batch = generating.generate(input_ids, attention_mask=attention_mask, **kwargs)
    alone = generating.generate(input_ids[2:, :3], **kwargs)
    assert torch.equal(batch[2:], alone)
    with torch.no_grad():
        torch.testing.assert_close(
            generating(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=batch).logits[2:],
            generating(input_ids=input_ids[2:, :3], decoder_input_ids=alone).logits,
            atol=1e-5,
            rtol=0,
        )


@pytest.mark.parametrize("name", MODELS)
def test_labels_give_the_shifted_cross_entropy(build, sources, name):
    model = build(name)
    input_ids, attention_mask = sources
    labels = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, -100], [4, EOS, -100, -100]])
    decoder_input_ids = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, 9, EOS], [BOS, 4, EOS, PAD]])
    assert torch.equal(model.prepare_decoder_input_ids_from_labels(labels), decoder_input_ids)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
        summed = model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, num_items_in_batch=torch.tensor(18)
        ).loss
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(summed, expected * 9 / 18)  # 9 labelled tokens, normalised by 18
    assert out.cache is None


@pytest.mark.parametrize("name", MODELS)
def test_padding_to_a_multiple_changes_neither_loss_nor_gradients(build, name):
    """`train.pad_to_multiple_of` pads batches past their longest row (fewer kernel shapes); the extra source
    positions are masked and the extra labels ignored, so the loss and every gradient are those of the tight batch."""
    from hfpipe.pipeline.batching import Collator

    generator = torch.Generator().manual_seed(1)
    rows = [{"input_ids": torch.randint(3, VOCAB, (n,), generator=generator).tolist() + [EOS],
             "labels": torch.randint(3, VOCAB, (m,), generator=generator).tolist() + [EOS]}
            for n, m in [(6, 4), (3, 5), (1, 1)]]
    results = []
    for multiple in (1, 8):
        batch = Collator(PAD, pad_to_multiple_of=multiple)(rows)
        assert batch["input_ids"].shape[1] == (7 if multiple == 1 else 8)
        assert batch["labels"].shape[1] == (6 if multiple == 1 else 8)
        model = build(name).train()
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (tight_loss, tight_grads), (padded_loss, padded_grads) = results
    torch.testing.assert_close(padded_loss, tight_loss)
    assert tight_grads.keys() == padded_grads.keys() and tight_grads
    for key, grad in tight_grads.items():
        torch.testing.assert_close(padded_grads[key], grad, msg=key)


@pytest.mark.parametrize("architecture", ["hfpipe-transformer", "hfpipe-rnn"])
def test_special_tokens_are_checked_with_their_values(architecture):
    tokens = dict(vocab_size=VOCAB, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS)
    with pytest.raises(ValueError, match=rf"pad_token_id=13 is outside the vocabulary \(vocab_size={VOCAB}\)"):
        build_config(architecture, **{**tokens, "pad_token_id": 13})
    with pytest.raises(ValueError, match="decoder_start_token_id must be set"):
        build_config(architecture, **{**tokens, "decoder_start_token_id": None})
    with pytest.raises(ValueError, match="pad_token_id must be set"):
        build_config(architecture, **{**tokens, "pad_token_id": None})
    config = build_config(architecture, **tokens)
    with pytest.raises(ValueError, match="is_encoder_decoder must be True for this model, got False"):
        type(config)(**{**tokens, "is_encoder_decoder": False})
