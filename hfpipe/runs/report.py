"""Markdown for people reading CI: a run's report (`hfpipe report RUN --md`, fit for $GITHUB_STEP_SUMMARY or a pull
request comment), and the tables of `hfpipe runs list/compare --md`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hfpipe.runs.files import read_json_lenient
from hfpipe.runs.history import read_run

_TASK_KEYS = {"translation": ("bleu", "chrf", "rougeL", "bleu_rouge_f1", "length_ratio"),
              "summarization": ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "length_ratio")}


def cell(value: Any, limit: int = 160) -> str:
    """A table cell: numbers to 4 significant digits, text on one line, pipes escaped, long text cut."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def runs_markdown(runs: Sequence[Any]) -> str:
    return table(["run", "recipe", "started", "task", "metric", "value", "minutes", "gates", "pushed"],
                 [[r.name, r.recipe, (r.started or "")[:19].replace("T", " "), r.task,
                   f"{r.split} {r.metric}" if r.metric else None, r.value,
                   round(r.duration_s / 60, 1) if r.duration_s is not None else None, r.gates, r.pushed]
                  for r in runs])


def compare_markdown(comparison: dict[str, Any]) -> str:
    a, b = comparison["a"], comparison["b"]
    parts = [f"**A** `{a['name']}` vs **B** `{b['name']}`", "", "### Metrics (Δ = B − A)", "",
             table(["split", "metric", "A", "B", "Δ"],
                   [[m["split"], m["metric"], m["a"], m["b"], m["delta"]] for m in comparison["metrics"]]),
             "", "### Recipe differences", ""]
    if comparison["recipe_changes"]:
        parts.append(table(["key", "A", "B"], [[c["key"], c["a"], c["b"]] for c in comparison["recipe_changes"]]))
    else:
        parts.append("The resolved recipes are the same.")
    return "\n".join(parts) + "\n"


def _gate_section(gates: dict[str, Any]) -> list[str]:
    out = [f"## Gates ({gates.get('split')} split): {gates.get('status', '').replace('_', ' ')}", ""]
    if gates.get("could_not_compare"):
        out += [f"Could not compare: {cell(gates['could_not_compare'], 400)}", ""]
    results = gates.get("results") or []
    if results:
        out += [table(["gate", "value", "baseline", "threshold", "margin", "p", "result"],
                      [[f"`{r['gate']}`", r.get("value"), r.get("baseline"), r.get("threshold"), r.get("margin"),
                        r.get("p_value"), ("pass" if r.get("passed") else "**FAIL**")
                        + (f" ({r['reason']})" if r.get("reason") and not r.get("passed") else "")]
                       for r in results]), ""]
    baseline = gates.get("baseline") or {}
    if baseline.get("source"):
        how = ("its card's numbers" if baseline.get("kind") == "card" else
               "its saved predictions on the same rows" if baseline.get("reused_predictions") else
               "re-scored on the same rows with the same generation settings")
        commit = f" at `{baseline['commit'][:12]}`" if baseline.get("commit") else ""
        out += [f"Baseline: `{baseline['source']}`{commit}, {how}."
                + (f" Significance: paired bootstrap, p < {gates['significance']:g}." if gates.get("significance")
                   else ""), ""]
        if isinstance(baseline.get("metrics"), dict):
            out += ["### Compared with the baseline", ""]
            rows = []
            for r in results:
                base = baseline["metrics"].get(r["metric"])
                if isinstance(base, (int, float)) and isinstance(r.get("value"), (int, float)):
                    rows.append([r["metric"], r["value"], base, r["value"] - base])
            out += [table(["metric", "this run", "baseline", "Δ"], rows), ""]
    return out


def report_markdown(run_dir: Path, *, predictions: int = 5) -> str:
    """The whole report of one run."""
    info = read_run(run_dir)
    metrics_file, manifest = read_json_lenient(run_dir / "metrics.json"), read_json_lenient(run_dir / "manifest.json")
    gates = read_json_lenient(run_dir / "gates.json")
    status = {"passed": "gates passed", "failed": "gates FAILED", "could_not_compare": "could not compare with "
              "the baseline"}.get(gates.get("status", ""), "no gates")
    title = f"# hfpipe run `{info.name}`: {status}"
    lines = [title, ""]
    facts = [f"recipe `{info.recipe}`" if info.recipe else None, f"task {info.task}" if info.task else None,
             f"finished {manifest['finished'][:19].replace('T', ' ')} UTC" if manifest.get("finished") else None,
             f"{info.duration_s / 60:.1f} minutes" if info.duration_s is not None else None,
             f"pushed to {info.pushed}" if info.pushed else "not pushed"]
    lines += [", ".join(f for f in facts if f) + ".", ""]

    splits = metrics_file.get("splits") or {}
    keys = _TASK_KEYS.get(info.task or "", ("bleu", "rougeL"))
    if splits:
        lines += ["## Metrics", "", table(["split", *keys, "samples"],
                                          [[s, *(m.get(k) for k in keys), m.get("num_samples")]
                                           for s, m in splits.items()]), ""]
        signatures = metrics_file.get("signatures") or {}
        if isinstance(signatures.get("bleu"), str):
            lines += [f"sacreBLEU: `{signatures['bleu']}`", ""]
    if gates:
        lines += _gate_section(gates)

    split = info.split or "test"
    pred_file = run_dir / f"predictions-{split}.jsonl"
    if pred_file.is_file() and predictions > 0:
        rows = []
        with pred_file.open(encoding="utf-8") as f:
            for line in f:
                if len(rows) >= predictions:
                    break
                if line.strip():
                    row = json.loads(line)
                    rows.append([row.get("source"), row.get("reference"), row.get("prediction")])
        lines += [f"## Predictions (first {len(rows)} of {split})", "",
                  table(["source", "reference", "prediction"], rows), ""]

    seconds = manifest.get("stage_seconds") or {}
    if seconds:
        lines += ["## Timings", "", table(["stage", "seconds"], [[k, float(v)] for k, v in seconds.items()]), ""]
    recipe_text = (run_dir / "recipe.yaml").read_text(encoding="utf-8") if (run_dir / "recipe.yaml").is_file() else ""
    if recipe_text:
        lines += ["<details><summary>Recipe (resolved)</summary>", "", "```yaml", recipe_text.rstrip(), "```", "",
                  "</details>", ""]
    return "\n".join(lines)
