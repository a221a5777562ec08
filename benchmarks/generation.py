"""Generation benchmark: valid examples/s and peak memory for base + augmentation at 10k, 100k and 1M examples.

Each size runs in a fresh subprocess (so peak RSS belongs to that size alone). Only valid rows count: every slot
filled, input not a duplicate. Usage: python benchmarks/generation.py [--sizes 10000,100000,1000000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time

ROWS_PER_BASE = 5.44  # augmented rows per base example with the default settings (measured; only sizes the run)


def run_one(target: int, seed: int) -> dict:
    import numpy as np
    import polars as pl

    from ruvtrain_pipeline.core.augment import AugmentSettings, augment_examples, load_augment_data
    from ruvtrain_pipeline.core.catalog import load_catalog
    from ruvtrain_pipeline.core.schema import UNFILLED_RE
    from ruvtrain_pipeline.core.templates import compile_templates, generate_base_examples

    catalog = load_catalog()
    ct = compile_templates(catalog)
    data = load_augment_data(complexities=catalog.complexities)
    per_agent = max(1, math.ceil(target / len(catalog.agent_types) / ROWS_PER_BASE))
    # warm-up on a tiny set: one-time costs (regex compilation, thread-pool start) are not per-example throughput
    augment_examples(generate_base_examples(ct, 3, np.random.default_rng(0)), ct, data, AugmentSettings(),
                     np.random.default_rng(0))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    base = generate_base_examples(ct, per_agent, rng)
    t1 = time.perf_counter()
    result = augment_examples(base, ct, data, AugmentSettings(), rng)
    t2 = time.perf_counter()
    df = result.examples
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unfilled = int((df["input"].str.contains(UNFILLED_RE) | df["context"].str.contains(UNFILLED_RE)).sum())
    duplicates = df.height - df["input"].n_unique()
    valid = df.height - unfilled - duplicates
    produced = sum(result.produced.values())
    return {
        "target": target,
        "examples_per_agent": per_agent,
        "base_rows": base.height,
        "rows": df.height,
        "valid_rows": valid,
        "unfilled_rows": unfilled,
        "duplicate_inputs_in_output": duplicates,
        "candidates_rejected_share": round(1 - df.height / produced, 5) if produced else 0.0,
        "rejected": result.rejected,
        "seconds_base": round(t1 - t0, 3),
        "seconds_total": round(t2 - t0, 3),
        "valid_per_second": round(valid / (t2 - t0)),
        "peak_rss_mb": round(rss_after / 1024, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
        "output_mb": round(df.estimated_size("mb"), 1),
        "polars_threads": pl.thread_pool_size(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default="")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.seed)))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--one", str(size), "--seed", str(args.seed)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"machine: {platform.machine()}, {platform.python_version()}, cores={len(__import__('os').sched_getaffinity(0))}")
    print("| target | valid rows | seconds | valid rows/s | dup inputs | unfilled | rejected share | peak RSS MB "
          "| RSS growth MB | output MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['target']:,} | {r['valid_rows']:,} | {r['seconds_total']} | {r['valid_per_second']:,} | "
              f"{r['duplicate_inputs_in_output']} | {r['unfilled_rows']} | {100 * r['candidates_rejected_share']:.2f}% | "
              f"{r['peak_rss_mb']} | {r['rss_growth_mb']} | {r['output_mb']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
