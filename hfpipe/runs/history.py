"""Finished runs side by side: `hfpipe runs list` and `hfpipe runs compare`.

Everything is read from the run directories (manifest.json, metrics.json, recipe.yaml, gates.json); a folder that
is not a run, or a run with a damaged file, shows what it can instead of failing the listing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hfpipe.errors import RunDirError
from hfpipe.runs.files import read_json_lenient, read_recipe_lenient


@dataclass
class RunInfo:
    path: str
    name: str
    recipe: str | None
    task: str | None
    started: str | None
    duration_s: float | None
    status: str | None
    split: str | None
    metric: str | None
    value: float | None
    gates: str | None
    pushed: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _duration(manifest: dict[str, Any]) -> float | None:
    try:
        return round((datetime.fromisoformat(manifest["finished"]) -
                      datetime.fromisoformat(manifest["started"])).total_seconds(), 1)
    except (KeyError, TypeError, ValueError):
        return None


def read_run(run_dir: Path) -> RunInfo:
    """What one run directory says about itself (RunDirError when it is not a run at all)."""
    if not (run_dir / "recipe.yaml").is_file() and not (run_dir / "manifest.json").is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no recipe.yaml or manifest.json)", where=str(run_dir))
    manifest, metrics = read_json_lenient(run_dir / "manifest.json"), read_json_lenient(run_dir / "metrics.json")
    gates = read_json_lenient(run_dir / "gates.json")
    splits = metrics.get("splits") if isinstance(metrics.get("splits"), dict) else {}
    split = gates.get("split") or ("test" if "test" in splits else next(iter(splits), None))
    metric = str(metrics.get("primary_metric") or "").removeprefix("eval_") or None
    value = splits.get(split, {}).get(metric) if split and metric else None
    push = manifest.get("push") if isinstance(manifest.get("push"), dict) else None
    return RunInfo(path=str(run_dir), name=run_dir.name, recipe=manifest.get("recipe_name"),
                   task=metrics.get("task") or read_recipe_lenient(run_dir).get("task"), started=manifest.get("started"),
                   duration_s=_duration(manifest), status=manifest.get("status"), split=split, metric=metric,
                   value=value if isinstance(value, (int, float)) else None, gates=gates.get("status"),
                   pushed=(push.get("commit_url") or push.get("pr_url") or push.get("url")) if push else None)


def list_runs(folder: Path) -> list[RunInfo]:
    """The runs directly inside `folder`, oldest first."""
    if not folder.is_dir():
        raise RunDirError(f"no such folder: {folder}", hint="give the folder that holds the run directories "
                                                              "(default: runs/)")
    runs = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and ((child / "recipe.yaml").is_file() or (child / "manifest.json").is_file()):
            runs.append(read_run(child))
    return sorted(runs, key=lambda r: (r.started or "", r.name))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: {"train": {"seed": 1}} -> {"train.seed": 1}."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def compare_runs(a: Path, b: Path) -> dict[str, Any]:
    """Recipe differences and metric deltas (b − a) between two runs."""
    info_a, info_b = read_run(a), read_run(b)
    recipe_a, recipe_b = flatten(read_recipe_lenient(a)), flatten(read_recipe_lenient(b))
    changes = [{"key": key, "a": recipe_a.get(key), "b": recipe_b.get(key)}
               for key in sorted(set(recipe_a) | set(recipe_b)) if recipe_a.get(key) != recipe_b.get(key)]
    splits_a = read_json_lenient(a / "metrics.json").get("splits") or {}
    splits_b = read_json_lenient(b / "metrics.json").get("splits") or {}
    metrics = []
    for split in [s for s in dict.fromkeys([*splits_a, *splits_b])]:
        ma, mb = splits_a.get(split) or {}, splits_b.get(split) or {}
        for key in dict.fromkeys([*ma, *mb]):
            va, vb = ma.get(key), mb.get(key)
            if not all(isinstance(v, (int, float, type(None))) and not isinstance(v, bool) for v in (va, vb)):
                continue
            if key in ("seconds", "num_samples") or (va is None and vb is None):
                continue
            delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            metrics.append({"split": split, "metric": key, "a": va, "b": vb, "delta": delta})
    return {"a": info_a.to_dict(), "b": info_b.to_dict(), "recipe_changes": changes, "metrics": metrics}
