"""The run directory: its paths, stage bookkeeping for --resume, and the final model folder.

Every file is written to a temporary name and renamed (hfpipe.runs.files), so a run directory never holds a
half-written artifact.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpipe import __version__
from hfpipe.runs.files import json_atomic, read_json, replace_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def new_run_dir(name: str, base: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{name}-{stamp}-{n}"
    return path



def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def versions() -> dict[str, str]:
    import accelerate
    import datasets
    import tokenizers
    import torch
    import transformers

    return {"hfpipe": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "accelerate": accelerate.__version__,
            "tokenizers": tokenizers.__version__}


class RunDir:
    """Paths and bookkeeping of one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    recipe = property(lambda self: self.path / "recipe.yaml")
    manifest = property(lambda self: self.path / "manifest.json")
    metrics = property(lambda self: self.path / "metrics.json")
    tokenizer = property(lambda self: self.path / "tokenizer")
    model = property(lambda self: self.path / "model")
    stages_file = property(lambda self: self.path / "stages.json")

    def stages(self) -> dict[str, Any]:
        return read_json(self.stages_file) or {}

    def mark(self, stage: str, fingerprint: str, **extra: Any) -> None:
        stages = self.stages()
        stages[stage] = {"fingerprint": fingerprint, "done_at": datetime.now(timezone.utc).isoformat(), **extra}
        json_atomic(self.stages_file, stages)

    def is_done(self, stage: str, fingerprint: str) -> bool:
        return self.stages().get(stage, {}).get("fingerprint") == fingerprint


def save_final_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path,
                     generation: dict[str, Any], *, max_positions: int | None = None) -> None:
    """model/ = weights + config + generation config + tokenizer, loadable without hfpipe; written whole.
    `max_positions`: how many positions the model encodes (None: no limit), the tokenizer's model_max_length."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    gc = model.generation_config
    for key, value in generation.items():
        setattr(gc, key, value)
    if getattr(gc, "max_length", None) == 20:
        gc.max_length = None  # max_new_tokens rules; never the implicit 20
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    _settle_tokenizer_config(tmp / "tokenizer_config.json", max_positions)
    replace_dir(tmp, out_dir)


# How the tokenizer was loaded here (offline, from a folder), which transformers saves with it and which would
# then apply to whoever loads the model folder elsewhere.
_LOADING_KEYS = ("is_local", "local_files_only")


def _settle_tokenizer_config(path: Path, max_positions: int | None) -> None:
    """A trained tokenizer says model_max_length 1000000 (it knows no model): the saved one says what the model
    can encode, so `tokenizer(text, truncation=True)` cuts where the model must."""
    if not path.exists():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in _LOADING_KEYS:
        config.pop(key, None)
    saved = config.get("model_max_length")
    if max_positions is not None and (not isinstance(saved, (int, float)) or saved > max_positions):
        config["model_max_length"] = max_positions
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
