"""`ruvtrain` command: thin wrappers over core for people who are not in the Dagster UI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .core.catalog import CATALOG_DIR, CatalogError, load_catalog, summarize

    try:
        catalog = load_catalog(args.dir or CATALOG_DIR)
    except CatalogError as err:
        print(f"invalid catalog: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summarize(catalog) | {"fingerprint": catalog.fingerprint()}, indent=2))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    """Base examples + augmentation + splits into OUT (same files as the dataset_splits asset), no Dagster."""
    from tqdm import tqdm

    from .core.augment import AugmentSettings, augment_examples, load_augment_data
    from .core.catalog import CATALOG_DIR, CatalogError, load_catalog
    from .core.dataset_files import write_split_exports
    from .core.io import atomic_dir
    from .core.splits import SplitRatios, assign_splits
    from .core.templates import GenerationError, compile_templates, generate_base_examples

    root = Path(args.catalog) if args.catalog else CATALOG_DIR
    steps = tqdm(total=4, desc="generate", unit="step")
    try:
        catalog = load_catalog(root)
        data = load_augment_data(root / "augment.yaml", catalog.complexities)
        ct = compile_templates(catalog)
        steps.update()
        rng = np.random.default_rng(args.seed)
        base = generate_base_examples(ct, args.examples_per_agent, rng)
        steps.update()
        result = augment_examples(base, ct, data, AugmentSettings(paraphrases_per_example=args.paraphrases), rng)
        steps.update()
        split = assign_splits(result.examples, SplitRatios(), rng)
        with atomic_dir(Path(args.out)) as tmp:
            stats = write_split_exports(split, tmp, catalog, {"seed": args.seed, "catalog": catalog.fingerprint()})
        steps.update()
    except (CatalogError, GenerationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        steps.close()
    print(json.dumps({"out": str(args.out), "rows": stats["total_examples"], "by_split": stats["by_split"],
                      "rejected": result.rejected}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ruvtrain", description="Task-router training pipeline tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("catalog", help="validate the catalog and print its counts")
    p.add_argument("--dir", default="", help="catalog folder (default: the packaged one)")
    p.set_defaults(func=_cmd_catalog)
    p = sub.add_parser("generate", help="generate the split dataset without Dagster")
    p.add_argument("--out", required=True)
    p.add_argument("--examples-per-agent", type=int, default=100)
    p.add_argument("--paraphrases", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--catalog", default="")
    p.set_defaults(func=_cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
