"""Experiment: does the validation split's under-tiering predict the under-tiering on typed requests? For a trained
router and a grid of tier confidences, prints the validation under-tiering (both request forms, as the tier
calibration sees it; and each form alone: as written with its context, and without it), one-sided 95 % bounds (Wilson
on the mix of both forms; the larger of the two forms' Wilson bounds, what `trained_adapter` compares with the target
with `under_tier_each_form`; and a template-level cluster bootstrap of the mix: validation rows from one template are
not independent samples, so the bootstrap resamples templates), beside under-tiering / saving vs opus / tier
accuracy on the realistic set and the peer sets at the same confidence. Hybrid router with the run's own heads.

Usage: python benchmarks/tier_transfer.py [--data data] [--cache .cache/ensemble] [--draws 2000]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR

GRID = (0.70, 0.75, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data", help="data folder holding trained_adapter, dataset_splits, seed_templates")
    ap.add_argument("--cache", default=".cache/ensemble")
    ap.add_argument("--draws", type=int, default=2000, help="bootstrap resamples of the validation templates")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR, help="read-only peer test cases (skipped if absent)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import polars as pl
    from ensemble_heads import cached_embeddings, load_sets  # benchmarks/ is the script's folder

    from ruvtrain_pipeline.core.catalog import Catalog
    from ruvtrain_pipeline.core.router import Router
    from ruvtrain_pipeline.core.tiers import routing_spec, tier_metrics, under_tier_upper_bound
    from ruvtrain_pipeline.core.train.trainer import flatten_examples

    data = Path(args.data)
    router = Router(data / "trained_adapter", tier_confidence=None, view_average=False)  # the served view alone
    spec = routing_spec(Catalog.from_dict(json.loads((data / "seed_templates" / "catalog.json").read_text())))
    sets = load_sets(data, Path(args.peer_dir), router.labels)
    emb = {name: cached_embeddings(data, router, name, s["texts"], Path(args.cache)) for name, s in sets.items()}
    val = flatten_examples(pl.read_parquet(data / "dataset_splits" / "data" / "validation.parquet"))
    templates = val["template_id"].to_list() * (len(sets["validation"]["texts"]) // val.height)  # both forms
    ids = {t: i for i, t in enumerate(sorted(set(templates)))}
    group = np.array([ids[t] for t in templates])
    draws = np.random.default_rng(0).integers(0, len(ids), size=(args.draws, len(ids)))
    size = np.bincount(group, minlength=len(ids))[draws].sum(1)
    order = {m: i for i, m in enumerate(spec["tier_order"])}

    def routed(name: str, tau: float) -> list:
        s = sets[name]
        return [r.model for r in router.route_embedded(s["texts"], emb[name], "hybrid", tier_confidence=tau)]

    typed = [n for n in ("realistic", "peer96", "peer20")  # peer20 has no complexity labels, so no tier
             if n in sets and all(sets[n]["model"])]
    print(f"{data}: {len(ids)} validation templates, {len(templates)} validation requests "
          f"(stored tier confidence {router.labels.get('tier_policy', {}).get('tier_confidence')}, in the grid)")
    print("| confidence | validation under-tier: both forms / as written / without context | Wilson bound of the mix"
          " | larger form bound | template bootstrap bound | "
          + " | ".join(f"{n} under-tier / saving / tier acc" for n in typed) + " |")
    print("|---:|---|---:|---:|---:|" + "---|" * len(typed))
    top = spec["tier_order"][-1]
    stored = router.labels.get("tier_policy", {}).get("tier_confidence")
    for tau in sorted(set(GRID) | ({stored} if stored else set())):
        under = np.array([order[m or top] < order[e] for m, e in
                          zip(routed("validation", tau), sets["validation"]["model"], strict=True)], float)
        boot = np.bincount(group, weights=under, minlength=len(ids))[draws].sum(1) / size
        cells = []
        for name in typed:
            t = tier_metrics(routed(name, tau), sets[name]["model"], spec)
            cells.append(f"{t['under_tier_rate']:.1%} / {t['saving_vs_opus']:.1%} / {t['tier_acc']:.3f}")
        half = len(under) // 2  # load_sets: every validation row as written, then every row without its context
        forms = (under[:half], under[half:])
        form_bound = max(under_tier_upper_bound(float(f.mean()), len(f), 0.95) for f in forms)
        print(f"| {tau:.2f} | {under.mean():.2%} / {forms[0].mean():.2%} / {forms[1].mean():.2%} | "
              f"{under_tier_upper_bound(float(under.mean()), len(under), 0.95):.2%} | {form_bound:.2%} | "
              f"{np.quantile(boot, 0.95):.2%} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
