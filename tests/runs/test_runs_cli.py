"""CI use end to end, through the real CLI: `--json` records, gates against a baseline run and against a model on a
local server that speaks the Hub's API (downloaded and re-scored), no push when a gate fails, `runs list/compare`,
`report`, trackers and extra metrics."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, tiny_recipe, write_recipe
from tests.hub_server import FakeHub

pytestmark = pytest.mark.slow

TOKEN = "hf_" + secrets.token_urlsafe(48)
BASE_REPO = "tester/ddtp-tiny"


@pytest.fixture(scope="module")
def ci(tmp_path_factory):
    """A local Hub, a tiny recipe that pushes to it, and run A (the published baseline) trained and pushed."""
    tmp = tmp_path_factory.mktemp("ci")
    hub = FakeHub(tmp / "hub", token=TOKEN)
    hub.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "HFPIPE_", "RANK"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp / "hf-home"), "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
                "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HFPIPE_HUB_RETRY_DELAY": "0.05",
                "HFPIPE_CACHE": str(tmp / "cache"), "PYTHONPATH": str(REPO), "COLUMNS": "200", "NO_COLOR": "1"})
    recipe = tiny_recipe("translation", train={"max_steps": 8, "eval_every_steps": None},
                         evaluate={"max_samples": 12})
    recipe["push"] = {"repo_id": BASE_REPO}
    path = write_recipe(tmp, recipe)

    def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hfpipe", *args], cwd=tmp, env=env, capture_output=True,
                              text=True, timeout=timeout)

    first = cli("run", str(path), "--run-dir", "runs/a", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    yield {"tmp": tmp, "hub": hub, "recipe": path, "cli": cli, "a": json.loads(first.stdout), "env": env}
    hub.stop()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_record_is_the_only_stdout_and_equals_the_run_files(ci):
    record, run = ci["a"], ci["tmp"] / "runs/a"
    assert record["schema_version"] == 1 and record["command"] == "run"
    assert (record["status"], record["exit_code"]) == ("ok", 0)
    assert record["metrics"] == json.loads((run / "metrics.json").read_text())["splits"]
    assert record["signatures"]["bleu"].startswith("nrefs:1|")
    assert record["recipe"]["sha256"] == _sha(run / "recipe.yaml")
    files = {f["split"]: f for f in record["data"]}
    assert files["test"]["sha256"] == _sha(Path(files["test"]["path"])) and files["train"]["rows"] == 20000
    assert set(record["timings"]) >= {"data", "tokenizer", "train", "evaluate", "push", "total"}
    assert record["push"]["commit"] == ci["hub"].resolve(BASE_REPO, "main") and record["push"]["repo_id"] == BASE_REPO
    assert record["gates"] is None


def test_hub_baseline_is_downloaded_rescored_and_a_passing_gate_pushes(ci):
    """Run B is gated against the model published by run A: hfpipe downloads it from the Hub server and scores it
    on the same rows with the same settings, which must give exactly run A's own test metrics."""
    before = len(ci["hub"].commits(BASE_REPO))
    proc = ci["cli"]("run", str(ci["recipe"]), "--run-dir", "runs/b", "--json", "--set", "train.max_steps=12",
                     "--gate", "chrf>=baseline-100", "--baseline", f"hub:{BASE_REPO}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    gates = record["gates"]
    assert gates["status"] == "passed" and gates["results"][0]["passed"]
    baseline = gates["baseline"]
    assert baseline["kind"] == "hub" and baseline["rescored"] and baseline["commit"] == ci["a"]["push"]["commit"]
    a_test = ci["a"]["metrics"]["test"]
    for key in ("bleu", "chrf", "rougeL"):
        assert baseline["metrics"][key] == a_test[key], key
    assert len(ci["hub"].commits(BASE_REPO)) == before + 1, "a passing gate pushes"
    assert record["push"]["commit"] == ci["hub"].resolve(BASE_REPO, "main")


def test_failed_gates_exit_8_name_the_numbers_and_push_nothing(ci):
    before = len(ci["hub"].commits(BASE_REPO))
    proc = ci["cli"]("run", str(ci["recipe"]), "--run-dir", "runs/c", "--json", "--gate", "bleu>=99",
                     "--gate", "chrf>=baseline+1000", "--baseline", str(ci["tmp"] / "runs/a"))
    assert proc.returncode == 8, proc.stderr[-3000:]
    record = json.loads(proc.stdout)  # still exactly one document
    assert (record["status"], record["exit_code"], record["push"]) == ("gate_failed", 8, None)
    results = {r["gate"]: r for r in record["gates"]["results"]}
    assert results["bleu>=99"]["margin"] < 0 and results["chrf>=baseline+1000"]["baseline"] is not None
    assert record["gates"]["baseline"]["kind"] == "run" and record["gates"]["baseline"]["reused_predictions"] is True  # same rows, same settings
    err = " ".join(proc.stderr.split())
    assert "2 of 2 gates failed" in err and "bleu>=99: bleu = " in err and "threshold 99" in err and "margin -" in err
    assert "Traceback" not in proc.stderr
    assert len(ci["hub"].commits(BASE_REPO)) == before, "a failed gate pushes nothing"
    # and `hfpipe push` will not publish that run by accident
    push = ci["cli"]("push", "runs/c", "--repo-id", BASE_REPO)
    assert push.returncode == 8 and "did not pass" in push.stderr
    assert len(ci["hub"].commits(BASE_REPO)) == before


def test_a_baseline_that_cannot_be_scored_exits_9(ci):
    proc = ci["cli"]("evaluate", "runs/a", "--json", "--gate", "bleu>=baseline", "--baseline",
                     "hub:tester/no-such-model")
    assert proc.returncode == 9, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["status"] == "could_not_compare" and "no-such-model" in record["gates"]["could_not_compare"]
    assert "Could not compare" in proc.stderr


def test_evaluate_reuses_a_baseline_runs_predictions_when_rows_and_settings_match(ci):
    proc = ci["cli"]("evaluate", "runs/a", "--json", "--gate", "bleu>=baseline", "--baseline", "runs/a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["command"] == "evaluate" and record["gates"]["baseline"]["reused_predictions"] is True
    assert record["gates"]["results"][0]["margin"] == 0


def test_a_recipe_error_is_one_json_error_document(ci):
    bad = ci["tmp"] / "bad.yaml"
    bad.write_text(ci["recipe"].read_text().replace("max_steps", "max_stepz"))
    proc = ci["cli"]("run", str(bad), "--json")
    assert proc.returncode == 2
    record = json.loads(proc.stdout)
    assert record["status"] == "error" and record["exit_code"] == 2 and "max_stepz" in " ".join(
        record["error"]["details"])


def test_runs_list_and_compare_on_real_runs(ci):
    proc = ci["cli"]("runs", "list", "runs", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {r["name"]: r for r in json.loads(proc.stdout)["runs"]}
    assert {"a", "b"} <= set(runs) and runs["a"]["metric"] == "bleu" and runs["a"]["pushed"]
    assert runs["b"]["gates"] == "passed" and runs["a"]["duration_s"] > 0
    md = ci["cli"]("runs", "list", "runs", "--md").stdout
    assert md.startswith("| run | recipe |") and "| a |" in md

    proc = ci["cli"]("runs", "compare", "runs/a", "runs/b", "--json")
    comparison = json.loads(proc.stdout)
    changes = {c["key"]: (c["a"], c["b"]) for c in comparison["recipe_changes"]}
    assert changes["train.max_steps"] == (8, 12)
    chrf = next(m for m in comparison["metrics"] if (m["split"], m["metric"]) == ("test", "chrf"))
    assert chrf["delta"] == pytest.approx(chrf["b"] - chrf["a"])
    assert "train.max_steps" in ci["cli"]("runs", "compare", "runs/a", "runs/b").stdout


def test_report_renders_gates_deltas_predictions_and_recipe(ci):
    proc = ci["cli"]("report", "runs/b", "--md")
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = proc.stdout
    assert md.startswith("# hfpipe run `b`: gates passed")
    for section in ("## Metrics", "## Gates (test split): passed", "### Compared with the baseline",
                    "## Predictions (first 5 of test)", "## Timings", "```yaml"):
        assert section in md, section
    assert f"hub:{BASE_REPO}" in md and "re-scored on the same rows" in md


def test_tensorboard_tracker_and_a_local_extra_metric(ci):
    metric = REPO / "tests/fixtures/metrics/exact_match"
    proc = ci["cli"]("run", str(ci["recipe"]), "--run-dir", "runs/tb", "--json", "--set", "push=null",
                     "--set", "train.report_to=[tensorboard]", "--set", "train.log_every_steps=2",
                     "--set", f"evaluate.extra_metrics=[{metric}]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    test = json.loads(proc.stdout)["metrics"]["test"]
    rows = [json.loads(line) for line in (ci["tmp"] / "runs/tb/predictions-test.jsonl").read_text().splitlines()]
    assert test["exact_match"] == pytest.approx(sum(r["prediction"] == r["reference"] for r in rows) / len(rows))
    assert test["prediction_chars"] == pytest.approx(sum(len(r["prediction"]) for r in rows) / len(rows), abs=1e-4)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = {}
    for events in (ci["tmp"] / "runs/tb/trackers").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            logged[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    log = [json.loads(line) for line in (ci["tmp"] / "runs/tb/train_log.jsonl").read_text().splitlines()]
    assert [s for s, _ in logged["train/loss"]] == [r["step"] for r in log if "loss" in r] == [2, 4, 6, 8]
    assert [v for _, v in logged["train/loss"]] == pytest.approx([r["loss"] for r in log if "loss" in r], abs=1e-4)


def test_an_extra_metric_that_cannot_be_loaded_offline_fails_before_training(ci):
    proc = subprocess.run([sys.executable, "-m", "hfpipe", "run", str(ci["recipe"]), "--run-dir", "runs/x",
                           "--set", "evaluate.extra_metrics=[someone/metric]"], cwd=ci["tmp"],
                          env={**ci["env"], "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "someone/metric" in proc.stderr and "offline" in proc.stderr
    assert not (ci["tmp"] / "runs/x/checkpoints").exists(), "nothing was trained"
