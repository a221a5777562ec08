"""Dataset exports of the split set: JSONL (full + each split), a pretty JSON array, Parquet with a dataset card
(core/cards.py), and a stats JSON. Same frame => same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from .cards import dataset_card, peer_overlap
from .catalog import Catalog
from .schema import EXAMPLE_SCHEMA, SPLITS, to_seed_records, write_jsonl

DEFAULT_PEER_DIR = "../shared/benchmarks/peer"


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


def write_split_exports(
    df: pl.DataFrame, out: Path, catalog: Catalog, provenance: dict[str, Any], with_triplets: bool = False,
    peer_dir: Path | str = DEFAULT_PEER_DIR,
) -> dict[str, Any]:
    """Write every export of the split set into `out`, with its dataset card (README.md; the peer cases at `peer_dir`
    are read only to state their overlap); returns the stats written to stats.json."""
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
    card = dataset_card(df, stats, catalog, provenance, with_triplets, peer_overlap(df, peer_dir))
    (out / "README.md").write_text(card, encoding="utf-8")
    return stats
