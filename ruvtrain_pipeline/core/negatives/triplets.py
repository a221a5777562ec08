"""Triplet records and the label-level builders shared by every provider.

A triplet is (anchor request, positive agent, negative agent). `is_hard` marks a negative drawn from the anchor
agent's confusing partners (catalog/agents.yaml). Providers: `template` (partners chosen at random), `mined`
(partner whose examples are nearest in the base encoder's space, see mined.py) and `claude` (new anchors written by
Claude for a pair, see claude.py). Optional example texts (`positive_text`, `negative_text`) carry their group ids so
the split stage can drop any text that would cross from one split into another.
"""

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
    "positive_text": pl.String(),
    "positive_group_id": pl.String(),
    "negative_text": pl.String(),
    "negative_group_id": pl.String(),
    "similarity": pl.Float32(),
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


def partner_matrix(catalog: Catalog) -> np.ndarray:
    idx = {a: i for i, a in enumerate(catalog.agent_types)}
    mat = np.zeros((len(idx), len(idx)), dtype=bool)
    for a, b in catalog.confusing_pairs:
        mat[idx[a], idx[b]] = mat[idx[b], idx[a]] = True
    return mat


def hard_probability(has_partner: np.ndarray, target: float, extra_hard: int = 0) -> float:
    """Probability of a hard negative for anchors with partners so the overall share lands on `target`.

    Agent types without confusing partners only get random negatives, and `extra_hard` already-hard rows (e.g.
    Claude's) count toward the target, so the eligible anchors get whatever share is left.
    """
    n = len(has_partner) + extra_hard
    eligible = int(has_partner.sum())
    if eligible == 0:
        return 0.0
    return float(np.clip((target * n - extra_hard) / eligible, 0.0, 1.0))


def agent_indices(examples: pl.DataFrame, catalog: Catalog) -> np.ndarray:
    idx = {a: i for i, a in enumerate(catalog.agent_types)}
    return examples["agent_type"].replace_strict(idx, return_dtype=pl.Int64).to_numpy()


def draw_negatives(
    pos: np.ndarray, hard: np.ndarray, partners: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Negative agent per anchor: a random partner when hard, else a random non-partner other agent."""
    n_agents = partners.shape[0]
    neg = np.empty(len(pos), dtype=np.int64)
    u = rng.random(len(pos))
    for a in range(n_agents):
        rows = pos == a
        if not rows.any():
            continue
        hard_choices = np.flatnonzero(partners[a])
        easy_choices = np.flatnonzero(~partners[a] & (np.arange(n_agents) != a))
        h = rows & hard
        e = rows & ~hard
        if h.any():
            neg[h] = hard_choices[np.floor(u[h] * len(hard_choices)).astype(np.int64)]
        if e.any():
            neg[e] = easy_choices[np.floor(u[e] * len(easy_choices)).astype(np.int64)]
    return neg


def random_example_of(
    agent: np.ndarray, pos_of_rows: np.ndarray, rng: np.random.Generator, exclude_row: np.ndarray | None = None
) -> np.ndarray:
    """For each requested agent, the row index of a random example of that agent (not `exclude_row` when given)."""
    out = np.full(len(agent), -1, dtype=np.int64)
    by_agent = {int(a): np.flatnonzero(pos_of_rows == a) for a in np.unique(agent)}
    u = rng.random(len(agent))
    for a, rows in by_agent.items():
        mask = agent == a
        if len(rows) == 0 or not mask.any():
            continue
        pick = rows[np.floor(u[mask] * len(rows)).astype(np.int64)]
        if exclude_row is not None and len(rows) > 1:
            clash = pick == exclude_row[mask]
            pick[clash] = rows[(np.searchsorted(rows, pick[clash]) + 1) % len(rows)]
        out[mask] = pick
    return out


def empty_triplets() -> pl.DataFrame:
    return pl.DataFrame(schema=TRIPLET_SCHEMA)


# Stored cosines keep this many decimals. A float32 dot product can differ in its last digits from one CPU to another
# (different SIMD paths), and the raw value made the same config + seed write different bytes on different machines.
SIMILARITY_DECIMALS = 3


def stable_similarity(sim: object) -> np.ndarray:
    """Cosines rounded to SIMILARITY_DECIMALS (in float64, then float32) so CPU-level float noise cannot reach disk."""
    return np.round(np.asarray(sim, dtype=np.float64), SIMILARITY_DECIMALS).astype(np.float32)


def finish(frame: dict[str, object]) -> pl.DataFrame:
    """Columns -> a frame with exactly TRIPLET_SCHEMA (missing optional columns null; similarity rounded)."""
    n = len(next(iter(frame.values())))  # type: ignore[arg-type]
    cols = {}
    for name, dtype in TRIPLET_SCHEMA.items():
        value = frame.get(name)
        if name == "similarity" and value is not None:
            value = stable_similarity(value)
        cols[name] = pl.Series(name, value, dtype=dtype) if value is not None else pl.Series(name, [None] * n, dtype=dtype)
    return pl.DataFrame(cols)


def template_triplets(
    examples: pl.DataFrame, catalog: Catalog, settings: TripletSettings, rng: np.random.Generator,
    *, extra_hard: int = 0, source: str = "template",
) -> pl.DataFrame:
    """Label-level triplets: positive = gold agent, negative = a confusing partner (hard) or a random other agent."""
    agents = np.array(catalog.agent_types)
    partners = partner_matrix(catalog)
    pos = agent_indices(examples, catalog)
    has_partner = partners.any(axis=1)[pos]
    p_hard = hard_probability(np.tile(has_partner, settings.triplets_per_anchor), settings.hard_negative_ratio,
                              extra_hard)
    frames = []
    for _ in range(settings.triplets_per_anchor):
        hard = (rng.random(len(pos)) < p_hard) & has_partner
        neg = draw_negatives(pos, hard, partners, rng)
        pairs = np.where(hard, [pair_name(a, b) for a, b in zip(agents[pos], agents[neg], strict=True)], None)
        frames.append(finish({
            "anchor": examples["input"], "context": examples["context"], "positive": agents[pos],
            "negative": agents[neg], "is_hard": hard, "source": [source] * len(pos), "pair": pairs.tolist(),
            "group_id": examples["group_id"],
        }))
    return pl.concat(frames) if frames else empty_triplets()


def triplet_report(triplets: pl.DataFrame, catalog: Catalog, target_ratio: float) -> dict[str, object]:
    known = set(catalog.agent_types)
    unknown = triplets.filter(~pl.col("positive").is_in(known) | ~pl.col("negative").is_in(known)).height
    same = triplets.filter(pl.col("positive") == pl.col("negative")).height
    ratio = float(triplets["is_hard"].mean() or 0.0) if triplets.height else 0.0
    hard = triplets.filter(pl.col("is_hard"))
    per_pair = {k: int(v) for k, v in hard.group_by("pair").len().sort("pair").iter_rows()}
    per_source = {k: int(v) for k, v in triplets.group_by("source").len().sort("source").iter_rows()}
    return {
        "triplets": triplets.height,
        "hard_ratio": round(ratio, 4),
        "target_ratio": target_ratio,
        "unknown_labels": unknown,
        "positive_equals_negative": same,
        "triplets_per_pair": per_pair,
        "triplets_per_source": per_source,
    }
