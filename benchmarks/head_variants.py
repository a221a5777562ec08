"""Experiment: routing-head variants refitted on a trained adapter's embeddings, each with its tier policy calibrated
on validation exactly as trained_adapter does, then scored on the test split, the realistic set and the peer sets.
An experiment record, not part of the pipeline: it answers "would this head change help?" in minutes instead of a
20-minute retrain, because the encoder stays as trained.

Variants (comma-separated --variants):
- emb            the shipped heads (linear on the embedding; reproduces the evaluation report's hybrid figures)
- bow:D:S        + hashed word unigrams and bigrams (D buckets, rows L2-normalized, scaled by S)
- short          + the terse form of every train/validation request (cut at its first clause break after 5 words)
- trval          the shipped heads, refitted on train + validation once L2 and the tier confidence are chosen
- drop:K[+K]     the shipped heads fitted and calibrated without the train/validation rows of augmentation kinds K
                 (e.g. drop:complexity = without the scope-rewritten rows); the encoder stays as trained
- cxenc:DIR      the shipped agent-type head with complexity logits from a separate encoder (DIR/<set>.npy, written by
                 complexity_finetune.py --logits-out DIR); tier confidence calibrated on validation as usual

Usage: python benchmarks/head_variants.py [--data data] [--cache .cache/head_variants] [--variants emb,bow:4096:1]
       [--peer-dir ../shared/benchmarks/peer]
Embeddings are cached in --cache (about 7 min on 2 CPU cores the first time); --curve adds under-tier / saving /
tier accuracy at fixed tier confidences.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import zlib
from pathlib import Path

import numpy as np

from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR

FORMS = ("full", "bare")
_CUT = re.compile(r"(?<=\S)(?:[.;!?](?=\s)|\s[-\u2013\u2014]\s|,(?=\s))")
_TOKEN = re.compile(r"[a-z0-9]+")


def terse(text: str, min_words: int = 5) -> str:
    """The request cut at its first clause break after at least `min_words` words."""
    for m in _CUT.finditer(text):
        head = text[: m.start()].strip()
        if len(head.split()) >= min_words:
            return head
    return text


def hashed_ngrams(texts: list[str], buckets: int) -> np.ndarray:
    out = np.zeros((len(texts), buckets), np.float32)
    for i, text in enumerate(texts):
        words = _TOKEN.findall(text.lower())
        for gram in set(words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]):
            out[i, zlib.crc32(gram.encode()) % buckets] = 1.0
        norm = np.linalg.norm(out[i])
        if norm:
            out[i] /= norm
    return out


def refit_on(heads, x, y: dict, l2: dict) -> None:
    """Refit each head from zero on (x, y) with its already chosen L2 strength."""
    import torch

    from ruvtrain_pipeline.core.train.heads import _fit_linear

    ce, mse = torch.nn.functional.cross_entropy, torch.nn.functional.mse_loss
    losses = {"agent": lambda out: ce(out, y["agent"]), "complexity": lambda out: ce(out, y["complexity"]),
              "quality": lambda out: mse(torch.sigmoid(out).squeeze(-1), y["quality"])}
    for name, loss in losses.items():
        _fit_linear(getattr(heads, name), x, loss, l2[name], 300)


def use_heads(router, heads) -> None:
    """Give the router the fitted heads' agent-type and complexity weights."""
    router._agent_w, router._agent_b = heads.agent.weight.detach().numpy(), heads.agent.bias.detach().numpy()
    router._cx_w, router._cx_b = heads.complexity.weight.detach().numpy(), heads.complexity.bias.detach().numpy()


def build_cache(data: Path, cache: Path, peer_dir: Path, short: bool = True) -> dict:
    import polars as pl

    from ruvtrain_pipeline.core.catalog import CATALOG_DIR
    from ruvtrain_pipeline.core.evaluate import load_peer_sets, load_realistic
    from ruvtrain_pipeline.core.router import Router, request_text
    from ruvtrain_pipeline.core.train.trainer import flatten_examples

    meta_file = cache / "meta.json"
    if meta_file.exists():
        return json.loads(meta_file.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    router = Router(data / "trained_adapter", tier_confidence=None, view_average=False)  # the served view alone
    meta: dict = {}

    def put(name: str, texts: list[str], agent: list, cx: list, model: list) -> None:
        np.save(cache / f"{name}.npy", router.embed(texts))
        meta[name] = {"texts": texts, "agent": agent, "complexity": cx, "model": model}

    for split in ("train", "validation", "test"):
        df = flatten_examples(pl.read_parquet(data / "dataset_splits" / "data" / f"{split}.parquet"))
        labels = (df["agent_type"].to_list(), df["complexity"].to_list(), df["expected_model"].to_list())
        put(f"{split}_full", [request_text(i, c) for i, c in zip(df["input"], df["context"], strict=True)], *labels)
        put(f"{split}_bare", df["input"].to_list(), *labels)
        if split != "test" and short:  # only the 'short' variant reads them
            put(f"{split}_short", [terse(t) for t in df["input"].to_list()], *labels)
    lab = router.labels
    routing = {"table": lab["routing_table"]}
    sets = [load_realistic(CATALOG_DIR / "eval" / "realistic.jsonl", lab["agent_category"], routing,
                           lab["complexities"])]
    sets += load_peer_sets(peer_dir, lab["agent_category"], routing)  # none when the folder is absent
    for es in sets:
        put(es.name, [request_text(i, c) for i, c in zip(es.inputs, es.contexts, strict=True)], es.agent_type,
            es.complexity, es.expected_model)
    meta_file.write_text(json.dumps(meta))
    return meta


def score_line(name: str, routes: list, labels: dict, cat_of: dict, spec: dict) -> str:
    """One set's figures: agent type and category accuracy, and with complexity labels, complexity and tier accuracy,
    under-tiering and saving vs always-opus (labels: agent, complexity, model lists in the routes' order)."""
    from ruvtrain_pipeline.core.tiers import tier_metrics

    pairs = list(zip(routes, labels["agent"], strict=True))
    line = (f"   {name:10s} agent {np.mean([r.agent_type == a for r, a in pairs]):.3f}"
            f" category {np.mean([r.agent == cat_of[a] for r, a in pairs]):.3f}")
    if all(labels["complexity"]):
        t = tier_metrics([r.model for r in routes], labels["model"], spec)
        cx = np.mean([r.complexity == c for r, c in zip(routes, labels["complexity"], strict=True)])
        line += (f" complexity {cx:.3f} tier {t['tier_acc']:.3f} under-tier {t['under_tier_rate']:.3f}"
                 f" saving {t['saving_vs_opus']:.3f}")
    return line


def augmentation_kinds(data: Path, split: str) -> np.ndarray:
    """Each row's augmentation kind (base, paraphrase, complexity, domain, noise), in the cache's row order."""
    import polars as pl

    from ruvtrain_pipeline.core.train.trainer import flatten_examples

    df = flatten_examples(pl.read_parquet(data / "dataset_splits" / "data" / f"{split}.parquet"))
    return df["augmentation"].to_numpy().astype(str)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--cache", default=".cache/head_variants")
    ap.add_argument("--variants", default="emb,bow:4096:1,short")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR, help="read-only peer test cases (skipped if absent)")
    ap.add_argument("--curve", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from ruvtrain_pipeline.core.catalog import Catalog
    from ruvtrain_pipeline.core.router import Router, _softmax
    from ruvtrain_pipeline.core.tiers import calibrate_tier_confidence, routing_spec, tier_metrics
    from ruvtrain_pipeline.core.train.heads import RoutingHeads, fit_heads

    data, cache = Path(args.data), Path(args.cache)
    meta = build_cache(data, cache, Path(args.peer_dir), short="short" in args.variants.split(","))
    if "short" in args.variants.split(",") and "train_short" not in meta:
        ap.error(f"{cache} was built without the short forms: give another --cache for the 'short' variant")
    emb = {k: np.load(cache / f"{k}.npy") for k in meta}
    base = Router(data / "trained_adapter", tier_confidence=None, view_average=False)
    agents, cxs, cat_of = base.labels["agent_types"], base.labels["complexities"], base.labels["agent_category"]
    spec = routing_spec(Catalog.from_dict(json.loads((data / "seed_templates" / "catalog.json").read_text())))

    class VariantRouter(Router):
        x: np.ndarray

        cx: np.ndarray | None = None  # complexity logits from a separate encoder (cxenc variant)

        def heads(self, e: np.ndarray, texts: list[str], views=None) -> tuple[np.ndarray, np.ndarray]:
            cx = self.x @ self._cx_w.T + self._cx_b if self.cx is None else self.cx
            return _softmax(self.x @ self._agent_w.T + self._agent_b), cx

    def labels(names: list[str], keep: np.ndarray | None = None) -> dict:
        y = {"agent": torch.tensor([agents.index(a) for n in names for a in meta[n]["agent"]]),
             "complexity": torch.tensor([cxs.index(c) for n in names for c in meta[n]["complexity"]]),
             "quality": torch.full((sum(len(meta[n]["agent"]) for n in names),), 0.9)}
        return y if keep is None else {k: v[torch.from_numpy(keep)] for k, v in y.items()}

    for variant in args.variants.split(","):
        def features(name: str, variant: str = variant) -> np.ndarray:
            if variant.startswith("bow:"):
                buckets, scale = variant.split(":")[1:3]
                return np.hstack([emb[name], float(scale) * hashed_ngrams(meta[name]["texts"], int(buckets))])
            return emb[name]

        forms = FORMS + (("short",) if variant == "short" else ())
        fit = {s: [f"{s}_{f}" for f in forms] for s in ("train", "validation")}
        x = {s: np.vstack([features(n) for n in names]) for s, names in fit.items()}
        keep = {s: None for s in fit}
        if variant.startswith("drop:"):
            keep = {s: np.tile(~np.isin(augmentation_kinds(data, s), variant[5:].split("+")), len(fit[s]))
                    for s in fit}
            x = {s: x[s][keep[s]] for s in fit}
        heads = RoutingHeads(x["train"].shape[1], len(agents), len(cxs))
        grid = (3e-5, 1e-4, 3e-4, 1e-3) + ((3e-3,) if variant.startswith("bow:") else ())
        curves = fit_heads(heads, {"emb": torch.from_numpy(x["train"]), **labels(fit["train"], keep["train"])},
                           {"emb": torch.from_numpy(x["validation"]), **labels(fit["validation"], keep["validation"])},
                           l2_grid=grid, max_iter=300)
        router = VariantRouter.__new__(VariantRouter)
        router.__dict__.update(base.__dict__)
        use_heads(router, heads)
        router.x = x["validation"]
        cx_dir = Path(variant.split(":", 1)[1]) if variant.startswith("cxenc:") else None

        def cx_logits(names: list[str], cx_dir: Path | None = cx_dir) -> np.ndarray | None:
            return None if cx_dir is None else np.vstack([np.load(cx_dir / f"{n}.npy") for n in names])

        router.cx = cx_logits(fit["validation"])
        val_texts = [t for n in fit["validation"] for t in meta[n]["texts"]]
        val_models = [m for n in fit["validation"] for m in meta[n]["model"]]
        val_emb = np.vstack([emb[n] for n in fit["validation"]])
        if keep["validation"] is not None:
            kv = keep["validation"]
            val_texts = [t for t, k in zip(val_texts, kv, strict=True) if k]
            val_models = [m for m, k in zip(val_models, kv, strict=True) if k]
            val_emb = val_emb[kv]
        val_forms = [f for n in fit["validation"] for f in [n.split("_", 1)[1]] * len(meta[n]["texts"])]
        if keep["validation"] is not None:
            val_forms = [f for f, k in zip(val_forms, keep["validation"], strict=True) if k]
        # each request form on its own, as trained_adapter calibrates (under_tier_each_form)
        policy = calibrate_tier_confidence(router, val_texts, val_emb, val_models, spec, 0.02, 0.005,
                                           confidence_level=0.95, groups=val_forms)
        tau = policy["tier_confidence"]
        if variant == "trval":
            # selection done (L2 per head, tier confidence): refit each head with its chosen L2 on train + validation
            refit_on(heads, torch.from_numpy(np.vstack([x["train"], x["validation"]])),
                     labels(fit["train"] + fit["validation"]), {k: curves[f"chosen_l2_{k}"][0] for k in
                                                                ("agent", "complexity", "quality")})
            use_heads(router, heads)
        val_cx = max(curves["val_complexity_acc"]) if router.cx is None else float(
            (router.cx.argmax(-1) == labels(fit["validation"], keep["validation"])["complexity"].numpy()).mean())
        print(f"== {variant}: validation agent {max(curves['val_agent_acc']):.3f}, complexity {val_cx:.3f}; "
              f"calibrated tier confidence {tau}")

        def route(name: str, confidence: float, router: VariantRouter = router) -> list:
            router.x = features(name)
            router.cx = cx_logits([name])
            return router.route_embedded(meta[name]["texts"], emb[name], "hybrid", tier_confidence=confidence)

        for name in ("test_full", "realistic", "peer96", "peer20"):
            if name not in meta:
                continue
            rs, m = route(name, tau), meta[name]
            line = score_line(name, rs, m, cat_of, spec)
            if all(m["complexity"]):
                if args.curve:
                    pts = []
                    for c in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
                        tc = tier_metrics([r.model for r in route(name, c)], m["model"], spec)
                        pts.append(f"{c}: {tc['under_tier_rate']:.3f}/{tc['saving_vs_opus']:.2f}/{tc['tier_acc']:.2f}")
                    line += "\n      curve (under-tier/saving/tier acc) " + "  ".join(pts)
            print(line, flush=True)


if __name__ == "__main__":
    main()
