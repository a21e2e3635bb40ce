"""hfpipe.pipeline.attention_maps on tiny in-house models."""

from __future__ import annotations

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
