"""The table from a failed Hub request to one HubError, without a server: each row of the table from the exception
huggingface_hub raises, what is retried, and the token never showing in a message."""

from __future__ import annotations

import json

import httpx2
import pytest
from huggingface_hub.errors import (
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hfpipe.errors import HubError
from hfpipe.hub.http_errors import hub_error, is_transient, maybe_sent, mentions_token

TOKEN = "hf_secretTOKENvalue123"
WHERE = dict(endpoint="http://hub.test", repo_id="tester/model", branch="main", token=TOKEN)


def http_error(status: int, message: str = "", cls: type[HfHubHTTPError] = HfHubHTTPError) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("POST", "http://hub.test/api/models/tester/model/commit"))
    return cls(f"{status} Client Error", response=response, server_message=message)


def translate(err: BaseException, attempts: int = 1) -> HubError:
    return hub_error(err, action="committing the files", attempts=attempts, **WHERE)


@pytest.mark.parametrize(("status", "says", "hint"), [
    (401, "rejected the token (401 Unauthorized)", "http://hub.test/settings/tokens"),
    (403, "may not write to tester/model (403 Forbidden)", "'tester' namespace"),
    (404, "repository tester/model was not found", "NAMESPACE/NAME"),
    (409, "branch 'main' changed while pushing (409)", "rerun the push"),
    (412, "branch 'main' changed while pushing (412)", "rerun the push"),
    (429, "rate-limited the push (429 Too Many Requests) (3 tries)", "wait a few minutes"),
    (503, "answered 503 (server error) while committing the files (3 tries)", "status.huggingface.co"),
    (400, "refused the request while committing the files (HTTP 400)", "bug in hfpipe"),
])
def test_each_status_has_its_message_and_hint(status: int, says: str, hint: str) -> None:
    error = translate(http_error(status, message=f"server says no ({TOKEN})"), attempts=3)
    assert says in error.message and hint in error.hint
    assert error.message.endswith("No files were committed.")
    assert error.exit_code == 4 and error.where == "http://hub.test/tester/model (branch main)"
    assert TOKEN not in f"{error.message} {error.details} {error.hint}"


def test_missing_repositories_and_branches_are_known_by_their_class_too() -> None:
    assert "repository tester/model was not found" in translate(http_error(400, cls=RepositoryNotFoundError)).message
    assert "branch 'main' was not found" in translate(http_error(404, cls=RevisionNotFoundError)).message


@pytest.mark.parametrize(("err", "says"), [
    (httpx2.ConnectError(f"refused for {TOKEN}"), "cannot reach the Hub at http://hub.test"),
    (httpx2.ReadTimeout("slow"), "did not answer in time"),
    (httpx2.RemoteProtocolError("peer closed"), "connection to the Hub dropped"),
    (json.JSONDecodeError("Expecting value", "<html>", 0), "did not answer like the Hub"),
    (OfflineModeIsEnabled("offline"), "offline mode is on"),
    (RuntimeError(f"odd {TOKEN}"), "unexpected error while committing the files: RuntimeError"),
])
def test_transport_and_other_failures(err: BaseException, says: str) -> None:
    error = translate(err)
    assert says in error.message
    assert TOKEN not in f"{error.message} {error.details} {error.hint}"


def test_what_is_retried_and_what_may_have_landed() -> None:
    assert is_transient(http_error(503)) and is_transient(http_error(429)) and is_transient(httpx2.ReadTimeout("x"))
    assert not is_transient(http_error(401)) and not is_transient(http_error(404))
    # A refused connection never reached the server; a lost answer may hide a commit that landed.
    assert not maybe_sent(httpx2.ConnectError("refused"))
    assert maybe_sent(httpx2.ReadTimeout("x")) and maybe_sent(http_error(502))


def test_a_chain_that_holds_the_token_is_found() -> None:
    try:
        try:
            raise ValueError(f"Authorization: Bearer {TOKEN}")
        except ValueError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert mentions_token(outer, TOKEN)
    assert not mentions_token(RuntimeError("clean"), TOKEN)
