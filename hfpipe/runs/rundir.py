"""The run directory: its paths, atomic writes, stage bookkeeping for --resume, and the final model folder.

Every file is written to a temporary name and renamed, so a run directory never holds a half-written artifact.
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

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from hfpipe.recipe.schema import Recipe


def json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2(RENAME_EXCHANGE); False where that is not available
    (another OS, an old kernel or C library, a file system without it)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_dir(new: Path, target: Path) -> None:
    """Put the folder `new` in place of `target` (same parent) so that at every moment one of them is there
    under `target`'s name: an atomic exchange where the system has one, else `target` is first renamed aside to
    `.NAME.old` (found by `restore_dir` if a kill comes between the two renames); the old folder is deleted
    last."""
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    aside = target.with_name(f".{target.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(target, aside)
    os.replace(new, target)
    shutil.rmtree(aside, ignore_errors=True)


def restore_dir(target: Path) -> None:
    """Undo a replace_dir fallback that a kill cut between its two renames: the old folder comes back."""
    aside = target.with_name(f".{target.name}.old")
    if not target.exists() and aside.is_dir():
        os.replace(aside, target)


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
        return json.loads(self.stages_file.read_text()) if self.stages_file.exists() else {}

    def mark(self, stage: str, fingerprint: str, **extra: Any) -> None:
        stages = self.stages()
        stages[stage] = {"fingerprint": fingerprint, "done_at": datetime.now(timezone.utc).isoformat(), **extra}
        json_atomic(self.stages_file, stages)

    def is_done(self, stage: str, fingerprint: str) -> bool:
        return self.stages().get(stage, {}).get("fingerprint") == fingerprint


def save_final_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path,
                     generation: dict[str, Any]) -> None:
    """model/ = weights + config + generation config + tokenizer, loadable without hfpipe; written whole."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    gc = model.generation_config
    for key, value in generation.items():
        setattr(gc, key, value)
    if getattr(gc, "max_length", None) == 20:
        gc.max_length = None  # max_new_tokens rules; never the implicit 20
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, out_dir)


def load_run_model(model_dir: Path, recipe: Recipe | None = None) -> PreTrainedModel:
    """The trained model of a run (in-house architectures registered first)."""
    from transformers import AutoModelForSeq2SeqLM

    from hfpipe.errors import ModelError

    try:
        from hfpipe.modeling import register_auto_classes

        register_auto_classes()
    except ImportError:  # pragma: no cover - modeling is part of hfpipe
        pass
    try:
        return AutoModelForSeq2SeqLM.from_pretrained(model_dir, local_files_only=True,
                                                     trust_remote_code=bool(recipe and recipe.model.trust_remote_code))
    except Exception as err:
        raise ModelError(f"cannot load the model in {model_dir}: {err}", where=str(model_dir)) from None
