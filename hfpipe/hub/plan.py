"""What one push commits, planned locally (no token, no network).

From ``RUN_DIR/model/``: the safetensors weights (and their index when sharded), ``config.json``,
``generation_config.json``, the tokenizer files, and for in-house models (``auto_map`` in config.json) every
top-level ``*.py`` file, so ``trust_remote_code=True`` can load it without hfpipe; ``recipe.yaml`` (the resolved
recipe, local paths cut to file names) and ``metrics.json`` from the run directory; ``README.md``: the model card
from :func:`hfpipe.hub.model_card.build_model_card`. Never checkpoints/, predictions or logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfpipe.errors import RunDirError
from hfpipe.hub.model_card import build_model_card
from hfpipe.runs.files import read_json, read_recipe

__all__ = ["PushFile", "PushPlan", "make_plan", "plan_push"]

_WEIGHT_GLOBS = ("*.safetensors", "*.safetensors.index.json")
_PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_MODEL_FILES = ("config.json", "generation_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja")
_TOKENIZER_GLOBS = ("*.spm", "*.model")  # sentencepiece models: Marian's source.spm/target.spm, T5's spiece.model


@dataclass(frozen=True)
class PushFile:
    """One file of the commit: its path in the repo, its size, and where it comes from (None: generated)."""

    path_in_repo: str
    size: int
    source: Path | None = None



@dataclass
class PushPlan:
    """The files of one commit in repo order, the model card, and each file's content (a path, or bytes made
    here)."""

    files: list[PushFile]
    card: str
    contents: dict[str, Path | bytes] = field(default_factory=dict)


def _matches(path: Path, globs: tuple[str, ...]) -> bool:
    return any(path.match(g) for g in globs)


def _auto_map_modules(config: dict[str, Any]) -> set[str]:
    """Local module files named by `auto_map` ("modeling_x.Class", str or list). References into another repo
    ("owner/repo--modeling_x.Class") load their code from there, so they need no local file."""
    modules: set[str] = set()
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        return modules
    for value in auto_map.values():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and "." in ref and "--" not in ref:
                modules.add(ref.rsplit(".", 1)[0] + ".py")
    return modules



def _model_files(run_dir: Path) -> list[Path]:
    model_dir = run_dir / "model"
    if not model_dir.is_dir():
        raise RunDirError("the run has no model/ folder: training did not finish or saved nothing", where=str(run_dir),
                          hint="push a run that `hfpipe run` completed (it writes RUN_DIR/model/)")
    config = read_json(model_dir / "config.json", required=True)
    top = sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))

    weights = [p for p in top if _matches(p, _WEIGHT_GLOBS)]
    if not any(p.suffix == ".safetensors" for p in weights):
        pickles = [p.name for p in top if _matches(p, _PICKLE_GLOBS)]
        if pickles:
            raise RunDirError(
                "the model has only PyTorch pickle weights; hfpipe pushes safetensors only "
                "(pickles can run code when loaded)", where=str(model_dir), details=pickles,
                hint=("re-save the model as safetensors, then push again: python -c \"from transformers import "
                      f"AutoModelForSeq2SeqLM as M; M.from_pretrained('{model_dir}').save_pretrained('{model_dir}')\" "
                      "and delete the .bin files"))
        raise RunDirError("the model folder has no weights (*.safetensors)", where=str(model_dir),
                          hint="the model folder must be what `model.save_pretrained` wrote")
    for index in (p for p in weights if p.name.endswith(".index.json")):
        weight_map = read_json(index, required=True).get("weight_map")
        if not isinstance(weight_map, dict):
            raise RunDirError(f"{index.name} is not a valid safetensors index (no weight_map)", where=str(index))
        shards = {s for s in weight_map.values() if isinstance(s, str)}
        missing = sorted(s for s in shards if not (model_dir / s).is_file())
        if missing:
            raise RunDirError(f"{index.name} names weight shards that are missing", where=str(model_dir),
                              details=missing)

    files = weights + [p for p in top if p.name in _MODEL_FILES]

    tokenizer = [p for p in top if p.name in _TOKENIZER_FILES or _matches(p, _TOKENIZER_GLOBS)]
    if not any(p.name in ("tokenizer.json", "tokenizer_config.json") for p in tokenizer):
        tok_dir = run_dir / "tokenizer"  # the run's own tokenizer folder, when model/ has none
        if tok_dir.is_dir():
            tokenizer = sorted(p for p in tok_dir.iterdir() if p.is_file()
                               and (p.name in _TOKENIZER_FILES or _matches(p, _TOKENIZER_GLOBS)))
    if not any(p.name in ("tokenizer.json", "tokenizer_config.json") for p in tokenizer):
        raise RunDirError("the run has no tokenizer files (tokenizer.json / tokenizer_config.json)",
                          where=str(model_dir), hint="save the tokenizer next to the model: tokenizer.save_pretrained")
    files += tokenizer

    modules = _auto_map_modules(config)
    if config.get("auto_map"):
        missing = sorted(m for m in modules if not (model_dir / m).is_file())
        if missing:
            raise RunDirError("config.json `auto_map` names model code that is not in model/", where=str(model_dir),
                              details=missing, hint="save the in-house model with its code (register_for_auto_class)")
        files += [p for p in top if p.suffix == ".py"]
    return files



def plan_push(run_dir: Path, repo_id: str) -> tuple[list[PushFile], str]:
    """The files one push would commit (in repo order) and the model card; local only, no network."""
    plan = make_plan(Path(run_dir), repo_id)
    return plan.files, plan.card

def _public_recipe(path: Path) -> bytes:
    """The resolved recipe as pushed: local paths (which say where on someone's disk the data lives) are cut to
    their file names; Hub ids and every setting stay as they are."""
    import yaml

    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for split, value in list(((recipe.get("data") or {}).get("files") or {}).items()):
        if isinstance(value, str):
            recipe["data"]["files"][split] = Path(value).name
        elif isinstance(value, list):  # a split in several files
            recipe["data"]["files"][split] = [Path(v).name if isinstance(v, str) else v for v in value]
    for section, key in (("tokenizer", "from"), ("model", "pretrained"), ("model", "encoder"), ("model", "decoder")):
        value = (recipe.get(section) or {}).get(key)
        if isinstance(value, str) and Path(value).is_absolute():
            recipe[section][key] = Path(value).name
    header = "# The recipe this model was trained with (local paths shortened to file names).\n"
    return (header + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)).encode("utf-8")


def make_plan(run_dir: Path, repo_id: str) -> PushPlan:
    """The plan with each file's content, for the commit."""
    if not run_dir.is_dir():
        raise RunDirError("the run directory does not exist", where=str(run_dir))
    read_recipe(run_dir)  # a run directory has a readable recipe.yaml
    sources: list[Path | tuple[str, bytes]] = [*_model_files(run_dir),
                                               ("recipe.yaml", _public_recipe(run_dir / "recipe.yaml"))]
    if (run_dir / "metrics.json").is_file():
        sources.append(run_dir / "metrics.json")
    card = build_model_card(run_dir, repo_id)
    plan = PushPlan(files=[], card=card)
    for source in sources:
        if isinstance(source, tuple):
            name, data = source
            plan.contents[name] = data
            plan.files.append(PushFile(name, len(data), None))
        elif source.name not in plan.contents:
            plan.contents[source.name] = source
            plan.files.append(PushFile(source.name, source.stat().st_size, source))
    card_bytes = card.encode("utf-8")
    plan.contents["README.md"] = card_bytes
    plan.files.append(PushFile("README.md", len(card_bytes), None))
    return plan
