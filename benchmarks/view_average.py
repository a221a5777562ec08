"""Experiment: test-time averaging over request views. The shipped heads are fitted on both request forms (with
and without context); this scores, on the realistic and peer sets, the agent-type head on each view alone and on the
mean of the views' probabilities: full (request + context, what the router embeds), bare (the request alone) and
terse (the request cut at its first clause break, head_variants.terse). Embedding mode (no keyword rules); only
requests that carry a context differ between full and bare. An experiment record, not part of the pipeline.

Usage: python benchmarks/view_average.py --member data [--member D2 ...]   (about 1 min per member on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from ruvtrain_pipeline.core.dataset_files import DEFAULT_PEER_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_variants import terse  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--member", action="append", required=True, help="data folder holding a trained_adapter")
    ap.add_argument("--peer-dir", default=DEFAULT_PEER_DIR)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ruvtrain_pipeline.core.catalog import CATALOG_DIR
    from ruvtrain_pipeline.core.evaluate import load_peer_sets, load_realistic
    from ruvtrain_pipeline.core.router import Router, request_text

    for member in args.member:
        router = Router(Path(member) / "trained_adapter", tier_confidence=None, view_average=False)
        lab = router.labels
        routing = {"table": lab["routing_table"]}
        sets = [load_realistic(CATALOG_DIR / "eval" / "realistic.jsonl", lab["agent_category"], routing,
                               lab["complexities"])]
        sets += load_peer_sets(Path(args.peer_dir), lab["agent_category"], routing)
        for es in sets:
            views = {"full": [request_text(i, c) for i, c in zip(es.inputs, es.contexts, strict=True)],
                     "bare": list(es.inputs), "terse": [terse(t) for t in es.inputs]}
            prob = {name: router.heads(router.embed(texts), texts)[0] for name, texts in views.items()}
            y = np.array([lab["agent_types"].index(a) for a in es.agent_type])

            def acc(p: np.ndarray, y: np.ndarray = y) -> str:
                return f"{(p.argmax(1) == y).mean():.3f}"

            with_context = sum(1 for c in es.contexts if c)
            print(f"{member} {es.name} (n {len(y)}, {with_context} with context): "
                  + " ".join(f"{k} {acc(v)}" for k, v in prob.items())
                  + f" | full+bare {acc(prob['full'] + prob['bare'])} full+terse {acc(prob['full'] + prob['terse'])}"
                  f" all three {acc(prob['full'] + prob['bare'] + prob['terse'])}", flush=True)


if __name__ == "__main__":
    main()
