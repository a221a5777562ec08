"""Experiment: does an encoder fine-tuned for complexity alone read scope better than the shipped router's?

The shipped encoder is LoRA-tuned mainly for agent type (contrastive, with a joint supervised term); its complexity
head is linear on that embedding. Here the whole base encoder (all weights, mean pooling) is fine-tuned with a
linear complexity head by cross-entropy on the train split (both request forms), and after each epoch the
complexity accuracy on validation, the test split, the realistic set and peer96 is printed. Texts come from
benchmarks/head_variants.py's cache (built on first use). About 20-25 min per epoch on 2 CPU cores.

With --target agent the same is done for agent type (13-way; category accuracy printed too), with --target both
for the sum of the two cross-entropies (two linear heads on one fine-tuned encoder).

Usage: python benchmarks/complexity_finetune.py [--data data] [--cache .cache/head_variants] [--epochs 3]
       [--target complexity|agent|both] [--logits-out DIR] [--emb-out DIR]
With --logits-out, the fine-tuned encoder's complexity logits of every cached set but train are saved there
(DIR/<set>.npy) after the last epoch: `head_variants.py --variants cxenc:DIR` routes with them (a separate complexity
encoder beside the shipped agent-type heads). With --emb-out DIR, the fine-tuned encoder's unit-length embeddings
of every cached set but the short forms are saved there after the last epoch, with the cache's meta.json:
`head_variants.py --cache DIR --variants emb` then fits the pipeline's heads on them and scores the hybrid router.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from head_variants import build_cache  # noqa: E402

from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR  # noqa: E402

CX = ["Simple", "Moderate", "Complex"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--cache", default=".cache/head_variants")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", choices=["complexity", "agent", "both"], default="complexity")
    ap.add_argument("--logits-out", default="", help="save the complexity logits of the non-train sets here")
    ap.add_argument("--emb-out", default="", help="save the fine-tuned embeddings here, as a head_variants cache")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from ruvtrain_pipeline.core.router import _base_model_path, load_heads

    meta = build_cache(Path(args.data), Path(args.cache), Path(args.peer_dir))
    provenance = load_heads(Path(args.data) / "trained_adapter")[2]
    model = SentenceTransformer(_base_model_path(provenance.get("base_model")), device="cpu")
    torch.manual_seed(args.seed)  # after the cache build, which draws random numbers only when it runs
    tok, enc = model.tokenizer, model[0].auto_model
    agents = sorted(set(meta["train_full"]["agent"]))
    cat_of = load_heads(Path(args.data) / "trained_adapter")[0]["agent_category"]
    heads = {}
    if args.target in ("complexity", "both"):
        heads["complexity"] = torch.nn.Linear(enc.config.hidden_size, len(CX))
    if args.target in ("agent", "both"):
        heads["agent"] = torch.nn.Linear(enc.config.hidden_size, len(agents))
    classes = {"complexity": CX, "agent": agents}

    def embed(texts: list[str]) -> torch.Tensor:
        b = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        out = enc(**b).last_hidden_state
        mask = b["attention_mask"].unsqueeze(-1).float()
        return (out * mask).sum(1) / mask.sum(1)

    def embed_all(texts: list[str]) -> torch.Tensor:
        return torch.cat([embed(texts[i : i + 64]) for i in range(0, len(texts), 64)])

    def data(names: list[str]) -> tuple[list[str], dict[str, torch.Tensor]]:
        return ([t for n in names for t in meta[n]["texts"]],
                {k: torch.tensor([classes[k].index(v) if v in classes[k] else -1 for n in names for v in meta[n][k]])
                 for k in heads})

    train_t, train_y = data(["train_full", "train_bare"])
    sets = {n: data([n]) for n in ("validation_full", "realistic", "peer96", "peer20", "test_full") if n in meta}
    params = list(enc.parameters()) + [p for h in heads.values() for p in h.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)

    def evaluate() -> dict[str, dict[str, float]]:
        enc.eval()
        out: dict[str, dict[str, float]] = {}
        with torch.no_grad():
            for n, (t, ys) in sets.items():
                e = embed_all(t)
                out[n] = {}
                for k, y in ys.items():
                    if (y < 0).any():  # e.g. peer20 has no complexity labels
                        continue
                    pred = heads[k](e).argmax(1)
                    out[n][k] = round(float((pred == y).float().mean()), 3)
                    if k == "agent":
                        pairs = zip(pred.tolist(), y.tolist(), strict=True)
                        same = [cat_of[agents[p]] == cat_of[agents[g]] for p, g in pairs]
                        out[n]["category"] = round(float(np.mean(same)), 3)
        enc.train()
        return out

    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(train_t))
        for i in range(0, len(perm), args.batch):
            b = perm[i : i + args.batch]
            opt.zero_grad()
            e = embed([train_t[j] for j in b])
            loss = sum(torch.nn.functional.cross_entropy(h(e), train_y[k][b]) for k, h in heads.items())
            loss.backward()
            opt.step()
        print("epoch", epoch + 1, round(time.time() - t0), evaluate(), flush=True)
    if args.logits_out and "complexity" in heads:
        out = Path(args.logits_out)
        out.mkdir(parents=True, exist_ok=True)
        enc.eval()
        with torch.no_grad():
            for name in (n for n in meta if not n.startswith("train_")):
                texts = meta[name]["texts"]
                logits = heads["complexity"](embed_all(texts))
                np.save(out / f"{name}.npy", logits.numpy().astype(np.float32))
        print("complexity logits saved in", out, flush=True)
    if args.emb_out:
        out = Path(args.emb_out)
        out.mkdir(parents=True, exist_ok=True)
        enc.eval()
        kept = {n: m for n, m in meta.items() if not n.endswith("_short")}
        with torch.no_grad():
            for name, m in kept.items():
                e = embed_all(m["texts"])
                np.save(out / f"{name}.npy", torch.nn.functional.normalize(e, dim=-1).numpy().astype(np.float32))
        (out / "meta.json").write_text(json.dumps(kept))
        print("embeddings saved in", out, flush=True)


if __name__ == "__main__":
    main()
