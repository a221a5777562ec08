"""Experiment: how reliable are the evaluation labels the issue-6 goals are measured against?

A second annotator labelled the realistic set and the 96 peer cases blind (request text only, plus the agent
descriptions of agents.yaml and the complexity definition of templates/AUTHORING.md; files and protocol in
ruvtrain_pipeline/catalog/eval/second_annotation/). This script scores those labels against the sets' own labels the
way the evaluation report scores the router (core/evaluate.py annotator_metrics): agent type (13-way), category
(5-way), complexity (with Cohen's kappa here) and the tier the routing table gives (category, complexity), with its
under-tiering and cost saving vs always-opus. The second annotator, read as a router, is the agreement a careful
reader reaches: a goal above it measures who wrote the labels, not routing skill.

With --router (default data/trained_adapter) the trained router's hybrid routes are scored as well, on all rows and
on the rows where both annotations agree (on agent type; on complexity).

Usage: python benchmarks/label_agreement.py [--router data/trained_adapter | --router ''] [--peer-dir DIR]
       [--annotations DIR]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from ruvtrain_pipeline.core.catalog import CATALOG_DIR, load_catalog
from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR
from ruvtrain_pipeline.core.evaluate import (
    EvalSet,
    annotator_metrics,
    load_peer_sets,
    load_realistic,
    load_second_annotation,
)
from ruvtrain_pipeline.core.tiers import routing_spec, tier_metrics

ANNOTATIONS = CATALOG_DIR / "eval" / "second_annotation"


def cohen_kappa(a: list[str], b: list[str]) -> float:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def subset(es: EvalSet, rows: list[int]) -> EvalSet:
    def pick(values: list) -> list:
        return [values[i] for i in rows]

    return EvalSet(es.name, es.source, pick(es.inputs), pick(es.contexts), pick(es.agent_type), pick(es.category),
                   pick(es.complexity), pick(es.expected_model), pick(es.ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--router", default="data/trained_adapter", help="trained router folder; '' to skip")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR)
    ap.add_argument("--annotations", default=str(ANNOTATIONS), help="folder with <set>.jsonl second labels")
    args = ap.parse_args()
    catalog = load_catalog()
    spec = routing_spec(catalog)
    cat = {a: catalog.category_of(a) for a in catalog.agent_types}
    sets = [load_realistic(CATALOG_DIR / "eval" / "realistic.jsonl", cat, spec, catalog.complexities)]
    sets += [s for s in load_peer_sets(args.peer_dir, cat, spec) if s.name == "peer96"]

    router = None
    if args.router:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from ruvtrain_pipeline.core.router import Router

        router = Router(Path(args.router))

    print("| set | n | labeller | agent acc | category acc | complexity acc | complexity kappa | tier acc | "
          "under-tier | saving vs opus | oracle saving |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for es in sets:
        second = load_second_annotation(Path(args.annotations) / f"{es.name}.jsonl", es, cat, catalog.complexities)
        labellers = {"second annotator": second}
        if router is not None:
            routes = router.route_many(list(zip(es.inputs, es.contexts, strict=True)))
            labellers["router (hybrid)"] = [(r.agent_type, r.complexity) for r in routes]
        subsets = {"all": list(range(len(es))),
                   "agent type": [i for i, (a, _) in enumerate(second) if a == es.agent_type[i]],
                   "complexity": [i for i, (_, c) in enumerate(second) if c == es.complexity[i]]}
        for who, labels in labellers.items():
            for name, rows in subsets.items():
                if name != "all" and who == "second annotator":
                    continue
                part, lab = subset(es, rows), [labels[i] for i in rows]
                m = annotator_metrics(part, lab, cat, spec)
                if who == "router (hybrid)":
                    # the router's tiers come from its own tier policy, not from the routing table at its labels
                    m |= tier_metrics([routes[i].model for i in rows], part.expected_model, spec)
                kappa = cohen_kappa([x for _, x in lab], part.complexity)
                label = who if name == "all" else f"{who}, rows where the annotations agree on {name}"
                print(f"| {es.name} | {m['n']} | {label} | {m['agent_acc']:.3f} | {m['category_acc']:.3f} | "
                      f"{m['complexity_acc']:.3f} | {kappa:.3f} | {m['tier_acc']:.3f} | {m['under_tier_rate']:.3f} | "
                      f"{m['saving_vs_opus']:.3f} | {m['oracle_saving_vs_opus']:.3f} |")


if __name__ == "__main__":
    main()
