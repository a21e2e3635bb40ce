"""Heat maps of where a sequence-to-sequence model looks in the source while it generates.

`plot_attention_maps` translates (or summarizes) one text greedily with `output_attentions=True` and writes one PNG
per decoder layer: a grid of its cross-attention heads for a Transformer, or a single alignment for an RNN with
attention (Bahdanau et al., 2015, figure 3), source tokens across, generated tokens down.
"""

from __future__ import annotations

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
    tokens = tokenizer.convert_ids_to_tokens(ids)
    # "$" would start matplotlib mathtext; very long pieces would squash the plot.
    return [str(token).replace("$", r"\$")[:20] for token in tokens]


def plot_attention_maps(
    model: Any, tokenizer: Any, text: str, out_dir: Path, *, max_new_tokens: int = 64
) -> list[Path]:
    """Generate greedily from `text` and write cross-attention heat maps under `out_dir`.

    Returns the PNG paths: `alignment.png` for a model with one layer and one head (the RNN), otherwise
    `cross_attention_layer_<n>.png` per decoder layer with one panel per head.

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
    finally:
        model.train(was_training)
    per_layer = _cross_attention_per_layer(getattr(generated, "cross_attentions", None))
    steps = per_layer[0].size(1)
    source_labels = _labels(tokenizer, input_ids[0].tolist())
    target_labels = _labels(tokenizer, generated.sequences[0, -steps:].tolist())

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
        temporary = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(temporary, dpi=100, bbox_inches="tight")
        plt.close(fig)
        os.replace(temporary, path)
        paths.append(path)
    return paths
