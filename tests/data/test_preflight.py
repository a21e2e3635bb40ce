"""`hfpipe validate`'s data and model checks (pipeline.preflight), on real files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfpipe.errors import DataError, RecipeError
from hfpipe.pipeline.preflight import preflight, raise_if_failed
from hfpipe.recipe.loading import load_recipe


def write_recipe(folder: Path, extra: str = "", tokenizer: str = "tokenizer:\n  train: {vocab_size: 1000}\n",
                 files: str = "    train: train.jsonl\n") -> Path:
    path = folder / "r.yaml"
    path.write_text("task: summarization\ndata:\n  files:\n" + files
                    + "  max_source_length: 32\n  max_target_length: 16\n" + tokenizer
                    + "model:\n  architecture: mbart\n  config: {max_position_embeddings: 64}\n"
                    + "train:\n  max_steps: 1\n" + extra, encoding="utf-8")
    return path


def write_rows(path: Path, n: int, summary_words: int) -> Path:
    rows = [{"document": f"document number {i} " * 3, "summary": " ".join(["word"] * summary_words)}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def padded_tokenizer(folder: Path) -> Path:
    """A tokenizer.json that pads every text to 64 tokens, as sentence-transformers checkpoints ship them."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "word": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_padding(length=64, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=64)
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    assert len(Tokenizer.from_file(str(folder / "tokenizer.json")).encode("word").ids) == 64
    return folder


@pytest.mark.parametrize("summary_words, warned", [(5, False), (30, True), (100, True)])
def test_target_lengths_are_counted_without_the_tokenizer_padding(tmp_path: Path, summary_words: int,
                                                                   warned: bool) -> None:
    padded_tokenizer(tmp_path / "tok")
    write_rows(tmp_path / "train.jsonl", 40, summary_words)
    loaded = load_recipe(write_recipe(tmp_path, tokenizer="tokenizer:\n  from: ./tok\n"))
    report = preflight(loaded)
    assert report.errors == []
    truncation = [w for w in report.warnings if "max_target_length" in w]
    assert bool(truncation) is warned, report.warnings
    if warned:
        assert "truncates 100%" in truncation[0] and "tok/tokenizer.json" in truncation[0]


def test_all_data_problems_are_collected(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", 40, 3)
    (tmp_path / "dev.jsonl").write_text(json.dumps({"documents": "x", "summary": "y"}) + "\n", encoding="utf-8")
    files = "    train: train.jsonl\n    validation: dev.jsonl\n    test: missing.jsonl\n"
    loaded = load_recipe(write_recipe(tmp_path, files=files))
    report = preflight(loaded)
    assert len(report.errors) == 2, report.errors
    assert report.errors[0].startswith("data.files.validation: column 'document' not found")
    assert "did you mean 'documents'?" in report.errors[0]
    assert report.errors[1].startswith("data.files.test: data file not found") and "missing.jsonl" in report.errors[1]
    with pytest.raises(DataError) as info:
        raise_if_failed(report, loaded.path)
    assert info.value.details == report.errors and info.value.exit_code == 3


def test_a_split_in_several_files_counts_them_all_and_names_the_bad_one(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.jsonl", 30, 3)
    write_rows(tmp_path / "b.jsonl", 12, 3)
    report = preflight(load_recipe(write_recipe(tmp_path, files="    train: [a.jsonl, b.jsonl]\n")))
    assert report.errors == [] and report.rows == {"train": 42}
    report = preflight(load_recipe(write_recipe(tmp_path, files="    train: [a.jsonl, gone.jsonl, b.jsonl]\n")))
    assert len(report.errors) == 1 and report.errors[0].startswith("data.files.train.1: data file not found")
    assert "train" not in report.rows


def test_rows_and_dropped_are_reported(tmp_path: Path) -> None:
    rows = [{"document": "a", "summary": "b"}, {"document": "", "summary": "b"}, {"document": "c", "summary": None}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = preflight(load_recipe(write_recipe(tmp_path)))
    assert report.rows == {"train": 1} and report.dropped == {"train": 2}
    assert any("2 rows with an empty source or target" in w for w in report.warnings)
    assert any("no validation file" in n for n in report.notes)


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("\n", encoding="utf-8")
    report = preflight(load_recipe(write_recipe(tmp_path)))
    assert report.errors == ["data.files.train: no rows: the file is empty or has only a header "
                             f"({tmp_path / 'train.jsonl'})"]


def test_lengths_beyond_the_model_positions_are_a_recipe_error(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", 40, 3)
    loaded = load_recipe(write_recipe(tmp_path), ["data.max_source_length=100"])
    report = preflight(loaded)
    assert len(report.errors) == 1 and "data.max_source_length is 100" in report.errors[0]
    assert "64" in report.errors[0]
    with pytest.raises(RecipeError):
        raise_if_failed(report, loaded.path)


@pytest.mark.parametrize(("config", "limit"), [
    ({"model_type": "bart", "max_position_embeddings": 1024}, 1024),
    ({"model_type": "gpt2", "n_positions": 256}, 256),  # GPT-2 style names the same limit differently
    ({"model_type": "encoder-decoder", "encoder": {"model_type": "bert", "max_position_embeddings": 512},
      "decoder": {"model_type": "gpt2", "n_positions": 128}}, 128),  # the smaller of the two stacks
    ({"model_type": "encoder-decoder", "encoder": {"model_type": "bert", "max_position_embeddings": 512},
      "decoder": {"model_type": "t5"}}, 512),
    ({"model_type": "t5", "d_model": 512}, None),  # relative positions: no table, no limit
    ({"model_type": "hfpipe_rnn", "max_position_embeddings": 64}, None),
    ({"model_type": "marian"}, None),  # nothing says
    ({}, None),
])
def test_one_position_limit_over_every_config_shape(config: dict, limit: int | None) -> None:
    from hfpipe.pipeline.models import position_limit

    assert position_limit(config) == limit


def test_the_position_limit_of_real_configs_and_of_what_validate_builds() -> None:
    """The runner asks with `model.config.to_dict()`, validate with the sizes the recipe builds from: one answer."""
    from transformers import BartConfig, BertConfig, EncoderDecoderConfig, GPT2Config, T5Config

    from hfpipe.pipeline.models import config_sizes, position_limit

    bert2gpt = EncoderDecoderConfig.from_encoder_decoder_configs(BertConfig(max_position_embeddings=300),
                                                                 GPT2Config(n_positions=200))
    assert position_limit(bert2gpt.to_dict()) == 200
    assert position_limit(T5Config().to_dict()) is None
    built = BartConfig(**config_sizes("bart", {"max_position_embeddings": 96}))
    assert position_limit(built.to_dict()) == position_limit({"model_type": "bart", **config_sizes(
        "bart", {"max_position_embeddings": 96})}) == 96
    assert position_limit({"model_type": "hfpipe_transformer", **config_sizes("hfpipe-transformer", {})}) == 512


def test_validate_reads_the_limit_of_an_encoder_decoder_folder(tmp_path: Path) -> None:
    """A saved bert2gpt-style config.json nests its stacks: validate finds the decoder's n_positions in it."""
    folder = tmp_path / "enc-dec"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "encoder-decoder", "encoder": {"model_type": "bert", "max_position_embeddings": 512},
        "decoder": {"model_type": "gpt2", "n_positions": 24}}))
    path = tmp_path / "r.yaml"
    write_rows(tmp_path / "train.jsonl", 10, summary_words=3)
    path.write_text("task: summarization\ndata:\n  files:\n    train: train.jsonl\n  max_source_length: 32\n"
                    f"  max_target_length: 16\ntokenizer:\n  train: {{vocab_size: 1000}}\nmodel:\n  pretrained: {folder}\n"
                    "train:\n  max_steps: 1\n", encoding="utf-8")
    report = preflight(load_recipe(path))
    assert any("max_source_length is 32 but the model encodes at most 24 positions" in e for e in report.errors)
    assert not any("max_target_length" in e for e in report.errors)
