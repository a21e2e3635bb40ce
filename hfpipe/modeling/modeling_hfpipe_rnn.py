"""hfpipe's recurrent encoder-decoder as a Hugging Face model.

* attention "none": Sutskever et al. (2014): the decoder starts from the encoder's final state, its only view of
  the source (the fixed-size bottleneck).
* attention "additive": Bahdanau et al. (2015): before each step the previous decoder state scores every encoder
  annotation; the context (their weighted sum) is fed to the decoder with the previous target word.
* attention "dot": Luong et al. (2015), global attention with the dot score and no input feeding: after each step
  the new decoder state scores the encoder states, and h̃_t = tanh(W_c [c_t; h_t]) predicts the next word.

Generation cache: the `EncoderDecoderCache` that `generate()` creates. Layer l of its self-attention part holds
the decoder state of recurrent layer l after every target token so far, as "keys" (hidden state h) and "values"
(LSTM cell c, or h again for a GRU), each (batch, 1, tokens, hidden): the length is the number of tokens seen,
beam search reorders the batch axis like any key/value cache, and the last entry is the state to continue from.
Layer 0 of the cross-attention part holds the step-independent projections of the encoder states.

Shipped as remote code next to saved models: imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from .attention import AdditiveAttention, DotAttention
from .configuration_hfpipe_rnn import HfpipeRNNConfig
from .seq2seq_common import seq2seq_loss, shift_tokens_right

# An RNN state: (h, c) for an LSTM, h for a GRU; each (num_layers, batch, hidden).
RNNState = tuple[torch.Tensor, torch.Tensor] | torch.Tensor


@dataclass
class HfpipeRNNEncoderOutput(BaseModelOutput):
    """The encoder's output.

    Args:
        last_hidden_state: (batch, source, directions × hidden), the annotations (zeros at padding).
        final_hidden: (batch, num_layers × directions, hidden), the last hidden state of each layer and direction.
        final_cell: (batch, num_layers × directions, hidden), the LSTM cells likewise; None for a GRU.
    """

    final_hidden: torch.Tensor | None = None
    final_cell: torch.Tensor | None = None


def _rnn_class(cell: str) -> type[nn.RNNBase]:
    return nn.LSTM if cell == "lstm" else nn.GRU


class HfpipeRNNEncoder(nn.Module):
    """Embeddings (shared with the decoder), dropout, a (bi)directional multi-layer LSTM or GRU."""

    main_input_name = "input_ids"  # read by generate()

    def __init__(self, config: HfpipeRNNConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = _rnn_class(config.cell)(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ) -> HfpipeRNNEncoderOutput | tuple:
        """
        Args:
            input_ids: (batch, source) token ids.
            attention_mask: (batch, source), 1 for tokens then 0 for padding (right padding only).
            output_attentions, output_hidden_states: accepted for `generate()`; an RNN encoder has neither.

        Returns:
            `HfpipeRNNEncoderOutput`.
        """
        batch, source_length = input_ids.shape
        embedded = self.dropout(self.embed_tokens(input_ids))  # (batch, source, embedding_dim)
        if attention_mask is None:
            annotations, state = self.rnn(embedded)  # (batch, source, directions * hidden)
        else:
            lengths = attention_mask.sum(dim=1)  # (batch,)
            positions = torch.arange(source_length, device=attention_mask.device)
            if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
                raise ValueError(
                    "the RNN encoder needs right-padded inputs (attention_mask = 1s then 0s in every row); got "
                    f"{attention_mask.tolist()[:4]}"
                )
            if int(lengths.min()) == 0:
                raise ValueError(f"every source needs at least one token, got lengths {lengths.tolist()}")
            packed = nn.utils.rnn.pack_padded_sequence(
                embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            packed_annotations, state = self.rnn(packed)
            annotations, _ = nn.utils.rnn.pad_packed_sequence(
                packed_annotations, batch_first=True, total_length=source_length
            )  # (batch, source, directions * hidden)
        hidden, cell = state if isinstance(state, tuple) else (state, None)  # (layers * directions, batch, hidden)
        output = HfpipeRNNEncoderOutput(
            last_hidden_state=annotations,
            final_hidden=hidden.transpose(0, 1),  # (batch, layers * directions, hidden)
            final_cell=None if cell is None else cell.transpose(0, 1),
        )
        return output if return_dict else output.to_tuple()


class HfpipeRNNDecoder(nn.Module):
    """The decoder: its initial state from the encoder, one of three attentions, and a readout layer
    t = tanh(W_o [features]) of width embedding_dim (so the output projection can share the embedding matrix)."""

    def __init__(self, config: HfpipeRNNConfig) -> None:
        super().__init__()
        self.cell = config.cell
        self.attention_type = config.attention
        self.num_layers = config.num_layers
        hidden = config.hidden_size
        directions = 2 if config.bidirectional else 1
        annotation_size = directions * hidden
        self.dropout = nn.Dropout(config.dropout)

        # Initial state: the encoder's final state; both directions joined by tanh(W_s [→h; ←h]) when bidirectional.
        self.bridge = nn.Linear(annotation_size, hidden) if config.bidirectional else None
        self.bridge_cell = nn.Linear(annotation_size, hidden) if config.bidirectional and self.cell == "lstm" else None

        rnn_input = config.embedding_dim
        if self.attention_type == "additive":
            self.attention = AdditiveAttention(query_size=hidden, key_size=annotation_size, attention_size=hidden)
            self.memory_projection = None
            rnn_input += annotation_size  # [E y_{i-1}; c_i]
            readout_input = hidden + annotation_size + config.embedding_dim  # [s_i; c_i; E y_{i-1}]
        elif self.attention_type == "dot":
            self.attention = DotAttention()
            # The dot score needs encoder states as wide as the decoder state.
            self.memory_projection = (
                nn.Linear(annotation_size, hidden, bias=False) if annotation_size != hidden else None
            )
            readout_input = 2 * hidden  # W_c [c_t; h_t]
        else:
            self.attention = None
            self.memory_projection = None
            readout_input = hidden
        self.rnn = _rnn_class(self.cell)(
            rnn_input,
            hidden,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.readout = nn.Linear(readout_input, config.embedding_dim)

    # ---- state ----------------------------------------------------------------------------------------------------
    def initial_state(self, encoder_outputs: HfpipeRNNEncoderOutput) -> RNNState:
        """The encoder's final state -> the decoder's first state, (num_layers, batch, hidden) per tensor."""
        hidden = self._bridge(encoder_outputs.final_hidden, self.bridge, squash=True)
        if self.cell == "gru":
            return hidden
        return hidden, self._bridge(encoder_outputs.final_cell, self.bridge_cell, squash=False)

    def _bridge(self, final: torch.Tensor, projection: nn.Linear | None, *, squash: bool) -> torch.Tensor:
        # final: (batch, layers * directions, hidden), ordered layer by layer, forward direction first
        batch = final.size(0)
        if projection is None:
            return final.transpose(0, 1).contiguous()  # (layers, batch, hidden)
        joined = final.reshape(batch, self.num_layers, -1)  # (batch, layers, 2 * hidden): [→h_l; ←h_l]
        projected = projection(joined)  # (batch, layers, hidden)
        if squash:
            projected = torch.tanh(projected)
        return projected.transpose(0, 1).contiguous()  # (layers, batch, hidden)

    def cached_state(self, cache: EncoderDecoderCache) -> RNNState:
        """The state after the last cached token, read from the self-attention part of the cache."""
        layers = cache.self_attention_cache.layers[: self.num_layers]
        hidden = torch.stack([layer.keys[:, 0, -1] for layer in layers])  # (layers, batch, hidden)
        if self.cell == "gru":
            return hidden
        return hidden, torch.stack([layer.values[:, 0, -1] for layer in layers])

    def _cache_state(self, cache: EncoderDecoderCache, state: RNNState) -> None:
        hidden, cell = state if isinstance(state, tuple) else (state, state)
        for layer_idx in range(self.num_layers):
            cache.self_attention_cache.update(
                hidden[layer_idx][:, None, None, :],  # (batch, 1, 1, hidden)
                cell[layer_idx][:, None, None, :],
                layer_idx,
            )

    # ---- attention memory -------------------------------------------------------------------------------------------
    def memory(
        self, annotations: torch.Tensor, cache: EncoderDecoderCache | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What the attention reads, computed once per source: (keys, values).

        additive: (U_a h_j (batch, source, hidden), h_j (batch, source, directions × hidden));
        dot: (h̄_s, h̄_s), each (batch, source, hidden); none: (None, None).
        """
        if self.attention_type == "none":
            return None, None
        if cache is not None and cache.is_updated.get(0, False):
            layer = cache.cross_attention_cache.layers[0]
            return layer.keys[:, 0], layer.values[:, 0]
        if self.attention_type == "additive":
            keys, values = self.attention.project_keys(annotations), annotations
        else:
            values = annotations if self.memory_projection is None else self.memory_projection(annotations)
            keys = values
        if cache is not None:
            cache.cross_attention_cache.update(keys[:, None], values[:, None], 0)
            cache.is_updated[0] = True
        return keys, values

    # ---- decoding -----------------------------------------------------------------------------------------------
    def forward(
        self,
        embedded: torch.Tensor,
        encoder_outputs: HfpipeRNNEncoderOutput,
        *,
        encoder_attention_mask: torch.Tensor | None,
        cache: EncoderDecoderCache | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            embedded: (batch, target, embedding_dim), the embedded new target tokens (after dropout).
            encoder_outputs: the encoder's output.
            encoder_attention_mask: (batch, source), 1 for tokens and 0 for padding, or None.
            cache: the generation cache, read and updated in place; None to decode `embedded` from the start.

        Returns:
            readout t (batch, target, embedding_dim) and alignment weights (batch, target, source) or None.
        """
        past_length = cache.get_seq_length() if cache is not None else 0
        state = self.cached_state(cache) if past_length > 0 else self.initial_state(encoder_outputs)
        keys, values = self.memory(encoder_outputs.last_hidden_state, cache)
        mask = None if encoder_attention_mask is None else encoder_attention_mask.bool()  # (batch, source)

        if self.attention_type == "additive":
            features, weights = [], []
            for t in range(embedded.size(1)):
                y_prev = embedded[:, t]  # (batch, embedding_dim)
                s_prev = (state[0] if isinstance(state, tuple) else state)[-1]  # (batch, hidden), top layer
                # c_i (batch, annotation_size), α_i (batch, source)
                context, alpha = self.attention(s_prev, values, projected_keys=keys, mask=mask)
                output, state = self.rnn(torch.cat([y_prev, context], dim=-1).unsqueeze(1), state)  # (batch, 1, hidden)
                if cache is not None:
                    self._cache_state(cache, state)
                features.append(torch.cat([output[:, 0], context, y_prev], dim=-1))
                weights.append(alpha)
            features = torch.stack(features, dim=1)  # (batch, target, hidden + 2h + embedding_dim)
            weights = torch.stack(weights, dim=1)  # (batch, target, source)
        else:
            if cache is None:
                outputs, state = self.rnn(embedded, state)  # (batch, target, hidden)
            else:  # one step at a time, to cache the state after every token
                steps = []
                for t in range(embedded.size(1)):
                    output, state = self.rnn(embedded[:, t : t + 1], state)  # (batch, 1, hidden)
                    self._cache_state(cache, state)
                    steps.append(output)
                outputs = torch.cat(steps, dim=1)  # (batch, target, hidden)
            if self.attention_type == "dot":
                # c_t (batch, target, hidden), a_t (batch, target, source)
                contexts, weights = self.attention(outputs, values, mask=mask)
                features = torch.cat([contexts, outputs], dim=-1)  # (batch, target, 2 * hidden): [c_t; h_t]
            else:
                features, weights = outputs, None
        return torch.tanh(self.readout(self.dropout(features))), weights  # (batch, target, embedding_dim)


class HfpipeRNNPreTrainedModel(PreTrainedModel):
    config: HfpipeRNNConfig
    config_class = HfpipeRNNConfig
    base_model_prefix = "hfpipe_rnn"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        """Linear and embedding weights ~ N(0, init_std) (zero padding row, zero biases); recurrent layers: input
        weights Xavier-uniform, recurrent weights orthogonal (as Bahdanau et al.), zero biases."""
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.LSTM, nn.GRU)):
            for name, parameter in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(parameter)
                elif name.startswith("weight_hh"):
                    if getattr(parameter, "_is_hf_initialized", False):  # loaded from a checkpoint
                        continue
                    gates = 4 if isinstance(module, nn.LSTM) else 3
                    for gate in parameter.detach().chunk(gates, dim=0):
                        init.orthogonal_(gate)
                else:
                    init.zeros_(parameter)


class HfpipeRNNForConditionalGeneration(HfpipeRNNPreTrainedModel, GenerationMixin):
    """The recurrent encoder-decoder with its output projection: logits, a loss for `labels`, and `generate()`
    (greedy, beam search, sampling) with the decoder state kept in the cache."""

    _tied_weights_keys = {"lm_head.weight": "encoder.embed_tokens.weight"}
    # The Trainer passes `num_items_in_batch` (for a loss that is right under gradient accumulation).
    accepts_loss_kwargs = True

    def __init__(self, config: HfpipeRNNConfig) -> None:
        super().__init__(config)
        self.encoder = HfpipeRNNEncoder(config)
        self.decoder = HfpipeRNNDecoder(config)
        self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def get_encoder(self) -> HfpipeRNNEncoder:
        return self.encoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(
            labels, pad_token_id=self.config.pad_token_id, decoder_start_token_id=self.config.decoder_start_token_id
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        encoder_outputs: HfpipeRNNEncoderOutput | None = None,
        cache: Cache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> Seq2SeqLMOutput | tuple:
        """
        Args:
            input_ids: (batch, source) source token ids (not needed when `encoder_outputs` is given).
            attention_mask: (batch, source), 1s then 0s (right padding).
            decoder_input_ids: (batch, target) decoder inputs; with a non-empty cache, only the new tokens.
            encoder_outputs: the encoder's output, reused across generation steps.
            cache: an `EncoderDecoderCache`, updated in place; one is created when `use_cache` and none is given.
            labels: (batch, target) target ids, -100 where no loss is wanted; without decoder_input_ids the decoder
                input is labels shifted right behind `decoder_start_token_id`.
            output_attentions: return the alignment weights as `cross_attentions`, a 1-tuple of
                (batch, 1, target, source).
            num_items_in_batch: labelled tokens across gradient-accumulation steps (passed by the Trainer).

        Returns:
            `Seq2SeqLMOutput`: logits (batch, target, vocab), loss, cache, cross_attentions.
        """
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        use_cache = self.config.use_cache if use_cache is None else use_cache
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        if decoder_input_ids is None:
            raise ValueError("pass decoder_input_ids or labels")
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("pass input_ids or encoder_outputs")
            encoder_outputs = self.encoder(input_ids, attention_mask)
        elif not isinstance(encoder_outputs, HfpipeRNNEncoderOutput):
            raise ValueError(
                "encoder_outputs must be the HfpipeRNNEncoderOutput of model.encoder, got "
                f"{type(encoder_outputs).__name__}"
            )
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if not use_cache:
            cache = None
        elif not isinstance(cache, EncoderDecoderCache):
            raise ValueError(f"the RNN keeps its state in an EncoderDecoderCache, got {type(cache).__name__}")

        embedded = self.decoder.dropout(self.encoder.embed_tokens(decoder_input_ids))  # (batch, target, embedding_dim)
        readout, weights = self.decoder(
            embedded, encoder_outputs, encoder_attention_mask=attention_mask, cache=cache
        )  # (batch, target, embedding_dim), (batch, target, source)
        logits = self.lm_head(self.decoder.dropout(readout))  # (batch, target, vocab)
        loss = None if labels is None else seq2seq_loss(logits, labels, num_items_in_batch=num_items_in_batch)
        cross_attentions = (weights.unsqueeze(1),) if output_attentions and weights is not None else None
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=cache,
            cross_attentions=cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["HfpipeRNNForConditionalGeneration", "HfpipeRNNPreTrainedModel"]
