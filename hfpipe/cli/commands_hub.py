"""`hfpipe push`: upload a finished run to the Hugging Face Hub in one commit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer
from rich.table import Table

from hfpipe.cli.common import make_console, print_json


def _size(n: int) -> str:
    for unit, step in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= step:
            return f"{n / step:.1f} {unit}"
    return f"{n} B"


def push(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `hfpipe run` (runs/<name>-<time>/).",
                                            show_default=False)],
    repo_id: Annotated[str | None, typer.Option(
        "--repo-id", help="Hub model repo NAMESPACE/NAME. Default: the recipe's push.repo_id.",
        show_default=False)] = None,
    private: Annotated[bool | None, typer.Option(
        "--private/--public", help="Visibility of a NEW repo. Default: the recipe's push.private, else the Hub's "
                                   "default for the namespace. An existing repo keeps its visibility.",
        show_default=False)] = None,
    revision: Annotated[str | None, typer.Option(
        "--revision", help="Branch to push to (created from main if missing). Default: main.",
        show_default=False)] = None,
    create_pr: Annotated[bool, typer.Option(
        "--create-pr", help="Open a pull request instead of committing to the branch.")] = False,
    commit_message: Annotated[str | None, typer.Option(
        "--commit-message", help="Commit title. Default: 'Upload <run name> (hfpipe <version>)'.",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show the files and the model card; no token, no network.")] = False,
    ignore_gates: Annotated[bool, typer.Option(
        "--ignore-gates", help="Push even though the run's gates (gates.json) did not pass.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON record on stdout (the commit or pull request); the rest goes to stderr.")]
        = False,
) -> None:
    """Push a run to the Hugging Face Hub: model (safetensors), tokenizer, model card, recipe and metrics.

    One commit, so a failed push leaves nothing half-done. The token comes from HF_TOKEN or `hf auth login`
    (never a flag); HF_ENDPOINT points the push at another Hub.
    """
    from hfpipe.hub.api import push_run, push_settings

    if not dry_run and not ignore_gates:
        refuse_failed_gates(run_dir)
    settings = push_settings(run_dir) if (run_dir / "recipe.yaml").is_file() else {}
    result = push_run(
        run_dir,
        repo_id=repo_id or settings.get("repo_id"),
        private=private if private is not None else settings.get("private"),
        revision=revision or settings.get("revision"),
        create_pr=create_pr or bool(settings.get("create_pr", False)),
        commit_message=commit_message or settings.get("commit_message"),
        dry_run=dry_run,
    )

    console = make_console(stderr=as_json)
    if as_json:
        from hfpipe.runs.record import SCHEMA_VERSION

        print_json({"schema_version": SCHEMA_VERSION, "command": "push", "status": "ok", "exit_code": 0,
                    "run_dir": str(run_dir), "dry_run": dry_run,
                    "push": None if dry_run else result.record(),
                    "files": [{"path": f.path_in_repo, "size": f.size} for f in result.files]})
    table = Table(title=f"{'Would push' if dry_run else 'Pushed'} to {result.repo_id} ({result.revision})",
                  title_justify="left")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("from")
    for f in result.files:
        source = "generated" if f.source is None else str(f.source.parent.name + "/" + f.source.name)
        table.add_row(f.path_in_repo, _size(f.size), source)
    table.add_row("[bold]total[/bold]", f"[bold]{_size(result.total_size)}[/bold]", f"{len(result.files)} files")
    console.print(table)
    if dry_run:
        console.rule("README.md (model card)")
        console.print(result.card, markup=False, highlight=False, soft_wrap=True)
        console.rule()
        console.print(f"[yellow]dry run[/yellow]: nothing was sent. Target: {result.repo_url}")
        return
    if result.pr_url:
        console.print(f"[green]Opened pull request[/green] {result.pr_url}", soft_wrap=True)
    elif not result.changed:
        console.print(f"[green]Already up to date[/green]: {result.repo_url} holds these files; no new commit.",
                      soft_wrap=True)
    else:
        console.print(f"[green]Committed[/green] {result.commit_url}", soft_wrap=True)
    tree = f"/tree/{quote(result.revision, safe='')}" if result.revision != "main" else ""
    console.print(f"Model: {result.repo_url}{tree}", soft_wrap=True)


def refuse_failed_gates(run_dir: Path) -> None:
    """A run whose gates failed (or could not compare) is not published by accident."""
    import json

    from hfpipe.errors import BaselineError, MetricGateError

    path = run_dir / "gates.json"
    try:
        gates = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        gates = {"status": "unreadable"}
    if not gates or gates.get("status") == "passed":
        return
    kind = BaselineError if gates.get("status") == "could_not_compare" else MetricGateError
    raise kind(f"not pushed: the run's gates {'could not compare' if kind is BaselineError else 'did not pass'}",
               where=str(path), details=[str(r.get("gate")) + ": " + str(r.get("reason") or "failed")
                                         for r in gates.get("results", []) if not r.get("passed")],
               hint="push a run whose gates passed, or pass --ignore-gates to publish it anyway")


def register(app: typer.Typer) -> None:
    app.command("push")(push)
