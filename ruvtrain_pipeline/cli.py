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


def _cmd_keywords(args: argparse.Namespace) -> int:
    from .core.catalog import load_catalog
    from .core.keywords import KEYWORDS_FILE, derive_rules, write_rules

    rules = derive_rules(load_catalog())
    if args.write:
        write_rules(rules)
        print(f"wrote {sum(len(v) for v in rules.values())} rules to {KEYWORDS_FILE}")
    else:
        print(json.dumps(rules, indent=2))
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


def _cmd_route(args: argparse.Namespace) -> int:
    """One request -> one JSON object on stdout; or --input JSONL -> --output JSONL (input object + route fields).
    Exit 0 when every line routed, 1 when malformed lines were skipped (each reported with its line number),
    2 on a usage or model error."""
    from .core.jsonl import json_lines
    from .core.router import Router, RouterError, default_model_dir

    if bool(args.request) == bool(args.input):
        print("error: give a request text or --input FILE (not both)", file=sys.stderr)
        return 2
    try:
        tier = "catalog" if args.tier_confidence == "catalog" else (
            None if args.tier_confidence == "table" else float(args.tier_confidence))
        router = Router(Path(args.model) if args.model else default_model_dir(), backend=args.backend,
                        quantization=args.quantization, tier_confidence=tier)
        _ = router.encoder  # load now, so a broken model fails before any input is read
    except (RouterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.request:
        result = router.route(args.request, args.context, mode=args.mode)
        print(json.dumps({"input": args.request, **({"context": args.context} if args.context else {}),
                          **result.as_dict()}, ensure_ascii=False))
        return 0
    rows, skipped = [], 0
    for lineno, obj, error in json_lines(args.input):
        text = obj.get("input", obj.get("task")) if isinstance(obj, dict) else None
        context = obj.get("context") if isinstance(obj, dict) else None
        if error:
            reason = error
        elif not isinstance(text, str) or not text.strip():
            reason = "needs a non-empty 'input' (or 'task') string"
        elif context is not None and not isinstance(context, str):
            reason = "'context' must be a string"
        else:
            rows.append((obj, text, context))
            continue
        print(f"{args.input}:{lineno}: skipped: {reason}", file=sys.stderr)
        skipped += 1
    results = router.route_many([(t, c) for _, t, c in rows], mode=args.mode) if rows else []
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for (obj, _t, _c), res in zip(rows, results, strict=True):
            fh.write(json.dumps({**obj, **res.as_dict()}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    print(f"routed {len(rows)} request(s) to {out}; skipped {skipped} malformed line(s)", file=sys.stderr)
    return 1 if skipped else 0


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
    p = sub.add_parser("route", help="route a request (or a JSONL file of requests) to an agent and a Claude tier")
    p.add_argument("request", nargs="?", default="", help="the request text")
    p.add_argument("--context", default=None)
    p.add_argument("--input", default="", help="JSONL with 'input' (or 'task') and optional 'context' per line")
    p.add_argument("--output", default="routes.jsonl")
    p.add_argument("--model", default="", help="gguf_export or trained_adapter folder (default: the latest "
                   "materialized gguf_export under data/, else trained_adapter)")
    p.add_argument("--mode", choices=["hybrid", "embedding", "keyword"], default="hybrid")
    p.add_argument("--backend", choices=["torch", "llamacpp"], default="torch",
                   help="torch: sentence-transformers + LoRA adapter; llamacpp: the GGUF encoder (no torch import)")
    p.add_argument("--quantization", choices=["f32", "f16", "q8_0"], default="q8_0",
                   help="which GGUF encoder the llamacpp backend loads")
    p.add_argument("--tier-confidence", default="catalog",
                   help="tier policy: a probability in (0, 1) (cheapest tier covering the needed one with at least "
                   "that confidence), 'table' (routing table at the most likely labels), or 'catalog' (routing.yaml's "
                   "tier_confidence, the default)")
    p.set_defaults(func=_cmd_route)
    p = sub.add_parser("keywords", help="derive the keyword rules from the templates (print, or --write the catalog)")
    p.add_argument("--write", action="store_true")
    p.set_defaults(func=_cmd_keywords)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
