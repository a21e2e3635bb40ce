"""Push a finished run to the Hugging Face Hub: model, tokenizer, model card, recipe and metrics in ONE commit.

What is pushed (nothing else: never checkpoints/, predictions or logs):

- from ``RUN_DIR/model/``: the safetensors weights (and their index when sharded), ``config.json``,
  ``generation_config.json``, the tokenizer files, and for in-house models (``auto_map`` in config.json) every
  top-level ``*.py`` file, so ``trust_remote_code=True`` can load it without hfpipe;
- ``recipe.yaml`` (the resolved recipe) and ``metrics.json`` from the run directory;
- ``README.md``: the model card from :func:`hfpipe.hub.model_card.build_model_card`.

The token comes from ``HF_TOKEN`` or the Hugging Face login store (``hf auth login``), never from the recipe or a
flag, and never appears in an error message. ``HF_ENDPOINT`` is read when a push starts (huggingface_hub only reads
it at import), so a push can be pointed at another Hub-compatible server. Pushing is an explicit network action:
with ``HF_HUB_OFFLINE=1`` it fails with a clear error instead of trying.

Reliability: the files go up in a single ``create_commit``, which the Hub applies atomically, so a failed push never
leaves half a commit. huggingface_hub retries its preupload/LFS requests itself but not ``create_repo`` or
``create_commit``; hfpipe retries those on transient errors (5xx, dropped connections, timeouts) with exponential
backoff, a bounded number of times. A retried commit cannot land twice: it names the branch head it was built on
(``parent_commit``), and a commit whose files are already there is a no-op; a retried pull request is first looked
for among the repo's pull requests.

Importing this module is cheap (no torch/transformers; huggingface_hub is imported when a push starts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hfpipe import __version__
from hfpipe.errors import HfpipeError, HubError, RecipeError, RunDirError
from hfpipe.hub.model_card import build_model_card, read_run_recipe

__all__ = ["PushFile", "PushResult", "plan_push", "push_after_run", "push_run", "push_settings"]

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
RETRY_DELAY_ENV = "HFPIPE_HUB_RETRY_DELAY"
"""Base delay in seconds between retries (doubles each time); default 1. Tests set it small."""
DEFAULT_ATTEMPTS = 3

_TRUE = {"1", "ON", "YES", "TRUE"}
_WEIGHT_GLOBS = ("*.safetensors", "*.safetensors.index.json")
_PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_MODEL_FILES = ("config.json", "generation_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja")
_TOKENIZER_GLOBS = ("*.spm", "*.model")  # sentencepiece models: Marian's source.spm/target.spm, T5's spiece.model
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}

T = TypeVar("T")


@dataclass(frozen=True)
class PushFile:
    """One file of the commit: its path in the repo, its size, and where it comes from (None: generated)."""

    path_in_repo: str
    size: int
    source: Path | None = None


@dataclass
class PushResult:
    repo_id: str
    repo_url: str
    revision: str
    files: list[PushFile]
    card: str
    dry_run: bool = False
    commit_url: str | None = None
    commit_oid: str | None = None
    pr_url: str | None = None
    changed: bool = True
    """False when the repo already held exactly these files (the Hub then makes no commit)."""
    endpoint: str = DEFAULT_ENDPOINT

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class _Plan:
    files: list[PushFile]
    card: str
    contents: dict[str, Path | bytes] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- what is pushed


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
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise RunDirError("model/config.json is missing", where=str(model_dir),
                          hint="the model folder must be what `model.save_pretrained` wrote")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"model/config.json is not valid JSON: {err}", where=str(config_path)) from None
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
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise RunDirError(f"{index.name} is not a valid safetensors index", where=str(index)) from None
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
    plan = _plan(Path(run_dir), repo_id)
    return plan.files, plan.card


def _public_recipe(path: Path) -> bytes:
    """The resolved recipe as pushed: local paths (which say where on someone's disk the data lives) are cut to
    their file names; Hub ids and every setting stay as they are."""
    import yaml

    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for split, value in list(((recipe.get("data") or {}).get("files") or {}).items()):
        if isinstance(value, str):
            recipe["data"]["files"][split] = Path(value).name
    for section, key in (("tokenizer", "from"), ("model", "pretrained"), ("model", "encoder"), ("model", "decoder")):
        value = (recipe.get(section) or {}).get(key)
        if isinstance(value, str) and Path(value).is_absolute():
            recipe[section][key] = Path(value).name
    header = "# The recipe this model was trained with (local paths shortened to file names).\n"
    return (header + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)).encode("utf-8")


def _plan(run_dir: Path, repo_id: str) -> _Plan:
    if not run_dir.is_dir():
        raise RunDirError("the run directory does not exist", where=str(run_dir))
    read_run_recipe(run_dir)  # a run directory has a readable recipe.yaml
    sources: list[Path | tuple[str, bytes]] = [*_model_files(run_dir),
                                               ("recipe.yaml", _public_recipe(run_dir / "recipe.yaml"))]
    if (run_dir / "metrics.json").is_file():
        sources.append(run_dir / "metrics.json")
    card = build_model_card(run_dir, repo_id)
    plan = _Plan(files=[], card=card)
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


# ---------------------------------------------------------------------------------------------------- settings


def _check_repo_id(repo_id: str | None) -> str:
    if not repo_id:
        raise RecipeError("no Hub repository to push to", where="--repo-id / push.repo_id",
                          hint="pass --repo-id NAMESPACE/NAME or set push.repo_id in the recipe")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    problem = None
    if repo_id.count("/") != 1:
        problem = "it must be NAMESPACE/NAME (your user or organization name, a slash, the model name)"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as err:
            problem = str(err).splitlines()[0]
    if problem:
        raise RecipeError(f"invalid Hub repository id {repo_id!r}: {problem}", where="--repo-id / push.repo_id",
                          hint="e.g. --repo-id my-user/marian-en-de-small")
    return repo_id


def _section_dict(section: Any) -> dict[str, Any]:
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return dict(section)
    if hasattr(section, "model_dump"):  # a pydantic PushConfig
        return section.model_dump()
    return {k: v for k, v in vars(section).items() if not k.startswith("_")}


def push_settings(run_dir: Path) -> dict[str, Any]:
    """The `push:` section of the run's resolved recipe, as a plain dict ({} if absent)."""
    return _section_dict(read_run_recipe(Path(run_dir)).get("push"))


def _offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or any(
        os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _retry_base_delay(value: float | None) -> float:
    if value is not None:
        return max(0.0, float(value))
    try:
        return max(0.0, float(os.environ.get(RETRY_DELAY_ENV, "1")))
    except ValueError:
        return 1.0


# ----------------------------------------------------------------------------------------------------- errors


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "hf_***") if token else text


def _chain_mentions(err: BaseException, token: str | None) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if token and token in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _is_transient(err: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, httpx2.TransportError):
        return True
    return isinstance(err, HfHubHTTPError) and _status(err) in _TRANSIENT_STATUS


def _maybe_sent(err: BaseException) -> bool:
    """Whether a failed request may still have reached the server (its outcome is unknown)."""
    import httpx2

    return _is_transient(err) and not isinstance(err, (httpx2.ConnectError, httpx2.ConnectTimeout))


class _Pusher:
    def __init__(self, *, api: Any, repo_id: str, branch: str, endpoint: str, token: str, attempts: int,
                 base_delay: float) -> None:
        self.api, self.repo_id, self.branch, self.endpoint = api, repo_id, branch, endpoint
        self.token, self.attempts, self.base_delay = token, max(1, attempts), base_delay

    @property
    def where(self) -> str:
        return f"{self.endpoint}/{self.repo_id} (branch {self.branch})"

    # --- retries

    def retry(self, action: str, fn: Callable[[], T], *,
              before_retry: Callable[[BaseException], T | None] | None = None,
              outcome: Callable[[BaseException], str] | None = None) -> T:
        """`fn()`, retried on transient errors. `before_retry` may find that a lost attempt did succeed;
        `outcome` says what the failed action left behind (default: nothing)."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except HfpipeError:
                raise
            except Exception as err:  # noqa: BLE001 - every failure becomes one HubError below
                if not _is_transient(err) or attempt == self.attempts:
                    self.fail(err, action, attempt, outcome(err) if outcome else "No files were committed.")
                if before_retry is not None:
                    found = before_retry(err)
                    if found is not None:
                        return found
                delay = self.base_delay * 2 ** (attempt - 1)
                logger.warning("%s failed (%s); retrying in %.2gs (attempt %d/%d)", action,
                               _scrub(_short(err), self.token), delay, attempt + 1, self.attempts)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- one clear error per failure

    def fail(self, err: BaseException, action: str, attempts: int, nothing: str = "No files were committed.") -> None:
        hub_error = self.translate(err, action, attempts, nothing)
        cause = None if _chain_mentions(err, self.token) else err
        raise hub_error from cause

    def translate(self, err: BaseException, action: str, attempts: int,
                  nothing: str = "No files were committed.") -> HubError:
        import httpx2
        from huggingface_hub.errors import (
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        tries = f" ({attempts} tries)" if attempts > 1 else ""
        where = self.where
        server = getattr(err, "server_message", None)
        details = [_scrub(line, self.token) for line in (server or "").splitlines() if line.strip()][:5]
        if isinstance(err, OfflineModeIsEnabled):
            return _offline_error()
        if isinstance(err, HfHubHTTPError):
            status = _status(err)
            if status == 401:
                return HubError(
                    f"the Hub rejected the token (401 Unauthorized) while {action}. {nothing}", where=where,
                    details=details, hint=("the token is invalid, expired or revoked: create a write token at "
                                           f"{self.endpoint}/settings/tokens, then set HF_TOKEN or run "
                                           "`hf auth login`"))
            if status == 403:
                return HubError(
                    f"the token may not write to {self.repo_id} (403 Forbidden) while {action}. {nothing}",
                    where=where, details=details,
                    hint=(f"use a token with write access to the '{self.repo_id.split('/')[0]}' namespace (a 'write' "
                          "token, or a fine-grained token with repo write permission), or push to a namespace "
                          "you own with --repo-id"))
            if isinstance(err, RevisionNotFoundError):
                return HubError(f"branch '{self.branch}' was not found while {action}. {nothing}", where=where,
                                details=details, hint="check --revision (hfpipe creates a missing branch from main)")
            if isinstance(err, RepositoryNotFoundError) or status == 404:
                return HubError(
                    f"repository {self.repo_id} was not found while {action}. {nothing}", where=where,
                    details=details,
                    hint=("check the NAMESPACE/NAME spelling and that HF_ENDPOINT points to the right Hub; the repo "
                          "may have been deleted, or belong to an account your token cannot see"))
            if status in (409, 412):
                return HubError(
                    f"branch '{self.branch}' changed while pushing ({status}): someone else committed. {nothing}",
                    where=where, details=details, hint="rerun the push (it will build on the new branch head)")
            if status == 429:
                return HubError(f"the Hub rate-limited the push (429 Too Many Requests){tries}. {nothing}",
                                where=where, details=details, hint="wait a few minutes and rerun the push")
            if status is not None and status >= 500:
                return HubError(
                    f"the Hub answered {status} (server error) while {action}{tries}. {nothing}", where=where,
                    details=details, hint=("the Hub may be down or overloaded: check https://status.huggingface.co "
                                           "and rerun the push later"))
            return HubError(f"the Hub refused the request while {action} (HTTP {status}). {nothing}",
                            where=where, details=details or [_scrub(_short(err), self.token)],
                            hint="this looks like a bug in hfpipe: rerun with --debug and please report it")
        if isinstance(err, (httpx2.ConnectError, httpx2.ConnectTimeout)):
            return HubError(
                f"cannot reach the Hub at {self.endpoint}{tries}: {_scrub(_short(err), self.token)}. {nothing}",
                where=where, hint=("check the network connection and proxy settings; if HF_ENDPOINT is set, check "
                                   "that it points to a running Hub"))
        if isinstance(err, httpx2.TimeoutException):
            return HubError(f"the Hub did not answer in time while {action}{tries}. {nothing}", where=where,
                            hint="check the network connection and rerun the push")
        if isinstance(err, httpx2.TransportError):
            return HubError(
                f"the connection to the Hub dropped while {action}{tries}: {_scrub(_short(err), self.token)}. "
                f"{nothing}", where=where, hint="check the network connection (proxy, VPN) and rerun the push")
        if isinstance(err, json.JSONDecodeError):
            return HubError(f"the server at {self.endpoint} did not answer like the Hub while {action}. {nothing}",
                            where=where, hint="check HF_ENDPOINT and proxy settings (a login page or proxy "
                                              "error page answered instead)")
        if isinstance(err, ValueError) and "metadata in README.md" in str(err):
            return HubError("the Hub rejected the model card metadata. " + nothing, where=where,
                            details=[_scrub(line, self.token) for line in str(err).splitlines()[1:6]],
                            hint="this is a bug in hfpipe's model card: please report it with the details above")
        return HubError(f"unexpected error while {action}: {type(err).__name__}: {_scrub(_short(err), self.token)}",
                        where=where, hint="rerun with --debug for the traceback and please report it")

    # --- the push itself

    def push(self, plan: _Plan, *, private: bool | None, create_pr: bool, commit_message: str,
             commit_description: str) -> tuple[str, Any, str]:
        from huggingface_hub import CommitOperationAdd

        api, repo_id = self.api, self.repo_id
        visibility = {} if private is None else {"private": private}  # the user's choice; never forced
        repo_url = self.retry("creating the repository",
                              lambda: api.create_repo(repo_id, repo_type="model", exist_ok=True, **visibility))
        if self.branch != "main" and not self.branch.startswith("refs/pr/"):
            self.retry(f"creating branch '{self.branch}'",
                       lambda: api.create_branch(repo_id, branch=self.branch, exist_ok=True))
        head = self.retry("reading the branch head", lambda: api.model_info(repo_id, revision=self.branch).sha)
        prs_before = (self.retry("listing pull requests", lambda: self._pull_requests()) if create_pr else None)

        def commit() -> Any:
            operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content)
                          for path, content in plan.contents.items()]
            return api.create_commit(repo_id, operations, commit_message=commit_message,
                                     commit_description=commit_description, revision=self.branch,
                                     create_pr=create_pr, parent_commit=head)

        def landed_pr(err: BaseException) -> Any:
            if prs_before is None or not _maybe_sent(err):
                return None
            found = self._find_landed_pr(plan, prs_before)
            if found is not None:
                logger.warning("the answer to the commit was lost, but the pull request was opened: %s",
                               found.pr_url)
            return found

        def outcome(err: BaseException) -> str:
            return self._outcome(err, head=head, prs_before=prs_before)

        info = self.retry("committing the files", commit, before_retry=landed_pr, outcome=outcome)
        return str(repo_url), info, head

    def _outcome(self, err: BaseException, *, head: str, prs_before: dict[str, str] | None) -> str:
        """What a failed commit left: checked on the Hub when the last answer may have been lost."""
        if not _maybe_sent(err):
            return "No files were committed."
        try:
            if prs_before is not None:
                if set(self._pull_requests()) <= set(prs_before):
                    return "No pull request was opened."
            elif self.api.model_info(self.repo_id, revision=self.branch).sha == head:
                return "No files were committed."
        except Exception:  # noqa: BLE001 - the Hub is still failing: say we do not know
            pass
        return (f"hfpipe could not confirm whether the commit landed: check {self.endpoint}/{self.repo_id} "
                "before pushing again.")

    def _pull_requests(self) -> dict[str, str]:
        refs = self.api.list_repo_refs(self.repo_id, include_pull_requests=True)
        return {ref.ref: ref.target_commit for ref in refs.pull_requests or []}

    def _find_landed_pr(self, plan: _Plan, before: dict[str, str]) -> Any:
        """After a pull request commit whose answer was lost: the new PR holding exactly our files, if any."""
        from huggingface_hub import CommitInfo

        try:
            after = self._pull_requests()
            for ref, sha in after.items():
                if ref in before:
                    continue
                tree = {f.path: f for f in self.api.list_repo_tree(self.repo_id, revision=sha, recursive=True)}
                if all(_same_file(tree.get(path), content) for path, content in plan.contents.items()):
                    number = ref.rsplit("/", 1)[-1]
                    return CommitInfo(commit_url=f"{self.endpoint}/{self.repo_id}/commit/{sha}",
                                      commit_message="", commit_description="", oid=sha, _endpoint=self.endpoint,
                                      pr_url=f"{self.endpoint}/{self.repo_id}/discussions/{number}")
        except Exception as err:  # noqa: BLE001
            raise HubError(
                "a pull request may or may not have been opened: the answer was lost and checking failed",
                where=self.where, details=[_scrub(_short(err), self.token)],
                hint=f"look at {self.endpoint}/{self.repo_id}/discussions before pushing again") from None
        return None


def _same_file(entry: Any, content: Path | bytes) -> bool:
    """Whether a file listed on the Hub (a RepoFile) holds exactly `content`."""
    if entry is None or not hasattr(entry, "blob_id"):
        return False
    lfs = getattr(entry, "lfs", None)
    if lfs is not None:  # LFS/Xet files are known by their sha256 (weights can be large: hash in chunks)
        digest = hashlib.sha256()
        if isinstance(content, Path):
            with open(content, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            digest.update(content)
        return getattr(lfs, "sha256", None) == digest.hexdigest()
    from huggingface_hub.utils.sha import git_hash

    return entry.blob_id == git_hash(content.read_bytes() if isinstance(content, Path) else content)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0].rstrip(".") if text else type(err).__name__


def _offline_error() -> HubError:
    return HubError("pushing needs the network, but offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)",
                    where="environment", hint="run the push with the variable unset, e.g. "
                                              "`env -u HF_HUB_OFFLINE hfpipe push RUN_DIR`")


def _get_token() -> str:
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception as err:  # noqa: BLE001 - e.g. a failed OIDC exchange (HF_OIDC_RESOURCE)
        raise HubError(f"could not read the Hugging Face token: {type(err).__name__}", where="HF_TOKEN / login store",
                       hint="set HF_TOKEN or run `hf auth login`") from None
    if not token:
        raise HubError("no Hugging Face token found: pushing needs a token with write access",
                       where="the HF_TOKEN environment variable and the login store (`hf auth login`)",
                       hint=("create a write token at https://huggingface.co/settings/tokens, then `export "
                             "HF_TOKEN=...` or run `hf auth login` (hfpipe never reads a token from the recipe "
                             "or the command line)"))
    return token


def _commit_texts(run_dir: Path, commit_message: str | None) -> tuple[str, str]:
    recipe = read_run_recipe(run_dir)
    name = recipe.get("name") if isinstance(recipe.get("name"), str) else run_dir.name
    message = commit_message or f"Upload {name} (hfpipe {__version__})"
    lines = [f"Pushed by hfpipe {__version__} from run {run_dir.name}."]
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        primary = metrics.get("primary_metric")
        for split, values in (metrics.get("splits") or {}).items():
            if primary in values:
                lines.append(f"{split} {primary}: {values[primary]}")
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return message, "\n".join(lines)


# --------------------------------------------------------------------------------------------------- public API


def push_run(run_dir: Path, *, repo_id: str, private: bool | None = None, revision: str | None = None,
             create_pr: bool = False, commit_message: str | None = None, dry_run: bool = False,
             endpoint: str | None = None, attempts: int = DEFAULT_ATTEMPTS,
             retry_base_delay: float | None = None) -> PushResult:
    """Push the run in `run_dir` to the Hub model repo `repo_id` in one commit (or one pull request).

    `private`: None keeps the Hub's default for the namespace (and an existing repo's visibility); True/False is
    the user's explicit choice. `revision`: a branch to commit to (created from main when missing) or an existing
    `refs/pr/N`. `create_pr`: open a pull request instead of committing to the branch. `dry_run`: only plan: no
    token lookup, no network. `endpoint`: defaults to `HF_ENDPOINT` (read now) or https://huggingface.co.
    `attempts` / `retry_base_delay`: bounded retries of transient failures, delays base, 2*base, ...
    (default base: `HFPIPE_HUB_RETRY_DELAY` or 1 s).

    Raises RunDirError (exit 7) for an incomplete run, RecipeError (exit 2) for a bad repo id and HubError
    (exit 4) for every token, permission and network failure; messages never contain the token.
    """
    run_dir = Path(run_dir)
    repo_id = _check_repo_id(repo_id)
    branch = revision or "main"
    if create_pr and branch.startswith("refs/pr/"):
        raise RecipeError("--create-pr opens a new pull request: it cannot target an existing one",
                          where=f"--revision {branch}", hint="drop --create-pr to add a commit to that pull request")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    plan = _plan(run_dir, repo_id)
    result = PushResult(repo_id=repo_id, repo_url=f"{endpoint}/{repo_id}", revision=branch, files=plan.files,
                        card=plan.card, dry_run=dry_run, endpoint=endpoint)
    if dry_run:
        return result

    if _offline():
        raise _offline_error()
    token = _get_token()
    leaking = [f.path_in_repo for f in plan.files if not f.path_in_repo.endswith(".safetensors")
               and token.encode() in (f.source.read_bytes() if f.source else plan.contents[f.path_in_repo])]
    if leaking:
        raise HubError("refusing to push: the Hugging Face token appears in files of the run", where=str(run_dir),
                       details=leaking, hint="remove the token from these files (and revoke it: it may have leaked)")

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token, library_name="hfpipe", library_version=__version__)
    pusher = _Pusher(api=api, repo_id=repo_id, branch=branch, endpoint=endpoint, token=token, attempts=attempts,
                     base_delay=_retry_base_delay(retry_base_delay))
    message, description = _commit_texts(run_dir, commit_message)
    repo_url, info, head = pusher.push(plan, private=private, create_pr=create_pr, commit_message=message,
                                       commit_description=description)
    result.repo_url = repo_url
    result.commit_url = info.commit_url
    result.commit_oid = info.oid
    result.pr_url = info.pr_url
    result.changed = info.oid != head
    return result


def push_after_run(run_dir: Path, push_section: Any) -> PushResult | None:
    """The runner's hook: push a finished, evaluated run if the recipe asks for it.

    Pushes only when `push.repo_id` is set and `push.enabled` is not false, and only on the main process.
    `push_section` is the recipe's `push:` section (a dict or the PushConfig model; None means no push).
    """
    section = _section_dict(push_section)
    if not section.get("repo_id") or section.get("enabled") is False:
        return None
    if os.environ.get("RANK", "0") != "0" or os.environ.get("LOCAL_RANK", "0") != "0":
        return None
    return push_run(Path(run_dir), repo_id=section["repo_id"], private=section.get("private"),
                    revision=section.get("revision"), create_pr=bool(section.get("create_pr", False)),
                    commit_message=section.get("commit_message"))
