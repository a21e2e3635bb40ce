"""Metric gates: what a CI job checks before it publishes a model.

A gate is one comparison of an evaluated metric with a number or with the baseline's value of the same metric:

    bleu>=25                  an absolute floor
    bleu>=baseline+0.5        at least 0.5 BLEU better than the baseline
    rougeL>=baseline*1.01     at least 1% better
    ter<=baseline-1           the operator gives the metric's direction: lower is better here

With `significance: ALPHA`, a gate against the baseline also needs the difference to be more than noise: a paired
bootstrap over the test rows (sacreBLEU's for BLEU and chrF; the same resampling over per-example ROUGE) must give
p < ALPHA, with the new model on the right side of the baseline. Gates never pass by default: a gate that needs a
baseline that could not be scored makes the whole check "could not compare" (its own exit code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hfpipe.recipe.gates import Gate, parse_gate

OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


@dataclass
class GateResult:
    gate: str
    metric: str
    value: float | None
    threshold: float | None
    baseline: float | None
    margin: float | None          # how far past the threshold, in the metric's good direction (< 0: failed)
    passed: bool
    p_value: float | None = None
    reason: str = ""

    def describe(self) -> str:
        def num(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.4g}"

        text = f"{self.gate}: {self.metric} = {num(self.value)}"
        if self.baseline is not None:
            text += f", baseline {num(self.baseline)}"
        text += f", threshold {num(self.threshold)}, margin {num(self.margin)}"
        if self.p_value is not None:
            text += f", p = {self.p_value:.3g}"
        return text + (f" ({self.reason})" if self.reason else "")


@dataclass
class GateReport:
    """Everything a CI job needs to act on the check: the outcome, each gate, and where the baseline came from."""

    split: str
    results: list[GateResult] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    significance: float | None = None
    could_not_compare: str | None = None

    @property
    def passed(self) -> bool:
        return self.could_not_compare is None and all(r.passed for r in self.results)

    @property
    def status(self) -> str:
        if self.could_not_compare is not None:
            return "could_not_compare"
        return "passed" if self.passed else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "passed": self.passed, "split": self.split, "baseline": self.baseline,
                "significance": self.significance, "could_not_compare": self.could_not_compare,
                "results": [asdict(r) for r in self.results]}


def check_gates(gates: Sequence[Gate], metrics: dict[str, Any], *, split: str,
                baseline_metrics: dict[str, Any] | None = None, baseline_info: dict[str, Any] | None = None,
                p_values: dict[str, float] | None = None, significance: float | None = None,
                could_not_compare: str | None = None) -> GateReport:
    """Decide every gate. `p_values[metric]`: the paired bootstrap's p for candidate vs baseline (needed for the
    baseline gates when `significance` is set)."""
    report = GateReport(split=split, baseline=baseline_info, significance=significance,
                        could_not_compare=could_not_compare)
    for gate in gates:
        value = metrics.get(gate.metric)
        base = baseline_metrics.get(gate.metric) if baseline_metrics is not None and gate.needs_baseline else None
        if value is None:
            report.results.append(GateResult(gate.text, gate.metric, None, None, base, None, False,
                                             reason=f"the {split} metrics have no {gate.metric}"))
            continue
        if gate.needs_baseline and (base is None or not math.isfinite(base)):
            report.results.append(GateResult(gate.text, gate.metric, value, None, None, None, False,
                                             reason="no baseline value to compare with"))
            if report.could_not_compare is None:
                report.could_not_compare = f"gate {gate.text!r} needs a baseline {gate.metric}, and there is none"
            continue
        threshold = gate.threshold(base)
        margin = value - threshold if gate.higher_is_better else threshold - value
        passed = OPS[gate.op](value, threshold)
        result = GateResult(gate.text, gate.metric, value, threshold, base, margin, passed)
        if gate.needs_baseline and significance is not None:
            p = (p_values or {}).get(gate.metric)
            if p is None:
                result.passed = False
                result.reason = "no significance test for this metric"
                report.could_not_compare = report.could_not_compare or (
                    f"significance was asked for, but {gate.metric} could not be tested")
            else:
                result.p_value = p
                better = value > base if gate.higher_is_better else value < base  # type: ignore[operator]
                if not better:
                    result.passed, result.reason = False, "not better than the baseline"
                elif p >= significance:
                    result.passed = False
                    result.reason = f"better, but not significantly (p = {p:.3g}, needs < {significance:g})"
        if not result.passed and not result.reason:
            result.reason = "below the threshold" if gate.higher_is_better else "above the threshold"
        report.results.append(result)
    return report


def recipe_gates(recipe: Any) -> list[Gate]:
    """The recipe's gates: gates.checks, and evaluate.fail_below as absolute floors (its older form)."""
    checks = list(recipe.gates.checks) if recipe.gates is not None else []
    gates = [parse_gate(text, recipe.task) for text in checks]
    gates += [parse_gate(f"{name.removeprefix('eval_')}>={bound}") for name, bound in recipe.evaluate.fail_below.items()]
    return gates


def gate_split(recipe: Any, evaluated: Sequence[str]) -> str | None:
    """The split the gates read: gates.split, else test, else the first evaluated split."""
    if recipe.gates is not None and recipe.gates.split:
        return recipe.gates.split
    return "test" if "test" in evaluated else (evaluated[0] if evaluated else None)


def run_gates(recipe: Any, *, split: str, metrics: dict[str, Any], predictions: list[str], examples: list[Any],
              settings: Any, accelerator: Any, on_message: Any = None) -> GateReport:
    """Score the baseline where a gate needs one (on every process: re-scoring generates, sharded), test
    significance where asked, and decide every gate. A baseline that cannot be scored is recorded as "could not
    compare", never raised past the report, so the run's record still says what happened."""
    from hfpipe.errors import BaselineError

    gates = recipe_gates(recipe)
    cfg = recipe.gates
    baseline_metrics = baseline_info = p_values = None
    if cfg is not None and cfg.significance is not None and not any(g.needs_baseline for g in gates) and on_message:
        on_message("[yellow]significance is set, but no gate compares with the baseline: it has no effect[/yellow]")
    problem = None
    if any(g.needs_baseline for g in gates):
        from hfpipe.runs.baseline import score_baseline

        try:
            if on_message is not None:
                on_message(f"scoring the baseline {cfg.baseline} on the same {len(examples):,} {split} rows")
            base = score_baseline(cfg.baseline, recipe=recipe, split=split, examples=examples, settings=settings,
                                  accelerator=accelerator, from_card=cfg.baseline_from_card)
            baseline_metrics, baseline_info = base.metrics, base.info
            baseline_info["metrics"] = {k: v for k, v in base.metrics.items() if not isinstance(v, (list, dict))}
            if cfg.significance is not None and base.predictions is not None:
                from hfpipe.runs.significance import paired_bootstrap

                try:
                    p_values = paired_bootstrap(predictions, base.predictions, [e.target for e in examples],
                                                [g.metric for g in gates if g.needs_baseline])
                except ValueError as err:  # not the same rows
                    raise BaselineError(f"cannot test significance against the baseline: {err}") from None
        except BaselineError as err:
            problem = err.message + (f" ({err.hint})" if err.hint else "")
            baseline_info = {"source": cfg.baseline, "error": err.message}
    return check_gates(gates, metrics, split=split, baseline_metrics=baseline_metrics, baseline_info=baseline_info,
                       p_values=p_values, significance=cfg.significance if cfg is not None else None,
                       could_not_compare=problem)


def raise_for_gates(report: dict[str, Any] | None) -> None:
    """The CLI's last step: a failed check exits 8, a check that could not compare exits 9."""
    from hfpipe.errors import BaselineError, MetricGateError

    if not report or report.get("status") in ("passed", "not_checked"):
        return
    lines = [GateResult(**r).describe() for r in report.get("results", []) if not r.get("passed")]
    if report.get("status") == "could_not_compare":
        raise BaselineError(f"the gates could not compare with the baseline: {report.get('could_not_compare')}",
                            details=lines, hint="give a baseline that exists and can be scored (--baseline RUN_DIR "
                                                "or hub:NAMESPACE/NAME); nothing was pushed")
    n, total = len(lines), len(report.get("results", []))
    raise MetricGateError(f"{n} of {total} gate{'s' if total > 1 else ''} failed on the {report.get('split')} split",
                          details=lines, hint="the run directory holds the model and predictions for inspection; "
                                              "nothing was pushed")
