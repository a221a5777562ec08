"""Feedback: row validation and quarantine, dedupe, determinism, the feedback_examples asset in-process, the feedback
sensor's cursor, the schedules, and sensor -> run request -> job run without a daemon."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetKey,
    Definitions,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from ruvtrain_pipeline.assets.feedback import feedback_examples
from ruvtrain_pipeline.core.feedback import (
    FEEDBACK_DIR_ENV,
    FeedbackLabels,
    group_id,
    load_feedback,
    read_valid_rows,
    resolve_feedback_dir,
    scan_inbox,
)
from ruvtrain_pipeline.core.schema import validate_examples, write_jsonl
from ruvtrain_pipeline.definitions import all_assets, defs
from ruvtrain_pipeline.resources import AnthropicResource, BaseEncoder, DvcResource, PipelineStorage
from ruvtrain_pipeline.schedules import (
    DEFAULT_RETRAIN_CRON,
    RETRAIN_CRON_ENV,
    make_quarterly_retrain,
    monitoring,
    quarterly_retrain,
    retrain_cron,
)
from ruvtrain_pipeline.sensors import (
    MIN_ROWS_ENV,
    feedback_retrain_job,
    feedback_sensor,
    load_cursor,
    min_rows,
)


@pytest.fixture(scope="module")
def labels(real_catalog) -> FeedbackLabels:
    return FeedbackLabels.from_catalog(real_catalog)


def fb(request: str = "fix the flaky login test", **over) -> dict:
    row = {"request": request, "context": "CI fails one run in five", "routed_agent": "debugger",
           "correct_agent": "tester", "routed_tier": "sonnet", "correct_tier": "sonnet",
           "timestamp": "2026-03-01T10:00:00Z", "confidence": 0.8}
    return row | over


def write_lines(path: Path, lines: list, mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode + "b") as fh:
        for item in lines:
            if isinstance(item, bytes):
                fh.write(item + b"\n")
            else:
                fh.write((item if isinstance(item, str) else json.dumps(item)).encode() + b"\n")
    return path


# ---------------------------------------------------------------- core: validation, examples, dedupe, stats
def test_valid_rows_become_seed_examples(tmp_path, labels, real_catalog):
    write_lines(tmp_path / "a.jsonl", [
        fb("write tests for the cart", correct_agent="tester", correct_tier="haiku"),
        fb("build the payments flow", routed_agent="coder", correct_agent="coder", correct_tier="opus"),
        fb("audit the auth tokens", correct_agent="security-architect", correct_tier="haiku", context=None),
        fb("compare two ORMs", correct_agent="researcher", correct_tier="sonnet", domain="Database"),
    ])
    res = load_feedback(tmp_path, labels)
    assert res.stats["valid"] == 4 and res.quarantine == []
    ex = {r["input"]: r for r in res.examples.to_dicts()}
    tests = ex["write tests for the cart"]
    assert (tests["agent_type"], tests["output_agent"], tests["category"]) == ("tester", "coder", "Coder")
    assert (tests["complexity"], tests["expected_model"]) == ("Simple", "haiku")  # coder row: haiku only at Simple
    assert ex["build the payments flow"]["complexity"] == "Complex"
    assert "confirmed" in ex["build the payments flow"]["tags"] and "corrected" in tests["tags"]
    # security: opus everywhere, haiku nowhere -> Moderate, expected model from the table, flagged
    sec = ex["audit the auth tokens"]
    assert (sec["complexity"], sec["expected_model"], sec["context"]) == ("Moderate", "opus", "")
    assert "tier-outside-table" in sec["tags"]
    res_row = ex["compare two ORMs"]  # researcher sonnet = Moderate or Complex: ambiguous -> Moderate
    assert (res_row["complexity"], res_row["domain"]) == ("Moderate", "Database")
    assert tests["template_id"] == tests["augmentation"] == "feedback"
    assert tests["group_id"] == group_id("write tests for the cart") and len(tests["group_id"]) == len("feedback-") + 12
    assert res.stats["tier_outside_table"] == 1
    # the seed schema holds (augmentation 'feedback' is outside the generated kinds by design)
    problems = validate_examples(res.examples.with_columns(pl.lit("base").alias("augmentation")), real_catalog)
    assert problems == []


def test_malformed_rows_are_quarantined_with_file_line_and_reason(tmp_path, labels):
    no_tier = fb("no tier")
    del no_tier["correct_tier"]
    write_lines(tmp_path / "b.jsonl", [
        fb("fine row"),                                   # 1
        '{"request": "broken",',                          # 2
        "",                                               # 3 blank: skipped, not a row
        no_tier,                                          # 4
        fb("who?", correct_agent="wizard"),               # 5
        fb("tier?", routed_tier="gpt"),                   # 6
        fb("when?", timestamp="yesterday"),               # 7
        fb("sure?", confidence=1.5),                      # 8
        ["not", "an", "object"],                          # 9
        fb("   "),                                        # 10
        b'{"request": "caf\xe9"}',                        # 11
        fb("bool conf", confidence=True),                 # 12
    ])
    write_lines(tmp_path / "a.jsonl", [fb("other file", timestamp=12)])
    res = load_feedback(tmp_path, labels)
    got = [(q.file, q.line, q.reason) for q in res.quarantine]
    assert got == [
        ("a.jsonl", 1, "bad_timestamp"),
        ("b.jsonl", 2, "invalid_json"),
        ("b.jsonl", 4, "missing_field"),
        ("b.jsonl", 5, "unknown_agent"),
        ("b.jsonl", 6, "unknown_tier"),
        ("b.jsonl", 7, "bad_timestamp"),
        ("b.jsonl", 8, "invalid_field"),
        ("b.jsonl", 9, "not_an_object"),
        ("b.jsonl", 10, "invalid_field"),
        ("b.jsonl", 11, "not_utf8"),
        ("b.jsonl", 12, "invalid_field"),
    ]
    details = {q.line: q.detail for q in res.quarantine if q.file == "b.jsonl"}
    assert "correct_tier" in details[4] and "wizard" in details[5] and "confidence" in details[8]
    assert res.quarantine[1].raw == '{"request": "broken",'
    st = res.stats
    assert (st["rows_read"], st["valid"], st["quarantined"]) == (12, 1, 11)  # nothing dropped silently
    assert st["quarantined_by_reason"]["invalid_field"] == 3 and st["quarantined_by_reason"]["bad_timestamp"] == 2
    assert st["files"] == {"a.jsonl": {"valid": 0, "quarantined": 1}, "b.jsonl": {"valid": 1, "quarantined": 10}}


def test_dedupe_keeps_the_latest_row_per_request(tmp_path, labels):
    write_lines(tmp_path / "a.jsonl", [
        fb("same ask", correct_agent="coder", timestamp="2026-01-01T10:00:00+02:00"),  # 08:00 UTC
        fb("same ask", correct_agent="planner", timestamp="2026-01-01T09:00:00Z"),  # latest
    ])
    write_lines(tmp_path / "b.jsonl", [fb("  same ask  ", correct_agent="reviewer", timestamp="2026-01-01T08:30:00")])
    res = load_feedback(tmp_path, labels)
    assert res.examples.height == 1 and res.stats["duplicates_dropped"] == 2
    assert res.examples.row(0, named=True)["agent_type"] == "planner"


def test_output_is_deterministic_whatever_the_file_order(tmp_path, labels):
    rows = [fb(f"request number {i}", correct_agent=a, confidence=c)
            for i, (a, c) in enumerate([("coder", 0.9), ("planner", 0.2), ("tester", 0.4), ("architect", None)])]
    write_lines(tmp_path / "x" / "1.jsonl", rows[:2])
    write_lines(tmp_path / "x" / "2.jsonl", rows[2:])
    write_lines(tmp_path / "y" / "2.jsonl", rows[2:][::-1])
    write_lines(tmp_path / "y" / "1.jsonl", rows[:2][::-1])
    a, b = load_feedback(tmp_path / "x", labels), load_feedback(tmp_path / "x", labels)
    c = load_feedback(tmp_path / "y", labels)
    assert a.examples.equals(b.examples) and a.examples.equals(c.examples)
    write_jsonl(a.examples, tmp_path / "a.jsonl")
    write_jsonl(c.examples, tmp_path / "c.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()
    assert a.examples["agent_type"].to_list() == sorted(a.examples["agent_type"].to_list())
    # drift: 2 of the 3 rows with a confidence are below 0.5; every row was misrouted from debugger
    assert (a.stats["with_confidence"], a.stats["low_confidence"], a.stats["low_confidence_share"]) == (3, 2, 0.6667)
    assert a.stats["agent_mismatch_rate"] == 1.0 and a.stats["tier_mismatch_rate"] == 0.0


def test_missing_folder_is_an_empty_result(tmp_path, labels, monkeypatch):
    res = load_feedback(tmp_path / "nope", labels)
    assert res.examples.height == 0 and res.stats["rows_read"] == 0 and res.stats["low_confidence_share"] is None
    monkeypatch.setenv(FEEDBACK_DIR_ENV, str(tmp_path / "env"))
    assert resolve_feedback_dir() == tmp_path / "env" and resolve_feedback_dir("given") == Path("given")
    monkeypatch.delenv(FEEDBACK_DIR_ENV)
    assert resolve_feedback_dir() == Path("feedback_inbox")


# ---------------------------------------------------------------- asset
def _materialize_feedback(data_dir: Path, inbox: Path, **config):
    return materialize([feedback_examples], resources={"storage": PipelineStorage(data_dir=str(data_dir)),
                                                       "dvc": DvcResource()},
                       run_config={"ops": {"feedback_examples": {"config": {"feedback_dir": str(inbox)} | config}}})


def test_asset_writes_examples_quarantine_and_stats(tmp_path):
    inbox = tmp_path / "inbox"
    write_lines(inbox / "day1.jsonl", [fb("a"), fb("b", confidence=0.1), "not json", fb("a", correct_agent="coder")])
    result = _materialize_feedback(tmp_path / "data", inbox)
    assert result.success
    out = tmp_path / "data" / "feedback_examples"
    assert sorted(p.name for p in out.iterdir()) == ["examples.jsonl", "quarantine.jsonl", "stats.json",
                                                    "valid_rows.jsonl"]
    events = read_valid_rows(out / "valid_rows.jsonl")  # every valid row, duplicates too, with its timestamp
    assert [(e.request, e.line, e.correct_agent, e.confidence) for e in events] == [
        ("a", 1, "tester", 0.8), ("b", 2, "tester", 0.1), ("a", 4, "coder", 0.8)]
    assert events[0].timestamp == datetime(2026, 3, 1, 10, tzinfo=UTC)
    examples = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [e["input"] for e in examples] == ["a", "b"]
    assert set(examples[0]) == {"input", "context", "output_agent", "metadata"}
    assert examples[0]["metadata"]["agent_type"] == "coder"  # the later duplicate of "a" wins
    quarantine = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert quarantine == [{"file": "day1.jsonl", "line": 3, "reason": "invalid_json",
                           "detail": quarantine[0]["detail"], "raw": "not json"}]
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["valid"], stats["quarantined"], stats["examples"]) == (3, 1, 2)
    meta = result.asset_materializations_for_node("feedback_examples")[0].metadata
    assert meta["dagster/row_count"].value == 2 and meta["quarantined"].value == 1
    assert "invalid_json" in meta["quarantined_by_reason"].value
    assert meta["low_confidence_share"].value == pytest.approx(1 / 3, abs=1e-3)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "feedback_quarantine" and not check.passed and check.severity.value == "WARN"
    spec = next(iter(feedback_examples.check_specs))
    assert not spec.blocking


def test_asset_on_missing_folder_materializes_an_empty_set(tmp_path):
    result = _materialize_feedback(tmp_path / "data", tmp_path / "absent")
    assert result.success
    out = tmp_path / "data" / "feedback_examples"
    assert (out / "examples.jsonl").read_text() == "" and (out / "quarantine.jsonl").read_text() == ""
    meta = result.asset_materializations_for_node("feedback_examples")[0].metadata
    assert meta["dagster/row_count"].value == 0 and "does not exist" in meta["note"].value
    assert all(e.passed for e in result.get_asset_check_evaluations())


# ---------------------------------------------------------------- sensor
def _tick(cursor: str | None):
    return feedback_sensor.evaluate_tick(build_sensor_context(cursor=cursor))


@pytest.fixture
def inbox(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    monkeypatch.setenv(FEEDBACK_DIR_ENV, str(folder))
    monkeypatch.setenv(MIN_ROWS_ENV, "4")
    return folder


def test_sensor_cursor_counts_each_row_once(inbox):
    f = write_lines(inbox / "a.jsonl", [fb("r1"), fb("r2"), "{oops"])
    t1 = _tick(None)
    assert not t1.run_requests and "2 valid feedback row(s) pending, 4 needed" in t1.skip_message
    assert "1 malformed" in t1.skip_message
    state = json.loads(t1.cursor)
    assert state["files"]["a.jsonl"]["lines"] == 3 and state["files"]["a.jsonl"]["offset"] == f.stat().st_size
    # nothing new: the same rows are not counted again
    t2 = _tick(t1.cursor)
    assert "2 valid feedback row(s) pending" in t2.skip_message and json.loads(t2.cursor) == state
    # a half-written last line waits for its newline
    with f.open("ab") as fh:
        fh.write(json.dumps(fb("r3")).encode()[:20])
    t3 = _tick(t2.cursor)
    assert "2 valid" in t3.skip_message and json.loads(t3.cursor)["files"]["a.jsonl"]["lines"] == 3
    with f.open("ab") as fh:
        fh.write(json.dumps(fb("r3")).encode()[20:] + b"\n")
    write_lines(inbox / "b.jsonl", [fb("r4")])
    t4 = _tick(t3.cursor)
    [rr] = t4.run_requests
    assert rr.run_key.startswith("feedback-retrain-1-")
    assert rr.run_config == {"ops": {"feedback_examples": {"config": {"feedback_dir": str(inbox)}}}}
    assert rr.tags["feedback_rows"] == "4" and rr.tags["feedback_malformed_rows"] == "1"
    assert feedback_sensor.job_name == "feedback_retrain_job"
    state4 = json.loads(t4.cursor)
    assert state4["pending"] == {"valid": 0, "malformed": 0} and state4["requests"] == 1
    assert state4["files"]["a.jsonl"]["lines"] == 4 and state4["files"]["b.jsonl"]["lines"] == 1
    t5 = _tick(t4.cursor)
    assert "0 valid feedback row(s) pending" in t5.skip_message
    # a file replaced by a shorter one is read again from line 1
    write_lines(f, [fb("new r1")])
    t6 = _tick(t5.cursor)
    assert "1 valid feedback row(s) pending" in t6.skip_message
    assert json.loads(t6.cursor)["files"]["a.jsonl"]["lines"] == 1


def test_sensor_run_keys_differ_per_request(inbox, labels):
    write_lines(inbox / "a.jsonl", [fb(f"q{i}") for i in range(4)])
    first = _tick(None)
    write_lines(inbox / "a.jsonl", [fb(f"z{i}") for i in range(4)], mode="a")
    second = _tick(first.cursor)
    assert first.run_requests[0].run_key != second.run_requests[0].run_key
    assert json.loads(second.cursor)["requests"] == 2
    # scan_inbox with the final state finds nothing new
    assert scan_inbox(inbox, json.loads(second.cursor)["files"], labels).new_valid == 0


def test_sensor_settings_and_cursor_errors(monkeypatch):
    monkeypatch.delenv(MIN_ROWS_ENV, raising=False)
    assert min_rows() == 50
    monkeypatch.setenv(MIN_ROWS_ENV, "zero")
    with pytest.raises(ValueError, match=MIN_ROWS_ENV):
        min_rows()
    with pytest.raises(ValueError, match="not JSON"):
        load_cursor("{")
    with pytest.raises(ValueError, match="unknown shape"):
        load_cursor('{"a.jsonl": 3}')
    assert load_cursor(None)["pending"] == {"valid": 0, "malformed": 0}


# ---------------------------------------------------------------- schedules and wiring
@pytest.mark.parametrize(("when", "tag"), [(datetime(2027, 1, 1, 3, tzinfo=UTC), "2027Q1"),
                                           (datetime(2027, 4, 1, 3, tzinfo=UTC), "2027Q2"),
                                           (datetime(2026, 10, 1, 3, tzinfo=UTC), "2026Q4")])
def test_quarterly_retrain_tags_the_quarter(when, tag):
    data = quarterly_retrain.evaluate_tick(build_schedule_context(scheduled_execution_time=when))
    [rr] = data.run_requests
    assert rr.tags["retrain"] == tag


def test_schedule_crons_jobs_and_override(monkeypatch):
    monkeypatch.delenv(RETRAIN_CRON_ENV, raising=False)
    assert retrain_cron() == DEFAULT_RETRAIN_CRON == "0 3 1 1,4,7,10 *"
    assert quarterly_retrain.cron_schedule == DEFAULT_RETRAIN_CRON and quarterly_retrain.job_name == "full_pipeline_job"
    assert quarterly_retrain.execution_timezone == "UTC"
    assert monitoring.cron_schedule == "0 6 * * *" and monitoring.job_name == "monitoring_job"
    monkeypatch.setenv(RETRAIN_CRON_ENV, "0 4 15 * *")
    assert retrain_cron() == "0 4 15 * *"
    assert make_quarterly_retrain(retrain_cron()).cron_schedule == "0 4 15 * *"


def test_definitions_wire_schedules_sensor_and_jobs():
    Definitions.validate_loadable(defs)
    assert defs.resolve_schedule_def("quarterly_retrain") and defs.resolve_schedule_def("monitoring")
    assert defs.resolve_sensor_def("feedback_sensor")

    def keys(job: str) -> set[str]:
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys}

    assert keys("monitoring_job") == {"evaluation_report", "feedback_examples", "monitoring_report"}
    assert {"feedback_examples", "dataset_splits", "trained_adapter", "gguf_export", "evaluation_report"} <= \
        keys("feedback_retrain_job")
    assert "feedback_examples" in keys("full_pipeline_job")


# ---------------------------------------------------------------- end to end, no daemon
def test_feedback_file_to_sensor_to_job_run(inbox, tmp_path):
    write_lines(inbox / "2026-03-01.jsonl", [fb("route me", correct_agent="architect", correct_tier="opus"),
                                              fb("and me", correct_agent="documenter", correct_tier="haiku"),
                                              fb("me too", correct_agent="optimizer"), fb("last one")])
    [rr] = _tick(None).run_requests
    local = Definitions(
        assets=all_assets, jobs=[feedback_retrain_job], sensors=[feedback_sensor],
        resources={"storage": PipelineStorage(data_dir=str(tmp_path / "data")), "dvc": DvcResource(),
                   "anthropic": AnthropicResource(api_key=None), "encoder": BaseEncoder()},
    )
    job = local.resolve_job_def(feedback_sensor.job_name)
    result = job.execute_in_process(run_config=rr.run_config, tags=rr.tags,
                                    asset_selection=[AssetKey("feedback_examples")])
    assert result.success
    assert [m.asset_key.to_user_string() for m in result.get_asset_materialization_events()] == ["feedback_examples"]
    lines = (tmp_path / "data" / "feedback_examples" / "examples.jsonl").read_text().splitlines()
    got = {json.loads(line)["input"]: json.loads(line)["metadata"]["agent_type"] for line in lines}
    assert got == {"route me": "architect", "and me": "documenter", "me too": "optimizer", "last one": "tester"}
