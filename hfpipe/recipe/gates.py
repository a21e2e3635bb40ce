"""The language of gates, as the recipe and `--gate` write them (what gates do is hfpipe.runs.gates):

    METRIC OP NUMBER                       bleu>=25
    METRIC OP baseline[+N | -N | *F]       bleu>=baseline+0.5, rougeL>=baseline*1.01, ter<=baseline-1

OP is one of >=, >, <=, <; it also gives the metric's direction (>= and >: higher is better).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hfpipe.errors import RecipeError

_GATE = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w-]*)\s*(?P<op>>=|<=|>|<)\s*(?P<rhs>.+?)\s*$")
_RELATIVE = re.compile(r"^baseline\s*(?:(?P<kind>[-+*])\s*(?P<amount>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))?$")
_NUMBER = re.compile(r"^[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?$")

# The metrics a paired bootstrap can test (hfpipe.runs.significance).
TESTABLE = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum")



@dataclass(frozen=True)
class Gate:
    """One parsed gate: `metric op value` or `metric op baseline[+|-|* amount]`."""

    text: str
    metric: str
    op: str
    value: float | None = None       # an absolute threshold
    relative: str | None = None      # "+", "-", "*" or "" (the baseline itself), for a baseline gate
    amount: float = 0.0

    @property
    def needs_baseline(self) -> bool:
        return self.relative is not None

    @property
    def higher_is_better(self) -> bool:
        return self.op in (">=", ">")

    def threshold(self, baseline: float | None) -> float:
        if self.relative is None:
            return float(self.value)  # type: ignore[arg-type]
        assert baseline is not None  # callers check needs_baseline first
        if self.relative == "+":
            return baseline + self.amount
        if self.relative == "-":
            return baseline - self.amount
        if self.relative == "*":
            return baseline * self.amount
        return baseline


def parse_gate(text: str, task: str | None = None) -> Gate:
    """Parse one gate expression; raise a RecipeError that says what is wrong and shows the forms."""
    forms = "write METRIC OP NUMBER or METRIC OP baseline[+N | -N | *F], e.g. bleu>=25, bleu>=baseline+0.5"
    match = _GATE.match(text or "")
    if not match:
        raise RecipeError(f"cannot read the gate {text!r}", hint=forms)
    metric, op, rhs = match["metric"], match["op"], match["rhs"]
    if task is not None:
        from hfpipe.tasks.metrics import check_metric_name

        problem = check_metric_name(task, metric)
        if problem:
            raise RecipeError(f"gate {text!r}: {problem}", hint=forms)
    metric = metric.removeprefix("eval_")
    if _NUMBER.match(rhs):
        return Gate(text.strip(), metric, op, value=float(rhs))
    relative = _RELATIVE.match(rhs)
    if relative:
        return Gate(text.strip(), metric, op, relative=relative["kind"] or "",
                    amount=float(relative["amount"]) if relative["amount"] else 0.0)
    raise RecipeError(f"gate {text!r}: cannot read {rhs!r} as a number or a baseline expression", hint=forms)
