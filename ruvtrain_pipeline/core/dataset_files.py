"""Dataset exports of the split set: JSONL (full + each split), a pretty JSON array, Parquet with a dataset card,
and a stats JSON. Same frame => same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from .catalog import Catalog
from .schema import EXAMPLE_SCHEMA, SPLITS, to_seed_records, write_jsonl


def dataset_stats(df: pl.DataFrame) -> dict[str, Any]:
    def counts(col: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in df.group_by(col).len().sort(col).iter_rows()}

    out: dict[str, Any] = {
        "total_examples": df.height,
        "by_category": counts("output_agent"),
        "by_agent_type": counts("agent_type"),
        "by_complexity": counts("complexity"),
        "by_model": counts("expected_model"),
        "by_domain": counts("domain"),
        "by_augmentation": counts("augmentation"),
        "avg_quality": round(float(df["quality_score"].mean() or 0.0), 4),
        "groups": int(df["group_id"].n_unique()),
    }
    if "split" in df.columns:
        out["by_split"] = counts("split")
    return out


def dataset_card(stats: dict[str, Any], catalog: Catalog, provenance: dict[str, Any], with_triplets: bool = False) -> str:
    header = [
        "---",
        "language: [en]",
        "license: mit",
        "task_categories: [text-classification]",
        "pretty_name: ruvtrain task-routing dataset",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split in SPLITS:
        header += [f"  - split: {split}", f"    path: data/{split}.parquet"]
    if with_triplets:
        header += ["- config_name: triplets", "  data_files:"]
        for split in SPLITS:
            header += [f"  - split: {split}", f"    path: triplets/{split}.parquet"]
    header.append("---")
    lines = header + [
        "",
        "# ruvtrain task-routing dataset",
        "",
        "Requests to an AI coding assistant labelled with the agent type that should handle them "
        f"({len(catalog.agent_types)} types, coarsened to {len(catalog.categories)} categories), the complexity, "
        "the domain and the cheapest adequate Claude tier. Generated from the hand-written template library in "
        "`ruvtrain_pipeline/catalog/` and augmented (paraphrase, complexity variation, domain transfer, noise).",
        "",
        "Splits are grouped: a base example and all of its augmentations are in the same split.",
        "",
        "| split | rows |",
        "|---|---|",
    ]
    for split in SPLITS:
        lines.append(f"| {split} | {stats.get('by_split', {}).get(split, 0)} |")
    lines += ["", "## Fields", ""]
    lines += [f"- `{k}`" for k in ("input", "context", "output_agent")]
    lines += ["- `metadata`: " + ", ".join(f"`{f}`" for f in EXAMPLE_SCHEMA if f not in ("input", "context", "output_agent"))]
    lines += ["", "## Provenance", "", "```json", json.dumps(provenance, indent=2, sort_keys=True), "```", ""]
    lines += ["Load with `datasets.load_dataset(\"parquet\", data_dir=\"<this folder>/data\")` or "
              "`datasets.load_dataset(\"<this folder>\")`"
              + (" (`name=\"triplets\"` for the training triplets)." if with_triplets else "."), ""]
    return "\n".join(lines)


def write_split_exports(
    df: pl.DataFrame, out: Path, catalog: Catalog, provenance: dict[str, Any], with_triplets: bool = False
) -> dict[str, Any]:
    """Write every export of the split set into `out`; returns the stats written to stats.json."""
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    write_jsonl(df, out / "full.jsonl")
    for split in SPLITS:
        part = df.filter(pl.col("split") == split)
        write_jsonl(part, out / f"{split}.jsonl")
        to_seed_records(part.select(list(EXAMPLE_SCHEMA))).write_parquet(out / "data" / f"{split}.parquet",
                                                                         statistics=False)
    records = to_seed_records(df.select(list(EXAMPLE_SCHEMA))).with_columns(pl.Series("split", df["split"]))
    (out / "full.json").write_text(json.dumps(records.to_dicts(), indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    stats = dataset_stats(df)
    (out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "README.md").write_text(dataset_card(stats, catalog, provenance, with_triplets), encoding="utf-8")
    return stats
