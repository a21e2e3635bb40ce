"""The length experiment: BLEU per source-length bucket for an RNN without attention, an RNN with additive
attention and the Transformer, trained on the same en→de data for the same wall-clock budget.

    python bench/length_experiment.py [--minutes 20] [--threads 1] [--test FILE]

Writes bench/results/length.md (the table) and bench/results/length.png (BLEU by source-length bucket, a line per
model) and prints the table. Each model trains with `train.max_minutes`, so all
three get the same time, whatever their speed per step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"RNN, no attention": "rnn-no-attention-en-de.yaml", "RNN + additive attention": "rnn-attention-en-de.yaml",
           "Transformer": "transformer-en-de.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per run (OMP_NUM_THREADS); 1 leaves a core free for other work")
    parser.add_argument("--test", default=str(REPO / "data/ddtp-en-de.test.jsonl.gz"), help="test file (jsonl.gz)")
    parser.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="hfpipe-length-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    results = {}
    for label, recipe in RECIPES.items():
        run_dir = work / Path(recipe).stem
        cmd = [sys.executable, "-m", "hfpipe", "run", str(REPO / "recipes" / recipe), "--run-dir", str(run_dir),
               "--set", f"train.max_minutes={args.minutes}", "--set", "train.max_steps=null",
               "--set", f"data.files.test={args.test}", "--json"]
        print("running", label, "...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
        summary = json.loads(proc.stdout)
        results[label] = (summary["metrics"]["test"], summary["train"])
    buckets = [b["bucket"] for b in next(iter(results.values()))[0]["by_length"]]
    lines = ["| model | params | steps in budget | " + " | ".join(f"BLEU {b} words" for b in buckets) + " | BLEU all |",
             "| --- | --- | --- | " + " | ".join("---" for _ in buckets) + " | --- |"]
    for label, (metrics, train) in results.items():
        cells = [f"{b['bleu']:.2f}" if b["bleu"] is not None else "–" for b in metrics["by_length"]]
        lines.append(f"| {label} | {train['parameters'] / 1e6:.1f}M | {train['steps']} | " + " | ".join(cells)
                     + f" | {metrics['bleu']:.2f} |")
    counts = [str(b["num_samples"]) for b in next(iter(results.values()))[0]["by_length"]]
    lines.append("| test sentences per bucket | | | " + " | ".join(counts) + " | |")
    lines.append("")
    threads = f", {args.threads} thread(s) each" if args.threads else ""
    lines.append(f"Budget: {args.minutes:g} minutes of training per model on this machine{threads}; beam 4; "
                 f"test file {Path(args.test).name}.")
    table = "\n".join(lines)
    out = REPO / "bench" / "results" / "length.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    _plot(results, out.with_suffix(".png"), args.minutes)
    print(table)


def _plot(results: dict, path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, (metrics, _train) in results.items():
        points = [(b["bucket"], b["bleu"]) for b in metrics["by_length"] if b["bleu"] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    ax.set_title(f"BLEU by source length, {minutes:g} training minutes per model")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
