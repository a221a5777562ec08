"""Champion / challenger: the promotion gate (a challenger replaces the production router only when it is not worse
beyond a margin on any gated metric of any gated set, both scored in the same evaluation run) and the A/B tables
(per set, per metric, per class) the evaluation report shows whenever a champion exists. Pure Python over the
evaluation's metric dictionaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# metric -> direction: "higher" is better, or "lower" is better
GATE_METRICS = {"category_acc": "higher", "agent_acc": "higher", "tier_acc": "higher", "under_tier_rate": "lower"}
AB_METRICS = ("agent_acc", "category_acc", "agent_macro_f1", "coverage", "tier_acc", "under_tier_rate",
              "over_tier_rate", "saving_vs_opus")
LOWER_IS_BETTER = {"under_tier_rate", "over_tier_rate"}
GATE_HEADER = ["set", "metric", "champion", "challenger", "delta", "allowed", "verdict"]


# evaluation sets drawn from dataset_splits: comparable between champion and challenger only when both trained on the
# same splits (another catalog or seed redraws the template-disjoint test split, which may then hold templates the
# champion trained on and inflate its figures)
SPLIT_SETS = ("test",)


def comparable_gate_sets(gate_sets: Sequence[str], champion_splits: str | None,
                         challenger_splits: str | None) -> tuple[list[str], str | None]:
    """(the gate sets to compare on, a note saying what was dropped and why, or None). The sets of SPLIT_SETS stay
    only when the champion's and the challenger's dataset_splits digests are known and equal."""
    if champion_splits and champion_splits == challenger_splits:
        return list(gate_sets), None
    dropped = [s for s in gate_sets if s in SPLIT_SETS]
    if not dropped:
        return list(gate_sets), None
    note = (f"{', '.join(dropped)} left out of the gate: the champion was trained on dataset_splits "
            f"{champion_splits or '(not recorded)'}, the challenger on {challenger_splits or '(not recorded)'}, so the "
            "held-out split may hold the champion's training templates")
    return [s for s in gate_sets if s not in SPLIT_SETS], note


@dataclass
class Decision:
    promote: bool
    reason: str
    rows: list[list[Any]] = field(default_factory=list)  # GATE_HEADER rows, one per (set, gated metric)
    failures: list[str] = field(default_factory=list)  # "set metric: champion -> challenger (allowed ...)"

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason, "header": GATE_HEADER, "rows": self.rows,
                "failures": self.failures}


def decide(champion: Mapping[str, Mapping[str, Any]] | None, challenger: Mapping[str, Mapping[str, Any]],
           margins: Mapping[str, float], gate_sets: Sequence[str]) -> Decision:
    """`champion` / `challenger`: {set: metrics} from the same evaluation run (None = there is no champion yet).
    The challenger is promoted when, on every gated set both were scored on, no gated metric is worse than the
    champion's by more than its margin (accuracies may drop by at most the margin, under-tiering may rise by at most
    the margin). A set or metric that only one side has is not compared; nothing compared at all is a rejection."""
    if champion is None:
        return Decision(True, "no champion yet: the first exported router goes to production")
    unknown = sorted(set(margins) - set(GATE_METRICS))
    if unknown:
        raise ValueError(f"margins for unknown metrics {unknown}; gated metrics are {list(GATE_METRICS)}")
    rows, failures = [], []
    for set_name in gate_sets:
        old, new = champion.get(set_name), challenger.get(set_name)
        if old is None or new is None:
            continue
        for metric, direction in GATE_METRICS.items():
            a, b = old.get(metric), new.get(metric)
            if not isinstance(a, int | float) or not isinstance(b, int | float):
                continue
            margin = float(margins.get(metric, 0.0))
            worse_by = (a - b) if direction == "higher" else (b - a)
            ok = worse_by <= margin + 1e-12
            allowed = f"{'>=' if direction == 'higher' else '<='} {round(a - margin if direction == 'higher' else a + margin, 4)}"
            rows.append([set_name, metric, a, b, round(b - a, 4), allowed, "ok" if ok else "WORSE"])
            if not ok:
                failures.append(f"{set_name} {metric}: {a} -> {b} (allowed {allowed})")
    if not rows:
        return Decision(False, f"nothing to compare: neither side has gated metrics on the gate sets "
                               f"{list(gate_sets)}", rows, failures)
    if failures:
        return Decision(False, f"challenger is worse than the champion beyond the margin on {len(failures)} of "
                               f"{len(rows)} gated comparison(s): " + "; ".join(failures), rows, failures)
    return Decision(True, f"challenger is not worse than the champion beyond the margin on any of {len(rows)} gated "
                          "comparison(s)", rows, failures)


def ab_metric_rows(champion: Mapping[str, Mapping[str, Any]], challenger: Mapping[str, Mapping[str, Any]]) -> list[list]:
    """[set, metric, champion, challenger, delta, better] for every set both were scored on."""
    rows = []
    for set_name, new in challenger.items():
        old = champion.get(set_name)
        if old is None:
            continue
        for metric in AB_METRICS:
            a, b = old.get(metric), new.get(metric)
            if not isinstance(a, int | float) or not isinstance(b, int | float):
                continue
            delta = round(b - a, 4)
            better = "=" if delta == 0 else ("challenger" if (delta < 0) == (metric in LOWER_IS_BETTER) else "champion")
            rows.append([set_name, metric, a, b, delta, better])
    return rows


def ab_class_rows(champion: Mapping[str, Mapping[str, Any]], challenger: Mapping[str, Mapping[str, Any]],
                  labels: Sequence[str]) -> list[list]:
    """[set, agent type, support, champion P/R/F1, challenger P/R/F1, delta F1] from the per-class agent metrics."""
    rows = []
    for set_name, new in challenger.items():
        old = champion.get(set_name)
        if old is None or "agent" not in old or "agent" not in new:
            continue
        for label in labels:
            a, b = old["agent"]["per_class"].get(label), new["agent"]["per_class"].get(label)
            if a is None or b is None or not b.get("support"):
                continue
            rows.append([set_name, label, b["support"], a["precision"], a["recall"], a["f1"], b["precision"],
                         b["recall"], b["f1"], round(b["f1"] - a["f1"], 4)])
    return rows


AB_METRIC_HEADER = ["set", "metric", "champion", "challenger", "delta", "better"]
AB_CLASS_HEADER = ["set", "agent type", "support", "champion P", "champion R", "champion F1", "challenger P",
                   "challenger R", "challenger F1", "delta F1"]
