"""Experiment: how reliable are the evaluation labels the issue-6 goals are measured against?

A second annotator labelled the realistic set and the 96 peer cases blind (request text only, plus the agent
descriptions of agents.yaml and the complexity definition of templates/AUTHORING.md; files in
benchmarks/annotations/, protocol in its README). This script compares those labels with the sets' own labels the
same way the evaluation report scores the router: agent type (13-way), category (5-way), complexity and the tier the
routing table gives (category, complexity), with its under-tiering and cost saving vs always-opus. The second
annotator, read as a router, is the agreement a careful person reaches: a goal above it measures who wrote the labels,
not routing skill.

With --router (default data/trained_adapter) the trained router's hybrid routes are scored as well, on all rows and
on the rows where both annotations agree.

Usage: python benchmarks/label_agreement.py [--router data/trained_adapter | --router ''] [--peer-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from ruvtrain_pipeline.core.catalog import CATALOG_DIR, load_catalog
from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR
from ruvtrain_pipeline.core.evaluate import DIFFICULTY_TO_COMPLEXITY, routing_spec, tier_metrics

ANNOTATIONS = Path(__file__).parent / "annotations"


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{lineno}: {e}") from e
    return rows


def cohen_kappa(a: list[str], b: list[str]) -> float:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def gold_rows(name: str, peer_dir: Path) -> list[dict]:
    """{id, input, context, agent_type, complexity} of a set, in file order."""
    if name == "realistic":
        return [{"id": r["id"], "input": r["input"], "context": r.get("context"), "agent_type": r["agent_type"],
                 "complexity": r["complexity"]} for r in read_jsonl(CATALOG_DIR / "eval" / "realistic.jsonl")]
    return [{"id": r["id"], "input": r["task"], "context": None, "agent_type": r["expected_agent"],
             "complexity": DIFFICULTY_TO_COMPLEXITY[r["difficulty"]]}
            for r in read_jsonl(peer_dir / "ruvector_routing_benchmark_96.jsonl")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--router", default="data/trained_adapter", help="trained router folder; '' to skip")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR)
    ap.add_argument("--annotations", default=str(ANNOTATIONS), help="folder with the second annotator's files")
    args = ap.parse_args()
    catalog = load_catalog()
    spec = routing_spec(catalog)
    cat = {a: catalog.category_of(a) for a in catalog.agent_types}

    def tier(agent: str, cx: str) -> str:
        return catalog.model_for(cat[agent], cx)

    router = None
    if args.router:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from ruvtrain_pipeline.core.router import Router

        router = Router(Path(args.router))

    print("| set | n | labeller | agent acc | category acc | complexity acc | complexity kappa | tier acc | "
          "under-tier | saving vs opus | oracle saving |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, file in (("realistic", "realistic_second.jsonl"), ("peer96", "peer96_second.jsonl")):
        gold = gold_rows(name, Path(args.peer_dir))
        second = {r["id"]: r for r in read_jsonl(Path(args.annotations) / file)}
        missing = [g["id"] for g in gold if g["id"] not in second]
        if missing or len(second) != len(gold):
            raise SystemExit(f"{Path(args.annotations) / file}: ids do not match {name} (missing {missing[:5]})")
        for r in second.values():
            if r["agent_type"] not in cat or r["complexity"] not in catalog.complexities:
                raise SystemExit(f"{Path(args.annotations) / file}: id {r['id']}: bad label {r}")
        expected = [tier(g["agent_type"], g["complexity"]) for g in gold]
        labellers = {"second annotator": [(second[g["id"]]["agent_type"], second[g["id"]]["complexity"],
                                           tier(second[g["id"]]["agent_type"], second[g["id"]]["complexity"]))
                                          for g in gold]}
        if router is not None:
            routes = router.route_many([(g["input"], g["context"]) for g in gold])
            labellers["router (hybrid)"] = [(r.agent_type, r.complexity, r.model) for r in routes]
        agree = [i for i, g in enumerate(gold) if second[g["id"]]["agent_type"] == g["agent_type"]]
        agree_cx = [i for i, g in enumerate(gold) if second[g["id"]]["complexity"] == g["complexity"]]
        for who, preds in labellers.items():
            for subset, rows in (("all", list(range(len(gold)))), ("agent agreed", agree),
                                 ("complexity agreed", agree_cx)):
                if subset != "all" and who == "second annotator":
                    continue
                g = [gold[i] for i in rows]
                p = [preds[i] for i in rows]
                n = len(rows)
                t = tier_metrics([x[2] for x in p], [expected[i] for i in rows], spec)
                acc = sum(x[0] == y["agent_type"] for x, y in zip(p, g, strict=True)) / n
                cacc = sum(cat[x[0]] == cat[y["agent_type"]] for x, y in zip(p, g, strict=True)) / n
                cx = [x[1] for x in p]
                cxacc = sum(a == y["complexity"] for a, y in zip(cx, g, strict=True)) / n
                kappa = cohen_kappa(cx, [y["complexity"] for y in g])
                label = who if subset == "all" else f"{who}, rows where the annotations agree on " \
                    f"{subset.split()[0]}"
                print(f"| {name} | {n} | {label} | {acc:.3f} | {cacc:.3f} | {cxacc:.3f} | {kappa:.3f} | "
                      f"{t['tier_acc']:.3f} | {t['under_tier_rate']:.3f} | {t['saving_vs_opus']:.3f} | "
                      f"{t['oracle_saving_vs_opus']:.3f} |")


if __name__ == "__main__":
    main()
