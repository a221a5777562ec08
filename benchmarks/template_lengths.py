"""Diagnostic: request length of the template catalog against the typed evaluation sets.

Prints, for the catalog's template inputs and for each typed set (realistic, peer96, peer20), the number of
requests, the mean and median length in words and the share of requests of 10 words or fewer. Lengths only: no
request text is printed. With --catalog DIR an older or candidate catalog is read instead, e.g. the 2146-template
round of issue 6:

    mkdir -p /tmp/c2146 && git archive 81cf43f ruvtrain_pipeline/catalog | tar -x -C /tmp/c2146
    python benchmarks/template_lengths.py --catalog /tmp/c2146/ruvtrain_pipeline/catalog

Usage: python benchmarks/template_lengths.py [--catalog DIR] [--peer-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from ruvtrain_pipeline.core.catalog import CATALOG_DIR, load_catalog
from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR
from ruvtrain_pipeline.core.evaluate import load_peer_sets, load_realistic
from ruvtrain_pipeline.core.tiers import routing_spec


def _row(name: str, texts: list[str]) -> str:
    words = [len(t.split()) for t in texts]
    short = sum(w <= 10 for w in words) / len(words)
    return f"| {name} | {len(words)} | {statistics.mean(words):.1f} | {statistics.median(words):g} | {short:.1%} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=CATALOG_DIR)
    ap.add_argument("--peer-dir", type=Path, default=DEFAULT_PEER_DIR)
    args = ap.parse_args()
    catalog = load_catalog(args.catalog)
    print("| requests | n | mean words | median words | 10 words or fewer |")
    print("|---|---:|---:|---:|---:|")
    print(_row(f"templates ({args.catalog})", [t.input for t in catalog.templates]))
    # the evaluation sets are read with the shipped catalog's labels, whatever catalog is measured
    shipped = load_catalog()
    spec = routing_spec(shipped)
    cat = {a: shipped.category_of(a) for a in shipped.agent_types}
    sets = [load_realistic(CATALOG_DIR / "eval" / "realistic.jsonl", cat, spec, shipped.complexities)]
    sets += load_peer_sets(args.peer_dir, cat, spec)
    for s in sets:
        print(_row(s.name, s.inputs))


if __name__ == "__main__":
    main()
