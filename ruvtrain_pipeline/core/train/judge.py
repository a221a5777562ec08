"""Judges for the GRPO pass. `labels`: correctness from the gold labels and routing.yaml (offline). `claude`: Claude
reads a sample of training requests and says which agent type should handle each and the cheapest Claude tier that
would do the job (structured output, cached, failures counted); GRPO then rewards routes against those judgments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import Catalog
from ..claude_api import ClaudeStats, ResponseCache, cache_key, cached_or_todo, fetch, model_price

log = logging.getLogger(__name__)

TOOL_NAME = "submit_judgments"
PROMPT_VERSION = "judge-v1"


@dataclass(frozen=True)
class JudgeSettings:
    model: str = "claude-sonnet-4-6"
    max_tasks: int = 200
    tasks_per_request: int = 20
    max_tokens: int = 4096
    use_batches: bool = False
    batch_poll_seconds: float = 10.0


def judge_params(catalog: Catalog, texts: list[str], settings: JudgeSettings) -> dict[str, Any]:
    agents = "\n".join(f"- {a}: {catalog.agents[a]['description']}" for a in catalog.agent_types)
    tiers = ", ".join(catalog.tier_order)
    numbered = "\n".join(f"{i}. {t}" for i, t in enumerate(texts))
    return {
        "model": settings.model,
        "max_tokens": settings.max_tokens,
        "system": (
            "You judge a router for an AI coding assistant. For each request, name the agent type that should "
            f"handle it and the cheapest Claude tier ({tiers}, cheapest first) that would do the job well.\n"
            f"Agent types:\n{agents}"
        ),
        "messages": [{"role": "user", "content": f"Requests:\n{numbered}\n\nJudge every request with {TOOL_NAME}."}],
        "tools": [{
            "name": TOOL_NAME,
            "description": "One judgment per request, by its number.",
            "input_schema": {
                "type": "object",
                "properties": {"judgments": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "agent_type": {"type": "string", "enum": catalog.agent_types},
                        "minimum_tier": {"type": "string", "enum": catalog.tier_order},
                    },
                    "required": ["index", "agent_type", "minimum_tier"],
                }}},
                "required": ["judgments"],
            },
        }],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


def claude_judgments(
    client: Any, catalog: Catalog, texts: list[str], settings: JudgeSettings, cache: ResponseCache
) -> tuple[np.ndarray, np.ndarray, ClaudeStats]:
    """(agent index, tier index) per text, -1 where no valid judgment came back; stats count every failure."""
    stats = ClaudeStats()
    agent = np.full(len(texts), -1, dtype=np.int64)
    tier = np.full(len(texts), -1, dtype=np.int64)
    chunks = [list(range(s, min(s + settings.tasks_per_request, len(texts))))
              for s in range(0, len(texts), settings.tasks_per_request)]
    entries = []
    for chunk in chunks:
        params = judge_params(catalog, [texts[i] for i in chunk], settings)
        entries.append((params, cache_key(params, PROMPT_VERSION)))
    stats.requests_planned = len(entries)
    bodies, todo = cached_or_todo(entries, cache, stats)
    if todo:
        bodies |= fetch(client, todo, cache, stats, model_price(catalog, settings.model),
                        use_batches=settings.use_batches, poll_seconds=settings.batch_poll_seconds)
    a_idx = {a: i for i, a in enumerate(catalog.agent_types)}
    t_idx = {t: i for i, t in enumerate(catalog.tier_order)}
    for chunk, (_params, key) in zip(chunks, entries, strict=True):
        body = bodies.get(key)
        if body is None:
            continue
        if body.get("stop_reason") == "max_tokens":
            stats.failures["truncated"] += 1
            continue
        inputs = [c.get("input") for c in body.get("content", []) if c.get("type") == "tool_use"]
        items = inputs[0].get("judgments") if inputs and isinstance(inputs[0], dict) else None
        if not isinstance(items, list):
            stats.failures["malformed"] += 1
            continue
        for item in items:
            if not isinstance(item, dict):
                stats.rejects["malformed_item"] += 1
                continue
            i, a, t = item.get("index"), item.get("agent_type"), item.get("minimum_tier")
            if not isinstance(i, int) or not 0 <= i < len(chunk):
                stats.rejects["bad_index"] += 1
            elif a not in a_idx or t not in t_idx:
                stats.rejects["wrong_label"] += 1
            else:
                agent[chunk[i]], tier[chunk[i]] = a_idx[a], t_idx[t]
                stats.accepted += 1
    return agent, tier, stats
