"""Helpers that turn core results into Dagster metadata (markdown tables, previews)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue


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
