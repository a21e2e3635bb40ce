"""Is the new model better than the baseline, or is the difference noise? Paired bootstrap resampling of the test
rows (Koehn 2004), as sacreBLEU does it.

BLEU and chrF go through sacreBLEU's own `PairedTest` (paired bootstrap, 1,000 resamples, seed 12345 unless
SACREBLEU_SEED says otherwise), so the p-values are the ones `sacrebleu --paired-bs` prints. ROUGE has no such
tool: the same resampling (the same index matrix, drawn from the same seed) is applied to the per-example ROUGE
F-measures, and the p-value is computed the same way. The p-value is two-sided (is the difference more than
noise?); the gate adds the direction.

One departure: when both systems score exactly the same, sacreBLEU's test reports its smallest p-value (it counts
resampled differences strictly above the real one, and none is above 0); a zero difference is no evidence of one,
so hfpipe reports p = 1 there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from hfpipe.recipe.gates import TESTABLE

N_RESAMPLES = 1000
SACREBLEU_METRICS = {"bleu": "BLEU", "chrf": "chrF2"}
ROUGE_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _seed() -> int | None:
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    return None if seed.lower() == "none" else int(seed)


def _p_value(sample_diffs: np.ndarray, real_difference: float) -> float:
    """sacreBLEU's p-value: how often a centred resampled |difference| exceeds the real one (+1 smoothing)."""
    stats = sample_diffs - sample_diffs.mean()
    return float((np.sum(stats > real_difference) + 1) / (len(stats) + 1))


def _sacrebleu_p_values(candidate: Sequence[str], baseline: Sequence[str], references: Sequence[str],
                        metrics: list[str]) -> dict[str, float]:
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    chosen = {SACREBLEU_METRICS[m]: (BLEU() if m == "bleu" else CHRF()) for m in metrics}
    test = PairedTest([("baseline", list(baseline)), ("candidate", list(candidate))], chosen, [list(references)],
                      test_type="bs", n_samples=N_RESAMPLES)
    _, scores = test()
    out = {}
    for m in metrics:
        baseline_result, candidate_result = scores[SACREBLEU_METRICS[m]]
        same = candidate_result.score == baseline_result.score
        out[m] = 1.0 if same else float(candidate_result.p_value)
    return out


def per_example_rouge(predictions: Sequence[str], references: Sequence[str], rouge_type: str) -> np.ndarray:
    """Each row's ROUGE F-measure, computed as hfpipe's ROUGE metric computes it (their mean is that metric)."""
    from rouge_score import rouge_scorer

    from hfpipe.tasks.metrics import split_sentences_for_lsum

    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)
    if rouge_type == "rougeLsum":
        pairs = [(split_sentences_for_lsum(r), split_sentences_for_lsum(p)) for p, r in zip(predictions, references)]
    else:
        pairs = list(zip(references, predictions))
    return np.array([scorer.score(r, p)[rouge_type].fmeasure for r, p in pairs], dtype=np.float64)


def _rouge_p_value(candidate: Sequence[str], baseline: Sequence[str], references: Sequence[str],
                   rouge_type: str) -> float:
    cand = per_example_rouge(candidate, references, rouge_type)
    base = per_example_rouge(baseline, references, rouge_type)
    idxs = np.random.default_rng(_seed()).choice(len(cand), size=(N_RESAMPLES, len(cand)), replace=True)
    if cand.mean() == base.mean():
        return 1.0
    sample_diffs = np.abs(cand[idxs].mean(axis=1) - base[idxs].mean(axis=1))
    return _p_value(sample_diffs, abs(cand.mean() - base.mean()))


def paired_bootstrap(candidate: Sequence[str], baseline: Sequence[str], references: Sequence[str],
                     metrics: Sequence[str]) -> dict[str, float]:
    """p-values of candidate vs baseline on the same rows, for each metric in TESTABLE among `metrics`."""
    if not (len(candidate) == len(baseline) == len(references)) or not references:
        raise ValueError(f"paired test needs the same rows: {len(candidate)} candidate, {len(baseline)} baseline, "
                         f"{len(references)} references")
    wanted = [m for m in dict.fromkeys(metrics) if m in TESTABLE]
    result = {}
    sacre = [m for m in wanted if m in SACREBLEU_METRICS]
    if sacre:
        result.update(_sacrebleu_p_values(candidate, baseline, references, sacre))
    for m in wanted:
        if m in ROUGE_METRICS:
            result[m] = _rouge_p_value(candidate, baseline, references, m)
    return result
