"""Scoring the router on held-out evaluation sets: agent-type and category accuracy, macro-F1, per-class precision and
recall, confusion matrices, model-tier accuracy, cost against always-opus and the oracle tier, under-tiering, and
hard-negative accuracy. Pure Python over route results; the evaluation_report asset runs the models and writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .jsonl import json_lines
from .tiers import tier_metrics

DIFFICULTY_TO_COMPLEXITY = {"easy": "Simple", "medium": "Moderate", "hard": "Complex"}
HEADLINE = ("agent_acc", "category_acc", "agent_macro_f1", "tier_acc", "under_tier_rate", "saving_vs_opus")


class EvalSetError(ValueError):
    """An evaluation file is malformed; the message names the file and line."""


@dataclass
class EvalSet:
    name: str
    source: str
    inputs: list[str]
    contexts: list[str | None]
    agent_type: list[str]
    category: list[str]
    complexity: list[str | None]  # None where the set has no complexity label (no tier metrics then)
    expected_model: list[str | None] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # row ids of the file (realistic, peer); empty for a split

    def __len__(self) -> int:
        return len(self.inputs)

    def head(self, n: int) -> EvalSet:
        """The first n rows as a set of the same name."""
        return EvalSet(self.name, self.source, self.inputs[:n], self.contexts[:n], self.agent_type[:n],
                       self.category[:n], self.complexity[:n], self.expected_model[:n], self.ids[:n])

    @property
    def has_tiers(self) -> bool:
        return all(m is not None for m in self.expected_model) and len(self) > 0


def _tier(routing: dict, category: str, complexity: str | None) -> str | None:
    return routing["table"][category][complexity] if complexity else None


def _check_labels(where: str, agent: Any, cx: Any, agent_category: dict[str, str],
                  complexities: Sequence[str]) -> None:
    if agent not in agent_category:
        raise EvalSetError(f"{where}: field 'agent_type' {agent!r} is not one of the catalog's agent types")
    if cx not in complexities:
        raise EvalSetError(f"{where}: field 'complexity' {cx!r} is not one of {list(complexities)}")


def load_realistic(path: Path | str, agent_category: dict[str, str], routing: dict,
                   complexities: Sequence[str]) -> EvalSet:
    """The hand-written realistic set (JSONL: input, optional context, agent_type, complexity)."""
    inputs, contexts, agents, cxs, ids = [], [], [], [], []
    for lineno, obj, error in json_lines(path):
        where = f"{path}:{lineno}"
        if error or not isinstance(obj, dict):
            raise EvalSetError(f"{where}: {error or 'expected a JSON object'}")
        text, agent, cx = obj.get("input"), obj.get("agent_type"), obj.get("complexity")
        if not isinstance(text, str) or not text.strip():
            raise EvalSetError(f"{where}: field 'input' must be a non-empty string")
        _check_labels(where, agent, cx, agent_category, complexities)
        inputs.append(text)
        ids.append(str(obj.get("id", lineno)))
        contexts.append(obj.get("context"))
        agents.append(agent)
        cxs.append(cx)
    cats = [agent_category[a] for a in agents]
    return EvalSet("realistic", str(path), inputs, contexts, agents, cats, cxs,
                   [_tier(routing, c, x) for c, x in zip(cats, cxs, strict=True)], ids)


def load_split(path: Path | str, agent_category: dict[str, str], name: str = "test") -> EvalSet:
    """A generated split (seed-format parquet with nested metadata; the seed's capitalized category names are
    mapped back to the catalog's through the agent type)."""
    df = pl.read_parquet(path)
    meta = df["metadata"]
    agents = meta.struct.field("agent_type").to_list()
    return EvalSet(name, str(path), df["input"].to_list(), df["context"].to_list(), agents,
                   [agent_category[a] for a in agents], meta.struct.field("complexity").to_list(),
                   meta.struct.field("expected_model").to_list())


def load_peer_sets(folder: Path | str, agent_category: dict[str, str], routing: dict) -> list[EvalSet]:
    """One set per peer file (read-only test data); difficulty easy/medium/hard maps to Simple/Moderate/Complex."""
    from .peer import load_peer_cases

    peer = load_peer_cases(folder)
    if peer is None:
        return []
    out = []
    for fname in sorted(peer["file"].unique().to_list()):
        part = peer.filter(pl.col("file") == fname)
        agents = part["expected_agent"].to_list()
        unknown = sorted({a for a in agents if a not in agent_category})
        if unknown:
            raise EvalSetError(f"{Path(folder) / fname}: unknown expected_agent {unknown}")
        cats = [agent_category[a] for a in agents]
        cxs = [DIFFICULTY_TO_COMPLEXITY.get(d) for d in part["difficulty"].to_list()]
        digits = "".join(ch for ch in fname if ch.isdigit())
        out.append(EvalSet(f"peer{digits or len(out)}", str(Path(folder) / fname), part["task"].to_list(),
                           [None] * len(part), agents, cats, cxs,
                           [_tier(routing, c, x) for c, x in zip(cats, cxs, strict=True)], part["id"].to_list()))
    return out


def load_second_annotation(path: Path | str, es: EvalSet, agent_category: dict[str, str],
                           complexities: Sequence[str]) -> list[tuple[str, str]]:
    """A second, blind annotation of `es` (JSONL: id, agent_type, complexity; one row per id of the set), as
    (agent type, complexity) in the set's row order."""
    labels: dict[str, tuple[str, str]] = {}
    for lineno, obj, error in json_lines(path):
        where = f"{path}:{lineno}"
        if error or not isinstance(obj, dict):
            raise EvalSetError(f"{where}: {error or 'expected a JSON object'}")
        rid, agent, cx = str(obj.get("id")), obj.get("agent_type"), obj.get("complexity")
        _check_labels(where, agent, cx, agent_category, complexities)
        if rid in labels:
            raise EvalSetError(f"{where}: id {rid!r} labelled twice")
        labels[rid] = (agent, cx)
    missing = [i for i in es.ids if i not in labels]
    extra = sorted(set(labels) - set(es.ids))
    if missing or extra or not es.ids:
        raise EvalSetError(f"{path}: does not label the rows of {es.name} ({es.source}): "
                           f"missing ids {missing[:5]}, unknown ids {extra[:5]}")
    return [labels[i] for i in es.ids]


def annotator_metrics(es: EvalSet, labels: Sequence[tuple[str, str]], agent_category: dict[str, str],
                      routing: dict) -> dict:
    """The second annotator's labels scored against the set's as if they were routes: agent type, category and
    complexity accuracy, and the tier the routing table gives them (tier accuracy, under-tiering, cost)."""
    n = len(es)
    out = {"n": n,
           "agent_acc": round(sum(a == t for (a, _), t in zip(labels, es.agent_type, strict=True)) / n, 4),
           "category_acc": round(sum(agent_category[a] == c for (a, _), c in zip(labels, es.category, strict=True))
                                 / n, 4)}
    if es.has_tiers:
        out["complexity_acc"] = round(sum(x == t for (_, x), t in zip(labels, es.complexity, strict=True)) / n, 4)
        out |= tier_metrics([_tier(routing, agent_category[a], x) for a, x in labels], es.expected_model, routing)
    return out


def classification_metrics(truth: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 over the labels present in truth, per-class precision/recall/F1, and the confusion
    matrix (rows = truth, columns = prediction, plus a final "none" column for unrouted requests)."""
    index = {lab: i for i, lab in enumerate(labels)}
    conf = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for t, p in zip(truth, pred, strict=True):
        conf[index[t], index.get(p, len(labels)) if p is not None else len(labels)] += 1
    per_class, f1s = {}, []
    for lab, i in index.items():
        tp = int(conf[i, i])
        support = int(conf[i].sum())
        predicted = int(conf[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[lab] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                          "support": support}
        if support:
            f1s.append(f1)
    n = len(truth)
    return {"accuracy": round(float(np.trace(conf[:, : len(labels)]) / n), 4) if n else 0.0,
            "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0,
            "per_class": per_class, "labels": list(labels), "confusion": conf.tolist()}


def score_routes(eval_set: EvalSet, agent_types: Sequence[str | None], models: Sequence[str | None],
                 agent_labels: Sequence[str], agent_category: dict[str, str], categories: Sequence[str],
                 routing: dict, complexities: Sequence[str] | None = None) -> dict:
    """Every metric of one (set, mode/backend) pair from the routed agent types and tiers (and, when given and the
    set has complexity labels, the routed complexities: complexity_acc)."""
    agent = classification_metrics(eval_set.agent_type, agent_types, agent_labels)
    pred_cats = [agent_category[a] if a else None for a in agent_types]
    cat = classification_metrics(eval_set.category, pred_cats, categories)
    out: dict[str, Any] = {
        "n": len(eval_set), "agent_acc": agent["accuracy"], "agent_macro_f1": agent["macro_f1"],
        "category_acc": cat["accuracy"], "category_macro_f1": cat["macro_f1"],
        "coverage": round(sum(a is not None for a in agent_types) / max(len(eval_set), 1), 4),
        "agent": agent, "category": cat,
    }
    if eval_set.has_tiers:
        out |= tier_metrics(models, eval_set.expected_model, routing)  # type: ignore[arg-type]
        if complexities is not None:
            out["complexity_acc"] = round(sum(p == g for p, g in zip(complexities, eval_set.complexity, strict=True))
                                          / max(len(eval_set), 1), 4)
    return out


def hard_negative_accuracy(anchor_emb: np.ndarray, positive: Sequence[str], negative: Sequence[str],
                           agent_vectors: np.ndarray, agent_labels: Sequence[str]) -> float:
    """Share of triplets where the anchor is closer to its positive agent than to the negative agent, with agents
    represented by `agent_vectors` (the router's prototypes, or description embeddings for the zero-shot baseline)."""
    if len(positive) == 0:
        return 0.0
    index = {a: i for i, a in enumerate(agent_labels)}
    sims = anchor_emb @ agent_vectors.T
    pos = sims[np.arange(len(positive)), [index[p] for p in positive]]
    neg = sims[np.arange(len(negative)), [index[n] for n in negative]]
    return round(float((pos > neg).mean()), 4)


def zero_shot_agents(emb: np.ndarray, description_emb: np.ndarray, agent_labels: Sequence[str]) -> list[str]:
    """The untrained baseline: each request goes to the agent whose catalog description it is closest to."""
    return [agent_labels[i] for i in (emb @ description_emb.T).argmax(-1)]


def flat_headline(results: dict[str, dict[str, dict]]) -> dict[str, float]:
    """{set: {variant: metrics}} -> {"<set>.<variant>.<metric>": value} for the headline metrics (numbers only)."""
    flat = {}
    for set_name, variants in results.items():
        for variant, m in variants.items():
            for key in HEADLINE:
                if isinstance(m.get(key), int | float):
                    flat[f"{set_name}.{variant}.{key}"] = float(m[key])
    return flat


def regressions(current: dict[str, float], previous: dict[str, float], margin: float) -> list[str]:
    """Metrics that got worse than the previous report by more than `margin` (under-tiering: higher is worse)."""
    out = []
    for key, now in sorted(current.items()):
        if key not in previous:
            continue
        before = previous[key]
        worse = now - before if key.endswith("under_tier_rate") else before - now
        if worse > margin:
            out.append(f"{key}: {before:.4f} -> {now:.4f}")
    return out
