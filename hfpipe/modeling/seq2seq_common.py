"""What every hfpipe encoder-decoder shares, whatever its layers: teacher-forcing decoder inputs, the token loss,
and the checks of the special-token fields of its config.

Shipped as remote code next to saved models (the model and config files import it): imports only torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def shift_tokens_right(labels: torch.Tensor, *, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: (batch, time) labels -> (batch, time) `[start, y_1, ..., y_{n-1}]`,
    with the loss-ignored label -100 replaced by the pad token."""
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def seq2seq_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Token cross-entropy of (batch, time, vocab) logits against (batch, time) labels; -100 is ignored.

    The mean over the batch's labelled tokens, or, when the trainer passes `num_items_in_batch` (the labelled tokens
    of all gradient-accumulation micro-batches), the sum divided by it. Log-probabilities (a copy-attention model's
    logits) give the same loss: log_softmax leaves them unchanged.
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()
    flat_labels = labels.reshape(-1).to(logits.device)
    if num_items_in_batch is None:
        return F.cross_entropy(flat_logits, flat_labels, ignore_index=-100)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="sum")
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def special_token_problems(config) -> list[str]:
    """What is wrong with the special-token fields of an encoder-decoder config (pad, bos and decoder start inside
    the vocabulary; pad and decoder start set; `is_encoder_decoder` true), one message per problem."""
    problems = []
    vocab_size = config.vocab_size
    for name in ("pad_token_id", "bos_token_id", "decoder_start_token_id"):
        value = getattr(config, name)
        if value is not None and isinstance(vocab_size, int) and not 0 <= value < vocab_size:
            problems.append(f"{name}={value} is outside the vocabulary (vocab_size={vocab_size})")
    if config.pad_token_id is None:
        problems.append("pad_token_id must be set (padding is masked and labels are shifted with it)")
    if config.decoder_start_token_id is None:
        problems.append("decoder_start_token_id must be set (it starts every decoder input)")
    if config.is_encoder_decoder is not True:
        problems.append(f"is_encoder_decoder must be True for this model, got {config.is_encoder_decoder!r}")
    return problems
