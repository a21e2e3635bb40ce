"""Push a finished run to the Hugging Face Hub: model, tokenizer, model card, recipe and metrics in ONE commit.

The entry points (`hfpipe push` and the runner's push after a run). What is pushed is planned in
:mod:`hfpipe.hub.plan`; the commit and its retries are :mod:`hfpipe.hub.commit`; each failure becomes one
HubError in :mod:`hfpipe.hub.http_errors`.

The token comes from ``HF_TOKEN`` or the Hugging Face login store (``hf auth login``), never from the recipe or a
flag, and never appears in an error message. ``HF_ENDPOINT`` is read when a push starts (huggingface_hub only reads
it at import), so a push can be pointed at another Hub-compatible server. Pushing is an explicit network action:
with ``HF_HUB_OFFLINE=1`` it fails with a clear error instead of trying.

Importing this module is cheap (no torch/transformers; huggingface_hub is imported when a push starts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfpipe import __version__
from hfpipe.errors import HubError, RecipeError
from hfpipe.hub.commit import Pusher, retry_delay
from hfpipe.hub.http_errors import offline_error
from hfpipe.hub.locations import DEFAULT_ENDPOINT, hub_downloads_allowed, hub_endpoint
from hfpipe.hub.plan import PushFile, make_plan
from hfpipe.runs.files import read_json_lenient, read_recipe

__all__ = ["PushResult", "push_after_run", "push_run", "push_settings"]

DEFAULT_ATTEMPTS = 3


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

    def record(self) -> dict[str, Any]:
        """What the push did, for the run's record and `--json`: where, which commit, or which pull request."""
        return {"repo_id": self.repo_id, "revision": self.revision, "url": self.repo_url, "commit": self.commit_oid,
                "commit_url": self.commit_url, "pr_url": self.pr_url, "changed": self.changed}


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
    return _section_dict(read_recipe(Path(run_dir)).get("push"))


def _offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or not hub_downloads_allowed()


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
    recipe = read_recipe(run_dir)
    name = recipe.get("name") if isinstance(recipe.get("name"), str) else run_dir.name
    message = commit_message or f"Upload {name} (hfpipe {__version__})"
    lines = [f"Pushed by hfpipe {__version__} from run {run_dir.name}."]
    metrics = read_json_lenient(run_dir / "metrics.json")  # the plan already refused a damaged one
    primary = metrics.get("primary_metric")
    for split, values in (metrics.get("splits") or {}).items():
        if isinstance(values, dict) and primary in values:
            lines.append(f"{split} {primary}: {values[primary]}")
    return message, "\n".join(lines)


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
    endpoint = endpoint.rstrip("/") if endpoint else hub_endpoint()
    plan = make_plan(run_dir, repo_id)
    result = PushResult(repo_id=repo_id, repo_url=f"{endpoint}/{repo_id}", revision=branch, files=plan.files,
                        card=plan.card, dry_run=dry_run, endpoint=endpoint)
    if dry_run:
        return result

    if _offline():
        raise offline_error()
    token = _get_token()
    leaking = [f.path_in_repo for f in plan.files if not f.path_in_repo.endswith(".safetensors")
               and token.encode() in (f.source.read_bytes() if f.source else plan.contents[f.path_in_repo])]
    if leaking:
        raise HubError("refusing to push: the Hugging Face token appears in files of the run", where=str(run_dir),
                       details=leaking, hint="remove the token from these files (and revoke it: it may have leaked)")

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token, library_name="hfpipe", library_version=__version__)
    pusher = Pusher(api=api, repo_id=repo_id, branch=branch, endpoint=endpoint, token=token, attempts=attempts,
                     base_delay=retry_delay(retry_base_delay))
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
