"""An in-house model (hfpipe.modeling) pushed with its code loads from the Hub with trust_remote_code=True in a
process that cannot import hfpipe at all (`python -I` from a temporary folder)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from huggingface_hub import ModelCard

# What build_in_house_run (in a subprocess below) builds the model with. Imported, never skipped when missing: a
# rename must fail this test, not turn it into a skip.
from hfpipe.modeling import build_config, register_auto_classes  # noqa: F401
from hub_testing import BLOCK_HFPIPE, download_and_compare, run_cli

REPO = "tester/tiny-inhouse"


def test_in_house_model_round_trip_with_remote_code(hub, hub_env: dict, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "tiny-inhouse-20260101-000000"
    # built in a subprocess: registering the Auto classes must not leak into this test process
    proc = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                           "from hub_testing import build_in_house_run as b; b(Path(sys.argv[1]))", str(run_dir)],
                          env={**hub_env, "PYTHONPATH": f"{hub_env['PYTHONPATH']}:{Path(__file__).parent}:"
                                                        f"{Path(__file__).parents[1]}"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((run_dir / "model" / "config.json").read_text())
    code_files = {p.name for p in (run_dir / "model").glob("*.py")}
    assert config.get("auto_map") and code_files

    proc = run_cli(["push", str(run_dir), "--repo-id", REPO], hub_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = hub.files(REPO)
    assert code_files <= set(files)
    card = files["README.md"].decode()
    assert "trust_remote_code=True" in card and "hfpipe-transformer" in ModelCard(card).data.tags

    # a process where hfpipe is not importable: -I drops PYTHONPATH and the script folder, cwd is a temp folder
    isolated = tmp_path / "isolated"
    isolated.mkdir()
    check = subprocess.run([sys.executable, "-I", "-c", BLOCK_HFPIPE + "import hfpipe"], env=hub_env,
                           cwd=isolated, capture_output=True, text=True)
    assert check.returncode != 0 and "hfpipe" in check.stderr

    out = download_and_compare(REPO, run_dir, hub_env, isolated, card, trust_remote_code=True, isolated=True)
    assert code_files <= set(out["snapshot"])
    assert out["hub"] == out["local"]
    assert out["snippet"].strip() == repr(out["local_first"])
