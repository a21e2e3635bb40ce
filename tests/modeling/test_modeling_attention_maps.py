"""hfpipe.pipeline.attention_maps on tiny in-house models."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hfpipe.errors import ModelError
from hfpipe.modeling.modeling_hfpipe_rnn import HfpipeRNNForConditionalGeneration
from hfpipe.modeling.modeling_hfpipe_transformer import HfpipeTransformerForConditionalGeneration
from hfpipe.pipeline.attention_maps import plot_attention_maps

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WORDS = ["<pad>", "<s>", "</s>", "<unk>", "a", "b", "c", "d", "e", "f", "g", "h", "$x"]  # 13 = VOCAB in conftest


@pytest.fixture(scope="module")
def tokenizer():
    word_level = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=word_level, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_transformer_gets_one_grid_per_decoder_layer(tmp_path, tokenizer, transformer_config, randomized):
    torch.manual_seed(0)
    model = randomized(HfpipeTransformerForConditionalGeneration(transformer_config()))
    model.train()
    paths = plot_attention_maps(model, tokenizer, "a b c $x d", tmp_path / "maps", max_new_tokens=5)
    assert [path.name for path in paths] == ["cross_attention_layer_1.png", "cross_attention_layer_2.png"]
    assert all(_is_png(path) for path in paths)
    assert model.training  # put back as it was
    assert not list((tmp_path / "maps").glob(".*"))  # no temporary files left


def test_rnn_gets_its_alignment(tmp_path, tokenizer, rnn_config, randomized):
    torch.manual_seed(0)
    model = randomized(HfpipeRNNForConditionalGeneration(rnn_config(attention="additive")))
    paths = plot_attention_maps(model, tokenizer, "a b c", tmp_path, max_new_tokens=4)
    assert [path.name for path in paths] == ["alignment.png"]
    assert _is_png(paths[0])


def test_a_model_without_cross_attention_is_a_model_error(tmp_path, tokenizer, rnn_config):
    model = HfpipeRNNForConditionalGeneration(rnn_config(attention="none"))
    with pytest.raises(ModelError, match="no cross-attention"):
        plot_attention_maps(model, tokenizer, "a b c", tmp_path, max_new_tokens=3)
    assert not list(tmp_path.iterdir())


def test_copying_transformer_also_gets_its_copy_distribution_and_gate(tmp_path, tokenizer, copy_trained):
    # Trained to copy (an untrained model repeats one token, which would not show rows drawn beside the wrong token).
    model = copy_trained[True]
    text = "c a f $x b a"  # "$x" never occurs in its training data
    paths = plot_attention_maps(model, tokenizer, text, tmp_path, max_new_tokens=8)
    assert [path.name for path in paths] == [
        "cross_attention_layer_1.png", "cross_attention_layer_2.png", "copy_distribution.png", "copy_distribution.json",
    ]
    assert all(_is_png(path) for path in paths[:3])
    assert not list(tmp_path.glob(".*"))
    record = json.loads(paths[3].read_text(encoding="utf-8"))

    source_ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert record["source_tokens"] == tokenizer.convert_ids_to_tokens(source_ids[0].tolist())  # "$x" as it is
    with torch.no_grad():
        sequences = model.generate(source_ids, max_new_tokens=8, do_sample=False, num_beams=1)
    generated = sequences[0, 1:].tolist()
    assert len(set(generated)) >= 4, generated  # it copies: varied tokens, so a row off by one would show
    assert record["generated_tokens"] == tokenizer.convert_ids_to_tokens(generated)
    weights = torch.tensor(record["copy_weights"], dtype=torch.float64)  # (generated, source)
    gate_logits = torch.tensor(record["gate_logits"], dtype=torch.float64)
    assert weights.shape == (len(generated), source_ids.size(1)) and gate_logits.shape == (len(generated),)
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(generated), dtype=torch.float64), atol=1e-6, rtol=0)
    assert weights.min() >= 0
    generate_probability = torch.tensor(record["generate_probability"], dtype=torch.float64)
    assert torch.all((generate_probability > 0) & (generate_probability < 1))
    torch.testing.assert_close(generate_probability, torch.sigmoid(gate_logits))

    # Mixed by the formula with the model's vocabulary distribution, the recorded numbers pick each generated token
    # (greedy): so each row belongs to the token it is drawn beside.
    with torch.no_grad():
        out = model(input_ids=source_ids, decoder_input_ids=sequences[:, :-1], output_hidden_states=True)
        vocab = model.lm_head(out.decoder_hidden_states[-1])[0].double().softmax(-1)  # (generated, vocab)
    p_gen = generate_probability[:, None]
    mixed = (p_gen * vocab).index_add(1, source_ids[0], (1 - p_gen) * weights)  # (generated, vocab)
    assert mixed.argmax(-1).tolist() == generated
    torch.testing.assert_close(mixed.log(), out.logits[0].double(), atol=1e-4, rtol=1e-5)
