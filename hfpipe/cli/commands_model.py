"""`hfpipe evaluate`, `hfpipe predict`, `hfpipe attention`: use a trained model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hfpipe.cli.commands_recipe import BaselineOpt, GateOpt, SetOpt, SignificanceOpt
from hfpipe.cli.commands_run import JsonOpt
from hfpipe.cli.common import make_console

TargetArg = Annotated[str, typer.Argument(help="A run directory, or a model folder / Hub id.", show_default=False)]


def evaluate(target: TargetArg,
             split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
             recipe: Annotated[Path | None, typer.Option(help="Recipe for the data and generation settings "
                                                              "(default: the run's recipe.yaml).")] = None,
             set_: SetOpt = None,
             as_json: JsonOpt = False, gate: GateOpt = None, baseline: BaselineOpt = None,
             significance: SignificanceOpt = None) -> None:
    """Evaluate a trained model on a split and check the gates on it; in a run directory, metrics.json,
    predictions-<split>.jsonl and gates.json are updated."""
    from hfpipe.cli.commands_run import finish
    from hfpipe.pipeline.inference import evaluate_target
    from hfpipe.runs.reporting import RichReporter

    console = make_console(stderr=as_json)
    summary = evaluate_target(target, split=split, recipe_path=recipe, overrides=set_ or [],
                              reporter=RichReporter(console), gates=gate, baseline=baseline,
                              significance=significance)
    finish(console, summary, "evaluate", as_json)


def predict(target: TargetArg,
            input: Annotated[Path | None, typer.Option("--input", "-i", help="Text file, one input per line "
                                                                             "(default: stdin).")] = None,
            num_beams: Annotated[int | None, typer.Option(help="Override the model's saved setting.")] = None,
            max_new_tokens: Annotated[int | None, typer.Option(help="Override the model's saved setting.")] = None,
            batch_size: int = 32) -> None:
    """Translate or summarize lines: one output line per input line, in order."""
    from hfpipe.pipeline.inference import predict_lines

    if input is not None:
        from hfpipe.errors import DataError

        try:
            text = input.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"input file not found: {input}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read {input} as UTF-8 text: {err}", where=str(input)) from None
    else:
        text = sys.stdin.read()
    lines = text.splitlines()
    for line in predict_lines(target, lines, num_beams=num_beams, max_new_tokens=max_new_tokens,
                              batch_size=batch_size):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def attention(target: TargetArg,
              text: Annotated[str, typer.Option(help="The source text to translate or summarize.")],
              out: Annotated[Path, typer.Option(help="Folder for the PNG heat maps.")] = Path("attention-maps"),
              max_new_tokens: int = 64) -> None:
    """Write PNG heat maps of the attention between source and generated tokens (cross-attention per layer and
    head for Transformers, the additive/dot alignment for RNNs)."""
    from hfpipe.pipeline.attention_maps import plot_attention_maps
    from hfpipe.pipeline.inference import load_model_and_tokenizer

    console = make_console()
    model, tokenizer, prefix = load_model_and_tokenizer(target)
    paths = plot_attention_maps(model, tokenizer, prefix + text, out, max_new_tokens=max_new_tokens)
    for p in paths:
        console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
    app.command()(predict)
    app.command()(attention)
