"""Mined hard-negative provider on the default dataset size: hard-negative ratio, time per 1,000 triplets.

Usage: python benchmarks/hard_negatives.py [--examples-per-agent 100]. Encoder load time is reported separately;
"per 1,000 triplets" covers encoding the anchors plus mining.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples-per-agent", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import polars as pl

    from ruvtrain_pipeline.core.augment import AugmentSettings, augment_examples, load_augment_data
    from ruvtrain_pipeline.core.catalog import load_catalog
    from ruvtrain_pipeline.core.negatives.mined import mined_triplets
    from ruvtrain_pipeline.core.negatives.triplets import TripletSettings, triplet_report
    from ruvtrain_pipeline.core.templates import compile_templates, generate_base_examples
    from ruvtrain_pipeline.resources import BaseEncoder

    catalog = load_catalog()
    ct = compile_templates(catalog)
    rng = np.random.default_rng(args.seed)
    base = generate_base_examples(ct, args.examples_per_agent, rng)
    examples = augment_examples(base, ct, load_augment_data(complexities=catalog.complexities), AugmentSettings(),
                                rng).examples
    encoder = BaseEncoder()
    t0 = time.perf_counter()
    encoder.load()
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    emb = encoder.encode(examples["input"].to_list())
    t2 = time.perf_counter()
    trip = mined_triplets(examples, emb, catalog, TripletSettings(0.48), rng)
    t3 = time.perf_counter()
    rep = triplet_report(trip, catalog, 0.48)
    hard = trip.filter(pl.col("is_hard"))["similarity"].mean()
    easy = trip.filter(~pl.col("is_hard"))["similarity"].mean()
    out = {
        "anchors": examples.height, "triplets": trip.height, "hard_ratio": rep["hard_ratio"],
        "encoder_load_s": round(t_load, 2), "encode_s": round(t2 - t1, 2), "mine_s": round(t3 - t2, 3),
        "seconds_per_1000_triplets": round(1000 * (t3 - t1) / trip.height, 3),
        "mean_similarity_hard": round(float(hard), 4), "mean_similarity_random": round(float(easy), 4),
        "cpu_threads": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
