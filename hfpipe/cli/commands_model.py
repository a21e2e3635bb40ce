"""`hfpipe evaluate`, `hfpipe predict`, `hfpipe attention`: use a trained model."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from hfpipe.cli.commands_recipe import BaselineOpt, GateOpt, SetOpt, SignificanceOpt
from hfpipe.cli.commands_run import JsonOpt
from hfpipe.cli.common import make_console

# Each command here calls quiet_libraries before loading the model: transformers draws a "Loading weights" bar
# otherwise, into the middle of hfpipe's own output.
TargetArg = Annotated[str, typer.Argument(help="A run directory, or a model folder / Hub id.", show_default=False)]


def _evaluation_name(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
        raise typer.BadParameter("a folder name: letters, digits, '.', '_' and '-', starting with a letter or digit")
    return value


def evaluate(target: TargetArg,
             split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
             recipe: Annotated[Path | None, typer.Option(help="Recipe for the data and generation settings "
                                                              "(default: the run's recipe.yaml).")] = None,
             set_: SetOpt = None,
             name: Annotated[str | None, typer.Option(
                 help="Record the results in RUN/evaluations/NAME/ (default there for other data: "
                      "<split>-<data fingerprint>).", callback=_evaluation_name, show_default=False)] = None,
             as_json: JsonOpt = False, gate: GateOpt = None, baseline: BaselineOpt = None,
             significance: SignificanceOpt = None) -> None:
    """Evaluate a trained model on a split and check the gates on it.

    In a run directory, the run's own data updates its record: metrics.json, predictions-<split>.jsonl and
    gates.json. Other data (a --recipe or --set that changes the rows of the split) is recorded apart, in
    RUN/evaluations/<split>-<data fingerprint>/ or RUN/evaluations/NAME/ with --name, next to the recipe used."""
    from hfpipe.cli.commands_run import finish
    from hfpipe.pipeline.inference import evaluate_target
    from hfpipe.runs.reporting import RichReporter, quiet_libraries

    console = make_console(stderr=as_json)
    quiet_libraries()
    summary = evaluate_target(target, split=split, recipe_path=recipe, overrides=set_ or [],
                              reporter=RichReporter(console), gates=gate, baseline=baseline,
                              significance=significance, name=name)
    finish(console, summary, "evaluate", as_json)


def predict(target: TargetArg,
            input: Annotated[Path | None, typer.Option("--input", "-i", help="Text file, one input per line "
                                                                             "(default: stdin).")] = None,
            num_beams: Annotated[int | None, typer.Option(help="Override the model's saved setting.")] = None,
            max_new_tokens: Annotated[int | None, typer.Option(help="Override the model's saved setting.")] = None,
            batch_size: int = 32) -> None:
    """Translate or summarize lines: one output line per input line, in order."""
    from hfpipe.pipeline.inference import predict_lines
    from hfpipe.runs.reporting import quiet_libraries

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
    quiet_libraries()
    for line in predict_lines(target, lines, num_beams=num_beams, max_new_tokens=max_new_tokens,
                              batch_size=batch_size):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def attention(target: TargetArg,
              text: Annotated[str, typer.Option(help="The source text to translate or summarize.")],
              out: Annotated[Path, typer.Option(help="Folder for the PNG heat maps (and copy_distribution.json).")]
              = Path("attention-maps"),
              max_new_tokens: int = 64) -> None:
    """Write PNG heat maps of the attention between source and generated tokens (cross-attention per layer and
    head for Transformers, the additive/dot alignment for RNNs). A Transformer with copy attention also gets
    copy_distribution.png: its copy distribution over the source tokens and, beside it, the probability of
    generating or copying each generated token, with the numbers in copy_distribution.json."""
    from hfpipe.pipeline.attention_maps import plot_attention_maps
    from hfpipe.pipeline.inference import load_model_and_tokenizer
    from hfpipe.runs.reporting import quiet_libraries

    console = make_console()
    quiet_libraries()
    model, tokenizer, prefix = load_model_and_tokenizer(target)
    paths = plot_attention_maps(model, tokenizer, prefix + text, out, max_new_tokens=max_new_tokens)
    for p in paths:
        console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
    app.command()(predict)
    app.command()(attention)
