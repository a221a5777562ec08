"""feedback_examples: routing feedback from the inbox folder turned into seed-format examples, with the malformed rows
quarantined (file, line, reason) and drift stats; the feedback sensor and the schedules build on it."""

import json
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ..core.catalog import CATALOG_DIR, load_catalog
from ..core.feedback import (
    FEEDBACK_DIR_ENV,
    FeedbackLabels,
    load_feedback,
    resolve_feedback_dir,
    write_valid_rows,
)
from ..core.io import atomic_dir, dir_digest
from ..core.schema import SchemaError, validate_examples, write_jsonl
from ..resources import DVC_POOL, DvcResource, PipelineStorage
from ._meta import md_counts, md_preview, versioned

GROUP = "feedback"
PREVIEW_COLUMNS = ["input", "agent_type", "complexity", "expected_model", "tags"]


class FeedbackConfig(Config):
    feedback_dir: str = Field(
        default="", description=f"Inbox of feedback *.jsonl files; empty = ${FEEDBACK_DIR_ENV} or ./feedback_inbox.")
    low_confidence_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Rows with a router confidence below this count as drift.")
    catalog_dir: str = Field(default="", description="Catalog folder; empty = the one packaged with the project.")


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    description="Routing feedback (request, routed vs correct agent and tier) from the inbox folder as seed-format "
    "examples, deduplicated by request (latest wins); malformed rows quarantined with file, line and reason.",
    check_specs=[AssetCheckSpec("feedback_quarantine", asset="feedback_examples", blocking=False,
                                description="WARN when any feedback row was quarantined.")],
)
def feedback_examples(context: AssetExecutionContext, config: FeedbackConfig, storage: PipelineStorage,
                      dvc: DvcResource) -> MaterializeResult:
    catalog = load_catalog(Path(config.catalog_dir) if config.catalog_dir else CATALOG_DIR)
    folder = resolve_feedback_dir(config.feedback_dir)
    result = load_feedback(folder, FeedbackLabels.from_catalog(catalog), config.low_confidence_threshold)
    df, stats = result.examples, result.stats
    problems = validate_examples(df, catalog, source="feedback_examples")
    if problems:
        raise SchemaError("; ".join(problems))
    out_dir = storage.asset_dir("feedback_examples")
    with atomic_dir(out_dir) as tmp:
        write_jsonl(df, tmp / "examples.jsonl")
        write_valid_rows(result.rows, tmp / "valid_rows.jsonl")  # with timestamps, for monitoring
        with (tmp / "quarantine.jsonl").open("w", encoding="utf-8") as fh:
            for q in result.quarantine:
                fh.write(json.dumps(q.as_dict(), ensure_ascii=False) + "\n")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not folder.is_dir():
        note = f"feedback folder {folder} does not exist: nothing to read"
    elif not stats["files"]:
        note = f"no *.jsonl files in {folder}"
    else:
        note = f"{len(stats['files'])} file(s) read from {folder}"
    context.log.info("feedback_examples: %s; %d valid, %d quarantined, %d examples", note, stats["valid"],
                     stats["quarantined"], df.height)
    by_reason = stats["quarantined_by_reason"]
    first = [f"- {q.file}:{q.line} {q.reason}: {q.detail}" for q in result.quarantine[:20]]
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "note": note,
            "feedback_dir": MetadataValue.path(str(folder.resolve())),
            "files": len(stats["files"]),
            "rows_read": stats["rows_read"],
            "valid": stats["valid"],
            "quarantined": stats["quarantined"],
            "duplicates_dropped": stats["duplicates_dropped"],
            "quarantined_by_reason": md_counts(by_reason or {"none": 0}, "reason"),
            "low_confidence_share": stats["low_confidence_share"] if stats["low_confidence_share"] is not None
            else "n/a (no row has a confidence)",
            "low_confidence_threshold": config.low_confidence_threshold,
            "agent_mismatch_rate": stats["agent_mismatch_rate"] if stats["agent_mismatch_rate"] is not None else "n/a",
            "tier_mismatch_rate": stats["tier_mismatch_rate"] if stats["tier_mismatch_rate"] is not None else "n/a",
            "by_agent_type": md_counts(stats["by_agent_type"] or {"none": 0}, "agent_type"),
            "path": MetadataValue.path(str(out_dir / "examples.jsonl")),
            "preview": md_preview(df, PREVIEW_COLUMNS),
        },
        check_results=[AssetCheckResult(
            check_name="feedback_quarantine",
            passed=not result.quarantine,
            severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": stats["quarantined"],
                      **({"problems": MetadataValue.md("\n".join(first))} if first else {})},
        )],
        data_version=DataVersion(dir_digest(out_dir)),
    ))
