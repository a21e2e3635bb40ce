"""Score one trained model under several generation settings, on one split (validation: settings are chosen there,
never on test).

    python bench/generation_sweep.py RUN_DIR [--split validation] \
        --try "evaluate.length_penalty=1.5" \
        --try "evaluate.length_penalty=2.0 evaluate.min_length_ratio=0.8"

Each --try is a space-separated list of recipe overrides, scored with `hfpipe evaluate --json` (results recorded in
RUN_DIR/evaluations/sweep-N/). Prints a markdown table: the task's metrics and sacreBLEU's length ratio
(prediction / reference tokens) for each setting, the run's own recipe first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

COLUMNS = {"translation": ("bleu", "chrf", "length_ratio"), "summarization": ("rougeL", "rouge1", "length_ratio")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--try", dest="tries", action="append", default=[], help="overrides, space-separated")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    for i, overrides in enumerate(["", *args.tries]):
        sets = [arg for o in overrides.split() for arg in ("--set", o)]
        cmd = [sys.executable, "-m", "hfpipe", "evaluate", args.run_dir, "--split", args.split, "--json",
               "--name", f"sweep-{i}", *sets]
        print("scoring:", overrides or "(the run's recipe)", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{overrides} failed:\n{proc.stderr[-3000:]}")
        summary = json.loads(proc.stdout)
        rows.append((overrides or "(recipe)", summary["metrics"][args.split]))
    task = "translation" if "chrf" in rows[0][1] else "summarization"
    cols = COLUMNS[task]
    lines = [f"| settings ({Path(args.run_dir).name}, {args.split}) | " + " | ".join(cols) + " |",
             "| --- | " + " | ".join("---" for _ in cols) + " |"]
    for label, metrics in rows:
        lines.append(f"| {label} | " + " | ".join(f"{metrics.get(c, float('nan')):.4g}" for c in cols) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
