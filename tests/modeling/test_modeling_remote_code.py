"""A saved in-house model loads in a fresh process where hfpipe cannot be imported, through
`AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True)`, and generates the same tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForSeq2SeqLM

# Run with `python -I` from an empty folder, and with `hfpipe` blocked in sys.modules as well (in case hfpipe is
# pip-installed): the saved code files must be enough.
LOADER = r"""
import json, sys
sys.modules["hfpipe"] = None
try:
    import hfpipe
except ImportError:
    pass
else:
    raise SystemExit("hfpipe is importable in the clean process")
import torch
from transformers import AutoModelForSeq2SeqLM
source = torch.tensor(json.loads(sys.argv[1]))
results = {}
for path in sys.argv[2:]:
    model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
    assert not type(model).__module__.startswith("hfpipe"), type(model).__module__
    results[path] = model.generate(source, max_new_tokens=6, min_new_tokens=6, num_beams=2).tolist()
print(json.dumps(results))
"""


def test_saved_models_load_and_generate_without_hfpipe(
    tmp_path, registered, transformer_config, rnn_config, randomized
):
    source = [[5, 6, 7, 8, 9, 10]]
    expected = {}
    for name, config in [
        ("transformer", transformer_config(positional_encoding="sinusoidal")),
        ("transformer-copy", transformer_config(norm_first=True, copy_attention=True)),
        ("rnn", rnn_config(attention="additive", cell="lstm")),
    ]:
        torch.manual_seed(0)
        model = randomized(AutoModelForSeq2SeqLM.from_config(config))
        path = tmp_path / name
        model.save_pretrained(path)
        expected[str(path)] = model.generate(
            torch.tensor(source), max_new_tokens=6, min_new_tokens=6, num_beams=2
        ).tolist()

    workdir = tmp_path / "clean"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-I", "-c", LOADER, json.dumps(source), *expected],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
