"""Gates and the significance test, on constructed cases: every decision is one a CI job acts on."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from hfpipe.errors import BaselineError, MetricGateError, RecipeError
from hfpipe.recipe.gates import parse_gate
from hfpipe.runs.gates import check_gates, raise_for_gates
from hfpipe.runs.significance import paired_bootstrap, per_example_rouge


@pytest.mark.parametrize("text, metric, op, value, relative, amount", [
    ("bleu>=25", "bleu", ">=", 25.0, None, 0.0),
    (" chrf > 40.5 ", "chrf", ">", 40.5, None, 0.0),
    ("bleu>=baseline+0.5", "bleu", ">=", None, "+", 0.5),
    ("rougeL >= baseline * 1.01", "rougeL", ">=", None, "*", 1.01),
    ("bleu<=baseline-1", "bleu", "<=", None, "-", 1.0),
    ("eval_bleu>=baseline", "bleu", ">=", None, "", 0.0),
])
def test_gate_forms(text, metric, op, value, relative, amount):
    gate = parse_gate(text, "translation")
    assert (gate.metric, gate.op, gate.value, gate.relative, gate.amount) == (metric, op, value, relative, amount)


@pytest.mark.parametrize("text, needle", [("bleu=25", "cannot read"), ("blue>=25", "did you mean 'bleu'"),
                                          ("rouge1>=0.2", "not produced by task 'translation'"),
                                          ("bleu>=baseline^2", "cannot read 'baseline^2'"), ("", "cannot read")])
def test_bad_gates_say_what_is_wrong(text, needle):
    with pytest.raises(RecipeError) as info:
        parse_gate(text, "translation")
    assert needle in info.value.message and "METRIC OP" in info.value.hint


def _check(gates, value, base=None, **kwargs):
    return check_gates([parse_gate(g, "translation") for g in gates], {"bleu": value, "chrf": value}, split="test",
                       baseline_metrics=None if base is None else {"bleu": base, "chrf": base}, **kwargs)


def test_absolute_and_baseline_gates_decide_with_margins():
    report = _check(["bleu>=20", "bleu>=baseline+0.5", "chrf>=baseline*1.1"], 21.0, base=20.0)
    assert [r.passed for r in report.results] == [True, True, False]
    assert [round(r.margin, 6) for r in report.results] == [1.0, 0.5, -1.0]
    assert report.results[2].threshold == pytest.approx(22.0) and report.results[2].baseline == 20.0
    assert report.results[0].baseline is None, "an absolute gate does not report the baseline"
    assert report.status == "failed" and not report.passed


def test_lower_is_better_gates_use_the_operator_direction():
    report = _check(["bleu<=baseline-1"], 18.0, base=20.0)
    assert report.passed and report.results[0].margin == pytest.approx(1.0)
    assert not _check(["bleu<=baseline-1"], 19.5, base=20.0).passed


def test_a_missing_baseline_is_could_not_compare_never_a_pass():
    report = _check(["bleu>=baseline"], 99.0)
    assert report.status == "could_not_compare" and not report.passed
    with pytest.raises(BaselineError) as info:
        raise_for_gates(report.to_dict())
    assert info.value.exit_code == 9


def test_failed_gate_raises_exit_8_naming_metric_values_and_margin():
    report = _check(["bleu>=baseline+0.5"], 20.2, base=20.0)
    with pytest.raises(MetricGateError) as info:
        raise_for_gates(report.to_dict())
    assert info.value.exit_code == 8
    line = info.value.details[0]
    assert "bleu = 20.2" in line and "baseline 20" in line and "threshold 20.5" in line and "margin -0.3" in line


def test_significance_gate_needs_better_and_p_below_alpha():
    gates = ["bleu>=baseline"]
    assert _check(gates, 21.0, base=20.0, significance=0.05, p_values={"bleu": 0.01}).passed
    noisy = _check(gates, 21.0, base=20.0, significance=0.05, p_values={"bleu": 0.3})
    assert not noisy.passed and "not significantly" in noisy.results[0].reason
    worse = _check(gates, 19.0, base=20.0, significance=0.05, p_values={"bleu": 0.001})
    assert not worse.passed
    untested = _check(gates, 21.0, base=20.0, significance=0.05, p_values={})
    assert untested.status == "could_not_compare"


# --------------------------------------------------------------------------------------------- significance
REFS = [f"the package {w} provides tools for {v} files on the system" for w, v in
        zip("abcdefghijklmnopqrstuvwxyz" * 2, "qrstuvwxyzabcdefghijklmnop" * 2)]
GOOD = list(REFS)
BAD = [r.split(" ", 3)[-1][::-1] for r in REFS]


def test_identical_outputs_are_not_better():
    p = paired_bootstrap(GOOD, GOOD, REFS, ["bleu", "chrf", "rougeL"])
    assert p == {"bleu": 1.0, "chrf": 1.0, "rougeL": 1.0}, "no difference is no evidence of one"
    report = check_gates([parse_gate("bleu>=baseline")], {"bleu": 100.0}, split="test", baseline_metrics={"bleu": 100.0},
                         p_values=p, significance=0.05)
    assert not report.passed and "not better" in report.results[0].reason


def test_clearly_better_outputs_are_significant_for_bleu_chrf_and_rouge():
    p = paired_bootstrap(GOOD, BAD, REFS, ["bleu", "chrf", "rouge1", "rougeL", "rougeLsum"])
    assert set(p) == {"bleu", "chrf", "rouge1", "rougeL", "rougeLsum"}
    assert all(v < 0.01 for v in p.values()), p


def test_bleu_and_chrf_p_values_are_sacrebleus_own():
    half = GOOD[:26] + BAD[26:]
    ours = paired_bootstrap(half, BAD, REFS, ["bleu", "chrf"])
    _, scores = PairedTest([("baseline", BAD), ("candidate", half)], {"BLEU": BLEU(), "chrF2": CHRF()}, [REFS],
                           test_type="bs", n_samples=1000)()
    assert ours["bleu"] == scores["BLEU"][1].p_value and ours["chrf"] == scores["chrF2"][1].p_value


def test_rouge_p_value_uses_sacrebleus_resampling_on_per_example_scores():
    """The ROUGE test resamples the same rows sacreBLEU's paired bootstrap resamples (seed 12345) and computes the
    p-value the same way; written out here step by step."""
    half = GOOD[:20] + BAD[20:]
    cand, base = per_example_rouge(half, REFS, "rougeL"), per_example_rouge(BAD, REFS, "rougeL")
    idx = np.random.default_rng(12345).choice(len(REFS), size=(1000, len(REFS)), replace=True)
    diffs = np.abs(cand[idx].mean(1) - base[idx].mean(1))
    expected = (np.sum(diffs - diffs.mean() > abs(cand.mean() - base.mean())) + 1) / 1001
    assert paired_bootstrap(half, BAD, REFS, ["rougeL"])["rougeL"] == pytest.approx(expected)
    # and the per-example scores average to hfpipe's ROUGE-L (rouge-score, stemming)
    from hfpipe.tasks.metrics import compute_translation_metrics

    assert cand.mean() == pytest.approx(compute_translation_metrics(half, REFS)["rougeL"])
    assert sacrebleu.corpus_bleu(half, [REFS]).score > sacrebleu.corpus_bleu(BAD, [REFS]).score
