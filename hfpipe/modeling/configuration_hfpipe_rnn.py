"""Configuration of hfpipe's recurrent encoder-decoder (Sutskever et al., 2014; Bahdanau et al., 2015;
Luong et al., 2015).

Shipped as remote code next to saved models: imports only transformers and its sibling files.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

from .seq2seq_common import special_token_problems

CELLS = ("lstm", "gru")
ATTENTIONS = ("none", "additive", "dot")


class HfpipeRNNConfig(PreTrainedConfig):
    r"""A recurrent encoder-decoder. The defaults are Bahdanau et al. (2015)'s RNNsearch: a bidirectional GRU encoder,
    a GRU decoder with additive attention, 620-wide embeddings and 1000-wide hidden states.

    Args:
        vocab_size (`int`, defaults to 30000): size of the shared source/target vocabulary.
        cell (`str`, defaults to `"gru"`): `"lstm"` or `"gru"`, for the encoder and the decoder.
        embedding_dim (`int`, defaults to 620): width of the token embeddings (one matrix for source and target).
        hidden_size (`int`, defaults to 1000): width of each recurrent state (per direction in the encoder).
        num_layers (`int`, defaults to 1): stacked recurrent layers, in the encoder and in the decoder.
        bidirectional (`bool`, defaults to `True`): whether the encoder reads the source both ways.
        attention (`str`, defaults to `"additive"`): `"none"` (the decoder sees only the encoder's final state, the
            fixed-size bottleneck of Sutskever et al.), `"additive"` (Bahdanau; its alignment model has hidden_size
            units, n' = n as in the paper) or `"dot"` (Luong; with a bidirectional encoder the encoder states are
            first projected to hidden_size so that the dot product is defined).
        dropout (`float`, defaults to 0.0): dropout on embeddings, between stacked layers and before the output.
        tie_word_embeddings (`bool`, defaults to `False`): use the embedding matrix as the output projection.
        init_std (`float`, defaults to 0.02): standard deviation of the initial linear and embedding weights.
        pad_token_id (`int`, defaults to 0), bos_token_id (`int`, defaults to 1), eos_token_id (`int`, defaults
            to 2), decoder_start_token_id (`int`, defaults to 1): special tokens.
        use_cache (`bool`, defaults to `True`): keep the decoder state between generation steps.
    """

    model_type = "hfpipe_rnn"
    attribute_map = {"num_hidden_layers": "num_layers"}

    vocab_size: int = 30000
    cell: str = "gru"
    embedding_dim: int = 620
    hidden_size: int = 1000
    num_layers: int = 1
    bidirectional: bool = True
    attention: str = "additive"
    dropout: float = 0.0
    tie_word_embeddings: bool = False
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
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.cell not in CELLS:
            problems.append(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            problems.append(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        problems += special_token_problems(self)
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))
