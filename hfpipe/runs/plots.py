"""PNG plots of a run: the loss/metric curves and the metric per source-length bucket."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def plot_curves(log_path: Path, out_path: Path, metric_name: str) -> Path | None:
    """Training loss and the validation metric against the optimizer step."""
    if not log_path.exists():
        return None
    rows = []
    for line in log_path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed run
            continue
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r[f"eval_{metric_name}"]) for r in rows if r.get(f"eval_{metric_name}") is not None]
    if not losses and not evals:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if losses:
        ax.plot(*zip(*losses), color="tab:blue", label="training loss")
        ax.set_ylabel("loss", color="tab:blue")
    ax.set_xlabel("optimizer step")
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o-", color="tab:orange", label=f"validation {metric_name}")
        ax2.set_ylabel(metric_name, color="tab:orange")
    ax.set_title("training curves")
    _save(fig, out_path)
    plt.close(fig)
    return out_path


def plot_length_buckets(buckets: list[dict[str, Any]], metric_name: str, out_path: Path, title: str) -> Path | None:
    """The metric per source-length bucket, with the number of examples on each bar."""
    usable = [b for b in buckets if b.get(metric_name) is not None]
    if not usable:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar([b["bucket"] for b in usable], [b[metric_name] for b in usable], color="tab:green")
    for bar, b in zip(bars, usable):
        ax.annotate(f"n={b['num_samples']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel(metric_name)
    ax.set_title(title)
    _save(fig, out_path)
    plt.close(fig)
    return out_path
