"""The runner: the one place that composes the stages and owns the run directory.

    data → tokenizer → tokenized data → model → train → evaluate → (push)

Each stage is a plain function in its own module; the runner makes the single Accelerator, decides what is
reused (tokenizer and tokenized data by content hash; training and evaluation by a fingerprint of their inputs
when a run directory is resumed), writes the artifacts atomically and does every side effect on the main
process only.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpipe import __version__
from hfpipe.errors import Interrupted, RunDirError
from hfpipe.pipeline.data import DataReport, read_splits
from hfpipe.pipeline.data_files import Example
from hfpipe.recipe.loading import LoadedRecipe, recipe_to_yaml
from hfpipe.recipe.schema import Recipe
from hfpipe.runs.files import json_atomic, restore_dir, text_atomic
from hfpipe.runs.gates import GateReport, gate_split, recipe_gates, run_gates
from hfpipe.runs.lock import RunLock, claim_run_dir, resume_command
from hfpipe.runs.reporting import Reporter
from hfpipe.runs.rundir import RunDir, hardware, new_run_dir, save_final_model, versions
from hfpipe.runs.summary import RunSummary, write_metrics

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _section_fingerprint(recipe: Recipe, *sections: str, extra: Any = None) -> str:
    from hfpipe.cache import fingerprint

    dumped = recipe.model_dump(mode="json", by_alias=True)
    return fingerprint({"v": __version__, **{s: dumped.get(s) for s in sections}, "extra": extra})


# --------------------------------------------------------------------------------------------- the pipeline
@dataclass
class Prepared:
    """What the stages before training produce, shared by `run`, `train` and `tokenize`."""

    splits: dict[str, Sequence[Example]]
    report: DataReport
    tokenizer: PreTrainedTokenizerBase
    tokenized: Any
    max_new_tokens: int


def prepare(loaded: LoadedRecipe, run: RunDir, accelerator: Accelerator, reporter: Reporter,
            summary: RunSummary) -> Prepared:
    from hfpipe.pipeline.evaluation import default_max_new_tokens
    from hfpipe.pipeline.tokenization import (
        build_tokenizer,
        examples_fingerprint,
        token_lengths,
        tokenize_splits,
    )

    recipe = loaded.recipe
    t0 = time.perf_counter()
    files = recipe.data.files
    reporter.stage("data", recipe.data.hub_dataset or ", ".join(files.paths("train") if files else []))
    with accelerator.main_process_first():  # a Hub dataset is downloaded and cached once, by the main process
        splits, report = read_splits(recipe)
    reporter.info(", ".join(f"{k}: {v:,} rows" for k, v in report.rows.items())
                  + (f" (carved off train: {', '.join(report.carved)})" if report.carved else ""))
    summary.stage_seconds["data"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    reporter.stage("tokenizer")
    with accelerator.main_process_first():
        tokenizer, reused = build_tokenizer(recipe, splits["train"], run.tokenizer,
                                            data_fingerprint=examples_fingerprint({"train": splits["train"]}),
                                            write=accelerator.is_main_process)
    if reused:
        summary.reused.append("tokenizer")
    reporter.info(f"vocabulary {len(tokenizer):,}" + (" (trained earlier on the same data: reused)" if reused else ""))
    summary.stage_seconds["tokenizer"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    reporter.stage("tokenize")
    with accelerator.main_process_first():
        tokenized = tokenize_splits(recipe, splits, tokenizer, run.tokenizer)
    if tokenized.reused:
        summary.reused.append("tokenize")
        reporter.info(f"tokenized data unchanged: reused from cache {tokenized.fingerprint}")
    max_new = default_max_new_tokens(token_lengths(tokenized.datasets["train"], "labels"))
    summary.stage_seconds["tokenize"] = round(time.perf_counter() - t0, 2)
    return Prepared(splits, report, tokenizer, tokenized, max_new)


def write_manifest(run: RunDir, loaded: LoadedRecipe, report: DataReport, argv: list[str], started: str,
                   status: str, summary: RunSummary | None = None) -> None:
    import torch  # noqa: F401 - versions() needs it anyway

    manifest = {
        "hfpipe_version": __version__, "versions": versions(), "command": argv, "recipe_file": str(loaded.path),
        "recipe_name": loaded.name, "seed": loaded.recipe.train.seed, "data": report.to_dict(),
        "started": started, "finished": datetime.now(timezone.utc).isoformat() if status != "running" else None,
        "status": status, "hardware": hardware(),
    }
    if summary is not None:
        manifest["distributed"] = summary.distributed
        manifest["stage_seconds"] = summary.stage_seconds
        manifest["reused"] = summary.reused
        manifest["gates"] = summary.gates["status"] if summary.gates else None
        manifest["push"] = summary.push
    json_atomic(run.manifest, manifest)


def _claim_on_every_process(accelerator: Accelerator, run_dir: Path, *, resume: bool,
                            recipe: Recipe) -> RunLock | None:
    """claim_run_dir on the main process (the lock is its alone); a refusal is raised on every process, with the
    main process's reason, so none is left waiting for the others."""
    from hfpipe.pipeline.distributed import from_main

    lock, problem = None, None
    if accelerator.is_main_process:
        try:
            lock = claim_run_dir(run_dir, resume=resume, recipe=recipe)
        except RunDirError as err:
            problem = (err.message, err.where, err.hint, err.details)
    problem = from_main(accelerator, problem)
    if problem is not None:
        if lock is not None:
            lock.release()
        raise RunDirError(problem[0], where=problem[1], hint=problem[2], details=problem[3])
    return lock


def run_pipeline(loaded: LoadedRecipe, *, run_dir: Path | None = None, resume: bool = False,
                 reporter: Reporter | None = None, argv: list[str] | None = None, until: str = "push",
                 push: bool = True) -> RunSummary:
    """Run the stages of a recipe up to `until` ("train" or "push") in a run directory, which is locked for the
    time; an interrupt marks the manifest "interrupted" and says how to resume."""
    reporter = reporter or Reporter()
    recipe = loaded.recipe
    if run_dir is None and resume:
        raise RunDirError("--resume needs --run-dir (the run to continue)")
    if run_dir is not None:
        check = RunDir(run_dir)
        if check.path.exists() and not check.path.is_dir():
            raise RunDirError(f"--run-dir {run_dir} is a file, not a folder", where=str(run_dir),
                              hint="give a new folder, or an earlier run's folder with --resume")
        if resume and not check.recipe.exists():
            raise RunDirError(f"cannot resume: {run_dir} is not a run directory (no recipe.yaml)")
    from hfpipe.pipeline.distributed import describe, make_accelerator

    accelerator = make_accelerator(recipe)
    processes = describe(accelerator)
    if run_dir is None:
        # The main process names the run (a timestamp); every process must use that same folder.
        from accelerate.utils import broadcast_object_list

        chosen = [str(new_run_dir(loaded.name)) if accelerator.is_main_process else None]
        if accelerator.num_processes > 1:
            broadcast_object_list(chosen)
        run_dir = Path(chosen[0])
    lock = _claim_on_every_process(accelerator, run_dir, resume=resume, recipe=recipe)
    if lock is not None and lock.took_over:
        reporter.info(f"took over the lock of pid {lock.took_over.get('pid')} on {lock.took_over.get('host')}, "
                      "which ended without releasing it")
    try:
        return _run_locked(loaded, accelerator, processes, run_dir, resume, reporter, argv, until, push)
    except Interrupted as err:
        err.message = f"{err.message or 'interrupted'}. Resume with: {resume_command(argv or sys.argv, run_dir)}"
        raise
    except KeyboardInterrupt:
        raise Interrupted(2, f"interrupted. Resume with: {resume_command(argv or sys.argv, run_dir)}") from None
    finally:
        if lock is not None:
            lock.release()


def _run_locked(loaded: LoadedRecipe, accelerator: Accelerator, processes: dict[str, Any], run_dir: Path,
                resume: bool, reporter: Reporter, argv: list[str] | None, until: str, push: bool) -> RunSummary:
    recipe = loaded.recipe
    run = RunDir(run_dir)
    if accelerator.is_main_process:  # a kill between the two renames of replace_dir's fallback (no atomic swap)
        for folder in (run.model, run.path / "checkpoints" / "best"):
            restore_dir(folder)
    previous_manifest = json.loads(run.manifest.read_text()) if resume and run.manifest.exists() else None
    summary = RunSummary(run_dir=run_dir, task=recipe.task, distributed=processes)
    from hfpipe.tasks.extra_metrics import load_extra_metrics

    extra_metrics = load_extra_metrics(recipe.evaluate.extra_metrics)  # before training: fail early
    started = datetime.now(timezone.utc).isoformat()
    argv = argv or sys.argv
    if accelerator.is_main_process:
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            text_atomic(run.recipe, f"# resolved from {loaded.path}\n" + recipe_to_yaml(recipe))
        except OSError as err:  # not writable, a file in the way, a full disk: before any work is done
            raise RunDirError(f"cannot create the run directory {run.path}: {err.strerror or err}",
                              where=str(err.filename or run.path),
                              hint="choose a writable place with --run-dir (or run from a writable folder)") from None
    accelerator.wait_for_everyone()
    if recipe.train.report_to:
        from hfpipe.pipeline.distributed import start_trackers

        start_trackers(accelerator, recipe, run.path)

    prepared = prepare(loaded, run, accelerator, reporter, summary)
    if resume:
        from hfpipe.runs.lock import check_same_data

        check_same_data(previous_manifest, prepared.report.to_dict().get("files", []), run_dir)
    if accelerator.is_main_process:
        write_manifest(run, loaded, prepared.report, argv, started, "running", summary)
    try:
        return _train_and_evaluate(loaded, accelerator, run, prepared, resume, reporter, summary, until, push,
                                   extra_metrics, argv, started)
    except (Interrupted, KeyboardInterrupt):
        if accelerator.is_main_process:
            write_manifest(run, loaded, prepared.report, argv, started, "interrupted", summary)
        raise


def _train_and_evaluate(loaded: LoadedRecipe, accelerator: Accelerator, run: RunDir, prepared: Prepared,
                        resume: bool, reporter: Reporter, summary: RunSummary, until: str, push: bool,
                        extra_metrics: Any, argv: list[str], started: str) -> RunSummary:
    from hfpipe.pipeline.evaluation import GenerationSettings, evaluate_split
    from hfpipe.pipeline.models import build_model, load_model
    from hfpipe.pipeline.training import train

    recipe = loaded.recipe

    # ---- model + training (skipped when a resumed run already finished training with the same inputs)
    train_fp = _section_fingerprint(recipe, "task", "data", "tokenizer", "model", "train")
    if resume and run.is_done("train", train_fp) and (run.model / "config.json").exists():
        reporter.stage("train", "inputs unchanged since this run trained: reusing model/")
        summary.reused.append("train")
        model = load_model(str(run.model), trust_remote_code=recipe.model.trust_remote_code).to(accelerator.device)
        generation = _generation_settings(recipe, prepared, model)
        summary.train = run.stages()["train"].get("result")
    else:
        t0 = time.perf_counter()
        reporter.stage("model")
        model = build_model(recipe, prepared.tokenizer)
        from hfpipe.pipeline.models import count_parameters

        reporter.info(f"{type(model).__name__}: {count_parameters(model) / 1e6:.2f}M parameters")
        generation = _generation_settings(recipe, prepared, model)
        summary.stage_seconds["model"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        reporter.stage("train")
        val = prepared.splits["validation"][:recipe.train.eval_samples]
        train_gen = GenerationSettings.from_recipe(recipe.evaluate, generation.max_new_tokens,
                                                   num_beams=recipe.train.eval_num_beams)

        def evaluate_fn(m: PreTrainedModel) -> dict[str, Any]:
            result = evaluate_split(m, prepared.tokenizer, recipe, "validation", val, train_gen,
                                    accelerator=accelerator, out_dir=None)
            return result.metrics

        update = reporter.progress("training", recipe.train.max_steps)
        last_step = [0]

        def on_progress(step: int, total: int | None, fields: dict[str, Any]) -> None:
            shown = {k: fields[k] for k in ("loss", "lr") if k in fields}
            shown.update({k: v for k, v in fields.items() if k.startswith("eval_") and isinstance(v, float)
                          and k.removeprefix("eval_") == recipe.primary_metric})
            update(step - last_step[0], shown)
            last_step[0] = step

        model, result = train(model, prepared.tokenizer, prepared.tokenized.datasets["train"], recipe,
                              accelerator=accelerator, run_dir=run.path, evaluate_fn=evaluate_fn,
                              resume=resume, on_progress=on_progress, on_message=reporter.info)
        reporter.done()
        summary.train = result.to_dict()
        summary.stage_seconds["train"] = round(time.perf_counter() - t0, 2)
        if accelerator.is_main_process:
            from hfpipe.pipeline.models import position_limit

            save_final_model(model, prepared.tokenizer, run.model, generation.saved_config(),
                             max_positions=position_limit(getattr(model, "module", model).config.to_dict()))
            from hfpipe.runs.plots import plot_curves

            plot_curves(run.path / "train_log.jsonl", run.path / "curves.png", result.metric_name)
            run.mark("train", train_fp, result=summary.train)
        reporter.info(f"{result.steps} steps, {result.seconds:.0f} s, final loss {result.final_loss}, "
                      f"{result.tokens_per_second:,.0f} target tokens/s"
                      + (f", best {result.metric_name} {result.best_metric:.4g} at step {result.best_step}"
                         if result.best_metric is not None else ""))
    summary.model_dir = run.model

    if until == "train":
        if accelerator.is_main_process:
            write_manifest(run, loaded, prepared.report, argv, started, "trained", summary)
        return summary

    # ---- evaluation
    eval_fp = _section_fingerprint(recipe, "evaluate", extra={"train": train_fp, "max_new": prepared.max_new_tokens})
    predictions: dict[str, list[str]] = {}
    evaluated: dict[str, Sequence[Example]] = {}
    for split in recipe.evaluate.splits:
        if split not in prepared.splits:
            reporter.info(f"[yellow]no {split} split: skipped[/yellow]")
            continue
        examples = prepared.splits[split]
        evaluated[split] = examples[:recipe.evaluate.max_samples] if recipe.evaluate.max_samples else examples
    if resume and run.is_done("evaluate", eval_fp) and run.metrics.exists():
        reporter.stage("evaluate", "inputs unchanged: reusing metrics.json")
        summary.reused.append("evaluate")
        summary.metrics = json.loads(run.metrics.read_text())["splits"]
    else:
        t0 = time.perf_counter()
        for split, examples in evaluated.items():
            reporter.stage("evaluate", f"{split} ({len(examples):,} rows, beams {generation.num_beams}, "
                                       f"max_new_tokens {generation.max_new_tokens})")
            update = reporter.progress(f"generating {split}", len(examples))
            res = evaluate_split(model, prepared.tokenizer, recipe, split, examples, generation,
                                 accelerator=accelerator, out_dir=run.path if accelerator.is_main_process else None,
                                 on_batch=lambda n: update(n, {}), extra_metrics=extra_metrics)
            reporter.done()
            res.metrics["seconds"] = res.seconds
            res.metrics["generation"] = asdict(generation)  # per split: what these predictions were made with
            summary.metrics[split] = res.metrics
            predictions[split] = res.predictions
        summary.stage_seconds["evaluate"] = round(time.perf_counter() - t0, 2)
        if accelerator.is_main_process:
            write_metrics(run, recipe, summary, generation)
            run.mark("evaluate", eval_fp)

    # ---- gates (every process: a baseline may be re-scored, sharded like evaluation)
    split = gate_split(recipe, [s for s in evaluated if s in summary.metrics])
    if recipe_gates(recipe):
        t0 = time.perf_counter()
        reporter.stage("gates", f"{split} split" if split else "")
        if split is None or split not in summary.metrics:
            # Gates that read nothing must not let the model through (e.g. the data has no test split).
            report = GateReport(split=split or "test", could_not_compare=f"the gates read the {split or 'test'} "
                                                                        "split, and it was not evaluated")
        else:
            if split not in predictions:
                predictions[split] = read_predictions(run.path / f"predictions-{split}.jsonl")
            report = run_gates(recipe, split=split, metrics=summary.metrics[split], predictions=predictions[split],
                               examples=evaluated[split], settings=generation, accelerator=accelerator,
                               on_message=reporter.info)
        summary.gates = report.to_dict()
        for result in report.results:
            reporter.info(("[green]pass[/green] " if result.passed else "[red]FAIL[/red] ") + result.describe())
        if report.could_not_compare:
            reporter.info(f"[red]could not compare[/red]: {report.could_not_compare}")
        summary.stage_seconds["gates"] = round(time.perf_counter() - t0, 2)
        if accelerator.is_main_process:
            json_atomic(run.path / "gates.json", summary.gates)

    # The run is complete before any push: a failed push leaves a finished, pushable run (`hfpipe push`). The
    # barrier comes after the manifest, so no process leaves (a failed gate exits at once) before it is written.
    if accelerator.is_main_process:
        write_manifest(run, loaded, prepared.report, argv, started, "finished", summary)
    accelerator.wait_for_everyone()

    # ---- push (main process only, and only after a successful evaluation whose gates passed)
    gates_passed = summary.gates is None or summary.gates["passed"]
    if push and gates_passed and recipe.push is not None and recipe.push.enabled and recipe.push.repo_id:
        if accelerator.is_main_process:
            t0 = time.perf_counter()
            reporter.stage("push", recipe.push.repo_id)
            from hfpipe.hub.api import push_after_run

            result = push_after_run(run.path, recipe.push.model_dump())
            summary.push = None if result is None else result.record()
            summary.stage_seconds["push"] = round(time.perf_counter() - t0, 2)
            write_manifest(run, loaded, prepared.report, argv, started, "finished", summary)
    elif push and not gates_passed and recipe.push is not None and recipe.push.repo_id:
        reporter.info("[yellow]not pushed: the gates did not pass[/yellow]")
    # No barrier after the push: a failed push on the main process must not leave the others waiting.
    return summary


def read_predictions(path: Path) -> list[str]:
    """The predictions column of a predictions-<split>.jsonl file, in data order."""
    try:
        return [json.loads(line)["prediction"] for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    except (OSError, ValueError, KeyError) as err:
        raise RunDirError(f"cannot read the predictions in {path}: {err}", where=str(path),
                          hint="evaluate again: `hfpipe evaluate RUN_DIR`") from None


def _generation_settings(recipe: Recipe, prepared: Prepared, model: Any) -> Any:
    """The recipe's generation settings, with the data-derived length limit kept inside the decoder's positions
    (an explicit evaluate.max_new_tokens over the limit was already refused by check_positions)."""
    from hfpipe.pipeline.evaluation import GenerationSettings
    from hfpipe.pipeline.models import position_limit

    max_new = prepared.max_new_tokens
    limit = position_limit(getattr(model, "module", model).config.to_dict())
    if limit is not None:
        max_new = min(max_new, limit - 1)
    return GenerationSettings.from_recipe(recipe.evaluate, max_new)
