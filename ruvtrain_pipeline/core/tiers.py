"""Tier policy arithmetic shared by training and evaluation: the price of a request at a tier, tier metrics of routed
requests (accuracy, under-/over-tiering, cost against always-opus and the oracle tier), and the calibration of the
router's tier confidence on a labelled set. The trained_adapter asset depends on this module alone, not on the
evaluation sets' loaders and report scoring in evaluate.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np


def request_price(routing: dict, model: str) -> float:
    price, size = routing["models"][model], routing["typical_request"]
    return (size["input_tokens"] * price["input_per_mtok"] + size["output_tokens"] * price["output_per_mtok"]) / 1e6


def tier_metrics(pred_models: Sequence[str | None], expected: Sequence[str], routing: dict) -> dict:
    """Tier accuracy, under-/over-tiering and the cost of the routed tiers vs always-opus and the oracle tier, at the
    catalog's typical request size. An unrouted request (no agent) falls back to the top tier."""
    order = {m: i for i, m in enumerate(routing["tier_order"])}
    top = routing["tier_order"][-1]
    routed = [m or top for m in pred_models]
    n = len(expected)
    under = sum(order[p] < order[e] for p, e in zip(routed, expected, strict=True))
    over = sum(order[p] > order[e] for p, e in zip(routed, expected, strict=True))
    cost = sum(request_price(routing, m) for m in routed)
    opus = n * request_price(routing, top)
    oracle = sum(request_price(routing, m) for m in expected)
    return {"tier_acc": round((n - under - over) / n, 4) if n else 0.0,
            "under_tier_rate": round(under / n, 4) if n else 0.0,
            "over_tier_rate": round(over / n, 4) if n else 0.0,
            "cost_usd": round(cost, 4), "always_opus_cost_usd": round(opus, 4), "oracle_cost_usd": round(oracle, 4),
            "saving_vs_opus": round(1 - cost / opus, 4) if opus else 0.0,
            "oracle_saving_vs_opus": round(1 - oracle / opus, 4) if opus else 0.0}


def routing_spec(catalog: Any) -> dict:
    """What tier_metrics needs from the catalog: the routing table, tier order, prices and typical request size."""
    return {"table": catalog.routing, "models": catalog.models, "tier_order": catalog.tier_order,
            "typical_request": catalog.typical_request}


def tier_curve(router: Any, texts: Sequence[str], emb: np.ndarray, expected: Sequence[str], routing: dict,
               confidences: Sequence[float | None], mode: str = "hybrid",
               views: Any = None) -> list[tuple[float | None, dict]]:
    """tier_metrics of the router's routes at each tier confidence (None = the routing table at the most likely
    agent type and complexity), embeddings computed once (`views`: router.py RequestViews)."""
    return [(tau, tier_metrics([r.model for r in router.route_embedded(texts, emb, mode, tier_confidence=tau,
                                                                       views=views)],
                               expected, routing)) for tau in confidences]


TIER_GRID = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))  # 0.50 .. 0.99


def under_tier_upper_bound(rate: float, n: int, confidence_level: float) -> float:
    """One-sided Wilson score upper bound of an under-tiering rate observed on n requests: with probability about
    `confidence_level` the rate on new requests like these is below it (0.5 = the observed rate itself)."""
    if n <= 0:
        raise ValueError("under_tier_upper_bound: no requests")
    if confidence_level <= 0.5:
        return rate
    z = NormalDist().inv_cdf(confidence_level)
    centre = rate + z * z / (2 * n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def calibrate_tier_confidence(router: Any, texts: Sequence[str], emb: np.ndarray, expected: Sequence[str],
                              routing: dict, max_under_tier_rate: float, tolerance: float = 0.005,
                              mode: str = "hybrid", grid: Sequence[float] = TIER_GRID,
                              confidence_level: float = 0.5, groups: Sequence[str] | None = None,
                              views: Any = None) -> dict[str, Any]:
    """The cheapest tier policy whose under-tiering on a labelled set (the validation split) is at most the target:
    the lowest confidence of `grid` whose under-tiering, or with `confidence_level` > 0.5 its one-sided upper bound
    (`under_tier_upper_bound`: the lowest confidence that only just meets the target on one sample under-tiers more
    on the next), is at most the target. With `groups` (one name per request, e.g. the request form: with or without
    its context), the target holds for every group on its own: the bound compared is the largest of the groups'
    bounds, so the policy does not lean on a mix of easy and hard requests whose proportions are arbitrary. When no
    confidence meets it (requests routed to a wrong agent type with certainty are under-tiered at any confidence),
    the lowest one within `tolerance` of the smallest bound the grid reaches (`met: false`): paying for opus
    everywhere would not remove that floor. Returns the policy, its figures on that set (per group too) and the
    whole curve ([confidence, under-tier, tier acc, saving, under-tier upper bound])."""
    if not len(texts):
        raise ValueError("calibrate_tier_confidence: no labelled requests")
    if groups is not None and len(groups) != len(texts):
        raise ValueError(f"calibrate_tier_confidence: {len(groups)} group names for {len(texts)} requests")
    n = len(texts)
    members = {g: [i for i, x in enumerate(groups) if x == g] for g in dict.fromkeys(groups)} if groups else {}
    curve, per_group = [], {}
    for tau in grid:
        routed = [r.model for r in router.route_embedded(texts, emb, mode, tier_confidence=tau, views=views)]
        t = tier_metrics(routed, expected, routing)
        bound = under_tier_upper_bound(t["under_tier_rate"], n, confidence_level)
        per_group[tau] = {}
        for g, idx in members.items():
            rate = tier_metrics([routed[i] for i in idx], [expected[i] for i in idx], routing)["under_tier_rate"]
            per_group[tau][g] = {"rows": len(idx), "under_tier_rate": rate,
                                 "under_tier_upper_bound": round(under_tier_upper_bound(rate, len(idx),
                                                                                        confidence_level), 4)}
        if members:
            bound = max(v["under_tier_upper_bound"] for v in per_group[tau].values())
        curve.append([tau, t["under_tier_rate"], t["tier_acc"], t["saving_vs_opus"], round(bound, 4)])
    met = [row for row in curve if row[4] <= max_under_tier_rate]
    if met:
        chosen = met[0]
    else:
        floor = min(row[4] for row in curve)
        chosen = next(row for row in curve if row[4] <= floor + tolerance + 1e-9)
    return {"tier_confidence": chosen[0], "under_tier_rate": chosen[1], "tier_acc": chosen[2],
            "saving_vs_opus": chosen[3], "under_tier_upper_bound": chosen[4], "confidence_level": confidence_level,
            "max_under_tier_rate": max_under_tier_rate, "met": bool(met), "tolerance": tolerance, "rows": n,
            **({"groups": per_group[chosen[0]]} if members else {}), "mode": mode, "curve": curve}
