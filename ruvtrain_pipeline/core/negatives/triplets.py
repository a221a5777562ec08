"""Triplets from the catalog's confusing pairs (the `template` source): each anchor gets its gold agent as the
positive and, with the configured probability, a confusing partner agent as a hard negative (otherwise a random
other agent). Later providers (Claude, encoder mining) add rows in the same schema."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ..catalog import Catalog

TRIPLET_SCHEMA: dict[str, pl.DataType] = {
    "anchor": pl.String(),
    "context": pl.String(),
    "positive": pl.String(),
    "negative": pl.String(),
    "is_hard": pl.Boolean(),
    "source": pl.String(),
    "pair": pl.String(),
    "group_id": pl.String(),
}


@dataclass(frozen=True)
class TripletSettings:
    hard_negative_ratio: float = 0.48
    triplets_per_anchor: int = 1


def confusing_partners(catalog: Catalog) -> dict[str, list[str]]:
    partners: dict[str, list[str]] = {a: [] for a in catalog.agent_types}
    for a, b in catalog.confusing_pairs:
        partners[a].append(b)
        partners[b].append(a)
    return partners


def pair_name(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


def template_triplets(
    examples: pl.DataFrame, catalog: Catalog, settings: TripletSettings, rng: np.random.Generator
) -> pl.DataFrame:
    agents = catalog.agent_types
    partners = confusing_partners(catalog)
    idx = {a: i for i, a in enumerate(agents)}
    pos = examples["agent_type"].replace_strict(idx, return_dtype=pl.Int64).to_numpy()
    has_partner = np.array([bool(partners[a]) for a in agents])[pos]
    eligible_share = float(has_partner.mean()) if len(pos) else 0.0
    # agents without partners only get random negatives, so eligible anchors get a higher hard probability
    p_hard = min(1.0, settings.hard_negative_ratio / eligible_share) if eligible_share else 0.0
    n_agents = len(agents)
    partner_mat = np.zeros((n_agents, n_agents), dtype=bool)
    for a, ps in partners.items():
        for b in ps:
            partner_mat[idx[a], idx[b]] = True
    frames = []
    for _ in range(settings.triplets_per_anchor):
        n = len(pos)
        hard = (rng.random(n) < p_hard) & has_partner
        neg = np.empty(n, dtype=np.int64)
        u = rng.random(n)
        for a in range(n_agents):
            rows = pos == a
            if not rows.any():
                continue
            hard_choices = np.flatnonzero(partner_mat[a])
            easy_choices = np.flatnonzero(~partner_mat[a] & (np.arange(n_agents) != a))
            h = rows & hard
            e = rows & ~hard
            if h.any():
                neg[h] = hard_choices[np.floor(u[h] * len(hard_choices)).astype(np.int64)]
            if e.any():
                neg[e] = easy_choices[np.floor(u[e] * len(easy_choices)).astype(np.int64)]
        neg_names = np.array(agents)[neg]
        pos_names = np.array(agents)[pos]
        pair = np.where(hard, ["|".join(sorted(p)) for p in zip(pos_names, neg_names, strict=True)], None)
        frames.append(
            pl.DataFrame(
                {
                    "anchor": examples["input"],
                    "context": examples["context"],
                    "positive": pos_names,
                    "negative": neg_names,
                    "is_hard": hard,
                    "source": ["template"] * n,
                    "pair": pl.Series(pair.tolist(), dtype=pl.String),
                    "group_id": examples["group_id"],
                }
            )
        )
    return pl.concat(frames).cast(TRIPLET_SCHEMA).select(list(TRIPLET_SCHEMA))


def triplet_report(triplets: pl.DataFrame, catalog: Catalog, target_ratio: float) -> dict[str, object]:
    known = set(catalog.agent_types)
    unknown = triplets.filter(~pl.col("positive").is_in(known) | ~pl.col("negative").is_in(known)).height
    same = triplets.filter(pl.col("positive") == pl.col("negative")).height
    ratio = float(triplets["is_hard"].mean() or 0.0) if triplets.height else 0.0
    per_pair = {k: int(v) for k, v in triplets.filter(pl.col("is_hard")).group_by("pair").len().sort("pair").iter_rows()}
    return {
        "triplets": triplets.height,
        "hard_ratio": round(ratio, 4),
        "target_ratio": target_ratio,
        "unknown_labels": unknown,
        "positive_equals_negative": same,
        "triplets_per_pair": per_pair,
    }
