"""The baseline a gate compares with, scored on the same rows as the new model.

    a run directory          its predictions on these rows are reused when they were made with the same
                             generation settings; otherwise its model/ is re-scored
    hub:NAMESPACE/NAME[@REV] the published model is downloaded (or taken from the local cache) and re-scored:
                             the same split, the same generation settings, the same metric versions
    (with baseline_from_card) the numbers in the Hub model card's model-index, which may come from other data or
                             settings: a fallback that must be asked for, and it allows no significance test

Anything that goes wrong is a BaselineError ("could not compare", exit 9), never a pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hfpipe.errors import BaselineError, HfpipeError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from hfpipe.pipeline.data_files import Example
    from hfpipe.pipeline.evaluation import GenerationSettings
    from hfpipe.recipe.schema import Recipe

HUB_PREFIX = "hub:"


@dataclass
class BaselineScore:
    metrics: dict[str, Any]
    predictions: list[str] | None
    info: dict[str, Any]


def parse_hub(spec: str) -> tuple[str, str | None]:
    repo_id, _, revision = spec.removeprefix(HUB_PREFIX).partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise BaselineError(f"cannot read the Hub baseline {spec!r}", hint="write hub:NAMESPACE/NAME or "
                                                                           "hub:NAMESPACE/NAME@REVISION")
    return repo_id, revision or None


def score_baseline(spec: str, *, recipe: Recipe, split: str, examples: list[Example], settings: GenerationSettings,
                   accelerator: Accelerator, from_card: bool = False) -> BaselineScore:
    """The baseline's metrics (and predictions, when it was scored here) on `examples` of `split`."""
    if spec.startswith(HUB_PREFIX):
        repo_id, revision = parse_hub(spec)
        if from_card:
            return _from_card(repo_id, revision, split)
        folder, commit = _download_once(repo_id, revision, accelerator)
        info = {"kind": "hub", "source": spec, "repo_id": repo_id, "revision": revision or "main", "commit": commit,
                "rescored": True, "reused_predictions": False}
        prefix = _source_prefix(folder / "recipe.yaml", default=recipe.data.source_prefix)
        return _rescore(str(folder), prefix, info, recipe=recipe, split=split, examples=examples,
                        settings=settings, accelerator=accelerator)
    run = Path(spec)
    if not (run / "recipe.yaml").is_file():
        raise BaselineError(f"the baseline {spec} is not a run directory (no recipe.yaml)", where=spec,
                            hint="give a run directory written by `hfpipe run`, or hub:NAMESPACE/NAME")
    info = {"kind": "run", "source": str(run), "rescored": False, "reused_predictions": True}
    reused = _reusable_predictions(run, split, examples, settings)
    if reused is not None:
        return BaselineScore(_score(recipe, examples, reused), reused, info)
    if not (run / "model" / "config.json").is_file():
        raise BaselineError(f"the baseline run {spec} has no predictions for these {split} rows and no model to "
                            "re-score", where=spec)
    info.update(rescored=True, reused_predictions=False)
    prefix = _source_prefix(run / "recipe.yaml", default=recipe.data.source_prefix)
    return _rescore(str(run / "model"), prefix, info, recipe=recipe, split=split, examples=examples,
                    settings=settings, accelerator=accelerator)


def _score(recipe: Recipe, examples: list[Example], predictions: list[str]) -> dict[str, Any]:
    from hfpipe.pipeline.evaluation import score

    return score(recipe.task, [e.source for e in examples], predictions, [e.target for e in examples],
                 recipe.evaluate.length_buckets)


def _reusable_predictions(run: Path, split: str, examples: list[Example],
                          settings: GenerationSettings) -> list[str] | None:
    """The baseline run's predictions, when they are for exactly these rows and these generation settings."""
    path, metrics = run / f"predictions-{split}.jsonl", run / "metrics.json"
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        # The settings of this split's predictions (a later `evaluate` of another split may use others).
        generation = json.loads(metrics.read_text(encoding="utf-8"))["splits"][split].get("generation")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if generation != asdict(settings) or len(rows) != len(examples):
        return None
    if any(r.get("source") != e.source or r.get("reference") != e.target for r, e in zip(rows, examples)):
        return None
    return [str(r.get("prediction", "")) for r in rows]


def _source_prefix(recipe_file: Path, *, default: str) -> str:
    """The baseline's own source prefix (a T5 task prefix), from its recipe where it has one."""
    try:
        data = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
        return str(((data or {}).get("data") or {}).get("source_prefix") or "")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return default


def _download(repo_id: str, revision: str | None, *, local_only: bool = False) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download

    from hfpipe.errors import HubError
    from hfpipe.hub.locations import local_files_only

    try:
        cache_only = local_only or local_files_only(repo_id, "baseline model", revision=revision)
    except HubError as err:
        raise BaselineError(err.message, where=f"hub:{repo_id}", hint=err.hint) from None
    allowed = not cache_only
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=cache_only))
    except Exception as err:  # noqa: BLE001 - every failure here means "could not compare"
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = ("it is not in the local Hugging Face cache: unset HF_HUB_OFFLINE to download the baseline"
                if not allowed else "check the repo id and revision, and HF_TOKEN for a private repo")
        raise BaselineError(f"cannot get the baseline model {repo_id}"
                            + (f"@{revision}" if revision else "") + f" from the Hub: {text}",
                            where=f"hub:{repo_id}", hint=hint) from None
    return folder, folder.name  # snapshots/<commit>


def _download_once(repo_id: str, revision: str | None, accelerator: Accelerator) -> tuple[Path, str]:
    """The main process downloads (or finds in the cache) and names the commit; the other processes take that very
    commit from the cache, so all of them score the same model even if the Hub moves meanwhile. A failure is
    shared: every process raises the same BaselineError, none waits for the others."""
    outcome: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            outcome = [_download(repo_id, revision)[1]]
        except BaselineError as err:
            outcome = [("error", err.message, err.hint)]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        outcome = broadcast_object_list(outcome)
    if isinstance(outcome[0], tuple):
        raise BaselineError(outcome[0][1], where=f"hub:{repo_id}", hint=outcome[0][2])
    commit, folder, problem = outcome[0], None, None
    try:  # the main process has it in its cache; another machine fetches that same commit
        folder, _ = _download(repo_id, commit)
    except BaselineError as err:
        problem = err.message
    problem = _all_ok(accelerator, problem)
    if problem or folder is None:
        raise BaselineError(problem or "the baseline model could not be fetched", where=f"hub:{repo_id}")
    return folder, commit


def _all_ok(accelerator: Accelerator, problem: str | None) -> str | None:
    """The first process's problem, if any process had one (so all go on, or all stop, together)."""
    if accelerator.num_processes == 1:
        return problem
    from accelerate.utils import gather_object

    return next((p for p in gather_object([problem]) if p), None)


def _rescore(source: str, prefix: str, info: dict[str, Any], *, recipe: Recipe, split: str,
             examples: list[Example], settings: GenerationSettings, accelerator: Accelerator) -> BaselineScore:
    from hfpipe.pipeline.evaluation import generate_texts
    from hfpipe.pipeline.inference import load_model_folder

    problem = None
    try:
        model, tokenizer = load_model_folder(source)
    except HfpipeError as err:
        problem = f"cannot load the baseline model: {err.message}"
    problem = _all_ok(accelerator, problem)
    if problem:
        raise BaselineError(problem, where=info["source"])
    model = model.to(accelerator.device)
    try:
        predictions = generate_texts(model, tokenizer, [prefix + e.source for e in examples], settings,
                                     accelerator=accelerator, max_source_length=recipe.data.max_source_length)
    except (RuntimeError, ValueError) as err:  # out of memory, a length the model cannot take, ...
        raise BaselineError(f"the baseline model failed to generate: {str(err).splitlines()[0]}",
                            where=info["source"]) from None
    finally:
        del model  # the new model and the baseline need not share the device longer than this
    return BaselineScore(_score(recipe, examples, predictions), predictions, info)


_CARD_NAMES = {"BLEU": "bleu", "chrF": "chrf", "ROUGE-1": "rouge1", "ROUGE-2": "rouge2", "ROUGE-L": "rougeL",
               "ROUGE-Lsum": "rougeLsum", "BLEU-ROUGE-L F1": "bleu_rouge_f1"}


def _from_card(repo_id: str, revision: str | None, split: str) -> BaselineScore:
    """The model-index numbers of the Hub card for `split` (as hfpipe's cards write them)."""
    from huggingface_hub import ModelCard

    from hfpipe.hub.locations import hub_downloads_allowed

    try:
        card = ModelCard.load(repo_id, revision=revision, local_files_only=not hub_downloads_allowed())
    except Exception as err:  # noqa: BLE001
        raise BaselineError(f"cannot read the model card of {repo_id}: {str(err).splitlines()[0] if str(err) else err}",
                            where=f"hub:{repo_id}") from None
    metrics: dict[str, Any] = {}
    for result in card.data.eval_results or []:
        if result.dataset_split not in (split, None):
            continue
        name = (result.metric_name or "").removeprefix(f"{split} ").strip()
        key = _CARD_NAMES.get(name) or (result.metric_type if result.metric_type in ("bleu", "chrf") else None)
        if key and isinstance(result.metric_value, (int, float)):
            metrics.setdefault(key, float(result.metric_value))
    if not metrics:
        raise BaselineError(f"the model card of {repo_id} has no {split} results in its model-index",
                            where=f"hub:{repo_id}", hint="re-score the model instead (drop baseline_from_card)")
    return BaselineScore(metrics, None, {"kind": "card", "source": f"hub:{repo_id}", "repo_id": repo_id,
                                         "revision": revision or "main", "rescored": False,
                                         "reused_predictions": False})
