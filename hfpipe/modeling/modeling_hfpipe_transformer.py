"""hfpipe's Transformer (Vaswani et al., 2017, "Attention Is All You Need") as a Hugging Face model.

Shipped as remote code next to saved models: imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)

from .attention import (
    LearnedPositionalEmbedding,
    PositionTable,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)
from .configuration_hfpipe_transformer import HfpipeTransformerConfig
from .copy_attention import CopyGenerator
from .seq2seq_common import seq2seq_loss, shift_tokens_right
from .transformer_layers import HfpipeTransformerDecoderLayer, HfpipeTransformerEncoderLayer


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(batch, key_length) 1/0 or bool mask -> (batch, 1, 1, key_length) bool, True = may attend; None stays None."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError(f"attention masks must be (batch, time), got shape {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


@dataclass
class HfpipeTransformerEncoderOutput(BaseModelOutput):
    """The encoder's output, plus the source token ids when the model copies: `generate()` passes only the
    encoder output to later decoding steps (and expands it for beams), and the copy distribution needs the ids.

    Args:
        source_ids: (batch, source) the encoded token ids, or None when the model does not copy.
    """

    source_ids: torch.LongTensor | None = None


@dataclass
class HfpipeTransformerLMOutput(Seq2SeqLMOutput):
    """`Seq2SeqLMOutput`, plus what a copying model mixes into its log-probabilities, returned with
    `output_attentions=True` (and return_dict) when the model copies, None otherwise:

        log P(w) = log(σ(g) softmax(lm_head(h))(w) + (1 − σ(g)) Σ_{s: x_s = w} a_s)

    Args:
        copy_weights: (batch, target, source) the copy attention a (rows sum to 1; 0 at source padding); with a
            cache, only the new target positions.
        copy_gate_logits: (batch, target, 1) the gate g: σ(g) is the probability of generating from the
            vocabulary, 1 − σ(g) that of copying from the source.
    """

    copy_weights: torch.FloatTensor | None = None
    copy_gate_logits: torch.FloatTensor | None = None


def _positions(config: HfpipeTransformerConfig) -> nn.Module:
    if config.positional_encoding == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model=config.d_model, max_positions=config.max_position_embeddings)
    return LearnedPositionalEmbedding(d_model=config.d_model, max_positions=config.max_position_embeddings)


class HfpipeTransformerEncoder(nn.Module):
    """Token embeddings (shared with the decoder) × √d_model + the encoder's positions, dropout, N encoder layers.

    It owns the shared token embedding so that `generate()`, which calls the encoder alone with `input_ids`, can use
    it. Each stack has its own positions (as in BART and Marian): a source and a target position need not mean the
    same.
    """

    main_input_name = "input_ids"  # read by generate()

    def __init__(self, config: HfpipeTransformerConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.positions = _positions(config)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            HfpipeTransformerEncoderLayer(
                d_model=config.d_model,
                num_heads=config.num_heads,
                ffn_dim=config.ffn_dim,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                norm_first=config.norm_first,
            )
            for _ in range(config.encoder_layers)
        )
        self.final_norm = nn.LayerNorm(config.d_model) if config.norm_first else None
        self.keeps_source_ids = config.copy_attention

    def embed_scaled(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, time) token ids -> (batch, time, d_model) token embeddings × √d_model (for either stack)."""
        return self.embed_tokens(input_ids) * self.embed_scale

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ) -> BaseModelOutput | tuple:
        """
        Args:
            input_ids: (batch, source) token ids.
            attention_mask: (batch, source), 1 for tokens and 0 for padding.

        Returns:
            `HfpipeTransformerEncoderOutput`: last_hidden_state (batch, source, d_model); hidden_states
            (embeddings, then each layer's output) and attentions (per layer, (batch, heads, source, source)) when
            asked for; source_ids (batch, source) when the model copies.
        """
        mask = padding_mask(attention_mask)  # (batch, 1, 1, source)
        tokens = self.embed_scaled(input_ids)  # (batch, source, d_model)
        x = self.dropout(tokens + self.positions(input_ids.size(1)).to(tokens.dtype))  # (batch, source, d_model)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            x, weights = layer(x, mask=mask, need_weights=bool(output_attentions))
            if output_hidden_states:
                hidden_states.append(x)
            if output_attentions:
                attentions.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if output_hidden_states:
                hidden_states[-1] = x
        output = HfpipeTransformerEncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            # Not in the tuple form: its positions are (last_hidden_state, hidden_states, attentions), as callers
            # that index it expect.
            source_ids=input_ids if self.keeps_source_ids and return_dict else None,
        )
        return output if return_dict else output.to_tuple()


class HfpipeTransformerDecoder(nn.Module):
    """The decoder's own positions added to the (already embedded, shared) target token embeddings, dropout,
    N decoder layers."""

    def __init__(self, config: HfpipeTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.positions = _positions(config)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            HfpipeTransformerDecoderLayer(
                d_model=config.d_model,
                num_heads=config.num_heads,
                ffn_dim=config.ffn_dim,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                norm_first=config.norm_first,
                layer_idx=i,
            )
            for i in range(config.decoder_layers)
        )
        self.final_norm = nn.LayerNorm(config.d_model) if config.norm_first else None

    def forward(
        self,
        tokens: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        *,
        position_offset: int = 0,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        """
        Args:
            tokens: (batch, target, d_model), the new target tokens' scaled embeddings.
            encoder_hidden_states: (batch, source, d_model).
            position_offset: the position of the first new token (the number of tokens already in the cache).
            attention_mask: (batch, cached + target) target padding mask, or None.
            encoder_attention_mask: (batch, source) source padding mask, or None.
            cache: the generation cache (updated in place), or None.
        """
        self_mask = padding_mask(attention_mask)  # (batch, 1, 1, cached + target)
        cross_mask = padding_mask(encoder_attention_mask)  # (batch, 1, 1, source)
        positions = self.positions(tokens.size(1), offset=position_offset)  # (target, d_model)
        x = self.dropout(tokens + positions.to(tokens.dtype))  # (batch, target, d_model)
        hidden_states = [x] if output_hidden_states else None
        self_attentions = [] if output_attentions else None
        cross_attentions = [] if output_attentions else None
        for layer in self.layers:
            x, self_weights, cross_weights = layer(
                x,
                encoder_hidden_states,
                self_mask=self_mask,
                cross_mask=cross_mask,
                cache=cache,
                need_weights=bool(output_attentions),
            )
            if output_hidden_states:
                hidden_states.append(x)
            if output_attentions:
                self_attentions.append(self_weights)
                cross_attentions.append(cross_weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if output_hidden_states:
                hidden_states[-1] = x
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x,
            cache=cache,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(self_attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None,
        )


class HfpipeTransformerPreTrainedModel(PreTrainedModel):
    config: HfpipeTransformerConfig
    config_class = HfpipeTransformerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["HfpipeTransformerEncoderLayer", "HfpipeTransformerDecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        """Linear weights and learned positions ~ N(0, init_std); token embeddings ~ N(0, d_model^-0.5) (unit
        variance after the √d_model scale) with a zero padding row; LayerNorm = identity; the sinusoidal table is
        rebuilt from its formula."""
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, PositionTable):  # before nn.Embedding, which it is too
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.d_model**-0.5)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, SinusoidalPositionalEncoding):
            init.copy_(module.table, sinusoidal_table(max_positions=module.max_positions, d_model=module.d_model))

    def tie_weights(self, missing_keys: set[str] | None = None, recompute_mapping: bool = True) -> None:
        """Tie as transformers does, and, in `from_pretrained` (`missing_keys` given), give the decoder the
        encoder's learned positions when the checkpoint has only those: models saved before each stack had its own
        table shared the encoder's."""
        super().tie_weights(missing_keys=missing_keys, recompute_mapping=recompute_mapping)
        if missing_keys is None:
            return
        for name, module in self.named_modules():
            if isinstance(module, HfpipeTransformerModel):
                prefix = f"{name}." if name else ""
                encoder_key, decoder_key = (prefix + key for key in _LEARNED_POSITION_KEYS)
                if decoder_key in missing_keys and encoder_key not in missing_keys:
                    with torch.no_grad():
                        module.decoder.positions.embedding.weight.copy_(module.encoder.positions.embedding.weight)
                    missing_keys.discard(decoder_key)


# Where each stack keeps its learned positions; before, the decoder read the encoder's.
_LEARNED_POSITION_KEYS = ("encoder.positions.embedding.weight", "decoder.positions.embedding.weight")


class HfpipeTransformerModel(HfpipeTransformerPreTrainedModel):
    """The encoder-decoder without the output projection; returns the decoder's last hidden states."""

    def __init__(self, config: HfpipeTransformerConfig) -> None:
        super().__init__(config)
        self.encoder = HfpipeTransformerEncoder(config)
        self.decoder = HfpipeTransformerDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value

    def get_encoder(self) -> HfpipeTransformerEncoder:
        return self.encoder

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # `load_state_dict` of a checkpoint from before each stack had its own learned positions (resuming a run):
        # the decoder starts from the one table both stacks shared. (`from_pretrained` goes through tie_weights.)
        encoder_key, decoder_key = (prefix + key for key in _LEARNED_POSITION_KEYS)
        if encoder_key in state_dict and decoder_key not in state_dict:
            state_dict[decoder_key] = state_dict[encoder_key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Seq2SeqModelOutput | tuple:
        """
        Args:
            input_ids: (batch, source) source token ids (not needed when `encoder_outputs` is given).
            attention_mask: (batch, source), 1 for tokens and 0 for padding.
            decoder_input_ids: (batch, target) decoder inputs; with a cache, only the new tokens.
            decoder_attention_mask: (batch, cached + target) target padding mask (optional: the causal mask already
                keeps right padding from reaching real tokens).
            encoder_outputs: the encoder's output, reused across generation steps.
            cache: an `EncoderDecoderCache`, updated in place; one is created when `use_cache` and none is given.
        """
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        use_cache = self.config.use_cache if use_cache is None else use_cache
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids are required (or pass labels to the ...ForConditionalGeneration model)")

        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("pass input_ids or encoder_outputs")
            encoder_outputs = self.encoder(
                input_ids,
                attention_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )

        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if not use_cache:
            cache = None
        past_length = cache.get_seq_length() if cache is not None else 0
        decoder_outputs = self.decoder(
            self.encoder.embed_scaled(decoder_input_ids),  # (batch, target, d_model), the shared embeddings
            encoder_outputs.last_hidden_state,
            position_offset=past_length,
            attention_mask=decoder_attention_mask,
            encoder_attention_mask=attention_mask,
            cache=cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class HfpipeTransformerForConditionalGeneration(HfpipeTransformerPreTrainedModel, GenerationMixin):
    """The Transformer with its pre-softmax projection: logits over the vocabulary, a loss for `labels`, and
    `generate()` (greedy, beam search, sampling) with a key/value cache."""

    _tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}
    # The Trainer passes `num_items_in_batch` (for a loss that is right under gradient accumulation).
    accepts_loss_kwargs = True

    def __init__(self, config: HfpipeTransformerConfig) -> None:
        super().__init__(config)
        self.model = HfpipeTransformerModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.copy_generator = CopyGenerator(d_model=config.d_model) if config.copy_attention else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.encoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def get_encoder(self) -> HfpipeTransformerEncoder:
        return self.model.encoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(
            labels, pad_token_id=self.config.pad_token_id, decoder_start_token_id=self.config.decoder_start_token_id
        )

    @property
    def logits_are_log_probs(self) -> bool:
        """True when `logits` are already log-probabilities (copy attention): a loss can read them as they are,
        without a second log-softmax over the vocabulary."""
        return bool(self.config.copy_attention)

    def _reorder_cache(self, cache: Cache, beam_idx: torch.Tensor) -> Cache:
        """Beam search's reordering after each step. Every beam of an input attends to the same encoder output,
        so the cross-attention keys and values (and the copy keys) are the same across its beams and
        beam_idx only permutes beams within an input: only the self-attention cache needs reordering. Copying
        the cross-attention cache too took a quarter of beam search's time."""
        if isinstance(cache, EncoderDecoderCache):
            cache.self_attention_cache.reorder_cache(beam_idx)
        else:
            cache.reorder_cache(beam_idx)
        return cache

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> Seq2SeqLMOutput | tuple:
        """
        Args:
            input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs, cache: see
                `HfpipeTransformerModel.forward`.
            labels: (batch, target) target ids, -100 where no loss is wanted; without decoder_input_ids, the decoder
                input is labels shifted right behind `decoder_start_token_id`.
            num_items_in_batch: labelled tokens across gradient-accumulation steps (passed by the Trainer); the loss
                is then a sum divided by it.

        Returns:
            `HfpipeTransformerLMOutput`: logits (batch, target, vocab) (log-probabilities with `copy_attention`),
            loss, cache, and with `output_attentions` the encoder self-attention, decoder masked self-attention and
            cross-attention weights per layer, and for a copying model its copy weights (batch, target, source) and
            gate logits (batch, target, 1) (not in the tuple form, whose positions stay those of
            `Seq2SeqLMOutput`).
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (batch, target, vocab)
        copy_weights = gate_logits = None
        if self.copy_generator is not None:
            source_ids = input_ids if input_ids is not None else getattr(encoder_outputs, "source_ids", None)
            if source_ids is None:
                raise ValueError(
                    "copy_attention needs the source token ids: pass input_ids, or encoder_outputs from this "
                    "model's encoder with return_dict=True"
                )
            keys = None
            if outputs.cache is not None:
                # The encoder output is fixed for a whole generate() call, so its copy keys are too: kept with the
                # cache, which lives exactly as long (and, like the cross-attention keys, is not beam-reordered).
                keys = getattr(outputs.cache, "hfpipe_copy_keys", None)
                if keys is None:
                    keys = self.copy_generator.project_keys(outputs.encoder_last_hidden_state)
                    outputs.cache.hfpipe_copy_keys = keys
            logits, copy_weights, gate_logits = self.copy_generator(
                outputs.last_hidden_state, outputs.encoder_last_hidden_state, source_ids, attention_mask, logits,
                keys=keys, need_weights=bool(output_attentions) and return_dict,
            )  # (batch, target, vocab) log-probabilities; (batch, target, source); (batch, target, 1)
        loss = None if labels is None else seq2seq_loss(logits, labels, num_items_in_batch=num_items_in_batch)
        output = HfpipeTransformerLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
            copy_weights=copy_weights,
            copy_gate_logits=gate_logits,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "HfpipeTransformerForConditionalGeneration",
    "HfpipeTransformerModel",
    "HfpipeTransformerPreTrainedModel",
]
