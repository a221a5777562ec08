"""Routing feedback: JSONL rows (request, what the router chose, what was right) from an inbox folder, validated into
seed-format training examples; malformed rows are quarantined with file, line and reason, never dropped silently.

The reader works on bytes and line offsets (not `core.jsonl.json_lines`) so that one undecodable line is quarantined
instead of failing the whole file, and so that the feedback sensor can resume a file where it stopped reading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from .catalog import Catalog
from .schema import EXAMPLE_SCHEMA, category_label

log = logging.getLogger(__name__)

FEEDBACK_DIR_ENV = "RUVTRAIN_FEEDBACK_DIR"
DEFAULT_FEEDBACK_DIR = "feedback_inbox"
FEEDBACK_KIND = "feedback"  # template_id and augmentation of every feedback example
# A human-confirmed label is worth as much as the best hand-written template (catalog QUALITY_RANGE is 0.80-0.96).
FEEDBACK_QUALITY = 0.95
FALLBACK_COMPLEXITY = "Moderate"
REQUIRED_FIELDS = ("request", "routed_agent", "correct_agent", "routed_tier", "correct_tier", "timestamp")
_HEAD_BYTES = 1024  # bytes of a file's start remembered by the sensor to notice a replaced file


def resolve_feedback_dir(configured: str = "") -> Path:
    """The configured folder, else $RUVTRAIN_FEEDBACK_DIR, else `feedback_inbox` (relative to the working dir)."""
    return Path(configured or os.environ.get(FEEDBACK_DIR_ENV) or DEFAULT_FEEDBACK_DIR)


@dataclass(frozen=True)
class FeedbackLabels:
    """The part of the catalog feedback is checked against: agent types, tiers, routing table, complexities."""

    agents: dict[str, str]  # agent_type -> category
    tiers: tuple[str, ...]
    routing: dict[str, dict[str, str]]  # category -> complexity -> tier
    complexities: tuple[str, ...]
    domains: tuple[str, ...]

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> FeedbackLabels:
        return cls(
            agents={a: catalog.category_of(a) for a in catalog.agent_types},
            tiers=tuple(catalog.tier_order),
            routing={c: dict(row) for c, row in catalog.routing.items()},
            complexities=tuple(catalog.complexities),
            domains=tuple(catalog.domains),
        )

    def complexity_for(self, category: str, tier: str) -> str:
        """The complexity whose routing-table cell for `category` is `tier` when exactly one is; else Moderate."""
        matches = [cx for cx in self.complexities if self.routing[category][cx] == tier]
        if len(matches) == 1:
            return matches[0]
        return FALLBACK_COMPLEXITY if FALLBACK_COMPLEXITY in self.complexities else self.complexities[0]


@dataclass(frozen=True)
class FeedbackRow:
    file: str
    line: int
    request: str
    context: str
    routed_agent: str
    correct_agent: str
    routed_tier: str
    correct_tier: str
    timestamp: datetime  # timezone-aware (naive input is read as UTC)
    confidence: float | None
    domain: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, the timestamp in ISO 8601 (read back by `read_valid_rows`)."""
        return {**self.__dict__, "timestamp": self.timestamp.isoformat()}


@dataclass(frozen=True)
class QuarantinedRow:
    file: str
    line: int
    reason: str  # short code, the key of the stats table
    detail: str  # what exactly is wrong, naming the field
    raw: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "detail": self.detail, "raw": self.raw}


class RowError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- reading and validating
def inbox_files(folder: Path) -> list[Path]:
    """Every `*.jsonl` in the folder, by name; hidden files (a writer's temp files) are ignored."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.jsonl") if p.is_file() and not p.name.startswith("."))


def iter_raw_lines(path: Path, offset: int = 0, first_line: int = 1,
                   complete_only: bool = False) -> Iterator[tuple[int, bytes, int]]:
    """(line number, raw bytes, byte offset after the line) from `offset` on. With `complete_only` a last line without
    its newline (still being written) is not yielded."""
    with path.open("rb") as fh:
        fh.seek(offset)
        pos, lineno = offset, first_line
        for chunk in fh:
            if complete_only and not chunk.endswith(b"\n"):
                break
            pos += len(chunk)
            yield lineno, chunk, pos
            lineno += 1


def _text(value: Any, name: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise RowError("invalid_field", f"'{name}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RowError("invalid_field", f"'{name}' is empty")
    return value


def _label(value: Any, name: str, allowed: Mapping[str, Any] | tuple[str, ...], kind: str) -> str:
    value = _text(value, name)
    if value not in allowed:
        raise RowError(f"unknown_{kind}", f"'{name}' = {value!r} is not a known {kind}")
    return value


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise RowError("bad_timestamp", f"'timestamp' must be an ISO 8601 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise RowError("bad_timestamp", f"'timestamp' = {value!r} is not ISO 8601") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _confidence(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise RowError("invalid_field", f"'confidence' = {value!r} must be a number from 0 to 1")
    return float(value)


def parse_row(obj: Any, labels: FeedbackLabels, file: str, line: int) -> FeedbackRow:
    """One decoded JSON value -> FeedbackRow; the first problem found raises RowError (fields checked in a fixed
    order so the reason is deterministic)."""
    if not isinstance(obj, dict):
        raise RowError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in obj or obj[name] is None:
            raise RowError("missing_field", f"missing field '{name}'")
    request = _text(obj["request"], "request")
    context = _text(obj.get("context"), "context", required=False)
    routed_agent = _label(obj["routed_agent"], "routed_agent", labels.agents, "agent")
    correct_agent = _label(obj["correct_agent"], "correct_agent", labels.agents, "agent")
    routed_tier = _label(obj["routed_tier"], "routed_tier", labels.tiers, "tier")
    correct_tier = _label(obj["correct_tier"], "correct_tier", labels.tiers, "tier")
    timestamp = _timestamp(obj["timestamp"])
    confidence = _confidence(obj.get("confidence"))
    domain = obj.get("domain")
    if domain is not None and domain not in labels.domains:
        raise RowError("invalid_field", f"'domain' = {domain!r} is not one of {list(labels.domains)}")
    return FeedbackRow(file, line, request.strip(), context.strip(), routed_agent, correct_agent, routed_tier,
                       correct_tier, timestamp, confidence, domain)


def parse_line(raw: bytes, labels: FeedbackLabels, file: str, line: int) -> FeedbackRow | QuarantinedRow | None:
    """One raw line -> a row, a quarantined row, or None for a blank line."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    if not text.strip():
        return None
    try:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RowError("not_utf8", f"byte {exc.start} is not UTF-8") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RowError("invalid_json", f"not valid JSON ({exc.msg})") from None
        return parse_row(obj, labels, file, line)
    except RowError as err:
        return QuarantinedRow(file, line, err.reason, err.detail, text)


# ---------------------------------------------------------------- examples
_DOMAIN_WORD = re.compile(r"([a-z])([A-Z])")


def _domain_for(row: FeedbackRow, labels: FeedbackLabels) -> str:
    """The row's own domain, else the first catalog domain named as a word in the request ("DataScience" also as
    "data science"), else the first catalog domain."""
    if row.domain:
        return row.domain
    text = f" {row.request.lower()} "
    for dom in labels.domains:
        spaced = _DOMAIN_WORD.sub(r"\1 \2", dom).lower()
        if re.search(rf"(?<![a-z0-9])({re.escape(dom.lower())}|{re.escape(spaced)})(?![a-z0-9])", text):
            return dom
    return labels.domains[0]


def group_id(request: str) -> str:
    return "feedback-" + hashlib.sha1(request.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]


def to_example(row: FeedbackRow, labels: FeedbackLabels) -> dict[str, Any]:
    """A feedback row in the flat example shape (EXAMPLE_SCHEMA): the correct agent and tier are the label; the
    expected model is the routing-table cell, which differs from the correct tier when the table has no cell for it
    (tagged `tier-outside-table`)."""
    category = labels.agents[row.correct_agent]
    complexity = labels.complexity_for(category, row.correct_tier)
    expected = labels.routing[category][complexity]
    tags = [FEEDBACK_KIND, "corrected" if row.routed_agent != row.correct_agent else "confirmed",
            f"tier-{row.correct_tier}"]
    if expected != row.correct_tier:
        tags.append("tier-outside-table")
    return {
        "input": row.request,
        "context": row.context,
        "output_agent": category,
        "category": category_label(category),
        "complexity": complexity,
        "domain": _domain_for(row, labels),
        "expected_model": expected,
        "quality_score": FEEDBACK_QUALITY,
        "tags": tags,
        "agent_type": row.correct_agent,
        "template_id": FEEDBACK_KIND,
        "augmentation": FEEDBACK_KIND,
        "group_id": group_id(row.request),
    }


def dedupe_latest(rows: list[FeedbackRow]) -> list[FeedbackRow]:
    """One row per request text: the latest timestamp wins; ties go to the later file name and line."""
    best: dict[str, FeedbackRow] = {}
    for row in rows:
        kept = best.get(row.request)
        if kept is None or (row.timestamp, row.file, row.line) > (kept.timestamp, kept.file, kept.line):
            best[row.request] = row
    return list(best.values())


@dataclass
class FeedbackResult:
    examples: pl.DataFrame  # EXAMPLE_SCHEMA, sorted by agent_type then input
    quarantine: list[QuarantinedRow]
    stats: dict[str, Any]
    rows: list[FeedbackRow] = field(default_factory=list)  # valid rows before dedupe


def feedback_stats(valid: list[FeedbackRow], quarantine: list[QuarantinedRow], kept: list[FeedbackRow],
                   examples: pl.DataFrame, files: dict[str, dict[str, int]], threshold: float) -> dict[str, Any]:
    """Counts, quarantine reasons and the drift signals (rates are over valid rows, before dedupe)."""
    n = len(valid)
    scored = [r.confidence for r in valid if r.confidence is not None]
    low = sum(c < threshold for c in scored)
    by_reason = Counter(q.reason for q in quarantine)
    return {
        "files": files,
        "rows_read": n + len(quarantine),
        "valid": n,
        "quarantined": len(quarantine),
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "duplicates_dropped": n - len(kept),
        "examples": examples.height,
        "with_confidence": len(scored),
        "low_confidence_threshold": threshold,
        "low_confidence": low,
        # share of rows that carry a confidence; None when none does
        "low_confidence_share": round(low / len(scored), 4) if scored else None,
        "agent_mismatch_rate": round(sum(r.routed_agent != r.correct_agent for r in valid) / n, 4) if n else None,
        "tier_mismatch_rate": round(sum(r.routed_tier != r.correct_tier for r in valid) / n, 4) if n else None,
        "tier_outside_table": int(examples["tags"].list.contains("tier-outside-table").sum()) if examples.height
        else 0,
        "by_agent_type": dict(sorted(Counter(examples["agent_type"].to_list()).items())),
        "first_timestamp": min(r.timestamp for r in valid).isoformat() if valid else None,
        "last_timestamp": max(r.timestamp for r in valid).isoformat() if valid else None,
    }


def load_feedback(folder: Path | str, labels: FeedbackLabels, low_confidence_threshold: float = 0.5) -> FeedbackResult:
    """Read every inbox file: valid rows -> deduplicated, deterministically sorted examples; the rest -> quarantine."""
    folder = Path(folder)
    valid: list[FeedbackRow] = []
    quarantine: list[QuarantinedRow] = []
    files: dict[str, dict[str, int]] = {}
    for path in inbox_files(folder):
        counts = {"valid": 0, "quarantined": 0}
        for lineno, raw, _ in iter_raw_lines(path):
            parsed = parse_line(raw, labels, path.name, lineno)
            if isinstance(parsed, FeedbackRow):
                valid.append(parsed)
                counts["valid"] += 1
            elif isinstance(parsed, QuarantinedRow):
                quarantine.append(parsed)
                counts["quarantined"] += 1
        files[path.name] = counts
    for q in quarantine[:20]:
        log.warning("feedback %s:%d quarantined (%s): %s", q.file, q.line, q.reason, q.detail)
    if len(quarantine) > 20:
        log.warning("feedback: %d more row(s) quarantined (see quarantine.jsonl)", len(quarantine) - 20)
    kept = dedupe_latest(valid)
    examples = pl.DataFrame([to_example(r, labels) for r in kept], schema=EXAMPLE_SCHEMA, orient="row")
    examples = examples.sort("agent_type", "input")
    stats = feedback_stats(valid, quarantine, kept, examples, files, low_confidence_threshold)
    return FeedbackResult(examples, quarantine, stats, valid)


def write_valid_rows(rows: list[FeedbackRow], path: Path) -> None:
    """Every valid row (before dedupe: each is one routing event) as JSON lines, in reading order; monitoring
    re-scores the recent ones."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")


def read_valid_rows(path: Path | str) -> list[FeedbackRow]:
    """The rows `write_valid_rows` wrote (they were validated when the feedback was read)."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        try:
            obj = json.loads(line)
            rows.append(FeedbackRow(**(obj | {"timestamp": datetime.fromisoformat(obj["timestamp"])})))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}:{lineno}: not a feedback row ({exc})") from None
    return rows


# ---------------------------------------------------------------- incremental scan (sensor)
def _head_digest(path: Path, length: int) -> str:
    with path.open("rb") as fh:
        return hashlib.sha1(fh.read(min(length, _HEAD_BYTES)), usedforsecurity=False).hexdigest()[:16]


@dataclass
class InboxScan:
    files: dict[str, dict[str, Any]]  # file name -> {"offset", "lines", "head"}: what has been read so far
    new_valid: int = 0
    new_malformed: int = 0
    new_by_file: dict[str, int] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)  # files that shrank or changed at the start: read again


def scan_inbox(folder: Path | str, seen: Mapping[str, Mapping[str, Any]], labels: FeedbackLabels) -> InboxScan:
    """Read only what was appended to each inbox file since `seen` (complete lines only) and count valid and
    malformed rows. A file whose size dropped below, or whose first bytes differ from, what was seen is a new file
    and is read from the start; files that disappeared leave the state."""
    scan = InboxScan(files={})
    for path in inbox_files(Path(folder)):
        state = seen.get(path.name)
        offset, lines = 0, 0
        if state:
            offset, lines = int(state["offset"]), int(state["lines"])
            if path.stat().st_size < offset or _head_digest(path, offset) != state.get("head"):
                offset, lines = 0, 0
                scan.restarted.append(path.name)
        new = 0
        for lineno, raw, end in iter_raw_lines(path, offset, lines + 1, complete_only=True):
            offset, lines = end, lineno
            parsed = parse_line(raw, labels, path.name, lineno)
            if isinstance(parsed, FeedbackRow):
                scan.new_valid += 1
                new += 1
            elif isinstance(parsed, QuarantinedRow):
                scan.new_malformed += 1
                new += 1
        scan.files[path.name] = {"offset": offset, "lines": lines, "head": _head_digest(path, offset)}
        if new:
            scan.new_by_file[path.name] = new
    return scan
