"""Experiment: a trained adapter's LoRA weights changed after training, written as a data folder that
`benchmarks/head_variants.py --data OUT --variants emb` scores (heads refitted on the new encoder, tier confidence
calibrated on validation as trained_adapter does). An experiment record, not part of the pipeline.

- --scale S     WiSE-FT-style interpolation between the base encoder and the trained one: the LoRA delta times S
                (written as lora_alpha * S, so every reader of the peft config sees it).
- --soup        a "soup" of several adapters trained from the same base encoder: the mean of their weight deltas,
                exactly, as one LoRA of rank K * r (A matrices stacked, B matrices side by side divided by K).

OUT gets the adapter plus links to the first member's seed_templates and dataset_splits (heads are fitted and
calibrated on that member's splits; the other members may have trained on its validation and test templates, so
only the realistic and peer figures of a soup are clean).

Usage: python benchmarks/adapter_weights.py OUT --member data --scale 0.75
       python benchmarks/adapter_weights.py OUT --member data --member D2 --member D3 --soup
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--member", action="append", required=True, help="data folder holding a trained_adapter")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--soup", action="store_true")
    args = ap.parse_args()
    from safetensors.numpy import load_file, save_file

    members = [Path(m) for m in args.member]
    if len(members) > 1 and not args.soup:
        ap.error("several --member need --soup")
    adapters = [m / "trained_adapter" / "adapter" for m in members]
    weights = [load_file(str(a / "adapter_model.safetensors")) for a in adapters]
    configs = [json.loads((a / "adapter_config.json").read_text()) for a in adapters]
    r, alpha = configs[0]["r"], configs[0]["lora_alpha"]
    if any(c["r"] != r or c["lora_alpha"] != alpha or c["target_modules"] != configs[0]["target_modules"]
           for c in configs):
        ap.error("members differ in LoRA rank, alpha or target modules")
    k = len(weights)
    merged = {name: (np.concatenate([w[name] for w in weights], axis=0) if "lora_A" in name
                     else np.concatenate([w[name] for w in weights], axis=1) / k) for name in weights[0]}
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(members[0] / "trained_adapter", out / "trained_adapter")
    save_file(merged, str(out / "trained_adapter" / "adapter" / "adapter_model.safetensors"))
    cfg = dict(configs[0], r=r * k, lora_alpha=alpha * k * args.scale)  # scaling lora_alpha / r: k cancels out
    (out / "trained_adapter" / "adapter" / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    for sub in ("seed_templates", "dataset_splits"):
        (out / sub).symlink_to((members[0] / sub).resolve())
    print(f"{out}: {k} adapter(s), rank {r * k}, delta scale {args.scale}")


if __name__ == "__main__":
    main()
