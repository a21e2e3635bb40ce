"""hfpipe's in-house attention layers and models, as Hugging Face custom model classes.

The files of this folder import only torch, transformers and each other (sibling relative imports), so
`save_pretrained` can copy them next to the weights as remote code: a process without hfpipe then loads the model
with `AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True)`.

Importing this package does nothing heavy and registers nothing: call `register_auto_classes()` before building or
saving an in-house model through the Auto classes, and `register_attention_interface()` before building a
pretrained model with `attn_implementation="hfpipe"`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any

#: Recipe architecture name -> (module in this package, config class), for `build_config`.
ARCHITECTURES = {
    "hfpipe-transformer": ("configuration_hfpipe_transformer", "HfpipeTransformerConfig"),
    "hfpipe-rnn": ("configuration_hfpipe_rnn", "HfpipeRNNConfig"),
}

#: The name under which `register_attention_interface` registers hfpipe's attention with transformers.
ATTENTION_IMPLEMENTATION = "hfpipe"

# Config fields that are part of what a model is, not settings to override.
_FIXED_FIELDS = frozenset({"is_encoder_decoder"})


def _config_class(architecture: str) -> type:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    module_name, class_name = ARCHITECTURES[architecture]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)


def config_fields(architecture: str) -> list[str]:
    """The keys `build_config` accepts for `architecture`, in declaration order."""
    cls = _config_class(architecture)
    own = cls.__dict__.get("__annotations__", {})
    return [f.name for f in dataclasses.fields(cls) if f.name in own and f.name not in _FIXED_FIELDS]


def build_config(architecture: str, **kwargs: Any):
    """The config of an in-house architecture ("hfpipe-transformer" or "hfpipe-rnn") with `kwargs` overriding the
    documented defaults.

    Raises:
        ValueError: an unknown architecture, an unknown key (the message lists the valid keys), or an invalid value.
    """
    cls = _config_class(architecture)
    valid = config_fields(architecture)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown {architecture} config key(s): {', '.join(hints)}; valid keys: {', '.join(valid)}"
        )
    return cls(**kwargs)


def register_auto_classes() -> None:
    """Register the in-house configs and models with `AutoConfig` and `AutoModelForSeq2SeqLM`, and mark them for
    `save_pretrained` to copy their code files and write an `auto_map` into config.json. Safe to call repeatedly."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from .configuration_hfpipe_rnn import HfpipeRNNConfig
    from .configuration_hfpipe_transformer import HfpipeTransformerConfig
    from .modeling_hfpipe_rnn import HfpipeRNNForConditionalGeneration
    from .modeling_hfpipe_transformer import HfpipeTransformerForConditionalGeneration

    for config_class, model_class in (
        (HfpipeTransformerConfig, HfpipeTransformerForConditionalGeneration),
        (HfpipeRNNConfig, HfpipeRNNForConditionalGeneration),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForSeq2SeqLM.register(config_class, model_class, exist_ok=True)
        config_class.register_for_auto_class("AutoConfig")
        model_class.register_for_auto_class("AutoModelForSeq2SeqLM")


def register_attention_interface() -> None:
    """Make `attn_implementation="hfpipe"` run `attention.scaled_dot_product_attention` inside transformers' own
    models (Marian, BART, MBart, T5, ...). Registers the attention function with `AttentionInterface` and, so that
    padding and causal masks reach it, transformers' explicit additive mask builder with `AttentionMaskInterface`.
    Safe to call repeatedly."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    from .attention import hfpipe_attention_forward

    AttentionInterface.register(ATTENTION_IMPLEMENTATION, hfpipe_attention_forward)
    AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, eager_mask)


__all__ = [
    "ARCHITECTURES",
    "ATTENTION_IMPLEMENTATION",
    "build_config",
    "config_fields",
    "register_attention_interface",
    "register_auto_classes",
]
