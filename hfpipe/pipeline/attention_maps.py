"""Heat maps of where a sequence-to-sequence model looks in the source while it generates.

`plot_attention_maps` translates (or summarizes) one text greedily with `output_attentions=True` and writes one PNG
per decoder layer: a grid of its cross-attention heads for a Transformer, or a single alignment for an RNN with
attention (Bahdanau et al., 2015, figure 3), source tokens across, generated tokens down. For a Transformer with
copy attention it also draws what makes it copy: the copy distribution over the source tokens and the
generate/copy gate for each generated token, with the numbers in a JSON file beside the image.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hfpipe.errors import ModelError


def _cross_attention_per_layer(cross_attentions: Any) -> list[Any]:
    """generate()'s cross_attentions (per step, per layer: (batch, heads, queries, source)) ->
    per layer: (heads, steps, source) for the first sequence; the last query row of each step is the new token
    (without a cache, a step re-reads the whole prefix)."""
    import torch

    steps = [step for step in (cross_attentions or ()) if step]
    if not steps or any(weights is None for step in steps for weights in step):
        raise ModelError(
            "the model returned no cross-attention weights",
            hint="attention maps need an encoder-decoder with cross-attention (an RNN with attention 'additive' or "
            "'dot', a Transformer); a pretrained model may need attn_implementation='eager' or 'hfpipe'",
        )
    layers = len(steps[0])
    return [
        torch.stack([step[layer][0, :, -1, :] for step in steps], dim=1).float().cpu()  # (heads, steps, source)
        for layer in range(layers)
    ]


def _labels(tokenizer: Any, ids: list[int]) -> list[str]:
    # "$" would start matplotlib mathtext; very long pieces would squash the plot.
    return [token.replace("$", r"\$")[:20] for token in _tokens(tokenizer, ids)]


def _tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    return [str(token) for token in tokenizer.convert_ids_to_tokens(ids)]


def _copy_distribution(model: Any, input_ids: Any, attention_mask: Any, sequences: Any) -> tuple[Any, Any] | None:
    """The copy weights (steps, source) and gate logits (steps,) of the first sequence's generated tokens, from one
    teacher-forced pass over what generate() produced (generate() keeps only the standard attention fields; with
    and without the cache the weights are the same); None for a model that does not copy, or whose (older, saved)
    code does not return them."""
    import torch

    if not getattr(model.config, "copy_attention", False):
        return None
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=sequences[:1, :-1],  # (1, steps): the start token and every token but the last
            use_cache=False,
            output_attentions=True,
            return_dict=True,
        )
    weights, gate_logits = getattr(out, "copy_weights", None), getattr(out, "copy_gate_logits", None)
    if weights is None or gate_logits is None:
        return None
    return weights[0].double().cpu(), gate_logits[0, :, 0].double().cpu()  # (steps, source), (steps,)


def _readable_json(record: dict[str, list]) -> str:
    """One key per line and one row of a matrix per line (json's indent puts every number on a line of its own)."""
    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    fields = []
    for key, value in record.items():
        if value and all(isinstance(row, list) for row in value):
            rows = ",\n".join(f"    {dumps(row)}" for row in value)
            fields.append(f"  {dumps(key)}: [\n{rows}\n  ]")
        else:
            fields.append(f"  {dumps(key)}: {dumps(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    temporary = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(temporary, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(temporary, path)


def _plot_copy_distribution(
    weights: Any, gate_logits: Any, source_tokens: list[str], target_tokens: list[str],
    source_labels: list[str], target_labels: list[str], out_dir: Path,
) -> list[Path]:
    """Write copy_distribution.png (the copy weights as a heat map, the gate as a bar per generated token beside
    it) and copy_distribution.json (the same numbers). Returns both paths."""
    import matplotlib.pyplot as plt
    import torch

    generate = torch.sigmoid(gate_logits)  # (steps,) p_gen, the probability of generating rather than copying
    width = min(14.0, 3.5 + 0.3 * len(source_labels))
    height = min(12.0, 1.5 + 0.3 * len(target_labels))
    fig, (heat, gate) = plt.subplots(
        1, 2, figsize=(width, height), sharey=True, layout="constrained",
        gridspec_kw={"width_ratios": [max(len(source_labels), 1), max(2.0, len(source_labels) / 6)]},
    )
    image = heat.imshow(weights.numpy(), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    heat.set_xticks(range(len(source_labels)), source_labels, rotation=90, fontsize=7)
    heat.set_yticks(range(len(target_labels)), target_labels, fontsize=7)
    heat.set_xlabel("source")
    heat.set_ylabel("generated")
    heat.set_title("copy distribution a (each row sums to 1)", fontsize=9)
    fig.colorbar(image, ax=[heat, gate], shrink=0.8, label="copy weight")
    rows = range(len(target_labels))
    generate_values, copy_values = generate.numpy(), 1.0 - generate.numpy()
    gate.barh(rows, generate_values, height=0.8, color="tab:blue", label="generate σ(g)")
    gate.barh(rows, copy_values, left=generate_values, height=0.8, color="tab:orange", label="copy 1 − σ(g)")
    gate.set_xlim(0.0, 1.0)
    gate.set_xticks([0.0, 0.5, 1.0])
    gate.tick_params(axis="y", left=False)
    gate.set_title("generate or copy", fontsize=9)
    gate.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02 - 0.3 / height), fontsize=7, frameon=False)
    fig.suptitle("what the copy attention mixes into each generated token")
    png = out_dir / "copy_distribution.png"
    _save_figure(fig, png)

    record = {
        "source_tokens": source_tokens,
        "generated_tokens": target_tokens,
        "copy_weights": [[float(w) for w in row] for row in weights.tolist()],  # (generated, source)
        "gate_logits": [float(g) for g in gate_logits.tolist()],
        "generate_probability": [float(p) for p in generate.tolist()],  # σ(g); copying gets 1 − σ(g)
    }
    path = out_dir / "copy_distribution.json"
    temporary = path.with_name(f".{path.stem}.tmp.json")
    temporary.write_text(_readable_json(record), encoding="utf-8")
    os.replace(temporary, path)
    return [png, path]


def plot_attention_maps(
    model: Any, tokenizer: Any, text: str, out_dir: Path, *, max_new_tokens: int = 64
) -> list[Path]:
    """Generate greedily from `text` and write cross-attention heat maps under `out_dir`.

    Returns the paths written: `alignment.png` for a model with one layer and one head (the RNN), otherwise
    `cross_attention_layer_<n>.png` per decoder layer with one panel per head; for a model with copy attention also
    `copy_distribution.png` (the copy weights over the source tokens and the generate/copy gate of each generated
    token) and `copy_distribution.json` (source_tokens, generated_tokens, copy_weights (generated × source),
    gate_logits and generate_probability σ(g) per generated token).

    Raises:
        ModelError: the model returns no cross-attention (an RNN without attention, for one).
    """
    import torch

    device = next(model.parameters()).device
    encoded = tokenizer(text, return_tensors="pt")
    input_ids = encoded["input_ids"].to(device)
    attention_mask = encoded["attention_mask"].to(device) if "attention_mask" in encoded else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            generated = model.generate(
                input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                output_attentions=True,
                return_dict_in_generate=True,
            )
            per_layer = _cross_attention_per_layer(getattr(generated, "cross_attentions", None))
            copying = _copy_distribution(model, input_ids, attention_mask, generated.sequences)
    finally:
        model.train(was_training)
    steps = per_layer[0].size(1)
    source_ids, target_ids = input_ids[0].tolist(), generated.sequences[0, -steps:].tolist()
    source_labels = _labels(tokenizer, source_ids)
    target_labels = _labels(tokenizer, target_ids)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    single = len(per_layer) == 1 and per_layer[0].size(0) == 1
    panel_width = min(12.0, 1.5 + 0.3 * len(source_labels))
    panel_height = min(12.0, 1.5 + 0.3 * len(target_labels))
    paths = []
    for layer, weights in enumerate(per_layer):
        heads = weights.size(0)
        columns = min(4, heads)
        rows = math.ceil(heads / columns)
        fig, axes = plt.subplots(
            rows, columns, figsize=(panel_width * columns, panel_height * rows), squeeze=False, layout="constrained"
        )
        for head in range(rows * columns):
            ax = axes[head // columns][head % columns]
            if head >= heads:
                ax.axis("off")
                continue
            image = ax.imshow(weights[head].numpy(), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(len(source_labels)), source_labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(target_labels)), target_labels, fontsize=7)
            if head // columns == rows - 1 or head + columns >= heads:
                ax.set_xlabel("source")
            if head % columns == 0:
                ax.set_ylabel("generated")
            if not single:
                ax.set_title(f"head {head + 1}", fontsize=9)
        fig.colorbar(image, ax=axes, shrink=0.8)
        fig.suptitle("alignment" if single else f"cross-attention, decoder layer {layer + 1}")
        path = out_dir / ("alignment.png" if single else f"cross_attention_layer_{layer + 1}.png")
        _save_figure(fig, path)
        paths.append(path)
    if copying is not None:
        weights, gate_logits = copying
        paths += _plot_copy_distribution(
            weights, gate_logits, _tokens(tokenizer, source_ids), _tokens(tokenizer, target_ids),
            source_labels, target_labels, out_dir,
        )
    return paths
