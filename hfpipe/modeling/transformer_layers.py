"""The layers of hfpipe's Transformer (Vaswani et al., 2017, section 3.1): the position-wise feed-forward network,
the residual connection with its LayerNorm, and the encoder and decoder layers built from them. They take plain
keyword arguments; `modeling_hfpipe_transformer.py` reads the config.

Shipped as remote code next to saved models: imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers.cache_utils import Cache

from .attention import MultiHeadAttention


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2  (section 3.3), applied to each position alike.

    Args:
        d_model: input and output width.
        ffn_dim: d_ff, the inner width.
    """

    def __init__(self, *, d_model: int, ffn_dim: int) -> None:
        super().__init__()
        self.W_1 = nn.Linear(d_model, ffn_dim)
        self.W_2 = nn.Linear(ffn_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)"""
        return self.W_2(torch.relu(self.W_1(x)))  # (batch, time, d_model)


class _ResidualNorm(nn.Module):
    """The residual connection around a sub-layer, with layer normalization after (the paper) or before (pre-norm)
    it, and dropout on the sub-layer output."""

    def __init__(self, *, d_model: int, dropout: float, norm_first: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)"""
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class HfpipeTransformerEncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network, each wrapped in a residual connection and a LayerNorm."""

    def __init__(
        self, *, d_model: int, num_heads: int, ffn_dim: int, dropout: float, attention_dropout: float, norm_first: bool
    ) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model=d_model, num_heads=num_heads, dropout=attention_dropout)
        self.self_attention_residual = _ResidualNorm(d_model=d_model, dropout=dropout, norm_first=norm_first)
        self.feed_forward = PositionwiseFeedForward(d_model=d_model, ffn_dim=ffn_dim)
        self.feed_forward_residual = _ResidualNorm(d_model=d_model, dropout=dropout, norm_first=norm_first)

    def forward(
        self, x: torch.Tensor, *, mask: torch.Tensor | None, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (batch, source, d_model), mask (batch, 1, 1, source) -> (batch, source, d_model), weights or None"""
        weights = {}

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            attended, weights["self"] = self.self_attention(h, mask=mask, need_weights=need_weights)
            return attended  # (batch, source, d_model)

        x = self.self_attention_residual(x, self_attention)
        x = self.feed_forward_residual(x, self.feed_forward)
        return x, weights["self"]  # (batch, source, d_model), (batch, heads, source, source)


class HfpipeTransformerDecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, then the feed-forward network (section 3.1)."""

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_first: bool,
        layer_idx: int,
    ) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(
            d_model=d_model, num_heads=num_heads, dropout=attention_dropout, layer_idx=layer_idx
        )
        self.self_attention_residual = _ResidualNorm(d_model=d_model, dropout=dropout, norm_first=norm_first)
        self.cross_attention = MultiHeadAttention(
            d_model=d_model, num_heads=num_heads, dropout=attention_dropout, layer_idx=layer_idx
        )
        self.cross_attention_residual = _ResidualNorm(d_model=d_model, dropout=dropout, norm_first=norm_first)
        self.feed_forward = PositionwiseFeedForward(d_model=d_model, ffn_dim=ffn_dim)
        self.feed_forward_residual = _ResidualNorm(d_model=d_model, dropout=dropout, norm_first=norm_first)

    def forward(
        self,
        x: torch.Tensor,
        encoder_output: torch.Tensor,
        *,
        self_mask: torch.Tensor | None,
        cross_mask: torch.Tensor | None,
        cache: Cache | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """
        Args:
            x: (batch, target, d_model), the new target positions.
            encoder_output: (batch, source, d_model).
            self_mask: (batch, 1, 1, cached + target) bool target padding mask, or None; causality is added here.
            cross_mask: (batch, 1, 1, source) bool source padding mask, or None.
            cache: the generation cache, updated in place.

        Returns:
            (batch, target, d_model), self-attention weights (batch, heads, target, cached + target) and
            cross-attention weights (batch, heads, target, source), or None for both.
        """
        weights = {}

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            attended, weights["self"] = self.self_attention(
                h, mask=self_mask, is_causal=True, cache=cache, need_weights=need_weights
            )
            return attended  # (batch, target, d_model)

        def cross_attention(h: torch.Tensor) -> torch.Tensor:
            attended, weights["cross"] = self.cross_attention(
                h, encoder_output, mask=cross_mask, cache=cache, need_weights=need_weights
            )
            return attended  # (batch, target, d_model)

        x = self.self_attention_residual(x, self_attention)
        x = self.cross_attention_residual(x, cross_attention)
        x = self.feed_forward_residual(x, self.feed_forward)
        return x, weights["self"], weights["cross"]
