"""Helpers for the Hub push tests: a tiny finished run directory, subprocess runners, constants.

The run directory is what `hfpipe run` leaves behind, built by hand: a MarianMT model with d_model 16 and one
encoder + one decoder layer, a word-level tokenizer trained with `tokenizers` on a few sentences, and hand-written
recipe.yaml / metrics.json / manifest.json, plus the files a push must leave out (checkpoints/, predictions, logs).

Code whose behaviour depends on environment variables huggingface_hub reads at import (HF_ENDPOINT, HF_HOME,
HF_HUB_OFFLINE, HF_HUB_DISABLE_XET) runs in subprocesses with `hub_env`.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from hub_server import FakeHub  # noqa: E402,F401

# Long random tokens, so that finding one in a file or in output is never a coincidence.
TOKEN = "hf_" + secrets.token_urlsafe(48)
READ_TOKEN = "hf_" + secrets.token_urlsafe(48)
REPO_ID = "tester/tiny-en-fr"

SENTENCES = [
    ("the cat sat on the mat", "le chat est assis sur le tapis"),
    ("a dog runs in the park", "un chien court dans le parc"),
    ("hello world", "bonjour le monde"),
    ("the dog sees the cat", "le chien voit le chat"),
    ("good morning", "bonjour"),
]

METRICS = {
    "task": "translation",
    "primary_metric": "bleu",
    "splits": {
        "test": {"bleu": 12.3456, "chrf": 40.1234, "rougeL": 0.31234, "bleu_rouge_f1": 0.1712, "gen_len": 21.3,
                 "num_samples": 500, "by_length": {"1-10": {"bleu": 15.0}}, "seconds": 3.2},
        "validation": {"bleu": 13.5, "chrf": 41.0, "rougeL": 0.32, "bleu_rouge_f1": 0.18, "gen_len": 20.1,
                       "num_samples": 100},
    },
    "signatures": {
        "bleu": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
        "chrf": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
        "rouge": {"use_stemmer": True, "lsum_split": "newline"},
    },
    "generation": {"num_beams": 2, "max_new_tokens": 8},
}

RECIPE = {
    "name": "tiny-en-fr",
    "task": "translation",
    "data": {"files": {"train": "data/train.jsonl", "test": "data/test.jsonl"}, "source_lang": "en",
             "target_lang": "fr", "source_prefix": "", "max_source_length": 32, "max_target_length": 32},
    "tokenizer": {"train": {"vocab_size": 64}},
    "model": {"architecture": "marian", "config": {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1}},
    "train": {"num_epochs": 2, "batch_size": 4, "learning_rate": 0.001, "seed": 0},
    "evaluate": {"splits": ["test"], "num_beams": 2, "max_new_tokens": 8},
    "push": {"repo_id": REPO_ID, "license": "mit"},
}


def train_tokenizer():
    """A word-level tokenizer over the fixture sentences, wrapped for transformers (pad/eos/unk/bos set)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([s for pair in SENTENCES for s in pair],
                            trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>", "<s>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>")


def write_run_files(run_dir: Path, *, recipe: dict | None = None, metrics: dict | None = None) -> None:
    """Everything a finished run holds besides model/ (including what a push must leave out)."""
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe or RECIPE, sort_keys=False))
    (run_dir / "metrics.json").write_text(json.dumps(metrics or METRICS, indent=2))
    (run_dir / "manifest.json").write_text(json.dumps({
        "hfpipe_version": "0.1.0", "status": "finished", "command": ["hfpipe", "run", "tiny.yaml"],
        "data": {"rows": {"train": 5, "validation": 1, "test": 2}, "files": [], "carved": [], "hub_dataset": None},
    }))
    (run_dir / "train_log.jsonl").write_text('{"step": 1, "loss": 3.2}\n')
    (run_dir / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    (run_dir / "predictions-test.jsonl").write_text(
        "".join(json.dumps({"source": s, "reference": t, "prediction": "le"}) + "\n" for s, t in SENTENCES[:2]))
    ckpt = run_dir / "checkpoints" / "step-1"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"not pushed")
    (ckpt / "optimizer.pt").write_bytes(b"not pushed")


def build_marian_run(run_dir: Path) -> None:
    import torch
    from transformers import MarianConfig, MarianMTModel

    tokenizer = train_tokenizer()
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        init_std=1.0)  # large random weights: generations differ from input to input
    model = MarianMTModel(config).eval()
    model.generation_config.num_beams = 2
    model.generation_config.max_new_tokens = 8
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(run_dir / "model")
    tokenizer.save_pretrained(run_dir / "model")
    write_run_files(run_dir)


def build_in_house_run(run_dir: Path) -> None:
    """The same run with an in-house model (hfpipe.modeling), saved with its remote code."""
    import torch
    from hfpipe.modeling import build_config, register_auto_classes  # noqa: I001
    from transformers import AutoModelForSeq2SeqLM

    register_auto_classes()
    tokenizer = train_tokenizer()
    torch.manual_seed(0)
    config = build_config("hfpipe-transformer", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id, d_model=16, encoder_layers=1,
                          decoder_layers=1, num_heads=2, ffn_dim=32, max_position_embeddings=64, init_std=1.0)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    model.generation_config.max_new_tokens = 8
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(run_dir / "model")
    tokenizer.save_pretrained(run_dir / "model")
    recipe = {**RECIPE, "name": "tiny-inhouse", "model": {"architecture": "hfpipe-transformer"}}
    write_run_files(run_dir, recipe=recipe)


def hfpipe_cli() -> list[str]:
    """The command line of the real `hfpipe` CLI."""
    return [sys.executable, "-m", "hfpipe"]


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*hfpipe_cli(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


# Make hfpipe unimportable in the child even where it is pip-installed (CI installs it): loading must not need it.
BLOCK_HFPIPE = 'import sys; sys.modules["hfpipe"] = None\n'


def run_python(code: str, env: dict[str, str], cwd: Path, *, isolated: bool = False,
               timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, *(["-I"] if isolated else []), "-c", (BLOCK_HFPIPE if isolated else "") + code]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def card_code_block(card: str) -> str:
    match = re.search(r"```python\n(.*?)```", card, re.DOTALL)
    assert match, "the card has no python code block"
    return match.group(1)


DOWNLOAD_AND_COMPARE = textwrap.dedent("""
    import contextlib, io, json, os, sys
    from huggingface_hub import ModelCard, snapshot_download
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    repo_id, local_dir, snippet, texts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    remote = {remote}
    snapshot = snapshot_download(repo_id)
    out = {{"snapshot": sorted(os.listdir(snapshot))}}
    for key, name in (("local", local_dir), ("hub", repo_id)):
        tok = AutoTokenizer.from_pretrained(name, **remote)
        model = AutoModelForSeq2SeqLM.from_pretrained(name, **remote)
        enc = tok(texts, return_tensors="pt", padding=True, return_token_type_ids=False)
        out[key] = tok.batch_decode(model.generate(**enc, num_beams=2, max_new_tokens=8), skip_special_tokens=True)
        if key == "local":
            enc = tok(texts[:1], return_tensors="pt", padding=True, return_token_type_ids=False)
            out["local_first"] = tok.batch_decode(model.generate(**enc, num_beams=2, max_new_tokens=8),
                                                  skip_special_tokens=True)
    card = ModelCard.load(repo_id)
    out["card_metrics"] = {{r.metric_name: r.metric_value for r in card.data.eval_results}}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the card's snippet, exactly as written in the card
        exec(compile(snippet, "README.md snippet", "exec"), {{"__name__": "__main__"}})
    out["snippet"] = printed.getvalue()
    print("RESULT " + json.dumps(out))
""")


def download_and_compare(repo_id: str, run_dir: Path, env: dict, cwd: Path, card: str, *,
                         trust_remote_code: bool = False, isolated: bool = False) -> dict:
    """Load the pushed model through the server and the local model; generations, card metrics, snippet output."""
    code = DOWNLOAD_AND_COMPARE.format(remote="{'trust_remote_code': True}" if trust_remote_code else "{}")
    texts = [s for s, _ in SENTENCES]
    code = (BLOCK_HFPIPE if isolated else "") + code
    argv = [sys.executable, *(["-I"] if isolated else []), "-c", code, repo_id, str(run_dir / "model"),
            card_code_block(card), json.dumps(texts)]
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RESULT " in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Do you wish to run the custom code" not in proc.stdout + proc.stderr  # nothing prompts the user
    return json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
