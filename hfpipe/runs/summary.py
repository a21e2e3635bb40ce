"""What one command did to a run (RunSummary), and the run's metrics.json with its plots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpipe.runs.files import json_atomic, read_json
from hfpipe.runs.rundir import RunDir

if TYPE_CHECKING:
    from hfpipe.recipe.schema import Recipe

__all__ = ["RunSummary", "write_metrics"]


@dataclass
class RunSummary:
    run_dir: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    train: dict[str, Any] | None = None
    push: dict[str, Any] | None = None
    model_dir: Path | None = None
    task: str = "translation"
    distributed: dict[str, Any] | None = None
    gates: dict[str, Any] | None = None
    evaluation_dir: Path | None = None  # `hfpipe evaluate` on other data than the run's: where its record is


def write_metrics(run: RunDir, recipe: Recipe, summary: RunSummary, generation: Any) -> None:
    """metrics.json with this command's splits merged over the ones already there, and a length plot per split."""
    from hfpipe.tasks.metrics import metric_signatures

    previous = read_json(run.metrics) or {}
    splits = {**previous.get("splits", {}), **summary.metrics}
    metrics = {"task": recipe.task, "primary_metric": recipe.primary_metric, "splits": splits,
               "signatures": metric_signatures(), "generation": asdict(generation),
               "training": summary.train or previous.get("training")}
    json_atomic(run.metrics, metrics)
    from hfpipe.runs.plots import plot_length_buckets

    key = "bleu" if recipe.task == "translation" else "rougeL"
    for split, m in summary.metrics.items():
        if m.get("by_length"):
            plot_length_buckets(m["by_length"], key, run.path / f"length-{split}.png",
                                f"{key} by source length ({split})")
