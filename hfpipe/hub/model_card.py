"""The model card (README.md) pushed with a run: Hub metadata with a `model-index`, then prose.

The metadata is built with huggingface_hub's `ModelCardData` / `EvalResult`, which write the `model-index` in the
form the Hub validates and shows as evaluation results; nothing here hand-builds that YAML. Everything is read from
the run directory (recipe.yaml, metrics.json, manifest.json, model/config.json) through hfpipe.runs.files: a missing
file or an oddly shaped entry leaves a line out of the card; a file that is not a JSON object is a RunDirError,
worded as every reader of a run words it.

Importing this module is cheap (huggingface_hub's card classes, no torch/transformers).
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from hfpipe.runs.files import read_json, read_recipe

__all__ = ["build_model_card", "is_hub_id"]

# metric key in metrics.json -> (model-index metric type, pretty name, scale note)
_METRICS: dict[str, tuple[str, str]] = {
    "bleu": ("bleu", "BLEU"),
    "chrf": ("chrf", "chrF"),
    "rouge1": ("rouge", "ROUGE-1"),
    "rouge2": ("rouge", "ROUGE-2"),
    "rougeL": ("rouge", "ROUGE-L"),
    "rougeLsum": ("rouge", "ROUGE-Lsum"),
    "bleu_rouge_f1": ("bleu_rouge_f1", "BLEU-ROUGE-L F1"),
}
_SCALE = {"bleu": "0-100", "chrf": "0-100", "rouge1": "0-1", "rouge2": "0-1", "rougeL": "0-1", "rougeLsum": "0-1",
          "bleu_rouge_f1": "0-1"}
_TASK_NAMES = {"translation": "Translation", "summarization": "Summarization"}
# Settings shown in the card's training table, in this order (the full recipe is pushed as recipe.yaml).
_TRAIN_KEYS = ("num_epochs", "max_steps", "max_minutes", "batch_size", "batch_tokens", "gradient_accumulation_steps",
               "learning_rate", "lr_scheduler", "warmup_steps", "warmup_ratio", "weight_decay", "label_smoothing",
               "max_grad_norm", "mixed_precision", "seed")
_DATA_KEYS = ("max_source_length", "max_target_length", "source_prefix", "max_train_samples")
_LANG_RE = re.compile(r"^[a-z]{2,3}$")


# ------------------------------------------------------------------------------------------------ reading the run


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def is_hub_id(name: Any, *, base: Path | None = None) -> bool:
    """True if `name` looks like a Hub model id rather than a local path (used for `base_model`)."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".", "~")) or "\\" in name:
        return False
    if Path(name).exists() or (base is not None and (base / name).exists()):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return name.count("/") <= 1


def _stored_parameters(model_dir: Path) -> int | None:
    """Number of parameters stored in the safetensors files (read from their headers only)."""
    total = 0
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    try:
        for file in files:
            with open(file, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            for name, entry in header.items():
                if name != "__metadata__":
                    total += math.prod(entry.get("shape", []))
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return total


def _first_source(run_dir: Path, split: str | None) -> str | None:
    """A source text from the run's predictions, for a usage example that looks like the training data."""
    candidates = [run_dir / f"predictions-{split}.jsonl"] if split else []
    candidates += sorted(run_dir.glob("predictions-*.jsonl"))
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as f:
                row = json.loads(f.readline())
        except (OSError, ValueError):
            continue
        if isinstance(row, dict):
            for key in ("source", "input", "src", "document", "text"):
                if isinstance(row.get(key), str) and row[key].strip():
                    return row[key].strip()[:300]
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return f"`{value!r}`" if value == "" or value != value.strip() else value.replace("|", "\\|")
    return str(value)


def _metric_value(key: str, value: float) -> float:
    return round(float(value), 2 if _SCALE.get(key) == "0-100" else 4)


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


# ------------------------------------------------------------------------------------------------------- the card


def build_model_card(run_dir: Path, repo_id: str) -> str:
    """The README.md for `repo_id`: YAML metadata (with a Hub-valid `model-index`) and a Markdown body.

    Metadata: language(s), license (`push.license`, default apache-2.0), library_name, pipeline_tag, tags, datasets,
    base_model (only when fine-tuned from a Hub id), metrics, and one EvalResult per metric per evaluated split.
    Body: what was trained on what, the training settings, the results, a loading snippet that runs as written,
    and limitations.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    run_dir = Path(run_dir)
    recipe = read_recipe(run_dir)
    metrics = read_json(run_dir / "metrics.json") or {}
    manifest = read_json(run_dir / "manifest.json") or {}
    config = read_json(run_dir / "model" / "config.json") or {}

    task = recipe.get("task") if recipe.get("task") in _TASK_NAMES else metrics.get("task")
    data = _as_dict(recipe.get("data"))
    model = _as_dict(recipe.get("model"))
    train = _as_dict(recipe.get("train"))
    evaluate = _as_dict(recipe.get("evaluate"))
    push = _as_dict(recipe.get("push"))
    model_name = repo_id.split("/")[-1]

    src, tgt = data.get("source_lang"), data.get("target_lang")
    languages = [lang for lang in ((src, tgt) if task == "translation" else ()) if isinstance(lang, str)]
    hub_languages = [lang for lang in dict.fromkeys(languages) if _LANG_RE.match(lang)]

    hub_dataset = data.get("hub_dataset") if isinstance(data.get("hub_dataset"), str) else None
    hub_config = data.get("hub_config") if isinstance(data.get("hub_config"), str) else None
    hub_revision = data.get("hub_revision") if isinstance(data.get("hub_revision"), str) else None
    files = _as_dict(data.get("files"))
    local_names = [Path(p).name for v in files.values() for p in (v if isinstance(v, list) else [v])
                   if isinstance(p, str)]
    if hub_dataset:
        dataset_type, dataset_name = hub_dataset, hub_dataset + (f" ({hub_config})" if hub_config else "")
    else:
        dataset_type = "local"
        dataset_name = "local files" + (f" ({', '.join(local_names)})" if local_names else "")

    # A bert2bert-style warm start (architecture encoder-decoder) is fine-tuned from its encoder checkpoint.
    pretrained = model.get("pretrained") or (model.get("encoder") if model.get("architecture") == "encoder-decoder"
                                             else None)
    base_model = pretrained if is_hub_id(pretrained, base=run_dir) else None
    architecture = model.get("architecture") or config.get("model_type") or "unknown"
    in_house = bool(config.get("auto_map"))

    splits = {name: values for name, values in _as_dict(metrics.get("splits")).items() if isinstance(values, dict)}
    signatures = _as_dict(metrics.get("signatures"))
    eval_results = []
    for split, values in splits.items():
        for key, (metric_type, pretty) in _METRICS.items():
            value = values.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                continue
            signature = signatures.get("rouge" if metric_type == "rouge" else key)
            if isinstance(signature, str):
                metric_args: dict[str, Any] | None = {"signature": signature}
            elif isinstance(signature, dict):
                metric_args = {k: v for k, v in signature.items() if isinstance(v, (str, int, float, bool))}
            else:
                metric_args = None
            eval_results.append(EvalResult(
                task_type=task or "text2text-generation", task_name=_TASK_NAMES.get(task or ""),
                dataset_type=dataset_type, dataset_name=dataset_name, dataset_config=hub_config,
                dataset_split=split, dataset_revision=hub_revision,
                metric_type=metric_type, metric_name=f"{split} {pretty}", metric_value=_metric_value(key, value),
                metric_args=metric_args or None,
            ))
    metric_ids = list(dict.fromkeys(r.metric_type for r in eval_results))

    tags = ["hfpipe", *([task] if task else []), str(architecture)]
    if task == "translation" and src and tgt:
        tags.append(f"{src}-{tgt}")
    card_data = ModelCardData(
        language=hub_languages or None,
        license=push.get("license") if isinstance(push.get("license"), str) else "apache-2.0",
        library_name="transformers",
        pipeline_tag=task if task in _TASK_NAMES else None,
        tags=tags,
        datasets=[hub_dataset] if hub_dataset else None,
        base_model=base_model,
        metrics=metric_ids or None,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )

    body = _body(run_dir=run_dir, repo_id=repo_id, recipe=recipe, task=task, src=src, tgt=tgt, data=data,
                 train=train, evaluate=evaluate, metrics=metrics, splits=splits, manifest=manifest,
                 hub_dataset=hub_dataset, local_names=local_names, pretrained=pretrained, base_model=base_model,
                 architecture=str(architecture), in_house=in_house)
    # Round trip through ModelCard so the metadata is exactly what the Hub (and ModelCard.load) will parse.
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    return str(card)


def _body(*, run_dir: Path, repo_id: str, recipe: dict, task: str | None, src: Any, tgt: Any, data: dict,
          train: dict, evaluate: dict, metrics: dict, splits: dict[str, dict], manifest: dict,
          hub_dataset: str | None, local_names: list[str], pretrained: Any, base_model: str | None,
          architecture: str, in_house: bool) -> str:
    lines: list[str] = []
    add = lines.append
    name = repo_id.split("/")[-1]
    task_words = {"translation": f"translation ({src} → {tgt})" if src and tgt else "translation",
                  "summarization": "summarization"}.get(task or "", "sequence-to-sequence generation")

    # --- what it is
    add(f"# {name}\n")
    if base_model:
        origin = f"a fine-tuned version of [{base_model}](https://huggingface.co/{base_model})"
    elif pretrained:
        origin = f"a fine-tuned version of a local checkpoint (`{Path(str(pretrained)).name}`)"
    else:
        origin = f"a `{architecture}` model (trained from scratch)"
    data_words = (f"the [{hub_dataset}](https://huggingface.co/datasets/{hub_dataset}) dataset" if hub_dataset
                  else "local data files" + (f" ({', '.join(f'`{n}`' for n in local_names)})" if local_names else ""))
    add(f"This model is {origin} for {task_words}, trained on {data_words} with hfpipe"
        + (f" from the recipe `{recipe['name']}`." if isinstance(recipe.get("name"), str) else "."))
    rows = _as_dict(_as_dict(manifest.get("data")).get("rows"))
    if rows and all(isinstance(v, int) for v in rows.values()):
        add("Examples per split: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + ".")
    params = _stored_parameters(run_dir / "model")
    if params:
        add(f"Parameters: {_human(params)} (`{architecture}`).")
    if in_house:
        add("\nThe architecture is hfpipe's own: its code is in this repository (`*.py`), so loading it needs "
            "`trust_remote_code=True`. Read those files before running them.")
    add("")

    # --- training
    add("## Training procedure\n")
    add("| setting | value |")
    add("|---|---|")
    add(f"| model | {_fmt(base_model or (Path(str(pretrained)).name if pretrained else architecture))} |")
    for key in _TRAIN_KEYS:
        if train.get(key) is not None:
            add(f"| train.{key} | {_fmt(train[key])} |")
    for key in _DATA_KEYS:
        if data.get(key) not in (None, ""):
            add(f"| data.{key} | {_fmt(data[key])} |")
    add("\nThe complete resolved recipe is in [`recipe.yaml`](recipe.yaml); reproduce the run with "
        "`hfpipe run recipe.yaml`.\n")

    # --- results
    generation = _as_dict(metrics.get("generation"))
    num_beams = generation.get("num_beams", evaluate.get("num_beams"))
    max_new_tokens = generation.get("max_new_tokens", evaluate.get("max_new_tokens"))
    add("## Evaluation results\n")
    if splits:
        keys = [k for k in _METRICS if any(k in v for v in splits.values())]
        extra = [k for k in ("gen_len", "num_samples") if any(k in v for v in splits.values())]
        header = [*(f"{_METRICS[k][1]} ({_SCALE[k]})" for k in keys), *extra]
        add("| split | " + " | ".join(header) + " |")
        add("|---|" + "---|" * len(header))
        for split, values in splits.items():
            cells = []
            for key in [*keys, *extra]:
                value = values.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    cells.append(_fmt(_metric_value(key, value)) if key in _METRICS else _fmt(value))
                else:
                    cells.append("")
            add(f"| {split} | " + " | ".join(cells) + " |")
        decoding = ", ".join(f"{k} {v}" for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens))
                             if v is not None)
        notes = [f"Decoding: {decoding}."] if decoding else []
        signatures = _as_dict(metrics.get("signatures"))
        if isinstance(signatures.get("bleu"), str):
            notes.append(f"BLEU and chrF are sacrebleu corpus scores (`{signatures['bleu']}`); ROUGE is Google's "
                         "rouge-score F-measure, averaged over examples.")
        notes.append("All numbers and metric settings are in [`metrics.json`](metrics.json).")
        add("")
        add(" ".join(notes))
    else:
        add("This run was not evaluated: there are no results to report.")
    add("")

    # --- usage
    add("## How to use\n")
    add("```python")
    add(usage_snippet(repo_id=repo_id, task=task, in_house=in_house,
                      example=_first_source(run_dir, next(iter(splits), None)),
                      prefix=data.get("source_prefix") if isinstance(data.get("source_prefix"), str) else "",
                      num_beams=num_beams if isinstance(num_beams, int) else None,
                      max_new_tokens=max_new_tokens if isinstance(max_new_tokens, int) else None))
    add("```\n")

    # --- limitations
    add("## Limitations\n")
    train_rows = rows.get("train") if isinstance(rows.get("train"), int) else None
    if train_rows is not None and train_rows < 100_000:
        add(f"- Trained on {train_rows:,} examples: a small corpus. Expect errors on text unlike the training "
            "data (other domains, long inputs, rare words).")
    else:
        add("- Quality outside the training data's domain is untested.")
    if not pretrained:
        add("- Trained from scratch (no pretrained weights): it knows only what its training data contains.")
    else:
        add("- Fine-tuned: it inherits the base model's behaviour, biases and license terms.")
    add("- Automatic metrics are a rough guide: BLEU/chrF/ROUGE count overlap with one reference, are not "
        "comparable across test sets or tokenizations, and miss meaning errors a reader would see.")
    if task == "summarization":
        add("- Summaries can state facts that are not in the document; check them before use.")
    add("- Inputs longer than the training lengths (see the table above) are truncated.")
    return "\n".join(lines) + "\n"


def usage_snippet(*, repo_id: str, task: str | None, in_house: bool, example: str | None = None, prefix: str = "",
                  num_beams: int | None = None, max_new_tokens: int | None = None) -> str:
    """A self-contained Python snippet that loads the pushed model and generates (it is tested as written)."""
    if example is None:
        example = ("Replace this with a document to summarize." if task == "summarization"
                   else "Replace this with a sentence to translate.")
    remote = ", trust_remote_code=True" if in_house else ""
    generate_args = ", ".join(f"{k}={v}" for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens))
                              if v is not None)
    return "\n".join([
        "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
        "",
        f"repo_id = {repo_id!r}",
        f"tokenizer = AutoTokenizer.from_pretrained(repo_id{remote})",
        f"model = AutoModelForSeq2SeqLM.from_pretrained(repo_id{remote})",
        "",
        f"texts = [{(prefix + example)!r}]",
        "inputs = tokenizer(texts, return_tensors=\"pt\", padding=True, return_token_type_ids=False)",
        f"outputs = model.generate(**inputs{', ' + generate_args if generate_args else ''})",
        "print(tokenizer.batch_decode(outputs, skip_special_tokens=True))",
    ])
