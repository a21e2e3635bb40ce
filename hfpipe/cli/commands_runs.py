"""`hfpipe runs list`, `hfpipe runs compare` and `hfpipe report`: finished runs, for people and for CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfpipe.cli.common import make_console, print_json

JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
MdFlag = Annotated[bool, typer.Option("--md", help="Markdown on stdout (a PR comment, $GITHUB_STEP_SUMMARY).")]


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def list_(folder: Annotated[Path, typer.Argument(help="The folder that holds run directories.")] = Path("runs"),
          as_json: JsonFlag = False, md: MdFlag = False) -> None:
    """The runs in a folder, oldest first: recipe, date, task, main metric, duration, gates, where pushed."""
    from rich.table import Table

    from hfpipe.runs.history import list_runs
    from hfpipe.runs.record import SCHEMA_VERSION
    from hfpipe.runs.report import runs_markdown

    runs = list_runs(folder)
    if as_json:
        print_json({"schema_version": SCHEMA_VERSION, "command": "runs list", "folder": str(folder),
                    "runs": [r.to_dict() for r in runs]})
        return
    if md:
        print(runs_markdown(runs))
        return
    table = Table("run", "recipe", "started", "task", "metric", "minutes", "gates", "pushed",
                  title=f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {folder}", title_justify="left")
    for r in runs:
        table.add_row(r.name, _fmt(r.recipe), (r.started or "-")[:19].replace("T", " "), _fmt(r.task),
                      f"{r.split} {r.metric} {_fmt(r.value)}" if r.metric else "-",
                      _fmt(round(r.duration_s / 60, 1) if r.duration_s is not None else None), _fmt(r.gates),
                      _fmt(r.pushed))
    make_console().print(table)


def compare(a: Annotated[Path, typer.Argument(help="The first run directory (A).", show_default=False)],
            b: Annotated[Path, typer.Argument(help="The second run directory (B).", show_default=False)],
            as_json: JsonFlag = False, md: MdFlag = False) -> None:
    """Two runs side by side: metric deltas (B − A) per split and every recipe key that differs."""
    from rich.table import Table

    from hfpipe.runs.history import compare_runs
    from hfpipe.runs.record import SCHEMA_VERSION
    from hfpipe.runs.report import compare_markdown

    comparison = compare_runs(a, b)
    if as_json:
        print_json({"schema_version": SCHEMA_VERSION, "command": "runs compare", **comparison})
        return
    if md:
        print(compare_markdown(comparison))
        return
    console = make_console()
    metrics = Table("split", "metric", "A", "B", "Δ (B − A)",
                    title=f"A {comparison['a']['name']}  vs  B {comparison['b']['name']}", title_justify="left")
    for m in comparison["metrics"]:
        delta = m["delta"]
        style = "" if not isinstance(delta, (int, float)) or delta == 0 else ("green" if delta > 0 else "red")
        metrics.add_row(m["split"], m["metric"], _fmt(m["a"]), _fmt(m["b"]),
                        f"[{style}]{delta:+.4g}[/{style}]" if style else _fmt(delta))
    console.print(metrics)
    if comparison["recipe_changes"]:
        changes = Table("recipe key", "A", "B", title="recipe differences", title_justify="left")
        for c in comparison["recipe_changes"]:
            changes.add_row(c["key"], _fmt(c["a"]), _fmt(c["b"]))
        console.print(changes)
    else:
        console.print("The resolved recipes are the same.")


def report(run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
           md: Annotated[bool, typer.Option("--md", help="Markdown (the only format so far; the default).")] = True,
           predictions: Annotated[int, typer.Option(help="Predictions shown next to their references.")] = 5) -> None:
    """A Markdown report of a run: metrics, gate outcome and deltas to the baseline, a few predictions next to
    their references, timings and the recipe. `hfpipe report RUN >> $GITHUB_STEP_SUMMARY` in a workflow."""
    from hfpipe.runs.report import report_markdown

    print(report_markdown(run_dir, predictions=predictions))


def register(app: typer.Typer) -> None:
    runs = typer.Typer(name="runs", help="Finished runs: list them, compare two.", no_args_is_help=True)
    runs.command("list")(list_)
    runs.command("compare")(compare)
    app.add_typer(runs)
    app.command("report")(report)
