"""Schedules: the quarterly retrain of the whole chain, the daily monitoring run (evaluation + feedback), and the
weekly human review (verdicts back in, a new sample out)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import yaml
from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from .jobs import full_pipeline_job

RETRAIN_CRON_ENV = "RUVTRAIN_RETRAIN_CRON"
DEFAULT_RETRAIN_CRON = "0 3 1 1,4,7,10 *"  # 03:00 UTC on the first day of each quarter
MONITORING_CRON = "0 6 * * *"
RETRAIN_TAG = "retrain"  # run tag holding the quarter (2027Q1); sensors.retrain_tag_sensor tags git after success
RETRAIN_CONFIG_ENV = "RUVTRAIN_RETRAIN_CONFIG"
PRODUCTION_CONFIG = Path(__file__).parent / "run_configs" / "production.yaml"


def retrain_run_config() -> dict:
    """The production run config the quarterly retrain sends ($RUVTRAIN_RETRAIN_CONFIG or run_configs/production.yaml);
    a clear error naming the file when it is missing or not a mapping."""
    path = Path(os.environ.get(RETRAIN_CONFIG_ENV, "").strip() or PRODUCTION_CONFIG)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: retrain run config not found (set ${RETRAIN_CONFIG_ENV})") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("ops", {}), dict):
        raise ValueError(f"{path}: a run config is a mapping with an 'ops' mapping")
    return config


def retrain_cron() -> str:
    return os.environ.get(RETRAIN_CRON_ENV, "").strip() or DEFAULT_RETRAIN_CRON


def quarter_tag(when: datetime) -> str:
    """`2027Q1` for any time in January-March 2027 (UTC)."""
    when = when.astimezone(UTC) if when.tzinfo else when
    return f"{when.year}Q{(when.month - 1) // 3 + 1}"


def make_quarterly_retrain(cron: str) -> ScheduleDefinition:
    @schedule(
        name="quarterly_retrain",
        cron_schedule=cron,
        job=full_pipeline_job,
        execution_timezone="UTC",
        description=f"Retrain the whole chain each quarter (cron from ${RETRAIN_CRON_ENV}, default "
        f"'{DEFAULT_RETRAIN_CRON}') with the production run config (run_configs/production.yaml or "
        f"${RETRAIN_CONFIG_ENV}); runs are tagged retrain=<year>Q<quarter>.",
    )
    def quarterly_retrain(context: ScheduleEvaluationContext) -> RunRequest:
        when = context.scheduled_execution_time or datetime.now(UTC)
        return RunRequest(run_config=retrain_run_config(), tags={RETRAIN_TAG: quarter_tag(when)})

    return quarterly_retrain


quarterly_retrain = make_quarterly_retrain(retrain_cron())

monitoring_job = define_asset_job(
    "monitoring_job",
    selection=AssetSelection.assets("evaluation_report", "feedback_examples", "monitoring_report"),
    description="Re-score the current router on the evaluation sets and on recent feedback (drift, freshness), and "
    "re-read the feedback inbox (quarantine).",
)
monitoring = ScheduleDefinition(
    name="monitoring",
    cron_schedule=MONITORING_CRON,
    job=monitoring_job,
    execution_timezone="UTC",
    description="Daily at 06:00 UTC: evaluation_report, feedback_examples and monitoring_report.",
)

REVIEW_CRON = "0 7 * * 1"  # Mondays 07:00 UTC
review_job = define_asset_job(
    "review_job",
    selection=AssetSelection.assets("review_verdicts", "review_sample"),
    description="Read returned review files back as feedback, then draw this week's review sample.",
)


@schedule(
    name="weekly_review",
    cron_schedule=REVIEW_CRON,
    job=review_job,
    execution_timezone="UTC",
    description="Mondays 07:00 UTC: returned verdicts into the feedback inbox, and 100 routes of the past week "
    "(stratified by agent type and low confidence) into review files.",
)
def weekly_review(context: ScheduleEvaluationContext) -> RunRequest:
    when = context.scheduled_execution_time or datetime.now(UTC)
    return RunRequest(run_config={"ops": {"review_sample": {"config": {"until": when.astimezone(UTC).isoformat()}}}},
                      tags={"review_week": f"{when.isocalendar().year}-W{when.isocalendar().week:02d}"})
