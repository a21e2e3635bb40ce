"""Attention layers, written from the equations of the papers that introduced them.

* Scaled dot-product and multi-head attention, and sinusoidal positional encodings: Vaswani et al., 2017,
  "Attention Is All You Need", sections 3.2.1, 3.2.2 and 3.5.
* Additive attention for an RNN decoder: Bahdanau, Cho and Bengio, 2015, "Neural Machine Translation by Jointly
  Learning to Align and Translate", section 3.1 and appendix A.1.2.
* Dot-product ("dot") attention for an RNN decoder: Luong, Pham and Manning, 2015, "Effective Approaches to
  Attention-based Neural Machine Translation", section 3.1.

This file is shipped as remote code next to saved models: it imports only torch and transformers.

Mask convention (the same as `torch.nn.functional.scaled_dot_product_attention`): a boolean mask is True where a
query may attend to a key; a floating-point mask is added to the scores (0 to keep, -inf or a large negative value
to drop). Note that `torch.nn.MultiheadAttention` uses the opposite boolean convention (True = masked out).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache


def _check_attention_inputs(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, is_causal: bool
) -> None:
    if query.dim() < 2 or query.dim() != key.dim() or key.dim() != value.dim():
        raise ValueError(
            "query, key and value must have the same number of dimensions, at least 2: got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}"
        )
    if query.size(-1) != key.size(-1):
        raise ValueError(
            f"query and key must share their last dimension d_k: got query {tuple(query.shape)} and key "
            f"{tuple(key.shape)}"
        )
    if key.size(-2) != value.size(-2):
        raise ValueError(
            f"key and value must have the same length (dimension -2): got key {tuple(key.shape)} and value "
            f"{tuple(value.shape)}"
        )
    if mask is not None:
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise ValueError(f"mask must be a bool or floating-point tensor, got dtype {mask.dtype}")
        if is_causal:
            raise ValueError("pass either mask or is_causal=True, not both (fold the causal pattern into the mask)")
    if is_causal and query.size(-2) != key.size(-2):
        raise ValueError(
            "is_causal=True needs as many queries as keys (use an explicit mask for a cache): got "
            f"{query.size(-2)} queries and {key.size(-2)} keys"
        )


def causal_mask(query_length: int, key_length: int, *, device: torch.device | None = None) -> torch.Tensor:
    """The decoder's "prevent leftward information flow" mask (section 3.2.3), aligned to the end of the keys.

    Query i is the token at absolute position `key_length - query_length + i`, so with a cache of
    `key_length - query_length` earlier tokens it may attend to keys 0 .. key_length - query_length + i.

    Returns:
        A bool tensor of shape (query_length, key_length), True where attention is allowed.
    """
    if query_length > key_length:
        raise ValueError(f"causal_mask needs query_length <= key_length, got {query_length} > {key_length}")
    ones = torch.ones(query_length, key_length, dtype=torch.bool, device=device)
    return torch.tril(ones, diagonal=key_length - query_length)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V  (Vaswani et al., 2017, equation 1).

    The paper's steps are run one by one when the weights are wanted; otherwise the same computation goes through
    `torch.nn.functional.scaled_dot_product_attention`, which fuses them (the two paths agree to 1e-5).

    Args:
        query: (batch, heads, query_length, d_k)
        key: (batch, heads, key_length, d_k)
        value: (batch, heads, key_length, d_v)
        mask: broadcastable to (batch, heads, query_length, key_length); bool (True = may attend) or float (added to
            the scores before the softmax).
        is_causal: query i attends to keys 0..i only; needs query_length == key_length and no `mask`.
        scale: the factor applied to Q Kᵀ; None means the paper's 1/√d_k (T5, for one, uses 1).
        dropout_p: dropout on the attention weights, applied only when `training` is True.
        need_weights: also return the attention weights (runs the step-by-step path).
        training: whether dropout is active.

    Returns:
        output (batch, heads, query_length, d_v) and weights (batch, heads, query_length, key_length) or None.
        A query row whose keys are all masked out gets zero weights and a zero output, as in torch.
    """
    _check_attention_inputs(query, key, value, mask, is_causal)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    return _attention(
        query, key, value, mask=mask, is_causal=is_causal, scale=scale, dropout_p=dropout_p if training else 0.0,
        need_weights=need_weights,
    )


def _attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    is_causal: bool,
    scale: float | None,
    dropout_p: float,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`scaled_dot_product_attention` without its argument checks, for callers whose inputs are right by
    construction (`MultiHeadAttention`, which checks its own at its entry): they ran once per layer at every
    decoding step. `dropout_p` is the rate to apply (0 outside training)."""
    if not need_weights:
        output = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
        )
        return output, None

    d_k = query.size(-1)
    scale = 1.0 / math.sqrt(d_k) if scale is None else scale
    # Q Kᵀ, scaled.
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale  # (batch, heads, query_length, key_length)
    # Mask.
    if is_causal:
        mask = causal_mask(query.size(-2), key.size(-2), device=query.device)
    fully_masked = None
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
        # A row with every key masked would give softmax(-inf, ..., -inf) = NaN: give it zero weights instead.
        fully_masked = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (batch, heads, query_length, 1)
        scores = scores.masked_fill(fully_masked, 0.0)
    # Softmax over the keys.
    weights = torch.softmax(scores, dim=-1)  # (batch, heads, query_length, key_length)
    if fully_masked is not None:
        weights = weights.masked_fill(fully_masked, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    # Weighted sum of the values.
    output = torch.matmul(weights, value)  # (batch, heads, query_length, d_v)
    return output, weights


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    One class serves the three uses of section 3.2.3: encoder self-attention, decoder masked self-attention
    (`is_causal=True`) and encoder-decoder attention (`key_value` = the encoder output). d_k = d_v = d_model / h;
    the h per-head projections are stored stacked in one (d_model, d_model) matrix each.

    With a cache (a `transformers` `EncoderDecoderCache` as built by `generate()`), self-attention appends this
    step's keys and values to layer `layer_idx` of the self-attention cache and attends over all of them;
    cross-attention projects the encoder output once, on the first step, and reuses it afterwards.

    Args:
        d_model: model width (the size of the input and output vectors).
        num_heads: h, the number of heads; must divide d_model.
        dropout: dropout on the attention weights (the paper uses none; applied in training only).
        bias: whether the four projections have a bias.
        layer_idx: this layer's index in a cache; needed only when a cache is passed.
    """

    def __init__(
        self, *, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True, layer_idx: int | None = None
    ) -> None:
        super().__init__()
        if d_model <= 0 or num_heads <= 0 or d_model % num_heads != 0:
            raise ValueError(
                f"d_model must be a positive multiple of num_heads: got d_model={d_model}, num_heads={num_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.dropout = dropout
        self.layer_idx = layer_idx
        self.W_Q = nn.Linear(d_model, d_model, bias=bias)
        self.W_K = nn.Linear(d_model, d_model, bias=bias)
        self.W_V = nn.Linear(d_model, d_model, bias=bias)
        self.W_O = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.d_k).transpose(1, 2)  # (batch, heads, time, d_k)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: Cache | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            query: (batch, query_length, d_model), the sequence that asks (and, for self-attention, also answers).
            key_value: (batch, key_length, d_model), the sequence attended to in cross-attention (the encoder
                output); None for self-attention.
            mask: broadcastable to (batch, heads, query_length, key_length), e.g. a key padding mask of shape
                (batch, 1, 1, key_length); bool (True = may attend) or float (added to the scores). With a cache,
                key_length counts the cached keys too.
            is_causal: masked self-attention: each position attends only to itself and earlier positions
                (including the cached ones).
            cache: an `EncoderDecoderCache` (self- and cross-attention parts) or, for self-attention only, a
                `Cache`; updated in place.
            need_weights: also return the attention weights.

        Returns:
            output (batch, query_length, d_model) and weights (batch, heads, query_length, key_length) or None.
        """
        if query.dim() != 3 or query.size(-1) != self.d_model:
            raise ValueError(f"query must be (batch, time, {self.d_model}), got shape {tuple(query.shape)}")
        is_cross_attention = key_value is not None
        if is_cross_attention:
            if key_value.dim() != 3 or key_value.size(-1) != self.d_model or key_value.size(0) != query.size(0):
                raise ValueError(
                    f"key_value must be (batch={query.size(0)}, time, {self.d_model}), got shape "
                    f"{tuple(key_value.shape)}"
                )
            if is_causal:
                raise ValueError("is_causal=True is for self-attention; it cannot be used with key_value")
        if mask is not None and mask.dtype != torch.bool and not mask.is_floating_point():
            raise ValueError(f"mask must be a bool or floating-point tensor, got dtype {mask.dtype}")
        batch, query_length, _ = query.shape

        Q = self._split_heads(self.W_Q(query))  # (batch, heads, query_length, d_k)

        layer_cache = self._layer_cache(cache, is_cross_attention)
        if is_cross_attention and layer_cache is not None and cache.is_updated.get(self.layer_idx, False):
            # The encoder output does not change during generation: its keys and values were cached on step one.
            K = layer_cache.layers[self.layer_idx].keys  # (batch, heads, key_length, d_k)
            V = layer_cache.layers[self.layer_idx].values  # (batch, heads, key_length, d_k)
        else:
            source = key_value if is_cross_attention else query
            K = self._split_heads(self.W_K(source))  # (batch, heads, new_key_length, d_k)
            V = self._split_heads(self.W_V(source))  # (batch, heads, new_key_length, d_k)
            if layer_cache is not None:
                K, V = layer_cache.update(K, V, self.layer_idx)  # (batch, heads, key_length, d_k)
                if is_cross_attention:
                    cache.is_updated[self.layer_idx] = True
        key_length = K.size(2)

        sdpa_is_causal = False
        if is_causal and query_length > 1:
            if mask is None and query_length == key_length:
                sdpa_is_causal = True
            else:
                allowed = causal_mask(query_length, key_length, device=query.device)  # (query_length, key_length)
                if mask is None:
                    mask = allowed
                elif mask.dtype == torch.bool:
                    mask = mask & allowed  # (batch, heads or 1, query_length, key_length)
                else:
                    mask = mask.masked_fill(~allowed, float("-inf"))

        output, weights = _attention(
            Q,
            K,
            V,
            mask=mask,
            is_causal=sdpa_is_causal,
            scale=None,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )  # (batch, heads, query_length, d_k)
        output = output.transpose(1, 2).reshape(batch, query_length, self.d_model)  # Concat(head_1..head_h)
        return self.W_O(output), weights  # (batch, query_length, d_model)

    def _layer_cache(self, cache: Cache | None, is_cross_attention: bool) -> Cache | None:
        if cache is None:
            return None
        if self.layer_idx is None:
            raise ValueError("MultiHeadAttention was built with layer_idx=None, so it cannot use a cache")
        if isinstance(cache, EncoderDecoderCache):
            return cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
        if is_cross_attention:
            raise ValueError(
                "cross-attention needs an EncoderDecoderCache to keep the encoder keys apart, got "
                f"{type(cache).__name__}"
            )
        return cache


def sinusoidal_table(*, max_positions: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i / d_model)), PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model)).

    Returns:
        A float32 tensor of shape (max_positions, d_model), computed in float64.
    """
    if max_positions <= 0 or d_model <= 0 or d_model % 2 != 0:
        raise ValueError(
            f"need max_positions > 0 and an even d_model > 0, got max_positions={max_positions}, d_model={d_model}"
        )
    position = torch.arange(max_positions, dtype=torch.float64).unsqueeze(1)  # (max_positions, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model / 2,)
    angle = position / torch.pow(10000.0, two_i / d_model)  # (max_positions, d_model / 2)
    table = torch.empty(max_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """The fixed positional encodings of section 3.5, added to the token embeddings.

    The table is a non-persistent buffer: it is never saved, and `_init_weights` of the models rebuilds it with
    `sinusoidal_table` (so it is right after `from_pretrained`, which creates modules on the meta device).

    Args:
        d_model: model width (even).
        max_positions: the longest sequence that can be encoded.
    """

    def __init__(self, *, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_positions = max_positions
        self.register_buffer("table", sinusoidal_table(max_positions=max_positions, d_model=d_model), persistent=False)

    def forward(self, length: int, *, offset: int = 0) -> torch.Tensor:
        """
        Args:
            length: number of consecutive positions.
            offset: the first position (the number of tokens already in a cache).

        Returns:
            (length, d_model): the encodings of positions offset .. offset + length - 1.
        """
        _check_positions(length, offset, self.max_positions)
        return self.table[offset : offset + length]


class PositionTable(nn.Embedding):
    """The (max_positions, d_model) table of `LearnedPositionalEmbedding`: an `nn.Embedding` that a model's
    `_init_weights` can tell apart from token embeddings (positions start at another scale)."""


class LearnedPositionalEmbedding(nn.Module):
    """Learned positional embeddings, the alternative of section 3.5 / table 3 row (E): one trained vector per position.

    Args:
        d_model: model width.
        max_positions: the longest sequence that can be encoded.
    """

    def __init__(self, *, d_model: int, max_positions: int) -> None:
        super().__init__()
        if max_positions <= 0 or d_model <= 0:
            raise ValueError(f"need max_positions > 0 and d_model > 0, got {max_positions} and {d_model}")
        self.max_positions = max_positions
        self.embedding = PositionTable(max_positions, d_model)

    def forward(self, length: int, *, offset: int = 0) -> torch.Tensor:
        """Returns (length, d_model): the embeddings of positions offset .. offset + length - 1."""
        _check_positions(length, offset, self.max_positions)
        return self.embedding.weight[offset : offset + length]


def _check_positions(length: int, offset: int, max_positions: int) -> None:
    if offset < 0 or length < 0 or offset + length > max_positions:
        raise ValueError(
            f"positions {offset}..{offset + length - 1} do not fit in max_position_embeddings={max_positions}: "
            "use shorter sequences or a config with a larger max_position_embeddings"
        )


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015)'s alignment model: e_ij = v_aᵀ tanh(W_a s_{i-1} + U_a h_j), α_ij = softmax_j(e_ij),
    c_i = Σ_j α_ij h_j.

    U_a h_j does not depend on the decoder step, so `project_keys` computes it once per source sentence.

    Args:
        query_size: size of the decoder state s_{i-1}.
        key_size: size of an annotation h_j (2 × hidden for a bidirectional encoder).
        attention_size: n', the width of the alignment model's hidden layer.
    """

    def __init__(self, *, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        if min(query_size, key_size, attention_size) <= 0:
            raise ValueError(
                f"sizes must be positive: query_size={query_size}, key_size={key_size}, "
                f"attention_size={attention_size}"
            )
        self.W_a = nn.Linear(query_size, attention_size, bias=False)
        self.U_a = nn.Linear(key_size, attention_size, bias=True)
        self.v_a = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """(batch, source_length, key_size) -> U_a h_j, (batch, source_length, attention_size)."""
        return self.U_a(keys)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        *,
        projected_keys: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            query: (batch, query_size), the decoder state s_{i-1}.
            keys: (batch, source_length, key_size), the annotations h_j.
            projected_keys: (batch, source_length, attention_size), `project_keys(keys)` if already computed.
            mask: (batch, source_length) bool, True for real source tokens.

        Returns:
            context c_i (batch, key_size) and weights α_i (batch, source_length).
        """
        if projected_keys is None:
            projected_keys = self.project_keys(keys)  # (batch, source_length, attention_size)
        hidden = torch.tanh(self.W_a(query).unsqueeze(1) + projected_keys)  # (batch, source_length, attention_size)
        energies = self.v_a(hidden).squeeze(-1)  # (batch, source_length)
        return _weighted_sum(energies, keys, mask)


class DotAttention(nn.Module):
    """Luong et al. (2015)'s "dot" global attention: score(h_t, h̄_s) = h_tᵀ h̄_s, a_t = softmax(score),
    c_t = Σ_s a_t(s) h̄_s. It has no parameters; the query and the keys must have the same size."""

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, *, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            query: (batch, target_length, size), the decoder states h_t.
            keys: (batch, source_length, size), the encoder states h̄_s.
            mask: (batch, source_length) bool, True for real source tokens.

        Returns:
            contexts c_t (batch, target_length, size) and weights (batch, target_length, source_length).
        """
        if query.size(-1) != keys.size(-1):
            raise ValueError(
                f"dot attention needs queries and keys of one size: got query {tuple(query.shape)} and keys "
                f"{tuple(keys.shape)}"
            )
        scores = torch.bmm(query, keys.transpose(1, 2))  # (batch, target_length, source_length)
        if mask is not None:
            mask = mask.unsqueeze(1)  # (batch, 1, source_length)
        return _weighted_sum(scores, keys, mask)


def _weighted_sum(
    scores: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax over the last axis of `scores` (..., source_length), then the weighted sum of `keys`."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (batch, [target_length,] source_length)
    if weights.dim() == 2:
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # (batch, key_size)
    else:
        context = torch.bmm(weights, keys)  # (batch, target_length, key_size)
    return context, weights


def hfpipe_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`scaled_dot_product_attention` behind the signature of transformers' `AttentionInterface`.

    Registered as "hfpipe" by `hfpipe.modeling.register_attention_interface()`, so a pretrained model built with
    `attn_implementation="hfpipe"` runs this code.

    Args:
        module: the calling attention layer (read for `training`, `is_causal`, `num_key_value_groups`, `config`).
        query: (batch, heads, query_length, d_k)
        key: (batch, kv_heads, key_length, d_k)
        value: (batch, kv_heads, key_length, d_v)
        attention_mask: (batch, 1, query_length, key_length), float (the mask "hfpipe" registers with
            `AttentionMaskInterface`, 0 / dtype-min) or bool (True = may attend); None for no mask.
        scaling: factor on Q Kᵀ (None = 1/√d_k).
        dropout: attention-weight dropout (the caller passes 0 outside training).
        position_bias: (batch or 1, heads, query_length, key_length), added to the scores (T5's relative bias).
        is_causal: overrides `module.is_causal` when there is no mask.

    Returns:
        output (batch, query_length, heads, d_v) and weights (batch, heads, query_length, key_length), or None
        when `output_attentions` is off.
    """
    groups = query.size(1) // key.size(1)
    if groups * key.size(1) != query.size(1):
        raise ValueError(f"{query.size(1)} query heads cannot share {key.size(1)} key/value heads")
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)  # (batch, heads, key_length, d_k)
        value = value.repeat_interleave(groups, dim=1)  # (batch, heads, key_length, d_v)

    mask = attention_mask
    if mask is None:
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
        if causal and query.size(2) > 1:
            mask = causal_mask(query.size(2), key.size(2), device=query.device)
    if position_bias is not None:
        if mask is None:
            mask = position_bias
        elif mask.dtype == torch.bool:
            mask = position_bias.masked_fill(~mask, float("-inf"))
        else:
            mask = position_bias + mask

    need_weights = kwargs.get("output_attentions")
    if need_weights is None:
        need_weights = getattr(getattr(module, "config", None), "output_attentions", False)
    output, weights = scaled_dot_product_attention(
        query,
        key,
        value,
        mask=mask,
        scale=scaling,
        dropout_p=dropout,
        need_weights=bool(need_weights),
        training=module.training,
    )  # (batch, heads, query_length, d_v)
    return output.transpose(1, 2).contiguous(), weights
