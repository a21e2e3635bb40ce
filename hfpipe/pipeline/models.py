"""Stage 3, model: a pretrained checkpoint, an architecture built from a config, an in-house model, or an
encoder-decoder warm-started from pretrained encoders (bert2bert)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hfpipe.errors import ModelError
from hfpipe.hub.locations import load_error, local_files_only, resolve_location
from hfpipe.recipe.schema import Recipe

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Sizes for architectures built from a config when the recipe gives no overrides: small enough to train on a
# laptop CPU, big enough to learn. Every key can be overridden under model.config.
_SMALL_DEFAULTS: dict[str, dict[str, Any]] = {
    "marian": dict(d_model=256, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, max_position_embeddings=512,
                   share_encoder_decoder_embeddings=True, scale_embedding=True, dropout=0.1),
    "bart": dict(d_model=256, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=1024, decoder_ffn_dim=1024, max_position_embeddings=512, dropout=0.1),
    "mbart": dict(d_model=256, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, max_position_embeddings=512,
                  dropout=0.1, scale_embedding=True),
    "t5": dict(d_model=256, d_kv=64, d_ff=1024, num_layers=3, num_decoder_layers=3, num_heads=4, dropout_rate=0.1),
}


# The sizes of each architecture built from a config (its defaults where the recipe gives none): what a model's
# parameter count follows from, and what must be a positive whole number before anything is allocated.
_IN_HOUSE_DEFAULTS: dict[str, dict[str, Any]] = {
    "hfpipe-transformer": dict(d_model=512, encoder_layers=6, decoder_layers=6, num_heads=8, ffn_dim=2048,
                               max_position_embeddings=512),
    "hfpipe-rnn": dict(embedding_dim=620, hidden_size=1000, num_layers=1, bidirectional=True),
}
_SIZE_KEYS = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
              "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings", "d_kv", "d_ff", "num_layers",
              "num_decoder_layers", "num_heads", "ffn_dim", "embedding_dim", "hidden_size")
_LAYER_KEYS = ("encoder_layers", "decoder_layers", "num_layers", "num_decoder_layers")


def config_sizes(architecture: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The size settings of a model built from a config: the defaults hfpipe uses, then model.config."""
    defaults = _SMALL_DEFAULTS.get(architecture) or _IN_HOUSE_DEFAULTS.get(architecture, {})
    return {**defaults, **overrides}


def estimate_parameters(architecture: str, sizes: dict[str, Any], vocab_size: int) -> int:
    """A close estimate of the parameter count (embeddings, attention, feed-forward), from the sizes alone."""
    def get(key: str, default: int = 0) -> int:
        value = sizes.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    if architecture == "hfpipe-rnn":
        e, h, layers = get("embedding_dim"), get("hidden_size"), get("num_layers", 1)
        directions = 2 if sizes.get("bidirectional", True) else 1
        encoder = layers * directions * 4 * (e + h) * h
        decoder = layers * 4 * (e + 2 * h * directions) * h
        return vocab_size * e * 2 + encoder + decoder + vocab_size * h
    d = get("d_model")
    if architecture == "t5":
        inner = get("num_heads") * get("d_kv")
        enc, dec = get("num_layers"), get("num_decoder_layers", get("num_layers"))
        ff = get("d_ff")
        return vocab_size * d * 2 + enc * (4 * d * inner + 2 * d * ff) + dec * (8 * d * inner + 2 * d * ff)
    enc_ffn = get("encoder_ffn_dim", get("ffn_dim"))
    dec_ffn = get("decoder_ffn_dim", get("ffn_dim"))
    return (vocab_size * d + get("max_position_embeddings") * d * 2
            + get("encoder_layers") * (4 * d * d + 2 * d * enc_ffn)
            + get("decoder_layers") * (8 * d * d + 2 * d * dec_ffn))


def memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def config_problems(architecture: str, overrides: dict[str, Any], vocab_size: int) -> list[str]:
    """What is wrong with the sizes of a model built from a config, found before building it: sizes that are not
    positive whole numbers, a width the attention heads do not divide, and a model too big for this machine's
    memory (building it would be killed by the OS, or swap for hours, instead of failing with a message)."""
    sizes = config_sizes(architecture, overrides)
    problems = []
    for key in _SIZE_KEYS:
        if sizes.get(key) is None:  # unset: the config's own default (T5's num_decoder_layers follows num_layers)
            continue
        value, least = sizes[key], 0 if key in _LAYER_KEYS else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            problems.append(f"model.config.{key} must be a whole number of at least {least}, got {value!r}")
    if problems:
        return problems
    d = sizes.get("d_model")
    for heads_key in ("encoder_attention_heads", "decoder_attention_heads", "num_heads"):
        heads = sizes.get(heads_key)
        if d and heads and architecture != "t5" and d % heads:
            problems.append(f"model.config.d_model ({d}) must be divisible by model.config.{heads_key} ({heads}): "
                            f"each head gets d_model / heads dimensions")
    parameters = estimate_parameters(architecture, sizes, vocab_size)
    memory = memory_bytes()
    if memory and parameters * 4 > memory:
        problems.append(f"model.config makes a model of about {parameters / 1e9:,.1f} billion parameters: its "
                        f"float32 weights alone take {parameters * 4 / 2**30:,.0f} GiB, more than this machine's "
                        f"{memory / 2**30:,.0f} GiB of memory (check d_model, the layer counts, the feed-forward "
                        f"sizes and the vocabulary)")
    return problems


# Position schemes without a table of fixed size: T5's relative buckets, the RNN's recurrence.
_NO_POSITION_LIMIT = frozenset({"t5", "mt5", "umt5", "longt5", "hfpipe_rnn"})


def position_limit(config: Mapping[str, Any]) -> int | None:
    """How many positions a model can encode, from its config as a dict (`config.to_dict()`, a config.json, or the
    sizes a recipe builds from): `max_position_embeddings`, or `n_positions` (GPT-2 style); for an encoder-decoder
    the smaller of its two stacks. None: no hard limit (relative positions, an RNN) or the config does not say.
    `hfpipe validate` and the runner both ask this one function."""
    stacks = [config[key] for key in ("encoder", "decoder") if isinstance(config.get(key), Mapping)]
    if stacks:
        limits = [n for n in (position_limit(stack) for stack in stacks) if n is not None]
        return min(limits) if limits else None
    if config.get("model_type") in _NO_POSITION_LIMIT:
        return None
    for key in ("max_position_embeddings", "n_positions"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    if eos is None:
        raise ModelError("the tokenizer has no end-of-sequence token (eos or sep)",
                         hint="generation needs one to stop: use or train a tokenizer with </s>")
    return {"pad_token_id": pad, "eos_token_id": eos, "bos_token_id": bos if bos is not None else pad}


def _from_config(recipe: Recipe, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    from transformers import AutoModelForSeq2SeqLM

    arch = recipe.model.architecture
    ids = _special_ids(tokenizer)
    overrides = dict(recipe.model.config)
    problems = config_problems(arch, overrides, len(tokenizer))
    if problems:
        raise ModelError(f"cannot build {arch} from model.config", where="model.config", details=problems,
                         hint="fix the sizes in model.config (`hfpipe validate` finds these before a run)")
    if arch in ("hfpipe-transformer", "hfpipe-rnn"):
        from hfpipe.modeling import build_config, register_auto_classes

        register_auto_classes()
        try:
            config = build_config(arch, vocab_size=len(tokenizer), decoder_start_token_id=ids["bos_token_id"],
                                  **ids, **overrides)
        except (TypeError, ValueError) as err:
            raise ModelError(f"bad model.config for {arch}: {err}", where="model.config") from None
    else:
        from transformers import BartConfig, MarianConfig, MBartConfig, T5Config

        config_class = {"marian": MarianConfig, "bart": BartConfig, "mbart": MBartConfig, "t5": T5Config}[arch]
        kwargs = {**_SMALL_DEFAULTS[arch], **overrides}
        # Marian and T5 start decoding from the pad token; BART-style models from eos.
        start = ids["pad_token_id"] if arch in ("marian", "t5") else ids["eos_token_id"]
        kwargs.update(vocab_size=len(tokenizer), decoder_start_token_id=start, **ids)
        if arch == "marian":
            kwargs["decoder_vocab_size"] = len(tokenizer)
        known = set(config_class().to_dict())
        unknown = sorted(set(overrides) - known)
        if unknown:
            import difflib

            hints = [f"{k!r} (did you mean {difflib.get_close_matches(k, known, n=1)[0]!r}?)"
                     if difflib.get_close_matches(k, known, n=1) else repr(k) for k in unknown]
            raise ModelError(f"unknown {config_class.__name__} keys in model.config: {', '.join(hints)}",
                             where="model.config")
        try:
            config = config_class(**kwargs)
        except (TypeError, ValueError) as err:
            raise ModelError(f"bad model.config for {arch}: {err}", where="model.config") from None
    kwargs = {}
    if recipe.model.attn_implementation and arch not in ("hfpipe-transformer", "hfpipe-rnn"):
        if recipe.model.attn_implementation == "hfpipe":
            from hfpipe.modeling import register_attention_interface

            register_attention_interface()
        kwargs["attn_implementation"] = recipe.model.attn_implementation
    try:
        return AutoModelForSeq2SeqLM.from_config(config, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # RuntimeError: torch refusing a size or out of memory
        raise ModelError(f"cannot build {arch} from its config: {err}", where="model") from None


def _encoder_decoder(recipe: Recipe, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    from transformers import EncoderDecoderModel

    encoder = resolve_location(recipe.model.encoder or "")
    decoder = resolve_location(recipe.model.decoder or recipe.model.encoder or "")
    try:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            encoder, decoder, encoder_local_files_only=local_files_only(encoder, "encoder model"),
            decoder_local_files_only=local_files_only(decoder, "decoder model"), **recipe.model.config)
    except Exception as err:
        raise load_error("encoder/decoder model", encoder, err) from None
    ids = _special_ids(tokenizer)
    model.config.decoder_start_token_id = ids["bos_token_id"]
    model.config.pad_token_id = ids["pad_token_id"]
    model.config.eos_token_id = ids["eos_token_id"]
    model.config.vocab_size = model.config.decoder.vocab_size
    model.generation_config.decoder_start_token_id = ids["bos_token_id"]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.bos_token_id = ids["bos_token_id"]
    return model


def load_model(source: str, *, trust_remote_code: bool = False, revision: str | None = None,
               attn_implementation: str | None = None, what: str = "model") -> PreTrainedModel:
    """A saved seq2seq model (a run's model/, a model folder, an installed package folder or a Hub id), loaded the
    same way by every command (`run` from a pretrained model or on --resume, `evaluate`, `predict`, `attention`):
    in-house architectures registered first, `trust_remote_code` as the recipe says, the local cache before the Hub
    (hub.locations). One ModelError when it will not load, one HubError when it must be downloaded and the Hub
    cannot be reached."""
    from transformers import AutoModelForSeq2SeqLM

    from hfpipe.modeling import register_auto_classes

    register_auto_classes()
    kwargs: dict[str, Any] = dict(trust_remote_code=trust_remote_code,
                                  local_files_only=local_files_only(source, what, revision=revision))
    if revision:
        kwargs["revision"] = revision
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if attn_implementation == "hfpipe":
        from hfpipe.modeling import register_attention_interface

        register_attention_interface()
    try:
        return AutoModelForSeq2SeqLM.from_pretrained(source, **kwargs)
    except ModelError:
        raise
    except Exception as err:
        raise load_error(what, source, err) from None


def _pretrained(recipe: Recipe) -> PreTrainedModel:
    return load_model(resolve_location(recipe.model.pretrained or ""), revision=recipe.model.revision,
                      trust_remote_code=recipe.model.trust_remote_code,
                      attn_implementation=recipe.model.attn_implementation)


def build_model(recipe: Recipe, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The model the recipe describes, with embeddings sized for the tokenizer and generation ids set."""
    if recipe.model.pretrained is not None:
        model = _pretrained(recipe)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
    elif recipe.model.architecture == "encoder-decoder":
        model = _encoder_decoder(recipe, tokenizer)
    else:
        model = _from_config(recipe, tokenizer)
    check_positions(recipe, model.config)
    return model


def check_positions(recipe: Recipe, config: Any) -> None:
    limit = position_limit(config.to_dict())
    if limit is None:
        return
    for key in ("max_source_length", "max_target_length"):
        value = getattr(recipe.data, key)
        if value > limit:
            raise ModelError(f"data.{key} is {value} but the model encodes at most {limit} positions",
                             where=f"data.{key}", hint=f"set data.{key} to {limit} or less")
    if recipe.evaluate.max_new_tokens is not None and recipe.evaluate.max_new_tokens > limit:
        raise ModelError(f"evaluate.max_new_tokens is {recipe.evaluate.max_new_tokens} but the decoder has "
                         f"{limit} positions", where="evaluate.max_new_tokens",
                         hint=f"set evaluate.max_new_tokens to {limit} or less")


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())
