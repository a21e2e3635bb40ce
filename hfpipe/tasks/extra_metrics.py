"""Metrics beyond the built-in sacreBLEU/ROUGE ones, loaded with Hugging Face `evaluate` (`evaluate.extra_metrics`).

The built-in metrics stay as they are (offline, exact, computed by the reference libraries); these are reported
next to them. Each entry is what `evaluate.load` takes: a local metric script (a `.py` file or a folder holding
`<name>.py`) or, when downloads are allowed (HF_HUB_OFFLINE unset), a metric on the Hub. They are loaded before
training, so one that cannot be loaded fails the run at once, not after an hour of training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hfpipe.errors import RecipeError

BUILT_IN = {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu_rouge_f1", "length_ratio", "pred_words",
            "ref_words", "num_samples", "by_length", "seconds"}


def load_extra_metrics(specs: Sequence[str]) -> list[tuple[str, Any]]:
    """(name, evaluate module) for each spec; a RecipeError naming the metric when one cannot be loaded."""
    if not specs:
        return []
    import evaluate

    from hfpipe.hub.locations import hub_downloads_allowed

    loaded = []
    for i, spec in enumerate(specs):
        local = Path(spec).exists()
        if not local and not hub_downloads_allowed():
            raise RecipeError(f"evaluate.extra_metrics[{i}]: {spec!r} is not a local metric script, and hfpipe is "
                              "offline: HF_HUB_OFFLINE is set (a Hub metric would be downloaded)",
                              hint="unset HF_HUB_OFFLINE to download it, or point to a local metric script")
        try:
            # In memory: every process computes it, and evaluate's default cache files would collide between them.
            module = evaluate.load(spec, keep_in_memory=True)
        except Exception as err:  # noqa: BLE001 - any failure to load is the same user-facing problem
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise RecipeError(f"evaluate.extra_metrics[{i}]: cannot load the metric {spec!r}: {text}",
                              hint="a local metric script must define an evaluate.Metric subclass; a Hub metric "
                                   "needs the network (HF_HUB_OFFLINE unset)") from None
        loaded.append((Path(spec).stem if local else spec.rsplit("/", 1)[-1], module))
    return loaded


def compute_extra_metrics(modules: Sequence[tuple[str, Any]], predictions: Sequence[str],
                          references: Sequence[str]) -> dict[str, float]:
    """The numbers each module returns; a name that collides with a built-in metric is prefixed with the module's."""
    out: dict[str, float] = {}
    for name, module in modules:
        try:
            result = module.compute(predictions=list(predictions), references=list(references))
        except Exception as err:  # noqa: BLE001
            raise RecipeError(f"the extra metric {name!r} failed on the predictions: {err}",
                              hint="check that it takes predictions= and references= as lists of strings") from None
        for key, value in (result or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{name}_{key}" if key in BUILT_IN or key in out else key] = round(float(value), 4)
    return out
