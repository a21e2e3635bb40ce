"""`hfpipe validate`, `hfpipe recipes`, `hfpipe schema`: everything about recipes, with no torch import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hfpipe.cli.common import make_console

RecipeArg = Annotated[Path, typer.Argument(help="The YAML recipe.", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set train.learning_rate=3e-4 "
                                                                "(repeatable).", show_default=False)]
GateOpt = Annotated[list[str] | None, typer.Option(
    "--gate", help='A gate on the test metrics, added to the recipe\'s: "bleu>=25", "bleu>=baseline+0.5", '
                   '"rougeL>=baseline*1.01". Repeatable. A failed gate exits 8 and blocks the push.')]
BaselineOpt = Annotated[str | None, typer.Option(
    "--baseline", help="What baseline gates compare with: a run directory, or hub:NAMESPACE/NAME[@REVISION] "
                       "(re-scored on the same rows). Cannot be scored: exit 9.")]
SignificanceOpt = Annotated[float | None, typer.Option(
    "--significance", min=0.0, max=1.0, help="Baseline gates also need a paired bootstrap p-value below this.")]


def validate(recipe: RecipeArg, set_: SetOpt = None,
             no_data: Annotated[bool, typer.Option("--no-data", help="Check the schema only, not the data files.")]
             = False, gate: GateOpt = None, baseline: BaselineOpt = None,
             significance: SignificanceOpt = None) -> None:
    """Check a recipe (schema, files, columns, model limits, generation length) without training.

    Never imports torch or transformers. Every problem is reported at once; exit 0 when the recipe is ready."""
    from rich.markup import escape  # paths and column names can hold [brackets]

    from hfpipe.pipeline.preflight import preflight, raise_if_failed
    from hfpipe.recipe.loading import load_recipe

    console = make_console()
    loaded = load_recipe(recipe, set_ or [], gates=gate, baseline=baseline, significance=significance)
    if not no_data:
        report = preflight(loaded)
        raise_if_failed(report, loaded.path)
        for w in report.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(w)}")
        for n in report.notes:
            console.print(f"[dim]note: {escape(n)}[/dim]")
        rows = ", ".join(f"{k} {v:,}" for k, v in report.rows.items())
        console.print(f"[green]✓[/green] {escape(loaded.path.name)}: {loaded.recipe.task} recipe is valid"
                      + (f" (rows: {rows})" if rows else ""))
    else:
        console.print(f"[green]✓[/green] {escape(loaded.path.name)}: schema valid")


def recipes(copy: Annotated[Path | None, typer.Option(
        "--copy", metavar="DIR", help="Write the shipped recipes to DIR/recipes and the data sample they read to "
                                      "DIR/data, ready to edit and run from DIR; nothing is overwritten.")] = None
            ) -> None:
    """List the shipped recipes with their one-line descriptions (and the ones in ./recipes)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from hfpipe.errors import HfpipeError
    from hfpipe.recipe.loading import load_recipe
    from hfpipe.recipe.shipped import copy_shipped, shipped_recipes

    console = make_console()
    if copy is not None:
        written = copy_shipped(copy)
        first = next((p for p in written if p.name == "translation-en-de.yaml"), written[0])  # CPU-only, offline
        console.print(f"wrote {len(written)} recipes to {escape(str(copy / 'recipes'))} and their data to "
                      f"{escape(str(copy / 'data'))}; from there: hfpipe run recipes/{first.name}", soft_wrap=True)
        return
    here = sorted((Path.cwd() / "recipes").glob("*.yaml"))
    table = Table("recipe", "task", "description")
    for path in dict.fromkeys([*(p.resolve() for p in here), *shipped_recipes()]):
        try:  # through the loader, so a recipe that `extends` another shows what it inherits
            recipe = load_recipe(path).recipe
            task, description = recipe.task, Text(recipe.description or "")
        except HfpipeError:
            task, description = "?", Text("invalid: run `hfpipe validate` on it", style="red")
        rel = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        table.add_row(str(rel), task, description)
    console.print(table)


def schema() -> None:
    """Print the recipe JSON Schema (point your editor's YAML plugin at it for completion)."""
    from hfpipe.recipe.schema import Recipe

    print(json.dumps(Recipe.model_json_schema(by_alias=True), indent=2))


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(recipes)
    app.command()(schema)
