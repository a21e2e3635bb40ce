"""Training throughput on 1 process and on N processes, in one run on the same machine, recipe and data.

    python bench/processes.py [--recipe recipes/translation-en-de.yaml] [--steps 100] [--processes 2] [--repeats 2]

Runs `hfpipe train RECIPE` once on one process and once with `--processes N` (N CPU processes over gloo on a
machine without GPUs, one per GPU otherwise), alternating, and reports global target tokens per second of
training (the train stage's own clock, without start-up, data or tokenizer) and the ratio to one process.
Writes bench/results/processes.md. On a machine with as many cores as processes, more processes are not expected
to be faster: the cores are shared either way; the number is for the record and the setup is what a multi-GPU
launch runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train_once(recipe: str, run_dir: Path, steps: int, processes: int) -> dict:
    cmd = [sys.executable, "-m", "hfpipe", "train", recipe, "--run-dir", str(run_dir), "--json",
           "--set", f"train.max_steps={steps}", "--set", "train.eval_every_steps=null",
           "--set", "train.early_stopping_patience=null", "--set", "train.max_minutes=null"]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    train = json.loads(proc.stdout)["train"]
    world = json.loads((run_dir / "manifest.json").read_text())["distributed"]["world_size"]
    if world != processes:
        sys.exit(f"asked for {processes} processes, the run had {world}")
    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes/translation-en-de.yaml"))
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hfpipe-processes-"))
    speeds: dict[int, list[float]] = {1: [], args.processes: []}
    for r in range(args.repeats):
        for n in speeds:
            print(f"repeat {r + 1}: {n} process(es) ...", file=sys.stderr, flush=True)
            train = train_once(args.recipe, work / f"run-{n}-{r}", args.steps, n)
            speeds[n].append(train["tokens_per_second"])
    one = statistics.median(speeds[1])
    rows = [f"| {n} | {statistics.median(v):,.0f} | {statistics.median(v) / one:.2f}× | "
            f"{', '.join(f'{x:,.0f}' for x in v)} |" for n, v in speeds.items()]
    table = "\n".join([
        f"Recipe {Path(args.recipe).name}, {args.steps} optimizer steps per run, {args.repeats} runs each "
        f"(alternating), {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}.",
        "",
        "| processes | target tokens/s (median) | vs 1 process | each run |",
        "| --- | --- | --- | --- |",
        *rows,
    ])
    out = REPO / "bench/results/processes.md"
    out.write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
