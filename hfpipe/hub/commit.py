"""Retries and the one commit of a push.

The files go up in a single ``create_commit``, which the Hub applies atomically, so a failed push never leaves half
a commit. huggingface_hub retries its preupload/LFS requests itself but not ``create_repo`` or ``create_commit``;
these are retried here on transient errors (5xx, dropped connections, timeouts) with exponential backoff, a bounded
number of times. A retried commit cannot land twice: it names the branch head it was built on (``parent_commit``),
and a commit whose files are already there is a no-op; a retried pull request is first looked for among the repo's
pull requests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hfpipe.errors import HfpipeError, HubError
from hfpipe.hub.http_errors import hub_error, is_transient, maybe_sent, mentions_token, scrub, short
from hfpipe.hub.plan import PushPlan

__all__ = ["RETRY_DELAY_ENV", "Pusher", "retry_delay"]

logger = logging.getLogger(__name__)

RETRY_DELAY_ENV = "HFPIPE_HUB_RETRY_DELAY"
"""Base delay in seconds between retries (doubles each time); default 1. Tests set it small."""

T = TypeVar("T")


class Pusher:
    """Creates the repo and branch, then commits a plan, retrying transient failures a bounded number of times."""

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
                if not is_transient(err) or attempt == self.attempts:
                    self.fail(err, action, attempt, outcome(err) if outcome else "No files were committed.")
                if before_retry is not None:
                    found = before_retry(err)
                    if found is not None:
                        return found
                delay = self.base_delay * 2 ** (attempt - 1)
                logger.warning("%s failed (%s); retrying in %.2gs (attempt %d/%d)", action,
                               scrub(short(err), self.token), delay, attempt + 1, self.attempts)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- one clear error per failure

    def fail(self, err: BaseException, action: str, attempts: int, nothing: str = "No files were committed.") -> None:
        hub_error = self.translate(err, action, attempts, nothing)
        cause = None if mentions_token(err, self.token) else err
        raise hub_error from cause

    def translate(self, err: BaseException, action: str, attempts: int,
                  nothing: str = "No files were committed.") -> HubError:
        return hub_error(err, action=action, attempts=attempts, endpoint=self.endpoint, repo_id=self.repo_id,
                         branch=self.branch, token=self.token, nothing=nothing)

    # --- the push itself

    def push(self, plan: PushPlan, *, private: bool | None, create_pr: bool, commit_message: str,
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
            if prs_before is None or not maybe_sent(err):
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
        if not maybe_sent(err):
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

    def _find_landed_pr(self, plan: PushPlan, before: dict[str, str]) -> Any:
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
                where=self.where, details=[scrub(short(err), self.token)],
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


def retry_delay(value: float | None) -> float:
    if value is not None:
        return max(0.0, float(value))
    try:
        return max(0.0, float(os.environ.get(RETRY_DELAY_ENV, "1")))
    except ValueError:
        return 1.0
