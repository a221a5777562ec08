"""Human review of recent routes: sample routes from the feedback and canary logs (stratified by routed agent type,
with a reserved share of low-confidence routes) into review files (JSONL and CSV) with blank verdict columns; turn the
returned files into feedback lines for the inbox, where the feedback reader validates and quarantines them like any
other feedback (core/feedback.py)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .canary import CANARY_SUBDIR
from .feedback import inbox_files, iter_raw_lines

REVIEW_SOURCE = "review"
REVIEWS_SUBDIR = "reviews"  # returned review files go here: <feedback dir>/reviews/*.csv|*.jsonl
INBOX_PREFIX = "review-"  # the inbox file made from a returned review file: <feedback dir>/review-<stem>.jsonl
VERDICT_COLUMNS = ("verdict", "correct_agent", "correct_tier", "reviewer", "notes")
VERDICTS = ("correct", "wrong")
REVIEW_COLUMNS = ("review_id", "timestamp", "source", "request", "context", "routed_agent", "routed_tier",
                  "confidence", "served_by", "champion_agent", "champion_tier", "challenger_agent", "challenger_tier",
                  *VERDICT_COLUMNS)
INSTRUCTIONS = (
    "Fill `verdict` with `correct` (the routed agent type and tier were right) or `wrong`; for `wrong`, put the right "
    "agent type in `correct_agent` and the right tier in `correct_tier` (a blank one means the routed value was right). "
    "Leave `verdict` blank to skip a row. Put the returned file in <feedback dir>/reviews/."
)


@dataclass(frozen=True)
class RouteRecord:
    request: str
    context: str
    routed_agent: str
    routed_tier: str
    confidence: float | None
    timestamp: datetime
    source: str  # "canary" or the feedback row's source ("feedback" when it has none)
    served_by: str  # canary arm that served it, "" for other routes
    champion_agent: str
    champion_tier: str
    challenger_agent: str
    challenger_tier: str


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _record(obj: Any, default_source: str) -> RouteRecord | None:
    """A logged route, or None when the line is not one (those are the feedback reader's business)."""
    if not isinstance(obj, dict):
        return None
    request, agent, tier, ts = obj.get("request"), obj.get("routed_agent"), obj.get("routed_tier"), obj.get("timestamp")
    when = _parse_time(ts)
    if not (isinstance(request, str) and request.strip() and isinstance(agent, str) and isinstance(tier, str)
            and when):
        return None
    conf = obj.get("confidence")
    conf = float(conf) if isinstance(conf, int | float) and not isinstance(conf, bool) and math.isfinite(conf) else None
    canary = obj.get("canary") if isinstance(obj.get("canary"), dict) else {}
    arms = {arm: canary.get(arm) if isinstance(canary.get(arm), dict) else {} for arm in ("champion", "challenger")}
    return RouteRecord(request.strip(), str(obj.get("context") or "").strip(), agent, tier, conf, when,
                       str(obj.get("source") or default_source), str(canary.get("served_by") or ""),
                       str(arms["champion"].get("agent_type") or ""), str(arms["champion"].get("model") or ""),
                       str(arms["challenger"].get("agent_type") or ""), str(arms["challenger"].get("model") or ""))


def recent_routes(feedback_dir: Path | str, since: datetime, until: datetime) -> tuple[list[RouteRecord], dict]:
    """Routes logged in [since, until): canary logs (<feedback dir>/canary/*.jsonl) and inbox feedback rows. One
    record per request, the latest; requests that a returned review already judged (rows with source "review") are
    left out."""
    folder = Path(feedback_dir)
    sources = [(p, "canary") for p in inbox_files(folder / CANARY_SUBDIR)] + [(p, "feedback") for p in inbox_files(folder)]
    latest: dict[str, RouteRecord] = {}
    reviewed: set[str] = set()
    stats = {"files": len(sources), "lines": 0, "not_a_route": 0, "out_of_window": 0}
    for path, default in sources:
        for _, raw, _ in iter_raw_lines(path, complete_only=True):
            if not raw.strip():
                continue
            stats["lines"] += 1
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                obj = None
            if isinstance(obj, dict) and obj.get("source") == REVIEW_SOURCE and isinstance(obj.get("request"), str):
                reviewed.add(obj["request"].strip())
                continue
            rec = _record(obj, default)
            if rec is None:
                stats["not_a_route"] += 1
            elif not since <= rec.timestamp < until:
                stats["out_of_window"] += 1
            elif rec.request not in latest or rec.timestamp >= latest[rec.request].timestamp:
                latest[rec.request] = rec
    stats["reviewed_already"] = sum(r in reviewed for r in latest)
    routes = sorted((r for r in latest.values() if r.request not in reviewed), key=lambda r: (r.timestamp, r.request))
    stats["routes"] = len(routes)
    return routes, stats


def _rank(seed: str, request: str) -> str:
    return hashlib.sha256(f"{seed}\0{request}".encode()).hexdigest()


def _round_robin(by_agent: Mapping[str, list[RouteRecord]], k: int) -> list[RouteRecord]:
    """Up to k records taking one per agent type in turn, so every routed agent type is represented."""
    queues = {a: list(v) for a, v in sorted(by_agent.items()) if v}
    out: list[RouteRecord] = []
    while len(out) < k and queues:
        for agent in list(queues):
            if len(out) >= k:
                break
            out.append(queues[agent].pop(0))
            if not queues[agent]:
                del queues[agent]
    return out


def sample_for_review(routes: Sequence[RouteRecord], n: int = 100, low_confidence: float = 0.5,
                      low_share: float = 0.3, seed: str = "") -> list[RouteRecord]:
    """n routes (all when fewer): first up to `low_share` of n from the routes with confidence below
    `low_confidence`, then the rest; each part spread across routed agent types in turn, and within an agent type
    in an order fixed by `seed` (e.g. the review week) so a rerun draws the same sample."""
    def grouped(records: Iterable[RouteRecord]) -> dict[str, list[RouteRecord]]:
        by_agent: dict[str, list[RouteRecord]] = defaultdict(list)
        for r in sorted(records, key=lambda r: _rank(seed, r.request)):
            by_agent[r.routed_agent].append(r)
        return by_agent

    low = [r for r in routes if r.confidence is not None and r.confidence < low_confidence]
    picked = _round_robin(grouped(low), min(len(low), round(n * low_share)))
    chosen = {r.request for r in picked}
    picked += _round_robin(grouped(r for r in routes if r.request not in chosen), n - len(picked))
    return picked


def review_rows(sample: Sequence[RouteRecord], batch: str) -> list[dict[str, Any]]:
    """The review file rows: an id, the route, and blank verdict columns."""
    rows = []
    for i, r in enumerate(sample, 1):
        row = asdict(r) | {"review_id": f"{batch}-{i:03d}", "timestamp": r.timestamp.isoformat()}
        row |= dict.fromkeys(VERDICT_COLUMNS, "")
        rows.append({k: row[k] for k in REVIEW_COLUMNS})
    return rows


def write_review_files(rows: Sequence[Mapping[str, Any]], folder: Path, batch: str) -> tuple[Path, Path]:
    """review-<batch>.jsonl and review-<batch>.csv (same rows and columns, blank verdicts) in `folder`."""
    jsonl, csv_path = folder / f"review-{batch}.jsonl", folder / f"review-{batch}.csv"
    jsonl.write_text("".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(REVIEW_COLUMNS))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r[k] for k in REVIEW_COLUMNS})
    return jsonl, csv_path


# ---------------------------------------------------------------- returned verdicts -> feedback
def returned_files(feedback_dir: Path | str) -> list[Path]:
    folder = Path(feedback_dir) / REVIEWS_SUBDIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".csv", ".jsonl")
                  and not p.name.startswith("."))


def read_returned(path: Path) -> list[dict[str, Any] | str]:
    """The rows of a returned review file: dicts, or for a JSONL line that is not a JSON object the raw line (passed
    on as is, so the feedback reader quarantines it with its reason)."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [dict(row) for row in csv.DictReader(fh)]
    out: list[dict[str, Any] | str] = []
    for _, raw, _ in iter_raw_lines(path):
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        out.append(obj if isinstance(obj, dict) else text)
    return out


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _confidence(value: Any) -> Any:
    """CSV cells are text: a number string becomes a float; anything else is passed on for the feedback reader to
    judge."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return float(value)
        except ValueError:
            return value
    return value


def verdict_to_feedback(row: Mapping[str, Any], reviewed_at: str) -> dict[str, Any] | None:
    """One returned review row as a feedback row, or None when it carries no verdict (not reviewed). Nothing is
    validated here: a wrong verdict, an unknown agent or tier, an empty request all reach the feedback reader, which
    quarantines them with the reason. `correct` takes the routed labels unless the reviewer filled them; `wrong`
    needs at least one corrected label (an unfilled one means the routed value was right)."""
    verdict = str(row.get("verdict") or "").strip().lower()
    if not verdict:
        return None
    routed_agent, routed_tier = row.get("routed_agent"), row.get("routed_tier")
    correct_agent = None if _blank(row.get("correct_agent")) else str(row["correct_agent"]).strip()
    correct_tier = None if _blank(row.get("correct_tier")) else str(row["correct_tier"]).strip()
    if verdict == "correct" or (verdict == "wrong" and (correct_agent or correct_tier)):
        correct_agent = correct_agent or routed_agent
        correct_tier = correct_tier or routed_tier
    # an unknown verdict, or `wrong` with nothing corrected, leaves the labels missing: quarantined as missing_field
    out = {
        "request": row.get("request"), "context": row.get("context") or "", "routed_agent": routed_agent,
        "routed_tier": routed_tier, "correct_agent": correct_agent, "correct_tier": correct_tier,
        "timestamp": str(row.get("reviewed_at") or "").strip() or reviewed_at,
        "confidence": _confidence(row.get("confidence")), "source": REVIEW_SOURCE, "verdict": verdict,
        "review_id": row.get("review_id"), "reviewer": row.get("reviewer") or "", "notes": row.get("notes") or "",
    }
    if str(row.get("served_by") or "").strip():
        # a canary route: both decisions travel with the verdict, so each arm can be scored (core/canary.score_arms)
        out["canary"] = {"served_by": str(row["served_by"]).strip(),
                         **{arm: {"agent_type": row.get(f"{arm}_agent") or None, "model": row.get(f"{arm}_tier") or None}
                            for arm in ("champion", "challenger")}}
    if verdict not in VERDICTS:
        out["verdict_problem"] = f"unknown verdict {verdict!r}; use one of {list(VERDICTS)}"
    return out


def returned_to_inbox_lines(path: Path) -> tuple[list[str], dict[str, int]]:
    """The inbox lines for one returned review file (reviewed rows only), and counts. The review time of a row is
    its `reviewed_at` cell when filled, else the file's modification time, so importing the same file twice writes
    the same lines."""
    reviewed_at = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    lines, counts = [], {"rows": 0, "reviewed": 0, "unreviewed": 0, "not_an_object": 0}
    for row in read_returned(path):
        counts["rows"] += 1
        if isinstance(row, str):
            counts["not_an_object"] += 1
            lines.append(row)
            continue
        fb = verdict_to_feedback(row, reviewed_at)
        if fb is None:
            counts["unreviewed"] += 1
            continue
        counts["reviewed"] += 1
        lines.append(json.dumps(fb, ensure_ascii=False, sort_keys=True))
    return lines, counts


def inbox_name(path: Path) -> str:
    return f"{INBOX_PREFIX}{path.stem}.jsonl"


def write_inbox_file(feedback_dir: Path | str, name: str, lines: Sequence[str]) -> bool:
    """Write (or replace) one inbox file atomically; False when it already holds exactly these lines (so the
    feedback sensor's cursor is not disturbed by a re-import)."""
    target = Path(feedback_dir) / name
    body = "".join(line + "\n" for line in lines)
    if target.exists() and target.read_text(encoding="utf-8", errors="replace") == body:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(target)
    return True

