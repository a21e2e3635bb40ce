"""Fixtures for hfpipe.modeling tests: tiny seeded configs and models, one torch thread (tiny models run faster
on one thread, and the CI machine is shared)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # hfpipe may not be pip-installed yet
    sys.path.insert(0, str(ROOT))

torch = pytest.importorskip("torch")

PAD, BOS, EOS = 0, 1, 2
VOCAB = 13  # 3 special tokens + 10 symbols


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def registered():
    from hfpipe.modeling import register_auto_classes

    register_auto_classes()


def _special_tokens() -> dict:
    return dict(vocab_size=VOCAB, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS)


@pytest.fixture(scope="session")
def transformer_config():
    """Factory: a tiny HfpipeTransformerConfig (d_model 32, 2+2 layers, 4 heads) with overrides."""
    from hfpipe.modeling import build_config

    def make(**overrides):
        values = dict(
            d_model=32, encoder_layers=2, decoder_layers=2, num_heads=4, ffn_dim=64, max_position_embeddings=32,
            dropout=0.0,
        )
        values.update(overrides)
        return build_config("hfpipe-transformer", **_special_tokens(), **values)

    return make


@pytest.fixture(scope="session")
def rnn_config():
    """Factory: a tiny HfpipeRNNConfig (embeddings 16, hidden 24) with overrides."""
    from hfpipe.modeling import build_config

    def make(**overrides):
        values = dict(embedding_dim=16, hidden_size=24, num_layers=1, dropout=0.0)
        values.update(overrides)
        return build_config("hfpipe-rnn", **_special_tokens(), **values)

    return make


def randomize(model, *, seed: int = 0, std: float = 0.4):
    """Large random weights, so that an untrained model's generations vary from token to token (a constant output
    would hide cache bugs). Buffers (the sinusoidal table) are left alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model.eval()


@pytest.fixture(scope="session")
def randomized():
    return randomize


def source_batch(*, seed: int = 0):
    """Three right-padded sources of lengths 7, 5 and 3: (input_ids, attention_mask), each (3, 7)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (3, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 3:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, PAD)
    return input_ids, attention_mask


@pytest.fixture
def sources():
    return source_batch()


def reversal_batch(size: int, generator, *, min_length: int = 3, max_length: int = 5):
    """The reversal task: sources of random symbols, targets = the reversed source then EOS.

    Returns input_ids (size, max_length), attention_mask, labels (size, max_length + 1) with -100 after EOS.
    """
    lengths = torch.randint(min_length, max_length + 1, (size,), generator=generator)
    input_ids = torch.full((size, max_length), PAD)
    labels = torch.full((size, max_length + 1), -100)
    for row, length in enumerate(lengths.tolist()):
        symbols = torch.randint(3, VOCAB, (length,), generator=generator)
        input_ids[row, :length] = symbols
        labels[row, :length] = symbols.flip(0)
        labels[row, length] = EOS
    return input_ids, (input_ids != PAD).long(), labels


def train_reversal(model, *, steps: int, lr: float, seed: int = 0):
    """Adam with gradient clipping on fresh reversal batches of 64; returns greedy (sequence accuracy, token
    accuracy) on 200 held-out sources."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    model.train()
    for _ in range(steps):
        input_ids, attention_mask, labels = reversal_batch(64, generator)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    input_ids, attention_mask, labels = reversal_batch(200, torch.Generator().manual_seed(seed + 1000))
    with torch.no_grad():
        generated = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=labels.size(1))
    generated = generated[:, 1:]  # drop the decoder start token
    predictions = torch.full_like(labels, PAD)
    width = min(generated.size(1), labels.size(1))
    predictions[:, :width] = generated[:, :width]
    targets = labels.masked_fill(labels == -100, PAD)
    labelled = labels != -100
    sequence_accuracy = (predictions == targets).all(dim=1).float().mean().item()
    token_accuracy = (predictions == targets)[labelled].float().mean().item()
    return sequence_accuracy, token_accuracy


@pytest.fixture(scope="session")
def reversal():
    return train_reversal


def identity_batch(size: int, generator, symbols: range, *, length: int = 5):
    """Copy the source: sources of `length` random `symbols`, targets = the same symbols then EOS."""
    input_ids = torch.randint(symbols.start, symbols.stop, (size, length), generator=generator)
    labels = torch.cat([input_ids, torch.full((size, 1), EOS)], dim=1)
    return input_ids, torch.ones_like(input_ids), labels


@pytest.fixture(scope="session")
def trained(transformer_config):
    """A tiny Transformer trained on the reversal task (its greedy outputs vary from token to token, which an
    untrained model's do not: with tied embeddings it repeats its input token), and its accuracies."""
    from hfpipe.modeling.modeling_hfpipe_transformer import HfpipeTransformerForConditionalGeneration

    torch.manual_seed(0)
    model = HfpipeTransformerForConditionalGeneration(transformer_config(max_position_embeddings=16))
    accuracies = train_reversal(model, steps=450, lr=2e-3)
    return model.eval(), accuracies


@pytest.fixture(scope="session")
def copy_trained(transformer_config):
    """Transformers with and without copy attention, trained to copy sources made of the symbols 3-9 only."""
    from hfpipe.modeling.modeling_hfpipe_transformer import HfpipeTransformerForConditionalGeneration

    models = {}
    for copy in (False, True):
        torch.manual_seed(0)
        model = HfpipeTransformerForConditionalGeneration(
            transformer_config(copy_attention=copy, max_position_embeddings=16, norm_first=True)
        )
        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
        model.train()
        for _ in range(150):
            input_ids, attention_mask, labels = identity_batch(64, generator, range(3, 10))
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        models[copy] = model.eval()
    return models
