"""hfpipe.modeling as the pipeline uses it: a light import, `build_config`, explicit Auto registration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForSeq2SeqLM

import hfpipe.modeling as modeling

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_package_imports_neither_torch_nor_transformers():
    code = (
        "import sys, hfpipe.modeling as m; "
        "heavy = [name for name in ('torch', 'transformers') if name in sys.modules]; "
        "assert not heavy, heavy; assert m.ARCHITECTURES"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("architecture", sorted(modeling.ARCHITECTURES))
def test_build_config_the_way_the_pipeline_calls_it(registered, architecture):
    config = modeling.build_config(
        architecture, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        dropout=0.2,
    )
    assert (config.vocab_size, config.pad_token_id, config.dropout) == (100, 0, 0.2)
    assert type(AutoConfig.for_model(config.model_type)) is type(config)
    model = AutoModelForSeq2SeqLM.from_config(
        modeling.build_config(architecture, vocab_size=100, **_tiny(architecture))
    )
    assert model.config.is_encoder_decoder
    assert type(model).__module__ == f"hfpipe.modeling.modeling_{config.model_type}"


def _tiny(architecture: str) -> dict:
    if architecture == "hfpipe-transformer":
        return dict(d_model=16, encoder_layers=1, decoder_layers=1, num_heads=2, ffn_dim=32)
    return dict(embedding_dim=8, hidden_size=8)


def test_registration_is_explicit_and_idempotent():
    modeling.register_auto_classes()
    modeling.register_auto_classes()
    modeling.register_attention_interface()
    modeling.register_attention_interface()
    from transformers import AttentionInterface, AttentionMaskInterface

    assert modeling.ATTENTION_IMPLEMENTATION in AttentionInterface._global_mapping
    assert modeling.ATTENTION_IMPLEMENTATION in AttentionMaskInterface._global_mapping
