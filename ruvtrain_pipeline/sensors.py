"""feedback_sensor: watches the feedback inbox and asks for a retrain (feedback_retrain_job) once enough new valid
feedback rows have arrived since the last request; the cursor remembers how far each file was read.
retrain_tag_sensor: after a successful quarterly retrain, commits dvc.lock to git and tags it retrain-<quarter>."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from dagster import (
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    run_status_sensor,
    sensor,
)

from .core.catalog import load_catalog
from .core.feedback import FeedbackLabels, resolve_feedback_dir, scan_inbox
from .resources import DvcResource, PipelineStorage
from .schedules import RETRAIN_TAG

MIN_ROWS_ENV = "RUVTRAIN_FEEDBACK_MIN_ROWS"
DEFAULT_MIN_ROWS = 50
CURSOR_VERSION = 1

feedback_retrain_job = define_asset_job(
    "feedback_retrain_job",
    selection=AssetSelection.assets("feedback_examples") | AssetSelection.groups("dataset", "training", "export",
                                                                                 "evaluation", "lifecycle"),
    description="Feedback examples, then the whole dataset -> training -> export -> evaluation chain, and the "
    "promotion gate (production_router).",
)


def min_rows() -> int:
    raw = os.environ.get(MIN_ROWS_ENV, "").strip()
    if not raw:
        return DEFAULT_MIN_ROWS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{MIN_ROWS_ENV}={raw!r} must be a positive integer")
    return int(raw)


def empty_cursor() -> dict[str, Any]:
    return {"version": CURSOR_VERSION, "files": {}, "pending": {"valid": 0, "malformed": 0}, "requests": 0}


def load_cursor(cursor: str | None) -> dict[str, Any]:
    """The sensor's JSON cursor: per inbox file {offset, lines, head} read so far, rows pending since the last
    retrain request, and how many requests were made. A cursor that is not ours is an error, not a silent reset
    (a reset would count every row again)."""
    if not cursor:
        return empty_cursor()
    try:
        state = json.loads(cursor)
    except json.JSONDecodeError as exc:
        raise ValueError(f"feedback_sensor cursor is not JSON ({exc.msg}); clear it to start over") from None
    if not isinstance(state, dict) or state.get("version") != CURSOR_VERSION or not isinstance(state.get("files"),
                                                                                                dict):
        raise ValueError(f"feedback_sensor cursor has an unknown shape (expected version {CURSOR_VERSION}); clear it "
                         "to start over")
    return empty_cursor() | state


def dump_cursor(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


@sensor(
    job=feedback_retrain_job,
    minimum_interval_seconds=300,
    description=f"Retrain when ${MIN_ROWS_ENV} (default {DEFAULT_MIN_ROWS}) new valid feedback rows have arrived in "
    "the inbox ($RUVTRAIN_FEEDBACK_DIR, default ./feedback_inbox) since the last retrain request.",
)
def feedback_sensor(context: SensorEvaluationContext) -> SensorResult:
    needed = min_rows()
    folder = resolve_feedback_dir()
    state = load_cursor(context.cursor)
    scan = scan_inbox(folder, state["files"], FeedbackLabels.from_catalog(load_catalog()))
    pending = {"valid": state["pending"]["valid"] + scan.new_valid,
               "malformed": state["pending"]["malformed"] + scan.new_malformed}
    for name in scan.restarted:
        context.log.warning("feedback file %s shrank or changed at its start: read again from line 1", name)
    if scan.new_by_file:
        context.log.info("new feedback rows: %s", scan.new_by_file)
    if pending["valid"] < needed:
        cursor = dump_cursor(state | {"files": scan.files, "pending": pending})
        return SensorResult(
            skip_reason=SkipReason(f"{pending['valid']} valid feedback row(s) pending, {needed} needed for a retrain "
                                   f"({pending['malformed']} malformed row(s) pending, not counted; inbox {folder})"),
            cursor=cursor,
        )
    requests = int(state["requests"]) + 1
    cursor = dump_cursor(state | {"files": scan.files, "pending": {"valid": 0, "malformed": 0}, "requests": requests})
    run_key = f"feedback-retrain-{requests}-{hashlib.sha256(cursor.encode()).hexdigest()[:12]}"
    return SensorResult(
        run_requests=[RunRequest(
            run_key=run_key,
            run_config={"ops": {"feedback_examples": {"config": {"feedback_dir": str(folder)}}}},
            tags={"feedback_rows": str(pending["valid"]), "feedback_malformed_rows": str(pending["malformed"])},
        )],
        cursor=cursor,
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="retrain_tag_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description=f"After a successful run tagged {RETRAIN_TAG}=<year>Q<n> (the quarterly_retrain schedule): commit "
    "dvc.lock to git (that file only) and tag the commit retrain-<year>Q<n>, so `git checkout retrain-2027Q1 && dvc "
    "checkout` restores that quarter's data and models.",
)
def retrain_tag_sensor(context: RunStatusSensorContext, dvc: DvcResource, storage: PipelineStorage) -> SkipReason | None:
    run = context.dagster_run
    quarter = run.tags.get(RETRAIN_TAG)
    if not quarter:
        return SkipReason(f"run {run.run_id} of {run.job_name} is no quarterly retrain (no '{RETRAIN_TAG}' tag)")
    message = f"retrain {quarter}: dvc.lock of run {run.run_id} ({run.job_name})"
    tagged = dvc.tag_retrain(storage.data_dir, quarter, message)
    if tagged is None:
        return SkipReason(f"data dir {storage.data_dir} is not in a DVC project: retrain {quarter} is not tagged")
    context.log.info(f"{tagged.tag} {'created at' if tagged.created else 'already at'} {tagged.commit[:12]}"
                     f"{' (dvc.lock committed)' if tagged.committed_lock else ''}")
    return None
