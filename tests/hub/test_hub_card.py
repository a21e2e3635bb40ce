"""The model card and the push plan: local only, no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from hfpipe.errors import RecipeError, RunDirError
from hfpipe.hub.api import push_run
from hfpipe.hub.plan import plan_push
from hfpipe.hub.model_card import build_model_card
from hub_testing import METRICS, REPO_ID, card_code_block

EXPECTED_FILES = ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                  "tokenizer_config.json", "recipe.yaml", "metrics.json", "README.md"]


def _edit_recipe(run_dir: Path, **sections) -> None:
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe.update(sections)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))


def test_card_metadata_and_model_index(run_dir: Path, tmp_path: Path) -> None:
    text = build_model_card(run_dir, REPO_ID)
    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["language"] == ["en", "fr"]
    assert data["license"] == "mit"  # push.license
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "translation"
    assert {"hfpipe", "translation", "marian"} <= set(data["tags"])
    assert "base_model" not in data and "datasets" not in data  # trained from scratch on local files
    assert data["metrics"] == ["bleu", "chrf", "rouge", "bleu_rouge_f1"]

    # model-index: one result per metric per split, parsed back by huggingface_hub itself
    (tmp_path / "README.md").write_text(text)
    meta = metadata_load(tmp_path / "README.md")
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "tiny-en-fr"
    by_key = {(r.dataset_split, r.metric_name): r for r in results}
    assert len(results) == 8
    test_bleu = by_key[("test", "test BLEU")]
    assert (test_bleu.task_type, test_bleu.metric_type, test_bleu.metric_value) == ("translation", "bleu", 12.35)
    assert test_bleu.metric_args == {"signature": METRICS["signatures"]["bleu"]}
    assert by_key[("validation", "validation chrF")].metric_value == 41.0
    rouge = by_key[("test", "test ROUGE-L")]
    assert (rouge.metric_type, rouge.metric_value) == ("rouge", 0.3123)
    assert {r.dataset_type for r in results} == {"local"}

    # the prose
    body = card.text
    assert "a `marian` model (trained from scratch) for translation (en → fr)" in body
    assert "| train.learning_rate | 0.001 |" in body
    assert "| test | 12.35 | 40.12 | 0.3123 | 0.1712 | 21.3 | 500 |" in body
    assert "## Limitations" in body and "5 examples" in body
    code = card_code_block(text)
    assert f"repo_id = {REPO_ID!r}" in code and "trust_remote_code" not in code
    assert "'the cat sat on the mat'" in code  # an example from the run's predictions
    assert "num_beams=2, max_new_tokens=8" in code
    compile(code, "card-snippet", "exec")


def test_card_fine_tuned_summarization_on_hub_dataset(run_dir: Path) -> None:
    _edit_recipe(run_dir, task="summarization",
                 data={"hub_dataset": "abisee/cnn_dailymail", "hub_config": "3.0.0", "source_prefix": "summarize: "},
                 model={"pretrained": "google-t5/t5-small"})
    metrics = {"task": "summarization", "primary_metric": "rougeL",
               "splits": {"test": {"rouge1": 0.41234, "rouge2": 0.18, "rougeL": 0.29, "rougeLsum": 0.38,
                                   "bleu": 15.2, "bleu_rouge_f1": 0.2, "gen_len": 55.0, "num_samples": 1000}},
               "signatures": {"rouge": {"use_stemmer": True}}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    card = ModelCard(build_model_card(run_dir, "tester/t5-cnn"))
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "summarization"
    assert data["base_model"] == "google-t5/t5-small"
    assert data["datasets"] == ["abisee/cnn_dailymail"]
    assert "language" not in data
    results = card.data.eval_results
    assert {r.metric_name: r.metric_value for r in results} == {
        "test ROUGE-1": 0.4123, "test ROUGE-2": 0.18, "test ROUGE-L": 0.29, "test ROUGE-Lsum": 0.38,
        "test BLEU": 15.2, "test BLEU-ROUGE-L F1": 0.2}
    assert {(r.dataset_type, r.dataset_config, r.task_type) for r in results} == {
        ("abisee/cnn_dailymail", "3.0.0", "summarization")}
    assert "fine-tuned version of [google-t5/t5-small]" in card.text
    assert "'summarize: the cat sat on the mat'" in card_code_block(str(card))


def test_card_local_checkpoint_is_not_a_base_model(run_dir: Path) -> None:
    _edit_recipe(run_dir, model={"pretrained": "../checkpoints/opus-mt-en-fr"})
    data = ModelCard(build_model_card(run_dir, REPO_ID)).data.to_dict()
    assert "base_model" not in data


def test_card_of_a_run_without_metrics(run_dir: Path) -> None:
    (run_dir / "metrics.json").unlink()
    text = build_model_card(run_dir, REPO_ID)
    assert "model-index" not in ModelCard(text).data.to_dict()
    assert "not evaluated" in text
    files, _ = plan_push(run_dir, REPO_ID)
    assert "metrics.json" not in [f.path_in_repo for f in files]


def test_plan_pushes_only_the_model_tokenizer_card_recipe_and_metrics(run_dir: Path) -> None:
    files, card = plan_push(run_dir, REPO_ID)
    assert [f.path_in_repo for f in files] == EXPECTED_FILES
    assert all(f.size > 0 for f in files)
    assert files[-1].source is None and files[-1].size == len(card.encode())


def test_dry_run_needs_no_token_and_no_network(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = push_run(run_dir, repo_id=REPO_ID, dry_run=True)
    assert result.dry_run and result.commit_url is None
    assert result.repo_url == f"http://127.0.0.1:9/{REPO_ID}"
    assert [f.path_in_repo for f in result.files] == EXPECTED_FILES


def test_pickle_only_weights_are_refused(run_dir: Path) -> None:
    model = run_dir / "model"
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    with pytest.raises(RunDirError) as info:
        plan_push(run_dir, REPO_ID)
    assert info.value.exit_code == 7
    assert "safetensors" in info.value.message and "pytorch_model.bin" in info.value.details
    assert "save_pretrained" in info.value.hint


def test_in_house_model_code_is_pushed_and_checked(run_dir: Path) -> None:
    model = run_dir / "model"
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_tiny.TinyConfig",
                          "AutoModelForSeq2SeqLM": "modeling_tiny.TinyModel"}
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_tiny.py").write_text("# config\n")
    with pytest.raises(RunDirError) as info:
        plan_push(run_dir, REPO_ID)
    assert info.value.details == ["modeling_tiny.py"]
    (model / "modeling_tiny.py").write_text("from .layers_tiny import X\n")
    (model / "layers_tiny.py").write_text("X = 1\n")
    files, card = plan_push(run_dir, REPO_ID)
    assert {"configuration_tiny.py", "modeling_tiny.py", "layers_tiny.py"} <= {f.path_in_repo for f in files}
    assert "trust_remote_code=True" in card_code_block(card)


def test_tokenizer_falls_back_to_the_run_tokenizer_folder(run_dir: Path) -> None:
    tok_dir = run_dir / "tokenizer"
    tok_dir.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (run_dir / "model" / name).rename(tok_dir / name)
    files, _ = plan_push(run_dir, REPO_ID)
    assert [f.path_in_repo for f in files] == EXPECTED_FILES
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tok_dir / name).unlink()
    with pytest.raises(RunDirError, match="no tokenizer"):
        plan_push(run_dir, REPO_ID)


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "tester/bad name", ""])
def test_invalid_repo_ids_are_recipe_errors(run_dir: Path, repo_id: str) -> None:
    with pytest.raises(RecipeError) as info:
        push_run(run_dir, repo_id=repo_id, dry_run=True)
    assert info.value.exit_code == 2


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="recipe.yaml"):
        plan_push(tmp_path, REPO_ID)



@pytest.mark.parametrize("name", ["metrics.json", "manifest.json", "model/config.json"])
@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_damaged_run_file_is_one_error_with_one_wording(run_dir: Path, name: str, content: str) -> None:
    """The plan and the card read the run through one reader (hfpipe.runs.files): same message for every file."""
    (run_dir / name).write_text(content)
    for make in (lambda: plan_push(run_dir, REPO_ID), lambda: build_model_card(run_dir, REPO_ID)):
        with pytest.raises(RunDirError) as info:
            make()
        said = "is not valid JSON" if content.startswith("{") else "does not hold a JSON object"
        assert info.value.message.startswith(f"{Path(name).name} {said}")
        assert info.value.where == str(run_dir / name) and info.value.exit_code == 7
