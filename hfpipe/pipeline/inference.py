"""Using a trained model: load it from a run directory, a folder or the Hub; predict lines; evaluate a split."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from hfpipe.errors import RunDirError
from hfpipe.pipeline.data import read_splits
from hfpipe.pipeline.distributed import make_accelerator
from hfpipe.recipe.loading import recipe_to_yaml
from hfpipe.runs.files import json_atomic, text_atomic
from hfpipe.runs.gates import gate_split, recipe_gates, run_gates
from hfpipe.runs.reporting import Reporter, quiet_libraries
from hfpipe.runs.rundir import RunDir
from hfpipe.runs.summary import RunSummary, write_metrics

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_model_and_tokenizer(target: str, *, trust_remote_code: bool = False,
                             ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """(model, tokenizer, source prefix) from a run directory, a model folder or a Hub id. A run is loaded as its
    own recipe says (`model.trust_remote_code`), exactly as `run --resume` loads it; `trust_remote_code` is for a
    folder or Hub id (the --recipe's setting)."""
    from hfpipe.hub.locations import resolve_location

    path = Path(target)
    prefix = ""
    if (path / "recipe.yaml").exists():
        from hfpipe.recipe.loading import load_recipe

        recipe = load_recipe(path / "recipe.yaml").recipe
        prefix = recipe.data.source_prefix
        trust_remote_code = recipe.model.trust_remote_code
        path = path / "model"
        if not (path / "config.json").exists():
            raise RunDirError(f"the run {target} has no trained model yet (no model/config.json)",
                              hint="finish training with `hfpipe run RECIPE --run-dir DIR --resume`")
        source = str(path)
    else:
        source = resolve_location(target)
    model, tokenizer = load_model_folder(source, target, trust_remote_code=trust_remote_code)
    return model, tokenizer, prefix


def load_model_folder(source: str, target: str | None = None, *, trust_remote_code: bool = False,
                      ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer from a model folder or Hub id, through the one model loader (pipeline.models)."""
    from transformers import AutoTokenizer

    from hfpipe.errors import ModelError
    from hfpipe.hub.locations import TOKENIZER_FILES, load_error, local_files_only
    from hfpipe.pipeline.models import load_model

    model = load_model(source, trust_remote_code=trust_remote_code)
    _restore_hfpipe_generation_keys(model, source)
    only_local = local_files_only(source, "tokenizer", files=TOKENIZER_FILES)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=only_local,
                                                  trust_remote_code=trust_remote_code)
    except Exception as err:
        raise load_error("tokenizer", target or source, err) from None
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:  # token ids past the embedding table: an index error in the first forward pass
        raise ModelError(f"the tokenizer has {len(tokenizer):,} tokens but the model's embeddings have {rows:,} rows: "
                         "they do not belong together", where=str(source),
                         hint="save the tokenizer the model was trained with next to it (a run's model/ folder "
                              "holds both)")
    return model, tokenizer


def _restore_hfpipe_generation_keys(model: PreTrainedModel, source: str) -> None:
    """Put the hfpipe_* keys of the saved generation_config.json (the source-length limits) back on the loaded
    model: transformers saves unknown keys but drops them when it loads a generation config, so the file is read."""
    path: Path | str | None = Path(source) / "generation_config.json"
    if not Path(source).is_dir():  # a Hub id: the copy in the local cache, which loading the model just filled
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(source, "generation_config.json")
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # transformers read it already; a file it could not read is its error to report
        return
    for key, value in saved.items():
        if key.startswith("hfpipe_"):
            setattr(model.generation_config, key, value)


def predict_lines(target: str, lines: list[str], *, num_beams: int | None = None, max_new_tokens: int | None = None,
                  batch_size: int = 32) -> list[str]:
    """One prediction per input line (empty lines stay empty), in order."""
    from accelerate import Accelerator

    from hfpipe.pipeline.evaluation import GenerationSettings, generate_texts

    model, tokenizer, prefix = load_model_and_tokenizer(target)
    gc = model.generation_config
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens or gc.max_new_tokens or 128, num_beams=num_beams or gc.num_beams or 1,
        length_penalty=gc.length_penalty if gc.length_penalty is not None else 1.0,
        no_repeat_ngram_size=gc.no_repeat_ngram_size or 0, repetition_penalty=gc.repetition_penalty or 1.0,
        batch_size=batch_size, min_length_ratio=getattr(gc, "hfpipe_min_length_ratio", None),
        max_length_ratio=getattr(gc, "hfpipe_max_length_ratio", None))
    quiet_libraries()
    accelerator = Accelerator()
    model = model.to(accelerator.device)
    todo = [i for i, line in enumerate(lines) if line.strip()]
    outputs = [""] * len(lines)
    if todo:
        from hfpipe.pipeline.models import position_limit

        # Longer inputs are cut to what the model can encode (a trained tokenizer's model_max_length is "none").
        limits = [n for n in (position_limit(model.config.to_dict()), getattr(tokenizer, "model_max_length", None))
                  if n]
        texts = generate_texts(model, tokenizer, [prefix + lines[i].strip() for i in todo], settings,
                               accelerator=accelerator, max_source_length=min([*limits, 1024]))
        for i, t in zip(todo, texts):
            outputs[i] = " ".join(t.split())  # one line per input, whatever the model emits
    return outputs


def _own_data(run_dir: Path, split: str, examples: list, recipe_path: Path | None, overrides: list[str]) -> bool:
    """Whether `examples` are the rows the run itself evaluates on `split` (its recipe, its files)."""
    if recipe_path is None and not overrides:
        return True
    from hfpipe.errors import HfpipeError
    from hfpipe.pipeline.tokenization import examples_fingerprint
    from hfpipe.recipe.loading import load_recipe

    try:
        own_recipe = load_recipe(run_dir / "recipe.yaml").recipe
        own = read_splits(own_recipe)[0].get(split, [])
    except HfpipeError:  # the run's data moved or is gone: nothing shows these rows are the run's own
        return False
    if own_recipe.evaluate.max_samples:
        own = own[:own_recipe.evaluate.max_samples]
    return examples_fingerprint({split: own}) == examples_fingerprint({split: examples})


def evaluation_dir(run_dir: Path, split: str, examples: list, *, name: str | None, recipe_path: Path | None,
                   overrides: list[str]) -> Path:
    """Where an evaluation of a run is recorded: the run's own record (metrics.json, predictions-<split>.jsonl)
    for the run's own data; evaluations/<name>/ for a name or other data (default name: the split and a short
    fingerprint of its rows), so results on other data never replace the run's."""
    if name is None and _own_data(run_dir, split, examples, recipe_path, overrides):
        return run_dir
    from hfpipe.pipeline.tokenization import examples_fingerprint

    return run_dir / "evaluations" / (name or f"{split}-{examples_fingerprint({split: examples})[:8]}")


def evaluate_target(target: str, *, split: str, recipe_path: Path | None, overrides: list[str],
                    reporter: Reporter, gates: list[str] | None = None, baseline: str | None = None,
                    significance: float | None = None, name: str | None = None) -> RunSummary:
    """Evaluate a run's model (or any model folder with --recipe) on one split, and check the gates on it.
    In a run directory the results go where `evaluation_dir` says."""
    from hfpipe.pipeline.evaluation import (
        GenerationSettings,
        default_max_new_tokens,
        evaluate_split,
    )
    from hfpipe.recipe.loading import load_recipe

    path = Path(target)
    is_run = (path / "recipe.yaml").exists()
    if recipe_path is None and not is_run:
        raise RunDirError(f"{target} is not a run directory, so hfpipe does not know the data to evaluate on",
                          hint="pass --recipe RECIPE.yaml (its data and evaluate sections are used)")
    loaded = load_recipe(recipe_path or path / "recipe.yaml", overrides, gates=gates, baseline=baseline,
                         significance=significance)
    recipe = loaded.recipe
    splits, _ = read_splits(recipe)
    if split not in splits:
        raise RunDirError(f"the recipe's data has no {split} split (it has {', '.join(splits)})")
    examples = splits[split]
    if recipe.evaluate.max_samples:
        examples = examples[:recipe.evaluate.max_samples]
    model, tokenizer, _ = load_model_and_tokenizer(target, trust_remote_code=recipe.model.trust_remote_code)
    accelerator = make_accelerator(recipe)
    model = model.to(accelerator.device)  # generation only: no DDP wrapper (it hides generate and its config)
    label_lengths = [len(x) for x in tokenizer(text_target=[e.target for e in splits["train"][:5000]])["input_ids"]]
    saved = model.generation_config.max_new_tokens if is_run else None
    settings = GenerationSettings.from_recipe(recipe.evaluate, saved or default_max_new_tokens(label_lengths))
    reporter.stage("evaluate", f"{split} ({len(examples):,} rows, beams {settings.num_beams}, max_new_tokens "
                               f"{settings.max_new_tokens})")
    update = reporter.progress(f"generating {split}", len(examples))
    out_dir = evaluation_dir(path, split, examples, name=name, recipe_path=recipe_path, overrides=overrides) \
        if is_run else None
    if out_dir is not None and out_dir != path and accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        text_atomic(out_dir / "recipe.yaml", recipe_to_yaml(recipe))  # what data and settings these results are on
    from hfpipe.tasks.extra_metrics import load_extra_metrics

    res = evaluate_split(model, tokenizer, recipe, split, examples, settings, accelerator=accelerator,
                         out_dir=out_dir if accelerator.is_main_process else None, on_batch=lambda n: update(n, {}),
                         extra_metrics=load_extra_metrics(recipe.evaluate.extra_metrics))
    reporter.done()
    res.metrics["seconds"] = res.seconds
    res.metrics["generation"] = asdict(settings)  # per split: what these predictions were made with
    summary = RunSummary(run_dir=path, metrics={split: res.metrics}, stage_seconds={"evaluate": res.seconds},
                         model_dir=path / "model" if is_run else path, task=recipe.task,
                         evaluation_dir=out_dir if out_dir != path else None)
    if out_dir is not None and out_dir != path:
        reporter.info(f"recorded in {out_dir} (the run's own metrics.json and predictions stay as they were)")
    if out_dir is not None and accelerator.is_main_process:
        write_metrics(RunDir(out_dir), recipe, summary, settings)
        stale = out_dir / "gates.json"
        if stale.is_file() and json.loads(stale.read_text(encoding="utf-8")).get("split") == split:
            stale.unlink()  # its verdict was on the predictions just replaced
    if recipe_gates(recipe) and gate_split(recipe, [split]) != split:
        reporter.info(f"[yellow]the gates read the {gate_split(recipe, [split])} split: not checked on {split}"
                      "[/yellow]")
        summary.gates = {"status": "not_checked", "passed": False, "split": gate_split(recipe, [split]),
                         "results": [], "could_not_compare": None, "baseline": None, "significance": None}
    elif recipe_gates(recipe):
        reporter.stage("gates", f"{split} split")
        report = run_gates(recipe, split=split, metrics=res.metrics, predictions=res.predictions, examples=examples,
                           settings=settings, accelerator=accelerator, on_message=reporter.info)
        summary.gates = report.to_dict()
        if out_dir is not None and accelerator.is_main_process:
            json_atomic(out_dir / "gates.json", summary.gates)
    return summary
