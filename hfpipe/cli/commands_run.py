"""`hfpipe run` (every stage) and `hfpipe train` (up to a trained model)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hfpipe.cli.commands_recipe import BaselineOpt, GateOpt, RecipeArg, SetOpt, SignificanceOpt
from hfpipe.cli.common import make_console, print_json
from hfpipe.errors import HfpipeError

RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="Run directory (default: runs/<recipe>-<time>).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --run-dir; finished stages whose "
                                                          "inputs did not change are not redone.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON record on stdout (schema_version 1: metrics, "
                                                      "gates, push, timings); everything else goes to stderr.")]
NoPushOpt = Annotated[bool, typer.Option("--no-push", help="Do not push, even with a push: section (a CI job "
                                                           "that publishes in a later step, with its own token).")]
ProcessesOpt = Annotated[int | None, typer.Option(
    "--processes", min=1, help="Train on N processes through accelerate's launcher: one per GPU, or N CPU "
                               "processes on a machine without GPUs. See also `accelerate launch -m hfpipe run`.")]


def _child_args(argv: list[str]) -> list[str]:
    """This command line without --processes, for the launched processes."""
    from hfpipe.runs.lock import without_option

    return without_option(argv, "--processes")


def _execute(recipe: Path, set_: list[str] | None, run_dir: Path | None, resume: bool, as_json: bool,
             until: str, processes: int | None = None, gates: list[str] | None = None,
             baseline: str | None = None, significance: float | None = None, push: bool = True) -> None:
    from hfpipe.runs.reporting import RichReporter
    from hfpipe.pipeline.runner import run_pipeline
    from hfpipe.recipe.loading import load_recipe

    console = make_console(stderr=as_json)
    loaded = load_recipe(recipe, set_ or [], gates=gates, baseline=baseline, significance=significance)
    if processes is not None and processes > 1:
        from hfpipe.pipeline.distributed import run_processes

        # SystemExit, not typer.Exit: Typer returns an Exit's code, and 130 returned reads as Ctrl-C here.
        raise SystemExit(run_processes(processes, _child_args(sys.argv[1:]), loaded.recipe.distributed))
    summary = run_pipeline(loaded, run_dir=run_dir, resume=resume, reporter=RichReporter(console),
                           argv=["hfpipe", *sys.argv[1:]], until=until, push=push)
    finish(console, summary, "run" if until == "push" else "train", as_json)


def finish(console, summary, command: str, as_json: bool) -> None:  # noqa: ANN001 - rich/runner types stay lazy
    """Print the outcome (a JSON record, or tables for people), then exit with the gates' code."""
    from hfpipe.runs.gates import raise_for_gates
    from hfpipe.runs.record import exit_code_of, run_record

    is_run = (Path(summary.run_dir) / "recipe.yaml").is_file()
    if as_json:
        record = run_record(command, summary.run_dir if is_run else None, summary=summary,
                            exit_code=exit_code_of(summary.gates), model_dir=summary.model_dir)
        evaluation_dir = getattr(summary, "evaluation_dir", None)
        if evaluation_dir is not None:  # the run's metrics.json is not what was just measured
            record["metrics"] = summary.metrics
            record["evaluation_dir"] = str(evaluation_dir)
        print_json(record)
    else:
        print_summary(console, summary, summary.task)
    try:
        raise_for_gates(summary.gates)
    except HfpipeError as err:
        err.reported = as_json  # the record above already says it: no second JSON document
        raise


def print_summary(console, summary, task: str) -> None:  # noqa: ANN001 - rich/runner types stay lazy
    from rich.table import Table

    keys = ("bleu", "chrf", "rougeL", "bleu_rouge_f1", "length_ratio") if task == "translation" else \
        ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "bleu_rouge_f1", "length_ratio")
    if summary.metrics:
        table = Table("split", *keys, "samples", title="results")
        for split, m in summary.metrics.items():
            table.add_row(split, *(f"{m[k]:.4g}" if isinstance(m.get(k), (int, float)) else "-" for k in keys),
                          str(m.get("num_samples", "")))
        console.print(table)
    times = Table("stage", "seconds", title="wall time")
    for stage, sec in summary.stage_seconds.items():
        times.add_row(stage + (" (reused)" if stage in summary.reused else ""), f"{sec:.1f}")
    console.print(times)
    console.print(f"run directory: [bold]{summary.run_dir}[/bold]")
    if getattr(summary, "evaluation_dir", None) is not None:
        console.print(f"results in:    [bold]{summary.evaluation_dir}[/bold]")
    console.print(f"model:         [bold]{summary.model_dir}[/bold]  (AutoModelForSeq2SeqLM.from_pretrained)")
    if summary.push:
        console.print(f"pushed to:     {summary.push.get('url')}")


def run(recipe: RecipeArg, set_: SetOpt = None, run_dir: RunDirOpt = None, resume: ResumeOpt = False,
        as_json: JsonOpt = False, processes: ProcessesOpt = None, gate: GateOpt = None,
        baseline: BaselineOpt = None, significance: SignificanceOpt = None, no_push: NoPushOpt = False) -> None:
    """Run every stage: data → tokenizer → model → train → evaluate → gates (→ push when the recipe says so and
    the gates pass)."""
    _execute(recipe, set_, run_dir, resume, as_json, "push", processes, gate, baseline, significance, not no_push)


def train(recipe: RecipeArg, set_: SetOpt = None, run_dir: RunDirOpt = None, resume: ResumeOpt = False,
          as_json: JsonOpt = False, processes: ProcessesOpt = None) -> None:
    """Run the stages up to a trained model in <run-dir>/model (no test evaluation, no push)."""
    _execute(recipe, set_, run_dir, resume, as_json, "train", processes)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(train)
