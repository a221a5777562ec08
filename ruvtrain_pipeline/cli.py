"""`ruvtrain` command: thin wrappers over core for people who are not in the Dagster UI."""

from __future__ import annotations

import argparse
import json
import os
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
        base = generate_base_examples(ct, args.examples_per_agent, rng, cover_templates=args.cover_templates)
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
        tier = args.tier_confidence if args.tier_confidence in ("catalog", "auto") else (
            None if args.tier_confidence == "table" else float(args.tier_confidence))
        router = Router(Path(args.model) if args.model else default_model_dir(), backend=args.backend,
                        quantization=args.quantization, tier_confidence=tier)
        _ = router.encoder  # load now, so a broken model fails before any input is read
        canary = _canary_setup(args, router, tier) if args.canary is not None else None
    except (RouterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.request:
        if canary:
            result = _route_canary(canary, [(args.request, args.context)], args.mode)[0]
        else:
            result = router.route(args.request, args.context, mode=args.mode).as_dict()
        print(json.dumps({"input": args.request, **({"context": args.context} if args.context else {}),
                          **result}, ensure_ascii=False))
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
    requests = [(t, c) for _, t, c in rows]
    if canary:
        results = _route_canary(canary, requests, args.mode) if rows else []
    else:
        results = [r.as_dict() for r in router.route_many(requests, mode=args.mode)] if rows else []
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for (obj, _t, _c), res in zip(rows, results, strict=True):
            fh.write(json.dumps({**obj, **res}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    print(f"routed {len(rows)} request(s) to {out}; skipped {skipped} malformed line(s)", file=sys.stderr)
    return 1 if skipped else 0


def _canary_setup(args: argparse.Namespace, champion, tier) -> dict:
    """The challenger router and the log for `--canary FRACTION` (champion = the router being served)."""
    from .core.canary import default_challenger_dir
    from .core.feedback import resolve_feedback_dir
    from .core.io import dir_digest
    from .core.router import Router

    if not 0 <= args.canary <= 1:
        raise ValueError(f"--canary must be a fraction in [0, 1], got {args.canary}")
    challenger_dir = Path(args.challenger) if args.challenger else default_challenger_dir()
    challenger = Router(challenger_dir, backend=args.backend, quantization=args.quantization, tier_confidence=tier)
    _ = challenger.encoder
    versions = {"champion": dir_digest(champion.model_dir), "challenger": dir_digest(challenger_dir)}
    if versions["champion"] == versions["challenger"] or _promoted_from(champion.model_dir) == versions["challenger"]:
        print(f"warning: the challenger {challenger_dir} is the router in production: both arms route alike",
              file=sys.stderr)
    return {"champion": champion, "challenger": challenger, "fraction": args.canary, "versions": versions,
            "feedback_dir": resolve_feedback_dir(args.feedback_dir)}


def _promoted_from(model_dir: Path) -> str | None:
    path = Path(model_dir) / "promotion.json"
    return json.loads(path.read_text(encoding="utf-8")).get("gguf_export") if path.exists() else None


def _route_canary(canary: dict, requests: list[tuple[str, str | None]], mode: str) -> list[dict]:
    """Route with both arms, serve each request from the arm its hash picks, log both decisions (feedback format)."""
    from datetime import UTC, datetime

    from .core.canary import append_rows, canary_row, log_path

    champion = canary["champion"].route_many(requests, mode=mode)
    challenger = canary["challenger"].route_many(requests, mode=mode)
    now = datetime.now(UTC)
    arms = {name: (str(canary[name].model_dir), canary["versions"][name]) for name in ("champion", "challenger")}
    rows = [canary_row(r, c, a.as_dict(), b.as_dict(), canary["fraction"], now, arms)
            for (r, c), a, b in zip(requests, champion, challenger, strict=True)]
    path = log_path(canary["feedback_dir"], now)
    append_rows(path, rows)
    print(f"canary: {sum(r['canary']['served_by'] == 'challenger' for r in rows)} of {len(rows)} request(s) served by "
          f"the challenger; both decisions logged to {path}", file=sys.stderr)
    served = []
    for row, a, b in zip(rows, champion, challenger, strict=True):
        pick = b if row["canary"]["served_by"] == "challenger" else a
        served.append({**pick.as_dict(), "served_by": row["canary"]["served_by"]})
    return served


def _cmd_rollback(args: argparse.Namespace) -> int:
    """Restore an earlier production router from DVC and record the rollback as a Dagster materialization of
    production_router (in $DAGSTER_HOME's instance, so the UI shows it)."""
    from .core import rollback as rb
    from .core.versioning import find_dvc_root

    data = Path(args.data_dir or os.environ.get("RUVTRAIN_DATA_DIR", "data"))
    out_dir = (data / "production_router").resolve()
    root = find_dvc_root(out_dir)
    if root is None:
        print(f"error: no DVC project at or above {out_dir}: nothing to roll back from", file=sys.stderr)
        return 2
    rel = out_dir.relative_to(root).as_posix()
    try:
        if args.list:
            current = rb.workspace_md5(root, rel)
            for v in rb.history(root, rel):
                print(f"{v.commit[:12]}  {v.md5}  {'(in place) ' if v.md5 == current else ''}{v.subject}")
            return 0
        target = rb.resolve_target(root, rel, args.to or None)
    except rb.RollbackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"rolling back {rel} to {target.commit[:12]} ({target.md5}): {target.subject}", file=sys.stderr)
    from dagster import DagsterInstance, materialize

    from .definitions import defs
    from .resources import PipelineStorage

    if os.environ.get("DAGSTER_HOME"):
        instance = DagsterInstance.get()
    else:
        print("warning: DAGSTER_HOME is not set: the rollback is recorded in a temporary instance the UI never sees",
              file=sys.stderr)
        instance = DagsterInstance.ephemeral()
    result = materialize(
        [defs.get_assets_def("production_router")], instance=instance, raise_on_error=False,
        resources={"storage": PipelineStorage(data_dir=str(data)), "dvc": defs.resources["dvc"]},
        run_config={"ops": {"production_router": {"config": {"rollback_to": target.commit}}}},
    )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        print(f"error: rollback failed: {failures[-1] if failures else 'see the run ' + result.run_id}", file=sys.stderr)
        return 1
    print(json.dumps({"restored": target.as_dict(), "path": str(out_dir), "run_id": result.run_id}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ruvtrain", description="Task-router training pipeline tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("catalog", help="validate the catalog and print its counts")
    p.add_argument("--dir", default="", help="catalog folder (default: the packaged one)")
    p.set_defaults(func=_cmd_catalog)
    p = sub.add_parser("generate", help="generate the split dataset without Dagster")
    p.add_argument("--out", required=True)
    p.add_argument("--examples-per-agent", type=int, default=300)
    p.add_argument("--cover-templates", action=argparse.BooleanOptionalAction, default=True,
                   help="draw each stratum's templates round-robin (every template used once before any twice)")
    p.add_argument("--paraphrases", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--catalog", default="")
    p.set_defaults(func=_cmd_generate)
    p = sub.add_parser("route", help="route a request (or a JSONL file of requests) to an agent and a Claude tier")
    p.add_argument("request", nargs="?", default="", help="the request text")
    p.add_argument("--context", default=None)
    p.add_argument("--input", default="", help="JSONL with 'input' (or 'task') and optional 'context' per line")
    p.add_argument("--output", default="routes.jsonl")
    p.add_argument("--model", default="", help="router folder (default: data/production_router, else the latest "
                   "gguf_export under data/, else trained_adapter)")
    p.add_argument("--mode", choices=["hybrid", "embedding", "keyword"], default="hybrid")
    p.add_argument("--backend", choices=["torch", "llamacpp"], default="torch",
                   help="torch: sentence-transformers + LoRA adapter; llamacpp: the GGUF encoder (no torch import)")
    p.add_argument("--quantization", choices=["f32", "f16", "q8_0"], default="q8_0",
                   help="which GGUF encoder the llamacpp backend loads")
    p.add_argument("--tier-confidence", default="catalog",
                   help="tier policy: a probability in (0, 1) (cheapest tier covering the needed one with at least "
                   "that confidence), 'table' (routing table at the most likely labels), 'auto' (the confidence "
                   "calibrated on validation and stored with the model) or 'catalog' (routing.yaml's tier_confidence, "
                   "the default; it says auto)")
    p.add_argument("--canary", type=float, default=None, metavar="FRACTION",
                   help="serve this fraction of requests (picked by a hash of the request, so always the same ones) "
                   "with the challenger, and log both routers' decisions to <feedback dir>/canary/")
    p.add_argument("--challenger", default="", help="challenger router folder for --canary (default: the latest "
                   "gguf_export under data/)")
    p.add_argument("--feedback-dir", default="", help="feedback folder for the canary log (default: "
                   "$RUVTRAIN_FEEDBACK_DIR or ./feedback_inbox)")
    p.set_defaults(func=_cmd_route)
    p = sub.add_parser("rollback", help="restore an earlier production router from DVC (by dvc.lock revision or tag) "
                       "and record the rollback in Dagster")
    p.add_argument("--to", default="", metavar="VERSION", help="git revision or tag whose dvc.lock names the router "
                   "to restore (default: the newest committed version that differs from the one in place)")
    p.add_argument("--list", action="store_true", help="list the versions in the git history of dvc.lock and exit")
    p.add_argument("--data-dir", default="", help="data folder (default: $RUVTRAIN_DATA_DIR or ./data)")
    p.set_defaults(func=_cmd_rollback)
    p = sub.add_parser("keywords", help="derive the keyword rules from the templates (print, or --write the catalog)")
    p.add_argument("--write", action="store_true")
    p.set_defaults(func=_cmd_keywords)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
