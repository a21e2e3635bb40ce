"""Every exit code in the README's table, through a real `python -m hfpipe` subprocess: the codes come from one place
(hfpipe.cli.common.exit_code_of), so neither Typer's return values nor an interrupt can turn a failure into 0.

Real user mistakes give 2 (bad key, unknown option); the other library errors are raised inside a real command by a
small wrapper (the same CLI path a real DataError or HubError takes); SIGINT and SIGTERM are sent to a command that
is busy. Training under a signal is in tests/e2e/test_recovery.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

WRAPPER = textwrap.dedent("""
    import os, sys, time
    from hfpipe import errors
    import hfpipe.recipe.loading as loading

    def load_recipe(*args, **kwargs):
        what = os.environ["HFPIPE_TEST_RAISE"]
        if what == "sleep":
            print("busy", file=sys.stderr, flush=True)
            time.sleep(120)
        if what == "bug":
            raise RuntimeError("a bug")
        if what.startswith("exit"):
            sys.exit(int(what[4:]))
        raise getattr(errors, what)("what went wrong", where="here", hint="how to fix it")

    loading.load_recipe = load_recipe
    from hfpipe.cli import main
    sys.argv = ["hfpipe", *sys.argv[1:]]
    main()
""")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HFPIPE_DEBUG", "RANK", "LOCAL_RANK")}
    env.update({"PYTHONPATH": str(REPO_ROOT), "HFPIPE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
                "COLUMNS": "200", **extra})
    return env


def _wrapped(tmp_path: Path, what: str, *args: str) -> subprocess.Popen:
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    return subprocess.Popen([sys.executable, str(script), "validate", "r.yaml", *args], cwd=tmp_path,
                            env=_env(tmp_path, HFPIPE_TEST_RAISE=what), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("error", "code"), [("RecipeError", 2), ("DataError", 3), ("HubError", 4),
                                             ("ModelError", 5), ("TrainingError", 6), ("RunDirError", 7),
                                             ("MetricGateError", 8), ("BaselineError", 9), ("bug", 1),
                                             ("exit0", 0), ("exit3", 3)])
def test_each_documented_exit_code(tmp_path: Path, error: str, code: int) -> None:
    proc = _wrapped(tmp_path, error)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    if code not in (0, 3) or error.endswith("Error"):
        assert f"(exit {code})" in err, err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_outside_training(tmp_path: Path, sig: int, code: int) -> None:
    """A busy command stopped by SIGINT exits 130, by SIGTERM 143, with one line and no traceback (Typer alone
    returned Ctrl-C as an exit code that the CLI ignored: exit 0)."""
    proc = _wrapped(tmp_path, "sleep")
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == "busy"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err


def test_real_mistakes(run_hfpipe, tmp_path: Path) -> None:
    rc, out, err = run_hfpipe("validate", str(tmp_path / "missing.yaml"))
    assert rc == 2 and "Traceback" not in err
    rc, out, err = run_hfpipe("validate", "recipes/translation-en-de.yaml", "--no-such-flag")
    assert rc == 2 and "No such option" in err
    rc, out, err = run_hfpipe("no-such-command")
    assert rc == 2
    rc, out, err = run_hfpipe("validate", "recipes/translation-en-de.yaml", "--set", "train.max_step=3")
    assert rc == 2 and "did you mean" in err
    rc, out, err = run_hfpipe("validate", "recipes/translation-en-de.yaml")
    assert rc == 0, err
    rc, out, err = run_hfpipe("--version")
    assert rc == 0 and out.startswith("hfpipe ")


def test_resume_of_a_folder_that_is_not_a_run(run_hfpipe, tmp_path: Path) -> None:
    (tmp_path / "notarun").mkdir()
    rc, out, err = run_hfpipe("train", "recipes/translation-en-de.yaml", "--run-dir", str(tmp_path / "notarun"),
                              "--resume", "--json")
    assert rc == 7 and "Traceback" not in err
    record = json.loads(out)
    assert record["exit_code"] == 7 and record["status"] == "error"


def test_interrupted_json_record(tmp_path: Path) -> None:
    """`--json` and interrupted: still exactly one JSON document, status "interrupted"."""
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    proc = subprocess.Popen([sys.executable, str(script), "train", "r.yaml", "--json"], cwd=tmp_path,
                            env=_env(tmp_path, HFPIPE_TEST_RAISE="sleep"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while proc.stderr.readline().strip() != "busy":
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    record = json.loads(out)
    assert record["status"] == "interrupted" and record["exit_code"] == 143
