"""Stage 2, tokenizer and tokenized data.

The tokenizer is loaded (`tokenizer.from`) or trained on the training split with the `tokenizers` library and
saved as a standard fast tokenizer. Tokenized splits are cached under a hash of everything they depend on (the
examples' text, the tokenizer files, prefix and length limits), so a rerun that changes only `train.*` reuses
them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpipe import __version__
from hfpipe.cache import cache_error, cache_root, fingerprint
from hfpipe.errors import ModelError
from hfpipe.pipeline.data_files import Example
from hfpipe.hub.locations import (
    TOKENIZER_FILES,
    load_error,
    local_files_only,
    resolve_location,
)
from hfpipe.recipe.schema import Recipe, TokenizerTrainConfig
from hfpipe.runs.files import atomic_copytree

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerBase

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"


def examples_fingerprint(splits: dict[str, Sequence[Example]]) -> str:
    """A hash of the examples of every split. A split read by the data stage (an ExampleTable) already carries
    one, so a corpus of millions of rows is not read again to name it."""
    h = hashlib.sha256()
    for split in sorted(splits):
        h.update(split.encode())
        known = getattr(splits[split], "fingerprint", None)
        if known is not None:
            h.update(b"\x02" + known.encode())
            continue
        for e in splits[split]:
            h.update(e.source.encode())
            h.update(b"\x00")
            h.update(e.target.encode())
            h.update(b"\x01")
    return h.hexdigest()[:20]


def folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------------------------- tokenizer
def _training_texts(examples: Iterable[Example], limit: int | None) -> Iterator[str]:
    for i, e in enumerate(examples):  # streamed: the first `limit` rows without slicing a table into a list
        if limit is not None and i >= limit:
            return
        yield e.source
        yield e.target


def train_tokenizer(config: TokenizerTrainConfig, examples: Iterable[Example], out_dir: Path) -> None:
    """Train a Unigram or BPE tokenizer (SentencePiece-style, whitespace kept as ▁) and save it as a fast
    tokenizer that `AutoTokenizer.from_pretrained` loads without hfpipe."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK]
    if config.type == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=config.vocab_size, special_tokens=specials, unk_token=UNK, show_progress=False,
                                          shrinking_factor=0.75, max_piece_length=16)
    else:
        tok = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=False))
        trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, special_tokens=specials, min_frequency=2,
                                      show_progress=False)
    norms = [normalizers.NFKC()]
    if config.lowercase:
        norms.append(normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(_training_texts(examples, config.max_rows), trainer=trainer)
    if config.type == "unigram":
        tok = _canonical_unigram(tok, specials)
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, eos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                   model_max_length=1_000_000, clean_up_tokenization_spaces=False)
    fast.save_pretrained(out_dir)


def _canonical_unigram(tok: Any, specials: list[str]) -> Any:
    """The same tokenizer from every training on the same text. The Unigram trainer sums floats in hash-map order,
    so two trainings give piece scores that differ in the 15th digit, and pieces of equal score in another order,
    that is with other ids: 3-5% of the default recipe's rows were tokenized differently from one run to the next.
    Scores rounded to 8 decimals (far below anything that changes a segmentation on purpose) and ties ordered by
    the piece make the vocabulary, and so every id, a function of the text alone."""
    from tokenizers import Tokenizer

    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]  # [[piece, log-probability], ...]; ids are positions
    head = vocab[:len(specials)]
    if [piece for piece, _ in head] != specials:  # not the layout this was written for: leave it as trained
        return tok
    rest = sorted(([piece, round(score, 8)] for piece, score in vocab[len(specials):]), key=lambda e: (-e[1], e[0]))
    # The trainer appends the characters it must keep but did not score at the end, 1e-4 apart (or tied), in
    # hash-map order: give that run its scores in the order of the characters.
    start = len(rest) - 1
    while start > 0 and len(rest[start - 1][0]) == 1 and len(rest[start][0]) == 1 and any(
            abs(rest[start - 1][1] - rest[start][1] - gap) < 1e-6 for gap in (0.0, 1e-4)):
        start -= 1
    tail = rest[start:]
    rest[start:] = [[piece, score] for (piece, _), (_, score) in zip(sorted(tail), tail)]
    state["model"]["vocab"] = head + rest
    return Tokenizer.from_str(json.dumps(state))


def build_tokenizer(recipe: Recipe, train_examples: Iterable[Example], out_dir: Path,
                    *, data_fingerprint: str, write: bool = True) -> tuple[PreTrainedTokenizerBase, bool]:
    """Load or train the tokenizer and (when `write`, i.e. on the main process) save it whole to `out_dir`;
    returns (tokenizer, reused_from_cache). A trained tokenizer is cached by its data and settings."""
    from transformers import AutoTokenizer

    cfg = recipe.tokenizer
    reused = False
    if cfg.train is not None:
        key = fingerprint({"v": __version__, "train": cfg.train.model_dump(), "data": data_fingerprint,
                           "canonical": 1})
        cached = cache_root() / "tokenizers" / key
        if not (cached / "tokenizer.json").exists():
            with tempfile.TemporaryDirectory() as tmp:
                train_tokenizer(cfg.train, train_examples, Path(tmp) / "tok")
                try:
                    atomic_copytree(Path(tmp) / "tok", cached)
                except OSError as err:
                    raise cache_error(err, cached) from None
        else:
            reused = True
        source = str(cached)
    else:
        source = cfg.from_ or recipe.model.encoder or recipe.model.pretrained
        assert source is not None  # guaranteed by the schema's cross checks
        source = resolve_location(source)
    revision = recipe.model.revision if cfg.from_ is None else None
    only_local = local_files_only(source, "tokenizer", revision=revision, files=TOKENIZER_FILES)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=only_local, revision=revision,
                                                  trust_remote_code=recipe.model.trust_remote_code)
    except Exception as err:
        raise load_error("tokenizer", source, err) from None
    if tokenizer.pad_token is None:
        raise ModelError(f"the tokenizer from {source} has no padding token",
                         hint="seq2seq training pads batches: use a tokenizer with a pad token")
    if write:
        if cfg.train is not None:
            atomic_copytree(Path(source), out_dir)
        else:
            with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
                tokenizer.save_pretrained(Path(tmp) / "tok")
                atomic_copytree(Path(tmp) / "tok", out_dir)
    return tokenizer, reused


# --------------------------------------------------------------------------------------------- tokenized data
@dataclass
class TokenizedData:
    datasets: DatasetDict
    cache_dir: Path
    reused: bool
    fingerprint: str


def tokenize_splits(recipe: Recipe, splits: dict[str, Sequence[Example]], tokenizer: PreTrainedTokenizerBase,
                    tokenizer_dir: Path) -> TokenizedData:
    """Token ids of every split (`input_ids`, `labels`), from the cache when nothing they depend on changed.

    Written batch by batch to Arrow files on disk (never the whole corpus in memory), then saved whole to the
    cache under its key."""
    from datasets import Dataset, DatasetDict, load_from_disk

    from hfpipe.pipeline.data import ExampleTable, to_datasets

    d = recipe.data
    key = fingerprint({"v": __version__, "examples": examples_fingerprint(splits),
                       "tokenizer": folder_fingerprint(tokenizer_dir), "prefix": d.source_prefix,
                       "max_source_length": d.max_source_length, "max_target_length": d.max_target_length})
    cached = cache_root() / "tokenized" / key
    if (cached / "dataset_dict.json").exists():
        return TokenizedData(load_from_disk(str(cached)), cached, True, key)

    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        sources = [d.source_prefix + s for s in batch["source"]]
        enc = tokenizer(sources, max_length=d.max_source_length, truncation=True)
        labels = tokenizer(text_target=batch["target"], max_length=d.max_target_length, truncation=True)
        return {"input_ids": enc["input_ids"], "labels": labels["input_ids"]}

    tables = {split: rows if isinstance(rows, ExampleTable) else  # lists: from tests and library callers
              ExampleTable(Dataset.from_dict({"source": [e.source for e in rows], "target": [e.target for e in rows]}),
                           examples_fingerprint({split: rows}))
              for split, rows in splits.items()}
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
            # The map's output goes to files of our own temporary folder: datasets would otherwise write its
            # cache files beside the examples' Arrow file and keep them there.
            ds = DatasetDict({
                split: data.map(encode, batched=True, batch_size=1000, desc=f"tokenizing {split}",
                                cache_file_name=str(Path(tmp) / f"map-{split}.arrow"), writer_batch_size=1000)
                for split, data in to_datasets(tables).items()})
            ds.save_to_disk(str(Path(tmp) / "ds"))
            if not cached.exists():
                os.replace(Path(tmp) / "ds", cached)
    except OSError as err:
        raise cache_error(err, cached) from None
    return TokenizedData(load_from_disk(str(cached)), cached, False, key)


@dataclass
class TokenizerReport:
    vocab_size: int
    tokens_per_word: dict[str, float]
    unknown_rate: dict[str, float]
    truncated_share: dict[str, float]
    target_length_percentiles: dict[str, int]


def tokenizer_report(recipe: Recipe, splits: dict[str, Sequence[Example]], tokenizer: PreTrainedTokenizerBase,
                     *, sample: int = 2000) -> TokenizerReport:
    """How well the tokenizer fits the training data, on a sample of it."""
    from hfpipe.pipeline.data import percentiles

    rows = splits["train"][:sample]
    d = recipe.data
    unk = tokenizer.unk_token_id
    out: dict[str, dict[str, float]] = {"tpw": {}, "unk": {}, "trunc": {}}
    lengths: list[int] = []
    for side, texts, limit in (("source", [d.source_prefix + e.source for e in rows], d.max_source_length),
                               ("target", [e.target for e in rows], d.max_target_length)):
        ids = tokenizer(texts, add_special_tokens=True)["input_ids"] if side == "source" else \
            tokenizer(text_target=texts, add_special_tokens=True)["input_ids"]
        n_tokens = sum(len(x) for x in ids)
        n_words = sum(len(t.split()) for t in texts) or 1
        out["tpw"][side] = round(n_tokens / n_words, 3)
        out["unk"][side] = round(sum(x.count(unk) for x in ids) / max(n_tokens, 1), 5) if unk is not None else 0.0
        out["trunc"][side] = round(sum(len(x) > limit for x in ids) / max(len(ids), 1), 4)
        if side == "target":
            lengths = [len(x) for x in ids]
    return TokenizerReport(len(tokenizer), out["tpw"], out["unk"], out["trunc"], percentiles(lengths))


def token_lengths(dataset: Any, column: str) -> list[int]:
    """The length of every row's token list in `column` of a tokenized split, read from Arrow's list offsets
    rather than by turning millions of rows into Python lists."""
    import pyarrow.compute as pc

    values = dataset.with_format("arrow")[column]  # respects a selection of rows; no Python objects per token
    return pc.list_value_length(values).to_numpy(zero_copy_only=False).tolist()
