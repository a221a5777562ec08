"""Claude-written hard negatives: for each confusing agent pair, ask for requests that sit between the two agents
with a subtle preference for one, as structured output (a forced tool call with a JSON schema).

Responses are cached on disk by a hash of (model, prompt, parameters); the cache holds the response body only,
never the key or headers. Failures (429 after retries, 5xx, timeouts, malformed or truncated output, wrong labels)
are counted and dropped; only a run in which every request failed raises.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..catalog import Catalog
from .triplets import finish, pair_name

log = logging.getLogger(__name__)

TOOL_NAME = "submit_requests"
PROMPT_VERSION = "v1"


class ClaudeProviderError(RuntimeError):
    """Every request to Claude failed; the message says why, by reason."""


@dataclass(frozen=True)
class ClaudeSettings:
    model: str = "claude-sonnet-4-6"
    items_per_request: int = 20
    requests_per_pair: int = 1
    max_tokens: int = 4096
    use_batches: bool = False
    batch_poll_seconds: float = 10.0
    batch_timeout_seconds: float = 24 * 3600.0


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


def submit_tool(pair: tuple[str, str], complexities: list[str]) -> dict[str, Any]:
    a, b = pair
    return {
        "name": TOOL_NAME,
        "description": "Submit the requests you wrote, each labelled with the agent type that should handle it.",
        "input_schema": {
            "type": "object",
            "properties": {
                "requests": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string", "description": "the request as a user would type it"},
                            "context": {"type": "string", "description": "one sentence of extra detail"},
                            "preferred_agent": {"type": "string", "enum": [a, b]},
                            "other_agent": {"type": "string", "enum": [a, b]},
                            "complexity": {"type": "string", "enum": complexities},
                            "why": {"type": "string", "description": "why the preferred agent fits better"},
                        },
                        "required": ["text", "preferred_agent", "other_agent", "complexity"],
                    },
                }
            },
            "required": ["requests"],
        },
    }


def build_params(catalog: Catalog, pair: tuple[str, str], settings: ClaudeSettings, round_no: int) -> dict[str, Any]:
    """Messages API parameters for one request about one pair (deterministic: same inputs, same cache key)."""
    a, b = pair
    desc = catalog.agents
    system = (
        "You write realistic training data for a router that sends requests to AI coding-assistant agents. "
        "Agents:\n"
        f"- {a}: {desc[a]['description']}\n"
        f"- {b}: {desc[b]['description']}\n"
        "Write requests the way engineers really type them to a coding assistant: terse commands, questions, pasted "
        "error lines, file names, ticket numbers, frameworks, varied length. Each request must be plausible for "
        "both agents but better handled by one of them, for a reason a careful reader would accept."
    )
    half = settings.items_per_request // 2
    user = (
        f"Write {settings.items_per_request} distinct requests that sit between '{a}' and '{b}': about {half} "
        f"should be better handled by '{a}' and the rest by '{b}'. Spread them over these domains: "
        f"{', '.join(catalog.domains)}; and over complexities {', '.join(catalog.complexities)}. "
        f"Batch {round_no + 1}: do not repeat earlier batches' ideas. Submit them with the {TOOL_NAME} tool."
    )
    return {
        "model": settings.model,
        "max_tokens": settings.max_tokens,
        "system": system,
        "messages": [{"role": "user", "content": user}],
        "tools": [submit_tool(pair, catalog.complexities)],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


def cache_key(params: dict[str, Any]) -> str:
    blob = json.dumps({"prompt_version": PROMPT_VERSION, "params": params}, sort_keys=True, ensure_ascii=False)
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


def model_price(catalog: Catalog, model: str) -> dict[str, float]:
    """USD per million tokens for a Claude model id, from routing.yaml's tiers (sonnet when the id names none)."""
    for tier in catalog.models:
        if tier in model.lower():
            return catalog.models[tier]
    return catalog.models.get("sonnet", next(iter(catalog.models.values())))


def _message_body(message: Any) -> dict[str, Any]:
    """The parts of a Message we keep (a plain dict: safe to cache and to parse the same way when cached)."""
    data = message.model_dump(mode="json") if hasattr(message, "model_dump") else dict(message)
    return {
        "content": data.get("content") or [],
        "stop_reason": data.get("stop_reason"),
        "usage": {k: (data.get("usage") or {}).get(k) for k in ("input_tokens", "output_tokens")},
        "model": data.get("model"),
    }


def _failure_reason(exc: Exception) -> str:
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


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def parse_items(
    body: dict[str, Any],
    pair: tuple[str, str],
    complexities: list[str],
    seen: set[str],
    peer_shingles: set[tuple[str, ...]],
    stats: ClaudeStats,
) -> list[dict[str, str]] | None:
    """Validated items of one response; None when the whole response is unusable (counted in stats.failures)."""
    if body.get("stop_reason") == "max_tokens":
        stats.failures["truncated"] += 1
        return None
    tool_inputs = [c.get("input") for c in body.get("content", []) if c.get("type") == "tool_use"
                   and c.get("name") == TOOL_NAME]
    if not tool_inputs or not isinstance(tool_inputs[0], dict) or not isinstance(tool_inputs[0].get("requests"), list):
        stats.failures["malformed"] += 1
        return None
    items = []
    for raw in tool_inputs[0]["requests"]:
        if not isinstance(raw, dict):
            stats.rejects["malformed_item"] += 1
            continue
        text = raw.get("text")
        pref, other = raw.get("preferred_agent"), raw.get("other_agent")
        if not isinstance(text, str) or not text.strip():
            stats.rejects["empty_text"] += 1
            continue
        if pref not in pair or other not in pair or pref == other:
            stats.rejects["wrong_label"] += 1
            continue
        cx = raw.get("complexity")
        if cx not in complexities:
            stats.rejects["bad_complexity"] += 1
            continue
        key = _norm(text)
        if key in seen:
            stats.rejects["duplicate"] += 1
            continue
        if peer_shingles and (shingles(text) & peer_shingles):
            stats.rejects["peer_copy"] += 1
            continue
        seen.add(key)
        context = raw.get("context") if isinstance(raw.get("context"), str) else ""
        items.append({"text": text.strip(), "context": context.strip(), "positive": pref, "negative": other,
                      "complexity": cx})
    return items


def _account(body: dict[str, Any], stats: ClaudeStats, price: dict[str, float], discount: float) -> None:
    usage = body.get("usage") or {}
    i, o = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    stats.input_tokens += i
    stats.output_tokens += o
    stats.cost_usd += discount * (i * price["input_per_mtok"] + o * price["output_per_mtok"]) / 1e6


def _plan(catalog: Catalog, settings: ClaudeSettings) -> list[tuple[tuple[str, str], int, dict[str, Any], str]]:
    plan = []
    for pair in catalog.confusing_pairs:
        for r in range(settings.requests_per_pair):
            params = build_params(catalog, pair, settings, r)
            plan.append((pair, r, params, cache_key(params)))
    return plan


def _fetch_sync(client: Any, todo: list[tuple[Any, ...]], cache: ResponseCache, stats: ClaudeStats,
                price: dict[str, float]) -> dict[str, dict[str, Any]]:
    bodies = {}
    for _pair, _r, params, key in todo:
        stats.requests_sent += 1
        try:
            message = client.messages.create(**params)
            body = _message_body(message)
        except Exception as exc:  # noqa: BLE001 - every failure is counted by reason, none stops the run
            reason = _failure_reason(exc)
            stats.failures[reason] += 1
            log.warning("Claude request failed (%s): %s: %s", reason, type(exc).__name__, str(exc)[:200])
            continue
        _account(body, stats, price, 1.0)
        if body.get("stop_reason") != "max_tokens":
            cache.put(key, body)
        bodies[key] = body
    return bodies


def _fetch_batch(client: Any, todo: list[tuple[Any, ...]], cache: ResponseCache, stats: ClaudeStats,
                 price: dict[str, float], settings: ClaudeSettings,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, dict[str, Any]]:
    """Message Batches (half price): one batch for every uncached request, polled until it ends."""
    bodies: dict[str, dict[str, Any]] = {}
    requests = [{"custom_id": key[:64], "params": params} for _pair, _r, params, key in todo]
    by_custom = {key[:64]: key for *_, key in todo}
    try:
        batch = client.messages.batches.create(requests=requests)
    except Exception as exc:  # noqa: BLE001
        stats.failures[_failure_reason(exc)] += len(todo)
        return bodies
    stats.requests_sent += len(todo)
    stats.batch_ids.append(batch.id)
    deadline = time.monotonic() + settings.batch_timeout_seconds
    while batch.processing_status != "ended":
        if time.monotonic() > deadline:
            stats.failures["batch_timeout"] += len(todo)
            return bodies
        sleep(settings.batch_poll_seconds)
        batch = client.messages.batches.retrieve(batch.id)
    for entry in client.messages.batches.results(batch.id):
        key = by_custom.get(entry.custom_id)
        if key is None:
            continue
        if entry.result.type != "succeeded":
            stats.failures[f"batch_{entry.result.type}"] += 1
            continue
        body = _message_body(entry.result.message)
        _account(body, stats, price, 0.5)
        if body.get("stop_reason") != "max_tokens":
            cache.put(key, body)
        bodies[key] = body
    return bodies


def claude_triplets(
    client: Any,
    catalog: Catalog,
    settings: ClaudeSettings,
    cache: ResponseCache,
    existing_inputs: Iterable[str],
    peer_shingles: set[tuple[str, ...]],
) -> tuple[pl.DataFrame, ClaudeStats]:
    """Ask Claude for pair-straddling requests (cache first), validate every item, return hard triplets + stats."""
    stats = ClaudeStats()
    plan = _plan(catalog, settings)
    stats.requests_planned = len(plan)
    price = model_price(catalog, settings.model)
    bodies: dict[str, dict[str, Any]] = {}
    todo = []
    for entry in plan:
        cached = cache.get(entry[3])
        if cached is not None:
            stats.cache_hits += 1
            bodies[entry[3]] = cached
        else:
            todo.append(entry)
    if todo:
        fetch = _fetch_batch if settings.use_batches else _fetch_sync
        extra = {"settings": settings} if settings.use_batches else {}
        bodies |= fetch(client, todo, cache, stats, price, **extra)
    usable = 0
    seen = {_norm(t) for t in existing_inputs}
    rows: list[dict[str, Any]] = []
    for pair, r, _params, key in plan:
        body = bodies.get(key)
        if body is None:
            continue
        items = parse_items(body, pair, catalog.complexities, seen, peer_shingles, stats)
        if items is None:
            continue
        usable += 1
        for i, item in enumerate(items):
            name = pair_name(*pair)
            rows.append({"anchor": item["text"], "context": item["context"], "positive": item["positive"],
                         "negative": item["negative"], "pair": name, "complexity": item["complexity"],
                         "group_id": f"claude-{name}-{r:03d}-{i:03d}"})
    stats.accepted = len(rows)
    if plan and usable == 0:
        raise ClaudeProviderError(
            f"all {len(plan)} Claude requests failed or were unusable: failures {dict(stats.failures)}, "
            f"rejects {dict(stats.rejects)}"
        )
    if not rows:
        return finish({"anchor": []}), stats
    frame = pl.DataFrame(rows)
    out = finish({
        "anchor": frame["anchor"], "context": frame["context"], "positive": frame["positive"],
        "negative": frame["negative"], "is_hard": [True] * frame.height, "source": ["claude"] * frame.height,
        "pair": frame["pair"], "group_id": frame["group_id"],
    })
    return out, stats
