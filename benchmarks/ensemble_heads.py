"""Experiment: an ensemble of trained adapters. Each member routes with its own shipped heads; the ensemble averages
the members' agent-type and complexity probabilities, calibrates its tier confidence on validation exactly as
trained_adapter does (each request form on its own), and is scored on the test split, the realistic set and the
peer sets beside every member alone. An experiment record, not part of the pipeline: it answers "would N
adapters (N encoder passes per request) route better than one?" from adapters that are already trained.

Members are data folders that hold a `trained_adapter` (e.g. `data`, or a scratch RUVTRAIN_DATA_DIR that
materialized trained_adapter with another seed). Validation and test come from the first member's
`dataset_splits`: give members trained on the same splits, or the tier calibration sees rows another member
trained on.

Usage: python benchmarks/ensemble_heads.py --member data --member /tmp/seed43 [--cache .cache/ensemble] [--views]
Embeddings are cached per member in --cache (about 2 min per member on 2 CPU cores the first time).

--views [both|agent] also scores view averaging: a request that carries a context is routed on the mean of the
probabilities (with `agent`, of the agent-type head only) of its two views (request + context, as served, and the
request alone); a request without one is unchanged. The tier confidence is calibrated with the averaging on
(validation as written = averaged views; without context = the bare request), so its test-split and tier figures
are as clean as the plain router's. A router trained with `view_average` (trained_adapter, on by default) routes as
`--views agent` does: `--member data --views agent` reproduces its evaluation report's hybrid figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR


def load_sets(data: Path, peer_dir: Path, labels: dict) -> dict[str, dict]:
    """name -> {texts, agent, complexity, model}: validation (with and without context, as the tier calibration
    sees it), the test split, the realistic set and the peer sets."""
    import polars as pl

    from ruvtrain_pipeline.core.catalog import CATALOG_DIR
    from ruvtrain_pipeline.core.evaluate import load_peer_sets, load_realistic
    from ruvtrain_pipeline.core.router import request_text
    from ruvtrain_pipeline.core.train.trainer import flatten_examples

    sets: dict[str, dict] = {}
    for split, forms in (("validation", ("full", "bare")), ("test", ("full",))):
        df = flatten_examples(pl.read_parquet(data / "dataset_splits" / "data" / f"{split}.parquet"))
        texts, n = [], 0
        for form in forms:
            texts += ([request_text(i, c) for i, c in zip(df["input"], df["context"], strict=True)]
                      if form == "full" else df["input"].to_list())
            n += 1
        sets[split] = {"texts": texts, "bare": df["input"].to_list() * n, "agent": df["agent_type"].to_list() * n,
                       "complexity": df["complexity"].to_list() * n, "model": df["expected_model"].to_list() * n}
    routing = {"table": labels["routing_table"]}
    evals = [load_realistic(CATALOG_DIR / "eval" / "realistic.jsonl", labels["agent_category"], routing,
                            labels["complexities"])]
    evals += load_peer_sets(peer_dir, labels["agent_category"], routing)  # none when the folder is absent
    for es in evals:
        sets[es.name] = {"texts": [request_text(i, c) for i, c in zip(es.inputs, es.contexts, strict=True)],
                         "bare": list(es.inputs), "agent": list(es.agent_type), "complexity": list(es.complexity),
                         "model": list(es.expected_model)}
    return sets


def cached_embeddings(data: Path, router, name: str, texts: list[str], cache: Path) -> np.ndarray:
    """The router's embeddings of `texts`, cached in `cache` under a key of the encoder's adapter weights (what the
    embeddings depend on) and the texts."""
    digest = hashlib.sha256()
    for f in sorted((data / "trained_adapter").rglob("*")):
        if f.is_file() and "adapter" in f.relative_to(data / "trained_adapter").parts:  # every member's
            digest.update(f.name.encode() + f.read_bytes())
    key = hashlib.sha256((digest.hexdigest() + "\n".join(texts)).encode()).hexdigest()[:16]
    path = cache / f"{name}-{key}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, router.embed(texts))
    return np.load(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--member", action="append", required=True, help="data folder holding a trained_adapter")
    ap.add_argument("--cache", default=".cache/ensemble")
    ap.add_argument("--keywords", default=None, help="keyword rules file (default: the catalog's keywords.yaml); "
                    "e.g. an earlier commit's, to score a router trained before the rules were re-derived")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR, help="read-only peer test cases (skipped if absent)")
    ap.add_argument("--views", nargs="?", const="both", choices=["both", "agent"], default=None,
                    help="also score view averaging (see the module docstring); 'agent': average the agent-type "
                    "probabilities only, complexity from the view as served")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from head_variants import score_line  # benchmarks/ is the script's folder, first on sys.path

    from ruvtrain_pipeline.core.catalog import Catalog
    from ruvtrain_pipeline.core.router import Router, _softmax
    from ruvtrain_pipeline.core.tiers import calibrate_tier_confidence, routing_spec

    data = [Path(m) for m in args.member]
    kw = {"keywords": args.keywords} if args.keywords else {}
    # each member reads the served view alone; --views does the averaging here (a router trained with view_average
    # does the same as --views agent)
    members = [Router(d / "trained_adapter", tier_confidence=None, view_average=False, **kw) for d in data]
    base = members[0]
    for d, m in zip(data, members, strict=True):
        if m.labels["agent_types"] != base.labels["agent_types"] or m.labels["complexities"] != base.labels[
                "complexities"]:
            raise SystemExit(f"{d}/trained_adapter: its label order differs from {data[0]}/trained_adapter")
    spec = routing_spec(Catalog.from_dict(json.loads((data[0] / "seed_templates" / "catalog.json").read_text())))
    sets = load_sets(data[0], Path(args.peer_dir), base.labels)
    cat_of = base.labels["agent_category"]

    emb = {(i, name): cached_embeddings(data[i], members[i], name, sets[name]["texts"], Path(args.cache))
           for i in range(len(members)) for name in sets}
    if args.views:
        emb |= {(i, name + ":bare"): cached_embeddings(data[i], members[i], name + "-bare", sets[name]["bare"],
                                                       Path(args.cache))
                for i in range(len(members)) for name in sets}

    class Ensemble(Router):
        """Averages the chosen members' probabilities; `use` names the set whose cached embeddings to read."""

        picked: list[int]
        use: str
        views: str | None

        def heads(self, e: np.ndarray, texts: list[str], views=None) -> tuple[np.ndarray, np.ndarray]:
            outs = [members[i].heads(emb[i, self.use], texts) for i in self.picked]
            cx = np.mean([_softmax(c) for _, c in outs], axis=0)
            if self.views:
                # a request with a context: its bare view too (same text when there is no context: no change)
                bare = sets[self.use]["bare"]
                outs += [members[i].heads(emb[i, self.use + ":bare"], bare) for i in self.picked]
                if self.views == "both":
                    cx = np.mean([_softmax(c) for _, c in outs], axis=0)
            agent = np.mean([a for a, _ in outs], axis=0)
            return agent, np.log(np.clip(cx, 1e-12, None))  # log-probabilities: softmax gives the average back

    combos = [[i] for i in range(len(members))] + ([list(range(len(members)))] if len(members) > 1 else [])
    for picked, views in [(c, v) for c in combos for v in ([None, args.views] if args.views else [None])]:
        router = Ensemble.__new__(Ensemble)
        router.__dict__.update(base.__dict__)
        router.picked, router.use, router.views = picked, "validation", views
        val = sets["validation"]
        dummy = np.zeros((len(val["texts"]), 1), np.float32)
        half = len(val["texts"]) // 2  # load_sets: every row as written, then every row without its context
        policy = calibrate_tier_confidence(router, val["texts"], dummy, val["model"], spec, 0.02, 0.005,
                                           confidence_level=0.95,
                                           groups=["as written"] * half + ["without context"] * half)
        tau = policy["tier_confidence"]
        print(f"== {' + '.join(str(data[i]) for i in picked)}{f' (views averaged: {views})' if views else ''}: "
              f"calibrated "
              f"tier confidence {tau}", flush=True)
        for name in ("test", "realistic", "peer96", "peer20"):
            if name not in sets:
                continue
            router.use, m = name, sets[name]
            rs = router.route_embedded(m["texts"], np.zeros((len(m["texts"]), 1), np.float32), "hybrid",
                                       tier_confidence=tau)
            print(score_line(name, rs, m, cat_of, spec), flush=True)


if __name__ == "__main__":
    main()
