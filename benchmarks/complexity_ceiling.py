"""Experiment: how much of a request's complexity (scope) can a linear head read from a sentence embedding at all?

Three measurements, all with the project's own linear head fitter (L-BFGS, L2 penalty) on cached embeddings:
1. in-domain: 5-fold cross-validation on the realistic set's own requests (trained encoder), the best L2 of the
   grid picked on the held-out folds themselves, so an optimistic figure;
2. template-trained heads on the trained encoder (as shipped), on the untrained base encoder, and on both
   concatenated: fitted on the train split (both request forms), L2 chosen on validation, scored on the test split,
   the realistic set and peer96.
Embeddings of the trained encoder come from benchmarks/head_variants.py's cache (built on first use); the base
encoder's are added to the same cache as base_<name>.npy.

Usage: python benchmarks/complexity_ceiling.py [--data data] [--cache .cache/head_variants]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from head_variants import build_cache  # noqa: E402

from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR  # noqa: E402

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
NAMES = ("train_full", "train_bare", "validation_full", "validation_bare", "test_full", "realistic", "peer96")


def fit_scores(x_tr: np.ndarray, y_tr: np.ndarray, tests: dict[str, tuple[np.ndarray, np.ndarray]],
               n_classes: int) -> dict[float, dict[str, float]]:
    """Accuracy on each test set of a linear softmax head fitted on (x_tr, y_tr), per L2 strength of GRID."""
    import torch

    from ruvtrain_pipeline.core.train.heads import _fit_linear

    x = torch.from_numpy(x_tr.astype(np.float32))
    y = torch.from_numpy(y_tr)
    layer = torch.nn.Linear(x.shape[1], n_classes)
    out = {}
    for l2 in GRID:
        _fit_linear(layer, x, lambda o: torch.nn.functional.cross_entropy(o, y), l2, 300)
        with torch.no_grad():
            out[l2] = {k: float((layer(torch.from_numpy(xt.astype(np.float32))).argmax(-1).numpy() == yt).mean())
                       for k, (xt, yt) in tests.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--cache", default=".cache/head_variants")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from ruvtrain_pipeline.core.router import _base_model_path, load_heads

    torch.manual_seed(0)
    data, cache = Path(args.data), Path(args.cache)
    meta = build_cache(data, cache, Path(args.peer_dir))
    labels, _, provenance = load_heads(data / "trained_adapter")
    cxs, agents = labels["complexities"], labels["agent_types"]
    tuned = {n: np.load(cache / f"{n}.npy") for n in NAMES}
    base = {}
    encoder = None
    for n in NAMES:
        f = cache / f"base_{n}.npy"
        if not f.exists():
            if encoder is None:
                from sentence_transformers import SentenceTransformer

                encoder = SentenceTransformer(_base_model_path(provenance.get("base_model")), device="cpu")
            np.save(f, encoder.encode(meta[n]["texts"], batch_size=64, normalize_embeddings=True))
        base[n] = np.load(f)
    y = {key: {n: np.array([classes.index(v) for v in meta[n][key]]) for n in NAMES}
         for key, classes in (("complexity", cxs), ("agent", agents))}

    print("1. 5-fold cross-validation on the realistic set itself (trained encoder; best L2 on the held-out folds)")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(tuned["realistic"]))
    folds = np.array_split(order, 5)
    for key, classes in (("complexity", cxs), ("agent", agents)):
        acc = {l2: 0.0 for l2 in GRID}
        for k in range(5):
            te = folds[k]
            tr = np.concatenate([folds[j] for j in range(5) if j != k])
            x, yy = tuned["realistic"], y[key]["realistic"]
            for l2, s in fit_scores(x[tr], yy[tr], {"held": (x[te], yy[te])}, len(classes)).items():
                acc[l2] += s["held"] * len(te) / len(order)
        best = max(acc, key=acc.get)
        print(f"   {key:10s} accuracy {acc[best]:.3f} (L2 {best:g}; grid: "
              + ", ".join(f"{v:.3f}" for v in acc.values()) + ")")

    print("2. complexity head fitted on the train split (both forms), L2 chosen on validation")
    sets = ("validation", "test_full", "realistic", "peer96")
    for name, feats in (("trained encoder (shipped)", tuned), ("base encoder", base),
                        ("trained + base", {n: np.hstack([tuned[n], base[n]]) for n in NAMES})):
        x_tr = np.vstack([feats["train_full"], feats["train_bare"]])
        y_tr = np.concatenate([y["complexity"]["train_full"], y["complexity"]["train_bare"]])
        tests = {"validation": (np.vstack([feats["validation_full"], feats["validation_bare"]]),
                                np.concatenate([y["complexity"]["validation_full"],
                                                y["complexity"]["validation_bare"]]))}
        tests |= {n: (feats[n], y["complexity"][n]) for n in sets[1:]}
        scores = fit_scores(x_tr, y_tr, tests, len(cxs))
        l2 = max(scores, key=lambda k: scores[k]["validation"])
        print(f"   {name:26s} L2 {l2:g}: " + ", ".join(f"{s} {scores[l2][s]:.3f}" for s in sets))


if __name__ == "__main__":
    main()
