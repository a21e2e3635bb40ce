"""hfpipe against transformers' example script on the same model: training and evaluation speed, memory and
start-up, measured side by side in one run; and how hfpipe's data path scales with the corpus.

    python bench/speed_vs_examples.py ../shared/anchors            # ~25 minutes on 2 CPU cores
    python bench/speed_vs_examples.py ../shared/anchors --parts scale --scale-rows 20000,200000,2000000

Both sides train the same model (the 7.7M MarianMT and 8k Unigram tokenizer that the anchors'
`make_tiny_models.py` builds, loaded by both as a pretrained folder) on the same data (`--data`, default
`../shared/data`), with the same batch size in sequences (32), sequence limits (128), learning rate schedule and
number of steps. The example script (`run_translation.py`, patched for transformers 5.x in the anchors folder)
evaluates its own trained model on the validation split; `hfpipe evaluate` evaluates that same model on the same
rows, so the two evaluation rows compare identical weights. Installs nothing: it runs the Python it is started
with (which needs what hfpipe and the example script need) and prints a table of ratios (hfpipe ÷ example),
also written to `bench/results/speed_vs_examples.md`.

Wall times on shared machines vary by up to ±40% between runs; the ratios are measured in one run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
EVAL_ROWS = 500  # the first 500 validation rows, on both sides


# --------------------------------------------------------------------------------------------- helpers
def run_timed(cmd: list[str], *, log: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
              stdout: Path | None = None) -> dict:
    """Run `cmd` under /usr/bin/time: wall seconds, peak RSS (GB) and CPU use (% of one core). Output goes to
    `log` (stdout to `stdout` when given)."""
    stats = log.with_suffix(".time")
    full = ["/usr/bin/time", "-f", "%e %M %P", "-o", str(stats), *cmd]
    with log.open("w") as err, (stdout or log).open("w" if stdout else "a") as out:
        rc = subprocess.call(full, stdout=out if stdout else err, stderr=err, cwd=cwd,
                             env={**os.environ, **(env or {})})
    if rc != 0:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}\nsee {log}")
    wall, rss_kb, cpu = stats.read_text().split()[-3:]
    return {"wall": float(wall), "rss_gb": int(rss_kb) / 1024**2, "cpu": cpu}


def min_wall(cmd: list[str], *, cwd: Path | None = None, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak() -> dict[str, float]:
    """GFLOP/s of a large square matmul, fp32 and bf16, on this machine now (the MFU denominators)."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
        for _ in range(2):
            a @ b
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            a @ b
            n += 1
        out[name] = 2 * 1024**3 * n / (time.perf_counter() - start) / 1e9
    return out


def flops_per_target_token(model_dir: Path, train_file: Path, *, rows: int = 128) -> float:
    """Training FLOPs (forward + backward, counted by torch's FlopCounterMode) per non-padding target token, over
    `rows` unpadded training pairs: the "model FLOPs" of MFU, so padding does not count as useful work."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    pairs = []
    with gzip.open(train_file, "rt", encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["translation"]
            pairs.append((t["en"], t["de"]))
            if len(pairs) == rows:
                break
    flops = tokens = 0
    for en, de in pairs:
        enc = tok(en, text_target=de, max_length=128, truncation=True, return_tensors="pt")
        with FlopCounterMode(display=False) as counter:
            model(**enc).loss.backward()
        flops += counter.get_total_flops()
        tokens += enc["labels"].numel()
    return flops / tokens


def mean_target_tokens(model_dir: Path, train_file: Path) -> float:
    """Mean tokenized target length (with </s>, cut at 128) over the training file: the example script draws its
    batches uniformly, so its non-padding target tokens are steps × 32 × this (to within ~1% at 100 steps)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    with gzip.open(train_file, "rt", encoding="utf-8") as f:
        targets = [json.loads(line)["translation"]["de"] for line in f]
    lengths = [len(x) for x in tok(text_target=targets, max_length=128, truncation=True)["input_ids"]]
    return statistics.fmean(lengths)


def hfpipe_recipe(path: Path, data: Path, model_dir: Path, *, steps: int, precision: str, beams: int = 1) -> Path:
    """A recipe with the example script's settings: batch 32 sequences (no token budget), lr 1e-3 linear with
    10% warm-up, no label smoothing or weight decay, greedy validation with up to 128 new tokens."""
    path.write_text(json.dumps({
        "name": path.stem, "task": "translation",
        "data": {"files": {s: str(data / f"ddtp-en-de.{s}.jsonl.gz") for s in ("train", "validation", "test")},
                 "source_lang": "en", "target_lang": "de", "max_source_length": 128, "max_target_length": 128},
        "tokenizer": {"from": str(model_dir)},
        "model": {"pretrained": str(model_dir)},
        "train": {"max_steps": steps, "batch_size": 32, "batch_tokens": None, "learning_rate": 1e-3,
                  "lr_scheduler": "linear", "warmup_steps": steps // 10, "label_smoothing": 0.0, "weight_decay": 0.0,
                  "mixed_precision": precision, "log_every_steps": 10, "seed": 42},
        # 127 new tokens: the example script's max_length 128 counts the decoder start token.
        "evaluate": {"splits": ["validation"], "num_beams": beams, "max_new_tokens": 127, "batch_size": 32,
                     "no_repeat_ngram_size": 0, "length_penalty": 1.0, "max_samples": EVAL_ROWS},
        "push": {"enabled": False},
    }, indent=1))
    return path


def hfpipe_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# --------------------------------------------------------------------------------------------- parts
def setup(work: Path, anchors: Path, data: Path) -> tuple[Path, Path]:
    (work / "data").mkdir(parents=True, exist_ok=True)
    cwd = work / "cwd"
    cwd.mkdir(exist_ok=True)
    for f in data.glob("ddtp-en-de.*.jsonl.gz"):
        target = work / "data" / f.name.replace(".jsonl.gz", ".json")
        if not target.exists():
            with gzip.open(f, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    shutil.copytree(anchors / "offline_metrics", cwd, dirs_exist_ok=True)  # ./sacrebleu/sacrebleu.py for evaluate.load
    models = work / "models"
    if not (models / "mt" / "config.json").exists():
        subprocess.run([PY, str(anchors / "make_tiny_models.py"), "--data-dir", str(data), "--out", str(models)],
                       check=True, stdout=subprocess.DEVNULL)
    return models / "mt", cwd


def example_cmd(anchors: Path, work: Path, model: Path, out: Path, *, train_steps: int | None, beams: int) -> list[str]:
    cmd = [PY, str(anchors / "run_translation.py"), "--model_name_or_path", str(model), "--source_lang", "en",
           "--target_lang", "de", "--train_file", str(work / "data/ddtp-en-de.train.json"),
           "--validation_file", str(work / "data/ddtp-en-de.validation.json"), "--max_source_length", "128",
           "--max_target_length", "128", "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "32",
           "--do_eval", "--predict_with_generate", "--num_beams", str(beams), "--report_to", "none",
           "--max_eval_samples", str(EVAL_ROWS),
           "--seed", "42", "--output_dir", str(out), "--save_strategy", "no", "--logging_steps", "10"]
    if train_steps:
        cmd += ["--do_train", "--max_steps", str(train_steps), "--learning_rate", "1e-3",
                "--warmup_steps", str(train_steps // 10)]
    return cmd


def part_train_eval(args: argparse.Namespace, work: Path, model: Path, cwd: Path) -> list[tuple]:
    from hfpipe.pipeline.distributed import resolve_mixed_precision

    rows: list[tuple] = []
    steps = args.steps
    train_file = args.data / "ddtp-en-de.train.jsonl.gz"
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HFPIPE_CACHE": str(work / "cache")}
    peak = matmul_peak()
    per_token = flops_per_target_token(model, train_file)
    mean_tgt = mean_target_tokens(model, train_file)
    print(f"matmul peak fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; "
          f"{per_token / 1e6:.1f} MFLOP per target token (fwd+bwd)", flush=True)

    # --- the example script: train + greedy validation in one process (its whole-run peak RSS)
    ex_out = work / "ex"
    shutil.rmtree(ex_out, ignore_errors=True)
    ex = run_timed(example_cmd(args.anchors, work, model, ex_out, train_steps=steps, beams=1), log=work / "ex.log",
                   cwd=cwd, env=env)
    ex_train = json.loads((ex_out / "train_results.json").read_text())
    ex_tok_s = steps * 32 * mean_tgt / ex_train["train_runtime"]
    print(f"example: {ex_tok_s:,.0f} target tok/s, peak RSS {ex['rss_gb']:.2f} GB", flush=True)

    # --- hfpipe: the same model, data and settings; fp32, then `auto` where it resolves to something else
    precisions = ["no"]
    if resolve_mixed_precision("auto") != "no":
        precisions.append("auto")
    hf = {}
    for precision in precisions:
        recipe = hfpipe_recipe(work / f"hf-{precision}.json", args.data, model, steps=steps, precision=precision)
        run_dir = work / f"hf-{precision}"
        shutil.rmtree(run_dir, ignore_errors=True)
        res = run_timed([PY, "-m", "hfpipe", "run", str(recipe), "--run-dir", str(run_dir), "--no-push"],
                        log=work / f"hf-{precision}.log", env=env)
        stages = json.loads((run_dir / "stages.json").read_text())
        train = stages["train"]["result"]
        hf[precision] = {**res, "tok_s": train["tokens_per_second"], "mp": train["mixed_precision"]}
        print(f"hfpipe ({precision} → {train['mixed_precision']}): {train['tokens_per_second']:,.0f} target tok/s, "
              f"peak RSS {res['rss_gb']:.2f} GB", flush=True)

    # --- evaluation, on one model that has learnt to stop (after `steps` steps it writes 127 tokens for every
    # input, which measures nothing but the cost of a decoding step): trained with the same settings for
    # --eval-model-steps, then evaluated by the example script and by hfpipe on the same validation rows.
    eval_run = work / "eval-model"
    if not (eval_run / "model" / "config.json").exists():
        recipe = hfpipe_recipe(work / "eval-model.json", args.data, model, steps=args.eval_model_steps, precision="no")
        shutil.rmtree(eval_run, ignore_errors=True)
        run_timed([PY, "-m", "hfpipe", "train", str(recipe), "--run-dir", str(eval_run)], log=work / "eval-model.log",
                  env=env)
    trained = eval_run / "model"
    ex_eval, hf_eval = {}, {}
    recipe = hfpipe_recipe(work / "hf-eval.json", args.data, model, steps=steps, precision="no")
    for beams in (1, 4):
        out = work / f"ex-eval-b{beams}"
        shutil.rmtree(out, ignore_errors=True)
        run_timed(example_cmd(args.anchors, work, trained, out, train_steps=None, beams=beams),
                  log=work / f"ex-eval-b{beams}.log", cwd=cwd, env=env)
        ex_eval[beams] = json.loads((out / "eval_results.json").read_text())
        record = work / f"hf-eval-b{beams}.json"
        res = run_timed([PY, "-m", "hfpipe", "evaluate", str(trained), "--recipe", str(recipe), "--split",
                         "validation", "--set", f"evaluate.num_beams={beams}", "--json"],
                        log=work / f"hf-eval-b{beams}.log", env=env, stdout=record)
        metrics = json.loads(record.read_text())["metrics"]["validation"]
        hf_eval[beams] = {"seconds": metrics["seconds"], "bleu": metrics["bleu"], "rss_gb": res["rss_gb"]}
        print(f"beams {beams}: example {ex_eval[beams]['eval_runtime']:.1f}s BLEU {ex_eval[beams]['eval_bleu']}, "
              f"hfpipe {metrics['seconds']:.1f}s BLEU {metrics['bleu']}", flush=True)

    n_val = ex_eval[1].get("eval_samples", EVAL_ROWS)
    fp32 = hf["no"]
    mfu = lambda tok_s, prec: tok_s * per_token / 1e9 / peak["bf16" if prec == "bf16" else "fp32"]  # noqa: E731
    # The peak again after the runs, the larger of the two counts: a busy moment at the start would otherwise
    # inflate every MFU figure.
    peak = {k: max(v, matmul_peak()[k]) for k, v in peak.items()}
    rows.append(("training, target tokens/s (fp32)", f"{ex_tok_s:,.0f}", f"{fp32['tok_s']:,.0f}",
                 fp32["tok_s"] / ex_tok_s, "≥ 3×"))
    if "auto" in hf:
        a = hf["auto"]
        rows.append((f"training, target tokens/s (auto → {a['mp']})", f"{ex_tok_s:,.0f}", f"{a['tok_s']:,.0f}",
                     a["tok_s"] / ex_tok_s, "≥ 3×"))
    else:
        rows.append(("training, `auto` precision", "", "fp32 (what `auto` picks on a CPU: README, bf16 on a CPU)",
                     None, ""))
    rows.append(("training MFU (fp32 matmul peak)", f"{mfu(ex_tok_s, 'no'):.0%}", f"{mfu(fp32['tok_s'], 'no'):.0%}",
                 mfu(fp32["tok_s"], "no") / mfu(ex_tok_s, "no"), "≥ 60%"))
    if "auto" in hf:
        a = hf["auto"]
        rows.append((f"training MFU ({a['mp']} matmul peak)", "", f"{mfu(a['tok_s'], a['mp']):.0%}", None, "≥ 60%"))
    for beams, ex_e in ex_eval.items():
        ex_rate = n_val / ex_e["eval_runtime"]
        hf_rate = n_val / hf_eval[beams]["seconds"]
        rows.append((f"evaluation {'greedy' if beams == 1 else 'beam 4'}, examples/s (BLEU)",
                     f"{ex_rate:.1f} ({ex_e['eval_bleu']:.2f})", f"{hf_rate:.1f} ({hf_eval[beams]['bleu']:.2f})",
                     hf_rate / ex_rate, "≥ 3×, same score"))
    rows.append(("peak RSS of train + greedy evaluation, GB", f"{ex['rss_gb']:.2f}", f"{fp32['rss_gb']:.2f}",
                 fp32["rss_gb"] / ex["rss_gb"], "≤ 1×"))
    if "auto" in hf:
        a = hf["auto"]
        rows.append((f"peak RSS of train + greedy evaluation, GB (auto → {a['mp']})", f"{ex['rss_gb']:.2f}",
                     f"{a['rss_gb']:.2f}", a["rss_gb"] / ex["rss_gb"], "≤ 1×"))
    extra = (f"Model: MarianMT 7.7M from `make_tiny_models.py`; {steps} steps of 32 sequences. Evaluation: the same "
             f"model trained {args.eval_model_steps} steps with these settings, the first {n_val} validation rows, "
             "max 127 new tokens (the example's max_length 128), batch 32; the example script with the checkpoint's "
             "generation config, hfpipe with beam early stopping. Peak RSS: the runs of the first two rows, "
             f"training plus greedy evaluation of those rows. Matmul peak measured in this run: fp32 {peak['fp32']:.0f} GFLOP/s, "
             f"bf16 {peak['bf16']:.0f} GFLOP/s; {per_token / 1e6:.1f} MFLOP per target token (forward + backward, "
             "FlopCounterMode, unpadded). The example's tokens/s is steps × 32 × the mean target length "
             f"({mean_tgt:.1f}) ÷ its train_runtime.")
    return rows + [("__note__", extra)]


def part_startup(args: argparse.Namespace, work: Path, cwd: Path) -> list[tuple]:
    recipe = REPO / "recipes" / "translation-en-de.yaml"
    ex_help = min_wall([PY, str(args.anchors / "run_translation.py"), "--help"], cwd=cwd)
    hf_help = min_wall([PY, "-m", "hfpipe", "--help"])
    hf_validate = min_wall([PY, "-m", "hfpipe", "validate", str(recipe)])
    return [("start-up: `--help`, s (min of 3)", f"{ex_help:.2f}", f"{hf_help:.2f}", ex_help / hf_help, "≥ 10× faster"),
            ("start-up: `hfpipe validate` vs example `--help`, s", f"{ex_help:.2f}", f"{hf_validate:.2f}",
             ex_help / hf_validate, "≥ 10× faster")]


def make_corpus(src: Path, out: Path, rows: int) -> None:
    """`rows` pairs made by repeating the shipped training file, each repeat with its own ids."""
    with gzip.open(src, "rt", encoding="utf-8") as f:
        base = [json.loads(line) for line in f if line.strip()]
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as f:
        for i in range(rows):
            row = dict(base[i % len(base)])
            row["id"] = f"{row.get('id', i)}#{i // len(base)}"
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def part_scale(args: argparse.Namespace, work: Path) -> list[tuple]:
    """`hfpipe data` then the tokenizer and tokenized-data stages on growing corpora, then the same again (a
    cache hit): wall seconds, rows/s, CPU use and peak RSS of each."""
    rows = []
    for n in args.scale_rows:
        corpus = work / f"scale-{n}.jsonl.gz"
        if not corpus.exists():
            make_corpus(args.data / "ddtp-en-de.train.jsonl.gz", corpus, n)
        recipe = work / f"scale-{n}.json"
        recipe.write_text(json.dumps({
            "name": f"scale-{n}", "task": "translation",
            "data": {"files": {"train": str(corpus), "validation": str(args.data / "ddtp-en-de.validation.jsonl.gz"),
                               "test": str(args.data / "ddtp-en-de.test.jsonl.gz")},
                     "source_lang": "en", "target_lang": "de", "max_source_length": 128, "max_target_length": 128},
            "tokenizer": {"train": {"type": "unigram", "vocab_size": 8000}},
            "model": {"architecture": "hfpipe-transformer"}, "train": {"max_steps": 1}}))
        cache = work / f"scale-cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        env = {"HF_HUB_OFFLINE": "1", "HFPIPE_CACHE": str(cache)}
        prepare = ("import sys; from pathlib import Path; from hfpipe.recipe.loading import load_recipe; "
                   "from hfpipe.runs.rundir import RunDir; from hfpipe.pipeline.runner import prepare; from hfpipe.runs.summary import RunSummary; "
                   "from hfpipe.runs.reporting import Reporter; from accelerate import Accelerator; "
                   "import json; r = load_recipe(Path(sys.argv[1])); d = RunDir(Path(sys.argv[2])); "
                   "d.path.mkdir(parents=True, exist_ok=True); "
                   "s = RunSummary(run_dir=d.path, metrics={}, stage_seconds={}, model_dir=d.model, task='translation'); "
                   "import threading, time; peak = [0]\n"
                   "def watch():\n"
                   "    while True:\n"
                   "        kb = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon')]\n"
                   "        peak[0] = max(peak[0], kb[0] if kb else 0); time.sleep(0.05)\n"
                   "threading.Thread(target=watch, daemon=True).start()\n"
                   "prepare(r, d, Accelerator(cpu=True), Reporter(), s); "
                   "print(json.dumps({**s.stage_seconds, 'anon_gb': peak[0] / 1024**2}))")
        for attempt in ("cold", "cached"):
            run_dir = work / f"scale-run-{n}-{attempt}"
            shutil.rmtree(run_dir, ignore_errors=True)
            log = work / f"scale-{n}-{attempt}.log"
            res = run_timed([PY, "-c", prepare, str(recipe), str(run_dir)], log=log, env=env)
            stages = json.loads(log.read_text().strip().splitlines()[-1])
            anon = stages.pop("anon_gb")
            rows.append((f"{n:,} pairs, {attempt}", f"{res['wall']:.1f}", f"{n / res['wall']:,.0f}", res["cpu"],
                         f"{res['rss_gb']:.2f}", f"{anon:.2f}", ", ".join(f"{k} {v:.1f}" for k, v in stages.items())))
            print(rows[-1], flush=True)
    return rows


# --------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("anchors", type=Path, help="the example scripts' folder (../shared/anchors)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eval-model-steps", type=int, default=600,
                        help="training steps of the model both sides evaluate")
    parser.add_argument("--parts", default="train,startup,scale")
    parser.add_argument("--scale-rows", type=lambda s: [int(x) for x in s.split(",")], default=[20_000, 200_000])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "hfpipe-speed")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "speed_vs_examples.md")
    args = parser.parse_args()
    args.anchors, args.data = args.anchors.resolve(), args.data.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    model, cwd = setup(args.work, args.anchors, args.data)

    import torch

    lines = [f"# hfpipe vs run_translation.py, same model ({time.strftime('%Y-%m-%d')})", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"Python {platform.python_version()}. Command: `python bench/speed_vs_examples.py "
             f"{' '.join(sys.argv[1:])}`. Wall times here vary by up to ±40% between runs; ratios are from one run "
             f"(load average at the start: {os.getloadavg()[0]:.1f}).",
             ""]
    table: list[tuple] = []
    if "train" in parts:
        table += part_train_eval(args, args.work, model, cwd)
    if "startup" in parts:
        table += part_startup(args, args.work, cwd)
    notes = [r[1] for r in table if r[0] == "__note__"]
    table = [r for r in table if r[0] != "__note__"]
    if table:
        lines += ["| measure | example script | hfpipe | hfpipe ÷ example | goal |", "| --- | --- | --- | --- | --- |"]
        for name, ex, hf, ratio, goal in table:
            lines.append(f"| {name} | {ex} | {hf} | {'' if ratio is None else f'{ratio:.2f}×'} | {goal} |")
        lines += ["", *notes, ""]
    if "scale" in parts:
        lines += ["## Data path: `data` + tokenizer + tokenized splits", "",
                  "| corpus | wall s | pairs/s | CPU (of 200%) | peak RSS GB | peak anonymous GB | stages (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {' | '.join(r)} |" for r in part_scale(args, args.work)]
        lines += ["", "Peak RSS counts the pages of memory-mapped Arrow files the process has read (the kernel drops "
                  "them under pressure); peak anonymous memory (RssAnon, sampled every 50 ms) is what the process "
                  "itself holds.", ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
