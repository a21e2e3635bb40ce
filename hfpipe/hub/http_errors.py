"""The table from a failed Hub request to one HubError: what happened, what was left behind, what to do.

Pure functions of the exception (its HTTP status, its transport error class): tested without a server. The token
never appears in a message: every text taken from an exception is scrubbed.
"""

from __future__ import annotations

import json

from hfpipe.errors import HubError

__all__ = ["TRANSIENT_STATUS", "hub_error", "is_transient", "maybe_sent", "mentions_token", "offline_error", "scrub",
           "short", "status_of"]

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def scrub(text: str, token: str | None) -> str:
    return text.replace(token, "hf_***") if token else text


def mentions_token(err: BaseException, token: str | None) -> bool:
    """Whether the token appears anywhere in the exception chain (then the chain is not shown, even with
    --debug)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if token and token in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def status_of(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def is_transient(err: BaseException) -> bool:
    """A failure worth retrying: a transport error, or a status the Hub answers when busy or down."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, httpx2.TransportError):
        return True
    return isinstance(err, HfHubHTTPError) and status_of(err) in TRANSIENT_STATUS


def maybe_sent(err: BaseException) -> bool:
    """Whether a failed request may still have reached the server (its outcome is unknown)."""
    import httpx2

    return is_transient(err) and not isinstance(err, (httpx2.ConnectError, httpx2.ConnectTimeout))


def short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0].rstrip(".") if text else type(err).__name__


def offline_error() -> HubError:
    return HubError("pushing needs the network, but offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)",
                    where="environment", hint="run the push with the variable unset, e.g. "
                                              "`env -u HF_HUB_OFFLINE hfpipe push RUN_DIR`")


def hub_error(err: BaseException, *, action: str, attempts: int, endpoint: str, repo_id: str, branch: str,
              token: str | None, nothing: str = "No files were committed.") -> HubError:
    """The one HubError for `err`, raised while `action` ("committing the files") after `attempts` tries;
    `nothing` says what the failure left behind."""
    import httpx2
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    tries = f" ({attempts} tries)" if attempts > 1 else ""
    where = f"{endpoint}/{repo_id} (branch {branch})"
    server = getattr(err, "server_message", None)
    details = [scrub(line, token) for line in (server or "").splitlines() if line.strip()][:5]
    if isinstance(err, OfflineModeIsEnabled):
        return offline_error()
    if isinstance(err, HfHubHTTPError):
        status = status_of(err)
        if status == 401:
            return HubError(
                f"the Hub rejected the token (401 Unauthorized) while {action}. {nothing}", where=where,
                details=details, hint=("the token is invalid, expired or revoked: create a write token at "
                                       f"{endpoint}/settings/tokens, then set HF_TOKEN or run "
                                       "`hf auth login`"))
        if status == 403:
            return HubError(
                f"the token may not write to {repo_id} (403 Forbidden) while {action}. {nothing}",
                where=where, details=details,
                hint=(f"use a token with write access to the '{repo_id.split('/')[0]}' namespace (a 'write' "
                      "token, or a fine-grained token with repo write permission), or push to a namespace "
                      "you own with --repo-id"))
        if isinstance(err, RevisionNotFoundError):
            return HubError(f"branch '{branch}' was not found while {action}. {nothing}", where=where,
                            details=details, hint="check --revision (hfpipe creates a missing branch from main)")
        if isinstance(err, RepositoryNotFoundError) or status == 404:
            return HubError(
                f"repository {repo_id} was not found while {action}. {nothing}", where=where,
                details=details,
                hint=("check the NAMESPACE/NAME spelling and that HF_ENDPOINT points to the right Hub; the repo "
                      "may have been deleted, or belong to an account your token cannot see"))
        if status in (409, 412):
            return HubError(
                f"branch '{branch}' changed while pushing ({status}): someone else committed. {nothing}",
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
                        where=where, details=details or [scrub(short(err), token)],
                        hint="this looks like a bug in hfpipe: rerun with --debug and please report it")
    if isinstance(err, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return HubError(
            f"cannot reach the Hub at {endpoint}{tries}: {scrub(short(err), token)}. {nothing}",
            where=where, hint=("check the network connection and proxy settings; if HF_ENDPOINT is set, check "
                               "that it points to a running Hub"))
    if isinstance(err, httpx2.TimeoutException):
        return HubError(f"the Hub did not answer in time while {action}{tries}. {nothing}", where=where,
                        hint="check the network connection and rerun the push")
    if isinstance(err, httpx2.TransportError):
        return HubError(
            f"the connection to the Hub dropped while {action}{tries}: {scrub(short(err), token)}. "
            f"{nothing}", where=where, hint="check the network connection (proxy, VPN) and rerun the push")
    if isinstance(err, json.JSONDecodeError):
        return HubError(f"the server at {endpoint} did not answer like the Hub while {action}. {nothing}",
                        where=where, hint="check HF_ENDPOINT and proxy settings (a login page or proxy "
                                          "error page answered instead)")
    if isinstance(err, ValueError) and "metadata in README.md" in str(err):
        return HubError("the Hub rejected the model card metadata. " + nothing, where=where,
                        details=[scrub(line, token) for line in str(err).splitlines()[1:6]],
                        hint="this is a bug in hfpipe's model card: please report it with the details above")
    return HubError(f"unexpected error while {action}: {type(err).__name__}: {scrub(short(err), token)}",
                    where=where, hint="rerun with --debug for the traceback and please report it")

