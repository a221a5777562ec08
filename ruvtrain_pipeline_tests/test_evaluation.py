"""evaluation_report on the tiny trained router, and the scoring arithmetic on hand-made cases."""

from __future__ import annotations

import json

import pytest

from ruvtrain_pipeline.core import evaluate as ev
from ruvtrain_pipeline.core import tiers
from ruvtrain_pipeline.core.catalog import load_catalog

from .conftest import PEER_DIR, eval_config


def _routing(catalog):
    return {"table": catalog.routing, "models": catalog.models, "tier_order": catalog.tier_order,
            "typical_request": catalog.typical_request}


def test_classification_metrics_by_hand():
    m = ev.classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", None], ["a", "b"])
    assert m["accuracy"] == 0.5
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["per_class"]["b"]["precision"] == 0.5 and m["per_class"]["b"]["recall"] == 0.5
    assert m["macro_f1"] == round((2 / 3 + 0.5) / 2, 4)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 1]]  # last column: unrouted


def test_tier_metrics_cost_and_under_tiering(real_catalog):
    routing = _routing(real_catalog)
    t = tiers.tier_metrics(["haiku", "sonnet", "opus", None], ["sonnet", "sonnet", "sonnet", "haiku"], routing)
    assert t["tier_acc"] == 0.25 and t["under_tier_rate"] == 0.25 and t["over_tier_rate"] == 0.5
    haiku, sonnet, opus = (tiers.request_price(routing, m) for m in ("haiku", "sonnet", "opus"))
    assert haiku == pytest.approx(0.007) and sonnet == pytest.approx(0.021) and opus == pytest.approx(0.105)
    assert t["cost_usd"] == pytest.approx(haiku + sonnet + 2 * opus)  # the unrouted one falls back to opus
    assert t["always_opus_cost_usd"] == pytest.approx(4 * opus)
    assert t["oracle_cost_usd"] == pytest.approx(3 * sonnet + haiku)


def test_score_routes_complexity_accuracy_by_hand(real_catalog):
    s = ev.EvalSet("hand", "hand", ["a", "b", "c", "d"], [None] * 4, ["coder"] * 4, ["coder"] * 4,
                   ["Simple", "Moderate", "Complex", "Simple"], ["haiku", "sonnet", "opus", "haiku"])
    args = (real_catalog.agent_types, {a: real_catalog.category_of(a) for a in real_catalog.agent_types},
            real_catalog.categories, _routing(real_catalog))
    m = ev.score_routes(s, ["coder"] * 4, ["haiku", "sonnet", "sonnet", "sonnet"], *args,
                        complexities=["Simple", "Moderate", "Moderate", "Moderate"])
    assert m["complexity_acc"] == 0.5 and m["tier_acc"] == 0.5 and m["under_tier_rate"] == 0.25
    assert "complexity_acc" not in ev.score_routes(s, ["coder"] * 4, ["opus"] * 4, *args)


def test_under_tier_upper_bound_by_hand():
    # zero under-tiered of n: the Wilson bound is z^2 / (n + z^2); z = 1.6449 at one-sided 95 %
    assert tiers.under_tier_upper_bound(0.0, 100, 0.95) == pytest.approx(1.6449 ** 2 / (100 + 1.6449 ** 2), rel=1e-3)
    assert tiers.under_tier_upper_bound(0.0192, 1144, 0.95) == pytest.approx(0.0271, abs=1e-4)
    assert tiers.under_tier_upper_bound(0.03, 500, 0.5) == 0.03  # level 0.5: the observed rate
    # more requests, a tighter bound; a higher level, a looser one
    assert tiers.under_tier_upper_bound(0.02, 4000, 0.95) < tiers.under_tier_upper_bound(0.02, 400, 0.95)
    assert tiers.under_tier_upper_bound(0.02, 400, 0.99) > tiers.under_tier_upper_bound(0.02, 400, 0.95)
    with pytest.raises(ValueError, match="no requests"):
        tiers.under_tier_upper_bound(0.0, 0, 0.95)


def test_second_annotation_scored_like_a_router_by_hand(tmp_path, real_catalog):
    routing = _routing(real_catalog)
    cat = {a: real_catalog.category_of(a) for a in real_catalog.agent_types}
    s = ev.EvalSet("hand", "hand", ["a", "b", "c", "d"], [None] * 4, ["coder", "coder", "planner", "reviewer"],
                   ["coder", "coder", "architecture", "reviewer"], ["Simple", "Complex", "Moderate", "Simple"],
                   ["haiku", "opus", "opus", "haiku"], ["r1", "r2", "r3", "r4"])
    path = tmp_path / "hand.jsonl"
    labels = [("r4", "reviewer", "Moderate"), ("r1", "refactorer", "Simple"), ("r2", "coder", "Moderate"),
              ("r3", "architect", "Moderate")]  # any order: matched by id
    path.write_text("".join(json.dumps({"id": i, "agent_type": a, "complexity": c}) + "\n" for i, a, c in labels))
    second = ev.load_second_annotation(path, s, cat, real_catalog.complexities)
    assert second == [("refactorer", "Simple"), ("coder", "Moderate"), ("architect", "Moderate"),
                      ("reviewer", "Moderate")]
    m = ev.annotator_metrics(s, second, cat, routing)
    assert m["agent_acc"] == 0.5 and m["category_acc"] == 1.0 and m["complexity_acc"] == 0.5
    # tiers at the annotator's labels: haiku (right), sonnet < opus (under), opus (right), sonnet > haiku (over)
    assert m["tier_acc"] == 0.5 and m["under_tier_rate"] == 0.25 and m["over_tier_rate"] == 0.25

    path.write_text("".join(json.dumps({"id": i, "agent_type": a, "complexity": c}) + "\n" for i, a, c in labels[:3]))
    with pytest.raises(ev.EvalSetError, match=r"hand\.jsonl: does not label the rows of hand .*missing ids \['r3'\]"):
        ev.load_second_annotation(path, s, cat, real_catalog.complexities)
    path.write_text(json.dumps({"id": "r1", "agent_type": "coder", "complexity": "Tiny"}) + "\n")
    with pytest.raises(ev.EvalSetError, match=r"hand\.jsonl:1: field 'complexity' 'Tiny'"):
        ev.load_second_annotation(path, s, cat, real_catalog.complexities)


def test_regressions_respect_direction_and_margin():
    prev = {"s.hybrid.agent_acc": 0.9, "s.hybrid.under_tier_rate": 0.01, "s.hybrid.tier_acc": 0.8}
    now = {"s.hybrid.agent_acc": 0.85, "s.hybrid.under_tier_rate": 0.05, "s.hybrid.tier_acc": 0.79}
    out = ev.regressions(now, prev, margin=0.02)
    assert len(out) == 2 and out[0].startswith("s.hybrid.agent_acc") and out[1].startswith("s.hybrid.under_tier")


def test_realistic_loader_names_file_and_line(tmp_path, real_catalog):
    agent_category = {a: d["category"] for a, d in real_catalog.agents.items()}
    bad = tmp_path / "r.jsonl"
    bad.write_text(json.dumps({"input": "fix it", "agent_type": "debugger", "complexity": "Simple"}) + "\n"
                   + json.dumps({"input": "x", "agent_type": "wizard", "complexity": "Simple"}) + "\n")
    with pytest.raises(ev.EvalSetError, match=r"r\.jsonl:2: field 'agent_type' 'wizard'"):
        ev.load_realistic(bad, agent_category, _routing(real_catalog), real_catalog.complexities)
    s = ev.load_realistic(real_catalog_path(), agent_category, _routing(real_catalog), real_catalog.complexities)
    assert len(s) >= 200 and s.has_tiers


def real_catalog_path():
    from ruvtrain_pipeline.core.catalog import CATALOG_DIR

    return CATALOG_DIR / "eval" / "realistic.jsonl"


def test_peer_sets_map_difficulty():
    catalog = load_catalog()
    sets = ev.load_peer_sets(PEER_DIR, {a: d["category"] for a, d in catalog.agents.items()}, _routing(catalog))
    if not sets:
        pytest.skip("peer benchmark absent")
    by_name = {s.name: s for s in sets}
    assert len(by_name["peer96"]) == 96 and by_name["peer96"].has_tiers
    assert len(by_name["peer20"]) == 20 and not by_name["peer20"].has_tiers  # no difficulty labels there


@pytest.mark.slow
def test_evaluation_report_files_metadata_and_checks(tiny_pipeline):
    result = tiny_pipeline.result
    out = tiny_pipeline.data / "evaluation_report"
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "metrics.json", "results.json", "accuracy_by_mode.png",
            "cost_vs_accuracy.png", "training_curves.png", "confusion_agent_realistic.png"} <= names
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "src=\"http" not in html and "<link" not in html
    md = (out / "report.md").read_text()
    for title in ("Headline", "Routing modes and backends", "Hard-negative accuracy", "Latency on this machine",
                  "Regression vs the previous report", "Per-class precision and recall"):
        assert f"## {title}" in md
    details = json.loads((out / "results.json").read_text())
    assert set(details["results"]) >= {"test", "realistic"}
    variants = set(details["results"]["realistic"])
    # (the tiny router averages its agent-type head over two views: the served view alone is scored beside it)
    assert variants == {"zero-shot base", "keyword", "embedding", "hybrid", "hybrid gguf-f32", "hybrid gguf-q8_0",
                        "hybrid (served view only)"}
    real = details["results"]["realistic"]["hybrid"]
    assert real["n"] >= 200 and 0 <= real["agent_acc"] <= 1 and "under_tier_rate" in real
    assert 0 <= real["complexity_acc"] <= 1 and "complexity_acc" not in details["results"]["realistic"]["zero-shot base"]
    assert "| complexity acc |" in md
    # the goals table shows what the blind second annotation scores against the realistic labels
    assert details["second_annotator"]["realistic"]["n"] == real["n"]
    assert "| second annotator |" in md.split("## Goals")[1].split("## ")[0]
    assert len(real["agent"]["confusion"]) == 13
    # the trained router separates held-out hard negatives better than the zero-shot base encoder
    hn = details["hard_negative_accuracy"]
    assert hn["trained (prototypes)"]["all"] > hn["zero-shot base (descriptions)"]["all"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["headline"]["realistic.hybrid.agent_acc"] == real["agent_acc"]
    mat = result.asset_materializations_for_node("evaluation_report")[0].metadata
    assert "| realistic |" in mat["headline"].value and mat["realistic_agent_acc"].value == real["agent_acc"]
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["realistic_accuracy_floor"].severity.value == "WARN"
    assert evals["no_regression"].passed is True  # first report: nothing to regress from


@pytest.mark.slow
def test_second_report_compares_with_the_previous_and_warns_on_regression(tiny_pipeline, tmp_path):
    import shutil

    from ruvtrain_pipeline.definitions import all_assets

    from .test_assets import _materialize

    data = tmp_path / "data"
    shutil.copytree(tiny_pipeline.data, data)
    evaluation = [a for a in all_assets if "evaluation_report" in {k.to_user_string() for k in a.keys}]
    cfg = {"ops": {"evaluation_report": {"config": eval_config()}}}
    result = _materialize(data, cfg, assets=evaluation)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["no_regression"].passed is True  # same model, same data: same accuracies
    assert "| metric | previous | now | delta |" in (data / "evaluation_report" / "report.md").read_text()
    # pretend the previous report was much better: the WARN check must fire, the run still succeeds
    mpath = data / "evaluation_report" / "metrics.json"
    metrics = json.loads(mpath.read_text())
    metrics["headline"]["realistic.hybrid.agent_acc"] = 1.0
    mpath.write_text(json.dumps(metrics))
    result = _materialize(data, cfg, assets=evaluation)
    assert result.success
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["no_regression"].passed is False and evals["no_regression"].severity.value == "WARN"
    assert "realistic.hybrid.agent_acc: 1.0000" in evals["no_regression"].metadata["problems"].value
    # a test split drawn again (another dataset_splits) measures other requests: its figures are not compared
    metrics = json.loads(mpath.read_text())
    metrics["headline"]["test.hybrid.agent_acc"] = 1.0
    mpath.write_text(json.dumps(metrics))
    result = _materialize(data, cfg, assets=evaluation)
    problems = {e.check_name: e for e in result.get_asset_check_evaluations()}["no_regression"].metadata["problems"]
    assert "test.hybrid.agent_acc: 1.0000" in problems.value  # same splits: compared
    rpath = data / "evaluation_report" / "results.json"
    results = json.loads(rpath.read_text())
    results["model"]["dataset_splits"] = "0" * 16
    rpath.write_text(json.dumps(results))
    metrics = json.loads(mpath.read_text())
    metrics["headline"]["test.hybrid.agent_acc"] = 1.0
    mpath.write_text(json.dumps(metrics))
    result = _materialize(data, cfg, assets=evaluation)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["no_regression"].passed is True  # only the test split got "worse", and it is not compared
    assert "The test split is not compared: this report's dataset_splits" in (
        data / "evaluation_report" / "report.md").read_text()
