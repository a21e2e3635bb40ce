"""`hfpipe validate`'s look at the real data and model before any training, without torch or transformers.

It reads every data file the recipe names through the same reader training uses, reads the model's config.json
where it is local, and counts target lengths with the `tokenizers` library where a tokenizer.json is at hand.
All problems are collected and reported together; warnings do not fail validation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfpipe.errors import DataError, HfpipeError, RecipeError
from hfpipe.pipeline.data_files import Example, read_examples
from hfpipe.hub.locations import resolve_location
from hfpipe.recipe.loading import LoadedRecipe
from hfpipe.recipe.schema import Recipe

# Rough tokens per whitespace word for subword vocabularies, used only when no tokenizer file is at hand.
_TOKENS_PER_WORD_ESTIMATE = 1.5


@dataclass
class PreflightReport:
    rows: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_errors_only: bool = True


def _model_config(recipe: Recipe) -> dict[str, Any] | None:
    """The model's config as a dict, where it can be known without loading the model."""
    from hfpipe.pipeline.models import config_sizes

    m = recipe.model
    if m.architecture is not None and m.architecture != "encoder-decoder":
        return {"model_type": m.architecture.replace("-", "_"), **config_sizes(m.architecture, dict(m.config))}
    source = m.pretrained or m.encoder
    if source is None:
        return None
    try:
        folder = Path(resolve_location(source))
    except HfpipeError:
        return None
    if (folder / "config.json").exists():
        try:
            return json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
    return None


def _tokenizer_file(recipe: Recipe) -> Path | None:
    for source in (recipe.tokenizer.from_, recipe.model.pretrained, recipe.model.encoder):
        if source:
            try:
                folder = Path(resolve_location(source))
            except HfpipeError:
                continue
            if (folder / "tokenizer.json").exists():
                return folder / "tokenizer.json"
    return None


def preflight(loaded: LoadedRecipe) -> PreflightReport:
    recipe = loaded.recipe
    report = PreflightReport()
    splits: dict[str, list[Example]] = {}
    d = recipe.data
    if d.files is not None:
        for split in ("train", "validation", "test"):
            paths = d.files.paths(split)
            if not paths:
                continue
            examples, dropped, failed = [], 0, False
            for k, name in enumerate(paths):
                key = f"data.files.{split}" + (f".{k}" if len(paths) > 1 else "")
                try:
                    more, more_dropped = read_examples(Path(name), recipe.task, d)
                except DataError as err:
                    report.errors.append(f"{key}: {err.message}" + (f" ({err.where})" if err.where else "")
                                         + (f"; fix: {err.hint}" if err.hint else ""))
                    failed = True
                    continue
                if len(paths) > 1 and not more:  # the split as a whole may still have rows
                    report.warnings.append(f"{key}: no usable rows in {name}")
                examples += more
                dropped += more_dropped
            if failed:
                continue
            name = ", ".join(paths)
            report.rows[split], report.dropped[split] = len(examples), dropped
            splits[split] = examples
            if not examples and not dropped:
                report.errors.append(f"data.files.{split}: no rows: "
                                     + ("the file is empty or has only a header" if len(paths) == 1 else
                                        "every file is empty or has only a header") + f" ({name})")
            elif not examples:
                report.errors.append(f"data.files.{split}: no usable rows: all {dropped:,} rows have an empty source "
                                     f"or target ({name})")
            elif dropped:
                report.warnings.append(f"data.files.{split}: {dropped:,} rows with an empty source or target will "
                                       "be dropped")
        _check_carving(recipe, splits, report)
        if "validation" not in splits and "train" in splits:
            report.notes.append(f"no validation file: {d.validation_fraction:.0%} of train will be carved off "
                                f"(seed {d.split_seed})")
        if "test" in recipe.evaluate.splits and d.files.test is None and d.test_fraction is None:
            report.warnings.append("evaluate.splits has 'test' but there is no test split (data.files.test or "
                                   "data.test_fraction): it will be skipped")
    else:
        report.notes.append(f"Hub dataset {d.hub_dataset!r}: columns are checked when it is loaded")

    m = recipe.model
    if m.architecture is not None and m.architecture != "encoder-decoder":
        from hfpipe.pipeline.models import config_problems

        vocab = recipe.tokenizer.train.vocab_size if recipe.tokenizer.train is not None else 0
        for problem in config_problems(m.architecture, dict(m.config), vocab):
            report.errors.append(problem)
            report.data_errors_only = False
    config = _model_config(recipe)
    if config is not None:
        from hfpipe.pipeline.models import position_limit

        limit = position_limit(config)
        if limit is not None and d.max_source_length > limit:
            report.errors.append(f"data.max_source_length is {d.max_source_length} but the model encodes at most "
                                 f"{limit} positions: set it to {limit} or less")
            report.data_errors_only = False
        if limit is not None and d.max_target_length > limit:
            report.errors.append(f"data.max_target_length is {d.max_target_length} but the model has {limit} "
                                 f"positions: set it to {limit} or less")
            report.data_errors_only = False
    elif recipe.model.pretrained:
        report.notes.append(f"model {recipe.model.pretrained!r} is not a local folder: its position limit is "
                            "checked when it loads")

    _check_lengths(recipe, splits, report)
    return report


def _check_carving(recipe: Recipe, splits: dict[str, list[Example]], report: PreflightReport) -> None:
    """The held-out splits that will be carved off train must leave train at least one row (as data.py carves)."""
    from hfpipe.pipeline.data import held_out_rows

    d = recipe.data
    left = len(splits.get("train") or [])
    if not left:
        return
    for split, fraction in (("validation", d.validation_fraction), ("test", d.test_fraction)):
        if split in splits or (d.files is not None and getattr(d.files, split)) or fraction is None:
            continue
        held = held_out_rows(left, fraction)
        if left - held < 1:
            report.errors.append(f"data.files.train: {left:,} usable row(s) are too few to carve off a {split} "
                                 f"split and still train: give data.files.{split}, or more training rows")
            return
        left -= held


def _check_lengths(recipe: Recipe, splits: dict[str, list[Example]], report: PreflightReport) -> None:
    reference_split = next((s for s in ("validation", "test", "train") if splits.get(s)), None)
    if reference_split is None:
        return
    refs = [e.target for e in splits[reference_split]]
    tok_file = _tokenizer_file(recipe)
    if tok_file is not None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tok_file))
        tok.no_padding()  # tokenizer.json files often carry a fixed padding/truncation from their last use
        tok.no_truncation()
        tok.no_padding()  # a tokenizer.json may pad every text to a fixed length (sentence-transformers do)
        tok.no_truncation()
        lengths = [len(enc.ids) for enc in tok.encode_batch(refs[:20000])]
        how = f"counted with {tok_file.parent.name}/tokenizer.json"
    else:
        lengths = [math.ceil(len(r.split()) * _TOKENS_PER_WORD_ESTIMATE) + 1 for r in refs[:20000]]
        how = f"estimated at {_TOKENS_PER_WORD_ESTIMATE} tokens per word (the tokenizer is trained at run time)"
    limit = recipe.evaluate.max_new_tokens
    if limit is not None:
        cut = sum(n > limit for n in lengths) / len(lengths)
        if cut > 0.01:
            report.warnings.append(f"evaluate.max_new_tokens={limit} is shorter than {cut:.1%} of the "
                                   f"{reference_split} references ({how}): their predictions would be cut")
        if limit < 8:
            report.warnings.append(f"evaluate.max_new_tokens={limit} is very small")
    else:
        report.notes.append("evaluate.max_new_tokens: derived from the target lengths at run time")
    train_cut = sum(n > recipe.data.max_target_length for n in lengths) / len(lengths)
    if train_cut > 0.05:
        report.warnings.append(f"data.max_target_length={recipe.data.max_target_length} truncates {train_cut:.0%} "
                               f"of the {reference_split} targets ({how})")


def raise_if_failed(report: PreflightReport, path: Path) -> None:
    if report.errors:
        cls = DataError if report.data_errors_only else RecipeError
        n = len(report.errors)
        raise cls(f"{n} problem{'s' if n > 1 else ''} found checking {path} against its data and model",
                  details=report.errors, hint="fix the items above and run `hfpipe validate` again")
