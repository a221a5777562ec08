"""The data half of the chain: seed_templates -> base_examples -> augmented_examples -> hard_negatives ->
dataset_splits. Each asset reads its upstream's materialized files, calls core, writes data/<asset>/ atomically."""


import json
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ..core.augment import AugmentSettings, augment_examples, load_augment_data
from ..core.catalog import CATALOG_DIR, Catalog, load_catalog, summarize
from ..core.dataset_files import dataset_stats, write_split_exports
from ..core.io import atomic_dir, dir_digest
from ..core.negatives import TRIPLET_SCHEMA, TripletSettings, template_triplets, triplet_report
from ..core.schema import (
    EXAMPLE_SCHEMA,
    SPLITS,
    WORKING_SCHEMA,
    check_expected_models,
    read_jsonl,
    validate_examples,
    write_jsonl,
)
from ..core.splits import (
    SplitRatios,
    assign_splits,
    deviation_tolerance,
    join_feedback,
    split_report,
    split_triplets,
)
from ..core.templates import compile_templates, generate_base_examples
from ..resources import DVC_POOL, AnthropicResource, BaseEncoder, DvcResource, PipelineStorage
from ._meta import check, md_counts, md_preview, versioned

GROUP = "dataset"
PREVIEW_COLUMNS = ["input", "agent_type", "complexity", "domain", "expected_model", "augmentation"]


def _rng(seed: int, stage: str) -> np.random.Generator:
    # one generator per stage, derived from the config seed, so stages are independent yet reproducible
    return np.random.default_rng([seed, int.from_bytes(stage.encode()[:8], "little")])


def _load_snapshot(storage: PipelineStorage) -> Catalog:
    path = storage.require("seed_templates", "catalog.json")
    return Catalog.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _read_examples(storage: PipelineStorage, asset_name: str) -> pl.DataFrame:
    return pl.read_parquet(storage.require(asset_name, "examples.parquet"))


def _write_examples(df: pl.DataFrame, out: Path) -> None:
    df.select(list(WORKING_SCHEMA)).write_parquet(out / "examples.parquet", statistics=False)
    write_jsonl(df, out / "examples.jsonl")


# ---------------------------------------------------------------- seed_templates
class SeedTemplatesConfig(Config):
    catalog_dir: str = Field(default="", description="Catalog folder; empty = the one packaged with the project.")
    min_templates_per_agent: int = Field(default=40, description="Each agent type needs at least this many templates.")


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    description="The hand-written template library and catalog, validated and snapshotted for the chain.",
    check_specs=[AssetCheckSpec("templates_per_agent", asset="seed_templates", blocking=True)],
)
def seed_templates(
    context: AssetExecutionContext, config: SeedTemplatesConfig, storage: PipelineStorage, dvc: DvcResource
) -> MaterializeResult:
    root = Path(config.catalog_dir) if config.catalog_dir else CATALOG_DIR
    catalog = load_catalog(root)
    augment_path = root / "augment.yaml"
    load_augment_data(augment_path, catalog.complexities)  # validate before anything is written
    summary = summarize(catalog)
    out_dir = storage.asset_dir("seed_templates")
    with atomic_dir(out_dir) as tmp:
        (tmp / "catalog.json").write_text(json.dumps(catalog.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
        shutil.copyfile(augment_path, tmp / "augment.yaml")
        with (tmp / "templates.jsonl").open("w", encoding="utf-8") as fh:
            for t in catalog.templates:
                fh.write(json.dumps({"id": t.id, "agent_type": t.agent_type, "input": t.input, "context": t.context,
                                     "complexity": t.complexity, "domain": t.domain, "tags": list(t.tags),
                                     "quality": t.quality}, ensure_ascii=False) + "\n")
    by_agent = summary["by_agent_type"]
    short = [f"agent type '{a}' has {by_agent.get(a, 0)} templates, needs {config.min_templates_per_agent}"
             for a in catalog.agent_types if by_agent.get(a, 0) < config.min_templates_per_agent]
    context.log.info("catalog %s: %d templates, %d placeholders", root, len(catalog.templates), len(catalog.vocabulary))
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            "templates": len(catalog.templates),
            "placeholders": len(catalog.vocabulary),
            "agent_types": len(catalog.agent_types),
            "catalog_fingerprint": catalog.fingerprint(),
            "catalog_dir": MetadataValue.path(str(root)),
            "path": MetadataValue.path(str(out_dir)),
            "by_agent_type": md_counts(by_agent, "agent_type"),
            "by_complexity": md_counts(summary["by_complexity"], "complexity"),
            "by_domain": md_counts(summary["by_domain"], "domain"),
        },
        check_results=[check("templates_per_agent", short, min_per_agent=config.min_templates_per_agent)],
        data_version=DataVersion(dir_digest(out_dir)),
    ))


# ---------------------------------------------------------------- base_examples
class BaseExamplesConfig(Config):
    examples_per_agent: int = Field(
        default=300, ge=1,
        description="Distinct base examples per agent type. 300 (every template filled about three times) routed the "
                    "realistic set better than 100 on both of two data draws each (benchmarks/RESULTS.md).")
    cover_templates: bool = Field(
        default=True,
        description="Draw each stratum's templates round-robin (every template once before any twice) instead of "
                    "weighted with replacement, which leaves about a third of the templates out at 100 per agent type.")
    seed: int = 42


def _example_checks(df: pl.DataFrame, catalog: Catalog, asset_name: str, quality: tuple[float, float],
                    balance_floor: float) -> list:
    problems = validate_examples(df, catalog, source=asset_name)
    unfilled = int((df["input"].str.contains(r"[{}]") | df["context"].str.contains(r"[{}]")).sum())
    counts = dict(df.group_by("agent_type").len().iter_rows())
    missing = [a for a in catalog.agent_types if a not in counts]
    lo, hi = min(counts.values(), default=0), max(counts.values(), default=0)
    balance = [f"agent types without examples: {missing}"] if missing else []
    if hi and lo / hi < balance_floor:
        balance.append(f"smallest agent type has {lo} rows vs largest {hi} (ratio {lo / hi:.2f} < {balance_floor})")
    q_bad = df.filter(~pl.col("quality_score").is_between(*quality))
    dupes = df.height - df["input"].n_unique()
    return [
        check("schema_valid", [p for p in problems if "unfilled" not in p and "expected_model" not in p],
              rows=df.height),
        check("no_unfilled_placeholders", [f"{unfilled} row(s) with a brace left in input/context"] if unfilled else [],
              rows_with_braces=unfilled),
        check("class_balance", balance, min_per_agent=lo, max_per_agent=hi),
        check("expected_model_consistent", check_expected_models(df, catalog, source=asset_name)),
        check("quality_range", [f"{q_bad.height} row(s) with quality outside {quality}"] if q_bad.height else [],
              min_quality=float(df["quality_score"].min() or 0), max_quality=float(df["quality_score"].max() or 0)),
        check("no_duplicate_inputs", [f"{dupes} duplicate input(s)"] if dupes else [], duplicates=dupes),
    ]


_EXAMPLE_CHECKS = ["schema_valid", "no_unfilled_placeholders", "class_balance", "expected_model_consistent",
                   "quality_range", "no_duplicate_inputs"]


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    deps=["seed_templates"],
    description="Templates filled by a seeded generator: N distinct examples per agent type, seed JSONL format.",
    check_specs=[AssetCheckSpec(n, asset="base_examples", blocking=True) for n in _EXAMPLE_CHECKS],
)
def base_examples(
    context: AssetExecutionContext, config: BaseExamplesConfig, storage: PipelineStorage, dvc: DvcResource
) -> MaterializeResult:
    catalog = _load_snapshot(storage)
    ct = compile_templates(catalog)
    df = generate_base_examples(ct, config.examples_per_agent, _rng(config.seed, "base_examples"),
                                cover_templates=config.cover_templates)
    out_dir = storage.asset_dir("base_examples")
    with atomic_dir(out_dir) as tmp:
        _write_examples(df, tmp)
    stats = dataset_stats(df)
    context.log.info("base_examples: %d rows", df.height)
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "examples_per_agent": config.examples_per_agent,
            "cover_templates": config.cover_templates,
            "templates_used": df["template_id"].n_unique(),
            "seed": config.seed,
            "path": MetadataValue.path(str(out_dir / "examples.jsonl")),
            "by_agent_type": md_counts(stats["by_agent_type"], "agent_type"),
            "by_complexity": md_counts(stats["by_complexity"], "complexity"),
            "by_model": md_counts(stats["by_model"], "model"),
            "by_domain": md_counts(stats["by_domain"], "domain"),
            "avg_quality": stats["avg_quality"],
            "preview": md_preview(df, PREVIEW_COLUMNS),
        },
        check_results=_example_checks(df, catalog, "base_examples", (0.80, 0.96), 0.95),
        data_version=DataVersion(dir_digest(out_dir)),
    ))


# ---------------------------------------------------------------- augmented_examples
class AugmentConfig(Config):
    paraphrases_per_example: int = Field(default=2, ge=0)
    complexity_variations: int = Field(default=1, ge=0)
    domain_transfers: int = Field(default=1, ge=0)
    noise_variants: int = Field(default=1, ge=0)
    seed: int = 42


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    deps=["base_examples"],
    description="Base examples plus paraphrases, complexity variations, domain transfers and noisy variants; "
    "invalid and duplicate rows filtered and counted.",
    check_specs=[AssetCheckSpec(n, asset="augmented_examples", blocking=True) for n in _EXAMPLE_CHECKS],
)
def augmented_examples(
    context: AssetExecutionContext, config: AugmentConfig, storage: PipelineStorage, dvc: DvcResource
) -> MaterializeResult:
    catalog = _load_snapshot(storage)
    ct = compile_templates(catalog)
    data = load_augment_data(storage.require("seed_templates", "augment.yaml"), catalog.complexities)
    base = _read_examples(storage, "base_examples")
    settings = AugmentSettings(
        paraphrases_per_example=config.paraphrases_per_example,
        complexity_variations=config.complexity_variations,
        domain_transfers=config.domain_transfers,
        noise_variants=config.noise_variants,
    )
    result = augment_examples(base, ct, data, settings, _rng(config.seed, "augmented_examples"))
    df = result.examples
    out_dir = storage.asset_dir("augmented_examples")
    with atomic_dir(out_dir) as tmp:
        _write_examples(df, tmp)
        (tmp / "augmentation_report.json").write_text(
            json.dumps({"produced": result.produced, "kept": result.kept, "rejected": result.rejected},
                       indent=2, sort_keys=True) + "\n", encoding="utf-8")
    stats = dataset_stats(df)
    for reason, n in result.rejected.items():
        context.log.info("augmented_examples: rejected %d row(s) as %s", n, reason)
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "base_rows": base.height,
            "rejected_total": sum(result.rejected.values()),
            "rejected_by_reason": md_counts(result.rejected or {"none": 0}, "reason"),
            "kept_by_augmentation": md_counts(result.kept, "augmentation"),
            "by_agent_type": md_counts(stats["by_agent_type"], "agent_type"),
            "by_complexity": md_counts(stats["by_complexity"], "complexity"),
            "by_model": md_counts(stats["by_model"], "model"),
            "by_domain": md_counts(stats["by_domain"], "domain"),
            "avg_quality": stats["avg_quality"],
            "seed": config.seed,
            "path": MetadataValue.path(str(out_dir / "examples.jsonl")),
            "preview": md_preview(df.filter(pl.col("augmentation") != "base"), PREVIEW_COLUMNS),
        },
        check_results=_example_checks(df, catalog, "augmented_examples", (0.80, 0.96), 0.80),
        data_version=DataVersion(dir_digest(out_dir)),
    ))


# ---------------------------------------------------------------- hard_negatives
class HardNegativesConfig(Config):
    provider: str = Field(
        default="auto",
        description="auto (claude when ANTHROPIC_API_KEY is set, else mined) | claude | mined | template",
    )
    hard_negative_ratio: float = Field(default=0.48, ge=0.0, le=1.0)
    triplets_per_anchor: int = Field(default=1, ge=1)
    claude_requests_per_pair: int = Field(default=1, ge=1)
    claude_items_per_request: int = Field(default=20, ge=2)
    claude_max_tokens: int = Field(default=4096, ge=256)
    claude_use_batches: bool = Field(default=False, description="Message Batches API (half price, slower).")
    claude_batch_poll_seconds: float = 10.0
    peer_benchmark_dir: str = Field(
        default="../shared/benchmarks/peer",
        description="Peer test cases: Claude output that quotes them is rejected (skipped when absent).",
    )
    seed: int = 42


def _peer_shingles(path_str: str) -> tuple[set, str]:
    from ..core.negatives.claude import shingles
    from ..core.peer import load_peer_cases

    cases = load_peer_cases(path_str)
    if cases is None:
        return set(), f"absent ({path_str})"
    return set().union(*(shingles(t) for t in cases["task"])), f"{cases.height} cases at {path_str}"


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    deps=["augmented_examples"],
    description="Training triplets (anchor, positive agent, negative agent) with ~48% hard negatives from the "
    "confusing agent pairs: Claude-written (key set) or mined with the base encoder (offline default).",
    check_specs=[AssetCheckSpec("triplets_valid", asset="hard_negatives", blocking=True)],
)
def hard_negatives(
    context: AssetExecutionContext,
    config: HardNegativesConfig,
    storage: PipelineStorage, dvc: DvcResource,
    anthropic: AnthropicResource,
    encoder: BaseEncoder,
) -> MaterializeResult:
    if config.provider not in ("auto", "claude", "mined", "template"):
        raise ValueError(f"hard_negatives.provider '{config.provider}' must be auto, claude, mined or template")
    provider = config.provider
    if provider == "auto":
        provider = "claude" if anthropic.has_key() else "mined"
    catalog = _load_snapshot(storage)
    examples = _read_examples(storage, "augmented_examples")
    settings = TripletSettings(config.hard_negative_ratio, config.triplets_per_anchor)
    rng = _rng(config.seed, "hard_negatives")
    meta: dict = {"provider": provider, "provider_config": config.provider}
    started = time.perf_counter()
    if provider == "claude":
        from ..core.negatives.claude import ClaudeSettings, ResponseCache, claude_triplets

        peer, peer_note = _peer_shingles(config.peer_benchmark_dir)
        claude_settings = ClaudeSettings(
            model=anthropic.model, items_per_request=config.claude_items_per_request,
            requests_per_pair=config.claude_requests_per_pair, max_tokens=config.claude_max_tokens,
            use_batches=config.claude_use_batches, batch_poll_seconds=config.claude_batch_poll_seconds,
        )
        claude_df, stats = claude_triplets(
            anthropic.client(), catalog, claude_settings, ResponseCache(anthropic.cache_dir),
            examples["input"].to_list(), peer,
        )
        rest = template_triplets(examples, catalog, settings, rng, extra_hard=claude_df.height)
        triplets = pl.concat([claude_df, rest])
        st = stats.as_dict()
        for name, reason_counts in (("claude_failures", st["failures"]), ("claude_rejects", st["rejects"])):
            for reason, n in reason_counts.items():
                context.log.warning("%s: %s = %d", name, reason, n)
        meta |= {
            "claude_model": anthropic.model,
            "claude_requests_planned": st["requests_planned"],
            "claude_requests_sent": st["requests_sent"],
            "claude_cache_hits": st["cache_hits"],
            "claude_input_tokens": st["input_tokens"],
            "claude_output_tokens": st["output_tokens"],
            "claude_cost_usd": st["cost_usd"],
            "claude_accepted_items": st["accepted"],
            "claude_batches": st["batch_ids"] and ", ".join(st["batch_ids"]) or "none",
            "claude_failures_by_reason": md_counts(st["failures"] or {"none": 0}, "reason"),
            "claude_rejects_by_reason": md_counts(st["rejects"] or {"none": 0}, "reason"),
            "peer_benchmark": peer_note,
        }
        report_extra = {"claude": st}
    elif provider == "mined":
        from ..core.negatives.mined import mined_triplets

        context.log.info("encoding %d anchors with %s", examples.height, encoder.resolved_path())
        embeddings = encoder.encode(examples["input"].to_list())
        triplets = mined_triplets(examples, embeddings, catalog, settings, rng)
        hard = triplets.filter(pl.col("is_hard"))
        meta |= {
            "encoder": encoder.resolved_path(),
            "mean_hard_similarity": round(float(hard["similarity"].mean() or 0.0), 4),
            "mean_easy_similarity": round(float(triplets.filter(~pl.col("is_hard"))["similarity"].mean() or 0.0), 4),
        }
        report_extra = {}
    else:
        triplets = template_triplets(examples, catalog, settings, rng)
        report_extra = {}
    elapsed = time.perf_counter() - started
    report = triplet_report(triplets, catalog, config.hard_negative_ratio) | report_extra
    report["provider"] = provider
    # timings go to the materialization's metadata only: the folder (and so its DVC hash and the dataset card's
    # provenance) stays byte-identical for the same config and seed
    seconds_per_1000 = round(1000 * elapsed / max(triplets.height, 1), 4)
    out_dir = storage.asset_dir("hard_negatives")
    with atomic_dir(out_dir) as tmp:
        triplets.write_parquet(tmp / "triplets.parquet", statistics=False)
        triplets.write_ndjson(tmp / "triplets.jsonl")
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    problems = []
    if abs(report["hard_ratio"] - config.hard_negative_ratio) > 0.05:
        problems.append(
            f"hard-negative ratio {report['hard_ratio']:.3f} not within 0.05 of {config.hard_negative_ratio}")
    if report["unknown_labels"]:
        problems.append(f"{report['unknown_labels']} triplet(s) with an unknown agent type")
    if report["positive_equals_negative"]:
        problems.append(f"{report['positive_equals_negative']} triplet(s) with positive == negative")
    context.log.info("hard_negatives (%s): %d triplets, hard ratio %.3f in %.1fs", provider, triplets.height,
                     report["hard_ratio"], elapsed)
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            "dagster/row_count": triplets.height,
            **meta,
            "hard_ratio": report["hard_ratio"],
            "target_ratio": config.hard_negative_ratio,
            "seconds": round(elapsed, 3),
            "seconds_per_1000_triplets": seconds_per_1000,
            "triplets_per_pair": md_counts(report["triplets_per_pair"], "pair"),
            "triplets_per_source": md_counts(report["triplets_per_source"], "source"),
            "path": MetadataValue.path(str(out_dir / "triplets.jsonl")),
            "preview": md_preview(triplets.filter(pl.col("is_hard")), ["anchor", "positive", "negative", "pair",
                                                                         "source"]),
        },
        check_results=[check("triplets_valid", problems, hard_ratio=report["hard_ratio"])],
        data_version=DataVersion(dir_digest(out_dir)),
    ))


# ---------------------------------------------------------------- dataset_splits
def _read_feedback(storage: PipelineStorage, catalog: Catalog) -> tuple[pl.DataFrame, str]:
    """The examples feedback_examples materialized (validated against this chain's catalog), or an empty frame when
    it never was."""
    path = storage.asset_dir("feedback_examples") / "examples.jsonl"
    if not path.exists():
        return pl.DataFrame(schema=EXAMPLE_SCHEMA), "never materialized"
    df = read_jsonl(path, catalog)
    return df, f"{df.height} example(s) from {path}"


class SplitConfig(Config):
    train: float = 0.70
    validation: float = 0.15
    test: float = 0.15
    seed: int = 42
    unit: str = Field(default="template", description="What is assigned to one split: 'template' (every row "
                      "rendered from a template in one split: validation/test measure new wordings) or 'group' "
                      "(a base example and its augmentations).")


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    deps=["augmented_examples", "hard_negatives", "feedback_examples"],
    description="70/15/15 train/validation/test, stratified on agent type x complexity; whole templates (or base-"
    "example groups) per split; JSONL, JSON, Parquet + dataset card, stats. Triplets follow their anchor's group. "
    "Valid routing "
    "feedback (feedback_examples, when materialized) joins the train split only, minus requests already generated.",
    check_specs=[
        AssetCheckSpec("split_leakage", asset="dataset_splits", blocking=True),
        AssetCheckSpec("stratum_proportions", asset="dataset_splits", blocking=True),
        AssetCheckSpec("schema_valid", asset="dataset_splits", blocking=True),
    ],
)
def dataset_splits(context: AssetExecutionContext, config: SplitConfig, storage: PipelineStorage,
                   dvc: DvcResource) -> MaterializeResult:
    catalog = _load_snapshot(storage)
    examples = _read_examples(storage, "augmented_examples")
    triplets = pl.read_parquet(storage.require("hard_negatives", "triplets.parquet"))
    ratios = SplitRatios(config.train, config.validation, config.test)
    split_df = assign_splits(examples, ratios, _rng(config.seed, "dataset_splits"), unit=config.unit)
    feedback, feedback_note = _read_feedback(storage, catalog)
    split_df, feedback_info = join_feedback(split_df, feedback)
    context.log.info("dataset_splits: feedback %s; %d row(s) joined train, %d dropped as already generated",
                     feedback_note, feedback_info["feedback_joined"], feedback_info["feedback_duplicates_dropped"])
    report = split_report(split_df, ratios, unit=config.unit)
    group_split = split_df.select("group_id", "split").unique("group_id", keep="first")
    triplets, triplet_info = split_triplets(triplets, group_split, ratios, _rng(config.seed, "triplet_splits"))
    orphan_triplets = int(triplets["split"].null_count())
    out_dir = storage.asset_dir("dataset_splits")
    provenance = {
        "catalog_fingerprint": catalog.fingerprint(),
        "augmented_examples": dir_digest(storage.asset_dir("augmented_examples")),
        "hard_negatives": dir_digest(storage.asset_dir("hard_negatives")),
        "seed": config.seed,
        "ratios": [config.train, config.validation, config.test],
        "split_unit": config.unit,
    }
    if feedback_info["feedback_joined"]:
        # only when feedback changed the data, so a split without feedback stays byte-identical to one from before
        provenance["feedback_examples"] = dir_digest(storage.asset_dir("feedback_examples"))
    with atomic_dir(out_dir) as tmp:
        stats = write_split_exports(split_df, tmp, catalog, provenance, with_triplets=True)
        for split in SPLITS:
            part = triplets.filter(pl.col("split") == split).select(list(TRIPLET_SCHEMA))
            part.write_ndjson(tmp / f"triplets_{split}.jsonl")
            (tmp / "triplets").mkdir(exist_ok=True)
            part.write_parquet(tmp / "triplets" / f"{split}.parquet", statistics=False)
        (tmp / "split_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tol = deviation_tolerance(report["smallest_stratum_units"])
    leak_problems = [f"{report['leaked_groups']} group(s) appear in more than one split"] if report["leaked_groups"] else []
    if config.unit == "template" and report["templates_in_several_splits"]:
        leak_problems.append(f"{report['templates_in_several_splits']} template(s) have rows in more than one split")
    if orphan_triplets:
        leak_problems.append(f"{orphan_triplets} triplet(s) whose anchor group is not in any split")
    dev = report["max_stratum_deviation_units"]
    prop_problems = [f"a stratum deviates {100 * dev:.1f} points from the target ratios (tolerance "
                     f"{100 * tol:.1f})"] if dev > tol + 1e-9 else []
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            "dagster/row_count": split_df.height,
            "rows_per_split": md_counts(report["rows_per_split"], "split"),
            **feedback_info,
            "feedback_source": feedback_note,
            "triplets_per_split": md_counts(dict(triplets.group_by("split").len().sort("split").iter_rows()), "split"),
            **{k: v for k, v in triplet_info.items()},
            "max_stratum_deviation_units": dev,
            "max_stratum_deviation_rows": report["max_stratum_deviation_rows"],
            "by_agent_type": md_counts(stats["by_agent_type"], "agent_type"),
            "by_category": md_counts(stats["by_category"], "category"),
            "path": MetadataValue.path(str(out_dir)),
            "preview": md_preview(split_df, [*PREVIEW_COLUMNS, "split"]),
        },
        check_results=[
            check("split_leakage", leak_problems, leaked_groups=report["leaked_groups"]),
            check("stratum_proportions", prop_problems, max_deviation=dev, tolerance=round(tol, 4)),
            check("schema_valid", validate_examples(split_df, catalog, source="dataset_splits")),
        ],
        data_version=DataVersion(dir_digest(out_dir)),
    ))
