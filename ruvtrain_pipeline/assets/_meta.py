"""Helpers that turn core results into Dagster metadata (markdown tables, previews), and the DVC versioning step
every asset ends with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MaterializeResult, MetadataValue

from ..resources import DvcResource, PipelineStorage


def md_counts(counts: Mapping[str, Any], key: str = "value", total: int | None = None) -> MetadataValue:
    total = total if total is not None else sum(int(v) for v in counts.values())
    lines = [f"| {key} | count | share |", "|---|---:|---:|"]
    for k, v in counts.items():
        share = f"{100 * int(v) / total:.1f}%" if total else "-"
        lines.append(f"| {k} | {v} | {share} |")
    return MetadataValue.md("\n".join(lines))


def md_preview(df: pl.DataFrame, columns: list[str], n: int = 10) -> MetadataValue:
    head = df.select(columns).head(n)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in head.iter_rows():
        cells = [str(c).replace("|", "\\|").replace("\n", " ")[:140] for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))


def check(name: str, problems: list[str], **metadata: Any) -> AssetCheckResult:
    meta: dict[str, Any] = {k: v for k, v in metadata.items()}
    if problems:
        meta["problems"] = MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]))
    return AssetCheckResult(
        check_name=name, passed=not problems, severity=AssetCheckSeverity.ERROR, metadata=meta
    )


def versioned(context: AssetExecutionContext, storage: PipelineStorage, dvc: DvcResource,
              result: MaterializeResult) -> MaterializeResult:
    """Record the asset's freshly written folder with DVC and add its DVC hash and git commit to `result`'s
    metadata. Called as the asset's last step, so every successful materialization is versioned however it was
    launched (UI, schedule, sensor, CLI)."""
    name = context.asset_key.to_user_string()
    version = dvc.record(storage.asset_dir(name), log=context.log)
    return MaterializeResult(asset_key=result.asset_key, metadata={**(result.metadata or {}), **version},
                             check_results=result.check_results, data_version=result.data_version, tags=result.tags)
