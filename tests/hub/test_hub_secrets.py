"""The token never lands in a file, a log line or an error message."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from hub_testing import READ_TOKEN, REPO_ID, TOKEN, FakeHub, run_cli, run_python


def test_token_appears_in_no_file_and_no_output(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    outputs: list[str] = []

    def cli(*args: str, env: dict | None = None, expect: int = 0) -> None:
        proc = run_cli(["push", str(run_dir), *args], env or hub_env, tmp_path)
        outputs.extend([proc.stdout, proc.stderr])
        assert proc.returncode == expect, proc.stdout + proc.stderr

    debug_env = {**hub_env, "HF_DEBUG": "1"}  # huggingface_hub logs every request as a curl command
    cli(env=debug_env)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["splits"]["test"]["bleu"] = 30.0
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    cli("--create-pr")
    cli("--revision", "dev", "--dry-run")
    hub.fail("POST", r"/commit/", status=500, times=None)
    cli("--revision", "dev", expect=4)
    proc = run_cli(["push", str(run_dir), "--revision", "dev", "--debug"], debug_env, tmp_path)  # a traceback
    outputs.extend([proc.stdout, proc.stderr])
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    hub.clear_failures()
    hub.fail("POST", r"/commit/", drop=True, times=None)
    cli("--revision", "dev", expect=4)
    hub.clear_failures()
    cli(env={**hub_env, "HF_TOKEN": READ_TOKEN}, expect=4)  # 403 with the other token
    cli("--repo-id", "someone-else/x", env=debug_env, expect=4)

    # download what was pushed into HF_HOME, like a user would
    proc = run_python(textwrap.dedent(f"""
        from huggingface_hub import snapshot_download
        print(snapshot_download({REPO_ID!r}))
        print(snapshot_download({REPO_ID!r}, revision="refs/pr/1"))
    """), hub_env, tmp_path)
    outputs.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, proc.stderr

    assert len(hub.commits(REPO_ID)) == 3  # initial, main, the pull request
    secrets = [TOKEN.encode(), READ_TOKEN.encode()]
    scanned = 0
    for path in sorted(tmp_path.rglob("*")):  # run dir, HF_HOME (cache), the server's storage, everything else
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            scanned += 1
            assert not any(secret in data for secret in secrets), f"token found in {path}"
    assert scanned > 30
    for text in outputs:
        assert TOKEN not in text and READ_TOKEN not in text
    assert any("curl" in text for text in outputs)  # the debug logs were really produced (and redacted)


def test_a_token_inside_the_run_is_never_pushed(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    recipe = run_dir / "recipe.yaml"
    recipe.write_text(recipe.read_text() + f"description: 'pasted by mistake: {TOKEN}'\n")
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert proc.returncode == 4
    flat = " ".join(proc.stderr.split())
    assert "the Hugging Face token appears in files of the run" in flat and "recipe.yaml" in flat
    assert TOKEN not in proc.stdout + proc.stderr
    assert hub.requests == []
