"""`hfpipe data` and `hfpipe tokenize`: look at what training would see."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from hfpipe.cli.commands_recipe import RecipeArg, SetOpt
from hfpipe.cli.common import make_console


def data(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Load the data: rows per split, source/target length percentiles (words) and three sample rows."""
    from rich.table import Table

    from hfpipe.pipeline.data import length_percentiles, read_splits
    from hfpipe.recipe.loading import load_recipe

    console = make_console()
    loaded = load_recipe(recipe, set_ or [])
    splits, report = read_splits(loaded.recipe)
    table = Table("split", "rows", "source words p50/p90/p99/max", "target words p50/p90/p99/max",
                  title=f"{loaded.name}: {loaded.recipe.task}")
    for split, rows in splits.items():
        src = length_percentiles([e.source for e in rows])
        tgt = length_percentiles([e.target for e in rows])
        fmt = lambda p: f"{p['p50']}/{p['p90']}/{p['p99']}/{p['max']}"  # noqa: E731
        table.add_row(split, f"{len(rows):,}", fmt(src), fmt(tgt))
    console.print(table)
    for f in report.files:
        console.print(f"[dim]{f.split}: {f.path} sha256 {f.sha256[:12]}… ({f.dropped_empty} empty rows dropped)[/dim]")
    if report.carved:
        console.print(f"[dim]carved off train: {', '.join(report.carved)}[/dim]")
    samples = Table("source", "target", title="sample rows (train)", show_lines=True)
    for e in splits["train"][:3]:
        samples.add_row(e.source[:300], e.target[:300])
    console.print(samples)


def tokenize(recipe: RecipeArg, set_: SetOpt = None,
             out: Path | None = typer.Option(None, help="Save the tokenizer here (default: a temporary folder).")
             ) -> None:
    """Train or load the tokenizer: vocabulary size, tokens per word, unknown-token rate, share truncated."""
    from rich.table import Table

    from hfpipe.pipeline.data import read_splits
    from hfpipe.pipeline.tokenization import build_tokenizer, examples_fingerprint, tokenizer_report
    from hfpipe.recipe.loading import load_recipe

    console = make_console()
    loaded = load_recipe(recipe, set_ or [])
    if out is not None and out.exists() and any(out.iterdir()):
        from hfpipe.errors import RunDirError

        raise RunDirError(f"--out {out} exists and is not empty", hint="give a new or empty folder")
    splits, _ = read_splits(loaded.recipe)
    with tempfile.TemporaryDirectory() as tmp:
        target = out or Path(tmp) / "tokenizer"
        tokenizer, reused = build_tokenizer(loaded.recipe, splits["train"], target,
                                            data_fingerprint=examples_fingerprint({"train": splits["train"]}))
        rep = tokenizer_report(loaded.recipe, splits, tokenizer)
    table = Table("", "source", "target", title=f"tokenizer: vocabulary {rep.vocab_size:,}"
                                                  + (" (reused from cache)" if reused else ""))
    table.add_row("tokens per word", str(rep.tokens_per_word["source"]), str(rep.tokens_per_word["target"]))
    table.add_row("unknown-token rate", f"{rep.unknown_rate['source']:.3%}", f"{rep.unknown_rate['target']:.3%}")
    table.add_row("examples truncated", f"{rep.truncated_share['source']:.2%}", f"{rep.truncated_share['target']:.2%}")
    console.print(table)
    p = rep.target_length_percentiles
    console.print(f"target tokens p50 {p.get('p50')} · p90 {p.get('p90')} · p99 {p.get('p99')} · max {p.get('max')}")
    if out:
        console.print(f"saved to {out}")


def register(app: typer.Typer) -> None:
    app.command()(data)
    app.command()(tokenize)
