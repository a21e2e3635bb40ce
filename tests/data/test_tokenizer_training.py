"""A trained tokenizer is a function of its text and settings: the same recipe on the same data gives the same
token ids in every process (the Unigram trainer's own output is not: it sums floats in hash-map order)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = """
import gzip, json, sys
from pathlib import Path
from hfpipe.pipeline.data_files import Example
from hfpipe.pipeline.tokenization import train_tokenizer
from hfpipe.recipe.schema import TokenizerTrainConfig
rows = []
with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
    for line in f:
        t = json.loads(line)["translation"]
        rows.append(Example(t["en"], t["de"]))
        if len(rows) == 4000:
            break
train_tokenizer(TokenizerTrainConfig(type=sys.argv[3], vocab_size=2000), rows, Path(sys.argv[2]))
"""


def train_in_new_process(repo_root: Path, out: Path, kind: str) -> str:
    subprocess.run([sys.executable, "-c", TRAIN, str(repo_root / "data/ddtp-en-de.train.jsonl.gz"), str(out), kind],
                   check=True, timeout=300, cwd=repo_root)
    return hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_the_same_text_trains_the_same_tokenizer_in_every_process(repo_root: Path, tmp_path: Path, kind: str) -> None:
    # Separate processes: Rust's hash maps are seeded per process, which is where the orders came from.
    hashes = {train_in_new_process(repo_root, tmp_path / f"tok{i}", kind) for i in range(3)}
    assert len(hashes) == 1
