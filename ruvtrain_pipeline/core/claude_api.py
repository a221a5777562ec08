"""Shared plumbing for every Claude call of the pipeline (hard negatives, GRPO judge): disk cache of response
bodies keyed by a hash of (prompt version, parameters), token and cost accounting, failure reasons, and the two ways
to send requests (one by one, or as a Message Batch at half price). The API key never reaches this module's outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog

log = logging.getLogger(__name__)


@dataclass
class ClaudeStats:
    requests_planned: int = 0
    requests_sent: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    failures: Counter = field(default_factory=Counter)
    rejects: Counter = field(default_factory=Counter)
    accepted: int = 0
    batch_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_planned": self.requests_planned,
            "requests_sent": self.requests_sent,
            "cache_hits": self.cache_hits,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "failures": dict(sorted(self.failures.items())),
            "rejects": dict(sorted(self.rejects.items())),
            "accepted": self.accepted,
            "batch_ids": list(self.batch_ids),
        }


def cache_key(params: dict[str, Any], prompt_version: str) -> str:
    blob = json.dumps({"prompt_version": prompt_version, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """One JSON file per cache key with the response body (content, usage, stop reason): no key, no headers."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("ignoring unreadable cache entry %s", path)
            return None

    def put(self, key: str, body: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{uuid.uuid4().hex[:6]}")
        tmp.write_text(json.dumps(body, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


def fetch(client: Any, todo: list[tuple[dict[str, Any], str]], cache: ResponseCache, stats: ClaudeStats,
          price: dict[str, float], *, use_batches: bool = False, poll_seconds: float = 10.0,
          timeout_seconds: float = 24 * 3600.0) -> dict[str, dict[str, Any]]:
    if use_batches:
        return fetch_batch(client, todo, cache, stats, price, poll_seconds, timeout_seconds)
    return fetch_sync(client, todo, cache, stats, price)


def cached_or_todo(entries: list[tuple[dict[str, Any], str]], cache: ResponseCache, stats: ClaudeStats
                   ) -> tuple[dict[str, dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """Split (params, key) entries into cached bodies and the ones still to send."""
    bodies: dict[str, dict[str, Any]] = {}
    todo = []
    for params, key in entries:
        cached = cache.get(key)
        if cached is None:
            todo.append((params, key))
        else:
            stats.cache_hits += 1
            bodies[key] = cached
    return bodies, todo


def model_price(catalog: Catalog, model: str) -> dict[str, float]:
    """USD per million tokens for a Claude model id, from routing.yaml's tiers (sonnet when the id names none)."""
    for tier in catalog.models:
        if tier in model.lower():
            return catalog.models[tier]
    return catalog.models.get("sonnet", next(iter(catalog.models.values())))


def message_body(message: Any) -> dict[str, Any]:
    """The parts of a Message we keep (a plain dict: safe to cache and to parse the same way when cached)."""
    data = message.model_dump(mode="json") if hasattr(message, "model_dump") else dict(message)
    return {
        "content": data.get("content") or [],
        "stop_reason": data.get("stop_reason"),
        "usage": {k: (data.get("usage") or {}).get(k) for k in ("input_tokens", "output_tokens")},
        "model": data.get("model"),
    }


def failure_reason(exc: Exception) -> str:
    import anthropic

    if isinstance(exc, anthropic.RateLimitError):
        return "rate_limited"
    if isinstance(exc, anthropic.APITimeoutError):
        return "timeout"
    if isinstance(exc, anthropic.APIConnectionError):
        return "connection"
    if isinstance(exc, anthropic.InternalServerError) or (
        isinstance(exc, anthropic.APIStatusError) and getattr(exc, "status_code", 0) >= 500
    ):
        return "server_error"
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return "auth"
    if isinstance(exc, anthropic.APIStatusError):
        return f"http_{exc.status_code}"
    if isinstance(exc, anthropic.APIResponseValidationError | json.JSONDecodeError | ValueError):
        return "malformed"
    return type(exc).__name__


def account(body: dict[str, Any], stats: ClaudeStats, price: dict[str, float], discount: float) -> None:
    usage = body.get("usage") or {}
    i, o = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    stats.input_tokens += i
    stats.output_tokens += o
    stats.cost_usd += discount * (i * price["input_per_mtok"] + o * price["output_per_mtok"]) / 1e6


def fetch_sync(client: Any, todo: list[tuple[dict[str, Any], str]], cache: ResponseCache, stats: ClaudeStats,
               price: dict[str, float]) -> dict[str, dict[str, Any]]:
    """One request per uncached (params, cache key); failures counted by reason in `stats`."""
    bodies = {}
    for params, key in todo:
        stats.requests_sent += 1
        try:
            message = client.messages.create(**params)
            body = message_body(message)
        except Exception as exc:  # noqa: BLE001 - every failure is counted by reason, none stops the run
            reason = failure_reason(exc)
            stats.failures[reason] += 1
            log.warning("Claude request failed (%s): %s: %s", reason, type(exc).__name__, str(exc)[:200])
            continue
        account(body, stats, price, 1.0)
        if body.get("stop_reason") != "max_tokens":
            cache.put(key, body)
        bodies[key] = body
    return bodies


def fetch_batch(client: Any, todo: list[tuple[dict[str, Any], str]], cache: ResponseCache, stats: ClaudeStats,
                price: dict[str, float], poll_seconds: float = 10.0, timeout_seconds: float = 24 * 3600.0,
                sleep: Callable[[float], None] = time.sleep) -> dict[str, dict[str, Any]]:
    """Message Batches (half price): one batch for every uncached (params, cache key), polled until it ends."""
    bodies: dict[str, dict[str, Any]] = {}
    requests = [{"custom_id": key[:64], "params": params} for params, key in todo]
    by_custom = {key[:64]: key for _params, key in todo}
    try:
        batch = client.messages.batches.create(requests=requests)
    except Exception as exc:  # noqa: BLE001
        stats.failures[failure_reason(exc)] += len(todo)
        return bodies
    stats.requests_sent += len(todo)
    stats.batch_ids.append(batch.id)
    deadline = time.monotonic() + timeout_seconds
    while batch.processing_status != "ended":
        if time.monotonic() > deadline:
            stats.failures["batch_timeout"] += len(todo)
            return bodies
        sleep(poll_seconds)
        batch = client.messages.batches.retrieve(batch.id)
    for entry in client.messages.batches.results(batch.id):
        key = by_custom.get(entry.custom_id)
        if key is None:
            continue
        if entry.result.type != "succeeded":
            stats.failures[f"batch_{entry.result.type}"] += 1
            continue
        body = message_body(entry.result.message)
        account(body, stats, price, 0.5)
        if body.get("stop_reason") != "max_tokens":
            cache.put(key, body)
        bodies[key] = body
    return bodies


