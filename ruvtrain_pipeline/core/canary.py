"""Canary routing: a deterministic fraction of requests (by a hash of the request) is served by the challenger router
instead of the champion; both decisions are logged as JSON lines under the feedback folder (`<feedback dir>/canary/`)
in the feedback row format, less the verdict (`correct_agent`, `correct_tier`). Once a reviewer adds the verdict
(core/review.py), a row is ordinary feedback that still carries both decisions, so each arm can be scored."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CANARY_SUBDIR = "canary"
SOURCE = "canary"
_SALT = "ruvtrain-canary-v1"


def canary_bucket(request: str, context: str | None = None) -> float:
    """A number in [0, 1) fixed by the request text and context (whitespace at the ends ignored): the same request
    always lands in the same bucket, on any machine and in any process."""
    key = "\0".join((_SALT, request.strip(), (context or "").strip()))
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def served_by_challenger(request: str, context: str | None, fraction: float) -> bool:
    if not 0 <= fraction <= 1:
        raise ValueError(f"canary fraction must be in [0, 1], got {fraction}")
    return canary_bucket(request, context) < fraction


def canary_dir(feedback_dir: Path | str) -> Path:
    return Path(feedback_dir) / CANARY_SUBDIR


def log_path(feedback_dir: Path | str, when: datetime) -> Path:
    """One log file per UTC day."""
    return canary_dir(feedback_dir) / f"canary-{when.astimezone(UTC):%Y-%m-%d}.jsonl"


def _decision(route: Mapping[str, Any], model_dir: str, version: str) -> dict[str, Any]:
    return {"model_dir": model_dir, "version": version,
            **{k: route.get(k) for k in ("agent_type", "agent", "complexity", "model", "confidence", "method")}}


def canary_row(request: str, context: str | None, champion: Mapping[str, Any], challenger: Mapping[str, Any],
               fraction: float, when: datetime, arms: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """One log line: the served decision in the feedback fields (routed_agent, routed_tier, confidence), and both
    decisions under `canary`. `arms` = {"champion": (model dir, version), "challenger": (...)}."""
    bucket = canary_bucket(request, context)
    served_name = "challenger" if bucket < fraction else "champion"
    served = challenger if served_name == "challenger" else champion
    return {
        "request": request,
        "context": context or "",
        "routed_agent": served.get("agent_type"),
        "routed_tier": served.get("model"),
        "confidence": served.get("confidence"),
        "timestamp": when.astimezone(UTC).isoformat(),
        "source": SOURCE,
        "canary": {"fraction": fraction, "bucket": round(bucket, 6), "served_by": served_name,
                   "agree": champion.get("agent_type") == challenger.get("agent_type")
                   and champion.get("model") == challenger.get("model"),
                   "champion": _decision(champion, *arms["champion"]),
                   "challenger": _decision(challenger, *arms["challenger"])},
    }


def default_challenger_dir(data_dir: Path | str = "data") -> Path:
    """The latest exported router (data/gguf_export), the challenger of the production router."""
    from .router import SIDECAR, RouterError

    root = Path(os.environ.get("RUVTRAIN_DATA_DIR", data_dir))
    if not (root / "gguf_export" / SIDECAR).exists():
        raise RouterError(f"no challenger: {root / 'gguf_export'} holds no exported router (pass --challenger PATH)")
    return root / "gguf_export"


def append_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append complete lines in one write (a reader never sees half a line from us); returns the rows written."""
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows]
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, "".join(lines).encode("utf-8"))
    finally:
        os.close(fd)
    return len(lines)


def score_arms(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Agent-type and tier accuracy of each arm on canary rows that carry a verdict (`correct_agent`,
    `correct_tier`): both decisions are known for every row, so both arms are scored on the same requests."""
    out = {arm: {"n": 0, "agent_correct": 0, "tier_correct": 0} for arm in ("champion", "challenger")}
    for row in rows:
        canary, truth_agent, truth_tier = row.get("canary"), row.get("correct_agent"), row.get("correct_tier")
        if not isinstance(canary, Mapping) or not truth_agent or not truth_tier:
            continue
        for arm, counts in out.items():
            decision = canary.get(arm) or {}
            counts["n"] += 1
            counts["agent_correct"] += decision.get("agent_type") == truth_agent
            counts["tier_correct"] += decision.get("model") == truth_tier
    for counts in out.values():
        n = counts["n"]
        counts["agent_acc"] = round(counts["agent_correct"] / n, 4) if n else None
        counts["tier_acc"] = round(counts["tier_correct"] / n, 4) if n else None
    return out
