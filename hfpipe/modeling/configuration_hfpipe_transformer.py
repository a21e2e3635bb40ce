"""Configuration of hfpipe's Transformer (Vaswani et al., 2017, "Attention Is All You Need").

Shipped as remote code next to saved models: imports only transformers and its sibling files.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

from .seq2seq_common import special_token_problems

POSITIONAL_ENCODINGS = ("sinusoidal", "learned")


class HfpipeTransformerConfig(PreTrainedConfig):
    r"""The encoder-decoder Transformer. The defaults are the paper's base model (table 3, "base").

    Args:
        vocab_size (`int`, defaults to 37000): size of the shared source/target vocabulary (the paper's byte-pair
            vocabulary for English-German).
        d_model (`int`, defaults to 512): width of every layer's input and output.
        encoder_layers (`int`, defaults to 6): N, encoder layers.
        decoder_layers (`int`, defaults to 6): N, decoder layers.
        num_heads (`int`, defaults to 8): h, attention heads per layer; d_k = d_v = d_model / h.
        ffn_dim (`int`, defaults to 2048): d_ff, inner width of the position-wise feed-forward networks.
        dropout (`float`, defaults to 0.1): P_drop, on each sub-layer output and on embeddings + positions.
        attention_dropout (`float`, defaults to 0.0): dropout on the attention weights (not in the paper).
        positional_encoding (`str`, defaults to `"sinusoidal"`): `"sinusoidal"` (section 3.5) or `"learned"`.
        max_position_embeddings (`int`, defaults to 512): the longest source or target sequence.
        norm_first (`bool`, defaults to `False`): False is the paper's post-norm, LayerNorm(x + Sublayer(x));
            True is pre-norm, x + Sublayer(LayerNorm(x)), with a final LayerNorm after each stack.
        scale_embedding (`bool`, defaults to `True`): multiply the embeddings by √d_model (section 3.4).
        tie_word_embeddings (`bool`, defaults to `True`): use the (shared source/target) embedding matrix as the
            pre-softmax projection too (section 3.4). The encoder and decoder always share one embedding.
        copy_attention (`bool`, defaults to `False`): add a copy mechanism (the pointer-generator of See et al.,
            2017, "Get To The Point"): each output step mixes the vocabulary distribution with an attention
            distribution over the source tokens, weighted by a learned gate, so the decoder can copy source tokens
            (names, numbers, the words a summary reuses) before it has learnt to generate them. Needs the shared
            source/target vocabulary this model always has. The logits are then log-probabilities.
        init_std (`float`, defaults to 0.02): standard deviation of the initial linear weights; embeddings start
            with standard deviation d_model ** -0.5.
        pad_token_id (`int`, defaults to 0), bos_token_id (`int`, defaults to 1), eos_token_id (`int`, defaults
            to 2), decoder_start_token_id (`int`, defaults to 1): special tokens; the decoder input is the target
            shifted right behind `decoder_start_token_id`.
        use_cache (`bool`, defaults to `True`): keep keys and values of earlier steps during generation.
    """

    model_type = "hfpipe_transformer"
    # num_hidden_layers sizes the generation cache, which holds the decoder layers.
    attribute_map = {
        "hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "decoder_layers",
    }

    vocab_size: int = 37000
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.0
    positional_encoding: str = "sinusoidal"
    max_position_embeddings: int = 512
    norm_first: bool = False
    scale_embedding: bool = True
    tie_word_embeddings: bool = True
    copy_attention: bool = False
    init_std: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    use_cache: bool = True
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        problems = []
        for name in ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "num_heads", "ffn_dim",
                     "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive int, got {value!r}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                problems.append(f"{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.copy_attention, bool):
            problems.append(f"copy_attention must be true or false, got {self.copy_attention!r}")
        if self.positional_encoding not in POSITIONAL_ENCODINGS:
            problems.append(
                f"positional_encoding must be one of {POSITIONAL_ENCODINGS}, got {self.positional_encoding!r}"
            )
        if not problems and self.d_model % self.num_heads != 0:
            problems.append(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if not problems and self.positional_encoding == "sinusoidal" and self.d_model % 2 != 0:
            problems.append(f"sinusoidal positions need an even d_model, got {self.d_model}")
        problems += special_token_problems(self)
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))
