"""Experiment: does an encoder fine-tuned for complexity alone read scope better than the shipped router's?

The shipped encoder is LoRA-tuned mainly for agent type (contrastive, with a joint supervised term); its complexity
head is linear on that embedding. Here the whole base encoder (all weights, mean pooling) is fine-tuned with a
linear complexity head by cross-entropy on the train split (both request forms), and after each epoch the
complexity accuracy on validation, the test split, the realistic set and peer96 is printed. Texts come from
benchmarks/head_variants.py's cache (built on first use). About 20-25 min per epoch on 2 CPU cores.

Usage: python benchmarks/complexity_finetune.py [--data data] [--cache .cache/head_variants] [--epochs 3]
       [--logits-out DIR]
With --logits-out, the fine-tuned encoder's complexity logits of every cached set but train are saved there
(DIR/<set>.npy) after the last epoch: `head_variants.py --variants cxenc:DIR` routes with them (a separate complexity
encoder beside the shipped agent-type heads).
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--logits-out", default="", help="save the complexity logits of the non-train sets here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from ruvtrain_pipeline.core.router import _base_model_path, load_heads

    torch.manual_seed(args.seed)
    meta = build_cache(Path(args.data), Path(args.cache), Path(args.peer_dir))
    provenance = load_heads(Path(args.data) / "trained_adapter")[2]
    model = SentenceTransformer(_base_model_path(provenance.get("base_model")), device="cpu")
    tok, enc = model.tokenizer, model[0].auto_model
    head = torch.nn.Linear(enc.config.hidden_size, len(CX))

    def embed(texts: list[str]) -> torch.Tensor:
        b = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        out = enc(**b).last_hidden_state
        mask = b["attention_mask"].unsqueeze(-1).float()
        return (out * mask).sum(1) / mask.sum(1)

    def data(names: list[str]) -> tuple[list[str], torch.Tensor]:
        return ([t for n in names for t in meta[n]["texts"]],
                torch.tensor([CX.index(v) for n in names for v in meta[n]["complexity"]]))

    train_t, train_y = data(["train_full", "train_bare"])
    sets = {n: data([n]) for n in ("validation_full", "realistic", "peer96", "test_full") if n in meta}
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=args.lr, weight_decay=0.01)

    def evaluate() -> dict[str, float]:
        enc.eval()
        out = {}
        with torch.no_grad():
            for n, (t, y) in sets.items():
                pred = torch.cat([head(embed(t[i : i + 64])).argmax(1) for i in range(0, len(t), 64)])
                out[n] = round(float((pred == y).float().mean()), 3)
        enc.train()
        return out

    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(train_t))
        for i in range(0, len(perm), args.batch):
            b = perm[i : i + args.batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(embed([train_t[j] for j in b])), train_y[b])
            loss.backward()
            opt.step()
        print("epoch", epoch + 1, round(time.time() - t0), evaluate(), flush=True)
    if args.logits_out:
        out = Path(args.logits_out)
        out.mkdir(parents=True, exist_ok=True)
        enc.eval()
        with torch.no_grad():
            for name in (n for n in meta if not n.startswith("train_")):
                texts = meta[name]["texts"]
                logits = torch.cat([head(embed(texts[i : i + 64])) for i in range(0, len(texts), 64)])
                np.save(out / f"{name}.npy", logits.numpy().astype(np.float32))
        print("complexity logits saved in", out, flush=True)


if __name__ == "__main__":
    main()
