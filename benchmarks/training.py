"""Training throughput (triplets/s) and peak memory of the contrastive LoRA phase on this machine.

Usage: python benchmarks/training.py --data data [--steps 30 --batch-size 16 --max-seq-length 48]
Reads the materialized dataset_splits triplets (run `make run` first), times `--steps` optimizer steps after 3
warm-up steps, and reports triplets/s, seconds/step and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=48)
    parser.add_argument("--lora-rank", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import polars as pl
    import torch
    from peft import LoraConfig
    from sentence_transformers import SentenceTransformer

    from ruvtrain_pipeline.core.train.losses import InfoNCELoss, TripletCosineLoss
    from ruvtrain_pipeline.core.train.trainer import _forward
    from ruvtrain_pipeline.resources import BaseEncoder

    torch.manual_seed(0)
    trip = pl.read_parquet(os.path.join(args.data, "dataset_splits", "triplets", "train.parquet"))
    ex = pl.read_parquet(os.path.join(args.data, "dataset_splits", "data", "train.parquet"))
    pool = ex["input"].to_list()
    rng = np.random.default_rng(0)
    model = SentenceTransformer(BaseEncoder().resolved_path(), device="cpu")
    model.max_seq_length = args.max_seq_length
    model.add_adapter(LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank, target_modules=["query", "value"]))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)
    tl, nce = TripletCosineLoss(0.5), InfoNCELoss(0.07)
    agents = sorted(set(trip["positive"]))
    model.train()
    times = []
    for step in range(args.steps + 3):
        sel = rng.integers(0, trip.height, args.batch_size)
        rows = trip[sel]
        a = rows["anchor"].to_list()
        p = [t or pool[int(rng.integers(len(pool)))] for t in rows["positive_text"].to_list()]
        n = [t or pool[int(rng.integers(len(pool)))] for t in rows["negative_text"].to_list()]
        lab = torch.tensor([agents.index(x) for x in rows["positive"]])
        t0 = time.perf_counter()
        emb = _forward(model, a + p + n)
        b = len(a)
        loss = tl(emb[:b], emb[b:2 * b], emb[2 * b:]) + nce(emb[:b], emb[b:2 * b], emb[2 * b:], lab)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step >= 3:
            times.append(time.perf_counter() - t0)
    sec = float(np.mean(times))
    print(json.dumps({
        "batch_size": args.batch_size, "max_seq_length": args.max_seq_length, "lora_rank": args.lora_rank,
        "steps_timed": len(times), "seconds_per_step": round(sec, 3),
        "triplets_per_second": round(args.batch_size / sec, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
