"""What only the in-house Transformer has: its config, attention outputs, copy attention, positions, and a reversal
task it must learn. What it shares with the RNN (save/load, generation with and without the cache, the loss,
special tokens) is tested once for both in test_modeling_seq2seq.py."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from hfpipe.modeling import build_config, config_fields
from hfpipe.modeling.configuration_hfpipe_transformer import HfpipeTransformerConfig
from hfpipe.modeling.modeling_hfpipe_transformer import HfpipeTransformerForConditionalGeneration

from tests.modeling.conftest import BOS, PAD, VOCAB, identity_batch


def test_defaults_are_the_paper_base_model():
    config = HfpipeTransformerConfig()
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.num_heads, config.ffn_dim) == (
        512, 6, 6, 8, 2048,
    )
    assert config.dropout == 0.1
    assert config.positional_encoding == "sinusoidal"
    assert config.norm_first is False
    assert config.scale_embedding is True and config.tie_word_embeddings is True
    assert config.is_encoder_decoder is True
    assert config.model_type == "hfpipe_transformer"


def test_build_config_rejects_unknown_keys_and_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'dmodel' \(did you mean 'd_model'\?\).*valid keys: vocab_size, d_model"):
        build_config("hfpipe-transformer", dmodel=64)
    with pytest.raises(ValueError, match="unknown architecture 'gpt'"):
        build_config("gpt")
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by num_heads \(4\)"):
        build_config("hfpipe-transformer", d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="positional_encoding must be one of"):
        build_config("hfpipe-transformer", positional_encoding="rotary")
    assert "is_encoder_decoder" not in config_fields("hfpipe-transformer")
    assert "norm_first" in config_fields("hfpipe-transformer")


def test_learns_the_reversal_task(trained):
    sequence_accuracy, token_accuracy = trained[1]
    assert sequence_accuracy >= 0.9 and token_accuracy >= 0.97, (sequence_accuracy, token_accuracy)


def test_output_attentions_returns_encoder_masked_self_and_cross_weights(trained, sources):
    model = trained[0]
    input_ids, attention_mask = sources
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4))
    with torch.no_grad():
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            output_attentions=True,
        )
        plain = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(out.logits, plain.logits, atol=1e-5, rtol=0)  # weights path == fast path
    assert len(out.encoder_attentions) == len(out.decoder_attentions) == len(out.cross_attentions) == 2
    assert out.encoder_attentions[0].shape == (3, 4, 7, 7)
    assert out.decoder_attentions[0].shape == (3, 4, 4, 4)
    assert out.cross_attentions[0].shape == (3, 4, 4, 7)
    upper = torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1)
    assert torch.all(out.decoder_attentions[1][..., upper] == 0)  # no look-ahead
    assert torch.all(out.cross_attentions[1][2, :, :, 3:] == 0)  # no attention to source padding
    assert torch.all(out.encoder_attentions[0][1, :, :, 5:] == 0)
    for weights in out.encoder_attentions + out.decoder_attentions + out.cross_attentions:
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))

    generated = model.generate(
        input_ids, attention_mask=attention_mask, max_new_tokens=3, output_attentions=True,
        return_dict_in_generate=True,
    )
    assert len(generated.cross_attentions) == 3  # one per step, each a tuple over layers
    assert generated.cross_attentions[1][0].shape == (3, 4, 1, 7)


# ------------------------------------------------------------------------------------- copy attention
def test_copy_attention_sums_to_one_and_a_closed_gate_copies_only(
    transformer_config, randomized, sources
):
    torch.manual_seed(0)
    model = randomized(HfpipeTransformerForConditionalGeneration(transformer_config(copy_attention=True)))
    input_ids, attention_mask = sources
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4))
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(3, 4), atol=1e-4, rtol=0)

    with torch.no_grad():  # a closed gate copies only: all mass on the row's own (unpadded) source tokens
        model.copy_generator.gate.bias.fill_(-100.0)
        copied = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    for row in range(3):
        in_source = torch.zeros(VOCAB, dtype=torch.bool)
        in_source[input_ids[row, attention_mask[row].bool()]] = True
        mass = copied.logits[row].exp()[:, in_source].sum(-1)
        torch.testing.assert_close(mass, torch.ones(4), atol=1e-4, rtol=0)


def test_copy_attention_learns_to_copy_sooner_and_copies_symbols_never_seen_in_training(copy_trained):
    # Symbols 10-12 never occur in training: only a model that points at the source can reproduce them. Not all
    # of them: their embeddings are untrained noise in the encoder and decoder inputs (about half come out here).
    accuracy = {}
    for symbols in (range(3, 10), range(10, 13)):
        input_ids, attention_mask, _ = identity_batch(100, torch.Generator().manual_seed(1), symbols)
        for copy, model in copy_trained.items():
            with torch.no_grad():
                generated = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6, min_new_tokens=6)
            accuracy[copy, symbols.start] = (generated[:, 1:6] == input_ids).float().mean().item()
    # After 150 steps the copying model has learnt the task; the plain one is still at about a quarter.
    assert accuracy[True, 3] >= 0.95 and accuracy[False, 3] <= 0.6, accuracy
    assert accuracy[True, 10] >= 0.3 and accuracy[False, 10] <= 0.05, accuracy


def test_copy_attention_needs_the_source_ids(transformer_config, sources):
    model = HfpipeTransformerForConditionalGeneration(transformer_config(copy_attention=True)).eval()
    input_ids, attention_mask = sources
    encoder_outputs = model.get_encoder()(input_ids, attention_mask)
    assert torch.equal(encoder_outputs.source_ids, input_ids)
    with pytest.raises(ValueError, match="copy_attention needs the source token ids"):
        model(encoder_outputs=(encoder_outputs.last_hidden_state,), attention_mask=attention_mask,
              decoder_input_ids=torch.full((3, 1), BOS))
    with pytest.raises(ValueError, match="copy_attention must be true or false"):
        transformer_config(copy_attention="yes")


def slow_copy_log_probs(model, input_ids, attention_mask, decoder_input_ids):
    """log P(w) of the pointer-generator in float64, position by position and in probability space, from the
    model's own parts (the float32 states, the generator's weights in float64), with no floor."""
    with torch.no_grad():
        core = model.model(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, use_cache=False
        )
    states, memory = core.last_hidden_state.double(), core.encoder_last_hidden_state.double()
    generator = model.copy_generator
    query, key = generator.query.weight.double(), generator.key.weight.double()
    gate_w, gate_b = generator.gate.weight.double(), generator.gate.bias.double()
    head = model.lm_head.weight.double()
    log_probs = torch.zeros(states.shape[0], states.shape[1], VOCAB, dtype=torch.float64)
    for b in range(states.shape[0]):
        real = attention_mask[b].bool()
        keys = memory[b, real] @ key.T  # (real source, d_model)
        for t in range(states.shape[1]):
            weights = torch.softmax(keys @ (query @ states[b, t]) / 32**0.5, dim=0)
            context = weights @ memory[b, real]
            p_gen = torch.sigmoid(gate_w @ torch.cat([states[b, t], context]) + gate_b)[0]
            probs = p_gen * torch.softmax(head @ states[b, t], dim=0)
            for token, weight in zip(input_ids[b, real].tolist(), weights):
                probs[token] += (1 - p_gen) * weight
            log_probs[b, t] = probs.log()
    return log_probs


def test_copy_log_probs_match_the_formula_in_float64_without_a_floor(transformer_config, randomized, sources):
    torch.manual_seed(0)
    model = randomized(HfpipeTransformerForConditionalGeneration(transformer_config(copy_attention=True)))
    input_ids, attention_mask = sources
    input_ids = input_ids.clone()
    input_ids[0, 1] = input_ids[0, 4]  # a token that occurs twice: its copy weights add up
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4))
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)  # a confident vocabulary distribution (the embeddings are tied to it)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    expected = slow_copy_log_probs(model, input_ids, attention_mask, decoder_input_ids)
    assert logits.dtype == torch.float32
    assert expected.min() < -25  # below the old floor of log(1e-9) = -20.7, which it would have hidden
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=1e-5)


def reference_mix(vocab_logits, gate_logits, copy_weights, source_ids):
    """The mixture the direct way, in float64 probability space: scatter-add the copy weights, then log."""
    p_gen = torch.sigmoid(gate_logits)
    probs = p_gen * vocab_logits.softmax(-1)
    index = source_ids[:, None, :].expand(-1, probs.size(1), -1)
    return probs.scatter_add(-1, index, (1 - p_gen) * copy_weights).log()


def test_copy_mixture_gradients_match_the_direct_formula_duplicates_and_padding_included():
    from hfpipe.modeling.copy_attention import mix_log_probs

    generator = torch.Generator().manual_seed(0)
    source_ids = torch.tensor([[5, 6, 5, 7, PAD], [8, 8, 8, 9, 4]])  # 5 and 8 repeat; row 0 ends in padding
    vocab_logits = torch.randn(2, 3, VOCAB, generator=generator, dtype=torch.float64)
    gate_logits = torch.randn(2, 3, 1, generator=generator, dtype=torch.float64)
    scores = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)
    scores[0, :, 4] = float("-inf")  # padding: zero copy weight
    upstream = torch.randn(2, 3, VOCAB, generator=generator, dtype=torch.float64)
    results = []
    for mix in (mix_log_probs, reference_mix):
        # Through the scores, as in the model: a weight of exactly 0 (padding) has no gradient to pass on.
        inputs = [t.clone().requires_grad_() for t in (vocab_logits, gate_logits, scores)]
        out = mix(inputs[0], inputs[1], inputs[2].softmax(-1), source_ids)
        (out.double() * upstream).sum().backward()
        results.append((out.double(), [t.grad for t in inputs]))
    (ours, our_grads), (reference, reference_grads) = results
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    for grad, expected in zip(our_grads, reference_grads):
        torch.testing.assert_close(grad, expected, atol=1e-5, rtol=1e-4)


def test_a_confidently_wrong_gold_token_still_gets_a_gradient():
    from hfpipe.modeling.copy_attention import mix_log_probs

    vocab_logits = torch.zeros(1, 1, VOCAB)
    vocab_logits[..., 4] = 60.0  # the model is sure of 4; the gold token 9 gets e^-60, far below 1e-9
    vocab_logits.requires_grad_()
    source_ids = torch.tensor([[4, 5, 6]])
    copy_weights = torch.tensor([[[0.98, 0.01, 0.01]]])
    log_probs = mix_log_probs(vocab_logits, torch.zeros(1, 1, 1), copy_weights, source_ids)
    loss = -log_probs[0, 0, 9]
    assert 60 < loss.item() < 62  # its true log-probability, not a floor
    loss.backward()
    assert torch.isfinite(vocab_logits.grad).all()
    assert vocab_logits.grad[0, 0, 9] < -0.99 and vocab_logits.grad[0, 0, 4] > 0.99


def test_impossible_tokens_give_minus_inf_not_nan_forward_and_backward():
    from hfpipe.modeling.copy_attention import mix_log_probs

    vocab_logits = torch.zeros(1, 2, VOCAB)
    vocab_logits[..., 7] = float("-inf")  # never generated, not in the source: -inf
    vocab_logits[..., 5] = float("-inf")  # never generated, but copied: finite
    vocab_logits.requires_grad_()
    gate_logits = torch.zeros(1, 2, 1, requires_grad=True)
    copy_weights = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]], requires_grad=True)
    source_ids = torch.tensor([[5, 6, PAD]])
    log_probs = mix_log_probs(vocab_logits, gate_logits, copy_weights, source_ids)
    assert torch.isneginf(log_probs[..., 7]).all() and torch.isfinite(log_probs[..., 5]).all()
    torch.testing.assert_close(log_probs[0, 1, 5], torch.tensor(0.5).log())
    log_probs[..., [3, 5, 6]].sum().backward()
    for tensor in (vocab_logits, gate_logits, copy_weights):
        assert not tensor.grad.isnan().any(), tensor.grad


def copy_model_and_batch(transformer_config, randomized, sources):
    """A randomized copying Transformer, the padded sources with one repeated token, and 4 decoder inputs."""
    torch.manual_seed(0)
    model = randomized(HfpipeTransformerForConditionalGeneration(transformer_config(copy_attention=True)))
    input_ids, attention_mask = sources
    input_ids = input_ids.clone()
    input_ids[0, 1] = input_ids[0, 4]  # a token that occurs twice: its copy weights add up
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4), generator=torch.Generator().manual_seed(1))
    return model, input_ids, attention_mask, decoder_input_ids


def test_copy_weights_and_gate_are_returned_and_recombine_into_the_log_probs(transformer_config, randomized, sources):
    model, input_ids, attention_mask, decoder_input_ids = copy_model_and_batch(transformer_config, randomized, sources)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                    output_attentions=True, output_hidden_states=True)
        vocab_logits = model.lm_head(out.decoder_hidden_states[-1])  # (batch, target, vocab), before the mixture
    weights, gate_logits = out.copy_weights, out.copy_gate_logits
    assert weights.shape == (3, 4, 7) and gate_logits.shape == (3, 4, 1)
    padding = ~attention_mask.bool()[:, None, :].expand(-1, 4, -1)  # (batch, target, source)
    assert padding.any() and torch.all(weights[padding] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4), atol=1e-6, rtol=0)
    p_gen = torch.sigmoid(gate_logits.double())
    assert torch.all((p_gen > 0) & (p_gen < 1)), p_gen
    assert p_gen.std() > 0.01  # it varies with the output position: a gate stuck at a constant would not
    # The formula in float64 probability space, from the returned parts, gives the model's log-probabilities.
    expected = reference_mix(vocab_logits.double(), gate_logits.double(), weights.double(), input_ids)
    torch.testing.assert_close(out.logits.double(), expected, atol=1e-4, rtol=1e-5)


def test_copy_weights_leave_the_default_outputs_and_the_tuple_form_alone(transformer_config, randomized, sources):
    model, input_ids, attention_mask, decoder_input_ids = copy_model_and_batch(transformer_config, randomized, sources)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    with torch.no_grad():
        plain = model(**inputs)
        weighed = model(**inputs, output_attentions=True)
        as_tuple = model(**inputs, output_attentions=True, return_dict=False)
        # The generator itself: asking for its weights changes nothing it returns besides them.
        core = model.model(**inputs, use_cache=False)
        parts = (core.last_hidden_state, core.encoder_last_hidden_state, input_ids, attention_mask,
                 model.lm_head(core.last_hidden_state))
        alone, no_weights, no_gate = model.copy_generator(*parts)
        with_weights = model.copy_generator(*parts, need_weights=True)
    assert plain.copy_weights is None and plain.copy_gate_logits is None
    assert no_weights is None and no_gate is None
    assert torch.equal(alone, with_weights[0])
    torch.testing.assert_close(with_weights[1], weighed.copy_weights)
    torch.testing.assert_close(weighed.logits, plain.logits, atol=1e-5, rtol=0)  # the weights path == fast path
    # The tuple keeps Seq2SeqLMOutput's positions: the copy fields are left out of it.
    assert len(as_tuple) == len(weighed.to_tuple()) - 2
    assert torch.equal(as_tuple[0], weighed.logits)
    assert not any(isinstance(item, torch.Tensor) and item.shape == (3, 4, 7) for item in as_tuple)


def test_copy_weights_with_the_cache_equal_those_without(transformer_config, randomized, sources):
    model, input_ids, attention_mask, decoder_input_ids = copy_model_and_batch(transformer_config, randomized, sources)
    with torch.no_grad():
        full = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                     use_cache=False, output_attentions=True)
        encoder_outputs = model.get_encoder()(input_ids, attention_mask)
        cache, weights, gates = None, [], []
        for step in range(decoder_input_ids.size(1)):
            out = model(encoder_outputs=encoder_outputs, attention_mask=attention_mask,
                        decoder_input_ids=decoder_input_ids[:, step:step + 1], cache=cache, use_cache=True,
                        output_attentions=True)
            cache = out.cache
            weights.append(out.copy_weights)  # (batch, 1, source): the new position only
            gates.append(out.copy_gate_logits)
    torch.testing.assert_close(torch.cat(weights, dim=1), full.copy_weights, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(gates, dim=1), full.copy_gate_logits, atol=1e-5, rtol=0)

    generated = {}
    for use_cache in (True, False):
        for flag in (True, False):
            with torch.no_grad():
                result = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6, do_sample=False,
                                        num_beams=1, use_cache=use_cache, output_attentions=flag,
                                        return_dict_in_generate=True)
            generated[use_cache, flag] = result.sequences
    reference = generated[True, False]
    assert len(set(reference.flatten().tolist())) > 3  # the output varies, so a broken cache would show
    for sequences in generated.values():
        assert torch.equal(sequences, reference)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_copy_attention_under_autocast_stays_finite_log_probabilities(transformer_config, sources, dtype):
    torch.manual_seed(0)
    model = HfpipeTransformerForConditionalGeneration(transformer_config(copy_attention=True))
    input_ids, attention_mask = sources
    labels = torch.randint(3, VOCAB, (3, 4))
    with torch.autocast("cpu", dtype=dtype):
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.logits.logsumexp(-1), torch.zeros(3, 4), atol=1e-2, rtol=0)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------- positions
def test_learned_positions_start_at_init_std_one_table_per_stack(registered, transformer_config, sources):
    config = transformer_config(positional_encoding="learned", init_std=0.1)
    torch.manual_seed(0)
    for model in (HfpipeTransformerForConditionalGeneration(config), AutoModelForSeq2SeqLM.from_config(config)):
        encoder_table = model.model.encoder.positions.embedding.weight
        decoder_table = model.model.decoder.positions.embedding.weight
        assert encoder_table.data_ptr() != decoder_table.data_ptr()
        for table in (encoder_table, decoder_table):
            assert 0.09 < table.std().item() < 0.11, table.std()
        assert 0.16 < model.model.encoder.embed_tokens.weight.std().item() < 0.19  # d_model ** -0.5, not init_std

    model = model.eval()
    input_ids, attention_mask = sources
    decoder_input_ids = torch.randint(3, VOCAB, (3, 4))
    with torch.no_grad():
        before = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        model.model.decoder.positions.embedding.weight.add_(1.0)
        after = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    assert torch.equal(after.encoder_last_hidden_state, before.encoder_last_hidden_state)  # the encoder's own table
    assert not torch.allclose(after.logits, before.logits)


def test_sinusoidal_positions_are_not_saved(transformer_config):
    keys = HfpipeTransformerForConditionalGeneration(transformer_config()).state_dict()
    assert not [key for key in keys if "positions" in key]


def test_a_checkpoint_with_the_old_shared_position_table_loads_into_both_stacks(
    tmp_path, registered, transformer_config, randomized
):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = randomized(AutoModelForSeq2SeqLM.from_config(transformer_config(positional_encoding="learned")))
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["model.decoder.positions.embedding.weight"]  # as saved before each stack had its own
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    shared = model.model.encoder.positions.embedding.weight

    loaded, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], info
    assert torch.equal(loaded.model.decoder.positions.embedding.weight, shared)
    assert torch.equal(loaded.model.encoder.positions.embedding.weight, shared)

    fresh = HfpipeTransformerForConditionalGeneration(transformer_config(positional_encoding="learned"))
    state = {key: value for key, value in model.state_dict().items() if not key.startswith("model.decoder.pos")}
    fresh.load_state_dict(state, strict=True)  # resuming from an old training checkpoint
    assert torch.equal(fresh.model.decoder.positions.embedding.weight, shared)
