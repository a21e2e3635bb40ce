"""Every way a push can fail gives one clear Hub error (exit 4), no traceback, and no partial commit.

Through the real CLI in a subprocess, against the local Hub server told to fail on purpose. Transient failures
(5xx, dropped connections) are retried with backoff a bounded number of times (HFPIPE_HUB_RETRY_DELAY=0.05 keeps
the tests fast).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hub_testing import READ_TOKEN, REPO_ID, FakeHub, run_cli

PUSHED = {".gitattributes", "model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
          "tokenizer_config.json", "recipe.yaml", "metrics.json", "README.md"}


def assert_clean_failure(proc, *needles: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output
    assert "Traceback" not in output
    assert "Hugging Face Hub error (exit 4)" in proc.stderr
    flat = " ".join(proc.stderr.split())  # the panel wraps lines
    for needle in needles:
        assert needle in flat, flat
    return flat


def assert_no_commit(hub: FakeHub, repo_id: str = REPO_ID) -> None:
    if hub.repo_exists(repo_id):
        assert [c["title"] for c in hub.commits(repo_id)] == ["initial commit"]
        assert set(hub.files(repo_id)) == {".gitattributes"}
    assert not list((hub.root / "models").glob("*/*/snapshots/.tmp-*"))  # no half-built commit left behind


def test_no_token(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    env = {k: v for k, v in hub_env.items() if k != "HF_TOKEN"}  # and HF_HOME holds no login
    flat = assert_clean_failure(run_cli(["push", str(run_dir)], env, tmp_path), "no Hugging Face token", "HF_TOKEN",
                                "hf auth login")
    assert "never reads a token from the recipe or the command line" in flat
    assert hub.requests == []


def test_offline_mode_refuses_to_push(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    proc = run_cli(["push", str(run_dir)], {**hub_env, "HF_HUB_OFFLINE": "1"}, tmp_path)
    assert_clean_failure(proc, "offline mode is on", "HF_HUB_OFFLINE")
    assert hub.requests == []


def test_invalid_token_401(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    proc = run_cli(["push", str(run_dir)], {**hub_env, "HF_TOKEN": "hf_" + "x" * 40}, tmp_path)
    assert_clean_failure(proc, "rejected the token (401 Unauthorized)", "settings/tokens", "hf auth login",
                         "No files were committed")
    assert not hub.repo_exists(REPO_ID)
    assert hub.count("POST", "/api/repos/create") == 1  # a 401 is not retried


def test_read_only_token_403(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    hub.create_repo(REPO_ID, private=False)
    proc = run_cli(["push", str(run_dir)], {**hub_env, "HF_TOKEN": READ_TOKEN}, tmp_path)
    assert_clean_failure(proc, "403 Forbidden", "write access", "No files were committed")
    assert_no_commit(hub)


def test_namespace_of_someone_else_403(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    proc = run_cli(["push", str(run_dir), "--repo-id", "someone-else/model"], hub_env, tmp_path)
    assert_clean_failure(proc, "may not write to someone-else/model (403 Forbidden)",
                         'rights to create a model under the namespace "someone-else"')
    assert not hub.repo_exists("someone-else/model")


def test_repo_not_found(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    # e.g. the repo was deleted between creation and the commit
    hub.fail("POST", r"/preupload/", status=404, error_code="RepoNotFound", message="Repository not found",
             times=None)
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert_clean_failure(proc, f"repository {REPO_ID} was not found", "NAMESPACE/NAME")
    assert_no_commit(hub)


def test_server_error_once_is_retried(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    hub.fail("POST", r"/commit/main$", status=500, times=1)
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "retrying" in proc.stderr and "Traceback" not in proc.stderr
    assert hub.count("POST", r"/commit/main$") == 2
    assert [c["title"] for c in hub.commits(REPO_ID)] == ["initial commit", "Upload tiny-en-fr (hfpipe 0.1.0)"]
    assert set(hub.files(REPO_ID)) == PUSHED


def test_server_error_always_gives_up_after_bounded_retries(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                            tmp_path: Path) -> None:
    hub.fail("POST", r"/commit/", status=503, times=None, message="Service Unavailable")
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert_clean_failure(proc, "answered 503 (server error) while committing the files (3 tries)",
                         "status.huggingface.co", "No files were committed")
    assert hub.count("POST", r"/commit/") == 3
    assert_no_commit(hub)


def test_server_error_on_create_repo_is_retried_then_reported(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                              tmp_path: Path) -> None:
    hub.fail("POST", r"^/api/repos/create$", status=500, times=None)
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert_clean_failure(proc, "answered 500 (server error) while creating the repository (3 tries)")
    assert hub.count("POST", "/api/repos/create") == 3
    assert not hub.repo_exists(REPO_ID)


@pytest.mark.parametrize("path", [r"^/api/repos/create$", r"/commit/main$"])
def test_dropped_connection_once_is_retried(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path,
                                            path: str) -> None:
    hub.fail("POST", path, drop=True, times=1)
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert any(status == "dropped" for _, _, status in hub.requests)
    assert [c["title"] for c in hub.commits(REPO_ID)] == ["initial commit", "Upload tiny-en-fr (hfpipe 0.1.0)"]
    assert set(hub.files(REPO_ID)) == PUSHED


def test_dropped_connection_always(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    hub.fail("POST", r"/commit/", drop=True, times=None)
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert_clean_failure(proc, "connection to the Hub dropped while committing the files (3 tries)")
    assert_no_commit(hub)


def test_lost_answer_after_the_commit_landed_makes_no_second_commit(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                                    tmp_path: Path) -> None:
    hub.fail("POST", r"/commit/main$", drop_after=True, times=1)  # the commit is applied, the answer is lost
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["title"] for c in hub.commits(REPO_ID)] == ["initial commit", "Upload tiny-en-fr (hfpipe 0.1.0)"]


def test_lost_answer_and_a_failing_hub_says_the_commit_may_have_landed(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                                        tmp_path: Path) -> None:
    hub.fail("POST", r"/commit/main$", drop_after=True, times=1)
    hub.fail("GET", r"/revision/main$", status=500, times=None, skip=1)  # the Hub breaks right after the commit
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert_clean_failure(proc, "could not confirm whether the commit landed", f"check {hub.url}/{REPO_ID}")
    assert len(hub.commits(REPO_ID)) == 2  # it did land, once


def test_lost_answer_after_a_pull_request_opens_no_second_one(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                              tmp_path: Path) -> None:
    hub.create_repo(REPO_ID, private=False)
    hub.fail("POST", r"/commit/main$", drop_after=True, times=1)
    proc = run_cli(["push", str(run_dir), "--create-pr"], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{hub.url}/{REPO_ID}/discussions/1" in proc.stdout
    state = hub.repo_state(REPO_ID)
    assert list(state["prs"]) == ["refs/pr/1"] and len(state["commits"]) == 2


def test_unreachable_endpoint(run_dir: Path, hub_env: dict, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli(["push", str(run_dir)], {**hub_env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}, tmp_path)
    assert_clean_failure(proc, f"cannot reach the Hub at http://127.0.0.1:{port} (3 tries)", "HF_ENDPOINT")


def test_branch_moved_during_push(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    # someone commits between hfpipe reading the branch head and committing: the Hub refuses (412), hfpipe says so
    hub.fail("POST", r"/commit/main$", status=412, message="A commit has happened since. Please refresh and try again.")
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert_clean_failure(proc, "branch 'main' changed while pushing", "rerun the push")
    assert_no_commit(hub)


def test_bad_repo_id_is_a_usage_error(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    proc = run_cli(["push", str(run_dir), "--repo-id", "just-a-name"], hub_env, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "NAMESPACE/NAME" in " ".join(proc.stderr.split())
    assert hub.requests == []


def test_not_a_run_directory(hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    proc = run_cli(["push", str(tmp_path), "--repo-id", REPO_ID], hub_env, tmp_path)
    assert proc.returncode == 7 and "Traceback" not in proc.stderr
    assert hub.requests == []
