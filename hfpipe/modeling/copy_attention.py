"""Copy attention: the pointer-generator output layer (See et al., 2017, "Get To The Point", section 2.2) over a
Transformer decoder, mixing the vocabulary distribution with an attention distribution over the source tokens.

Shipped as remote code next to saved models: imports only torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mix_log_probs(
    vocab_logits: torch.Tensor, gate_logits: torch.Tensor, copy_weights: torch.Tensor, source_ids: torch.Tensor
) -> torch.Tensor:
    """log P(w) = logaddexp(log σ(g) + log_softmax(vocab)(w), log σ(−g) + log Σ_{s: x_s = w} a_s), in float32.

    Mixed in log space so that a token the model finds very unlikely keeps its true log-probability (and a
    gradient) rather than a floor. Only the (at most `source`) token ids that occur in the source get the copy term;
    every other entry is log σ(g) + log_softmax(vocab): three full-vocabulary float32 tensors (log_softmax, the
    sum, the scatter) where the probability-space formula made five.

    Args:
        vocab_logits: (batch, target, vocab), the pre-softmax projection of the decoder states.
        gate_logits: (batch, target, 1), g: σ(g) is the probability of generating rather than copying.
        copy_weights: (batch, target, source), the copy attention a (rows sum to 1; 0 at source padding).
        source_ids: (batch, source) token ids x_s.

    Returns:
        (batch, target, vocab) float32 log-probabilities.
    """
    gate_logits = gate_logits.float()
    vocab_logits = vocab_logits.float()
    # (log_softmax's fused kernel, forward and backward, is a third faster than logits − logsumexp on CPU.)
    log_probs = vocab_logits.log_softmax(dim=-1) + F.logsigmoid(gate_logits)  # (batch, target, vocab)
    index = source_ids[:, None, :].expand(-1, log_probs.size(1), -1)  # (batch, target, source)
    # a_s summed over every source position with the same token: the copy probability of x_s's token.
    same_token = source_ids[:, :, None] == source_ids[:, None, :]  # (batch, source, source)
    with torch.autocast(copy_weights.device.type, enabled=False):  # probabilities near 0 need float32
        copy_probs = copy_weights.float() @ same_token.float()  # (batch, target, source)
    copyable = copy_probs > 0  # False at source padding (and where the attention underflowed to 0)
    log_copy = torch.where(copyable, copy_probs.where(copyable, 1.0).log(), 0.0) + F.logsigmoid(-gate_logits)
    generated = log_probs.gather(-1, index)  # (batch, target, source)
    # logaddexp(x, −inf) is x, but its backward is NaN when x is −inf too: uncopyable positions skip it.
    mixed = torch.where(copyable, torch.logaddexp(generated, log_copy), generated)
    # A token that occurs twice in the source is written twice with the same value; only its first occurrence
    # carries the gradient, or the gradient would count it twice.
    first = _first_occurrence(source_ids)[:, None, :]  # (batch, 1, source)
    mixed = torch.where(first, mixed, mixed.detach())
    return log_probs.scatter(-1, index, mixed)  # (batch, target, vocab)


def _first_occurrence(source_ids: torch.Tensor) -> torch.Tensor:
    """(batch, source) -> (batch, source) bool, True where the token does not occur earlier in its row."""
    source = source_ids.size(1)
    same = source_ids[:, :, None] == source_ids[:, None, :]  # (batch, source, source)
    earlier = torch.ones(source, source, dtype=torch.bool, device=source_ids.device).tril(diagonal=-1)
    return ~(same & earlier).any(dim=-1)


class CopyGenerator(nn.Module):
    """The pointer-generator output layer:

        a_t = softmax((q(h_t) / √d_model) · k(e_s))            attention over the source positions s
        c_t = Σ_s a_t,s e_s                                    its context vector
        p_gen = σ(w · [h_t; c_t] + b)                          generate (1) or copy (0)
        P(w) = p_gen P_vocab(w) + (1 − p_gen) Σ_{s: x_s = w} a_t,s

    One attention head of its own (not an average of the decoder's cross-attention heads) so that copying does not
    constrain what those heads learn. Source and target share one vocabulary, so a source position adds its weight
    to its own token id.

    Args:
        d_model: width of the decoder states and encoder outputs.
    """

    def __init__(self, *, d_model: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.gate = nn.Linear(2 * d_model, 1)
        self.scale = d_model**-0.5

    def project_keys(self, encoder_output: torch.Tensor) -> torch.Tensor:
        """(batch, source, d_model) -> (batch, source, d_model), k(e_s)."""
        return self.key(encoder_output)

    def forward(
        self,
        decoder_states: torch.Tensor,
        encoder_output: torch.Tensor,
        source_ids: torch.Tensor,
        source_mask: torch.Tensor | None,
        vocab_logits: torch.Tensor,
        keys: torch.Tensor | None = None,
        *,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """
        Args:
            decoder_states: (batch, target, d_model), the decoder's last hidden states h_t.
            encoder_output: (batch, source, d_model), e_s.
            source_ids: (batch, source) token ids x_s.
            source_mask: (batch, source) 1 for tokens, 0 for padding, or None.
            vocab_logits: (batch, target, vocab), the pre-softmax projection of h_t.
            keys: `project_keys(encoder_output)` when already computed (generation computes it once, not at every
                step: it costs as much as the vocabulary projection).
            need_weights: also return the copy attention and the gate logits (what `hfpipe attention` draws).

        Returns:
            (log_probs, copy_weights, gate_logits):
            log_probs (batch, target, vocab) log P(w), in float32: log-probabilities are valid logits (log_softmax
                leaves them unchanged), so losses, beam search and logits processors work on them as on any logits;
            copy_weights (batch, target, source) a_t in float32, rows summing to 1 and 0 at source padding, or None
                without `need_weights`;
            gate_logits (batch, target, 1) g, σ(g) = p_gen the probability of generating rather than copying, or
                None without `need_weights`.
        """
        if keys is None:
            keys = self.project_keys(encoder_output)
        # Scaled before the product, so that half-precision scores stay in range.
        queries = self.query(decoder_states) * self.scale  # (batch, target, d_model)
        scores = (queries @ keys.transpose(1, 2)).float()  # (batch, target, source)
        if source_mask is not None:
            scores = scores.masked_fill(~source_mask.bool()[:, None, :], float("-inf"))
        copy_weights = scores.softmax(dim=-1)  # (batch, target, source)
        context = copy_weights.to(encoder_output.dtype) @ encoder_output  # (batch, target, d_model)
        gate_logits = self.gate(torch.cat([decoder_states, context], dim=-1))  # (batch, target, 1)
        log_probs = mix_log_probs(vocab_logits, gate_logits, copy_weights, source_ids)  # (batch, target, vocab)
        if not need_weights:
            return log_probs, None, None
        return log_probs, copy_weights, gate_logits
