"""The machine-readable record of a command (`--json`): one JSON document on stdout for a CI job to act on.

The document is versioned (`schema_version`); fields are only ever added within a version. What it holds is read
back from the run directory where the run wrote it (metrics.json, manifest.json, recipe.yaml), so the document and
the files never disagree.

    schema_version  1
    command         run | train | evaluate | push
    status          ok | gate_failed | could_not_compare | error | interrupted
    exit_code       the code the command exits with (README: exit codes)
    run_dir, model_dir
    recipe          {name, file, sha256 of the resolved recipe.yaml}
    data            [{split, path, sha256, rows}] of the data files read
    task, primary_metric
    metrics         {split: {metric: value, ...}}  (= metrics.json "splits")
    signatures      sacreBLEU signatures and ROUGE settings (= metrics.json "signatures")
    timings         {stage: seconds, ..., total}
    train           steps, seconds, tokens/s, best metric ... (null when training was not run)
    gates           {status, passed, split, baseline, significance, results: [...]} or null
    push            {repo_id, revision, commit, commit_url, pr_url, url} or null
    distributed     {world_size, backend, devices, ...}
    error           {title, message, where, details, hint} (status "error" or "interrupted")
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hfpipe.runs.files import read_json_lenient

SCHEMA_VERSION = 1


def sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def status_of(exit_code: int) -> str:
    return {0: "ok", 8: "gate_failed", 9: "could_not_compare"}.get(exit_code, "error")


def exit_code_of(gates: dict[str, Any] | None) -> int:
    """The exit code a finished command gets from its gates (0 when there are none or all passed)."""
    if not gates or gates.get("status") in ("passed", "not_checked"):
        return 0
    return 9 if gates.get("status") == "could_not_compare" else 8


def run_record(command: str, run_dir: Path | None, *, summary: Any = None, exit_code: int = 0,
               model_dir: Path | None = None) -> dict[str, Any]:
    """The document for `command` on `run_dir` (None: a model folder outside any run)."""
    manifest = read_json_lenient(run_dir / "manifest.json") if run_dir else {}
    metrics_file = read_json_lenient(run_dir / "metrics.json") if run_dir else {}
    recipe_file = run_dir / "recipe.yaml" if run_dir else None
    stage_seconds = dict(getattr(summary, "stage_seconds", None) or manifest.get("stage_seconds") or {})
    metrics = metrics_file.get("splits") if metrics_file else None
    if metrics is None and summary is not None:
        metrics = summary.metrics
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "status": status_of(exit_code),
        "exit_code": exit_code,
        "run_dir": str(run_dir) if run_dir else None,
        "model_dir": str(model_dir or (run_dir / "model" if run_dir else "")) or None,
        "recipe": {"name": manifest.get("recipe_name"), "file": manifest.get("recipe_file"),
                   "sha256": sha256_file(recipe_file) if recipe_file else None},
        "data": [{"split": f.get("split"), "path": f.get("path"), "sha256": f.get("sha256"), "rows": f.get("rows")}
                 for f in (manifest.get("data") or {}).get("files", []) if isinstance(f, dict)],
        "task": metrics_file.get("task") or getattr(summary, "task", None),
        "primary_metric": metrics_file.get("primary_metric"),
        "metrics": metrics or {},
        "signatures": metrics_file.get("signatures"),
        "timings": {**stage_seconds, "total": round(sum(stage_seconds.values()), 2)},
        "reused": list(getattr(summary, "reused", None) or manifest.get("reused") or []),
        "train": getattr(summary, "train", None) or metrics_file.get("training"),
        "gates": getattr(summary, "gates", None),
        "push": getattr(summary, "push", None),
        "distributed": getattr(summary, "distributed", None) or manifest.get("distributed"),
    }
    return record


def error_record(command: str, err: Any) -> dict[str, Any]:
    """The document of a command that failed with an hfpipe error (a user mistake, data, Hub, ...)."""
    return {"schema_version": SCHEMA_VERSION, "command": command, "status": getattr(err, "status", "error"),
            "exit_code": err.exit_code,
            "error": {"title": err.title, "message": err.message, "where": err.where, "details": err.details,
                      "hint": err.hint}}
