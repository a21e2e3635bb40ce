"""hfpipe.tasks.metrics against sacrebleu and rouge-score called directly, on real Debian/DDTP text."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer, scoring

from hfpipe.tasks import metrics as M

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _rows(name: str) -> list[dict]:
    with open(FIXTURES / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def mt() -> dict[str, list[str]]:
    rows = _rows("ddtp-en-de.sample.jsonl")
    en = [r["translation"]["en"] for r in rows]
    de = [r["translation"]["de"] for r in rows]
    shuffled = de[:]
    random.Random(0).shuffle(shuffled)
    return {"en": en, "de": de, "de_shuffled": shuffled}


@pytest.fixture(scope="module")
def summ() -> dict[str, list[str]]:
    rows = _rows("summarization.sample.jsonl")
    docs = [r["document"] for r in rows]
    return {
        "document": docs,
        "summary": [r["summary"] for r in rows],
        "lead10": [" ".join(d.split()[:10]) for d in docs],
        # Two leading sentences, on one line: gives ROUGE-Lsum something to split.
        "lead2": [" ".join(d.split("\n")[0].split(". ")[:2]) for d in docs],
    }


def _rouge_mean(preds, refs, rouge_type, *, tokenizer=None, split=False):
    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=True, tokenizer=tokenizer)
    total = 0.0
    for p, r in zip(preds, refs):
        if split:
            p, r = M.split_sentences_for_lsum(p), M.split_sentences_for_lsum(r)
        total += scorer.score(r, p)[rouge_type].fmeasure
    return total / len(preds)


def _hmean(bleu, rouge_l):
    b = bleu / 100
    return 2 * b * rouge_l / (b + rouge_l)


# ------------------------------------------------------------------------------------------------- translation


@pytest.mark.parametrize("pred_key", ["en", "de_shuffled"])
def test_translation_matches_libraries(mt, pred_key):
    preds, refs = mt[pred_key], mt["de"]
    got = M.compute_translation_metrics(preds, refs)
    assert set(got) == {"bleu", "chrf", "rougeL", "bleu_rouge_f1", "length_ratio", "pred_words", "ref_words"}
    assert got["bleu"] == sacrebleu.corpus_bleu(preds, [refs]).score
    assert got["length_ratio"] == sacrebleu.corpus_bleu(preds, [refs]).ratio
    assert got["chrf"] == sacrebleu.corpus_chrf(preds, [refs]).score
    assert got["rougeL"] == pytest.approx(_rouge_mean(preds, refs, "rougeL"), abs=1e-12)
    assert got["bleu_rouge_f1"] == pytest.approx(_hmean(got["bleu"], got["rougeL"]), abs=1e-12)
    assert got["pred_words"] == sum(len(p.split()) for p in preds) / len(preds)
    assert got["ref_words"] == sum(len(r.split()) for r in refs) / len(refs)
    assert 0 < got["bleu"] < 100 and 0 < got["rougeL"] < 1


def test_translation_perfect_and_shuffled(mt):
    # Note: on Debian descriptions shuffled German references (BLEU ~7.7 here) beat copying the English source
    # (~5.4): boilerplate like "Dieses Paket enthält" recurs across packages.
    shuffled = M.compute_translation_metrics(mt["de_shuffled"], mt["de"])
    perfect = M.compute_translation_metrics(mt["de"], mt["de"])
    assert shuffled["bleu"] < perfect["bleu"] == pytest.approx(100.0)
    assert perfect["chrf"] == pytest.approx(100.0)
    assert perfect["rougeL"] == pytest.approx(1.0)
    assert perfect["bleu_rouge_f1"] == pytest.approx(1.0)


def test_custom_rouge_tokenizer_is_used(mt):
    class Whitespace:
        def tokenize(self, text):
            return text.lower().split()

    preds, refs = mt["de_shuffled"], mt["de"]
    got = M.compute_translation_metrics(preds, refs, tokenizer=Whitespace())
    assert got["rougeL"] == pytest.approx(_rouge_mean(preds, refs, "rougeL", tokenizer=Whitespace()), abs=1e-12)
    assert got["rougeL"] != M.compute_translation_metrics(preds, refs)["rougeL"]
    # The default tokenizer drops non-ASCII letters: a non-Latin script scores 0 without a tokenizer.
    greek = ["καλημέρα κόσμε"]
    assert M.compute_translation_metrics(greek, greek)["rougeL"] == 0.0
    assert M.compute_translation_metrics(greek, greek, tokenizer=Whitespace())["rougeL"] == 1.0


def test_harmonic_mean_zero_when_both_zero():
    got = M.compute_translation_metrics(["", ""], ["völlig anders", "nichts gleich"])
    assert got["bleu"] == 0.0 and got["rougeL"] == 0.0 and got["bleu_rouge_f1"] == 0.0
    assert got["pred_words"] == 0.0 and got["ref_words"] == 2.0


# ----------------------------------------------------------------------------------------------- summarization


@pytest.mark.parametrize("pred_key", ["lead10", "lead2"])
def test_summarization_matches_libraries(summ, pred_key):
    preds, refs = summ[pred_key], summ["summary"]
    got = M.compute_summarization_metrics(preds, refs)
    assert set(got) == {
        "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "bleu_rouge_f1", "length_ratio", "pred_words", "ref_words"
    }
    assert got["length_ratio"] == sacrebleu.corpus_bleu(preds, [refs]).ratio
    for t in ("rouge1", "rouge2", "rougeL"):
        assert got[t] == pytest.approx(_rouge_mean(preds, refs, t), abs=1e-12), t
    assert got["rougeLsum"] == pytest.approx(_rouge_mean(preds, refs, "rougeLsum", split=True), abs=1e-12)
    assert got["bleu"] == sacrebleu.corpus_bleu(preds, [refs]).score
    assert got["bleu_rouge_f1"] == pytest.approx(_hmean(got["bleu"], got["rougeL"]), abs=1e-12)
    assert 0 < got["rouge2"] < got["rouge1"] < 1


def test_summarization_shuffled_references_score_lower(summ):
    shuffled = summ["summary"][:]
    random.Random(0).shuffle(shuffled)
    lead = M.compute_summarization_metrics(summ["lead10"], summ["summary"])
    wrong = M.compute_summarization_metrics(summ["lead10"], shuffled)
    assert wrong["rougeL"] < lead["rougeL"] and wrong["bleu"] < lead["bleu"]


def test_lsum_uses_sentence_split(summ):
    # Whole documents as predictions: multi-sentence paragraphs, so splitting changes ROUGE-Lsum.
    preds, refs = summ["document"], summ["summary"]
    got = M.compute_summarization_metrics(preds, refs)
    unsplit = _rouge_mean(preds, refs, "rougeLsum")
    split = _rouge_mean(preds, refs, "rougeLsum", split=True)
    assert got["rougeLsum"] == pytest.approx(split, abs=1e-12)
    assert split != unsplit


def test_mean_aggregation_close_to_evaluate_bootstrap(summ):
    """evaluate's "rouge" reports BootstrapAggregator's mid; the plain mean we report is close to it."""
    import numpy as np

    preds, refs = summ["lead10"], summ["summary"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    np.random.seed(0)
    agg = scoring.BootstrapAggregator()
    for p, r in zip(preds, refs):
        agg.add_scores(scorer.score(r, p))
    mid = {k: v.mid.fmeasure for k, v in agg.aggregate().items()}
    got = M.compute_summarization_metrics(preds, refs)
    for k in mid:
        assert abs(mid[k] - got[k]) < 5e-3, (k, mid[k], got[k])


# ------------------------------------------------------------------------------------------------ input errors


@pytest.mark.parametrize("fn", [M.compute_translation_metrics, M.compute_summarization_metrics])
def test_input_errors(fn):
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match=r"3 predictions.*2 references"):
        fn(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match=r"predictions\[1\]"):
        fn(["a", None], ["a", "b"])
    assert fn(["", "a b"], ["a b", "a b"])["pred_words"] == 1.0  # empty strings are fine


# ---------------------------------------------------------------------------------------------- sentence split


def test_split_sentences_for_lsum():
    text = "First one. Second one! Third? Fourth (e.g. the fifth).\nNew line.  \n\n"
    assert M.split_sentences_for_lsum(text) == (
        "First one.\nSecond one!\nThird?\nFourth (e.g. the fifth).\nNew line."
    )
    assert M.split_sentences_for_lsum("Das ist z. B. gut. Und das auch.") == "Das ist z. B. gut.\nUnd das auch."
    assert M.split_sentences_for_lsum('He said "done." Then left.') == 'He said "done."\nThen left.'
    assert M.split_sentences_for_lsum("版本一。版本二！") == "版本一。\n版本二！"
    assert M.split_sentences_for_lsum("Version 1.2.3 is out") == "Version 1.2.3 is out"
    assert M.split_sentences_for_lsum("By J. R. Smith. Uses e.g. Qt. Made in the U.S. Now") == (
        "By J. R. Smith.\nUses e.g. Qt.\nMade in the U.S. Now"
    )
    assert M.split_sentences_for_lsum("Version 2. Then 3.") == "Version 2.\nThen 3."
    assert M.split_sentences_for_lsum("") == ""


def test_split_keeps_existing_lines(summ):
    for doc in summ["document"]:
        split_lines = M.split_sentences_for_lsum(doc).split("\n")
        assert " ".join(split_lines).split() == doc.split()
        assert len(split_lines) >= len([line for line in doc.split("\n") if line.strip()])
        assert M.split_sentences_for_lsum(M.split_sentences_for_lsum(doc)) == M.split_sentences_for_lsum(doc)


# -------------------------------------------------------------------------------------------------- signatures


def test_metric_signatures():
    sig = M.metric_signatures()
    assert f"version:{sacrebleu.__version__}" in sig["bleu"] and "nrefs:1" in sig["bleu"]
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    bleu.corpus_score(["x y"], [["x z"]])
    chrf.corpus_score(["x y"], [["x z"]])
    assert sig["bleu"] == str(bleu.get_signature()) and sig["chrf"] == str(chrf.get_signature())
    assert f"version:{sacrebleu.__version__}" in sig["chrf"] and "nc:6" in sig["chrf"]
    from importlib.metadata import version

    assert sig["rouge"] == {
        "package": "rouge-score",
        "version": version("rouge-score"),
        "use_stemmer": True,
        "tokenizer": "default",
        "aggregation": "mean of per-example F1",
        "lsum_split": "newline",
        "lsum_sentence_splitter": "hfpipe regex (split_sentences_for_lsum)",
    }
    json.dumps(sig)  # goes into metrics.json


# ----------------------------------------------------------------------------------------------- metric names


def test_task_tables_consistent():
    for task, names in M.TASK_METRICS.items():
        assert M.PRIMARY_METRIC[task] in names
        for name in names:
            assert M.GREATER_IS_BETTER[name] is True
            assert M.check_metric_name(task, name) is None
            assert M.check_metric_name(task, f"eval_{name}") is None
    assert M.GREATER_IS_BETTER["loss"] is False and M.GREATER_IS_BETTER["eval_loss"] is False
    # The loss is not an evaluation metric hfpipe computes: keeping the best model by it is refused up front.
    assert M.check_metric_name("translation", "loss") is not None
    assert M.check_metric_name("translation", "eval_loss") is not None


@pytest.mark.parametrize(
    ("task", "name", "suggestion"),
    [
        ("translation", "blue", "bleu"),
        ("translation", "rouge_l", "rougeL"),
        ("translation", "rougel", "rougeL"),
        ("summarization", "rougel", "rougeL"),
        ("summarization", "rouge_l", "rougeL"),
        ("summarization", "eval_rouge_lsum", "rougeLsum"),
        ("summarization", "blue", "bleu"),
        ("translation", "chrF", "chrf"),
    ],
)
def test_check_metric_name_did_you_mean(task, name, suggestion):
    msg = M.check_metric_name(task, name)
    assert msg is not None
    assert f"did you mean {suggestion!r}?" in msg and repr(name) in msg and task in msg


def test_check_metric_name_wrong_task_and_unknown():
    msg = M.check_metric_name("translation", "rouge2")  # a summarization metric
    assert msg is not None and "available: bleu, chrf, rougeL, bleu_rouge_f1" in msg
    msg = M.check_metric_name("summarization", "perplexity")
    assert msg is not None and "did you mean" not in msg
    with pytest.raises(ValueError, match="unknown task 'qa'"):
        M.check_metric_name("qa", "bleu")


# ------------------------------------------------------------------------------------------------ length buckets


def test_metrics_by_length_translation(mt):
    sources, preds, refs = mt["en"], mt["en"], mt["de"]
    buckets = M.metrics_by_length("translation", sources, preds, refs, bucket_edges=[10, 20, 30, 50])
    assert [b["bucket"] for b in buckets] == ["1-10", "11-20", "21-30", "31-50", "51+"]
    assert [(b["min_words"], b["max_words"]) for b in buckets] == [(1, 10), (11, 20), (21, 30), (31, 50), (51, None)]
    assert sum(b["num_samples"] for b in buckets) == len(sources)
    for b in buckets:
        hi = b["max_words"] if b["max_words"] is not None else 10**9
        idx = [i for i, s in enumerate(sources) if b["min_words"] <= len(s.split()) <= hi]
        assert b["num_samples"] == len(idx) > 0
        assert set(b) == {"bucket", "min_words", "max_words", "num_samples", "bleu"}
        assert b["bleu"] == sacrebleu.corpus_bleu([preds[i] for i in idx], [[refs[i] for i in idx]]).score
    # Edges are inclusive upper bounds: the fixture has sources of exactly 10, 20 and 30 words.
    lengths = [len(s.split()) for s in sources]
    assert buckets[0]["num_samples"] == sum(n <= 10 for n in lengths) and 10 in lengths


def test_metrics_by_length_summarization_with_empty_bucket(summ):
    sources, preds, refs = summ["document"], summ["lead10"], summ["summary"]
    buckets = M.metrics_by_length("summarization", sources, preds, refs, bucket_edges=[20, 60, 100, 1000])
    assert [b["bucket"] for b in buckets] == ["1-20", "21-60", "61-100", "101-1000", "1001+"]
    assert sum(b["num_samples"] for b in buckets) == len(sources)
    assert buckets[0]["num_samples"] == 0 and buckets[0]["rougeL"] is None  # documents have 40+ words
    assert buckets[-1]["num_samples"] == 0 and buckets[-1]["rougeL"] is None
    for b in buckets[1:-1]:
        idx = [i for i, s in enumerate(sources) if b["min_words"] <= len(s.split()) <= b["max_words"]]
        assert b["num_samples"] == len(idx) > 0
        expected = _rouge_mean([preds[i] for i in idx], [refs[i] for i in idx], "rougeL")
        assert b["rougeL"] == pytest.approx(expected, abs=1e-12)


def test_metrics_by_length_errors(mt):
    args = ("translation", mt["en"], mt["en"], mt["de"])
    for edges in ([], [10, 10], [20, 10], [0, 5], [1.5]):
        with pytest.raises(ValueError, match="bucket_edges"):
            M.metrics_by_length(*args, bucket_edges=edges)
    with pytest.raises(ValueError, match="unknown task"):
        M.metrics_by_length("qa", *args[1:], bucket_edges=[10])
    with pytest.raises(ValueError, match="59 sources, 60 predictions"):
        M.metrics_by_length("translation", mt["en"][:-1], mt["en"], mt["de"], bucket_edges=[10])
    one = M.metrics_by_length("translation", ["", "a b"], ["x", "y"], ["x", "z"], bucket_edges=[1])
    assert [b["bucket"] for b in one] == ["1", "2+"]
    assert [b["num_samples"] for b in one] == [1, 1]  # an empty source counts in the first bucket


# --------------------------------------------------------------------------------------------------- import cost


def test_import_is_cheap():
    code = (
        "import hfpipe.tasks.metrics, sys; "
        "heavy = [m for m in ('torch', 'transformers', 'evaluate', 'sacrebleu', 'rouge_score', 'nltk') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
