"""Claude-written hard negatives: for each confusing agent pair, ask for requests that sit between the two agents
with a subtle preference for one, as structured output (a forced tool call with a JSON schema).

Responses are cached on disk by a hash of (model, prompt, parameters); the cache holds the response body only,
never the key or headers. Failures (429 after retries, 5xx, timeouts, malformed or truncated output, wrong labels)
are counted and dropped; only a run in which every request failed raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..catalog import Catalog
from ..claude_api import ClaudeStats, ResponseCache, cache_key, cached_or_todo, fetch, model_price
from .triplets import finish, pair_name

__all__ = ["ClaudeProviderError", "ClaudeSettings", "ClaudeStats", "ResponseCache", "claude_triplets", "shingles"]

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


def _plan(catalog: Catalog, settings: ClaudeSettings) -> list[tuple[tuple[str, str], int, dict[str, Any], str]]:
    plan = []
    for pair in catalog.confusing_pairs:
        for r in range(settings.requests_per_pair):
            params = build_params(catalog, pair, settings, r)
            plan.append((pair, r, params, cache_key(params, PROMPT_VERSION)))
    return plan


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
    bodies, todo = cached_or_todo([(params, key) for _pair, _r, params, key in plan], cache, stats)
    if todo:
        bodies |= fetch(client, todo, cache, stats, price, use_batches=settings.use_batches,
                        poll_seconds=settings.batch_poll_seconds, timeout_seconds=settings.batch_timeout_seconds)
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
