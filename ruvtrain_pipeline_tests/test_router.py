"""Router runtime and `ruvtrain route` on a tiny trained model; keyword rules are derived data."""

from __future__ import annotations

import json

import pytest

from ruvtrain_pipeline.cli import main
from ruvtrain_pipeline.core.catalog import load_catalog
from ruvtrain_pipeline.core.keywords import KEYWORDS_FILE, KeywordMatcher, derive_rules

from .conftest import write_tiny_catalog

FIELDS = {"agent_type", "agent", "complexity", "model", "confidence", "method", "runner_up"}


def test_keyword_rules_file_is_the_derivation_from_templates():
    import yaml

    on_disk = yaml.safe_load(KEYWORDS_FILE.read_text())["rules"]
    assert on_disk == derive_rules(load_catalog())
    assert sum(len(v) for v in on_disk.values()) >= 15


def test_keyword_matcher_decides_only_when_clear():
    m = KeywordMatcher({"documenter": ["readme"], "planner": ["roadmap"]})
    assert m.decide("please write a README for this repo")[0] == "documenter"
    assert m.decide("roadmap and readme")[0] is None  # tie: not confident
    assert m.decide("fix the login bug")[0] is None
    assert m.decide("readmes")[0] is None  # whole words only


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    from ruvtrain_pipeline.definitions import all_assets

    from .test_assets import _materialize
    from .test_training import _config

    root = tmp_path_factory.mktemp("router")
    catalog_dir = write_tiny_catalog(root / "catalog")
    assert _materialize(root / "data", _config(catalog_dir, root), assets=all_assets).success
    return root / "data" / "trained_adapter"


@pytest.mark.slow
def test_route_one_request_prints_one_json_object(trained_dir, capsys):
    assert main(["route", "write a README for the billing service", "--model", str(trained_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert FIELDS <= set(out) and out["input"] == "write a README for the billing service"
    assert out["agent_type"] in load_catalog().agent_types
    assert out["model"] in ("haiku", "sonnet", "opus") and 0 <= out["confidence"] <= 1


@pytest.mark.slow
def test_route_file_all_modes_and_malformed_lines(trained_dir, tmp_path, capsys):
    src = tmp_path / "tasks.jsonl"
    src.write_text("\n".join([
        json.dumps({"input": "add password reset to the Django backend", "id": 1}),
        "{not json",
        json.dumps({"task": "write a README for the CLI", "context": "for new hires"}),
        json.dumps({"context": "no request here"}),
        json.dumps({"input": "plan the migration milestones for Q3", "context": 5}),
        json.dumps({"input": "why does the worker crash on startup?"}),
    ]) + "\n")
    for mode in ("hybrid", "embedding", "keyword"):
        out = tmp_path / f"routes_{mode}.jsonl"
        code = main(["route", "--input", str(src), "--output", str(out), "--model", str(trained_dir), "--mode", mode])
        err = capsys.readouterr().err
        assert code == 1
        assert f"{src}:2: skipped" in err and f"{src}:4: skipped" in err and f"{src}:5: skipped" in err
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 3 and rows[0]["id"] == 1 and rows[1]["task"] == "write a README for the CLI"
        assert all(FIELDS <= set(r) for r in rows)
        if mode == "embedding":
            assert {r["method"] for r in rows} == {"embedding"}
        if mode == "keyword":
            assert {r["method"] for r in rows} == {"keyword"}
            assert rows[1]["agent_type"] == "documenter"  # "readme" is a derived documenter rule
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"input": "review PR 12 for readability"}) + "\n")
    assert main(["route", "--input", str(good), "--output", str(tmp_path / "g.jsonl"), "--model",
                 str(trained_dir)]) == 0


def test_route_without_a_model_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RUVTRAIN_DATA_DIR", str(tmp_path))
    assert main(["route", "fix the flaky test"]) == 2
    assert "no trained router under" in capsys.readouterr().err
    assert main(["route", "x", "--model", str(tmp_path)]) == 2
    assert "not a trained router folder (missing adapter" in capsys.readouterr().err
