"""Router runtime and `ruvtrain route` on a tiny trained model; keyword rules are derived data."""

from __future__ import annotations

import json

import pytest

from ruvtrain_pipeline.cli import main
from ruvtrain_pipeline.core.catalog import load_catalog
from ruvtrain_pipeline.core.keywords import KEYWORDS_FILE, KeywordMatcher, derive_rules

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
def trained_dir(tiny_pipeline):
    return tiny_pipeline.data / "trained_adapter"


@pytest.fixture(scope="module")
def export_dir(tiny_pipeline):
    return tiny_pipeline.data / "gguf_export"


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
        json.dumps({"task": "write a tutorial for the CLI", "context": "for new hires"}),
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
        assert len(rows) == 3 and rows[0]["id"] == 1 and rows[1]["task"] == "write a tutorial for the CLI"
        assert all(FIELDS <= set(r) for r in rows)
        if mode == "embedding":
            assert {r["method"] for r in rows} == {"embedding"}
        if mode == "keyword":
            assert {r["method"] for r in rows} == {"keyword"}
            assert rows[1]["agent_type"] == "documenter"  # "tutorial": a derived rule in catalog/keywords.yaml
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"input": "review PR 12 for readability"}) + "\n")
    assert main(["route", "--input", str(good), "--output", str(tmp_path / "g.jsonl"), "--model",
                 str(trained_dir)]) == 0


def test_route_without_a_model_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RUVTRAIN_DATA_DIR", str(tmp_path))
    assert main(["route", "fix the flaky test"]) == 2
    assert "no trained router under" in capsys.readouterr().err
    assert main(["route", "x", "--model", str(tmp_path)]) == 2
    assert "neither a gguf_export folder" in capsys.readouterr().err
    assert main(["route", "x", "--model", str(tmp_path / "nope")]) == 2
    assert "no such router folder" in capsys.readouterr().err


@pytest.mark.slow
def test_llamacpp_backend_routes_like_torch(export_dir, tmp_path, capsys):
    src = tmp_path / "tasks.jsonl"
    tasks = ["add password reset to the Django backend", "write a README for the CLI",
             "why does the worker crash on startup?", "plan the migration milestones for Q3",
             "review PR 12 for readability", "threat model the payments API"]
    src.write_text("".join(json.dumps({"input": t}) + "\n" for t in tasks) + "[1, 2]\n")
    routes = {}
    for backend, quant in (("torch", "q8_0"), ("llamacpp", "f32"), ("llamacpp", "q8_0")):
        out = tmp_path / f"{backend}-{quant}.jsonl"
        code = main(["route", "--input", str(src), "--output", str(out), "--model", str(export_dir),
                     "--backend", backend, "--quantization", quant, "--mode", "embedding"])
        assert code == 1 and f"{src}:7: skipped" in capsys.readouterr().err
        routes[(backend, quant)] = [json.loads(line) for line in out.read_text().splitlines()]
    torch_rows = routes[("torch", "q8_0")]
    assert len(torch_rows) == len(tasks)
    for key in (("llamacpp", "f32"), ("llamacpp", "q8_0")):
        assert [r["agent_type"] for r in routes[key]] == [r["agent_type"] for r in torch_rows], key
        for a, b in zip(routes[key], torch_rows, strict=True):
            assert abs(a["confidence"] - b["confidence"]) < 0.05


@pytest.mark.slow
def test_llamacpp_backend_never_imports_torch(export_dir):
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from ruvtrain_pipeline.cli import main\n"
        f"rc = main(['route', 'set up CI for the monorepo', '--model', {str(export_dir)!r}, '--backend', 'llamacpp'])\n"
        "assert rc == 0, rc\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "NO_TORCH"
    assert json.loads(lines[0])["method"] in ("keyword", "embedding")


@pytest.mark.slow
def test_default_model_is_the_production_router(tiny_pipeline, capsys, monkeypatch):
    from ruvtrain_pipeline.core.router import default_model_dir

    monkeypatch.setenv("RUVTRAIN_DATA_DIR", str(tiny_pipeline.data))
    assert default_model_dir() == tiny_pipeline.data / "production_router"
    assert main(["route", "write unit tests for the parser", "--backend", "llamacpp"]) == 0
    assert FIELDS <= set(json.loads(capsys.readouterr().out))


def test_default_model_falls_back_to_the_export_then_the_adapter(tmp_path, monkeypatch):
    from ruvtrain_pipeline.core.router import SIDECAR, default_model_dir

    monkeypatch.setenv("RUVTRAIN_DATA_DIR", str(tmp_path))
    (tmp_path / "trained_adapter").mkdir()
    (tmp_path / "trained_adapter" / "heads.safetensors").touch()
    assert default_model_dir() == tmp_path / "trained_adapter"
    for name in ("gguf_export", "production_router"):
        (tmp_path / name).mkdir()
        (tmp_path / name / SIDECAR).touch()
        assert default_model_dir() == tmp_path / name


def test_keyword_prefilter_matches_plain_regex_search():
    from collections import Counter

    from ruvtrain_pipeline.core.keywords import _pattern

    m = KeywordMatcher({"documenter": ["readme", "how to"], "devops": ["ci/cd", "github actions"],
                        "coder": ["c++"], "planner": ["migration plan"]})
    texts = ["How-to guide + README", "set up CI/CD with GitHub   Actions", "port it to C++ and write a readme",
             "migration-plan for Q3", "migrationplan", "readme.md is stale", "no match here", "c++17 build",
             "write_readme"]
    for t in texts:
        plain = Counter(a for a, ps in m.rules.items() for p in ps if _pattern(p).search(t.lower()))
        assert m.scores(t) == plain, t


@pytest.mark.slow
def test_tier_policy_is_monotone_in_confidence(export_dir):
    import numpy as np

    from ruvtrain_pipeline.core.router import Router, catalog_tier_confidence

    router = Router(export_dir)
    # routing.yaml says auto: the router serves the confidence calibrated on validation and stored with the model
    assert catalog_tier_confidence() == "auto"
    assert router.tier_confidence == router.labels["tier_policy"]["tier_confidence"]
    assert Router(export_dir, tier_confidence=0.7).tier_confidence == 0.7
    tiers = router.labels["tiers"]
    # by hand: a security-architect request always needs the top tier, whatever the complexity
    sec = np.eye(len(router.labels["agent_types"]))[[router.labels["agent_types"].index("security-architect")]]
    p = router.tier_probabilities(sec, np.array([[0.6, 0.3, 0.1]]))
    assert np.allclose(p, [[0.0, 0.0, 1.0]]) and router.pick_tier(p, 0.5) == ["opus"]
    # a coder request: Simple/Moderate/Complex -> haiku/sonnet/opus in the routing table
    coder = np.eye(len(router.labels["agent_types"]))[[router.labels["agent_types"].index("coder")]]
    p = router.tier_probabilities(coder, np.array([[0.6, 0.3, 0.1]]))
    assert np.allclose(p, [[0.6, 0.3, 0.1]])
    assert [router.pick_tier(p, c)[0] for c in (0.5, 0.8, 0.95)] == ["haiku", "sonnet", "opus"]
    texts = ["fix the typo in the login button label", "design the multi-region failover for payments",
             "write unit tests for the date parser", "profile the slow checkout query"]
    emb = router.embed(texts)
    levels = [[tiers.index(r.model) for r in router.route_embedded(texts, emb, "embedding", tier_confidence=c)]
              for c in (0.3, 0.6, 0.9, 0.99)]
    for low, high in zip(levels, levels[1:], strict=False):
        assert all(h >= lo for lo, h in zip(low, high, strict=True))


@pytest.mark.slow
def test_bad_tier_confidence_is_a_usage_error(export_dir, capsys):
    assert main(["route", "x", "--model", str(export_dir), "--tier-confidence", "1.5"]) == 2
    assert "tier_confidence must be in (0, 1)" in capsys.readouterr().err


@pytest.mark.slow
def test_calibrated_tier_policy_is_the_cheapest_that_meets_the_target(export_dir):
    import polars as pl

    from ruvtrain_pipeline.core.catalog import load_catalog
    from ruvtrain_pipeline.core.router import Router, request_text
    from ruvtrain_pipeline.core.tiers import TIER_GRID, calibrate_tier_confidence, routing_spec

    router = Router(export_dir, tier_confidence=None)
    policy = router.labels["tier_policy"]
    assert policy["selected_on"] == "validation (with and without context, each form on its own)"
    assert policy["tier_confidence"] in TIER_GRID
    # the stored policy judged the upper bound of its under-tiering, not the observed rate, and for each request form
    # on its own: the largest of the two forms' bounds
    assert policy["confidence_level"] == 0.95 and policy["under_tier_upper_bound"] >= policy["under_tier_rate"]
    forms = policy["groups"]
    assert set(forms) == {"as written", "without context"} and sum(f["rows"] for f in forms.values()) == policy["rows"]
    assert policy["under_tier_upper_bound"] == max(f["under_tier_upper_bound"] for f in forms.values())
    # recompute on a labelled set: the chosen confidence meets the target, the next cheaper one does not
    df = pl.read_ndjson(export_dir.parent / "dataset_splits" / "test.jsonl")
    texts = [request_text(i, c) for i, c in zip(df["input"], df["context"], strict=True)]
    expected = [m["expected_model"] for m in df["metadata"]]
    emb = router.embed(texts)
    tiers = router.labels["tiers"]

    def rate(tau: float) -> float:  # under-tiering counted here, independently of evaluate.tier_metrics
        routed = [r.model or tiers[-1] for r in router.route_embedded(texts, emb, "hybrid", tier_confidence=tau)]
        return sum(tiers.index(r) < tiers.index(e) for r, e in zip(routed, expected, strict=True)) / len(expected)

    routing = routing_spec(load_catalog())
    for target in (0.0, 0.2, 0.5):
        got = calibrate_tier_confidence(router, texts, emb, expected, routing, target)
        assert got["under_tier_rate"] == round(rate(got["tier_confidence"]), 4)
        if got["met"]:
            assert rate(got["tier_confidence"]) <= target
            cheaper = [t for t in TIER_GRID if t < got["tier_confidence"]]
            assert all(rate(t) > target for t in cheaper)
        else:  # unreachable: the cheapest within the tolerance of the lowest under-tiering on the grid
            floor = min(rate(t) for t in TIER_GRID)
            assert floor > target and rate(got["tier_confidence"]) <= floor + got["tolerance"] + 1e-9
            assert all(rate(t) > floor + got["tolerance"] for t in TIER_GRID if t < got["tier_confidence"])
        assert [row[0] for row in got["curve"]] == list(TIER_GRID)
    # with an upper bound: the chosen confidence's bound meets the target, every cheaper one's does not
    got = calibrate_tier_confidence(router, texts, emb, expected, routing, 0.2, confidence_level=0.95)
    bound = {row[0]: row[4] for row in got["curve"]}
    assert all(row[4] >= row[1] for row in got["curve"])
    if got["met"]:
        assert got["under_tier_upper_bound"] == bound[got["tier_confidence"]] <= 0.2
        assert all(bound[t] > 0.2 for t in TIER_GRID if t < got["tier_confidence"])
    # per group: the chosen confidence meets the target in every group, each cheaper one misses it in some group
    halves = ["short" if len(t) < sorted(map(len, texts))[len(texts) // 2] else "long" for t in texts]

    def group_rate(tau: float, g: str) -> float:
        idx = [i for i, h in enumerate(halves) if h == g]
        routed = [r.model or tiers[-1] for r in router.route_embedded([texts[i] for i in idx], emb[idx], "hybrid",
                                                                       tier_confidence=tau)]
        return sum(tiers.index(r) < tiers.index(expected[i]) for r, i in zip(routed, idx, strict=True)) / len(idx)

    got = calibrate_tier_confidence(router, texts, emb, expected, routing, 0.05, groups=halves)
    assert set(got["groups"]) == {"short", "long"} and sum(v["rows"] for v in got["groups"].values()) == len(texts)
    for g, v in got["groups"].items():
        assert v["under_tier_rate"] == round(group_rate(got["tier_confidence"], g), 4)
    if got["met"]:
        assert all(group_rate(got["tier_confidence"], g) <= 0.05 for g in ("short", "long"))
        assert all(max(group_rate(t, g) for g in ("short", "long")) > 0.05
                   for t in TIER_GRID if t < got["tier_confidence"])
    whole = calibrate_tier_confidence(router, texts, emb, expected, routing, 0.05)
    assert "groups" not in whole and whole["tier_confidence"] <= got["tier_confidence"]
    with pytest.raises(ValueError, match="group names"):
        calibrate_tier_confidence(router, texts, emb, expected, routing, 0.05, groups=halves[1:])
    with pytest.raises(ValueError, match="no labelled requests"):
        calibrate_tier_confidence(router, [], emb[:0], [], routing, 0.02)


@pytest.mark.slow
def test_auto_tier_policy_falls_back_for_a_model_without_one(trained_dir, tmp_path):
    import shutil

    from ruvtrain_pipeline.core.router import FALLBACK_TIER_CONFIDENCE, Router

    old = tmp_path / "old_model"
    shutil.copytree(trained_dir, old)
    labels = json.loads((old / "labels.json").read_text())
    stored = labels.pop("tier_policy")["tier_confidence"]  # as a model trained before calibration existed
    (old / "labels.json").write_text(json.dumps(labels))
    assert Router(old, tier_confidence="auto").tier_confidence == FALLBACK_TIER_CONFIDENCE
    assert Router(trained_dir, tier_confidence="auto").tier_confidence == stored


def test_malformed_tier_confidence_in_routing_yaml_names_the_file(tmp_path):
    from ruvtrain_pipeline.core.router import catalog_tier_confidence

    bad = tmp_path / "routing.yaml"
    bad.write_text("tier_confidence: cheap\n")
    with pytest.raises(ValueError, match=r"routing\.yaml: tier_confidence must be 'auto', a number"):
        catalog_tier_confidence(bad)
    bad.write_text("tier_confidence: 0.75\n")
    assert catalog_tier_confidence(bad) == 0.75


def test_text_features_by_hand_and_the_heads_input_width():
    import math

    import numpy as np

    from ruvtrain_pipeline.core.router import MAX_FEATURE_WORDS, RouterError, head_input, text_features

    f = text_features(["fix the flaky test, then rerun CI and report", "", "word " * 5000])
    # 9 words; clauses split at ',', 'then' and 'and': "fix the flaky test" / "rerun CI" / "report"
    assert np.allclose(f[0], [math.log(10) - 3.0, math.log(4) - 1.5], atol=1e-6)
    assert np.allclose(f[1], [-3.0, -1.5])
    assert np.isclose(f[2, 0], math.log1p(MAX_FEATURE_WORDS) - 3.0)  # a pasted log does not dominate
    emb = np.ones((3, 4), dtype=np.float32)
    assert head_input(emb, ["a", "b", "c"], 4) is emb  # heads trained without features read the embedding alone
    assert head_input(emb, ["a", "b", "c"], 6).shape == (3, 6)
    with pytest.raises(RouterError, match="read 9 inputs"):
        head_input(emb, ["a", "b", "c"], 9)


def test_model_with_length_features_reads_them(trained_dir, tmp_path):
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    from ruvtrain_pipeline.core.router import Router

    texts = ["add a retry to the payment webhook handler",
             "plan the migration of every service to the new message bus, with a rollback path, across all regions"]
    plain = Router(trained_dir)
    emb = plain.embed(texts)
    heads = load_file(str(trained_dir / "heads.safetensors"))
    for scale, same in ((0.0, True), (5.0, False)):
        model = tmp_path / f"features-{scale}"
        shutil.copytree(trained_dir, model)
        # two feature columns appended to the complexity head (zero for the agent head): weight 0 routes as before
        wide = {k: (np.hstack([v, np.zeros((v.shape[0], 2), v.dtype)]) if v.ndim == 2 else v) for k, v in heads.items()}
        wide["complexity.weight"][:, -2] = scale * np.array([-1.0, 0.0, 1.0][: wide["complexity.weight"].shape[0]])
        save_file(wide, str(model / "heads.safetensors"))
        featured = Router(model)
        a = [r.as_dict() for r in plain.route_embedded(texts, emb, tier_confidence=None)]
        b = [r.as_dict() for r in featured.route_embedded(texts, emb, tier_confidence=None)]
        assert (a == b) is same
    # the complexity logits move by exactly weight x feature: the longer request toward Complex
    from ruvtrain_pipeline.core.router import text_features

    shift = featured.heads(emb, texts)[1] - plain.heads(emb, texts)[1]
    words = text_features(texts)[:, 0]
    assert np.allclose(shift, 5.0 * words[:, None] * np.array([[-1.0, 0.0, 1.0]]), atol=1e-4)
    assert words[1] > words[0]


def test_keyword_decision_keeps_the_embedding_uncertainty_for_the_tier(export_dir):
    import numpy as np

    from ruvtrain_pipeline.core.router import Router

    router = Router(export_dir, tier_confidence=0.8)
    tiers, agents = router.labels["tiers"], router.labels["agent_types"]
    texts = [f"{rule_text} in the billing service" for rule_text in
             ("write a tutorial", "benchmark the endpoint", "document the API", "refactor the module",
              "threat model the login", "set up the CI pipeline")]
    emb = router.embed(texts)
    hybrid = router.route_embedded(texts, emb, "hybrid")
    rule_only = router.route_embedded(texts, emb, "keyword")
    a_prob, cx_logits = router.heads(emb, texts)
    cx = np.exp(cx_logits - cx_logits.max(-1, keepdims=True))
    cx /= cx.sum(-1, keepdims=True)
    by_keyword = [i for i, r in enumerate(hybrid) if r.method == "keyword"]
    assert by_keyword, "no keyword rule fired on the probe texts"
    for i in by_keyword:
        emb_tier = router.pick_tier(router.tier_probabilities(a_prob[i : i + 1], cx[i : i + 1]), 0.8)[0]
        assert hybrid[i].agent_type == rule_only[i].agent_type
        # the rule's agent type and the heads' agent-type uncertainty both covered: the higher of the two tiers
        assert tiers.index(hybrid[i].model) == max(tiers.index(rule_only[i].model), tiers.index(emb_tier))
    assert agents  # the label space is the catalog's


@pytest.mark.slow
def test_view_average_reads_a_requests_two_views(tiny_pipeline):
    """A router trained with view_average (the default) averages its agent-type head over request + context and the
    request alone, for requests that carry a context; complexity and everything else read the served view; the
    tier policy, the export, the card and the report carry it."""
    import numpy as np

    from ruvtrain_pipeline.core.router import RequestViews, Router, RouterError, request_text

    export_dir = tiny_pipeline.data / "gguf_export"
    assert json.loads((tiny_pipeline.data / "trained_adapter" / "labels.json").read_text())["view_average"] is True
    requests = [("why does the worker crash on startup?", "stack trace attached: KeyError in the billing job"),
                ("write a README for the CLI", None),
                ("", "context without a request"),
                ("plan the Q3 migration", "   "),
                ("???", "the billing job")]
    for backend in ("torch", "llamacpp"):
        router = Router(export_dir, backend=backend, quantization="f32", tier_confidence=0.8)
        served = Router(export_dir, backend=backend, quantization="f32", tier_confidence=0.8, view_average=False)
        assert router.view_average and not served.view_average
        texts, emb, views = router.embed_requests(requests)
        assert texts == [request_text(r, c) for r, c in requests]
        # only the first request has both a context and a request of its own: a context alone is routed as the
        # served text, and so is a request with nothing to route on
        assert views.rows == [0] and views.texts == [requests[0][0]]
        a_prob, cx = router.heads(emb, texts, views)
        # computed independently: the served router's heads on each view embedded on its own
        a_full, cx_full = served.heads(served.embed([texts[0]]), [texts[0]])
        a_bare, _ = served.heads(served.embed([requests[0][0]]), [requests[0][0]])
        assert np.allclose(a_prob[0], (a_full[0] + a_bare[0]) / 2, atol=1e-4)
        assert np.allclose(cx[0], cx_full[0], atol=1e-3)  # complexity: the served view alone
        plain, _ = served.heads(emb, texts)
        assert np.array_equal(a_prob[1:], plain[1:])  # no context: unchanged
        assert not np.allclose(a_prob[0], plain[0])
        # route_many is route_embedded with the views; without them the router reads the served view alone
        many = [r.as_dict() for r in router.route_many(requests)]
        assert many == [r.as_dict() for r in router.route_embedded(texts, emb, views=views)]
        if many[0]["method"] == "embedding":
            assert many[0]["confidence"] == round(float(a_prob[0].max()), 4)
        # (embedded in another batch: llama.cpp's embeddings move in the last digits)
        alone = [r.as_dict() for r in served.route_many(requests)]
        without_views = [r.as_dict() for r in router.route_embedded(texts, emb)]
        assert [{k: v for k, v in r.items() if k != "confidence"} for r in alone] == \
            [{k: v for k, v in r.items() if k != "confidence"} for r in without_views]
        assert np.allclose([r["confidence"] for r in alone], [r["confidence"] for r in without_views], atol=1e-3)
    # bad views are named, not silently misaligned
    with pytest.raises(RouterError, match="2 rows, 1 texts"):
        RequestViews([0, 1], ["a"], np.zeros((2, emb.shape[1]), np.float32))
    with pytest.raises(RouterError, match="row 7 of 5 texts"):
        router.heads(emb, texts, RequestViews([7], ["a"], emb[:1]))
    # the calibration ran with it, the card says it, the report shows what the second view adds
    assert "two views" in (export_dir / "README.md").read_text()
    metrics = json.loads((tiny_pipeline.data / "evaluation_report" / "metrics.json").read_text())
    assert any(".hybrid (served view only).agent_acc" in k for k in metrics["headline"])
