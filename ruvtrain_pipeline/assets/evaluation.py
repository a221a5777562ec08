"""evaluation_report: scores the exported router on held-out sets (generated test split, the hand-written realistic
set, the peer benchmarks when present) in every routing mode and backend, against the zero-shot base encoder, and
writes report.md, a self-contained report.html, metrics.json and PNG plots."""

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
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

from ..core.catalog import CATALOG_DIR, Catalog
from ..core.io import atomic_dir, dir_digest
from ..resources import DVC_POOL, BaseEncoder, DvcResource, PipelineStorage
from ._meta import versioned

GOAL_SETS = ("realistic", "peer96")
SERVED_VIEW = "hybrid (served view only)"
GOALS = {"category_acc": (">=", 0.90), "agent_acc": (">=", 0.85), "tier_acc": (">=", 0.80),
         "saving_vs_opus": (">=", 0.50), "under_tier_rate": ("<=", 0.02)}


class EvaluationConfig(Config):
    realistic_path: str = Field(default=str(CATALOG_DIR / "eval" / "realistic.jsonl"),
                                description="Hand-written realistic requests (JSONL with labels).")
    peer_benchmark_dir: str = Field(default="../shared/benchmarks/peer",
                                    description="Read-only peer benchmark folder; the report says so when absent.")
    gguf_quantizations: list[str] = Field(default_factory=lambda: ["f32", "q8_0"],
                                          description="GGUF encoders scored through the llamacpp backend.")
    tier_confidences: list[float] = Field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9],
                                          description="Tier-policy confidences compared in the cost trade-off table.")
    latency_requests: int = Field(default=100, description="Single-request calls timed per backend.")
    realistic_floor_agent_acc: float = Field(default=0.80, description="WARN below this on the realistic set.")
    realistic_floor_category_acc: float = Field(default=0.85, description="WARN below this on the realistic set.")
    regression_margin: float = Field(default=0.02, description="WARN when a headline metric drops more than this.")
    second_annotation_dir: str = Field(
        default=str(CATALOG_DIR / "eval" / "second_annotation"),
        description="Blind second labels of the goal sets (<set>.jsonl: id, agent_type, complexity); the goals table "
        "shows what that annotator scores against the set's labels. Sets without a file are skipped.")
    robustness_seed: int = Field(default=0, description="Seed of the perturbations (typos, irrelevant context).")
    robustness_rows: int = Field(default=0, ge=0, description="Realistic rows scored under perturbations (0 = all).")


def _latency(fn, texts: list, n: int) -> dict:
    texts = texts[:n]
    for t in texts[:5]:
        fn([t])
    times = []
    for t in texts:
        t0 = time.perf_counter()
        fn([t])
        times.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    fn(texts)
    batch = len(texts) / (time.perf_counter() - t0)
    qs = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else [times[0]] * 99
    return {"p50_ms": round(qs[49], 2), "p95_ms": round(qs[94], 2), "batch_req_per_s": round(batch, 1),
            "requests": len(texts)}


@asset(
    pool=DVC_POOL,
    group_name="evaluation",
    deps=["gguf_export", "trained_adapter", "dataset_splits", "seed_templates"],
    description="Held-out evaluation of the exported router: test split, hand-written realistic set and peer "
    "benchmarks; every routing mode and backend vs the zero-shot base encoder; accuracy, macro-F1, per-class P/R, "
    "confusion, tier accuracy, cost vs always-opus and oracle, under-tiering, hard-negative accuracy, latency, "
    "regression vs the previous report.",
    check_specs=[AssetCheckSpec("realistic_accuracy_floor", asset="evaluation_report"),
                 AssetCheckSpec("no_regression", asset="evaluation_report"),
                 AssetCheckSpec("edge_cases_route", asset="evaluation_report", blocking=True,
                                description="Every edge-case input routes on every backend without an error and "
                                "with a valid route (no-content input declined); a failure keeps the router out of "
                                "production."),
                 AssetCheckSpec("edge_case_confidence", asset="evaluation_report",
                                description="WARN when garbage input gets a confidence at or above the median "
                                "confidence on real requests.")],
    kinds={"python", "pytorch"},
)
def evaluation_report(context: AssetExecutionContext, config: EvaluationConfig, storage: PipelineStorage,
                      encoder: BaseEncoder, dvc: DvcResource) -> MaterializeResult:
    from ..core import evaluate as ev
    from ..core.report import (
        Section,
        plot_accuracy_by_mode,
        plot_confusion,
        plot_cost_vs_accuracy,
        plot_training_curves,
        render_html,
        render_markdown,
    )
    from ..core.router import Router, request_text
    from ..core.tiers import routing_spec

    storage.require("gguf_export", "router-sidecar.gguf")
    catalog = Catalog.from_dict(json.loads(storage.require("seed_templates", "catalog.json").read_text()))
    export_dir = storage.asset_dir("gguf_export")
    adapter_meta = json.loads(storage.require("trained_adapter", "metadata.json").read_text())
    routing = routing_spec(catalog)
    agent_category = {a: d["category"] for a, d in catalog.agents.items()}

    sets = [ev.load_split(storage.require("dataset_splits", "data/test.parquet"), agent_category, "test")]
    sets.append(ev.load_realistic(config.realistic_path, agent_category, routing, catalog.complexities))
    peer_sets = ev.load_peer_sets(config.peer_benchmark_dir, agent_category, routing)
    sets += peer_sets
    notes = [] if peer_sets else [f"Peer benchmarks absent at {config.peer_benchmark_dir}: not scored."]

    torch_router = Router(export_dir, backend="torch", base_model=encoder.resolved_path())
    agent_labels = torch_router.labels["agent_types"]
    routers = {"torch": torch_router}
    try:
        import llama_cpp  # noqa: F401

        for q in config.gguf_quantizations:
            if (export_dir / f"router-encoder-{q}.gguf").exists():
                routers[f"gguf-{q}"] = Router(export_dir, backend="llamacpp", quantization=q)
    except ImportError:
        notes.append("llama-cpp-python not installed: GGUF backends not scored.")

    val = ev.load_split(storage.require("dataset_splits", "data/validation.parquet"), agent_category, "validation")
    val_texts, val_emb, val_views = torch_router.embed_requests(list(zip(val.inputs, val.contexts, strict=True)))
    # the grid of the table, plus the router's own policy (calibrated on validation at training time, router.py)
    tier_confidences = sorted({*config.tier_confidences, *([torch_router.tier_confidence]
                                                            if torch_router.tier_confidence is not None else [])})
    tradeoff = _tradeoff_rows("validation (policy selection)", torch_router, val_texts, val_emb, val.expected_model,
                              tier_confidences, routing, val_views)

    descriptions = [catalog.agents[a]["description"] for a in agent_labels]
    desc_emb = encoder.encode(descriptions)
    results: dict[str, dict[str, dict]] = {}
    score_args = (agent_labels, agent_category, catalog.categories, routing)
    for s in sets:
        texts = [request_text(i, c) for i, c in zip(s.inputs, s.contexts, strict=True)]
        variants: dict[str, dict] = {}
        base_emb = encoder.encode(texts)
        zs = ev.zero_shot_agents(base_emb, desc_emb, agent_labels)
        # the zero-shot baseline has no complexity model: every request is routed as Moderate
        zs_models = [routing["table"][agent_category[a]]["Moderate"] for a in zs]
        variants["zero-shot base"] = ev.score_routes(s, zs, zs_models, *score_args)
        for name, router in routers.items():
            _, emb, views = router.embed_requests(list(zip(s.inputs, s.contexts, strict=True)))
            modes = ("keyword", "embedding", "hybrid") if name == "torch" else ("hybrid",)
            for mode in modes:
                routes = router.route_embedded(texts, emb, mode, views=views)
                label = mode if name == "torch" else f"hybrid {name}"
                variants[label] = ev.score_routes(s, [r.agent_type for r in routes], [r.model for r in routes],
                                                  *score_args, complexities=[r.complexity for r in routes])
            if name == "torch" and views is not None:
                # the same router reading the served view alone (request + context): what view averaging adds
                routes = router.route_embedded(texts, emb, "hybrid")
                variants[SERVED_VIEW] = ev.score_routes(s, [r.agent_type for r in routes], [r.model for r in routes],
                                                        *score_args, complexities=[r.complexity for r in routes])
            if name == "torch" and s.has_tiers:
                tradeoff += _tradeoff_rows(s.name, router, texts, emb, s.expected_model, tier_confidences, routing,
                                           views)
        results[s.name] = variants
        context.log.info(f"{s.name}: n={len(s)} hybrid agent {variants['hybrid']['agent_acc']:.4f} "
                         f"category {variants['hybrid']['category_acc']:.4f}")

    robustness = _robustness(torch_router, routers, next(s for s in sets if s.name == "realistic"), score_args,
                             config.robustness_seed, config.robustness_rows)
    ab = _champion_vs_challenger(storage, encoder, sets, score_args, results, export_dir)
    if ab:
        context.log.info(f"champion {ab['champion']['digest']} scored beside the challenger {ab['challenger']['digest']}")

    # hard-negative accuracy on the held-out (test-split) triplets
    trip = pl.read_parquet(storage.require("dataset_splits", "triplets/test.parquet"))
    trip = trip.filter(pl.col("positive").is_in(agent_labels) & pl.col("negative").is_in(agent_labels))
    anchors = [request_text(a, c) for a, c in zip(trip["anchor"], trip["context"], strict=True)]
    hard = trip["is_hard"].to_numpy() if len(trip) else np.zeros(0, dtype=bool)
    pos, neg = trip["positive"].to_list(), trip["negative"].to_list()
    hn: dict[str, dict] = {}
    for name, emb, vectors in (("trained (prototypes)", torch_router.embed(anchors) if anchors else None,
                                torch_router.prototypes),
                               ("zero-shot base (descriptions)", encoder.encode(anchors) if anchors else None, desc_emb)):
        if emb is None:
            continue
        hn[name] = {"all": ev.hard_negative_accuracy(emb, pos, neg, vectors, agent_labels),
                    "hard_only": ev.hard_negative_accuracy(emb[hard], [p for p, h in zip(pos, hard, strict=True) if h],
                                                           [n for n, h in zip(neg, hard, strict=True) if h], vectors,
                                                           agent_labels),
                    "triplets": len(pos), "hard_triplets": int(hard.sum())}

    realistic_requests = list(zip(sets[1].inputs, sets[1].contexts, strict=True))
    latency = {name: _latency(lambda rs, r=router: r.route_many(rs, "hybrid"), realistic_requests,
                              config.latency_requests) for name, router in routers.items()}

    headline = ev.flat_headline(results)
    out_dir = storage.asset_dir("evaluation_report")
    previous_path = out_dir / "metrics.json"
    previous = json.loads(previous_path.read_text())["headline"] if previous_path.exists() else {}
    # the generated test split is drawn again after a catalog or seed change: its figures then measure other
    # requests (possibly templates the previous model trained on), so they are shown but not compared
    splits_digest = dir_digest(storage.asset_dir("dataset_splits"))
    previous_results = out_dir / "results.json"
    previous_splits = (json.loads(previous_results.read_text()).get("model", {}).get("dataset_splits")
                       if previous and previous_results.exists() else None)
    test_comparable = previous_splits == splits_digest
    regression_note = ("" if test_comparable else
                       f". The test split is not compared: this report's dataset_splits ({splits_digest}) are not "
                       f"the previous report's ({previous_splits or 'not recorded'}), so its test rows are other "
                       "requests.")
    regressed = ev.regressions(headline, previous if test_comparable else
                               {k: v for k, v in previous.items() if not k.startswith("test.")},
                               config.regression_margin)

    # label reliability: a blind second annotation of the goal sets, scored against their labels like a router
    second: dict[str, dict] = {}
    for es in sets:
        path = Path(config.second_annotation_dir) / f"{es.name}.jsonl"
        if es.name in GOAL_SETS and path.exists():
            labels = ev.load_second_annotation(path, es, agent_category, catalog.complexities)
            second[es.name] = ev.annotator_metrics(es, labels, agent_category, routing)

    goal_rows, goal_misses = [], []
    for set_name in GOAL_SETS:
        m = results.get(set_name, {}).get("hybrid")
        if m is None:
            continue
        for metric, (op, target) in GOALS.items():
            value = m.get(metric)
            met = value is not None and (value >= target if op == ">=" else value <= target)
            goal_rows.append([set_name, metric, f"{op} {target}", value, "yes" if met else "NO",
                              second.get(set_name, {}).get(metric)])
            if not met:
                goal_misses.append(f"{set_name} {metric} {value} (goal {op} {target})")

    with atomic_dir(out_dir) as tmp:
        images = []
        for set_name in ("realistic", "peer96"):
            if set_name in results:
                m = results[set_name]["hybrid"]
                images.append(plot_confusion(m["agent"]["confusion"], agent_labels, f"{set_name}: agent type (hybrid)",
                                             tmp / f"confusion_agent_{set_name}.png"))
                images.append(plot_confusion(m["category"]["confusion"], catalog.categories,
                                             f"{set_name}: category (hybrid)", tmp / f"confusion_category_{set_name}.png"))
        images.append(plot_accuracy_by_mode(results, "agent_acc", tmp / "accuracy_by_mode.png"))
        cost_points = [(f"{s}:{v}", 1 - m["saving_vs_opus"], m["tier_acc"]) for s, vs in results.items()
                       for v, m in vs.items() if s in GOAL_SETS and "tier_acc" in m and v in ("hybrid", "zero-shot base")]
        cost_points += [(f"{s}:oracle", 1 - results[s]["hybrid"]["oracle_saving_vs_opus"], 1.0) for s in GOAL_SETS
                        if s in results and "oracle_saving_vs_opus" in results[s]["hybrid"]]
        images.append(plot_cost_vs_accuracy(cost_points, tmp / "cost_vs_accuracy.png"))
        if adapter_meta.get("curves"):
            images.append(plot_training_curves(adapter_meta["curves"], tmp / "training_curves.png"))

        sections = _sections(Section, results, goal_rows, hn, latency, headline, previous, regressed, notes, sets,
                             adapter_meta, agent_labels, tradeoff, torch_router.tier_confidence,
                             torch_router.labels.get("tier_policy"), regression_note)
        sections[-1:-1] = _lifecycle_sections(Section, robustness, ab, agent_labels)
        for s in sections:
            s.images = [i for i in images if _image_section(i) == s.title]
        title = "ruvtrain router evaluation"
        (tmp / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(title, sections, tmp), encoding="utf-8")
        # metrics.json: the flat numbers DVC and the regression check compare; results.json: everything else
        metrics = {"headline": headline, "hard_negative_accuracy": {k: v["all"] for k, v in hn.items()},
                   "robustness": _flat_robustness(robustness),
                   **({"champion": ev.flat_headline({k: {"hybrid": v} for k, v in ab["champion"]["results"].items()})}
                      if ab else {}),
                   "latency_p50_ms": {k: v["p50_ms"] for k, v in latency.items()}}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        details = {"results": results, "hard_negative_accuracy": hn, "latency": latency,
                   "goals": {"rows": goal_rows, "misses": goal_misses}, "second_annotator": second,
                   "previous_headline": previous,
                   "sets": {s.name: {"n": len(s), "source": s.source} for s in sets},
                   "robustness": robustness, "ab": ab,
                   "model": {"dataset_splits": splits_digest, "gguf_export": dir_digest(export_dir),
                             "trained_adapter": dir_digest(storage.asset_dir("trained_adapter")),
                             "members": torch_router.members, "view_average": torch_router.view_average,
                             "trained_adapter_data_versions": adapter_meta.get("data_versions", {})}}
        (tmp / "results.json").write_text(json.dumps(details, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    numeric = {f"{s}_{k}": v for s in ("test", "realistic", "peer96", "peer20") for k, v in
               ((k, results.get(s, {}).get("hybrid", {}).get(k)) for k in ev.HEADLINE) if isinstance(v, int | float)}
    floor_problems = []
    real = results["realistic"]["hybrid"]
    if real["agent_acc"] < config.realistic_floor_agent_acc:
        floor_problems.append(f"realistic agent_acc {real['agent_acc']} < {config.realistic_floor_agent_acc}")
    if real["category_acc"] < config.realistic_floor_category_acc:
        floor_problems.append(f"realistic category_acc {real['category_acc']} < {config.realistic_floor_category_acc}")
    edge_problems = [f"{backend} {e['case']}: {p}" for backend, rows in robustness["edge_cases"].items() for e in rows
                     for p in e["problems"]]
    edge_warnings = [f"{backend} {e['case']}: {w}" for backend, rows in robustness["edge_cases"].items() for e in rows
                     for w in e["warnings"]]
    edge_total = sum(len(rows) for rows in robustness["edge_cases"].values())
    checks = [
        AssetCheckResult(check_name="edge_cases_route", passed=not edge_problems, severity=AssetCheckSeverity.ERROR,
                         metadata={"routes_checked": edge_total, "problems_found": len(edge_problems),
                                   **({"problems": MetadataValue.md("\n".join(f"- {p}" for p in edge_problems[:20]))}
                                      if edge_problems else {})}),
        AssetCheckResult(check_name="edge_case_confidence", passed=not edge_warnings, severity=AssetCheckSeverity.WARN,
                         metadata={"reference_confidence": robustness["reference_confidence"],
                                   **({"warnings": MetadataValue.md("\n".join(f"- {w}" for w in edge_warnings[:20]))}
                                      if edge_warnings else {})}),
        AssetCheckResult(check_name="realistic_accuracy_floor", passed=not floor_problems,
                         severity=AssetCheckSeverity.WARN,
                         metadata={"agent_acc": real["agent_acc"], "category_acc": real["category_acc"],
                                   **({"problems": MetadataValue.md("\n".join(f"- {p}" for p in floor_problems))}
                                      if floor_problems else {})}),
        AssetCheckResult(check_name="no_regression", passed=not regressed, severity=AssetCheckSeverity.WARN,
                         metadata={"previous_report": bool(previous), "regressed": len(regressed),
                                   **({"problems": MetadataValue.md("\n".join(f"- {p}" for p in regressed[:20]))}
                                      if regressed else {})}),
    ]
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={"headline": MetadataValue.md(sections[0].text + "\n\n" + _md(sections[0])), **numeric,
                  "goals_missed": len(goal_misses), "path": MetadataValue.path(str(out_dir)),
                  **{f"robustness_{k.replace('.', '_')}": v for k, v in _flat_robustness(robustness).items()
                     if k.endswith(("agent_acc_delta", "edge_cases_sensible"))},
                  "champion": ab["champion"]["digest"] if ab else "none (no production router yet)",
                  "report": MetadataValue.path(str(out_dir / "report.html"))},
        check_results=checks,
        data_version=DataVersion(dir_digest(out_dir)),
    ))


def _tradeoff_rows(set_name, router, texts, emb, expected, confidences, routing, views=None) -> list[list]:
    """Tier accuracy, under/over-tiering and saving of the hybrid router per tier policy ('table' = argmax)."""
    from ..core.tiers import tier_curve

    rows = []
    for tau, t in tier_curve(router, texts, emb, expected, routing, [None, *confidences], views=views):
        rows.append([set_name, "table" if tau is None else tau, t["tier_acc"], t["under_tier_rate"],
                     t["over_tier_rate"], t["saving_vs_opus"]])
    return rows


def _md(section) -> str:
    from ..core.report import md_table

    return md_table(section.header, section.rows)


def _image_section(name: str) -> str:
    if name.startswith("confusion"):
        return "Confusion matrices"
    if name.startswith("accuracy"):
        return "Routing modes and backends"
    if name.startswith("cost"):
        return "Cost and tiers"
    return "Training curves"


def _sections(Section, results, goal_rows, hn, latency, headline, previous, regressed, notes, sets, adapter_meta,
              agent_labels, tradeoff, default_tau, tier_policy=None, regression_note: str = "") -> list:
    head_rows = []
    for s in sets:
        m = results[s.name]["hybrid"]
        head_rows.append([s.name, m["n"], m["agent_acc"], m["category_acc"], m["agent_macro_f1"],
                          m.get("complexity_acc"), m.get("tier_acc"), m.get("under_tier_rate"),
                          m.get("saving_vs_opus"), m.get("oracle_saving_vs_opus")])
    members = (adapter_meta.get("training_config") or {}).get("members", 1)
    sections = [Section(
        "Headline",
        "Hybrid router (keyword rules first, embedding heads otherwise), torch backend"
        + (f", {members} members (training seeds {adapter_meta.get('seed')} to "
           f"{adapter_meta.get('seed', 0) + members - 1}, probabilities averaged)" if members > 1 else "")
        + (", agent-type head averaged over request + context and the request alone where a context is given"
           if (adapter_meta.get("training_config") or {}).get("view_average") else "")
        + ", on held-out sets only. "
        "Tier metrics need a complexity label (peer20 has none). Cost at the catalog's typical request size.",
        ["set", "n", "agent acc (13)", "category acc (5)", "agent macro-F1", "complexity acc", "tier acc",
         "under-tier", "saving vs opus", "oracle saving"], head_rows)]
    sections.append(Section(
        "Goals (realistic and peer96)",
        "second annotator = a blind second labelling of the set (catalog/eval/second_annotation) scored against the "
        "set's labels as if it were a router, tier from the routing table at its labels: how far a careful reader "
        "of the request agrees with the labels the goals are measured on.",
        ["set", "metric", "goal", "value", "met", "second annotator"], goal_rows))
    mode_rows = []
    for s in sets:
        for v, m in results[s.name].items():
            mode_rows.append([s.name, v, m["agent_acc"], m["category_acc"], m["agent_macro_f1"], m["coverage"],
                              m.get("tier_acc"), m.get("under_tier_rate"), m.get("saving_vs_opus")])
    sections.append(Section(
        "Routing modes and backends",
        "zero-shot base = the untrained base encoder routing to the nearest agent description (no complexity model: "
        "every request routed as Moderate). keyword = the catalog's keyword rules alone (unmatched requests are "
        "unrouted and fall back to the top tier). hybrid gguf-* = the exported GGUF run by llama.cpp. "
        f"{SERVED_VIEW} (a router that averages its agent-type head over a request's two views) = the same router "
        "reading request + context alone: the difference is what the second view adds.",
        ["set", "variant", "agent acc", "category acc", "agent macro-F1", "coverage", "tier acc", "under-tier",
         "saving vs opus"], mode_rows))
    real = results.get("realistic", {}).get("hybrid")
    if real:
        pc = real["agent"]["per_class"]
        sections.append(Section("Per-class precision and recall (realistic, hybrid)", "",
                                ["agent type", "precision", "recall", "F1", "support"],
                                [[a, pc[a]["precision"], pc[a]["recall"], pc[a]["f1"], pc[a]["support"]]
                                 for a in agent_labels]))
    sections.append(Section("Confusion matrices", "Rows are the true label, columns the routed one."))
    sections.append(Section("Cost and tiers", "Tier accuracy and cost relative to always-opus; the oracle routes "
                            "every request to its labelled tier. The table compares tier policies on the hybrid "
                            "torch router: the cheapest tier that covers the needed tier with probability >= the "
                            "confidence (agent-type and complexity uncertainty combined through the routing table); "
                            "'table' = the routing table at the most likely agent type and complexity. The "
                            "headline uses the router's "
                            f"default policy (tier_confidence = {default_tau}; {_policy_origin(tier_policy)}).",
                            ["set", "confidence", "tier acc", "under-tier", "over-tier", "saving vs opus"], tradeoff))
    sections.append(Section(
        "Hard-negative accuracy",
        "Held-out (test split) triplets: share where the anchor is closer to its positive agent than to the negative "
        "agent.", ["encoder", "all", "hard only", "triplets", "hard triplets"],
        [[k, v["all"], v["hard_only"], v["triplets"], v["hard_triplets"]] for k, v in hn.items()]))
    sections.append(Section(
        "Latency on this machine",
        f"Hybrid routing of the realistic requests (with their contexts, as served), one request per call and one "
        f"batch; {os.cpu_count()} CPU cores.",
        ["backend", "p50 ms", "p95 ms", "batch req/s", "requests"],
        [[k, v["p50_ms"], v["p95_ms"], v["batch_req_per_s"], v["requests"]] for k, v in latency.items()]))
    if previous:
        keys = [k for k in sorted(headline) if k in previous and ".hybrid." in k]
        sections.append(Section(
            "Regression vs the previous report",
            "Regressed beyond the margin: " + ("; ".join(regressed) if regressed else "none")
            + regression_note,
            ["metric", "previous", "now", "delta"],
            [[k, previous[k], headline[k], round(headline[k] - previous[k], 4)] for k in keys]))
    else:
        sections.append(Section("Regression vs the previous report", "No previous report: this is the first."))
    m = adapter_meta.get("metrics", {})
    sections.append(Section("Training curves", f"From the trained adapter's metadata: {m.get('contrastive_steps')} "
                            f"contrastive steps, best epoch {m.get('best_epoch')}, GRPO kept: "
                            f"{m.get('grpo', {}).get('kept') if isinstance(m.get('grpo'), dict) else 'n/a'}."))
    sections.append(Section("Sets", "\n\n".join(notes) if notes else "",
                            ["set", "n", "source"], [[s.name, len(s), s.source] for s in sets]))
    return sections


def _robustness(torch_router, routers: dict, realistic, score_args: tuple, seed: int, rows: int) -> dict:
    """Accuracy of the hybrid torch router on the realistic set (its first `rows` rows; 0 = all) under each
    perturbation, and every edge case routed by every backend (judged against the median confidence on the clean
    realistic set)."""
    from ..core import robustness as rb

    if rows:
        realistic = realistic.head(rows)
    perturbations = rb.perturbation_scores(torch_router, realistic, score_args, "hybrid", seed)
    reference = perturbations["clean"]["confidence_median"]
    edges = {name: rb.edge_case_results(router, reference) for name, router in routers.items()}
    return {"set": realistic.name, "rows": len(realistic), "mode": "hybrid", "backend": "torch", "seed": seed,
            "reference_confidence": reference, "perturbations": perturbations, "edge_cases": edges}


def _flat_robustness(robustness: dict) -> dict[str, float]:
    flat = {f"{robustness['set']}.{kind}.{k}": v for kind, m in robustness["perturbations"].items()
            for k, v in m.items() if k in ("agent_acc", "category_acc", "tier_acc", "under_tier_rate", "agent_flip_rate",
                                            "agent_acc_delta") and isinstance(v, int | float)}
    for backend, rows in robustness["edge_cases"].items():
        flat[f"{backend}.edge_cases_sensible"] = sum(e["sensible"] for e in rows)
        flat[f"{backend}.edge_cases_total"] = len(rows)
    return flat


def _champion_vs_challenger(storage: PipelineStorage, encoder: BaseEncoder, sets: list, score_args: tuple,
                            results: dict, export_dir) -> dict | None:
    """When a production router exists (the champion), score it on the same sets as the new export (the challenger)
    in this run, hybrid on the torch backend: the A/B tables here, the promotion decision in production_router."""
    from ..core import evaluate as ev
    from ..core.router import SIDECAR, Router

    champion_dir = storage.asset_dir("production_router")
    if not (champion_dir / SIDECAR).exists():
        return None
    champion = Router(champion_dir, backend="torch", base_model=encoder.resolved_path())
    scored = {}
    for s in sets:
        routes = champion.route_many(list(zip(s.inputs, s.contexts, strict=True)), "hybrid")
        scored[s.name] = ev.score_routes(s, [r.agent_type for r in routes], [r.model for r in routes], *score_args)
    return {"mode": "hybrid", "backend": "torch",
            "champion": {"path": str(champion_dir), "digest": dir_digest(champion_dir), "results": scored},
            "challenger": {"path": str(export_dir), "digest": dir_digest(export_dir),
                           "results": {k: v["hybrid"] for k, v in results.items()}}}


def _lifecycle_sections(Section, robustness: dict, ab: dict | None, agent_labels: list[str]) -> list:
    from ..core import promotion

    p = robustness["perturbations"]
    sections = [Section(
        "Robustness",
        f"Hybrid torch router on the {robustness['set']} set ({robustness['rows']} requests) with every request "
        "perturbed the same way "
        "(deterministic, seed " + str(robustness["seed"]) + "): typos (about one word in five, at least one), "
        "casing (all upper case), truncation (first half of the words), irrelevant context (a sentence of small "
        "talk added) and empty context (context dropped; only the rows that had one change). Flip rate = share of "
        "requests whose routed agent type differs from the clean route.",
        ["perturbation", "changed", "agent acc", "delta", "agent acc (changed rows)", "category acc", "tier acc",
         "under-tier", "flip rate"],
        [[k, m.get("changed", m["n"]), m["agent_acc"], m.get("agent_acc_delta"), m.get("agent_acc_changed"),
          m["category_acc"], m.get("tier_acc"), m.get("under_tier_rate"), m.get("agent_flip_rate")]
         for k, m in p.items()])]
    rows = [[backend, e["case"], e["kind"], e["chars"], e.get("agent_type"), e.get("model"), e.get("confidence"),
             e.get("method"), e.get("max_prototype_similarity"),
             "yes" if e["sensible"] else "NO: " + "; ".join(e["problems"] + e["warnings"])]
            for backend, edge_rows in robustness["edge_cases"].items() for e in edge_rows]
    sections.append(Section(
        "Edge cases",
        "Each input is routed alone on every backend. Sensible = no error; a confidence that is a finite number in "
        "[0, 1]; known agent type, category, tier and complexity; input with no letter or digit declined (no agent, "
        "confidence 0); garbage (letters but no request) routed with a confidence below the median confidence on the "
        f"clean realistic set ({robustness['reference_confidence']}). The max prototype similarity (cosine to the "
        "nearest agent prototype) shows how far an input is from anything the router was trained on.",
        ["backend", "case", "kind", "chars", "agent type", "tier", "confidence", "method", "max proto sim",
         "sensible"], rows))
    if not ab:
        sections.append(Section("Champion vs challenger (A/B)", "No production router yet: nothing to compare; the "
                                "first export is promoted by production_router."))
        return sections
    champ, chall = ab["champion"]["results"], ab["challenger"]["results"]
    sections.append(Section(
        "Champion vs challenger (A/B)",
        f"The production router (champion, {ab['champion']['digest']}) and this export (challenger, "
        f"{ab['challenger']['digest']}) scored in this run on the same sets, hybrid mode, torch backend. "
        "production_router promotes the challenger only if it is not worse beyond the configured margins.",
        promotion.AB_METRIC_HEADER, promotion.ab_metric_rows(champ, chall)))
    sections.append(Section("Champion vs challenger per agent type", "Precision, recall and F1 per agent type.",
                            promotion.AB_CLASS_HEADER, promotion.ab_class_rows(champ, chall, agent_labels)))
    return sections


def _policy_origin(policy: dict | None) -> str:
    """Where the router's tier confidence comes from, in words, for the report."""
    if not policy:
        return "routing.yaml's tier_confidence, or the fallback for a model without a calibrated policy"
    where = f"the validation split ({policy.get('selected_on', 'validation')}, {policy.get('rows')} routes)"
    bound = (f"its one-sided {policy['confidence_level']} upper bound" if policy.get("confidence_level", 0.5) > 0.5
             else "the observed rate")
    figures = (f"there {policy['under_tier_rate']}"
               + (f", bound {policy['under_tier_upper_bound']}" if "under_tier_upper_bound" in policy else "")
               + "".join(f"; {g}: {v['under_tier_rate']}, bound {v['under_tier_upper_bound']} ({v['rows']} routes)"
                         for g, v in (policy.get("groups") or {}).items()))
    if policy.get("met"):
        return (f"calibrated at training time: the cheapest confidence whose under-tiering on {where}, {bound}, is "
                f"<= max_under_tier_rate {policy['max_under_tier_rate']} ({figures})")
    return (f"calibrated at training time: no confidence keeps the under-tiering on {where}, {bound}, <= "
            f"max_under_tier_rate {policy['max_under_tier_rate']}, so the cheapest within {policy.get('tolerance')} "
            f"of the lowest reachable ({figures}); used unless routing.yaml sets a number")
