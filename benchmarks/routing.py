"""Router speed per backend and mode, side by side with the raw encoders on the same texts in one run; plus the
keyword stage alone and the q8_0-vs-f32 size/accuracy trade-off.

Usage: python benchmarks/routing.py [--model data/gguf_export] [--single 200] [--batch 512]
Texts: the held-out test split of the materialized dataset (input + context, as the router joins them).
- single: one request per call (p50/p95 ms over --single calls after 10 warm-up calls);
- batch: one call over --batch texts (requests/s);
- overhead: router vs the raw encoder forward of the same backend (sentence-transformers `encode` with the same
  adapter for torch; llama.cpp `embed` of the same GGUF for llamacpp).
Accuracy: agent-type accuracy (13-way, embedding mode) on the whole test split, per backend/quantization.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def _percentiles(samples: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return qs[49], qs[94]


def _paired_single(fns: dict, texts: list[str], n: int) -> dict[str, tuple[float, float]]:
    """Per-request latency of several callables on the same texts, interleaved text by text (order rotating) so
    that machine noise hits all of them alike; (p50, p95) ms each."""
    names = list(fns)
    for t in texts[:10]:
        for name in names:
            fns[name](t)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, t in enumerate(texts[:n]):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            fns[name](t)
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: _percentiles(v) for name, v in times.items()}


def _paired_batch(fns: dict, texts: list[str], repeats: int = 3) -> dict[str, float]:
    """Batch throughput (requests/s), best of `repeats` interleaved runs per callable."""
    best = dict.fromkeys(fns, 0.0)
    for name in fns:
        fns[name](texts[:32])
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="data/gguf_export")
    parser.add_argument("--data", default="data")
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default="", help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import polars as pl
    import torch

    from ruvtrain_pipeline.core.router import MODES, Router, request_text

    torch.set_num_threads(args.threads)
    test = pl.read_parquet(Path(args.data) / "dataset_splits" / "data" / "test.parquet")
    texts = [request_text(i, c) for i, c in zip(test["input"], test["context"], strict=True)]
    truth = test["metadata"].struct.field("agent_type").to_list()
    batch_texts = (texts * (args.batch // len(texts) + 1))[: args.batch]
    model = Path(args.model)
    sizes = {p.name: p.stat().st_size for p in model.glob("router-encoder-*.gguf")}
    rows, accuracy = [], {}

    def bench(name: str, router: Router, raw_single, raw_batch) -> None:
        single = {"raw encoder": raw_single} | {m: (lambda t, m=m: router.route(t, mode=m)) for m in MODES}
        batch = {"raw encoder": raw_batch} | {m: (lambda ts, m=m: router.route_many([(t, None) for t in ts], mode=m))
                                              for m in MODES}
        lat = _paired_single(single, texts, args.single)
        tput = _paired_batch(batch, batch_texts)
        raw_p50, raw_tput = lat["raw encoder"][0], tput["raw encoder"]
        for mode in single:
            raw = mode == "raw encoder"
            rows.append({"backend": name, "mode": mode, "p50_ms": lat[mode][0], "p95_ms": lat[mode][1],
                         "req_per_s": tput[mode], "overhead_p50": None if raw else lat[mode][0] / raw_p50 - 1,
                         "overhead_batch": None if raw else raw_tput / tput[mode] - 1})
        emb = router.embed(texts)
        got = [r.agent_type for r in router.route_embedded(texts, emb, "embedding")]
        accuracy[name] = sum(g == t for g, t in zip(got, truth, strict=True)) / len(truth)

    router = Router(model, backend="torch", threads=args.threads)
    st = router.encoder.model

    def st_encode(ts):
        return st.encode(ts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                         show_progress_bar=False)

    bench("torch", router, lambda t: st_encode([t]), st_encode)
    for quant in ("f32", "f16", "q8_0"):
        if f"router-encoder-{quant}.gguf" not in sizes:
            continue
        router = Router(model, backend="llamacpp", quantization=quant, threads=args.threads)
        llm = router.encoder.llm
        bench(f"llamacpp {quant}", router, lambda t, llm=llm: llm.embed([t], normalize=True),
              lambda ts, llm=llm: llm.embed(ts, normalize=True))

    kw = router.keywords
    for t in texts[:50]:
        kw.decide(t)
    kw_times = []
    for t in texts:
        t0 = time.perf_counter()
        kw.decide(t)
        kw_times.append((time.perf_counter() - t0) * 1000)
    kw_p50, kw_p95 = _percentiles(kw_times)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads={args.threads}, "
          f"torch {torch.__version__}; model {model}; {len(texts)} test texts, batch {args.batch}, "
          f"single {args.single}\n")
    print("| backend | mode | single p50 ms | single p95 ms | batch req/s | overhead p50 | overhead batch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ov = (f"{r['overhead_p50']:+.1%}", f"{r['overhead_batch']:+.1%}") if r["overhead_p50"] is not None else ("", "")
        print(f"| {r['backend']} | {r['mode']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['req_per_s']:.0f} | "
              f"{ov[0]} | {ov[1]} |")
    print(f"\nkeyword stage alone ({len(texts)} texts): p50 {kw_p50 * 1000:.1f} us, p95 {kw_p95 * 1000:.1f} us, "
          f"max {max(kw_times) * 1000:.1f} us")
    print("\n| backend | file MB | share of f32 | test agent acc (embedding) |")
    print("|---|---:|---:|---:|")
    f32 = sizes.get("router-encoder-f32.gguf")
    for name, acc in accuracy.items():
        q = name.split()[-1]
        size = sizes.get(f"router-encoder-{q}.gguf")
        mb = f"{size / 1e6:.1f}" if size else ""
        share = f"{size / f32:.1%}" if size and f32 else ""
        print(f"| {name} | {mb} | {share} | {acc:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "keyword_us": [kw_p50 * 1000, kw_p95 * 1000],
                                               "accuracy": accuracy, "sizes": sizes}, indent=2))


if __name__ == "__main__":
    main()
