"""monitoring_report: the daily check of the served router on recent routing feedback. It routes the feedback of the
last N days again with the current router, scores it against the corrected labels, and warns on drift (too many
low-confidence routes) and on a stale model (freshness)."""

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ..core.io import atomic_dir, dir_digest
from ..resources import DVC_POOL, BaseEncoder, DvcResource, PipelineStorage
from ._meta import versioned

GROUP = "monitoring"


class MonitoringConfig(Config):
    window_days: int = Field(default=30, ge=1, description="Recent feedback: rows timestamped in the last N days.")
    low_confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0,
                                            description="A route with a confidence below this is low-confidence.")
    # typed requests route below 0.5 far less often than 30 % (13.9 % of the realistic set, README): a share
    # beyond it means the incoming requests moved away from what the router learned
    max_low_confidence_share: float = Field(
        default=0.30, ge=0.0, le=1.0, description="Drift: WARN when more recent routes than this are low-confidence.")
    min_rows: int = Field(default=20, ge=1, description="Fewer recent rows than this are too few to judge drift.")
    max_model_age_days: float = Field(default=100.0, gt=0, description="Freshness: WARN when the model is older.")
    mode: str = Field(default="hybrid", description="Routing mode: hybrid | embedding | keyword.")
    backend: str = Field(default="torch", description="Router backend: torch | llamacpp (needs a gguf_export).")
    as_of: str = Field(default="", description="ISO 8601 time the window and the model age are measured at; empty = "
                       "now (UTC).")


def _trained_at(context: AssetExecutionContext, storage: PipelineStorage, model_dir: Path) -> tuple[datetime, str]:
    """When the served model was made: the latest Dagster materialization of trained_adapter (else gguf_export) in
    this instance, else the modification time of the model's files (a model made elsewhere or restored by DVC)."""
    for name in ("trained_adapter", "gguf_export"):
        event = context.instance.get_latest_materialization_event(AssetKey(name))
        if event is not None:
            return datetime.fromtimestamp(event.timestamp, UTC), f"Dagster materialization of {name}"
    for path in (storage.asset_dir("trained_adapter") / "metadata.json", model_dir / "router-sidecar.gguf",
                 model_dir / "metadata.json"):
        if path.exists():
            return datetime.fromtimestamp(path.stat().st_mtime, UTC), f"modification time of {path}"
    raise FileNotFoundError(f"{model_dir}: no model file to date")


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    deps=["trained_adapter", "gguf_export", "feedback_examples"],
    description="Recent routing feedback (last N days) routed again by the current router (the latest gguf_export, "
    "else trained_adapter): accuracy against the corrected labels now vs at routing time, share of low-confidence "
    "routes (drift), and the model's age (freshness).",
    check_specs=[
        AssetCheckSpec("feedback_drift", asset="monitoring_report",
                       description="WARN when the share of low-confidence routes in recent feedback is above the "
                       "configured maximum."),
        AssetCheckSpec("model_freshness", asset="monitoring_report",
                       description="WARN when the current model is older than the configured number of days "
                       "(100 by default)."),
    ],
    kinds={"python"},
)
def monitoring_report(context: AssetExecutionContext, config: MonitoringConfig, storage: PipelineStorage,
                      encoder: BaseEncoder, dvc: DvcResource) -> MaterializeResult:
    from ..core.feedback import read_valid_rows
    from ..core.monitoring import (
        MonitoringSettings,
        drift_verdict,
        freshness_verdict,
        model_age_days,
        parse_as_of,
        recent_rows,
        render_markdown,
        score_routes,
    )
    from ..core.router import Router, default_model_dir

    settings = MonitoringSettings(config.window_days, config.low_confidence_threshold,
                                  config.max_low_confidence_share, config.min_rows, config.max_model_age_days)
    as_of = parse_as_of(config.as_of)
    model_dir = default_model_dir(storage.data_dir)
    rows_path = storage.asset_dir("feedback_examples") / "valid_rows.jsonl"
    rows = read_valid_rows(rows_path) if rows_path.exists() else []
    feedback_note = f"{len(rows)} valid row(s) in {rows_path}" if rows_path.exists() else \
        "feedback_examples never materialized: no feedback to score"
    recent = recent_rows(rows, as_of, config.window_days)
    router = Router(model_dir, backend=config.backend, base_model=encoder.resolved_path())
    routes = router.route_many([(r.request, r.context or None) for r in recent], config.mode)
    scored, metrics = score_routes(recent, routes, router.labels["agent_category"], router.labels["tiers"],
                                   config.low_confidence_threshold)
    trained_at, age_source = _trained_at(context, storage, model_dir)
    age = model_age_days(trained_at, as_of)
    drift_ok, drift_note = drift_verdict(metrics, settings)
    fresh_ok, fresh_note = freshness_verdict(age, settings)
    context.log.info("monitoring: %s; %d recent; %s; %s", feedback_note, len(recent), drift_note, fresh_note)

    report = {
        "as_of": as_of.isoformat(),
        "settings": dataclasses.asdict(settings),
        "model_dir": str(model_dir),
        "backend": config.backend,
        "mode": config.mode,
        "model_trained_at": trained_at.isoformat(),
        "model_age_source": age_source,
        "model_age_days": age,
        "feedback_rows_total": len(rows),
        "metrics": metrics,
        "drift": {"passed": drift_ok, "note": drift_note},
        "freshness": {"passed": fresh_ok, "note": fresh_note},
    }
    out_dir = storage.asset_dir("monitoring_report")
    with atomic_dir(out_dir) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(report), encoding="utf-8")
        with (tmp / "scored.jsonl").open("w", encoding="utf-8") as fh:
            for row in scored:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    # numbers only when there is something to measure, so the UI's plots over time skip empty days
    numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            **numeric,
            "model_age_days": age,
            "model_trained_at": trained_at.isoformat(),
            "model_age_source": age_source,
            "model_dir": MetadataValue.path(str(model_dir)),
            "feedback": feedback_note,
            "window": f"{config.window_days} days to {as_of.isoformat()}",
            "report": MetadataValue.md(render_markdown(report)),
            "path": MetadataValue.path(str(out_dir)),
        },
        check_results=[
            AssetCheckResult(check_name="feedback_drift", passed=drift_ok, severity=AssetCheckSeverity.WARN,
                             metadata={"note": drift_note, "recent_rows": metrics["rows"],
                                       "low_confidence_share": metrics["low_confidence_share"] if metrics["rows"]
                                       else "n/a", "max_low_confidence_share": config.max_low_confidence_share}),
            AssetCheckResult(check_name="model_freshness", passed=fresh_ok, severity=AssetCheckSeverity.WARN,
                             metadata={"note": fresh_note, "model_age_days": age,
                                       "max_model_age_days": config.max_model_age_days}),
        ],
        data_version=DataVersion(dir_digest(out_dir)),
    ))
