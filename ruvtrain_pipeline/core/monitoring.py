"""Monitoring of the served router on recent routing feedback: which feedback is recent, how the current router
routes it now (accuracy against the corrected labels, and the share of low-confidence routes, the drift signal), and
how old the model is (freshness). The monitoring_report asset wraps it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .feedback import FeedbackRow


@dataclass(frozen=True)
class MonitoringSettings:
    window_days: int = 30
    low_confidence_threshold: float = 0.5
    max_low_confidence_share: float = 0.30
    min_rows: int = 20
    max_model_age_days: float = 100.0


def parse_as_of(value: str) -> datetime:
    """An ISO 8601 time (naive = UTC) or, when empty, now."""
    if not value.strip():
        return datetime.now(UTC)
    when = datetime.fromisoformat(value.strip())
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def recent_rows(rows: Sequence[FeedbackRow], as_of: datetime, window_days: int) -> list[FeedbackRow]:
    """Rows timestamped in (as_of - window_days, as_of]; rows dated after `as_of` are not recent yet."""
    start = as_of - timedelta(days=window_days)
    return [r for r in rows if start < r.timestamp <= as_of]


def _share(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def score_routes(rows: Sequence[FeedbackRow], routes: Sequence[Any], agent_category: dict[str, str],
                 tiers: Sequence[str], threshold: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each row next to the current router's decision (`routes[i]` is a RouteResult for rows[i]), and the metrics:
    accuracy of the agent type, category and tier against the corrected labels, under-tiering, the share of routes
    with a confidence below `threshold`, and for comparison how the router at the time did (the logged decision)."""
    if len(rows) != len(routes):
        raise ValueError(f"{len(rows)} feedback rows but {len(routes)} routes")
    rank = {t: i for i, t in enumerate(tiers)}
    scored = []
    for row, route in zip(rows, routes, strict=True):
        scored.append({
            "timestamp": row.timestamp.isoformat(),
            "request": row.request,
            "correct_agent": row.correct_agent,
            "correct_tier": row.correct_tier,
            "logged_agent": row.routed_agent,
            "logged_tier": row.routed_tier,
            "logged_confidence": row.confidence,
            "agent": route.agent_type,
            "tier": route.model,
            "confidence": route.confidence,
            "method": route.method,
            "agent_ok": route.agent_type == row.correct_agent,
            "category_ok": route.agent_type is not None
            and agent_category[route.agent_type] == agent_category[row.correct_agent],
            "tier_ok": route.model == row.correct_tier,
            "under_tier": route.model is not None and rank[route.model] < rank[row.correct_tier],
            "low_confidence": route.confidence < threshold,
        })
    n = len(scored)
    logged = [r.confidence for r in rows if r.confidence is not None]
    metrics = {
        "rows": n,
        "agent_acc": _share(sum(s["agent_ok"] for s in scored), n),
        "category_acc": _share(sum(s["category_ok"] for s in scored), n),
        "tier_acc": _share(sum(s["tier_ok"] for s in scored), n),
        "under_tier_rate": _share(sum(s["under_tier"] for s in scored), n),
        "low_confidence_share": _share(sum(s["low_confidence"] for s in scored), n),
        "logged_agent_acc": _share(sum(r.routed_agent == r.correct_agent for r in rows), n),
        "logged_tier_acc": _share(sum(r.routed_tier == r.correct_tier for r in rows), n),
        "logged_low_confidence_share": _share(sum(c < threshold for c in logged), len(logged)),
        "fixed_since_logged": sum(s["agent_ok"] and s["logged_agent"] != s["correct_agent"] for s in scored),
        "broken_since_logged": sum(not s["agent_ok"] and s["logged_agent"] == s["correct_agent"] for s in scored),
    }
    return scored, metrics


def drift_verdict(metrics: dict[str, Any], settings: MonitoringSettings) -> tuple[bool, str]:
    """(passed, why): drift when the share of low-confidence routes in recent feedback exceeds the maximum; fewer
    than `min_rows` recent rows are too few to judge and pass."""
    n, share = metrics["rows"], metrics["low_confidence_share"]
    if n < settings.min_rows:
        return True, f"{n} recent feedback row(s), fewer than {settings.min_rows}: too few to judge drift"
    if share > settings.max_low_confidence_share:
        return False, (f"{100 * share:.1f}% of {n} recent routes have confidence < "
                       f"{settings.low_confidence_threshold} (max {100 * settings.max_low_confidence_share:.1f}%)")
    return True, (f"{100 * share:.1f}% of {n} recent routes have confidence < {settings.low_confidence_threshold} "
                  f"(max {100 * settings.max_low_confidence_share:.1f}%)")


def model_age_days(trained_at: datetime, as_of: datetime) -> float:
    return round((as_of - trained_at).total_seconds() / 86400, 2)


def freshness_verdict(age_days: float, settings: MonitoringSettings) -> tuple[bool, str]:
    if age_days > settings.max_model_age_days:
        return False, f"the model is {age_days:.1f} days old (max {settings.max_model_age_days:g}): retrain it"
    return True, f"the model is {age_days:.1f} days old (max {settings.max_model_age_days:g})"


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the verdicts, the metrics now vs at routing time, and the model."""
    m, s = report["metrics"], report["settings"]

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [
        "# Monitoring report",
        "",
        f"As of {report['as_of']}: feedback of the last {s['window_days']} days ({m['rows']} rows of "
        f"{report['feedback_rows_total']}), routed again by `{report['model_dir']}` ({report['backend']}, "
        f"{report['mode']}).",
        "",
        f"- **Drift**: {'ok' if report['drift']['passed'] else 'WARN'}: {report['drift']['note']}",
        f"- **Freshness**: {'ok' if report['freshness']['passed'] else 'WARN'}: {report['freshness']['note']} "
        f"(trained {report['model_trained_at']}, from the {report['model_age_source']})",
        "",
        "| metric | current router | router at the time (logged) |",
        "|---|---:|---:|",
        f"| agent-type accuracy | {pct(m['agent_acc'])} | {pct(m['logged_agent_acc'])} |",
        f"| category accuracy | {pct(m['category_acc'])} | |",
        f"| tier accuracy | {pct(m['tier_acc'])} | {pct(m['logged_tier_acc'])} |",
        f"| under-tiering | {pct(m['under_tier_rate'])} | |",
        f"| confidence < {s['low_confidence_threshold']} | {pct(m['low_confidence_share'])} | "
        f"{pct(m['logged_low_confidence_share'])} |",
        "",
        f"Agent type now right where the logged route was wrong: {m['fixed_since_logged']}; now wrong where it was "
        f"right: {m['broken_since_logged']}.",
        "",
    ]
    return "\n".join(lines)
