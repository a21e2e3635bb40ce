"""The training loop's loss and optimizer against torch's own: the log-probability shortcut for copy-attention
models gives cross_entropy's value and gradient, and the fused AdamW makes the for-loop AdamW's update."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hfpipe.modeling import build_config
from hfpipe.modeling.modeling_hfpipe_transformer import HfpipeTransformerForConditionalGeneration
from hfpipe.pipeline.optimization import make_optimizer, token_loss_sum
from hfpipe.recipe.schema import TrainConfig


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_log_prob_loss_equals_cross_entropy_in_value_and_gradient(smoothing):
    torch.manual_seed(0)
    raw = torch.randn(3, 7, 50) * 3
    labels = torch.randint(0, 50, (3, 7))
    labels[0, 5:] = -100  # padding
    labels[2, :] = -100  # a row with nothing to learn

    reference_input = raw.clone().requires_grad_()
    reference = F.cross_entropy(reference_input.log_softmax(-1).view(-1, 50), labels.view(-1), ignore_index=-100,
                                label_smoothing=smoothing, reduction="sum")
    reference.backward()
    shortcut_input = raw.clone().requires_grad_()
    shortcut = token_loss_sum(shortcut_input.log_softmax(-1), labels, label_smoothing=smoothing, log_probs=True)
    shortcut.backward()

    torch.testing.assert_close(shortcut, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shortcut_input.grad, reference_input.grad, rtol=1e-4, atol=1e-6)
    # and the plain path is cross_entropy itself
    plain = token_loss_sum(raw, labels, label_smoothing=smoothing, log_probs=False)
    torch.testing.assert_close(plain, F.cross_entropy(raw.view(-1, 50), labels.view(-1), ignore_index=-100,
                                                      label_smoothing=smoothing, reduction="sum"))


def test_only_copy_attention_models_declare_log_probabilities():
    small = dict(vocab_size=20, d_model=16, encoder_layers=1, decoder_layers=1, num_heads=2, ffn_dim=32,
                 pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    copying = HfpipeTransformerForConditionalGeneration(build_config("hfpipe-transformer", copy_attention=True,
                                                                     **small))
    plain = HfpipeTransformerForConditionalGeneration(build_config("hfpipe-transformer", **small))
    assert copying.logits_are_log_probs and not plain.logits_are_log_probs
    ids = torch.randint(3, 20, (2, 5))
    logits = copying(input_ids=ids, decoder_input_ids=ids).logits
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(2, 5), atol=1e-4, rtol=0)


def test_the_fused_adamw_makes_the_for_loop_update():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    reference = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    reference.load_state_dict(model.state_dict())
    cfg = TrainConfig(max_steps=5, learning_rate=1e-2, weight_decay=0.1)
    fused = make_optimizer(model, cfg)
    assert fused.defaults.get("fused") is True
    loop = torch.optim.AdamW([{"params": [p for p in reference.parameters() if p.ndim >= 2], "weight_decay": 0.1},
                              {"params": [p for p in reference.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                             lr=1e-2, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, foreach=False)
    for _ in range(5):
        x = torch.randn(32, 8)
        for net, opt in ((model, fused), (reference, loop)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
