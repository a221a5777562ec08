"""Model lifecycle: production_router (the router `ruvtrain route` serves: the new export replaces it only when the
evaluation of both in the same run says it is not worse beyond the margins; or a rollback to an earlier DVC version),
and the weekly human review (review_sample draws recent routes into review files; review_verdicts turns returned
files into feedback for the inbox)."""

import json
import shutil
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ..core.io import atomic_dir, dir_digest
from ..resources import DVC_POOL, DvcResource, PipelineStorage
from ._meta import md_counts, versioned

PRODUCTION = "production_router"


class ProductionRouterConfig(Config):
    max_drop_category_acc: float = Field(default=0.01, ge=0, description="Largest category-accuracy drop allowed.")
    max_drop_agent_acc: float = Field(default=0.01, ge=0, description="Largest agent-type-accuracy drop allowed.")
    max_drop_tier_acc: float = Field(default=0.02, ge=0, description="Largest tier-accuracy drop allowed.")
    max_rise_under_tier_rate: float = Field(default=0.01, ge=0, description="Largest under-tiering rise allowed.")
    gate_sets: list[str] = Field(
        default_factory=lambda: ["test", "realistic"],
        description="Evaluation sets the gate compares on (the peer benchmarks stay out of model selection). The "
        "test split is left out by itself when champion and challenger were trained on different dataset_splits.")
    rollback_to: str = Field(
        default="", description="Restore instead of comparing: a git revision or tag of dvc.lock whose production "
        "router comes back from DVC, or 'previous' for the newest committed version that differs from the current.")

    def margins(self) -> dict[str, float]:
        return {"category_acc": self.max_drop_category_acc, "agent_acc": self.max_drop_agent_acc,
                "tier_acc": self.max_drop_tier_acc, "under_tier_rate": self.max_rise_under_tier_rate}


@asset(
    pool=DVC_POOL,
    group_name="lifecycle",
    deps=["gguf_export", "evaluation_report", "trained_adapter"],
    description="The router `ruvtrain route` serves by default. The new gguf_export (challenger) replaces it "
    "(champion) only when the evaluation report of the same run scored both and the challenger is not worse beyond "
    "the margins on category, agent-type and tier accuracy and under-tiering; otherwise the champion stays and the "
    "materialization says why. With rollback_to, an earlier version comes back from DVC.",
    check_specs=[AssetCheckSpec("challenger_promoted", asset=PRODUCTION,
                                description="WARN when the challenger was kept out of production.")],
)
def production_router(context: AssetExecutionContext, config: ProductionRouterConfig, storage: PipelineStorage,
                      dvc: DvcResource) -> MaterializeResult:
    from ..core import promotion
    from ..core.cards import write_model_card
    from ..core.report import md_table
    from ..core.router import SIDECAR, load_heads

    if config.rollback_to:
        return _rollback(context, config.rollback_to, storage, dvc)
    out_dir = storage.asset_dir(PRODUCTION)
    export_dir = storage.asset_dir("gguf_export")
    storage.require("gguf_export", SIDECAR)
    report_path = storage.require("evaluation_report", "results.json")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    challenger = dir_digest(export_dir)
    evaluated = (report.get("model") or {}).get("gguf_export")
    if evaluated != challenger:
        raise Failure(f"the evaluation report scored export {evaluated}, not the current gguf_export {challenger}: "
                      "materialize evaluation_report and production_router together (same run)")
    champion = dir_digest(out_dir) if (out_dir / SIDECAR).exists() else None
    ab = report.get("ab") or {}
    if champion and (ab.get("champion") or {}).get("digest") != champion:
        raise Failure(f"the evaluation report did not score the current production router {champion} (it scored "
                      f"{(ab.get('champion') or {}).get('digest') or 'no champion'}): materialize evaluation_report "
                      "and production_router together (same run)")
    challenger_results = {name: variants["hybrid"] for name, variants in report["results"].items()}
    reverted = _reverted_export(context)
    already = bool(champion) and _promoted_from(out_dir) == challenger
    gate_sets, dropped = list(config.gate_sets), None
    if champion:
        gate_sets, dropped = promotion.comparable_gate_sets(
            config.gate_sets, load_heads(out_dir)[2].get("dataset_splits"),
            load_heads(export_dir)[2].get("dataset_splits"))
    if already:
        decision = promotion.Decision(False, f"the challenger (export {challenger}) is already the production router")
    elif reverted == challenger:
        decision = promotion.Decision(False, f"export {challenger} was rolled back out of production: it is not "
                                             "promoted again (a new export is needed)")
    else:
        decision = promotion.decide(ab["champion"]["results"] if champion else None, challenger_results,
                                    config.margins(), gate_sets)
        if dropped:
            decision.reason = f"{decision.reason} ({dropped})"
    context.log.info(f"production_router: {'promote' if decision.promote else 'keep champion'}: {decision.reason}")
    table = md_table(promotion.GATE_HEADER, decision.rows) if decision.rows else "(no champion to compare with)"
    if decision.promote:
        with atomic_dir(out_dir) as tmp:
            shutil.copytree(export_dir, tmp, dirs_exist_ok=True)
            record = {"promoted_at": datetime.now(UTC).isoformat(), "run_id": context.run.run_id,
                      "gguf_export": challenger, "trained_adapter": (report.get("model") or {}).get("trained_adapter"),
                      "previous_champion": champion, "margins": config.margins(), "gate_sets": gate_sets,
                      "decision": decision.as_dict()}
            (tmp / "promotion.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            write_model_card(tmp, storage.asset_dir("trained_adapter"), report_path)
    served = dir_digest(out_dir)
    metadata = {
        "decision": "promoted" if decision.promote else "kept champion",
        "reason": decision.reason,
        "comparison": MetadataValue.md(table),
        "challenger": challenger,
        "champion_before": champion or "none",
        "serving": served,
        "gate_sets": ", ".join(gate_sets),
        "margins": MetadataValue.json(config.margins()),
        "path": MetadataValue.path(str(out_dir)),
        # carried forward until another export is promoted, so a rolled-back export stays out
        **({"reverted_export": reverted} if reverted and not decision.promote else {}),
    }
    check = AssetCheckResult(
        check_name="challenger_promoted", passed=decision.promote or already, severity=AssetCheckSeverity.WARN,
        metadata={"reason": decision.reason,
                  **({"failures": MetadataValue.md("\n".join(f"- {f}" for f in decision.failures))}
                     if decision.failures else {})})
    return versioned(context, storage, dvc, MaterializeResult(metadata=metadata, check_results=[check],
                                                              data_version=DataVersion(served)))


def _rollback(context: AssetExecutionContext, rev: str, storage: PipelineStorage, dvc: DvcResource) -> MaterializeResult:
    """Bring back the production router that dvc.lock recorded at `rev` and record it with DVC; the DVC hash of the
    restored folder must be the one `rev` recorded (the bytes are that version's)."""
    from ..core import rollback as rb
    from ..core.router import RouterError, load_heads
    from ..core.versioning import find_dvc_root

    out_dir = storage.asset_dir(PRODUCTION)
    root = find_dvc_root(out_dir)
    if root is None:
        raise Failure(f"rollback needs DVC: no DVC project at or above {out_dir}")
    rel = out_dir.relative_to(root).as_posix()
    before = dir_digest(out_dir) if out_dir.is_dir() else None
    reverted = _promoted_from(out_dir)
    try:
        target = rb.resolve_target(root, rel, None if rev == "previous" else rev)
        rb.restore(root, target, out_dir)
        load_heads(out_dir)  # what came back is a router folder
    except (rb.RollbackError, RouterError) as err:
        raise Failure(f"rollback to {rev!r} failed: {err}") from err
    version = dvc.record(out_dir, log=context.log)
    recorded = version.get("dvc/md5")
    if recorded and recorded != target.md5:
        raise Failure(f"the restored folder hashes to {recorded}, not to {target.md5} recorded at {target.commit}")
    served = dir_digest(out_dir)
    context.log.info(f"production_router rolled back to {rev} ({target.commit[:12]}, {target.md5})")
    metadata = {"decision": "rolled back", "reason": f"rollback to {rev!r}: {target.subject}",
                "rollback_to": rev, "git_commit_restored": target.commit, "dvc_md5_restored": target.md5,
                "champion_before": before or "none", "serving": served, "path": MetadataValue.path(str(out_dir)),
                **({"reverted_export": reverted} if reverted and reverted != _promoted_from(out_dir) else {}),
                **version}
    check = AssetCheckResult(check_name="challenger_promoted", passed=True, severity=AssetCheckSeverity.WARN,
                             metadata={"reason": "rollback: no challenger was compared"})
    return MaterializeResult(metadata=metadata, check_results=[check], data_version=DataVersion(served))


def _promoted_from(folder) -> str | None:
    """The gguf_export digest a production router folder was promoted from (its promotion.json), if any."""
    path = folder / "promotion.json"
    return json.loads(path.read_text(encoding="utf-8")).get("gguf_export") if path.exists() else None


def _reverted_export(context: AssetExecutionContext) -> str | None:
    """The export the last rollback took out of production, while no other export has been promoted since (the
    Dagster instance's latest materialization of production_router carries it)."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    entry = event.asset_materialization.metadata.get("reverted_export") if event and event.asset_materialization \
        else None
    return str(entry.value) if entry is not None else None


# ---------------------------------------------------------------- human review
class ReviewSampleConfig(Config):
    feedback_dir: str = Field(default="", description="Feedback folder; empty = $RUVTRAIN_FEEDBACK_DIR or "
                              "./feedback_inbox. Routes come from its canary/ logs and its feedback rows.")
    sample_size: int = Field(default=100, ge=1)
    days: int = Field(default=7, ge=1, description="Routes logged in the last this many days are eligible.")
    low_confidence: float = Field(default=0.5, ge=0, le=1, description="Below this a route counts as low confidence.")
    low_share: float = Field(default=0.3, ge=0, le=1, description="Share of the sample kept for low-confidence routes.")
    until: str = Field(default="", description="End of the window (ISO 8601); empty = now. The schedule passes its "
                       "tick time.")


@asset(
    pool=DVC_POOL,
    group_name="review",
    description="Weekly sample of recent routes (canary logs and feedback rows) for human review, stratified by "
    "routed agent type with a share kept for low-confidence routes: review-<week>.jsonl and .csv with blank verdict "
    "columns. Return filled files to <feedback dir>/reviews/.",
)
def review_sample(context: AssetExecutionContext, config: ReviewSampleConfig, storage: PipelineStorage,
                  dvc: DvcResource) -> MaterializeResult:
    from collections import Counter

    from ..core.feedback import resolve_feedback_dir
    from ..core.review import INSTRUCTIONS, recent_routes, review_rows, sample_for_review, write_review_files

    folder = resolve_feedback_dir(config.feedback_dir)
    until = datetime.fromisoformat(config.until) if config.until else datetime.now(UTC)
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    since = until - timedelta(days=config.days)
    iso = until.isocalendar()
    batch = f"{iso.year}-W{iso.week:02d}"
    routes, stats = recent_routes(folder, since, until)
    sample = sample_for_review(routes, config.sample_size, config.low_confidence, config.low_share, seed=batch)
    rows = review_rows(sample, batch)
    out_dir = storage.asset_dir("review_sample")
    with atomic_dir(out_dir) as tmp:
        jsonl, csv_path = write_review_files(rows, tmp, batch)
        (tmp / "README.md").write_text(
            f"# Review batch {batch}\n\n{len(rows)} routes logged from {since.isoformat()} to {until.isoformat()} "
            f"in {folder}.\n\n{INSTRUCTIONS}\n", encoding="utf-8")
    low = sum(r.confidence is not None and r.confidence < config.low_confidence for r in sample)
    context.log.info(f"review_sample {batch}: {len(rows)} of {len(routes)} recent routes ({low} low confidence)")
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={"dagster/row_count": len(rows), "batch": batch, "window_start": since.isoformat(),
                  "window_end": until.isoformat(), "routes_in_window": len(routes), "low_confidence": low,
                  "by_agent_type": md_counts(dict(sorted(Counter(r.routed_agent for r in sample).items()))
                                             or {"none": 0}, "agent_type"),
                  "by_source": md_counts(dict(sorted(Counter(r.source for r in sample).items())) or {"none": 0},
                                         "source"),
                  "read": MetadataValue.json(stats), "feedback_dir": MetadataValue.path(str(folder.resolve())),
                  "jsonl": MetadataValue.path(str(out_dir / jsonl.name)),
                  "csv": MetadataValue.path(str(out_dir / csv_path.name))},
        data_version=DataVersion(dir_digest(out_dir)),
    ))


class ReviewVerdictsConfig(Config):
    feedback_dir: str = Field(default="", description="Feedback folder; empty = $RUVTRAIN_FEEDBACK_DIR or "
                              "./feedback_inbox. Returned review files are read from its reviews/ subfolder.")


@asset(
    pool=DVC_POOL,
    group_name="review",
    description="Returned review files (<feedback dir>/reviews/*.csv|*.jsonl) as feedback: each becomes "
    "review-<name>.jsonl in the inbox, where the feedback sensor and feedback_examples validate and quarantine it "
    "like any other feedback. Also scores both canary arms on the reviewed canary routes.",
)
def review_verdicts(context: AssetExecutionContext, config: ReviewVerdictsConfig, storage: PipelineStorage,
                    dvc: DvcResource) -> MaterializeResult:
    from ..core.canary import score_arms
    from ..core.catalog import load_catalog
    from ..core.feedback import FeedbackLabels, QuarantinedRow, parse_line, resolve_feedback_dir
    from ..core.review import inbox_name, returned_files, returned_to_inbox_lines, write_inbox_file

    folder = resolve_feedback_dir(config.feedback_dir)
    labels = FeedbackLabels.from_catalog(load_catalog())
    files, reviewed_rows, reasons = {}, [], {}
    for path in returned_files(folder):
        lines, counts = returned_to_inbox_lines(path)
        name = inbox_name(path)
        changed = write_inbox_file(folder, name, lines)
        # the same validation feedback_examples applies, to report here what it will accept and quarantine
        valid = 0
        for lineno, line in enumerate(lines, 1):
            parsed = parse_line(line.encode("utf-8"), labels, name, lineno)
            if isinstance(parsed, QuarantinedRow):
                reasons[parsed.reason] = reasons.get(parsed.reason, 0) + 1
            else:
                valid += 1
                reviewed_rows.append(json.loads(line))
        files[path.name] = counts | {"inbox_file": name, "valid": valid, "quarantined": len(lines) - valid,
                                     "written": changed}
    arms = score_arms(reviewed_rows)
    summary = {"feedback_dir": str(folder), "files": files, "quarantined_by_reason": reasons, "canary_arms": arms}
    out_dir = storage.asset_dir("review_verdicts")
    with atomic_dir(out_dir) as tmp:
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    total = {k: sum(f[k] for f in files.values()) for k in ("rows", "reviewed", "unreviewed", "valid", "quarantined")}
    context.log.info(f"review_verdicts: {len(files)} returned file(s); {total}")
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={"returned_files": len(files), **total,
                  "quarantined_by_reason": md_counts(reasons or {"none": 0}, "reason"),
                  "canary_champion_agent_acc": arms["champion"]["agent_acc"] if arms["champion"]["n"] else "n/a",
                  "canary_challenger_agent_acc": arms["challenger"]["agent_acc"] if arms["challenger"]["n"] else "n/a",
                  "canary_reviewed": arms["champion"]["n"],
                  "files": MetadataValue.json(files), "path": MetadataValue.path(str(out_dir / "summary.json"))},
        data_version=DataVersion(dir_digest(out_dir)),
    ))
