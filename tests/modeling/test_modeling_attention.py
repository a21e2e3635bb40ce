"""hfpipe.modeling.attention against torch's attention and the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache

from hfpipe.modeling.attention import (
    AdditiveAttention,
    DotAttention,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    causal_mask,
    scaled_dot_product_attention,
    sinusoidal_table,
)

ATOL = 1e-5


def qkv(batch=2, heads=3, q_len=5, k_len=7, d_k=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, heads, q_len, d_k, generator=g),
        torch.randn(batch, heads, k_len, d_k, generator=g),
        torch.randn(batch, heads, k_len, d_k, generator=g),
    )


def key_padding(batch=2, k_len=7):
    mask = torch.ones(batch, 1, 1, k_len, dtype=torch.bool)
    mask[1, ..., 4:] = False
    return mask


@pytest.mark.parametrize(
    "case", ["no mask", "bool padding", "float padding", "causal", "scale", "bool 4d"]
)
def test_both_paths_match_torch_sdpa(case):
    q, k, v = qkv(q_len=7 if case == "causal" else 5)
    kwargs, reference = {}, {}
    if case == "bool padding":
        kwargs["mask"] = reference["attn_mask"] = key_padding()
    elif case == "float padding":
        kwargs["mask"] = reference["attn_mask"] = torch.zeros(2, 1, 1, 7).masked_fill(~key_padding(), float("-inf"))
    elif case == "causal":
        kwargs["is_causal"] = reference["is_causal"] = True
    elif case == "scale":
        kwargs["scale"] = reference["scale"] = 1.0
    elif case == "bool 4d":
        mask = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.3
        mask[..., 0] = True
        kwargs["mask"] = reference["attn_mask"] = mask
    expected = F.scaled_dot_product_attention(q, k, v, **reference)

    slow, weights = scaled_dot_product_attention(q, k, v, need_weights=True, **kwargs)
    fast, none = scaled_dot_product_attention(q, k, v, **kwargs)

    assert none is None
    torch.testing.assert_close(slow, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=ATOL, rtol=0)


def test_step_by_step_path_is_the_paper_formula():
    q, k, v = qkv()
    output, weights = scaled_dot_product_attention(q, k, v, need_weights=True)
    expected_weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    torch.testing.assert_close(weights, expected_weights, atol=ATOL, rtol=0)
    torch.testing.assert_close(output, expected_weights @ v, atol=ATOL, rtol=0)


def test_a_fully_masked_row_gives_zeros_in_both_paths_and_finite_gradients():
    q, k, v = qkv(q_len=3, k_len=4)
    q.requires_grad_(True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    slow, weights = scaled_dot_product_attention(q, k, v, mask=mask, need_weights=True)
    fast, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(slow, fast, atol=ATOL, rtol=0)
    assert torch.all(slow[:, :, 1] == 0) and torch.all(weights[:, :, 1] == 0)
    slow.sum().backward()
    assert torch.isfinite(q.grad).all()


def _torch_copy(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    theirs = nn.MultiheadAttention(ours.d_model, ours.num_heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_Q.weight, ours.W_K.weight, ours.W_V.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.W_Q.bias, ours.W_K.bias, ours.W_V.bias]))
        theirs.out_proj.weight.copy_(ours.W_O.weight)
        theirs.out_proj.bias.copy_(ours.W_O.bias)
    return theirs.eval()


@pytest.mark.parametrize("kind", ["self + padding", "masked self + padding", "cross + padding"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_multi_head_attention_matches_torch(kind, need_weights):
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model=32, num_heads=4).eval()
    theirs = _torch_copy(ours)
    x = torch.randn(3, 6, 32)
    memory = torch.randn(3, 9, 32)
    source = memory if kind.startswith("cross") else x
    keep = torch.ones(3, source.size(1), dtype=torch.bool)  # True = a real token
    keep[1, 4:] = False
    keep[2, 2:] = False
    torch_kwargs = dict(key_padding_mask=~keep)  # torch: True = ignore
    ours_kwargs = dict(mask=keep[:, None, None, :])  # ours: True = attend
    if kind.startswith("masked"):
        torch_kwargs["attn_mask"] = ~causal_mask(6, 6)
        ours_kwargs["is_causal"] = True

    expected, expected_weights = theirs(x, source, source, average_attn_weights=False, **torch_kwargs)
    output, weights = ours(
        x, memory if kind.startswith("cross") else None, need_weights=need_weights, **ours_kwargs
    )

    torch.testing.assert_close(output, expected, atol=ATOL, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights, atol=ATOL, rtol=0)
    else:
        assert weights is None


@pytest.mark.parametrize("need_weights", [False, True])
def test_causal_mask_stops_every_gradient_from_future_positions(need_weights):
    torch.manual_seed(0)
    attention = MultiHeadAttention(d_model=16, num_heads=2).eval()
    length = 6
    for t in range(length):
        x = torch.randn(2, length, 16, requires_grad=True)
        output, _ = attention(x, is_causal=True, need_weights=need_weights)
        output[:, t].sum().backward()
        assert torch.all(x.grad[:, t + 1 :] == 0), f"position {t} got gradient from the future"
        assert torch.all(x.grad[:, : t + 1].abs().sum(-1) > 0)


def test_cached_incremental_attention_equals_the_full_pass():
    torch.manual_seed(0)
    self_attention = MultiHeadAttention(d_model=16, num_heads=2, layer_idx=0).eval()
    cross_attention = MultiHeadAttention(d_model=16, num_heads=2, layer_idx=0).eval()
    x = torch.randn(2, 5, 16)
    memory = torch.randn(2, 4, 16)
    keep = torch.tensor([[True] * 4, [True, True, False, False]])[:, None, None, :]
    full = self_attention(x, is_causal=True)[0]
    full = cross_attention(full, memory, mask=keep)[0]

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    steps = []
    for t in range(5):
        h = self_attention(x[:, t : t + 1], is_causal=True, cache=cache)[0]
        steps.append(cross_attention(h, memory, mask=keep, cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)
    assert cache.get_seq_length() == 5
    assert cache.cross_attention_cache.get_seq_length(0) == 4  # projected once, not once per step

    # A prefix of two tokens, then the rest at once: the causal mask is aligned to the cached keys.
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    first = self_attention(x[:, :2], is_causal=True, cache=cache)[0]
    rest = self_attention(x[:, 2:], is_causal=True, cache=cache)[0]
    torch.testing.assert_close(torch.cat([first, rest], 1), self_attention(x, is_causal=True)[0], atol=ATOL, rtol=0)


def test_multi_head_attention_rejects_bad_arguments_with_their_values():
    with pytest.raises(ValueError, match="d_model=30, num_heads=4"):
        MultiHeadAttention(d_model=30, num_heads=4)
    attention = MultiHeadAttention(d_model=16, num_heads=2)
    with pytest.raises(ValueError, match=r"\(batch, time, 16\), got shape \(2, 3, 8\)"):
        attention(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="is_causal"):
        attention(torch.randn(2, 3, 16), torch.randn(2, 4, 16), is_causal=True)
    with pytest.raises(ValueError, match="layer_idx=None"):
        attention(torch.randn(2, 3, 16), cache=DynamicCache())
    with pytest.raises(ValueError, match="got dtype torch.int64"):
        attention(torch.randn(2, 3, 16), mask=torch.ones(2, 1, 1, 3, dtype=torch.long))
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"\(2, 3, 5, 8\) and key \(2, 3, 7, 4\)"):
        scaled_dot_product_attention(q, k[..., :4], v)


def test_sinusoidal_table_is_the_formula():
    d_model, positions = 16, 50
    table = sinusoidal_table(max_positions=positions, d_model=d_model)
    for pos in (0, 1, 7, 49):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    encoding = SinusoidalPositionalEncoding(d_model=d_model, max_positions=positions)
    assert "table" not in encoding.state_dict()  # rebuilt, never saved
    torch.testing.assert_close(encoding(3, offset=4), table[4:7])
    with pytest.raises(ValueError, match="positions 48..51 do not fit in max_position_embeddings=50"):
        encoding(4, offset=48)


def test_additive_attention_is_bahdanau():
    torch.manual_seed(0)
    attention = AdditiveAttention(query_size=6, key_size=10, attention_size=8)
    s = torch.randn(2, 6)
    h = torch.randn(2, 5, 10)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    context, alpha = attention(s, h, mask=mask)
    energies = torch.stack(
        [
            torch.stack([attention.v_a(torch.tanh(attention.W_a(s[b]) + attention.U_a(h[b, j])))[0] for j in range(5)])
            for b in range(2)
        ]
    )
    energies[1, 3:] = float("-inf")
    expected_alpha = torch.softmax(energies, dim=-1)
    torch.testing.assert_close(alpha, expected_alpha, atol=ATOL, rtol=0)
    torch.testing.assert_close(context, torch.einsum("bj,bjk->bk", expected_alpha, h), atol=ATOL, rtol=0)
    assert torch.all(alpha[1, 3:] == 0)
    projected = attention.project_keys(h)
    torch.testing.assert_close(attention(s, h, projected_keys=projected, mask=mask)[0], context)


def test_dot_attention_is_luong():
    query, keys = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    context, weights = DotAttention()(query, keys, mask=mask)
    scores = query @ keys.transpose(1, 2)
    scores[1, :, 2:] = float("-inf")
    expected = torch.softmax(scores, dim=-1)
    torch.testing.assert_close(weights, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(context, expected @ keys, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match=r"query \(2, 3, 8\) and keys \(2, 5, 4\)"):
        DotAttention()(query, keys[..., :4])
