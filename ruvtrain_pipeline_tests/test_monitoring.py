"""Monitoring: recent feedback routed again by the current router, drift (low-confidence share) and freshness (model
age) as WARN checks on monitoring_report, and its place in the daily monitoring job."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, AssetKey, AssetMaterialization, DagsterInstance, materialize

from ruvtrain_pipeline.assets.feedback import feedback_examples
from ruvtrain_pipeline.assets.monitoring import monitoring_report
from ruvtrain_pipeline.core.feedback import FeedbackRow
from ruvtrain_pipeline.core.monitoring import (
    MonitoringSettings,
    drift_verdict,
    freshness_verdict,
    model_age_days,
    parse_as_of,
    recent_rows,
    score_routes,
)
from ruvtrain_pipeline.core.router import RouteResult
from ruvtrain_pipeline.definitions import defs
from ruvtrain_pipeline.resources import BaseEncoder, DvcResource, PipelineStorage

from .test_feedback import fb, write_lines

AS_OF = datetime(2026, 6, 30, 12, tzinfo=UTC)
AGENT_CATEGORY = {"coder": "coder", "tester": "tester", "debugger": "coder", "planner": "planner"}
TIERS = ["haiku", "sonnet", "opus"]


def row(request: str, days_ago: float, correct_agent: str = "coder", correct_tier: str = "sonnet",
        routed_agent: str = "coder", routed_tier: str = "sonnet", confidence: float | None = 0.9) -> FeedbackRow:
    return FeedbackRow("f.jsonl", 1, request, "", routed_agent, correct_agent, routed_tier, correct_tier,
                       AS_OF - timedelta(days=days_ago), confidence, None)


def route(agent: str | None, tier: str | None, confidence: float) -> RouteResult:
    return RouteResult(agent_type=agent, agent=AGENT_CATEGORY.get(agent or ""), complexity="Moderate", model=tier,
                       confidence=confidence, method="embedding" if agent else "unroutable", runner_up=None)


# ---------------------------------------------------------------- core
def test_recent_rows_is_the_window_up_to_as_of():
    rows = [row("old", 31), row("edge", 30), row("inside", 29.9), row("now", 0), row("future", -1)]
    assert [r.request for r in recent_rows(rows, AS_OF, 30)] == ["inside", "now"]
    assert [r.request for r in recent_rows(rows, AS_OF, 365)] == ["old", "edge", "inside", "now"]
    assert parse_as_of("2026-06-30T12:00:00") == AS_OF  # naive = UTC
    assert abs((parse_as_of("") - datetime.now(UTC)).total_seconds()) < 5


def test_score_routes_against_the_corrected_labels():
    rows = [
        row("a", 1, correct_agent="tester", routed_agent="coder", confidence=0.3),  # wrong then, right now
        row("b", 1, correct_agent="debugger", correct_tier="opus", routed_tier="opus"),  # right category, cheap tier
        row("c", 1, correct_agent="planner", correct_tier="haiku", routed_agent="planner", confidence=None),
        row("d", 1, correct_agent="coder"),  # unroutable now
    ]
    routes = [route("tester", "sonnet", 0.95), route("coder", "sonnet", 0.4), route("planner", "haiku", 0.8),
              route(None, None, 0.0)]
    scored, m = score_routes(rows, routes, AGENT_CATEGORY, TIERS, threshold=0.5)
    assert [s["agent_ok"] for s in scored] == [True, False, True, False]
    assert [s["category_ok"] for s in scored] == [True, True, True, False]
    assert [s["under_tier"] for s in scored] == [False, True, False, False]
    assert m["rows"] == 4 and m["agent_acc"] == 0.5 and m["category_acc"] == 0.75 and m["tier_acc"] == 0.5
    assert m["under_tier_rate"] == 0.25 and m["low_confidence_share"] == 0.5  # 0.4 and the unroutable 0.0
    assert m["logged_agent_acc"] == 0.5  # a was routed to coder (wrong); d was right then
    assert m["logged_low_confidence_share"] == round(1 / 3, 4)  # c logged no confidence
    assert (m["fixed_since_logged"], m["broken_since_logged"]) == (1, 1)
    empty_scored, empty = score_routes([], [], AGENT_CATEGORY, TIERS, 0.5)
    assert empty_scored == [] and empty["rows"] == 0 and empty["agent_acc"] is None
    with pytest.raises(ValueError, match="2 feedback rows but 1 routes"):
        score_routes(rows[:2], routes[:1], AGENT_CATEGORY, TIERS, 0.5)


def test_drift_and_freshness_verdicts():
    s = MonitoringSettings(max_low_confidence_share=0.3, min_rows=5, max_model_age_days=100)
    assert drift_verdict({"rows": 10, "low_confidence_share": 0.3}, s)[0] is True
    passed, note = drift_verdict({"rows": 10, "low_confidence_share": 0.4}, s)
    assert not passed and "40.0% of 10 recent routes" in note
    passed, note = drift_verdict({"rows": 4, "low_confidence_share": 1.0}, s)
    assert passed and "too few to judge" in note
    assert freshness_verdict(100.0, s)[0] is True
    passed, note = freshness_verdict(100.5, s)
    assert not passed and "retrain" in note
    assert model_age_days(AS_OF - timedelta(days=101, hours=12), AS_OF) == 101.5


# ---------------------------------------------------------------- asset, on the tiny pipeline's router
@pytest.fixture
def monitored(tiny_pipeline, tmp_path) -> Path:
    """A data folder holding the tiny pipeline's model (linked, not copied) and feedback around AS_OF."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("trained_adapter", "gguf_export"):
        (data / name).symlink_to(tiny_pipeline.data / name, target_is_directory=True)
    ts = lambda days: (AS_OF - timedelta(days=days)).isoformat()  # noqa: E731
    write_lines(tmp_path / "inbox" / "june.jsonl", [
        fb("write unit tests for the cart totals", correct_agent="tester", correct_tier="haiku", timestamp=ts(2)),
        fb("the login page throws a null pointer on submit", correct_agent="debugger", timestamp=ts(5)),
        fb("plan the migration of billing to the new API", correct_agent="planner", correct_tier="opus",
           timestamp=ts(12), confidence=0.2),
        fb("review this pull request for style issues", correct_agent="reviewer", timestamp=ts(29)),
        fb("document the payments endpoints", correct_agent="api-docs", correct_tier="haiku", timestamp=ts(45)),
        fb("tomorrow's request", correct_agent="coder", timestamp=ts(-1)),
    ])
    result = materialize([feedback_examples], resources={"storage": PipelineStorage(data_dir=str(data)),
                                                         "dvc": DvcResource()},
                         run_config={"ops": {"feedback_examples": {"config": {"feedback_dir": str(tmp_path / "inbox")}}}})
    assert result.success
    return data


def _monitor(data: Path, instance: DagsterInstance | None = None, **config):
    cfg = {"as_of": AS_OF.isoformat(), "min_rows": 1} | config
    return materialize([monitoring_report],
                       resources={"storage": PipelineStorage(data_dir=str(data)), "dvc": DvcResource(),
                                  "encoder": BaseEncoder()},
                       run_config={"ops": {"monitoring_report": {"config": cfg}}}, instance=instance)


def _checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_monitoring_report_rescores_recent_feedback(monitored):
    result = _monitor(monitored, max_low_confidence_share=1.0)
    assert result.success
    out = monitored / "monitoring_report"
    report = json.loads((out / "report.json").read_text())
    scored = [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]
    # the window holds the rows of the last 30 days, not the 45-day-old nor the future one
    assert [s["request"] for s in scored] == ["write unit tests for the cart totals",
                                              "the login page throws a null pointer on submit",
                                              "plan the migration of billing to the new API",
                                              "review this pull request for style issues"]
    assert report["feedback_rows_total"] == 6 and report["metrics"]["rows"] == 4
    assert report["model_dir"] == str(monitored / "gguf_export")  # the export is the served router
    m = report["metrics"]
    assert m["agent_acc"] == round(sum(s["agent"] == s["correct_agent"] for s in scored) / 4, 4)
    assert m["low_confidence_share"] == round(sum(s["confidence"] < 0.5 for s in scored) / 4, 4)
    assert m["logged_low_confidence_share"] == 0.25  # one of the four rows was logged at 0.2
    assert "# Monitoring report" in (out / "report.md").read_text()
    meta = result.asset_materializations_for_node("monitoring_report")[0].metadata
    assert meta["rows"].value == 4 and meta["agent_acc"].value == m["agent_acc"]
    assert "modification time" in meta["model_age_source"].value  # this instance never materialized the model
    checks = _checks(result)
    assert set(checks) == {"feedback_drift", "model_freshness"}
    assert all(c.passed and c.severity == AssetCheckSeverity.WARN for c in checks.values())


def test_drift_check_warns_on_many_low_confidence_routes(monitored):
    # every route below a confidence of 1.0 counts, and none may be low: the check warns, the run still succeeds
    result = _monitor(monitored, low_confidence_threshold=1.0, max_low_confidence_share=0.0)
    assert result.success
    drift = _checks(result)["feedback_drift"]
    assert not drift.passed and drift.severity == AssetCheckSeverity.WARN
    assert drift.metadata["low_confidence_share"].value > 0
    # the same feedback with a minimum of rows above what the window holds: too few to judge, no warning
    assert _checks(_monitor(monitored, low_confidence_threshold=1.0, max_low_confidence_share=0.0,
                            min_rows=5))["feedback_drift"].passed


def test_freshness_check_warns_on_an_old_model(monitored):
    metadata = monitored / "trained_adapter" / "metadata.json"
    made = datetime.fromtimestamp(metadata.stat().st_mtime, UTC)
    fresh = _checks(_monitor(monitored, as_of=(made + timedelta(days=99)).isoformat()))["model_freshness"]
    assert fresh.passed and fresh.metadata["model_age_days"].value == pytest.approx(99, abs=0.01)
    stale = _checks(_monitor(monitored, as_of=(made + timedelta(days=101)).isoformat()))["model_freshness"]
    assert not stale.passed and stale.severity == AssetCheckSeverity.WARN
    assert "101.0 days old (max 100)" in stale.metadata["note"].value
    assert _checks(_monitor(monitored, as_of=(made + timedelta(days=101)).isoformat(),
                            max_model_age_days=120))["model_freshness"].passed


def test_freshness_prefers_the_dagster_materialization_time(monitored):
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization(asset_key="trained_adapter"))
    recorded = datetime.fromtimestamp(instance.get_latest_materialization_event(AssetKey("trained_adapter")).timestamp,
                                      UTC)
    result = _monitor(monitored, instance=instance, as_of=(recorded + timedelta(days=101)).isoformat())
    meta = result.asset_materializations_for_node("monitoring_report")[0].metadata
    assert meta["model_age_source"].value == "Dagster materialization of trained_adapter"
    assert meta["model_age_days"].value == pytest.approx(101, abs=0.01)
    assert not _checks(result)["model_freshness"].passed


def test_no_feedback_yet_passes_drift_and_still_dates_the_model(tiny_pipeline, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "trained_adapter").symlink_to(tiny_pipeline.data / "trained_adapter", target_is_directory=True)
    result = _monitor(data, min_rows=20)
    assert result.success
    report = json.loads((data / "monitoring_report" / "report.json").read_text())
    assert report["metrics"]["rows"] == 0 and report["model_dir"] == str(data / "trained_adapter")
    assert "too few to judge" in report["drift"]["note"]
    assert _checks(result)["feedback_drift"].passed


def test_monitoring_job_runs_the_report_daily():
    job = defs.resolve_job_def("monitoring_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "evaluation_report", "feedback_examples", "monitoring_report"}
    assert defs.resolve_schedule_def("monitoring").job_name == "monitoring_job"
    graph = defs.resolve_asset_graph()
    specs = {k.name: graph.get_check_spec(k) for k in graph.asset_check_keys
             if k.asset_key == AssetKey("monitoring_report")}
    assert set(specs) == {"feedback_drift", "model_freshness"} and not any(s.blocking for s in specs.values())
