"""`hfpipe push` against a local server that speaks the Hub's API: round trip, pull requests, branches, dry run.

The CLI runs as a subprocess (`python -m hfpipe push ...`) with HF_ENDPOINT/HF_HOME/HF_TOKEN in its environment,
because huggingface_hub reads those at import time. Downloads go through the same server with snapshot_download
and from_pretrained, also in a subprocess.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import yaml
from huggingface_hub import ModelCard

from hub_testing import REPO_ID, FakeHub, download_and_compare, run_cli, run_python

PUSHED = {".gitattributes", "model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
          "tokenizer_config.json", "recipe.yaml", "metrics.json", "README.md"}

def test_round_trip_through_the_hub_api(run_dir: Path, hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["data"]["files"]["train"] = "/home/someone/secret-folder/train.jsonl"
    recipe["data"]["files"]["test"] = ["/home/someone/secret-folder/test-1.jsonl", "/srv/private-folder/test-2.jsonl"]
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    # --repo-id falls back to the recipe's push.repo_id
    proc = run_cli(["push", str(run_dir)], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Committed" in proc.stdout and f"{hub.url}/{REPO_ID}" in proc.stdout
    assert "model.safetensors" in proc.stdout and "README.md" in proc.stdout

    # one commit holding exactly the model, tokenizer, card, recipe and metrics
    commits = hub.commits(REPO_ID)
    assert [c["title"] for c in commits] == ["initial commit", "Upload tiny-en-fr (hfpipe 0.1.0)"]
    files = hub.files(REPO_ID)
    assert set(files) == PUSHED
    assert files["model.safetensors"] == (run_dir / "model" / "model.safetensors").read_bytes()
    pushed_recipe = yaml.safe_load(files["recipe.yaml"])
    assert pushed_recipe["task"] == yaml.safe_load((run_dir / "recipe.yaml").read_text())["task"]
    assert "secret-folder" not in files["recipe.yaml"].decode(), "no local paths leak to the Hub"
    assert "private-folder" not in files["recipe.yaml"].decode(), "nor from a split in several files"
    assert pushed_recipe["data"]["files"]["test"] == ["test-1.jsonl", "test-2.jsonl"]
    assert pushed_recipe["data"]["files"]["train"] == "train.jsonl"
    assert hub.repo_state(REPO_ID)["private"] is False  # visibility not forced: the Hub's default
    card = files["README.md"].decode()
    meta = ModelCard(card).data
    assert meta.pipeline_tag == "translation" and len(meta.eval_results) == 8

    # load it back through the same endpoint: same generations as the local model; the card's snippet runs
    out = download_and_compare(REPO_ID, run_dir, hub_env, tmp_path, card)
    assert set(out["snapshot"]) == PUSHED
    assert out["hub"] == out["local"]
    assert len(set(out["local"])) > 1  # the tiny model does react to its input
    assert out["card_metrics"]["test BLEU"] == 12.35
    assert out["snippet"].strip() == repr(out["local_first"])
    assert not hub.unknown_routes


def test_create_pr_leaves_main_unchanged_and_revision_pushes_a_branch(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                                       tmp_path: Path) -> None:
    assert run_cli(["push", str(run_dir), "--private"], hub_env, tmp_path).returncode == 0
    assert hub.repo_state(REPO_ID)["private"] is True
    main_before = hub.repo_state(REPO_ID)["branches"]["main"]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["splits"]["test"]["bleu"] = 20.0
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    proc = run_cli(["push", str(run_dir), "--create-pr", "--commit-message", "Better BLEU"], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{hub.url}/{REPO_ID}/discussions/1" in proc.stdout
    state = hub.repo_state(REPO_ID)
    assert state["branches"] == {"main": main_before}
    assert list(state["prs"]) == ["refs/pr/1"]
    assert json.loads(hub.files(REPO_ID, "refs/pr/1")["metrics.json"])["splits"]["test"]["bleu"] == 20.0
    assert json.loads(hub.files(REPO_ID, "main")["metrics.json"])["splits"]["test"]["bleu"] == 12.3456
    assert state["commits"][state["prs"]["refs/pr/1"]]["title"] == "Better BLEU"

    proc = run_cli(["push", str(run_dir), "--revision", "exp/bleu-20"], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    state = hub.repo_state(REPO_ID)
    assert state["branches"]["main"] == main_before
    assert json.loads(hub.files(REPO_ID, "exp/bleu-20")["metrics.json"])["splits"]["test"]["bleu"] == 20.0

    # pushing the same files again changes nothing
    proc = run_cli(["push", str(run_dir), "--revision", "exp/bleu-20"], hub_env, tmp_path)
    assert proc.returncode == 0 and "Already up to date" in proc.stdout
    assert len(hub.commits(REPO_ID)) == len(state["commits"])


def test_dry_run_prints_files_and_card_and_sends_nothing(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                          tmp_path: Path) -> None:
    env = {k: v for k, v in hub_env.items() if k != "HF_TOKEN"}
    env["HF_HUB_OFFLINE"] = "1"  # neither a token nor the network is needed
    proc = run_cli(["push", str(run_dir), "--repo-id", "tester/dry", "--dry-run"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("model.safetensors", "tokenizer.json", "recipe.yaml", "metrics.json", "README.md"):
        assert name in proc.stdout
    assert "checkpoints" not in proc.stdout and "predictions" not in proc.stdout
    assert "model-index:" in proc.stdout and "## How to use" in proc.stdout
    assert "nothing was sent" in proc.stdout
    assert hub.requests == []


def test_token_from_the_login_store(run_dir: Path, hub: FakeHub, hub_env: dict, hf_home: Path,
                                    tmp_path: Path) -> None:
    env = dict(hub_env)
    token = env.pop("HF_TOKEN")
    (hf_home / "token").write_text(token)  # what `hf auth login` writes
    proc = run_cli(["push", str(run_dir)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(hub.files(REPO_ID)) == PUSHED


def test_push_after_run_respects_the_push_section(run_dir: Path, hub: FakeHub, hub_env: dict,
                                                  tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        from pathlib import Path
        from hfpipe.hub.api import push_after_run
        run = Path({str(run_dir)!r})
        assert push_after_run(run, None) is None
        assert push_after_run(run, {{"repo_id": None}}) is None
        assert push_after_run(run, {{"repo_id": "tester/off", "enabled": False}}) is None
        result = push_after_run(run, {{"repo_id": "tester/on", "enabled": True, "private": True,
                                      "revision": None, "create_pr": False, "commit_message": "from the runner"}})
        print(result.commit_url)
    """)
    proc = run_python(code, hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{hub.url}/tester/on/commit/" in proc.stdout
    assert not hub.repo_exists("tester/off")
    assert hub.repo_state("tester/on")["private"] is True
    assert hub.commits("tester/on")[-1]["title"] == "from the runner"
